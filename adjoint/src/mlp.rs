//! A batched tanh multilayer perceptron as dynamics, with hand-written VJP and JVP.
//!
//! For `f64` on a CPU with AVX-512 or AVX2 + FMA, `eval` and the VJP run the fused row-chunk kernels of
//! the `fast` submodule (the whole network `chunk` rows at a time, bias and `tanh` or
//! `tanh'` applied in the product's registers); elsewhere (other float types, other
//! CPUs, [`TanhMlp::with_reference_kernels`]) a layer at a time over the whole batch
//! through faer's products (the reference path). The two agree to round-off.

use ode_solvers::Real;

#[cfg(feature = "tape")]
use crate::cast::{cast, cast_mut};
use crate::dynamics::{Dynamics, Vjp};
use crate::error::{Error, Result};
use crate::rng::SplitMix64;

#[cfg(all(feature = "tape", target_arch = "x86_64"))]
mod fast;
#[cfg(all(feature = "tape", target_arch = "x86_64"))]
use fast::{Net, Scratch};

/// Rows per chunk of the fused path by default: the chunk's activations
/// (`chunk · Σ h` values) and cotangents stay in L1/L2 between the layers.
#[cfg(all(feature = "tape", target_arch = "x86_64"))]
const DEFAULT_CHUNK: usize = 64;

/// A batched tanh MLP `ż = f(t, z, θ)` with hand-written derivatives.
///
/// Its VJP and JVP are exact and cost about one evaluation each, with no tape: a
/// reference dynamics for benchmarks (the built-in family of [`crate::scaling`]) and for
/// checking tape-based dynamics ([`crate::TapeDynamics`]) against.
///
/// Layer widths `widths = [d, h₁, …, h_k, d]`: hidden layers use `tanh`, the output layer
/// is linear. The state is a batch of `batch` rows of `d` (row-major). With `time_input`,
/// the first pre-activation gets `t · w_t` (`w_t` a learned vector of length `h₁`), so the
/// dynamics are non-autonomous. Parameter layout: for each layer `W` (`in × out`,
/// row-major) then `b` (`out`), then `w_t`.
///
/// For `f64` on CPUs with AVX-512 or AVX2 + FMA the evaluation and the VJP process the batch in chunks
/// of rows through all layers with fused register-blocked kernels (see the module docs);
/// results do not depend on the chunk size, bit for bit, and agree with the reference
/// path to round-off.
#[derive(Debug, Clone)]
pub struct TanhMlp<T> {
    widths: Vec<usize>,
    batch: usize,
    time_input: bool,
    offsets: Vec<(usize, usize)>,
    n_params: usize,
    /// Activations per layer (`acts[l]` is `batch × widths[l]`).
    acts: Vec<Vec<T>>,
    /// Tangents / cotangents per layer.
    tans: Vec<Vec<T>>,
    /// Per-row cotangents of [`Vjp::sensitivity_rhs`]: `cots[l]` is `widths[l] × n`
    /// (`n = batch · d`), entry `[k][(b, i)]` the derivative of output `i` of row `b` with
    /// respect to layer `l`'s pre-activation `k` (its input `z` for `l = 0`).
    cots: Vec<Vec<T>>,
    /// The `d × d` Jacobian blocks `∂f_b/∂z_b` of the rows (`[b][i][j]`).
    jz: Vec<T>,
    scratch_z: Vec<T>,
    scratch_theta: Vec<T>,
    /// Buffers of the fused path, `None` where it does not apply.
    #[cfg(all(feature = "tape", target_arch = "x86_64"))]
    fast: Option<Scratch>,
}

impl<T: Real> TanhMlp<T> {
    /// An MLP with the given widths (`[d, h₁, …, d]`, at least two entries, first and last
    /// equal) over a batch of `batch` states.
    pub fn new(widths: &[usize], batch: usize, time_input: bool) -> Result<Self> {
        if widths.len() < 2 || widths[0] != widths[widths.len() - 1] || batch == 0 {
            return Err(Error::InvalidOption {
                name: "TanhMlp widths",
                value: widths.len() as f64,
                reason: "need at least [d, d] with equal first and last width, and batch >= 1",
            });
        }
        if let Some(i) = widths.iter().position(|w| *w == 0) {
            return Err(Error::InvalidOption {
                name: "TanhMlp widths",
                value: i as f64,
                reason: "every width must be >= 1",
            });
        }
        let mut offsets = Vec::new();
        let mut off = 0;
        for l in 0..widths.len() - 1 {
            offsets.push((off, off + widths[l] * widths[l + 1]));
            off += widths[l] * widths[l + 1] + widths[l + 1];
        }
        let n_params = off + if time_input { widths[1] } else { 0 };
        let bufs = || widths.iter().map(|w| vec![T::zero(); batch * w]).collect();
        let n = batch * widths[0];
        Ok(TanhMlp {
            widths: widths.to_vec(),
            batch,
            time_input,
            offsets,
            n_params,
            acts: bufs(),
            tans: bufs(),
            cots: widths.iter().map(|w| vec![T::zero(); w * n]).collect(),
            jz: vec![T::zero(); n * widths[0]],
            scratch_z: vec![T::zero(); batch * widths[0]],
            scratch_theta: vec![T::zero(); n_params],
            #[cfg(all(feature = "tape", target_arch = "x86_64"))]
            fast: if core::any::TypeId::of::<T>() == core::any::TypeId::of::<f64>() {
                Scratch::new(widths, batch, DEFAULT_CHUNK)
            } else {
                None
            },
        })
    }

