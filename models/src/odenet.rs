//! ODE-Net, RK-Net and ResNet: the image classifiers of Chen et al. 2018, §7.1
//! (torchdiffeq's `examples/odenet_mnist.py`), for MNIST-sized or smaller images.
//!
//! # The three models
//!
//! All three share a downsampling stem and a classification head and differ only in the
//! feature block between them (`c` channels, `G` groups of the group norms, `k` classes):
//!
//! ```text
//! stem:  conv3×3 (pad p) → GN → ReLU → conv4×4 stride 2 pad 1 → GN → ReLU → conv4×4 stride 2 pad 1
//! head:  GN → ReLU → global average pool → linear c → k          (cross-entropy loss)
//!
//! ODE-Net: h(1) = h(0) + ∫₀¹ f(t, h(t), θ_f) dt   (Dopri5, rtol = atol = 1e-3, checkpointed adjoint)
//! RK-Net:  the same field and solver, gradient backpropagated through the solver's stages
//! ResNet:  h ← h + g_i(h), i = 1..6                (plain layers, one tape)
//!
//! f(t, h) = GN(cconv(t, ReLU(GN(cconv(t, ReLU(GN(h)))))))      (torchdiffeq's ODEfunc)
//! g(h)    = conv3×3(ReLU(GN(conv3×3(ReLU(GN(h))))))             (torchdiffeq's ResBlock, no bias)
//! ```
//!
//! `cconv(t, x)` is torchdiffeq's `ConcatConv2d`: a 3×3 convolution (padding 1) of `x`
//! with the time prepended as a constant channel (`c + 1 → c`), computed without
//! materialising that channel (`Conv2d::forward_with_time`: the constant channel's
//! contribution is a per-position bias). The paper's stem has
//! `p = 0`: a 28×28 image becomes a `c × 6 × 6` map (`28 → 26 → 13 → 6`). For the 8×8
//! digits, `p = 0` gives `1 × 1` maps; [`ConvNetConfig::digits`] uses `p = 1`
//! (`8 → 8 → 4 → 2`). The ODE block's state is the feature map as `[B, c, h·w]` (the
//! block takes states up to rank 3); the field reshapes it to `[B, c, h, w]`.
//!
//! # Parameters
//!
//! With `c_in` input channels (every convolution has a bias except the ResNet's, every
//! group norm an affine part, as in torchdiffeq):
//!
//! ```text
//! stem     = 32c² + 9 c_in c + 7c
//! ODE func = 18c² + 26c            (two (c+1)·9·c + c concat-convolutions, three GN)
//! ResBlock = 18c² + 4c             (six of them: 108c² + 24c)
//! head     = 2c + c k + k
//! ```
//!
//! so ODE-Net and RK-Net have `50c² + 9 c_in c + 35c + ck + k` parameters and ResNet
//! `140c² + 9 c_in c + 33c + ck + k`: for the paper's MNIST configuration (`c = 64`,
//! `c_in = 1`, `k = 10`) 208,266 (the paper's "0.22 M") and 576,778 ("0.60 M").
//!
//! Parameters live in one flat [`ParamStore`] under PyTorch's names for the same
//! `nn.Sequential` (`0.weight` … `6.bias` for the stem, `7.odefunc.conv1._layer.weight`
//! or `7.norm1.weight` … `12.conv2.weight` for the feature block, then the head's group
//! norm and `…weight` / `…bias` of the linear layer), initialised as PyTorch does
//! (`U(−1/√fan_in, 1/√fan_in)` for convolutions and the linear layer, `γ = 1`, `β = 0`)
//! from the configured seed.
//!
//! # Batch sizes
//!
//! An [`OdeBlock`] has a fixed state shape, so the ODE models keep one block per batch
//! size seen (a training loop sees two or three: full batches, the last one, the
//! evaluation batch); all share the same field and solver settings.
//!
//! # Threads
//!
//! The field acts on each sample by itself (group norm is per sample), so its evaluations
//! and VJPs split over the batch ([`OdeBlock::from_row_parallel`]): chunks of
//! [`OdeNetConfig::chunk_samples`] samples, each on its own tape, on the threads given by
//! [`ImageClassifier::set_threads`] (the calling thread until then; the trainer and the
//! `neuralode odenet` job pass all cores). Results depend on the chunk size only (the
//! order of the sums over chunks in the parameter gradient: round-off), never on the
//! threads. The stem, the head and the solver's own vector work stay on the calling
//! thread. On one thread the chunks cost time (per-chunk tapes, weight re-layouts and
//! smaller products; measured on the paper's MNIST step: +3 % at 32 samples, +9 % at 16,
//! +21 % at 8), so `chunk_samples = 0` (one tape) is the fastest single-thread setting.
//!
//! # Example
//!
//! ```
//! use autodiff::Tape;
//! use models::odenet::{ConvNetConfig, ImageClassifier, OdeNet, OdeNetConfig};
//!
//! let config = OdeNetConfig::new(ConvNetConfig { channels: 4, groups: 2, ..ConvNetConfig::digits() });
//! let mut net = OdeNet::<f64>::new(&config)?;
//! let images: Vec<f64> = (0..2 * 64).map(|i| ((i * 7 % 17) as f64) / 17.0).collect();
//! let labels = [3, 7];
//! let tape = Tape::new();
//! tape.set_recording(true);
//! let theta = tape.leaf(net.params(), &[net.n_params()])?;
//! let x = tape.constant(&images, &[2, 1, 8, 8])?;
//! let loss = net.loss(&tape, theta, x, &labels)?;
//! tape.backward_scalar(loss)?; // one adjoint solve through the ODE block
//! let grad = theta.grad()?;
//! assert!(grad.iter().all(|g| g.is_finite()));
//! assert!(net.stats().expect("a batch was run").forward.nfe > 0);
//! # Ok::<(), models::ModelsError>(())
//! ```

