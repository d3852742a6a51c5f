//! A gradient audit users run on their own model.
//!
//! [`audit`] computes the gradient of a random linear loss `L = Σᵢ wᵢᵀ z(tᵢ)` in every
//! gradient mode, compares the modes with each other, and compares each with central
//! finite differences of `L` along a few random directions in `(z0, θ, t₀…t_N)`:
//!
//! ```text
//! fd(v) = (L(x + h v) − L(x − h v)) / 2h,   h = ε^{1/3} max(1, ‖x‖∞),
//! disagreement(mode, v) = |∇L·v − fd(v)| / max(|fd(v)|, |∇L·v|, ε).
//! ```
//!
//! The report gives, per mode, the worst disagreement with finite differences over the
//! directions and the worst relative difference `‖g_mode − g_other‖ / ‖g_other‖` with any
//! other mode. Run it at tight tolerances (the finite differences carry the solver's error
//! divided by `h`), e.g. `rtol = 1e-10`, `atol = 1e-12` in f64.

use ode_solvers::Real;

use crate::dynamics::Vjp;
use crate::error::Result;
use crate::rng::SplitMix64;
use crate::solver::{AdjointSolver, GradStats, GradientMode, Gradients};

/// Settings of [`audit`].
#[derive(Debug, Clone, PartialEq)]
pub struct AuditOptions<T> {
    /// Number of random directions for the finite differences (default 3).
    pub directions: usize,
    /// Seed of the loss weights and directions.
    pub seed: u64,
    /// Finite-difference step (`None`: `ε^{1/3} max(1, ‖x‖∞)`).
    pub fd_step: Option<T>,
    /// Modes to audit (default: checkpointed (seminorm, the default), checkpointed with
    /// the full norm, checkpointed with a budget of 4 checkpoints (full norm), backsolve,
    /// backsolve with seminorm, direct, forward).
    pub modes: Vec<GradientMode<T>>,
    /// Also perturb the output times (default `true`).
    pub perturb_times: bool,
}

impl<T> Default for AuditOptions<T> {
    fn default() -> Self {
        AuditOptions {
            directions: 3,
            seed: 0x5eed,
            fd_step: None,
            modes: vec![
                GradientMode::checkpointed(),
                GradientMode::Checkpointed {
                    checkpoints: crate::Checkpoints::EveryStep,
                    backward: Default::default(),
                },
                GradientMode::Checkpointed {
                    checkpoints: crate::Checkpoints::Budget(4),
                    backward: Default::default(),
                },
                GradientMode::backsolve(false),
                GradientMode::backsolve(true),
                GradientMode::Direct,
                GradientMode::Forward,
                GradientMode::ForwardJvp,
            ],
            perturb_times: true,
        }
    }
}

/// One audited mode.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRow {
    /// Mode name (with `+seminorm` / `+budget` suffixes where they apply).
    pub mode: String,
    /// Worst relative disagreement with central finite differences over the directions.
    pub worst_vs_fd: f64,
    /// Worst relative difference with any other audited mode (whole gradient vectors).
    pub worst_vs_modes: f64,
    /// Counters of this mode's call.
    pub stats: GradStats,
}

/// The result of [`audit`].
#[derive(Debug, Clone, PartialEq)]
pub struct AuditReport {
    /// One row per mode, in the order of [`AuditOptions::modes`].
    pub rows: Vec<AuditRow>,
    /// The finite-difference step used.
    pub fd_step: f64,
}

impl AuditReport {
    /// The largest disagreement with finite differences over all modes.
    pub fn worst_vs_fd(&self) -> f64 {
        self.rows.iter().map(|r| r.worst_vs_fd).fold(0.0, f64::max)
    }
    /// The largest disagreement between modes.
    pub fn worst_vs_modes(&self) -> f64 {
        self.rows
            .iter()
            .map(|r| r.worst_vs_modes)
            .fold(0.0, f64::max)
    }
}

impl core::fmt::Display for AuditReport {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        writeln!(
            f,
            "{:<26} {:>12} {:>12} {:>8} {:>8} {:>12}",
            "mode", "vs FD", "vs modes", "fwd nfe", "bwd vjp", "peak bytes"
        )?;
        for r in &self.rows {
            writeln!(
                f,
                "{:<26} {:>12.3e} {:>12.3e} {:>8} {:>8} {:>12}",
                r.mode,
                r.worst_vs_fd,
                r.worst_vs_modes,
                r.stats.forward.nfe,
                r.stats.backward_vjp,
                r.stats.peak_bytes
            )?;
        }
        Ok(())
    }
}

fn mode_label<T>(m: &GradientMode<T>) -> String {
    match m {
        GradientMode::Checkpointed {
            checkpoints: crate::Checkpoints::Budget(k),
            ..
        } => format!("checkpointed+budget({k})"),
        GradientMode::Checkpointed { backward, .. } if !backward.seminorm => {
            "checkpointed+full-norm".into()
        }
        GradientMode::Backsolve { backward } if backward.seminorm => "backsolve+seminorm".into(),
        m => m.name().into(),
    }
}

