//! The one generic explicit Runge–Kutta driver.

use core::ops::Range;

use crate::dense::DenseStep;
use crate::error::SolveError;
use crate::initial_step::hinit;
use crate::options::{ErrorNorm, InitialStep, Options, PiController, Stats};
use crate::real::{Real, c};
use crate::slices::{axpy, first_non_finite};
use crate::stepper::{StepInfo, Stepper, next_attempt};
use crate::system::OdeSystem;
use crate::tableau::{DenseKind, Tableau};
use crate::unrolled::{self, Unrolled};

/// Sparse weight rows `(index, w)` (non-zeros only) stored back to back in one buffer, so a
/// solve's set-up allocates twice for all of a tableau's rows instead of once per row.
#[derive(Debug)]
struct SparseRows<T> {
    coef: Vec<(usize, T)>,
    start: Vec<usize>,
}

/// Keeps the reserved capacity, so that a clone pushes the dense-output rows without
/// allocating either.
impl<T: Clone> Clone for SparseRows<T> {
    fn clone(&self) -> Self {
        let mut coef = Vec::with_capacity(self.coef.capacity());
        coef.extend_from_slice(&self.coef);
        let mut start = Vec::with_capacity(self.start.capacity());
        start.extend_from_slice(&self.start);
        SparseRows { coef, start }
    }
}

/// No rows.
impl<T> Default for SparseRows<T> {
    fn default() -> Self {
        SparseRows {
            coef: Vec::new(),
            start: vec![0],
        }
    }
}

impl<T: Real> SparseRows<T> {
    /// Drops every row (keeps the memory).
    fn clear(&mut self) {
        self.coef.clear();
        self.start.clear();
        self.start.push(0);
    }

    fn with_capacity(rows: usize, entries: usize) -> Self {
        let mut start = Vec::with_capacity(rows + 1);
        start.push(0);
        SparseRows {
            coef: Vec::with_capacity(entries),
            start,
        }
    }

    /// Appends the non-zeros of `w` as `(j * scale, w_j)`.
    fn push(&mut self, w: &[f64], scale: usize) {
        for (j, &x) in w.iter().enumerate() {
            if x != 0.0 {
                self.coef.push((j * scale, c::<T>(x)));
            }
        }
        self.start.push(self.coef.len());
    }

    /// Rows pushed so far.
    fn rows(&self) -> usize {
        self.start.len() - 1
    }

    #[inline(always)]
    fn row(&self, r: usize) -> &[(usize, T)] {
        &self.coef[self.start[r]..self.start[r + 1]]
    }
}

/// Below this state length [`combine_any`] runs component by component, above it as one
/// `axpy` per stage.
const SMALL_N: usize = 32;

/// `out = base + Σ_j (h w_j) k_j` over a flat stage buffer, `row` holding `(offset, w_j)`.
///
/// Evaluated as `(base + Σ_{j<l} (h w_j) k_j) + (h w_l) k_l`, `l` the row's last (newest)
/// stage: the older terms are summed by ascending `j` and added to `base` once (round-off
/// stays relative to the increment, as in Hairer's `y + h (Σ a_ij k_j)`, up to one more
/// rounding), and all of that is ready while `f` computes `k_l`. The newest stage is then one
/// multiply and one add away from the next right-hand side call; Hairer's form has two
/// multiplies and two adds on that path. The step sequence is latency-bound on small states,
/// so this path sets the speed of a solve (measured in `benches/README.md`).
///
/// States of up to 8 components dispatch to [`combine_fixed`], the same sums with the length
/// known at compile time.
#[inline(always)]
fn combine<T: Real>(out: &mut [T], base: &[T], h: T, row: &[(usize, T)], k: &[T]) {
    match out.len() {
        1 => combine_fixed::<T, 1>(out, base, h, row, k),
        2 => combine_fixed::<T, 2>(out, base, h, row, k),
        3 => combine_fixed::<T, 3>(out, base, h, row, k),
        4 => combine_fixed::<T, 4>(out, base, h, row, k),
        5 => combine_fixed::<T, 5>(out, base, h, row, k),
        6 => combine_fixed::<T, 6>(out, base, h, row, k),
        7 => combine_fixed::<T, 7>(out, base, h, row, k),
        8 => combine_fixed::<T, 8>(out, base, h, row, k),
        _ => combine_any(out, base, h, row, k),
    }
}

