//! The fused path of [`super::TanhMlp`] for `f64` on CPUs with AVX-512 or AVX2 + FMA:
//! row chunks through all layers, and one register-blocked product kernel with the bias,
//! `tanh` or `tanh'` fused into it ([`kernels`], generic over the instruction set of
//! [`lanes`]).
//!
//! **Row chunks.** The batch is processed `chunk` rows at a time through every layer, so
//! a chunk's activations (`chunk × h` per hidden layer) stay in L1/L2 between the layers
//! instead of a pass over `batch × h` values per layer. The VJP recomputes a chunk's
//! activations (the forward at the new point) and runs its reverse pass at once;
//! `∂W_l = Σ_rows x_lᵀ δ_l` is accumulated over the chunks in the product's registers
//! (the kernel loads the partial sum, adds the chunk's rows in order and stores it), so
//! every weight and bias gradient is the same sequential sum over the rows whatever the
//! chunk size: results do not depend on the chunking, bit for bit. The two instruction
//! sets differ in round-off only (`tanh`'s last bit, the order of the dot products'
//! horizontal sums).
//!
//! The reverse pass needs `W_lᵀ` row-major: the transposes are kept with a copy of the
//! `θ` they came from and redone only when `θ`'s weights change (once per solve in
//! practice). The VJP checks them bit for bit inside its first chunk's forward products,
//! which load every hidden layer's `W_l` anyway (each loaded vector compared with the
//! copy, [`Cmp`]), and the output layer's weights on their own; `backward_from` has no
//! forward and compares all of `θ` in one pass (0.3–0.6 µs for the W2 field at `B = 16`,
//! the data coming from L2).
mod kernels;
mod lanes;

use kernels::{Cmp, Epi, Init, dot_ok, gemm, gemm_dot};
use lanes::{Avx2, Avx512, Isa, Lanes};

/// The layer structure the kernels need (borrowed from the MLP).
pub(super) struct Net<'a> {
    /// `[d, h₁, …, d]`.
    pub widths: &'a [usize],
    /// Offsets of each layer's `W` and `b` in `θ`.
    pub offsets: &'a [(usize, usize)],
    /// Whether `t · w_t` enters the first layer.
    pub time_input: bool,
}

/// Where hidden activations live: layer `l ≥ 1` (a `rows × h_l` row-major block) starts
/// at `base + off[l]`, and row `row0` of the batch is that block's row 0.
pub(super) struct Acts<'a> {
    /// The buffer.
    pub base: *mut f64,
    /// Per-layer offsets (entries `0` and `nl` unused).
    pub off: &'a [usize],
    /// Batch row stored first in each layer's block.
    pub row0: usize,
}

impl Acts<'_> {
    /// Batch row `r` of layer `l` (width `h`).
    fn at(&self, l: usize, r: usize, h: usize) -> *mut f64 {
        self.base.wrapping_add(self.off[l] + (r - self.row0) * h)
    }
}

/// Whether `∂W` of a `din → dout` layer is accumulated transposed (`dout` rows of `din`:
/// full vectors along `din`) instead of `din` rows of a narrow `dout`.
fn gwt_ok(din: usize, dout: usize) -> bool {
    dout <= 8 && din >= 16
}

