//! The ODE block: an ODE solve as one differentiable operation on the autodiff tape.
//!
//! What torchdiffeq's `odeint_adjoint` is to autograd (or diffrax's `diffeqsolve` inside
//! a JAX model): [`OdeBlock::apply`] takes an initial state `z0` (a tensor of the block's
//! state shape, e.g. `[batch, dim]`), the block's parameters `θ` (typically a view of the
//! model's flat parameter leaf, `theta.view(offset, &[p])`) and output times `t₀, …, t_N`
//! (a tensor of shape `[N + 1]`, strictly monotone), solves
//!
//! ```text
//! ż = f(t, z, θ),   z(t₀) = z0,
//! ```
//!
//! and returns the states at the output times as ONE variable of shape
//! `[N + 1, ...state_dims]` (`z(t₀) = z0` first). Layers before and after it, any loss
//! written with `autodiff` ops and several blocks (stacked, or the same block applied
//! twice) train together through one [`Tape::backward`](autodiff::Tape::backward).
//!
//! The field `f(tape, t, z, θ) -> Var` is any forward pass written with autodiff ops,
//! as [`adjoint::TapeDynamics`] takes it (`t` has shape `[1]`, `z` the state shape, `θ`
//! shape `[p]`): it runs on its own inner tape, reset at every evaluation, so the model's
//! outer tape holds only the block's inputs and its output, never the solver's stages.
//!
//! # What the node's backward computes
//!
//! The block is one node of the outer tape with inputs `(z0, θ, ts)` and output
//! `Z = (z(t₀), …, z(t_N))`. Its forward runs [`AdjointSolver::forward`] and keeps the
//! gradient mode's recording (checkpoints, steps) with the node. In the backward pass the
//! outer tape hands it `gᵢ = ∂L/∂z(tᵢ)` (the output gradient, row by row), and ONE call of
//! [`AdjointSolver::backward`] fills the gradients of all three inputs. For the
//! continuous adjoint (the default, [`GradientMode::Checkpointed`]), with `a(t)` solving
//!
//! ```text
//! ȧ = −aᵀ ∂f/∂z  backwards from a(t_N) = g_N,   a(tᵢ⁻) = a(tᵢ⁺) + gᵢ,
//! ```
//!
//! the node adds
//!
//! ```text
//! dL/dz0 = a(t₀) + g₀,
//! dL/dθ  = ∫_{t₀}^{t_N} a(t)ᵀ ∂f/∂θ (t, z(t), θ) dt,
//! dL/dtᵢ = gᵢᵀ f(tᵢ, z(tᵢ), θ)   (i ≥ 1),     dL/dt₀ = −a(t₀)ᵀ f(t₀, z0, θ),
//! ```
//!
//! into the gradients of `z0`, `θ` (so into the matching range of the flat parameter leaf
//! when `θ` is a view of it) and `ts`. [`GradientMode::Direct`] returns instead the exact
//! gradient of the computed (discrete) solution, backpropagated through the solver's
//! Runge–Kutta stages; the other modes are described in the `adjoint` crate. The gradients
//! of all inputs come from that one solve: the block implements
//! [`CustomOp::backward_all`], not one VJP per input.
//!
//! # ResNet = Euler
//!
//! A residual network with shared weights over `T` layers, `z_{k+1} = z_k + (1/T) f(t_k, z_k)`
//! (`t_k = k/T`), is the block with [`Method::Euler`] and `Options { fixed_step:
//! Some(1/T), .. }` on `[0, 1]`: same output, and in [`GradientMode::Direct`] the same
//! gradients, to round-off (`tests/ode_block.rs` checks both). The checkpointed mode gives
//! instead the continuous adjoint integrated along the Euler solution, which differs from
//! the network's exact gradient by `O(1/T)`.
//!
//! # Memory and allocation
//!
//! Each application makes a small node (one `Arc`) that holds an [`AdjointSolver`] with
//! its recording until the outer tape is reset; the solvers (with their trajectory
//! buffers) then return to a pool kept by the block, so a training loop that resets its
//! tape reuses them and does not reallocate the large buffers.
//!
//! # Threads
//!
//! [`OdeBlock::new_row_parallel`] splits every evaluation and VJP of a field that acts on
//! each batch row by itself over threads ([`adjoint::ParallelTapeDynamics`]): batches of
//! 256 rows or more in chunks of 128, results bitwise the same for any number of threads.
//! [`OdeBlock::from_row_parallel`] takes a [`ParallelTapeDynamics`] the caller sized, for
//! fields whose rows are costly (ODE-Net's convolutional field: chunks of 32 samples).
//!
//! # Errors
//!
//! A failed solve (a non-finite state, too many steps, an error in the field's ops) is
//! recorded on the outer tape as [`autodiff::Error::CustomOpFailed`] (sticky, as the
//! other op errors: the next `value`, `backward`, … returns it);
//! `source.inner().downcast_ref::<adjoint::Error>()` gives back the solver's error.
//! Inputs of the wrong shape are recorded as shape or length errors naming `ode_block`.
//!
//! # Example
//!
//! A linear layer, the block, a linear read-out, a mean squared error, one backward pass:
//!
//! ```
//! use autodiff::Tape;
//! use models::ode_block::OdeBlock;
//!
//! let (batch, d) = (4, 2);
//! // ż = tanh(z W + b) + t·c, θ = [W (2×2), b (2), c (2)].
//! let p_block = d * d + 2 * d;
//! let block = OdeBlock::new(&[batch, d], p_block, move |_tape, t, z, th| {
//!     let w = th.view(0, &[d, d]);
//!     let b = th.view(d * d, &[d]);
//!     let c = th.view(d * d + d, &[d]);
//!     (z.matmul(w) + b).tanh() + c * t
//! })?;
//! // Flat parameters: [W_in (1×2), block (8), W_out (2×1)].
//! let n = 2 + p_block + 2;
//! let params: Vec<f64> = (0..n).map(|i| 0.3 * ((i * 5 % 7) as f64 - 3.0) / 3.0).collect();
//! let tape = Tape::new();
//! tape.set_recording(true);
//! let theta = tape.leaf(&params, &[n])?;
//! let x = tape.constant(&[0.1, 0.4, -0.3, 0.8], &[batch, 1])?;
//! let ts = tape.constant(&[0.0, 0.5, 1.0], &[3])?;
//! let z0 = x.matmul(theta.view(0, &[1, d]));
//! let zs = block.apply(z0, theta.view(2, &[p_block]), ts); // [3, batch, d]
//! let y = block.final_state(zs).matmul(theta.view(2 + p_block, &[d, 1]));
//! let target = tape.constant(&[1.0, 0.0, -1.0, 0.5], &[batch, 1])?;
//! let loss = (y - target).square().mean();
//! tape.backward(loss, &[1.0])?; // one adjoint solve for the block
//! let grad = theta.grad()?;
//! assert!(loss.item()? > 0.0 && grad.iter().all(|g| g.is_finite()));
//! # Ok::<(), models::ModelsError>(())
//! ```

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use adjoint::{
    AdjointSolver, Dynamics, GradStats, GradientMode, Gradients, Method, Options,
    ParallelTapeDynamics, TapeDynamics, Threads, Vjp,
};
use autodiff::{CustomOp, CustomOpError, Error as AdError, Float, Shape, Tape, Var};

