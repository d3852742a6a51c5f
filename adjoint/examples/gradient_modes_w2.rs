//! Every gradient mode × step control on the W2 workload (issue 18, items 1, 2 and 4):
//! evaluations, VJPs, time, and loss / gradient error against a tight reference.
//!
//! Field: the 2→64→64→2 tanh MLP (`w2_theta(1)`, weights `N(0,1)·2/√fan_in`), on the tape
//! (`w2_field`) and hand-written ([`TanhMlp`], same layout and values); a batch of `B`
//! states uniform in `[-1, 1]²` (SplitMix64 seed 2), `t ∈ [0, 1]`, Dopri5 stages at
//! rtol = atol = 1e-6, loss mean `z(1)²`. Errors are relative to the checkpointed gradient
//! at rtol = atol = 1e-12 (Hairer's settings): `|L − L_ref|/|L_ref|`,
//! `‖g − g_ref‖₂/‖g_ref‖₂` over `(θ, z₀)`; `peak MB`: [`adjoint::GradStats::peak_bytes`].
//!
//! Modes: `checkpointed` (the default: every step kept, seminorm), `checkpointed-full`
//! (no seminorm), `backsolve` (seminorm), `direct` (discrete adjoint through the accepted
//! steps, as diffrax's `RecursiveCheckpointAdjoint`; with [`TanhMlp`] the forward solve
//! keeps the field's residuals, its hidden activations, up to the default
//! [`AdjointSolver::set_residual_bytes`], and the VJPs that ran from them are counted as
//! "kept" in the VJP column), `direct-recompute` (direct with no residuals kept: every VJP
//! evaluates the field again, as before issue 18 item 4). Forward sensitivities are left out
//! (`P = 4,482`: thousands of JVPs per evaluation). Step controls: `hairer` (the default:
//! Hairer's PI controller, `HINIT`, Hairer's error estimate), `neural_ode`
//! ([`Options::neural_ode`]) and `peers` (`Options::neural_ode` with Shampine's estimate:
//! torchdiffeq's steps).
//!
//! Time: the fastest of `--reps` value + gradient calls (one thread; pin it with
//! `taskset -c 0`), after one warm-up call; and the thread's CPU time per call, the mean
//! over the same calls (`/proc/thread-self/schedstat`, which counts only this thread's
//! time, so it moves far less than wall time while other processes share the core; its
//! clock advances by scheduler ticks, hence a mean, not a minimum).
//!
//! `taskset -c 0 cargo run --release -p adjoint --example gradient_modes_w2 [-- --b16 |
//! --b4096 | --batch B] [--reps N] [--tol TOL] [--direct] [--residual-bytes BYTES]`
//! (`--tol`: rtol = atol of the solves, default 1e-6; `--direct`: the direct rows only;
//! `--residual-bytes`: [`AdjointSolver::set_residual_bytes`] of the `direct` rows, default
//! 32 MiB).
//!
//! `--atol-sweep` (with `--b16` / `--b4096` / `--reps`): work–precision instead, the
//! hand-written field with the default step control at rtol = atol = 1e-4 … 1e-8, the
//! adjoint modes with the backward `atol` as given and relative to the seed
//! ([`adjoint::AdjointAtol::RelativeToSeed`], suffix `+seed`), beside direct (issue 18
//! item 1).

use std::time::Instant;

use adjoint::test_problems::{thread_cpu_seconds, w2_field, w2_loss, w2_states, w2_theta};
use adjoint::{AdjointSolver, GradientMode, Method, Options, TanhMlp, Vjp};
use ode_solvers::tableau::DOPRI5_SHAMPINE;

const D: usize = 2;

fn modes() -> Vec<(&'static str, GradientMode<f64>)> {
    vec![
        ("checkpointed", GradientMode::checkpointed()),
        (
            "checkpointed-full",
            GradientMode::Checkpointed {
                checkpoints: adjoint::Checkpoints::EveryStep,
                backward: adjoint::BackwardSolver::default(),
            },
        ),
        ("backsolve", GradientMode::backsolve(true)),
        ("direct", GradientMode::Direct),
        ("direct-recompute", GradientMode::Direct),
    ]
}

/// The solver of mode `mname` (`direct-recompute`: no residuals kept; `direct`: at most
/// `residual_bytes` of them when given).
fn solver(
    method: Method,
    opts: &Options<f64>,
    mname: &str,
    mode: GradientMode<f64>,
    residual_bytes: Option<usize>,
) -> AdjointSolver<f64> {
    let mut s = AdjointSolver::new(method, opts.clone()).with_mode(mode);
    if mname == "direct-recompute" {
        s.set_residual_bytes(0);
    } else if let Some(b) = residual_bytes {
        s.set_residual_bytes(b);
    }
    s
}

