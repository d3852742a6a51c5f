//! Many irregular output times, in every gradient mode: the forward pass costs the same
//! as with two outputs (outputs from the dense output), the direct mode's backward pass
//! takes no extra steps, and every mode's gradient (with respect to `z0`, `θ` and every
//! output time) matches the closed form of `ż = A z` and central differences on a tanh
//! MLP field.

mod common;

use adjoint::audit::{AuditOptions, audit};
use adjoint::test_problems::{Linear, Mlp, SplitMix64};
use adjoint::{AdjointSolver, GradientMode, Method, Options};
use common::{closed_form, rel};

fn modes() -> Vec<GradientMode<f64>> {
    common::every_mode(3)
}

/// `count` irregular times on `[t0, t1]` (both included), increasing or decreasing.
fn irregular_times(seed: u64, count: usize, t0: f64, t1: f64, decreasing: bool) -> Vec<f64> {
    let mut rng = SplitMix64::new(seed);
    let mut gaps: Vec<f64> = (0..count - 1)
        .map(|_| 0.05 + rng.uniform().powi(3))
        .collect();
    let total: f64 = gaps.iter().sum();
    for g in &mut gaps {
        *g *= (t1 - t0) / total;
    }
    let mut ts = vec![t0];
    for g in gaps {
        ts.push(ts[ts.len() - 1] + g);
    }
    let last = ts.len() - 1;
    ts[last] = t1;
    if decreasing {
        ts.reverse();
    }
    ts
}

#[test]
fn many_irregular_outputs_match_the_closed_form_in_every_mode() {
    const N: usize = 3;
    let mut rng = SplitMix64::new(5);
    let a: Vec<f64> = (0..N * N)
        .map(|k| if k % (N + 1) == 0 { -0.5 } else { 0.0 } + 0.4 * rng.uniform_pm1())
        .collect();
    let z0: Vec<f64> = (0..N).map(|_| rng.uniform_pm1()).collect();
    for decreasing in [false, true] {
        let ts = irregular_times(3, 40, 0.1, 2.3, decreasing);
        let w: Vec<f64> = (0..ts.len() * N).map(|_| rng.uniform_pm1()).collect();
        let (gz0, ga, gts) = closed_form(&a, N, &z0, &w, &ts);
        let opts = Options::with_tol(1e-10, 1e-12);
        // The forward cost of two outputs over the same span.
        let mut two = AdjointSolver::new(Method::Dopri5, opts.clone());
        two.forward(&mut Linear::new(N), &z0, &a, &[ts[0], ts[ts.len() - 1]])
            .unwrap();
        let nfe_two = two.stats().forward.nfe;
        for mode in modes() {
            let name = mode.name();
            let mut s = AdjointSolver::new(Method::Dopri5, opts.clone()).with_mode(mode.clone());
            let mut d = Linear::new(N);
            s.forward(&mut d, &z0, &a, &ts).unwrap();
            let g = s.backward(&mut d, &w).unwrap();
            let st = s.stats();
            let e = rel(&g.z0, &gz0)
                .max(rel(&g.theta, &ga))
                .max(rel(&g.ts, &gts));
            println!(
                "{name:<13} decreasing {decreasing}: error {e:.2e}, forward nfe {} (two outputs: {nfe_two}), backward nfe {} vjp {}",
                st.forward.nfe, st.backward_nfe, st.backward_vjp
            );
            assert!(e < 1e-7, "{name}, decreasing {decreasing}: error {e:.2e}");
            if !matches!(mode, GradientMode::Forward | GradientMode::ForwardJvp) {
                assert_eq!(
                    st.forward.nfe, nfe_two,
                    "{name}: the forward pass must not depend on the output times"
                );
            }
            if matches!(mode, GradientMode::Direct) {
                // No extra steps: the six stages of each step, the last stage on steps that
                // hold outputs and `f` at each output (for `dL/dtᵢ`).
                let steps = st.forward.accepted;
                assert!(
                    st.backward_nfe <= 7 * steps + ts.len(),
                    "direct: {} backward evaluations for {steps} steps",
                    st.backward_nfe
                );
            }
        }
    }
}

