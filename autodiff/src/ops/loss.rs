//! Log-softmax over the last axis and `pick` (gather one entry per row by label), from
//! which the losses in [`Var`](crate::Var) are composed: cross-entropy
//! `−mean_n log_softmax(z_n)[y_n]`, the Gaussian log-likelihood and the KL divergence of
//! diagonal Gaussians (see `Var::gaussian_log_likelihood`, `Var::kl_diag_gaussian`).
//!
//! log-softmax: `y = x − log Σ eˣ`, VJP `∂x = g − softmax(x) · Σ g`.

use super::Op;
use crate::tape::{Id, Inner, split_grad};
use crate::{Error, Float, Shape};

impl<T: Float> Inner<T> {
    pub(crate) fn log_softmax(&mut self, x: Id) -> Id {
        let n = self.node(x);
        let s = n.shape;
        let k = s.dim(s.rank().saturating_sub(1));
        if s.rank() == 0 || k == 0 {
            return self.fail(Error::InvalidArgument {
                op: "log_softmax",
                shape: s,
                reason: "needs at least one dimension and one class",
            });
        }
        let off = self.alloc_uninit(s.len());
        let (src, dst) = self.vals.split_at_mut(off);
        for r in 0..s.len() / k {
            let xs = &src[n.off + r * k..n.off + (r + 1) * k];
            let mx = xs.iter().copied().fold(T::neg_infinity(), T::max);
            let lse = mx + xs.iter().map(|&v| (v - mx).exp()).sum::<T>().ln();
            for (d, &v) in dst[r * k..(r + 1) * k].iter_mut().zip(xs) {
                *d = v - lse;
            }
        }
        self.push(Op::LogSoftmax, s, off, &[x])
    }

    /// `out[r] = x[r, labels[r]]` for a 2-D `x`.
    pub(crate) fn pick(&mut self, x: Id, labels: &[usize]) -> Id {
        let n = self.node(x);
        let s = n.shape;
        if s.rank() != 2 || labels.len() != s.dim(0) {
            return self.fail(Error::InvalidArgument {
                op: "pick",
                shape: s,
                reason: "needs a [rows, classes] tensor and one label per row",
            });
        }
        let k = s.dim(1);
        if let Some((row, &label)) = labels.iter().enumerate().find(|(_, l)| **l >= k) {
            return self.fail(Error::LabelOutOfRange {
                row,
                label,
                classes: k,
            });
        }
        let aux = self.aux.len();
        self.aux
            .extend(labels.iter().map(|&l| T::from_f64_const(l as f64)));
        let shape = Shape::new(&[s.dim(0)]).unwrap_or_default();
        let off = self.alloc_uninit(s.dim(0));
        for (r, &l) in labels.iter().enumerate() {
            self.vals[off + r] = self.vals[n.off + r * k + l];
        }
        self.push(Op::Pick { aux }, shape, off, &[x])
    }

    /// Scatter of `g[r]` into zeros of `shape` at `(r, label_r)` (VJP of pick).
    fn unpick(&mut self, g: Id, aux: usize, shape: Shape) -> Id {
        let n = self.node(g);
        let (rows, k) = (shape.dim(0), shape.dim(1));
        let off = self.alloc(shape.len());
        for r in 0..rows {
            let l = self.aux[aux + r].to_f64_lossy() as usize;
            self.vals[off + r * k + l] = self.vals[n.off + r];
        }
        self.push(Op::Unpick { aux }, shape, off, &[g])
    }
}

fn label<T: Float>(t: &Inner<T>, aux: usize, r: usize) -> usize {
    t.aux[aux + r].to_f64_lossy() as usize
}

/// Fast VJP.
pub(crate) fn backward<T: Float>(t: &mut Inner<T>, i: usize) {
    let n = t.nodes[i];
    let xn = t.nodes[n.inputs[0] as usize];
    if !xn.rg {
        return;
    }
    let (lo, gy) = split_grad(&mut t.grads, &t.goff, &n, i);
    let gx = &mut lo[xn.off..xn.off + xn.shape.len()];
    match n.op {
        Op::LogSoftmax => {
            let k = n.shape.dim(n.shape.rank() - 1);
            let y = &t.vals[n.off..n.off + n.shape.len()];
            for r in 0..n.shape.len() / k {
                let sg = gy[r * k..(r + 1) * k].iter().copied().sum::<T>();
                for j in r * k..(r + 1) * k {
                    gx[j] += gy[j] - y[j].exp() * sg;
                }
            }
        }
        Op::Pick { aux } => {
            let k = xn.shape.dim(1);
            for r in 0..xn.shape.dim(0) {
                gx[r * k + t.aux[aux + r].to_f64_lossy() as usize] += gy[r];
            }
        }
        Op::Unpick { aux } => {
            let k = n.shape.dim(1);
            for r in 0..n.shape.dim(0) {
                gx[r] += gy[r * k + t.aux[aux + r].to_f64_lossy() as usize];
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
        Op::LogSoftmax => {
            let r = n.shape.rank() - 1;
            let sg = t.reduce_axis(g, r, false);
            let sg = t.view(sg, 0, n.shape.with_dim(r, 1));
            let p = t.unary(super::UnOp::Exp, i as Id);
            let q = t.mul(p, sg);
            t.sub(g, q)
        }
        Op::Pick { aux } => t.unpick(g, aux, sx),
        Op::Unpick { aux } => {
            let rows = sx.dim(0);
            let k = n.shape.dim(1);
            // pick with the saved labels
            let off = t.alloc(rows);
            let gn = t.node(g);
            for r in 0..rows {
                t.vals[off + r] = t.vals[gn.off + r * k + label(t, aux, r)];
            }
            t.push(Op::Pick { aux }, sx, off, &[g])
        }
        _ => return,
    };
    t.acc_gvar(x, v);
}