/// The value after `flag` on the command line, parsed.
fn arg<T: std::str::FromStr>(args: &[String], flag: &str) -> Result<Option<T>, T::Err> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse())
        .transpose()
}

/// The VJP column: the count, and how many ran from kept residuals.
fn vjps(st: &adjoint::GradStats) -> String {
    if st.backward_vjp_saved > 0 {
        format!("{} ({} kept)", st.backward_vjp, st.backward_vjp_saved)
    } else {
        st.backward_vjp.to_string()
    }
}

fn controls(tol: f64) -> Vec<(&'static str, Method, Options<f64>)> {
    vec![
        ("hairer", Method::Dopri5, Options::with_tol(tol, tol)),
        ("neural_ode", Method::Dopri5, Options::neural_ode(tol, tol)),
        (
            "peers",
            Method::Rk(&DOPRI5_SHAMPINE),
            Options::neural_ode(tol, tol),
        ),
    ]
}

fn rel(a: &[f64], b: &[f64]) -> f64 {
    let d: f64 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
    let r: f64 = b.iter().map(|y| y * y).sum();
    (d / r).sqrt()
}

/// `(θ, z₀)` gradient of one value + gradient call.
fn grad_of(g: &adjoint::Gradients<f64>) -> Vec<f64> {
    g.theta.iter().chain(&g.z0).copied().collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let probe = TanhMlp::<f64>::new(&[2, 64, 64, 2], 1, false)?;
    println!("TanhMlp<f64> kernels on this CPU: {}", probe.kernels());
    let b16_only = args.iter().any(|a| a == "--b16");
    let b4096_only = args.iter().any(|a| a == "--b4096");
    let tol: f64 = args
        .iter()
        .position(|a| a == "--tol")
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse())
        .transpose()?
        .unwrap_or(1e-6);
    let reps: usize = args
        .iter()
        .position(|a| a == "--reps")
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse())
        .transpose()?
        .unwrap_or(0);
    let theta = w2_theta(1);
    let ts = [0.0, 1.0];
    let one_batch: Option<usize> = arg(&args, "--batch")?;
    let residual_bytes: Option<usize> = arg(&args, "--residual-bytes")?;
    let direct_only = args.iter().any(|a| a == "--direct");
    let batches: Vec<usize> = match (one_batch, b16_only, b4096_only) {
        (Some(b), _, _) => vec![b],
        (_, true, _) => vec![16],
        (_, _, true) => vec![4096],
        _ => vec![16, 4096],
    };
    if args.iter().any(|a| a == "--atol-sweep") {
        return atol_sweep(&batches, reps, &theta, residual_bytes);
    }
    for &batch in &batches {
        let z0 = w2_states(batch);
        let n = batch * D;
        let reps = if reps > 0 {
            reps
        } else if batch > 256 {
            5
        } else {
            300
        };
        let mut reference = w2_field(batch)?;
        let mut rs = AdjointSolver::new(Method::Dopri5, Options::with_tol(1e-12, 1e-12));
        let (l_ref, g) = rs.value_and_grad(&mut reference, &z0, &theta, &ts, w2_loss(n))?;
        let g_ref = grad_of(&g);
        println!(
            "\nB = {batch} (reference: {} evaluations, loss {l_ref:.10e}; time = fastest of {reps})",
            rs.stats().forward.nfe
        );
        println!(
            "| field | control | mode | fwd nfe (steps) | bwd nfe | VJPs | bwd steps | wall ms | CPU ms | loss err | grad err | peak MB |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
        for (cname, method, opts) in controls(tol) {
            for (mname, mode) in modes() {
                if direct_only && !mname.starts_with("direct") {
                    continue;
                }
                let fields: [(&str, Box<dyn Vjp<f64>>); 2] = [
                    ("tape", Box::new(w2_field(batch)?)),
                    (
                        "tanh_mlp",
                        Box::new(TanhMlp::new(&[2, 64, 64, 2], batch, false)?),
                    ),
                ];
                for (fname, mut f) in fields {
                    let mut s = solver(method, &opts, mname, mode.clone(), residual_bytes);
                    let (l, g) = s.value_and_grad(f.as_mut(), &z0, &theta, &ts, w2_loss(n))?;
                    let gv = grad_of(&g);
                    let st = s.stats();
                    let mut best = f64::INFINITY;
                    let c0 = thread_cpu_seconds();
                    for _ in 0..reps {
                        let t0 = Instant::now();
                        let r = s.value_and_grad(f.as_mut(), &z0, &theta, &ts, w2_loss(n))?;
                        best = best.min(t0.elapsed().as_secs_f64());
                        std::hint::black_box(r);
                    }
                    let cpu = (thread_cpu_seconds() - c0) / reps as f64;
                    println!(
                        "| {fname} | {cname} | {mname} | {} ({}) | {} | {} | {} | {:.4} | {:.4} | {:.2e} | {:.2e} | {:.2} |",
                        st.forward.nfe,
                        st.forward.accepted,
                        st.backward_nfe,
                        vjps(&st),
                        st.backward_accepted,
                        best * 1e3,
                        cpu * 1e3,
                        ((l - l_ref) / l_ref).abs(),
                        rel(&gv, &g_ref),
                        st.peak_bytes as f64 / 1e6,
                    );
                }
            }
        }
    }
    Ok(())
}

