//! A training loop for models of irregular series (the latent ODE and the baselines):
//! shuffled mini-batches on the union of their times, one reverse pass, optional
//! gradient clipping, any optimizer.

use autodiff::nn::ParamStore;
use autodiff::optim::Optimizer;
use autodiff::{Float, Tape, Var};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::data::{IrregularBatch, IrregularDataset};
use crate::ModelsError;

/// A model of irregular series that [`fit`] can train.
pub trait SeriesModel<T: Float> {
    /// The parameters.
    fn params(&self) -> &ParamStore<T>;
    /// The parameters, mutably.
    fn params_mut(&mut self) -> &mut ParamStore<T>;
    /// The training loss of `batch` at training step `step` (random draws from `rng`).
    fn train_loss<'t>(
        &mut self,
        tape: &'t Tape<T>,
        theta: Var<'t, T>,
        batch: &IrregularBatch<T>,
        rng: &mut StdRng,
        step: usize,
    ) -> Result<Var<'t, T>, ModelsError>;
    /// Mean squared error of the model's predictions on the batch's targets, given its
    /// `mask`ed values (`None` without targets).
    fn target_mse(&mut self, batch: &IrregularBatch<T>) -> Result<Option<f64>, ModelsError>;
}

/// Settings of [`fit`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FitConfig {
    /// Optimizer steps.
    pub steps: usize,
    /// Series per batch (the whole set if larger).
    pub batch_size: usize,
    /// Clip the gradient to this norm (`None`: no clipping).
    pub clip: Option<f64>,
    /// Seed of the shuffles and draws.
    pub seed: u64,
}

/// What the callback of [`fit`] sees after each step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepReport {
    /// Step index (from 0).
    pub step: usize,
    /// Loss of the step's batch.
    pub loss: f64,
    /// Gradient norm before clipping.
    pub grad_norm: f64,
}

/// Trains `model` on `data` for `cfg.steps` steps (epochs of shuffled batches, restarted
/// as needed); `callback` sees every step and stops training by returning `false`.
/// Returns the losses. A non-finite loss or gradient is an error.
pub fn fit<T: Float, M: SeriesModel<T>>(
    model: &mut M,
    data: &IrregularDataset<T>,
    opt: &mut dyn Optimizer<T>,
    cfg: &FitConfig,
    callback: &mut dyn FnMut(&StepReport) -> bool,
) -> Result<Vec<f64>, ModelsError> {
    fit_with(model, data, &|b| b, opt, cfg, callback)
}

/// [`fit`] with each batch passed through `prepare` first (e.g.
/// [`IrregularBatch::extrapolation`] to train on predicting the second half of each
/// series from its first half).
pub fn fit_with<T: Float, M: SeriesModel<T>>(
    model: &mut M,
    data: &IrregularDataset<T>,
    prepare: &dyn Fn(IrregularBatch<T>) -> IrregularBatch<T>,
    opt: &mut dyn Optimizer<T>,
    cfg: &FitConfig,
    callback: &mut dyn FnMut(&StepReport) -> bool,
) -> Result<Vec<f64>, ModelsError> {
    if data.is_empty() || cfg.batch_size == 0 {
        return Err(ModelsError::InvalidArgument {
            name: "fit",
            reason: "need a non-empty data set and batch_size > 0".into(),
        });
    }
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let mut order: Vec<usize> = (0..data.len()).collect();
    let bs = cfg.batch_size.min(data.len());
    let mut pos = data.len();
    let mut grad = model.params().zeros_like();
    let mut losses = Vec::with_capacity(cfg.steps);
    let mut tape = Tape::<T>::new();
    for step in 0..cfg.steps {
        if pos + bs > data.len() {
            order.shuffle(&mut rng);
            pos = 0;
        }
        let batch = prepare(data.batch(&order[pos..pos + bs])?);
        pos += bs;
        tape.reset();
        tape.set_recording(true);
        let loss_v = {
            let theta = model.params().leaf(&tape)?;
            let loss = model.train_loss(&tape, theta, &batch, &mut rng, step)?;
            tape.backward(loss, &[T::one()])?;
            theta.grad_into(&mut grad)?;
            loss.item()?.to_f64_lossy()
        };
        if !loss_v.is_finite() {
            return Err(ModelsError::NonFinite {
                what: "loss",
                index: step,
            });
        }
        if let Some(i) = grad.iter().position(|g| !g.is_finite()) {
            return Err(ModelsError::NonFinite {
                what: "gradient",
                index: i,
            });
        }
        let norm = grad
            .iter()
            .map(|g| g.to_f64_lossy().powi(2))
            .sum::<f64>()
            .sqrt();
        if let Some(c) = cfg.clip
            && norm > c
        {
            let s = T::from_f64_const(c / norm);
            grad.iter_mut().for_each(|g| *g *= s);
        }
        opt.step(model.params_mut().as_mut_slice(), &grad)?;
        losses.push(loss_v);
        if !callback(&StepReport {
            step,
            loss: loss_v,
            grad_norm: norm,
        }) {
            break;
        }
    }
    Ok(losses)
}

/// The mean of [`SeriesModel::target_mse`] over `data` in batches of `batch_size`
/// (after `split` turns each batch into its evaluation form), weighted by the number of
/// targets; `None` if no batch has targets.
pub fn evaluate<T: Float, M: SeriesModel<T>>(
    model: &mut M,
    data: &IrregularDataset<T>,
    batch_size: usize,
    split: &dyn Fn(&IrregularBatch<T>) -> IrregularBatch<T>,
) -> Result<Option<f64>, ModelsError> {
    let (mut s, mut c) = (0.0, 0usize);
    let idx: Vec<usize> = (0..data.len()).collect();
    for chunk in idx.chunks(batch_size.max(1)) {
        let b = split(&data.batch(chunk)?);
        let n = b.n_targets();
        if let Some(m) = model.target_mse(&b)? {
            s += m * n as f64;
            c += n;
        }
    }
    Ok((c > 0).then(|| s / c as f64))
}
