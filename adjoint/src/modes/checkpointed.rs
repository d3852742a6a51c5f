//! The checkpointed adjoint: `[a, a_θ]` integrated backwards against the interpolated
//! forward trajectory, kept as every accepted step's dense output or as a budget of states
//! from which each segment's dense output is recomputed.

use ode_solvers::{Integrator, Method, OdeSystem, Options, Tableau};

use crate::Real;
use crate::dense_store::DenseStore;
use crate::dynamics::Vjp;
use crate::error::{Error, Result};
use crate::integrate::{
    Guarded, TryRhs, backward_solver, check_backward, eval_sys, integrate, run_to_end,
    scale_adjoint_atol, start, stepper_bytes, vec_bytes,
};
use crate::modes::{Context, ModeImpl, Recorder};
use crate::solver::{BackwardSolver, Checkpoints, Gradients};

/// [`crate::GradientMode::Checkpointed`].
#[derive(Debug, Clone)]
pub(crate) struct Checkpointed<T> {
    checkpoints: Checkpoints,
    backward: BackwardSolver<T>,
    // Every step: the dense steps.
    dense: DenseStore<T>,
    // Budget: the first step size of each forward integration (0: none), the checkpoints
    // (time, next step size, integration) and their states, and the current stride.
    h0: Vec<T>,
    ck: Vec<(T, T, usize)>,
    ck_z: Vec<T>,
    ck_stride: usize,
    /// Dense output of one recomputed segment (budget).
    seg_dense: DenseStore<T>,
    // Backward scratch: the adjoint state `[a, a_θ]`, the interpolated forward state, and
    // for the quadrature of `a_θ` the weights `b`, the ring of per-call `aᵀ∂f/∂θ` and the
    // first stage's.
    y: Vec<T>,
    zb: Vec<T>,
    b: Vec<T>,
    ring: Vec<T>,
    stage0: Vec<T>,
}

impl<T: Real> Checkpointed<T> {
    pub(crate) fn new(checkpoints: Checkpoints, backward: BackwardSolver<T>) -> Self {
        Checkpointed {
            checkpoints,
            backward,
            dense: DenseStore::default(),
            h0: Vec::new(),
            ck: Vec::new(),
            ck_z: Vec::new(),
            ck_stride: 1,
            seg_dense: DenseStore::default(),
            y: Vec::new(),
            zb: Vec::new(),
            b: Vec::new(),
            ring: Vec::new(),
            stage0: Vec::new(),
        }
    }
}

impl<T: Real> Recorder<T> for Checkpointed<T> {
    fn interval(&mut self, first_step: Option<T>) {
        self.h0.push(first_step.unwrap_or(T::zero()));
    }

    fn step(
        &mut self,
        count: usize,
        st: &mut Integrator<T>,
        sys: &mut dyn OdeSystem<T>,
    ) -> Result<()> {
        let k = match self.checkpoints {
            Checkpoints::EveryStep => {
                self.dense.push(st.dense_output(sys)?);
                return Ok(());
            }
            Checkpoints::Budget(k) => k,
        };
        // Checkpoint the state at the end of every `stride`-th step (not the integration's
        // end, which is an output state already).
        if st.is_done() || !count.is_multiple_of(self.ck_stride) {
            return Ok(());
        }
        let (ck, ck_z) = (&mut self.ck, &mut self.ck_z);
        let n = st.y().len();
        if ck.len() >= k {
            // Thin: keep every other checkpoint, double the stride.
            let mut w = 0;
            for r in (0..ck.len()).step_by(2) {
                ck[w] = ck[r];
                ck_z.copy_within(r * n..(r + 1) * n, w * n);
                w += 1;
            }
            ck.truncate(w);
            ck_z.truncate(w * n);
            self.ck_stride *= 2;
        }
        if count.is_multiple_of(self.ck_stride) {
            ck.push((st.t(), st.next_h().unwrap_or(T::zero()), self.h0.len() - 1));
            ck_z.extend_from_slice(st.y());
        }
        Ok(())
    }

    fn bytes(&self) -> usize {
        self.dense.bytes(0, self.dense.len()) + vec_bytes(&self.ck_z)
    }
}

impl<T: Real> ModeImpl<T> for Checkpointed<T> {
    fn check(&self, method: Method, options: &Options<T>, _dynamics: &dyn Vjp<T>) -> Result<()> {
        if self.checkpoints == Checkpoints::Budget(0) {
            return Err(Error::InvalidOption {
                name: "Checkpoints::Budget",
                value: 0.0,
                reason: "give at least one checkpoint (or use Checkpoints::EveryStep)",
            });
        }
        check_backward(method, options, &self.backward)
    }

