//! Empirical convergence orders and work–precision sweeps, for checking a method (a built-in
//! one or your own [`Tableau`]) on problems with known solutions, as SciML's
//! DiffEqDevTools does for Julia.
//!
//! ## The mathematics
//!
//! **Order.** A Runge–Kutta method of order `p` run with `N` fixed steps `h = (t₁ − t₀)/N`
//! has a global error `E(h) = ‖y_N − y(t₁)‖ = C hᵖ + O(hᵖ⁺¹)`, so
//! `log E = log C + p log h`: on a log-log plot the errors of a step sweep lie on a line of
//! slope `p`. [`empirical_order`] runs the method with
//! [`Options::fixed_step`](crate::Options::fixed_step) for each step count of an
//! [`OrderSweep`], measures the error against the exact solution of an [`ExactProblem`], and
//! fits that slope by least squares,
//!
//! `p̂ = Σ (xᵢ − x̄)(yᵢ − ȳ) / Σ (xᵢ − x̄)²`, `xᵢ = ln hᵢ`, `yᵢ = ln Eᵢ`,
//!
//! over the *finest* usable points (three by default): coarse steps are pre-asymptotic (the
//! `O(hᵖ⁺¹)` term still counts), fine steps run into round-off.
//!
//! **Error norm.** The error of one solve is the largest, over the sweep's checkpoints
//! `t₀ + k (t₁ − t₀)/K`, `k = 1..K` (every one a step point, so no interpolation error enters;
//! `K = 1` is the final time alone), of the absolute error vector's [`ErrorNorm`]:
//! `Max` = `maxᵢ |eᵢ|` (the default) or `Rms` = `sqrt(Σ eᵢ² / n)`. More than one checkpoint
//! guards against a final time that sits on a zero of the leading error term.
//!
//! **Round-off floor.** Each step adds rounding errors of about `ε |y|`; over `N` steps they
//! accumulate like a random walk, to about `ε · scale · √N`. A point is *usable* when
//!
//! 1. its error is finite and above the floor `floor_factor · ε · scale · √N`
//!    (`ε` = [`Real::epsilon`](num_traits::Float::epsilon) of the float type,
//!    `scale = max(1, max |y|)` over the exact solution at `t₀` and the checkpoints,
//!    `floor_factor = 100` by default: `2.2·10⁻¹⁴ · scale · √N` in `f64`), and
//! 2. its error is below the error of every coarser step count (errors that stop decreasing
//!    are round-off or pre-asymptotic, not `C hᵖ`).
//!
//! The slope is fitted through the `fit_points` finest usable points; with fewer usable points
//! the report has no order ([`OrderReport::order`] is `None`, and [`OrderReport::check`] says
//! so, with the whole table).
//!
//! **Work–precision.** An adaptive method at tolerance `tol` makes an error `E ∝ tol` with
//! `nfe ∝ tol^{−1/p}` evaluations, so `log E ≈ const − p log nfe`: [`work_precision`] runs a
//! list of tolerances and fits the slope of `ln E` against `ln nfe` (≈ `−p`), over the rows
//! whose error is above `floor_factor · ε · scale`. Without a closed form, compare against
//! [`reference_solution`] (DOP853 at a tight tolerance) with [`work_precision_against`].
//!
//! ## Example: the order of your own tableau
//!
//! ```
//! use ode_solvers::Method;
//! use ode_solvers::convergence::{ExpSin, OrderSweep, empirical_order};
//! use ode_solvers::tableau::{RK4, Tableau};
//!
//! /// Ralston's third-order method (Math. Comp. 16, 1962); the fields not given (no error
//! /// estimate, Hermite dense output, controller constants) are RK4's.
//! const RALSTON3: Tableau = Tableau {
//!     name: "ralston3",
//!     stages: 3,
//!     a: &[&[], &[0.5], &[0.0, 0.75]],
//!     b: &[2.0 / 9.0, 1.0 / 3.0, 4.0 / 9.0],
//!     c: &[0.0, 0.5, 0.75],
//!     order: 3,
//!     controller_order: 3,
//!     reference: "A. Ralston, Math. Comp. 16 (1962) 431-437.",
//!     ..RK4
//! };
//!
//! // y' = y cos t on [0, 8], y = exp(sin t); the error is the maximum over t = 1, 2, …, 8.
//! let mut problem = ExpSin::default();
//! let sweep = OrderSweep {
//!     checkpoints: 8,
//!     ..OrderSweep::new([16, 32, 64, 128, 256, 512])
//! };
//! let report = empirical_order::<f64, _>(&mut problem, Method::Rk(&RALSTON3), &sweep)?;
//! println!("{report}");
//! let p = report.check(3.0, 0.3)?; // an error, with the table, if |p − 3| ≥ 0.3
//! assert!((p - 3.0).abs() < 0.3);
//! # Ok::<(), ode_solvers::convergence::ConvergenceError>(())
//! ```
//!
//! ## The `proptest` feature
//!
//! With `features = ["proptest"]`, `convergence::strategies` provides proptest strategies
//! for random problems with exact solutions (stable linear systems solved by the matrix
//! exponential, random rates, initial states, orbits and intervals), so that an order test
//! becomes a property test. Off by default: the default build does not depend on proptest.
//!
//! ```toml
//! [dev-dependencies]
//! ode-solvers = { version = "0.1", features = ["proptest"] }
//! ```

