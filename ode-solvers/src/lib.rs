//! # ode-solvers
//!
//! Generic-float integrators for `y' = f(t, y)`: explicit Runge–Kutta methods run by **one**
//! driver from `const` Butcher tableaux, a variable-step variable-order Adams–Bashforth–
//! Moulton method, adaptive step control, dense output and event location. States are plain
//! `&[T]` / `&mut [T]` (`T` = `f32` or `f64`), so nalgebra vectors, autodiff buffers and flat
//! parameter slices plug in without copies.
//!
//! ```
//! use ode_solvers::{odeint, Method, Options};
//!
//! // Van der Pol, μ = 1, written as a closure over slices.
//! let mut vdp = |_t: f64, y: &[f64], dy: &mut [f64]| {
//!     dy[0] = y[1];
//!     dy[1] = (1.0 - y[0] * y[0]) * y[1] - y[0];
//! };
//! let ts: Vec<f64> = (0..=20).map(f64::from).collect();
//! let sol = odeint(&mut vdp, &[2.0, 0.0], &ts, Method::Dopri5, &Options::with_tol(1e-8, 1e-8))?;
//! assert_eq!(sol.ys.len(), 21 * 2);
//! // Backwards in time (t1 < t0 works everywhere): a rotation returns to its start.
//! let mut rot = |_t: f64, y: &[f64], dy: &mut [f64]| {
//!     dy[0] = y[1];
//!     dy[1] = -y[0];
//! };
//! let tau = std::f64::consts::TAU;
//! let back = odeint(&mut rot, &[1.0, 0.0], &[tau, 0.5 * tau, 0.0], Method::Dop853, &Options::with_tol(1e-10, 1e-10))?;
//! assert!((back.y(1)[0] + 1.0).abs() < 1e-8 && (back.y_last()[0] - 1.0).abs() < 1e-8);
//! println!("{} evaluations, {} accepted, {} rejected", sol.stats.nfe, sol.stats.accepted, sol.stats.rejected);
//! # Ok::<(), ode_solvers::SolveError>(())
//! ```
//!
//! ## The pieces
//!
//! * [`OdeSystem`]: `rhs(t, y, dy)`; implemented for every `FnMut(T, &[T], &mut [T])`.
//! * [`tableau`]: `const` [`Tableau`]s (`a`, `b`, `c`, error weights, dense-output
//!   coefficients, order, FSAL flag, reference): Euler, Midpoint, Heun, RK4 (fixed step),
//!   Bosh3 3(2), Dopri5 5(4), Tsit5 5(4), Dop853 8(5,3). One test checks every tableau's
//!   consistency and all order conditions (rooted trees up to order 9).
//! * [`RkStepper`]: every explicit Runge–Kutta tableau; [`AdamsStepper`]; both implement
//!   [`Stepper`] (`step`, `step_fixed`, `step_to`, `dense_output`, `interpolate`,
//!   `last_step` → [`StepInfo`]).
//! * [`driver`]: the ONE stepping driver. [`Integrator`] runs any [`Method`] (its stepper
//!   is an [`AnyStepper`]) under a [`StepControl`] — error-controlled, a fixed-step grid
//!   `t0 + k h`, or one step onto each target — through one `advance` call. `odeint`,
//!   `solve_until_event` and the adjoint crate's forward and backward passes all step
//!   through it, so a new stepper is added in one place.
//! * [`Options`]: tolerances (scalar or per component), [`ErrorNorm`], a seminorm
//!   (`error_components`), [`PiController`], `first_step`, `max_step`, `min_step`,
//!   `max_steps`, `fixed_step`.
//! * [`odeint()`]: the one-call loop returning the state at every requested time plus
//!   [`Stats`]; [`solve_until_event`] for zero crossings of `g(t, y)`.
//! * [`problems`]: reference problems with closed forms or published data (Arenstorf,
//!   Lorenz, Van der Pol, Brusselator, Pleiades, linear systems with `expm`, …).
//! * [`SolveError`]: every bad input is an error, never a panic.
//!
//! ## The mathematics
//!
//! **Runge–Kutta step.** With stages `k_i = f(t + c_i h, y + h Σ_{j<i} a_ij k_j)`, the new
//! state is `y_1 = y + h Σ b_i k_i` and the local error estimate `e = h Σ (b_i − b̂_i) k_i`.
//! DOP853 combines its 5th- and 3rd-order estimates as Hairer does:
//! `err = |h| E₅² / sqrt(n (E₅² + 0.01 E₃²))`, `E² = Σ (e_i / sk_i)²`.
//!
//! **Error norm.** `sk_i = atol_i + rtol_i max(|y_i|, |y_1,i|)` and
//! `err = sqrt(1/n Σ (e_i / sk_i)²)` (Hairer's mixed RMS norm; `ErrorNorm::Max` takes the
//! maximum). With `error_components = Some(r)` the sum runs over `i ∈ r` only (a seminorm:
//! the adjoint controls `[z, a]` and lets `[a_θ, a_t]` ride along).
//!
//! **PI controller** (Gustafsson; Hairer's "Lund stabilisation"): a step is accepted when
//! `err ≤ 1`, and `h_new = h / clamp(err^α err_prev^{−β} / safety, 1/max_factor, 1/min_factor)`
//! with `α = 1/q − 0.75 β`; after a rejection `h` shrinks by `min(1/min_factor, err^α/safety)`
//! and may not grow on the next accepted step. Defaults are Hairer's: `safety = 0.9`,
//! `min_factor = 0.2`, `max_factor = 10`, `β = 0.04` (DOPRI5 and the other 5(4)/3(2) pairs),
//! and `0.333`, `6`, `β = 0` with `q = 8` for DOP853.
//!
//! **Initial step** (Hairer's `HINIT`): `h₀ = 0.01 ‖y₀‖/‖f₀‖`, one Euler step to estimate
//! `‖y''‖`, then `h = min(100 h₀, (0.01 / max(‖f₀‖, ‖y''‖))^{1/p}, max_step)`, with
//! Euclidean norms as in Hairer's code, or RMS norms ([`InitialStep::Rms`], as torchdiffeq,
//! diffrax and SciPy), which do not shrink the first step as a batch of states grows.
//!
//! **Neural ODE preset.** [`Options::neural_ode`] is the peers' step control: the I
//! controller (`β = 0`, `α = 1/q`) and the RMS initial step. With
//! [`tableau::DOPRI5_SHAMPINE`] (the error estimate of torchdiffeq's and diffrax's `dopri5`)
//! the solver takes their very steps. At one tolerance it takes fewer steps than Hairer's
//! settings on Neural ODE fields, with a larger error; at equal error the two cost about
//! the same, so [`Options::default`] keeps Hairer's.
//!
//! **Dense output.** On the last step `[t₀, t₀ + h]`, `θ = (t − t₀)/h`:
//! `y(θ) = r₁ + θ(r₂ + θ'(r₃ + θ(r₄ + θ'(r₅ + …))))`, `θ' = 1 − θ`, with `r₁..r₄` the cubic
//! Hermite data (`y₀`, `y₁ − y₀`, `h f₀ − (y₁ − y₀)`, …) and `r₅` (DOPRI5, 4th order) or
//! `r₅..r₈` (DOP853, 7th order, three extra evaluations on steps where it is used) from the
//! published coefficients. The other methods use cubic Hermite. Output times never force
//! steps; integration runs in either direction (`h < 0` backwards).
//!
//! **Adams–Bashforth–Moulton** ([`adams`]): PECE with an order-`k` Adams–Bashforth predictor
//! and an order-`k+1` Adams–Moulton corrector on the actual (unequal) past times, weights by
//! exact Gauss–Legendre integration of the Lagrange basis; order 1..12 chosen per step from
//! the order-`k` and order-`k−1` error estimates, as in ode113.
//!
//! ## Against Hairer's codes
//!
//! `tests/hairer_reference.rs` ports the core loops of Hairer's Fortran DOPRI5 and DOP853
//! (`DOPCOR`, `DP86CO`, `HINIT`, his default parameters, Fortran arithmetic order) and checks
//! that [`Method::Dopri5`] and [`Method::Dop853`] take the same steps: on the Arenstorf orbit,
//! Lorenz and Van der Pol at every tolerance from 1e-3 to 1e-10, the evaluation counts agree
//! within 2 % (they are equal in every case the test prints) and the errors within a factor 3.
//! Rejected-step counts can exceed Hairer's by one or two: his codes do not count rejections
//! before the first accepted step; ours do.
//!
//! The measured tables (evaluations and errors against Hairer's codes, time per evaluation
//! against the `ode_solvers` and diffsol crates, and how the driver's overhead per step was
//! brought down) are in `benches/README.md`, each with the command that reproduces it.
//!
//! ## Choosing a method
//!
//! * Smooth non-stiff problems, moderate accuracy (1e-3 … 1e-7): `Dopri5` or `Tsit5`.
//! * Tight tolerances (≤ 1e-7): `Dop853`, which needs roughly half the evaluations of the
//!   5th-order pairs at 1e-10.
//! * Expensive right-hand sides with smooth solutions: `Adams` (2 evaluations per step).
//! * Fixed steps (reproducible grids, direct backpropagation through the steps): any RK method
//!   with `Options::fixed_step`.
//!
//! Stiff (implicit) methods, SDE and symplectic steppers are not here yet; they will be
//! further [`Stepper`] implementations behind the same [`Integrator`].
//!
//! ## References
//!
//! E. Hairer, S. P. Nørsett, G. Wanner, *Solving Ordinary Differential Equations I*, 2nd ed.,
//! Springer 1993 (DOPRI5, DOP853, HINIT, PI control, test problems). Ch. Tsitouras,
//! Comput. Math. Appl. 62 (2011). P. Bogacki, L. F. Shampine, Appl. Math. Lett. 2 (1989).
//! L. F. Shampine, M. K. Gordon, *Computer Solution of ODEs*, 1975 (variable-order Adams).
#![warn(missing_docs)]
#![deny(clippy::float_cmp)]
// `!(x > 0)` is used on purpose: it is also true for NaN, which must take the safe branch.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

pub mod adams;
pub mod convergence;
pub mod dense;
pub mod driver;
pub mod error;
pub mod events;
mod initial_step;
pub mod odeint;
pub mod options;
pub mod problems;
pub mod real;
pub mod rk;
mod slices;
pub mod stepper;
pub mod system;
pub mod tableau;
mod unrolled;

pub use adams::AdamsStepper;
pub use dense::DenseStep;
pub use driver::{AnyStepper, Integrator, StepControl};
pub use error::SolveError;
pub use events::{Event, EventDirection, solve_until_event};
pub use odeint::{Method, Solution, odeint};
pub use options::{ErrorNorm, InitialStep, Options, PiController, Stats, Tolerance};
pub use real::Real;
pub use rk::RkStepper;
pub use stepper::{StepInfo, Stepper};
pub use system::OdeSystem;
pub use tableau::Tableau;
