//! The two image sets shipped in `models/data/` (provenance and licences in
//! `models/data/README.md`): a 5,000-image subset of MNIST and the 8×8 digits of
//! scikit-learn. Both are loaded from their path at run time, not compiled in.
//!
//! | set | images | shape `[c, h, w]` | pixels | classes |
//! | --- | --- | --- | --- | --- |
//! | [`load_mnist_5k`] | 5,000 (500 per class, rows sorted by label) | `[1, 28, 28]` | `0..=255` | 10 |
//! | [`load_digits`] | 1,797 (174 to 183 per class) | `[1, 8, 8]` | `0..=16` | 10 |

use std::path::{Path, PathBuf};

use ode_solvers::Real;

use super::ImageDataset;
use super::csv::{CsvImageFormat, read_csv_images};
use crate::error::ModelsError;

/// The format of `mnist_5k.csv.gz`: 784 pixels (28×28, one channel) in `0..=255`, then
/// the label `0..=9`; no header.
pub const MNIST_5K_FORMAT: CsvImageFormat = CsvImageFormat {
    channels: 1,
    height: 28,
    width: 28,
    pixel_max: 255,
    n_classes: 10,
    label_first: false,
    header: false,
};

/// The format of `digits.csv.gz`: 64 pixels (8×8, one channel) in `0..=16`, then the
/// label `0..=9`; no header.
pub const DIGITS_FORMAT: CsvImageFormat = CsvImageFormat {
    channels: 1,
    height: 8,
    width: 8,
    pixel_max: 16,
    n_classes: 10,
    label_first: false,
    header: false,
};

/// The folder of the shipped data files, `models/data` in the source tree (from the
/// crate's `CARGO_MANIFEST_DIR` at build time).
pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data")
}

/// Path of the shipped 5,000-image MNIST subset, `models/data/mnist_5k.csv.gz`.
pub fn mnist_5k_path() -> PathBuf {
    data_dir().join("mnist_5k.csv.gz")
}

/// Path of the shipped 8×8 digits, `models/data/digits.csv.gz`.
pub fn digits_path() -> PathBuf {
    data_dir().join("digits.csv.gz")
}

/// Loads an MNIST-subset file in [`MNIST_5K_FORMAT`] from `path` (gzip or plain CSV);
/// pixels stay in `0..=255` (call [`ImageDataset::to_unit_range`] for `[0, 1]`).
pub fn load_mnist_5k_from<T: Real>(path: &Path) -> Result<ImageDataset<T>, ModelsError> {
    read_csv_images(path, &MNIST_5K_FORMAT)
}

/// Loads the shipped 5,000-image MNIST subset ([`mnist_5k_path`]): `[5000, 1, 28, 28]`,
/// 500 images per class, in the file's order (sorted by label: shuffle or use
/// [`stratified_split`](super::stratified_split) before training).
pub fn load_mnist_5k<T: Real>() -> Result<ImageDataset<T>, ModelsError> {
    load_mnist_5k_from(&mnist_5k_path())
}

/// Loads a digits file in [`DIGITS_FORMAT`] from `path` (gzip or plain CSV); pixels stay
/// in `0..=16` (call [`ImageDataset::to_unit_range`] for `[0, 1]`).
pub fn load_digits_from<T: Real>(path: &Path) -> Result<ImageDataset<T>, ModelsError> {
    read_csv_images(path, &DIGITS_FORMAT)
}

/// Loads the shipped 8×8 digits ([`digits_path`]): `[1797, 1, 8, 8]`, 10 classes.
pub fn load_digits<T: Real>() -> Result<ImageDataset<T>, ModelsError> {
    load_digits_from(&digits_path())
}
