//! The gradient modes, one type each behind [`ModeImpl`]: each owns what its forward solve
//! records and its backward pass. [`crate::AdjointSolver`] validates the inputs, keeps the
//! shared [`Context`] (method, options, output times, states, θ, statistics) and
//! dispatches to the mode built by [`build`] from the public [`GradientMode`].
//!
//! A new mode is a new file here implementing [`ModeImpl`], a [`GradientMode`] variant and
//! one arm in [`build`].

mod backsolve;
mod checkpointed;
mod direct;
mod forward;

use core::fmt::Debug;

use ode_solvers::{Integrator, Method, OdeSystem, Options, Stats};

use crate::Real;
use crate::dynamics::Vjp;
use crate::error::Result;
use crate::integrate::{add_stats, as_dyn, eval_sys, integrate, stepper_bytes, vec_bytes};
use crate::solver::{GradStats, GradientMode, Gradients};

/// One gradient mode: its recording of the forward solve and its backward pass.
///
/// The dynamics come as `&mut dyn Vjp<T>`, so each mode is compiled once per float type.
pub(crate) trait ModeImpl<T: Real>: Debug + Send + Sync {
    /// Checks what the mode needs of the method and the dynamics, before anything is
    /// solved or cleared.
    fn check(&self, method: Method, options: &Options<T>, dynamics: &dyn Vjp<T>) -> Result<()> {
        let _ = (method, options, dynamics);
        Ok(())
    }

    /// The forward solve from `ctx.zs` (`z0`, the one state there) through every output
    /// time: appends the states to `ctx.zs`, counts into `ctx.stats` (zeroed), sets
    /// `ctx.stats.peak_bytes` and records what the backward pass needs.
    fn forward(&mut self, ctx: &mut Context<T>, dynamics: &mut dyn Vjp<T>) -> Result<()>;

    /// The backward pass after a successful [`ModeImpl::forward`]: adds the gradients into
    /// `grads` (zeroed, sized), counts into `ctx.stats` (backward counters zeroed) and
    /// returns the largest number of bytes it held.
    fn backward(
        &mut self,
        ctx: &mut Context<T>,
        dynamics: &mut dyn Vjp<T>,
        dl_dz: &[T],
        grads: &mut Gradients<T>,
    ) -> Result<usize>;

    /// A boxed copy (for `Clone` of the solver).
    fn box_clone(&self) -> Box<dyn ModeImpl<T>>;
}

impl<T: Real> Clone for Box<dyn ModeImpl<T>> {
    fn clone(&self) -> Self {
        self.box_clone()
    }
}

/// The mode object of `mode` (empty buffers; they grow on use and are reused).
pub(crate) fn build<T: Real>(mode: &GradientMode<T>) -> Box<dyn ModeImpl<T>> {
    match mode {
        GradientMode::Checkpointed {
            checkpoints,
            backward,
        } => Box::new(checkpointed::Checkpointed::new(
            *checkpoints,
            backward.clone(),
        )),
        GradientMode::Backsolve { backward } => {
            Box::new(backsolve::Backsolve::new(backward.clone()))
        }
        GradientMode::Direct => Box::new(direct::Direct::default()),
        GradientMode::Forward => Box::new(forward::Forward::new(false)),
        GradientMode::ForwardJvp => Box::new(forward::Forward::new(true)),
    }
}

/// What every mode shares: the forward solver, the recorded outputs and the statistics.
#[derive(Debug, Clone)]
pub(crate) struct Context<T> {
    pub(crate) method: Method,
    pub(crate) options: Options<T>,
    /// State length.
    pub(crate) n: usize,
    /// Parameter count.
    pub(crate) p: usize,
    /// Output times.
    pub(crate) ts: Vec<T>,
    /// States at every output time, row-major.
    pub(crate) zs: Vec<T>,
    /// Parameters of the forward solve.
    pub(crate) theta: Vec<T>,
    pub(crate) stats: GradStats,
    /// Scratch of length `n`.
    work: Vec<T>,
}

impl<T: Real> Context<T> {
    pub(crate) fn new(method: Method, options: Options<T>) -> Self {
        Context {
            method,
            options,
            n: 0,
            p: 0,
            ts: Vec::new(),
            zs: Vec::new(),
            theta: Vec::new(),
            stats: GradStats::default(),
            work: Vec::new(),
        }
    }

