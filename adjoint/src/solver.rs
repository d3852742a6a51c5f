//! The forward solve and the four gradient modes.

use core::ops::Range;

use ode_solvers::{
    AdamsStepper, DenseStep, Method, OdeSystem, Options, RkStepper, SolveError, Stats, StepInfo,
    Stepper, Tableau, Tolerance,
};

use crate::Real;
use crate::dynamics::Vjp;
use crate::error::{Error, Result};

/// Where the checkpointed adjoint keeps the forward trajectory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Checkpoints {
    /// Keep the dense output of every accepted forward step (no recomputation; memory
    /// ∝ steps × state).
    #[default]
    EveryStep,
    /// Keep at most this many forward states (besides the output states); the dense output
    /// of each segment between them is recomputed during the backward pass (one extra
    /// forward solve in total; memory ∝ budget + steps / budget).
    Budget(usize),
}

/// The solver of a backward (adjoint) integration.
#[derive(Debug, Clone, PartialEq)]
pub struct BackwardSolver<T> {
    /// Method of the backward integration (`None`: the forward method).
    pub method: Option<Method>,
    /// Tolerances and limits of the backward integration (`None`: the forward options;
    /// per-component tolerances are replaced by their smallest value).
    pub options: Option<Options<T>>,
    /// Error control only on `[z, a]` (backsolve) or `a` (checkpointed), not on the
    /// parameter and time integrals (Kidger, Chen & Lyons 2021, "Hey, that's not an ODE").
    pub seminorm: bool,
}

impl<T> Default for BackwardSolver<T> {
    fn default() -> Self {
        BackwardSolver {
            method: None,
            options: None,
            seminorm: false,
        }
    }
}

/// How the gradient is computed. All modes take the same inputs and return the same
/// [`Gradients`].
#[derive(Debug, Clone, PartialEq)]
pub enum GradientMode<T> {
    /// Continuous adjoint integrated backwards against the interpolated forward trajectory
    /// (exact up to the tolerances; the recommended default).
    Checkpointed {
        /// What is kept of the forward trajectory.
        checkpoints: Checkpoints,
        /// The backward solver.
        backward: BackwardSolver<T>,
    },
    /// Chen et al. (2018), Algorithm 1: the augmented state `[z, a, a_θ, a_t]` integrated
    /// backwards from `t_N`, `z` re-anchored at every output time. Memory independent of
    /// the number of steps; **approximate**: `z(t)` recomputed backwards drifts from the
    /// forward trajectory on unstable or long problems.
    Backsolve {
        /// The backward solver.
        backward: BackwardSolver<T>,
    },
    /// Reverse-mode differentiation through the solver's Runge–Kutta stages
    /// (discretize-then-optimise): the exact gradient of the computed solution, with the
    /// accepted step sizes treated as fixed fractions of each output interval.
    Direct,
    /// Forward sensitivities `∂z/∂θ`, `∂z/∂z0` integrated with `z` (cost ∝ parameters).
    /// The tangent columns `S' = ∂f/∂z S + ∂f/∂θ` come from `P + n` JVPs per evaluation,
    /// or from explicit Jacobians (`n` VJPs, then `O(n²(P + n))` products) when the
    /// dynamics say so ([`Vjp::prefers_jacobians`]: no JVP, or an expensive one as
    /// [`crate::TapeDynamics`]'s).
    Forward,
    /// Forward sensitivities through the dynamics' JVP for every tangent column whatever
    /// the sizes (`P + n` JVPs per evaluation); an error if the dynamics have no JVP.
    ForwardJvp,
}

impl<T> Default for GradientMode<T> {
    /// The checkpointed adjoint, every step kept, with the seminorm (`a_θ` accumulated as
    /// a quadrature of the accepted stages).
    fn default() -> Self {
        GradientMode::Checkpointed {
            checkpoints: Checkpoints::EveryStep,
            backward: BackwardSolver {
                seminorm: true,
                ..BackwardSolver::default()
            },
        }
    }
}

impl<T> GradientMode<T> {
    /// The checkpointed adjoint keeping every step (the default).
    pub fn checkpointed() -> Self {
        Self::default()
    }
    /// The backsolve adjoint with the forward solver's settings, optionally with seminorm.
    pub fn backsolve(seminorm: bool) -> Self {
        GradientMode::Backsolve {
            backward: BackwardSolver {
                seminorm,
                ..BackwardSolver::default()
            },
        }
    }
    /// A short name (`"checkpointed"`, `"backsolve"`, `"direct"`, `"forward"`,
    /// `"forward-jvp"`).
    pub fn name(&self) -> &'static str {
        match self {
            GradientMode::Checkpointed { .. } => "checkpointed",
            GradientMode::Backsolve { .. } => "backsolve",
            GradientMode::Direct => "direct",
            GradientMode::Forward => "forward",
            GradientMode::ForwardJvp => "forward-jvp",
        }
    }
}

/// Counters of one forward + backward call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GradStats {
    /// Forward solve: evaluations of `f`, accepted and rejected steps.
    pub forward: Stats,
    /// Backward pass: evaluations of `f` (backsolve's `z`, direct's recomputed stages,
    /// recomputed checkpoint segments, `f` at output times).
    pub backward_nfe: usize,
    /// Backward pass: vector–Jacobian products.
    pub backward_vjp: usize,
    /// Jacobian–vector products (forward sensitivities).
    pub jvp: usize,
    /// Backward pass: accepted steps.
    pub backward_accepted: usize,
    /// Backward pass: rejected steps.
    pub backward_rejected: usize,
    /// Largest number of bytes held at once by the solver for this call: stored
    /// trajectory, checkpoints, sensitivities and the integrators' working state (an
    /// estimate counted from buffer lengths).
    pub peak_bytes: usize,
}

/// `dL/dz0`, `dL/dθ` and `dL/dt_i` for every output time.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Gradients<T> {
    /// `dL/dz0` (length `n_states`).
    pub z0: Vec<T>,
    /// `dL/dθ` (length `n_params`).
    pub theta: Vec<T>,
    /// `dL/dt_i` for every output time, `t_0` and `t_N` included.
    pub ts: Vec<T>,
}

/// Forward solves with recorded trajectories and their gradients (the crate's main type).
///
/// One value is reused across calls (training loops): buffers grow to the largest problem
/// seen and are then reused. See the crate documentation for the maths of each mode.
#[derive(Debug, Clone)]
pub struct AdjointSolver<T: Real> {
    method: Method,
    options: Options<T>,
    mode: GradientMode<T>,
    // The recorded forward pass.
    valid: bool,
    n: usize,
    p: usize,
    ts: Vec<T>,
    zs: Vec<T>,
    theta: Vec<T>,
    /// First step size of each output interval (for recomputation).
    h0: Vec<T>,
    stats: GradStats,
    // Checkpointed, every step: dense steps, and where each interval's steps begin.
    dense: DenseStore<T>,
    dense_start: Vec<usize>,
    /// Dense output of one recomputed segment (budgeted checkpoints).
    seg_dense: DenseStore<T>,
    // Checkpointed, budget: (time, first step, interval) and the states.
    ck: Vec<(T, T, usize)>,
    ck_z: Vec<T>,
    ck_stride: usize,
    // Direct: (t_start, h) and the state at the start of every step, and where each
    // interval's steps begin.
    steps: Vec<(T, T)>,
    steps_y: Vec<T>,
    steps_start: Vec<usize>,
    // Forward: sensitivities at every output time, n × (P + n) each, column by column.
    sens: Vec<T>,
    // Scratch.
    work: Vec<T>,
    work2: Vec<T>,
}

