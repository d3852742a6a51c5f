//! Fixed-step sweeps and the fitted order: [`empirical_order`].

use core::fmt;

use super::{
    ConvergenceError, ExactProblem, check_interval, check_tableau, check_vector, error_norm,
    loglog_slope, scale_of,
};
use crate::Real;
use crate::odeint::{Method, odeint};
use crate::options::{ErrorNorm, Options};

/// The step counts of a fixed-step sweep and how its errors are measured and fitted.
///
/// `OrderSweep::new(steps)` gives one checkpoint (the final time), the max norm,
/// `floor_factor = 100` and a fit through the 3 finest usable points; change the fields
/// with struct update syntax: `OrderSweep { checkpoints: 8, ..OrderSweep::new(steps) }`.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderSweep {
    /// Step counts `N` over the interval (`h = (t1 − t0)/N`), strictly increasing, ≥ 1.
    pub steps: Vec<usize>,
    /// Number `K` of equally spaced checkpoints `t0 + k (t1 − t0)/K`, `k = 1..=K`, where the
    /// error is measured (the largest counts); every step count must be a multiple of `K`.
    pub checkpoints: usize,
    /// Norm of the absolute error vector at a checkpoint.
    pub norm: ErrorNorm,
    /// The round-off floor is `floor_factor · ε · scale · √N` (see the [module docs](super)).
    pub floor_factor: f64,
    /// Fit through this many of the finest usable points (≥ 2); `None`: through all of them.
    pub fit_points: Option<usize>,
}

impl OrderSweep {
    /// A sweep over `steps` with the default measurement and fit.
    pub fn new(steps: impl Into<Vec<usize>>) -> Self {
        OrderSweep {
            steps: steps.into(),
            checkpoints: 1,
            norm: ErrorNorm::Max,
            floor_factor: 100.0,
            fit_points: Some(3),
        }
    }

    /// `count` step counts `first, 2 first, 4 first, …` (saturating).
    pub fn doubling(first: usize, count: usize) -> Self {
        let steps = core::iter::successors(Some(first), |n| n.checked_mul(2));
        OrderSweep::new(steps.take(count).collect::<Vec<_>>())
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<(), ConvergenceError> {
        let bad = |what, index, value: f64, requirement| {
            Err(ConvergenceError::InvalidSweep {
                what,
                index,
                value,
                requirement,
            })
        };
        let k = self.checkpoints;
        if k == 0 {
            return bad("checkpoints", 0, 0.0, "must be >= 1");
        }
        let needed = self.fit_points.unwrap_or(2);
        if needed < 2 {
            return bad("fit_points", 0, needed as f64, "must be >= 2 (a line)");
        }
        if self.steps.len() < needed {
            return bad(
                "steps.len",
                0,
                self.steps.len() as f64,
                "must be >= fit_points (>= 2)",
            );
        }
        for (i, &n) in self.steps.iter().enumerate() {
            if n == 0 || n % k != 0 {
                return bad(
                    "steps",
                    i,
                    n as f64,
                    "must be >= 1 and a multiple of checkpoints",
                );
            }
            if i > 0 && n <= self.steps[i - 1] {
                return bad("steps", i, n as f64, "must be strictly increasing");
            }
        }
        if !(self.floor_factor.is_finite() && self.floor_factor >= 0.0) {
            return bad(
                "floor_factor",
                0,
                self.floor_factor,
                "must be finite and >= 0",
            );
        }
        Ok(())
    }
}

impl Default for OrderSweep {
    /// `OrderSweep::doubling(8, 8)`: 8, 16, …, 1024 steps.
    fn default() -> Self {
        OrderSweep::doubling(8, 8)
    }
}

/// One fixed-step solve of a sweep.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OrderPoint {
    /// Step count `N`.
    pub steps: usize,
    /// Step size `|t1 − t0| / N`.
    pub h: f64,
    /// Error (largest over the checkpoints, in the sweep's norm).
    pub error: f64,
    /// Round-off floor `floor_factor · ε · scale · √N`.
    pub floor: f64,
    /// Above the floor and below the errors of all coarser steps.
    pub usable: bool,
    /// Used in the fit.
    pub fitted: bool,
    /// Right-hand-side evaluations of the solve.
    pub nfe: usize,
}

