//! The error type of the `models` crate and the `neuralode` program.

use std::path::PathBuf;

/// Everything that can go wrong in `models` and the `neuralode` program.
#[derive(Debug, thiserror::Error)]
pub enum ModelsError {
    /// Reading or writing a file failed.
    #[error("cannot write or read {path}: {source}")]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// A value could not be serialised as JSON.
    #[error("cannot serialise {path} as JSON: {source}")]
    Json {
        /// The file that was being written.
        path: PathBuf,
        /// The serialiser's reason.
        source: serde_json::Error,
    },
    /// Drawing a plot failed.
    #[error("cannot draw the plot {path}: {reason}")]
    Plot {
        /// The image that was being drawn.
        path: PathBuf,
        /// What the plotting backend reported.
        reason: String,
    },
    /// A plot was asked for with nothing to draw or with no finite point.
    #[error("the plot {name} has no finite point to draw")]
    EmptyPlot {
        /// The plot's file stem.
        name: String,
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
    /// A command-line value or option combination is invalid.
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
    /// The heated rod or plate failed.
    #[error(transparent)]
    Pde(#[from] pde_adjoint::PdeError),
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
