//! The recognition network `q(z₀ | x)`: an ODE-RNN run backwards in time.
//!
//! Over the batch's union of times `t_0 < … < t_{N−1}`, from `h = 0` at the last time
//! with an observation, the encoder visits the rows with observations in reverse order:
//! between two of them the hidden state follows `dh/dt = f_φ(h)` over the actual gap (an
//! ODE solve backwards in time, [`Method::Rk4`] with steps of at most `max_step`), and at
//! each one a GRU updates it with `[x ⊙ mask, mask]` for the series observed there (the
//! others keep their state, see [`gru`](super::gru)); a series' state stays 0 until its
//! own last observation, so its encoding does not depend on the rest of its batch. After the row `t_0` a linear layer
//! gives `(μ, log σ²)` of `q(z₀ | x) = N(μ, diag σ²)` (Rubanova et al. 2019, §3.2).
//!
//! [`EncoderKind::Rnn`] is torchdiffeq's `RecognitionRNN` (a `tanh` RNN over the rows,
//! no ODE between them): the encoder of `examples/latent_ode.py`, used to compare speed
//! with it on the same architecture.
//!
//! The gradient of the state vanishes backwards through the updates (×0.4–0.5 per row
//! on the spirals): the state passes through [`flush_tiny_grads`] after every update,
//! which zeroes gradient entries below `min_positive / ε` (≈ 1e-31 in `f32`) before they
//! reach the subnormal range, where arithmetic is two orders of magnitude slower.

use adjoint::{GradientMode, Method, Options};
use autodiff::nn::{Activation, GruCell, Linear, Mlp, ParamStore};
use std::sync::Arc;

use autodiff::{CustomOp, Float, Tape, Var};

use super::blocks::{BlockCache, boxed, sub_network};
use super::data::IrregularBatch;
use super::gru::{flush_op, flush_tiny_grads, masked_gru, masked_rnn, row_input};
use crate::ModelsError;

/// Which recognition network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum EncoderKind {
    /// ODE-RNN (GRU updates, ODE between observations), Rubanova et al.
    #[default]
    OdeRnn,
    /// `tanh` RNN over the observation rows (torchdiffeq's `RecognitionRNN`).
    Rnn,
}

/// The recognition network (see the module docs).
pub struct Encoder<T: Float> {
    kind: EncoderKind,
    gru: Option<GruCell>,
    rnn: Option<Linear>,
    field: Option<(BlockCache<T>, usize, usize)>,
    out: Linear,
    hidden: usize,
    latent: usize,
    dim: usize,
    max_step: f64,
    buf: Vec<T>,
    mbuf: Vec<T>,
    /// [`flush_tiny_grads`]' op, applied to the state after every update.
    flush: Arc<dyn CustomOp<T>>,
}

impl<T: Float> std::fmt::Debug for Encoder<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("kind", &self.kind)
            .field("hidden", &self.hidden)
            .field("latent", &self.latent)
            .finish_non_exhaustive()
    }
}

/// The tanh MLP `h ↦ f_φ(h)` of an ODE-RNN's hidden state, as a block field.
pub(crate) fn hidden_field<T: Float>(
    store: &mut ParamStore<T>,
    name: &str,
    hidden: usize,
    units: usize,
) -> Result<(Mlp, usize, usize), ModelsError> {
    sub_network(store, |s| {
        Mlp::builder(hidden, hidden)
            .hidden(&[units])
            .activation(Activation::Tanh)
            .build(s, name)
    })
}

/// A block cache over an autonomous MLP field.
pub(crate) fn mlp_cache<T: Float>(
    mlp: Mlp,
    width: usize,
    n_params: usize,
    max_step: f64,
) -> BlockCache<T> {
    let options = Options {
        fixed_step: Some(T::from_f64_const(max_step)),
        ..Options::default()
    };
    BlockCache::new(
        width,
        n_params,
        Method::Rk4,
        options,
        GradientMode::Direct,
        Box::new(move || {
            let m = mlp.clone();
            boxed(move |_tape, _t, z, th| m.forward(th, z))
        }),
    )
}

