//! Direct backpropagation through the solver's Runge–Kutta steps
//! (discretise-then-optimise): records every accepted step `(t, h, y₀)` and its stage
//! values `k₀ … k_{s−1}` as the forward solve computed them, and reverses the stages in the
//! backward pass: the stage inputs `Yⱼ = y₀ + h Σₗ aⱼₗ kₗ` are rebuilt from the kept stages
//! (no evaluation of the field), then one VJP per stage with a non-zero adjoint.
//!
//! With adaptive steps and an FSAL tableau whose dense output is cubic Hermite or
//! Dormand–Prince's (Bosh3, Dopri5, Tsit5) the forward solve is one integration over
//! `[t_0, t_N]` and each output is the step's interpolant, a combination of the step's
//! stages: `z(τ) = y₀ + h Σⱼ Wⱼ(θ) kⱼ`, `θ = (τ − t)/h`, with
//! `Wⱼ = A(θ) bⱼ + F₀(θ)[j = 0] + F₁(θ)[j = s−1] + R(θ) dⱼ`, `A = 3θ² − 2θ³`,
//! `F₀ = θ(1 − θ)²`, `F₁ = θ³ − θ²`, `R = θ²(1 − θ)²` (Dopri5's `dⱼ`, else 0). The
//! backward pass differentiates that combination (no extra steps: the last stage on the
//! steps that hold outputs, and for `dL/dτ` the field at each output, `∂z(τ)/∂τ = f(τ,
//! z(τ))`, cost one evaluation each; the interpolant's own slope `Σⱼ Wⱼ'(θ) kⱼ` is only
//! `O(h⁴)`-close to it). Other tableaux restart at every output time, so that outputs are
//! step ends.
//!
//! Residuals ([`Vjp::residual_len`] `> 0`): every evaluation of the forward solve goes
//! through [`Vjp::eval_saving`] into a slot of a pool that also keeps its `t` and input `z`.
//! After each accepted step the recorder rebuilds every stage input `Yⱼ` exactly as the
//! stepper computed it ([`ode_solvers::rk::StageInputs`]) and claims the slot whose `t` and
//! `z` equal `(t + cⱼ h, Yⱼ)` bit for bit; unclaimed slots (rejected attempts, the
//! initial-step probe) are recycled, except the one at the new state (the next step's
//! first stage). The backward pass then runs [`Vjp::vjp_saved`] (the reverse pass alone) at
//! the claimed stages and [`Vjp::vjp`] at the others (none found, or past the byte cap
//! [`crate::AdjointSolver::set_residual_bytes`]). Equal inputs make the residuals valid,
//! so the gradients are those without residuals, bit for bit. The backward pass takes its
//! `Yⱼ` from the same function either way, so its VJPs are at the very points the forward
//! solve evaluated.

use core::cell::RefCell;

use ode_solvers::rk::StageInputs;
use ode_solvers::tableau::DenseKind;
use ode_solvers::{Integrator, Method, OdeSystem, Options, Tableau};

use crate::Real;
use crate::dynamics::{Dynamics, Vjp};
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
    /// The stages `k₀ … k_{s−1}` of every step (`s n` values each), as the forward solve
    /// computed them; empty where the stepper does not expose them (then recomputed).
    steps_k: Vec<T>,
    /// Whether `steps_k` holds every step's stages.
    kept: bool,
    /// Where each output interval's steps begin (one more entry than intervals).
    steps_start: Vec<usize>,
    /// The residuals of the forward solve's evaluations.
    pool: Pool<T>,
    /// For every stage of every accepted step, its slot in `pool` ([`NONE`]: not kept).
    stage_slot: Vec<u32>,
    /// The stage inputs as the stepper builds them (set by each forward solve).
    stage_inputs: StageInputs<T>,
    /// Whether `stage_slot` covers every step (residuals kept in the last forward solve).
    saved: bool,
    /// One stage input (forward recording).
    ystage: Vec<T>,
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
    // The interpolant's `d` in `T`, its weights `Wⱼ(θ)` at one output and `f` there.
    dd: Vec<T>,
    wj: Vec<T>,
    fo: Vec<T>,
}

/// No slot.
const NONE: u32 = u32::MAX;

/// `a` and `b` equal bit for bit (as floats: `==` and the same sign; NaN never matches).
fn bit_eq<T: Real>(a: T, b: T) -> bool {
    a == b && a.is_sign_negative() == b.is_sign_negative()
}

