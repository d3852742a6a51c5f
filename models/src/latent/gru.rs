//! The masked recurrent updates of the encoders.
//!
//! At an observation time only the series that have a value there are updated:
//! `h ← h + m ⊙ (cell(x, h) − h)` with `m_b = 1` if series `b` has any observed component
//! (else 0). The cell's input is `[x ⊙ mask, mask]` (Rubanova et al. 2019: the mask tells
//! the cell which zeros are missing values), optionally with the time gap appended.

use std::sync::Arc;

use autodiff::nn::{GruCell, Linear};
use autodiff::{CustomOp, Error as AdError, Float, Shape, Tape, Var};

use crate::ModelsError;

/// A row's cell input `[B, w]`, its update mask `[B, 1]` (`None`: every series observed)
/// and whether any series is observed.
pub type RowInput<'t, T> = (Var<'t, T>, Option<Var<'t, T>>, bool);

/// The cell's input at row `i` of a batch `[N, B, d]`: `[x ⊙ mask, mask]` (`[B, 2d]`, or
/// `[B, 2d + 1]` with each series' `gap[b]` appended), the update mask `m` `[B, 1]`
/// (`None` when every series is observed in the row: the update is then the plain cell,
/// three elementwise operations fewer per row) and whether any series is observed in the
/// row. `buf` and `m` are reused buffers (`m` holds the mask in both cases).
pub fn row_input<'t, T: Float>(
    tape: &'t Tape<T>,
    values: &[T],
    mask: &[T],
    i: usize,
    batch: usize,
    dim: usize,
    gap: Option<&[T]>,
    buf: &mut Vec<T>,
    m: &mut Vec<T>,
) -> Result<RowInput<'t, T>, ModelsError> {
    let w = 2 * dim + usize::from(gap.is_some());
    buf.clear();
    m.clear();
    let (mut any, mut all) = (false, true);
    for b in 0..batch {
        let r = (i * batch + b) * dim..(i * batch + b + 1) * dim;
        buf.extend(
            values[r.clone()]
                .iter()
                .zip(&mask[r.clone()])
                .map(|(&v, &k)| v * k),
        );
        buf.extend_from_slice(&mask[r.clone()]);
        if let Some(g) = gap {
            buf.push(g[b]);
        }
        let seen = mask[r].iter().any(|&k| k != T::zero());
        any |= seen;
        all &= seen;
        m.push(if seen { T::one() } else { T::zero() });
    }
    let x = tape.constant(buf, &[batch, w])?;
    let m = if all {
        None
    } else {
        Some(tape.constant(m, &[batch, 1])?)
    };
    Ok((x, m, any))
}

/// `h + m ⊙ (GRU(x, h) − h)` (`GRU(x, h)` without a mask).
pub fn masked_gru<'t, T: Float>(
    cell: &GruCell,
    theta: Var<'t, T>,
    x: Var<'t, T>,
    m: Option<Var<'t, T>>,
    h: Var<'t, T>,
) -> Var<'t, T> {
    let new = cell.forward(theta, x, h);
    match m {
        Some(m) => h + m * (new - h),
        None => new,
    }
}

/// torchdiffeq's `RecognitionRNN` cell, `tanh(W [x, h] + b)`, masked: `h + m ⊙ (… − h)`
/// (the cell alone without a mask).
pub fn masked_rnn<'t, T: Float>(
    tape: &'t Tape<T>,
    cell: &Linear,
    theta: Var<'t, T>,
    x: Var<'t, T>,
    m: Option<Var<'t, T>>,
    h: Var<'t, T>,
) -> Var<'t, T> {
    let xh = tape.concat(&[x, h], 1);
    let new = cell.forward(theta, xh).tanh();
    match m {
        Some(m) => h + m * (new - h),
        None => new,
    }
}

/// The identity, whose VJP sets gradient entries below [`tiny`] in magnitude to zero
/// (see [`flush_tiny_grads`]).
struct FlushTinyGrads;

/// `min_positive / ε` (≈ 1e-31 in `f32`, 1e-292 in `f64`): the flush threshold, `2^(m+1)`
/// above the subnormal range (`m` mantissa bits), so that the next steps' products by
/// weights and `tanh'` factors down to `ε` stay normal numbers.
pub fn tiny<T: Float>() -> T {
    T::min_positive_value() / T::epsilon()
}

