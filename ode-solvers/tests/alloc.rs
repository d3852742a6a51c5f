//! No allocation per step: steps, dense output and interpolation of a built stepper
//! are counted by `alloc_count` (on this thread).

use ode_solvers::problems::{Lorenz, Pleiades, TestProblem};
use ode_solvers::{AdamsStepper, Options, RkStepper, Stepper, tableau};

#[global_allocator]
static GLOBAL: alloc_count::Counting = alloc_count::Counting;

/// Allocations and step count of up to `max_steps` steps (adaptive, or fixed `h` for
/// the fixed-step tableaux), each followed by an interpolation inside the step.
fn count_rk<P: TestProblem<f64>>(
    tab: &'static tableau::Tableau,
    mut p: P,
    t_end: f64,
    h: f64,
    max_steps: usize,
) -> (usize, usize) {
    let y0 = p.y0();
    let mut out = vec![0.0; y0.len()];
    let opts = Options::with_tol(1e-8, 1e-8);
    let mut st = RkStepper::new(tab, &mut p, 0.0, &y0, t_end, &opts).unwrap();
    let (steps, allocations) = alloc_count::allocations_in(|| {
        let mut k = 0;
        while !st.is_done() && k < max_steps {
            if tab.is_adaptive() {
                st.step(&mut p).unwrap();
            } else {
                st.step_fixed(&mut p, h).unwrap();
            }
            let tm = 0.5 * (st.last_step().unwrap().t_prev + st.t());
            st.interpolate(&mut p, tm, &mut out).unwrap();
            k += 1;
        }
        k
    });
    (allocations, steps)
}

#[test]
fn steps_dense_output_and_interpolation_do_not_allocate() {
    for tab in tableau::ALL_TABLEAUX {
        // n = 3 and n = 28: both sides of the compile-time-sized kernels (n ≤ 8).
        let lorenz = count_rk(tab, Lorenz::default(), 2.0, 0.01, 200);
        let pleiades = count_rk(tab, Pleiades, 3.0, 0.001, 100);
        for (n, (allocations, steps)) in [(3, lorenz), (28, pleiades)] {
            assert!(steps > 10);
            assert_eq!(
                allocations, 0,
                "{} n = {n}: {allocations} allocations in {steps} steps",
                tab.name
            );
        }
    }
}

#[test]
fn adams_steps_do_not_allocate() {
    let mut p = Lorenz::default();
    let y0 = TestProblem::<f64>::y0(&p);
    let mut out = [0.0; 3];
    let mut st = AdamsStepper::new(&mut p, 0.0, &y0, 2.0, &Options::with_tol(1e-8, 1e-8)).unwrap();
    let (steps, allocations) = alloc_count::allocations_in(|| {
        let mut k = 0;
        while !st.is_done() && k < 300 {
            st.step(&mut p).unwrap();
            let tm = 0.5 * (st.last_step().unwrap().t_prev + st.t());
            st.interpolate(&mut p, tm, &mut out).unwrap();
            k += 1;
        }
        k
    });
    assert!(steps > 10);
    assert_eq!(
        allocations, 0,
        "adams: {allocations} allocations in {steps} steps"
    );
}
