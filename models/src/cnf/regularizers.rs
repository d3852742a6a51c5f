//! RNODE regularisers (Finlay, Jacobsen, Nurbekyan & Oberman 2020, "How to train your
//! neural ODE"), carried as extra channels of the CNF's state.
//!
//! Along the flow `ż = f(t, z)` of every sample, the state gains
//!
//! ```text
//! Ė = ‖f(t, z)‖²            (kinetic energy; E(0) = 0),
//! Ṙ = ‖εᵀ ∂f/∂z (t, z)‖²     (Jacobian Frobenius norm, Hutchinson; exactly ‖∂f/∂z‖_F²
//!                             with the exact trace),
//! ```
//!
//! and the loss becomes `NLL + λ_K mean_b E_b(T) + λ_J mean_b R_b(T)`. Both integrals use
//! the VJP the trace already computes, so they add a few elementwise operations per
//! evaluation. The channels are excluded from the forward solver's error control, as
//! FFJORD's code does with an absolute tolerance of `10²⁰` on them: they are outputs,
//! not dynamics.

use crate::ModelsError;

/// The weights of the RNODE regularisers (0 turns one off).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Rnode {
    /// `λ_K`, weight of the kinetic energy `∫‖f‖² dt` (RNODE's toy runs: 0.01…0.1).
    pub kinetic: f64,
    /// `λ_J`, weight of the Jacobian Frobenius norm `∫‖∂f/∂z‖_F² dt`.
    pub jacobian: f64,
}

impl Rnode {
    /// No regularisation.
    pub fn off() -> Self {
        Self::default()
    }

    /// Both weights; errors unless each is finite and ≥ 0.
    pub fn new(kinetic: f64, jacobian: f64) -> Result<Self, ModelsError> {
        for (name, v) in [
            ("kinetic-energy weight", kinetic),
            ("Jacobian weight", jacobian),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(ModelsError::InvalidArgument {
                    name: "RNODE weight",
                    reason: format!("the {name} must be finite and >= 0, got {v}"),
                });
            }
        }
        Ok(Self { kinetic, jacobian })
    }

    /// Whether the kinetic channel is carried.
    pub fn has_kinetic(&self) -> bool {
        self.kinetic > 0.0
    }

    /// Whether the Jacobian channel is carried.
    pub fn has_jacobian(&self) -> bool {
        self.jacobian > 0.0
    }

    /// Number of extra state channels per sample (0, 1 or 2).
    pub fn n_channels(&self) -> usize {
        usize::from(self.has_kinetic()) + usize::from(self.has_jacobian())
    }

    /// Whether any regulariser is on.
    pub fn is_on(&self) -> bool {
        self.n_channels() > 0
    }
}
