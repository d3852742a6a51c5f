//! `neuralode rod`: the heated rod (and plate) of `pde-adjoint` — inverse design of a
//! heater by L-BFGS on the adjoint gradient (`rod design`), and the cost of the
//! gradient by the adjoint, forward sensitivities and finite differences against the
//! forward solve as the grid grows (`rod scaling`).

use std::path::PathBuf;
use std::time::Instant;

use clap::{Args, Subcommand};
use pde_adjoint::{
    DesignOptions, Grid, Lbfgs, Plate, Recovery, Rod, ScalingOptions, ScalingRow, ScalingTable,
    measure_scaling, recover_heater,
};
use serde_json::{Value, json};

use super::positive;
use crate::CliError;
use crate::output::write_json;
use crate::plot::{Figure, Series};

/// What `neuralode rod` does.
#[derive(Debug, Clone, Subcommand)]
pub enum RodCommand {
    /// Recover a known heater s* from the temperature it makes (rod, then plate).
    Design(DesignArgs),
    /// Time J + gradient by the adjoint, forward sensitivities and finite differences
    /// against the forward solve, rod n = 10² … 10⁶ and plate up to 10⁶ unknowns.
    Scaling(ScalingArgs),
}

/// Options of `neuralode rod design`.
#[derive(Debug, Clone, Args, serde::Serialize)]
pub struct DesignArgs {
    /// Interior nodes of the rod.
    #[arg(long, default_value_t = 1000, value_parser = crate::checks::count, allow_negative_numbers = true)]
    pub n: usize,
    /// Tikhonov smoothing weight α ≥ 0 on the rod (R(s) = α/2 ∫ |s'|²).
    #[arg(long, default_value_t = 0.0, value_parser = crate::checks::nonnegative_f64, allow_negative_numbers = true)]
    pub alpha: f64,
    /// Maximum L-BFGS iterations.
    #[arg(long, default_value_t = 1000, value_parser = crate::checks::count, allow_negative_numbers = true)]
    pub iters: usize,
    /// Side m of the plate run (m² unknowns); 0 skips the plate.
    #[arg(long, default_value_t = 100, value_parser = crate::checks::whole_usize, allow_negative_numbers = true)]
    pub plate: usize,
    /// Smoothing weight on the plate.
    #[arg(long, default_value_t = 1e-8, value_parser = crate::checks::nonnegative_f64, allow_negative_numbers = true)]
    pub plate_alpha: f64,
    /// Output directory.
    #[arg(long, default_value = "out/rod")]
    pub out: PathBuf,
}

/// Options of `neuralode rod scaling`.
#[derive(Debug, Clone, Args, serde::Serialize)]
pub struct ScalingArgs {
    /// Largest number of unknowns (rod n and plate m²), at most 10⁷.
    #[arg(long, default_value_t = 1_000_000, value_parser = crate::checks::count, allow_negative_numbers = true)]
    pub max_n: usize,
    /// Repeats per measurement (the minimum is kept).
    #[arg(long, default_value_t = 3, value_parser = crate::checks::count, allow_negative_numbers = true)]
    pub repeats: usize,
    /// Run the O(n²) gradients only while their predicted time stays under this many seconds.
    #[arg(long, default_value_t = 20.0, value_parser = crate::checks::positive_f64, allow_negative_numbers = true)]
    pub quadratic_budget: f64,
    /// Output directory.
    #[arg(long, default_value = "out/rod")]
    pub out: PathBuf,
}

/// Runs `neuralode rod ...`.
pub fn run(command: &RodCommand) -> Result<(), CliError> {
    match command {
        RodCommand::Design(a) => design(a),
        RodCommand::Scaling(a) => scaling(a),
    }
}

/// The known heater: a broad bump plus one harmonic's positive half.
fn heater(x: f64) -> f64 {
    let pi = std::f64::consts::PI;
    20.0 * (-((x - 0.35) / 0.12).powi(2)).exp() + 6.0 * (2.0 * pi * x).sin().max(0.0)
}

