//! Patch-major convolution: the im2col matrix is built transposed, one row per output
//! position (`colᵀ [positions, k_h·k_w·C]`, inner order `(p, q, c)`), from the input
//! re-laid out as zero-bordered channels-last planes (`[h + 2pad, w + 2pad, C]`), so a
//! row is `k_h` contiguous copies of `k_w·C` values. The GEMMs then run as
//! `Yᵀ [positions, O] = colᵀ · W̃ᵀ` with `W̃[o, (p, q, c)] = W[o, c, p, q]`: the layout in
//! which faer packs the large operand (measured ≈ 1.9× the GFLOP/s of `W · col` with
//! the position-major `col` on 64-channel 6×6 maps, where faer streams the unpacked
//! operand), and `Yᵀ` is transposed back to `[n, O, h, w]` as it is copied out (with
//! the bias added there).
//!
//! Backward, stride 1 (the flipped-kernel form of the parent module):
//! `∂Xᵀ = colᵀ(G) · W̃'ᵀ` with `W̃'[c, (p, q, o)] = W[o, c, k−1−p, k−1−q]`, and
//! `R = colᵀ(G)ᵀ · Xᵀ` (`Xᵀ` channels-last, `[positions, C]`),
//! `∂W[o, c, p, q] = R[(k−1−p, k−1−q, o), c]`. Any stride:
//! `∂W̃ᵀ = colᵀ(X)ᵀ · Gᵀ` and `∂colᵀ = Gᵀ · W̃`, whose rows are added back into a
//! channels-last plane (col2im by contiguous runs) and transposed out.
//!
//! Chunks of whole samples (about [`CHUNK_ELEMS`] elements of `colᵀ`, so it stays in
//! the L2 cache); the weight gradient is accumulated over the chunks in sample order,
//! so results depend on the geometry only.

use super::Geo;
use crate::Float;

/// Target size of one chunk's `colᵀ` in elements (768 KB in f32: with faer's packed copy it
/// stays in the 2 MB L2; 1.5 and 3 MB chunks measured 5 and 13 % slower per ODE-Net step).
pub(super) const CHUNK_ELEMS: usize = 192 * 1024;

/// True if the patch-major path runs this geometry: its row copies (`k_w·C` and
/// `k_w·O` values) are long enough to beat the position-major im2col's runs.
pub(super) fn applies(g: &Geo) -> bool {
    g.c >= 8 && g.o >= 8
}

/// `&mut v[..n]`, growing `v` (zero-filled) only if it is shorter: scratch shared by
/// convolutions of different sizes is not re-zeroed on every call.
pub(super) fn grow<T: Float>(v: &mut Vec<T>, n: usize) -> &mut [T] {
    if v.len() < n {
        v.resize(n, T::zero());
    }
    &mut v[..n]
}

/// `dst[j·ldd + k] = src[k·lds + j]` for `k < B`, `j < n`: a `B`-row strip transposed
/// (`B` rows read in step, `B` contiguous values written per column).
#[inline(always)]
fn strip<T: Copy, const B: usize>(src: &[T], lds: usize, n: usize, dst: &mut [T], ldd: usize) {
    let rows: [&[T]; B] = std::array::from_fn(|k| &src[k * lds..k * lds + n]);
    for j in 0..n {
        let d = &mut dst[j * ldd..j * ldd + B];
        for k in 0..B {
            d[k] = rows[k][j];
        }
    }
}

/// Samples per chunk for `rows` matrix rows per sample and inner dimension `kdim`.
fn chunk(rows: usize, kdim: usize, n: usize) -> usize {
    (CHUNK_ELEMS / (rows * kdim).max(1)).clamp(1, n.max(1))
}

/// Copies samples `s0..s0 + m` of `x [n, c, h, w]` into zero-bordered channels-last
/// planes `dst[s][(y, x), c]` of `(h + 2p) × (w + 2p)` positions each.
#[allow(clippy::too_many_arguments)]
fn to_hwc<T: Float>(
    x: &[T],
    c: usize,
    h: usize,
    w: usize,
    p: usize,
    s0: usize,
    m: usize,
    dst: &mut [T],
) {
    to_hwc_ext(x, c, h, w, p, h + 2 * p, w + 2 * p, s0, m, dst)
}

