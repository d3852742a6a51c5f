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

use ode_solvers::tableau::DenseKind;
use ode_solvers::{Integrator, Method, OdeSystem, Options, Tableau};

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
    /// The stages `k₀ … k_{s−1}` of every step (`s n` values each), as the forward solve
    /// computed them; empty where the stepper does not expose them (then recomputed).
    steps_k: Vec<T>,
    /// Whether `steps_k` holds every step's stages.
    kept: bool,
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
    // The interpolant's `d` in `T`, its weights `Wⱼ(θ)` at one output and `f` there.
    dd: Vec<T>,
    wj: Vec<T>,
    fo: Vec<T>,
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
        let tab = tableau_of(ctx.method, WHAT)?;
        let dense = ctx.dense_path(interpolant(tab).is_some());
        ctx.solve_plain(dynamics, self, dense)
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
        Ok(vec_bytes(&ctx.zs)
            + vec_bytes(steps_y)
            + vec_bytes(steps_k)
            + vec_bytes(steps)
            + (3 * s * n + 2 * n + p) * sz)
    }

    fn box_clone(&self) -> Box<dyn ModeImpl<T>> {
        Box::new(self.clone())
    }
}
