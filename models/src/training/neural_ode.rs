//! [`NeuralOde`]: an ODE block over any field, trained on observed trajectories.

use adjoint::{GradientMode, Method, Options, Threads};
use autodiff::nn::ParamStore;
use autodiff::{Float, Tape, Var};

use super::model::{Metrics, Model};
use crate::datasets::Batch;
use crate::{ModelsError, OdeBlock};

/// A loss on the states: `(states, targets) -> scalar`, both of shape
/// `[n_times, batch, dim]` (the block's output layout).
pub type StateLoss<T> = Box<dyn for<'t> FnMut(Var<'t, T>, Var<'t, T>) -> Var<'t, T> + Send>;

/// A Neural ODE `ż = f(t, z, θ)` over any field `f` written with autodiff ops (the
/// [`OdeBlock`]'s field type), with every parameter in one [`ParamStore`] that `f` reads
/// through its `θ` argument (the whole flat leaf, shape `[n_params]`).
///
/// Its batches hold trajectories: example `b` of a [`Batch`] is `n_times × dim` values
/// (any image shape with that many pixels, typically `[1, n_times, dim]`), row `k` the
/// observation at output time `t_k`. The model solves from row 0 to the output times
/// `t_0, …, t_{n−1}` (shared by all examples) as one batched solve, and the loss compares
/// the states at those times with the rows: by default the mean squared error
/// `1/(n B d) Σ_k Σ_b ‖z_b(t_k) − y_{b,k}‖²`, or any [`StateLoss`]
/// ([`with_loss`](NeuralOde::with_loss)). Metrics: `nfe_forward` and `nfe_backward`,
/// the field evaluations of the step's solve and of its gradient pass.
///
/// The solver is the block's default (Dopri5, [`Options::default`], checkpointed
/// adjoint) unless set with [`with_solver`](NeuralOde::with_solver) /
/// [`with_mode`](NeuralOde::with_mode). One block is built per batch size met (the
/// field is cloned for each), so a last partial batch is fine.
///
/// Each example is its own trajectory, so the field must act on each row of the
/// `[batch, dim]` state by itself (no batch normalisation or other mixing of rows): the
/// blocks split batches of 256 rows or more over threads
/// ([`OdeBlock::new_row_parallel`], the threads of [`Model::set_threads`], all cores by
/// default), with results that do not depend on the number of threads.
///
/// Not to be confused with [`crate::neural_ode::NeuralOde`], the fixed MLP model with its
/// own multi-threaded trainer used by the `neuralode train` job.
pub struct NeuralOde<T: Float, F> {
    name: String,
    store: ParamStore<T>,
    dim: usize,
    ts: Vec<T>,
    field: F,
    method: Method,
    options: Options<T>,
    mode: GradientMode<T>,
    threads: Threads,
    blocks: Vec<(usize, OdeBlock<T, F>)>,
    last: Option<usize>,
    loss: StateLoss<T>,
    z0: Vec<T>,
    targets: Vec<T>,
}

impl<T: Float, F> std::fmt::Debug for NeuralOde<T, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NeuralOde")
            .field("name", &self.name)
            .field("dim", &self.dim)
            .field("n_times", &self.ts.len())
            .field("n_params", &self.store.n_params())
            .finish_non_exhaustive()
    }
}

/// The fields a [`NeuralOde`] takes: an [`OdeBlock`] field `f(tape, t, z, θ) -> Var`
/// that can be cloned (one block is built per batch size). Implemented by every such
/// closure or function.
pub trait Field<T: Float>:
    for<'t> FnMut(&'t Tape<T>, Var<'t, T>, Var<'t, T>, Var<'t, T>) -> Var<'t, T>
    + Send
    + Clone
    + 'static
{
}

impl<T: Float, F> Field<T> for F where
    F: for<'t> FnMut(&'t Tape<T>, Var<'t, T>, Var<'t, T>, Var<'t, T>) -> Var<'t, T>
        + Send
        + Clone
        + 'static
{
}

