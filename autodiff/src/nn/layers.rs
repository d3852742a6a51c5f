//! Layers: `Linear`, `Conv2d`, `GroupNorm`, `GruCell`, and the activations.

use super::params::{Init, ParamStore, ParamView, join};
use crate::{Error, Float, Shape, Var};

/// Makes `x`'s tape fail with `e` (the first error is kept) and returns the failed node.
pub(crate) fn fail<'t, T: Float>(x: Var<'t, T>, e: Error) -> Var<'t, T> {
    x.un(|t, _| t.fail(e))
}

/// A layer with one input: `y = layer(θ, x)`.
///
/// `theta` is the flat parameter leaf of the [`ParamStore`] the layer was built in
/// ([`ParamStore::leaf`]); shape errors are recorded on the tape like those of any op
/// and returned by the next `value_into` / `backward`.
pub trait Module {
    /// The forward pass on `theta`'s tape.
    fn forward<'t, T: Float>(&self, theta: Var<'t, T>, x: Var<'t, T>) -> Var<'t, T>;
}

/// An elementwise activation function.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub enum Activation {
    /// `x`.
    Identity,
    /// `tanh x` (vectorised kernel).
    #[default]
    Tanh,
    /// `max(x, 0)`.
    Relu,
    /// `log(1 + eˣ)`.
    Softplus,
    /// `1 / (1 + e⁻ˣ)`.
    Sigmoid,
    /// `x` if `x > 0`, else `α (eˣ − 1)`.
    Elu(f64),
    /// `x · sigmoid(x)` (SiLU / swish).
    Silu,
    /// `sin x` (SIREN-style periodic networks).
    Sin,
}

impl Activation {
    /// Applies the activation.
    pub fn apply<'t, T: Float>(&self, x: Var<'t, T>) -> Var<'t, T> {
        match *self {
            Activation::Identity => x,
            Activation::Tanh => x.tanh(),
            Activation::Relu => x.relu(),
            Activation::Softplus => x.softplus(),
            Activation::Sigmoid => x.sigmoid(),
            Activation::Elu(a) => x.elu(T::from_f64_const(a)),
            Activation::Silu => x * x.sigmoid(),
            Activation::Sin => x.sin(),
        }
    }
}

/// Copies `dims` into a fixed array with the last dimension replaced by `last`.
fn with_last(s: Shape, last: usize) -> ([usize; 4], usize) {
    let r = s.rank();
    let mut d = [1usize; 4];
    d[..r].copy_from_slice(s.dims());
    if r > 0 {
        d[r - 1] = last;
    }
    (d, r)
}

/// Fully connected layer `y = x Wᵀ + b`, with PyTorch's layout: weight `[out, in]`,
/// bias `[out]`, names `"{name}.weight"`, `"{name}.bias"`.
///
/// `x` has shape `[..., in]` (any leading dimensions, folded into rows without a copy);
/// `y` has shape `[..., out]`. Initialisation (PyTorch's default): weight and bias
/// `U(−1/√in, 1/√in)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Linear {
    weight: ParamView,
    bias: Option<ParamView>,
    in_features: usize,
    out_features: usize,
}

impl Linear {
    /// Registers `"{name}.weight"` (and `"{name}.bias"` if `bias`) in `store`.
    pub fn new<T: Float>(
        store: &mut ParamStore<T>,
        name: &str,
        in_features: usize,
        out_features: usize,
        bias: bool,
    ) -> Result<Self, Error> {
        if in_features == 0 || out_features == 0 {
            return Err(Error::InvalidArgument {
                op: "Linear::new",
                shape: Shape::new(&[out_features, in_features])?,
                reason: "in_features and out_features must be > 0",
            });
        }
        let init = Init::KaimingUniform {
            fan_in: in_features,
        };
        Self::with_init(
            store,
            name,
            in_features,
            out_features,
            init,
            bias.then_some(init),
        )
    }

