//! Every op: tape VJP vs central differences (gradcheck), recorded backward vs fast
//! backward, and second derivatives (grad-of-grad) vs differences of gradients, on random
//! shapes and values, for f32 and f64 from one generic body.

use autodiff::nn::{Conv2d, Conv2dConfig, GroupNorm, ParamStore};
use autodiff::{
    CustomOp, Error, Float, Shape, Tape, Var, Winograd, default_gradcheck_tolerance, gradcheck,
};
use proptest::prelude::*;
use std::sync::Arc;

/// A custom op, `(a, b) ↦ a² b` elementwise, with both VJPs (fast and recorded).
struct SqMul;
impl<T: Float> CustomOp<T> for SqMul {
    fn name(&self) -> &'static str {
        "sq_mul"
    }
    fn output_shape(&self, inputs: &[Shape]) -> Result<Shape, Error> {
        Ok(inputs[0])
    }
    fn forward(&self, inputs: &[&[T]], out: &mut [T]) {
        for ((o, &a), &b) in out.iter_mut().zip(inputs[0]).zip(inputs[1]) {
            *o = a * a * b;
        }
    }
    fn backward(
        &self,
        k: usize,
        inputs: &[&[T]],
        _out: &[T],
        g: &[T],
        gx: &mut [T],
    ) -> Result<(), Error> {
        let (a, b) = (inputs[0], inputs[1]);
        for j in 0..g.len() {
            gx[j] += if k == 0 {
                T::from_f64_const(2.0) * a[j] * b[j] * g[j]
            } else {
                a[j] * a[j] * g[j]
            };
        }
        Ok(())
    }
    fn backward_graph<'t>(
        &self,
        k: usize,
        inputs: &[Var<'t, T>],
        _out: Var<'t, T>,
        g: Var<'t, T>,
    ) -> Result<Var<'t, T>, Error> {
        let (a, b) = (inputs[0], inputs[1]);
        Ok(if k == 0 {
            (a * b * g).mul_scalar(T::from_f64_const(2.0))
        } else {
            a.square() * g
        })
    }
}

/// Deterministic values in `[lo, hi)` (splitmix64).
fn values<T: Float>(seed: u64, n: usize, lo: f64, hi: f64) -> Vec<T> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            T::from_f64_const(lo + (hi - lo) * (z >> 11) as f64 / (1u64 << 53) as f64)
        })
        .collect()
}

/// Pins a closure to the higher-ranked signature the API expects.
fn hr<T: Float, G: for<'t> Fn(Var<'t, T>) -> Var<'t, T>>(g: G) -> G {
    g
}

type F<T> = for<'t> fn(Var<'t, T>) -> Var<'t, T>;

struct Case<T: Float> {
    name: &'static str,
    /// Input dims from two random sizes `b ∈ 1..4`, `n ∈ 1..5`.
    dims: fn(usize, usize) -> Vec<usize>,
    f: F<T>,
    /// Has a recorded (create_graph) backward.
    graph: bool,
}

fn c<T: Float>(
    name: &'static str,
    dims: fn(usize, usize) -> Vec<usize>,
    f: F<T>,
    graph: bool,
) -> Case<T> {
    Case {
        name,
        dims,
        f,
        graph,
    }
}

fn bn(b: usize, n: usize) -> Vec<usize> {
    vec![b, n]
}
fn bn1(b: usize, n: usize) -> Vec<usize> {
    vec![b + 1, n]
}
fn img(b: usize, n: usize) -> Vec<usize> {
    // image [b, 2, n+2, n+1] followed by weights [3, 2, 2, 2] (flat)
    vec![b * 2 * (n + 2) * (n + 1) + 24]
}
fn img4(b: usize, n: usize) -> Vec<usize> {
    vec![b, 4, n + 1, 3]
}

fn conv_split<'t, T: Float>(x: Var<'t, T>) -> (Var<'t, T>, Var<'t, T>) {
    let len = x.len() - 24;
    // recover n from len = b·2·(n+2)(n+1): try n = 1..5 and b = 1..4
    let mut dims = (1, 1);
    for n in 1..6 {
        for b in 1..5 {
            if b * 2 * (n + 2) * (n + 1) == len {
                dims = (b, n);
            }
        }
    }
    let (b, n) = dims;
    (x.view(0, &[b, 2, n + 2, n + 1]), x.view(len, &[3, 2, 2, 2]))
}

fn img_wide(b: usize, n: usize) -> Vec<usize> {
    // image [b, 8, n+2, n+1] followed by the weight factors u [8, 8] and v [2, 2] (flat)
    vec![b * 8 * (n + 2) * (n + 1) + 68]
}

/// [`conv_split`] with 8 channels in and out: wide enough for the patch-major
/// convolution path (channels-last im2col), which small channel counts do not take.
/// The kernel `w[o, c, p, q] = u[o, c] · v[p, q]` keeps the gradcheck small while a
/// mixed-up `(o, c)` or `(p, q)` order in `∂w` still shows in `∂u` or `∂v`.
fn wide_conv_split<'t, T: Float>(x: Var<'t, T>) -> (Var<'t, T>, Var<'t, T>) {
    let len = x.len() - 68;
    let mut dims = (1, 1);
    for n in 1..6 {
        for b in 1..5 {
            if b * 8 * (n + 2) * (n + 1) == len {
                dims = (b, n);
            }
        }
    }
    let (b, n) = dims;
    let u = x.view(len, &[8, 8, 1, 1]).expand(&[8, 8, 2, 2]);
    let v = x.view(len + 64, &[1, 1, 2, 2]).expand(&[8, 8, 2, 2]);
    (x.view(0, &[b, 8, n + 2, n + 1]), u * v)
}

fn img_w16(_b: usize, n: usize) -> Vec<usize> {
    // image [1, 16, m+1, m] (m = min(n, 3): 2×1, 3×2, 4×3 maps) followed by the weight
    // factors a [16], b [16], v [3, 3] (flat)
    let m = n.min(3);
    vec![16 * (m + 1) * m + 41]
}

