//! The flow: CNF blocks (an [`OdeBlock`] over the augmented state), stacked into a
//! trainable density model.

use adjoint::{GradientMode, Method, Options};
use autodiff::nn::{Init, ParamStore, ParamView};
use autodiff::{Float, Tape, Var};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, StandardNormal};

use super::layers::{Activation, ConcatSquashNet};
use super::regularizers::Rnode;
use super::trace::{Divergence, Probes, divergence, one_hot_seeds};
use crate::datasets::Batch;
use crate::training::{Metrics, Model};
use crate::{ModelsError, OdeBlock};

/// The field closure of a CNF block (boxed: one type for every variant).
pub type CnfField<T> =
    Box<dyn for<'t> FnMut(&'t Tape<T>, Var<'t, T>, Var<'t, T>, Var<'t, T>) -> Var<'t, T> + Send>;

/// Settings of a [`Cnf`]; [`CnfConfig::toy`] is FFJORD `train_toy.py`'s defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct CnfConfig {
    /// Dimension `d` of the data.
    pub dim: usize,
    /// Hidden widths of each block's concat-squash network.
    pub hidden: Vec<usize>,
    /// Activation between layers.
    pub activation: Activation,
    /// Number of stacked CNF blocks (each with its own network and end time).
    pub n_blocks: usize,
    /// Initial integration length `T` of each block (> 0).
    pub time_length: f64,
    /// Whether `T` is trained (FFJORD's `--train_T`, parametrised as `T = s²`).
    pub train_time: bool,
    /// Exact trace or Hutchinson's estimator.
    pub divergence: Divergence,
    /// RNODE regularisation.
    pub rnode: Rnode,
    /// Solver of the forward (and, by default, backward) solves.
    pub method: Method,
    /// Relative tolerance (> 0).
    pub rtol: f64,
    /// Absolute tolerance (> 0).
    pub atol: f64,
    /// Seed of the initial parameters and of the noise.
    pub seed: u64,
}

impl CnfConfig {
    /// FFJORD `train_toy.py`'s defaults for 2-D data: one block, concat-squash
    /// `2-64-64-64-2` with tanh, `T = 0.5` trained, exact trace, Dopri5 at
    /// `rtol = atol = 1e-5`, no regularisation.
    pub fn toy() -> Self {
        Self {
            dim: 2,
            hidden: vec![64, 64, 64],
            activation: Activation::Tanh,
            n_blocks: 1,
            time_length: 0.5,
            train_time: true,
            divergence: Divergence::Exact,
            rnode: Rnode::off(),
            method: Method::Dopri5,
            rtol: 1e-5,
            atol: 1e-5,
            seed: 0,
        }
    }

    fn validate(&self) -> Result<(), ModelsError> {
        let bad = |name, reason: String| Err(ModelsError::InvalidArgument { name, reason });
        if self.dim == 0 {
            return bad("CNF dim", "the data dimension must be at least 1".into());
        }
        if self.n_blocks == 0 {
            return bad("CNF blocks", "use at least one CNF block".into());
        }
        if !(self.time_length.is_finite() && self.time_length > 0.0) {
            return bad(
                "CNF time length",
                format!("must be finite and > 0, got {}", self.time_length),
            );
        }
        for (name, v) in [("rtol", self.rtol), ("atol", self.atol)] {
            if !(v.is_finite() && v > 0.0) {
                return bad(
                    "CNF tolerance",
                    format!("{name} must be finite and > 0, got {v}"),
                );
            }
        }
        Rnode::new(self.rnode.kinetic, self.rnode.jacobian)?;
        Ok(())
    }
}

/// `log p(x)` per sample (`[batch]`) and the batch means of the regulariser integrals
/// (kinetic, Jacobian; `None` when off).
struct LogProb<'t, T: Float> {
    logp: Var<'t, T>,
    regs: [Option<Var<'t, T>>; 2],
}

/// What a cached ODE block integrates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `[z, Δlog p, regularisers…]` with this divergence.
    Density(Divergence, bool, bool),
    /// `z` alone (sampling).
    Sample,
}

/// One CNF block: its network, its end time, and ODE blocks per batch size and kind.
struct Block<T: Float> {
    net: ConcatSquashNet,
    sqrt_time: ParamView,
    cache: Vec<(usize, Kind, OdeBlock<T, CnfField<T>>)>,
}

impl<T: Float> std::fmt::Debug for Block<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Block")
            .field("net", &self.net)
            .field("sqrt_time", &self.sqrt_time)
            .finish_non_exhaustive()
    }
}

