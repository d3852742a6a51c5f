//! safetensors save / load of a [`ParamStore`].

use crate::Float;
use crate::nn::ParamStore;
use crate::optim::OptimizerState;
use atomic_write::AtomicWriteError;
use safetensors::tensor::{Metadata, SafeTensors, TensorView};
use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

/// Metadata key under which the registration order of the tensors is saved (a JSON
/// array of names); safetensors itself stores tensors sorted by name.
const ORDER_KEY: &str = "autodiff.order";

/// The element types a checkpoint can hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dtype {
    /// IEEE-754 binary32 (`F32` in safetensors, `torch.float32`).
    F32,
    /// IEEE-754 binary64 (`F64` in safetensors, `torch.float64`).
    F64,
}

impl Dtype {
    /// The dtype of `T`.
    pub fn of<T: Float>() -> Self {
        if TypeId::of::<T>() == TypeId::of::<f32>() {
            Dtype::F32
        } else {
            Dtype::F64
        }
    }

    fn to_st(self) -> safetensors::Dtype {
        match self {
            Dtype::F32 => safetensors::Dtype::F32,
            Dtype::F64 => safetensors::Dtype::F64,
        }
    }

    fn from_st(d: safetensors::Dtype) -> Option<Self> {
        match d {
            safetensors::Dtype::F32 => Some(Dtype::F32),
            safetensors::Dtype::F64 => Some(Dtype::F64),
            _ => None,
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F64 => 8,
        }
    }
}

impl std::fmt::Display for Dtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Dtype::F32 => "F32",
            Dtype::F64 => "F64",
        })
    }
}

/// Everything that can go wrong saving or loading a checkpoint. Each variant names the
/// file or the tensor concerned.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CheckpointError {
    /// The file system refused an operation.
    #[error("cannot {op} `{path}`: {message}")]
    Io {
        /// What was attempted ("read", "write", "rename", ...).
        op: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The kind of I/O error.
        kind: std::io::ErrorKind,
        /// The operating system's message.
        message: String,
    },
    /// The bytes are not a valid safetensors file.
    #[error("not a valid safetensors checkpoint: {message}")]
    Format {
        /// What the parser reported.
        message: String,
    },
    /// A parameter of the model is not in the checkpoint.
    #[error(
        "tensor `{name}` of the model is missing from the checkpoint (set LoadOptions::allow_missing to keep the model's values)"
    )]
    MissingTensor {
        /// Parameter name.
        name: String,
    },
    /// The checkpoint holds a tensor the model does not have.
    #[error(
        "tensor `{name}` of the checkpoint is not a parameter of the model (set LoadOptions::allow_unexpected to ignore it)"
    )]
    UnexpectedTensor {
        /// Tensor name.
        name: String,
    },
    /// A tensor has another shape in the file than in the model.
    #[error("tensor `{name}`: the checkpoint has shape {found:?}, the model expects {expected:?}")]
    ShapeMismatch {
        /// Parameter name.
        name: String,
        /// Shape in the model.
        expected: Vec<usize>,
        /// Shape in the file.
        found: Vec<usize>,
    },
    /// A tensor has another element type in the file than the model's.
    #[error(
        "tensor `{name}`: the checkpoint holds {found}, the model is {expected} (set LoadOptions::convert_dtype to convert F32 <-> F64)"
    )]
    DtypeMismatch {
        /// Parameter name.
        name: String,
        /// The model's dtype.
        expected: Dtype,
        /// The dtype in the file (safetensors' name, e.g. `"BF16"`).
        found: String,
    },
    /// A tensor cannot be represented in a [`ParamStore`] (more than 4 dimensions).
    #[error("tensor `{name}` cannot be loaded: {reason}")]
    Unsupported {
        /// Tensor name.
        name: String,
        /// Why.
        reason: String,
    },
}

impl CheckpointError {
    fn io(op: &'static str, path: &Path, e: &std::io::Error) -> Self {
        CheckpointError::Io {
            op,
            path: path.to_path_buf(),
            kind: e.kind(),
            message: e.to_string(),
        }
    }

    fn format(e: impl std::fmt::Display) -> Self {
        CheckpointError::Format {
            message: e.to_string(),
        }
    }
}

