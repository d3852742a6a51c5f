//! `neuralode cnf`: continuous normalizing flows (FFJORD, [`models::cnf`]) trained on a
//! 2-D toy density, with and without the RNODE regularisers.
//!
//! Each run (`--runs plain,rnode`) trains the same initial flow by maximum likelihood on
//! fresh batches of the toy density, evaluates the test NLL (exact trace) every
//! `--eval-every` iterations, and records per iteration the loss, the field evaluations
//! of the forward solve and of the backward pass, and the wall time. The report compares
//! the runs with the Gaussian baseline (a full-covariance Gaussian fitted to the training
//! sample) and, for RNODE, the evaluations per iteration and the training time.
//!
//! Output (in `--out`): `cnf.json` (settings, per-run summary and history),
//! `density_<run>.png` (three panels as FFJORD's `visualize_transform`: a histogram of the
//! data, the learned density on a grid, a histogram of samples drawn by integrating
//! base → data), `nfe.png/svg` (forward and backward evaluations over training, per run),
//! `nll.png/svg` (training loss and test NLL over iterations).

use std::path::{Path, PathBuf};
use std::time::Instant;

use autodiff::Float;
use autodiff::optim::{Adam, AdamConfig};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use models::Model;
use models::cnf::{Cnf, CnfConfig, Divergence, GaussianBaseline, Noise, Rnode, ToyDensity};
use models::training::{TrainConfig, Trainer};
use ode_solvers::Method;
use plotters::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::Serialize;
use serde_json::json;

use super::{method_parser, positive, serialize_method};
use crate::CliError;
use crate::output::{write_atomic_with, write_json};
use crate::plot::{Figure, Series};

/// `--divergence`: how the trace is computed during training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DivergenceArg {
    /// Exact trace, one vector–Jacobian product per dimension (FFJORD `brute_force`).
    Exact,
    /// Hutchinson's estimator with Rademacher probes.
    HutchinsonRademacher,
    /// Hutchinson's estimator with Gaussian probes.
    HutchinsonGaussian,
}

impl DivergenceArg {
    fn divergence(self) -> Divergence {
        match self {
            DivergenceArg::Exact => Divergence::Exact,
            DivergenceArg::HutchinsonRademacher => Divergence::Hutchinson(Noise::Rademacher),
            DivergenceArg::HutchinsonGaussian => Divergence::Hutchinson(Noise::Gaussian),
        }
    }
}

/// `--runs`: which flows to train.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunArg {
    /// Maximum likelihood alone (FFJORD).
    Plain,
    /// With the RNODE regularisers (`--kinetic`, `--jacobian`).
    Rnode,
}

/// `--precision`: the float type of the whole run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PrecisionArg {
    /// 32-bit floats (as FFJORD's PyTorch code).
    F32,
    /// 64-bit floats.
    F64,
}

/// Options of `neuralode cnf`.
#[derive(Debug, Clone, Args, Serialize)]
pub struct CnfArgs {
    /// Toy density: moons, 8gaussians, pinwheel, checkerboard, rings, swissroll, circles,
    /// 2spirals.
    #[arg(long, default_value = "pinwheel")]
    pub data: String,
    /// Flows to train, comma-separated (the same initial parameters for each).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "plain,rnode")]
    pub runs: Vec<RunArg>,
    /// Training iterations per run (10000 in FFJORD's train_toy.py).
    #[arg(long, default_value_t = 1000)]
    pub iters: u64,
    /// Points per training batch (fresh samples every iteration).
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// Hidden widths of each block's concat-squash network, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "64,64,64")]
    pub hidden: Vec<usize>,
    /// Number of stacked CNF blocks.
    #[arg(long, default_value_t = 1)]
    pub blocks: usize,
    /// Initial integration time T of each block (trained).
    #[arg(long, default_value_t = 0.5)]
    pub time_length: f64,
    /// Trace computation during training (evaluation always uses the exact trace).
    #[arg(long, value_enum, default_value_t = DivergenceArg::Exact)]
    pub divergence: DivergenceArg,
    /// ODE solver.
    #[arg(long, value_parser = method_parser(), default_value = "dopri5")]
    #[serde(serialize_with = "serialize_method")]
    pub method: Method,
    /// rtol = atol of the solves.
    #[arg(long, default_value_t = 1e-5)]
    pub tol: f64,
    /// Adam's learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Adam's (L2) weight decay.
    #[arg(long, default_value_t = 1e-5)]
    pub weight_decay: f64,
    /// RNODE kinetic-energy weight λ_K (the `rnode` run).
    #[arg(long, default_value_t = 0.01)]
    pub kinetic: f64,
    /// RNODE Jacobian-norm weight λ_J (the `rnode` run).
    #[arg(long, default_value_t = 0.01)]
    pub jacobian: f64,
    /// Evaluate the test NLL every N iterations (and at the end).
    #[arg(long, default_value_t = 100)]
    pub eval_every: u64,
    /// Test points (fixed seed, disjoint from training batches).
    #[arg(long, default_value_t = 1000)]
    pub test_size: usize,
    /// Grid points per axis of the density plot.
    #[arg(long, default_value_t = 100)]
    pub grid: usize,
    /// Samples drawn for the sample histogram.
    #[arg(long, default_value_t = 2000)]
    pub samples: usize,
    /// Float type of the run.
    #[arg(long, value_enum, default_value_t = PrecisionArg::F32)]
    pub precision: PrecisionArg,
    /// Seed of the initial parameters, the batches and the probes.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output directory.
    #[arg(long, default_value = "out/cnf")]
    pub out: PathBuf,
}

