//! Slice kernels for the elementwise transcendentals, and the AVX state reset after GEMM.
//!
//! Each function is branch-free scalar code (selects, no table lookups, no float→int
//! conversions: integers are moved through the mantissa with the `1.5·2⁵²` trick), so
//! the compiler vectorises the loop over a slice. Every slice kernel is compiled three
//! times and chosen at run time: AVX-512 (F, DQ, VL), AVX2+FMA, and baseline x86-64;
//! the wide copies fuse multiply–adds (`mul_add`), the baseline one does not (there
//! `mul_add` would be a slow library call). The same dispatch (`simd_dispatch!`) runs
//! the elementwise loops of the binary and unary ops and their VJPs.
//!
//! | function | method | accuracy vs libm (tested, f64 / f32) |
//! |---|---|---|
//! | `exp` | `x = n ln2 + r`, `|r| ≤ ln2/2`, degree-12 (f32: 7) Taylor, `2p·2ⁿ⁻¹` (no overflow at `n = 1024`), subnormal results scaled in two steps | ≤ 2 ulp |
//! | `tanh` | `|x| < 0.625`: Cephes' rational `x + x z P(z)/Q(z)`; above: Cephes' Padé `eʳ = (q+p)/(q−p)` gives `tanh a = ((2ⁿ−1)q + (2ⁿ+1)p)/((2ⁿ+1)q + (2ⁿ−1)p)`; one division for both. AVX-512 and AVX2 (f64): one branch, `a = n ln2/2 + h` with `n` rounded down, `tanh h` by the Cephes rational, the addition formula (see `avx512::tanh8`, `avx2::tanh4`; f32: `avx512::tanh16`, Cephes' `tanhf` polynomial for `tanh h`) | ≤ 2 / 3 ulp |
//! | `expm1` | `x = n ln2 + r`, `expm1 r` by Taylor to `r¹³/13!`, `2ⁿ m + (2ⁿ − 1)` in one FMA (the ELU op) | ≤ 2 / 1 ulp |
//! | `sigmoid` | `1/(1 + e⁻ˣ)` | ≤ 3 ulp |
//! | `log` | musl's: `x = 2ᵏ m`, `m ∈ [√½, √2)`, `s = f/(2+f)`, degree-14 odd polynomial; subnormals rescaled; 0, negatives, inf, NaN by selects | ≤ 1 ulp |
//! | `softplus` | `max(x,0) + log1p(e^{−|x|})`, `log1p(u) = log(1+u) + (u − ((1+u) − 1))/(1+u)` | ≤ 2 ulp |
//! | `sin`, `cos` | `x = n π/2 + r` (3-part Cody–Waite), Cephes' polynomials on `[−π/4, π/4]`, quadrant from the low bits of `n`; libm beyond `|x| > 10⁵` | ≤ 1 ulp (absolute near zeros) |
//!
//! f32 `log`, `softplus`, `sin`, `cos` run the f64 kernel on converted values (correctly
//! rounded in practice); f32 `exp`, `tanh`, `sigmoid` have native f32 kernels.
#![allow(clippy::excessive_precision)] // constants and coefficients as published (Cephes)

use crate::Float;

/// Clears the upper halves of the vector registers after faer's AVX code, so that the
/// following SSE-encoded elementwise code pays no transition penalty (faer's AVX-512
/// kernels leave the upper halves dirty; until `vzeroupper`, every SSE instruction that
/// follows, glibc's scalar `tanh` included, runs many times slower).
#[inline]
pub(crate) fn zero_upper() {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx") {
            // SAFETY: AVX is available (checked just above); `vzeroupper` only clears
            // the upper 128 bits of the YMM registers, which no live Rust value uses here.
            unsafe { zero_upper_avx() }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn zero_upper_avx() {
    std::arch::x86_64::_mm256_zeroupper();
}

/// True if the CPU has AVX2 and FMA (checked once, cached by std): the slice kernels
/// then run a copy of the same branch-free code compiled for 256-bit vectors, and
/// [`tanh4_f64`] may be called.
#[cfg(target_arch = "x86_64")]
#[inline]
pub fn has_avx2_fma() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

/// Calls the `#[inline(always)]` generic kernel `$k::<T>(args)` through a copy compiled
/// for AVX-512 (or AVX2+FMA) when the CPU has it, so that its loops are vectorised for
/// the wide registers (the crate itself is compiled for baseline x86-64). Expands to a
/// `return` of the result: use it as the whole body of a function. No floating-point
/// contraction happens (Rust never fuses `a * b + c` on its own), so results are
/// identical on every path.
macro_rules! simd_dispatch {
    ($k:ident::<$T:ident>($($a:ident: $ty:ty),* $(,)?) -> $r:ty) => {{
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx512f,avx512dq,avx512vl,avx2,fma")]
            fn w512<$T: $crate::Float>($($a: $ty),*) -> $r {
                $k($($a),*)
            }
            #[target_feature(enable = "avx2,fma")]
            fn w256<$T: $crate::Float>($($a: $ty),*) -> $r {
                $k($($a),*)
            }
            if $crate::vmath::has_avx512() {
                // SAFETY: the features were detected at run time just above.
                return unsafe { w512($($a),*) };
            }
            if $crate::vmath::has_avx2_fma() {
                // SAFETY: as above.
                return unsafe { w256($($a),*) };
            }
        }
        $k($($a),*)
    }};
}
pub(crate) use simd_dispatch;

/// `x` as `&[f64]` when `T` is `f64` (`Float` is sealed to `f32` and `f64`: the size
/// tells them apart), for the kernels that exist for `f64` only.
#[inline(always)]
pub(crate) fn as_f64<T: Float>(x: &[T]) -> Option<&[f64]> {
    // SAFETY: `T` is `f64` (same size and alignment, sealed trait), so the cast is an
    // identity.
    (std::mem::size_of::<T>() == 8)
        .then(|| unsafe { std::slice::from_raw_parts(x.as_ptr().cast(), x.len()) })
}

/// `x` as `&[f32]` when `T` is `f32` (see [`as_f64`]).
#[inline(always)]
pub(crate) fn as_f32<T: Float>(x: &[T]) -> Option<&[f32]> {
    // SAFETY: as in `as_f64`, for `f32`.
    (std::mem::size_of::<T>() == 4)
        .then(|| unsafe { std::slice::from_raw_parts(x.as_ptr().cast(), x.len()) })
}

