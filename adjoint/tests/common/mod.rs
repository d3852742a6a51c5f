//! The closed form of `ż = A z`, the relative error and the list of every gradient mode,
//! shared by the gradient tests.
// Each test binary compiles this module and uses a part of it.
#![allow(dead_code)]

use adjoint::test_problems::SplitMix64;
use adjoint::{BackwardSolver, Checkpoints, GradientMode};
use ode_solvers::problems::expm;

/// Every gradient mode and variant: checkpointed (default, every step without the
/// seminorm, a budget of `budget` checkpoints with the seminorm), backsolve with and
/// without the seminorm, direct, forward sensitivities and their JVP variant.
pub fn every_mode(budget: usize) -> Vec<GradientMode<f64>> {
    vec![
        GradientMode::checkpointed(),
        GradientMode::Checkpointed {
            checkpoints: Checkpoints::EveryStep,
            backward: BackwardSolver::default(),
        },
        GradientMode::Checkpointed {
            checkpoints: Checkpoints::Budget(budget),
            backward: BackwardSolver {
                seminorm: true,
                ..BackwardSolver::default()
            },
        },
        GradientMode::backsolve(false),
        GradientMode::backsolve(true),
        GradientMode::Direct,
        GradientMode::Forward,
        GradientMode::ForwardJvp,
    ]
}

fn matvec(m: &[f64], n: usize, v: &[f64], transpose: bool) -> Vec<f64> {
    (0..n)
        .map(|i| {
            (0..n)
                .map(|j| if transpose { m[j * n + i] } else { m[i * n + j] } * v[j])
                .sum()
        })
        .collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// `L = Σᵢ wᵢᵀ z(tᵢ)`, `z(tᵢ) = e^{AΔᵢ} z0`, `Δᵢ = tᵢ − t₀`: returns `(dL/dz0, dL/dA, dL/dtᵢ)`.
/// `dL/dA` sums Van Loan's block exponentials `[[Aᵀ, wᵢ z0ᵀ], [0, Aᵀ]]`; `dL/dtᵢ = wᵢᵀ A z(tᵢ)`
/// for `i ≥ 1` and `dL/dt₀ = −Σᵢ wᵢᵀ e^{AΔᵢ} A z0`.
pub fn closed_form(
    a: &[f64],
    n: usize,
    z0: &[f64],
    w: &[f64],
    ts: &[f64],
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut gz0 = w[..n].to_vec();
    let mut ga = vec![0.0; n * n];
    let mut gts = vec![0.0; ts.len()];
    let az0 = matvec(a, n, z0, false);
    for (i, wi) in w.chunks_exact(n).enumerate().skip(1) {
        let dt = ts[i] - ts[0];
        let e = expm(a, n, dt);
        for (g, v) in gz0.iter_mut().zip(matvec(&e, n, wi, true)) {
            *g += v;
        }
        let zi = matvec(&e, n, z0, false);
        gts[i] = dot(wi, &matvec(a, n, &zi, false));
        gts[0] -= dot(wi, &matvec(&e, n, &az0, false));
        let m = 2 * n;
        let mut big = vec![0.0; m * m];
        for r in 0..n {
            for c in 0..n {
                big[r * m + c] = a[c * n + r];
                big[(n + r) * m + n + c] = a[c * n + r];
                big[r * m + n + c] = wi[r] * z0[c];
            }
        }
        let eb = expm(&big, m, dt);
        for (k, g) in ga.iter_mut().enumerate() {
            *g += eb[(k / n) * m + n + k % n];
        }
    }
    (gz0, ga, gts)
}

pub fn rel(a: &[f64], b: &[f64]) -> f64 {
    let num = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).powi(2))
        .sum::<f64>()
        .sqrt();
    num / b.iter().map(|y| y * y).sum::<f64>().sqrt().max(1e-300)
}

/// Fixed random weights `w` (SplitMix64 seed 5) for the loss [`loss`].
pub fn weights(len: usize) -> Vec<f64> {
    let mut rng = SplitMix64::new(5);
    (0..len).map(|_| rng.uniform_pm1()).collect()
}

/// `L = Σ_i w_i · z(t_i)` over every output state, with `∂L/∂z = w`.
pub fn loss(w: &[f64]) -> impl FnMut(&[f64], &mut [f64]) -> f64 + '_ {
    move |zs, dl| {
        dl.copy_from_slice(w);
        zs.iter().zip(w).map(|(z, w)| z * w).sum()
    }
}
