//! Work–precision of the step-size settings on Neural ODE fields (issue 18, item 1).
//!
//! Fields: 2→64→64→2 tanh MLPs (the W2 workload): five random draws (`w2_theta(1..=5)`,
//! weights `N(0,1)·2/√fan_in`) and three trained ones (the draws 1..=3 trained here for
//! [`TRAIN_ITERS`] Adam iterations to map `z(0)` to `z(1)` of Chen et al.'s spiral
//! `ż = z³ A`, `A = [[-0.1, 2], [-2, -0.1]]`, on batches of 16 states uniform in
//! `[-1, 1]²`). Batch 16 (every field) and 4096 (random draw 1 and trained draw 1), states
//! uniform in `[-1, 1]²` (SplitMix64 seed 2), `t ∈ [0, 1]`, Dopri5 stages, loss
//! `mean (z(1) − target)²` (target 0 for the random fields, the spiral's `z(1)` for the
//! trained ones), gradient `dL/dθ` by the checkpointed adjoint (the default mode, whose
//! backward pass uses the same settings). Errors are relative to a reference at
//! rtol = atol = 1e-12 (Hairer's settings): `|L − L_ref|/|L_ref|` and
//! `‖g − g_ref‖₂/‖g_ref‖₂`.
//!
//! Settings (all with safety 0.9 and step factors in `[0.2, 10]`, RMS error norm):
//! * `hairer`: Hairer's DOPRI5 — PI controller `β = 0.04, α = 0.17`, Hairer's `HINIT`
//!   (Euclidean norms), Hairer's error estimate (the classical default).
//! * `i`: the I controller `α = 1/5, β = 0` with Hairer's `HINIT` and error estimate.
//! * `neural_ode`: [`Options::neural_ode`], the I controller with the RMS first-step
//!   heuristic (Hairer's error estimate): what ODE-Net uses.
//! * `peers`: torchdiffeq's `dopri5` defaults reproduced in our solver, step for step:
//!   [`Options::neural_ode`] with Shampine's error estimate
//!   (`Method::Rk(&DOPRI5_SHAMPINE)`). diffrax's differ only in the first step (0.01).
//! * `pi-peers`: Hairer's PI controller with the peers' first step and error estimate.
//!
//! Also prints the step sizes of each setting on the W2 benchmark field (draw 1, B = 16,
//! tol 1e-6), next to which torchdiffeq's and diffrax's can be read
//! (`benches/scripts/peers_steps.py`). Output: one table per (fields, batch), mean over the
//! fields per tolerance, then the evaluations each setting needs to reach a given loss and
//! gradient error (log–log interpolation between tolerances).
//!
//! Run with `cargo run --release -p adjoint --example controller_work_precision`
//! (`-- --quick`: batch 16 only).

use adjoint::test_problems::{SplitMix64, w2_field, w2_theta};
use adjoint::{AdjointSolver, Dynamics, Method, Options};
use ode_solvers::tableau::DOPRI5_SHAMPINE;
use ode_solvers::{InitialStep, Integrator, PiController, odeint};

const D: usize = 2;
const TOLS: [f64; 6] = [1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8];
/// Adam iterations of the trained fields.
const TRAIN_ITERS: usize = 300;

/// One setting of the study: a name, the method (tableau) and the options at a tolerance.
struct Setting {
    name: &'static str,
    method: Method,
    options: fn(f64) -> Options<f64>,
}

fn i_controller() -> PiController<f64> {
    PiController {
        safety: 0.9,
        min_factor: 0.2,
        max_factor: 10.0,
        beta: 0.0,
        alpha: Some(0.2),
    }
}

