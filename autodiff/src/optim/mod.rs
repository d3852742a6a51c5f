//! First-order optimizers over one flat parameter slice: [`Sgd`] (momentum, Nesterov,
//! weight decay), [`Adam`] and AdamW ([`Adam::adamw`]), learning-rate [`Schedule`]s and
//! [`clip_grad_norm`].
//!
//! # The updates (PyTorch's conventions, step `t = 1, 2, …`)
//!
//! SGD with momentum `μ`, dampening `τ`, weight decay `λ`:
//!
//! ```text
//! g ← g + λ θ;   b ← g (t = 1),  b ← μ b + (1 − τ) g (t > 1);
//! θ ← θ − η (g + μ b)  (Nesterov)   or   θ ← θ − η b
//! ```
//!
//! Adam (Kingma & Ba, 2015) with `β₁, β₂, ε`, and the two kinds of weight decay:
//!
//! ```text
//! AdamW:  θ ← θ (1 − η λ)                 (decoupled, Loshchilov & Hutter 2019)
//! Adam:   g ← g + λ θ                     (L2 penalty)
//! m ← β₁ m + (1 − β₁) g;   v ← β₂ v + (1 − β₂) g²
//! θ ← θ − (η / (1 − β₁ᵗ)) · m / (√v / √(1 − β₂ᵗ) + ε)
//! ```
//!
//! Moment buffers are allocated on the first [`Optimizer::step`] (sized to the
//! parameters) and reused: no allocation per step (tested with a counting allocator).
//! Scalar coefficients are computed in `f64`, the element updates in `T`. The state
//! ([`Optimizer::state`], [`OptimizerState`]) can be saved with
//! [`io::save_optimizer_state`](crate::io::save_optimizer_state) and restored with
//! [`Optimizer::load_state`]: a resumed run repeats the uninterrupted one bit for bit.
//!
//! # Example: Adam with a warm-up + cosine schedule on a quadratic
//!
//! ```
//! use autodiff::optim::{Adam, AdamConfig, Optimizer, Schedule, Scheduled};
//!
//! let schedule = Schedule::cosine(0.1, 500, 1e-3)?.with_warmup(20)?;
//! let mut opt = Scheduled::new(Adam::<f64>::new(AdamConfig::default())?, schedule);
//! let target = [1.0, -2.0, 3.0];
//! let mut theta = vec![0.0; 3];
//! let mut grad = vec![0.0; 3];
//! for _ in 0..500 {
//!     for i in 0..3 {
//!         grad[i] = 2.0 * (theta[i] - target[i]); // ∇ ‖θ − target‖²
//!     }
//!     opt.step(&mut theta, &grad)?;
//! }
//! assert!(theta.iter().zip(&target).all(|(a, b)| (a - b).abs() < 1e-2));
//! # Ok::<(), autodiff::Error>(())
//! ```

mod adam;
mod schedule;
mod sgd;

pub use adam::{Adam, AdamConfig};
pub use schedule::{LrSchedule, Schedule, Scheduled};
pub use sgd::{Sgd, SgdConfig};

use crate::{Error, Float};

/// A first-order optimizer updating a flat parameter slice in place from its gradient.
pub trait Optimizer<T: Float> {
    /// One update of `params` from `grads` (same length, and the same length at every
    /// call: the optimizer's state is sized on the first call).
    fn step(&mut self, params: &mut [T], grads: &[T]) -> Result<(), Error>;
    /// The current learning rate `η`.
    fn learning_rate(&self) -> f64;
    /// Sets the learning rate (schedules call this before each step); it must be finite
    /// and ≥ 0.
    fn set_learning_rate(&mut self, lr: f64) -> Result<(), Error>;
    /// Number of steps taken since creation or the last [`reset`](Optimizer::reset).
    fn n_steps(&self) -> u64;
    /// Forgets the state (moments, step count); keeps the hyper-parameters.
    fn reset(&mut self);
    /// A copy of the state, for checkpoints (see [`OptimizerState`]).
    fn state(&self) -> OptimizerState<T>;
    /// Restores a state taken with [`state`](Optimizer::state) from the same kind of
    /// optimizer; errors (and changes nothing) if the buffers do not match.
    fn load_state(&mut self, state: &OptimizerState<T>) -> Result<(), Error>;
}

