//! The generative side: latent dynamics `dz/dt = f_θ(z)` and the decoder `p(x | z(t))`.
//!
//! The latent field is torchdiffeq's `LatentODEfunc` (`L → units → units → L`, ELU); the
//! decoder maps each latent state to the mean of a Gaussian with a fixed standard
//! deviation (`L → units → d`, ReLU), as in `examples/latent_ode.py`.

use autodiff::nn::{Activation, Mlp, ParamStore};
use autodiff::{Float, Var};

use crate::ModelsError;

/// The latent field `L → units → units → L` (ELU), built under `"{name}"`.
pub fn latent_field<T: Float>(
    store: &mut ParamStore<T>,
    name: &str,
    latent: usize,
    units: usize,
) -> Result<Mlp, autodiff::Error> {
    Mlp::builder(latent, latent)
        .hidden(&[units, units])
        .activation(Activation::Elu(1.0))
        .build(store, name)
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