mod exact;
mod order;
#[cfg(feature = "proptest")]
pub mod strategies;
mod work_precision;

pub use exact::{ExactProblem, ExpSin, FnProblem, KeplerCircular, Span, stable_matrix};
pub use order::{OrderPoint, OrderReport, OrderSweep, empirical_order};
pub use work_precision::{
    WorkPrecision, WorkPrecisionRow, WorkPrecisionSweep, reference_solution, work_precision,
    work_precision_against,
};

use crate::error::SolveError;
use crate::options::ErrorNorm;
use crate::{Real, Tableau};

/// What can go wrong in a convergence sweep: bad input (reported with what and where, never
/// a panic), a failed solve (with the step count or tolerance it ran at), or a failed
/// [`OrderReport::check`] (with the whole table).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConvergenceError {
    /// A sweep parameter is out of range.
    #[error("invalid sweep: {what}[{index}] = {value} {requirement}")]
    InvalidSweep {
        /// The parameter (`"steps"`, `"tols"`, `"checkpoints"`, …).
        what: &'static str,
        /// The offending entry (0 for a scalar parameter).
        index: usize,
        /// The value given.
        value: f64,
        /// What is required.
        requirement: &'static str,
    },
    /// The problem's interval is not finite or is empty.
    #[error("the interval [{t0}, {t1}] must be finite with t0 != t1")]
    InvalidInterval {
        /// Start.
        t0: f64,
        /// End.
        t1: f64,
    },
    /// A vector's length differs from the problem's dimension.
    #[error("length mismatch for {what} at t = {t}: expected {expected}, found {found}")]
    LengthMismatch {
        /// What was measured (`"y0"`, `"exact(t)"`, `"reference"`).
        what: &'static str,
        /// The time it belongs to.
        t: f64,
        /// The problem's dimension.
        expected: usize,
        /// The length found.
        found: usize,
    },
    /// The exact (or reference) solution holds NaN or an infinity.
    #[error("the exact solution is not finite at t = {t}: component {index}; check `exact`")]
    NonFiniteExact {
        /// The time.
        t: f64,
        /// First offending component.
        index: usize,
    },
    /// A user tableau's arrays do not have the lengths its `stages` implies.
    #[error(
        "tableau `{name}` is malformed: {what} has length {found}, expected {expected} (stages = {stages})"
    )]
    MalformedTableau {
        /// The tableau's name.
        name: &'static str,
        /// Which array (`"a"`, `"a[i]"` as `"a row"`, `"b"`, `"c"`, `"b_err"`, `"b_err2"`).
        what: &'static str,
        /// Its expected length.
        expected: usize,
        /// Its length.
        found: usize,
        /// The tableau's stage count.
        stages: usize,
    },
    /// The method cannot run with fixed steps (the Adams method is variable-step).
    #[error(
        "method {method} cannot run with fixed steps; check its order with `work_precision` instead"
    )]
    NotFixedStep {
        /// The method's name.
        method: &'static str,
    },
    /// A fixed-step solve failed.
    #[error("the solve with {steps} fixed steps failed: {source}")]
    FixedStepSolve {
        /// The step count.
        steps: usize,
        /// The solver's error.
        source: SolveError,
    },
    /// An adaptive solve failed.
    #[error("the solve at tolerance {tol} failed: {source}")]
    AdaptiveSolve {
        /// The tolerance (`rtol = atol`).
        tol: f64,
        /// The solver's error.
        source: SolveError,
    },
    /// The reference solve (DOP853 at a tight tolerance) failed.
    #[error("the reference solve (DOP853, rtol = atol = {tol}) failed: {source}")]
    ReferenceSolve {
        /// Its tolerance.
        tol: f64,
        /// The solver's error.
        source: SolveError,
    },
    /// [`OrderReport::check`]: the fitted order is not within the tolerance of the claim.
    #[error("fitted order {found:.3} is not within {tolerance} of {expected}\n{report}")]
    OrderMismatch {
        /// The claimed order.
        expected: f64,
        /// The allowed distance.
        tolerance: f64,
        /// The fitted order.
        found: f64,
        /// The sweep.
        report: Box<OrderReport>,
    },
    /// [`OrderReport::check`]: too few points above the round-off floor to fit an order.
    #[error(
        "only {usable} usable points, {needed} needed to fit an order; add coarser or finer step counts (or lower `floor_factor`)\n{report}"
    )]
    TooFewPoints {
        /// Points the fit needs.
        needed: usize,
        /// Usable points found.
        usable: usize,
        /// The sweep.
        report: Box<OrderReport>,
    },
}

