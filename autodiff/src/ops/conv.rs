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

/// `dst.copy_from_slice(src)` for the short runs of im2col (a row of a small feature
/// map): runs of up to 16 elements are copied with a constant length, inlined as moves,
/// instead of a `memcpy` call per run (which dominated im2col on 7×7 maps).
#[inline(always)]
fn copy_run<T: Copy>(dst: &mut [T], src: &[T]) {
    macro_rules! fixed {
        ($($n:literal)*) => {
            match src.len() {
                $($n => dst[..$n].copy_from_slice(&src[..$n]),)*
                _ => dst.copy_from_slice(src),
            }
        };
    }
    fixed!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16)
}

/// Copies the columns of samples `s0..s0 + m` of `x` into `col` (`[ckk, m·hw]`).
fn im2col<T: Float>(g: &Geo, x: &[T], s0: usize, m: usize, col: &mut [T]) {
    let (hw, chw) = (g.ho * g.wo, g.c * g.h * g.w);
    let ld = m * hw;
    col.fill(T::zero());
    for s in s0..s0 + m {
        let xs = &x[s * chw..(s + 1) * chw];
        im2col_walk(g, ld, (s - s0) * hw, |ci, xi, l| {
            copy_run(&mut col[ci..ci + l], &xs[xi..xi + l])
        });
    }
}

/// Gathers `G' [O, m·hw]` from the output-shaped `gy [n, O, hw]`, samples `s0..s0 + m`.
fn gather<T: Float>(g: &Geo, gy: &[T], s0: usize, m: usize, gp: &mut [T]) {
    let hw = g.ho * g.wo;
    let ld = m * hw;
    for s in 0..m {
        for o in 0..g.o {
            let at = ((s0 + s) * g.o + o) * hw;
            gp[o * ld + s * hw..o * ld + (s + 1) * hw].copy_from_slice(&gy[at..at + hw]);
        }
    }
}

/// `y (+)= conv(x, w)`: im2col + one GEMM per chunk of samples.
fn conv_fwd<T: Float>(
    g: &Geo,
    x: &[T],
    w: &[T],
    y: &mut [T],
    acc: bool,
    col: &mut Vec<T>,
    tmp: &mut Vec<T>,
) {
    let (ckk, hw) = (g.c * g.kh * g.kw, g.ho * g.wo);
    let nb = chunk(g);
    col.resize(ckk * nb * hw, T::zero());
    tmp.resize(g.o * nb * hw, T::zero());
    let mut s0 = 0;
    while s0 < g.n {
        let m = nb.min(g.n - s0);
        let ld = m * hw;
        let col = &mut col[..ckk * ld];
        im2col(g, x, s0, m, col);
        // Y' [O, m·hw] = W [O, ckk] · col [ckk, m·hw], then Y[s, o, :] = Y'[o, s·hw..].
        let yp = &mut tmp[..g.o * ld];
        T::gemm(yp, g.o, ld, ckk, w, false, col, false, false);
        for s in 0..m {
            for o in 0..g.o {
                let at = ((s0 + s) * g.o + o) * hw;
                let src = &yp[o * ld + s * hw..o * ld + (s + 1) * hw];
                let dst = &mut y[at..at + hw];
                if acc {
                    dst.iter_mut().zip(src).for_each(|(d, &v)| *d += v);
                } else {
                    dst.copy_from_slice(src);
                }
            }
        }
        s0 += m;
    }
}

