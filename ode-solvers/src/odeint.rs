//! The one-call entry point [`odeint`].

use crate::driver::Integrator;
use crate::error::SolveError;
use crate::options::{Options, Stats};
use crate::real::Real;
use crate::system::OdeSystem;
use crate::tableau::{self, Tableau};

/// An integration method.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Method {
    /// Forward Euler (fixed step), order 1.
    Euler,
    /// Explicit midpoint (fixed step), order 2.
    Midpoint,
    /// Heun / explicit trapezoid (fixed step), order 2.
    Heun,
    /// Classical Runge–Kutta (fixed step), order 4.
    Rk4,
    /// Bogacki–Shampine 3(2), adaptive.
    Bosh3,
    /// Dormand–Prince 5(4), adaptive, 4th-order dense output.
    Dopri5,
    /// Tsitouras 5(4), adaptive.
    Tsit5,
    /// Dormand–Prince 8(5,3), adaptive, 7th-order dense output.
    Dop853,
    /// Variable-step, variable-order Adams–Bashforth–Moulton (orders 1..=12), adaptive.
    Adams,
    /// Any user-supplied explicit tableau.
    Rk(&'static Tableau),
}

impl Method {
    /// The Butcher tableau of a Runge–Kutta method (`None` for Adams).
    pub fn tableau(&self) -> Option<&'static Tableau> {
        Some(match self {
            Method::Euler => &tableau::EULER,
            Method::Midpoint => &tableau::MIDPOINT,
            Method::Heun => &tableau::HEUN,
            Method::Rk4 => &tableau::RK4,
            Method::Bosh3 => &tableau::BOSH3,
            Method::Dopri5 => &tableau::DOPRI5,
            Method::Tsit5 => &tableau::TSIT5,
            Method::Dop853 => &tableau::DOP853,
            Method::Rk(t) => t,
            Method::Adams => return None,
        })
    }

    /// The method's name.
    pub fn name(&self) -> &'static str {
        match self.tableau() {
            Some(t) => t.name,
            None => "adams",
        }
    }

    /// Every built-in method.
    pub const ALL: [Method; 9] = [
        Method::Euler,
        Method::Midpoint,
        Method::Heun,
        Method::Rk4,
        Method::Bosh3,
        Method::Dopri5,
        Method::Tsit5,
        Method::Dop853,
        Method::Adams,
    ];
}

/// The result of [`odeint`]: the state at every requested time.
#[derive(Debug, Clone, PartialEq)]
pub struct Solution<T> {
    /// The requested output times (a copy of `ts`).
    pub ts: Vec<T>,
    /// States, row-major: `ys[i * n .. (i + 1) * n]` is the state at `ts[i]`.
    pub ys: Vec<T>,
    /// State length `n`.
    pub n: usize,
    /// Counters.
    pub stats: Stats,
}

impl<T> Solution<T> {
    /// The state at `ts[i]`.
    ///
    /// # Panics
    /// If `i >= ts.len()` (like slice indexing).
    pub fn y(&self, i: usize) -> &[T] {
        &self.ys[i * self.n..(i + 1) * self.n]
    }

    /// The state at the last output time.
    pub fn y_last(&self) -> &[T] {
        &self.ys[self.ys.len() - self.n..]
    }

    /// Iterates over `(t, y)` pairs.
    pub fn iter(&self) -> impl Iterator<Item = (&T, &[T])> {
        self.ts.iter().zip(self.ys.chunks_exact(self.n.max(1)))
    }
}

/// Checks that `ts` is non-empty, finite and strictly monotone; returns the direction.
pub(crate) fn check_times<T: Real>(ts: &[T]) -> Result<(), SolveError> {
    let Some(&t0) = ts.first() else {
        return Err(SolveError::EmptyTimes);
    };
    if !t0.is_finite() {
        return Err(SolveError::NonMonotoneTimes {
            index: 0,
            value: t0.to_f64_lossy(),
        });
    }
    if ts.len() > 1 {
        let dir = (ts[1] - ts[0]).signum();
        for i in 1..ts.len() {
            let d = ts[i] - ts[i - 1];
            if !(ts[i].is_finite() && d != T::zero() && d.signum() == dir) {
                return Err(SolveError::NonMonotoneTimes {
                    index: i,
                    value: ts[i].to_f64_lossy(),
                });
            }
        }
    }
    Ok(())
}

/// Integrates `y' = f(t, y)`, `y(ts[0]) = y0` and returns the state at every `ts`.
///
/// `ts` must be strictly increasing or strictly decreasing (backwards integration).
/// Adaptive methods step freely and reach the output times by dense output (steps are not
/// forced onto them); with [`Options::fixed_step`] every method takes steps of that size
/// (the last one shortened to land on the final time); fixed-step-only methods without it
/// step from output time to output time.
///
/// ```
/// use ode_solvers::{odeint, Method, Options};
/// // y' = -y, y(0) = 1
/// let mut f = |_t: f64, y: &[f64], dy: &mut [f64]| dy[0] = -y[0];
/// let sol = odeint(&mut f, &[1.0], &[0.0, 1.0, 2.0], Method::Dopri5, &Options::default())?;
/// assert!((sol.y(2)[0] - (-2.0f64).exp()).abs() < 1e-7);
/// # Ok::<(), ode_solvers::SolveError>(())
/// ```
pub fn odeint<T: Real, S: OdeSystem<T> + ?Sized>(
    sys: &mut S,
    y0: &[T],
    ts: &[T],
    method: Method,
    options: &Options<T>,
) -> Result<Solution<T>, SolveError> {
    check_times(ts)?;
    let n = y0.len();
    let mut it = Integrator::new(method, sys, ts[0], y0, ts[ts.len() - 1], options)?;
    let mut ys = vec![T::zero(); n * ts.len()];
    ys[..n].copy_from_slice(it.y());
    let dir = if ts[ts.len() - 1] >= ts[0] {
        T::one()
    } else {
        -T::one()
    };
    // Fill every output time the last step passed by dense output, then step on.
    let mut idx = 1;
    while idx < ts.len() {
        while idx < ts.len() && (ts[idx] - it.t()) * dir <= T::zero() {
            it.interpolate(sys, ts[idx], &mut ys[idx * n..(idx + 1) * n])?;
            idx += 1;
        }
        if idx == ts.len() {
            break;
        }
        it.advance(sys, ts[idx])?;
    }
    Ok(Solution {
        ts: ts.to_vec(),
        ys,
        n,
        stats: it.stats(),
    })
}
