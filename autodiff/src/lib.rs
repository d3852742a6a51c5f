//! Tensor-level, tape-based reverse-mode automatic differentiation for Neural ODE
//! dynamics `f(z, t, θ)`: from a small MLP to a convolutional ODENet block, evaluated
//! and differentiated thousands of times per ODE solve.
//!
//! # The maths
//!
//! A recording is a sequence of operations `v_i = φ_i(v_{j<i})` on dense row-major
//! tensors (up to 4-D). For an output `y` and a seed `a` (same shape), the reverse pass
//! computes the vector–Jacobian product `aᵀ ∂y/∂x` for every input `x` without forming
//! any Jacobian: with adjoints `v̄_y = a`, it visits the nodes in reverse and accumulates
//! `v̄_j += v̄_iᵀ ∂φ_i/∂v_j` (fan-out adds up). Each operation module pairs the forward
//! kernel with its VJP. [`Tape::backward_graph`] records the reverse pass itself as tape
//! operations (PyTorch's `create_graph`), so `aᵀ∂y/∂x` is again a differentiable
//! variable: second derivatives (FFJORD's Hutchinson term `εᵀ(∂f/∂z)ε`, Hamiltonian
//! networks, Jacobian regularisers) and forward-mode products `J v` ([`jvp`], by the
//! double-VJP trick `J v = ∂/∂u (uᵀJ v)`) follow.
//!
//! # Memory
//!
//! A [`Tape`] is an arena: node records in one `Vec`, all values in one `Vec<T>` and all
//! gradients in another, addressed by offsets; a [`Var`] is a 16-byte `Copy` handle.
//! [`Tape::reset`] keeps the capacity, so after the first evaluation, evaluating and
//! differentiating the same function again performs no heap allocation (tested with a
//! counting allocator). Recording is opt-in ([`Tape::set_recording`]): when off, each op
//! is its arithmetic plus one 80-byte node record.
//!
//! Views ([`Var::view`], [`Var::reshape`]) alias their input's values *and gradient*:
//! carve every layer's weights out of one flat parameter leaf and its gradient lands in
//! the matching range of the flat gradient.
//!
//! # Example: a Neural ODE right-hand side and its VJPs
//!
//! ```
//! use autodiff::{Error, Tape};
//! // f(z, t, θ) = W2 tanh(W1 z + b1 + t) + b2 for z: [batch, 2], hidden width 3.
//! let (batch, d, h) = (4, 2, 3);
//! let n_params = d * h + h + h * d + d;
//! let theta: Vec<f64> = (0..n_params).map(|i| 0.1 * (i as f64).sin()).collect();
//! let z: Vec<f64> = (0..batch * d).map(|i| i as f64 / 8.0).collect();
//!
//! let mut tape = Tape::<f64>::new();
//! let mut dz = vec![0.0; batch * d];
//! let (mut a_z, mut a_theta, mut a_t) = (vec![0.0; batch * d], vec![0.0; n_params], [0.0]);
//! let a = vec![1.0; batch * d]; // adjoint seed
//! for _eval in 0..3 {
//!     tape.reset(); // keeps all buffers: no allocation after the first pass
//!     tape.set_recording(true);
//!     let zv = tape.leaf(&z, &[batch, d])?;
//!     let tv = tape.leaf(&[0.5], &[1])?;
//!     let th = tape.leaf(&theta, &[n_params])?;
//!     let w1 = th.view(0, &[d, h]);
//!     let b1 = th.view(d * h, &[h]);
//!     let w2 = th.view(d * h + h, &[h, d]);
//!     let b2 = th.view(d * h + h + h * d, &[d]);
//!     let hid = (zv.matmul(w1) + b1 + tv).tanh();
//!     let out = hid.matmul(w2) + b2;
//!     out.value_into(&mut dz)?;
//!     tape.backward(out, &a)?; // aᵀ ∂f/∂(z, θ, t)
//!     zv.grad_into(&mut a_z)?;
//!     th.grad_into(&mut a_theta)?;
//!     tv.grad_into(&mut a_t)?;
//! }
//! // d/dt of Σ f = Σ_batch Σ_j (1 − hid²) (W2 1)_j: check against a difference.
//! assert!(a_t[0].is_finite() && a_theta.iter().all(|g| g.is_finite()));
//! # Ok::<(), Error>(())
//! ```
//!
//! # Second derivatives
//!
//! ```
//! use autodiff::{Error, Tape};
//! let tape = Tape::<f64>::new();
//! tape.set_recording(true);
//! let x = tape.leaf(&[0.3, -0.2], &[2])?;
//! let y = x.tanh().sum(); // ∂y/∂x = 1 − tanh²x
//! let one = tape.constant(&[1.0], &[])?;
//! tape.backward_graph(y, one)?;
//! let g = tape.gradient(x)?; // a Var
//! let s = g.sum(); // Σ (1 − tanh² x); ∂s/∂x = −2 tanh x (1 − tanh² x)
//! tape.backward(s, &[1.0])?;
//! let h = x.grad()?;
//! let t = 0.3f64.tanh();
//! assert!((h[0] + 2.0 * t * (1.0 - t * t)).abs() < 1e-12);
//! # Ok::<(), Error>(())
//! ```

