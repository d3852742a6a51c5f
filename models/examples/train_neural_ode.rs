//! Train a Neural ODE with the generic training loop: the cubic spiral `ẏ = A y³` cut
//! into windows of 10 samples, an MLP field on `z³`, Adam under a cosine schedule,
//! gradient clipping, a callback that logs every epoch, and a checkpoint that a second
//! trainer resumes from.
//!
//! `cargo run --release -p models --example train_neural_ode`

use autodiff::nn::{Mlp, ParamStore};
use autodiff::optim::{Adam, Schedule, Scheduled};
use models::ModelsError;
use models::datasets::BatchOptions;
use models::spiral::spiral_trajectory;
use models::training::{Control, NeuralOde, StepInfo, TrainConfig, Trainer, trajectory_windows};

fn main() -> Result<(), ModelsError> {
    // 200 samples on [0, 10]; every window of 10 samples is one example.
    let data = spiral_trajectory(200, 10.0)?;
    let (windows, ts) = trajectory_windows::<f64>(&data, 10)?;
    let loader = windows.into_loader(BatchOptions {
        seed: 7,
        ..BatchOptions::new(32)
    })?;

    // ż = MLP(z³), 2 → 32 → 2, tanh.
    let mut store = ParamStore::new(0);
    let mlp = Mlp::builder(2, 2).hidden(&[32]).build(&mut store, "f")?;
    let mut model = NeuralOde::new("spiral-mlp", store, 2, &ts, move |_tape, _t, z, th| {
        mlp.forward(th, z * z * z)
    })?;

    let epochs = 100;
    let steps = epochs * loader_len(&loader);
    let optimizer = || -> Result<_, ModelsError> {
        Ok(Scheduled::new(
            Adam::with_lr(2e-2)?,
            Schedule::cosine(2e-2, steps, 2e-4)?,
        ))
    };
    let config = TrainConfig::epochs(epochs)?.with_clip_grad_norm(1.0)?;
    let dir = std::env::temp_dir().join(format!("train-neural-ode-{}", std::process::id()));

    // First half, then a checkpoint.
    let mut trainer = Trainer::new(optimizer()?, config.clone().with_max_steps(steps / 2)?);
    let mut log = |info: &StepInfo<'_>| {
        if info.batch == 0 && info.epoch.is_multiple_of(10) {
            println!(
                "epoch {:>2}  step {:>3}  loss {:.3e}  |g| {:.2e}  lr {:.1e}  nfe {}+{}  {:.2?}",
                info.epoch,
                info.step,
                info.loss,
                info.grad_norm,
                info.lr,
                info.metrics.get("nfe_forward").unwrap_or(0.0),
                info.metrics.get("nfe_backward").unwrap_or(0.0),
                info.elapsed,
            );
        }
        Control::Continue
    };
    trainer.fit(&mut model, &loader, &mut log)?;
    trainer.save_checkpoint(&model, &dir)?;
    println!(
        "checkpoint at step {} in {}",
        trainer.position().step,
        dir.display()
    );

    // A new trainer resumes (parameters, Adam's moments, schedule, epoch and batch).
    let mut resumed = Trainer::new(optimizer()?, config);
    resumed.resume(&mut model, &dir)?;
    let summary = resumed.fit(&mut model, &loader, &mut log)?;
    println!(
        "stopped ({:?}) after {} steps in total, last loss {:.3e}",
        summary.stop, summary.position.step, summary.last_loss
    );
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

/// Batches per epoch.
fn loader_len(loader: &impl models::datasets::DataLoader<f64>) -> u64 {
    loader.n_batches() as u64
}
