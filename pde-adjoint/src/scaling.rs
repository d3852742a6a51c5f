//! Scaling measurements: cost of `J` plus its gradient by the adjoint, by
//! forward sensitivities and by finite differences, against the forward solve.
//!
//! These are wall-clock measurements for reports and plots (the criterion
//! group in `benches/benches/pde.rs` is the statistically careful one).

use std::time::Instant;

use faer::traits::RealField;
use real::Real;

use crate::error::{PdeError, Result};
use crate::grid::Grid;
use crate::problem::HeatProblem;

/// One row of a [`ScalingTable`]; times in seconds, each the minimum over the
/// repeats.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScalingRow {
    /// Number of unknowns.
    pub n: usize,
    /// Forward solve alone: assembly, symbolic + numeric factorisation, one
    /// solve, `J`.
    pub forward: f64,
    /// `J` + gradient by the adjoint, factorisation included.
    pub adjoint: f64,
    /// Forward solve and `J` with the factor kept (one design iteration).
    pub forward_reused: f64,
    /// `J` + adjoint gradient with the factor kept (two solves).
    pub adjoint_reused: f64,
    /// `J` + gradient by forward sensitivities (`n + 1` solves), if run.
    pub forward_sensitivities: Option<f64>,
    /// `J` + gradient by central differences (`2n + 1` solves), if run.
    pub finite_differences: Option<f64>,
}

impl ScalingRow {
    /// `adjoint / forward` (the goal is ≤ 1.5).
    pub fn adjoint_ratio(&self) -> f64 {
        self.adjoint / self.forward
    }
}

/// Measurements over a range of sizes.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ScalingTable {
    /// One row per size, in the order measured.
    pub rows: Vec<ScalingRow>,
}

impl ScalingTable {
    /// Least-squares slope of `log(time)` against `log n` for the column
    /// `time` (e.g. `|r| r.adjoint`) over rows with `n ≥ n_min` (1 means linear
    /// growth); `None` with fewer than 2 usable rows.
    pub fn slope(&self, n_min: usize, time: impl Fn(&ScalingRow) -> f64) -> Option<f64> {
        let pts: Vec<(f64, f64)> = self
            .rows
            .iter()
            .filter(|r| r.n >= n_min && time(r) > 0.0)
            .map(|r| ((r.n as f64).ln(), time(r).ln()))
            .collect();
        if pts.len() < 2 {
            return None;
        }
        let k = pts.len() as f64;
        let mx = pts.iter().map(|p| p.0).sum::<f64>() / k;
        let my = pts.iter().map(|p| p.1).sum::<f64>() / k;
        let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
        let sxx: f64 = pts.iter().map(|p| (p.0 - mx) * (p.0 - mx)).sum();
        Some(sxy / sxx)
    }

    /// A plain-text table (`*-kept`: the factor reused, one design iteration).
    pub fn to_text(&self) -> String {
        let opt = |t: Option<f64>| t.map_or_else(|| "-".to_string(), |t| format!("{t:.3e}"));
        let mut out = format!(
            "{:>9} {:>11} {:>11} {:>7} {:>11} {:>11} {:>11} {:>11}\n",
            "n",
            "forward s",
            "adjoint s",
            "ratio",
            "fwd-kept s",
            "adj-kept s",
            "fwd-sens s",
            "fin-diff s"
        );
        for r in &self.rows {
            out.push_str(&format!(
                "{:>9} {:>11.3e} {:>11.3e} {:>7.3} {:>11.3e} {:>11.3e} {:>11} {:>11}\n",
                r.n,
                r.forward,
                r.adjoint,
                r.adjoint_ratio(),
                r.forward_reused,
                r.adjoint_reused,
                opt(r.forward_sensitivities),
                opt(r.finite_differences)
            ));
        }
        out
    }
}

/// Options of [`measure_scaling`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScalingOptions {
    /// Repeats per measurement (the minimum is kept), ≥ 1.
    pub repeats: usize,
    /// Run the O(n²) methods only while their predicted time
    /// (`n ×` one solve) stays under this many seconds.
    pub quadratic_budget: f64,
}

impl Default for ScalingOptions {
    fn default() -> Self {
        Self {
            repeats: 3,
            quadratic_budget: 10.0,
        }
    }
}

fn time<R>(repeats: usize, mut f: impl FnMut() -> Result<R>) -> Result<f64> {
    let mut best = f64::INFINITY;
    for _ in 0..repeats {
        let t0 = Instant::now();
        std::hint::black_box(f()?);
        best = best.min(t0.elapsed().as_secs_f64());
    }
    Ok(best)
}

/// Measures one grid: heater `s(x) = 1`, target `sin(πx)` (times `sin(πy)`).
pub fn measure_grid<G: Grid, T: Real + RealField>(
    grid: &G,
    options: &ScalingOptions,
) -> Result<ScalingRow> {
    if options.repeats == 0 {
        return Err(PdeError::InvalidOption {
            name: "repeats",
            requirement: "at least 1",
            value: 0.0,
        });
    }
    let n = grid.n_unknowns();
    let pi = std::f64::consts::PI;
    let target: Vec<T> = grid.sample(&|p| {
        (pi * p[0]).sin()
            * if grid.dimension() > 1 {
                (pi * p[1]).sin()
            } else {
                1.0
            }
    });
    let s = vec![T::one(); n];
    let mut g = vec![T::zero(); n];
    let forward = time(options.repeats, || {
        HeatProblem::new(grid, &target)?.objective(&s)
    })?;
    let adjoint = time(options.repeats, || {
        HeatProblem::new(grid, &target)?.objective_and_gradient(&s, &mut g)
    })?;
    // Predict the quadratic methods from the cost of one solve.
    let mut problem = HeatProblem::new(grid, &target)?;
    let one_solve = time(options.repeats, || problem.objective(&s))?;
    let adjoint_reused = time(options.repeats, || {
        problem.objective_and_gradient(&s, &mut g)
    })?;
    let predicted = one_solve * n as f64;
    let run_quadratic = predicted <= options.quadratic_budget;
    // Repeat the quadratic methods too while that stays cheap.
    let reps = if 2.0 * predicted * options.repeats as f64 <= 0.1 * options.quadratic_budget {
        options.repeats
    } else {
        1
    };
    let (mut fs, mut fd) = (None, None);
    if run_quadratic {
        fs = Some(time(reps, || {
            HeatProblem::new(grid, &target)?.gradient_forward(&s, &mut g)
        })?);
    }
    if run_quadratic && 2.0 * one_solve * n as f64 <= options.quadratic_budget {
        fd = Some(time(reps, || {
            HeatProblem::new(grid, &target)?.gradient_fd(&s, &mut g, None)
        })?);
    }
    Ok(ScalingRow {
        n,
        forward,
        adjoint,
        forward_reused: one_solve,
        adjoint_reused,
        forward_sensitivities: fs,
        finite_differences: fd,
    })
}

/// Measures `grids` in turn (e.g. rods with `n = 10², …, 10⁶`).
pub fn measure_scaling<G: Grid, T: Real + RealField>(
    grids: &[G],
    options: &ScalingOptions,
) -> Result<ScalingTable> {
    let rows = grids
        .iter()
        .map(|g| measure_grid::<G, T>(g, options))
        .collect::<Result<Vec<_>>>()?;
    Ok(ScalingTable { rows })
}