impl<T: Float> CustomOp<T> for FlushTinyGrads {
    fn name(&self) -> &'static str {
        "flush_tiny_grads"
    }

    fn output_shape(&self, inputs: &[Shape]) -> Result<Shape, AdError> {
        match inputs {
            [x] => Ok(*x),
            _ => Err(AdError::InvalidArgument {
                op: "flush_tiny_grads",
                shape: Shape::scalar(),
                reason: "takes one input",
            }),
        }
    }

    fn overwrites_output(&self) -> bool {
        true
    }

    fn forward(&self, inputs: &[&[T]], out: &mut [T]) {
        out.copy_from_slice(inputs[0]);
    }

    fn backward(
        &self,
        _k: usize,
        _inputs: &[&[T]],
        _out: &[T],
        grad_out: &[T],
        grad_input: &mut [T],
    ) -> Result<(), AdError> {
        let t = tiny::<T>();
        for (d, &g) in grad_input.iter_mut().zip(grad_out) {
            // Branch-free select (vectorises).
            *d += if g.abs() < t { T::zero() } else { g };
        }
        Ok(())
    }

    /// Second-order passes differentiate the identity (no flush).
    fn backward_graph<'t>(
        &self,
        _k: usize,
        _inputs: &[Var<'t, T>],
        _out: Var<'t, T>,
        grad_out: Var<'t, T>,
    ) -> Result<Var<'t, T>, AdError> {
        Ok(grad_out)
    }
}

/// The op of [`flush_tiny_grads`] (make it once; applying it clones the `Arc`).
pub fn flush_op<T: Float>() -> Arc<dyn CustomOp<T>> {
    Arc::new(FlushTinyGrads)
}

/// `h` unchanged, whose gradient in the reverse pass has its entries below
/// [`tiny`]`()` (`≈ 1e-31` in `f32`) in magnitude set to zero (`op` from [`flush_op`]):
/// applied to a recurrent state after every update, it keeps the gradient that vanishes
/// backwards through the steps (×0.4–0.5 per step on torchdiffeq's spirals) from
/// reaching the subnormal range, where products and elementwise operations take
/// microcode assists (faer's AVX-512 products ran ~300× slower on subnormal operands):
/// that was half of a training iteration of torchdiffeq's set-up. What is dropped lies 30
/// orders of magnitude below the gradient the loss feeds in; hardware flush-to-zero
/// (TensorFlow's and XLA's default on CPUs) drops the values below `min_positive`.
pub fn flush_tiny_grads<'t, T: Float>(op: &Arc<dyn CustomOp<T>>, h: Var<'t, T>) -> Var<'t, T> {
    h.tape().custom(op, &[h])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flush_keeps_values_and_zeroes_only_tiny_gradients() {
        let tape = Tape::<f32>::new();
        tape.set_recording(true);
        let xs = [0.5f32, -2.0, 3.0, 1e-3, -7.0];
        let x = tape.leaf(&xs, &[5]).unwrap();
        let h = flush_tiny_grads(&flush_op(), x);
        assert_eq!(h.value().unwrap(), xs.to_vec());
        // Weights straddling the threshold ≈ 9.9e-32 (f32), and a subnormal one.
        let w = [1.0f32, 1e-30, -1e-33, 2e-40, -0.25];
        let l = (h * tape.constant(&w, &[5]).unwrap()).sum();
        tape.backward(l, &[1.0]).unwrap();
        let g = x.grad().unwrap();
        assert!(tiny::<f32>() > 9e-32 && tiny::<f32>() < 1e-31);
        assert_eq!(g, vec![1.0, 1e-30, 0.0, 0.0, -0.25]);
    }

    #[test]
    fn flush_passes_second_order_gradients_through() {
        let tape = Tape::<f64>::new();
        tape.set_recording(true);
        let x = tape.leaf(&[1.5, -0.5], &[2]).unwrap();
        let l = flush_tiny_grads(&flush_op(), x).square().sum();
        tape.backward_graph(l, tape.scalar(1.0)).unwrap();
        let g = tape.gradient(x).unwrap();
        assert_eq!(g.value().unwrap(), vec![3.0, -1.0]);
    }
}
