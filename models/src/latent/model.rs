//! [`LatentOde`]: encoder, latent ODE, decoder and (optionally) the Poisson process,
//! with its loss, reconstructions and posterior samples.

use adjoint::{GradientMode, Method};
use autodiff::nn::{Mlp, ParamStore};
use autodiff::{Float, Tape, Var};
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::blocks::{BlockCache, BoxField, boxed, sub_network};
use super::data::IrregularBatch;
use super::decoder::{Decoder, LatentField};
use super::elbo::{KlAnnealing, bound, draw_noise, gaussian_log_likelihood, reparameterise};
use super::encoder::{Encoder, EncoderKind};
use super::poisson::{augmented_field, intensity_net, times_log_likelihood};
use super::train::SeriesModel;
use crate::ModelsError;
use crate::ode_block::StepControl;

/// The architecture and solver settings of a [`LatentOde`]. The defaults are those of
/// torchdiffeq's `examples/latent_ode.py` (latent 4, field 20 units, recognition
/// hidden state 25, decoder 20 units, observation noise 0.3) with an ODE-RNN encoder,
/// Dopri5 at `rtol = 1e-3`, `atol = 1e-4` (Rubanova et al.'s tolerances).
#[derive(Clone, Debug, PartialEq)]
pub struct LatentConfig {
    /// Observed components `d`.
    pub dim: usize,
    /// Latent dimensions `L`.
    pub latent: usize,
    /// Hidden units of the latent field.
    pub units: usize,
    /// Hidden state of the encoder.
    pub rec_hidden: usize,
    /// Hidden units of the encoder's ODE field.
    pub rec_units: usize,
    /// Hidden units of the decoder (and of the intensity network).
    pub dec_units: usize,
    /// The encoder.
    pub encoder: EncoderKind,
    /// Largest RK4 step of the encoder's ODE between observations.
    pub enc_max_step: f64,
    /// Standard deviation of the Gaussian decoder.
    pub obs_std: f64,
    /// Model the observation times with a Poisson process.
    pub poisson: bool,
    /// Method of the latent solve.
    pub method: Method,
    /// Relative tolerance of the latent solve.
    pub rtol: f64,
    /// Absolute tolerance of the latent solve.
    pub atol: f64,
    /// Step control of the latent solve (adaptive methods): the peers' by default, as in
    /// torchdiffeq's `latent_ode.py`.
    pub step_control: StepControl,
    /// Seed of the initial parameters.
    pub seed: u64,
}

impl LatentConfig {
    /// The defaults (see the type) for `dim` observed components.
    pub fn new(dim: usize) -> Self {
        Self {
            dim,
            latent: 4,
            units: 20,
            rec_hidden: 25,
            rec_units: 25,
            dec_units: 20,
            encoder: EncoderKind::OdeRnn,
            enc_max_step: 0.5,
            obs_std: 0.3,
            poisson: false,
            method: Method::Dopri5,
            rtol: 1e-3,
            atol: 1e-4,
            step_control: StepControl::Peers,
            seed: 0,
        }
    }
}

/// Decoder means, and with the Poisson process the intensities and their integrals.
type Decoded<'t, T> = (Var<'t, T>, Option<(Var<'t, T>, Var<'t, T>)>);

/// Values of a reconstruction: the decoder means, and with the Poisson process the
/// intensities and their integrals (`[N, B, d]` each).
pub type Reconstruction<T> = (Vec<T>, Option<(Vec<T>, Vec<T>)>);

/// The terms of the objective on one batch (means over the series).
#[derive(Clone, Copy, Debug)]
pub struct LossTerms<'t, T: Float> {
    /// Minus the bound (what is minimised).
    pub loss: Var<'t, T>,
    /// `log p(x | z)` (the first draw's).
    pub log_px: Var<'t, T>,
    /// `KL(q(z₀ | x) ‖ N(0, I))` in closed form.
    pub kl: Var<'t, T>,
    /// The Poisson log-likelihood of the times (the first draw's; zero without it).
    pub log_pt: Var<'t, T>,
}

/// A latent ODE (Rubanova et al. 2019; Chen et al. 2018 §5) for irregular series: see the
/// [module documentation](super).
pub struct LatentOde<T: Float> {
    cfg: LatentConfig,
    store: ParamStore<T>,
    encoder: Encoder<T>,
    dynamics: BlockCache<T>,
    dyn_off: usize,
    dyn_len: usize,
    intensity: Option<Mlp>,
    decoder: Decoder,
    samples: usize,
    kl: KlAnnealing,
}