/// Forward of batch rows `r0..r0 + rows`: the input rows at `x0`, hidden activations into
/// `acts`, the output layer into `out` (batch rows of `d`) unless null.
///
/// # Safety
/// The CPU has the features of `S`; `x0` holds the `rows` input rows, `theta` the parameters, `bias0` the
/// first layer's bias (with `t · w_t`) when `time_input`, `acts` the hidden rows and `out`
/// (if not null) batch rows up to `r0 + rows`.
#[allow(clippy::too_many_arguments)]
unsafe fn forward_rows<S: Lanes>(
    net: &Net,
    x0: *const f64,
    theta: &[f64],
    bias0: &[f64],
    wlast_t: &[f64],
    r0: usize,
    rows: usize,
    acts: &Acts,
    out: *mut f64,
    cmp: Cmp,
) {
    let nl = net.widths.len() - 1;
    let th = theta.as_ptr();
    // SAFETY: the layers' blocks and parameters lie in the buffers (caller).
    unsafe {
        for l in 0..nl {
            let (din, dout) = (net.widths[l], net.widths[l + 1]);
            let (w, b) = net.offsets[l];
            let x = if l == 0 {
                x0
            } else {
                acts.at(l, r0, din).cast_const()
            };
            let bias = if l == 0 && net.time_input {
                bias0.as_ptr()
            } else {
                th.add(b)
            };
            let (c, epi) = if l + 1 == nl {
                if out.is_null() {
                    return;
                }
                (out.add(r0 * dout), Epi::Store)
            } else {
                (acts.at(l + 1, r0, dout), Epi::Tanh)
            };
            if l + 1 == nl && dot_ok(dout, din) {
                let wl = wlast_t.as_ptr();
                gemm_dot::<S>(rows, dout, din, x, din, wl, din, c, dout, bias);
                return;
            }
            let init = Init::Bias(bias);
            // `W_l` against the copy of `θ` (aligned with it) when asked.
            let cmp_l = Cmp {
                src: if cmp.src.is_null() {
                    cmp.src
                } else {
                    cmp.src.add(w)
                },
                diff: cmp.diff,
            };
            gemm::<S>(
                rows,
                dout,
                din,
                x,
                din,
                1,
                th.add(w),
                dout,
                c,
                dout,
                init,
                epi,
                cmp_l,
            );
        }
    }
}

/// Reverse pass of batch rows `r0..r0 + rows` from their activations (input rows at
/// `x0`, hidden ones in `acts`) and cotangent `a`: `∂W`, `∂b` into `out_theta` (set when
/// `first`, else added to), the input cotangent into `out_z`.
///
/// # Safety
/// As [`forward_rows`]; `wt` holds the transposed weights at `wt_off`, `delta` two
/// buffers of `rows × max h` values, `out_z` batch rows up to `r0 + rows`, `out_theta`
/// the parameters' length.
#[allow(clippy::too_many_arguments)]
unsafe fn backward_rows<S: Lanes>(
    net: &Net,
    x0: *const f64,
    theta: &[f64],
    wt: &[f64],
    wt_off: &[usize],
    gwt: *mut f64,
    a: &[f64],
    r0: usize,
    rows: usize,
    acts: &Acts,
    delta: [*mut f64; 2],
    out_z: *mut f64,
    out_theta: *mut f64,
    first: bool,
) {
    let nl = net.widths.len() - 1;
    let d = net.widths[nl];
    // SAFETY: as in `forward_rows`, for the buffers the caller passes.
    unsafe {
        let mut dcur = a.as_ptr().add(r0 * d);
        for l in (0..nl).rev() {
            let (din, dout) = (net.widths[l], net.widths[l + 1]);
            let (w, b) = net.offsets[l];
            let x = if l == 0 {
                x0
            } else {
                acts.at(l, r0, din).cast_const()
            };
            // ∂W_l (+)= x_lᵀ δ_l, in the order of the rows.
            let init = if first { Init::Zero } else { Init::Load };
            if gwt_ok(din, dout) {
                // As `∂W_lᵀ (+)= δ_lᵀ x_l` (`dout` rows of `din`), transposed at the end.
                let g = gwt.add(wt_off[l]);
                gemm::<S>(
                    dout,
                    din,
                    rows,
                    dcur,
                    1,
                    dout,
                    x,
                    din,
                    g,
                    din,
                    init,
                    Epi::Store,
                    Cmp::NONE,
                );
            } else {
                let gw = out_theta.add(w);
                gemm::<S>(
                    din,
                    dout,
                    rows,
                    x,
                    1,
                    din,
                    dcur,
                    dout,
                    gw,
                    dout,
                    init,
                    Epi::Store,
                    Cmp::NONE,
                );
            }
            S::sum_rows(out_theta.add(b), dcur, rows, dout, first);
            // δ_{l−1} = δ_l W_lᵀ ⊙ (1 − x_l²), or the input's cotangent.
            let wtl = wt.as_ptr().add(wt_off[l]);
            if l > 0 {
                let next = delta[(nl - 1 - l) % 2];
                let epi = Epi::Deriv(x, din);
                gemm::<S>(
                    rows,
                    din,
                    dout,
                    dcur,
                    dout,
                    1,
                    wtl,
                    din,
                    next,
                    din,
                    Init::Zero,
                    epi,
                    Cmp::NONE,
                );
                dcur = next;
            } else {
                let c = out_z.add(r0 * din);
                if dot_ok(din, dout) {
                    // Rows of `W₀` are the columns of `W₀ᵀ`: dot products, no transpose.
                    let w0 = theta.as_ptr().add(w);
                    gemm_dot::<S>(
                        rows,
                        din,
                        dout,
                        dcur,
                        dout,
                        w0,
                        dout,
                        c,
                        din,
                        core::ptr::null(),
                    );
                } else {
                    let (z, st) = (Init::Zero, Epi::Store);
                    gemm::<S>(
                        rows,
                        din,
                        dout,
                        dcur,
                        dout,
                        1,
                        wtl,
                        din,
                        c,
                        din,
                        z,
                        st,
                        Cmp::NONE,
                    );
                }
            }
        }
    }
}

