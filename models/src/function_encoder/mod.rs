//! Function encoders: a basis of Neural ODEs, and zero-shot transfer of dynamics to new
//! systems (Ingebrand et al., "Zero-shot transfer of neural ODEs", 2024).
//!
//! Learn `K` basis fields `f_i(z)` (MLPs, [`basis`]) jointly on a family of systems
//! ([`systems`]: Van der Pol with varying `μ`, damped oscillators with varying damping and
//! frequency, pendulums of varying length). A system is represented by coefficients `α`
//! in that basis, and predicted by one ODE solve of
//!
//! ```text
//! dz/dt = f₀(z) + Σ_{i=1}^{K} α_i f_i(z)        (f₀: the average field of the residual variant)
//! ```
//!
//! For a new system, `α` comes from a few demonstrations *without any gradient step*
//! ([`coefficients`]): velocities estimated from irregular samples (finite differences or
//! a local quadratic fit), then `α_i = ⟨v, f_i⟩` (inner product) or
//! `α = (G + λI)⁻¹ b` with the Gram matrix `G_{ik} = ⟨f_i, f_k⟩` and `b_i = ⟨v, f_i⟩`
//! (regularised least squares), `⟨f, g⟩ = (1/m) Σ_j f(x_j)·g(x_j)` over the `m`
//! demonstration points.
//!
//! Training ([`train`]) computes each system's coefficients inside the loss, on the tape
//! (the least-squares solve is a differentiable tape operation, [`coefficients::gram_solve`]),
//! and solves the combined field with the [`OdeBlock`](crate::OdeBlock), whose parameter
//! input is `[θ, α]`: one adjoint pass gives the gradient through the solve, through the
//! coefficients and through the basis values. [`transfer`] scores zero-shot predictions
//! on held-out systems against a Neural ODE trained on all systems and an oracle Neural
//! ODE trained on the new system alone.
//!
//! # Example
//!
//! Train a small basis for a few epochs, then encode a held-out pendulum from its
//! demonstrations and predict new trajectories:
//!
//! ```
//! use models::function_encoder::{
//!     BasisConfig, DemoConfig, Demonstrations, EncoderSettings, FunctionEncoder, System,
//!     TrainPlan, TransferCase, train_encoder, zero_shot,
//! };
//! use models::training::{Control, StepInfo};
//!
//! let demo = DemoConfig { n_traj: 2, n_times: 8, horizon: 1.0, noise: 0.0 };
//! let demos = System::family(3, 1)
//!     .into_iter()
//!     .enumerate()
//!     .map(|(i, s)| Demonstrations::generate(s, &demo, i as u64))
//!     .collect::<Result<Vec<_>, _>>()?;
//! let config = BasisConfig::new(2, 8).residual(true);
//! let mut fe = FunctionEncoder::new("fe", config, demos, EncoderSettings::default())?;
//! let plan = TrainPlan { epochs: 3, batch: 3, lr: 1e-2, clip: 10.0, seed: 0 };
//! train_encoder(&mut fe, &plan, &mut |_: &StepInfo<'_>| Control::Continue)?;
//!
//! let case = TransferCase::new(System::Pendulum { length: 7.0 }, &demo, &demo, 99)?;
//! let method = fe.settings().coefficients; // least squares by default
//! let result = zero_shot(&mut fe, &case, method)?;
//! assert_eq!(result.alpha.len(), 2);
//! assert!(result.rmse.is_finite());
//! # Ok::<(), models::ModelsError>(())
//! ```

pub mod basis;
pub mod coefficients;
pub mod systems;
pub mod train;
pub mod transfer;

pub use basis::{Basis, BasisConfig};
pub use coefficients::{CoefficientMethod, VelocityEstimate};
pub use systems::{DemoConfig, Demonstrations, System, SystemKind};
pub use train::{EncoderSettings, FunctionEncoder, SystemLoader};
pub use transfer::{
    TrainPlan, TransferCase, ZeroShot, rmse, train_encoder, train_oracle, zero_shot,
};