fn settings() -> Vec<Setting> {
    vec![
        Setting {
            name: "hairer",
            method: Method::Dopri5,
            options: |tol| Options::with_tol(tol, tol),
        },
        Setting {
            name: "i",
            method: Method::Dopri5,
            options: |tol| Options {
                controller: Some(i_controller()),
                ..Options::with_tol(tol, tol)
            },
        },
        Setting {
            name: "neural_ode",
            method: Method::Dopri5,
            options: |tol| Options::neural_ode(tol, tol),
        },
        Setting {
            name: "peers",
            method: Method::Rk(&DOPRI5_SHAMPINE),
            options: |tol| Options::neural_ode(tol, tol),
        },
        Setting {
            name: "pi-peers",
            method: Method::Rk(&DOPRI5_SHAMPINE),
            options: |tol| Options {
                initial_step: InitialStep::Rms,
                ..Options::with_tol(tol, tol)
            },
        },
    ]
}

/// `mean (z(1) − target)²` over the last output and its gradient.
fn loss_fn(target: &[f64]) -> impl FnMut(&[f64], &mut [f64]) -> f64 + '_ {
    move |zs: &[f64], dl: &mut [f64]| {
        let n = target.len();
        let m = n as f64;
        let off = zs.len() - n;
        dl.fill(0.0);
        let mut l = 0.0;
        for i in 0..n {
            let r = zs[off + i] - target[i];
            dl[off + i] = 2.0 * r / m;
            l += r * r;
        }
        l / m
    }
}

fn uniform_states(batch: usize, rng: &mut SplitMix64) -> Vec<f64> {
    (0..batch * D).map(|_| rng.uniform_pm1()).collect()
}

/// `z(1)` of the spiral `ż = z³ A` for each state of the batch (tight tolerance).
fn spiral_targets(z0: &[f64]) -> Result<Vec<f64>, Box<dyn std::error::Error>> {
    let mut f = |_t: f64, y: &[f64], dy: &mut [f64]| {
        for (z, d) in y.chunks(D).zip(dy.chunks_mut(D)) {
            let (a, b) = (z[0].powi(3), z[1].powi(3));
            d[0] = -0.1 * a - 2.0 * b;
            d[1] = 2.0 * a - 0.1 * b;
        }
    };
    let sol = odeint(
        &mut f,
        z0,
        &[0.0, 1.0],
        Method::Dopri5,
        &Options::with_tol(1e-12, 1e-12),
    )?;
    Ok(sol.ys[sol.n..].to_vec())
}

/// The W2 draw `seed` trained by Adam (learning rate 3e-3) to map states to the spiral's
/// `z(1)`, fresh batches of 16 states per iteration; returns the parameters and the
/// first and last training losses.
fn train(seed: u64) -> Result<(Vec<f64>, f64, f64), Box<dyn std::error::Error>> {
    let batch = 16;
    let mut f = w2_field(batch)?;
    let mut theta = w2_theta(seed);
    let (mut m, mut v) = (vec![0.0; theta.len()], vec![0.0; theta.len()]);
    let (lr, b1, b2, eps) = (3e-3, 0.9, 0.999, 1e-8);
    let mut rng = SplitMix64::new(1000 + seed);
    let mut solver = AdjointSolver::new(Method::Dopri5, Options::with_tol(1e-6, 1e-6));
    let (mut first, mut last) = (0.0, 0.0);
    for it in 1..=TRAIN_ITERS {
        let z0 = uniform_states(batch, &mut rng);
        let target = spiral_targets(&z0)?;
        let (l, g) = solver.value_and_grad(&mut f, &z0, &theta, &[0.0, 1.0], loss_fn(&target))?;
        if it == 1 {
            first = l;
        }
        last = l;
        let (c1, c2) = (1.0 - b1_pow(b1, it), 1.0 - b1_pow(b2, it));
        for i in 0..theta.len() {
            m[i] = b1 * m[i] + (1.0 - b1) * g.theta[i];
            v[i] = b2 * v[i] + (1.0 - b2) * g.theta[i] * g.theta[i];
            theta[i] -= lr * (m[i] / c1) / ((v[i] / c2).sqrt() + eps);
        }
    }
    Ok((theta, first, last))
}