/// The right-hand side of the augmented state for a batch of `b` samples in `d`
/// dimensions, flat `[z (b·d) | Δlog p (b) | E (b) | R (b)]`; `θ = [network | ε (b·d)]`.
fn density_field<T: Float>(
    net: ConcatSquashNet,
    batch: usize,
    dim: usize,
    div: Divergence,
    kinetic: bool,
    jacobian: bool,
) -> CnfField<T> {
    let seeds: Vec<Vec<T>> = match div {
        Divergence::Exact => one_hot_seeds(batch, dim),
        Divergence::Hutchinson(_) => Vec::new(),
    };
    let p = net.n_params();
    let bd = batch * dim;
    Box::new(move |tape, t, s, th| {
        // The trace needs ∂f/∂z even in a plain evaluation (recording off, `z` a
        // constant): record locally and make `z` differentiable by adding a zero leaf.
        let was = tape.is_recording();
        tape.set_recording(true);
        let z = s.narrow(0, 0, bd).reshape(&[batch, dim]) + tape.scalar(T::zero());
        let dz = net.forward(th.narrow(0, 0, p), t, z);
        let probes = match div {
            Divergence::Exact => Probes::Exact(&seeds),
            Divergence::Hutchinson(_) => Probes::Hutchinson(th.view(p, &[batch, dim])),
        };
        let out = match divergence(tape, dz, z, probes, jacobian) {
            Ok(terms) => {
                let mut parts = [dz; 4];
                parts[0] = dz.reshape(&[bd]);
                parts[1] = terms.trace.neg();
                let mut n = 2;
                if kinetic {
                    parts[n] = dz.square().sum_axis(1);
                    n += 1;
                }
                if let Some(fr) = terms.frobenius {
                    parts[n] = fr;
                    n += 1;
                }
                tape.concat(&parts[..n], 0)
            }
            // The tape's error is sticky when the failure came from an op; otherwise a
            // reshape to a wrong length records one, so the solve stops with an error.
            Err(_) => dz.reshape(&[bd + 1]),
        };
        tape.set_recording(was);
        out
    })
}

/// The field alone on a flat `[z (b·d)]` state (sampling).
fn sample_field<T: Float>(net: ConcatSquashNet, batch: usize, dim: usize) -> CnfField<T> {
    Box::new(move |_tape, t, s, th| {
        net.forward(th, t, s.reshape(&[batch, dim]))
            .reshape(&[batch * dim])
    })
}

/// A continuous normalizing flow (Chen et al. 2018; FFJORD, Grathwohl et al. 2019):
/// `n_blocks` CNF blocks, each integrating `ż = f_k(t, z)` over `[0, T_k]` with
/// `d log p/dt = −tr(∂f_k/∂z)`, mapping data `x` to `z ~ N(0, I)`, so that
///
/// ```text
/// log p(x) = log N(z(T); 0, I) + Σ_k ∫_0^{T_k} tr(∂f_k/∂z) dt.
/// ```
///
/// Training minimises the mean negative log-likelihood of a batch (plus the RNODE
/// terms); [`Model`] is implemented, so [`Trainer`](crate::Trainer) trains it with any
/// optimizer, and the gradient comes from each block's gradient mode (checkpointed
/// continuous adjoint by default, which differentiates through the trace: second
/// derivatives of the network). Batches are [`Batch`]es whose `images` hold the points
/// row-major (`shape = [n, 1, 1, d]`, see [`toy`](super::toy)).
#[derive(Debug)]
pub struct Cnf<T: Float> {
    config: CnfConfig,
    store: ParamStore<T>,
    blocks: Vec<Block<T>>,
    options: Options<T>,
    mode: GradientMode<T>,
    rng: StdRng,
    noise: Vec<Vec<T>>,
    last: Option<(usize, Kind)>,
    last_nll: f64,
    last_reg: [f64; 2],
}