/// The result of [`empirical_order`]: every point of the sweep and the fitted order.
/// `Display` prints it as a table.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderReport {
    /// The method's name.
    pub method: &'static str,
    /// The problem's name.
    pub problem: String,
    /// One point per step count, coarsest first.
    pub points: Vec<OrderPoint>,
    /// Points the fit needed (`fit_points`, or 2 when fitting all usable points).
    pub needed: usize,
    /// The fitted slope of `ln error` against `ln h`; `None` with fewer usable points than
    /// `needed`.
    pub order: Option<f64>,
}

impl OrderReport {
    /// The fitted order if it is within `tolerance` of `expected`; otherwise an error that
    /// carries the whole report ([`ConvergenceError::OrderMismatch`], or
    /// [`ConvergenceError::TooFewPoints`] when no order could be fitted).
    pub fn check(&self, expected: f64, tolerance: f64) -> Result<f64, ConvergenceError> {
        if !(tolerance.is_finite() && tolerance > 0.0) {
            return Err(ConvergenceError::InvalidSweep {
                what: "tolerance",
                index: 0,
                value: tolerance,
                requirement: "must be finite and > 0",
            });
        }
        match self.order {
            Some(p) if (p - expected).abs() < tolerance => Ok(p),
            Some(found) => Err(ConvergenceError::OrderMismatch {
                expected,
                tolerance,
                found,
                report: Box::new(self.clone()),
            }),
            None => Err(ConvergenceError::TooFewPoints {
                needed: self.needed,
                usable: self.points.iter().filter(|p| p.usable).count(),
                report: Box::new(self.clone()),
            }),
        }
    }
}

impl fmt::Display for OrderReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.order {
            Some(p) => writeln!(f, "{} on {}: order {p:.3}", self.method, self.problem)?,
            None => writeln!(f, "{} on {}: no order fitted", self.method, self.problem)?,
        }
        writeln!(
            f,
            "{:>8} {:>10} {:>10} {:>10} {:>8}  use",
            "steps", "h", "error", "floor", "nfe"
        )?;
        for p in &self.points {
            let mark = match (p.fitted, p.usable) {
                (true, _) => "fit",
                (false, true) => "ok",
                (false, false) => "-",
            };
            writeln!(
                f,
                "{:>8} {:>10.3e} {:>10.3e} {:>10.3e} {:>8}  {mark}",
                p.steps, p.h, p.error, p.floor, p.nfe
            )?;
        }
        Ok(())
    }
}