use crate::ModelsError;

/// The name of the block's node in error messages.
const OP: &str = "ode_block";

/// How an ODE block's adaptive solve chooses its steps: the step-size controller and the
/// first step of its [`Options`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StepControl {
    /// [`Options::neural_ode`]: torchdiffeq's and diffrax's I controller and RMS first
    /// step, so a block takes the steps the peers' code takes (ODE-Net at 1e-3 on MNIST,
    /// 64 channels: about 19 instead of 28 forward evaluations per batch; the latent ODE
    /// on torchdiffeq's `latent_ode.py` set-up: 23 instead of 26–32; `benches/README.md`,
    /// "Step-size control defaults").
    #[default]
    Peers,
    /// [`Options::with_tol`]: Hairer's PI controller and `HINIT` first step.
    Hairer,
}

impl StepControl {
    /// Solver options with these tolerances and this step control.
    pub fn options<T: Float>(self, rtol: T, atol: T) -> Options<T> {
        match self {
            StepControl::Peers => Options::neural_ode(rtol, atol),
            StepControl::Hairer => Options::with_tol(rtol, atol),
        }
    }
}

fn lock<X>(m: &Mutex<X>) -> MutexGuard<'_, X> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn failed(e: adjoint::Error) -> AdError {
    AdError::CustomOpFailed {
        op: OP,
        source: CustomOpError::new(e),
    }
}

