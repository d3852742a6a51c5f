//! All gradient modes agree with each other and with central finite differences on random
//! small tanh-MLP dynamics (time input, batch of two, several output times).

use adjoint::audit::{AuditOptions, audit};
use adjoint::test_problems::{Mlp, SplitMix64};
use adjoint::{AdjointSolver, Method, Options};
use proptest::prelude::*;

fn case(
    seed: u64,
    hidden: usize,
    n_out: usize,
    decreasing: bool,
    method: Method,
) -> adjoint::audit::AuditReport {
    let mut mlp = Mlp::<f64>::new(&[2, hidden, hidden, 2], 2, true).unwrap();
    let theta = mlp.init_params(seed, 1.5);
    let mut rng = SplitMix64::new(seed ^ 0xabc);
    let z0: Vec<f64> = (0..4).map(|_| rng.uniform_pm1()).collect();
    let mut ts: Vec<f64> = (0..n_out)
        .map(|i| 0.2 + 0.45 * i as f64 + 0.1 * rng.uniform())
        .collect();
    if decreasing {
        ts.reverse();
    }
    // 1e-12: outputs come from the dense output, whose error (about the tolerance, where
    // step ends carry far less) makes `L` jump by that much when a perturbation changes
    // the step count; the central differences carry it divided by their step. So the
    // step is `tol^(1/3) = 1e-4`, which balances that noise (`tol/h`) against the
    // truncation error (`h²`); the default `ε^(1/3) ≈ 6e-6` let the noise reach 2e-6 of
    // the gradient on some random fields (seed 6543, hidden 4, 3 outputs).
    let base = AdjointSolver::new(method, Options::with_tol(1e-12, 1e-14));
    audit(
        &mut mlp,
        &base,
        &z0,
        &theta,
        &ts,
        &AuditOptions {
            seed,
            fd_step: Some(1e-4),
            ..AuditOptions::default()
        },
    )
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 12,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"),
        )),
        ..ProptestConfig::default()
    })]
    #[test]
    fn modes_agree_with_fd_and_each_other(seed in 0u64..10_000, hidden in 3usize..9, n_out in 2usize..5, decreasing: bool) {
        let report = case(seed, hidden, n_out, decreasing, Method::Dopri5);
        prop_assert!(report.worst_vs_fd() < 1e-6, "{report}");
        prop_assert!(report.worst_vs_modes() < 1e-6, "{report}");
    }
}

#[test]
fn other_methods_agree() {
    for method in [Method::Tsit5, Method::Dop853, Method::Bosh3] {
        let report = case(3, 5, 3, false, method);
        println!("{}\n{report}", method.name());
        assert!(report.worst_vs_fd() < 1e-6, "{}: {report}", method.name());
        assert!(
            report.worst_vs_modes() < 1e-6,
            "{}: {report}",
            method.name()
        );
    }
}

#[test]
fn report_prints() {
    let report = case(1, 6, 3, false, Method::Dopri5);
    println!("{report}");
    assert_eq!(report.rows.len(), 8);
}

/// Backsolve with and without the seminorm (Kidger, Chen & Lyons 2021): backward
/// evaluations on random MLPs, median saving reported.
#[test]
fn seminorm_saves_backward_evaluations() {
    use adjoint::GradientMode;
    let mut savings = Vec::new();
    for seed in 0..16u64 {
        let mut mlp = Mlp::<f64>::new(&[2, 16, 16, 2], 4, true).unwrap();
        let theta = mlp.init_params(seed, 2.0);
        let z0: Vec<f64> = (0..8)
            .map(|i| (i as f64 * 0.37 + seed as f64).sin())
            .collect();
        let ts = [0.0, 1.0, 2.0];
        let mut nfe = [0usize; 2];
        for (k, semi) in [false, true].into_iter().enumerate() {
            let mut s = AdjointSolver::new(Method::Dopri5, Options::with_tol(1e-7, 1e-7))
                .with_mode(GradientMode::backsolve(semi));
            s.forward(&mut mlp, &z0, &theta, &ts).unwrap();
            let dl: Vec<f64> = s.states().to_vec();
            s.backward(&mut mlp, &dl).unwrap();
            nfe[k] = s.stats().backward_nfe;
        }
        println!(
            "seed {seed}: backsolve backward nfe {} -> {} with seminorm",
            nfe[0], nfe[1]
        );
        savings.push(1.0 - nfe[1] as f64 / nfe[0] as f64);
    }
    savings.sort_by(f64::total_cmp);
    let median = 0.5 * (savings[7] + savings[8]);
    println!(
        "median saving of backward evaluations with the seminorm: {:.0}%",
        100.0 * median
    );
    assert!(median > 0.0, "no saving: {savings:?}");
}

/// Adams–Bashforth–Moulton forward solves: every mode but direct (which needs RK stages).
#[test]
fn adams_forward_agrees() {
    use adjoint::GradientMode;
    let mut mlp = Mlp::<f64>::new(&[2, 5, 5, 2], 2, true).unwrap();
    let theta = mlp.init_params(4, 1.5);
    let z0 = [0.3, -0.2, 0.5, 0.1];
    let base = AdjointSolver::new(Method::Adams, Options::with_tol(1e-11, 1e-13));
    let opts = AuditOptions {
        modes: vec![
            GradientMode::checkpointed(),
            GradientMode::Checkpointed {
                checkpoints: adjoint::Checkpoints::Budget(3),
                backward: Default::default(),
            },
            GradientMode::backsolve(true),
            GradientMode::Forward,
            GradientMode::ForwardJvp,
        ],
        ..AuditOptions::default()
    };
    let report = audit(&mut mlp, &base, &z0, &theta, &[0.0, 0.6, 1.2], &opts).unwrap();
    println!("{report}");
    assert!(report.worst_vs_modes() < 1e-6, "{report}");
    assert!(report.worst_vs_fd() < 1e-5, "{report}");
}
