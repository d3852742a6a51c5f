//! Every bad input returns its `SolveError` variant (never a panic).

use ode_solvers::problems::{Arenstorf, TestProblem};
use ode_solvers::{
    AdamsStepper, Method, Options, PiController, RkStepper, SolveError, Stepper, odeint, tableau,
};

fn decay(_t: f64, y: &[f64], dy: &mut [f64]) {
    dy[0] = -y[0];
}

#[test]
fn non_finite_state() {
    let e = odeint(
        &mut decay,
        &[f64::NAN],
        &[0.0, 1.0],
        Method::Dopri5,
        &Options::default(),
    );
    assert_eq!(
        e.unwrap_err(),
        SolveError::NonFiniteState { t: 0.0, index: 0 }
    );
    // Blow-up to infinity in a fixed-step run: y' = y^2 with h too large.
    let mut sq = |_t: f64, y: &[f64], dy: &mut [f64]| dy[0] = y[0] * y[0];
    let o = Options {
        fixed_step: Some(0.5),
        ..Options::default()
    };
    let e = odeint(&mut sq, &[1e100], &[0.0, 10.0], Method::Euler, &o).unwrap_err();
    assert!(
        matches!(
            e,
            SolveError::NonFiniteState { index: 0, .. }
                | SolveError::NonFiniteDerivative { index: 0, .. }
        ),
        "{e:?}"
    );
}

#[test]
fn non_finite_derivative_reports_time_and_index() {
    let mut f = |t: f64, y: &[f64], dy: &mut [f64]| {
        dy[0] = -y[0];
        dy[1] = if t > 0.5 { f64::NAN } else { 1.0 };
    };
    let e = odeint(
        &mut f,
        &[1.0, 0.0],
        &[0.0, 1.0],
        Method::Dopri5,
        &Options::default(),
    )
    .unwrap_err();
    match e {
        SolveError::NonFiniteDerivative { t, index } => {
            assert_eq!(index, 1);
            assert!(t > 0.5 && t <= 1.0, "t = {t}");
        }
        other => panic!("{other:?}"),
    }
    // Already at t0.
    let mut g = |_t: f64, _y: &[f64], dy: &mut [f64]| dy[0] = f64::INFINITY;
    let e = odeint(
        &mut g,
        &[1.0],
        &[0.0, 1.0],
        Method::Tsit5,
        &Options::default(),
    );
    assert_eq!(
        e.unwrap_err(),
        SolveError::NonFiniteDerivative { t: 0.0, index: 0 }
    );
}

