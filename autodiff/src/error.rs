//! The crate's error type.

use crate::Shape;
use std::sync::Arc;

/// Everything that can go wrong when building or differentiating a computation.
///
/// Operations on [`Var`](crate::Var) cannot return a `Result` (they are written with
/// operators), so the first error of a recording is kept by the tape ("sticky") and
/// returned by the next reading call (`value_into`, `backward`, `grad_into`, ...).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// Two operands have shapes that cannot be combined (broadcast or product).
    #[error("{op}: incompatible shapes {lhs} and {rhs}")]
    ShapeMismatch {
        /// Operation name.
        op: &'static str,
        /// Shape of the first operand.
        lhs: Shape,
        /// Shape of the second operand.
        rhs: Shape,
    },
    /// A caller slice has the wrong length.
    #[error("{what}: expected a slice of length {expected}, found {found}")]
    LengthMismatch {
        /// What the slice was for.
        what: &'static str,
        /// Required length.
        expected: usize,
        /// Length given.
        found: usize,
    },
    /// A shape or an operation argument is invalid.
    #[error("{op}: invalid argument for shape {shape}: {reason}")]
    InvalidArgument {
        /// Operation name.
        op: &'static str,
        /// Shape of the operand concerned.
        shape: Shape,
        /// What was wrong, and what to change.
        reason: &'static str,
    },
    /// More than four dimensions were requested.
    #[error("shapes have at most 4 dimensions, got {rank}")]
    RankTooLarge {
        /// Requested rank.
        rank: usize,
    },
    /// A class label is not smaller than the number of classes.
    #[error("label {label} at row {row} is out of range for {classes} classes")]
    LabelOutOfRange {
        /// Row of the offending label.
        row: usize,
        /// The label.
        label: usize,
        /// Number of classes.
        classes: usize,
    },
    /// NaN/Inf detection is on and an operation produced a non-finite value.
    #[error("{0}")]
    NonFinite(Box<NonFiniteInfo>),
    /// The operation has no (higher-order) backward.
    #[error("{op}: backward not supported{detail}")]
    BackwardNotSupported {
        /// Operation name.
        op: &'static str,
        /// Extra detail (e.g. " with create_graph").
        detail: &'static str,
    },
    /// `backward` was called on a value computed while recording was off.
    #[error(
        "backward called on a value that was not recorded: call `Tape::set_recording(true)` before the forward pass"
    )]
    NotRecording,
    /// A `Var` from another tape was combined with this tape's variables.
    #[error("a variable from another tape was used")]
    ForeignVar,
    /// Reading or writing a parameter checkpoint failed.
    #[error(transparent)]
    Checkpoint(#[from] crate::io::CheckpointError),
    /// An optimizer / schedule / layer hyper-parameter is out of range.
    #[error("{op}: {name} = {value} is invalid: {reason}")]
    InvalidHyperparameter {
        /// Optimizer, schedule or layer concerned.
        op: &'static str,
        /// Name of the hyper-parameter.
        name: &'static str,
        /// The value given.
        value: f64,
        /// What is wrong and what to change.
        reason: &'static str,
    },
    /// A custom operation's fallible forward ([`CustomOp::try_forward`](crate::CustomOp::try_forward))
    /// or its backward failed with an error of its own (e.g. an ODE solve inside the op);
    /// [`CustomOpError::inner`] gives it back for downcasting.
    #[error("{op} failed: {source}")]
    CustomOpFailed {
        /// Name of the custom operation.
        op: &'static str,
        /// The operation's own error.
        source: CustomOpError,
    },
    /// Two parameters were registered under the same name in one `nn::ParamStore`.
    #[error("parameter `{name}` is already registered; give each layer a distinct name")]
    DuplicateParameter {
        /// The repeated name.
        name: String,
    },
}

/// The error of a custom operation, shared (the tape's sticky error is cloned on every
/// read). Two values are equal when they share the same error.
#[derive(Debug, Clone)]
pub struct CustomOpError(Arc<dyn std::error::Error + Send + Sync + 'static>);

impl CustomOpError {
    /// Wraps an operation's own error.
    pub fn new(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        CustomOpError(Arc::new(e))
    }

    /// The wrapped error (`inner().downcast_ref::<E>()` recovers its type).
    pub fn inner(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.0
    }
}

impl PartialEq for CustomOpError {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::addr_eq(Arc::as_ptr(&self.0), Arc::as_ptr(&other.0))
    }
}

impl std::fmt::Display for CustomOpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for CustomOpError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// Where a non-finite value was first produced (see [`Error::NonFinite`]).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "{op} produced a non-finite value at flat index {index} of its {output} output (inputs {input0}, {input1}){phase}"
)]
pub struct NonFiniteInfo {
    /// Operation name.
    pub op: &'static str,
    /// Shape of the first input (empty shape if none).
    pub input0: Shape,
    /// Shape of the second input (empty shape if none).
    pub input1: Shape,
    /// Shape of the output.
    pub output: Shape,
    /// Flat index of the first non-finite element.
    pub index: usize,
    /// `""` in the forward pass, `" in the backward pass"` otherwise.
    pub phase: &'static str,
}
