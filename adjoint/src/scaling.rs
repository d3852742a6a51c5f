//! Adjoint versus forward sensitivities on your own dynamics: the cost of one gradient
//! as the number of parameters `P` grows.
//!
//! Give [`measure`] a *family* of problems, a closure `FnMut(size) -> Result<Instance>`
//! that returns the dynamics (any [`Vjp`]), the initial state and the parameters for one
//! size, and the [`TimedMode`]s to compare (any [`GradientMode`]s, under labels). It times
//! one gradient (forward solve + backward) of `L = mean z(t₁)²` for each size and mode,
//! best of a few repeats, and returns a [`ScalingTable`]: the measurements with their
//! counters, the fitted log-log slope of time against `P` for each mode
//! ([`ScalingTable::slopes`]), and where one mode overtakes another
//! ([`ScalingTable::crossover`] inside the measured range,
//! [`ScalingTable::extrapolated_crossover`] where the fitted power laws meet). With the
//! `serde` feature the table is `serde::Serialize`.
//!
//! [`MlpFamily`] is the built-in family: the `2 → W → W → 2` tanh MLP Neural ODE
//! ([`TanhMlp`], `P = W² + 6W + 2`) at width `W`. The `sensitivity_scaling` example
//! prints its table; the `neuralode sensitivity` program draws the log-log plot from it.
//!
//! What to expect: the adjoint's backward pass costs a few VJPs per step whatever `P`,
//! each `O(P)` arithmetic, so its time grows like one network evaluation. Forward
//! sensitivities through JVPs integrate `P + n` tangent columns, one JVP each per
//! evaluation: `O(P)` JVPs of `O(P)` each. Forward sensitivities built from explicit
//! Jacobians (`n` VJPs per evaluation, then `∂f/∂z S + ∂f/∂θ`) cost `O(n P)` per
//! evaluation, cheap for tiny states, but still carry `n × (P + n)` sensitivities.
//! [`GradientMode::Forward`] on [`TanhMlp`] itself takes neither route: its
//! [`Vjp::sensitivity_rhs`] builds the whole block from per-row Jacobians in
//! `O(n (P + n) d)` per evaluation (the `forward-jvp` and `forward-jacobian` labels time
//! the two generic routes).
//!
//! # Example
//!
//! Decay rates as parameters, `żᵢ = −θᵢ zᵢ` with `P = n = size`:
//!
//! ```
//! use adjoint::scaling::{Instance, ScalingConfig, TimedMode, measure};
//! use adjoint::{FnDynamics, GradientMode};
//!
//! let family = |n: usize| {
//!     let dynamics = FnDynamics::new(n, n, |_t: f64, z: &[f64], th: &[f64], out: &mut [f64]| {
//!         for ((o, z), th) in out.iter_mut().zip(z).zip(th) {
//!             *o = -th * z;
//!         }
//!     })
//!     .with_vjp(|_t, z, th, a, gz, gth| {
//!         for i in 0..z.len() {
//!             gz[i] = -th[i] * a[i];
//!             gth[i] = -z[i] * a[i];
//!         }
//!         0.0 // aᵀ∂f/∂t
//!     });
//!     Ok(Instance { dynamics, z0: vec![1.0; n], theta: vec![0.5; n] })
//! };
//! let cfg = ScalingConfig {
//!     sizes: vec![4, 16, 64],
//!     modes: vec![
//!         TimedMode::new("adjoint", GradientMode::checkpointed()),
//!         TimedMode::new("forward", GradientMode::Forward),
//!     ],
//!     repeats: 1,
//!     description: "decay, P = n".into(),
//!     ..ScalingConfig::default()
//! };
//! let table = measure(&cfg, family)?;
//! assert_eq!(table.rows.len(), 6);
//! assert_eq!(table.rows[5].n_params, 64);
//! for (mode, slope) in table.slopes() {
//!     println!("{mode}: time ∝ P^{slope:.2}");
//! }
//! println!("{table}");
//! # Ok::<(), adjoint::Error>(())
//! ```

use std::time::Instant;

use ode_solvers::{Method, Options, Real};

