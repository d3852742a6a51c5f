//! Dense output (order of each interpolant), backward integration and the stepper API.

use ode_solvers::problems::{Harmonic, TestProblem};
use ode_solvers::{AdamsStepper, DenseStep, Method, Options, RkStepper, Stepper, odeint, tableau};

/// Max error at the step midpoints `t = j + h/2` (j = 0..7, θ = 1/2 in every case) with fixed steps `h = 1/m`
/// on `y' = y cos t`: global error of the step plus local error of the interpolant, so the
/// observed order is `min(p, q + 1)` for a method of order `p` with an interpolant of order `q`.
fn dense_error(method: Method, m: u32) -> f64 {
    let mut f = |t: f64, y: &[f64], dy: &mut [f64]| dy[0] = y[0] * t.cos();
    let mut ts = vec![0.0];
    ts.extend((0..8).map(|j| f64::from(j) + 0.5 / f64::from(m)));
    let o = Options {
        fixed_step: Some(1.0 / f64::from(m)),
        ..Options::default()
    };
    let sol = odeint(&mut f, &[1.0], &ts, method, &o).unwrap();
    ts.iter()
        .enumerate()
        .map(|(i, t)| (sol.y(i)[0] - t.sin().exp()).abs())
        .fold(0.0, f64::max)
}

#[test]
fn dense_output_orders() {
    for (method, order, ms) in [
        (Method::Dopri5, 5.0, [8, 12, 16, 24, 32]),
        (Method::Dop853, 8.0, [2, 3, 4, 6, 8]),
        (Method::Tsit5, 4.0, [8, 12, 16, 24, 32]),
        (Method::Rk4, 4.0, [8, 12, 16, 24, 32]),
    ] {
        let pts: Vec<(f64, f64)> = ms
            .iter()
            .map(|&m| (-f64::from(m).log2(), dense_error(method, m).log2()))
            .filter(|p| p.1 > (1e-13f64).log2())
            .collect();
        assert!(pts.len() >= 3, "{method:?}: {pts:?}");
        let last = &pts[pts.len() - 3..];
        let n = 3.0;
        let mx = last.iter().map(|p| p.0).sum::<f64>() / n;
        let my = last.iter().map(|p| p.1).sum::<f64>() / n;
        let p = last.iter().map(|q| (q.0 - mx) * (q.1 - my)).sum::<f64>()
            / last.iter().map(|q| (q.0 - mx).powi(2)).sum::<f64>();
        assert!(
            (p - order).abs() < 0.4,
            "{method:?}: dense-output order {p} vs {order}: {pts:?}"
        );
    }
}

#[test]
fn outputs_between_steps_are_accurate() {
    let p = Harmonic { omega: 1.0 };
    let ts: Vec<f64> = (0..=100).map(|i| f64::from(i) * 0.0628).collect();
    for m in [
        Method::Dopri5,
        Method::Dop853,
        Method::Tsit5,
        Method::Bosh3,
        Method::Adams,
    ] {
        let o = Options::with_tol(1e-8, 1e-8);
        let sol = odeint(&mut p.clone(), &[1.0, 0.0], &ts, m, &o).unwrap();
        // Far fewer steps than outputs: outputs come from dense output.
        assert!(sol.stats.accepted < 100 || m == Method::Bosh3 || m == Method::Adams);
        for (i, &t) in ts.iter().enumerate() {
            let ex = TestProblem::<f64>::exact(&p, t).unwrap();
            let err = (sol.y(i)[0] - ex[0]).abs();
            let bound = if m == Method::Tsit5 || m == Method::Bosh3 || m == Method::Adams {
                1e-5 // cubic Hermite between steps
            } else {
                1e-6
            };
            assert!(err < bound, "{m:?} at t = {t}: {err:e}");
        }
    }
}

#[test]
fn backward_integration_everywhere() {
    let p = Harmonic { omega: 1.0 };
    let t1 = 2.0 * std::f64::consts::PI;
    let ts: Vec<f64> = (0..=20).rev().map(|i| t1 * f64::from(i) / 20.0).collect();
    let y_end = TestProblem::<f64>::exact(&p, t1).unwrap();
    for m in [
        Method::Dopri5,
        Method::Dop853,
        Method::Tsit5,
        Method::Bosh3,
        Method::Adams,
    ] {
        let sol = odeint(
            &mut p.clone(),
            &y_end,
            &ts,
            m,
            &Options::with_tol(1e-9, 1e-9),
        )
        .unwrap();
        for (i, &t) in ts.iter().enumerate() {
            let ex = TestProblem::<f64>::exact(&p, t).unwrap();
            // Adams' dense output is cubic Hermite over its long high-order steps.
            let bound = if m == Method::Adams { 1e-5 } else { 1e-6 };
            let err = (sol.y(i)[0] - ex[0]).abs();
            assert!(err < bound, "{m:?} at t = {t}: {err:e}");
        }
    }
    // Fixed step backwards.
    let o = Options {
        fixed_step: Some(t1 / 200.0),
        ..Options::default()
    };
    let sol = odeint(&mut p.clone(), &y_end, &[t1, 0.0], Method::Rk4, &o).unwrap();
    assert!((sol.y_last()[0] - 1.0).abs() < 1e-7);
    assert_eq!(sol.stats.accepted, 200);
}

