//! Function encoders: velocity estimates, coefficients (least squares recovers known
//! coefficients with the true fields as the basis), the differentiable Gram solve and the
//! training loss's gradient against central differences and another gradient mode.

use adjoint::GradientMode;
use autodiff::Tape;
use autodiff::optim::Adam;
use models::ModelsError;
use models::datasets::Batch;
use models::function_encoder::coefficients::{
    coefficients, gram, gram_solve, project, solve_gram, velocities,
};
use models::function_encoder::systems::irregular_times;
use models::function_encoder::{
    BasisConfig, CoefficientMethod, DemoConfig, Demonstrations, EncoderSettings, FunctionEncoder,
    System, TrainPlan, TransferCase, VelocityEstimate, train_encoder, zero_shot,
};
use models::training::{Control, Model, StepInfo, TrainConfig, Trainer};

const FD: VelocityEstimate = VelocityEstimate::FiniteDifference;

/// Demonstrations whose states are a quadratic in time per trajectory.
fn quadratic_demo(n: usize) -> Demonstrations {
    let ts = irregular_times(n, 2.0, 5).unwrap();
    let b = 2;
    let mut states = Vec::new();
    for &t in &ts {
        for j in 0..b {
            let c = j as f64 + 1.0;
            states.push(0.3 + c * t - 0.7 * t * t);
            states.push(-1.0 + 0.5 * c * t * t);
        }
    }
    Demonstrations {
        system: System::VanDerPol { mu: 1.0 },
        ts,
        n_traj: b,
        states,
    }
}

#[test]
fn velocity_estimates_are_exact_for_quadratics_on_irregular_grids() {
    let demo = quadratic_demo(9);
    let b = demo.n_traj;
    for how in [FD, VelocityEstimate::LocalQuadratic { half_width: 2 }] {
        let v = velocities(&demo, how).unwrap();
        for (k, &t) in demo.ts.iter().enumerate() {
            for j in 0..b {
                let c = j as f64 + 1.0;
                let exact = [c - 1.4 * t, c * t];
                for d in 0..2 {
                    let got = v[(k * b + j) * 2 + d];
                    assert!(
                        (got - exact[d]).abs() < 1e-10,
                        "{how:?} k={k} {got} vs {}",
                        exact[d]
                    );
                }
            }
        }
    }
}

#[test]
fn finite_differences_converge_at_second_order() {
    // Velocity error on a Van der Pol trajectory, halving the mean spacing.
    let sys = System::Pendulum { length: 6.0 };
    let mut errs = Vec::new();
    for n in [21, 41, 81] {
        let config = DemoConfig {
            n_traj: 1,
            n_times: n,
            horizon: 2.0,
            noise: 0.0,
        };
        let demo = Demonstrations::generate(sys, &config, 3).unwrap();
        let v = velocities(&demo, FD).unwrap();
        let mut exact = [0.0; 2];
        let mut err: f64 = 0.0;
        for k in 0..n {
            sys.field(&demo.states[2 * k..2 * k + 2], &mut exact);
            err = err.max(
                (v[2 * k] - exact[0])
                    .abs()
                    .max((v[2 * k + 1] - exact[1]).abs()),
            );
        }
        errs.push(err);
    }
    for w in errs.windows(2) {
        let order = (w[0] / w[1]).log2();
        assert!(order > 1.6, "observed order {order} from {errs:?}");
    }
}

/// The true fields of the family as a basis: `[y, 0]`, `[0, x]`, `[0, y]`,
/// `[0, (1 − x²) y]`, `[0, sin x]` at every point.
fn true_basis(xs: &[f64]) -> Vec<f64> {
    let fields: [fn(f64, f64) -> [f64; 2]; 5] = [
        |_, y| [y, 0.0],
        |x, _| [0.0, x],
        |_, y| [0.0, y],
        |x, y| [0.0, (1.0 - x * x) * y],
        |x, _| [0.0, x.sin()],
    ];
    let mut phi = Vec::new();
    for f in fields {
        for p in xs.chunks_exact(2) {
            phi.extend(f(p[0], p[1]));
        }
    }
    phi
}

