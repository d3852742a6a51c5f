//! Autodiff benchmarks: value and value+VJP of a Neural ODE right-hand side.
//!
//! - `autodiff/mlp_<ty>/<what>/<batch>`: the 2→64→64→2 tanh MLP `f(z, θ)` with all
//!   parameters in one flat leaf, at batch 16, 256 and 4096; `<what>` is `value`
//!   (recording off: the plain evaluation the forward ODE solve uses), `value_rec`
//!   (recording on, no backward: the cost of recording) and `value_vjp` (recording +
//!   backward with a seed + reading `aᵀ∂f/∂z` and the flat `aᵀ∂f/∂θ`, what the adjoint
//!   calls). The ratio `value_vjp / value` is the figure to watch (target ≤ 3).
//! - `autodiff/conv_block_f32/*`: two 64-channel 3×3 convolutions, each followed by a
//!   group norm (8 groups), relu between, on 7×7 maps at batch 128.
//! - `autodiff/elementwise_f64/<fn>/{kernel,libm}`: the vectorised slice kernels
//!   (`Float::tanh_slice`, ...) against a loop calling std (libm) on the same 262,144
//!   values (one hidden layer of the MLP at batch 4096); throughput in elements.
//! - `autodiff/gemm_peak/*`: faer's 256×256 GEMM (`Par::Seq`, the kernel the ops call) in
//!   the same run, for the fraction of peak achieved.
//!
//! Throughput is in floating-point operations (criterion prints it as elem/s = FLOP/s):
//! the matrix-product FLOPs of the forward pass for `value`, three times that for
//! `value_vjp` (the reverse pass does two products per forward product).
//!
//! Peer: candle-core 0.11 is not in this machine's offline registry (and not in the lock
//! file), so it is not measured here.
#![allow(missing_docs)]

use std::hint::black_box;

use autodiff::{Float, Tape, Var};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const D: usize = 2;
const H: usize = 64;
const N_MLP: usize = D * H + H + H * H + H + H * D + D;

fn vals<T: Float>(n: usize, a: f64, s: f64) -> Vec<T> {
    (0..n)
        .map(|i| T::of(s * ((i as f64 + 1.0) * a).sin()))
        .collect()
}

fn mlp<'t, T: Float>(z: Var<'t, T>, th: Var<'t, T>) -> Var<'t, T> {
    let mut o = 0;
    let mut take = |dims: &[usize]| {
        let v = th.view(o, dims);
        o += dims.iter().product::<usize>();
        v
    };
    let (w1, b1, w2, b2, w3, b3) = (
        take(&[D, H]),
        take(&[H]),
        take(&[H, H]),
        take(&[H]),
        take(&[H, D]),
        take(&[D]),
    );
    let a = (z.matmul(w1) + b1).tanh();
    let a = (a.matmul(w2) + b2).tanh();
    a.matmul(w3) + b3
}

struct MlpBench<T: Float> {
    tape: Tape<T>,
    batch: usize,
    theta: Vec<T>,
    z: Vec<T>,
    a: Vec<T>,
    out: Vec<T>,
    gz: Vec<T>,
    gth: Vec<T>,
}

impl<T: Float> MlpBench<T> {
    fn new(batch: usize) -> Self {
        Self {
            tape: Tape::new(),
            batch,
            theta: vals(N_MLP, 0.37, 0.3),
            z: vals(batch * D, 0.91, 1.0),
            a: vals(batch * D, 1.7, 1.0),
            out: vec![T::zero(); batch * D],
            gz: vec![T::zero(); batch * D],
            gth: vec![T::zero(); N_MLP],
        }
    }

    fn run(&mut self, record: bool, vjp: bool) {
        self.tape.reset();
        self.tape.set_recording(record);
        let t = &self.tape;
        let z = t.leaf(&self.z, &[self.batch, D]).expect("shape");
        let th = t.leaf(&self.theta, &[N_MLP]).expect("shape");
        let y = mlp(z, th);
        y.value_into(&mut self.out).expect("value");
        if vjp {
            t.backward(y, &self.a).expect("backward");
            z.grad_into(&mut self.gz).expect("grad");
            th.grad_into(&mut self.gth).expect("grad");
        }
    }
}

fn bench_mlp<T: Float>(c: &mut Criterion, ty: &str) {
    let mut g = c.benchmark_group(format!("autodiff/mlp_{ty}"));
    for batch in [16usize, 256, 4096] {
        let flops = (2 * batch * (D * H + H * H + H * D)) as u64;
        let mut m = MlpBench::<T>::new(batch);
        m.run(true, true); // warm-up: buffers reach their steady-state capacity
        g.throughput(Throughput::Elements(flops));
        g.bench_function(BenchmarkId::new("value", batch), |b| {
            b.iter(|| {
                m.run(false, false);
                black_box(&m.out);
            })
        });
        g.bench_function(BenchmarkId::new("value_rec", batch), |b| {
            b.iter(|| {
                m.run(true, false);
                black_box(&m.out);
            })
        });
        g.throughput(Throughput::Elements(3 * flops));
        g.bench_function(BenchmarkId::new("value_vjp", batch), |b| {
            b.iter(|| {
                m.run(true, true);
                black_box(&m.gth);
            })
        });
    }
    g.finish();
}

