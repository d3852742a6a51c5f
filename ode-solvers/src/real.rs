//! The float abstraction: [`Real`] (the workspace's one float trait, from the `real`
//! crate) is implemented for `f32` and `f64`.

pub use real::Real;

/// Shorthand for [`Real::from_f64_const`].
#[inline(always)]
pub(crate) fn c<T: Real>(x: f64) -> T {
    T::from_f64_const(x)
}
