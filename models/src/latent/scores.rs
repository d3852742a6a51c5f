//! Scores of trained series models beyond the held-out MSE of [`evaluate`](super::evaluate):
//!
//! * [`clean_mse`]: per component, the MSE of the model's posterior-mean prediction
//!   against the **clean** (noise-free) trajectory, on a grid, at the times and components
//!   the encoder does not see. On data whose noise is large this is what tells a better
//!   model of the state from a better fit of the noise; with a component observed only
//!   sparsely (`data::rate_spirals` with `hidden_keep < 1`) it measures how well the
//!   model recovers what the values do not show.
//! * [`times_log_likelihood`]: the log-likelihood of the scored events' times per series,
//!   under the model's Poisson intensity ([`poisson`]) and under the
//!   constant per-component rates fitted to the training set (the best a model without a
//!   model of the times implies).

use autodiff::Float;

use super::data::{IrregularBatch, IrregularDataset};
use super::model::LatentOde;
use super::poisson;
use super::train::SeriesModel;
use crate::ModelsError;

/// How the scored series are split into what the encoder sees and what is scored
/// (`IrregularBatch::holdout`, `IrregularBatch::extrapolation`, or any other rule).
pub type Split<'a, T> = &'a dyn Fn(&IrregularBatch<T>) -> IrregularBatch<T>;

/// Per component, the MSE of `model`'s prediction against the clean trajectories `clean`
/// (per test series, in the order of `test`: its grid and the `[grid, dim]` row-major
/// values on it) at the grid times `≥ t_from` where the encoder (after `split`) does not
/// see the component. Batches of `batch` series are put on the union of their times and
/// the series' grids; the encoder sees what `split` leaves visible and the targets carry
/// the clean values. `NaN` for a component with nothing to score.
///
/// # Errors
/// A clean trajectory whose values do not match its grid and the data's dimension, or
/// the model's own errors.
pub fn clean_mse<T: Float, M: SeriesModel<T> + ?Sized>(
    model: &mut M,
    test: &IrregularDataset<T>,
    clean: &[(Vec<T>, Vec<T>)],
    batch: usize,
    split: Split<'_, T>,
    t_from: T,
) -> Result<Vec<f64>, ModelsError> {
    let d = test.dim();
    if clean.len() < test.len() || clean.iter().any(|(g, v)| v.len() != g.len() * d) {
        return Err(ModelsError::InvalidArgument {
            name: "clean",
            reason: format!(
                "need one grid and [grid, {d}] values per test series ({} series, {} given)",
                test.len(),
                clean.len()
            ),
        });
    }
    let (mut sums, mut counts) = (vec![0.0; d], vec![0usize; d]);
    let idx: Vec<usize> = (0..test.len()).collect();
    for chunk in idx.chunks(batch.max(1)) {
        let b = split(&test.batch(chunk)?);
        let mut times: Vec<T> = b.times.clone();
        for &i in chunk {
            times.extend_from_slice(&clean[i].0);
        }
        times.sort_by(|x, y| x.partial_cmp(y).unwrap_or(std::cmp::Ordering::Equal));
        times.dedup();
        let row = |t: T| {
            times
                .binary_search_by(|x| x.partial_cmp(&t).unwrap_or(std::cmp::Ordering::Equal))
                .unwrap_or(0)
        };
        let nb = chunk.len();
        let len = times.len() * nb * d;
        let (mut values, mut mask) = (vec![T::zero(); len], vec![T::zero(); len]);
        for (i, &t) in b.times.iter().enumerate() {
            let (src, dst) = (i * nb * d, row(t) * nb * d);
            for k in 0..nb * d {
                if b.mask[src + k] != T::zero() {
                    mask[dst + k] = T::one();
                    values[dst + k] = b.values[src + k];
                }
            }
        }
        for c in 0..d {
            let mut vals = values.clone();
            let mut target = vec![T::zero(); len];
            for (j, &i) in chunk.iter().enumerate() {
                let (g, v) = &clean[i];
                for (gi, &t) in g.iter().enumerate() {
                    let k = (row(t) * nb + j) * d + c;
                    if t >= t_from && mask[k] == T::zero() {
                        target[k] = T::one();
                        vals[k] = v[gi * d + c];
                    }
                }
            }
            let gb = IrregularBatch::new(times.clone(), vals, mask.clone(), target, nb, d)?;
            let n = gb.n_targets();
            if let Some(m) = model.target_mse(&gb)? {
                sums[c] += m * n as f64;
                counts[c] += n;
            }
        }
    }
    Ok(sums
        .iter()
        .zip(&counts)
        .map(|(&s, &n)| if n > 0 { s / n as f64 } else { f64::NAN })
        .collect())
}

