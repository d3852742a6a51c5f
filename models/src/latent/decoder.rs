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

/// One shared instance of a stateless custom op per float type, made on first use (an
/// application clones the `Arc`; the field is evaluated dozens of times per iteration).
/// `None` only for a `Float` other than `f32`/`f64` (none exists: the trait is sealed).
fn shared_op<T: Float>(
    f32s: &'static OnceLock<Arc<dyn CustomOp<f32>>>,
    f64s: &'static OnceLock<Arc<dyn CustomOp<f64>>>,
    make32: fn() -> Arc<dyn CustomOp<f32>>,
    make64: fn() -> Arc<dyn CustomOp<f64>>,
) -> Option<&'static Arc<dyn CustomOp<T>>> {
    let op: &dyn Any = if TypeId::of::<T>() == TypeId::of::<f32>() {
        f32s.get_or_init(make32)
    } else if TypeId::of::<T>() == TypeId::of::<f64>() {
        f64s.get_or_init(make64)
    } else {
        return None;
    };
    op.downcast_ref()
}

/// The [`BiasReluOp`] for `T`.
fn bias_relu_op<T: Float>() -> Option<&'static Arc<dyn CustomOp<T>>> {
    static F32: OnceLock<Arc<dyn CustomOp<f32>>> = OnceLock::new();
    static F64: OnceLock<Arc<dyn CustomOp<f64>>> = OnceLock::new();
    shared_op(&F32, &F64, || Arc::new(BiasReluOp), || Arc::new(BiasReluOp))
}

/// The [`EluOp`] for `T`.
fn elu_op<T: Float>() -> Option<&'static Arc<dyn CustomOp<T>>> {
    static F32: OnceLock<Arc<dyn CustomOp<f32>>> = OnceLock::new();
    static F64: OnceLock<Arc<dyn CustomOp<f64>>> = OnceLock::new();
    shared_op(&F32, &F64, || Arc::new(EluOp), || Arc::new(EluOp))
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
    ///
    /// The hidden layer's bias and ReLU are one custom operation ([`BiasReluOp`]): the
    /// tape's ReLU VJP is a scalar loop with a data-dependent branch, slow on the decoder's
    /// `[N·R, units]` pre-activations (two million entries per iteration on torchdiffeq's
    /// set-up).
    pub fn forward<'t, T: Float>(&self, theta: Var<'t, T>, zs: Var<'t, T>) -> Var<'t, T> {
        let s = zs.shape();
        let (n, r) = (s.dim(0), s.dim(1));
        let x = zs.reshape(&[n * r, self.latent]);
        let layers = self.net.layers();
        let op = bias_relu_op::<T>();
        let y = match (layers, op) {
            ([hidden, out], Some(op)) if hidden.bias().is_some() => {
                let pre = x.matmul_t(hidden.weight().var(theta), false, true);
                let b = hidden.bias().map_or(pre, |b| b.var(theta));
                out.forward(theta, x.tape().custom(op, &[pre, b]))
            }
            _ => self.net.forward(theta, x),
        };
        y.reshape(&[n, r, self.dim])
    }
}

/// `y = max(x + b, 0)` for `x` `[rows, h]` and a bias `b` `[h]` added to every row, as a
/// [`CustomOp`]: one pass forward, one branch-free pass backward (`∂x = g·[y > 0]`, `∂b`
/// its sum over the rows).
#[derive(Clone, Copy, Debug, Default)]
pub struct BiasReluOp;