/// [`bit_eq`] for every entry.
fn same<T: Real>(x: &[T], y: &[T]) -> bool {
    x.len() == y.len() && x.iter().zip(y).all(|(a, b)| bit_eq(*a, *b))
}

/// The evaluations of a forward solve with their residuals: slot `i` holds the input
/// `z` then the residuals at `data[i (n + r)..(i + 1)(n + r)]` and its time at `ts[i]`.
/// Kept across calls (slots are reused, so a warm solve of the same size allocates
/// nothing).
#[derive(Debug, Clone, Default)]
struct Pool<T> {
    n: usize,
    r: usize,
    data: Vec<T>,
    ts: Vec<T>,
    /// Whether a stage of an accepted step holds the slot (until the next forward solve).
    claimed: Vec<bool>,
    /// Slots holding nothing.
    free: Vec<u32>,
    /// Slots evaluated since the last accepted step (or holding its end state) and not
    /// yet recycled.
    pending: Vec<u32>,
    /// Most slots (the byte cap).
    max_slots: usize,
}

impl<T: Real> Pool<T> {
    /// Bytes one slot holds.
    fn slot_bytes(n: usize, r: usize) -> usize {
        (n + r + 1) * core::mem::size_of::<T>()
    }

    /// Every slot free, for a solve with states of `n` and `r` residuals under `cap` bytes.
    fn reset(&mut self, n: usize, r: usize, cap: usize) {
        if (n, r) != (self.n, self.r) {
            self.data.clear();
            self.ts.clear();
            self.claimed.clear();
            (self.n, self.r) = (n, r);
        }
        self.max_slots = cap / Self::slot_bytes(n, r);
        let slots = self.ts.len().min(self.max_slots);
        self.data.truncate(slots * (n + r));
        self.ts.truncate(slots);
        self.claimed.truncate(slots);
        self.claimed.fill(false);
        self.pending.clear();
        self.free.clear();
        self.free.extend((0..slots as u32).rev());
    }

    /// A slot for an evaluation at `(t, z)` (pending), or `None` at the cap.
    fn acquire(&mut self, t: T, z: &[T]) -> Option<usize> {
        let stride = self.n + self.r;
        let i = match self.free.pop() {
            Some(i) => i as usize,
            None if self.ts.len() < self.max_slots && self.ts.len() < NONE as usize => {
                // Doubling, but never past the cap (a slot may be megabytes).
                let slots = self.ts.len();
                if (slots + 1) * stride > self.data.capacity() {
                    let want = (2 * slots).clamp(slots + 1, self.max_slots);
                    self.data.reserve_exact(want * stride - self.data.len());
                }
                self.data.resize(self.data.len() + stride, T::zero());
                self.ts.push(t);
                self.claimed.push(false);
                self.ts.len() - 1
            }
            None => return None,
        };
        self.data[i * stride..i * stride + self.n].copy_from_slice(z);
        self.ts[i] = t;
        self.pending.push(i as u32);
        Some(i)
    }

    /// Returns the last acquired slot (its evaluation failed).
    fn release_last(&mut self) {
        if let Some(i) = self.pending.pop() {
            self.free.push(i);
        }
    }

    fn z(&self, i: usize) -> &[T] {
        let stride = self.n + self.r;
        &self.data[i * stride..i * stride + self.n]
    }

    fn res(&self, i: usize) -> &[T] {
        let stride = self.n + self.r;
        &self.data[i * stride + self.n..(i + 1) * stride]
    }

    fn res_mut(&mut self, i: usize) -> &mut [T] {
        let stride = self.n + self.r;
        &mut self.data[i * stride + self.n..(i + 1) * stride]
    }

    /// Claims the pending slot evaluated at `(t, z)` bit for bit, if any.
    fn claim(&mut self, t: T, z: &[T]) -> u32 {
        for &i in &self.pending {
            let iu = i as usize;
            if bit_eq(self.ts[iu], t) && same(self.z(iu), z) {
                self.claimed[iu] = true;
                return i;
            }
        }
        NONE
    }