fn tableau_of(method: Method, what: &'static str) -> Result<&'static Tableau> {
    method.tableau().ok_or(Error::UnsupportedMethod {
        method: method.name(),
        what,
    })
}

/// Turns a solver error into the dynamics' own error when the dynamics failed first.
fn solve_err<S: Fallible + ?Sized>(e: SolveError, sys: &mut S) -> Error {
    sys.take_err().unwrap_or(Error::Solve(e))
}

fn check_len(what: &'static str, expected: usize, found: usize) -> Result<()> {
    if expected == found {
        Ok(())
    } else {
        Err(Error::LengthMismatch {
            what,
            expected,
            found,
        })
    }
}

fn check_finite<T: Real>(what: &'static str, v: &[T]) -> Result<()> {
    match v.iter().position(|x| !x.is_finite()) {
        Some(index) => Err(Error::NonFinite { what, index }),
        None => Ok(()),
    }
}

/// Checks output times: non-empty, finite, strictly monotone.
pub(crate) fn check_times<T: Real>(ts: &[T]) -> Result<()> {
    if ts.is_empty() {
        return Err(Error::EmptyTimes);
    }
    if let Some(index) = ts.iter().position(|x| !x.is_finite()) {
        return Err(Error::InvalidTimes {
            index,
            value: ts[index].to_f64_lossy(),
        });
    }
    if ts.len() >= 2 {
        let dir = ts[1] > ts[0];
        for i in 1..ts.len() {
            if (ts[i] > ts[i - 1]) != dir || ts[i] == ts[i - 1] {
                return Err(Error::InvalidTimes {
                    index: i,
                    value: ts[i].to_f64_lossy(),
                });
            }
        }
    }
    Ok(())
}

/// Bytes of an RK integrator's working state for a state of length `m` (estimate: stages,
/// seven state-sized buffers, tolerances, dense coefficients).
fn stepper_bytes<T>(method: Method, m: usize) -> usize {
    // Adams keeps up to 13 back values and a few state-sized buffers.
    let stages = method.tableau().map_or(16, |t| t.stages);
    (stages + 3 + 9 + 8) * m * core::mem::size_of::<T>()
}

fn vec_bytes<T>(v: &Vec<T>) -> usize {
    v.capacity() * core::mem::size_of::<T>()
}

/// Options for a backward integration of a state of length `m`.
fn backward_options<T: Real>(
    fwd: &Options<T>,
    bwd: &BackwardSolver<T>,
    seminorm: Option<Range<usize>>,
) -> Options<T> {
    let mut o = match &bwd.options {
        Some(o) => o.clone(),
        None => {
            let mut o = fwd.clone();
            let scal = |t: &Tolerance<T>| match t {
                Tolerance::Scalar(x) => Tolerance::Scalar(*x),
                Tolerance::PerComponent(v) => {
                    Tolerance::Scalar(v.iter().copied().fold(T::infinity(), |a, b| a.min(b)))
                }
            };
            o.rtol = scal(&fwd.rtol);
            o.atol = scal(&fwd.atol);
            o.first_step = None;
            o
        }
    };
    if bwd.seminorm {
        o.error_components = seminorm;
    }
    o
}

/// A right-hand side built from fallible dynamics: the first error is kept (and the
/// output filled with NaN so the solver stops) until taken.
trait Fallible {
    fn take_err(&mut self) -> Option<Error>;
}

/// The integrator of one interval: any explicit RK method, or Adams.
enum Integrator<T: Real> {
    Rk(RkStepper<T>),
    Adams(AdamsStepper<T>),
}

impl<T: Real> Integrator<T> {
    fn t(&self) -> T {
        match self {
            Integrator::Rk(s) => s.t(),
            Integrator::Adams(s) => s.t(),
        }
    }
    fn y(&self) -> &[T] {
        match self {
            Integrator::Rk(s) => s.y(),
            Integrator::Adams(s) => s.y(),
        }
    }
    fn is_done(&self) -> bool {
        match self {
            Integrator::Rk(s) => s.is_done(),
            Integrator::Adams(s) => s.is_done(),
        }
    }
    fn stats(&self) -> Stats {
        match self {
            Integrator::Rk(s) => s.stats(),
            Integrator::Adams(s) => s.stats(),
        }
    }
    /// The step size an adaptive RK method proposes next (to carry over intervals).
    fn next_h(&self) -> Option<T> {
        match self {
            Integrator::Rk(s) if s.tableau().is_adaptive() => Some(s.next_h()),
            _ => None,
        }
    }
    /// The last accepted step and the state at its start (RK only).
    fn last_step(&self) -> Option<(StepInfo<T>, &[T])> {
        match self {
            Integrator::Rk(s) => s.last_step().map(|i| (i, s.y_prev())),
            Integrator::Adams(_) => None,
        }
    }
    fn dense_output<S: OdeSystem<T>>(
        &mut self,
        sys: &mut S,
    ) -> core::result::Result<&DenseStep<T>, SolveError> {
        match self {
            Integrator::Rk(s) => s.dense_output(as_dyn(sys)),
            Integrator::Adams(s) => s.dense_output(as_dyn(sys)),
        }
    }
}

/// `sys` for the stepper, behind `dyn`: the steppers are compiled once per float type
/// instead of once per (augmented system, dynamics) pair, which keeps the short-state stage
/// loops `ode-solvers` compiles for every system type out of this crate's build; a call
/// through a pointer costs nothing next to a right-hand side made of network VJPs.
fn as_dyn<'a, T: Real, S: OdeSystem<T> + 'a>(sys: &'a mut S) -> &'a mut (dyn OdeSystem<T> + 'a) {
    sys
}

/// Runs one integration from `t0` to `t1` with `method`, calling `on_step` after each
/// accepted step.
fn integrate<T, S, G>(
    method: Method,
    sys: &mut S,
    t0: T,
    y0: &[T],
    t1: T,
    opts: &Options<T>,
    mut on_step: G,
) -> Result<Integrator<T>>
where
    T: Real,
    S: OdeSystem<T> + Fallible,
    G: FnMut(&mut Integrator<T>, &mut S) -> Result<()>,
{
    let made = match method.tableau() {
        Some(tab) => RkStepper::new(tab, as_dyn(sys), t0, y0, t1, opts).map(Integrator::Rk),
        None => AdamsStepper::new(as_dyn(sys), t0, y0, t1, opts).map(Integrator::Adams),
    };
    let mut st = match made {
        Ok(st) => st,
        Err(e) => return Err(solve_err(e, sys)),
    };
    let tab = method.tableau();
    let adaptive = tab.is_none_or(|t| t.is_adaptive()) && opts.fixed_step.is_none();
    while !st.is_done() {
        let r = match &mut st {
            Integrator::Adams(a) => a.step(as_dyn(sys)),
            Integrator::Rk(rk) => {
                if adaptive {
                    rk.step(as_dyn(sys))
                } else if let Some(h) = opts.fixed_step {
                    rk.step_fixed(as_dyn(sys), h)
                } else {
                    rk.step_to(as_dyn(sys), t1)
                }
            }
        };
        if let Err(e) = r {
            return Err(solve_err(e, sys));
        }
        if let Some(e) = sys.take_err() {
            return Err(e);
        }
        on_step(&mut st, sys)?;
    }
    Ok(st)
}

fn add_stats(acc: &mut Stats, s: Stats) {
    acc.nfe += s.nfe;
    acc.accepted += s.accepted;
    acc.rejected += s.rejected;
}

/// Dense output of many steps in flat storage, reused across calls (no allocation per
/// stored step once warm). Each step's interpolant, a polynomial of degree `m − 1` in
/// `θ = (t − t₀)/h` (`m` = its number of coefficient vectors), is kept as its values at the
/// `m` Chebyshev–Lobatto points of `[0, 1]` and evaluated by barycentric interpolation,
/// which reproduces the polynomial up to rounding.
#[derive(Debug, Clone, Default)]
pub(crate) struct DenseStore<T> {
    n: usize,
    t0: Vec<T>,
    t1: Vec<T>,
    m: Vec<usize>,
    off: Vec<usize>,
    vals: Vec<T>,
    /// Nodes and barycentric weights per `m`.
    nodes: Vec<(Vec<T>, Vec<T>)>,
}

impl<T: Real> DenseStore<T> {
    fn clear(&mut self, n: usize) {
        self.n = n;
        self.t0.clear();
        self.t1.clear();
        self.m.clear();
        self.off.clear();
        self.vals.clear();
    }

    fn len(&self) -> usize {
        self.t0.len()
    }

    fn bytes(&self, lo: usize, hi: usize) -> usize {
        let vals = if hi > lo {
            self.off.get(hi).copied().unwrap_or(self.vals.len()) - self.off[lo]
        } else {
            0
        };
        (vals + 2 * (hi - lo)) * core::mem::size_of::<T>() + 2 * (hi - lo) * 8
    }

    fn nodes_for(&mut self, m: usize) {
        while self.nodes.len() <= m {
            let k = self.nodes.len();
            let (x, w) = if k < 2 {
                (vec![T::zero(); k], vec![T::one(); k])
            } else {
                let x: Vec<T> = (0..k)
                    .map(|j| {
                        let c = (core::f64::consts::PI * j as f64 / (k - 1) as f64).cos();
                        T::from_f64_const(0.5 * (1.0 - c))
                    })
                    .collect();
                let w: Vec<T> = (0..k)
                    .map(|j| {
                        let s = if j % 2 == 0 { 1.0 } else { -1.0 };
                        let h = if j == 0 || j == k - 1 { 0.5 } else { 1.0 };
                        T::from_f64_const(s * h)
                    })
                    .collect();
                (x, w)
            };
            self.nodes.push((x, w));
        }
    }

    fn push(&mut self, d: &DenseStep<T>) {
        let n = self.n;
        let m = d.n_coeffs().max(2);
        self.nodes_for(m);
        let (t0, h) = (d.t_start(), d.h());
        let start = self.vals.len();
        self.vals.resize(start + m * n, T::zero());
        for k in 0..m {
            let x = self.nodes[m].0[k];
            let t = if k == m - 1 { d.t_end() } else { t0 + x * h };
            d.eval_into(t, &mut self.vals[start + k * n..start + (k + 1) * n]);
        }
        self.t0.push(t0);
        self.t1.push(d.t_end());
        self.m.push(m);
        self.off.push(start);
    }

    /// Index in `lo..hi` of the step containing `t`.
    #[inline]
    fn locate(&self, lo: usize, hi: usize, t: T, forward: bool) -> usize {
        let ends = &self.t1[lo..hi];
        let k = if forward {
            ends.partition_point(|e| *e < t)
        } else {
            ends.partition_point(|e| *e > t)
        };
        lo + k.min(hi - lo - 1)
    }

    /// The interpolant of step `k` at `t` into `out`.
    #[inline]
    fn eval(&self, k: usize, t: T, out: &mut [T]) {
        let n = self.n;
        let m = self.m[k];
        let vals = &self.vals[self.off[k]..self.off[k] + m * n];
        let x = (t - self.t0[k]) / (self.t1[k] - self.t0[k]);
        let (nodes, w) = (&self.nodes[m].0, &self.nodes[m].1);
        if let Some(j) = nodes.iter().position(|xj| *xj == x) {
            out.copy_from_slice(&vals[j * n..(j + 1) * n]);
            return;
        }
        let mut den = T::zero();
        out.fill(T::zero());
        for j in 0..m {
            let c = w[j] / (x - nodes[j]);
            den += c;
            for (o, v) in out.iter_mut().zip(&vals[j * n..(j + 1) * n]) {
                *o += c * *v;
            }
        }
        let inv = T::one() / den;
        for o in out.iter_mut() {
            *o *= inv;
        }
    }
}

/// `f` alone (forward solves).
struct EvalSys<'a, T, D: ?Sized> {
    d: &'a mut D,
    theta: &'a [T],
    err: Option<Error>,
}

impl<T: Real, D: Vjp<T> + ?Sized> OdeSystem<T> for EvalSys<'_, T, D> {
    #[inline]
    fn rhs(&mut self, t: T, y: &[T], dy: &mut [T]) {
        if let Err(e) = self.d.eval(t, y, self.theta, dy) {
            self.err.get_or_insert(e);
            dy.fill(T::nan());
        }
    }
}

