//! Function-evaluation counts against Hairer's DOPRI5 and DOP853.
//!
//! The Fortran codes cannot run here, so `hairer_port` below is a line-by-line port of the
//! core loops `DOPCOR` (dopri5.f) and `DP86CO` (dop853.f) with `HINIT`, in Fortran's
//! arithmetic order (`Y1 = Y + H*(A21*K1 + …)`), scalar tolerances, no dense output and no
//! stiffness detection (neither changes the step sequence). Our driver must need the same
//! number of evaluations on the Arenstorf orbit, Lorenz and Van der Pol (μ = 1) at
//! tolerances 1e-3 … 1e-10, and reach the same accuracy.
//! Run with `--nocapture` to print the table recorded in the crate docs.

use ode_solvers::problems::{Arenstorf, Lorenz, TestProblem, VanDerPol};
use ode_solvers::tableau::{DOP853, DOPRI5, Tableau};
use ode_solvers::{Method, Options, odeint};

struct Counts {
    nfe: usize,
    accepted: usize,
    rejected: usize,
    y: Vec<f64>,
}

fn hinit<F: FnMut(f64, &[f64], &mut [f64])>(
    f: &mut F,
    x: f64,
    y: &[f64],
    posneg: f64,
    f0: &[f64],
    iord: i32,
    hmax: f64,
    atol: f64,
    rtol: f64,
) -> f64 {
    let n = y.len();
    let (mut dnf, mut dny) = (0.0, 0.0);
    for i in 0..n {
        let sk = atol + rtol * y[i].abs();
        dnf += (f0[i] / sk).powi(2);
        dny += (y[i] / sk).powi(2);
    }
    let mut h = if dnf <= 1e-10 || dny <= 1e-10 {
        1e-6
    } else {
        (dny / dnf).sqrt() * 0.01
    };
    h = h.min(hmax);
    h = h.abs() * posneg;
    let y1: Vec<f64> = (0..n).map(|i| y[i] + h * f0[i]).collect();
    let mut f1 = vec![0.0; n];
    f(x + h, &y1, &mut f1);
    let mut der2 = 0.0;
    for i in 0..n {
        let sk = atol + rtol * y[i].abs();
        der2 += ((f1[i] - f0[i]) / sk).powi(2);
    }
    der2 = der2.sqrt() / h;
    let der12 = der2.abs().max(dnf.sqrt());
    let h1 = if der12 <= 1e-15 {
        1e-6f64.max(h.abs() * 1e-3)
    } else {
        (0.01 / der12).powf(1.0 / f64::from(iord))
    };
    h = (100.0 * h.abs()).min(h1).min(hmax);
    h.abs() * posneg
}

/// Port of DOPCOR / DP86CO (selected by `tab`), Hairer's default parameters.
fn hairer_port<F: FnMut(f64, &[f64], &mut [f64])>(
    tab: &Tableau,
    mut f: F,
    mut x: f64,
    y0: &[f64],
    xend: f64,
    tol: f64,
) -> Counts {
    let n = y0.len();
    let dop853 = tab.b_err2.is_some();
    let (safe, fac1, fac2, beta, iord, expo1): (f64, f64, f64, f64, i32, f64) = if dop853 {
        (0.9, 0.333, 6.0, 0.0, 8, 1.0 / 8.0)
    } else {
        (0.9, 0.2, 10.0, 0.04, 5, 0.2 - 0.04 * 0.75)
    };
    let (facc1, facc2) = (1.0 / fac1, 1.0 / fac2);
    let posneg = (xend - x).signum();
    let hmax = (xend - x).abs();
    let uround = 2.3e-16;
    let s = tab.stages;
    let mut k = vec![vec![0.0; n]; s + 1];
    let mut y = y0.to_vec();
    let mut y1 = vec![0.0; n];
    let mut ynew = vec![0.0; n];
    let mut nfcn = 0;
    let (mut naccpt, mut nrejct, mut nstep) = (0, 0, 0);
    let mut facold: f64 = 1e-4;
    f(x, &y, &mut k[0]);
    let mut h = hinit(&mut f, x, &y, posneg, &k[0].clone(), iord, hmax, tol, tol);
    nfcn += 2;
    let mut reject = false;
    let mut last;
    loop {
        assert!(nstep <= 100_000, "too many steps");
        assert!(0.1 * h.abs() > x.abs() * uround, "step size too small");
        last = false;
        if (x + 1.01 * h - xend) * posneg > 0.0 {
            h = xend - x;
            last = true;
        }
        nstep += 1;
        for i in 1..s {
            for m in 0..n {
                let mut acc = 0.0;
                for (j, a) in tab.a[i].iter().enumerate() {
                    if *a != 0.0 {
                        acc += a * k[j][m];
                    }
                }
                y1[m] = y[m] + h * acc;
            }
            let (lo, hi) = k.split_at_mut(i);
            let _ = lo;
            f(x + tab.c[i] * h, &y1, &mut hi[0]);
        }
        nfcn += s - 1;
        for m in 0..n {
            let acc: f64 = (0..s).map(|j| tab.b[j] * k[j][m]).sum();
            ynew[m] = y[m] + h * acc;
        }
        let e = tab.b_err.unwrap();
        let mut err: f64 = 0.0;
        let mut err2: f64 = 0.0;
        for m in 0..n {
            let sk = tol + tol * y[m].abs().max(ynew[m].abs());
            let ei: f64 = (0..s).map(|j| e[j] * k[j][m]).sum();
            err += (ei / sk).powi(2);
            if let Some(e2) = tab.b_err2 {
                let ei2: f64 = (0..s).map(|j| e2[j] * k[j][m]).sum();
                err2 += (ei2 / sk).powi(2);
            }
        }
        if dop853 {
            let mut deno = err + 0.01 * err2;
            if deno <= 0.0 {
                deno = 1.0;
            }
            err = h.abs() * err * (1.0 / (n as f64 * deno)).sqrt();
        } else {
            err = (h * h * err / n as f64).sqrt();
        }
        let fac11 = err.powf(expo1);
        let mut fac = fac11 / facold.powf(beta);
        fac = facc2.max(facc1.min(fac / safe));
        let mut hnew = h / fac;
        if err <= 1.0 {
            facold = err.max(1e-4);
            naccpt += 1;
            if tab.fsal {
                k.swap(0, s - 1);
            } else {
                let mut fnew = vec![0.0; n];
                f(x + h, &ynew, &mut fnew);
                nfcn += 1;
                k[0] = fnew;
            }
            y.copy_from_slice(&ynew);
            x += h;
            if last {
                break;
            }
            if hnew.abs() > hmax {
                hnew = posneg * hmax;
            }
            if reject {
                hnew = posneg * hnew.abs().min(h.abs());
            }
            reject = false;
        } else {
            hnew = h / facc1.min(fac11 / safe);
            reject = true;
            if naccpt >= 1 {
                nrejct += 1;
            }
        }
        h = hnew;
    }
    Counts {
        nfe: nfcn,
        accepted: naccpt,
        rejected: nrejct,
        y,
    }
}