use crate::dynamics::{Dynamics, Vjp};
use crate::error::Result;
use crate::mlp::TanhMlp;
use crate::rng::SplitMix64;
use crate::solver::{AdjointSolver, GradientMode};

/// One problem of a family: what the family returns for one size.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance<D, T> {
    /// The dynamics; its [`Dynamics::n_params`] is the `P` of the table.
    pub dynamics: D,
    /// The initial state `z(0)`.
    pub z0: Vec<T>,
    /// The parameters `θ`.
    pub theta: Vec<T>,
}

/// A gradient mode to time, under the label the table shows.
#[derive(Debug, Clone, PartialEq)]
pub struct TimedMode<T> {
    /// The label in the table (and the key of [`ScalingTable::series`]).
    pub label: String,
    /// The gradient mode.
    pub mode: GradientMode<T>,
    /// Hide the dynamics' JVP, so that [`GradientMode::Forward`] builds explicit Jacobians
    /// from `n` VJPs per evaluation even where the dynamics have a JVP.
    pub hide_jvp: bool,
}

/// The labels [`TimedMode::named`] knows, in plotting order.
pub const MODE_LABELS: [&str; 6] = [
    "checkpointed",
    "backsolve",
    "backsolve-seminorm",
    "direct",
    "forward-jvp",
    "forward-jacobian",
];

impl<T> TimedMode<T> {
    /// `mode` under `label`.
    pub fn new(label: impl Into<String>, mode: GradientMode<T>) -> Self {
        TimedMode {
            label: label.into(),
            mode,
            hide_jvp: false,
        }
    }

    /// The same mode run on the dynamics with their JVP hidden (see
    /// [`TimedMode::hide_jvp`]).
    pub fn hiding_jvp(mut self) -> Self {
        self.hide_jvp = true;
        self
    }

    /// The mode a label of [`MODE_LABELS`] stands for: `checkpointed` (the default
    /// checkpointed adjoint), `backsolve`, `backsolve-seminorm`, `direct`, `forward-jvp`
    /// ([`GradientMode::ForwardJvp`]) and `forward-jacobian` ([`GradientMode::Forward`] with
    /// the JVP hidden); `None` for any other label.
    pub fn named(label: &str) -> Option<Self> {
        let mode = match label {
            "checkpointed" => GradientMode::checkpointed(),
            "backsolve" => GradientMode::backsolve(false),
            "backsolve-seminorm" => GradientMode::backsolve(true),
            "direct" => GradientMode::Direct,
            "forward-jvp" => GradientMode::ForwardJvp,
            "forward-jacobian" => {
                return Some(Self::new(label, GradientMode::Forward).hiding_jvp());
            }
            _ => return None,
        };
        Some(Self::new(label, mode))
    }
}

/// One measurement.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct ScalingRow {
    /// The size handed to the family (the hidden width `W` for [`MlpFamily`]).
    pub size: usize,
    /// Number of parameters `P`.
    pub n_params: usize,
    /// Mode label ([`TimedMode::label`]).
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
#[derive(Debug, Clone, PartialEq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct ScalingTable {
    /// The measurements, by size then mode.
    pub rows: Vec<ScalingRow>,
    /// Modes (label, size) skipped at larger sizes because one run exceeded the time budget.
    pub skipped: Vec<(String, usize)>,
    /// A description of the set-up.
    pub setup: String,
    /// The name of the size column ([`ScalingConfig::size_label`]).
    pub size_label: String,
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

    /// The fitted log-log slope of every mode measured at two sizes or more, in the order
    /// the modes first appear in the table.
    pub fn slopes(&self) -> Vec<(String, f64)> {
        let mut labels: Vec<&str> = Vec::new();
        for r in &self.rows {
            if !labels.contains(&r.mode.as_str()) {
                labels.push(&r.mode);
            }
        }
        labels
            .into_iter()
            .filter_map(|m| self.slope(m).map(|k| (m.to_string(), k)))
            .collect()
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
        let size = match self.size_label.as_str() {
            "" => "size",
            label => label,
        };
        writeln!(f, "{}", self.setup)?;
        writeln!(
            f,
            "{:>6} {:>8} {:<18} {:>12} {:>8} {:>9} {:>10} {:>12}",
            size, "P", "mode", "seconds", "fwd nfe", "vjp", "jvp", "peak bytes"
        )?;
        for r in &self.rows {
            writeln!(
                f,
                "{:>6} {:>8} {:<18} {:>12.4e} {:>8} {:>9} {:>10} {:>12}",
                r.size, r.n_params, r.mode, r.seconds, r.forward_nfe, r.vjp, r.jvp, r.peak_bytes
            )?;
        }
        for (m, w) in &self.skipped {
            writeln!(f, "skipped {m} from {size} = {w} on (time budget)")?;
        }
        Ok(())
    }
}

