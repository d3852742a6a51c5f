//! `neuralode sensitivity`: the cost of one gradient of an MLP Neural ODE in each
//! gradient mode as the parameter count `P` grows — adjoint against forward
//! sensitivities — with the log-log slopes and the crossover.

use std::path::PathBuf;

use adjoint::scaling::{MODE_LABELS, MlpFamily, ScalingConfig, ScalingTable, TimedMode, measure};
use clap::Args;
use serde_json::json;

use super::positive;
use crate::CliError;
use crate::output::write_json;
use crate::plot::{Figure, Series};

/// Options of `neuralode sensitivity`.
#[derive(Debug, Clone, Args, serde::Serialize)]
pub struct SensitivityArgs {
    /// Hidden widths W of the 2 → W → W → 2 tanh MLP (P = W² + 6W + 2), comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = MlpFamily::DEFAULT_WIDTHS.to_vec(), value_parser = crate::checks::count, allow_hyphen_values = true)]
    pub widths: Vec<usize>,
    /// Gradient modes to time, comma-separated: checkpointed, backsolve,
    /// backsolve-seminorm, direct, forward-jvp, forward-jacobian.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "checkpointed,backsolve,direct,forward-jvp,forward-jacobian"
    )]
    pub modes: Vec<String>,
    /// Trajectories in the batch.
    #[arg(long, default_value_t = 1, value_parser = crate::checks::count, allow_negative_numbers = true)]
    pub batch: usize,
    /// End time of the solve (t in [0, t1]).
    #[arg(long, default_value_t = 1.0, value_parser = crate::checks::positive_f64, allow_negative_numbers = true)]
    pub t1: f64,
    /// rtol = atol of the Dopri5 solves.
    #[arg(long, default_value_t = 1e-6, value_parser = crate::checks::positive_f64, allow_negative_numbers = true)]
    pub tol: f64,
    /// Timed repetitions per point (the best is kept).
    #[arg(long, default_value_t = 3, value_parser = crate::checks::count, allow_negative_numbers = true)]
    pub repeats: usize,
    /// A mode taking longer than this many seconds for one gradient is not run at larger widths.
    #[arg(long, default_value_t = 2.0, value_parser = crate::checks::positive_f64, allow_negative_numbers = true)]
    pub time_budget: f64,
    /// Output directory.
    #[arg(long, default_value = "out/sensitivity")]
    pub out: PathBuf,
}

fn config(a: &SensitivityArgs) -> Result<ScalingConfig<f64>, CliError> {
    let bad = |name, reason: String| CliError::InvalidArgument { name, reason };
    if a.widths.contains(&0) {
        return Err(bad("widths", "each width must be >= 1".into()));
    }
    let mut distinct = a.widths.clone();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() != a.widths.len() {
        return Err(bad(
            "widths",
            format!("give each width once, got {:?}", a.widths),
        ));
    }
    if distinct.len() < 2 {
        return Err(bad(
            "widths",
            format!(
                "give at least two widths (the slopes and crossovers are fitted across them), got {:?}",
                a.widths
            ),
        ));
    }
    // The largest model's forward Jacobian (P x states), its tapes and checkpoints.
    let bytes = distinct.iter().try_fold(0u128, |acc, &w| {
        let w = w as u128;
        let p = w.checked_mul(w)?.checked_add(6 * w + 2)?;
        let states = 2 * a.batch as u128;
        let per = p.checked_mul(states.checked_add(32)?)?.checked_mul(8)?;
        Some(acc.max(per))
    });
    crate::checks::check_memory(
        &format!(
            "sensitivity with --widths up to {}",
            distinct[distinct.len() - 1]
        ),
        bytes,
    )?;
    if a.batch == 0 || a.repeats == 0 {
        return Err(bad("batch/repeats", "must be at least 1".into()));
    }
    let modes = a
        .modes
        .iter()
        .map(|m| {
            TimedMode::named(m).ok_or_else(|| {
                bad(
                    "modes",
                    format!(
                        "unknown mode {m:?}; expected one of {}",
                        MODE_LABELS.join(", ")
                    ),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let t1 = positive("t1", a.t1)?;
    let tol = positive("tol", a.tol)?;
    Ok(ScalingConfig {
        sizes: a.widths.clone(),
        modes,
        rtol: tol,
        atol: tol,
        t1,
        repeats: a.repeats,
        time_budget: positive("time-budget", a.time_budget)?,
        ..MlpFamily::new(a.batch).config()
    })
}

/// Runs the job: prints the table, writes `sensitivity.{png,svg,json}`.
pub fn run(a: &SensitivityArgs) -> Result<ScalingTable, CliError> {
    let cfg = config(a)?;
    crate::checks::prepare_out_dir(&a.out)?;
    let family = MlpFamily::new(a.batch);
    let table = measure(&cfg, |w| family.instance(w))?;
    println!("{table}");
    let mut slopes = serde_json::Map::new();
    for (m, s) in table.slopes() {
        println!("log-log slope of time vs P, {m:<18}: {s:.2}");
        slopes.insert(m, json!(s));
    }
    let measured = |label: &str| cfg.modes.iter().any(|m| m.label == label);
    // Where forward sensitivities stop being the cheaper gradient, for each forward
    // variant measured: inside the measured range, else where the fitted power laws meet.
    let mut crossovers = serde_json::Map::new();
    for fwd in ["forward-jacobian", "forward-jvp"] {
        if !measured(fwd) || !measured("checkpointed") {
            continue;
        }
        let inside = table.crossover("checkpointed", fwd);
        let fitted = table.extrapolated_crossover("checkpointed", fwd);
        match (inside, fitted) {
            (Some(p), _) => println!(
                "crossover: {fwd} becomes slower than the checkpointed adjoint at P ≈ {p:.0}"
            ),
            (None, Some(p)) => println!(
                "no crossover between checkpointed and {fwd} in the measured range; the fitted power laws meet at P ≈ {p:.3e}"
            ),
            (None, None) => println!("no crossover between checkpointed and {fwd}"),
        }
        crossovers.insert(
            fwd.to_string(),
            json!({ "measured_P": inside, "extrapolated_P": fitted }),
        );
    }
    let mut fig = Figure::new(
        "One gradient of an MLP Neural ODE: time against parameters",
        "parameters P",
        "seconds per gradient",
    )
    .log_log();
    for m in &cfg.modes {
        let points = table.series(&m.label);
        if !points.is_empty() {
            fig = fig.with(Series::line_markers(&m.label, points));
        }
    }
    fig.save(&a.out, "sensitivity")?;
    write_json(
        &a.out.join("sensitivity.json"),
        &json!({
            "settings": a,
            "table": &table,
            "loglog_slopes": slopes,
            "crossover_with_checkpointed": crossovers,
        }),
    )?;
    println!("wrote {}", a.out.display());
    Ok(table)
}
