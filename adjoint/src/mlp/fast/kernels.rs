//! The products of the fused path, generic over the instruction set ([`Lanes`]).
//!
//! **Kernel.** `C = init + A·B` with `A(i, p) = a[i·ars + p·aks]` (a row-major matrix or
//! its transpose), `B` row-major, in blocks of up to `S::MR` rows × `S::NV` vectors of
//! `S::W` columns held in vector accumulators; the last vector of a row is masked when the
//! width is not a multiple of `W`. Each entry is `init` followed by one fused
//! multiply–add per `p` in increasing order, whatever the block it falls in. The
//! accumulators start from zero, the bias row or `C` itself ([`Init`]), and are stored as
//! they are, through `tanh` or times `1 − y²` ([`Epi`]).
//!
//! The narrow products (at most [`DOT_N`] output columns, at least [`DOT_K`] terms) run
//! as dot products of contiguous rows ([`gemm_dot`]) instead of one masked vector per
//! row.
//!
//! Everything here is `#[inline(always)]` and has no target features of its own: the
//! leaf kernels are instantiated inside each set's feature-enabled functions
//! (`lanes::isa_kernels!`), the drivers ([`gemm`], [`gemm_dot`]) only index and call them.
use super::lanes::Lanes;

/// How a product's accumulators start.
#[derive(Clone, Copy)]
pub(super) enum Init {
    /// From zero: `C = A·B`.
    Zero,
    /// From a row of `n` values repeated over the rows: `C = 1 bᵀ + A·B`.
    Bias(*const f64),
    /// From `C`: `C += A·B`.
    Load,
}

