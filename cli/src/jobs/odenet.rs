//! `neuralode odenet`: the image classifiers of Chen et al. 2018, §7.1 (ODE-Net, RK-Net,
//! ResNet, see [`models::odenet`]) trained on a shipped data set, with the paper's
//! comparison table (test error, parameters, measured peak memory of the backward pass,
//! function evaluations per batch, time per epoch), learning-curve and NFE plots, and a
//! sweep of ODE-Net's and RK-Net's backward memory against the number of solver steps.
//!
//! # Scale
//!
//! The paper trains on the full MNIST (60,000 images, 64 channels, 160 epochs on a GPU)
//! and reports ODE-Net 0.42 % test error with 0.22 M parameters, RK-Net 0.47 % with
//! 0.22 M and ResNet 0.41 % with 0.60 M. This job trains on the 1,797 8×8 digits
//! (default) or the 5,000-image MNIST subset, with 16 channels and a few epochs on a
//! CPU: the *shapes* of the comparison (ODE-Net and RK-Net with the same, fewer,
//! parameters than ResNet; how backward memory grows with the number of solver steps)
//! are what is compared, not the absolute error rates.
//!
//! The memory sweep runs one batch at several tolerances with three gradients: ODE-Net
//! with the checkpointed adjoint it trains with (keeps every step's dense output: grows
//! with the steps), ODE-Net with Chen et al.'s backsolve adjoint (keeps no trajectory:
//! flat) and RK-Net (backpropagation through the stages: grows with the steps). On the
//! digits the ODE state is small (`batch × c × 2 × 2`), so the growth is small next to
//! the rest of the network's tape; the `growth` column isolates it.
//!
//! # Memory
//!
//! The `neuralode` binary runs on [`alloc_count::Counting`], which tracks the bytes
//! the process holds. For the first batch of every epoch (and every batch of the
//! sweep) the job starts a fresh tape, reads the level before the forward pass, resets
//! the high-water mark after it, runs the backward pass, and records `peak − level
//! before the forward pass`: what the forward pass kept alive for the gradient (tape,
//! stored trajectory) plus the backward pass's own buffers. The other batches reuse the
//! tape's buffers, as a training loop should (allocating them afresh costs page faults
//! and zeroing every batch), and are not measured.
//!
//! faer's GEMM reserves a 960 MiB thread-local workspace (`Vec::with_capacity`, pages
//! never touched, so not resident) at its first call on a thread; the job makes that
//! call before training so that no measurement counts it.

use std::path::PathBuf;
use std::time::Instant;

use adjoint::{GradStats, GradientMode, Threads};
use autodiff::Tape;
use autodiff::optim::{Adam, Optimizer};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use models::datasets::{
    BatchOptions, DataLoader, ImageDataset, Normalization, load_digits, load_mnist_5k,
    stratified_split,
};
use models::odenet::{
    ConvNetConfig, ImageClassifier, OdeNet, OdeNetConfig, ResNet, ResNetConfig, RkNet, StepControl,
};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::Serialize;
use serde_json::json;

use super::positive;
use crate::CliError;
use crate::output::write_json;
use crate::plot::{Figure, Series};

/// The paper's figures (Chen et al. 2018, Table 1, full MNIST): model, test error (%),
/// parameters (millions).
pub const PAPER: [(&str, f64, f64); 3] = [
    ("ODE-Net", 0.42, 0.22),
    ("RK-Net", 0.47, 0.22),
    ("ResNet", 0.41, 0.60),
];

/// `--models`: which classifiers to train.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelArg {
    /// ODE-Net: Dopri5 ODE block, checkpointed adjoint.
    Odenet,
    /// RK-Net: the same block, gradient through the solver's stages.
    Rknet,
    /// ResNet: six residual blocks.
    Resnet,
}

impl ModelArg {
    /// The name in tables and plots.
    pub fn label(self) -> &'static str {
        match self {
            ModelArg::Odenet => "ODE-Net",
            ModelArg::Rknet => "RK-Net",
            ModelArg::Resnet => "ResNet",
        }
    }
}

