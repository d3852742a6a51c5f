//! The error type of the `models` crate.

use std::path::PathBuf;

/// Everything that can go wrong in `models`.
#[derive(Debug, thiserror::Error)]
pub enum ModelsError {
    /// Reading or writing a data file failed.
    #[error("cannot write or read {path}: {source}")]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// A data file is malformed; names the line and column (both 1-based).
    #[error("{path}:{line}:{column}: {reason}")]
    Data {
        /// The file read.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// 1-based column number (the field, counting from 1).
        column: usize,
        /// What is wrong there.
        reason: String,
    },
    /// A binary data file (IDX, gzip) is malformed; names the byte offset where reading
    /// failed (0-based, in the decompressed data).
    #[error("{path}: byte {offset}: {reason}")]
    BinaryData {
        /// The file read.
        path: PathBuf,
        /// 0-based byte offset (after decompression) of the offending field.
        offset: usize,
        /// What is wrong there.
        reason: String,
    },
    /// An argument (a size, a window, a setting) is invalid.
    #[error("invalid {name}: {reason}")]
    InvalidArgument {
        /// The option concerned.
        name: &'static str,
        /// Why it is rejected.
        reason: String,
    },
    /// An ODE solve failed.
    #[error(transparent)]
    Solve(#[from] ode_solvers::SolveError),
    /// Saving or loading parameters failed.
    #[error("checkpoint {path}: {}", checkpoint_words(source))]
    Checkpoint {
        /// The safetensors file.
        path: PathBuf,
        /// What went wrong.
        source: autodiff::io::CheckpointError,
    },
    /// A checkpoint file cannot be used: not a safetensors file, or its tensors do not
    /// fit the model. Names the file and says what to do.
    #[error("checkpoint {path}: {reason}")]
    CheckpointFile {
        /// The safetensors file.
        path: PathBuf,
        /// What is wrong and what to do.
        reason: String,
    },
    /// A checkpoint was saved for another model architecture than the one loading it.
    #[error(
        "checkpoint {path} was saved for {file}, but this model is {model}: give the options of the run that wrote it (or train without it)"
    )]
    ArchitectureMismatch {
        /// The safetensors file.
        path: PathBuf,
        /// The architecture recorded in the file.
        file: String,
        /// The architecture of the model loading it.
        model: String,
    },
    /// A non-finite value appeared where training cannot continue.
    #[error(
        "non-finite {what} at index {index}: lower the learning rate or tighten the tolerances"
    )]
    NonFinite {
        /// What became non-finite.
        what: &'static str,
        /// The first offending index.
        index: usize,
    },
    /// A gradient through an ODE solve failed.
    #[error(transparent)]
    Adjoint(#[from] adjoint::Error),
    /// A network or optimizer operation failed.
    #[error(transparent)]
    Autodiff(#[from] autodiff::Error),
}

/// A checkpoint error's message without the advice on Rust API options (`LoadOptions`),
/// which a user of a program cannot set: what to do instead.
fn checkpoint_words(e: &autodiff::io::CheckpointError) -> String {
    e.to_string()
        .replace(
            " (set LoadOptions::allow_missing to keep the model's values)",
            ": the file was saved from another model or configuration",
        )
        .replace(
            " (set LoadOptions::allow_unexpected to ignore it)",
            ": the file was saved from another model or configuration",
        )
        .replace(
            " (set LoadOptions::convert_dtype to convert F32 <-> F64)",
            ": convert the file's tensors to the model's float type",
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_errors_name_the_file_and_no_rust_option() {
        use autodiff::io::CheckpointError;
        for source in [
            CheckpointError::MissingTensor {
                name: "f.0.weight".into(),
            },
            CheckpointError::UnexpectedTensor { name: "x".into() },
            CheckpointError::DtypeMismatch {
                name: "x".into(),
                expected: autodiff::io::Dtype::F64,
                found: "F32".into(),
            },
        ] {
            let e = ModelsError::Checkpoint {
                path: "run/params.safetensors".into(),
                source,
            }
            .to_string();
            assert!(e.contains("run/params.safetensors"), "{e}");
            assert!(!e.contains("LoadOptions"), "{e}");
        }
    }
}
