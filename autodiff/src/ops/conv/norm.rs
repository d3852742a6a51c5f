//! Group normalisation, with or without its per-channel affine part fused in.
//!
//! Per sample and group of `C/G` channels (`m` elements), `x̂ = (x − μ) r` with
//! `r = 1/√(σ² + ε)`; the op's output is `x̂` (inputs `[x]`) or `γ_c x̂ + β_c` (inputs
//! `[x, γ, β]`, `γ`, `β` of length `C`: one pass instead of a normalisation and two
//! broadcast ops, and one reverse pass instead of three).
//!
//! VJP with `g' = γ_c g` (`g' = g` without the affine part):
//! `∂x = r (g' − mean(g') − x̂ · mean(g' ⊙ x̂))`, `∂γ_c = Σ g x̂`, `∂β_c = Σ g` (sums over
//! the samples and positions of channel `c`). The fused backward computes, per channel,
//! `Σ g` and `Σ g (x − μ)` in one pass and writes `∂x = A_c g + B (x − μ) + C` in a second:
//! `A_c = r γ_c`, `B = −r² mean(g' x̂)`, `C = −r mean(g')`.
//!
//! The affine form may carry the ReLU that follows it (`max(γ_c x̂ + β_c, 0)`, one node:
//! the pre-activation is never stored and the ReLU costs no pass of its own); its VJP
//! masks the incoming gradient, `g ← g·[y > 0]` (`y > 0` exactly where the
//! pre-activation is), group by group in a scratch buffer before the affine VJP above.
//! Values are those of the unfused `relu(group_norm_affine(x))`, bit for bit.

use crate::ops::Op;
use crate::tape::{Id, Inner, split_grad};
use crate::{Error, Float, Shape};

impl<T: Float> Inner<T> {
    /// Group normalisation of `[n, c, ...]` over groups of `c / groups` channels.
    pub(crate) fn group_norm(&mut self, x: Id, groups: usize, eps: T) -> Id {
        self.group_norm_impl(x, None, groups, eps, false)
    }

    /// Group normalisation with the affine part fused: `γ_c x̂ + β_c` for `γ`, `β` of
    /// `c` elements each (any shape).
    pub(crate) fn group_norm_affine(
        &mut self,
        x: Id,
        gamma: Id,
        beta: Id,
        groups: usize,
        eps: T,
    ) -> Id {
        self.group_norm_impl(x, Some((gamma, beta)), groups, eps, false)
    }

    /// `max(γ_c x̂ + β_c, 0)`: [`Inner::group_norm_affine`] with the ReLU that follows it
    /// in the same node.
    pub(crate) fn group_norm_affine_relu(
        &mut self,
        x: Id,
        gamma: Id,
        beta: Id,
        groups: usize,
        eps: T,
    ) -> Id {
        self.group_norm_impl(x, Some((gamma, beta)), groups, eps, true)
    }

    fn group_norm_impl(
        &mut self,
        x: Id,
        affine: Option<(Id, Id)>,
        groups: usize,
        eps: T,
        relu: bool,
    ) -> Id {
        let n = self.node(x);
        let s = n.shape;
        if s.rank() < 2 || groups == 0 || !s.dim(1).is_multiple_of(groups) || s.is_empty() {
            return self.fail(Error::InvalidArgument {
                op: "group_norm",
                shape: s,
                reason: "needs [n, c, ...] with c divisible by the number of groups",
            });
        }
        let c = s.dim(1);
        let ab = affine.map(|(g, b)| (self.node(g), self.node(b)));
        if let Some((gn, bn)) = ab
            && (gn.shape.len() != c || bn.shape.len() != c)
        {
            return self.fail(Error::ShapeMismatch {
                op: "group_norm_affine",
                lhs: s,
                rhs: if gn.shape.len() != c {
                    gn.shape
                } else {
                    bn.shape
                },
            });
        }
        let batch = s.dim(0);
        let m = s.len() / (batch * groups);
        let aux = self.aux.len();
        self.aux.resize(aux + 2 * batch * groups, T::zero());
        let off = self.alloc_uninit(s.len());
        let (src, dst) = self.vals.split_at_mut(off);
        let (xs, ys) = (&src[n.off..n.off + s.len()], &mut dst[..s.len()]);
        let stats = &mut self.aux[aux..aux + 2 * batch * groups];
        let op = Op::GroupNorm {
            groups,
            aux,
            eps,
            relu: relu && affine.is_some(),
        };
        match (affine, ab) {
            (Some((g, b)), Some((gn, bn))) => {
                let gamma = &src[gn.off..gn.off + c];
                let beta = &src[bn.off..bn.off + c];
                gn_affine_fwd_dispatch(xs, ys, stats, gamma, beta, c / groups, eps, relu);
                self.push(op, s, off, &[x, g, b])
            }
            _ => {
                gn_fwd_dispatch(xs, ys, stats, m, eps);
                self.push(op, s, off, &[x])
            }
        }
    }
}

