//! `neuralode`: the command-line program of the workspace.
//!
//! Run with no arguments it trains the default Neural ODE; the subcommands run the
//! other crates' jobs. `neuralode --help` and `neuralode <command> --help` list every
//! option.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use models::jobs::{rod, solve};

/// Neural ODEs and adjoint sensitivity analysis.
#[derive(Debug, Parser)]
#[command(name = "neuralode", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Integrate a reference problem or a linear system with any method and tolerance:
    /// trajectory CSV, plots and statistics (optionally a work–precision sweep).
    Solve(solve::SolveArgs),
    /// The heated rod and plate: inverse design by the adjoint gradient, or its cost scaling.
    #[command(subcommand)]
    Rod(rod::RodCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Some(Command::Solve(args)) => solve::run(args).map(|_| ()),
        Some(Command::Rod(command)) => rod::run(command),
        None => {
            println!("neuralode: training is not built yet; see `neuralode --help`");
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
