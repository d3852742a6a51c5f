//! Step-size control on the W2 Neural ODE field (issue 18, item 1): with the peers'
//! settings reproduced ([`Options::neural_ode`] and [`DOPRI5_SHAMPINE`]) our solver takes
//! torchdiffeq's and diffrax's very steps; Hairer's defaults keep their count.
//!
//! The peers' step sizes were printed by torchdiffeq 0.2.5 and diffrax 0.7.2 on the same
//! field and states (`benches/scripts/peers_steps.py`, bit-identical inputs).

use adjoint::test_problems::{SplitMix64, w2_field, w2_theta};
use adjoint::{Dynamics, Method, Options};
use ode_solvers::tableau::DOPRI5_SHAMPINE;
use ode_solvers::{Integrator, Stats};

/// Steps and counters of a forward solve of W2 (draw 1, B = 16, states from seed 2).
fn steps(method: Method, opts: &Options<f64>) -> (Vec<f64>, Stats) {
    let batch = 16;
    let mut f = w2_field(batch).unwrap();
    let mut rng = SplitMix64::new(2);
    let z0: Vec<f64> = (0..batch * 2).map(|_| rng.uniform_pm1()).collect();
    let theta = w2_theta(1);
    let mut sys = |t: f64, y: &[f64], dy: &mut [f64]| f.eval(t, y, &theta, dy).unwrap();
    let mut it = Integrator::new(method, &mut sys, 0.0, &z0, 1.0, &opts.clone()).unwrap();
    let mut hs = Vec::new();
    while !it.is_done() {
        hs.push(it.advance(&mut sys, 1.0).unwrap().h);
    }
    (hs, it.stats())
}

fn assert_steps(got: &[f64], want: &[f64]) {
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() < 1e-9, "step {i}: {g} vs {w}");
    }
}

#[test]
fn peers_settings_take_torchdiffeqs_steps() {
    let (hs, st) = steps(
        Method::Rk(&DOPRI5_SHAMPINE),
        &Options::neural_ode(1e-6, 1e-6),
    );
    // torchdiffeq's first nine steps; its tenth (0.1612) passes t = 1 and is interpolated
    // back, where we clip the step to land on t = 1.
    let torchdiffeq = [
        0.0213048967,
        0.0972623300,
        0.0984894513,
        0.1023051567,
        0.1111629869,
        0.1147471698,
        0.1175716289,
        0.1220199397,
        0.1453499526,
    ];
    assert_eq!(hs.len(), 10);
    assert_steps(&hs, &torchdiffeq);
    assert!((hs.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    // f(t0) + the first-step probe + six per step: torchdiffeq's 62.
    assert_eq!((st.nfe, st.accepted, st.rejected), (62, 10, 0));
}

#[test]
fn peers_settings_with_a_first_step_of_one_hundredth_take_diffraxs_steps() {
    // diffrax 0.7.2 starts every ODE solve with 0.01 (its heuristic sees the wrapped term
    // and returns that constant), and evaluates no probe.
    let opts = Options {
        first_step: Some(0.01),
        ..Options::neural_ode(1e-6, 1e-6)
    };
    let (hs, st) = steps(Method::Rk(&DOPRI5_SHAMPINE), &opts);
    let diffrax = [
        0.0100000000,
        0.0968032465,
        0.0984000221,
        0.1013722541,
        0.1112305958,
        0.1137563525,
        0.1164353950,
        0.1230996499,
        0.1447355036,
        0.0841669804,
    ];
    assert_eq!(hs.len(), diffrax.len());
    assert_steps(&hs, &diffrax);
    assert_eq!((st.nfe, st.accepted), (61, 10));
}

#[test]
fn hairer_defaults_keep_their_count_and_the_preset_saves_a_step() {
    let (_, hairer) = steps(Method::Dopri5, &Options::with_tol(1e-6, 1e-6));
    assert_eq!((hairer.nfe, hairer.accepted, hairer.rejected), (74, 12, 0));
    let (_, preset) = steps(Method::Dopri5, &Options::neural_ode(1e-6, 1e-6));
    assert_eq!((preset.nfe, preset.accepted, preset.rejected), (68, 11, 0));
}
