//! Integration tests of the heated rod and plate: gradients by adjoint,
//! forward sensitivities and finite differences, inverse design, errors.

use pde_adjoint::{
    DesignOptions, Grid, HeatProblem, Lbfgs, PdeError, Plate, Rod, StopReason, inverse_design,
    lagrange_example, recover_heater, relative_error,
};
use proptest::prelude::*;
use sprs::{CsMat, TriMat};

const PI: f64 = std::f64::consts::PI;

/// The three gradients of one problem.
fn three_gradients<G: Grid>(grid: &G, s: &[f64], target: &[f64]) -> [Vec<f64>; 3] {
    let n = grid.n_unknowns();
    let mut p = HeatProblem::new(grid, target).unwrap();
    let (mut ga, mut gf, mut gd) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
    let ja = p.objective_and_gradient(s, &mut ga).unwrap();
    let before = p.n_solves();
    let jf = p.gradient_forward(s, &mut gf).unwrap();
    assert_eq!(
        p.n_solves() - before,
        n + 1,
        "forward sensitivities: n + 1 solves"
    );
    // J_h is quadratic in s: central differences are exact up to round-off
    // for any step, and the round-off shrinks as the step grows. The default
    // step ε^{1/3} is checked separately, at a bound it can meet.
    let jd = p.gradient_fd(s, &mut gd, Some(1e-2)).unwrap();
    let mut g_default = vec![0.0; n];
    p.gradient_fd(s, &mut g_default, None).unwrap();
    let e = relative_error(&ga, &g_default);
    assert!(e < 1e-6, "adjoint vs FD at the default step: {e:e}");
    assert!((ja - jf).abs() <= 1e-14 * ja.abs());
    assert!((ja - jd).abs() <= 1e-14 * ja.abs());
    [ga, gf, gd]
}

fn assert_agree(g: &[Vec<f64>; 3], tol: f64) {
    let [ga, gf, gd] = g;
    let norm = ga.iter().map(|x| x * x).sum::<f64>().sqrt();
    assert!(norm > 1e-6, "degenerate gradient");
    let af = relative_error(ga, gf);
    let ad = relative_error(ga, gd);
    println!("relative gradient differences: adjoint vs forward {af:.2e}, adjoint vs FD {ad:.2e}");
    assert!(af <= tol, "adjoint vs forward sensitivities: {af:e}");
    assert!(ad <= tol, "adjoint vs central differences: {ad:e}");
}

#[test]
fn rod_gradients_agree_to_1e8() {
    let rod = Rod::new(50).unwrap();
    let target: Vec<f64> = rod.sample(&|p| (PI * p[0]).sin() + 0.3 * (3.0 * PI * p[0]).sin());
    let s: Vec<f64> = rod.sample(&|p| 5.0 * (2.0 * p[0]).exp() - 3.0);
    assert_agree(&three_gradients(&rod, &s, &target), 1e-8);
}

#[test]
fn plate_gradients_agree_to_1e8() {
    let plate = Plate::new(8).unwrap();
    let target: Vec<f64> = plate.sample(&|p| (PI * p[0]).sin() * (PI * p[1]).sin());
    let s: Vec<f64> = plate.sample(&|p| 10.0 * p[0] - 4.0 * p[1] * p[1] + 1.0);
    assert_agree(&three_gradients(&plate, &s, &target), 1e-8);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]
    #[test]
    fn rod_gradients_agree_for_random_heaters(
        s in proptest::collection::vec(-20.0f64..20.0, 30),
        t in proptest::collection::vec(-1.0f64..1.0, 30),
    ) {
        let rod = Rod::new(30).unwrap();
        assert_agree(&three_gradients(&rod, &s, &t), 1e-8);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]
    #[test]
    fn plate_gradients_agree_for_random_heaters(
        s in proptest::collection::vec(-20.0f64..20.0, 36),
        t in proptest::collection::vec(-1.0f64..1.0, 36),
    ) {
        let plate = Plate::new(6).unwrap();
        assert_agree(&three_gradients(&plate, &s, &t), 1e-8);
    }
}