    /// A layer with explicit initialisations of the weight and (if `bias_init` is
    /// `Some`) the bias, e.g. torchdiffeq's examples' `Normal { mean: 0, std: 0.1 }` and
    /// `Zeros`.
    pub fn with_init<T: Float>(
        store: &mut ParamStore<T>,
        name: &str,
        in_features: usize,
        out_features: usize,
        weight_init: Init,
        bias_init: Option<Init>,
    ) -> Result<Self, Error> {
        if in_features == 0 || out_features == 0 {
            return Err(Error::InvalidArgument {
                op: "Linear::new",
                shape: Shape::new(&[out_features, in_features])?,
                reason: "in_features and out_features must be > 0",
            });
        }
        store.transaction(|store| {
            let weight = store.register(
                &join(name, "weight"),
                &[out_features, in_features],
                weight_init,
            )?;
            let bias = match bias_init {
                Some(init) => Some(store.register(&join(name, "bias"), &[out_features], init)?),
                None => None,
            };
            Ok(Self {
                weight,
                bias,
                in_features,
                out_features,
            })
        })
    }

    /// Number of input features.
    pub fn in_features(&self) -> usize {
        self.in_features
    }

    /// Number of output features.
    pub fn out_features(&self) -> usize {
        self.out_features
    }

    /// The weight `[out, in]`.
    pub fn weight(&self) -> ParamView {
        self.weight
    }

    /// The bias `[out]`, if any.
    pub fn bias(&self) -> Option<ParamView> {
        self.bias
    }
}

impl Linear {
    /// `y = x Wᵀ + b` for `x` of shape `[..., in]`.
    pub fn forward<'t, T: Float>(&self, theta: Var<'t, T>, x: Var<'t, T>) -> Var<'t, T> {
        let s = x.shape();
        let r = s.rank();
        if r == 0 || s.dim(r - 1) != self.in_features {
            return fail(
                x,
                Error::ShapeMismatch {
                    op: "Linear",
                    lhs: s,
                    rhs: self.weight.shape(),
                },
            );
        }
        let w = self.weight.var(theta);
        let rows = s.len() / self.in_features;
        let x2 = if r == 2 {
            x
        } else {
            x.reshape(&[rows, self.in_features])
        };
        let mut y = x2.matmul_t(w, false, true);
        if let Some(b) = self.bias {
            y = y + b.var(theta);
        }
        if r == 2 {
            y
        } else {
            let (d, r) = with_last(s, self.out_features);
            y.reshape(&d[..r])
        }
    }
}

impl Module for Linear {
    fn forward<'t, T: Float>(&self, theta: Var<'t, T>, x: Var<'t, T>) -> Var<'t, T> {
        Linear::forward(self, theta, x)
    }
}

/// Options of a [`Conv2d`] layer (PyTorch's `nn.Conv2d` arguments, square kernels).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dConfig {
    /// Input channels `c`.
    pub in_channels: usize,
    /// Output channels `o`.
    pub out_channels: usize,
    /// Kernel height and width `k`.
    pub kernel_size: usize,
    /// Stride (default 1).
    pub stride: usize,
    /// Zero padding on every side (default 0).
    pub padding: usize,
    /// Whether there is a bias (default true).
    pub bias: bool,
}

impl Conv2dConfig {
    /// `in_channels → out_channels` with a `k × k` kernel, stride 1, no padding, a bias.
    pub fn new(in_channels: usize, out_channels: usize, kernel_size: usize) -> Self {
        Self {
            in_channels,
            out_channels,
            kernel_size,
            stride: 1,
            padding: 0,
            bias: true,
        }
    }
    /// Sets the stride.
    pub fn stride(mut self, stride: usize) -> Self {
        self.stride = stride;
        self
    }
    /// Sets the zero padding.
    pub fn padding(mut self, padding: usize) -> Self {
        self.padding = padding;
        self
    }
    /// Turns the bias on or off.
    pub fn bias(mut self, bias: bool) -> Self {
        self.bias = bias;
        self
    }
}

/// 2-D convolution `[n, c, h, w] → [n, o, h', w']` with weight `[o, c, k, k]` and bias
/// `[o]` (PyTorch's layout and names `"{name}.weight"`, `"{name}.bias"`), where
/// `h' = (h + 2p − k)/s + 1`. Initialisation: `U(−1/√(c·k²), 1/√(c·k²))` for both.
#[derive(Clone, Debug, PartialEq)]
pub struct Conv2d {
    weight: ParamView,
    bias: Option<ParamView>,
    config: Conv2dConfig,
}