/// A 16-channel, 3×3 image and kernel: the convolutions that run by Winograd F(2×2, 3×3)
/// (stride 1, padding 1), on even and odd maps. The kernel
/// `w[o, c, p, q] = a[o] · b[c] · v[p, q]` keeps the gradchecks small (41 parameters)
/// while a mixed-up `o`, `c` or `(p, q)` order in `∂w` still shows in `∂a`, `∂b`, `∂v`.
fn w16_conv_split<'t, T: Float>(x: Var<'t, T>) -> (Var<'t, T>, Var<'t, T>) {
    let len = x.len() - 41;
    let n = (1..4).find(|n| 16 * (n + 1) * n == len).unwrap_or(1);
    let a = x.view(len, &[16, 1, 1, 1]).expand(&[16, 16, 3, 3]);
    let b = x.view(len + 16, &[1, 16, 1, 1]).expand(&[16, 16, 3, 3]);
    let v = x.view(len + 32, &[1, 1, 3, 3]).expand(&[16, 16, 3, 3]);
    (x.view(0, &[1, 16, n + 1, n]), a * b * v)
}

fn cases<T: Float>() -> Vec<Case<T>> {
    let h = |v: f64| T::from_f64_const(v);
    let _ = h;
    vec![
        c(
            "add_bcast",
            bn1,
            |x| {
                let n = x.shape().dim(1);
                x.add(x.view(0, &[n])).square()
            },
            true,
        ),
        c(
            "sub_bcast",
            bn1,
            |x| {
                let n = x.shape().dim(1);
                x.view(0, &[n]).sub(x).square()
            },
            true,
        ),
        c(
            "mul_bcast",
            bn1,
            |x| {
                let n = x.shape().dim(1);
                x.mul(x.view(0, &[n]))
            },
            true,
        ),
        c(
            "div_bcast",
            bn1,
            |x| {
                let n = x.shape().dim(1);
                x.div(x.view(0, &[n]).square().add_scalar(T::one()))
            },
            true,
        ),
        c(
            "div_scalar_var",
            bn,
            |x| x.div(x.sum().square().add_scalar(T::one())),
            true,
        ),
        c(
            "scalar_ops",
            bn,
            |x| {
                (x * T::from_f64_const(1.5) + T::from_f64_const(0.25) - T::from_f64_const(0.5))
                    / T::from_f64_const(2.0)
            },
            true,
        ),
        // A bias add followed by an elementwise op is fused into one pass (the add's
        // value deferred): every op through that path, its value read afterwards, and a
        // rank-4 tensor with a 2-D bias.
        c(
            "bias_add_then_unary",
            bn1,
            |x| {
                let n = x.shape().dim(1);
                let b = || x.view(0, &[n]);
                let a = (x + b()).tanh() + (x + b()).sigmoid() + (x + b()).exp();
                // (relu's fused path is in `fused_bias_matches_unfused`: `x + b` may sit
                // on its kink here, where differences are no derivative.)
                let c = (x + b()).softplus() + (x + b()).sin();
                let d = (x + b()).cos() + (x + b()).neg() + (x + b()).square();
                let l = (x + b()).square().add_scalar(T::one()).log();
                let r = (x + b()).square().add_scalar(T::one()).sqrt();
                a + c + d + l + r
            },
            true,
        ),
        c(
            // `a + b` with `a` used once (its gradient is the add's): the op's VJP also
            // sums the bias gradient (one pass, see `unary::bias_vjp_fused`).
            "bias_vjp_fused",
            bn1,
            |x| {
                let n = x.shape().dim(1);
                let b = || x.view(0, &[n]);
                let two = T::from_f64_const(2.0);
                let a = (x.square() + b()).tanh() + (x.mul_scalar(two) + b()).sigmoid();
                let c = (x.sin() + b()).exp() + (x.cos() + b()).neg().square();
                let d = (x.square().add_scalar(two) + b()).log()
                    + (x.square().add_scalar(two) + b()).sqrt()
                    + (x.sin() + b()).square();
                a + c + d
            },
            true,
        ),
        c(
            "bias_add_read_after_fusion",
            bn1,
            |x| {
                let n = x.shape().dim(1);
                let s = x + x.view(0, &[n]);
                s.tanh().mul(s) + s.sigmoid().matmul(s.transpose()).matmul(s)
            },
            true,
        ),
        c(
            "bias_add_rank4",
            img4,
            |x| {
                let d = x.shape().dims().to_vec();
                let b = x.view(0, &[d[2], d[3]]);
                (x + b).tanh() + (x + b).softplus().square()
            },
            true,
        ),
        c("neg", bn, |x| (-x).square(), true),
        c("tanh", bn, |x| x.tanh(), true),
        c("relu", bn, |x| x.relu().square(), true),
        c("softplus", bn, |x| x.softplus(), true),
        c("sigmoid", bn, |x| x.sigmoid(), true),
        c("elu", bn, |x| x.elu(T::from_f64_const(0.7)).square(), true),
        c("exp", bn, |x| x.exp(), true),
        c(
            "log",
            bn,
            |x| x.square().add_scalar(T::from_f64_const(0.5)).log(),
            true,
        ),
        c(
            "sqrt",
            bn,
            |x| x.square().add_scalar(T::from_f64_const(0.5)).sqrt(),
            true,
        ),
        c("sin", bn, |x| x.sin(), true),
        c("cos", bn, |x| x.cos(), true),
        c("matmul", bn, |x| x.matmul(x.transpose()).tanh(), true),
        // An add whose first operand is used only there reads its gradient in place
        // (`Inner::goff`): chains of adds, an add as the output, and each family of op
        // feeding one (elementwise, product, reduction, concat).
        c(
            "add_alias_chain",
            bn1,
            |x| {
                let n = x.shape().dim(1);
                ((x.tanh() + x.view(0, &[n])) + x.sin()).square()
            },
            true,
        ),
        c(
            "add_alias_out",
            bn1,
            |x| {
                let n = x.shape().dim(1);
                x.exp() + x.view(0, &[n])
            },
            true,
        ),
        c(
            "add_alias_matmul_reduce",
            bn,
            |x| {
                let n = x.shape().dim(1);
                let p = x.matmul(x.transpose()) + x.matmul(x.transpose()).tanh();
                (x.sum_axis(0) + x.view(0, &[n])).square().sum() + p.sum()
            },
            true,
        ),
        c(
            "add_alias_concat",
            bn,
            |x| {
                let t = x.tape();
                (t.concat(&[x, x.sin()], 1) + t.concat(&[x.cos(), x], 1)).tanh()
            },
            true,
        ),
        c("matmul_tn", bn, |x| x.matmul_t(x, true, false), true),
        c(
            "matmul_nt_tt",
            bn,
            |x| {
                let a = x.matmul_t(x, false, true);
                a.matmul_t(a, true, true)
            },
            true,
        ),
        c("sum", bn, |x| x.sum().square(), true),
        c("mean", bn, |x| x.mean().square(), true),
        c("sum_axis0", bn, |x| x.sum_axis(0).square(), true),
        c("mean_axis1", bn, |x| x.mean_axis(1).square(), true),
        c(
            "expand_sum_to",
            bn,
            |x| {
                let (b, n) = (x.shape().dim(0), x.shape().dim(1));
                x.reshape(&[b, 1, n])
                    .expand(&[b, 2, n])
                    .square()
                    .sum_to(&[b, 1, n])
            },
            true,
        ),
        c(
            "concat_narrow",
            bn,
            |x| {
                let t = x.tape();
                let n = x.shape().dim(1);
                let y = t.concat(&[x, x.square(), x.sin()], 1);
                y.narrow(1, 1, 2 * n).square()
            },
            true,
        ),
        c(
            "split_at",
            bn1,
            |x| {
                let (a, b) = x.split_at(0, 1);
                b.mul(a).sin()
            },
            true,
        ),
        c("log_softmax", bn, |x| x.log_softmax(), true),
        c(
            "cross_entropy",
            bn,
            |x| {
                let (b, n) = (x.shape().dim(0), x.shape().dim(1));
                let labels: Vec<usize> = (0..b).map(|i| (i * 7 + 3) % n).collect();
                x.cross_entropy(&labels)
            },
            true,
        ),
        c(
            "gaussian_ll",
            bn1,
            |x| {
                let n = x.shape().dim(1);
                let mean = x.view(0, &[n]).sin();
                x.gaussian_log_likelihood(mean, x.cos())
            },
            true,
        ),
        c(
            "kl",
            bn,
            |x| {
                x.kl_diag_gaussian(
                    x.sin(),
                    x.cos(),
                    x.square().mul_scalar(T::from_f64_const(0.3)),
                )
            },
            true,
        ),
        c(
            "global_avg_pool",
            img4,
            |x| x.global_avg_pool2d().square(),
            true,
        ),
        c(
            "group_norm",
            img4,
            |x| x.group_norm(2, T::from_f64_const(1e-3)).mul(x),
            true,
        ),
        c(
            "conv2d",
            img,
            |x| {
                let (im, w) = conv_split(x);
                im.conv2d(w, 1, 1).tanh()
            },
            true,
        ),
        c(
            "conv2d_stride2",
            img,
            |x| {
                let (im, w) = conv_split(x);
                im.conv2d(w, 2, 0).square()
            },
            true,
        ),
        c(
            "conv2d_stride2_pad1",
            img,
            |x| {
                let (im, w) = conv_split(x);
                im.conv2d(w, 2, 1).sin()
            },
            true,
        ),
        // Eight channels in and out: the patch-major path, its flipped-kernel backward
        // (stride 1) and its col2im backward (stride 2).
        c(
            "conv2d_wide",
            img_wide,
            |x| {
                let (im, w) = wide_conv_split(x);
                im.conv2d(w, 1, 1).tanh()
            },
            true,
        ),
        // Sixteen channels, 3×3, stride 1, padding 1: Winograd F(2×2, 3×3) (forward, ∂x,
        // ∂w; `Winograd::Always` in the harness), plain and as a time-channel layer (its
        // bias per output position).
        c(
            "conv2d_winograd",
            img_w16,
            |x| {
                // Scaled: sums of 144 products of inputs up to 1.55 would saturate `tanh`
                // and drown f32's differences of second derivatives in round-off.
                let (im, w) = w16_conv_split(x);
                im.conv2d(w, 1, 1)
                    .mul_scalar(T::from_f64_const(0.05))
                    .tanh()
            },
            true,
        ),
        c(
            "conv2d_winograd_time_channel",
            img_w16,
            |x| {
                let (im, _) = w16_conv_split(x);
                let mut st = ParamStore::<T>::new(3);
                let cfg = Conv2dConfig::new(17, 16, 3).padding(1);
                let cv = Conv2d::new(&mut st, "c", cfg).unwrap();
                let theta = x.tape().constant(st.as_slice(), &[st.n_params()]).unwrap();
                let t = x.view(3, &[1]).sin();
                cv.forward_with_time(theta, t, im.tanh()).sin()
            },
            false,
        ),
        c(
            "conv2d_wide_stride2",
            img_wide,
            |x| {
                let (im, w) = wide_conv_split(x);
                im.sin().conv2d(w, 2, 1).square()
            },
            true,
        ),
        c(
            "custom_op",
            bn,
            |x| {
                let op: Arc<dyn CustomOp<T>> = Arc::new(SqMul);
                x.tape().custom(&op, &[x.sin(), x.cos()])
            },
            true,
        ),
        // Per-channel operands (a convolution's bias `[c, 1, 1]`) take their own fast path.
        c(
            "channel_bias_add_sub",
            img4,
            |x| (x + x.view(0, &[4, 1, 1])).tanh() - x.view(1, &[1, 4, 1, 1]).sin(),
            true,
        ),
        c(
            "channel_mul",
            img4,
            |x| x.mul(x.view(2, &[4, 1, 1]).cos()),
            true,
        ),
        c(
            "channel_block_mul",
            img4,
            |x| {
                let h = x.shape().dim(2);
                (x.sin() * x.view(0, &[4, h, 1])).square()
            },
            true,
        ),
        // The layers' fused paths: GroupNorm with γ, β in its node (parameters read from
        // the input itself), Conv2d with its bias added as the output is written.
        c(
            "group_norm_affine",
            img4,
            |x| {
                let mut st = ParamStore::<T>::new(1);
                let gn = GroupNorm::new(&mut st, "n", 2, 4, 1e-3, true).unwrap();
                gn.forward(x, x.cos()).mul(x)
            },
            true,
        ),
        c(
            "group_norm_affine_one_group_aliased",
            img4,
            |x| {
                let mut st = ParamStore::<T>::new(1);
                let gn = GroupNorm::new(&mut st, "n", 1, 4, 1e-3, true).unwrap();
                gn.forward(x, x).sin()
            },
            true,
        ),
        c(
            "conv2d_bias_layer",
            img,
            |x| {
                let (im, _) = conv_split(x);
                let mut st = ParamStore::<T>::new(1);
                let cv = Conv2d::new(&mut st, "c", Conv2dConfig::new(2, 3, 2).padding(1)).unwrap();
                cv.forward(x, im.tanh()).sin()
            },
            true,
        ),
        c(
            "conv2d_bias_layer_stride2",
            img,
            |x| {
                let (im, _) = conv_split(x);
                let mut st = ParamStore::<T>::new(1);
                let cfg = Conv2dConfig::new(2, 3, 2).stride(2);
                let cv = Conv2d::new(&mut st, "c", cfg).unwrap();
                cv.forward(x, im).square()
            },
            true,
        ),
        c(
            "conv2d_time_channel",
            img,
            |x| {
                let (im, _) = conv_split(x);
                let mut st = ParamStore::<T>::new(1);
                let cfg = Conv2dConfig::new(3, 2, 2).padding(1);
                let cv = Conv2d::new(&mut st, "c", cfg).unwrap();
                let t = x.view(3, &[1]).sin();
                cv.forward_with_time(x, t, im.tanh()).sin()
            },
            true,
        ),
        c("avg_pool", img4, |x| x.avg_pool2d(2, 1).square(), true),
        c(
            "avg_pool_stride2",
            img4,
            |x| x.avg_pool2d(2, 2).mul(x.avg_pool2d(2, 2).sin()),
            true,
        ),
        c(
            "conv_pool_norm_block",
            img,
            |x| {
                let (im, w) = conv_split(x);
                let y = im
                    .conv2d(w, 1, 1)
                    .group_norm(1, T::from_f64_const(1e-3))
                    .softplus();
                y.avg_pool2d(2, 1).global_avg_pool2d().square()
            },
            true,
        ),
        // One flat leaf cut into a state and a layer's weights by views (TapeDynamics' θ):
        // the views whose only use is a product get their gradient written with `=`, the
        // rest of the leaf (biases, an unused tail) is zeroed first.
        c("split_leaf_mlp", split_len, |x| split_mlp(x, false), true),
        // The same views taken in decreasing order: every view accumulates.
        c(
            "split_leaf_views_reversed",
            split_len,
            |x| split_mlp(x, true),
            true,
        ),
        // Overlapping views, a view used twice, the leaf also used whole.
        c(
            "split_leaf_overlap",
            split_len,
            |x| {
                let y = split_mlp(x, false);
                let w = x.view(SPLIT_W1 + 2, &[2, 4]);
                y.matmul(w).sum()
            },
            true,
        ),
        c(
            "split_leaf_view_used_twice",
            split_len,
            |x| {
                let w = x.view(SPLIT_W1, &[2, 4]);
                x.view(0, &[3, 2]).matmul(w).tanh().mul(w.sum())
            },
            true,
        ),
        c(
            "split_leaf_also_whole",
            split_len,
            |x| split_mlp(x, false).sum().mul(x.square().sum()),
            true,
        ),
    ]
}

