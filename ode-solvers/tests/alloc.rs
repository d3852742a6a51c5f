//! No allocation per step: a counting global allocator around the step loop.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

use ode_solvers::problems::{Lorenz, Pleiades, TestProblem};
use ode_solvers::{AdamsStepper, Options, RkStepper, Stepper, tableau};

// One test only: the counter is global to the binary.
#[test]
fn steps_dense_output_and_interpolation_do_not_allocate() {
    let mut out = vec![0.0; 28];
    for tab in tableau::ALL_TABLEAUX {
        for n in [3usize, 28] {
            let opts = Options::with_tol(1e-8, 1e-8);
            let before;
            let steps;
            if n == 3 {
                let mut p = Lorenz::default();
                let y0 = TestProblem::<f64>::y0(&p);
                let mut st = RkStepper::new(tab, &mut p, 0.0, &y0, 2.0, &opts).unwrap();
                before = ALLOCS.load(Ordering::SeqCst);
                let mut k = 0;
                while !st.is_done() && k < 200 {
                    if tab.is_adaptive() {
                        st.step(&mut p).unwrap();
                    } else {
                        st.step_fixed(&mut p, 0.01).unwrap();
                    }
                    let tm = 0.5 * (st.last_step().unwrap().t_prev + st.t());
                    st.interpolate(&mut p, tm, &mut out[..3]).unwrap();
                    k += 1;
                }
                steps = k;
            } else {
                let mut p = Pleiades;
                let y0 = TestProblem::<f64>::y0(&p);
                let mut st = RkStepper::new(tab, &mut p, 0.0, &y0, 3.0, &opts).unwrap();
                before = ALLOCS.load(Ordering::SeqCst);
                let mut k = 0;
                while !st.is_done() && k < 100 {
                    if tab.is_adaptive() {
                        st.step(&mut p).unwrap();
                    } else {
                        st.step_fixed(&mut p, 0.001).unwrap();
                    }
                    let tm = 0.5 * (st.last_step().unwrap().t_prev + st.t());
                    st.interpolate(&mut p, tm, &mut out).unwrap();
                    k += 1;
                }
                steps = k;
            }
            let after = ALLOCS.load(Ordering::SeqCst);
            assert!(steps > 10);
            assert_eq!(
                after - before,
                0,
                "{} n = {n}: {} allocations in {steps} steps",
                tab.name,
                after - before
            );
        }
    }
    // Adams.
    let mut p = Lorenz::default();
    let y0 = TestProblem::<f64>::y0(&p);
    let mut st = AdamsStepper::new(&mut p, 0.0, &y0, 2.0, &Options::with_tol(1e-8, 1e-8)).unwrap();
    let before = ALLOCS.load(Ordering::SeqCst);
    for _ in 0..300 {
        if st.is_done() {
            break;
        }
        st.step(&mut p).unwrap();
        let tm = 0.5 * (st.last_step_start() + st.t());
        st.interpolate(&mut p, tm, &mut out[..3]).unwrap();
    }
    assert_eq!(
        ALLOCS.load(Ordering::SeqCst) - before,
        0,
        "adams allocates per step"
    );
}