impl<T: Float> Encoder<T> {
    /// Registers the encoder's parameters in `store`: `dim` observed components, hidden
    /// state of `hidden`, ODE field with `units` hidden units (ODE-RNN only), `latent`
    /// latent dimensions; ODE steps of at most `max_step` (> 0).
    pub fn new(
        store: &mut ParamStore<T>,
        kind: EncoderKind,
        dim: usize,
        hidden: usize,
        units: usize,
        latent: usize,
        max_step: f64,
    ) -> Result<Self, ModelsError> {
        if !(max_step.is_finite() && max_step > 0.0) {
            return Err(ModelsError::InvalidArgument {
                name: "max_step",
                reason: format!("the encoder's ODE step must be finite and > 0, got {max_step}"),
            });
        }
        let (gru, rnn, field) = match kind {
            EncoderKind::OdeRnn => {
                let gru = GruCell::new(store, "encoder.gru", 2 * dim, hidden, true)?;
                let (mlp, off, len) = hidden_field(store, "encoder.ode", hidden, units)?;
                let cache = mlp_cache(mlp, hidden, len, max_step);
                (Some(gru), None, Some((cache, off, len)))
            }
            EncoderKind::Rnn => {
                let rnn = Linear::new(store, "encoder.i2h", 2 * dim + hidden, hidden, true)?;
                (None, Some(rnn), None)
            }
        };
        let out = Linear::new(store, "encoder.h2o", hidden, 2 * latent, true)?;
        Ok(Self {
            kind,
            gru,
            rnn,
            field,
            out,
            hidden,
            latent,
            dim,
            max_step,
            buf: Vec::new(),
            mbuf: Vec::new(),
            flush: flush_op(),
        })
    }

    /// The kind.
    pub fn kind(&self) -> EncoderKind {
        self.kind
    }

    /// Largest ODE step between observations.
    pub fn max_step(&self) -> f64 {
        self.max_step
    }

    /// Sets the gradient mode of the encoder's ODE solves (default: direct, through the
    /// RK4 steps).
    pub fn set_mode(&mut self, mode: GradientMode<T>) {
        if let Some((c, _, _)) = &mut self.field {
            c.set_mode(mode);
        }
    }

    /// Field evaluations of the encoder's ODE solves since the last call.
    pub fn take_nfe(&mut self) -> usize {
        self.field.as_mut().map_or(0, |(c, _, _)| c.take_nfe())
    }

    /// `(μ, log σ²)`, each `[B, latent]`, of `q(z₀ | x)` for the batch's `mask`ed values.
    pub fn encode<'t>(
        &mut self,
        tape: &'t Tape<T>,
        theta: Var<'t, T>,
        batch: &IrregularBatch<T>,
    ) -> Result<(Var<'t, T>, Var<'t, T>), ModelsError> {
        if batch.dim != self.dim {
            return Err(ModelsError::InvalidArgument {
                name: "batch",
                reason: format!(
                    "the encoder takes {} components, the batch has {}",
                    self.dim, batch.dim
                ),
            });
        }
        let b = batch.batch;
        let mut h = tape.full(T::zero(), &[b, self.hidden])?;
        let mut prev: Option<T> = None;
        // Series that have had an observation (in reverse time) so far: the others keep
        // h = 0 until their last observation, so that a series' encoding does not depend
        // on which other series share its batch.
        let mut started = vec![T::zero(); b];
        let mut all_started = false;
        for i in (0..batch.n_times()).rev() {
            let (x, m, any) = row_input(
                tape,
                &batch.values,
                &batch.mask,
                i,
                b,
                self.dim,
                None,
                &mut self.buf,
                &mut self.mbuf,
            )?;
            if !any && i > 0 {
                continue;
            }
            let t = batch.times[i];
            if let (Some(tp), Some((cache, off, len))) = (prev, self.field.as_mut()) {
                let ts = tape.constant(&[tp, t], &[2])?;
                let hs = cache.apply(h, theta.view(*off, &[*len]), ts)?;
                h = hs.narrow(0, 1, 1).reshape(&[b, self.hidden]);
                if !all_started {
                    h = h * tape.constant(&started, &[b, 1])?;
                }
            }
            if any {
                for (s, &mi) in started.iter_mut().zip(&self.mbuf) {
                    if mi != T::zero() {
                        *s = T::one();
                    }
                }
                all_started = started.iter().all(|&s| s == T::one());
                h = match (&self.gru, &self.rnn) {
                    (Some(g), _) => masked_gru(g, theta, x, m, h),
                    (None, Some(r)) => masked_rnn(tape, r, theta, x, m, h),
                    (None, None) => h,
                };
                // The gradient vanishes backwards through the updates: keep it out of
                // the (slow) subnormal range.
                h = flush_tiny_grads(&self.flush, h);
                prev = Some(t);
            } else if prev.is_some() {
                prev = Some(t);
            }
        }
        let out = self.out.forward(theta, h);
        let (mu, lv) = out.split_at(1, self.latent);
        Ok((mu, lv))
    }
}
