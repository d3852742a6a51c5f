//! Convolution family: `conv2d` (stride, zero padding; im2col + faer GEMM per sample),
//! average pooling, adaptive average pooling to 1×1, and group normalisation.
//!
//! conv2d: `y[n,o,i,j] = Σ_{c,p,q} w[o,c,p,q] · x[n,c, i·s+p−pad, j·s+q−pad]`; per sample
//! `Y_n = W · col(X_n)` with `W` as `O × (C·kh·kw)`, so `∂W += G_n · col(X_n)ᵀ` and
//! `∂X_n += col⁻¹(Wᵀ · G_n)` (col2im scatters back).
//!
//! group norm: per sample and group of `C/G` channels, `y = (x − μ) / √(σ² + ε)`; the
//! VJP is `∂x = r (g − mean(g) − y · mean(g ⊙ y))` with `r = 1/√(σ² + ε)` (affine scale
//! and shift are ordinary broadcast `mul`/`add` with `[C, 1, 1]` tensors).

use super::Op;
use crate::tape::{Id, Inner};
use crate::{Error, Float, Shape};

#[derive(Clone, Copy)]
struct Geo {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    o: usize,
    kh: usize,
    kw: usize,
    ho: usize,
    wo: usize,
    s: usize,
    p: usize,
}

fn geo(x: Shape, w: Shape, s: usize, p: usize) -> Option<Geo> {
    if x.rank() != 4 || w.rank() != 4 || s == 0 || x.dim(1) != w.dim(1) {
        return None;
    }
    let (h, wd, kh, kw) = (x.dim(2), x.dim(3), w.dim(2), w.dim(3));
    if h + 2 * p < kh || wd + 2 * p < kw {
        return None;
    }
    Some(Geo {
        n: x.dim(0),
        c: x.dim(1),
        h,
        w: wd,
        o: w.dim(0),
        kh,
        kw,
        ho: (h + 2 * p - kh) / s + 1,
        wo: (wd + 2 * p - kw) / s + 1,
        s,
        p,
    })
}

/// Visits the runs of the im2col matrix (leading dimension `ld`, first column `coff`)
/// that fall inside the image: `run(col_index, input_index, len)` covers `len`
/// consecutive columns mapping to `len` consecutive input pixels (stride 1), or single
/// pixels (stride > 1). Padded positions are not visited (the caller zero-fills).
#[inline(always)]
fn im2col_walk(g: &Geo, ld: usize, coff: usize, mut run: impl FnMut(usize, usize, usize)) {
    for c in 0..g.c {
        for ki in 0..g.kh {
            for kj in 0..g.kw {
                let row = ((c * g.kh + ki) * g.kw + kj) * ld + coff;
                // Valid ox: 0 <= ox·s + kj − p < w.
                let lo = (g.p.saturating_sub(kj)).div_ceil(g.s);
                let hi = if g.w + g.p > kj {
                    g.wo.min((g.w + g.p - kj - 1) / g.s + 1)
                } else {
                    0
                };
                if lo >= hi {
                    continue;
                }
                for oy in 0..g.ho {
                    let iy = (oy * g.s + ki) as isize - g.p as isize;
                    if iy < 0 || iy >= g.h as isize {
                        continue;
                    }
                    let base = row + oy * g.wo;
                    let xrow = (c * g.h + iy as usize) * g.w + kj;
                    if g.s == 1 {
                        run(base + lo, xrow + lo - g.p, hi - lo);
                    } else {
                        for ox in lo..hi {
                            run(base + ox, xrow + ox * g.s - g.p, 1);
                        }
                    }
                }
            }
        }
    }
}

/// Samples per GEMM: enough columns (`samples · ho · wo ≈ 4096`) for faer to run near
/// peak, bounded so the im2col scratch stays a few MB.
fn chunk(g: &Geo) -> usize {
    (4096 / (g.ho * g.wo).max(1)).clamp(1, g.n.max(1))
}

