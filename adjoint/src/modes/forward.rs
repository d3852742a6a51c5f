//! Forward sensitivities: `[z, S_θ, S_z0]` integrated together with
//! `Ṡ = ∂f/∂z S + ∂f/∂θ`, the sensitivities recorded at every output time; the backward
//! pass is a contraction with `dL/dz(tᵢ)`.

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
        let use_jvp = self.jvp_only || !dynamics.prefers_jacobians();
        let y = &mut self.y;
        y.clear();
        y.resize(m, T::zero());
        y[..n].copy_from_slice(ctx.z(0));
        for q in 0..n {
            y[n + (p + q) * n + q] = T::one();
        }
        self.sens.clear();
        self.sens.extend_from_slice(&y[n..]);
        self.work.size(n, p, use_jvp);
        let mut sys = Guarded::new(SensSys {
            d: dynamics,
            theta: &ctx.theta,
            n,
            p,
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
            + (self.work.jz.len() + self.work.jth.len() + 2 * p) * sz;
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
        ctx.time_gradients(dynamics, dl_dz, grads)?;
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
    /// `∂f/∂θ` (`n × P`, row-major; empty with JVPs).
    jth: Vec<T>,
    e_n: Vec<T>,
}

impl<T: Real> SensWork<T> {
    fn size(&mut self, n: usize, p: usize, use_jvp: bool) {
        let (jz, jth) = if use_jvp { (0, 0) } else { (n * n, n * p) };
        for (v, len) in [
            (&mut self.e_theta, p),
            (&mut self.zeros_theta, p),
            (&mut self.jz, jz),
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
            self.nvjp += n;
            for col in 0..cols {
                let sc = &s[col * n..(col + 1) * n];
                let out = &mut ds[col * n..(col + 1) * n];
                for r in 0..n {
                    let row = &w.jz[r * n..(r + 1) * n];
                    let mut acc = if col < p {
                        w.jth[r * p + col]
                    } else {
                        T::zero()
                    };
                    for q in 0..n {
                        acc += row[q] * sc[q];
                    }
                    out[r] = acc;
                }
            }
        }
        Ok(())
    }
}
