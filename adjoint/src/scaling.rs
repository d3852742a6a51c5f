//! Adjoint versus forward-sensitivity scaling in the number of parameters `P`.
//!
//! [`measure`] times one gradient (forward solve + backward) of an MLP Neural ODE
//! `2 → W → W → 2` (tanh, `P = W² + 6W + 2`) for each width `W` in each gradient mode and
//! returns a [`ScalingTable`]; [`ScalingTable::crossover`] finds where one mode overtakes
//! another (log-log interpolation in `P`). The `sensitivity_scaling` example prints the
//! table; the `neuralode sensitivity` CLI draws the log-log plot from it.
//!
//! What to expect: the adjoint's backward pass costs a few VJPs per step whatever `P`,
//! each `O(P)` arithmetic, so its time grows like one network evaluation. Forward
//! sensitivities through JVPs integrate `P + n` tangent columns, one JVP each per
//! evaluation: `O(P)` JVPs of `O(P)` each. Forward sensitivities built from explicit
//! Jacobians (`n` VJPs per evaluation, then `∂f/∂z S + ∂f/∂θ`) cost `O(n P)` per
//! evaluation, cheap for tiny states, but still carry `n × (P + n)` sensitivities.

use std::time::Instant;

use ode_solvers::{Method, Options};
use serde::Serialize;

use crate::dynamics::{Dynamics, Vjp};
use crate::error::Result;
use crate::solver::{AdjointSolver, GradientMode};
use crate::test_problems::{Mlp, SplitMix64};

/// One measurement.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScalingRow {
    /// Hidden width `W`.
    pub width: usize,
    /// Number of parameters `P`.
    pub n_params: usize,
    /// Mode label (`checkpointed`, `backsolve`, `direct`, `forward-jvp`, `forward-jacobian`).
    pub mode: String,
    /// Best wall time of one forward + backward over the repeats, in seconds.
    pub seconds: f64,
    /// Forward evaluations.
    pub forward_nfe: usize,
    /// Backward VJPs (and VJPs used to build Jacobians).
    pub vjp: usize,
    /// JVPs.
    pub jvp: usize,
    /// Peak bytes held by the solver.
    pub peak_bytes: usize,
}

/// A table of [`ScalingRow`]s.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct ScalingTable {
    /// The measurements, by width then mode.
    pub rows: Vec<ScalingRow>,
    /// Modes skipped at larger widths because one run exceeded the time budget.
    pub skipped: Vec<(String, usize)>,
    /// A description of the set-up.
    pub setup: String,
}

impl ScalingTable {
    /// `(P, seconds)` of one mode, in increasing `P`.
    pub fn series(&self, mode: &str) -> Vec<(f64, f64)> {
        let mut v: Vec<(f64, f64)> = self
            .rows
            .iter()
            .filter(|r| r.mode == mode)
            .map(|r| (r.n_params as f64, r.seconds))
            .collect();
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
        v
    }

    /// The parameter count where mode `slow_at_large` becomes slower than `fast_at_large`
    /// (geometric interpolation between measured points). `Some(P)` when the order of the
    /// two flips inside the measured range; `None` when it never flips (see
    /// [`ScalingTable::ratio`] for which one wins).
    pub fn crossover(&self, fast_at_large: &str, slow_at_large: &str) -> Option<f64> {
        let a = self.series(fast_at_large);
        let b = self.series(slow_at_large);
        let common: Vec<(f64, f64, f64)> = a
            .iter()
            .filter_map(|(p, ta)| {
                b.iter()
                    .find(|(q, _)| q == p)
                    .map(|(_, tb)| (*p, ta.ln(), tb.ln()))
            })
            .collect();
        for w in common.windows(2) {
            let (p0, a0, b0) = w[0];
            let (p1, a1, b1) = w[1];
            let d0 = b0 - a0;
            let d1 = b1 - a1;
            if d0 <= 0.0 && d1 > 0.0 {
                let f = -d0 / (d1 - d0);
                return Some((p0.ln() + f * (p1.ln() - p0.ln())).exp());
            }
        }
        None
    }

    /// `time(mode_b) / time(mode_a)` at the largest `P` both were measured at.
    pub fn ratio(&self, mode_a: &str, mode_b: &str) -> Option<f64> {
        let a = self.series(mode_a);
        let b = self.series(mode_b);
        a.iter()
            .rev()
            .find_map(|(p, ta)| b.iter().find(|(q, _)| q == p).map(|(_, tb)| tb / ta))
    }

    /// Least-squares slope of `log(seconds)` against `log(P)` for one mode.
    pub fn slope(&self, mode: &str) -> Option<f64> {
        self.fit(mode).map(|f| f.0)
    }

    /// Where the fitted power laws `seconds = c Pᵏ` of two modes meet (`None` when fewer
    /// than two points or parallel fits): the crossover extrapolated beyond the measured
    /// range when [`ScalingTable::crossover`] finds none inside it.
    pub fn extrapolated_crossover(&self, mode_a: &str, mode_b: &str) -> Option<f64> {
        let (ka, ca) = self.fit(mode_a)?;
        let (kb, cb) = self.fit(mode_b)?;
        if (ka - kb).abs() < 1e-12 {
            return None;
        }
        Some(((ca - cb) / (kb - ka)).exp())
    }

