//! Concat-squash layers with a time input, and the MLP of FFJORD's toy models built from
//! them.
//!
//! FFJORD's `ConcatSquashLinear(d_in, d_out)` maps `(t, x)` to
//!
//! ```text
//! y = (x W + b) ⊙ σ(t g_w + g_b) + t h,
//! ```
//!
//! `W ∈ ℝ^{d_in×d_out}`, `b, g_w, g_b, h ∈ ℝ^{d_out}`: the time gates every output unit
//! and adds a time-proportional bias. [`ConcatSquashNet`] stacks such layers with an
//! activation between them (none after the last), as FFJORD's `ODEnet` with
//! `layer_type="concatsquash"`; `2 → 64 → 64 → 64 → 2` with tanh is `train_toy.py`'s
//! default.

use autodiff::nn::{Init, ParamStore, ParamView};
use autodiff::{Float, Var};

use crate::ModelsError;

/// The activation between layers of a [`ConcatSquashNet`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Activation {
    /// `tanh` (FFJORD `train_toy.py`'s default).
    #[default]
    Tanh,
    /// `softplus(x) = log(1 + eˣ)`.
    Softplus,
}

impl Activation {
    fn apply<'t, T: Float>(self, x: Var<'t, T>) -> Var<'t, T> {
        match self {
            Activation::Tanh => x.tanh(),
            Activation::Softplus => x.softplus(),
        }
    }
}

/// One concat-squash layer: where its five tensors live in the flat parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConcatSquashLinear {
    /// `W`, shape `[d_in, d_out]`.
    pub weight: ParamView,
    /// `b`, shape `[d_out]`.
    pub bias: ParamView,
    /// `g_w`, shape `[d_out]` (the time gate's weight).
    pub gate_weight: ParamView,
    /// `g_b`, shape `[d_out]` (the time gate's bias).
    pub gate_bias: ParamView,
    /// `h`, shape `[d_out]` (the time bias, no constant term).
    pub hyper_bias: ParamView,
}

impl ConcatSquashLinear {
    /// Registers the layer's tensors as `{prefix}.weight` … in `store`, initialised as
    /// PyTorch's `nn.Linear` (uniform on `±1/√fan_in`; the two time maps have
    /// `fan_in = 1`).
    pub fn register<T: Float>(
        store: &mut ParamStore<T>,
        prefix: &str,
        d_in: usize,
        d_out: usize,
    ) -> Result<Self, ModelsError> {
        let k = 1.0 / (d_in as f64).sqrt();
        let u = |k: f64| Init::Uniform { low: -k, high: k };
        Ok(Self {
            weight: store.register(&format!("{prefix}.weight"), &[d_in, d_out], u(k))?,
            bias: store.register(&format!("{prefix}.bias"), &[d_out], u(k))?,
            gate_weight: store.register(&format!("{prefix}.gate_weight"), &[d_out], u(1.0))?,
            gate_bias: store.register(&format!("{prefix}.gate_bias"), &[d_out], u(1.0))?,
            hyper_bias: store.register(&format!("{prefix}.hyper_bias"), &[d_out], u(1.0))?,
        })
    }

    /// `(x W + b) ⊙ σ(t g_w + g_b) + t h` for `x` of shape `[batch, d_in]`, `t` of shape
    /// `[1]`, parameters read from `theta` (shifted by `offset`: the layer's views are
    /// relative to the store, `theta` may be a slice of it starting at `offset`).
    pub fn forward<'t, T: Float>(
        &self,
        theta: Var<'t, T>,
        offset: usize,
        t: Var<'t, T>,
        x: Var<'t, T>,
    ) -> Var<'t, T> {
        let v = |p: &ParamView| theta.view(p.offset() - offset, p.shape().dims());
        let gate = (t * v(&self.gate_weight) + v(&self.gate_bias)).sigmoid();
        // (x W + b) ⊙ s + t h = x (W ⊙ s) + (b ⊙ s + t h): the gate scales W's columns
        // and the bias (vectors and a d_in × d_out matrix) instead of the [batch, d_out]
        // activations, so the batch-sized work is one product and one bias add, in
        // the forward pass and in every recorded VJP the trace takes through it.
        let w = v(&self.weight) * gate;
        let c = v(&self.bias) * gate + t * v(&self.hyper_bias);
        x.matmul(w) + c
    }
}

/// An MLP of [`ConcatSquashLinear`] layers, `dim → hidden… → dim`, with an
/// [`Activation`] after every layer but the last: the field `f(t, z)` of a CNF block.
#[derive(Debug, Clone, PartialEq)]
pub struct ConcatSquashNet {
    layers: Vec<ConcatSquashLinear>,
    activation: Activation,
    offset: usize,
    n_params: usize,
}

impl ConcatSquashNet {
    /// Registers the layers `{prefix}.layers.{i}.*` for `dim → hidden[0] → … → dim` at
    /// the end of `store` (contiguously). Errors if `dim` or a hidden width is 0.
    pub fn register<T: Float>(
        store: &mut ParamStore<T>,
        prefix: &str,
        dim: usize,
        hidden: &[usize],
        activation: Activation,
    ) -> Result<Self, ModelsError> {
        if dim == 0 || hidden.contains(&0) {
            return Err(ModelsError::InvalidArgument {
                name: "CNF network widths",
                reason: format!("every width must be at least 1, got dim {dim}, hidden {hidden:?}"),
            });
        }
        let offset = store.n_params();
        let mut widths = Vec::with_capacity(hidden.len() + 2);
        widths.push(dim);
        widths.extend_from_slice(hidden);
        widths.push(dim);
        let layers = widths
            .windows(2)
            .enumerate()
            .map(|(i, w)| {
                ConcatSquashLinear::register(store, &format!("{prefix}.layers.{i}"), w[0], w[1])
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            layers,
            activation,
            offset,
            n_params: store.n_params() - offset,
        })
    }

    /// Offset of the network's first parameter in the store.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Number of parameters (contiguous from [`offset`](Self::offset)).
    pub fn n_params(&self) -> usize {
        self.n_params
    }

    /// The layers.
    pub fn layers(&self) -> &[ConcatSquashLinear] {
        &self.layers
    }

    /// `f(t, z)` for `z` of shape `[batch, dim]`, `t` of shape `[1]`; `theta` holds the
    /// network's parameters from its first (`theta[0]` is the store's entry
    /// [`offset`](Self::offset)).
    pub fn forward<'t, T: Float>(
        &self,
        theta: Var<'t, T>,
        t: Var<'t, T>,
        z: Var<'t, T>,
    ) -> Var<'t, T> {
        let last = self.layers.len() - 1;
        let mut h = z;
        for (i, layer) in self.layers.iter().enumerate() {
            h = layer.forward(theta, self.offset, t, h);
            if i < last {
                h = self.activation.apply(h);
            }
        }
        h
    }
}
