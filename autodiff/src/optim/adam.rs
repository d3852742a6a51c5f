//! Adam and AdamW.

use super::{Optimizer, OptimizerState, bad_hyper, check_lengths, check_nonneg, restore_buffers};
use crate::{Error, Float};

/// Hyper-parameters of [`Adam`]. `Default` is PyTorch's `torch.optim.Adam`;
/// [`AdamConfig::adamw`] is PyTorch's `torch.optim.AdamW`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamConfig {
    /// Learning rate `η` (default 1e-3).
    pub lr: f64,
    /// First-moment decay `β₁ ∈ [0, 1)` (default 0.9).
    pub beta1: f64,
    /// Second-moment decay `β₂ ∈ [0, 1)` (default 0.999).
    pub beta2: f64,
    /// `ε > 0` added to the denominator (default 1e-8).
    pub eps: f64,
    /// Weight decay `λ ≥ 0` (default 0 for Adam, 1e-2 for AdamW).
    pub weight_decay: f64,
    /// Decoupled weight decay `θ ← θ(1 − ηλ)` (AdamW) instead of the L2 gradient term.
    pub decoupled_weight_decay: bool,
    /// AMSGrad: divide by the running maximum of `v` (default false).
    pub amsgrad: bool,
}

impl Default for AdamConfig {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled_weight_decay: false,
            amsgrad: false,
        }
    }
}

impl AdamConfig {
    /// PyTorch's AdamW defaults: `η = 1e-3`, `λ = 1e-2`, decoupled.
    pub fn adamw() -> Self {
        Self {
            weight_decay: 1e-2,
            decoupled_weight_decay: true,
            ..Self::default()
        }
    }
}

/// Adam (Kingma & Ba, 2015) and AdamW (Loshchilov & Hutter, 2019); see the
/// [module docs](crate::optim) for the update.
#[derive(Clone, Debug)]
pub struct Adam<T: Float> {
    cfg: AdamConfig,
    m: Vec<T>,
    v: Vec<T>,
    v_max: Vec<T>,
    t: u64,
}

impl<T: Float> Adam<T> {
    /// An optimizer with the given hyper-parameters (validated).
    pub fn new(cfg: AdamConfig) -> Result<Self, Error> {
        const OP: &str = "Adam::new";
        check_nonneg(cfg.lr, OP, "lr")?;
        for (name, b) in [("beta1", cfg.beta1), ("beta2", cfg.beta2)] {
            if !(0.0..1.0).contains(&b) {
                return Err(bad_hyper(OP, name, b, "it must be in [0, 1)"));
            }
        }
        if !(cfg.eps.is_finite() && cfg.eps > 0.0) {
            return Err(bad_hyper(OP, "eps", cfg.eps, "it must be finite and > 0"));
        }
        check_nonneg(cfg.weight_decay, OP, "weight_decay")?;
        Ok(Self {
            cfg,
            m: Vec::new(),
            v: Vec::new(),
            v_max: Vec::new(),
            t: 0,
        })
    }

    /// Adam with PyTorch's defaults and learning rate `lr`.
    pub fn with_lr(lr: f64) -> Result<Self, Error> {
        Self::new(AdamConfig {
            lr,
            ..AdamConfig::default()
        })
    }

    /// AdamW with learning rate `lr` and decoupled weight decay `weight_decay`.
    pub fn adamw(lr: f64, weight_decay: f64) -> Result<Self, Error> {
        Self::new(AdamConfig {
            lr,
            weight_decay,
            ..AdamConfig::adamw()
        })
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &AdamConfig {
        &self.cfg
    }
}

impl<T: Float> Optimizer<T> for Adam<T> {
    fn step(&mut self, params: &mut [T], grads: &[T]) -> Result<(), Error> {
        let c = self.cfg;
        const WHAT: &str = "Adam::step gradient";
        let (np, ng) = (params.len(), grads.len());
        if c.amsgrad {
            check_lengths(
                WHAT,
                np,
                ng,
                &mut [&mut self.m, &mut self.v, &mut self.v_max],
            )?;
        } else {
            check_lengths(WHAT, np, ng, &mut [&mut self.m, &mut self.v])?;
        }
        self.t += 1;
        let t = self.t as f64;
        let bc1 = 1.0 - c.beta1.powf(t);
        let bc2_sqrt = (1.0 - c.beta2.powf(t)).sqrt();
        let step_size = T::from_f64_const(c.lr / bc1);
        let inv_bc2_sqrt = T::from_f64_const(1.0 / bc2_sqrt);
        let (b1, b2) = (T::from_f64_const(c.beta1), T::from_f64_const(c.beta2));
        let (omb1, omb2) = (
            T::from_f64_const(1.0 - c.beta1),
            T::from_f64_const(1.0 - c.beta2),
        );
        let eps = T::from_f64_const(c.eps);
        let (l2, decay) = if c.decoupled_weight_decay {
            (T::zero(), T::from_f64_const(1.0 - c.lr * c.weight_decay))
        } else {
            (T::from_f64_const(c.weight_decay), T::one())
        };
        let it = params
            .iter_mut()
            .zip(grads)
            .zip(self.m.iter_mut().zip(self.v.iter_mut()));
        if c.amsgrad {
            for (((p, &g), (m, v)), vm) in it.zip(self.v_max.iter_mut()) {
                *p *= decay;
                let g = g + l2 * *p;
                *m = b1 * *m + omb1 * g;
                *v = b2 * *v + omb2 * g * g;
                *vm = vm.max(*v);
                *p -= step_size * *m / (vm.sqrt() * inv_bc2_sqrt + eps);
            }
        } else {
            for ((p, &g), (m, v)) in it {
                *p *= decay;
                let g = g + l2 * *p;
                *m = b1 * *m + omb1 * g;
                *v = b2 * *v + omb2 * g * g;
                *p -= step_size * *m / (v.sqrt() * inv_bc2_sqrt + eps);
            }
        }
        Ok(())
    }

    fn learning_rate(&self) -> f64 {
        self.cfg.lr
    }

    fn set_learning_rate(&mut self, lr: f64) -> Result<(), Error> {
        check_nonneg(lr, "Adam::set_learning_rate", "lr")?;
        self.cfg.lr = lr;
        Ok(())
    }

    fn n_steps(&self) -> u64 {
        self.t
    }

    fn reset(&mut self) {
        self.m.fill(T::zero());
        self.v.fill(T::zero());
        self.v_max.fill(T::zero());
        self.t = 0;
    }

    fn state(&self) -> OptimizerState<T> {
        let mut buffers = vec![
            ("exp_avg".to_owned(), self.m.clone()),
            ("exp_avg_sq".to_owned(), self.v.clone()),
        ];
        if self.cfg.amsgrad {
            buffers.push(("max_exp_avg_sq".to_owned(), self.v_max.clone()));
        }
        OptimizerState {
            n_steps: self.t,
            buffers,
        }
    }

    fn load_state(&mut self, state: &OptimizerState<T>) -> Result<(), Error> {
        const OP: &str = "Adam::load_state";
        if self.cfg.amsgrad {
            restore_buffers(
                OP,
                state,
                &["exp_avg", "exp_avg_sq", "max_exp_avg_sq"],
                &mut [&mut self.m, &mut self.v, &mut self.v_max],
            )?;
        } else {
            restore_buffers(
                OP,
                state,
                &["exp_avg", "exp_avg_sq"],
                &mut [&mut self.m, &mut self.v],
            )?;
        }
        self.t = state.n_steps;
        Ok(())
    }
}
