//! Cost of many output times: evaluations, VJPs and time of one value + gradient of the
//! W2 Neural ODE workload (2→64→64→2 tanh field, weights `N(0,1)·2/√fan_in`, batch 16,
//! Dopri5 at rtol = atol = 1e-6 on `t ∈ [0, 1]`, loss = mean of `z(tᵢ)²` over every
//! output time after `t₀`) for 2, 11, 101 and 1,001 evenly spaced output times, in every gradient
//! mode, next to `ode_solvers::odeint` on the same field.
//!
//! Run with `cargo run --release -p adjoint --example many_output_times` (add `--json` for
//! one JSON object per line). Times are the median of a few repetitions on one thread and
//! depend on the machine's load; the counts do not.

use std::time::Instant;

use adjoint::test_problems::{SplitMix64, w2_field, w2_theta};
use adjoint::{AdjointSolver, Checkpoints, Dynamics, GradientMode, Method, Options};

const D: usize = 2;
const BATCH: usize = 16;

/// Mean of `z²` over every output time after the first, and `dL/dz`.
fn loss(zs: &[f64], dl: &mut [f64]) -> f64 {
    let n = BATCH * D;
    let (zs, dl) = (&zs[n..], &mut dl[n..]);
    let m = zs.len() as f64;
    for (g, z) in dl.iter_mut().zip(zs) {
        *g = 2.0 * z / m;
    }
    zs.iter().map(|z| z * z).sum::<f64>() / m
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let json = std::env::args().any(|a| a == "--json");
    // The field on the autodiff tape, as the benches and the models run it.
    let mut f = w2_field(BATCH)?;
    let theta = w2_theta(1);
    assert_eq!(theta.len(), f.n_params());
    let mut rng = SplitMix64::new(2);
    let z0: Vec<f64> = (0..BATCH * D).map(|_| rng.uniform_pm1()).collect();
    let opts = Options::with_tol(1e-6, 1e-6);
    let modes: Vec<(&str, GradientMode<f64>)> = vec![
        ("checkpointed", GradientMode::checkpointed()),
        (
            "checkpointed-budget8",
            GradientMode::Checkpointed {
                checkpoints: Checkpoints::Budget(8),
                backward: adjoint::BackwardSolver {
                    seminorm: true,
                    ..Default::default()
                },
            },
        ),
        ("backsolve", GradientMode::backsolve(true)),
        ("direct", GradientMode::Direct),
    ];
    if !json {
        println!(
            "{:<22} {:>7} {:>8} {:>8} {:>8} {:>9} {:>10}",
            "mode", "outputs", "fwd nfe", "fwd acc", "bwd nfe", "bwd vjp", "ms (v+g)"
        );
    }
    for n_out in [2usize, 11, 101, 1001] {
        let ts: Vec<f64> = (0..n_out).map(|i| i as f64 / (n_out - 1) as f64).collect();
        // odeint on the same field (dense output).
        let mut sys = |t: f64, y: &[f64], dy: &mut [f64]| {
            f.eval(t, y, &theta, dy).expect("valid sizes");
        };
        let sol = ode_solvers::odeint(&mut sys, &z0, &ts, Method::Dopri5, &opts)?;
        if json {
            println!(
                "{{\"mode\":\"odeint\",\"outputs\":{n_out},\"forward_nfe\":{}}}",
                sol.stats.nfe
            );
        } else {
            println!(
                "{:<22} {:>7} {:>8} {:>8}",
                "odeint (forward)", n_out, sol.stats.nfe, sol.stats.accepted
            );
        }
        for (name, mode) in &modes {
            let mut s = AdjointSolver::new(Method::Dopri5, opts.clone()).with_mode(mode.clone());
            s.value_and_grad(&mut f, &z0, &theta, &ts, loss)?;
            let st = s.stats();
            let reps = if n_out > 500 { 3 } else { 7 };
            let times: Vec<f64> = (0..reps)
                .map(|_| {
                    let t = Instant::now();
                    s.value_and_grad(&mut f, &z0, &theta, &ts, loss)
                        .expect("solved once already");
                    t.elapsed().as_secs_f64() * 1e3
                })
                .collect();
            let ms = median(times);
            if json {
                println!(
                    "{{\"mode\":\"{name}\",\"outputs\":{n_out},\"forward_nfe\":{},\"forward_accepted\":{},\"backward_nfe\":{},\"backward_vjp\":{},\"ms\":{ms:.4}}}",
                    st.forward.nfe, st.forward.accepted, st.backward_nfe, st.backward_vjp
                );
            } else {
                println!(
                    "{:<22} {:>7} {:>8} {:>8} {:>8} {:>9} {:>10.3}",
                    name,
                    n_out,
                    st.forward.nfe,
                    st.forward.accepted,
                    st.backward_nfe,
                    st.backward_vjp,
                    ms
                );
            }
        }
    }
    Ok(())
}
