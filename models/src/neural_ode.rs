//! An MLP Neural ODE `dz/dt = f_θ(φ(z))` fitted to trajectories: the model, its
//! predictions, and a trainer that takes Adam steps on random windows of the data with
//! the gradient from any of the adjoint crate's modes.

use std::path::Path;

use adjoint::{AdjointSolver, GradientMode, Method, Options, ParallelTapeDynamics};
use autodiff::nn::{Mlp, ParamStore};
use autodiff::optim::{Adam, Optimizer, OptimizerState, Schedule, Scheduled};
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

impl Features {
    /// The name recorded in checkpoints and given on the command line (`cubic`, `identity`).
    pub fn name(self) -> &'static str {
        match self {
            Features::Cubic => "cubic",
            Features::Identity => "identity",
        }
    }
}

/// The architecture of a [`NeuralOde`], as recorded in the metadata of its checkpoints
/// (so that a checkpoint is never loaded into another model whose tensors happen to
/// have the same shapes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Architecture {
    /// State dimension.
    pub dim: usize,
    /// What the network sees of the state.
    pub features: Features,
    /// Width of the hidden layers.
    pub hidden: usize,
    /// Number of hidden layers.
    pub layers: usize,
}

impl std::fmt::Display for Architecture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} state components with --features {} --hidden {} --layers {}",
            self.dim,
            self.features.name(),
            self.hidden,
            self.layers
        )
    }
}

/// Where a training run stood, stored beside the parameters in a training checkpoint
/// ([`NeuralOde::save_checkpoint`]) so that the run can continue exactly.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainingState {
    /// Iterations completed.
    pub iteration: u64,
    /// The optimizer's state (moments and step count, which also positions the
    /// learning-rate schedule).
    pub optimizer: OptimizerState<f64>,
    /// Training loss of each completed iteration.
    pub losses: Vec<f64>,
    /// Full-trajectory error at each completed iteration (NaN where not evaluated).
    pub maes: Vec<f64>,
    /// Free-form settings of the run (`key = value`), checked by the caller on resume.
    pub settings: Vec<(String, String)>,
}

/// A tensor read from a checkpoint: its shape and values.
type ShapedValues = (Vec<usize>, Vec<f64>);

/// Metadata keys of the checkpoints.
const META_DIM: &str = "neuralode.dim";
const META_FEATURES: &str = "neuralode.features";
const META_HIDDEN: &str = "neuralode.hidden";
const META_LAYERS: &str = "neuralode.layers";
const META_ITERATION: &str = "neuralode.iteration";
const META_STEPS: &str = "neuralode.optimizer_steps";
const META_SETTING: &str = "neuralode.setting.";
/// Tensor name prefixes of the training state in a checkpoint.
const OPTIMIZER_PREFIX: &str = "optimizer.";
const HISTORY_LOSS: &str = "history.loss";
const HISTORY_MAE: &str = "history.trajectory_mae";

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
        let mut solver = AdjointSolver::new(self.method, options).with_mode(self.mode.mode());
        // The windows' sample times are data: no dL/dtᵢ (one evaluation per output saved).
        solver.set_time_gradients(false);
        solver
    }
}

/// The forward pass on the tape, boxed so that the dynamics type can be named.
type Forward = Box<
    dyn for<'t> FnMut(&'t Tape<f64>, Var<'t, f64>, Var<'t, f64>, Var<'t, f64>) -> Var<'t, f64>
        + Send,
>;

/// The model's dynamics on a batch of states, as the adjoint crate sees them: the
/// MLP acts on each state by itself, so batches of 256 states or more are split over
/// the current rayon pool's threads ([`ParallelTapeDynamics`]; results do not depend on
/// the number of threads).
pub type ModelDynamics = ParallelTapeDynamics<f64, Forward>;

