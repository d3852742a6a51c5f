//! nalgebra `SVector` / `DVector` states with `ode-solvers`: the solver works on slices,
//! nalgebra views wrap them without copies.
//!
//! Run with `cargo run -p ode-solvers --release --example nalgebra_states`.

use nalgebra::{DMatrix, DVector, DVectorView, DVectorViewMut, SVector};
use ode_solvers::{Method, Options, SolveError, odeint};

fn main() -> Result<(), SolveError> {
    // A 2-D harmonic oscillator on an SVector.
    let y0 = SVector::<f64, 2>::new(1.0, 0.0);
    let mut osc = |_t: f64, y: &[f64], dy: &mut [f64]| {
        let y = SVector::<f64, 2>::from_column_slice(y);
        dy.copy_from_slice(SVector::<f64, 2>::new(y[1], -y[0]).as_slice());
    };
    let sol = odeint(
        &mut osc,
        y0.as_slice(),
        &[0.0, 1.0],
        Method::Tsit5,
        &Options::default(),
    )?;
    let y1 = SVector::<f64, 2>::from_column_slice(sol.y_last());
    println!("SVector: y(1) = {y1:?} (exact cos 1 = {})", 1f64.cos());

    // y' = A y on a DVector, right-hand side through views (no copies, no allocation).
    let n = 4;
    let a = DMatrix::<f64>::from_fn(n, n, |i, j| if i == j { -1.0 } else { 0.2 });
    let y0 = DVector::<f64>::from_element(n, 1.0);
    let mut lin = |_t: f64, y: &[f64], dy: &mut [f64]| {
        let y = DVectorView::from_slice(y, n);
        let mut dy = DVectorViewMut::from_slice(dy, n);
        a.mul_to(&y, &mut dy);
    };
    let sol = odeint(
        &mut lin,
        y0.as_slice(),
        &[0.0, 1.0],
        Method::Dop853,
        &Options::with_tol(1e-12, 1e-12),
    )?;
    let exact = a.clone().exp() * &y0;
    let got = DVector::from_column_slice(sol.y_last());
    println!("DVector: max error vs expm = {:.2e}", (got - exact).amax());
    Ok(())
}
