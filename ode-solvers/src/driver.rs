//! The one stepping driver: which stepper runs a [`Method`], and how it steps.
//!
//! Every caller that integrates — [`odeint()`](crate::odeint()),
//! [`solve_until_event`](crate::solve_until_event), and the adjoint crate's forward and
//! backward passes — builds an [`Integrator`] and calls [`Integrator::advance`]; the choice
//! of stepper ([`AnyStepper`]) and of adaptive / fixed / onto-the-targets stepping
//! ([`StepControl`]) is made here and nowhere else. A new stepper (implicit, SDE,
//! symplectic) is a new [`AnyStepper`] variant and a new [`Method`] arm in
//! [`Integrator::new`]; every caller gets it.
//!
//! ```
//! use ode_solvers::{Integrator, Method, Options, StepControl};
//! // y' = -y backwards from t = 1 to t = 0 with RK4 steps of 0.1 (the grid 1 - 0.1 k).
//! let mut f = |_t: f64, y: &[f64], dy: &mut [f64]| dy[0] = -y[0];
//! let opts = Options { fixed_step: Some(0.1), ..Options::default() };
//! let mut it = Integrator::new(Method::Rk4, &mut f, 1.0, &[1.0], 0.0, &opts)?;
//! assert_eq!(it.control(), StepControl::Fixed(0.1));
//! while !it.is_done() {
//!     it.advance(&mut f, 0.0)?;
//! }
//! assert_eq!(it.stats().accepted, 10);
//! assert!((it.y()[0] - 1f64.exp()).abs() < 1e-5);
//! # Ok::<(), ode_solvers::SolveError>(())
//! ```

use crate::adams::AdamsStepper;
use crate::dense::DenseStep;
use crate::error::SolveError;
use crate::odeint::Method;
use crate::options::{Options, Stats};
use crate::real::{Real, c};
use crate::rk::RkStepper;
use crate::stepper::{StepInfo, Stepper};
use crate::system::OdeSystem;

/// How an [`Integrator`] chooses its steps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StepControl<T> {
    /// Error-controlled steps (the PI controller of [`Options::controller`], or Adams' own
    /// order and step selection); output times are reached by dense output.
    Adaptive,
    /// Steps of this magnitude towards the end, on the grid `t0 + k h` counted from the
    /// start of the solve (no accumulation of round-off); the last step is shortened to
    /// land on the end (a remainder below `1e-10 h` is absorbed into the step before).
    Fixed(T),
    /// One step without error control onto each target passed to [`Integrator::advance`]
    /// (fixed-step-only methods without [`Options::fixed_step`]: step from output time to
    /// output time).
    ToTargets,
}

impl<T: Real> StepControl<T> {
    /// The control for `method` under `options`: [`Options::fixed_step`] gives `Fixed`;
    /// otherwise adaptive methods are `Adaptive` and fixed-step-only tableaux `ToTargets`.
    /// Adams with a fixed step is an error (it is variable-step by design).
    pub fn of(method: Method, options: &Options<T>) -> Result<Self, SolveError> {
        match (method.tableau(), options.fixed_step) {
            (None, Some(_)) => Err(SolveError::Unsupported {
                method: "adams",
                what: "run with a fixed step (it is variable-step by design)",
            }),
            (_, Some(h)) => Ok(StepControl::Fixed(h)),
            (Some(tab), None) if !tab.is_adaptive() => Ok(StepControl::ToTargets),
            _ => Ok(StepControl::Adaptive),
        }
    }
}

/// The stepper of any [`Method`]: one type where a generic [`Stepper`] cannot be named
/// (stored in a struct, chosen at run time).
#[derive(Debug, Clone)]
pub enum AnyStepper<T: Real> {
    /// An explicit Runge–Kutta tableau.
    Rk(RkStepper<T>),
    /// Variable-step, variable-order Adams–Bashforth–Moulton.
    Adams(AdamsStepper<T>),
}

/// Calls `$body` with the stepper inside any variant bound to `$s`.
macro_rules! each {
    ($self:expr, $s:ident => $body:expr) => {
        match $self {
            AnyStepper::Rk($s) => $body,
            AnyStepper::Adams($s) => $body,
        }
    };
}

impl<T: Real> Stepper<T> for AnyStepper<T> {
    fn t(&self) -> T {
        each!(self, s => s.t())
    }
    fn y(&self) -> &[T] {
        each!(self, s => s.y())
    }
    fn t_end(&self) -> T {
        each!(self, s => s.t_end())
    }
    fn stats(&self) -> Stats {
        each!(self, s => s.stats())
    }
    fn last_step(&self) -> Option<StepInfo<T>> {
        each!(self, s => s.last_step())
    }
    fn y_prev(&self) -> &[T] {
        each!(self, s => s.y_prev())
    }
    #[inline]
    fn step<S: OdeSystem<T> + ?Sized>(&mut self, sys: &mut S) -> Result<StepInfo<T>, SolveError> {
        each!(self, s => s.step(sys))
    }
    fn step_fixed<S: OdeSystem<T> + ?Sized>(
        &mut self,
        sys: &mut S,
        h: T,
    ) -> Result<StepInfo<T>, SolveError> {
        each!(self, s => s.step_fixed(sys, h))
    }
    fn step_to<S: OdeSystem<T> + ?Sized>(
        &mut self,
        sys: &mut S,
        t_target: T,
    ) -> Result<StepInfo<T>, SolveError> {
        each!(self, s => s.step_to(sys, t_target))
    }
    fn dense_output<S: OdeSystem<T> + ?Sized>(
        &mut self,
        sys: &mut S,
    ) -> Result<&DenseStep<T>, SolveError> {
        each!(self, s => s.dense_output(sys))
    }
}