impl<T: Float> std::fmt::Debug for LatentOde<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LatentOde")
            .field("cfg", &self.cfg)
            .field("n_params", &self.store.n_params())
            .finish_non_exhaustive()
    }
}

impl<T: Float> LatentOde<T> {
    /// Builds the model (parameters initialised from `cfg.seed`). Errors on zero sizes or
    /// non-positive tolerances, noise or step.
    pub fn new(cfg: LatentConfig) -> Result<Self, ModelsError> {
        if cfg.dim == 0
            || cfg.latent == 0
            || cfg.units == 0
            || cfg.rec_hidden == 0
            || cfg.rec_units == 0
            || cfg.dec_units == 0
        {
            return Err(ModelsError::InvalidArgument {
                name: "latent config",
                reason: format!("all sizes must be > 0: {cfg:?}"),
            });
        }
        if !(cfg.obs_std > 0.0 && cfg.rtol > 0.0 && cfg.atol > 0.0) {
            return Err(ModelsError::InvalidArgument {
                name: "latent config",
                reason: format!("obs_std, rtol and atol must be > 0: {cfg:?}"),
            });
        }
        let mut store = ParamStore::<T>::new(cfg.seed);
        let encoder = Encoder::new(
            &mut store,
            cfg.encoder,
            cfg.dim,
            cfg.rec_hidden,
            cfg.rec_units,
            cfg.latent,
            cfg.enc_max_step,
        )?;
        let (latent, units, dim, poisson) = (cfg.latent, cfg.units, cfg.dim, cfg.poisson);
        let ((f, g), dyn_off, dyn_len) = sub_network(&mut store, |s| {
            let f = LatentField::new(s, "latent_field", latent, units)?;
            let g = if poisson {
                Some(intensity_net(s, "intensity", latent, cfg.dec_units, dim)?)
            } else {
                None
            };
            Ok((f, g))
        })?;
        let decoder = Decoder::new(&mut store, cfg.latent, cfg.dec_units, cfg.dim)?;
        let width = latent + if poisson { dim } else { 0 };
        let (f2, g2) = (f, g.clone());
        let make: Box<dyn Fn() -> BoxField<T> + Send> = Box::new(move || {
            let (f, g) = (f2.clone(), g2.clone());
            match g {
                Some(g) => {
                    boxed(move |tape, _t, z, th| augmented_field(tape, &f, &g, latent, z, th))
                }
                None => boxed(move |_tape, _t, z, th| f.forward(th, z)),
            }
        });
        let options = cfg
            .step_control
            .options(T::from_f64_const(cfg.rtol), T::from_f64_const(cfg.atol));
        let dynamics = BlockCache::new(
            width,
            dyn_len,
            cfg.method,
            options,
            GradientMode::default(),
            make,
        );
        Ok(Self {
            cfg,
            store,
            encoder,
            dynamics,
            dyn_off,
            dyn_len,
            intensity: g,
            decoder,
            samples: 1,
            kl: KlAnnealing::default(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &LatentConfig {
        &self.cfg
    }

    /// The parameters.
    pub fn params(&self) -> &ParamStore<T> {
        &self.store
    }

    /// The parameters, mutably.
    pub fn params_mut(&mut self) -> &mut ParamStore<T> {
        &mut self.store
    }

    /// Sets the training objective used by [`SeriesModel::train_loss`]: `samples` draws
    /// per series (1: ELBO, more: IWAE) and the KL annealing. Errors if `samples` is 0.
    pub fn set_objective(&mut self, samples: usize, kl: KlAnnealing) -> Result<(), ModelsError> {
        if samples == 0 {
            return Err(ModelsError::InvalidArgument {
                name: "samples",
                reason: "need at least one posterior draw".into(),
            });
        }
        self.samples = samples;
        self.kl = kl;
        Ok(())
    }

    /// Sets the gradient mode of the latent solve (default: checkpointed adjoint).
    pub fn set_mode(&mut self, mode: GradientMode<T>) {
        self.dynamics.set_mode(mode);
    }

    /// Sets the gradient mode of the encoder's ODE solves (default: direct).
    pub fn set_encoder_mode(&mut self, mode: GradientMode<T>) {
        self.encoder.set_mode(mode);
    }

    /// Field evaluations of the forward solves since the last call: `(encoder, latent)`.
    pub fn take_nfe(&mut self) -> (usize, usize) {
        (self.encoder.take_nfe(), self.dynamics.take_nfe())
    }

    /// The latent solve's counts of the last batch (forward, and after a backward pass
    /// the backward evaluations and VJPs); `None` before the first solve.
    pub fn latent_stats(&self) -> Option<adjoint::GradStats> {
        self.dynamics.last_stats()
    }

    /// Solves the latent ODE from `z0` (`[R, L]`) at `times` and decodes: the means
    /// `[N, R, d]`, and with the Poisson process the intensities and their integrals
    /// (each `[N, R, d]`).
    fn decode<'t>(
        &mut self,
        tape: &'t Tape<T>,
        theta: Var<'t, T>,
        z0: Var<'t, T>,
        times: &[T],
    ) -> Result<Decoded<'t, T>, ModelsError> {
        let (l, d) = (self.cfg.latent, self.cfg.dim);
        let rows = z0.shape().dim(0);
        let th = theta.view(self.dyn_off, &[self.dyn_len]);
        let z0 = if self.intensity.is_some() {
            tape.concat(&[z0, tape.full(T::zero(), &[rows, d])?], 1)
        } else {
            z0
        };
        let n = times.len();
        let ts = tape.constant(times, &[n])?;
        let zs = self.dynamics.apply(z0, th, ts)?;
        match &self.intensity {
            None => Ok((self.decoder.forward(theta, zs), None)),
            Some(g) => {
                let z = zs.narrow(2, 0, l);
                let big = zs.narrow(2, l, d);
                let lam = g
                    .forward(th, z.reshape(&[n * rows, l]))
                    .softplus()
                    .reshape(&[n, rows, d]);
                Ok((self.decoder.forward(theta, z), Some((lam, big))))
            }
        }
    }

    /// The objective on `batch` with reparameterisation noise `noise` (`K · B · L`
    /// standard normal draws, e.g. from [`draw_noise`]; `K = 1` gives the ELBO, `K > 1`
    /// the IWAE bound) and KL weight `beta` (see [`elbo`](super::elbo)). The encoder
    /// reads `batch.mask`, the likelihoods score `batch.target`.
    pub fn loss<'t>(
        &mut self,
        tape: &'t Tape<T>,
        theta: Var<'t, T>,
        batch: &IrregularBatch<T>,
        noise: &[T],
        k: usize,
        beta: f64,
    ) -> Result<LossTerms<'t, T>, ModelsError> {
        if batch.dim != self.cfg.dim {
            return Err(ModelsError::InvalidArgument {
                name: "batch",
                reason: format!(
                    "the model takes {} components, the batch has {}",
                    self.cfg.dim, batch.dim
                ),
            });
        }
        let (b, n, d) = (batch.batch, batch.n_times(), batch.dim);
        let (mu, lv) = self.encoder.encode(tape, theta, batch)?;
        let (z0, eps) = reparameterise(tape, mu, lv, noise, k)?;
        let (pred, pois) = self.decode(tape, theta, z0, &batch.times)?;
        let mut log_p = gaussian_log_likelihood(
            tape,
            pred,
            &batch.values,
            &batch.target,
            k,
            self.cfg.obs_std,
        )?;
        let log_px = log_p.narrow(0, 0, 1).mean();
        let mut log_pt = tape.scalar(T::zero());
        if let Some((lam, big)) = pois {
            // The events are every known observation (seen by the encoder or scored), on
            // the window of the whole batch: scoring only the targets would charge the
            // integral over times whose events are not counted (e.g. the encoder's half
            // in extrapolation) and teach λ ≈ 0 there.
            let events: Vec<T> = batch
                .mask
                .iter()
                .zip(&batch.target)
                .map(|(&a, &c)| {
                    if a != T::zero() || c != T::zero() {
                        T::one()
                    } else {
                        T::zero()
                    }
                })
                .collect();
            let m = tape.constant(&events, &[n, 1, b, d])?;
            let lam = lam.reshape(&[n, k, b, d]);
            let big = big.reshape(&[n, k, b, d]);
            let lt = times_log_likelihood(lam, m, big);
            log_pt = lt.narrow(0, 0, 1).mean();
            log_p = log_p + lt;
        }
        let kl = super::elbo::kl_standard_normal(mu, lv).mean();
        let bnd = bound(log_p, z0, eps, mu, lv, beta)?;
        Ok(LossTerms {
            loss: bnd.mean().neg(),
            log_px,
            kl,
            log_pt,
        })
    }

