//! The vector instruction sets of the fused kernels: [`Lanes`], the few vector
//! operations the kernels use, for AVX-512 ([`Avx512`], 8 lanes) and AVX2 + FMA
//! ([`Avx2`], 4 lanes), and each set's copies of the leaf kernels.
//!
//! The kernels of [`super::kernels`] are generic over [`Lanes`] and `#[inline(always)]`;
//! each set instantiates them inside functions compiled for its features
//! (`isa_kernels!`), so the operations below (also `#[inline(always)]`, without
//! features of their own) inline into code that has them.
use std::arch::x86_64::*;

use autodiff::vmath::{has_avx2_fma, has_avx512, tanh4n_f64, tanh8_f64};

use super::kernels::{self, Block, Dot};

/// One instruction set: its vector of `f64` lanes, a mask for a row's last vector, the
/// operations on them, its register-block shapes and its copies of the leaf kernels.
///
/// # Safety
/// Every function requires the CPU to have the set's features (the fused path is built
/// only after [`detect`] found it) and, for the memory accesses, the lanes read or
/// written to lie in the caller's buffers.
pub(super) trait Lanes: Copy + 'static {
    /// `f64` lanes per vector.
    const W: usize;
    /// Rows per register block of the products.
    const MR: usize;
    /// Vectors per register block (`W · NV` columns).
    const NV: usize;
    /// Rows per register block when the output is one vector wide: more independent
    /// accumulator chains, else the multiply–adds wait on each other's latency.
    const MR1: usize;
    /// Rows per block of the dot-product kernel with `n` outputs.
    fn dot_rows(n: usize) -> usize;
    /// A vector.
    type V: Copy;
    /// The lanes of a row's last vector that are inside the row.
    type M: Copy;
    /// The mask of the first `rem` lanes (`1 ≤ rem ≤ W`).
    unsafe fn mask(rem: usize) -> Self::M;
    /// All lanes zero.
    unsafe fn zero() -> Self::V;
    /// `x` in every lane.
    unsafe fn splat(x: f64) -> Self::V;
    /// `W` values from `p`.
    unsafe fn load(p: *const f64) -> Self::V;
    /// The lanes of `m` from `p`, zero in the others.
    unsafe fn load_m(p: *const f64, m: Self::M) -> Self::V;
    /// `W` values to `p`.
    unsafe fn store(p: *mut f64, x: Self::V);
    /// The lanes of `m` to `p`.
    unsafe fn store_m(p: *mut f64, m: Self::M, x: Self::V);
    /// `a · b + c`, one rounding.
    unsafe fn fma(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    /// `a + b`.
    unsafe fn add(a: Self::V, b: Self::V) -> Self::V;
    /// `x · (1 − y²)` (the `tanh` derivative applied to a cotangent).
    unsafe fn times_dtanh(x: Self::V, y: Self::V) -> Self::V;
    /// `tanh` of every lane of `N` vectors (`autodiff::vmath`'s kernel of the set,
    /// ≤ 2 ulp; the same bits for any `N`), their chains interleaved where that helps.
    unsafe fn tanh_n<const N: usize>(x: [Self::V; N]) -> [Self::V; N];
    /// The sum of the lanes.
    unsafe fn reduce_add(x: Self::V) -> f64;
    /// `acc | (a ^ b)` on the bit patterns.
    unsafe fn bit_diff(acc: Self::V, a: Self::V, b: Self::V) -> Self::V;
    /// True if any bit of `x` is set.
    unsafe fn any_bits(x: Self::V) -> bool;

    /// [`kernels::micro`] for a block of `rows × nv` vectors (`cmp`: with the comparison,
    /// `partial`: the last vector masked).
    unsafe fn micro(rows: usize, nv: usize, cmp: bool, partial: bool, b: &Block<Self>);
    /// [`kernels::dot_block`] for `rows` rows of `n` outputs.
    unsafe fn dot(rows: usize, n: usize, d: &Dot);
    /// [`kernels::sum_rows`].
    unsafe fn sum_rows(g: *mut f64, d: *const f64, rows: usize, n: usize, first: bool);
    /// [`kernels::same_bits`].
    unsafe fn same_bits(x: &[f64], y: &[f64]) -> bool;
}

