//! Allocation counts do not grow with the number of steps (counted on this thread by
//! `alloc_count`): a warmed solver reuses its buffers, and per-step work allocates
//! nothing.

use adjoint::test_problems::Mlp;
use adjoint::{AdjointSolver, GradientMode, Method, Options};

#[global_allocator]
static GLOBAL: alloc_count::Counting = alloc_count::Counting;

fn count(mode: &GradientMode<f64>, horizon: f64) -> (usize, usize) {
    let mut mlp = Mlp::<f64>::new(&[2, 8, 8, 2], 2, true).unwrap();
    let theta = mlp.init_params(1, 2.0);
    let z0 = [0.5, -0.5, 1.0, 0.2];
    let ts = [0.0, horizon];
    let mut s =
        AdjointSolver::new(Method::Dopri5, Options::with_tol(1e-8, 1e-8)).with_mode(mode.clone());
    let mut dl = vec![1.0; 8];
    // Warm up on the long horizon, then count a short and a long call.
    s.forward(&mut mlp, &z0, &theta, &[0.0, 20.0]).unwrap();
    let mut g = s.backward(&mut mlp, &dl).unwrap();
    let ((), n) = alloc_count::allocations_in(|| {
        s.forward(&mut mlp, &z0, &theta, &ts).unwrap();
        dl.fill(1.0);
        s.backward_into(&mut mlp, &dl, &mut g).unwrap();
    });
    (n, s.stats().forward.accepted)
}

#[test]
fn allocations_do_not_grow_with_steps() {
    let budget = GradientMode::Checkpointed {
        checkpoints: adjoint::Checkpoints::Budget(4),
        backward: Default::default(),
    };
    let full = GradientMode::Checkpointed {
        checkpoints: adjoint::Checkpoints::EveryStep,
        backward: Default::default(),
    };
    for mode in [
        GradientMode::checkpointed(),
        full,
        budget,
        GradientMode::backsolve(false),
        GradientMode::backsolve(true),
        GradientMode::Direct,
        GradientMode::Forward,
        // The backward atol relative to the seed (built once per backward pass).
        GradientMode::Checkpointed {
            checkpoints: adjoint::Checkpoints::EveryStep,
            backward: adjoint::BackwardSolver {
                seminorm: true,
                adjoint_atol: adjoint::AdjointAtol::RelativeToSeed,
                ..Default::default()
            },
        },
        GradientMode::Backsolve {
            backward: adjoint::BackwardSolver {
                seminorm: true,
                adjoint_atol: adjoint::AdjointAtol::RelativeToSeed,
                ..Default::default()
            },
        },
    ] {
        let is_budget = matches!(
            mode,
            GradientMode::Checkpointed {
                checkpoints: adjoint::Checkpoints::Budget(_),
                ..
            }
        );
        let (short, steps_short) = count(&mode, 2.0);
        let (long, steps_long) = count(&mode, 20.0);
        println!(
            "{}: {short} allocations for {steps_short} steps, {long} for {steps_long}",
            mode.name()
        );
        assert!(steps_long >= 5 * steps_short, "horizon did not add steps");
        // Budgeted checkpoints recompute each segment with a new integrator: a bounded
        // number of allocations per segment, and at most `budget + 1` segments per interval
        // whatever the number of steps (which of them exist depends on the thinning phase).
        let bound = if is_budget { short + short / 2 } else { short };
        assert!(
            long <= bound,
            "{}: {long} allocations for {steps_long} steps vs {short} for {steps_short}",
            mode.name()
        );
    }
}
