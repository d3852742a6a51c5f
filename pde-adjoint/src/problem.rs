//! The heat problem `A u = s` with the objective `J(s) = ∫ (u − u_target)²`, its
//! adjoint gradient, forward sensitivities and finite differences, all reusing
//! one sparse Cholesky factorisation.

use faer::traits::RealField;
use real::Real;
use sprs::CsMat;

use crate::discrete::{
    CholeskySymbolic, DiscreteAdjoint, ScaledIdentity, SparseCholesky, TransposeSolve,
};
use crate::error::{PdeError, Result, check_finite, check_len};
use crate::grid::{Grid, lit};

/// A linear state equation `A u = s` (`A` symmetric positive definite, e.g. a
/// [`Grid::laplacian`]) with the tracking objective
///
/// ```text
/// J(s) = w Σₖ (uₖ − ūₖ)²  ≈  ∫_Ω (u − u_target)² dx ,    w = hᵈ .
/// ```
///
/// The operator is factored once at construction (symbolic analysis and numeric
/// factor kept apart: [`HeatProblem::with_symbolic`] and
/// [`HeatProblem::update_operator`] reuse them); every solve afterwards —
/// state, adjoint, each forward sensitivity, each finite-difference probe —
/// reuses that factor and the problem's buffers, so no evaluation allocates.
///
/// The adjoint is [`crate::discrete::DiscreteAdjoint`] applied to the
/// constraint `c(u, s) = A u − s`, for which `∂c/∂s = −I` and therefore
/// `dJ/ds = −λ` (see the crate docs for the derivation and the sign).
pub struct HeatProblem<T: Real + RealField> {
    a: CsMat<T>,
    weight: T,
    target: Vec<T>,
    factor: SparseCholesky<T>,
    u: Vec<T>,
    lambda: Vec<T>,
    work: Vec<T>,
    zeros: Vec<T>,
    n_solves: usize,
}

impl<T: Real + RealField> std::fmt::Debug for HeatProblem<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeatProblem")
            .field("n", &self.a.rows())
            .field("weight", &self.weight)
            .field("n_solves", &self.n_solves)
            .finish_non_exhaustive()
    }
}

impl<T: Real + RealField> HeatProblem<T> {
    /// The problem on `grid` (`A = −Δ_h`, `w = hᵈ`) tracking `target` (one value
    /// per unknown).
    pub fn new<G: Grid>(grid: &G, target: &[T]) -> Result<Self> {
        let a = grid.laplacian();
        let weight = lit(grid.cell_volume());
        Self::validate(&a, weight, target)?;
        let symbolic = CholeskySymbolic::with_ordering(&a, grid.fill_ordering())?;
        Self::with_symbolic(&symbolic, a, weight, target)
    }

    /// The problem for any square sparse operator `a` (must be symmetric
    /// positive definite) and quadrature weight `weight > 0`.
    pub fn from_operator(a: CsMat<T>, weight: T, target: &[T]) -> Result<Self> {
        Self::validate(&a, weight, target)?;
        let symbolic = CholeskySymbolic::new(&a)?;
        Self::with_symbolic(&symbolic, a, weight, target)
    }

    /// As [`HeatProblem::from_operator`], reusing a symbolic analysis of the
    /// pattern of `a` (e.g. from a previous problem: [`HeatProblem::symbolic`]).
    pub fn with_symbolic(
        symbolic: &CholeskySymbolic,
        a: CsMat<T>,
        weight: T,
        target: &[T],
    ) -> Result<Self> {
        Self::validate(&a, weight, target)?;
        let n = a.rows();
        let a = if a.is_csc() { a } else { a.to_csc() };
        let factor = SparseCholesky::with_symbolic(symbolic, &a)?;
        Ok(Self {
            a,
            weight,
            target: target.to_vec(),
            factor,
            u: vec![T::zero(); n],
            lambda: vec![T::zero(); n],
            work: vec![T::zero(); n],
            zeros: vec![T::zero(); n],
            n_solves: 0,
        })
    }

    fn validate(a: &CsMat<T>, weight: T, target: &[T]) -> Result<()> {
        let n = a.rows();
        if n == 0 {
            return Err(PdeError::Empty { what: "n" });
        }
        if !(weight.is_finite() && weight > T::zero()) {
            return Err(PdeError::InvalidOption {
                name: "weight",
                requirement: "finite and > 0",
                value: weight.to_f64().unwrap_or(f64::NAN),
            });
        }
        check_len("target", n, target.len())?;
        check_finite("target", target)?;
        check_finite("operator", a.data())
    }

