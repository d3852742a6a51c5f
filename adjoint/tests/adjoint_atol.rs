//! [`AdjointAtol`]: the backward absolute tolerance relative to the seed `∂L/∂z` makes the
//! backward error control independent of the loss's scale (issue 18 item 1).

use adjoint::{
    AdjointAtol, AdjointSolver, BackwardSolver, Checkpoints, Error, GradStats, GradientMode,
    Gradients, Method, Options, TanhMlp,
};

const TS: [f64; 3] = [0.0, 0.5, 1.0];
const BATCH: usize = 8;

fn field() -> (TanhMlp<f64>, Vec<f64>, Vec<f64>) {
    let f = TanhMlp::new(&[2, 16, 16, 2], BATCH, false).unwrap();
    // Large weights: a field whose adjoint needs more than the few steps an unscaled
    // tolerance lets the backward pass take.
    let theta = f.init_params(3, 5.0);
    let z0: Vec<f64> = (0..2 * BATCH)
        .map(|i| ((i as f64) * 0.37).sin() * 0.9)
        .collect();
    (f, theta, z0)
}

/// `c` times the mean of `z²` over the outputs at 0.5 and 1 (seeds at two output times).
fn loss(c: f64) -> impl FnMut(&[f64], &mut [f64]) -> f64 {
    move |zs, dl| {
        let n = 2 * BATCH;
        let m = (zs.len() - n) as f64;
        let mut l = 0.0;
        for (g, z) in dl[n..].iter_mut().zip(&zs[n..]) {
            *g = c * 2.0 * z / m;
            l += c * z * z / m;
        }
        l
    }
}

fn checkpointed(seminorm: bool, adjoint_atol: AdjointAtol<f64>) -> GradientMode<f64> {
    GradientMode::Checkpointed {
        checkpoints: Checkpoints::EveryStep,
        backward: BackwardSolver {
            seminorm,
            adjoint_atol,
            ..BackwardSolver::default()
        },
    }
}

fn backsolve(seminorm: bool, adjoint_atol: AdjointAtol<f64>) -> GradientMode<f64> {
    GradientMode::Backsolve {
        backward: BackwardSolver {
            seminorm,
            adjoint_atol,
            ..BackwardSolver::default()
        },
    }
}

/// The adjoint modes with `adjoint_atol`.
fn modes(adjoint_atol: AdjointAtol<f64>) -> Vec<GradientMode<f64>> {
    vec![
        checkpointed(true, adjoint_atol),
        checkpointed(false, adjoint_atol),
        GradientMode::Checkpointed {
            checkpoints: Checkpoints::Budget(2),
            backward: BackwardSolver {
                seminorm: true,
                adjoint_atol,
                ..BackwardSolver::default()
            },
        },
        backsolve(true, adjoint_atol),
        backsolve(false, adjoint_atol),
    ]
}

fn grad(mode: GradientMode<f64>, tol: f64, c: f64) -> (Gradients<f64>, GradStats) {
    let (mut f, theta, z0) = field();
    let mut s = AdjointSolver::new(Method::Dopri5, Options::with_tol(tol, tol)).with_mode(mode);
    let (_, g) = s.value_and_grad(&mut f, &z0, &theta, &TS, loss(c)).unwrap();
    (g, s.stats())
}

fn flat(g: &Gradients<f64>) -> Vec<f64> {
    g.theta.iter().chain(&g.z0).chain(&g.ts).copied().collect()
}

fn rel(a: &[f64], b: &[f64]) -> f64 {
    let d: f64 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
    let r: f64 = b.iter().map(|y| y * y).sum();
    (d / r).sqrt()
}