use adjoint::{GradStats, GradientMode, Method, Options, ParallelTapeDynamics, Threads};
use autodiff::nn::{Conv2d, Conv2dConfig, GroupNorm, Linear, ParamStore};
use autodiff::{Float, Tape, Var};

use crate::ModelsError;
use crate::datasets::Batch;
use crate::ode_block::OdeBlock;
pub use crate::ode_block::StepControl;
use crate::training::{Metrics, Model};

/// `eps` of every group norm (PyTorch's default).
const GN_EPS: f64 = 1e-5;

/// Largest batch of [`ImageClassifier::accuracy`].
const ACCURACY_BATCH: usize = 256;

fn invalid(name: &'static str, reason: String) -> ModelsError {
    ModelsError::InvalidArgument { name, reason }
}

/// The size of a network: the stem, the width of the feature block and the head, shared
/// by the three models.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvNetConfig {
    /// Channels of the input images (1 for MNIST and the digits).
    pub in_channels: usize,
    /// Height of the input images.
    pub height: usize,
    /// Width of the input images.
    pub width: usize,
    /// Channels `c` of the feature maps (64 in the paper).
    pub channels: usize,
    /// Groups of every group norm; must divide `channels` (torchdiffeq: `min(32, c)`).
    pub groups: usize,
    /// Number of classes `k`.
    pub classes: usize,
    /// Zero padding of the stem's first (3×3) convolution: 0 in the paper, 1 for small
    /// images (see the [module documentation](self)).
    pub stem_padding: usize,
    /// Seed of the parameter initialisation.
    pub seed: u64,
}

impl ConvNetConfig {
    /// The paper's configuration: 1×28×28 images, 64 channels, 32 groups, 10 classes.
    pub fn mnist() -> Self {
        ConvNetConfig {
            in_channels: 1,
            height: 28,
            width: 28,
            channels: 64,
            groups: 32,
            classes: 10,
            stem_padding: 0,
            seed: 0,
        }
    }

    /// For the 8×8 digits: 1×8×8 images, 16 channels, 8 groups, 10 classes, stem
    /// padding 1 (2×2 feature maps).
    pub fn digits() -> Self {
        ConvNetConfig {
            in_channels: 1,
            height: 8,
            width: 8,
            channels: 16,
            groups: 8,
            classes: 10,
            stem_padding: 1,
            seed: 0,
        }
    }

    /// The feature map `(h, w)` after the stem: `n₀ = n + 2p − 2`, then halved (rounded
    /// down) by each stride-2 convolution.
    pub fn feature_size(&self) -> (usize, usize) {
        let f = |n: usize| ((n + 2 * self.stem_padding).saturating_sub(2) / 2) / 2;
        (f(self.height), f(self.width))
    }

    fn validate(&self) -> Result<(), ModelsError> {
        let c = self;
        if c.in_channels == 0 || c.channels == 0 || c.classes == 0 {
            return Err(invalid(
                "network size",
                format!(
                    "in_channels ({}), channels ({}) and classes ({}) must be > 0",
                    c.in_channels, c.channels, c.classes
                ),
            ));
        }
        if c.groups == 0 || !c.channels.is_multiple_of(c.groups) {
            return Err(invalid(
                "groups",
                format!(
                    "{} groups must be > 0 and divide the {} channels",
                    c.groups, c.channels
                ),
            ));
        }
        // Each stride-2 convolution (k = 4, pad 1) needs a map of at least 2.
        let min = |n: usize| n + 2 * c.stem_padding >= 6;
        if !min(c.height) || !min(c.width) {
            return Err(invalid(
                "image size",
                format!(
                    "{}×{} images with stem padding {} are too small: height and width + 2·padding must be ≥ 6",
                    c.height, c.width, c.stem_padding
                ),
            ));
        }
        let (h, w) = c.feature_size();
        if c.channels / c.groups * h * w < 2 {
            return Err(invalid(
                "groups",
                format!(
                    "the feature maps are {h}×{w} and each group has {} channel(s): a group norm over one value is constant; use fewer groups or more stem padding",
                    c.channels / c.groups
                ),
            ));
        }
        Ok(())
    }
}

impl Default for ConvNetConfig {
    /// [`ConvNetConfig::mnist`].
    fn default() -> Self {
        Self::mnist()
    }
}

