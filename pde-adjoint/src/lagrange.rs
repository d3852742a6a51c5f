//! The Lagrange-multiplier example: `min x² + y²` subject to `x + y = b`.
//!
//! With `L(x, y, λ) = x² + y² + λ (x + y − b)` the optimality (KKT) conditions
//! are the linear system
//!
//! ```text
//! ⎡2 0 1⎤ ⎡x⎤   ⎡0⎤
//! ⎢0 2 1⎥ ⎢y⎥ = ⎢0⎥
//! ⎣1 1 0⎦ ⎣λ⎦   ⎣b⎦
//! ```
//!
//! (symmetric but indefinite, so it is solved with the sparse LU of
//! [`crate::discrete::SparseLu`]). For `b = 1`: `(x, y, λ) = (½, ½, −1)`.
//!
//! **Sensitivity.** The optimal value is `f*(b) = b²/2`, so
//! `df*/db = b = −λ`: perturbing the constraint to `x + y = 1 + ε` moves the
//! optimum by `−λ ε` to first order. This is the same identity
//! `dJ/ds = ∂J/∂s + λᵀ ∂c/∂s` the heated rod uses, with `c = x + y − b`,
//! `∂c/∂b = −1`.

use faer::traits::RealField;
use real::Real;

use crate::discrete::{SparseLu, TransposeSolve};
use sprs::TriMat;

use crate::error::{Result, check_finite};

/// Solution of the Lagrange-multiplier example.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LagrangeSolution<T> {
    /// Optimal `x`.
    pub x: T,
    /// Optimal `y`.
    pub y: T,
    /// Multiplier `λ` of the constraint (convention `L = f + λ (x + y − b)`).
    pub lambda: T,
    /// Optimal value `x² + y²`.
    pub objective: T,
}

/// Solves `min x² + y²` subject to `x + y = b` through its KKT system.
pub fn lagrange_example<T: Real + RealField>(b: T) -> Result<LagrangeSolution<T>> {
    check_finite("b", &[b])?;
    let two = T::one() + T::one();
    let mut kkt = TriMat::new((3, 3));
    kkt.add_triplet(0, 0, two);
    kkt.add_triplet(1, 1, two);
    for i in 0..2 {
        kkt.add_triplet(i, 2, T::one());
        kkt.add_triplet(2, i, T::one());
    }
    let mut lu = SparseLu::new(&kkt.to_csc())?;
    let mut rhs = [T::zero(), T::zero(), b];
    lu.solve_in_place(&mut rhs)?;
    let [x, y, lambda] = rhs;
    Ok(LagrangeSolution {
        x,
        y,
        lambda,
        objective: x * x + y * y,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kkt_solution_and_sensitivity() {
        let s = lagrange_example(1.0f64).unwrap();
        assert!((s.x - 0.5).abs() < 1e-14);
        assert!((s.y - 0.5).abs() < 1e-14);
        assert!((s.lambda + 1.0).abs() < 1e-14);
        // f*(1 + ε) − f*(1) = −λ ε + O(ε²): the remainder is ε²/2 exactly.
        for eps in [1e-2, 1e-3, 1e-4] {
            let p = lagrange_example(1.0 + eps).unwrap();
            let remainder = p.objective - s.objective - (-s.lambda * eps);
            assert!(remainder.abs() <= 0.6 * eps * eps, "eps {eps}: {remainder}");
            assert!(remainder.abs() >= 0.4 * eps * eps, "eps {eps}: {remainder}");
        }
        // Central difference recovers −λ to O(ε²) (exact here: f* is quadratic).
        let eps = 1e-4;
        let slope = (lagrange_example(1.0 + eps).unwrap().objective
            - lagrange_example(1.0 - eps).unwrap().objective)
            / (2.0 * eps);
        assert!((slope + s.lambda).abs() < 1e-9, "{slope}");
    }

    #[test]
    fn f32_and_errors() {
        let s = lagrange_example(1.0f32).unwrap();
        assert!((s.lambda + 1.0).abs() < 8.0 * f32::EPSILON);
        assert!(lagrange_example(f64::NAN).is_err());
    }
}
