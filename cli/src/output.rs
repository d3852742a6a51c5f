//! Files the program writes: atomically (a temporary file in the same directory,
//! then a rename), so an interrupted run never leaves a truncated result behind.

use std::fs;
use std::path::Path;

use atomic_write::AtomicWriteError;

use crate::error::CliError;

/// Writes `bytes` to `path` atomically ([`atomic_write::write_atomic`]: a temporary
/// sibling file is written and synced, then renamed over `path`). Creates the parent
/// directory if needed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    create_parent(path)?;
    atomic_write::write_atomic(path, bytes).map_err(|e| {
        io_error(e, |source| CliError::Io {
            path: path.to_path_buf(),
            source,
        })
    })
}

/// Serialises `value` as pretty JSON and writes it atomically to `path`.
pub fn write_json<V: serde::Serialize>(path: &Path, value: &V) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value).map_err(|source| CliError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    write_atomic(path, text.as_bytes())
}

/// Runs `write` on a temporary sibling of `path` (keeping its extension), then renames it
/// over `path` ([`atomic_write::write_atomic_with`]); for writers (such as image encoders)
/// that insist on opening the file themselves. Creates the parent directory if needed.
pub fn write_atomic_with<E>(
    path: &Path,
    write: impl FnOnce(&Path) -> Result<(), E>,
    describe: impl FnOnce(E) -> CliError,
) -> Result<(), CliError> {
    create_parent(path)?;
    atomic_write::write_atomic_with(path, write).map_err(|e| io_error(e, describe))
}

/// Creates `path`'s directory; an error names `path` (the file the user asked for).
fn create_parent(path: &Path) -> Result<(), CliError> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => fs::create_dir_all(dir).map_err(|source| CliError::Io {
            path: path.to_path_buf(),
            source,
        }),
        None => Ok(()),
    }
}

/// An atomic write's error as a [`CliError`], the writer's own through `describe`.
fn io_error<E>(e: AtomicWriteError<E>, describe: impl FnOnce(E) -> CliError) -> CliError {
    match e {
        AtomicWriteError::Write(e) => describe(e),
        AtomicWriteError::Io { path, source, .. } => CliError::Io { path, source },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_content_and_leaves_no_temporary() {
        let dir = std::env::temp_dir().join(format!("cli-output-{}", std::process::id()));
        let path = dir.join("a.json");
        write_json(&path, &vec![1, 2, 3]).unwrap();
        write_atomic(&path, b"[4]").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "[4]");
        let leftovers: Vec<_> = fs::read_dir(&dir).unwrap().filter_map(Result::ok).collect();
        assert_eq!(leftovers.len(), 1, "only the written file remains");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn write_into_a_file_path_reports_the_path() {
        let file = std::env::temp_dir().join(format!("cli-output-file-{}", std::process::id()));
        fs::write(&file, b"x").unwrap();
        let err = write_atomic(&file.join("inner.json"), b"{}").unwrap_err();
        assert!(err.to_string().contains("inner.json"), "{err}");
        fs::remove_file(&file).unwrap();
    }
}