/// Settings of [`measure`].
#[derive(Debug, Clone, PartialEq)]
pub struct ScalingConfig<T> {
    /// The sizes handed to the family, in order (none by default; for [`MlpFamily`] the
    /// hidden widths `W`).
    pub sizes: Vec<usize>,
    /// The modes to time, in order (default: `checkpointed`, `backsolve`, `direct`,
    /// `forward-jvp`, `forward-jacobian`, see [`TimedMode::named`]).
    pub modes: Vec<TimedMode<T>>,
    /// The integration method (default Dopri5).
    pub method: Method,
    /// Relative tolerance (default `1e-6`).
    pub rtol: T,
    /// Absolute tolerance (default `1e-6`).
    pub atol: T,
    /// End time, `t ∈ [0, t1]` (default 1).
    pub t1: T,
    /// Timed repetitions per point, the best kept (default 3).
    pub repeats: usize,
    /// Once a mode takes longer than this many seconds for one gradient, it is skipped at
    /// larger sizes (default 2).
    pub time_budget: f64,
    /// What the family is, for the table's set-up line (default empty).
    pub description: String,
    /// The name of the size column (default `"size"`).
    pub size_label: String,
}

impl<T: Real> Default for ScalingConfig<T> {
    fn default() -> Self {
        ScalingConfig {
            sizes: Vec::new(),
            modes: [
                "checkpointed",
                "backsolve",
                "direct",
                "forward-jvp",
                "forward-jacobian",
            ]
            .into_iter()
            .filter_map(TimedMode::named)
            .collect(),
            method: Method::Dopri5,
            rtol: T::from_f64_const(1e-6),
            atol: T::from_f64_const(1e-6),
            t1: T::one(),
            repeats: 3,
            time_budget: 2.0,
            description: String::new(),
            size_label: "size".into(),
        }
    }
}

/// The built-in family: the `2 → W → W → 2` tanh MLP Neural ODE ([`TanhMlp`], no time
/// input, `P = W² + 6W + 2`) at width `W = size`, over a batch of trajectories.
///
/// Parameters are [`TanhMlp::init_params`] with seed `W` and scale 1; the initial states
/// are uniform in `[−1, 1)` from a fixed seed, so every run measures the same problems.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MlpFamily {
    /// Trajectories in the batch (the state has `2 × batch` components).
    pub batch: usize,
}

impl MlpFamily {
    /// The widths of the default sweep: `P ≈ 18 … 1.0e5` (10² … 10⁵ and a little below,
    /// to locate the crossover).
    pub const DEFAULT_WIDTHS: [usize; 8] = [2, 4, 8, 16, 32, 64, 128, 316];

    /// The family over `batch` trajectories.
    pub fn new(batch: usize) -> Self {
        MlpFamily { batch }
    }

    /// The set-up line of its tables.
    pub fn description(&self) -> String {
        format!("MLP Neural ODE 2→W→W→2 tanh, batch {}", self.batch)
    }

    /// The problem at width `width` (an error for a zero width or batch).
    pub fn instance<T: Real>(&self, width: usize) -> Result<Instance<TanhMlp<T>, T>> {
        let dynamics = TanhMlp::new(&[2, width, width, 2], self.batch, false)?;
        let theta = dynamics.init_params(width as u64, 1.0);
        let mut rng = SplitMix64::new(17);
        let z0 = (0..2 * self.batch)
            .map(|_| T::from_f64_const(rng.uniform_pm1()))
            .collect();
        Ok(Instance {
            dynamics,
            z0,
            theta,
        })
    }

