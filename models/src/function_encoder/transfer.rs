//! Zero-shot transfer to held-out systems, and the baselines it is measured against.
//!
//! A held-out system comes with two sets of trajectories ([`TransferCase`]): the
//! demonstrations that encode it (coefficients by [`FunctionEncoder::encode`], no gradient
//! step) and test trajectories from other initial states. The figure of merit is the
//! multi-step prediction error: the root-mean-square error, over all test trajectories,
//! sample times and components, of the states predicted from each test trajectory's first
//! sample by one solve of the encoded field ([`rmse`]).
//!
//! Baselines, both plain Neural ODEs (`K = 0` with the average field, see
//! [`Basis`](super::Basis)) trained with the same loss, optimiser and solver:
//!
//! * the *global* Neural ODE, one field trained on all training systems (it cannot tell
//!   systems apart: the error a basis must beat);
//! * the *oracle*, a Neural ODE trained on the held-out system's own demonstrations (what
//!   gradient steps on the new system buy, at the cost of training per system).

use std::time::{Duration, Instant};

use autodiff::optim::{Adam, Schedule, Scheduled};

use super::basis::BasisConfig;
use super::coefficients::CoefficientMethod;
use super::systems::{DemoConfig, Demonstrations, System};
use super::train::{EncoderSettings, FunctionEncoder, SystemLoader};
use crate::ModelsError;
use crate::training::{Callback, TrainConfig, TrainSummary, Trainer};

/// A held-out system with its encoding demonstrations and its test trajectories.
#[derive(Debug, Clone, PartialEq)]
pub struct TransferCase {
    /// The system.
    pub system: System,
    /// Demonstrations the coefficients are computed from.
    pub encode: Demonstrations,
    /// Trajectories the prediction is scored on (other initial states and times).
    pub test: Demonstrations,
}

impl TransferCase {
    /// A case for `system`: demonstrations of `encode`, test trajectories of `test`, both
    /// drawn from `seed` (different streams).
    pub fn new(
        system: System,
        encode: &DemoConfig,
        test: &DemoConfig,
        seed: u64,
    ) -> Result<Self, ModelsError> {
        Ok(Self {
            system,
            encode: Demonstrations::generate(system, encode, seed)?,
            test: Demonstrations::generate(system, test, seed ^ 0x7E57_7E57)?,
        })
    }
}

/// Root-mean-square difference of two equally long slices (`NaN` if empty or of
/// different lengths).
pub fn rmse(a: &[f64], b: &[f64]) -> f64 {
    if a.is_empty() || a.len() != b.len() {
        return f64::NAN;
    }
    let s: f64 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
    (s / a.len() as f64).sqrt()
}

/// The prediction of the test trajectories of `case` by `fe` with coefficients `alpha`
/// (`[n_times, n_traj, 2]`, the test set's layout).
pub fn predict_test(
    fe: &mut FunctionEncoder,
    alpha: &[f64],
    test: &Demonstrations,
) -> Result<Vec<f64>, ModelsError> {
    fe.predict(alpha, test.initial_states(), &test.ts)
}

/// The outcome of one zero-shot transfer.
#[derive(Debug, Clone, PartialEq)]
pub struct ZeroShot {
    /// The coefficients.
    pub alpha: Vec<f64>,
    /// Multi-step prediction RMSE on the test trajectories.
    pub rmse: f64,
    /// Wall time of the encoding (velocities, basis values, Gram solve).
    pub encode_time: Duration,
}

/// Encodes `case` with `method` (no gradient step) and scores the prediction of its test
/// trajectories.
pub fn zero_shot(
    fe: &mut FunctionEncoder,
    case: &TransferCase,
    method: CoefficientMethod,
) -> Result<ZeroShot, ModelsError> {
    let start = Instant::now();
    let alpha = fe.encode_with(&case.encode, method)?;
    let encode_time = start.elapsed();
    let pred = predict_test(fe, &alpha, &case.test)?;
    Ok(ZeroShot {
        rmse: rmse(&pred, &case.test.states),
        alpha,
        encode_time,
    })
}

/// How a model is trained (the basis and both baselines share it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrainPlan {
    /// Epochs over the training systems.
    pub epochs: u64,
    /// Systems per mini-batch.
    pub batch: usize,
    /// Adam's peak learning rate (cosine-decayed to 1 % over the run).
    pub lr: f64,
    /// Gradient norm bound.
    pub clip: f64,
    /// Seed of the system shuffles.
    pub seed: u64,
}

/// Trains `fe` on its systems by `plan` (Adam, cosine schedule, gradient clipping),
/// calling `callback` after each step.
pub fn train_encoder<C: Callback + ?Sized>(
    fe: &mut FunctionEncoder,
    plan: &TrainPlan,
    callback: &mut C,
) -> Result<TrainSummary, ModelsError> {
    let loader = SystemLoader::new(fe.n_systems(), plan.batch, plan.seed)?;
    let steps = plan.epochs * fe.n_systems().div_ceil(plan.batch) as u64;
    let schedule = Schedule::cosine(plan.lr, steps.max(1), plan.lr * 0.01)?;
    let opt = Scheduled::new(Adam::with_lr(plan.lr)?, schedule);
    let config = TrainConfig::epochs(plan.epochs)?.with_clip_grad_norm(plan.clip)?;
    let mut trainer = Trainer::new(opt, config);
    trainer.fit(fe, &loader, callback)
}

/// Trains the oracle of `case` (a Neural ODE with the same networks as the average
/// field of `config`, on the case's demonstrations alone) and returns it.
pub fn train_oracle<C: Callback + ?Sized>(
    case: &TransferCase,
    config: BasisConfig,
    settings: &EncoderSettings,
    plan: &TrainPlan,
    callback: &mut C,
) -> Result<FunctionEncoder, ModelsError> {
    let config = BasisConfig {
        k: 0,
        residual: true,
        ..config
    };
    let mut fe = FunctionEncoder::new(
        "oracle",
        config,
        vec![case.encode.clone()],
        settings.clone(),
    )?;
    train_encoder(&mut fe, plan, callback)?;
    Ok(fe)
}