    /// Posterior-mean reconstruction: `z₀ = μ(x)` from the batch's `mask`ed values,
    /// decoded at the batch's times; the means `[N, B, d]`.
    pub fn reconstruct(&mut self, batch: &IrregularBatch<T>) -> Result<Vec<T>, ModelsError> {
        Ok(self.reconstruct_with_times(batch)?.0)
    }

    /// [`reconstruct`](Self::reconstruct), and with the Poisson process the intensities
    /// `λ` and their integrals `Λ` from the batch's first time along the same trajectory
    /// (`[N, B, d]` each; score them with
    /// [`window_log_likelihood`](super::poisson::window_log_likelihood)).
    pub fn reconstruct_with_times(
        &mut self,
        batch: &IrregularBatch<T>,
    ) -> Result<Reconstruction<T>, ModelsError> {
        let tape = Tape::<T>::new();
        let theta = self.store.leaf(&tape)?;
        let (mu, _) = self.encoder.encode(&tape, theta, batch)?;
        let (pred, pois) = self.decode(&tape, theta, mu, &batch.times)?;
        let pois = match pois {
            Some((lam, big)) => Some((lam.value()?, big.value()?)),
            None => None,
        };
        Ok((pred.value()?, pois))
    }

    /// Mean squared error of the posterior-mean reconstruction on the batch's targets
    /// (`None` if it has none).
    pub fn target_mse(&mut self, batch: &IrregularBatch<T>) -> Result<Option<f64>, ModelsError> {
        let pred = self.reconstruct(batch)?;
        Ok(masked_mse(&pred, &batch.values, &batch.target))
    }

