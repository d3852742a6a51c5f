//! `neuralode latent`: latent ODEs on irregularly sampled series (Rubanova et al. 2019)
//! against an ODE-RNN alone and an RNN with the time gaps as input (RNN-Δt), the same
//! data and the same number of optimizer steps, on interpolation (encode the visible
//! points, predict held-out ones) and extrapolation (encode the first half of the time
//! range, predict the second).
//!
//! Data: the irregular noisy spirals of torchdiffeq's `latent_ode.py` (default),
//! Rubanova et al.'s periodic toy, spirals observed at a state-dependent rate (where the
//! Poisson-process likelihood of the times carries information: compare `latent` with
//! `latent-poisson`), or a CSV file of irregular series (`id,time,v_1,…`, empty cells
//! missing). Writes `metrics.json` (settings, per model and task the test MSE, the loss
//! curve, seconds per step, field evaluations), `loss.png/svg`, and for latent models
//! `posterior_<task>_<model>_s<j>.png/svg`: posterior trajectories of test series (mean and a
//! 5–95 % band of sampled trajectories) beside the data.

use std::path::PathBuf;
use std::time::Instant;

use autodiff::optim::Adam;
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use models::latent::baselines::{Baseline, BaselineKind};
use models::latent::data::{self, IrregularBatch, IrregularDataset, PeriodicConfig, SpiralConfig};
use models::latent::elbo::KlAnnealing;
use models::latent::{
    EncoderKind, FitConfig, LatentConfig, LatentOde, SeriesModel, evaluate, fit_with,
};
use serde::Serialize;
use serde_json::json;

use super::positive;
use crate::CliError;
use crate::output::write_json;
use crate::plot::{Figure, Series};

/// `--data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DataArg {
    /// Irregular noisy spirals, clockwise and counter-clockwise (torchdiffeq).
    Spirals,
    /// Spirals observed at a rate that depends on the state (dense where y > 0).
    StateSpirals,
    /// Rubanova et al.'s periodic toy.
    Periodic,
    /// A CSV file (`--csv`).
    Csv,
}

/// `--models`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelArg {
    /// Latent ODE (ODE-RNN encoder, Gaussian decoder).
    Latent,
    /// Latent ODE with the Poisson-process likelihood of the observation times.
    LatentPoisson,
    /// ODE-RNN alone.
    OdeRnn,
    /// GRU with the time gaps as input.
    RnnDt,
}

impl ModelArg {
    fn label(self) -> &'static str {
        match self {
            ModelArg::Latent => "latent ODE",
            ModelArg::LatentPoisson => "latent ODE + Poisson",
            ModelArg::OdeRnn => "ODE-RNN",
            ModelArg::RnnDt => "RNN-dt",
        }
    }
}

/// `--tasks`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TaskArg {
    /// Encode the visible points, predict held-out ones.
    Interp,
    /// Encode the first half of the time range, predict the second.
    Extrap,
}

/// `--encoder`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EncoderArg {
    /// ODE-RNN run backwards in time (Rubanova et al.).
    OdeRnn,
    /// tanh RNN over the observations (torchdiffeq's latent_ode.py).
    Rnn,
}