fn options(alpha: f64, iters: usize) -> DesignOptions<f64> {
    DesignOptions {
        alpha,
        lbfgs: Lbfgs {
            max_iters: iters,
            grad_tol: 1e-10,
            value_tol: 0.0,
            ..Lbfgs::default()
        },
    }
}

fn summary<G: Grid>(name: &str, grid: &G, alpha: f64, rec: &Recovery<f64>, secs: f64) -> Value {
    let r = &rec.result;
    let j0 = r.report.history.first().copied().unwrap_or(f64::NAN);
    println!(
        "{name:<6} {:>9} {alpha:>9.1e} {:>10} {:>7} {:>17} {:>10.3e} {:>10.3e} {:>14.3e} {secs:>9.2}",
        grid.n_unknowns(),
        r.report.iterations,
        r.n_solves,
        format!("{:?}", r.report.stop),
        j0,
        r.misfit,
        rec.relative_error,
    );
    json!({
        "grid": name, "unknowns": grid.n_unknowns(), "h": grid.spacing(), "alpha": alpha,
        "iterations": r.report.iterations, "evaluations": r.report.evaluations,
        "solves": r.n_solves, "stop": format!("{:?}", r.report.stop),
        "initial_objective": j0, "final_misfit": r.misfit,
        "final_regularisation": r.regularisation,
        "relative_error_to_s_true": rec.relative_error, "seconds": secs,
    })
}