#[test]
fn least_squares_with_the_true_fields_recovers_known_coefficients() {
    let config = DemoConfig {
        n_traj: 3,
        n_times: 30,
        horizon: 3.0,
        noise: 0.0,
    };
    let cases = [
        (System::VanDerPol { mu: 1.3 }, [1.0, -1.0, 0.0, 1.3, 0.0]),
        (
            System::DampedOscillator {
                omega: 1.2,
                zeta: 0.1,
            },
            [1.0, -1.44, -0.24, 0.0, 0.0],
        ),
        (
            System::Pendulum { length: 9.81 / 2.0 },
            [1.0, 0.0, 0.0, 0.0, -2.0],
        ),
    ];
    for (i, (sys, alpha_true)) in cases.into_iter().enumerate() {
        let demo = Demonstrations::generate(sys, &config, i as u64).unwrap();
        let m = demo.states.len() / 2;
        let phi = true_basis(&demo.states);
        // Exact velocities: recovery to round-off.
        let mut v = vec![0.0; demo.states.len()];
        for (x, dx) in demo.states.chunks_exact(2).zip(v.chunks_exact_mut(2)) {
            sys.field(x, dx);
        }
        let method = CoefficientMethod::LeastSquares { lambda: 0.0 };
        let alpha = coefficients(&phi, &v, 5, m, method).unwrap();
        for (a, e) in alpha.iter().zip(alpha_true) {
            assert!(
                (a - e).abs() < 1e-10,
                "{}: {alpha:?} vs {alpha_true:?}",
                sys.label()
            );
        }
        // Finite-difference velocities of the irregular samples (h ≈ 0.1): close; the
        // pendulum's `x` and `sin x` columns are nearly collinear, which amplifies the
        // O(h²) velocity error to a few percent.
        let v = velocities(&demo, FD).unwrap();
        let alpha = coefficients(&phi, &v, 5, m, method).unwrap();
        for (a, e) in alpha.iter().zip(alpha_true) {
            assert!(
                (a - e).abs() < 0.1,
                "{}: FD {alpha:?} vs {alpha_true:?}",
                sys.label()
            );
        }
    }
}

#[test]
fn inner_product_equals_least_squares_for_an_orthonormal_basis() {
    let demo =
        Demonstrations::generate(System::VanDerPol { mu: 0.8 }, &DemoConfig::default(), 1).unwrap();
    let (k, m) = (4, demo.states.len() / 2);
    let mut phi = true_basis(&demo.states)[..k * demo.states.len()].to_vec();
    // Gram–Schmidt in ⟨f, g⟩ = f·g / m.
    let n = demo.states.len();
    for i in 0..k {
        for l in 0..i {
            let d = project(&phi[l * n..(l + 1) * n], &phi[i * n..(i + 1) * n], 1, m)[0];
            for j in 0..n {
                phi[i * n + j] -= d * phi[l * n + j];
            }
        }
        let norm = gram(&phi[i * n..(i + 1) * n], 1, m)[0].sqrt();
        phi[i * n..(i + 1) * n].iter_mut().for_each(|x| *x /= norm);
    }
    let g = gram(&phi, k, m);
    for r in 0..k {
        for c in 0..k {
            let e = if r == c { 1.0 } else { 0.0 };
            assert!((g[r * k + c] - e).abs() < 1e-12);
        }
    }
    let v = velocities(&demo, FD).unwrap();
    let a = coefficients(&phi, &v, k, m, CoefficientMethod::InnerProduct).unwrap();
    let b = coefficients(
        &phi,
        &v,
        k,
        m,
        CoefficientMethod::LeastSquares { lambda: 0.0 },
    )
    .unwrap();
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() < 1e-10, "{a:?} vs {b:?}");
    }
}

#[test]
fn dependent_basis_without_ridge_is_a_clear_error() {
    let demo = quadratic_demo(6);
    let m = demo.states.len() / 2;
    let one = true_basis(&demo.states)[..demo.states.len()].to_vec();
    let phi: Vec<f64> = one.iter().chain(&one).copied().collect(); // f₂ = f₁
    let v = velocities(&demo, FD).unwrap();
    let err = coefficients(
        &phi,
        &v,
        2,
        m,
        CoefficientMethod::LeastSquares { lambda: 0.0 },
    )
    .unwrap_err();
    assert!(err.to_string().contains("not positive definite"), "{err}");
    // A ridge makes it solvable, and splits the weight equally.
    let a = coefficients(
        &phi,
        &v,
        2,
        m,
        CoefficientMethod::LeastSquares { lambda: 1e-3 },
    )
    .unwrap();
    assert!((a[0] - a[1]).abs() < 1e-9 * a[0].abs().max(1.0), "{a:?}");
    // Mismatched lengths and a negative ridge are errors too.
    assert!(coefficients(&phi[1..], &v, 2, m, CoefficientMethod::InnerProduct).is_err());
    assert!(solve_gram(&[1.0], &[1.0], -1.0).is_err());
    assert!(solve_gram(&[f64::NAN], &[1.0], 0.0).is_err());
}