/// ODE-Net and RK-Net: the network size and the solver of the ODE block.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OdeNetConfig {
    /// The network size.
    pub net: ConvNetConfig,
    /// Relative tolerance of the Dopri5 solve (forward, and backward for the adjoint).
    pub rtol: f64,
    /// Absolute tolerance.
    pub atol: f64,
    /// The block integrates over `[0, end_time]` (1 in the paper).
    pub end_time: f64,
    /// Maximum number of step attempts per solve.
    pub max_steps: usize,
    /// How the Dopri5 solve chooses its steps.
    pub step_control: StepControl,
    /// Samples per chunk when the field's evaluations and VJPs are split over threads
    /// (each chunk on its own tape; [`ImageClassifier::set_threads`], which the trainer
    /// calls with all cores by default). `0`: the whole batch on one tape. Results depend
    /// on this value (the order of the sums over the chunks in the parameter gradient),
    /// never on the number of threads.
    pub chunk_samples: usize,
}

impl OdeNetConfig {
    /// The paper's solver settings (Dopri5, `rtol = atol = 1e-3` on `[0, 1]`, the peers'
    /// step control) around `net`.
    pub fn new(net: ConvNetConfig) -> Self {
        OdeNetConfig {
            net,
            rtol: 1e-3,
            atol: 1e-3,
            end_time: 1.0,
            max_steps: 10_000,
            step_control: StepControl::Peers,
            chunk_samples: DEFAULT_CHUNK_SAMPLES,
        }
    }

    fn validate(&self) -> Result<(), ModelsError> {
        self.net.validate()?;
        if !(self.rtol > 0.0 && self.rtol.is_finite() && self.atol > 0.0 && self.atol.is_finite()) {
            return Err(invalid(
                "tolerances",
                format!(
                    "rtol ({}) and atol ({}) must be finite and > 0",
                    self.rtol, self.atol
                ),
            ));
        }
        if !(self.end_time > 0.0 && self.end_time.is_finite()) {
            return Err(invalid(
                "end_time",
                format!("it must be finite and > 0, got {}", self.end_time),
            ));
        }
        Ok(())
    }
}

/// [`OdeNetConfig::chunk_samples`] by default: a batch of 64 in 2 chunks.
pub const DEFAULT_CHUNK_SAMPLES: usize = 32;

impl Default for OdeNetConfig {
    fn default() -> Self {
        Self::new(ConvNetConfig::mnist())
    }
}

/// ResNet: the network size and the number of residual blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResNetConfig {
    /// The network size.
    pub net: ConvNetConfig,
    /// Number of residual blocks (6 in the paper).
    pub blocks: usize,
}

impl ResNetConfig {
    /// Six residual blocks around `net`.
    pub fn new(net: ConvNetConfig) -> Self {
        ResNetConfig { net, blocks: 6 }
    }
}

impl Default for ResNetConfig {
    fn default() -> Self {
        Self::new(ConvNetConfig::mnist())
    }
}

/// What the three models have in common: a flat parameter vector and logits of a batch
/// of images, from which the loss and the accuracy follow.
pub trait ImageClassifier<T: Float> {
    /// The flat parameter vector `θ` (in the layout of [`store`](Self::store)).
    fn params(&self) -> &[T] {
        self.store().as_slice()
    }

    /// The flat parameter vector, mutably (what an optimizer updates).
    fn params_mut(&mut self) -> &mut [T] {
        self.store_mut().as_mut_slice()
    }

    /// The parameter store (names and views of every tensor).
    fn store(&self) -> &ParamStore<T>;

    /// The parameter store, mutably (what [`Classifier`] hands the generic trainer).
    fn store_mut(&mut self) -> &mut ParamStore<T>;

    /// The architecture's name ("ODE-Net", "RK-Net", "ResNet").
    fn name(&self) -> &str;

    /// Evaluation counts of the ODE block in the last batch (`None` without one).
    fn ode_stats(&self) -> Option<GradStats> {
        None
    }

    /// Where the ODE block's field may split its evaluations over the batch's samples
    /// (see [`OdeNetConfig::chunk_samples`]; the calling thread only until this is
    /// called). Default: ignored (ResNet runs on one tape).
    fn set_threads(&mut self, threads: &Threads) -> Result<(), ModelsError> {
        let _ = threads;
        Ok(())
    }

    /// Number of parameters.
    fn n_params(&self) -> usize {
        self.store().n_params()
    }

    /// The network size.
    fn config(&self) -> &ConvNetConfig;