/// [`combine`] for `N` components: `h w_j` is formed once per stage instead of once per
/// component, and the component loop unrolls into vector operations (what a solver written
/// for `SVector<T, N>` states gets for free). The per-component operations and their order
/// are those of [`combine_any`], so the results are bit-identical.
#[inline(always)]
fn combine_fixed<T: Real, const N: usize>(
    out: &mut [T],
    base: &[T],
    h: T,
    row: &[(usize, T)],
    k: &[T],
) {
    let Some((&(last, wl), older)) = row.split_last() else {
        out[..N].copy_from_slice(&base[..N]);
        return;
    };
    let mut part = [T::zero(); N];
    part.copy_from_slice(&base[..N]);
    if let Some((&(off0, w0), rest)) = older.split_first() {
        let mut acc = [T::zero(); N];
        let hw = h * w0;
        for (a, &x) in acc.iter_mut().zip(&k[off0..off0 + N]) {
            *a = hw * x;
        }
        for &(off, w) in rest {
            let hw = h * w;
            for (a, &x) in acc.iter_mut().zip(&k[off..off + N]) {
                *a += hw * x;
            }
        }
        for (p, a) in part.iter_mut().zip(acc) {
            *p += a;
        }
    }
    let hw = h * wl;
    for ((o, p), &x) in out[..N].iter_mut().zip(part).zip(&k[last..last + N]) {
        *o = p + hw * x;
    }
}

/// [`combine`] for any length: component by component on short states (all stages at
/// once, scalar), as one `axpy` per stage on long ones (vectorised over the state). All
/// paths do the same operations in the same order, so results do not depend on the path.
#[inline(always)]
fn combine_any<T: Real>(out: &mut [T], base: &[T], h: T, row: &[(usize, T)], k: &[T]) {
    let n = out.len();
    let Some((&(last, wl), older)) = row.split_last() else {
        out.copy_from_slice(base);
        return;
    };
    let hwl = h * wl;
    let Some((&(off0, w0), rest)) = older.split_first() else {
        for ((o, &b), &x) in out.iter_mut().zip(base).zip(&k[last..last + n]) {
            *o = b + hwl * x;
        }
        return;
    };
    if n < SMALL_N {
        for m in 0..n {
            let mut acc = (h * w0) * k[off0 + m];
            for &(off, w) in rest {
                acc += (h * w) * k[off + m];
            }
            out[m] = (base[m] + acc) + hwl * k[last + m];
        }
    } else {
        let hw0 = h * w0;
        for (o, &x) in out.iter_mut().zip(&k[off0..off0 + n]) {
            *o = hw0 * x;
        }
        for &(off, w) in rest {
            axpy(h * w, &k[off..off + n], out);
        }
        for (o, &b) in out.iter_mut().zip(base) {
            *o = b + *o;
        }
        axpy(hwl, &k[last..last + n], out);
    }
}

/// The stage inputs `Y_j = y0 + h Σ_l a_jl k_l` of one tableau's steps on states of `n`
/// components, computed as [`RkStepper`] computes the arguments of its stage evaluations:
/// the same weight rows, operations and order (both of its stage loops give these bits), so
/// a discrete adjoint can identify a recorded evaluation by its input. Stage 0's input is
/// `y0`; an FSAL tableau's last stage's is the step's `y_1`.
#[derive(Debug, Clone, Default)]
pub struct StageInputs<T> {
    /// The rows of the tableau's `a`, offsets scaled by `n`.
    rows: SparseRows<T>,
}

impl<T: Real> StageInputs<T> {
    /// The stage inputs of `tab` on states of `n` components.
    pub fn new(tab: &Tableau, n: usize) -> Self {
        let mut me = Self::default();
        me.reset(tab, n);
        me
    }

    /// Now for `tab` on states of `n` components (reusing the rows' memory).
    pub fn reset(&mut self, tab: &Tableau, n: usize) {
        self.rows.clear();
        for r in tab.a {
            self.rows.push(r, n);
        }
    }

    /// Writes stage `j`'s input for a step of size `h` from `y0` into `out`, from the step's
    /// stages `k` (stage `l` at `k[l n..(l + 1) n]`; only stages `l < j` are read).
    ///
    /// # Panics
    /// If `j` is not a stage of the tableau, or `k` or `out` are shorter than the stages /
    /// state need.
    pub fn input(&self, j: usize, y0: &[T], h: T, k: &[T], out: &mut [T]) {
        combine(&mut out[..y0.len()], y0, h, self.rows.row(j), k);
    }
}

/// The state-length vectors of a step in one allocation (a solve's set-up allocates once for
/// all eight): `y`, `y_prev`, `y_new` (rotated on acceptance, not copied), `ytmp` (stage
/// arguments), `f_prev` (the last step's first stage), `fnew` (scratch), `rtol`, `atol`.
#[derive(Debug, Clone)]
struct Work<T> {
    buf: Vec<T>,
    n: usize,
    /// Slots of `y`, `y_prev`, `y_new`.
    rot: [usize; 3],
}

/// [`Work`]'s vectors as disjoint slices.
struct Parts<'a, T> {
    y: &'a mut [T],
    y_prev: &'a mut [T],
    y_new: &'a mut [T],
    ytmp: &'a mut [T],
    f_prev: &'a mut [T],
    fnew: &'a mut [T],
    rtol: &'a [T],
    atol: &'a [T],
}