struct ConvBench {
    tape: Tape<f32>,
    x: Vec<f32>,
    theta: Vec<f32>,
    a: Vec<f32>,
    out: Vec<f32>,
    gx: Vec<f32>,
    gth: Vec<f32>,
}

const CN: usize = 128;
const CC: usize = 64;
const CW: usize = CC * CC * 9;

impl ConvBench {
    fn new() -> Self {
        let n = CN * CC * 49;
        Self {
            tape: Tape::new(),
            x: vals(n, 0.77, 1.0),
            theta: vals(2 * CW, 0.53, 0.05),
            a: vals(n, 1.3, 1.0),
            out: vec![0.0; n],
            gx: vec![0.0; n],
            gth: vec![0.0; 2 * CW],
        }
    }

    fn run(&mut self, record: bool, vjp: bool) {
        self.tape.reset();
        self.tape.set_recording(record);
        let t = &self.tape;
        let x = t.leaf(&self.x, &[CN, CC, 7, 7]).expect("shape");
        let th = t.leaf(&self.theta, &[2 * CW]).expect("shape");
        let k1 = th.view(0, &[CC, CC, 3, 3]);
        let k2 = th.view(CW, &[CC, CC, 3, 3]);
        let h = x.conv2d(k1, 1, 1).group_norm(8, 1e-5).relu();
        let y = h.conv2d(k2, 1, 1).group_norm(8, 1e-5);
        y.value_into(&mut self.out).expect("value");
        if vjp {
            t.backward(y, &self.a).expect("backward");
            x.grad_into(&mut self.gx).expect("grad");
            th.grad_into(&mut self.gth).expect("grad");
        }
    }
}

fn bench_conv(c: &mut Criterion) {
    let mut g = c.benchmark_group("autodiff/conv_block_f32");
    g.sample_size(10);
    let flops = (2 * 2 * CN * CC * 49 * CC * 9) as u64;
    let mut m = ConvBench::new();
    m.run(true, true);
    g.throughput(Throughput::Elements(flops));
    g.bench_function("value", |b| b.iter(|| m.run(false, false)));
    g.throughput(Throughput::Elements(3 * flops));
    g.bench_function("value_vjp", |b| b.iter(|| m.run(true, true)));
    g.finish();
}

fn bench_gemm_peak(c: &mut Criterion) {
    let mut g = c.benchmark_group("autodiff/gemm_peak");
    let n = 256;
    g.throughput(Throughput::Elements((2 * n * n * n) as u64));
    let a64: Vec<f64> = vals(n * n, 0.3, 1.0);
    let mut c64 = vec![0.0f64; n * n];
    g.bench_function("faer_f64_256", |b| {
        b.iter(|| f64::gemm(&mut c64, n, n, n, &a64, false, &a64, false, false))
    });
    let a32: Vec<f32> = vals(n * n, 0.3, 1.0);
    let mut c32 = vec![0.0f32; n * n];
    g.bench_function("faer_f32_256", |b| {
        b.iter(|| f32::gemm(&mut c32, n, n, n, &a32, false, &a32, false, false))
    });
    g.finish();
}

type SliceFn = fn(&[f64], &mut [f64]);
/// Name, slice kernel, libm reference, positive inputs only.
type ElemCase = (&'static str, SliceFn, fn(f64) -> f64, bool);

fn bench_elementwise(c: &mut Criterion) {
    let mut g = c.benchmark_group("autodiff/elementwise_f64");
    let n = 4096 * 64;
    let x: Vec<f64> = vals(n, 0.37, 3.0);
    let xp: Vec<f64> = x.iter().map(|v| v.abs() + 0.1).collect();
    let mut y = vec![0.0f64; n];
    g.throughput(Throughput::Elements(n as u64));
    let cases: [ElemCase; 6] = [
        ("tanh", f64::tanh_slice, f64::tanh, false),
        ("exp", f64::exp_slice, f64::exp, false),
        (
            "sigmoid",
            f64::sigmoid_slice,
            |v| 1.0 / (1.0 + (-v).exp()),
            false,
        ),
        ("log", f64::log_slice, f64::ln, true),
        (
            "softplus",
            f64::softplus_slice,
            |v| v.max(0.0) + (-v.abs()).exp().ln_1p(),
            false,
        ),
        ("sin", f64::sin_slice, f64::sin, false),
    ];
    for (name, kernel, lib, positive) in cases {
        let input = if positive { &xp } else { &x };
        g.bench_function(BenchmarkId::new(name, "kernel"), |b| {
            b.iter(|| kernel(black_box(input), &mut y))
        });
        g.bench_function(BenchmarkId::new(name, "libm"), |b| {
            b.iter(|| {
                for (d, &v) in y.iter_mut().zip(black_box(input)) {
                    *d = lib(v);
                }
            })
        });
    }
    g.finish();
}

fn benches(c: &mut Criterion) {
    bench_gemm_peak(c);
    bench_elementwise(c);
    bench_mlp::<f64>(c, "f64");
    bench_mlp::<f32>(c, "f32");
    bench_conv(c);
}

criterion_group!(autodiff_benches, benches);
criterion_main!(autodiff_benches);