    /// Logits `[B, classes]` of `images` `[B, in_channels, height, width]` with the
    /// parameters `theta` (a `[n_params]` variable, typically the leaf
    /// `tape.leaf(net.params(), &[net.n_params()])`). Errors if `images` does not have
    /// the configured shape; errors of the ops are recorded on the tape.
    fn logits<'t>(
        &mut self,
        tape: &'t Tape<T>,
        theta: Var<'t, T>,
        images: Var<'t, T>,
    ) -> Result<Var<'t, T>, ModelsError>;

    /// The mean cross-entropy of the logits of `images` against `labels` (one per image,
    /// each `< classes`).
    fn loss<'t>(
        &mut self,
        tape: &'t Tape<T>,
        theta: Var<'t, T>,
        images: Var<'t, T>,
        labels: &[usize],
    ) -> Result<Var<'t, T>, ModelsError> {
        check_labels(self.config(), images.shape().dim(0), labels)?;
        let logits = self.logits(tape, theta, images)?;
        Ok(logits.cross_entropy(labels))
    }

    /// The fraction of `images` (a flat `[B, in_channels, height, width]` buffer)
    /// classified as their `labels`, with the current parameters (no recording), in
    /// batches of at most 256 images.
    fn accuracy(&mut self, images: &[T], labels: &[usize]) -> Result<f64, ModelsError> {
        let c = *self.config();
        let per = c.in_channels * c.height * c.width;
        let b = labels.len();
        if b == 0 || images.len() != b * per {
            return Err(invalid(
                "images",
                format!(
                    "expected {b} images of {per} values for {b} labels (and at least one), got {} values",
                    images.len()
                ),
            ));
        }
        check_labels(&c, b, labels)?;
        let mut correct = 0.0;
        let mut tape = Tape::new();
        for (x, l) in images
            .chunks(ACCURACY_BATCH * per)
            .zip(labels.chunks(ACCURACY_BATCH))
        {
            tape.reset();
            let theta = tape.leaf(self.params(), &[self.n_params()])?;
            let x = tape.constant(x, &[l.len(), c.in_channels, c.height, c.width])?;
            let logits = self.logits(&tape, theta, x)?.value()?;
            correct += accuracy_of_logits(&logits, c.classes, l) * l.len() as f64;
        }
        Ok(correct / b as f64)
    }
}

fn check_labels(c: &ConvNetConfig, b: usize, labels: &[usize]) -> Result<(), ModelsError> {
    if labels.len() != b {
        return Err(invalid(
            "labels",
            format!("{} labels for a batch of {b} images", labels.len()),
        ));
    }
    if let Some(i) = labels.iter().position(|&l| l >= c.classes) {
        return Err(invalid(
            "labels",
            format!(
                "label {} at index {i} is not below the {} classes",
                labels[i], c.classes
            ),
        ));
    }
    Ok(())
}

/// The fraction of rows of `logits` (`[B, classes]`, row-major) whose largest entry is
/// at the label's index (ties: the first largest).
pub fn accuracy_of_logits<T: Float>(logits: &[T], classes: usize, labels: &[usize]) -> f64 {
    if labels.is_empty() || classes == 0 {
        return 0.0;
    }
    let correct = logits
        .chunks_exact(classes)
        .zip(labels)
        .filter(|(row, l)| {
            let mut best = 0;
            for (j, v) in row.iter().enumerate() {
                if *v > row[best] {
                    best = j;
                }
            }
            best == **l
        })
        .count();
    correct as f64 / labels.len() as f64
}

/// The downsampling layers (indices 0 to 6 of torchdiffeq's `nn.Sequential`).
#[derive(Clone, Debug)]
struct Stem {
    conv0: Conv2d,
    norm1: GroupNorm,
    conv3: Conv2d,
    norm4: GroupNorm,
    conv6: Conv2d,
}

impl Stem {
    fn new<T: Float>(store: &mut ParamStore<T>, c: &ConvNetConfig) -> Result<Self, ModelsError> {
        let ch = c.channels;
        let down = Conv2dConfig::new(ch, ch, 4).stride(2).padding(1);
        Ok(Stem {
            conv0: Conv2d::new(
                store,
                "0",
                Conv2dConfig::new(c.in_channels, ch, 3).padding(c.stem_padding),
            )?,
            norm1: GroupNorm::new(store, "1", c.groups, ch, GN_EPS, true)?,
            conv3: Conv2d::new(store, "3", down)?,
            norm4: GroupNorm::new(store, "4", c.groups, ch, GN_EPS, true)?,
            conv6: Conv2d::new(store, "6", down)?,
        })
    }

    fn forward<'t, T: Float>(&self, th: Var<'t, T>, x: Var<'t, T>) -> Var<'t, T> {
        let x = self.conv0.forward(th, x);
        let x = self.norm1.forward_relu(th, x);
        let x = self.conv3.forward(th, x);
        let x = self.norm4.forward_relu(th, x);
        self.conv6.forward(th, x)
    }
}

/// The classification head: group norm, ReLU, global average pool, linear.
#[derive(Clone, Debug)]
struct Head {
    norm: GroupNorm,
    fc: Linear,
}

impl Head {
    /// `first` is the `nn.Sequential` index of its group norm; the linear layer is
    /// `first + 4` (after ReLU, pool and flatten).
    fn new<T: Float>(
        store: &mut ParamStore<T>,
        c: &ConvNetConfig,
        first: usize,
    ) -> Result<Self, ModelsError> {
        Ok(Head {
            norm: GroupNorm::new(
                store,
                &first.to_string(),
                c.groups,
                c.channels,
                GN_EPS,
                true,
            )?,
            fc: Linear::new(store, &(first + 4).to_string(), c.channels, c.classes, true)?,
        })
    }

    fn forward<'t, T: Float>(&self, th: Var<'t, T>, x: Var<'t, T>) -> Var<'t, T> {
        let x = self.norm.forward_relu(th, x).global_avg_pool2d();
        self.fc.forward(th, x)
    }
}

/// torchdiffeq's `ODEfunc`, its parameters at offsets relative to the block's own
/// parameter vector.
#[derive(Clone, Debug)]
struct OdeFunc {
    norm1: GroupNorm,
    conv1: Conv2d,
    norm2: GroupNorm,
    conv2: Conv2d,
    norm3: GroupNorm,
}

