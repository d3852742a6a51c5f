//! The dynamics seam: [`OdeSystem`].

/// The right-hand side of `y' = f(t, y)`.
///
/// Implemented for every closure `FnMut(T, &[T], &mut [T])`, so both
/// `odeint(&mut |t, y: &[f64], dy: &mut [f64]| { .. }, ..)` and a user struct work.
/// The solver calls `rhs` with `y.len() == dy.len() == n` and never allocates around it.
pub trait OdeSystem<T> {
    /// Writes `f(t, y)` into `dy` (every component must be written).
    fn rhs(&mut self, t: T, y: &[T], dy: &mut [T]);
}

impl<T, F> OdeSystem<T> for F
where
    F: FnMut(T, &[T], &mut [T]),
{
    #[inline(always)]
    fn rhs(&mut self, t: T, y: &[T], dy: &mut [T]) {
        self(t, y, dy)
    }
}