impl Default for CnfArgs {
    fn default() -> Self {
        use clap::Parser;
        #[derive(Parser)]
        struct Wrapper {
            #[command(flatten)]
            args: CnfArgs,
        }
        Wrapper::parse_from(["cnf"]).args
    }
}

/// One logged iteration.
#[derive(Debug, Clone, Serialize)]
pub struct IterPoint {
    /// Iteration, from 1.
    pub iter: u64,
    /// Training loss (NLL + RNODE terms) of the batch.
    pub loss: f64,
    /// NLL of the batch (with the training divergence).
    pub nll: f64,
    /// Field evaluations of the forward solves.
    pub nfe_forward: f64,
    /// Field evaluations and VJPs of the backward pass.
    pub nfe_backward: f64,
    /// Wall time of the iteration (s).
    pub seconds: f64,
}

/// One run's result.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    /// "plain" or "rnode".
    pub run: &'static str,
    /// λ_K, λ_J.
    pub rnode: [f64; 2],
    /// Test NLL (exact trace) after training.
    pub test_nll: f64,
    /// Test NLL at every evaluation: (iteration, NLL).
    pub test_curve: Vec<(u64, f64)>,
    /// Mean forward evaluations per iteration.
    pub nfe_forward: f64,
    /// Mean backward evaluations per iteration.
    pub nfe_backward: f64,
    /// Mean wall time per iteration (s), evaluation excluded.
    pub seconds_per_iter: f64,
    /// Total training time (s), evaluation excluded.
    pub train_seconds: f64,
    /// Trained end times of the blocks.
    pub end_times: Vec<f64>,
    /// Per-iteration history.
    pub history: Vec<IterPoint>,
}

/// What `neuralode cnf` reports (also in `cnf.json`).
#[derive(Debug, Clone, Serialize)]
pub struct CnfReport {
    /// Parameters of one flow.
    pub n_params: usize,
    /// Test NLL of the Gaussian baseline.
    pub gaussian_nll: f64,
    /// One summary per run.
    pub runs: Vec<RunSummary>,
}

fn check(args: &CnfArgs) -> Result<ToyDensity, CliError> {
    let invalid = |name, reason: &str| {
        Err(CliError::InvalidArgument {
            name,
            reason: reason.to_string(),
        })
    };
    if args.runs.is_empty() {
        return invalid("--runs", "name at least one of plain, rnode");
    }
    for (name, v) in [
        ("--iters", args.iters as usize),
        ("--batch", args.batch),
        ("--blocks", args.blocks),
        ("--eval-every", args.eval_every as usize),
        ("--samples", args.samples),
    ] {
        if v == 0 {
            return invalid(name, "must be at least 1");
        }
    }
    if args.test_size < 3 {
        return invalid("--test-size", "must be at least 3");
    }
    if args.grid < 2 {
        return invalid("--grid", "must be at least 2");
    }
    positive("--tol", args.tol)?;
    positive("--lr", args.lr)?;
    positive("--time-length", args.time_length)?;
    if !(args.weight_decay.is_finite() && args.weight_decay >= 0.0) {
        return invalid("--weight-decay", "must be finite and >= 0");
    }
    Rnode::new(args.kinetic, args.jacobian)?;
    Ok(ToyDensity::from_name(&args.data)?)
}

/// Runs the job in the chosen precision: trains each run, prints the table, writes
/// `cnf.json` and the plots.
pub fn run(args: &CnfArgs) -> Result<CnfReport, CliError> {
    let data = check(args)?;
    match args.precision {
        PrecisionArg::F32 => run_typed::<f32>(args, data),
        PrecisionArg::F64 => run_typed::<f64>(args, data),
    }
}