/// [`forward_rows`] for one instruction set.
type ForwardFn =
    unsafe fn(&Net<'_>, *const f64, &[f64], &[f64], &[f64], usize, usize, &Acts<'_>, *mut f64, Cmp);

/// [`backward_rows`] for one instruction set.
type BackwardFn = unsafe fn(
    &Net<'_>,
    *const f64,
    &[f64],
    &[f64],
    &[usize],
    *mut f64,
    &[f64],
    usize,
    usize,
    &Acts<'_>,
    [*mut f64; 2],
    *mut f64,
    *mut f64,
    bool,
);

/// The row drivers and the bit comparison instantiated for the CPU's instruction set.
#[derive(Debug, Clone, Copy)]
struct Kern {
    isa: Isa,
    forward: ForwardFn,
    backward: BackwardFn,
    same_bits: unsafe fn(&[f64], &[f64]) -> bool,
}

impl Kern {
    /// The instances for `isa`.
    fn new(isa: Isa) -> Self {
        fn of<S: Lanes>(isa: Isa) -> Kern {
            Kern {
                isa,
                forward: forward_rows::<S>,
                backward: backward_rows::<S>,
                same_bits: S::same_bits,
            }
        }
        match isa {
            Isa::Avx512 => of::<Avx512>(isa),
            Isa::Avx2 => of::<Avx2>(isa),
        }
    }
}

/// Buffers of the fused path, sized once, and the kernels of the CPU's instruction set.
#[derive(Debug, Clone)]
pub(super) struct Scratch {
    /// The kernels.
    kern: Kern,
    /// Rows per chunk.
    chunk: usize,
    /// One chunk's hidden activations, layer `l` at `act_off[l]` (`chunk × h_l`).
    acts: Vec<f64>,
    act_off: Vec<usize>,
    /// Two cotangent buffers of `chunk × max h`.
    delta: Vec<f64>,
    /// The first layer's bias plus `t · w_t`.
    bias0: Vec<f64>,
    /// `W_lᵀ` (`h_{l+1} × h_l`, row-major) at `wt_off[l]`.
    wt: Vec<f64>,
    wt_off: Vec<usize>,
    /// The `θ` the transposes were made from (empty: none yet).
    wt_src: Vec<f64>,
    /// The output layer's `Wᵀ` for its dot products (see [`dot_ok`]), made per call.
    wlast_t: Vec<f64>,
    /// `∂W_lᵀ` accumulators of the layers with [`gwt_ok`], at `wt_off[l]`.
    gwt: Vec<f64>,
    #[allow(dead_code)] // For the direct mode's stage residuals.
    /// Per-layer block offsets of the caller's residual buffer (`batch × h_l`, `h₀ = d`).
    res_off: Vec<usize>,
}

