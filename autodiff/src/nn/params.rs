//! One flat parameter buffer with ordered, named views.

use crate::{Error, Float, Shape, Tape, Var};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Normal, Uniform};
use std::ops::Range;

/// Where one parameter tensor lives in the flat buffer: an offset and a shape.
///
/// Layers hold `ParamView`s, not tensors: a forward pass takes the flat parameter leaf
/// `θ` and carves each weight out of it with [`ParamView::var`] (a zero-copy tape view
/// whose gradient lands in the matching range of `θ`'s gradient).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ParamView {
    offset: usize,
    shape: Shape,
}

impl ParamView {
    /// A view of `shape.len()` elements starting at `offset`.
    pub fn new(offset: usize, shape: Shape) -> Self {
        Self { offset, shape }
    }

    /// Offset of the first element in the flat buffer.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Shape of the tensor.
    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.len()
    }

    /// True if the tensor has no element.
    pub fn is_empty(&self) -> bool {
        self.shape.is_empty()
    }

    /// The range `offset..offset + len` of the flat buffer.
    pub fn range(&self) -> Range<usize> {
        self.offset..self.offset + self.len()
    }

    /// The tensor as a tape variable: a zero-copy view of the flat parameter leaf
    /// `theta` (gradients flow into `theta`'s gradient).
    pub fn var<'t, T: Float>(&self, theta: Var<'t, T>) -> Var<'t, T> {
        theta.view(self.offset, self.shape.dims())
    }

    /// The same elements viewed with other dimensions `dims` (same number of elements),
    /// e.g. a bias `[c]` as `[c, 1, 1]` to broadcast over `[n, c, h, w]`.
    pub fn var_as<'t, T: Float>(&self, theta: Var<'t, T>, dims: &[usize]) -> Var<'t, T> {
        theta.view(self.offset, dims)
    }

    /// The elements of this tensor in a flat buffer (a parameter or a gradient vector),
    /// or `None` if the buffer is too short.
    pub fn slice<'a, T>(&self, flat: &'a [T]) -> Option<&'a [T]> {
        flat.get(self.range())
    }

    /// Mutable access to the elements of this tensor in a flat buffer.
    pub fn slice_mut<'a, T>(&self, flat: &'a mut [T]) -> Option<&'a mut [T]> {
        flat.get_mut(self.range())
    }
}

/// How a parameter is initialised when registered (or re-initialised).
///
/// Random draws are made in `f64` from a seeded [`StdRng`] and rounded to `T`,
/// so an `f32` model is the rounding of the `f64` model with the same seed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// All zeros.
    Zeros,
    /// All ones.
    Ones,
    /// Every element equal to the value.
    Constant(f64),
    /// Uniform on `[low, high)`.
    Uniform {
        /// Lower bound (inclusive).
        low: f64,
        /// Upper bound (exclusive); must exceed `low`.
        high: f64,
    },
    /// Normal with the given mean and standard deviation.
    Normal {
        /// Mean.
        mean: f64,
        /// Standard deviation (≥ 0).
        std: f64,
    },
    /// PyTorch's default for `Linear`, `Conv2d` and the recurrent cells:
    /// `U(−1/√fan_in, 1/√fan_in)` (what `kaiming_uniform_(a = √5)` reduces to for weights,
    /// and the bias rule).
    KaimingUniform {
        /// Number of inputs of one output unit (`in_features`, `c·kh·kw`, `hidden`).
        fan_in: usize,
    },
}

impl Init {
    fn validate(&self) -> Result<(), Error> {
        let bad = |name, value, reason| {
            Err(Error::InvalidHyperparameter {
                op: "Init",
                name,
                value,
                reason,
            })
        };
        match *self {
            Init::Constant(v) if !v.is_finite() => bad("value", v, "it must be finite"),
            Init::Uniform { low, high } if !(low.is_finite() && high.is_finite() && low < high) => {
                bad("low", low, "the bounds must be finite with low < high")
            }
            Init::Normal { mean, .. } if !mean.is_finite() => {
                bad("mean", mean, "it must be finite")
            }
            Init::Normal { std, .. } if !(std.is_finite() && std >= 0.0) => {
                bad("std", std, "it must be finite and >= 0")
            }
            Init::KaimingUniform { fan_in: 0 } => bad("fan_in", 0.0, "it must be > 0"),
            _ => Ok(()),
        }
    }

