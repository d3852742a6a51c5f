//! Forward sensitivities: `[z, S_θ, S_z0]` integrated together with
//! `Ṡ = ∂f/∂z S + ∂f/∂θ`, the sensitivities recorded at every output time; the backward
//! pass is a contraction with `dL/dz(tᵢ)`.
//!
//! Three ways to the tangent columns' right-hand side, chosen per dynamics:
//! [`Vjp::sensitivity_rhs`] (the whole block `∂f/∂z S + [∂f/∂θ, 0]` in one call, when the
//! dynamics implement it), explicit Jacobians from `n` VJPs ([`Vjp::prefers_jacobians`]),
//! or `P + n` JVPs. `ForwardJvp` always takes the JVPs.

use ode_solvers::{Method, Options, Tolerance};

use crate::Real;
use crate::dynamics::Vjp;
use crate::error::{Error, Result};
use crate::integrate::{Guarded, TryRhs, add_stats, as_dyn, integrate, stepper_bytes, vec_bytes};
use crate::modes::{Context, ModeImpl};
use crate::solver::Gradients;

/// [`crate::GradientMode::Forward`] and [`crate::GradientMode::ForwardJvp`].
#[derive(Debug, Clone)]
pub(crate) struct Forward<T> {
    /// JVPs for every tangent column whatever the dynamics prefer (`ForwardJvp`).
    jvp_only: bool,
    /// Sensitivities at every output time, `n × (P + n)` each, column by column.
    sens: Vec<T>,
    /// VJPs the forward solve spent on Jacobians (reported as the backward pass's).
    vjp: usize,
    /// The state `[z, S_θ, S_z0]`.
    y: Vec<T>,
    /// `[z, S_θ, S_z0]` interpolated at one output time.
    yi: Vec<T>,
    work: SensWork<T>,
    /// `a(t₀)` (without `g₀`) for `dL/dt₀`.
    a: Vec<T>,
}

impl<T> Forward<T> {
    pub(crate) fn new(jvp_only: bool) -> Self {
        Forward {
            jvp_only,
            sens: Vec::new(),
            vjp: 0,
            y: Vec::new(),
            yi: Vec::new(),
            work: SensWork {
                e_theta: Vec::new(),
                zeros_theta: Vec::new(),
                jz: Vec::new(),
                jz_t: Vec::new(),
                nonzero: Vec::new(),
                jth: Vec::new(),
                e_n: Vec::new(),
            },
            a: Vec::new(),
        }
    }
}

impl<T: Real> ModeImpl<T> for Forward<T> {
    fn check(&self, _method: Method, _options: &Options<T>, dynamics: &dyn Vjp<T>) -> Result<()> {
        if self.jvp_only && !dynamics.has_jvp() {
            return Err(Error::MissingCapability {
                what: "jvp",
                hint: "GradientMode::ForwardJvp needs Vjp::jvp; GradientMode::Forward works without it",
            });
        }
        Ok(())
    }

