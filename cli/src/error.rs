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
    /// The output directory cannot be used (checked before any work).
    #[error("cannot use the output directory {path}: {reason}")]
    OutputDir {
        /// The directory given.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A job would need more memory than the system has available.
    #[error(
        "{what} would need about {needed} of memory, more than the {available} it may use (3/4 of the memory available): choose smaller sizes"
    )]
    TooLarge {
        /// The job and the options that size it.
        what: String,
        /// The estimate.
        needed: String,
        /// What the system has available.
        available: String,
    },
    /// The run was interrupted (SIGINT or SIGTERM) after saving its state.
    #[error(
        "interrupted at iteration {iteration}; the run is saved in {checkpoint}: continue it with --resume {checkpoint}"
    )]
    Interrupted {
        /// Iterations completed.
        iteration: u64,
        /// The checkpoint written.
        checkpoint: String,
    },
    /// Training failed at an iteration; `advice` says what to change on the command line.
    #[error("training failed at iteration {iteration}: {}\n  {advice}", cli_words(.source, "loosen --rtol/--atol"))]
    Training {
        /// The iteration that failed (1-based).
        iteration: u64,
        /// What failed.
        source: Box<models::ModelsError>,
        /// What to change.
        advice: String,
    },
    /// A model, its data or its training failed.
    #[error("{}", cli_words(.0, "loosen --rtol/--atol"))]
    Models(#[from] models::ModelsError),
    /// A tape operation or an optimizer step failed.
    #[error(transparent)]
    Autodiff(#[from] autodiff::Error),
    /// An ODE solve failed.
    #[error("{}", cli_words(.0, "give a larger --max-steps or loosen --rtol/--atol"))]
    Solve(#[from] ode_solvers::SolveError),
    /// A gradient through an ODE solve failed.
    #[error("{}", cli_words(.0, "loosen the tolerances"))]
    Adjoint(#[from] adjoint::Error),
    /// The heated rod or plate failed.
    #[error(transparent)]
    Pde(#[from] pde_adjoint::PdeError),
}

/// A library error's message in the program's words: the solver's advice names the
/// Rust option `max_steps`, which becomes `more_steps` (what the command offers), and
/// `min_step`, which no command sets (its default 0 only stops at round-off).
fn cli_words(e: &dyn std::fmt::Display, more_steps: &str) -> String {
    e.to_string()
        .replace("increase `max_steps` or loosen tolerances", more_steps)
        .replace("lower `min_step`, ", "")
}
