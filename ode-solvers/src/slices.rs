//! Slice kernels the steppers share.

use crate::real::Real;

/// `y += a x`.
#[inline(always)]
pub(crate) fn axpy<T: Real>(a: T, x: &[T], y: &mut [T]) {
    for (yi, &xi) in y.iter_mut().zip(x) {
        *yi += a * xi;
    }
}

/// Index of the first non-finite entry, if any (fast path: one pass, no branches).
#[inline]
pub(crate) fn first_non_finite<T: Real>(v: &[T]) -> Option<usize> {
    let probe = v.iter().fold(T::zero(), |acc, &x| acc + x * T::zero());
    if probe.is_finite() {
        None
    } else {
        v.iter().position(|x| !x.is_finite())
    }
}
