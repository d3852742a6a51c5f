//! Matrix products through faer (`Par::Seq`) and the 2-D transpose.
//!
//! For `C = op(A)·op(B)` with `op` the identity or the transpose, the VJPs are
//! `∂A = G·Bᵀ`, `∂B = Aᵀ·G` (with the transposes moved accordingly); all four
//! flag combinations are products on the stored buffers, never materialised transposes.

use super::Op;
use crate::tape::{Id, Inner, split_grad};
use crate::{Error, Float, Shape};

impl<T: Float> Inner<T> {
    /// `op(a) · op(b)` for 2-D operands.
    pub(crate) fn matmul(&mut self, a: Id, b: Id, ta: bool, tb: bool) -> Id {
        let (na, nb) = (self.node(a), self.node(b));
        let bad = |s: &mut Self| {
            s.fail(Error::ShapeMismatch {
                op: "matmul",
                lhs: na.shape,
                rhs: nb.shape,
            })
        };
        if na.shape.rank() != 2 || nb.shape.rank() != 2 {
            return bad(self);
        }
        let (m, k) = if ta {
            (na.shape.dim(1), na.shape.dim(0))
        } else {
            (na.shape.dim(0), na.shape.dim(1))
        };
        let (k2, n) = if tb {
            (nb.shape.dim(1), nb.shape.dim(0))
        } else {
            (nb.shape.dim(0), nb.shape.dim(1))
        };
        if k != k2 {
            return bad(self);
        }
        let shape = Shape::new(&[m, n]).unwrap_or_default();
        let off = self.alloc_uninit(m * n);
        let (src, dst) = self.vals.split_at_mut(off);
        T::gemm(
            &mut dst[..m * n],
            m,
            n,
            k,
            &src[na.off..na.off + m * k],
            ta,
            &src[nb.off..nb.off + k * n],
            tb,
            false,
        );
        self.push(Op::Matmul { ta, tb }, shape, off, &[a, b])
    }

    /// `a · b` from the public API: a product with more than `2·GEMM_CHUNK` outputs is
    /// recorded with its value deferred, so that a bias add and an elementwise op
    /// applied to it next (`(x·W + b).tanh()`) run by chunks of rows, each chunk's
    /// product still in cache when the bias and the op read it (see [`Inner::unary`]).
    /// Anything else that reads it computes it first ([`Inner::ready`]); its VJP reads
    /// only its inputs.
    pub(crate) fn matmul_deferred(&mut self, a: Id, b: Id) -> Id {
        let (na, nb) = (self.node(a), self.node(b));
        if na.shape.rank() == 2
            && nb.shape.rank() == 2
            && na.shape.dim(1) == nb.shape.dim(0)
            && na.shape.dim(0) * nb.shape.dim(1) > 2 * GEMM_CHUNK
            && !self.check_finite
            && let Ok(shape) = Shape::new(&[na.shape.dim(0), nb.shape.dim(1)])
        {
            let off = self.alloc_uninit(shape.len());
            let id = self.push(
                Op::Matmul {
                    ta: false,
                    tb: false,
                },
                shape,
                off,
                &[a, b],
            );
            self.nodes[id as usize].pending = true;
            return id;
        }
        self.matmul(a, b, false, false)
    }

    /// Computes the value of the pending product `c` (see [`Inner::ready`]).
    pub(crate) fn materialize_matmul(&mut self, c: Id) {
        let n = self.node(c);
        let (na, nb) = (self.node(n.inputs[0]), self.node(n.inputs[1]));
        let (m, nn, k) = (na.shape.dim(0), nb.shape.dim(1), na.shape.dim(1));
        // Inputs are recorded before `c`: their values lie below its offset.
        let (src, dst) = self.vals.split_at_mut(n.off);
        T::gemm(
            &mut dst[..m * nn],
            m,
            nn,
            k,
            &src[na.off..na.off + m * k],
            false,
            &src[nb.off..nb.off + k * nn],
            false,
            false,
        );
        self.nodes[c as usize].pending = false;
    }