/// `--step-control`: how an ODE block's adaptive solve chooses its steps (`odenet`, `latent`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StepArg {
    /// `Options::neural_ode`: the I controller and RMS first step of torchdiffeq and diffrax.
    Peers,
    /// `Options::with_tol`: Hairer's PI controller and `HINIT`.
    Hairer,
}

impl From<StepArg> for StepControl {
    fn from(a: StepArg) -> Self {
        match a {
            StepArg::Peers => StepControl::Peers,
            StepArg::Hairer => StepControl::Hairer,
        }
    }
}

/// `--data`: the shipped data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DataArg {
    /// scikit-learn's 1,797 8×8 digits.
    Digits,
    /// The 5,000-image 28×28 MNIST subset.
    Mnist5k,
}

/// Options of `neuralode odenet`.
#[derive(Debug, Clone, Args, Serialize)]
pub struct OdenetArgs {
    /// Models to train, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "odenet,rknet,resnet"
    )]
    pub models: Vec<ModelArg>,
    /// Data set (a stratified 80/20 train/test split, standardised with the training
    /// set's statistics).
    #[arg(long, value_enum, default_value_t = DataArg::Digits)]
    pub data: DataArg,
    /// Training epochs per model.
    #[arg(long, default_value_t = 8, value_parser = crate::checks::whole_u64, allow_negative_numbers = true)]
    pub epochs: u64,
    /// Mini-batch size.
    #[arg(long, default_value_t = 64, value_parser = crate::checks::count, allow_negative_numbers = true)]
    pub batch: usize,
    /// Channels of the feature maps (64 in the paper).
    #[arg(long, default_value_t = 16, value_parser = crate::checks::count, allow_negative_numbers = true)]
    pub channels: usize,
    /// Adam's learning rate.
    #[arg(long, default_value_t = 1e-2, value_parser = crate::checks::positive_f64, allow_negative_numbers = true)]
    pub lr: f64,
    /// Seed of the split, the initialisation and the shuffles.
    #[arg(long, default_value_t = 0, value_parser = crate::checks::whole_u64, allow_negative_numbers = true)]
    pub seed: u64,
    /// rtol = atol of the ODE block's Dopri5 solve (1e-3 in the paper).
    #[arg(long, default_value_t = 1e-3, value_parser = crate::checks::positive_f64, allow_negative_numbers = true)]
    pub tol: f64,
    /// Step control of the Dopri5 solve: `peers` (torchdiffeq's and diffrax's I controller
    /// and first step, the paper's code's steps) or `hairer` (Hairer's PI controller).
    #[arg(long, value_enum, default_value_t = StepArg::Peers)]
    pub step_control: StepArg,
    /// Samples per chunk of the ODE field's evaluations, split over the threads of
    /// `--threads` (all cores by default); 0: the whole batch on one tape (the fastest on
    /// one thread). Results depend on this value, never on the threads.
    #[arg(long, default_value_t = models::odenet::DEFAULT_CHUNK_SAMPLES, value_parser = crate::checks::whole_usize, allow_negative_numbers = true)]
    pub chunk_samples: usize,
    /// Use at most N training and N test images (a seeded random subset), for quick runs.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Tolerances of the memory sweep (ODE-Net and RK-Net, one batch each), comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1e-1,1e-3,1e-4,1e-5,1e-6"
    )]
    pub sweep_tols: Vec<f64>,
    /// Output directory.
    #[arg(long, default_value = "out/odenet")]
    pub out: PathBuf,
}

impl Default for OdenetArgs {
    fn default() -> Self {
        use clap::Parser;
        #[derive(Parser)]
        struct Wrapper {
            #[command(flatten)]
            args: OdenetArgs,
        }
        Wrapper::parse_from(["odenet"]).args
    }
}

/// One epoch of one model.
#[derive(Debug, Clone, Serialize)]
pub struct EpochPoint {
    /// Epoch, from 1.
    pub epoch: u64,
    /// Mean training loss over the epoch's batches.
    pub train_loss: f64,
    /// Test error (%) after the epoch.
    pub test_error: f64,
    /// Wall time of the epoch's training steps (s).
    pub seconds: f64,
}

