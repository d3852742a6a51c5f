//! The baselines of Rubanova et al. (2019) for the same data and budget: an ODE-RNN used
//! on its own, and an RNN with the time gaps as input (RNN-Δt).
//!
//! Both run forward in time over the batch's union of times and predict each point from
//! their state *before* seeing it: at row `i` the prediction is `W h⁻(t_i) + c`, then the
//! series observed there update `h` with a masked GRU (input `[x ⊙ mask, mask]`, plus the
//! gap for RNN-Δt; see [`gru`](super::gru)). Between rows:
//!
//! * ODE-RNN: `dh/dt = f_φ(h)` over the gap (RK4 steps of at most `max_step`), so
//!   `h⁻(t_i)` is the state flowed from the last update to `t_i`;
//! * RNN-Δt: the state stays; the prediction at `t_i` is read from
//!   `GRU([0, 0, Δt_b], h)` with `Δt_b` the time since series `b`'s last observation
//!   (without changing `h`), and the update at an observation takes `Δt_b` as input too.
//!
//! Training minimises the Gaussian negative log-likelihood (fixed `s`) of the one-step
//! predictions of the `target` values; after the last observation (extrapolation) the
//! ODE-RNN keeps flowing and RNN-Δt keeps reading its state with a growing gap.

use autodiff::nn::{GruCell, Linear, ParamStore};
use autodiff::{Float, Tape, Var};
use rand::rngs::StdRng;

use super::blocks::BlockCache;
use super::data::{IrregularBatch, gt0};
use super::encoder::{hidden_field, mlp_cache};
use super::gru::{masked_gru, row_input};
use super::model::masked_mse;
use super::train::SeriesModel;
use crate::ModelsError;

/// Which baseline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BaselineKind {
    /// GRU updates, ODE between observations.
    OdeRnn,
    /// GRU with the time gap as an input, constant state between observations.
    RnnDt,
}

/// A recurrent baseline (see the module docs).
pub struct Baseline<T: Float> {
    kind: BaselineKind,
    store: ParamStore<T>,
    gru: GruCell,
    field: Option<(BlockCache<T>, usize, usize)>,
    out: Linear,
    hidden: usize,
    dim: usize,
    obs_std: f64,
    buf: Vec<T>,
    mbuf: Vec<T>,
    gaps: Vec<T>,
    last: Vec<T>,
    qbuf: Vec<T>,
}

impl<T: Float> std::fmt::Debug for Baseline<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Baseline")
            .field("kind", &self.kind)
            .field("hidden", &self.hidden)
            .field("n_params", &self.store.n_params())
            .finish_non_exhaustive()
    }
}

impl<T: Float> Baseline<T> {
    /// A baseline for `dim` components with a hidden state of `hidden` (ODE field of
    /// `units` units, RK4 steps ≤ `max_step`), observation noise `obs_std`, parameters
    /// from `seed`.
    pub fn new(
        kind: BaselineKind,
        dim: usize,
        hidden: usize,
        units: usize,
        max_step: f64,
        obs_std: f64,
        seed: u64,
    ) -> Result<Self, ModelsError> {
        if dim == 0 || hidden == 0 || units == 0 || !gt0(max_step) || !gt0(obs_std) {
            return Err(ModelsError::InvalidArgument {
                name: "baseline",
                reason: format!(
                    "sizes, max_step and obs_std must be > 0 (dim {dim}, hidden {hidden}, units {units}, max_step {max_step}, obs_std {obs_std})"
                ),
            });
        }
        let mut store = ParamStore::<T>::new(seed);
        let extra = usize::from(kind == BaselineKind::RnnDt);
        let gru = GruCell::new(&mut store, "gru", 2 * dim + extra, hidden, true)?;
        let field = match kind {
            BaselineKind::OdeRnn => {
                let (mlp, off, len) = hidden_field(&mut store, "ode", hidden, units)?;
                Some((mlp_cache(mlp, hidden, len, max_step), off, len))
            }
            BaselineKind::RnnDt => None,
        };
        let out = Linear::new(&mut store, "out", hidden, dim, true)?;
        Ok(Self {
            kind,
            store,
            gru,
            field,
            out,
            hidden,
            dim,
            obs_std,
            buf: Vec::new(),
            mbuf: Vec::new(),
            gaps: Vec::new(),
            last: Vec::new(),
            qbuf: Vec::new(),
        })
    }

    /// The kind.
    pub fn kind(&self) -> BaselineKind {
        self.kind
    }