    /// `(slope, intercept)` of `log(seconds)` against `log(P)`.
    fn fit(&self, mode: &str) -> Option<(f64, f64)> {
        let s = self.series(mode);
        if s.len() < 2 {
            return None;
        }
        let k = s.len() as f64;
        let (mx, my) = s
            .iter()
            .fold((0.0, 0.0), |(x, y), (p, t)| (x + p.ln(), y + t.ln()));
        let (mx, my) = (mx / k, my / k);
        let (sxy, sxx) = s.iter().fold((0.0, 0.0), |(a, b), (p, t)| {
            let dx = p.ln() - mx;
            (a + dx * (t.ln() - my), b + dx * dx)
        });
        let k = sxy / sxx;
        Some((k, my - k * mx))
    }
}

impl core::fmt::Display for ScalingTable {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        writeln!(f, "{}", self.setup)?;
        writeln!(
            f,
            "{:>6} {:>8} {:<18} {:>12} {:>8} {:>9} {:>10} {:>12}",
            "W", "P", "mode", "seconds", "fwd nfe", "vjp", "jvp", "peak bytes"
        )?;
        for r in &self.rows {
            writeln!(
                f,
                "{:>6} {:>8} {:<18} {:>12.4e} {:>8} {:>9} {:>10} {:>12}",
                r.width, r.n_params, r.mode, r.seconds, r.forward_nfe, r.vjp, r.jvp, r.peak_bytes
            )?;
        }
        for (m, w) in &self.skipped {
            writeln!(f, "skipped {m} from W = {w} on (time budget)")?;
        }
        Ok(())
    }
}

/// Settings of [`measure`].
#[derive(Debug, Clone, PartialEq)]
pub struct ScalingConfig {
    /// Hidden widths `W` (`P = W² + 6W + 2`).
    pub widths: Vec<usize>,
    /// Trajectories in the batch (state `2 × batch`).
    pub batch: usize,
    /// End time (`t ∈ [0, t1]`).
    pub t1: f64,
    /// Relative and absolute tolerance (Dopri5).
    pub tol: f64,
    /// Timed repetitions per point (best kept).
    pub repeats: usize,
    /// Once a mode takes longer than this for one gradient, it is skipped at larger widths.
    pub time_budget: f64,
    /// Modes: any of `checkpointed`, `backsolve`, `backsolve-seminorm`, `direct`,
    /// `forward-jvp`, `forward-jacobian`.
    pub modes: Vec<&'static str>,
}

impl Default for ScalingConfig {
    fn default() -> Self {
        ScalingConfig {
            // P ≈ 18 … 1.0e5 (10² … 10⁵ and a little below, to locate the crossover).
            widths: vec![2, 4, 8, 16, 32, 64, 128, 316],
            batch: 1,
            t1: 1.0,
            tol: 1e-6,
            repeats: 3,
            time_budget: 2.0,
            modes: vec![
                "checkpointed",
                "backsolve",
                "direct",
                "forward-jvp",
                "forward-jacobian",
            ],
        }
    }
}

/// Hides the JVP of a dynamics, so forward sensitivities build explicit Jacobians.
struct HideJvp<D>(D);

impl<D: Dynamics<f64>> Dynamics<f64> for HideJvp<D> {
    fn n_states(&self) -> usize {
        self.0.n_states()
    }
    fn n_params(&self) -> usize {
        self.0.n_params()
    }
    fn eval(&mut self, t: f64, z: &[f64], th: &[f64], out: &mut [f64]) -> Result<()> {
        self.0.eval(t, z, th, out)
    }
}

impl<D: Vjp<f64>> Vjp<f64> for HideJvp<D> {
    fn vjp_z(&mut self, t: f64, z: &[f64], th: &[f64], a: &[f64], o: &mut [f64]) -> Result<()> {
        self.0.vjp_z(t, z, th, a, o)
    }
    fn vjp_theta(&mut self, t: f64, z: &[f64], th: &[f64], a: &[f64], o: &mut [f64]) -> Result<()> {
        self.0.vjp_theta(t, z, th, a, o)
    }
    fn vjp_t(&mut self, t: f64, z: &[f64], th: &[f64], a: &[f64]) -> Result<f64> {
        self.0.vjp_t(t, z, th, a)
    }
    fn vjp(
        &mut self,
        t: f64,
        z: &[f64],
        th: &[f64],
        a: &[f64],
        oz: &mut [f64],
        oth: &mut [f64],
    ) -> Result<f64> {
        self.0.vjp(t, z, th, a, oz, oth)
    }
}

fn mode_of(name: &str) -> GradientMode<f64> {
    match name {
        "backsolve" => GradientMode::backsolve(false),
        "backsolve-seminorm" => GradientMode::backsolve(true),
        "direct" => GradientMode::Direct,
        "forward-jvp" => GradientMode::ForwardJvp,
        "forward-jacobian" => GradientMode::Forward,
        _ => GradientMode::checkpointed(),
    }
}

