//! The float abstraction of the workspace: [`Real`] is implemented for `f32` and `f64`.
//!
//! # One trait, capability subtraits
//!
//! Every crate of the workspace is generic over this one trait: the integrators of
//! `ode-solvers` (which re-exports it as `ode_solvers::Real`), the gradient modes of
//! `adjoint`, the tape of `autodiff` and the sparse discrete adjoint of `pde-adjoint`. A
//! crate that needs more than a scalar adds a capability *on top of* `Real` instead of
//! defining a float trait of its own: `autodiff::Float: Real` adds the slice kernels
//! (GEMM, vectorised `tanh`, `exp`, …), and the sparse factorisations bound on
//! `Real + faer::traits::RealField` (faer's own requirement). A scalar that satisfies one
//! crate's bound therefore satisfies every other crate's, and conversions are written
//! once: [`Real::from_f64_const`] for constants, [`Real::to_f64_lossy`] for messages and
//! statistics.
//!
//! # Example
//!
//! ```
//! use real::Real;
//!
//! /// The mean of a slice, written once for `f32` and `f64`.
//! fn mean<T: Real>(x: &[T]) -> T {
//!     x.iter().copied().sum::<T>() / T::from_f64_const(x.len() as f64)
//! }
//! assert_eq!(mean(&[1.0f64, 2.0, 6.0]), 3.0);
//! assert_eq!(mean(&[1.0f32, 2.0]).to_f64_lossy(), 1.5);
//! ```

use core::fmt::{Debug, Display};
use core::iter::Sum;

/// A real scalar the workspace computes in (`f32` or `f64`).
///
/// It is `num_traits::Float` (with its constants, `FloatConst`) plus a lossless-enough
/// conversion from the `f64` constants the tableaux are written in, and back to `f64` for
/// error messages.
pub trait Real:
    num_traits::Float
    + num_traits::FloatConst
    + num_traits::NumAssign
    + Sum
    + Debug
    + Display
    + Default
    + Send
    + Sync
    + 'static
{
    /// Converts an `f64` constant (a tableau coefficient, a default tolerance), rounding
    /// to nearest for `f32`.
    fn from_f64_const(x: f64) -> Self;
    /// Converts to `f64` (for error messages and statistics); exact for `f32` and `f64`.
    fn to_f64_lossy(self) -> f64;
    /// `self` unchanged, as a value the optimiser must treat as unknown, held in a register.
    ///
    /// The solver reads back each derivative component a right-hand side has just stored
    /// through it: the compiler then cannot merge neighbouring components into one vector
    /// load, which, spanning several pending scalar stores, would wait for them to reach the
    /// cache (a store-forwarding stall) instead of taking them from the store queue. The
    /// identity where there is no such barrier (the default, and off x86-64).
    #[inline(always)]
    fn opaque(self) -> Self {
        self
    }
}

/// [`Real::opaque`] as an empty `asm!` block on an `xmm` register (x86-64).
macro_rules! opaque_in_register {
    () => {
        #[inline(always)]
        fn opaque(mut self) -> Self {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: an empty instruction sequence; the value stays in its register.
            unsafe {
                core::arch::asm!(
                    "/* {0} */",
                    inout(xmm_reg) self,
                    options(pure, nomem, nostack, preserves_flags)
                );
            }
            self
        }
    };
}

impl Real for f64 {
    opaque_in_register!();
    #[inline(always)]
    fn from_f64_const(x: f64) -> Self {
        x
    }
    #[inline(always)]
    fn to_f64_lossy(self) -> f64 {
        self
    }
}

impl Real for f32 {
    opaque_in_register!();
    #[inline(always)]
    fn from_f64_const(x: f64) -> Self {
        x as f32
    }
    #[inline(always)]
    fn to_f64_lossy(self) -> f64 {
        f64::from(self)
    }
}

#[cfg(test)]
mod tests {
    use super::Real;

    #[test]
    fn conversions_round_trip_and_round_to_nearest() {
        assert_eq!(f64::from_f64_const(0.1).to_f64_lossy(), 0.1);
        assert_eq!(f32::from_f64_const(0.1), 0.1f32);
        assert_eq!(0.1f32.to_f64_lossy(), f64::from(0.1f32));
        assert!(f32::from_f64_const(1e300).is_infinite());
    }

    #[test]
    fn opaque_is_the_identity() {
        for x in [0.0, -0.0, 1.5, f64::MIN_POSITIVE, f64::INFINITY] {
            assert_eq!(x.opaque().to_bits(), x.to_bits());
            let y = x as f32;
            assert_eq!(y.opaque().to_bits(), y.to_bits());
        }
        assert!(f64::NAN.opaque().is_nan());
    }
}
