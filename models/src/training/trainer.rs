//! [`Trainer`]: the loop (see the [module docs](super)).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use adjoint::Threads;
use autodiff::optim::{Optimizer, clip_grad_norm};
use autodiff::{Float, Tape};

use super::checkpoint;
use super::model::{Metrics, Model};
use crate::ModelsError;
use crate::datasets::{Batch, DataLoader};

/// How long to train, gradient clipping, and periodic checkpoints. Setters validate.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    epochs: u64,
    max_steps: Option<u64>,
    clip_grad_norm: Option<f64>,
    checkpoints: Option<(PathBuf, u64)>,
    threads: usize,
}

impl TrainConfig {
    /// Train for `epochs` epochs (at least 1), no step limit, no clipping, no
    /// checkpoints.
    pub fn epochs(epochs: u64) -> Result<Self, ModelsError> {
        if epochs == 0 {
            return Err(ModelsError::InvalidArgument {
                name: "epochs",
                reason: "train for at least one epoch".into(),
            });
        }
        Ok(Self {
            epochs,
            max_steps: None,
            clip_grad_norm: None,
            checkpoints: None,
            threads: 0,
        })
    }

    /// Threads the model's fields may split their batch rows over ([`Model::set_threads`],
    /// [`adjoint::Threads::new`]): `0` (the default) the current rayon pool, all cores
    /// unless the program sized it; `1` the calling thread only; `n ≥ 2` a pool of `n`
    /// threads. Results do not depend on it (see [`adjoint::parallel`]).
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
    }

    /// The threads setting (`0`: the current rayon pool).
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Also stop once `steps` optimizer steps have been taken in total (counting those
    /// before a resume); at least 1.
    pub fn with_max_steps(mut self, steps: u64) -> Result<Self, ModelsError> {
        if steps == 0 {
            return Err(ModelsError::InvalidArgument {
                name: "max_steps",
                reason: "allow at least one step".into(),
            });
        }
        self.max_steps = Some(steps);
        Ok(self)
    }

    /// Rescale each gradient to a Euclidean norm of at most `max_norm` (finite, > 0)
    /// before the update.
    pub fn with_clip_grad_norm(mut self, max_norm: f64) -> Result<Self, ModelsError> {
        if !(max_norm.is_finite() && max_norm > 0.0) {
            return Err(ModelsError::InvalidArgument {
                name: "clip_grad_norm",
                reason: format!("the norm bound must be finite and > 0, got {max_norm}"),
            });
        }
        self.clip_grad_norm = Some(max_norm);
        Ok(self)
    }

    /// Save a checkpoint into `dir` every `every` steps (at least 1) and when training
    /// ends (see [`Trainer::save_checkpoint`]).
    pub fn with_checkpoints(
        mut self,
        dir: impl Into<PathBuf>,
        every: u64,
    ) -> Result<Self, ModelsError> {
        if every == 0 {
            return Err(ModelsError::InvalidArgument {
                name: "checkpoint interval",
                reason: "checkpoint every 1 or more steps".into(),
            });
        }
        self.checkpoints = Some((dir.into(), every));
        Ok(self)
    }

    /// Number of epochs.
    pub fn n_epochs(&self) -> u64 {
        self.epochs
    }

    /// The step limit, if any.
    pub fn max_steps(&self) -> Option<u64> {
        self.max_steps
    }

    /// The gradient-norm bound, if any.
    pub fn clip_norm(&self) -> Option<f64> {
        self.clip_grad_norm
    }

    /// The checkpoint directory and interval, if any.
    pub fn checkpoints(&self) -> Option<(&Path, u64)> {
        self.checkpoints.as_ref().map(|(d, e)| (d.as_path(), *e))
    }
}

/// Where a training run stands: the next batch to train on is batch `batch` of epoch
/// `epoch`, after `step` optimizer steps in total.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Position {
    /// The current epoch (0-based).
    pub epoch: u64,
    /// Batches of the current epoch already trained on.
    pub batch: u64,
    /// Optimizer steps taken in total.
    pub step: u64,
}

