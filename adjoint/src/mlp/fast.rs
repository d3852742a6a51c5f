//! The AVX-512 path of [`super::TanhMlp`] for `f64`: row chunks through all layers, and
//! one register-blocked product kernel with the bias, `tanh` or `tanh'` fused into it.
//!
//! **Row chunks.** The batch is processed `chunk` rows at a time through every layer, so
//! a chunk's activations (`chunk × h` per hidden layer) stay in L1/L2 between the layers
//! instead of a pass over `batch × h` values per layer. The VJP recomputes a chunk's
//! activations (the forward at the new point) and runs its reverse pass at once;
//! `∂W_l = Σ_rows x_lᵀ δ_l` is accumulated over the chunks in the product's registers
//! (the kernel loads the partial sum, adds the chunk's rows in order and stores it), so
//! every weight and bias gradient is the same sequential sum over the rows whatever the
//! chunk size: results do not depend on the chunking, bit for bit.
//!
//! **Kernel.** `C = init + A·B` with `A(i, p) = a[i·ars + p·aks]` (a row-major matrix or
//! its transpose), `B` row-major, in blocks of up to [`MR`] rows × [`NV`] vectors of 8
//! columns held in zmm accumulators; the last vector of a row is masked when the width is
//! not a multiple of 8. Each entry is `init` followed by one fused multiply–add per `p`
//! in increasing order, whatever the block it falls in. The accumulators start from zero,
//! the bias row or `C` itself ([`Init`]), and are stored as they are, through `tanh`
//! (`autodiff::vmath::tanh8_f64`) or times `1 − y²` ([`Epi`]).
//!
//! The reverse pass needs `W_lᵀ` row-major: the transposes are kept with a copy of the
//! `θ` they came from and redone only when `θ`'s weights change (once per solve in
//! practice). The VJP checks them bit for bit inside its first chunk's forward products,
//! which load every hidden layer's `W_l` anyway (each loaded vector compared with the
//! copy, [`Cmp`]), and the output layer's weights on their own; `backward_from` has no
//! forward and compares all of `θ` in one pass (0.3–0.6 µs for the W2 field at `B = 16`,
//! the data coming from L2).
use std::arch::x86_64::*;

use autodiff::vmath::tanh8_f64;

/// Rows per register block.
const MR: usize = 6;
/// 8-wide vectors per register block (`8 · NV` columns).
const NV: usize = 4;
/// Rows per register block when the output is one vector wide (`n ≤ 8`): more
/// independent accumulator chains, else the multiply–adds wait on each other's latency.
const MR1: usize = 8;

/// True if the CPU has the features the kernels are compiled for.
pub(super) fn available() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512dq")
        && std::arch::is_x86_feature_detected!("avx512vl")
        && std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
}

/// How a product's accumulators start.
#[derive(Clone, Copy)]
enum Init {
    /// From zero: `C = A·B`.
    Zero,
    /// From a row of `n` values repeated over the rows: `C = 1 bᵀ + A·B`.
    Bias(*const f64),
    /// From `C`: `C += A·B`.
    Load,
}

/// What is stored.
#[derive(Clone, Copy)]
enum Epi {
    /// The accumulator.
    Store,
    /// Its `tanh`.
    Tanh,
    /// The accumulator times `1 − y²`, `y` a matrix of `C`'s shape with row stride `ld`.
    Deriv(*const f64, usize),
}

/// A bit comparison of a product's `B` with a copy, made while `B` is loaded anyway
/// (the cached `W_lᵀ` stay valid while `θ`'s weights equal the copy they came from).
#[derive(Clone, Copy)]
struct Cmp {
    /// The copy, aligned with `B` (null: no comparison).
    src: *const f64,
    /// Set to nonzero where a bit differs.
    diff: *mut u64,
}

impl Cmp {
    /// No comparison.
    const NONE: Cmp = Cmp {
        src: core::ptr::null(),
        diff: core::ptr::null_mut(),
    };
}