/// Runs `method` with each step count of `sweep` on `problem` and fits its order.
///
/// Each solve uses [`Options::fixed_step`] `h = |t1 − t0| / N` (no error control); the error
/// is measured at the sweep's checkpoints against [`ExactProblem::exact`], and the order is
/// the least-squares slope of `ln error` against `ln h` over the finest usable points (the
/// rules are in the [module docs](super)). Works for any explicit Runge–Kutta method,
/// [`Method::Rk`] with your own tableau included.
///
/// Errors: a bad sweep, interval, `y0` or exact solution, a malformed tableau, the Adams
/// method (variable-step only), or a failed solve; never a panic on what is passed in.
pub fn empirical_order<T: Real, P: ExactProblem<T> + ?Sized>(
    problem: &mut P,
    method: Method,
    sweep: &OrderSweep,
) -> Result<OrderReport, ConvergenceError> {
    sweep.validate()?;
    let tab = method.tableau().ok_or(ConvergenceError::NotFixedStep {
        method: method.name(),
    })?;
    check_tableau(tab)?;
    let (t0, t1) = (problem.t0(), problem.t1());
    check_interval(t0, t1)?;
    let dim = problem.dim();
    let y0 = problem.y0();
    check_vector("y0", &y0, dim, t0)?;
    // Checkpoints t0 + k (t1 − t0)/K, the last one exactly t1.
    let k_max = sweep.checkpoints;
    let span = t1 - t0;
    let ts: Vec<T> = (0..k_max)
        .map(|k| t0 + span * T::from_f64_const(k as f64 / k_max as f64))
        .chain([t1])
        .collect();
    let exact = ts
        .iter()
        .map(|&t| {
            let y = problem.exact(t);
            check_vector("exact(t)", &y, dim, t).map(|()| y)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let scale = scale_of(exact.iter().map(Vec::as_slice));
    let eps = T::epsilon().to_f64_lossy();
    let mut points = Vec::with_capacity(sweep.steps.len());
    for &n in &sweep.steps {
        let h = span.abs() / T::from_f64_const(n as f64);
        let options = Options {
            fixed_step: Some(h),
            max_steps: n.saturating_add(16),
            ..Options::default()
        };
        let sol = odeint(problem, &y0, &ts, method, &options)
            .map_err(|source| ConvergenceError::FixedStepSolve { steps: n, source })?;
        let error = (1..ts.len())
            .map(|k| error_norm(sol.y(k), &exact[k], sweep.norm))
            .fold(0.0, f64::max);
        points.push(OrderPoint {
            steps: n,
            h: h.to_f64_lossy(),
            error,
            floor: sweep.floor_factor * eps * scale * (n as f64).sqrt(),
            usable: false,
            fitted: false,
            nfe: sol.stats.nfe,
        });
    }
    let needed = sweep.fit_points.unwrap_or(2);
    let order = select_and_fit(&mut points, sweep.fit_points);
    Ok(OrderReport {
        method: tab.name,
        problem: problem.name().to_owned(),
        points,
        needed,
        order,
    })
}

/// Marks the usable points (finite error above the floor and below every coarser error),
/// marks the fitted ones (the `fit_points` finest usable, or all) and returns the slope.
fn select_and_fit(points: &mut [OrderPoint], fit_points: Option<usize>) -> Option<f64> {
    let mut best = f64::INFINITY;
    for p in points.iter_mut() {
        p.usable = p.error.is_finite() && p.error > p.floor && p.error < best;
        if p.error.is_finite() {
            best = best.min(p.error);
        }
    }
    let usable: Vec<usize> = (0..points.len()).filter(|&i| points[i].usable).collect();
    let take = fit_points.unwrap_or(usable.len().max(2));
    if usable.len() < take {
        return None;
    }
    let fit = &usable[usable.len() - take..];
    for &i in fit {
        points[i].fitted = true;
    }
    let h: Vec<f64> = fit.iter().map(|&i| points[i].h).collect();
    let e: Vec<f64> = fit.iter().map(|&i| points[i].error).collect();
    loglog_slope(&h, &e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(steps: usize, error: f64, floor: f64) -> OrderPoint {
        OrderPoint {
            steps,
            h: 1.0 / steps as f64,
            error,
            floor,
            usable: false,
            fitted: false,
            nfe: 0,
        }
    }

    #[test]
    fn floor_and_non_decreasing_errors_are_left_out_of_the_fit() {
        // Order 2 down to 1e-10, then round-off: above the floor but not decreasing.
        let mut pts = vec![
            point(10, 1e-2, 1e-12),
            point(100, 1e-4, 1e-12),
            point(1000, 1e-6, 1e-12),
            point(10_000, 1e-8, 1e-12),
            point(100_000, 3e-8, 1e-12),
            point(1_000_000, 2e-12, 1e-11),
            point(10_000_000, f64::NAN, 1e-11),
        ];
        let p = select_and_fit(&mut pts, Some(3)).unwrap();
        assert!((p - 2.0).abs() < 1e-12, "{p}");
        let usable: Vec<bool> = pts.iter().map(|p| p.usable).collect();
        assert_eq!(usable, [true, true, true, true, false, false, false]);
        let fitted: Vec<bool> = pts.iter().map(|p| p.fitted).collect();
        assert_eq!(fitted, [false, true, true, true, false, false, false]);
        // All usable points: still exactly 2.
        let p = select_and_fit(&mut pts, None).unwrap();
        assert!((p - 2.0).abs() < 1e-12 && pts[0].fitted);
        // Asking for more than there are usable points: no order.
        assert_eq!(select_and_fit(&mut pts, Some(5)), None);
    }

    #[test]
    fn sweeps_are_validated() {
        let ok = OrderSweep::new([8, 16, 32]);
        assert_eq!(ok.validate(), Ok(()));
        assert_eq!(
            OrderSweep::default().steps,
            [8, 16, 32, 64, 128, 256, 512, 1024]
        );
        let bad = [
            OrderSweep::new([8, 16]),
            OrderSweep::new([8, 8, 16]),
            OrderSweep::new([0, 8, 16]),
            OrderSweep {
                checkpoints: 3,
                ..ok.clone()
            },
            OrderSweep {
                checkpoints: 0,
                ..ok.clone()
            },
            OrderSweep {
                fit_points: Some(1),
                ..ok.clone()
            },
            OrderSweep {
                floor_factor: f64::NAN,
                ..ok.clone()
            },
        ];
        for s in bad {
            assert!(
                matches!(s.validate(), Err(ConvergenceError::InvalidSweep { .. })),
                "{s:?}"
            );
        }
        assert_eq!(
            OrderSweep {
                fit_points: None,
                ..OrderSweep::new([8, 16])
            }
            .validate(),
            Ok(())
        );
    }
}