/// The L² gradient `(1/h) dJ/ds` converges to the continuous adjoint: with
/// `s = 0`, `u_target = sin(πx)`, it is `p(x) = −2 sin(πx)/π²` (second order).
#[test]
fn l2_gradient_converges_to_continuous_adjoint() {
    let mut errors = Vec::new();
    for n in [31, 63] {
        let rod = Rod::new(n).unwrap();
        let target: Vec<f64> = rod.sample(&|p| (PI * p[0]).sin());
        let exact: Vec<f64> = rod.sample(&|p| -2.0 * (PI * p[0]).sin() / (PI * PI));
        let mut problem = HeatProblem::new(&rod, &target).unwrap();
        let mut g = vec![0.0; n];
        problem
            .objective_and_gradient(&vec![0.0; n], &mut g)
            .unwrap();
        // Sign convention: dJ/ds = −λ.
        for (gi, li) in g.iter().zip(problem.lambda()) {
            assert!((gi + li).abs() <= 1e-15 * gi.abs().max(1e-300));
        }
        let mut l2 = vec![0.0; n];
        problem.l2_gradient(&g, &mut l2).unwrap();
        errors.push(relative_error(&l2, &exact));
    }
    assert!(errors[0] < 2e-3, "{errors:?}");
    let ratio = errors[0] / errors[1];
    assert!(
        (3.5..4.5).contains(&ratio),
        "second order expected: {errors:?}"
    );
}

/// The objective's quadrature: `J(0) = ∫ sin²(πx) dx = 1/2` (rod) and `1/4`
/// (plate), to within the rule's error.
#[test]
fn objective_quadrature() {
    let rod = Rod::new(40).unwrap();
    let t: Vec<f64> = rod.sample(&|p| (PI * p[0]).sin());
    let j = HeatProblem::new(&rod, &t)
        .unwrap()
        .objective(&vec![0.0; 40])
        .unwrap();
    assert!((j - 0.5).abs() < 1e-10, "{j}");
    let plate = Plate::new(20).unwrap();
    let t: Vec<f64> = plate.sample(&|p| (PI * p[0]).sin() * (PI * p[1]).sin());
    let j = HeatProblem::new(&plate, &t)
        .unwrap()
        .objective(&vec![0.0; 400])
        .unwrap();
    assert!((j - 0.25).abs() < 1e-10, "{j}");
}

/// The factorisation is reused: a solve on the discrete problem matches the
/// exact solution `u = x(1−x)/2` of `−u'' = 1` (exact for quadratics).
#[test]
fn rod_solution_is_exact_for_constant_heater() {
    let rod = Rod::new(25).unwrap();
    let mut p = HeatProblem::new(&rod, &[0.0; 25]).unwrap();
    let mut u = vec![0.0; 25];
    p.solve_into(&[1.0; 25], &mut u).unwrap();
    for (k, uk) in u.iter().enumerate() {
        let x = rod.point(k)[0];
        assert!((uk - 0.5 * x * (1.0 - x)).abs() < 1e-12);
    }
    // Twice the operator, same pattern: refactor reuses the symbolic part.
    let a2 = p.operator().map(|v| 2.0 * v);
    p.update_operator(a2).unwrap();
    p.solve_into(&[1.0; 25], &mut u).unwrap();
    for (k, uk) in u.iter().enumerate() {
        let x = rod.point(k)[0];
        assert!((uk - 0.25 * x * (1.0 - x)).abs() < 1e-12);
    }
    // A second problem built from the first one's symbolic analysis.
    let q = HeatProblem::with_symbolic(p.symbolic(), rod.laplacian(), 0.5, &[0.0; 25]);
    assert!(q.is_ok());
}

