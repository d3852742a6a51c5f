//! Shape operations: reshape and flat views (zero-copy, aliasing the input's storage and
//! gradient), concat, narrow (slicing along an axis, e.g. columns) and split.
//!
//! A view of a leaf shares the leaf's gradient range: this is how a parameter tensor
//! viewed from one flat parameter buffer accumulates its gradient straight into the
//! matching range of the flat gradient.

use super::Op;
use crate::tape::{Id, Inner, split_grad};
use crate::{Error, Float, Shape};

impl<T: Float> Inner<T> {
    /// View of `shape.len()` elements of `x` starting at flat offset `start`.
    pub(crate) fn view(&mut self, x: Id, start: usize, shape: Shape) -> Id {
        let n = self.node(x);
        if start + shape.len() > n.shape.len() {
            return self.fail(Error::InvalidArgument {
                op: "view",
                shape: n.shape,
                reason: "the view (offset + number of elements) does not fit in the tensor",
            });
        }
        if start == 0 && shape == n.shape {
            return x;
        }
        // No NaN check: the values were checked when produced.
        let rg = n.rg && self.recording;
        self.push_raw(
            Op::View { start },
            shape,
            n.off + start,
            [x, crate::tape::NONE, crate::tape::NONE],
            1,
            rg,
        )
    }

    /// Zeros of `shape` with `x` written at flat offset `start`.
    pub(crate) fn embed(&mut self, x: Id, start: usize, shape: Shape) -> Id {
        let n = self.node(x);
        let len = n.shape.len();
        if start + len > shape.len() {
            return self.fail(Error::InvalidArgument {
                op: "embed",
                shape: n.shape,
                reason: "does not fit in the target shape",
            });
        }
        let off = self.alloc(shape.len());
        let (src, dst) = self.vals.split_at_mut(off);
        dst[start..start + len].copy_from_slice(&src[n.off..n.off + len]);
        self.push(Op::Embed { start }, shape, off, &[x])
    }

    /// Concatenation along `axis` of the tensors `xs` (same shape except along `axis`).
    /// The inputs are `self.list[lfirst..lfirst + count]` (pushed by the caller).
    pub(crate) fn concat(&mut self, lfirst: usize, count: usize, axis: usize) -> Id {
        let Some(&first) = self.list.get(lfirst) else {
            return self.fail(Error::InvalidArgument {
                op: "concat",
                shape: Shape::scalar(),
                reason: "nothing to concatenate",
            });
        };
        let s0 = self.node(first).shape;
        if axis >= s0.rank() {
            return self.fail(Error::InvalidArgument {
                op: "concat",
                shape: s0,
                reason: "axis out of range",
            });
        }
        let mut total = 0;
        for k in lfirst..lfirst + count {
            let x = self.list[k];
            let s = self.node(x).shape;
            if s.rank() != s0.rank() || s.with_dim(axis, 1) != s0.with_dim(axis, 1) {
                return self.fail(Error::ShapeMismatch {
                    op: "concat",
                    lhs: s0,
                    rhs: s,
                });
            }
            total += s.dim(axis);
        }
        let shape = s0.with_dim(axis, total);
        let (outer, _, inner) = shape.split_at_axis(axis);
        let off = self.alloc_uninit(shape.len());
        let mut col = 0;
        for k in lfirst..lfirst + count {
            let n = self.node(self.list[k]);
            let d = n.shape.dim(axis);
            let (src, dst) = self.vals.split_at_mut(off);
            for o in 0..outer {
                let from = &src[n.off + o * d * inner..n.off + (o + 1) * d * inner];
                let at = (o * total + col) * inner;
                dst[at..at + d * inner].copy_from_slice(from);
            }
            col += d;
        }
        let id = self.push(
            Op::Concat {
                axis,
                first: lfirst,
                count,
            },
            shape,
            off,
            &[],
        );
        let rg = self.recording
            && self.list[lfirst..lfirst + count]
                .iter()
                .any(|&x| self.nodes[x as usize].rg);
        self.nodes[id as usize].rg = rg;
        // Marks the node as having inputs (held in `list`).
        self.nodes[id as usize].n_in = 1;
        self.nodes[id as usize].inputs[0] = first;
        id
    }

    /// Elements `start..start + len` of `x` along `axis`.
    pub(crate) fn narrow(&mut self, x: Id, axis: usize, start: usize, len: usize) -> Id {
        let n = self.node(x);
        if axis >= n.shape.rank() || start + len > n.shape.dim(axis) {
            return self.fail(Error::InvalidArgument {
                op: "narrow",
                shape: n.shape,
                reason: "axis out of range or start + len larger than the dimension",
            });
        }
        let (outer, d, inner) = n.shape.split_at_axis(axis);
        let shape = n.shape.with_dim(axis, len);
        if outer == 1 {
            return self.view(x, start * inner, shape);
        }
        let off = self.alloc_uninit(shape.len());
        let (src, dst) = self.vals.split_at_mut(off);
        for o in 0..outer {
            let from = n.off + (o * d + start) * inner;
            dst[o * len * inner..(o + 1) * len * inner]
                .copy_from_slice(&src[from..from + len * inner]);
        }
        self.push(Op::Narrow { axis, start }, shape, off, &[x])
    }