/// Options of `neuralode latent`.
#[derive(Debug, Clone, Args, Serialize)]
pub struct LatentArgs {
    /// Data set.
    #[arg(long, value_enum, default_value_t = DataArg::Spirals)]
    pub data: DataArg,
    /// The CSV file for `--data csv` (header `id,time,name_1,...`; empty cell = missing).
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// Models to train, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "latent,ode-rnn,rnn-dt"
    )]
    pub models: Vec<ModelArg>,
    /// Tasks, comma-separated (one training run per model and task).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "interp,extrap"
    )]
    pub tasks: Vec<TaskArg>,
    /// Number of generated series (spirals, periodic).
    #[arg(long, default_value_t = 400)]
    pub n_series: usize,
    /// Points per generated series before subsampling.
    #[arg(long, default_value_t = 100)]
    pub n_sample: usize,
    /// Probability of keeping each point of a generated series (1 = regular sampling).
    #[arg(long, default_value_t = 0.5)]
    pub keep: f64,
    /// `--data state-spirals`: intensity where y ≪ 0 (events per unit time).
    #[arg(long, default_value_t = 2.0)]
    pub rate_lo: f64,
    /// `--data state-spirals`: intensity where y ≫ 0 (at most 1 / grid step).
    #[arg(long, default_value_t = 20.0)]
    pub rate_hi: f64,
    /// Fraction of the series held out as the test set (the last ones).
    #[arg(long, default_value_t = 0.2)]
    pub test_frac: f64,
    /// Interpolation: fraction of each test series' points held out as targets.
    #[arg(long, default_value_t = 0.3)]
    pub holdout: f64,
    /// Optimizer steps per model and task.
    #[arg(long, default_value_t = 300)]
    pub steps: usize,
    /// Series per batch.
    #[arg(long, default_value_t = 50)]
    pub batch: usize,
    /// Adam's learning rate.
    #[arg(long, default_value_t = 1e-2)]
    pub lr: f64,
    /// Latent dimensions.
    #[arg(long, default_value_t = 4)]
    pub latent: usize,
    /// Hidden units of the latent field and decoder.
    #[arg(long, default_value_t = 20)]
    pub units: usize,
    /// Hidden state of the encoders and baselines.
    #[arg(long, default_value_t = 25)]
    pub rec_hidden: usize,
    /// The latent ODE's encoder.
    #[arg(long, value_enum, default_value_t = EncoderArg::OdeRnn)]
    pub encoder: EncoderArg,
    /// Largest RK4 step of the encoder's / ODE-RNN's ODE between observations.
    #[arg(long, default_value_t = 0.5)]
    pub enc_step: f64,
    /// Posterior draws per series (1: ELBO; more: IWAE bound).
    #[arg(long, default_value_t = 1)]
    pub iwae: usize,
    /// Steps of linear KL annealing from 0 to 1 (0: none).
    #[arg(long, default_value_t = 100)]
    pub kl_warmup: usize,
    /// Standard deviation of the Gaussian decoder (default: 0.3 for spirals, 0.1 otherwise).
    #[arg(long)]
    pub obs_std: Option<f64>,
    /// rtol of the latent solve (adaptive methods); atol = rtol / 10.
    #[arg(long, default_value_t = 1e-3)]
    pub tol: f64,
    /// Method of the latent solve. The solver restarts at every output time (the union of
    /// the batch's times), so a fixed-step method (rk4, heun, midpoint, euler) takes one
    /// step per interval between consecutive union times.
    #[arg(long, default_value = "dopri5", value_parser = super::method_parser())]
    #[serde(serialize_with = "super::serialize_method")]
    pub method: ode_solvers::Method,
    /// Solve the latent ODE at K + 1 evenly spaced knots and interpolate (cubic Hermite)
    /// at the union times, instead of restarting the solver at every union time.
    #[arg(long)]
    pub knots: Option<usize>,
    /// Clip gradients to this norm.
    #[arg(long, default_value_t = 100.0)]
    pub clip: f64,
    /// Test series shown in the posterior plots.
    #[arg(long, default_value_t = 3)]
    pub plot_series: usize,
    /// Seed of the data, initialisation, batches and draws.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output directory.
    #[arg(long, default_value = "out/latent")]
    pub out: PathBuf,
}

/// One model trained on one task.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// The model.
    pub model: ModelArg,
    /// The task.
    pub task: TaskArg,
    /// Test mean squared error on the task's targets.
    pub test_mse: f64,
    /// Number of parameters.
    pub n_params: usize,
    /// Mean wall time per optimizer step (s).
    pub seconds_per_step: f64,
    /// Training losses, one per step.
    pub losses: Vec<f64>,
}

/// What the job returns.
#[derive(Debug, Clone, Serialize)]
pub struct LatentReport {
    /// One row per model and task.
    pub rows: Vec<Row>,
    /// Where the outputs are.
    pub out: PathBuf,
}

fn check(a: &LatentArgs) -> Result<(), CliError> {
    positive("lr", a.lr)?;
    positive("tol", a.tol)?;
    positive("enc-step", a.enc_step)?;
    positive("clip", a.clip)?;
    if let Some(s) = a.obs_std {
        positive("obs-std", s)?;
    }
    let bad = |name, reason: &str| {
        Err(CliError::InvalidArgument {
            name,
            reason: reason.into(),
        })
    };
    if a.steps == 0
        || a.batch == 0
        || a.iwae == 0
        || a.latent == 0
        || a.units == 0
        || a.rec_hidden == 0
    {
        return bad("steps/batch/iwae/sizes", "must be > 0");
    }
    if !(a.test_frac > 0.0 && a.test_frac < 1.0 && a.holdout > 0.0 && a.holdout < 1.0) {
        return bad("test-frac/holdout", "must be in (0, 1)");
    }
    if a.models.is_empty() || a.tasks.is_empty() {
        return bad("models/tasks", "need at least one");
    }
    if a.data == DataArg::Csv && a.csv.is_none() {
        return bad("csv", "--data csv needs --csv FILE");
    }
    Ok(())
}

