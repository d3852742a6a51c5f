//! Allocation counts do not grow with the number of steps (a counting global allocator):
//! a warmed solver reuses its buffers, and per-step work allocates nothing.
//! One test function only, so no other test allocates concurrently.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use adjoint::test_problems::Mlp;
use adjoint::{AdjointSolver, GradientMode, Method, Options};

struct Counting;
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

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
    let before = ALLOCS.load(Ordering::Relaxed);
    s.forward(&mut mlp, &z0, &theta, &ts).unwrap();
    dl.fill(1.0);
    s.backward_into(&mut mlp, &dl, &mut g).unwrap();
    let n = ALLOCS.load(Ordering::Relaxed) - before;
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
    ] {
        // Minimum over repetitions: the test harness's own threads may allocate meanwhile.
        let is_budget = matches!(
            mode,
            GradientMode::Checkpointed {
                checkpoints: adjoint::Checkpoints::Budget(_),
                ..
            }
        );
        let min3 = |h: f64| (0..3).map(|_| count(&mode, h)).min().unwrap();
        let (short, steps_short) = min3(2.0);
        let (long, steps_long) = min3(20.0);
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
