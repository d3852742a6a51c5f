//! Atomic file writes: the content goes to a fresh temporary file next to the destination,
//! is flushed to disk (`fsync`), and the temporary file is renamed over the destination
//! (then the directory is synced, best effort). A crash or an error leaves either the old
//! file or the new one, never a torn one, and no temporary file behind.
//!
//! The workspace's one home for this: `autodiff`'s safetensors checkpoints and every file
//! the `neuralode` program writes (JSON, CSV, PNG, SVG) go through it. Standard library
//! only.
//!
//! # Example
//!
//! ```
//! use atomic_write::{write_atomic, write_atomic_with};
//!
//! let dir = std::env::temp_dir().join(format!("atomic-write-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! let path = dir.join("metrics.json");
//! write_atomic(&path, b"{\"loss\": 0.5}")?;
//! write_atomic(&path, b"{\"loss\": 0.25}")?; // replaces the old content in one step
//! assert_eq!(std::fs::read(&path)?, b"{\"loss\": 0.25}");
//!
//! // A writer that opens the file itself (an image encoder, say) gets the temporary path,
//! // which keeps the destination's extension.
//! write_atomic_with(&dir.join("plot.svg"), |tmp| {
//!     assert_eq!(tmp.extension().and_then(|e| e.to_str()), Some("svg"));
//!     std::fs::write(tmp, "<svg/>")
//! })?;
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Why [`write_atomic_with`] failed; the destination is unchanged either way.
#[derive(Debug)]
pub enum AtomicWriteError<E> {
    /// The caller's writer failed on the temporary file.
    Write(E),
    /// The file system refused to create, sync or rename the temporary file.
    Io {
        /// What was attempted ("create", "write", "sync", "rename onto").
        op: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
}

impl<E: fmt::Display> fmt::Display for AtomicWriteError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AtomicWriteError::Write(e) => e.fmt(f),
            AtomicWriteError::Io { op, path, source } => {
                write!(f, "cannot {op} `{}`: {source}", path.display())
            }
        }
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for AtomicWriteError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AtomicWriteError::Write(_) => None,
            AtomicWriteError::Io { source, .. } => Some(source),
        }
    }
}

/// Writes `bytes` to `path` atomically (see the crate docs). Every error is an
/// [`AtomicWriteError::Io`] naming the file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), AtomicWriteError<std::io::Error>> {
    write_atomic_with(path, |tmp| {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(tmp)?
            .write_all(bytes)
    })
    .map_err(|e| match e {
        AtomicWriteError::Write(source) => AtomicWriteError::Io {
            op: "write",
            path: path.to_path_buf(),
            source,
        },
        io => io,
    })
}

/// Runs `write` on a fresh temporary sibling of `path` (hidden, same directory, unique per
/// process and call, keeping `path`'s extension for writers that choose a format from it),
/// then syncs it and renames it over `path` (see the crate docs). The parent directory
/// must exist.
pub fn write_atomic_with<E>(
    path: &Path,
    write: impl FnOnce(&Path) -> Result<(), E>,
) -> Result<(), AtomicWriteError<E>> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let io = |op, path: &Path, source| AtomicWriteError::Io {
        op,
        path: path.to_path_buf(),
        source,
    };
    let Some(name) = path.file_name() else {
        let source = std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the path does not name a file",
        );
        return Err(io("write", path, source));
    };
    let tmp = path.with_file_name(format!(
        ".tmp-{}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        name.to_string_lossy()
    ));
    let written = write(&tmp)
        .map_err(AtomicWriteError::Write)
        .and_then(|()| {
            File::open(&tmp)
                .and_then(|f| f.sync_all())
                .map_err(|e| io("sync", &tmp, e))
        })
        .and_then(|()| fs::rename(&tmp, path).map_err(|e| io("rename onto", path, e)));
    if written.is_err() {
        // Best effort: the temporary file is ours and useless after a failure.
        let _ = fs::remove_file(&tmp);
        return written;
    }
    // Make the rename durable (best effort: not every platform can sync a directory).
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("atomic-write-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn entries(dir: &Path) -> usize {
        fs::read_dir(dir).unwrap().count()
    }

    #[test]
    fn replaces_the_content_and_leaves_no_temporary() {
        let dir = scratch("replace");
        let path = dir.join("a.json");
        write_atomic(&path, b"[1]").unwrap();
        write_atomic(&path, b"[2, 3]").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"[2, 3]");
        assert_eq!(entries(&dir), 1);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_failing_writer_keeps_the_old_file_and_removes_the_temporary() {
        let dir = scratch("fail");
        let path = dir.join("plot.png");
        write_atomic(&path, b"old").unwrap();
        let err = write_atomic_with(&path, |tmp| {
            assert_eq!(tmp.extension().unwrap(), "png", "the extension is kept");
            fs::write(tmp, b"half")?;
            Err::<(), _>(std::io::Error::other("encoder failed"))
        })
        .unwrap_err();
        assert!(matches!(err, AtomicWriteError::Write(_)), "{err}");
        assert_eq!(err.to_string(), "encoder failed");
        assert!(std::error::Error::source(&err).is_none());
        assert_eq!(fs::read(&path).unwrap(), b"old");
        assert_eq!(entries(&dir), 1);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_failing_rename_keeps_the_destination_and_removes_the_temporary() {
        let dir = scratch("rename");
        // The destination is a non-empty directory: the rename must fail.
        let blocker = dir.join("blocked.bin");
        fs::create_dir(&blocker).unwrap();
        fs::write(blocker.join("keep"), b"x").unwrap();
        let err = write_atomic(&blocker, b"new").unwrap_err();
        assert!(
            matches!(
                err,
                AtomicWriteError::Io {
                    op: "rename onto",
                    ..
                }
            ),
            "{err}"
        );
        assert!(std::error::Error::source(&err).is_some());
        assert_eq!(fs::read(blocker.join("keep")).unwrap(), b"x");
        assert_eq!(entries(&dir), 1, "no temporary file left behind");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_directory_or_file_name_is_an_io_error_naming_the_path() {
        let dir = scratch("missing");
        let err = write_atomic(&dir.join("no/such/dir/x.bin"), b"x").unwrap_err();
        assert!(err.to_string().contains("x.bin"), "{err}");
        let err = write_atomic(Path::new("/"), b"x").unwrap_err();
        assert!(
            matches!(err, AtomicWriteError::Io { op: "write", .. }),
            "{err}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