impl OdeFunc {
    fn new<T: Float>(store: &mut ParamStore<T>, c: &ConvNetConfig) -> Result<Self, ModelsError> {
        let (g, ch) = (c.groups, c.channels);
        let cc = Conv2dConfig::new(ch + 1, ch, 3).padding(1);
        Ok(OdeFunc {
            norm1: GroupNorm::new(store, "7.odefunc.norm1", g, ch, GN_EPS, true)?,
            conv1: Conv2d::new(store, "7.odefunc.conv1._layer", cc)?,
            norm2: GroupNorm::new(store, "7.odefunc.norm2", g, ch, GN_EPS, true)?,
            conv2: Conv2d::new(store, "7.odefunc.conv2._layer", cc)?,
            norm3: GroupNorm::new(store, "7.odefunc.norm3", g, ch, GN_EPS, true)?,
        })
    }

    /// `f(t, x)` for `x` `[b, c, h, w]` and `t` `[1]`.
    fn forward<'t, T: Float>(&self, th: Var<'t, T>, t: Var<'t, T>, x: Var<'t, T>) -> Var<'t, T> {
        // `conv([t; out])` without the concatenation (see `Conv2d::forward_with_time`).
        let out = self.norm1.forward_relu(th, x);
        let out = self.conv1.forward_with_time(th, t, out);
        let out = self.norm2.forward_relu(th, out);
        let out = self.conv2.forward_with_time(th, t, out);
        self.norm3.forward(th, out)
    }
}

/// torchdiffeq's `ResBlock` (no downsampling): `x + conv(ReLU(GN(conv(ReLU(GN(x))))))`,
/// convolutions 3×3, padding 1, without bias.
#[derive(Clone, Debug)]
struct ResBlock {
    norm1: GroupNorm,
    conv1: Conv2d,
    norm2: GroupNorm,
    conv2: Conv2d,
}

impl ResBlock {
    fn new<T: Float>(
        store: &mut ParamStore<T>,
        c: &ConvNetConfig,
        index: usize,
    ) -> Result<Self, ModelsError> {
        let (g, ch) = (c.groups, c.channels);
        let cc = Conv2dConfig::new(ch, ch, 3).padding(1).bias(false);
        let name = |s: &str| format!("{index}.{s}");
        Ok(ResBlock {
            norm1: GroupNorm::new(store, &name("norm1"), g, ch, GN_EPS, true)?,
            conv1: Conv2d::new(store, &name("conv1"), cc)?,
            norm2: GroupNorm::new(store, &name("norm2"), g, ch, GN_EPS, true)?,
            conv2: Conv2d::new(store, &name("conv2"), cc)?,
        })
    }

    fn forward<'t, T: Float>(&self, th: Var<'t, T>, x: Var<'t, T>) -> Var<'t, T> {
        let out = self.norm1.forward_relu(th, x);
        let out = self.conv1.forward(th, out);
        let out = self.norm2.forward_relu(th, out);
        x + self.conv2.forward(th, out)
    }
}

/// The field of the ODE block, boxed so that blocks for every batch size share a type.
type Field<T> = Box<
    dyn for<'t> FnMut(&'t Tape<T>, Var<'t, T>, Var<'t, T>, Var<'t, T>) -> Var<'t, T>
        + Send
        + 'static,
>;

/// The ODE feature block of ODE-Net and RK-Net: the field, its parameter range in the
/// model's flat vector, the solver settings and one [`OdeBlock`] per batch size.
struct OdeFeature<T: Float> {
    func: OdeFunc,
    offset: usize,
    n_params: usize,
    /// Feature map `(c, h, w)`.
    map: (usize, usize, usize),
    options: Options<T>,
    end_time: T,
    mode: GradientMode<T>,
    /// Samples per chunk of the row-parallel field (0: one tape).
    chunk: usize,
    threads: Threads,
    blocks: Vec<(usize, OdeBlock<T, Field<T>>)>,
    last: Option<usize>,
}

impl<T: Float> OdeFeature<T> {
    /// Registers the field's parameters (named `7.odefunc.…`) at the end of `store`.
    fn new(
        store: &mut ParamStore<T>,
        config: &OdeNetConfig,
        mode: GradientMode<T>,
    ) -> Result<Self, ModelsError> {
        let c = &config.net;
        // The field's layers are built in a store of their own, so that their views
        // start at 0 in the block's parameter vector; the same tensors (same names, so
        // the same initial values) are then registered in the model's store.
        let mut local = ParamStore::<T>::new(c.seed);
        let func = OdeFunc::new(&mut local, c)?;
        let offset = store.n_params();
        for p in local.params() {
            let init = p.init.ok_or_else(|| {
                invalid(
                    "odefunc",
                    format!("parameter {} has no initialisation", p.name),
                )
            })?;
            store.register(&p.name, p.view.shape().dims(), init)?;
        }
        let (rtol, atol) = (
            T::from_f64_const(config.rtol),
            T::from_f64_const(config.atol),
        );
        let mut options = config.step_control.options(rtol, atol);
        options.max_steps = config.max_steps;
        let (h, w) = c.feature_size();
        Ok(OdeFeature {
            func,
            offset,
            n_params: local.n_params(),
            map: (c.channels, h, w),
            options,
            end_time: T::from_f64_const(config.end_time),
            mode,
            chunk: config.chunk_samples,
            threads: Threads::Caller,
            blocks: Vec::new(),
            last: None,
        })
    }

