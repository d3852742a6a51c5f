//! Criterion benchmarks of function encoders (`models::function_encoder`): the cost of
//! encoding a new system from its demonstrations (velocity estimates, basis values at
//! the demonstration points, Gram-matrix least squares; no optimiser) as `K` and the
//! number of points grow, against the cost of ONE optimiser step of the oracle Neural
//! ODE on the same demonstrations (what a per-system fit pays hundreds of times).
//!
//! Goal: encoding a system costs less than one gradient step of the oracle.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use autodiff::optim::Adam;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use models::datasets::Batch;
use models::function_encoder::{
    BasisConfig, DemoConfig, Demonstrations, EncoderSettings, FunctionEncoder, System,
};
use models::training::{TrainConfig, Trainer};

fn demo(points: usize) -> Demonstrations {
    let n_times = points.min(20);
    let config = DemoConfig {
        n_traj: points / n_times,
        n_times,
        horizon: 2.0,
        noise: 0.0,
    };
    Demonstrations::generate(System::VanDerPol { mu: 1.2 }, &config, 3).expect("demonstrations")
}

fn bench_encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("fe_encode");
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    for k in [1usize, 4, 8] {
        let config = BasisConfig::new(k, 32).residual(true);
        let fe = FunctionEncoder::new("fe", config, vec![], EncoderSettings::default())
            .expect("encoder");
        for points in [20usize, 80, 320] {
            let d = demo(points);
            group.throughput(Throughput::Elements(points as u64));
            group.bench_with_input(
                BenchmarkId::new(format!("k{k}"), points),
                &points,
                |b, _| b.iter(|| black_box(fe.encode(&d).expect("encode"))),
            );
        }
    }
    group.finish();
}

fn bench_oracle_step(c: &mut Criterion) {
    let mut group = c.benchmark_group("fe_oracle_step");
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(3));
    group.sample_size(20);
    for points in [20usize, 80] {
        let config = BasisConfig::new(0, 32).residual(true);
        let mut oracle = FunctionEncoder::new(
            "oracle",
            config,
            vec![demo(points)],
            EncoderSettings::default(),
        )
        .expect("oracle");
        let batch = Batch {
            images: vec![0.0],
            labels: vec![0],
            shape: [1, 1, 1, 1],
        };
        let mut trainer = Trainer::new(
            Adam::with_lr(1e-3).expect("adam"),
            TrainConfig::epochs(1).expect("config"),
        );
        group.bench_with_input(BenchmarkId::new("adam_step", points), &points, |b, _| {
            b.iter(|| black_box(trainer.step(&mut oracle, &batch).expect("step")))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_encode, bench_oracle_step);
criterion_main!(benches);