/// [`to_hwc`] into planes of `hp × wp` positions (`hp ≥ h + p`, `wp ≥ w + p`): `p`
/// zero rows and columns before the image, `hp − h − p` rows and `wp − w − p` columns
/// after it (Winograd's tiles round odd maps up to even ones).
#[allow(clippy::too_many_arguments)]
pub(super) fn to_hwc_ext<T: Float>(
    x: &[T],
    c: usize,
    h: usize,
    w: usize,
    p: usize,
    hp: usize,
    wp: usize,
    s0: usize,
    m: usize,
    dst: &mut [T],
) {
    crate::vmath::simd_dispatch!(to_hwc_k::<T>(x: &[T], c: usize, h: usize, w: usize, p: usize, hp: usize, wp: usize, s0: usize, m: usize, dst: &mut [T]) -> ())
}

/// The body of [`to_hwc_ext`], compiled per vector unit.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn to_hwc_k<T: Float>(
    x: &[T],
    c: usize,
    h: usize,
    w: usize,
    p: usize,
    hp: usize,
    wp: usize,
    s0: usize,
    m: usize,
    dst: &mut [T],
) {
    let hw = h * w;
    let plane = hp * wp * c;
    #[cfg(target_arch = "x86_64")]
    let fast = crate::vmath::has_avx2_fma();
    for s in 0..m {
        let d = &mut dst[s * plane..(s + 1) * plane];
        if hp > h || wp > w {
            // The border only: the interior is written below.
            d[..p * wp * c].fill(T::zero());
            d[(p + h) * wp * c..].fill(T::zero());
            for y in p..p + h {
                d[y * wp * c..(y * wp + p) * c].fill(T::zero());
                d[(y * wp + p + w) * c..(y + 1) * wp * c].fill(T::zero());
            }
        }
        let xs = &x[(s0 + s) * c * hw..(s0 + s + 1) * c * hw];
        #[cfg(target_arch = "x86_64")]
        if let (true, Some(xs), Some(d)) = (
            fast,
            crate::vmath::as_f32(xs),
            crate::vmath::as_f32_mut(&mut *d),
        ) {
            // SAFETY: AVX2 was detected just above.
            unsafe { avx::to_hwc_plane(xs, c, w, hw, p, wp, d) };
            continue;
        }
        for iy in 0..h {
            let at = ((iy + p) * wp + p) * c;
            let mut ch = 0;
            while ch + 8 <= c {
                let src = &xs[ch * hw + iy * w..];
                strip::<T, 8>(src, hw, w, &mut d[at + ch..], c);
                ch += 8;
            }
            for ch in ch..c {
                strip::<T, 1>(&xs[ch * hw + iy * w..], hw, w, &mut d[at + ch..], c);
            }
        }
    }
}

/// `colᵀ` of `m` samples from their channels-last padded planes `xh` (see [`to_hwc`]):
/// row `(s, oy, ox)` is `[xh[s][(oy·st + p, ox·st + q), c] for (p, q, c)]`.
fn im2col<T: Float>(g: &Geo, xh: &[T], m: usize, col: &mut [T]) {
    match g.kw * g.c {
        192 => {
            crate::vmath::simd_dispatch!(im2col_192::<T>(g: &Geo, xh: &[T], m: usize, col: &mut [T]) -> ())
        }
        256 => {
            crate::vmath::simd_dispatch!(im2col_256::<T>(g: &Geo, xh: &[T], m: usize, col: &mut [T]) -> ())
        }
        run => {
            crate::vmath::simd_dispatch!(im2col_k::<T>(g: &Geo, xh: &[T], m: usize, col: &mut [T], run: usize) -> ())
        }
    }
}

/// [`im2col_k`] for runs of 192 values (3×3 kernels on 64 channels).
#[inline(always)]
fn im2col_192<T: Float>(g: &Geo, xh: &[T], m: usize, col: &mut [T]) {
    im2col_k(g, xh, m, col, 192)
}

