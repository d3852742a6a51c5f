//! The tape (an arena of nodes, values and gradients) and the `Var` handle.

use crate::error::NonFiniteInfo;
use crate::ops::custom::MAX_CUSTOM_INPUTS;
use crate::ops::{CustomOp, Op};
use crate::{Error, Float, Shape};
use std::cell::RefCell;
use std::sync::Arc;

/// Index of a node on its tape.
pub(crate) type Id = u32;
/// Marker for "no gradient variable yet".
pub(crate) const NONE: Id = u32::MAX;

/// One recorded operation: what produced it, its shape, where its value lives.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Node<T> {
    pub op: Op<T>,
    pub shape: Shape,
    /// Offset of the value (and of the gradient) in the arenas.
    pub off: usize,
    pub inputs: [Id; 3],
    pub n_in: u8,
    /// True if a gradient must flow through this node.
    pub rg: bool,
    /// True while the value is not computed yet: a bias add `a + b` or a large product
    /// waiting for the elementwise op that may consume them in the same pass (see
    /// [`Inner::ready`]).
    pub pending: bool,
}

/// Splits the gradient arena for the VJP of node `n` (index `i`): the part below `n`'s
/// range, where its inputs' gradients live, and `n`'s output gradient, which may sit
/// above its own range when aliased to a bias add's (see [`Inner::goff`]).
pub(crate) fn split_grad<'g, T>(
    grads: &'g mut [T],
    goff: &[usize],
    n: &Node<T>,
    i: usize,
) -> (&'g mut [T], &'g [T]) {
    let (lo, hi) = grads.split_at_mut(n.off);
    let at = goff[i] - n.off;
    (lo, &hi[at..at + n.shape.len()])
}

/// The arena behind a [`Tape`].
pub(crate) struct Inner<T: Float> {
    pub nodes: Vec<Node<T>>,
    pub vals: Vec<T>,
    pub grads: Vec<T>,
    /// Saved statistics and integer labels of some ops.
    pub aux: Vec<T>,
    /// Variable-length input lists (concat, custom ops).
    pub list: Vec<Id>,
    pub scratch: Vec<T>,
    pub scratch2: Vec<T>,
    /// Length up to which `vals`' buffer holds initialised values (the largest length
    /// it has had): [`Inner::alloc_uninit`] may extend `vals` up to it without writing.
    pub vals_init: usize,
    /// As `vals_init`, for `grads`.
    pub grads_init: usize,
    /// Per node, during `backward`: number of consumers and the last one.
    pub consumers: Vec<(u32, Id)>,
    /// Per node, during `backward`: its gradient is written (`=`), not accumulated, by
    /// its only consumer, so its range of the gradient arena is not zeroed first.
    pub assign: Vec<bool>,
    /// Per node, during `backward`: where its output gradient lives. Its own offset, or,
    /// when its only consumer is an add `c = x + b` of its shape (a bias add), `c`'s:
    /// `∂x = ∂c`, so the gradient is read in place instead of copied (see
    /// [`Inner::prepare_grads`]). Read it through [`split_grad`] and [`Inner::grad_off`].
    pub goff: Vec<usize>,
    /// Per node, during `backward`: for a leaf, how many of its consumers are views taken
    /// in increasing, disjoint ranges (`u32::MAX` when two overlap or go backwards) and
    /// the end of the last one (see [`Inner::prepare_grads`]).
    pub leaf_views: Vec<(u32, usize)>,
    /// Gradient variable of each node during a recorded backward pass.
    pub gvars: Vec<Id>,
    pub customs: Vec<Arc<dyn CustomOp<T>>>,
    pub recording: bool,
    pub check_finite: bool,
    pub error: Option<Error>,
}

