//! The operations on [`Var`], as methods and operators.

use crate::ops::binary::Bin;
use crate::ops::{CustomOp, UnOp};
use crate::tape::Inner;
use crate::{Float, Shape, Tape, Var};
use std::ops::{Add, Div, Mul, Neg, Sub};
use std::sync::Arc;

macro_rules! unary_methods {
    ($($(#[$m:meta])* $name:ident => $u:ident;)*) => {
        $( $(#[$m])* pub fn $name(self) -> Self { self.un_fused(|t, x| t.unary(UnOp::$u, x)) } )*
    };
}

fn shape_or_fail<T: Float>(t: &mut Inner<T>, dims: &[usize]) -> Result<Shape, u32> {
    Shape::new(dims).map_err(|e| t.fail(e))
}

#[allow(clippy::should_implement_trait)] // the operator traits are implemented too, below
impl<'t, T: Float> Var<'t, T> {
    unary_methods! {
        /// `−x`.
        neg => Neg;
        /// `tanh x`.
        tanh => Tanh;
        /// `max(x, 0)`.
        relu => Relu;
        /// `log(1 + eˣ)`.
        softplus => Softplus;
        /// `1 / (1 + e⁻ˣ)`.
        sigmoid => Sigmoid;
        /// `eˣ`.
        exp => Exp;
        /// Natural logarithm.
        log => Log;
        /// Square root.
        sqrt => Sqrt;
        /// `x²`.
        square => Square;
        /// `sin x`.
        sin => Sin;
        /// `cos x`.
        cos => Cos;
    }

    /// `x` if `x > 0`, else `α (eˣ − 1)`.
    pub fn elu(self, alpha: T) -> Self {
        self.un(|t, x| t.elu(x, alpha))
    }

    /// Broadcasting `self + o`.
    pub fn add(self, o: Self) -> Self {
        self.bin_lazy_lhs(o, |t, a, b| t.add_deferred(a, b))
    }
    /// Broadcasting `self − o`.
    pub fn sub(self, o: Self) -> Self {
        self.bin(o, |t, a, b| t.binary(Bin::Sub, a, b))
    }
    /// Broadcasting elementwise `self · o`.
    pub fn mul(self, o: Self) -> Self {
        self.bin(o, |t, a, b| t.binary(Bin::Mul, a, b))
    }
    /// Broadcasting elementwise `self / o`.
    pub fn div(self, o: Self) -> Self {
        self.bin(o, |t, a, b| t.binary(Bin::Div, a, b))
    }
    /// `x + c`.
    pub fn add_scalar(self, c: T) -> Self {
        self.un(|t, x| t.scalar_op(x, c, true))
    }
    /// `x · c`.
    pub fn mul_scalar(self, c: T) -> Self {
        self.un(|t, x| t.scalar_op(x, c, false))
    }

    /// Matrix product of 2-D tensors `[m, k] · [k, n]`.
    pub fn matmul(self, o: Self) -> Self {
        self.bin(o, |t, a, b| t.matmul_deferred(a, b))
    }
    /// `op(self) · op(o)` with optional transposes, without materialising them.
    pub fn matmul_t(self, o: Self, transpose_self: bool, transpose_o: bool) -> Self {
        self.bin(o, |t, a, b| t.matmul(a, b, transpose_self, transpose_o))
    }
    /// Transpose of a 2-D tensor.
    pub fn transpose(self) -> Self {
        self.un(|t, x| t.transpose(x))
    }

    /// Sum of all elements (a scalar).
    pub fn sum(self) -> Self {
        self.un(|t, x| t.reduce_all(x, false))
    }
    /// Mean of all elements (a scalar).
    pub fn mean(self) -> Self {
        self.un(|t, x| t.reduce_all(x, true))
    }
    /// Sum along `axis` (removed from the shape).
    pub fn sum_axis(self, axis: usize) -> Self {
        self.un(|t, x| t.reduce_axis(x, axis, false))
    }
    /// Mean along `axis` (removed from the shape).
    pub fn mean_axis(self, axis: usize) -> Self {
        self.un(|t, x| t.reduce_axis(x, axis, true))
    }
    /// Broadcast to `dims`.
    pub fn expand(self, dims: &[usize]) -> Self {
        self.un(|t, x| match shape_or_fail(t, dims) {
            Ok(s) => t.expand(x, s),
            Err(id) => id,
        })
    }
    /// Sum over the broadcast dimensions down to `dims` (inverse of `expand`).
    pub fn sum_to(self, dims: &[usize]) -> Self {
        self.un(|t, x| match shape_or_fail(t, dims) {
            Ok(s) => t.sum_to(x, s),
            Err(id) => id,
        })
    }

    /// Same elements, new shape (zero-copy).
    pub fn reshape(self, dims: &[usize]) -> Self {
        self.un(|t, x| match shape_or_fail(t, dims) {
            Ok(s) if s.len() == t.node(x).shape.len() => t.view(x, 0, s),
            Ok(s) => {
                let sx = t.node(x).shape;
                t.fail(crate::Error::ShapeMismatch {
                    op: "reshape",
                    lhs: sx,
                    rhs: s,
                })
            }
            Err(id) => id,
        })
    }
    /// Zero-copy view of the elements `offset..offset + prod(dims)` (flat, row-major),
    /// with shape `dims`. Its gradient accumulates into the matching range of `self`'s:
    /// the way to carve layer weights out of one flat parameter leaf.
    pub fn view(self, offset: usize, dims: &[usize]) -> Self {
        self.un(|t, x| match shape_or_fail(t, dims) {
            Ok(s) => t.view(x, offset, s),
            Err(id) => id,
        })
    }
    /// Elements `start..start + len` along `axis` (e.g. columns with `axis = 1`).
    pub fn narrow(self, axis: usize, start: usize, len: usize) -> Self {
        self.un(|t, x| t.narrow(x, axis, start, len))
    }
    /// Splits along `axis` at `at`: `(narrow(axis, 0, at), narrow(axis, at, rest))`.
    pub fn split_at(self, axis: usize, at: usize) -> (Self, Self) {
        let d = self.shape().dim(axis);
        (
            self.narrow(axis, 0, at),
            self.narrow(axis, at, d.saturating_sub(at)),
        )
    }

    /// 2-D convolution of `[n, c, h, w]` by weights `[o, c, kh, kw]`, zero padding `pad`
    /// on every side, stride `stride`: output `[n, o, (h+2p−kh)/s+1, (w+2p−kw)/s+1]`.
    pub fn conv2d(self, weight: Self, stride: usize, pad: usize) -> Self {
        self.bin(weight, |t, a, b| t.conv2d(a, b, stride, pad))
    }
    /// Average pooling of `[n, c, h, w]` over `k × k` windows with stride `stride`.
    pub fn avg_pool2d(self, k: usize, stride: usize) -> Self {
        self.un(|t, x| t.avg_pool(x, k, stride))
    }
    /// Adaptive average pooling to 1×1: `[n, c, h, w] → [n, c]`.
    pub fn global_avg_pool2d(self) -> Self {
        self.un(|t, x| t.global_avg_pool(x))
    }
    /// Group normalisation of `[n, c, ...]` with `groups` groups (no affine part:
    /// multiply and add `[c, 1, 1]` tensors for it).
    pub fn group_norm(self, groups: usize, eps: T) -> Self {
        self.un(|t, x| t.group_norm(x, groups, eps))
    }

    /// Log-softmax over the last axis.
    pub fn log_softmax(self) -> Self {
        self.un(|t, x| t.log_softmax(x))
    }
    /// `out[r] = self[r, labels[r]]` for a `[rows, classes]` tensor.
    pub fn pick(self, labels: &[usize]) -> Self {
        self.un(|t, x| t.pick(x, labels))
    }
    /// Mean cross-entropy of logits `[rows, classes]` against integer labels.
    pub fn cross_entropy(self, labels: &[usize]) -> Self {
        self.log_softmax().pick(labels).mean().neg()
    }
    /// Sum of the elementwise Gaussian log-density of `self` under
    /// `N(mean, exp(log_var))`: `−½ Σ [log 2π + log_var + (x − mean)² e^{−log_var}]`.
    pub fn gaussian_log_likelihood(self, mean: Self, log_var: Self) -> Self {
        let d = self.sub(mean).square();
        let q = d.mul(log_var.neg().exp());
        let s = q
            .add(log_var)
            .add_scalar(T::from_f64_const((2.0 * std::f64::consts::PI).ln()));
        s.sum().mul_scalar(T::from_f64_const(-0.5))
    }
    /// `KL(N(μ₁, e^{lv₁}) ‖ N(μ₂, e^{lv₂}))` summed over elements, for diagonal Gaussians
    /// (`self` is μ₁): `½ Σ [lv₂ − lv₁ + (e^{lv₁} + (μ₁ − μ₂)²) e^{−lv₂} − 1]`.
    pub fn kl_diag_gaussian(self, log_var: Self, mean2: Self, log_var2: Self) -> Self {
        let dm = self.sub(mean2).square();
        let num = log_var.exp().add(dm);
        let q = num.mul(log_var2.neg().exp());
        let s = log_var2.sub(log_var).add(q).add_scalar(-T::one());
        s.sum().mul_scalar(T::from_f64_const(0.5))
    }
}

impl<T: Float> Tape<T> {
    /// Concatenation along `axis` (all other dimensions equal).
    pub fn concat<'t>(&'t self, xs: &[Var<'t, T>], axis: usize) -> Var<'t, T> {
        let mut t = self.inner.borrow_mut();
        if xs.iter().any(|v| !std::ptr::eq(v.tape, self)) {
            let id = t.fail(crate::Error::ForeignVar);
            return Var { tape: self, id };
        }
        for v in xs {
            t.ready(v.id);
        }
        let first = t.list.len();
        t.list.extend(xs.iter().map(|v| v.id));
        let id = t.concat(first, xs.len(), axis);
        Var { tape: self, id }
    }

    /// Applies a custom operation to up to
    /// [`MAX_CUSTOM_INPUTS`](crate::ops::MAX_CUSTOM_INPUTS) inputs.
    pub fn custom<'t>(&'t self, op: &Arc<dyn CustomOp<T>>, xs: &[Var<'t, T>]) -> Var<'t, T> {
        let mut t = self.inner.borrow_mut();
        let mut ids = [0u32; crate::ops::custom::MAX_CUSTOM_INPUTS];
        if xs.len() > ids.len() || xs.iter().any(|v| !std::ptr::eq(v.tape, self)) {
            let id = t.fail(crate::Error::InvalidArgument {
                op: op.name(),
                shape: Shape::scalar(),
                reason: "too many inputs, or inputs from another tape",
            });
            return Var { tape: self, id };
        }
        for (d, v) in ids.iter_mut().zip(xs) {
            *d = v.id;
            t.ready(v.id);
        }
        let id = t.custom(op, &ids[..xs.len()]);
        Var { tape: self, id }
    }
}

macro_rules! ops {
    ($tr:ident, $m:ident) => {
        impl<'t, T: Float> $tr for Var<'t, T> {
            type Output = Var<'t, T>;
            fn $m(self, o: Self) -> Self {
                Var::$m(self, o)
            }
        }
    };
}
ops!(Add, add);
ops!(Sub, sub);
ops!(Mul, mul);
ops!(Div, div);

impl<'t, T: Float> Add<T> for Var<'t, T> {
    type Output = Var<'t, T>;
    fn add(self, c: T) -> Self {
        self.add_scalar(c)
    }
}
impl<'t, T: Float> Sub<T> for Var<'t, T> {
    type Output = Var<'t, T>;
    fn sub(self, c: T) -> Self {
        self.add_scalar(-c)
    }
}
impl<'t, T: Float> Mul<T> for Var<'t, T> {
    type Output = Var<'t, T>;
    fn mul(self, c: T) -> Self {
        self.mul_scalar(c)
    }
}
impl<'t, T: Float> Div<T> for Var<'t, T> {
    type Output = Var<'t, T>;
    fn div(self, c: T) -> Self {
        self.mul_scalar(T::one() / c)
    }
}
impl<'t, T: Float> Neg for Var<'t, T> {
    type Output = Var<'t, T>;
    fn neg(self) -> Self {
        Var::neg(self)
    }
}