    /// Zeros of `shape` with `x` placed at `start` along `axis` (inverse of narrow).
    pub(crate) fn pad_axis(&mut self, x: Id, axis: usize, start: usize, shape: Shape) -> Id {
        let n = self.node(x);
        let len = n.shape.dim(axis);
        let (outer, d, inner) = shape.split_at_axis(axis);
        let off = self.alloc(shape.len());
        let (src, dst) = self.vals.split_at_mut(off);
        for o in 0..outer {
            let at = (o * d + start) * inner;
            dst[at..at + len * inner]
                .copy_from_slice(&src[n.off + o * len * inner..n.off + (o + 1) * len * inner]);
        }
        self.push(Op::PadAxis { axis, start }, shape, off, &[x])
    }
}

/// Fast VJP.
pub(crate) fn backward<T: Float>(t: &mut Inner<T>, i: usize) {
    let n = t.nodes[i];
    match n.op {
        Op::View { .. } => {} // gradient storage is shared with the input
        Op::Embed { start } => {
            let x = t.nodes[n.inputs[0] as usize];
            if x.rg {
                let len = x.shape.len();
                let (lo, hi) = split_grad(&mut t.grads, &t.goff, &n, i);
                lo[x.off..x.off + len]
                    .iter_mut()
                    .zip(&hi[start..start + len])
                    .for_each(|(a, &b)| *a += b);
            }
        }
        Op::Concat { axis, first, count } => {
            let total = n.shape.dim(axis);
            let (outer, _, inner) = n.shape.split_at_axis(axis);
            let mut col = 0;
            for k in first..first + count {
                let x = t.nodes[t.list[k] as usize];
                let d = x.shape.dim(axis);
                if x.rg {
                    let (lo, hi) = split_grad(&mut t.grads, &t.goff, &n, i);
                    for o in 0..outer {
                        let at = (o * total + col) * inner;
                        lo[x.off + o * d * inner..x.off + (o + 1) * d * inner]
                            .iter_mut()
                            .zip(&hi[at..at + d * inner])
                            .for_each(|(a, &b)| *a += b);
                    }
                }
                col += d;
            }
        }
        Op::Narrow { axis, start } => {
            let x = t.nodes[n.inputs[0] as usize];
            if x.rg {
                let len = n.shape.dim(axis);
                let (outer, d, inner) = x.shape.split_at_axis(axis);
                let (lo, hi) = split_grad(&mut t.grads, &t.goff, &n, i);
                for o in 0..outer {
                    let at = x.off + (o * d + start) * inner;
                    lo[at..at + len * inner]
                        .iter_mut()
                        .zip(&hi[o * len * inner..(o + 1) * len * inner])
                        .for_each(|(a, &b)| *a += b);
                }
            }
        }
        Op::PadAxis { axis, start } => {
            let x = t.nodes[n.inputs[0] as usize];
            if x.rg {
                let len = x.shape.dim(axis);
                let (outer, d, inner) = n.shape.split_at_axis(axis);
                let (lo, hi) = split_grad(&mut t.grads, &t.goff, &n, i);
                for o in 0..outer {
                    let at = (o * d + start) * inner;
                    lo[x.off + o * len * inner..x.off + (o + 1) * len * inner]
                        .iter_mut()
                        .zip(&hi[at..at + len * inner])
                        .for_each(|(a, &b)| *a += b);
                }
            }
        }
        _ => {}
    }
}

/// VJP as tape operations.
pub(crate) fn backward_graph<T: Float>(t: &mut Inner<T>, i: usize, g: Id) {
    let n = t.nodes[i];
    let x = n.inputs[0];
    let sx = t.nodes[x as usize].shape;
    match n.op {
        Op::View { start } => {
            let v = if sx.len() == n.shape.len() {
                t.view(g, 0, sx)
            } else {
                t.embed(g, start, sx)
            };
            t.acc_gvar(x, v)
        }
        Op::Embed { start } => {
            let v = t.view(g, start, sx);
            t.acc_gvar(x, v)
        }
        Op::Narrow { axis, start } => {
            let v = t.pad_axis(g, axis, start, sx);
            t.acc_gvar(x, v)
        }
        Op::PadAxis { axis, start } => {
            let v = t.narrow(g, axis, start, sx.dim(axis));
            t.acc_gvar(x, v)
        }
        Op::Concat { axis, first, count } => {
            let mut col = 0;
            for k in first..first + count {
                let xk = t.list[k];
                let d = t.nodes[xk as usize].shape.dim(axis);
                if t.nodes[xk as usize].rg {
                    let v = t.narrow(g, axis, col, d);
                    t.acc_gvar(xk, v);
                }
                col += d;
            }
        }
        _ => {}
    }
}
