//! Solver options, tolerances, error norms and the PI step-size controller.

use core::ops::Range;

use crate::error::SolveError;
use crate::real::{Real, c};
use crate::tableau::Tableau;

/// A tolerance: one value for every component or one per component.
#[derive(Debug, Clone, PartialEq)]
pub enum Tolerance<T> {
    /// The same tolerance for every component.
    Scalar(T),
    /// One tolerance per component (length must equal the state length).
    PerComponent(Vec<T>),
}

impl<T: Copy> Tolerance<T> {
    /// The tolerance of component `i` (for `PerComponent`, `i` must be in range).
    #[inline]
    pub fn get(&self, i: usize) -> T {
        match self {
            Tolerance::Scalar(v) => *v,
            Tolerance::PerComponent(v) => v[i],
        }
    }
}

impl<T> From<T> for Tolerance<T> {
    fn from(v: T) -> Self {
        Tolerance::Scalar(v)
    }
}

impl<T> From<Vec<T>> for Tolerance<T> {
    fn from(v: Vec<T>) -> Self {
        Tolerance::PerComponent(v)
    }
}

/// How the scaled local error vector `e_i / (atol_i + rtol_i max(|y_i|, |y1_i|))` is reduced
/// to one number (accept when ≤ 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ErrorNorm {
    /// Hairer's root-mean-square norm `sqrt(Σ e_i² / n)` (default).
    #[default]
    Rms,
    /// The maximum norm `max |e_i|`.
    Max,
}

/// How an adaptive solve chooses its first step when [`Options::first_step`] is `None`.
///
/// Both are Hairer & Wanner's heuristic (Solving ODEs I, II.4): `h0 = 0.01 d0/d1` with
/// `d0 = ‖y0‖`, `d1 = ‖f(t0, y0)‖`, one explicit Euler probe for `d2 ≈ ‖y''‖`, then
/// `h = min(100 h0, (0.01 / max(d1, d2))^{1/p})` (norms scaled by `atol + rtol |y0|`,
/// one extra evaluation). They differ in the norm, which matters only in `d1, d2`: the
/// ratio `d0/d1` is the same either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InitialStep {
    /// Hairer's Fortran `HINIT` (DOPRI5, DOP853): Euclidean norms (square roots of sums
    /// of squares, not divided by the number of components), so the first step shrinks as
    /// `n^{-1/(2p)}` with the state size `n` (default; Hairer's evaluation counts).
    #[default]
    Hairer,
    /// Root-mean-square norms, as torchdiffeq, diffrax and SciPy compute the heuristic: the
    /// first step does not depend on how many copies of a state are batched together.
    Rms,
}

/// A PI step-size controller (Gustafsson / Hairer's "Lund stabilisation"):
///
/// `fac = clamp(err^α / err_prev^β / safety, 1/max_factor, 1/min_factor)`, `h_new = h / fac`,
/// with `α = 1/q − 0.75 β` unless given (`q` = the tableau's `controller_order`).
/// A rejected step shrinks `h` by `min(1/min_factor, err^α / safety)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PiController<T> {
    /// Safety factor (< 1).
    pub safety: T,
    /// Smallest allowed `h_new / h` (> 0, < 1).
    pub min_factor: T,
    /// Largest allowed `h_new / h` (> 1).
    pub max_factor: T,
    /// Proportional (stabilisation) exponent `β`; 0 gives the classical I controller.
    pub beta: T,
    /// Integral exponent `α`; `None` means `1/q − 0.75 β`.
    pub alpha: Option<T>,
}