    /// The default settings for this family: [`MlpFamily::DEFAULT_WIDTHS`], its
    /// description and the size column `W`.
    pub fn config<T: Real>(&self) -> ScalingConfig<T> {
        ScalingConfig {
            sizes: Self::DEFAULT_WIDTHS.to_vec(),
            description: self.description(),
            size_label: "W".into(),
            ..ScalingConfig::default()
        }
    }
}

/// Hides the JVP of a dynamics, so forward sensitivities build explicit Jacobians.
struct HideJvp<'a, D: ?Sized>(&'a mut D);

impl<T: Real, D: Dynamics<T> + ?Sized> Dynamics<T> for HideJvp<'_, D> {
    fn n_states(&self) -> usize {
        self.0.n_states()
    }
    fn n_params(&self) -> usize {
        self.0.n_params()
    }
    fn eval(&mut self, t: T, z: &[T], th: &[T], out: &mut [T]) -> Result<()> {
        self.0.eval(t, z, th, out)
    }
}

impl<T: Real, D: Vjp<T> + ?Sized> Vjp<T> for HideJvp<'_, D> {
    fn vjp_z(&mut self, t: T, z: &[T], th: &[T], a: &[T], o: &mut [T]) -> Result<()> {
        self.0.vjp_z(t, z, th, a, o)
    }
    fn vjp_theta(&mut self, t: T, z: &[T], th: &[T], a: &[T], o: &mut [T]) -> Result<()> {
        self.0.vjp_theta(t, z, th, a, o)
    }
    fn vjp_t(&mut self, t: T, z: &[T], th: &[T], a: &[T]) -> Result<T> {
        self.0.vjp_t(t, z, th, a)
    }
    fn vjp(&mut self, t: T, z: &[T], th: &[T], a: &[T], oz: &mut [T], oth: &mut [T]) -> Result<T> {
        self.0.vjp(t, z, th, a, oz, oth)
    }
}

/// One gradient of `loss = mean z(t1)²`, timed.
fn one<T: Real, D: Vjp<T> + ?Sized>(
    d: &mut D,
    solver: &mut AdjointSolver<T>,
    z0: &[T],
    theta: &[T],
    ts: &[T],
) -> Result<f64> {
    let start = Instant::now();
    let _ = solver.value_and_grad(d, z0, theta, ts, |zs, dl| {
        let n = z0.len();
        let zt = &zs[zs.len() - n..];
        let m = T::from_f64_const(n as f64);
        let two = T::from_f64_const(2.0);
        let len = dl.len();
        for (o, z) in dl[len - n..].iter_mut().zip(zt) {
            *o = two * *z / m;
        }
        zt.iter().map(|z| *z * *z).sum::<T>() / m
    })?;
    Ok(start.elapsed().as_secs_f64())
}

