//! `neuralode` (no command) and `neuralode train`: fit a Neural ODE `dz/dt = f_θ(φ(z))`
//! (an MLP on the features `φ(z) = z³` or `z`) to an observed trajectory, by gradient
//! descent on random short windows with the gradient from the adjoint crate.
//!
//! The default data are the cubic spiral of [`models::spiral`]; `--data FILE.csv` fits a
//! user's trajectory instead (see [`models::data`] for the format).

use std::path::PathBuf;
use std::time::Instant;

use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use ode_solvers::Method;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::Serialize;
use serde_json::json;

use super::{is_adaptive, method_parser, positive, serialize_method};
use crate::CliError;
use crate::output::{write_atomic, write_json};
use crate::plot::{Figure, Series};
use models::data::Trajectory;
use models::neural_ode::{Features, GradientModeArg, NeuralOde, SolverSettings};
use models::spiral::spiral_trajectory;

/// `--features`: what the network sees of the state ([`Features`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FeaturesArg {
    /// `φ(z) = z³` elementwise (the spiral's own nonlinearity, as in torchdiffeq's demo).
    Cubic,
    /// `φ(z) = z`.
    Identity,
}

impl From<FeaturesArg> for Features {
    fn from(f: FeaturesArg) -> Self {
        match f {
            FeaturesArg::Cubic => Features::Cubic,
            FeaturesArg::Identity => Features::Identity,
        }
    }
}

/// `--gradient`: how the gradient through the solver is computed ([`GradientModeArg`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum GradientArg {
    /// Adjoint integrated backwards against the interpolated forward solution.
    Checkpointed,
    /// Chen et al.'s backsolve adjoint (memory independent of the steps), seminorm on.
    Backsolve,
    /// Backpropagation through the solver's operations (discretise-then-optimise).
    Direct,
    /// Forward sensitivities (cost ∝ number of parameters).
    Forward,
}

impl From<GradientArg> for GradientModeArg {
    fn from(g: GradientArg) -> Self {
        match g {
            GradientArg::Checkpointed => GradientModeArg::Checkpointed,
            GradientArg::Backsolve => GradientModeArg::Backsolve,
            GradientArg::Direct => GradientModeArg::Direct,
            GradientArg::Forward => GradientModeArg::Forward,
        }
    }
}

/// Options of the training job.
#[derive(Debug, Clone, Args, Serialize)]
pub struct TrainArgs {
    /// A trajectory to fit: CSV with a header, a time column, then the state columns
    /// (irregular times allowed). Default: the cubic spiral dy/dt = A y³.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// What the network sees of the state.
    #[arg(long, value_enum, default_value_t = FeaturesArg::Cubic)]
    pub features: FeaturesArg,
    /// Width of the hidden layers.
    #[arg(long, default_value_t = 64)]
    pub hidden: usize,
    /// Number of hidden layers.
    #[arg(long, default_value_t = 2)]
    pub layers: usize,
    /// The ODE solver.
    #[arg(long, value_parser = method_parser(), default_value = "dopri5")]
    #[serde(serialize_with = "serialize_method")]
    pub method: Method,
    /// Relative tolerance of the solves.
    #[arg(long, default_value_t = 1e-6)]
    pub rtol: f64,
    /// Absolute tolerance of the solves.
    #[arg(long, default_value_t = 1e-8)]
    pub atol: f64,
    /// How the gradient is computed.
    #[arg(long, value_enum, default_value_t = GradientArg::Checkpointed)]
    pub gradient: GradientArg,
    /// Training iterations.
    #[arg(long, default_value_t = 10_000)]
    pub iters: usize,
    /// Windows per iteration.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Samples per window (the window spans window − 1 sample intervals).
    #[arg(long, default_value_t = 10)]
    pub window: usize,
    /// Peak learning rate of Adam (cosine decay to 1% of it).
    #[arg(long, default_value_t = 1e-2)]
    pub lr: f64,
    /// Evaluate the full trajectory every this many iterations.
    #[arg(long, default_value_t = 100)]
    pub eval_every: usize,
    /// Worker threads sharing each batch (the split, and so the numbers, depend on this
    /// value, not on the machine).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Seed of the initialisation and of the window sampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Continue from saved parameters (a `params.safetensors` written by a run with
    /// the same architecture).
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Output directory.
    #[arg(long, default_value = "out/train")]
    pub out: PathBuf,
    /// No progress bar (for logs and scripts).
    #[arg(long)]
    pub quiet: bool,
}

