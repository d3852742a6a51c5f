//! Direct backpropagation through the solver's Runge–Kutta steps
//! (discretise-then-optimise): records every accepted step `(t, h, y₀)` and reverses its
//! stages, recomputed, in the backward pass.

use ode_solvers::{Integrator, Method, OdeSystem, Options};

use crate::Real;
use crate::dynamics::Vjp;
use crate::error::Result;
use crate::integrate::{tableau_of, vec_bytes};
use crate::modes::{Context, ModeImpl, Recorder};
use crate::solver::Gradients;

const WHAT: &str = "direct backpropagation through the solver";

/// [`crate::GradientMode::Direct`].
#[derive(Debug, Clone, Default)]
pub(crate) struct Direct<T> {
    /// `(t_start, h)` of every accepted step.
    steps: Vec<(T, T)>,
    /// The state at the start of every step.
    steps_y: Vec<T>,
    /// Where each output interval's steps begin (one more entry than intervals).
    steps_start: Vec<usize>,
    // Backward scratch: the tableau in `T` (`a` as `s × s`, row-major, zero-padded),
    // stage inputs `Y_j`, stage values `k_j`, their adjoints `k̄_j`, `ȳ`, and one VJP's
    // outputs.
    a: Vec<T>,
    b: Vec<T>,
    c: Vec<T>,
    yst: Vec<T>,
    k: Vec<T>,
    kbar: Vec<T>,
    ybar: Vec<T>,
    ybar_j: Vec<T>,
    thbar_j: Vec<T>,
}

/// `v` cleared and refilled with `len` zeros.
fn zeroed<T: Real>(v: &mut Vec<T>, len: usize) {
    v.clear();
    v.resize(len, T::zero());
}

impl<T: Real> Recorder<T> for Direct<T> {
    fn interval(&mut self, _first_step: Option<T>) {
        self.steps_start.push(self.steps.len());
    }

    fn step(
        &mut self,
        _i: usize,
        _count: usize,
        st: &mut Integrator<T>,
        _sys: &mut dyn OdeSystem<T>,
    ) -> Result<()> {
        if let Some(info) = st.last_step() {
            self.steps.push((info.t_prev, info.h));
            self.steps_y.extend_from_slice(st.y_prev());
        }
        Ok(())
    }

    fn finish(&mut self) {
        self.steps_start.push(self.steps.len());
    }

    fn bytes(&self) -> usize {
        vec_bytes(&self.steps_y) + vec_bytes(&self.steps)
    }
}

impl<T: Real> ModeImpl<T> for Direct<T> {
    fn check(&self, method: Method, _options: &Options<T>, _dynamics: &dyn Vjp<T>) -> Result<()> {
        tableau_of(method, WHAT).map(|_| ())
    }

    fn forward(&mut self, ctx: &mut Context<T>, dynamics: &mut dyn Vjp<T>) -> Result<()> {
        self.steps.clear();
        self.steps_y.clear();
        self.steps_start.clear();
        ctx.solve_plain(dynamics, self)
    }

