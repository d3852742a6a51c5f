//! Training a basis jointly on a family of systems, through ODE solves of the combined
//! field, with the coefficients computed inside the loss.
//!
//! For each system `s` of a mini-batch, with its demonstrations (states `y_{k,j}` of
//! trajectories `j` at times `t_k`, velocity estimates `v_{k,j}`, points `x = y`):
//!
//! 1. the basis is evaluated at the `m` demonstration points on the training tape,
//!    `Φ = (f_i(x_j))`, and the coefficients are computed from `Φ` and the velocities
//!    (less the average field `f₀` in the residual variant) by the inner product or the
//!    least-squares [`gram_solve`] — differentiable in `θ`, no inner optimisation;
//! 2. one [`OdeBlock`] solve of `dz/dt = f₀(z) + Σ α_{s,i} f_i(z)` from every
//!    trajectory's first sample (a batched `[n_traj, 2]` state) to the sample times, with
//!    the block's parameter input `[θ, α_s]`;
//! 3. the loss of the system is the mean squared error of the solve against the samples,
//!    plus `w_v` times the velocity residual `(1/(2m)) Σ_j ‖v_j − f₀(x_j) − Σ α_i f_i(x_j)‖²`
//!    (the function encoder's own loss; `w_v = 0` trains through the solves alone).
//!
//! The batch loss is the mean over its systems, and one backward pass gives `dL/dθ`:
//! through the solve directly, through `α_s` (the adjoint's gradient for the `α` part of
//! the block's parameters flows into the Gram solve and the basis values) and through the
//! velocity residual. [`FunctionEncoder`] implements [`Model`], so the generic
//! [`Trainer`](crate::training::Trainer) runs it; batches name systems by their label
//! ([`SystemLoader`]).

use adjoint::{GradientMode, Method, Options};
use autodiff::nn::ParamStore;
use autodiff::{Tape, Var};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::basis::{Basis, BasisConfig};
use super::coefficients::{
    CoefficientMethod, VelocityEstimate, coefficients, gram_solve, velocities,
};
use super::systems::{DIM, Demonstrations};
use crate::datasets::{Batch, DataLoader};
use crate::training::{Metrics, Model};
use crate::{ModelsError, OdeBlock};

/// The combined field's type in the model's ODE blocks.
pub type CombinedField = Box<
    dyn for<'t> FnMut(&'t Tape<f64>, Var<'t, f64>, Var<'t, f64>, Var<'t, f64>) -> Var<'t, f64>
        + Send,
>;

/// How coefficients, velocities, losses and solves are set up.
#[derive(Debug, Clone, PartialEq)]
pub struct EncoderSettings {
    /// Inner product or regularised least squares.
    pub coefficients: CoefficientMethod,
    /// Velocity estimate from the samples.
    pub velocity: VelocityEstimate,
    /// Weight `w_v ≥ 0` of the velocity residual in the training loss.
    pub velocity_weight: f64,
    /// Relative and absolute tolerance of the Dopri5 solves.
    pub tol: f64,
    /// Gradient mode of the solves.
    pub mode: GradientMode<f64>,
}

impl Default for EncoderSettings {
    /// Least squares with `λ = 1e-6`, finite differences, `w_v = 1`, tolerance `1e-5`,
    /// checkpointed adjoint.
    fn default() -> Self {
        Self {
            coefficients: CoefficientMethod::LeastSquares { lambda: 1e-6 },
            velocity: VelocityEstimate::FiniteDifference,
            velocity_weight: 1.0,
            tol: 1e-5,
            mode: GradientMode::default(),
        }
    }
}

/// One system's data, prepared once.
#[derive(Debug, Clone)]
struct SystemData {
    demo: Demonstrations,
    velocities: Vec<f64>,
}

/// A function encoder: a [`Basis`] with its parameters and the training systems'
/// demonstrations (see the [module docs](self) for the loss).
pub struct FunctionEncoder {
    name: String,
    basis: Basis,
    store: ParamStore<f64>,
    settings: EncoderSettings,
    systems: Vec<SystemData>,
    blocks: Vec<(usize, OdeBlock<f64, CombinedField>)>,
    nfe: (usize, usize),
}