impl Scratch {
    /// Buffers for `widths`, `batch` rows, `chunk` rows at a time (`chunk ≤ batch`);
    /// `None` if the CPU has none of the instruction sets.
    pub(super) fn new(widths: &[usize], batch: usize, chunk: usize) -> Option<Self> {
        let kern = Kern::new(lanes::detect()?);
        let nl = widths.len() - 1;
        let chunk = chunk.clamp(1, batch);
        let mut act_off = vec![0; nl + 1];
        let mut res_off = vec![0; nl + 1];
        for l in 1..=nl {
            act_off[l] = act_off[l - 1] + if l > 1 { chunk * widths[l - 1] } else { 0 };
            res_off[l] = res_off[l - 1] + batch * widths[l - 1];
        }
        let hmax = widths[1..nl].iter().copied().max().unwrap_or(0);
        let mut wt_off = vec![0; nl];
        for l in 1..nl {
            wt_off[l] = wt_off[l - 1] + widths[l - 1] * widths[l];
        }
        let n_w = wt_off[nl - 1] + widths[nl - 1] * widths[nl];
        Some(Scratch {
            kern,
            chunk,
            acts: vec![0.0; act_off[nl]],
            act_off,
            delta: vec![0.0; 2 * chunk * hmax],
            bias0: vec![0.0; widths[1]],
            wt: vec![0.0; n_w],
            wt_off,
            // Room for every parameter (weights, biases, `w_t`): no allocation per call.
            wt_src: Vec::with_capacity(n_w + widths[1..].iter().sum::<usize>() + widths[1]),
            wlast_t: vec![0.0; widths[nl - 1] * widths[nl]],
            gwt: vec![0.0; n_w],
            res_off,
        })
    }