impl<T: Float> Cnf<T> {
    /// A flow with freshly initialised parameters (seeded by `config.seed`): every block
    /// `k` registers `blocks.{k}.net.layers.{i}.*` and `blocks.{k}.sqrt_end_time`.
    pub fn new(config: CnfConfig) -> Result<Self, ModelsError> {
        config.validate()?;
        let mut store = ParamStore::new(config.seed);
        let mut blocks = Vec::with_capacity(config.n_blocks);
        for k in 0..config.n_blocks {
            let net = ConcatSquashNet::register(
                &mut store,
                &format!("blocks.{k}.net"),
                config.dim,
                &config.hidden,
                config.activation,
            )?;
            let sqrt_time = store.register(
                &format!("blocks.{k}.sqrt_end_time"),
                &[1],
                Init::Constant(config.time_length.sqrt()),
            )?;
            blocks.push(Block {
                net,
                sqrt_time,
                cache: Vec::new(),
            });
        }
        let options = Options::with_tol(
            T::from_f64_const(config.rtol),
            T::from_f64_const(config.atol),
        );
        Ok(Self {
            rng: StdRng::seed_from_u64(config.seed ^ 0x9e37_79b9_7f4a_7c15),
            config,
            store,
            blocks,
            options,
            mode: GradientMode::default(),
            noise: Vec::new(),
            last: None,
            last_nll: f64::NAN,
            last_reg: [f64::NAN; 2],
        })
    }

    /// The configuration.
    pub fn config(&self) -> &CnfConfig {
        &self.config
    }

    /// Sets the gradient mode of every block (default: the checkpointed adjoint).
    pub fn set_mode(&mut self, mode: GradientMode<T>) {
        self.mode = mode;
        self.clear_cache();
    }

    /// Sets the forward solver's options (tolerances, step limits); the method stays
    /// `config.method`.
    pub fn set_options(&mut self, options: Options<T>) {
        self.options = options;
        self.clear_cache();
    }

    /// Sets the divergence used by training (and by [`log_density`](Self::log_density)
    /// when asked for the training one).
    pub fn set_divergence(&mut self, divergence: Divergence) {
        self.config.divergence = divergence;
    }

    /// Sets the RNODE weights (validated).
    pub fn set_rnode(&mut self, rnode: Rnode) -> Result<(), ModelsError> {
        self.config.rnode = Rnode::new(rnode.kinetic, rnode.jacobian)?;
        Ok(())
    }

    /// Restarts the noise generator of Hutchinson's probes from `seed` (the probes of
    /// the next [`Model::loss`] are a function of it: for reproducible gradients).
    pub fn reseed_noise(&mut self, seed: u64) {
        self.rng = StdRng::seed_from_u64(seed);
    }

    /// The current end times `T_k` of the blocks.
    pub fn end_times(&self) -> Vec<f64> {
        self.blocks
            .iter()
            .map(|b| {
                let s = self.store.as_slice()[b.sqrt_time.offset()].to_f64_lossy();
                s * s
            })
            .collect()
    }

    /// Field evaluations of the last loss or density: `(forward, backward)` summed over
    /// the blocks (backward counts both evaluations and vector–Jacobian products).
    pub fn nfe(&self) -> (usize, usize) {
        let Some((batch, kind)) = self.last else {
            return (0, 0);
        };
        let mut f = 0;
        let mut b = 0;
        for blk in &self.blocks {
            if let Some((_, _, ode)) = blk.cache.iter().find(|(n, k, _)| *n == batch && *k == kind)
            {
                let s = ode.stats();
                f += s.forward.nfe;
                b += s.backward_nfe + s.backward_vjp;
            }
        }
        (f, b)
    }

    /// Negative log-likelihood of the last loss (without the regularisers), and the two
    /// regulariser means (`NaN` when off).
    pub fn last_terms(&self) -> (f64, [f64; 2]) {
        (self.last_nll, self.last_reg)
    }

    fn clear_cache(&mut self) {
        for b in &mut self.blocks {
            b.cache.clear();
        }
    }

    fn options_for(&self, kind: Kind, batch: usize) -> Options<T> {
        let mut o = self.options.clone();
        if let Kind::Density(_, k, j) = kind
            && (k || j)
        {
            o.error_components = Some(0..batch * (self.config.dim + 1));
        }
        o
    }

    /// The ODE block of block `k` for `batch` samples of `kind` (built on first use).
    fn ode(&mut self, k: usize, batch: usize, kind: Kind) -> Result<usize, ModelsError> {
        let dim = self.config.dim;
        if let Some(i) = self.blocks[k]
            .cache
            .iter()
            .position(|(n, kd, _)| *n == batch && *kd == kind)
        {
            return Ok(i);
        }
        let options = self.options_for(kind, batch);
        let blk = &mut self.blocks[k];
        let p = blk.net.n_params();
        let net = blk.net.clone();
        let ode = match kind {
            Kind::Density(div, kin, jac) => {
                let n = batch * (dim + 1 + usize::from(kin) + usize::from(jac));
                let np = p + if div.needs_noise() { batch * dim } else { 0 };
                OdeBlock::new(&[n], np, density_field(net, batch, dim, div, kin, jac))?
            }
            Kind::Sample => OdeBlock::new(&[batch * dim], p, sample_field(net, batch, dim))?,
        };
        let ode = ode
            .with_solver(self.config.method, options)
            .with_mode(self.mode.clone());
        blk.cache.push((batch, kind, ode));
        Ok(blk.cache.len() - 1)
    }

