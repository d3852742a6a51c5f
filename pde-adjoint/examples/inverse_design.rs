//! Inverse design of the heater: recover `s*` from the temperature it makes,
//! on the rod and on the plate, by L-BFGS on the adjoint gradient.
//!
//! ```text
//! cargo run --release -p pde-adjoint --example inverse_design -- [OUT_DIR] [--quick]
//! ```
//!
//! Writes `inverse_design_rod.{png,svg}` (s, s*, u, u_target),
//! `inverse_design_history.{png,svg}` (J + R per iteration) and
//! `inverse_design.json` into `OUT_DIR` (default `out/`).

mod common;

use common::{AnyError, Plot, Series, has_flag, out_dir, register_font, save_plot, write_atomic};
use pde_adjoint::{DesignOptions, Grid, Lbfgs, Plate, Recovery, Rod, recover_heater};

const PI: f64 = std::f64::consts::PI;

/// A smooth heater: a broad bump plus one harmonic.
fn heater(x: f64) -> f64 {
    20.0 * (-((x - 0.35) / 0.12).powi(2)).exp() + 6.0 * (2.0 * PI * x).sin().max(0.0)
}

fn summary<G: Grid>(
    name: &str,
    grid: &G,
    alpha: f64,
    rec: &Recovery<f64>,
    secs: f64,
) -> serde_json::Value {
    let r = &rec.result;
    println!(
        "{name:>5}: n = {:>7}, alpha = {alpha:.1e}: {} iterations, {} evaluations ({} solves), stop {:?}, J = {:.3e} (from {:.3e}), R = {:.3e}, ‖s − s*‖/‖s*‖ = {:.3e}, {:.2} s",
        grid.n_unknowns(),
        r.report.iterations,
        r.report.evaluations,
        r.n_solves,
        r.report.stop,
        r.misfit,
        r.report.history[0],
        r.regularisation,
        rec.relative_error,
        secs
    );
    serde_json::json!({
        "grid": name,
        "n": grid.n_unknowns(),
        "h": grid.spacing(),
        "alpha": alpha,
        "iterations": r.report.iterations,
        "evaluations": r.report.evaluations,
        "solves": r.n_solves,
        "stop": format!("{:?}", r.report.stop),
        "initial_objective": r.report.history[0],
        "final_misfit": r.misfit,
        "final_regularisation": r.regularisation,
        "relative_error_to_s_true": rec.relative_error,
        "seconds": secs,
    })
}

fn main() -> Result<(), AnyError> {
    register_font()?;
    let dir = out_dir()?;
    let quick = has_flag("--quick");
    let n = if quick { 200 } else { 1000 };
    let rod = Rod::new(n)?;
    let s_true: Vec<f64> = rod.sample(&|p| heater(p[0]));
    let mut runs = Vec::new();
    let mut rod_result = None;
    for alpha in [0.0, 1e-9] {
        let options = DesignOptions {
            alpha,
            lbfgs: Lbfgs {
                max_iters: if quick { 300 } else { 1000 },
                grad_tol: 1e-10,
                value_tol: 0.0,
                ..Lbfgs::default()
            },
        };
        let t0 = std::time::Instant::now();
        let rec = recover_heater(&rod, &s_true, &options)?;
        runs.push(summary(
            "rod",
            &rod,
            alpha,
            &rec,
            t0.elapsed().as_secs_f64(),
        ));
        if alpha == 0.0 {
            rod_result = Some(rec);
        }
    }
    let m = if quick { 30 } else { 100 };
    let plate = Plate::new(m)?;
    let s_plate: Vec<f64> = plate.sample(&|p| heater(p[0]) * (PI * p[1]).sin());
    let options = DesignOptions {
        alpha: 1e-8,
        lbfgs: Lbfgs {
            max_iters: if quick { 200 } else { 500 },
            grad_tol: 1e-10,
            value_tol: 0.0,
            ..Lbfgs::default()
        },
    };
    let t0 = std::time::Instant::now();
    let rec = recover_heater(&plate, &s_plate, &options)?;
    runs.push(summary(
        "plate",
        &plate,
        options.alpha,
        &rec,
        t0.elapsed().as_secs_f64(),
    ));

    let rec = rod_result.ok_or("no rod run")?;
    let xs: Vec<f64> = (0..n).map(|k| rod.point(k)[0]).collect();
    let zip = |v: &[f64], scale: f64| -> Vec<(f64, f64)> {
        xs.iter().zip(v).map(|(x, y)| (*x, y * scale)).collect()
    };
    // u is ~1/π² of s: scale it to share the axis, and say so.
    let scale = 50.0;
    save_plot(
        &dir,
        "inverse_design_rod",
        &Plot {
            title: format!("Heated rod, n = {n}: recovered heater (alpha = 0)"),
            x_label: "x".into(),
            y_label: format!("s(x);  {scale} u(x)"),
            log_log: false,
            series: vec![
                Series {
                    label: "s* (true heater)".into(),
                    points: zip(&rec.s_true, 1.0),
                    colour: 5,
                    markers: false,
                    width: 6,
                },
                Series {
                    label: "s (recovered)".into(),
                    points: zip(&rec.result.s, 1.0),
                    colour: 1,
                    markers: false,
                    width: 2,
                },
                Series {
                    label: format!("{scale} u_target"),
                    points: zip(&rec.target, scale),
                    colour: 0,
                    markers: false,
                    width: 6,
                },
                Series {
                    label: format!("{scale} u (recovered)"),
                    points: zip(&rec.result.u, scale),
                    colour: 2,
                    markers: false,
                    width: 2,
                },
            ],
        },
    )?;
    let history: Vec<(f64, f64)> = rec
        .result
        .report
        .history
        .iter()
        .enumerate()
        .map(|(i, j)| ((i + 1) as f64, *j))
        .collect();
    save_plot(
        &dir,
        "inverse_design_history",
        &Plot {
            title: "L-BFGS on the adjoint gradient: J per iteration (rod)".into(),
            x_label: "iteration + 1".into(),
            y_label: "J".into(),
            log_log: true,
            series: vec![Series {
                label: "J(s_k)".into(),
                points: history,
                colour: 0,
                markers: false,
                width: 2,
            }],
        },
    )?;
    let json = serde_json::json!({
        "objective": "J(s) = h^d * sum_k (u_k - u_target_k)^2 (+ alpha/2 * int |grad s|^2)",
        "runs": runs,
        "rod": { "x": xs, "s_true": rec.s_true, "s": rec.result.s, "u": rec.result.u, "u_target": rec.target },
    });
    write_atomic(
        &dir.join("inverse_design.json"),
        serde_json::to_string_pretty(&json)?.as_bytes(),
    )?;
    println!("wrote {}", dir.display());
    Ok(())
}
