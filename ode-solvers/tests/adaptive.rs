//! Adaptive methods: the global error at the final time is within a small factor of the
//! tolerance and falls in proportion to it (tolerance proportionality), for tolerances
//! 1e-3 … 1e-10 in f64 and 1e-3 … 1e-5 in f32.

use ode_solvers::convergence::loglog_slope;
use ode_solvers::problems::{Harmonic, LinearSystem, TestProblem};
use ode_solvers::{Method, Options, Real, odeint};

const ADAPTIVE: [Method; 5] = [
    Method::Bosh3,
    Method::Dopri5,
    Method::Tsit5,
    Method::Dop853,
    Method::Adams,
];

/// Global errors `max_i |y_i(T) − exact_i|` for each tolerance `rtol = atol = tol`.
fn errors<T: Real, P: TestProblem<T> + Clone>(p: &P, method: Method, tols: &[f64]) -> Vec<f64> {
    let (t0, t1) = p.t_span();
    let exact = p.exact(t1).expect("closed form");
    tols.iter()
        .map(|&tol| {
            let tol = T::from_f64_const(tol);
            let o = Options {
                max_steps: 1_000_000,
                ..Options::with_tol(tol, tol)
            };
            let sol = odeint(&mut p.clone(), &p.y0(), &[t0, t1], method, &o).expect("solve");
            sol.y_last()
                .iter()
                .zip(&exact)
                .map(|(a, b)| (*a - *b).abs().to_f64_lossy())
                .fold(0.0, f64::max)
        })
        .collect()
}

fn check_proportionality<T: Real, P: TestProblem<T> + Clone>(p: &P, tols: &[f64], factor: f64) {
    for method in ADAPTIVE {
        let errs = errors::<T, P>(p, method, tols);
        for (tol, err) in tols.iter().zip(&errs) {
            assert!(
                *err <= factor * tol,
                "{} {}: error {err:e} > {factor} × tol {tol:e} ({errs:?})",
                p.name(),
                method.name()
            );
        }
        // Proportionality: log err against log tol has slope ≈ 1.
        let s = loglog_slope(tols, &errs).unwrap_or(f64::NAN);
        assert!(
            (0.75..=1.35).contains(&s),
            "{} {}: d log err / d log tol = {s} ({errs:?})",
            p.name(),
            method.name()
        );
        assert!(
            errs[errs.len() - 1] < 10.0 * errs[0] * tols[tols.len() - 1] / tols[0],
            "{} {}: error does not fall with the tolerance ({errs:?})",
            p.name(),
            method.name()
        );
    }
}

fn damped_oscillator() -> LinearSystem {
    LinearSystem {
        a: vec![-0.1, 1.0, 0.0, -1.0, -0.1, 0.5, 0.0, -0.5, -0.2],
        y0: vec![1.0, 0.5, 0.2],
        t_end: 10.0,
    }
}

const TOLS_F64: [f64; 8] = [1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-9, 1e-10];

#[test]
fn tolerance_proportionality_f64_harmonic() {
    check_proportionality::<f64, _>(&Harmonic { omega: 1.0 }, &TOLS_F64, 30.0);
}

#[test]
fn tolerance_proportionality_f64_linear() {
    check_proportionality::<f64, _>(&damped_oscillator(), &TOLS_F64, 30.0);
}

#[test]
fn tolerance_proportionality_f32_harmonic() {
    check_proportionality::<f32, _>(&Harmonic { omega: 1.0 }, &[1e-3, 3e-4, 1e-4, 3e-5], 30.0);
}

#[test]
fn tolerance_proportionality_f32_linear() {
    check_proportionality::<f32, _>(&damped_oscillator(), &[1e-3, 3e-4, 1e-4, 3e-5], 30.0);
}

#[test]
fn per_component_tolerances_and_max_norm() {
    let p = Harmonic { omega: 1.0 };
    let (t0, t1) = TestProblem::<f64>::t_span(&p);
    let exact = TestProblem::<f64>::exact(&p, t1).unwrap();
    // Loose on the velocity, tight on the position: the position error must follow its tol.
    let o = Options {
        rtol: vec![1e-9, 1e-3].into(),
        atol: vec![1e-9, 1e-3].into(),
        norm: ode_solvers::ErrorNorm::Max,
        ..Options::default()
    };
    let sol = odeint(&mut p.clone(), &[1.0, 0.0], &[t0, t1], Method::Dopri5, &o).unwrap();
    let loose = odeint(
        &mut p.clone(),
        &[1.0, 0.0],
        &[t0, t1],
        Method::Dopri5,
        &Options::with_tol(1e-3, 1e-3),
    )
    .unwrap();
    assert!((sol.y_last()[0] - exact[0]).abs() < 1e-6);
    assert!(sol.stats.nfe > 3 * loose.stats.nfe);
}

