//! Latent ODEs for irregularly sampled time series (Chen et al. 2018 §5; Rubanova, Chen
//! & Duvenaud 2019).
//!
//! # The model
//!
//! A series is observed at irregular times `t_0 < … < t_{N−1}`, each observation with
//! some components possibly missing. The generative model draws an initial latent state
//! and lets it evolve deterministically:
//!
//! ```text
//! z₀ ~ N(0, I),   dz/dt = f_θ(z),   x_{i,d} ~ N(g_θ(z(t_i))_d, s²),
//! ```
//!
//! and optionally the times themselves are the events of a Poisson process with intensity
//! `λ(t) = softplus(h_ψ(z(t)))` ([`poisson`]). Inference uses an approximate posterior
//! `q(z₀ | x) = N(μ, diag σ²)` from an ODE-RNN run backwards in time over the
//! observations ([`encoder`]: GRU updates at observations, an ODE over each gap, masks for
//! missing components), and training maximises the reparameterised ELBO with KL annealing
//! or the IWAE bound ([`elbo`]).
//!
//! The latent ODE is solved ONCE per batch, from the batch's first time to the union of
//! all its series' times (an [`OdeBlock`](crate::OdeBlock) on `[K·B, L]`, `K` posterior
//! draws per series): each series' likelihood reads only its own rows, through 0/1
//! masks ([`data::IrregularBatch`]). The block's adjoint gives the gradients of the
//! latent field; the encoder's short solves (RK4 steps of at most `enc_max_step`) are
//! differentiated through their stages.
//!
//! # Pieces
//!
//! * [`data`]: the series and batch types; irregular noisy spirals (clockwise and
//!   counter-clockwise, as torchdiffeq's `latent_ode.py`), spirals sampled at a
//!   state-dependent rate, Rubanova et al.'s periodic toy, a CSV reader.
//! * [`encoder`], [`gru`]: the ODE-RNN (or torchdiffeq's `tanh` RNN) recognition network.
//! * [`decoder`]: latent field and Gaussian decoder.
//! * [`elbo`], [`poisson`]: the objective's terms.
//! * [`model`]: [`LatentOde`], its loss, reconstructions and posterior samples.
//! * [`baselines`]: the ODE-RNN alone and an RNN with the time gaps as input (RNN-Δt).
//! * [`train`]: [`fit`] and [`evaluate`] for all of them.
//! * [`scores`]: the MSE against clean trajectories per component and the
//!   log-likelihood of the observation times, for studies beyond the held-out MSE.
//!
//! # Example
//!
//! ```
//! use autodiff::Tape;
//! use models::latent::{data, elbo, LatentConfig, LatentOde};
//! use rand::{SeedableRng, rngs::StdRng};
//!
//! let cfg = data::SpiralConfig { n_spirals: 4, n_total: 60, n_sample: 12, ..Default::default() };
//! let (spirals, _clean) = data::spirals::<f64>(&cfg, 0)?;
//! let batch = spirals.batch(&[0, 1, 2, 3])?;
//! let mut model = LatentOde::<f64>::new(LatentConfig::new(2))?;
//! let tape = Tape::new();
//! tape.set_recording(true);
//! let theta = model.params().leaf(&tape)?;
//! let noise = elbo::draw_noise(&mut StdRng::seed_from_u64(1), 1, 4, 4);
//! let terms = model.loss(&tape, theta, &batch, &noise, 1, 1.0)?;
//! tape.backward(terms.loss, &[1.0])?;
//! assert!(theta.grad()?.iter().all(|g| g.is_finite()));
//! # Ok::<(), models::ModelsError>(())
//! ```

pub mod baselines;
pub mod blocks;
pub mod data;
pub mod decoder;
pub mod elbo;
pub mod encoder;
pub mod gru;
pub mod model;
pub mod poisson;
pub mod scores;
pub mod train;

pub use encoder::EncoderKind;
pub use model::{LatentConfig, LatentOde, LossTerms, masked_mse};
pub use train::{FitConfig, SeriesModel, StepReport, evaluate, fit, fit_with};