impl Conv2d {
    /// Registers the weight (and bias) in `store`.
    pub fn new<T: Float>(
        store: &mut ParamStore<T>,
        name: &str,
        config: Conv2dConfig,
    ) -> Result<Self, Error> {
        let c = config;
        let wdims = [c.out_channels, c.in_channels, c.kernel_size, c.kernel_size];
        if wdims.contains(&0) || c.stride == 0 {
            return Err(Error::InvalidArgument {
                op: "Conv2d::new",
                shape: Shape::new(&wdims)?,
                reason: "channels, kernel_size and stride must be > 0",
            });
        }
        let init = Init::KaimingUniform {
            fan_in: c.in_channels * c.kernel_size * c.kernel_size,
        };
        store.transaction(|store| {
            let weight = store.register(&join(name, "weight"), &wdims, init)?;
            let bias = if c.bias {
                Some(store.register(&join(name, "bias"), &[c.out_channels], init)?)
            } else {
                None
            };
            Ok(Self {
                weight,
                bias,
                config,
            })
        })
    }

    /// The configuration.
    pub fn config(&self) -> Conv2dConfig {
        self.config
    }

    /// The weight `[o, c, k, k]`.
    pub fn weight(&self) -> ParamView {
        self.weight
    }

    /// The bias `[o]`, if any.
    pub fn bias(&self) -> Option<ParamView> {
        self.bias
    }
}

impl Conv2d {
    /// The convolution of `x` `[n, c, h, w]` (plus the bias).
    pub fn forward<'t, T: Float>(&self, theta: Var<'t, T>, x: Var<'t, T>) -> Var<'t, T> {
        let w = self.weight.var(theta);
        let (stride, pad) = (self.config.stride, self.config.padding);
        match self.bias {
            // The bias is added as the convolution's output is written (one node).
            Some(b) => ternary(x, w, b.var(theta), |t, x, w, b| {
                t.conv2d_bias(x, w, b, stride, pad)
            }),
            None => x.conv2d(w, stride, pad),
        }
    }
}

/// Applies a tape op of three operands after checking that they share a tape.
fn ternary<'t, T: Float>(
    a: Var<'t, T>,
    b: Var<'t, T>,
    c: Var<'t, T>,
    f: impl FnOnce(
        &mut crate::tape::Inner<T>,
        crate::tape::Id,
        crate::tape::Id,
        crate::tape::Id,
    ) -> crate::tape::Id,
) -> Var<'t, T> {
    if !std::ptr::eq(a.tape, c.tape) {
        return fail(a, Error::ForeignVar);
    }
    a.bin(b, |t, a, b| f(t, a, b, c.id))
}

impl Conv2d {
    /// The convolution of `[t; x]`: the constant map `t` (`[1]`) as input channel 0,
    /// then the channels of `x` `[n, c − 1, h, w]` (torchdiffeq's `ConcatConv2d`, the
    /// time-dependent convolution of ODE-Net's field), without materialising the
    /// concatenation. By linearity, `conv([t; x], W) + b = conv(x, W₁) + B` with
    /// `W₁ = W[:, 1..]` and `B = conv(t·1, W₀) + b`: the constant channel's contribution,
    /// `t · Σ W₀[o, p, q]` over the kernel taps that fall inside the image (so it varies
    /// near the border), is a convolution of one `[1, 1, h, w]` map, shared by the batch
    /// and added with the bias as the main convolution's output is written. Saves the
    /// copy of `x` into a `c`-channel tensor and the split of its gradient.
    pub fn forward_with_time<'t, T: Float>(
        &self,
        theta: Var<'t, T>,
        t: Var<'t, T>,
        x: Var<'t, T>,
    ) -> Var<'t, T> {
        let (s, c) = (x.shape(), self.config.in_channels);
        if s.rank() != 4 || s.dim(1) + 1 != c || t.len() != 1 {
            return fail(
                x,
                Error::InvalidArgument {
                    op: "Conv2d::forward_with_time",
                    shape: s,
                    reason: "needs x [n, c − 1, h, w] for a layer of c input channels and a time of one element",
                },
            );
        }
        let (stride, pad, o) = (
            self.config.stride,
            self.config.padding,
            self.config.out_channels,
        );
        let w = self.weight.var(theta);
        let (w0, w1) = (w.narrow(1, 0, 1), w.narrow(1, 1, c - 1));
        let tmap = t.reshape(&[1, 1, 1, 1]).expand(&[1, 1, s.dim(2), s.dim(3)]);
        let tc = tmap.conv2d(w0, stride, pad);
        let d = tc.shape();
        let tc = tc.reshape(&[o, d.dim(2), d.dim(3)]);
        let b = match self.bias {
            Some(b) => tc + b.var_as(theta, &[o, 1, 1]),
            None => tc,
        };
        ternary(x, w1, b, |t, x, w, b| t.conv2d_bias(x, w, b, stride, pad))
    }
}