/// [`im2col_k`] for runs of 256 values (4×4 kernels on 64 channels).
#[inline(always)]
fn im2col_256<T: Float>(g: &Geo, xh: &[T], m: usize, col: &mut [T]) {
    im2col_k(g, xh, m, col, 256)
}

/// The body of [`im2col`] for rows of `k_w·C = run` values (a constant for the widths
/// of the models' 3×3 and 4×4 layers at 64 channels, so each copy is inlined).
#[inline(always)]
fn im2col_k<T: Float>(g: &Geo, xh: &[T], m: usize, col: &mut [T], run: usize) {
    let (wp, hp) = (g.w + 2 * g.p, g.h + 2 * g.p);
    let (ckk, plane) = (g.kh * g.kw * g.c, hp * wp * g.c);
    for s in 0..m {
        let xs = &xh[s * plane..(s + 1) * plane];
        for oy in 0..g.ho {
            for ox in 0..g.wo {
                let row = ((s * g.ho + oy) * g.wo + ox) * ckk;
                for ki in 0..g.kh {
                    let src = ((oy * g.s + ki) * wp + ox * g.s) * g.c;
                    let d = &mut col[row + ki * run..row + (ki + 1) * run];
                    copy_run(d, &xs[src..src + run]);
                }
            }
        }
    }
}

/// `dst.copy_from_slice(src)` by blocks of 16 values, which the compiler inlines as
/// vector moves (a `memcpy` call per run of a few hundred bytes cost more than the copy).
#[inline(always)]
fn copy_run<T: Copy>(dst: &mut [T], src: &[T]) {
    let mut d = dst.chunks_exact_mut(16);
    let mut s = src.chunks_exact(16);
    for (d, s) in (&mut d).zip(&mut s) {
        d.copy_from_slice(s);
    }
    d.into_remainder().copy_from_slice(s.remainder());
}

/// `y[s0 + s, o, i] (+)= ym[(s·hw + i)·ch + o]` (+ bias, see the parent's `scatter`):
/// the transpose of a chunk's `[m·hw, ch]` GEMM output back to `[n, ch, hw]`, one
/// output row at a time (its strided reads stay in L1: one sample's block is
/// `hw·ch` values; 8-channel strips measured slower).
#[allow(clippy::too_many_arguments)]
pub(super) fn scatter_t<T: Float>(
    y: &mut [T],
    ym: &[T],
    ch: usize,
    hw: usize,
    s0: usize,
    m: usize,
    acc: bool,
    bias: Option<&[T]>,
) {
    #[cfg(target_arch = "x86_64")]
    let fast = crate::vmath::has_avx2_fma();
    for s in 0..m {
        let src = &ym[s * hw * ch..(s + 1) * hw * ch];
        #[cfg(target_arch = "x86_64")]
        if let (true, Some(src)) = (fast, crate::vmath::as_f32(src)) {
            let dst = crate::vmath::as_f32_mut(&mut y[(s0 + s) * ch * hw..(s0 + s + 1) * ch * hw]);
            let mode = match bias {
                Some(b) if b.len() == ch => avx::Out::Channel(crate::vmath::as_f32(b).unwrap()),
                Some(b) => avx::Out::Position(crate::vmath::as_f32(b).unwrap()),
                None if acc => avx::Out::Acc,
                None => avx::Out::Assign,
            };
            // SAFETY: AVX2 was detected just above; `T` is `f32` (so `dst` is `Some`).
            unsafe { avx::scatter_plane(src, ch, hw, dst.unwrap(), mode) };
            continue;
        }
        for o in 0..ch {
            let at = ((s0 + s) * ch + o) * hw;
            let dst = &mut y[at..at + hw];
            let col = src[o..].iter().step_by(ch);
            match bias {
                Some(b) if b.len() == ch => {
                    let b = b[o];
                    dst.iter_mut().zip(col).for_each(|(d, &v)| *d = v + b);
                }
                Some(b) => {
                    let b = &b[o * hw..(o + 1) * hw];
                    dst.iter_mut()
                        .zip(col)
                        .zip(b)
                        .for_each(|((d, &v), &b)| *d = v + b);
                }
                None if acc => dst.iter_mut().zip(col).for_each(|(d, &v)| *d += v),
                None => dst.iter_mut().zip(col).for_each(|(d, &v)| *d = v),
            }
        }
    }
}