/// Each set's copies of the leaf kernels: functions compiled for `$features` that
/// instantiate the generic kernels for the module's `This`, one per block shape, and the [`Lanes`]
/// methods that choose among them.
///
/// `split_partial`: whether full rows get a copy without masks. AVX-512 masks every
/// block's last vector (its masked loads cost what plain ones do, and the mask lives in a
/// mask register); AVX2's mask takes one of the 16 vector registers that a 6 × 2 block's
/// loop needs, so full rows get plain loads.
macro_rules! isa_kernels {
    ($features:literal, split_partial: $split:literal, micro: [$($r:literal, $v:literal);*],
        dot: [$($dr:literal, $dn:literal);*]) => {
        /// [`kernels::micro`] compiled for the set. Not inlined: one out-of-line copy per
        /// block shape keeps the drivers small (measured 2–4 % faster at `B = 16` than
        /// inlining all of them into [`kernels::gemm`]).
        #[inline(never)]
        #[target_feature(enable = $features)]
        unsafe fn micro_t<const R: usize, const V: usize, const CMP: bool, const P: bool>(
            b: &Block<This>,
        ) {
            // SAFETY: the caller's (see [`Lanes`]).
            unsafe { kernels::micro::<This, R, V, CMP, P>(b) }
        }

        /// [`kernels::dot_block`] compiled for the set (not inlined, as [`micro_t`]).
        #[inline(never)]
        #[target_feature(enable = $features)]
        unsafe fn dot_t<const R: usize, const N: usize>(d: &Dot) {
            // SAFETY: the caller's.
            unsafe { kernels::dot_block::<This, R, N>(d) }
        }

        #[target_feature(enable = $features)]
        unsafe fn sum_rows_t(g: *mut f64, d: *const f64, rows: usize, n: usize, first: bool) {
            // SAFETY: the caller's.
            unsafe { kernels::sum_rows::<This>(g, d, rows, n, first) }
        }

        #[target_feature(enable = $features)]
        unsafe fn same_bits_t(x: &[f64], y: &[f64]) -> bool {
            // SAFETY: the caller's.
            unsafe { kernels::same_bits::<This>(x, y) }
        }

        /// The [`Lanes`] methods that run the kernels above.
        macro_rules! leaf_methods {
            () => {
                #[inline(always)]
                unsafe fn micro(rows: usize, nv: usize, cmp: bool, partial: bool, b: &Block<Self>) {
                    macro_rules! with_p {
                        ($pp:literal) => {
                            match (rows, nv, cmp) {
                                $(($r, $v, false) => micro_t::<$r, $v, false, $pp>(b),
                                ($r, $v, true) => micro_t::<$r, $v, true, $pp>(b),)*
                                _ => unreachable!("block shape"),
                            }
                        };
                    }
                    // SAFETY: the caller's.
                    unsafe {
                        if $split && !partial {
                            with_p!(false)
                        } else {
                            with_p!(true)
                        }
                    }
                }
                #[inline(always)]
                unsafe fn dot(rows: usize, n: usize, d: &Dot) {
                    // SAFETY: the caller's.
                    unsafe {
                        match (rows, n) {
                            $(($dr, $dn) => dot_t::<$dr, $dn>(d),)*
                            _ => unreachable!("dot shape"),
                        }
                    }
                }
                #[inline(always)]
                unsafe fn sum_rows(g: *mut f64, d: *const f64, rows: usize, n: usize, first: bool) {
                    // SAFETY: the caller's.
                    unsafe { sum_rows_t(g, d, rows, n, first) }
                }
                #[inline(always)]
                unsafe fn same_bits(x: &[f64], y: &[f64]) -> bool {
                    // SAFETY: the caller's.
                    unsafe { same_bits_t(x, y) }
                }
            };
        }
    };
}

/// AVX-512 F/DQ/VL (with AVX2 and FMA): 8 lanes, `u8` masks, blocks of 6 rows × 4
/// vectors (24 of the 32 zmm registers accumulate).
#[derive(Clone, Copy)]
pub(super) struct Avx512;

/// AVX2 + FMA: 4 lanes, blocks of 6 rows × 2 vectors (12 of the 16 ymm registers
/// accumulate, as the usual AVX2 `dgemm` kernels).
#[derive(Clone, Copy)]
pub(super) struct Avx2;

/// A row's last AVX2 vector: the lanes inside the row, and whether that is all of them
/// (then a plain store: a masked store is slow on AMD's cores).
#[derive(Clone, Copy)]
pub(super) struct Mask4 {
    lanes: __m256i,
    full: bool,
}

