//! [`AdjointSolver`]: validation, the recorded outputs, statistics and dispatch to the
//! gradient modes (one type each, in `modes`), and the public types that configure it.

use ode_solvers::{Method, Options, Stats};

use crate::Real;
use crate::dynamics::Vjp;
use crate::error::{Error, Result};
use crate::integrate::check_control;
use crate::modes::{self, Context, ModeImpl};

/// Where the checkpointed adjoint keeps the forward trajectory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Checkpoints {
    /// Keep the dense output of every accepted forward step (no recomputation; memory
    /// ∝ steps × state).
    #[default]
    EveryStep,
    /// Keep at most this many forward states (besides the output states); the dense output
    /// of each segment between them is recomputed during the backward pass (one extra
    /// forward solve in total; memory ∝ budget + steps / budget).
    Budget(usize),
}

/// The absolute tolerance of the adjoint components of a backward integration.
///
/// The backward system is linear in the seeds `g_k = ∂L/∂z(t_k)`: the adjoint
/// `a(t) = Σ_{t_k ≥ t} Φ(t_k, t)ᵀ g_k` (`Φ` the forward flow's Jacobian), and `a_θ`, `a_t`
/// are integrals of `aᵀ∂f/∂θ`, `aᵀ∂f/∂t`. Scaling the loss by `c` scales every adjoint
/// component by `c`, so with the step control's scaled error
/// `eᵢ / (atolᵢ + rtolᵢ max(|yᵢ|, |ŷᵢ|))` an unscaled `atol` is a relative tolerance of
/// `atol / |a|` on the adjoint: a mean over a large batch (`|a| ≈ 1e-4` for 8,192 states)
/// at `atol = 1e-6` is controlled to 1 %, and the backward pass takes few, inaccurate steps
/// while the forward solve is accurate to `1e-6`. ([`AdjointAtol::Absolute`] is what
/// torchdiffeq's `adjoint_atol = atol` and diffrax's `BacksolveAdjoint` do.)
///
/// [`AdjointAtol::RelativeToSeed`] multiplies the absolute tolerance of every adjoint
/// component (`a` and `a_θ` in the checkpointed mode, `a`, `a_θ`, `a_t` in backsolve; the
/// recomputed `z` of backsolve keeps the forward's) by
/// `s = max_{k ≥ 1, i} |∂L/∂zᵢ(t_k)|`, the largest seed entering the backward integration
/// (`g_0` only adds to `dL/dz0`). Then the scaled error is the same function of the
/// normalised adjoint `a / s` whatever the loss's scale: the accepted steps do not depend
/// on `c` (for `c` a power of two they are bit for bit the same, the gradient exactly
/// `c` times), and `atol · s` is a tolerance on `a` as the forward's `atol` is on `z`.
///
/// Why the largest seed over all output times, not the seed at `t_N` nor the current
/// `|a|` at each restart: one scale for the whole backward pass keeps one error criterion
/// (and one step-size history across the restarts at the outputs); the later seeds are
/// jumps of the same adjoint, and one much smaller than the largest is below the
/// tolerance of the adjoint it jumps into anyway; `t_N`'s alone can be zero (a loss on
/// earlier outputs only) and the running `|a|` can decay without bound, tightening the
/// tolerance with it. When every seed is zero the adjoint is zero and the tolerance is
/// left unscaled (a zero `atol` would divide zero by zero).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum AdjointAtol<T> {
    /// The backward options' `atol` as it is (the default).
    #[default]
    Absolute,
    /// `atol` times the largest seed `max_{k ≥ 1, i} |∂L/∂zᵢ(t_k)|` (see the type).
    RelativeToSeed,
    /// `atol` times this factor (the caller's estimate of the adjoint's size; finite,
    /// `> 0`, else [`crate::Error::InvalidOption`] at `forward`).
    Scale(T),
}

/// The solver of a backward (adjoint) integration.
#[derive(Debug, Clone, PartialEq)]
pub struct BackwardSolver<T> {
    /// Method of the backward integration (`None`: the forward method).
    pub method: Option<Method>,
    /// Tolerances and limits of the backward integration (`None`: the forward options;
    /// per-component tolerances are replaced by their smallest value).
    pub options: Option<Options<T>>,
    /// Error control only on `[z, a]` (backsolve) or `a` (checkpointed), not on the
    /// parameter and time integrals (Kidger, Chen & Lyons 2021, "Hey, that's not an ODE").
    pub seminorm: bool,
    /// The absolute tolerance of the adjoint components: as given, or relative to the
    /// size of the loss's gradient (see [`AdjointAtol`]).
    pub adjoint_atol: AdjointAtol<T>,
}

