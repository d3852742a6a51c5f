//! Tolerance sweeps of adaptive methods: evaluations, steps and errors per tolerance.

use core::fmt;

use super::{
    ConvergenceError, ExactProblem, check_interval, check_vector, error_norm, loglog_slope,
    scale_of,
};
use crate::Real;
use crate::odeint::{Method, odeint};
use crate::options::{ErrorNorm, Options};
use crate::system::OdeSystem;

/// The tolerances of a work–precision sweep and how its errors are measured.
///
/// Each solve runs with `options`, its `rtol` and `atol` both set to the tolerance.
/// `WorkPrecisionSweep::new(tols)` takes `Options::default()` with `max_steps = 10⁶`, the max
/// norm and `floor_factor = 100`.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkPrecisionSweep<T> {
    /// Tolerances (`rtol = atol`), each finite and > 0.
    pub tols: Vec<T>,
    /// Every other option of the solves (controller, norm, `max_steps`, …).
    pub options: Options<T>,
    /// Norm of the absolute error vector at the final time.
    pub norm: ErrorNorm,
    /// Rows with error ≤ `floor_factor · ε · scale` are left out of the slope.
    pub floor_factor: f64,
}

impl<T: Real> WorkPrecisionSweep<T> {
    /// A sweep over `tols` with the default options.
    pub fn new(tols: impl Into<Vec<T>>) -> Self {
        WorkPrecisionSweep {
            tols: tols.into(),
            options: Options {
                max_steps: 1_000_000,
                ..Options::default()
            },
            norm: ErrorNorm::Max,
            floor_factor: 100.0,
        }
    }

    /// Checks the tolerances and the floor factor (the options are checked by the solver).
    pub fn validate(&self) -> Result<(), ConvergenceError> {
        if self.tols.is_empty() {
            return Err(ConvergenceError::InvalidSweep {
                what: "tols.len",
                index: 0,
                value: 0.0,
                requirement: "must be >= 1",
            });
        }
        if let Some(i) = self
            .tols
            .iter()
            .position(|&t| !(t.is_finite() && t > T::zero()))
        {
            return Err(ConvergenceError::InvalidSweep {
                what: "tols",
                index: i,
                value: self.tols[i].to_f64_lossy(),
                requirement: "must be finite and > 0",
            });
        }
        if !(self.floor_factor.is_finite() && self.floor_factor >= 0.0) {
            return Err(ConvergenceError::InvalidSweep {
                what: "floor_factor",
                index: 0,
                value: self.floor_factor,
                requirement: "must be finite and >= 0",
            });
        }
        Ok(())
    }
}

/// One adaptive solve of a work–precision sweep.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WorkPrecisionRow {
    /// Tolerance (`rtol = atol`).
    pub tol: f64,
    /// Error at the final time, in the sweep's norm.
    pub error: f64,
    /// Right-hand-side evaluations ([`Stats::nfe`](crate::Stats::nfe)).
    pub nfe: usize,
    /// Accepted steps.
    pub accepted: usize,
    /// Rejected steps.
    pub rejected: usize,
}

/// The result of [`work_precision`]: one row per tolerance and the fitted slope.
/// `Display` prints it as a table.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkPrecision {
    /// The method's name.
    pub method: &'static str,
    /// The problem's name (`"reference"` from [`work_precision_against`]).
    pub problem: String,
    /// One row per tolerance, in the sweep's order.
    pub rows: Vec<WorkPrecisionRow>,
    /// Errors at or below this are round-off: `floor_factor · ε · scale`.
    pub floor: f64,
    /// Least-squares slope of `ln error` against `ln nfe` over the rows above the floor
    /// (≈ `−order`); `None` with fewer than two such rows of distinct `nfe`.
    pub slope: Option<f64>,
}

impl fmt::Display for WorkPrecision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.slope {
            Some(s) => writeln!(
                f,
                "{} on {}: d ln error / d ln nfe = {s:.3}",
                self.method, self.problem
            )?,
            None => writeln!(f, "{} on {}: no slope fitted", self.method, self.problem)?,
        }
        writeln!(
            f,
            "{:>10} {:>10} {:>9} {:>9} {:>9}",
            "tol", "error", "nfe", "accepted", "rejected"
        )?;
        for r in &self.rows {
            writeln!(
                f,
                "{:>10.1e} {:>10.3e} {:>9} {:>9} {:>9}",
                r.tol, r.error, r.nfe, r.accepted, r.rejected
            )?;
        }
        Ok(())
    }
}

