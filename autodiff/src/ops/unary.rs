//! Elementwise unary operations: neg, tanh, relu, softplus, sigmoid, elu, exp, log,
//! sqrt, square, sin, cos, and the (non-differentiable) step `x > 0`.
//!
//! | op | `y` | `∂y/∂x` |
//! |---|---|---|
//! | tanh | `tanh x` | `1 − y²` |
//! | sigmoid | `1/(1+e^{−x})` | `y(1−y)` |
//! | softplus | `log(1+eˣ)` | `sigmoid x` |
//! | relu | `max(x,0)` | `[x>0]` |
//! | elu(α) | `x` if `x>0` else `α(eˣ−1)` | `1` or `y+α` |
//! | exp, log, sqrt, square, sin, cos | | `y`, `1/x`, `1/(2y)`, `2x`, `cos x`, `−sin x` |

use super::Op;
use super::matmul::GEMM_CHUNK;
use crate::Float;
use crate::tape::{Id, Inner, split_grad};

/// Unary elementwise functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum UnOp {
    Neg,
    Tanh,
    Relu,
    Softplus,
    Sigmoid,
    Exp,
    Log,
    Sqrt,
    Square,
    Sin,
    Cos,
    Step,
}

impl UnOp {
    /// True if the fast VJP reads the op's input (not only its output).
    pub(crate) fn vjp_reads_input(self) -> bool {
        matches!(
            self,
            UnOp::Relu | UnOp::Softplus | UnOp::Log | UnOp::Square | UnOp::Sin | UnOp::Cos
        )
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            UnOp::Neg => "neg",
            UnOp::Tanh => "tanh",
            UnOp::Relu => "relu",
            UnOp::Softplus => "softplus",
            UnOp::Sigmoid => "sigmoid",
            UnOp::Exp => "exp",
            UnOp::Log => "log",
            UnOp::Sqrt => "sqrt",
            UnOp::Square => "square",
            UnOp::Sin => "sin",
            UnOp::Cos => "cos",
            UnOp::Step => "step",
        }
    }
}

/// `d = f(s)`: an index loop (no iterator adapter left out of line, so that it is
/// vectorised inside the caller's `simd_dispatch` copy).
#[inline(always)]
fn map<T: Float>(s: &[T], d: &mut [T], f: impl Fn(T) -> T) {
    let s = &s[..d.len()];
    for k in 0..d.len() {
        d[k] = f(s[k]);
    }
}

