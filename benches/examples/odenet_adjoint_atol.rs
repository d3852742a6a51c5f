//! ODE-Net's evaluations and CPU time per training step (MNIST, batch 64, 64 channels,
//! f32, Dopri5 at rtol = atol = 1e-3, the default checkpointed mode with the seminorm) with
//! the backward `atol` as given (`AdjointAtol::Absolute`, the default, as torchdiffeq's
//! `odeint_adjoint`) and relative to the seed (`AdjointAtol::RelativeToSeed`), twice each,
//! alternated (issue 18 item 1).
//!
//! `taskset -c 1 cargo run --release -p benches --example odenet_adjoint_atol -- [steps]`
//! (default 3 steps after one warm-up step; the median CPU time is printed).
use adjoint::test_problems::thread_cpu_seconds;
use adjoint::{AdjointAtol, BackwardSolver, Checkpoints, GradientMode};
use autodiff::Tape;
use models::datasets::load_mnist_5k;
use models::odenet::{ConvNetConfig, ImageClassifier, OdeNet, OdeNetConfig};

fn main() {
    let steps: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(3);
    let data = load_mnist_5k::<f32>().expect("mnist");
    let (images, labels, shape) = benches::strided_batch(data, 64);
    let ode = OdeNetConfig {
        rtol: 1e-3,
        atol: 1e-3,
        ..OdeNetConfig::new(ConvNetConfig::mnist())
    };
    for (name, aa) in [
        ("absolute", AdjointAtol::Absolute),
        ("seed", AdjointAtol::RelativeToSeed),
        ("absolute", AdjointAtol::Absolute),
        ("seed", AdjointAtol::RelativeToSeed),
    ] {
        let mode = GradientMode::Checkpointed {
            checkpoints: Checkpoints::EveryStep,
            backward: BackwardSolver {
                seminorm: true,
                adjoint_atol: aa,
                ..BackwardSolver::default()
            },
        };
        let mut net = OdeNet::<f32>::with_mode(&ode, mode).unwrap();
        let mut tape = Tape::new();
        let mut cpu = Vec::new();
        let mut g0 = Vec::new();
        for i in 0..=steps {
            let c0 = thread_cpu_seconds();
            tape.reset();
            tape.set_recording(true);
            let theta = tape.leaf(net.params(), &[net.n_params()]).unwrap();
            let x = tape.constant(&images, &shape).unwrap();
            let loss = net.loss(&tape, theta, x, &labels).unwrap();
            tape.backward_scalar(loss).unwrap();
            g0 = theta.grad().unwrap().to_vec();
            if i > 0 {
                cpu.push((thread_cpu_seconds() - c0) * 1e3);
            }
        }
        cpu.sort_by(f64::total_cmp);
        let st = net.stats().unwrap();
        let r = net.field_params();
        let gn: f64 = g0[r]
            .iter()
            .map(|x| (*x as f64).powi(2))
            .sum::<f64>()
            .sqrt();
        println!(
            "{name}: fwd nfe {} ({} steps), bwd vjp {} ({} steps, {} rej), bwd nfe {}, CPU ms median {:.1}, |g_field| {gn:.6e}",
            st.forward.nfe,
            st.forward.accepted,
            st.backward_vjp,
            st.backward_accepted,
            st.backward_rejected,
            st.backward_nfe,
            cpu[cpu.len() / 2]
        );
    }
}
