//! Batch rows over threads (issue 18 item 3): `adjoint::ParallelTapeDynamics` on the W2
//! workload (the 2→64→64→2 tanh field on the autodiff tape, weights by `SplitMix64`
//! seed 1, `B` initial states uniform in `[-1, 1]` by seed 2, `t ∈ [0, 1]`, Dopri5 at
//! rtol = atol = 1e-6, `f64`, loss mean `z(1)²`, checkpointed adjoint).
//!
//! * `threads/eval_b4096/*`: one field evaluation at `B = 4096` on ONE thread, unchunked
//!   (`TapeDynamics`, one tape over all rows) against chunks of 64 … 1,024 rows (the
//!   cache-blocking effect alone; 128 is the default).
//! * `threads/b4096/{forward,value_and_grad}/*`: the whole solve, unchunked on one
//!   thread, chunked (128 rows) on 1 and on 2 threads (`THREADS_SWEEP=1,2,4,8,16` for
//!   other counts: `benches/scripts/device_threads.sh` runs it on a 16-core machine). **Goal: value + gradient at
//!   2 threads ≥ 1.7× faster than unchunked on 1 thread** (issue 18), on an otherwise idle
//!   2-core machine.
//! * `threads/b4096/value_and_grad/tanh_mlp_*`: the same with the hand-written field
//!   ([`adjoint::TanhMlp`]), unchunked and through [`adjoint::RowParallel`] (128 rows)
//!   on 1 and 2 threads.
//! * `threads/b4096/value_and_grad/solver_only`: the same solve with a near-free field
//!   (`ż = −θ z` on the 8,192 states, hand-written VJP): the solver's own vector work,
//!   which stays on the calling thread (the serial fraction that bounds the speed-up on
//!   many cores).
//! * `threads/b16/value_and_grad/*`: `B = 16` with the default settings (one chunk: the
//!   single-tape path) against `TapeDynamics`: must not be slower.
//!
//! The evaluation and VJP counts (the same in every variant: the evaluations are
//! bitwise equal) are printed to stderr once.
//!
//! `cargo bench -p benches --bench threads`
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use adjoint::test_problems::{W2_PARAMS, W2_WIDTHS, w2_forward, w2_loss, w2_states, w2_theta};
use adjoint::{
    AdjointSolver, Dynamics, FnDynamics, Method, Options, ParallelTapeDynamics, RowParallel,
    TanhMlp, TapeDynamics, Vjp,
};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

const D: usize = 2;

fn parallel(batch: usize, chunk: usize, threads: usize) -> impl Vjp<f64> {
    ParallelTapeDynamics::new(&[batch, D], W2_PARAMS, w2_forward())
        .and_then(|f| f.with_chunk_rows(chunk))
        .and_then(|f| f.with_threads(threads))
        .expect("valid settings")
}

/// The hand-written field ([`TanhMlp`], the same function) by rows over threads.
fn parallel_mlp(batch: usize, chunk: usize, threads: usize) -> impl Vjp<f64> {
    RowParallel::from_rows(batch, |rows| TanhMlp::new(&W2_WIDTHS, rows, false))
        .and_then(|f| f.with_chunk_rows(chunk))
        .and_then(|f| f.with_threads(threads))
        .expect("valid settings")
}

fn serial(batch: usize) -> impl Vjp<f64> {
    TapeDynamics::new(&[batch, D], W2_PARAMS, w2_forward()).expect("valid state shape")
}

fn eval_b4096(c: &mut Criterion) {
    const B: usize = 4096;
    let theta = w2_theta(1);
    let z = w2_states(B);
    let mut out = vec![0.0; B * D];
    let mut g = c.benchmark_group("threads/eval_b4096");
    g.sample_size(30).warm_up_time(Duration::from_millis(500));
    let mut f = serial(B);
    g.bench_function("unchunked", |b| {
        b.iter(|| f.eval(0.0, black_box(&z), &theta, &mut out).expect("eval"))
    });
    for chunk in [64, 128, 256, 512, 1024] {
        let mut f = parallel(B, chunk, 1);
        g.bench_with_input(
            BenchmarkId::new("chunked_1_thread", chunk),
            &chunk,
            |b, _| b.iter(|| f.eval(0.0, black_box(&z), &theta, &mut out).expect("eval")),
        );
    }
    g.finish();
}