impl Module for Conv2d {
    fn forward<'t, T: Float>(&self, theta: Var<'t, T>, x: Var<'t, T>) -> Var<'t, T> {
        Conv2d::forward(self, theta, x)
    }
}

/// Group normalisation (Wu & He, 2018) of `[n, c, ...]` inputs with a per-channel affine
/// part: `y = γ_c (x − μ_g) / √(σ²_g + ε) + β_c`, mean and variance over each sample's
/// group of `c / groups` channels and all spatial positions. Names `"{name}.weight"`
/// (`γ`, initialised to 1) and `"{name}.bias"` (`β`, initialised to 0), as PyTorch.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupNorm {
    weight: Option<ParamView>,
    bias: Option<ParamView>,
    groups: usize,
    channels: usize,
    eps: f64,
}

impl GroupNorm {
    /// `groups` groups over `channels` channels (`groups` must divide `channels`),
    /// `eps` > 0 (PyTorch uses 1e-5), with the affine part if `affine`.
    pub fn new<T: Float>(
        store: &mut ParamStore<T>,
        name: &str,
        groups: usize,
        channels: usize,
        eps: f64,
        affine: bool,
    ) -> Result<Self, Error> {
        if groups == 0 || channels == 0 || !channels.is_multiple_of(groups) {
            return Err(Error::InvalidArgument {
                op: "GroupNorm::new",
                shape: Shape::new(&[channels])?,
                reason: "groups must be > 0 and divide the number of channels",
            });
        }
        if !(eps.is_finite() && eps > 0.0) {
            return Err(Error::InvalidHyperparameter {
                op: "GroupNorm::new",
                name: "eps",
                value: eps,
                reason: "it must be finite and > 0",
            });
        }
        let (weight, bias) = if affine {
            store.transaction(|store| {
                Ok((
                    Some(store.register(&join(name, "weight"), &[channels], Init::Ones)?),
                    Some(store.register(&join(name, "bias"), &[channels], Init::Zeros)?),
                ))
            })?
        } else {
            (None, None)
        };
        Ok(Self {
            weight,
            bias,
            groups,
            channels,
            eps,
        })
    }

    /// Number of groups.
    pub fn groups(&self) -> usize {
        self.groups
    }

    /// Number of channels.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// `γ` `[c]`, if affine.
    pub fn weight(&self) -> Option<ParamView> {
        self.weight
    }

    /// `β` `[c]`, if affine.
    pub fn bias(&self) -> Option<ParamView> {
        self.bias
    }
}

impl GroupNorm {
    /// Normalises `x` `[n, c, ...]` (then applies `γ`, `β`).
    pub fn forward<'t, T: Float>(&self, theta: Var<'t, T>, x: Var<'t, T>) -> Var<'t, T> {
        let s = x.shape();
        if s.rank() < 2 || s.dim(1) != self.channels {
            return fail(
                x,
                Error::InvalidArgument {
                    op: "GroupNorm",
                    shape: s,
                    reason: "the input must be [n, c, ...] with c the layer's number of channels",
                },
            );
        }
        let eps = T::from_f64_const(self.eps);
        if let (Some(g), Some(b)) = (self.weight, self.bias) {
            // Normalisation and affine part in one node (one pass each way).
            let groups = self.groups;
            return ternary(x, g.var(theta), b.var(theta), |t, x, g, b| {
                t.group_norm_affine(x, g, b, groups, eps)
            });
        }
        let y = x.group_norm(self.groups, eps);
        // [c] broadcast over [n, c, *spatial]: view it as [c, 1, ..., 1].
        let mut d = [1usize; 3];
        d[0] = self.channels;
        let dims = &d[..s.rank() - 1];
        let y = match self.weight {
            Some(g) => y * g.var_as(theta, dims),
            None => y,
        };
        match self.bias {
            Some(b) => y + b.var_as(theta, dims),
            None => y,
        }
    }
}