    /// `samples` posterior trajectories (seeded draws of `z₀ ~ q(z₀ | x)`) decoded at
    /// `times` (strictly increasing; `times[0]` must be the batch's first time, where
    /// `z₀` lives): `[samples, times.len(), B, d]`.
    pub fn sample_trajectories(
        &mut self,
        batch: &IrregularBatch<T>,
        times: &[T],
        samples: usize,
        seed: u64,
    ) -> Result<Vec<T>, ModelsError> {
        if times.first() != batch.times.first() || samples == 0 {
            return Err(ModelsError::InvalidArgument {
                name: "times",
                reason: "the output times must start at the batch's first time, and samples > 0"
                    .into(),
            });
        }
        let tape = Tape::<T>::new();
        let theta = self.store.leaf(&tape)?;
        let (mu, lv) = self.encoder.encode(&tape, theta, batch)?;
        let noise = draw_noise::<T>(
            &mut StdRng::seed_from_u64(seed),
            samples,
            batch.batch,
            self.cfg.latent,
        );
        let (z0, _) = reparameterise(&tape, mu, lv, &noise, samples)?;
        let (pred, _) = self.decode(&tape, theta, z0, times)?;
        // [N, S·B, d] → [S, N, B, d].
        let v = pred.value()?;
        let (n, b, d) = (times.len(), batch.batch, self.cfg.dim);
        let mut out = vec![T::zero(); v.len()];
        for i in 0..n {
            for s in 0..samples {
                let src = (i * samples + s) * b * d;
                let dst = (s * n + i) * b * d;
                out[dst..dst + b * d].copy_from_slice(&v[src..src + b * d]);
            }
        }
        Ok(out)
    }
}

impl<T: Float> SeriesModel<T> for LatentOde<T> {
    fn params(&self) -> &ParamStore<T> {
        &self.store
    }

    fn params_mut(&mut self) -> &mut ParamStore<T> {
        &mut self.store
    }

    fn train_loss<'t>(
        &mut self,
        tape: &'t Tape<T>,
        theta: Var<'t, T>,
        batch: &IrregularBatch<T>,
        rng: &mut StdRng,
        step: usize,
    ) -> Result<Var<'t, T>, ModelsError> {
        let noise = draw_noise(rng, self.samples, batch.batch, self.cfg.latent);
        let beta = self.kl.weight(step);
        Ok(self
            .loss(tape, theta, batch, &noise, self.samples, beta)?
            .loss)
    }

    fn target_mse(&mut self, batch: &IrregularBatch<T>) -> Result<Option<f64>, ModelsError> {
        LatentOde::target_mse(self, batch)
    }
}

/// `Σ target (pred − values)² / Σ target`, or `None` without targets.
pub fn masked_mse<T: Float>(pred: &[T], values: &[T], target: &[T]) -> Option<f64> {
    let (mut s, mut c) = (0.0, 0.0);
    for ((&p, &v), &m) in pred.iter().zip(values).zip(target) {
        if m != T::zero() {
            let e = (p - v).to_f64_lossy();
            s += e * e;
            c += 1.0;
        }
    }
    (c > 0.0).then(|| s / c)
}
