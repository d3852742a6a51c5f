//! The Poisson-process likelihood of the observation times (Rubanova et al. 2019, §3.4).
//!
//! Each component `d` is observed at the events of an inhomogeneous Poisson process with
//! intensity `λ_d(t) = softplus(g_ψ(z(t)))_d`, a function of the latent state. On the
//! window `[t_0, t_end]` the log-likelihood of the event times `{t_i}` of component `d` is
//!
//! ```text
//! log p({t_i}) = Σ_i log λ_d(t_i) − ∫_{t_0}^{t_end} λ_d(t) dt.
//! ```
//!
//! The integral is carried as `d` extra ODE states `Λ` beside the latent state,
//! `dΛ/dt = λ(z)`, `Λ(t_0) = 0`, so one solve gives `z(t)` and `Λ(t) = ∫_{t_0}^t λ`
//! together, and the adjoint differentiates both. For a constant intensity `λ` and `n`
//! events on a window of length `T` the term is `n log λ − λ T`
//! ([`constant_rate_log_likelihood`]; the tests check the ODE against it).

use autodiff::nn::{Activation, Mlp, ParamStore};
use autodiff::{Float, Tape, Var};

/// The intensity network `z ↦ g_ψ(z)` (`L → units → d`, tanh), built under `"{name}"`;
/// `λ = softplus(g)`.
pub fn intensity_net<T: Float>(
    store: &mut ParamStore<T>,
    name: &str,
    latent: usize,
    units: usize,
    dim: usize,
) -> Result<Mlp, autodiff::Error> {
    Mlp::builder(latent, dim)
        .hidden(&[units])
        .activation(Activation::Tanh)
        .build(store, name)
}

/// The augmented field on `[z, Λ]` (`[rows, L + d]`): `(f(z), softplus(g(z)))`, with
/// `θ` the parameters of `f` followed by those of `g` (both networks' views relative to
/// the start of `θ`).
pub fn augmented_field<'t, T: Float>(
    tape: &'t Tape<T>,
    f: &Mlp,
    g: &Mlp,
    latent: usize,
    z_aug: Var<'t, T>,
    theta: Var<'t, T>,
) -> Var<'t, T> {
    let z = z_aug.narrow(1, 0, latent);
    let dz = f.forward(theta, z);
    let lam = g.forward(theta, z).softplus();
    tape.concat(&[dz, lam], 1)
}

/// The log-likelihood of the times, per sample (`[R]`, or `[K, B]` for 4-D inputs):
/// `Σ_{i,d} target · log λ_d(t_i) − Σ_d Λ_d(t_end)`, from the intensities `lam`
/// `[N, R, d]` (or `[N, K, B, d]`) at the union times, the event mask `target`
/// (broadcastable to it) and the integrals `big_lambda` of `lam`'s shape (row `N − 1` is
/// `t_end`).
pub fn times_log_likelihood<'t, T: Float>(
    lam: Var<'t, T>,
    target: Var<'t, T>,
    big_lambda: Var<'t, T>,
) -> Var<'t, T> {
    let s = lam.shape();
    let (n, last) = (s.dim(0), s.rank() - 1);
    let events = (lam.log() * target).sum_axis(last).sum_axis(0);
    let integral = big_lambda.narrow(0, n - 1, 1).sum_axis(last).sum_axis(0);
    events - integral
}

/// `n log λ − λ T`: the log-likelihood of `n` events of a constant-rate `λ` Poisson
/// process on a window of length `T`.
pub fn constant_rate_log_likelihood(n: usize, rate: f64, window: f64) -> f64 {
    n as f64 * rate.ln() - rate * window
}
