//! An MLP Neural ODE `dz/dt = f_θ(φ(z))` fitted to trajectories: the model, its
//! predictions, and a trainer that takes Adam steps on random windows of the data with
//! the gradient from any of the adjoint crate's modes.

use std::path::Path;

use adjoint::{AdjointSolver, GradientMode, Method, Options, TapeDynamics};
use autodiff::nn::{Mlp, ParamStore};
use autodiff::optim::{Adam, Optimizer, Schedule, Scheduled};
use autodiff::{Tape, Var};

use crate::ModelsError;
use crate::data::Trajectory;

/// What the network sees of the state `z`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Features {
    /// `φ(z) = z³` elementwise (the spiral's own nonlinearity, as in torchdiffeq's demo).
    Cubic,
    /// `φ(z) = z`.
    Identity,
}

/// How the gradient through the solver is computed (see [`adjoint::GradientMode`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GradientModeArg {
    /// Adjoint integrated backwards against the interpolated forward solution.
    Checkpointed,
    /// Chen et al.'s backsolve adjoint (memory independent of the steps), seminorm on.
    Backsolve,
    /// Backpropagation through the solver's operations (discretise-then-optimise).
    Direct,
    /// Forward sensitivities (cost ∝ number of parameters).
    Forward,
}

impl GradientModeArg {
    /// The adjoint crate's mode.
    pub fn mode(self) -> GradientMode<f64> {
        match self {
            GradientModeArg::Checkpointed => GradientMode::checkpointed(),
            GradientModeArg::Backsolve => GradientMode::backsolve(true),
            GradientModeArg::Direct => GradientMode::Direct,
            GradientModeArg::Forward => GradientMode::Forward,
        }
    }
}

/// Solver settings shared by training and prediction.
#[derive(Debug, Clone, Copy)]
pub struct SolverSettings {
    /// Integration method.
    pub method: Method,
    /// Relative tolerance.
    pub rtol: f64,
    /// Absolute tolerance.
    pub atol: f64,
    /// Gradient mode.
    pub mode: GradientModeArg,
}

impl SolverSettings {
    fn solver(&self) -> AdjointSolver<f64> {
        let mut options = Options::with_tol(self.rtol, self.atol);
        options.max_steps = 100_000;
        AdjointSolver::new(self.method, options).with_mode(self.mode.mode())
    }
}

/// The forward pass on the tape, boxed so that the dynamics type can be named.
type Forward = Box<
    dyn for<'t> FnMut(&'t Tape<f64>, Var<'t, f64>, Var<'t, f64>, Var<'t, f64>) -> Var<'t, f64>
        + Send,
>;

/// The model's dynamics on a batch of states, as the adjoint crate sees them.
pub type ModelDynamics = TapeDynamics<f64, Forward>;

/// An MLP Neural ODE on `dim` state components: `dz/dt = MLP(φ(z))`, autonomous, all
/// parameters in one flat [`ParamStore`] under PyTorch's `nn.Sequential` names
/// `f.{2i}.weight`, `f.{2i}.bias` for the `i`-th linear layer (`f.0.*`, `f.2.*`, …; the
/// odd indices are the tanh activations), as [`NeuralOde::save`] writes them.
#[derive(Debug, Clone)]
pub struct NeuralOde {
    dim: usize,
    features: Features,
    mlp: Mlp,
    store: ParamStore<f64>,
}

impl NeuralOde {
    /// A model with `layers` hidden layers of width `hidden` (tanh), initialised from `seed`.
    pub fn new(
        dim: usize,
        features: Features,
        hidden: usize,
        layers: usize,
        seed: u64,
    ) -> Result<Self, ModelsError> {
        let mut store = ParamStore::new(seed);
        let mlp = Mlp::builder(dim, dim)
            .hidden(&vec![hidden; layers])
            .build(&mut store, "f")?;
        Ok(Self {
            dim,
            features,
            mlp,
            store,
        })
    }

    /// State dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Number of parameters.
    pub fn n_params(&self) -> usize {
        self.store.n_params()
    }

    /// The flat parameter vector.
    pub fn params(&self) -> &[f64] {
        self.store.as_slice()
    }

    /// Saves the parameters as safetensors, atomically.
    pub fn save(&self, path: &Path) -> Result<(), ModelsError> {
        autodiff::io::save_safetensors(path, &self.store).map_err(|e| ModelsError::Checkpoint {
            path: path.to_path_buf(),
            source: e,
        })
    }

    /// Loads parameters saved by [`NeuralOde::save`] for the same architecture (names,
    /// shapes and dtype must match; on error the model is unchanged).
    pub fn load(&mut self, path: &Path) -> Result<(), ModelsError> {
        autodiff::io::load_safetensors(path, &mut self.store).map_err(|e| ModelsError::Checkpoint {
            path: path.to_path_buf(),
            source: e,
        })
    }

