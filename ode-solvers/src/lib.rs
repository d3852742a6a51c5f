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
//! * [`RkStepper`]: the one explicit-RK driver; [`AdamsStepper`]; both implement
//!   [`Stepper`] (`step`, `step_fixed`, `dense_output`, `interpolate`, [`StepInfo`]).
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
//! `‖y''‖`, then `h = min(100 h₀, (0.01 / max(‖f₀‖, ‖y''‖))^{1/p}, max_step)`.
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
//! ## Work–precision against Hairer's codes
//!
//! The Fortran DOPRI5/DOP853 cannot run here, so `tests/hairer_reference.rs` contains a
//! line-by-line port of their core loops (`DOPCOR`, `DP86CO`, `HINIT`, Hairer's default
//! parameters, Fortran arithmetic order). Our driver needs **exactly the same number of
//! evaluations** and reaches the same error at every tolerance (asserted within 2 %; equal in
//! every case measured). Error = max-norm at the final time, against the exact end point
//! (Arenstorf: one period) or DOP853 at `rtol = atol = 1e-14`:
//!
//! | problem | tol | DOPRI5 nfe | Dopri5 (ours) nfe / error | DOP853 nfe | Dop853 (ours) nfe / error |
//! |---|---|---|---|---|---|
//! | Arenstorf | 1e-3 | 332 | 332 / 2.4e0 | 427 | 427 / 1.9e0 |
//! | Arenstorf | 1e-6 | 986 | 986 / 4.0e-2 | 1035 | 1035 / 6.9e-3 |
//! | Arenstorf | 1e-8 | 2168 | 2168 / 7.4e-5 | 1736 | 1736 / 8.4e-5 |
//! | Arenstorf | 1e-10 | 5060 | 5060 / 2.4e-6 | 2785 | 2785 / 8.6e-7 |
//! | Lorenz | 1e-3 | 614 | 614 / 3.2e-1 | 883 | 883 / 1.9e-2 |
//! | Lorenz | 1e-6 | 2060 | 2060 / 1.1e-3 | 1711 | 1711 / 4.8e-4 |
//! | Lorenz | 1e-8 | 5006 | 5006 / 1.2e-5 | 2907 | 2907 / 1.1e-6 |
//! | Lorenz | 1e-10 | 12494 | 12494 / 1.2e-7 | 4737 | 4737 / 6.2e-9 |
//! | Van der Pol | 1e-3 | 356 | 356 / 8.9e-2 | 462 | 462 / 2.5e-4 |
//! | Van der Pol | 1e-6 | 1088 | 1088 / 1.9e-5 | 1088 | 1088 / 1.1e-6 |
//! | Van der Pol | 1e-8 | 2180 | 2180 / 7.4e-8 | 1794 | 1794 / 1.8e-9 |
//! | Van der Pol | 1e-10 | 5288 | 5288 / 4.8e-10 | 2826 | 2826 / 9.4e-11 |
//!
//! (`cargo test -p ode-solvers --release --test hairer_reference -- --nocapture` prints all
//! tolerances 1e-3 … 1e-10.) Our rejected-step counts can exceed Hairer's by one or two:
//! his codes do not count rejections before the first accepted step; ours do.
//!
//! ## Against the Rust peers
//!
//! `benches/benches/ode.rs` runs `ode_solvers` 0.6.2 (Dopri5, Dop853) and diffsol 0.18
//! (Tsit45 with closures, nalgebra vectors) on the same problems in the same run; its
//! work–precision table goes to stderr (`cargo bench -p benches --bench ode -- zzz` prints
//! only the table; without the filter criterion then times 1e-3, 1e-6, 1e-8 and 1e-10).
//! Evaluations: `ode_solvers` takes the same steps and reports one evaluation more at every
//! tolerance, with identical errors; diffsol's Tsit45 (its own controller and norm) lands
//! within ±10 % of our Tsit5's evaluations at similar error (e.g. Lorenz at 1e-10: 10748
//! evaluations, error 4.2e-8, against our 11354 and 3.1e-8; Arenstorf at 1e-4 it needs 944
//! against our 584).
//! Time per evaluation outside the right-hand side
//! (`time(solve)/nfe − time(rhs)`, fastest of 31 solves, set-up included, n = 2..4; the
//! right-hand side costs 3.6, 1.4 and 1.1 ns; 2 shared cores: the whole table drifts by up
//! to ±0.5 ns between runs, the ratios between columns by a few per cent), nfe / ns:
//!
//! | problem | tol | Dopri5 | Tsit5 | Dop853 | peer Dopri5 | peer Dop853 | diffsol Tsit45 |
//! |---|---|---|---|---|---|---|---|
//! | Arenstorf | 1e-3 | 332 / 16.9 | 272 / 17.3 | 427 / 12.5 | 333 / 18.3 | 428 / 13.2 | 326 / 41.5 |
//! | Arenstorf | 1e-6 | 986 / 16.3 | 1076 / 16.7 | 1035 / 11.8 | 987 / 18.1 | 1036 / 13.1 | 1148 / 39.9 |
//! | Arenstorf | 1e-10 | 5060 / 15.9 | 5186 / 16.3 | 2785 / 11.5 | 5061 / 18.0 | 2786 / 13.0 | 4916 / 40.0 |
//! | Lorenz | 1e-3 | 614 / 12.4 | 590 / 12.7 | 883 / 8.9 | 615 / 17.0 | 884 / 12.2 | 674 / 25.9 |
//! | Lorenz | 1e-6 | 2060 / 11.9 | 1856 / 12.3 | 1711 / 8.5 | 2061 / 16.8 | 1712 / 12.0 | 1922 / 25.4 |
//! | Lorenz | 1e-10 | 12494 / 11.9 | 11354 / 12.2 | 4737 / 8.3 | 12495 / 16.8 | 4738 / 11.9 | 10748 / 25.3 |
//! | Van der Pol | 1e-3 | 356 / 11.9 | 374 / 11.8 | 462 / 8.0 | 357 / 15.1 | 463 / 13.1 | 452 / 25.1 |
//! | Van der Pol | 1e-6 | 1088 / 11.5 | 1010 / 11.4 | 1088 / 7.6 | 1089 / 14.8 | 1089 / 13.0 | 1106 / 24.4 |
//! | Van der Pol | 1e-10 | 5288 / 11.2 | 5144 / 11.2 | 2826 / 7.3 | 5289 / 14.6 | 2827 / 12.8 | 4904 / 24.3 |
//!
//! So (ratios over all eight tolerances, confirmed by a second run): against diffsol, about
//! the same evaluations and 2.0–2.5× less time outside the right-hand side. Against
//! `ode_solvers`, one evaluation fewer, and per evaluation less time everywhere: Dopri5
//! 8–12 % on Arenstorf, 27–30 % on Lorenz, 21–24 % on Van der Pol; Dop853 5–12 % on
//! Arenstorf, 27–30 % on Lorenz, 39–43 % on Van der Pol. The table's
//! `arenstorf (rhs out of line)` rows (the same maths behind `#[inline(never)]`, as a
//! network or a function pointer is) give 14.0–15.0 ns against the peer's 16.1–16.6 (Dop853)
//! and 18.4–19.5 against 20.4–21.1 (Dopri5). For right-hand sides that cost more than
//! ~100 ns (any neural network), these differences are below 1 % of a solve.
//!
//! Until the stage loops were unrolled (item (6) below), Dop853 on the inlined Arenstorf
//! right-hand side was 4–9 % *slower* than the peer's, and nothing in the generic loop moved
//! that (forced inlining, an extra logarithm per step, scalar loads of the newest stage, a
//! stack-local stage argument, scalar instead of 4-wide stage sums, all measured): the peer's
//! step, with a tiny right-hand side inlined, passes it values in registers, and a loop that
//! reads a tableau's rows at run time cannot.
//!
//! **Where the time goes** (perf, Lorenz/Van der Pol): with n = 2..4 a solve is bound by
//! *latency*, not throughput: each stage waits for the previous right-hand side, and each
//! step for the controller. Hence: (1) the controller takes one `exp` and logarithms off the
//! critical path (`h·clamp(safety·exp(β ln err_prev − α ln err), min_factor, max_factor)`)
//! instead of Hairer's two `powf` and two divisions; (2) a stage argument is formed as
//! `(y + Σ_{j<l} (h a_ij) k_j) + (h a_il) k_l`, `l` the newest stage: everything but the
//! newest term is ready while `f` computes `k_l`, which is then one multiply and one add from
//! the next evaluation (Hairer's `y + h Σ_j a_ij k_j` has two multiplies and two adds on that
//! path); (3) states of up to 8 components run compile-time-sized kernels (`h a_ij` formed
//! once per stage, the component loop unrolled into vector operations; (2) and (3) only pay
//! together: −10 % on Arenstorf and Lorenz with DOP853, each alone gained nothing or lost);
//! (4) for non-FSAL pairs (DOP853) `y_1` and both error sums come out of one pass over the
//! stages; (5) `ln err` comes from the logarithms of its pieces, so the controller does not
//! wait for the square root; (6) Dopri5, Tsit5 and Dop853 on states of up to 8 components
//! run their stage loop unrolled at compile time (`unrolled`, with `seq-macro`): the
//! coefficients are immediates, the stages stay in registers, and a right-hand side the
//! compiler inlines takes and gives its values in registers; derivatives a right-hand side
//! left in memory are read back one scalar at a time ([`Real::opaque`]), since a vector load
//! over several just-stored scalars stalls until they reach the cache. Bit-identical to the
//! generic loop (tested); −13…−16 % time per evaluation on Arenstorf, −20…−34 % on Lorenz
//! and Van der Pol (the peer's columns moved by at most 6 % between those runs), unchanged
//! (±2 %) with the right-hand side out of line; `a`'s rows are then not built at set-up.
//! Set-up (`RkStepper::new`, DOP853, no HINIT): all weight rows in one buffer, the eight
//! state-length vectors in one allocation (`y`, `y_prev`, `y_new` rotate by index on
//! acceptance), the dense-output rows pushed on first use: 206 ns (225 ns with `a`'s rows,
//! 516 ns before these three, 1070 ns before the row buffer). These change only round-off:
//! every evaluation count above and in the Hairer table is unchanged, and so is every error
//! to the digits shown.
//!
//! Tried and rejected, measured: scaling the rows by `h` once per step (a loop on the step's
//! critical path: +4 %); removing bounds checks, a reciprocal of the error scale, fusing the
//! FSAL error sum into the last stage, fixed-size copies of the first stage (no gain).