/// Sum of `f(v)` over `xs` in 32 independent lanes (vectorised; the order of the
/// additions differs from a sequential sum by rounding only).
#[inline(always)]
pub(super) fn lane_sum<T: Float>(xs: &[T], f: impl Fn(T) -> T) -> T {
    const L: usize = 32;
    let mut acc = [T::zero(); L];
    let mut it = xs.chunks_exact(L);
    for c in &mut it {
        for k in 0..L {
            acc[k] += f(c[k]);
        }
    }
    let mut w = L;
    while w > 1 {
        w /= 2;
        for k in 0..w {
            acc[k] += acc[k + w];
        }
    }
    it.remainder().iter().fold(acc[0], |a, &v| a + f(v))
}

/// `(Σ g, Σ g (x − μ))` in 16 independent lanes.
#[inline(always)]
fn lane_sum2<T: Float>(g: &[T], x: &[T], mu: T) -> (T, T) {
    const L: usize = 16;
    let (mut a, mut b) = ([T::zero(); L], [T::zero(); L]);
    let (mut gc, mut xc) = (g.chunks_exact(L), x.chunks_exact(L));
    for (gk, xk) in (&mut gc).zip(&mut xc) {
        for k in 0..L {
            a[k] += gk[k];
            b[k] += gk[k] * (xk[k] - mu);
        }
    }
    let (mut sa, mut sb) = (T::zero(), T::zero());
    for k in 0..L {
        sa += a[k];
        sb += b[k];
    }
    for (&gv, &xv) in gc.remainder().iter().zip(xc.remainder()) {
        sa += gv;
        sb += gv * (xv - mu);
    }
    (sa, sb)
}

/// [`gn_fwd`] compiled for the widest vector unit the CPU has.
pub(super) fn gn_fwd_dispatch<T: Float>(xs: &[T], ys: &mut [T], stats: &mut [T], m: usize, eps: T) {
    crate::vmath::simd_dispatch!(gn_fwd::<T>(xs: &[T], ys: &mut [T], stats: &mut [T], m: usize, eps: T) -> ())
}

/// [`gn_back`] compiled for the widest vector unit the CPU has.
pub(super) fn gn_back_dispatch<T: Float>(
    gy: &[T],
    y: &[T],
    gx: &mut [T],
    st: &[T],
    m: usize,
    a: bool,
) {
    crate::vmath::simd_dispatch!(gn_back::<T>(gy: &[T], y: &[T], gx: &mut [T], st: &[T], m: usize, a: bool) -> ())
}

/// [`gn_affine_fwd`] compiled for the widest vector unit the CPU has.
#[allow(clippy::too_many_arguments)]
fn gn_affine_fwd_dispatch<T: Float>(
    xs: &[T],
    ys: &mut [T],
    st: &mut [T],
    gamma: &[T],
    beta: &[T],
    cg: usize,
    eps: T,
    relu: bool,
) {
    crate::vmath::simd_dispatch!(gn_affine_fwd::<T>(xs: &[T], ys: &mut [T], st: &mut [T], gamma: &[T], beta: &[T], cg: usize, eps: T, relu: bool) -> ())
}

/// [`gn_affine_back`] compiled for the widest vector unit the CPU has.
#[allow(clippy::too_many_arguments)]
fn gn_affine_back_dispatch<T: Float>(
    gy: &[T],
    x: &[T],
    gx: Option<&mut [T]>,
    st: &[T],
    gamma: &[T],
    cs: &mut [T],
    cg: usize,
    assign: bool,
    mask: Option<(&[T], &mut [T])>,
) {
    crate::vmath::simd_dispatch!(gn_affine_back::<T>(gy: &[T], x: &[T], gx: Option<&mut [T]>, st: &[T], gamma: &[T], cs: &mut [T], cg: usize, assign: bool, mask: Option<(&[T], &mut [T])>) -> ())
}

