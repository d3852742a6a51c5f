//! The contract between a model and the training loop.

use adjoint::Threads;
use autodiff::nn::ParamStore;
use autodiff::{Float, Tape, Var};

use crate::ModelsError;
use crate::datasets::Batch;

/// A trainable model: a name, all parameters in one flat [`ParamStore`] (named views, so
/// checkpoints carry names), and a scalar loss on a mini-batch built on a tape.
///
/// The trainer puts the store's flat buffer on its tape as one leaf `theta` (shape
/// `[n_params]`) and calls [`loss`](Model::loss); layers carve their weights out of
/// `theta` with views (e.g. [`Linear::forward`](autodiff::nn::Linear::forward),
/// [`OdeBlock::apply`](crate::OdeBlock::apply) with `theta.view(offset, &[p])`), so the
/// gradient lands in the store's layout.
pub trait Model<T: Float> {
    /// A name identifying the architecture (saved in checkpoints, compared on resume;
    /// one line, not empty).
    fn name(&self) -> &str;

    /// The parameters.
    fn params(&self) -> &ParamStore<T>;

    /// The parameters, mutably (what the optimizer updates and a resume overwrites).
    fn params_mut(&mut self) -> &mut ParamStore<T>;

    /// The loss of `batch` as a scalar variable (one element) on `tape`, computed from the
    /// flat parameter leaf `theta`. Recording is on. An error here stops training.
    fn loss<'t>(
        &mut self,
        tape: &'t Tape<T>,
        theta: Var<'t, T>,
        batch: &Batch<T>,
    ) -> Result<Var<'t, T>, ModelsError>;

    /// Where the model may split the batch rows of its fields (e.g. with
    /// [`OdeBlock::new_row_parallel`](crate::OdeBlock::new_row_parallel)); called by
    /// [`Trainer::fit`](super::Trainer::fit) with [`TrainConfig::with_threads`]'s setting
    /// (all cores by default) before its first step. Default: ignored.
    ///
    /// [`TrainConfig::with_threads`]: super::TrainConfig::with_threads
    fn set_threads(&mut self, threads: &Threads) -> Result<(), ModelsError> {
        let _ = threads;
        Ok(())
    }

    /// Adds figures of the last step to `metrics` (e.g. accuracy on the batch, field
    /// evaluations of its ODE blocks); called after the backward pass. Default: none.
    fn metrics(&self, metrics: &mut Metrics) {
        let _ = metrics;
    }
}

/// Named figures of one training step (accuracy, NFE, …), in insertion order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics {
    entries: Vec<(&'static str, f64)>,
}

impl Metrics {
    /// No entries.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `name` to `value` (replacing an earlier value of the same name).
    pub fn set(&mut self, name: &'static str, value: f64) {
        match self.entries.iter_mut().find(|(n, _)| *n == name) {
            Some(e) => e.1 = value,
            None => self.entries.push((name, value)),
        }
    }

    /// The value of `name`, if set.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.entries
            .iter()
            .find(|(n, _)| *n == name)
            .map(|&(_, v)| v)
    }

    /// The entries, in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, f64)> + '_ {
        self.entries.iter().copied()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there is no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Removes every entry (keeps the capacity).
    pub fn clear(&mut self) {
        self.entries.clear();
    }
}
