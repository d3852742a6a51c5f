//! The divergence `tr(∂f/∂z)` of a field inside a forward pass, exact or by Hutchinson's
//! estimator, written with the tape's recorded backward pass so that it can itself be
//! differentiated (the adjoint of a CNF needs `∂/∂z` and `∂/∂θ` of the trace).
//!
//! For `f: ℝ^{B×d} → ℝ^{B×d}` acting row by row (a batch of independent samples), one
//! recorded vector–Jacobian product `g = vᵀ ∂f/∂z` ([`Tape::backward_graph`]) gives for
//! every row `b` the vector `g_b = v_bᵀ J_b`, `J_b = ∂f_b/∂z_b`. Then
//!
//! * exact: with `v = e_i` (ones in column `i`), `tr J_b = Σ_i (g^{(i)}_b)_i`: `d`
//!   products, and `‖J_b‖_F² = Σ_i ‖g^{(i)}_b‖²` comes for free;
//! * Hutchinson: with `v = ε` (Rademacher `±1` or standard Gaussian entries, `E[εεᵀ] = I`),
//!   `ε_bᵀ J_b ε_b` is an unbiased estimate of `tr J_b` from one product, and
//!   `‖ε_bᵀ J_b‖²` one of `‖J_b‖_F²` (RNODE's Jacobian regulariser).
//!
//! For Rademacher noise the estimator's variance is `½ Σ_{i≠j} (J_ij + J_ji)²` (zero for
//! diagonal Jacobians); for Gaussian noise `½ Σ_{i,j} (J_ij + J_ji)²`.

use autodiff::{Float, Tape, Var};
use rand::RngExt;
use rand_distr::{Distribution, StandardNormal};

/// The distribution of Hutchinson's probe vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Noise {
    /// `±1` with probability ½ each (lowest variance; FFJORD's `--rademacher True`).
    #[default]
    Rademacher,
    /// Standard normal entries (FFJORD's default `--rademacher False`).
    Gaussian,
}

impl Noise {
    /// Fills `out` with independent draws.
    pub fn fill<T: Float, R: rand::Rng + ?Sized>(self, rng: &mut R, out: &mut [T]) {
        match self {
            Noise::Rademacher => {
                for o in out {
                    *o = if rng.random::<bool>() {
                        T::one()
                    } else {
                        -T::one()
                    };
                }
            }
            Noise::Gaussian => {
                for o in out {
                    let x: f64 = StandardNormal.sample(rng);
                    *o = T::from_f64_const(x);
                }
            }
        }
    }
}

/// How the divergence `tr(∂f/∂z)` is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Divergence {
    /// The exact trace from `d` vector–Jacobian products (one per dimension): for small
    /// `d` (FFJORD's `brute_force`, the default of its 2-D experiments).
    Exact,
    /// Hutchinson's estimator `εᵀ(∂f/∂z)ε` from one product, `ε` drawn once per solve.
    Hutchinson(Noise),
}

impl Divergence {
    /// Whether the estimator needs a probe vector.
    pub fn needs_noise(self) -> bool {
        matches!(self, Divergence::Hutchinson(_))
    }

    /// A short name (`"exact"`, `"hutchinson-rademacher"`, `"hutchinson-gaussian"`).
    pub fn name(self) -> &'static str {
        match self {
            Divergence::Exact => "exact",
            Divergence::Hutchinson(Noise::Rademacher) => "hutchinson-rademacher",
            Divergence::Hutchinson(Noise::Gaussian) => "hutchinson-gaussian",
        }
    }
}

/// The trace estimate and `‖vᵀJ‖²` of one row-wise field evaluation.
#[derive(Debug, Clone, Copy)]
pub struct TraceTerms<'t, T: Float> {
    /// `tr J_b` (exact or estimated), shape `[batch]`.
    pub trace: Var<'t, T>,
    /// `‖J_b‖_F²` (exact) or `‖ε_bᵀ J_b‖²` (Hutchinson), shape `[batch]`; `None` unless
    /// asked for.
    pub frobenius: Option<Var<'t, T>>,
}

/// The probes of one evaluation: the `d` one-hot seeds (exact) or `ε` (Hutchinson).
#[derive(Debug, Clone, Copy)]
pub enum Probes<'a, 't, T: Float> {
    /// Row-major `[batch, d]` one-hot matrices, one per column (`d` of them).
    Exact(&'a [Vec<T>]),
    /// `ε`, shape `[batch, d]`, already on the tape.
    Hutchinson(Var<'t, T>),
}

/// The `d` one-hot seed matrices `[batch, d]` of the exact trace.
pub fn one_hot_seeds<T: Float>(batch: usize, dim: usize) -> Vec<Vec<T>> {
    (0..dim)
        .map(|i| {
            let mut m = vec![T::zero(); batch * dim];
            for b in 0..batch {
                m[b * dim + i] = T::one();
            }
            m
        })
        .collect()
}

/// The trace of `∂f/∂z` (and optionally the Frobenius term) for `f = dz` computed from
/// `z` (both `[batch, d]`) on `tape`, recorded so that the result can be differentiated
/// again. Recording must be on and `z` must require a gradient (a leaf or computed
/// from one). Errors of the tape's recorded backward pass are returned.
pub fn divergence<'t, T: Float>(
    tape: &'t Tape<T>,
    dz: Var<'t, T>,
    z: Var<'t, T>,
    probes: Probes<'_, 't, T>,
    frobenius: bool,
) -> Result<TraceTerms<'t, T>, autodiff::Error> {
    let dims = z.shape();
    match probes {
        Probes::Exact(seeds) => {
            let mut trace: Option<Var<'t, T>> = None;
            let mut frob: Option<Var<'t, T>> = None;
            for seed in seeds {
                let e = tape.constant(seed, dims.dims())?;
                tape.backward_graph(dz, e)?;
                let g = tape.gradient(z)?;
                let tr = (g * e).sum_axis(1);
                trace = Some(trace.map_or(tr, |a| a + tr));
                if frobenius {
                    let f = g.square().sum_axis(1);
                    frob = Some(frob.map_or(f, |a| a + f));
                }
            }
            let trace = trace.ok_or(autodiff::Error::LengthMismatch {
                what: "exact-trace seeds (one per dimension)",
                expected: dims.dims().get(1).copied().unwrap_or(0),
                found: 0,
            })?;
            Ok(TraceTerms {
                trace,
                frobenius: frob,
            })
        }
        Probes::Hutchinson(eps) => {
            tape.backward_graph(dz, eps)?;
            let g = tape.gradient(z)?;
            Ok(TraceTerms {
                trace: (g * eps).sum_axis(1),
                frobenius: frobenius.then(|| g.square().sum_axis(1)),
            })
        }
    }
}
