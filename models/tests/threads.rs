//! Batch rows over threads in the models library: an ODE block built with
//! `OdeBlock::new_row_parallel` gives bitwise the same outputs and gradients for any
//! number of threads and the single-tape block's to round-off; the generic `Trainer`
//! trains a `NeuralOde` to bitwise the same parameters with 1 and 2 threads.

use adjoint::{ParallelTapeDynamics, Threads};
use autodiff::nn::{Linear, ParamStore};
use autodiff::optim::Adam;
use autodiff::{Tape, Var};
use models::datasets::{BatchOptions, ImageDataset};
use models::ode_block::OdeBlock;
use models::training::{Control, NeuralOde, StepInfo, TrainConfig, Trainer};

const D: usize = 2;
const H: usize = 8;
const P: usize = D * H + H + H + H * D + D;

/// `f(t, z) = tanh(z W + b + t u) V + c`, row by row.
fn field<'t>(
    _tape: &'t Tape<f64>,
    t: Var<'t, f64>,
    z: Var<'t, f64>,
    th: Var<'t, f64>,
) -> Var<'t, f64> {
    let w = th.view(0, &[D, H]);
    let b = th.view(D * H, &[H]);
    let u = th.view(D * H + H, &[H]);
    let v = th.view(D * H + 2 * H, &[H, D]);
    let c = th.view(D * H + 2 * H + H * D, &[D]);
    (z.matmul(w) + b + u * t).tanh().matmul(v) + c
}

type Field = for<'t> fn(&'t Tape<f64>, Var<'t, f64>, Var<'t, f64>, Var<'t, f64>) -> Var<'t, f64>;

/// Loss `mean(z(t)²)` over the block's outputs; returns the loss and the gradients of
/// `z0`, `θ` and the times.
fn run(
    block: &OdeBlock<f64, Field>,
    z0: &[f64],
    theta: &[f64],
) -> (f64, Vec<f64>, Vec<f64>, Vec<f64>) {
    let tape = Tape::new();
    tape.set_recording(true);
    let batch = z0.len() / D;
    let z = tape.leaf(z0, &[batch, D]).unwrap();
    let th = tape.leaf(theta, &[P]).unwrap();
    let ts = tape.leaf(&[0.0, 0.5, 1.0], &[3]).unwrap();
    let loss = block.apply(z, th, ts).square().mean();
    tape.backward(loss, &[1.0]).unwrap();
    (
        loss.item().unwrap(),
        z.grad().unwrap(),
        th.grad().unwrap(),
        ts.grad().unwrap(),
    )
}

fn bits(x: &[f64]) -> Vec<u64> {
    x.iter().map(|v| v.to_bits()).collect()
}

fn rel(a: &[f64], b: &[f64]) -> f64 {
    let d: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).powi(2))
        .sum::<f64>()
        .sqrt();
    d / b.iter().map(|y| y * y).sum::<f64>().sqrt()
}

#[test]
fn row_parallel_block_matches_the_single_tape_block() {
    let batch = 300; // three chunks: 128, 128, 44 rows
    let z0: Vec<f64> = (0..batch * D).map(|i| (i as f64 * 0.37).sin()).collect();
    let theta: Vec<f64> = (0..P).map(|i| 0.8 * (i as f64 * 1.3 + 0.4).cos()).collect();
    let serial = OdeBlock::new(&[batch, D], P, field as Field).unwrap();
    let reference = run(&serial, &z0, &theta);
    let mut first = None;
    // A boxed field, made per worker by a factory.
    type Boxed = Box<
        dyn for<'t> FnMut(&'t Tape<f64>, Var<'t, f64>, Var<'t, f64>, Var<'t, f64>) -> Var<'t, f64>
            + Send,
    >;
    let boxed = OdeBlock::new_row_parallel_with(
        &[batch, D],
        P,
        || Box::new(field) as Boxed,
        Threads::new(2).unwrap(),
    )
    .unwrap();
    let tape = Tape::new();
    tape.set_recording(true);
    let z = tape.leaf(&z0, &[batch, D]).unwrap();
    let th = tape.leaf(&theta, &[P]).unwrap();
    let ts = tape.leaf(&[0.0, 0.5, 1.0], &[3]).unwrap();
    let loss = boxed.apply(z, th, ts).square().mean();
    tape.backward(loss, &[1.0]).unwrap();
    let boxed_grad = th.grad().unwrap();
    for threads in [1, 2, 3] {
        let block = OdeBlock::new_row_parallel(
            &[batch, D],
            P,
            field as Field,
            Threads::new(threads).unwrap(),
        )
        .unwrap();
        let (loss, gz, gth, gts) = run(&block, &z0, &theta);
        assert_eq!(bits(&gth), bits(&boxed_grad));
        let got = (loss.to_bits(), bits(&gz), bits(&gth), bits(&gts));
        match &first {
            None => first = Some(got),
            Some(f) => assert_eq!(&got, f, "{threads} threads"),
        }
        // The forward pass is the same arithmetic row by row: equal loss and z0-gradient.
        assert_eq!(loss.to_bits(), reference.0.to_bits());
        assert_eq!(bits(&gz), bits(&reference.1));
        let e = rel(&gth, &reference.2).max(rel(&gts, &reference.3));
        assert!(e < 1e-12, "{threads} threads: {e:e}");
    }
}

