//! `neuralode` (no command) and `neuralode train`: fit a Neural ODE `dz/dt = f_θ(φ(z))`
//! (an MLP on the features `φ(z) = z³` or `z`) to an observed trajectory, by gradient
//! descent on random short windows with the gradient from the adjoint crate.
//!
//! The default data are the cubic spiral of [`models::spiral`]; `--data FILE.csv` fits a
//! user's trajectory instead (see [`models::data`] for the format).

use std::path::{Path, PathBuf};
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
use crate::checks::{
    append_line, check_memory, count, interrupt, positive_f64, prepare_out_dir, whole_u64,
    whole_usize,
};
use crate::output::write_json;
use crate::plot::{Figure, Series};
use models::data::Trajectory;
use models::neural_ode::{Features, GradientModeArg, NeuralOde, SolverSettings, TrainingState};
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
    #[arg(long, default_value_t = 64, value_parser = count, allow_negative_numbers = true)]
    pub hidden: usize,
    /// Number of hidden layers.
    #[arg(long, default_value_t = 2, value_parser = count, allow_negative_numbers = true)]
    pub layers: usize,
    /// The ODE solver.
    #[arg(long, value_parser = method_parser(), default_value = "dopri5")]
    #[serde(serialize_with = "serialize_method")]
    pub method: Method,
    /// Relative tolerance of the solves.
    #[arg(long, default_value_t = 1e-6, value_parser = positive_f64, allow_negative_numbers = true)]
    pub rtol: f64,
    /// Absolute tolerance of the solves.
    #[arg(long, default_value_t = 1e-8, value_parser = positive_f64, allow_negative_numbers = true)]
    pub atol: f64,
    /// How the gradient is computed.
    #[arg(long, value_enum, default_value_t = GradientArg::Checkpointed)]
    pub gradient: GradientArg,
    /// Training iterations (in total, counting those of a resumed checkpoint).
    #[arg(long, default_value_t = 10_000, value_parser = count, allow_negative_numbers = true)]
    pub iters: usize,
    /// Windows per iteration.
    #[arg(long, default_value_t = 16, value_parser = count, allow_negative_numbers = true)]
    pub batch: usize,
    /// Samples per window (the window spans window − 1 sample intervals).
    #[arg(long, default_value_t = 10, value_parser = count, allow_negative_numbers = true)]
    pub window: usize,
    /// Peak learning rate of Adam (cosine decay to 1% of it).
    #[arg(long, default_value_t = 1e-2, value_parser = positive_f64, allow_negative_numbers = true)]
    pub lr: f64,
    /// Evaluate the full trajectory every this many iterations.
    #[arg(long, default_value_t = 100, value_parser = count, allow_negative_numbers = true)]
    pub eval_every: usize,
    /// Worker threads sharing each batch (the split, and so the numbers, depend on this
    /// value, not on the machine).
    #[arg(long, default_value_t = 1, value_parser = count, allow_negative_numbers = true)]
    pub threads: usize,
    /// Seed of the initialisation and of the window sampling.
    #[arg(long, default_value_t = 0, value_parser = whole_u64, allow_negative_numbers = true)]
    pub seed: u64,
    /// Continue from a checkpoint: a `checkpoint.safetensors` (parameters, optimizer
    /// state, iteration: the run continues exactly where it stopped, given the same
    /// options) or a `params.safetensors` (parameters only: a new run starts from them).
    /// The file is never overwritten: outputs that would replace it get a new name.
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Write `checkpoint.safetensors` (parameters, optimizer state, iteration, history)
    /// every this many iterations (0: only at the end and on Ctrl-C/SIGTERM).
    #[arg(long, default_value_t = 500, value_parser = whole_usize, allow_negative_numbers = true)]
    pub checkpoint_every: usize,
    /// Stop after this many iterations in total, as Ctrl-C would: the checkpoint is
    /// written and `--resume` continues the run (to split a long run into chunks).
    #[arg(long, value_parser = count, allow_negative_numbers = true)]
    pub stop_after: Option<usize>,
    /// Train on the data as given: without it, `--data` is shifted and scaled to zero
    /// mean and unit spread per component for training (outputs are in the data's own
    /// units). The built-in spiral is never rescaled.
    #[arg(long)]
    pub no_normalize: bool,
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
    /// Mean squared error over the windows of the first iteration (raw, one batch).
    pub first_loss: f64,
    /// Mean squared error over the windows of the last iteration (raw, one batch).
    pub last_loss: f64,
    /// Mean of the per-iteration loss over the first [`LOSS_MEAN_SPAN`] iterations (the
    /// per-iteration loss is noisy: this is the figure printed).
    pub first_loss_mean: f64,
    /// Mean of the per-iteration loss over the last [`LOSS_MEAN_SPAN`] iterations.
    pub last_loss_mean: f64,
    /// Full-trajectory mean absolute error before and after training (in the data's
    /// units, also with `--normalize`).
    pub initial_trajectory_mae: f64,
    /// See `initial_trajectory_mae`.
    pub final_trajectory_mae: f64,
    /// Wall-clock seconds of the training loop (all sessions of a resumed run).
    pub seconds: f64,
    /// Right-hand-side evaluations in forward solves (this session).
    pub nfe_forward: usize,
    /// Right-hand-side evaluations in gradient passes (this session).
    pub nfe_backward: usize,
    /// Vector–Jacobian (forward mode: Jacobian–vector) products in gradient passes
    /// (this session).
    pub products_backward: usize,
    /// Where the final parameters were written.
    pub params_file: PathBuf,
    /// Where the training checkpoint (for `--resume`) was written.
    pub checkpoint_file: PathBuf,
    /// The history.
    pub history: Vec<HistoryPoint>,
}