impl<T: Float> Inner<T> {
    pub(crate) fn conv2d(&mut self, x: Id, w: Id, stride: usize, pad: usize) -> Id {
        let (nx, nw) = (self.node(x), self.node(w));
        let Some(g) = geo(nx.shape, nw.shape, stride, pad) else {
            return self.fail(Error::ShapeMismatch {
                op: "conv2d",
                lhs: nx.shape,
                rhs: nw.shape,
            });
        };
        let shape = Shape::new(&[g.n, g.o, g.ho, g.wo]).unwrap_or_default();
        let ckk = g.c * g.kh * g.kw;
        let hw = g.ho * g.wo;
        let chw = g.c * g.h * g.w;
        let off = self.alloc(shape.len());
        let nb = chunk(&g);
        self.scratch.resize(ckk * nb * hw, T::zero());
        self.scratch2.resize(g.o * nb * hw, T::zero());
        let (src, dst) = self.vals.split_at_mut(off);
        let wv = &src[nw.off..nw.off + nw.shape.len()];
        let mut s0 = 0;
        while s0 < g.n {
            let m = nb.min(g.n - s0);
            let ld = m * hw;
            let col = &mut self.scratch[..ckk * ld];
            col.fill(T::zero());
            for s in s0..s0 + m {
                let xs = &src[nx.off + s * chw..nx.off + (s + 1) * chw];
                im2col_walk(&g, ld, (s - s0) * hw, |ci, xi, l| {
                    col[ci..ci + l].copy_from_slice(&xs[xi..xi + l])
                });
            }
            // Y' [O, m·hw] = W [O, ckk] · col [ckk, m·hw], then Y[s, o, :] = Y'[o, s·hw..].
            let yp = &mut self.scratch2[..g.o * ld];
            T::gemm(yp, g.o, ld, ckk, wv, false, col, false, false);
            for s in 0..m {
                for o in 0..g.o {
                    let at = ((s0 + s) * g.o + o) * hw;
                    dst[at..at + hw].copy_from_slice(&yp[o * ld + s * hw..o * ld + (s + 1) * hw]);
                }
            }
            s0 += m;
        }
        self.push(Op::Conv2d { stride, pad }, shape, off, &[x, w])
    }

    /// Average pooling with a `k × k` window and stride `stride` (no padding).
    pub(crate) fn avg_pool(&mut self, x: Id, k: usize, stride: usize) -> Id {
        let n = self.node(x);
        let s = n.shape;
        if s.rank() != 4 || k == 0 || stride == 0 || s.dim(2) < k || s.dim(3) < k {
            return self.fail(Error::InvalidArgument {
                op: "avg_pool2d",
                shape: s,
                reason: "needs [n, c, h, w] with h, w >= k >= 1 and stride >= 1",
            });
        }
        let (h, w) = (s.dim(2), s.dim(3));
        let (ho, wo) = ((h - k) / stride + 1, (w - k) / stride + 1);
        let shape = Shape::new(&[s.dim(0), s.dim(1), ho, wo]).unwrap_or_default();
        let off = self.alloc(shape.len());
        let (src, dst) = self.vals.split_at_mut(off);
        let xs = &src[n.off..n.off + s.len()];
        let inv = T::one() / T::of((k * k) as f64);
        for p in 0..s.dim(0) * s.dim(1) {
            for oy in 0..ho {
                for ox in 0..wo {
                    let mut acc = T::zero();
                    for a in 0..k {
                        let r = p * h * w + (oy * stride + a) * w + ox * stride;
                        for b in 0..k {
                            acc += xs[r + b];
                        }
                    }
                    dst[(p * ho + oy) * wo + ox] = acc * inv;
                }
            }
        }
        self.push(Op::AvgPool { k, stride }, shape, off, &[x])
    }

    /// Mean over the spatial dimensions: `[n, c, h, w] → [n, c]`.
    pub(crate) fn global_avg_pool(&mut self, x: Id) -> Id {
        let n = self.node(x);
        let s = n.shape;
        if s.rank() != 4 {
            return self.fail(Error::InvalidArgument {
                op: "global_avg_pool2d",
                shape: s,
                reason: "needs a [n, c, h, w] tensor",
            });
        }
        let hw = s.dim(2) * s.dim(3);
        let shape = Shape::new(&[s.dim(0), s.dim(1)]).unwrap_or_default();
        let off = self.alloc(shape.len());
        let (src, dst) = self.vals.split_at_mut(off);
        let inv = T::one() / T::of(hw.max(1) as f64);
        for p in 0..s.dim(0) * s.dim(1) {
            let mut acc = T::zero();
            for &v in &src[n.off + p * hw..n.off + (p + 1) * hw] {
                acc += v;
            }
            dst[p] = acc * inv;
        }
        self.push(Op::GlobalAvgPool, shape, off, &[x])
    }

