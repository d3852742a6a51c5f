//! Elementwise binary operations with broadcasting (add, sub, mul, div), the scalar
//! operations, and the two broadcasting primitives `expand` and `sum_to`.
//!
//! Broadcasting follows NumPy: shapes are right-aligned and a dimension of size 1 is
//! repeated, so a bias `[h]` adds to `[batch, h]` and `[c, 1, 1]` to `[n, c, h, w]`.
//! The VJP of a broadcast input sums the output gradient over the repeated dimensions.

use super::Op;
use crate::tape::{Id, Inner, split_grad};
use crate::{Error, Float, Shape};

/// Broadcast plan: padded output dims and the element strides of each input (0 where
/// the input is repeated).
#[derive(Clone, Copy)]
pub(crate) struct Bc {
    pub out: [usize; 4],
    pub sa: [usize; 4],
    pub sb: [usize; 4],
}

fn strides(p: [usize; 4], out: [usize; 4]) -> [usize; 4] {
    let mut s = [0; 4];
    let mut acc = 1;
    for i in (0..4).rev() {
        s[i] = if p[i] == 1 && out[i] != 1 { 0 } else { acc };
        acc *= p[i];
    }
    s
}

/// Output shape and plan of broadcasting `a` with `b`.
pub(crate) fn broadcast(a: Shape, b: Shape) -> Option<(Shape, Bc)> {
    let (pa, pb) = (a.padded(), b.padded());
    let mut out = [1; 4];
    for i in 0..4 {
        out[i] = if pa[i] == pb[i] || pb[i] == 1 {
            pa[i]
        } else if pa[i] == 1 {
            pb[i]
        } else {
            return None;
        };
    }
    let rank = a.rank().max(b.rank());
    Some((
        Shape::from_padded(out, rank),
        Bc {
            out,
            sa: strides(pa, out),
            sb: strides(pb, out),
        },
    ))
}

/// True if `b` broadcast to `out` is a repeated trailing block (`b`'s padded dims are 1s
/// followed by `out`'s trailing dims), e.g. a bias `[h]` on `[batch, h]`.
pub(crate) fn is_row(b: Shape, out: Shape) -> bool {
    let (pb, po) = (b.padded(), out.padded());
    let k = pb.iter().position(|&d| d != 1).unwrap_or(4);
    pb[k..] == po[k..] && !b.is_empty()
}

/// If `b` broadcast to `out` is one block of `out`'s dims repeated over the dims before it
/// and constant over the dims after it (`b`'s padded dims: 1s, then `out`'s dims
/// `k..=m`, then 1s), returns `(c, inner)`: the block's length and the length of the run
/// each of its elements covers. A per-channel bias `[c, 1, 1]` on `[n, c, h, w]` gives
/// `(c, h·w)`; a row `[h]` on `[n, h]` (see [`is_row`]) gives `(h, 1)`.
pub(crate) fn channel_block(b: Shape, out: Shape) -> Option<(usize, usize)> {
    let (pb, po) = (b.padded(), out.padded());
    let k = pb.iter().position(|&d| d != 1)?;
    let m = pb.iter().rposition(|&d| d != 1)?;
    (pb[k..=m] == po[k..=m]).then(|| (po[k..=m].iter().product(), po[m + 1..].iter().product()))
}

