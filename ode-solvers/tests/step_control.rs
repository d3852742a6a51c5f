//! The first-step heuristics ([`InitialStep`]), the Neural ODE preset
//! ([`Options::neural_ode`]) and the Dormand–Prince tableau with Shampine's error
//! estimate ([`DOPRI5_SHAMPINE`]).

use ode_solvers::tableau::{DOPRI5, DOPRI5_SHAMPINE};
use ode_solvers::{InitialStep, Integrator, Method, Options, RkStepper, odeint};

/// `y' = -y` on `k` copies of the state `(1, 0.5)`.
fn decay(_t: f64, y: &[f64], dy: &mut [f64]) {
    for (d, v) in dy.iter_mut().zip(y) {
        *d = -v;
    }
}

fn first_step(k: usize, kind: InitialStep) -> f64 {
    let y0: Vec<f64> = (0..k).flat_map(|_| [1.0, 0.5]).collect();
    let opts = Options {
        initial_step: kind,
        ..Options::with_tol(1e-6, 1e-6)
    };
    let mut f = decay;
    RkStepper::new(&DOPRI5, &mut f, 0.0, &y0, 1.0, &opts)
        .unwrap()
        .next_h()
}

#[test]
fn rms_first_step_does_not_depend_on_the_batch_and_hairers_shrinks_with_it() {
    let (rms1, hairer1) = (
        first_step(1, InitialStep::Rms),
        first_step(1, InitialStep::Hairer),
    );
    for k in [16, 1024] {
        let rms = first_step(k, InitialStep::Rms);
        assert!((rms / rms1 - 1.0).abs() < 1e-12, "k = {k}: {rms} vs {rms1}");
        // Hairer's Euclidean norms grow as √k, so (0.01 / max(d1, d2))^{1/5} ∝ k^{-1/10}.
        let hairer = first_step(k, InitialStep::Hairer);
        let expected = hairer1 * (k as f64).powf(-0.1);
        assert!(
            (hairer / expected - 1.0).abs() < 1e-12,
            "k = {k}: {hairer} vs {expected}"
        );
    }
    // One state of two components: the RMS norms are the Euclidean ones over √2.
    assert!((rms1 / (hairer1 * 2f64.powf(0.1)) - 1.0).abs() < 1e-12);
}

#[test]
fn neural_ode_preset_is_the_i_controller_with_rms_first_step() {
    let o = Options::<f64>::neural_ode(1e-3, 1e-4);
    o.validate(3).unwrap();
    let c = o.controller.unwrap();
    assert_eq!(
        (c.safety, c.min_factor, c.max_factor, c.beta),
        (0.9, 0.2, 10.0, 0.0)
    );
    assert_eq!(c.alpha, None); // 1/q of the method: 1/5 for Dopri5
    assert_eq!(o.initial_step, InitialStep::Rms);
    Options::<f32>::neural_ode(1e-3, 1e-3).validate(2).unwrap();
    // Every adaptive method runs with it, Adams included.
    for m in [
        Method::Dopri5,
        Method::Rk(&DOPRI5_SHAMPINE),
        Method::Tsit5,
        Method::Dop853,
        Method::Bosh3,
        Method::Adams,
    ] {
        let mut f = decay;
        let sol = odeint(
            &mut f,
            &[1.0, 0.5],
            &[0.0, 2.0],
            m,
            &Options::neural_ode(1e-8, 1e-8),
        )
        .unwrap();
        let err = (sol.ys[2] - (-2f64).exp()).abs();
        assert!(err < 1e-6, "{m:?}: {err:e}");
    }
}

#[test]
fn shampine_estimate_takes_the_same_fixed_steps_and_controls_the_error() {
    // Same stages and weights: fixed steps agree bit for bit with DOPRI5.
    let fixed = Options {
        fixed_step: Some(0.1),
        ..Options::default()
    };
    let run = |m: Method, o: &Options<f64>| {
        let mut f = |t: f64, y: &[f64], dy: &mut [f64]| dy[0] = y[0] * t.cos();
        odeint(&mut f, &[1.0], &[0.0, 3.0], m, o).unwrap()
    };
    let (a, b) = (
        run(Method::Dopri5, &fixed),
        run(Method::Rk(&DOPRI5_SHAMPINE), &fixed),
    );
    assert_eq!(a.ys[1].to_bits(), b.ys[1].to_bits());
    // Adaptive: the global error follows the tolerance (within a factor of 100 of it,
    // and smaller at the tighter one).
    let exact = 3f64.sin().exp();
    let mut last = f64::INFINITY;
    for tol in [1e-4, 1e-6, 1e-8, 1e-10] {
        let s = run(Method::Rk(&DOPRI5_SHAMPINE), &Options::with_tol(tol, tol));
        let err = (s.ys[1] - exact).abs();
        assert!(err < 100.0 * tol && err < last, "tol {tol:e}: {err:e}");
        last = err;
    }
}

#[test]
fn the_integrator_starts_from_the_rms_step() {
    let y0 = [1.0, 0.5];
    let opts = Options::neural_ode(1e-6, 1e-6);
    let mut f = decay;
    let mut it = Integrator::new(Method::Dopri5, &mut f, 0.0, &y0, 1.0, &opts).unwrap();
    let h = it.advance(&mut f, 1.0).unwrap().h;
    assert!((h / first_step(1, InitialStep::Rms) - 1.0).abs() < 1e-15);
}