    fn forward(&mut self, ctx: &mut Context<T>, dynamics: &mut dyn Vjp<T>) -> Result<()> {
        let method = ctx.method;
        let (n, p) = (ctx.n, ctx.p);
        let cols = p + n;
        let m = n + n * cols;
        let block = !self.jvp_only && dynamics.has_sensitivity_rhs();
        let use_jvp = !block && (self.jvp_only || !dynamics.prefers_jacobians());
        let y = &mut self.y;
        y.clear();
        y.resize(m, T::zero());
        y[..n].copy_from_slice(ctx.z(0));
        for q in 0..n {
            y[n + (p + q) * n + q] = T::one();
        }
        self.sens.clear();
        self.sens.extend_from_slice(&y[n..]);
        self.work.size(n, p, use_jvp || block);
        let mut sys = Guarded::new(SensSys {
            d: dynamics,
            theta: &ctx.theta,
            n,
            p,
            block,
            use_jvp,
            w: &mut self.work,
            njvp: 0,
            nvjp: 0,
        });
        let mut opts = ctx.options.clone();
        if let Tolerance::PerComponent(_) = opts.rtol {
            opts.rtol = Tolerance::Scalar(T::from_f64_const(1e-6));
        }
        if let Tolerance::PerComponent(_) = opts.atol {
            opts.atol = Tolerance::Scalar(T::from_f64_const(1e-9));
        }
        let nt = ctx.ts.len();
        if ctx.dense_path(true) && nt >= 2 {
            // One integration over [t_0, t_N]; `[z, S]` at every output time from the
            // dense output of the step that passes it.
            let dir = if ctx.ts[nt - 1] > ctx.ts[0] {
                T::one()
            } else {
                -T::one()
            };
            let yi = &mut self.yi;
            yi.clear();
            yi.resize(m, T::zero());
            let (ts, zs, sens) = (&ctx.ts, &mut ctx.zs, &mut self.sens);
            let mut next = 1usize;
            let st = integrate(method, &mut sys, ts[0], y, ts[nt - 1], &opts, |st, sys| {
                while next < nt && (ts[next] - st.t()) * dir <= T::zero() {
                    let r = st.interpolate(as_dyn(sys), ts[next], yi);
                    if let Some(e) = sys.take_err() {
                        return Err(e);
                    }
                    r?;
                    zs.extend_from_slice(&yi[..n]);
                    sens.extend_from_slice(&yi[n..]);
                    next += 1;
                }
                Ok(())
            })?;
            add_stats(&mut ctx.stats.forward, st.stats());
        } else {
            for i in 1..nt {
                let (t0, t1) = (ctx.ts[i - 1], ctx.ts[i]);
                let st = integrate(method, &mut sys, t0, y, t1, &opts, |_, _| Ok(()))?;
                add_stats(&mut ctx.stats.forward, st.stats());
                if let Some(h) = st.next_h() {
                    opts.first_step = Some(h.abs());
                }
                y.copy_from_slice(st.y());
                ctx.zs.extend_from_slice(&y[..n]);
                self.sens.extend_from_slice(&y[n..]);
            }
        }
        ctx.stats.jvp = sys.rhs.njvp;
        ctx.stats.backward_vjp = sys.rhs.nvjp;
        self.vjp = sys.rhs.nvjp;
        let sz = core::mem::size_of::<T>();
        ctx.stats.peak_bytes = vec_bytes(&ctx.zs)
            + vec_bytes(&self.sens)
            + stepper_bytes::<T>(method, m)
            + (2 * self.work.jz.len() + self.work.jth.len() + 2 * p) * sz;
        Ok(())
    }

    fn backward(
        &mut self,
        ctx: &mut Context<T>,
        dynamics: &mut dyn Vjp<T>,
        dl_dz: &[T],
        grads: &mut Gradients<T>,
    ) -> Result<usize> {
        let (n, p) = (ctx.n, ctx.p);
        let cols = p + n;
        let nt = ctx.ts.len();
        // The Jacobians' VJPs were spent in the forward solve.
        ctx.stats.backward_vjp = self.vjp;
        for i in 0..nt {
            let g = &dl_dz[i * n..(i + 1) * n];
            let s = &self.sens[i * n * cols..(i + 1) * n * cols];
            for col in 0..cols {
                let d: T = g
                    .iter()
                    .zip(&s[col * n..(col + 1) * n])
                    .map(|(a, b)| *a * *b)
                    .sum();
                if col < p {
                    grads.theta[col] += d;
                } else {
                    grads.z0[col - p] += d;
                }
            }
        }
        if ctx.time_grads {
            ctx.time_gradients(dynamics, dl_dz, grads)?;
        }
        if nt >= 2 {
            self.a.clear();
            self.a
                .extend(grads.z0.iter().zip(&dl_dz[..n]).map(|(x, g)| *x - *g));
            grads.ts[0] = ctx.t0_gradient(dynamics, &self.a)?;
        }
        Ok(vec_bytes(&self.sens))
    }

    fn box_clone(&self) -> Box<dyn ModeImpl<T>> {
        Box::new(self.clone())
    }
}

/// Scratch of [`SensSys`]: unit vectors for the JVP columns, or the explicit Jacobians.
#[derive(Debug, Clone)]
struct SensWork<T> {
    e_theta: Vec<T>,
    zeros_theta: Vec<T>,
    /// `∂f/∂z` (`n × n`, row-major; empty with JVPs).
    jz: Vec<T>,
    /// `∂f/∂z` column-major (column `q` contiguous), for the column updates.
    jz_t: Vec<T>,
    /// Rows `lo..hi` outside which column `q` of `∂f/∂z` is zero: a batch of independent
    /// rows has a block-diagonal `∂f/∂z`, and its products cost `O(n d)` per column
    /// instead of `O(n²)`.
    nonzero: Vec<(usize, usize)>,
    /// `∂f/∂θ` (`n × P`, row-major; empty with JVPs).
    jth: Vec<T>,
    e_n: Vec<T>,
}

