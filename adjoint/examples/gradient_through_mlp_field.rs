//! The gradient of a loss through an ODE solve whose field is a small tanh MLP, written
//! as a forward pass on the autodiff tape ([`TapeDynamics`]).
//!
//! `dz/dt = W2 tanh(W1 z + b1) + b2` (2 → 16 → 2) on a batch of 2 states run as one
//! `[2, 2]` state, solved by Dopri5 at rtol = atol = 1e-10 to `t = 0.5, 1`, with the loss
//! `L = ½ Σ_k ‖z(t_k) − target‖²` over the output times after the first. `dL/dθ` comes
//! from the checkpointed adjoint (the default and recommended mode: the adjoint ODE
//! integrated backwards against the interpolated forward solution), and is checked against
//! direct backpropagation through the solver's steps and against a central difference
//! `(L(θ + εe_j) − L(θ − εe_j)) / 2ε`, `ε = ε_mach^{1/3} max(1, |θ_j|)`, on one parameter.
//! The example fails (non-zero exit) if they disagree beyond the tolerances' reach.
//!
//! Run with `cargo run --release -p adjoint --example gradient_through_mlp_field`.

use adjoint::{AdjointSolver, GradientMode, Method, Options, TapeDynamics};

const D: usize = 2; // state components
const H: usize = 16; // hidden width
const BATCH: usize = 2;
const TARGET: [f64; D] = [0.5, -0.5];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // θ = [W1 (D×H), b1 (H), W2 (H×D), b2 (D)], one flat buffer the closure views into.
    let p = D * H + H + H * D + D;
    let mut field = TapeDynamics::new(&[BATCH, D], p, |_tape, _t, z, th| {
        let w1 = th.view(0, &[D, H]);
        let b1 = th.view(D * H, &[H]);
        let w2 = th.view(D * H + H, &[H, D]);
        let b2 = th.view(D * H + H + H * D, &[D]);
        (z.matmul(w1) + b1).tanh().matmul(w2) + b2
    })?;
    // Deterministic, smallish parameters; two initial states.
    let theta: Vec<f64> = (0..p)
        .map(|i| 0.3 * (((i * 37 + 11) % 23) as f64 / 11.0 - 1.0))
        .collect();
    let z0 = [1.0, 0.0, -0.5, 0.8];
    let ts = [0.0, 0.5, 1.0];
    let n = BATCH * D;

    // L and dL/dz(t_k), given every state at the output times (row-major: time, batch, d).
    let loss = |zs: &[f64], dl: &mut [f64]| {
        let mut l = 0.0;
        for (i, (z, g)) in zs.iter().zip(dl.iter_mut()).enumerate().skip(n) {
            let e = z - TARGET[i % D];
            l += 0.5 * e * e;
            *g = e;
        }
        l
    };
    let options = Options::with_tol(1e-10, 1e-10);

    let mut checkpointed =
        AdjointSolver::new(Method::Dopri5, options.clone()).with_mode(GradientMode::checkpointed());
    let (l, g) = checkpointed.value_and_grad(&mut field, &z0, &theta, &ts, loss)?;
    let stats = checkpointed.stats();
    println!(
        "L = {l:.12}; checkpointed adjoint: {} forward and {} backward evaluations, {} VJPs",
        stats.forward.nfe, stats.backward_nfe, stats.backward_vjp
    );

    let mut direct =
        AdjointSolver::new(Method::Dopri5, options.clone()).with_mode(GradientMode::Direct);
    let (_, g_direct) = direct.value_and_grad(&mut field, &z0, &theta, &ts, loss)?;

    // Central difference on the parameter with the largest gradient.
    let j = (0..p)
        .max_by(|&a, &b| g.theta[a].abs().total_cmp(&g.theta[b].abs()))
        .unwrap_or(0);
    let eps = f64::EPSILON.cbrt() * theta[j].abs().max(1.0);
    let mut plain = AdjointSolver::new(Method::Dopri5, options);
    let mut loss_at = |th: &[f64]| -> Result<f64, adjoint::Error> {
        let zs = plain.forward(&mut field, &z0, th, &ts)?.to_vec();
        Ok(loss(&zs, &mut vec![0.0; zs.len()]))
    };
    let (mut up, mut down) = (theta.clone(), theta.clone());
    up[j] += eps;
    down[j] -= eps;
    let fd = (loss_at(&up)? - loss_at(&down)?) / (2.0 * eps);

    let max_rel = g
        .theta
        .iter()
        .zip(&g_direct.theta)
        .map(|(a, b)| (a - b).abs() / a.abs().max(b.abs()).max(1e-12))
        .fold(0.0, f64::max);
    println!("dL/dθ_{j}: checkpointed {:+.10e}", g.theta[j]);
    println!("          direct       {:+.10e}", g_direct.theta[j]);
    println!("          central diff {fd:+.10e} (ε = {eps:.1e})");
    println!(
        "checkpointed vs direct over all {p} parameters: max relative difference {max_rel:.1e}"
    );
    let fd_rel = (g.theta[j] - fd).abs() / fd.abs().max(1e-12);
    println!("checkpointed vs central difference: relative difference {fd_rel:.1e}");
    println!("dL/dz0 (checkpointed): {:?}", g.z0);
    // Both gradients are exact up to the solves' tolerance (1e-10) and the difference
    // quotient up to ε² and round-off/ε: agreement to 1e-5 is a loose bound.
    if max_rel > 1e-5 || fd_rel > 1e-5 {
        return Err(format!(
            "the gradients disagree: checkpointed vs direct {max_rel:.1e}, vs central difference {fd_rel:.1e}"
        )
        .into());
    }
    Ok(())
}
