//! The generic training loop: the loss falls (a Neural ODE on a linear system, an ODE
//! classifier on the 8×8 digits), f32 and f64; checkpoint + resume repeats the
//! uninterrupted run; the callback and the step limit stop training; clipping bounds the
//! update; mismatched or malformed checkpoints are errors naming both sides.

use std::path::PathBuf;

use adjoint::{Method, Options};
use autodiff::nn::{Init, Linear, ParamStore};
use autodiff::optim::{Adam, Optimizer, Schedule, Scheduled, Sgd, SgdConfig};
use autodiff::{Float, Tape, Var};
use models::ModelsError;
use models::datasets::{Batch, BatchOptions, ImageDataset, ImageLoader, load_digits};
use models::ode_block::OdeBlock;
use models::training::{
    Control, Metrics, Model, NeuralOde, StepInfo, StopReason, TrainConfig, Trainer, checkpoint,
    trajectory_windows,
};

/// A fresh, empty directory for one test.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("models-training-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temporary directory");
    dir
}

/// Output times of the linear-system data.
const TS: [f64; 3] = [0.0, 0.5, 1.0];

/// `n` trajectories of `ż = A z`, `A = [[-0.1, 1], [-1, -0.1]]` (closed form
/// `e^{-0.1 t} R(t) z0`), from initial states on the unit circle, observed at [`TS`]:
/// example `b` is an "image" `[1, 3, 2]`.
fn rotation_data<T: Float>(n: usize) -> ImageDataset<T> {
    let mut obs = Vec::with_capacity(n * TS.len() * 2);
    for b in 0..n {
        let (x, y) = ((b as f64 * 0.7).cos(), (b as f64 * 0.7).sin());
        for &t in &TS {
            let (c, s, e) = (t.cos(), t.sin(), (-0.1 * t).exp());
            obs.push(T::from_f64_const(e * (c * x + s * y)));
            obs.push(T::from_f64_const(e * (-s * x + c * y)));
        }
    }
    ImageDataset::new(obs, vec![0; n], [1, TS.len(), 2], 1, T::one()).expect("valid data")
}

fn rotation_loader<T: Float>(n: usize, batch: usize, seed: u64) -> ImageLoader<T> {
    rotation_data(n)
        .into_loader(BatchOptions {
            seed,
            ..BatchOptions::new(batch)
        })
        .expect("loader")
}

/// `ż = tanh(z W1ᵀ + b1) W2ᵀ`, hidden width `hidden`, named `name`.
fn mlp_ode<T: Float>(
    name: &str,
    hidden: usize,
    seed: u64,
) -> NeuralOde<T, impl models::training::Field<T>> {
    let mut store = ParamStore::<T>::new(seed);
    let l1 = Linear::new(&mut store, "f.0", 2, hidden, true).expect("layer");
    let l2 = Linear::new(&mut store, "f.2", hidden, 2, false).expect("layer");
    let ts: Vec<T> = TS.iter().map(|&t| T::from_f64_const(t)).collect();
    let options = Options {
        fixed_step: Some(T::from_f64_const(0.125)),
        ..Options::default()
    };
    NeuralOde::new(name, store, 2, &ts, move |_tape, _t, z, th| {
        l2.forward(th, l1.forward(th, z).tanh())
    })
    .expect("model")
    .with_solver(Method::Rk4, options)
}

/// Relative distance `max |a − b| / max(1, max |b|)`.
fn rel_diff<T: Float>(a: &[T], b: &[T]) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(1.0f64, |m, x| m.max(x.to_f64_lossy().abs()));
    a.iter()
        .zip(b)
        .map(|(x, y)| (x.to_f64_lossy() - y.to_f64_lossy()).abs())
        .fold(0.0, f64::max)
        / scale
}

fn continue_all(_: &StepInfo<'_>) -> Control {
    Control::Continue
}

// ---------------------------------------------------------------------------------------
// The loss falls.

