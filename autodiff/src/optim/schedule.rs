//! Learning-rate schedules.

use super::{Optimizer, OptimizerState, bad_hyper, check_nonneg};
use crate::{Error, Float};

/// A learning rate as a function of the step index `s = 0, 1, 2, …` (the number of
/// updates already made). Closures `Fn(u64) -> f64` are schedules too.
pub trait LrSchedule {
    /// The learning rate for the update with index `step`.
    fn lr(&self, step: u64) -> f64;
}

impl<F: Fn(u64) -> f64> LrSchedule for F {
    fn lr(&self, step: u64) -> f64 {
        self(step)
    }
}

/// The usual schedules (PyTorch's `lr_scheduler` semantics, stepped once per update).
/// Build them with the validating constructors ([`Schedule::constant`],
/// [`Schedule::step_decay`], [`Schedule::exponential`], [`Schedule::cosine`],
/// [`Schedule::with_warmup`]).
#[derive(Clone, Debug, PartialEq)]
pub enum Schedule {
    /// `η(s) = η₀`.
    Constant {
        /// `η₀`.
        lr: f64,
    },
    /// `η(s) = η₀ γ^⌊s / step_size⌋` (PyTorch's `StepLR`).
    StepDecay {
        /// `η₀`.
        lr: f64,
        /// Steps between decays.
        step_size: u64,
        /// Decay factor `γ`.
        gamma: f64,
    },
    /// `η(s) = η₀ γ^s` (PyTorch's `ExponentialLR`).
    Exponential {
        /// `η₀`.
        lr: f64,
        /// Decay factor `γ`.
        gamma: f64,
    },
    /// `η(s) = η_min + (η₀ − η_min)(1 + cos(π s / T))/2` for `s ≤ T`, then `η_min`
    /// (PyTorch's `CosineAnnealingLR` over one half-period, held at the end).
    Cosine {
        /// `η₀`.
        lr: f64,
        /// Length `T` of the annealing.
        t_max: u64,
        /// Final learning rate `η_min`.
        eta_min: f64,
    },
    /// Linear warm-up over `steps` updates, then `after` shifted by `steps`:
    /// `η(s) = after(0) · (s + 1)/(steps + 1)` for `s < steps`, `after(s − steps)` then.
    Warmup {
        /// Warm-up length.
        steps: u64,
        /// The schedule that follows.
        after: Box<Schedule>,
    },
}

impl Schedule {
    /// A constant learning rate.
    pub fn constant(lr: f64) -> Result<Self, Error> {
        check_nonneg(lr, "Schedule::constant", "lr")?;
        Ok(Schedule::Constant { lr })
    }

    /// `η₀ γ^⌊s / step_size⌋`.
    pub fn step_decay(lr: f64, step_size: u64, gamma: f64) -> Result<Self, Error> {
        const OP: &str = "Schedule::step_decay";
        check_nonneg(lr, OP, "lr")?;
        check_nonneg(gamma, OP, "gamma")?;
        if step_size == 0 {
            return Err(bad_hyper(OP, "step_size", 0.0, "it must be > 0"));
        }
        Ok(Schedule::StepDecay {
            lr,
            step_size,
            gamma,
        })
    }

    /// `η₀ γ^s`.
    pub fn exponential(lr: f64, gamma: f64) -> Result<Self, Error> {
        const OP: &str = "Schedule::exponential";
        check_nonneg(lr, OP, "lr")?;
        check_nonneg(gamma, OP, "gamma")?;
        Ok(Schedule::Exponential { lr, gamma })
    }

    /// Cosine annealing from `lr` to `eta_min` over `t_max` steps.
    pub fn cosine(lr: f64, t_max: u64, eta_min: f64) -> Result<Self, Error> {
        const OP: &str = "Schedule::cosine";
        check_nonneg(lr, OP, "lr")?;
        check_nonneg(eta_min, OP, "eta_min")?;
        if t_max == 0 {
            return Err(bad_hyper(OP, "t_max", 0.0, "it must be > 0"));
        }
        Ok(Schedule::Cosine { lr, t_max, eta_min })
    }

    /// This schedule preceded by a linear warm-up of `steps` updates (`steps > 0`).
    pub fn with_warmup(self, steps: u64) -> Result<Self, Error> {
        if steps == 0 {
            return Err(bad_hyper(
                "Schedule::with_warmup",
                "steps",
                0.0,
                "it must be > 0",
            ));
        }
        Ok(Schedule::Warmup {
            steps,
            after: Box::new(self),
        })
    }
}

impl LrSchedule for Schedule {
    fn lr(&self, s: u64) -> f64 {
        match self {
            Schedule::Constant { lr } => *lr,
            Schedule::StepDecay {
                lr,
                step_size,
                gamma,
            } => {
                let k = (s / step_size.max(&1)).min(i32::MAX as u64) as i32;
                lr * gamma.powi(k)
            }
            Schedule::Exponential { lr, gamma } => lr * gamma.powf(s as f64),
            Schedule::Cosine { lr, t_max, eta_min } => {
                let x = (s.min(*t_max) as f64) / (*t_max).max(1) as f64;
                eta_min + (lr - eta_min) * 0.5 * (1.0 + (std::f64::consts::PI * x).cos())
            }
            Schedule::Warmup { steps, after } => {
                if s < *steps {
                    after.lr(0) * (s + 1) as f64 / steps.saturating_add(1) as f64
                } else {
                    after.lr(s - steps)
                }
            }
        }
    }
}

/// An optimizer driven by a schedule: before each update with index `s`
/// (= [`Optimizer::n_steps`]) the learning rate is set to `schedule.lr(s)`.
#[derive(Clone, Debug)]
pub struct Scheduled<O, S> {
    /// The optimizer.
    pub optimizer: O,
    /// The schedule.
    pub schedule: S,
}

impl<O, S> Scheduled<O, S> {
    /// Wraps `optimizer` with `schedule`.
    pub fn new(optimizer: O, schedule: S) -> Self {
        Self {
            optimizer,
            schedule,
        }
    }
}

impl<T: Float, O: Optimizer<T>, S: LrSchedule> Optimizer<T> for Scheduled<O, S> {
    fn step(&mut self, params: &mut [T], grads: &[T]) -> Result<(), Error> {
        let lr = self.schedule.lr(self.optimizer.n_steps());
        self.optimizer.set_learning_rate(lr)?;
        self.optimizer.step(params, grads)
    }

    fn learning_rate(&self) -> f64 {
        self.optimizer.learning_rate()
    }

    /// Sets the wrapped optimizer's rate until the next step (which takes the schedule's).
    fn set_learning_rate(&mut self, lr: f64) -> Result<(), Error> {
        self.optimizer.set_learning_rate(lr)
    }

    fn n_steps(&self) -> u64 {
        self.optimizer.n_steps()
    }

    fn reset(&mut self) {
        self.optimizer.reset();
    }

    fn state(&self) -> OptimizerState<T> {
        self.optimizer.state()
    }

    /// Restores the wrapped optimizer's state; its step count also positions the
    /// schedule.
    fn load_state(&mut self, state: &OptimizerState<T>) -> Result<(), Error> {
        self.optimizer.load_state(state)
    }
}
