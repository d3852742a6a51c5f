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
    /// Writes the output (`out` is zeroed, of the output shape's length, unless
    /// [`overwrites_output`](CustomOp::overwrites_output) says otherwise).
    fn forward(&self, inputs: &[&[T]], out: &mut [T]);
    /// True if [`try_forward`](CustomOp::try_forward) writes every element of `out`
    /// whenever it succeeds: the tape then hands it the buffer without zeroing it first
    /// (it may hold stale values of an earlier recording), which saves a pass over the
    /// output. The default is `false` (a zeroed `out`).
    fn overwrites_output(&self) -> bool {
        false
    }
    /// The forward the tape calls: as [`forward`](CustomOp::forward), but may fail (an op
    /// that runs a solver, say). An error is recorded on the tape as the errors of the
    /// built-in ops are (sticky, returned by the next reading call); wrap an error of your
    /// own in [`Error::CustomOpFailed`]. The default calls `forward`.
    fn try_forward(&self, inputs: &[&[T]], out: &mut [T]) -> Result<(), Error> {
        self.forward(inputs, out);
        Ok(())
    }
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
    /// The VJPs of every input at once, the one [`Tape::backward`](crate::Tape::backward)
    /// calls: accumulates (`+=`) `gᵀ ∂out/∂inputs[k]` into `grad_inputs[k]` for each slot
    /// that is `Some` (the inputs that need a gradient; `None` for the others). Override it
    /// when the VJPs share work, e.g. an ODE solve whose one adjoint pass yields the
    /// gradients of the initial state, the parameters and the times together. The slots
    /// never alias: an input given twice (or overlapping another's storage) gets a
    /// separate zeroed slot, added to its gradient afterwards. The default calls
    /// [`backward`](CustomOp::backward) once per `Some` slot.
    fn backward_all(
        &self,
        inputs: &[&[T]],
        out: &[T],
        grad_out: &[T],
        grad_inputs: &mut [Option<&mut [T]>],
    ) -> Result<(), Error> {
        for (k, g) in grad_inputs.iter_mut().enumerate() {
            if let Some(g) = g {
                self.backward(k, inputs, out, grad_out, g)?;
            }
        }
        Ok(())
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
        let off = if op.overwrites_output() {
            self.alloc_uninit(shape.len())
        } else {
            self.alloc(shape.len())
        };
        let (src, dst) = self.vals.split_at_mut(off);
        let empty: &[T] = &[];
        let mut ins = [empty; MAX_CUSTOM_INPUTS];
        for (k, &x) in xs.iter().enumerate() {
            let n = self.nodes[x as usize];
            ins[k] = &src[n.off..n.off + n.shape.len()];
        }
        if let Err(e) = op.try_forward(&ins[..xs.len()], &mut dst[..shape.len()]) {
            return self.fail(e);
        }
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

/// Fast VJP through the user's kernel: one [`CustomOp::backward_all`] call for all inputs.
pub(crate) fn backward<T: Float>(t: &mut Inner<T>, i: usize) -> Result<(), Error> {
    let n = t.nodes[i];
    let Op::Custom { id, first, count } = n.op else {
        return Ok(());
    };
    let op = t.customs[id].clone();
    // Gradient range (offset, length) of each input that needs one. An input whose range
    // overlaps an earlier slot's (the same node twice, overlapping views) gets a range of
    // the scratch buffer instead, added to its gradient after the call.
    let mut ranges: [Option<(usize, usize)>; MAX_CUSTOM_INPUTS] = [None; MAX_CUSTOM_INPUTS];
    let mut in_scratch = [false; MAX_CUSTOM_INPUTS];
    let mut scratch_len = 0;
    for k in 0..count {
        let x = t.nodes[t.list[first + k] as usize];
        if !x.rg {
            continue;
        }
        let (o, l) = (x.off, x.shape.len());
        in_scratch[k] = ranges[..k]
            .iter()
            .zip(&in_scratch)
            .any(|(r, &s)| matches!(*r, Some((oj, lj)) if !s && o < oj + lj && oj < o + l));
        if in_scratch[k] {
            scratch_len += l;
        }
        ranges[k] = Some((o, l));
    }
    let Inner {
        nodes,
        vals,
        grads,
        goff,
        list,
        scratch,
        ..
    } = t;
    scratch.clear();
    scratch.resize(scratch_len, T::zero());
    let empty: &[T] = &[];
    let mut ins = [empty; MAX_CUSTOM_INPUTS];
    for k in 0..count {
        let x = nodes[list[first + k] as usize];
        ins[k] = &vals[x.off..x.off + x.shape.len()];
    }
    let out = &vals[n.off..n.off + n.shape.len()];
    let (lo, g) = split_grad(grads, goff, &n, i);
    let mut slots: [Option<&mut [T]>; MAX_CUSTOM_INPUTS] = std::array::from_fn(|_| None);
    // Disjoint ranges of the arena, carved in increasing offset order.
    let mut order = [0usize; MAX_CUSTOM_INPUTS];
    let mut m = 0;
    for k in 0..count {
        if ranges[k].is_some() && !in_scratch[k] {
            order[m] = k;
            m += 1;
        }
    }
    order[..m].sort_unstable_by_key(|&k| ranges[k].map_or(0, |r| r.0));
    let (mut rest, mut base) = (lo, 0);
    for &k in &order[..m] {
        if let Some((o, l)) = ranges[k] {
            let (_, tail) = std::mem::take(&mut rest).split_at_mut(o - base);
            let (mine, tail) = tail.split_at_mut(l);
            slots[k] = Some(mine);
            rest = tail;
            base = o + l;
        }
    }
    let mut srest: &mut [T] = scratch;
    for k in 0..count {
        if let (Some((_, l)), true) = (ranges[k], in_scratch[k]) {
            let (mine, tail) = std::mem::take(&mut srest).split_at_mut(l);
            slots[k] = Some(mine);
            srest = tail;
        }
    }
    op.backward_all(&ins[..count], out, g, &mut slots[..count])?;
    let mut at = 0;
    for k in 0..count {
        if let (Some((o, l)), true) = (ranges[k], in_scratch[k]) {
            for (d, &s) in t.grads[o..o + l].iter_mut().zip(&t.scratch[at..at + l]) {
                *d += s;
            }
            at += l;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::{CustomOp, CustomOpError, Error, Shape, Tape};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// `y = x0 · x1` elementwise; counts its `backward_all` calls; fails on a NaN input.
    struct Prod(AtomicUsize);

    #[derive(Debug, thiserror::Error)]
    #[error("NaN input")]
    struct NanInput;

    impl CustomOp<f64> for Prod {
        fn name(&self) -> &'static str {
            "prod"
        }
        fn output_shape(&self, inputs: &[Shape]) -> Result<Shape, Error> {
            Ok(inputs[0])
        }
        fn forward(&self, inputs: &[&[f64]], out: &mut [f64]) {
            for ((o, a), b) in out.iter_mut().zip(inputs[0]).zip(inputs[1]) {
                *o = a * b;
            }
        }
        fn try_forward(&self, inputs: &[&[f64]], out: &mut [f64]) -> Result<(), Error> {
            if inputs.iter().any(|x| x.iter().any(|v| v.is_nan())) {
                return Err(Error::CustomOpFailed {
                    op: "prod",
                    source: CustomOpError::new(NanInput),
                });
            }
            self.forward(inputs, out);
            Ok(())
        }
        fn backward_all(
            &self,
            inputs: &[&[f64]],
            _out: &[f64],
            g: &[f64],
            grads: &mut [Option<&mut [f64]>],
        ) -> Result<(), Error> {
            self.0.fetch_add(1, Ordering::Relaxed);
            for (k, slot) in grads.iter_mut().enumerate() {
                if let Some(gx) = slot {
                    for ((d, &o), &g) in gx.iter_mut().zip(inputs[1 - k]).zip(g) {
                        *d += o * g;
                    }
                }
            }
            Ok(())
        }
    }

    #[test]
    fn backward_all_runs_once_and_handles_aliased_inputs() -> Result<(), Error> {
        let prod = Arc::new(Prod(AtomicUsize::new(0)));
        let op: Arc<dyn CustomOp<f64>> = prod.clone();
        let tape = Tape::new();
        tape.set_recording(true);
        let x = tape.leaf(&[1.0, 2.0, 3.0, 4.0], &[4])?;
        // x·x (the same node twice) and a[0..2]·a[1..3] (overlapping views).
        let y = tape.custom(&op, &[x, x]);
        let (u, v) = (x.view(0, &[2]), x.view(1, &[2]));
        let w = tape.custom(&op, &[u, v]);
        let s = y.sum() + w.sum();
        tape.backward(s, &[1.0])?;
        assert_eq!(prod.0.load(Ordering::Relaxed), 2);
        // d/dx Σx² = 2x; d/dx (x0x1 + x1x2) = (x1, x0 + x2, x1, 0).
        assert_eq!(x.grad()?, vec![2.0 + 2.0, 4.0 + 4.0, 6.0 + 2.0, 8.0]);
        Ok(())
    }

    /// `y = 2x`, writing every output element (no zeroed buffer needed).
    struct Double;

    impl CustomOp<f64> for Double {
        fn name(&self) -> &'static str {
            "double"
        }
        fn output_shape(&self, inputs: &[Shape]) -> Result<Shape, Error> {
            Ok(inputs[0])
        }
        fn overwrites_output(&self) -> bool {
            true
        }
        fn forward(&self, inputs: &[&[f64]], out: &mut [f64]) {
            for (o, &x) in out.iter_mut().zip(inputs[0]) {
                *o = 2.0 * x;
            }
        }
        fn backward(
            &self,
            _k: usize,
            _inputs: &[&[f64]],
            _out: &[f64],
            g: &[f64],
            gx: &mut [f64],
        ) -> Result<(), Error> {
            for (d, &g) in gx.iter_mut().zip(g) {
                *d += 2.0 * g;
            }
            Ok(())
        }
    }

    #[test]
    fn an_op_that_overwrites_its_output_gets_it_right_on_a_reused_tape() -> Result<(), Error> {
        let op: Arc<dyn CustomOp<f64>> = Arc::new(Double);
        let mut tape = Tape::new();
        for round in 0..3 {
            tape.reset();
            tape.set_recording(true);
            // Stale values from the previous round lie where the output goes.
            let _junk = tape.constant(&[7.0; 6], &[6])?;
            let x = tape.leaf(&[1.0, -2.0, round as f64], &[3])?;
            let y = tape.custom(&op, &[x]);
            assert_eq!(y.value()?, vec![2.0, -4.0, 2.0 * round as f64]);
            tape.backward(y.sum(), &[1.0])?;
            assert_eq!(x.grad()?, vec![2.0; 3]);
        }
        Ok(())
    }

    #[test]
    fn failed_forward_is_recorded_on_the_tape() -> Result<(), Error> {
        let op: Arc<dyn CustomOp<f64>> = Arc::new(Prod(AtomicUsize::new(0)));
        let tape = Tape::new();
        tape.set_recording(true);
        let x = tape.leaf(&[1.0, f64::NAN], &[2])?;
        let y = tape.custom(&op, &[x, x]).sum();
        let e = tape.backward(y, &[1.0]).err();
        match e {
            Some(Error::CustomOpFailed { op: "prod", source }) => {
                assert!(source.inner().downcast_ref::<NanInput>().is_some());
            }
            other => panic!("expected CustomOpFailed, got {other:?}"),
        }
        Ok(())
    }
}