    /// Group normalisation of `[n, c, ...]` over groups of `c / groups` channels.
    pub(crate) fn group_norm(&mut self, x: Id, groups: usize, eps: T) -> Id {
        let n = self.node(x);
        let s = n.shape;
        if s.rank() < 2 || groups == 0 || !s.dim(1).is_multiple_of(groups) || s.is_empty() {
            return self.fail(Error::InvalidArgument {
                op: "group_norm",
                shape: s,
                reason: "needs [n, c, ...] with c divisible by the number of groups",
            });
        }
        let batch = s.dim(0);
        let m = s.len() / (batch * groups);
        let aux = self.aux.len();
        self.aux.resize(aux + 2 * batch * groups, T::zero());
        let off = self.alloc(s.len());
        let (src, dst) = self.vals.split_at_mut(off);
        let inv_m = T::one() / T::of(m as f64);
        for q in 0..batch * groups {
            let xs = &src[n.off + q * m..n.off + (q + 1) * m];
            let mu = xs.iter().copied().sum::<T>() * inv_m;
            let var = xs.iter().map(|&v| (v - mu) * (v - mu)).sum::<T>() * inv_m;
            let r = T::one() / (var + eps).sqrt();
            for (d, &v) in dst[q * m..(q + 1) * m].iter_mut().zip(xs) {
                *d = (v - mu) * r;
            }
            self.aux[aux + 2 * q] = mu;
            self.aux[aux + 2 * q + 1] = r;
        }
        self.push(Op::GroupNorm { groups, aux, eps }, s, off, &[x])
    }
}

/// Fast VJP.
pub(crate) fn backward<T: Float>(t: &mut Inner<T>, i: usize) {
    let n = t.nodes[i];
    let xn = t.nodes[n.inputs[0] as usize];
    let (lo, hi) = t.grads.split_at_mut(n.off);
    let gy = &hi[..n.shape.len()];
    match n.op {
        Op::Conv2d { stride, pad } => {
            let wn = t.nodes[n.inputs[1] as usize];
            let Some(g) = geo(xn.shape, wn.shape, stride, pad) else {
                return;
            };
            let (ckk, hw, chw) = (g.c * g.kh * g.kw, g.ho * g.wo, g.c * g.h * g.w);
            let nb = chunk(&g);
            t.scratch.resize(ckk * nb * hw, T::zero());
            t.scratch2.resize(g.o * nb * hw, T::zero());
            let wv = &t.vals[wn.off..wn.off + wn.shape.len()];
            let mut s0 = 0;
            while s0 < g.n {
                let m = nb.min(g.n - s0);
                let ld = m * hw;
                // G' [O, m·hw] gathered from G [m, O, hw].
                let gp = &mut t.scratch2[..g.o * ld];
                for s in 0..m {
                    for o in 0..g.o {
                        let at = ((s0 + s) * g.o + o) * hw;
                        gp[o * ld + s * hw..o * ld + (s + 1) * hw]
                            .copy_from_slice(&gy[at..at + hw]);
                    }
                }
                let col = &mut t.scratch[..ckk * ld];
                if wn.rg {
                    col.fill(T::zero());
                    for s in s0..s0 + m {
                        let xs = &t.vals[xn.off + s * chw..xn.off + (s + 1) * chw];
                        im2col_walk(&g, ld, (s - s0) * hw, |ci, xi, l| {
                            col[ci..ci + l].copy_from_slice(&xs[xi..xi + l])
                        });
                    }
                    let gw = &mut lo[wn.off..wn.off + wn.shape.len()];
                    T::gemm(gw, g.o, ckk, ld, gp, false, col, true, true);
                }
                if xn.rg {
                    // dcol [ckk, m·hw] = Wᵀ · G', scattered back by col2im.
                    T::gemm(col, ckk, ld, g.o, wv, true, gp, false, false);
                    for s in s0..s0 + m {
                        let gx = &mut lo[xn.off + s * chw..xn.off + (s + 1) * chw];
                        im2col_walk(&g, ld, (s - s0) * hw, |ci, xi, l| {
                            gx[xi..xi + l]
                                .iter_mut()
                                .zip(&col[ci..ci + l])
                                .for_each(|(a, &b)| *a += b)
                        });
                    }
                }
                s0 += m;
            }
        }
        Op::AvgPool { k, stride } => {
            if !xn.rg {
                return;
            }
            let (h, w) = (xn.shape.dim(2), xn.shape.dim(3));
            let (ho, wo) = (n.shape.dim(2), n.shape.dim(3));
            let inv = T::one() / T::of((k * k) as f64);
            let gx = &mut lo[xn.off..xn.off + xn.shape.len()];
            for p in 0..xn.shape.dim(0) * xn.shape.dim(1) {
                for oy in 0..ho {
                    for ox in 0..wo {
                        let v = gy[(p * ho + oy) * wo + ox] * inv;
                        for a in 0..k {
                            let r = p * h * w + (oy * stride + a) * w + ox * stride;
                            gx[r..r + k].iter_mut().for_each(|d| *d += v);
                        }
                    }
                }
            }
        }
        Op::GlobalAvgPool => {
            if !xn.rg {
                return;
            }
            let hw = xn.shape.dim(2) * xn.shape.dim(3);
            let inv = T::one() / T::of(hw.max(1) as f64);
            let gx = &mut lo[xn.off..xn.off + xn.shape.len()];
            for (p, &g) in gy.iter().enumerate() {
                gx[p * hw..(p + 1) * hw]
                    .iter_mut()
                    .for_each(|d| *d += g * inv);
            }
        }
        Op::GroupNorm { groups, aux, .. } => {
            if !xn.rg {
                return;
            }
            let batch = xn.shape.dim(0);
            let m = xn.shape.len() / (batch * groups);
            let inv_m = T::one() / T::of(m as f64);
            let y = &t.vals[n.off..n.off + n.shape.len()];
            let gx = &mut lo[xn.off..xn.off + xn.shape.len()];
            for q in 0..batch * groups {
                let r = t.aux[aux + 2 * q + 1];
                let (gq, yq) = (&gy[q * m..(q + 1) * m], &y[q * m..(q + 1) * m]);
                let mg = gq.iter().copied().sum::<T>() * inv_m;
                let mgy = gq.iter().zip(yq).map(|(&a, &b)| a * b).sum::<T>() * inv_m;
                for k in 0..m {
                    gx[q * m + k] += r * (gq[k] - mg - yq[k] * mgy);
                }
            }
        }
        _ => {}
    }
}

