//! Dense output on one step.

use crate::error::SolveError;
use crate::real::Real;

/// The continuous extension of one accepted step `[t0, t0 + h]`.
///
/// Stored as `m` coefficient vectors `r_1..r_m` and evaluated (Hairer's nested form) as
/// `y(t0 + θh) = r1 + θ(r2 + θ'(r3 + θ(r4 + θ'(r5 + …))))`, `θ' = 1 − θ`: `m = 4` is cubic
/// Hermite, 5 the DOPRI5 interpolant, 8 DOP853's. It owns its buffers, so it can be cloned
/// and stored (checkpoints) and evaluated later without the solver. Valid for `h < 0` too.
#[derive(Debug, PartialEq)]
pub struct DenseStep<T> {
    pub(crate) t0: T,
    pub(crate) h: T,
    pub(crate) n: usize,
    pub(crate) m: usize,
    pub(crate) coeffs: Vec<T>,
}

impl<T: Clone> Clone for DenseStep<T> {
    fn clone(&self) -> Self {
        DenseStep {
            t0: self.t0.clone(),
            h: self.h.clone(),
            n: self.n,
            m: self.m,
            coeffs: self.coeffs.clone(),
        }
    }

    /// Reuses `self`'s buffer: no allocation when its capacity suffices (a pool of stored
    /// steps refilled at every solve, as checkpointed adjoints keep).
    fn clone_from(&mut self, other: &Self) {
        self.t0 = other.t0.clone();
        self.h = other.h.clone();
        self.n = other.n;
        self.m = other.m;
        self.coeffs.clone_from(&other.coeffs);
    }
}

impl<T: Real> DenseStep<T> {
    /// Copies `other` into `self` without allocating when `self` has the room
    /// (same as [`Clone::clone_from`]).
    pub fn copy_from(&mut self, other: &DenseStep<T>) {
        self.clone_from(other);
    }

    /// An empty interpolant for a state of length `n` with room for `max_m` coefficient vectors.
    pub fn with_capacity(n: usize, max_m: usize) -> Self {
        DenseStep {
            t0: T::zero(),
            h: T::zero(),
            n,
            m: 0,
            coeffs: vec![T::zero(); n * max_m],
        }
    }

    /// Start of the step.
    pub fn t_start(&self) -> T {
        self.t0
    }

    /// End of the step.
    pub fn t_end(&self) -> T {
        self.t0 + self.h
    }

    /// Step size (negative when integrating backwards).
    pub fn h(&self) -> T {
        self.h
    }

    /// Number of coefficient vectors (4 Hermite, 5 DOPRI5, 8 DOP853).
    pub fn n_coeffs(&self) -> usize {
        self.m
    }

    /// Evaluates the interpolant at `t` into `out` (no check that `t` lies in the step:
    /// outside it the polynomial extrapolates).
    #[inline]
    pub fn eval_into(&self, t: T, out: &mut [T]) {
        let n = self.n;
        let theta = (t - self.t0) / self.h;
        let theta1 = T::one() - theta;
        let m = self.m;
        for (i, o) in out.iter_mut().enumerate().take(n) {
            let mut acc = self.coeffs[(m - 1) * n + i];
            for l in (0..m - 1).rev() {
                let mult = if l % 2 == 0 { theta } else { theta1 };
                acc = self.coeffs[l * n + i] + mult * acc;
            }
            *o = acc;
        }
    }

    /// Like [`DenseStep::eval_into`] but checks the length of `out` and that `t` lies in the
    /// step (with a relative slack of 1e-10 of `h`).
    pub fn eval_checked(&self, t: T, out: &mut [T]) -> Result<(), SolveError> {
        if out.len() != self.n {
            return Err(SolveError::LengthMismatch {
                what: "interpolation output",
                expected: self.n,
                found: out.len(),
            });
        }
        let theta = (t - self.t0) / self.h;
        let slack = T::from_f64_const(1e-10);
        if !(theta >= -slack && theta <= T::one() + slack) {
            return Err(SolveError::OutsideStep {
                t: t.to_f64_lossy(),
                t_prev: self.t0.to_f64_lossy(),
                t_new: self.t_end().to_f64_lossy(),
            });
        }
        self.eval_into(t, out);
        Ok(())
    }

    /// Fills the cubic Hermite coefficients from `y0, y1, f0 = f(t0, y0), f1 = f(t0 + h, y1)`.
    pub fn set_hermite(&mut self, t0: T, h: T, y0: &[T], y1: &[T], f0: &[T], f1: &[T]) {
        let n = self.n;
        self.t0 = t0;
        self.h = h;
        self.m = 4;
        let (r1, rest) = self.coeffs.split_at_mut(n);
        let (r2, rest) = rest.split_at_mut(n);
        let (r3, rest) = rest.split_at_mut(n);
        let r4 = &mut rest[..n];
        for i in 0..n {
            let ydiff = y1[i] - y0[i];
            let bspl = h * f0[i] - ydiff;
            r1[i] = y0[i];
            r2[i] = ydiff;
            r3[i] = bspl;
            r4[i] = ydiff - h * f1[i] - bspl;
        }
    }
}