#[test]
fn times_not_strictly_monotone() {
    let o = Options::default();
    for (ts, index) in [
        (vec![0.0, 1.0, 1.0], 2),
        (vec![0.0, 2.0, 1.0], 2),
        (vec![1.0, 0.0, 0.5], 2),
        (vec![0.0, f64::NAN], 1),
    ] {
        match odeint(&mut decay, &[1.0], &ts, Method::Dopri5, &o).unwrap_err() {
            SolveError::NonMonotoneTimes { index: i, .. } => assert_eq!(i, index, "{ts:?}"),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        odeint(&mut decay, &[1.0], &[], Method::Dopri5, &o).unwrap_err(),
        SolveError::EmptyTimes
    );
}

#[test]
fn non_positive_tolerances() {
    let o = Options::with_tol(-1e-3, 1e-6);
    assert_eq!(
        odeint(&mut decay, &[1.0], &[0.0, 1.0], Method::Dopri5, &o).unwrap_err(),
        SolveError::InvalidTolerance {
            name: "rtol",
            index: 0,
            value: -1e-3
        }
    );
    let o = Options {
        atol: vec![1e-6, 0.0].into(),
        ..Options::default()
    };
    let mut f2 = |_t: f64, y: &[f64], dy: &mut [f64]| dy.copy_from_slice(y);
    assert_eq!(
        odeint(&mut f2, &[1.0, 1.0], &[0.0, 1.0], Method::Dopri5, &o).unwrap_err(),
        SolveError::InvalidTolerance {
            name: "atol",
            index: 1,
            value: 0.0
        }
    );
}

#[test]
fn mismatched_lengths() {
    let o = Options {
        rtol: vec![1e-6; 3].into(),
        ..Options::default()
    };
    assert_eq!(
        odeint(&mut decay, &[1.0], &[0.0, 1.0], Method::Dopri5, &o).unwrap_err(),
        SolveError::LengthMismatch {
            what: "rtol",
            expected: 1,
            found: 3
        }
    );
    let mut st = RkStepper::new(
        &tableau::DOPRI5,
        &mut decay,
        0.0,
        &[1.0],
        1.0,
        &Options::default(),
    )
    .unwrap();
    st.step(&mut decay).unwrap();
    let t = st.t() * 0.5;
    let mut out = [0.0; 2];
    assert!(matches!(
        st.interpolate(&mut decay, t, &mut out),
        Err(SolveError::LengthMismatch {
            expected: 1,
            found: 2,
            ..
        })
    ));
    let o = Options {
        error_components: Some(0..4),
        ..Options::default()
    };
    assert!(matches!(
        odeint(&mut decay, &[1.0], &[0.0, 1.0], Method::Dopri5, &o),
        Err(SolveError::LengthMismatch { .. })
    ));
}

#[test]
fn step_size_underflow_reports_t_and_h() {
    // y' = y², y(0) = 1 blows up at t = 1: the step must shrink below min_step before.
    let mut sq = |_t: f64, y: &[f64], dy: &mut [f64]| dy[0] = y[0] * y[0];
    let o = Options {
        min_step: 1e-5,
        ..Options::default()
    };
    for m in [Method::Dopri5, Method::Adams] {
        match odeint(&mut sq, &[1.0], &[0.0, 2.0], m, &o).unwrap_err() {
            SolveError::StepSizeUnderflow { t, h } => {
                assert!(t > 0.9 && t < 1.0, "{m:?}: t = {t}");
                assert!(h.abs() < 1e-5, "{m:?}: h = {h}");
            }
            other => panic!("{m:?}: {other:?}"),
        }
    }
}

#[test]
fn too_many_steps() {
    let p = Arenstorf;
    let y0 = TestProblem::<f64>::y0(&p);
    let o = Options {
        max_steps: 10,
        ..Options::default()
    };
    for m in [Method::Dopri5, Method::Adams] {
        match odeint(&mut p.clone(), &y0, &[0.0, 17.0], m, &o).unwrap_err() {
            SolveError::TooManySteps { t, max_steps } => {
                assert_eq!(max_steps, 10);
                assert!(t > 0.0 && t < 17.0);
            }
            other => panic!("{other:?}"),
        }
    }
    // The default is 10_000.
    assert_eq!(Options::<f64>::default().max_steps, 10_000);
}

#[test]
fn invalid_options() {
    let bad = [
        Options {
            fixed_step: Some(-0.1),
            ..Options::default()
        },
        Options {
            max_step: Some(0.0),
            ..Options::default()
        },
        Options {
            max_order: 13,
            ..Options::default()
        },
        Options {
            controller: Some(PiController {
                safety: 0.9,
                min_factor: 2.0,
                max_factor: 10.0,
                beta: 0.04,
                alpha: None,
            }),
            ..Options::default()
        },
    ];
    for o in bad {
        assert!(matches!(
            odeint(&mut decay, &[1.0], &[0.0, 1.0], Method::Dopri5, &o),
            Err(SolveError::InvalidOption { .. })
        ));
    }
}

#[test]
fn unsupported_modes() {
    let mut st = RkStepper::new(
        &tableau::RK4,
        &mut decay,
        0.0,
        &[1.0],
        1.0,
        &Options::default(),
    )
    .unwrap();
    assert!(matches!(
        st.step(&mut decay),
        Err(SolveError::Unsupported { method: "rk4", .. })
    ));
    let o = Options {
        fixed_step: Some(0.1),
        ..Options::default()
    };
    assert!(matches!(
        odeint(&mut decay, &[1.0], &[0.0, 1.0], Method::Adams, &o),
        Err(SolveError::Unsupported {
            method: "adams",
            ..
        })
    ));
    let mut ad = AdamsStepper::new(&mut decay, 0.0, &[1.0], 1.0, &Options::default()).unwrap();
    assert!(matches!(
        ad.step_fixed(&mut decay, 0.1),
        Err(SolveError::Unsupported { .. })
    ));
}

#[test]
fn interpolation_outside_last_step_and_stepping_past_the_end() {
    let mut st = RkStepper::new(
        &tableau::DOPRI5,
        &mut decay,
        0.0,
        &[1.0],
        1.0,
        &Options::default(),
    )
    .unwrap();
    let mut out = [0.0];
    assert!(matches!(
        st.interpolate(&mut decay, 0.5, &mut out),
        Err(SolveError::OutsideStep { .. })
    ));
    let info = st.step(&mut decay).unwrap();
    assert!(matches!(
        st.interpolate(&mut decay, info.t_new + 1.0, &mut out),
        Err(SolveError::OutsideStep { .. })
    ));
    while !st.is_done() {
        st.step(&mut decay).unwrap();
    }
    assert_eq!(
        st.step(&mut decay).unwrap_err(),
        SolveError::EndReached { t: 1.0 }
    );
}

#[test]
fn error_messages_say_what_to_change() {
    let e = SolveError::TooManySteps {
        t: 1.5,
        max_steps: 10,
    };
    assert!(e.to_string().contains("increase `max_steps`"));
    let e = SolveError::InvalidTolerance {
        name: "rtol",
        index: 0,
        value: -1e-3,
    };
    assert!(
        e.to_string()
            .contains("rtol must be finite and > 0, got -0.001")
    );
}
