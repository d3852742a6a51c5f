//! Coefficients of a system in a basis of fields, from demonstrations and without any
//! gradient step.
//!
//! # Velocities from irregular samples
//!
//! A demonstration gives states `y_k = z(t_k)` at irregular times, not velocities. Two
//! estimates of `v_k ≈ ż(t_k)`, per trajectory:
//!
//! * [`VelocityEstimate::FiniteDifference`]: the derivative at `t_k` of the quadratic
//!   through three neighbouring samples. With `h₁ = t_k − t_{k−1}`, `h₂ = t_{k+1} − t_k`,
//!
//!   ```text
//!   v_k = −h₂/(h₁(h₁+h₂)) y_{k−1} + (h₂−h₁)/(h₁h₂) y_k + h₁/(h₂(h₁+h₂)) y_{k+1},
//!   ```
//!
//!   and the one-sided three-point formulas at the ends: second order on any grid,
//!   exact for quadratics.
//! * [`VelocityEstimate::LocalQuadratic`]: the slope at `t_k` of the least-squares
//!   quadratic through the `2w + 1` nearest samples (fewer at the ends): a smoothed fit
//!   that averages observation noise (Savitzky–Golay on an irregular grid).
//!
//! # Coefficients
//!
//! With the inner product of fields over the `m` demonstration points
//! `⟨f, g⟩ = (1/m) Σ_j f(x_j) · g(x_j)`, the basis values `Φ_i = (f_i(x_j))_j`, the Gram
//! matrix `G_{ik} = ⟨f_i, f_k⟩` and `b_i = ⟨v, f_i⟩` (`v` the velocities, less the average
//! field in the residual variant):
//!
//! * [`CoefficientMethod::InnerProduct`]: `α = b`, exact for an orthonormal basis;
//! * [`CoefficientMethod::LeastSquares`]: `α = (G + λI)⁻¹ b`, the minimiser of
//!   `(1/m) Σ_j ‖v_j − Σ_i α_i f_i(x_j)‖² + λ‖α‖²`, by a Cholesky factorisation
//!   (nalgebra) of the `K × K` system.
//!
//! [`gram_solve`] is the least-squares solve as one operation on the autodiff tape, so a
//! training loss is differentiable through the coefficients: for `α = (Ḡ + λI)⁻¹ b` with
//! `Ḡ = (G + Gᵀ)/2` and an output gradient `ᾱ`, `w = (Ḡ + λI)⁻¹ ᾱ`, the VJPs are
//! `b̄ = w` and `Ḡ = −(w αᵀ + α wᵀ)/2`.

use std::sync::Arc;

use autodiff::{CustomOp, CustomOpError, Error as AdError, Shape, Tape, Var};
use nalgebra::{DMatrix, DVector};

use super::systems::{DIM, Demonstrations};
use crate::ModelsError;

/// How demonstration velocities are estimated from the samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VelocityEstimate {
    /// Three-point finite differences on the irregular grid.
    FiniteDifference,
    /// Slope of a local least-squares quadratic over `2 half_width + 1` samples
    /// (`half_width ≥ 1`).
    LocalQuadratic {
        /// Samples on each side of the point.
        half_width: usize,
    },
}

/// How coefficients are computed from the basis values and the velocities.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CoefficientMethod {
    /// `α_i = ⟨v, f_i⟩` (assumes an orthonormal basis).
    InnerProduct,
    /// `α = (G + λI)⁻¹ b` (regularised least squares through the Gram matrix).
    LeastSquares {
        /// Ridge `λ ≥ 0`.
        lambda: f64,
    },
}

/// The velocity estimates of every sample of `demo`, in its layout
/// `[n_times, n_traj, 2]`.
pub fn velocities(demo: &Demonstrations, how: VelocityEstimate) -> Result<Vec<f64>, ModelsError> {
    demo.validate()?;
    let (n, b) = (demo.n_times(), demo.n_traj);
    let ts = &demo.ts;
    let mut v = vec![0.0; demo.states.len()];
    let at = |k: usize, j: usize, d: usize| demo.states[(k * b + j) * DIM + d];
    match how {
        VelocityEstimate::FiniteDifference => {
            for k in 0..n {
                let w = three_point_weights(ts, k);
                for j in 0..b {
                    for d in 0..DIM {
                        v[(k * b + j) * DIM + d] = w.iter().map(|&(i, c)| c * at(i, j, d)).sum();
                    }
                }
            }
        }
        VelocityEstimate::LocalQuadratic { half_width } => {
            if half_width == 0 {
                return Err(ModelsError::InvalidArgument {
                    name: "velocity half width",
                    reason: "a local quadratic needs at least one neighbour per side".into(),
                });
            }
            let mut w = Vec::new();
            for k in 0..n {
                local_quadratic_weights(ts, k, half_width, &mut w)?;
                for j in 0..b {
                    for d in 0..DIM {
                        v[(k * b + j) * DIM + d] = w.iter().map(|&(i, c)| c * at(i, j, d)).sum();
                    }
                }
            }
        }
    }
    Ok(v)
}