impl<T: Float> Inner<T> {
    pub(crate) fn unary(&mut self, u: UnOp, x: Id) -> Id {
        let n = self.node(x);
        let len = n.shape.len();
        let off = self.alloc_uninit(len);
        if n.pending {
            // `x = a + b` (a bias add, deferred): `f(a + b)` in one pass. `x`'s value is
            // written too when the VJP of `f` reads it; otherwise it stays pending.
            let (na, nb) = (self.node(n.inputs[0]), self.node(n.inputs[1]));
            let keep = self.recording && u.vjp_reads_input();
            let lb = nb.shape.len();
            let chunk = (BIAS_CHUNK / lb).max(1) * lb;
            if !keep && self.scratch.len() < chunk {
                self.scratch.resize(chunk, T::zero());
            }
            let (lo, dst) = self.vals.split_at_mut(off);
            let (src, xv) = lo.split_at_mut(n.off);
            if na.pending && matches!(na.op, Op::Matmul { .. }) {
                // `a = A·W` is deferred too: by chunks of rows, the product goes to a
                // cache-sized buffer and `f(· + b)` reads it from there (`a` stays
                // pending: no VJP reads it).
                let (wa, wb) = (
                    self.nodes[na.inputs[0] as usize],
                    self.nodes[na.inputs[1] as usize],
                );
                let (m, k) = (na.shape.dim(0), wa.shape.dim(1));
                let rows = (GEMM_CHUNK / lb).max(1);
                if self.scratch2.len() < rows * lb {
                    self.scratch2.resize(rows * lb, T::zero());
                }
                let (aw, w) = (&src[wa.off..wa.off + m * k], &src[wb.off..wb.off + k * lb]);
                let bias = &src[nb.off..nb.off + lb];
                let mut xv = keep.then_some(&mut xv[..len]);
                for r0 in (0..m).step_by(rows) {
                    let h = rows.min(m - r0);
                    let (r, s) = (r0 * lb, (r0 + h) * lb);
                    let prod = &mut self.scratch2[..h * lb];
                    T::gemm(
                        prod,
                        h,
                        lb,
                        k,
                        &aw[r0 * k..(r0 + h) * k],
                        false,
                        w,
                        false,
                        false,
                    );
                    bias_unary_fwd(
                        u,
                        prod,
                        bias,
                        xv.as_deref_mut().map(|x| &mut x[r..s]),
                        &mut self.scratch[..if keep { 0 } else { chunk }],
                        &mut dst[r..s],
                    );
                }
            } else {
                bias_unary_fwd(
                    u,
                    &src[na.off..na.off + len],
                    &src[nb.off..nb.off + lb],
                    if keep { Some(&mut xv[..len]) } else { None },
                    &mut self.scratch[..if keep { 0 } else { chunk }],
                    &mut dst[..len],
                );
            }
            if keep {
                self.nodes[x as usize].pending = false;
            }
        } else {
            let (src, dst) = self.vals.split_at_mut(off);
            let (s, d) = (&src[n.off..n.off + len], &mut dst[..len]);
            unary_fwd(u, s, d);
        }
        let id = self.push(Op::Unary(u), n.shape, off, &[x]);
        if u == UnOp::Step {
            self.nodes[id as usize].rg = false;
        }
        id
    }

    pub(crate) fn elu(&mut self, x: Id, alpha: T) -> Id {
        let n = self.node(x);
        let len = n.shape.len();
        let off = self.alloc_uninit(len);
        let (src, dst) = self.vals.split_at_mut(off);
        elu_fwd(&src[n.off..n.off + len], &mut dst[..len], alpha);
        self.push(Op::Elu(alpha), n.shape, off, &[x])
    }
}

/// `y = x` where `x > 0`, else `α (eˣ − 1)`: the vectorised `expm1` over the slice,
/// then the select (vectorised too).
fn elu_fwd<T: Float>(x: &[T], y: &mut [T], alpha: T) {
    use crate::vmath::{as_f32, as_f32_mut, as_f64, as_f64_mut};
    if let (Some(x), Some(y)) = (as_f64(x), as_f64_mut(y)) {
        crate::vmath::expm1_slice_f64(x, y);
    } else if let (Some(x), Some(y)) = (as_f32(x), as_f32_mut(y)) {
        crate::vmath::expm1_slice_f32(x, y);
    }
    elu_select(x, y, alpha)
}

fn elu_select<T: Float>(x: &[T], y: &mut [T], alpha: T) {
    crate::vmath::simd_dispatch!(elu_select_k::<T>(x: &[T], y: &mut [T], alpha: T) -> ())
}

#[inline(always)]
fn elu_select_k<T: Float>(x: &[T], y: &mut [T], alpha: T) {
    let z = T::zero();
    for (y, &x) in y.iter_mut().zip(x) {
        *y = if x > z { x } else { alpha * *y };
    }
}

/// Elements per chunk of a fused bias add + elementwise op (16 KB of f64: the chunk of
/// `a + b` is still in L1 when the op reads it).
const BIAS_CHUNK: usize = 2048;