/// Masked or full load of vector `v` of a block of `V` vectors at `p`.
#[inline]
#[target_feature(enable = "avx512f,avx512dq,avx512vl,avx2,fma")]
unsafe fn load<const V: usize>(p: *const f64, v: usize, mask: u8) -> __m512d {
    // SAFETY: the caller guarantees the lanes read (all 8, or those in `mask` for the
    // last vector) lie in its slice.
    unsafe {
        if v + 1 == V {
            _mm512_maskz_loadu_pd(mask, p.add(8 * v))
        } else {
            _mm512_loadu_pd(p.add(8 * v))
        }
    }
}

/// Masked or full store, as [`load`].
#[inline]
#[target_feature(enable = "avx512f,avx512dq,avx512vl,avx2,fma")]
unsafe fn store<const V: usize>(p: *mut f64, v: usize, mask: u8, x: __m512d) {
    // SAFETY: as in `load`.
    unsafe {
        if v + 1 == V {
            _mm512_mask_storeu_pd(p.add(8 * v), mask, x)
        } else {
            _mm512_storeu_pd(p.add(8 * v), x)
        }
    }
}

/// One `R × 8V` block of `C = init + A·B` (see [`gemm`]; pointers at the block's origin).
///
/// Not inlined: one out-of-line copy per block shape keeps the drivers small (measured
/// 2–4 % faster at `B = 16` than inlining all of them into [`gemm`]).
#[inline(never)]
#[target_feature(enable = "avx512f,avx512dq,avx512vl,avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn micro<const R: usize, const V: usize, const CMP: bool>(
    k: usize,
    a: *const f64,
    ars: usize,
    aks: usize,
    b: *const f64,
    ldb: usize,
    c: *mut f64,
    ldc: usize,
    mask: u8,
    init: Init,
    epi: Epi,
    cmp: Cmp,
) {
    // SAFETY: the caller (`gemm`) guarantees every row and masked column touched lies
    // in the slices behind the pointers.
    unsafe {
        // Each accumulator set once (a zeroed array first would become a `memset` of
        // the spilled block).
        let mut acc: [[__m512d; V]; R] = core::array::from_fn(|r| {
            core::array::from_fn(|v| match init {
                Init::Zero => _mm512_setzero_pd(),
                Init::Bias(p) => load::<V>(p, v, mask),
                Init::Load => load::<V>(c.add(r * ldc), v, mask),
            })
        });
        let mut diff = _mm512_setzero_si512();
        for p in 0..k {
            let bp = b.add(p * ldb);
            let mut bv = [_mm512_setzero_pd(); V];
            for (v, x) in bv.iter_mut().enumerate() {
                *x = load::<V>(bp, v, mask);
            }
            if CMP {
                // The bits of `B` against the copy at `cmp.src` (same layout).
                let sp = cmp.src.add(p * ldb);
                for (v, x) in bv.iter().enumerate() {
                    let y = load::<V>(sp, v, mask);
                    let d = _mm512_xor_si512(_mm512_castpd_si512(*x), _mm512_castpd_si512(y));
                    diff = _mm512_or_si512(diff, d);
                }
            }
            let ap = a.add(p * aks);
            for (r, row) in acc.iter_mut().enumerate() {
                let x = _mm512_set1_pd(*ap.add(r * ars));
                for (s, y) in row.iter_mut().zip(&bv) {
                    *s = _mm512_fmadd_pd(x, *y, *s);
                }
            }
        }
        if CMP {
            *cmp.diff |= _mm512_test_epi64_mask(diff, diff) as u64;
        }
        for (r, row) in acc.iter().enumerate() {
            let cr = c.add(r * ldc);
            for (v, x) in row.iter().enumerate() {
                let y = match epi {
                    Epi::Store => *x,
                    Epi::Tanh => tanh8_f64(*x),
                    Epi::Deriv(yp, ld) => {
                        let y = load::<V>(yp.add(r * ld), v, mask);
                        _mm512_mul_pd(*x, _mm512_fnmadd_pd(y, y, _mm512_set1_pd(1.0)))
                    }
                };
                store::<V>(cr, v, mask, y);
            }
        }
    }
}