/// One gradient of `loss = mean z(t1)²` for the `2 → W → W → 2` MLP Neural ODE, timed.
fn one<D: Vjp<f64>>(
    d: &mut D,
    solver: &mut AdjointSolver<f64>,
    z0: &[f64],
    theta: &[f64],
    ts: &[f64],
) -> Result<f64> {
    let start = Instant::now();
    let _ = solver.value_and_grad(d, z0, theta, ts, |zs, dl| {
        let n = z0.len();
        let zt = &zs[zs.len() - n..];
        let m = n as f64;
        let len = dl.len();
        for (o, z) in dl[len - n..].iter_mut().zip(zt) {
            *o = 2.0 * z / m;
        }
        zt.iter().map(|z| z * z).sum::<f64>() / m
    })?;
    Ok(start.elapsed().as_secs_f64())
}

/// Runs the sweep (see the module docs).
pub fn measure(cfg: &ScalingConfig) -> Result<ScalingTable> {
    let mut table = ScalingTable {
        setup: format!(
            "MLP Neural ODE 2→W→W→2 tanh, batch {}, Dopri5 rtol = atol = {:e}, t ∈ [0, {}], loss = mean z(t1)², best of {}",
            cfg.batch, cfg.tol, cfg.t1, cfg.repeats
        ),
        ..ScalingTable::default()
    };
    let mut over_budget: Vec<&str> = Vec::new();
    let ts = [0.0, cfg.t1];
    for &w in &cfg.widths {
        let mlp = Mlp::<f64>::new(&[2, w, w, 2], cfg.batch.max(1), false)?;
        let theta = mlp.init_params(w as u64, 1.0);
        let mut rng = SplitMix64::new(17);
        let z0: Vec<f64> = (0..2 * cfg.batch.max(1))
            .map(|_| rng.uniform_pm1())
            .collect();
        for &name in &cfg.modes {
            if over_budget.contains(&name) {
                table.skipped.push((name.to_string(), w));
                continue;
            }
            let mut solver =
                AdjointSolver::new(Method::Dopri5, Options::with_tol(cfg.tol, cfg.tol))
                    .with_mode(mode_of(name));
            let mut best = f64::INFINITY;
            let mut d = mlp.clone();
            let mut hidden = HideJvp(mlp.clone());
            for _ in 0..cfg.repeats.max(1) {
                let s = if name == "forward-jacobian" {
                    one(&mut hidden, &mut solver, &z0, &theta, &ts)?
                } else {
                    one(&mut d, &mut solver, &z0, &theta, &ts)?
                };
                best = best.min(s);
                if s > cfg.time_budget {
                    break;
                }
            }
            if best > cfg.time_budget {
                over_budget.push(name);
            }
            let st = solver.stats();
            table.rows.push(ScalingRow {
                width: w,
                n_params: d.n_params(),
                mode: name.to_string(),
                seconds: best,
                forward_nfe: st.forward.nfe,
                vjp: st.backward_vjp,
                jvp: st.jvp,
                peak_bytes: st.peak_bytes,
            });
        }
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(p: usize, mode: &str, seconds: f64) -> ScalingRow {
        ScalingRow {
            width: 0,
            n_params: p,
            mode: mode.into(),
            seconds,
            forward_nfe: 0,
            vjp: 0,
            jvp: 0,
            peak_bytes: 0,
        }
    }

    #[test]
    fn crossover_slope_and_extrapolation() {
        // adjoint: t = 1e-3 P^0.5 ; forward: t = 1e-5 P^1.5 → equal at P = 100.
        let mut t = ScalingTable::default();
        for p in [10usize, 1000, 100_000] {
            let pf = p as f64;
            t.rows.push(row(p, "adj", 1e-3 * pf.sqrt()));
            t.rows.push(row(p, "fwd", 1e-5 * pf.powf(1.5)));
        }
        let c = t.crossover("adj", "fwd").unwrap();
        assert!((c / 100.0 - 1.0).abs() < 1e-9, "{c}");
        assert!((t.slope("fwd").unwrap() - 1.5).abs() < 1e-12);
        assert!((t.extrapolated_crossover("adj", "fwd").unwrap() / 100.0 - 1.0).abs() < 1e-9);
        assert!(t.crossover("fwd", "adj").is_none());
        assert!((t.ratio("adj", "fwd").unwrap() - 1000.0).abs() < 1e-6);
        assert!(t.to_string().contains("fwd"));
    }

    #[test]
    fn tiny_sweep_runs() {
        let cfg = ScalingConfig {
            widths: vec![2, 4],
            repeats: 1,
            ..ScalingConfig::default()
        };
        let t = measure(&cfg).unwrap();
        assert_eq!(t.rows.len(), 2 * cfg.modes.len());
        // The adjoint's work does not grow with P: same number of VJPs at both widths.
        let v: Vec<usize> = t
            .rows
            .iter()
            .filter(|r| r.mode == "checkpointed")
            .map(|r| r.vjp)
            .collect();
        assert!(v[0] > 0 && v[1] <= 2 * v[0], "{v:?}");
    }
}
