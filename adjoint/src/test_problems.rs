//! Test support (feature `test-support`, not part of the stable API): hand-written
//! dynamics with exact derivatives and a seeded generator, shared by this crate's tests,
//! benches and examples.
//!
//! * [`Linear`]: `ż = A z` with `θ = A` (row-major): closed-form solution and gradients
//!   through `expm` (Van Loan's block exponential gives `dL/dA`).
//! * [`Mlp`]: the public [`TanhMlp`](crate::TanhMlp) (a batched tanh multilayer
//!   perceptron with hand-written VJP and JVP) under its test name.
//! * [`SplitMix64`]: a tiny deterministic generator for test data.

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
