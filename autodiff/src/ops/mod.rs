//! Operations: one module per family, each with its forward kernel, its fast VJP kernel
//! (accumulating into the gradient arena) and its VJP written as tape operations (used
//! when the backward pass is itself recorded, see [`Tape::backward_graph`](crate::Tape::backward_graph)).

pub(crate) mod binary;
pub(crate) mod conv;
pub(crate) mod custom;
pub(crate) mod loss;
pub(crate) mod matmul;
pub(crate) mod reduce;
pub(crate) mod shape_ops;
pub(crate) mod unary;

pub use custom::{CustomOp, MAX_CUSTOM_INPUTS};
pub(crate) use unary::UnOp;

/// The operation that produced a node, with its static arguments.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Op<T> {
    /// Input leaf (copied from a caller slice).
    Leaf,
    /// Contiguous view (reshape or flat range) aliasing the input's storage.
    View {
        start: usize,
    },
    /// Zero tensor with the input written at flat offset `start` (VJP of `View`).
    Embed {
        start: usize,
    },
    Add,
    Sub,
    Mul,
    Div,
    AddScalar(T),
    MulScalar(T),
    Unary(UnOp),
    Elu(T),
    Matmul {
        ta: bool,
        tb: bool,
    },
    Transpose,
    SumAll,
    MeanAll,
    SumAxis(usize),
    MeanAxis(usize),
    /// Sum of a broadcast tensor back to the node's shape.
    SumTo,
    /// Broadcast of the input to the node's shape.
    Expand,
    Concat {
        axis: usize,
        first: usize,
        count: usize,
    },
    Narrow {
        axis: usize,
        start: usize,
    },
    /// Zero tensor with the input placed at `start` along `axis` (VJP of `Narrow`).
    PadAxis {
        axis: usize,
        start: usize,
    },
    Conv2d {
        stride: usize,
        pad: usize,
    },
    /// `∂x` of `conv2d` as an op of `(gy, w)` (a transposed convolution; the map size is the node's shape).
    Conv2dGradInput {
        stride: usize,
        pad: usize,
    },
    /// `∂w` of `conv2d` as an op of `(x, gy)` (the kernel size is the node's shape).
    Conv2dGradWeight {
        stride: usize,
        pad: usize,
    },
    AvgPool {
        k: usize,
        stride: usize,
    },
    /// Transpose of `AvgPool` (its VJP as an op).
    AvgPoolGrad {
        k: usize,
        stride: usize,
    },
    GlobalAvgPool,
    GroupNorm {
        groups: usize,
        aux: usize,
        eps: T,
        /// `max(·, 0)` applied to the (affine) output in the same node.
        relu: bool,
    },
    LogSoftmax,
    Pick {
        aux: usize,
    },
    Unpick {
        aux: usize,
    },
    Custom {
        id: usize,
        first: usize,
        count: usize,
    },
}

impl<T> Op<T> {
    /// Name used in error messages.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Op::Leaf => "leaf",
            Op::View { .. } => "view",
            Op::Embed { .. } => "embed",
            Op::Add => "add",
            Op::Sub => "sub",
            Op::Mul => "mul",
            Op::Div => "div",
            Op::AddScalar(_) => "add_scalar",
            Op::MulScalar(_) => "mul_scalar",
            Op::Unary(u) => u.name(),
            Op::Elu(_) => "elu",
            Op::Matmul { .. } => "matmul",
            Op::Transpose => "transpose",
            Op::SumAll => "sum",
            Op::MeanAll => "mean",
            Op::SumAxis(_) => "sum_axis",
            Op::MeanAxis(_) => "mean_axis",
            Op::SumTo => "sum_to",
            Op::Expand => "expand",
            Op::Concat { .. } => "concat",
            Op::Narrow { .. } => "narrow",
            Op::PadAxis { .. } => "pad_axis",
            Op::Conv2d { .. } => "conv2d",
            Op::Conv2dGradInput { .. } => "conv2d_grad_input",
            Op::Conv2dGradWeight { .. } => "conv2d_grad_weight",
            Op::AvgPool { .. } => "avg_pool2d",
            Op::AvgPoolGrad { .. } => "avg_pool2d_grad",
            Op::GlobalAvgPool => "global_avg_pool2d",
            Op::GroupNorm { .. } => "group_norm",
            Op::LogSoftmax => "log_softmax",
            Op::Pick { .. } => "pick",
            Op::Unpick { .. } => "unpick",
            Op::Custom { .. } => "custom",
        }
    }
}

use crate::tape::{Id, Inner};
use crate::{Error, Float};

