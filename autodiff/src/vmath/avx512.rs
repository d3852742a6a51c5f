//! AVX-512 intrinsic kernels.
//!
//! On this CPU the 512-bit multiply/FMA operations issue on one port, so the cost of a
//! kernel is its count of such operations, while `vdivpd` runs on the separate divider
//! (16 cycles per 8 doubles) in parallel with them: the portable `tanh` computes two
//! branches (≈ 30 port operations per 8 values). [`tanh8`] computes one (≈ 18, about
//! as long as its division), and the loop runs four vectors at a time so that their
//! chains overlap. Replacing the division by `vrcp14pd` and Newton steps (8 more port
//! operations) was measured slower.

use std::arch::x86_64::*;

/// `tanh` of 8 lanes, `a = |x|` (capped at 20): with `a = n ln2/2 + h`, `n = ⌊2a/ln2⌋`
/// (rounded down, so `h ∈ [0, ln2/2)`: no cancellation below) and `u = tanh h` by
/// Cephes' rational `u = h + h w P(w)/Q(w)` (`w = h²`, the same as the small branch
/// of `tanh_k64`) written `u = U/Q`, `U = h Q + h w P`, the addition formula with
/// `tanh(n ln2/2) = (2ⁿ−1)/(2ⁿ+1)` gives
/// `tanh a = ((2ⁿ−1) Q + (2ⁿ+1) U) / ((2ⁿ+1) Q + (2ⁿ−1) U)` (all terms ≥ 0), and
/// for `n = 0` (`a < ln2/2`) `tanh a = h + (h w P)/Q` (Cephes' form). One polynomial
/// pair and one quotient for both.
#[inline]
#[target_feature(enable = "avx512f,avx512dq,avx512vl,avx2,fma")]
pub(crate) fn tanh8(x: __m512d) -> __m512d {
    let set = _mm512_set1_pd;
    let sign = set(-0.0);
    // `min(20, |x|)` returns its second operand for NaN: NaN is kept.
    let a = _mm512_min_pd(set(20.0), _mm512_andnot_pd(sign, x));
    // n = ⌊a · 2/ln2⌋: `a · (2/ln2) + 1.5·2⁵²` rounded down (embedded rounding) lands
    // on `1.5·2⁵² + n` (unit spacing there), so `n` is the floor of the exact product.
    let t = _mm512_fmadd_round_pd::<{ _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC }>(
        a,
        set(2.0 * std::f64::consts::LOG2_E),
        set(super::MAGIC64),
    );
    let n = _mm512_sub_pd(t, set(super::MAGIC64));
    // h = a − n ln2/2 (Cody–Waite: the high part of ln2/2 times n ≤ 57 is exact).
    let h = _mm512_fnmadd_pd(
        n,
        set(0.5 * super::LN2_LO),
        _mm512_fnmadd_pd(n, set(0.5 * super::LN2_HI), a),
    );
    let w = _mm512_mul_pd(h, h);
    let p = _mm512_fmadd_pd(
        _mm512_fmadd_pd(
            set(-9.643_991_794_250_523e-1),
            w,
            set(-9.928_772_310_019_186e1),
        ),
        w,
        set(-1.614_687_684_417_084_5e3),
    );
    let q = _mm512_fmadd_pd(
        _mm512_fmadd_pd(
            _mm512_add_pd(w, set(1.128_116_784_916_329_3e2)),
            w,
            set(2.235_488_390_601_004_6e3),
        ),
        w,
        set(4.844_063_053_251_255e3),
    );
    let hwp = _mm512_mul_pd(_mm512_mul_pd(h, w), p);
    let u = _mm512_fmadd_pd(h, q, hwp);
    let one = set(1.0);
    // 2ⁿ (`n` an integer in 0..=57: exact).
    let s = _mm512_scalef_pd(one, n);
    let (sm, sp) = (_mm512_sub_pd(s, one), _mm512_add_pd(s, one));
    let num = _mm512_fmadd_pd(sm, q, _mm512_mul_pd(sp, u));
    let den = _mm512_fmadd_pd(sp, q, _mm512_mul_pd(sm, u));
    let small = _mm512_cmp_pd_mask::<_CMP_EQ_OQ>(n, _mm512_setzero_pd());
    let num = _mm512_mask_blend_pd(small, num, hwp);
    let den = _mm512_mask_blend_pd(small, den, q);
    let v = _mm512_div_pd(num, den);
    // For `n = 0`, `h = a` exactly.
    let v = _mm512_mask_add_pd(v, small, h, v);
    // copysign(v, x): the sign bit from `x`, the others from `v` (bitwise select
    // `m ? x : v` with `m` the sign mask, truth table 0xAC).
    _mm512_castsi512_pd(_mm512_ternarylogic_epi64::<0xAC>(
        _mm512_castpd_si512(sign),
        _mm512_castpd_si512(v),
        _mm512_castpd_si512(x),
    ))
}

