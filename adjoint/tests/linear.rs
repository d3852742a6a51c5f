//! Closed-form gradients of `ż = A z` (with respect to `A`, `z0`, `t0`, `t1`) in every mode.

mod common;

use adjoint::test_problems::{Linear, SplitMix64};
use adjoint::{AdjointSolver, Checkpoints, GradientMode, Method, Options};
use common::{closed_form, rel};

fn modes() -> Vec<GradientMode<f64>> {
    vec![
        GradientMode::checkpointed(),
        GradientMode::Checkpointed {
            checkpoints: Checkpoints::Budget(3),
            backward: Default::default(),
        },
        GradientMode::Checkpointed {
            checkpoints: Checkpoints::Budget(2),
            backward: adjoint::BackwardSolver {
                seminorm: true,
                ..Default::default()
            },
        },
        GradientMode::Checkpointed {
            checkpoints: Checkpoints::EveryStep,
            backward: adjoint::BackwardSolver {
                method: Some(Method::Tsit5),
                options: Some(Options::with_tol(1e-12, 1e-14)),
                seminorm: false,
                ..Default::default()
            },
        },
        GradientMode::backsolve(false),
        GradientMode::backsolve(true),
        GradientMode::Direct,
        GradientMode::Forward,
        GradientMode::ForwardJvp,
    ]
}

/// `L = wᵀ z(t1)`: `(dL/dz0, dL/dA, dL/dt0, dL/dt1)`.
fn one_output(
    a: &[f64],
    n: usize,
    z0: &[f64],
    w: &[f64],
    t0: f64,
    t1: f64,
) -> (Vec<f64>, Vec<f64>, f64, f64) {
    let mut weights = vec![0.0; n];
    weights.extend_from_slice(w);
    let (gz0, ga, gts) = closed_form(a, n, z0, &weights, &[t0, t1]);
    (gz0, ga, gts[0], gts[1])
}

#[test]
fn linear_closed_form_all_modes() {
    let n = 3;
    let mut rng = SplitMix64::new(7);
    let a: Vec<f64> = (0..n * n)
        .map(|k| if k % (n + 1) == 0 { -0.5 } else { 0.0 } + 0.4 * rng.uniform_pm1())
        .collect();
    let z0: Vec<f64> = (0..n).map(|_| rng.uniform_pm1()).collect();
    let w: Vec<f64> = (0..n).map(|_| rng.uniform_pm1()).collect();
    let (t0, t1) = (0.3, 1.7);
    let (gz0, ga, gt0, gt1) = one_output(&a, n, &z0, &w, t0, t1);
    for mode in modes() {
        let name = mode.name();
        let mut solver =
            AdjointSolver::new(Method::Dopri5, Options::with_tol(1e-11, 1e-13)).with_mode(mode);
        let mut dynamics = Linear::new(n);
        solver.forward(&mut dynamics, &z0, &a, &[t0, t1]).unwrap();
        let mut dl = vec![0.0; 2 * n];
        dl[n..].copy_from_slice(&w);
        let g = solver.backward(&mut dynamics, &dl).unwrap();
        let e_z0 = rel(&g.z0, &gz0);
        let e_a = rel(&g.theta, &ga);
        let e_t0 = (g.ts[0] - gt0).abs() / gt0.abs();
        let e_t1 = (g.ts[1] - gt1).abs() / gt1.abs();
        println!(
            "{name}: z0 {e_z0:.2e} A {e_a:.2e} t0 {e_t0:.2e} t1 {e_t1:.2e} stats {:?}",
            solver.stats()
        );
        for (what, e) in [("z0", e_z0), ("A", e_a), ("t0", e_t0), ("t1", e_t1)] {
            assert!(e < 1e-8, "{name}: dL/d{what} relative error {e:.3e}");
        }
    }
}

/// The same closed-form check in f32 (default f32 tolerances), decreasing times.
#[test]
fn linear_closed_form_f32_decreasing_times() {
    let n = 2;
    let a = [-0.3f64, 0.4, -0.2, -0.6];
    let z0 = [1.0f64, -0.5];
    let w = [0.7f64, 0.2];
    let (t0, t1) = (1.5f64, 0.5f64);
    let (gz0, ga, gt0, gt1) = one_output(&a, n, &z0, &w, t0, t1);
    let a32: Vec<f32> = a.iter().map(|x| *x as f32).collect();
    let z32: Vec<f32> = z0.iter().map(|x| *x as f32).collect();
    for mode in modes() {
        let mode: GradientMode<f32> = match mode {
            GradientMode::Checkpointed { checkpoints, .. } => GradientMode::Checkpointed {
                checkpoints,
                backward: Default::default(),
            },
            GradientMode::Backsolve { backward } => GradientMode::backsolve(backward.seminorm),
            GradientMode::Direct => GradientMode::Direct,
            GradientMode::Forward => GradientMode::Forward,
            GradientMode::ForwardJvp => GradientMode::ForwardJvp,
        };
        let name = mode.name();
        let mut solver =
            AdjointSolver::new(Method::Dopri5, Options::<f32>::default()).with_mode(mode);
        let mut d = Linear::new(n);
        solver
            .forward(&mut d, &z32, &a32, &[t0 as f32, t1 as f32])
            .unwrap();
        let mut dl = vec![0.0f32; 2 * n];
        for k in 0..n {
            dl[n + k] = w[k] as f32;
        }
        let g = solver.backward(&mut d, &dl).unwrap();
        let f = |v: &[f32]| v.iter().map(|x| f64::from(*x)).collect::<Vec<f64>>();
        let e = rel(&f(&g.z0), &gz0)
            .max(rel(&f(&g.theta), &ga))
            .max((f64::from(g.ts[0]) - gt0).abs() / gt0.abs())
            .max((f64::from(g.ts[1]) - gt1).abs() / gt1.abs());
        assert!(e < 2e-3, "{name} (f32): relative error {e:e}");
    }
}
