//! The basis: `K` MLP vector fields `f_i : ℝ² → ℝ²` and, in the residual variant, a
//! shared average field `f₀`, combined as
//!
//! ```text
//! dz/dt = f₀(z) + Σ_{i=1}^{K} α_i f_i(z)        (f₀ = 0 without the residual),
//! ```
//!
//! with all their parameters in one [`ParamStore`] (`basis.{i}.{layer}.weight`, …,
//! `average.{layer}.weight`, PyTorch's `nn.Sequential` names). The combined field is an
//! [`OdeBlock`](crate::OdeBlock) field whose parameter input is the concatenation
//! `[θ, α]` (the store's flat buffer, then the `K` coefficients), so one adjoint pass
//! gives the gradient with respect to the basis parameters and to the coefficients.
//!
//! `K = 0` with the residual is a plain Neural ODE `dz/dt = f₀(z)`: the baselines (one
//! Neural ODE on all systems, an oracle on one system) are this case.

use autodiff::nn::{Mlp, ParamStore};
use autodiff::{Tape, Var};

use super::systems::DIM;
use crate::ModelsError;

/// The shape of a basis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BasisConfig {
    /// Number of basis fields `K`.
    pub k: usize,
    /// Width of each hidden layer.
    pub hidden: usize,
    /// Number of hidden layers (tanh) per field (≥ 1).
    pub layers: usize,
    /// Adds the shared average field `f₀` (the residual variant).
    pub residual: bool,
    /// Seed of the initialisation.
    pub seed: u64,
}

impl BasisConfig {
    /// `k` fields of two hidden layers of `hidden` units, no residual, seed 0.
    pub fn new(k: usize, hidden: usize) -> Self {
        Self {
            k,
            hidden,
            layers: 2,
            residual: false,
            seed: 0,
        }
    }

    /// The residual variant on or off (builder form).
    pub fn residual(mut self, on: bool) -> Self {
        self.residual = on;
        self
    }

    /// The seed (builder form).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
}

/// The basis fields and the average field, as networks over views of a flat parameter
/// vector (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq)]
pub struct Basis {
    config: BasisConfig,
    fields: Vec<Mlp>,
    average: Option<Mlp>,
    n_params: usize,
}

impl Basis {
    /// Registers the networks of `config` in a new store (seeded by `config.seed`) and
    /// returns both. Errors if there is no field at all (`K = 0` without residual), no
    /// hidden unit or no hidden layer.
    pub fn new(config: BasisConfig) -> Result<(Self, ParamStore<f64>), ModelsError> {
        if (config.k == 0 && !config.residual) || config.hidden == 0 || config.layers == 0 {
            return Err(ModelsError::InvalidArgument {
                name: "basis",
                reason: format!(
                    "need K ≥ 1 fields or the residual average field, and hidden layers of ≥ 1 unit; got K = {}, {} layers of {}, residual {}",
                    config.k, config.layers, config.hidden, config.residual
                ),
            });
        }
        let mut store = ParamStore::new(config.seed);
        let builder = Mlp::builder(DIM, DIM).hidden(&vec![config.hidden; config.layers]);
        let average = if config.residual {
            Some(builder.build(&mut store, "average")?)
        } else {
            None
        };
        let fields = (0..config.k)
            .map(|i| builder.build(&mut store, &format!("basis.{i}")))
            .collect::<Result<Vec<_>, _>>()?;
        let n_params = store.n_params();
        Ok((
            Self {
                config,
                fields,
                average,
                n_params,
            },
            store,
        ))
    }

    /// The configuration.
    pub fn config(&self) -> BasisConfig {
        self.config
    }

    /// Number of basis fields `K`.
    pub fn k(&self) -> usize {
        self.config.k
    }

    /// Whether the average field is present.
    pub fn is_residual(&self) -> bool {
        self.average.is_some()
    }

    /// Number of network parameters (the length of `θ`).
    pub fn n_params(&self) -> usize {
        self.n_params
    }

    /// Field `i` at the states `z` (`[B, 2]`), from `theta` (at least `n_params` long).
    pub fn field<'t>(&self, i: usize, theta: Var<'t, f64>, z: Var<'t, f64>) -> Var<'t, f64> {
        self.fields[i].forward(theta, z)
    }

    /// The average field at `z`, if the basis has one.
    pub fn average<'t>(&self, theta: Var<'t, f64>, z: Var<'t, f64>) -> Option<Var<'t, f64>> {
        self.average.as_ref().map(|f| f.forward(theta, z))
    }

    /// The combined field `f₀(z) + Σ α_i f_i(z)` at `z` (`[B, 2]`), where `theta_alpha`
    /// is `[θ, α]` (`n_params + K` values): the ODE block's field.
    pub fn combined<'t>(&self, theta_alpha: Var<'t, f64>, z: Var<'t, f64>) -> Var<'t, f64> {
        let p = self.n_params;
        let mut out = self.average(theta_alpha, z);
        for (i, f) in self.fields.iter().enumerate() {
            let term = f.forward(theta_alpha, z) * theta_alpha.view(p + i, &[1]);
            out = Some(match out {
                Some(o) => o + term,
                None => term,
            });
        }
        // `new` guarantees at least one network.
        out.unwrap_or(z)
    }

    /// The values of every basis field at the points `xs` (`m × 2`, row-major) as the
    /// `K × (m · 2)` matrix `Φ` of [`coefficients`](super::coefficients), and the average
    /// field's values (`m · 2`, zeros without the residual), from the flat parameters
    /// `theta`; computed on a tape without recording.
    pub fn values(&self, theta: &[f64], xs: &[f64]) -> Result<(Vec<f64>, Vec<f64>), ModelsError> {
        let m = xs.len() / DIM;
        if xs.len() != m * DIM || m == 0 || theta.len() < self.n_params {
            return Err(ModelsError::InvalidArgument {
                name: "basis points",
                reason: format!(
                    "need m x {DIM} point values (got {}) and {} parameters (got {})",
                    xs.len(),
                    self.n_params,
                    theta.len()
                ),
            });
        }
        let tape = Tape::new();
        tape.set_recording(false);
        let th = tape.constant(theta, &[theta.len()])?;
        let x = tape.constant(xs, &[m, DIM])?;
        let mut phi = Vec::with_capacity(self.k() * xs.len());
        for f in &self.fields {
            phi.extend(f.forward(th, x).value()?);
        }
        let avg = match self.average(th, x) {
            Some(a) => a.value()?,
            None => vec![0.0; xs.len()],
        };
        Ok((phi, avg))
    }
}
