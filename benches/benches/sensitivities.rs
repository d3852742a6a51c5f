//! Forward sensitivities and the adjoint against the parameter count (issue 18, item 5).
//!
//! The workload: the 2→W→W→2 tanh MLP Neural ODE, `P = W² + 6W + 2` (W = 8, 16, 32, 64,
//! 128: P = 114, 354, 1218, 4482, 17154), a batch of 16 states, t ∈ [0, 1], Dopri5 at
//! rtol = atol = 1e-6, f64, loss = mean z(1)², the parameters of
//! `TanhMlp::init_params(W, 1.0)` and the states of `MlpFamily::new(16)`
//! (`adjoint::scaling`); `benches/scripts/peers_fwd.py` times diffrax and torchdiffeq on
//! the same field, parameters and states.
//!
//! Goals (issue 18, item 5): forward sensitivities at least 3× faster than diffrax's
//! `jacfwd` (`ForwardMode`) at every P from 114 to 17,154, and the checkpointed adjoint at
//! P = 17,154 in at most 3 ms.
//!
//! * `sensitivities/forward_mlp/P`: `GradientMode::Forward` on `TanhMlp` (hand-written
//!   derivatives: the block right-hand side `Vjp::sensitivity_rhs`).
//! * `sensitivities/forward_tape/P`: `GradientMode::Forward` on the same field written as
//!   `TapeDynamics` (explicit Jacobians: one recording, `n` reverse passes).
//! * `sensitivities/forward_jvp_mlp/P` (P ≤ 354): `GradientMode::ForwardJvp` on `TanhMlp`,
//!   the column-by-column JVPs `Forward` used before the block path.
//! * `sensitivities/adjoint_mlp/P`, `sensitivities/adjoint_tape/P`: the default
//!   checkpointed adjoint on either representation.
//!
//! Counts (evaluations, steps, VJPs, JVPs) and `|dL/dθ|` (compare with the peers' JSON)
//! are printed to stderr once per P.
#![allow(missing_docs)]

use std::hint::black_box;

use adjoint::scaling::MlpFamily;
use adjoint::{AdjointSolver, GradientMode, Method, Options, TapeDynamics, Vjp};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

const BATCH: usize = 16;
const WIDTHS: [usize; 5] = [8, 16, 32, 64, 128];

fn loss(zs: &[f64], dl: &mut [f64]) -> f64 {
    let n = BATCH * 2;
    let zt = &zs[zs.len() - n..];
    let m = n as f64;
    let len = dl.len();
    for (o, z) in dl[len - n..].iter_mut().zip(zt) {
        *o = 2.0 * z / m;
    }
    zt.iter().map(|z| z * z).sum::<f64>() / m
}

/// The family's field on the tape, in `TanhMlp`'s parameter layout.
fn tape_field(w: usize) -> impl Vjp<f64> {
    let (d, h) = (2, w);
    let p = h * h + 6 * h + 2;
    TapeDynamics::new(&[BATCH, d], p, move |_tape, _t, z, th| {
        let (o1, o2) = (d * h + h, d * h + h + h * h + h);
        let a = (z.matmul(th.view(0, &[d, h])) + th.view(d * h, &[h])).tanh();
        let a = (a.matmul(th.view(o1, &[h, h])) + th.view(o1 + h * h, &[h])).tanh();
        a.matmul(th.view(o2, &[h, d])) + th.view(o2 + h * d, &[d])
    })
    .expect("valid state shape")
}

fn solver(mode: GradientMode<f64>) -> AdjointSolver<f64> {
    AdjointSolver::new(Method::Dopri5, Options::with_tol(1e-6, 1e-6)).with_mode(mode)
}

fn report<D: Vjp<f64>>(label: &str, d: &mut D, mode: GradientMode<f64>, z0: &[f64], th: &[f64]) {
    let mut s = solver(mode);
    let (l, g) = s
        .value_and_grad(d, z0, th, &[0.0, 1.0], loss)
        .expect("gradient");
    let norm = g.theta.iter().map(|x| x * x).sum::<f64>().sqrt();
    eprintln!(
        "P = {:>5} {label:<16} L = {l:.12e} |dL/dθ| = {norm:.12e} {:?}",
        th.len(),
        s.stats()
    );
}

fn sensitivities(c: &mut Criterion) {
    let family = MlpFamily::new(BATCH);
    let mut g = c.benchmark_group("sensitivities");
    g.sample_size(10);
    g.warm_up_time(std::time::Duration::from_secs(1));
    g.measurement_time(std::time::Duration::from_secs(4));
    let ts = [0.0, 1.0];
    for w in WIDTHS {
        let inst = family.instance::<f64>(w).expect("valid width");
        let (mut mlp, z0, theta) = (inst.dynamics, inst.z0, inst.theta);
        let mut tape = tape_field(w);
        let p = theta.len();
        report("forward_mlp", &mut mlp, GradientMode::Forward, &z0, &theta);
        report(
            "forward_tape",
            &mut tape,
            GradientMode::Forward,
            &z0,
            &theta,
        );
        report(
            "adjoint_mlp",
            &mut mlp,
            GradientMode::checkpointed(),
            &z0,
            &theta,
        );
        report(
            "adjoint_tape",
            &mut tape,
            GradientMode::checkpointed(),
            &z0,
            &theta,
        );
        let mut cases: Vec<(&str, GradientMode<f64>, bool)> = vec![
            ("forward_mlp", GradientMode::Forward, false),
            ("forward_tape", GradientMode::Forward, true),
            ("adjoint_mlp", GradientMode::checkpointed(), false),
            ("adjoint_tape", GradientMode::checkpointed(), true),
        ];
        if w <= 16 {
            cases.push(("forward_jvp_mlp", GradientMode::ForwardJvp, false));
        }
        for (label, mode, on_tape) in cases {
            let mut s = solver(mode);
            g.bench_function(BenchmarkId::new(label, p), |b| {
                b.iter(|| {
                    let r = if on_tape {
                        s.value_and_grad(&mut tape, black_box(&z0), &theta, &ts, loss)
                    } else {
                        s.value_and_grad(&mut mlp, black_box(&z0), &theta, &ts, loss)
                    };
                    r.expect("gradient").0
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, sensitivities);
criterion_main!(benches);