/// A solver with its recording and gradient buffers, reused across applications.
struct Slot<T: Float> {
    solver: AdjointSolver<T>,
    grads: Gradients<T>,
    /// The configuration it was built for (see [`Shared::generation`]).
    generation: u64,
}

/// What every application of one block shares: the field, the solver settings and the
/// pool of solvers.
struct Shared<T: Float, F> {
    /// A [`TapeDynamics`], or a [`ParallelTapeDynamics`] (one evaluation per solver call:
    /// the indirection costs nothing measurable).
    dynamics: Box<dyn Vjp<T> + Send>,
    _field: core::marker::PhantomData<fn(F)>,
    method: Method,
    options: Options<T>,
    mode: GradientMode<T>,
    /// Bumped by every change of the settings; pooled solvers of an older one are dropped.
    generation: u64,
    pool: Vec<Slot<T>>,
    stats: GradStats,
}

impl<T: Float, F> Shared<T, F> {
    fn take_slot(&mut self) -> Slot<T> {
        match self.pool.pop() {
            Some(s) => s,
            None => Slot {
                solver: AdjointSolver::new(self.method, self.options.clone())
                    .with_mode(self.mode.clone()),
                grads: Gradients::default(),
                generation: self.generation,
            },
        }
    }

    fn give_back(&mut self, slot: Slot<T>) {
        if slot.generation == self.generation {
            self.pool.push(slot);
        }
    }

    fn configure(&mut self, method: Method, options: Options<T>, mode: GradientMode<T>) {
        self.method = method;
        self.options = options;
        self.mode = mode;
        self.generation += 1;
        self.pool.clear();
    }
}

/// An ODE solve as one differentiable operation on an autodiff tape (see the
/// [module documentation](self) for the maths and an example).
///
/// `F` is the field `f(tape, t, z, θ) -> Var` (as [`adjoint::TapeDynamics`] takes it).
/// The solver defaults to Dopri5 with [`Options::default`] and the checkpointed adjoint;
/// change them with [`with_solver`](OdeBlock::with_solver) and
/// [`with_mode`](OdeBlock::with_mode). The block is cheap to apply many times: its
/// solvers are pooled.
pub struct OdeBlock<T: Float, F> {
    shared: Arc<Mutex<Shared<T, F>>>,
    state: Shape,
    n_params: usize,
}

impl<T: Float, F> std::fmt::Debug for OdeBlock<T, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OdeBlock")
            .field("state", &self.state)
            .field("n_params", &self.n_params)
            .finish_non_exhaustive()
    }
}

