//! The shared reference problems: every one solves, independent methods agree, and the
//! closed forms / published end values are met.

use ode_solvers::problems::{
    Arenstorf, Brusselator, Decay, Harmonic, Logistic, Lorenz, Pleiades, Riccati, TestProblem,
    VanDerPol, expm,
};
use ode_solvers::{AdamsStepper, DenseStep, Method, Options, RkStepper, SolveError, odeint};

fn solve<P: TestProblem<f64> + Clone>(p: &P, m: Method, tol: f64) -> (Vec<f64>, usize) {
    let (t0, t1) = p.t_span();
    let o = Options {
        max_steps: 1_000_000,
        ..Options::with_tol(tol, tol)
    };
    let s = odeint(&mut p.clone(), &p.y0(), &[t0, t1], m, &o).expect("solve");
    (s.y_last().to_vec(), s.stats.nfe)
}

fn dist(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

fn agree<P: TestProblem<f64> + Clone>(p: P, bound: f64) {
    let (a, _) = solve(&p, Method::Dop853, 1e-12);
    let (b, _) = solve(&p, Method::Dopri5, 1e-11);
    let (c, _) = solve(&p, Method::Adams, 1e-11);
    let scale = a.iter().fold(1.0f64, |m, x| m.max(x.abs()));
    assert!(
        dist(&a, &b) < bound * scale,
        "{}: dop853 vs dopri5 {:e}",
        p.name(),
        dist(&a, &b)
    );
    assert!(
        dist(&a, &c) < bound * scale,
        "{}: dop853 vs adams {:e}",
        p.name(),
        dist(&a, &c)
    );
    if let Some(ex) = p.exact(p.t_span().1) {
        assert!(
            dist(&a, &ex) < bound * scale,
            "{}: vs exact {:e}",
            p.name(),
            dist(&a, &ex)
        );
    }
}

#[test]
fn methods_agree_on_every_problem() {
    agree(Arenstorf, 1e-5);
    agree(VanDerPol::default(), 1e-7);
    agree(Brusselator, 1e-7);
    agree(Pleiades, 1e-6);
    agree(Decay { lambda: -1.5 }, 1e-9);
    agree(Harmonic { omega: 2.0 }, 1e-8);
    agree(Logistic { r: 2.0, y0: 0.1 }, 1e-9);
    agree(Riccati, 1e-9);
    // Lorenz is chaotic over [0, 10]: compare over [0, 2] only.
    let mut l = Lorenz::default();
    let y0 = TestProblem::<f64>::y0(&l);
    let o = Options::with_tol(1e-12, 1e-12);
    let a = odeint(&mut l, &y0, &[0.0, 2.0], Method::Dop853, &o).unwrap();
    let b = odeint(&mut l, &y0, &[0.0, 2.0], Method::Dopri5, &o).unwrap();
    assert!(dist(a.y_last(), b.y_last()) < 1e-7);
}

#[test]
fn pleiades_conserves_energy_and_momentum() {
    let p = Pleiades;
    let (y, _) = solve(&p, Method::Dop853, 1e-10);
    let y0 = TestProblem::<f64>::y0(&p);
    let energy = |y: &[f64]| {
        let mut e = 0.0;
        for i in 0..7 {
            let mi = (i + 1) as f64;
            e += 0.5 * mi * (y[14 + i].powi(2) + y[21 + i].powi(2));
            for j in (i + 1)..7 {
                let mj = (j + 1) as f64;
                e -= mi * mj / ((y[j] - y[i]).powi(2) + (y[7 + j] - y[7 + i]).powi(2)).sqrt();
            }
        }
        e
    };
    let momentum = |y: &[f64]| -> (f64, f64) {
        (0..7).fold((0.0, 0.0), |(px, py), i| {
            let mi = (i + 1) as f64;
            (px + mi * y[14 + i], py + mi * y[21 + i])
        })
    };
    assert!((energy(&y) - energy(&y0)).abs() < 1e-6 * energy(&y0).abs());
    let (p0, p1) = (momentum(&y0), momentum(&y));
    assert!((p0.0 - p1.0).abs() < 1e-8 && (p0.1 - p1.1).abs() < 1e-8);
}

#[test]
fn expm_matches_series_identities() {
    // expm(A t) expm(-A t) = I, and the rotation generator gives cos/sin.
    let a = [0.0, 1.0, -1.0, 0.0];
    let e = expm(&a, 2, 0.7);
    assert!((e[0] - 0.7f64.cos()).abs() < 1e-15 && (e[1] - 0.7f64.sin()).abs() < 1e-15);
    let b = [0.3, -1.2, 0.5, 2.0, -0.1, 0.4, 1.0, 0.7, -0.6];
    let p = expm(&b, 3, 1.3);
    let q = expm(&b, 3, -1.3);
    for i in 0..3 {
        for j in 0..3 {
            let s: f64 = (0..3).map(|k| p[i * 3 + k] * q[k * 3 + j]).sum();
            let id = if i == j { 1.0 } else { 0.0 };
            assert!((s - id).abs() < 1e-13);
        }
    }
}

#[test]
fn public_types_are_send_sync_clone() {
    fn check<T: Send + Sync + Clone>() {}
    check::<Options<f64>>();
    check::<Options<f32>>();
    check::<RkStepper<f64>>();
    check::<AdamsStepper<f32>>();
    check::<DenseStep<f64>>();
    check::<SolveError>();
    check::<ode_solvers::Solution<f64>>();
    check::<Method>();
}