fn design(a: &DesignArgs) -> Result<(), CliError> {
    if !(a.alpha.is_finite() && a.alpha >= 0.0 && a.plate_alpha.is_finite() && a.plate_alpha >= 0.0)
    {
        return Err(CliError::InvalidArgument {
            name: "alpha",
            reason: "smoothing weights must be finite and >= 0".into(),
        });
    }
    // Measured: about 680 bytes per rod node (n = 10^6: 0.68 GB, 3 x 10^6: 2.0 GB, mostly
    // the JSON and plot of the solution); the plate's 2-D factor fills in more.
    let bytes = (a.n as u128).checked_mul(700).and_then(|r| {
        Some(
            r.max(
                (a.plate as u128)
                    .checked_mul(a.plate as u128)?
                    .checked_mul(2000)?,
            ),
        )
    });
    crate::checks::check_memory(
        &format!("rod design with --n {} --plate {}", a.n, a.plate),
        bytes,
    )?;
    crate::checks::prepare_out_dir(&a.out)?;
    let rod = Rod::new(a.n)?;
    let s_true = rod.sample(&|p| heater(p[0]));
    let start = Instant::now();
    let rec = recover_heater(&rod, &s_true, &options(a.alpha, a.iters))?;
    println!(
        "{:<6} {:>9} {:>9} {:>10} {:>7} {:>17} {:>10} {:>10} {:>14} {:>9}",
        "grid",
        "unknowns",
        "alpha",
        "iterations",
        "solves",
        "stop",
        "J start",
        "misfit",
        "‖s−s*‖/‖s*‖",
        "seconds"
    );
    let mut runs = vec![summary(
        "rod",
        &rod,
        a.alpha,
        &rec,
        start.elapsed().as_secs_f64(),
    )];
    let mut plate_plot = None;
    if a.plate > 0 {
        let plate = Plate::new(a.plate)?;
        let pi = std::f64::consts::PI;
        let s_plate = plate.sample(&|p| heater(p[0]) * (pi * p[1]).sin());
        let start = Instant::now();
        let rec_p = recover_heater(&plate, &s_plate, &options(a.plate_alpha, a.iters))?;
        runs.push(summary(
            "plate",
            &plate,
            a.plate_alpha,
            &rec_p,
            start.elapsed().as_secs_f64(),
        ));
        // The middle row of the plate (y nearest 1/2): true and recovered heater, and
        // the temperature, against x.
        let row: Vec<usize> = {
            let ys: Vec<f64> = (0..plate.n_unknowns()).map(|k| plate.point(k)[1]).collect();
            let mid = ys
                .iter()
                .copied()
                .min_by(|p, q| (p - 0.5).abs().total_cmp(&(q - 0.5).abs()))
                .unwrap_or(0.5);
            (0..ys.len()).filter(|&k| ys[k] == mid).collect()
        };
        let line = |v: &[f64], scale: f64| -> Vec<(f64, f64)> {
            row.iter()
                .map(|&k| (plate.point(k)[0], v[k] * scale))
                .collect()
        };
        let y_mid = row.first().map_or(0.5, |&k| plate.point(k)[1]);
        plate_plot = Some(
            Figure::new(
                format!(
                    "Heated plate, {0} x {0}: recovered heater on the row y = {y_mid:.3} (alpha = {1:e})",
                    a.plate, a.plate_alpha
                ),
                "x",
                "s(x, y);  50 u(x, y)",
            )
            .with(Series::line("s* (true heater)", line(&rec_p.s_true, 1.0)).width(7))
            .with(Series::line("s (recovered)", line(&rec_p.result.s, 1.0)))
            .with(Series::line("50 u_target", line(&rec_p.target, 50.0)).width(7))
            .with(Series::line("50 u (recovered)", line(&rec_p.result.u, 50.0))),
        );
    }
    if let Some(fig) = plate_plot {
        fig.save(&a.out, "plate_design")?;
    }

    let xs: Vec<f64> = (0..a.n).map(|k| rod.point(k)[0]).collect();
    let zip = |v: &[f64], scale: f64| -> Vec<(f64, f64)> {
        xs.iter().zip(v).map(|(x, y)| (*x, y * scale)).collect()
    };
    // u is about s/π²: scale it to share the axis, and say so in the labels.
    let scale = 50.0;
    Figure::new(
        format!(
            "Heated rod, n = {}: recovered heater (alpha = {})",
            a.n, a.alpha
        ),
        "x",
        format!("s(x);  {scale} u(x)"),
    )
    .with(Series::line("s* (true heater)", zip(&rec.s_true, 1.0)).width(7))
    .with(Series::line("s (recovered)", zip(&rec.result.s, 1.0)))
    .with(Series::line(format!("{scale} u_target"), zip(&rec.target, scale)).width(7))
    .with(Series::line(
        format!("{scale} u (recovered)"),
        zip(&rec.result.u, scale),
    ))
    .save(&a.out, "rod_design")?;
    let history: Vec<(f64, f64)> = rec
        .result
        .report
        .history
        .iter()
        .enumerate()
        .map(|(i, j)| ((i + 1) as f64, *j))
        .collect();
    Figure::new(
        "L-BFGS on the adjoint gradient (rod): J per iteration",
        "iteration + 1",
        "J",
    )
    .log_log()
    .with(Series::line("J(s_k)", history))
    .save(&a.out, "rod_design_history")?;
    write_json(
        &a.out.join("rod_design.json"),
        &json!({
            "settings": a,
            "objective": "J(s) = h^d sum_k (u_k - u_target_k)^2 (+ alpha/2 int |grad s|^2)",
            "runs": runs,
            "rod": { "x": xs, "s_true": rec.s_true, "s": rec.result.s,
                     "u": rec.result.u, "u_target": rec.target },
        }),
    )?;
    println!("wrote {}", a.out.display());
    Ok(())
}

fn scaling_figure(table: &ScalingTable, title: &str) -> Figure {
    let col = |f: &dyn Fn(&ScalingRow) -> Option<f64>| -> Vec<(f64, f64)> {
        table
            .rows
            .iter()
            .filter_map(|r| f(r).map(|t| (r.n as f64, t)))
            .collect()
    };
    let mut fig = Figure::new(title, "unknowns n", "seconds").log_log();
    // The times rise to the right: the upper left corner is empty.
    fig.legend = crate::plot::Legend::UpperLeft;
    fig.with(Series::line_markers(
        "forward solve (factorisation included)",
        col(&|r| Some(r.forward)),
    ))
    .with(Series::line_markers(
        "J + gradient, adjoint",
        col(&|r| Some(r.adjoint)),
    ))
    .with(Series::line(
        "forward solve, factor kept",
        col(&|r| Some(r.forward_reused)),
    ))
    .with(Series::line(
        "J + gradient, adjoint, factor kept",
        col(&|r| Some(r.adjoint_reused)),
    ))
    .with(Series::line_markers(
        "J + gradient, forward sensitivities",
        col(&|r| r.forward_sensitivities),
    ))
    .with(Series::line_markers(
        "J + gradient, central differences",
        col(&|r| r.finite_differences),
    ))
}

