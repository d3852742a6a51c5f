//! Reductions: sum and mean over all elements or along one axis (the axis is removed).
//!
//! VJPs broadcast the output gradient back (`/ n` for means).

use super::Op;
use crate::tape::{Id, Inner, split_grad};
use crate::{Error, Float, Shape};

impl<T: Float> Inner<T> {
    /// Sum (`mean == false`) or mean of all elements, as a scalar.
    pub(crate) fn reduce_all(&mut self, x: Id, mean: bool) -> Id {
        let n = self.node(x);
        let len = n.shape.len();
        let mut s = T::zero();
        for &v in &self.vals[n.off..n.off + len] {
            s += v;
        }
        if mean {
            s /= T::from_f64_const(len.max(1) as f64);
        }
        let off = self.alloc_uninit(1);
        self.vals[off] = s;
        let op = if mean { Op::MeanAll } else { Op::SumAll };
        self.push(op, Shape::scalar(), off, &[x])
    }

    /// Sum or mean along `axis`, removing it.
    pub(crate) fn reduce_axis(&mut self, x: Id, axis: usize, mean: bool) -> Id {
        let n = self.node(x);
        if axis >= n.shape.rank() {
            return self.fail(Error::InvalidArgument {
                op: "sum_axis",
                shape: n.shape,
                reason: "axis out of range",
            });
        }
        let (outer, d, inner) = n.shape.split_at_axis(axis);
        let shape = n.shape.without_axis(axis);
        let off = self.alloc(outer * inner);
        let (src, dst) = self.vals.split_at_mut(off);
        let xs = &src[n.off..n.off + n.shape.len()];
        let scale = if mean {
            T::one() / T::from_f64_const(d.max(1) as f64)
        } else {
            T::one()
        };
        for o in 0..outer {
            let out = &mut dst[o * inner..(o + 1) * inner];
            for j in 0..d {
                let row = &xs[(o * d + j) * inner..(o * d + j + 1) * inner];
                out.iter_mut().zip(row).for_each(|(a, &b)| *a += b);
            }
            if mean {
                out.iter_mut().for_each(|a| *a *= scale);
            }
        }
        let op = if mean {
            Op::MeanAxis(axis)
        } else {
            Op::SumAxis(axis)
        };
        self.push(op, shape, off, &[x])
    }
}

/// Fast VJP.
pub(crate) fn backward<T: Float>(t: &mut Inner<T>, i: usize) {
    let n = t.nodes[i];
    let x = t.nodes[n.inputs[0] as usize];
    if !x.rg {
        return;
    }
    let (lo, hi) = split_grad(&mut t.grads, &t.goff, &n, i);
    let gx = &mut lo[x.off..x.off + x.shape.len()];
    match n.op {
        Op::SumAll | Op::MeanAll => {
            let mut g = hi[0];
            if matches!(n.op, Op::MeanAll) {
                g /= T::from_f64_const(gx.len().max(1) as f64);
            }
            gx.iter_mut().for_each(|d| *d += g);
        }
        Op::SumAxis(axis) | Op::MeanAxis(axis) => {
            let (outer, d, inner) = x.shape.split_at_axis(axis);
            let scale = if matches!(n.op, Op::MeanAxis(_)) {
                T::one() / T::from_f64_const(d.max(1) as f64)
            } else {
                T::one()
            };
            let g = &hi[..outer * inner];
            for o in 0..outer {
                let go = &g[o * inner..(o + 1) * inner];
                for j in 0..d {
                    let row = &mut gx[(o * d + j) * inner..(o * d + j + 1) * inner];
                    row.iter_mut().zip(go).for_each(|(a, &b)| *a += b * scale);
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
    let v = match n.op {
        Op::SumAll => t.expand(g, sx),
        Op::MeanAll => {
            let e = t.expand(g, sx);
            t.scalar_op(
                e,
                T::one() / T::from_f64_const(sx.len().max(1) as f64),
                false,
            )
        }
        Op::SumAxis(axis) | Op::MeanAxis(axis) => {
            let keep = sx.with_dim(axis, 1);
            let r = t.view(g, 0, keep);
            let e = t.expand(r, sx);
            if matches!(n.op, Op::MeanAxis(_)) {
                t.scalar_op(
                    e,
                    T::one() / T::from_f64_const(sx.dim(axis).max(1) as f64),
                    false,
                )
            } else {
                e
            }
        }
        _ => return,
    };
    t.acc_gvar(x, v);
}