    /// The predictions `[N, B, d]` of every row (each from the state before the row's
    /// observations; rows without mask or target entries are skipped and left at 0).
    pub fn predict<'t>(
        &mut self,
        tape: &'t Tape<T>,
        theta: Var<'t, T>,
        batch: &IrregularBatch<T>,
    ) -> Result<Var<'t, T>, ModelsError> {
        let (b, d, n) = (batch.batch, self.dim, batch.n_times());
        if batch.dim != d {
            return Err(ModelsError::InvalidArgument {
                name: "batch",
                reason: format!(
                    "the baseline takes {d} components, the batch has {}",
                    batch.dim
                ),
            });
        }
        let mut h = tape.full(T::zero(), &[b, self.hidden])?;
        let zero_row = tape.full(T::zero(), &[1, b, d])?;
        let mut rows = Vec::with_capacity(n);
        self.last.clear();
        self.last.resize(b, batch.times[0]);
        let mut prev = batch.times[0];
        for i in 0..n {
            let row = i * b * d..(i + 1) * b * d;
            let needed = batch.mask[row.clone()]
                .iter()
                .chain(&batch.target[row])
                .any(|&m| m != T::zero());
            if !needed {
                rows.push(zero_row);
                continue;
            }
            let t = batch.times[i];
            self.gaps.clear();
            self.gaps.extend(self.last.iter().map(|&l| t - l));
            let pred_h = match (&mut self.field, self.kind) {
                (Some((cache, off, len)), _) => {
                    if t > prev {
                        let ts = tape.constant(&[prev, t], &[2])?;
                        h = cache
                            .apply(h, theta.view(*off, &[*len]), ts)?
                            .narrow(0, 1, 1)
                            .reshape(&[b, self.hidden]);
                    }
                    h
                }
                _ => {
                    self.qbuf.clear();
                    self.qbuf.resize(b * (2 * d + 1), T::zero());
                    for j in 0..b {
                        self.qbuf[j * (2 * d + 1) + 2 * d] = self.gaps[j];
                    }
                    let q = tape.constant(&self.qbuf, &[b, 2 * d + 1])?;
                    self.gru.forward(theta, q, h)
                }
            };
            prev = t;
            rows.push(self.out.forward(theta, pred_h).reshape(&[1, b, d]));
            let gap = (self.kind == BaselineKind::RnnDt).then_some(&self.gaps[..]);
            let (x, m, any) = row_input(
                tape,
                &batch.values,
                &batch.mask,
                i,
                b,
                d,
                gap,
                &mut self.buf,
                &mut self.mbuf,
            )?;
            if any {
                h = masked_gru(&self.gru, theta, x, m, h);
                for (l, &mi) in self.last.iter_mut().zip(&self.mbuf) {
                    if mi != T::zero() {
                        *l = t;
                    }
                }
            }
        }
        Ok(tape.concat(&rows, 0))
    }
}

impl<T: Float> SeriesModel<T> for Baseline<T> {
    fn params(&self) -> &ParamStore<T> {
        &self.store
    }

    fn params_mut(&mut self) -> &mut ParamStore<T> {
        &mut self.store
    }

    /// The Gaussian negative log-likelihood (without its constant) of the targets,
    /// `Σ target (x̂ − x)² / (2 s²)`, averaged over the series.
    fn train_loss<'t>(
        &mut self,
        tape: &'t Tape<T>,
        theta: Var<'t, T>,
        batch: &IrregularBatch<T>,
        _rng: &mut StdRng,
        _step: usize,
    ) -> Result<Var<'t, T>, ModelsError> {
        let (n, b, d) = (batch.n_times(), batch.batch, batch.dim);
        let pred = self.predict(tape, theta, batch)?;
        let x = tape.constant(&batch.values, &[n, b, d])?;
        let m = tape.constant(&batch.target, &[n, b, d])?;
        let s = T::from_f64_const(0.5 / (self.obs_std * self.obs_std * b as f64));
        Ok(((pred - x).square() * m).sum().mul_scalar(s))
    }

    fn target_mse(&mut self, batch: &IrregularBatch<T>) -> Result<Option<f64>, ModelsError> {
        let tape = Tape::<T>::new();
        let theta = self.store.leaf(&tape)?;
        let pred = self.predict(&tape, theta, batch)?.value()?;
        Ok(masked_mse(&pred, &batch.values, &batch.target))
    }
}