/// `(μ, r)` of one group (two passes for the moments, as stable as the textbook
/// formula).
#[inline(always)]
fn moments<T: Float>(x: &[T], eps: T) -> (T, T) {
    let inv_m = T::one() / T::from_f64_const(x.len() as f64);
    let mu = lane_sum(x, |v| v) * inv_m;
    let var = lane_sum(x, |v| (v - mu) * (v - mu)) * inv_m;
    (mu, T::one() / (var + eps).sqrt())
}

/// Group-norm forward over groups of `m` consecutive elements: `y = (x − μ) r`;
/// `stats[2q], stats[2q + 1] = μ, r` of group `q`.
#[inline(always)]
fn gn_fwd<T: Float>(xs: &[T], ys: &mut [T], stats: &mut [T], m: usize, eps: T) {
    let groups = xs.chunks_exact(m).zip(ys.chunks_exact_mut(m));
    for ((x, y), st) in groups.zip(stats.chunks_exact_mut(2)) {
        let (mu, r) = moments(x, eps);
        for (d, &v) in y.iter_mut().zip(x) {
            *d = (v - mu) * r;
        }
        st[0] = mu;
        st[1] = r;
    }
}

/// Group-norm forward with the affine part: `y = (x − μ) (r γ_c) + β_c` over groups of
/// `cg` channels (`γ.len()` channels per sample, `stats.len() / 2` groups in all);
/// `max(y, 0)` if `relu`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn gn_affine_fwd<T: Float>(
    xs: &[T],
    ys: &mut [T],
    stats: &mut [T],
    gamma: &[T],
    beta: &[T],
    cg: usize,
    eps: T,
    relu: bool,
) {
    let z = T::zero();
    let nq = stats.len() / 2;
    let m = xs.len() / nq;
    let (hw, per) = (m / cg, gamma.len() / cg);
    let groups = xs.chunks_exact(m).zip(ys.chunks_exact_mut(m));
    for (q, ((x, y), st)) in groups.zip(stats.chunks_exact_mut(2)).enumerate() {
        let (mu, r) = moments(x, eps);
        let c0 = (q % per) * cg;
        let chans = x.chunks_exact(hw).zip(y.chunks_exact_mut(hw));
        for ((xc, yc), (&ga, &be)) in chans.zip(gamma[c0..c0 + cg].iter().zip(&beta[c0..])) {
            let a = r * ga;
            let xc = &xc[..yc.len()];
            if relu {
                // The unfused ReLU's expression, so the values are the same bits.
                for k in 0..yc.len() {
                    let v = (xc[k] - mu) * a + be;
                    yc[k] = if v > z { v } else { z };
                }
            } else {
                for k in 0..yc.len() {
                    yc[k] = (xc[k] - mu) * a + be;
                }
            }
        }
        st[0] = mu;
        st[1] = r;
    }
}

/// Group-norm VJP, one reduction pass and one write pass per group:
/// `∂x (+)= r (g − mean(g) − y · mean(g ⊙ y))` (`=` when `assign`).
#[inline(always)]
fn gn_back<T: Float>(gy: &[T], y: &[T], gx: &mut [T], stats: &[T], m: usize, assign: bool) {
    const L: usize = 16;
    let inv_m = T::one() / T::from_f64_const(m as f64);
    let groups = gy.chunks_exact(m).zip(y.chunks_exact(m));
    for (((g, y), gx), st) in groups
        .zip(gx.chunks_exact_mut(m))
        .zip(stats.chunks_exact(2))
    {
        let (mut a, mut b) = ([T::zero(); L], [T::zero(); L]);
        let (mut gc, mut yc) = (g.chunks_exact(L), y.chunks_exact(L));
        for (gk, yk) in (&mut gc).zip(&mut yc) {
            for k in 0..L {
                a[k] += gk[k];
                b[k] += gk[k] * yk[k];
            }
        }
        let (mut sg, mut sgy) = (T::zero(), T::zero());
        for k in 0..L {
            sg += a[k];
            sgy += b[k];
        }
        for (&gv, &yv) in gc.remainder().iter().zip(yc.remainder()) {
            sg += gv;
            sgy += gv * yv;
        }
        let (r, mg, mgy) = (st[1], sg * inv_m, sgy * inv_m);
        let it = gx.iter_mut().zip(g).zip(y);
        if assign {
            it.for_each(|((d, &gv), &yv)| *d = r * (gv - mg - yv * mgy));
        } else {
            it.for_each(|((d, &gv), &yv)| *d += r * (gv - mg - yv * mgy));
        }
    }
}

