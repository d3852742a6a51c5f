//! Stochastic gradient descent with momentum.

use super::{Optimizer, OptimizerState, bad_hyper, check_lengths, check_nonneg, restore_buffers};
use crate::{Error, Float};

/// Hyper-parameters of [`Sgd`] (PyTorch's `torch.optim.SGD` arguments and defaults).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdConfig {
    /// Learning rate `η` (default 1e-2).
    pub lr: f64,
    /// Momentum `μ ∈ [0, 1)` (default 0: plain gradient descent).
    pub momentum: f64,
    /// Dampening `τ ∈ [0, 1]` of the gradient added to the momentum (default 0).
    pub dampening: f64,
    /// L2 weight decay `λ ≥ 0` added to the gradient (default 0).
    pub weight_decay: f64,
    /// Nesterov momentum (needs `μ > 0` and `τ = 0`; default false).
    pub nesterov: bool,
}

impl Default for SgdConfig {
    fn default() -> Self {
        Self {
            lr: 1e-2,
            momentum: 0.0,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: false,
        }
    }
}

/// SGD with optional (Nesterov) momentum and weight decay; see the
/// [module docs](crate::optim) for the update.
#[derive(Clone, Debug)]
pub struct Sgd<T: Float> {
    cfg: SgdConfig,
    buf: Vec<T>,
    t: u64,
}

impl<T: Float> Sgd<T> {
    /// An optimizer with the given hyper-parameters (validated).
    pub fn new(cfg: SgdConfig) -> Result<Self, Error> {
        const OP: &str = "Sgd::new";
        check_nonneg(cfg.lr, OP, "lr")?;
        if !(0.0..1.0).contains(&cfg.momentum) {
            return Err(bad_hyper(
                OP,
                "momentum",
                cfg.momentum,
                "it must be in [0, 1)",
            ));
        }
        if !(0.0..=1.0).contains(&cfg.dampening) {
            return Err(bad_hyper(
                OP,
                "dampening",
                cfg.dampening,
                "it must be in [0, 1]",
            ));
        }
        check_nonneg(cfg.weight_decay, OP, "weight_decay")?;
        if cfg.nesterov && (cfg.momentum <= 0.0 || cfg.dampening != 0.0) {
            return Err(bad_hyper(
                OP,
                "momentum",
                cfg.momentum,
                "Nesterov momentum needs momentum > 0 and dampening = 0",
            ));
        }
        Ok(Self {
            cfg,
            buf: Vec::new(),
            t: 0,
        })
    }

    /// Plain gradient descent `θ ← θ − η g`.
    pub fn with_lr(lr: f64) -> Result<Self, Error> {
        Self::new(SgdConfig {
            lr,
            ..SgdConfig::default()
        })
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &SgdConfig {
        &self.cfg
    }
}

impl<T: Float> Optimizer<T> for Sgd<T> {
    fn step(&mut self, params: &mut [T], grads: &[T]) -> Result<(), Error> {
        let c = self.cfg;
        let mu = c.momentum;
        let (np, ng) = (params.len(), grads.len());
        if mu > 0.0 {
            check_lengths("Sgd::step gradient", np, ng, &mut [&mut self.buf])?;
        } else {
            check_lengths::<T>("Sgd::step gradient", np, ng, &mut [])?;
        }
        let (lr, wd) = (T::from_f64_const(c.lr), T::from_f64_const(c.weight_decay));
        if mu == 0.0 {
            for (p, &g) in params.iter_mut().zip(grads) {
                let g = g + wd * *p;
                *p -= lr * g;
            }
        } else {
            let (m, damp) = (T::from_f64_const(mu), T::from_f64_const(1.0 - c.dampening));
            let first = self.t == 0;
            for ((p, &g), b) in params.iter_mut().zip(grads).zip(self.buf.iter_mut()) {
                let g = g + wd * *p;
                *b = if first { g } else { m * *b + damp * g };
                let d = if c.nesterov { g + m * *b } else { *b };
                *p -= lr * d;
            }
        }
        self.t += 1;
        Ok(())
    }

    fn learning_rate(&self) -> f64 {
        self.cfg.lr
    }

    fn set_learning_rate(&mut self, lr: f64) -> Result<(), Error> {
        check_nonneg(lr, "Sgd::set_learning_rate", "lr")?;
        self.cfg.lr = lr;
        Ok(())
    }

    fn n_steps(&self) -> u64 {
        self.t
    }

    fn reset(&mut self) {
        self.buf.fill(T::zero());
        self.t = 0;
    }

    fn state(&self) -> OptimizerState<T> {
        OptimizerState {
            n_steps: self.t,
            buffers: vec![("momentum_buffer".to_owned(), self.buf.clone())],
        }
    }

    fn load_state(&mut self, state: &OptimizerState<T>) -> Result<(), Error> {
        restore_buffers(
            "Sgd::load_state",
            state,
            &["momentum_buffer"],
            &mut [&mut self.buf],
        )?;
        self.t = state.n_steps;
        Ok(())
    }
}