/// As [`as_f32`], mutable.
#[inline(always)]
pub(crate) fn as_f32_mut<T: Float>(x: &mut [T]) -> Option<&mut [f32]> {
    // SAFETY: as in `as_f64`, for `f32`.
    (std::mem::size_of::<T>() == 4)
        .then(|| unsafe { std::slice::from_raw_parts_mut(x.as_mut_ptr().cast(), x.len()) })
}

/// As [`as_f64`], mutable.
#[inline(always)]
pub(crate) fn as_f64_mut<T: Float>(x: &mut [T]) -> Option<&mut [f64]> {
    // SAFETY: as in `as_f64`.
    (std::mem::size_of::<T>() == 8)
        .then(|| unsafe { std::slice::from_raw_parts_mut(x.as_mut_ptr().cast(), x.len()) })
}

/// True if the CPU has AVX-512 F, DQ and VL (and AVX2, FMA): the features of this
/// crate's AVX-512 kernels, [`tanh8_f64`] among them.
#[cfg(target_arch = "x86_64")]
#[inline]
pub fn has_avx512() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512dq")
        && std::arch::is_x86_feature_detected!("avx512vl")
        && has_avx2_fma()
}

/// `a · b + c`, fused (one rounding) in the `FMA` build, else two roundings: the
/// kernels are compiled twice, and only the AVX2+FMA copy may use the instruction
/// (without hardware FMA, `mul_add` is a slow library call).
#[inline(always)]
fn fma64<const F: bool>(a: f64, b: f64, c: f64) -> f64 {
    if F { a.mul_add(b, c) } else { a * b + c }
}

/// `2ⁿ` for an integer-valued `n` held as `t = n + 1.5·2⁵²` (bits `n` in the mantissa).
#[inline(always)]
fn pow2_from_magic64(t: f64) -> f64 {
    f64::from_bits(t.to_bits().wrapping_add(1023) << 52)
}

const MAGIC64: f64 = 6_755_399_441_055_744.0; // 1.5 · 2^52
const LN2_HI: f64 = 6.931_471_803_691_238_164_9e-1;
const LN2_LO: f64 = 1.908_214_929_270_587_700_02e-10;

#[inline(always)]
fn exp_k64<const F: bool>(x: f64) -> f64 {
    const LOG2E: f64 = std::f64::consts::LOG2_E;
    // Near and below the subnormal range (x < -707) the scale 2^(n-1) is applied as
    // 2^(n-1+64) · 2^-64, so that the last product rounds once into the subnormals.
    let sub = x < -707.0;
    let xc = x.clamp(-746.0, 709.8);
    let t = fma64::<F>(xc, LOG2E, MAGIC64);
    let n = t - MAGIC64;
    let r = fma64::<F>(-n, LN2_LO, fma64::<F>(-n, LN2_HI, xc));
    let mut p = 1.0 / 479_001_600.0;
    p = fma64::<F>(p, r, 1.0 / 39_916_800.0);
    p = fma64::<F>(p, r, 1.0 / 3_628_800.0);
    p = fma64::<F>(p, r, 1.0 / 362_880.0);
    p = fma64::<F>(p, r, 1.0 / 40_320.0);
    p = fma64::<F>(p, r, 1.0 / 5_040.0);
    p = fma64::<F>(p, r, 1.0 / 720.0);
    p = fma64::<F>(p, r, 1.0 / 120.0);
    p = fma64::<F>(p, r, 1.0 / 24.0);
    p = fma64::<F>(p, r, 1.0 / 6.0);
    p = fma64::<F>(p, r, 0.5);
    p = fma64::<F>(p, r, 1.0);
    p = fma64::<F>(p, r, 1.0);
    // 2p · 2^(n−1): 2^n alone overflows for n = 1024 (x just below the overflow limit).
    let e = if sub { t + 63.0 } else { t - 1.0 };
    let v = (p + p) * pow2_from_magic64(e);
    let v = if sub {
        v * 5.421_010_862_427_522e-20
    } else {
        v
    }; // 2^-64
    let v = if x > 709.782_712_893_384 {
        f64::INFINITY
    } else {
        v
    };
    if x < -745.2 { 0.0 } else { v }
}

/// `eˣ − 1` without cancellation: `x = n ln2 + r`, `|r| ≤ ln2/2`,
/// `m = expm1 r = r + r² P(r)` (Taylor to `r¹³/13!`), then `expm1 x = 2ⁿ m + (2ⁿ − 1)`
/// in one fused multiply–add (`n = 0`: `m` itself; `2ⁿ − 1` is exact for the `n ≥ −58`
/// left after clamping `x` at −40, below which the result rounds to −1). Near the
/// overflow limit (`x > 709`, `n` up to 1024) it is `2·2ⁿ⁻¹ (m + 1)` (the −1 is below
/// its ulp); `inf` beyond; ±0 and NaN are kept.
#[inline(always)]
fn expm1_k64<const F: bool>(x: f64) -> f64 {
    const LOG2E: f64 = std::f64::consts::LOG2_E;
    let xc = x.clamp(-40.0, 709.8);
    let t = fma64::<F>(xc, LOG2E, MAGIC64);
    let n = t - MAGIC64;
    let r = fma64::<F>(-n, LN2_LO, fma64::<F>(-n, LN2_HI, xc));
    let mut p = 1.0 / 6_227_020_800.0;
    p = fma64::<F>(p, r, 1.0 / 479_001_600.0);
    p = fma64::<F>(p, r, 1.0 / 39_916_800.0);
    p = fma64::<F>(p, r, 1.0 / 3_628_800.0);
    p = fma64::<F>(p, r, 1.0 / 362_880.0);
    p = fma64::<F>(p, r, 1.0 / 40_320.0);
    p = fma64::<F>(p, r, 1.0 / 5_040.0);
    p = fma64::<F>(p, r, 1.0 / 720.0);
    p = fma64::<F>(p, r, 1.0 / 120.0);
    p = fma64::<F>(p, r, 1.0 / 24.0);
    p = fma64::<F>(p, r, 1.0 / 6.0);
    p = fma64::<F>(p, r, 0.5);
    let m = fma64::<F>(r * r, p, r);
    // 2ⁿ⁻¹ from the bits (n ≥ −58: a normal number), 2ⁿ = 2·2ⁿ⁻¹ (inf for n = 1024,
    // a lane the select below replaces).
    let h = pow2_from_magic64(t - 1.0);
    let s = h + h;
    let v = fma64::<F>(s, m, s - 1.0);
    let big = (m + 1.0) * h * 2.0;
    let v = if x > 709.0 { big } else { v };
    let v = if x > 709.782_712_893_384 {
        f64::INFINITY
    } else {
        v
    };
    // ±0 (the sum above gives +0 for −0); NaN passes through `m`.
    if x == 0.0 { x } else { v }
}