#[test]
fn f32_rod_gradient() {
    let rod = Rod::new(20).unwrap();
    let target: Vec<f32> = rod.sample(&|p| (PI * p[0]).sin());
    let s = vec![2.0f32; 20];
    let mut p32 = HeatProblem::new(&rod, &target).unwrap();
    let (mut ga, mut gf) = (vec![0.0f32; 20], vec![0.0f32; 20]);
    p32.objective_and_gradient(&s, &mut ga).unwrap();
    p32.gradient_forward(&s, &mut gf).unwrap();
    // Condition number of A ~ (n+1)² ≈ 440: allow 440 × 64 ε.
    assert!(relative_error(&ga, &gf) < 440.0 * 64.0 * f32::EPSILON);
}

#[test]
fn inverse_design_recovers_smooth_heater() {
    let rod = Rod::new(60).unwrap();
    let s_true: Vec<f64> =
        rod.sample(&|p| 10.0 * (PI * p[0]).sin() + 4.0 * (3.0 * PI * p[0]).sin());
    let opts = DesignOptions {
        lbfgs: Lbfgs {
            max_iters: 300,
            ..DesignOptions::default().lbfgs
        },
        ..DesignOptions::default()
    };
    let rec = recover_heater(&rod, &s_true, &opts).unwrap();
    let j0 = rec.result.report.history[0];
    assert!(
        rec.result.misfit < 1e-10 * j0,
        "J {} from {j0}",
        rec.result.misfit
    );
    assert!(
        rec.relative_error < 1e-3,
        "error to s*: {}",
        rec.relative_error
    );
    assert_eq!(rec.result.n_solves, 2 * rec.result.report.evaluations + 1);
    // With smoothing on the plate: J must drop by orders of magnitude.
    let plate = Plate::new(12).unwrap();
    let s_true: Vec<f64> = plate.sample(&|p| 20.0 * (PI * p[0]).sin() * (PI * p[1]).sin());
    let opts = DesignOptions {
        alpha: 1e-8,
        lbfgs: Lbfgs {
            max_iters: 200,
            ..DesignOptions::default().lbfgs
        },
    };
    let rec = recover_heater(&plate, &s_true, &opts).unwrap();
    let j0 = rec.result.report.history[0];
    assert!(
        rec.result.misfit < 1e-6 * j0,
        "J {} from {j0}",
        rec.result.misfit
    );
    assert!(
        rec.relative_error < 0.05,
        "error to s*: {}",
        rec.relative_error
    );
    assert_ne!(rec.result.report.stop, StopReason::LineSearchFailed);
}