/// `y = tanh(x)` over slices (the tail by masked loads and stores).
#[target_feature(enable = "avx512f,avx512dq,avx512vl,avx2,fma")]
pub(crate) fn tanh_slice(x: &[f64], y: &mut [f64]) {
    let len = x.len().min(y.len());
    let (xp, yp) = (x.as_ptr(), y.as_mut_ptr());
    let mut i = 0;
    // SAFETY: every access is below `len` (the tail through a mask of the lanes
    // below it).
    unsafe {
        while i + 32 <= len {
            let v0 = tanh8(_mm512_loadu_pd(xp.add(i)));
            let v1 = tanh8(_mm512_loadu_pd(xp.add(i + 8)));
            let v2 = tanh8(_mm512_loadu_pd(xp.add(i + 16)));
            let v3 = tanh8(_mm512_loadu_pd(xp.add(i + 24)));
            _mm512_storeu_pd(yp.add(i), v0);
            _mm512_storeu_pd(yp.add(i + 8), v1);
            _mm512_storeu_pd(yp.add(i + 16), v2);
            _mm512_storeu_pd(yp.add(i + 24), v3);
            i += 32;
        }
        while i + 8 <= len {
            _mm512_storeu_pd(yp.add(i), tanh8(_mm512_loadu_pd(xp.add(i))));
            i += 8;
        }
        if i < len {
            let m = (1u8 << (len - i)) - 1;
            let v = tanh8(_mm512_maskz_loadu_pd(m, xp.add(i)));
            _mm512_mask_storeu_pd(yp.add(i), m, v);
        }
    }
}

/// `tanh` of 16 f32 lanes by the one-branch method of [`tanh8`]: `a = n ln2/2 + h`
/// (`n` rounded down, `a` capped at 10), `u = tanh h` by Cephes' `tanhf` polynomial
/// (`h + h w P(w)`: no denominator), then `((2ⁿ−1) + (2ⁿ+1)u)/((2ⁿ+1) + (2ⁿ−1)u)`,
/// or `u` itself for `n = 0`.
#[inline]
#[target_feature(enable = "avx512f,avx512dq,avx512vl,avx2,fma")]
pub(crate) fn tanh16(x: __m512) -> __m512 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 · 2^23
    let set = _mm512_set1_ps;
    let sign = set(-0.0);
    // `min(10, |x|)` returns its second operand for NaN: NaN is kept.
    let a = _mm512_min_ps(set(10.0), _mm512_andnot_ps(sign, x));
    let t = _mm512_fmadd_round_ps::<{ _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC }>(
        a,
        set(2.0 * std::f32::consts::LOG2_E),
        set(MAGIC),
    );
    let n = _mm512_sub_ps(t, set(MAGIC));
    // ln2/2 in two parts (the high part has 9 significant bits: n·hi is exact).
    let h = _mm512_fnmadd_ps(
        n,
        set(-1.060_972_2e-4),
        _mm512_fnmadd_ps(n, set(0.346_679_687_5), a),
    );
    let w = _mm512_mul_ps(h, h);
    let p = _mm512_fmadd_ps(
        _mm512_fmadd_ps(
            _mm512_fmadd_ps(
                _mm512_fmadd_ps(set(-5.704_988_7e-3), w, set(2.063_908_9e-2)),
                w,
                set(-5.373_971_6e-2),
            ),
            w,
            set(1.333_144_2e-1),
        ),
        w,
        set(-3.333_328_2e-1),
    );
    let u = _mm512_fmadd_ps(_mm512_mul_ps(p, w), h, h);
    let one = set(1.0);
    let s = _mm512_scalef_ps(one, n);
    let (sm, sp) = (_mm512_sub_ps(s, one), _mm512_add_ps(s, one));
    let v = _mm512_div_ps(_mm512_fmadd_ps(sp, u, sm), _mm512_fmadd_ps(sm, u, sp));
    let small = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(n, _mm512_setzero_ps());
    let v = _mm512_mask_blend_ps(small, v, u);
    _mm512_castsi512_ps(_mm512_ternarylogic_epi32::<0xAC>(
        _mm512_castps_si512(sign),
        _mm512_castps_si512(v),
        _mm512_castps_si512(x),
    ))
}