    fn forward(&mut self, ctx: &mut Context<T>, dynamics: &mut dyn Vjp<T>) -> Result<()> {
        self.dense.clear(ctx.n);
        self.h0.clear();
        self.ck.clear();
        self.ck_z.clear();
        self.ck_stride = 1;
        let dense = ctx.dense_path(true);
        ctx.solve_plain(dynamics, self, dense)
    }

    fn backward(
        &mut self,
        ctx: &mut Context<T>,
        dynamics: &mut dyn Vjp<T>,
        dl_dz: &[T],
        grads: &mut Gradients<T>,
    ) -> Result<usize> {
        let (n, p) = (ctx.n, ctx.p);
        let m = n + p;
        let bwd = &self.backward;
        let (bmethod, mut opts) = backward_solver(ctx.method, &ctx.options, bwd, Some(0..n));
        // Every component (`a`, and `a_θ` when it is state) is linear in the seeds.
        scale_adjoint_atol(&mut opts, bwd, &dl_dz[n..], m, 0..m);
        if ctx.time_grads {
            ctx.time_gradients(dynamics, dl_dz, grads)?;
        }
        let nt = ctx.ts.len();
        // Adjoint state [a, a_θ].
        let y = &mut self.y;
        y.clear();
        y.resize(m, T::zero());
        if nt >= 2 {
            // a(t_N) = g_N (with one output time, g_0 enters dL/dz0 once, below).
            y[..n].copy_from_slice(&dl_dz[(nt - 1) * n..]);
        }
        let forward_dir = ctx.increasing();
        let seg_dense = &mut self.seg_dense;
        seg_dense.clear(n);
        self.zb.clear();
        self.zb.resize(n, T::zero());
        let mut peak = 0usize;
        // With the seminorm, a_θ is not error-controlled, so it need not be integrator
        // state: it is accumulated as the RK quadrature of the accepted stages.
        // (RK backward methods only: the quadrature uses the tableau's weights.)
        let quad_tab = bmethod.tableau().filter(|_| bwd.seminorm);
        self.b.clear();
        self.ring.clear();
        self.stage0.clear();
        if let Some(tab) = quad_tab {
            self.b.extend(tab.b.iter().map(|&x| T::from_f64_const(x)));
            self.ring.resize((tab.stages + 1) * p, T::zero());
            self.stage0.resize(p, T::zero());
        }
        let mut fwd_opts = ctx.options.clone();
        let mut seg_opts = opts.clone();
        let dir = if forward_dir { T::one() } else { -T::one() };
        // The next output (going backwards) whose jump `g_k` is still to be added (t_N's is
        // in `y` already): the adjoint is integrated in pieces between output times, each
        // a restart with the step size carried over from the piece before.
        let mut next_out = nt.saturating_sub(2);
        let mut carry: Option<T> = None;
        for (ia, ib) in ctx.integrations().rev() {
            // Integration index of the recording (checkpoints, first steps).
            let j = if ctx.dense_outputs { 0 } else { ia };
            let (ta, tb) = (ctx.ts[ia], ctx.ts[ib]);
            let ck_lo = self.ck.partition_point(|c| c.2 < j);
            let ck_hi = self.ck.partition_point(|c| c.2 < j + 1);
            let n_seg = match self.checkpoints {
                Checkpoints::EveryStep => 1,
                Checkpoints::Budget(_) => 1 + ck_hi - ck_lo,
            };
            for s in (0..n_seg).rev() {
                // Segment [sa, sb] and the dense output over it.
                let (sa, sb, store): (T, T, &DenseStore<T>) = match self.checkpoints {
                    Checkpoints::EveryStep => (ta, tb, &self.dense),
                    Checkpoints::Budget(_) => {
                        let (sa, h, za) = if s == 0 {
                            (ta, self.h0[j], ctx.z(ia))
                        } else {
                            let c = ck_lo + s - 1;
                            (self.ck[c].0, self.ck[c].1, &self.ck_z[c * n..(c + 1) * n])
                        };
                        let sb = if s + 1 < n_seg {
                            self.ck[ck_lo + s].0
                        } else {
                            tb
                        };
                        fwd_opts.first_step = if h != T::zero() { Some(h.abs()) } else { None };
                        let nfe = recompute(ctx, dynamics, (sa, za, sb), &fwd_opts, seg_dense)?;
                        ctx.stats.backward_nfe += nfe;
                        (sa, sb, &*seg_dense)
                    }
                };
                let len = store.len();
                let dense_bytes = store.bytes(0, len);
                let mut cur = sb;
                loop {
                    // This piece ends at the next output strictly inside the segment, or at
                    // its start.
                    let stop = (next_out >= 1
                        && (ctx.ts[next_out] - sa) * dir > T::zero()
                        && (sb - ctx.ts[next_out]) * dir > T::zero())
                    .then_some(next_out);
                    let t_stop = stop.map_or(sa, |k| ctx.ts[k]);
                    // First backward step: the caller's, else the one carried over, else the
                    // larger of the last two forward steps before `cur` (the last is often
                    // clipped at an output time; saves the initial-step heuristic).
                    seg_opts.first_step = opts
                        .first_step
                        .or(carry)
                        .or_else(|| {
                            let k = store.locate(0, len, cur, forward_dir);
                            (k.saturating_sub(1)..=k)
                                .map(|k| store.h(k).abs())
                                .reduce(T::max)
                        })
                        .filter(|h| *h > T::zero());
                    let ring_bytes = self.ring.len() * core::mem::size_of::<T>();
                    let ring = quad_tab.map(|_| (&mut self.ring[..], p));
                    let mut sys = Guarded::new(CheckpointSys {
                        d: &mut *dynamics,
                        theta: &ctx.theta,
                        store,
                        range: (0, len),
                        zb: &mut self.zb,
                        forward_dir,
                        n,
                        nvjp: 0,
                        ring,
                    });
                    let st = if let Some(tab) = quad_tab {
                        peak = peak.max(dense_bytes + stepper_bytes::<T>(bmethod, n) + ring_bytes);
                        let (a, ath) = y.split_at_mut(n);
                        let st = quadrature_adjoint(
                            bmethod,
                            tab,
                            &mut sys,
                            (cur, a, t_stop),
                            &seg_opts,
                            &self.b,
                            &mut self.stage0,
                            ath,
                        )?;
                        a.copy_from_slice(st.y());
                        st
                    } else {
                        peak = peak.max(dense_bytes + stepper_bytes::<T>(bmethod, m));
                        let st =
                            integrate(bmethod, &mut sys, cur, y, t_stop, &seg_opts, |_, _| Ok(()))?;
                        y.copy_from_slice(st.y());
                        st
                    };
                    ctx.count_backward(st.stats(), sys.rhs.nvjp);
                    carry = carried_step(carry, &st);
                    match stop {
                        Some(k) => {
                            for (a, g) in y[..n].iter_mut().zip(&dl_dz[k * n..(k + 1) * n]) {
                                *a += *g;
                            }
                            next_out -= 1;
                            cur = t_stop;
                        }
                        None => break,
                    }
                }
                // Jumps of outputs at the segment's start (an integration's start on the
                // grid path, or a checkpoint that fell on an output time).
                while next_out >= 1 && ctx.ts[next_out] == sa {
                    for (a, g) in y[..n]
                        .iter_mut()
                        .zip(&dl_dz[next_out * n..(next_out + 1) * n])
                    {
                        *a += *g;
                    }
                    next_out -= 1;
                }
            }
        }
        if nt >= 2 {
            grads.ts[0] = ctx.t0_gradient(dynamics, &y[..n])?;
        }
        for k in 0..n {
            grads.z0[k] = y[k] + dl_dz[k];
        }
        grads.theta.copy_from_slice(&y[n..]);
        Ok(peak + vec_bytes(&ctx.zs) + vec_bytes(&self.ck_z) + 2 * m * core::mem::size_of::<T>())
    }