impl<T: Real> PiController<T> {
    /// The defaults recorded with a tableau (Hairer's constants).
    pub fn for_tableau(tab: &Tableau) -> Self {
        PiController {
            safety: c(tab.controller.safety),
            min_factor: c(tab.controller.min_factor),
            max_factor: c(tab.controller.max_factor),
            beta: c(tab.controller.beta),
            alpha: None,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), SolveError> {
        let chk = |name, v: T, ok: bool, reason| {
            if ok && v.is_finite() {
                Ok(())
            } else {
                Err(SolveError::InvalidOption {
                    name,
                    value: v.to_f64_lossy(),
                    reason,
                })
            }
        };
        chk(
            "controller.safety",
            self.safety,
            self.safety > T::zero() && self.safety <= T::one(),
            "must be in (0, 1]",
        )?;
        chk(
            "controller.min_factor",
            self.min_factor,
            self.min_factor > T::zero() && self.min_factor < T::one(),
            "must be in (0, 1)",
        )?;
        chk(
            "controller.max_factor",
            self.max_factor,
            self.max_factor > T::one(),
            "must be > 1",
        )?;
        chk(
            "controller.beta",
            self.beta,
            self.beta >= T::zero(),
            "must be >= 0",
        )?;
        if let Some(a) = self.alpha {
            chk("controller.alpha", a, a > T::zero(), "must be > 0")?;
        }
        Ok(())
    }
}

/// Options of a solve. `Options::default()` gives `rtol = 1e-6, atol = 1e-9` for `f64`
/// (`1e-4, 1e-6` for `f32`), Hairer's initial step, the method's PI controller (Hairer's
/// constants; [`Options::neural_ode`] gives the peers' I controller instead),
/// `max_steps = 10_000`, no step bounds, error control on all components.
#[derive(Debug, Clone, PartialEq)]
pub struct Options<T> {
    /// Relative tolerance (scalar or per component), > 0.
    pub rtol: Tolerance<T>,
    /// Absolute tolerance (scalar or per component), > 0.
    pub atol: Tolerance<T>,
    /// First step magnitude; `None` uses the [`Options::initial_step`] heuristic (one
    /// extra evaluation).
    pub first_step: Option<T>,
    /// The first-step heuristic used when `first_step` is `None`.
    pub initial_step: InitialStep,
    /// Largest step magnitude; `None` means the whole interval.
    pub max_step: Option<T>,
    /// Smallest step magnitude before [`SolveError::StepSizeUnderflow`] (0 = only the
    /// round-off check `0.1|h| ≤ |t| ε`). The final, clipped step may be shorter.
    pub min_step: T,
    /// Maximum number of step attempts (accepted + rejected) per solve.
    pub max_steps: usize,
    /// Run with this fixed step magnitude (no error control), also for adaptive methods.
    /// Fixed-step-only methods without it step exactly onto the output times.
    pub fixed_step: Option<T>,
    /// Step-size controller; `None` uses the method's defaults ([`PiController::for_tableau`]).
    pub controller: Option<PiController<T>>,
    /// Error norm.
    pub norm: ErrorNorm,
    /// Restrict error control to these components (a seminorm). The adjoint's augmented
    /// state `[z, a, a_θ, a_t]` typically controls only `[z, a]`: `Some(0..2*n_z)`.
    /// Tolerances are still indexed by the full state. Must be a non-empty range within the state.
    pub error_components: Option<Range<usize>>,
    /// Highest order of the Adams method (1..=12).
    pub max_order: usize,
}

impl<T: Real> Default for Options<T> {
    fn default() -> Self {
        let single = T::epsilon() > c(1e-10);
        let (rtol, atol) = if single { (1e-4, 1e-6) } else { (1e-6, 1e-9) };
        Options {
            rtol: Tolerance::Scalar(c(rtol)),
            atol: Tolerance::Scalar(c(atol)),
            first_step: None,
            initial_step: InitialStep::Hairer,
            max_step: None,
            min_step: T::zero(),
            max_steps: 10_000,
            fixed_step: None,
            controller: None,
            norm: ErrorNorm::Rms,
            error_components: None,
            max_order: 12,
        }
    }
}

impl<T: Real> Options<T> {
    /// Default options with scalar tolerances `rtol` and `atol`.
    pub fn with_tol(rtol: T, atol: T) -> Self {
        Options {
            rtol: Tolerance::Scalar(rtol),
            atol: Tolerance::Scalar(atol),
            ..Options::default()
        }
    }

    /// The step-size settings of torchdiffeq's and diffrax's adaptive solvers, for training
    /// Neural ODEs, with scalar tolerances `rtol` and `atol`: the I controller
    /// (`h_new = h · clamp(0.9 err^{-1/q}, 0.2, 10)`, `β = 0`) and the RMS first-step
    /// heuristic ([`InitialStep::Rms`]); everything else as [`Options::default`].
    ///
    /// Neural ODE solves are short (a few dozen steps on `[0, 1]`) and start far below the
    /// step the field allows. From there Hairer's PI controller (`β = 0.04`) grows the
    /// steps about half as fast as the I controller, and Hairer's `HINIT` shrinks the first
    /// step as the batch grows, so at one tolerance these settings take fewer steps
    /// (e.g. 68 instead of 74 evaluations on a 2→64→64→2 tanh field at 1e-6, batch 16;
    /// 20 instead of 26–30 in ODE-Net's block at 1e-3), with a somewhat larger error: at
    /// equal loss and gradient error both cost about the same (see `benches/README.md`,
    /// "Step-size control defaults"). [`Options::default`] keeps Hairer's settings (and
    /// his published evaluation counts). Pair these options with
    /// [`crate::tableau::DOPRI5_SHAMPINE`] (`Method::Rk(&DOPRI5_SHAMPINE)`) to take the
    /// peers' very steps at a tolerance.
    ///
    /// ```
    /// use ode_solvers::{odeint, tableau::DOPRI5_SHAMPINE, Method, Options};
    /// let mut f = |_t: f64, y: &[f64], dy: &mut [f64]| dy[0] = -y[0];
    /// let sol = odeint(&mut f, &[1.0], &[0.0, 1.0], Method::Rk(&DOPRI5_SHAMPINE),
    ///                  &Options::neural_ode(1e-6, 1e-6))?;
    /// assert!((sol.ys[1] - (-1f64).exp()).abs() < 1e-6);
    /// # Ok::<(), ode_solvers::SolveError>(())
    /// ```
    pub fn neural_ode(rtol: T, atol: T) -> Self {
        Options {
            controller: Some(PiController {
                safety: c(0.9),
                min_factor: c(0.2),
                max_factor: c(10.0),
                beta: T::zero(),
                alpha: None,
            }),
            initial_step: InitialStep::Rms,
            ..Options::with_tol(rtol, atol)
        }
    }