/// How strict [`load_safetensors_with`] is. The default is fully strict.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Convert `F32` ↔ `F64` tensors to the model's type (rounding to nearest for
    /// `F64 → F32`; `F32 → F64` is exact). Off: a different dtype is an error.
    pub convert_dtype: bool,
    /// Ignore tensors of the file that the model does not have. Off: an error.
    pub allow_unexpected: bool,
    /// Keep the model's current values for parameters missing from the file. Off: an
    /// error.
    pub allow_missing: bool,
}

/// Appends the little-endian bytes of `vals` (bit patterns unchanged).
fn encode<T: Float>(vals: &[T], out: &mut Vec<u8>) {
    for v in vals {
        let a = v as &dyn Any;
        if let Some(x) = a.downcast_ref::<f32>() {
            out.extend_from_slice(&x.to_le_bytes());
        } else if let Some(x) = a.downcast_ref::<f64>() {
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
}

/// Decodes little-endian `bytes` of type `dtype` into `out` (same number of elements):
/// bit-exact when `dtype` is `T`'s type, through `f64` otherwise.
fn decode<T: Float>(dtype: Dtype, bytes: &[u8], out: &mut [T]) {
    let n = dtype.size();
    for (o, c) in out.iter_mut().zip(bytes.chunks_exact(n)) {
        let (x32, x64) = match dtype {
            Dtype::F32 => {
                let x = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                (x, x as f64)
            }
            Dtype::F64 => {
                let x = f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
                (x as f32, x)
            }
        };
        let slot = o as &mut dyn Any;
        match (dtype, slot.downcast_mut::<f32>()) {
            (Dtype::F32, Some(d)) => *d = x32,
            (_, Some(d)) => *d = x64 as f32,
            (_, None) => *o = T::from_f64_const(x64),
        }
    }
}

/// Serialises named tensors `(name, dims, values)` (contiguous in `flat`, as ranges)
/// with the metadata `format = "pt"`, the order of the names, and `extra`.
fn serialize_named<T: Float>(
    flat: &[T],
    tensors: &[(&str, &[usize], std::ops::Range<usize>)],
    extra: &[(&str, String)],
) -> Result<Vec<u8>, CheckpointError> {
    let dtype = Dtype::of::<T>();
    let mut bytes = Vec::with_capacity(flat.len() * dtype.size());
    encode(flat, &mut bytes);
    let mut views = Vec::with_capacity(tensors.len());
    let mut order = Vec::with_capacity(tensors.len());
    for (name, dims, r) in tensors {
        let data = bytes
            .get(r.start * dtype.size()..r.end * dtype.size())
            .ok_or_else(|| CheckpointError::Unsupported {
                name: (*name).to_owned(),
                reason: "the tensor's range lies outside the buffer".to_owned(),
            })?;
        let view =
            TensorView::new(dtype.to_st(), dims.to_vec(), data).map_err(CheckpointError::format)?;
        views.push((*name, view));
        order.push(*name);
    }
    let mut meta = HashMap::new();
    meta.insert("format".to_owned(), "pt".to_owned());
    meta.insert(
        ORDER_KEY.to_owned(),
        serde_json::to_string(&order).map_err(CheckpointError::format)?,
    );
    for (k, v) in extra {
        meta.insert((*k).to_owned(), v.clone());
    }
    safetensors::serialize(views, Some(meta)).map_err(CheckpointError::format)
}

/// Serialises `store` into the bytes of a safetensors file: one tensor per registered
/// parameter, in `T`'s dtype, with metadata `format = "pt"` and the registration order.
pub fn to_safetensors_bytes<T: Float>(store: &ParamStore<T>) -> Result<Vec<u8>, CheckpointError> {
    let shapes: Vec<_> = store.params().iter().map(|p| p.view.shape()).collect();
    let tensors: Vec<_> = store
        .params()
        .iter()
        .zip(&shapes)
        .map(|(p, s)| (p.name.as_str(), s.dims(), p.view.range()))
        .collect();
    serialize_named(store.as_slice(), &tensors, &[])
}

/// [`atomic_write::write_atomic`] with the error as a [`CheckpointError`].
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    atomic_write::write_atomic(path, bytes).map_err(|e| match e {
        AtomicWriteError::Write(e) => CheckpointError::io("write", path, &e),
        AtomicWriteError::Io { op, path, source } => CheckpointError::io(op, &path, &source),
    })
}

/// Saves `store` to `path` as safetensors, atomically (see the [module docs](crate::io)).
pub fn save_safetensors<T: Float>(
    path: impl AsRef<Path>,
    store: &ParamStore<T>,
) -> Result<(), CheckpointError> {
    let bytes = to_safetensors_bytes(store)?;
    write_atomic(path.as_ref(), &bytes)
}

/// A tensor of a parsed file, checked to be F32 or F64 and at most 4-D.
struct FileTensor<'a> {
    dtype: Result<Dtype, String>,
    shape: Vec<usize>,
    data: &'a [u8],
}