impl<T, F> OdeBlock<T, F>
where
    T: Float,
    F: for<'t> FnMut(&'t Tape<T>, Var<'t, T>, Var<'t, T>, Var<'t, T>) -> Var<'t, T>
        + Send
        + 'static,
{
    /// A block for states of shape `state_dims` (rank 1 to 3, e.g. `[batch, dim]`) and a
    /// field with `n_params` parameters. Errors if the shape is invalid or of rank 4 (the
    /// output adds the time axis).
    pub fn new(state_dims: &[usize], n_params: usize, f: F) -> Result<Self, ModelsError> {
        Self::check_state(state_dims)?;
        let dynamics = TapeDynamics::new(state_dims, n_params, f)?;
        Self::from_dynamics(state_dims, n_params, Box::new(dynamics))
    }

    /// As [`new_row_parallel`](OdeBlock::new_row_parallel), for a field that cannot be
    /// cloned (a boxed closure): `make` builds one field per worker, each computing the
    /// same function (e.g. `move || { let net = net.clone(); Box::new(move |tape, t, z,
    /// th| net.forward(tape, th, t, z)) as Field }`).
    pub fn new_row_parallel_with(
        state_dims: &[usize],
        n_params: usize,
        make: impl Fn() -> F + Send + Sync + 'static,
        threads: Threads,
    ) -> Result<Self, ModelsError> {
        Self::check_state(state_dims)?;
        let mut dynamics = ParallelTapeDynamics::from_factory(state_dims, n_params, make)?;
        dynamics.set_threads(threads);
        Self::from_dynamics(state_dims, n_params, Box::new(dynamics))
    }

    /// A block on a row-parallel field the caller configured (rows per chunk with
    /// [`ParallelTapeDynamics::with_chunk_rows`], threads with
    /// [`ParallelTapeDynamics::set_threads`]): for fields whose rows are costly (a
    /// convolutional field on `[batch, c, h·w]`: one sample per row), where the default
    /// chunks of [`new_row_parallel`](OdeBlock::new_row_parallel), sized for MLP rows, would
    /// leave a batch on one thread. The same contract: the field acts on each row by
    /// itself, results depend on the chunk rows, never on the threads. Errors if
    /// `state_dims` does not hold the dynamics' states.
    pub fn from_row_parallel(
        state_dims: &[usize],
        dynamics: ParallelTapeDynamics<T, F>,
    ) -> Result<Self, ModelsError> {
        let state = Self::check_state(state_dims)?;
        if state.len() != dynamics.n_states() {
            return Err(AdError::ShapeMismatch {
                op: "OdeBlock::from_row_parallel",
                lhs: state,
                rhs: Shape::new(&[dynamics.n_states()])?,
            }
            .into());
        }
        let n_params = dynamics.n_params();
        Self::from_dynamics(state_dims, n_params, Box::new(dynamics))
    }

    fn check_state(state_dims: &[usize]) -> Result<Shape, ModelsError> {
        let state = Shape::new(state_dims)?;
        if state_dims.len() > 3 {
            return Err(AdError::RankTooLarge {
                rank: state_dims.len() + 1,
            }
            .into());
        }
        Ok(state)
    }

    fn from_dynamics(
        state_dims: &[usize],
        n_params: usize,
        dynamics: Box<dyn Vjp<T> + Send>,
    ) -> Result<Self, ModelsError> {
        let state = Self::check_state(state_dims)?;
        let shared = Shared {
            dynamics,
            _field: core::marker::PhantomData,
            method: Method::Dopri5,
            options: Options::default(),
            mode: GradientMode::default(),
            generation: 0,
            pool: Vec::new(),
            stats: GradStats::default(),
        };
        Ok(OdeBlock {
            shared: Arc::new(Mutex::new(shared)),
            state,
            n_params,
        })
    }

    /// Sets the method and options of the forward solve (builder form).
    pub fn with_solver(self, method: Method, options: Options<T>) -> Self {
        {
            let mut s = lock(&self.shared);
            let mode = s.mode.clone();
            s.configure(method, options, mode);
        }
        self
    }

    /// Sets the gradient mode of the backward pass (builder form).
    pub fn with_mode(mut self, mode: GradientMode<T>) -> Self {
        self.set_mode(mode);
        self
    }

    /// Sets the gradient mode used by the next applications.
    pub fn set_mode(&mut self, mode: GradientMode<T>) {
        let mut s = lock(&self.shared);
        let (method, options) = (s.method, s.options.clone());
        s.configure(method, options, mode);
    }

    /// The forward method.
    pub fn method(&self) -> Method {
        lock(&self.shared).method
    }

    /// The forward options.
    pub fn options(&self) -> Options<T> {
        lock(&self.shared).options.clone()
    }

    /// The gradient mode.
    pub fn mode(&self) -> GradientMode<T> {
        lock(&self.shared).mode.clone()
    }

    /// The shape of the state.
    pub fn state_shape(&self) -> Shape {
        self.state
    }

    /// Number of parameters of the field.
    pub fn n_params(&self) -> usize {
        self.n_params
    }

    /// Counters of the block's last forward solve or backward pass (any application).
    pub fn stats(&self) -> GradStats {
        lock(&self.shared).stats
    }

    /// Solves from `z0` (the state shape) with parameters `theta` (`n_params` entries,
    /// any shape, typically a view of the flat parameter leaf) to the output times `ts`
    /// (shape `[N + 1]`, strictly monotone; `ts[0]` is the time of `z0`), and returns the
    /// states at the output times, shape `[N + 1, ...state_dims]`, as one node of the
    /// tape. Gradients flow to all three inputs. Errors (bad shapes, a failed solve) are
    /// recorded on the tape.
    pub fn apply<'t>(&self, z0: Var<'t, T>, theta: Var<'t, T>, ts: Var<'t, T>) -> Var<'t, T> {
        let op: Arc<dyn CustomOp<T>> = Arc::new(BlockNode {
            shared: self.shared.clone(),
            state: self.state,
            n_params: self.n_params,
            rec: Mutex::new(None),
        });
        z0.tape().custom(&op, &[z0, theta, ts])
    }

    /// The state at the last output time of `states` (an output of
    /// [`apply`](OdeBlock::apply)), with the state shape: the input of the next layer or
    /// block.
    pub fn final_state<'t>(&self, states: Var<'t, T>) -> Var<'t, T> {
        let n = states.shape().dim(0);
        states
            .narrow(0, n.saturating_sub(1), 1)
            .reshape(self.state.dims())
    }
}