    /// `[0, T_k]` (or `[T_k, 0]` reversed) as a variable of the tape.
    fn times<'t>(
        &self,
        k: usize,
        tape: &'t Tape<T>,
        theta: Var<'t, T>,
        reverse: bool,
    ) -> Result<Var<'t, T>, ModelsError> {
        let sq = self.blocks[k].sqrt_time;
        let end = if self.config.train_time {
            theta.view(sq.offset(), &[1]).square()
        } else {
            let s = self.store.as_slice()[sq.offset()];
            tape.constant(&[s * s], &[1])?
        };
        let zero = tape.constant(&[T::zero()], &[1])?;
        let parts = if reverse { [end, zero] } else { [zero, end] };
        Ok(tape.concat(&parts, 0))
    }

    fn check_points(&self, points: &[T]) -> Result<usize, ModelsError> {
        let d = self.config.dim;
        if points.is_empty() || !points.len().is_multiple_of(d) {
            return Err(ModelsError::InvalidArgument {
                name: "CNF points",
                reason: format!(
                    "expected a non-empty row-major [n, {d}] array, got {} values",
                    points.len()
                ),
            });
        }
        if let Some(i) = points.iter().position(|v| !v.is_finite()) {
            return Err(ModelsError::NonFinite {
                what: "input point coordinate",
                index: i,
            });
        }
        Ok(points.len() / d)
    }

    /// `log p(x)` of each row of `x` (shape `[batch, d]`, on `tape`) with `div`, and the
    /// mean regulariser integrals; parameters from `theta` (the store's flat leaf).
    fn log_prob<'t>(
        &mut self,
        tape: &'t Tape<T>,
        theta: Var<'t, T>,
        x: Var<'t, T>,
        batch: usize,
        div: Divergence,
        rnode: Rnode,
    ) -> Result<LogProb<'t, T>, ModelsError> {
        let d = self.config.dim;
        let (kin, jac) = (rnode.has_kinetic(), rnode.has_jacobian());
        let kind = Kind::Density(div, kin, jac);
        let r = rnode.n_channels();
        let zeros = tape.full(T::zero(), &[batch * (1 + r)])?;
        let mut state = tape.concat(&[x.reshape(&[batch * d]), zeros], 0);
        if div.needs_noise() {
            self.noise.resize(self.blocks.len(), Vec::new());
        }
        for k in 0..self.blocks.len() {
            let i = self.ode(k, batch, kind)?;
            let net = &self.blocks[k].net;
            let w = theta.view(net.offset(), &[net.n_params()]);
            let th = if let Divergence::Hutchinson(noise) = div {
                let eps = &mut self.noise[k];
                eps.resize(batch * d, T::zero());
                noise.fill(&mut self.rng, eps);
                let e = tape.constant(eps, &[batch * d])?;
                tape.concat(&[w, e], 0)
            } else {
                w
            };
            let ts = self.times(k, tape, theta, false)?;
            let ode = &self.blocks[k].cache[i].2;
            let zs = ode.apply(state, th, ts);
            state = ode.final_state(zs);
        }
        self.last = Some((batch, kind));
        let z = state.narrow(0, 0, batch * d).reshape(&[batch, d]);
        let delta = state.narrow(0, batch * d, batch);
        let log_norm = T::from_f64_const(-0.5 * d as f64 * (2.0 * std::f64::consts::PI).ln());
        let logp = (z.square().sum_axis(1).mul_scalar(T::from_f64_const(-0.5)) - delta)
            .add_scalar(log_norm);
        let mut regs = [None, None];
        let mut c = batch * (d + 1);
        for (slot, on) in regs.iter_mut().zip([kin, jac]) {
            if on {
                *slot = Some(state.narrow(0, c, batch).mean());
                c += batch;
            }
        }
        Ok(LogProb { logp, regs })
    }

    /// `log p(x)` of every row of `points` (row-major `[n, d]`), all as one batch, with
    /// the divergence `div` (use [`Divergence::Exact`] for an exact density in small
    /// dimensions). No gradient is recorded.
    pub fn log_density(&mut self, points: &[T], div: Divergence) -> Result<Vec<T>, ModelsError> {
        let n = self.check_points(points)?;
        let tape = Tape::new();
        let theta = tape.constant(self.store.as_slice(), &[self.store.n_params()])?;
        let x = tape.constant(points, &[n, self.config.dim])?;
        let LogProb { logp, .. } = self.log_prob(&tape, theta, x, n, div, Rnode::off())?;
        Ok(logp.value()?)
    }

    /// Mean negative log-likelihood of `points` (row-major `[n, d]`) with `div`.
    pub fn nll(&mut self, points: &[T], div: Divergence) -> Result<f64, ModelsError> {
        let lp = self.log_density(points, div)?;
        Ok(-lp.iter().map(|v| v.to_f64_lossy()).sum::<f64>() / lp.len() as f64)
    }

    /// `n` samples (row-major `[n, d]`): `z ~ N(0, I)` drawn with `seed`, integrated
    /// through the blocks in reverse order from `T_k` back to 0.
    pub fn sample(&mut self, n: usize, seed: u64) -> Result<Vec<T>, ModelsError> {
        let d = self.config.dim;
        let mut rng = StdRng::seed_from_u64(seed);
        let z: Vec<T> = (0..n * d)
            .map(|_| T::from_f64_const(StandardNormal.sample(&mut rng)))
            .collect();
        self.transform_to_data(&z)
    }

    /// Maps base points `z` (row-major `[n, d]`) to data space (the inverse flow).
    pub fn transform_to_data(&mut self, z: &[T]) -> Result<Vec<T>, ModelsError> {
        let n = self.check_points(z)?;
        let d = self.config.dim;
        let tape = Tape::new();
        let theta = tape.constant(self.store.as_slice(), &[self.store.n_params()])?;
        let mut state = tape.constant(z, &[n * d])?;
        for k in (0..self.blocks.len()).rev() {
            let i = self.ode(k, n, Kind::Sample)?;
            let net = &self.blocks[k].net;
            let w = theta.view(net.offset(), &[net.n_params()]);
            let ts = self.times(k, &tape, theta, true)?;
            let ode = &self.blocks[k].cache[i].2;
            state = ode.final_state(ode.apply(state, w, ts));
        }
        Ok(state.value()?)
    }
}

