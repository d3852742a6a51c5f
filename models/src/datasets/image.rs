//! [`ImageDataset`]: labelled images in one `[n, channels, height, width]` buffer.

use ode_solvers::Real;

use crate::error::ModelsError;

/// Labelled images: `n` images of `channels × height × width` pixels in one row-major
/// `[n, channels, height, width]` buffer, a class label in `0..n_classes` per image.
///
/// Pixel values are in the units they were loaded in (the loaders keep the file's raw
/// intensities, `0..=255` for MNIST and `0..=16` for the 8×8 digits, and record that
/// maximum as [`pixel_max`](Self::pixel_max)); [`to_unit_range`](Self::to_unit_range)
/// scales them to `[0, 1]` and [`Normalization`](super::Normalization) standardises them.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageDataset<T> {
    images: Vec<T>,
    labels: Vec<usize>,
    shape: [usize; 3],
    n_classes: usize,
    pixel_max: T,
}

impl<T: Real> ImageDataset<T> {
    /// A dataset from its parts, checking that `images` holds `labels.len()` images of
    /// `shape = [channels, height, width]` (all non-zero), that every label is below
    /// `n_classes`, and that every pixel and `pixel_max` (the value of full intensity in
    /// the units of `images`, positive) are finite.
    pub fn new(
        images: Vec<T>,
        labels: Vec<usize>,
        shape: [usize; 3],
        n_classes: usize,
        pixel_max: T,
    ) -> Result<Self, ModelsError> {
        let invalid = |reason: String| ModelsError::InvalidArgument {
            name: "image dataset",
            reason,
        };
        if shape.contains(&0) {
            return Err(invalid(format!(
                "every image dimension must be positive, got [channels, height, width] = {shape:?}"
            )));
        }
        let per = shape[0]
            .checked_mul(shape[1])
            .and_then(|x| x.checked_mul(shape[2]))
            .ok_or_else(|| invalid(format!("image shape {shape:?} overflows")))?;
        if Some(images.len()) != labels.len().checked_mul(per) {
            return Err(invalid(format!(
                "{} labels of images of shape {shape:?} need {} pixel values, found {}",
                labels.len(),
                labels.len().saturating_mul(per),
                images.len()
            )));
        }
        if n_classes == 0 {
            return Err(invalid("n_classes must be at least 1".into()));
        }
        if let Some(i) = labels.iter().position(|&l| l >= n_classes) {
            return Err(invalid(format!(
                "label {} of image {i} is not below n_classes = {n_classes}",
                labels[i]
            )));
        }
        if let Some(i) = images.iter().position(|v| !v.is_finite()) {
            return Err(invalid(format!(
                "non-finite pixel value in image {}, at pixel {}",
                i / per,
                i % per
            )));
        }
        if !(pixel_max.is_finite() && pixel_max > T::zero()) {
            return Err(invalid(format!(
                "pixel_max must be finite and positive, got {pixel_max}"
            )));
        }
        Ok(Self {
            images,
            labels,
            shape,
            n_classes,
            pixel_max,
        })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// `[channels, height, width]` of every image.
    pub fn image_shape(&self) -> [usize; 3] {
        self.shape
    }

    /// `[n, channels, height, width]` of the whole image buffer.
    pub fn shape(&self) -> [usize; 4] {
        [self.len(), self.shape[0], self.shape[1], self.shape[2]]
    }

    /// Number of channels.
    pub fn channels(&self) -> usize {
        self.shape[0]
    }

    /// Image height in pixels.
    pub fn height(&self) -> usize {
        self.shape[1]
    }

    /// Image width in pixels.
    pub fn width(&self) -> usize {
        self.shape[2]
    }

    /// Values per image, `channels · height · width`.
    pub fn image_len(&self) -> usize {
        self.shape[0] * self.shape[1] * self.shape[2]
    }

    /// Number of classes (labels are in `0..n_classes`).
    pub fn n_classes(&self) -> usize {
        self.n_classes
    }

    /// The value of full intensity in the current pixel units (255 for MNIST as loaded, 16
    /// for the digits, 1 after [`to_unit_range`](Self::to_unit_range)). Standardisation by
    /// [`Normalization`](super::Normalization) leaves it unchanged, so scale to `[0, 1]`
    /// first.
    pub fn pixel_max(&self) -> T {
        self.pixel_max
    }

    /// All pixel values, `[n, channels, height, width]` row-major.
    pub fn images(&self) -> &[T] {
        &self.images
    }

    /// All labels, one per image.
    pub fn labels(&self) -> &[usize] {
        &self.labels
    }

    /// The pixels of image `i` (`[channels, height, width]` row-major), or `None` when
    /// `i >= len()`.
    pub fn image(&self, i: usize) -> Option<&[T]> {
        let per = self.image_len();
        self.images.get(i * per..(i + 1) * per)
    }

    /// How many images each class has (`n_classes` counts).
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.n_classes];
        for &l in &self.labels {
            counts[l] += 1;
        }
        counts
    }

    /// Raises the number of classes (a subset read from files may lack the highest
    /// labels); fails if `n_classes` is below the current one.
    pub fn with_n_classes(mut self, n_classes: usize) -> Result<Self, ModelsError> {
        if n_classes < self.n_classes {
            return Err(ModelsError::InvalidArgument {
                name: "n_classes",
                reason: format!(
                    "cannot lower the number of classes from {} to {n_classes}",
                    self.n_classes
                ),
            });
        }
        self.n_classes = n_classes;
        Ok(self)
    }

    /// Divides every pixel by [`pixel_max`](Self::pixel_max), so that the values lie in
    /// `[0, 1]` for data loaded from a file, and sets `pixel_max` to 1 (so a second call
    /// changes nothing).
    pub fn to_unit_range(&mut self) {
        let inv = T::one() / self.pixel_max;
        for v in &mut self.images {
            *v *= inv;
        }
        self.pixel_max = T::one();
    }

    /// The images at `indices`, in that order (repeats allowed), as a new dataset with the
    /// same shape, classes and units; fails on an index out of range.
    pub fn subset(&self, indices: &[usize]) -> Result<Self, ModelsError> {
        let per = self.image_len();
        let mut images = Vec::with_capacity(indices.len() * per);
        let mut labels = Vec::with_capacity(indices.len());
        for (k, &i) in indices.iter().enumerate() {
            let Some(img) = self.image(i) else {
                return Err(ModelsError::InvalidArgument {
                    name: "subset indices",
                    reason: format!(
                        "index {i} (position {k}) is out of range for {} images",
                        self.len()
                    ),
                });
            };
            images.extend_from_slice(img);
            labels.push(self.labels[i]);
        }
        Ok(Self {
            images,
            labels,
            shape: self.shape,
            n_classes: self.n_classes,
            pixel_max: self.pixel_max,
        })
    }

    /// The same data in another float type (`f32` ↔ `f64`; rounding to nearest).
    pub fn cast<U: Real>(&self) -> ImageDataset<U> {
        ImageDataset {
            images: self
                .images
                .iter()
                .map(|v| U::from_f64_const(v.to_f64_lossy()))
                .collect(),
            labels: self.labels.clone(),
            shape: self.shape,
            n_classes: self.n_classes,
            pixel_max: U::from_f64_const(self.pixel_max.to_f64_lossy()),
        }
    }

    /// Mutable access to the pixel values, for transforms (the shape cannot change).
    pub fn images_mut(&mut self) -> &mut [T] {
        &mut self.images
    }

    /// The parts `(images, labels, [channels, height, width], n_classes, pixel_max)`.
    pub fn into_parts(self) -> (Vec<T>, Vec<usize>, [usize; 3], usize, T) {
        (
            self.images,
            self.labels,
            self.shape,
            self.n_classes,
            self.pixel_max,
        )
    }
}