fn reference<P: TestProblem<f64> + Clone>(p: &P) -> Vec<f64> {
    if let Some(y) = p.exact(p.t_span().1) {
        return y;
    }
    let (t0, t1) = p.t_span();
    let o = Options {
        max_steps: 1_000_000,
        ..Options::with_tol(1e-14, 1e-14)
    };
    odeint(&mut p.clone(), &p.y0(), &[t0, t1], Method::Dop853, &o)
        .unwrap()
        .y_last()
        .to_vec()
}

fn err(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

fn compare<P: TestProblem<f64> + Clone>(p: P) {
    let yref = reference(&p);
    let (t0, t1) = p.t_span();
    for (tab, method) in [(&DOPRI5, Method::Dopri5), (&DOP853, Method::Dop853)] {
        for e in 3..=10 {
            let tol = 10f64.powi(-e);
            let mut q = p.clone();
            let port = hairer_port(tab, |t, y, dy| q.rhs(t, y, dy), t0, &p.y0(), t1, tol);
            let o = Options {
                max_steps: 100_000,
                ..Options::with_tol(tol, tol)
            };
            let ours = odeint(&mut p.clone(), &p.y0(), &[t0, t1], method, &o).unwrap();
            let (eo, ep) = (err(ours.y_last(), &yref), err(&port.y, &yref));
            println!(
                "{:10} {:7} tol 1e-{e:<2}  hairer nfe {:6} acc {:5} rej {:4} err {ep:9.2e} | ours nfe {:6} acc {:5} rej {:4} err {eo:9.2e}",
                p.name(),
                tab.name,
                port.nfe,
                port.accepted,
                port.rejected,
                ours.stats.nfe,
                ours.stats.accepted,
                ours.stats.rejected
            );
            // Same step sequence up to round-off: evaluations within 2 %.
            let rel = (ours.stats.nfe as f64 - port.nfe as f64).abs() / port.nfe as f64;
            assert!(
                rel <= 0.02,
                "{} {} tol {tol:e}: nfe {} vs Hairer {}",
                p.name(),
                tab.name,
                ours.stats.nfe,
                port.nfe
            );
            // Same accuracy (within a factor 3, or both at round-off level).
            assert!(
                eo <= 3.0 * ep + 1e-12,
                "{} {} tol {tol:e}: error {eo:e} vs Hairer {ep:e}",
                p.name(),
                tab.name
            );
        }
    }
}

#[test]
fn arenstorf_matches_hairer() {
    compare(Arenstorf);
}

#[test]
fn lorenz_matches_hairer() {
    compare(Lorenz::default());
}

#[test]
fn vanderpol_matches_hairer() {
    compare(VanDerPol::default());
}