impl<T, D: ?Sized> Fallible for EvalSys<'_, T, D> {
    fn take_err(&mut self) -> Option<Error> {
        self.err.take()
    }
}

/// The checkpointed adjoint `[a, a_θ]` against the interpolated forward state.
struct CheckpointSys<'a, T, D: ?Sized> {
    d: &'a mut D,
    theta: &'a [T],
    store: &'a DenseStore<T>,
    range: (usize, usize),
    zb: &'a mut [T],
    forward_dir: bool,
    n: usize,
    nvjp: usize,
    err: Option<Error>,
    /// Quadrature mode: the state is `a` alone and `aᵀ∂f/∂θ` of each call goes to the
    /// ring slot `nvjp % ring_len` (`ring` holds `ring_len × P`).
    ring: Option<(&'a mut [T], usize)>,
}

impl<T: Real, D: Vjp<T> + ?Sized> OdeSystem<T> for CheckpointSys<'_, T, D> {
    #[inline]
    fn rhs(&mut self, t: T, y: &[T], dy: &mut [T]) {
        let k = self
            .store
            .locate(self.range.0, self.range.1, t, self.forward_dir);
        self.store.eval(k, t, self.zb);
        let a = &y[..self.n];
        let call = self.nvjp;
        self.nvjp += 1;
        let r = match &mut self.ring {
            Some((ring, p)) => {
                let p = *p;
                let slots = ring.len() / p.max(1);
                let slot = if p == 0 { 0 } else { call % slots };
                let dth = &mut ring[slot * p..(slot + 1) * p];
                self.d.vjp(t, self.zb, self.theta, a, dy, dth)
            }
            None => {
                let (dz, dth) = dy.split_at_mut(self.n);
                self.d.vjp(t, self.zb, self.theta, a, dz, dth)
            }
        };
        match r {
            Ok(_) => {
                for v in dy.iter_mut() {
                    *v = -*v;
                }
            }
            Err(e) => {
                self.err.get_or_insert(e);
                dy.fill(T::nan());
            }
        }
    }
}

impl<T, D: ?Sized> Fallible for CheckpointSys<'_, T, D> {
    fn take_err(&mut self) -> Option<Error> {
        self.err.take()
    }
}

/// Chen et al.'s augmented state `[z, a, a_θ, a_t]`.
struct BacksolveSys<'a, T, D: ?Sized> {
    d: &'a mut D,
    theta: &'a [T],
    n: usize,
    p: usize,
    nvjp: usize,
    err: Option<Error>,
}

