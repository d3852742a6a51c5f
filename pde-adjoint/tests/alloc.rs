//! Evaluations of a built problem allocate nothing: the state, adjoint,
//! forward-sensitivity and finite-difference solves all reuse the factor and
//! the problem's buffers. Counted on this thread by `alloc_count`.

use pde_adjoint::{Grid, HeatProblem, Plate, Rod};

#[global_allocator]
static GLOBAL: alloc_count::Counting = alloc_count::Counting;

fn check<G: Grid>(grid: &G) {
    let n = grid.n_unknowns();
    let target: Vec<f64> = grid.sample(&|p| p[0] * (1.0 - p[0]));
    let s: Vec<f64> = grid.sample(&|p| 1.0 + p[0] + p[1]);
    let mut g = vec![0.0; n];
    let mut p = HeatProblem::new(grid, &target).unwrap();
    // Warm up once, then count.
    p.objective_and_gradient(&s, &mut g).unwrap();
    let ((), allocations) = alloc_count::allocations_in(|| {
        for _ in 0..5 {
            p.objective(&s).unwrap();
            p.objective_and_gradient(&s, &mut g).unwrap();
        }
        p.gradient_forward(&s, &mut g).unwrap();
        p.gradient_fd(&s, &mut g, None).unwrap();
    });
    assert_eq!(allocations, 0, "allocations during evaluations (n = {n})");
}

#[test]
fn evaluations_do_not_allocate() {
    // Sizes on both sides of faer's simplicial/supernodal switch.
    check(&Rod::new(40).unwrap());
    check(&Rod::new(5000).unwrap());
    check(&Plate::new(6).unwrap());
    check(&Plate::new(60).unwrap());
}