    /// This MLP with the fused path processing `rows` rows at a time (clamped to the
    /// batch); an error for `rows = 0`. No effect where the fused path does not apply.
    #[cfg_attr(not(all(feature = "tape", target_arch = "x86_64")), allow(unused_mut))]
    pub fn with_chunk_rows(mut self, rows: usize) -> Result<Self> {
        if rows == 0 {
            return Err(Error::InvalidOption {
                name: "TanhMlp chunk rows",
                value: 0.0,
                reason: "need at least one row per chunk",
            });
        }
        #[cfg(all(feature = "tape", target_arch = "x86_64"))]
        if self.fast.is_some() {
            self.fast = Scratch::new(&self.widths, self.batch, rows);
        }
        Ok(self)
    }

    /// This MLP on the reference path (a layer at a time, faer's products), for checking
    /// the fused kernels against.
    #[cfg_attr(not(all(feature = "tape", target_arch = "x86_64")), allow(unused_mut))]
    pub fn with_reference_kernels(mut self) -> Self {
        #[cfg(all(feature = "tape", target_arch = "x86_64"))]
        {
            self.fast = None;
        }
        self
    }

    /// Rows per chunk of the fused path, or `None` where the reference path runs (not
    /// `f64`, neither AVX-512 nor AVX2 + FMA, or [`TanhMlp::with_reference_kernels`]).
    pub fn chunk_rows(&self) -> Option<usize> {
        #[cfg(all(feature = "tape", target_arch = "x86_64"))]
        if let Some(f) = &self.fast {
            return Some(f.chunk());
        }
        None
    }

