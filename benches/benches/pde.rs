//! Criterion benchmarks of the heated rod and plate (`pde-adjoint`): `J` plus
//! its gradient by the discrete adjoint against the forward solve alone, both
//! with the sparse Cholesky factorisation included (a fresh problem) and with
//! a factor kept across design iterations.
//!
//! Goal: adjoint / forward ≤ 1.5 with factorisation included, and
//! time linear in `n`. `pde_rod/tridiagonal_floor` is the bound for the rod: a
//! hand-written Thomas elimination doing the same state solve, objective and
//! adjoint solve (checked to give the same gradient).
#![allow(missing_docs)]

use std::f64::consts::PI;
use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use pde_adjoint::{Grid, HeatProblem, Plate, Rod};

fn bench_grid<G: Grid>(c: &mut Criterion, name: &str, grids: &[G]) {
    let mut group = c.benchmark_group(name);
    group.warm_up_time(Duration::from_millis(500));
    for grid in grids {
        let n = grid.n_unknowns();
        let target: Vec<f64> = grid.sample(&|p| (PI * p[0]).sin() * (PI * p[1]).sin().max(0.5));
        let s = vec![1.0; n];
        let mut g = vec![0.0; n];
        group.throughput(Throughput::Elements(n as u64));
        group.sample_size(if n >= 500_000 {
            10
        } else if n >= 50_000 {
            20
        } else {
            50
        });
        // Factorisation included: assembly + symbolic + numeric + solve(s).
        group.bench_with_input(BenchmarkId::new("forward_solve", n), &n, |b, _| {
            b.iter(|| {
                let mut p = HeatProblem::new(grid, &target).expect("valid problem");
                black_box(p.objective(&s).expect("solve"))
            })
        });
        group.bench_with_input(BenchmarkId::new("adjoint_gradient", n), &n, |b, _| {
            b.iter(|| {
                let mut p = HeatProblem::new(grid, &target).expect("valid problem");
                black_box(p.objective_and_gradient(&s, &mut g).expect("gradient"))
            })
        });
        // Factor kept across design iterations: one solve vs two.
        let mut p = HeatProblem::new(grid, &target).expect("valid problem");
        group.bench_with_input(BenchmarkId::new("forward_solve_reused", n), &n, |b, _| {
            b.iter(|| black_box(p.objective(&s).expect("solve")))
        });
        group.bench_with_input(
            BenchmarkId::new("adjoint_gradient_reused", n),
            &n,
            |b, _| b.iter(|| black_box(p.objective_and_gradient(&s, &mut g).expect("gradient"))),
        );
    }
    group.finish();
}

/// The floor for the rod: a hand-written tridiagonal (Thomas) solve of
/// `tridiag(−1, 2, −1)/h² u = s`, the objective, and the adjoint solve with the
/// same elimination, buffers allocated outside the timing.
struct Thomas {
    c: Vec<f64>,
    u: Vec<f64>,
    lambda: Vec<f64>,
}

impl Thomas {
    fn new(n: usize) -> Self {
        // Modified super-diagonal of the LU elimination of tridiag(−1, 2, −1).
        let mut c = vec![0.0; n];
        let mut denom = 2.0;
        c[0] = -1.0 / denom;
        for i in 1..n {
            denom = 2.0 + c[i - 1];
            c[i] = -1.0 / denom;
        }
        Self {
            c,
            u: vec![0.0; n],
            lambda: vec![0.0; n],
        }
    }

    /// Solves `tridiag(−1, 2, −1) x = x` in place (`c` from `new`).
    fn solve(c: &[f64], x: &mut [f64]) {
        let n = x.len();
        // d'_i = (d_i + d'_{i−1}) / (2 + c_{i−1}) = −c_i (d_i + d'_{i−1}).
        x[0] *= -c[0];
        for i in 1..n {
            x[i] = -c[i] * (x[i] + x[i - 1]);
        }
        for i in (0..n - 1).rev() {
            x[i] -= c[i] * x[i + 1];
        }
    }

    fn gradient(&mut self, s: &[f64], target: &[f64], h: f64, g: &mut [f64]) -> f64 {
        let h2 = h * h;
        for (u, s) in self.u.iter_mut().zip(s) {
            *u = h2 * s;
        }
        Self::solve(&self.c, &mut self.u);
        let mut j = 0.0;
        for ((l, u), t) in self.lambda.iter_mut().zip(&self.u).zip(target) {
            let d = u - t;
            j += d * d;
            *l = -2.0 * h * d * h2;
        }
        Self::solve(&self.c, &mut self.lambda);
        for (g, l) in g.iter_mut().zip(&self.lambda) {
            *g = -l;
        }
        h * j
    }
}

fn rod_floor(c: &mut Criterion) {
    let mut group = c.benchmark_group("pde_rod");
    group.warm_up_time(Duration::from_millis(500));
    for n in [1_000, 10_000, 100_000, 1_000_000] {
        let rod = Rod::new(n).expect("n > 0");
        let target: Vec<f64> = rod.sample(&|p| (PI * p[0]).sin());
        let s = vec![1.0; n];
        let mut g = vec![0.0; n];
        let mut thomas = Thomas::new(n);
        // Check the floor computes the same gradient as the library.
        let mut g_ref = vec![0.0; n];
        let mut p = HeatProblem::new(&rod, &target).expect("valid problem");
        p.objective_and_gradient(&s, &mut g_ref).expect("gradient");
        thomas.gradient(&s, &target, rod.spacing(), &mut g);
        let err = g
            .iter()
            .zip(&g_ref)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        let scale = g_ref.iter().map(|a| a.abs()).fold(0.0, f64::max);
        assert!(err <= 1e-6 * scale, "Thomas floor disagrees: {err:e}");
        group.throughput(Throughput::Elements(n as u64));
        group.sample_size(if n >= 500_000 { 10 } else { 50 });
        group.bench_with_input(BenchmarkId::new("tridiagonal_floor", n), &n, |b, _| {
            b.iter(|| black_box(thomas.gradient(&s, &target, rod.spacing(), &mut g)))
        });
    }
    group.finish();
}

fn rod(c: &mut Criterion) {
    let rods: Vec<Rod> = [1_000, 10_000, 100_000, 1_000_000]
        .into_iter()
        .map(|n| Rod::new(n).expect("n > 0"))
        .collect();
    bench_grid(c, "pde_rod", &rods);
}

fn plate(c: &mut Criterion) {
    let plates = [Plate::new(300).expect("m > 0")];
    bench_grid(c, "pde_plate", &plates);
}

criterion_group!(benches, rod, rod_floor, plate);
criterion_main!(benches);