    /// The dynamics on a batch of `batch` states.
    pub fn dynamics(&self, batch: usize) -> Result<ModelDynamics, ModelsError> {
        let mlp = self.mlp.clone();
        let cubic = self.features == Features::Cubic;
        let forward: Forward = Box::new(move |_tape, _t, z, theta| {
            let x = if cubic { z * z * z } else { z };
            mlp.forward(theta, x)
        });
        Ok(TapeDynamics::new(
            &[batch, self.dim],
            self.n_params(),
            forward,
        )?)
    }

    /// The learned vector field `f(φ(z))` at each of `points` (flat, `dim` per point).
    pub fn field(&self, points: &[f64]) -> Result<Vec<f64>, ModelsError> {
        use adjoint::Dynamics;
        let batch = points.len() / self.dim;
        let mut f = self.dynamics(batch)?;
        let mut out = vec![0.0; points.len()];
        f.eval(0.0, points, self.params(), &mut out)?;
        Ok(out)
    }

    /// The model's trajectory from the data's first state at the data's times.
    pub fn predict(
        &self,
        data: &Trajectory,
        settings: &SolverSettings,
    ) -> Result<Trajectory, ModelsError> {
        let mut f = self.dynamics(1)?;
        let mut solver = settings.solver();
        let ys = solver
            .forward(&mut f, data.y(0), self.params(), &data.ts)?
            .to_vec();
        Trajectory::new(data.names.clone(), data.ts.clone(), ys)
    }

    /// Mean absolute error of [`NeuralOde::predict`] against the data.
    pub fn trajectory_mae(
        &self,
        data: &Trajectory,
        settings: &SolverSettings,
    ) -> Result<f64, ModelsError> {
        self.predict(data, settings)?.mean_abs_error(data)
    }

    /// A trainer taking Adam steps with peak rate `lr`, cosine-decayed to 1% of it over
    /// `iters` steps, splitting each batch over `threads` worker threads (the split, and
    /// so every number, depends on `threads`, not on the machine).
    pub fn trainer(
        &self,
        settings: &SolverSettings,
        lr: f64,
        iters: usize,
        threads: usize,
    ) -> Result<Trainer, ModelsError> {
        if threads == 0 {
            return Err(ModelsError::InvalidArgument {
                name: "threads",
                reason: "must be at least 1".into(),
            });
        }
        let schedule = Schedule::cosine(lr, iters as u64, lr * 0.01)?;
        Ok(Trainer {
            optimizer: Scheduled::new(Adam::with_lr(lr)?, schedule),
            grad: vec![0.0; self.n_params()],
            workers: (0..threads)
                .map(|_| Worker::new(settings.solver(), self.n_params()))
                .collect(),
        })
    }
}

/// Takes optimisation steps on windows of a trajectory (see [`Trainer::step`]).
pub struct Trainer {
    optimizer: Scheduled<Adam<f64>, Schedule>,
    grad: Vec<f64>,
    workers: Vec<Worker>,
}

impl std::fmt::Debug for Trainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trainer")
            .field("n_params", &self.grad.len())
            .field("threads", &self.workers.len())
            .field("work", &self.work())
            .finish_non_exhaustive()
    }
}

/// One thread's share of a training step: its own solver, dynamics (tape), buffers,
/// gradient and counters, reused across steps.
struct Worker {
    solver: AdjointSolver<f64>,
    /// Dynamics for the last batch size used (kept so the tape is reused).
    dynamics: Option<(usize, ModelDynamics)>,
    z0: Vec<f64>,
    rel_ts: Vec<f64>,
    grad: Vec<f64>,
    loss: f64,
    nfe_forward: usize,
    nfe_backward: usize,
    products_backward: usize,
}

/// What every worker reads during a step.
struct StepInput<'a> {
    model: &'a NeuralOde,
    data: &'a Trajectory,
    window: usize,
    /// `1 / (windows × samples × dim)`: the mean over the whole batch.
    scale: f64,
}

impl Worker {
    fn new(solver: AdjointSolver<f64>, n_params: usize) -> Self {
        Worker {
            solver,
            dynamics: None,
            z0: Vec::new(),
            rel_ts: Vec::new(),
            grad: vec![0.0; n_params],
            loss: 0.0,
            nfe_forward: 0,
            nfe_backward: 0,
            products_backward: 0,
        }
    }