impl std::fmt::Debug for FunctionEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FunctionEncoder")
            .field("name", &self.name)
            .field("basis", &self.basis.config())
            .field("n_params", &self.store.n_params())
            .field("n_systems", &self.systems.len())
            .finish_non_exhaustive()
    }
}

impl FunctionEncoder {
    /// A function encoder named `name` with a fresh basis of `config`, trained on
    /// `demos` (one entry per system; may be empty for a model that only encodes and
    /// predicts). Errors on an invalid basis or settings, or malformed demonstrations.
    pub fn new(
        name: impl Into<String>,
        config: BasisConfig,
        demos: Vec<Demonstrations>,
        settings: EncoderSettings,
    ) -> Result<Self, ModelsError> {
        let name = name.into();
        if name.trim().is_empty() || name.contains(['\n', '\r']) || name.trim() != name {
            return Err(ModelsError::InvalidArgument {
                name: "model name",
                reason: format!("{name:?}: one non-empty line without surrounding spaces"),
            });
        }
        let tol_ok = settings.tol.is_finite() && settings.tol > 0.0;
        let weight_ok = settings.velocity_weight.is_finite() && settings.velocity_weight >= 0.0;
        if !(tol_ok && weight_ok) {
            return Err(ModelsError::InvalidArgument {
                name: "encoder settings",
                reason: format!(
                    "the tolerance must be > 0 and the velocity weight ≥ 0, got {} and {}",
                    settings.tol, settings.velocity_weight
                ),
            });
        }
        if let CoefficientMethod::LeastSquares { lambda } = settings.coefficients
            && !(lambda.is_finite() && lambda >= 0.0)
        {
            return Err(ModelsError::InvalidArgument {
                name: "ridge",
                reason: format!("λ must be finite and ≥ 0, got {lambda}"),
            });
        }
        let (basis, store) = Basis::new(config)?;
        let systems = demos
            .into_iter()
            .map(|demo| {
                let velocities = velocities(&demo, settings.velocity)?;
                Ok(SystemData { demo, velocities })
            })
            .collect::<Result<Vec<_>, ModelsError>>()?;
        Ok(Self {
            name,
            basis,
            store,
            settings,
            systems,
            blocks: Vec::new(),
            nfe: (0, 0),
        })
    }

    /// The basis.
    pub fn basis(&self) -> &Basis {
        &self.basis
    }

    /// The settings.
    pub fn settings(&self) -> &EncoderSettings {
        &self.settings
    }

    /// Number of training systems.
    pub fn n_systems(&self) -> usize {
        self.systems.len()
    }

    /// The demonstrations of training system `s`.
    pub fn demonstrations(&self, s: usize) -> Option<&Demonstrations> {
        self.systems.get(s).map(|d| &d.demo)
    }

    /// The block for `b` trajectories (built on first use).
    fn block(&mut self, b: usize) -> Result<usize, ModelsError> {
        if let Some(i) = self.blocks.iter().position(|(n, _)| *n == b) {
            return Ok(i);
        }
        let basis = self.basis.clone();
        let field: CombinedField = Box::new(move |_tape, _t, z, th| basis.combined(th, z));
        let tol = self.settings.tol;
        let block = OdeBlock::new(&[b, DIM], self.basis.n_params() + self.basis.k(), field)?
            .with_solver(Method::Dopri5, Options::with_tol(tol, tol))
            .with_mode(self.settings.mode.clone());
        self.blocks.push((b, block));
        Ok(self.blocks.len() - 1)
    }