mod avx512 {
    use super::*;
    type This = Avx512;
    isa_kernels!(
        "avx512f,avx512dq,avx512vl,avx2,fma",
        split_partial: false,
        micro: [8, 1; 7, 1; 6, 4; 6, 3; 6, 2; 6, 1; 5, 4; 5, 3; 5, 2; 5, 1; 4, 4; 4, 3; 4, 2;
            4, 1; 3, 4; 3, 3; 3, 2; 3, 1; 2, 4; 2, 3; 2, 2; 2, 1; 1, 4; 1, 3; 1, 2; 1, 1],
        dot: [4, 4; 4, 3; 4, 2; 4, 1; 3, 4; 3, 3; 3, 2; 3, 1; 2, 4; 2, 3; 2, 2; 2, 1; 1, 4;
            1, 3; 1, 2; 1, 1]
    );

    // SAFETY (every method): the CPU has AVX-512 F/DQ/VL, AVX2 and FMA, and the lanes
    // accessed lie in the caller's buffers (the trait's contract).
    impl Lanes for Avx512 {
        const W: usize = 8;
        const MR: usize = 6;
        const NV: usize = 4;
        const MR1: usize = 8;
        #[inline(always)]
        fn dot_rows(_n: usize) -> usize {
            4
        }
        type V = __m512d;
        type M = u8;
        #[inline(always)]
        unsafe fn mask(rem: usize) -> u8 {
            if rem >= 8 { 0xff } else { (1u8 << rem) - 1 }
        }
        #[inline(always)]
        unsafe fn zero() -> __m512d {
            unsafe { _mm512_setzero_pd() }
        }
        #[inline(always)]
        unsafe fn splat(x: f64) -> __m512d {
            unsafe { _mm512_set1_pd(x) }
        }
        #[inline(always)]
        unsafe fn load(p: *const f64) -> __m512d {
            unsafe { _mm512_loadu_pd(p) }
        }
        #[inline(always)]
        unsafe fn load_m(p: *const f64, m: u8) -> __m512d {
            unsafe { _mm512_maskz_loadu_pd(m, p) }
        }
        #[inline(always)]
        unsafe fn store(p: *mut f64, x: __m512d) {
            unsafe { _mm512_storeu_pd(p, x) }
        }
        #[inline(always)]
        unsafe fn store_m(p: *mut f64, m: u8, x: __m512d) {
            unsafe { _mm512_mask_storeu_pd(p, m, x) }
        }
        #[inline(always)]
        unsafe fn fma(a: __m512d, b: __m512d, c: __m512d) -> __m512d {
            unsafe { _mm512_fmadd_pd(a, b, c) }
        }
        #[inline(always)]
        unsafe fn add(a: __m512d, b: __m512d) -> __m512d {
            unsafe { _mm512_add_pd(a, b) }
        }
        #[inline(always)]
        unsafe fn times_dtanh(x: __m512d, y: __m512d) -> __m512d {
            unsafe { _mm512_mul_pd(x, _mm512_fnmadd_pd(y, y, _mm512_set1_pd(1.0))) }
        }
        #[inline(always)]
        unsafe fn tanh_n<const N: usize>(mut x: [__m512d; N]) -> [__m512d; N] {
            for v in x.iter_mut() {
                *v = unsafe { tanh8_f64(*v) };
            }
            x
        }
        #[inline(always)]
        unsafe fn reduce_add(x: __m512d) -> f64 {
            unsafe { _mm512_reduce_add_pd(x) }
        }
        #[inline(always)]
        unsafe fn bit_diff(acc: __m512d, a: __m512d, b: __m512d) -> __m512d {
            unsafe {
                let d = _mm512_xor_si512(_mm512_castpd_si512(a), _mm512_castpd_si512(b));
                _mm512_castsi512_pd(_mm512_or_si512(_mm512_castpd_si512(acc), d))
            }
        }
        #[inline(always)]
        unsafe fn any_bits(x: __m512d) -> bool {
            unsafe {
                let x = _mm512_castpd_si512(x);
                _mm512_test_epi64_mask(x, x) != 0
            }
        }
        leaf_methods!();
    }
}

mod avx2 {
    use super::*;
    type This = Avx2;
    isa_kernels!(
        "avx2,fma",
        split_partial: true,
        micro: [8, 1; 7, 1; 6, 2; 6, 1; 5, 2; 5, 1; 4, 2; 4, 1; 3, 2; 3, 1; 2, 2; 2, 1; 1, 2;
            1, 1],
        dot: [4, 2; 4, 1; 3, 2; 3, 1; 2, 4; 2, 3; 2, 2; 2, 1; 1, 4; 1, 3; 1, 2; 1, 1]
    );