/// On a loss scaled by 1e-6 the unscaled `atol = 1e-6` is a 100 % tolerance on the
/// adjoint; relative to the seed, every adjoint mode's gradient is as accurate as the
/// tolerance says (against direct at 1e-12, itself checked against central differences).
#[test]
fn seed_relative_atol_is_accurate_on_a_badly_scaled_loss() {
    let c = 1e-6;
    let tol = 1e-6;
    let (g_ref, _) = grad(GradientMode::Direct, 1e-12, c);
    let g_ref = flat(&g_ref);
    // The reference against central differences of the loss in three parameters.
    let (mut f, theta, z0) = field();
    let mut s = AdjointSolver::new(Method::Dopri5, Options::with_tol(1e-12, 1e-12))
        .with_mode(GradientMode::Direct);
    for &k in &[0usize, 40, 300] {
        let h = 1e-4;
        let mut l = [0.0; 2];
        for (j, sign) in [1.0, -1.0].into_iter().enumerate() {
            let mut th = theta.clone();
            th[k] += sign * h;
            let zs = s.forward(&mut f, &z0, &th, &TS).unwrap().to_vec();
            let mut dl = vec![0.0; zs.len()];
            l[j] = loss(c)(&zs, &mut dl);
        }
        let fd = (l[0] - l[1]) / (2.0 * h);
        assert!(
            (fd - g_ref[k]).abs() <= 1e-6 * g_ref[k].abs() + 1e-13,
            "θ[{k}]: fd {fd:e}, direct {:e}",
            g_ref[k]
        );
    }
    let (gd, _) = grad(GradientMode::Direct, tol, c);
    let e_direct = rel(&flat(&gd), &g_ref);
    for (plain, scaled) in modes(AdjointAtol::Absolute)
        .into_iter()
        .zip(modes(AdjointAtol::RelativeToSeed))
    {
        let name = format!("{scaled:?}");
        let (gp, sp) = grad(plain, tol, c);
        let (gs, ss) = grad(scaled, tol, c);
        let (ep, es) = (rel(&flat(&gp), &g_ref), rel(&flat(&gs), &g_ref));
        eprintln!(
            "{name}: unscaled {ep:.2e} ({} steps), scaled {es:.2e} ({} steps), direct {e_direct:.2e} (fwd {})",
            sp.backward_accepted, ss.backward_accepted, sp.forward.accepted
        );
        assert!(es <= 10.0 * tol, "{name}: scaled error {es:e}");
        assert!(es <= 10.0 * e_direct.max(tol), "{name}: scaled {es:e}");
        // Backsolve keeps `z` under the forward's control, which bounds its steps (and
        // its error) even when the adjoint's tolerance is loose.
        let gain = if name.starts_with("Backsolve") {
            3.0
        } else {
            1e3
        };
        assert!(ep >= gain * es, "{name}: unscaled {ep:e}, scaled {es:e}");
    }
}

/// Scaling the loss by a power of two scales every seed, the adjoint and the tolerance
/// exactly: the same steps, the gradient exactly scaled. Unscaled, the steps change.
#[test]
fn steps_are_invariant_under_scaling_the_loss() {
    let tol = 1e-6;
    let mut moved = 0;
    for ((plain, scaled), _) in modes(AdjointAtol::Absolute)
        .into_iter()
        .zip(modes(AdjointAtol::RelativeToSeed))
        .zip(0..)
    {
        let name = format!("{scaled:?}");
        let (g1, s1) = grad(scaled.clone(), tol, 1.0);
        let (_, p1) = grad(plain.clone(), tol, 1.0);
        for c in [2f64.powi(-24), 2f64.powi(12)] {
            let (gc, sc) = grad(scaled.clone(), tol, c);
            assert_eq!(sc, s1, "{name}, c = {c:e}");
            for (x, y) in flat(&gc).iter().zip(&flat(&g1)) {
                assert_eq!(x.to_bits(), (c * y).to_bits(), "{name}, c = {c:e}");
            }
            let (_, pc) = grad(plain.clone(), tol, c);
            moved += usize::from(pc.backward_accepted != p1.backward_accepted);
        }
    }
    assert!(
        moved > 0,
        "the unscaled steps never moved: the test shows nothing"
    );
}

/// `AdjointAtol::Scale(s)` with `s` the largest seed is `RelativeToSeed`; an all-zero seed
/// gives a zero gradient (no 0/0 in the error norm).
#[test]
fn explicit_scale_and_zero_seed() {
    let c = 3e-5;
    let (mut f, theta, z0) = field();
    let mut s = AdjointSolver::new(Method::Dopri5, Options::with_tol(1e-6, 1e-6));
    let zs = s.forward(&mut f, &z0, &theta, &TS).unwrap().to_vec();
    let mut dl = vec![0.0; zs.len()];
    loss(c)(&zs, &mut dl);
    let smax = dl[2 * BATCH..].iter().fold(0.0f64, |a, g| a.max(g.abs()));
    for (a, b) in modes(AdjointAtol::RelativeToSeed)
        .into_iter()
        .zip(modes(AdjointAtol::Scale(smax)))
    {
        assert_eq!(grad(a, 1e-6, c), grad(b, 1e-6, c));
    }
    for mode in modes(AdjointAtol::RelativeToSeed) {
        let (g, _) = grad(mode, 1e-6, 0.0);
        assert!(flat(&g).iter().all(|x| *x == 0.0));
    }
}

#[test]
fn bad_scale_is_rejected() {
    let (mut f, theta, z0) = field();
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        for mode in [
            checkpointed(true, AdjointAtol::Scale(bad)),
            backsolve(true, AdjointAtol::Scale(bad)),
        ] {
            let mut s =
                AdjointSolver::new(Method::Dopri5, Options::with_tol(1e-6, 1e-6)).with_mode(mode);
            let r = s.forward(&mut f, &z0, &theta, &TS);
            assert!(
                matches!(
                    r,
                    Err(Error::InvalidOption {
                        name: "AdjointAtol::Scale",
                        ..
                    })
                ),
                "{bad}: {r:?}"
            );
        }
    }
}