impl GroupNorm {
    /// `max(forward(x), 0)`: with the affine part, normalisation, affine part and ReLU
    /// in one node (the same values, bit for bit, without storing the pre-activation or
    /// a pass for the ReLU either way); without it, `forward(x).relu()`.
    pub fn forward_relu<'t, T: Float>(&self, theta: Var<'t, T>, x: Var<'t, T>) -> Var<'t, T> {
        let s = x.shape();
        match (self.weight, self.bias) {
            (Some(g), Some(b)) if s.rank() >= 2 && s.dim(1) == self.channels => {
                let (groups, eps) = (self.groups, T::from_f64_const(self.eps));
                ternary(x, g.var(theta), b.var(theta), |t, x, g, b| {
                    t.group_norm_affine_relu(x, g, b, groups, eps)
                })
            }
            _ => self.forward(theta, x).relu(),
        }
    }
}

impl Module for GroupNorm {
    fn forward<'t, T: Float>(&self, theta: Var<'t, T>, x: Var<'t, T>) -> Var<'t, T> {
        GroupNorm::forward(self, theta, x)
    }
}

/// Gated recurrent unit cell (Cho et al., 2014), PyTorch's `nn.GRUCell`:
///
/// ```text
/// r  = σ(W_ir x + b_ir + W_hr h + b_hr)
/// z  = σ(W_iz x + b_iz + W_hz h + b_hz)
/// n  = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))
/// h' = (1 − z) ⊙ n + z ⊙ h
/// ```
///
/// Parameters (PyTorch names and layouts, gates stacked in the order r, z, n):
/// `"{name}.weight_ih"` `[3H, in]`, `"{name}.weight_hh"` `[3H, H]`, `"{name}.bias_ih"`
/// `[3H]`, `"{name}.bias_hh"` `[3H]`, all initialised `U(−1/√H, 1/√H)`.
#[derive(Clone, Debug, PartialEq)]
pub struct GruCell {
    weight_ih: ParamView,
    weight_hh: ParamView,
    bias_ih: Option<ParamView>,
    bias_hh: Option<ParamView>,
    input_size: usize,
    hidden_size: usize,
}

impl GruCell {
    /// Registers the cell's weights (and biases if `bias`) in `store`.
    pub fn new<T: Float>(
        store: &mut ParamStore<T>,
        name: &str,
        input_size: usize,
        hidden_size: usize,
        bias: bool,
    ) -> Result<Self, Error> {
        if input_size == 0 || hidden_size == 0 {
            return Err(Error::InvalidArgument {
                op: "GruCell::new",
                shape: Shape::new(&[input_size, hidden_size])?,
                reason: "input_size and hidden_size must be > 0",
            });
        }
        let h3 = 3 * hidden_size;
        let init = Init::KaimingUniform {
            fan_in: hidden_size,
        };
        store.transaction(|store| {
            let weight_ih = store.register(&join(name, "weight_ih"), &[h3, input_size], init)?;
            let weight_hh = store.register(&join(name, "weight_hh"), &[h3, hidden_size], init)?;
            let (bias_ih, bias_hh) = if bias {
                (
                    Some(store.register(&join(name, "bias_ih"), &[h3], init)?),
                    Some(store.register(&join(name, "bias_hh"), &[h3], init)?),
                )
            } else {
                (None, None)
            };
            Ok(Self {
                weight_ih,
                weight_hh,
                bias_ih,
                bias_hh,
                input_size,
                hidden_size,
            })
        })
    }

    /// Input features.
    pub fn input_size(&self) -> usize {
        self.input_size
    }

