//! Train ODE-Net (Chen et al. 2018, §7.1) on the shipped 8×8 digits: a stratified
//! 80/20 split, per-channel standardisation fitted on the training set, Adam on
//! mini-batches of 64, and per epoch the mean training loss, the test accuracy and the
//! ODE block's function evaluations per batch (forward solve; backward pass: field
//! re-evaluations plus vector-Jacobian products).
//!
//! `cargo run --release -p models --example odenet_digits`
//!
//! The loop is written out (tape, one leaf for the flat parameters, `backward_scalar`,
//! optimizer step) so that it can be copied and changed; `neuralode odenet` runs the
//! same models on the digits or the MNIST 5k subset with plots and a memory table.

use autodiff::Tape;
use autodiff::optim::{Adam, Optimizer};
use models::ModelsError;
use models::datasets::{BatchOptions, DataLoader, Normalization, load_digits, stratified_split};
use models::odenet::{ConvNetConfig, ImageClassifier, OdeNet, OdeNetConfig};

fn main() -> Result<(), ModelsError> {
    let mut digits = load_digits::<f32>()?; // [1797, 1, 8, 8], pixels 0..=16
    digits.to_unit_range();
    let (mut train, mut test) = stratified_split(&digits, 0.2, 0)?;
    let norm = Normalization::fit(&train)?;
    norm.apply(&mut train)?;
    norm.apply(&mut test)?;
    let loader = train.into_loader(BatchOptions {
        seed: 0,
        ..BatchOptions::new(64)
    })?;

    // 16 channels, 8 groups, stem padding 1 (2×2 feature maps); Dopri5 with
    // rtol = atol = 1e-3 on [0, 1], gradient by the checkpointed adjoint.
    let config = OdeNetConfig::new(ConvNetConfig::digits());
    let mut net = OdeNet::<f32>::new(&config)?;
    let mut adam = Adam::with_lr(1e-2)?;
    println!(
        "ODE-Net on the 8x8 digits: {} parameters, {} training and {} test images",
        net.n_params(),
        loader.n_examples(),
        test.len()
    );
    println!("epoch  train loss  test acc  NFE fwd/batch  NFE bwd/batch");

    let mut tape = Tape::new();
    for epoch in 0..5 {
        let (mut loss_sum, mut nfe_f, mut nfe_b, mut batches) = (0.0, 0, 0, 0);
        for batch in loader.batches(epoch) {
            tape.reset();
            tape.set_recording(true);
            let theta = tape.leaf(net.params(), &[net.n_params()])?;
            let x = tape.constant(&batch.images, &batch.shape)?;
            let loss = net.loss(&tape, theta, x, &batch.labels)?;
            loss_sum += f64::from(loss.item()?);
            tape.backward_scalar(loss)?; // one adjoint solve through the ODE block
            let grad = theta.grad()?;
            adam.step(net.params_mut(), &grad)?;
            if let Some(s) = net.stats() {
                nfe_f += s.forward.nfe;
                // Backward: the field's re-evaluations plus its vector-Jacobian products.
                nfe_b += s.backward_nfe + s.backward_vjp;
            }
            batches += 1;
        }
        let acc = net.accuracy(test.images(), test.labels())?;
        let b = batches.max(1) as f64;
        println!(
            "{epoch:>5}  {:>10.4}  {:>7.2}%  {:>13.1}  {:>13.1}",
            loss_sum / b,
            100.0 * acc,
            nfe_f as f64 / b,
            nfe_b as f64 / b
        );
    }
    Ok(())
}
