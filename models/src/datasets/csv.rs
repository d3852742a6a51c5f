//! Images in CSV: one image per line, its pixels as integers (row-major, channel by
//! channel) and then its class label, optionally gzip-compressed.
//!
//! This is the format of both shipped files (`mnist_5k.csv.gz`: 784 pixels in `0..=255`
//! and a label per line; `digits.csv.gz`: 64 pixels in `0..=16` and a label), and of many
//! Kaggle-style exports. A [`CsvImageFormat`] says what to expect; every deviation (a
//! wrong number of fields, a field that is not an integer, a pixel above the format's
//! maximum, a label out of range) is an error `FILE:line:column: reason`
//! ([`ModelsError::Data`]), never a panic. Blank lines are skipped.

use std::path::Path;

use ode_solvers::Real;

use super::ImageDataset;
use super::file::read_maybe_gz;
use crate::error::ModelsError;

/// What a CSV image file holds: the image shape, the pixel range, the classes, and
/// whether the label comes first or last and whether there is a header line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CsvImageFormat {
    /// Channels per image.
    pub channels: usize,
    /// Image height in pixels.
    pub height: usize,
    /// Image width in pixels.
    pub width: usize,
    /// The largest pixel value allowed (the value of full intensity).
    pub pixel_max: u32,
    /// Number of classes: labels must be in `0..n_classes`.
    pub n_classes: usize,
    /// Whether the label is the first field (`true`) or the last (`false`).
    pub label_first: bool,
    /// Whether the first non-blank line is a header of column names, to be skipped.
    pub header: bool,
}

impl CsvImageFormat {
    /// Values per image, `channels · height · width`.
    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Fields per line: the pixels and the label.
    pub fn fields(&self) -> usize {
        self.image_len() + 1
    }
}

/// Parses CSV image text in `format`; `path` only names the source in errors.
pub fn parse_csv_images<T: Real>(
    text: &str,
    path: &Path,
    format: &CsvImageFormat,
) -> Result<ImageDataset<T>, ModelsError> {
    let err = |line: usize, column: usize, reason: String| ModelsError::Data {
        path: path.to_path_buf(),
        line,
        column,
        reason,
    };
    let per = format.image_len();
    if per == 0 || format.n_classes == 0 {
        return Err(ModelsError::InvalidArgument {
            name: "CSV image format",
            reason: format!(
                "the image shape and the number of classes must be positive, got {format:?}"
            ),
        });
    }
    let n_fields = per + 1;
    let label_col = if format.label_first { 0 } else { per };
    let mut images: Vec<T> = Vec::new();
    let mut labels = Vec::new();
    let mut skip_header = format.header;
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if skip_header {
            skip_header = false;
            continue;
        }
        let start = images.len();
        let mut count = 0;
        for (c, field) in line.split(',').enumerate() {
            count += 1;
            if count > n_fields {
                break;
            }
            let field = field.trim();
            let v: u32 = field.parse().map_err(|_| {
                let hint = if labels.is_empty() && !format.header {
                    " (this format has no header line)"
                } else {
                    ""
                };
                err(
                    line_no,
                    c + 1,
                    format!("{field:?} is not a non-negative integer{hint}"),
                )
            })?;
            if c == label_col {
                if v as usize >= format.n_classes {
                    return Err(err(
                        line_no,
                        c + 1,
                        format!("label {v} is not below {}", format.n_classes),
                    ));
                }
                labels.push(v as usize);
            } else {
                if v > format.pixel_max {
                    return Err(err(
                        line_no,
                        c + 1,
                        format!("pixel value {v} exceeds the maximum {}", format.pixel_max),
                    ));
                }
                images.push(T::from_f64_const(f64::from(v)));
            }
        }
        if count != n_fields {
            let found = if count > n_fields {
                line.split(',').count()
            } else {
                count
            };
            return Err(err(
                line_no,
                found.min(n_fields) + 1,
                format!("expected {n_fields} fields ({per} pixels and a label), found {found}"),
            ));
        }
        debug_assert_eq!(images.len() - start, per);
    }
    if labels.is_empty() {
        return Err(err(1, 1, "the file holds no images".into()));
    }
    ImageDataset::new(
        images,
        labels,
        [format.channels, format.height, format.width],
        format.n_classes,
        T::from_f64_const(f64::from(format.pixel_max)),
    )
}

/// Reads a CSV image file in `format`, gzip-compressed or not (told by its first bytes).
pub fn read_csv_images<T: Real>(
    path: &Path,
    format: &CsvImageFormat,
) -> Result<ImageDataset<T>, ModelsError> {
    let bytes = read_maybe_gz(path)?;
    let text = std::str::from_utf8(&bytes).map_err(|e| {
        let line = bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        ModelsError::Data {
            path: path.to_path_buf(),
            line,
            column: 1,
            reason: "the file is not UTF-8 text".into(),
        }
    })?;
    parse_csv_images(text, path, format)
}