/// Runs the sweep (see the module docs): for each size of `cfg.sizes`, builds the
/// problem with `family(size)` and times one gradient in each mode of `cfg.modes`.
///
/// Errors of the family and of the solves are returned as they come.
pub fn measure<T, D, F>(cfg: &ScalingConfig<T>, mut family: F) -> Result<ScalingTable>
where
    T: Real,
    D: Vjp<T>,
    F: FnMut(usize) -> Result<Instance<D, T>>,
{
    let (rtol, atol) = (cfg.rtol.to_f64_lossy(), cfg.atol.to_f64_lossy());
    let tol = if rtol == atol {
        format!("rtol = atol = {rtol:e}")
    } else {
        format!("rtol = {rtol:e}, atol = {atol:e}")
    };
    let solve = format!(
        "{:?} {tol}, t ∈ [0, {}], loss = mean z(t1)², best of {}",
        cfg.method, cfg.t1, cfg.repeats
    );
    let mut table = ScalingTable {
        setup: if cfg.description.is_empty() {
            solve
        } else {
            format!("{}, {solve}", cfg.description)
        },
        size_label: cfg.size_label.clone(),
        ..ScalingTable::default()
    };
    let mut over_budget: Vec<usize> = Vec::new();
    let ts = [T::zero(), cfg.t1];
    for &size in &cfg.sizes {
        let Instance {
            mut dynamics,
            z0,
            theta,
        } = family(size)?;
        for (k, timed) in cfg.modes.iter().enumerate() {
            if over_budget.contains(&k) {
                table.skipped.push((timed.label.clone(), size));
                continue;
            }
            let mut solver = AdjointSolver::new(cfg.method, Options::with_tol(cfg.rtol, cfg.atol))
                .with_mode(timed.mode.clone());
            let mut best = f64::INFINITY;
            for _ in 0..cfg.repeats.max(1) {
                let s = if timed.hide_jvp {
                    one(&mut HideJvp(&mut dynamics), &mut solver, &z0, &theta, &ts)?
                } else {
                    one(&mut dynamics, &mut solver, &z0, &theta, &ts)?
                };
                best = best.min(s);
                if s > cfg.time_budget {
                    break;
                }
            }
            if best > cfg.time_budget {
                over_budget.push(k);
            }
            let st = solver.stats();
            table.rows.push(ScalingRow {
                size,
                n_params: dynamics.n_params(),
                mode: timed.label.clone(),
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
            size: 0,
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
        let slopes = t.slopes();
        assert_eq!(slopes.len(), 2);
        assert_eq!((slopes[0].0.as_str(), slopes[1].0.as_str()), ("adj", "fwd"));
        assert!((slopes[0].1 - 0.5).abs() < 1e-12);
    }

    #[test]
    fn every_label_names_a_mode() {
        for label in MODE_LABELS {
            let m = TimedMode::<f64>::named(label).unwrap();
            assert_eq!(m.label, label);
            assert_eq!(m.hide_jvp, label == "forward-jacobian");
        }
        assert!(TimedMode::<f64>::named("magic").is_none());
    }

    #[test]
    fn tiny_sweep_runs() {
        let family = MlpFamily::new(1);
        let cfg = ScalingConfig {
            sizes: vec![2, 4],
            repeats: 1,
            ..family.config::<f64>()
        };
        let t = measure(&cfg, |w| family.instance(w)).unwrap();
        assert_eq!(t.rows.len(), 2 * cfg.modes.len());
        assert_eq!(t.rows[0].n_params, 2 * 2 + 6 * 2 + 2);
        assert!(
            t.setup
                .starts_with("MLP Neural ODE 2→W→W→2 tanh, batch 1, Dopri5")
        );
        assert!(
            t.to_string()
                .lines()
                .nth(1)
                .unwrap()
                .trim_start()
                .starts_with("W ")
        );
        // The adjoint's work does not grow with P: same number of VJPs at both widths.
        let v: Vec<usize> = t
            .rows
            .iter()
            .filter(|r| r.mode == "checkpointed")
            .map(|r| r.vjp)
            .collect();
        assert!(v[0] > 0 && v[1] <= 2 * v[0], "{v:?}");
        // Hiding the JVP switches forward sensitivities from JVPs to Jacobians from VJPs.
        let by = |mode: &str| t.rows.iter().find(|r| r.mode == mode).unwrap();
        assert!(by("forward-jvp").jvp > 0 && by("forward-jvp").vjp == 0);
        assert!(by("forward-jacobian").jvp == 0 && by("forward-jacobian").vjp > 0);
    }

    #[test]
    fn f32_sweep_and_family_errors() {
        let family = MlpFamily::new(2);
        let cfg = ScalingConfig {
            sizes: vec![3],
            modes: vec![TimedMode::new("adjoint", GradientMode::checkpointed())],
            rtol: 1e-4f32,
            atol: 1e-4,
            repeats: 1,
            ..ScalingConfig::default()
        };
        let t = measure(&cfg, |w| family.instance(w)).unwrap();
        assert_eq!(t.rows.len(), 1);
        assert_eq!(t.rows[0].mode, "adjoint");
        assert!(t.rows[0].seconds.is_finite() && t.rows[0].vjp > 0);
        let bad = ScalingConfig {
            sizes: vec![0],
            ..cfg
        };
        assert!(measure(&bad, |w| family.instance::<f32>(w)).is_err());
    }
}