    /// After an accepted step ending at state `y`: the pending slots at `y` stay pending
    /// (the next step's first stage), the others leave it, unclaimed ones to `free`.
    fn settle(&mut self, y: &[T]) {
        let mut keep = 0;
        for idx in 0..self.pending.len() {
            let i = self.pending[idx];
            if same(self.z(i as usize), y) {
                self.pending[keep] = i;
                keep += 1;
            } else if !self.claimed[i as usize] {
                self.free.push(i);
            }
        }
        self.pending.truncate(keep);
    }

    fn bytes(&self) -> usize {
        vec_bytes(&self.data)
            + vec_bytes(&self.ts)
            + vec_bytes(&self.claimed)
            + vec_bytes(&self.free)
            + vec_bytes(&self.pending)
    }
}

/// The forward solve's dynamics: every evaluation with a free slot runs
/// [`Vjp::eval_saving`] into it.
struct Saving<'a, T: Real> {
    d: &'a mut dyn Vjp<T>,
    pool: &'a RefCell<Pool<T>>,
}

impl<T: Real> Dynamics<T> for Saving<'_, T> {
    fn n_states(&self) -> usize {
        self.d.n_states()
    }
    fn n_params(&self) -> usize {
        self.d.n_params()
    }
    fn eval(&mut self, t: T, z: &[T], theta: &[T], out: &mut [T]) -> Result<()> {
        let mut p = self.pool.borrow_mut();
        match p.acquire(t, z) {
            Some(i) => {
                let r = self.d.eval_saving(t, z, theta, out, p.res_mut(i));
                if r.is_err() {
                    p.release_last();
                }
                r
            }
            None => self.d.eval(t, z, theta, out),
        }
    }
}

/// Delegates (the forward solve calls only `eval`).
impl<T: Real> Vjp<T> for Saving<'_, T> {
    fn vjp_z(&mut self, t: T, z: &[T], theta: &[T], a: &[T], out: &mut [T]) -> Result<()> {
        self.d.vjp_z(t, z, theta, a, out)
    }
    fn vjp_theta(&mut self, t: T, z: &[T], theta: &[T], a: &[T], out: &mut [T]) -> Result<()> {
        self.d.vjp_theta(t, z, theta, a, out)
    }
    fn vjp_t(&mut self, t: T, z: &[T], theta: &[T], a: &[T]) -> Result<T> {
        self.d.vjp_t(t, z, theta, a)
    }
}

/// The recorder of a forward solve that keeps residuals in `pool`.
struct Rec<'a, T: Real> {
    d: &'a mut Direct<T>,
    pool: &'a RefCell<Pool<T>>,
    tab: &'static Tableau,
}

impl<T: Real> Recorder<T> for Rec<'_, T> {
    fn interval(&mut self, first_step: Option<T>) {
        self.d.interval(first_step);
    }

    fn step(
        &mut self,
        count: usize,
        st: &mut Integrator<T>,
        sys: &mut dyn OdeSystem<T>,
    ) -> Result<()> {
        self.d.step(count, st, sys)?;
        let Some(info) = st.last_step() else {
            return Ok(());
        };
        let d = &mut *self.d;
        let mut p = self.pool.borrow_mut();
        if !d.kept || !d.saved {
            d.saved = false;
            p.settle(st.y());
            return Ok(());
        }
        let (tab, n) = (self.tab, st.y().len());
        let s = tab.stages;
        let st_i = d.steps.len() - 1;
        let y0 = &d.steps_y[st_i * n..(st_i + 1) * n];
        let k = &d.steps_k[st_i * s * n..(st_i + 1) * s * n];
        let (t, h) = (info.t_prev, info.h);
        for j in 0..s {
            d.stage_inputs.input(j, y0, h, k, &mut d.ystage);
            let tj = t + T::from_f64_const(tab.c[j]) * h;
            d.stage_slot.push(p.claim(tj, &d.ystage));
        }
        p.settle(st.y());
        Ok(())
    }

    fn finish(&mut self) {
        self.d.finish();
    }

    fn bytes(&self) -> usize {
        self.d.bytes() + self.pool.borrow().bytes() + vec_bytes(&self.d.stage_slot)
    }
}

/// The dense-output weights `d` of an adaptive FSAL tableau whose interpolant is a
/// combination of the step's stages (empty for cubic Hermite); `None` otherwise.
fn interpolant(tab: &Tableau) -> Option<&'static [f64]> {
    if !tab.fsal || !tab.is_adaptive() {
        return None;
    }
    match tab.dense {
        DenseKind::Hermite => Some(&[]),
        DenseKind::Dopri5 { d } => Some(d),
        DenseKind::Dop853(_) => None,
    }
}