impl<T: Real, D: Vjp<T> + ?Sized> OdeSystem<T> for BacksolveSys<'_, T, D> {
    #[inline]
    fn rhs(&mut self, t: T, y: &[T], dy: &mut [T]) {
        let (n, p) = (self.n, self.p);
        let (z, rest) = y.split_at(n);
        let a = &rest[..n];
        let (dz, rest) = dy.split_at_mut(n);
        let (da, rest) = rest.split_at_mut(n);
        let (dth, dt) = rest.split_at_mut(p);
        self.nvjp += 1;
        let r = match self.d.eval(t, z, self.theta, dz) {
            Ok(()) => self.d.vjp(t, z, self.theta, a, da, dth),
            Err(e) => Err(e),
        };
        match r {
            Ok(tau) => {
                for v in da.iter_mut().chain(dth.iter_mut()) {
                    *v = -*v;
                }
                dt[0] = -tau;
            }
            Err(e) => {
                self.err.get_or_insert(e);
                dy.fill(T::nan());
            }
        }
    }
}

impl<T, D: ?Sized> Fallible for BacksolveSys<'_, T, D> {
    fn take_err(&mut self) -> Option<Error> {
        self.err.take()
    }
}

/// `[z, S_θ, S_z0]` with `Ṡ = ∂f/∂z S + ∂f/∂θ` (JVPs, or explicit Jacobians from VJPs).
struct SensSys<'a, T, D: ?Sized> {
    d: &'a mut D,
    theta: &'a [T],
    n: usize,
    p: usize,
    use_jvp: bool,
    e_theta: Vec<T>,
    zeros_theta: Vec<T>,
    jz: Vec<T>,
    jth: Vec<T>,
    e_n: Vec<T>,
    njvp: usize,
    nvjp: usize,
    err: Option<Error>,
}