/// The internal state of an [`Optimizer`]: its step count and its named buffers, each
/// laid out like the flat parameters (empty before the first step). Names follow
/// PyTorch's `state_dict`: `momentum_buffer` (SGD), `exp_avg`, `exp_avg_sq`,
/// `max_exp_avg_sq` (Adam). Saved and read with
/// [`io::save_optimizer_state`](crate::io::save_optimizer_state) /
/// [`io::read_optimizer_state`](crate::io::read_optimizer_state), it lets a training
/// run resume exactly where it stopped.
#[derive(Clone, Debug, PartialEq)]
pub struct OptimizerState<T> {
    /// Steps taken.
    pub n_steps: u64,
    /// Named buffers.
    pub buffers: Vec<(String, Vec<T>)>,
}

impl<T: Float> OptimizerState<T> {
    /// The buffer called `name`.
    pub fn buffer(&self, name: &str) -> Option<&[T]> {
        self.buffers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, b)| b.as_slice())
    }
}

/// Copies the buffers `names` of `state` into `dst` (all or nothing): every name must be
/// present, all with one common length.
pub(crate) fn restore_buffers<T: Float>(
    op: &'static str,
    state: &OptimizerState<T>,
    names: &[&str],
    dst: &mut [&mut Vec<T>],
) -> Result<(), Error> {
    let mut len = None;
    for name in names {
        let Some(b) = state.buffer(name) else {
            return Err(Error::InvalidArgument {
                op,
                shape: crate::Shape::scalar(),
                reason: "the state lacks a buffer this optimizer needs (was it saved from another kind of optimizer?)",
            });
        };
        match len {
            None => len = Some(b.len()),
            Some(l) if l != b.len() => {
                return Err(Error::LengthMismatch {
                    what: "optimizer state buffer",
                    expected: l,
                    found: b.len(),
                });
            }
            _ => {}
        }
    }
    for (name, d) in names.iter().zip(dst.iter_mut()) {
        if let Some(b) = state.buffer(name) {
            d.clear();
            d.extend_from_slice(b);
        }
    }
    Ok(())
}

/// Boxed optimizers (e.g. chosen at run time from a command line) are optimizers.
impl<T: Float, O: Optimizer<T> + ?Sized> Optimizer<T> for Box<O> {
    fn step(&mut self, params: &mut [T], grads: &[T]) -> Result<(), Error> {
        (**self).step(params, grads)
    }
    fn learning_rate(&self) -> f64 {
        (**self).learning_rate()
    }
    fn set_learning_rate(&mut self, lr: f64) -> Result<(), Error> {
        (**self).set_learning_rate(lr)
    }
    fn n_steps(&self) -> u64 {
        (**self).n_steps()
    }
    fn reset(&mut self) {
        (**self).reset()
    }
    fn state(&self) -> OptimizerState<T> {
        (**self).state()
    }
    fn load_state(&mut self, state: &OptimizerState<T>) -> Result<(), Error> {
        (**self).load_state(state)
    }
}

/// Rescales `grads` in place so that its Euclidean norm is at most `max_norm`
/// (PyTorch's `clip_grad_norm_`), and returns the norm before clipping. A non-finite
/// norm leaves `grads` unchanged and is returned as is.
pub fn clip_grad_norm<T: Float>(grads: &mut [T], max_norm: T) -> T {
    let norm = grads.iter().map(|&g| g * g).sum::<T>().sqrt();
    if norm.is_finite() && norm > max_norm {
        let s = max_norm / (norm + T::from_f64_const(1e-6));
        for g in grads.iter_mut() {
            *g *= s;
        }
    }
    norm
}

/// Error for an out-of-range hyper-parameter.
pub(crate) fn bad_hyper(
    op: &'static str,
    name: &'static str,
    value: f64,
    reason: &'static str,
) -> Error {
    Error::InvalidHyperparameter {
        op,
        name,
        value,
        reason,
    }
}

/// Checks `x` finite and ≥ 0.
pub(crate) fn check_nonneg(x: f64, op: &'static str, name: &'static str) -> Result<(), Error> {
    if x.is_finite() && x >= 0.0 {
        Ok(())
    } else {
        Err(bad_hyper(op, name, x, "it must be finite and >= 0"))
    }
}

/// Sizes the state buffers on the first step, then checks lengths.
pub(crate) fn check_lengths<T: Float>(
    what: &'static str,
    params: usize,
    grads: usize,
    state: &mut [&mut Vec<T>],
) -> Result<(), Error> {
    if grads != params {
        return Err(Error::LengthMismatch {
            what,
            expected: params,
            found: grads,
        });
    }
    for s in state.iter_mut() {
        if s.is_empty() {
            s.resize(params, T::zero());
        } else if s.len() != params {
            return Err(Error::LengthMismatch {
                what,
                expected: s.len(),
                found: params,
            });
        }
    }
    Ok(())
}
