//! The error type of the crate.

use crate::discrete::DiscreteAdjointError;

/// Everything that can go wrong in `pde-adjoint`. Bad input is reported, never
/// a panic.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PdeError {
    /// A grid or problem with no unknowns.
    #[error("{what} must be at least 1, got 0")]
    Empty {
        /// Which size was zero (`"n"`, `"m"`, ...).
        what: &'static str,
    },
    /// A grid too large to index.
    #[error("grid size {what} = {value} is too large: the number of unknowns overflows")]
    TooLarge {
        /// Which size.
        what: &'static str,
        /// The size given.
        value: usize,
    },
    /// Two lengths that must agree do not.
    #[error("length mismatch for {what}: expected {expected}, found {found}")]
    LengthMismatch {
        /// What was measured.
        what: &'static str,
        /// The length implied by the problem.
        expected: usize,
        /// The length given.
        found: usize,
    },
    /// An input holds NaN or an infinity.
    #[error("{what} holds a non-finite value at index {index}")]
    NonFinite {
        /// Which input (`"s"`, `"target"`, `"operator"`, ...).
        what: &'static str,
        /// The first offending index.
        index: usize,
    },
    /// The operator is not symmetric positive definite.
    #[error(
        "the operator is not symmetric positive definite (Cholesky pivot {pivot} is not positive)"
    )]
    NotPositiveDefinite {
        /// The failing pivot, in the fill-reducing order.
        pivot: usize,
    },
    /// An option out of its range.
    #[error("option `{name}` must be {requirement}, got {value}")]
    InvalidOption {
        /// The option.
        name: &'static str,
        /// What it must satisfy.
        requirement: &'static str,
        /// The value given (as f64 for the message).
        value: f64,
    },
    /// Any other failure of the sparse linear algebra.
    #[error(transparent)]
    Sparse(DiscreteAdjointError),
}

impl From<DiscreteAdjointError> for PdeError {
    fn from(e: DiscreteAdjointError) -> Self {
        match e {
            DiscreteAdjointError::NotPositiveDefinite { pivot } => {
                Self::NotPositiveDefinite { pivot }
            }
            DiscreteAdjointError::NonFinite { what, index } => Self::NonFinite { what, index },
            DiscreteAdjointError::DimensionMismatch {
                what,
                expected,
                found,
            } => Self::LengthMismatch {
                what,
                expected,
                found,
            },
            other => Self::Sparse(other),
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = PdeError> = std::result::Result<T, E>;

pub(crate) fn check_len(what: &'static str, expected: usize, found: usize) -> Result<()> {
    if expected == found {
        Ok(())
    } else {
        Err(PdeError::LengthMismatch {
            what,
            expected,
            found,
        })
    }
}

pub(crate) fn check_finite<T: real::Real>(what: &'static str, v: &[T]) -> Result<()> {
    match v.iter().position(|x| !x.is_finite()) {
        Some(index) => Err(PdeError::NonFinite { what, index }),
        None => Ok(()),
    }
}