/// A reusable recording of a computation: the arena of nodes, values and gradients.
///
/// Values and gradients of all nodes live in two big `Vec<T>` addressed by offsets, the
/// nodes in a `Vec` of small `Copy` records: [`reset`](Tape::reset) clears them and keeps
/// their capacity, so evaluating and differentiating the same function again allocates
/// nothing. Recording is off by default (then no gradient information is kept and every
/// op is just its arithmetic); turn it on with [`set_recording`](Tape::set_recording).
pub struct Tape<T: Float> {
    pub(crate) inner: RefCell<Inner<T>>,
}

impl<T: Float> Default for Tape<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Float> std::fmt::Debug for Tape<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let i = self.inner.borrow();
        f.debug_struct("Tape")
            .field("nodes", &i.nodes.len())
            .field("values", &i.vals.len())
            .field("recording", &i.recording)
            .finish()
    }
}

/// A handle to a node (a tensor value) on a [`Tape`]. `Copy`, 16 bytes; borrowing the
/// tape guarantees it cannot outlive a [`Tape::reset`].
#[derive(Clone, Copy)]
pub struct Var<'t, T: Float> {
    pub(crate) tape: &'t Tape<T>,
    pub(crate) id: Id,
}

impl<T: Float> std::fmt::Debug for Var<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Var({}, {})", self.id, self.shape())
    }
}

impl<T: Float> Tape<T> {
    /// An empty tape, recording off, NaN detection off.
    pub fn new() -> Self {
        Self {
            inner: RefCell::new(Inner {
                nodes: Vec::new(),
                vals: Vec::new(),
                grads: Vec::new(),
                aux: Vec::new(),
                list: Vec::new(),
                scratch: Vec::new(),
                scratch2: Vec::new(),
                vals_init: 0,
                grads_init: 0,
                consumers: Vec::new(),
                assign: Vec::new(),
                goff: Vec::new(),
                leaf_views: Vec::new(),
                gvars: Vec::new(),
                customs: Vec::new(),
                recording: false,
                check_finite: false,
                error: None,
            }),
        }
    }

    /// Clears all nodes, values, gradients and the sticky error; keeps every buffer's
    /// capacity and the recording / NaN-detection settings.
    pub fn reset(&mut self) {
        let i = self.inner.get_mut();
        i.nodes.clear();
        i.vals.clear();
        i.grads.clear();
        i.aux.clear();
        i.list.clear();
        i.gvars.clear();
        i.goff.clear();
        i.customs.clear();
        i.error = None;
    }

    /// Turns recording on or off for the operations that follow. When off, ops compute
    /// their values only and nothing can be differentiated through them.
    pub fn set_recording(&self, on: bool) {
        self.inner.borrow_mut().recording = on;
    }

    /// Whether operations are being recorded.
    pub fn is_recording(&self) -> bool {
        self.inner.borrow().recording
    }

    /// Turns NaN/Inf detection on or off: when on, the first operation whose output (or,
    /// in `backward`, whose input gradient) holds a non-finite value becomes the tape's
    /// [`Error::NonFinite`], naming the op and its shapes.
    pub fn set_check_finite(&self, on: bool) {
        self.inner.borrow_mut().check_finite = on;
    }

    /// The first error recorded since the last reset, if any.
    pub fn error(&self) -> Option<Error> {
        self.inner.borrow().error.clone()
    }

    /// Number of nodes on the tape.
    pub fn len(&self) -> usize {
        self.inner.borrow().nodes.len()
    }