/// `y = f(a + b)` for `a` of `y`'s shape and `b` a row repeated over it, by chunks of
/// whole rows: the sum goes to `x` (when given, it is then `x`'s value) or to `tmp` (one
/// chunk long), and `f` reads it back from L1.
fn bias_unary_fwd<T: Float>(
    u: UnOp,
    a: &[T],
    b: &[T],
    x: Option<&mut [T]>,
    tmp: &mut [T],
    y: &mut [T],
) {
    // tanh on f64 with AVX-512: the add inside the tanh kernel (no store of the sum).
    #[cfg(target_arch = "x86_64")]
    if u == UnOp::Tanh
        && x.is_none()
        && let (Some(a64), Some(b64)) = (crate::vmath::as_f64(a), crate::vmath::as_f64(b))
        && let Some(y64) = crate::vmath::as_f64_mut(y)
        && crate::vmath::bias_tanh_f64(a64, b64, y64)
    {
        return;
    }
    crate::vmath::simd_dispatch!(
        bias_unary_fwd_k::<T>(u: UnOp, a: &[T], b: &[T], x: Option<&mut [T]>, tmp: &mut [T], y: &mut [T]) -> ()
    )
}

#[inline(always)]
fn bias_unary_fwd_k<T: Float>(
    u: UnOp,
    a: &[T],
    b: &[T],
    mut x: Option<&mut [T]>,
    tmp: &mut [T],
    y: &mut [T],
) {
    let lb = b.len();
    let chunk = (BIAS_CHUNK / lb).max(1) * lb;
    for (k, (ac, yc)) in a.chunks(chunk).zip(y.chunks_mut(chunk)).enumerate() {
        let t = match x.as_deref_mut() {
            Some(x) => &mut x[k * chunk..k * chunk + ac.len()],
            None => &mut tmp[..ac.len()],
        };
        for (tr, ar) in t.chunks_exact_mut(lb).zip(ac.chunks_exact(lb)) {
            for ((d, &p), &q) in tr.iter_mut().zip(ar).zip(b) {
                *d = p + q;
            }
        }
        unary_fwd_k(u, t, yc);
    }
}

fn unary_fwd<T: Float>(u: UnOp, s: &[T], d: &mut [T]) {
    crate::vmath::simd_dispatch!(unary_fwd_k::<T>(u: UnOp, s: &[T], d: &mut [T]) -> ())
}

#[inline(always)]
fn unary_fwd_k<T: Float>(u: UnOp, s: &[T], d: &mut [T]) {
    let z = T::zero();
    match u {
        UnOp::Neg => map(s, d, |x| -x),
        UnOp::Tanh => T::tanh_slice(s, d),
        UnOp::Relu => map(s, d, |x| if x > z { x } else { z }),
        UnOp::Softplus => T::softplus_slice(s, d),
        UnOp::Sigmoid => T::sigmoid_slice(s, d),
        UnOp::Exp => T::exp_slice(s, d),
        UnOp::Log => T::log_slice(s, d),
        UnOp::Sqrt => map(s, d, |x| x.sqrt()),
        UnOp::Square => map(s, d, |x| x * x),
        UnOp::Sin => T::sin_slice(s, d),
        UnOp::Cos => T::cos_slice(s, d),
        UnOp::Step => map(s, d, |x| if x > z { T::one() } else { z }),
    }
}