/// What a [`Callback`] sees after each step.
#[derive(Debug, Clone, Copy)]
pub struct StepInfo<'a> {
    /// Epoch of the step (0-based).
    pub epoch: u64,
    /// Index of the batch within the epoch (0-based).
    pub batch: u64,
    /// Steps taken in total, this one included (1 after the first step).
    pub step: u64,
    /// The loss of the batch, before the update.
    pub loss: f64,
    /// Euclidean norm of the gradient, before clipping.
    pub grad_norm: f64,
    /// Learning rate of the update.
    pub lr: f64,
    /// The model's figures for this step ([`Model::metrics`]).
    pub metrics: &'a Metrics,
    /// Wall-clock time since [`Trainer::fit`] was called.
    pub elapsed: Duration,
}

/// Whether training goes on after a callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Take the next step.
    Continue,
    /// Stop now ([`StopReason::Callback`]).
    Stop,
}

/// Called after every step (progress bars, logging, early stopping). Closures
/// `FnMut(&StepInfo) -> Control` are callbacks.
pub trait Callback {
    /// Sees the step; returns whether to go on.
    fn on_step(&mut self, info: &StepInfo<'_>) -> Control;
}

impl<F: FnMut(&StepInfo<'_>) -> Control> Callback for F {
    fn on_step(&mut self, info: &StepInfo<'_>) -> Control {
        self(info)
    }
}

/// Why [`Trainer::fit`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// All epochs are done.
    Epochs,
    /// The step limit is reached.
    MaxSteps,
    /// The callback returned [`Control::Stop`].
    Callback,
}

/// The outcome of [`Trainer::fit`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrainSummary {
    /// Why training stopped.
    pub stop: StopReason,
    /// Steps taken by this call.
    pub steps: u64,
    /// Where training stands now (resume from here).
    pub position: Position,
    /// Loss of the last step, if any step was taken (`NaN` otherwise).
    pub last_loss: f64,
}

/// The result of one [`Trainer::step`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepOutcome {
    /// The loss before the update.
    pub loss: f64,
    /// Gradient norm before clipping.
    pub grad_norm: f64,
    /// Learning rate of the update.
    pub lr: f64,
}

/// The training loop: an optimizer, a [`TrainConfig`], the [`Position`], and the tape and
/// gradient buffer reused by every step (see the [module docs](super)).
pub struct Trainer<T: Float, O> {
    pub(super) optimizer: O,
    config: TrainConfig,
    pub(super) position: Position,
    tape: Tape<T>,
    grad: Vec<T>,
    metrics: Metrics,
    /// The threads built from [`TrainConfig::threads`] (a pool is built once).
    threads: Option<Threads>,
}

impl<T: Float, O> std::fmt::Debug for Trainer<T, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trainer")
            .field("config", &self.config)
            .field("position", &self.position)
            .finish_non_exhaustive()
    }
}

impl<T: Float, O: Optimizer<T>> Trainer<T, O> {
    /// A trainer at position zero.
    pub fn new(optimizer: O, config: TrainConfig) -> Self {
        Self {
            optimizer,
            config,
            position: Position::default(),
            tape: Tape::new(),
            grad: Vec::new(),
            metrics: Metrics::new(),
            threads: None,
        }
    }

    /// The optimizer.
    pub fn optimizer(&self) -> &O {
        &self.optimizer
    }

    /// The configuration.
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// Where training stands.
    pub fn position(&self) -> Position {
        self.position
    }

    /// The metrics of the last step.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// One optimizer step of `model` on `batch` (steps 1–4 of the [module docs](super)),
    /// outside any epoch bookkeeping: the [`Position`] is not changed. On an error the
    /// parameters are unchanged.
    pub fn step<M: Model<T>>(
        &mut self,
        model: &mut M,
        batch: &Batch<T>,
    ) -> Result<StepOutcome, ModelsError> {
        self.tape.reset();
        self.tape.set_recording(true);
        let n = model.params().n_params();
        let loss = {
            let tape = &self.tape;
            let theta = model.params().leaf(tape)?;
            let loss = model.loss(tape, theta, batch)?;
            if loss.len() != 1 {
                return Err(ModelsError::InvalidArgument {
                    name: "loss",
                    reason: format!(
                        "model `{}` returned a loss of shape {:?}; it must be a scalar",
                        model.name(),
                        loss.shape().dims()
                    ),
                });
            }
            let value = loss.item()?.to_f64_lossy();
            if !value.is_finite() {
                return Err(ModelsError::NonFinite {
                    what: "loss",
                    index: 0,
                });
            }
            tape.backward_scalar(loss)?;
            self.grad.resize(n, T::zero());
            theta.grad_into(&mut self.grad)?;
            value
        };
        if let Some(i) = self.grad.iter().position(|g| !g.is_finite()) {
            return Err(ModelsError::NonFinite {
                what: "parameter gradient",
                index: i,
            });
        }
        let grad_norm = match self.config.clip_grad_norm {
            Some(c) => clip_grad_norm(&mut self.grad, T::from_f64_const(c)),
            None => self.grad.iter().map(|&g| g * g).sum::<T>().sqrt(),
        }
        .to_f64_lossy();
        self.optimizer
            .step(model.params_mut().as_mut_slice(), &self.grad)?;
        self.metrics.clear();
        model.metrics(&mut self.metrics);
        Ok(StepOutcome {
            loss,
            grad_norm,
            lr: self.optimizer.learning_rate(),
        })
    }