    /// True if nothing was recorded since the last reset.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A differentiable input copied from `data`, with shape `dims`.
    pub fn leaf(&self, data: &[T], dims: &[usize]) -> Result<Var<'_, T>, Error> {
        self.input(data, dims, true)
    }

    /// An input that never receives a gradient (data, labels, noise).
    pub fn constant(&self, data: &[T], dims: &[usize]) -> Result<Var<'_, T>, Error> {
        self.input(data, dims, false)
    }

    /// A scalar (rank-0) differentiable leaf.
    pub fn scalar(&self, x: T) -> Var<'_, T> {
        let mut i = self.inner.borrow_mut();
        let off = i.alloc(1);
        i.vals[off] = x;
        let rg = i.recording;
        let id = i.push_raw(Op::Leaf, Shape::scalar(), off, [NONE; 3], 0, rg);
        Var { tape: self, id }
    }

    /// A constant filled with `value`.
    pub fn full(&self, value: T, dims: &[usize]) -> Result<Var<'_, T>, Error> {
        let shape = Shape::new(dims)?;
        let mut i = self.inner.borrow_mut();
        let off = i.alloc(shape.len());
        i.vals[off..off + shape.len()].fill(value);
        let id = i.push_raw(Op::Leaf, shape, off, [NONE; 3], 0, false);
        Ok(Var { tape: self, id })
    }

    fn input(&self, data: &[T], dims: &[usize], rg: bool) -> Result<Var<'_, T>, Error> {
        let shape = Shape::new(dims)?;
        if data.len() != shape.len() {
            return Err(Error::LengthMismatch {
                what: "tape input",
                expected: shape.len(),
                found: data.len(),
            });
        }
        let mut i = self.inner.borrow_mut();
        let off = i.vals.len();
        i.vals.extend_from_slice(data);
        let rg = rg && i.recording;
        let id = i.push_raw(Op::Leaf, shape, off, [NONE; 3], 0, rg);
        Ok(Var { tape: self, id })
    }

    /// Reverse pass from `y` with seed `seed` (the vector `a` of `aᵀ ∂y/∂x`, same length
    /// as `y`): afterwards every recorded input `x` holds `aᵀ ∂y/∂x`, read with
    /// [`Var::grad_into`] / [`Var::grad_acc`]. Gradients of views of a leaf land in the
    /// matching range of the leaf's gradient. May be called several times on the same
    /// recording (each call starts from zero gradients); allocation-free after warm-up.
    pub fn backward(&self, y: Var<'_, T>, seed: &[T]) -> Result<(), Error> {
        self.check(y)?;
        self.inner.borrow_mut().backward(y.id, seed)
    }

    /// [`backward`](Tape::backward) with seed 1 for a scalar `y` (a loss).
    pub fn backward_scalar(&self, y: Var<'_, T>) -> Result<(), Error> {
        self.backward(y, &[T::one()])
    }

    /// Recorded reverse pass (PyTorch's `create_graph`): computes `seedᵀ ∂y/∂x` for every
    /// node as new variables on this tape, so they can be differentiated again. Read them
    /// with [`gradient`](Tape::gradient). `seed` has `y`'s shape; it may itself depend on
    /// differentiable inputs. Recording must be on.
    pub fn backward_graph<'t>(&'t self, y: Var<'t, T>, seed: Var<'t, T>) -> Result<(), Error> {
        self.check(y)?;
        self.check(seed)?;
        self.inner
            .borrow_mut()
            .backward_graph_start(y.id, seed.id)?;
        for i in (0..=y.id as usize).rev() {
            // Built-in ops record their VJP while the arena is borrowed; a custom op's
            // recorded VJP is user code working on `Var`s, so it runs unborrowed.
            let custom = {
                let mut inner = self.inner.borrow_mut();
                let n = inner.nodes[i];
                let g = inner.gvars[i];
                if !n.rg || n.n_in == 0 || g == NONE {
                    continue;
                }
                match n.op {
                    Op::Custom { id, first, count } => {
                        let mut ids = [NONE; MAX_CUSTOM_INPUTS];
                        ids[..count].copy_from_slice(&inner.list[first..first + count]);
                        Some((inner.customs[id].clone(), ids, count, g))
                    }
                    _ => {
                        crate::ops::backward_graph_node(&mut inner, i, g)?;
                        if let Some(e) = &inner.error {
                            return Err(e.clone());
                        }
                        None
                    }
                }
            };
            if let Some((op, ids, count, g)) = custom {
                self.custom_backward_graph(&*op, i as Id, &ids[..count], g)?;
            }
        }
        Ok(())
    }

    /// Records the VJP of custom node `i` through [`CustomOp::backward_graph`].
    fn custom_backward_graph(
        &self,
        op: &dyn CustomOp<T>,
        i: Id,
        ids: &[Id],
        g: Id,
    ) -> Result<(), Error> {
        let var = |id| Var { tape: self, id };
        let mut inputs = [var(i); MAX_CUSTOM_INPUTS];
        for (v, &id) in inputs.iter_mut().zip(ids) {
            *v = var(id);
        }
        let inputs = &inputs[..ids.len()];
        for (k, &x) in ids.iter().enumerate() {
            let (rg, sx) = {
                let n = self.inner.borrow().nodes[x as usize];
                (n.rg, n.shape)
            };
            if !rg {
                continue;
            }
            let v = op.backward_graph(k, inputs, var(i), var(g))?;
            self.check(v)?;
            if v.shape() != sx {
                return Err(Error::ShapeMismatch {
                    op: op.name(),
                    lhs: sx,
                    rhs: v.shape(),
                });
            }
            self.inner.borrow_mut().acc_gvar(x, v.id);
        }
        Ok(())
    }

    /// The gradient variable of `x` from the last [`backward_graph`](Tape::backward_graph)
    /// (a zero tensor if `y` does not depend on `x`).
    pub fn gradient<'t>(&'t self, x: Var<'t, T>) -> Result<Var<'t, T>, Error> {
        self.check(x)?;
        let mut i = self.inner.borrow_mut();
        let g = i.gvars.get(x.id as usize).copied().unwrap_or(NONE);
        let id = if g == NONE {
            let shape = i.nodes[x.id as usize].shape;
            let off = i.alloc(shape.len());
            i.push_raw(Op::Leaf, shape, off, [NONE; 3], 0, false)
        } else {
            g
        };
        Ok(Var { tape: self, id })
    }

    pub(crate) fn check(&self, v: Var<'_, T>) -> Result<(), Error> {
        if !std::ptr::eq(self, v.tape) {
            return Err(Error::ForeignVar);
        }
        match &self.inner.borrow().error {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }
}