#[test]
fn stepper_exposes_steps_and_checkpointable_interpolants() {
    let mut f = |_t: f64, y: &[f64], dy: &mut [f64]| dy[0] = -y[0];
    let opts = Options::with_tol(1e-10, 1e-10);
    let mut st = RkStepper::new(&tableau::DOP853, &mut f, 2.0, &[1.0], 0.0, &opts).unwrap();
    let mut checkpoints: Vec<DenseStep<f64>> = vec![];
    let mut t_prev = 2.0;
    while !st.is_done() {
        let info = st.step(&mut f).unwrap();
        assert_eq!(info.t_prev, t_prev);
        assert!(info.h < 0.0);
        assert_eq!(info.t_new, st.t());
        assert_eq!(st.last_step(), Some(info));
        t_prev = info.t_new;
        checkpoints.push(st.dense_output(&mut f).unwrap().clone());
    }
    assert_eq!(st.t(), 0.0);
    // Re-interpolate from the stored interpolants later (y = e^{2 - t}).
    let mut out = [0.0];
    for cp in &checkpoints {
        let tm = 0.5 * (cp.t_start() + cp.t_end());
        cp.eval_checked(tm, &mut out).unwrap();
        assert!((out[0] - (2.0 - tm).exp()).abs() < 1e-8 * (2.0 - tm).exp());
    }
    // Fixed steps through the stepper, including clipping at t_end.
    let mut st =
        RkStepper::new(&tableau::RK4, &mut f, 0.0, &[1.0], 1.0, &Options::default()).unwrap();
    for _ in 0..3 {
        st.step_fixed(&mut f, 0.4).unwrap();
    }
    assert_eq!(st.t(), 1.0);
    assert!((st.y()[0] - (-1.0f64).exp()).abs() < 1e-3);
}

#[test]
fn adams_stepper_reaches_high_order() {
    let p = Harmonic { omega: 1.0 };
    let mut q = p;
    let mut st = AdamsStepper::new(
        &mut q,
        0.0,
        &[1.0, 0.0],
        20.0,
        &Options::with_tol(1e-10, 1e-10),
    )
    .unwrap();
    let mut max_order = 0;
    while !st.is_done() {
        st.step(&mut q).unwrap();
        max_order = max_order.max(st.order());
    }
    assert!(max_order >= 8, "max order {max_order}");
    let ex = TestProblem::<f64>::exact(&p, 20.0).unwrap();
    assert!((st.y()[0] - ex[0]).abs() < 1e-8);
}

#[test]
fn max_step_and_first_step_are_honoured() {
    let mut f = |_t: f64, y: &[f64], dy: &mut [f64]| dy[0] = -0.1 * y[0];
    let o = Options {
        max_step: Some(0.25),
        first_step: Some(1e-3),
        ..Options::default()
    };
    for tab in [&tableau::DOPRI5, &tableau::DOP853, &tableau::BOSH3] {
        let mut st = RkStepper::new(tab, &mut f, 0.0, &[1.0], -5.0, &o).unwrap();
        let first = st.step(&mut f).unwrap();
        assert_eq!(first.h, -1e-3, "{}", tab.name);
        let mut n = 1;
        while !st.is_done() {
            let info = st.step(&mut f).unwrap();
            assert!(info.h.abs() <= 0.25 + 1e-15, "{}: h = {}", tab.name, info.h);
            n += 1;
        }
        assert!(n >= 20, "{}: {n} steps", tab.name);
    }
    let mut ad = AdamsStepper::new(&mut f, 0.0, &[1.0], 5.0, &o).unwrap();
    while !ad.is_done() {
        let info = ad.step(&mut f).unwrap();
        assert!(info.h.abs() <= 0.25 + 1e-15);
    }
}

#[test]
fn copy_from_reuses_the_buffer() {
    use ode_solvers::{DenseStep, Options, RkStepper, Stepper, tableau};
    let mut f = |_t: f64, y: &[f64], dy: &mut [f64]| {
        dy[0] = y[1];
        dy[1] = -y[0];
    };
    let mut st = RkStepper::new(
        &tableau::DOPRI5,
        &mut f,
        0.0,
        &[1.0, 0.0],
        1.0,
        &Options::default(),
    )
    .unwrap();
    st.step(&mut f).unwrap();
    let first = st.dense_output(&mut f).unwrap().clone();
    st.step(&mut f).unwrap();
    let second = st.dense_output(&mut f).unwrap();
    let mut pool: DenseStep<f64> = first.clone();
    pool.copy_from(second);
    assert_eq!(&pool, second);
    let (mut a, mut b) = ([0.0; 2], [0.0; 2]);
    let t = 0.5 * (second.t_start() + second.t_end());
    pool.eval_into(t, &mut a);
    second.eval_into(t, &mut b);
    assert_eq!(a, b);
}
