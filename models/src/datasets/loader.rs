//! Mini-batches for training: the [`DataLoader`] trait a training loop takes, and
//! [`ImageLoader`], its implementation over an [`ImageDataset`].
//!
//! Each epoch visits every image once, in an order shuffled by a generator seeded from
//! `(seed, epoch)`: the same seed and epoch give the same batches, each epoch a different
//! order, and any epoch can be replayed on its own (resuming from a checkpoint needs only
//! the epoch number). The last partial batch is kept or dropped by option. With an
//! [`Augment`] set, each image of each batch is transformed with draws from the same
//! per-epoch generator (so augmentation is reproducible too).

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use ode_solvers::Real;

use super::{Augment, ImageDataset};
use crate::error::ModelsError;

/// One mini-batch: `images` is `[batch, channels, height, width]` (= `shape`) row-major,
/// `labels` one class per image.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch<T> {
    /// Pixel values, `[batch, channels, height, width]` row-major.
    pub images: Vec<T>,
    /// Class labels, one per image.
    pub labels: Vec<usize>,
    /// `[batch, channels, height, width]`.
    pub shape: [usize; 4],
}

impl<T> Batch<T> {
    /// Number of images in the batch.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the batch is empty (never true for a batch a loader yields).
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// A source of training mini-batches, epoch by epoch: what a training loop takes.
pub trait DataLoader<T> {
    /// The iterator over one epoch's batches.
    type Batches<'a>: Iterator<Item = Batch<T>>
    where
        Self: 'a;

    /// The batches of epoch `epoch` (deterministic in the loader's seed and `epoch`).
    fn batches(&self, epoch: u64) -> Self::Batches<'_>;

    /// Number of batches per epoch.
    fn n_batches(&self) -> usize;

    /// Number of examples the loader draws from.
    fn n_examples(&self) -> usize;
}

/// How an [`ImageLoader`] forms batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchOptions {
    /// Images per batch (at least 1).
    pub batch_size: usize,
    /// Whether to shuffle the order each epoch (`false`: dataset order, for evaluation).
    pub shuffle: bool,
    /// Whether to drop the last batch when it has fewer than `batch_size` images.
    pub drop_last: bool,
    /// Seed of the per-epoch shuffle and augmentation.
    pub seed: u64,
}

impl BatchOptions {
    /// Shuffled batches of `batch_size` with seed 0, keeping the last partial batch.
    pub fn new(batch_size: usize) -> Self {
        Self {
            batch_size,
            shuffle: true,
            drop_last: false,
            seed: 0,
        }
    }
}

/// Mini-batches of an [`ImageDataset`] (see the module docs), optionally augmented.
pub struct ImageLoader<T> {
    dataset: ImageDataset<T>,
    options: BatchOptions,
    augment: Option<Box<dyn Augment<T>>>,
}

impl<T: std::fmt::Debug> std::fmt::Debug for ImageLoader<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageLoader")
            .field("dataset", &self.dataset)
            .field("options", &self.options)
            .field("augment", &self.augment.is_some())
            .finish()
    }
}

impl<T: Real> ImageLoader<T> {
    /// A loader over `dataset`; fails on a zero batch size or an empty dataset.
    pub fn new(dataset: ImageDataset<T>, options: BatchOptions) -> Result<Self, ModelsError> {
        if options.batch_size == 0 {
            return Err(ModelsError::InvalidArgument {
                name: "batch_size",
                reason: "the batch size must be at least 1".into(),
            });
        }
        if dataset.is_empty() {
            return Err(ModelsError::InvalidArgument {
                name: "dataset",
                reason: "cannot draw batches from an empty dataset".into(),
            });
        }
        Ok(Self {
            dataset,
            options,
            augment: None,
        })
    }

    /// The same loader, transforming every image of every batch with `augment`.
    pub fn with_augmentation(mut self, augment: impl Augment<T> + 'static) -> Self {
        self.augment = Some(Box::new(augment));
        self
    }

    /// The dataset the batches come from.
    pub fn dataset(&self) -> &ImageDataset<T> {
        &self.dataset
    }

    /// The batching options.
    pub fn options(&self) -> &BatchOptions {
        &self.options
    }

    /// The generator of epoch `epoch`: `seed` and `epoch` mixed by SplitMix64.
    fn epoch_rng(&self, epoch: u64) -> StdRng {
        let mut z = self
            .options
            .seed
            .wrapping_add(epoch.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        StdRng::seed_from_u64(z ^ (z >> 31))
    }
}

impl<T: Real> DataLoader<T> for ImageLoader<T> {
    type Batches<'a> = ImageBatches<'a, T>;

    fn batches(&self, epoch: u64) -> ImageBatches<'_, T> {
        let mut rng = self.epoch_rng(epoch);
        let mut order: Vec<usize> = (0..self.dataset.len()).collect();
        if self.options.shuffle {
            order.shuffle(&mut rng);
        }
        ImageBatches {
            loader: self,
            order,
            next: 0,
            rng,
        }
    }

    fn n_batches(&self) -> usize {
        let (n, b) = (self.dataset.len(), self.options.batch_size);
        if self.options.drop_last {
            n / b
        } else {
            n.div_ceil(b)
        }
    }

    fn n_examples(&self) -> usize {
        self.dataset.len()
    }
}

/// The batches of one epoch of an [`ImageLoader`].
pub struct ImageBatches<'a, T> {
    loader: &'a ImageLoader<T>,
    order: Vec<usize>,
    next: usize,
    rng: StdRng,
}

impl<T: std::fmt::Debug> std::fmt::Debug for ImageBatches<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageBatches")
            .field("next", &self.next)
            .field("n_examples", &self.order.len())
            .finish()
    }
}

impl<T: Real> Iterator for ImageBatches<'_, T> {
    type Item = Batch<T>;

    fn next(&mut self) -> Option<Batch<T>> {
        let opts = &self.loader.options;
        let left = self.order.len() - self.next;
        if left == 0 || (opts.drop_last && left < opts.batch_size) {
            return None;
        }
        let take = left.min(opts.batch_size);
        let ds = &self.loader.dataset;
        let per = ds.image_len();
        let shape3 = ds.image_shape();
        let mut images = vec![T::zero(); take * per];
        let mut labels = Vec::with_capacity(take);
        for (k, &i) in self.order[self.next..self.next + take].iter().enumerate() {
            let src = &ds.images()[i * per..(i + 1) * per];
            let dst = &mut images[k * per..(k + 1) * per];
            match &self.loader.augment {
                Some(aug) => aug.augment(src, shape3, &mut self.rng, dst),
                None => dst.copy_from_slice(src),
            }
            labels.push(ds.labels()[i]);
        }
        self.next += take;
        Some(Batch {
            images,
            labels,
            shape: [take, shape3[0], shape3[1], shape3[2]],
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let opts = &self.loader.options;
        let left = self.order.len() - self.next;
        let n = if opts.drop_last {
            left / opts.batch_size
        } else {
            left.div_ceil(opts.batch_size)
        };
        (n, Some(n))
    }
}

impl<T: Real> ExactSizeIterator for ImageBatches<'_, T> {}

impl<T: Real> ImageDataset<T> {
    /// An [`ImageLoader`] over this dataset (see [`ImageLoader::new`]).
    pub fn into_loader(self, options: BatchOptions) -> Result<ImageLoader<T>, ModelsError> {
        ImageLoader::new(self, options)
    }
}