impl<'t, T: Float> Var<'t, T> {
    /// The tape this variable lives on.
    pub fn tape(&self) -> &'t Tape<T> {
        self.tape
    }

    /// The shape of the value.
    pub fn shape(&self) -> Shape {
        self.tape.inner.borrow().nodes[self.id as usize].shape
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape().len()
    }

    /// True if the tensor has no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copies the value into `out` (length must match).
    pub fn value_into(&self, out: &mut [T]) -> Result<(), Error> {
        self.tape.check(*self)?;
        self.tape.inner.borrow_mut().ready(self.id);
        let i = self.tape.inner.borrow();
        let n = &i.nodes[self.id as usize];
        let len = n.shape.len();
        if out.len() != len {
            return Err(Error::LengthMismatch {
                what: "value_into",
                expected: len,
                found: out.len(),
            });
        }
        out.copy_from_slice(&i.vals[n.off..n.off + len]);
        Ok(())
    }

    /// The value as a new `Vec` (allocates; use [`value_into`](Var::value_into) in hot loops).
    pub fn value(&self) -> Result<Vec<T>, Error> {
        let mut v = vec![T::zero(); self.len()];
        self.value_into(&mut v)?;
        Ok(v)
    }

    /// The value of a one-element tensor.
    pub fn item(&self) -> Result<T, Error> {
        let mut v = [T::zero()];
        self.value_into(&mut v)?;
        Ok(v[0])
    }

    fn grad_op(&self, out: &mut [T], acc: bool) -> Result<(), Error> {
        self.tape.check(*self)?;
        let i = self.tape.inner.borrow();
        let n = &i.nodes[self.id as usize];
        let len = n.shape.len();
        if out.len() != len {
            return Err(Error::LengthMismatch {
                what: "grad_into",
                expected: len,
                found: out.len(),
            });
        }
        if n.off + len > i.grads.len() {
            out.iter_mut().for_each(|o| {
                if !acc {
                    *o = T::zero()
                }
            });
            return Ok(());
        }
        let at = i.grad_off(self.id as usize);
        let g = &i.grads[at..at + len];
        if acc {
            out.iter_mut().zip(g).for_each(|(o, &g)| *o += g);
        } else {
            out.copy_from_slice(g);
        }
        Ok(())
    }

    /// Copies the gradient from the last [`Tape::backward`] into `out` (zeros if none).
    pub fn grad_into(&self, out: &mut [T]) -> Result<(), Error> {
        self.grad_op(out, false)
    }

    /// Adds the gradient from the last [`Tape::backward`] into `out` (`+=`).
    pub fn grad_acc(&self, out: &mut [T]) -> Result<(), Error> {
        self.grad_op(out, true)
    }

    /// The gradient as a new `Vec` (allocates).
    pub fn grad(&self) -> Result<Vec<T>, Error> {
        let mut v = vec![T::zero(); self.len()];
        self.grad_into(&mut v)?;
        Ok(v)
    }

    /// Applies a binary tape op after checking both operands live on the same tape.
    #[inline]
    pub(crate) fn bin(self, o: Var<'t, T>, f: impl FnOnce(&mut Inner<T>, Id, Id) -> Id) -> Self {
        let mut i = self.tape.inner.borrow_mut();
        let id = if std::ptr::eq(self.tape, o.tape) {
            i.ready(self.id);
            i.ready(o.id);
            f(&mut i, self.id, o.id)
        } else {
            i.fail(Error::ForeignVar)
        };
        Var {
            tape: self.tape,
            id,
        }
    }

    /// Applies a binary tape op that handles a pending left operand itself (the bias add,
    /// see [`Inner::add_deferred`]); the right one is computed first.
    #[inline]
    pub(crate) fn bin_lazy_lhs(
        self,
        o: Var<'t, T>,
        f: impl FnOnce(&mut Inner<T>, Id, Id) -> Id,
    ) -> Self {
        let mut i = self.tape.inner.borrow_mut();
        let id = if std::ptr::eq(self.tape, o.tape) {
            i.ready(o.id);
            f(&mut i, self.id, o.id)
        } else {
            i.fail(Error::ForeignVar)
        };
        Var {
            tape: self.tape,
            id,
        }
    }

    /// Applies a unary tape op (its input's value computed first, see [`Inner::ready`]).
    #[inline]
    pub(crate) fn un(self, f: impl FnOnce(&mut Inner<T>, Id) -> Id) -> Self {
        let mut i = self.tape.inner.borrow_mut();
        i.ready(self.id);
        let id = f(&mut i, self.id);
        drop(i);
        Var {
            tape: self.tape,
            id,
        }
    }

    /// Applies an elementwise unary op that evaluates a pending bias add itself
    /// ([`Inner::unary`] fuses `f(a + b)` into one pass).
    #[inline]
    pub(crate) fn un_fused(self, f: impl FnOnce(&mut Inner<T>, Id) -> Id) -> Self {
        let id = f(&mut self.tape.inner.borrow_mut(), self.id);
        Var {
            tape: self.tape,
            id,
        }
    }
}

