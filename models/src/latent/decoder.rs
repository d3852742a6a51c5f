//! The generative side: latent dynamics `dz/dt = f_θ(z)` and the decoder `p(x | z(t))`.
//!
//! The latent field is torchdiffeq's `LatentODEfunc` (`L → units → units → L`, ELU); the
//! decoder maps each latent state to the mean of a Gaussian with a fixed standard
//! deviation (`L → units → d`, ReLU), as in `examples/latent_ode.py`.

use std::any::{Any, TypeId};
use std::sync::{Arc, OnceLock};

use autodiff::nn::{Activation, Mlp, ParamStore};
use autodiff::{CustomOp, Error as AdError, Float, Shape, Var};

use crate::ModelsError;

/// The latent field `L → units → units → L` with ELU (`α = 1`) between the layers, its
/// parameters registered under `"{name}"` as an [`Mlp`]'s.
///
/// The ELU is one custom tape operation ([`elu`]): the tape's own ELU calls the scalar
/// `expm1` per element (a fifth of a training iteration's instructions on torchdiffeq's
/// set-up), and composing it from `relu`, `neg` and `exp` costs seven passes each way,
/// whose ReLU VJP runs as a scalar loop with a data-dependent branch (38 % of a
/// checkpointed-adjoint iteration's time).
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

/// `ELU(x) = x` for `x > 0`, `eˣ − 1` otherwise (`α = 1`), as one tape operation: the
/// forward pass is the tape's vectorised `exp` over the slice and a select, the VJP
/// `g · (x > 0 ? 1 : y + 1)` one branch-free pass (see [`EluOp`]).
pub fn elu<'t, T: Float>(x: Var<'t, T>) -> Var<'t, T> {
    match elu_op::<T>() {
        Some(op) => x.tape().custom(op, &[x]),
        // Unreachable (`Float` is `f32` or `f64`): the same function from tape ops.
        None => elu_composed(x),
    }
}

/// ELU from tape operations, `relu(x) + exp(−relu(−x)) − 1`.
fn elu_composed<'t, T: Float>(x: Var<'t, T>) -> Var<'t, T> {
    x.relu() + x.neg().relu().neg().exp().add_scalar(-T::one())
}

/// The ELU (`α = 1`) as a [`CustomOp`]: `y = x` where `x > 0`, else `eˣ − 1`;
/// `∂y/∂x = 1` where `x > 0`, else `eˣ = y + 1`.
#[derive(Clone, Copy, Debug, Default)]
pub struct EluOp;

impl<T: Float> CustomOp<T> for EluOp {
    fn name(&self) -> &'static str {
        "elu"
    }

    fn output_shape(&self, inputs: &[Shape]) -> Result<Shape, AdError> {
        match inputs {
            [x] => Ok(*x),
            _ => Err(AdError::InvalidArgument {
                op: "elu",
                shape: Shape::scalar(),
                reason: "takes one input",
            }),
        }
    }

    fn overwrites_output(&self) -> bool {
        true
    }

    fn forward(&self, inputs: &[&[T]], out: &mut [T]) {
        let x = inputs[0];
        T::exp_slice(x, out);
        let (zero, one) = (T::zero(), T::one());
        for (y, &x) in out.iter_mut().zip(x) {
            // eˣ overflows to ∞ only where x > 0, where x is selected.
            *y = if x > zero { x } else { *y - one };
        }
    }

    fn backward(
        &self,
        _k: usize,
        inputs: &[&[T]],
        out: &[T],
        grad_out: &[T],
        grad_input: &mut [T],
    ) -> Result<(), AdError> {
        let (zero, one) = (T::zero(), T::one());
        let it = grad_input
            .iter_mut()
            .zip(grad_out)
            .zip(inputs[0].iter().zip(out));
        for ((d, &g), (&x, &y)) in it {
            let dy = if x > zero { one } else { y + one };
            *d += g * dy;
        }
        Ok(())
    }

    /// `g · exp(−relu(−x))` (`= g` where `x > 0`, `g eˣ` elsewhere) in tape operations.
    fn backward_graph<'t>(
        &self,
        _k: usize,
        inputs: &[Var<'t, T>],
        _out: Var<'t, T>,
        grad_out: Var<'t, T>,
    ) -> Result<Var<'t, T>, AdError> {
        Ok(grad_out * inputs[0].neg().relu().neg().exp())
    }
}

/// The [`EluOp`] for `T`, made once per float type (applying it clones the `Arc`).
fn elu_op<T: Float>() -> Option<&'static Arc<dyn CustomOp<T>>> {
    static F32: OnceLock<Arc<dyn CustomOp<f32>>> = OnceLock::new();
    static F64: OnceLock<Arc<dyn CustomOp<f64>>> = OnceLock::new();
    let op: &dyn Any = if TypeId::of::<T>() == TypeId::of::<f32>() {
        F32.get_or_init(|| Arc::new(EluOp))
    } else if TypeId::of::<T>() == TypeId::of::<f64>() {
        F64.get_or_init(|| Arc::new(EluOp))
    } else {
        return None;
    };
    op.downcast_ref()
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

#[cfg(test)]
mod tests {
    use super::*;
    use autodiff::Tape;

    #[test]
    fn elu_op_second_derivative_is_exp_below_zero() {
        let xs = [-2.0f64, -0.3, 0.4, 1.7];
        let tape = Tape::<f64>::new();
        tape.set_recording(true);
        let x = tape.leaf(&xs, &[4]).unwrap();
        let y = elu(x);
        let want: Vec<f64> = xs
            .iter()
            .map(|&x| if x > 0.0 { x } else { x.exp_m1() })
            .collect();
        for (a, b) in y.value().unwrap().iter().zip(&want) {
            assert!((a - b).abs() < 1e-15, "{a} vs {b}");
        }
        tape.backward_graph(y.sum(), tape.scalar(1.0)).unwrap();
        let g = tape.gradient(x).unwrap();
        let gv = g.value().unwrap();
        tape.backward(g.sum(), &[1.0]).unwrap();
        let h = x.grad().unwrap();
        for (i, &x) in xs.iter().enumerate() {
            let (d1, d2) = if x > 0.0 {
                (1.0, 0.0)
            } else {
                (x.exp(), x.exp())
            };
            assert!((gv[i] - d1).abs() < 1e-15, "first derivative at {x}");
            assert!((h[i] - d2).abs() < 1e-15, "second derivative at {x}");
        }
    }
}
