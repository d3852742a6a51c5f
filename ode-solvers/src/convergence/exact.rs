//! Problems with exact solutions: the [`ExactProblem`] trait, its implementations for the
//! closed-form problems of [`crate::problems`], a few more, a closure adapter and an
//! interval adapter.

use super::ConvergenceError;
use crate::Real;
use crate::problems::{Decay, Harmonic, LinearSystem, Logistic, Riccati, TestProblem};
use crate::system::OdeSystem;

/// An initial-value problem `y' = f(t, y)` on `[t0, t1]` with its exact solution.
///
/// The right-hand side is the [`OdeSystem`] supertrait. Implemented here for
/// [`Decay`] (`y' = λ y`), [`Harmonic`] (2-D rotation), [`Logistic`], [`Riccati`]
/// (non-autonomous, nonlinear) and [`LinearSystem`] (`y' = A y`, exact by `expm`) from
/// [`crate::problems`], for [`ExpSin`] (`y' = y cos t`), [`KeplerCircular`] (a nonlinear
/// orbit), for any closures through [`FnProblem`], and for any of them on another interval
/// through [`Span`].
///
/// ```
/// use ode_solvers::OdeSystem;
/// use ode_solvers::convergence::ExactProblem;
///
/// /// y' = −y², y(0) = y0: y = y0 / (1 + y0 t).
/// struct Quadratic { y0: f64 }
/// impl OdeSystem<f64> for Quadratic {
///     fn rhs(&mut self, _t: f64, y: &[f64], dy: &mut [f64]) { dy[0] = -y[0] * y[0]; }
/// }
/// impl ExactProblem<f64> for Quadratic {
///     fn t0(&self) -> f64 { 0.0 }
///     fn t1(&self) -> f64 { 4.0 }
///     fn exact(&self, t: f64) -> Vec<f64> { vec![self.y0 / (1.0 + self.y0 * t)] }
/// }
/// let p = Quadratic { y0: 2.0 };
/// assert_eq!((p.dim(), p.y0()), (1, vec![2.0]));
/// ```
pub trait ExactProblem<T: Real>: OdeSystem<T> {
    /// Start of the interval.
    fn t0(&self) -> T;
    /// End of the interval (may be below `t0`: backwards integration).
    fn t1(&self) -> T;
    /// The exact solution `y(t)`, of length [`ExactProblem::dim`].
    fn exact(&self, t: T) -> Vec<T>;
    /// Initial state; by default `exact(t0)`.
    fn y0(&self) -> Vec<T> {
        self.exact(self.t0())
    }
    /// State length; by default the length of `y0`.
    fn dim(&self) -> usize {
        self.y0().len()
    }
    /// Name shown in reports; by default the type's name.
    fn name(&self) -> &str {
        core::any::type_name::<Self>()
    }
    /// The same problem on `[t0, t1]`, starting from `exact(t0)`.
    fn over(self, t0: T, t1: T) -> Span<Self, T>
    where
        Self: Sized,
    {
        Span {
            problem: self,
            t0,
            t1,
        }
    }
}

/// The closed-form problems of [`crate::problems`], on their own intervals.
macro_rules! exact_from_test_problem {
    ($($p:ty),*) => {$(
        impl<T: Real> ExactProblem<T> for $p {
            fn t0(&self) -> T {
                TestProblem::<T>::t_span(self).0
            }
            fn t1(&self) -> T {
                TestProblem::<T>::t_span(self).1
            }
            /// The closed form of [`TestProblem::exact`] (always `Some` for this problem;
            /// an empty vector would be reported as a length mismatch, never a panic).
            fn exact(&self, t: T) -> Vec<T> {
                TestProblem::<T>::exact(self, t).unwrap_or_default()
            }
            fn y0(&self) -> Vec<T> {
                TestProblem::<T>::y0(self)
            }
            fn name(&self) -> &str {
                TestProblem::<T>::name(self)
            }
        }
    )*};
}

exact_from_test_problem!(Decay, Harmonic, Logistic, Riccati, LinearSystem);

