//! One training step of ODE-Net, RK-Net and ResNet (MNIST 28×28, batch 64, 64 channels,
//! f32, Dopri5 at rtol = atol = 1e-3, one tape; the settings of `benches/benches/odenet.rs`), timed
//! by the thread's CPU time (`/proc/thread-self/schedstat`) as well as wall time: on a
//! loaded machine the CPU time of a step moves far less than its wall time, so before/after
//! comparisons stay meaningful while others compute.
//!
//! `cargo run --release -p benches --example odenet_step_cpu -- [steps] [model...]`
//! (default 5 steps after one warm-up step, all three models); pin with `taskset -c 0`.

use adjoint::test_problems::thread_cpu_seconds;
use autodiff::Tape;
use models::datasets::load_mnist_5k;
use models::odenet::{
    ConvNetConfig, ImageClassifier, OdeNet, OdeNetConfig, ResNet, ResNetConfig, RkNet,
};
use std::time::Instant;

const BATCH: usize = 64;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let steps: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(5);
    let want: Vec<&str> = args.iter().skip(1).map(String::as_str).collect();
    let data = load_mnist_5k::<f32>().expect("the shipped MNIST subset");
    let (images, labels, shape) = benches::strided_batch(data, BATCH);
    let net = ConvNetConfig::mnist();
    let ode = OdeNetConfig {
        rtol: 1e-3,
        atol: 1e-3,
        chunk_samples: 0,
        ..OdeNetConfig::new(net)
    };
    let nets: Vec<(&str, Box<dyn ImageClassifier<f32>>)> = vec![
        ("odenet", Box::new(OdeNet::new(&ode).expect("ODE-Net"))),
        ("rknet", Box::new(RkNet::new(&ode).expect("RK-Net"))),
        (
            "resnet",
            Box::new(ResNet::new(&ResNetConfig::new(net)).expect("ResNet")),
        ),
    ];
    let mut tape = Tape::new();
    for (label, mut net) in nets {
        if !want.is_empty() && !want.contains(&label) {
            continue;
        }
        let mut cpu = Vec::new();
        let mut wall = Vec::new();
        let mut check = 0.0;
        for i in 0..=steps {
            let (c0, w0) = (thread_cpu_seconds(), Instant::now());
            tape.reset();
            tape.set_recording(true);
            let theta = tape
                .leaf(net.params(), &[net.n_params()])
                .expect("parameter leaf");
            let x = tape.constant(&images, &shape).expect("image batch");
            let loss = net.loss(&tape, theta, x, &labels).expect("loss");
            tape.backward_scalar(loss).expect("backward");
            check = theta.grad().expect("gradient")[0] + loss.item().expect("loss value");
            if i > 0 {
                cpu.push((thread_cpu_seconds() - c0) * 1e3);
                wall.push(w0.elapsed().as_secs_f64() * 1e3);
            }
        }
        let med = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            (v[0], v[v.len() / 2])
        };
        let ((cmin, cmed), (wmin, wmed)) = (med(&mut cpu), med(&mut wall));
        println!(
            "{label}: CPU ms/step min {cmin:.1} median {cmed:.1}; wall min {wmin:.1} median {wmed:.1} ({steps} steps; check {check:.6})"
        );
    }
}
