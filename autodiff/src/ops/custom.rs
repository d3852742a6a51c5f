//! User-defined operations.

use super::Op;
use crate::tape::{Id, Inner, split_grad};
use crate::{Error, Float, Shape, Var};
use std::sync::Arc;

/// Most inputs a custom operation may take.
pub const MAX_CUSTOM_INPUTS: usize = 4;

/// A user-defined operation: its output shape, forward kernel and (optionally) VJP.
///
/// Register it once as an `Arc<dyn CustomOp<T>>` and apply it with
/// [`Tape::custom`](crate::Tape::custom); applying it clones the `Arc` (no allocation).
///
/// ```
/// use autodiff::{CustomOp, Error, Shape, Tape};
/// use std::sync::Arc;
/// /// y = x³ elementwise.
/// struct Cube;
/// impl CustomOp<f64> for Cube {
///     fn name(&self) -> &'static str { "cube" }
///     fn output_shape(&self, inputs: &[Shape]) -> Result<Shape, Error> { Ok(inputs[0]) }
///     fn forward(&self, inputs: &[&[f64]], out: &mut [f64]) {
///         for (o, &x) in out.iter_mut().zip(inputs[0]) { *o = x * x * x; }
///     }
///     fn backward(&self, _k: usize, inputs: &[&[f64]], _out: &[f64], g: &[f64],
///                 gx: &mut [f64]) -> Result<(), Error> {
///         for ((d, &x), &g) in gx.iter_mut().zip(inputs[0]).zip(g) { *d += 3.0 * x * x * g; }
///         Ok(())
///     }
/// }
/// let op: Arc<dyn CustomOp<f64>> = Arc::new(Cube);
/// let tape = Tape::<f64>::new();
/// tape.set_recording(true);
/// let x = tape.leaf(&[2.0], &[1])?;
/// let y = tape.custom(&op, &[x]);
/// tape.backward(y, &[1.0])?;
/// assert_eq!(x.grad()?, vec![12.0]);
/// # Ok::<(), Error>(())
/// ```
pub trait CustomOp<T: Float>: Send + Sync {
    /// Name used in error messages.
    fn name(&self) -> &'static str;
    /// The output shape for these input shapes (or an error naming what is wrong).
    fn output_shape(&self, inputs: &[Shape]) -> Result<Shape, Error>;
    /// Writes the output (`out` is zeroed, of the output shape's length).
    fn forward(&self, inputs: &[&[T]], out: &mut [T]);
    /// Accumulates (`+=`) the VJP `gᵀ ∂out/∂inputs[k]` into `grad_input`.
    fn backward(
        &self,
        k: usize,
        inputs: &[&[T]],
        out: &[T],
        grad_out: &[T],
        grad_input: &mut [T],
    ) -> Result<(), Error> {
        let _ = (k, inputs, out, grad_out, grad_input);
        Err(Error::BackwardNotSupported {
            op: self.name(),
            detail: "",
        })
    }
    /// The VJP `gᵀ ∂out/∂inputs[k]` written with tape operations on `Var`s (the
    /// differentiable `inputs`, the node's output `out` and its gradient variable
    /// `grad_out`), returning a variable of `inputs[k]`'s shape. Called by
    /// [`Tape::backward_graph`](crate::Tape::backward_graph) (PyTorch's `create_graph`),
    /// so that second derivatives pass through the op. The default returns
    /// [`Error::BackwardNotSupported`]: an op without it cannot be differentiated twice,
    /// and `backward_graph` says so instead of returning a wrong answer. The fast
    /// [`backward`](CustomOp::backward) is still used by [`Tape::backward`](crate::Tape::backward).
    fn backward_graph<'t>(
        &self,
        k: usize,
        inputs: &[Var<'t, T>],
        out: Var<'t, T>,
        grad_out: Var<'t, T>,
    ) -> Result<Var<'t, T>, Error> {
        let _ = (k, inputs, out, grad_out);
        Err(Error::BackwardNotSupported {
            op: self.name(),
            detail: " with create_graph (implement CustomOp::backward_graph)",
        })
    }
}

impl<T: Float> Inner<T> {
    pub(crate) fn custom(&mut self, op: &Arc<dyn CustomOp<T>>, xs: &[Id]) -> Id {
        if xs.is_empty() || xs.len() > MAX_CUSTOM_INPUTS {
            return self.fail(Error::InvalidArgument {
                op: op.name(),
                shape: Shape::scalar(),
                reason: "custom ops take between 1 and MAX_CUSTOM_INPUTS inputs",
            });
        }
        let mut shapes = [Shape::scalar(); MAX_CUSTOM_INPUTS];
        for (s, &x) in shapes.iter_mut().zip(xs) {
            *s = self.node(x).shape;
        }
        let shape = match op.output_shape(&shapes[..xs.len()]) {
            Ok(s) => s,
            Err(e) => return self.fail(e),
        };
        let off = self.alloc(shape.len());
        let (src, dst) = self.vals.split_at_mut(off);
        let empty: &[T] = &[];
        let mut ins = [empty; MAX_CUSTOM_INPUTS];
        for (k, &x) in xs.iter().enumerate() {
            let n = self.nodes[x as usize];
            ins[k] = &src[n.off..n.off + n.shape.len()];
        }
        op.forward(&ins[..xs.len()], &mut dst[..shape.len()]);
        let id = self.customs.len();
        self.customs.push(op.clone());
        let first = self.list.len();
        self.list.extend_from_slice(xs);
        let nid = self.push(
            Op::Custom {
                id,
                first,
                count: xs.len(),
            },
            shape,
            off,
            &[],
        );
        let rg = self.recording && xs.iter().any(|&x| self.nodes[x as usize].rg);
        let node = &mut self.nodes[nid as usize];
        node.rg = rg;
        node.n_in = 1;
        node.inputs[0] = xs[0];
        nid
    }
}

/// Fast VJP through the user's kernel.
pub(crate) fn backward<T: Float>(t: &mut Inner<T>, i: usize) -> Result<(), Error> {
    let n = t.nodes[i];
    let Op::Custom { id, first, count } = n.op else {
        return Ok(());
    };
    let op = t.customs[id].clone();
    let empty: &[T] = &[];
    let mut ins = [empty; MAX_CUSTOM_INPUTS];
    for k in 0..count {
        let x = t.nodes[t.list[first + k] as usize];
        ins[k] = &t.vals[x.off..x.off + x.shape.len()];
    }
    let out = &t.vals[n.off..n.off + n.shape.len()];
    for k in 0..count {
        let x = t.nodes[t.list[first + k] as usize];
        if !x.rg {
            continue;
        }
        let (lo, g) = split_grad(&mut t.grads, &t.goff, &n, i);
        op.backward(
            k,
            &ins[..count],
            out,
            g,
            &mut lo[x.off..x.off + x.shape.len()],
        )?;
    }
    Ok(())
}