/// Weights `(index, c)` of the three-point derivative at `ts[k]` (needs `ts.len() ≥ 3`).
fn three_point_weights(ts: &[f64], k: usize) -> [(usize, f64); 3] {
    let n = ts.len();
    if k == 0 || k == n - 1 {
        // One-sided: derivative at t_k of the quadratic through t_k and the next two
        // (or previous two) samples.
        let (i0, i1, i2) = if k == 0 {
            (0, 1, 2)
        } else {
            (n - 1, n - 2, n - 3)
        };
        let (d1, d2) = (ts[i1] - ts[i0], ts[i2] - ts[i0]);
        // Lagrange basis derivatives at t_{i0}.
        let c1 = d2 / (d1 * (d2 - d1));
        let c2 = -d1 / (d2 * (d2 - d1));
        return [(i0, -(c1 + c2)), (i1, c1), (i2, c2)];
    }
    let (h1, h2) = (ts[k] - ts[k - 1], ts[k + 1] - ts[k]);
    [
        (k - 1, -h2 / (h1 * (h1 + h2))),
        (k, (h2 - h1) / (h1 * h2)),
        (k + 1, h1 / (h2 * (h1 + h2))),
    ]
}

/// Weights of the slope at `ts[k]` of the least-squares quadratic over the window of
/// `2w + 1` samples around `k` (shifted inside the grid at the ends).
fn local_quadratic_weights(
    ts: &[f64],
    k: usize,
    w: usize,
    out: &mut Vec<(usize, f64)>,
) -> Result<(), ModelsError> {
    let n = ts.len();
    let len = (2 * w + 1).min(n);
    let start = k.saturating_sub(w).min(n - len);
    // Design matrix rows [1, s, s²] with s = t_i − t_k (scaled for conditioning); the
    // slope is e₁ᵀ (AᵀA)⁻¹ Aᵀ y, so the weights are the row e₁ᵀ (AᵀA)⁻¹ Aᵀ.
    let scale = (ts[start + len - 1] - ts[start]).max(f64::MIN_POSITIVE);
    let a = DMatrix::from_fn(len, 3, |r, c| {
        ((ts[start + r] - ts[k]) / scale).powi(c as i32)
    });
    let ata = a.transpose() * &a;
    let chol = ata.cholesky().ok_or_else(|| ModelsError::InvalidArgument {
        name: "velocity fit",
        reason: format!("the local quadratic around sample {k} is singular"),
    })?;
    let e1 = chol.solve(&DVector::from_column_slice(&[0.0, 1.0, 0.0]));
    let row = &a * e1;
    out.clear();
    out.extend((0..len).map(|r| (start + r, row[r] / scale)));
    Ok(())
}

/// The Gram matrix `G = Φ Φᵀ / m` (`K × K`, row-major) of the basis values `phi`
/// (`K` rows of `m · dim` values: field `i` at every point, point-major).
pub fn gram(phi: &[f64], k: usize, m: usize) -> Vec<f64> {
    let n = phi.len() / k.max(1);
    let mut g = vec![0.0; k * k];
    for i in 0..k {
        for l in 0..=i {
            let s: f64 = phi[i * n..(i + 1) * n]
                .iter()
                .zip(&phi[l * n..(l + 1) * n])
                .map(|(a, b)| a * b)
                .sum::<f64>()
                / m as f64;
            g[i * k + l] = s;
            g[l * k + i] = s;
        }
    }
    g
}

/// The projections `b_i = ⟨v, f_i⟩ = Φ_i · v / m`.
pub fn project(phi: &[f64], v: &[f64], k: usize, m: usize) -> Vec<f64> {
    let n = v.len();
    (0..k)
        .map(|i| {
            phi[i * n..(i + 1) * n]
                .iter()
                .zip(v)
                .map(|(a, b)| a * b)
                .sum::<f64>()
                / m as f64
        })
        .collect()
}