/// What is stored.
#[derive(Clone, Copy)]
pub(super) enum Epi {
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
pub(super) struct Cmp {
    /// The copy, aligned with `B` (null: no comparison).
    pub src: *const f64,
    /// Set to nonzero where a bit differs.
    pub diff: *mut u64,
}

impl Cmp {
    /// No comparison.
    pub const NONE: Cmp = Cmp {
        src: core::ptr::null(),
        diff: core::ptr::null_mut(),
    };
}

/// One register block of [`gemm`] (pointers at the block's origin).
pub(super) struct Block<S: Lanes> {
    /// Terms of each entry.
    pub k: usize,
    /// `A` and its row and term strides.
    pub a: *const f64,
    pub ars: usize,
    pub aks: usize,
    /// `B` and its row stride.
    pub b: *const f64,
    pub ldb: usize,
    /// `C` and its row stride.
    pub c: *mut f64,
    pub ldc: usize,
    /// The lanes of the block's last vector inside the row.
    pub mask: S::M,
    pub init: Init,
    pub epi: Epi,
    pub cmp: Cmp,
}

/// Vector `v` of a block of `V` vectors at `p` (masked if it is the last and the block
/// is partial, `P`).
#[inline(always)]
unsafe fn load<S: Lanes, const V: usize, const P: bool>(
    p: *const f64,
    v: usize,
    mask: S::M,
) -> S::V {
    // SAFETY: the caller guarantees the lanes read (all, or those in `mask` for the last
    // vector) lie in its slice.
    unsafe {
        if P && v + 1 == V {
            S::load_m(p.add(S::W * v), mask)
        } else {
            S::load(p.add(S::W * v))
        }
    }
}

/// Store, as [`load`].
#[inline(always)]
unsafe fn store<S: Lanes, const V: usize, const P: bool>(
    p: *mut f64,
    v: usize,
    mask: S::M,
    x: S::V,
) {
    // SAFETY: as in `load`.
    unsafe {
        if P && v + 1 == V {
            S::store_m(p.add(S::W * v), mask, x)
        } else {
            S::store(p.add(S::W * v), x)
        }
    }
}

/// One `R × W·V` block of `C = epi(init + A·B)` (see [`gemm`]); `P`: the last vector is
/// masked (a plain load where the row is full keeps the mask out of the registers the
/// product's loop needs), `CMP`: compare `B` with the copy.
///
/// # Safety
/// The set's features; every row and masked column touched lies in the slices behind
/// the block's pointers.
#[inline(always)]
pub(super) unsafe fn micro<
    S: Lanes,
    const R: usize,
    const V: usize,
    const CMP: bool,
    const P: bool,
>(
    blk: &Block<S>,
) {
    let (c, ldc, mask) = (blk.c, blk.ldc, blk.mask);
    // SAFETY: the caller's (`gemm`'s bounds).
    unsafe {
        // Plain unrolled loops (`array::from_fn`'s closures are not inlined into the
        // feature-enabled copies: a call per accumulator).
        let mut acc = [[S::zero(); V]; R];
        match blk.init {
            Init::Zero => {}
            Init::Bias(p) => {
                for row in acc.iter_mut() {
                    for (v, s) in row.iter_mut().enumerate() {
                        *s = load::<S, V, P>(p, v, mask);
                    }
                }
            }
            Init::Load => {
                for (r, row) in acc.iter_mut().enumerate() {
                    for (v, s) in row.iter_mut().enumerate() {
                        *s = load::<S, V, P>(c.add(r * ldc), v, mask);
                    }
                }
            }
        }
        let mut diff = S::zero();
        for p in 0..blk.k {
            let bp = blk.b.add(p * blk.ldb);
            let mut bv = [S::zero(); V];
            for (v, x) in bv.iter_mut().enumerate() {
                *x = load::<S, V, P>(bp, v, mask);
            }
            if CMP {
                // The bits of `B` against the copy at `cmp.src` (same layout).
                let sp = blk.cmp.src.add(p * blk.ldb);
                for (v, x) in bv.iter().enumerate() {
                    diff = S::bit_diff(diff, *x, load::<S, V, P>(sp, v, mask));
                }
            }
            let ap = blk.a.add(p * blk.aks);
            for (r, row) in acc.iter_mut().enumerate() {
                let x = S::splat(*ap.add(r * blk.ars));
                for (s, y) in row.iter_mut().zip(&bv) {
                    *s = S::fma(x, *y, *s);
                }
            }
        }
        if CMP && S::any_bits(diff) {
            *blk.cmp.diff |= 1;
        }
        // The epilogue from a copy: its loop (a `tanh` per vector) is too large to be
        // unrolled, and indexing `acc` in a loop would keep `acc` in memory in the
        // product's loop too (a store per multiply–add).
        let done = acc;
        if let Epi::Tanh = blk.epi {
            // `TN` vectors at a time, their `tanh` chains interleaved.
            const TN: usize = 2;
            let at = |i: usize| (i / V, i % V);
            let mut i = 0;
            while i + TN <= R * V {
                let mut x = [S::zero(); TN];
                for (j, x) in x.iter_mut().enumerate() {
                    let (r, v) = at(i + j);
                    *x = done[r][v];
                }
                let y = S::tanh_n(x);
                for (j, y) in y.into_iter().enumerate() {
                    let (r, v) = at(i + j);
                    store::<S, V, P>(c.add(r * ldc), v, mask, y);
                }
                i += TN;
            }
            while i < R * V {
                let (r, v) = at(i);
                store::<S, V, P>(c.add(r * ldc), v, mask, S::tanh_n([done[r][v]])[0]);
                i += 1;
            }
            return;
        }
        // `Store` or `Deriv`.
        for (r, row) in done.iter().enumerate() {
            let cr = c.add(r * ldc);
            for (v, x) in row.iter().enumerate() {
                let y = if let Epi::Deriv(yp, ld) = blk.epi {
                    S::times_dtanh(*x, load::<S, V, P>(yp.add(r * ld), v, mask))
                } else {
                    *x
                };
                store::<S, V, P>(cr, v, mask, y);
            }
        }
    }
}

/// `C = epi(init + A·B)`: `C` is `m × n` (row stride `ldc`), `A(i, p) = a[i·ars + p·aks]`
/// (`p < k`), `B(p, j) = b[p·ldb + j]`; the bias row of [`Init::Bias`] and the `y` of
/// [`Epi::Deriv`] have `n` columns.
///
/// # Safety
/// The CPU has the set's features; every index above lies in the memory behind its
/// pointer; `C` overlaps none of the inputs.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn gemm<S: Lanes>(
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
            let w = (n - j0).min(S::NV * S::W);
            let nv = w.div_ceil(S::W);
            let mask = S::mask(w - (nv - 1) * S::W);
            let init_j = match init {
                Init::Bias(p) => Init::Bias(p.add(j0)),
                x => x,
            };
            let mut i0 = 0;
            while i0 < m {
                let mr = (m - i0).min(if nv == 1 { S::MR1 } else { S::MR });
                let epi_ij = match epi {
                    Epi::Deriv(p, ld) => Epi::Deriv(p.add(i0 * ld + j0), ld),
                    x => x,
                };
                // The comparison on the first row block only: it loads all of `B`.
                let src = if i0 == 0 && !cmp.src.is_null() {
                    cmp.src.add(j0)
                } else {
                    core::ptr::null()
                };
                let blk = Block::<S> {
                    k,
                    a: a.add(i0 * ars),
                    ars,
                    aks,
                    b: b.add(j0),
                    ldb,
                    c: c.add(i0 * ldc + j0),
                    ldc,
                    mask,
                    init: init_j,
                    epi: epi_ij,
                    cmp: Cmp {
                        src,
                        diff: cmp.diff,
                    },
                };
                S::micro(mr, nv, !src.is_null(), w % S::W != 0, &blk);
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
#[inline(always)]
pub(super) unsafe fn sum_rows<S: Lanes>(
    g: *mut f64,
    d: *const f64,
    rows: usize,
    n: usize,
    first: bool,
) {
    // SAFETY: columns `j..j + W` (masked at the tail) of rows below `rows`.
    unsafe {
        let mut j = 0;
        while j < n {
            let mask = S::mask((n - j).min(S::W));
            let mut s = if first {
                S::zero()
            } else {
                S::load_m(g.add(j), mask)
            };
            for r in 0..rows {
                s = S::add(s, S::load_m(d.add(r * n + j), mask));
            }
            S::store_m(g.add(j), mask, s);
            j += S::W;
        }
    }
}

/// Products with at most this many output columns and at least [`DOT_K`] terms run as
/// dot products ([`gemm_dot`]) rather than one masked vector per row.
const DOT_N: usize = 4;
/// See [`DOT_N`].
const DOT_K: usize = 16;

/// Whether a product with `n` output columns and `k` terms runs as dot products.
pub(super) fn dot_ok(n: usize, k: usize) -> bool {
    n <= DOT_N && k >= DOT_K
}

/// The operands of [`dot_block`] (pointers at the block's first row).
pub(super) struct Dot {
    /// Terms.
    pub k: usize,
    /// `A` (row-major, stride `lda`).
    pub a: *const f64,
    pub lda: usize,
    /// `Bᵀ` (row-major, stride `ldbt`).
    pub bt: *const f64,
    pub ldbt: usize,
    /// `C` (row stride `ldc`).
    pub c: *mut f64,
    pub ldc: usize,
    /// The bias row, or null for zero.
    pub bias: *const f64,
}

/// `C[r, j] = bias_j + Σ_p A[r, p] Bt[j, p]` (`r < m`, `j < n ≤ DOT_N`, `p < k`; `A` and
/// `Bt` row-major with strides `lda`, `ldbt`; `bias` null for zero): each entry a dot
/// product of two contiguous rows, `W` lanes at a time, then a horizontal sum.
///
/// # Safety
/// As [`gemm`].
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn gemm_dot<S: Lanes>(
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
    let step = S::dot_rows(n);
    // SAFETY: rows below `m`, columns below `n`, terms below `k` (caller).
    unsafe {
        let mut r = 0;
        while r < m {
            let rows = (m - r).min(step);
            let d = Dot {
                k,
                a: a.add(r * lda),
                lda,
                bt,
                ldbt,
                c: c.add(r * ldc),
                ldc,
                bias,
            };
            S::dot(rows, n, &d);
            r += rows;
        }
    }
}

/// `R` rows of [`gemm_dot`] with `N` outputs each.
///
/// # Safety
/// As [`gemm`].
#[inline(always)]
pub(super) unsafe fn dot_block<S: Lanes, const R: usize, const N: usize>(d: &Dot) {
    // SAFETY: as in `gemm_dot`.
    unsafe {
        let mut acc = [[S::zero(); N]; R];
        let mut p = 0;
        while p < d.k {
            let mask = S::mask((d.k - p).min(S::W));
            let mut bv = [S::zero(); N];
            for (j, v) in bv.iter_mut().enumerate() {
                *v = S::load_m(d.bt.add(j * d.ldbt + p), mask);
            }
            for (i, row) in acc.iter_mut().enumerate() {
                let x = S::load_m(d.a.add(i * d.lda + p), mask);
                for (s, y) in row.iter_mut().zip(&bv) {
                    *s = S::fma(x, *y, *s);
                }
            }
            p += S::W;
        }
        for (i, row) in acc.iter().enumerate() {
            for (j, s) in row.iter().enumerate() {
                let b = if d.bias.is_null() {
                    0.0
                } else {
                    *d.bias.add(j)
                };
                *d.c.add(i * d.ldc + j) = b + S::reduce_add(*s);
            }
        }
    }
}

/// True if `x` and `y` (of equal lengths) hold the same bit patterns.
///
/// # Safety
/// The set's features.
#[inline(always)]
pub(super) unsafe fn same_bits<S: Lanes>(x: &[f64], y: &[f64]) -> bool {
    let n = x.len().min(y.len());
    let (xp, yp) = (x.as_ptr(), y.as_ptr());
    // SAFETY: lanes below `n` only (the tail through a mask).
    unsafe {
        let mut diff = S::zero();
        let mut i = 0;
        while i + S::W <= n {
            diff = S::bit_diff(diff, S::load(xp.add(i)), S::load(yp.add(i)));
            i += S::W;
        }
        if i < n {
            let m = S::mask(n - i);
            diff = S::bit_diff(diff, S::load_m(xp.add(i), m), S::load_m(yp.add(i), m));
        }
        !S::any_bits(diff)
    }
}
