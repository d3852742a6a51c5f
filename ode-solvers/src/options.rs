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
/// (`1e-4, 1e-6` for `f32`), Hairer's initial step, the method's PI controller,
/// `max_steps = 10_000`, no step bounds, error control on all components.
#[derive(Debug, Clone, PartialEq)]
pub struct Options<T> {
    /// Relative tolerance (scalar or per component), > 0.
    pub rtol: Tolerance<T>,
    /// Absolute tolerance (scalar or per component), > 0.
    pub atol: Tolerance<T>,
    /// First step magnitude; `None` uses Hairer's `HINIT` heuristic (one extra evaluation).
    pub first_step: Option<T>,
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
