//! The scalar types the tapes work in: `f32` and `f64`.

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use std::fmt::{Debug, Display};
use std::iter::Sum;

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// A floating-point element type (`f32` or `f64`), with the slice kernels the tape uses.
pub trait Float:
    num_traits::Float
    + num_traits::FloatConst
    + num_traits::NumAssign
    + Default
    + Debug
    + Display
    + Send
    + Sync
    + Sum
    + 'static
    + sealed::Sealed
{
    /// Converts from `f64` (rounding for `f32`).
    fn of(x: f64) -> Self;
    /// Converts to `f64`.
    fn to_f64_(self) -> f64;

    /// `C (+)= alpha · op(A) · op(B)` on row-major slices, where `op(A)` is `m × k`
    /// (`A` stored `k × m` when `ta`), `op(B)` is `k × n`; `accumulate` adds to `C`.
    fn gemm(
        c: &mut [Self],
        m: usize,
        n: usize,
        k: usize,
        a: &[Self],
        ta: bool,
        b: &[Self],
        tb: bool,
        accumulate: bool,
    );

    /// `y = tanh(x)` over slices (vectorised branch-free kernel).
    fn tanh_slice(x: &[Self], y: &mut [Self]);
    /// `y = exp(x)` over slices (vectorised branch-free kernel).
    fn exp_slice(x: &[Self], y: &mut [Self]);
}

macro_rules! impl_float {
    ($t:ty, $tanh:path, $exp:path) => {
        impl Float for $t {
            fn tanh_slice(x: &[Self], y: &mut [Self]) {
                #[cfg(target_arch = "x86_64")]
                if crate::vmath::has_avx2_fma() {
                    #[target_feature(enable = "avx2,fma")]
                    fn wide(x: &[$t], y: &mut [$t]) {
                        for (y, &x) in y.iter_mut().zip(x) {
                            *y = $tanh(x);
                        }
                    }
                    // SAFETY: AVX2 and FMA were detected at run time just above.
                    unsafe { wide(x, y) };
                    return;
                }
                for (y, &x) in y.iter_mut().zip(x) {
                    *y = $tanh(x);
                }
            }
            fn exp_slice(x: &[Self], y: &mut [Self]) {
                #[cfg(target_arch = "x86_64")]
                if crate::vmath::has_avx2_fma() {
                    #[target_feature(enable = "avx2,fma")]
                    fn wide(x: &[$t], y: &mut [$t]) {
                        for (y, &x) in y.iter_mut().zip(x) {
                            *y = $exp(x);
                        }
                    }
                    // SAFETY: AVX2 and FMA were detected at run time just above.
                    unsafe { wide(x, y) };
                    return;
                }
                for (y, &x) in y.iter_mut().zip(x) {
                    *y = $exp(x);
                }
            }
            #[inline(always)]
            fn of(x: f64) -> Self {
                x as $t
            }
            #[inline(always)]
            fn to_f64_(self) -> f64 {
                self as f64
            }
            fn gemm(
                c: &mut [Self],
                m: usize,
                n: usize,
                k: usize,
                a: &[Self],
                ta: bool,
                b: &[Self],
                tb: bool,
                accumulate: bool,
            ) {
                debug_assert!(c.len() >= m * n && a.len() >= m * k && b.len() >= k * n);
                if m == 0 || n == 0 {
                    return;
                }
                if k == 0 {
                    if !accumulate {
                        c[..m * n].fill(0.0);
                    }
                    return;
                }
                let av = if ta {
                    MatRef::from_row_major_slice(&a[..m * k], k, m).transpose()
                } else {
                    MatRef::from_row_major_slice(&a[..m * k], m, k)
                };
                let bv = if tb {
                    MatRef::from_row_major_slice(&b[..k * n], n, k).transpose()
                } else {
                    MatRef::from_row_major_slice(&b[..k * n], k, n)
                };
                let cv = MatMut::from_row_major_slice_mut(&mut c[..m * n], m, n);
                let acc = if accumulate {
                    Accum::Add
                } else {
                    Accum::Replace
                };
                matmul(cv, acc, av, bv, 1.0, Par::Seq);
                crate::vmath::zero_upper();
            }
        }
    };
}

impl_float!(f32, crate::vmath::tanh_f32, crate::vmath::exp_f32);
impl_float!(f64, crate::vmath::tanh_f64, crate::vmath::exp_f64);
