//! `neuralode latent`: latent ODEs on irregularly sampled series (Rubanova et al. 2019)
//! against an ODE-RNN alone and an RNN with the time gaps as input (RNN-Δt), the same
//! data and the same number of optimizer steps, on interpolation (encode the visible
//! points, predict held-out ones) and extrapolation (encode the first half of the time
//! range, predict the second).
//!
//! Data: the irregular noisy spirals of torchdiffeq's `latent_ode.py` (default),
//! Rubanova et al.'s periodic toy, spirals observed at a state-dependent rate (where the
//! Poisson-process likelihood of the times carries information: compare `latent` with
//! `latent-poisson`), the same with the rate-driving component `y` observed only at a
//! fraction `--hidden-keep` of the times (`hidden-rate-spirals`: the times then say what
//! the values do not), or a CSV file of irregular series (`id,time,v_1,…`, empty cells
//! missing). Writes `metrics.json` (settings, per model and task the test MSE, the MSE
//! against the clean trajectory per component where the data set knows it, the loss
//! curve, seconds per step, and with `--compare-poisson` the paired differences per
//! seed), `loss.png/svg`, and for latent models
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
use models::latent::{poisson, scores};
use serde::Serialize;
use serde_json::json;

use super::odenet::StepArg;
use super::positive;
use crate::CliError;
use crate::output::write_json;
use crate::plot::{Figure, Series};

mod posterior;
mod study;

use posterior::posterior_plot;
pub use study::{Paired, Summary};
use study::{paired_differences, study_plot, summarise};