impl<T: Real> Work<T> {
    fn new(y0: &[T], rtol: impl Iterator<Item = T>, atol: impl Iterator<Item = T>) -> Self {
        let n = y0.len();
        let mut buf = Vec::with_capacity(8 * n);
        buf.extend_from_slice(y0);
        buf.extend_from_slice(y0);
        buf.resize(6 * n, T::zero());
        buf.extend(rtol);
        buf.extend(atol);
        Work {
            buf,
            n,
            rot: [0, 1, 2],
        }
    }

    #[inline(always)]
    fn slot(&self, i: usize) -> &[T] {
        &self.buf[i * self.n..(i + 1) * self.n]
    }

    #[inline(always)]
    fn y(&self) -> &[T] {
        self.slot(self.rot[0])
    }

    #[inline(always)]
    fn y_prev(&self) -> &[T] {
        self.slot(self.rot[1])
    }

    #[inline(always)]
    fn y_new(&self) -> &[T] {
        self.slot(self.rot[2])
    }

    /// The last accepted step's first stage (slot 4 of `buf`, see [`Parts`]).
    fn f_prev(&self) -> &[T] {
        &self.buf[4 * self.n..5 * self.n]
    }

    #[inline(always)]
    fn parts(&mut self) -> Parts<'_, T> {
        let mut chunks = self.buf.chunks_exact_mut(self.n.max(1));
        let [a, b, c, ytmp, f_prev, fnew, rtol, atol]: [&mut [T]; 8] =
            core::array::from_fn(|_| chunks.next().unwrap_or_default());
        let mut rot = [Some(a), Some(b), Some(c)];
        let mut take = |i: usize| rot[i].take().unwrap_or_default();
        Parts {
            y: take(self.rot[0]),
            y_prev: take(self.rot[1]),
            y_new: take(self.rot[2]),
            ytmp,
            f_prev,
            fnew,
            rtol,
            atol,
        }
    }

    /// After an accepted step: `y_prev ← y`, `y ← y_new` (the old `y_prev` becomes scratch).
    #[inline(always)]
    fn rotate(&mut self) {
        let [y, y_prev, y_new] = self.rot;
        self.rot = [y_new, y, y_prev];
    }
}

/// Stores `y_1[m]` and adds component `m`'s squared scaled errors `e`, `e2` to `acc` (or
/// takes their maxima for the max norm).
#[inline(always)]
fn fused_norm_term<T: Real>(
    p: &mut Parts<'_, T>,
    max: bool,
    m: usize,
    y1: T,
    e: T,
    e2: T,
    acc: &mut (T, T),
) {
    p.y_new[m] = y1;
    let sk = p.atol[m] + p.rtol[m] * p.y[m].abs().max(y1.abs());
    let r = e / sk;
    let q = e2 / sk;
    if max {
        acc.0 = acc.0.max(r * r);
        acc.1 = acc.1.max(q * q);
    } else {
        acc.0 += r * r;
        acc.1 += q * q;
    }
}