/// An MLP Neural ODE on `dim` state components: `dz/dt = MLP(φ(z))`, autonomous, all
/// parameters in one flat [`ParamStore`] under PyTorch's `nn.Sequential` names
/// `f.{2i}.weight`, `f.{2i}.bias` for the `i`-th linear layer (`f.0.*`, `f.2.*`, …; the
/// odd indices are the tanh activations), as [`NeuralOde::save`] writes them.
#[derive(Debug, Clone)]
pub struct NeuralOde {
    dim: usize,
    features: Features,
    hidden: usize,
    layers: usize,
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
            hidden,
            layers,
            mlp,
            store,
        })
    }

    /// Number of parameters of the model `new(dim, _, hidden, layers, _)` would build,
    /// without building it (`None` if it overflows): to check the memory it needs first.
    pub fn count_params(dim: usize, hidden: usize, layers: usize) -> Option<usize> {
        let first = dim.checked_add(1)?.checked_mul(hidden)?;
        let inner = hidden
            .checked_add(1)?
            .checked_mul(hidden)?
            .checked_mul(layers.saturating_sub(1))?;
        let last = hidden.checked_add(1)?.checked_mul(dim)?;
        first.checked_add(inner)?.checked_add(last)
    }

    /// The architecture (recorded in checkpoints).
    pub fn architecture(&self) -> Architecture {
        Architecture {
            dim: self.dim,
            features: self.features,
            hidden: self.hidden,
            layers: self.layers,
        }
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

    /// Saves the parameters as safetensors (F64, PyTorch's names), atomically, with the
    /// [`Architecture`] in the metadata.
    pub fn save(&self, path: &Path) -> Result<(), ModelsError> {
        self.write_checkpoint(path, None)
    }

    /// Saves the parameters and a training run's [`TrainingState`] (optimizer moments
    /// under `optimizer.*`, the loss history under `history.*`, the iteration and
    /// settings in the metadata) as one safetensors file, atomically: a crash leaves the
    /// previous file or the new one, never a mixture.
    pub fn save_checkpoint(&self, path: &Path, state: &TrainingState) -> Result<(), ModelsError> {
        self.write_checkpoint(path, Some(state))
    }

    fn write_checkpoint(
        &self,
        path: &Path,
        state: Option<&TrainingState>,
    ) -> Result<(), ModelsError> {
        let bytes = self
            .checkpoint_bytes(state)
            .map_err(|reason| ModelsError::CheckpointFile {
                path: path.to_path_buf(),
                reason,
            })?;
        atomic_write::write_atomic(path, &bytes).map_err(|e| match e {
            atomic_write::AtomicWriteError::Write(source) => ModelsError::Io {
                path: path.to_path_buf(),
                source,
            },
            atomic_write::AtomicWriteError::Io { path, source, .. } => {
                ModelsError::Io { path, source }
            }
        })
    }

    /// The safetensors bytes of the parameters (and of `state`).
    fn checkpoint_bytes(&self, state: Option<&TrainingState>) -> Result<Vec<u8>, String> {
        use safetensors::tensor::TensorView;
        let le = |v: &[f64]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
        for p in self.store.params() {
            let values = self.store.get(&p.name).unwrap_or(&[]);
            tensors.push((p.name.clone(), p.view.shape().dims().to_vec(), le(values)));
        }
        let mut meta = std::collections::HashMap::new();
        meta.insert("format".to_owned(), "pt".to_owned());
        meta.insert(META_DIM.to_owned(), self.dim.to_string());
        meta.insert(META_FEATURES.to_owned(), self.features.name().to_owned());
        meta.insert(META_HIDDEN.to_owned(), self.hidden.to_string());
        meta.insert(META_LAYERS.to_owned(), self.layers.to_string());
        if let Some(st) = state {
            meta.insert(META_ITERATION.to_owned(), st.iteration.to_string());
            meta.insert(META_STEPS.to_owned(), st.optimizer.n_steps.to_string());
            for (k, v) in &st.settings {
                meta.insert(format!("{META_SETTING}{k}"), v.clone());
            }
            let mut vectors: Vec<(String, &[f64])> = st
                .optimizer
                .buffers
                .iter()
                .map(|(n, b)| (format!("{OPTIMIZER_PREFIX}{n}"), b.as_slice()))
                .collect();
            vectors.push((HISTORY_LOSS.to_owned(), &st.losses));
            vectors.push((HISTORY_MAE.to_owned(), &st.maes));
            for (name, v) in vectors {
                // safetensors has no zero-sized tensors everywhere: an empty buffer is
                // simply absent (read back as empty).
                if !v.is_empty() {
                    tensors.push((name, vec![v.len()], le(v)));
                }
            }
        }
        let views = tensors
            .iter()
            .map(|(n, shape, data)| {
                TensorView::new(safetensors::Dtype::F64, shape.clone(), data)
                    .map(|v| (n.as_str(), v))
                    .map_err(|e| format!("tensor `{n}`: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        safetensors::serialize(views, Some(meta)).map_err(|e| e.to_string())
    }

    /// Loads parameters saved by [`NeuralOde::save`] or [`NeuralOde::save_checkpoint`]
    /// for the same architecture (on error the model is unchanged).
    pub fn load(&mut self, path: &Path) -> Result<(), ModelsError> {
        self.load_checkpoint(path).map(|_| ())
    }

    /// Loads the parameters of a checkpoint and returns its [`TrainingState`] if it is a
    /// training checkpoint. Refuses, naming the file and what to do, a file that is not
    /// safetensors, one recorded for another [`Architecture`], and tensors whose names,
    /// shapes or element type (F64) do not fit this model. On error the model is
    /// unchanged.
    pub fn load_checkpoint(&mut self, path: &Path) -> Result<Option<TrainingState>, ModelsError> {
        let bytes = std::fs::read(path).map_err(|source| ModelsError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        self.load_checkpoint_bytes(&bytes, path)
    }

    /// [`NeuralOde::load_checkpoint`] from the bytes of a file; `path` only names it in
    /// errors.
    pub fn load_checkpoint_bytes(
        &mut self,
        bytes: &[u8],
        path: &Path,
    ) -> Result<Option<TrainingState>, ModelsError> {
        use safetensors::SafeTensors;
        let fail = |reason: String| ModelsError::CheckpointFile {
            path: path.to_path_buf(),
            reason,
        };
        let st = SafeTensors::deserialize(bytes)
            .map_err(|e| fail(format!("not a safetensors file ({e})")))?;
        let (_, header) = SafeTensors::read_metadata(bytes)
            .map_err(|e| fail(format!("not a safetensors file ({e})")))?;
        let meta = header.metadata().clone().unwrap_or_default();
        let mine = self.architecture();
        if meta.contains_key(META_DIM) || meta.contains_key(META_FEATURES) {
            let num = |k: &str| meta.get(k).and_then(|v| v.parse::<usize>().ok());
            let features = match meta.get(META_FEATURES).map(String::as_str) {
                Some("cubic") => Some(Features::Cubic),
                Some("identity") => Some(Features::Identity),
                _ => None,
            };
            let recorded = match (num(META_DIM), features, num(META_HIDDEN), num(META_LAYERS)) {
                (Some(dim), Some(features), Some(hidden), Some(layers)) => Architecture {
                    dim,
                    features,
                    hidden,
                    layers,
                },
                _ => {
                    return Err(fail(
                        "its architecture metadata (neuralode.*) is incomplete or malformed".into(),
                    ));
                }
            };
            if recorded != mine {
                return Err(ModelsError::ArchitectureMismatch {
                    path: path.to_path_buf(),
                    file: recorded.to_string(),
                    model: mine.to_string(),
                });
            }
        }
        let other_model = format!(
            "the file was written for another model; this one has {mine}: give the options of the run that wrote it"
        );
        let f64_tensor = |name: &str| -> Result<Option<ShapedValues>, ModelsError> {
            let Ok(t) = st.tensor(name) else {
                return Ok(None);
            };
            if t.dtype() != safetensors::Dtype::F64 {
                return Err(fail(format!(
                    "tensor `{name}` holds {:?} values; this program reads F64 (convert the file to float64, e.g. with PyTorch: `{{k: v.double() for k, v in state.items()}}`)",
                    t.dtype()
                )));
            }
            let values = t
                .data()
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect();
            Ok(Some((t.shape().to_vec(), values)))
        };
        // Validate every tensor before changing anything.
        let mut params = Vec::with_capacity(self.store.params().len());
        for p in self.store.params() {
            let want = p.view.shape().dims().to_vec();
            match f64_tensor(&p.name)? {
                None => {
                    return Err(fail(format!(
                        "tensor `{}` is missing: {other_model}",
                        p.name
                    )));
                }
                Some((shape, _)) if shape != want => {
                    return Err(fail(format!(
                        "tensor `{}` has shape {shape:?} where this model has {want:?}: {other_model}",
                        p.name
                    )));
                }
                Some((_, values)) => params.push((p.name.clone(), values)),
            }
        }
        let is_state =
            |n: &str| n.starts_with(OPTIMIZER_PREFIX) || n == HISTORY_LOSS || n == HISTORY_MAE;
        if let Some(extra) = st
            .names()
            .into_iter()
            .find(|n| self.store.view(n).is_none() && !is_state(n))
        {
            return Err(fail(format!(
                "tensor `{extra}` is not a parameter of this model: {other_model}"
            )));
        }
        let state = match meta.get(META_ITERATION) {
            None => None,
            Some(it) => {
                let number = |k: &str, v: Option<&String>| {
                    v.and_then(|v| v.parse::<u64>().ok()).ok_or_else(|| {
                        fail(format!(
                            "its metadata `{k}` is missing or not a whole number"
                        ))
                    })
                };
                let iteration = number(META_ITERATION, Some(it))?;
                let n_steps = number(META_STEPS, meta.get(META_STEPS))?;
                let mut buffers = Vec::new();
                let mut names: Vec<&str> = st
                    .names()
                    .into_iter()
                    .filter(|n| n.starts_with(OPTIMIZER_PREFIX))
                    .collect();
                names.sort();
                for n in names {
                    let (_, v) = f64_tensor(n)?.unwrap_or_default();
                    if v.len() != self.n_params() {
                        return Err(fail(format!(
                            "optimizer buffer `{n}` has {} values, the model {} parameters",
                            v.len(),
                            self.n_params()
                        )));
                    }
                    buffers.push((n[OPTIMIZER_PREFIX.len()..].to_owned(), v));
                }
                let losses = f64_tensor(HISTORY_LOSS)?.unwrap_or_default().1;
                let maes = f64_tensor(HISTORY_MAE)?.unwrap_or_default().1;
                if losses.len() as u64 != iteration || maes.len() != losses.len() {
                    return Err(fail(format!(
                        "its history holds {} losses and {} errors for {iteration} iterations",
                        losses.len(),
                        maes.len()
                    )));
                }
                let mut settings: Vec<(String, String)> = meta
                    .iter()
                    .filter_map(|(k, v)| {
                        k.strip_prefix(META_SETTING)
                            .map(|k| (k.to_owned(), v.clone()))
                    })
                    .collect();
                settings.sort();
                Some(TrainingState {
                    iteration,
                    optimizer: OptimizerState { n_steps, buffers },
                    losses,
                    maes,
                    settings,
                })
            }
        };
        for (name, values) in params {
            if let Some(dst) = self.store.get_mut(&name) {
                dst.copy_from_slice(&values);
            }
        }
        Ok(state)
    }

    /// The dynamics on a batch of `batch` states.
    pub fn dynamics(&self, batch: usize) -> Result<ModelDynamics, ModelsError> {
        let mlp = self.mlp.clone();
        let cubic = self.features == Features::Cubic;
        let make = move || -> Forward {
            let mlp = mlp.clone();
            Box::new(move |_tape, _t, z, theta| {
                let x = if cubic { z * z * z } else { z };
                mlp.forward(theta, x)
            })
        };
        Ok(ParallelTapeDynamics::from_factory(
            &[batch, self.dim],
            self.n_params(),
            make,
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
    /// The optimizer's state (for a [`TrainingState`]).
    pub fn optimizer_state(&self) -> OptimizerState<f64> {
        self.optimizer.state()
    }

    /// Restores the optimizer's state (moments and step count, which also positions the
    /// learning-rate schedule) from a checkpoint of this run.
    pub fn load_optimizer_state(&mut self, state: &OptimizerState<f64>) -> Result<(), ModelsError> {
        if state.buffers.is_empty() && state.n_steps == 0 {
            return Ok(());
        }
        self.optimizer.load_state(state)?;
        Ok(())
    }

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
