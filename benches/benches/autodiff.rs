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
//! Peer: candle-core 0.11's CPU backend (`candle_value`, `candle_value_vjp`: the same
//! networks, parameters and inputs, gradients of `Σ a·f` by `Tensor::backward`), made
//! single-threaded like our ops (`RAYON_NUM_THREADS=1` unless already set); both peers
//! are checked against each other before timing. `benches/scripts/torch_autodiff.py`
//! runs the same work in PyTorch (one thread) for reference. The recorded results of
//! `cargo bench -p benches --bench autodiff -- --noplot 'mlp|conv_block|gemm'`, with
//! PyTorch's beside them, are in `benches/README.md`.
#![allow(missing_docs)]

use std::hint::black_box;

use autodiff::{Float, Tape, Var};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const D: usize = 2;
const H: usize = 64;
const N_MLP: usize = D * H + H + H * H + H + H * D + D;

fn vals<T: Float>(n: usize, a: f64, s: f64) -> Vec<T> {
    (0..n)
        .map(|i| T::from_f64_const(s * ((i as f64 + 1.0) * a).sin()))
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

fn bench_mlp<T: Float + candle_core::WithDType>(c: &mut Criterion, ty: &str, rtol: f64) {
    check_mlp_against_candle::<T>(rtol);
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
        let mut p = peer::Mlp::new(&m).expect("candle mlp setup");
        p.value_vjp().expect("candle warm-up");
        g.throughput(Throughput::Elements(flops));
        g.bench_function(BenchmarkId::new("candle_value", batch), |b| {
            b.iter(|| {
                p.value().expect("candle value");
                black_box(&p.out);
            })
        });
        g.throughput(Throughput::Elements(3 * flops));
        g.bench_function(BenchmarkId::new("candle_value_vjp", batch), |b| {
            b.iter(|| {
                p.value_vjp().expect("candle value_vjp");
                black_box(&p.gth);
            })
        });
    }
    g.finish();
}

struct ConvBench {
    tape: Tape<f32>,
    n: usize,
    c: usize,
    hw: usize,
    x: Vec<f32>,
    theta: Vec<f32>,
    a: Vec<f32>,
    out: Vec<f32>,
    gx: Vec<f32>,
    gth: Vec<f32>,
}

/// Batch, channels and map side of the benchmarked conv block.
const CN: usize = 128;
const CC: usize = 64;
const CHW: usize = 7;
/// Groups of both group norms, and their epsilon.
const GROUPS: usize = 8;
const GN_EPS: f32 = 1e-5;

impl ConvBench {
    /// Two `c → c` 3×3 kernels (padding 1, stride 1, no bias) on `[n, c, hw, hw]` maps.
    fn new(n: usize, c: usize, hw: usize) -> Self {
        let len = n * c * hw * hw;
        let cw = c * c * 9;
        Self {
            tape: Tape::new(),
            n,
            c,
            hw,
            x: vals(len, 0.77, 1.0),
            theta: vals(2 * cw, 0.53, 0.05),
            a: vals(len, 1.3, 1.0),
            out: vec![0.0; len],
            gx: vec![0.0; len],
            gth: vec![0.0; 2 * cw],
        }
    }

    fn run(&mut self, record: bool, vjp: bool) {
        self.tape.reset();
        self.tape.set_recording(record);
        let t = &self.tape;
        let (n, c, hw) = (self.n, self.c, self.hw);
        let cw = c * c * 9;
        let x = t.leaf(&self.x, &[n, c, hw, hw]).expect("shape");
        let th = t.leaf(&self.theta, &[2 * cw]).expect("shape");
        let k1 = th.view(0, &[c, c, 3, 3]);
        let k2 = th.view(cw, &[c, c, 3, 3]);
        let h = x.conv2d(k1, 1, 1).group_norm(GROUPS, GN_EPS).relu();
        let y = h.conv2d(k2, 1, 1).group_norm(GROUPS, GN_EPS);
        y.value_into(&mut self.out).expect("value");
        if vjp {
            t.backward(y, &self.a).expect("backward");
            x.grad_into(&mut self.gx).expect("grad");
            th.grad_into(&mut self.gth).expect("grad");
        }
    }
}