/// f32 transposes by 8 × 8 tiles in AVX registers (the scalar strided loops were ≈ 7 %
/// of an ODE-Net step). Values are moved (or added once, as in the scalar loops), so the
/// results are bit for bit those of the scalar paths.
#[cfg(target_arch = "x86_64")]
mod avx {
    use std::arch::x86_64::*;

    /// The 8 × 8 transpose of the rows at `src + k·lds`: vector `j` holds
    /// `[src[k·lds + j] for k < 8]`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn tr8(src: *const f32, lds: usize) -> [__m256; 8] {
        // SAFETY (whole body): the caller guarantees 8 rows of 8 readable values.
        unsafe {
            let r: [__m256; 8] = std::array::from_fn(|k| _mm256_loadu_ps(src.add(k * lds)));
            let t0 = _mm256_unpacklo_ps(r[0], r[1]);
            let t1 = _mm256_unpackhi_ps(r[0], r[1]);
            let t2 = _mm256_unpacklo_ps(r[2], r[3]);
            let t3 = _mm256_unpackhi_ps(r[2], r[3]);
            let t4 = _mm256_unpacklo_ps(r[4], r[5]);
            let t5 = _mm256_unpackhi_ps(r[4], r[5]);
            let t6 = _mm256_unpacklo_ps(r[6], r[7]);
            let t7 = _mm256_unpackhi_ps(r[6], r[7]);
            let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
            let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
            let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
            let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
            let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
            let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
            let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
            let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
            [
                _mm256_permute2f128_ps::<0x20>(u0, u4),
                _mm256_permute2f128_ps::<0x20>(u1, u5),
                _mm256_permute2f128_ps::<0x20>(u2, u6),
                _mm256_permute2f128_ps::<0x20>(u3, u7),
                _mm256_permute2f128_ps::<0x31>(u0, u4),
                _mm256_permute2f128_ps::<0x31>(u1, u5),
                _mm256_permute2f128_ps::<0x31>(u2, u6),
                _mm256_permute2f128_ps::<0x31>(u3, u7),
            ]
        }
    }

    /// One sample of [`super::to_hwc`]: `d[((j / w + p)·wp + p + j % w)·c + ch] =
    /// xs[ch·hw + j]` (the border is not touched).
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn to_hwc_plane(
        xs: &[f32],
        c: usize,
        w: usize,
        hw: usize,
        p: usize,
        wp: usize,
        d: &mut [f32],
    ) {
        assert!(xs.len() >= c * hw);
        let at = |j: usize| ((j / w + p) * wp + p + j % w) * c;
        assert!(hw == 0 || d.len() >= at(hw - 1) + c);
        let (c8, hw8) = (c / 8 * 8, hw / 8 * 8);
        let (xp, dp) = (xs.as_ptr(), d.as_mut_ptr());
        for (j0, _) in tiles(hw) {
            let offs: [usize; 8] = std::array::from_fn(|j| at(j0 + j));
            for c0 in (0..c8).step_by(8) {
                // SAFETY: rows `c0..c0 + 8` and columns `j0..j0 + 8` are inside `xs`, and
                // `offs[j] + c0 + 8 ≤ at(j) + c ≤ d.len()` (asserted above).
                unsafe {
                    let v = tr8(xp.add(c0 * hw + j0), hw);
                    for (j, &o) in offs.iter().enumerate() {
                        _mm256_storeu_ps(dp.add(o + c0), v[j]);
                    }
                }
            }
            for ch in c8..c {
                for (j, &o) in offs.iter().enumerate() {
                    d[o + ch] = xs[ch * hw + j0 + j];
                }
            }
        }
        // Fewer than 8 positions: no tile.
        for j in hw8.max(if hw >= 8 { hw } else { 0 })..hw {
            let o = at(j);
            for ch in 0..c {
                d[o + ch] = xs[ch * hw + j];
            }
        }
    }

    /// The 8-position tiles of `hw` positions, `(first, lanes already done)`: a last
    /// partial tile is shifted back to end at `hw`, overlapping the one before (a copy
    /// writes the same values again; an accumulation skips the lanes done).
    fn tiles(hw: usize) -> impl Iterator<Item = (usize, usize)> {
        let hw8 = hw / 8 * 8;
        let last = (hw >= 8 && hw > hw8).then(|| (hw - 8, 8 - (hw - hw8)));
        (0..hw8).step_by(8).map(|j| (j, 0)).chain(last)
    }

    /// What [`scatter_plane`] does with each transposed value `v` at `(o, j)`.
    #[derive(Clone, Copy)]
    pub(super) enum Out<'a> {
        /// `y = v`.
        Assign,
        /// `y += v`.
        Acc,
        /// `y = v + b[o]`.
        Channel(&'a [f32]),
        /// `y = v + b[o·hw + j]`.
        Position(&'a [f32]),
    }

    /// One sample of [`super::scatter_t`]: `y[o·hw + j] (op)= ym[j·ch + o]`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn scatter_plane(
        ym: &[f32],
        ch: usize,
        hw: usize,
        y: &mut [f32],
        mode: Out<'_>,
    ) {
        assert!(ym.len() >= ch * hw && y.len() >= ch * hw);
        match mode {
            Out::Channel(b) => assert!(b.len() >= ch),
            Out::Position(b) => assert!(b.len() >= ch * hw),
            _ => {}
        }
        let put = |y: &mut [f32], at: usize, o: usize, v: f32| match mode {
            Out::Assign => y[at] = v,
            Out::Acc => y[at] += v,
            Out::Channel(b) => y[at] = v + b[o],
            Out::Position(b) => y[at] = v + b[at],
        };
        let (c8, hw8) = (ch / 8 * 8, hw / 8 * 8);
        let (sp, yp) = (ym.as_ptr(), y.as_mut_ptr());
        for (j0, skip) in tiles(hw) {
            // Lanes `< skip` were done by the tile before: an accumulation keeps their
            // old values.
            let lane = _mm256_setr_ps(0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0);
            let keep = _mm256_cmp_ps::<_CMP_LT_OQ>(lane, _mm256_set1_ps(skip as f32));
            for o0 in (0..c8).step_by(8) {
                // SAFETY: rows `j0..j0 + 8` and columns `o0..o0 + 8` of `ym [hw, ch]` and
                // `y[(o0 + k)·hw + j0..][..8]` (and the same range of a per-position bias)
                // are in bounds (asserted above).
                unsafe {
                    let v = tr8(sp.add(j0 * ch + o0), ch);
                    for (k, &v) in v.iter().enumerate() {
                        let at = (o0 + k) * hw + j0;
                        let r = match mode {
                            Out::Assign => v,
                            Out::Acc => {
                                let old = _mm256_loadu_ps(yp.add(at));
                                _mm256_blendv_ps(_mm256_add_ps(old, v), old, keep)
                            }
                            Out::Channel(b) => _mm256_add_ps(v, _mm256_set1_ps(b[o0 + k])),
                            Out::Position(b) => {
                                _mm256_add_ps(v, _mm256_loadu_ps(b.as_ptr().add(at)))
                            }
                        };
                        _mm256_storeu_ps(yp.add(at), r);
                    }
                }
            }
            for o in c8..ch {
                for j in j0 + skip..j0 + 8 {
                    put(y, o * hw + j, o, ym[j * ch + o]);
                }
            }
        }
        for j in hw8.max(if hw >= 8 { hw } else { 0 })..hw {
            for o in 0..ch {
                put(y, o * hw + j, o, ym[j * ch + o]);
            }
        }
    }
}

