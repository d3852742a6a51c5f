//! The generative side: latent dynamics `dz/dt = f_θ(z)` and the decoder `p(x | z(t))`.
//!
//! The latent field is torchdiffeq's `LatentODEfunc` (`L → units → units → L`, ELU); the
//! decoder maps each latent state to the mean of a Gaussian with a fixed standard
//! deviation (`L → units → d`, ReLU), as in `examples/latent_ode.py`.

use autodiff::nn::{Activation, Mlp, ParamStore};
use autodiff::{Float, Var};

use crate::ModelsError;

/// The latent field `L → units → units → L` with ELU (`α = 1`) between the layers, its
/// parameters registered under `"{name}"` as an [`Mlp`]'s.
///
/// The ELU is evaluated as `relu(x) + exp(−relu(−x)) − 1` from slice-vectorised tape
/// operations: the tape's own ELU calls the scalar `expm1` per element, which was a fifth
/// of a training iteration's instructions on torchdiffeq's set-up (callgrind).
#[derive(Clone, Debug)]
pub struct LatentField {
    net: Mlp,
}

impl LatentField {
    /// Registers the field's parameters in `store` under `"{name}"`.
    pub fn new<T: Float>(
        store: &mut ParamStore<T>,
        name: &str,
        latent: usize,
        units: usize,
    ) -> Result<Self, autodiff::Error> {
        let net = Mlp::builder(latent, latent)
            .hidden(&[units, units])
            .activation(Activation::Elu(1.0))
            .build(store, name)?;
        Ok(Self { net })
    }

    /// `f(z)` for `z` `[rows, L]`.
    pub fn forward<'t, T: Float>(&self, theta: Var<'t, T>, z: Var<'t, T>) -> Var<'t, T> {
        let layers = self.net.layers();
        let mut h = z;
        for (i, layer) in layers.iter().enumerate() {
            h = layer.forward(theta, h);
            if i + 1 < layers.len() {
                h = elu(h);
            }
        }
        h
    }
}

/// `ELU(x) = x` for `x > 0`, `eˣ − 1` otherwise, as `relu(x) + exp(−relu(−x)) − 1`.
pub fn elu<'t, T: Float>(x: Var<'t, T>) -> Var<'t, T> {
    x.relu() + x.neg().relu().neg().exp().add_scalar(-T::one())
}

/// The decoder `z ↦ mean of x`, `L → units → d` (ReLU).
#[derive(Clone, Debug)]
pub struct Decoder {
    net: Mlp,
    latent: usize,
    dim: usize,
}

impl Decoder {
    /// Registers `"decoder.*"` in `store`.
    pub fn new<T: Float>(
        store: &mut ParamStore<T>,
        latent: usize,
        units: usize,
        dim: usize,
    ) -> Result<Self, ModelsError> {
        let net = Mlp::builder(latent, dim)
            .hidden(&[units])
            .activation(Activation::Relu)
            .build(store, "decoder")?;
        Ok(Self { net, latent, dim })
    }

    /// The means `[N, R, d]` of the latent states `zs` `[N, R, L]`.
    pub fn forward<'t, T: Float>(&self, theta: Var<'t, T>, zs: Var<'t, T>) -> Var<'t, T> {
        let s = zs.shape();
        let (n, r) = (s.dim(0), s.dim(1));
        self.net
            .forward(theta, zs.reshape(&[n * r, self.latent]))
            .reshape(&[n, r, self.dim])
    }
}