impl<T: Float> Inner<T> {
    /// Reserves `len` zeroed values at the end of the value arena.
    #[inline]
    pub(crate) fn alloc(&mut self, len: usize) -> usize {
        let off = self.vals.len();
        self.vals.resize(off + len, T::zero());
        off
    }

    /// Reserves `len` values at the end of the value arena **without zeroing them** when
    /// the buffer already held values there (stale values of an earlier recording): for
    /// ops that overwrite every element of their output. Saves the memset of a fresh
    /// output, which costs as much as a cheap elementwise op on large tensors.
    #[inline]
    pub(crate) fn alloc_uninit(&mut self, len: usize) -> usize {
        let off = self.vals.len();
        self.vals_init = self.vals_init.max(off);
        let end = off + len;
        if end <= self.vals_init {
            // SAFETY: `end <= vals_init`, the largest length `vals` has had, which is at
            // most its capacity (a `Vec` never shrinks its buffer on `clear`/`truncate`),
            // and every element below it was written (f32/f64 values, `Copy`, never
            // de-initialised by `clear`).
            unsafe { self.vals.set_len(end) };
        } else {
            self.vals.resize(end, T::zero());
            self.vals_init = end;
        }
        off
    }

    /// Computes the value of node `x` if it is still pending (a bias add recorded by
    /// [`Inner::add_deferred`] or a product recorded by [`Inner::matmul_deferred`] that
    /// no consumer fused, or whose value is asked for later). Every path that reads a
    /// node's value from outside the op that made it goes through here: `Var`'s op
    /// entry points for their inputs, `value_into` and the recorded backward pass.
    #[inline]
    pub(crate) fn ready(&mut self, x: Id) {
        if let Some(n) = self.nodes.get(x as usize)
            && n.pending
        {
            match n.op {
                Op::Matmul { .. } => self.materialize_matmul(x),
                _ => self.materialize_add(x),
            }
        }
    }

