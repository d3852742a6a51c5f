//! Image data sets for the ODENet experiments (Chen et al. 2018, §7.1): loading, splitting,
//! normalising, augmenting and batching.
//!
//! # The pieces
//!
//! * [`ImageDataset`] (module `image`): `n` labelled images in one row-major
//!   `[n, channels, height, width]` buffer (`f32` or `f64`), labels in `0..n_classes`.
//! * Loaders, all from a path and gzip-or-not by the file's first bytes:
//!   - [`load_mnist_5k`] / [`load_digits`] (module `shipped`): the two sets shipped in
//!     `models/data/` (a 5,000-image MNIST subset, 28×28, and scikit-learn's 1,797 8×8
//!     digits; provenance and licences in `models/data/README.md`), at
//!     [`mnist_5k_path`] / [`digits_path`]; [`load_mnist_5k_from`] / [`load_digits_from`]
//!     read the same formats from any path.
//!   - [`read_csv_images`] (module `csv`): any "pixels then label per line" CSV, described
//!     by a [`CsvImageFormat`]; errors read `FILE:line:column: reason`.
//!   - [`read_idx_dataset`] / [`write_idx_dataset`] and [`IdxArray`] (module `idx`): the
//!     IDX files of the full MNIST distribution (`train-images-idx3-ubyte[.gz]`, …).
//! * [`stratified_split`] (module `split`): a seeded train/test split that splits each
//!   class in the same proportion.
//! * [`Normalization`] (module `normalize`): per-channel mean/std fitted on the training
//!   set and applied to any set; [`ImageDataset::to_unit_range`] scales to `[0, 1]`.
//! * [`RandomShift`] and the [`Augment`] trait (module `augment`): random shifts with
//!   constant padding (torchvision's padded `RandomCrop`).
//! * [`DataLoader`], the trait a training loop takes, and [`ImageLoader`] (module
//!   `loader`): seeded per-epoch shuffled mini-batches `(images, labels)`, last partial
//!   batch kept or dropped, optionally augmented.
//!
//! Nothing here panics on a malformed file or argument: every failure is a
//! [`ModelsError`](crate::ModelsError) naming the file and line (text) or byte offset
//! (binary), or the argument.
//!
//! # Example
//!
//! ```
//! use models::datasets::{
//!     BatchOptions, DataLoader, Normalization, RandomShift, load_digits, stratified_split,
//! };
//!
//! let mut digits = load_digits::<f32>()?; // [1797, 1, 8, 8], pixels 0..=16
//! digits.to_unit_range(); // pixels in [0, 1]
//! let (mut train, mut test) = stratified_split(&digits, 0.2, 7)?; // 20 % of each class
//! let norm = Normalization::fit(&train)?; // statistics of the training set only
//! norm.apply(&mut train)?;
//! norm.apply(&mut test)?;
//! let black = norm.value(0, 0.0); // a black pixel after standardisation
//! let loader = train
//!     .into_loader(BatchOptions { drop_last: true, ..BatchOptions::new(128) })?
//!     .with_augmentation(RandomShift::new(1).with_fill(vec![black])?);
//! for epoch in 0..2 {
//!     for batch in loader.batches(epoch) {
//!         assert_eq!(batch.shape, [128, 1, 8, 8]);
//!         assert_eq!(batch.images.len(), 128 * 64);
//!         assert_eq!(batch.labels.len(), 128);
//!     }
//! }
//! assert_eq!(test.len(), 359); // Σ_c round(0.2 · n_c) over the 10 classes
//! assert_eq!(loader.n_examples() + test.len(), 1797);
//! # Ok::<(), models::ModelsError>(())
//! ```

mod augment;
mod csv;
mod file;
mod idx;
mod image;
mod loader;
mod normalize;
mod shipped;
mod split;

pub use augment::{Augment, RandomShift, shift_image};
pub use csv::{CsvImageFormat, parse_csv_images, read_csv_images};
pub use idx::{
    IDX_MAGIC_IMAGES, IDX_MAGIC_LABELS, IDX_TYPE_U8, IdxArray, read_idx_dataset, write_idx_dataset,
};
pub use image::ImageDataset;
pub use loader::{Batch, BatchOptions, DataLoader, ImageBatches, ImageLoader};
pub use normalize::Normalization;
pub use shipped::{
    DIGITS_FORMAT, MNIST_5K_FORMAT, data_dir, digits_path, load_digits, load_digits_from,
    load_mnist_5k, load_mnist_5k_from, mnist_5k_path,
};
pub use split::{SplitIndices, stratified_split, stratified_split_indices};
