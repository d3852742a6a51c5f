//! The error type of the `models` crate.

use std::path::PathBuf;

/// Everything that can go wrong in `models`.
#[derive(Debug, thiserror::Error)]
pub enum ModelsError {
    /// Reading or writing a data file failed.
    #[error("cannot write or read {path}: {source}")]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// A data file is malformed; names the line and column (both 1-based).
    #[error("{path}:{line}:{column}: {reason}")]
    Data {
        /// The file read.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// 1-based column number (the field, counting from 1).
        column: usize,
        /// What is wrong there.
        reason: String,
    },
    /// A binary data file (IDX, gzip) is malformed; names the byte offset where reading
    /// failed (0-based, in the decompressed data).
    #[error("{path}: byte {offset}: {reason}")]
    BinaryData {
        /// The file read.
        path: PathBuf,
        /// 0-based byte offset (after decompression) of the offending field.
        offset: usize,
        /// What is wrong there.
        reason: String,
    },
    /// An argument (a size, a window, a setting) is invalid.
    #[error("invalid {name}: {reason}")]
    InvalidArgument {
        /// The option concerned.
        name: &'static str,
        /// Why it is rejected.
        reason: String,
    },
    /// An ODE solve failed.
    #[error(transparent)]
    Solve(#[from] ode_solvers::SolveError),
    /// Saving or loading parameters failed.
    #[error("checkpoint {path}: {source}")]
    Checkpoint {
        /// The safetensors file.
        path: PathBuf,
        /// What went wrong.
        source: autodiff::io::CheckpointError,
    },
    /// A non-finite value appeared where training cannot continue.
    #[error(
        "non-finite {what} at index {index}: lower the learning rate or tighten the tolerances"
    )]
    NonFinite {
        /// What became non-finite.
        what: &'static str,
        /// The first offending index.
        index: usize,
    },
    /// A gradient through an ODE solve failed.
    #[error(transparent)]
    Adjoint(#[from] adjoint::Error),
    /// A network or optimizer operation failed.
    #[error(transparent)]
    Autodiff(#[from] autodiff::Error),
}
