//! The error type of the `neuralode` program.

use std::path::PathBuf;

/// Everything that can go wrong in the `neuralode` program: its own failures (output
/// files, plots, command-line values) and those of the crates it runs.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
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
    /// A command-line value or option combination is invalid.
    #[error("invalid {name}: {reason}")]
    InvalidArgument {
        /// The option concerned.
        name: &'static str,
        /// Why it is rejected.
        reason: String,
    },
    /// A model, its data or its training failed.
    #[error(transparent)]
    Models(#[from] models::ModelsError),
    /// A tape operation or an optimizer step failed.
    #[error(transparent)]
    Autodiff(#[from] autodiff::Error),
    /// An ODE solve failed.
    #[error(transparent)]
    Solve(#[from] ode_solvers::SolveError),
    /// A gradient through an ODE solve failed.
    #[error(transparent)]
    Adjoint(#[from] adjoint::Error),
    /// The heated rod or plate failed.
    #[error(transparent)]
    Pde(#[from] pde_adjoint::PdeError),
}