/// Solves `(sym(G) + λI) α = b` by Cholesky (`G` row-major `K × K`); errors if the
/// regularised Gram matrix is not positive definite (linearly dependent basis values
/// with `λ = 0`) or has non-finite entries.
pub fn solve_gram(g: &[f64], b: &[f64], lambda: f64) -> Result<Vec<f64>, ModelsError> {
    let k = b.len();
    if g.len() != k * k || !(lambda.is_finite() && lambda >= 0.0) {
        return Err(ModelsError::InvalidArgument {
            name: "gram solve",
            reason: format!(
                "need a {k}x{k} Gram matrix ({} entries given) and a finite ridge ≥ 0 (got {lambda})",
                g.len()
            ),
        });
    }
    if let Some(i) = g.iter().chain(b).position(|x| !x.is_finite()) {
        return Err(ModelsError::NonFinite {
            what: "Gram matrix or projection",
            index: i,
        });
    }
    let m = DMatrix::from_fn(k, k, |r, c| {
        0.5 * (g[r * k + c] + g[c * k + r]) + if r == c { lambda } else { 0.0 }
    });
    let chol = m.cholesky().ok_or_else(|| ModelsError::InvalidArgument {
        name: "gram matrix",
        reason: format!(
            "G + {lambda}·I is not positive definite: the basis values at the demonstration points are linearly dependent; use a ridge λ > 0 or more points"
        ),
    })?;
    Ok(chol
        .solve(&DVector::from_column_slice(b))
        .as_slice()
        .to_vec())
}

/// The coefficients of velocities `v` (`m · dim` values) in the basis with values `phi`
/// (`K × m · dim`), by `method`.
pub fn coefficients(
    phi: &[f64],
    v: &[f64],
    k: usize,
    m: usize,
    method: CoefficientMethod,
) -> Result<Vec<f64>, ModelsError> {
    if k == 0 || m == 0 || phi.len() != k * v.len() {
        return Err(ModelsError::InvalidArgument {
            name: "coefficients",
            reason: format!(
                "basis values of length {} do not match {k} fields x {} velocity values",
                phi.len(),
                v.len()
            ),
        });
    }
    let b = project(phi, v, k, m);
    match method {
        CoefficientMethod::InnerProduct => Ok(b),
        CoefficientMethod::LeastSquares { lambda } => solve_gram(&gram(phi, k, m), &b, lambda),
    }
}

/// The least-squares solve `α = (sym(G) + λI)⁻¹ b` as a tape operation (see the module
/// docs for its VJP).
#[derive(Debug, Clone, Copy)]
pub struct GramSolve {
    k: usize,
    lambda: f64,
}

impl GramSolve {
    /// The operation for `K × K` systems with ridge `λ`.
    pub fn new(k: usize, lambda: f64) -> Self {
        Self { k, lambda }
    }
}

fn op_failed(e: ModelsError) -> AdError {
    AdError::CustomOpFailed {
        op: "gram_solve",
        source: CustomOpError::new(e),
    }
}

impl CustomOp<f64> for GramSolve {
    fn name(&self) -> &'static str {
        "gram_solve"
    }

    fn output_shape(&self, inputs: &[Shape]) -> Result<Shape, AdError> {
        let k = self.k;
        match inputs {
            [g, b] if g.len() == k * k && b.len() == k => Shape::new(&[k]),
            _ => Err(AdError::InvalidArgument {
                op: "gram_solve",
                shape: inputs.first().copied().unwrap_or(Shape::scalar()),
                reason: "takes a K x K Gram matrix and K projections",
            }),
        }
    }

    fn forward(&self, inputs: &[&[f64]], out: &mut [f64]) {
        if self.try_forward(inputs, out).is_err() {
            out.fill(f64::NAN);
        }
    }

    fn try_forward(&self, inputs: &[&[f64]], out: &mut [f64]) -> Result<(), AdError> {
        let a = solve_gram(inputs[0], inputs[1], self.lambda).map_err(op_failed)?;
        out.copy_from_slice(&a);
        Ok(())
    }

    fn backward_all(
        &self,
        inputs: &[&[f64]],
        out: &[f64],
        grad_out: &[f64],
        grad_inputs: &mut [Option<&mut [f64]>],
    ) -> Result<(), AdError> {
        let k = self.k;
        let w = solve_gram(inputs[0], grad_out, self.lambda).map_err(op_failed)?;
        if let Some(gg) = grad_inputs[0].as_deref_mut() {
            for r in 0..k {
                for c in 0..k {
                    gg[r * k + c] -= 0.5 * (w[r] * out[c] + out[r] * w[c]);
                }
            }
        }
        if let Some(gb) = grad_inputs[1].as_deref_mut() {
            for (d, s) in gb.iter_mut().zip(&w) {
                *d += s;
            }
        }
        Ok(())
    }
}

/// `α = (sym(G) + λI)⁻¹ b` on the tape: `g` of `K × K` entries, `b` of `K`; returns
/// shape `[K]`. A failed solve is recorded on the tape.
pub fn gram_solve<'t>(g: Var<'t, f64>, b: Var<'t, f64>, lambda: f64) -> Var<'t, f64> {
    let k = b.len();
    let op: Arc<dyn CustomOp<f64>> = Arc::new(GramSolve::new(k, lambda));
    let tape: &'t Tape<f64> = g.tape();
    tape.custom(&op, &[g, b])
}