/// `C = epi(init + A·B)`: `C` is `m × n` (row stride `ldc`), `A(i, p) = a[i·ars + p·aks]`
/// (`p < k`), `B(p, j) = b[p·ldb + j]`; the bias row of [`Init::Bias`] and the `y` of
/// [`Epi::Deriv`] have `n` columns.
///
/// # Safety
/// The CPU has the features of [`available`]; every index above lies in the memory
/// behind its pointer; `C` overlaps none of the inputs.
#[target_feature(enable = "avx512f,avx512dq,avx512vl,avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn gemm(
    m: usize,
    n: usize,
    k: usize,
    a: *const f64,
    ars: usize,
    aks: usize,
    b: *const f64,
    ldb: usize,
    c: *mut f64,
    ldc: usize,
    init: Init,
    epi: Epi,
    cmp: Cmp,
) {
    // SAFETY: the offsets below stay inside the `m × n` output and its inputs, as the
    // caller guarantees for the whole product.
    unsafe {
        let mut j0 = 0;
        while j0 < n {
            let w = (n - j0).min(NV * 8);
            let nv = w.div_ceil(8);
            let rem = w - (nv - 1) * 8;
            let mask = if rem == 8 { 0xff } else { (1u8 << rem) - 1 };
            let init_j = match init {
                Init::Bias(p) => Init::Bias(p.add(j0)),
                x => x,
            };
            let mut i0 = 0;
            while i0 < m {
                let mr = (m - i0).min(if nv == 1 { MR1 } else { MR });
                let (ai, bj, cij) = (a.add(i0 * ars), b.add(j0), c.add(i0 * ldc + j0));
                let epi_ij = match epi {
                    Epi::Deriv(p, ld) => Epi::Deriv(p.add(i0 * ld + j0), ld),
                    x => x,
                };
                // The comparison on the first row block only: it loads all of `B`.
                let cmp_ij = Cmp {
                    src: if i0 == 0 && !cmp.src.is_null() {
                        cmp.src.add(j0)
                    } else {
                        core::ptr::null()
                    },
                    diff: cmp.diff,
                };
                macro_rules! go {
                    ($($r:literal, $v:literal);*) => {
                        match (mr, nv, !cmp_ij.src.is_null()) {
                            $(($r, $v, false) => micro::<$r, $v, false>(
                                k, ai, ars, aks, bj, ldb, cij, ldc, mask, init_j, epi_ij,
                                cmp_ij,
                            ),
                            ($r, $v, true) => micro::<$r, $v, true>(
                                k, ai, ars, aks, bj, ldb, cij, ldc, mask, init_j, epi_ij,
                                cmp_ij,
                            ),)*
                            _ => unreachable!("block shape"),
                        }
                    };
                }
                go!(8, 1; 7, 1; 6, 4; 6, 3; 6, 2; 6, 1; 5, 4; 5, 3; 5, 2; 5, 1; 4, 4; 4, 3; 4, 2; 4, 1; 3, 4; 3, 3; 3, 2; 3, 1; 2, 4; 2, 3; 2, 2; 2, 1; 1, 4; 1, 3; 1, 2; 1, 1);
                i0 += mr;
            }
            j0 += w;
        }
    }
}

/// `g = (first ? 0 : g) + Σ_r d[r, ·]` over `rows` rows of `n` values, in row order.
///
/// # Safety
/// As [`gemm`]: `g` has `n` values, `d` `rows · n`.
#[target_feature(enable = "avx512f,avx512dq,avx512vl,avx2,fma")]
unsafe fn sum_rows(g: *mut f64, d: *const f64, rows: usize, n: usize, first: bool) {
    // SAFETY: columns `j..j + 8` (masked at the tail) of rows below `rows`.
    unsafe {
        let mut j = 0;
        while j < n {
            let rem = (n - j).min(8);
            let mask = if rem == 8 { 0xff } else { (1u8 << rem) - 1 };
            let mut s = if first {
                _mm512_setzero_pd()
            } else {
                _mm512_maskz_loadu_pd(mask, g.add(j))
            };
            for r in 0..rows {
                s = _mm512_add_pd(s, _mm512_maskz_loadu_pd(mask, d.add(r * n + j)));
            }
            _mm512_mask_storeu_pd(g.add(j), mask, s);
            j += 8;
        }
    }
}

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