/// Layout of the split leaf: `z [3, 2]`, `W₁ [2, 4]`, `b₁ [4]`, `W₂ [4, 2]`, 3 unused.
const SPLIT_W1: usize = 6;
const SPLIT_LEN: usize = 6 + 8 + 4 + 8 + 3;
fn split_len(_: usize, _: usize) -> Vec<usize> {
    vec![SPLIT_LEN]
}
/// `tanh(z W₁ + b₁) W₂` with every operand a view of `x` (taken last to first when
/// `reversed`).
fn split_mlp<T: Float>(x: Var<'_, T>, reversed: bool) -> Var<'_, T> {
    let (b1, w2) = (SPLIT_W1 + 8, SPLIT_W1 + 12);
    let (z, w1, b, w) = if reversed {
        let w = x.view(w2, &[4, 2]);
        let b = x.view(b1, &[4]);
        let w1 = x.view(SPLIT_W1, &[2, 4]);
        (x.view(0, &[3, 2]), w1, b, w)
    } else {
        let z = x.view(0, &[3, 2]);
        let w1 = x.view(SPLIT_W1, &[2, 4]);
        (z, w1, x.view(b1, &[4]), x.view(w2, &[4, 2]))
    };
    (z.matmul(w1) + b).tanh().matmul(w)
}

/// Inputs in ±[0.05, 1.55]: at least 10 finite-difference steps away from the kinks of
/// relu and elu at 0 (a difference across a kink is not a derivative).
fn inputs<T: Float>(seed: u64, n: usize) -> Vec<T> {
    values::<T>(seed, n, -1.5, 1.5)
        .into_iter()
        .map(|v| {
            let a = v.to_f64_lossy();
            T::from_f64_const(a.signum() * (0.05 + a.abs()))
        })
        .collect()
}

fn gradcheck_all<T: Float>(b: usize, n: usize, seed: u64) {
    let tol = default_gradcheck_tolerance::<T>();
    // The 16-channel 3×3 cases run by Winograd (by default it takes 32 or more).
    autodiff::set_winograd(Winograd::Always);
    for case in cases::<T>() {
        let dims = (case.dims)(b, n);
        let len: usize = dims.iter().product();
        let x = inputs::<T>(seed, len);
        // Output length, then a random seed vector.
        let tape = Tape::<T>::new();
        let m = (case.f)(tape.constant(&x, &dims).unwrap()).len();
        let v = values::<T>(seed ^ 0xABCD, m, -1.0, 1.0);
        let rep = gradcheck(case.f, &x, &dims, &v).unwrap();
        assert!(
            rep.passes(tol),
            "{} ({}) dims {:?}: {:?} > {tol}",
            case.name,
            std::any::type_name::<T>(),
            dims,
            rep
        );
    }
}

/// Recorded backward equals the fast one, and its gradient passes gradcheck (second
/// derivatives against differences of first derivatives).
fn graph_all<T: Float>(b: usize, n: usize, seed: u64) {
    let tol = default_gradcheck_tolerance::<T>();
    // The 16-channel 3×3 cases run by Winograd (by default it takes 32 or more).
    autodiff::set_winograd(Winograd::Always);
    for case in cases::<T>().into_iter().filter(|c| c.graph) {
        let dims = (case.dims)(b, n);
        let len: usize = dims.iter().product();
        let x = inputs::<T>(seed, len);
        let tape = Tape::<T>::new();
        tape.set_recording(true);
        let xv = tape.leaf(&x, &dims).unwrap();
        let y = (case.f)(xv);
        let v = values::<T>(seed ^ 0xABCD, y.len(), -1.0, 1.0);
        let vs = tape.constant(&v, y.shape().dims()).unwrap();
        tape.backward_graph(y, vs).unwrap();
        let g_graph = tape.gradient(xv).unwrap().value().unwrap();
        tape.backward(y, &v).unwrap();
        let g_fast = xv.grad().unwrap();
        for (k, (a, f)) in g_graph.iter().zip(&g_fast).enumerate() {
            let (a, f) = (a.to_f64_lossy(), f.to_f64_lossy());
            let e = (a - f).abs() / 1f64.max(f.abs());
            assert!(
                e < 100.0 * T::epsilon().to_f64_lossy(),
                "{} graph/fast differ at {k}: {a} vs {f}",
                case.name
            );
        }
        // x ↦ vᵀ ∂f/∂x as a function, gradchecked with a second random seed.
        let f = case.f;
        let w = values::<T>(seed ^ 0x1234, len, -1.0, 1.0);
        let v2 = v.clone();
        let gfun = hr(move |x: Var<'_, T>| {
            let t = x.tape();
            let y = f(x);
            let vs = t.constant(&v2, y.shape().dims()).unwrap();
            t.backward_graph(y, vs).unwrap();
            t.gradient(x).unwrap()
        });
        let rep = autodiff::gradcheck(&gfun, &x, &dims, &w).unwrap();
        assert!(
            rep.passes(tol),
            "grad-of-grad {} ({}) dims {:?}: {:?} > {tol}",
            case.name,
            std::any::type_name::<T>(),
            dims,
            rep
        );
    }
}