    /// Hidden state size `H`.
    pub fn hidden_size(&self) -> usize {
        self.hidden_size
    }

    /// One step: `x` `[b, in]`, `h` `[b, H]` → `h'` `[b, H]`.
    pub fn forward<'t, T: Float>(
        &self,
        theta: Var<'t, T>,
        x: Var<'t, T>,
        h: Var<'t, T>,
    ) -> Var<'t, T> {
        let (sx, sh) = (x.shape(), h.shape());
        let hs = self.hidden_size;
        if sx.rank() != 2
            || sh.rank() != 2
            || sx.dim(1) != self.input_size
            || sh.dim(1) != hs
            || sx.dim(0) != sh.dim(0)
        {
            return fail(
                x,
                Error::ShapeMismatch {
                    op: "GruCell (x [b, in], h [b, hidden])",
                    lhs: sx,
                    rhs: sh,
                },
            );
        }
        let mut gi = x.matmul_t(self.weight_ih.var(theta), false, true);
        let mut gh = h.matmul_t(self.weight_hh.var(theta), false, true);
        if let (Some(bi), Some(bh)) = (self.bias_ih, self.bias_hh) {
            gi = gi + bi.var(theta);
            gh = gh + bh.var(theta);
        }
        let (gi_rz, gi_n) = gi.split_at(1, 2 * hs);
        let (gh_rz, gh_n) = gh.split_at(1, 2 * hs);
        let rz = (gi_rz + gh_rz).sigmoid();
        let (r, z) = rz.split_at(1, hs);
        let n = (gi_n + r * gh_n).tanh();
        // h' = n + z ⊙ (h − n)
        n + z * (h - n)
    }
}

/// FFJORD's time-conditioned layer (Grathwohl et al., 2019), `ConcatSquashLinear`:
/// `y = (x Wᵀ + b) ⊙ σ(t w_g + b_g) + t w_b`, the time gating and shifting every output
/// unit. Names as in the FFJORD code: `"{name}._layer.weight"` `[out, in]`,
/// `"{name}._layer.bias"` `[out]`, `"{name}._hyper_gate.weight"` `[out, 1]`,
/// `"{name}._hyper_gate.bias"` `[out]`, `"{name}._hyper_bias.weight"` `[out, 1]`;
/// PyTorch's default initialisation for each.
#[derive(Clone, Debug, PartialEq)]
pub struct ConcatSquashLinear {
    layer: Linear,
    hyper_gate: Linear,
    hyper_bias: Linear,
}

impl ConcatSquashLinear {
    /// Registers the three linear maps in `store`.
    pub fn new<T: Float>(
        store: &mut ParamStore<T>,
        name: &str,
        in_features: usize,
        out_features: usize,
    ) -> Result<Self, Error> {
        store.transaction(|store| {
            Ok(Self {
                layer: Linear::new(
                    store,
                    &join(name, "_layer"),
                    in_features,
                    out_features,
                    true,
                )?,
                hyper_gate: Linear::new(store, &join(name, "_hyper_gate"), 1, out_features, true)?,
                hyper_bias: Linear::new(store, &join(name, "_hyper_bias"), 1, out_features, false)?,
            })
        })
    }

    /// Number of input features.
    pub fn in_features(&self) -> usize {
        self.layer.in_features()
    }

    /// Number of output features.
    pub fn out_features(&self) -> usize {
        self.layer.out_features()
    }

    /// `x` `[b, in]` at the scalar time `t` (`[]` or `[1]`) → `[b, out]`.
    pub fn forward<'t, T: Float>(
        &self,
        theta: Var<'t, T>,
        x: Var<'t, T>,
        t: Var<'t, T>,
    ) -> Var<'t, T> {
        if t.len() != 1 {
            return fail(
                x,
                Error::InvalidArgument {
                    op: "ConcatSquashLinear",
                    shape: t.shape(),
                    reason: "t must be a scalar ([] or [1])",
                },
            );
        }
        let t11 = t.reshape(&[1, 1]);
        let gate = self.hyper_gate.forward(theta, t11).sigmoid();
        let shift = self.hyper_bias.forward(theta, t11);
        self.layer.forward(theta, x) * gate + shift
    }
}
