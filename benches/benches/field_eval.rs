//! Per-evaluation cost of a Neural ODE field on the autodiff tape (issue 18, items 2
//! and 4), on the W2 workload: the 2→64→64→2 tanh MLP of
//! `adjoint::test_problems::{w2_field, w2_theta}` (`TapeDynamics` running
//! `(z·W₁ + b₁).tanh()…`, weights and biases `N(0,1)·2/√fan_in` from `SplitMix64` seed
//! 1), a batch of `B` states uniform in `[-1, 1]` (`SplitMix64` seed 2), `f64`.
//! The solves integrate `t ∈ [0, 1]` with Dopri5 at rtol = atol = 1e-6; the loss is the
//! mean of `z(1)²`, its gradient taken in the default (checkpointed) adjoint mode.
//! The evaluation counts of each solve are printed to stderr once.
//!
//! * `field_eval/b4096/*` (item 2): one evaluation `f(t, z, θ)` (`eval`), one VJP
//!   `aᵀ∂f/∂(z, θ, t)` (`vjp`, `a = ∂loss/∂z` at `z₀`), the forward solve and value +
//!   gradient. Goals: **≤ 0.8 ms per evaluation** (XLA: 1.0 ms on the same core) and
//!   **value + gradient ≤ 120 ms** on one core.
//! * `field_eval/b16/*` (item 4): `eval`, `vjp` and value + gradient at `B = 16`. Goal:
//!   **value + gradient ≤ 0.6 ms**.
//! * Beside the checkpointed `value_and_grad`, in both batch groups: the direct
//!   (discrete) adjoint with Hairer's settings (`value_and_grad_direct`), and with the
//!   peers' steps (`Options::neural_ode` + `DOPRI5_SHAMPINE`, torchdiffeq's: checkpointed
//!   `value_and_grad_peers`, direct `value_and_grad_direct_peers`). Gradient errors of each
//!   against rtol 1e-12: `cargo run --release -p adjoint --example gradient_modes_w2`.
//!
//! * `field_eval/mlp_b{16,4096}/*` (items 2 and 4 through the hand-written field
//!   `adjoint::TanhMlp`, same layout and values as the tape field): `eval` and `vjp` on
//!   its fused row-chunk path (the default for f64 on CPUs with AVX-512 or AVX2 + FMA),
//!   the same on the reference path (`eval_reference`, `vjp_reference`: a layer at a time
//!   through faer, the code before the fused path), and value + gradient in the default
//!   checkpointed mode. Goals (one core of the AVX-512 machine the issue was measured
//!   on): `B = 4096` **eval ≤ 0.75 ms, vjp ≤ 1.7 ms**, value + gradient ≤ 120 ms;
//!   `B = 16` **eval ≤ 3.0 µs, vjp ≤ 7.0 µs**.
//! * `field_eval/kernels/*`: the activation kernels on their own (`tanh` per 1,024
//!   values, f64 and f32; the tape's ELU over 65,536 values).
//!
//! `cargo bench -p benches --bench field_eval` (one core: prefix `taskset -c 0`).
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use adjoint::test_problems::{SplitMix64, w2_field, w2_loss, w2_states, w2_theta};
use adjoint::{AdjointSolver, Dynamics, GradientMode, Method, Options, TanhMlp, Vjp};
use autodiff::{Float, Tape};
use criterion::{Criterion, criterion_group, criterion_main};
use ode_solvers::tableau::DOPRI5_SHAMPINE;

const D: usize = 2;

fn group(c: &mut Criterion, batch: usize, solve_forward: bool) {
    let theta = w2_theta(1);
    let z0 = w2_states(batch);
    let n = batch * D;
    // The VJP's cotangent: the loss gradient `2 z / n` at `z₀`.
    let a: Vec<f64> = z0.iter().map(|z| 2.0 * z / n as f64).collect();
    let mut f = w2_field(batch).expect("valid state shape");
    let (mut out, mut g_th) = (vec![0.0; n], vec![0.0; theta.len()]);
    let ts = [0.0, 1.0];
    let opts = Options::with_tol(1e-6, 1e-6);

    let mut g = c.benchmark_group(format!("field_eval/b{batch}"));
    g.sample_size(if batch > 256 { 20 } else { 50 })
        .warm_up_time(Duration::from_millis(500));
    g.bench_function("eval", |b| {
        b.iter(|| {
            f.eval(0.0, black_box(&z0), &theta, &mut out).expect("eval");
            out[0]
        })
    });
    g.bench_function("vjp", |b| {
        b.iter(|| {
            f.vjp(0.0, black_box(&z0), &theta, &a, &mut out, &mut g_th)
                .expect("vjp")
        })
    });
    if solve_forward {
        let mut s = AdjointSolver::new(Method::Dopri5, opts.clone());
        s.forward(&mut f, &z0, &theta, &ts).expect("forward");
        eprintln!("B = {batch}: forward {:?}", s.stats().forward);
        g.sample_size(10);
        g.bench_function("forward", |b| {
            b.iter(|| {
                s.forward(&mut f, black_box(&z0), &theta, &ts)
                    .expect("forward")
                    .len()
            })
        });
    }
    let mut s = AdjointSolver::new(Method::Dopri5, opts);
    s.value_and_grad(&mut f, &z0, &theta, &ts, w2_loss(n))
        .expect("gradient");
    eprintln!("B = {batch}: value_and_grad {:?}", s.stats());
    if batch > 256 {
        g.sample_size(10);
    }
    g.bench_function("value_and_grad", |b| {
        b.iter(|| {
            s.value_and_grad(&mut f, black_box(&z0), &theta, &ts, w2_loss(n))
                .expect("gradient")
                .0
        })
    });
    for (label, method, opts, mode) in [
        (
            "value_and_grad_direct",
            Method::Dopri5,
            Options::with_tol(1e-6, 1e-6),
            GradientMode::Direct,
        ),
        (
            "value_and_grad_peers",
            Method::Rk(&DOPRI5_SHAMPINE),
            Options::neural_ode(1e-6, 1e-6),
            GradientMode::checkpointed(),
        ),
        (
            "value_and_grad_direct_peers",
            Method::Rk(&DOPRI5_SHAMPINE),
            Options::neural_ode(1e-6, 1e-6),
            GradientMode::Direct,
        ),
    ] {
        let mut s = AdjointSolver::new(method, opts).with_mode(mode);
        s.value_and_grad(&mut f, &z0, &theta, &ts, w2_loss(n))
            .expect("gradient");
        eprintln!("B = {batch}: {label} {:?}", s.stats());
        g.bench_function(label, |b| {
            b.iter(|| {
                s.value_and_grad(&mut f, black_box(&z0), &theta, &ts, w2_loss(n))
                    .expect("gradient")
                    .0
            })
        });
    }
    g.finish();
}

