//! Training checkpoints: parameters, optimizer state and loop position in one directory.
//!
//! # Layout
//!
//! A checkpoint of step `s` in directory `dir` is three files:
//!
//! * `dir/params-{s}.safetensors`: the model's [`ParamStore`](autodiff::nn::ParamStore)
//!   under its names ([`autodiff::io::save_safetensors`]; `safetensors.torch.load_file`
//!   reads it);
//! * `dir/optimizer-{s}.safetensors`: the optimizer's [`OptimizerState`] (moment
//!   buffers under PyTorch's names, the step count, which also positions a learning-rate
//!   schedule; [`autodiff::io::save_optimizer_state`]);
//! * `dir/checkpoint.txt`, the manifest: `key = value` lines with the format
//!   (`models.training.v1`), the model's name, dtype and number of parameters, the loop
//!   [`Position`] (`epoch`, `batch`, `step`) and the two file names.
//!
//! Every file is written atomically (temporary file, `fsync`, rename: the `atomic-write`
//! crate) and the manifest last, after which files of older steps are removed. A crash
//! at any point leaves a manifest naming a complete earlier or new checkpoint.
//!
//! # Resuming
//!
//! [`Trainer::resume`](super::Trainer::resume) reads the manifest, checks the model name,
//! dtype and number of parameters against the model it is given (a mismatch is a
//! [`ModelsError::InvalidArgument`] naming both), loads the parameters strictly (every
//! tensor name and shape must match: [`ModelsError::Checkpoint`] names the tensor) and the
//! optimizer state (its buffers must fit this optimizer), and only then changes the
//! model, the optimizer and the position. Hyper-parameters (learning rate, schedule,
//! betas, clipping, epochs) are not in the checkpoint: they come from the optimizer and
//! [`TrainConfig`](super::TrainConfig) of the resuming trainer, so give it the same
//! ones for an exact continuation. The data loader replays the current epoch from its
//! seed and skips the batches already trained on.

use std::fs;
use std::path::{Path, PathBuf};

use autodiff::Float;
use autodiff::io::{
    Dtype, load_safetensors, read_optimizer_state, save_optimizer_state, save_safetensors,
};
use autodiff::optim::{Optimizer, OptimizerState};

use super::model::Model;
use super::neural_ode::check_name;
use super::trainer::{Position, Trainer};
use crate::ModelsError;

/// The manifest's file name in a checkpoint directory.
pub const MANIFEST: &str = "checkpoint.txt";

/// The format tag written in, and required of, manifests.
pub const FORMAT: &str = "models.training.v1";

/// What a manifest records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The model's name ([`Model::name`]).
    pub model: String,
    /// The parameters' element type.
    pub dtype: Dtype,
    /// Number of scalar parameters.
    pub n_params: usize,
    /// Where training stood.
    pub position: Position,
    /// File name of the parameters, relative to the directory.
    pub params_file: String,
    /// File name of the optimizer state, relative to the directory.
    pub optimizer_file: String,
}

impl Manifest {
    fn to_text(&self) -> String {
        format!(
            "format = {FORMAT}\nmodel = {}\ndtype = {}\nn_params = {}\nepoch = {}\nbatch = {}\nstep = {}\nparams = {}\noptimizer = {}\n",
            self.model,
            self.dtype,
            self.n_params,
            self.position.epoch,
            self.position.batch,
            self.position.step,
            self.params_file,
            self.optimizer_file,
        )
    }

    fn parse(text: &str, path: &Path) -> Result<Self, ModelsError> {
        let bad = |line: usize, column: usize, reason: String| ModelsError::Data {
            path: path.to_path_buf(),
            line,
            column,
            reason,
        };
        let mut entries: Vec<(&str, &str, usize)> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let Some((k, v)) = line.split_once(" = ") else {
                return Err(bad(i + 1, 1, "expected `key = value`".into()));
            };
            entries.push((k.trim(), v, i + 1));
        }
        let last_line = text.lines().count().max(1);
        let get = |key: &str| {
            entries
                .iter()
                .find(|(k, _, _)| *k == key)
                .map(|&(_, v, l)| (v, l))
                .ok_or_else(|| bad(last_line, 1, format!("the manifest has no `{key}` entry")))
        };
        let number = |key: &str| -> Result<u64, ModelsError> {
            let (v, l) = get(key)?;
            v.parse().map_err(|_| {
                bad(
                    l,
                    key.len() + 4,
                    format!("`{key}` must be a whole number, got {v:?}"),
                )
            })
        };
        let (format, l) = get("format")?;
        if format != FORMAT {
            return Err(bad(
                l,
                10,
                format!("unknown checkpoint format {format:?} (this version reads {FORMAT:?})"),
            ));
        }
        let (dtype, l) = get("dtype")?;
        let dtype = match dtype {
            "F32" => Dtype::F32,
            "F64" => Dtype::F64,
            other => return Err(bad(l, 9, format!("unknown dtype {other:?} (F32 or F64)"))),
        };
        Ok(Self {
            model: get("model")?.0.to_owned(),
            dtype,
            n_params: number("n_params")? as usize,
            position: Position {
                epoch: number("epoch")?,
                batch: number("batch")?,
                step: number("step")?,
            },
            params_file: get("params")?.0.to_owned(),
            optimizer_file: get("optimizer")?.0.to_owned(),
        })
    }
}

