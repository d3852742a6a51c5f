//! Test support (feature `test-support`, not part of the stable API): hand-written
//! dynamics with exact derivatives and a seeded generator, shared by this crate's tests,
//! benches and examples.
//!
//! * [`Linear`]: `ż = A z` with `θ = A` (row-major): closed-form solution and gradients
//!   through `expm` (Van Loan's block exponential gives `dL/dA`).
//! * [`Mlp`]: the public [`TanhMlp`](crate::TanhMlp) (a batched tanh multilayer
//!   perceptron with hand-written VJP and JVP) under its test name.
//! * [`SplitMix64`]: a tiny deterministic generator for test data.
//! * [`w2_theta`], [`w2_field`], [`w2_states`], [`w2_loss`]: the W2 workload of the
//!   benchmarks (issue 18): the 2→64→64→2 tanh field on the autodiff tape with weights
//!   and biases `N(0,1)·2/√fan_in` ([`w2_forward`] its closure, [`w2_parallel_field`] its
//!   rows over threads), its initial states and loss.
//! * [`thread_cpu_seconds`]: the calling thread's CPU time, for timings on a loaded
//!   machine (benches' examples).

use ode_solvers::Real;

use crate::dynamics::{Dynamics, Vjp};
use crate::error::Result;

/// `ż = A z`, `θ = A` row-major (`n × n`).
#[derive(Debug, Clone)]
pub struct Linear {
    n: usize,
}

impl Linear {
    /// A linear system with `n` states (`n²` parameters).
    pub fn new(n: usize) -> Self {
        Linear { n }
    }
}

impl<T: Real> Dynamics<T> for Linear {
    fn n_states(&self) -> usize {
        self.n
    }
    fn n_params(&self) -> usize {
        self.n * self.n
    }
    #[inline]
    fn eval(&mut self, _t: T, z: &[T], a: &[T], out: &mut [T]) -> Result<()> {
        let n = self.n;
        for i in 0..n {
            out[i] = a[i * n..(i + 1) * n]
                .iter()
                .zip(z)
                .map(|(x, y)| *x * *y)
                .sum();
        }
        Ok(())
    }
}

impl<T: Real> Vjp<T> for Linear {
    fn vjp_z(&mut self, _t: T, _z: &[T], a: &[T], v: &[T], out: &mut [T]) -> Result<()> {
        let n = self.n;
        out.fill(T::zero());
        for i in 0..n {
            for j in 0..n {
                out[j] += v[i] * a[i * n + j];
            }
        }
        Ok(())
    }
    fn vjp_theta(&mut self, _t: T, z: &[T], _a: &[T], v: &[T], out: &mut [T]) -> Result<()> {
        let n = self.n;
        for i in 0..n {
            for j in 0..n {
                out[i * n + j] = v[i] * z[j];
            }
        }
        Ok(())
    }
    fn vjp_t(&mut self, _t: T, _z: &[T], _a: &[T], _v: &[T]) -> Result<T> {
        Ok(T::zero())
    }
    fn has_jvp(&self) -> bool {
        true
    }
    fn jvp(&mut self, _t: T, z: &[T], a: &[T], vz: &[T], va: &[T], out: &mut [T]) -> Result<()> {
        let n = self.n;
        for i in 0..n {
            let mut acc = T::zero();
            for j in 0..n {
                acc += a[i * n + j] * vz[j] + va[i * n + j] * z[j];
            }
            out[i] = acc;
        }
        Ok(())
    }
}

pub use crate::mlp::TanhMlp as Mlp;
pub use crate::rng::SplitMix64;

/// Widths of the W2 field's layers.
pub const W2_WIDTHS: [usize; 4] = [2, 64, 64, 2];

/// Parameters of the W2 field: 4,482.
pub const W2_PARAMS: usize = 2 * 64 + 64 + 64 * 64 + 64 + 64 * 2 + 2;