/// Loads the data: all series, and the clean values on each series' grid if known
/// (`(grid times, [n_grid, dim] values)` per series).
type Clean = Vec<(Vec<f64>, Vec<f64>)>;

fn load(a: &LatentArgs) -> Result<(IrregularDataset<f64>, Option<Clean>), CliError> {
    let spiral = SpiralConfig {
        n_spirals: a.n_series,
        n_sample: a.n_sample,
        n_total: (5 * a.n_sample).max(2 * a.n_sample + 1),
        keep: a.keep,
        ..SpiralConfig::default()
    };
    let dt = spiral.stop / (spiral.n_total - 1) as f64;
    let grid: Vec<f64> = (0..a.n_sample).map(|i| i as f64 * dt).collect();
    Ok(match a.data {
        DataArg::Spirals => {
            let (d, clean) = data::spirals::<f64>(&spiral, a.seed)?;
            let c = clean.into_iter().map(|v| (grid.clone(), v)).collect();
            (d, Some(c))
        }
        DataArg::StateSpirals => {
            let (d, _) =
                data::state_dependent_spirals::<f64>(&spiral, a.rate_lo, a.rate_hi, a.seed)?;
            (d, None)
        }
        DataArg::Periodic => {
            let cfg = PeriodicConfig {
                n_series: a.n_series,
                n_points: a.n_sample,
                keep: a.keep,
                ..PeriodicConfig::default()
            };
            let (d, g, clean) = data::periodic::<f64>(&cfg, a.seed)?;
            let c = clean.into_iter().map(|v| (g.clone(), v)).collect();
            (d, Some(c))
        }
        DataArg::Csv => {
            let path = a.csv.as_ref().ok_or_else(|| CliError::InvalidArgument {
                name: "csv",
                reason: "missing".into(),
            })?;
            (data::read_csv::<f64>(path)?, None)
        }
    })
}

enum Net {
    Latent(Box<LatentOde<f64>>),
    Base(Box<Baseline<f64>>),
}

impl Net {
    fn model(&mut self) -> &mut dyn SeriesModelF64 {
        match self {
            Net::Latent(m) => m.as_mut(),
            Net::Base(m) => m.as_mut(),
        }
    }
}

/// Object-safe view of the models (the trait's methods are generic over lifetimes only).
trait SeriesModelF64 {
    fn n_params(&self) -> usize;
}
impl SeriesModelF64 for LatentOde<f64> {
    fn n_params(&self) -> usize {
        self.params().n_params()
    }
}
impl SeriesModelF64 for Baseline<f64> {
    fn n_params(&self) -> usize {
        SeriesModel::params(self).n_params()
    }
}