    /// Fills `out` (validated beforehand, so the distributions cannot fail).
    fn fill<T: Float>(&self, out: &mut [T], rng: &mut StdRng) {
        let uniform = |out: &mut [T], rng: &mut StdRng, low: f64, high: f64| {
            if let Ok(u) = Uniform::new(low, high) {
                for o in out.iter_mut() {
                    *o = T::from_f64_const(u.sample(rng));
                }
            }
        };
        match *self {
            Init::Zeros => out.fill(T::zero()),
            Init::Ones => out.fill(T::one()),
            Init::Constant(v) => out.fill(T::from_f64_const(v)),
            Init::Uniform { low, high } => uniform(out, rng, low, high),
            Init::KaimingUniform { fan_in } => {
                let b = 1.0 / (fan_in as f64).sqrt();
                uniform(out, rng, -b, b)
            }
            Init::Normal { mean, std } => {
                if let Ok(n) = Normal::new(mean, std) {
                    for o in out.iter_mut() {
                        *o = T::from_f64_const(n.sample(rng));
                    }
                }
            }
        }
    }
}

/// The record of one registered parameter.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamInfo {
    /// Full name, PyTorch style (`"net.0.weight"`).
    pub name: String,
    /// Where it lives in the flat buffer.
    pub view: ParamView,
    /// How it was initialised (`None` for values inserted with [`ParamStore::insert`]).
    pub init: Option<Init>,
}

/// All parameters of a model in one flat `Vec<T>`, with ordered named views.
///
/// Layers register their tensors here when built (in registration order, contiguous,
/// no padding) and keep the returned [`ParamView`]s. The flat buffer is what the adjoint
/// integrates (`dL/dθ` has the same layout), what an [`Optimizer`](crate::optim::Optimizer)
/// updates and what [`io`](crate::io) saves by name.
///
/// Initialisation is deterministic: the tensor called `name` is drawn from
/// `StdRng::seed_from_u64(mix(seed, name))` (`mix` = FNV-1a of the name, combined with
/// the seed by SplitMix64). The same seed gives the same parameters, bit for bit, and a
/// tensor's initial values do not depend on which other layers exist or in which order
/// they were built.
#[derive(Clone, Debug)]
pub struct ParamStore<T: Float> {
    data: Vec<T>,
    params: Vec<ParamInfo>,
    seed: u64,
}

impl<T: Float> ParamStore<T> {
    /// An empty store whose random initialisations derive from `seed` (see the type's
    /// docs).
    pub fn new(seed: u64) -> Self {
        Self {
            data: Vec::new(),
            params: Vec::new(),
            seed,
        }
    }

