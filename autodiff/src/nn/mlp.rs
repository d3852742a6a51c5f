//! Multi-layer perceptrons, optionally taking the time `t` as an extra input.

use super::layers::{Activation, Linear, Module, fail};
use super::params::{Init, ParamStore, join};
use crate::{Error, Float, Shape, Var};

/// Builder of an [`Mlp`]: `Mlp::builder(in, out).hidden(&[64, 64]).build(&mut store, "f")`.
#[derive(Clone, Debug, PartialEq)]
pub struct MlpBuilder {
    in_features: usize,
    out_features: usize,
    hidden: Vec<usize>,
    activation: Activation,
    output_activation: Activation,
    time_input: bool,
    bias: bool,
    weight_init: Option<Init>,
    bias_init: Option<Init>,
}

impl MlpBuilder {
    /// Hidden layer widths (none by default: a single affine map).
    pub fn hidden(mut self, widths: &[usize]) -> Self {
        self.hidden = widths.to_vec();
        self
    }

    /// Activation after every hidden layer (default [`Activation::Tanh`]).
    pub fn activation(mut self, a: Activation) -> Self {
        self.activation = a;
        self
    }

    /// Activation after the last layer (default [`Activation::Identity`]).
    pub fn output_activation(mut self, a: Activation) -> Self {
        self.output_activation = a;
        self
    }

    /// If true, the time `t` is concatenated to the input as one more (last) column, so
    /// the first layer has `in + 1` inputs and the network is called with
    /// [`Mlp::forward_t`]: `f(z, t) = MLP([z, t])`, as in torchdiffeq's examples.
    pub fn time_input(mut self, on: bool) -> Self {
        self.time_input = on;
        self
    }

    /// Initialisation of every weight matrix instead of PyTorch's default
    /// `U(±1/√fan_in)` (e.g. `Init::Normal { mean: 0.0, std: 0.1 }` as in torchdiffeq's
    /// examples).
    pub fn weight_init(mut self, init: Init) -> Self {
        self.weight_init = Some(init);
        self
    }

    /// Initialisation of every bias instead of PyTorch's default (e.g. `Init::Zeros`).
    pub fn bias_init(mut self, init: Init) -> Self {
        self.bias_init = Some(init);
        self
    }

    /// Biases in every layer (default true).
    pub fn bias(mut self, on: bool) -> Self {
        self.bias = on;
        self
    }

    /// Registers the layers in `store` under `"{name}.{2i}.weight"` / `".bias"` — the
    /// names of PyTorch's `nn.Sequential(Linear, act, Linear, act, …, Linear)`, so a
    /// checkpoint loads into that module with `load_state_dict`.
    pub fn build<T: Float>(&self, store: &mut ParamStore<T>, name: &str) -> Result<Mlp, Error> {
        let mut layers = Vec::with_capacity(self.hidden.len() + 1);
        let mut fan_in = self.in_features + usize::from(self.time_input);
        if self.in_features == 0 {
            return Err(Error::InvalidArgument {
                op: "MlpBuilder::build",
                shape: Shape::new(&[self.in_features, self.out_features])?,
                reason: "in_features must be > 0",
            });
        }
        store.transaction(|store| {
            for (i, &w) in self.hidden.iter().chain([&self.out_features]).enumerate() {
                let lname = join(name, &(2 * i).to_string());
                let default = Init::KaimingUniform { fan_in };
                let wi = self.weight_init.unwrap_or(default);
                let bi = self.bias.then(|| self.bias_init.unwrap_or(default));
                layers.push(Linear::with_init(store, &lname, fan_in, w, wi, bi)?);
                fan_in = w;
            }
            Ok(())
        })?;
        Ok(Mlp {
            layers,
            activation: self.activation,
            output_activation: self.output_activation,
            time_input: self.time_input,
            in_features: self.in_features,
            out_features: self.out_features,
        })
    }
}

