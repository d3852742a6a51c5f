//! Per-channel standardisation: `x ← (x − mean_c) / std_c`, with the mean and standard
//! deviation of each channel computed over every pixel of every image of the *training*
//! set and then applied unchanged to the training set, the test set and each batch (so
//! no statistic of the test set leaks into training). The `[0, 1]` scaling is
//! [`ImageDataset::to_unit_range`].

use ode_solvers::Real;

use super::ImageDataset;
use crate::error::ModelsError;

/// The per-channel mean and (population) standard deviation of a training set.
#[derive(Debug, Clone, PartialEq)]
pub struct Normalization<T> {
    /// Mean of each channel.
    pub mean: Vec<T>,
    /// Standard deviation of each channel (positive).
    pub std: Vec<T>,
}

impl<T: Real> Normalization<T> {
    /// Computes each channel's mean and standard deviation over `train` (accumulated in
    /// `f64`); fails on an empty set or a constant channel (standard deviation 0).
    pub fn fit(train: &ImageDataset<T>) -> Result<Self, ModelsError> {
        if train.is_empty() {
            return Err(ModelsError::InvalidArgument {
                name: "training set",
                reason: "cannot compute normalisation statistics of an empty set".into(),
            });
        }
        let [c, h, w] = train.image_shape();
        let plane = h * w;
        let (mut sum, mut sum_sq) = (vec![0.0f64; c], vec![0.0f64; c]);
        for img in train.images().chunks_exact(c * plane) {
            for (ch, px) in img.chunks_exact(plane).enumerate() {
                for &v in px {
                    let v = v.to_f64_lossy();
                    sum[ch] += v;
                    sum_sq[ch] += v * v;
                }
            }
        }
        let count = (train.len() * plane) as f64;
        let mut mean = Vec::with_capacity(c);
        let mut std = Vec::with_capacity(c);
        for ch in 0..c {
            let m = sum[ch] / count;
            let var = (sum_sq[ch] / count - m * m).max(0.0);
            let s = var.sqrt();
            if !(s > 0.0 && s.is_finite()) {
                return Err(ModelsError::InvalidArgument {
                    name: "training set",
                    reason: format!(
                        "channel {ch} has standard deviation {s}: a constant channel cannot be standardised"
                    ),
                });
            }
            mean.push(T::from_f64_const(m));
            std.push(T::from_f64_const(s));
        }
        Ok(Self { mean, std })
    }

    /// Number of channels.
    pub fn channels(&self) -> usize {
        self.mean.len()
    }

    /// The standardised value of a raw pixel `x` of channel `c` (e.g. the value that
    /// zero padding must take after normalisation: `value(c, 0)`).
    pub fn value(&self, c: usize, x: T) -> T {
        (x - self.mean[c]) / self.std[c]
    }

    /// Standardises `images`, a `[n, channels, height, width]` buffer with `plane =
    /// height · width`; fails if its length is not a whole number of images.
    pub fn apply_to_slice(&self, images: &mut [T], plane: usize) -> Result<(), ModelsError> {
        let per = self.channels() * plane;
        if per == 0 || !images.len().is_multiple_of(per) {
            return Err(ModelsError::InvalidArgument {
                name: "images to normalise",
                reason: format!(
                    "{} values are not a whole number of images of {} channels × {plane} pixels",
                    images.len(),
                    self.channels()
                ),
            });
        }
        let inv: Vec<T> = self.std.iter().map(|&s| T::one() / s).collect();
        for img in images.chunks_exact_mut(per) {
            for (c, px) in img.chunks_exact_mut(plane).enumerate() {
                let (m, k) = (self.mean[c], inv[c]);
                for v in px {
                    *v = (*v - m) * k;
                }
            }
        }
        Ok(())
    }

    /// Standardises every image of `dataset` (the training set it was fitted on, or a
    /// test set in the same units); fails if its channel count differs.
    pub fn apply(&self, dataset: &mut ImageDataset<T>) -> Result<(), ModelsError> {
        if dataset.channels() != self.channels() {
            return Err(ModelsError::InvalidArgument {
                name: "images to normalise",
                reason: format!(
                    "the statistics are for {} channels, the images have {}",
                    self.channels(),
                    dataset.channels()
                ),
            });
        }
        let plane = dataset.height() * dataset.width();
        self.apply_to_slice(dataset.images_mut(), plane)
    }
}
