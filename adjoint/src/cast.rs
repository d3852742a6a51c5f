//! Reinterpreting a generic float slice as the concrete type it is, for the kernels that
//! exist for `f64` (and `f32`) only: the caller checks the type (`TypeId`) first.

/// `x` as a slice of `U`.
///
/// # Safety
/// `T` and `U` must be the same type.
pub(crate) unsafe fn cast<T, U>(x: &[T]) -> &[U] {
    // SAFETY: the caller guarantees `T == U`.
    unsafe { core::slice::from_raw_parts(x.as_ptr().cast::<U>(), x.len()) }
}

/// `x` as a mutable slice of `U`.
///
/// # Safety
/// `T` and `U` must be the same type.
pub(crate) unsafe fn cast_mut<T, U>(x: &mut [T]) -> &mut [U] {
    // SAFETY: the caller guarantees `T == U`.
    unsafe { core::slice::from_raw_parts_mut(x.as_mut_ptr().cast::<U>(), x.len()) }
}