#[test]
fn seminorm_ignores_uncontrolled_components() {
    // z' = -z is controlled; w' = 50 cos(50 t) oscillates fast and is left out of the norm.
    let mut f = |t: f64, y: &[f64], dy: &mut [f64]| {
        dy[0] = -y[0];
        dy[1] = 50.0 * (50.0 * t).cos();
    };
    let ts = [0.0, 5.0];
    let full = odeint(
        &mut f,
        &[1.0, 0.0],
        &ts,
        Method::Dopri5,
        &Options::default(),
    )
    .unwrap();
    let semi_opts = Options {
        error_components: Some(0..1),
        ..Options::default()
    };
    let semi = odeint(&mut f, &[1.0, 0.0], &ts, Method::Dopri5, &semi_opts).unwrap();
    assert!(
        semi.stats.nfe * 3 < full.stats.nfe,
        "seminorm nfe {} vs full {}",
        semi.stats.nfe,
        full.stats.nfe
    );
    assert!((semi.y_last()[0] - (-5.0f64).exp()).abs() < 1e-7);
}

#[test]
fn fixed_step_option_runs_adaptive_methods_without_control() {
    let p = Harmonic { omega: 1.0 };
    let (t0, t1) = TestProblem::<f64>::t_span(&p);
    for m in [Method::Dopri5, Method::Dop853, Method::Tsit5, Method::Bosh3] {
        let o = Options {
            fixed_step: Some(t1 / 64.0),
            ..Options::default()
        };
        let sol = odeint(&mut p.clone(), &[1.0, 0.0], &[t0, t1], m, &o).unwrap();
        assert_eq!(sol.stats.accepted, 64, "{m:?}");
        assert_eq!(sol.stats.rejected, 0, "{m:?}");
        let tol = if m == Method::Bosh3 { 1e-2 } else { 1e-5 };
        assert!((sol.y_last()[0] - 1.0).abs() < tol, "{m:?}");
    }
}

#[test]
fn stats_are_pinned_for_dopri5_and_dop853() {
    // Hairer's codes need exactly these counts (see tests/hairer_reference.rs).
    let p = ode_solvers::problems::Arenstorf;
    let (t0, t1) = TestProblem::<f64>::t_span(&p);
    let y0 = TestProblem::<f64>::y0(&p);
    let o = Options::with_tol(1e-6, 1e-6);
    let s5 = odeint(&mut p.clone(), &y0, &[t0, t1], Method::Dopri5, &o).unwrap();
    let s8 = odeint(&mut p.clone(), &y0, &[t0, t1], Method::Dop853, &o).unwrap();
    assert_eq!(s5.stats.nfe, 986);
    assert_eq!(s8.stats.nfe, 1035);
}

/// The stage sums run component by component for short states and as one vectorised `axpy`
/// per stage for long ones; both do the same operations in the same order. Twenty copies of
/// Van der Pol (n = 40, the long path) must reproduce the single system (n = 2, the short
/// path) bit for bit, with the max norm (exact under copying) and a given first step, or with
/// fixed steps, for every explicit tableau, in f64 and f32.
#[test]
fn short_and_long_state_kernels_agree_bit_for_bit() {
    fn vdp<T: Real>(y: &[T], dy: &mut [T]) {
        for (yc, dc) in y.chunks_exact(2).zip(dy.chunks_exact_mut(2)) {
            dc[0] = yc[1];
            dc[1] = (T::one() - yc[0] * yc[0]) * yc[1] - yc[0];
        }
    }
    fn check<T: Real>(tol: T) {
        let copies = 20;
        let y0 = [T::from_f64_const(2.0), T::zero()];
        let y0_long: Vec<T> = y0.iter().copied().cycle().take(2 * copies).collect();
        let ts: Vec<T> = (0..=8).map(|i| T::from_f64_const(f64::from(i))).collect();
        for method in Method::ALL.into_iter().filter(|m| m.tableau().is_some()) {
            let adaptive = method.tableau().is_some_and(|t| t.is_adaptive());
            let o = Options {
                norm: ode_solvers::ErrorNorm::Max,
                // HINIT's norms are sums over the components (Hairer): fix the first step.
                first_step: Some(T::from_f64_const(0.01)),
                fixed_step: (!adaptive).then(|| T::from_f64_const(0.01)),
                max_steps: 100_000,
                ..Options::with_tol(tol, tol)
            };
            let mut f = |_t: T, y: &[T], dy: &mut [T]| vdp(y, dy);
            let short = odeint(&mut f, &y0, &ts, method, &o).expect("short");
            let long = odeint(&mut f, &y0_long, &ts, method, &o).expect("long");
            assert_eq!(short.stats, long.stats, "{}", method.name());
            for (i, _) in ts.iter().enumerate() {
                for (c, chunk) in long.y(i).chunks_exact(2).enumerate() {
                    for (a, b) in chunk.iter().zip(short.y(i)) {
                        assert!(
                            a.to_f64_lossy().to_bits() == b.to_f64_lossy().to_bits(),
                            "{} t[{i}] copy {c}: {a} vs {b}",
                            method.name()
                        );
                    }
                }
            }
            // And the solution is accurate: y(8) of Van der Pol to the tolerance's order.
            let last = short.y_last()[0].to_f64_lossy();
            assert!(
                last.is_finite() && last.abs() < 2.1,
                "{}: {last}",
                method.name()
            );
        }
    }
    check::<f64>(1e-8);
    check::<f32>(1e-4);
}

