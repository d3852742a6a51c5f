//! Neural ODE solves on the W2 workload of issue 18: a 2→64→64→2 tanh field (every weight
//! and bias `N(0,1)·2/√fan_in`, drawn by `SplitMix64` seed 1 with Box–Muller), a batch of
//! `B` initial states uniform in `[-1, 1]` (seed 2), `t ∈ [0, 1]`, Dopri5 at
//! rtol = atol = 1e-6, `f64`, on the autodiff tape (`TapeDynamics`).
//!
//! * `neural_ode_solve/many_outputs/*` (item 6): `B = 16`, 2, 11, 101 and 1,001 evenly
//!   spaced output times, loss = mean of `z(tᵢ)²` over the outputs after `t₀`; the forward solve
//!   alone and value + gradient in the checkpointed (default) and direct modes. The
//!   evaluation counts of each case are printed to stderr once (they do not depend on the
//!   machine's load; `benches/scripts/peers_w2.py` prints diffrax's and torchdiffeq's on
//!   the same field and states).
//!
//! * `neural_ode_solve/controller/*` (item 1): `B = 16` value + gradient (checkpointed,
//!   loss mean `z(1)²`) and `B = 4096` forward, with our PI controller (Hairer's DOPRI5
//!   constants, the default: `pi_hairer`), the I controller of diffrax and torchdiffeq
//!   (`α = 0.2`, `β = 0`, safety 0.9, factors `[0.2, 10]`) with Hairer's first step
//!   (`i_alpha_0.2`), the Neural ODE preset `Options::neural_ode` (that I controller and
//!   the RMS first step: `neural_ode`, what ODE-Net uses) and the preset with Shampine's
//!   error estimate (`Method::Rk(&DOPRI5_SHAMPINE)`: `peers`, torchdiffeq's very steps);
//!   evaluation counts printed to stderr. The accuracy side is
//!   `cargo run --release -p adjoint --example controller_work_precision`.
//!
//! * `neural_ode_solve/hand_written/*` (item 4): value + gradient (checkpointed, loss
//!   mean `z(1)²`) of the same field and states as `adjoint::TanhMlp` (hand-written VJP,
//!   no tape; the same parameter layout and values) beside the tape's `w2_field`, at
//!   `B = 16` and `B = 4096`, with Hairer's settings (`hairer`) and the Neural ODE preset
//!   (`neural_ode`); and in the direct (discrete) mode, with Hairer's settings
//!   (`direct_hairer`) and with the peers' steps (`direct_peers`: `Options::neural_ode`,
//!   `Method::Rk(&DOPRI5_SHAMPINE)`, as diffrax's `RecursiveCheckpointAdjoint` on
//!   torchdiffeq's steps). `cargo run --release -p adjoint --example gradient_modes_w2`
//!   gives every mode's counts and gradient error. The direct mode keeps `TanhMlp`'s
//!   residuals (hidden activations) up to the default 32 MiB
//!   (`AdjointSolver::set_residual_bytes`); `direct_peers_recompute` keeps none (every VJP
//!   evaluates the field again) and `direct_peers_keep_all` has no cap (`TanhMlp` only: the
//!   tape keeps no residuals).
//!
//! `cargo bench -p benches --bench neural_ode_solve`
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use adjoint::test_problems::{w2_field, w2_loss, w2_states, w2_theta};
use adjoint::{AdjointSolver, GradientMode, Method, Options, TanhMlp, Vjp};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use ode_solvers::PiController;
use ode_solvers::tableau::DOPRI5_SHAMPINE;

const D: usize = 2;

fn many_outputs(c: &mut Criterion) {
    const BATCH: usize = 16;
    let mut f = w2_field(BATCH).expect("valid state shape");
    let theta = w2_theta(1);
    let z0 = w2_states(BATCH);
    let opts = Options::with_tol(1e-6, 1e-6);
    let modes = [GradientMode::checkpointed(), GradientMode::Direct];
    let mut g = c.benchmark_group("neural_ode_solve/many_outputs");
    g.sample_size(10).warm_up_time(Duration::from_millis(500));
    for n_out in [2usize, 11, 101, 1001] {
        let ts: Vec<f64> = (0..n_out).map(|i| i as f64 / (n_out - 1) as f64).collect();
        let mut s = AdjointSolver::new(Method::Dopri5, opts.clone());
        s.forward(&mut f, &z0, &theta, &ts).expect("forward");
        eprintln!("outputs {n_out:>5}: forward {:?}", s.stats().forward);
        g.bench_with_input(BenchmarkId::new("forward", n_out), &ts, |b, ts| {
            b.iter(|| {
                s.forward(&mut f, black_box(&z0), &theta, ts)
                    .expect("forward")
                    .len()
            })
        });
        for mode in &modes {
            let mut s = AdjointSolver::new(Method::Dopri5, opts.clone()).with_mode(mode.clone());
            s.value_and_grad(&mut f, &z0, &theta, &ts, w2_loss(BATCH * D))
                .expect("gradient");
            eprintln!("outputs {n_out:>5}: {:<13} {:?}", mode.name(), s.stats());
            let id = BenchmarkId::new(format!("value_and_grad/{}", mode.name()), n_out);
            g.bench_with_input(id, &ts, |b, ts| {
                b.iter(|| {
                    s.value_and_grad(&mut f, black_box(&z0), &theta, ts, w2_loss(BATCH * D))
                        .expect("gradient")
                        .0
                })
            });
        }
    }
    g.finish();
}