/// The adjoint modes with the backward `atol` as given and relative to the seed, and
/// direct.
fn sweep_modes() -> Vec<(&'static str, GradientMode<f64>)> {
    use adjoint::{AdjointAtol, BackwardSolver, Checkpoints};
    let ck = |seminorm, adjoint_atol| GradientMode::Checkpointed {
        checkpoints: Checkpoints::EveryStep,
        backward: BackwardSolver {
            seminorm,
            adjoint_atol,
            ..BackwardSolver::default()
        },
    };
    let bs = |adjoint_atol| GradientMode::Backsolve {
        backward: BackwardSolver {
            seminorm: true,
            adjoint_atol,
            ..BackwardSolver::default()
        },
    };
    vec![
        ("checkpointed", ck(true, AdjointAtol::Absolute)),
        ("checkpointed+seed", ck(true, AdjointAtol::RelativeToSeed)),
        ("checkpointed-full", ck(false, AdjointAtol::Absolute)),
        (
            "checkpointed-full+seed",
            ck(false, AdjointAtol::RelativeToSeed),
        ),
        ("backsolve", bs(AdjointAtol::Absolute)),
        ("backsolve+seed", bs(AdjointAtol::RelativeToSeed)),
        ("direct", GradientMode::Direct),
        ("direct-recompute", GradientMode::Direct),
    ]
}

/// `--atol-sweep`: gradient error against VJPs and CPU time per call.
fn atol_sweep(
    batches: &[usize],
    reps: usize,
    theta: &[f64],
    residual_bytes: Option<usize>,
) -> Result<(), Box<dyn std::error::Error>> {
    let ts = [0.0, 1.0];
    for &batch in batches {
        let z0 = w2_states(batch);
        let n = batch * D;
        let reps = if reps > 0 {
            reps
        } else if batch > 256 {
            2
        } else {
            50
        };
        let mut f = TanhMlp::new(&[2, 64, 64, 2], batch, false)?;
        let mut rs = AdjointSolver::new(Method::Dopri5, Options::with_tol(1e-12, 1e-12))
            .with_mode(GradientMode::Direct);
        let (_, g) = rs.value_and_grad(&mut f, &z0, theta, &ts, w2_loss(n))?;
        let g_ref = grad_of(&g);
        println!(
            "\nB = {batch} (reference: direct at rtol = atol = 1e-12; CPU = mean of {reps} calls)"
        );
        println!("| tol | mode | fwd nfe | VJPs | bwd steps (rej) | CPU ms | grad err |");
        println!("|---|---|---|---|---|---|---|");
        for tol in [1e-4, 1e-5, 1e-6, 1e-7, 1e-8] {
            for (mname, mode) in sweep_modes() {
                let mut s = solver(
                    Method::Dopri5,
                    &Options::with_tol(tol, tol),
                    mname,
                    mode,
                    residual_bytes,
                );
                let (_, g) = s.value_and_grad(&mut f, &z0, theta, &ts, w2_loss(n))?;
                let st = s.stats();
                let c0 = thread_cpu_seconds();
                for _ in 0..reps {
                    std::hint::black_box(s.value_and_grad(&mut f, &z0, theta, &ts, w2_loss(n))?);
                }
                let cpu = (thread_cpu_seconds() - c0) / reps as f64;
                println!(
                    "| {tol:.0e} | {mname} | {} | {} | {} ({}) | {:.3} | {:.2e} |",
                    st.forward.nfe,
                    vjps(&st),
                    st.backward_accepted,
                    st.backward_rejected,
                    cpu * 1e3,
                    rel(&grad_of(&g), &g_ref),
                );
            }
        }
    }
    Ok(())
}