    fn check_name(&self, name: &str, shape: Shape) -> Result<(), Error> {
        let fits = shape
            .dims()
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d))
            .and_then(|n| n.checked_add(self.data.len()))
            .is_some_and(|n| n <= isize::MAX as usize / std::mem::size_of::<T>());
        if !fits {
            return Err(Error::InvalidArgument {
                op: "ParamStore::register",
                shape,
                reason: "the tensor is too large to be allocated",
            });
        }
        if name.is_empty() {
            return Err(Error::InvalidArgument {
                op: "ParamStore::register",
                shape,
                reason: "parameter names must not be empty",
            });
        }
        if self.params.iter().any(|p| p.name == name) {
            return Err(Error::DuplicateParameter {
                name: name.to_owned(),
            });
        }
        Ok(())
    }

    /// Registers a parameter tensor `name` of shape `dims` (at most 4-D) at the end of
    /// the flat buffer and initialises it with `init`. Errors on an empty or duplicate
    /// name, too many dimensions, or an invalid `init`.
    pub fn register(&mut self, name: &str, dims: &[usize], init: Init) -> Result<ParamView, Error> {
        let shape = Shape::new(dims)?;
        self.check_name(name, shape)?;
        init.validate()?;
        let view = ParamView::new(self.data.len(), shape);
        self.data.resize(self.data.len() + shape.len(), T::zero());
        init.fill(
            &mut self.data[view.range()],
            &mut tensor_rng(self.seed, name),
        );
        self.params.push(ParamInfo {
            name: name.to_owned(),
            view,
            init: Some(init),
        });
        Ok(view)
    }

    /// Registers a parameter with explicit values (row-major, `values.len()` equal to the
    /// number of elements of `dims`).
    pub fn insert(&mut self, name: &str, dims: &[usize], values: &[T]) -> Result<ParamView, Error> {
        let shape = Shape::new(dims)?;
        self.check_name(name, shape)?;
        if values.len() != shape.len() {
            return Err(Error::LengthMismatch {
                what: "ParamStore::insert values",
                expected: shape.len(),
                found: values.len(),
            });
        }
        let view = ParamView::new(self.data.len(), shape);
        self.data.extend_from_slice(values);
        self.params.push(ParamInfo {
            name: name.to_owned(),
            view,
            init: None,
        });
        Ok(view)
    }

    /// Runs `f` (which registers tensors); if it fails, removes what it registered, so
    /// that a layer is registered entirely or not at all.
    pub(crate) fn transaction<R>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<R, Error>,
    ) -> Result<R, Error> {
        let (n_tensors, n_params) = (self.params.len(), self.data.len());
        let r = f(self);
        if r.is_err() {
            self.params.truncate(n_tensors);
            self.data.truncate(n_params);
        }
        r
    }

    /// Draws every parameter again with the store seed `seed` (values inserted with
    /// [`insert`](Self::insert) are kept). A store built with seed `s` and
    /// re-initialised with `s` is unchanged.
    pub fn reinitialize(&mut self, seed: u64) {
        self.seed = seed;
        for p in &self.params {
            if let Some(init) = p.init {
                init.fill(
                    &mut self.data[p.view.range()],
                    &mut tensor_rng(seed, &p.name),
                );
            }
        }
    }

    /// Total number of scalar parameters (length of the flat buffer).
    pub fn n_params(&self) -> usize {
        self.data.len()
    }

    /// The seed initialisations derive from.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Number of registered tensors.
    pub fn n_tensors(&self) -> usize {
        self.params.len()
    }

    /// True if nothing is registered.
    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }

    /// The flat buffer `θ`.
    pub fn as_slice(&self) -> &[T] {
        &self.data
    }

    /// The flat buffer, mutably (what an optimizer updates).
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        &mut self.data
    }

    /// Overwrites the flat buffer from `theta` (same length).
    pub fn copy_from_slice(&mut self, theta: &[T]) -> Result<(), Error> {
        if theta.len() != self.data.len() {
            return Err(Error::LengthMismatch {
                what: "ParamStore::copy_from_slice",
                expected: self.data.len(),
                found: theta.len(),
            });
        }
        self.data.copy_from_slice(theta);
        Ok(())
    }

    /// A zero vector with the layout of the flat buffer (e.g. for `dL/dθ`).
    pub fn zeros_like(&self) -> Vec<T> {
        vec![T::zero(); self.data.len()]
    }

    /// The registered tensors, in registration (= buffer) order.
    pub fn params(&self) -> &[ParamInfo] {
        &self.params
    }

    /// The registered names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.params.iter().map(|p| p.name.as_str())
    }

    /// The view of the tensor called `name`.
    pub fn view(&self, name: &str) -> Option<ParamView> {
        self.params.iter().find(|p| p.name == name).map(|p| p.view)
    }

    /// The values of the tensor called `name`.
    pub fn get(&self, name: &str) -> Option<&[T]> {
        self.view(name).and_then(|v| v.slice(&self.data))
    }

    /// The values of the tensor called `name`, mutably.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut [T]> {
        let v = self.view(name)?;
        v.slice_mut(&mut self.data)
    }

    /// The names of the tensors whose gradient is zero everywhere in `grad` (a flat
    /// gradient in this store's layout): parameters a forward pass never used, or
    /// whose path to the loss is cut. Empty when every parameter receives a gradient.
    pub fn params_without_gradient<'a>(&'a self, grad: &'a [T]) -> Vec<&'a str> {
        self.params
            .iter()
            .filter(|p| {
                p.view
                    .slice(grad)
                    .is_none_or(|g| g.iter().all(|v| *v == T::zero()))
            })
            .map(|p| p.name.as_str())
            .collect()
    }

    /// Puts the flat buffer on `tape` as one differentiable leaf of shape `[n_params]`:
    /// the `theta` that layers' forward passes take. After `tape.backward(..)`,
    /// `theta.grad_into(&mut g)` gives `dL/dθ` in the layout of this store.
    pub fn leaf<'t>(&self, tape: &'t Tape<T>) -> Result<Var<'t, T>, Error> {
        tape.leaf(&self.data, &[self.data.len()])
    }
}

/// The generator of the tensor called `name` in a store with seed `seed`.
fn tensor_rng(seed: u64, name: &str) -> StdRng {
    // FNV-1a of the name, then one SplitMix64 round of the combination.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mut z = seed ^ h.rotate_left(32);
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    StdRng::seed_from_u64(z ^ (z >> 31))
}

/// `prefix.name`, or `name` when the prefix is empty.
pub(crate) fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}.{name}")
    }
}