/// VJP of the affine group norm: `∂x (+)=` (if `gx` is given; `=` when `assign`) and
/// the channel sums `cs[2c] += Σ g`, `cs[2c + 1] += Σ g x̂` (`∂β`, `∂γ`). With
/// `mask = (y, buf)` (the fused ReLU's output and a buffer of one group), `g·[y > 0]`
/// stands for `g`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn gn_affine_back<T: Float>(
    gy: &[T],
    x: &[T],
    mut gx: Option<&mut [T]>,
    stats: &[T],
    gamma: &[T],
    cs: &mut [T],
    cg: usize,
    assign: bool,
    mut mask: Option<(&[T], &mut [T])>,
) {
    let (z, one) = (T::zero(), T::one());
    let nq = stats.len() / 2;
    let m = gy.len() / nq;
    let (hw, per) = (m / cg, gamma.len() / cg);
    let inv_m = T::one() / T::from_f64_const(m as f64);
    for (q, st) in stats.chunks_exact(2).enumerate() {
        let (mu, r) = (st[0], st[1]);
        let c0 = (q % per) * cg;
        let (mut g, xq) = (&gy[q * m..(q + 1) * m], &x[q * m..(q + 1) * m]);
        if let Some((y, buf)) = mask.as_mut() {
            // The unfused ReLU VJP's product, so the values are the same bits.
            let (yq, buf) = (&y[q * m..(q + 1) * m], &mut buf[..m]);
            for k in 0..m {
                buf[k] = g[k] * if yq[k] > z { one } else { z };
            }
            g = buf;
        }
        let (mut sg, mut sgx) = (T::zero(), T::zero());
        for k in 0..cg {
            let (s1, s2) = lane_sum2(&g[k * hw..(k + 1) * hw], &xq[k * hw..(k + 1) * hw], mu);
            let c = c0 + k;
            cs[2 * c] += s1;
            cs[2 * c + 1] += s2 * r;
            sg += gamma[c] * s1;
            sgx += gamma[c] * s2 * r;
        }
        let Some(gx) = gx.as_deref_mut() else {
            continue;
        };
        let (b, cc) = (-(r * r) * sgx * inv_m, -r * sg * inv_m);
        let gxq = &mut gx[q * m..(q + 1) * m];
        for k in 0..cg {
            let a = r * gamma[c0 + k];
            let rng = k * hw..(k + 1) * hw;
            let it = gxq[rng.clone()]
                .iter_mut()
                .zip(&g[rng.clone()])
                .zip(&xq[rng]);
            if assign {
                it.for_each(|((d, &gv), &xv)| *d = a * gv + b * (xv - mu) + cc);
            } else {
                it.for_each(|((d, &gv), &xv)| *d += a * gv + b * (xv - mu) + cc);
            }
        }
    }
}

/// Fast VJP of a `GroupNorm` node.
pub(super) fn backward<T: Float>(t: &mut Inner<T>, i: usize) {
    let n = t.nodes[i];
    let Op::GroupNorm {
        groups, aux, relu, ..
    } = n.op
    else {
        return;
    };
    let xn = t.nodes[n.inputs[0] as usize];
    let Inner {
        grads,
        vals,
        scratch,
        aux: t_aux,
        nodes,
        assign,
        goff,
        ..
    } = t;
    let (lo, gy) = split_grad(grads, goff, &n, i);
    let batch = xn.shape.dim(0);
    let m = xn.shape.len() / (batch * groups);
    let stats = &t_aux[aux..aux + 2 * batch * groups];
    let xa = assign[n.inputs[0] as usize];
    if n.n_in < 3 {
        if !xn.rg {
            return;
        }
        let y = &vals[n.off..n.off + n.shape.len()];
        let gx = &mut lo[xn.off..xn.off + xn.shape.len()];
        gn_back_dispatch(gy, y, gx, stats, m, xa);
        return;
    }
    let (gi, bi) = (n.inputs[1] as usize, n.inputs[2] as usize);
    let (gn, bn) = (nodes[gi], nodes[bi]);
    let c = xn.shape.dim(1);
    let x = &vals[xn.off..xn.off + xn.shape.len()];
    let gamma = &vals[gn.off..gn.off + c];
    // Grow only: the convolutions keep their im2col buffer in `scratch`, and shrinking
    // it would make the next one re-zero all of it.
    let need = 2 * c + if relu { m } else { 0 };
    if scratch.len() < need {
        scratch.resize(need, T::zero());
    }
    let (scratch, buf) = scratch[..need].split_at_mut(2 * c);
    scratch.fill(T::zero());
    let mask = relu.then(|| (&vals[n.off..n.off + n.shape.len()], buf));
    let gx = xn.rg.then(|| &mut lo[xn.off..xn.off + xn.shape.len()]);
    gn_affine_back_dispatch(gy, x, gx, stats, gamma, scratch, c / groups, xa, mask);
    // After ∂x: the parameter gradients may share an arena range with it (views).
    for (node, id, k) in [(gn, gi, 1), (bn, bi, 0)] {
        if !node.rg {
            continue;
        }
        let d = &mut lo[node.off..node.off + c];
        let src = scratch.iter().skip(k).step_by(2);
        if assign[id] {
            d.iter_mut().zip(src).for_each(|(d, &v)| *d = v);
        } else {
            d.iter_mut().zip(src).for_each(|(d, &v)| *d += v);
        }
    }
}