    /// Checks every option against a state of length `n`: an empty state, tolerances
    /// that are not finite and positive, a relative tolerance below 4 machine epsilons of
    /// `T` (for adaptive runs: the error estimate cannot resolve it, and the solve would
    /// grind through rejected steps), and the step and controller options.
    pub fn validate(&self, n: usize) -> Result<(), SolveError> {
        if n == 0 {
            return Err(SolveError::EmptyState);
        }
        if self.fixed_step.is_none() {
            let eps = T::epsilon();
            let minimum = eps * c(4.0);
            let rtols: &[T] = match &self.rtol {
                Tolerance::Scalar(v) => core::slice::from_ref(v),
                Tolerance::PerComponent(v) => v,
            };
            if let Some((index, &v)) = rtols
                .iter()
                .enumerate()
                .find(|(_, v)| **v < minimum && **v > T::zero())
            {
                return Err(SolveError::ToleranceBelowPrecision {
                    name: "rtol",
                    index,
                    value: v.to_f64_lossy(),
                    float: if eps > c(1e-10) { "f32" } else { "f64" },
                    epsilon: eps.to_f64_lossy(),
                    minimum: minimum.to_f64_lossy(),
                });
            }
        }
        for (name, tol) in [("rtol", &self.rtol), ("atol", &self.atol)] {
            match tol {
                Tolerance::Scalar(v) => check_tol(name, 0, *v)?,
                Tolerance::PerComponent(v) => {
                    if v.len() != n {
                        return Err(SolveError::LengthMismatch {
                            what: if name == "rtol" { "rtol" } else { "atol" },
                            expected: n,
                            found: v.len(),
                        });
                    }
                    for (i, &x) in v.iter().enumerate() {
                        check_tol(name, i, x)?;
                    }
                }
            }
        }
        let positive = |name, v: Option<T>| match v {
            Some(x) if !(x.is_finite() && x > T::zero()) => Err(SolveError::InvalidOption {
                name,
                value: x.to_f64_lossy(),
                reason: "must be finite and > 0 (a magnitude; the direction comes from the times)",
            }),
            _ => Ok(()),
        };
        positive("first_step", self.first_step)?;
        positive("max_step", self.max_step)?;
        positive("fixed_step", self.fixed_step)?;
        if !(self.min_step.is_finite() && self.min_step >= T::zero()) {
            return Err(SolveError::InvalidOption {
                name: "min_step",
                value: self.min_step.to_f64_lossy(),
                reason: "must be finite and >= 0",
            });
        }
        if self.max_steps == 0 {
            return Err(SolveError::InvalidOption {
                name: "max_steps",
                value: 0.0,
                reason: "must be >= 1",
            });
        }
        if !(1..=12).contains(&self.max_order) {
            return Err(SolveError::InvalidOption {
                name: "max_order",
                value: self.max_order as f64,
                reason: "must be in 1..=12",
            });
        }
        if let Some(r) = &self.error_components
            && (r.start >= r.end || r.end > n)
        {
            return Err(SolveError::LengthMismatch {
                what: "error_components (range end must be <= state length and the range non-empty)",
                expected: n,
                found: r.end,
            });
        }
        if let Some(ctrl) = &self.controller {
            ctrl.validate()?;
        }
        Ok(())
    }

    pub(crate) fn error_range(&self, n: usize) -> Range<usize> {
        self.error_components.clone().unwrap_or(0..n)
    }
}

fn check_tol<T: Real>(name: &'static str, index: usize, v: T) -> Result<(), SolveError> {
    if v.is_finite() && v > T::zero() {
        Ok(())
    } else {
        Err(SolveError::InvalidTolerance {
            name,
            index,
            value: v.to_f64_lossy(),
        })
    }
}

/// Counters of a solve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Right-hand-side evaluations (including the initial-step heuristic and dense output).
    pub nfe: usize,
    /// Accepted steps.
    pub accepted: usize,
    /// Rejected steps.
    pub rejected: usize,
}