/// Least-squares slope of `ln y` against `ln x` over the pairs where both are finite and
/// positive; `None` when fewer than two such pairs with distinct `x` remain.
///
/// ```
/// use ode_solvers::convergence::loglog_slope;
/// let h = [0.1, 0.05, 0.025];
/// let e: Vec<f64> = h.iter().map(|h: &f64| 3.0 * h.powi(4)).collect();
/// assert!((loglog_slope(&h, &e).unwrap() - 4.0).abs() < 1e-12);
/// ```
pub fn loglog_slope(x: &[f64], y: &[f64]) -> Option<f64> {
    let ok = |v: f64| v.is_finite() && v > 0.0;
    let pts: Vec<(f64, f64)> = x
        .iter()
        .zip(y)
        .filter(|&(&a, &b)| ok(a) && ok(b))
        .map(|(a, b)| (a.ln(), b.ln()))
        .collect();
    if pts.len() < 2 {
        return None;
    }
    let inv_n = 1.0 / pts.len() as f64;
    let (mx, my) = pts.iter().fold((0.0, 0.0), |(sx, sy), (a, b)| {
        (sx + a * inv_n, sy + b * inv_n)
    });
    let (sxy, sxx) = pts.iter().fold((0.0, 0.0), |(sxy, sxx), (a, b)| {
        (sxy + (a - mx) * (b - my), sxx + (a - mx) * (a - mx))
    });
    (sxx > 0.0).then(|| sxy / sxx)
}

/// The absolute error `‖y − exact‖` in `norm`, as `f64`.
fn error_norm<T: Real>(y: &[T], exact: &[T], norm: ErrorNorm) -> f64 {
    let diffs = y.iter().zip(exact).map(|(&a, &b)| (a - b).to_f64_lossy());
    match norm {
        ErrorNorm::Max => diffs.fold(0.0, |m, d| m.max(d.abs())),
        ErrorNorm::Rms => {
            let n = y.len().max(1) as f64;
            (diffs.map(|d| d * d).sum::<f64>() / n).sqrt()
        }
    }
}

/// Checks a vector of the problem's dimension at time `t`: its length, then finiteness.
fn check_vector<T: Real>(
    what: &'static str,
    v: &[T],
    dim: usize,
    t: T,
) -> Result<(), ConvergenceError> {
    let t = t.to_f64_lossy();
    if v.len() != dim {
        return Err(ConvergenceError::LengthMismatch {
            what,
            t,
            expected: dim,
            found: v.len(),
        });
    }
    match v.iter().position(|x| !x.is_finite()) {
        Some(index) => Err(ConvergenceError::NonFiniteExact { t, index }),
        None => Ok(()),
    }
}

