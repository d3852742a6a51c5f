//! The masked recurrent updates of the encoders.
//!
//! At an observation time only the series that have a value there are updated:
//! `h ← h + m ⊙ (cell(x, h) − h)` with `m_b = 1` if series `b` has any observed component
//! (else 0). The cell's input is `[x ⊙ mask, mask]` (Rubanova et al. 2019: the mask tells
//! the cell which zeros are missing values), optionally with the time gap appended.

use autodiff::nn::{GruCell, Linear};
use autodiff::{Float, Tape, Var};

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