/// The field's activation alone: `tanh` over 1,024 values uniform in `[-3, 3]`
/// (`Float::tanh_slice`, f64 and f32), and the tape's ELU (α = 1) over a 1024 × 64 leaf
/// (record, evaluate, read back).
fn kernels(c: &mut Criterion) {
    let mut rng = SplitMix64::new(3);
    let x: Vec<f64> = (0..1024).map(|_| 3.0 * rng.uniform_pm1()).collect();
    let xf: Vec<f32> = x.iter().map(|&v| v as f32).collect();
    let (mut y, mut yf) = (vec![0.0; 1024], vec![0.0f32; 1024]);
    let mut g = c.benchmark_group("field_eval/kernels");
    g.bench_function("tanh_1024_f64", |b| {
        b.iter(|| f64::tanh_slice(black_box(&x), &mut y))
    });
    g.bench_function("tanh_1024_f32", |b| {
        b.iter(|| f32::tanh_slice(black_box(&xf), &mut yf))
    });
    let xe: Vec<f64> = (0..65_536).map(|_| 3.0 * rng.uniform_pm1()).collect();
    let mut out = vec![0.0; xe.len()];
    let mut tape = Tape::<f64>::new();
    g.bench_function("elu_1024x64_f64", |b| {
        b.iter(|| {
            tape.reset();
            let v = tape.leaf(black_box(&xe), &[1024, 64]).expect("leaf");
            v.elu(1.0).value_into(&mut out).expect("value");
        })
    });
    g.finish();
}

/// `TanhMlp` (2→64→64→2, no time input) at `batch`: fused and reference `eval` / `vjp`,
/// and value + gradient (checkpointed, Dopri5, rtol = atol = 1e-6) on the fused path.
fn mlp_group(c: &mut Criterion, batch: usize) {
    let theta = w2_theta(1);
    let z0 = w2_states(batch);
    let n = batch * D;
    let a: Vec<f64> = z0.iter().map(|z| 2.0 * z / n as f64).collect();
    let fused = TanhMlp::<f64>::new(&[D, 64, 64, D], batch, false).expect("valid widths");
    let mut reference = fused.clone().with_reference_kernels();
    let mut fused = fused;
    eprintln!(
        "B = {batch}: TanhMlp fused path rows per chunk {:?}",
        fused.chunk_rows()
    );
    let (mut out, mut g_z, mut g_th) = (vec![0.0; n], vec![0.0; n], vec![0.0; theta.len()]);
    let mut g = c.benchmark_group(format!("field_eval/mlp_b{batch}"));
    g.sample_size(if batch > 256 { 20 } else { 50 })
        .warm_up_time(Duration::from_millis(500));
    for (label, f) in [("", &mut fused), ("_reference", &mut reference)] {
        g.bench_function(format!("eval{label}"), |b| {
            b.iter(|| {
                f.eval(0.0, black_box(&z0), &theta, &mut out).expect("eval");
                out[0]
            })
        });
        g.bench_function(format!("vjp{label}"), |b| {
            b.iter(|| {
                f.vjp(0.0, black_box(&z0), &theta, &a, &mut g_z, &mut g_th)
                    .expect("vjp")
            })
        });
    }
    let mut s = AdjointSolver::new(Method::Dopri5, Options::with_tol(1e-6, 1e-6));
    s.value_and_grad(&mut fused, &z0, &theta, &[0.0, 1.0], w2_loss(n))
        .expect("gradient");
    eprintln!("B = {batch}: TanhMlp value_and_grad {:?}", s.stats());
    if batch > 256 {
        g.sample_size(10);
    }
    g.bench_function("value_and_grad", |b| {
        b.iter(|| {
            s.value_and_grad(&mut fused, black_box(&z0), &theta, &[0.0, 1.0], w2_loss(n))
                .expect("gradient")
                .0
        })
    });
    g.finish();
}

fn mlp(c: &mut Criterion) {
    mlp_group(c, 16);
    mlp_group(c, 4096);
}

fn b4096(c: &mut Criterion) {
    group(c, 4096, true);
}

fn b16(c: &mut Criterion) {
    group(c, 16, false);
}

criterion_group!(benches, kernels, b4096, b16, mlp);
criterion_main!(benches);