/// Number of iterations averaged in [`TrainReport::first_loss_mean`] and
/// [`TrainReport::last_loss_mean`].
pub const LOSS_MEAN_SPAN: usize = 11;

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
    for (name, v) in [
        ("iters", args.iters),
        ("batch", args.batch),
        ("hidden", args.hidden),
        ("layers", args.layers),
        ("eval-every", args.eval_every),
        ("threads", args.threads),
    ] {
        if v == 0 {
            return bad(name, "must be a whole number >= 1, got 0".into());
        }
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

/// Bytes a training run holds, estimated from its sizes (`None` if that overflows):
/// the parameters with their gradient, Adam's moments, each worker's gradient and the
/// checkpoint's copies (~16 buffers of the parameter count), each iteration's history
/// (~160 bytes: the point, its JSON and the plots), the batch's states with their
/// adjoints and tapes (~64 values per state component per sample).
pub fn memory_estimate(args: &TrainArgs, dim: usize) -> Option<u128> {
    let p = NeuralOde::count_params(dim, args.hidden, args.layers)? as u128;
    let buffers = 16 + args.threads as u128;
    let params = p.checked_mul(8 * buffers)?;
    let history = (args.iters as u128).checked_mul(160)?;
    let width = (args.hidden.max(dim) as u128).checked_mul(args.layers as u128 + 2)?;
    let batch = (args.batch as u128)
        .checked_mul(args.window as u128)?
        .checked_mul(width)?
        .checked_mul(64 * 8)?;
    params.checked_add(history)?.checked_add(batch)
}

/// Per-component shift and scale of the data for training (`--data` without
/// `--no-normalize`): `z = (y − shift) / scale`.
#[derive(Debug, Clone)]
struct Normalization {
    shift: Vec<f64>,
    scale: Vec<f64>,
}

impl Normalization {
    /// Mean and standard deviation of each component (a constant component keeps
    /// scale 1).
    fn of(data: &Trajectory) -> Self {
        let (n, d) = (data.len() as f64, data.dim());
        let mut shift = vec![0.0; d];
        let mut scale = vec![0.0; d];
        for k in 0..data.len() {
            for (m, y) in shift.iter_mut().zip(data.y(k)) {
                *m += y / n;
            }
        }
        for k in 0..data.len() {
            for ((s, m), y) in scale.iter_mut().zip(&shift).zip(data.y(k)) {
                *s += (y - m) * (y - m) / n;
            }
        }
        for s in &mut scale {
            *s = s.sqrt();
            if !(s.is_finite() && *s > 0.0) {
                *s = 1.0;
            }
        }
        Normalization { shift, scale }
    }

    fn apply(&self, data: &Trajectory) -> Result<Trajectory, CliError> {
        self.map(data, |y, m, s| (y - m) / s)
    }

    fn undo(&self, data: &Trajectory) -> Result<Trajectory, CliError> {
        self.map(data, |z, m, s| z * s + m)
    }

    fn map(
        &self,
        data: &Trajectory,
        f: impl Fn(f64, f64, f64) -> f64,
    ) -> Result<Trajectory, CliError> {
        let d = data.dim();
        let ys = data
            .ys
            .iter()
            .enumerate()
            .map(|(i, &y)| f(y, self.shift[i % d], self.scale[i % d]))
            .collect();
        Ok(Trajectory::new(data.names.clone(), data.ts.clone(), ys)?)
    }
}

/// The settings that decide a run's numbers, recorded in its checkpoint and compared
/// on `--resume`.
fn run_settings(args: &TrainArgs) -> Vec<(String, String)> {
    vec![
        ("seed".into(), args.seed.to_string()),
        ("iters".into(), args.iters.to_string()),
        ("batch".into(), args.batch.to_string()),
        ("window".into(), args.window.to_string()),
        ("lr".into(), format!("{:?}", args.lr)),
        ("rtol".into(), format!("{:?}", args.rtol)),
        ("atol".into(), format!("{:?}", args.atol)),
        ("method".into(), args.method.name().to_string()),
        (
            "gradient".into(),
            format!("{:?}", args.gradient).to_lowercase(),
        ),
        ("threads".into(), args.threads.to_string()),
        ("eval_every".into(), args.eval_every.to_string()),
        (
            "data".into(),
            args.data
                .as_ref()
                .map_or("spiral".into(), |p| p.display().to_string()),
        ),
        ("normalize".into(), normalizes(args).to_string()),
    ]
}

fn normalizes(args: &TrainArgs) -> bool {
    args.data.is_some() && !args.no_normalize
}

/// `dir/name.ext`, or `dir/name.N.ext` with the first free `N` when that is the file
/// the run was resumed from (which is never overwritten).
fn output_file(dir: &Path, name: &str, input: Option<&Path>) -> PathBuf {
    let same = |p: &Path| {
        input.is_some_and(|i| match (i.canonicalize(), p.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        })
    };
    let path = dir.join(format!("{name}.safetensors"));
    if !same(&path) {
        return path;
    }
    (1..)
        .map(|n| dir.join(format!("{name}.{n}.safetensors")))
        .find(|p| !p.exists())
        .unwrap_or(path)
}

/// Advice for a failed training step, in command-line terms.
fn advice(args: &TrainArgs, e: &models::ModelsError) -> String {
    let text = e.to_string();
    let lr = format!(
        "the learning rate may be too large: try --lr {:e} (now {:e})",
        args.lr / 10.0,
        args.lr
    );
    if text.contains("too many steps") {
        format!(
            "each solve may take at most 100000 steps: the learned field became stiff or fast; {lr}, or loosen --rtol/--atol"
        )
    } else if text.contains("underflow") || text.contains("non-finite") {
        format!("{lr}; or resume from the last checkpoint with a smaller --lr")
    } else {
        "check the data and the options".into()
    }
}

/// Runs the training job; writes `params.safetensors`, `checkpoint.safetensors`,
/// `metrics.json`, `prediction.csv`, appends the run to `runs.jsonl`, and plots
/// `trajectory`, `phase`, `vector_field` and `loss`. The output directory is checked
/// first; a checkpoint is written every `--checkpoint-every` iterations and on
/// Ctrl-C/SIGTERM (then the job returns [`CliError::Interrupted`]).
pub fn run(args: &TrainArgs) -> Result<TrainReport, CliError> {
    prepare_out_dir(&args.out)?;
    let raw = match &args.data {
        Some(path) => Trajectory::read_csv(path)?,
        None => spiral_trajectory(1000, 25.0)?,
    };
    check(args, &raw)?;
    let dim = raw.dim();
    check_memory(
        &format!(
            "train with --hidden {} --layers {} --iters {} --batch {} --window {}",
            args.hidden, args.layers, args.iters, args.batch, args.window
        ),
        memory_estimate(args, dim),
    )?;
    let norm = normalizes(args).then(|| Normalization::of(&raw));
    if args.data.is_some() && args.no_normalize {
        let m = raw.ys.iter().fold(0.0f64, |m, y| m.max(y.abs()));
        if !(1e-3..=1e3).contains(&m) {
            eprintln!(
                "warning: the data reach |y| = {m:.3e}; a tanh MLP learns best on values of order 1 (the loss may stay stuck): drop --no-normalize to train on normalised data"
            );
        }
    }
    let data = match &norm {
        Some(n) => n.apply(&raw)?,
        None => raw.clone(),
    };
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
    let resumed = match &args.resume {
        Some(path) => model.load_checkpoint(path)?,
        None => None,
    };
    let settings = run_settings(args);
    if let Some(state) = &resumed {
        for (k, v) in &settings {
            if let Some((_, old)) = state.settings.iter().find(|(key, _)| key == k)
                && old != v
            {
                eprintln!(
                    "warning: the checkpoint's run had {k} = {old}, this one {v}: the continuation differs from an uninterrupted run"
                );
            }
        }
        if state.iteration as usize >= args.iters {
            return Err(CliError::InvalidArgument {
                name: "iters",
                reason: format!(
                    "the checkpoint has already completed {} iterations: give --iters above that to continue",
                    state.iteration
                ),
            });
        }
    }
    let mut rng = StdRng::seed_from_u64(args.seed ^ 0x5EED_0FDA_7A00);
    let mut trainer = model.trainer(&solver, args.lr, args.iters, args.threads)?;
    let mut starts = vec![0usize; args.batch];
    let draw = |rng: &mut StdRng, starts: &mut [usize]| {
        for s in starts.iter_mut() {
            *s = rng.random_range(0..=data.len() - args.window);
        }
    };
    let input = args.resume.as_deref();
    let params_file = output_file(&args.out, "params", input);
    let checkpoint_file = output_file(&args.out, "checkpoint", input);
    // The error of the whole trajectory, in the data's own units.
    let evaluate = |model: &NeuralOde| -> Result<(f64, Trajectory), models::ModelsError> {
        let p = model.predict(&data, &solver)?;
        let p = match &norm {
            Some(n) => n
                .undo(&p)
                .map_err(|e| models::ModelsError::InvalidArgument {
                    name: "prediction",
                    reason: e.to_string(),
                })?,
            None => p,
        };
        Ok((p.mean_abs_error(&raw)?, p))
    };
    let mut history = Vec::new();
    let (initial_mae, mut seconds_before, first_it) = match &resumed {
        Some(state) => {
            trainer.load_optimizer_state(&state.optimizer)?;
            // Replay the window draws of the iterations done, so that the sampling
            // continues as in an uninterrupted run.
            for _ in 0..state.iteration {
                draw(&mut rng, &mut starts);
            }
            for (i, (&loss, &m)) in state.losses.iter().zip(&state.maes).enumerate() {
                history.push(HistoryPoint {
                    iteration: i + 1,
                    loss,
                    trajectory_mae: m.is_finite().then_some(m),
                });
            }
            let setting = |k: &str| {
                state
                    .settings
                    .iter()
                    .find(|(key, _)| key == k)
                    .and_then(|(_, v)| v.parse::<f64>().ok())
            };
            let initial = match setting("initial_trajectory_mae") {
                Some(v) => v,
                None => evaluate(&model)?.0,
            };
            println!(
                "resuming from {} at iteration {} of {}",
                args.resume.as_deref().unwrap_or(Path::new("")).display(),
                state.iteration,
                args.iters
            );
            (
                initial,
                setting("seconds").unwrap_or(0.0),
                state.iteration as usize + 1,
            )
        }
        None => (evaluate(&model)?.0, 0.0, 1),
    };
    interrupt::install();
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
        bar.set_position(first_it as u64 - 1);
        bar
    };
    let mut mae = history
        .iter()
        .rev()
        .find_map(|h| h.trajectory_mae)
        .unwrap_or(initial_mae);
    let mut prediction = None;
    let start = Instant::now();
    let save_state = |model: &NeuralOde,
                      trainer: &models::neural_ode::Trainer,
                      history: &[HistoryPoint],
                      seconds: f64|
     -> Result<(), CliError> {
        let mut settings = settings.clone();
        settings.push(("initial_trajectory_mae".into(), format!("{initial_mae:?}")));
        settings.push(("seconds".into(), format!("{seconds:?}")));
        let state = TrainingState {
            iteration: history.len() as u64,
            optimizer: trainer.optimizer_state(),
            losses: history.iter().map(|h| h.loss).collect(),
            maes: history
                .iter()
                .map(|h| h.trajectory_mae.unwrap_or(f64::NAN))
                .collect(),
            settings,
        };
        Ok(model.save_checkpoint(&checkpoint_file, &state)?)
    };
    for it in first_it..=args.iters {
        draw(&mut rng, &mut starts);
        let failed = |e: models::ModelsError| CliError::Training {
            iteration: it as u64,
            advice: advice(args, &e),
            source: Box::new(e),
        };
        let loss = trainer
            .step(&mut model, &data, &starts, args.window)
            .map_err(failed)?;
        if !loss.is_finite() {
            return Err(failed(models::ModelsError::NonFinite {
                what: "training loss",
                index: 0,
            }));
        }
        let evaluated = it % args.eval_every == 0 || it == args.iters;
        if evaluated {
            let (m, p) = evaluate(&model).map_err(failed)?;
            mae = m;
            prediction = Some(p);
        }
        history.push(HistoryPoint {
            iteration: it,
            loss,
            trajectory_mae: evaluated.then_some(mae),
        });
        progress.set_message(format!("loss {loss:.3e}  trajectory MAE {mae:.3e}"));
        progress.inc(1);
        let stop = interrupt::requested() || args.stop_after.is_some_and(|s| it >= s);
        if stop && it < args.iters {
            progress.abandon();
            save_state(
                &model,
                &trainer,
                &history,
                seconds_before + start.elapsed().as_secs_f64(),
            )?;
            return Err(CliError::Interrupted {
                iteration: it as u64,
                checkpoint: checkpoint_file.display().to_string(),
            });
        }
        if args.checkpoint_every > 0 && it % args.checkpoint_every == 0 {
            save_state(
                &model,
                &trainer,
                &history,
                seconds_before + start.elapsed().as_secs_f64(),
            )?;
        }
    }
    progress.finish();
    seconds_before += start.elapsed().as_secs_f64();
    let seconds = seconds_before;
    let (nfe_forward, nfe_backward, products_backward) = trainer.work();

    let dir = &args.out;
    model.save(&params_file)?;
    save_state(&model, &trainer, &history, seconds)?;
    let last = history.len().saturating_sub(1);
    let report = TrainReport {
        n_params: model.n_params(),
        first_loss: history.first().map_or(f64::NAN, |h| h.loss),
        last_loss: history.last().map_or(f64::NAN, |h| h.loss),
        first_loss_mean: mean_loss_over(&history, 0, LOSS_MEAN_SPAN),
        last_loss_mean: mean_loss_over(
            &history,
            last + 1 - LOSS_MEAN_SPAN.min(last + 1),
            LOSS_MEAN_SPAN,
        ),
        initial_trajectory_mae: initial_mae,
        final_trajectory_mae: mae,
        seconds,
        nfe_forward,
        nfe_backward,
        products_backward,
        params_file: params_file.clone(),
        checkpoint_file: checkpoint_file.clone(),
        history,
    };
    println!(
        "{} parameters, {} iterations in {:.1} s: window loss (mean of {} iterations) {:.3e} -> {:.3e} (iteration 1: {:.3e}, last: {:.3e}), trajectory MAE {:.3e} -> {:.3e} ({} forward evaluations; gradients: {} evaluations, {} vector-Jacobian products)",
        report.n_params,
        args.iters,
        report.seconds,
        LOSS_MEAN_SPAN,
        report.first_loss_mean,
        report.last_loss_mean,
        report.first_loss,
        report.last_loss,
        report.initial_trajectory_mae,
        report.final_trajectory_mae,
        report.nfe_forward,
        report.nfe_backward,
        report.products_backward
    );
    print_table(&report, args);
    if let Some(n) = &norm {
        println!(
            "trained on the data normalised per component (shift {:?}, scale {:?}); prediction, plots and errors are in the data's units (--no-normalize to train on them as given)",
            n.shift
                .iter()
                .map(|v| format!("{v:.3e}"))
                .collect::<Vec<_>>(),
            n.scale
                .iter()
                .map(|v| format!("{v:.3e}"))
                .collect::<Vec<_>>()
        );
    }
    write_json(
        &dir.join("metrics.json"),
        &json!({ "settings": args, "loss_mean_span": LOSS_MEAN_SPAN, "report": &report }),
    )?;
    append_run(args, &report)?;
    // The last iteration always evaluates the whole trajectory with the final parameters.
    let learned = match prediction {
        Some(p) => p,
        None => evaluate(&model)?.1,
    };
    plots(&model, &raw, &learned, norm.as_ref(), &report, args)?;
    match &args.resume {
        Some(input) => println!(
            "wrote {} (parameters: {}, checkpoint: {}; the input {} is kept unchanged)",
            dir.display(),
            params_file.display(),
            checkpoint_file.display(),
            input.display()
        ),
        None => println!(
            "wrote {} (parameters: {}, checkpoint for --resume: {})",
            dir.display(),
            params_file.display(),
            checkpoint_file.display()
        ),
    }
    Ok(report)
}