    /// The kernels `eval` and the VJP run on: `"avx512"` or `"avx2"` (the fused path's
    /// instruction set), or `"reference"` (a layer at a time through faer's products).
    pub fn kernels(&self) -> &'static str {
        #[cfg(all(feature = "tape", target_arch = "x86_64"))]
        if let Some(f) = &self.fast {
            return f.isa();
        }
        "reference"
    }

    /// The layer structure for the fused kernels.
    #[cfg(all(feature = "tape", target_arch = "x86_64"))]
    fn net(&self) -> Net<'_> {
        Net {
            widths: &self.widths,
            offsets: &self.offsets,
            time_input: self.time_input,
        }
    }

    /// Runs `op` on the fused path's scratch and layer structure; `None` where the
    /// reference path runs (see [`TanhMlp::chunk_rows`]).
    #[cfg(all(feature = "tape", target_arch = "x86_64"))]
    fn fused<R>(&mut self, op: impl FnOnce(&mut Scratch, &Net<'_>) -> R) -> Option<R> {
        let mut f = self.fast.take()?;
        let r = op(&mut f, &self.net());
        self.fast = Some(f);
        Some(r)
    }

    /// Checks the lengths of a call's slices (name, expected, found).
    fn check(&self, what: &[(&'static str, usize, usize)]) -> Result<()> {
        for &(what, expected, found) in what {
            if expected != found {
                return Err(Error::LengthMismatch {
                    what,
                    expected,
                    found,
                });
            }
        }
        Ok(())
    }

    /// [`Dynamics::eval`] that also keeps `z` and the hidden activations of every row in
    /// `res` ([`Vjp::residual_len`] values: `batch · (d + Σ h_l)`), for [`TanhMlp::backward_from`]. Layout:
    /// layer `l = 0, …, k` (`h₀ = d` is `z`, `h_l` the `l`-th hidden layer's tanh output)
    /// as a row-major `batch × h_l` block, the blocks in order. `out` is bit for bit what
    /// `eval` gives.
    pub(crate) fn forward_into(
        &mut self,
        t: T,
        z: &[T],
        theta: &[T],
        out: &mut [T],
        res: &mut [T],
    ) -> Result<()> {
        let (n, p, r) = (self.n_states(), self.n_params, self.residual_len());
        self.check(&[
            ("z of TanhMlp::forward_into", n, z.len()),
            ("theta of TanhMlp::forward_into", p, theta.len()),
            ("out of TanhMlp::forward_into", n, out.len()),
            ("residual of TanhMlp::forward_into", r, res.len()),
        ])?;
        #[cfg(all(feature = "tape", target_arch = "x86_64"))]
        if let Some(()) = self.fused(|f, net| {
            // SAFETY: the fused path exists only for `T = f64`.
            unsafe {
                let (z, th) = (cast::<T, f64>(z), cast::<T, f64>(theta));
                let (out, res) = (cast_mut::<T, f64>(out), cast_mut::<T, f64>(res));
                f.forward_into(net, t.to_f64_lossy(), z, th, out, res);
            }
        }) {
            return Ok(());
        }
        self.forward(t, z, theta);
        let nl = self.widths.len() - 1;
        let mut at = 0;
        for a in &self.acts[..nl] {
            res[at..at + a.len()].copy_from_slice(a);
            at += a.len();
        }
        out.copy_from_slice(&self.acts[nl]);
        Ok(())
    }

    /// [`Vjp::vjp`] from the residual `res` that [`TanhMlp::forward_into`] left at this
    /// `(t, z, θ)`: only the reverse pass; bit for bit what `vjp` gives.
    pub(crate) fn backward_from(
        &mut self,
        t: T,
        theta: &[T],
        res: &[T],
        a: &[T],
        out_z: &mut [T],
        out_theta: &mut [T],
    ) -> Result<T> {
        let (n, p, r) = (self.n_states(), self.n_params, self.residual_len());
        self.check(&[
            ("theta of TanhMlp::backward_from", p, theta.len()),
            ("residual of TanhMlp::backward_from", r, res.len()),
            ("a of TanhMlp::backward_from", n, a.len()),
            ("out_z of TanhMlp::backward_from", n, out_z.len()),
            ("out_theta of TanhMlp::backward_from", p, out_theta.len()),
        ])?;
        #[cfg(all(feature = "tape", target_arch = "x86_64"))]
        if let Some(dt) = self.fused(|f, net| {
            // SAFETY: the fused path exists only for `T = f64`.
            unsafe {
                let (th, res, a) = (
                    cast::<T, f64>(theta),
                    cast::<T, f64>(res),
                    cast::<T, f64>(a),
                );
                let (oz, ot) = (cast_mut::<T, f64>(out_z), cast_mut::<T, f64>(out_theta));
                f.backward_from(net, t.to_f64_lossy(), th, res, a, oz, ot)
            }
        }) {
            return Ok(T::from_f64_const(dt));
        }
        let nl = self.widths.len() - 1;
        let mut at = 0;
        for l in 0..nl {
            let len = self.acts[l].len();
            self.acts[l].copy_from_slice(&res[at..at + len]);
            at += len;
        }
        Ok(self.backward(t, theta, a, out_z, out_theta))
    }

    /// Layer widths.
    pub fn widths(&self) -> &[usize] {
        &self.widths
    }

    /// Deterministic parameters: weights uniform in `±scale/√fan_in` from a seeded
    /// SplitMix64 generator, biases and `w_t` likewise scaled by `0.1`.
    pub fn init_params(&self, seed: u64, scale: f64) -> Vec<T> {
        let mut rng = SplitMix64::new(seed);
        let mut th = vec![T::zero(); self.n_params];
        for (l, &(w, b)) in self.offsets.iter().enumerate() {
            let fan_in = self.widths[l] as f64;
            let r = scale / fan_in.sqrt();
            for v in &mut th[w..b] {
                *v = T::from_f64_const(r * rng.uniform_pm1());
            }
            for v in &mut th[b..b + self.widths[l + 1]] {
                *v = T::from_f64_const(0.1 * r * rng.uniform_pm1());
            }
        }
        if self.time_input {
            let start = self.n_params - self.widths[1];
            for v in &mut th[start..] {
                *v = T::from_f64_const(0.1 * scale * rng.uniform_pm1());
            }
        }
        th
    }

    fn forward(&mut self, t: T, z: &[T], theta: &[T]) {
        let nb = self.batch;
        self.acts[0].copy_from_slice(z);
        let nl = self.widths.len() - 1;
        for l in 0..nl {
            let (din, dout) = (self.widths[l], self.widths[l + 1]);
            let (w, b) = self.offsets[l];
            let (lo, hi) = self.acts.split_at_mut(l + 1);
            let x = &lo[l];
            let y = &mut hi[0];
            for r in 0..nb {
                let yr = &mut y[r * dout..(r + 1) * dout];
                yr.copy_from_slice(&theta[b..b + dout]);
                if l == 0 && self.time_input {
                    let wt = &theta[self.n_params - dout..];
                    for (v, c) in yr.iter_mut().zip(wt) {
                        *v += t * *c;
                    }
                }
            }
            gemm(y, nb, dout, din, x, false, &theta[w..b], false, true);
            if l + 1 < nl {
                tanh_in_place(y);
            }
        }
    }

    /// The reference reverse pass from the activations in `self.acts` (see [`Vjp::vjp`]).
    fn backward(&mut self, t: T, theta: &[T], a: &[T], out_z: &mut [T], out_theta: &mut [T]) -> T {
        let nb = self.batch;
        let nl = self.widths.len() - 1;
        // tans[l + 1] holds the cotangent of layer l's pre-activation.
        self.tans[nl].copy_from_slice(a);
        let mut dt = T::zero();
        for l in (0..nl).rev() {
            let (din, dout) = (self.widths[l], self.widths[l + 1]);
            let (w, b) = self.offsets[l];
            let (lo, hi) = self.tans.split_at_mut(l + 1);
            let delta = &hi[0];
            let x = &self.acts[l];
            // Parameter gradients.
            let (gw, rest) = out_theta[w..].split_at_mut(b - w);
            let gb = &mut rest[..dout];
            gb.fill(T::zero());
            for r in 0..nb {
                let dr = &delta[r * dout..(r + 1) * dout];
                for (g, d) in gb.iter_mut().zip(dr) {
                    *g += *d;
                }
            }
            // gW = xᵀ δ.
            gemm(gw, din, dout, nb, x, true, delta, false, false);
            if l == 0 && self.time_input {
                // ∂u₀/∂w_t = t, ∂u₀/∂t = w_t: the bias gradient times t, and its dot with w_t.
                let start = self.n_params - dout;
                out_theta.copy_within(b..b + dout, start);
                for g in &mut out_theta[start..] {
                    *g *= t;
                }
                let gbias = &out_theta[b..b + dout];
                let wt = &theta[start..];
                dt = gbias.iter().zip(wt).map(|(g, c)| *g * *c).sum();
            }
            // Input cotangent.
            // gx = δ Wᵀ, times tanh' = 1 − x² below hidden layers.
            let gx = &mut lo[l];
            gemm(gx, nb, din, dout, delta, false, &theta[w..b], true, false);
            if l > 0 {
                for (g, a) in gx.iter_mut().zip(x) {
                    *g *= T::one() - *a * *a;
                }
            }
        }
        out_z.copy_from_slice(&self.tans[0]);
        dt
    }
}

/// `v = tanh(v)` elementwise: for `f64` (with the `tape` feature) the branch-free kernel
/// of [`autodiff::vmath`] compiled for the widest vector unit found at run time (libm's
/// scalar `tanh` would cost most of an evaluation of a wide MLP), else `T::tanh`.
fn tanh_in_place<T: Real>(v: &mut [T]) {
    #[cfg(feature = "tape")]
    if core::any::TypeId::of::<T>() == core::any::TypeId::of::<f64>() {
        // SAFETY: `T` is `f64` (same type id).
        tanh_f64_slice(unsafe { cast_mut::<T, f64>(v) });
        return;
    }
    for a in v.iter_mut() {
        *a = a.tanh();
    }
}

#[cfg(feature = "tape")]
fn tanh_f64_slice(x: &mut [f64]) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx512dq,avx512vl,avx2,fma")]
        fn wide512(x: &mut [f64]) {
            for v in x {
                *v = autodiff::vmath::tanh_f64(*v);
            }
        }
        #[target_feature(enable = "avx2,fma")]
        fn wide(x: &mut [f64]) {
            for v in x {
                *v = autodiff::vmath::tanh_f64(*v);
            }
        }
        if autodiff::vmath::has_avx512() {
            // SAFETY: every feature `wide512` is compiled for was detected just above.
            unsafe { wide512(x) };
            return;
        }
        if autodiff::vmath::has_avx2_fma() {
            // SAFETY: AVX2 and FMA were detected just above.
            unsafe { wide(x) };
            return;
        }
    }
    for v in x {
        *v = autodiff::vmath::tanh_f64(*v);
    }
}

