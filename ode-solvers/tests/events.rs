//! Event location on the dense output.

use ode_solvers::{EventDirection, Method, Options, solve_until_event};
use std::f64::consts::PI;

fn harmonic(_t: f64, y: &[f64], dy: &mut [f64]) {
    dy[0] = y[1];
    dy[1] = -y[0];
}

#[test]
fn finds_zero_crossings_with_direction() {
    let o = Options::with_tol(1e-10, 1e-10);
    for m in [Method::Dopri5, Method::Dop853, Method::Tsit5, Method::Adams] {
        let ev = solve_until_event(
            &mut harmonic,
            &[1.0, 0.0],
            0.0,
            10.0,
            m,
            &o,
            |_t, y| y[0],
            EventDirection::Either,
            0.0,
        )
        .unwrap();
        assert!(ev.found);
        assert!((ev.t - PI / 2.0).abs() < 1e-8, "{m:?}: {}", ev.t);
        assert!(ev.y[0].abs() < 1e-8 && (ev.y[1] + 1.0).abs() < 1e-8);
        let ev = solve_until_event(
            &mut harmonic,
            &[1.0, 0.0],
            0.0,
            10.0,
            m,
            &o,
            |_t, y| y[0],
            EventDirection::Rising,
            0.0,
        )
        .unwrap();
        assert!((ev.t - 1.5 * PI).abs() < 1e-8, "{m:?}: {}", ev.t);
    }
}

#[test]
fn falling_ball_and_backwards_and_no_event() {
    // y'' = -9.81 from height 1: hits the ground at sqrt(2/9.81).
    let mut ball = |_t: f64, y: &[f64], dy: &mut [f64]| {
        dy[0] = y[1];
        dy[1] = -9.81;
    };
    let o = Options::default();
    let ev = solve_until_event(
        &mut ball,
        &[1.0, 0.0],
        0.0,
        5.0,
        Method::Dopri5,
        &o,
        |_t, y| y[0],
        EventDirection::Falling,
        1e-12,
    )
    .unwrap();
    assert!((ev.t - (2.0f64 / 9.81).sqrt()).abs() < 1e-10);
    // Backwards in time: from t = 0 towards -10, cos t hits zero at -π/2.
    let ev = solve_until_event(
        &mut harmonic,
        &[1.0, 0.0],
        0.0,
        -10.0,
        Method::Dop853,
        &Options::with_tol(1e-10, 1e-10),
        |_t, y| y[0],
        EventDirection::Either,
        0.0,
    )
    .unwrap();
    assert!((ev.t + PI / 2.0).abs() < 1e-8, "{}", ev.t);
    // No crossing: reaches the end.
    let ev = solve_until_event(
        &mut harmonic,
        &[1.0, 0.0],
        0.0,
        1.0,
        Method::Dopri5,
        &o,
        |_t, y| y[0] + 2.0,
        EventDirection::Either,
        0.0,
    )
    .unwrap();
    assert!(!ev.found);
    assert_eq!(ev.t, 1.0);
    // Time-dependent event function: first t with y0(t) = t (cos t = t → 0.739085...).
    let ev = solve_until_event(
        &mut harmonic,
        &[1.0, 0.0],
        0.0,
        2.0,
        Method::Dopri5,
        &Options::with_tol(1e-10, 1e-10),
        |t, y| y[0] - t,
        EventDirection::Either,
        0.0,
    )
    .unwrap();
    assert!((ev.t - 0.739_085_133_215_160_6).abs() < 1e-8, "{}", ev.t);
}

#[test]
fn fixed_step_events_and_f32() {
    let o = Options {
        fixed_step: Some(0.01),
        ..Options::default()
    };
    let ev = solve_until_event(
        &mut harmonic,
        &[1.0, 0.0],
        0.0,
        10.0,
        Method::Rk4,
        &o,
        |_t, y| y[0],
        EventDirection::Either,
        0.0,
    )
    .unwrap();
    assert!((ev.t - PI / 2.0).abs() < 1e-6);
    let mut h32 = |_t: f32, y: &[f32], dy: &mut [f32]| {
        dy[0] = y[1];
        dy[1] = -y[0];
    };
    let ev = solve_until_event(
        &mut h32,
        &[1.0f32, 0.0],
        0.0,
        10.0,
        Method::Tsit5,
        &Options::default(),
        |_t, y| y[0],
        EventDirection::Either,
        0.0,
    )
    .unwrap();
    assert!((ev.t - std::f32::consts::FRAC_PI_2).abs() < 1e-3);
}