impl<T: Float> CustomOp<T> for BiasReluOp {
    fn name(&self) -> &'static str {
        "bias_relu"
    }

    fn output_shape(&self, inputs: &[Shape]) -> Result<Shape, AdError> {
        match inputs {
            [x, b] if x.rank() == 2 && b.len() == x.dim(1) => Ok(*x),
            _ => Err(AdError::InvalidArgument {
                op: "bias_relu",
                shape: inputs.first().copied().unwrap_or_default(),
                reason: "takes x [rows, h] and a bias of h entries",
            }),
        }
    }

    fn overwrites_output(&self) -> bool {
        true
    }

    fn forward(&self, inputs: &[&[T]], out: &mut [T]) {
        let (x, b) = (inputs[0], inputs[1]);
        let h = b.len().max(1);
        let zero = T::zero();
        for (yr, xr) in out.chunks_exact_mut(h).zip(x.chunks_exact(h)) {
            for ((y, &x), &b) in yr.iter_mut().zip(xr).zip(b) {
                let v = x + b;
                *y = if v > zero { v } else { zero };
            }
        }
    }

    fn backward_all(
        &self,
        inputs: &[&[T]],
        out: &[T],
        grad_out: &[T],
        grad_inputs: &mut [Option<&mut [T]>],
    ) -> Result<(), AdError> {
        let zero = T::zero();
        let h = inputs.get(1).map_or(0, |b| b.len());
        let [gx, gb] = grad_inputs else {
            return Ok(());
        };
        if h == 0 {
            return Ok(());
        }
        let rows = grad_out.chunks_exact(h).zip(out.chunks_exact(h));
        match (gx.as_deref_mut(), gb.as_deref_mut()) {
            (Some(gx), Some(gb)) => {
                for (dr, (gr, yr)) in gx.chunks_exact_mut(h).zip(rows) {
                    let it = dr.iter_mut().zip(gb.iter_mut()).zip(gr.iter().zip(yr));
                    for ((d, b), (&g, &y)) in it {
                        let v = if y > zero { g } else { zero };
                        *d += v;
                        *b += v;
                    }
                }
            }
            (Some(gx), None) => {
                for (dr, (gr, yr)) in gx.chunks_exact_mut(h).zip(rows) {
                    for (d, (&g, &y)) in dr.iter_mut().zip(gr.iter().zip(yr)) {
                        *d += if y > zero { g } else { zero };
                    }
                }
            }
            (None, Some(gb)) => {
                for (gr, yr) in rows {
                    for (b, (&g, &y)) in gb.iter_mut().zip(gr.iter().zip(yr)) {
                        *b += if y > zero { g } else { zero };
                    }
                }
            }
            (None, None) => {}
        }
        Ok(())
    }

    /// `g·[y > 0]` (and its sum over the rows for the bias) with the mask `[y > 0]` a
    /// constant (the ReLU's second derivative is zero); allocates the mask.
    fn backward_graph<'t>(
        &self,
        k: usize,
        _inputs: &[Var<'t, T>],
        out: Var<'t, T>,
        grad_out: Var<'t, T>,
    ) -> Result<Var<'t, T>, AdError> {
        let mask: Vec<T> = out
            .value()?
            .iter()
            .map(|&y| if y > T::zero() { T::one() } else { T::zero() })
            .collect();
        let gx = grad_out * out.tape().constant(&mask, out.shape().dims())?;
        Ok(if k == 0 { gx } else { gx.sum_axis(0) })
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

#[cfg(test)]
mod bias_relu_tests {
    use super::*;
    use autodiff::Tape;

    /// The op against `relu(x + b)` from tape ops: values, first and second-order
    /// gradients of `Σ w ⊙ y²` (so that the second derivative is not zero).
    #[test]
    fn bias_relu_matches_the_tape_ops() {
        let xs: Vec<f64> = (0..12).map(|i| 0.37 * i as f64 - 2.1).collect();
        let bs = [0.3, -0.2, 0.05];
        let w: Vec<f64> = (0..12).map(|i| 1.0 + 0.1 * i as f64).collect();
        let run = |custom: bool| {
            let tape = Tape::<f64>::new();
            tape.set_recording(true);
            let x = tape.leaf(&xs, &[4, 3]).unwrap();
            let b = tape.leaf(&bs, &[3]).unwrap();
            let y = if custom {
                tape.custom(bias_relu_op::<f64>().unwrap(), &[x, b])
            } else {
                (x + b).relu()
            };
            let l = (y.square() * tape.constant(&w, &[4, 3]).unwrap()).sum();
            let v = y.value().unwrap();
            tape.backward_graph(l, tape.scalar(1.0)).unwrap();
            let (gx, gb) = (tape.gradient(x).unwrap(), tape.gradient(b).unwrap());
            let first = (gx.value().unwrap(), gb.value().unwrap());
            tape.backward(gx.sum() + gb.sum(), &[1.0]).unwrap();
            (v, first, x.grad().unwrap(), b.grad().unwrap())
        };
        // The fast reverse pass (`Tape::backward`) too.
        let fast = |custom: bool| {
            let tape = Tape::<f64>::new();
            tape.set_recording(true);
            let x = tape.leaf(&xs, &[4, 3]).unwrap();
            let b = tape.leaf(&bs, &[3]).unwrap();
            let y = if custom {
                tape.custom(bias_relu_op::<f64>().unwrap(), &[x, b])
            } else {
                (x + b).relu()
            };
            let l = (y.square() * tape.constant(&w, &[4, 3]).unwrap()).sum();
            tape.backward(l, &[1.0]).unwrap();
            (x.grad().unwrap(), b.grad().unwrap())
        };
        assert_eq!(fast(true), fast(false));
        let (a, b) = (run(true), run(false));
        assert_eq!(a.0, b.0);
        assert_eq!(a.1, b.1);
        assert_eq!(a.2, b.2);
        assert_eq!(a.3, b.3);
    }
}