/// `C (+)= op(A) op(B)` on row-major slices (`op(A)` is `m × k`, stored `k × m` when
/// `ta`; `op(B)` is `k × n`, stored `n × k` when `tb`; `accumulate` adds to `C`): faer's
/// kernels through [`autodiff::Float::gemm`] for `f64` and `f32` (with the `tape`
/// feature), plain loops otherwise.
#[allow(clippy::too_many_arguments)]
fn gemm<T: Real>(
    c: &mut [T],
    m: usize,
    n: usize,
    k: usize,
    a: &[T],
    ta: bool,
    b: &[T],
    tb: bool,
    accumulate: bool,
) {
    #[cfg(feature = "tape")]
    {
        use core::any::TypeId;
        if TypeId::of::<T>() == TypeId::of::<f64>() {
            // SAFETY: `T` is `f64` (same type id), so the slices reinterpret to themselves.
            let (c, a, b) =
                unsafe { (cast_mut::<T, f64>(c), cast::<T, f64>(a), cast::<T, f64>(b)) };
            <f64 as autodiff::Float>::gemm(c, m, n, k, a, ta, b, tb, accumulate);
            return;
        }
        if TypeId::of::<T>() == TypeId::of::<f32>() {
            // SAFETY: `T` is `f32` (same type id).
            let (c, a, b) =
                unsafe { (cast_mut::<T, f32>(c), cast::<T, f32>(a), cast::<T, f32>(b)) };
            <f32 as autodiff::Float>::gemm(c, m, n, k, a, ta, b, tb, accumulate);
            return;
        }
    }
    gemm_loops(c, m, n, k, a, ta, b, tb, accumulate);
}