fn bench_conv(c: &mut Criterion) {
    check_conv_against_candle();
    let mut g = c.benchmark_group("autodiff/conv_block_f32");
    g.sample_size(10);
    let flops = (2 * 2 * CN * CC * CHW * CHW * CC * 9) as u64;
    let mut m = ConvBench::new(CN, CC, CHW);
    m.run(true, true);
    g.throughput(Throughput::Elements(flops));
    g.bench_function("value", |b| b.iter(|| m.run(false, false)));
    g.throughput(Throughput::Elements(3 * flops));
    g.bench_function("value_vjp", |b| b.iter(|| m.run(true, true)));
    let mut p = peer::ConvBlock::new(&m).expect("candle conv setup");
    p.value_vjp().expect("candle warm-up");
    g.throughput(Throughput::Elements(flops));
    g.bench_function("candle_value", |b| {
        b.iter(|| p.value().expect("candle value"))
    });
    g.throughput(Throughput::Elements(3 * flops));
    g.bench_function("candle_value_vjp", |b| {
        b.iter(|| p.value_vjp().expect("candle value_vjp"))
    });
    g.finish();
}

/// Largest absolute difference between `ours` and `theirs`, relative to the largest
/// magnitude of `theirs` (a norm-wise relative error: entries near zero do not blow it up).
fn rel_err<T: Float>(ours: &[T], theirs: &[T]) -> f64 {
    assert_eq!(ours.len(), theirs.len(), "lengths differ");
    let scale = theirs.iter().fold(f64::MIN_POSITIVE, |m, v| {
        m.max(v.to_f64().unwrap_or(0.0).abs())
    });
    let diff = ours.iter().zip(theirs).fold(0.0f64, |m, (a, b)| {
        m.max((a.to_f64().unwrap_or(f64::NAN) - b.to_f64().unwrap_or(f64::NAN)).abs())
    });
    diff / scale
}

fn assert_close<T: Float>(what: &str, ours: &[T], theirs: &[T], rtol: f64) {
    let e = rel_err(ours, theirs);
    assert!(
        e <= rtol,
        "ours and candle disagree on {what}: relative error {e:.3e} > {rtol:.0e}"
    );
}

/// Before timing: on a small case, candle's value, `∂z` and `∂θ` match ours.
fn check_mlp_against_candle<T: Float + candle_core::WithDType>(rtol: f64) {
    let mut m = MlpBench::<T>::new(5);
    m.run(true, true);
    let mut p = peer::Mlp::new(&m).expect("candle mlp setup");
    p.value().expect("candle value");
    assert_close("mlp value", &m.out, &p.out, rtol);
    p.out.fill(T::zero());
    p.value_vjp().expect("candle value_vjp");
    assert_close("mlp value (vjp pass)", &m.out, &p.out, rtol);
    assert_close("mlp dz", &m.gz, &p.gz, rtol);
    assert_close("mlp dtheta", &m.gth, &p.gth, rtol);
}

/// Before timing: on a small block, candle's value, `∂x` and `∂θ` match ours.
fn check_conv_against_candle() {
    let mut m = ConvBench::new(2, 16, 5);
    m.run(true, true);
    let mut p = peer::ConvBlock::new(&m).expect("candle conv setup");
    p.value().expect("candle value");
    assert_close("conv value", &m.out, &p.out, 1e-4);
    p.out.fill(0.0);
    p.value_vjp().expect("candle value_vjp");
    assert_close("conv value (vjp pass)", &m.out, &p.out, 1e-4);
    assert_close("conv dx", &m.gx, &p.gx, 1e-4);
    assert_close("conv dtheta", &m.gth, &p.gth, 1e-4);
}

/// The peer: the same work written with candle-core's CPU tensors.
mod peer {
    use candle_core::{D, Device, Result, Storage, Tensor, Var, WithDType, bail};

    use super::{ConvBench, Float, GN_EPS, GROUPS, MlpBench};