/// The table the README shows: the figures of the run, labelled.
fn print_table(report: &TrainReport, args: &TrainArgs) {
    let rows = [
        ("parameters", report.n_params.to_string()),
        ("iterations", args.iters.to_string()),
        (
            "window MSE, first iterations (mean)",
            format!("{:.3e}", report.first_loss_mean),
        ),
        (
            "window MSE, last iterations (mean)",
            format!("{:.3e}", report.last_loss_mean),
        ),
        (
            "trajectory MAE, initial",
            format!("{:.3e}", report.initial_trajectory_mae),
        ),
        (
            "trajectory MAE, final",
            format!("{:.3e}", report.final_trajectory_mae),
        ),
        ("seconds", format!("{:.1}", report.seconds)),
    ];
    for (k, v) in rows {
        println!("  {k:<38} {v:>12}");
    }
}

/// Mean loss over the `n` iterations from index `from` (those that exist).
fn mean_loss_over(history: &[HistoryPoint], from: usize, n: usize) -> f64 {
    let hi = (from + n).min(history.len());
    let w = &history[from.min(hi)..hi];
    w.iter().map(|h| h.loss).sum::<f64>() / w.len().max(1) as f64
}

/// Mean loss over the iterations `i − half ..= i + half` that exist (the per-iteration
/// loss is noisy).
fn mean_loss_around(history: &[HistoryPoint], i: usize, half: usize) -> f64 {
    let lo = i.saturating_sub(half);
    let hi = (i + half + 1).min(history.len());
    let w = &history[lo.min(hi)..hi];
    w.iter().map(|h| h.loss).sum::<f64>() / w.len().max(1) as f64
}