/// `S(x) = ½‖(v⊙f)ᵀ∂f/∂x‖²`, the gradient recorded with a seed that depends on `x`, so
/// that gradients flow into every input of the recorded VJP ops (both operands of the
/// bilinear ones). With `twice`, returns `∂S/∂x` from a second recorded backward.
fn s_fun<'t>(f: F<f64>, x: Var<'t, f64>, seed: u64, twice: bool) -> Var<'t, f64> {
    let t = x.tape();
    let y = f(x);
    let v = values::<f64>(seed ^ 0xABCD, y.len(), -1.0, 1.0);
    let vs = t.constant(&v, y.shape().dims()).unwrap().mul(y);
    t.backward_graph(y, vs).unwrap();
    let g = t.gradient(x).unwrap();
    let s = g.square().sum().mul_scalar(0.5);
    if !twice {
        return s;
    }
    let one = t.constant(&[1.0], &[]).unwrap();
    t.backward_graph(s, one).unwrap();
    t.gradient(x).unwrap()
}

/// Third derivatives (f64), for every op with a recorded backward: (1) `S` above passes
/// gradcheck (second derivatives through the recorded VJP ops' fast VJPs); (2) `∂S/∂x`
/// from a second recorded backward equals the fast gradient of `S` (the recorded VJPs of
/// the recorded VJP ops, e.g. of the transposed convolution); (3) that recorded `∂S/∂x`
/// passes gradcheck (third derivatives).
fn third_all(b: usize, n: usize, seed: u64) {
    let tol = default_gradcheck_tolerance::<f64>();
    // The 16-channel 3×3 cases run by Winograd (by default it takes 32 or more).
    autodiff::set_winograd(Winograd::Always);
    for case in cases::<f64>().into_iter().filter(|c| c.graph) {
        let dims = (case.dims)(b, n);
        let len: usize = dims.iter().product();
        // Inputs in ±[0.03, 0.93]: `S` is a high-degree function of them (degree 14 for
        // a squared convolution of the input by itself), and central differences of it
        // lose digits to round-off when its magnitude dwarfs its derivative.
        let x: Vec<f64> = inputs::<f64>(seed, len).iter().map(|v| 0.6 * v).collect();
        let f = case.f;
        let rep = gradcheck(hr(move |x| s_fun(f, x, seed, false)), &x, &dims, &[1.0]).unwrap();
        assert!(rep.passes(tol), "S {} {dims:?}: {rep:?}", case.name);
        let tape = Tape::<f64>::new();
        tape.set_recording(true);
        let xv = tape.leaf(&x, &dims).unwrap();
        let h = s_fun(f, xv, seed, true).value().unwrap();
        let sv = s_fun(f, xv, seed, false);
        tape.backward(sv, &[1.0]).unwrap();
        for (k, (a, e)) in h.iter().zip(xv.grad().unwrap()).enumerate() {
            assert!(
                (a - e).abs() <= 1e-12 * (1.0 + e.abs()),
                "{}: recorded ∂S/∂x {a} vs fast {e} at {k}",
                case.name
            );
        }
        let w = values::<f64>(seed ^ 0x5678, len, -1.0, 1.0);
        let rep = gradcheck(hr(move |x| s_fun(f, x, seed, true)), &x, &dims, &w).unwrap();
        assert!(
            rep.passes(tol),
            "third order {} {dims:?}: {rep:?} > {tol}",
            case.name
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn third_derivatives_every_op_f64(b in 1usize..3, n in 1usize..4, seed in any::<u64>()) {
        third_all(b, n, seed);
    }
    #[test]
    fn gradcheck_every_op_f64(b in 1usize..4, n in 1usize..5, seed in any::<u64>()) {
        gradcheck_all::<f64>(b, n, seed);
    }
    #[test]
    fn gradcheck_every_op_f32(b in 1usize..4, n in 1usize..5, seed in any::<u64>()) {
        gradcheck_all::<f32>(b, n, seed);
    }
    #[test]
    fn grad_of_grad_every_op_f64(b in 1usize..4, n in 1usize..5, seed in any::<u64>()) {
        graph_all::<f64>(b, n, seed);
    }
    #[test]
    fn grad_of_grad_every_op_f32(b in 1usize..4, n in 1usize..5, seed in any::<u64>()) {
        graph_all::<f32>(b, n, seed);
    }
}

/// The fused bias add + elementwise op (one pass over row chunks, the add's value
/// deferred) gives the values and gradients of the two-pass path (the add's value read
/// first), bit for bit, across chunk boundaries (rows that do not divide the chunk, a
/// row longer than a chunk), recording on and off, f64 and f32.
fn fused_bias_matches_unfused<T: Float>() {
    type U<T> = for<'t> fn(Var<'t, T>) -> Var<'t, T>;
    let ops: [(&str, U<T>); 8] = [
        ("tanh", |v| v.tanh()),
        ("sigmoid", |v| v.sigmoid()),
        ("relu", |v| v.relu()),
        ("softplus", |v| v.softplus()),
        ("sin", |v| v.sin()),
        ("exp", |v| v.exp()),
        ("square", |v| v.square()),
        ("sqrt", |v| v.square().sqrt()),
    ];
    for (rows, h) in [(1000usize, 5usize), (3, 3000), (7, 64), (2, 1)] {
        let x = values::<T>(rows as u64, rows * h, -2.0, 2.0);
        let b = values::<T>(h as u64 + 7, h, -1.0, 1.0);
        let seed = values::<T>(11, rows * h, -1.0, 1.0);
        for (name, f) in ops {
            for recording in [false, true] {
                let run = |fused: bool| {
                    let tape = Tape::<T>::new();
                    tape.set_recording(recording);
                    let xv = tape.leaf(&x, &[rows, h]).unwrap();
                    let bv = tape.leaf(&b, &[h]).unwrap();
                    let s = xv + bv;
                    if !fused {
                        s.value().unwrap(); // computes the add on its own
                    }
                    let y = f(s);
                    let out = (y.value().unwrap(), s.value().unwrap());
                    if !recording {
                        return (out, vec![], vec![]);
                    }
                    tape.backward(y, &seed).unwrap();
                    (out, xv.grad().unwrap(), bv.grad().unwrap())
                };
                let (a, b2) = (run(true), run(false));
                let same = |p: &[T], q: &[T]| {
                    p.len() == q.len()
                        && p.iter()
                            .zip(q)
                            .all(|(u, v)| u.to_f64_lossy().to_bits() == v.to_f64_lossy().to_bits())
                };
                let ctx = format!("{name} rows {rows} h {h} recording {recording}");
                assert!(same(&a.0.0, &b2.0.0), "{ctx}: values differ");
                assert!(same(&a.0.1, &b2.0.1), "{ctx}: the add's value differs");
                assert!(
                    same(&a.1, &b2.1) && same(&a.2, &b2.2),
                    "{ctx}: grads differ"
                );
            }
        }
    }
}

/// The bias add's VJP done inside its elementwise op's VJP (`a` used once, so its
/// gradient is the add's): the gradients equal, value for value, those of the same
/// graph with one more use of the sum `s` that adds an exact zero (`y + 0·s`), which
/// turns the fusion off. Every op with a plain VJP loop (and two without), `a` a
/// shifted leaf or a product (deferred by rows for 1030×8·8×64), f32 and f64.
fn fused_bias_vjp_matches_unfused<T: Float>() {
    type U<T> = for<'t> fn(Var<'t, T>) -> Var<'t, T>;
    let ops: [(&str, U<T>, f64); 11] = [
        ("tanh", |v| v.tanh(), 0.0),
        ("sigmoid", |v| v.sigmoid(), 0.0),
        ("relu", |v| v.relu(), 0.0),
        ("exp", |v| v.exp(), 0.0),
        ("neg", |v| -v, 0.0),
        ("square", |v| v.square(), 0.0),
        ("elu", |v| v.elu(T::from_f64_const(0.7)), 0.0),
        ("log", |v| v.log(), 3.5),
        ("sqrt", |v| v.sqrt(), 3.5),
        ("softplus", |v| v.softplus(), 0.0),
        ("sin", |v| v.sin(), 0.0),
    ];
    // (rows, k, h): k = 0 for `a = x + shift`, else `a = x·W` (x: rows × k).
    for (rows, k, h) in [
        (7usize, 0usize, 64usize),
        (3, 0, 3000),
        (2, 0, 1),
        (1030, 8, 64),
        (5, 3, 13),
    ] {
        let kx = if k == 0 { h } else { k };
        let x = values::<T>(rows as u64, rows * kx, -2.0, 2.0);
        let w = values::<T>(5, kx * h, -1.0, 1.0);
        let b = values::<T>(h as u64 + 7, h, -1.0, 1.0);
        let seed = values::<T>(11, rows * h, -1.0, 1.0);
        for (name, f, shift) in ops {
            let run = |fused: bool| {
                let tape = Tape::<T>::new();
                tape.set_recording(true);
                let xv = tape.leaf(&x, &[rows, kx]).unwrap();
                let wv = tape.leaf(&w, &[kx, h]).unwrap();
                let bv = tape.leaf(&b, &[h]).unwrap();
                let a = if k == 0 {
                    xv.add_scalar(T::from_f64_const(shift))
                } else {
                    xv.matmul(wv).add_scalar(T::from_f64_const(shift))
                };
                let s = a + bv;
                let mut y = f(s);
                if !fused {
                    y = y + s.mul_scalar(T::zero());
                }
                let vals = y.value().unwrap();
                tape.backward(y, &seed).unwrap();
                let mut g = xv.grad().unwrap();
                g.extend(bv.grad().unwrap());
                if k != 0 {
                    g.extend(wv.grad().unwrap());
                }
                (vals, g)
            };
            let (a, u) = (run(true), run(false));
            let same = |p: &[T], q: &[T]| {
                p.len() == q.len()
                    && p.iter()
                        .zip(q)
                        .all(|(u, v)| u == v || (u.is_nan() && v.is_nan()))
            };
            let ctx = format!("{name} rows {rows} k {k} h {h}");
            assert!(same(&a.0, &u.0), "{ctx}: values differ");
            assert!(same(&a.1, &u.1), "{ctx}: gradients differ");
        }
    }
}