/// `W̃[o, (p, q, c)] = W[o, c, p, q]` (`flip`: `W̃'[c, (p, q, o)] = W[o, c, k−1−p, k−1−q]`).
fn permute<T: Float>(g: &Geo, w: &[T], flip: bool, dst: &mut [T]) {
    let kk = g.kh * g.kw;
    for o in 0..g.o {
        for c in 0..g.c {
            for p in 0..g.kh {
                for q in 0..g.kw {
                    let v = w[((o * g.c + c) * g.kh + p) * g.kw + q];
                    if flip {
                        let (pf, qf) = (g.kh - 1 - p, g.kw - 1 - q);
                        dst[c * g.o * kk + (pf * g.kw + qf) * g.o + o] = v;
                    } else {
                        dst[o * kk * g.c + (p * g.kw + q) * g.c + c] = v;
                    }
                }
            }
        }
    }
}

/// `y (+)= conv(x, w)` (`y = conv(x, w) + bias` with a bias), patch-major.
#[allow(clippy::too_many_arguments)]
pub(super) fn conv_fwd<T: Float>(
    g: &Geo,
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
    y: &mut [T],
    acc: bool,
    col: &mut Vec<T>,
    tmp: &mut Vec<T>,
) {
    let (ckk, hw) = (g.c * g.kh * g.kw, g.ho * g.wo);
    let plane = (g.h + 2 * g.p) * (g.w + 2 * g.p) * g.c;
    let nb = chunk(hw, ckk, g.n);
    let col = grow(col, nb * hw * ckk + nb * plane);
    let (colt, xh) = col.split_at_mut(nb * hw * ckk);
    let tmp = grow(tmp, g.o * ckk + nb * hw * g.o);
    let (wt, ym) = tmp.split_at_mut(g.o * ckk);
    permute(g, w, false, wt);
    let mut s0 = 0;
    while s0 < g.n {
        let m = nb.min(g.n - s0);
        to_hwc(x, g.c, g.h, g.w, g.p, s0, m, xh);
        let colt = &mut colt[..m * hw * ckk];
        im2col(g, xh, m, colt);
        let ym = &mut ym[..m * hw * g.o];
        T::gemm(ym, m * hw, g.o, ckk, colt, false, wt, true, false);
        scatter_t(y, ym, g.o, hw, s0, m, acc, bias);
        s0 += m;
    }
}