/// An explicit Runge–Kutta integrator for any [`Tableau`], holding its whole workspace.
///
/// All buffers (stages, states, tolerances, dense-output coefficients) are allocated in
/// [`RkStepper::new`]; [`Stepper::step`], [`Stepper::step_fixed`] and interpolation never
/// allocate. Integration runs forwards or backwards (`t_end < t0`).
///
/// Cost per accepted step is `s` evaluations for every method (FSAL methods reuse their last
/// stage; the others evaluate `f(t + h, y_1)` once the step is accepted, as Hairer's DOP853
/// does); a rejected attempt costs `s − 1`. DOP853's dense output costs three more, only on
/// steps where it is asked for.
#[derive(Debug, Clone)]
pub struct RkStepper<T: Real> {
    tab: &'static Tableau,
    n: usize,
    s: usize,
    /// All weight rows: `a` (rows `0..s`), `b` (`s`), `b_err` (`s + 1`), `b_err2` (`s + 2`)
    /// as `(j * n, w_j)` offsets into `k`; then the dense-output rows `d` (`s + 3 ..`, `nd`
    /// of them) and DOP853's extra stages' `a` (`nx` rows) as `(j, w_j)` stage indices.
    w: SparseRows<T>,
    nd: usize,
    nx: usize,
    cs: Vec<T>,
    /// The stage loop unrolled at compile time, for built-in tableaux on short states.
    unrolled: Option<Unrolled>,
    /// DOP853's two error estimates (`b_err2` present).
    two_err: bool,
    /// Non-FSAL tableaux with an error estimate: `(j n, b_j, e_j, e2_j)` over the union of
    /// the non-zeros of `b`, `b_err`, `b_err2`, so that `y_1` and both error sums come out of
    /// one pass over the stages (each stage value loaded once).
    fused: Vec<(usize, T, T, T)>,
    /// Position in `fused` of `b`'s last non-zero, the stage added last to `y_1` (see
    /// [`combine`]).
    fused_b_last: usize,
    extra_c: Vec<T>,
    /// Flat stage buffer: stage `j` is `k[j n .. (j + 1) n]` (+3 extra stages for DOP853).
    /// Stage 0 holds `f(t, y)` between steps.
    k: Vec<T>,
    v: Work<T>,
    err_range: Range<usize>,
    norm: ErrorNorm,
    ctrl: PiController<T>,
    initial_step: InitialStep,
    alpha: T,
    /// `β ln(err_prev)` of the PI controller (Hairer's `FACOLD**BETA`, kept as a logarithm so
    /// that a step costs one `ln` and one `exp` instead of two `powf`).
    beta_ln_facold: T,
    /// `ln(1e-4)`: Hairer's floor on `err_prev`.
    ln_facold_min: T,
    /// `ln err` of the last attempt, set with the error norm.
    ln_err: T,
    reject: bool,
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

impl<T: Real> RkStepper<T> {
    /// Sets up a solve of `y' = f(t, y)`, `y(t0) = y0` towards `t_end` with method `tab`.
    ///
    /// Evaluates `f(t0, y0)` once and, for adaptive runs without `first_step` or
    /// `fixed_step`, once more for Hairer's initial-step heuristic. Validates all options and inputs.
    pub fn new<S: OdeSystem<T> + ?Sized>(
        tab: &'static Tableau,
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
        let s = tab.stages;
        let ctrl = opts
            .controller
            .unwrap_or_else(|| PiController::for_tableau(tab));
        let q: T = c(f64::from(tab.controller_order.max(1)));
        let alpha = ctrl
            .alpha
            .unwrap_or_else(|| T::one() / q - c::<T>(0.75) * ctrl.beta);
        let (dense_d, extra_a, extra_c, n_extra, max_m): (&[&[f64]], &[&[f64]], Vec<T>, _, _) =
            match &tab.dense {
                DenseKind::Hermite => (&[], &[], Vec::new(), 0, 4),
                DenseKind::Dopri5 { d } => (core::slice::from_ref(d), &[], Vec::new(), 0, 5),
                DenseKind::Dop853(dd) => (&dd.d, &dd.a, dd.c.iter().map(|&x| c(x)).collect(), 3, 8),
            };
        let no_err: &[f64] = &[];
        let vec_rows = [
            tab.b,
            tab.b_err.unwrap_or(no_err),
            tab.b_err2.unwrap_or(no_err),
        ];
        let n_rows = s + 3 + dense_d.len() + extra_a.len();
        let entries = tab.a.iter().chain(&vec_rows).chain(dense_d).chain(extra_a);
        let mut w = SparseRows::with_capacity(n_rows, entries.map(|r| r.len()).sum());
        // The unrolled stage loop has `a` compiled in: its rows stay empty (DOP853: 78 of
        // the set-up's coefficients, a sixth of its time).
        let unrolled = Unrolled::new(tab, n);
        let a_rows = tab
            .a
            .iter()
            .map(|r| if unrolled.is_some() { &[] } else { *r });
        for r in a_rows.chain(vec_rows) {
            w.push(r, n);
        }
        // The dense-output rows are pushed by the first `compute_dense` (capacity is
        // reserved here, so that does not allocate): solves that never interpolate skip half
        // of DOP853's set-up.
        let dir = if t_end >= t0 { T::one() } else { -T::one() };
        let span = (t_end - t0).abs();
        let max_step = opts.max_step.unwrap_or(if span > T::zero() {
            span
        } else {
            T::max_value()
        });
        let mut fused = Vec::new();
        if let (false, Some(e)) = (tab.fsal, tab.b_err) {
            fused.reserve_exact(s);
            for j in 0..s {
                let e2 = tab.b_err2.map_or(0.0, |w| w[j]);
                if tab.b[j] != 0.0 || e[j] != 0.0 || e2 != 0.0 {
                    fused.push((j * n, c(tab.b[j]), c(e[j]), c(e2)));
                }
            }
        }
        let mut st = RkStepper {
            tab,
            n,
            s,
            w,
            nd: dense_d.len(),
            nx: extra_a.len(),
            cs: tab.c.iter().map(|&x| c(x)).collect(),
            unrolled,
            two_err: tab.b_err2.is_some(),
            fused_b_last: fused.iter().rposition(|f| f.1 != T::zero()).unwrap_or(0),
            fused,
            extra_c,
            k: vec![T::zero(); (s + n_extra) * n],
            v: Work::new(
                y0,
                (0..n).map(|i| opts.rtol.get(i)),
                (0..n).map(|i| opts.atol.get(i)),
            ),
            err_range: opts.error_range(n),
            norm: opts.norm,
            ctrl,
            initial_step: opts.initial_step,
            alpha,
            beta_ln_facold: ctrl.beta * c::<T>(1e-4).ln(),
            ln_facold_min: c::<T>(1e-4).ln(),
            ln_err: T::zero(),
            reject: false,
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
            dense: DenseStep::with_capacity(n, max_m),
            dense_valid: false,
            has_step: false,
        };
        sys.rhs(t0, st.v.y(), &mut st.k[..n]);
        st.stats.nfe += 1;
        if let Some(i) = first_non_finite(&st.k[..n]) {
            return Err(SolveError::NonFiniteDerivative {
                t: t0.to_f64_lossy(),
                index: i,
            });
        }
        // With a fixed step the first step is that step: no initial-step probe.
        if tab.is_adaptive() && span > T::zero() {
            st.h = match opts.fixed_step.or(opts.first_step) {
                Some(h) => dir * h.min(max_step),
                None => st.hinit(sys),
            };
        }
        Ok(st)
    }