/// The interpolant's stage weights `w[j] = Wⱼ(θ)` (see the module docs) for `b` (length
/// `s`) and Dopri5's `d` (empty: Hermite).
fn weights<T: Real>(theta: T, b: &[T], d: &[T], w: &mut [T]) {
    let s = b.len();
    let one = T::one();
    let two = one + one;
    let three = two + one;
    let (th2, om) = (theta * theta, one - theta);
    let th3 = th2 * theta;
    let a = three * th2 - two * th3;
    let r = th2 * om * om;
    for j in 0..s {
        let dj = d.get(j).copied().unwrap_or(T::zero());
        w[j] = a * b[j] + r * dj;
    }
    w[0] += theta * om * om;
    w[s - 1] += th3 - th2;
}

/// `Σ xᵢ yᵢ`.
fn dot<T: Real>(x: &[T], y: &[T]) -> T {
    x.iter().zip(y).map(|(a, b)| *a * *b).sum()
}

/// `acc += v` elementwise: every stage VJP's parameter gradient (`P` values, the backward
/// pass's one long loop outside the field). For `f64` compiled for AVX-512 or AVX2 when
/// the CPU has them (this crate is built for baseline x86-64, whose 2-wide loop took a
/// tenth of a W2 gradient at B = 16); the same sums, so the same bits.
fn add_into<T: Real>(acc: &mut [T], v: &[T]) {
    #[cfg(target_arch = "x86_64")]
    if core::any::TypeId::of::<T>() == core::any::TypeId::of::<f64>() {
        #[target_feature(enable = "avx512f")]
        fn wide512(acc: &mut [f64], v: &[f64]) {
            for (a, b) in acc.iter_mut().zip(v) {
                *a += *b;
            }
        }
        #[target_feature(enable = "avx2")]
        fn wide256(acc: &mut [f64], v: &[f64]) {
            for (a, b) in acc.iter_mut().zip(v) {
                *a += *b;
            }
        }
        // SAFETY: `T` is `f64` (same type id), so the slices reinterpret to themselves.
        let (acc, v) = unsafe {
            (
                crate::cast::cast_mut::<T, f64>(acc),
                crate::cast::cast::<T, f64>(v),
            )
        };
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: AVX-512F was detected just above.
            unsafe { wide512(acc, v) };
            return;
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 was detected just above.
            unsafe { wide256(acc, v) };
            return;
        }
        for (a, b) in acc.iter_mut().zip(v) {
            *a += *b;
        }
        return;
    }
    for (a, b) in acc.iter_mut().zip(v) {
        *a += *b;
    }
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
        _count: usize,
        st: &mut Integrator<T>,
        _sys: &mut dyn OdeSystem<T>,
    ) -> Result<()> {
        if let Some(info) = st.last_step() {
            self.steps.push((info.t_prev, info.h));
            self.steps_y.extend_from_slice(st.y_prev());
            match st.last_stages() {
                Some((k0, rest)) if self.kept => {
                    self.steps_k.extend_from_slice(k0);
                    self.steps_k.extend_from_slice(rest);
                }
                _ => {
                    self.kept = false;
                    self.steps_k.clear();
                }
            }
        }
        Ok(())
    }

    fn finish(&mut self) {
        self.steps_start.push(self.steps.len());
    }

    fn bytes(&self) -> usize {
        vec_bytes(&self.steps_y) + vec_bytes(&self.steps_k) + vec_bytes(&self.steps)
    }
}

impl<T: Real> ModeImpl<T> for Direct<T> {
    fn check(&self, method: Method, _options: &Options<T>, _dynamics: &dyn Vjp<T>) -> Result<()> {
        tableau_of(method, WHAT).map(|_| ())
    }