/// True if the fast VJP of node `c` writes the gradient of its input `x` with `=` when
/// `Inner::assign[x]` is set (`x` is then `c`'s only use, see `Inner::prepare_grads`):
/// the elementwise unary ops, the scalar ops, matrix products, group norm, `conv2d`'s
/// input when its `∂x` is a flipped-kernel convolution, and add/sub/mul when `x` has the
/// output's shape and the other operand too or is a repeated row (a bias).
pub(crate) fn writes_input_grad<T: Float>(t: &Inner<T>, c: crate::tape::Node<T>, x: Id) -> bool {
    match c.op {
        Op::Unary(u) => u != UnOp::Step,
        Op::Elu(_) | Op::AddScalar(_) | Op::MulScalar(_) | Op::Matmul { .. } => true,
        Op::GroupNorm { .. } => true,
        Op::Conv2d { .. } => conv::writes_input_grad(t, c, x),
        Op::Add | Op::Sub | Op::Mul => {
            let (a, b) = (t.nodes[c.inputs[0] as usize], t.nodes[c.inputs[1] as usize]);
            a.shape == c.shape
                && (b.shape == c.shape || binary::channel_block(b.shape, c.shape).is_some())
                && !b.shape.is_empty()
                && t.nodes[x as usize].shape == c.shape
        }
        _ => false,
    }
}

/// Fast VJP of node `i` (accumulates into the gradient arena).
pub(crate) fn backward_node<T: Float>(t: &mut Inner<T>, i: usize) -> Result<(), Error> {
    match t.nodes[i].op {
        Op::Leaf => {}
        Op::View { .. }
        | Op::Embed { .. }
        | Op::Concat { .. }
        | Op::Narrow { .. }
        | Op::PadAxis { .. } => shape_ops::backward(t, i),
        Op::Add
        | Op::Sub
        | Op::Mul
        | Op::Div
        | Op::AddScalar(_)
        | Op::MulScalar(_)
        | Op::SumTo
        | Op::Expand => binary::backward(t, i),
        Op::Unary(_) | Op::Elu(_) => unary::backward(t, i),
        Op::Matmul { .. } | Op::Transpose => matmul::backward(t, i),
        Op::SumAll | Op::MeanAll | Op::SumAxis(_) | Op::MeanAxis(_) => reduce::backward(t, i),
        Op::Conv2d { .. }
        | Op::Conv2dGradInput { .. }
        | Op::Conv2dGradWeight { .. }
        | Op::AvgPool { .. }
        | Op::AvgPoolGrad { .. }
        | Op::GlobalAvgPool
        | Op::GroupNorm { .. } => conv::backward(t, i),
        Op::LogSoftmax | Op::Pick { .. } | Op::Unpick { .. } => loss::backward(t, i),
        Op::Custom { .. } => custom::backward(t, i)?,
    }
    Ok(())
}

/// VJP of node `i` as tape operations, given its gradient variable `g`.
pub(crate) fn backward_graph_node<T: Float>(
    t: &mut Inner<T>,
    i: usize,
    g: Id,
) -> Result<(), Error> {
    match t.nodes[i].op {
        Op::Leaf => {}
        Op::View { .. }
        | Op::Embed { .. }
        | Op::Concat { .. }
        | Op::Narrow { .. }
        | Op::PadAxis { .. } => shape_ops::backward_graph(t, i, g),
        Op::Add
        | Op::Sub
        | Op::Mul
        | Op::Div
        | Op::AddScalar(_)
        | Op::MulScalar(_)
        | Op::SumTo
        | Op::Expand => binary::backward_graph(t, i, g),
        Op::Unary(_) | Op::Elu(_) => unary::backward_graph(t, i, g),
        Op::Matmul { .. } | Op::Transpose => matmul::backward_graph(t, i, g),
        Op::SumAll | Op::MeanAll | Op::SumAxis(_) | Op::MeanAxis(_) => {
            reduce::backward_graph(t, i, g)
        }
        Op::Conv2d { .. }
        | Op::Conv2dGradInput { .. }
        | Op::Conv2dGradWeight { .. }
        | Op::AvgPool { .. }
        | Op::AvgPoolGrad { .. }
        | Op::GlobalAvgPool
        | Op::GroupNorm { .. } => conv::backward_graph(t, i, g)?,
        Op::LogSoftmax | Op::Pick { .. } | Op::Unpick { .. } => loss::backward_graph(t, i, g),
        // Run by `Tape::backward_graph` outside the arena borrow.
        Op::Custom { .. } => {}
    }
    Ok(())
}
