//! Fitting a Neural ODE `dz/dt = MLP(φ(z))` to a trajectory in a CSV file, with the
//! `models` library alone (no command-line program).
//!
//! The CSV has a header line of column names, then one row per sample: the time first,
//! then one column per state component (irregular times are fine; lines starting with
//! `#` are skipped). Without an argument it fits `examples/data/spiral_small.csv`, 101
//! samples of the cubic spiral `dy/dt = A y³` on `[0, 10]` (made by
//! `models::spiral::spiral_trajectory(101, 10.0)`).
//!
//! Each iteration solves 16 windows of 4 consecutive samples from their first sample
//! (one batched solve when the times are evenly spaced) and takes one Adam step on their
//! mean squared error, the gradient from the checkpointed adjoint. It prints the loss as
//! it goes and the mean absolute error of the whole trajectory, solved from its first
//! sample, before and after. `neuralode train --data FILE.csv` (the `cli` crate) is the
//! full version, with plots, checkpoints and random windows.
//!
//! Run with `cargo run --release -p models --example fit_your_csv [-- FILE.csv]`.

use std::path::PathBuf;

use models::ModelsError;
use models::data::Trajectory;
use models::neural_ode::{Features, GradientModeArg, NeuralOde, SolverSettings};
use ode_solvers::Method;

fn main() -> Result<(), ModelsError> {
    let path = std::env::args_os().nth(1).map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/data/spiral_small.csv"),
        PathBuf::from,
    );
    let data = Trajectory::read_csv(&path)?; // errors name FILE:line:column
    println!(
        "{}: {} samples of {} components on [{}, {}]",
        path.display(),
        data.len(),
        data.dim(),
        data.ts[0],
        data.ts[data.len() - 1]
    );

    // φ(z) = z³ suits the spiral; `Features::Identity` is the plain `dz/dt = MLP(z)`.
    let (hidden, layers, seed) = (32, 2, 0);
    let mut model = NeuralOde::new(data.dim(), Features::Cubic, hidden, layers, seed)?;
    let settings = SolverSettings {
        method: Method::Dopri5,
        rtol: 1e-6,
        atol: 1e-8,
        mode: GradientModeArg::Checkpointed,
    };
    let (iters, batch, window, lr) = (400, 16, 4.min(data.len()), 1e-2);
    let mut trainer = model.trainer(&settings, lr, iters, 1)?;
    let before = model.trajectory_mae(&data, &settings)?;

    // Window starts spread over the data, shifted every iteration (deterministic; use
    // any random number generator instead).
    let span = data.len() - window + 1;
    let mut starts = vec![0; batch];
    for it in 0..iters {
        for (b, s) in starts.iter_mut().enumerate() {
            *s = (b * span / batch + it * 7) % span;
        }
        let loss = trainer.step(&mut model, &data, &starts, window)?;
        if it % 50 == 0 || it + 1 == iters {
            println!("iteration {:4}: window loss {loss:.3e}", it + 1);
        }
    }

    let after = model.trajectory_mae(&data, &settings)?;
    let (nfe_forward, nfe_backward, vjps) = trainer.work();
    println!(
        "{} parameters; trajectory MAE {before:.3e} -> {after:.3e} ({nfe_forward} forward evaluations; gradients: {nfe_backward} evaluations, {vjps} VJPs)",
        model.n_params()
    );
    // `model.predict(&data, &settings)?.write_csv(path)` writes the learned trajectory;
    // `model.save(path)` the parameters as safetensors.
    Ok(())
}
