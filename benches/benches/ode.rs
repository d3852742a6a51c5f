//! ODE solver benchmarks: work–precision of `ode-solvers` (Dopri5, Tsit5, Dop853) against
//! the `ode_solvers` 0.6.2 crate (Dopri5, Dop853) and diffsol 0.18 (Tsit45, closures on its
//! nalgebra vectors) on the Arenstorf orbit, Lorenz and Van der Pol (μ = 1), in the same
//! run, on the same problems, at tolerances `rtol = atol` = 1e-3 … 1e-10.
//!
//! Every timed solve is what a user writes for one solve, set-up included: `odeint` for
//! ours, `new` + `integrate` (sparse output) for `ode_solvers`, `OdeBuilder::build` +
//! `tsit45` + `step` until the stop time for diffsol.
//!
//! Before timing, a work–precision table (function evaluations, error against a tight
//! reference, time per evaluation outside the right-hand side, fastest of 31 solves) is
//! printed to stderr once, with one more table for the Arenstorf orbit behind an out-of-line
//! right-hand side ([`ArenstorfOutOfLine`]); `cargo bench -p benches --bench ode -- zzz` (a
//! filter matching no benchmark) prints only the tables. The criterion groups `ode/<problem>/rhs` time the
//! right-hand side alone, so the solver overhead per evaluation is
//! `time(solve)/nfe − time(rhs)`; the groups report throughput in evaluations per second for
//! that reason. The right-hand side is timed back to back (throughput); inside a solve each
//! stage waits for the previous one, so a right-hand side with long-latency operations
//! (Arenstorf's square roots and divisions) shows part of its latency as "overhead", for
//! every solver alike.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Instant;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use diffsol::{
    NalgebraMat, OdeBuilder, OdeEquations, OdeSolverMethod, OdeSolverStopReason, Op, Vector,
};
use ode_solvers::problems::{Arenstorf, Lorenz, TestProblem, VanDerPol};
use ode_solvers::{Method, OdeSystem, Options, odeint};
use ode_solvers_peer as peer;
use peer::{OutputType, System};

type V2 = peer::Vector2<f64>;
type V3 = peer::Vector3<f64>;
type V4 = peer::Vector4<f64>;

/// The same problems written for the peer (its `System` trait on its nalgebra vectors),
/// delegating to our right-hand sides so both solvers integrate identical maths.
struct PeerSys<P>(P);

macro_rules! peer_system {
    ($p:ty, $v:ty) => {
        impl System<f64, $v> for PeerSys<$p> {
            #[inline]
            fn system(&self, t: f64, y: &$v, dy: &mut $v) {
                let mut p = self.0;
                OdeSystem::<f64>::rhs(&mut p, t, y.as_slice(), dy.as_mut_slice());
            }
        }
    };
}
/// The Arenstorf orbit with its right-hand side kept out of line (`#[inline(never)]`), as a
/// user's network or anything behind a function pointer is: the table's
/// `arenstorf (rhs out of line)` rows. A four-component right-hand side inlined into the
/// stage loop is scheduled by LLVM together with the stage sums, so the inlined rows also
/// measure how that scheduling happens to go for each solver's code shape; out of line, the
/// difference between solvers is their own work per step.
#[derive(Clone, Copy, Debug)]
struct ArenstorfOutOfLine;

impl OdeSystem<f64> for ArenstorfOutOfLine {
    #[inline(never)]
    fn rhs(&mut self, t: f64, y: &[f64], dy: &mut [f64]) {
        Arenstorf.rhs(t, y, dy)
    }
}

impl TestProblem<f64> for ArenstorfOutOfLine {
    fn name(&self) -> &'static str {
        "arenstorf (rhs out of line)"
    }
    fn y0(&self) -> Vec<f64> {
        Arenstorf.y0()
    }
    fn t_span(&self) -> (f64, f64) {
        Arenstorf.t_span()
    }
}

peer_system!(Arenstorf, V4);
peer_system!(ArenstorfOutOfLine, V4);
peer_system!(Lorenz, V3);
peer_system!(VanDerPol, V2);