impl<T> Default for BackwardSolver<T> {
    fn default() -> Self {
        BackwardSolver {
            method: None,
            options: None,
            seminorm: false,
            adjoint_atol: AdjointAtol::Absolute,
        }
    }
}

/// How the gradient is computed. All modes take the same inputs and return the same
/// [`Gradients`].
#[derive(Debug, Clone, PartialEq)]
pub enum GradientMode<T> {
    /// Continuous adjoint integrated backwards against the interpolated forward trajectory
    /// (exact up to the tolerances; the recommended default).
    Checkpointed {
        /// What is kept of the forward trajectory.
        checkpoints: Checkpoints,
        /// The backward solver.
        backward: BackwardSolver<T>,
    },
    /// Chen et al. (2018), Algorithm 1: the augmented state `[z, a, a_θ, a_t]` integrated
    /// backwards from `t_N`, `z` re-anchored at every output time. Memory independent of
    /// the number of steps; **approximate**: `z(t)` recomputed backwards drifts from the
    /// forward trajectory on unstable or long problems.
    Backsolve {
        /// The backward solver.
        backward: BackwardSolver<T>,
    },
    /// Reverse-mode differentiation through the solver's Runge–Kutta stages
    /// (discretize-then-optimise) and the dense-output interpolant that gives the states
    /// at the output times: the exact gradient of the computed solution, with the accepted
    /// step sizes treated as fixed fractions of the integration interval (`[t_0, t_N]`, or
    /// each output interval where outputs are step boundaries).
    Direct,
    /// Forward sensitivities `∂z/∂θ`, `∂z/∂z0` integrated with `z` (cost ∝ parameters).
    /// The tangent columns `S' = ∂f/∂z S + ∂f/∂θ` come from `P + n` JVPs per evaluation,
    /// or from explicit Jacobians (`n` VJPs, then `O(n²(P + n))` products) when the
    /// dynamics say so ([`Vjp::prefers_jacobians`]: no JVP, or an expensive one as
    /// [`crate::TapeDynamics`]'s), or from one [`Vjp::sensitivity_rhs`] call per evaluation
    /// when the dynamics implement it ([`crate::TanhMlp`] does).
    Forward,
    /// Forward sensitivities through the dynamics' JVP for every tangent column whatever
    /// the sizes (`P + n` JVPs per evaluation); an error if the dynamics have no JVP.
    ForwardJvp,
}

impl<T> Default for GradientMode<T> {
    /// The checkpointed adjoint, every step kept, with the seminorm (`a_θ` accumulated as
    /// a quadrature of the accepted stages).
    fn default() -> Self {
        GradientMode::Checkpointed {
            checkpoints: Checkpoints::EveryStep,
            backward: BackwardSolver {
                seminorm: true,
                ..BackwardSolver::default()
            },
        }
    }
}

impl<T> GradientMode<T> {
    /// The checkpointed adjoint keeping every step (the default).
    pub fn checkpointed() -> Self {
        Self::default()
    }
    /// The backsolve adjoint with the forward solver's settings, optionally with seminorm.
    pub fn backsolve(seminorm: bool) -> Self {
        GradientMode::Backsolve {
            backward: BackwardSolver {
                seminorm,
                ..BackwardSolver::default()
            },
        }
    }
    /// A short name (`"checkpointed"`, `"backsolve"`, `"direct"`, `"forward"`,
    /// `"forward-jvp"`).
    pub fn name(&self) -> &'static str {
        match self {
            GradientMode::Checkpointed { .. } => "checkpointed",
            GradientMode::Backsolve { .. } => "backsolve",
            GradientMode::Direct => "direct",
            GradientMode::Forward => "forward",
            GradientMode::ForwardJvp => "forward-jvp",
        }
    }
}

/// Counters of one forward + backward call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GradStats {
    /// Forward solve: evaluations of `f`, accepted and rejected steps.
    pub forward: Stats,
    /// Backward pass: evaluations of `f` (backsolve's `z`, direct's recomputed stages,
    /// recomputed checkpoint segments, `f` at output times).
    pub backward_nfe: usize,
    /// Backward pass: vector–Jacobian products.
    pub backward_vjp: usize,
    /// Of `backward_vjp`, those that ran only the reverse pass from residuals the forward
    /// solve kept ([`GradientMode::Direct`]; see [`AdjointSolver::set_residual_bytes`]).
    pub backward_vjp_saved: usize,
    /// Jacobian–vector products (forward sensitivities).
    pub jvp: usize,
    /// Backward pass: accepted steps.
    pub backward_accepted: usize,
    /// Backward pass: rejected steps.
    pub backward_rejected: usize,
    /// Largest number of bytes held at once by the solver for this call: stored
    /// trajectory, checkpoints, sensitivities and the integrators' working state (an
    /// estimate counted from buffer lengths).
    pub peak_bytes: usize,
}

