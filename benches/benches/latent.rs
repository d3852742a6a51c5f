//! Latent ODE benchmarks: one training iteration (loss, gradient, Adam step) of
//! torchdiffeq's `examples/latent_ode.py` set-up, to compare with
//! `models/scripts/latent_ode_torch.py` (same architecture and data, one thread).
//!
//! * `latent/torchdiffeq_setup/<dtype>/<mode>`: 1000 regular noisy spirals of 100 points
//!   (the whole set as one batch), the `tanh` recognition RNN (25 hidden) backwards over
//!   the 100 rows, latent 4, field 4-20-20-4 (ELU), decoder 4-20-2 (ReLU), Gaussian
//!   likelihood (s = 0.3) and closed-form KL, Dopri5 at rtol = 1e-3, atol = 1e-4, Adam.
//!   `direct` backpropagates through the solver's stages (what torchdiffeq's `odeint`
//!   does under autograd); `adjoint` is the checkpointed continuous adjoint (against
//!   `odeint_adjoint`). `*_knots8`: the latent ODE solved at 9 knots and interpolated
//!   (cubic Hermite) at the 100 times, as torchdiffeq interpolates its dense output; the
//!   others restart the solver at each of the 100 output times.
//! * `latent/ode_rnn_b50/f64`: the same iteration for the default irregular model
//!   (ODE-RNN encoder, keep 0.5) at batch 50.
#![allow(missing_docs)]

use std::hint::black_box;

use adjoint::GradientMode;
use autodiff::optim::{Adam, Optimizer};
use autodiff::{Float, Tape};
use criterion::{Criterion, criterion_group, criterion_main};
use models::latent::data::{self, IrregularBatch, SpiralConfig};
use models::latent::elbo::seeded_noise;
use models::latent::{EncoderKind, LatentConfig, LatentOde};

struct Setup<T: Float> {
    model: LatentOde<T>,
    batch: IrregularBatch<T>,
    opt: Adam<T>,
    tape: Tape<T>,
    grad: Vec<T>,
    seed: u64,
}

fn setup<T: Float>(
    encoder: EncoderKind,
    n: usize,
    keep: f64,
    mode: GradientMode<T>,
    knots: Option<usize>,
) -> Setup<T> {
    let cfg = SpiralConfig {
        n_spirals: n,
        keep,
        ..SpiralConfig::default()
    };
    let (d, _) = data::spirals::<T>(&cfg, 0).expect("valid spirals");
    let idx: Vec<usize> = (0..n).collect();
    let batch = d.batch(&idx).expect("valid batch");
    let mut model = LatentOde::<T>::new(LatentConfig {
        encoder,
        knots,
        ..LatentConfig::new(2)
    })
    .expect("valid config");
    model.set_mode(mode);
    let grad = model.params().zeros_like();
    Setup {
        model,
        batch,
        opt: Adam::with_lr(0.01).expect("valid lr"),
        tape: Tape::new(),
        grad,
        seed: 1,
    }
}

impl<T: Float> Setup<T> {
    /// The loss at the current parameters with the noise of seed 0 (no gradient).
    fn loss_only(&mut self) -> T {
        self.tape.reset();
        let noise = seeded_noise(0, 1, self.batch.batch, 4);
        let theta = self.model.params().leaf(&self.tape).expect("leaf");
        let l = self
            .model
            .loss(&self.tape, theta, &self.batch, &noise, 1, 1.0)
            .expect("loss");
        l.loss.item().expect("finite loss")
    }

    /// One training iteration; returns the loss.
    fn step(&mut self) -> T {
        self.tape.reset();
        self.tape.set_recording(true);
        self.seed += 1;
        let noise = seeded_noise(self.seed, 1, self.batch.batch, 4);
        let theta = self.model.params().leaf(&self.tape).expect("leaf");
        let l = self
            .model
            .loss(&self.tape, theta, &self.batch, &noise, 1, 1.0)
            .expect("loss")
            .loss;
        self.tape.backward(l, &[T::one()]).expect("backward");
        theta.grad_into(&mut self.grad).expect("grad");
        let v = l.item().expect("finite loss");
        self.opt
            .step(self.model.params_mut().as_mut_slice(), &self.grad)
            .expect("step");
        v
    }
}

fn torchdiffeq_setup(c: &mut Criterion) {
    let mut g = c.benchmark_group("latent/torchdiffeq_setup");
    g.sample_size(10);
    macro_rules! case {
        ($t:ty, $name:literal) => {
            for (mname, mode, knots) in [
                ("direct", GradientMode::Direct, None),
                ("adjoint", GradientMode::checkpointed(), None),
                ("direct_knots8", GradientMode::Direct, Some(8)),
                ("adjoint_knots8", GradientMode::checkpointed(), Some(8)),
            ] {
                let mut s = setup::<$t>(EncoderKind::Rnn, 1000, 1.0, mode, knots);
                if knots.is_some() {
                    // The interpolation's effect on the loss at the initial parameters.
                    let mut exact = setup::<$t>(EncoderKind::Rnn, 1000, 1.0, GradientMode::Direct, None);
                    let (a, b) = (s.loss_only(), exact.loss_only());
                    eprintln!("latent/torchdiffeq_setup/{}/{mname}: initial loss {a} vs {b} without knots", $name);
                }
                s.step();
                let (ne, nl) = s.model.take_nfe();
                eprintln!(
                    "latent/torchdiffeq_setup/{}/{mname}: forward NFE latent {nl}, encoder {ne}",
                    $name
                );
                g.bench_function(format!("{}/{mname}", $name), |b| {
                    b.iter(|| black_box(s.step()))
                });
            }
        };
    }
    case!(f32, "f32");
    case!(f64, "f64");
    g.finish();
}

fn ode_rnn(c: &mut Criterion) {
    let mut g = c.benchmark_group("latent/ode_rnn_b50");
    g.sample_size(10);
    let mut s = setup::<f64>(
        EncoderKind::OdeRnn,
        50,
        0.5,
        GradientMode::checkpointed(),
        None,
    );
    g.bench_function("f64", |b| b.iter(|| black_box(s.step())));
    g.finish();
}

criterion_group!(benches, torchdiffeq_setup, ode_rnn);
criterion_main!(benches);
