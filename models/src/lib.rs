//! Neural ODE models: a library for research code (the `neuralode` command-line
//! program that runs them lives in the `cli` crate).
//!
//! # What is here
//!
//! * [`neural_ode`]: an MLP Neural ODE `dz/dt = f_θ(φ(z))` on `dim` state components
//!   (`φ(z) = z³` elementwise or `φ(z) = z`, tanh hidden layers), with its parameters in
//!   one flat `autodiff` parameter store, saved as safetensors under PyTorch's
//!   `nn.Sequential` names (`f.0.weight`, `f.0.bias`, `f.2.weight`, …), and a
//!   [`Trainer`](neural_ode::Trainer) that takes Adam steps with the gradient from any
//!   of the `adjoint` crate's modes.
//! * [`data`]: sampled trajectories, read from and written to CSV.
//! * [`datasets`]: image data sets for the ODENet experiments (the shipped 5,000-image
//!   MNIST subset and the 8×8 digits, full MNIST from IDX files), with stratified splits,
//!   normalisation, augmentation and a shuffling mini-batch [`DataLoader`](datasets::DataLoader).
//! * [`spiral`]: the cubic spiral `dy/dt = A y³` of the Neural ODE demonstrations.
//! * [`ode_block`]: the ODE block, an ODE solve as one differentiable operation on the
//!   autodiff tape (state and parameters in, states at the output times out, backward by
//!   any gradient mode), so that an ODE sits inside any network. It is the base of every
//!   model type here ([`odenet`], [`training::NeuralOde`], [`cnf`], [`latent`],
//!   [`function_encoder`]).
//! * [`training`]: a training loop generic over the model ([`Model`]: parameters, a loss
//!   on a batch, metrics), the optimizer, the [`DataLoader`](datasets::DataLoader) and
//!   a per-step callback, with gradient clipping and resumable checkpoints (parameters,
//!   optimizer state, position); [`training::NeuralOde`] trains an ODE block over any field.
//! * [`cnf`]: continuous normalizing flows (FFJORD): stacked CNF blocks with the exact
//!   or Hutchinson trace, concat-squash layers, RNODE regularisers, FFJORD's 2-D toy
//!   densities, log-density and sampling.
//! * [`odenet`]: ODE-Net, RK-Net and ResNet, the image classifiers of Chen et al. 2018
//!   §7.1 (torchdiffeq's `odenet_mnist.py`), sized for MNIST or the 8×8 digits.
//! * [`function_encoder`]: function encoders, a basis of `K` Neural ODE fields trained
//!   jointly on a family of systems (Van der Pol, damped oscillators, pendulums), and
//!   zero-shot transfer to a new system: coefficients from a few demonstrations by an
//!   inner product or a Gram-matrix least-squares solve, no gradient step.
//! * [`latent`]: latent ODEs for irregularly sampled series (Rubanova et al. 2019): an
//!   ODE-RNN encoder run backwards in time with masks, the latent ODE solved once per
//!   batch at the union of its times, ELBO with KL annealing or IWAE, a Poisson-process
//!   likelihood of the observation times, spiral / periodic / CSV data, and baselines.
//!
//! The crate has no command-line, plotting or progress-bar dependency: the `cli` crate's
//! `neuralode` program adds those around it.
//!
//! # The training problem
//!
//! Given samples `y(t_k)` of a trajectory, a training step draws windows of `w`
//! consecutive samples starting at `s_1, …, s_B`, solves the model from each window's
//! first sample to its sample times, and minimises the mean squared error
//!
//! ```text
//! L(θ) = 1/(B w d) Σ_b Σ_{k<w} ‖z_b(t_{s_b + k}; θ) − y(t_{s_b + k})‖²,
//! ```
//!
//! `z_b(t_{s_b}) = y(t_{s_b})`. Evenly spaced samples make every window the same relative
//! time grid, so the `B` windows are one batched solve of a `[B, d]` state; irregular ones
//! are solved one window at a time. `dL/dθ` comes from one backward pass of the chosen
//! gradient mode ([`GradientModeArg`](neural_ode::GradientModeArg)), and Adam steps with a
//! learning rate cosine-decayed to 1 % of its peak.
//!
//! # Example
//!
//! ```
//! use models::neural_ode::{Features, GradientModeArg, NeuralOde, SolverSettings};
//! use models::spiral::spiral_trajectory;
//! use ode_solvers::Method;
//!
//! let data = spiral_trajectory(200, 5.0)?; // 200 samples on [0, 5]
//! let mut model = NeuralOde::new(2, Features::Cubic, 16, 2, 0)?; // 2 → 16 → 16 → 2
//! let settings = SolverSettings {
//!     method: Method::Dopri5,
//!     rtol: 1e-6,
//!     atol: 1e-8,
//!     mode: GradientModeArg::Checkpointed,
//! };
//! let iters = 40;
//! let mut trainer = model.trainer(&settings, 1e-2, iters, 1)?;
//! let windows = [0, 50, 100, 150]; // four windows of 10 samples
//! let first = trainer.step(&mut model, &data, &windows, 10)?;
//! let mut last = first;
//! for _ in 1..iters {
//!     last = trainer.step(&mut model, &data, &windows, 10)?;
//! }
//! assert!(last < first);
//! let predicted = model.predict(&data, &settings)?; // the whole trajectory from y(0)
//! assert_eq!(predicted.len(), data.len());
//! # Ok::<(), models::ModelsError>(())
//! ```
//!
//! `cargo run --release -p models --example fit_your_csv [FILE.csv]` fits a CSV
//! trajectory with this API; `cargo run --release` at the workspace root runs the full
//! training job (`neuralode train`, in the `cli` crate), and the root `README.md`
//! describes every command.

pub mod cnf;
pub mod data;
pub mod datasets;
pub mod error;
pub mod function_encoder;
pub mod latent;
pub mod neural_ode;
pub mod ode_block;
pub mod odenet;
pub mod spiral;
pub mod training;

pub use error::ModelsError;
pub use ode_block::{OdeBlock, StepControl};
pub use odenet::{ImageClassifier, OdeNet, ResNet, RkNet};
pub use training::{Model, Trainer};