    /// Adds the loss and gradient of each group of windows (one batched solve per
    /// group) to this worker's totals, which it first zeroes.
    fn run(&mut self, input: &StepInput<'_>, groups: &[&[usize]]) -> Result<(), ModelsError> {
        self.grad.iter_mut().for_each(|g| *g = 0.0);
        self.loss = 0.0;
        let (data, window, scale) = (input.data, input.window, input.scale);
        let dim = input.model.dim();
        for group in groups {
            let b = group.len();
            self.z0.clear();
            for &s in *group {
                self.z0.extend_from_slice(data.y(s));
            }
            let s0 = group[0];
            self.rel_ts.clear();
            self.rel_ts
                .extend((0..window).map(|k| data.ts[s0 + k] - data.ts[s0]));
            if self.dynamics.as_ref().map(|(n, _)| *n) != Some(b) {
                self.dynamics = Some((b, input.model.dynamics(b)?));
            }
            let Some((_, f)) = &mut self.dynamics else {
                unreachable!("set just above")
            };
            let (loss, g) = self.solver.value_and_grad(
                f,
                &self.z0,
                input.model.params(),
                &self.rel_ts,
                |zs, dl| {
                    let mut loss = 0.0;
                    for k in 0..window {
                        for (j, &s) in group.iter().enumerate() {
                            let target = data.y(s + k);
                            for d in 0..dim {
                                let i = k * b * dim + j * dim + d;
                                let e = zs[i] - target[d];
                                loss += e * e;
                                dl[i] = 2.0 * e * scale;
                            }
                        }
                    }
                    loss * scale
                },
            )?;
            self.loss += loss;
            for (acc, gi) in self.grad.iter_mut().zip(&g.theta) {
                *acc += gi;
            }
            let stats = self.solver.stats();
            self.nfe_forward += stats.forward.nfe;
            self.nfe_backward += stats.backward_nfe;
            self.products_backward += stats.backward_vjp + stats.jvp;
        }
        Ok(())
    }
}

/// Whether the sample times are evenly spaced (to 1e-9 relative): then every window has
/// the same relative times and a batch of windows is one solve.
fn is_uniform(ts: &[f64]) -> bool {
    let h = (ts[ts.len() - 1] - ts[0]) / (ts.len() - 1) as f64;
    ts.windows(2)
        .all(|w| ((w[1] - w[0]) - h).abs() <= 1e-9 * h.abs())
}

impl Trainer {
    /// Work so far: evaluations of `f` in forward solves, evaluations of `f` in
    /// gradient passes, and vector–Jacobian (or Jacobian–vector) products in gradient
    /// passes.
    pub fn work(&self) -> (usize, usize, usize) {
        self.workers.iter().fold((0, 0, 0), |(a, b, c), w| {
            (
                a + w.nfe_forward,
                b + w.nfe_backward,
                c + w.products_backward,
            )
        })
    }

    /// One Adam step on the windows starting at the samples `starts`, each `window`
    /// samples long: the loss is the mean squared error between the model's solution
    /// from each window's first sample and the window's samples. Evenly spaced data run
    /// each thread's share of the windows as one batched solve; irregular data one solve
    /// per window. Returns the loss before the step.
    pub fn step(
        &mut self,
        model: &mut NeuralOde,
        data: &Trajectory,
        starts: &[usize],
        window: usize,
    ) -> Result<f64, ModelsError> {
        if let Some(&s) = starts.iter().find(|&&s| s + window > data.len()) {
            return Err(ModelsError::InvalidArgument {
                name: "window",
                reason: format!(
                    "a window of {window} samples from sample {s} overruns the {} samples",
                    data.len()
                ),
            });
        }
        let threads = self.workers.len();
        // Contiguous shares for batched solves; one window per group otherwise.
        let groups: Vec<&[usize]> = if is_uniform(&data.ts) {
            starts.chunks(starts.len().div_ceil(threads)).collect()
        } else {
            starts.chunks(1).collect()
        };
        let per_worker = groups.len().div_ceil(threads);
        let input = StepInput {
            model,
            data,
            window,
            scale: 1.0 / (starts.len() * window * model.dim()) as f64,
        };
        let results: Vec<Result<(), ModelsError>> = std::thread::scope(|scope| {
            let input = &input;
            let handles: Vec<_> = self
                .workers
                .iter_mut()
                .zip(groups.chunks(per_worker))
                .map(|(w, share)| scope.spawn(move || w.run(input, share)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(ModelsError::InvalidArgument {
                            name: "training",
                            reason: "a worker thread panicked".into(),
                        })
                    })
                })
                .collect()
        });
        results.into_iter().collect::<Result<(), _>>()?;
        // Sum in worker order, so the result does not depend on thread timing.
        let used = groups.chunks(per_worker).len();
        self.grad.iter_mut().for_each(|g| *g = 0.0);
        let mut total = 0.0;
        for w in &self.workers[..used] {
            total += w.loss;
            for (acc, g) in self.grad.iter_mut().zip(&w.grad) {
                *acc += g;
            }
        }
        if let Some(i) = self.grad.iter().position(|g| !g.is_finite()) {
            return Err(ModelsError::NonFinite {
                what: "parameter gradient",
                index: i,
            });
        }
        self.optimizer
            .step(model.store.as_mut_slice(), &self.grad)?;
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_grid_detection() {
        assert!(is_uniform(&[0.0, 0.1, 0.2, 0.30000000000000004]));
        assert!(!is_uniform(&[0.0, 0.1, 0.25, 0.3]));
    }
}