fn b1_pow(b: f64, k: usize) -> f64 {
    b.powi(k as i32)
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

/// A field of the study: its parameters and its loss target (per batch size).
struct Field {
    theta: Vec<f64>,
    trained: bool,
}

/// Per setting and tolerance: mean forward evaluations, backward VJPs + evaluations, loss
/// error, gradient error.
type Row = [f64; 4];

fn study(
    fields: &[&Field],
    batch: usize,
    settings: &[Setting],
) -> Result<Vec<Vec<Row>>, Box<dyn std::error::Error>> {
    let mut f = w2_field(batch)?;
    let mut rng = SplitMix64::new(2);
    let z0 = uniform_states(batch, &mut rng);
    let spiral = spiral_targets(&z0)?;
    let zeros = vec![0.0; z0.len()];
    let ts = [0.0, 1.0];
    let mut out = vec![vec![[0.0; 4]; TOLS.len()]; settings.len()];
    for field in fields {
        let target = if field.trained { &spiral } else { &zeros };
        let mut s = AdjointSolver::new(Method::Dopri5, Options::with_tol(1e-12, 1e-12));
        let (l_ref, g_ref) = s.value_and_grad(&mut f, &z0, &field.theta, &ts, loss_fn(target))?;
        for (si, setting) in settings.iter().enumerate() {
            for (ti, &tol) in TOLS.iter().enumerate() {
                let mut s = AdjointSolver::new(setting.method, (setting.options)(tol));
                let (l, g) = s.value_and_grad(&mut f, &z0, &field.theta, &ts, loss_fn(target))?;
                let st = s.stats();
                let diff: Vec<f64> = g
                    .theta
                    .iter()
                    .zip(&g_ref.theta)
                    .map(|(a, b)| a - b)
                    .collect();
                let r = &mut out[si][ti];
                r[0] += st.forward.nfe as f64;
                r[1] += (st.backward_vjp + st.backward_nfe) as f64;
                r[2] += (l - l_ref).abs() / l_ref.abs();
                r[3] += norm(&diff) / norm(&g_ref.theta);
            }
        }
    }
    let k = fields.len() as f64;
    for r in out.iter_mut().flatten() {
        r.iter_mut().for_each(|x| *x /= k);
    }
    Ok(out)
}

/// Evaluations (column `cost`) at which the error (column `err`) reaches `target`, by
/// log–log interpolation between the tolerances; `None` outside the range.
fn cost_at(rows: &[Row], err: usize, cost: impl Fn(&Row) -> f64, target: f64) -> Option<f64> {
    for w in rows.windows(2) {
        let (e0, e1) = (w[0][err], w[1][err]);
        if (e0 >= target && e1 <= target) || (e0 <= target && e1 >= target) {
            if e0 == e1 {
                return Some(cost(&w[0]));
            }
            let s = (target.ln() - e0.ln()) / (e1.ln() - e0.ln());
            return Some((cost(&w[0]).ln() + s * (cost(&w[1]).ln() - cost(&w[0]).ln())).exp());
        }
    }
    None
}

fn print_study(title: &str, rows: &[Vec<Row>], settings: &[Setting]) {
    println!("\n{title}");
    println!(
        "{:<10} {:>6} {:>8} {:>8} {:>10} {:>10}",
        "setting", "tol", "fwd nfe", "bwd", "loss err", "grad err"
    );
    for (ti, tol) in TOLS.iter().enumerate() {
        for (si, s) in settings.iter().enumerate() {
            let r = rows[si][ti];
            println!(
                "{:<10} {tol:>6.0e} {:>8.1} {:>8.1} {:>10.2e} {:>10.2e}",
                s.name, r[0], r[1], r[2], r[3]
            );
        }
    }
    println!("evaluations to reach an error (forward nfe | forward + backward), by interpolation:");
    print!("{:<10}", "setting");
    let targets = [1e-3, 1e-4, 1e-5, 1e-6, 1e-7];
    for t in targets {
        print!(" {:>14}", format!("loss {t:.0e}"));
    }
    for t in targets {
        print!(" {:>14}", format!("grad {t:.0e}"));
    }
    println!();
    let fmt = |x: Option<f64>, y: Option<f64>| match (x, y) {
        (Some(a), Some(b)) => format!("{a:.0}|{b:.0}"),
        _ => "-".to_string(),
    };
    for (si, s) in settings.iter().enumerate() {
        print!("{:<10}", s.name);
        for err in [2, 3] {
            for t in targets {
                let fwd = cost_at(&rows[si], err, |r| r[0], t);
                let tot = cost_at(&rows[si], err, |r| r[0] + r[1], t);
                print!(" {:>14}", fmt(fwd, tot));
            }
        }
        println!();
    }
}

/// Step sizes of each setting on the W2 benchmark field (draw 1, B = 16, tol 1e-6).
fn trace(settings: &[Setting]) -> Result<(), Box<dyn std::error::Error>> {
    let batch = 16;
    let mut f = w2_field(batch)?;
    let mut rng = SplitMix64::new(2);
    let z0 = uniform_states(batch, &mut rng);
    let theta = w2_theta(1);
    println!("step sizes on the W2 field (draw 1, B = 16, tol 1e-6):");
    let diffrax = Setting {
        name: "diffrax",
        method: Method::Rk(&DOPRI5_SHAMPINE),
        options: |tol| Options {
            first_step: Some(0.01),
            ..Options::neural_ode(tol, tol)
        },
    };
    for s in settings.iter().chain([&diffrax]) {
        let opts = (s.options)(1e-6);
        let mut err = None;
        let (hs, st) = {
            let mut sys = |t: f64, y: &[f64], dy: &mut [f64]| {
                if let Err(e) = f.eval(t, y, &theta, dy) {
                    err = Some(e);
                }
            };
            let mut it = Integrator::new(s.method, &mut sys, 0.0, &z0, 1.0, &opts)?;
            let mut hs = Vec::new();
            while !it.is_done() {
                hs.push(it.advance(&mut sys, 1.0)?.h);
            }
            (hs, it.stats())
        };
        if let Some(e) = err {
            return Err(e.into());
        }
        let hs: Vec<String> = hs.iter().map(|h| format!("{h:.4}")).collect();
        println!(
            "{:<10} nfe {:>3}, {:>2} steps ({} rejected): {}",
            s.name,
            st.nfe,
            st.accepted,
            st.rejected,
            hs.join(" ")
        );
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let quick = std::env::args().any(|a| a == "--quick");
    let settings = settings();
    trace(&settings)?;
    let random: Vec<Field> = (1..=5)
        .map(|seed| Field {
            theta: w2_theta(seed),
            trained: false,
        })
        .collect();
    let mut trained = Vec::new();
    for seed in 1..=3 {
        let (theta, first, last) = train(seed)?;
        println!(
            "trained draw {seed}: {TRAIN_ITERS} Adam iterations, loss {first:.3e} -> {last:.3e}"
        );
        trained.push(Field {
            theta,
            trained: true,
        });
    }
    let rows = study(&random.iter().collect::<Vec<_>>(), 16, &settings)?;
    print_study("random fields (5), B = 16", &rows, &settings);
    let rows = study(&trained.iter().collect::<Vec<_>>(), 16, &settings)?;
    print_study("trained fields (3), B = 16", &rows, &settings);
    if !quick {
        let rows = study(&[&random[0]], 4096, &settings)?;
        print_study("random field (draw 1), B = 4096", &rows, &settings);
        let rows = study(&[&trained[0]], 4096, &settings)?;
        print_study("trained field (draw 1), B = 4096", &rows, &settings);
    }
    Ok(())
}