    /// The tableau in use.
    pub fn tableau(&self) -> &'static Tableau {
        self.tab
    }

    /// The step size the controller proposes next.
    pub fn next_h(&self) -> T {
        self.h
    }

    /// `f(t, y)` at the current point (the first stage of the next step).
    pub fn f(&self) -> &[T] {
        &self.k[..self.n]
    }

    /// The stages of the last accepted step as that step computed them: `k₀ = f(t, y)`,
    /// and `k₁ … k_{s−1}` in one slice (stage `j` at `(j − 1) n`); `None` before the first
    /// step. Valid until the next step attempt (read it right after a step: discrete
    /// adjoints keep them instead of evaluating them again).
    pub fn last_stages(&self) -> Option<(&[T], &[T])> {
        self.has_step
            .then(|| (self.v.f_prev(), &self.k[self.n..self.s * self.n]))
    }

    fn hinit<S: OdeSystem<T> + ?Sized>(&mut self, sys: &mut S) -> T {
        let p = self.v.parts();
        hinit(
            self.initial_step,
            sys,
            self.t,
            p.y,
            &self.k[..self.n],
            self.dir,
            self.max_step,
            p.rtol,
            p.atol,
            self.err_range.clone(),
            self.tab.order,
            p.ytmp,
            p.fnew,
            &mut self.stats,
        )
    }

    /// Computes stages 1.., `y_new` and (if asked) the error norm for step `h`.
    fn attempt<S: OdeSystem<T> + ?Sized>(
        &mut self,
        sys: &mut S,
        h: T,
        with_err: bool,
    ) -> Result<T, SolveError> {
        let s = self.s;
        let n = self.n;
        let fsal = self.tab.fsal;
        let p = self.v.parts();
        if let Some(u) = self.unrolled {
            unrolled::stages(u, sys, self.t, h, p.y, &mut self.k, p.y_new);
        } else {
            // The generic loop (the unrolled one computes the same values, bit for bit).
            for i in 1..s {
                let (done, rest) = self.k.split_at_mut(i * n);
                let target = if fsal && i == s - 1 {
                    &mut *p.y_new
                } else {
                    &mut *p.ytmp
                };
                combine(target, p.y, h, self.w.row(i), done);
                sys.rhs(self.t + self.cs[i] * h, target, &mut rest[..n]);
            }
        }
        self.stats.nfe += s - 1;
        let fused = with_err
            && !self.fused.is_empty()
            && n < SMALL_N
            && self.err_range.start == 0
            && self.err_range.end == n;
        if fused {
            let err = self.solution_and_error_norm(h);
            if err.is_finite() {
                return Ok(err);
            }
            return match self.diagnose(h) {
                Some(e) => Err(e),
                None => Ok(T::infinity()),
            };
        }
        if !fsal {
            let p = self.v.parts();
            combine(p.y_new, p.y, h, self.w.row(s), &self.k);
        }
        if !with_err {
            return Ok(T::zero());
        }
        let err = self.error_norm(h);
        if err.is_finite() {
            return Ok(err);
        }
        match self.diagnose(h) {
            Some(e) => Err(e),
            None => Ok(T::infinity()),
        }
    }

    /// `y_1` (as [`combine`] with `b`) and the error norm (as [`Self::error_norm`]) in one
    /// pass over the stages, for non-FSAL tableaux on short states with the full norm. The
    /// sums run over the union of the three weight vectors' non-zeros by ascending stage;
    /// the extra terms have weight zero, so the results equal the separate sums.
    fn solution_and_error_norm(&mut self, h: T) -> T {
        match self.n {
            1 => self.fused_sums_fixed::<1>(h),
            2 => self.fused_sums_fixed::<2>(h),
            3 => self.fused_sums_fixed::<3>(h),
            4 => self.fused_sums_fixed::<4>(h),
            5 => self.fused_sums_fixed::<5>(h),
            6 => self.fused_sums_fixed::<6>(h),
            7 => self.fused_sums_fixed::<7>(h),
            8 => self.fused_sums_fixed::<8>(h),
            _ => self.fused_sums_any(h),
        }
    }