fn table_json(table: &ScalingTable) -> Value {
    let rows: Vec<Value> = table
        .rows
        .iter()
        .map(|r| {
            json!({
                "n": r.n, "forward_s": r.forward, "adjoint_s": r.adjoint,
                "adjoint_over_forward": r.adjoint_ratio(),
                "forward_factor_kept_s": r.forward_reused,
                "adjoint_factor_kept_s": r.adjoint_reused,
                "forward_sensitivities_s": r.forward_sensitivities,
                "finite_differences_s": r.finite_differences,
            })
        })
        .collect();
    json!({
        "rows": rows,
        "worst_adjoint_over_forward": table.rows.iter().map(ScalingRow::adjoint_ratio).fold(0.0, f64::max),
        "adjoint_loglog_slope_n_ge_1e4": table.slope(10_000, |r| r.adjoint),
        "adjoint_factor_kept_loglog_slope_n_ge_1e4": table.slope(10_000, |r| r.adjoint_reused),
    })
}

fn print_table(name: &str, table: &ScalingTable) {
    let slope = |f: fn(&ScalingRow) -> f64| {
        table
            .slope(10_000, f)
            .map_or("-".into(), |s| format!("{s:.2}"))
    };
    let worst = table
        .rows
        .iter()
        .map(ScalingRow::adjoint_ratio)
        .fold(0.0, f64::max);
    println!("{name}\n{}", table.to_text());
    println!(
        "worst adjoint/forward {worst:.2} (goal <= 1.5); log-log slope for n >= 1e4: adjoint {}, adjoint with the factor kept {}\n",
        slope(|r| r.adjoint),
        slope(|r| r.adjoint_reused)
    );
}

fn scaling(a: &ScalingArgs) -> Result<(), CliError> {
    if !(100..=10_000_000).contains(&a.max_n) {
        return Err(CliError::InvalidArgument {
            name: "max-n",
            reason: format!("must be between 100 and 10^7, got {}", a.max_n),
        });
    }
    if a.repeats == 0 {
        return Err(CliError::InvalidArgument {
            name: "repeats",
            reason: "must be at least 1".into(),
        });
    }
    crate::checks::prepare_out_dir(&a.out)?;
    let options = ScalingOptions {
        repeats: a.repeats,
        quadratic_budget: positive("quadratic-budget", a.quadratic_budget)?,
    };
    // Sizes 1, 3, 10, 30, ... times 100 up to max_n.
    let mut sizes = Vec::new();
    let mut n = 100usize;
    while n <= a.max_n {
        sizes.push(n);
        if 3 * n <= a.max_n {
            sizes.push(3 * n);
        }
        n *= 10;
    }
    let rods: Vec<Rod> = sizes
        .iter()
        .map(|&n| Rod::new(n))
        .collect::<Result<_, _>>()?;
    let rod_table = measure_scaling::<_, f64>(&rods, &options)?;
    print_table("heated rod (1-D), f64", &rod_table);
    let plates: Vec<Plate> = [10usize, 32, 100, 316, 1000, 3162]
        .into_iter()
        .filter(|m| m * m <= a.max_n)
        .map(Plate::new)
        .collect::<Result<_, _>>()?;
    let plate_table = measure_scaling::<_, f64>(&plates, &options)?;
    print_table("heated plate (2-D, m x m), f64", &plate_table);
    scaling_figure(&rod_table, "Heated rod: J + gradient").save(&a.out, "rod_scaling")?;
    scaling_figure(&plate_table, "Heated plate: J + gradient").save(&a.out, "plate_scaling")?;
    write_json(
        &a.out.join("rod_scaling.json"),
        &json!({ "settings": a, "rod": table_json(&rod_table), "plate": table_json(&plate_table) }),
    )?;
    println!("wrote {}", a.out.display());
    Ok(())
}
