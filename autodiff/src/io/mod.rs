//! Parameter checkpoints in the [safetensors] format, readable from PyTorch
//! (`safetensors.torch.load_file`) and JAX / NumPy (`safetensors.numpy.load_file`).
//!
//! A [`ParamStore`](crate::nn::ParamStore) is saved as one tensor per named view (`"fc1.weight"`, shape
//! `[out, in]`, ...), little-endian, in the store's own dtype (`F32` for `f32`, `F64` for
//! `f64`): the bytes are the IEEE-754 bit patterns of the flat buffer, so a save followed
//! by a load is bit-exact (NaN payloads, signed zeros and subnormals included). The
//! header carries the metadata `{"format": "pt"}` that PyTorch tooling expects.
//!
//! Writes are atomic (the workspace's `atomic-write` crate): the bytes go to a temporary
//! file in the destination's directory, are flushed to disk (`fsync`), and the temporary
//! file is renamed over the destination. A crash leaves either the old checkpoint or the
//! new one, never a torn file.
//!
//! Loading into an existing store ([`load_safetensors`]) is strict by default: every
//! registered parameter must be in the file with the same shape and the same dtype,
//! otherwise [`CheckpointError::MissingTensor`], [`CheckpointError::ShapeMismatch`] or
//! [`CheckpointError::DtypeMismatch`] names the tensor. [`LoadOptions`] relaxes this
//! (convert `F32` ↔ `F64`, ignore tensors the store does not know).
//!
//! [`save_optimizer_state`] / [`read_optimizer_state`] do the same for an optimizer's
//! moment buffers and step count ([`OptimizerState`](crate::optim::OptimizerState)), so
//! that training resumes exactly.
//!
//! ```
//! use autodiff::io::{load_safetensors, save_safetensors};
//! use autodiff::nn::{Linear, ParamStore};
//!
//! let mut store = ParamStore::<f32>::new(42);
//! let _fc = Linear::new(&mut store, "fc", 3, 2, true)?;
//! let dir = std::env::temp_dir().join(format!("autodiff-io-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! let path = dir.join("model.safetensors");
//! save_safetensors(&path, &store)?;
//!
//! let mut other = ParamStore::<f32>::new(7); // same layout, different values
//! let _fc2 = Linear::new(&mut other, "fc", 3, 2, true)?;
//! load_safetensors(&path, &mut other)?;
//! assert_eq!(other.as_slice(), store.as_slice());
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [safetensors]: https://huggingface.co/docs/safetensors

mod safetensors_io;

pub use safetensors_io::{
    CheckpointError, Dtype, LoadOptions, from_safetensors_bytes, load_safetensors,
    load_safetensors_bytes_with, load_safetensors_with, read_optimizer_state, read_safetensors,
    save_optimizer_state, save_safetensors, to_safetensors_bytes,
};