/// Runs the job: trains every model on every task, prints the table, writes the JSON and
/// the plots.
pub fn run(a: &LatentArgs) -> Result<LatentReport, CliError> {
    check(a)?;
    std::fs::create_dir_all(&a.out).map_err(|source| CliError::Io {
        path: a.out.clone(),
        source,
    })?;
    let (all, clean) = load(a)?;
    let n_test = ((all.len() as f64 * a.test_frac).round() as usize)
        .clamp(1, all.len().saturating_sub(1).max(1));
    if all.len() < 2 {
        return Err(CliError::InvalidArgument {
            name: "data",
            reason: format!("need at least 2 series, got {}", all.len()),
        });
    }
    let n_train = all.len() - n_test;
    let (train, test) = all.split(n_train);
    let (t_lo, t_hi) = train
        .series()
        .iter()
        .chain(test.series())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), s| {
            (lo.min(s.times[0]), hi.max(s.times[s.times.len() - 1]))
        });
    let t_split = 0.5 * (t_lo + t_hi);
    let obs_std = a.obs_std.unwrap_or(
        if matches!(a.data, DataArg::Spirals | DataArg::StateSpirals) {
            0.3
        } else {
            0.1
        },
    );
    println!(
        "latent ODE experiment: {:?}, {n_train} training and {n_test} test series of dim {}, {} steps, batch {}, split at t = {t_split:.3}",
        a.data,
        train.dim(),
        a.steps,
        a.batch
    );
    let holdout = a.holdout;
    let seed = a.seed;
    let mut rows = Vec::new();
    let mut loss_fig = Figure::new("Training loss", "step", "loss per series");
    for &task in &a.tasks {
        for &which in &a.models {
            let mut net = build(a, which, train.dim(), obs_std)?;
            let prepare: Box<dyn Fn(IrregularBatch<f64>) -> IrregularBatch<f64>> = match task {
                TaskArg::Interp => Box::new(|b| b),
                TaskArg::Extrap => Box::new(move |b: IrregularBatch<f64>| b.extrapolation(t_split)),
            };
            let bar = ProgressBar::new(a.steps as u64);
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix:>22} [{elapsed_precise}] {bar:32} {pos}/{len} {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.set_prefix(format!("{} {:?}", which.label(), task));
            let mut opt = Adam::with_lr(a.lr)?;
            let fc = FitConfig {
                steps: a.steps,
                batch_size: a.batch,
                clip: Some(a.clip),
                seed: a.seed ^ 0xF17,
            };
            let start = Instant::now();
            let mut cb = |r: &models::latent::StepReport| {
                bar.inc(1);
                if r.step.is_multiple_of(10) {
                    bar.set_message(format!("loss {:.3}", r.loss));
                }
                true
            };
            let losses = match &mut net {
                Net::Latent(m) => fit_with(m.as_mut(), &train, &*prepare, &mut opt, &fc, &mut cb)?,
                Net::Base(m) => fit_with(m.as_mut(), &train, &*prepare, &mut opt, &fc, &mut cb)?,
            };
            let secs = start.elapsed().as_secs_f64() / losses.len().max(1) as f64;
            bar.finish_and_clear();
            let split = move |b: &IrregularBatch<f64>| match task {
                TaskArg::Interp => b.holdout(holdout, seed ^ 0x401D),
                TaskArg::Extrap => b.extrapolation(t_split),
            };
            let mse = match &mut net {
                Net::Latent(m) => evaluate(m.as_mut(), &test, a.batch, &split)?,
                Net::Base(m) => evaluate(m.as_mut(), &test, a.batch, &split)?,
            }
            .unwrap_or(f64::NAN);
            println!(
                "{:>22} {:>7}: test MSE {mse:.4}, {} params, {:.1} ms/step, final loss {:.3}",
                which.label(),
                format!("{task:?}"),
                net.model().n_params(),
                1e3 * secs,
                losses.last().copied().unwrap_or(f64::NAN)
            );
            loss_fig = loss_fig.with(Series::line(
                format!("{} ({task:?})", which.label()),
                losses
                    .iter()
                    .enumerate()
                    .map(|(i, &l)| (i as f64, l))
                    .collect(),
            ));
            if let Net::Latent(m) = &mut net {
                posterior_plot(
                    a,
                    m,
                    &test,
                    clean.as_ref().map(|c| &c[n_train..]),
                    task,
                    which,
                    &split,
                )?;
            }
            rows.push(Row {
                model: which,
                task,
                test_mse: mse,
                n_params: net.model().n_params(),
                seconds_per_step: secs,
                losses,
            });
        }
    }
    loss_fig.save(&a.out, "loss")?;
    let report = LatentReport {
        rows,
        out: a.out.clone(),
    };
    write_json(
        &a.out.join("metrics.json"),
        &json!({ "settings": a, "t_split": t_split, "obs_std": obs_std, "results": report.rows }),
    )?;
    println!("wrote {}", a.out.display());
    Ok(report)
}