    /// Transpose of a 2-D tensor.
    pub(crate) fn transpose(&mut self, x: Id) -> Id {
        let n = self.node(x);
        if n.shape.rank() != 2 {
            return self.fail(Error::InvalidArgument {
                op: "transpose",
                shape: n.shape,
                reason: "transpose needs a 2-D tensor; reshape first",
            });
        }
        let (r, c) = (n.shape.dim(0), n.shape.dim(1));
        let off = self.alloc_uninit(r * c);
        let (src, dst) = self.vals.split_at_mut(off);
        transpose_into(&src[n.off..n.off + r * c], &mut dst[..r * c], r, c, false);
        let shape = Shape::new(&[c, r]).unwrap_or_default();
        self.push(Op::Transpose, shape, off, &[x])
    }
}

/// Elements of `C` per chunk of rows when a deferred product is evaluated together with
/// the bias add and elementwise op that follow it (128 KB of f64: the chunk stays in L2).
pub(crate) const GEMM_CHUNK: usize = 16384;

/// `dst (+)= srcᵀ` for a row-major `r × c` source.
fn transpose_into<T: Float>(src: &[T], dst: &mut [T], r: usize, c: usize, acc: bool) {
    for i in 0..r {
        for j in 0..c {
            if acc {
                dst[j * r + i] += src[i * c + j];
            } else {
                dst[j * r + i] = src[i * c + j];
            }
        }
    }
}

/// Which product gives each operand's gradient: `(lhs, rhs, t_lhs, t_rhs)` where the
/// operands are 0 = A, 1 = B, 2 = G.
fn vjp_plan(ta: bool, tb: bool) -> [(u8, u8, bool, bool); 2] {
    match (ta, tb) {
        (false, false) => [(2, 1, false, true), (0, 2, true, false)],
        (false, true) => [(2, 1, false, false), (2, 0, true, false)],
        (true, false) => [(1, 2, false, true), (0, 2, false, false)],
        (true, true) => [(1, 2, true, true), (2, 0, true, true)],
    }
}

/// Fast VJP (accumulating GEMMs into the gradient arena).
pub(crate) fn backward<T: Float>(t: &mut Inner<T>, i: usize) {
    let n = t.nodes[i];
    let x = t.nodes[n.inputs[0] as usize];
    match n.op {
        Op::Transpose if x.rg => {
            let (r, c) = (x.shape.dim(0), x.shape.dim(1));
            let (lo, g) = split_grad(&mut t.grads, &t.goff, &n, i);
            // g is c × r; gx (r × c) += gᵀ.
            transpose_into(g, &mut lo[x.off..x.off + r * c], c, r, true);
        }
        Op::Matmul { ta, tb } => {
            let y = t.nodes[n.inputs[1] as usize];
            let (m, nn) = (n.shape.dim(0), n.shape.dim(1));
            let plan = vjp_plan(ta, tb);
            for (side, node) in [(0usize, x), (1, y)] {
                if !node.rg {
                    continue;
                }
                let (l, r, tl, tr) = plan[side];
                let (lo, g) = split_grad(&mut t.grads, &t.goff, &n, i);
                let pick = |w: u8| -> &[T] {
                    match w {
                        0 => &t.vals[x.off..x.off + x.shape.len()],
                        1 => &t.vals[y.off..y.off + y.shape.len()],
                        _ => g,
                    }
                };
                // Output gradient shape = stored shape of the operand.
                let (rows, cols) = (node.shape.dim(0), node.shape.dim(1));
                let kk = if side == 0 { nn } else { m };
                // Overwrite when this product is the operand's only use (`Inner::assign`).
                let accumulate = !t.assign[n.inputs[side] as usize];
                T::gemm(
                    &mut lo[node.off..node.off + rows * cols],
                    rows,
                    cols,
                    kk,
                    pick(l),
                    tl,
                    pick(r),
                    tr,
                    accumulate,
                );
            }
        }
        _ => {}
    }
}

/// VJP as tape operations.
pub(crate) fn backward_graph<T: Float>(t: &mut Inner<T>, i: usize, g: Id) {
    let n = t.nodes[i];
    let (a, b) = (n.inputs[0], n.inputs[1]);
    match n.op {
        Op::Transpose => {
            let v = t.transpose(g);
            t.acc_gvar(a, v)
        }
        Op::Matmul { ta, tb } => {
            let plan = vjp_plan(ta, tb);
            let ids = [a, b, g];
            for (side, x) in [(0usize, a), (1, b)] {
                if !t.nodes[x as usize].rg {
                    continue;
                }
                let (l, r, tl, tr) = plan[side];
                let v = t.matmul(ids[l as usize], ids[r as usize], tl, tr);
                t.acc_gvar(x, v);
            }
        }
        _ => {}
    }
}