    fn box_clone(&self) -> Box<dyn ModeImpl<T>> {
        Box::new(self.clone())
    }
}

/// The step size to start the next backward piece with after integration `st`: its
/// proposal, or the one carried so far when larger and `st` took a single step (clipped at
/// an output time, so its proposal says little about the step the solution allows).
pub(crate) fn carried_step<T: Real>(carry: Option<T>, st: &Integrator<T>) -> Option<T> {
    let h = st.next_h()?.abs();
    Some(match carry {
        Some(c) if st.stats().accepted <= 1 => c.max(h),
        _ => h,
    })
}

/// Recomputes the dense output of the forward solve from `(sa, za)` to `sb` into `out`;
/// returns the evaluations spent.
fn recompute<T: Real>(
    ctx: &Context<T>,
    dynamics: &mut dyn Vjp<T>,
    (sa, za, sb): (T, &[T], T),
    opts: &Options<T>,
    out: &mut DenseStore<T>,
) -> Result<usize> {
    out.clear(ctx.n);
    let mut sys = eval_sys(dynamics, &ctx.theta);
    let st = integrate(ctx.method, &mut sys, sa, za, sb, opts, |st, sys| {
        out.push(st.dense_output(sys)?);
        Ok(())
    })?;
    Ok(st.stats().nfe)
}