    #[inline]
    pub(crate) fn node(&self, id: Id) -> Node<T> {
        self.nodes[id as usize]
    }

    #[inline]
    pub(crate) fn push_raw(
        &mut self,
        op: Op<T>,
        shape: Shape,
        off: usize,
        inputs: [Id; 3],
        n_in: u8,
        rg: bool,
    ) -> Id {
        let id = self.nodes.len() as Id;
        self.nodes.push(Node {
            op,
            shape,
            off,
            inputs,
            n_in,
            rg,
            pending: false,
        });
        id
    }

    /// Records a computed node; `rg` from the inputs; runs the NaN check if enabled.
    #[inline]
    pub(crate) fn push(&mut self, op: Op<T>, shape: Shape, off: usize, inputs: &[Id]) -> Id {
        let mut ins = [NONE; 3];
        let mut rg = false;
        for (k, &x) in inputs.iter().enumerate().take(3) {
            ins[k] = x;
            rg |= self.nodes[x as usize].rg;
        }
        let rg = rg && self.recording;
        if self.check_finite && self.error.is_none() {
            let len = shape.len();
            if let Some(idx) = self.vals[off..off + len]
                .iter()
                .position(|v| !v.is_finite())
            {
                let s = |k: usize| {
                    inputs
                        .get(k)
                        .map(|&x| self.nodes[x as usize].shape)
                        .unwrap_or_default()
                };
                self.error = Some(Error::NonFinite(Box::new(NonFiniteInfo {
                    op: op.name(),
                    input0: s(0),
                    input1: s(1),
                    output: shape,
                    index: idx,
                    phase: "",
                })));
            }
        }
        self.push_raw(op, shape, off, ins, inputs.len().min(3) as u8, rg)
    }

    /// Records the first error and returns a dummy scalar node.
    #[cold]
    pub(crate) fn fail(&mut self, e: Error) -> Id {
        if self.error.is_none() {
            self.error = Some(e);
        }
        let off = self.alloc(1);
        self.push_raw(Op::Leaf, Shape::scalar(), off, [NONE; 3], 0, false)
    }