fn build(a: &LatentArgs, which: ModelArg, dim: usize, obs_std: f64) -> Result<Net, CliError> {
    Ok(match which {
        ModelArg::Latent | ModelArg::LatentPoisson => {
            let cfg = LatentConfig {
                latent: a.latent,
                units: a.units,
                rec_hidden: a.rec_hidden,
                rec_units: a.rec_hidden,
                dec_units: a.units,
                encoder: match a.encoder {
                    EncoderArg::OdeRnn => EncoderKind::OdeRnn,
                    EncoderArg::Rnn => EncoderKind::Rnn,
                },
                enc_max_step: a.enc_step,
                obs_std,
                poisson: which == ModelArg::LatentPoisson,
                method: a.method,
                rtol: a.tol,
                atol: a.tol / 10.0,
                seed: a.seed,
                knots: a.knots,
                ..LatentConfig::new(dim)
            };
            let mut m = LatentOde::new(cfg)?;
            m.set_objective(
                a.iwae,
                KlAnnealing {
                    start: 0.0,
                    warmup: a.kl_warmup,
                },
            )?;
            Net::Latent(Box::new(m))
        }
        ModelArg::OdeRnn => Net::Base(Box::new(Baseline::new(
            BaselineKind::OdeRnn,
            dim,
            a.rec_hidden,
            a.rec_hidden,
            a.enc_step,
            obs_std,
            a.seed,
        )?)),
        ModelArg::RnnDt => Net::Base(Box::new(Baseline::new(
            BaselineKind::RnnDt,
            dim,
            a.rec_hidden,
            a.rec_hidden,
            a.enc_step,
            obs_std,
            a.seed,
        )?)),
    })
}

/// Posterior trajectories of the first test series: 5–95 % bands and mean of 40 draws on
/// a dense grid, the points the encoder saw, the targets, and the clean curve if known.
fn posterior_plot(
    a: &LatentArgs,
    m: &mut LatentOde<f64>,
    test: &IrregularDataset<f64>,
    clean: Option<&[(Vec<f64>, Vec<f64>)]>,
    task: TaskArg,
    which: ModelArg,
    split: &dyn Fn(&IrregularBatch<f64>) -> IrregularBatch<f64>,
) -> Result<(), CliError> {
    let k = a.plot_series.min(test.len());
    if k == 0 {
        return Ok(());
    }
    let idx: Vec<usize> = (0..k).collect();
    let batch = split(&test.batch(&idx)?);
    let (t0, t1) = (batch.times[0], batch.times[batch.n_times() - 1]);
    let n_grid = 120;
    let grid: Vec<f64> = (0..n_grid)
        .map(|i| t0 + (t1 - t0) * i as f64 / (n_grid - 1) as f64)
        .collect();
    let draws = 40;
    let samples = m.sample_trajectories(&batch, &grid, draws, a.seed ^ 0xB0B)?;
    let d = batch.dim;
    let model = format!("{which:?}").to_lowercase();
    let task_s = format!("{task:?}").to_lowercase();
    for j in 0..k {
        let mut fig = Figure::new(
            format!(
                "{} ({task_s}), test series {j}: mean and 5-95% band of {draws} posterior draws",
                which.label()
            ),
            "t",
            "value",
        );
        for c in 0..d.min(3) {
            let name = &test.names()[c];
            let (mut lo, mut hi, mut mean) = (Vec::new(), Vec::new(), Vec::new());
            for (i, &t) in grid.iter().enumerate() {
                let mut v: Vec<f64> = (0..draws)
                    .map(|s| samples[((s * n_grid + i) * k + j) * d + c])
                    .collect();
                v.sort_by(f64::total_cmp);
                let q = |p: f64| v[((p * (draws - 1) as f64).round() as usize).min(draws - 1)];
                lo.push((t, q(0.05)));
                hi.push((t, q(0.95)));
                mean.push((t, v.iter().sum::<f64>() / draws as f64));
            }
            fig = fig.with(Series::line(format!("{name} mean"), mean).width(2));
            fig = fig.with(Series::line(format!("{name} 5%"), lo).width(1));
            fig = fig.with(Series::line(format!("{name} 95%"), hi).width(1));
            let pts = |mask: &[f64]| -> Vec<(f64, f64)> {
                (0..batch.n_times())
                    .filter(|&i| mask[(i * k + j) * d + c] != 0.0)
                    .map(|i| (batch.times[i], batch.values[(i * k + j) * d + c]))
                    .collect()
            };
            fig = fig.with(Series::markers(
                format!("{name} seen by encoder"),
                pts(&batch.mask),
            ));
            fig = fig.with(Series::markers(
                format!("{name} targets"),
                pts(&batch.target),
            ));
            if let Some(cl) = clean.and_then(|cl| cl.get(j)) {
                let line =
                    cl.0.iter()
                        .enumerate()
                        .map(|(i, &t)| (t, cl.1[i * d + c]))
                        .collect();
                fig = fig.with(Series::line(format!("{name} clean"), line));
            }
        }
        fig.save(&a.out, &format!("posterior_{task_s}_{model}_s{j}"))?;
    }
    Ok(())
}
