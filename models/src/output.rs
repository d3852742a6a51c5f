//! Files the program writes: atomically (a temporary file in the same directory,
//! then a rename), so an interrupted run never leaves a truncated result behind.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::ModelsError;

/// Writes `bytes` to `path` atomically: a temporary sibling file is written and
/// synced, then renamed over `path`. Creates the parent directory if needed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ModelsError> {
    write_atomic_with(
        path,
        |tmp| {
            let mut file = fs::File::create(tmp)?;
            file.write_all(bytes)?;
            file.sync_all()
        },
        |source| ModelsError::Io {
            path: path.to_path_buf(),
            source,
        },
    )
}

/// Serialises `value` as pretty JSON and writes it atomically to `path`.
pub fn write_json<V: serde::Serialize>(path: &Path, value: &V) -> Result<(), ModelsError> {
    let text = serde_json::to_string_pretty(value).map_err(|source| ModelsError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    write_atomic(path, text.as_bytes())
}

/// The temporary name used while writing `path`: hidden, in the same directory (so the
/// final rename stays on one file system), unique to this process, and keeping the
/// extension (image encoders choose the format from it).
pub(crate) fn temporary_sibling(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".tmp-{}-{name}", std::process::id()))
}

/// Runs `write` on a temporary sibling of `path`, then renames it over `path`; for
/// writers (such as image encoders) that insist on opening the file themselves.
pub fn write_atomic_with<E>(
    path: &Path,
    write: impl FnOnce(&Path) -> Result<(), E>,
    describe: impl FnOnce(E) -> ModelsError,
) -> Result<(), ModelsError> {
    let io = |source| ModelsError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(io)?;
    }
    let tmp = temporary_sibling(path);
    if let Err(e) = write(&tmp) {
        // Best effort: the temporary file is ours and useless after a failure.
        let _ = fs::remove_file(&tmp);
        return Err(describe(e));
    }
    fs::rename(&tmp, path).map_err(|source| {
        let _ = fs::remove_file(&tmp);
        io(source)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_content_and_leaves_no_temporary() {
        let dir = std::env::temp_dir().join(format!("models-output-{}", std::process::id()));
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
        let file = std::env::temp_dir().join(format!("models-output-file-{}", std::process::id()));
        fs::write(&file, b"x").unwrap();
        let err = write_atomic(&file.join("inner.json"), b"{}").unwrap_err();
        assert!(err.to_string().contains("inner.json"), "{err}");
        fs::remove_file(&file).unwrap();
    }
}