impl<T: Real> SensWork<T> {
    fn size(&mut self, n: usize, p: usize, use_jvp: bool) {
        let (jz, jth) = if use_jvp { (0, 0) } else { (n * n, n * p) };
        self.nonzero.clear();
        self.nonzero.resize(if use_jvp { 0 } else { n }, (0, 0));
        for (v, len) in [
            (&mut self.e_theta, p),
            (&mut self.zeros_theta, p),
            (&mut self.jz, jz),
            (&mut self.jz_t, jz),
            (&mut self.jth, jth),
            (&mut self.e_n, n),
        ] {
            v.clear();
            v.resize(len, T::zero());
        }
    }
}

/// `[z, S_θ, S_z0]` with `Ṡ = ∂f/∂z S + ∂f/∂θ` (JVPs, or explicit Jacobians from VJPs).
struct SensSys<'a, T: Real> {
    d: &'a mut dyn Vjp<T>,
    theta: &'a [T],
    n: usize,
    p: usize,
    /// One [`Vjp::sensitivity_rhs`] call per evaluation.
    block: bool,
    use_jvp: bool,
    w: &'a mut SensWork<T>,
    njvp: usize,
    nvjp: usize,
}

impl<T: Real> TryRhs<T> for SensSys<'_, T> {
    fn try_rhs(&mut self, t: T, y: &[T], dy: &mut [T]) -> Result<()> {
        let (n, p) = (self.n, self.p);
        let cols = n + p;
        let w = &mut *self.w;
        let (z, s) = y.split_at(n);
        let (dz, ds) = dy.split_at_mut(n);
        if self.block {
            return self.d.sensitivity_rhs(t, z, self.theta, s, dz, ds);
        }
        self.d.eval(t, z, self.theta, dz)?;
        if self.use_jvp {
            for col in 0..cols {
                let sc = &s[col * n..(col + 1) * n];
                let out = &mut ds[col * n..(col + 1) * n];
                if col < p {
                    w.e_theta[col] = T::one();
                    let r = self.d.jvp(t, z, self.theta, sc, &w.e_theta, out);
                    w.e_theta[col] = T::zero();
                    r?;
                } else {
                    self.d.jvp(t, z, self.theta, sc, &w.zeros_theta, out)?;
                }
            }
            self.njvp += cols;
        } else {
            if self.d.has_jacobians() {
                self.d.jacobians(t, z, self.theta, &mut w.jz, &mut w.jth)?;
            } else {
                for r in 0..n {
                    w.e_n[r] = T::one();
                    let res = self.d.vjp(
                        t,
                        z,
                        self.theta,
                        &w.e_n,
                        &mut w.jz[r * n..(r + 1) * n],
                        &mut w.jth[r * p..(r + 1) * p],
                    );
                    w.e_n[r] = T::zero();
                    res?;
                }
            }
            self.nvjp += n;
            // Column q of ∂f/∂z, contiguous, and the rows where it can be non-zero.
            for q in 0..n {
                let col = &mut w.jz_t[q * n..(q + 1) * n];
                for (r, c) in col.iter_mut().enumerate() {
                    *c = w.jz[r * n + q];
                }
                let lo = col.iter().position(|c| *c != T::zero()).unwrap_or(0);
                let hi = col
                    .iter()
                    .rposition(|c| *c != T::zero())
                    .map_or(0, |h| h + 1);
                w.nonzero[q] = (lo, hi.max(lo));
            }
            // out = ∂f/∂θ_col + Σ_q (∂f/∂z)_{:, q} S_{q, col}, accumulated in the order
            // q = 0, 1, … per entry; the skipped terms are exact zeros.
            for col in 0..cols {
                let sc = &s[col * n..(col + 1) * n];
                let out = &mut ds[col * n..(col + 1) * n];
                if col < p {
                    for (r, o) in out.iter_mut().enumerate() {
                        *o = w.jth[r * p + col];
                    }
                } else {
                    out.fill(T::zero());
                }
                for (q, (&v, &(lo, hi))) in sc.iter().zip(&w.nonzero).enumerate() {
                    let jc = &w.jz_t[q * n + lo..q * n + hi];
                    for (o, j) in out[lo..hi].iter_mut().zip(jc) {
                        *o += *j * v;
                    }
                }
            }
        }
        Ok(())
    }
}
