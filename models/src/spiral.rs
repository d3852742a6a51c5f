//! The canonical Neural ODE demonstration data: the cubic spiral
//! `dy/dt = A y³` (cube taken elementwise) with `A = [[-0.1, 2.0], [-2.0, -0.1]]`,
//! `y(0) = (2, 0)`, sampled at 1000 evenly spaced times on `[0, 25]`.
//!
//! torchdiffeq's `ode_demo.py` writes the same system with row vectors,
//! `dy/dt = y³ A`, which is `Aᵀ y³`: the same spiral turning the other way.

use ode_solvers::{Method, Options, odeint};

use crate::ModelsError;
use crate::data::Trajectory;

/// The matrix `A` of the spiral, row-major.
pub const SPIRAL_A: [[f64; 2]; 2] = [[-0.1, 2.0], [-2.0, -0.1]];

/// The spiral's initial state.
pub const SPIRAL_Y0: [f64; 2] = [2.0, 0.0];

/// `dy = A y³`.
pub fn spiral_rhs(y: &[f64], dy: &mut [f64]) {
    let c = [y[0] * y[0] * y[0], y[1] * y[1] * y[1]];
    dy[0] = SPIRAL_A[0][0] * c[0] + SPIRAL_A[0][1] * c[1];
    dy[1] = SPIRAL_A[1][0] * c[0] + SPIRAL_A[1][1] * c[1];
}

/// The spiral sampled at `samples` evenly spaced times on `[0, t_end]`, integrated by
/// Dop853 at rtol = atol = 1e-12 (the data are exact to about that tolerance).
pub fn spiral_trajectory(samples: usize, t_end: f64) -> Result<Trajectory, ModelsError> {
    if samples < 2 || !(t_end.is_finite() && t_end > 0.0) {
        return Err(ModelsError::InvalidArgument {
            name: "spiral",
            reason: format!(
                "need at least 2 samples on [0, t_end > 0], got {samples} on [0, {t_end}]"
            ),
        });
    }
    let ts: Vec<f64> = (0..samples)
        .map(|k| t_end * k as f64 / (samples - 1) as f64)
        .collect();
    let mut options = Options::with_tol(1e-12, 1e-12);
    options.max_steps = 1_000_000;
    let rhs = |_t: f64, y: &[f64], dy: &mut [f64]| spiral_rhs(y, dy);
    let sol = odeint(&mut { rhs }, &SPIRAL_Y0, &ts, Method::Dop853, &options)?;
    Trajectory::new(vec!["y0".into(), "y1".into()], ts, sol.ys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spiral_decays_and_turns() {
        let t = spiral_trajectory(1000, 25.0).unwrap();
        assert_eq!(t.len(), 1000);
        assert_eq!(t.y(0), &SPIRAL_Y0);
        let r = |k: usize| t.y(k)[0].hypot(t.y(k)[1]);
        assert!(r(999) < 0.5 * r(0), "the spiral decays: r(25) = {}", r(999));
        // A y³ turns clockwise first: y1 goes negative from (2, 0).
        assert!(t.y(5)[1] < 0.0);
    }
}