/// One row of the comparison table.
#[derive(Debug, Clone, Serialize)]
pub struct ModelRow {
    /// "ODE-Net", "RK-Net" or "ResNet".
    pub model: &'static str,
    /// Test error (%) after the last epoch.
    pub test_error: f64,
    /// Number of parameters.
    pub n_params: usize,
    /// Largest measured peak memory of a backward pass over training (bytes above the
    /// level before the batch's forward pass, on a fresh tape: the first batch of each
    /// epoch).
    pub peak_backward_bytes: usize,
    /// Mean field evaluations per batch in the forward solve (ODE models; 0 for ResNet).
    pub nfe_forward: f64,
    /// Mean field evaluations per batch in the backward pass (re-evaluations plus
    /// vector–Jacobian products; 0 for ResNet).
    pub nfe_backward: f64,
    /// Mean wall time per epoch (s).
    pub seconds_per_epoch: f64,
    /// Per-epoch history.
    pub epochs: Vec<EpochPoint>,
    /// Per-batch (forward, backward) evaluations over training (ODE models).
    pub nfe_per_batch: Vec<(usize, usize)>,
}

/// One row of the memory sweep.
#[derive(Debug, Clone, Serialize)]
pub struct SweepRow {
    /// "ODE-Net/checkpointed" (the adjoint it trains with), "ODE-Net/backsolve" (Chen et
    /// al.'s adjoint) or "RK-Net".
    pub model: &'static str,
    /// rtol = atol of the solve.
    pub tol: f64,
    /// Accepted steps of the forward solve.
    pub steps: usize,
    /// Field evaluations of the forward solve.
    pub nfe_forward: usize,
    /// Measured peak memory of the backward pass (bytes, as in the main table).
    pub peak_backward_bytes: usize,
    /// `peak_backward_bytes` minus the same model's at the first (loosest) tolerance:
    /// what the extra steps cost.
    pub growth_bytes: i64,
}

/// What `neuralode odenet` reports (also written as `odenet.json`).
#[derive(Debug, Clone, Serialize)]
pub struct OdenetReport {
    /// Training and test images.
    pub n_train: usize,
    /// Test images.
    pub n_test: usize,
    /// The comparison table, one row per trained model.
    pub rows: Vec<ModelRow>,
    /// Backward memory against solver steps.
    pub memory_sweep: Vec<SweepRow>,
}

/// The three models behind one interface.
enum Net {
    Ode(OdeNet<f32>),
    Rk(RkNet<f32>),
    Res(ResNet<f32>),
}

impl Net {
    fn classifier(&mut self) -> &mut dyn ImageClassifier<f32> {
        match self {
            Net::Ode(n) => n,
            Net::Rk(n) => n,
            Net::Res(n) => n,
        }
    }

    fn stats(&self) -> Option<GradStats> {
        match self {
            Net::Ode(n) => n.stats(),
            Net::Rk(n) => n.stats(),
            Net::Res(_) => None,
        }
    }
}

/// What one gradient step measured.
struct StepMeasure {
    loss: f64,
    /// Measured on a fresh tape only.
    peak_backward_bytes: Option<usize>,
    stats: Option<GradStats>,
}