fn parse(bytes: &[u8]) -> Result<(SafeTensors<'_>, Metadata), CheckpointError> {
    let st = SafeTensors::deserialize(bytes).map_err(CheckpointError::format)?;
    let (_, meta) = SafeTensors::read_metadata(bytes).map_err(CheckpointError::format)?;
    Ok((st, meta))
}

fn file_tensor<'a>(st: &SafeTensors<'a>, name: &str) -> Option<FileTensor<'a>> {
    let t = st.tensor(name).ok()?;
    Some(FileTensor {
        dtype: Dtype::from_st(t.dtype()).ok_or_else(|| format!("{:?}", t.dtype())),
        shape: t.shape().to_vec(),
        data: t.data(),
    })
}

/// Copies the tensors of a safetensors file (as bytes) into the parameters of `store`
/// with the same names, checking names, shapes and dtypes as `opts` says. Nothing is
/// written unless every check passes.
pub fn load_safetensors_bytes_with<T: Float>(
    bytes: &[u8],
    store: &mut ParamStore<T>,
    opts: &LoadOptions,
) -> Result<(), CheckpointError> {
    let (st, _) = parse(bytes)?;
    let want = Dtype::of::<T>();
    // Pass 1: validate everything.
    for p in store.params() {
        let Some(ft) = file_tensor(&st, &p.name) else {
            if opts.allow_missing {
                continue;
            }
            return Err(CheckpointError::MissingTensor {
                name: p.name.clone(),
            });
        };
        if ft.shape != p.view.shape().dims() {
            return Err(CheckpointError::ShapeMismatch {
                name: p.name.clone(),
                expected: p.view.shape().dims().to_vec(),
                found: ft.shape,
            });
        }
        match ft.dtype {
            Ok(d) if d == want || opts.convert_dtype => {}
            Ok(d) => {
                return Err(CheckpointError::DtypeMismatch {
                    name: p.name.clone(),
                    expected: want,
                    found: d.to_string(),
                });
            }
            Err(found) => {
                return Err(CheckpointError::DtypeMismatch {
                    name: p.name.clone(),
                    expected: want,
                    found,
                });
            }
        }
    }
    if !opts.allow_unexpected
        && let Some(extra) = st.names().into_iter().find(|n| store.view(n).is_none())
    {
        return Err(CheckpointError::UnexpectedTensor {
            name: extra.to_owned(),
        });
    }
    // Pass 2: copy.
    let views: Vec<_> = store
        .params()
        .iter()
        .map(|p| (p.name.clone(), p.view))
        .collect();
    let flat = store.as_mut_slice();
    for (name, view) in views {
        if let Some(ft) = file_tensor(&st, &name)
            && let (Ok(d), Some(out)) = (ft.dtype, view.slice_mut(flat))
        {
            decode(d, ft.data, out);
        }
    }
    Ok(())
}

/// Loads the checkpoint at `path` into `store`, strictly: every parameter must be in
/// the file with the same shape and dtype, and the file must hold nothing else. On an
/// error `store` is unchanged.
pub fn load_safetensors<T: Float>(
    path: impl AsRef<Path>,
    store: &mut ParamStore<T>,
) -> Result<(), CheckpointError> {
    load_safetensors_with(path, store, &LoadOptions::default())
}

/// [`load_safetensors`] with relaxed checks (see [`LoadOptions`]).
pub fn load_safetensors_with<T: Float>(
    path: impl AsRef<Path>,
    store: &mut ParamStore<T>,
    opts: &LoadOptions,
) -> Result<(), CheckpointError> {
    let path = path.as_ref();
    let bytes = fs::read(path).map_err(|e| CheckpointError::io("read", path, &e))?;
    load_safetensors_bytes_with(&bytes, store, opts)
}

