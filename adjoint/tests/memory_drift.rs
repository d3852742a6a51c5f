//! Memory of backsolve is flat while the number of steps grows tenfold (direct's
//! grows with it); a long-horizon problem where backsolve drifts while the
//! checkpointed adjoint and direct backpropagation stay exact.

mod common;

use adjoint::test_problems::Linear;
use adjoint::{AdjointSolver, Checkpoints, GradientMode, Method, Options};
use common::closed_form;

fn run(
    mode: GradientMode<f64>,
    a: &[f64],
    z0: &[f64],
    ts: &[f64],
    tol: f64,
) -> (adjoint::Gradients<f64>, adjoint::GradStats) {
    let n = z0.len();
    let mut solver =
        AdjointSolver::new(Method::Dopri5, Options::with_tol(tol, tol)).with_mode(mode);
    let mut d = Linear::new(n);
    solver.forward(&mut d, z0, a, ts).unwrap();
    let mut dl = vec![0.0; ts.len() * n];
    dl[(ts.len() - 1) * n..].fill(1.0);
    let g = solver.backward(&mut d, &dl).unwrap();
    (g, solver.stats())
}

#[test]
fn backsolve_memory_flat_direct_grows() {
    // Harmonic oscillator: steps grow linearly with the horizon.
    let a = [0.0, 2.0, -2.0, 0.0];
    let z0 = [1.0, 0.0];
    let mut rows = Vec::new();
    for horizon in [2.0, 20.0] {
        let (_, sb) = run(
            GradientMode::backsolve(false),
            &a,
            &z0,
            &[0.0, horizon],
            1e-8,
        );
        let (_, sd) = run(GradientMode::Direct, &a, &z0, &[0.0, horizon], 1e-8);
        let (_, sc) = run(GradientMode::checkpointed(), &a, &z0, &[0.0, horizon], 1e-8);
        let (_, sk) = run(
            GradientMode::Checkpointed {
                checkpoints: Checkpoints::Budget(8),
                backward: Default::default(),
            },
            &a,
            &z0,
            &[0.0, horizon],
            1e-8,
        );
        println!(
            "T = {horizon}: steps {} | peak bytes: backsolve {} direct {} checkpointed {} budget(8) {}",
            sb.forward.accepted, sb.peak_bytes, sd.peak_bytes, sc.peak_bytes, sk.peak_bytes
        );
        rows.push((sb, sd, sc, sk));
    }
    let (short, long) = (&rows[0], &rows[1]);
    let growth = long.0.forward.accepted as f64 / short.0.forward.accepted as f64;
    assert!(growth >= 8.0, "steps grew only {growth}x");
    assert_eq!(
        short.0.peak_bytes, long.0.peak_bytes,
        "backsolve memory must not depend on steps"
    );
    let direct_growth = long.1.peak_bytes as f64 / short.1.peak_bytes as f64;
    assert!(
        direct_growth > 4.0,
        "direct memory grew only {direct_growth}x"
    );
    let ck_growth = long.2.peak_bytes as f64 / short.2.peak_bytes as f64;
    assert!(
        ck_growth > 4.0,
        "checkpointed (every step) memory grew only {ck_growth}x"
    );
    // A budget of 8 checkpoints holds about 1/8 of the trajectory at a time.
    assert!(
        2 * long.3.peak_bytes < long.2.peak_bytes,
        "budget(8) holds {} bytes, every-step {}",
        long.3.peak_bytes,
        long.2.peak_bytes
    );
}

/// `ż = A z` with a fast decaying mode: integrating `z` backwards (backsolve) amplifies
/// the solver's errors by `e^{3·6}`; the exact gradient is known in closed form.
#[test]
fn long_horizon_backsolve_drifts() {
    let n = 2;
    let a = [-0.2, 0.5, 0.3, -3.0];
    let z0 = [1.0, 1.0];
    let t1 = 6.0;
    let w = [1.0, 1.0];
    // Exact dL/dA by Van Loan's block exponential; dL/dz0 = e^{A t}ᵀ w (no loss at t = 0).
    let (gz0, ga, _) = closed_form(&a, n, &z0, &[0.0, 0.0, w[0], w[1]], &[0.0, t1]);
    let err = |g: &adjoint::Gradients<f64>| {
        let num: f64 = g
            .theta
            .iter()
            .zip(&ga)
            .map(|(x, y)| (x - y).powi(2))
            .sum::<f64>()
            + g.z0
                .iter()
                .zip(&gz0)
                .map(|(x, y)| (x - y).powi(2))
                .sum::<f64>();
        let den: f64 = ga.iter().chain(&gz0).map(|y| y * y).sum();
        (num / den).sqrt()
    };
    let tol = 1e-8;
    let (gb, _) = run(GradientMode::backsolve(false), &a, &z0, &[0.0, t1], tol);
    let (gc, _) = run(GradientMode::checkpointed(), &a, &z0, &[0.0, t1], tol);
    let (gd, _) = run(GradientMode::Direct, &a, &z0, &[0.0, t1], tol);
    let (gf, _) = run(GradientMode::Forward, &a, &z0, &[0.0, t1], tol);
    let (eb_, ec, ed, ef) = (err(&gb), err(&gc), err(&gd), err(&gf));
    println!(
        "relative gradient error at rtol = atol = {tol:e}: backsolve {eb_:.3e} checkpointed {ec:.3e} direct {ed:.3e} forward {ef:.3e}"
    );
    assert!(
        ec < 1e-6 && ed < 1e-6 && ef < 1e-6,
        "exact modes off: {ec:e} {ed:e} {ef:e}"
    );
    assert!(
        eb_ > 100.0 * ec.max(ed),
        "backsolve did not drift visibly: {eb_:e}"
    );
}