/// A problem moved to the interval `[t0, t1]`, starting from the exact solution at `t0`
/// (built by [`ExactProblem::over`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Span<P, T> {
    /// The problem.
    pub problem: P,
    /// New start.
    pub t0: T,
    /// New end.
    pub t1: T,
}

impl<T: Real, P: OdeSystem<T>> OdeSystem<T> for Span<P, T> {
    #[inline]
    fn rhs(&mut self, t: T, y: &[T], dy: &mut [T]) {
        self.problem.rhs(t, y, dy);
    }
}

impl<T: Real, P: ExactProblem<T>> ExactProblem<T> for Span<P, T> {
    fn t0(&self) -> T {
        self.t0
    }
    fn t1(&self) -> T {
        self.t1
    }
    fn exact(&self, t: T) -> Vec<T> {
        self.problem.exact(t)
    }
    fn dim(&self) -> usize {
        self.problem.dim()
    }
    fn name(&self) -> &str {
        self.problem.name()
    }
}

/// A problem from two closures: `rhs(t, y, dy)` and `exact(t) -> Vec<T>`.
///
/// ```
/// use ode_solvers::convergence::{ExactProblem, FnProblem};
/// // y' = −2 t y, y = exp(−t²)
/// let p = FnProblem::new(
///     "gaussian",
///     0.0,
///     2.0,
///     |t: f64, y: &[f64], dy: &mut [f64]| dy[0] = -2.0 * t * y[0],
///     |t: f64| vec![(-t * t).exp()],
/// );
/// assert_eq!(p.y0(), vec![1.0]);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct FnProblem<T, F, E> {
    /// Name shown in reports.
    pub name: &'static str,
    /// Start of the interval.
    pub t0: T,
    /// End of the interval.
    pub t1: T,
    /// The right-hand side `f(t, y) → dy`.
    pub rhs: F,
    /// The exact solution.
    pub exact: E,
}

impl<T, F, E> FnProblem<T, F, E> {
    /// A problem on `[t0, t1]` from its right-hand side and exact solution.
    pub fn new(name: &'static str, t0: T, t1: T, rhs: F, exact: E) -> Self {
        FnProblem {
            name,
            t0,
            t1,
            rhs,
            exact,
        }
    }
}

impl<T: Real, F: FnMut(T, &[T], &mut [T]), E> OdeSystem<T> for FnProblem<T, F, E> {
    #[inline]
    fn rhs(&mut self, t: T, y: &[T], dy: &mut [T]) {
        (self.rhs)(t, y, dy);
    }
}

impl<T: Real, F: FnMut(T, &[T], &mut [T]), E: Fn(T) -> Vec<T>> ExactProblem<T>
    for FnProblem<T, F, E>
{
    fn t0(&self) -> T {
        self.t0
    }
    fn t1(&self) -> T {
        self.t1
    }
    fn exact(&self, t: T) -> Vec<T> {
        (self.exact)(t)
    }
    fn name(&self) -> &str {
        self.name
    }
}

/// The non-autonomous linear equation `y' = y cos t`, solution `y = y0 exp(sin t)` (entire),
/// from `t = 0` to `t1` (default: `y0 = 1`, `t1 = 8`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExpSin {
    /// `y(0)`.
    pub y0: f64,
    /// End time.
    pub t1: f64,
}

impl Default for ExpSin {
    fn default() -> Self {
        ExpSin { y0: 1.0, t1: 8.0 }
    }
}

impl<T: Real> OdeSystem<T> for ExpSin {
    #[inline]
    fn rhs(&mut self, t: T, y: &[T], dy: &mut [T]) {
        dy[0] = y[0] * t.cos();
    }
}

impl<T: Real> ExactProblem<T> for ExpSin {
    fn t0(&self) -> T {
        T::zero()
    }
    fn t1(&self) -> T {
        T::from_f64_const(self.t1)
    }
    fn exact(&self, t: T) -> Vec<T> {
        vec![T::from_f64_const(self.y0) * t.sin().exp()]
    }
    fn name(&self) -> &str {
        "exp-sin"
    }
}