/// The two VJPs of `y = conv(x, w)` for an output-shaped `gy`, accumulated into `out`:
/// `∂W += G · col(X)ᵀ` at `out[gw_off..]` and `∂X += col⁻¹(Wᵀ G)` at `out[gx_off..]`
/// (either may be skipped; the ranges may be anywhere in `out`).
#[allow(clippy::too_many_arguments)]
fn conv_back<T: Float>(
    g: &Geo,
    x: &[T],
    w: &[T],
    gy: &[T],
    out: &mut [T],
    gx_off: Option<usize>,
    gw_off: Option<usize>,
    col: &mut Vec<T>,
    tmp: &mut Vec<T>,
) {
    let (ckk, hw, chw) = (g.c * g.kh * g.kw, g.ho * g.wo, g.c * g.h * g.w);
    let wlen = g.o * ckk;
    let nb = chunk(g);
    col.resize(ckk * nb * hw, T::zero());
    tmp.resize(g.o * nb * hw, T::zero());
    let mut s0 = 0;
    while s0 < g.n {
        let m = nb.min(g.n - s0);
        let ld = m * hw;
        let gp = &mut tmp[..g.o * ld];
        gather(g, gy, s0, m, gp);
        let col = &mut col[..ckk * ld];
        if let Some(wo) = gw_off {
            im2col(g, x, s0, m, col);
            T::gemm(
                &mut out[wo..wo + wlen],
                g.o,
                ckk,
                ld,
                gp,
                false,
                col,
                true,
                true,
            );
        }
        if let Some(xo) = gx_off {
            // dcol [ckk, m·hw] = Wᵀ · G', scattered back by col2im.
            T::gemm(col, ckk, ld, g.o, w, true, gp, false, false);
            for s in s0..s0 + m {
                let gx = &mut out[xo + s * chw..xo + (s + 1) * chw];
                im2col_walk(g, ld, (s - s0) * hw, |ci, xi, l| {
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

/// Geometry of an average pooling (no padding).
#[derive(Clone, Copy)]
struct Pool {
    planes: usize,
    h: usize,
    w: usize,
    ho: usize,
    wo: usize,
    k: usize,
    stride: usize,
}

/// `y = avg_pool(x)`.
fn pool_fwd<T: Float>(g: &Pool, x: &[T], y: &mut [T]) {
    let inv = T::one() / T::of((g.k * g.k) as f64);
    for p in 0..g.planes {
        for oy in 0..g.ho {
            for ox in 0..g.wo {
                let mut acc = T::zero();
                for a in 0..g.k {
                    let r = (p * g.h + oy * g.stride + a) * g.w + ox * g.stride;
                    for &v in &x[r..r + g.k] {
                        acc += v;
                    }
                }
                y[(p * g.ho + oy) * g.wo + ox] = acc * inv;
            }
        }
    }
}

/// `x += avg_poolᵀ(y)` (the VJP of pooling; accumulates).
fn pool_t<T: Float>(g: &Pool, y: &[T], x: &mut [T]) {
    let inv = T::one() / T::of((g.k * g.k) as f64);
    for p in 0..g.planes {
        for oy in 0..g.ho {
            for ox in 0..g.wo {
                let v = y[(p * g.ho + oy) * g.wo + ox] * inv;
                for a in 0..g.k {
                    let r = (p * g.h + oy * g.stride + a) * g.w + ox * g.stride;
                    x[r..r + g.k].iter_mut().for_each(|d| *d += v);
                }
            }
        }
    }
}

fn dims4(s: Shape) -> [usize; 4] {
    let d = s.padded();
    [d[0], d[1], d[2], d[3]]
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
        let off = self.alloc_uninit(shape.len());
        let (src, dst) = self.vals.split_at_mut(off);
        conv_fwd(
            &g,
            &src[nx.off..nx.off + nx.shape.len()],
            &src[nw.off..nw.off + nw.shape.len()],
            &mut dst[..shape.len()],
            false,
            &mut self.scratch,
            &mut self.scratch2,
        );
        self.push(Op::Conv2d { stride, pad }, shape, off, &[x, w])
    }

    /// `∂x` of a convolution as an operation of `(gy, w)`: the transposed convolution
    /// `col⁻¹(Wᵀ G)` onto an `[n, c, h, w]` map (`h`, `w` given: stride makes them
    /// ambiguous). Linear in each input; used by the recorded backward of `conv2d`.
    pub(crate) fn conv2d_grad_input(
        &mut self,
        gy: Id,
        w: Id,
        stride: usize,
        pad: usize,
        hw: (usize, usize),
    ) -> Id {
        let (ng, nw) = (self.node(gy), self.node(w));
        let [n, o, ho, wo] = dims4(ng.shape);
        let xs = Shape::new(&[n, nw.shape.dim(1), hw.0, hw.1]).unwrap_or_default();
        let g = match geo(xs, nw.shape, stride, pad) {
            Some(g) if ng.shape.rank() == 4 && g.o == o && g.ho == ho && g.wo == wo => g,
            _ => {
                return self.fail(Error::ShapeMismatch {
                    op: "conv2d_grad_input",
                    lhs: ng.shape,
                    rhs: nw.shape,
                });
            }
        };
        let off = self.alloc(xs.len());
        let (src, dst) = self.vals.split_at_mut(off);
        conv_back(
            &g,
            &[],
            &src[nw.off..nw.off + nw.shape.len()],
            &src[ng.off..ng.off + ng.shape.len()],
            &mut dst[..xs.len()],
            Some(0),
            None,
            &mut self.scratch,
            &mut self.scratch2,
        );
        let op = Op::Conv2dGradInput { stride, pad };
        self.push(op, xs, off, &[gy, w])
    }

    /// `∂w` of a convolution as an operation of `(x, gy)`: `G · col(X)ᵀ` as an
    /// `[o, c, kh, kw]` tensor. Linear in each input; used by the recorded backward.
    pub(crate) fn conv2d_grad_weight(
        &mut self,
        x: Id,
        gy: Id,
        stride: usize,
        pad: usize,
        k: (usize, usize),
    ) -> Id {
        let (nx, ng) = (self.node(x), self.node(gy));
        let [_, o, ho, wo] = dims4(ng.shape);
        let ws = Shape::new(&[o, nx.shape.dim(1), k.0, k.1]).unwrap_or_default();
        let g = match geo(nx.shape, ws, stride, pad) {
            Some(g)
                if ng.shape.rank() == 4 && ng.shape.dim(0) == g.n && g.ho == ho && g.wo == wo =>
            {
                g
            }
            _ => {
                return self.fail(Error::ShapeMismatch {
                    op: "conv2d_grad_weight",
                    lhs: nx.shape,
                    rhs: ng.shape,
                });
            }
        };
        let off = self.alloc(ws.len());
        let (src, dst) = self.vals.split_at_mut(off);
        conv_back(
            &g,
            &src[nx.off..nx.off + nx.shape.len()],
            &[],
            &src[ng.off..ng.off + ng.shape.len()],
            &mut dst[..ws.len()],
            None,
            Some(0),
            &mut self.scratch,
            &mut self.scratch2,
        );
        let op = Op::Conv2dGradWeight { stride, pad };
        self.push(op, ws, off, &[x, gy])
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
        let off = self.alloc_uninit(shape.len());
        let (src, dst) = self.vals.split_at_mut(off);
        let pg = Pool {
            planes: s.dim(0) * s.dim(1),
            h,
            w,
            ho,
            wo,
            k,
            stride,
        };
        pool_fwd(&pg, &src[n.off..n.off + s.len()], &mut dst[..shape.len()]);
        self.push(Op::AvgPool { k, stride }, shape, off, &[x])
    }

    /// Transpose of average pooling (its VJP as an operation): spreads each entry of
    /// `g [n, c, ho, wo]` with weight `1/k²` over its window of an `[n, c, h, w]` map.
    pub(crate) fn avg_pool_t(&mut self, g: Id, k: usize, stride: usize, hw: (usize, usize)) -> Id {
        let n = self.node(g);
        let s = n.shape;
        let (h, w) = hw;
        let ok = s.rank() == 4
            && k >= 1
            && stride >= 1
            && h >= k
            && w >= k
            && (h - k) / stride + 1 == s.dim(2)
            && (w - k) / stride + 1 == s.dim(3);
        if !ok {
            return self.fail(Error::InvalidArgument {
                op: "avg_pool2d_grad",
                shape: s,
                reason: "window, stride and map size do not match the pooled shape",
            });
        }
        let shape = Shape::new(&[s.dim(0), s.dim(1), h, w]).unwrap_or_default();
        let off = self.alloc(shape.len());
        let (src, dst) = self.vals.split_at_mut(off);
        let pg = Pool {
            planes: s.dim(0) * s.dim(1),
            h,
            w,
            ho: s.dim(2),
            wo: s.dim(3),
            k,
            stride,
        };
        pool_t(&pg, &src[n.off..n.off + s.len()], &mut dst[..shape.len()]);
        let op = Op::AvgPoolGrad { k, stride };
        self.push(op, shape, off, &[g])
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
        let off = self.alloc_uninit(shape.len());
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
        let off = self.alloc_uninit(s.len());
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
    let Inner {
        grads,
        vals,
        scratch,
        scratch2,
        aux: t_aux,
        nodes,
        ..
    } = t;
    let (lo, hi) = grads.split_at_mut(n.off);
    let gy = &hi[..n.shape.len()];
    let val = |m: &crate::tape::Node<T>| &vals[m.off..m.off + m.shape.len()];
    match n.op {
        Op::Conv2d { stride, pad } => {
            let wn = nodes[n.inputs[1] as usize];
            let Some(g) = geo(xn.shape, wn.shape, stride, pad) else {
                return;
            };
            let (gx, gw) = (xn.rg.then_some(xn.off), wn.rg.then_some(wn.off));
            conv_back(&g, val(&xn), val(&wn), gy, lo, gx, gw, scratch, scratch2);
        }
        Op::Conv2dGradInput { stride, pad } => {
            // out = convᵀ(G, W) for inputs (G, W); cotangent U (x-shaped):
            // ∂G += conv(U, W), ∂W += G · col(U)ᵀ.
            let (gn, wn) = (xn, nodes[n.inputs[1] as usize]);
            let Some(g) = geo(n.shape, wn.shape, stride, pad) else {
                return;
            };
            if gn.rg {
                let d = &mut lo[gn.off..gn.off + gn.shape.len()];
                conv_fwd(&g, gy, val(&wn), d, true, scratch, scratch2);
            }
            if wn.rg {
                let woff = Some(wn.off);
                conv_back(&g, gy, &[], val(&gn), lo, None, woff, scratch, scratch2);
            }
        }
        Op::Conv2dGradWeight { stride, pad } => {
            // out = G · col(X)ᵀ for inputs (X, G); cotangent U (w-shaped):
            // ∂X += convᵀ(G, U), ∂G += conv(X, U).
            let gn = nodes[n.inputs[1] as usize];
            let Some(g) = geo(xn.shape, n.shape, stride, pad) else {
                return;
            };
            if xn.rg {
                let xoff = Some(xn.off);
                conv_back(&g, &[], gy, val(&gn), lo, xoff, None, scratch, scratch2);
            }
            if gn.rg {
                let d = &mut lo[gn.off..gn.off + gn.shape.len()];
                conv_fwd(&g, val(&xn), gy, d, true, scratch, scratch2);
            }
        }
        Op::AvgPool { k, stride } => {
            if !xn.rg {
                return;
            }
            let pg = Pool {
                planes: xn.shape.dim(0) * xn.shape.dim(1),
                h: xn.shape.dim(2),
                w: xn.shape.dim(3),
                ho: n.shape.dim(2),
                wo: n.shape.dim(3),
                k,
                stride,
            };
            pool_t(&pg, gy, &mut lo[xn.off..xn.off + xn.shape.len()]);
        }
        Op::AvgPoolGrad { k, stride } => {
            if !xn.rg {
                return;
            }
            // out = poolᵀ(g): its VJP is pooling the cotangent.
            let pg = Pool {
                planes: xn.shape.dim(0) * xn.shape.dim(1),
                h: n.shape.dim(2),
                w: n.shape.dim(3),
                ho: xn.shape.dim(2),
                wo: xn.shape.dim(3),
                k,
                stride,
            };
            let d = &mut lo[xn.off..xn.off + xn.shape.len()];
            let inv = T::one() / T::of((pg.k * pg.k) as f64);
            for p in 0..pg.planes {
                for oy in 0..pg.ho {
                    for ox in 0..pg.wo {
                        let mut acc = T::zero();
                        for a in 0..pg.k {
                            let r = (p * pg.h + oy * pg.stride + a) * pg.w + ox * pg.stride;
                            for &v in &gy[r..r + pg.k] {
                                acc += v;
                            }
                        }
                        d[(p * pg.ho + oy) * pg.wo + ox] += acc * inv;
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
            let y = &vals[n.off..n.off + n.shape.len()];
            let gx = &mut lo[xn.off..xn.off + xn.shape.len()];
            for q in 0..batch * groups {
                let r = t_aux[aux + 2 * q + 1];
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

/// VJP as tape operations. The convolution family is closed under differentiation:
/// `conv2d`, its input gradient (a transposed convolution) and its weight gradient are
/// each bilinear, and the VJPs of each are expressed with the other two; average
/// pooling and its transpose are linear and each other's VJP.
pub(crate) fn backward_graph<T: Float>(t: &mut Inner<T>, i: usize, g: Id) -> Result<(), Error> {
    let n = t.nodes[i];
    let x = n.inputs[0];
    let sx = t.nodes[x as usize].shape;
    match n.op {
        Op::Conv2d { stride, pad } => {
            let w = n.inputs[1];
            let sw = t.nodes[w as usize].shape;
            if t.nodes[x as usize].rg {
                let v = t.conv2d_grad_input(g, w, stride, pad, (sx.dim(2), sx.dim(3)));
                t.acc_gvar(x, v);
            }
            if t.nodes[w as usize].rg {
                let v = t.conv2d_grad_weight(x, g, stride, pad, (sw.dim(2), sw.dim(3)));
                t.acc_gvar(w, v);
            }
            Ok(())
        }
        Op::Conv2dGradInput { stride, pad } => {
            // inputs (G, W); g is x-shaped.
            let w = n.inputs[1];
            let sw = t.nodes[w as usize].shape;
            let (s, p) = (stride, pad);
            if t.nodes[x as usize].rg {
                let v = t.conv2d(g, w, s, p);
                t.acc_gvar(x, v);
            }
            if t.nodes[w as usize].rg {
                let v = t.conv2d_grad_weight(g, x, s, p, (sw.dim(2), sw.dim(3)));
                t.acc_gvar(w, v);
            }
            Ok(())
        }
        Op::Conv2dGradWeight { stride, pad } => {
            // inputs (X, G); g is w-shaped.
            let gy = n.inputs[1];
            let (s, p) = (stride, pad);
            if t.nodes[x as usize].rg {
                let v = t.conv2d_grad_input(gy, g, s, p, (sx.dim(2), sx.dim(3)));
                t.acc_gvar(x, v);
            }
            if t.nodes[gy as usize].rg {
                let v = t.conv2d(x, g, s, p);
                t.acc_gvar(gy, v);
            }
            Ok(())
        }
        Op::AvgPool { k, stride } => {
            let v = t.avg_pool_t(g, k, stride, (sx.dim(2), sx.dim(3)));
            t.acc_gvar(x, v);
            Ok(())
        }
        Op::AvgPoolGrad { k, stride } => {
            let v = t.avg_pool(g, k, stride);
            t.acc_gvar(x, v);
            Ok(())
        }
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
        _ => Ok(()),
    }
}
