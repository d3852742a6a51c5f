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
    f: &super::decoder::LatentField,
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

/// Per-series log-likelihood of the events `events` (`[N, B, d]`, 1 where component `d`
/// of series `b` is observed at union time `i`) in the window from union time `from` to
/// the last one, under a Poisson process of intensity `thin · λ`, from the intensities
/// `lam` and their integrals `big_lambda` (`[N, B, d]` each, `Λ` counted from any fixed
/// origin): `Σ_{i ≥ from, d} events · log(thin λ_d(t_i)) − thin Σ_d (Λ_d(t_{N−1}) −
/// Λ_d(t_from))`. Events before `from` are not counted.
///
/// `thin < 1` scores a random subset of the events kept independently with probability
/// `thin` (e.g. the values held out for interpolation): a `thin`-thinned Poisson process
/// is a Poisson process of intensity `thin · λ`, independent of the other events.
pub fn window_log_likelihood<T: Float>(
    lam: &[T],
    big_lambda: &[T],
    events: &[T],
    batch: usize,
    dim: usize,
    from: usize,
    thin: f64,
) -> Vec<f64> {
    let row = batch * dim;
    let n = lam.len() / row.max(1);
    let mut out = vec![0.0; batch];
    if n == 0 || from >= n {
        return out;
    }
    let ln_thin = thin.ln();
    for i in from..n {
        for b in 0..batch {
            for c in 0..dim {
                let k = i * row + b * dim + c;
                if events[k] != T::zero() {
                    out[b] += ln_thin + lam[k].to_f64_lossy().ln();
                }
            }
        }
    }
    for (b, o) in out.iter_mut().enumerate() {
        for c in 0..dim {
            let end = big_lambda[(n - 1) * row + b * dim + c].to_f64_lossy();
            let start = big_lambda[from * row + b * dim + c].to_f64_lossy();
            *o -= thin * (end - start);
        }
    }
    out
}

/// A homogeneous Poisson process per component fitted by maximum likelihood to the
/// observation times of `data`: `λ_d = (events of component d) / (number of series ·
/// window)`, the window being the data set's whole time range (the baseline a model
/// without a model of the times implies at best). `None` for an empty set or a window of
/// length 0.
pub fn constant_rates<T: Float>(data: &super::data::IrregularDataset<T>) -> Option<Vec<f64>> {
    let dim = data.dim();
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    let mut counts = vec![0.0; dim];
    for s in data.series() {
        lo = lo.min(s.times[0].to_f64_lossy());
        hi = hi.max(s.times[s.times.len() - 1].to_f64_lossy());
        for (k, &o) in s.observed.iter().enumerate() {
            if o {
                counts[k % dim] += 1.0;
            }
        }
    }
    let window = (hi - lo) * data.len() as f64;
    (window > 0.0).then(|| counts.iter().map(|&c| c / window).collect())
}

/// The constant intensities `rates` (one per component) and their integrals from the
/// first union time, in the layout of [`window_log_likelihood`] (`[N, B, d]` each).
pub fn constant_intensity<T: Float>(rates: &[f64], times: &[T], batch: usize) -> (Vec<T>, Vec<T>) {
    let dim = rates.len();
    let t0 = times.first().map_or(0.0, |t| t.to_f64_lossy());
    let mut lam = Vec::with_capacity(times.len() * batch * dim);
    let mut big = Vec::with_capacity(times.len() * batch * dim);
    for &t in times {
        let dt = t.to_f64_lossy() - t0;
        for _ in 0..batch {
            for &r in rates {
                lam.push(T::from_f64_const(r));
                big.push(T::from_f64_const(r * dt));
            }
        }
    }
    (lam, big)
}