/// Dopri5, Tsit5 and Dop853 on states of up to 8 components run a stage loop unrolled at
/// compile time; every other case runs the generic loop. A copy of each tableau under
/// another name is not recognised and runs the generic loop: both must give the same
/// solution bit for bit (dense output at the requested times included) and the same
/// statistics, for every length from 1 to 9 (9 is past the unrolled range), adaptive with
/// the default RMS norm and with fixed steps, in f64 and f32.
#[test]
fn unrolled_and_generic_stage_loops_agree_bit_for_bit() {
    use ode_solvers::tableau::{self, Tableau};
    static DOPRI5: Tableau = Tableau {
        name: "dopri5 (generic loop)",
        ..tableau::DOPRI5
    };
    static TSIT5: Tableau = Tableau {
        name: "tsit5 (generic loop)",
        ..tableau::TSIT5
    };
    static DOP853: Tableau = Tableau {
        name: "dop853 (generic loop)",
        ..tableau::DOP853
    };
    /// A nonlinear ring of `n` coupled components, forced in time.
    fn ring<T: Real>(t: T, y: &[T], dy: &mut [T]) {
        let n = y.len();
        let half = T::from_f64_const(0.5);
        for i in 0..n {
            let next = y[(i + 1) % n];
            let prev = y[(i + n - 1) % n];
            dy[i] = next - half * y[i] * prev + T::from_f64_const(0.1) * t.cos();
        }
    }
    fn check<T: Real>(tol: f64) {
        let pairs = [
            (Method::Dopri5, &DOPRI5),
            (Method::Tsit5, &TSIT5),
            (Method::Dop853, &DOP853),
        ];
        let ts: Vec<T> = (0..=6)
            .map(|i| T::from_f64_const(0.5 * f64::from(i)))
            .collect();
        for n in 1..=9 {
            let y0: Vec<T> = (0..n)
                .map(|i| T::from_f64_const(0.3 + 0.2 * i as f64))
                .collect();
            for (fixed, (unrolled, generic)) in [false, true]
                .into_iter()
                .flat_map(|f| pairs.map(|p| (f, p)))
            {
                let o = Options {
                    fixed_step: fixed.then(|| T::from_f64_const(0.05)),
                    ..Options::with_tol(T::from_f64_const(tol), T::from_f64_const(tol))
                };
                let mut f = |t: T, y: &[T], dy: &mut [T]| ring(t, y, dy);
                let a = odeint(&mut f, &y0, &ts, unrolled, &o).expect("unrolled");
                let b = odeint(&mut f, &y0, &ts, Method::Rk(generic), &o).expect("generic");
                let what = format!("{} n = {n} fixed = {fixed}", unrolled.name());
                assert_eq!(a.stats, b.stats, "{what}");
                for i in 0..ts.len() {
                    for (x, z) in a.y(i).iter().zip(b.y(i)) {
                        assert!(
                            x.to_f64_lossy().to_bits() == z.to_f64_lossy().to_bits(),
                            "{what} t[{i}]: {x} vs {z}"
                        );
                    }
                }
            }
        }
    }
    check::<f64>(1e-9);
    check::<f32>(1e-5);
}
