//! Variable-step, variable-order Adams–Bashforth–Moulton (PECE) up to order 12.
//!
//! Step from `t_n` with order `k` and step `h`, using the stored derivatives
//! `f_n, f_{n−1}, …` at the (unequally spaced) past times:
//!
//! * **P**redict with Adams–Bashforth of order `k`: `y_p = y_n + h Σ_{i<k} β_i f_{n−i}`,
//!   `β_i = (1/h) ∫_{t_n}^{t_n+h} L_i(t) dt` over the Lagrange basis of the `k` newest nodes.
//! * **E**valuate `f_p = f(t_n + h, y_p)`.
//! * **C**orrect with Adams–Moulton of order `k + 1` on the nodes `t_{n+1}, t_n, …, t_{n−k+1}`
//!   (local extrapolation: the corrector is the more accurate value and is kept).
//! * **E**valuate `f_{n+1} = f(t_{n+1}, y_{n+1})`: two evaluations per step.
//!
//! The local error of order `k` is estimated by `y_c − y_p` in the mixed RMS norm, that of
//! order `k − 1` by `y_c − y_p^{(k−1)}`; the order moves by at most one per step towards the
//! one allowing the larger step (Shampine–Gordon / ode113 style), starting at order 1 and
//! raising the order every step during start-up. Integration weights are computed exactly
//! by 7-point Gauss–Legendre quadrature of the Lagrange basis (exact up to degree 13), so
//! step-size changes need no rescaling of the history. Dense output is cubic Hermite.

use core::ops::Range;

use crate::dense::DenseStep;
use crate::error::SolveError;
use crate::initial_step::hinit;
use crate::options::{ErrorNorm, Options, Stats};
use crate::real::{Real, c};
use crate::slices::{axpy, first_non_finite};
use crate::stepper::{StepInfo, Stepper, next_attempt};
use crate::system::OdeSystem;

const GL_X: [f64; 7] = [
    -0.949_107_912_342_758_5,
    -0.741_531_185_599_394_4,
    -0.405_845_151_377_397_2,
    0.0,
    0.405_845_151_377_397_2,
    0.741_531_185_599_394_4,
    0.949_107_912_342_758_5,
];
const GL_W: [f64; 7] = [
    0.129_484_966_168_869_7,
    0.279_705_391_489_276_7,
    0.381_830_050_505_118_9,
    0.417_959_183_673_469_4,
    0.381_830_050_505_118_9,
    0.279_705_391_489_276_7,
    0.129_484_966_168_869_7,
];

/// `w_j = ∫_0^1 L_j(u) du` for the Lagrange basis on the nodes `u` (at most 13 of them).
fn lagrange_weights<T: Real>(u: &[T], w: &mut [T]) {
    let m = u.len();
    for wj in w.iter_mut().take(m) {
        *wj = T::zero();
    }
    let half: T = c(0.5);
    for q in 0..7 {
        let x = half * (T::one() + c::<T>(GL_X[q]));
        let gw = half * c::<T>(GL_W[q]);
        for j in 0..m {
            let mut l = T::one();
            for i in 0..m {
                if i != j {
                    l *= (x - u[i]) / (u[j] - u[i]);
                }
            }
            w[j] += gw * l;
        }
    }
}

/// The Adams–Bashforth–Moulton integrator (see the module docs). Buffers are allocated once.
#[derive(Debug, Clone)]
pub struct AdamsStepper<T: Real> {
    max_order: usize,
    order: usize,
    startup: bool,
    since_change: usize,
    ring_t: Vec<T>,
    ring_f: Vec<Vec<T>>,
    head: usize,
    len: usize,
    y: Vec<T>,
    y_prev: Vec<T>,
    yp: Vec<T>,
    ypl: Vec<T>,
    yc: Vec<T>,
    fp: Vec<T>,
    f_prev: Vec<T>,
    u: Vec<T>,
    w: Vec<T>,
    rtol: Vec<T>,
    atol: Vec<T>,
    err_range: Range<usize>,
    norm: ErrorNorm,
    safety: T,
    min_factor: T,
    max_factor: T,
    t: T,
    t_prev: T,
    t_end: T,
    dir: T,
    h: T,
    h_last: T,
    max_step: T,
    min_step: T,
    max_steps: usize,
    attempts: usize,
    stats: Stats,
    dense: DenseStep<T>,
    dense_valid: bool,
    has_step: bool,
}

