//! The IDX format of the MNIST distribution (`train-images-idx3-ubyte`,
//! `train-labels-idx1-ubyte`, `t10k-…`, and Fashion-MNIST, EMNIST, KMNIST alike), read and
//! written, gzip-compressed or not.
//!
//! An IDX file is a 4-byte magic number `0x00 0x00 TYPE NDIM`, then `NDIM` dimensions as
//! big-endian `u32`, then the `Π dims` values row-major. MNIST uses `TYPE = 0x08`
//! (unsigned bytes): images are `0x00000803` (`[n, rows, cols]`), labels `0x00000801`
//! (`[n]`). This module reads and writes unsigned-byte arrays ([`IdxArray`]); other
//! element types are reported as unsupported. A file that starts with the gzip magic bytes
//! (`1f 8b`) is decompressed first, whatever its name, so both `train-images-idx3-ubyte`
//! and `train-images-idx3-ubyte.gz` load. Every malformed header (short, wrong magic, zero
//! dimensions, data shorter or longer than the dimensions say) is an error naming the file
//! and the byte offset ([`ModelsError::BinaryData`]).
//!
//! [`read_idx_dataset`] pairs an image file with a label file into an [`ImageDataset`];
//! [`write_idx_dataset`] writes one back (its pixels must be integers in `0..=255`, as
//! loaded from MNIST).

use std::path::Path;

use ode_solvers::Real;

use super::ImageDataset;
use super::file::{read_maybe_gz, write_maybe_gz};
use crate::error::ModelsError;

/// The IDX type code of unsigned bytes, the only element type MNIST uses.
pub const IDX_TYPE_U8: u8 = 0x08;
/// The magic number of an MNIST image file (unsigned bytes, 3 dimensions).
pub const IDX_MAGIC_IMAGES: u32 = 0x0000_0803;
/// The magic number of an MNIST label file (unsigned bytes, 1 dimension).
pub const IDX_MAGIC_LABELS: u32 = 0x0000_0801;

/// An unsigned-byte IDX array: its dimensions and its values, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxArray {
    dims: Vec<usize>,
    data: Vec<u8>,
}

fn type_name(code: u8) -> &'static str {
    match code {
        0x08 => "unsigned byte",
        0x09 => "signed byte",
        0x0B => "16-bit integer",
        0x0C => "32-bit integer",
        0x0D => "32-bit float",
        0x0E => "64-bit float",
        _ => "unknown",
    }
}

impl IdxArray {
    /// An array from its parts, checking that `data` has `Π dims` values and that there are
    /// 1 to 255 dimensions, each in `1..=u32::MAX`.
    pub fn new(dims: Vec<usize>, data: Vec<u8>) -> Result<Self, ModelsError> {
        let invalid = |reason: String| ModelsError::InvalidArgument {
            name: "IDX array",
            reason,
        };
        if dims.is_empty() || dims.len() > 255 {
            return Err(invalid(format!(
                "an IDX array has 1 to 255 dimensions, got {}",
                dims.len()
            )));
        }
        if let Some(d) = dims.iter().find(|&&d| d == 0 || u32::try_from(d).is_err()) {
            return Err(invalid(format!(
                "each dimension must be in 1..=4294967295, got {d} in {dims:?}"
            )));
        }
        let total = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if total != Some(data.len()) {
            return Err(invalid(format!(
                "dimensions {dims:?} need {} values, found {}",
                total.map_or("more than usize::MAX".to_string(), |t| t.to_string()),
                data.len()
            )));
        }
        Ok(Self { dims, data })
    }

    /// Parses the (decompressed) bytes of an IDX file; `path` only names it in errors.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Self, ModelsError> {
        let err = |offset: usize, reason: String| ModelsError::BinaryData {
            path: path.to_path_buf(),
            offset,
            reason,
        };
        if bytes.len() < 4 {
            return Err(err(
                0,
                format!(
                    "the file has {} bytes, too short for the 4-byte IDX magic number",
                    bytes.len()
                ),
            ));
        }
        if bytes[0] != 0 || bytes[1] != 0 {
            return Err(err(
                0,
                format!(
                    "not an IDX file: the magic number {:02x}{:02x}{:02x}{:02x} must start with two zero bytes",
                    bytes[0], bytes[1], bytes[2], bytes[3]
                ),
            ));
        }
        if bytes[2] != IDX_TYPE_U8 {
            return Err(err(
                2,
                format!(
                    "element type 0x{:02x} ({}) is not supported; only unsigned bytes (0x08) are",
                    bytes[2],
                    type_name(bytes[2])
                ),
            ));
        }
        let ndim = usize::from(bytes[3]);
        if ndim == 0 {
            return Err(err(3, "the magic number declares 0 dimensions".into()));
        }
        let header = 4 + 4 * ndim;
        if bytes.len() < header {
            return Err(err(
                bytes.len(),
                format!(
                    "the header is truncated: {ndim} dimensions need {header} header bytes, the file has {}",
                    bytes.len()
                ),
            ));
        }
        let mut dims = Vec::with_capacity(ndim);
        let mut total: usize = 1;
        for k in 0..ndim {
            let at = 4 + 4 * k;
            let d = u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
            if d == 0 {
                return Err(err(at, format!("dimension {k} is 0")));
            }
            let d = d as usize;
            total = total.checked_mul(d).ok_or_else(|| {
                err(
                    at,
                    format!("the dimensions {dims:?}, {d}, … overflow the address space"),
                )
            })?;
            dims.push(d);
        }
        let body = bytes.len() - header;
        if body != total {
            let what = if body < total {
                "truncated"
            } else {
                "longer than its header says"
            };
            return Err(err(
                header + body.min(total),
                format!(
                    "the data is {what}: dimensions {dims:?} need {total} bytes after the {header}-byte header, found {body}"
                ),
            ));
        }
        Ok(Self {
            dims,
            data: bytes[header..].to_vec(),
        })
    }

    /// Reads an IDX file, gzip-compressed or not (told by its first two bytes).
    pub fn read(path: &Path) -> Result<Self, ModelsError> {
        let bytes = read_maybe_gz(path)?;
        Self::parse(&bytes, path)
    }

    /// The dimensions (1 to 255 of them, each in `1..=u32::MAX`).
    pub fn dims(&self) -> &[usize] {
        &self.dims
    }

    /// The `Π dims` values, row-major.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// The parts `(dims, data)`.
    pub fn into_parts(self) -> (Vec<usize>, Vec<u8>) {
        (self.dims, self.data)
    }

    /// The magic number, `0x0000_08NN` for `NN` dimensions.
    pub fn magic(&self) -> u32 {
        (u32::from(IDX_TYPE_U8) << 8) | self.dims.len() as u32
    }

    /// The bytes of the IDX file (header and data).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + 4 * self.dims.len() + self.data.len());
        out.extend_from_slice(&self.magic().to_be_bytes());
        for &d in &self.dims {
            // `new` and `parse` (the only constructors) keep every dimension within u32.
            out.extend_from_slice(&(d as u32).to_be_bytes());
        }
        out.extend_from_slice(&self.data);
        out
    }

    /// Writes the IDX file atomically, gzip-compressed when `gzip` is true, creating its
    /// directory if needed.
    pub fn write(&self, path: &Path, gzip: bool) -> Result<(), ModelsError> {
        write_maybe_gz(path, &self.to_bytes(), gzip)
    }
}

