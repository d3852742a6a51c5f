//! The float abstraction: [`Real`] is implemented for `f32` and `f64`.

use core::fmt::{Debug, Display};
use core::iter::Sum;

/// A real scalar the integrators run on (`f32` or `f64`).
///
/// It is `num_traits::Float` plus a lossless-enough conversion from the `f64`
/// constants the tableaux are written in, and back to `f64` for error messages.
pub trait Real:
    num_traits::Float + num_traits::NumAssign + Sum + Debug + Display + Default + Send + Sync + 'static
{
    /// Converts an `f64` constant (a tableau coefficient, a default tolerance).
    fn from_f64_const(x: f64) -> Self;
    /// Converts to `f64` (for error messages and statistics).
    fn to_f64_lossy(self) -> f64;
}

impl Real for f64 {
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
    #[inline(always)]
    fn from_f64_const(x: f64) -> Self {
        x as f32
    }
    #[inline(always)]
    fn to_f64_lossy(self) -> f64 {
        f64::from(self)
    }
}

/// Shorthand for [`Real::from_f64_const`].
#[inline(always)]
pub(crate) fn c<T: Real>(x: f64) -> T {
    T::from_f64_const(x)
}
