//! After warm-up, a training step built from `nn` layers (forward, backward, flat
//! gradient, optimizer update) performs no heap allocation (counted on this thread by
//! `alloc_count`).

use autodiff::nn::{Activation, Conv2d, Conv2dConfig, GroupNorm, GruCell, Mlp, ParamStore};
use autodiff::optim::{Adam, Optimizer, Schedule, Scheduled, Sgd, SgdConfig};
use autodiff::{Error, Tape};

#[global_allocator]
static GLOBAL: alloc_count::Counting = alloc_count::Counting;

struct Model {
    f: Mlp,
    conv: Conv2d,
    gn: GroupNorm,
    gru: GruCell,
}

/// One evaluation: time-dependent MLP, conv + group norm, GRU; loss and `dL/dθ`.
fn step(
    tape: &mut Tape<f64>,
    m: &Model,
    theta: &[f64],
    z: &[f64],
    img: &[f64],
    grad: &mut [f64],
) -> Result<f64, Error> {
    tape.reset();
    tape.set_recording(true);
    let th = tape.leaf(theta, &[theta.len()])?;
    let zv = tape.constant(z, &[8, 2])?;
    let t = tape.constant(&[0.5], &[])?;
    let dz = m.f.forward_t(th, zv, t);
    let x = tape.constant(img, &[2, 2, 5, 5])?;
    let feat =
        m.gn.forward(th, m.conv.forward(th, x))
            .relu()
            .global_avg_pool2d();
    let h = m.gru.forward(th, dz.narrow(0, 0, 2), feat);
    let loss = dz.square().mean() + h.square().sum();
    let l = loss.item()?;
    tape.backward_scalar(loss)?;
    th.grad_into(grad)?;
    Ok(l)
}

#[test]
fn training_steps_do_not_allocate_after_warm_up() -> Result<(), Error> {
    let mut store = ParamStore::<f64>::new(0);
    let m = Model {
        f: Mlp::builder(2, 2)
            .hidden(&[16, 16])
            .activation(Activation::Tanh)
            .time_input(true)
            .build(&mut store, "f")?,
        conv: Conv2d::new(&mut store, "conv", Conv2dConfig::new(2, 4, 3).padding(1))?,
        gn: GroupNorm::new(&mut store, "gn", 2, 4, 1e-5, true)?,
        gru: GruCell::new(&mut store, "gru", 2, 4, true)?,
    };
    let z: Vec<f64> = (0..16).map(|i| (i as f64 * 0.37).sin()).collect();
    let img: Vec<f64> = (0..100).map(|i| (i as f64 * 0.11).cos()).collect();
    let mut grad = store.zeros_like();
    let mut tape = Tape::new();
    let mut adam = Scheduled::new(
        Adam::with_lr(1e-2)?,
        Schedule::cosine(1e-2, 100, 0.0)?.with_warmup(5)?,
    );
    let mut sgd = Sgd::new(SgdConfig {
        lr: 1e-3,
        momentum: 0.9,
        nesterov: true,
        ..SgdConfig::default()
    })?;
    let mut theta2 = store.as_slice().to_vec();
    // Warm-up: tape buffers and optimizer moments are sized here.
    let first = step(&mut tape, &m, store.as_slice(), &z, &img, &mut grad)?;
    adam.step(store.as_mut_slice(), &grad)?;
    sgd.step(&mut theta2, &grad)?;
    let (last, allocations) = alloc_count::allocations_in(|| -> Result<f64, Error> {
        let mut last = first;
        for _ in 0..20 {
            last = step(&mut tape, &m, store.as_slice(), &z, &img, &mut grad)?;
            adam.step(store.as_mut_slice(), &grad)?;
            sgd.step(&mut theta2, &grad)?;
        }
        Ok(last)
    });
    let last = last?;
    assert_eq!(allocations, 0, "allocations in steady state");
    assert!(last < first, "the loss decreases: {first} -> {last}");
    Ok(())
}