fn neural_ode_loss_falls<T: Float>() {
    let loader = rotation_loader::<T>(32, 8, 1);
    let mut model = mlp_ode::<T>("mlp-ode", 16, 3);
    let mut trainer = Trainer::new(
        Adam::with_lr(0.02).expect("adam"),
        TrainConfig::epochs(15).expect("config"),
    );
    let mut losses = Vec::new();
    let mut nfe = 0.0;
    let summary = trainer
        .fit(&mut model, &loader, &mut |info: &StepInfo<'_>| {
            losses.push(info.loss);
            nfe = info.metrics.get("nfe_forward").unwrap_or(0.0);
            Control::Continue
        })
        .expect("training");
    assert_eq!(summary.stop, StopReason::Epochs);
    assert_eq!(summary.steps, 60);
    let last: f64 = losses[56..].iter().sum::<f64>() / 4.0;
    eprintln!(
        "{}: first loss {:.3e}, mean of the last epoch {last:.3e}, nfe {nfe}",
        std::any::type_name::<T>(),
        losses[0]
    );
    assert!(last < 0.05 * losses[0], "{} -> {last}", losses[0]);
    // Rk4 with h = 1/8 on [0, 1]: 8 steps of 4 evaluations (+ the field at the ends).
    assert!((32.0..=34.0).contains(&nfe), "{nfe}");
}

#[test]
fn neural_ode_loss_falls_f64() {
    neural_ode_loss_falls::<f64>();
}

#[test]
fn neural_ode_loss_falls_f32() {
    neural_ode_loss_falls::<f32>();
}

/// The field of the classifier's ODE block: `ż = tanh(z W + b)`, θ = [W (H×H), b (H)].
const H: usize = 8;
type Field<T> = for<'t> fn(&'t Tape<T>, Var<'t, T>, Var<'t, T>, Var<'t, T>) -> Var<'t, T>;

fn tanh_field<'t, T: Float>(
    _tape: &'t Tape<T>,
    _t: Var<'t, T>,
    z: Var<'t, T>,
    th: Var<'t, T>,
) -> Var<'t, T> {
    (z.matmul(th.view(0, &[H, H])) + th.view(H * H, &[H])).tanh()
}

/// Image classifier: linear 64 → H, ODE block on [0, 1], linear H → 10, cross-entropy.
struct DigitsOde<T: Float> {
    store: ParamStore<T>,
    input: Linear,
    output: Linear,
    block: OdeBlock<T, Field<T>>,
    block_offset: usize,
    accuracy: f64,
}

impl<T: Float> DigitsOde<T> {
    fn new(batch: usize, seed: u64) -> Result<Self, ModelsError> {
        let mut store = ParamStore::new(seed);
        let input = Linear::new(&mut store, "input", 64, H, true)?;
        let w = store.register(
            "ode.weight",
            &[H, H],
            Init::Normal {
                mean: 0.0,
                std: 0.1,
            },
        )?;
        store.register("ode.bias", &[H], Init::Zeros)?;
        let output = Linear::new(&mut store, "output", H, 10, true)?;
        let options = Options {
            fixed_step: Some(T::from_f64_const(0.25)),
            ..Options::default()
        };
        let block = OdeBlock::new(&[batch, H], H * H + H, tanh_field::<T> as Field<T>)?
            .with_solver(Method::Rk4, options);
        Ok(Self {
            store,
            input,
            output,
            block,
            block_offset: w.offset(),
            accuracy: 0.0,
        })
    }
}

impl<T: Float> Model<T> for DigitsOde<T> {
    fn name(&self) -> &str {
        "digits-ode"
    }

    fn params(&self) -> &ParamStore<T> {
        &self.store
    }

    fn params_mut(&mut self) -> &mut ParamStore<T> {
        &mut self.store
    }

    fn loss<'t>(
        &mut self,
        tape: &'t Tape<T>,
        theta: Var<'t, T>,
        batch: &Batch<T>,
    ) -> Result<Var<'t, T>, ModelsError> {
        let x = tape.constant(&batch.images, &[batch.len(), 64])?;
        let ts = tape.constant(&[T::zero(), T::one()], &[2])?;
        let z0 = self.input.forward(theta, x);
        let zs = self
            .block
            .apply(z0, theta.view(self.block_offset, &[H * H + H]), ts);
        let logits = self.output.forward(theta, self.block.final_state(zs));
        let values = logits.value()?;
        let correct = values
            .chunks_exact(10)
            .zip(&batch.labels)
            .filter(|(row, label)| {
                let best = (0..10).fold(0, |b, i| if row[i] > row[b] { i } else { b });
                best == **label
            })
            .count();
        self.accuracy = correct as f64 / batch.len() as f64;
        Ok(logits.cross_entropy(&batch.labels))
    }

    fn metrics(&self, metrics: &mut Metrics) {
        metrics.set("accuracy", self.accuracy);
        metrics.set("nfe_forward", self.block.stats().forward.nfe as f64);
    }
}

