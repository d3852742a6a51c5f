//! The crate's error type.

/// Everything that can go wrong in a solve. Times and step sizes are reported as `f64`
/// whatever the float type, so the enum composes with `#[from]` in downstream crates.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SolveError {
    /// A state component became NaN or infinite (or `y0` contains one).
    #[error(
        "non-finite state: y[{index}] is not finite at t = {t}; check y0 or loosen the step (the solution may blow up)"
    )]
    NonFiniteState {
        /// Time at which the state was found non-finite.
        t: f64,
        /// Component index.
        index: usize,
    },
    /// The right-hand side returned NaN or infinity.
    #[error(
        "non-finite derivative: dy[{index}] is not finite at t = {t}; check the right-hand side (division by zero, overflow, domain error)"
    )]
    NonFiniteDerivative {
        /// Time of the evaluation.
        t: f64,
        /// Component index.
        index: usize,
    },
    /// No output time was given.
    #[error("no output times: `ts` must contain at least the initial time")]
    EmptyTimes,
    /// Output times are not finite or not strictly monotone.
    #[error(
        "output times must be finite and strictly monotone (all increasing or all decreasing): ts[{index}] = {value} breaks this"
    )]
    NonMonotoneTimes {
        /// Index of the offending time.
        index: usize,
        /// Its value.
        value: f64,
    },
    /// A tolerance is not finite and positive.
    #[error("{name} must be finite and > 0, got {value} (component {index})")]
    InvalidTolerance {
        /// `"rtol"` or `"atol"`.
        name: &'static str,
        /// Component index (0 for a scalar tolerance).
        index: usize,
        /// The value given.
        value: f64,
    },
    /// Two lengths that must agree do not.
    #[error("length mismatch for {what}: expected {expected}, found {found}")]
    LengthMismatch {
        /// What was measured.
        what: &'static str,
        /// Expected length.
        expected: usize,
        /// Length found.
        found: usize,
    },
    /// The step size fell below `min_step` or below round-off relative to `t`.
    #[error(
        "step size underflow at t = {t:.6e}: h = {h:.3e}; the problem may be stiff or singular here (loosen tolerances, lower `min_step`, or use a stiff method)"
    )]
    StepSizeUnderflow {
        /// Time at which it happened.
        t: f64,
        /// The step size that was too small.
        h: f64,
    },
    /// `max_steps` step attempts were made without reaching the end.
    #[error(
        "too many steps: {max_steps} step attempts reached at t = {t:.6e}; increase `max_steps` or loosen tolerances"
    )]
    TooManySteps {
        /// Time reached.
        t: f64,
        /// The limit in force.
        max_steps: usize,
    },
    /// The initial state has no component.
    #[error("the initial state is empty: give at least one component")]
    EmptyState,
    /// A relative tolerance is below what the float type resolves (adaptive runs).
    #[error(
        "{name} = {value:.3e} (component {index}) is below the precision of {float} (machine epsilon {epsilon:.3e}): use {name} >= {minimum:.3e}, or double precision"
    )]
    ToleranceBelowPrecision {
        /// `"rtol"`.
        name: &'static str,
        /// Component index (0 for a scalar tolerance).
        index: usize,
        /// The value given.
        value: f64,
        /// `"f32"` or `"f64"` (by the machine epsilon).
        float: &'static str,
        /// The float type's machine epsilon.
        epsilon: f64,
        /// The smallest accepted value (4 epsilon).
        minimum: f64,
    },
    /// An option has an invalid value.
    #[error("invalid option `{name}` = {value}: {reason}")]
    InvalidOption {
        /// Option name.
        name: &'static str,
        /// Value given.
        value: f64,
        /// What is required.
        reason: &'static str,
    },
    /// The method does not support the requested mode.
    #[error("method {method} cannot {what}")]
    Unsupported {
        /// Method name.
        method: &'static str,
        /// What was asked.
        what: &'static str,
    },
    /// Interpolation was asked outside the last step.
    #[error(
        "time {t} is outside the last accepted step [{t_prev}, {t_new}]; dense output is valid on the last step only"
    )]
    OutsideStep {
        /// Requested time.
        t: f64,
        /// Start of the last step.
        t_prev: f64,
        /// End of the last step.
        t_new: f64,
    },
    /// A step was requested after the end of the integration interval was reached.
    #[error("the integration already reached its end time t = {t}")]
    EndReached {
        /// The end time.
        t: f64,
    },
}
