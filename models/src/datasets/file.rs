//! Reading a data file whole, gunzipping it when it starts with the gzip magic bytes, and
//! writing one atomically (optionally gzip-compressed).

use std::io::{Read as _, Write as _};
use std::path::Path;

use atomic_write::AtomicWriteError;
use flate2::Compression;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;

use crate::error::ModelsError;

/// The two bytes every gzip member starts with (RFC 1952).
pub(crate) const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

fn io_error(path: &Path, source: std::io::Error) -> ModelsError {
    ModelsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The contents of `path`, decompressed if the file is gzip (told by its first two bytes,
/// whatever its name).
pub(crate) fn read_maybe_gz(path: &Path) -> Result<Vec<u8>, ModelsError> {
    let raw = std::fs::read(path).map_err(|e| io_error(path, e))?;
    if raw.starts_with(&GZIP_MAGIC) {
        let mut out = Vec::with_capacity(raw.len().saturating_mul(4));
        MultiGzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| ModelsError::BinaryData {
                path: path.to_path_buf(),
                offset: out.len(),
                reason: format!("the gzip stream is corrupt or truncated ({e})"),
            })?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// Writes `bytes` to `path` atomically (a synced temporary sibling renamed over it),
/// gzip-compressed when `gzip` is true, creating the directory if needed.
pub(crate) fn write_maybe_gz(path: &Path, bytes: &[u8], gzip: bool) -> Result<(), ModelsError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| io_error(path, e))?;
    }
    let compressed;
    let data = if gzip {
        let mut enc = GzEncoder::new(Vec::new(), Compression::default());
        enc.write_all(bytes).map_err(|e| io_error(path, e))?;
        compressed = enc.finish().map_err(|e| io_error(path, e))?;
        &compressed[..]
    } else {
        bytes
    };
    atomic_write::write_atomic(path, data).map_err(|e| match e {
        AtomicWriteError::Write(source) => io_error(path, source),
        AtomicWriteError::Io { path, source, .. } => io_error(&path, source),
    })
}
