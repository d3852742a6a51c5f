//! The crate's error type.

/// Errors of gradient computations through ODE solves.
///
/// Solver failures (tolerances, step-size underflow, too many steps, non-finite states)
/// arrive unchanged as [`Error::Solve`]; failures of an autodiff-backed right-hand side as
/// [`Error::Autodiff`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The ODE solver failed (forward or backward pass).
    #[error(transparent)]
    Solve(#[from] ode_solvers::SolveError),
    /// The autodiff tape behind a `TapeDynamics` reported an error.
    #[cfg(feature = "tape")]
    #[error(transparent)]
    Autodiff(#[from] autodiff::Error),
    /// Two sizes that must agree do not.
    #[error("length mismatch for {what}: expected {expected}, found {found}")]
    LengthMismatch {
        /// What was measured.
        what: &'static str,
        /// The size implied by the dynamics or the other arguments.
        expected: usize,
        /// The size given.
        found: usize,
    },
    /// An input holds NaN or an infinity.
    #[error("{what} holds a non-finite value at index {index}")]
    NonFinite {
        /// Which input.
        what: &'static str,
        /// First offending index.
        index: usize,
    },
    /// The output times are empty, non-finite or not strictly monotone.
    #[error(
        "output times must be finite and strictly increasing or strictly decreasing; offending value {value} at index {index}"
    )]
    InvalidTimes {
        /// Index of the offending time.
        index: usize,
        /// Its value.
        value: f64,
    },
    /// No output time was given.
    #[error("no output times: give at least t0")]
    EmptyTimes,
    /// An option is out of range.
    #[error("invalid option `{name}` = {value}: {reason}")]
    InvalidOption {
        /// Option name.
        name: &'static str,
        /// Offending value.
        value: f64,
        /// What is allowed.
        reason: &'static str,
    },
    /// The chosen method cannot be used by this gradient mode.
    #[error(
        "method {method} cannot be used for {what}; pick an explicit Runge–Kutta method (e.g. Method::Dopri5)"
    )]
    UnsupportedMethod {
        /// Method name.
        method: &'static str,
        /// What was attempted.
        what: &'static str,
    },
    /// The dynamics lack a capability the gradient mode needs.
    #[error("the dynamics do not provide {what}; {hint}")]
    MissingCapability {
        /// The missing capability (`"vjp"`, `"jvp"`).
        what: &'static str,
        /// How to provide it.
        hint: &'static str,
    },
    /// `backward` was called without a matching `forward`.
    #[error("backward called before forward (or after a failed forward): run forward first")]
    NoForwardPass,
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
