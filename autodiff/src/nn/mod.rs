//! Network building blocks over one flat parameter buffer: [`Linear`], [`Mlp`] (with the
//! time as an optional input), [`Conv2d`], [`GroupNorm`], [`GruCell`],
//! [`ConcatSquashLinear`].
//!
//! # One flat buffer, named views
//!
//! A model's parameters `θ ∈ ℝᴾ` live in one [`ParamStore`]: a `Vec<T>` plus the ordered
//! list of named tensors carved out of it (`"f.0.weight"` at offset 0 with shape
//! `[64, 3]`, ...). Layers keep only [`ParamView`]s (offset + shape). A forward pass puts
//! `θ` on the tape once ([`ParamStore::leaf`]) and every layer takes zero-copy views of
//! it, so after `tape.backward(y, a)` the flat gradient `aᵀ ∂y/∂θ` comes out in the same
//! layout: the slice the adjoint integrates, the slice an
//! [`Optimizer`](crate::optim::Optimizer) consumes, the buffer [`io`](crate::io) saves by
//! name.
//!
//! # Layers and their maths
//!
//! - [`Linear`]: `y = x Wᵀ + b`, `W ∈ ℝ^{out×in}` (PyTorch's layout).
//! - [`Mlp`]: `y = L_k ∘ σ ∘ … ∘ σ ∘ L_1 (x)`, optionally on `[x, t]`
//!   ([`MlpBuilder::time_input`]) for a time-dependent vector field `f(z, t, θ)`.
//! - [`Conv2d`]: `y[n,o] = b_o + Σ_c W[o,c] ⋆ x[n,c]` with stride and zero padding.
//! - [`GroupNorm`]: `y = γ (x − μ_g)/√(σ²_g + ε) + β`, statistics per sample and group.
//! - [`GruCell`]: `h' = (1 − z) ⊙ n + z ⊙ h` with reset gate `r`, update gate `z` and
//!   candidate `n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))`.
//! - [`ConcatSquashLinear`] (FFJORD): `y = (x Wᵀ + b) ⊙ σ(t w_g + b_g) + t w_b`.
//!
//! Names, layouts and default initialisations are PyTorch's, so a checkpoint saved with
//! [`io::save_safetensors`](crate::io::save_safetensors) loads into the equivalent
//! `torch.nn` module with `load_state_dict(safetensors.torch.load_file(path))`.
//! Initialisation draws from the store's `StdRng::seed_from_u64(seed)` in registration
//! order: weights and biases `U(−1/√fan_in, 1/√fan_in)`, group-norm `γ = 1`, `β = 0`.
//!
//! # Example: a time-dependent MLP vector field and its parameter gradient
//!
//! ```
//! use autodiff::nn::{Activation, Mlp, ParamStore};
//! use autodiff::{Error, Tape};
//!
//! let mut store = ParamStore::<f64>::new(0);
//! let f = Mlp::builder(2, 2)
//!     .hidden(&[16, 16])
//!     .activation(Activation::Tanh)
//!     .time_input(true)
//!     .build(&mut store, "f")?;
//! assert_eq!(store.n_params(), 3 * 16 + 16 + 16 * 16 + 16 + 16 * 2 + 2);
//! assert_eq!(store.names().next(), Some("f.0.weight"));
//!
//! let mut tape = Tape::new();
//! let mut dtheta = store.zeros_like();
//! for _ in 0..2 {
//!     tape.reset(); // reuses every buffer
//!     tape.set_recording(true);
//!     let theta = store.leaf(&tape)?;
//!     let z = tape.constant(&[0.5, -1.0, 0.25, 2.0], &[2, 2])?;
//!     let t = tape.constant(&[0.3], &[])?;
//!     let dz = f.forward_t(theta, z, t);
//!     let loss = dz.square().sum();
//!     tape.backward_scalar(loss)?;
//!     theta.grad_into(&mut dtheta)?; // dL/dθ, laid out like `store`
//! }
//! assert!(dtheta.iter().any(|g| *g != 0.0));
//! # Ok::<(), Error>(())
//! ```

mod layers;
mod mlp;
mod params;

pub use layers::{
    Activation, ConcatSquashLinear, Conv2d, Conv2dConfig, GroupNorm, GruCell, Linear, Module,
};
pub use mlp::{Mlp, MlpBuilder};
pub use params::{Init, ParamInfo, ParamStore, ParamView};