/// Appends this run's settings and results to `runs.jsonl` (one JSON object per line)
/// with one `O_APPEND` write, so that concurrent runs keep every line.
fn append_run(args: &TrainArgs, report: &TrainReport) -> Result<(), CliError> {
    let line = json!({
        "settings": args,
        "n_params": report.n_params,
        "first_loss": report.first_loss,
        "last_loss": report.last_loss,
        "first_loss_mean": report.first_loss_mean,
        "last_loss_mean": report.last_loss_mean,
        "loss_mean_span": LOSS_MEAN_SPAN,
        "initial_trajectory_mae": report.initial_trajectory_mae,
        "final_trajectory_mae": report.final_trajectory_mae,
        "seconds": report.seconds,
        "params_file": report.params_file,
    });
    append_line(&args.out.join("runs.jsonl"), &line.to_string())
}

fn plots(
    model: &NeuralOde,
    data: &Trajectory,
    learned: &Trajectory,
    norm: Option<&Normalization>,
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
            vector_field(model, data, norm, args)?;
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
    // Two panels: the training loss (a mean squared error over windows) and the
    // full-trajectory mean absolute error are different quantities in different units.
    let mut mse = Figure::new(
        "Training loss",
        "iteration",
        "window MSE (squared data units)",
    )
    .with(Series::line("window MSE (per iteration)", losses).width(1))
    .with(Series::line(format!("window MSE, running mean of {span}"), running).width(3));
    mse.log_y = true;
    mse.legend = crate::plot::Legend::UpperRight;
    let mut mae = Figure::new(
        "Whole trajectory from y(t0)",
        "iteration",
        "mean absolute error (data units)",
    )
    .with(Series::line_markers("full-trajectory MAE", maes));
    mae.log_y = true;
    mae.legend = crate::plot::Legend::UpperRight;
    crate::plot::save_panels(&[mse, mae], dir, "loss")?;
    Ok(())
}

/// The learned and true vector fields on a grid over the data's bounding box (true
/// field only for the built-in spiral).
fn vector_field(
    model: &NeuralOde,
    data: &Trajectory,
    norm: Option<&Normalization>,
    args: &TrainArgs,
) -> Result<(), CliError> {
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
    // The model sees normalised states and returns their derivative: back to data units.
    let (shift, scale) = match norm {
        Some(n) => ([n.shift[0], n.shift[1]], [n.scale[0], n.scale[1]]),
        None => ([0.0; 2], [1.0; 2]),
    };
    let flat: Vec<f64> = points
        .iter()
        .flat_map(|p| [(p[0] - shift[0]) / scale[0], (p[1] - shift[1]) / scale[1]])
        .collect();
    let learned: Vec<[f64; 2]> = model
        .field(&flat)?
        .chunks_exact(2)
        .map(|d| [d[0] * scale[0], d[1] * scale[1]])
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