/// One forward and backward pass on `tape`, returning the gradient. With `fresh`, the
/// tape is replaced by a new one first, so that the backward peak counts every buffer
/// the pass allocates (the memory measurement of the [module documentation](self));
/// otherwise the tape is reset and its buffers reused, as a training loop does (fresh
/// buffers every batch cost page faults and zeroing: about 15 % of a ResNet batch), and
/// the reported peak is `None`.
fn measured_step(
    net: &mut Net,
    tape: &mut Tape<f32>,
    fresh: bool,
    images: &[f32],
    shape: &[usize],
    labels: &[usize],
) -> Result<(StepMeasure, Vec<f32>), CliError> {
    if fresh {
        *tape = Tape::new();
    } else {
        tape.reset();
    }
    let before = alloc_count::current_bytes();
    tape.set_recording(true);
    let c = net.classifier();
    let theta = tape.leaf(c.params(), &[c.n_params()])?;
    let x = tape.constant(images, shape)?;
    let loss = c.loss(tape, theta, x, labels)?;
    let value = f64::from(loss.item()?);
    alloc_count::reset_peak();
    tape.backward_scalar(loss)?;
    let peak = alloc_count::peak_bytes();
    let grad = theta.grad()?;
    Ok((
        StepMeasure {
            loss: value,
            peak_backward_bytes: fresh.then(|| peak.saturating_sub(before)),
            stats: net.stats(),
        },
        grad,
    ))
}

/// One matrix product on this thread and on every thread of the current rayon pool (the
/// ODE field's chunks run there), so that faer's GEMM makes its one-time thread-local
/// workspace reservation (see the [module documentation](self)) before any memory
/// measurement.
fn reserve_gemm_workspace() -> Result<(), CliError> {
    let one = || -> Result<(), CliError> {
        let tape = Tape::<f32>::new();
        let a = tape.constant(&[0.5; 128 * 128], &[128, 128])?;
        a.matmul(a).sum().item()?;
        Ok(())
    };
    one()?;
    rayon::broadcast(|_| one()).into_iter().collect()
}

/// Groups of the group norms: the largest divisor of `c` not above `min(32, c/2)` (8
/// for 16 channels, as [`ConvNetConfig::digits`]), at least 1.
fn groups_for(c: usize) -> usize {
    (1..=(c / 2).clamp(1, 32))
        .rev()
        .find(|g| c.is_multiple_of(*g))
        .unwrap_or(1)
}

/// A seeded random subset of at most `limit` images.
fn limited(
    set: ImageDataset<f32>,
    limit: Option<usize>,
    seed: u64,
) -> Result<ImageDataset<f32>, CliError> {
    match limit {
        Some(n) if n < set.len() => {
            let mut idx: Vec<usize> = (0..set.len()).collect();
            idx.shuffle(&mut StdRng::seed_from_u64(seed));
            idx.truncate(n);
            Ok(set.subset(&idx)?)
        }
        _ => Ok(set),
    }
}

fn check(args: &OdenetArgs) -> Result<(), CliError> {
    let invalid = |name, reason: &str| {
        Err(CliError::InvalidArgument {
            name,
            reason: reason.to_string(),
        })
    };
    if args.models.is_empty() {
        return invalid("--models", "name at least one of odenet, rknet, resnet");
    }
    if args.epochs == 0 {
        return invalid("--epochs", "must be at least 1");
    }
    if args.batch == 0 {
        return invalid("--batch", "must be at least 1");
    }
    if args.channels < 2 {
        return invalid("--channels", "must be at least 2");
    }
    if args.limit == Some(0) {
        return invalid("--limit", "must be at least 1");
    }
    positive("--lr", args.lr)?;
    positive("--tol", args.tol)?;
    for &t in &args.sweep_tols {
        positive("--sweep-tols", t)?;
    }
    Ok(())
}