impl<T: Real> AdamsStepper<T> {
    /// Sets up a solve from `(t0, y0)` towards `t_end`; evaluates `f` twice (initial
    /// derivative and Hairer's initial-step heuristic unless `first_step` is given).
    pub fn new<S: OdeSystem<T> + ?Sized>(
        sys: &mut S,
        t0: T,
        y0: &[T],
        t_end: T,
        opts: &Options<T>,
    ) -> Result<Self, SolveError> {
        let n = y0.len();
        opts.validate(n)?;
        for (i, t) in [t0, t_end].into_iter().enumerate() {
            if !t.is_finite() {
                return Err(SolveError::NonMonotoneTimes {
                    index: i,
                    value: t.to_f64_lossy(),
                });
            }
        }
        if let Some(i) = first_non_finite(y0) {
            return Err(SolveError::NonFiniteState {
                t: t0.to_f64_lossy(),
                index: i,
            });
        }
        let cap = opts.max_order + 1;
        let z = || vec![T::zero(); n];
        let (safety, min_factor, max_factor) = match &opts.controller {
            Some(cn) => (cn.safety, cn.min_factor, cn.max_factor.min(c(2.0))),
            None => (c(0.9), c(0.2), c(2.0)),
        };
        let dir = if t_end >= t0 { T::one() } else { -T::one() };
        let span = (t_end - t0).abs();
        let max_step = opts.max_step.unwrap_or(if span > T::zero() {
            span
        } else {
            T::max_value()
        });
        let mut st = AdamsStepper {
            max_order: opts.max_order,
            order: 1,
            startup: true,
            since_change: 0,
            ring_t: vec![t0; cap],
            ring_f: (0..cap).map(|_| z()).collect(),
            head: 0,
            len: 1,
            y: y0.to_vec(),
            y_prev: y0.to_vec(),
            yp: z(),
            ypl: z(),
            yc: z(),
            fp: z(),
            f_prev: z(),
            u: vec![T::zero(); cap + 1],
            w: vec![T::zero(); cap + 1],
            rtol: (0..n).map(|i| opts.rtol.get(i)).collect(),
            atol: (0..n).map(|i| opts.atol.get(i)).collect(),
            err_range: opts.error_range(n),
            norm: opts.norm,
            safety,
            min_factor,
            max_factor,
            t: t0,
            t_prev: t0,
            t_end,
            dir,
            h: T::zero(),
            h_last: T::zero(),
            max_step,
            min_step: opts.min_step,
            max_steps: opts.max_steps,
            attempts: 0,
            stats: Stats::default(),
            dense: DenseStep::with_capacity(n, 4),
            dense_valid: false,
            has_step: false,
        };
        sys.rhs(t0, &st.y, &mut st.ring_f[0]);
        st.stats.nfe += 1;
        if let Some(i) = first_non_finite(&st.ring_f[0]) {
            return Err(SolveError::NonFiniteDerivative {
                t: t0.to_f64_lossy(),
                index: i,
            });
        }
        if span > T::zero() {
            st.h = match opts.first_step {
                Some(h) => dir * h.min(max_step),
                None => {
                    let f0 = st.ring_f[0].clone();
                    hinit(
                        opts.initial_step,
                        sys,
                        t0,
                        &st.y,
                        &f0,
                        dir,
                        max_step,
                        &st.rtol,
                        &st.atol,
                        st.err_range.clone(),
                        2,
                        &mut st.yp,
                        &mut st.fp,
                        &mut st.stats,
                    )
                }
            };
        }
        Ok(st)
    }

    /// Current order.
    pub fn order(&self) -> usize {
        self.order
    }

    /// Index into the ring of the point `back` steps ago (0 = newest).
    #[inline]
    fn idx(&self, back: usize) -> usize {
        let cap = self.ring_t.len();
        (self.head + cap - back) % cap
    }

    /// `out = y + h Σ_{i<m} w_i f_{n-i}` with weights for the `m` newest nodes, and
    /// optionally `wc0 * fp` for the corrector.
    fn combine(&mut self, h: T, m: usize, first: Option<T>, which: u8) {
        let out = match which {
            0 => &mut self.yp,
            1 => &mut self.ypl,
            _ => &mut self.yc,
        };
        out.copy_from_slice(&self.y);
        let off = usize::from(first.is_some());
        if let Some(w0) = first {
            axpy(h * w0, &self.fp, out);
        }
        let cap = self.ring_t.len();
        for i in 0..m {
            let k = (self.head + cap - i) % cap;
            axpy(h * self.w[off + i], &self.ring_f[k], out);
        }
    }