//! ## Choosing a method
//!
//! * Smooth non-stiff problems, moderate accuracy (1e-3 … 1e-7): `Dopri5` or `Tsit5`.
//! * Tight tolerances (≤ 1e-7): `Dop853`, which needs roughly half the evaluations of the
//!   5th-order pairs at 1e-10.
//! * Expensive right-hand sides with smooth solutions: `Adams` (2 evaluations per step).
//! * Fixed steps (reproducible grids, direct backpropagation through the steps): any method
//!   with `Options::fixed_step`.
//!
//! Stiff (implicit) methods, SDE and symplectic steppers are not here yet; they will be
//! further [`Stepper`] implementations driven by the same [`odeint()`] loop.
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
pub mod dense;
pub mod error;
pub mod events;
pub mod odeint;
pub mod options;
pub mod problems;
pub mod real;
pub mod rk;
pub mod stepper;
pub mod system;
pub mod tableau;
mod unrolled;

pub use adams::AdamsStepper;
pub use dense::DenseStep;
pub use error::SolveError;
pub use events::{Event, EventDirection, solve_until_event};
pub use odeint::{Method, Solution, odeint};
pub use options::{ErrorNorm, Options, PiController, Stats, Tolerance};
pub use real::Real;
pub use rk::RkStepper;
pub use stepper::{StepInfo, Stepper};
pub use system::OdeSystem;
pub use tableau::Tableau;
