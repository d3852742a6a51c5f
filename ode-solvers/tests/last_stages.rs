//! `Integrator::last_stages`: the stages of the last accepted step, as that step computed
//! them (`kⱼ = f(t + cⱼ h, y₀ + h Σₗ aⱼₗ kₗ)`, and `y₁ = y₀ + h Σⱼ bⱼ kⱼ`), for short states
//! (the unrolled stage loop) and long ones, FSAL and not, adaptive and fixed steps.

use ode_solvers::{Integrator, Method, Options};

/// A non-linear test field on `n` components.
fn rhs(t: f64, y: &[f64], dy: &mut [f64]) {
    let n = y.len();
    for i in 0..n {
        dy[i] = (y[(i + 1) % n] * (1.0 + 0.3 * t)).sin() - 0.5 * y[i];
    }
}

#[test]
fn last_stages_are_the_steps_stages() {
    for n in [2usize, 5, 13] {
        let y0: Vec<f64> = (0..n).map(|i| 0.3 + 0.1 * i as f64).collect();
        for (method, fixed) in [
            (Method::Dopri5, None),
            (Method::Tsit5, None),
            (Method::Bosh3, None),
            (Method::Dop853, None),
            (Method::Rk4, Some(0.2)),
        ] {
            let tab = method.tableau().unwrap();
            let s = tab.stages;
            let opts = Options {
                fixed_step: fixed,
                ..Options::with_tol(1e-6, 1e-6)
            };
            let mut f = |t: f64, y: &[f64], dy: &mut [f64]| rhs(t, y, dy);
            let mut it = Integrator::new(method, &mut f, 0.0, &y0, 1.0, &opts).unwrap();
            assert!(it.last_stages().is_none());
            let (mut yj, mut kj) = (vec![0.0; n], vec![0.0; n]);
            let mut steps = 0;
            while !it.is_done() {
                it.advance(&mut f, 1.0).unwrap();
                steps += 1;
                let info = it.last_step().unwrap();
                let (t, h) = (info.t_prev, info.h);
                let (k0, rest) = it.last_stages().unwrap();
                assert_eq!(rest.len(), (s - 1) * n);
                let stage = |j: usize| {
                    if j == 0 {
                        k0
                    } else {
                        &rest[(j - 1) * n..j * n]
                    }
                };
                let y_prev = it.y_prev();
                let mut y1 = y_prev.to_vec();
                for j in 0..s {
                    for m in 0..n {
                        yj[m] =
                            y_prev[m] + h * (0..j).map(|l| tab.a[j][l] * stage(l)[m]).sum::<f64>();
                        y1[m] += h * tab.b[j] * stage(j)[m];
                    }
                    rhs(t + tab.c[j] * h, &yj, &mut kj);
                    for m in 0..n {
                        let (a, b) = (kj[m], stage(j)[m]);
                        assert!(
                            (a - b).abs() <= 1e-14 * (1.0 + b.abs()),
                            "{} n = {n} step {steps} stage {j}: {a} vs {b}",
                            method.name()
                        );
                    }
                }
                for m in 0..n {
                    assert!((y1[m] - it.y()[m]).abs() <= 1e-14, "{}", method.name());
                }
            }
            assert!(steps >= 3, "{}: {steps} steps", method.name());
        }
    }
}

#[test]
fn adams_has_no_stages() {
    let mut f = |t: f64, y: &[f64], dy: &mut [f64]| rhs(t, y, dy);
    let opts = Options::with_tol(1e-6, 1e-6);
    let mut it = Integrator::new(Method::Adams, &mut f, 0.0, &[0.1, 0.2], 1.0, &opts).unwrap();
    it.advance(&mut f, 1.0).unwrap();
    assert!(it.last_stages().is_none());
}