/// `--data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DataArg {
    /// Irregular noisy spirals, clockwise and counter-clockwise (torchdiffeq).
    Spirals,
    /// Spirals observed at a rate that depends on the state (dense where y > 0).
    StateSpirals,
    /// As state-spirals, but y (which drives the rate) is observed only at a fraction
    /// `--hidden-keep` of the times: the times carry information the values do not.
    HiddenRateSpirals,
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
    /// Data set (default: spirals; state-spirals with `--compare-poisson`).
    #[arg(long, value_enum)]
    pub data: Option<DataArg>,
    /// The CSV file for `--data csv` (header `id,time,name_1,...`; empty cell = missing).
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// Models to train, comma-separated (`--compare-poisson` sets latent,latent-poisson).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "latent,ode-rnn,rnn-dt"
    )]
    pub models: Vec<ModelArg>,
    /// Repeat the whole experiment (data, initialisation, batches, draws) for this many
    /// seeds, `--seed`, `--seed + 1`, …; the table and `study.png/svg` give mean ± sd.
    #[arg(long, default_value_t = 1)]
    pub seeds: usize,
    /// The Poisson-process study: latent ODE with and without the likelihood of the
    /// observation times (models latent,latent-poisson; data state-spirals unless `--data`
    /// says otherwise), scored by test MSE and the held-out log-likelihood of the times.
    #[arg(long)]
    pub compare_poisson: bool,
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
    /// Standard deviation of the observation noise of generated spirals.
    #[arg(long, default_value_t = 0.3)]
    pub noise: f64,
    /// `--data hidden-rate-spirals`: probability that y is observed at an observation
    /// time (x always is), in [0, 1]; 0 = never (default 0.1).
    #[arg(long)]
    pub hidden_keep: Option<f64>,
    /// `--data state-spirals`: intensity where y ≪ 0 (events per unit time).
    #[arg(long, default_value_t = 1.0)]
    pub rate_lo: f64,
    /// `--data state-spirals`: intensity where y ≫ 0 (at most 1 / grid step; the grid
    /// draws an event with probability λ·step, close to a Poisson process while that is
    /// small: 0.38 at the default 10 with 100 points).
    #[arg(long, default_value_t = 10.0)]
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
    /// Method of the latent solve. Adaptive methods step freely and give the batch's union
    /// of times from their dense output; a fixed-step method (rk4, heun, midpoint, euler)
    /// steps onto the union times, one step per interval between consecutive ones.
    #[arg(long, default_value = "dopri5", value_parser = super::method_parser())]
    #[serde(serialize_with = "super::serialize_method")]
    pub method: ode_solvers::Method,
    /// Step control of the latent solve (adaptive methods): `peers` (torchdiffeq's and
    /// diffrax's I controller and first step, as in torchdiffeq's `latent_ode.py`) or
    /// `hairer` (Hairer's PI controller).
    #[arg(long, value_enum, default_value_t = StepArg::Peers)]
    pub step_control: StepArg,
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
    /// The seed of the data, initialisation, batches and draws.
    pub seed: u64,
    /// The model.
    pub model: ModelArg,
    /// The task.
    pub task: TaskArg,
    /// Test mean squared error on the task's targets.
    pub test_mse: f64,
    /// Held-out log-likelihood of the observation times per test series (the targets'
    /// times: interpolation, the held-out points' times, a `holdout`-thinned process over
    /// the whole window; extrapolation, the times after the split, over the second half)
    /// under the model's model of the times: the Poisson intensity for `latent-poisson`,
    /// for the others a constant rate per component fitted on the training times.
    pub times_ll: f64,
    /// The same under the constant-rate process (equal to `times_ll` for models without
    /// a Poisson process).
    pub times_ll_const: f64,
    /// Per component, the MSE of the posterior-mean prediction against the clean
    /// (noise-free) trajectory at the grid points the encoder does not see (interpolation:
    /// the whole window; extrapolation: from the split on); empty if the data set has no
    /// clean trajectory (CSV).
    pub clean_mse: Vec<f64>,
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
    /// One row per seed, model and task.
    pub rows: Vec<Row>,
    /// One entry per model and task, over the seeds.
    pub summary: Vec<Summary>,
    /// Paired differences (Poisson − plain) per task and metric when both latent models
    /// ran.
    pub paired: Vec<Paired>,
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
        || a.seeds == 0
        || a.batch == 0
        || a.iwae == 0
        || a.latent == 0
        || a.units == 0
        || a.rec_hidden == 0
    {
        return bad("steps/seeds/batch/iwae/sizes", "must be > 0");
    }
    if !(a.test_frac > 0.0 && a.test_frac < 1.0 && a.holdout > 0.0 && a.holdout < 1.0) {
        return bad("test-frac/holdout", "must be in (0, 1)");
    }
    if a.models.is_empty() || a.tasks.is_empty() {
        return bad("models/tasks", "need at least one");
    }
    if !(a.noise.is_finite() && a.noise >= 0.0) {
        return bad("noise", "must be finite and >= 0");
    }
    if data_arg(a) == DataArg::Csv && a.csv.is_none() {
        return bad("csv", "--data csv needs --csv FILE");
    }
    if let Some(k) = a.hidden_keep {
        if data_arg(a) != DataArg::HiddenRateSpirals {
            return bad("hidden-keep", "only applies to --data hidden-rate-spirals");
        }
        if !(0.0..=1.0).contains(&k) {
            return bad("hidden-keep", "must be in [0, 1]");
        }
    }
    Ok(())
}

/// Loads the data: all series, and the clean values on each series' grid if known
/// (`(grid times, [n_grid, dim] values)` per series).
type Clean = Vec<(Vec<f64>, Vec<f64>)>;

/// The data set: `--data`, or its default for the job.
fn data_arg(a: &LatentArgs) -> DataArg {
    a.data.unwrap_or(if a.compare_poisson {
        DataArg::StateSpirals
    } else {
        DataArg::Spirals
    })
}

/// The models: `--models`, or latent,latent-poisson for `--compare-poisson`.
fn model_args(a: &LatentArgs) -> Vec<ModelArg> {
    if a.compare_poisson {
        vec![ModelArg::Latent, ModelArg::LatentPoisson]
    } else {
        a.models.clone()
    }
}

