//! After warm-up, evaluating and differentiating the same function on a reset tape
//! performs no heap allocation (counted on this thread by `alloc_count`).

use autodiff::{Error, Tape};

#[global_allocator]
static GLOBAL: alloc_count::Counting = alloc_count::Counting;

/// MLP Neural ODE right-hand side + VJP, then a conv block + VJP, on one tape.
fn eval(
    tape: &mut Tape<f64>,
    z: &[f64],
    theta: &[f64],
    img: &[f64],
    out: &mut [f64],
    g: &mut [f64],
    gt: &mut [f64],
) -> Result<(), Error> {
    let (b, d, h) = (64, 2, 32);
    tape.reset();
    tape.set_recording(true);
    let zv = tape.leaf(z, &[b, d])?;
    let tv = tape.leaf(&[0.3], &[1])?;
    let th = tape.leaf(theta, &[theta.len()])?;
    let w1 = th.view(0, &[d, h]);
    let b1 = th.view(d * h, &[h]);
    let w2 = th.view(d * h + h, &[h, d]);
    let y = ((zv.matmul(w1) + b1) * tv).tanh().matmul(w2);
    y.value_into(out)?;
    tape.backward(y, out)?;
    th.grad_into(g)?;
    zv.grad_acc(out)?;
    // conv block: conv → group norm → relu → conv, global pool, cross-entropy
    let x = tape.leaf(img, &[4, 8, 7, 7])?;
    let wc = th.view(0, &[8, 8, 3, 3]);
    let hc = x
        .conv2d(wc, 1, 1)
        .group_norm(4, 1e-5)
        .relu()
        .conv2d(wc, 1, 1);
    let loss = hc.global_avg_pool2d().cross_entropy(&[0, 1, 2, 3]);
    tape.backward(loss, &[1.0])?;
    x.grad_into(gt)?;
    Ok(())
}

#[test]
fn no_allocation_after_warm_up() {
    let z: Vec<f64> = (0..128).map(|i| (i as f64 * 0.37).sin()).collect();
    let theta: Vec<f64> = (0..1000).map(|i| (i as f64 * 0.11).cos() * 0.2).collect();
    let img: Vec<f64> = (0..4 * 8 * 49).map(|i| (i as f64 * 0.07).sin()).collect();
    let mut out = vec![0.0; 128];
    let mut g = vec![0.0; 1000];
    let mut gt = vec![0.0; img.len()];
    let mut tape = Tape::new();
    eval(&mut tape, &z, &theta, &img, &mut out, &mut g, &mut gt).unwrap();
    let first = g.clone();
    let ((), allocations) = alloc_count::allocations_in(|| {
        for _ in 0..10 {
            eval(&mut tape, &z, &theta, &img, &mut out, &mut g, &mut gt).unwrap();
        }
    });
    assert_eq!(allocations, 0, "allocations in steady state");
    // Same inputs, same gradients: the reset tape reproduces them exactly.
    assert_eq!(first, g);
    assert!(g.iter().any(|&v| v != 0.0));
}