/// Products with at most this many output columns and at least [`DOT_K`] terms run as
/// dot products ([`gemm_dot`]) rather than one masked vector per row.
const DOT_N: usize = 4;
/// See [`DOT_N`].
const DOT_K: usize = 16;

/// Whether a product with `n` output columns and `k` terms runs as dot products.
fn dot_ok(n: usize, k: usize) -> bool {
    n <= DOT_N && k >= DOT_K
}

/// Whether `∂W` of a `din → dout` layer is accumulated transposed (`dout` rows of `din`:
/// full vectors along `din`) instead of `din` rows of a narrow `dout`.
fn gwt_ok(din: usize, dout: usize) -> bool {
    dout <= 8 && din >= 16
}

/// `C[r, j] = bias_j + Σ_p A[r, p] Bt[j, p]` (`r < m`, `j < n ≤ DOT_N`, `p < k`; `A` and
/// `Bt` row-major with strides `lda`, `ldbt`; `bias` null for zero): each entry a dot
/// product of two contiguous rows, 8 lanes at a time, then a horizontal sum.
///
/// # Safety
/// As [`gemm`].
#[target_feature(enable = "avx512f,avx512dq,avx512vl,avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_dot(
    m: usize,
    n: usize,
    k: usize,
    a: *const f64,
    lda: usize,
    bt: *const f64,
    ldbt: usize,
    c: *mut f64,
    ldc: usize,
    bias: *const f64,
) {
    // SAFETY: rows below `m`, columns below `n`, terms below `k` (caller).
    unsafe {
        let mut r = 0;
        while r < m {
            let rows = (m - r).min(4);
            let (ar, cr) = (a.add(r * lda), c.add(r * ldc));
            macro_rules! go {
                ($($r:literal, $n:literal);*) => {
                    match (rows, n) {
                        $(($r, $n) => dot_block::<$r, $n>(k, ar, lda, bt, ldbt, cr, ldc, bias),)*
                        _ => unreachable!("dot shape"),
                    }
                };
            }
            go!(4, 4; 4, 3; 4, 2; 4, 1; 3, 4; 3, 3; 3, 2; 3, 1;
                2, 4; 2, 3; 2, 2; 2, 1; 1, 4; 1, 3; 1, 2; 1, 1);
            r += rows;
        }
    }
}

/// `R` rows of [`gemm_dot`] with `N` outputs each (not inlined, as [`micro`]).
#[inline(never)]
#[target_feature(enable = "avx512f,avx512dq,avx512vl,avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn dot_block<const R: usize, const N: usize>(
    k: usize,
    a: *const f64,
    lda: usize,
    bt: *const f64,
    ldbt: usize,
    c: *mut f64,
    ldc: usize,
    bias: *const f64,
) {
    // SAFETY: as in `gemm_dot`.
    unsafe {
        let mut acc = [[_mm512_setzero_pd(); N]; R];
        let mut p = 0;
        while p < k {
            let rem = (k - p).min(8);
            let mask = if rem == 8 { 0xff } else { (1u8 << rem) - 1 };
            let mut bv = [_mm512_setzero_pd(); N];
            for (j, v) in bv.iter_mut().enumerate() {
                *v = _mm512_maskz_loadu_pd(mask, bt.add(j * ldbt + p));
            }
            for (i, row) in acc.iter_mut().enumerate() {
                let x = _mm512_maskz_loadu_pd(mask, a.add(i * lda + p));
                for (s, y) in row.iter_mut().zip(&bv) {
                    *s = _mm512_fmadd_pd(x, *y, *s);
                }
            }
            p += 8;
        }
        for (i, row) in acc.iter().enumerate() {
            for (j, s) in row.iter().enumerate() {
                let b = if bias.is_null() { 0.0 } else { *bias.add(j) };
                *c.add(i * ldc + j) = b + _mm512_reduce_add_pd(*s);
            }
        }
    }
}