/// Runs the job: trains each model, prints the tables, writes `odenet.json` and the plots.
pub fn run(args: &OdenetArgs) -> Result<OdenetReport, CliError> {
    check(args)?;
    crate::checks::prepare_out_dir(&args.out)?;
    reserve_gemm_workspace()?;
    let (mut data, base) = match args.data {
        DataArg::Digits => (load_digits::<f32>()?, ConvNetConfig::digits()),
        DataArg::Mnist5k => (load_mnist_5k::<f32>()?, ConvNetConfig::mnist()),
    };
    data.to_unit_range();
    let (train, test) = stratified_split(&data, 0.2, args.seed)?;
    let mut train = limited(train, args.limit, args.seed ^ 0x7EA1)?;
    let mut test = limited(test, args.limit, args.seed ^ 0x7E57)?;
    let norm = Normalization::fit(&train)?;
    norm.apply(&mut train)?;
    norm.apply(&mut test)?;
    let (n_train, n_test) = (train.len(), test.len());
    let loader = train.into_loader(BatchOptions {
        seed: args.seed,
        ..BatchOptions::new(args.batch)
    })?;
    let net_config = ConvNetConfig {
        channels: args.channels,
        groups: groups_for(args.channels),
        seed: args.seed,
        ..base
    };
    let ode_config = OdeNetConfig {
        rtol: args.tol,
        atol: args.tol,
        step_control: args.step_control.into(),
        chunk_samples: args.chunk_samples,
        ..OdeNetConfig::new(net_config)
    };
    println!(
        "ODE-Net / RK-Net / ResNet on {} ({n_train} training, {n_test} test images, {} channels, {} epochs, batch {}, tol {:e})",
        match args.data {
            DataArg::Digits => "the 8x8 digits",
            DataArg::Mnist5k => "the MNIST 5k subset",
        },
        args.channels,
        args.epochs,
        args.batch,
        args.tol
    );

    let mut rows = Vec::new();
    let mut trained_ode = None;
    for &which in &args.models {
        let mut net = match which {
            ModelArg::Odenet => Net::Ode(OdeNet::new(&ode_config)?),
            ModelArg::Rknet => Net::Rk(RkNet::new(&ode_config)?),
            ModelArg::Resnet => Net::Res(ResNet::new(&ResNetConfig::new(net_config))?),
        };
        // The field's chunks run on the pool `--threads` sized (all cores by default).
        net.classifier().set_threads(&Threads::Current)?;
        let row = train_one(which, &mut net, &loader, &test, args)?;
        if let Net::Ode(n) = net {
            trained_ode = Some(n.params().to_vec());
        }
        rows.push(row);
    }
    let memory_sweep = memory_sweep(&ode_config, trained_ode.as_deref(), &loader, args)?;
    let report = OdenetReport {
        n_train,
        n_test,
        rows,
        memory_sweep,
    };
    print_tables(&report);

    let dir = &args.out;
    write_json(
        &dir.join("odenet.json"),
        &json!({
            "settings": args,
            "paper": PAPER.iter().map(|(m, e, p)| json!({
                "model": m, "test_error": e, "n_params_millions": p,
            })).collect::<Vec<_>>(),
            "note": "scaled down from the paper (full MNIST, 64 channels): compare shapes, not absolute error rates",
            "report": &report,
        }),
    )?;
    plots(&report, args)?;
    println!("wrote {}", dir.display());
    Ok(report)
}

fn train_one(
    which: ModelArg,
    net: &mut Net,
    loader: &models::datasets::ImageLoader<f32>,
    test: &ImageDataset<f32>,
    args: &OdenetArgs,
) -> Result<ModelRow, CliError> {
    let mut adam = Adam::with_lr(args.lr)?;
    let bar = ProgressBar::new(args.epochs * loader.n_batches() as u64);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>8} [{elapsed_precise}] {bar:32} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_prefix(which.label());
    let mut epochs = Vec::new();
    let mut nfe_per_batch = Vec::new();
    let mut peak = 0usize;
    let mut tape = Tape::new();
    for epoch in 0..args.epochs {
        let start = Instant::now();
        let (mut loss_sum, mut batches) = (0.0, 0usize);
        for (i, batch) in loader.batches(epoch).enumerate() {
            // Memory is measured on a fresh tape at the first batch of every epoch.
            let (m, grad) = measured_step(
                net,
                &mut tape,
                i == 0,
                &batch.images,
                &batch.shape,
                &batch.labels,
            )?;
            if !m.loss.is_finite() || grad.iter().any(|g| !g.is_finite()) {
                return Err(CliError::InvalidArgument {
                    name: "--lr",
                    reason: format!(
                        "{} diverged (non-finite loss or gradient at epoch {}): lower the learning rate",
                        which.label(),
                        epoch + 1
                    ),
                });
            }
            adam.step(net.classifier().params_mut(), &grad)?;
            if let Some(bytes) = m.peak_backward_bytes {
                peak = peak.max(bytes);
            }
            if let Some(s) = m.stats {
                nfe_per_batch.push((s.forward.nfe, s.backward_nfe + s.backward_vjp));
            }
            loss_sum += m.loss;
            batches += 1;
            bar.set_message(format!("epoch {} loss {:.3}", epoch + 1, m.loss));
            bar.inc(1);
        }
        let seconds = start.elapsed().as_secs_f64();
        let acc = net.classifier().accuracy(test.images(), test.labels())?;
        epochs.push(EpochPoint {
            epoch: epoch + 1,
            train_loss: loss_sum / batches.max(1) as f64,
            test_error: 100.0 * (1.0 - acc),
            seconds,
        });
    }
    bar.finish();
    let mean = |f: fn(&(usize, usize)) -> usize| {
        if nfe_per_batch.is_empty() {
            0.0
        } else {
            nfe_per_batch.iter().map(f).sum::<usize>() as f64 / nfe_per_batch.len() as f64
        }
    };
    Ok(ModelRow {
        model: which.label(),
        test_error: epochs.last().map_or(f64::NAN, |e| e.test_error),
        n_params: net.classifier().n_params(),
        peak_backward_bytes: peak,
        nfe_forward: mean(|p| p.0),
        nfe_backward: mean(|p| p.1),
        seconds_per_epoch: epochs.iter().map(|e| e.seconds).sum::<f64>() / epochs.len() as f64,
        epochs,
        nfe_per_batch,
    })
}