    fn backward(
        &mut self,
        ctx: &mut Context<T>,
        dynamics: &mut dyn Vjp<T>,
        dl_dz: &[T],
        grads: &mut Gradients<T>,
    ) -> Result<usize> {
        let tab = tableau_of(ctx.method, WHAT)?;
        let (n, p) = (ctx.n, ctx.p);
        let s = tab.stages;
        let Direct {
            steps,
            steps_y,
            steps_start,
            a,
            b,
            c,
            yst,
            k,
            kbar,
            ybar,
            ybar_j,
            thbar_j,
        } = self;
        b.clear();
        b.extend(tab.b.iter().map(|&x| T::from_f64_const(x)));
        c.clear();
        c.extend(tab.c.iter().map(|&x| T::from_f64_const(x)));
        zeroed(a, s * s);
        for (j, r) in tab.a.iter().enumerate() {
            for (l, &x) in r.iter().enumerate() {
                a[j * s + l] = T::from_f64_const(x);
            }
        }
        // Stages needed: up to the last one with a non-zero weight.
        let s_used = tab.b.iter().rposition(|&x| x != 0.0).map_or(0, |j| j + 1);
        zeroed(yst, s * n);
        zeroed(k, s * n);
        zeroed(kbar, s * n);
        zeroed(ybar, n);
        zeroed(ybar_j, n);
        zeroed(thbar_j, p);
        let nt = ctx.ts.len();
        ybar.copy_from_slice(&dl_dz[(nt - 1) * n..]);
        for i in (1..nt).rev() {
            let (ta, tb) = (ctx.ts[i - 1], ctx.ts[i]);
            let delta = tb - ta;
            for st in (steps_start[i - 1]..steps_start[i]).rev() {
                let (t, h) = steps[st];
                let y0 = &steps_y[st * n..(st + 1) * n];
                // Recompute the stages.
                for j in 0..s_used {
                    let yj = &mut yst[j * n..(j + 1) * n];
                    yj.copy_from_slice(y0);
                    for (l, &al) in a[j * s..(j + 1) * s].iter().enumerate() {
                        if al != T::zero() {
                            let kl = &k[l * n..(l + 1) * n];
                            for (v, kv) in yj.iter_mut().zip(kl) {
                                *v += h * al * *kv;
                            }
                        }
                    }
                    dynamics.eval(t + c[j] * h, yj, &ctx.theta, &mut k[j * n..(j + 1) * n])?;
                }
                ctx.stats.backward_nfe += s_used;
                // Reverse: y1 = y0 + h Σ b_j k_j.
                let mut hbar = T::zero();
                let mut tbar = T::zero();
                for j in 0..s_used {
                    let kj = &k[j * n..(j + 1) * n];
                    let kb = &mut kbar[j * n..(j + 1) * n];
                    let mut dot = T::zero();
                    for q in 0..n {
                        kb[q] = h * b[j] * ybar[q];
                        dot += ybar[q] * kj[q];
                    }
                    hbar += b[j] * dot;
                }
                // ybar (for y0) keeps its value: ∂y1/∂y0 = I plus the stage terms below.
                for j in (0..s_used).rev() {
                    let kb = &kbar[j * n..(j + 1) * n];
                    if kb.iter().all(|x| *x == T::zero()) {
                        continue;
                    }
                    let tau = dynamics.vjp(
                        t + c[j] * h,
                        &yst[j * n..(j + 1) * n],
                        &ctx.theta,
                        kb,
                        ybar_j,
                        thbar_j,
                    )?;
                    ctx.stats.backward_vjp += 1;
                    for (g, v) in grads.theta.iter_mut().zip(thbar_j.iter()) {
                        *g += *v;
                    }
                    tbar += tau;
                    hbar += c[j] * tau;
                    for q in 0..n {
                        ybar[q] += ybar_j[q];
                    }
                    for (l, &al) in a[j * s..(j + 1) * s].iter().enumerate() {
                        if al != T::zero() {
                            let mut dot = T::zero();
                            for q in 0..n {
                                kbar[l * n + q] += h * al * ybar_j[q];
                                dot += ybar_j[q] * k[l * n + q];
                            }
                            hbar += al * dot;
                        }
                    }
                }
                // t = ta + frac·Δ, h = σ·Δ.
                let frac = (t - ta) / delta;
                let sigma = h / delta;
                grads.ts[i - 1] += tbar * (T::one() - frac) - hbar * sigma;
                grads.ts[i] += tbar * frac + hbar * sigma;
            }
            for (v, g) in ybar.iter_mut().zip(&dl_dz[(i - 1) * n..i * n]) {
                *v += *g;
            }
        }
        if nt == 1 {
            // No interval: only the direct term.
            ybar.copy_from_slice(&dl_dz[..n]);
        }
        grads.z0.copy_from_slice(ybar);
        let sz = core::mem::size_of::<T>();
        Ok(vec_bytes(&ctx.zs)
            + vec_bytes(steps_y)
            + vec_bytes(steps)
            + (3 * s * n + 2 * n + p) * sz)
    }

    fn box_clone(&self) -> Box<dyn ModeImpl<T>> {
        Box::new(self.clone())
    }
}
