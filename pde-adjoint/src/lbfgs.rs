//! A small limited-memory BFGS minimiser with a strong-Wolfe line search
//! (Nocedal & Wright, *Numerical Optimization*, 2nd ed., Algorithms 7.4, 3.5
//! and 3.6).
//!
//! Written here rather than taken from `argmin` so that it runs on plain
//! slices generic over `f32`/`f64`, allocates its history once, and passes the
//! caller's error type through untouched.

use real::Real;

use crate::error::PdeError;
use crate::grid::lit;

/// Why the minimiser stopped (a normal stop, not an error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// `‖∇f‖ ≤ grad_tol · ‖∇f(x₀)‖`.
    GradientTolerance,
    /// The relative decrease of `f` over one iteration fell below `value_tol`.
    ValueTolerance,
    /// `max_iters` iterations were done.
    MaxIterations,
    /// No step satisfying the Wolfe conditions (nor any decrease) was found:
    /// usually `f` is at round-off level.
    LineSearchFailed,
}

/// Options of the L-BFGS minimiser.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lbfgs<T> {
    /// Number of correction pairs kept (≥ 1).
    pub memory: usize,
    /// Maximum number of iterations.
    pub max_iters: usize,
    /// Stop when `‖∇f‖ ≤ grad_tol · ‖∇f(x₀)‖` (≥ 0).
    pub grad_tol: T,
    /// Stop when `(f_old − f_new) ≤ value_tol · max(|f_old|, |f_new|)` (≥ 0).
    pub value_tol: T,
    /// Sufficient-decrease constant `c₁` of the Wolfe conditions.
    pub c1: T,
    /// Curvature constant `c₂` (`c₁ < c₂ < 1`).
    pub c2: T,
    /// Maximum function evaluations per line search.
    pub max_line_search: usize,
}

impl<T: Real> Default for Lbfgs<T> {
    fn default() -> Self {
        Self {
            memory: 10,
            max_iters: 500,
            grad_tol: lit(1e-8),
            value_tol: T::epsilon(),
            c1: lit(1e-4),
            c2: lit(0.9),
            max_line_search: 30,
        }
    }
}

/// What the minimiser did.
#[derive(Debug, Clone, PartialEq)]
pub struct LbfgsReport<T> {
    /// Iterations done.
    pub iterations: usize,
    /// Function-and-gradient evaluations.
    pub evaluations: usize,
    /// Final `f`.
    pub value: T,
    /// Final `‖∇f‖₂`.
    pub grad_norm: T,
    /// Why it stopped.
    pub stop: StopReason,
    /// `f` after each iteration (first entry: `f(x₀)`).
    pub history: Vec<T>,
}

fn dot<T: Real>(a: &[T], b: &[T]) -> T {
    let mut acc = T::zero();
    for (x, y) in a.iter().zip(b) {
        acc += *x * *y;
    }
    acc
}

struct Probe<'a, T> {
    x: &'a [T],
    d: &'a [T],
    xn: &'a mut [T],
    gn: &'a mut [T],
    evaluations: usize,
}

impl<T: Real> Probe<'_, T> {
    /// Evaluates `φ(a) = f(x + a d)` and `φ'(a)`; non-finite values count as +∞.
    fn eval<E, F>(&mut self, a: T, f: &mut F) -> Result<(T, T), E>
    where
        F: FnMut(&[T], &mut [T]) -> Result<T, E>,
    {
        for ((xn, x), d) in self.xn.iter_mut().zip(self.x).zip(self.d) {
            *xn = *x + a * *d;
        }
        self.evaluations += 1;
        let fa = f(self.xn, self.gn)?;
        let dga = dot(self.gn, self.d);
        if fa.is_finite() && dga.is_finite() {
            Ok((fa, dga))
        } else {
            Ok((T::infinity(), T::infinity()))
        }
    }
}

impl<T: Real> Lbfgs<T> {
    fn validate(&self) -> Result<(), PdeError> {
        let bad = |name, requirement, value: T| PdeError::InvalidOption {
            name,
            requirement,
            value: value.to_f64().unwrap_or(f64::NAN),
        };
        if self.memory == 0 {
            return Err(PdeError::InvalidOption {
                name: "memory",
                requirement: "at least 1",
                value: 0.0,
            });
        }
        if self.grad_tol.is_nan() || self.grad_tol < T::zero() {
            return Err(bad("grad_tol", ">= 0", self.grad_tol));
        }
        if self.value_tol.is_nan() || self.value_tol < T::zero() {
            return Err(bad("value_tol", ">= 0", self.value_tol));
        }
        if !(self.c1 > T::zero() && self.c1 < self.c2 && self.c2 < T::one()) {
            return Err(bad("c1, c2", "0 < c1 < c2 < 1", self.c1));
        }
        Ok(())
    }