    /// [`Self::solution_and_error_norm`] for `N` components (see [`combine_fixed`]): the
    /// three stage sums for all components first, then the norm; same operations per
    /// component in the same order as [`Self::fused_sums_any`].
    #[inline(always)]
    fn fused_sums_fixed<const N: usize>(&mut self, h: T) -> T {
        let (older, newer) = self.fused.split_at(self.fused_b_last);
        let mut inc = [T::zero(); N];
        let mut e = [T::zero(); N];
        let mut e2 = [T::zero(); N];
        for &(off, wb, we, we2) in older {
            let hwb = h * wb;
            let kj = &self.k[off..off + N];
            for m in 0..N {
                let x = kj[m];
                inc[m] += hwb * x;
                e[m] += we * x;
                e2[m] += we2 * x;
            }
        }
        let max = self.norm == ErrorNorm::Max;
        let mut p = self.v.parts();
        let mut y1 = [T::zero(); N];
        let (off, wb, ..) = newer[0];
        let hwb = h * wb;
        for m in 0..N {
            y1[m] = (p.y[m] + inc[m]) + hwb * self.k[off + m];
        }
        for &(off, _, we, we2) in newer {
            let kj = &self.k[off..off + N];
            for m in 0..N {
                let x = kj[m];
                e[m] += we * x;
                e2[m] += we2 * x;
            }
        }
        let mut acc = (T::zero(), T::zero());
        for m in 0..N {
            fused_norm_term(&mut p, max, m, y1[m], e[m], e2[m], &mut acc);
        }
        self.finish_norm(h, acc.0, acc.1)
    }

    /// [`Self::solution_and_error_norm`] for any length, component by component.
    fn fused_sums_any(&mut self, h: T) -> T {
        let mut acc = (T::zero(), T::zero());
        let max = self.norm == ErrorNorm::Max;
        let mut p = self.v.parts();
        for m in 0..self.n {
            let (older, newer) = self.fused.split_at(self.fused_b_last);
            let mut inc = T::zero();
            let mut e = T::zero();
            let mut e2 = T::zero();
            for &(off, wb, we, we2) in older {
                let x = self.k[off + m];
                inc += (h * wb) * x;
                e += we * x;
                e2 += we2 * x;
            }
            let (off, wb, ..) = newer[0];
            let y1 = (p.y[m] + inc) + (h * wb) * self.k[off + m];
            for &(off, _, we, we2) in newer {
                let x = self.k[off + m];
                e += we * x;
                e2 += we2 * x;
            }
            fused_norm_term(&mut p, max, m, y1, e, e2, &mut acc);
        }
        self.finish_norm(h, acc.0, acc.1)
    }

    /// The error norm from the sums (or maxima) of the squared scaled errors: Hairer's
    /// `|h| sqrt(Σ/n)`, or DOP853's `|h| E₅² / sqrt(n (E₅² + 0.01 E₃²))` with two estimates.
    ///
    /// Also sets `ln_err`, computed from logarithms of the pieces (`ln|h|` is known before the
    /// stages are), so that the controller's `ln` does not wait for the square root and the
    /// division: the step sequence is latency-bound on small states.
    fn finish_norm(&mut self, h: T, acc: T, acc2: T) -> T {
        let len: T = if self.norm == ErrorNorm::Max {
            T::one()
        } else {
            c(self.err_range.len() as f64)
        };
        if self.two_err {
            let mut deno = acc + c::<T>(0.01) * acc2;
            if !(deno > T::zero()) {
                deno = T::one();
            }
            let err = h.abs() * acc * (T::one() / (len * deno)).sqrt();
            self.ln_err = h.abs().ln() + acc.ln() - c::<T>(0.5) * (len * deno).ln();
            err
        } else {
            let q = acc / len;
            self.ln_err = h.abs().ln() + c::<T>(0.5) * q.ln();
            h.abs() * q.sqrt()
        }
    }

    fn error_norm(&mut self, h: T) -> T {
        let mut acc = T::zero();
        let mut acc2 = T::zero();
        let two = self.two_err;
        let e_row = self.w.row(self.s + 1);
        let e2_row = self.w.row(self.s + 2);
        let max = self.norm == ErrorNorm::Max;
        let p = self.v.parts();
        for m in self.err_range.clone() {
            let sk = p.atol[m] + p.rtol[m] * p.y[m].abs().max(p.y_new[m].abs());
            let mut e = T::zero();
            for &(off, w) in e_row {
                e += w * self.k[off + m];
            }
            let r = e / sk;
            let r2 = r * r;
            if max {
                acc = acc.max(r2);
            } else {
                acc += r2;
            }
            if two {
                let mut e2 = T::zero();
                for &(off, w) in e2_row {
                    e2 += w * self.k[off + m];
                }
                let q = e2 / sk;
                if max {
                    acc2 = acc2.max(q * q);
                } else {
                    acc2 += q * q;
                }
            }
        }
        self.finish_norm(h, acc, acc2)
    }