    /// Makes candle single-threaded, as our ops are, unless `RAYON_NUM_THREADS` is set.
    ///
    /// candle reads `RAYON_NUM_THREADS` (`candle_core::utils::get_num_threads`) on every
    /// matmul to choose gemm's parallelism (`Parallelism::None` at 1), and its conv kernels
    /// use rayon's global pool, which reads the same variable when it starts.
    pub fn single_thread() {
        if std::env::var_os("RAYON_NUM_THREADS").is_none() {
            // SAFETY: called first in the benchmark's `main`, before candle, rayon or
            // criterion start any thread, so nothing reads the environment concurrently.
            unsafe { std::env::set_var("RAYON_NUM_THREADS", "1") };
        }
    }

    /// Copies a tensor's elements (row-major) into a caller buffer.
    fn read_into<T: WithDType>(t: &Tensor, out: &mut [T]) -> Result<()> {
        let t = t.contiguous()?;
        let (storage, layout) = t.storage_and_layout();
        let Storage::Cpu(cpu) = &*storage else {
            bail!("not a CPU tensor")
        };
        let Some((lo, hi)) = layout.contiguous_offsets() else {
            bail!("not contiguous")
        };
        if hi - lo != out.len() {
            bail!("{} elements, buffer of {}", hi - lo, out.len())
        }
        out.copy_from_slice(&cpu.as_slice::<T>()?[lo..hi]);
        Ok(())
    }

    fn grad_into<T: WithDType>(
        grads: &candle_core::backprop::GradStore,
        v: &Var,
        out: &mut [T],
    ) -> Result<()> {
        match grads.get(v) {
            Some(g) => read_into(g, out),
            None => bail!("no gradient for a variable"),
        }
    }

    /// The 2→64→64→2 tanh MLP: parameters as six candle `Var`s (`w1, b1, w2, b2, w3, b3`,
    /// the slices of our flat θ) created once, and their detached tensors for `value`.
    pub struct Mlp<T> {
        z: Var,
        z_value: Tensor,
        a: Tensor,
        params: Vec<Var>,
        params_tracked: Vec<Tensor>,
        params_value: Vec<Tensor>,
        pub out: Vec<T>,
        pub gz: Vec<T>,
        pub gth: Vec<T>,
    }

    fn mlp(z: &Tensor, p: &[Tensor]) -> Result<Tensor> {
        let h = z.matmul(&p[0])?.broadcast_add(&p[1])?.tanh()?;
        let h = h.matmul(&p[2])?.broadcast_add(&p[3])?.tanh()?;
        h.matmul(&p[4])?.broadcast_add(&p[5])
    }

    impl<T: Float + WithDType> Mlp<T> {
        /// The same state, seed and parameters as `ours`.
        pub fn new(ours: &MlpBench<T>) -> Result<Self> {
            use super::{D as DIM, H};
            let dev = Device::Cpu;
            let shape = (ours.batch, DIM);
            let z = Var::from_slice(&ours.z, shape, &dev)?;
            let a = Tensor::from_slice(&ours.a, shape, &dev)?;
            let dims: [&[usize]; 6] = [&[DIM, H], &[H], &[H, H], &[H], &[H, DIM], &[DIM]];
            let mut params = Vec::with_capacity(6);
            let mut o = 0;
            for d in dims {
                let len: usize = d.iter().product();
                params.push(Var::from_slice(&ours.theta[o..o + len], d, &dev)?);
                o += len;
            }
            Ok(Self {
                z_value: z.as_detached_tensor(),
                params_tracked: params.iter().map(|v| v.as_tensor().clone()).collect(),
                params_value: params.iter().map(Var::as_detached_tensor).collect(),
                z,
                a,
                params,
                out: vec![T::zero(); ours.out.len()],
                gz: vec![T::zero(); ours.gz.len()],
                gth: vec![T::zero(); ours.gth.len()],
            })
        }

        /// `f(z, θ)` with no gradient tracking, read into `out`.
        pub fn value(&mut self) -> Result<()> {
            let y = mlp(&self.z_value, &self.params_value)?;
            read_into(&y, &mut self.out)
        }