/// A multi-layer perceptron `x → L_k(σ(… σ(L_1 x)))`, optionally with the time as an
/// input column (see [`MlpBuilder::time_input`]). Every layer is a [`Linear`] in
/// PyTorch's layout.
///
/// Forward passes are allocation-free on a warm tape (the layers live in a `Vec` built
/// once).
#[derive(Clone, Debug, PartialEq)]
pub struct Mlp {
    layers: Vec<Linear>,
    activation: Activation,
    output_activation: Activation,
    time_input: bool,
    in_features: usize,
    out_features: usize,
}

impl Mlp {
    /// A builder for an MLP from `in_features` to `out_features` (the input width does
    /// not count the time column).
    pub fn builder(in_features: usize, out_features: usize) -> MlpBuilder {
        MlpBuilder {
            in_features,
            out_features,
            hidden: Vec::new(),
            activation: Activation::Tanh,
            output_activation: Activation::Identity,
            time_input: false,
            bias: true,
            weight_init: None,
            bias_init: None,
        }
    }

    /// The layers, first to last.
    pub fn layers(&self) -> &[Linear] {
        &self.layers
    }

    /// Input width (without the time column).
    pub fn in_features(&self) -> usize {
        self.in_features
    }

    /// Output width.
    pub fn out_features(&self) -> usize {
        self.out_features
    }

    /// Whether the network takes the time as an input ([`forward_t`](Self::forward_t)).
    pub fn has_time_input(&self) -> bool {
        self.time_input
    }

    fn run<'t, T: Float>(&self, theta: Var<'t, T>, mut h: Var<'t, T>) -> Var<'t, T> {
        let last = self.layers.len() - 1;
        for (i, l) in self.layers.iter().enumerate() {
            h = l.forward(theta, h);
            h = if i < last {
                self.activation.apply(h)
            } else {
                self.output_activation.apply(h)
            };
        }
        h
    }

    /// `f(x, t)` for a network built with `time_input(true)`: `x` is `[b, in]` and `t`
    /// is a scalar (`[]` or `[1]`, the same time for every row) or one time per row
    /// (`[b]` or `[b, 1]`). The time column is appended after `x`'s columns.
    pub fn forward_t<'t, T: Float>(
        &self,
        theta: Var<'t, T>,
        x: Var<'t, T>,
        t: Var<'t, T>,
    ) -> Var<'t, T> {
        if !self.time_input {
            return fail(
                x,
                Error::InvalidArgument {
                    op: "Mlp::forward_t",
                    shape: t.shape(),
                    reason: "this MLP was built without time_input(true): call forward",
                },
            );
        }
        let s = x.shape();
        if s.rank() != 2 || s.dim(1) != self.in_features {
            return fail(
                x,
                Error::InvalidArgument {
                    op: "Mlp::forward_t",
                    shape: s,
                    reason: "x must be [batch, in_features]",
                },
            );
        }
        let b = s.dim(0);
        let tcol = if t.len() == 1 {
            t.reshape(&[1, 1]).expand(&[b, 1])
        } else if t.len() == b {
            t.reshape(&[b, 1])
        } else {
            return fail(
                x,
                Error::ShapeMismatch {
                    op: "Mlp::forward_t (t must have 1 or batch elements)",
                    lhs: s,
                    rhs: t.shape(),
                },
            );
        };
        let xt = x.tape().concat(&[x, tcol], 1);
        self.run(theta, xt)
    }
}

impl Mlp {
    /// `f(x)` for `x` of shape `[..., in]`; a network built with `time_input(true)`
    /// must be called with [`Mlp::forward_t`] instead (the tape records an error).
    pub fn forward<'t, T: Float>(&self, theta: Var<'t, T>, x: Var<'t, T>) -> Var<'t, T> {
        if self.time_input {
            return fail(
                x,
                Error::InvalidArgument {
                    op: "Mlp::forward",
                    shape: x.shape(),
                    reason: "this MLP takes the time as an input: call forward_t",
                },
            );
        }
        self.run(theta, x)
    }
}

impl Module for Mlp {
    fn forward<'t, T: Float>(&self, theta: Var<'t, T>, x: Var<'t, T>) -> Var<'t, T> {
        Mlp::forward(self, theta, x)
    }
}
