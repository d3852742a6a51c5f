//! Slice kernels for the elementwise transcendentals, and the AVX state reset after GEMM.
#![allow(clippy::excessive_precision)] // constants and coefficients as published (Cephes)

use crate::Float;

/// Clears the upper halves of the vector registers after faer's AVX code, so that the
/// following SSE-encoded elementwise code pays no transition penalty (see CRATES.md).
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
/// then run a copy of the same branch-free code compiled for 256-bit vectors.
#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) fn has_avx2_fma() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

/// `y = tanh(x)` elementwise (branch-free, vectorisable; within a few ulp of libm).
#[inline]
pub(crate) fn tanh<T: Float>(x: &[T], y: &mut [T]) {
    T::tanh_slice(x, y)
}

/// `y = exp(x)` elementwise (branch-free, vectorisable; within a few ulp of libm).
#[inline]
pub(crate) fn exp<T: Float>(x: &[T], y: &mut [T]) {
    T::exp_slice(x, y)
}

/// `y = 1 / (1 + exp(-x))` elementwise.
#[inline]
pub(crate) fn sigmoid<T: Float>(x: &[T], y: &mut [T]) {
    T::exp_slice(x, y);
    // y = e^x / (1 + e^x) loses nothing for x < 0; for x > 0 use 1 / (1 + e^{-x}).
    for (y, &x) in y.iter_mut().zip(x) {
        let e = *y;
        let pos = T::one() / (T::one() + T::one() / e);
        let neg = e / (T::one() + e);
        *y = if x > T::zero() { pos } else { neg };
    }
}

/// Branch-free `exp` for f64: `2ⁿ · p(r)`, `x = n ln2 + r`, `|r| ≤ ln2/2`, degree-12
/// Taylor polynomial; `n` extracted with the 1.5·2⁵² rounding trick (no float→int
/// conversion, so the loop vectorises with SSE2). Overflow gives `inf`, underflow 0.
#[inline(always)]
pub fn exp_f64(x: f64) -> f64 {
    const LOG2E: f64 = std::f64::consts::LOG2_E;
    const LN2_HI: f64 = 6.931_471_803_691_238_164_9e-1;
    const LN2_LO: f64 = 1.908_214_929_270_587_700_02e-10;
    const MAGIC: f64 = 6_755_399_441_055_744.0; // 1.5 · 2^52
    let xc = x.clamp(-708.0, 709.0);
    let t = xc * LOG2E + MAGIC;
    let n = t - MAGIC;
    let r = xc - n * LN2_HI - n * LN2_LO;
    let mut p = 1.0 / 479_001_600.0;
    p = p * r + 1.0 / 39_916_800.0;
    p = p * r + 1.0 / 3_628_800.0;
    p = p * r + 1.0 / 362_880.0;
    p = p * r + 1.0 / 40_320.0;
    p = p * r + 1.0 / 5_040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    let scale = f64::from_bits(t.to_bits().wrapping_add(1023) << 52);
    let v = p * scale;
    let v = if x > 709.782_712_893_384 {
        f64::INFINITY
    } else {
        v
    };
    if x < -745.2 { 0.0 } else { v }
}

/// Branch-free `exp` for f32 (as [`exp_f64`], degree-7 polynomial, 1.5·2²³ trick).
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_375;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const MAGIC: f32 = 12_582_912.0; // 1.5 · 2^23
    let xc = x.clamp(-87.0, 88.0);
    let t = xc * LOG2E + MAGIC;
    let n = t - MAGIC;
    let r = xc - n * LN2_HI - n * LN2_LO;
    let mut p = 1.0 / 5_040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    let scale = f32::from_bits(t.to_bits().wrapping_add(127) << 23);
    let v = p * scale;
    let v = if x > 88.722_83 { f32::INFINITY } else { v };
    if x < -103.9 { 0.0 } else { v }
}

/// Branch-free `tanh` for f64: Cephes' rational `x + x z P(z)/Q(z)` (`z = x²`) for
/// `|x| < 0.625`, `1 − 2/(e^{2|x|} + 1)` with the sign restored otherwise.
#[inline(always)]
pub fn tanh_f64(x: f64) -> f64 {
    let ax = x.abs();
    let a = if ax > 20.0 { 20.0 } else { ax }; // keeps NaN
    let z = x * x;
    let p =
        (-9.643_991_794_250_523e-1 * z - 9.928_772_310_019_186e1) * z - 1.614_687_684_417_084_5e3;
    let q = ((z + 1.128_116_784_916_329_3e2) * z + 2.235_488_390_601_004_6e3) * z
        + 4.844_063_053_251_255e3;
    let small = x + x * z * p / q;
    let big = 1.0 - 2.0 / (exp_f64(2.0 * a) + 1.0);
    let big = big.copysign(x);
    if a < 0.625 { small } else { big }
}

