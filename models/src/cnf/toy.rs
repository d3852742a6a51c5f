//! The 2-D toy densities of FFJORD's `lib/toy_data.py`, generated in code from a seeded
//! generator, and the Gaussian baseline they are compared with.
//!
//! Each [`ToyDensity`] draws independent points (FFJORD's `inf_train_gen`): a fresh
//! batch per training step, a separate seed for the test set. Where FFJORD calls
//! scikit-learn with evenly spaced angles (`make_moons`, `make_circles`), the angles
//! here are drawn uniformly, which samples the same density.

use autodiff::Float;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, StandardNormal};

use crate::ModelsError;
use crate::datasets::Batch;

/// A 2-D toy density.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToyDensity {
    /// Two interleaved half circles (`make_moons`, noise 0.1, scaled by 2, shifted).
    Moons,
    /// Eight Gaussians (σ = 0.5) on a circle of radius 4, all divided by √2.
    EightGaussians,
    /// Five spiralling arms (radial σ 0.3, tangential σ 0.1, rate 0.25), scaled by 2.
    Pinwheel,
    /// A 4×4 checkerboard on `[−4, 4]²`, half the squares filled.
    Checkerboard,
    /// Four concentric rings (radii 0.75, 1.65, 2.4, 3), noise 0.08.
    Rings,
    /// The swiss roll (`make_swiss_roll`, noise 1, the `(x, z)` plane, divided by 5).
    SwissRoll,
    /// Two circles (`make_circles`, factor 0.5, noise 0.08, scaled by 3).
    Circles,
    /// Two interleaved spirals.
    TwoSpirals,
}

impl ToyDensity {
    /// Every density, in FFJORD's order of names.
    pub const ALL: [ToyDensity; 8] = [
        ToyDensity::Moons,
        ToyDensity::EightGaussians,
        ToyDensity::Pinwheel,
        ToyDensity::Checkerboard,
        ToyDensity::Rings,
        ToyDensity::SwissRoll,
        ToyDensity::Circles,
        ToyDensity::TwoSpirals,
    ];

    /// FFJORD's name (`moons`, `8gaussians`, `pinwheel`, `checkerboard`, `rings`,
    /// `swissroll`, `circles`, `2spirals`).
    pub fn name(self) -> &'static str {
        match self {
            ToyDensity::Moons => "moons",
            ToyDensity::EightGaussians => "8gaussians",
            ToyDensity::Pinwheel => "pinwheel",
            ToyDensity::Checkerboard => "checkerboard",
            ToyDensity::Rings => "rings",
            ToyDensity::SwissRoll => "swissroll",
            ToyDensity::Circles => "circles",
            ToyDensity::TwoSpirals => "2spirals",
        }
    }

    /// The density called `name` (see [`name`](Self::name)); errors listing the names.
    pub fn from_name(name: &str) -> Result<Self, ModelsError> {
        Self::ALL
            .into_iter()
            .find(|d| d.name() == name)
            .ok_or_else(|| ModelsError::InvalidArgument {
                name: "toy density",
                reason: format!(
                    "unknown density `{name}`; choose one of {}",
                    Self::ALL.map(|d| d.name()).join(", ")
                ),
            })
    }

    /// `n` points, row-major `[n, 2]`.
    pub fn sample<T: Float>(self, n: usize, rng: &mut StdRng) -> Vec<T> {
        let mut out = Vec::with_capacity(2 * n);
        let normal = |rng: &mut StdRng| -> f64 { StandardNormal.sample(rng) };
        let pi = std::f64::consts::PI;
        for i in 0..n {
            let (x, y) = match self {
                ToyDensity::Moons => {
                    let a = pi * rng.random::<f64>();
                    let (x, y) = if rng.random::<bool>() {
                        (a.cos(), a.sin())
                    } else {
                        (1.0 - a.cos(), 1.0 - a.sin() - 0.5)
                    };
                    let x = x + 0.1 * normal(rng);
                    let y = y + 0.1 * normal(rng);
                    (2.0 * x - 1.0, 2.0 * y - 0.2)
                }
                ToyDensity::EightGaussians => {
                    let k = rng.random_range(0..8usize);
                    let a = k as f64 * pi / 4.0;
                    let x = 0.5 * normal(rng) + 4.0 * a.cos();
                    let y = 0.5 * normal(rng) + 4.0 * a.sin();
                    (x / 1.414, y / 1.414)
                }
                ToyDensity::Pinwheel => {
                    let k = rng.random_range(0..5usize);
                    let f0 = 0.3 * normal(rng) + 1.0;
                    let f1 = 0.1 * normal(rng);
                    let a = k as f64 * 2.0 * pi / 5.0 + 0.25 * f0.exp();
                    let (s, c) = a.sin_cos();
                    (2.0 * (f0 * c - f1 * s), 2.0 * (f0 * s + f1 * c))
                }
                ToyDensity::Checkerboard => {
                    let x1 = 4.0 * rng.random::<f64>() - 2.0;
                    let x2 = rng.random::<f64>() - 2.0 * f64::from(u8::from(rng.random::<bool>()));
                    let x2 = x2 + x1.floor().rem_euclid(2.0);
                    (2.0 * x1, 2.0 * x2)
                }
                ToyDensity::Rings => {
                    let r = [1.0, 0.8, 0.55, 0.25][i % 4] * 3.0;
                    let a = 2.0 * pi * rng.random::<f64>();
                    (
                        r * a.cos() + 0.08 * normal(rng),
                        r * a.sin() + 0.08 * normal(rng),
                    )
                }
                ToyDensity::SwissRoll => {
                    let t = 1.5 * pi * (1.0 + 2.0 * rng.random::<f64>());
                    let x = t * t.cos() + normal(rng);
                    let z = t * t.sin() + normal(rng);
                    (x / 5.0, z / 5.0)
                }
                ToyDensity::Circles => {
                    let a = 2.0 * pi * rng.random::<f64>();
                    let r = if rng.random::<bool>() { 1.0 } else { 0.5 };
                    (
                        3.0 * (r * a.cos() + 0.08 * normal(rng)),
                        3.0 * (r * a.sin() + 0.08 * normal(rng)),
                    )
                }
                ToyDensity::TwoSpirals => {
                    let m = rng.random::<f64>().sqrt() * 540.0 * 2.0 * pi / 360.0;
                    let x = -m.cos() * m + 0.5 * rng.random::<f64>();
                    let y = m.sin() * m + 0.5 * rng.random::<f64>();
                    let sgn = if rng.random::<bool>() { 1.0 } else { -1.0 };
                    (
                        sgn * x / 3.0 + 0.1 * normal(rng),
                        sgn * y / 3.0 + 0.1 * normal(rng),
                    )
                }
            };
            out.push(T::from_f64_const(x));
            out.push(T::from_f64_const(y));
        }
        out
    }

    /// `n` points from a generator seeded with `seed` (a fixed test set).
    pub fn sample_seeded<T: Float>(self, n: usize, seed: u64) -> Vec<T> {
        self.sample(n, &mut StdRng::seed_from_u64(seed))
    }

    /// A training batch of `n` fresh points (`shape = [n, 1, 1, 2]`, labels 0).
    pub fn batch<T: Float>(self, n: usize, rng: &mut StdRng) -> Batch<T> {
        Batch {
            images: self.sample(n, rng),
            labels: vec![0; n],
            shape: [n, 1, 1, 2],
        }
    }
}