/// Branch-free `expm1` (`eˣ − 1`) for f64 (see the module's tests for the accuracy).
#[inline(always)]
pub fn expm1_f64(x: f64) -> f64 {
    expm1_k64::<false>(x)
}

/// Branch-free `exp` for f64: `2ⁿ · p(r)`, `x = n ln2 + r`, `|r| ≤ ln2/2`, degree-12
/// Taylor polynomial; `n` extracted with the 1.5·2⁵² rounding trick (no float→int
/// conversion, so the loop vectorises with SSE2). Overflow gives `inf`, underflow 0.
#[inline(always)]
pub fn exp_f64(x: f64) -> f64 {
    exp_k64::<false>(x)
}

/// `tanh`: for `|x| ≥ 0.625`, with `2a = n ln2 + r` and Cephes' Padé-type
/// `eʳ = (q + p)/(q − p)` (`p = r P(r²)`, `q = Q(r²)`), `e^{2a} = 2ⁿ (q + p)/(q − p)` and
/// `tanh a = ((2ⁿ − 1) q + (2ⁿ + 1) p) / ((2ⁿ + 1) q + (2ⁿ − 1) p)`: one division, no
/// cancellation (for `n = 0` it is `p/q`, for `n ≥ 1` both terms are positive).
#[inline(always)]
fn tanh_k64<const F: bool>(x: f64) -> f64 {
    const LOG2E: f64 = std::f64::consts::LOG2_E;
    let ax = x.abs();
    let a = if ax > 20.0 { 20.0 } else { ax }; // keeps NaN
    let a2 = a + a;
    let t = fma64::<F>(a2, LOG2E, MAGIC64);
    let n = t - MAGIC64;
    let r = fma64::<F>(-n, LN2_LO, fma64::<F>(-n, LN2_HI, a2));
    let rr = r * r;
    let p = fma64::<F>(
        fma64::<F>(
            1.261_771_930_748_105_908_78e-4,
            rr,
            3.029_944_077_074_419_613e-2,
        ),
        rr,
        9.999_999_999_999_999_999_1e-1,
    ) * r;
    let q = fma64::<F>(
        fma64::<F>(
            fma64::<F>(
                3.001_985_051_386_644_550_42e-6,
                rr,
                2.524_483_403_496_841_041_92e-3,
            ),
            rr,
            2.272_655_482_081_550_287_66e-1,
        ),
        rr,
        2.000_000_000_000_000_000_09,
    );
    let s = pow2_from_magic64(t);
    let (sm, sp) = (s - 1.0, s + 1.0);
    let num = fma64::<F>(sm, q, sp * p);
    let den = fma64::<F>(sp, q, sm * p);
    // Below 0.625, Cephes' `tanh` rational `x + x z P(z)/Q(z)` (z = x²) is more
    // accurate: select its numerator and denominator, still one division.
    let z = x * x;
    let ps = fma64::<F>(
        fma64::<F>(-9.643_991_794_250_523e-1, z, -9.928_772_310_019_186e1),
        z,
        -1.614_687_684_417_084_5e3,
    );
    let qs = fma64::<F>(
        fma64::<F>(z + 1.128_116_784_916_329_3e2, z, 2.235_488_390_601_004_6e3),
        z,
        4.844_063_053_251_255e3,
    );
    let small = a < 0.625;
    // Select by bits: a plain select of both operands lets LLVM split the quotient into
    // one division per branch (two `vdivpd`), which doubles the cost of the loop.
    let num = select_bits64(small, x * z * ps, num);
    let den = select_bits64(small, qs, den);
    let v = num / den;
    (if small { x + v } else { v }).copysign(x)
}

/// `if c { a } else { b }` through the bit patterns (an integer mask), opaque to the
/// floating-point select folds.
#[inline(always)]
fn select_bits64(c: bool, a: f64, b: f64) -> f64 {
    let m = (c as u64).wrapping_neg();
    f64::from_bits((a.to_bits() & m) | (b.to_bits() & !m))
}

/// Branch-free `tanh` for f64 with a single division (see the module's tests for the
/// accuracy against libm).
#[inline(always)]
pub fn tanh_f64(x: f64) -> f64 {
    tanh_k64::<false>(x)
}

/// `1 / (1 + e⁻ˣ)`.
#[inline(always)]
fn sigmoid_k64<const F: bool>(x: f64) -> f64 {
    1.0 / (1.0 + exp_k64::<F>(-x))
}

/// Branch-free natural logarithm (musl/fdlibm's `log`: `x = 2ᵏ m`, `m ∈ [√½, √2)`,
/// `s = f/(2+f)`, degree-14 odd polynomial in `s`); subnormals, 0, negatives, inf and NaN
/// handled by selects.
#[inline(always)]
fn log_k64<const F: bool>(x: f64) -> f64 {
    const LG1: f64 = 6.666_666_666_666_735_130e-1;
    const LG2: f64 = 3.999_999_999_940_941_908e-1;
    const LG3: f64 = 2.857_142_874_366_239_149e-1;
    const LG4: f64 = 2.222_219_843_214_978_396e-1;
    const LG5: f64 = 1.818_357_216_161_805_012e-1;
    const LG6: f64 = 1.531_383_769_920_937_332e-1;
    const LG7: f64 = 1.479_819_860_511_658_591e-1;
    let tiny = x < f64::MIN_POSITIVE;
    let xs = if tiny {
        x * 18_014_398_509_481_984.0
    } else {
        x
    }; // 2^54
    let ix = xs
        .to_bits()
        .wrapping_add(0x3ff0_0000_0000_0000 - 0x3fe6_a09e_0000_0000);
    let kf = f64::from_bits((ix >> 52) | 0x4330_0000_0000_0000) - 4_503_599_627_370_496.0;
    let k = kf - if tiny { 1023.0 + 54.0 } else { 1023.0 };
    let m = f64::from_bits((ix & 0x000f_ffff_ffff_ffff) + 0x3fe6_a09e_0000_0000);
    let f = m - 1.0;
    let hfsq = 0.5 * f * f;
    let s = f / (2.0 + f);
    let z = s * s;
    let w = z * z;
    let t1 = w * fma64::<F>(w, fma64::<F>(w, LG6, LG4), LG2);
    let t2 = z * fma64::<F>(w, fma64::<F>(w, fma64::<F>(w, LG7, LG5), LG3), LG1);
    let r = t2 + t1;
    let v = fma64::<F>(s, hfsq + r, fma64::<F>(k, LN2_LO, -hfsq)) + f;
    let v = fma64::<F>(k, LN2_HI, v);
    let v = if x == f64::INFINITY { x } else { v };
    if x > 0.0 {
        v
    } else if x == 0.0 {
        f64::NEG_INFINITY
    } else {
        f64::NAN
    }
}