/// `dL/dz0`, `dL/dθ` and `dL/dt_i` for every output time.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Gradients<T> {
    /// `dL/dz0` (length `n_states`).
    pub z0: Vec<T>,
    /// `dL/dθ` (length `n_params`).
    pub theta: Vec<T>,
    /// `dL/dt_i` for every output time, `t_0` and `t_N` included.
    pub ts: Vec<T>,
}

/// Forward solves with recorded trajectories and their gradients (the crate's main type).
///
/// One value is reused across calls (training loops): buffers grow to the largest problem
/// seen and are then reused. See the crate documentation for the maths of each mode.
#[derive(Debug, Clone)]
pub struct AdjointSolver<T: Real> {
    mode: GradientMode<T>,
    /// The mode's recording and backward pass, built from `mode`.
    imp: Box<dyn ModeImpl<T>>,
    /// Forward solver, recorded outputs and statistics.
    ctx: Context<T>,
    /// Whether `ctx` and `imp` hold a complete forward pass of the current mode.
    valid: bool,
}

fn check_len(what: &'static str, expected: usize, found: usize) -> Result<()> {
    if expected == found {
        Ok(())
    } else {
        Err(Error::LengthMismatch {
            what,
            expected,
            found,
        })
    }
}

fn check_finite<T: Real>(what: &'static str, v: &[T]) -> Result<()> {
    match v.iter().position(|x| !x.is_finite()) {
        Some(index) => Err(Error::NonFinite { what, index }),
        None => Ok(()),
    }
}

/// Checks output times: non-empty, finite, strictly monotone.
pub(crate) fn check_times<T: Real>(ts: &[T]) -> Result<()> {
    if ts.is_empty() {
        return Err(Error::EmptyTimes);
    }
    if let Some(index) = ts.iter().position(|x| !x.is_finite()) {
        return Err(Error::InvalidTimes {
            index,
            value: ts[index].to_f64_lossy(),
        });
    }
    if ts.len() >= 2 {
        let dir = ts[1] > ts[0];
        for i in 1..ts.len() {
            if (ts[i] > ts[i - 1]) != dir || ts[i] == ts[i - 1] {
                return Err(Error::InvalidTimes {
                    index: i,
                    value: ts[i].to_f64_lossy(),
                });
            }
        }
    }
    Ok(())
}

impl<T: Real> AdjointSolver<T> {
    /// A solver using `method` and `options` for the forward solve, and the default
    /// gradient mode ([`GradientMode::Checkpointed`], every step).
    ///
    /// Every mode runs with every [`Method`], adaptive or with [`Options::fixed_step`]
    /// (forward and backward), except: the direct mode needs an explicit Runge–Kutta
    /// method ([`Method::tableau`] is `Some`; Adams is refused with
    /// [`Error::UnsupportedMethod`] at `forward`), and Adams takes no fixed step (an
    /// [`Error::Solve`] at `forward`, for the forward or the backward method).
    pub fn new(method: Method, options: Options<T>) -> Self {
        let mode = GradientMode::default();
        AdjointSolver {
            imp: modes::build(&mode),
            mode,
            ctx: Context::new(method, options),
            valid: false,
        }
    }

    /// Sets the gradient mode (builder form).
    pub fn with_mode(mut self, mode: GradientMode<T>) -> Self {
        self.set_mode(mode);
        self
    }

    /// Sets the gradient mode used by the next [`AdjointSolver::forward`].
    pub fn set_mode(&mut self, mode: GradientMode<T>) {
        self.imp = modes::build(&mode);
        self.mode = mode;
        self.valid = false;
    }

    /// Whether [`AdjointSolver::backward`] computes the gradients `dL/dtᵢ` of the output
    /// times (default: yes). They cost one evaluation of `f` per output time in every mode
    /// but backsolve; a caller whose times are constants (observation times of a data
    /// set) turns them off, and `Gradients::ts` is then all zeros. Takes effect at the
    /// next backward pass.
    pub fn set_time_gradients(&mut self, on: bool) {
        self.ctx.time_grads = on;
    }

    /// See [`AdjointSolver::set_time_gradients`].
    pub fn time_gradients(&self) -> bool {
        self.ctx.time_grads
    }