impl<T: Real, D: Vjp<T> + ?Sized> SensSys<'_, T, D> {
    fn run(&mut self, t: T, y: &[T], dy: &mut [T]) -> Result<()> {
        let (n, p) = (self.n, self.p);
        let cols = n + p;
        let (z, s) = y.split_at(n);
        let (dz, ds) = dy.split_at_mut(n);
        self.d.eval(t, z, self.theta, dz)?;
        if self.use_jvp {
            for col in 0..cols {
                let sc = &s[col * n..(col + 1) * n];
                let out = &mut ds[col * n..(col + 1) * n];
                if col < p {
                    self.e_theta[col] = T::one();
                    let r = self.d.jvp(t, z, self.theta, sc, &self.e_theta, out);
                    self.e_theta[col] = T::zero();
                    r?;
                } else {
                    self.d.jvp(t, z, self.theta, sc, &self.zeros_theta, out)?;
                }
            }
            self.njvp += cols;
        } else {
            for r in 0..n {
                self.e_n[r] = T::one();
                let res = self.d.vjp(
                    t,
                    z,
                    self.theta,
                    &self.e_n,
                    &mut self.jz[r * n..(r + 1) * n],
                    &mut self.jth[r * p..(r + 1) * p],
                );
                self.e_n[r] = T::zero();
                res?;
            }
            self.nvjp += n;
            for col in 0..cols {
                let sc = &s[col * n..(col + 1) * n];
                let out = &mut ds[col * n..(col + 1) * n];
                for r in 0..n {
                    let row = &self.jz[r * n..(r + 1) * n];
                    let mut acc = if col < p {
                        self.jth[r * p + col]
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

impl<T: Real, D: Vjp<T> + ?Sized> OdeSystem<T> for SensSys<'_, T, D> {
    fn rhs(&mut self, t: T, y: &[T], dy: &mut [T]) {
        if let Err(e) = self.run(t, y, dy) {
            self.err.get_or_insert(e);
            dy.fill(T::nan());
        }
    }
}

impl<T, D: ?Sized> Fallible for SensSys<'_, T, D> {
    fn take_err(&mut self) -> Option<Error> {
        self.err.take()
    }
}

/// The checkpointed adjoint with `a_θ` as a quadrature: integrates `a` alone with the RK
/// stepper and adds `h Σⱼ bⱼ gⱼ` to `a_θ` after each accepted step, `gⱼ = −aᵀ∂f/∂θ` at
/// stage `j` — exactly what the stepper would compute for `a_θ` as state, without its
/// linear algebra on `P` entries per stage and without error control on it.
///
/// Relies on the documented call order of [`RkStepper`]: `new` evaluates stage 0 first
/// (then possibly one `HINIT` probe); each attempt evaluates stages `1..s`; a non-FSAL
/// method evaluates `f(t_new, y_new)` on acceptance, which (like an FSAL method's last
/// stage) is the next step's stage 0.
#[allow(clippy::too_many_arguments)]
fn quadrature_adjoint<T: Real, D: Vjp<T> + ?Sized>(
    tab: &'static Tableau,
    sys: &mut CheckpointSys<'_, T, D>,
    t0: T,
    a0: &[T],
    t1: T,
    opts: &Options<T>,
    b: &[T],
    stage0: &mut [T],
    ath: &mut [T],
) -> Result<RkStepper<T>> {
    let s = tab.stages;
    let p = ath.len();
    let slots = s + 1;
    let mut st = match RkStepper::new(tab, as_dyn(sys), t0, a0, t1, opts) {
        Ok(st) => st,
        Err(e) => return Err(solve_err(e, sys)),
    };
    if let Some(e) = sys.take_err() {
        return Err(e);
    }
    let slot = |call: usize| -> core::ops::Range<usize> {
        let k = call % slots;
        k * p..(k + 1) * p
    };
    {
        let ring = &sys.ring.as_ref().map(|r| &r.0[..]).unwrap_or(&[]);
        stage0.copy_from_slice(&ring[slot(0)]);
    }
    let adaptive = tab.is_adaptive() && opts.fixed_step.is_none();
    while !st.is_done() {
        let r = if adaptive {
            st.step(as_dyn(sys))
        } else if let Some(h) = opts.fixed_step {
            st.step_fixed(as_dyn(sys), h)
        } else {
            st.step_to(as_dyn(sys), t1)
        };
        if let Err(e) = r {
            return Err(solve_err(e, sys));
        }
        if let Some(e) = sys.take_err() {
            return Err(e);
        }
        let Some(info) = st.last_step() else { break };
        let h = info.h;
        let c = sys.nvjp;
        let first = if tab.fsal { c - (s - 1) } else { c - s };
        let ring: &[T] = sys.ring.as_ref().map(|r| &r.0[..]).unwrap_or(&[]);
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
    }
    Ok(st)
}

impl<T: Real> AdjointSolver<T> {
    /// A solver using `method` and `options` for the forward solve, and the default
    /// gradient mode ([`GradientMode::Checkpointed`], every step).
    ///
    /// Every gradient mode needs an explicit Runge–Kutta method ([`Method::tableau`] is
    /// `Some`); Adams is refused with [`Error::UnsupportedMethod`] at `forward`.
    pub fn new(method: Method, options: Options<T>) -> Self {
        AdjointSolver {
            method,
            options,
            mode: GradientMode::default(),
            valid: false,
            n: 0,
            p: 0,
            ts: Vec::new(),
            zs: Vec::new(),
            theta: Vec::new(),
            h0: Vec::new(),
            stats: GradStats::default(),
            dense: DenseStore::default(),
            dense_start: Vec::new(),
            seg_dense: DenseStore::default(),
            ck: Vec::new(),
            ck_z: Vec::new(),
            ck_stride: 1,
            steps: Vec::new(),
            steps_y: Vec::new(),
            steps_start: Vec::new(),
            sens: Vec::new(),
            work: Vec::new(),
            work2: Vec::new(),
        }
    }

    /// Sets the gradient mode (builder form).
    pub fn with_mode(mut self, mode: GradientMode<T>) -> Self {
        self.set_mode(mode);
        self
    }

    /// Sets the gradient mode used by the next [`AdjointSolver::forward`].
    pub fn set_mode(&mut self, mode: GradientMode<T>) {
        self.mode = mode;
        self.valid = false;
    }

    /// The gradient mode.
    pub fn mode(&self) -> &GradientMode<T> {
        &self.mode
    }

    /// The forward method.
    pub fn method(&self) -> Method {
        self.method
    }

    /// The forward options.
    pub fn options(&self) -> &Options<T> {
        &self.options
    }

    /// Counters of the last forward (and backward, once run) call.
    pub fn stats(&self) -> GradStats {
        self.stats
    }

    /// Output times of the last forward solve.
    pub fn ts(&self) -> &[T] {
        &self.ts
    }

    /// States at every output time of the last forward solve, row-major
    /// (`ts.len() × n_states`).
    pub fn states(&self) -> &[T] {
        &self.zs
    }

    /// The state at output time `i` (empty when out of range).
    pub fn state(&self, i: usize) -> &[T] {
        let n = self.n;
        self.zs.get(i * n..(i + 1) * n).unwrap_or(&[])
    }

    /// Solves `ż = f(t, z, θ)`, `z(ts[0]) = z0`, and records what the gradient mode needs.
    /// Returns the states at every output time (row-major, `ts.len() × n_states`).
    ///
    /// `ts` must be strictly increasing or strictly decreasing. The integrator restarts at
    /// every output time (carrying the step size over, no extra initial-step estimate), so
    /// outputs are step boundaries: the adjoint's jumps fall between steps and the direct
    /// mode differentiates plain RK steps.
    pub fn forward<D: Vjp<T> + ?Sized>(
        &mut self,
        dynamics: &mut D,
        z0: &[T],
        theta: &[T],
        ts: &[T],
    ) -> Result<&[T]> {
        self.valid = false;
        let n = dynamics.n_states();
        let p = dynamics.n_params();
        check_len("z0", n, z0.len())?;
        check_len("theta", p, theta.len())?;
        check_finite("z0", z0)?;
        check_finite("theta", theta)?;
        check_times(ts)?;
        if matches!(self.mode, GradientMode::Direct) {
            tableau_of(self.method, "direct backpropagation through the solver")?;
        }
        self.n = n;
        self.p = p;
        self.ts.clear();
        self.ts.extend_from_slice(ts);
        self.theta.clear();
        self.theta.extend_from_slice(theta);
        self.zs.clear();
        self.zs.extend_from_slice(z0);
        self.h0.clear();
        self.dense.clear(n);
        self.dense_start.clear();
        self.ck.clear();
        self.ck_z.clear();
        self.ck_stride = 1;
        self.steps.clear();
        self.steps_y.clear();
        self.steps_start.clear();
        self.sens.clear();
        self.stats = GradStats::default();
        if matches!(self.mode, GradientMode::Forward | GradientMode::ForwardJvp) {
            self.forward_sensitivities(dynamics)?;
        } else {
            self.forward_plain(dynamics)?;
        }
        self.valid = true;
        Ok(&self.zs)
    }

    fn forward_plain<D: Vjp<T> + ?Sized>(&mut self, dynamics: &mut D) -> Result<()> {
        let method = self.method;
        let n = self.n;
        let mut sys = EvalSys {
            d: dynamics,
            theta: &self.theta,
            err: None,
        };
        let mut opts = self.options.clone();
        let budget = match self.mode {
            GradientMode::Checkpointed {
                checkpoints: Checkpoints::Budget(k),
                ..
            } => {
                if k == 0 {
                    return Err(Error::InvalidOption {
                        name: "Checkpoints::Budget",
                        value: 0.0,
                        reason: "give at least one checkpoint (or use Checkpoints::EveryStep)",
                    });
                }
                Some(k)
            }
            _ => None,
        };
        let every_step = matches!(
            self.mode,
            GradientMode::Checkpointed {
                checkpoints: Checkpoints::EveryStep,
                ..
            }
        );
        let direct = matches!(self.mode, GradientMode::Direct);
        let mut peak_extra = 0usize;
        for i in 1..self.ts.len() {
            let (t0, t1) = (self.ts[i - 1], self.ts[i]);
            let mut y0 = core::mem::take(&mut self.work);
            y0.clear();
            y0.extend_from_slice(&self.zs[(i - 1) * n..i * n]);
            let h_first = opts.first_step.unwrap_or(T::zero());
            self.h0.push(h_first);
            self.dense_start.push(self.dense.len());
            self.steps_start.push(self.steps.len());
            let dense = &mut self.dense;
            let steps = &mut self.steps;
            let steps_y = &mut self.steps_y;
            let ck = &mut self.ck;
            let ck_z = &mut self.ck_z;
            let stride = &mut self.ck_stride;
            let mut count = 0usize;
            let st = integrate(method, &mut sys, t0, &y0, t1, &opts, |st, sys| {
                count += 1;
                if every_step {
                    dense.push(st.dense_output(sys)?);
                } else if direct {
                    if let Some((info, y_prev)) = st.last_step() {
                        steps.push((info.t_prev, info.h));
                        steps_y.extend_from_slice(y_prev);
                    }
                } else if let Some(k) = budget {
                    // Checkpoint the state at the end of every `stride`-th step (not the
                    // interval's end, which is an output state already).
                    if !st.is_done() && count.is_multiple_of(*stride) {
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
                            *stride *= 2;
                        }
                        if count.is_multiple_of(*stride) {
                            ck.push((st.t(), st.next_h().unwrap_or(T::zero()), i - 1));
                            ck_z.extend_from_slice(st.y());
                        }
                    }
                }
                Ok(())
            });
            self.work = y0;
            let st = st?;
            add_stats(&mut self.stats.forward, st.stats());
            if let Some(h) = st.next_h() {
                opts.first_step = Some(h.abs());
            }
            self.zs.extend_from_slice(st.y());
            peak_extra = peak_extra.max(stepper_bytes::<T>(method, n));
        }
        self.dense_start.push(self.dense.len());
        self.steps_start.push(self.steps.len());
        let dense_bytes = self.dense.bytes(0, self.dense.len());
        self.stats.peak_bytes = vec_bytes(&self.zs)
            + dense_bytes
            + vec_bytes(&self.steps_y)
            + vec_bytes(&self.steps)
            + vec_bytes(&self.ck_z)
            + peak_extra;
        Ok(())
    }

    /// Computes `dL/dz0`, `dL/dθ` and `dL/dt_i` given `dl_dz` = `dL/dz(t_i)` for every
    /// output time (row-major, `ts.len() × n_states`), with the mode of the last forward.
    pub fn backward<D: Vjp<T> + ?Sized>(
        &mut self,
        dynamics: &mut D,
        dl_dz: &[T],
    ) -> Result<Gradients<T>> {
        let mut g = Gradients::default();
        self.backward_into(dynamics, dl_dz, &mut g)?;
        Ok(g)
    }

    /// As [`AdjointSolver::backward`], writing into `grads` (resized; no allocation when
    /// it already has the right sizes).
    pub fn backward_into<D: Vjp<T> + ?Sized>(
        &mut self,
        dynamics: &mut D,
        dl_dz: &[T],
        grads: &mut Gradients<T>,
    ) -> Result<()> {
        if !self.valid {
            return Err(Error::NoForwardPass);
        }
        let (n, p) = (self.n, self.p);
        check_len("n_states of the dynamics", n, dynamics.n_states())?;
        check_len("n_params of the dynamics", p, dynamics.n_params())?;
        check_len("dl_dz", self.ts.len() * n, dl_dz.len())?;
        check_finite("dl_dz", dl_dz)?;
        grads.z0.clear();
        grads.z0.resize(n, T::zero());
        grads.theta.clear();
        grads.theta.resize(p, T::zero());
        grads.ts.clear();
        grads.ts.resize(self.ts.len(), T::zero());
        let fwd_peak = self.stats.peak_bytes;
        self.stats.backward_nfe = 0;
        if !matches!(self.mode, GradientMode::Forward | GradientMode::ForwardJvp) {
            // Forward sensitivities count their Jacobian VJPs during the forward solve.
            self.stats.backward_vjp = 0;
        }
        self.stats.backward_accepted = 0;
        self.stats.backward_rejected = 0;
        let mode = self.mode.clone();
        let bw_peak = match &mode {
            GradientMode::Checkpointed {
                checkpoints,
                backward,
            } => self.backward_checkpointed(dynamics, dl_dz, grads, *checkpoints, backward)?,
            GradientMode::Backsolve { backward } => {
                self.backward_backsolve(dynamics, dl_dz, grads, backward)?
            }
            GradientMode::Direct => {
                let tab = tableau_of(self.method, "direct backpropagation through the solver")?;
                self.backward_direct(dynamics, dl_dz, grads, tab)?
            }
            GradientMode::Forward | GradientMode::ForwardJvp => {
                self.backward_forward(dynamics, dl_dz, grads)?
            }
        };
        self.stats.peak_bytes = fwd_peak.max(bw_peak);
        Ok(())
    }

    /// `dL/dt_i = g_iᵀ f(t_i, z_i)` for `i ≥ 1` (shared by the continuous modes).
    fn time_gradients<D: Vjp<T> + ?Sized>(
        &mut self,
        dynamics: &mut D,
        dl_dz: &[T],
        grads: &mut Gradients<T>,
    ) -> Result<()> {
        let n = self.n;
        self.work2.resize(n, T::zero());
        for i in 1..self.ts.len() {
            let g = &dl_dz[i * n..(i + 1) * n];
            if g.iter().all(|x| *x == T::zero()) {
                continue;
            }
            dynamics.eval(
                self.ts[i],
                &self.zs[i * n..(i + 1) * n],
                &self.theta,
                &mut self.work2,
            )?;
            self.stats.backward_nfe += 1;
            grads.ts[i] = g.iter().zip(&self.work2).map(|(a, b)| *a * *b).sum();
        }
        Ok(())
    }

    /// `dL/dt_0 = −a(t_0)ᵀ f(t_0, z_0)` with `a` excluding `g_0`.
    fn t0_gradient<D: Vjp<T> + ?Sized>(&mut self, dynamics: &mut D, a: &[T]) -> Result<T> {
        let n = self.n;
        self.work2.resize(n, T::zero());
        dynamics.eval(self.ts[0], &self.zs[..n], &self.theta, &mut self.work2)?;
        self.stats.backward_nfe += 1;
        Ok(-a.iter().zip(&self.work2).map(|(x, y)| *x * *y).sum::<T>())
    }

    fn backward_checkpointed<D: Vjp<T> + ?Sized>(
        &mut self,
        dynamics: &mut D,
        dl_dz: &[T],
        grads: &mut Gradients<T>,
        checkpoints: Checkpoints,
        bwd: &BackwardSolver<T>,
    ) -> Result<usize> {
        let (n, p) = (self.n, self.p);
        let m = n + p;
        let fwd_method = self.method;
        let bmethod = bwd.method.unwrap_or(self.method);
        let opts = backward_options(&self.options, bwd, Some(0..n));
        self.time_gradients(dynamics, dl_dz, grads)?;
        let nt = self.ts.len();
        // Adjoint state [a, a_θ].
        let mut y = vec![T::zero(); m];
        if nt >= 2 {
            // a(t_N) = g_N (with one output time, g_0 enters dL/dz0 once, below).
            y[..n].copy_from_slice(&dl_dz[(nt - 1) * n..]);
        }
        let forward_dir = nt < 2 || self.ts[1] > self.ts[0];
        let mut seg_dense = core::mem::take(&mut self.seg_dense);
        seg_dense.clear(n);
        let mut zbuf = vec![T::zero(); n];
        let mut peak = 0usize;
        // With the seminorm, a_θ is not error-controlled, so it need not be integrator
        // state: it is accumulated as the RK quadrature of the accepted stages.
        // (RK backward methods only: the quadrature uses the tableau's weights.)
        let quad_tab = bmethod.tableau().filter(|_| bwd.seminorm);
        let quad = quad_tab.is_some();
        let b: Vec<T> = quad_tab
            .map(|t| t.b.iter().map(|&x| T::from_f64_const(x)).collect())
            .unwrap_or_default();
        let mut ring = match quad_tab {
            Some(t) => vec![T::zero(); (t.stages + 1) * p],
            None => Vec::new(),
        };
        let mut stage0 = if quad { vec![T::zero(); p] } else { Vec::new() };
        let mut fwd_opts = self.options.clone();
        let mut seg_opts = opts.clone();
        for i in (1..nt).rev() {
            // Segments of interval i-1 → i: [t_{i-1}, ck...] as starts.
            let (ta, tb) = (self.ts[i - 1], self.ts[i]);
            let ck_lo = self.ck.partition_point(|c| c.2 < i - 1);
            let ck_hi = self.ck.partition_point(|c| c.2 < i);
            let n_seg = match checkpoints {
                Checkpoints::EveryStep => 1,
                Checkpoints::Budget(_) => 1 + ck_hi - ck_lo,
            };
            for s in (0..n_seg).rev() {
                // Segment [sa, sb] and its dense steps.
                let (sa, sb, store, lo, hi): (T, T, &DenseStore<T>, usize, usize) =
                    match checkpoints {
                        Checkpoints::EveryStep => (
                            ta,
                            tb,
                            &self.dense,
                            self.dense_start[i - 1],
                            self.dense_start[i],
                        ),
                        Checkpoints::Budget(_) => {
                            let (sa, h, za) = if s == 0 {
                                (ta, self.h0[i - 1], &self.zs[(i - 1) * n..i * n])
                            } else {
                                let c = ck_lo + s - 1;
                                (self.ck[c].0, self.ck[c].1, &self.ck_z[c * n..(c + 1) * n])
                            };
                            let sb = if s + 1 < n_seg {
                                self.ck[ck_lo + s].0
                            } else {
                                tb
                            };
                            seg_dense.clear(n);
                            let mut sys = EvalSys {
                                d: &mut *dynamics,
                                theta: &self.theta,
                                err: None,
                            };
                            fwd_opts.first_step = if h > T::zero() { Some(h.abs()) } else { None };
                            let sd = &mut seg_dense;
                            let st = integrate(
                                fwd_method,
                                &mut sys,
                                sa,
                                za,
                                sb,
                                &fwd_opts,
                                |st, sys| {
                                    sd.push(st.dense_output(sys)?);
                                    Ok(())
                                },
                            )?;
                            self.stats.backward_nfe += st.stats().nfe;
                            (sa, sb, &seg_dense, 0, seg_dense.len())
                        }
                    };
                let dense_bytes = store.bytes(lo, hi);
                // First backward step: the last forward step of the segment (saves the
                // initial-step heuristic's evaluation) unless the caller fixed one.
                seg_opts.first_step = opts
                    .first_step
                    .or_else(|| {
                        // The last step is often clipped at the output time: take the
                        // larger of the last two.
                        (lo.max(hi.saturating_sub(2))..hi)
                            .map(|k| (store.t1[k] - store.t0[k]).abs())
                            .reduce(T::max)
                    })
                    .filter(|h| *h > T::zero());
                let opts = &seg_opts;
                if let Some(tab) = quad_tab {
                    peak = peak.max(
                        dense_bytes
                            + stepper_bytes::<T>(bmethod, n)
                            + ring.len() * core::mem::size_of::<T>(),
                    );
                    let mut sys = CheckpointSys {
                        d: &mut *dynamics,
                        theta: &self.theta,
                        store,
                        range: (lo, hi),
                        zb: &mut zbuf,
                        forward_dir,
                        n,
                        nvjp: 0,
                        err: None,
                        ring: Some((&mut ring[..], p)),
                    };
                    let (a_part, ath) = y.split_at_mut(n);
                    let st = quadrature_adjoint(
                        tab,
                        &mut sys,
                        sb,
                        a_part,
                        sa,
                        opts,
                        &b,
                        &mut stage0,
                        ath,
                    )?;
                    let s_ = st.stats();
                    self.stats.backward_vjp += sys.nvjp;
                    self.stats.backward_accepted += s_.accepted;
                    self.stats.backward_rejected += s_.rejected;
                    a_part.copy_from_slice(st.y());
                    continue;
                }
                peak = peak.max(dense_bytes + stepper_bytes::<T>(bmethod, m));
                let mut sys = CheckpointSys {
                    d: &mut *dynamics,
                    theta: &self.theta,
                    store,
                    range: (lo, hi),
                    zb: &mut zbuf,
                    forward_dir,
                    n,
                    nvjp: 0,
                    err: None,
                    ring: None,
                };
                let st = integrate(bmethod, &mut sys, sb, &y, sa, opts, |_, _| Ok(()))?;
                let s_ = st.stats();
                self.stats.backward_vjp += sys.nvjp;
                self.stats.backward_accepted += s_.accepted;
                self.stats.backward_rejected += s_.rejected;
                y.copy_from_slice(st.y());
            }
            if i - 1 > 0 {
                for (a, g) in y[..n].iter_mut().zip(&dl_dz[(i - 1) * n..i * n]) {
                    *a += *g;
                }
            }
        }
        self.seg_dense = seg_dense;
        let a0: Vec<T> = y[..n].to_vec();
        if nt >= 2 {
            grads.ts[0] = self.t0_gradient(dynamics, &a0)?;
        }
        for k in 0..n {
            grads.z0[k] = y[k] + dl_dz[k];
        }
        grads.theta.copy_from_slice(&y[n..]);
        Ok(peak + vec_bytes(&self.zs) + vec_bytes(&self.ck_z) + 2 * m * core::mem::size_of::<T>())
    }

    fn backward_backsolve<D: Vjp<T> + ?Sized>(
        &mut self,
        dynamics: &mut D,
        dl_dz: &[T],
        grads: &mut Gradients<T>,
        bwd: &BackwardSolver<T>,
    ) -> Result<usize> {
        let (n, p) = (self.n, self.p);
        let m = 2 * n + p + 1;
        let bmethod = bwd.method.unwrap_or(self.method);
        let opts = backward_options(&self.options, bwd, Some(0..2 * n));
        self.time_gradients(dynamics, dl_dz, grads)?;
        let nt = self.ts.len();
        // Augmented state [z, a, a_θ, a_t].
        let mut y = vec![T::zero(); m];
        if nt >= 2 {
            y[n..2 * n].copy_from_slice(&dl_dz[(nt - 1) * n..]);
        }
        y[m - 1] = -grads.ts[nt - 1];
        for i in (1..nt).rev() {
            let (ta, tb) = (self.ts[i - 1], self.ts[i]);
            // Re-anchor z to the stored output.
            y[..n].copy_from_slice(&self.zs[i * n..(i + 1) * n]);
            let mut sys = BacksolveSys {
                d: &mut *dynamics,
                theta: &self.theta,
                n,
                p,
                nvjp: 0,
                err: None,
            };
            let st = integrate(bmethod, &mut sys, tb, &y, ta, &opts, |_, _| Ok(()))?;
            let s_ = st.stats();
            self.stats.backward_nfe += s_.nfe;
            self.stats.backward_vjp += sys.nvjp;
            self.stats.backward_accepted += s_.accepted;
            self.stats.backward_rejected += s_.rejected;
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
        Ok(vec_bytes(&self.zs) + stepper_bytes::<T>(bmethod, m) + m * core::mem::size_of::<T>())
    }

    fn backward_direct<D: Vjp<T> + ?Sized>(
        &mut self,
        dynamics: &mut D,
        dl_dz: &[T],
        grads: &mut Gradients<T>,
        tab: &'static Tableau,
    ) -> Result<usize> {
        let (n, p) = (self.n, self.p);
        let s = tab.stages;
        let b: Vec<T> = tab.b.iter().map(|&x| T::from_f64_const(x)).collect();
        let c: Vec<T> = tab.c.iter().map(|&x| T::from_f64_const(x)).collect();
        let a: Vec<Vec<T>> = tab
            .a
            .iter()
            .map(|r| r.iter().map(|&x| T::from_f64_const(x)).collect())
            .collect();
        // Stages needed: up to the last one with a non-zero weight.
        let s_used = tab.b.iter().rposition(|&x| x != 0.0).map_or(0, |j| j + 1);
        let mut yst = vec![T::zero(); s * n]; // stage inputs Y_j
        let mut k = vec![T::zero(); s * n]; // stage values k_j
        let mut kbar = vec![T::zero(); s * n];
        let mut ybar = vec![T::zero(); n];
        let mut ybar_j = vec![T::zero(); n];
        let mut thbar_j = vec![T::zero(); p];
        let nt = self.ts.len();
        ybar.copy_from_slice(&dl_dz[(nt - 1) * n..]);
        for i in (1..nt).rev() {
            let (ta, tb) = (self.ts[i - 1], self.ts[i]);
            let delta = tb - ta;
            for st in (self.steps_start[i - 1]..self.steps_start[i]).rev() {
                let (t, h) = self.steps[st];
                let y0 = &self.steps_y[st * n..(st + 1) * n];
                // Recompute the stages.
                for j in 0..s_used {
                    let yj = &mut yst[j * n..(j + 1) * n];
                    yj.copy_from_slice(y0);
                    for (l, &al) in a[j].iter().enumerate() {
                        if al != T::zero() {
                            let kl = &k[l * n..(l + 1) * n];
                            for (v, kv) in yj.iter_mut().zip(kl) {
                                *v += h * al * *kv;
                            }
                        }
                    }
                    dynamics.eval(t + c[j] * h, yj, &self.theta, &mut k[j * n..(j + 1) * n])?;
                }
                self.stats.backward_nfe += s_used;
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
                        &self.theta,
                        kb,
                        &mut ybar_j,
                        &mut thbar_j,
                    )?;
                    self.stats.backward_vjp += 1;
                    for (g, v) in grads.theta.iter_mut().zip(&thbar_j) {
                        *g += *v;
                    }
                    tbar += tau;
                    hbar += c[j] * tau;
                    for q in 0..n {
                        ybar[q] += ybar_j[q];
                    }
                    for (l, &al) in a[j].iter().enumerate() {
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
        grads.z0.copy_from_slice(&ybar);
        let sz = core::mem::size_of::<T>();
        Ok(vec_bytes(&self.zs)
            + vec_bytes(&self.steps_y)
            + vec_bytes(&self.steps)
            + (3 * s * n + 2 * n + p) * sz)
    }

    fn forward_sensitivities<D: Vjp<T> + ?Sized>(&mut self, dynamics: &mut D) -> Result<()> {
        let method = self.method;
        let (n, p) = (self.n, self.p);
        let cols = p + n;
        let m = n + n * cols;
        let use_jvp = match self.mode {
            GradientMode::ForwardJvp if !dynamics.has_jvp() => {
                return Err(Error::MissingCapability {
                    what: "jvp",
                    hint: "GradientMode::ForwardJvp needs Vjp::jvp; GradientMode::Forward works without it",
                });
            }
            GradientMode::ForwardJvp => true,
            _ => !dynamics.prefers_jacobians(),
        };
        let mut y = vec![T::zero(); m];
        y[..n].copy_from_slice(&self.zs[..n]);
        for q in 0..n {
            y[n + (p + q) * n + q] = T::one();
        }
        self.sens.extend_from_slice(&y[n..]);
        let mut sys = SensSys {
            d: dynamics,
            theta: &self.theta,
            n,
            p,
            use_jvp,
            e_theta: vec![T::zero(); p],
            zeros_theta: vec![T::zero(); p],
            jz: if use_jvp {
                Vec::new()
            } else {
                vec![T::zero(); n * n]
            },
            jth: if use_jvp {
                Vec::new()
            } else {
                vec![T::zero(); n * p]
            },
            e_n: vec![T::zero(); n],
            njvp: 0,
            nvjp: 0,
            err: None,
        };
        let mut opts = self.options.clone();
        if let Tolerance::PerComponent(_) = opts.rtol {
            opts.rtol = Tolerance::Scalar(T::from_f64_const(1e-6));
        }
        if let Tolerance::PerComponent(_) = opts.atol {
            opts.atol = Tolerance::Scalar(T::from_f64_const(1e-9));
        }
        for i in 1..self.ts.len() {
            let (t0, t1) = (self.ts[i - 1], self.ts[i]);
            let st = integrate(method, &mut sys, t0, &y, t1, &opts, |_, _| Ok(()))?;
            add_stats(&mut self.stats.forward, st.stats());
            if let Some(h) = st.next_h() {
                opts.first_step = Some(h.abs());
            }
            y.copy_from_slice(st.y());
            self.zs.extend_from_slice(&y[..n]);
            self.sens.extend_from_slice(&y[n..]);
        }
        self.stats.jvp = sys.njvp;
        self.stats.backward_vjp = sys.nvjp;
        let sz = core::mem::size_of::<T>();
        self.stats.peak_bytes = vec_bytes(&self.zs)
            + vec_bytes(&self.sens)
            + stepper_bytes::<T>(method, m)
            + (sys.jz.len() + sys.jth.len() + 2 * p) * sz;
        Ok(())
    }

    fn backward_forward<D: Vjp<T> + ?Sized>(
        &mut self,
        dynamics: &mut D,
        dl_dz: &[T],
        grads: &mut Gradients<T>,
    ) -> Result<usize> {
        let (n, p) = (self.n, self.p);
        let cols = p + n;
        let nt = self.ts.len();
        let jvp = self.stats.jvp;
        let vjp = self.stats.backward_vjp;
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
        self.time_gradients(dynamics, dl_dz, grads)?;
        if nt >= 2 {
            let a: Vec<T> = grads
                .z0
                .iter()
                .zip(&dl_dz[..n])
                .map(|(x, g)| *x - *g)
                .collect();
            grads.ts[0] = self.t0_gradient(dynamics, &a)?;
        }
        self.stats.jvp = jvp;
        self.stats.backward_vjp = vjp;
        Ok(vec_bytes(&self.sens))
    }

    /// Forward solve, loss and gradient in one call.
    ///
    /// `loss(zs, dl_dz)` receives the states at every output time (row-major) and must
    /// return the loss and write `dL/dz(t_i)` into `dl_dz` (zeroed before the call).
    pub fn value_and_grad<D, L>(
        &mut self,
        dynamics: &mut D,
        z0: &[T],
        theta: &[T],
        ts: &[T],
        mut loss: L,
    ) -> Result<(T, Gradients<T>)>
    where
        D: Vjp<T> + ?Sized,
        L: FnMut(&[T], &mut [T]) -> T,
    {
        self.forward(dynamics, z0, theta, ts)?;
        let mut dl = vec![T::zero(); self.zs.len()];
        let value = loss(&self.zs, &mut dl);
        let g = self.backward(dynamics, &dl)?;
        Ok((value, g))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_traits<X: Send + Sync + Clone>() {}

    #[test]
    fn public_types_are_send_sync_clone() {
        assert_traits::<AdjointSolver<f64>>();
        assert_traits::<AdjointSolver<f32>>();
        assert_traits::<GradientMode<f64>>();
        assert_traits::<Gradients<f32>>();
        assert_traits::<GradStats>();
    }

    #[test]
    fn times_are_checked() {
        assert!(check_times::<f64>(&[0.0]).is_ok());
        assert!(check_times(&[0.0, 1.0, 2.0]).is_ok());
        assert!(check_times(&[2.0, 1.0, -3.0]).is_ok());
        assert!(matches!(check_times::<f64>(&[]), Err(Error::EmptyTimes)));
        assert!(matches!(
            check_times(&[0.0, f64::NAN]),
            Err(Error::InvalidTimes { index: 1, .. })
        ));
        assert!(matches!(
            check_times(&[0.0, 1.0, 1.0]),
            Err(Error::InvalidTimes { index: 2, .. })
        ));
        assert!(matches!(
            check_times(&[0.0, -1.0, 0.5]),
            Err(Error::InvalidTimes { index: 2, .. })
        ));
    }

    #[test]
    fn dense_store_locates_and_reproduces_the_interpolant() {
        let mut store = DenseStore::<f64>::default();
        store.clear(2);
        let mut steps = Vec::new();
        for k in 0..4 {
            let mut d = DenseStep::with_capacity(2, 4);
            let t0 = f64::from(k);
            let kk = f64::from(k);
            d.set_hermite(
                t0,
                1.0,
                &[kk, 1.0],
                &[kk + 1.0, -2.0],
                &[0.3, 4.0],
                &[-1.0, 0.5],
            );
            store.push(&d);
            steps.push(d);
        }
        assert_eq!(store.locate(0, 4, 0.0, true), 0);
        assert_eq!(store.locate(0, 4, 1.5, true), 1);
        assert_eq!(store.locate(0, 4, 3.5, true), 3);
        assert_eq!(store.locate(0, 4, 3.0, true), 2); // a shared boundary: the earlier step
        assert_eq!(store.locate(0, 4, 9.0, true), 3);
        assert_eq!(store.locate(1, 3, 0.2, true), 1);
        let (mut a, mut b) = ([0.0; 2], [0.0; 2]);
        for &t in &[0.0, 0.1, 0.77, 1.0, 2.5, 3.999, 4.0] {
            let k = store.locate(0, 4, t, true);
            store.eval(k, t, &mut a);
            steps[k].eval_into(t, &mut b);
            for i in 0..2 {
                assert!((a[i] - b[i]).abs() < 1e-14, "t = {t}: {a:?} vs {b:?}");
            }
        }
        let mut back = DenseStore::<f64>::default();
        back.clear(1);
        for k in 0..3 {
            let mut d = DenseStep::with_capacity(1, 4);
            d.set_hermite(-f64::from(k), -1.0, &[0.0], &[0.0], &[0.0], &[0.0]);
            back.push(&d);
        }
        assert_eq!(back.locate(0, 3, -0.5, false), 0);
        assert_eq!(back.locate(0, 3, -2.5, false), 2);
    }
}
