//! The scalar types the tapes work in: `f32` and `f64`.

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// A floating-point element type (`f32` or `f64`): the workspace's one scalar trait
/// [`Real`](real::Real) plus the slice kernels the tape uses.
///
/// Conversions are `Real`'s: [`Real::from_f64_const`](real::Real::from_f64_const) and
/// [`Real::to_f64_lossy`](real::Real::to_f64_lossy). Sealed: the kernels exist for `f32`
/// and `f64` only.
pub trait Float: real::Real + sealed::Sealed {
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

    /// `y = tanh(x)` over slices (vectorised branch-free kernel, AVX2+FMA when the CPU
    /// has it; a few ulp from libm).
    fn tanh_slice(x: &[Self], y: &mut [Self]);
    /// `y = exp(x)` over slices (vectorised branch-free kernel).
    fn exp_slice(x: &[Self], y: &mut [Self]);
    /// `y = 1 / (1 + exp(−x))` over slices (vectorised).
    fn sigmoid_slice(x: &[Self], y: &mut [Self]);
    /// `y = log(x)` over slices (vectorised; `−inf` at 0, NaN below).
    fn log_slice(x: &[Self], y: &mut [Self]);
    /// `y = log(1 + exp(x))` over slices (vectorised, stable for large `|x|`).
    fn softplus_slice(x: &[Self], y: &mut [Self]);
    /// `y = sin(x)` over slices (vectorised for `|x| ≤ 10⁵`, libm beyond).
    fn sin_slice(x: &[Self], y: &mut [Self]);
    /// `y = cos(x)` over slices (vectorised for `|x| ≤ 10⁵`, libm beyond).
    fn cos_slice(x: &[Self], y: &mut [Self]);
}

macro_rules! impl_float {
    ($t:ty, $m:ident) => {
        impl Float for $t {
            #[inline]
            fn tanh_slice(x: &[Self], y: &mut [Self]) {
                $m::tanh(x, y)
            }
            #[inline]
            fn exp_slice(x: &[Self], y: &mut [Self]) {
                $m::exp(x, y)
            }
            #[inline]
            fn sigmoid_slice(x: &[Self], y: &mut [Self]) {
                $m::sigmoid(x, y)
            }
            #[inline]
            fn log_slice(x: &[Self], y: &mut [Self]) {
                $m::log(x, y)
            }
            #[inline]
            fn softplus_slice(x: &[Self], y: &mut [Self]) {
                $m::softplus(x, y)
            }
            #[inline]
            fn sin_slice(x: &[Self], y: &mut [Self]) {
                $m::sin(x, y)
            }
            #[inline]
            fn cos_slice(x: &[Self], y: &mut [Self]) {
                $m::cos(x, y)
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

mod k32 {
    pub(super) use crate::vmath::{
        cos_slice_f32 as cos, exp_slice_f32 as exp, log_slice_f32 as log,
        sigmoid_slice_f32 as sigmoid, sin_slice_f32 as sin, softplus_slice_f32 as softplus,
        tanh_slice_f32 as tanh,
    };
}
mod k64 {
    pub(super) use crate::vmath::{
        cos_slice_f64 as cos, exp_slice_f64 as exp, log_slice_f64 as log,
        sigmoid_slice_f64 as sigmoid, sin_slice_f64 as sin, softplus_slice_f64 as softplus,
        tanh_slice_f64 as tanh,
    };
}
impl_float!(f32, k32);
impl_float!(f64, k64);
