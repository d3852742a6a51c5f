//! Inverse design: find the heater `s` whose temperature matches a target,
//! by L-BFGS on the adjoint gradient, with optional Tikhonov smoothing.

use faer::traits::RealField;
use real::Real;
use sprs::{CsMat, TriMat};

use crate::error::{PdeError, Result, check_finite, check_len};
use crate::grid::{Grid, lit};
use crate::lbfgs::{Lbfgs, LbfgsReport};
use crate::problem::{HeatProblem, relative_error};

/// Tikhonov smoothing `R(s) = (α/2) ∫ |∇s|² dx`, discretised over the grid
/// edges as `(α/2) Σ_{i~j} hᵈ ((sᵢ − sⱼ)/h)² = ½ sᵀ K s` (no boundary term:
/// `s` is free at the boundary).
#[derive(Debug, Clone)]
pub struct Smoothing<T> {
    k: CsMat<T>,
}

impl<T: Real> Smoothing<T> {
    /// The smoothing term with weight `alpha ≥ 0` on `grid`.
    pub fn new<G: Grid>(grid: &G, alpha: T) -> Result<Self> {
        if !(alpha.is_finite() && alpha >= T::zero()) {
            return Err(PdeError::InvalidOption {
                name: "alpha",
                requirement: "finite and >= 0",
                value: alpha.to_f64().unwrap_or(f64::NAN),
            });
        }
        let n = grid.n_unknowns();
        let h = grid.spacing();
        let c: T = alpha * lit::<T>(grid.cell_volume() / (h * h));
        let mut t = TriMat::new((n, n));
        let mut degree = vec![T::zero(); n];
        grid.for_each_edge(&mut |i, j| {
            t.add_triplet(i, j, -c);
            t.add_triplet(j, i, -c);
            degree[i] += c;
            degree[j] += c;
        });
        for (i, d) in degree.into_iter().enumerate() {
            t.add_triplet(i, i, d);
        }
        Ok(Self { k: t.to_csc() })
    }

    /// Adds `∇R(s) = K s` to `gradient` and returns `R(s)`.
    pub fn add_value_and_gradient(&self, s: &[T], gradient: &mut [T]) -> T {
        let mut r = T::zero();
        for (j, col) in self.k.outer_iterator().enumerate() {
            // K is symmetric: (K s)_j = Σ_i K_ij s_i over column j.
            let mut ks = T::zero();
            for (i, &v) in col.iter() {
                ks += v * s[i];
            }
            gradient[j] += ks;
            r += s[j] * ks;
        }
        r / (T::one() + T::one())
    }
}

/// Options of [`inverse_design`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DesignOptions<T> {
    /// Tikhonov smoothing weight `α ≥ 0` (0: none).
    pub alpha: T,
    /// The minimiser's options.
    pub lbfgs: Lbfgs<T>,
}

impl<T: Real> Default for DesignOptions<T> {
    fn default() -> Self {
        Self {
            alpha: T::zero(),
            lbfgs: Lbfgs {
                max_iters: 2000,
                grad_tol: lit(1e-9),
                value_tol: T::zero(),
                ..Lbfgs::default()
            },
        }
    }
}

/// The outcome of [`inverse_design`].
#[derive(Debug, Clone, PartialEq)]
pub struct DesignResult<T> {
    /// The heater found.
    pub s: Vec<T>,
    /// Its temperature.
    pub u: Vec<T>,
    /// Final misfit `J(s) = ∫ (u − u_target)²`.
    pub misfit: T,
    /// Final smoothing term `R(s)`.
    pub regularisation: T,
    /// The minimiser's report (iterations, evaluations, history of `J + R`).
    pub report: LbfgsReport<T>,
    /// Linear solves spent (state + adjoint, two per evaluation).
    pub n_solves: usize,
}

/// Minimises `J(s) + R(s)` over `s` from `s0` on `grid`, each evaluation being
/// one state solve and one adjoint solve with a single factorisation of `−Δ_h`.
pub fn inverse_design<G: Grid, T: Real + RealField>(
    grid: &G,
    target: &[T],
    s0: &[T],
    options: &DesignOptions<T>,
) -> Result<DesignResult<T>> {
    let n = grid.n_unknowns();
    check_len("s0", n, s0.len())?;
    check_finite("s0", s0)?;
    let mut problem = HeatProblem::new(grid, target)?;
    let smoothing = if options.alpha > T::zero() {
        Some(Smoothing::new(grid, options.alpha)?)
    } else {
        Smoothing::new(grid, options.alpha)?;
        None
    };
    let mut s = s0.to_vec();
    let report = options.lbfgs.minimize(&mut s, |s, g| {
        let j = problem.objective_and_gradient(s, g)?;
        let r = match &smoothing {
            Some(sm) => sm.add_value_and_gradient(s, g),
            None => T::zero(),
        };
        Ok::<T, PdeError>(j + r)
    })?;
    let misfit = problem.objective(&s)?;
    let mut scratch = vec![T::zero(); n];
    let regularisation = match &smoothing {
        Some(sm) => sm.add_value_and_gradient(&s, &mut scratch),
        None => T::zero(),
    };
    Ok(DesignResult {
        u: problem.state().to_vec(),
        s,
        misfit,
        regularisation,
        report,
        n_solves: problem.n_solves(),
    })
}

/// A complete recovery experiment: the target is made from a known heater
/// `s*` (`u_target = A⁻¹ s*`), then [`inverse_design`] runs from `s = 0`.
#[derive(Debug, Clone, PartialEq)]
pub struct Recovery<T> {
    /// The known heater `s*`.
    pub s_true: Vec<T>,
    /// The target temperature made from it.
    pub target: Vec<T>,
    /// The design run.
    pub result: DesignResult<T>,
    /// `‖s − s*‖ / ‖s*‖` (discrete 2-norm, i.e. the L² norm up to `hᵈ`).
    pub relative_error: T,
}

/// Runs the recovery experiment for the heater `s_true` on `grid`.
pub fn recover_heater<G: Grid, T: Real + RealField>(
    grid: &G,
    s_true: &[T],
    options: &DesignOptions<T>,
) -> Result<Recovery<T>> {
    let n = grid.n_unknowns();
    check_len("s_true", n, s_true.len())?;
    check_finite("s_true", s_true)?;
    let zeros = vec![T::zero(); n];
    let mut forward = HeatProblem::new(grid, &zeros)?;
    let mut target = vec![T::zero(); n];
    forward.solve_into(s_true, &mut target)?;
    let result = inverse_design(grid, &target, &zeros, options)?;
    Ok(Recovery {
        relative_error: relative_error(&result.s, s_true),
        s_true: s_true.to_vec(),
        target,
        result,
    })
}
