//! `neuralode sensitivity`: the cost of one gradient of an MLP Neural ODE in each
//! gradient mode as the parameter count `P` grows — adjoint against forward
//! sensitivities — with the log-log slopes and the crossover.

use std::path::PathBuf;

use adjoint::scaling::{ScalingConfig, ScalingTable, measure};
use clap::Args;
use serde_json::json;

use super::positive;
use crate::ModelsError;
use crate::output::write_json;
use crate::plot::{Figure, Series};

/// The modes `adjoint::scaling` knows, in plotting order.
const MODES: [&str; 6] = [
    "checkpointed",
    "backsolve",
    "backsolve-seminorm",
    "direct",
    "forward-jvp",
    "forward-jacobian",
];

/// Options of `neuralode sensitivity`.
#[derive(Debug, Clone, Args, serde::Serialize)]
pub struct SensitivityArgs {
    /// Hidden widths W of the 2 → W → W → 2 tanh MLP (P = W² + 6W + 2), comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = ScalingConfig::default().widths)]
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
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// End time of the solve (t in [0, t1]).
    #[arg(long, default_value_t = 1.0)]
    pub t1: f64,
    /// rtol = atol of the Dopri5 solves.
    #[arg(long, default_value_t = 1e-6)]
    pub tol: f64,
    /// Timed repetitions per point (the best is kept).
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// A mode taking longer than this many seconds for one gradient is not run at larger widths.
    #[arg(long, default_value_t = 2.0)]
    pub time_budget: f64,
    /// Output directory.
    #[arg(long, default_value = "out/sensitivity")]
    pub out: PathBuf,
}

fn config(a: &SensitivityArgs) -> Result<ScalingConfig, ModelsError> {
    let bad = |name, reason: String| ModelsError::InvalidArgument { name, reason };
    if a.widths.is_empty() || a.widths.contains(&0) {
        return Err(bad("widths", "give at least one width, each >= 1".into()));
    }
    if a.batch == 0 || a.repeats == 0 {
        return Err(bad("batch/repeats", "must be at least 1".into()));
    }
    let modes = a
        .modes
        .iter()
        .map(|m| {
            MODES.iter().copied().find(|k| k == m).ok_or_else(|| {
                bad(
                    "modes",
                    format!("unknown mode {m:?}; expected one of {}", MODES.join(", ")),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ScalingConfig {
        widths: a.widths.clone(),
        batch: a.batch,
        t1: positive("t1", a.t1)?,
        tol: positive("tol", a.tol)?,
        repeats: a.repeats,
        time_budget: positive("time-budget", a.time_budget)?,
        modes,
    })
}

/// Runs the job: prints the table, writes `sensitivity.{png,svg,json}`.
pub fn run(a: &SensitivityArgs) -> Result<ScalingTable, ModelsError> {
    let cfg = config(a)?;
    let table = measure(&cfg)?;
    println!("{table}");
    let mut slopes = serde_json::Map::new();
    for m in &cfg.modes {
        if let Some(s) = table.slope(m) {
            println!("log-log slope of time vs P, {m:<18}: {s:.2}");
            slopes.insert((*m).to_string(), json!(s));
        }
    }
    // Where forward sensitivities stop being the cheaper gradient, for each forward
    // variant measured: inside the measured range, else where the fitted power laws meet.
    let mut crossovers = serde_json::Map::new();
    for fwd in ["forward-jacobian", "forward-jvp"] {
        if !cfg.modes.contains(&fwd) || !cfg.modes.contains(&"checkpointed") {
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
        let points = table.series(m);
        if !points.is_empty() {
            fig = fig.with(Series::line_markers(*m, points));
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