/// The VJPs of `y = conv(x, w)`, patch-major; arguments as the parent's `conv_back`
/// (`gt`: the flipped geometry for stride 1, if it applies).
#[allow(clippy::too_many_arguments)]
pub(super) fn conv_back<T: Float>(
    g: &Geo,
    gt: Option<&Geo>,
    x: &[T],
    w: &[T],
    gy: &[T],
    out: &mut [T],
    gx_off: Option<usize>,
    gw_off: Option<usize>,
    gx_assign: bool,
    col: &mut Vec<T>,
    tmp: &mut Vec<T>,
) {
    match gt {
        Some(gt) => back_flipped(g, gt, x, w, gy, out, gx_off, gw_off, gx_assign, col, tmp),
        None => back_col2im(g, x, w, gy, out, gx_off, gw_off, gx_assign, col, tmp),
    }
}

#[allow(clippy::too_many_arguments)]
fn back_flipped<T: Float>(
    g: &Geo,
    gt: &Geo,
    x: &[T],
    w: &[T],
    gy: &[T],
    out: &mut [T],
    gx_off: Option<usize>,
    gw_off: Option<usize>,
    gx_assign: bool,
    col: &mut Vec<T>,
    tmp: &mut Vec<T>,
) {
    let (k, okk, xhw) = (g.kh, g.o * g.kh * g.kw, g.h * g.w);
    let nb = chunk(xhw, okk, g.n);
    let gplane = (gt.h + 2 * gt.p) * (gt.w + 2 * gt.p) * g.o;
    let (gx, gw) = (gx_off.is_some(), gw_off.is_some());
    // col = [colᵀ(G) | G channels-last]; tmp = [Xᵀ | R | W̃' | ∂Xᵀ].
    let col = grow(col, nb * xhw * okk + nb * gplane);
    let (colt, gh) = col.split_at_mut(nb * xhw * okk);
    let xh_len = if gw { nb * xhw * g.c } else { 0 };
    let r_len = if gw { okk * g.c } else { 0 };
    let (wf_len, dx_len) = if gx {
        (g.c * okk, nb * xhw * g.c)
    } else {
        (0, 0)
    };
    let tmp = grow(tmp, xh_len + r_len + wf_len + dx_len);
    let (xh, rest) = tmp.split_at_mut(xh_len);
    let (r, rest) = rest.split_at_mut(r_len);
    let (wf, dx) = rest.split_at_mut(wf_len);
    if gx {
        permute(g, w, true, wf);
    }
    let mut s0 = 0;
    while s0 < g.n {
        let m = nb.min(g.n - s0);
        let rows = m * xhw;
        to_hwc(gy, g.o, gt.h, gt.w, gt.p, s0, m, gh);
        let colt = &mut colt[..rows * okk];
        im2col(gt, gh, m, colt);
        if gw {
            // R [(p, q, o), C] (+)= colᵀ(G)ᵀ · Xᵀ.
            let xh = &mut xh[..rows * g.c];
            to_hwc(x, g.c, g.h, g.w, 0, s0, m, xh);
            T::gemm(r, okk, g.c, rows, colt, true, xh, false, s0 > 0);
        }
        if let Some(xo) = gx_off {
            let dx = &mut dx[..rows * g.c];
            T::gemm(dx, rows, g.c, okk, colt, false, wf, true, false);
            scatter_t(&mut out[xo..], dx, g.c, xhw, s0, m, !gx_assign, None);
        }
        s0 += m;
    }
    if let Some(wo) = gw_off.filter(|_| g.n > 0) {
        let dw = &mut out[wo..wo + g.o * g.c * k * k];
        for o in 0..g.o {
            for c in 0..g.c {
                for p in 0..k {
                    for q in 0..k {
                        let ri = ((k - 1 - p) * k + k - 1 - q) * g.o + o;
                        dw[((o * g.c + c) * k + p) * k + q] += r[ri * g.c + c];
                    }
                }
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn back_col2im<T: Float>(
    g: &Geo,
    x: &[T],
    w: &[T],
    gy: &[T],
    out: &mut [T],
    gx_off: Option<usize>,
    gw_off: Option<usize>,
    gx_assign: bool,
    col: &mut Vec<T>,
    tmp: &mut Vec<T>,
) {
    let (ckk, hw) = (g.c * g.kh * g.kw, g.ho * g.wo);
    let (hp, wp) = (g.h + 2 * g.p, g.w + 2 * g.p);
    let plane = hp * wp * g.c;
    let nb = chunk(hw, ckk, g.n);
    let (gx, gw) = (gx_off.is_some(), gw_off.is_some());
    // col = [colᵀ(X) or ∂colᵀ | X channels-last or ∂X plane]; tmp = [Gᵀ | ∂W̃ᵀ | W̃].
    let col = grow(col, nb * hw * ckk + nb * plane);
    let (colt, xh) = col.split_at_mut(nb * hw * ckk);
    let wt_len = if gw { ckk * g.o } else { 0 };
    let wp_len = if gx { g.o * ckk } else { 0 };
    let tmp = grow(tmp, nb * hw * g.o + wt_len + wp_len);
    let (gh, rest) = tmp.split_at_mut(nb * hw * g.o);
    let (wt, wperm) = rest.split_at_mut(wt_len);
    if gx {
        permute(g, w, false, wperm);
    }
    let (run, chw) = (g.kw * g.c, g.c * g.h * g.w);
    let mut s0 = 0;
    while s0 < g.n {
        let m = nb.min(g.n - s0);
        let rows = m * hw;
        let gh = &mut gh[..rows * g.o];
        to_hwc(gy, g.o, g.ho, g.wo, 0, s0, m, gh);
        let colt = &mut colt[..rows * ckk];
        if gw {
            // ∂W̃ᵀ [(p, q, c), O] (+)= colᵀ(X)ᵀ · Gᵀ.
            to_hwc(x, g.c, g.h, g.w, g.p, s0, m, xh);
            im2col(g, xh, m, colt);
            T::gemm(wt, ckk, g.o, rows, colt, true, gh, false, s0 > 0);
        }
        if let Some(xo) = gx_off {
            // ∂colᵀ [rows, (p, q, c)] = Gᵀ · W̃, added back into a padded channels-last
            // plane per sample and transposed out.
            T::gemm(colt, rows, ckk, g.o, gh, false, wperm, false, false);
            let acc = &mut xh[..plane];
            for s in 0..m {
                acc.fill(T::zero());
                for oy in 0..g.ho {
                    for ox in 0..g.wo {
                        let row = ((s * g.ho + oy) * g.wo + ox) * ckk;
                        for ki in 0..g.kh {
                            let at = ((oy * g.s + ki) * wp + ox * g.s) * g.c;
                            let src = &colt[row + ki * run..row + (ki + 1) * run];
                            acc[at..at + run]
                                .iter_mut()
                                .zip(src)
                                .for_each(|(d, &v)| *d += v);
                        }
                    }
                }
                let dst = &mut out[xo + (s0 + s) * chw..xo + (s0 + s + 1) * chw];
                for c in 0..g.c {
                    for iy in 0..g.h {
                        let d = &mut dst[(c * g.h + iy) * g.w..(c * g.h + iy + 1) * g.w];
                        let src = acc[((iy + g.p) * wp + g.p) * g.c + c..].iter().step_by(g.c);
                        if gx_assign {
                            d.iter_mut().zip(src).for_each(|(d, &v)| *d = v);
                        } else {
                            d.iter_mut().zip(src).for_each(|(d, &v)| *d += v);
                        }
                    }
                }
            }
        }
        s0 += m;
    }
    if let Some(wo) = gw_off.filter(|_| g.n > 0) {
        let dw = &mut out[wo..wo + g.o * ckk];
        for o in 0..g.o {
            for c in 0..g.c {
                for p in 0..g.kh {
                    for q in 0..g.kw {
                        let ri = (p * g.kw + q) * g.c + c;
                        dw[((o * g.c + c) * g.kh + p) * g.kw + q] += wt[ri * g.o + o];
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Distinct, exactly representable values.
    fn vals(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 37 + seed * 101) % 1009) as f32 * 0.125 - 60.0)
            .collect()
    }

    /// The f32 transposes (AVX tiles where the CPU has them, scalar tails) against
    /// direct index loops, bit for bit, on sizes with partial tiles in both directions.
    #[test]
    fn transposes_match_index_loops() {
        for &(c, h, w, p) in &[
            (64, 6, 6, 1),
            (13, 5, 7, 0),
            (8, 3, 3, 2),
            (17, 4, 4, 1),
            (9, 2, 3, 1),
        ] {
            let (n, s0, m) = (4, 1, 3);
            let hw = h * w;
            let (hp, wp) = (h + 2 * p, w + 2 * p);
            let x = vals(n * c * hw, c + h);
            let mut d = vec![7.0f32; m * hp * wp * c];
            to_hwc(&x, c, h, w, p, s0, m, &mut d);
            for s in 0..m {
                for yy in 0..hp {
                    for xx in 0..wp {
                        for ch in 0..c {
                            let inside = (p..h + p).contains(&yy) && (p..w + p).contains(&xx);
                            let want = if inside {
                                x[((s0 + s) * c + ch) * hw + (yy - p) * w + xx - p]
                            } else {
                                0.0
                            };
                            let got = d[((s * hp + yy) * wp + xx) * c + ch];
                            assert_eq!(got.to_bits(), want.to_bits(), "to_hwc {c} {h} {w} {p}");
                        }
                    }
                }
            }
            let ym = vals(m * hw * c, c + 1);
            let (bc, bp) = (vals(c, 3), vals(c * hw, 4));
            for mode in 0..4 {
                let y0 = vals(n * c * hw, 5);
                let mut y = y0.clone();
                let bias = match mode {
                    2 => Some(&bc[..]),
                    3 => Some(&bp[..]),
                    _ => None,
                };
                scatter_t(&mut y, &ym, c, hw, s0, m, mode == 1, bias);
                for (i, (&got, &old)) in y.iter().zip(&y0).enumerate() {
                    let (s, o, j) = (i / (c * hw), i / hw % c, i % hw);
                    let want = if !(s0..s0 + m).contains(&s) {
                        old
                    } else {
                        let v = ym[((s - s0) * hw + j) * c + o];
                        match mode {
                            0 => v,
                            1 => old + v,
                            2 => v + bc[o],
                            _ => v + bp[o * hw + j],
                        }
                    };
                    assert_eq!(got.to_bits(), want.to_bits(), "scatter_t {c} {hw} {mode}");
                }
            }
        }
    }
}