/// Branch-free natural logarithm for f64 (musl's algorithm, within 1 ulp or so).
#[inline(always)]
pub fn log_f64(x: f64) -> f64 {
    log_k64::<false>(x)
}

/// `log(1 + eˣ) = max(x, 0) + log1p(e^{−|x|})`, `log1p(u) = log(w) + (u − (w − 1))/w`
/// with `w = 1 + u` (the correction recovers the bits of `u` lost in `w`).
#[inline(always)]
fn softplus_k64<const F: bool>(x: f64) -> f64 {
    let u = exp_k64::<F>(-x.abs());
    let w = 1.0 + u;
    let l = log_k64::<F>(w) + (u - (w - 1.0)) / w;
    let v = x.max(0.0) + l;
    if x.is_nan() { x } else { v }
}

/// Arguments beyond which `sin`/`cos` fall back to libm (the 3-part Cody–Waite
/// reduction by π/2 is exact below it).
const TRIG_LIMIT: f64 = 1.0e5;

/// `(sin x, cos x)` by reduction to `r ∈ [−π/4, π/4]`, `x = n π/2 + r` (Cody–Waite,
/// Cephes' split of π), Cephes' polynomials for `sin r`, `cos r`, and the quadrant
/// `n mod 4` selecting signs and functions. Valid for `|x| ≤ TRIG_LIMIT`.
#[inline(always)]
fn sincos_k64<const F: bool>(x: f64) -> (f64, f64) {
    const PIO2_1: f64 = 1.570_796_251_296_997_070_31;
    const PIO2_2: f64 = 7.549_789_415_861_596_353_36e-8;
    const PIO2_3: f64 = 5.390_302_858_158_119_052_90e-15;
    const S: [f64; 6] = [
        1.589_623_015_765_465_680_60e-10,
        -2.505_074_776_285_780_728_66e-8,
        2.755_731_362_138_572_452_13e-6,
        -1.984_126_982_958_953_859_96e-4,
        8.333_333_333_322_118_588_78e-3,
        -1.666_666_666_666_663_072_95e-1,
    ];
    const C: [f64; 6] = [
        -1.135_853_652_138_768_173_00e-11,
        2.087_570_084_197_473_167_78e-9,
        -2.755_731_417_929_673_881_12e-7,
        2.480_158_728_885_170_453_48e-5,
        -1.388_888_888_887_305_641_16e-3,
        4.166_666_666_666_659_292_18e-2,
    ];
    let t = fma64::<F>(x, std::f64::consts::FRAC_2_PI, MAGIC64);
    let n = t - MAGIC64;
    let r = fma64::<F>(
        -n,
        PIO2_3,
        fma64::<F>(-n, PIO2_2, fma64::<F>(-n, PIO2_1, x)),
    );
    let z = r * r;
    let mut ps = S[0];
    let mut pc = C[0];
    for k in 1..6 {
        ps = fma64::<F>(ps, z, S[k]);
        pc = fma64::<F>(pc, z, C[k]);
    }
    let sr = fma64::<F>(r * z, ps, r);
    let cr = fma64::<F>(z * z, pc, fma64::<F>(-0.5, z, 1.0));
    let q = t.to_bits() & 3;
    let (s0, c0) = if q & 1 == 0 { (sr, cr) } else { (cr, sr) };
    let s = if q & 2 == 0 { s0 } else { -s0 };
    let c = if (q + 1) & 2 == 0 { c0 } else { -c0 };
    (s, c)
}

/// Fixes up the elements the vector kernel does not cover (|x| beyond `TRIG_LIMIT`, inf,
/// NaN) with libm.
#[inline(always)]
fn trig_fixup<T: Float>(x: &[T], y: &mut [T], f: fn(T) -> T) {
    let lim = T::from_f64_const(TRIG_LIMIT);
    let outside = |v: T| v.abs() > lim || v.is_nan();
    if x.iter().any(|&v| outside(v)) {
        for (y, &x) in y.iter_mut().zip(x) {
            if outside(x) {
                *y = f(x);
            }
        }
    }
}

#[inline(always)]
fn exp_k32<const F: bool>(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_375;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const MAGIC: f32 = 12_582_912.0; // 1.5 · 2^23
    let sub = x < -86.0; // subnormal results: see `exp_k64`
    let xc = x.clamp(-104.0, 88.8);
    let t = fma32::<F>(xc, LOG2E, MAGIC);
    let n = t - MAGIC;
    let r = fma32::<F>(-n, LN2_LO, fma32::<F>(-n, LN2_HI, xc));
    let mut p = 1.0 / 5_040.0;
    p = fma32::<F>(p, r, 1.0 / 720.0);
    p = fma32::<F>(p, r, 1.0 / 120.0);
    p = fma32::<F>(p, r, 1.0 / 24.0);
    p = fma32::<F>(p, r, 1.0 / 6.0);
    p = fma32::<F>(p, r, 0.5);
    p = fma32::<F>(p, r, 1.0);
    p = fma32::<F>(p, r, 1.0);
    let e = if sub { t + 31.0 } else { t - 1.0 };
    let scale = f32::from_bits(e.to_bits().wrapping_add(127) << 23);
    let v = (p + p) * scale; // 2p · 2^(n−1), see `exp_k64`
    let v = if sub { v * 2.328_306_4e-10 } else { v }; // 2^-32
    let v = if x > 88.722_83 { f32::INFINITY } else { v };
    if x < -103.9 { 0.0 } else { v }
}

#[inline(always)]
fn fma32<const F: bool>(a: f32, b: f32, c: f32) -> f32 {
    if F { a.mul_add(b, c) } else { a * b + c }
}

/// Branch-free `exp` for f32 (as [`exp_f64`], degree-7 polynomial, 1.5·2²³ trick).
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    exp_k32::<false>(x)
}