    /// Replaces the operator by one with the same sparsity pattern (e.g. a new
    /// conductivity), reusing the symbolic analysis and all buffers. On error
    /// the problem keeps its previous operator.
    pub fn update_operator(&mut self, a: CsMat<T>) -> Result<()> {
        check_finite("operator", a.data())?;
        let a = if a.is_csc() { a } else { a.to_csc() };
        if let Err(e) = self.factor.refactor(&a) {
            // Leave the problem usable: restore the factor of the old operator
            // (which factored before, so this cannot fail short of memory).
            let _ = self.factor.refactor(&self.a);
            return Err(e.into());
        }
        self.a = a;
        Ok(())
    }

    /// Replaces the target.
    pub fn set_target(&mut self, target: &[T]) -> Result<()> {
        check_len("target", self.n(), target.len())?;
        check_finite("target", target)?;
        self.target.copy_from_slice(target);
        Ok(())
    }

    /// Number of unknowns.
    pub fn n(&self) -> usize {
        self.a.rows()
    }

    /// Quadrature weight `w`.
    pub fn weight(&self) -> T {
        self.weight
    }

    /// The operator `A`.
    pub fn operator(&self) -> &CsMat<T> {
        &self.a
    }

    /// The target `ū`.
    pub fn target(&self) -> &[T] {
        &self.target
    }

    /// The symbolic analysis of `A` (shareable with other problems).
    pub fn symbolic(&self) -> &CholeskySymbolic {
        self.factor.symbolic()
    }

    /// The state `u` of the last evaluation.
    pub fn state(&self) -> &[T] {
        &self.u
    }

    /// The adjoint `λ` of the last [`HeatProblem::objective_and_gradient`].
    pub fn lambda(&self) -> &[T] {
        &self.lambda
    }

    /// Number of linear solves so far (a cost counter for tests and reports).
    pub fn n_solves(&self) -> usize {
        self.n_solves
    }

    fn check_design(&self, s: &[T]) -> Result<()> {
        check_len("s", self.n(), s.len())?;
        check_finite("s", s)
    }

    fn solve_state(&mut self, s: &[T]) -> Result<()> {
        self.u.copy_from_slice(s);
        self.factor.solve_in_place(&mut self.u)?;
        self.n_solves += 1;
        Ok(())
    }

    fn misfit(&self, u: &[T]) -> T {
        let mut acc = T::zero();
        for (x, t) in u.iter().zip(&self.target) {
            let d = *x - *t;
            acc += d * d;
        }
        self.weight * acc
    }

    /// Solves `A u = s` into `u`.
    pub fn solve_into(&mut self, s: &[T], u: &mut [T]) -> Result<()> {
        self.check_design(s)?;
        check_len("u", self.n(), u.len())?;
        self.solve_state(s)?;
        u.copy_from_slice(&self.u);
        Ok(())
    }

    /// `J(s)` (one solve).
    pub fn objective(&mut self, s: &[T]) -> Result<T> {
        self.check_design(s)?;
        self.solve_state(s)?;
        Ok(self.misfit(&self.u))
    }

    /// `J(s)` and its gradient `∂J/∂sₖ` by the adjoint: two solves with the
    /// same factor, whatever `n`. The gradient is the discrete one (a factor
    /// `w = hᵈ` times the L² gradient; see [`HeatProblem::l2_gradient`]).
    pub fn objective_and_gradient(&mut self, s: &[T], gradient: &mut [T]) -> Result<T> {
        self.check_design(s)?;
        check_len("gradient", self.n(), gradient.len())?;
        self.solve_state(s)?;
        let j = self.misfit(&self.u);
        // ∂J/∂u = 2 w (u − ū); ∂J/∂s = 0; ∂c/∂s = −I.
        let two_w = self.weight + self.weight;
        for ((d, x), t) in self.work.iter_mut().zip(&self.u).zip(&self.target) {
            *d = two_w * (*x - *t);
        }
        let dc_ds = ScaledIdentity {
            n: self.n(),
            scale: -T::one(),
        };
        DiscreteAdjoint::gradient_with(
            &mut self.factor,
            &dc_ds,
            &self.work,
            &self.zeros,
            &mut self.lambda,
            gradient,
        )?;
        self.n_solves += 1;
        Ok(j)
    }

