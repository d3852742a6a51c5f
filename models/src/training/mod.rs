//! A training loop for research code, generic over the model, the optimizer, the data
//! loader, the float type and what happens after each step.
//!
//! # What the loop does
//!
//! [`Trainer::fit`] runs epochs `e = 0, 1, …` of a [`DataLoader`](crate::datasets::DataLoader)
//! (the loader replays epoch `e` from its seed and `e`), and for every mini-batch takes
//! one step:
//!
//! 1. the [`Model`]'s flat parameters `θ` (its [`ParamStore`](autodiff::nn::ParamStore))
//!    go on the trainer's tape as ONE leaf, and [`Model::loss`] builds the scalar loss
//!    `L(θ; batch)` from it with `autodiff` ops (ODE blocks included);
//! 2. one reverse pass gives `g = dL/dθ` in the store's layout (each ODE block runs its
//!    adjoint once);
//! 3. optionally `g` is rescaled to a norm of at most `c` ([`TrainConfig::with_clip_grad_norm`],
//!    PyTorch's `clip_grad_norm_`); a non-finite loss or gradient stops training with
//!    [`ModelsError::NonFinite`](crate::ModelsError::NonFinite);
//! 4. the optimizer (anything implementing [`autodiff::optim::Optimizer`]: SGD, Adam,
//!    AdamW, any of them under a learning-rate [`Schedule`](autodiff::optim::Schedule))
//!    updates `θ` in place;
//! 5. the [`Callback`] sees a [`StepInfo`] (epoch, step, loss, gradient norm, learning
//!    rate, the model's [`Metrics`] such as accuracy or the number of field evaluations,
//!    elapsed time) and may stop training ([`Control::Stop`]).
//!
//! Training ends after [`TrainConfig::epochs`] epochs, after
//! [`TrainConfig::with_max_steps`] steps in total, or when the callback stops it; the
//! [`StopReason`] is on the returned [`TrainSummary`]. Nothing prints: progress bars
//! and logs are callbacks.
//!
//! # Checkpoints
//!
//! [`Trainer::save_checkpoint`] writes the parameters (safetensors, under the store's
//! names, readable from PyTorch), the optimizer's state (moments, step count, which also
//! positions a schedule) and the loop's [`Position`] (epoch, batch within the epoch,
//! total steps) into a directory, with a manifest naming the model, its dtype and size.
//! Each file is written atomically and the manifest last, so a crash leaves the previous
//! checkpoint or the new one, never a mix. [`Trainer::resume`] restores all three, so
//! that `N` steps, a checkpoint, a resume and `M` more steps give the parameters of
//! `N + M` uninterrupted steps (the tests check this). A checkpoint of another model,
//! dtype or size is an error naming both (see [`checkpoint`]).
//!
//! # Models
//!
//! [`Model`] is the whole contract: a name, a parameter store, a loss on a batch, and
//! optional metrics. [`NeuralOde`] is the simplest implementation: an
//! [`OdeBlock`](crate::OdeBlock) over any field, solved from each example's first
//! observation to the output times, with a loss on the states (mean squared error to the
//! observations by default). The tests also train an image classifier (linear layer →
//! ODE block → linear layer → cross-entropy) on the 8×8 digits.
//!
//! # Example
//!
//! Fit `ż = z W` to trajectories of a damped rotation, eight trajectories per batch:
//!
//! ```
//! use autodiff::optim::Adam;
//! use autodiff::nn::{Linear, ParamStore};
//! use models::datasets::{BatchOptions, ImageDataset};
//! use models::training::{Control, NeuralOde, TrainConfig, Trainer};
//!
//! // 32 trajectories of ż = A z, A = [[-0.1, 1], [-1, -0.1]], observed at t = 0, 0.5, 1:
//! // example b is an "image" [1, 3 times, 2 components].
//! let ts = [0.0, 0.5, 1.0];
//! let mut obs = Vec::new();
//! for b in 0..32 {
//!     let (x, y) = ((b as f64 * 0.7).cos(), (b as f64 * 0.7).sin());
//!     for &t in &ts {
//!         let (c, s, e) = (f64::cos(t), f64::sin(t), f64::exp(-0.1 * t));
//!         obs.extend([e * (c * x + s * y), e * (-s * x + c * y)]);
//!     }
//! }
//! let data = ImageDataset::new(obs, vec![0; 32], [1, 3, 2], 1, 1.0)?;
//! let loader = data.into_loader(BatchOptions::new(8))?;
//!
//! let mut store = ParamStore::<f64>::new(0);
//! let layer = Linear::new(&mut store, "field", 2, 2, false)?;
//! let mut model = NeuralOde::new("rotation", store, 2, &ts, move |_tape, _t, z, th| {
//!     layer.forward(th, z)
//! })?;
//! let mut trainer = Trainer::new(Adam::with_lr(0.05)?, TrainConfig::epochs(10)?);
//! let mut losses = Vec::new();
//! let summary = trainer.fit(&mut model, &loader, &mut |info: &models::training::StepInfo<'_>| {
//!     losses.push(info.loss);
//!     Control::Continue
//! })?;
//! assert_eq!(summary.steps, 40); // 10 epochs of 4 batches
//! assert!(losses[39] < 0.1 * losses[0]);
//! # Ok::<(), models::ModelsError>(())
//! ```

pub mod checkpoint;
mod model;
mod neural_ode;
mod trainer;

pub use model::{Metrics, Model};
pub use neural_ode::{Field, NeuralOde, StateLoss, trajectory_windows};
pub use trainer::{
    Callback, Control, Position, StepInfo, StepOutcome, StopReason, TrainConfig, TrainSummary,
    Trainer,
};
