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

use ode_solvers::{Integrator, Method, OdeSystem, Options, Stats, StepControl};

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

/// The default of [`Context::residual_bytes`] (32 MiB: see
/// [`crate::AdjointSolver::set_residual_bytes`]).
pub(crate) const DEFAULT_RESIDUAL_BYTES: usize = 32 << 20;

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
    /// Whether the last forward solve took its outputs from the dense output of one
    /// integration (see [`Context::solve_plain`]).
    pub(crate) dense_outputs: bool,
    /// For every output time, the index (over the whole forward solve) of the accepted
    /// step whose end or interpolant gave its state (entry 0 unused).
    pub(crate) out_step: Vec<usize>,
    /// Whether the backward pass computes `dL/dtᵢ` (see
    /// [`crate::AdjointSolver::set_time_gradients`]).
    pub(crate) time_grads: bool,
    /// Most bytes [`crate::GradientMode::Direct`] keeps of the field's residuals (see
    /// [`crate::AdjointSolver::set_residual_bytes`]).
    pub(crate) residual_bytes: usize,
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
            dense_outputs: false,
            out_step: Vec::new(),
            time_grads: true,
            residual_bytes: DEFAULT_RESIDUAL_BYTES,
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

    /// Whether a forward solve with `method` under the options takes its outputs from the
    /// dense output of one integration over `[t_0, t_N]` (adaptive stepping) rather than
    /// restarting at every output time (fixed steps and fixed-step-only methods, which keep
    /// their grid from each output time). `interpolant_ok`: the mode can use the
    /// method's interpolant. Only interpolants accurate to within one order of the method
    /// qualify: cubic Hermite serves Bosh3 (order 3) but not Tsit5 (order 5), whose
    /// outputs would carry an interpolation error far above the tolerances.
    pub(crate) fn dense_path(&self, interpolant_ok: bool) -> bool {
        let accurate = self.method.tableau().is_none_or(|tab| {
            !matches!(tab.dense, ode_solvers::tableau::DenseKind::Hermite) || tab.order <= 3
        });
        interpolant_ok
            && accurate
            && matches!(
                StepControl::of(self.method, &self.options),
                Ok(StepControl::Adaptive)
            )
    }

    /// The plain forward solve (`f` alone); `rec` keeps what its mode needs.
    ///
    /// With `dense` (see [`Context::dense_path`]) it is one integration from `t_0` to
    /// `t_N`, every output state taken from the dense output of the step that passes it
    /// (the number of steps does not depend on the number of output times); otherwise it
    /// restarts at every output time with the step size carried over (outputs are step
    /// boundaries). Sets [`Context::dense_outputs`] and [`Context::out_step`].
    pub(crate) fn solve_plain(
        &mut self,
        dynamics: &mut dyn Vjp<T>,
        rec: &mut dyn Recorder<T>,
        dense: bool,
    ) -> Result<()> {
        let (method, n, nt) = (self.method, self.n, self.ts.len());
        self.dense_outputs = dense;
        self.out_step.clear();
        self.out_step.resize(nt, 0);
        let mut sys = eval_sys(dynamics, &self.theta);
        let mut opts = self.options.clone();
        let peak_extra = if nt >= 2 {
            stepper_bytes::<T>(method, n)
        } else {
            0
        };
        if dense && nt >= 2 {
            let Context {
                ts, zs, out_step, ..
            } = self;
            zs.resize(nt * n, T::zero());
            let dir = if ts[nt - 1] > ts[0] {
                T::one()
            } else {
                -T::one()
            };
            rec.interval(opts.first_step);
            let mut count = 0usize;
            let mut next = 1usize;
            let (z0, rest) = zs.split_at_mut(n);
            let st = integrate(method, &mut sys, ts[0], z0, ts[nt - 1], &opts, |st, sys| {
                count += 1;
                rec.step(count, st, as_dyn(sys))?;
                // Every output time this step passed, from its interpolant.
                while next < nt && (ts[next] - st.t()) * dir <= T::zero() {
                    let out = &mut rest[(next - 1) * n..next * n];
                    let r = st.interpolate(as_dyn(sys), ts[next], out);
                    if let Some(e) = sys.take_err() {
                        return Err(e);
                    }
                    r?;
                    out_step[next] = count - 1;
                    next += 1;
                }
                Ok(())
            })?;
            add_stats(&mut self.stats.forward, st.stats());
        } else {
            let mut total = 0usize;
            for i in 1..nt {
                let (t0, t1) = (self.ts[i - 1], self.ts[i]);
                rec.interval(opts.first_step);
                let mut count = 0usize;
                let y0 = &self.zs[(i - 1) * n..i * n];
                let st = integrate(method, &mut sys, t0, y0, t1, &opts, |st, sys| {
                    count += 1;
                    rec.step(count, st, as_dyn(sys))
                })?;
                total += count;
                self.out_step[i] = total.saturating_sub(1);
                add_stats(&mut self.stats.forward, st.stats());
                if let Some(h) = st.next_h() {
                    opts.first_step = Some(h.abs());
                }
                self.zs.extend_from_slice(st.y());
            }
        }
        rec.finish();
        self.stats.peak_bytes = vec_bytes(&self.zs) + rec.bytes() + peak_extra;
        Ok(())
    }

    /// The integrations of the forward solve as `(first, last)` output indices: one
    /// `(0, N)` on the dense path, `(i − 1, i)` for every output interval otherwise.
    pub(crate) fn integrations(&self) -> impl DoubleEndedIterator<Item = (usize, usize)> + use<T> {
        let nt = self.ts.len();
        let dense = self.dense_outputs;
        let count = if nt < 2 {
            0
        } else if dense {
            1
        } else {
            nt - 1
        };
        (0..count).map(move |j| if dense { (0, nt - 1) } else { (j, j + 1) })
    }

    /// Adds the steps of one backward integration `s` and its `nvjp` VJPs to the
    /// statistics.
    pub(crate) fn count_backward(&mut self, s: Stats, nvjp: usize) {
        self.stats.backward_vjp += nvjp;
        self.stats.backward_accepted += s.accepted;
        self.stats.backward_rejected += s.rejected;
    }

    /// `dL/dt_i = g_iᵀ f(t_i, z_i)` for `i ≥ 1` (shared by the continuous modes; those
    /// that do not need them skip it when `time_grads` is off).
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

    /// `dL/dt_0 = −a(t_0)ᵀ f(t_0, z_0)` with `a` excluding `g_0` (zero, with no evaluation,
    /// when time gradients are off).
    pub(crate) fn t0_gradient(&mut self, dynamics: &mut dyn Vjp<T>, a: &[T]) -> Result<T> {
        if !self.time_grads {
            return Ok(T::zero());
        }
        let n = self.n;
        self.work.resize(n, T::zero());
        dynamics.eval(self.ts[0], &self.zs[..n], &self.theta, &mut self.work)?;
        self.stats.backward_nfe += 1;
        Ok(-a.iter().zip(&self.work).map(|(x, y)| *x * *y).sum::<T>())
    }
}

/// What a mode keeps of [`Context::solve_plain`] (every hook defaults to keeping nothing).
pub(crate) trait Recorder<T: Real> {
    /// At the start of each integration (one on the dense path, one per output interval
    /// otherwise), whose first step is `first_step` (`None`: the initial-step estimate).
    fn interval(&mut self, first_step: Option<T>) {
        let _ = first_step;
    }
    /// After each accepted step, the `count`-th of the current integration.
    fn step(
        &mut self,
        count: usize,
        st: &mut Integrator<T>,
        sys: &mut dyn OdeSystem<T>,
    ) -> Result<()> {
        let _ = (count, st, sys);
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
