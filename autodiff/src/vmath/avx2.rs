//! AVX2 + FMA intrinsic kernels: the one-branch `tanh` of [`super::avx512`] on 4 lanes,
//! for CPUs without AVX-512 (AMD Zen 1–3, Intel client cores).
//!
//! AVX2 has no rounding control per instruction and no `scalef`: `n = ⌊2a/ln2⌋` is the
//! floor of the rounded product (it can exceed the exact floor by one when the product
//! rounds up onto an integer, which leaves `h` a few ulp below zero: harmless, the
//! addition formula has no cancellation there), and `2ⁿ` is built in the exponent bits.

use std::arch::x86_64::*;

/// `2⁵² + 1023`: `n + MAGIC_EXP` holds `n + 1023` in its low mantissa bits.
const MAGIC_EXP: f64 = 4_503_599_627_371_519.0;

/// `tanh` of 4 lanes by the method of [`super::avx512::tanh8`] (≤ 2 ulp, tested).
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(crate) fn tanh4(x: __m256d) -> __m256d {
    tanh4n([x])[0]
}

/// [`tanh4`] of `N` vectors, computed step by step across them: their dependency
/// chains (a division each) interleave in program order, so that the core overlaps them
/// where the out-of-order window could not (the fused MLP kernels apply `tanh` to a
/// register block of products at once).
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(crate) fn tanh4n<const N: usize>(x: [__m256d; N]) -> [__m256d; N] {
    let set = _mm256_set1_pd;
    let sign = set(-0.0);
    let one = set(1.0);
    let zero = _mm256_setzero_pd();
    let mut y = [zero; N];
    // Each step over all `N` lanes-vectors before the next (unrolled: `N` is small).
    let mut a = [zero; N];
    let mut n = [zero; N];
    let mut h = [zero; N];
    for i in 0..N {
        // `min(20, |x|)` returns its second operand for NaN: NaN is kept.
        a[i] = _mm256_min_pd(set(20.0), _mm256_andnot_pd(sign, x[i]));
    }
    for i in 0..N {
        n[i] = _mm256_round_pd::<{ _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC }>(_mm256_mul_pd(
            a[i],
            set(2.0 * std::f64::consts::LOG2_E),
        ));
    }
    for i in 0..N {
        // h = a − n ln2/2 (Cody–Waite: the high part of ln2/2 times n ≤ 57 is exact).
        h[i] = _mm256_fnmadd_pd(
            n[i],
            set(0.5 * super::LN2_LO),
            _mm256_fnmadd_pd(n[i], set(0.5 * super::LN2_HI), a[i]),
        );
    }
    for i in 0..N {
        let (h, n) = (h[i], n[i]);
        let w = _mm256_mul_pd(h, h);
        let p = _mm256_fmadd_pd(
            _mm256_fmadd_pd(
                set(-9.643_991_794_250_523e-1),
                w,
                set(-9.928_772_310_019_186e1),
            ),
            w,
            set(-1.614_687_684_417_084_5e3),
        );
        let q = _mm256_fmadd_pd(
            _mm256_fmadd_pd(
                _mm256_add_pd(w, set(1.128_116_784_916_329_3e2)),
                w,
                set(2.235_488_390_601_004_6e3),
            ),
            w,
            set(4.844_063_053_251_255e3),
        );
        let hwp = _mm256_mul_pd(_mm256_mul_pd(h, w), p);
        let u = _mm256_fmadd_pd(h, q, hwp);
        // 2ⁿ (`n` an integer in 0..=57, NaN aside): `n + 1023` shifted into the exponent.
        let e = _mm256_castpd_si256(_mm256_add_pd(n, set(MAGIC_EXP)));
        let s = _mm256_castsi256_pd(_mm256_slli_epi64::<52>(e));
        let (sm, sp) = (_mm256_sub_pd(s, one), _mm256_add_pd(s, one));
        let num = _mm256_fmadd_pd(sm, q, _mm256_mul_pd(sp, u));
        let den = _mm256_fmadd_pd(sp, q, _mm256_mul_pd(sm, u));
        let small = _mm256_cmp_pd::<_CMP_EQ_OQ>(n, zero);
        // The quotient of the selected pair lands in `y` (`a` keeps `small` meanwhile).
        let num = _mm256_blendv_pd(num, hwp, small);
        let den = _mm256_blendv_pd(den, q, small);
        y[i] = _mm256_div_pd(num, den);
        a[i] = _mm256_and_pd(small, h);
    }
    for i in 0..N {
        // For `n = 0`, `h = a` exactly: `tanh a = h + hwP/Q`; then copysign(v, x).
        let v = _mm256_add_pd(y[i], a[i]);
        y[i] = _mm256_or_pd(_mm256_andnot_pd(sign, v), _mm256_and_pd(sign, x[i]));
    }
    y
}

/// `y = tanh(x)` over slices (the tail through a copy into a vector of 4).
#[target_feature(enable = "avx2,fma")]
pub(crate) fn tanh_slice(x: &[f64], y: &mut [f64]) {
    let len = x.len().min(y.len());
    let (xp, yp) = (x.as_ptr(), y.as_mut_ptr());
    let mut i = 0;
    // SAFETY: every vector access is below `len`.
    unsafe {
        while i + 16 <= len {
            let [v0, v1, v2, v3] = tanh4n([
                _mm256_loadu_pd(xp.add(i)),
                _mm256_loadu_pd(xp.add(i + 4)),
                _mm256_loadu_pd(xp.add(i + 8)),
                _mm256_loadu_pd(xp.add(i + 12)),
            ]);
            _mm256_storeu_pd(yp.add(i), v0);
            _mm256_storeu_pd(yp.add(i + 4), v1);
            _mm256_storeu_pd(yp.add(i + 8), v2);
            _mm256_storeu_pd(yp.add(i + 12), v3);
            i += 16;
        }
        while i + 4 <= len {
            _mm256_storeu_pd(yp.add(i), tanh4(_mm256_loadu_pd(xp.add(i))));
            i += 4;
        }
    }
    if i < len {
        let mut buf = [0.0; 4];
        buf[..len - i].copy_from_slice(&x[i..len]);
        let mut out = [0.0; 4];
        // SAFETY: `buf` and `out` hold 4 values.
        unsafe { _mm256_storeu_pd(out.as_mut_ptr(), tanh4(_mm256_loadu_pd(buf.as_ptr()))) };
        y[i..len].copy_from_slice(&out[..len - i]);
    }
}