    /// `J(s)` and its gradient by forward sensitivities: `∂u/∂sₖ = A⁻¹ eₖ`,
    /// `∂J/∂sₖ = 2w (u − ū)·∂u/∂sₖ`: `n + 1` solves with the same factor
    /// (O(n²) work: a reference, not a method for large `n`).
    pub fn gradient_forward(&mut self, s: &[T], gradient: &mut [T]) -> Result<T> {
        self.check_design(s)?;
        check_len("gradient", self.n(), gradient.len())?;
        self.solve_state(s)?;
        let j = self.misfit(&self.u);
        let two_w = self.weight + self.weight;
        for k in 0..self.n() {
            self.work.fill(T::zero());
            self.work[k] = T::one();
            self.factor.solve_in_place(&mut self.work)?;
            self.n_solves += 1;
            let mut acc = T::zero();
            for ((du, x), t) in self.work.iter().zip(&self.u).zip(&self.target) {
                acc += (*x - *t) * *du;
            }
            gradient[k] = two_w * acc;
        }
        Ok(j)
    }

    /// `J(s)` and its gradient by central finite differences,
    /// `(J(s + εeₖ) − J(s − εeₖ)) / 2ε` with `ε = step·max(1, |sₖ|)`:
    /// `2n + 1` solves. `step = None` uses `ε_mach^{1/3}` (the usual balance of
    /// truncation against round-off). `J_h` is quadratic in `s`, so central
    /// differences have no truncation error here and a larger step (say
    /// `1e-2`) only reduces round-off.
    pub fn gradient_fd(&mut self, s: &[T], gradient: &mut [T], step: Option<T>) -> Result<T> {
        self.check_design(s)?;
        check_len("gradient", self.n(), gradient.len())?;
        let step = step.unwrap_or_else(|| T::epsilon().cbrt());
        if !(step.is_finite() && step > T::zero()) {
            return Err(PdeError::InvalidOption {
                name: "step",
                requirement: "finite and > 0",
                value: step.to_f64().unwrap_or(f64::NAN),
            });
        }
        let mut probe = std::mem::take(&mut self.lambda);
        probe.copy_from_slice(s);
        let mut result = Ok(());
        for k in 0..self.n() {
            let eps = step * T::one().max(s[k].abs());
            probe[k] = s[k] + eps;
            let jp = self.solve_state(&probe).map(|_| self.misfit(&self.u));
            probe[k] = s[k] - eps;
            let jm = self.solve_state(&probe).map(|_| self.misfit(&self.u));
            probe[k] = s[k];
            match (jp, jm) {
                (Ok(jp), Ok(jm)) => gradient[k] = (jp - jm) / (eps + eps),
                (Err(e), _) | (_, Err(e)) => {
                    result = Err(e);
                    break;
                }
            }
        }
        self.lambda = probe;
        result?;
        self.objective(s)
    }

    /// Converts the discrete gradient `∂J/∂sₖ` into the L² gradient
    /// `g(xₖ) = (1/w) ∂J/∂sₖ`, the function with `δJ = ∫ g δs dx`.
    pub fn l2_gradient(&self, gradient: &[T], out: &mut [T]) -> Result<()> {
        check_len("gradient", self.n(), gradient.len())?;
        check_len("out", self.n(), out.len())?;
        for (o, g) in out.iter_mut().zip(gradient) {
            *o = *g / self.weight;
        }
        Ok(())
    }
}

/// Relative distance `‖a − b‖₂ / max(‖a‖₂, ‖b‖₂)` (0 when both vanish).
pub fn relative_error<T: Real>(a: &[T], b: &[T]) -> T {
    let mut d = T::zero();
    let mut na = T::zero();
    let mut nb = T::zero();
    for (x, y) in a.iter().zip(b) {
        d += (*x - *y) * (*x - *y);
        na += *x * *x;
        nb += *y * *y;
    }
    let scale = na.max(nb).sqrt();
    if scale <= T::zero() {
        T::zero()
    } else {
        d.sqrt() / scale
    }
}