#[test]
fn many_irregular_outputs_match_central_differences_in_every_mode() {
    let mut mlp = Mlp::<f64>::new(&[2, 6, 6, 2], 2, true).unwrap();
    let theta = mlp.init_params(21, 1.5);
    let z0 = [0.4, -0.3, 0.8, 0.1];
    for decreasing in [false, true] {
        let ts = irregular_times(9, 25, 0.0, 1.7, decreasing);
        let base = AdjointSolver::new(Method::Dopri5, Options::with_tol(1e-12, 1e-14));
        let report = audit(
            &mut mlp,
            &base,
            &z0,
            &theta,
            &ts,
            &AuditOptions {
                modes: modes(),
                seed: 4,
                ..AuditOptions::default()
            },
        )
        .unwrap();
        println!("decreasing {decreasing}\n{report}");
        assert!(report.worst_vs_fd() < 1e-6, "{report}");
        assert!(report.worst_vs_modes() < 1e-6, "{report}");
    }
}

/// Fixed steps keep their grid from every output time: the step count grows with the
/// number of outputs (each interval is stepped on its own grid) and the gradients still
/// match the closed form.
#[test]
fn fixed_steps_keep_their_grid_with_many_outputs() {
    const N: usize = 2;
    let a = [-0.3, 0.5, -0.4, -0.2];
    let z0 = [0.7, -0.2];
    let ts = irregular_times(4, 12, 0.0, 1.0, false);
    let w: Vec<f64> = (0..ts.len() * N).map(|k| (k as f64 * 0.7).sin()).collect();
    let (gz0, ga, _) = closed_form(&a, N, &z0, &w, &ts);
    let opts = Options {
        fixed_step: Some(0.05),
        ..Options::default()
    };
    for mode in modes() {
        let mut s = AdjointSolver::new(Method::Rk4, opts.clone()).with_mode(mode.clone());
        let mut d = Linear::new(N);
        s.forward(&mut d, &z0, &a, &ts).unwrap();
        let g = s.backward(&mut d, &w).unwrap();
        let expected: usize = ts
            .windows(2)
            .map(|p| ((p[1] - p[0]) / 0.05 - 1e-10).ceil() as usize)
            .sum();
        assert_eq!(s.stats().forward.accepted, expected, "{}", mode.name());
        let e = rel(&g.z0, &gz0).max(rel(&g.theta, &ga));
        assert!(e < 1e-5, "{}: error {e:.2e}", mode.name());
    }
}

/// Without time gradients (`set_time_gradients(false)`) every mode gives the same `z0` and
/// `θ` gradients bit for bit, `dL/dtᵢ` all zero, and no more backward evaluations: at
/// least one fewer per interior output time in the modes that evaluate `f` there (all but
/// backsolve, which carries `dL/dt` in its state).
#[test]
fn time_gradients_off_keep_the_other_gradients_and_save_evaluations() {
    const N: usize = 3;
    let mut rng = SplitMix64::new(9);
    let a: Vec<f64> = (0..N * N).map(|_| 0.5 * rng.uniform_pm1()).collect();
    let z0: Vec<f64> = (0..N).map(|_| rng.uniform_pm1()).collect();
    let ts = irregular_times(4, 12, 0.0, 1.5, false);
    let w: Vec<f64> = (0..ts.len() * N).map(|_| rng.uniform_pm1()).collect();
    let loss = |zs: &[f64], dl: &mut [f64]| {
        dl.copy_from_slice(&w);
        zs.iter().zip(&w).map(|(z, w)| z * w).sum::<f64>()
    };
    for mode in modes() {
        let name = mode.name();
        let opts = Options::with_tol(1e-8, 1e-10);
        let mut on = AdjointSolver::new(Method::Dopri5, opts.clone()).with_mode(mode.clone());
        let (_, g_on) = on
            .value_and_grad(&mut Linear::new(N), &z0, &a, &ts, loss)
            .unwrap();
        let mut off = AdjointSolver::new(Method::Dopri5, opts).with_mode(mode.clone());
        off.set_time_gradients(false);
        assert!(!off.time_gradients());
        let (_, g_off) = off
            .value_and_grad(&mut Linear::new(N), &z0, &a, &ts, loss)
            .unwrap();
        assert_eq!(g_on.z0, g_off.z0, "{name}: z0");
        assert_eq!(g_on.theta, g_off.theta, "{name}: θ");
        assert!(g_on.ts.iter().any(|&g| g != 0.0), "{name}");
        assert!(g_off.ts.iter().all(|&g| g == 0.0), "{name}");
        let (b_on, b_off) = (on.stats().backward_nfe, off.stats().backward_nfe);
        assert!(b_off <= b_on, "{name}: {b_off} > {b_on}");
        if !matches!(mode, GradientMode::Backsolve { .. }) {
            assert!(b_off + ts.len() - 2 <= b_on, "{name}: {b_off} vs {b_on}");
        }
    }
}