/// The models of the memory sweep.
const SWEPT: [(&str, ModelArg); 3] = [
    ("ODE-Net/checkpointed", ModelArg::Odenet),
    ("ODE-Net/backsolve", ModelArg::Odenet),
    ("RK-Net", ModelArg::Rknet),
];

/// One batch of ODE-Net (checkpointed and backsolve adjoints) and of RK-Net at each
/// tolerance (parameters: the trained
/// ODE-Net's if it was trained, else the initialisation): steps, evaluations and the
/// measured backward memory.
fn memory_sweep(
    config: &OdeNetConfig,
    trained: Option<&[f32]>,
    loader: &models::datasets::ImageLoader<f32>,
    args: &OdenetArgs,
) -> Result<Vec<SweepRow>, CliError> {
    let Some(batch) = loader.batches(0).next() else {
        return Ok(Vec::new());
    };
    let mut rows = Vec::new();
    for &tol in &args.sweep_tols {
        let config = OdeNetConfig {
            rtol: tol,
            atol: tol,
            ..*config
        };
        for (label, which) in SWEPT {
            let mut net = match which {
                ModelArg::Rknet => Net::Rk(RkNet::new(&config)?),
                _ => Net::Ode(OdeNet::new(&config)?),
            };
            if let Net::Ode(n) = &mut net
                && label == "ODE-Net/backsolve"
            {
                n.set_mode(GradientMode::backsolve(true));
            }
            if let Some(theta) = trained {
                net.classifier().params_mut().copy_from_slice(theta);
            }
            let mut tape = Tape::new();
            let (m, _) = measured_step(
                &mut net,
                &mut tape,
                true,
                &batch.images,
                &batch.shape,
                &batch.labels,
            )?;
            let bytes = m.peak_backward_bytes.unwrap_or(0);
            let s = m.stats.unwrap_or_default();
            let first = rows
                .iter()
                .find(|r: &&SweepRow| r.model == label)
                .map_or(bytes, |r| r.peak_backward_bytes);
            rows.push(SweepRow {
                model: label,
                tol,
                steps: s.forward.accepted,
                nfe_forward: s.forward.nfe,
                peak_backward_bytes: bytes,
                growth_bytes: bytes as i64 - first as i64,
            });
        }
    }
    Ok(rows)
}

fn kib(bytes: usize) -> f64 {
    bytes as f64 / 1024.0
}