/// The W2 parameters drawn from `seed`: per layer the weights (`in × out`, row-major),
/// then the biases, every one `N(0,1)·2/√fan_in` ([`SplitMix64::normal`]).
pub fn w2_theta(seed: u64) -> Vec<f64> {
    let w = W2_WIDTHS;
    let mut rng = SplitMix64::new(seed);
    let mut th = Vec::with_capacity(W2_PARAMS);
    for l in 0..3 {
        let r = 2.0 / (w[l] as f64).sqrt();
        for _ in 0..(w[l] + 1) * w[l + 1] {
            th.push(r * rng.normal());
        }
    }
    th
}

/// CPU time of the calling thread in seconds, from `/proc/thread-self/schedstat` (`NaN`
/// where that is unavailable): on a machine shared with other work it moves far less
/// than wall time, so before/after comparisons stay meaningful. It advances by scheduler
/// ticks: average it over many calls.
pub fn thread_cpu_seconds() -> f64 {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    let ns: f64 = s
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN);
    ns * 1e-9
}

/// The W2 workload's initial states: `batch × 2` values uniform in `[−1, 1]`
/// ([`SplitMix64`] seed 2).
pub fn w2_states(batch: usize) -> Vec<f64> {
    let mut rng = SplitMix64::new(2);
    (0..batch * W2_WIDTHS[0])
        .map(|_| rng.uniform_pm1())
        .collect()
}

/// The W2 workload's loss as [`crate::AdjointSolver::value_and_grad`] takes it: the mean
/// of `z²` over the solution's values after the first `n` (the first output time's
/// states, `batch × 2`), with its gradient written into those entries of `dl`.
pub fn w2_loss(n: usize) -> impl FnMut(&[f64], &mut [f64]) -> f64 {
    move |zs, dl| {
        let (zs, dl) = (&zs[n..], &mut dl[n..]);
        let m = zs.len() as f64;
        for (g, z) in dl.iter_mut().zip(zs) {
            *g = 2.0 * z / m;
        }
        zs.iter().map(|z| z * z).sum::<f64>() / m
    }
}

/// The W2 field `f(z) = tanh(tanh(z W₁ + b₁) W₂ + b₂) W₃ + b₃` on a `[batch, 2]` state,
/// with the layout of [`w2_theta`].
#[cfg(feature = "tape")]
pub fn w2_field(batch: usize) -> Result<impl Vjp<f64>> {
    crate::TapeDynamics::new(&[batch, W2_WIDTHS[0]], W2_PARAMS, w2_forward())
}

/// The forward pass of [`w2_field`] as a closure (for [`crate::TapeDynamics`] and
/// [`crate::ParallelTapeDynamics`]).
#[cfg(feature = "tape")]
pub fn w2_forward() -> impl for<'t> Fn(
    &'t autodiff::Tape<f64>,
    autodiff::Var<'t, f64>,
    autodiff::Var<'t, f64>,
    autodiff::Var<'t, f64>,
) -> autodiff::Var<'t, f64>
+ Clone
+ Send
+ Sync {
    let [d, h, _, _] = W2_WIDTHS;
    move |_tape, _t, z, th| {
        let (o1, o2) = (d * h + h, d * h + h + h * h + h);
        let a = (z.matmul(th.view(0, &[d, h])) + th.view(d * h, &[h])).tanh();
        let a = (a.matmul(th.view(o1, &[h, h])) + th.view(o1 + h * h, &[h])).tanh();
        a.matmul(th.view(o2, &[h, d])) + th.view(o2 + h * d, &[d])
    }
}

/// [`w2_field`] with its batch rows split over `threads` threads
/// ([`crate::ParallelTapeDynamics::with_threads`]: 0 = rayon's global pool).
#[cfg(feature = "parallel")]
pub fn w2_parallel_field(batch: usize, threads: usize) -> Result<impl Vjp<f64>> {
    crate::ParallelTapeDynamics::new(&[batch, W2_WIDTHS[0]], W2_PARAMS, w2_forward())?
        .with_threads(threads)
}
