//! `TapeDynamics` (autodiff-backed) matches the hand-written MLP: values, VJPs, JVPs and
//! the gradients of whole solves, in f64 and f32.
#![cfg(feature = "tape")]

mod common;

use adjoint::test_problems::{Mlp, SplitMix64};
use adjoint::{AdjointSolver, Dynamics, GradientMode, Method, Options, TapeDynamics, Vjp};
use common::rel;

macro_rules! tape_mlp {
    ($t:ty, $h:expr, $batch:expr) => {{
        let (d, h, batch) = (2usize, $h, $batch);
        let p = d * h + h + h * h + h + h * d + d;
        TapeDynamics::<$t, _>::new(&[batch, d], p, move |_tape, _t, z, th| {
            let (o1, o2) = (d * h + h, d * h + h + h * h + h);
            let a = (z.matmul(th.view(0, &[d, h])) + th.view(d * h, &[h])).tanh();
            let a = (a.matmul(th.view(o1, &[h, h])) + th.view(o1 + h * h, &[h])).tanh();
            a.matmul(th.view(o2, &[h, d])) + th.view(o2 + h * d, &[d])
        })
        .unwrap()
    }};
}

#[test]
fn products_match_hand_written_mlp() {
    let (h, batch) = (5, 3);
    let mut tape = tape_mlp!(f64, h, batch);
    let mut mlp = Mlp::<f64>::new(&[2, h, h, 2], batch, false).unwrap();
    assert_eq!(tape.n_params(), mlp.n_params());
    let theta = mlp.init_params(3, 1.2);
    let mut rng = SplitMix64::new(9);
    let mut r = |k: usize| -> Vec<f64> { (0..k).map(|_| rng.uniform_pm1()).collect() };
    let (n, p) = (2 * batch, theta.len());
    let (z, a, vz, vth) = (r(n), r(n), r(n), r(p));
    let (mut f1, mut f2) = (vec![0.0; n], vec![0.0; n]);
    tape.eval(0.3, &z, &theta, &mut f1).unwrap();
    mlp.eval(0.3, &z, &theta, &mut f2).unwrap();
    assert!(rel(&f1, &f2) < 1e-14);
    let (mut gz1, mut gz2, mut gt1, mut gt2) =
        (vec![0.0; n], vec![0.0; n], vec![0.0; p], vec![0.0; p]);
    let t1 = tape.vjp(0.3, &z, &theta, &a, &mut gz1, &mut gt1).unwrap();
    let t2 = mlp.vjp(0.3, &z, &theta, &a, &mut gz2, &mut gt2).unwrap();
    assert!(
        rel(&gz1, &gz2) < 1e-13 && rel(&gt1, &gt2) < 1e-13,
        "{} {}",
        rel(&gz1, &gz2),
        rel(&gt1, &gt2)
    );
    assert_eq!(t1, 0.0);
    assert_eq!(t2, 0.0);
    tape.jvp(0.3, &z, &theta, &vz, &vth, &mut f1).unwrap();
    mlp.jvp(0.3, &z, &theta, &vz, &vth, &mut f2).unwrap();
    assert!(rel(&f1, &f2) < 1e-13, "jvp {}", rel(&f1, &f2));
}

#[test]
fn solve_gradients_match_in_every_mode() {
    let (h, batch) = (6, 4);
    let mut tape = tape_mlp!(f64, h, batch);
    let mut mlp = Mlp::<f64>::new(&[2, h, h, 2], batch, false).unwrap();
    let theta = mlp.init_params(5, 1.5);
    let z0: Vec<f64> = (0..2 * batch).map(|i| 0.3 * i as f64 - 1.0).collect();
    let ts = [0.0, 0.5, 1.0];
    for mode in [
        GradientMode::checkpointed(),
        GradientMode::backsolve(true),
        GradientMode::Direct,
        GradientMode::Forward,
        GradientMode::ForwardJvp,
    ] {
        let name = mode.name();
        let mut s1 = AdjointSolver::new(Method::Dopri5, Options::with_tol(1e-9, 1e-9))
            .with_mode(mode.clone());
        let mut s2 = s1.clone();
        s1.forward(&mut tape, &z0, &theta, &ts).unwrap();
        s2.forward(&mut mlp, &z0, &theta, &ts).unwrap();
        let dl: Vec<f64> = s1.states().iter().map(|z| 2.0 * z).collect();
        let g1 = s1.backward(&mut tape, &dl).unwrap();
        let g2 = s2.backward(&mut mlp, &dl).unwrap();
        let e = rel(&g1.theta, &g2.theta)
            .max(rel(&g1.z0, &g2.z0))
            .max(rel(&g1.ts, &g2.ts));
        assert!(e < 1e-10, "{name}: {e:e}");
    }
}

#[test]
fn f32_tape_gradient_close_to_f64() {
    let (h, batch) = (4, 2);
    let mut t64 = tape_mlp!(f64, h, batch);
    let mut t32 = tape_mlp!(f32, h, batch);
    let mlp = Mlp::<f64>::new(&[2, h, h, 2], batch, false).unwrap();
    let th64 = mlp.init_params(11, 1.0);
    let th32: Vec<f32> = th64.iter().map(|x| *x as f32).collect();
    let z0 = [0.5f64, -0.2, 0.1, 0.7];
    let z32: Vec<f32> = z0.iter().map(|x| *x as f32).collect();
    let mut s64 = AdjointSolver::new(Method::Dopri5, Options::with_tol(1e-9, 1e-9));
    let mut s32 = AdjointSolver::new(Method::Dopri5, Options::<f32>::default());
    s64.forward(&mut t64, &z0, &th64, &[0.0, 1.0]).unwrap();
    s32.forward(&mut t32, &z32, &th32, &[0.0, 1.0]).unwrap();
    let dl64: Vec<f64> = s64.states().to_vec();
    let dl32: Vec<f32> = s32.states().to_vec();
    let g64 = s64.backward(&mut t64, &dl64).unwrap();
    let g32 = s32.backward(&mut t32, &dl32).unwrap();
    let g32: Vec<f64> = g32.theta.iter().map(|x| f64::from(*x)).collect();
    let e = rel(&g32, &g64.theta);
    assert!(e < 1e-3, "f32 vs f64 gradient: {e:e}");
}