/// Forward of batch rows `r0..r0 + rows`: the input rows at `x0`, hidden activations into
/// `acts`, the output layer into `out` (batch rows of `d`) unless null.
///
/// # Safety
/// [`available`]; `x0` holds the `rows` input rows, `theta` the parameters, `bias0` the
/// first layer's bias (with `t · w_t`) when `time_input`, `acts` the hidden rows and `out`
/// (if not null) batch rows up to `r0 + rows`.
#[target_feature(enable = "avx512f,avx512dq,avx512vl,avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn forward_rows(
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
                gemm_dot(rows, dout, din, x, din, wl, din, c, dout, bias);
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
            gemm(
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
#[target_feature(enable = "avx512f,avx512dq,avx512vl,avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn backward_rows(
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
                gemm(
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
                gemm(
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
            sum_rows(out_theta.add(b), dcur, rows, dout, first);
            // δ_{l−1} = δ_l W_lᵀ ⊙ (1 − x_l²), or the input's cotangent.
            let wtl = wt.as_ptr().add(wt_off[l]);
            if l > 0 {
                let next = delta[(nl - 1 - l) % 2];
                let epi = Epi::Deriv(x, din);
                gemm(
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
                    gemm_dot(
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
                    gemm(
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

/// Buffers of the AVX-512 path, sized once.
#[derive(Debug, Clone)]
pub(super) struct Scratch {
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
    /// Buffers for `widths`, `batch` rows, `chunk` rows at a time (`chunk ≤ batch`).
    pub(super) fn new(widths: &[usize], batch: usize, chunk: usize) -> Self {
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
        Scratch {
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
        // SAFETY: `Scratch` exists only where `available()`.
        if self.wt_src.len() == theta.len() && unsafe { same_bits(theta, &self.wt_src) } {
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
            // SAFETY: `Scratch` is built only where `available()`; the buffers were sized
            // for `chunk` rows and the caller checked `z`, `θ` and `out`.
            unsafe {
                let x0 = z.as_ptr().add(r0 * d);
                let (b0, wl) = (&self.bias0, &self.wlast_t);
                let o = out.as_mut_ptr();
                forward_rows(net, x0, theta, b0, wl, r0, rows, &acts, o, Cmp::NONE);
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
                forward_rows(net, x0, theta, b0, wl, r0, rows, &acts, o, Cmp::NONE);
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
                unsafe { forward_rows(net, x0, theta, b0, wl, r0, rows, &acts, null, cmp) };
            }
            if i == 0 {
                let (w, b) = net.offsets[nl - 1];
                // SAFETY: `Scratch` exists only where `available()`.
                let same =
                    verify && diff == 0 && unsafe { same_bits(&theta[w..b], &self.wt_src[w..b]) };
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
                backward_rows(
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
                backward_rows(
                    net, x, th, wt, wo, g, a, r0, rows, &acts, delta, oz, ot, first,
                );
            }
        }
        self.finish_gwt(net, out_theta);
        finish_time(net, t, theta, out_theta)
    }
}

/// True if `x` and `y` (of equal lengths) hold the same bit patterns.
///
/// # Safety
/// [`available`].
#[target_feature(enable = "avx512f,avx512dq,avx512vl,avx2,fma")]
unsafe fn same_bits(x: &[f64], y: &[f64]) -> bool {
    let n = x.len().min(y.len());
    let (xp, yp) = (x.as_ptr().cast::<i64>(), y.as_ptr().cast::<i64>());
    let mut diff = _mm512_setzero_si512();
    let mut i = 0;
    // SAFETY: lanes below `n` only (the tail through a mask).
    unsafe {
        while i + 8 <= n {
            let a = _mm512_loadu_epi64(xp.add(i));
            let b = _mm512_loadu_epi64(yp.add(i));
            diff = _mm512_or_si512(diff, _mm512_xor_si512(a, b));
            i += 8;
        }
        if i < n {
            let m = (1u8 << (n - i)) - 1;
            let a = _mm512_maskz_loadu_epi64(m, xp.add(i));
            let b = _mm512_maskz_loadu_epi64(m, yp.add(i));
            diff = _mm512_or_si512(diff, _mm512_xor_si512(a, b));
        }
    }
    _mm512_test_epi64_mask(diff, diff) == 0
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