/// [`gemm`] as plain loops (other float types, or without the `tape` feature).
#[allow(clippy::too_many_arguments)]
fn gemm_loops<T: Real>(
    c: &mut [T],
    m: usize,
    n: usize,
    k: usize,
    a: &[T],
    ta: bool,
    b: &[T],
    tb: bool,
    accumulate: bool,
) {
    if !accumulate {
        c[..m * n].fill(T::zero());
    }
    for i in 0..m {
        for p in 0..k {
            let aip = if ta { a[p * m + i] } else { a[i * k + p] };
            let ci = &mut c[i * n..(i + 1) * n];
            for (j, cij) in ci.iter_mut().enumerate() {
                let bpj = if tb { b[j * k + p] } else { b[p * n + j] };
                *cij += aip * bpj;
            }
        }
    }
}

impl<T: Real> Dynamics<T> for TanhMlp<T> {
    fn n_states(&self) -> usize {
        self.batch * self.widths[0]
    }
    fn n_params(&self) -> usize {
        self.n_params
    }
    fn eval(&mut self, t: T, z: &[T], theta: &[T], out: &mut [T]) -> Result<()> {
        let (n, p) = (self.n_states(), self.n_params);
        self.check(&[
            ("z of TanhMlp::eval", n, z.len()),
            ("theta of TanhMlp::eval", p, theta.len()),
            ("out of TanhMlp::eval", n, out.len()),
        ])?;
        #[cfg(all(feature = "tape", target_arch = "x86_64"))]
        if let Some(()) = self.fused(|f, net| {
            // SAFETY: the fused path exists only for `T = f64`.
            unsafe {
                let (z, th) = (cast::<T, f64>(z), cast::<T, f64>(theta));
                f.eval(net, t.to_f64_lossy(), z, th, cast_mut::<T, f64>(out));
            }
        }) {
            return Ok(());
        }
        self.forward(t, z, theta);
        if let Some(last) = self.acts.last() {
            out.copy_from_slice(last);
        }
        Ok(())
    }
}

