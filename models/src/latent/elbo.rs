//! The training objective: reparameterised ELBO with KL annealing, or the IWAE bound.
//!
//! With `q(z₀ | x) = N(μ, diag σ²)` from the encoder, `K` draws `z₀⁽ᵏ⁾ = μ + σ ⊙ ε⁽ᵏ⁾`,
//! `ε⁽ᵏ⁾ ~ N(0, I)` (the reparameterisation trick: the noise is an input, so the bound
//! is a differentiable function of the parameters for fixed `ε`), and the data
//! log-likelihood `log p(x | z₀⁽ᵏ⁾) = Σ_{i,d} target · log N(x_{i,d}; x̂_{i,d}, s²)`
//! (fixed observation noise `s`, decoder means `x̂` at the solved latent states):
//!
//! * ELBO (`K = 1`): `log p(x | z₀) − β KL(q ‖ N(0, I))`, the KL in closed form,
//!   `½ Σ (σ² + μ² − 1 − log σ²)`;
//! * IWAE (`K > 1`, Burda et al. 2016): `log (1/K) Σ_k w_k` with
//!   `log w_k = log p(x | z₀⁽ᵏ⁾) + β [log p(z₀⁽ᵏ⁾) − log q(z₀⁽ᵏ⁾ | x)]`, where
//!   `log p(z) − log q(z | x) = −½ Σ (z² − ε² − log σ²)`; computed as a log-sum-exp
//!   shifted by the (constant) maximum.
//!
//! `β` is the KL weight: [`KlAnnealing`] raises it linearly from `β₀` to 1 over the first
//! steps (Bowman et al. 2016), which keeps the posterior from collapsing early; at `β = 1`
//! both are true lower bounds of `log p(x)` (the IWAE one tighter, increasing in `K`).
//! The loss is minus the bound, averaged over the series of the batch.

use autodiff::{Float, Tape, Var};
use rand::rngs::StdRng;

use super::data::normal;
use crate::ModelsError;

/// Linear KL annealing: `β(step) = β₀ + (1 − β₀) min(1, step / warmup)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KlAnnealing {
    /// Weight at step 0, in `[0, 1]`.
    pub start: f64,
    /// Steps to reach 1 (0 = no annealing).
    pub warmup: usize,
}

impl Default for KlAnnealing {
    fn default() -> Self {
        Self {
            start: 0.0,
            warmup: 0,
        }
    }
}

impl KlAnnealing {
    /// The weight at `step`.
    pub fn weight(&self, step: usize) -> f64 {
        if self.warmup == 0 || step >= self.warmup {
            1.0
        } else {
            self.start + (1.0 - self.start) * step as f64 / self.warmup as f64
        }
    }
}

/// `K · B · L` standard normal draws, the reparameterisation noise of one step.
pub fn draw_noise<T: Float>(rng: &mut StdRng, k: usize, b: usize, l: usize) -> Vec<T> {
    (0..k * b * l)
        .map(|_| T::from_f64_const(normal(rng)))
        .collect()
}

/// [`draw_noise`] from a fresh generator seeded with `seed`.
pub fn seeded_noise<T: Float>(seed: u64, k: usize, b: usize, l: usize) -> Vec<T> {
    draw_noise(
        &mut <StdRng as rand::SeedableRng>::seed_from_u64(seed),
        k,
        b,
        l,
    )
}

/// Checks the noise length and builds `z₀ = μ + exp(½ log σ²) ε` as `[K·B, L]`.
pub fn reparameterise<'t, T: Float>(
    tape: &'t Tape<T>,
    mu: Var<'t, T>,
    log_var: Var<'t, T>,
    noise: &[T],
    k: usize,
) -> Result<(Var<'t, T>, Var<'t, T>), ModelsError> {
    let (b, l) = (mu.shape().dim(0), mu.shape().dim(1));
    if k == 0 || noise.len() != k * b * l {
        return Err(ModelsError::InvalidArgument {
            name: "noise",
            reason: format!(
                "need K ≥ 1 samples of {b}×{l} draws ({} values), got {} for K = {k}",
                k * b * l,
                noise.len()
            ),
        });
    }
    let eps = tape.constant(noise, &[k, b, l])?;
    let z0 = mu + (log_var.mul_scalar(T::from_f64_const(0.5))).exp() * eps;
    Ok((z0.reshape(&[k * b, l]), eps))
}