/// The log-likelihood of the scored events' times (the targets after `split`, from the
/// first union time `≥ t_from` on; `thin` is the probability with which an event is
/// scored, see [`poisson::window_log_likelihood`]), summed over `test` and divided by its
/// size: under `model`'s intensity (`None` without a model, or for a model without a
/// Poisson process) and under the constant per-component `rates`
/// ([`poisson::constant_rates`] of the training set).
///
/// # Errors
/// The model's own errors.
#[allow(clippy::too_many_arguments)]
pub fn times_log_likelihood<T: Float>(
    mut model: Option<&mut LatentOde<T>>,
    test: &IrregularDataset<T>,
    batch: usize,
    split: Split<'_, T>,
    thin: f64,
    t_from: T,
    rates: &[f64],
) -> Result<(Option<f64>, f64), ModelsError> {
    let (mut ll_model, mut ll_const) = (0.0, 0.0);
    let mut has_model = model.is_some();
    let idx: Vec<usize> = (0..test.len()).collect();
    for chunk in idx.chunks(batch.max(1)) {
        let b = split(&test.batch(chunk)?);
        let from = b.times.iter().position(|&t| t >= t_from).unwrap_or(0);
        let (c_lam, c_big) = poisson::constant_intensity(rates, &b.times, b.batch);
        ll_const +=
            poisson::window_log_likelihood(&c_lam, &c_big, &b.target, b.batch, b.dim, from, thin)
                .iter()
                .sum::<f64>();
        let pois = match model.as_deref_mut() {
            Some(m) => m.reconstruct_with_times(&b)?.1,
            None => None,
        };
        match pois {
            Some((lam, big)) => {
                ll_model += poisson::window_log_likelihood(
                    &lam, &big, &b.target, b.batch, b.dim, from, thin,
                )
                .iter()
                .sum::<f64>();
            }
            None => has_model = false,
        }
    }
    let n = test.len().max(1) as f64;
    Ok((has_model.then_some(ll_model / n), ll_const / n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::latent::data::{SpiralConfig, spirals};
    use crate::latent::{LatentConfig, LatentOde};

    /// Clean trajectories that do not fit the data are an error, not a panic; a model
    /// without a Poisson process has no times score, the constant rates always do.
    #[test]
    fn bad_clean_is_an_error_and_plain_model_has_no_times_score() {
        let cfg = SpiralConfig {
            n_spirals: 3,
            n_total: 40,
            n_sample: 8,
            ..Default::default()
        };
        let (data, _) = spirals::<f64>(&cfg, 0).unwrap();
        let mut m = LatentOde::<f64>::new(LatentConfig::new(2)).unwrap();
        let keep = |b: &IrregularBatch<f64>| b.holdout(0.3, 1);
        let short = vec![(vec![0.0, 1.0], vec![0.0; 3]); data.len()];
        let e = clean_mse(&mut m, &data, &short, 2, &keep, f64::NEG_INFINITY).unwrap_err();
        assert!(e.to_string().contains("clean"), "{e}");
        let few = vec![(vec![0.0], vec![0.0; 2]); data.len() - 1];
        assert!(clean_mse(&mut m, &data, &few, 2, &keep, f64::NEG_INFINITY).is_err());
        let (model, constant) = times_log_likelihood(
            Some(&mut m),
            &data,
            2,
            &keep,
            0.3,
            f64::NEG_INFINITY,
            &[1.0, 1.0],
        )
        .unwrap();
        assert!(model.is_none() && constant.is_finite());
        let (none, c2) =
            times_log_likelihood(None, &data, 2, &keep, 0.3, f64::NEG_INFINITY, &[1.0, 1.0])
                .unwrap();
        assert!(none.is_none() && c2 == constant);
    }
}