    /// Fast reverse pass into the gradient arena.
    pub(crate) fn backward(&mut self, y: Id, seed: &[T]) -> Result<(), Error> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        let yn = self.node(y);
        let len = yn.shape.len();
        if seed.len() != len {
            return Err(Error::LengthMismatch {
                what: "backward seed",
                expected: len,
                found: seed.len(),
            });
        }
        if !yn.rg && !self.recording {
            return Err(Error::NotRecording);
        }
        self.prepare_grads(y);
        self.grads[yn.off..yn.off + len].copy_from_slice(seed);
        for i in (0..=y as usize).rev() {
            let n = self.nodes[i];
            if !n.rg || n.n_in == 0 {
                continue;
            }
            crate::ops::backward_node(self, i)?;
            if self.check_finite {
                for k in 0..n.n_in as usize {
                    let x = self.nodes[n.inputs[k] as usize];
                    let at = self.grad_off(n.inputs[k] as usize);
                    let g = &self.grads[at..at + x.shape.len()];
                    if let Some(idx) = g.iter().position(|v| !v.is_finite()) {
                        let e = Error::NonFinite(Box::new(NonFiniteInfo {
                            op: n.op.name(),
                            input0: x.shape,
                            input1: Shape::scalar(),
                            output: n.shape,
                            index: idx,
                            phase: " in the backward pass",
                        }));
                        self.error = Some(e.clone());
                        return Err(e);
                    }
                }
            }
        }
        Ok(())
    }

    /// Sizes the gradient arena like the value arena and zeroes it, except the ranges of
    /// the nodes whose only consumer writes their gradient with `=` (see
    /// [`Inner::assign`]): a node read by one elementwise op, bias add or matrix product
    /// gets its gradient written once, so zeroing it first and adding would only move
    /// memory (the memset and the reads cost as much as the elementwise VJPs). Also sets
    /// [`Inner::goff`]: a node whose only use is the first operand of an add of its shape
    /// (`x·W + b`) shares the add's gradient instead of receiving a copy of it, which
    /// takes a full pass over the largest tensors out of an MLP's reverse pass.
    fn prepare_grads(&mut self, y: Id) {
        let nn = self.nodes.len();
        self.consumers.clear();
        self.consumers.resize(nn, (0, NONE));
        for c in 0..nn {
            let n = self.nodes[c];
            let (list, k) = match n.op {
                Op::Concat { first, count, .. } | Op::Custom { first, count, .. } => {
                    (true, (first, count))
                }
                _ => (false, (0, n.n_in as usize)),
            };
            for j in 0..k.1 {
                let x = if list {
                    self.list[k.0 + j]
                } else {
                    n.inputs[j]
                } as usize;
                let e = &mut self.consumers[x];
                *e = (e.0 + 1, c as Id);
            }
        }
        self.assign.clear();
        self.assign.resize(nn, false);
        self.goff.clear();
        self.goff.extend(self.nodes.iter().map(|n| n.off));
        // Views of a leaf (a flat θ cut into layers' weights) share its gradient range.
        // When every consumer of the leaf is a view and the views, in recording order,
        // take increasing disjoint ranges, a view whose only consumer is a matrix product
        // is assigned (the product writes its gradient with `=`): then only the gaps of
        // the leaf's range (e.g. the biases, summed with `+=`) are zeroed, not all of it.
        self.leaf_views.clear();
        self.leaf_views.resize(nn, (0, 0));
        for v in 0..nn {
            let n = self.nodes[v];
            if !matches!(n.op, Op::View { .. }) {
                continue;
            }
            let x = n.inputs[0] as usize;
            if self.nodes[x].n_in != 0 {
                continue;
            }
            let e = &mut self.leaf_views[x];
            *e = if e.0 != u32::MAX && n.off >= e.1 {
                (e.0 + 1, n.off + n.shape.len())
            } else {
                (u32::MAX, 0)
            };
        }
        // Descending, so a chain of adds resolves to the last one's range.
        for x in (0..nn).rev() {
            let (count, c) = self.consumers[x];
            let xn = self.nodes[x];
            let view_of_split_leaf = matches!(xn.op, Op::View { .. }) && {
                let l = xn.inputs[0] as usize;
                let (views, _) = self.leaf_views[l];
                self.nodes[l].n_in == 0 && views != u32::MAX && views == self.consumers[l].0
            };
            if view_of_split_leaf {
                // Only products: their VJP writes either operand's gradient with `=` when
                // assigned (other ops may honour `assign` for their first input only).
                if count == 1 && c <= y && xn.rg && self.nodes[c as usize].rg {
                    let cn = self.nodes[c as usize];
                    self.assign[x] = matches!(cn.op, Op::Matmul { .. });
                }
                continue;
            }
            if count != 1 || c > y || !xn.rg || xn.n_in == 0 || matches!(xn.op, Op::View { .. }) {
                continue;
            }
            let cn = self.nodes[c as usize];
            if !cn.rg {
                continue;
            }
            self.assign[x] = crate::ops::writes_input_grad(self, cn, x as Id);
            if matches!(cn.op, Op::Add)
                && cn.inputs[0] == x as Id
                && cn.inputs[1] != x as Id
                && cn.shape == xn.shape
            {
                self.goff[x] = self.goff[c as usize];
            }
        }
        // Zero everything but the assigned and aliased ranges (non-view nodes own
        // disjoint ranges, in increasing order of id and offset).
        let total = self.vals.len();
        self.grads_init = self.grads_init.max(self.grads.len());
        if total <= self.grads_init {
            // SAFETY: as in `alloc_uninit`: below `grads_init` (the largest length
            // `grads` has had, at most its capacity) every element was written.
            unsafe { self.grads.set_len(total) };
        } else {
            self.grads.resize(total, T::zero());
            self.grads_init = total;
        }
        let mut pos = 0;
        for x in 0..nn {
            let n = self.nodes[x];
            if matches!(n.op, Op::View { .. }) {
                // Inside its leaf's range: handled with the leaf below.
                continue;
            }
            if n.n_in == 0 && self.leaf_views[x].0 != 0 && self.leaf_views[x].0 != u32::MAX {
                // A split leaf: zero the gaps between its assigned views (increasing
                // offsets, checked above).
                let mut p = n.off;
                for v in x + 1..nn {
                    let vn = self.nodes[v];
                    if self.assign[v]
                        && vn.inputs[0] as usize == x
                        && matches!(vn.op, Op::View { .. })
                    {
                        self.grads[p..vn.off].fill(T::zero());
                        p = vn.off + vn.shape.len();
                    }
                }
                if p != n.off {
                    self.grads[pos..n.off].fill(T::zero());
                    self.grads[p..n.off + n.shape.len()].fill(T::zero());
                    pos = n.off + n.shape.len();
                }
                continue;
            }
            if self.assign[x] || self.goff[x] != n.off {
                self.grads[pos..n.off].fill(T::zero());
                pos = n.off + n.shape.len();
            }
        }
        self.grads[pos..total].fill(T::zero());
    }

    /// Where node `i`'s gradient lives in the arena after the last `backward` (see
    /// [`Inner::goff`]; its own offset for nodes recorded since).
    pub(crate) fn grad_off(&self, i: usize) -> usize {
        self.goff.get(i).copied().unwrap_or(self.nodes[i].off)
    }

    /// Adds `contrib` to the gradient variable of node `x`.
    pub(crate) fn acc_gvar(&mut self, x: Id, contrib: Id) {
        if !self.nodes[x as usize].rg {
            return;
        }
        let old = self.gvars[x as usize];
        self.gvars[x as usize] = if old == NONE {
            contrib
        } else {
            self.add(old, contrib)
        };
    }

    /// Checks and clears the state for a recorded reverse pass from `y` seeded by `seed`
    /// (the loop runs in [`Tape::backward_graph`]).
    pub(crate) fn backward_graph_start(&mut self, y: Id, seed: Id) -> Result<(), Error> {
        if !self.recording {
            return Err(Error::NotRecording);
        }
        let (ys, ss) = (self.node(y).shape, self.node(seed).shape);
        if ys != ss {
            return Err(Error::ShapeMismatch {
                op: "backward_graph seed",
                lhs: ys,
                rhs: ss,
            });
        }
        // The recorded VJPs read values of any node: compute the deferred ones.
        for x in 0..self.nodes.len() {
            self.ready(x as Id);
        }
        let n0 = self.nodes.len();
        self.gvars.clear();
        self.gvars.resize(n0, NONE);
        self.gvars[y as usize] = seed;
        Ok(())
    }
}