impl<T: Real> Vjp<T> for TanhMlp<T> {
    fn vjp_z(&mut self, t: T, z: &[T], theta: &[T], a: &[T], out: &mut [T]) -> Result<()> {
        let mut g = core::mem::take(&mut self.scratch_theta);
        let r = self.vjp(t, z, theta, a, out, &mut g);
        self.scratch_theta = g;
        r.map(|_| ())
    }
    fn vjp_theta(&mut self, t: T, z: &[T], theta: &[T], a: &[T], out: &mut [T]) -> Result<()> {
        let mut g = core::mem::take(&mut self.scratch_z);
        let r = self.vjp(t, z, theta, a, &mut g, out);
        self.scratch_z = g;
        r.map(|_| ())
    }
    fn vjp_t(&mut self, t: T, z: &[T], theta: &[T], a: &[T]) -> Result<T> {
        let mut g = core::mem::take(&mut self.scratch_z);
        let mut h = core::mem::take(&mut self.scratch_theta);
        let r = self.vjp(t, z, theta, a, &mut g, &mut h);
        self.scratch_z = g;
        self.scratch_theta = h;
        r
    }
    fn vjp(
        &mut self,
        t: T,
        z: &[T],
        theta: &[T],
        a: &[T],
        out_z: &mut [T],
        out_theta: &mut [T],
    ) -> Result<T> {
        let (n, p) = (self.n_states(), self.n_params);
        self.check(&[
            ("z of TanhMlp::vjp", n, z.len()),
            ("theta of TanhMlp::vjp", p, theta.len()),
            ("a of TanhMlp::vjp", n, a.len()),
            ("out_z of TanhMlp::vjp", n, out_z.len()),
            ("out_theta of TanhMlp::vjp", p, out_theta.len()),
        ])?;
        #[cfg(all(feature = "tape", target_arch = "x86_64"))]
        if let Some(dt) = self.fused(|f, net| {
            // SAFETY: the fused path exists only for `T = f64`.
            unsafe {
                let (z, th, a) = (cast::<T, f64>(z), cast::<T, f64>(theta), cast::<T, f64>(a));
                let (oz, ot) = (cast_mut::<T, f64>(out_z), cast_mut::<T, f64>(out_theta));
                f.vjp(net, t.to_f64_lossy(), z, th, a, oz, ot)
            }
        }) {
            return Ok(T::from_f64_const(dt));
        }
        self.forward(t, z, theta);
        Ok(self.backward(t, theta, a, out_z, out_theta))
    }
    /// `z` and the hidden activations of every row (see [`TanhMlp::forward_into`]).
    fn residual_len(&self) -> usize {
        self.batch * self.widths[..self.widths.len() - 1].iter().sum::<usize>()
    }
    fn eval_saving(
        &mut self,
        t: T,
        z: &[T],
        theta: &[T],
        out: &mut [T],
        res: &mut [T],
    ) -> Result<()> {
        self.forward_into(t, z, theta, out, res)
    }
    fn vjp_saved(
        &mut self,
        t: T,
        _z: &[T],
        theta: &[T],
        res: &[T],
        a: &[T],
        out_z: &mut [T],
        out_theta: &mut [T],
    ) -> Result<T> {
        // `res` holds `z` itself (its first block).
        self.backward_from(t, theta, res, a, out_z, out_theta)
    }
    fn has_jvp(&self) -> bool {
        true
    }
    fn jvp(
        &mut self,
        t: T,
        z: &[T],
        theta: &[T],
        vz: &[T],
        vth: &[T],
        out: &mut [T],
    ) -> Result<()> {
        self.forward(t, z, theta);
        let nb = self.batch;
        let nl = self.widths.len() - 1;
        self.tans[0].copy_from_slice(vz);
        for l in 0..nl {
            let (din, dout) = (self.widths[l], self.widths[l + 1]);
            let (w, b) = self.offsets[l];
            let (lo, hi) = self.tans.split_at_mut(l + 1);
            let dx = &lo[l];
            let dy = &mut hi[0];
            let x = &self.acts[l];
            let y = &self.acts[l + 1];
            for r in 0..nb {
                let yr = &mut dy[r * dout..(r + 1) * dout];
                yr.copy_from_slice(&vth[b..b + dout]);
                if l == 0 && self.time_input {
                    let dwt = &vth[self.n_params - dout..];
                    for (v, c) in yr.iter_mut().zip(dwt) {
                        *v += t * *c;
                    }
                }
                for k in 0..din {
                    let xk = x[r * din + k];
                    let dxk = dx[r * din + k];
                    let wr = &theta[w + k * dout..w + (k + 1) * dout];
                    let dwr = &vth[w + k * dout..w + (k + 1) * dout];
                    for ((v, c), dc) in yr.iter_mut().zip(wr).zip(dwr) {
                        *v += dxk * *c + xk * *dc;
                    }
                }
                if l + 1 < nl {
                    for (v, a) in yr.iter_mut().zip(&y[r * dout..(r + 1) * dout]) {
                        *v *= T::one() - *a * *a;
                    }
                }
            }
        }
        out.copy_from_slice(&self.tans[nl]);
        Ok(())
    }
    fn has_sensitivity_rhs(&self) -> bool {
        true
    }
    /// The rows of the batch are independent and share `θ`, so `∂f/∂z` is block-diagonal
    /// (`d × d` per row) and column `c` of `∂f/∂θ` is, row by row, a product of the row's
    /// activation and the row's pre-activation cotangent. One forward pass, one backward
    /// pass of the `n = batch · d` unit cotangents restricted to their own rows (`d` rows'
    /// worth of VJPs in all), then one pass over the columns: `O(n (P + n) d)` arithmetic,
    /// against `P + n` JVPs of a whole batch each.
    fn sensitivity_rhs(
        &mut self,
        t: T,
        z: &[T],
        theta: &[T],
        s: &[T],
        out_f: &mut [T],
        out_s: &mut [T],
    ) -> Result<()> {
        let d = self.widths[0];
        let nb = self.batch;
        let n = nb * d;
        let p = self.n_params;
        for (what, expected, found) in [
            ("z of TanhMlp::sensitivity_rhs", n, z.len()),
            ("theta of TanhMlp::sensitivity_rhs", p, theta.len()),
            ("out_f of TanhMlp::sensitivity_rhs", n, out_f.len()),
            (
                "s of TanhMlp::sensitivity_rhs (n × (P + n))",
                n * (p + n),
                s.len(),
            ),
            (
                "out_s of TanhMlp::sensitivity_rhs (n × (P + n))",
                n * (p + n),
                out_s.len(),
            ),
        ] {
            if expected != found {
                return Err(Error::LengthMismatch {
                    what,
                    expected,
                    found,
                });
            }
        }
        self.forward(t, z, theta);
        let nl = self.widths.len() - 1;
        out_f.copy_from_slice(&self.acts[nl]);
        // Output layer (linear): the cotangent of its pre-activation `o` for output `(b, i)`
        // is `[o = i]`.
        let last = &mut self.cots[nl];
        last.fill(T::zero());
        for b in 0..nb {
            for i in 0..d {
                last[i * n + b * d + i] = T::one();
            }
        }
        // Backwards: cots[l][k] = g_l(b, k) Σ_o W_l[k, o] cots[l + 1][o], with
        // g_l = 1 − x_l² for hidden layers and 1 for the input.
        for l in (0..nl).rev() {
            let (din, dout) = (self.widths[l], self.widths[l + 1]);
            let w = self.offsets[l].0;
            let (lo, hi) = self.cots.split_at_mut(l + 1);
            let (cin, cout) = (&mut lo[l], &hi[0]);
            let x = &self.acts[l];
            for k in 0..din {
                let row = &mut cin[k * n..(k + 1) * n];
                row.fill(T::zero());
                let wr = &theta[w + k * dout..w + (k + 1) * dout];
                for (o, c) in wr.iter().enumerate() {
                    for (r, v) in row.iter_mut().zip(&cout[o * n..(o + 1) * n]) {
                        *r += *c * *v;
                    }
                }
                if l > 0 {
                    for (b, chunk) in row.chunks_exact_mut(d).enumerate() {
                        let a = x[b * din + k];
                        let g = T::one() - a * a;
                        for v in chunk {
                            *v *= g;
                        }
                    }
                }
            }
        }
        // The rows' Jacobian blocks, jz[(b, i)][j] = cots[0][j][(b, i)].
        for r in 0..n {
            for j in 0..d {
                self.jz[r * d + j] = self.cots[0][j * n + r];
            }
        }
        let jz = &self.jz;
        let mut cols = out_s.chunks_exact_mut(n).zip(s.chunks_exact(n));
        for l in 0..nl {
            let (din, dout) = (self.widths[l], self.widths[l + 1]);
            let cot = &self.cots[l + 1];
            let x = &self.acts[l];
            // Weights W_l[k, o]: x_l[b, k] · cot[o][(b, i)].
            for k in 0..din {
                for o in 0..dout {
                    let Some((out, sc)) = cols.next() else {
                        return Ok(());
                    };
                    let co = &cot[o * n..(o + 1) * n];
                    block_rows(jz, d, sc, out, |b, r| x[b * din + k] * co[r]);
                }
            }
            // Biases b_l[o]: cot[o][(b, i)].
            for o in 0..dout {
                let Some((out, sc)) = cols.next() else {
                    return Ok(());
                };
                let co = &cot[o * n..(o + 1) * n];
                block_rows(jz, d, sc, out, |_, r| co[r]);
            }
        }
        if self.time_input {
            // w_t[o] enters the first pre-activation as t · w_t[o].
            let cot = &self.cots[1];
            for o in 0..self.widths[1] {
                let Some((out, sc)) = cols.next() else {
                    return Ok(());
                };
                let co = &cot[o * n..(o + 1) * n];
                block_rows(jz, d, sc, out, |_, r| t * co[r]);
            }
        }
        // The columns of S_z0: ∂f/∂z S only.
        for (out, sc) in cols {
            block_rows(jz, d, sc, out, |_, _| T::zero());
        }
        Ok(())
    }
}