/// `OdeBlock::from_row_parallel`: chunks the caller sized (10 chunks of 5 rows here,
/// below the default threshold) give bitwise the same results on 1 and 2 threads and the
/// single-tape block's to round-off; state dimensions that do not match are an error.
#[test]
fn caller_sized_chunks_are_thread_independent() {
    let batch = 50;
    let z0: Vec<f64> = (0..batch * D).map(|i| (i as f64 * 0.53).cos()).collect();
    let theta: Vec<f64> = (0..P).map(|i| 0.7 * (i as f64 * 0.9 + 0.2).sin()).collect();
    let reference = run(
        &OdeBlock::new(&[batch, D], P, field as Field).unwrap(),
        &z0,
        &theta,
    );
    let block = |threads: usize| {
        let mut par = ParallelTapeDynamics::new(&[batch, D], P, field as Field)
            .unwrap()
            .with_chunk_rows(5)
            .unwrap();
        assert_eq!(par.n_chunks(), 10);
        par.set_threads(Threads::new(threads).unwrap());
        OdeBlock::from_row_parallel(&[batch, D], par).unwrap()
    };
    let (l1, gz1, gth1, gts1) = run(&block(1), &z0, &theta);
    let (l2, gz2, gth2, gts2) = run(&block(2), &z0, &theta);
    assert_eq!(
        (l1.to_bits(), bits(&gz1), bits(&gth1), bits(&gts1)),
        (l2.to_bits(), bits(&gz2), bits(&gth2), bits(&gts2))
    );
    assert_eq!(l1.to_bits(), reference.0.to_bits());
    assert!(rel(&gth1, &reference.2).max(rel(&gts1, &reference.3)) < 1e-12);
    let par = ParallelTapeDynamics::new(&[batch, D], P, field as Field).unwrap();
    assert!(OdeBlock::from_row_parallel(&[batch + 1, D], par).is_err());
}

/// A `NeuralOde` trained by the generic `Trainer` on 256 trajectories per batch (two
/// chunks): the same parameters bit for bit with 1 and 2 threads.
#[test]
fn trainer_results_do_not_depend_on_threads() {
    let ts = [0.0, 0.5, 1.0];
    let mut obs = Vec::new();
    for b in 0..512 {
        let (x, y) = ((b as f64 * 0.7).cos(), (b as f64 * 0.7).sin());
        for &t in &ts {
            let (c, s, e) = (f64::cos(t), f64::sin(t), f64::exp(-0.1 * t));
            obs.extend([e * (c * x + s * y), e * (-s * x + c * y)]);
        }
    }
    let train = |threads: usize| -> Vec<f64> {
        let data = ImageDataset::new(obs.clone(), vec![0; 512], [1, 3, 2], 1, 1.0).unwrap();
        let loader = data.into_loader(BatchOptions::new(256)).unwrap();
        let mut store = ParamStore::<f64>::new(0);
        let layer = Linear::new(&mut store, "field", 2, 2, true).unwrap();
        let mut model = NeuralOde::new("rotation", store, 2, &ts, move |_tape, _t, z, th| {
            layer.forward(th, z)
        })
        .unwrap();
        let config = TrainConfig::epochs(1).unwrap().with_threads(threads);
        let mut trainer = Trainer::new(Adam::with_lr(0.05).unwrap(), config);
        let mut cb = |_: &StepInfo<'_>| Control::Continue;
        let summary = trainer.fit(&mut model, &loader, &mut cb).unwrap();
        assert_eq!(summary.steps, 2);
        use models::training::Model;
        model.params().as_slice().to_vec()
    };
    assert_eq!(bits(&train(1)), bits(&train(2)));
}