    /// Finds which stage derivative (or the new state) is non-finite.
    fn diagnose(&self, h: T) -> Option<SolveError> {
        let n = self.n;
        for j in 0..self.s {
            if let Some(i) = first_non_finite(&self.k[j * n..(j + 1) * n]) {
                return Some(SolveError::NonFiniteDerivative {
                    t: (self.t + self.cs[j] * h).to_f64_lossy(),
                    index: i,
                });
            }
        }
        first_non_finite(self.v.y_new()).map(|i| SolveError::NonFiniteState {
            t: (self.t + h).to_f64_lossy(),
            index: i,
        })
    }

    fn accept<S: OdeSystem<T> + ?Sized>(
        &mut self,
        sys: &mut S,
        h: T,
        t_new: T,
    ) -> Result<StepInfo<T>, SolveError> {
        if first_non_finite(self.v.y_new()).is_some() {
            return Err(self.diagnose(h).unwrap_or(SolveError::NonFiniteState {
                t: t_new.to_f64_lossy(),
                index: 0,
            }));
        }
        let s = self.s;
        let n = self.n;
        // Keep the old first stage for dense output; the new one is f(t_new, y_new),
        // evaluated in place for non-FSAL methods (the FSAL stage stays in its slot too,
        // so every old stage remains readable).
        let p = self.v.parts();
        p.f_prev.copy_from_slice(&self.k[..n]);
        if self.tab.fsal {
            self.k.copy_within((s - 1) * n..s * n, 0);
        } else {
            sys.rhs(t_new, p.y_new, &mut self.k[..n]);
            self.stats.nfe += 1;
            if let Some(i) = first_non_finite(&self.k[..n]) {
                // The step is not taken: stage 0 is f(t, y) again.
                self.k[..n].copy_from_slice(p.f_prev);
                return Err(SolveError::NonFiniteDerivative {
                    t: t_new.to_f64_lossy(),
                    index: i,
                });
            }
        }
        self.v.rotate();
        self.t_prev = self.t;
        self.t = t_new;
        self.h_last = h;
        self.stats.accepted += 1;
        self.dense_valid = false;
        self.has_step = true;
        Ok(StepInfo {
            t_prev: self.t_prev,
            t_new,
            h,
        })
    }

    fn compute_dense<S: OdeSystem<T> + ?Sized>(&mut self, sys: &mut S) {
        let n = self.n;
        let s = self.s;
        if self.w.rows() == s + 3 {
            let (d, a): (&[&[f64]], &[&[f64]]) = match &self.tab.dense {
                DenseKind::Hermite => (&[], &[]),
                DenseKind::Dopri5 { d } => (core::slice::from_ref(d), &[]),
                DenseKind::Dop853(dd) => (&dd.d, &dd.a),
            };
            for r in d.iter().chain(a) {
                self.w.push(r, 1);
            }
        }
        let h = self.h_last;
        let t0 = self.t_prev;
        // Slot in `k` of stage `j >= 1` of the last step after `accept` (stage 0 is in
        // `f_prev`): stage `s` (DOP853's f(t + h, y_1)) is the new first stage, slot 0, and
        // the extra stages follow in slots `s..`.
        let slot = |j: usize| -> core::ops::Range<usize> {
            let sl = if j < s {
                j
            } else if j == s {
                0
            } else {
                j - 1
            };
            sl * n..(sl + 1) * n
        };
        let p = self.v.parts();
        // DOP853's three extra stages.
        for e in 0..self.nx {
            let (lo, hi) = self.k.split_at_mut((s + e) * n);
            p.ytmp.copy_from_slice(p.y_prev);
            for &(j, a) in self.w.row(s + 3 + self.nd + e) {
                let src = if j == 0 { &*p.f_prev } else { &lo[slot(j)] };
                axpy(h * a, src, p.ytmp);
            }
            sys.rhs(t0 + self.extra_c[e] * h, p.ytmp, &mut hi[..n]);
            self.stats.nfe += 1;
        }
        self.dense
            .set_hermite(t0, h, p.y_prev, p.y, p.f_prev, &self.k[..n]);
        for r in 0..self.nd {
            let row = self.w.row(s + 3 + r);
            let out = &mut self.dense.coeffs[(4 + r) * n..(5 + r) * n];
            out.fill(T::zero());
            for &(j, d) in row {
                let src = if j == 0 { &*p.f_prev } else { &self.k[slot(j)] };
                axpy(h * d, src, out);
            }
        }
        self.dense.m = 4 + self.nd;
        self.dense_valid = true;
    }
}