/// One solve from `(t0, y0)` towards `t_end` with any [`Method`], stepped by its
/// [`StepControl`] through [`Integrator::advance`].
#[derive(Debug, Clone)]
pub struct Integrator<T: Real> {
    stepper: AnyStepper<T>,
    control: StepControl<T>,
    /// Start of the solve: origin of the fixed-step grid.
    t0: T,
    /// Fixed steps taken so far.
    k: T,
}

impl<T: Real> Integrator<T> {
    /// Sets up the stepper of `method` (validating the options and inputs, evaluating
    /// `f(t0, y0)` and, for adaptive runs without `first_step`, Hairer's initial-step probe)
    /// with the [`StepControl::of`] the method and options ask for.
    pub fn new<S: OdeSystem<T> + ?Sized>(
        method: Method,
        sys: &mut S,
        t0: T,
        y0: &[T],
        t_end: T,
        options: &Options<T>,
    ) -> Result<Self, SolveError> {
        let control = StepControl::of(method, options)?;
        let stepper = match method.tableau() {
            Some(tab) => AnyStepper::Rk(RkStepper::new(tab, sys, t0, y0, t_end, options)?),
            None => AnyStepper::Adams(AdamsStepper::new(sys, t0, y0, t_end, options)?),
        };
        Ok(Integrator {
            stepper,
            control,
            t0,
            k: T::zero(),
        })
    }

    /// Takes one accepted step as the [`StepControl`] says; `target` is where the caller
    /// wants to be next (the next output time), used by [`StepControl::ToTargets`] only
    /// and clipped to the end. Fails with [`SolveError::EndReached`] once at the end.
    #[inline]
    pub fn advance<S: OdeSystem<T> + ?Sized>(
        &mut self,
        sys: &mut S,
        target: T,
    ) -> Result<StepInfo<T>, SolveError> {
        match self.control {
            StepControl::Adaptive => self.stepper.step(sys),
            StepControl::Fixed(h) => {
                let t_end = self.stepper.t_end();
                let dir = if t_end >= self.t0 {
                    T::one()
                } else {
                    -T::one()
                };
                let k = self.k + T::one();
                let mut next = self.t0 + dir * k * h;
                if (next - t_end) * dir > -h * c::<T>(1e-10) {
                    next = t_end;
                }
                let info = self.stepper.step_to(sys, next)?;
                self.k = k;
                Ok(info)
            }
            StepControl::ToTargets => self.stepper.step_to(sys, target),
        }
    }

    /// Steps to the end, calling `on_step(self, sys)` after every accepted step.
    pub fn run<S, E, G>(&mut self, sys: &mut S, mut on_step: G) -> Result<(), E>
    where
        S: OdeSystem<T> + ?Sized,
        E: From<SolveError>,
        G: FnMut(&mut Self, &mut S) -> Result<(), E>,
    {
        let t_end = self.t_end();
        while !self.is_done() {
            self.advance(sys, t_end)?;
            on_step(self, sys)?;
        }
        Ok(())
    }

    /// How this integrator steps.
    pub fn control(&self) -> StepControl<T> {
        self.control
    }

    /// The stepper.
    pub fn stepper(&self) -> &AnyStepper<T> {
        &self.stepper
    }

    /// Current time.
    pub fn t(&self) -> T {
        self.stepper.t()
    }

    /// Current state.
    pub fn y(&self) -> &[T] {
        self.stepper.y()
    }

    /// End of the integration interval.
    pub fn t_end(&self) -> T {
        self.stepper.t_end()
    }

    /// `true` once the end is reached.
    pub fn is_done(&self) -> bool {
        self.stepper.is_done()
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        self.stepper.stats()
    }

    /// The last accepted step, if any.
    pub fn last_step(&self) -> Option<StepInfo<T>> {
        self.stepper.last_step()
    }

    /// State at the start of the last accepted step.
    pub fn y_prev(&self) -> &[T] {
        self.stepper.y_prev()
    }

    /// The stages of the last accepted step of a Runge–Kutta run (see
    /// [`RkStepper::last_stages`]); `None` for Adams and before the first step.
    pub fn last_stages(&self) -> Option<(&[T], &[T])> {
        match &self.stepper {
            AnyStepper::Rk(s) => s.last_stages(),
            AnyStepper::Adams(_) => None,
        }
    }

    /// The step size an adaptive Runge–Kutta run proposes next (to start a following solve
    /// with, skipping the initial-step probe); `None` for fixed steps and for Adams, whose
    /// order and step history do not carry over to a restart.
    pub fn next_h(&self) -> Option<T> {
        match (&self.stepper, self.control) {
            (AnyStepper::Rk(s), StepControl::Adaptive) => Some(s.next_h()),
            _ => None,
        }
    }

    /// The interpolant of the last accepted step (see [`Stepper::dense_output`]).
    pub fn dense_output<S: OdeSystem<T> + ?Sized>(
        &mut self,
        sys: &mut S,
    ) -> Result<&DenseStep<T>, SolveError> {
        self.stepper.dense_output(sys)
    }

    /// The state at `t` within the last accepted step (see [`Stepper::interpolate`]).
    pub fn interpolate<S: OdeSystem<T> + ?Sized>(
        &mut self,
        sys: &mut S,
        t: T,
        out: &mut [T],
    ) -> Result<(), SolveError> {
        self.stepper.interpolate(sys, t, out)
    }
}