fn digits_classifier_loss_falls<T: Float>() {
    let batch = 32;
    let mut digits = load_digits::<T>().expect("shipped digits");
    digits.to_unit_range();
    let subset = digits
        .subset(&(0..320).collect::<Vec<_>>())
        .expect("subset");
    let loader = subset
        .into_loader(BatchOptions {
            drop_last: true,
            seed: 5,
            ..BatchOptions::new(batch)
        })
        .expect("loader");
    let mut model = DigitsOde::<T>::new(batch, 0).expect("model");
    let mut trainer = Trainer::new(
        Adam::with_lr(0.02).expect("adam"),
        TrainConfig::epochs(4).expect("config"),
    );
    let (mut losses, mut accuracy) = (Vec::new(), Vec::new());
    trainer
        .fit(&mut model, &loader, &mut |info: &StepInfo<'_>| {
            losses.push(info.loss);
            accuracy.push(info.metrics.get("accuracy").unwrap_or(f64::NAN));
            Control::Continue
        })
        .expect("training");
    assert_eq!(losses.len(), 40);
    let mean = |x: &[f64]| x.iter().sum::<f64>() / x.len() as f64;
    let (l0, l1) = (mean(&losses[..10]), mean(&losses[30..]));
    let (a0, a1) = (mean(&accuracy[..10]), mean(&accuracy[30..]));
    eprintln!(
        "{}: loss {l0:.3} -> {l1:.3}, accuracy {a0:.3} -> {a1:.3}",
        std::any::type_name::<T>()
    );
    assert!(l1 < 0.5 * l0, "{l0} -> {l1}");
    assert!(a1 > 0.8 && a1 > a0, "{a0} -> {a1}");
}

#[test]
fn digits_classifier_loss_falls_f64() {
    digits_classifier_loss_falls::<f64>();
}

#[test]
fn digits_classifier_loss_falls_f32() {
    digits_classifier_loss_falls::<f32>();
}

// ---------------------------------------------------------------------------------------
// Checkpoint and resume.

type Opt = Scheduled<Adam<f64>, Schedule>;

fn scheduled_adam(steps: u64) -> Opt {
    Scheduled::new(
        Adam::with_lr(0.05).expect("adam"),
        Schedule::cosine(0.05, steps, 1e-3)
            .and_then(|s| s.with_warmup(2))
            .expect("schedule"),
    )
}