/// VJP of a `GroupNorm` node as tape operations (every factor recomputed as tape ops,
/// so that the result is differentiable again).
pub(super) fn backward_graph<T: Float>(t: &mut Inner<T>, i: usize, g: Id) -> Result<(), Error> {
    let n = t.nodes[i];
    let Op::GroupNorm {
        groups, eps, relu, ..
    } = n.op
    else {
        return Ok(());
    };
    // The fused ReLU: g·step(y) (`y > 0` exactly where the pre-activation is).
    let g = if relu {
        let m = t.unary(super::super::UnOp::Step, i as Id);
        t.mul(g, m)
    } else {
        g
    };
    let x = n.inputs[0];
    let sx = t.nodes[x as usize].shape;
    let batch = sx.dim(0);
    let m = sx.len() / (batch * groups);
    let s3 = Shape::new(&[batch, groups, m]).unwrap_or_default();
    let s2 = Shape::new(&[batch, groups, 1]).unwrap_or_default();
    let xr = t.view(x, 0, s3);
    let mu = t.reduce_axis(xr, 2, true);
    let mu = t.view(mu, 0, s2);
    let c = t.sub(xr, mu);
    let c2 = t.unary(super::super::UnOp::Square, c);
    let var = t.reduce_axis(c2, 2, true);
    let var = t.scalar_op(var, eps, true);
    let sd = t.unary(super::super::UnOp::Sqrt, var);
    let sd = t.view(sd, 0, s2);
    let y = t.div(c, sd);
    // With the affine part: g' = γ g (γ as [c, 1, ...]), ∂γ = Σ g x̂, ∂β = Σ g.
    let g = if n.n_in == 3 {
        let (gam, bet) = (n.inputs[1], n.inputs[2]);
        let mut d = [1usize; 6];
        d[0] = sx.dim(1);
        let cs = Shape::new(&d[..sx.rank() - 1]).unwrap_or_default();
        let gv = t.view(gam, 0, cs);
        if t.nodes[gam as usize].rg {
            let yx = t.view(y, 0, sx);
            let gy = t.mul(g, yx);
            let s = t.sum_to(gy, cs);
            let sg = t.nodes[gam as usize].shape;
            let v = t.view(s, 0, sg);
            t.acc_gvar(gam, v);
        }
        if t.nodes[bet as usize].rg {
            let s = t.sum_to(g, cs);
            let sb = t.nodes[bet as usize].shape;
            let v = t.view(s, 0, sb);
            t.acc_gvar(bet, v);
        }
        if !t.nodes[x as usize].rg {
            return Ok(());
        }
        t.mul(g, gv)
    } else {
        g
    };
    if !t.nodes[x as usize].rg {
        return Ok(());
    }
    let gr = t.view(g, 0, s3);
    let mg = t.reduce_axis(gr, 2, true);
    let mg = t.view(mg, 0, s2);
    let gy = t.mul(gr, y);
    let mgy = t.reduce_axis(gy, 2, true);
    let mgy = t.view(mgy, 0, s2);
    let a = t.sub(gr, mg);
    let b = t.mul(y, mgy);
    let d = t.sub(a, b);
    let d = t.div(d, sd);
    let v = t.view(d, 0, sx);
    t.acc_gvar(x, v);
    Ok(())
}