    /// Trains `model` on the batches of `loader` from the current [`Position`] until the
    /// configured epochs or steps are done or `callback` stops it (see the
    /// [module docs](super)). Resuming replays the current epoch from the loader's seed
    /// and skips the batches already trained on. Writes checkpoints as configured
    /// ([`TrainConfig::with_checkpoints`]), also when stopping for any reason.
    pub fn fit<M, L, C>(
        &mut self,
        model: &mut M,
        loader: &L,
        callback: &mut C,
    ) -> Result<TrainSummary, ModelsError>
    where
        M: Model<T>,
        L: DataLoader<T>,
        C: Callback + ?Sized,
    {
        let threads = match &self.threads {
            Some(t) => t.clone(),
            None => {
                let t = Threads::new(self.config.threads)?;
                self.threads = Some(t.clone());
                t
            }
        };
        model.set_threads(&threads)?;
        let start = Instant::now();
        let first_step = self.position.step;
        let mut last_loss = f64::NAN;
        let stop = 'train: loop {
            if self.position.epoch >= self.config.epochs {
                break StopReason::Epochs;
            }
            let mut batches = loader.batches(self.position.epoch);
            for _ in 0..self.position.batch {
                if batches.next().is_none() {
                    break;
                }
            }
            for batch in batches {
                if self
                    .config
                    .max_steps
                    .is_some_and(|m| self.position.step >= m)
                {
                    break 'train StopReason::MaxSteps;
                }
                let out = self.step(model, &batch)?;
                last_loss = out.loss;
                let info = StepInfo {
                    epoch: self.position.epoch,
                    batch: self.position.batch,
                    step: self.position.step + 1,
                    loss: out.loss,
                    grad_norm: out.grad_norm,
                    lr: out.lr,
                    metrics: &self.metrics,
                    elapsed: start.elapsed(),
                };
                let control = callback.on_step(&info);
                self.position.batch += 1;
                self.position.step += 1;
                if let Some((dir, every)) = &self.config.checkpoints
                    && self.position.step.is_multiple_of(*every)
                {
                    checkpoint::save(self, model, dir)?;
                }
                if control == Control::Stop {
                    break 'train StopReason::Callback;
                }
            }
            self.position.epoch += 1;
            self.position.batch = 0;
        };
        if let Some((dir, _)) = &self.config.checkpoints {
            checkpoint::save(self, model, dir)?;
        }
        Ok(TrainSummary {
            stop,
            steps: self.position.step - first_step,
            position: self.position,
            last_loss,
        })
    }

    /// Saves the parameters of `model`, the optimizer's state and the position into the
    /// directory `dir` (created if needed); see [`checkpoint`](super::checkpoint).
    pub fn save_checkpoint<M: Model<T>>(&self, model: &M, dir: &Path) -> Result<(), ModelsError> {
        checkpoint::save(self, model, dir)
    }

    /// Restores the parameters of `model`, the optimizer's state and the position from
    /// the checkpoint in `dir`; all or nothing. Errors, naming both, if the checkpoint
    /// holds another model, dtype or number of parameters.
    pub fn resume<M: Model<T>>(
        &mut self,
        model: &mut M,
        dir: &Path,
    ) -> Result<Position, ModelsError> {
        checkpoint::resume(self, model, dir)
    }
}