impl<T: Real> Stepper<T> for RkStepper<T> {
    fn t(&self) -> T {
        self.t
    }

    fn y(&self) -> &[T] {
        self.v.y()
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
        self.v.y_prev()
    }

    fn step<S: OdeSystem<T> + ?Sized>(&mut self, sys: &mut S) -> Result<StepInfo<T>, SolveError> {
        if self.t == self.t_end {
            return Err(SolveError::EndReached {
                t: self.t_end.to_f64_lossy(),
            });
        }
        if !self.tab.is_adaptive() {
            return Err(SolveError::Unsupported {
                method: self.tab.name,
                what: "take error-controlled steps (no embedded error estimate): use step_fixed or Options::fixed_step",
            });
        }
        let one = T::one();
        let PiController {
            safety,
            min_factor,
            max_factor,
            beta,
            ..
        } = self.ctrl;
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
            let err = self.attempt(sys, h, true)?;
            // Hairer's controller, FAC11 = ERR**EXPO1, FAC = FAC11/FACOLD**BETA,
            // H_NEW = H / clamp(FAC/SAFE, 1/FAC2, 1/FAC1), computed as its reciprocal
            // `h · clamp(safety · exp(β ln facold − α ln err), min_factor, max_factor)`: one
            // `ln` and one `exp` instead of two `powf`, and no division on the path from the
            // error estimate to the next step (the step sequence is latency-bound). `err` is
            // finite or +inf here; err = 0 gives the largest growth, as in Hairer's code.
            let ln_err = if err.is_finite() {
                self.ln_err
            } else {
                err.ln()
            };
            let alpha_ln_err = self.alpha * ln_err;
            let grow = safety * (self.beta_ln_facold - alpha_ln_err).exp();
            let mut hnew = h * max_factor.min(min_factor.max(grow));
            if err <= one {
                self.beta_ln_facold = beta * ln_err.max(self.ln_facold_min);
                let t_new = if last { self.t_end } else { self.t + h };
                let info = self.accept(sys, h, t_new)?;
                if hnew.abs() > self.max_step {
                    hnew = self.dir * self.max_step;
                }
                if self.reject {
                    hnew = self.dir * hnew.abs().min(h.abs());
                }
                self.reject = false;
                self.h = hnew;
                return Ok(info);
            }
            // Rejected: H_NEW = H / min(1/FAC1, FAC11/SAFE).
            hnew = h * min_factor.max(safety * (-alpha_ln_err).exp());
            self.reject = true;
            self.stats.rejected += 1;
            self.h = hnew;
        }
    }

    fn step_fixed<S: OdeSystem<T> + ?Sized>(
        &mut self,
        sys: &mut S,
        h: T,
    ) -> Result<StepInfo<T>, SolveError> {
        if !(h.is_finite() && h * self.dir > T::zero()) {
            return Err(SolveError::InvalidOption {
                name: "h",
                value: h.to_f64_lossy(),
                reason: "a fixed step must be finite, non-zero and point towards t_end",
            });
        }
        let target = self.t + h;
        self.step_to(sys, target)
    }

    fn step_to<S: OdeSystem<T> + ?Sized>(
        &mut self,
        sys: &mut S,
        t_target: T,
    ) -> Result<StepInfo<T>, SolveError> {
        if self.t == self.t_end {
            return Err(SolveError::EndReached {
                t: self.t_end.to_f64_lossy(),
            });
        }
        let t_target = if (t_target - self.t_end) * self.dir > T::zero() {
            self.t_end
        } else {
            t_target
        };
        let h = t_target - self.t;
        if !(h * self.dir > T::zero()) {
            return Err(SolveError::InvalidOption {
                name: "h",
                value: h.to_f64_lossy(),
                reason: "a fixed step must be finite, non-zero and point towards t_end",
            });
        }
        if self.attempts >= self.max_steps {
            return Err(SolveError::TooManySteps {
                t: self.t.to_f64_lossy(),
                max_steps: self.max_steps,
            });
        }
        self.attempts += 1;
        self.attempt(sys, h, false)?;
        self.accept(sys, h, t_target)
    }

    fn dense_output<S: OdeSystem<T> + ?Sized>(
        &mut self,
        sys: &mut S,
    ) -> Result<&DenseStep<T>, SolveError> {
        if !self.has_step {
            return Err(SolveError::OutsideStep {
                t: self.t.to_f64_lossy(),
                t_prev: self.t.to_f64_lossy(),
                t_new: self.t.to_f64_lossy(),
            });
        }
        if !self.dense_valid {
            self.compute_dense(sys);
        }
        Ok(&self.dense)
    }
}