/// True if the fast VJP of the bias add `c = a + b` is done by the VJP of its consumer,
/// an elementwise op `y = f(c)`, in the same pass (one pass over the `[rows, h]`
/// gradient instead of two): `∂c = g·f'` written once (assigned) and summed over the
/// rows into `∂b` as it is written. Holds when `c` is a row-bias add (`b` a repeated
/// row, both sides differentiable) whose only use is `f` (then `c`'s gradient is
/// assigned, see `Inner::assign`), `a`'s gradient is `c`'s (aliased, see
/// `Inner::goff`: the add has nothing to pass to `a`), and `f` is one of the ops whose
/// VJP is a plain `g·f'(x, y)` loop. The add's own VJP then does nothing; the row sums
/// run in the same order, so results are bit for bit those of the two passes.
pub(crate) fn bias_vjp_fused<T: Float>(t: &Inner<T>, c: usize) -> bool {
    let cn = t.nodes[c];
    if !matches!(cn.op, Op::Add) || !cn.rg || !t.assign.get(c).copied().unwrap_or(false) {
        return false;
    }
    let (count, u) = t.consumers[c];
    let un = t.nodes[u as usize];
    let plain = match un.op {
        Op::Unary(op) => !matches!(op, UnOp::Softplus | UnOp::Sin | UnOp::Cos | UnOp::Step),
        Op::Elu(_) => true,
        _ => false,
    };
    let (a, b) = (cn.inputs[0] as usize, cn.inputs[1] as usize);
    let (na, nb) = (t.nodes[a], t.nodes[b]);
    let lb = nb.shape.len();
    count == 1
        && plain
        && un.rg
        && un.inputs[0] as usize == c
        && a != b
        && t.goff[c] == cn.off
        && t.goff[a] == cn.off
        && na.shape == cn.shape
        && nb.rg
        && nb.shape != cn.shape
        && lb > 0
        && super::binary::is_row(nb.shape, cn.shape)
        && nb.off + lb <= cn.off
}

/// Fast VJP: `gx += g · f'(x)`.
pub(crate) fn backward<T: Float>(t: &mut Inner<T>, i: usize) {
    crate::vmath::simd_dispatch!(backward_kernel::<T>(t: &mut Inner<T>, i: usize) -> ())
}

#[inline(always)]
fn backward_kernel<T: Float>(t: &mut Inner<T>, i: usize) {
    let n = t.nodes[i];
    let xn = t.nodes[n.inputs[0] as usize];
    if !xn.rg {
        return;
    }
    let len = n.shape.len();
    // A bias add below (see `bias_vjp_fused`): its bias gradient, summed in this pass.
    let bias = bias_vjp_fused(t, n.inputs[0] as usize).then(|| {
        let nb = t.nodes[xn.inputs[1] as usize];
        (nb.off, nb.shape.len())
    });
    let (lo, g) = split_grad(&mut t.grads, &t.goff, &n, i);
    let (below, gx) = lo.split_at_mut(xn.off);
    let gx = &mut gx[..len];
    let mut gb = bias.map(|(off, lb)| &mut below[off..off + lb]);
    let x = &t.vals[xn.off..xn.off + len];
    let y = &t.vals[n.off..n.off + len];
    let one = T::one();
    let two = one + one;
    let z = T::zero();
    // `=` when x is this op's input only (see `Inner::assign`), else `+=`.
    let assign = t.assign[n.inputs[0] as usize];
    macro_rules! go {
        ($f:expr) => {{
            let f = $f;
            if let Some(gb) = gb.as_deref_mut() {
                // Assigned (`bias_vjp_fused` checked it), and `gb += Σ_rows ∂x`.
                let lb = gb.len();
                let rows = gx
                    .chunks_exact_mut(lb)
                    .zip(g.chunks_exact(lb))
                    .zip(x.chunks_exact(lb).zip(y.chunks_exact(lb)));
                for ((dr, gr), (xr, yr)) in rows {
                    // Re-sliced to `lb` so that the bounds checks go and the loop
                    // vectorises (rows of 25 in an RNN cell were scalar).
                    let (dr, gr, xr, yr) = (&mut dr[..lb], &gr[..lb], &xr[..lb], &yr[..lb]);
                    for k in 0..lb {
                        let v = gr[k] * f(xr[k], yr[k]);
                        dr[k] = v;
                        gb[k] += v;
                    }
                }
                return;
            }
            // Index loops over equal-length slices: `Zip::fold` with a capturing closure
            // was left out of line (compiled without the wide vector unit, one branch per
            // element: 5 % of an ODE-Net step for the ReLU VJP).
            let n = gx.len();
            let (g, x, y) = (&g[..n], &x[..n], &y[..n]);
            if assign {
                for k in 0..n {
                    gx[k] = g[k] * f(x[k], y[k]);
                }
            } else {
                for k in 0..n {
                    gx[k] += g[k] * f(x[k], y[k]);
                }
            }
        }};
    }
    // f'(x) by a vectorised slice kernel into the scratch buffer, then `gx += g · f'`.
    let scratch = &mut t.scratch;
    let mut via = |kernel: fn(&[T], &mut [T]), sign: T| {
        scratch.resize(len, T::zero());
        kernel(x, &mut scratch[..len]);
        let it = gx.iter_mut().zip(g).zip(&scratch[..len]);
        if assign {
            it.for_each(|((d, &g), &s)| *d = g * s * sign);
        } else {
            it.for_each(|((d, &g), &s)| *d += g * s * sign);
        }
    };
    match n.op {
        Op::Unary(u) => match u {
            UnOp::Neg => go!(move |_, _| -one),
            UnOp::Tanh => go!(move |_, y: T| one - y * y),
            UnOp::Relu => go!(move |x: T, _| if x > z { one } else { z }),
            UnOp::Softplus => via(T::sigmoid_slice, one),
            UnOp::Sigmoid => go!(move |_, y: T| y * (one - y)),
            UnOp::Exp => go!(move |_, y: T| y),
            UnOp::Log => go!(move |x: T, _| one / x),
            UnOp::Sqrt => go!(move |_, y: T| one / (two * y)),
            UnOp::Square => go!(move |x: T, _| two * x),
            UnOp::Sin => via(T::cos_slice, one),
            UnOp::Cos => via(T::sin_slice, -one),
            UnOp::Step => {}
        },
        Op::Elu(a) => go!(move |x: T, y: T| if x > z { one } else { y + a }),
        _ => {}
    }
}