    /// Minimises `f` from `x` (overwritten with the result). `f(x, g)` returns
    /// the value and writes the gradient into `g`; its errors are passed on.
    pub fn minimize<E, F>(&self, x: &mut [T], mut f: F) -> Result<LbfgsReport<T>, E>
    where
        F: FnMut(&[T], &mut [T]) -> Result<T, E>,
        E: From<PdeError>,
    {
        self.validate()?;
        let n = x.len();
        let m = self.memory;
        let mut g = vec![T::zero(); n];
        let mut d = vec![T::zero(); n];
        let mut xn = vec![T::zero(); n];
        let mut gn = vec![T::zero(); n];
        let mut s_hist = vec![vec![T::zero(); n]; m];
        let mut y_hist = vec![vec![T::zero(); n]; m];
        let mut rho = vec![T::zero(); m];
        let mut alpha = vec![T::zero(); m];
        let (mut head, mut len) = (0usize, 0usize);

        let mut fx = f(x, &mut g)?;
        let mut evaluations = 1;
        if !fx.is_finite() {
            return Err(PdeError::NonFinite {
                what: "objective at the starting point",
                index: 0,
            }
            .into());
        }
        let g0 = dot(&g, &g).sqrt();
        let mut history = vec![fx];
        let mut stop = StopReason::MaxIterations;
        let mut iterations = 0;
        while iterations < self.max_iters {
            let gnorm = dot(&g, &g).sqrt();
            if gnorm <= self.grad_tol * g0 || gnorm <= T::zero() {
                stop = StopReason::GradientTolerance;
                break;
            }
            // Two-loop recursion: d = −H g.
            d.copy_from_slice(&g);
            for k in 0..len {
                let i = (head + m - 1 - k) % m;
                alpha[i] = rho[i] * dot(&s_hist[i], &d);
                for (q, y) in d.iter_mut().zip(&y_hist[i]) {
                    *q -= alpha[i] * *y;
                }
            }
            let gamma = if len > 0 {
                let i = (head + m - 1) % m;
                dot(&s_hist[i], &y_hist[i]) / dot(&y_hist[i], &y_hist[i])
            } else {
                T::one() / gnorm
            };
            for q in d.iter_mut() {
                *q *= gamma;
            }
            for k in (0..len).rev() {
                let i = (head + m - 1 - k) % m;
                let b = rho[i] * dot(&y_hist[i], &d);
                for (q, s) in d.iter_mut().zip(&s_hist[i]) {
                    *q += (alpha[i] - b) * *s;
                }
            }
            for q in d.iter_mut() {
                *q = -*q;
            }
            let mut dg0 = dot(&d, &g);
            if dg0.is_nan() || dg0 >= T::zero() {
                // Not a descent direction: restart from steepest descent.
                len = 0;
                for (q, gi) in d.iter_mut().zip(&g) {
                    *q = -*gi / gnorm;
                }
                dg0 = -gnorm;
            }
            let mut probe = Probe {
                x,
                d: &d,
                xn: &mut xn,
                gn: &mut gn,
                evaluations: 0,
            };
            let accepted = self.line_search(&mut probe, &mut f, fx, dg0)?;
            evaluations += probe.evaluations;
            let Some(f_new) = accepted else {
                stop = StopReason::LineSearchFailed;
                break;
            };
            // Update the history with s = xn − x, y = gn − g.
            let i = head;
            for k in 0..n {
                s_hist[i][k] = xn[k] - x[k];
                y_hist[i][k] = gn[k] - g[k];
            }
            let sy = dot(&s_hist[i], &y_hist[i]);
            if sy > T::epsilon() * dot(&y_hist[i], &y_hist[i]) {
                rho[i] = T::one() / sy;
                head = (head + 1) % m;
                len = (len + 1).min(m);
            }
            x.copy_from_slice(&xn);
            g.copy_from_slice(&gn);
            let f_old = fx;
            fx = f_new;
            history.push(fx);
            iterations += 1;
            if f_old - fx <= self.value_tol * f_old.abs().max(fx.abs()) {
                stop = StopReason::ValueTolerance;
                break;
            }
        }
        Ok(LbfgsReport {
            iterations,
            evaluations,
            value: fx,
            grad_norm: dot(&g, &g).sqrt(),
            stop,
            history,
        })
    }