/// `out[(b, i)] = extra(b, (b, i)) + Σ_j jz[(b, i)][j] sc[(b, j)]`: one column of
/// `∂f/∂z S + ∂f/∂θ` with a block-diagonal `∂f/∂z` of `d × d` blocks.
#[inline(always)]
fn block_rows<T: Real>(
    jz: &[T],
    d: usize,
    sc: &[T],
    out: &mut [T],
    extra: impl Fn(usize, usize) -> T,
) {
    if d == 2 {
        // The common planar case, unrolled.
        for (b, (o, s)) in out.chunks_exact_mut(2).zip(sc.chunks_exact(2)).enumerate() {
            let j = &jz[4 * b..4 * b + 4];
            o[0] = extra(b, 2 * b) + j[0] * s[0] + j[1] * s[1];
            o[1] = extra(b, 2 * b + 1) + j[2] * s[0] + j[3] * s[1];
        }
        return;
    }
    for (b, (o, s)) in out.chunks_exact_mut(d).zip(sc.chunks_exact(d)).enumerate() {
        for (i, oi) in o.iter_mut().enumerate() {
            let r = b * d + i;
            let jr = &jz[r * d..(r + 1) * d];
            let mut acc = extra(b, r);
            for (a, v) in jr.iter().zip(s) {
                acc += *a * *v;
            }
            *oi = acc;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The loop fallback against the dispatched product (faer for f64 with `tape`), every
    /// transposition, with and without accumulation.
    #[test]
    fn gemm_loops_match_gemm() {
        let (m, n, k) = (5, 7, 3);
        let mut rng = SplitMix64::new(1);
        let mut draw = |len: usize| (0..len).map(|_| rng.uniform_pm1()).collect::<Vec<f64>>();
        let (a, b, c0) = (draw(m * k), draw(k * n), draw(m * n));
        for (ta, tb, acc) in [
            (false, false, false),
            (true, false, true),
            (false, true, false),
            (true, true, true),
        ] {
            let (mut c1, mut c2) = (c0.clone(), c0.clone());
            gemm(&mut c1, m, n, k, &a, ta, &b, tb, acc);
            gemm_loops(&mut c2, m, n, k, &a, ta, &b, tb, acc);
            // Reference: the definition.
            for i in 0..m {
                for j in 0..n {
                    let mut r = if acc { c0[i * n + j] } else { 0.0 };
                    for p in 0..k {
                        let x = if ta { a[p * m + i] } else { a[i * k + p] };
                        let y = if tb { b[j * k + p] } else { b[p * n + j] };
                        r += x * y;
                    }
                    assert!((c1[i * n + j] - r).abs() < 1e-14, "{ta} {tb} {acc}");
                    assert!((c2[i * n + j] - r).abs() < 1e-14, "{ta} {tb} {acc}");
                }
            }
        }
    }

    /// `forward_into` then `backward_from` against `eval` and `vjp`: bit for bit, on the
    /// fused path (several chunk sizes, ragged tails) and on the reference path, with
    /// and without `time_input`, at several depths and batch sizes.
    #[test]
    fn split_vjp_is_bit_identical() {
        let bits = |x: &[f64]| x.iter().map(|v| v.to_bits()).collect::<Vec<u64>>();
        for (widths, batch) in [
            (&[2, 64, 64, 2][..], 16),
            (&[2, 64, 64, 2][..], 4096),
            (&[2, 64, 64, 2][..], 1),
            (&[3, 9, 17, 5, 3][..], 37),
            (&[2, 13, 2][..], 5),
            (&[2, 2][..], 3),
        ] {
            for time_input in [false, true] {
                let base = TanhMlp::<f64>::new(widths, batch, time_input).unwrap();
                let th = base.init_params(3, 1.2);
                let mut rng = SplitMix64::new(4);
                let n = base.n_states();
                let z: Vec<f64> = (0..n).map(|_| rng.uniform_pm1()).collect();
                let a: Vec<f64> = (0..n).map(|_| rng.uniform_pm1()).collect();
                let t = 0.6;
                let variants = [
                    base.clone(),
                    base.clone().with_chunk_rows(7).unwrap(),
                    base.clone().with_chunk_rows(1).unwrap(),
                    base.clone().with_reference_kernels(),
                ];
                for mut m in variants {
                    let what = format!("{widths:?} B = {batch} {time_input} {:?}", m.chunk_rows());
                    let mut f = vec![0.0; n];
                    m.eval(t, &z, &th, &mut f).unwrap();
                    let (mut gz, mut gth) = (vec![0.0; n], vec![0.0; th.len()]);
                    let gt = m.vjp(t, &z, &th, &a, &mut gz, &mut gth).unwrap();
                    let mut res = vec![f64::NAN; m.residual_len()];
                    let mut f2 = vec![0.0; n];
                    m.forward_into(t, &z, &th, &mut f2, &mut res).unwrap();
                    assert_eq!(bits(&f), bits(&f2), "forward_into {what}");
                    assert!(res.iter().all(|v| v.is_finite()), "residual filled {what}");
                    assert_eq!(bits(&res[..n]), bits(&z), "residual starts with z {what}");
                    // Another evaluation in between must not matter.
                    let z2: Vec<f64> = z.iter().map(|v| 0.5 * v).collect();
                    m.eval(t, &z2, &th, &mut f2).unwrap();
                    let (mut gz2, mut gth2) = (vec![0.0; n], vec![0.0; th.len()]);
                    let gt2 = m
                        .backward_from(t, &th, &res, &a, &mut gz2, &mut gth2)
                        .unwrap();
                    assert_eq!(bits(&gz), bits(&gz2), "backward_from z {what}");
                    assert_eq!(bits(&gth), bits(&gth2), "backward_from θ {what}");
                    assert_eq!(gt.to_bits(), gt2.to_bits(), "backward_from t {what}");
                    // Wrong lengths are errors.
                    assert!(m.forward_into(t, &z, &th, &mut f2, &mut res[1..]).is_err());
                    let r = &res[..res.len() - 1];
                    assert!(m.backward_from(t, &th, r, &a, &mut gz2, &mut gth2).is_err());
                }
            }
        }
    }
}