fn print_tables(report: &OdenetReport) {
    println!();
    println!(
        "{:<18} {:>11} {:>9} {:>18} {:>12} {:>12} {:>10}",
        "model",
        "test error",
        "params",
        "backward peak KiB",
        "NFE-F/batch",
        "NFE-B/batch",
        "s/epoch"
    );
    for r in &report.rows {
        println!(
            "{:<18} {:>10.2}% {:>9} {:>18.1} {:>12.1} {:>12.1} {:>10.2}",
            r.model,
            r.test_error,
            r.n_params,
            kib(r.peak_backward_bytes),
            r.nfe_forward,
            r.nfe_backward,
            r.seconds_per_epoch
        );
    }
    println!(
        "paper (full MNIST, 64 channels): {}",
        PAPER
            .iter()
            .map(|(m, e, p)| format!("{m} {e:.2}% error, {p:.2} M params"))
            .collect::<Vec<_>>()
            .join("; ")
    );
    println!(
        "scaled down from the paper (smaller data, fewer channels and epochs): compare the shapes, not the absolute figures"
    );
    if report.memory_sweep.is_empty() {
        return;
    }
    println!();
    println!("backward memory vs solver steps (one batch; tighter tolerance, more steps):");
    println!(
        "{:<20} {:>8} {:>6} {:>6} {:>18} {:>16}",
        "model", "tol", "steps", "NFE-F", "backward peak KiB", "growth KiB"
    );
    for r in &report.memory_sweep {
        println!(
            "{:<20} {:>8.0e} {:>6} {:>6} {:>18.1} {:>16.1}",
            r.model,
            r.tol,
            r.steps,
            r.nfe_forward,
            kib(r.peak_backward_bytes),
            r.growth_bytes as f64 / 1024.0
        );
    }
    println!(
        "(growth: over the same model at the loosest tolerance. ODE-Net trains with the checkpointed adjoint, which keeps every step's dense output; Chen et al.'s backsolve adjoint keeps none)"
    );
}

fn plots(report: &OdenetReport, args: &OdenetArgs) -> Result<(), CliError> {
    let dir = &args.out;
    let mut loss = Figure::new("Learning curves", "epoch", "training loss (mean per epoch)");
    let mut error = Figure::new("Test error", "epoch", "test error (%)");
    for r in &report.rows {
        let pts = |f: fn(&EpochPoint) -> f64| {
            r.epochs
                .iter()
                .map(|e| (e.epoch as f64, f(e)))
                .collect::<Vec<_>>()
        };
        loss = loss.with(Series::line_markers(r.model, pts(|e| e.train_loss)));
        error = error.with(Series::line_markers(r.model, pts(|e| e.test_error)));
    }
    loss.save(dir, "learning_curve")?;
    error.save(dir, "test_error")?;
    let mut nfe = Figure::new(
        "Evaluations over training",
        "batch",
        "field evaluations per batch",
    );
    for r in report.rows.iter().filter(|r| !r.nfe_per_batch.is_empty()) {
        let at = |f: fn(&(usize, usize)) -> usize| {
            r.nfe_per_batch
                .iter()
                .enumerate()
                .map(|(i, p)| ((i + 1) as f64, f(p) as f64))
                .collect::<Vec<_>>()
        };
        nfe = nfe
            .with(Series::line(format!("{} forward", r.model), at(|p| p.0)))
            .with(Series::line(format!("{} backward", r.model), at(|p| p.1)));
    }
    if !nfe.series.is_empty() {
        nfe.save(dir, "nfe")?;
    }
    if !report.memory_sweep.is_empty() {
        let mut mem = Figure::new(
            "Backward memory vs solver steps",
            "accepted steps of the forward solve",
            "backward peak growth over the loosest tolerance (KiB)",
        );
        for (model, _) in SWEPT {
            let pts: Vec<(f64, f64)> = report
                .memory_sweep
                .iter()
                .filter(|r| r.model == model)
                .map(|r| (r.steps as f64, r.growth_bytes as f64 / 1024.0))
                .collect();
            mem = mem.with(Series::line_markers(model, pts));
        }
        mem.save(dir, "memory_sweep")?;
    }
    Ok(())
}
