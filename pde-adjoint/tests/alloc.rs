//! Evaluations of a built problem allocate nothing: the state, adjoint,
//! forward-sensitivity and finite-difference solves all reuse the factor and
//! the problem's buffers. Counted with a wrapping global allocator (this test
//! binary only).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use pde_adjoint::{Grid, HeatProblem, Plate, Rod};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn check<G: Grid>(grid: &G) {
    let n = grid.n_unknowns();
    let target: Vec<f64> = grid.sample(&|p| p[0] * (1.0 - p[0]));
    let s: Vec<f64> = grid.sample(&|p| 1.0 + p[0] + p[1]);
    let mut g = vec![0.0; n];
    let mut p = HeatProblem::new(grid, &target).unwrap();
    // Warm up once, then count.
    p.objective_and_gradient(&s, &mut g).unwrap();
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..5 {
        p.objective(&s).unwrap();
        p.objective_and_gradient(&s, &mut g).unwrap();
    }
    p.gradient_forward(&s, &mut g).unwrap();
    p.gradient_fd(&s, &mut g, None).unwrap();
    let after = ALLOCATIONS.load(Ordering::Relaxed);
    assert_eq!(
        after - before,
        0,
        "allocations during evaluations (n = {n})"
    );
}

#[test]
fn evaluations_do_not_allocate() {
    // Sizes on both sides of faer's simplicial/supernodal switch.
    check(&Rod::new(40).unwrap());
    check(&Rod::new(5000).unwrap());
    check(&Plate::new(6).unwrap());
    check(&Plate::new(60).unwrap());
}