/// `N` steps, a checkpoint, a resume into a fresh model and trainer, `M` more steps:
/// the parameters, optimizer state, position and learning rate of `N + M` steps.
fn resume_repeats_uninterrupted_run<T: Float, O: Optimizer<T>>(label: &str, opt: impl Fn() -> O) {
    let (n, m) = (6, 5); // 4 batches per epoch: the checkpoint is inside epoch 1
    let loader = rotation_loader::<T>(26, 7, 11); // last batch partial (5)
    let config = |steps| {
        TrainConfig::epochs(10)
            .and_then(|c| c.with_max_steps(steps))
            .and_then(|c| c.with_clip_grad_norm(0.5))
            .expect("config")
    };

    // Uninterrupted: N + M steps.
    let mut whole = mlp_ode::<T>("mlp-ode", 8, 1);
    let mut t_whole = Trainer::new(opt(), config(n + m));
    t_whole
        .fit(&mut whole, &loader, &mut continue_all)
        .expect("training");

    // N steps, checkpoint.
    let dir = temp_dir(&format!("resume-{label}-{}", std::any::type_name::<T>()));
    let mut first = mlp_ode::<T>("mlp-ode", 8, 1);
    let mut t_first = Trainer::new(opt(), config(n));
    let s = t_first
        .fit(&mut first, &loader, &mut continue_all)
        .expect("training");
    assert_eq!(s.stop, StopReason::MaxSteps);
    t_first.save_checkpoint(&first, &dir).expect("save");

    // A fresh process: another initialisation, a fresh optimizer, resume, M more steps.
    let mut second = mlp_ode::<T>("mlp-ode", 8, 99);
    let mut t_second = Trainer::new(opt(), config(n + m));
    let pos = t_second.resume(&mut second, &dir).expect("resume");
    assert_eq!((pos.epoch, pos.batch, pos.step), (1, 2, n));
    assert_eq!(second.params().as_slice(), first.params().as_slice());
    let s = t_second
        .fit(&mut second, &loader, &mut continue_all)
        .expect("training");
    assert_eq!((s.stop, s.steps), (StopReason::MaxSteps, m));

    let d = rel_diff(second.params().as_slice(), whole.params().as_slice());
    let ds = t_second.optimizer().state();
    let dw = t_whole.optimizer().state();
    eprintln!(
        "{label} {}: resumed vs uninterrupted parameters differ by {d:.1e} (relative)",
        std::any::type_name::<T>()
    );
    assert!(d <= 8.0 * T::epsilon().to_f64_lossy(), "{d}");
    assert_eq!(ds.n_steps, dw.n_steps);
    for ((na, a), (nb, b)) in ds.buffers.iter().zip(&dw.buffers) {
        assert_eq!(na, nb);
        assert!(rel_diff(a, b) <= 8.0 * T::epsilon().to_f64_lossy());
    }
    assert_eq!(t_second.position(), t_whole.position());
    assert_eq!(
        t_second.optimizer().learning_rate(),
        t_whole.optimizer().learning_rate()
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// Adam with a warm-up + cosine schedule (the schedule's position is the step count).
fn adam_cosine<T: Float>() -> Scheduled<Adam<T>, Schedule> {
    Scheduled::new(
        Adam::<T>::with_lr(0.05).expect("adam"),
        Schedule::cosine(0.05, 20, 1e-3)
            .and_then(|s| s.with_warmup(2))
            .expect("schedule"),
    )
}

/// SGD with Nesterov momentum (its momentum buffer is in the checkpoint).
fn sgd_nesterov<T: Float>() -> Sgd<T> {
    Sgd::new(SgdConfig {
        lr: 0.1,
        momentum: 0.9,
        nesterov: true,
        ..SgdConfig::default()
    })
    .expect("sgd")
}

#[test]
fn resume_repeats_uninterrupted_run_f64() {
    resume_repeats_uninterrupted_run::<f64, _>("adam", adam_cosine);
    resume_repeats_uninterrupted_run::<f64, _>("sgd", sgd_nesterov);
}

#[test]
fn resume_repeats_uninterrupted_run_f32() {
    resume_repeats_uninterrupted_run::<f32, _>("adam", adam_cosine);
    resume_repeats_uninterrupted_run::<f32, _>("sgd", sgd_nesterov);
}

#[test]
fn periodic_checkpoints_keep_only_the_latest_files() {
    let dir = temp_dir("periodic");
    let loader = rotation_loader::<f64>(16, 8, 0);
    let mut model = mlp_ode::<f64>("mlp-ode", 4, 0);
    let config = TrainConfig::epochs(3)
        .and_then(|c| c.with_checkpoints(&dir, 2))
        .expect("config");
    let mut trainer = Trainer::new(scheduled_adam(6), config);
    trainer
        .fit(&mut model, &loader, &mut continue_all)
        .expect("training");
    let manifest = checkpoint::read_manifest(&dir).expect("manifest");
    assert_eq!(manifest.model, "mlp-ode");
    assert_eq!(manifest.n_params, model.params().n_params());
    assert_eq!((manifest.position.epoch, manifest.position.step), (3, 6));
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "checkpoint.txt",
            "optimizer-6.safetensors",
            "params-6.safetensors"
        ]
    );
    // The parameter file is a plain safetensors file under the store's names.
    let store = autodiff::io::read_safetensors::<f64>(dir.join("params-6.safetensors"), false)
        .expect("read");
    assert_eq!(store.as_slice(), model.params().as_slice());
    assert_eq!(
        store.names().collect::<Vec<_>>(),
        ["f.0.weight", "f.0.bias", "f.2.weight"]
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn mismatched_checkpoints_are_errors_naming_both() {
    let dir = temp_dir("mismatch");
    let loader = rotation_loader::<f64>(8, 8, 0);
    let mut model = mlp_ode::<f64>("mlp-ode", 4, 0);
    let mut trainer = Trainer::new(scheduled_adam(4), TrainConfig::epochs(1).expect("config"));
    trainer
        .fit(&mut model, &loader, &mut continue_all)
        .expect("training");
    trainer.save_checkpoint(&model, &dir).expect("save");

    // Other sizes, same name.
    let mut wider = mlp_ode::<f64>("mlp-ode", 6, 0);
    let theta = wider.params().as_slice().to_vec();
    let mut t = Trainer::new(scheduled_adam(4), TrainConfig::epochs(1).expect("config"));
    let e = t.resume(&mut wider, &dir).expect_err("other sizes");
    let msg = e.to_string();
    assert!(
        msg.contains("20 parameters") && msg.contains("30 parameters"),
        "{msg}"
    );
    assert_eq!(wider.params().as_slice(), theta, "unchanged on error");
    assert_eq!(t.position().step, 0);

    // Another model.
    let mut other = mlp_ode::<f64>("other-ode", 4, 0);
    let e = t
        .resume(&mut other, &dir)
        .expect_err("other model")
        .to_string();
    assert!(e.contains("`mlp-ode`") && e.contains("`other-ode`"), "{e}");

    // Another dtype.
    let mut single = mlp_ode::<f32>("mlp-ode", 4, 0);
    let mut t32 = Trainer::new(
        Adam::<f32>::with_lr(0.1).expect("adam"),
        TrainConfig::epochs(1).expect("config"),
    );
    let e = t32
        .resume(&mut single, &dir)
        .expect_err("other dtype")
        .to_string();
    assert!(e.contains("F64") && e.contains("F32"), "{e}");

    // Same name and size, other tensors: the tensor is named.
    let mut store = ParamStore::<f64>::new(0);
    let layer = Linear::new(&mut store, "g", 2, 2, true).expect("layer");
    store.register("pad", &[14], Init::Zeros).expect("pad");
    assert_eq!(store.n_params(), 20);
    let ts = [0.0, 0.5, 1.0];
    let mut renamed = NeuralOde::new("mlp-ode", store, 2, &ts, move |_tape, _t, z, th| {
        layer.forward(th, z)
    })
    .expect("model");
    let e = t
        .resume(&mut renamed, &dir)
        .expect_err("other names")
        .to_string();
    assert!(e.contains("tensor `g.weight`"), "{e}");

    // Another optimizer (SGD with momentum has no Adam moments).
    let mut same = mlp_ode::<f64>("mlp-ode", 4, 0);
    let mut tsgd = Trainer::new(
        Sgd::<f64>::new(SgdConfig {
            momentum: 0.9,
            ..SgdConfig::default()
        })
        .expect("sgd"),
        TrainConfig::epochs(1).expect("config"),
    );
    let theta = same.params().as_slice().to_vec();
    assert!(tsgd.resume(&mut same, &dir).is_err());
    assert_eq!(same.params().as_slice(), theta);

    // A malformed manifest names the file and line.
    std::fs::write(
        dir.join(checkpoint::MANIFEST),
        "format = models.training.v1\nmodel\n",
    )
    .expect("write");
    let e = t
        .resume(&mut model, &dir)
        .expect_err("malformed")
        .to_string();
    assert!(e.contains("checkpoint.txt:2:"), "{e}");
    // No checkpoint at all.
    let e = t
        .resume(&mut model, &dir.join("missing"))
        .expect_err("missing");
    assert!(matches!(e, ModelsError::Io { .. }), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

// ---------------------------------------------------------------------------------------
// Stopping, clipping, validation.

#[test]
fn the_callback_and_the_step_limit_stop_training() {
    let loader = rotation_loader::<f64>(32, 8, 0);
    let mut model = mlp_ode::<f64>("mlp-ode", 4, 0);
    let mut trainer = Trainer::new(
        Adam::with_lr(0.01).expect("adam"),
        TrainConfig::epochs(5).expect("config"),
    );
    let mut seen = Vec::new();
    let s = trainer
        .fit(&mut model, &loader, &mut |info: &StepInfo<'_>| {
            seen.push((info.epoch, info.batch, info.step));
            if info.step == 3 {
                Control::Stop
            } else {
                Control::Continue
            }
        })
        .expect("training");
    assert_eq!((s.stop, s.steps), (StopReason::Callback, 3));
    assert_eq!(seen, [(0, 0, 1), (0, 1, 2), (0, 2, 3)]);
    assert!(s.last_loss.is_finite());
    // Calling fit again goes on from there; a step limit ends it.
    let mut trainer = Trainer::new(
        trainer.optimizer().clone(),
        TrainConfig::epochs(5)
            .and_then(|c| c.with_max_steps(6))
            .expect("config"),
    );
    let s = trainer
        .fit(&mut model, &loader, &mut continue_all)
        .expect("training");
    assert_eq!(
        (s.stop, s.steps, s.position.epoch, s.position.batch),
        (StopReason::MaxSteps, 6, 1, 2)
    );
}

#[test]
fn clipping_bounds_the_update() {
    let loader = rotation_loader::<f64>(8, 8, 0);
    let mut model = mlp_ode::<f64>("mlp-ode", 4, 0);
    let theta0 = model.params().as_slice().to_vec();
    let config = TrainConfig::epochs(1)
        .and_then(|c| c.with_clip_grad_norm(1e-3))
        .expect("config");
    let mut trainer = Trainer::new(Sgd::with_lr(1.0).expect("sgd"), config);
    let mut norm = 0.0;
    trainer
        .fit(&mut model, &loader, &mut |i: &StepInfo<'_>| {
            norm = i.grad_norm;
            Control::Continue
        })
        .expect("training");
    let step: f64 = model
        .params()
        .as_slice()
        .iter()
        .zip(&theta0)
        .map(|(a, b)| (a - b) * (a - b))
        .sum::<f64>()
        .sqrt();
    assert!(norm > 1e-2, "the gradient {norm} should need clipping");
    assert!(step <= 1e-3 && step > 0.99e-3, "{step}");
}

#[test]
fn invalid_settings_and_non_finite_losses_are_errors() {
    assert!(TrainConfig::epochs(0).is_err());
    let c = TrainConfig::epochs(1).expect("config");
    assert!(c.clone().with_max_steps(0).is_err());
    assert!(c.clone().with_clip_grad_norm(-1.0).is_err());
    assert!(c.clone().with_clip_grad_norm(f64::NAN).is_err());
    assert!(c.clone().with_checkpoints("x", 0).is_err());
    let ts = [0.0, 1.0];
    let field = tanh_field::<f64> as Field<f64>;
    let store = ParamStore::<f64>::new(0);
    assert!(NeuralOde::new("", store.clone(), 2, &ts, field).is_err());
    assert!(NeuralOde::new("two\nlines", store.clone(), 2, &ts, field).is_err());
    assert!(NeuralOde::new("m", store.clone(), 2, &[0.0], field).is_err());
    assert!(NeuralOde::new("m", store.clone(), 2, &[0.0, 1.0, 0.5], field).is_err());
    assert!(NeuralOde::new("m", store, 0, &ts, field).is_err());

    // A NaN loss stops training with an error; the parameters are unchanged.
    let mut store = ParamStore::<f64>::new(0);
    let layer = Linear::new(&mut store, "f", 2, 2, false).expect("layer");
    let mut model = NeuralOde::new("nan", store, 2, &TS, move |_tape, _t, z, th| {
        layer.forward(th, z)
    })
    .expect("model")
    .with_loss(Box::new(|zs, _| zs.sum().mul_scalar(f64::NAN)));
    let theta = model.params().as_slice().to_vec();
    let loader = rotation_loader::<f64>(8, 8, 0);
    let mut trainer = Trainer::new(Adam::with_lr(0.1).expect("adam"), c);
    let e = trainer
        .fit(&mut model, &loader, &mut continue_all)
        .expect_err("NaN");
    assert!(
        matches!(e, ModelsError::NonFinite { what: "loss", .. }),
        "{e}"
    );
    assert_eq!(model.params().as_slice(), theta);
    // A batch of the wrong shape names the model and the shape.
    let mut m2 = mlp_ode::<f64>("mlp-ode", 4, 0);
    let b = Batch {
        images: vec![0.0; 8],
        labels: vec![0; 2],
        shape: [2, 1, 2, 2],
    };
    let e = Trainer::new(
        Adam::<f64>::with_lr(0.1).expect("adam"),
        TrainConfig::epochs(1).expect("c"),
    )
    .step(&mut m2, &b)
    .expect_err("shape")
    .to_string();
    assert!(e.contains("mlp-ode") && e.contains("[2, 1, 2, 2]"), "{e}");
}

#[test]
fn trajectory_windows_cut_evenly_spaced_data() {
    let data = models::spiral::spiral_trajectory(20, 1.9).expect("spiral");
    let (windows, ts) = trajectory_windows::<f32>(&data, 5).expect("windows");
    assert_eq!(windows.shape(), [16, 1, 5, 2]);
    assert_eq!(ts.len(), 5);
    assert!((ts[4] - 0.4).abs() < 1e-6, "{ts:?}");
    let last = windows.image(15).expect("window 15");
    assert_eq!(last[8..], [data.y(19)[0] as f32, data.y(19)[1] as f32]);
    assert!(trajectory_windows::<f64>(&data, 1).is_err());
    assert!(trajectory_windows::<f64>(&data, 21).is_err());
    let mut ts = data.ts.clone();
    ts[3] += 0.01;
    let irregular =
        models::data::Trajectory::new(data.names.clone(), ts, data.ys.clone()).expect("data");
    let e = trajectory_windows::<f64>(&irregular, 5)
        .expect_err("irregular")
        .to_string();
    assert!(e.contains("evenly spaced") && e.contains("t[2]"), "{e}");
}