/// `tanh` for f32: Cephes' `tanhf` polynomial below 0.625, `1 − 2/(e^{2|x|} + 1)` above,
/// the two merged into one division.
#[inline(always)]
fn tanh_k32<const F: bool>(x: f32) -> f32 {
    let ax = x.abs();
    let a = if ax > 10.0 { 10.0 } else { ax }; // keeps NaN
    let z = x * x;
    let poly = fma32::<F>(
        fma32::<F>(
            fma32::<F>(
                fma32::<F>(-5.704_988_7e-3, z, 2.063_908_9e-2),
                z,
                -5.373_971_6e-2,
            ),
            z,
            1.333_144_2e-1,
        ),
        z,
        -3.333_328_2e-1,
    );
    let small = fma32::<F>(poly * z, x, x);
    let big = 1.0 - 2.0 / (exp_k32::<F>(a + a) + 1.0);
    // The sign from `x` for both: `small` is `+0` at `x = −0` (`(−0)(−0) + (−0)`).
    (if a < 0.625 { small } else { big }).copysign(x)
}

/// Branch-free `tanh` for f32 (Cephes' `tanhf` polynomial below 0.625).
#[inline(always)]
pub fn tanh_f32(x: f32) -> f32 {
    tanh_k32::<false>(x)
}