    /// The instruction set: `"avx512"` or `"avx2"`.
    pub(super) fn isa(&self) -> &'static str {
        match self.kern.isa {
            Isa::Avx512 => "avx512",
            Isa::Avx2 => "avx2",
        }
    }

    /// Rows per chunk.
    pub(super) fn chunk(&self) -> usize {
        self.chunk
    }

    /// The first layer's bias with `t · w_t` (when `time_input`).
    fn prepare_bias(&mut self, net: &Net, t: f64, theta: &[f64]) {
        if net.time_input {
            let h = net.widths[1];
            let b = net.offsets[0].1;
            let wt = &theta[theta.len() - h..];
            for ((v, b), c) in self.bias0.iter_mut().zip(&theta[b..b + h]).zip(wt) {
                *v = *b + t * *c;
            }
        }
    }

    /// `W_lᵀ` for every layer, unless already made from this `θ` (compared bit for bit).
    fn prepare_transposes(&mut self, net: &Net, theta: &[f64]) {
        // SAFETY: `Scratch` exists only where the CPU has its instruction set (`lanes::detect`).
        if self.wt_src.len() == theta.len() && unsafe { (self.kern.same_bits)(theta, &self.wt_src) }
        {
            return;
        }
        self.make_transposes(net, theta);
    }

    /// `W_lᵀ` for every layer, and the copy of `θ` they come from.
    fn make_transposes(&mut self, net: &Net, theta: &[f64]) {
        for (l, &(w, _)) in net.offsets.iter().enumerate() {
            let (din, dout) = (net.widths[l], net.widths[l + 1]);
            let dst = &mut self.wt[self.wt_off[l]..self.wt_off[l] + din * dout];
            for i in 0..din {
                for o in 0..dout {
                    dst[o * din + i] = theta[w + i * dout + o];
                }
            }
        }
        self.wt_src.clear();
        self.wt_src.extend_from_slice(theta);
    }

    /// The output layer's `Wᵀ` into `wlast_t` when it runs as dot products.
    fn prepare_last(&mut self, net: &Net, theta: &[f64]) {
        let nl = net.widths.len() - 1;
        let (din, dout) = (net.widths[nl - 1], net.widths[nl]);
        if dot_ok(dout, din) {
            let w = net.offsets[nl - 1].0;
            for i in 0..din {
                for o in 0..dout {
                    self.wlast_t[o * din + i] = theta[w + i * dout + o];
                }
            }
        }
    }

    /// `∂W_l` from the transposed accumulators of the layers with [`gwt_ok`].
    fn finish_gwt(&self, net: &Net, out_theta: &mut [f64]) {
        for (l, &(w, _)) in net.offsets.iter().enumerate() {
            let (din, dout) = (net.widths[l], net.widths[l + 1]);
            if gwt_ok(din, dout) {
                let g = &self.gwt[self.wt_off[l]..self.wt_off[l] + din * dout];
                for i in 0..din {
                    for o in 0..dout {
                        out_theta[w + i * dout + o] = g[o * din + i];
                    }
                }
            }
        }
    }

    /// The chunks `(r0, rows)` of `batch` rows.
    fn chunks(&self, batch: usize) -> impl Iterator<Item = (usize, usize)> + use<> {
        let c = self.chunk;
        (0..batch).step_by(c).map(move |r0| (r0, c.min(batch - r0)))
    }

    /// `out = f(t, z, θ)`. Lengths are the caller's to check.
    pub(super) fn eval(&mut self, net: &Net, t: f64, z: &[f64], theta: &[f64], out: &mut [f64]) {
        self.prepare_bias(net, t, theta);
        self.prepare_last(net, theta);
        let d = net.widths[0];
        let batch = z.len() / d;
        for (r0, rows) in self.chunks(batch) {
            let acts = Acts {
                base: self.acts.as_mut_ptr(),
                off: &self.act_off,
                row0: r0,
            };
            // SAFETY: `Scratch` is built only where the CPU has its instruction set; the buffers were sized
            // for `chunk` rows and the caller checked `z`, `θ` and `out`.
            unsafe {
                let x0 = z.as_ptr().add(r0 * d);
                let (b0, wl) = (&self.bias0, &self.wlast_t);
                let o = out.as_mut_ptr();
                (self.kern.forward)(net, x0, theta, b0, wl, r0, rows, &acts, o, Cmp::NONE);
            }
        }
    }

    /// [`Scratch::eval`] that also stores `z` and the hidden activations in `res`
    /// (`residual_len` values: layer `l`'s `batch × h_l` block after those of the layers
    /// before it, `h₀ = d` being `z`).
    #[allow(dead_code)] // For the direct mode's stage residuals.
    pub(super) fn forward_into(
        &mut self,
        net: &Net,
        t: f64,
        z: &[f64],
        theta: &[f64],
        out: &mut [f64],
        res: &mut [f64],
    ) {
        self.prepare_bias(net, t, theta);
        self.prepare_last(net, theta);
        let batch = z.len() / net.widths[0];
        let d = net.widths[0];
        res[..z.len()].copy_from_slice(z);
        let acts = Acts {
            base: res.as_mut_ptr(),
            off: &self.res_off,
            row0: 0,
        };
        // SAFETY: as in `eval`; `res` holds every layer's block for the whole batch.
        unsafe {
            for (r0, rows) in self.chunks(batch) {
                let x0 = res.as_ptr().add(r0 * d);
                let (b0, wl) = (&self.bias0, &self.wlast_t);
                let o = out.as_mut_ptr();
                (self.kern.forward)(net, x0, theta, b0, wl, r0, rows, &acts, o, Cmp::NONE);
            }
        }
    }

    /// `aᵀ ∂f/∂z` into `out_z`, `aᵀ ∂f/∂θ` into `out_θ`, `aᵀ ∂f/∂t` returned.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn vjp(
        &mut self,
        net: &Net,
        t: f64,
        z: &[f64],
        theta: &[f64],
        a: &[f64],
        out_z: &mut [f64],
        out_theta: &mut [f64],
    ) -> f64 {
        self.prepare_bias(net, t, theta);
        let d = net.widths[0];
        let batch = z.len() / d;
        let hmax = self.delta.len() / 2;
        let nl = net.widths.len() - 1;
        // The cached `W_lᵀ` are checked during the first chunk's forward, which loads
        // every hidden layer's `W_l` anyway (the output layer's weights, not used by
        // that forward, on their own): a separate pass over `θ` and its copy would come
        // from L2 at small batches.
        let verify = self.wt_src.len() == theta.len();
        let mut diff = 0u64;
        for (i, (r0, rows)) in self.chunks(batch).enumerate() {
            let x0 = z.as_ptr().wrapping_add(r0 * d);
            let base = self.acts.as_mut_ptr();
            {
                let acts = Acts {
                    base,
                    off: &self.act_off,
                    row0: r0,
                };
                let cmp = if i == 0 && verify {
                    Cmp {
                        src: self.wt_src.as_ptr(),
                        diff: &raw mut diff,
                    }
                } else {
                    Cmp::NONE
                };
                let (b0, wl) = (&self.bias0, &self.wlast_t);
                let null = core::ptr::null_mut();
                // SAFETY: as in `eval`; `cmp.src` is a copy of `θ`'s length.
                unsafe { (self.kern.forward)(net, x0, theta, b0, wl, r0, rows, &acts, null, cmp) };
            }
            if i == 0 {
                let (w, b) = net.offsets[nl - 1];
                // SAFETY: `Scratch` exists only where the CPU has its instruction set (`lanes::detect`).
                let same = verify
                    && diff == 0
                    && unsafe { (self.kern.same_bits)(&theta[w..b], &self.wt_src[w..b]) };
                if !same {
                    self.make_transposes(net, theta);
                }
            }
            let dp = self.delta.as_mut_ptr();
            let delta = [dp, dp.wrapping_add(hmax)];
            let acts = Acts {
                base,
                off: &self.act_off,
                row0: r0,
            };
            // SAFETY: as in `eval`; `delta` is two halves of `2 · chunk · max h` values.
            unsafe {
                let (wt, wo, g) = (&self.wt, &self.wt_off, self.gwt.as_mut_ptr());
                let (oz, ot) = (out_z.as_mut_ptr(), out_theta.as_mut_ptr());
                let first = i == 0;
                let (x, th) = (x0, theta);
                (self.kern.backward)(
                    net, x, th, wt, wo, g, a, r0, rows, &acts, delta, oz, ot, first,
                );
            }
        }
        self.finish_gwt(net, out_theta);
        finish_time(net, t, theta, out_theta)
    }

    /// [`Scratch::vjp`] from the residual `res` of [`Scratch::forward_into`].
    #[allow(clippy::too_many_arguments)]
    #[allow(dead_code)] // For the direct mode's stage residuals.
    pub(super) fn backward_from(
        &mut self,
        net: &Net,
        t: f64,
        theta: &[f64],
        res: &[f64],
        a: &[f64],
        out_z: &mut [f64],
        out_theta: &mut [f64],
    ) -> f64 {
        self.prepare_transposes(net, theta);
        let d = net.widths[0];
        let batch = a.len() / d;
        let hmax = self.delta.len() / 2;
        let acts = Acts {
            // Read only: `backward_rows` never writes through `acts`.
            base: res.as_ptr().cast_mut(),
            off: &self.res_off,
            row0: 0,
        };
        for (i, (r0, rows)) in self.chunks(batch).enumerate() {
            let dp = self.delta.as_mut_ptr();
            let delta = [dp, dp.wrapping_add(hmax)];
            // SAFETY: as in `vjp`, with the activations read from `res`.
            unsafe {
                let x = res.as_ptr().add(r0 * d);
                let (wt, wo, g) = (&self.wt, &self.wt_off, self.gwt.as_mut_ptr());
                let (oz, ot) = (out_z.as_mut_ptr(), out_theta.as_mut_ptr());
                let (first, th) = (i == 0, theta);
                (self.kern.backward)(
                    net, x, th, wt, wo, g, a, r0, rows, &acts, delta, oz, ot, first,
                );
            }
        }
        self.finish_gwt(net, out_theta);
        finish_time(net, t, theta, out_theta)
    }
}

/// With `time_input`: `∂/∂w_t = t · ∂/∂b₀` into `out_θ`, and `aᵀ∂f/∂t = ∂b₀ · w_t`
/// returned (as the reference path computes them); else 0.
fn finish_time(net: &Net, t: f64, theta: &[f64], out_theta: &mut [f64]) -> f64 {
    if !net.time_input {
        return 0.0;
    }
    let h = net.widths[1];
    let b = net.offsets[0].1;
    let start = theta.len() - h;
    out_theta.copy_within(b..b + h, start);
    for g in &mut out_theta[start..] {
        *g *= t;
    }
    out_theta[b..b + h]
        .iter()
        .zip(&theta[start..])
        .map(|(g, c)| *g * *c)
        .sum()
}