#[test]
fn fused_bias_vjp_matches_unfused_f64() {
    fused_bias_vjp_matches_unfused::<f64>();
}

#[test]
fn fused_bias_vjp_matches_unfused_f32() {
    fused_bias_vjp_matches_unfused::<f32>();
}

#[test]
fn fused_bias_unary_matches_unfused_f64() {
    fused_bias_matches_unfused::<f64>();
}

#[test]
fn fused_bias_unary_matches_unfused_f32() {
    fused_bias_matches_unfused::<f32>();
}

/// A product large enough to be deferred (`x·W` with more than 32,768 outputs), then a
/// bias add and an elementwise op: evaluated by chunks of rows (the product never
/// stored), it gives the values and gradients of the unfused path (the product read
/// first) to rounding; reading the product or the sum afterwards gives theirs; a
/// deferred product used by anything else is computed first.
fn fused_matmul_bias_matches_unfused<T: Float>() {
    type U<T> = for<'t> fn(Var<'t, T>) -> Var<'t, T>;
    let ops: [(&str, U<T>); 3] = [
        ("tanh", |v| v.tanh()),
        ("relu", |v| v.relu()),
        ("sin", |v| v.sin()),
    ];
    let tol = 64.0 * T::epsilon().to_f64_lossy();
    for (rows, k, h) in [(1030usize, 8usize, 64usize), (300, 3, 129)] {
        let x = values::<T>(1, rows * k, -1.0, 1.0);
        let w = values::<T>(2, k * h, -1.0, 1.0);
        let b = values::<T>(3, h, -1.0, 1.0);
        let seed = values::<T>(4, rows * h, -1.0, 1.0);
        for (name, f) in ops {
            for recording in [false, true] {
                let run = |fused: bool| {
                    let tape = Tape::<T>::new();
                    tape.set_recording(recording);
                    let xv = tape.leaf(&x, &[rows, k]).unwrap();
                    let wv = tape.leaf(&w, &[k, h]).unwrap();
                    let bv = tape.leaf(&b, &[h]).unwrap();
                    let p = xv.matmul(wv);
                    if !fused {
                        p.value().unwrap(); // computes the product on its own
                    }
                    let s = p + bv;
                    let y = f(s);
                    let mut vals = y.value().unwrap();
                    vals.extend(s.value().unwrap());
                    vals.extend(p.value().unwrap());
                    // A deferred product consumed by a non-bias op.
                    let q = xv.matmul(wv).sum();
                    vals.push(q.item().unwrap());
                    if recording {
                        tape.backward(y, &seed).unwrap();
                        for v in [xv, wv, bv] {
                            vals.extend(v.grad().unwrap());
                        }
                    }
                    vals
                };
                let (a, u) = (run(true), run(false));
                assert_eq!(a.len(), u.len());
                for (i, (p, q)) in a.iter().zip(&u).enumerate() {
                    let (p, q) = (p.to_f64_lossy(), q.to_f64_lossy());
                    assert!(
                        (p - q).abs() <= tol * (1.0 + q.abs()) * (k as f64),
                        "{name} rows {rows} recording {recording}: index {i}: {p} vs {q}"
                    );
                }
            }
        }
    }
}