/// Runs `$k::<true>` (AVX2+FMA build) or `$k::<false>` over a slice pair, mapping the
/// f32 functions without a native kernel through the f64 one.
macro_rules! slice_kernel {
    ($(#[$m:meta])* $name:ident, $t:ty, |$x:ident| $body:expr) => {
        $(#[$m])*
        #[inline]
        pub(crate) fn $name(x: &[$t], y: &mut [$t]) {
            #[cfg(target_arch = "x86_64")]
            if has_avx512() {
                #[target_feature(enable = "avx512f,avx512dq,avx512vl,avx2,fma")]
                fn wide512(x: &[$t], y: &mut [$t]) {
                    #[allow(non_upper_case_globals)]
                    const F: bool = true;
                    for (y, &$x) in y.iter_mut().zip(x) {
                        *y = $body;
                    }
                }
                // SAFETY: AVX-512 F/DQ/VL, AVX2 and FMA were detected at run time.
                unsafe { wide512(x, y) };
                return;
            }
            #[cfg(target_arch = "x86_64")]
            if has_avx2_fma() {
                #[target_feature(enable = "avx2,fma")]
                fn wide(x: &[$t], y: &mut [$t]) {
                    #[allow(non_upper_case_globals)]
                    const F: bool = true;
                    for (y, &$x) in y.iter_mut().zip(x) {
                        *y = $body;
                    }
                }
                // SAFETY: AVX2 and FMA were detected at run time just above.
                unsafe { wide(x, y) };
                return;
            }
            #[allow(non_upper_case_globals)]
            const F: bool = false;
            for (y, &$x) in y.iter_mut().zip(x) {
                *y = $body;
            }
        }
    };
}

slice_kernel!(
    /// The auto-vectorised `tanh` (both branches, one division per vector); the
    /// AVX-512 path of [`tanh_slice_f64`] runs [`avx512::tanh8`] instead.
    tanh_slice_f64_div, f64, |x| tanh_k64::<F>(x)
);

/// `y = tanh(x)`: the one-branch intrinsic kernel ([`avx512::tanh_slice`],
/// [`avx2::tanh_slice`]) when the CPU has AVX-512 or AVX2+FMA, else the auto-vectorised
/// one.
pub(crate) fn tanh_slice_f64(x: &[f64], y: &mut [f64]) {
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx512() {
            // SAFETY: AVX-512 F/DQ/VL, AVX2 and FMA were detected at run time.
            unsafe { avx512::tanh_slice(x, y) };
            return;
        }
        if has_avx2_fma() {
            // SAFETY: AVX2 and FMA were detected at run time.
            unsafe { avx2::tanh_slice(x, y) };
            return;
        }
    }
    tanh_slice_f64_div(x, y)
}

/// `y = tanh(a + b)` for `b` a row repeated over `a` (`a.len()` a multiple of
/// `b.len()`): the bias add of a layer and its activation in one pass, with no
/// intermediate store. AVX-512 only: returns false (and does nothing) without it.
pub(crate) fn bias_tanh_f64(a: &[f64], b: &[f64], y: &mut [f64]) -> bool {
    debug_assert!(!b.is_empty() && a.len().is_multiple_of(b.len()) && y.len() == a.len());
    #[cfg(target_arch = "x86_64")]
    if has_avx512() {
        // SAFETY: as in `tanh_slice_f64`.
        unsafe { avx512::bias_tanh(a, b, y) };
        return true;
    }
    false
}

/// `tanh` of 8 f64 lanes: the AVX-512 kernel behind the crate's `tanh` slices
/// (`avx512::tanh8`, ≤ 2 ulp), for fused kernels in other crates that apply `tanh` to
/// values still in registers (`adjoint::TanhMlp`'s products).
///
/// From code compiled for those features it inlines.
///
/// # Safety
/// The CPU must have AVX-512 F, DQ, VL, AVX2 and FMA ([`has_avx512`]).
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx512f,avx512dq,avx512vl,avx2,fma")]
pub fn tanh8_f64(x: std::arch::x86_64::__m512d) -> std::arch::x86_64::__m512d {
    avx512::tanh8(x)
}

/// `tanh` of 4 f64 lanes: the AVX2 kernel behind the crate's `tanh` slices on CPUs
/// without AVX-512 (`avx2::tanh4`, ≤ 2 ulp), for fused kernels in other crates (as
/// [`tanh8_f64`]).
///
/// # Safety
/// The CPU must have AVX2 and FMA ([`has_avx2_fma`]).
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2,fma")]
pub fn tanh4_f64(x: std::arch::x86_64::__m256d) -> std::arch::x86_64::__m256d {
    avx2::tanh4(x)
}

/// [`tanh4_f64`] of `N` vectors, their computations interleaved step by step (bit for
/// bit the same results): `N` times the independent work in flight for the division's
/// latency.
///
/// # Safety
/// As [`tanh4_f64`].
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2,fma")]
pub fn tanh4n_f64<const N: usize>(
    x: [std::arch::x86_64::__m256d; N],
) -> [std::arch::x86_64::__m256d; N] {
    avx2::tanh4n(x)
}

/// AVX-512 intrinsic kernels (`tanh`).
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512;

/// AVX2 + FMA intrinsic kernels (`tanh`).
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2;
slice_kernel!(exp_slice_f64, f64, |x| exp_k64::<F>(x));
slice_kernel!(
    /// `y = eˣ − 1` (vectorised, no cancellation near 0).
    expm1_slice_f64, f64, |x| expm1_k64::<F>(x)
);
slice_kernel!(
    /// `y = eˣ − 1` for f32 through the f64 kernel.
    expm1_slice_f32, f32, |x| expm1_k64::<F>(x as f64) as f32
);
slice_kernel!(sigmoid_slice_f64, f64, |x| sigmoid_k64::<F>(x));
slice_kernel!(log_slice_f64, f64, |x| log_k64::<F>(x));
slice_kernel!(softplus_slice_f64, f64, |x| softplus_k64::<F>(x));
slice_kernel!(sin_slice_f64_raw, f64, |x| sincos_k64::<F>(x).0);
slice_kernel!(cos_slice_f64_raw, f64, |x| sincos_k64::<F>(x).1);
slice_kernel!(
    /// The auto-vectorised f32 `tanh`; the AVX-512 path of [`tanh_slice_f32`] runs
    /// [`avx512::tanh16`] instead.
    tanh_slice_f32_div, f32, |x| tanh_k32::<F>(x)
);

/// `y = tanh(x)` for f32: [`avx512::tanh16`] when the CPU has AVX-512, else the
/// auto-vectorised kernel.
pub(crate) fn tanh_slice_f32(x: &[f32], y: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if has_avx512() {
        // SAFETY: AVX-512 F/DQ/VL, AVX2 and FMA were detected at run time.
        unsafe { avx512::tanh_slice_f32(x, y) };
        return;
    }
    tanh_slice_f32_div(x, y)
}
slice_kernel!(exp_slice_f32, f32, |x| exp_k32::<F>(x));
slice_kernel!(sigmoid_slice_f32, f32, |x| 1.0 / (1.0 + exp_k32::<F>(-x)));
slice_kernel!(log_slice_f32, f32, |x| log_k64::<F>(x as f64) as f32);
slice_kernel!(softplus_slice_f32, f32, |x| softplus_k64::<F>(x as f64)
    as f32);
slice_kernel!(sin_slice_f32_raw, f32, |x| sincos_k64::<F>(x as f64).0
    as f32);
slice_kernel!(cos_slice_f32_raw, f32, |x| sincos_k64::<F>(x as f64).1
    as f32);

pub(crate) fn sin_slice_f64(x: &[f64], y: &mut [f64]) {
    sin_slice_f64_raw(x, y);
    trig_fixup(x, y, f64::sin);
}
pub(crate) fn cos_slice_f64(x: &[f64], y: &mut [f64]) {
    cos_slice_f64_raw(x, y);
    trig_fixup(x, y, f64::cos);
}
pub(crate) fn sin_slice_f32(x: &[f32], y: &mut [f32]) {
    sin_slice_f32_raw(x, y);
    trig_fixup(x, y, f32::sin);
}
pub(crate) fn cos_slice_f32(x: &[f32], y: &mut [f32]) {
    cos_slice_f32_raw(x, y);
    trig_fixup(x, y, f32::cos);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Error in units of `ε·|reference|` (at most one true ulp, at least half).
    fn ulps64(a: f64, b: f64) -> f64 {
        if a == b || (a.is_nan() && b.is_nan()) {
            return 0.0;
        }
        (a - b).abs() / (f64::EPSILON * b.abs().max(f64::MIN_POSITIVE))
    }
    fn ulps32(a: f32, b: f32) -> f64 {
        if a == b || (a.is_nan() && b.is_nan()) {
            return 0.0;
        }
        ((a - b).abs() / (f32::EPSILON * b.abs().max(f32::MIN_POSITIVE))) as f64
    }

    /// Dense grid on `[-lim, lim]`, geometric sweeps toward 0 and toward large values,
    /// and the special values.
    fn points(lim: f64) -> Vec<f64> {
        let mut v: Vec<f64> = (0..=200_000)
            .map(|i| -lim + 2.0 * lim * i as f64 / 200_000.0)
            .collect();
        let mut x = 1e-300;
        while x < 1e300 {
            v.push(x);
            v.push(-x);
            x *= 1.013;
        }
        v.extend([
            0.0,
            -0.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            5e-324,
        ]);
        v
    }

    fn lib_softplus(x: f64) -> f64 {
        x.max(0.0) + (-x.abs()).exp().ln_1p()
    }

    type Pair = (
        &'static str,
        fn(&[f64], &mut [f64]),
        fn(f64) -> f64,
        f64,
        f64,
    );

    /// Every f64 slice kernel (the AVX2+FMA build on this machine when available) and
    /// every scalar kernel without FMA, against libm.
    #[test]
    fn f64_kernels_match_libm() {
        let cases: [Pair; 8] = [
            ("tanh", tanh_slice_f64, f64::tanh, 30.0, 2.0),
            ("expm1", expm1_slice_f64, f64::exp_m1, 750.0, 2.0),
            ("exp", exp_slice_f64, f64::exp, 750.0, 2.0),
            (
                "sigmoid",
                sigmoid_slice_f64,
                |x| 1.0 / (1.0 + (-x).exp()),
                750.0,
                3.0,
            ),
            ("log", log_slice_f64, f64::ln, 1e4, 1.0),
            ("softplus", softplus_slice_f64, lib_softplus, 800.0, 2.0),
            ("sin", sin_slice_f64, f64::sin, 1e3, 1.0),
            ("cos", cos_slice_f64, f64::cos, 1e3, 1.0),
        ];
        let mut fails = vec![];
        for (name, kernel, lib, lim, bound) in cases {
            let x = points(lim);
            let mut y = vec![0.0; x.len()];
            kernel(&x, &mut y);
            let mut worst = (0.0, 0.0);
            for (&x, &y) in x.iter().zip(&y) {
                let r = lib(x);
                // sin/cos: absolute error near their zeros (libm is not exact there either).
                let e = if name == "sin" || name == "cos" {
                    ulps64(y, r).min((y - r).abs() / f64::EPSILON)
                } else {
                    ulps64(y, r)
                };
                if e > worst.0 || (r.is_nan() != y.is_nan()) {
                    worst = (
                        if r.is_nan() != y.is_nan() {
                            f64::INFINITY
                        } else {
                            e
                        },
                        x,
                    );
                }
            }
            eprintln!(
                "f64 {name}: worst {} ulp at x = {} (bound {bound})",
                worst.0, worst.1
            );
            fails.push(worst.0 > bound);
        }
        assert!(!fails.iter().any(|&f| f), "{fails:?}");
        // The scalar kernels without FMA (the path of CPUs without AVX2+FMA).
        let mut worst = [0f64; 8];
        for x in points(30.0) {
            let s = [
                ulps64(expm1_k64::<false>(x * 25.0), (x * 25.0).exp_m1()),
                ulps64(tanh_k64::<false>(x), x.tanh()),
                ulps64(exp_k64::<false>(x), x.exp()),
                ulps64(sigmoid_k64::<false>(x), 1.0 / (1.0 + (-x).exp())),
                ulps64(log_k64::<false>(x.abs()), x.abs().ln()),
                ulps64(softplus_k64::<false>(x), lib_softplus(x)),
                (sincos_k64::<false>(x).0 - x.sin()).abs() / f64::EPSILON,
                (sincos_k64::<false>(x).1 - x.cos()).abs() / f64::EPSILON,
            ];
            if x.abs() <= TRIG_LIMIT || x.is_nan() {
                for (w, e) in worst.iter_mut().zip(s) {
                    *w = w.max(if e.is_nan() { 0.0 } else { e });
                }
            } else {
                for (w, e) in worst.iter_mut().zip(s).take(6) {
                    *w = w.max(e);
                }
            }
        }
        eprintln!("no-FMA f64 kernels (expm1 tanh exp sigmoid log softplus sin cos): {worst:?}");
        assert!(worst.iter().all(|&w| w <= 3.0), "no-FMA kernels: {worst:?}");
        assert_eq!(tanh_f64(-30.0), -1.0);
        assert_eq!(exp_f64(710.0), f64::INFINITY);
        assert_eq!(exp_f64(-800.0), 0.0);
        assert_eq!(log_f64(0.0), f64::NEG_INFINITY);
        assert!(log_f64(-1.0).is_nan() && tanh_f64(f64::NAN).is_nan());
        assert!(tanh_f64(-0.0).is_sign_negative());
        let mut y = [0.0; 9];
        expm1_slice_f64(
            &[
                0.0,
                -0.0,
                f64::INFINITY,
                f64::NEG_INFINITY,
                5e-324,
                -5e-324,
                709.9,
                -1e300,
                1e300,
            ],
            &mut y,
        );
        assert_eq!(
            y.map(f64::to_bits),
            [
                0.0,
                -0.0,
                f64::INFINITY,
                -1.0,
                5e-324,
                -5e-324,
                f64::INFINITY,
                -1.0,
                f64::INFINITY
            ]
            .map(f64::to_bits)
        );
        assert!(expm1_f64(f64::NAN).is_nan());
    }

    /// The one-branch intrinsic `tanh` (AVX-512 or AVX2, when the CPU has it) against libm and against
    /// the dividing kernel, on the accuracy grid plus the special values and the branch
    /// points (`|x|` near 0.625 and 20); and the fused bias kernel against `a + b` then
    /// `tanh` (bit for bit).
    #[test]
    fn tanh_without_division() {
        let mut x = points(30.0);
        for c in [0.625f64, 20.0] {
            let mut v = c;
            let mut w = c;
            for _ in 0..2000 {
                x.extend([v, -v, w, -w]);
                v = f64::from_bits(v.to_bits() + 1);
                w = f64::from_bits(w.to_bits() - 1);
            }
        }
        x.extend([
            f64::MAX,
            -f64::MAX,
            1e300,
            -1e300,
            f64::MIN_POSITIVE,
            -f64::MIN_POSITIVE,
            -5e-324,
            2.2e-308,
            1e-160,
            f64::from_bits(0x7ff8_0000_0000_0001),
        ]);
        // Every tail length of the masked loop.
        for tail in 0..9 {
            let xs = &x[..x.len() - tail];
            let (mut y, mut yd) = (vec![0.0; xs.len()], vec![0.0; xs.len()]);
            tanh_slice_f64(xs, &mut y);
            tanh_slice_f64_div(xs, &mut yd);
            let (mut worst, mut apart) = (0f64, 0u64);
            for ((&x, &y), &yd) in xs.iter().zip(&y).zip(&yd) {
                let r = x.tanh();
                assert_eq!(y.is_nan(), r.is_nan(), "x = {x}");
                if r.is_nan() {
                    continue;
                }
                assert_eq!(y.is_sign_negative(), r.is_sign_negative(), "x = {x}");
                worst = worst.max(ulps64(y, r));
                apart = apart.max(y.to_bits().abs_diff(yd.to_bits()));
            }
            assert!(worst <= 2.0, "tail {tail}: {worst} ulp from libm");
            assert!(
                apart <= 4,
                "tail {tail}: {apart} ulp from the dividing kernel"
            );
            if tail == 0 {
                eprintln!(
                    "f64 tanh (AVX-512: {}, AVX2: {}): worst {worst} ulp; dividing kernel ≤ {apart} ulp apart",
                    has_avx512(),
                    has_avx2_fma()
                );
            }
        }
        let mut y = [1.0; 6];
        tanh_slice_f64(
            &[0.0, -0.0, f64::INFINITY, f64::NEG_INFINITY, 5e-324, -5e-324],
            &mut y,
        );
        assert_eq!(
            y.map(f64::to_bits),
            [0.0, -0.0, 1.0, -1.0, 5e-324, -5e-324].map(f64::to_bits)
        );
        // Fused bias add: rows of 1, 5, 8, 13 and 64 (tails of the row loop).
        for lb in [1usize, 5, 8, 13, 64] {
            let a: Vec<f64> = x
                .iter()
                .take(lb * 37)
                .map(|v| v.clamp(-40.0, 40.0))
                .collect();
            let b: Vec<f64> = (0..lb).map(|j| 0.3 * j as f64 - 1.1).collect();
            let sum: Vec<f64> = a.iter().enumerate().map(|(i, &v)| v + b[i % lb]).collect();
            let (mut y, mut want) = (vec![0.0; a.len()], vec![0.0; a.len()]);
            tanh_slice_f64(&sum, &mut want);
            if !bias_tanh_f64(&a, &b, &mut y) {
                continue;
            }
            assert_eq!(
                y.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                "row length {lb}"
            );
        }
    }

    /// The interleaved AVX2 `tanh` of `N` vectors (`tanh4n_f64`, the fused kernels'
    /// epilogue) is bit for bit `tanh4_f64` of each, for `N` = 1 … 4, on the accuracy
    /// grid and the special values.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn tanh4n_is_tanh4_bit_for_bit() {
        use std::arch::x86_64::{__m256d, _mm256_loadu_pd, _mm256_storeu_pd};
        if !has_avx2_fma() {
            return;
        }
        let mut x = points(30.0);
        x.extend([
            0.0,
            -0.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            5e-324,
            0.3465,
        ]);
        while !x.len().is_multiple_of(16) {
            x.push(0.5);
        }
        /// `tanh4n` on `N` vectors from `x`, and `tanh4` on each, as bits.
        #[target_feature(enable = "avx2,fma")]
        fn both<const N: usize>(x: &[f64]) -> (Vec<u64>, Vec<u64>) {
            let (mut a, mut b) = (vec![0.0; 4 * N], vec![0.0; 4 * N]);
            // SAFETY: `x`, `a` and `b` hold `4 N` values.
            unsafe {
                let v: [__m256d; N] =
                    core::array::from_fn(|i| _mm256_loadu_pd(x[4 * i..].as_ptr()));
                for (i, y) in tanh4n_f64(v).into_iter().enumerate() {
                    _mm256_storeu_pd(a[4 * i..].as_mut_ptr(), y);
                    _mm256_storeu_pd(b[4 * i..].as_mut_ptr(), tanh4_f64(v[i]));
                }
            }
            let bits = |v: Vec<f64>| v.into_iter().map(f64::to_bits).collect();
            (bits(a), bits(b))
        }
        for c in x.chunks(16) {
            // SAFETY: AVX2 and FMA were detected above.
            unsafe {
                for (n, (a, b)) in [both::<1>(c), both::<2>(c), both::<3>(c), both::<4>(c)]
                    .into_iter()
                    .enumerate()
                {
                    assert_eq!(a, b, "N = {}, x = {:?}", n + 1, &c[..4 * (n + 1)]);
                }
            }
        }
    }

    /// The AVX-512 f32 `tanh` (when the CPU has it) against libm on the grid, every tail
    /// length, the branch point `|x| = ln2/2` and the special values.
    #[test]
    fn tanh_f32_one_branch() {
        let mut x: Vec<f32> = points(12.0).iter().map(|&v| v as f32).collect();
        for c in [0.346_573_6f32, 0.625, 10.0] {
            let (mut v, mut w) = (c, c);
            for _ in 0..2000 {
                x.extend([v, -v, w, -w]);
                v = f32::from_bits(v.to_bits() + 1);
                w = f32::from_bits(w.to_bits() - 1);
            }
        }
        x.extend([f32::MAX, -f32::MAX, f32::MIN_POSITIVE, 1e-45, -1e-45, 1e-20]);
        for tail in 0..17 {
            let xs = &x[..x.len() - tail];
            let mut y = vec![0.0f32; xs.len()];
            tanh_slice_f32(xs, &mut y);
            let mut worst = 0f64;
            for (&x, &y) in xs.iter().zip(&y) {
                let r = x.tanh();
                assert_eq!(y.is_nan(), r.is_nan(), "x = {x}");
                if !r.is_nan() {
                    assert_eq!(y.is_sign_negative(), r.is_sign_negative(), "x = {x}");
                    worst = worst.max(ulps32(y, r));
                }
            }
            assert!(worst <= 3.0, "tail {tail}: {worst} ulp");
            if tail == 0 {
                eprintln!("f32 tanh (AVX-512: {}): worst {worst} ulp", has_avx512());
            }
        }
        let mut y = [1.0f32; 4];
        tanh_slice_f32(&[0.0, -0.0, f32::INFINITY, f32::NEG_INFINITY], &mut y);
        assert_eq!(
            y.map(f32::to_bits),
            [0.0f32, -0.0, 1.0, -1.0].map(f32::to_bits)
        );
    }

    #[test]
    fn f32_kernels_match_libm() {
        type P32 = (
            &'static str,
            fn(&[f32], &mut [f32]),
            fn(f32) -> f32,
            f64,
            f64,
        );
        let cases: [P32; 8] = [
            ("tanh", tanh_slice_f32, f32::tanh, 12.0, 3.0),
            ("expm1", expm1_slice_f32, f32::exp_m1, 100.0, 1.0),
            ("exp", exp_slice_f32, f32::exp, 100.0, 2.0),
            (
                "sigmoid",
                sigmoid_slice_f32,
                |x| 1.0 / (1.0 + (-x).exp()),
                100.0,
                3.0,
            ),
            ("log", log_slice_f32, f32::ln, 1e4, 1.0),
            (
                "softplus",
                softplus_slice_f32,
                |x| (x as f64).max(0.0) as f32 + ((-(x as f64).abs()).exp().ln_1p()) as f32,
                100.0,
                2.0,
            ),
            ("sin", sin_slice_f32, f32::sin, 1e3, 1.0),
            ("cos", cos_slice_f32, f32::cos, 1e3, 1.0),
        ];
        let mut fails = vec![];
        for (name, kernel, lib, lim, bound) in cases {
            let x: Vec<f32> = points(lim).iter().map(|&v| v as f32).collect();
            let mut y = vec![0.0f32; x.len()];
            kernel(&x, &mut y);
            let mut worst = (0.0, 0.0f32);
            for (&x, &y) in x.iter().zip(&y) {
                let r = lib(x);
                let e = if name == "sin" || name == "cos" {
                    ulps32(y, r).min(((y - r).abs() / f32::EPSILON) as f64)
                } else {
                    ulps32(y, r)
                };
                let e = if r.is_nan() != y.is_nan() {
                    f64::INFINITY
                } else {
                    e
                };
                if e > worst.0 {
                    worst = (e, x);
                }
            }
            eprintln!(
                "f32 {name}: worst {} ulp at x = {} (bound {bound})",
                worst.0, worst.1
            );
            fails.push(worst.0 > bound);
        }
        assert!(!fails.iter().any(|&f| f), "{fails:?}");
        let mut worst = 0f64;
        for x in points(12.0) {
            let x = x as f32;
            worst = worst.max(ulps32(tanh_k32::<false>(x), x.tanh()));
            worst = worst.max(ulps32(exp_k32::<false>(x * 7.0), (x * 7.0).exp()));
        }
        eprintln!("no-FMA f32 tanh/exp: {worst} ulp");
        assert!(worst <= 3.0, "no-FMA f32 kernels: {worst} ulp");
        assert!(exp_f32(f32::NAN).is_nan() && tanh_f32(f32::NAN).is_nan());
    }
}