fn io_error(path: &Path, source: std::io::Error) -> ModelsError {
    ModelsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn checkpoint_error(path: &Path, source: autodiff::io::CheckpointError) -> ModelsError {
    ModelsError::Checkpoint {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads the manifest of the checkpoint in `dir`.
pub fn read_manifest(dir: &Path) -> Result<Manifest, ModelsError> {
    let path = dir.join(MANIFEST);
    let text = fs::read_to_string(&path).map_err(|e| io_error(&path, e))?;
    Manifest::parse(&text, &path)
}

/// Writes the checkpoint (see the module docs).
pub(super) fn save<T: Float, O: Optimizer<T>, M: Model<T>>(
    trainer: &Trainer<T, O>,
    model: &M,
    dir: &Path,
) -> Result<(), ModelsError> {
    check_name(model.name())?;
    fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
    let step = trainer.position.step;
    let manifest = Manifest {
        model: model.name().to_owned(),
        dtype: Dtype::of::<T>(),
        n_params: model.params().n_params(),
        position: trainer.position,
        params_file: format!("params-{step}.safetensors"),
        optimizer_file: format!("optimizer-{step}.safetensors"),
    };
    let params = dir.join(&manifest.params_file);
    save_safetensors(&params, model.params()).map_err(|e| checkpoint_error(&params, e))?;
    let opt = dir.join(&manifest.optimizer_file);
    save_optimizer_state(&opt, &trainer.optimizer.state())
        .map_err(|e| checkpoint_error(&opt, e))?;
    let path = dir.join(MANIFEST);
    atomic_write::write_atomic(&path, manifest.to_text().as_bytes()).map_err(|e| match e {
        atomic_write::AtomicWriteError::Write(e) => io_error(&path, e),
        atomic_write::AtomicWriteError::Io { path, source, .. } => io_error(&path, source),
    })?;
    remove_stale(dir, &manifest);
    Ok(())
}

/// Removes the parameter and optimizer files of other steps (best effort: a file that
/// cannot be removed only costs space).
fn remove_stale(dir: &Path, keep: &Manifest) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let ours = ["params-", "optimizer-"].iter().any(|p| {
            name.strip_prefix(p)
                .and_then(|r| r.strip_suffix(".safetensors"))
                .is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        });
        if ours && name != keep.params_file && name != keep.optimizer_file {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// A file named by a manifest, which must be a plain name inside the directory.
fn member(dir: &Path, manifest_path: &Path, name: &str) -> Result<PathBuf, ModelsError> {
    let plain = Path::new(name).file_name().is_some_and(|f| f == name);
    if !plain {
        return Err(ModelsError::InvalidArgument {
            name: "checkpoint",
            reason: format!(
                "{} names the file {name:?}, which is not a plain file name in the checkpoint directory",
                manifest_path.display()
            ),
        });
    }
    Ok(dir.join(name))
}

/// Restores a checkpoint (see the module docs).
pub(super) fn resume<T: Float, O: Optimizer<T>, M: Model<T>>(
    trainer: &mut Trainer<T, O>,
    model: &mut M,
    dir: &Path,
) -> Result<Position, ModelsError> {
    let manifest = read_manifest(dir)?;
    let manifest_path = dir.join(MANIFEST);
    let (dtype, n_params) = (Dtype::of::<T>(), model.params().n_params());
    if manifest.model != model.name() || manifest.dtype != dtype || manifest.n_params != n_params {
        return Err(ModelsError::InvalidArgument {
            name: "checkpoint",
            reason: format!(
                "{} holds model `{}` ({}, {} parameters), but the model to resume is `{}` ({}, {} parameters)",
                manifest_path.display(),
                manifest.model,
                manifest.dtype,
                manifest.n_params,
                model.name(),
                dtype,
                n_params
            ),
        });
    }
    let params_path = member(dir, &manifest_path, &manifest.params_file)?;
    let mut store = model.params().clone();
    load_safetensors(&params_path, &mut store).map_err(|e| checkpoint_error(&params_path, e))?;
    let opt_path = member(dir, &manifest_path, &manifest.optimizer_file)?;
    let state: OptimizerState<T> =
        read_optimizer_state(&opt_path).map_err(|e| checkpoint_error(&opt_path, e))?;
    if let Some((name, b)) = state
        .buffers
        .iter()
        .find(|(_, b)| !b.is_empty() && b.len() != n_params)
    {
        return Err(ModelsError::InvalidArgument {
            name: "checkpoint",
            reason: format!(
                "{}: optimizer buffer `{name}` has {} values, the model has {n_params} parameters",
                opt_path.display(),
                b.len()
            ),
        });
    }
    trainer.optimizer.load_state(&state)?;
    model.params_mut().copy_from_slice(store.as_slice())?;
    trainer.position = manifest.position;
    Ok(manifest.position)
}