    fn block(&mut self, batch: usize) -> Result<&OdeBlock<T, Field<T>>, ModelsError> {
        let i = match self.blocks.iter().position(|(b, _)| *b == batch) {
            Some(i) => i,
            None => {
                let (c, h, w) = self.map;
                let func = self.func.clone();
                // The rows of a chunk, not the batch: the field sees its chunk only.
                let make = move || -> Field<T> {
                    let func = func.clone();
                    Box::new(move |_tape, t, z, th| {
                        let b = z.shape().dim(0);
                        let x = z.reshape(&[b, c, h, w]);
                        func.forward(th, t, x).reshape(&[b, c, h * w])
                    })
                };
                let dims = [batch, c, h * w];
                let block = if self.chunk == 0 {
                    OdeBlock::new(&dims, self.n_params, make())?
                } else {
                    let mut par = ParallelTapeDynamics::from_factory(&dims, self.n_params, make)?
                        .with_chunk_rows(self.chunk)?;
                    par.set_threads(self.threads.clone());
                    OdeBlock::from_row_parallel(&dims, par)?
                };
                let block = block
                    .with_solver(Method::Dopri5, self.options.clone())
                    .with_mode(self.mode.clone());
                self.blocks.push((batch, block));
                self.blocks.len() - 1
            }
        };
        self.last = Some(i);
        Ok(&self.blocks[i].1)
    }

    /// `x` `[b, c, h, w]` → the state at the end time, `[b, c, h, w]`.
    fn forward<'t>(
        &mut self,
        tape: &'t Tape<T>,
        theta: Var<'t, T>,
        x: Var<'t, T>,
    ) -> Result<Var<'t, T>, ModelsError> {
        let b = x.shape().dim(0);
        let (c, h, w) = self.map;
        let ts = tape.constant(&[T::zero(), self.end_time], &[2])?;
        let th = theta.view(self.offset, &[self.n_params]);
        let block = self.block(b)?;
        let z0 = x.reshape(&[b, c, h * w]);
        let zs = block.apply(z0, th, ts);
        Ok(block.final_state(zs).reshape(&[b, c, h, w]))
    }

    fn stats(&self) -> Option<GradStats> {
        self.last.map(|i| self.blocks[i].1.stats())
    }

    fn set_mode(&mut self, mode: GradientMode<T>) {
        for (_, b) in &mut self.blocks {
            b.set_mode(mode.clone());
        }
        self.mode = mode;
    }

    /// The blocks are rebuilt on their next use with the new threads.
    fn set_threads(&mut self, threads: &Threads) {
        self.threads = threads.clone();
        self.blocks.clear();
        self.last = None;
    }
}

/// Checks that `images` is `[B, in_channels, height, width]` with `B ≥ 1`.
fn check_images<T: Float>(c: &ConvNetConfig, images: Var<'_, T>) -> Result<(), ModelsError> {
    let s = images.shape();
    let ok = s.rank() == 4 && s.dim(0) > 0 && s.dims()[1..] == [c.in_channels, c.height, c.width];
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "images",
            format!(
                "expected a batch [B ≥ 1, {}, {}, {}], got {:?}",
                c.in_channels,
                c.height,
                c.width,
                s.dims()
            ),
        ))
    }
}

/// ODE-Net (Chen et al. 2018, §7.1): stem, one ODE block (Dopri5 on `[0, 1]`, gradient by
/// the checkpointed adjoint, `O(1)` memory in the depth of the solve), head. See the
/// [module documentation](self).
pub struct OdeNet<T: Float> {
    config: OdeNetConfig,
    store: ParamStore<T>,
    stem: Stem,
    feature: OdeFeature<T>,
    head: Head,
}

impl<T: Float> std::fmt::Debug for OdeNet<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OdeNet")
            .field("config", &self.config)
            .field("n_params", &self.store.n_params())
            .finish_non_exhaustive()
    }
}

impl<T: Float> OdeNet<T> {
    /// Builds the network and initialises its parameters from `config.net.seed`; the
    /// gradient mode is the checkpointed adjoint ([`GradientMode::default`]).
    pub fn new(config: &OdeNetConfig) -> Result<Self, ModelsError> {
        Self::with_mode(config, GradientMode::default())
    }

    /// The network with another gradient mode of the ODE block (e.g.
    /// [`GradientMode::backsolve`], Chen et al.'s algorithm).
    pub fn with_mode(config: &OdeNetConfig, mode: GradientMode<T>) -> Result<Self, ModelsError> {
        config.validate()?;
        let c = &config.net;
        let mut store = ParamStore::new(c.seed);
        let stem = Stem::new(&mut store, c)?;
        let feature = OdeFeature::new(&mut store, config, mode)?;
        let head = Head::new(&mut store, c, 8)?;
        Ok(OdeNet {
            config: *config,
            store,
            stem,
            feature,
            head,
        })
    }

    /// The configuration.
    pub fn ode_config(&self) -> &OdeNetConfig {
        &self.config
    }