impl Default for TrainArgs {
    fn default() -> Self {
        use clap::Parser;
        #[derive(Parser)]
        struct Wrap {
            #[command(flatten)]
            args: TrainArgs,
        }
        Wrap::parse_from(["neuralode"]).args
    }
}

/// One point of the training history.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryPoint {
    /// Iteration (1-based).
    pub iteration: usize,
    /// Mean training loss over the windows of this iteration.
    pub loss: f64,
    /// Mean absolute error of the full trajectory from the first sample, when evaluated.
    pub trajectory_mae: Option<f64>,
}

/// What a training run reports.
#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    /// Parameters of the model.
    pub n_params: usize,
    /// Mean squared error over the windows: first and last iteration.
    pub first_loss: f64,
    /// See `first_loss`.
    pub last_loss: f64,
    /// Full-trajectory mean absolute error before and after training.
    pub initial_trajectory_mae: f64,
    /// See `initial_trajectory_mae`.
    pub final_trajectory_mae: f64,
    /// Wall-clock seconds of the training loop.
    pub seconds: f64,
    /// Right-hand-side evaluations in forward solves.
    pub nfe_forward: usize,
    /// Right-hand-side evaluations in gradient passes.
    pub nfe_backward: usize,
    /// Vector–Jacobian (forward mode: Jacobian–vector) products in gradient passes.
    pub products_backward: usize,
    /// The history.
    pub history: Vec<HistoryPoint>,
}

fn check(args: &TrainArgs, data: &Trajectory) -> Result<(), CliError> {
    let bad = |name, reason: String| Err(CliError::InvalidArgument { name, reason });
    positive("rtol", args.rtol)?;
    positive("atol", args.atol)?;
    positive("lr", args.lr)?;
    if !is_adaptive(args.method) {
        return bad(
            "method",
            "training needs an adaptive method (bosh3, dopri5, tsit5, dop853 or adams)".into(),
        );
    }
    if args.iters == 0 || args.batch == 0 || args.hidden == 0 || args.layers == 0 {
        return bad("iters/batch/hidden/layers", "must all be at least 1".into());
    }
    if args.eval_every == 0 {
        return bad("eval-every", "must be at least 1".into());
    }
    if args.window < 2 || args.window > data.len() {
        return bad(
            "window",
            format!(
                "must be between 2 and the number of samples ({}), got {}",
                data.len(),
                args.window
            ),
        );
    }
    Ok(())
}

