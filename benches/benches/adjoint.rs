//! Adjoint benchmarks.
//!
//! * `adjoint/neural_ode_b16/*`: one value + gradient of the 2→64→64→2 tanh MLP
//!   Neural ODE at batch 16 (`TapeDynamics`, Dopri5, rtol = atol = 1e-6, t ∈ [0, 1],
//!   loss = mean z(1)²) in each gradient mode, next to the forward solve alone and the
//!   network's own evaluation and VJP. Backward / forward =
//!   `(value_and_grad − forward) / forward`; time outside the network =
//!   `1 − (nfe · eval + n_vjp · vjp) / value_and_grad` (counts printed to stderr once).
//! * `adjoint/scaling/*`: one gradient against the parameter count `P` of a
//!   2→W→W→2 MLP (hand-written derivatives), adjoint modes versus forward sensitivities;
//!   the full sweep with its table and crossover is
//!   `cargo run --release -p adjoint --example sensitivity_scaling`.
#![allow(missing_docs)]

use std::hint::black_box;

use adjoint::test_problems::{Mlp, SplitMix64, w2_field};
use adjoint::{AdjointSolver, Dynamics, GradientMode, Method, Options, Vjp};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

const D: usize = 2;
const H: usize = 64;
const BATCH: usize = 16;
const P: usize = D * H + H + H * H + H + H * D + D;

fn loss(zs: &[f64], dl: &mut [f64]) -> f64 {
    let n = BATCH * D;
    let zt = &zs[zs.len() - n..];
    let m = n as f64;
    let len = dl.len();
    for (o, z) in dl[len - n..].iter_mut().zip(zt) {
        *o = 2.0 * z / m;
    }
    zt.iter().map(|z| z * z).sum::<f64>() / m
}

fn neural_ode(c: &mut Criterion) {
    let mut f = w2_field(BATCH).expect("valid state shape");
    let theta = Mlp::<f64>::new(&[D, H, H, D], BATCH, false)
        .expect("valid widths")
        .init_params(1, 1.0);
    let mut rng = SplitMix64::new(2);
    let z0: Vec<f64> = (0..BATCH * D).map(|_| rng.uniform_pm1()).collect();
    let ts = [0.0, 1.0];
    let opts = Options::with_tol(1e-6, 1e-6);
    let modes = [
        GradientMode::checkpointed(),
        GradientMode::backsolve(false),
        GradientMode::backsolve(true),
        GradientMode::Direct,
    ];
    for mode in &modes {
        let mut s = AdjointSolver::new(Method::Dopri5, opts.clone()).with_mode(mode.clone());
        s.value_and_grad(&mut f, &z0, &theta, &ts, loss)
            .expect("solve");
        eprintln!("{:<14} {:?}", mode.name(), s.stats());
    }
    let mut g = c.benchmark_group("adjoint/neural_ode_b16");
    let mut out = vec![0.0; BATCH * D];
    let (mut gz, mut gth) = (vec![0.0; BATCH * D], vec![0.0; P]);
    g.bench_function("mlp_eval", |b| {
        b.iter(|| f.eval(0.5, black_box(&z0), &theta, &mut out).expect("eval"))
    });
    let a = vec![0.1; BATCH * D];
    g.bench_function("mlp_vjp", |b| {
        b.iter(|| {
            f.vjp(0.5, black_box(&z0), &theta, &a, &mut gz, &mut gth)
                .expect("vjp")
        })
    });
    let mut s = AdjointSolver::new(Method::Dopri5, opts.clone());
    g.bench_function("forward", |b| {
        b.iter(|| {
            s.forward(&mut f, black_box(&z0), &theta, &ts)
                .expect("forward")
                .len()
        })
    });
    for mode in &modes {
        let label = match mode {
            GradientMode::Backsolve { backward } if backward.seminorm => "backsolve_seminorm",
            m => m.name(),
        };
        let mut s = AdjointSolver::new(Method::Dopri5, opts.clone()).with_mode(mode.clone());
        g.bench_function(BenchmarkId::new("value_and_grad", label), |b| {
            b.iter(|| {
                s.value_and_grad(&mut f, black_box(&z0), &theta, &ts, loss)
                    .expect("gradient")
                    .0
            })
        });
    }
    g.finish();
}

fn scaling(c: &mut Criterion) {
    let mut g = c.benchmark_group("adjoint/scaling");
    g.sample_size(10);
    for w in [8usize, 32, 128] {
        let mut mlp = Mlp::<f64>::new(&[2, w, w, 2], 1, false).expect("valid widths");
        let theta = mlp.init_params(w as u64, 1.0);
        let p = mlp.n_params();
        let z0 = [0.3, -0.4];
        let modes: &[GradientMode<f64>] = if w <= 32 {
            &[
                GradientMode::checkpointed(),
                GradientMode::Direct,
                GradientMode::Forward,
            ]
        } else {
            &[GradientMode::checkpointed(), GradientMode::Direct]
        };
        for mode in modes {
            let mut s = AdjointSolver::new(Method::Dopri5, Options::with_tol(1e-6, 1e-6))
                .with_mode(mode.clone());
            g.bench_function(BenchmarkId::new(mode.name(), p), |b| {
                b.iter(|| {
                    s.value_and_grad(&mut mlp, black_box(&z0), &theta, &[0.0, 1.0], |zs, dl| {
                        dl[2..].copy_from_slice(&zs[2..]);
                        0.5 * (zs[2] * zs[2] + zs[3] * zs[3])
                    })
                    .expect("gradient")
                    .0
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, neural_ode, scaling);
criterion_main!(benches);