#[test]
fn fused_matmul_bias_unary_matches_unfused_f64() {
    fused_matmul_bias_matches_unfused::<f64>();
}

#[test]
fn fused_matmul_bias_unary_matches_unfused_f32() {
    fused_matmul_bias_matches_unfused::<f32>();
}

/// The split-leaf cases on a reused tape (stale gradients of an earlier pass in the
/// arena, as in `TapeDynamics`) give the same gradients as on a fresh tape: the ranges
/// not written with `=` are zeroed.
#[test]
fn split_leaf_reused_tape_matches_fresh() {
    let x = inputs::<f64>(7, SPLIT_LEN);
    let mut tape = Tape::<f64>::new();
    for case in cases::<f64>()
        .into_iter()
        .filter(|c| c.name.starts_with("split_leaf"))
    {
        for round in 0..3 {
            let fresh = Tape::<f64>::new();
            fresh.set_recording(true);
            let xv = fresh.leaf(&x, &[SPLIT_LEN]).unwrap();
            let y = (case.f)(xv);
            let seed = values::<f64>(round, y.len(), -1.0, 1.0);
            fresh.backward(y, &seed).unwrap();
            let want = xv.grad().unwrap();

            // Fill the arena with nonzero gradients of another function, then rerun.
            tape.reset();
            tape.set_recording(true);
            let xv = tape.leaf(&x, &[SPLIT_LEN]).unwrap();
            let junk = xv.view(0, &[SPLIT_LEN]).exp().sum();
            tape.backward(junk, &[1.0]).unwrap();
            tape.reset();
            let xv = tape.leaf(&x, &[SPLIT_LEN]).unwrap();
            let y = (case.f)(xv);
            for _ in 0..2 {
                tape.backward(y, &seed).unwrap();
                assert_eq!(xv.grad().unwrap(), want, "{} round {round}", case.name);
            }
        }
    }
}

