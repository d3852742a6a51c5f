//! The direct (discrete) adjoint keeps the forward solve's stage values instead of
//! evaluating them again: no field evaluation in its backward pass, and the gradient is
//! still the exact gradient of the computed solution (against central differences of
//! fixed-step solves, where the steps do not move with the parameters) and agrees with the
//! checkpointed adjoint at tight tolerances.

mod common;

use adjoint::test_problems::SplitMix64;
use adjoint::{AdjointSolver, GradientMode, Method, Options, TanhMlp};
use common::{loss, weights};
use ode_solvers::tableau::DOPRI5_SHAMPINE;

const BATCH: usize = 3;

fn field() -> (TanhMlp<f64>, Vec<f64>, Vec<f64>) {
    let mlp = TanhMlp::new(&[2, 12, 12, 2], BATCH, false).unwrap();
    let theta = mlp.init_params(7, 1.5);
    let mut rng = SplitMix64::new(11);
    let z0: Vec<f64> = (0..2 * BATCH).map(|_| rng.uniform_pm1()).collect();
    (mlp, theta, z0)
}

fn value(
    s: &mut AdjointSolver<f64>,
    f: &mut TanhMlp<f64>,
    z0: &[f64],
    theta: &[f64],
    ts: &[f64],
    w: &[f64],
) -> f64 {
    s.forward(f, z0, theta, ts).unwrap();
    s.states().iter().zip(w).map(|(z, w)| z * w).sum()
}

#[test]
fn direct_backward_evaluates_no_stage() {
    let (mut f, theta, z0) = field();
    let ts = [0.0, 0.4, 1.0];
    let w = weights(ts.len() * z0.len());
    for method in [Method::Dopri5, Method::Tsit5, Method::Bosh3] {
        let mut s = AdjointSolver::new(method, Options::with_tol(1e-6, 1e-6))
            .with_mode(GradientMode::Direct);
        s.set_time_gradients(false);
        s.value_and_grad(&mut f, &z0, &theta, &ts, loss(&w))
            .unwrap();
        let st = s.stats();
        println!("{}: {st:?}", method.name());
        assert_eq!(st.backward_nfe, 0, "{}", method.name());
        assert!(st.backward_vjp > 0);
        assert!(st.backward_vjp <= 7 * st.forward.accepted);
        // With time gradients: at most one evaluation of `f` per interior output (dL/dτ
        // where the output comes from the interpolant; none where it is a step end).
        s.set_time_gradients(true);
        s.value_and_grad(&mut f, &z0, &theta, &ts, loss(&w))
            .unwrap();
        assert!(s.stats().backward_nfe <= ts.len() - 2, "{}", method.name());
    }
}

/// With fixed steps the computed solution is a smooth function of `(θ, z₀)`: the direct
/// gradient must match its central differences to their truncation error.
#[test]
fn direct_matches_central_differences_of_fixed_step_solves() {
    let (mut f, theta, z0) = field();
    let ts = [0.0, 0.55, 1.3];
    let w = weights(ts.len() * z0.len());
    for method in [
        Method::Dopri5,
        Method::Rk(&DOPRI5_SHAMPINE),
        Method::Tsit5,
        Method::Bosh3,
        Method::Rk4,
    ] {
        let opts = Options {
            fixed_step: Some(0.25),
            ..Options::default()
        };
        let mut s = AdjointSolver::new(method, opts).with_mode(GradientMode::Direct);
        let (_, g) = s
            .value_and_grad(&mut f, &z0, &theta, &ts, loss(&w))
            .unwrap();
        assert_eq!(s.stats().backward_nfe, 0);
        let mut rng = SplitMix64::new(3);
        let eps = 1e-5;
        let mut worst = 0.0f64;
        for _ in 0..4 {
            let vt: Vec<f64> = theta.iter().map(|_| rng.uniform_pm1()).collect();
            let vz: Vec<f64> = z0.iter().map(|_| rng.uniform_pm1()).collect();
            let shift = |e: f64| -> (Vec<f64>, Vec<f64>) {
                (
                    theta.iter().zip(&vt).map(|(a, b)| a + e * b).collect(),
                    z0.iter().zip(&vz).map(|(a, b)| a + e * b).collect(),
                )
            };
            let (tp, zp) = shift(eps);
            let (tm, zm) = shift(-eps);
            let fd = (value(&mut s, &mut f, &zp, &tp, &ts, &w)
                - value(&mut s, &mut f, &zm, &tm, &ts, &w))
                / (2.0 * eps);
            let ad: f64 = g.theta.iter().zip(&vt).map(|(a, b)| a * b).sum::<f64>()
                + g.z0.iter().zip(&vz).map(|(a, b)| a * b).sum::<f64>();
            worst = worst.max((fd - ad).abs() / ad.abs().max(1e-3));
        }
        println!(
            "{}: worst relative error against FD {worst:.2e}",
            method.name()
        );
        assert!(worst < 1e-7, "{}: {worst:e}", method.name());
    }
}

/// At tight tolerances the discrete and continuous adjoints agree.
#[test]
fn direct_agrees_with_checkpointed() {
    let (mut f, theta, z0) = field();
    let ts = [0.0, 0.3, 0.8, 1.0];
    let w = weights(ts.len() * z0.len());
    let grad = |mode: GradientMode<f64>, f: &mut TanhMlp<f64>| {
        let mut s =
            AdjointSolver::new(Method::Dopri5, Options::with_tol(1e-11, 1e-11)).with_mode(mode);
        s.value_and_grad(f, &z0, &theta, &ts, loss(&w)).unwrap().1
    };
    let d = grad(GradientMode::Direct, &mut f);
    let c = grad(GradientMode::checkpointed(), &mut f);
    let rel = |a: &[f64], b: &[f64]| {
        let num: f64 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
        let den: f64 = b.iter().map(|y| y * y).sum();
        (num / den).sqrt()
    };
    let (et, ez, ets) = (
        rel(&d.theta, &c.theta),
        rel(&d.z0, &c.z0),
        rel(&d.ts, &c.ts),
    );
    println!("direct vs checkpointed: θ {et:.2e}, z0 {ez:.2e}, ts {ets:.2e}");
    assert!(et < 1e-8 && ez < 1e-8 && ets < 1e-8);
}