    /// The loss of training system `s` on `tape` (steps 1–3 of the [module docs](self)).
    pub fn system_loss<'t>(
        &mut self,
        tape: &'t Tape<f64>,
        theta: Var<'t, f64>,
        s: usize,
    ) -> Result<Var<'t, f64>, ModelsError> {
        let Some(data) = self.systems.get(s) else {
            return Err(ModelsError::InvalidArgument {
                name: "system index",
                reason: format!(
                    "{s} is not one of the {} training systems",
                    self.systems.len()
                ),
            });
        };
        let (n, b, k) = (data.demo.n_times(), data.demo.n_traj, self.basis.k());
        let m = n * b;
        let x = tape.constant(&data.demo.states, &[m, DIM])?;
        let v = tape.constant(&data.velocities, &[m * DIM, 1])?;
        let z0 = tape.constant(data.demo.initial_states(), &[b, DIM])?;
        let ts = tape.constant(&data.demo.ts, &[n])?;
        let targets = tape.constant(&data.demo.states, &[n, b, DIM])?;
        let r = match self.basis.average(theta, x) {
            Some(avg) => v - avg.reshape(&[m * DIM, 1]),
            None => v,
        };
        let inv_m = 1.0 / m as f64;
        let (theta_alpha, residual) = if k > 0 {
            let phis: Vec<Var<'t, f64>> = (0..k)
                .map(|i| self.basis.field(i, theta, x).reshape(&[1, m * DIM]))
                .collect();
            let phi = tape.concat(&phis, 0); // [K, m·2]
            let proj = phi.matmul(r).mul_scalar(inv_m).reshape(&[k]);
            let alpha = match self.settings.coefficients {
                CoefficientMethod::InnerProduct => proj,
                CoefficientMethod::LeastSquares { lambda } => {
                    let g = phi.matmul_t(phi, false, true).mul_scalar(inv_m);
                    gram_solve(g, proj, lambda)
                }
            };
            let fit = phi.matmul_t(alpha.reshape(&[k, 1]), true, false); // [m·2, 1]
            (tape.concat(&[theta, alpha], 0), r - fit)
        } else {
            (theta, r)
        };
        let i = self.block(b)?;
        let zs = self.blocks[i].1.apply(z0, theta_alpha, ts);
        let mut loss = (zs - targets).square().mean();
        if self.settings.velocity_weight > 0.0 {
            loss = loss
                + residual
                    .square()
                    .mean()
                    .mul_scalar(self.settings.velocity_weight);
        }
        let stats = self.blocks[i].1.stats();
        self.nfe.0 += stats.forward.nfe;
        Ok(loss)
    }

    /// The coefficients of a new system from its demonstrations, with the current basis
    /// and no gradient step: velocities by the settings' estimate, basis values at the
    /// samples, then the settings' coefficient method. Empty for `K = 0`.
    pub fn encode(&self, demo: &Demonstrations) -> Result<Vec<f64>, ModelsError> {
        self.encode_with(demo, self.settings.coefficients)
    }

    /// As [`encode`](Self::encode), with another coefficient method.
    pub fn encode_with(
        &self,
        demo: &Demonstrations,
        method: CoefficientMethod,
    ) -> Result<Vec<f64>, ModelsError> {
        let k = self.basis.k();
        if k == 0 {
            return Ok(Vec::new());
        }
        let v = velocities(demo, self.settings.velocity)?;
        let (phi, avg) = self.basis.values(self.store.as_slice(), &demo.states)?;
        let r: Vec<f64> = v.iter().zip(&avg).map(|(v, a)| v - a).collect();
        coefficients(&phi, &r, k, demo.states.len() / DIM, method)
    }

    /// The states `[n_times, B, 2]` of `dz/dt = f₀(z) + Σ α_i f_i(z)` from the initial
    /// states `z0` (`[B, 2]`) at the times `ts` (strictly increasing, `ts[0]` the time of
    /// `z0`), with coefficients `alpha` (`K` values).
    pub fn predict(
        &mut self,
        alpha: &[f64],
        z0: &[f64],
        ts: &[f64],
    ) -> Result<Vec<f64>, ModelsError> {
        let (k, b) = (self.basis.k(), z0.len() / DIM);
        if alpha.len() != k || b == 0 || z0.len() != b * DIM {
            return Err(ModelsError::InvalidArgument {
                name: "prediction",
                reason: format!(
                    "need {k} coefficients (got {}) and B x {DIM} initial values (got {})",
                    alpha.len(),
                    z0.len()
                ),
            });
        }
        let mut th = self.store.as_slice().to_vec();
        th.extend_from_slice(alpha);
        let i = self.block(b)?;
        let tape = Tape::new();
        tape.set_recording(false);
        let theta = tape.constant(&th, &[th.len()])?;
        let z = tape.constant(z0, &[b, DIM])?;
        let t = tape.constant(ts, &[ts.len()])?;
        Ok(self.blocks[i].1.apply(z, theta, t).value()?)
    }

    /// Field evaluations of the forward solves since the last call (reset by it).
    pub fn take_nfe(&mut self) -> usize {
        std::mem::take(&mut self.nfe.0)
    }
}

