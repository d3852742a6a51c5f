//! A deterministic stratified train/test split.
//!
//! Each class `c` with `n_c` images sends `round(n_c · test_fraction)` of them, drawn at
//! random, to the test set and the rest to the training set, so every class is split in
//! the same proportion (to within one image) and the class balance of both sets is that of
//! the whole. The draw is a seeded shuffle (`rand`'s `StdRng`): the same seed gives the
//! same split (for a given `rand` version), another seed another split.

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use ode_solvers::Real;

use super::ImageDataset;
use crate::error::ModelsError;

/// The indices of a split: both ascending, disjoint, together every index once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitIndices {
    /// Indices of the training images.
    pub train: Vec<usize>,
    /// Indices of the test images.
    pub test: Vec<usize>,
}

/// Splits the indices `0..labels.len()` by class: see the module docs. Fails unless
/// `0 < test_fraction < 1`, every label is below `n_classes`, and both sets end non-empty.
pub fn stratified_split_indices(
    labels: &[usize],
    n_classes: usize,
    test_fraction: f64,
    seed: u64,
) -> Result<SplitIndices, ModelsError> {
    let invalid = |reason: String| ModelsError::InvalidArgument {
        name: "test_fraction",
        reason,
    };
    if !(test_fraction > 0.0 && test_fraction < 1.0) {
        return Err(invalid(format!(
            "the test fraction must be in (0, 1), got {test_fraction}"
        )));
    }
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); n_classes];
    for (i, &l) in labels.iter().enumerate() {
        let Some(class) = by_class.get_mut(l) else {
            return Err(ModelsError::InvalidArgument {
                name: "labels",
                reason: format!("label {l} of image {i} is not below n_classes = {n_classes}"),
            });
        };
        class.push(i);
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for class in &mut by_class {
        class.shuffle(&mut rng);
        let n_test = (class.len() as f64 * test_fraction).round() as usize;
        test.extend_from_slice(&class[..n_test]);
        train.extend_from_slice(&class[n_test..]);
    }
    if train.is_empty() || test.is_empty() {
        return Err(invalid(format!(
            "a fraction {test_fraction} of {} images leaves {} for training and {} for testing; both need at least one",
            labels.len(),
            train.len(),
            test.len()
        )));
    }
    train.sort_unstable();
    test.sort_unstable();
    Ok(SplitIndices { train, test })
}

/// Splits `dataset` into `(train, test)` datasets by [`stratified_split_indices`].
pub fn stratified_split<T: Real>(
    dataset: &ImageDataset<T>,
    test_fraction: f64,
    seed: u64,
) -> Result<(ImageDataset<T>, ImageDataset<T>), ModelsError> {
    let split =
        stratified_split_indices(dataset.labels(), dataset.n_classes(), test_fraction, seed)?;
    Ok((dataset.subset(&split.train)?, dataset.subset(&split.test)?))
}