/// Calls `f(out_index, a_index, b_index)` over the broadcast output in row-major order.
#[inline(always)]
pub(crate) fn each(bc: &Bc, mut f: impl FnMut(usize, usize, usize)) {
    let [d0, d1, d2, d3] = bc.out;
    let (sa, sb) = (bc.sa, bc.sb);
    let mut o = 0;
    for i0 in 0..d0 {
        for i1 in 0..d1 {
            for i2 in 0..d2 {
                let ba = i0 * sa[0] + i1 * sa[1] + i2 * sa[2];
                let bb = i0 * sb[0] + i1 * sb[1] + i2 * sb[2];
                for i3 in 0..d3 {
                    f(o, ba + i3 * sa[3], bb + i3 * sb[3]);
                    o += 1;
                }
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bin {
    Add,
    Sub,
    Mul,
    Div,
}

impl<T: Float> Inner<T> {
    pub(crate) fn binary(&mut self, kind: Bin, a: Id, b: Id) -> Id {
        let (na, nb) = (self.node(a), self.node(b));
        let op = match kind {
            Bin::Add => Op::Add,
            Bin::Sub => Op::Sub,
            Bin::Mul => Op::Mul,
            Bin::Div => Op::Div,
        };
        let Some((shape, bc)) = broadcast(na.shape, nb.shape) else {
            return self.fail(Error::ShapeMismatch {
                op: op.name(),
                lhs: na.shape,
                rhs: nb.shape,
            });
        };
        let len = shape.len();
        let off = self.alloc_uninit(len);
        let (src, dst) = self.vals.split_at_mut(off);
        let dst = &mut dst[..len];
        let x = &src[na.off..na.off + na.shape.len()];
        let y = &src[nb.off..nb.off + nb.shape.len()];
        binary_fwd(kind, x, y, dst, (na.shape, nb.shape, shape), &bc);
        self.push(op, shape, off, &[a, b])
    }

    /// `a + b` from the public API: a bias add (`b` a row repeated over `a`, as in
    /// `x·W + b`) is recorded with its value deferred, so that an elementwise op applied
    /// to it next (`.tanh()`) computes `f(x·W + b)` in one pass over cache-sized chunks
    /// instead of two passes over the whole (often larger than L2) tensor. Anything
    /// else that reads it computes it first ([`Inner::ready`]). Internal callers (the
    /// recorded VJPs) use [`Inner::add`], which never defers.
    pub(crate) fn add_deferred(&mut self, a: Id, b: Id) -> Id {
        // Only a deferred product may stay pending under a deferred add.
        if !matches!(self.node(a).op, Op::Matmul { .. }) {
            self.ready(a);
        }
        let (na, nb) = (self.node(a), self.node(b));
        if na.shape.len() > nb.shape.len()
            && !nb.shape.is_empty()
            && !self.check_finite
            && let Some((shape, _)) = broadcast(na.shape, nb.shape)
            && na.shape == shape
            && is_row(nb.shape, shape)
        {
            let off = self.alloc_uninit(shape.len());
            let id = self.push(Op::Add, shape, off, &[a, b]);
            self.nodes[id as usize].pending = true;
            return id;
        }
        self.ready(a);
        self.binary(Bin::Add, a, b)
    }

    /// Computes the value of the pending bias add `c` (see [`Inner::ready`]).
    pub(crate) fn materialize_add(&mut self, c: Id) {
        let n = self.node(c);
        self.ready(n.inputs[0]);
        let (na, nb) = (self.node(n.inputs[0]), self.node(n.inputs[1]));
        if let Some((shape, bc)) = broadcast(na.shape, nb.shape) {
            let len = shape.len();
            // Inputs are recorded before `c`: their values lie below its offset.
            let (src, dst) = self.vals.split_at_mut(n.off);
            let x = &src[na.off..na.off + na.shape.len()];
            let y = &src[nb.off..nb.off + nb.shape.len()];
            binary_fwd(
                Bin::Add,
                x,
                y,
                &mut dst[..len],
                (na.shape, nb.shape, shape),
                &bc,
            );
        }
        self.nodes[c as usize].pending = false;
    }

    pub(crate) fn add(&mut self, a: Id, b: Id) -> Id {
        self.binary(Bin::Add, a, b)
    }
    pub(crate) fn sub(&mut self, a: Id, b: Id) -> Id {
        self.binary(Bin::Sub, a, b)
    }
    pub(crate) fn mul(&mut self, a: Id, b: Id) -> Id {
        self.binary(Bin::Mul, a, b)
    }
    pub(crate) fn div(&mut self, a: Id, b: Id) -> Id {
        self.binary(Bin::Div, a, b)
    }

    /// `x + c` (`add == true`) or `x · c`.
    pub(crate) fn scalar_op(&mut self, x: Id, c: T, add: bool) -> Id {
        let n = self.node(x);
        let len = n.shape.len();
        let off = self.alloc_uninit(len);
        let (src, dst) = self.vals.split_at_mut(off);
        let s = &src[n.off..n.off + len];
        if add {
            dst[..len].iter_mut().zip(s).for_each(|(d, &v)| *d = v + c);
        } else {
            dst[..len].iter_mut().zip(s).for_each(|(d, &v)| *d = v * c);
        }
        let op = if add {
            Op::AddScalar(c)
        } else {
            Op::MulScalar(c)
        };
        self.push(op, n.shape, off, &[x])
    }

    /// Broadcasts `x` to `shape`.
    pub(crate) fn expand(&mut self, x: Id, shape: Shape) -> Id {
        let n = self.node(x);
        if n.shape == shape {
            return x;
        }
        match broadcast(shape, n.shape) {
            Some((s, bc)) if s == shape => {
                let len = shape.len();
                let off = self.alloc_uninit(len);
                let (src, dst) = self.vals.split_at_mut(off);
                let xs = &src[n.off..n.off + n.shape.len()];
                each(&bc, |o, _, ib| dst[o] = xs[ib]);
                self.push(Op::Expand, shape, off, &[x])
            }
            _ => self.fail(Error::ShapeMismatch {
                op: "expand",
                lhs: n.shape,
                rhs: shape,
            }),
        }
    }

    /// Sums `x` over the dimensions where `shape` is broadcast (inverse of `expand`).
    pub(crate) fn sum_to(&mut self, x: Id, shape: Shape) -> Id {
        let n = self.node(x);
        if n.shape == shape {
            return x;
        }
        match broadcast(n.shape, shape) {
            Some((s, bc)) if s == n.shape => {
                let off = self.alloc(shape.len());
                let (src, dst) = self.vals.split_at_mut(off);
                let xs = &src[n.off..n.off + n.shape.len()];
                each(&bc, |o, _, ib| dst[ib] += xs[o]);
                self.push(Op::SumTo, shape, off, &[x])
            }
            _ => self.fail(Error::ShapeMismatch {
                op: "sum_to",
                lhs: n.shape,
                rhs: shape,
            }),
        }
    }
}

fn binary_fwd<T: Float>(
    kind: Bin,
    x: &[T],
    y: &[T],
    dst: &mut [T],
    s: (Shape, Shape, Shape),
    bc: &Bc,
) {
    crate::vmath::simd_dispatch!(
        binary_fwd_k::<T>(kind: Bin, x: &[T], y: &[T], dst: &mut [T], s: (Shape, Shape, Shape), bc: &Bc) -> ()
    )
}

#[inline(always)]
fn binary_fwd_k<T: Float>(
    kind: Bin,
    x: &[T],
    y: &[T],
    dst: &mut [T],
    s: (Shape, Shape, Shape),
    bc: &Bc,
) {
    let (sa, sb, shape) = s;
    macro_rules! run {
        ($f:expr) => {{
            let f = $f;
            if sa == shape && sb == shape {
                for ((d, &p), &q) in dst.iter_mut().zip(x).zip(y) {
                    *d = f(p, q);
                }
            } else if sa == shape && is_row(sb, shape) {
                let lb = y.len();
                for (dc, xc) in dst.chunks_exact_mut(lb).zip(x.chunks_exact(lb)) {
                    for ((d, &p), &q) in dc.iter_mut().zip(xc).zip(y) {
                        *d = f(p, q);
                    }
                }
            } else if sa == shape
                && let Some((c, inner)) = channel_block(sb, shape)
            {
                // A per-channel operand (a convolution's bias): runs of one value.
                for (dc, xc) in dst
                    .chunks_exact_mut(c * inner)
                    .zip(x.chunks_exact(c * inner))
                {
                    for ((dr, xr), &q) in dc
                        .chunks_exact_mut(inner)
                        .zip(xc.chunks_exact(inner))
                        .zip(y)
                    {
                        for (d, &p) in dr.iter_mut().zip(xr) {
                            *d = f(p, q);
                        }
                    }
                }
            } else if sb.len() == 1 {
                let q = y[0];
                each(bc, |o, ia, _| dst[o] = f(x[ia], q));
            } else {
                each(bc, |o, ia, ib| dst[o] = f(x[ia], y[ib]));
            }
        }};
    }
    match kind {
        Bin::Add => run!(|p: T, q: T| p + q),
        Bin::Sub => run!(|p: T, q: T| p - q),
        Bin::Mul => run!(|p: T, q: T| p * q),
        Bin::Div => run!(|p: T, q: T| p / q),
    }
}

/// Fast VJP of the binary ops, `expand`, `sum_to` and the scalar ops.
pub(crate) fn backward<T: Float>(t: &mut Inner<T>, i: usize) {
    crate::vmath::simd_dispatch!(backward_kernel::<T>(t: &mut Inner<T>, i: usize) -> ())
}

#[inline(always)]
fn backward_kernel<T: Float>(t: &mut Inner<T>, i: usize) {
    if super::unary::bias_vjp_fused(t, i) {
        // Done by the VJP of the elementwise op that consumes this bias add.
        return;
    }
    let n = t.nodes[i];
    let (lo, g) = split_grad(&mut t.grads, &t.goff, &n, i);
    let rest = &t.vals;
    match n.op {
        Op::AddScalar(_) | Op::MulScalar(_) => {
            let x = t.nodes[n.inputs[0] as usize];
            let c = match n.op {
                Op::MulScalar(c) => c,
                _ => T::one(),
            };
            if x.rg {
                let d = lo[x.off..x.off + g.len()].iter_mut().zip(g);
                if t.assign[n.inputs[0] as usize] {
                    d.for_each(|(d, &g)| *d = g * c);
                } else {
                    d.for_each(|(d, &g)| *d += g * c);
                }
            }
        }
        Op::Expand => {
            let x = t.nodes[n.inputs[0] as usize];
            if x.rg
                && let Some((_, bc)) = broadcast(n.shape, x.shape)
            {
                let gx = &mut lo[x.off..x.off + x.shape.len()];
                each(&bc, |o, _, ib| gx[ib] += g[o]);
            }
        }
        Op::SumTo => {
            let x = t.nodes[n.inputs[0] as usize];
            if x.rg
                && let Some((_, bc)) = broadcast(x.shape, n.shape)
            {
                let gx = &mut lo[x.off..x.off + x.shape.len()];
                each(&bc, |o, _, ib| gx[o] += g[ib]);
            }
        }
        Op::Add | Op::Sub | Op::Mul | Op::Div => {
            let (na, nb) = (t.nodes[n.inputs[0] as usize], t.nodes[n.inputs[1] as usize]);
            let va = &rest[na.off..na.off + na.shape.len()];
            let vb = &rest[nb.off..nb.off + nb.shape.len()];
            let vy = &rest[n.off..n.off + n.shape.len()];
            // `a`'s gradient is this node's own (aliased, see `Inner::goff`): nothing to add.
            let a_aliased = t.goff[n.inputs[0] as usize] != na.off;
            // A bias add `a [.., h] + b [h]` with both sides differentiable: one pass over
            // the output gradient feeds both (`ga += g` row by row, `gb += Σ_rows g`).
            let (la, lb) = (na.shape.len(), nb.shape.len());
            if matches!(n.op, Op::Add)
                && na.rg
                && nb.rg
                && na.shape == n.shape
                && nb.shape != n.shape
                && is_row(nb.shape, n.shape)
                && lb > 0
                && (na.off + la <= nb.off || nb.off + lb <= na.off)
            {
                let (ga, gb) = if na.off < nb.off {
                    let (p, q) = lo.split_at_mut(nb.off);
                    (&mut p[na.off..na.off + la], &mut q[..lb])
                } else {
                    let (p, q) = lo.split_at_mut(na.off);
                    (&mut q[..la], &mut p[nb.off..nb.off + lb])
                };
                if a_aliased {
                    for gc in g.chunks_exact(lb) {
                        gb.iter_mut().zip(gc).for_each(|(b, &g)| *b += g);
                    }
                    return;
                }
                let assign = t.assign[n.inputs[0] as usize];
                for (gac, gc) in ga.chunks_exact_mut(lb).zip(g.chunks_exact(lb)) {
                    for ((a, b), &g) in gac.iter_mut().zip(gb.iter_mut()).zip(gc) {
                        *a = if assign { g } else { *a + g };
                        *b += g;
                    }
                }
                return;
            }
            for side in 0..2 {
                let (nx, is_a) = if side == 0 { (na, true) } else { (nb, false) };
                let assign = t.assign[n.inputs[side] as usize];
                if !nx.rg || (is_a && a_aliased) {
                    continue;
                }
                let gx = &mut lo[nx.off..nx.off + nx.shape.len()];
                // d out / d x at output element o with operand indices ia, ib.
                let (bc, same) = match broadcast(na.shape, nb.shape) {
                    Some(b) => (b.1, na.shape == n.shape && nb.shape == n.shape),
                    None => continue,
                };
                let row_b = !is_a && na.shape == n.shape && is_row(nb.shape, n.shape);
                // Fast paths (vectorised): `a` of the output's shape and `b` of the same
                // shape or a repeated row (a bias), for add, sub and mul.
                let lb = vb.len();
                if na.shape == n.shape
                    && (nb.shape == n.shape || is_row(nb.shape, n.shape))
                    && matches!(n.op, Op::Add | Op::Sub | Op::Mul)
                    && lb > 0
                {
                    let neg = matches!(n.op, Op::Sub) && !is_a;
                    for (r, (gc, ac)) in g.chunks_exact(lb).zip(va.chunks_exact(lb)).enumerate() {
                        let d = if is_a {
                            &mut gx[r * lb..(r + 1) * lb]
                        } else {
                            &mut gx[..]
                        };
                        // `=` when this is the input's only use (see `Inner::assign`).
                        let put = |d: &mut T, v: T| *d = if assign { v } else { *d + v };
                        match (n.op, is_a) {
                            (Op::Mul, true) => d
                                .iter_mut()
                                .zip(gc)
                                .zip(vb)
                                .for_each(|((d, &g), &b)| put(d, g * b)),
                            (Op::Mul, false) => d
                                .iter_mut()
                                .zip(gc)
                                .zip(ac)
                                .for_each(|((d, &g), &a)| put(d, g * a)),
                            _ if neg => d.iter_mut().zip(gc).for_each(|(d, &g)| put(d, -g)),
                            _ => d.iter_mut().zip(gc).for_each(|(d, &g)| put(d, g)),
                        }
                    }
                    continue;
                }
                // A per-channel `b` (a convolution's bias `[c, 1, 1]` on `[n, c, h, w]`):
                // runs of `inner` output elements share one element of `b`.
                if na.shape == n.shape
                    && matches!(n.op, Op::Add | Op::Sub | Op::Mul)
                    && let Some((c, inner)) = channel_block(nb.shape, n.shape)
                {
                    let neg = matches!(n.op, Op::Sub) && !is_a;
                    let block = c * inner;
                    if is_a {
                        let put = |d: &mut T, v: T| *d = if assign { v } else { *d + v };
                        for (dc, gc) in gx.chunks_exact_mut(block).zip(g.chunks_exact(block)) {
                            for ((dr, gr), &b) in dc
                                .chunks_exact_mut(inner)
                                .zip(gc.chunks_exact(inner))
                                .zip(vb)
                            {
                                if matches!(n.op, Op::Mul) {
                                    dr.iter_mut().zip(gr).for_each(|(d, &g)| put(d, g * b));
                                } else {
                                    dr.iter_mut().zip(gr).for_each(|(d, &g)| put(d, g));
                                }
                            }
                        }
                    } else {
                        for (gc, ac) in g.chunks_exact(block).zip(va.chunks_exact(block)) {
                            for ((d, gr), ar) in gx
                                .iter_mut()
                                .zip(gc.chunks_exact(inner))
                                .zip(ac.chunks_exact(inner))
                            {
                                let s = if matches!(n.op, Op::Mul) {
                                    gr.iter().zip(ar).fold(T::zero(), |s, (&g, &a)| s + g * a)
                                } else {
                                    gr.iter().fold(T::zero(), |s, &g| s + g)
                                };
                                *d += if neg { -s } else { s };
                            }
                        }
                    }
                    continue;
                }
                macro_rules! go {
                    ($d:expr) => {{
                        let d = $d;
                        if row_b {
                            let lb = gx.len();
                            for (r, gc) in g.chunks_exact(lb).enumerate() {
                                for (j, &gv) in gc.iter().enumerate() {
                                    let o = r * lb + j;
                                    gx[j] += gv * d(o, o, j);
                                }
                            }
                        } else if same {
                            for o in 0..g.len() {
                                gx[o] += g[o] * d(o, o, o);
                            }
                        } else if is_a {
                            each(&bc, |o, ia, ib| gx[ia] += g[o] * d(o, ia, ib));
                        } else {
                            each(&bc, |o, ia, ib| gx[ib] += g[o] * d(o, ia, ib));
                        }
                    }};
                }
                match (n.op, is_a) {
                    (Op::Add, _) | (Op::Sub, true) => go!(|_, _, _| T::one()),
                    (Op::Sub, false) => go!(|_, _, _| -T::one()),
                    (Op::Mul, true) => go!(|_, _, ib: usize| vb[ib]),
                    (Op::Mul, false) => go!(|_, ia: usize, _| va[ia]),
                    (Op::Div, true) => go!(|_, _, ib: usize| T::one() / vb[ib]),
                    (Op::Div, false) => go!(|o: usize, _, ib: usize| -vy[o] / vb[ib]),
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

/// VJP of the same ops as tape operations.
pub(crate) fn backward_graph<T: Float>(t: &mut Inner<T>, i: usize, g: Id) {
    let n = t.nodes[i];
    let x = n.inputs[0];
    let sx = t.nodes[x as usize].shape;
    match n.op {
        Op::AddScalar(_) => t.acc_gvar(x, g),
        Op::MulScalar(c) => {
            let v = t.scalar_op(g, c, false);
            t.acc_gvar(x, v)
        }
        Op::Expand => {
            let v = t.sum_to(g, sx);
            t.acc_gvar(x, v)
        }
        Op::SumTo => {
            let v = t.expand(g, sx);
            t.acc_gvar(x, v)
        }
        Op::Add | Op::Sub | Op::Mul | Op::Div => {
            let b = n.inputs[1];
            let sb = t.nodes[b as usize].shape;
            let y = i as Id;
            if t.nodes[x as usize].rg {
                let v = match n.op {
                    Op::Mul => t.mul(g, b),
                    Op::Div => t.div(g, b),
                    _ => g,
                };
                let v = t.sum_to(v, sx);
                t.acc_gvar(x, v);
            }
            if t.nodes[b as usize].rg {
                let v = match n.op {
                    Op::Add => g,
                    Op::Sub => t.scalar_op(g, -T::one(), false),
                    Op::Mul => t.mul(g, x),
                    _ => {
                        let gy = t.mul(g, y);
                        let q = t.div(gy, b);
                        t.scalar_op(q, -T::one(), false)
                    }
                };
                let v = t.sum_to(v, sb);
                t.acc_gvar(b, v);
            }
        }
        _ => {}
    }
}
