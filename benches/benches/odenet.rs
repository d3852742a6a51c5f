//! ODE-Net benchmarks (Chen et al. 2018, §7.1; `models::odenet`).
//!
//! * `odenet/step_mnist_c64/{odenet,rknet,resnet}`: one training step's value + gradient
//!   (forward pass, cross-entropy, backward pass on a reused tape) on a batch of 64
//!   images of the shipped MNIST subset (scaled to [0, 1]) at the paper's size: 64
//!   channels, 32 groups, Dopri5 at rtol = atol = 1e-3 for the ODE models (ODE-Net:
//!   checkpointed adjoint; RK-Net: backpropagation through the solver), at the
//!   initial parameters, on one thread with the whole batch on one tape
//!   (`chunk_samples = 0`, the fastest single-thread setting); `odenet_2threads`: ODE-Net
//!   with the default chunks of 32 samples on 2 threads (`ImageClassifier::set_threads`).
//! * `odenet/step_digits_c16/*`: the same on a batch of 64 8×8 digits with the
//!   `neuralode odenet` defaults (16 channels, 8 groups).
//!
//! * `odenet/field_conv_{c64_6x6,c16_2x2}/{value,vjp}/{winograd,patch_major}`: the ODE
//!   field's 3×3 convolution alone (stride 1, padding 1, batch 64; MNIST's 64 channels
//!   on 6×6 maps, the digits' 16 channels on 2×2 maps), its value and its value + VJP
//!   (`∂x`, `∂w`), by Winograd F(2×2, 3×3) and by the patch-major im2col + GEMM it
//!   replaced (`autodiff::set_winograd`).
//!
//! Targets (issue 14, item 8): an epoch of ODE-Net on the 5k subset (4,000 training
//! images, 63 batches of 64) in under a minute on this 2-core machine, i.e.
//! `odenet/step_mnist_c64/odenet` below 0.95 s; and at least 2× faster than
//! torchdiffeq's `odeint_adjoint` on the same batch at one thread:
//! `python models/scripts/odenet_torch.py --data mnist5k --channels 64 --epochs 1`
//! prints PyTorch's time per batch (the evaluation counts are printed beside it, as
//! they differ between the two solvers). Figures in `benches/README.md`.
#![allow(missing_docs)]

use std::hint::black_box;

use adjoint::Threads;
use autodiff::Tape;
use criterion::{Criterion, criterion_group, criterion_main};
use models::datasets::{ImageDataset, load_digits, load_mnist_5k};
use models::odenet::{
    ConvNetConfig, ImageClassifier, OdeNet, OdeNetConfig, ResNet, ResNetConfig, RkNet,
};

const BATCH: usize = 64;

/// One training step; not inlined, so that callgrind's `--toggle-collect=odenet::step`
/// counts exactly the steps.
#[inline(never)]
fn step(
    net: &mut dyn ImageClassifier<f32>,
    tape: &mut Tape<f32>,
    images: &[f32],
    labels: &[usize],
    shape: &[usize],
) -> f32 {
    tape.reset();
    tape.set_recording(true);
    let theta = tape
        .leaf(net.params(), &[net.n_params()])
        .expect("parameter leaf");
    let x = tape.constant(images, shape).expect("image batch");
    let loss = net.loss(tape, theta, x, labels).expect("loss");
    tape.backward_scalar(loss).expect("backward");
    theta.grad().expect("gradient")[0] + loss.item().expect("loss value")
}

fn group(c: &mut Criterion, name: &str, net: ConvNetConfig, data: ImageDataset<f32>) {
    let (images, labels, shape) = benches::strided_batch(data, BATCH);
    let ode = OdeNetConfig {
        rtol: 1e-3,
        atol: 1e-3,
        chunk_samples: 0,
        ..OdeNetConfig::new(net)
    };
    let mut threaded = OdeNet::new(&OdeNetConfig {
        chunk_samples: models::odenet::DEFAULT_CHUNK_SAMPLES,
        ..ode
    })
    .expect("ODE-Net");
    threaded
        .set_threads(&Threads::new(2).expect("a pool of 2 threads"))
        .expect("threads");
    let mut nets: Vec<(&str, Box<dyn ImageClassifier<f32>>)> = vec![
        ("odenet", Box::new(OdeNet::new(&ode).expect("ODE-Net"))),
        ("odenet_2threads", Box::new(threaded)),
        ("rknet", Box::new(RkNet::new(&ode).expect("RK-Net"))),
        (
            "resnet",
            Box::new(ResNet::new(&ResNetConfig::new(net)).expect("ResNet")),
        ),
    ];
    let mut g = c.benchmark_group(name);
    g.sample_size(10);
    let mut tape = Tape::new();
    for (label, net) in &mut nets {
        g.bench_function(*label, |b| {
            b.iter(|| black_box(step(net.as_mut(), &mut tape, &images, &labels, &shape)))
        });
    }
    g.finish();
}

fn odenet(c: &mut Criterion) {
    let mnist = load_mnist_5k::<f32>().expect("the shipped MNIST subset");
    group(c, "odenet/step_mnist_c64", ConvNetConfig::mnist(), mnist);
    let digits = load_digits::<f32>().expect("the shipped digits");
    group(c, "odenet/step_digits_c16", ConvNetConfig::digits(), digits);
}

/// The field's convolution alone, both paths, value and value + VJP.
fn field_conv(c: &mut Criterion) {
    for (name, ch, hw) in [
        ("odenet/field_conv_c64_6x6", 64, 6),
        ("odenet/field_conv_c16_2x2", 16, 2),
    ] {
        let wave = |n: usize, k: f32, a: f32| -> Vec<f32> {
            (0..n).map(|i| a * (k * i as f32).sin()).collect()
        };
        let x = wave(BATCH * ch * hw * hw, 0.37, 1.0);
        let w = wave(ch * ch * 9, 0.71, 1.0 / (9.0 * ch as f32).sqrt());
        let gy = wave(BATCH * ch * hw * hw, 0.53, 1.0);
        let (xs, ws) = ([BATCH, ch, hw, hw], [ch, ch, 3, 3]);
        let mut g = c.benchmark_group(name);
        let mut tape = Tape::<f32>::new();
        let (mut y_out, mut gw_out) = (vec![0.0f32; x.len()], vec![0.0f32; w.len()]);
        for (label, wino) in [
            ("winograd", autodiff::Winograd::Always),
            ("patch_major", autodiff::Winograd::Off),
        ] {
            let prev = autodiff::set_winograd(wino);
            g.bench_function(format!("value/{label}"), |b| {
                b.iter(|| {
                    tape.reset();
                    let xv = tape.constant(&x, &xs).expect("x");
                    let wv = tape.constant(&w, &ws).expect("w");
                    let y = xv.conv2d(wv, 1, 1);
                    y.value_into(&mut y_out).expect("y");
                    black_box(y_out[0])
                })
            });
            g.bench_function(format!("vjp/{label}"), |b| {
                b.iter(|| {
                    tape.reset();
                    tape.set_recording(true);
                    let xv = tape.leaf(&x, &xs).expect("x");
                    let wv = tape.leaf(&w, &ws).expect("w");
                    let y = xv.conv2d(wv, 1, 1);
                    tape.backward(y, &gy).expect("backward");
                    wv.grad_into(&mut gw_out).expect("∂w");
                    black_box(gw_out[0])
                })
            });
            autodiff::set_winograd(prev);
        }
        g.finish();
    }
}

criterion_group!(benches, odenet, field_conv);
criterion_main!(benches);