/// Checks that a model name is one non-empty line (it is written in checkpoint manifests).
pub(crate) fn check_name(name: &str) -> Result<(), ModelsError> {
    if name.trim().is_empty() || name.contains(['\n', '\r']) || name.trim() != name {
        return Err(ModelsError::InvalidArgument {
            name: "model name",
            reason: format!(
                "{name:?}: a model name must be one non-empty line without surrounding spaces"
            ),
        });
    }
    Ok(())
}

impl<T, F> NeuralOde<T, F>
where
    T: Float,
    F: Field<T>,
{
    /// A model called `name` with parameters `store`, states of `dim` components, output
    /// times `ts` (at least two, strictly monotone; `ts[0]` is the time of the first
    /// observation) and field `field`. Errors on an invalid name, `dim = 0`, or fewer
    /// than two or non-monotone times.
    pub fn new(
        name: impl Into<String>,
        store: ParamStore<T>,
        dim: usize,
        ts: &[T],
        field: F,
    ) -> Result<Self, ModelsError> {
        let name = name.into();
        check_name(&name)?;
        if dim == 0 {
            return Err(ModelsError::InvalidArgument {
                name: "dim",
                reason: "the state needs at least one component".into(),
            });
        }
        let increasing = ts.windows(2).all(|w| w[1] > w[0]);
        let decreasing = ts.windows(2).all(|w| w[1] < w[0]);
        if ts.len() < 2 || !(increasing || decreasing) || ts.iter().any(|t| !t.is_finite()) {
            return Err(ModelsError::InvalidArgument {
                name: "ts",
                reason: format!(
                    "the output times must be at least two finite, strictly monotone values; got {} values",
                    ts.len()
                ),
            });
        }
        Ok(Self {
            name,
            store,
            dim,
            ts: ts.to_vec(),
            field,
            method: Method::Dopri5,
            options: Options::default(),
            mode: GradientMode::default(),
            threads: Threads::Current,
            blocks: Vec::new(),
            last: None,
            loss: Box::new(|zs, targets| (zs - targets).square().mean()),
            z0: Vec::new(),
            targets: Vec::new(),
        })
    }

    /// Sets the forward method and options (builder form).
    pub fn with_solver(mut self, method: Method, options: Options<T>) -> Self {
        self.method = method;
        self.options = options;
        self.blocks.clear();
        self.last = None;
        self
    }

    /// Sets the gradient mode (builder form).
    pub fn with_mode(mut self, mode: GradientMode<T>) -> Self {
        self.mode = mode;
        self.blocks.clear();
        self.last = None;
        self
    }

    /// Replaces the loss on the states (builder form; see [`StateLoss`]).
    pub fn with_loss(mut self, loss: StateLoss<T>) -> Self {
        self.loss = loss;
        self
    }

    /// Number of state components.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The output times.
    pub fn times(&self) -> &[T] {
        &self.ts
    }

    /// The block for batches of `batch` states (built on first use).
    fn block(&mut self, batch: usize) -> Result<usize, ModelsError> {
        if let Some(i) = self.blocks.iter().position(|(b, _)| *b == batch) {
            return Ok(i);
        }
        let block = OdeBlock::new_row_parallel(
            &[batch, self.dim],
            self.store.n_params(),
            self.field.clone(),
            self.threads.clone(),
        )?
        .with_solver(self.method, self.options.clone())
        .with_mode(self.mode.clone());
        self.blocks.push((batch, block));
        Ok(self.blocks.len() - 1)
    }
}