#[test]
fn gram_solve_op_matches_central_differences() {
    let k = 3;
    let g0 = [2.0, 0.3, -0.1, 0.3, 1.5, 0.2, -0.1, 0.2, 1.0];
    let b0 = [0.4, -1.0, 0.7];
    let lambda = 0.01;
    let w = [0.5, -0.3, 1.1]; // L = w · α
    let loss = |g: &[f64], b: &[f64]| -> f64 {
        let a = solve_gram(g, b, lambda).unwrap();
        a.iter().zip(&w).map(|(x, y)| x * y).sum()
    };
    let tape = Tape::new();
    tape.set_recording(true);
    let g = tape.leaf(&g0, &[k, k]).unwrap();
    let b = tape.leaf(&b0, &[k]).unwrap();
    let a = gram_solve(g, b, lambda);
    let wv = tape.constant(&w, &[k]).unwrap();
    let l = (a * wv).sum();
    tape.backward_scalar(l).unwrap();
    let (gg, gb) = (g.grad().unwrap(), b.grad().unwrap());
    let h = 1e-6;
    for i in 0..k * k {
        let (mut p, mut q) = (g0, g0);
        p[i] += h;
        q[i] -= h;
        let fd = (loss(&p, &b0) - loss(&q, &b0)) / (2.0 * h);
        assert!((fd - gg[i]).abs() < 1e-8, "dG[{i}]: {fd} vs {}", gg[i]);
    }
    for i in 0..k {
        let (mut p, mut q) = (b0, b0);
        p[i] += h;
        q[i] -= h;
        let fd = (loss(&g0, &p) - loss(&g0, &q)) / (2.0 * h);
        assert!((fd - gb[i]).abs() < 1e-8, "db[{i}]: {fd} vs {}", gb[i]);
    }
}

fn tiny_demos(n_systems: usize) -> Vec<Demonstrations> {
    let config = DemoConfig {
        n_traj: 2,
        n_times: 6,
        horizon: 0.6,
        noise: 0.0,
    };
    System::family(n_systems, 11)
        .into_iter()
        .enumerate()
        .map(|(i, s)| Demonstrations::generate(s, &config, 100 + i as u64).unwrap())
        .collect()
}

fn settings(method: CoefficientMethod, mode: GradientMode<f64>) -> EncoderSettings {
    EncoderSettings {
        coefficients: method,
        tol: 1e-11,
        mode,
        ..EncoderSettings::default()
    }
}

fn all_systems(n: usize) -> Batch<f64> {
    Batch {
        images: (0..n).map(|i| i as f64).collect(),
        labels: (0..n).collect(),
        shape: [n, 1, 1, 1],
    }
}

/// Loss and gradient of `fe` at parameters `theta` on the batch.
fn loss_and_grad(fe: &mut FunctionEncoder, theta: &[f64], batch: &Batch<f64>) -> (f64, Vec<f64>) {
    fe.params_mut().copy_from_slice(theta).unwrap();
    let tape = Tape::new();
    tape.set_recording(true);
    let th = fe.params().leaf(&tape).unwrap();
    let l = fe.loss(&tape, th, batch).unwrap();
    tape.backward_scalar(l).unwrap();
    (l.item().unwrap(), th.grad().unwrap())
}

#[test]
fn training_loss_gradient_matches_central_differences_and_direct_mode() {
    let batch = all_systems(3);
    for (method, residual) in [
        (CoefficientMethod::LeastSquares { lambda: 1e-3 }, true),
        (CoefficientMethod::InnerProduct, false),
    ] {
        let config = BasisConfig::new(2, 4).residual(residual).seed(7);
        let mut ck = FunctionEncoder::new(
            "fe",
            config,
            tiny_demos(3),
            settings(method, GradientMode::default()),
        )
        .unwrap();
        let mut direct = FunctionEncoder::new(
            "fe",
            config,
            tiny_demos(3),
            settings(method, GradientMode::Direct),
        )
        .unwrap();
        let theta0 = ck.params().as_slice().to_vec();
        let (_, g_ck) = loss_and_grad(&mut ck, &theta0, &batch);
        let (_, g_direct) = loss_and_grad(&mut direct, &theta0, &batch);
        let scale = g_ck.iter().fold(0.0f64, |a, g| a.max(g.abs()));
        assert!(scale > 1e-6, "gradient is not trivially zero");
        for (i, (a, b)) in g_ck.iter().zip(&g_direct).enumerate() {
            assert!(
                (a - b).abs() < 1e-6 * scale,
                "{method:?} θ[{i}]: checkpointed {a} vs direct {b}"
            );
        }
        // Central differences on every parameter (tiny network).
        let h = 1e-5;
        for i in 0..theta0.len() {
            let mut p = theta0.clone();
            p[i] += h;
            let lp = loss_and_grad(&mut ck, &p, &batch).0;
            p[i] -= 2.0 * h;
            let lm = loss_and_grad(&mut ck, &p, &batch).0;
            let fd = (lp - lm) / (2.0 * h);
            assert!(
                (fd - g_ck[i]).abs() < 1e-6 * scale + 1e-6 * fd.abs(),
                "{method:?} θ[{i}]: FD {fd} vs adjoint {}",
                g_ck[i]
            );
        }
    }
}