        /// `f(z, θ)` tracked, then `backward` of `Σ a ⊙ f`; reads `f`, `∂z` and the flat `∂θ`.
        pub fn value_vjp(&mut self) -> Result<()> {
            let y = mlp(&self.z, &self.params_tracked)?;
            read_into(&y, &mut self.out)?;
            let grads = (&y * &self.a)?.sum_all()?.backward()?;
            grad_into(&grads, &self.z, &mut self.gz)?;
            let mut o = 0;
            for v in &self.params {
                let len = v.elem_count();
                grad_into(&grads, v, &mut self.gth[o..o + len])?;
                o += len;
            }
            Ok(())
        }
    }

    /// Group normalisation without affine part, written with candle-core ops (what
    /// candle-nn's `group_norm` does, minus the scale and shift): biased variance,
    /// `ε` inside the square root.
    fn group_norm(x: &Tensor, groups: usize, eps: f64) -> Result<Tensor> {
        let (n, c, h, w) = x.dims4()?;
        let xs = x.reshape((n, groups, (c / groups) * h * w))?;
        let xc = xs.broadcast_sub(&xs.mean_keepdim(D::Minus1)?)?;
        let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
        let r = (var + eps)?.sqrt()?;
        xc.broadcast_div(&r)?.reshape((n, c, h, w))
    }

    fn block(x: &Tensor, k1: &Tensor, k2: &Tensor) -> Result<Tensor> {
        let eps = f64::from(GN_EPS);
        let h = group_norm(&x.conv2d(k1, 1, 1, 1, 1)?, GROUPS, eps)?.relu()?;
        group_norm(&h.conv2d(k2, 1, 1, 1, 1)?, GROUPS, eps)
    }

    /// The conv block: conv 3×3 → group norm → relu → conv 3×3 → group norm, kernels as
    /// two candle `Var`s (the halves of our flat θ) created once.
    pub struct ConvBlock {
        x: Var,
        x_value: Tensor,
        a: Tensor,
        k: [Var; 2],
        k_value: [Tensor; 2],
        pub out: Vec<f32>,
        pub gx: Vec<f32>,
        pub gth: Vec<f32>,
    }

    impl ConvBlock {
        /// The same input, seed and kernels as `ours`.
        pub fn new(ours: &ConvBench) -> Result<Self> {
            let dev = Device::Cpu;
            let (n, c, hw) = (ours.n, ours.c, ours.hw);
            let cw = c * c * 9;
            let x = Var::from_slice(&ours.x, (n, c, hw, hw), &dev)?;
            let a = Tensor::from_slice(&ours.a, (n, c, hw, hw), &dev)?;
            let k = [
                Var::from_slice(&ours.theta[..cw], (c, c, 3, 3), &dev)?,
                Var::from_slice(&ours.theta[cw..], (c, c, 3, 3), &dev)?,
            ];
            Ok(Self {
                x_value: x.as_detached_tensor(),
                k_value: [k[0].as_detached_tensor(), k[1].as_detached_tensor()],
                x,
                a,
                k,
                out: vec![0.0; ours.out.len()],
                gx: vec![0.0; ours.gx.len()],
                gth: vec![0.0; ours.gth.len()],
            })
        }

        /// The block with no gradient tracking, read into `out`.
        pub fn value(&mut self) -> Result<()> {
            let y = block(&self.x_value, &self.k_value[0], &self.k_value[1])?;
            read_into(&y, &mut self.out)
        }

        /// The block tracked, then `backward` of `Σ a ⊙ y`; reads `y`, `∂x` and the flat `∂θ`.
        pub fn value_vjp(&mut self) -> Result<()> {
            let y = block(&self.x, &self.k[0], &self.k[1])?;
            read_into(&y, &mut self.out)?;
            let grads = (&y * &self.a)?.sum_all()?.backward()?;
            grad_into(&grads, &self.x, &mut self.gx)?;
            let cw = self.gth.len() / 2;
            let (g1, g2) = self.gth.split_at_mut(cw);
            grad_into(&grads, &self.k[0], g1)?;
            grad_into(&grads, &self.k[1], g2)
        }
    }
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
    peer::single_thread();
    bench_gemm_peak(c);
    bench_elementwise(c);
    bench_mlp::<f64>(c, "f64", 1e-10);
    bench_mlp::<f32>(c, "f32", 1e-4);
    bench_conv(c);
}

criterion_group!(autodiff_benches, benches);
criterion_main!(autodiff_benches);