const TOLS: [f64; 8] = [1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-9, 1e-10];
/// Tolerances timed by criterion (the table covers all of `TOLS`).
const TIMED_TOLS: [f64; 4] = [1e-3, 1e-6, 1e-8, 1e-10];

#[derive(Clone, Copy, Debug, PartialEq)]
enum Solver {
    Ours(Method),
    PeerDopri5,
    PeerDop853,
    DiffsolTsit45,
}

impl Solver {
    fn name(self) -> String {
        match self {
            Solver::Ours(m) => format!("ours_{}", m.name()),
            Solver::PeerDopri5 => "peer_dopri5".into(),
            Solver::PeerDop853 => "peer_dop853".into(),
            Solver::DiffsolTsit45 => "diffsol_tsit45".into(),
        }
    }
}

const SOLVERS: [Solver; 6] = [
    Solver::Ours(Method::Dopri5),
    Solver::Ours(Method::Tsit5),
    Solver::Ours(Method::Dop853),
    Solver::PeerDopri5,
    Solver::PeerDop853,
    Solver::DiffsolTsit45,
];

trait Problem: TestProblem<f64> + Copy {
    /// Runs the peer; returns (final state, nfe).
    fn peer(self, dop853: bool, tol: f64) -> (Vec<f64>, usize);
}

macro_rules! peer_problem {
    ($p:ty, $v:ty) => {
        impl Problem for $p {
            fn peer(self, dop853: bool, tol: f64) -> (Vec<f64>, usize) {
                let (t0, t1) = TestProblem::<f64>::t_span(&self);
                let y0 = <$v>::from_column_slice(&TestProblem::<f64>::y0(&self));
                // Sparse output: the peer's default dense output extrapolates the last point.
                macro_rules! run {
                    ($s:ident) => {{
                        let mut s = peer::$s::new(PeerSys(self), t0, t1, t1 - t0, y0, tol, tol);
                        s.set_output(OutputType::Sparse);
                        let stats = s.integrate().expect("peer solve");
                        let y = s.y_out().last().expect("peer output").as_slice().to_vec();
                        (y, stats.num_eval as usize)
                    }};
                }
                if dop853 { run!(Dop853) } else { run!(Dopri5) }
            }
        }
    };
}
peer_problem!(Arenstorf, V4);
peer_problem!(ArenstorfOutOfLine, V4);
peer_problem!(Lorenz, V3);
peer_problem!(VanDerPol, V2);

fn solve<P: Problem>(p: P, solver: Solver, tol: f64) -> (Vec<f64>, usize) {
    match solver {
        Solver::Ours(m) => {
            let (t0, t1) = p.t_span();
            let o = Options {
                max_steps: 1_000_000,
                ..Options::with_tol(tol, tol)
            };
            let sol = odeint(&mut p.clone(), &p.y0(), &[t0, t1], m, &o).expect("solve");
            (sol.y_last().to_vec(), sol.stats.nfe)
        }
        Solver::PeerDopri5 => p.peer(false, tol),
        Solver::PeerDop853 => p.peer(true, tol),
        Solver::DiffsolTsit45 => diffsol_tsit45(p, tol),
    }
}

/// diffsol's Tsit45 on the same right-hand side (a closure over slices), stepping until the
/// stop time (diffsol clips the last step onto it). Returns (final state, nfe).
fn diffsol_tsit45<P: Problem>(p: P, tol: f64) -> (Vec<f64>, usize) {
    let (t0, t1) = p.t_span();
    let y0 = p.y0();
    let n = y0.len();
    let problem = OdeBuilder::<NalgebraMat<f64>>::new()
        .t0(t0)
        .rtol(tol)
        .atol([tol])
        .rhs(move |x: &[f64], _p: &[f64], t: f64, dy: &mut [f64]| {
            let mut q = p;
            q.rhs(t, x, dy);
        })
        .init(
            move |_p: &[f64], _t: f64, y: &mut [f64]| y.copy_from_slice(&y0),
            n,
        )
        .build()
        .expect("diffsol problem");
    let mut s = problem.tsit45().expect("diffsol tsit45");
    s.set_stop_time(t1).expect("diffsol stop time");
    while !matches!(
        s.step().expect("diffsol step"),
        OdeSolverStopReason::TstopReached
    ) {}
    let y = s.state().y.clone_as_vec();
    drop(s);
    let nfe = problem.eqn.rhs().statistics().number_of_calls;
    (y, nfe)
}