impl<T, F> OdeBlock<T, F>
where
    T: Float,
    F: for<'t> FnMut(&'t Tape<T>, Var<'t, T>, Var<'t, T>, Var<'t, T>) -> Var<'t, T>
        + Clone
        + Send
        + 'static,
{
    /// A block as [`new`](OdeBlock::new) makes, whose field evaluations are split over
    /// the batch rows (the leading axis of the state) on `threads` (see
    /// [`adjoint::parallel`]).
    ///
    /// **The field must act on each row by itself** (an MLP on `[batch, dim]`, a
    /// convolution with per-sample normalisation on `[batch, c, hw]`): ops that mix rows
    /// (batch normalisation, means over the batch) would be computed per chunk of rows
    /// instead. Batches of fewer than 256 rows run on one tape exactly as with
    /// [`new`](OdeBlock::new); larger ones in chunks of 128 rows, whose results are
    /// bitwise the same for any number of threads, and equal to the single-tape results
    /// up to the order of the sums over rows in the parameter and time gradients
    /// (round-off, below `1e-14` relative on an MLP). [`Threads::Current`] (the default of
    /// [`TrainConfig`](crate::training::TrainConfig)) runs on the current rayon pool: all
    /// cores unless the program sized it.
    pub fn new_row_parallel(
        state_dims: &[usize],
        n_params: usize,
        f: F,
        threads: Threads,
    ) -> Result<Self, ModelsError> {
        Self::check_state(state_dims)?;
        let mut dynamics = ParallelTapeDynamics::new(state_dims, n_params, f)?;
        dynamics.set_threads(threads);
        Self::from_dynamics(state_dims, n_params, Box::new(dynamics))
    }
}

/// One application of a block: the node of the outer tape, holding the solver with the
/// recording of its forward solve until the tape drops it.
struct BlockNode<T: Float, F> {
    shared: Arc<Mutex<Shared<T, F>>>,
    state: Shape,
    n_params: usize,
    rec: Mutex<Option<Slot<T>>>,
}

impl<T: Float, F> Drop for BlockNode<T, F> {
    fn drop(&mut self) {
        let rec = self.rec.get_mut().unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = rec.take() {
            lock(&self.shared).give_back(slot);
        }
    }
}