    fn forward(&mut self, ctx: &mut Context<T>, dynamics: &mut dyn Vjp<T>) -> Result<()> {
        self.steps.clear();
        self.steps_y.clear();
        self.steps_k.clear();
        self.kept = true;
        self.steps_start.clear();
        self.stage_slot.clear();
        let tab = tableau_of(ctx.method, WHAT)?;
        self.stage_inputs.reset(tab, ctx.n);
        let dense = ctx.dense_path(interpolant(tab).is_some());
        let (n, r) = (ctx.n, dynamics.residual_len());
        self.saved = r > 0 && ctx.residual_bytes >= Pool::<T>::slot_bytes(n, r);
        if !self.saved {
            return ctx.solve_plain(dynamics, self, dense);
        }
        self.ystage.resize(n, T::zero());
        let pool = RefCell::new(core::mem::take(&mut self.pool));
        pool.borrow_mut().reset(n, r, ctx.residual_bytes);
        let res = {
            let mut sys = Saving {
                d: dynamics,
                pool: &pool,
            };
            let mut rec = Rec {
                d: self,
                pool: &pool,
                tab,
            };
            ctx.solve_plain(&mut sys, &mut rec, dense)
        };
        self.pool = pool.into_inner();
        res
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
            steps_k,
            kept,
            steps_start,
            pool,
            stage_slot,
            stage_inputs,
            saved,
            ystage: _,
            a,
            b,
            c,
            yst,
            k,
            kbar,
            ybar,
            ybar_j,
            thbar_j,
            dd,
            wj,
            fo,
        } = self;
        dd.clear();
        dd.extend(
            interpolant(tab)
                .unwrap_or(&[])
                .iter()
                .map(|&x| T::from_f64_const(x)),
        );
        zeroed(wj, s);
        zeroed(fo, n);
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
        // Residuals kept for every stage, by these dynamics (same length).
        let use_res = *saved
            && pool.r > 0
            && pool.n == n
            && dynamics.residual_len() == pool.r
            && stage_slot.len() == steps.len() * s;
        let nt = ctx.ts.len();
        let tg = ctx.time_grads;
        ybar.copy_from_slice(&dl_dz[(nt - 1) * n..]);
        // Outputs inside the one integration of the dense path, going backwards.
        let interior = ctx.dense_outputs;
        let mut next_out = nt.saturating_sub(2);
        for (ia, ib) in ctx.integrations().rev() {
            let (ta, tb) = (ctx.ts[ia], ctx.ts[ib]);
            let delta = tb - ta;
            let jint = if interior { 0 } else { ia };
            for st in (steps_start[jint]..steps_start[jint + 1]).rev() {
                let (t, h) = steps[st];
                let y0 = &steps_y[st * n..(st + 1) * n];
                // A step holding outputs needs every stage its interpolant weighs.
                let has_out = interior && next_out >= 1 && ctx.out_step[next_out] == st;
                let s_need = if has_out { s } else { s_used };
                // The stages: kept from the forward solve, else recomputed; their inputs
                // `Y_j` rebuilt from them.
                if *kept {
                    k.copy_from_slice(&steps_k[st * s * n..(st + 1) * s * n]);
                }
                for j in 0..s_need {
                    // As the stepper computed it: the point the forward solve evaluated.
                    let yj = &mut yst[j * n..(j + 1) * n];
                    stage_inputs.input(j, y0, h, k, yj);
                    if !*kept {
                        dynamics.eval(t + c[j] * h, yj, &ctx.theta, &mut k[j * n..(j + 1) * n])?;
                    }
                }
                if !*kept {
                    ctx.stats.backward_nfe += s_need;
                }
                // Reverse: y1 = y0 + h Σ b_j k_j. The dot products (sequential sums, so
                // scalar loops) feed only the time gradients `h̄`, `t̄`: skipped without.
                let mut hbar = T::zero();
                let mut tbar = T::zero();
                for j in 0..s_used {
                    let kb = &mut kbar[j * n..(j + 1) * n];
                    let w = h * b[j];
                    for (v, &yb) in kb.iter_mut().zip(ybar.iter()) {
                        *v = w * yb;
                    }
                    if tg {
                        hbar += b[j] * dot(ybar, &k[j * n..(j + 1) * n]);
                    }
                }
                kbar[s_used * n..s_need * n].fill(T::zero());
                // Outputs from this step's interpolant z(τ) = y0 + h Σ W_j(θ) k_j.
                while interior && next_out >= 1 && ctx.out_step[next_out] == st {
                    let o = next_out;
                    let g = &dl_dz[o * n..(o + 1) * n];
                    if g.iter().all(|x| *x == T::zero()) {
                        next_out -= 1;
                        continue;
                    }
                    let theta = (ctx.ts[o] - t) / h;
                    weights(theta, b, dd, wj);
                    let mut sw = T::zero();
                    for j in 0..s {
                        if tg {
                            sw += wj[j] * dot(g, &k[j * n..(j + 1) * n]);
                        }
                        let w = h * wj[j];
                        for (kb, gq) in kbar[j * n..(j + 1) * n].iter_mut().zip(g) {
                            *kb += w * *gq;
                        }
                    }
                    // ∂z/∂τ: the interpolant's slope Σ W_j' k_j is only O(h⁴)-close to the
                    // field, which the exact dz(τ)/dτ is; `f(τ, z(τ))` (one evaluation) keeps
                    // dL/dτ as accurate as the continuous modes'. With it, ∂z/∂t = −f and
                    // ∂z/∂h = Σ W_j k_j − θ f (a shift of every time leaves z unchanged).
                    // Only the time gradients read `gf`: skip its evaluation without them.
                    if ctx.time_grads {
                        dynamics.eval(ctx.ts[o], ctx.z(o), &ctx.theta, fo)?;
                        ctx.stats.backward_nfe += 1;
                        let gf: T = g.iter().zip(fo.iter()).map(|(x, y)| *x * *y).sum();
                        grads.ts[o] += gf;
                        tbar -= gf;
                        hbar += sw - theta * gf;
                    }
                    for (v, gq) in ybar.iter_mut().zip(g) {
                        *v += *gq;
                    }
                    next_out -= 1;
                }
                // ybar (for y0) keeps its value: ∂y1/∂y0 = I plus the stage terms below.
                for j in (0..s_need).rev() {
                    let kb = &kbar[j * n..(j + 1) * n];
                    if kb.iter().all(|x| *x == T::zero()) {
                        continue;
                    }
                    let (tj, yj) = (t + c[j] * h, &yst[j * n..(j + 1) * n]);
                    let slot = if use_res {
                        stage_slot[st * s + j]
                    } else {
                        NONE
                    };
                    let tau = if slot == NONE {
                        dynamics.vjp(tj, yj, &ctx.theta, kb, ybar_j, thbar_j)?
                    } else {
                        let i = slot as usize;
                        debug_assert!(same(pool.z(i), yj) && pool.ts[i] == tj);
                        ctx.stats.backward_vjp_saved += 1;
                        dynamics.vjp_saved(tj, yj, &ctx.theta, pool.res(i), kb, ybar_j, thbar_j)?
                    };
                    ctx.stats.backward_vjp += 1;
                    add_into(&mut grads.theta, thbar_j);
                    tbar += tau;
                    hbar += c[j] * tau;
                    for (v, &yb) in ybar.iter_mut().zip(ybar_j.iter()) {
                        *v += yb;
                    }
                    for (l, &al) in a[j * s..(j + 1) * s].iter().enumerate() {
                        if al != T::zero() {
                            let w = h * al;
                            for (v, &yb) in kbar[l * n..(l + 1) * n].iter_mut().zip(ybar_j.iter()) {
                                *v += w * yb;
                            }
                            if tg {
                                hbar += al * dot(ybar_j, &k[l * n..(l + 1) * n]);
                            }
                        }
                    }
                }
                // t = ta + frac·Δ, h = σ·Δ.
                let frac = (t - ta) / delta;
                let sigma = h / delta;
                grads.ts[ia] += tbar * (T::one() - frac) - hbar * sigma;
                grads.ts[ib] += tbar * frac + hbar * sigma;
            }
            for (v, g) in ybar.iter_mut().zip(&dl_dz[ia * n..(ia + 1) * n]) {
                *v += *g;
            }
        }
        if nt == 1 {
            // No interval: only the direct term.
            ybar.copy_from_slice(&dl_dz[..n]);
        }
        grads.z0.copy_from_slice(ybar);
        let sz = core::mem::size_of::<T>();
        let res_bytes = if *saved {
            pool.bytes() + vec_bytes(stage_slot)
        } else {
            0
        };
        Ok(vec_bytes(&ctx.zs)
            + vec_bytes(steps_y)
            + vec_bytes(steps_k)
            + vec_bytes(steps)
            + res_bytes
            + (3 * s * n + 2 * n + p) * sz)
    }

    fn box_clone(&self) -> Box<dyn ModeImpl<T>> {
        Box::new(self.clone())
    }
}
