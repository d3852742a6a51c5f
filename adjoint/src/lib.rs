//! Gradients through ODE solves.
//!
//! (The discrete adjoint of a sparse constraint `c(u, s) = 0`, which needs no ODE solver,
//! lives in the `pde-adjoint` crate: `pde_adjoint::discrete`.)
//!
//! Given dynamics `ż = f(t, z, θ)`, an initial state `z(t₀) = z0`, output times
//! `t₀ < t₁ < … < t_N` (or all decreasing) and a loss `L(z(t₀), …, z(t_N))`, this crate
//! returns `dL/dz0`, `dL/dθ` and `dL/dtᵢ` for every output time, `t₀` and `t_N` included,
//! in one of four interchangeable [`GradientMode`]s. The caller supplies `gᵢ = ∂L/∂z(tᵢ)`.
//!
//! # Example
//!
//! ```
//! use adjoint::{AdjointSolver, FnDynamics, GradientMode, Method, Options};
//! // ż = −θ z, z(0) = z0, L = z(1): dL/dz0 = e^{−θ}, dL/dθ = −z0 e^{−θ}, dL/dt₁ = −θ z(1).
//! let mut f = FnDynamics::new(1, 1, |_t: f64, z: &[f64], th: &[f64], out: &mut [f64]| {
//!     out[0] = -th[0] * z[0];
//! })
//! .with_vjp(|_t, z, th, a, gz, gth| {
//!     gz[0] = -th[0] * a[0];
//!     gth[0] = -z[0] * a[0];
//!     0.0 // aᵀ∂f/∂t
//! });
//! let (z0, th) = (2.0, 0.7);
//! for mode in [GradientMode::checkpointed(), GradientMode::backsolve(true), GradientMode::Direct, GradientMode::Forward] {
//!     let mut solver = AdjointSolver::new(Method::Dopri5, Options::with_tol(1e-10, 1e-12)).with_mode(mode);
//!     solver.forward(&mut f, &[z0], &[th], &[0.0, 1.0])?;
//!     let g = solver.backward(&mut f, &[0.0, 1.0])?; // g₀ = 0, g₁ = 1
//!     let e = (-th).exp();
//!     assert!((g.z0[0] - e).abs() < 1e-8);
//!     assert!((g.theta[0] + z0 * e).abs() < 1e-8);
//!     assert!((g.ts[1] + th * z0 * e).abs() < 1e-8);
//!     assert!((g.ts[0] - th * z0 * e).abs() < 1e-8);
//! }
//! # Ok::<(), adjoint::Error>(())
//! ```
//!
//! A network built with `autodiff` needs only its forward pass: see [`TapeDynamics`]
//! (feature `tape`, on by default), and [`ParallelTapeDynamics`] (feature `parallel`, on
//! by default) to split a batch of independent rows over threads, with results that do
//! not depend on the number of threads ([`RowParallel`] does the same for any dynamics
//! whose rows are independent, e.g. [`TanhMlp`]).
//!
//! # The seam
//!
//! [`Dynamics`] (`eval`) and [`Vjp`] (`vjp_z = aᵀ∂f/∂z`, `vjp_theta = aᵀ∂f/∂θ`,
//! `vjp_t = aᵀ∂f/∂t`, their one-pass combination `vjp`, and an optional `jvp`), all
//! writing into caller buffers; [`FnDynamics`] adapts closures, [`TapeDynamics`] a tape.
//! [`TanhMlp`] is a batched tanh MLP with hand-written VJP and JVP (no tape). The feature
//! `test-support` adds `test_problems` (dynamics with closed-form gradients, for tests).
//!
//! # The maths
//!
//! **Continuous adjoint** (Pontryagin; Chen et al. 2018). With `a(t) = ∂L/∂z(t)` along the
//! trajectory, integrated backwards from `a(t_N) = g_N`,
//!
//! ```text
//! ȧ = −aᵀ ∂f/∂z,     ȧ_θ = −aᵀ ∂f/∂θ (a_θ(t_N) = 0),     ȧ_t = −aᵀ ∂f/∂t,
//! a(tᵢ⁻) = a(tᵢ⁺) + gᵢ at each output time,
//! dL/dz0 = a(t₀) + g₀,   dL/dθ = a_θ(t₀),
//! dL/dtᵢ = gᵢᵀ f(tᵢ, z(tᵢ)) (i ≥ 1),   dL/dt₀ = −a(t₀)ᵀ f(t₀, z0)  (a without g₀).
//! ```
//!
//! **Forward sensitivities.** `S_θ = ∂z/∂θ` (`n × P`) and `S_0 = ∂z/∂z0` (`n × n`) obey
//! `Ṡ_θ = ∂f/∂z S_θ + ∂f/∂θ`, `Ṡ_0 = ∂f/∂z S_0`, `S_θ(t₀) = 0`, `S_0(t₀) = I`, integrated
//! with `z`; then `dL/dθ = Σᵢ S_θ(tᵢ)ᵀ gᵢ`, `dL/dz0 = Σᵢ S_0(tᵢ)ᵀ gᵢ`.
//!
//! **Direct** (discretise-then-optimise). An explicit RK step
//! `Yⱼ = y₀ + h Σₗ aⱼₗ kₗ`, `kⱼ = f(t + cⱼh, Yⱼ, θ)`, `y₁ = y₀ + h Σⱼ bⱼ kⱼ` is reversed
//! stage by stage (`k̄ⱼ = h bⱼ ȳ₁ + h Σ_{i>j} aᵢⱼ Ȳᵢ`, `Ȳⱼ = k̄ⱼᵀ ∂f/∂z`, `θ̄ += k̄ⱼᵀ∂f/∂θ`,
//! `h̄`, `t̄` likewise) with the solver's own public tableau. The accepted step sizes are
//! **constants of the computed solution**, stored as fractions of their output interval
//! (`h = σ (tᵢ − tᵢ₋₁)`), so `dL/dtᵢ` is the derivative of the computed solution with a
//! grid that stretches with the interval.
//!
//! # Gradient modes
//!
//! | mode | accuracy | memory | backward cost |
//! |---|---|---|---|
//! | [`GradientMode::Checkpointed`] (default) | continuous adjoint at the tolerances | ∝ steps (or checkpoints + steps/checkpoints) | ≈ one VJP per forward evaluation |
//! | [`GradientMode::Backsolve`] | approximate: `z` re-integrated backwards | independent of steps | `f` + VJP per evaluation |
//! | [`GradientMode::Direct`] | exact gradient of the computed solution | ∝ steps (+ the field's residuals, capped) | one VJP per stage (only its reverse pass where residuals were kept) |
//! | [`GradientMode::Forward`] | continuous sensitivities at the tolerances | `n (P + n)` per output | `P + n` JVPs, `n` VJPs or one block right-hand side per evaluation |
//!
//! * **Checkpointed**: the forward pass keeps every accepted step's dense output
//!   ([`Checkpoints::EveryStep`]) or at most `k` states ([`Checkpoints::Budget`], thinned
//!   by halving so they stay evenly spread over the steps; the dense output of each segment
//!   is recomputed in the backward pass). The adjoint is integrated backwards by its own
//!   solver ([`BackwardSolver`]) against the interpolated forward state, segment by segment.
//!   With `seminorm` (the default) `a_θ` is not integrator state: it is accumulated as the
//!   RK quadrature of the accepted stages (the same numbers the integrator would produce,
//!   without its `O(P)` linear algebra per stage and without error control on it).
//! * **Backsolve** (Chen et al. 2018, Algorithm 1): the augmented state `[z, a, a_θ, a_t]`
//!   integrated backwards from `t_N`, with `z` re-anchored to the stored output at every
//!   output time; `dL/dt₀ = a_t(t₀)`. `seminorm: true` controls the error on `[z, a]` only
//!   (Kidger, Chen & Lyons 2021): the step size is no longer limited by the error of the
//!   parameter and time integrals, so the backward pass can take fewer steps. How many
//!   fewer depends on the problem and can be few on short solves (`tests/mlp_modes.rs`
//!   checks that the median saving over random MLPs is positive; measured savings are in
//!   `benches/README.md`).
//! * **Direct**: see above. Keeps the step sizes, the state at the start of each step and
//!   the stages as the forward solve computed them; with dynamics that keep residuals
//!   ([`Vjp::residual_len`], e.g. [`TanhMlp`]'s hidden activations) also each stage's
//!   residuals, up to [`AdjointSolver::set_residual_bytes`], so that its VJP runs only the
//!   reverse pass ([`Vjp::vjp_saved`]), with the same bits.
//! * **Forward**: the dynamics' block right-hand side [`Vjp::sensitivity_rhs`] when they
//!   have one ([`TanhMlp`]: per-row `d × d` Jacobian blocks and per-row parameter
//!   gradients, `O(n (P + n) d)` per evaluation), else their JVP, else explicit Jacobians
//!   from `n` VJPs per evaluation or one [`Vjp::jacobians`] call ([`Vjp::prefers_jacobians`];
//!   [`TapeDynamics`] prefers the Jacobians: its JVP is a double VJP). **ForwardJvp**
//!   forces the JVPs.
//!
//! With adaptive steps the forward pass is one integration over `[t₀, t_N]` and the
//! states at the output times come from the dense output of the steps that pass them, so
//! its cost does not depend on the number of output times (as `odeint`'s). The continuous
//! adjoints restart at every output time, where `a` jumps by `dL/dz(tᵢ)`, with the step
//! size carried over; the direct mode differentiates through the interpolant (no extra
//! steps). Fixed steps, fixed-step-only methods, Tsit5 (whose cubic Hermite interpolant
//! falls short of its order) and, in the direct mode, tableaux whose interpolant is not a
//! combination of the step's stages (DOP853) restart at every output time instead (step
//! size carried over), so that outputs are step boundaries. Every mode but the direct one
//! works with every ode-solvers [`Method`], Adams included, for the forward solve and for
//! the backward one (by default the forward method). The direct mode needs an explicit
//! Runge–Kutta method (its stages are what it differentiates) and refuses Adams with
//! [`Error::UnsupportedMethod`] at [`AdjointSolver::forward`]. The checkpointed adjoint's
//! quadrature of `a_θ` (with the seminorm) needs an RK *backward* method: with an Adams
//! backward method `a_θ` stays integrator state.
//!
//! # Cost
//!
//! The checkpointed adjoint's backward pass costs about one VJP per forward evaluation
//! whatever the number of parameters `P`, so a gradient costs a small multiple of the
//! forward solve. Forward sensitivities carry `n (P + n)` values and cost `P + n` JVPs per
//! evaluation (or `n` VJPs and `O(n²(P + n))` products through explicit Jacobians): their
//! cost grows with `P` where the adjoint's does not. [`scaling`] measures both against `P`
//! on any family of dynamics, yours or the built-in MLP
//! (`cargo run --release -p adjoint --example sensitivity_scaling`); the benches crate
//! times one gradient of an MLP Neural ODE in every mode
//! (`cargo bench -p benches --bench adjoint`). Recorded figures: `benches/README.md`.
//!
//! # Backsolve drifts
//!
//! `ż = A z`, `A = [[−0.2, 0.5], [0.3, −3]]`, `z0 = (1, 1)`, `t ∈ [0, 6]`, `L = Σ z(6)`,
//! Dopri5 at `rtol = atol = 1e-8`, against the closed-form gradient (Van Loan's block
//! exponential; `tests/memory_drift.rs` asserts it): the checkpointed, direct and forward
//! modes are within `1e-6` relative error, backsolve more than 100 times further off than
//! the checkpointed and direct modes (the measured errors are in `benches/README.md`).
//! Re-integrating `z` backwards amplifies the solver's errors in the fast mode by about
//! `e^{3·6}`: backsolve is approximate, prefer the checkpointed adjoint (as diffrax and
//! SciMLSensitivity do).
//!
//! # Statistics
//!
//! [`AdjointSolver::stats`] gives forward evaluations, accepted and rejected steps,
//! backward evaluations, VJPs, JVPs and the peak bytes held (stored trajectory,
//! checkpoints, sensitivities and the integrators' buffers, counted from their lengths).
//!
//! # Auditing a model
//!
//! [`audit::audit`] compares every mode with each other and with central finite
//! differences along random directions, and reports the worst disagreement per mode.
//!
//! # References
//!
//! Chen, Rubanova, Bettencourt & Duvenaud (2018), Neural Ordinary Differential Equations.
//! Kidger, Chen & Lyons (2021), "Hey, that's not an ODE": faster ODE adjoints via seminorms.
//! Hairer, Nørsett & Wanner, Solving ODEs I (dense output, step control).

pub mod audit;
#[cfg(any(feature = "tape", target_arch = "x86_64"))]
mod cast;
mod dense_store;
pub mod dynamics;
pub mod error;
mod integrate;
mod mlp;
mod modes;
#[cfg(feature = "parallel")]
pub mod parallel;
mod rng;
pub mod scaling;
pub mod solver;
#[cfg(feature = "tape")]
pub mod tape_dynamics;
#[cfg(feature = "test-support")]
#[doc(hidden)]
pub mod test_problems;

pub use dynamics::{Dynamics, FnDynamics, Vjp};
pub use error::{Error, Result};
pub use mlp::TanhMlp;
pub use ode_solvers::{Method, Options, Real, Stats};
#[cfg(feature = "parallel")]
pub use parallel::{ParallelTapeDynamics, RowParallel, Threads};
pub use solver::{
    AdjointAtol, AdjointSolver, BackwardSolver, Checkpoints, GradStats, GradientMode, Gradients,
};
#[cfg(feature = "tape")]
pub use tape_dynamics::TapeDynamics;