fn run_typed<T: Float>(args: &CnfArgs, data: ToyDensity) -> Result<CnfReport, CliError> {
    let train_ref: Vec<T> = data.sample(20_000, &mut StdRng::seed_from_u64(args.seed ^ 0xA11));
    let test: Vec<T> = data.sample(
        args.test_size,
        &mut StdRng::seed_from_u64(args.seed ^ 0x7E57),
    );
    let gaussian_nll = GaussianBaseline::fit(&train_ref, 2)?.nll(&test);
    let base = CnfConfig {
        hidden: args.hidden.clone(),
        n_blocks: args.blocks,
        time_length: args.time_length,
        divergence: args.divergence.divergence(),
        method: args.method,
        rtol: args.tol,
        atol: args.tol,
        seed: args.seed,
        ..CnfConfig::toy()
    };
    println!(
        "CNF on {} ({} block(s) of 2-{}-2 concat-squash, {} trace, {} tol {:e}, batch {}, {} iterations, {:?})",
        data.name(),
        args.blocks,
        args.hidden
            .iter()
            .map(|h| h.to_string())
            .collect::<Vec<_>>()
            .join("-"),
        base.divergence.name(),
        args.method.name(),
        args.tol,
        args.batch,
        args.iters,
        args.precision,
    );
    let mut runs = Vec::new();
    let mut n_params = 0;
    for &which in &args.runs {
        let rnode = match which {
            RunArg::Plain => Rnode::off(),
            RunArg::Rnode => Rnode::new(args.kinetic, args.jacobian)?,
        };
        let mut flow = Cnf::<T>::new(CnfConfig {
            rnode,
            ..base.clone()
        })?;
        n_params = flow.params().n_params();
        let summary = train_run(which, &mut flow, data, &test, args)?;
        density_plot(&mut flow, data, which, args)?;
        runs.push(summary);
    }
    let report = CnfReport {
        n_params,
        gaussian_nll,
        runs,
    };
    print_table(&report);
    write_json(
        &args.out.join("cnf.json"),
        &json!({ "settings": args, "report": &report }),
    )?;
    plots(&report, args)?;
    println!("wrote {}", args.out.display());
    Ok(report)
}

fn label(which: RunArg) -> &'static str {
    match which {
        RunArg::Plain => "plain",
        RunArg::Rnode => "rnode",
    }
}

fn train_run<T: Float>(
    which: RunArg,
    flow: &mut Cnf<T>,
    data: ToyDensity,
    test: &[T],
    args: &CnfArgs,
) -> Result<RunSummary, CliError> {
    let adam = Adam::new(AdamConfig {
        lr: args.lr,
        weight_decay: args.weight_decay,
        ..AdamConfig::default()
    })?;
    let mut trainer = Trainer::new(adam, TrainConfig::epochs(1)?);
    let mut rng = StdRng::seed_from_u64(args.seed ^ 0xBA7C);
    let bar = ProgressBar::new(args.iters);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>6} [{elapsed_precise}] {bar:32} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_prefix(label(which));
    let mut history = Vec::with_capacity(args.iters as usize);
    let mut test_curve = Vec::new();
    let mut train_seconds = 0.0;
    for iter in 1..=args.iters {
        let batch = data.batch::<T>(args.batch, &mut rng);
        let start = Instant::now();
        let out = trainer.step(flow, &batch)?;
        let seconds = start.elapsed().as_secs_f64();
        train_seconds += seconds;
        let m = trainer.metrics();
        let point = IterPoint {
            iter,
            loss: out.loss,
            nll: m.get("nll").unwrap_or(f64::NAN),
            nfe_forward: m.get("nfe_forward").unwrap_or(0.0),
            nfe_backward: m.get("nfe_backward").unwrap_or(0.0),
            seconds,
        };
        bar.set_message(format!(
            "loss {:.3} nfe {:.0}/{:.0}",
            point.loss, point.nfe_forward, point.nfe_backward
        ));
        history.push(point);
        if iter % args.eval_every == 0 || iter == args.iters {
            let nll = flow.nll(test, Divergence::Exact)?;
            test_curve.push((iter, nll));
        }
        bar.inc(1);
    }
    bar.finish();
    let n = history.len() as f64;
    let rnode = flow.config().rnode;
    Ok(RunSummary {
        run: label(which),
        rnode: [rnode.kinetic, rnode.jacobian],
        test_nll: test_curve.last().map_or(f64::NAN, |p| p.1),
        test_curve,
        nfe_forward: history.iter().map(|h| h.nfe_forward).sum::<f64>() / n,
        nfe_backward: history.iter().map(|h| h.nfe_backward).sum::<f64>() / n,
        seconds_per_iter: train_seconds / n,
        train_seconds,
        end_times: flow.end_times(),
        history,
    })
}