/// Audits the gradient of `dynamics` at `(z0, θ, ts)` with the forward solver
/// `base` (its method and options are used for every mode): see the module docs.
pub fn audit<T: Real, D: Vjp<T> + ?Sized>(
    dynamics: &mut D,
    base: &AdjointSolver<T>,
    z0: &[T],
    theta: &[T],
    ts: &[T],
    opts: &AuditOptions<T>,
) -> Result<AuditReport> {
    let n = dynamics.n_states();
    let p = dynamics.n_params();
    let nt = ts.len();
    let mut rng = SplitMix64::new(opts.seed);
    let w: Vec<T> = (0..nt * n)
        .map(|_| T::from_f64_const(rng.uniform_pm1()))
        .collect();
    let loss = |zs: &[T]| -> f64 {
        zs.iter()
            .zip(&w)
            .map(|(a, b)| (*a * *b).to_f64_lossy())
            .sum()
    };
    let mut solver = base.clone();
    // Gradients in every mode.
    let mut grads: Vec<(Gradients<T>, GradStats)> = Vec::new();
    for m in &opts.modes {
        solver.set_mode(m.clone());
        solver.forward(dynamics, z0, theta, ts)?;
        let g = solver.backward(dynamics, &w)?;
        grads.push((g, solver.stats()));
    }
    // Finite differences along random directions.
    let nx = n + p + if opts.perturb_times && nt >= 2 { nt } else { 0 };
    let xmax = z0
        .iter()
        .chain(theta)
        .chain(ts.iter().take(if nx > n + p { nt } else { 0 }))
        .map(|v| v.to_f64_lossy().abs())
        .fold(1.0f64, f64::max);
    let h = opts
        .fd_step
        .map(|v| v.to_f64_lossy())
        .unwrap_or_else(|| T::epsilon().to_f64_lossy().cbrt() * xmax);
    let mut worst_fd = vec![0.0f64; opts.modes.len()];
    // Forward solves only: backsolve records nothing per step.
    solver.set_mode(GradientMode::backsolve(false));
    let (mut zp, mut thp, mut tp) = (z0.to_vec(), theta.to_vec(), ts.to_vec());
    for _ in 0..opts.directions {
        let mut v: Vec<f64> = (0..nx).map(|_| rng.uniform_pm1()).collect();
        let norm = v
            .iter()
            .map(|x| x * x)
            .sum::<f64>()
            .sqrt()
            .max(f64::MIN_POSITIVE);
        for x in &mut v {
            *x /= norm;
        }
        let mut eval = |sign: f64| -> Result<f64> {
            for k in 0..n {
                zp[k] = z0[k] + T::from_f64_const(sign * h * v[k]);
            }
            for k in 0..p {
                thp[k] = theta[k] + T::from_f64_const(sign * h * v[n + k]);
            }
            if nx > n + p {
                for k in 0..nt {
                    tp[k] = ts[k] + T::from_f64_const(sign * h * v[n + p + k]);
                }
            }
            let zs = solver.forward(dynamics, &zp, &thp, &tp)?;
            Ok(loss(zs))
        };
        let fd = (eval(1.0)? - eval(-1.0)?) / (2.0 * h);
        for (mi, (g, _)) in grads.iter().enumerate() {
            let mut dot = 0.0;
            for k in 0..n {
                dot += g.z0[k].to_f64_lossy() * v[k];
            }
            for k in 0..p {
                dot += g.theta[k].to_f64_lossy() * v[n + k];
            }
            if nx > n + p {
                for k in 0..nt {
                    dot += g.ts[k].to_f64_lossy() * v[n + p + k];
                }
            }
            let scale = fd.abs().max(dot.abs()).max(T::epsilon().to_f64_lossy());
            worst_fd[mi] = worst_fd[mi].max((dot - fd).abs() / scale);
        }
    }
    let flat = |g: &Gradients<T>| -> Vec<f64> {
        g.z0.iter()
            .chain(&g.theta)
            .chain(&g.ts)
            .map(|v| v.to_f64_lossy())
            .collect()
    };
    let flats: Vec<Vec<f64>> = grads.iter().map(|(g, _)| flat(g)).collect();
    let rows = opts
        .modes
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let mut worst = 0.0f64;
            for (j, other) in flats.iter().enumerate() {
                if i == j {
                    continue;
                }
                let num = flats[i]
                    .iter()
                    .zip(other)
                    .map(|(a, b)| (a - b).powi(2))
                    .sum::<f64>()
                    .sqrt();
                let den = other
                    .iter()
                    .map(|b| b * b)
                    .sum::<f64>()
                    .sqrt()
                    .max(f64::MIN_POSITIVE);
                worst = worst.max(num / den);
            }
            AuditRow {
                mode: mode_label(m),
                worst_vs_fd: worst_fd[i],
                worst_vs_modes: worst,
                stats: grads[i].1,
            }
        })
        .collect();
    Ok(AuditReport { rows, fd_step: h })
}