impl<T, F> CustomOp<T> for BlockNode<T, F>
where
    T: Float,
    F: for<'t> FnMut(&'t Tape<T>, Var<'t, T>, Var<'t, T>, Var<'t, T>) -> Var<'t, T>
        + Send
        + 'static,
{
    fn name(&self) -> &'static str {
        OP
    }

    fn output_shape(&self, inputs: &[Shape]) -> Result<Shape, AdError> {
        let [z0, theta, ts] = inputs else {
            return Err(AdError::InvalidArgument {
                op: OP,
                shape: Shape::scalar(),
                reason: "takes three inputs: the initial state, the parameters, the times",
            });
        };
        if *z0 != self.state {
            return Err(AdError::ShapeMismatch {
                op: OP,
                lhs: self.state,
                rhs: *z0,
            });
        }
        if theta.len() != self.n_params {
            return Err(AdError::LengthMismatch {
                what: "ode_block parameters",
                expected: self.n_params,
                found: theta.len(),
            });
        }
        if ts.rank() != 1 || ts.is_empty() {
            return Err(AdError::InvalidArgument {
                op: OP,
                shape: *ts,
                reason: "the output times must be a non-empty tensor of shape [n_times]",
            });
        }
        let mut dims = [0usize; 4];
        dims[0] = ts.len();
        let sd = self.state.dims();
        dims[1..=sd.len()].copy_from_slice(sd);
        Shape::new(&dims[..=sd.len()])
    }

    /// Unused by the tape (it calls [`CustomOp::try_forward`]); fills NaN on failure.
    fn forward(&self, inputs: &[&[T]], out: &mut [T]) {
        if self.try_forward(inputs, out).is_err() {
            out.fill(T::from_f64_const(f64::NAN));
        }
    }

    /// A successful solve copies every output state into `out`.
    fn overwrites_output(&self) -> bool {
        true
    }

    fn try_forward(&self, inputs: &[&[T]], out: &mut [T]) -> Result<(), AdError> {
        let mut sh = lock(&self.shared);
        let mut slot = sh.take_slot();
        let res = slot
            .solver
            .forward(&mut *sh.dynamics, inputs[0], inputs[1], inputs[2])
            .map(|zs| {
                out.copy_from_slice(zs);
                zs.iter().position(|v| !v.is_finite())
            });
        sh.stats = slot.solver.stats();
        let err = match res {
            Ok(None) => None,
            Ok(Some(index)) => Some(adjoint::Error::NonFinite {
                what: "state of the ode_block solve",
                index,
            }),
            Err(e) => Some(e),
        };
        if let Some(e) = err {
            sh.give_back(slot);
            return Err(failed(e));
        }
        drop(sh);
        *lock(&self.rec) = Some(slot);
        Ok(())
    }

    fn backward_all(
        &self,
        _inputs: &[&[T]],
        _out: &[T],
        grad_out: &[T],
        grad_inputs: &mut [Option<&mut [T]>],
    ) -> Result<(), AdError> {
        let mut rec = lock(&self.rec);
        let Some(slot) = rec.as_mut() else {
            return Err(failed(adjoint::Error::NoForwardPass));
        };
        let mut sh = lock(&self.shared);
        // Output times that are constants of the outer tape need no dL/dtᵢ (one
        // evaluation of the field per output time saved).
        slot.solver
            .set_time_gradients(grad_inputs.get(2).is_some_and(Option::is_some));
        let res = slot
            .solver
            .backward_into(&mut *sh.dynamics, grad_out, &mut slot.grads);
        sh.stats = slot.solver.stats();
        res.map_err(failed)?;
        let g = &slot.grads;
        for (dst, src) in grad_inputs.iter_mut().zip([&g.z0, &g.theta, &g.ts]) {
            if let Some(dst) = dst {
                for (d, &s) in dst.iter_mut().zip(src.iter()) {
                    *d += s;
                }
            }
        }
        Ok(())
    }
}