/// VJP as tape operations (global average pooling and group norm; conv2d and
/// avg_pool2d have no recorded backward yet).
pub(crate) fn backward_graph<T: Float>(t: &mut Inner<T>, i: usize, g: Id) -> Result<(), Error> {
    let n = t.nodes[i];
    let x = n.inputs[0];
    let sx = t.nodes[x as usize].shape;
    match n.op {
        Op::GlobalAvgPool => {
            let keep = Shape::new(&[sx.dim(0), sx.dim(1), 1, 1]).unwrap_or_default();
            let r = t.view(g, 0, keep);
            let e = t.expand(r, sx);
            let v = t.scalar_op(
                e,
                T::one() / T::of((sx.dim(2) * sx.dim(3)).max(1) as f64),
                false,
            );
            t.acc_gvar(x, v);
            Ok(())
        }
        Op::GroupNorm { groups, eps, .. } => {
            // ∂x = r (g − mean(g) − y mean(g y)), every factor recomputed as tape ops.
            let batch = sx.dim(0);
            let m = sx.len() / (batch * groups);
            let s3 = Shape::new(&[batch, groups, m]).unwrap_or_default();
            let s2 = Shape::new(&[batch, groups, 1]).unwrap_or_default();
            let xr = t.view(x, 0, s3);
            let mu = t.reduce_axis(xr, 2, true);
            let mu = t.view(mu, 0, s2);
            let c = t.sub(xr, mu);
            let c2 = t.unary(super::UnOp::Square, c);
            let var = t.reduce_axis(c2, 2, true);
            let var = t.scalar_op(var, eps, true);
            let sd = t.unary(super::UnOp::Sqrt, var);
            let sd = t.view(sd, 0, s2);
            let y = t.div(c, sd);
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
        _ => Err(Error::BackwardNotSupported {
            op: n.op.name(),
            detail: " with create_graph (second derivatives through conv2d/avg_pool2d are not implemented)",
        }),
    }
}
