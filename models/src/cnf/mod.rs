//! Continuous normalizing flows: FFJORD (Grathwohl et al. 2019) on the
//! [`OdeBlock`](crate::OdeBlock).
//!
//! # The mathematics
//!
//! A CNF block transports samples by `ż = f(t, z; θ)` on `[0, T]`. The instantaneous
//! change of variables (Chen et al. 2018, Theorem 1) gives the log-density along a path,
//!
//! ```text
//! d log p(z(t))/dt = −tr(∂f/∂z (t, z(t))),
//! ```
//!
//! so integrating the augmented state `[z, Δ]` from data `x = z(0)`, `Δ(0) = 0`, with
//! `Δ̇ = −tr(∂f/∂z)`, to `z(T)` gives
//!
//! ```text
//! log p(x) = log N(z(T); 0, I) − Δ(T).
//! ```
//!
//! Samples go the other way: `z ~ N(0, I)` integrated from `T` back to 0. Several blocks
//! stack (`x → z₁ → z₂ → …`, `Δ` accumulating), each with its own network and end time.
//!
//! The trace is computed inside the field on the field's own tape
//! ([`trace`]): exactly with `d` vector–Jacobian products (small `d`), or with
//! Hutchinson's unbiased estimator `εᵀ(∂f/∂z)ε` from one product, `ε` Rademacher or
//! Gaussian, drawn once per solve (carried as extra parameters of the block, so the
//! forward and adjoint solves see the same `ε` and it stays out of the error control).
//! The products are recorded ([`Tape::backward_graph`](autodiff::Tape::backward_graph),
//! PyTorch's `create_graph=True`), so the adjoint's `aᵀ ∂[f, −tr]/∂(z, θ)` differentiates
//! through the trace: second derivatives of the network.
//!
//! Training maximises the likelihood: `L = −mean_b log p(x_b)` (+ the RNODE terms of
//! [`regularizers`]), its gradient by the block's gradient mode (checkpointed continuous
//! adjoint by default, or direct backpropagation through the solver). The end times are
//! trained as FFJORD's `T = s²`.
//!
//! # What is here
//!
//! * [`layers`]: concat-squash layers with time input and the MLP built from them.
//! * [`trace`]: exact and Hutchinson divergence inside a forward pass.
//! * [`flow`]: [`Cnf`], the stacked flow: a [`Model`](crate::Model) for the
//!   [`Trainer`](crate::Trainer), `log_density`, `sample`.
//! * [`regularizers`]: RNODE's kinetic energy and Jacobian norm as state channels.
//! * [`toy`]: the 2-D toy densities of FFJORD and a Gaussian baseline.
//!
//! # Example
//!
//! A small flow on two moons, a few Adam steps, then the density and samples:
//!
//! ```
//! use autodiff::optim::Adam;
//! use models::cnf::{Cnf, CnfConfig, ToyDensity};
//! use models::training::{TrainConfig, Trainer};
//! use rand::SeedableRng;
//!
//! let config = CnfConfig { hidden: vec![16], rtol: 1e-4, atol: 1e-4, ..CnfConfig::toy() };
//! let mut flow = Cnf::<f64>::new(config)?;
//! let mut trainer = Trainer::new(Adam::with_lr(1e-2)?, TrainConfig::epochs(1)?);
//! let mut rng = rand::rngs::StdRng::seed_from_u64(1);
//! let mut losses = Vec::new();
//! for _ in 0..5 {
//!     let batch = ToyDensity::Moons.batch(32, &mut rng);
//!     losses.push(trainer.step(&mut flow, &batch)?.loss);
//! }
//! assert!(losses.iter().all(|l| l.is_finite()));
//! let logp = flow.log_density(&[0.0, 0.0, 1.0, 0.5], models::cnf::Divergence::Exact)?;
//! let samples = flow.sample(10, 7)?; // [10, 2]
//! assert!(logp.len() == 2 && samples.len() == 20);
//! # Ok::<(), models::ModelsError>(())
//! ```
//!
//! # References
//!
//! Chen, Rubanova, Bettencourt & Duvenaud 2018, "Neural ordinary differential equations";
//! Grathwohl, Chen, Bettencourt, Sutskever & Duvenaud 2019, "FFJORD"; Finlay, Jacobsen,
//! Nurbekyan & Oberman 2020, "How to train your neural ODE" (RNODE); Hutchinson 1989.

pub mod flow;
pub mod layers;
pub mod regularizers;
pub mod toy;
pub mod trace;

pub use flow::{Cnf, CnfConfig, CnfField};
pub use layers::{Activation, ConcatSquashLinear, ConcatSquashNet};
pub use regularizers::Rnode;
pub use toy::{GaussianBaseline, ToyDensity};
pub use trace::{Divergence, Noise};