fn load(a: &LatentArgs, seed: u64) -> Result<(IrregularDataset<f64>, Option<Clean>), CliError> {
    let spiral = SpiralConfig {
        n_spirals: a.n_series,
        n_sample: a.n_sample,
        n_total: (5 * a.n_sample).max(2 * a.n_sample + 1),
        keep: a.keep,
        noise_std: a.noise,
        ..SpiralConfig::default()
    };
    let dt = spiral.stop / (spiral.n_total - 1) as f64;
    let grid: Vec<f64> = (0..a.n_sample).map(|i| i as f64 * dt).collect();
    Ok(match data_arg(a) {
        DataArg::Spirals => {
            let (d, clean) = data::spirals::<f64>(&spiral, seed)?;
            let c = clean.into_iter().map(|v| (grid.clone(), v)).collect();
            (d, Some(c))
        }
        DataArg::StateSpirals | DataArg::HiddenRateSpirals => {
            let keep = match data_arg(a) {
                DataArg::HiddenRateSpirals => a.hidden_keep.unwrap_or(0.1),
                _ => 1.0,
            };
            // With keep = 1 the same data as `state_dependent_spirals`.
            let r = data::rate_spirals::<f64>(&spiral, a.rate_lo, a.rate_hi, keep, seed)?;
            let c = r.clean.into_iter().map(|v| (r.grid.clone(), v)).collect();
            (r.data, Some(c))
        }
        DataArg::Periodic => {
            let cfg = PeriodicConfig {
                n_series: a.n_series,
                n_points: a.n_sample,
                keep: a.keep,
                ..PeriodicConfig::default()
            };
            let (d, g, clean) = data::periodic::<f64>(&cfg, seed)?;
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

    /// [`scores::clean_mse`] of either kind of model.
    fn clean_mse(
        &mut self,
        test: &IrregularDataset<f64>,
        clean: &[(Vec<f64>, Vec<f64>)],
        batch: usize,
        split: scores::Split<'_, f64>,
        t_from: f64,
    ) -> Result<Vec<f64>, CliError> {
        Ok(match self {
            Net::Latent(m) => scores::clean_mse(m.as_mut(), test, clean, batch, split, t_from)?,
            Net::Base(m) => scores::clean_mse(m.as_mut(), test, clean, batch, split, t_from)?,
        })
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

/// Runs the job: for every seed trains every model on every task, prints the table
/// (mean ± sd over the seeds), writes the JSON and the plots.
pub fn run(a: &LatentArgs) -> Result<LatentReport, CliError> {
    check(a)?;
    std::fs::create_dir_all(&a.out).map_err(|source| CliError::Io {
        path: a.out.clone(),
        source,
    })?;
    let mut rows = Vec::new();
    let mut loss_fig = Figure::new("Training loss", "step", "loss per series");
    let mut extra = Vec::new();
    let mut names = Vec::new();
    for k in 0..a.seeds {
        let seed = a.seed.wrapping_add(k as u64);
        let (r, info, n) = run_seed(a, seed, k == 0, &mut loss_fig)?;
        rows.extend(r);
        extra.push(info);
        names = n;
    }
    loss_fig.save(&a.out, "loss")?;
    let summary = summarise(a, &rows);
    if a.seeds > 1 {
        println!("over {} seeds (mean ± sd):", a.seeds);
    }
    for m in &summary {
        println!(
            "{:>22} {:>7}: test MSE {:.4} ± {:.4}, held-out log-lik of the times {:.3} ± {:.3} per series, {:.1} ms/step",
            m.model.label(),
            format!("{:?}", m.task),
            m.test_mse.0,
            m.test_mse.1,
            m.times_ll.0,
            m.times_ll.1,
            1e3 * m.seconds_per_step
        );
        if !m.clean_mse.is_empty() {
            let parts: Vec<String> = m
                .clean_mse
                .iter()
                .zip(&names)
                .map(|(c, n)| format!("{n} {:.4} ± {:.4}", c.0, c.1))
                .collect();
            println!(
                "{:>22} {:>7}  MSE against the clean trajectory: {}",
                "",
                "",
                parts.join(", ")
            );
        }
    }
    let paired = paired_differences(a, &rows, &names);
    if !paired.is_empty() {
        println!(
            "paired differences, latent ODE + Poisson − latent ODE (same seed), mean ± sd, seeds improved:"
        );
        for p in &paired {
            println!(
                "{:>7} {:>16}: {:+.4} ± {:.4}, better on {}/{}",
                format!("{:?}", p.task),
                p.metric,
                p.diff.0,
                p.diff.1,
                p.improved,
                p.n
            );
        }
    }
    if a.seeds > 1 {
        study_plot(a, &rows)?;
    }
    let report = LatentReport {
        rows,
        summary,
        paired,
        out: a.out.clone(),
    };
    write_json(
        &a.out.join("metrics.json"),
        &json!({
            "settings": a,
            "data": data_arg(a),
            "models": model_args(a),
            "per_seed": extra,
            "summary": report.summary,
            "paired": report.paired,
            "results": report.rows,
        }),
    )?;
    println!("wrote {}", a.out.display());
    Ok(report)
}

/// One seed: data, then every model on every task. Returns the rows, the seed's data
/// summary (sizes, split time, constant rates) and the component names.
fn run_seed(
    a: &LatentArgs,
    seed: u64,
    plots: bool,
    loss_fig: &mut Figure,
) -> Result<(Vec<Row>, serde_json::Value, Vec<String>), CliError> {
    let (all, clean) = load(a, seed)?;
    if all.len() < 2 {
        return Err(CliError::InvalidArgument {
            name: "data",
            reason: format!("need at least 2 series, got {}", all.len()),
        });
    }
    let n_test = ((all.len() as f64 * a.test_frac).round() as usize).clamp(1, all.len() - 1);
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
    let data = data_arg(a);
    let obs_std = a.obs_std.unwrap_or(
        if matches!(
            data,
            DataArg::Spirals | DataArg::StateSpirals | DataArg::HiddenRateSpirals
        ) {
            0.3
        } else {
            0.1
        },
    );
    let rates = poisson::constant_rates(&train).ok_or_else(|| CliError::InvalidArgument {
        name: "data",
        reason: "the training series span no time".into(),
    })?;
    let n_events: usize = train
        .series()
        .iter()
        .map(|s| s.observed.iter().filter(|&&o| o).count())
        .sum();
    println!(
        "latent ODE experiment, seed {seed}: {data:?}, {n_train} training and {n_test} test series of dim {}, {:.1} observed values per series, {} steps, batch {}, split at t = {t_split:.3}",
        train.dim(),
        n_events as f64 / n_train as f64,
        a.steps,
        a.batch
    );
    let holdout = a.holdout;
    let mut rows = Vec::new();
    for &task in &a.tasks {
        for which in model_args(a) {
            let mut net = build(a, which, train.dim(), obs_std, seed)?;
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
                seed: seed ^ 0xF17,
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
            let (thin, t_from) = match task {
                TaskArg::Interp => (holdout, f64::NEG_INFINITY),
                TaskArg::Extrap => (1.0, t_split),
            };
            let latent = match &mut net {
                Net::Latent(m) => Some(m.as_mut()),
                Net::Base(_) => None,
            };
            let (ll_model, ll_const) =
                scores::times_log_likelihood(latent, &test, a.batch, &split, thin, t_from, &rates)?;
            let times_ll = ll_model.unwrap_or(ll_const);
            let clean_mse = match &clean {
                Some(c) => net.clean_mse(&test, &c[n_train..], a.batch, &split, t_from)?,
                None => Vec::new(),
            };
            let clean_s: Vec<String> = clean_mse
                .iter()
                .zip(train.names())
                .map(|(m, n)| format!("{n} {m:.4}"))
                .collect();
            println!(
                "{:>22} {:>7}: test MSE {mse:.4}, times log-lik {times_ll:.3} (constant rate {ll_const:.3}), {} params, {:.1} ms/step, final loss {:.3}{}",
                which.label(),
                format!("{task:?}"),
                net.model().n_params(),
                1e3 * secs,
                losses.last().copied().unwrap_or(f64::NAN),
                if clean_s.is_empty() {
                    String::new()
                } else {
                    format!(", clean MSE {}", clean_s.join(", "))
                }
            );
            let label = if a.seeds > 1 {
                format!("{} ({task:?}, seed {seed})", which.label())
            } else {
                format!("{} ({task:?})", which.label())
            };
            *loss_fig = std::mem::take(loss_fig).with(Series::line(
                label,
                losses
                    .iter()
                    .enumerate()
                    .map(|(i, &l)| (i as f64, l))
                    .collect(),
            ));
            if let (true, Net::Latent(m)) = (plots, &mut net) {
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
                seed,
                model: which,
                task,
                test_mse: mse,
                times_ll,
                times_ll_const: ll_const,
                clean_mse,
                n_params: net.model().n_params(),
                seconds_per_step: secs,
                losses,
            });
        }
    }
    let info = json!({
        "seed": seed, "n_train": n_train, "n_test": n_test, "t_split": t_split,
        "obs_std": obs_std, "constant_rates": rates,
        "observed_values_per_train_series": n_events as f64 / n_train as f64,
    });
    Ok((rows, info, train.names().to_vec()))
}

fn build(
    a: &LatentArgs,
    which: ModelArg,
    dim: usize,
    obs_std: f64,
    seed: u64,
) -> Result<Net, CliError> {
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
                step_control: a.step_control.into(),
                rtol: a.tol,
                atol: a.tol / 10.0,
                seed,
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
            seed,
        )?)),
        ModelArg::RnnDt => Net::Base(Box::new(Baseline::new(
            BaselineKind::RnnDt,
            dim,
            a.rec_hidden,
            a.rec_hidden,
            a.enc_step,
            obs_std,
            seed,
        )?)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cmd {
        #[command(flatten)]
        a: LatentArgs,
    }

    fn args(extra: &[&str]) -> LatentArgs {
        let mut v = vec!["latent"];
        v.extend_from_slice(extra);
        Cmd::try_parse_from(v).unwrap().a
    }

    #[test]
    fn bad_hidden_keep_is_an_error() {
        for (extra, want) in [
            (
                &["--data", "state-spirals", "--hidden-keep", "0.2"][..],
                "only applies",
            ),
            (
                &["--compare-poisson", "--hidden-keep", "0.2"][..],
                "only applies",
            ),
            (
                &["--data", "hidden-rate-spirals", "--hidden-keep", "1.5"][..],
                "[0, 1]",
            ),
            (
                &["--data", "hidden-rate-spirals", "--hidden-keep=-0.1"][..],
                "[0, 1]",
            ),
        ] {
            let e = check(&args(extra)).unwrap_err().to_string();
            assert!(
                e.contains("hidden-keep") && e.contains(want),
                "{extra:?}: {e}"
            );
        }
        assert!(
            check(&args(&[
                "--data",
                "hidden-rate-spirals",
                "--hidden-keep",
                "0"
            ]))
            .is_ok()
        );
    }

    /// The clean-trajectory MSE against a per-series computation: each test series alone
    /// on the grid, the encoder seeing what the split leaves, every unseen grid value from
    /// `t_from` on scored against the clean value.
    #[test]
    fn clean_mse_matches_a_per_series_computation() {
        let a = args(&[
            "--data",
            "hidden-rate-spirals",
            "--n-series",
            "5",
            "--n-sample",
            "16",
            "--rate-lo",
            "0.5",
            "--rate-hi",
            "4",
            "--latent",
            "2",
            "--units",
            "6",
            "--rec-hidden",
            "5",
            // The batch changes the adaptive latent solve's steps: make its error small.
            "--tol",
            "1e-10",
        ]);
        let (all, clean) = load(&a, 4).unwrap();
        let clean = clean.unwrap();
        let mut net = build(&a, ModelArg::LatentPoisson, 2, 0.3, 4).unwrap();
        let t_split = 0.25;
        for task in [TaskArg::Interp, TaskArg::Extrap] {
            let split = move |b: &IrregularBatch<f64>| match task {
                TaskArg::Interp => b.holdout(0.3, 9),
                TaskArg::Extrap => b.extrapolation(t_split),
            };
            let t_from = if task == TaskArg::Interp {
                f64::NEG_INFINITY
            } else {
                t_split
            };
            let got = net.clean_mse(&all, &clean, 2, &split, t_from).unwrap();
            let Net::Latent(m) = &mut net else {
                unreachable!()
            };
            let (mut s, mut n) = ([0.0; 2], [0.0; 2]);
            // Series by series, in the chunks of two the job uses (the holdout draws
            // depend on the batch).
            for chunk in [&[0usize, 1][..], &[2, 3], &[4]] {
                let b = split(&all.batch(chunk).unwrap());
                let nb = chunk.len();
                for (j, &k) in chunk.iter().enumerate() {
                    let (grid, cl) = &clean[k];
                    let g = grid.len();
                    let (mut values, mut mask) = (vec![0.0; g * 2], vec![0.0; g * 2]);
                    for (i, &t) in b.times.iter().enumerate() {
                        let r = grid.iter().position(|&u| u == t).unwrap();
                        for c in 0..2 {
                            if b.mask[(i * nb + j) * 2 + c] == 1.0 {
                                mask[r * 2 + c] = 1.0;
                                values[r * 2 + c] = b.values[(i * nb + j) * 2 + c];
                            }
                        }
                    }
                    let one = IrregularBatch::new(
                        grid.clone(),
                        values,
                        mask.clone(),
                        vec![0.0; g * 2],
                        1,
                        2,
                    )
                    .unwrap();
                    let pred = m.reconstruct(&one).unwrap();
                    for r in 0..g {
                        for c in 0..2 {
                            if grid[r] >= t_from && mask[r * 2 + c] == 0.0 {
                                s[c] += (pred[r * 2 + c] - cl[r * 2 + c]).powi(2);
                                n[c] += 1.0;
                            }
                        }
                    }
                }
            }
            for c in 0..2 {
                let want = s[c] / n[c];
                assert!(
                    (got[c] - want).abs() <= 1e-8 * want,
                    "{task:?} component {c}: {} vs {want}",
                    got[c]
                );
            }
        }
    }

    #[test]
    fn tiny_poisson_study_reports_clean_and_paired_metrics() {
        let dir = std::env::temp_dir().join(format!("cli-latent-hidden-{}", std::process::id()));
        let a = args(&[
            "--compare-poisson",
            "--data",
            "hidden-rate-spirals",
            "--hidden-keep",
            "0.3",
            "--seeds",
            "2",
            "--n-series",
            "10",
            "--n-sample",
            "16",
            "--rate-lo",
            "0.5",
            "--rate-hi",
            "4",
            "--steps",
            "2",
            "--batch",
            "4",
            "--latent",
            "2",
            "--units",
            "6",
            "--rec-hidden",
            "5",
            "--plot-series",
            "1",
            "--out",
            dir.to_str().unwrap(),
        ]);
        let report = run(&a).unwrap();
        assert_eq!(report.rows.len(), 8);
        for r in &report.rows {
            assert_eq!(r.clean_mse.len(), 2);
            assert!(r.clean_mse.iter().all(|m| m.is_finite() && *m > 0.0));
        }
        let metrics: Vec<&str> = report.paired.iter().map(|p| p.metric.as_str()).collect();
        assert_eq!(
            metrics,
            [
                "test_mse",
                "clean_mse_x",
                "clean_mse_y",
                "times_ll",
                "test_mse",
                "clean_mse_x",
                "clean_mse_y",
                "times_ll"
            ]
        );
        for p in &report.paired {
            assert_eq!((p.n, p.per_seed.len()), (2, 2));
            assert!(p.improved <= 2 && p.diff.0.is_finite());
        }
        // Paired difference = Poisson row − plain row of the same seed.
        let row = |model, seed| {
            report
                .rows
                .iter()
                .find(|r| r.model == model && r.seed == seed && r.task == TaskArg::Interp)
                .unwrap()
        };
        let d =
            row(ModelArg::LatentPoisson, 1).clean_mse[1] - row(ModelArg::Latent, 1).clean_mse[1];
        assert_eq!(report.paired[2].per_seed[1], d);
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("metrics.json")).unwrap())
                .unwrap();
        assert_eq!(json["paired"].as_array().unwrap().len(), 8);
        assert!(dir.join("study.png").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