    /// The gradient mode of the ODE block.
    pub fn mode(&self) -> &GradientMode<T> {
        &self.feature.mode
    }

    /// Changes the gradient mode of the ODE block.
    pub fn set_mode(&mut self, mode: GradientMode<T>) {
        self.feature.set_mode(mode);
    }

    /// Forward and backward evaluation counts of the ODE block in the last batch (its
    /// forward solve, or its forward solve and backward pass once the tape's backward
    /// ran); `None` before the first batch.
    pub fn stats(&self) -> Option<GradStats> {
        self.feature.stats()
    }

    /// The range of the ODE field's parameters in the flat vector.
    pub fn field_params(&self) -> std::ops::Range<usize> {
        self.feature.offset..self.feature.offset + self.feature.n_params
    }
}

impl<T: Float> ImageClassifier<T> for OdeNet<T> {
    fn name(&self) -> &str {
        "ODE-Net"
    }

    fn ode_stats(&self) -> Option<GradStats> {
        OdeNet::stats(self)
    }

    fn set_threads(&mut self, threads: &Threads) -> Result<(), ModelsError> {
        self.feature.set_threads(threads);
        Ok(())
    }

    fn store(&self) -> &ParamStore<T> {
        &self.store
    }

    fn store_mut(&mut self) -> &mut ParamStore<T> {
        &mut self.store
    }

    fn config(&self) -> &ConvNetConfig {
        &self.config.net
    }

    fn logits<'t>(
        &mut self,
        tape: &'t Tape<T>,
        theta: Var<'t, T>,
        images: Var<'t, T>,
    ) -> Result<Var<'t, T>, ModelsError> {
        check_images(&self.config.net, images)?;
        let x = self.stem.forward(theta, images);
        let x = self.feature.forward(tape, theta, x)?;
        Ok(self.head.forward(theta, x))
    }
}

/// RK-Net (Chen et al. 2018, §7.1): ODE-Net's architecture and solver, the gradient
/// backpropagated through the Runge–Kutta stages ([`GradientMode::Direct`]; memory grows
/// with the number of steps). Same seed, same parameters as [`OdeNet`].
pub struct RkNet<T: Float>(OdeNet<T>);

impl<T: Float> std::fmt::Debug for RkNet<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("RkNet").field(&self.0).finish()
    }
}

impl<T: Float> RkNet<T> {
    /// Builds the network and initialises its parameters from `config.net.seed`.
    pub fn new(config: &OdeNetConfig) -> Result<Self, ModelsError> {
        OdeNet::with_mode(config, GradientMode::Direct).map(RkNet)
    }

    /// The configuration.
    pub fn ode_config(&self) -> &OdeNetConfig {
        self.0.ode_config()
    }

    /// Forward and backward evaluation counts of the ODE block in the last batch (see
    /// [`OdeNet::stats`]).
    pub fn stats(&self) -> Option<GradStats> {
        self.0.stats()
    }

    /// The range of the ODE field's parameters in the flat vector.
    pub fn field_params(&self) -> std::ops::Range<usize> {
        self.0.field_params()
    }
}

impl<T: Float> ImageClassifier<T> for RkNet<T> {
    fn name(&self) -> &str {
        "RK-Net"
    }

    fn ode_stats(&self) -> Option<GradStats> {
        RkNet::stats(self)
    }

    fn set_threads(&mut self, threads: &Threads) -> Result<(), ModelsError> {
        self.0.set_threads(threads)
    }

    fn store(&self) -> &ParamStore<T> {
        self.0.store()
    }

    fn store_mut(&mut self) -> &mut ParamStore<T> {
        self.0.store_mut()
    }

    fn config(&self) -> &ConvNetConfig {
        self.0.config()
    }

    fn logits<'t>(
        &mut self,
        tape: &'t Tape<T>,
        theta: Var<'t, T>,
        images: Var<'t, T>,
    ) -> Result<Var<'t, T>, ModelsError> {
        self.0.logits(tape, theta, images)
    }
}

/// ResNet (Chen et al. 2018, §7.1): stem, residual blocks `h ← h + g(h)` as plain layers,
/// head. See the [module documentation](self).
#[derive(Clone, Debug)]
pub struct ResNet<T: Float> {
    config: ResNetConfig,
    store: ParamStore<T>,
    stem: Stem,
    blocks: Vec<ResBlock>,
    head: Head,
}

impl<T: Float> ResNet<T> {
    /// Builds the network and initialises its parameters from `config.net.seed`.
    pub fn new(config: &ResNetConfig) -> Result<Self, ModelsError> {
        let c = &config.net;
        c.validate()?;
        let mut store = ParamStore::new(c.seed);
        let stem = Stem::new(&mut store, c)?;
        let blocks = (0..config.blocks)
            .map(|i| ResBlock::new(&mut store, c, 7 + i))
            .collect::<Result<Vec<_>, _>>()?;
        let head = Head::new(&mut store, c, 7 + config.blocks)?;
        Ok(ResNet {
            config: *config,
            store,
            stem,
            blocks,
            head,
        })
    }

    /// The configuration.
    pub fn res_config(&self) -> &ResNetConfig {
        &self.config
    }
}

impl<T: Float> ImageClassifier<T> for ResNet<T> {
    fn name(&self) -> &str {
        "ResNet"
    }