impl Model<f64> for FunctionEncoder {
    fn name(&self) -> &str {
        &self.name
    }

    fn params(&self) -> &ParamStore<f64> {
        &self.store
    }

    fn params_mut(&mut self) -> &mut ParamStore<f64> {
        &mut self.store
    }

    /// The mean of [`system_loss`](FunctionEncoder::system_loss) over the systems named
    /// by the batch's labels.
    fn loss<'t>(
        &mut self,
        tape: &'t Tape<f64>,
        theta: Var<'t, f64>,
        batch: &Batch<f64>,
    ) -> Result<Var<'t, f64>, ModelsError> {
        if batch.labels.is_empty() {
            return Err(ModelsError::InvalidArgument {
                name: "batch",
                reason: "a function-encoder batch names at least one system".into(),
            });
        }
        self.nfe = (0, 0);
        let mut total: Option<Var<'t, f64>> = None;
        for &s in &batch.labels {
            let l = self.system_loss(tape, theta, s)?;
            total = Some(match total {
                Some(t) => t + l,
                None => l,
            });
        }
        let n = batch.labels.len() as f64;
        Ok(total.map_or(theta.sum().mul_scalar(0.0), |t| t.mul_scalar(1.0 / n)))
    }

    fn metrics(&self, metrics: &mut Metrics) {
        metrics.set("nfe_forward", self.nfe.0 as f64);
    }
}

/// Mini-batches of system indices for training a [`FunctionEncoder`]: each epoch
/// visits every system once, in an order shuffled from `(seed, epoch)`; a batch's
/// `labels` are the system indices (its `images` hold the same indices as values,
/// shape `[batch, 1, 1, 1]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SystemLoader {
    n_systems: usize,
    batch_size: usize,
    seed: u64,
}

impl SystemLoader {
    /// Batches of `batch_size` of `n_systems` systems (both ≥ 1).
    pub fn new(n_systems: usize, batch_size: usize, seed: u64) -> Result<Self, ModelsError> {
        if n_systems == 0 || batch_size == 0 {
            return Err(ModelsError::InvalidArgument {
                name: "system loader",
                reason: format!(
                    "need at least one system and a batch size ≥ 1, got {n_systems} and {batch_size}"
                ),
            });
        }
        Ok(Self {
            n_systems,
            batch_size,
            seed,
        })
    }
}

impl DataLoader<f64> for SystemLoader {
    type Batches<'a> = std::vec::IntoIter<Batch<f64>>;

    fn batches(&self, epoch: u64) -> Self::Batches<'_> {
        let mut order: Vec<usize> = (0..self.n_systems).collect();
        let mut rng = StdRng::seed_from_u64(self.seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        order.shuffle(&mut rng);
        order
            .chunks(self.batch_size)
            .map(|c| Batch {
                images: c.iter().map(|&i| i as f64).collect(),
                labels: c.to_vec(),
                shape: [c.len(), 1, 1, 1],
            })
            .collect::<Vec<_>>()
            .into_iter()
    }

    fn n_batches(&self) -> usize {
        self.n_systems.div_ceil(self.batch_size)
    }

    fn n_examples(&self) -> usize {
        self.n_systems
    }
}