/// Builds a new [`ParamStore`] from the bytes of a safetensors file: every tensor of the
/// file, in the order it was saved by this crate (or in file order for files from
/// elsewhere). F32/F64 tensors are converted to `T` if `convert_dtype`; otherwise they
/// must be `T`'s dtype. The store's seed is 0 (it only matters for
/// [`ParamStore::reinitialize`], which keeps loaded values).
pub fn from_safetensors_bytes<T: Float>(
    bytes: &[u8],
    convert_dtype: bool,
) -> Result<ParamStore<T>, CheckpointError> {
    let (st, meta) = parse(bytes)?;
    let mut names = meta.offset_keys();
    if let Some(saved) = meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get(ORDER_KEY))
        .and_then(|s| serde_json::from_str::<Vec<String>>(s).ok())
    {
        let mut a = saved.clone();
        let mut b = names.clone();
        a.sort();
        b.sort();
        if a == b {
            names = saved;
        }
    }
    let want = Dtype::of::<T>();
    let mut store = ParamStore::new(0);
    let mut buf = Vec::new();
    for name in names {
        let Some(ft) = file_tensor(&st, &name) else {
            return Err(CheckpointError::MissingTensor { name });
        };
        let d = match ft.dtype {
            Ok(d) if d == want || convert_dtype => d,
            Ok(d) => {
                return Err(CheckpointError::DtypeMismatch {
                    name,
                    expected: want,
                    found: d.to_string(),
                });
            }
            Err(found) => {
                return Err(CheckpointError::DtypeMismatch {
                    name,
                    expected: want,
                    found,
                });
            }
        };
        let n: usize = ft.shape.iter().product();
        buf.clear();
        buf.resize(n, T::zero());
        decode(d, ft.data, &mut buf);
        store
            .insert(&name, &ft.shape, &buf)
            .map_err(|e| CheckpointError::Unsupported {
                name: name.clone(),
                reason: e.to_string(),
            })?;
    }
    Ok(store)
}

/// Reads the safetensors file at `path` into a new [`ParamStore`] (see
/// [`from_safetensors_bytes`]).
pub fn read_safetensors<T: Float>(
    path: impl AsRef<Path>,
    convert_dtype: bool,
) -> Result<ParamStore<T>, CheckpointError> {
    let path = path.as_ref();
    let bytes = fs::read(path).map_err(|e| CheckpointError::io("read", path, &e))?;
    from_safetensors_bytes(&bytes, convert_dtype)
}

/// Metadata key of the step count in optimizer-state files.
const STEPS_KEY: &str = "autodiff.n_steps";

/// Saves an optimizer's state (see [`OptimizerState`]) to `path`, atomically: one 1-D
/// tensor per buffer, the step count in the metadata.
pub fn save_optimizer_state<T: Float>(
    path: impl AsRef<Path>,
    state: &OptimizerState<T>,
) -> Result<(), CheckpointError> {
    let mut flat = Vec::new();
    let mut ranges = Vec::with_capacity(state.buffers.len());
    for (_, b) in &state.buffers {
        ranges.push(flat.len()..flat.len() + b.len());
        flat.extend_from_slice(b);
    }
    let dims: Vec<[usize; 1]> = state.buffers.iter().map(|(_, b)| [b.len()]).collect();
    let tensors: Vec<_> = state
        .buffers
        .iter()
        .zip(&dims)
        .zip(ranges)
        .map(|(((n, _), d), r)| (n.as_str(), &d[..], r))
        .collect();
    let bytes = serialize_named(&flat, &tensors, &[(STEPS_KEY, state.n_steps.to_string())])?;
    write_atomic(path.as_ref(), &bytes)
}

/// Reads an optimizer state saved by [`save_optimizer_state`] (buffers in `T`'s dtype).
pub fn read_optimizer_state<T: Float>(
    path: impl AsRef<Path>,
) -> Result<OptimizerState<T>, CheckpointError> {
    let path = path.as_ref();
    let bytes = fs::read(path).map_err(|e| CheckpointError::io("read", path, &e))?;
    let (_, meta) = parse(&bytes)?;
    let n_steps = meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get(STEPS_KEY))
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| CheckpointError::Format {
            message: format!("no `{STEPS_KEY}` entry: not an optimizer state file"),
        })?;
    let store = from_safetensors_bytes::<T>(&bytes, false)?;
    let buffers = store
        .params()
        .iter()
        .map(|p| (p.name.clone(), store.get(&p.name).unwrap_or(&[]).to_vec()))
        .collect();
    Ok(OptimizerState { n_steps, buffers })
}
