//! Augmentation of training images: random shifts with constant padding.
//!
//! [`RandomShift`] moves each image by `(dy, dx)`, both drawn uniformly from
//! `-max_shift..=max_shift`, filling the uncovered border with a constant per channel
//! (zero by default: black for raw or `[0, 1]` pixels; after standardisation pass
//! [`Normalization::value`](super::Normalization::value)`(c, 0)` so the border stays black).
//! This is exactly torchvision's `RandomCrop(size, padding = max_shift)`: pad by
//! `max_shift` on every side and crop a random `height × width` window. Shape and label
//! are unchanged. The [`Augment`] trait is the seam for other augmentations.

use rand::RngExt;
use rand::rngs::StdRng;

use ode_solvers::Real;

use crate::error::ModelsError;

/// A random transformation of one image that keeps its shape (and so its label).
pub trait Augment<T>: Send + Sync {
    /// Writes a random transform of `image` (`[channels, height, width]` = `shape`,
    /// row-major) into `out` (same length), drawing from `rng`.
    fn augment(&self, image: &[T], shape: [usize; 3], rng: &mut StdRng, out: &mut [T]);
}

/// Moves `image` (`[channels, height, width]` = `shape`) down by `dy` and right by `dx`
/// pixels (negative: up, left) into `out`: `out[c, y, x] = image[c, y − dy, x − dx]`
/// where that pixel exists, `fill[c]` elsewhere (`fill` empty means zero).
///
/// # Errors
/// When `image` or `out` does not have `Π shape` values or `fill` is neither empty nor one
/// value per channel.
pub fn shift_image<T: Real>(
    image: &[T],
    shape: [usize; 3],
    dy: isize,
    dx: isize,
    fill: &[T],
    out: &mut [T],
) -> Result<(), ModelsError> {
    let [c, h, w] = shape;
    if image.len() != c * h * w || out.len() != image.len() {
        return Err(ModelsError::InvalidArgument {
            name: "image to shift",
            reason: format!(
                "shape {shape:?} needs {} values, the image has {} and the output {}",
                c * h * w,
                image.len(),
                out.len()
            ),
        });
    }
    if !fill.is_empty() && fill.len() != c {
        return Err(ModelsError::InvalidArgument {
            name: "fill",
            reason: format!(
                "one fill value per channel ({c}) or none, got {}",
                fill.len()
            ),
        });
    }
    shift_into(image, shape, dy, dx, fill, out);
    Ok(())
}

/// [`shift_image`] on checked lengths.
fn shift_into<T: Real>(
    image: &[T],
    [c, h, w]: [usize; 3],
    dy: isize,
    dx: isize,
    fill: &[T],
    out: &mut [T],
) {
    let plane = h * w;
    for ch in 0..c {
        let f = fill.get(ch).copied().unwrap_or_else(T::zero);
        let src = &image[ch * plane..(ch + 1) * plane];
        let dst = &mut out[ch * plane..(ch + 1) * plane];
        for y in 0..h {
            let sy = y as isize - dy;
            let row = &mut dst[y * w..(y + 1) * w];
            if sy < 0 || sy >= h as isize {
                row.fill(f);
                continue;
            }
            let srow = &src[sy as usize * w..(sy as usize + 1) * w];
            for (x, o) in row.iter_mut().enumerate() {
                let sx = x as isize - dx;
                *o = if sx < 0 || sx >= w as isize {
                    f
                } else {
                    srow[sx as usize]
                };
            }
        }
    }
}

/// Random shifts by up to `max_shift` pixels in each direction with constant padding (see
/// the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct RandomShift<T> {
    max_shift: usize,
    fill: Vec<T>,
}

impl<T: Real> RandomShift<T> {
    /// Shifts by up to `max_shift` pixels, zero padding.
    pub fn new(max_shift: usize) -> Self {
        Self {
            max_shift,
            fill: Vec::new(),
        }
    }

    /// The same with padding value `fill[c]` for channel `c` (e.g. the standardised value
    /// of a black pixel); fails on a non-finite value.
    pub fn with_fill(mut self, fill: Vec<T>) -> Result<Self, ModelsError> {
        if let Some(i) = fill.iter().position(|v| !v.is_finite()) {
            return Err(ModelsError::InvalidArgument {
                name: "fill",
                reason: format!("fill value {i} is not finite"),
            });
        }
        self.fill = fill;
        Ok(self)
    }

    /// The largest shift, in pixels.
    pub fn max_shift(&self) -> usize {
        self.max_shift
    }

    /// The padding value per channel (empty: zero).
    pub fn fill(&self) -> &[T] {
        &self.fill
    }
}

impl<T: Real> Augment<T> for RandomShift<T> {
    fn augment(&self, image: &[T], shape: [usize; 3], rng: &mut StdRng, out: &mut [T]) {
        let m = i64::try_from(self.max_shift).unwrap_or(i64::MAX);
        let dy = rng.random_range(-m..=m) as isize;
        let dx = rng.random_range(-m..=m) as isize;
        // Fill values of the wrong count fall back to zero beyond the given channels.
        shift_into(image, shape, dy, dx, &self.fill, out);
    }
}