/// Reads an image IDX file (`[n, rows, cols]`, or `[n, channels, rows, cols]`) and its
/// label IDX file (`[n]`) into a dataset with pixels in `0..=255` (`pixel_max` 255) and
/// `max label + 1` classes (raise it with [`ImageDataset::with_n_classes`] for a subset
/// that lacks the highest class). Either file may be gzip-compressed.
pub fn read_idx_dataset<T: Real>(
    images_path: &Path,
    labels_path: &Path,
) -> Result<ImageDataset<T>, ModelsError> {
    let images = IdxArray::read(images_path)?;
    let labels = IdxArray::read(labels_path)?;
    let shape = match images.dims[..] {
        [_, h, w] => [1, h, w],
        [_, c, h, w] => [c, h, w],
        _ => {
            return Err(ModelsError::BinaryData {
                path: images_path.to_path_buf(),
                offset: 3,
                reason: format!(
                    "an image file has 3 dimensions [n, rows, cols] (magic 0x00000803) or 4 [n, channels, rows, cols], found {:?}",
                    images.dims
                ),
            });
        }
    };
    if labels.dims.len() != 1 {
        return Err(ModelsError::BinaryData {
            path: labels_path.to_path_buf(),
            offset: 3,
            reason: format!(
                "a label file has 1 dimension [n] (magic 0x00000801), found {:?}",
                labels.dims
            ),
        });
    }
    if labels.dims[0] != images.dims[0] {
        return Err(ModelsError::BinaryData {
            path: labels_path.to_path_buf(),
            offset: 4,
            reason: format!(
                "{} labels for the {} images of {}",
                labels.dims[0],
                images.dims[0],
                images_path.display()
            ),
        });
    }
    let labels: Vec<usize> = labels.data.iter().map(|&l| usize::from(l)).collect();
    let n_classes = labels.iter().copied().max().map_or(1, |m| m + 1);
    let pixels = images
        .data
        .iter()
        .map(|&v| T::from_f64_const(f64::from(v)))
        .collect();
    ImageDataset::new(pixels, labels, shape, n_classes, T::from_f64_const(255.0))
}

/// Writes `dataset` as an image IDX file (`[n, rows, cols]` with magic `0x00000803` for one
/// channel, `[n, channels, rows, cols]` otherwise) and a label IDX file (`[n]`, magic
/// `0x00000801`), gzip-compressed when `gzip` is true. Every pixel must be an integer in
/// `0..=255` (the raw intensities of MNIST as loaded) and every label at most 255.
pub fn write_idx_dataset<T: Real>(
    dataset: &ImageDataset<T>,
    images_path: &Path,
    labels_path: &Path,
    gzip: bool,
) -> Result<(), ModelsError> {
    let invalid = |reason: String| ModelsError::InvalidArgument {
        name: "dataset to write as IDX",
        reason,
    };
    if dataset.is_empty() {
        return Err(invalid("the dataset has no images".into()));
    }
    let per = dataset.image_len();
    let mut pixels = Vec::with_capacity(dataset.images().len());
    for (i, &v) in dataset.images().iter().enumerate() {
        let x = v.to_f64_lossy();
        if !(0.0..=255.0).contains(&x) || x.fract() != 0.0 {
            return Err(invalid(format!(
                "pixel {} of image {} is {x}, not an integer in 0..=255 (IDX stores raw bytes: write the data as loaded, before scaling)",
                i % per,
                i / per
            )));
        }
        pixels.push(x as u8);
    }
    let mut labels = Vec::with_capacity(dataset.len());
    for (i, &l) in dataset.labels().iter().enumerate() {
        labels.push(
            u8::try_from(l)
                .map_err(|_| invalid(format!("label {l} of image {i} does not fit in a byte")))?,
        );
    }
    let [c, h, w] = dataset.image_shape();
    let dims = if c == 1 {
        vec![dataset.len(), h, w]
    } else {
        vec![dataset.len(), c, h, w]
    };
    IdxArray::new(dims, pixels)?.write(images_path, gzip)?;
    IdxArray::new(vec![dataset.len()], labels)?.write(labels_path, gzip)
}