/// `y = tanh(x)` over f32 slices (tail by masked loads and stores).
#[target_feature(enable = "avx512f,avx512dq,avx512vl,avx2,fma")]
pub(crate) fn tanh_slice_f32(x: &[f32], y: &mut [f32]) {
    let len = x.len().min(y.len());
    let (xp, yp) = (x.as_ptr(), y.as_mut_ptr());
    let mut i = 0;
    // SAFETY: every access is below `len` (the tail through a mask).
    unsafe {
        while i + 64 <= len {
            let v0 = tanh16(_mm512_loadu_ps(xp.add(i)));
            let v1 = tanh16(_mm512_loadu_ps(xp.add(i + 16)));
            let v2 = tanh16(_mm512_loadu_ps(xp.add(i + 32)));
            let v3 = tanh16(_mm512_loadu_ps(xp.add(i + 48)));
            _mm512_storeu_ps(yp.add(i), v0);
            _mm512_storeu_ps(yp.add(i + 16), v1);
            _mm512_storeu_ps(yp.add(i + 32), v2);
            _mm512_storeu_ps(yp.add(i + 48), v3);
            i += 64;
        }
        while i + 16 <= len {
            _mm512_storeu_ps(yp.add(i), tanh16(_mm512_loadu_ps(xp.add(i))));
            i += 16;
        }
        if i < len {
            let m = (1u16 << (len - i)) - 1;
            let v = tanh16(_mm512_maskz_loadu_ps(m, xp.add(i)));
            _mm512_mask_storeu_ps(yp.add(i), m, v);
        }
    }
}

/// `y = tanh(a + b)`, `b` a row repeated over `a` (see [`super::bias_tanh_f64`]).
#[target_feature(enable = "avx512f,avx512dq,avx512vl,avx2,fma")]
pub(crate) fn bias_tanh(a: &[f64], b: &[f64], y: &mut [f64]) {
    let lb = b.len();
    let rows = a.len().min(y.len()) / lb;
    let (ap, bp, yp) = (a.as_ptr(), b.as_ptr(), y.as_mut_ptr());
    // SAFETY: row `r`, columns `j..j + 8` (masked beyond `lb`) lie in `a` and `y`
    // (`rows · lb` elements) and `b` (`lb`).
    unsafe {
        for r in 0..rows {
            let (ar, yr) = (ap.add(r * lb), yp.add(r * lb));
            let mut j = 0;
            while j + 32 <= lb {
                let x = |k: usize| {
                    _mm512_add_pd(
                        _mm512_loadu_pd(ar.add(j + k)),
                        _mm512_loadu_pd(bp.add(j + k)),
                    )
                };
                let (v0, v1, v2, v3) = (tanh8(x(0)), tanh8(x(8)), tanh8(x(16)), tanh8(x(24)));
                _mm512_storeu_pd(yr.add(j), v0);
                _mm512_storeu_pd(yr.add(j + 8), v1);
                _mm512_storeu_pd(yr.add(j + 16), v2);
                _mm512_storeu_pd(yr.add(j + 24), v3);
                j += 32;
            }
            while j + 8 <= lb {
                let x = _mm512_add_pd(_mm512_loadu_pd(ar.add(j)), _mm512_loadu_pd(bp.add(j)));
                _mm512_storeu_pd(yr.add(j), tanh8(x));
                j += 8;
            }
            if j < lb {
                let m = (1u8 << (lb - j)) - 1;
                let x = _mm512_add_pd(
                    _mm512_maskz_loadu_pd(m, ar.add(j)),
                    _mm512_maskz_loadu_pd(m, bp.add(j)),
                );
                _mm512_mask_storeu_pd(yr.add(j), m, tanh8(x));
            }
        }
    }
}