#[test]
fn lagrange_multiplier_example() {
    let s = lagrange_example(1.0f64).unwrap();
    assert!((s.x - 0.5).abs() < 1e-14 && (s.y - 0.5).abs() < 1e-14);
    assert!((s.lambda + 1.0).abs() < 1e-14);
    let eps = 1e-3;
    let moved = lagrange_example(1.0 + eps).unwrap().objective - s.objective;
    assert!((moved - (-s.lambda * eps)).abs() <= eps * eps);
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    assert_eq!(Rod::new(0), Err(PdeError::Empty { what: "n" }));
    assert_eq!(Plate::new(0), Err(PdeError::Empty { what: "m" }));
    let rod = Rod::new(5).unwrap();
    // Target: wrong length, non-finite.
    assert!(matches!(
        HeatProblem::new(&rod, &[0.0; 4]),
        Err(PdeError::LengthMismatch {
            what: "target",
            expected: 5,
            found: 4
        })
    ));
    assert_eq!(
        HeatProblem::new(&rod, &[0.0, 0.0, f64::INFINITY, 0.0, 0.0]).unwrap_err(),
        PdeError::NonFinite {
            what: "target",
            index: 2
        }
    );
    let mut p = HeatProblem::new(&rod, &[0.0; 5]).unwrap();
    let mut g = vec![0.0; 5];
    // Design: wrong length, non-finite.
    assert!(matches!(
        p.objective_and_gradient(&[1.0; 6], &mut g),
        Err(PdeError::LengthMismatch { what: "s", .. })
    ));
    assert_eq!(
        p.objective(&[1.0, f64::NAN, 1.0, 1.0, 1.0]).unwrap_err(),
        PdeError::NonFinite {
            what: "s",
            index: 1
        }
    );
    assert!(matches!(
        p.gradient_forward(&[1.0; 5], &mut [0.0; 3]),
        Err(PdeError::LengthMismatch {
            what: "gradient",
            ..
        })
    ));
    assert!(matches!(
        p.gradient_fd(&[1.0; 5], &mut g, Some(-1.0)),
        Err(PdeError::InvalidOption { name: "step", .. })
    ));
    assert!(matches!(
        p.set_target(&[0.0; 2]),
        Err(PdeError::LengthMismatch { .. })
    ));
    // Not positive definite: −A, and an indefinite symmetric matrix.
    let neg = rod.laplacian::<f64>().map(|v| -v);
    assert!(matches!(
        HeatProblem::from_operator(neg, 0.1, &[0.0; 5]),
        Err(PdeError::NotPositiveDefinite { .. })
    ));
    let mut t = TriMat::new((2, 2));
    t.add_triplet(0, 0, 1.0);
    t.add_triplet(0, 1, 2.0);
    t.add_triplet(1, 0, 2.0);
    t.add_triplet(1, 1, 1.0);
    assert!(matches!(
        HeatProblem::from_operator(t.to_csc(), 1.0, &[0.0; 2]),
        Err(PdeError::NotPositiveDefinite { .. })
    ));
    // Operator problems: empty, non-square, bad weight, non-finite values,
    // new values that break definiteness.
    let empty: CsMat<f64> = CsMat::zero((0, 0));
    assert!(matches!(
        HeatProblem::from_operator(empty, 1.0, &[]),
        Err(PdeError::Empty { .. })
    ));
    let rect: CsMat<f64> = CsMat::zero((2, 3));
    assert!(matches!(
        HeatProblem::from_operator(rect, 1.0, &[0.0; 2]),
        Err(PdeError::Sparse(_))
    ));
    assert!(matches!(
        HeatProblem::from_operator(rod.laplacian(), 0.0, &[0.0; 5]),
        Err(PdeError::InvalidOption { name: "weight", .. })
    ));
    let nan_op = rod.laplacian::<f64>().map(|v| v * f64::NAN);
    assert!(matches!(
        HeatProblem::from_operator(nan_op, 1.0, &[0.0; 5]),
        Err(PdeError::NonFinite {
            what: "operator",
            ..
        })
    ));
    let neg = rod.laplacian::<f64>().map(|v| -v);
    assert!(matches!(
        p.update_operator(neg),
        Err(PdeError::NotPositiveDefinite { .. })
    ));
    // The failed update left the problem usable with its old operator.
    let mut u = vec![0.0; 5];
    p.solve_into(&[1.0; 5], &mut u).unwrap();
    assert!((u[2] - 0.5 * 0.5 * 0.5).abs() < 1e-12, "{u:?}");
    // Design options.
    let opts = DesignOptions {
        alpha: -1.0,
        ..DesignOptions::default()
    };
    assert!(matches!(
        inverse_design(&rod, &[0.0; 5], &[0.0; 5], &opts),
        Err(PdeError::InvalidOption { name: "alpha", .. })
    ));
    assert!(matches!(
        inverse_design(&rod, &[0.0; 5], &[0.0; 4], &DesignOptions::default()),
        Err(PdeError::LengthMismatch { what: "s0", .. })
    ));
    assert!(lagrange_example(f64::INFINITY).is_err());
}

/// Public types can move across threads (trajectories and sweeps run on rayon).
#[test]
fn public_types_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    fn clone<T: Clone>() {}
    send_sync::<HeatProblem<f64>>();
    send_sync::<HeatProblem<f32>>();
    send_sync::<Rod>();
    send_sync::<Plate>();
    send_sync::<PdeError>();
    send_sync::<pde_adjoint::DesignResult<f64>>();
    send_sync::<pde_adjoint::ScalingTable>();
    clone::<Rod>();
    clone::<Plate>();
    clone::<pde_adjoint::Smoothing<f64>>();
    clone::<pde_adjoint::DesignOptions<f64>>();
}