impl<T: Float> Model<T> for Cnf<T> {
    fn name(&self) -> &str {
        "cnf"
    }

    fn params(&self) -> &ParamStore<T> {
        &self.store
    }

    fn params_mut(&mut self) -> &mut ParamStore<T> {
        &mut self.store
    }

    /// Mean `−log p(x)` of the batch plus `λ_K E + λ_J R` (RNODE).
    fn loss<'t>(
        &mut self,
        tape: &'t Tape<T>,
        theta: Var<'t, T>,
        batch: &Batch<T>,
    ) -> Result<Var<'t, T>, ModelsError> {
        let n = self.check_points(&batch.images)?;
        let x = tape.constant(&batch.images, &[n, self.config.dim])?;
        let (div, rnode) = (self.config.divergence, self.config.rnode);
        let LogProb { logp, regs } = self.log_prob(tape, theta, x, n, div, rnode)?;
        let nll = logp.mean().neg();
        self.last_nll = nll.item()?.to_f64_lossy();
        let mut loss = nll;
        for (j, (r, w)) in regs.iter().zip([rnode.kinetic, rnode.jacobian]).enumerate() {
            self.last_reg[j] = f64::NAN;
            if let Some(r) = r {
                self.last_reg[j] = r.item()?.to_f64_lossy();
                loss = loss + r.mul_scalar(T::from_f64_const(w));
            }
        }
        Ok(loss)
    }

    fn metrics(&self, metrics: &mut Metrics) {
        let (f, b) = self.nfe();
        metrics.set("nll", self.last_nll);
        metrics.set("nfe_forward", f as f64);
        metrics.set("nfe_backward", b as f64);
        if self.config.rnode.has_kinetic() {
            metrics.set("kinetic", self.last_reg[0]);
        }
        if self.config.rnode.has_jacobian() {
            metrics.set("jacobian", self.last_reg[1]);
        }
        metrics.set("end_time", self.end_times().iter().sum());
    }
}