/// Runs the adaptive `method` at each tolerance of `sweep` on `problem` and measures the error
/// at `t1` against [`ExactProblem::exact`]. Works for every method, Adams included.
///
/// ```
/// use ode_solvers::Method;
/// use ode_solvers::convergence::{WorkPrecisionSweep, work_precision};
/// use ode_solvers::problems::Harmonic;
///
/// let sweep = WorkPrecisionSweep::new([1e-4, 1e-6, 1e-8, 1e-10]);
/// let wp = work_precision(&mut Harmonic { omega: 1.0 }, Method::Dop853, &sweep)?;
/// println!("{wp}");
/// assert!(wp.rows[3].nfe > wp.rows[0].nfe && wp.rows[3].error < 1e-8);
/// # Ok::<(), ode_solvers::convergence::ConvergenceError>(())
/// ```
pub fn work_precision<T: Real, P: ExactProblem<T> + ?Sized>(
    problem: &mut P,
    method: Method,
    sweep: &WorkPrecisionSweep<T>,
) -> Result<WorkPrecision, ConvergenceError> {
    let (t0, t1) = (problem.t0(), problem.t1());
    check_interval(t0, t1)?;
    let dim = problem.dim();
    let y0 = problem.y0();
    check_vector("y0", &y0, dim, t0)?;
    let exact = problem.exact(t1);
    check_vector("exact(t)", &exact, dim, t1)?;
    let name = problem.name().to_owned();
    let mut wp = work_precision_against(problem, &y0, (t0, t1), &exact, method, sweep)?;
    wp.problem = name;
    Ok(wp)
}

/// [`work_precision`] for a system without a closed form: the error at `span.1` is measured
/// against `reference` (e.g. from [`reference_solution`]).
pub fn work_precision_against<T: Real, S: OdeSystem<T> + ?Sized>(
    sys: &mut S,
    y0: &[T],
    span: (T, T),
    reference: &[T],
    method: Method,
    sweep: &WorkPrecisionSweep<T>,
) -> Result<WorkPrecision, ConvergenceError> {
    sweep.validate()?;
    let (t0, t1) = span;
    check_interval(t0, t1)?;
    check_vector("reference", reference, y0.len(), t1)?;
    let floor = sweep.floor_factor * T::epsilon().to_f64_lossy() * scale_of([y0, reference]);
    let mut rows = Vec::with_capacity(sweep.tols.len());
    for &tol in &sweep.tols {
        let options = Options {
            rtol: tol.into(),
            atol: tol.into(),
            ..sweep.options.clone()
        };
        let sol = odeint(sys, y0, &[t0, t1], method, &options).map_err(|source| {
            ConvergenceError::AdaptiveSolve {
                tol: tol.to_f64_lossy(),
                source,
            }
        })?;
        rows.push(WorkPrecisionRow {
            tol: tol.to_f64_lossy(),
            error: error_norm(sol.y_last(), reference, sweep.norm),
            nfe: sol.stats.nfe,
            accepted: sol.stats.accepted,
            rejected: sol.stats.rejected,
        });
    }
    let (nfe, err): (Vec<f64>, Vec<f64>) = rows
        .iter()
        .filter(|r| r.error > floor)
        .map(|r| (r.nfe as f64, r.error))
        .unzip();
    Ok(WorkPrecision {
        method: method.name(),
        problem: "reference".to_owned(),
        rows,
        floor,
        slope: loglog_slope(&nfe, &err),
    })
}

/// The state at `span.1` by DOP853 at `rtol = atol = max(10⁻¹³, 10 ε)` (`max_steps = 10⁷`):
/// a reference for [`work_precision_against`]. In `f32` it is only good to about `10⁻⁶`
/// relative; for tighter references solve the `f64` system and convert.
pub fn reference_solution<T: Real, S: OdeSystem<T> + ?Sized>(
    sys: &mut S,
    y0: &[T],
    span: (T, T),
) -> Result<Vec<T>, ConvergenceError> {
    let (t0, t1) = span;
    check_interval(t0, t1)?;
    let tol = T::from_f64_const(1e-13).max(T::epsilon() * T::from_f64_const(10.0));
    let options = Options {
        max_steps: 10_000_000,
        ..Options::with_tol(tol, tol)
    };
    let sol = odeint(sys, y0, &[t0, t1], Method::Dop853, &options).map_err(|source| {
        ConvergenceError::ReferenceSolve {
            tol: tol.to_f64_lossy(),
            source,
        }
    })?;
    Ok(sol.y_last().to_vec())
}
