//! Continuous normalizing flows: one training iteration of FFJORD's toy model
//! (`train_toy.py` defaults: one block, concat-squash 2-64-64-64-2 with tanh, T = 0.5,
//! Dopri5 at rtol = atol = 1e-5, batch 100 of pinwheel points, checkpointed adjoint,
//! Adam) in f32, with the exact trace and with Hutchinson's estimator, and the same with
//! the RNODE regularisers on.
//!
//! Each sample restores the initial parameters and optimizer state (outside the timing),
//! so every timed iteration is the same first iteration: loss, gradient through the
//! adjoint (second derivatives through the trace) and the Adam step. The peer is
//! `models/scripts/ffjord_toy.py` (PyTorch + torchdiffeq, one thread), timed per
//! iteration by itself; `benches/README.md` has both figures from the same session.
#![allow(missing_docs)]

use std::cell::RefCell;

use autodiff::optim::{Adam, AdamConfig};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use models::Model;
use models::cnf::{Cnf, CnfConfig, Divergence, Noise, Rnode, ToyDensity};
use models::datasets::Batch;
use models::training::{TrainConfig, Trainer};

fn toy_iteration(c: &mut Criterion) {
    let mut g = c.benchmark_group("cnf/toy_iteration_f32");
    g.sample_size(20);
    let batch = Batch {
        images: ToyDensity::Pinwheel.sample_seeded::<f32>(100, 1),
        labels: vec![0; 100],
        shape: [100, 1, 1, 2],
    };
    let variants = [
        ("exact", Divergence::Exact, Rnode::off()),
        (
            "hutchinson",
            Divergence::Hutchinson(Noise::Rademacher),
            Rnode::off(),
        ),
        (
            "exact_rnode",
            Divergence::Exact,
            Rnode {
                kinetic: 0.01,
                jacobian: 0.01,
            },
        ),
    ];
    for (name, divergence, rnode) in variants {
        let flow = Cnf::<f32>::new(CnfConfig {
            divergence,
            rnode,
            ..CnfConfig::toy()
        })
        .expect("flow");
        let theta0 = flow.params().as_slice().to_vec();
        let adam = || {
            Adam::new(AdamConfig {
                weight_decay: 1e-5,
                ..AdamConfig::default()
            })
            .expect("adam")
        };
        // Set-up and routine both need the flow and the trainer.
        let state = RefCell::new((
            flow,
            Trainer::new(adam(), TrainConfig::epochs(1).expect("config")),
        ));
        g.bench_function(name, |b| {
            b.iter_batched(
                || {
                    let (flow, trainer) = &mut *state.borrow_mut();
                    flow.params_mut().as_mut_slice().copy_from_slice(&theta0);
                    flow.reseed_noise(3);
                    *trainer = Trainer::new(adam(), TrainConfig::epochs(1).expect("config"));
                },
                |()| {
                    let (flow, trainer) = &mut *state.borrow_mut();
                    trainer.step(flow, &batch).expect("step")
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, toy_iteration);
criterion_main!(benches);