    /// The most bytes [`GradientMode::Direct`] keeps of the field's residuals (default
    /// 32 MiB; `0` keeps none). With dynamics that keep residuals ([`Vjp::residual_len`]
    /// `> 0`, e.g. [`crate::TanhMlp`]'s hidden activations), the forward solve keeps them
    /// for every stage of every accepted step, with the stage's input and time, and the
    /// backward pass runs only the reverse pass there ([`Vjp::vjp_saved`]) instead of a
    /// VJP that evaluates the field again; the stages beyond the cap (and any whose
    /// evaluation was not found) fall back to [`Vjp::vjp`]. The gradients are the same bit
    /// for bit either way. Memory: `(n + residual_len + 1)` values per kept evaluation,
    /// reported in [`GradStats::peak_bytes`]. Takes effect at the next forward solve.
    ///
    /// Keeping pays while the residuals stay in cache: on the W2 field (`TanhMlp`, one
    /// core) the direct mode with the peers' steps is 15–20 % faster for batches up to 512
    /// rows (up to 36 MB of residuals), but keeping all of them at 1,024–4,096 rows (70–280
    /// MB) is 5–10 % slower than evaluating again (the row-chunked forward pass runs in L2;
    /// residuals that large come back from memory). The default keeps the first 32 MiB.
    pub fn set_residual_bytes(&mut self, bytes: usize) {
        self.ctx.residual_bytes = bytes;
    }

    /// See [`AdjointSolver::set_residual_bytes`].
    pub fn residual_bytes(&self) -> usize {
        self.ctx.residual_bytes
    }

    /// The gradient mode.
    pub fn mode(&self) -> &GradientMode<T> {
        &self.mode
    }

    /// The forward method.
    pub fn method(&self) -> Method {
        self.ctx.method
    }

    /// The forward options.
    pub fn options(&self) -> &Options<T> {
        &self.ctx.options
    }

    /// Counters of the last forward (and backward, once run) call.
    pub fn stats(&self) -> GradStats {
        self.ctx.stats
    }

    /// Output times of the last forward solve.
    pub fn ts(&self) -> &[T] {
        &self.ctx.ts
    }

    /// States at every output time of the last forward solve, row-major
    /// (`ts.len() × n_states`).
    pub fn states(&self) -> &[T] {
        &self.ctx.zs
    }

    /// The state at output time `i` (empty when out of range).
    pub fn state(&self, i: usize) -> &[T] {
        let n = self.ctx.n;
        self.ctx.zs.get(i * n..(i + 1) * n).unwrap_or(&[])
    }

    /// Solves `ż = f(t, z, θ)`, `z(ts[0]) = z0`, and records what the gradient mode needs.
    /// Returns the states at every output time (row-major, `ts.len() × n_states`).
    ///
    /// `ts` must be strictly increasing or strictly decreasing. With adaptive steps this is
    /// one integration from `ts[0]` to the last time, the states at the output times taken
    /// from the dense output (the cost does not depend on the number of outputs); with
    /// fixed steps (and in the cases the crate docs list) the integrator restarts at every
    /// output time, carrying the step size over, so outputs are step boundaries.
    pub fn forward<D: Vjp<T> + ?Sized>(
        &mut self,
        dynamics: &mut D,
        z0: &[T],
        theta: &[T],
        ts: &[T],
    ) -> Result<&[T]> {
        self.valid = false;
        let n = dynamics.n_states();
        let p = dynamics.n_params();
        if n == 0 || z0.is_empty() {
            return Err(ode_solvers::SolveError::EmptyState.into());
        }
        check_len("z0", n, z0.len())?;
        check_len("theta", p, theta.len())?;
        check_finite("z0", z0)?;
        check_finite("theta", theta)?;
        check_times(ts)?;
        check_control(self.ctx.method, &self.ctx.options)?;
        // `&mut D` is a sized `Vjp`: the modes take `&mut dyn Vjp` for unsized `D` too.
        let mut dynamics = dynamics;
        let dynamics: &mut dyn Vjp<T> = &mut dynamics;
        self.imp
            .check(self.ctx.method, &self.ctx.options, dynamics)?;
        let ctx = &mut self.ctx;
        ctx.n = n;
        ctx.p = p;
        ctx.ts.clear();
        ctx.ts.extend_from_slice(ts);
        ctx.theta.clear();
        ctx.theta.extend_from_slice(theta);
        ctx.zs.clear();
        ctx.zs.extend_from_slice(z0);
        ctx.stats = GradStats::default();
        self.imp.forward(ctx, dynamics)?;
        self.valid = true;
        Ok(&self.ctx.zs)
    }