fn reference<P: Problem>(p: P) -> Vec<f64> {
    let (t0, t1) = p.t_span();
    if let Some(y) = p.exact(t1) {
        return y;
    }
    let o = Options {
        max_steps: 10_000_000,
        ..Options::with_tol(1e-14, 1e-14)
    };
    odeint(&mut p.clone(), &p.y0(), &[t0, t1], Method::Dop853, &o)
        .expect("reference")
        .y_last()
        .to_vec()
}

/// Fastest wall time of `f` over 31 repetitions (for the printed table only; the timed
/// results are criterion's). The minimum, not the median: on a machine shared with other
/// jobs it is the figure that repeats from run to run, and every solver is measured alike.
fn min_secs(mut f: impl FnMut()) -> f64 {
    (0..31)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn rhs_secs<P: Problem>(p: P) -> f64 {
    let mut q = p;
    let y = p.y0();
    let mut dy = vec![0.0; y.len()];
    let reps = 10_000;
    min_secs(|| {
        for i in 0..reps {
            q.rhs(
                black_box(i as f64 * 1e-6),
                black_box(&y),
                black_box(&mut dy),
            );
        }
    }) / reps as f64
}

fn table<P: Problem>(p: P) {
    let yref = reference(p);
    let t_rhs = rhs_secs(p);
    eprintln!(
        "\n{} (rhs {:.1} ns/eval): tol, then per solver nfe / max error / overhead ns per eval",
        p.name(),
        t_rhs * 1e9
    );
    for tol in TOLS {
        let mut line = format!("  {tol:7.0e}");
        for s in SOLVERS {
            let (y, nfe) = solve(p, s, tol);
            let err = y
                .iter()
                .zip(&yref)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            let t = min_secs(|| {
                black_box(solve(p, s, tol));
            });
            let overhead = (t / nfe as f64 - t_rhs) * 1e9;
            line += &format!(" | {:11} {nfe:6} {err:8.1e} {overhead:6.1}", s.name());
        }
        eprintln!("{line}");
    }
}

fn bench_problem<P: Problem>(c: &mut Criterion, p: P) {
    let mut g = c.benchmark_group(format!("ode/{}", p.name()));
    g.sample_size(20);
    // The right-hand side alone, per evaluation.
    {
        let mut q = p;
        let y = p.y0();
        let mut dy = vec![0.0; y.len()];
        g.throughput(Throughput::Elements(1));
        g.bench_function("rhs", |b| {
            b.iter(|| q.rhs(black_box(0.5), black_box(&y), black_box(&mut dy)))
        });
    }
    for tol in TIMED_TOLS {
        for s in SOLVERS {
            let (_, nfe) = solve(p, s, tol);
            g.throughput(Throughput::Elements(nfe as u64));
            g.bench_with_input(
                BenchmarkId::new(s.name(), format!("{tol:.0e}")),
                &tol,
                |b, &tol| b.iter(|| black_box(solve(p, s, tol))),
            );
        }
    }
    g.finish();
}

fn benches(c: &mut Criterion) {
    static PRINTED: std::sync::Once = std::sync::Once::new();
    PRINTED.call_once(|| {
        eprintln!("work–precision (error = max-norm at the final time vs exact / DOP853 at 1e-14)");
        table(Arenstorf);
        table(ArenstorfOutOfLine);
        table(Lorenz::default());
        table(VanDerPol::default());
    });
    bench_problem(c, Arenstorf);
    bench_problem(c, Lorenz::default());
    bench_problem(c, VanDerPol::default());
}

criterion_group!(ode_benches, benches);
criterion_main!(ode_benches);