/// Runs the training job; writes `params.safetensors`, `metrics.json`, appends the
/// run to `runs.jsonl`, and plots `trajectory`, `phase`, `vector_field` and `loss`.
pub fn run(args: &TrainArgs) -> Result<TrainReport, CliError> {
    let data = match &args.data {
        Some(path) => Trajectory::read_csv(path)?,
        None => spiral_trajectory(1000, 25.0)?,
    };
    check(args, &data)?;
    let dim = data.dim();
    let solver = SolverSettings {
        method: args.method,
        rtol: args.rtol,
        atol: args.atol,
        mode: args.gradient.into(),
    };
    let mut model = NeuralOde::new(
        dim,
        args.features.into(),
        args.hidden,
        args.layers,
        args.seed,
    )?;
    if let Some(path) = &args.resume {
        model.load(path)?;
    }
    let mut rng = StdRng::seed_from_u64(args.seed ^ 0x5EED_0FDA_7A00);
    let mut trainer = model.trainer(&solver, args.lr, args.iters, args.threads)?;

    let progress = if args.quiet {
        ProgressBar::hidden()
    } else {
        let bar = ProgressBar::new(args.iters as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:32} {pos}/{len} {msg} (eta {eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    };
    let initial_mae = model.trajectory_mae(&data, &solver)?;
    let mut history = Vec::with_capacity(args.iters);
    let mut mae = initial_mae;
    let mut prediction = None;
    let start = Instant::now();
    let mut starts = vec![0usize; args.batch];
    for it in 1..=args.iters {
        for s in &mut starts {
            *s = rng.random_range(0..=data.len() - args.window);
        }
        let loss = trainer.step(&mut model, &data, &starts, args.window)?;
        let evaluated = it % args.eval_every == 0 || it == args.iters;
        if evaluated {
            let p = model.predict(&data, &solver)?;
            mae = p.mean_abs_error(&data)?;
            prediction = Some(p);
        }
        history.push(HistoryPoint {
            iteration: it,
            loss,
            trajectory_mae: evaluated.then_some(mae),
        });
        progress.set_message(format!("loss {loss:.3e}  trajectory MAE {mae:.3e}"));
        progress.inc(1);
    }
    progress.finish();
    let seconds = start.elapsed().as_secs_f64();
    let (nfe_forward, nfe_backward, products_backward) = trainer.work();

    let dir = &args.out;
    std::fs::create_dir_all(dir).map_err(|source| CliError::Io {
        path: dir.clone(),
        source,
    })?;
    model.save(&dir.join("params.safetensors"))?;
    let report = TrainReport {
        n_params: model.n_params(),
        first_loss: history.first().map_or(f64::NAN, |h| h.loss),
        last_loss: history.last().map_or(f64::NAN, |h| h.loss),
        initial_trajectory_mae: initial_mae,
        final_trajectory_mae: mae,
        seconds,
        nfe_forward,
        nfe_backward,
        products_backward,
        history,
    };
    println!(
        "{} parameters, {} iterations in {:.1} s: window loss {:.3e} -> {:.3e}, trajectory MAE {:.3e} -> {:.3e} ({} forward evaluations; gradients: {} evaluations, {} vector-Jacobian products)",
        report.n_params,
        args.iters,
        report.seconds,
        mean_loss_around(&report.history, 0, 10),
        mean_loss_around(&report.history, report.history.len().saturating_sub(1), 10),
        report.initial_trajectory_mae,
        report.final_trajectory_mae,
        report.nfe_forward,
        report.nfe_backward,
        report.products_backward
    );
    write_json(
        &dir.join("metrics.json"),
        &json!({ "settings": args, "report": &report }),
    )?;
    append_run(args, &report)?;
    // The last iteration always evaluates the whole trajectory with the final parameters.
    let learned = match prediction {
        Some(p) => p,
        None => model.predict(&data, &solver)?,
    };
    plots(&model, &data, &learned, &report, args)?;
    println!("wrote {}", dir.display());
    Ok(report)
}

/// Mean loss over the iterations `i − half ..= i + half` that exist (the per-iteration
/// loss is noisy).
fn mean_loss_around(history: &[HistoryPoint], i: usize, half: usize) -> f64 {
    let lo = i.saturating_sub(half);
    let hi = (i + half + 1).min(history.len());
    let w = &history[lo.min(hi)..hi];
    w.iter().map(|h| h.loss).sum::<f64>() / w.len().max(1) as f64
}

/// Appends this run's settings and results to `runs.jsonl` (one JSON object per line),
/// rewriting the file atomically.
fn append_run(args: &TrainArgs, report: &TrainReport) -> Result<(), CliError> {
    let path = args.out.join("runs.jsonl");
    let mut text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => return Err(CliError::Io { path, source }),
    };
    let line = json!({
        "settings": args,
        "n_params": report.n_params,
        "first_loss": report.first_loss,
        "last_loss": report.last_loss,
        "initial_trajectory_mae": report.initial_trajectory_mae,
        "final_trajectory_mae": report.final_trajectory_mae,
        "seconds": report.seconds,
    });
    text.push_str(&line.to_string());
    text.push('\n');
    write_atomic(&path, text.as_bytes())
}

fn plots(
    model: &NeuralOde,
    data: &Trajectory,
    learned: &Trajectory,
    report: &TrainReport,
    args: &TrainArgs,
) -> Result<(), CliError> {
    let dir = &args.out;
    learned.write_csv(&dir.join("prediction.csv"))?;
    let mut fig = Figure::new("Learned vs true trajectory", "t", "state");
    for i in 0..data.dim().min(4) {
        fig = fig
            .with(Series::line(format!("true {}", data.names[i]), data.component(i)).width(5))
            .with(Series::line(
                format!("learned {}", data.names[i]),
                learned.component(i),
            ));
    }
    fig.save(dir, "trajectory")?;
    if data.dim() >= 2 {
        let mut phase = Figure::new(
            "Phase portrait: learned vs true",
            data.names[0].clone(),
            data.names[1].clone(),
        );
        phase.equal_aspect = true;
        phase
            .with(Series::line("true", data.phase(0, 1)).width(5))
            .with(Series::line("learned", learned.phase(0, 1)))
            .save(dir, "phase")?;
        if data.dim() == 2 {
            vector_field(model, data, args)?;
        }
    }
    let losses: Vec<(f64, f64)> = report
        .history
        .iter()
        .map(|h| (h.iteration as f64, h.loss))
        .collect();
    let maes: Vec<(f64, f64)> = report
        .history
        .iter()
        .filter_map(|h| Some((h.iteration as f64, h.trajectory_mae?)))
        .collect();
    // A running mean over 1% of the run shows the trend through the batch noise.
    let span = (report.history.len() / 100).max(1);
    let running: Vec<(f64, f64)> = (0..report.history.len())
        .step_by(span)
        .map(|i| {
            let mean = mean_loss_around(&report.history, i, span / 2);
            (report.history[i].iteration as f64, mean)
        })
        .collect();
    let mut loss = Figure::new("Training", "iteration", "loss")
        .with(Series::line("window MSE (per iteration)", losses).width(1))
        .with(Series::line(format!("window MSE, running mean of {span}"), running).width(3))
        .with(Series::line_markers("full-trajectory MAE", maes));
    loss.log_y = true;
    loss.save(dir, "loss")?;
    Ok(())
}

/// The learned and true vector fields on a grid over the data's bounding box (true
/// field only for the built-in spiral).
fn vector_field(model: &NeuralOde, data: &Trajectory, args: &TrainArgs) -> Result<(), CliError> {
    let (mut lo, mut hi) = ([f64::INFINITY; 2], [f64::NEG_INFINITY; 2]);
    for k in 0..data.len() {
        for i in 0..2 {
            lo[i] = lo[i].min(data.y(k)[i]);
            hi[i] = hi[i].max(data.y(k)[i]);
        }
    }
    let m = 21;
    let mut points = Vec::with_capacity(m * m);
    for a in 0..m {
        for b in 0..m {
            let f = |i: usize, j: usize| lo[i] + (hi[i] - lo[i]) * j as f64 / (m - 1) as f64;
            points.push([f(0, a), f(1, b)]);
        }
    }
    let flat: Vec<f64> = points.iter().flatten().copied().collect();
    let learned: Vec<[f64; 2]> = model
        .field(&flat)?
        .chunks_exact(2)
        .map(|d| [d[0], d[1]])
        .collect();
    let true_field: Option<Vec<[f64; 2]>> = args.data.is_none().then(|| {
        points
            .iter()
            .map(|p| {
                let mut d = [0.0; 2];
                models::spiral::spiral_rhs(p, &mut d);
                d
            })
            .collect()
    });
    // Arrow length ∝ √speed, the longest 0.9 grid cells: the field spans decades
    // (|f| grows like |y|³), and linear lengths would hide the slow centre.
    let cell = ((hi[0] - lo[0]) / (m - 1) as f64).min((hi[1] - lo[1]) / (m - 1) as f64);
    let longest = learned
        .iter()
        .chain(true_field.iter().flatten())
        .map(|d| d[0].hypot(d[1]).sqrt())
        .fold(0.0, f64::max);
    let arrows = |field: &[[f64; 2]]| -> Vec<(f64, f64, f64, f64)> {
        points
            .iter()
            .zip(field)
            .map(|(p, d)| {
                let speed = d[0].hypot(d[1]);
                let s = if speed > 0.0 && longest > 0.0 {
                    0.9 * cell * speed.sqrt() / longest / speed
                } else {
                    0.0
                };
                (p[0], p[1], s * d[0], s * d[1])
            })
            .collect()
    };
    let mut fig = Figure::new(
        "Vector field: learned vs true (arrow length ∝ √speed)",
        data.names[0].clone(),
        data.names[1].clone(),
    );
    fig.equal_aspect = true;
    if let Some(t) = &true_field {
        fig = fig.with(Series::arrows("true f(y)", &arrows(t)).width(3));
    }
    fig.with(Series::arrows("learned f(y)", &arrows(&learned)))
        .with(Series::line("data", data.phase(0, 1)))
        .save(&args.out, "vector_field")?;
    Ok(())
}