    /// Computes `dL/dz0`, `dL/dθ` and `dL/dt_i` given `dl_dz` = `dL/dz(t_i)` for every
    /// output time (row-major, `ts.len() × n_states`), with the mode of the last forward.
    pub fn backward<D: Vjp<T> + ?Sized>(
        &mut self,
        dynamics: &mut D,
        dl_dz: &[T],
    ) -> Result<Gradients<T>> {
        let mut g = Gradients::default();
        self.backward_into(dynamics, dl_dz, &mut g)?;
        Ok(g)
    }

    /// As [`AdjointSolver::backward`], writing into `grads` (resized; no allocation when
    /// it already has the right sizes).
    pub fn backward_into<D: Vjp<T> + ?Sized>(
        &mut self,
        dynamics: &mut D,
        dl_dz: &[T],
        grads: &mut Gradients<T>,
    ) -> Result<()> {
        if !self.valid {
            return Err(Error::NoForwardPass);
        }
        let ctx = &mut self.ctx;
        let (n, p) = (ctx.n, ctx.p);
        check_len("n_states of the dynamics", n, dynamics.n_states())?;
        check_len("n_params of the dynamics", p, dynamics.n_params())?;
        check_len("dl_dz", ctx.ts.len() * n, dl_dz.len())?;
        check_finite("dl_dz", dl_dz)?;
        grads.z0.clear();
        grads.z0.resize(n, T::zero());
        grads.theta.clear();
        grads.theta.resize(p, T::zero());
        grads.ts.clear();
        grads.ts.resize(ctx.ts.len(), T::zero());
        let fwd_peak = ctx.stats.peak_bytes;
        ctx.stats.backward_nfe = 0;
        ctx.stats.backward_vjp = 0;
        ctx.stats.backward_vjp_saved = 0;
        ctx.stats.backward_accepted = 0;
        ctx.stats.backward_rejected = 0;
        let mut dynamics = dynamics;
        let bw_peak = self.imp.backward(ctx, &mut dynamics, dl_dz, grads)?;
        if !ctx.time_grads {
            // Backsolve carries them in its state anyway, and direct's accumulators are
            // partial without the output evaluations: report none rather than some.
            grads.ts.fill(T::zero());
        }
        ctx.stats.peak_bytes = fwd_peak.max(bw_peak);
        Ok(())
    }

    /// Forward solve, loss and gradient in one call.
    ///
    /// `loss(zs, dl_dz)` receives the states at every output time (row-major) and must
    /// return the loss and write `dL/dz(t_i)` into `dl_dz` (zeroed before the call).
    pub fn value_and_grad<D, L>(
        &mut self,
        dynamics: &mut D,
        z0: &[T],
        theta: &[T],
        ts: &[T],
        mut loss: L,
    ) -> Result<(T, Gradients<T>)>
    where
        D: Vjp<T> + ?Sized,
        L: FnMut(&[T], &mut [T]) -> T,
    {
        self.forward(dynamics, z0, theta, ts)?;
        let mut dl = vec![T::zero(); self.ctx.zs.len()];
        let value = loss(&self.ctx.zs, &mut dl);
        let g = self.backward(dynamics, &dl)?;
        Ok((value, g))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_traits<X: Send + Sync + Clone>() {}

    #[test]
    fn public_types_are_send_sync_clone() {
        assert_traits::<AdjointSolver<f64>>();
        assert_traits::<AdjointSolver<f32>>();
        assert_traits::<GradientMode<f64>>();
        assert_traits::<Gradients<f32>>();
        assert_traits::<GradStats>();
    }

    #[test]
    fn times_are_checked() {
        assert!(check_times::<f64>(&[0.0]).is_ok());
        assert!(check_times(&[0.0, 1.0, 2.0]).is_ok());
        assert!(check_times(&[2.0, 1.0, -3.0]).is_ok());
        assert!(matches!(check_times::<f64>(&[]), Err(Error::EmptyTimes)));
        assert!(matches!(
            check_times(&[0.0, f64::NAN]),
            Err(Error::InvalidTimes { index: 1, .. })
        ));
        assert!(matches!(
            check_times(&[0.0, 1.0, 1.0]),
            Err(Error::InvalidTimes { index: 2, .. })
        ));
        assert!(matches!(
            check_times(&[0.0, -1.0, 0.5]),
            Err(Error::InvalidTimes { index: 2, .. })
        ));
    }
}