/// A full-covariance Gaussian fitted by maximum likelihood: the baseline a flow must
/// beat.
#[derive(Debug, Clone, PartialEq)]
pub struct GaussianBaseline {
    mean: Vec<f64>,
    /// Lower Cholesky factor of the covariance, row-major `d × d`.
    chol: Vec<f64>,
    dim: usize,
}

impl GaussianBaseline {
    /// Fits mean and covariance of `points` (row-major `[n, dim]`, `n > dim`). Errors if
    /// the sizes do not fit or the covariance is singular.
    pub fn fit<T: Float>(points: &[T], dim: usize) -> Result<Self, ModelsError> {
        if dim == 0 || !points.len().is_multiple_of(dim) || points.len() / dim <= dim {
            return Err(ModelsError::InvalidArgument {
                name: "Gaussian baseline points",
                reason: format!(
                    "need a row-major [n, {dim}] array with n > {dim}, got {} values",
                    points.len()
                ),
            });
        }
        let n = points.len() / dim;
        let mut mean = vec![0.0; dim];
        for row in points.chunks_exact(dim) {
            for (m, v) in mean.iter_mut().zip(row) {
                *m += v.to_f64_lossy() / n as f64;
            }
        }
        let mut cov = vec![0.0; dim * dim];
        for row in points.chunks_exact(dim) {
            for i in 0..dim {
                for j in 0..dim {
                    cov[i * dim + j] += (row[i].to_f64_lossy() - mean[i])
                        * (row[j].to_f64_lossy() - mean[j])
                        / n as f64;
                }
            }
        }
        let mut chol = vec![0.0; dim * dim];
        for i in 0..dim {
            for j in 0..=i {
                let s: f64 = (0..j).map(|k| chol[i * dim + k] * chol[j * dim + k]).sum();
                if i == j {
                    let v = cov[i * dim + i] - s;
                    if v.is_nan() || v <= 0.0 {
                        return Err(ModelsError::InvalidArgument {
                            name: "Gaussian baseline points",
                            reason: "the sample covariance is singular".into(),
                        });
                    }
                    chol[i * dim + i] = v.sqrt();
                } else {
                    chol[i * dim + j] = (cov[i * dim + j] - s) / chol[j * dim + j];
                }
            }
        }
        Ok(Self { mean, chol, dim })
    }

    /// `log N(x; μ, Σ)` of one point.
    pub fn log_density(&self, x: &[f64]) -> f64 {
        let d = self.dim;
        let mut y = vec![0.0; d];
        let mut logdet = 0.0;
        for i in 0..d {
            let s: f64 = (0..i).map(|k| self.chol[i * d + k] * y[k]).sum();
            y[i] = (x[i] - self.mean[i] - s) / self.chol[i * d + i];
            logdet += self.chol[i * d + i].ln();
        }
        -0.5 * y.iter().map(|v| v * v).sum::<f64>()
            - logdet
            - 0.5 * d as f64 * (2.0 * std::f64::consts::PI).ln()
    }

    /// Mean negative log-likelihood of `points` (row-major `[n, dim]`).
    pub fn nll<T: Float>(&self, points: &[T]) -> f64 {
        let mut x = vec![0.0; self.dim];
        let mut s = 0.0;
        let n = points.len() / self.dim;
        for row in points.chunks_exact(self.dim) {
            for (o, v) in x.iter_mut().zip(row) {
                *o = v.to_f64_lossy();
            }
            s -= self.log_density(&x);
        }
        s / n as f64
    }
}