//! # Operations and modules
//!
//! One module per family in [`ops`], each with its forward kernel, its fast VJP (slice
//! kernels accumulating into the gradient arena) and its VJP written as tape operations
//! (for [`Tape::backward_graph`]): elementwise binary ops with NumPy broadcasting,
//! scalar ops, unary functions, matrix products (faer, `Par::Seq`), reductions, shape
//! ops (views, concat, narrow/split), the convolution family (conv2d by im2col + one
//! GEMM per chunk of samples, average pooling, global average pooling, group norm) and
//! the losses (log-softmax, cross-entropy, Gaussian log-likelihood, diagonal-Gaussian
//! KL). [`CustomOp`] plugs in user kernels.
//!
//! Every built-in op has a recorded backward, so derivatives of any order exist (the
//! tests check second and third derivatives of every op against finite differences). The
//! convolution family is closed under differentiation: the VJPs of `conv2d` are a
//! transposed convolution and a weight correlation, recorded as ops whose own VJPs are
//! again convolutions of the three kinds; average pooling and its transpose are each
//! other's VJP. A [`CustomOp`] takes part in [`Tape::backward_graph`] when it implements
//! [`CustomOp::backward_graph`] (its VJP written with `Var` operations); otherwise
//! `backward_graph` returns [`Error::BackwardNotSupported`] naming the op, never a wrong
//! answer.
//!
//! # Networks, optimizers and checkpoints
//!
//! Built on the tape: [`nn`] (Linear, Mlp with optional time input, Conv2d, GroupNorm,
//! GruCell over one flat `ParamStore`), [`optim`] (Sgd, Adam/AdamW, schedules, resumable
//! state), [`io`] (safetensors, atomic, bit-exact).
//!
//! # Speed
//!
//! The elementwise transcendentals (`tanh`, `exp`, `sigmoid`, `log`, `softplus`, `sin`,
//! `cos`) run as branch-free slice kernels ([`vmath`], 1–3 ulp from libm, tested on
//! dense grids and special values), and the elementwise loops of the binary and unary
//! ops and of their VJPs are dispatched at run time to copies compiled for AVX-512 or
//! AVX2+FMA (the crate itself stays baseline x86-64; no `RUSTFLAGS` needed). Outputs
//! that an op overwrites entirely reuse the arena's stale values instead of zeroing
//! them first, and in the reverse pass a node whose only use is an elementwise op, a
//! bias add or a matrix product gets its gradient written (`=`) instead of zeroed and
//! accumulated (tested: a recording poisoned with NaN and inf changes nothing); a bias
//! add `x·W + b` (`b` a row repeated over `x·W`) is recorded with its value deferred,
//! and an elementwise op applied to it next (`(x·W + b).tanh()`, as users write it)
//! computes `f(x·W + b)` in one pass over L1-sized row chunks instead of two passes
//! over tensors that may not fit in L2 (anything else that reads the sum computes it
//! first; the sum's value is written in the same pass when the op's VJP needs it), and
//! a large product `x·W` under such a bias add is deferred too and computed by chunks
//! of rows into a cache-sized buffer that the bias and the op read (its value, which no
//! VJP reads, is never stored unless something asks for it);
//! `vzeroupper` follows every faer call: faer's AVX-512 kernels leave the upper halves of
//! the vector registers dirty, and SSE-encoded code that runs next (glibc's scalar `tanh`,
//! for one) would pay a state-transition penalty on every instruction until they are
//! cleared.
//!
//! `cargo bench -p benches --bench autodiff` measures a 2→64→64→2 tanh MLP and a
//! convolutional block against candle and PyTorch, and the slice kernels against libm;
//! the recorded figures are in `benches/README.md`.
//!
//! # Requirements and references
//!
//! Shapes are at most 4-D, row-major; `matmul` is 2-D (fold batch dimensions with
//! `reshape`). References: Griewank & Walther, *Evaluating Derivatives* (2008), for
//! reverse mode and the double-VJP forward product; Chen et al. (2018) and Grathwohl et
//! al. (2019, FFJORD) for the uses; Cephes (Moshier) for the `tanh`, `exp`-Padé and
//! `sin`/`cos` approximations; musl (after fdlibm) for `log`.

mod api;
mod error;
mod float;
pub mod io;
pub mod nn;
pub mod ops;
pub mod optim;
mod shape;
mod tape;
mod var;
pub mod vmath;

pub use api::{
    GradcheckReport, default_gradcheck_tolerance, func, grad, gradcheck, jacobian, jvp, vjp,
};
pub use error::{CustomOpError, Error, NonFiniteInfo};
pub use float::Float;
pub use ops::CustomOp;
pub use ops::conv::{Winograd, set_winograd};
pub use real::Real;
pub use shape::Shape;
pub use tape::{Tape, Var};