/// VJP as tape operations.
pub(crate) fn backward_graph<T: Float>(t: &mut Inner<T>, i: usize, g: Id) {
    let n = t.nodes[i];
    let x = n.inputs[0];
    let y = i as Id;
    let one = T::one();
    let v = match n.op {
        Op::Unary(u) => match u {
            UnOp::Neg => t.scalar_op(g, -one, false),
            UnOp::Tanh => {
                let yy = t.unary(UnOp::Square, y);
                let d = t.scalar_op(yy, -one, false);
                let d = t.scalar_op(d, one, true);
                t.mul(g, d)
            }
            UnOp::Relu => {
                let m = t.unary(UnOp::Step, x);
                t.mul(g, m)
            }
            UnOp::Softplus => {
                let s = t.unary(UnOp::Sigmoid, x);
                t.mul(g, s)
            }
            UnOp::Sigmoid => {
                let d = t.scalar_op(y, -one, false);
                let d = t.scalar_op(d, one, true);
                let d = t.mul(y, d);
                t.mul(g, d)
            }
            UnOp::Exp => t.mul(g, y),
            UnOp::Log => t.div(g, x),
            UnOp::Sqrt => {
                let q = t.div(g, y);
                t.scalar_op(q, T::from_f64_const(0.5), false)
            }
            UnOp::Square => {
                let q = t.mul(g, x);
                t.scalar_op(q, one + one, false)
            }
            UnOp::Sin => {
                let c = t.unary(UnOp::Cos, x);
                t.mul(g, c)
            }
            UnOp::Cos => {
                let s = t.unary(UnOp::Sin, x);
                let q = t.mul(g, s);
                t.scalar_op(q, -one, false)
            }
            UnOp::Step => return,
        },
        Op::Elu(a) => {
            // d = step(x) + (1 − step(x)) (y + α)
            let s = t.unary(UnOp::Step, x);
            let ya = t.scalar_op(y, a, true);
            let ns = t.scalar_op(s, -one, false);
            let ns = t.scalar_op(ns, one, true);
            let q = t.mul(ns, ya);
            let d = t.add(s, q);
            t.mul(g, d)
        }
        _ => return,
    };
    t.acc_gvar(x, v);
}