impl<T, F> Model<T> for NeuralOde<T, F>
where
    T: Float,
    F: Field<T>,
{
    fn name(&self) -> &str {
        &self.name
    }

    fn params(&self) -> &ParamStore<T> {
        &self.store
    }

    fn params_mut(&mut self) -> &mut ParamStore<T> {
        &mut self.store
    }

    fn loss<'t>(
        &mut self,
        tape: &'t Tape<T>,
        theta: Var<'t, T>,
        batch: &Batch<T>,
    ) -> Result<Var<'t, T>, ModelsError> {
        let (n, d, b) = (self.ts.len(), self.dim, batch.len());
        let per: usize = batch.shape[1..].iter().product();
        if per != n * d || batch.images.len() != b * per || b == 0 {
            return Err(ModelsError::InvalidArgument {
                name: "batch",
                reason: format!(
                    "model `{}` needs examples of {n} times x {d} components = {} values; the batch has shape {:?}",
                    self.name,
                    n * d,
                    batch.shape
                ),
            });
        }
        self.z0.clear();
        self.targets.clear();
        for ex in batch.images.chunks_exact(per) {
            self.z0.extend_from_slice(&ex[..d]);
        }
        for k in 0..n {
            for ex in batch.images.chunks_exact(per) {
                self.targets.extend_from_slice(&ex[k * d..(k + 1) * d]);
            }
        }
        let i = self.block(b)?;
        self.last = Some(i);
        let block = &self.blocks[i].1;
        let z0 = tape.constant(&self.z0, &[b, d])?;
        let ts = tape.constant(&self.ts, &[n])?;
        let targets = tape.constant(&self.targets, &[n, b, d])?;
        let zs = block.apply(z0, theta, ts);
        Ok((self.loss)(zs, targets))
    }

    fn set_threads(&mut self, threads: &Threads) -> Result<(), ModelsError> {
        self.threads = threads.clone();
        self.blocks.clear();
        self.last = None;
        Ok(())
    }

    fn metrics(&self, metrics: &mut Metrics) {
        if let Some((_, block)) = self.last.and_then(|i| self.blocks.get(i)) {
            let s = block.stats();
            metrics.set("nfe_forward", s.forward.nfe as f64);
            metrics.set("nfe_backward", s.backward_nfe as f64);
        }
    }
}

/// Every window of `window` consecutive samples of `data` as one example of a
/// [`NeuralOde`] batch (`[1, window, dim]`, label 0), with the window's times relative to
/// its first sample (the model's output times). Needs evenly spaced samples (to 1e-9
/// relative), so that every window shares those times; errors otherwise, or when
/// `window` is below 2 or longer than the data.
pub fn trajectory_windows<T: Float>(
    data: &crate::data::Trajectory,
    window: usize,
) -> Result<(crate::datasets::ImageDataset<T>, Vec<T>), ModelsError> {
    let n = data.len();
    if window < 2 || window > n {
        return Err(ModelsError::InvalidArgument {
            name: "window",
            reason: format!("a window needs 2 to {n} samples (the data's length), got {window}"),
        });
    }
    let h = (data.ts[n - 1] - data.ts[0]) / (n - 1) as f64;
    if let Some(k) = data
        .ts
        .windows(2)
        .position(|w| ((w[1] - w[0]) - h).abs() > 1e-9 * h.abs())
    {
        return Err(ModelsError::InvalidArgument {
            name: "trajectory",
            reason: format!(
                "windows need evenly spaced samples; t[{k}] = {} to t[{}] = {} differs from the mean spacing {h}",
                data.ts[k],
                k + 1,
                data.ts[k + 1]
            ),
        });
    }
    let (d, count) = (data.dim(), n - window + 1);
    let mut values = Vec::with_capacity(count * window * d);
    for s in 0..count {
        values.extend(
            data.ys[s * d..(s + window) * d]
                .iter()
                .map(|&y| T::from_f64_const(y)),
        );
    }
    let ts = (0..window)
        .map(|k| T::from_f64_const(data.ts[k] - data.ts[0]))
        .collect();
    let dataset =
        crate::datasets::ImageDataset::new(values, vec![0; count], [1, window, d], 1, T::one())?;
    Ok((dataset, ts))
}