fn controller(c: &mut Criterion) {
    let theta = w2_theta(1);
    let i_controller = PiController {
        safety: 0.9,
        min_factor: 0.2,
        max_factor: 10.0,
        beta: 0.0,
        alpha: Some(0.2),
    };
    let ts = [0.0, 1.0];
    let mut g = c.benchmark_group("neural_ode_solve/controller");
    g.sample_size(10).warm_up_time(Duration::from_millis(500));
    let settings = [
        ("pi_hairer", Method::Dopri5, Options::with_tol(1e-6, 1e-6)),
        (
            "i_alpha_0.2",
            Method::Dopri5,
            Options {
                controller: Some(i_controller),
                ..Options::with_tol(1e-6, 1e-6)
            },
        ),
        (
            "neural_ode",
            Method::Dopri5,
            Options::neural_ode(1e-6, 1e-6),
        ),
        (
            "peers",
            Method::Rk(&DOPRI5_SHAMPINE),
            Options::neural_ode(1e-6, 1e-6),
        ),
    ];
    for (label, method, opts) in settings {
        let (mut f, z0) = (w2_field(16).expect("valid state shape"), w2_states(16));
        let mut s = AdjointSolver::new(method, opts.clone());
        s.value_and_grad(&mut f, &z0, &theta, &ts, w2_loss(16 * D))
            .expect("gradient");
        eprintln!("controller {label:<12} B = 16: {:?}", s.stats());
        g.bench_function(BenchmarkId::new("value_and_grad_b16", label), |b| {
            b.iter(|| {
                s.value_and_grad(&mut f, black_box(&z0), &theta, &ts, w2_loss(16 * D))
                    .expect("gradient")
                    .0
            })
        });
        let (mut f, z0) = (w2_field(4096).expect("valid state shape"), w2_states(4096));
        let mut s = AdjointSolver::new(method, opts);
        s.forward(&mut f, &z0, &theta, &ts).expect("forward");
        eprintln!("controller {label:<12} B = 4096: {:?}", s.stats().forward);
        g.bench_function(BenchmarkId::new("forward_b4096", label), |b| {
            b.iter(|| {
                s.forward(&mut f, black_box(&z0), &theta, &ts)
                    .expect("forward")
                    .len()
            })
        });
    }
    g.finish();
}

/// The W2 field as `TanhMlp` (hand-written derivatives) and on the tape, value + gradient.
fn hand_written(c: &mut Criterion) {
    let theta = w2_theta(1);
    let ts = [0.0, 1.0];
    let mut g = c.benchmark_group("neural_ode_solve/hand_written");
    g.sample_size(10).warm_up_time(Duration::from_millis(500));
    for batch in [16, 4096] {
        let z0 = w2_states(batch);
        for (label, method, opts, mode) in [
            (
                "hairer",
                Method::Dopri5,
                Options::with_tol(1e-6, 1e-6),
                GradientMode::checkpointed(),
            ),
            (
                "neural_ode",
                Method::Dopri5,
                Options::neural_ode(1e-6, 1e-6),
                GradientMode::checkpointed(),
            ),
            (
                "direct_hairer",
                Method::Dopri5,
                Options::with_tol(1e-6, 1e-6),
                GradientMode::Direct,
            ),
            (
                "direct_peers",
                Method::Rk(&DOPRI5_SHAMPINE),
                Options::neural_ode(1e-6, 1e-6),
                GradientMode::Direct,
            ),
            (
                "direct_peers_recompute",
                Method::Rk(&DOPRI5_SHAMPINE),
                Options::neural_ode(1e-6, 1e-6),
                GradientMode::Direct,
            ),
            (
                "direct_peers_keep_all",
                Method::Rk(&DOPRI5_SHAMPINE),
                Options::neural_ode(1e-6, 1e-6),
                GradientMode::Direct,
            ),
        ] {
            let mut fields: [(&str, Box<dyn Vjp<f64>>); 2] = [
                (
                    "tanh_mlp",
                    Box::new(TanhMlp::new(&[2, 64, 64, 2], batch, false).expect("widths")),
                ),
                (
                    "tape",
                    Box::new(w2_field(batch).expect("valid state shape")),
                ),
            ];
            for (field, f) in &mut fields {
                let mut s = AdjointSolver::new(method, opts.clone()).with_mode(mode.clone());
                let residual_bytes = match label {
                    "direct_peers_recompute" => Some(0),
                    "direct_peers_keep_all" => Some(usize::MAX),
                    _ => None,
                };
                if let Some(bytes) = residual_bytes {
                    if *field == "tape" {
                        continue;
                    }
                    s.set_residual_bytes(bytes);
                }
                let (l, _) = s
                    .value_and_grad(f.as_mut(), &z0, &theta, &ts, w2_loss(batch * D))
                    .expect("gradient");
                eprintln!("{field} {label} B = {batch}: loss {l:.6e} {:?}", s.stats());
                let id = BenchmarkId::new(format!("{field}_b{batch}"), label);
                g.bench_function(id, |b| {
                    b.iter(|| {
                        s.value_and_grad(
                            f.as_mut(),
                            black_box(&z0),
                            &theta,
                            &ts,
                            w2_loss(batch * D),
                        )
                        .expect("gradient")
                        .0
                    })
                });
            }
        }
    }
    g.finish();
}

criterion_group!(benches, many_outputs, controller, hand_written);
criterion_main!(benches);