#[test]
fn gradient_through_solves_alone_matches_central_differences() {
    // Velocity weight 0: the gradient reaches the coefficients only through the ODE block.
    let batch = all_systems(2);
    let s = EncoderSettings {
        velocity_weight: 0.0,
        ..settings(
            CoefficientMethod::LeastSquares { lambda: 1e-2 },
            GradientMode::default(),
        )
    };
    let mut fe =
        FunctionEncoder::new("fe", BasisConfig::new(2, 3).seed(3), tiny_demos(2), s).unwrap();
    let theta0 = fe.params().as_slice().to_vec();
    let (_, g) = loss_and_grad(&mut fe, &theta0, &batch);
    let scale = g.iter().fold(0.0f64, |a, g| a.max(g.abs()));
    let h = 1e-5;
    for i in (0..theta0.len()).step_by(3) {
        let mut p = theta0.clone();
        p[i] += h;
        let lp = loss_and_grad(&mut fe, &p, &batch).0;
        p[i] -= 2.0 * h;
        let lm = loss_and_grad(&mut fe, &p, &batch).0;
        let fd = (lp - lm) / (2.0 * h);
        assert!(
            (fd - g[i]).abs() < 1e-6 * scale,
            "θ[{i}]: FD {fd} vs adjoint {}",
            g[i]
        );
    }
}

#[test]
fn training_lowers_the_loss_and_transfer_runs() {
    let config = BasisConfig::new(2, 8).residual(true).seed(1);
    let s = EncoderSettings {
        tol: 1e-5,
        ..EncoderSettings::default()
    };
    let mut fe = FunctionEncoder::new("fe", config, tiny_demos(6), s).unwrap();
    let mut losses = Vec::new();
    let plan = TrainPlan {
        epochs: 15,
        batch: 3,
        lr: 1e-2,
        clip: 10.0,
        seed: 0,
    };
    let summary = train_encoder(&mut fe, &plan, &mut |i: &StepInfo<'_>| {
        losses.push(i.loss);
        Control::Continue
    })
    .unwrap();
    assert_eq!(summary.steps, 30);
    let first: f64 = losses[..4].iter().sum();
    let last: f64 = losses[losses.len() - 4..].iter().sum();
    assert!(last < 0.7 * first, "{losses:?}");
    let demo = DemoConfig {
        n_traj: 2,
        n_times: 8,
        horizon: 0.6,
        noise: 0.0,
    };
    let case = TransferCase::new(System::VanDerPol { mu: 1.1 }, &demo, &demo, 5).unwrap();
    let z = zero_shot(
        &mut fe,
        &case,
        CoefficientMethod::LeastSquares { lambda: 1e-6 },
    )
    .unwrap();
    assert_eq!(z.alpha.len(), 2);
    assert!(z.rmse.is_finite() && z.rmse > 0.0);
}

#[test]
fn trainer_step_with_a_system_batch_and_bad_inputs() {
    let mut fe = FunctionEncoder::new(
        "fe",
        BasisConfig::new(1, 3),
        tiny_demos(2),
        EncoderSettings::default(),
    )
    .unwrap();
    let mut trainer = Trainer::new(
        Adam::with_lr(1e-2).unwrap(),
        TrainConfig::epochs(1).unwrap(),
    );
    let out = trainer.step(&mut fe, &all_systems(2)).unwrap();
    assert!(out.loss.is_finite() && out.grad_norm > 0.0);
    // A batch naming a system that does not exist.
    let err = trainer.step(&mut fe, &all_systems(3)).unwrap_err();
    assert!(matches!(err, ModelsError::InvalidArgument { .. }), "{err}");
    // No field at all, a bad name, a bad tolerance.
    let bad = BasisConfig::new(0, 3);
    assert!(FunctionEncoder::new("fe", bad, vec![], EncoderSettings::default()).is_err());
    assert!(
        FunctionEncoder::new(
            " fe",
            BasisConfig::new(1, 3),
            vec![],
            EncoderSettings::default()
        )
        .is_err()
    );
    let s = EncoderSettings {
        tol: 0.0,
        ..EncoderSettings::default()
    };
    assert!(FunctionEncoder::new("fe", BasisConfig::new(1, 3), vec![], s).is_err());
    // Malformed demonstrations.
    let mut d = tiny_demos(1).remove(0);
    d.states.pop();
    assert!(velocities(&d, FD).is_err());
    assert!(irregular_times(2, 1.0, 0).is_err());
    // Predictions need K coefficients.
    assert!(fe.predict(&[1.0, 2.0], &[0.0, 1.0], &[0.0, 0.1]).is_err());
}
