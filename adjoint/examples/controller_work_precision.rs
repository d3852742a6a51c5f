//! Work–precision of the step-size controllers on Neural ODE fields (issue 18, item 1):
//! our PI controller with Hairer's DOPRI5 constants (`β = 0.04`, `α = 0.17`, safety 0.9,
//! factors in `[0.2, 10]`) against the I controller the peers use by default (torchdiffeq's
//! and diffrax's: `α = 0.2`, `β = 0`, same safety and factors, Hairer's first-step
//! heuristic in all three), on random 2→64→64→2 tanh fields (W2 draws, seeds 1..=5, batch
//! 16, Dopri5, `t ∈ [0, 1]`, loss = mean `z(1)²`, gradient by the checkpointed adjoint)
//! at rtol = atol = 1e-3 … 1e-8. Errors are relative to a reference at rtol = atol =
//! 1e-12; the table gives forward evaluations, loss error and gradient error (`dL/dθ`,
//! 2-norm) averaged over the fields.
//!
//! Run with `cargo run --release -p adjoint --example controller_work_precision`.

use adjoint::test_problems::{SplitMix64, w2_field, w2_theta};
use adjoint::{AdjointSolver, Method, Options};
use ode_solvers::PiController;

const D: usize = 2;
const BATCH: usize = 16;

fn loss(zs: &[f64], dl: &mut [f64]) -> f64 {
    let n = BATCH * D;
    let m = n as f64;
    let len = zs.len();
    for (g, z) in dl[len - n..].iter_mut().zip(&zs[len - n..]) {
        *g = 2.0 * z / m;
    }
    zs[len - n..].iter().map(|z| z * z).sum::<f64>() / m
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut f = w2_field(BATCH)?;
    let mut rng = SplitMix64::new(2);
    let z0: Vec<f64> = (0..BATCH * D).map(|_| rng.uniform_pm1()).collect();
    let ts = [0.0, 1.0];
    let i_controller = PiController {
        safety: 0.9,
        min_factor: 0.2,
        max_factor: 10.0,
        beta: 0.0,
        alpha: Some(0.2),
    };
    let controllers: [(&str, Option<PiController<f64>>); 2] =
        [("PI (Hairer)", None), ("I (alpha 0.2)", Some(i_controller))];
    let seeds = 1..=5u64;
    // References.
    let mut refs = Vec::new();
    for seed in seeds.clone() {
        let theta = w2_theta(seed);
        let mut s = AdjointSolver::new(Method::Dopri5, Options::with_tol(1e-12, 1e-12));
        let (l, g) = s.value_and_grad(&mut f, &z0, &theta, &ts, loss)?;
        refs.push((theta, l, g.theta));
    }
    println!(
        "{:<14} {:>6} {:>9} {:>11} {:>11}",
        "controller", "tol", "fwd nfe", "loss err", "grad err"
    );
    for tol in [1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8] {
        for (name, ctrl) in &controllers {
            let (mut nfe, mut el, mut eg) = (0usize, 0.0f64, 0.0f64);
            for (theta, l_ref, g_ref) in &refs {
                let opts = Options {
                    controller: *ctrl,
                    ..Options::with_tol(tol, tol)
                };
                let mut s = AdjointSolver::new(Method::Dopri5, opts);
                let (l, g) = s.value_and_grad(&mut f, &z0, theta, &ts, loss)?;
                nfe += s.stats().forward.nfe;
                el += (l - l_ref).abs() / l_ref.abs();
                let diff: Vec<f64> = g.theta.iter().zip(g_ref).map(|(a, b)| a - b).collect();
                eg += norm(&diff) / norm(g_ref);
            }
            let k = refs.len() as f64;
            println!(
                "{name:<14} {tol:>6.0e} {:>9.1} {:>11.2e} {:>11.2e}",
                nfe as f64 / k,
                el / k,
                eg / k
            );
        }
    }
    Ok(())
}
