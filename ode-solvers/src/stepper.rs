//! The step-by-step interface shared by the Runge–Kutta and Adams integrators.

use crate::dense::DenseStep;
use crate::error::SolveError;
use crate::options::Stats;
use crate::real::{Real, c};
use crate::system::OdeSystem;

/// What one accepted step did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepInfo<T> {
    /// Start of the step.
    pub t_prev: T,
    /// End of the step (the stepper's new time).
    pub t_new: T,
    /// Step size taken (`t_new − t_prev`, negative backwards).
    pub h: T,
}

/// Step-by-step integration with dense output on the last step.
///
/// The system is passed to every call (not stored), so callers keep ownership of it
/// between steps (the adjoint swaps dynamics in and out).
pub trait Stepper<T: Real> {
    /// Current time.
    fn t(&self) -> T;
    /// Current state.
    fn y(&self) -> &[T];
    /// End of the integration interval (steps never pass it).
    fn t_end(&self) -> T;
    /// Counters so far.
    fn stats(&self) -> Stats;
    /// The last accepted step, if any.
    fn last_step(&self) -> Option<StepInfo<T>>;
    /// State at the start of the last accepted step (the current state before any step).
    fn y_prev(&self) -> &[T];
    /// `true` once `t() == t_end()`.
    fn is_done(&self) -> bool {
        self.t() == self.t_end()
    }
    /// Takes one accepted step with error control (rejected attempts are retried inside).
    fn step<S: OdeSystem<T> + ?Sized>(&mut self, sys: &mut S) -> Result<StepInfo<T>, SolveError>;
    /// Takes one step of size `h` without error control (clipped so as not to pass `t_end`).
    fn step_fixed<S: OdeSystem<T> + ?Sized>(
        &mut self,
        sys: &mut S,
        h: T,
    ) -> Result<StepInfo<T>, SolveError>;
    /// One step without error control landing exactly on `t_target` (clipped to `t_end`;
    /// it must lie beyond `t()` in the direction of integration).
    fn step_to<S: OdeSystem<T> + ?Sized>(
        &mut self,
        sys: &mut S,
        t_target: T,
    ) -> Result<StepInfo<T>, SolveError>;
    /// The interpolant of the last accepted step (computing it if needed; DOP853 spends
    /// three evaluations the first time).
    fn dense_output<S: OdeSystem<T> + ?Sized>(
        &mut self,
        sys: &mut S,
    ) -> Result<&DenseStep<T>, SolveError>;
    /// The state at `t` within the last accepted step, written into `out`.
    fn interpolate<S: OdeSystem<T> + ?Sized>(
        &mut self,
        sys: &mut S,
        t: T,
        out: &mut [T],
    ) -> Result<(), SolveError> {
        if t == self.t() {
            if out.len() != self.y().len() {
                return Err(SolveError::LengthMismatch {
                    what: "interpolation output",
                    expected: self.y().len(),
                    found: out.len(),
                });
            }
            out.copy_from_slice(self.y());
            return Ok(());
        }
        self.dense_output(sys)?.eval_checked(t, out)
    }
}

/// Hairer's guards before an error-controlled step attempt, shared by the Runge–Kutta and
/// Adams steppers: the attempt budget, step-size underflow, and the step stretched onto
/// `t_end` when it would end within 1 % of it. Counts the attempt and returns the step
/// to try and whether it is the last one.
#[inline(always)]
pub(crate) fn next_attempt<T: Real>(
    t: T,
    h: T,
    t_end: T,
    dir: T,
    min_step: T,
    attempts: &mut usize,
    max_steps: usize,
) -> Result<(T, bool), SolveError> {
    if *attempts >= max_steps {
        return Err(SolveError::TooManySteps {
            t: t.to_f64_lossy(),
            max_steps,
        });
    }
    let underflow = |h: T| SolveError::StepSizeUnderflow {
        t: t.to_f64_lossy(),
        h: h.to_f64_lossy(),
    };
    if !(c::<T>(0.1) * h.abs() > t.abs() * T::epsilon()) {
        return Err(underflow(h));
    }
    let (h, last) = if (t + c::<T>(1.01) * h - t_end) * dir > T::zero() {
        (t_end - t, true)
    } else {
        (h, false)
    };
    if h.abs() < min_step && !last {
        return Err(underflow(h));
    }
    *attempts += 1;
    Ok((h, last))
}