fn solve<D: Vjp<f64>>(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    label: &str,
    f: &mut D,
    batch: usize,
    forward: bool,
) {
    let theta = w2_theta(1);
    let z0 = w2_states(batch);
    let ts = [0.0, 1.0];
    let mut s = AdjointSolver::new(Method::Dopri5, Options::with_tol(1e-6, 1e-6));
    s.value_and_grad(f, &z0, &theta, &ts, w2_loss(batch * D))
        .expect("gradient");
    if forward {
        eprintln!("B = {batch} {label}: {:?}", s.stats());
        g.bench_function(BenchmarkId::new("forward", label), |b| {
            b.iter(|| {
                s.forward(f, black_box(&z0), &theta, &ts)
                    .expect("forward")
                    .len()
            })
        });
    }
    g.bench_function(BenchmarkId::new("value_and_grad", label), |b| {
        b.iter(|| {
            s.value_and_grad(f, black_box(&z0), &theta, &ts, w2_loss(batch * D))
                .expect("gradient")
                .0
        })
    });
}

/// The thread counts of the chunked cases: `THREADS_SWEEP` (comma-separated, e.g.
/// `1,2,4,8,16` on a 16-core machine), else 1 and 2.
fn thread_sweep() -> Vec<usize> {
    std::env::var("THREADS_SWEEP")
        .ok()
        .map(|v| {
            v.split(',')
                .filter_map(|x| x.trim().parse().ok())
                .filter(|&n| n >= 1)
                .collect::<Vec<usize>>()
        })
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| vec![1, 2])
}

fn b4096(c: &mut Criterion) {
    const B: usize = 4096;
    let mut g = c.benchmark_group("threads/b4096");
    g.sample_size(10).warm_up_time(Duration::from_millis(500));
    solve(&mut g, "unchunked_1_thread", &mut serial(B), B, true);
    let sweep = thread_sweep();
    for &threads in &sweep {
        let label = format!("chunked_{threads}_threads");
        solve(&mut g, &label, &mut parallel(B, 128, threads), B, true);
    }
    let mut mlp = TanhMlp::new(&W2_WIDTHS, B, false).expect("valid widths");
    solve(&mut g, "tanh_mlp_unchunked_1_thread", &mut mlp, B, false);
    for &threads in &sweep {
        let label = format!("tanh_mlp_chunked_{threads}_threads");
        solve(&mut g, &label, &mut parallel_mlp(B, 128, threads), B, false);
    }
    let mut free = FnDynamics::new(
        B * D,
        1,
        |_t: f64, z: &[f64], th: &[f64], out: &mut [f64]| {
            for (o, z) in out.iter_mut().zip(z) {
                *o = -th[0] * z;
            }
        },
    )
    .with_vjp(|_t, z, th, a, gz, gth| {
        gth[0] = 0.0;
        for ((g, z), a) in gz.iter_mut().zip(z).zip(a) {
            *g = -th[0] * a;
            gth[0] -= a * z;
        }
        0.0
    });
    let z0 = w2_states(B);
    let mut s = AdjointSolver::new(Method::Dopri5, Options::with_tol(1e-6, 1e-6));
    s.value_and_grad(&mut free, &z0, &[3.0], &[0.0, 1.0], w2_loss(B * D))
        .expect("gradient");
    eprintln!("B = {B} solver_only: {:?}", s.stats());
    g.bench_function(BenchmarkId::new("value_and_grad", "solver_only"), |b| {
        b.iter(|| {
            s.value_and_grad(
                &mut free,
                black_box(&z0),
                &[3.0],
                &[0.0, 1.0],
                w2_loss(B * D),
            )
            .expect("gradient")
            .0
        })
    });
    g.finish();
}

fn b16(c: &mut Criterion) {
    const B: usize = 16;
    let mut g = c.benchmark_group("threads/b16");
    g.sample_size(30).warm_up_time(Duration::from_millis(500));
    solve(&mut g, "tape_dynamics", &mut serial(B), B, false);
    let mut f = ParallelTapeDynamics::new(&[B, D], W2_PARAMS, w2_forward()).expect("valid");
    assert_eq!(f.n_chunks(), 1);
    solve(&mut g, "parallel_default", &mut f, B, false);
    g.finish();
}

criterion_group!(benches, eval_b4096, b4096, b16);
criterion_main!(benches);