    fn store(&self) -> &ParamStore<T> {
        &self.store
    }

    fn store_mut(&mut self) -> &mut ParamStore<T> {
        &mut self.store
    }

    fn config(&self) -> &ConvNetConfig {
        &self.config.net
    }

    fn logits<'t>(
        &mut self,
        _tape: &'t Tape<T>,
        theta: Var<'t, T>,
        images: Var<'t, T>,
    ) -> Result<Var<'t, T>, ModelsError> {
        check_images(&self.config.net, images)?;
        let mut x = self.stem.forward(theta, images);
        for b in &self.blocks {
            x = b.forward(theta, x);
        }
        Ok(self.head.forward(theta, x))
    }
}

/// Any [`ImageClassifier`] as a [`Model`], so that the generic [`Trainer`](crate::Trainer)
/// trains it on an image [`DataLoader`](crate::datasets::DataLoader): the loss is the
/// mean cross-entropy of the batch, and the metrics are the ODE block's evaluations of
/// the step (`nfe_forward`; `nfe_backward`: re-evaluations plus vector–Jacobian
/// products), for ODE-Net and RK-Net.
///
/// ```
/// use autodiff::optim::Adam;
/// use models::datasets::{BatchOptions, load_digits};
/// use models::odenet::{Classifier, ConvNetConfig, OdeNet, OdeNetConfig};
/// use models::training::{Control, StepInfo, TrainConfig, Trainer};
///
/// let mut data = load_digits::<f32>()?.subset(&(0..32).collect::<Vec<_>>())?;
/// data.to_unit_range();
/// let loader = data.into_loader(BatchOptions::new(16))?;
/// let net = OdeNet::new(&OdeNetConfig::new(ConvNetConfig { channels: 4, groups: 2, ..ConvNetConfig::digits() }))?;
/// let mut model = Classifier(net);
/// let mut trainer = Trainer::new(Adam::with_lr(1e-2)?, TrainConfig::epochs(2)?);
/// let mut nfe = Vec::new();
/// let summary = trainer.fit(&mut model, &loader, &mut |info: &StepInfo<'_>| {
///     nfe.push(info.metrics.get("nfe_forward"));
///     Control::Continue
/// })?;
/// assert_eq!(nfe.len(), 4);
/// assert!(nfe.iter().all(|n| n.is_some_and(|n| n > 0.0)));
/// # let _ = summary;
/// # Ok::<(), models::ModelsError>(())
/// ```
#[derive(Debug)]
pub struct Classifier<M>(pub M);

impl<T: Float, M: ImageClassifier<T>> Model<T> for Classifier<M> {
    fn name(&self) -> &str {
        self.0.name()
    }

    fn params(&self) -> &ParamStore<T> {
        self.0.store()
    }

    fn params_mut(&mut self) -> &mut ParamStore<T> {
        self.0.store_mut()
    }

    fn loss<'t>(
        &mut self,
        tape: &'t Tape<T>,
        theta: Var<'t, T>,
        batch: &Batch<T>,
    ) -> Result<Var<'t, T>, ModelsError> {
        let x = tape.constant(&batch.images, &batch.shape)?;
        self.0.loss(tape, theta, x, &batch.labels)
    }

    fn set_threads(&mut self, threads: &Threads) -> Result<(), ModelsError> {
        self.0.set_threads(threads)
    }

    fn metrics(&self, metrics: &mut Metrics) {
        if let Some(s) = self.0.ode_stats() {
            metrics.set("nfe_forward", s.forward.nfe as f64);
            metrics.set("nfe_backward", (s.backward_nfe + s.backward_vjp) as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_parameter_counts() {
        let ode = OdeNet::<f32>::new(&OdeNetConfig::default()).unwrap();
        assert_eq!(ode.n_params(), 208_266);
        let res = ResNet::<f32>::new(&ResNetConfig::default()).unwrap();
        assert_eq!(res.n_params(), 576_778);
        assert_eq!(ConvNetConfig::mnist().feature_size(), (6, 6));
        assert_eq!(ConvNetConfig::digits().feature_size(), (2, 2));
    }

    #[test]
    fn degenerate_sizes_are_rejected() {
        let tiny = ConvNetConfig {
            stem_padding: 0,
            channels: 4,
            groups: 4,
            ..ConvNetConfig::digits()
        };
        assert!(ResNet::<f64>::new(&ResNetConfig::new(tiny)).is_err());
        let small = ConvNetConfig {
            height: 3,
            ..ConvNetConfig::digits()
        };
        assert!(OdeNet::<f64>::new(&OdeNetConfig::new(small)).is_err());
        let groups = ConvNetConfig {
            groups: 3,
            ..ConvNetConfig::digits()
        };
        assert!(ResNet::<f64>::new(&ResNetConfig::new(groups)).is_err());
    }

    #[test]
    fn accuracy_of_logits_counts_argmax() {
        let logits = [0.1, 0.9, 0.0, 2.0, -1.0, 0.5];
        assert!((accuracy_of_logits(&logits, 3, &[1, 0]) - 1.0).abs() < 1e-12);
        assert!((accuracy_of_logits(&logits, 3, &[2, 0]) - 0.5).abs() < 1e-12);
    }
}