fn print_table(report: &CnfReport) {
    println!(
        "\n{:>6} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "run", "test NLL", "NFE fwd", "NFE bwd", "s/iter", "train s"
    );
    println!(
        "{:>6} {:>10.4} {:>10} {:>10} {:>10} {:>10}",
        "gauss", report.gaussian_nll, "-", "-", "-", "-"
    );
    for r in &report.runs {
        println!(
            "{:>6} {:>10.4} {:>10.1} {:>10.1} {:>10.4} {:>10.1}",
            r.run, r.test_nll, r.nfe_forward, r.nfe_backward, r.seconds_per_iter, r.train_seconds
        );
    }
    if let (Some(p), Some(r)) = (
        report.runs.iter().find(|r| r.run == "plain"),
        report.runs.iter().find(|r| r.run == "rnode"),
    ) {
        println!(
            "RNODE vs plain: {:.2}x fewer evaluations per iteration, {:.2}x less training time (test NLL {:.4} vs {:.4})",
            (p.nfe_forward + p.nfe_backward) / (r.nfe_forward + r.nfe_backward),
            p.train_seconds / r.train_seconds,
            r.test_nll,
            p.test_nll
        );
    }
}

fn plots(report: &CnfReport, args: &CnfArgs) -> Result<(), CliError> {
    let mut nfe = Figure::new(
        "Field evaluations per iteration (running mean, 0.97)",
        "iteration",
        "evaluations",
    );
    let mut nll = Figure::new("Negative log-likelihood", "iteration", "NLL");
    for r in &report.runs {
        let pts =
            |f: fn(&IterPoint) -> f64| r.history.iter().map(|h| (h.iter as f64, f(h))).collect();
        nfe = nfe
            .with(Series::line(
                format!("{} forward", r.run),
                running_mean(pts(|h| h.nfe_forward)),
            ))
            .with(Series::line(
                format!("{} backward", r.run),
                running_mean(pts(|h| h.nfe_backward)),
            ));
        nll = nll
            .with(Series::line(format!("{} batch NLL", r.run), pts(|h| h.nll)))
            .with(Series::line_markers(
                format!("{} test NLL", r.run),
                r.test_curve.iter().map(|&(i, v)| (i as f64, v)).collect(),
            ));
    }
    nll = nll.with(Series::line(
        "Gaussian baseline (test)",
        vec![
            (1.0, report.gaussian_nll),
            (args.iters as f64, report.gaussian_nll),
        ],
    ));
    nfe.save(&args.out, "nfe")?;
    nll.save(&args.out, "nll")?;
    Ok(())
}

/// Exponential running mean (FFJORD's `RunningAverageMeter(0.97)`) of the y values.
fn running_mean(points: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
    let mut avg = None;
    points
        .into_iter()
        .map(|(x, y)| {
            let a = avg.map_or(y, |a: f64| 0.97 * a + 0.03 * y);
            avg = Some(a);
            (x, a)
        })
        .collect()
}

/// Square plotting window `[−l, l]²` of the toy densities (FFJORD's is `[−4, 4]²`).
const LIM: f64 = 4.0;

