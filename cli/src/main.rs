//! `neuralode`: the command-line program of the workspace.
//!
//! Run with no arguments it trains the default Neural ODE; the subcommands run the
//! other crates' jobs. `neuralode --help` and `neuralode <command> --help` list every
//! option.

use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use cli::jobs::{cnf, fe, latent, odenet, rod, sensitivity, solve, train};

/// Tracks the bytes the program holds (the `odenet` job's measured backward memory).
#[global_allocator]
static GLOBAL: alloc_count::Counting = alloc_count::Counting;

/// Neural ODEs and adjoint sensitivity analysis.
///
/// With no command, trains the default Neural ODE (`neuralode train` with its defaults:
/// the cubic spiral dy/dt = A y³) and writes its plots and metrics into out/train.
#[derive(Debug, Parser)]
#[command(name = "neuralode", version)]
struct Cli {
    /// Threads that the batch rows of the models' fields are split over (results do not
    /// depend on it) [default: all available cores]. The `train` job reads it as its own
    /// `--threads` (worker threads sharing each batch, default 1: see `neuralode train
    /// --help`).
    #[arg(long, global = true, value_parser = cli::checks::count)]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Fit a Neural ODE to a trajectory (the default command: the cubic spiral).
    Train(train::TrainArgs),
    /// Integrate a reference problem or a linear system with any method and tolerance:
    /// trajectory CSV, plots and statistics (optionally a work–precision sweep).
    Solve(solve::SolveArgs),
    /// The heated rod and plate: inverse design by the adjoint gradient, or its cost scaling.
    #[command(subcommand)]
    Rod(rod::RodCommand),
    /// Time one gradient of an MLP Neural ODE in every gradient mode as the parameter
    /// count grows: adjoint against forward sensitivities, with the crossover.
    Sensitivity(sensitivity::SensitivityArgs),
    /// Train ODE-Net, RK-Net and ResNet (Chen et al. 2018, §7.1) on the shipped digits or
    /// MNIST subset: test error, parameters, measured backward memory, evaluations per
    /// batch, time per epoch; plots; backward memory against solver steps.
    Odenet(odenet::OdenetArgs),
    /// Function encoders: train bases of K Neural ODE fields on a family of systems and
    /// transfer them zero-shot to held-out systems (against a global and an oracle Neural
    /// ODE): error against K and demonstration points, encoding cost; plots.
    Fe(fe::FeArgs),
    /// Continuous normalizing flows (FFJORD) on a 2-D toy density, with and without the
    /// RNODE regularisers: test NLL against a Gaussian baseline, evaluations and time per
    /// iteration; density, sample and NFE plots.
    Cnf(cnf::CnfArgs),
    /// Latent ODEs on irregularly sampled series (spirals, periodic toy, state-dependent
    /// sampling, CSV) against an ODE-RNN and RNN-dt: interpolation and extrapolation MSE,
    /// posterior trajectories with bands, optional Poisson-process likelihood of the times.
    Latent(latent::LatentArgs),
}

fn main() -> ExitCode {
    restore_sigpipe();
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    // Only a `--threads` given on the command line sizes the pool: the `train` job's own
    // default (1 worker) reaches this field too, and must not shrink the pool.
    let threads = match matches.value_source("threads") {
        Some(ValueSource::CommandLine) => cli.threads,
        _ => None,
    };
    if let Err(e) = cli::use_threads(threads) {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    let result = match &cli.command {
        Some(Command::Solve(args)) => solve::run(args).map(|_| ()),
        Some(Command::Rod(command)) => rod::run(command),
        Some(Command::Train(args)) => train::run(args).map(|_| ()),
        Some(Command::Sensitivity(args)) => sensitivity::run(args).map(|_| ()),
        Some(Command::Odenet(args)) => odenet::run(args).map(|_| ()),
        Some(Command::Fe(args)) => fe::run(args).map(|_| ()),
        Some(Command::Cnf(args)) => cnf::run(args).map(|_| ()),
        Some(Command::Latent(args)) => latent::run(args).map(|_| ()),
        None => train::run(&train::TrainArgs::default()).map(|_| ()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            // 128 + SIGINT, as shells report a program stopped by Ctrl-C (the run was
            // checkpointed first).
            if matches!(e, cli::CliError::Interrupted { .. }) {
                ExitCode::from(130)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Lets `neuralode ... | head` end quietly when the reader closes the pipe, as other
/// command-line tools do (Rust ignores SIGPIPE, which turns the closed pipe into a
/// panic at the next print).
fn restore_sigpipe() {
    #[cfg(unix)]
    // SAFETY: called first in `main`, before any thread exists; SIG_DFL is a valid handler.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