/// `GroupNorm::forward_relu` (normalisation, affine part and ReLU in one node) gives the
/// values, the fast and the recorded gradients, and the gradients of a recorded
/// gradient, of the unfused `forward(x).relu()`, bit for bit (so it inherits their
/// gradchecks; a gradcheck of its own would straddle the ReLU's kink). `x` used once
/// (its gradient assigned) or twice (accumulated), several groups per sample.
fn gn_relu_fused_matches_unfused<T: Float>() {
    let (b, c, h, w) = (3usize, 8usize, 5usize, 4usize);
    let x = values::<T>(5, b * c * h * w, -2.0, 2.0);
    let v = values::<T>(6, b * c * h * w, -1.0, 1.0);
    for (groups, twice) in [(2, false), (4, true), (1, false)] {
        let mut st = ParamStore::<T>::new(1);
        let gn = GroupNorm::new(&mut st, "n", groups, c, 1e-3, true).unwrap();
        // γ, β of both signs: some channels flipped, about half the outputs clipped.
        let th = values::<T>(7, st.n_params(), -1.5, 1.5);
        let run = |fused: bool| {
            let tape = Tape::<T>::new();
            tape.set_recording(true);
            let xv = tape.leaf(&x, &[b, c, h, w]).unwrap();
            let tv = tape.leaf(&th, &[th.len()]).unwrap();
            let y = if fused {
                gn.forward_relu(tv, xv)
            } else {
                gn.forward(tv, xv).relu()
            };
            let y = if twice { y.sin() * xv } else { y };
            let mut out = vec![y.value().unwrap()];
            tape.backward(y, &v).unwrap();
            out.extend([xv.grad().unwrap(), tv.grad().unwrap()]);
            // Recorded: ∂ = vᵀ∂y, then the fast gradient of ½‖∂x‖² + Σ ∂θ.
            let vs = tape.constant(&v, &[b, c, h, w]).unwrap();
            tape.backward_graph(y, vs).unwrap();
            let (gx, gt) = (tape.gradient(xv).unwrap(), tape.gradient(tv).unwrap());
            out.extend([gx.value().unwrap(), gt.value().unwrap()]);
            let s = gx.square().sum().mul_scalar(T::from_f64_const(0.5)) + gt.sum();
            tape.backward_scalar(s).unwrap();
            out.extend([xv.grad().unwrap(), tv.grad().unwrap()]);
            out
        };
        let (a, u) = (run(true), run(false));
        let what = [
            "values",
            "∂x",
            "∂θ",
            "recorded ∂x",
            "recorded ∂θ",
            "∂²x",
            "∂²θ",
        ];
        for ((p, q), what) in a.iter().zip(&u).zip(what) {
            assert!(p.len() == q.len() && !p.is_empty(), "{what}: lengths");
            let same = p
                .iter()
                .zip(q)
                .all(|(s, t)| s.to_f64_lossy().to_bits() == t.to_f64_lossy().to_bits());
            assert!(same, "{what} differ (groups {groups}, x twice {twice})");
        }
        // The ReLU clips: some outputs are zero, some positive.
        assert!(a[0].iter().any(|&y| y == T::zero()) && a[0].iter().any(|&y| y > T::zero()));
    }
}