/// The three panels: data histogram, learned density on the grid, sample histogram.
fn density_plot<T: Float>(
    flow: &mut Cnf<T>,
    data: ToyDensity,
    which: RunArg,
    args: &CnfArgs,
) -> Result<(), CliError> {
    let n = args.grid;
    let h = 2.0 * LIM / n as f64;
    let mut grid = Vec::with_capacity(2 * n * n);
    for i in 0..n {
        for j in 0..n {
            // Row i from the top (y decreasing), column j (x increasing).
            grid.push(T::from_f64_const(-LIM + (j as f64 + 0.5) * h));
            grid.push(T::from_f64_const(LIM - (i as f64 + 0.5) * h));
        }
    }
    let logp = flow.log_density(&grid, Divergence::Exact)?;
    let density: Vec<f64> = logp.iter().map(|l| l.to_f64_lossy().exp()).collect();
    let samples = flow.sample(args.samples, args.seed ^ 0x5A)?;
    let truth: Vec<T> = data.sample(args.samples, &mut StdRng::seed_from_u64(args.seed ^ 0xDA7A));
    let panels = [
        ("data", histogram(&truth, n)),
        ("density", density),
        ("samples", histogram(&samples, n)),
    ];
    let path = args.out.join(format!("density_{}.png", label(which)));
    crate::plot::register_font();
    write_atomic_with(
        &path,
        |tmp: &Path| -> Result<(), String> {
            let side = 300u32;
            let root = BitMapBackend::new(tmp, (3 * side, side + 30)).into_drawing_area();
            root.fill(&WHITE).map_err(|e| e.to_string())?;
            let areas = root.split_evenly((1, 3));
            for (area, (title, values)) in areas.iter().zip(&panels) {
                let (top, body) = area.split_vertically(30);
                top.titled(title, ("sans-serif", 20))
                    .map_err(|e| e.to_string())?;
                let max = values.iter().copied().fold(0.0f64, f64::max).max(1e-300);
                let (w, _) = body.dim_in_pixel();
                let cell = f64::from(w.min(side)) / n as f64;
                for i in 0..n {
                    for j in 0..n {
                        let v = (values[i * n + j] / max).clamp(0.0, 1.0);
                        let c = viridis(v);
                        let (x0, y0) = ((j as f64 * cell) as i32, (i as f64 * cell) as i32);
                        let (x1, y1) = (
                            ((j + 1) as f64 * cell) as i32,
                            ((i + 1) as f64 * cell) as i32,
                        );
                        body.draw(&Rectangle::new([(x0, y0), (x1, y1)], c.filled()))
                            .map_err(|e| e.to_string())?;
                    }
                }
            }
            root.present().map_err(|e| e.to_string())
        },
        |reason| CliError::Plot {
            path: path.clone(),
            reason,
        },
    )?;
    Ok(())
}

/// A normalised 2-D histogram of `points` (row-major `[m, 2]`) on the plot's grid, in
/// the same cell order as the density panel.
fn histogram<T: Float>(points: &[T], n: usize) -> Vec<f64> {
    let mut counts = vec![0.0; n * n];
    let h = 2.0 * LIM / n as f64;
    for p in points.chunks_exact(2) {
        let (x, y) = (p[0].to_f64_lossy(), p[1].to_f64_lossy());
        let j = ((x + LIM) / h).floor();
        let i = ((LIM - y) / h).floor();
        if (0.0..n as f64).contains(&i) && (0.0..n as f64).contains(&j) {
            counts[i as usize * n + j as usize] += 1.0;
        }
    }
    counts
}

/// Viridis-like colour of `v ∈ [0, 1]` (linear between five anchors of matplotlib's map).
fn viridis(v: f64) -> RGBColor {
    const ANCHORS: [(f64, f64, f64); 5] = [
        (68.0, 1.0, 84.0),
        (59.0, 82.0, 139.0),
        (33.0, 145.0, 140.0),
        (94.0, 201.0, 98.0),
        (253.0, 231.0, 37.0),
    ];
    let x = v.clamp(0.0, 1.0) * 4.0;
    let k = (x.floor() as usize).min(3);
    let f = x - k as f64;
    let (a, b) = (ANCHORS[k], ANCHORS[k + 1]);
    let mix = |p: f64, q: f64| (p + f * (q - p)).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiny_run_writes_report_and_plots() {
        let dir = std::env::temp_dir().join(format!("cli-cnf-{}", std::process::id()));
        let args = CnfArgs {
            data: "moons".into(),
            iters: 3,
            hidden: vec![8],
            tol: 1e-3,
            eval_every: 2,
            test_size: 50,
            grid: 12,
            samples: 50,
            lr: 1e-2,
            out: dir.clone(),
            ..CnfArgs::default()
        };
        let report = run(&args).unwrap();
        assert_eq!(report.runs.len(), 2);
        for r in &report.runs {
            assert!(r.test_nll.is_finite() && r.nfe_forward > 0.0 && r.history.len() == 3);
            assert_eq!(r.test_curve.len(), 2);
        }
        for f in [
            "cnf.json",
            "density_plain.png",
            "density_rnode.png",
            "nfe.png",
            "nll.svg",
        ] {
            assert!(dir.join(f).exists(), "{f} missing");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_options_are_errors() {
        let bad = [
            CnfArgs {
                data: "nope".into(),
                ..CnfArgs::default()
            },
            CnfArgs {
                iters: 0,
                ..CnfArgs::default()
            },
            CnfArgs {
                tol: -1.0,
                ..CnfArgs::default()
            },
            CnfArgs {
                kinetic: -1.0,
                ..CnfArgs::default()
            },
            CnfArgs {
                runs: vec![],
                ..CnfArgs::default()
            },
        ];
        for args in bad {
            assert!(run(&args).is_err());
        }
    }
}