/// Checks that `[t0, t1]` is finite and non-empty.
fn check_interval<T: Real>(t0: T, t1: T) -> Result<(), ConvergenceError> {
    if t0.is_finite() && t1.is_finite() && t0 != t1 {
        Ok(())
    } else {
        Err(ConvergenceError::InvalidInterval {
            t0: t0.to_f64_lossy(),
            t1: t1.to_f64_lossy(),
        })
    }
}

/// `max(1, max |v|)` over all vectors.
fn scale_of<'a, T: Real>(vs: impl IntoIterator<Item = &'a [T]>) -> f64 {
    vs.into_iter()
        .flatten()
        .fold(1.0, |m, x| m.max(x.abs().to_f64_lossy()))
}

/// Checks that a user tableau's arrays have the lengths `stages` implies, so that a typo
/// gives an error rather than an out-of-bounds panic in the stepper.
fn check_tableau(tab: &Tableau) -> Result<(), ConvergenceError> {
    let s = tab.stages;
    let bad = |what, expected, found| ConvergenceError::MalformedTableau {
        name: tab.name,
        what,
        expected,
        found,
        stages: s,
    };
    let vectors = [("b", Some(tab.b)), ("c", Some(tab.c))]
        .into_iter()
        .chain([("b_err", tab.b_err), ("b_err2", tab.b_err2)]);
    if s == 0 {
        return Err(bad("b", 1, tab.b.len()));
    }
    if tab.a.len() != s {
        return Err(bad("a", s, tab.a.len()));
    }
    if let Some((i, row)) = tab.a.iter().enumerate().find(|(i, r)| r.len() != *i) {
        return Err(bad("a row", i, row.len()));
    }
    for (what, v) in vectors {
        if let Some(v) = v
            && v.len() != s
        {
            return Err(bad(what, s, v.len()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_is_exact_on_power_laws_and_skips_non_positive_points() {
        let h = [1.0, 0.5, 0.25, 0.125, 0.0625];
        let e = [
            2.0,
            2.0 * 0.5f64.powi(5),
            0.0,
            2.0 * 0.125f64.powi(5),
            f64::NAN,
        ];
        let p = loglog_slope(&h, &e).unwrap();
        assert!((p - 5.0).abs() < 1e-12, "{p}");
        assert_eq!(loglog_slope(&[1.0, 1.0], &[1.0, 2.0]), None);
        assert_eq!(loglog_slope(&[1.0], &[1.0]), None);
    }

    #[test]
    fn norms_of_the_error() {
        let y = [1.0, 2.0, 3.0, 4.0];
        let ex = [1.0, 2.0, 0.0, 0.0];
        assert!((error_norm(&y, &ex, ErrorNorm::Max) - 4.0).abs() < 1e-15);
        assert!((error_norm(&y, &ex, ErrorNorm::Rms) - (25.0f64 / 4.0).sqrt()).abs() < 1e-15);
    }

    #[test]
    fn malformed_tableaux_are_reported() {
        let mut t = crate::tableau::RK4;
        assert_eq!(check_tableau(&t), Ok(()));
        t.a = &[&[], &[0.5], &[0.0, 0.5]];
        assert!(matches!(
            check_tableau(&t),
            Err(ConvergenceError::MalformedTableau {
                what: "a",
                expected: 4,
                found: 3,
                ..
            })
        ));
        t.a = &[&[], &[0.5], &[0.5], &[0.0, 0.0, 1.0]];
        assert!(matches!(
            check_tableau(&t),
            Err(ConvergenceError::MalformedTableau {
                what: "a row",
                expected: 2,
                found: 1,
                ..
            })
        ));
        t = crate::tableau::BOSH3;
        t.b_err = Some(&[1.0]);
        assert!(matches!(
            check_tableau(&t),
            Err(ConvergenceError::MalformedTableau { what: "b_err", .. })
        ));
    }
}
