//! Solving an ODE with `odeint`: the Van der Pol oscillator at several tolerances, and
//! with fixed-step RK4.
//!
//! `x'' = μ (1 − x²) x' − x` (μ = 1), written as the first-order system
//! `y0' = y1`, `y1' = μ (1 − y0²) y1 − y0`, from `y(0) = (2, 0)` to `t = 10`. The right-hand
//! side is a plain closure `(t, y, dy)` that writes into `dy`; `odeint` returns the state at
//! every requested output time (adaptive methods reach them by dense output, they do not
//! shorten their steps onto them) and [`Stats`]: evaluations of the closure, accepted
//! and rejected steps. The error at the end is against Dop853 at rtol = atol = 1e-12.
//!
//! Run with `cargo run --release -p ode-solvers --example solve_an_ode`.

use ode_solvers::{Method, Options, SolveError, Stats, odeint};

const MU: f64 = 1.0;

fn main() -> Result<(), SolveError> {
    // The system: any `FnMut(f64, &[f64], &mut [f64])` is an `OdeSystem`.
    let mut van_der_pol = |_t: f64, y: &[f64], dy: &mut [f64]| {
        dy[0] = y[1];
        dy[1] = MU * (1.0 - y[0] * y[0]) * y[1] - y[0];
    };
    let y0 = [2.0, 0.0];
    let ts: Vec<f64> = (0..=5).map(|k| 2.0 * k as f64).collect(); // 0, 2, …, 10

    let reference = odeint(
        &mut van_der_pol,
        &y0,
        &ts,
        Method::Dop853,
        &Options::with_tol(1e-12, 1e-12),
    )?;

    // Adaptive Dopri5 at three tolerances.
    for tol in [1e-3, 1e-6, 1e-9] {
        let sol = odeint(
            &mut van_der_pol,
            &y0,
            &ts,
            Method::Dopri5,
            &Options::with_tol(tol, tol),
        )?;
        println!("dopri5, rtol = atol = {tol:.0e}:");
        print_solution(&sol.ts, |i| sol.y(i));
        report(&sol.stats, sol.y(ts.len() - 1), reference.y(ts.len() - 1));
    }

    // Fixed-step RK4 (no error control): h = 0.01, the last step shortened to land on t = 10.
    let options = Options {
        fixed_step: Some(0.01),
        ..Options::default()
    };
    let sol = odeint(&mut van_der_pol, &y0, &ts, Method::Rk4, &options)?;
    println!("rk4, fixed step h = 0.01:");
    print_solution(&sol.ts, |i| sol.y(i));
    report(&sol.stats, sol.y(ts.len() - 1), reference.y(ts.len() - 1));
    Ok(())
}

/// Prints `t, y0, y1` at every output time.
fn print_solution<'a>(ts: &[f64], y: impl Fn(usize) -> &'a [f64]) {
    for (i, t) in ts.iter().enumerate() {
        let s = y(i);
        println!("  t = {t:4.1}  y = ({:+.9}, {:+.9})", s[0], s[1]);
    }
}

/// Prints the counters and the error at the end against the reference.
fn report(stats: &Stats, end: &[f64], reference: &[f64]) {
    let err = end
        .iter()
        .zip(reference)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    println!(
        "  {} evaluations, {} accepted, {} rejected steps; max error at t = 10: {err:.2e}",
        stats.nfe, stats.accepted, stats.rejected
    );
}
