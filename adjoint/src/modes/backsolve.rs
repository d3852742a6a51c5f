//! The backsolve adjoint (Chen et al. 2018, Algorithm 1): the augmented state
//! `[z, a, a_θ, a_t]` integrated backwards from `t_N`, `z` re-anchored to the recorded
//! output at every output time. Records nothing beyond the outputs.

use ode_solvers::{Method, Options};

use crate::Real;
use crate::dynamics::Vjp;
use crate::error::Result;
use crate::integrate::{
    Guarded, TryRhs, backward_solver, check_backward, integrate, scale_adjoint_atol, stepper_bytes,
    vec_bytes,
};
use crate::modes::checkpointed::carried_step;
use crate::modes::{Context, ModeImpl};
use crate::solver::{BackwardSolver, Gradients};

/// [`crate::GradientMode::Backsolve`].
#[derive(Debug, Clone)]
pub(crate) struct Backsolve<T> {
    backward: BackwardSolver<T>,
    /// The augmented state (backward scratch).
    y: Vec<T>,
}

impl<T> Backsolve<T> {
    pub(crate) fn new(backward: BackwardSolver<T>) -> Self {
        Backsolve {
            backward,
            y: Vec::new(),
        }
    }
}

impl<T: Real> ModeImpl<T> for Backsolve<T> {
    fn check(&self, method: Method, options: &Options<T>, _dynamics: &dyn Vjp<T>) -> Result<()> {
        check_backward(method, options, &self.backward)
    }

    fn forward(&mut self, ctx: &mut Context<T>, dynamics: &mut dyn Vjp<T>) -> Result<()> {
        let dense = ctx.dense_path(true);
        ctx.solve_plain(dynamics, &mut (), dense)
    }

    fn backward(
        &mut self,
        ctx: &mut Context<T>,
        dynamics: &mut dyn Vjp<T>,
        dl_dz: &[T],
        grads: &mut Gradients<T>,
    ) -> Result<usize> {
        let (n, p) = (ctx.n, ctx.p);
        let m = 2 * n + p + 1;
        let (bmethod, mut opts) =
            backward_solver(ctx.method, &ctx.options, &self.backward, Some(0..2 * n));
        // `[a, a_θ, a_t]` is linear in the seeds; the recomputed `z` is not.
        scale_adjoint_atol(&mut opts, &self.backward, &dl_dz[n..], m, n..m);
        ctx.time_gradients(dynamics, dl_dz, grads)?;
        let nt = ctx.ts.len();
        // Augmented state [z, a, a_θ, a_t].
        let y = &mut self.y;
        y.clear();
        y.resize(m, T::zero());
        if nt >= 2 {
            y[n..2 * n].copy_from_slice(&dl_dz[(nt - 1) * n..]);
        }
        y[m - 1] = -grads.ts[nt - 1];
        // Each output interval is a restart (z re-anchored, the adjoint's jump).
        let mut bopts = opts.clone();
        let mut carry: Option<T> = None;
        for i in (1..nt).rev() {
            let (ta, tb) = (ctx.ts[i - 1], ctx.ts[i]);
            // Re-anchor z to the stored output.
            y[..n].copy_from_slice(ctx.z(i));
            let mut sys = Guarded::new(BacksolveSys {
                d: &mut *dynamics,
                theta: &ctx.theta,
                n,
                p,
                nvjp: 0,
            });
            // The carried step only when it covers the whole interval (one clipped step, no
            // probe needed); otherwise the initial-step probe, since the jump of `a` can make
            // the proposal from before it overshoot (a rejection costs a whole step).
            bopts.first_step = opts.first_step.or(carry.filter(|h| *h >= (tb - ta).abs()));
            let st = integrate(bmethod, &mut sys, tb, y, ta, &bopts, |_, _| Ok(()))?;
            carry = carried_step(carry, &st);
            ctx.stats.backward_nfe += st.stats().nfe;
            ctx.count_backward(st.stats(), sys.rhs.nvjp);
            y.copy_from_slice(st.y());
            if i - 1 > 0 {
                for (a, g) in y[n..2 * n].iter_mut().zip(&dl_dz[(i - 1) * n..i * n]) {
                    *a += *g;
                }
                y[m - 1] -= grads.ts[i - 1];
            }
        }
        if nt >= 2 {
            grads.ts[0] = y[m - 1];
        }
        for k in 0..n {
            grads.z0[k] = y[n + k] + dl_dz[k];
        }
        grads.theta.copy_from_slice(&y[2 * n..2 * n + p]);
        Ok(vec_bytes(&ctx.zs) + stepper_bytes::<T>(bmethod, m) + m * core::mem::size_of::<T>())
    }

    fn box_clone(&self) -> Box<dyn ModeImpl<T>> {
        Box::new(self.clone())
    }
}

/// Chen et al.'s augmented state `[z, a, a_θ, a_t]`.
struct BacksolveSys<'a, T: Real> {
    d: &'a mut dyn Vjp<T>,
    theta: &'a [T],
    n: usize,
    p: usize,
    nvjp: usize,
}

impl<T: Real> TryRhs<T> for BacksolveSys<'_, T> {
    #[inline]
    fn try_rhs(&mut self, t: T, y: &[T], dy: &mut [T]) -> Result<()> {
        let (n, p) = (self.n, self.p);
        let (z, rest) = y.split_at(n);
        let a = &rest[..n];
        let (dz, rest) = dy.split_at_mut(n);
        let (da, rest) = rest.split_at_mut(n);
        let (dth, dt) = rest.split_at_mut(p);
        self.nvjp += 1;
        self.d.eval(t, z, self.theta, dz)?;
        let tau = self.d.vjp(t, z, self.theta, a, da, dth)?;
        for v in da.iter_mut().chain(dth.iter_mut()) {
            *v = -*v;
        }
        dt[0] = -tau;
        Ok(())
    }
}
