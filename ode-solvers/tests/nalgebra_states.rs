//! nalgebra `SVector` and `DVector` states plug in through slices, without copies.

use nalgebra::{DMatrix, DVector, SVector};
use ode_solvers::{Method, Options, odeint};

#[test]
fn svector_state() {
    let y0 = SVector::<f64, 2>::new(1.0, 0.0);
    let mut f = |_t: f64, y: &[f64], dy: &mut [f64]| {
        let y = SVector::<f64, 2>::from_column_slice(y);
        let d = SVector::<f64, 2>::new(y[1], -y[0]);
        dy.copy_from_slice(d.as_slice());
    };
    let sol = odeint(
        &mut f,
        y0.as_slice(),
        &[0.0, 1.0],
        Method::Tsit5,
        &Options::with_tol(1e-10, 1e-10),
    )
    .unwrap();
    let y1 = SVector::<f64, 2>::from_column_slice(sol.y_last());
    assert!((y1 - SVector::<f64, 2>::new(1f64.cos(), -1f64.sin())).norm() < 1e-8);
}

#[test]
fn dvector_state_with_matrix_exponential_check() {
    let n = 5;
    let a = DMatrix::<f64>::from_fn(n, n, |i, j| {
        if i == j {
            -1.0
        } else {
            0.1 * ((i + 2 * j) as f64).sin()
        }
    });
    let y0 = DVector::<f64>::from_fn(n, |i, _| 1.0 / (1.0 + i as f64));
    let mut f = |_t: f64, y: &[f64], dy: &mut [f64]| {
        // Views over the solver's buffers: no copies.
        let y = nalgebra::DVectorView::from_slice(y, n);
        let mut dy = nalgebra::DVectorViewMut::from_slice(dy, n);
        a.mul_to(&y, &mut dy);
    };
    let sol = odeint(
        &mut f,
        y0.as_slice(),
        &[0.0, 2.0],
        Method::Dop853,
        &Options::with_tol(1e-12, 1e-12),
    )
    .unwrap();
    let exact = (&a * 2.0).exp() * &y0;
    let got = DVector::from_column_slice(sol.y_last());
    assert!((got - &exact).amax() < 1e-10);
    // Our own expm agrees with nalgebra's.
    let ours = ode_solvers::problems::expm(a.transpose().as_slice(), n, 2.0);
    let theirs = (&a * 2.0).exp();
    for i in 0..n {
        for j in 0..n {
            assert!((ours[i * n + j] - theirs[(i, j)]).abs() < 1e-13);
        }
    }
}
