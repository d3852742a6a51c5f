//! The study over seeds: each model's mean ± sd per task, the paired differences
//! latent ODE + Poisson − latent ODE of the same seed, and the per-seed plot.

use serde::Serialize;

use super::{LatentArgs, ModelArg, Row, TaskArg, model_args};
use crate::CliError;
use crate::plot::{Figure, Series, save_panels};

/// Mean and sample standard deviation over the seeds of one model on one task.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// The model.
    pub model: ModelArg,
    /// The task.
    pub task: TaskArg,
    /// Number of seeds.
    pub n: usize,
    /// Test MSE: mean and standard deviation.
    pub test_mse: (f64, f64),
    /// Held-out log-likelihood of the times per series: mean and standard deviation.
    pub times_ll: (f64, f64),
    /// MSE against the clean trajectory per component: mean and standard deviation.
    pub clean_mse: Vec<(f64, f64)>,
    /// Seconds per step: mean.
    pub seconds_per_step: f64,
}

/// `--compare-poisson`: one metric's paired differences (latent ODE + Poisson minus latent
/// ODE, same seed: same data, initialisation and batches) over the seeds.
#[derive(Debug, Clone, Serialize)]
pub struct Paired {
    /// The task.
    pub task: TaskArg,
    /// The metric (`test_mse`, `clean_mse_<component>`, `times_ll`).
    pub metric: String,
    /// Mean and sample standard deviation of the differences.
    pub diff: (f64, f64),
    /// Number of seeds on which the Poisson model is better (lower MSE, higher
    /// log-likelihood).
    pub improved: usize,
    /// Number of seeds.
    pub n: usize,
    /// The differences, one per seed.
    pub per_seed: Vec<f64>,
}

/// Mean and sample standard deviation (0 for one value).
fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (m, var.sqrt())
}

pub(super) fn summarise(a: &LatentArgs, rows: &[Row]) -> Vec<Summary> {
    let mut out = Vec::new();
    for &task in &a.tasks {
        for model in model_args(a) {
            let sel: Vec<&Row> = rows
                .iter()
                .filter(|r| r.task == task && r.model == model)
                .collect();
            if sel.is_empty() {
                continue;
            }
            let f = |g: &dyn Fn(&Row) -> f64| sel.iter().map(|r| g(r)).collect::<Vec<_>>();
            out.push(Summary {
                model,
                task,
                n: sel.len(),
                test_mse: mean_sd(&f(&|r| r.test_mse)),
                times_ll: mean_sd(&f(&|r| r.times_ll)),
                clean_mse: (0..sel[0].clean_mse.len())
                    .map(|c| mean_sd(&f(&|r| r.clean_mse.get(c).copied().unwrap_or(f64::NAN))))
                    .collect(),
                seconds_per_step: mean_sd(&f(&|r| r.seconds_per_step)).0,
            });
        }
    }
    out
}

/// A row's metric.
type Metric = Box<dyn Fn(&Row) -> f64>;

/// With both latent models in the run (e.g. `--compare-poisson`): per task and metric,
/// the differences Poisson − plain of the same seed, their mean ± sd and on how many seeds
/// the Poisson model is better. `names` are the data's component names.
pub(super) fn paired_differences(a: &LatentArgs, rows: &[Row], names: &[String]) -> Vec<Paired> {
    let models = model_args(a);
    if !(models.contains(&ModelArg::Latent) && models.contains(&ModelArg::LatentPoisson)) {
        return Vec::new();
    }
    let mut out = Vec::new();
    for &task in &a.tasks {
        let pairs: Vec<(&Row, &Row)> = rows
            .iter()
            .filter(|r| r.task == task && r.model == ModelArg::Latent)
            .filter_map(|p| {
                rows.iter()
                    .find(|q| {
                        q.task == task && q.model == ModelArg::LatentPoisson && q.seed == p.seed
                    })
                    .map(|q| (p, q))
            })
            .collect();
        if pairs.is_empty() {
            continue;
        }
        // (metric, value, whether higher is better)
        let mut metrics: Vec<(String, Metric, bool)> =
            vec![("test_mse".into(), Box::new(|r: &Row| r.test_mse), false)];
        for (c, name) in names.iter().enumerate() {
            if pairs
                .iter()
                .all(|(p, q)| p.clean_mse.len() > c && q.clean_mse.len() > c)
            {
                metrics.push((
                    format!("clean_mse_{name}"),
                    Box::new(move |r: &Row| r.clean_mse[c]),
                    false,
                ));
            }
        }
        metrics.push(("times_ll".into(), Box::new(|r: &Row| r.times_ll), true));
        for (metric, get, higher) in metrics {
            let d: Vec<f64> = pairs.iter().map(|(p, q)| get(q) - get(p)).collect();
            let improved = d
                .iter()
                .filter(|&&x| if higher { x > 0.0 } else { x < 0.0 })
                .count();
            out.push(Paired {
                task,
                metric,
                diff: mean_sd(&d),
                improved,
                n: d.len(),
                per_seed: d,
            });
        }
    }
    out
}

/// Per seed and task, each model's test MSE and held-out log-likelihood of the times
/// against the seed (`study.png/svg`).
pub(super) fn study_plot(a: &LatentArgs, rows: &[Row]) -> Result<(), CliError> {
    let mut panels = Vec::new();
    for &task in &a.tasks {
        for (metric, get) in [
            ("test MSE", (|r: &Row| r.test_mse) as fn(&Row) -> f64),
            ("held-out log-lik of the times per series", |r: &Row| {
                r.times_ll
            }),
        ] {
            let mut fig = Figure::new(format!("{metric} ({task:?})"), "seed", metric);
            for model in model_args(a) {
                let pts: Vec<(f64, f64)> = rows
                    .iter()
                    .filter(|r| r.task == task && r.model == model && get(r).is_finite())
                    .map(|r| (r.seed as f64, get(r)))
                    .collect();
                fig = fig.with(Series::line_markers(model.label(), pts));
            }
            panels.push(fig);
        }
    }
    save_panels(&panels, &a.out, "study")?;
    Ok(())
}