    /// Strong-Wolfe line search; on success `probe.xn`, `probe.gn` hold the
    /// accepted point and its gradient, and the value is returned.
    fn line_search<E, F>(
        &self,
        p: &mut Probe<'_, T>,
        f: &mut F,
        f0: T,
        dg0: T,
    ) -> Result<Option<T>, E>
    where
        F: FnMut(&[T], &mut [T]) -> Result<T, E>,
    {
        let armijo = |a: T, fa: T| fa <= f0 + self.c1 * a * dg0;
        let curvature = |dga: T| dga.abs() <= -self.c2 * dg0;
        let two = T::one() + T::one();
        let mut best = (T::zero(), f0);
        let (mut a_prev, mut f_prev, mut dg_prev) = (T::zero(), f0, dg0);
        let mut a = T::one();
        let mut bracket = None;
        for i in 0..self.max_line_search {
            let (fa, dga) = p.eval(a, f)?;
            if fa < best.1 {
                best = (a, fa);
            }
            if !armijo(a, fa) || (i > 0 && fa >= f_prev) {
                bracket = Some((a_prev, f_prev, dg_prev, a, fa));
                break;
            }
            if curvature(dga) {
                return Ok(Some(fa));
            }
            if dga >= T::zero() {
                bracket = Some((a, fa, dga, a_prev, f_prev));
                break;
            }
            a_prev = a;
            f_prev = fa;
            dg_prev = dga;
            a *= two;
        }
        if let Some((mut lo, mut flo, mut dglo, mut hi, mut fhi)) = bracket {
            for _ in 0..self.max_line_search {
                let width = hi - lo;
                // Minimiser of the quadratic through (lo, flo, dglo) and (hi, fhi),
                // safeguarded to the middle 80 % of the bracket.
                let denom = two * (fhi - flo - dglo * width);
                let mut a_try = lo - dglo * width * width / denom;
                let (left, right) = if lo < hi { (lo, hi) } else { (hi, lo) };
                let margin = lit::<T>(0.1) * (right - left);
                if !(a_try.is_finite() && a_try > left + margin && a_try < right - margin) {
                    a_try = (lo + hi) / two;
                }
                let (fa, dga) = p.eval(a_try, f)?;
                if fa < best.1 {
                    best = (a_try, fa);
                }
                if !armijo(a_try, fa) || fa >= flo {
                    hi = a_try;
                    fhi = fa;
                } else {
                    if curvature(dga) {
                        return Ok(Some(fa));
                    }
                    if dga * (hi - lo) >= T::zero() {
                        hi = lo;
                        fhi = flo;
                    }
                    lo = a_try;
                    flo = fa;
                    dglo = dga;
                }
                if (hi - lo).abs() <= T::epsilon() * lo.abs().max(T::one()) {
                    break;
                }
            }
        }
        // No Wolfe point: accept the best decrease seen, if any.
        if best.1 < f0 {
            let (fa, _) = p.eval(best.0, f)?;
            if fa < f0 {
                return Ok(Some(fa));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Rosenbrock function from (−1.2, 1): L-BFGS must reach (1, 1).
    #[test]
    fn rosenbrock() {
        let mut x = [-1.2f64, 1.0];
        let opts = Lbfgs {
            grad_tol: 1e-10,
            value_tol: 0.0,
            ..Lbfgs::default()
        };
        let report = opts
            .minimize::<PdeError, _>(&mut x, |x, g| {
                let (a, b) = (x[0], x[1]);
                g[0] = -2.0 * (1.0 - a) - 400.0 * a * (b - a * a);
                g[1] = 200.0 * (b - a * a);
                Ok((1.0 - a).powi(2) + 100.0 * (b - a * a).powi(2))
            })
            .unwrap();
        assert!(
            (x[0] - 1.0).abs() < 1e-6 && (x[1] - 1.0).abs() < 1e-6,
            "{x:?} {report:?}"
        );
        assert!(report.iterations < 100, "{report:?}");
        assert!(report.history.windows(2).all(|w| w[1] <= w[0]));
    }

    #[test]
    fn bad_options_are_errors() {
        let mut x = [1.0f64];
        let opts = Lbfgs {
            memory: 0,
            ..Lbfgs::default()
        };
        let e = opts.minimize::<PdeError, _>(&mut x, |x, g| {
            g[0] = x[0];
            Ok(0.5 * x[0] * x[0])
        });
        assert!(matches!(
            e,
            Err(PdeError::InvalidOption { name: "memory", .. })
        ));
        let opts = Lbfgs {
            c1: 0.95,
            ..Lbfgs::default()
        };
        assert!(
            opts.minimize::<PdeError, _>(&mut x, |_, _| Ok(0.0))
                .is_err()
        );
    }
}
