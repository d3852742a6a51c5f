//! Checking the order of your own Runge–Kutta tableau with `ode_solvers::convergence`.
//!
//! Defines two tableaux as `const`s (Ralston's third-order method with every field written
//! out, Kutta's 3/8 rule taking the fields it shares with RK4 by struct update),
//! runs fixed-step sweeps on problems with exact solutions and fits the order (the slope of
//! `ln error` against `ln h` above the round-off floor), in f64 and f32.
//!
//! Run with `cargo run -p ode-solvers --release --example check_my_tableau`.

use ode_solvers::Method;
use ode_solvers::convergence::{
    ConvergenceError, ExactProblem, ExpSin, KeplerCircular, OrderSweep, empirical_order,
    stable_matrix,
};
use ode_solvers::problems::LinearSystem;
use ode_solvers::tableau::{DOPRI5_CONTROLLER, DenseKind, RK4, Tableau};

/// Ralston's third-order method, the one with minimal error bound among the 3-stage ones.
const RALSTON3: Tableau = Tableau {
    name: "ralston3",
    stages: 3,
    a: &[&[], &[0.5], &[0.0, 0.75]],
    b: &[2.0 / 9.0, 1.0 / 3.0, 4.0 / 9.0],
    c: &[0.0, 0.5, 0.75],
    b_err: None,
    b_err2: None,
    order: 3,
    err_order: 0,
    controller_order: 3,
    fsal: false,
    dense: DenseKind::Hermite,
    controller: DOPRI5_CONTROLLER,
    reference: "A. Ralston, Math. Comp. 16 (1962) 431-437.",
};

/// Kutta's 3/8 rule, fourth order. The fields not given here (no error estimate, Hermite
/// dense output, controller constants) are taken from the built-in RK4.
const KUTTA38: Tableau = Tableau {
    name: "kutta-3/8",
    a: &[&[], &[1.0 / 3.0], &[-1.0 / 3.0, 1.0], &[1.0, -1.0, 1.0]],
    b: &[1.0 / 8.0, 3.0 / 8.0, 3.0 / 8.0, 1.0 / 8.0],
    c: &[0.0, 1.0 / 3.0, 2.0 / 3.0, 1.0],
    reference: "W. Kutta, Z. Math. Phys. 46 (1901) 435-453.",
    ..RK4
};

/// Sweeps `tab` on `problem`, prints the table and checks the claimed order within 0.3.
fn check<T: ode_solvers::Real>(
    problem: &mut dyn ExactProblem<T>,
    tab: &'static Tableau,
    sweep: &OrderSweep,
) -> Result<(), ConvergenceError> {
    let report = empirical_order(problem, Method::Rk(tab), sweep)?;
    println!("{report}");
    let p = report.check(f64::from(tab.order), 0.3)?;
    let float = core::any::type_name::<T>();
    println!(
        "=> {} reaches its order {} in {float} (fitted {p:.3})\n",
        tab.name, tab.order
    );
    Ok(())
}

fn main() -> Result<(), ConvergenceError> {
    // Error = maximum over t = 1, 2, …, 8 (so the 8 checkpoints are step points).
    let sweep = OrderSweep {
        checkpoints: 8,
        ..OrderSweep::doubling(16, 8)
    };
    // Non-autonomous: y' = y cos t, y = exp(sin t).
    check::<f64>(&mut ExpSin::default(), &RALSTON3, &sweep)?;
    // Nonlinear: a circular Kepler orbit.
    let mut orbit = KeplerCircular {
        radius: 1.2,
        phase: 0.3,
        t1: 8.0,
    };
    check::<f64>(&mut orbit, &KUTTA38, &sweep)?;
    // Linear, 3 × 3, exact by the matrix exponential.
    let a = stable_matrix(&[0.3, -0.8, 0.5, 0.9, 0.1, -0.4, -0.2, 0.7, 0.6], 2.0)?;
    let mut linear = LinearSystem {
        a,
        y0: vec![1.0, 0.5, -0.3],
        t_end: 8.0,
    };
    check::<f64>(&mut linear, &KUTTA38, &sweep)?;
    // f32: the round-off floor is 5·10⁸ times higher, so coarser steps.
    let coarse = OrderSweep {
        checkpoints: 8,
        ..OrderSweep::doubling(8, 5)
    };
    check::<f32>(&mut ExpSin::default(), &RALSTON3, &coarse)?;
    Ok(())
}