/// Branch-free `tanh` for f32 (Cephes' `tanhf` polynomial below 0.625).
#[inline(always)]
pub fn tanh_f32(x: f32) -> f32 {
    let ax = x.abs();
    let a = if ax > 10.0 { 10.0 } else { ax }; // keeps NaN
    let z = x * x;
    let small =
        ((((-5.704_988_7e-3 * z + 2.063_908_9e-2) * z - 5.373_971_6e-2) * z + 1.333_144_2e-1) * z
            - 3.333_328_2e-1)
            * z
            * x
            + x;
    let big = (1.0 - 2.0 / (exp_f32(2.0 * a) + 1.0)).copysign(x);
    if a < 0.625 { small } else { big }
}

/// `y = log(1 + exp(x))` elementwise, stable for large `|x|`.
#[inline]
pub(crate) fn softplus<T: Float>(x: &[T], y: &mut [T]) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y = x.max(T::zero()) + (-x.abs()).exp().ln_1p();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps64(a: f64, b: f64) -> f64 {
        if a == b {
            return 0.0;
        }
        (a - b).abs() / (f64::EPSILON * b.abs().max(f64::MIN_POSITIVE))
    }
    fn ulps32(a: f32, b: f32) -> f64 {
        if a == b {
            return 0.0;
        }
        ((a - b).abs() / (f32::EPSILON * b.abs().max(f32::MIN_POSITIVE))) as f64
    }

    #[test]
    fn fast_functions_match_libm() {
        let (mut e64, mut t64, mut e32, mut t32) = (0f64, 0f64, 0f64, 0f64);
        for i in 0..=400_000 {
            let x = -40.0 + 80.0 * i as f64 / 400_000.0;
            e64 = e64.max(ulps64(exp_f64(x * 10.0), (x * 10.0).exp()));
            t64 = t64.max(ulps64(tanh_f64(x), x.tanh()));
            let xf = x as f32;
            e32 = e32.max(ulps32(exp_f32(xf * 2.0), (xf * 2.0).exp()));
            t32 = t32.max(ulps32(tanh_f32(xf), xf.tanh()));
        }
        // small arguments (relative accuracy near 0)
        for i in 1..2000 {
            let x = 1e-9 * 1.01f64.powi(i);
            t64 = t64.max(ulps64(tanh_f64(x), x.tanh()));
            t64 = t64.max(ulps64(tanh_f64(-x), (-x).tanh()));
            t32 = t32.max(ulps32(tanh_f32(x as f32), (x as f32).tanh()));
        }
        assert!(e64 <= 4.0, "exp f64 {e64} ulp");
        assert!(t64 <= 4.0, "tanh f64 {t64} ulp");
        assert!(e32 <= 4.0, "exp f32 {e32} ulp");
        assert!(t32 <= 4.0, "tanh f32 {t32} ulp");
        assert_eq!(exp_f64(710.0), f64::INFINITY);
        assert_eq!(exp_f64(-800.0), 0.0);
        assert!(exp_f64(f64::NAN).is_nan() && tanh_f64(f64::NAN).is_nan());
        assert!(exp_f32(f32::NAN).is_nan() && tanh_f32(f32::NAN).is_nan());
        assert_eq!(tanh_f64(-30.0), -1.0);
    }

    #[test]
    fn dispatched_slice_kernels_match_libm() {
        let x: Vec<f64> = (0..10_001)
            .map(|i| -12.0 + 24.0 * i as f64 / 10_000.0)
            .collect();
        let mut y = vec![0.0; x.len()];
        f64::tanh_slice(&x, &mut y);
        let t = x
            .iter()
            .zip(&y)
            .map(|(&x, &y)| ulps64(y, x.tanh()))
            .fold(0.0, f64::max);
        f64::exp_slice(&x, &mut y);
        let e = x
            .iter()
            .zip(&y)
            .map(|(&x, &y)| ulps64(y, x.exp()))
            .fold(0.0, f64::max);
        assert!(t <= 4.0 && e <= 4.0, "tanh {t} ulp, exp {e} ulp");
        let xf: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let mut yf = vec![0.0f32; x.len()];
        f32::tanh_slice(&xf, &mut yf);
        let t = xf
            .iter()
            .zip(&yf)
            .map(|(&x, &y)| ulps32(y, x.tanh()))
            .fold(0.0, f64::max);
        f32::exp_slice(&xf, &mut yf);
        let e = xf
            .iter()
            .zip(&yf)
            .map(|(&x, &y)| ulps32(y, x.exp()))
            .fold(0.0, f64::max);
        assert!(t <= 4.0 && e <= 4.0, "f32: tanh {t} ulp, exp {e} ulp");
    }
}