#[test]
fn gn_relu_fused_matches_unfused_f64() {
    gn_relu_fused_matches_unfused::<f64>();
}

#[test]
fn gn_relu_fused_matches_unfused_f32() {
    gn_relu_fused_matches_unfused::<f32>();
}

/// Winograd F(2×2, 3×3) against the patch-major im2col + GEMM path (switched per thread
/// by `autodiff::set_winograd`) through the tape: values, `∂x`, `∂w` and the recorded
/// `∂x`, `∂w` (second-order path), to round-off, on 16 and 64 channels, even and odd
/// maps, a batch of one and a batch of 64 (several chunks).
fn winograd_matches_patch_major<T: Float>(tol: f64) {
    for (t, &(n, c, o, h, w)) in [
        (2, 16, 16, 6, 6),
        (1, 16, 20, 5, 7),
        (64, 64, 64, 6, 6),
        (3, 24, 16, 1, 1),
    ]
    .iter()
    .enumerate()
    {
        let seed = 40 + t as u64;
        let x = values::<T>(seed, n * c * h * w, -1.0, 1.0);
        let wt = values::<T>(seed + 1, o * c * 9, -0.2, 0.2);
        let gy = values::<T>(seed + 2, n * o * h * w, -1.0, 1.0);
        let mut res = Vec::new();
        for wino in [Winograd::Always, Winograd::Off] {
            let prev = autodiff::set_winograd(wino);
            let tape = Tape::<T>::new();
            tape.set_recording(true);
            let xv = tape.leaf(&x, &[n, c, h, w]).unwrap();
            let wv = tape.leaf(&wt, &[o, c, 3, 3]).unwrap();
            let y = xv.conv2d(wv, 1, 1);
            tape.backward(y, &gy).unwrap();
            let mut r = vec![y.value().unwrap(), xv.grad().unwrap(), wv.grad().unwrap()];
            let seed = tape.constant(&gy, &[n, o, h, w]).unwrap();
            tape.backward_graph(y, seed).unwrap();
            for v in [xv, wv] {
                r.push(tape.gradient(v).unwrap().value().unwrap());
            }
            res.push(r);
            autodiff::set_winograd(prev);
        }
        for (k, what) in ["y", "∂x", "∂w", "recorded ∂x", "recorded ∂w"]
            .iter()
            .enumerate()
        {
            let (a, b) = (&res[0][k], &res[1][k]);
            let scale = b.iter().fold(1.0f64, |m, v| m.max(v.to_f64_lossy().abs()));
            let e = a.iter().zip(b).fold(0.0f64, |m, (p, q)| {
                m.max((p.to_f64_lossy() - q.to_f64_lossy()).abs())
            }) / scale;
            assert!(e < tol, "{what} n{n} c{c} o{o} {h}×{w}: {e:e}");
        }
    }
}

#[test]
fn winograd_matches_patch_major_f64() {
    winograd_matches_patch_major::<f64>(1e-13);
}

#[test]
fn winograd_matches_patch_major_f32() {
    winograd_matches_patch_major::<f32>(2e-6);
}