    fn norm_diff(&self, a: &[T], b: &[T]) -> T {
        let mut acc = T::zero();
        for i in self.err_range.clone() {
            let sk = self.atol[i] + self.rtol[i] * self.y[i].abs().max(self.yc[i].abs());
            let r = (a[i] - b[i]) / sk;
            match self.norm {
                ErrorNorm::Rms => acc += r * r,
                ErrorNorm::Max => acc = acc.max(r * r),
            }
        }
        match self.norm {
            ErrorNorm::Rms => (acc / c(self.err_range.len() as f64)).sqrt(),
            ErrorNorm::Max => acc.sqrt(),
        }
    }
}

impl<T: Real> Stepper<T> for AdamsStepper<T> {
    fn t(&self) -> T {
        self.t
    }

    fn y(&self) -> &[T] {
        &self.y
    }

    fn t_end(&self) -> T {
        self.t_end
    }

    fn stats(&self) -> Stats {
        self.stats
    }

    fn last_step(&self) -> Option<StepInfo<T>> {
        self.has_step.then_some(StepInfo {
            t_prev: self.t_prev,
            t_new: self.t,
            h: self.h_last,
        })
    }

    fn y_prev(&self) -> &[T] {
        &self.y_prev
    }

    fn step<S: OdeSystem<T> + ?Sized>(&mut self, sys: &mut S) -> Result<StepInfo<T>, SolveError> {
        if self.t == self.t_end {
            return Err(SolveError::EndReached {
                t: self.t_end.to_f64_lossy(),
            });
        }
        loop {
            let (h, last) = next_attempt(
                self.t,
                self.h,
                self.t_end,
                self.dir,
                self.min_step,
                &mut self.attempts,
                self.max_steps,
            )?;
            let k = self.order.min(self.len);
            // Nodes relative to t_n in units of h: u_i = (t_{n-i} - t_n) / h.
            for i in 0..k {
                let ti = self.ring_t[self.idx(i)];
                self.u[i + 1] = (ti - self.t) / h;
            }
            // Predictor of order k.
            {
                let (u, w) = (&self.u[1..=k], &mut self.w[..k]);
                lagrange_weights(u, w);
            }
            self.combine(h, k, None, 0);
            // Predictor of order k - 1 (for order selection).
            if k >= 2 {
                let (u, w) = (&self.u[1..k], &mut self.w[..k - 1]);
                lagrange_weights(u, w);
                self.combine(h, k - 1, None, 1);
            }
            let t_new = if last { self.t_end } else { self.t + h };
            sys.rhs(t_new, &self.yp, &mut self.fp);
            self.stats.nfe += 1;
            if let Some(i) = first_non_finite(&self.fp) {
                return Err(SolveError::NonFiniteDerivative {
                    t: t_new.to_f64_lossy(),
                    index: i,
                });
            }
            // Corrector of order k + 1 on t_{n+1}, t_n, ..., t_{n-k+1}.
            self.u[0] = T::one();
            {
                let (u, w) = (&self.u[..=k], &mut self.w[..=k]);
                lagrange_weights(u, w);
            }
            let w0 = self.w[0];
            self.combine(h, k, Some(w0), 2);
            if let Some(i) = first_non_finite(&self.yc) {
                return Err(SolveError::NonFiniteState {
                    t: t_new.to_f64_lossy(),
                    index: i,
                });
            }
            let err_k = self.norm_diff(&self.yc, &self.yp);
            let err_km1 = if k >= 2 {
                self.norm_diff(&self.yc, &self.ypl)
            } else {
                T::infinity()
            };
            let (safety, max_factor) = (self.safety, self.max_factor);
            let expo = |e: T, p: usize| -> T {
                if e > T::zero() {
                    safety * e.powf(-T::one() / c(p as f64))
                } else {
                    max_factor
                }
            };
            if err_k <= T::one() {
                // Accept: evaluate at the corrected point (PECE) and push to the history.
                let cap = self.ring_t.len();
                let new_head = (self.head + 1) % cap;
                sys.rhs(t_new, &self.yc, &mut self.ring_f[new_head]);
                self.stats.nfe += 1;
                if let Some(i) = first_non_finite(&self.ring_f[new_head]) {
                    return Err(SolveError::NonFiniteDerivative {
                        t: t_new.to_f64_lossy(),
                        index: i,
                    });
                }
                let old_head = self.head;
                self.f_prev.copy_from_slice(&self.ring_f[old_head]);
                self.ring_t[new_head] = t_new;
                self.head = new_head;
                self.len = (self.len + 1).min(cap);
                core::mem::swap(&mut self.y_prev, &mut self.y);
                core::mem::swap(&mut self.y, &mut self.yc);
                self.t_prev = self.t;
                self.t = t_new;
                self.h_last = h;
                self.stats.accepted += 1;
                self.dense_valid = false;
                self.has_step = true;
                self.since_change += 1;
                // Order and step selection.
                let r_k = expo(err_k, k + 1);
                let r_km1 = if k >= 2 { expo(err_km1, k) } else { T::zero() };
                let mut r = r_k;
                let mut new_order = k;
                if self.startup {
                    if k >= 2 && err_km1 <= err_k {
                        self.startup = false;
                    } else if k < self.max_order && self.len > k {
                        new_order = k + 1;
                    }
                } else if k >= 2 && r_km1 > r_k {
                    new_order = k - 1;
                    r = r_km1;
                } else if k < self.max_order
                    && self.len > k
                    && self.since_change > k
                    && r_k > c::<T>(1.05) * r_km1
                {
                    new_order = k + 1;
                }
                if new_order != k {
                    self.since_change = 0;
                }
                self.order = new_order;
                let fac = r.min(self.max_factor).max(self.min_factor);
                let mut hnew = h * fac;
                if hnew.abs() > self.max_step {
                    hnew = self.dir * self.max_step;
                }
                self.h = hnew;
                return Ok(StepInfo {
                    t_prev: self.t_prev,
                    t_new,
                    h,
                });
            }
            // Reject.
            self.stats.rejected += 1;
            self.startup = false;
            let mut r = expo(err_k, k + 1);
            if k >= 2 && err_km1 < err_k {
                self.order = k - 1;
                self.since_change = 0;
                r = r.max(expo(err_km1, k));
            }
            let fac = r.min(c(0.9)).max(self.min_factor);
            self.h = h * fac;
        }
    }

