//! The `neuralode` command-line program: the library side of its jobs.
//!
//! The program (`src/main.rs`) parses the command line and runs one job; everything
//! else is here, so that the jobs can be called and tested as functions:
//!
//! * [`jobs`]: one module per subcommand (`train`, `solve`, `rod`, `sensitivity`) with
//!   its options (clap) and its report. Each prints a table, writes a plot (PNG and
//!   SVG) and a JSON summary into its output directory.
//! * [`output`]: atomic file writes (a synced temporary sibling renamed over the
//!   destination), so an interrupted run never leaves a half-written file behind.
//! * [`plot`]: PNG and SVG line, marker and arrow plots.
//! * [`checks`]: what a job checks before working (output directory, memory), the
//!   `O_APPEND` run log, the SIGINT/SIGTERM flag, command-line value parsers.
//! * [`error`]: [`CliError`], what the program reports; the model library's own
//!   [`models::ModelsError`] passes through it.
//!
//! The models themselves are in the `models` crate (no CLI, plotting or progress-bar
//! dependency); the heated rod and plate in `pde-adjoint`.
//!
//! # Example
//!
//! ```no_run
//! use cli::jobs::train::{TrainArgs, run};
//!
//! let args = TrainArgs {
//!     iters: 300,
//!     out: "out/short".into(),
//!     ..TrainArgs::default()
//! };
//! let report = run(&args)?; // = `neuralode train --iters 300 --out out/short`
//! assert!(report.last_loss < report.first_loss);
//! # Ok::<(), cli::CliError>(())
//! ```

pub mod checks;
pub mod error;
pub mod jobs;
pub mod output;
pub mod plot;

pub use error::CliError;

/// Sizes the thread pool that the models split their batch rows over (rayon's global
/// pool, used by [`adjoint::ParallelTapeDynamics`] and the generic trainer by default):
/// `Some(n)` threads, or `None` for rayon's default (all available cores, or the
/// `RAYON_NUM_THREADS` environment variable). Returns the number of threads. Call it once,
/// before any job (the pool cannot be resized).
pub fn use_threads(threads: Option<usize>) -> Result<usize, CliError> {
    if let Some(n) = threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .map_err(|e| CliError::InvalidArgument {
                name: "--threads",
                reason: format!("cannot start a pool of {n} threads: {e}"),
            })?;
    }
    Ok(rayon::current_num_threads())
}
