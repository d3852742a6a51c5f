//! The adjoint method on PDE-constrained problems: from Lagrange multipliers to
//! the heated rod and the heated plate.
//!
//! # The problems
//!
//! * [`discrete`]: the discrete adjoint of any sparse constraint `c(u, s) = 0`
//!   (`(∂c/∂u)ᵀ λ = −∂J/∂u`, `dJ/ds = ∂J/∂s + λᵀ ∂c/∂s`) on faer's sparse Cholesky or
//!   LU, the symbolic analysis kept apart for reuse; everything below is built on it. It
//!   needs no ODE solver and no tape. Scalars are `T: Real + RealField`: the
//!   workspace's one float trait plus faer's requirement.
//! * [`lagrange_example`]: `min x² + y²` subject to `x + y = 1` through its KKT
//!   system, `(x, y, λ) = (½, ½, −1)`; perturbing the constraint by `ε` moves
//!   the optimal value by `−λ ε`.
//! * The heated rod ([`Rod`]): `−u'' = s(x)` on `(0, 1)`, `u(0) = u(1) = 0`, and
//!   the heated plate ([`Plate`]): `−Δu = s` on the unit square, `u = 0` on the
//!   boundary. Both are second-order finite differences on a uniform grid of
//!   interior nodes with spacing `h = 1/(n+1)` (rod) or `h = 1/(m+1)` (plate,
//!   `m²` unknowns, 5-point stencil). Everything else is written once against
//!   the [`Grid`] trait.
//!
//! # Discretisation and objective
//!
//! The state equation is `A u = s` with `A = −Δ_h` (symmetric positive definite,
//! assembled straight into CSC arrays with sprs). The objective is
//!
//! ```text
//! J(s) = ∫_Ω (u − u_target)² dx  ≈  J_h(s) = w Σₖ (uₖ − ūₖ)² ,   w = hᵈ ,
//! ```
//!
//! the composite trapezoidal rule on the node grid, in which the boundary nodes
//! contribute nothing because `u − u_target` vanishes there (the target must
//! satisfy the boundary condition, as any temperature of the rod does). It is
//! second-order accurate for smooth integrands.
//!
//! `A` is factored once by faer's sparse Cholesky (`P A Pᵀ = L Lᵀ`; AMD
//! ordering on the plate, the natural order on the rod, whose tridiagonal
//! factor then has no fill: [`Grid::fill_ordering`]), the symbolic analysis and the numeric factor kept apart
//! ([`discrete::CholeskySymbolic`],
//! [`discrete::SparseCholesky`]), so a new heater, a new target, a new
//! design iteration or an operator with new values on the same pattern reuses
//! them. Each solve then costs `O(nnz(L))` and allocates nothing.
//!
//! # The adjoint, its sign and its scaling
//!
//! Write the constraint in residual form `c(u, s) = A u − s = 0`, and the
//! Lagrangian `L = J_h + λᵀ c`. Then (see [`discrete`])
//!
//! ```text
//! Aᵀ λ = −∂J_h/∂u = −2w (u − ū),       dJ_h/ds = ∂J_h/∂s + λᵀ ∂c/∂s = −λ ,
//! ```
//!
//! because `∂J_h/∂s = 0` and `∂c/∂s = −I`. **This crate's convention is
//! `dJ/ds = −λ`.** Texts that write `dJ/ds = +λ` write the constraint as
//! `c = s − A u` (or the adjoint equation with `+∂J/∂u`); the gradient itself is
//! the same. Equivalently `p = −λ` solves `A p = 2w(u − ū)` and `dJ/ds = p`.
//! Since `A` is symmetric the adjoint solve reuses the factor of the state
//! solve: one extra solve gives all `n` components.
//!
//! **Discrete versus L² gradient.** `dJ_h/dsₖ` is the derivative with respect
//! to one nodal value. The L² gradient `g` (the function with
//! `δJ = ∫ g δs dx`) satisfies `δJ ≈ w Σₖ g(xₖ) δsₖ`, so
//!
//! ```text
//! g(xₖ) = (1/w) dJ_h/dsₖ = (1/hᵈ) dJ_h/dsₖ ,
//! ```
//!
//! which converges, as `h → 0`, to the continuous adjoint `g = p_c` with
//! `−Δ p_c = 2(u − u_target)` ([`HeatProblem::l2_gradient`]). Optimisers should
//! see the L² gradient if mesh-independent behaviour matters; L-BFGS is
//! insensitive to the constant factor.
//!
//! Forward sensitivities (`∂u/∂sₖ = A⁻¹eₖ`, `n` solves) and central finite
//! differences (`2n` solves) are implemented on the same factor as references
//! ([`HeatProblem::gradient_forward`], [`HeatProblem::gradient_fd`]); since
//! `J_h` is quadratic in `s`, central differences have no truncation error and
//! agree with the adjoint to round-off.
//!
//! # Example
//!
//! ```
//! use pde_adjoint::{Grid, HeatProblem, Rod, relative_error};
//!
//! let rod = Rod::new(50)?;
//! let pi = std::f64::consts::PI;
//! let target: Vec<f64> = rod.sample(&|p| (pi * p[0]).sin());
//! let s: Vec<f64> = rod.sample(&|p| 1.0 + p[0]);
//! let mut problem = HeatProblem::new(&rod, &target)?;
//! let mut adjoint = vec![0.0; 50];
//! let mut forward = vec![0.0; 50];
//! let j = problem.objective_and_gradient(&s, &mut adjoint)?; // 2 solves
//! problem.gradient_forward(&s, &mut forward)?; // 51 solves
//! assert!(j > 0.0);
//! assert!(relative_error(&adjoint, &forward) < 1e-10);
//! # Ok::<(), pde_adjoint::PdeError>(())
//! ```
//!
//! Inverse design ([`inverse_design`], [`recover_heater`]) runs the crate's own
//! [`Lbfgs`] (strong-Wolfe line search) on `J + R` with optional Tikhonov
//! smoothing `R = (α/2) ∫ |∇s|²`; [`measure_scaling`] times the gradient
//! methods against the forward solve. The program `neuralode` (crate `cli`)
//! runs both with plots and JSON: `cargo run --release -- rod design` and
//! `cargo run --release -- rod scaling`.

mod design;
pub mod discrete;
mod error;
mod grid;
mod lagrange;
mod lbfgs;
mod problem;
mod scaling;

pub use design::{
    DesignOptions, DesignResult, Recovery, Smoothing, inverse_design, recover_heater,
};
pub use discrete::FillOrdering;
pub use error::{PdeError, Result};
/// The scalar bound of this crate's solvers is `Real + RealField`: the workspace's one
/// float trait plus faer's requirement for its sparse factorisations.
pub use faer::traits::RealField;
pub use grid::{Grid, Plate, Rod};
pub use lagrange::{LagrangeSolution, lagrange_example};
pub use lbfgs::{Lbfgs, LbfgsReport, StopReason};
pub use problem::{HeatProblem, relative_error};
pub use real::Real;
pub use scaling::{ScalingOptions, ScalingRow, ScalingTable, measure_grid, measure_scaling};