/// `log p(x | z)` per sample `[K, B]` from decoder means `pred` `[N, K·B, d]`: the masked
/// Gaussian log-density with standard deviation `obs_std`.
pub fn gaussian_log_likelihood<'t, T: Float>(
    tape: &'t Tape<T>,
    pred: Var<'t, T>,
    values: &[T],
    target: &[T],
    k: usize,
    obs_std: f64,
) -> Result<Var<'t, T>, ModelsError> {
    let s = pred.shape();
    let (n, kb, d) = (s.dim(0), s.dim(1), s.dim(2));
    let b = kb / k;
    let x = tape.constant(values, &[n, 1, b, d])?;
    let m = tape.constant(target, &[n, 1, b, d])?;
    let sq = ((pred.reshape(&[n, k, b, d]) - x).square() * m)
        .sum_axis(3)
        .sum_axis(0);
    // Number of scored values of each series: the constant part of the density.
    let mut counts = vec![T::zero(); b];
    for (i, &v) in target.iter().enumerate() {
        counts[(i / d) % b] += v;
    }
    let c = tape.constant(&counts, &[1, b])?;
    let var = obs_std * obs_std;
    let ln2pv = (2.0 * std::f64::consts::PI * var).ln();
    Ok(sq.mul_scalar(T::from_f64_const(-0.5 / var)) - c.mul_scalar(T::from_f64_const(0.5 * ln2pv)))
}

/// The closed-form `KL(N(μ, diag e^{lv}) ‖ N(0, I))` per series, `[B]`.
pub fn kl_standard_normal<'t, T: Float>(mu: Var<'t, T>, log_var: Var<'t, T>) -> Var<'t, T> {
    (log_var.exp() + mu.square() - log_var)
        .add_scalar(-T::one())
        .sum_axis(1)
        .mul_scalar(T::from_f64_const(0.5))
}

/// The bound per series `[B]` from `log p(x | z)` `[K, B]` (plus any other per-sample
/// log-likelihood already added), the draws `z₀` `[K·B, L]`, `ε` `[K, B, L]` and `q`'s
/// parameters; `β` weighs the prior/posterior term. `K = 1`: ELBO with the closed-form
/// KL; `K > 1`: IWAE.
pub fn bound<'t, T: Float>(
    log_px: Var<'t, T>,
    z0: Var<'t, T>,
    eps: Var<'t, T>,
    mu: Var<'t, T>,
    log_var: Var<'t, T>,
    beta: f64,
) -> Result<Var<'t, T>, ModelsError> {
    let (k, b) = (log_px.shape().dim(0), log_px.shape().dim(1));
    let l = mu.shape().dim(1);
    let beta = T::from_f64_const(beta);
    if k == 1 {
        let kl = kl_standard_normal(mu, log_var);
        return Ok(log_px.reshape(&[b]) - kl.mul_scalar(beta));
    }
    // log p(z) − log q(z | x) = −½ Σ_l (z² − ε² − lv).
    let z = z0.reshape(&[k, b, l]);
    let lpq = (z.square() - eps.square() - log_var)
        .sum_axis(2)
        .mul_scalar(T::from_f64_const(-0.5));
    let logw = log_px + lpq.mul_scalar(beta);
    // log-sum-exp over the K draws, shifted by the per-series maximum (a constant: the
    // value and gradient of log Σ exp are unchanged by any constant shift).
    let w = logw.value()?;
    let mut mx = vec![T::neg_infinity(); b];
    for (i, &v) in w.iter().enumerate() {
        if v > mx[i % b] {
            mx[i % b] = v;
        }
    }
    let tape = logw.tape();
    let m = tape.constant(&mx, &[b])?;
    let lse = (logw - m).exp().sum_axis(0).log() + m;
    Ok(lse.add_scalar(T::from_f64_const(-(k as f64).ln())))
}