/// The checkpointed adjoint `[a, a_θ]` against the interpolated forward state.
struct CheckpointSys<'a, T: Real> {
    d: &'a mut dyn Vjp<T>,
    theta: &'a [T],
    store: &'a DenseStore<T>,
    range: (usize, usize),
    zb: &'a mut [T],
    forward_dir: bool,
    n: usize,
    nvjp: usize,
    /// Quadrature mode: the state is `a` alone and `aᵀ∂f/∂θ` of each call goes to the
    /// ring slot `nvjp % ring_len` (`ring` holds `ring_len × P`).
    ring: Option<(&'a mut [T], usize)>,
}

impl<T: Real> CheckpointSys<'_, T> {
    /// The ring of per-call `aᵀ∂f/∂θ` (empty outside quadrature mode).
    fn ring(&self) -> &[T] {
        self.ring.as_ref().map(|r| &r.0[..]).unwrap_or(&[])
    }
}

impl<T: Real> TryRhs<T> for CheckpointSys<'_, T> {
    #[inline]
    fn try_rhs(&mut self, t: T, y: &[T], dy: &mut [T]) -> Result<()> {
        let k = self
            .store
            .locate(self.range.0, self.range.1, t, self.forward_dir);
        self.store.eval(k, t, self.zb);
        let a = &y[..self.n];
        let call = self.nvjp;
        self.nvjp += 1;
        match &mut self.ring {
            Some((ring, p)) => {
                let p = *p;
                let slots = ring.len() / p.max(1);
                let slot = if p == 0 { 0 } else { call % slots };
                let dth = &mut ring[slot * p..(slot + 1) * p];
                self.d.vjp(t, self.zb, self.theta, a, dy, dth)?;
            }
            None => {
                let (dz, dth) = dy.split_at_mut(self.n);
                self.d.vjp(t, self.zb, self.theta, a, dz, dth)?;
            }
        }
        for v in dy.iter_mut() {
            *v = -*v;
        }
        Ok(())
    }
}

/// The checkpointed adjoint with `a_θ` as a quadrature: integrates `a` alone from `t0` to
/// `t1` (`span = (t0, a(t0), t1)`) and adds `h Σⱼ bⱼ gⱼ` to `a_θ` after each accepted step,
/// `gⱼ = −aᵀ∂f/∂θ` at stage `j` — exactly what the stepper would compute for `a_θ` as
/// state, without its linear algebra on `P` entries per stage and without error control
/// on it.
///
/// Relies on the documented call order of [`ode_solvers::RkStepper`]: `new` evaluates
/// stage 0 first (then possibly one `HINIT` probe); each attempt evaluates stages `1..s`;
/// a non-FSAL method evaluates `f(t_new, y_new)` on acceptance, which (like an FSAL
/// method's last stage) is the next step's stage 0.
#[allow(clippy::too_many_arguments)]
fn quadrature_adjoint<T: Real>(
    method: Method,
    tab: &'static Tableau,
    sys: &mut Guarded<CheckpointSys<'_, T>>,
    (t0, a0, t1): (T, &[T], T),
    opts: &Options<T>,
    b: &[T],
    stage0: &mut [T],
    ath: &mut [T],
) -> Result<Integrator<T>> {
    let s = tab.stages;
    let p = ath.len();
    let slots = s + 1;
    let mut st = start(method, sys, t0, a0, t1, opts)?;
    let slot = |call: usize| -> core::ops::Range<usize> {
        let k = call % slots;
        k * p..(k + 1) * p
    };
    stage0.copy_from_slice(&sys.rhs.ring()[slot(0)]);
    run_to_end(&mut st, sys, |st, sys| {
        let Some(info) = st.last_step() else {
            return Ok(());
        };
        let h = info.h;
        let c = sys.rhs.nvjp;
        let first = if tab.fsal { c - (s - 1) } else { c - s };
        let ring = sys.rhs.ring();
        // g_j = −vjp_θ: subtract h b_j vjp_θ.
        if b[0] != T::zero() {
            let w = h * b[0];
            for (x, g) in ath.iter_mut().zip(stage0.iter()) {
                *x -= w * *g;
            }
        }
        for j in 1..s {
            if b[j] == T::zero() {
                continue;
            }
            let w = h * b[j];
            for (x, g) in ath.iter_mut().zip(&ring[slot(first + j - 1)]) {
                *x -= w * *g;
            }
        }
        stage0.copy_from_slice(&ring[slot(c - 1)]);
        Ok(())
    })?;
    Ok(st)
}