/// A circular Kepler orbit: `x'' = −x / |x|³` in the plane, state `(x₁, x₂, x₁', x₂')`, radius
/// `R`, angular speed `ω = R^{−3/2}`, phase `φ`: `x = R (cos(ωt + φ), sin(ωt + φ))`.
/// Nonlinear, from `t = 0` to `t1`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KeplerCircular {
    /// Radius `R` (> 0).
    pub radius: f64,
    /// Phase `φ` at `t = 0`.
    pub phase: f64,
    /// End time.
    pub t1: f64,
}

impl<T: Real> OdeSystem<T> for KeplerCircular {
    #[inline]
    fn rhs(&mut self, _t: T, y: &[T], dy: &mut [T]) {
        let r2 = y[0] * y[0] + y[1] * y[1];
        let r3 = r2 * r2.sqrt();
        dy[0] = y[2];
        dy[1] = y[3];
        dy[2] = -y[0] / r3;
        dy[3] = -y[1] / r3;
    }
}

impl<T: Real> ExactProblem<T> for KeplerCircular {
    fn t0(&self) -> T {
        T::zero()
    }
    fn t1(&self) -> T {
        T::from_f64_const(self.t1)
    }
    fn exact(&self, t: T) -> Vec<T> {
        let r = self.radius;
        let w = r.powf(-1.5);
        let a = w * t.to_f64_lossy() + self.phase;
        [r * a.cos(), r * a.sin(), -r * w * a.sin(), r * w * a.cos()]
            .into_iter()
            .map(T::from_f64_const)
            .collect()
    }
    fn dim(&self) -> usize {
        4
    }
    fn name(&self) -> &str {
        "kepler-circular"
    }
}

/// A stable matrix from arbitrary entries: `A = norm · S / ‖S‖∞` with
/// `S = (M − Mᵀ)/2 − 0.1 I` (`M` row-major `n × n`, `entries.len() = n²`).
///
/// `S`'s eigenvalues are `iω − 0.1` (a skew-symmetric part plus a shift), so `y' = A y` is
/// oscillatory and slightly damped, never degenerate: its solution stays `O(|y0|)` over long
/// intervals, and a method's errors stay above round-off. `‖A‖∞ = norm`. For
/// [`LinearSystem`]; random ones come from `strategies::stable_linear_system` (feature
/// `proptest`).
///
/// ```
/// use ode_solvers::convergence::stable_matrix;
/// let a = stable_matrix(&[0.0, 1.0, 0.0, 0.0], 1.0)?;
/// assert!((a[1] - 0.5 / 0.6).abs() < 1e-15 && (a[0] + 0.1 / 0.6).abs() < 1e-15);
/// # Ok::<(), ode_solvers::convergence::ConvergenceError>(())
/// ```
pub fn stable_matrix(entries: &[f64], norm: f64) -> Result<Vec<f64>, ConvergenceError> {
    let n = entries.len().isqrt();
    if n == 0 || n * n != entries.len() {
        return Err(ConvergenceError::InvalidSweep {
            what: "entries.len",
            index: 0,
            value: entries.len() as f64,
            requirement: "must be a positive square (a row-major n × n matrix)",
        });
    }
    if let Some(i) = entries.iter().position(|x| !x.is_finite()) {
        return Err(ConvergenceError::InvalidSweep {
            what: "entries",
            index: i,
            value: entries[i],
            requirement: "must be finite",
        });
    }
    if !(norm.is_finite() && norm > 0.0) {
        return Err(ConvergenceError::InvalidSweep {
            what: "norm",
            index: 0,
            value: norm,
            requirement: "must be finite and > 0",
        });
    }
    let mut s = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            s[i * n + j] = 0.5 * (entries[i * n + j] - entries[j * n + i]);
        }
        s[i * n + i] -= 0.1;
    }
    // ‖S‖∞ ≥ 0.1 (the diagonal).
    let s_norm = s
        .chunks_exact(n)
        .map(|row| row.iter().map(|x| x.abs()).sum::<f64>())
        .fold(0.0, f64::max);
    Ok(s.iter().map(|x| norm * x / s_norm).collect())
}
