//! proptest strategies for random problems with exact solutions (feature `proptest`).
//!
//! Each strategy draws the parameters of a problem of this crate; the problem carries its
//! exact solution ([`ExactProblem`]), so a convergence property reads
//!
//! ```
//! use ode_solvers::Method;
//! use ode_solvers::convergence::{OrderSweep, empirical_order, strategies};
//! use proptest::prelude::*;
//! use proptest::test_runner::{Config, TestRunner};
//!
//! let mut runner = TestRunner::new(Config::with_cases(4));
//! runner
//!     .run(&strategies::stable_linear_system(3, 1.0, Just(4.0)), |mut sys| {
//!         let sweep = OrderSweep::new([16, 32, 64, 128]);
//!         let report = empirical_order::<f64, _>(&mut sys, Method::Rk4, &sweep).unwrap();
//!         prop_assert!(report.check(4.0, 0.3).is_ok(), "{report}");
//!         Ok(())
//!     })
//!     .unwrap();
//! ```
//!
//! (inside `proptest! { … }` the same is one `fn` with `sys in strategies::…`).

use proptest::collection::vec;
use proptest::prelude::*;

use super::{ExactProblem, ExpSin, KeplerCircular, Span, stable_matrix};
use crate::Real;
use crate::problems::{Decay, Harmonic, LinearSystem, Logistic};

/// An `n × n` matrix from [`stable_matrix`] with entries of `M` uniform in `[−1, 1)` and
/// `‖A‖∞ = norm`: eigenvalues in the open left half-plane, oscillatory and slightly damped.
/// `n` and `norm` must be ≥ 1 and > 0.
pub fn stable_matrices(n: usize, norm: f64) -> impl Strategy<Value = Vec<f64>> {
    // `stable_matrix` fails only on a bad `n` or `norm`: those give an empty matrix (and a
    // length-mismatch error downstream) rather than a panic inside a strategy.
    vec(-1.0f64..1.0, n * n).prop_map(move |m| stable_matrix(&m, norm).unwrap_or_default())
}

/// An initial state of length `n`, components uniform in `range`.
pub fn initial_state(n: usize, range: core::ops::Range<f64>) -> impl Strategy<Value = Vec<f64>> {
    vec(range, n)
}

/// A random stable [`LinearSystem`] `y' = A y` of size `n` ([`stable_matrices`]), `y0`
/// components uniform in `[0.2, 1)`, end time from `t_end` (e.g. `Just(8.0)` or `1.0..10.0`);
/// exact solution `expm(A t) y0`.
pub fn stable_linear_system(
    n: usize,
    norm: f64,
    t_end: impl Strategy<Value = f64>,
) -> impl Strategy<Value = LinearSystem> {
    (stable_matrices(n, norm), initial_state(n, 0.2..1.0), t_end)
        .prop_map(|(a, y0, t_end)| LinearSystem { a, y0, t_end })
}

/// [`Decay`] `y' = λ y` with `λ` from `lambda` (e.g. `-2.0..-0.1`), on `[0, 1]`.
pub fn decay(lambda: impl Strategy<Value = f64>) -> impl Strategy<Value = Decay> {
    lambda.prop_map(|lambda| Decay { lambda })
}

/// [`Harmonic`] `x'' = −ω² x` with `ω` from `omega`, on one period.
pub fn harmonic(omega: impl Strategy<Value = f64>) -> impl Strategy<Value = Harmonic> {
    omega.prop_map(|omega| Harmonic { omega })
}

/// [`Logistic`] `y' = r y (1 − y)` with `r ∈ [1, 3)` and `y0 ∈ [0.01, 0.5)`, on `[0, 2]`.
pub fn logistic() -> impl Strategy<Value = Logistic> {
    (1.0f64..3.0, 0.01f64..0.5).prop_map(|(r, y0)| Logistic { r, y0 })
}

/// [`ExpSin`] `y' = y cos t` with `y0 ∈ [0.5, 2)` on `[0, t1]`.
pub fn exp_sin(t1: f64) -> impl Strategy<Value = ExpSin> {
    (0.5f64..2.0).prop_map(move |y0| ExpSin { y0, t1 })
}

/// [`KeplerCircular`] with radius in `[1, 1.5)` and phase in `[0, 2π)`, on `[0, t1]`.
pub fn kepler_circular(t1: f64) -> impl Strategy<Value = KeplerCircular> {
    (1.0f64..1.5, 0.0..core::f64::consts::TAU).prop_map(move |(radius, phase)| KeplerCircular {
        radius,
        phase,
        t1,
    })
}

/// `problem` on a random interval `[t0, t0 + length]` (a negative length integrates
/// backwards), starting from its exact solution at `t0`.
pub fn over_interval<T: Real, P: ExactProblem<T> + Clone + core::fmt::Debug>(
    problem: impl Strategy<Value = P>,
    t0: impl Strategy<Value = f64>,
    length: impl Strategy<Value = f64>,
) -> impl Strategy<Value = Span<P, T>> {
    (problem, t0, length)
        .prop_map(|(p, t0, len)| p.over(T::from_f64_const(t0), T::from_f64_const(t0 + len)))
}