    /// The recorded state at output time `i`.
    pub(crate) fn z(&self, i: usize) -> &[T] {
        &self.zs[i * self.n..(i + 1) * self.n]
    }

    /// `true` when the output times increase (or there is only one).
    pub(crate) fn increasing(&self) -> bool {
        self.ts.len() < 2 || self.ts[1] > self.ts[0]
    }

    /// The plain forward solve (`f` alone), restarted at every output time with the step
    /// size carried over; `rec` keeps what its mode needs.
    pub(crate) fn solve_plain(
        &mut self,
        dynamics: &mut dyn Vjp<T>,
        rec: &mut dyn Recorder<T>,
    ) -> Result<()> {
        let (method, n) = (self.method, self.n);
        let mut sys = eval_sys(dynamics, &self.theta);
        let mut opts = self.options.clone();
        let mut peak_extra = 0usize;
        for i in 1..self.ts.len() {
            let (t0, t1) = (self.ts[i - 1], self.ts[i]);
            rec.interval(opts.first_step);
            let mut count = 0usize;
            let y0 = &self.zs[(i - 1) * n..i * n];
            let st = integrate(method, &mut sys, t0, y0, t1, &opts, |st, sys| {
                count += 1;
                rec.step(i, count, st, as_dyn(sys))
            })?;
            add_stats(&mut self.stats.forward, st.stats());
            if let Some(h) = st.next_h() {
                opts.first_step = Some(h.abs());
            }
            self.zs.extend_from_slice(st.y());
            peak_extra = peak_extra.max(stepper_bytes::<T>(method, n));
        }
        rec.finish();
        self.stats.peak_bytes = vec_bytes(&self.zs) + rec.bytes() + peak_extra;
        Ok(())
    }

    /// Adds the steps of one backward integration `s` and its `nvjp` VJPs to the
    /// statistics.
    pub(crate) fn count_backward(&mut self, s: Stats, nvjp: usize) {
        self.stats.backward_vjp += nvjp;
        self.stats.backward_accepted += s.accepted;
        self.stats.backward_rejected += s.rejected;
    }

    /// `dL/dt_i = g_iᵀ f(t_i, z_i)` for `i ≥ 1` (shared by the continuous modes).
    pub(crate) fn time_gradients(
        &mut self,
        dynamics: &mut dyn Vjp<T>,
        dl_dz: &[T],
        grads: &mut Gradients<T>,
    ) -> Result<()> {
        let n = self.n;
        self.work.resize(n, T::zero());
        for i in 1..self.ts.len() {
            let g = &dl_dz[i * n..(i + 1) * n];
            if g.iter().all(|x| *x == T::zero()) {
                continue;
            }
            dynamics.eval(
                self.ts[i],
                &self.zs[i * n..(i + 1) * n],
                &self.theta,
                &mut self.work,
            )?;
            self.stats.backward_nfe += 1;
            grads.ts[i] = g.iter().zip(&self.work).map(|(a, b)| *a * *b).sum();
        }
        Ok(())
    }

    /// `dL/dt_0 = −a(t_0)ᵀ f(t_0, z_0)` with `a` excluding `g_0`.
    pub(crate) fn t0_gradient(&mut self, dynamics: &mut dyn Vjp<T>, a: &[T]) -> Result<T> {
        let n = self.n;
        self.work.resize(n, T::zero());
        dynamics.eval(self.ts[0], &self.zs[..n], &self.theta, &mut self.work)?;
        self.stats.backward_nfe += 1;
        Ok(-a.iter().zip(&self.work).map(|(x, y)| *x * *y).sum::<T>())
    }
}

/// What a mode keeps of [`Context::solve_plain`] (every hook defaults to keeping nothing).
pub(crate) trait Recorder<T: Real> {
    /// At the start of each output interval, whose first step is `first_step` (`None`:
    /// the initial-step estimate).
    fn interval(&mut self, first_step: Option<T>) {
        let _ = first_step;
    }
    /// After each accepted step: of output interval `i - 1 → i`, the `count`-th in it.
    fn step(
        &mut self,
        i: usize,
        count: usize,
        st: &mut Integrator<T>,
        sys: &mut dyn OdeSystem<T>,
    ) -> Result<()> {
        let _ = (i, count, st, sys);
        Ok(())
    }
    /// After the last interval.
    fn finish(&mut self) {}
    /// Bytes held by the recording.
    fn bytes(&self) -> usize {
        0
    }
}

/// Records nothing.
impl<T: Real> Recorder<T> for () {}