    fn step_fixed<S: OdeSystem<T> + ?Sized>(
        &mut self,
        _sys: &mut S,
        _h: T,
    ) -> Result<StepInfo<T>, SolveError> {
        Err(SolveError::Unsupported {
            method: "adams",
            what: "take a fixed step (it is variable-step by design)",
        })
    }

    fn step_to<S: OdeSystem<T> + ?Sized>(
        &mut self,
        _sys: &mut S,
        _t_target: T,
    ) -> Result<StepInfo<T>, SolveError> {
        Err(SolveError::Unsupported {
            method: "adams",
            what: "take a fixed step (it is variable-step by design)",
        })
    }

    fn dense_output<S: OdeSystem<T> + ?Sized>(
        &mut self,
        _sys: &mut S,
    ) -> Result<&DenseStep<T>, SolveError> {
        if !self.has_step {
            return Err(SolveError::OutsideStep {
                t: self.t.to_f64_lossy(),
                t_prev: self.t.to_f64_lossy(),
                t_new: self.t.to_f64_lossy(),
            });
        }
        if !self.dense_valid {
            let f_new = &self.ring_f[self.head];
            self.dense.set_hermite(
                self.t_prev,
                self.h_last,
                &self.y_prev,
                &self.y,
                &self.f_prev,
                f_new,
            );
            self.dense_valid = true;
        }
        Ok(&self.dense)
    }
}

#[cfg(test)]
mod tests {
    use super::lagrange_weights;

    #[test]
    fn weights_reproduce_ab2_on_uniform_grid() {
        // AB2: y_{n+1} = y_n + h (3/2 f_n - 1/2 f_{n-1}).
        let mut w = [0.0f64; 2];
        lagrange_weights(&[0.0, -1.0], &mut w);
        assert!((w[0] - 1.5).abs() < 1e-14 && (w[1] + 0.5).abs() < 1e-14);
        // AM2 (trapezoid) on t_{n+1}, t_n.
        lagrange_weights(&[1.0, 0.0], &mut w);
        assert!((w[0] - 0.5).abs() < 1e-14 && (w[1] - 0.5).abs() < 1e-14);
    }
}
