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
//!   `odeint_adjoint`). The solver steps freely and gives the 100 output times from its
//!   dense output, as torchdiffeq does.
//! * `latent/ode_rnn_b50/f64`: the same iteration for the default irregular model
//!   (ODE-RNN encoder, keep 0.5) at batch 50.
#![allow(missing_docs)]

use std::hint::black_box;

use adjoint::GradientMode;
use autodiff::optim::{Adam, Optimizer};
use autodiff::{Float, Tape};
use criterion::{Criterion, criterion_group};
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

fn setup<T: Float>(encoder: EncoderKind, n: usize, keep: f64, mode: GradientMode<T>) -> Setup<T> {
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
            for (mname, mode) in [
                ("direct", GradientMode::Direct),
                ("adjoint", GradientMode::checkpointed()),
            ] {
                let mut s = setup::<$t>(EncoderKind::Rnn, 1000, 1.0, mode);
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
    let mut s = setup::<f64>(EncoderKind::OdeRnn, 50, 0.5, GradientMode::checkpointed());
    g.bench_function("f64", |b| b.iter(|| black_box(s.step())));
    g.finish();
}

criterion_group!(benches, torchdiffeq_setup, ode_rnn);

/// `LATENT_PROFILE=<steps>[,f64][,adjoint]`: instead of the benchmarks, runs that many
/// iterations of the torchdiffeq set-up (after one warm-up) and prints their mean time and
/// the solver's counts, for `valgrind --tool=callgrind` (instruction counts are repeatable
/// under load, but do not show subnormal-operand assists or branch mispredictions).
fn profile(spec: &str) {
    let mut parts = spec.split(',');
    let steps: usize = parts.next().and_then(|s| s.parse().ok()).unwrap_or(1);
    let rest: Vec<&str> = parts.collect();
    let adjoint = rest.contains(&"adjoint");
    macro_rules! go {
        ($t:ty) => {{
            let mode = if adjoint {
                GradientMode::checkpointed()
            } else {
                GradientMode::Direct
            };
            let mut s = setup::<$t>(EncoderKind::Rnn, 1000, 1.0, mode);
            s.step();
            let _ = s.model.take_nfe();
            let t1 = std::time::Instant::now();
            for _ in 0..steps {
                black_box(s.step());
            }
            let per_step = t1.elapsed() / steps.max(1) as u32;
            let (ne, nl) = s.model.take_nfe();
            let st = s.model.latent_stats().unwrap_or_default();
            eprintln!(
                "profile: {steps} steps ({per_step:?} each), forward NFE latent {nl}, encoder {ne}; last step: forward {} NFE ({} accepted, {} rejected), backward {} NFE, {} VJP ({} accepted, {} rejected)",
                st.forward.nfe, st.forward.accepted, st.forward.rejected, st.backward_nfe,
                st.backward_vjp, st.backward_accepted, st.backward_rejected
            );
        }};
    }
    if rest.contains(&"f64") {
        go!(f64)
    } else {
        go!(f32)
    }
}

fn main() {
    if let Ok(spec) = std::env::var("LATENT_PROFILE") {
        profile(&spec);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