    // SAFETY (every method): the CPU has AVX2 and FMA, and the lanes accessed lie in the
    // caller's buffers (the trait's contract).
    impl Lanes for Avx2 {
        const W: usize = 4;
        const MR: usize = 6;
        const NV: usize = 2;
        const MR1: usize = 8;
        /// 4 rows of up to 2 outputs (8 accumulators), 2 rows of 3 or 4: the rest of the
        /// 16 registers hold the loaded vectors.
        #[inline(always)]
        fn dot_rows(n: usize) -> usize {
            if n <= 2 { 4 } else { 2 }
        }
        type V = __m256d;
        type M = Mask4;
        #[inline(always)]
        unsafe fn mask(rem: usize) -> Mask4 {
            unsafe {
                let lanes = _mm256_cmpgt_epi64(
                    _mm256_set1_epi64x(rem as i64),
                    _mm256_setr_epi64x(0, 1, 2, 3),
                );
                Mask4 {
                    lanes,
                    full: rem >= 4,
                }
            }
        }
        #[inline(always)]
        unsafe fn zero() -> __m256d {
            unsafe { _mm256_setzero_pd() }
        }
        #[inline(always)]
        unsafe fn splat(x: f64) -> __m256d {
            unsafe { _mm256_set1_pd(x) }
        }
        #[inline(always)]
        unsafe fn load(p: *const f64) -> __m256d {
            unsafe { _mm256_loadu_pd(p) }
        }
        #[inline(always)]
        unsafe fn load_m(p: *const f64, m: Mask4) -> __m256d {
            // Always the masked load (as fast as a plain one): a branch on `m.full`
            // would stay inside the product's loop.
            unsafe { _mm256_maskload_pd(p, m.lanes) }
        }
        #[inline(always)]
        unsafe fn store(p: *mut f64, x: __m256d) {
            unsafe { _mm256_storeu_pd(p, x) }
        }
        #[inline(always)]
        unsafe fn store_m(p: *mut f64, m: Mask4, x: __m256d) {
            unsafe {
                if m.full {
                    _mm256_storeu_pd(p, x)
                } else {
                    _mm256_maskstore_pd(p, m.lanes, x)
                }
            }
        }
        #[inline(always)]
        unsafe fn fma(a: __m256d, b: __m256d, c: __m256d) -> __m256d {
            unsafe { _mm256_fmadd_pd(a, b, c) }
        }
        #[inline(always)]
        unsafe fn add(a: __m256d, b: __m256d) -> __m256d {
            unsafe { _mm256_add_pd(a, b) }
        }
        #[inline(always)]
        unsafe fn times_dtanh(x: __m256d, y: __m256d) -> __m256d {
            unsafe { _mm256_mul_pd(x, _mm256_fnmadd_pd(y, y, _mm256_set1_pd(1.0))) }
        }
        #[inline(always)]
        unsafe fn tanh_n<const N: usize>(x: [__m256d; N]) -> [__m256d; N] {
            unsafe { tanh4n_f64(x) }
        }
        #[inline(always)]
        unsafe fn reduce_add(x: __m256d) -> f64 {
            unsafe {
                let lo = _mm256_castpd256_pd128(x);
                let hi = _mm256_extractf128_pd::<1>(x);
                let s = _mm_add_pd(lo, hi);
                _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)))
            }
        }
        #[inline(always)]
        unsafe fn bit_diff(acc: __m256d, a: __m256d, b: __m256d) -> __m256d {
            unsafe { _mm256_or_pd(acc, _mm256_xor_pd(a, b)) }
        }
        #[inline(always)]
        unsafe fn any_bits(x: __m256d) -> bool {
            unsafe {
                let x = _mm256_castpd_si256(x);
                _mm256_testz_si256(x, x) == 0
            }
        }
        leaf_methods!();
    }
}

/// The instruction set the CPU has, AVX-512 first; `None` without AVX2 + FMA.
pub(super) fn detect() -> Option<Isa> {
    if has_avx512() {
        Some(Isa::Avx512)
    } else if has_avx2_fma() {
        Some(Isa::Avx2)
    } else {
        None
    }
}

/// The instruction set a fused path runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Isa {
    /// [`Avx512`].
    Avx512,
    /// [`Avx2`].
    Avx2,
}
