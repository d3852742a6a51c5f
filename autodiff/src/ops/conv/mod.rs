//! Convolution family: `conv2d` (stride, zero padding; im2col + faer GEMM per chunk of
//! samples; optionally with a bias fused in), average pooling, adaptive average pooling
//! to 1×1; group normalisation (with its affine part, and the ReLU after it, fused in or
//! not) lives in `norm.rs`.
//!
//! conv2d: `y[n,o,i,j] = Σ_{c,p,q} w[o,c,p,q] · x[n,c, i·s+p−pad, j·s+q−pad] (+ b)`; per
//! chunk of samples `Y = W · col(X)` with `W` as `O × (C·k²)` and `col(X)` as
//! `(C·k²) × (samples·ho·wo)`, about 1024 columns per chunk so the im2col matrix stays in
//! cache. A bias (inputs `[x, w, b]`) is per channel (`b[o]`) or per channel and output
//! position (`b[o, i, j]`, shared by the samples: how `Conv2d::forward_with_time` adds a
//! constant input channel), added as `Y` is copied out of the GEMM's buffer; its VJP
//! sums `G` over the samples (and positions). The VJPs are `∂W = G · col(X)ᵀ` and
//! `∂X = col⁻¹(Wᵀ G)` (col2im scatters back).
//! For stride 1 (and `pad < k`, square kernels) the backward uses instead the im2col
//! matrix of `G` under the transposed geometry (padding `k − 1 − pad`, output `h × w`):
//! `∂X = W' · col(G)` with the flipped, channel-transposed kernel
//! `W'[c, (o, p, q)] = W[o, c, k−1−p, k−1−q]` (a convolution: inner dimension `O·k²`, no
//! scatter-add), and `∂W[o, c, p, q] = (col(G) · X'ᵀ)[(o, k−1−p, k−1−q), c]` with `X'`
//! the input gathered as `[C, samples·h·w]`: one im2col per backward instead of two.
//! With 8 or more channels in and out, the same maths runs patch-major instead
//! (`pm.rs`: one im2col row per output position, channels-last, the layout in which
//! faer's GEMM packs the large operand); the code here serves the narrow layers.
//! 3×3 kernels at stride 1 and padding 1 with 32 or more channels in and out run by
//! Winograd F(2×2, 3×3) (`winograd.rs`: 2.25× fewer multiplies) for the forward and
//! both VJPs.

mod norm;
mod pm;
mod winograd;

use super::Op;
use crate::tape::{Id, Inner, Node, split_grad};
use crate::{Error, Float, Shape};

/// When the 3×3, stride-1, padding-1 convolutions run by Winograd F(2×2, 3×3) (see
/// [`set_winograd`]); otherwise they run patch-major im2col + GEMM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Winograd {
    /// Never.
    Off,
    /// With 32 or more channels in and out (the default: where it was measured faster).
    Auto,
    /// With any number of channels (for tests of the Winograd path on small layers).
    Always,
}

thread_local! {
    /// This thread's [`Winograd`] setting.
    static WINOGRAD: std::cell::Cell<Winograd> = const { std::cell::Cell::new(Winograd::Auto) };
}

/// Sets, on the calling thread only, when convolutions take the Winograd path (default
/// [`Winograd::Auto`]); returns the previous setting. For benchmarks and tests that
/// compare the two paths: both give the same values to round-off.
pub fn set_winograd(mode: Winograd) -> Winograd {
    WINOGRAD.with(|w| w.replace(mode))
}

/// True if `g` runs by Winograd on this thread.
fn use_winograd(g: &Geo) -> bool {
    winograd::fits(g)
        && match WINOGRAD.with(|w| w.get()) {
            Winograd::Off => false,
            Winograd::Auto => g.c.min(g.o) >= winograd::MIN_CHANNELS,
            Winograd::Always => true,
        }
}

#[derive(Clone, Copy)]
struct Geo {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    o: usize,
    kh: usize,
    kw: usize,
    ho: usize,
    wo: usize,
    s: usize,
    p: usize,
}

fn geo(x: Shape, w: Shape, s: usize, p: usize) -> Option<Geo> {
    if x.rank() != 4 || w.rank() != 4 || s == 0 || x.dim(1) != w.dim(1) {
        return None;
    }
    let (h, wd, kh, kw) = (x.dim(2), x.dim(3), w.dim(2), w.dim(3));
    if h + 2 * p < kh || wd + 2 * p < kw {
        return None;
    }
    Some(Geo {
        n: x.dim(0),
        c: x.dim(1),
        h,
        w: wd,
        o: w.dim(0),
        kh,
        kw,
        ho: (h + 2 * p - kh) / s + 1,
        wo: (wd + 2 * p - kw) / s + 1,
        s,
        p,
    })
}

/// Visits the runs of the im2col matrix (leading dimension `ld`, first column `coff`)
/// that fall inside the image: `run(col_index, input_index, len)` covers `len`
/// consecutive columns mapping to `len` consecutive input pixels (stride 1), or single
/// pixels (stride > 1). Padded positions are not visited. Used by col2im (the scatter
/// of the general backward) at stride 1; stride > 1 goes through [`col2im_phased`], and
/// im2col itself through a zero-bordered plane.
#[inline(always)]
fn im2col_walk(g: &Geo, ld: usize, coff: usize, mut run: impl FnMut(usize, usize, usize)) {
    for c in 0..g.c {
        for ki in 0..g.kh {
            for kj in 0..g.kw {
                let row = ((c * g.kh + ki) * g.kw + kj) * ld + coff;
                // Valid ox: 0 <= ox·s + kj − p < w.
                let lo = (g.p.saturating_sub(kj)).div_ceil(g.s);
                let hi = if g.w + g.p > kj {
                    g.wo.min((g.w + g.p - kj - 1) / g.s + 1)
                } else {
                    0
                };
                if lo >= hi {
                    continue;
                }
                for oy in 0..g.ho {
                    let iy = (oy * g.s + ki) as isize - g.p as isize;
                    if iy < 0 || iy >= g.h as isize {
                        continue;
                    }
                    let base = row + oy * g.wo;
                    let xrow = (c * g.h + iy as usize) * g.w + kj;
                    if g.s == 1 {
                        run(base + lo, xrow + lo - g.p, hi - lo);
                    } else {
                        for ox in lo..hi {
                            run(base + ox, xrow + ox * g.s - g.p, 1);
                        }
                    }
                }
            }
        }
    }
}

/// Samples per chunk (one GEMM each, forward and backward): about 1024 columns, where
/// faer's products were measured as fast as with larger chunks on 64-channel 7×7 maps
/// (figures in `benches/README.md`), and the im2col scratch (`C·k² × 1024`, 2.4 MB at
/// 64 channels, f32) stays in the L2/L3 caches instead of round-tripping through memory.
fn chunk(g: &Geo) -> usize {
    (1024 / (g.ho * g.wo).max(g.h * g.w).max(1)).clamp(1, g.n.max(1))
}

/// `dst.copy_from_slice(src)` for the short runs of im2col (a row of a small feature
/// map): runs of up to 16 elements are copied with a constant length, inlined as moves,
/// instead of a `memcpy` call per run (which dominated im2col on 7×7 maps).
#[inline(always)]
fn copy_run<T: Copy>(dst: &mut [T], src: &[T]) {
    macro_rules! fixed {
        ($($n:literal)*) => {
            match src.len() {
                $($n => dst[..$n].copy_from_slice(&src[..$n]),)*
                _ => dst.copy_from_slice(src),
            }
        };
    }
    fixed!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16)
}

/// Length of the zero-padded plane that [`im2col`] needs (0 without padding).
fn plane_len(g: &Geo) -> usize {
    if g.p == 0 {
        0
    } else {
        (g.h + 2 * g.p) * (g.w + 2 * g.p)
    }
}

/// The `s × s` phase planes of a (padded) `hp × wp` plane under stride `s`: phase
/// `(a, b)` holds the pixels `(i·s + a, j·s + b)` as a `hq × wq` plane. Returns
/// `(hq, wq)`.
fn phase_dims(g: &Geo) -> (usize, usize) {
    ((g.h + 2 * g.p).div_ceil(g.s), (g.w + 2 * g.p).div_ceil(g.s))
}

/// Length of the scratch that [`im2col`] and [`col2im_phased`] need: the zero-padded
/// plane, then (stride > 1) the phase planes.
fn pad_len(g: &Geo) -> usize {
    let (hq, wq) = phase_dims(g);
    plane_len(g) + if g.s > 1 { g.s * g.s * hq * wq } else { 0 }
}

/// Splits the (padded) plane `pp` (`hp × wp`) into its stride phases `ph` (see
/// [`phase_dims`]): after this, the pixels a kernel offset `(ki, kj)` reads for the
/// output positions of one output row are CONTIGUOUS in phase `(ki mod s, kj mod s)`,
/// starting at `(oy + ki / s, kj / s)`, so im2col copies runs instead of gathering
/// every `s`-th element `k²` times.
fn split_phases<T: Copy>(g: &Geo, pp: &[T], ph: &mut [T]) {
    let (hp, wp) = (g.h + 2 * g.p, g.w + 2 * g.p);
    let (hq, wq) = phase_dims(g);
    for a in 0..g.s {
        for b in 0..g.s {
            let q = &mut ph[(a * g.s + b) * hq * wq..(a * g.s + b + 1) * hq * wq];
            for (i, y) in (a..hp).step_by(g.s).enumerate() {
                let row = &pp[y * wp..(y + 1) * wp];
                for (d, &v) in q[i * wq..(i + 1) * wq]
                    .iter_mut()
                    .zip(row[b..].iter().step_by(g.s))
                {
                    *d = v;
                }
            }
        }
    }
}

/// col2im of one sample for stride > 1 (the inverse of [`split_phases`] + the phase
/// copies of [`im2col`]): the columns of each channel are summed into the zeroed phase
/// planes `ph` by contiguous runs, then added into the unpadded plane of `gx`
/// (`[C, h·w]`). `coff` is the sample's first column in `col` (leading dimension `ld`).
fn col2im_phased<T: Float>(g: &Geo, col: &[T], ld: usize, coff: usize, gx: &mut [T], ph: &mut [T]) {
    let (hq, wq) = phase_dims(g);
    let (st, hw, hwi) = (g.s, g.ho * g.wo, g.h * g.w);
    let ph = &mut ph[..st * st * hq * wq];
    for c in 0..g.c {
        ph.fill(T::zero());
        for ki in 0..g.kh {
            for kj in 0..g.kw {
                let r = (c * g.kh + ki) * g.kw + kj;
                let src = &col[r * ld + coff..r * ld + coff + hw];
                let base = ((ki % st) * st + kj % st) * hq * wq + (ki / st) * wq + kj / st;
                for (oy, sr) in src.chunks_exact(g.wo).enumerate() {
                    let at = base + oy * wq;
                    ph[at..at + g.wo]
                        .iter_mut()
                        .zip(sr)
                        .for_each(|(d, &v)| *d += v);
                }
            }
        }
        let gxc = &mut gx[c * hwi..(c + 1) * hwi];
        for iy in 0..g.h {
            let y = iy + g.p;
            let row = ((y % st) * st) * hq * wq + (y / st) * wq;
            for (ix, d) in gxc[iy * g.w..(iy + 1) * g.w].iter_mut().enumerate() {
                let x = ix + g.p;
                *d += ph[row + (x % st) * hq * wq + x / st];
            }
        }
    }
}

/// Copies the columns of samples `s0..s0 + m` of `x` into `col` (`[ckk, m·hw]`): each
/// input plane is first copied into the zero-bordered plane `pad` (length
/// [`pad_len`]), so every element of `col` is written once, by short fixed-pattern
/// copies and without branches on the border.
fn im2col<T: Float>(g: &Geo, x: &[T], s0: usize, m: usize, col: &mut [T], pad: &mut [T]) {
    macro_rules! widths {
        ($($w:literal)*) => {
            match (g.s, g.wo) {
                $((1, $w) => im2col_k::<T, $w>(g, x, s0, m, col, pad),)*
                _ => im2col_k::<T, 0>(g, x, s0, m, col, pad),
            }
        };
    }
    widths!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16)
}

/// The body of [`im2col`]; `W > 0` is the output width of a stride-1 convolution as a
/// constant, so each row of a map is copied by a fixed-length move.
#[inline(always)]
fn im2col_k<T: Float, const W: usize>(
    g: &Geo,
    x: &[T],
    s0: usize,
    m: usize,
    col: &mut [T],
    pad: &mut [T],
) {
    let (hw, hwi, chw) = (g.ho * g.wo, g.h * g.w, g.c * g.h * g.w);
    let (wp, ld) = (g.w + 2 * g.p, m * hw);
    let (hq, wq) = phase_dims(g);
    let (pad, ph) = pad[..pad_len(g)].split_at_mut(plane_len(g));
    pad.fill(T::zero());
    for s in 0..m {
        let xs = &x[(s0 + s) * chw..(s0 + s + 1) * chw];
        for c in 0..g.c {
            let xp = &xs[c * hwi..(c + 1) * hwi];
            let pp: &[T] = if g.p == 0 {
                xp
            } else {
                for iy in 0..g.h {
                    let at = (iy + g.p) * wp + g.p;
                    copy_run(&mut pad[at..at + g.w], &xp[iy * g.w..(iy + 1) * g.w]);
                }
                pad
            };
            if g.s > 1 {
                split_phases(g, pp, ph);
                for ki in 0..g.kh {
                    for kj in 0..g.kw {
                        let r = (c * g.kh + ki) * g.kw + kj;
                        let dst = &mut col[r * ld + s * hw..r * ld + (s + 1) * hw];
                        let base =
                            ((ki % g.s) * g.s + kj % g.s) * hq * wq + (ki / g.s) * wq + kj / g.s;
                        for (oy, d) in dst.chunks_exact_mut(g.wo).enumerate() {
                            let at = base + oy * wq;
                            copy_run(d, &ph[at..at + g.wo]);
                        }
                    }
                }
                continue;
            }
            for ki in 0..g.kh {
                for kj in 0..g.kw {
                    let r = (c * g.kh + ki) * g.kw + kj;
                    let dst = &mut col[r * ld + s * hw..r * ld + (s + 1) * hw];
                    for oy in 0..g.ho {
                        let src = &pp[(oy * g.s + ki) * wp + kj..];
                        if W > 0 {
                            dst[oy * W..(oy + 1) * W].copy_from_slice(&src[..W]);
                        } else {
                            let d = &mut dst[oy * g.wo..(oy + 1) * g.wo];
                            d.copy_from_slice(&src[..g.wo]);
                        }
                    }
                }
            }
        }
    }
}

/// Gathers `[ch, m·hw]` (channel-major, the GEMM layout) from samples `s0..s0 + m` of
/// a `[n, ch, hw]` tensor (the inverse of [`scatter`]).
fn gather<T: Float>(src: &[T], ch: usize, hw: usize, s0: usize, m: usize, dst: &mut [T]) {
    let ld = m * hw;
    for s in 0..m {
        for k in 0..ch {
            let at = ((s0 + s) * ch + k) * hw;
            dst[k * ld + s * hw..k * ld + (s + 1) * hw].copy_from_slice(&src[at..at + hw]);
        }
    }
}

/// `y[s0 + s, k, :] (+)= yp[k, s·hw..(s + 1)·hw]` for the `m` samples of a chunk and
/// the `o` channels `k` (the inverse of [`gather`]); with `bias`, `y = yp + bias[k]`
/// (`o` elements) or `y = yp + bias[k, :]` (`o·hw` elements, a bias per output
/// position), written, not accumulated: the bias add fused into the copy out of the GEMM.
#[allow(clippy::too_many_arguments)]
fn scatter<T: Float>(
    y: &mut [T],
    yp: &[T],
    o: usize,
    hw: usize,
    s0: usize,
    m: usize,
    acc: bool,
    bias: Option<&[T]>,
) {
    let ld = m * hw;
    for s in 0..m {
        for k in 0..o {
            let at = ((s0 + s) * o + k) * hw;
            let src = &yp[k * ld + s * hw..k * ld + (s + 1) * hw];
            let dst = &mut y[at..at + hw];
            if let Some(b) = bias.filter(|b| b.len() == o) {
                let b = b[k];
                dst.iter_mut().zip(src).for_each(|(d, &v)| *d = v + b);
            } else if let Some(b) = bias {
                let b = &b[k * hw..(k + 1) * hw];
                dst.iter_mut()
                    .zip(src)
                    .zip(b)
                    .for_each(|((d, &v), &b)| *d = v + b);
            } else if acc {
                dst.iter_mut().zip(src).for_each(|(d, &v)| *d += v);
            } else {
                dst.copy_from_slice(src);
            }
        }
    }
}

/// `y (+)= conv(x, w)` (`y = conv(x, w) + bias` with a bias): im2col + one GEMM per
/// chunk of samples.
#[allow(clippy::too_many_arguments)]
fn conv_fwd<T: Float>(
    g: &Geo,
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
    y: &mut [T],
    acc: bool,
    col: &mut Vec<T>,
    tmp: &mut Vec<T>,
) {
    if use_winograd(g) {
        return winograd::conv_fwd(g, x, w, bias, y, acc, col, tmp);
    }
    if pm::applies(g) {
        return pm::conv_fwd(g, x, w, bias, y, acc, col, tmp);
    }
    let (ckk, hw) = (g.c * g.kh * g.kw, g.ho * g.wo);
    let nb = chunk(g);
    // Grown, never shrunk: the scratch is shared with the other paths' convolutions,
    // and re-growing it would zero it again on every call.
    let col = pm::grow(col, ckk * nb * hw + pad_len(g));
    let tmp = pm::grow(tmp, g.o * nb * hw);
    let (col, pad) = col.split_at_mut(ckk * nb * hw);
    let mut s0 = 0;
    while s0 < g.n {
        let m = nb.min(g.n - s0);
        let ld = m * hw;
        let col = &mut col[..ckk * ld];
        im2col(g, x, s0, m, col, pad);
        // Y' [O, m·hw] = W [O, ckk] · col [ckk, m·hw], then Y[s, o, :] = Y'[o, s·hw..].
        let yp = &mut tmp[..g.o * ld];
        T::gemm(yp, g.o, ld, ckk, w, false, col, false, false);
        scatter(y, yp, g.o, hw, s0, m, acc, bias);
        s0 += m;
    }
}

/// Geometry of `∂X` as a stride-1 convolution of `G` (channels `O`, map `ho × wo`)
/// with the flipped, channel-transposed kernel and padding `k − 1 − p`, if this applies
/// (stride 1, square kernel, `p < k`): its output map is then `h × w`.
fn flipped(g: &Geo) -> Option<Geo> {
    (g.s == 1 && g.kh == g.kw && g.p < g.kh).then_some(Geo {
        n: g.n,
        c: g.o,
        h: g.ho,
        w: g.wo,
        o: g.c,
        kh: g.kh,
        kw: g.kw,
        ho: g.h,
        wo: g.w,
        s: 1,
        p: g.kh - 1 - g.p,
    })
}

/// The two VJPs of `y = conv(x, w)` for an output-shaped `gy`, accumulated into `out`:
/// `∂W` at `out[gw_off..]` and `∂X` at `out[gx_off..]` (either may be skipped; the
/// ranges may be anywhere in `out`). With `gx_assign`, `∂X` is written (`=`), not added.
///
/// For stride 1 (see [`flipped`]) both come from the im2col matrix of `G` under the
/// transposed geometry, `col(G) [O·k², m·h·w]`, built once per chunk:
/// - `∂X` is the convolution of `G` with the flipped, channel-transposed kernel
///   `W'[c, (o, p, q)] = W[o, c, k−1−p, k−1−q]`: `∂X' [C, m·h·w] = W' · col(G)`, one
///   GEMM with inner dimension `O·k²` (instead of `Wᵀ G` with inner dimension `O`
///   followed by a col2im scatter);
/// - `∂W[o, c, p, q] = R[(o, k−1−p, k−1−q), c]` with `R = col(G) · X'ᵀ`, `X'` the
///   samples of `x` gathered as `[C, m·h·w]` (by the substitution `i = y + p − pad`
///   in `Σ G[y] X[y + p − pad]`): no im2col of `x` at all.
///
/// Otherwise `∂W += G · col(X)ᵀ` (formed transposed, `col(X) · Gᵀ`, the layout faer runs
/// fastest) and `∂X = col⁻¹(Wᵀ G)`.
#[allow(clippy::too_many_arguments)]
fn conv_back<T: Float>(
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
    if use_winograd(g) {
        let (o, a) = (out, gx_assign);
        return winograd::conv_back(g, x, w, gy, o, gx_off, gw_off, a, col, tmp);
    }
    if pm::applies(g) {
        let gt = flipped(g);
        let (o, a) = (out, gx_assign);
        return pm::conv_back(g, gt.as_ref(), x, w, gy, o, gx_off, gw_off, a, col, tmp);
    }
    // `∂W` alone (a first layer on data) from `col(X)`: with few input channels it is
    // far smaller than `col(G)` (a 1-channel 3×3 stem: 9 rows instead of 576).
    match flipped(g).filter(|_| gx_off.is_some()) {
        Some(gt) => {
            back_flipped(g, &gt, x, w, gy, out, gx_off, gw_off, gx_assign, col, tmp);
        }
        None => back_col2im(g, x, w, gy, out, gx_off, gw_off, gx_assign, col, tmp),
    }
}

/// [`conv_back`] for stride 1, from `col(G)` (`gt` is the transposed geometry).
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
    let nb = chunk(g);
    let (gx, gw) = (gx_off.is_some(), gw_off.is_some());
    // tmp = [X' | R | W' | ∂X']; col holds col(G), then the zero-bordered plane.
    let xp_len = if gw { g.c * nb * xhw } else { 0 };
    let r_len = if gw { okk * g.c } else { 0 };
    let (wf_len, dx_len) = if gx {
        (g.c * okk, g.c * nb * xhw)
    } else {
        (0, 0)
    };
    let col_len = okk * nb * xhw;
    let col = pm::grow(col, col_len + pad_len(gt));
    let (col, pad) = col.split_at_mut(col_len);
    let tmp = pm::grow(tmp, xp_len + r_len + wf_len + dx_len);
    let (xp_all, rest) = tmp.split_at_mut(xp_len);
    let (r, rest) = rest.split_at_mut(r_len);
    let (wf, dxp_all) = rest.split_at_mut(wf_len);
    if gx {
        for o in 0..g.o {
            for c in 0..g.c {
                for p in 0..k {
                    for q in 0..k {
                        let src = ((o * g.c + c) * k + p) * k + q;
                        wf[c * okk + (o * k + k - 1 - p) * k + k - 1 - q] = w[src];
                    }
                }
            }
        }
    }
    let mut s0 = 0;
    while s0 < g.n {
        let m = nb.min(g.n - s0);
        let ldx = m * xhw;
        let col = &mut col[..okk * ldx];
        im2col(gt, gy, s0, m, col, pad);
        if gw {
            // R [O·k², C] (+)= col(G) · X'ᵀ.
            let xp = &mut xp_all[..g.c * ldx];
            gather(x, g.c, xhw, s0, m, xp);
            T::gemm(r, okk, g.c, ldx, col, false, xp, true, s0 > 0);
        }
        if let Some(xo) = gx_off {
            // ∂X' [C, m·h·w] = W' · col(G), then scattered to [n, C, h·w].
            let dxp = &mut dxp_all[..g.c * ldx];
            T::gemm(dxp, g.c, ldx, okk, wf, false, col, false, false);
            scatter(&mut out[xo..], dxp, g.c, xhw, s0, m, !gx_assign, None);
        }
        s0 += m;
    }
    if let Some(wo) = gw_off.filter(|_| g.n > 0) {
        let dw = &mut out[wo..wo + g.o * g.c * k * k];
        for o in 0..g.o {
            for c in 0..g.c {
                for p in 0..k {
                    for q in 0..k {
                        let ri = (o * k + k - 1 - p) * k + k - 1 - q;
                        dw[((o * g.c + c) * k + p) * k + q] += r[ri * g.c + c];
                    }
                }
            }
        }
    }
}

/// [`conv_back`] for any geometry: `∂Wᵀ += col(X) · Gᵀ`, `∂X += col⁻¹(Wᵀ G)`.
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
    let (ckk, hw, chw) = (g.c * g.kh * g.kw, g.ho * g.wo, g.c * g.h * g.w);
    if let Some(xo) = gx_off.filter(|_| gx_assign) {
        out[xo..xo + g.n * chw].fill(T::zero());
    }
    let nb = chunk(g);
    // tmp = [G' | ∂Wᵀ]; col holds col(X), then the col2im input.
    let gp_len = g.o * nb * hw;
    let wt_len = if gw_off.is_some() { ckk * g.o } else { 0 };
    let col = pm::grow(col, ckk * nb * hw + pad_len(g));
    let (col, pad) = col.split_at_mut(ckk * nb * hw);
    let tmp = pm::grow(tmp, gp_len + wt_len);
    let (gp_all, wt) = tmp.split_at_mut(gp_len);
    let mut s0 = 0;
    while s0 < g.n {
        let m = nb.min(g.n - s0);
        let ld = m * hw;
        let gp = &mut gp_all[..g.o * ld];
        gather(gy, g.o, hw, s0, m, gp);
        let col = &mut col[..ckk * ld];
        if gw_off.is_some() {
            // ∂Wᵀ [ckk, O] (+)= col [ckk, m·hw] · G'ᵀ.
            im2col(g, x, s0, m, col, pad);
            T::gemm(wt, ckk, g.o, ld, col, false, gp, true, s0 > 0);
        }
        if let Some(xo) = gx_off {
            // dcol [ckk, m·hw] = Wᵀ · G', scattered back by col2im.
            T::gemm(col, ckk, ld, g.o, w, true, gp, false, false);
            for s in s0..s0 + m {
                let gx = &mut out[xo + s * chw..xo + (s + 1) * chw];
                if g.s > 1 {
                    col2im_phased(g, col, ld, (s - s0) * hw, gx, &mut pad[plane_len(g)..]);
                    continue;
                }
                im2col_walk(g, ld, (s - s0) * hw, |ci, xi, l| {
                    gx[xi..xi + l]
                        .iter_mut()
                        .zip(&col[ci..ci + l])
                        .for_each(|(a, &b)| *a += b)
                });
            }
        }
        s0 += m;
    }
    if let Some(wo) = gw_off.filter(|_| g.n > 0) {
        let dw = &mut out[wo..wo + g.o * ckk];
        for (o, row) in dw.chunks_exact_mut(ckk).enumerate() {
            for (r, d) in row.iter_mut().enumerate() {
                *d += wt[r * g.o + o];
            }
        }
    }
}

/// True if the fast VJP of conv node `c` writes (`=`) the gradient of its input `x`
/// when that is `x`'s only use (see `Inner::assign`): `x` is the image (not also the
/// kernel) and `∂x` is a flipped-kernel convolution, which writes every element once.
pub(crate) fn writes_input_grad<T: Float>(t: &Inner<T>, c: Node<T>, x: Id) -> bool {
    let Op::Conv2d { stride, pad } = c.op else {
        return false;
    };
    let (xi, wi) = (c.inputs[0], c.inputs[1]);
    let (sx, sw) = (t.nodes[xi as usize].shape, t.nodes[wi as usize].shape);
    x == xi && wi != xi && geo(sx, sw, stride, pad).is_some_and(|g| flipped(&g).is_some())
}

/// Geometry of an average pooling (no padding).
#[derive(Clone, Copy)]
struct Pool {
    planes: usize,
    h: usize,
    w: usize,
    ho: usize,
    wo: usize,
    k: usize,
    stride: usize,
}

/// `y = avg_pool(x)`.
fn pool_fwd<T: Float>(g: &Pool, x: &[T], y: &mut [T]) {
    let inv = T::one() / T::from_f64_const((g.k * g.k) as f64);
    for p in 0..g.planes {
        for oy in 0..g.ho {
            for ox in 0..g.wo {
                let mut acc = T::zero();
                for a in 0..g.k {
                    let r = (p * g.h + oy * g.stride + a) * g.w + ox * g.stride;
                    for &v in &x[r..r + g.k] {
                        acc += v;
                    }
                }
                y[(p * g.ho + oy) * g.wo + ox] = acc * inv;
            }
        }
    }
}

/// `x += avg_poolᵀ(y)` (the VJP of pooling; accumulates).
fn pool_t<T: Float>(g: &Pool, y: &[T], x: &mut [T]) {
    let inv = T::one() / T::from_f64_const((g.k * g.k) as f64);
    for p in 0..g.planes {
        for oy in 0..g.ho {
            for ox in 0..g.wo {
                let v = y[(p * g.ho + oy) * g.wo + ox] * inv;
                for a in 0..g.k {
                    let r = (p * g.h + oy * g.stride + a) * g.w + ox * g.stride;
                    x[r..r + g.k].iter_mut().for_each(|d| *d += v);
                }
            }
        }
    }
}

fn dims4(s: Shape) -> [usize; 4] {
    let d = s.padded();
    [d[0], d[1], d[2], d[3]]
}

impl<T: Float> Inner<T> {
    pub(crate) fn conv2d(&mut self, x: Id, w: Id, stride: usize, pad: usize) -> Id {
        self.conv2d_impl(x, w, None, stride, pad)
    }

    /// `conv2d(x, w) + b` with the bias `b` added as the GEMM's output is copied out
    /// (one node, no separate broadcast add): per channel (`o` elements, any shape) or
    /// per channel and output position (`o·ho·wo` elements, shared by the samples; e.g.
    /// a constant input channel's contribution, which the padding makes vary near the
    /// border).
    pub(crate) fn conv2d_bias(&mut self, x: Id, w: Id, b: Id, stride: usize, pad: usize) -> Id {
        self.conv2d_impl(x, w, Some(b), stride, pad)
    }

    fn conv2d_impl(&mut self, x: Id, w: Id, b: Option<Id>, stride: usize, pad: usize) -> Id {
        let (nx, nw) = (self.node(x), self.node(w));
        let Some(g) = geo(nx.shape, nw.shape, stride, pad) else {
            return self.fail(Error::ShapeMismatch {
                op: "conv2d",
                lhs: nx.shape,
                rhs: nw.shape,
            });
        };
        let nb = b.map(|b| self.node(b));
        let per_pos = g.o * g.ho * g.wo;
        if let Some(nb) = nb.filter(|nb| nb.shape.len() != g.o && nb.shape.len() != per_pos) {
            return self.fail(Error::ShapeMismatch {
                op: "conv2d_bias",
                lhs: nw.shape,
                rhs: nb.shape,
            });
        }
        let shape = Shape::new(&[g.n, g.o, g.ho, g.wo]).unwrap_or_default();
        let off = self.alloc_uninit(shape.len());
        let (src, dst) = self.vals.split_at_mut(off);
        conv_fwd(
            &g,
            &src[nx.off..nx.off + nx.shape.len()],
            &src[nw.off..nw.off + nw.shape.len()],
            nb.map(|nb| &src[nb.off..nb.off + nb.shape.len()]),
            &mut dst[..shape.len()],
            false,
            &mut self.scratch,
            &mut self.scratch2,
        );
        match b {
            Some(b) => self.push(Op::Conv2d { stride, pad }, shape, off, &[x, w, b]),
            None => self.push(Op::Conv2d { stride, pad }, shape, off, &[x, w]),
        }
    }

    /// `∂x` of a convolution as an operation of `(gy, w)`: the transposed convolution
    /// `col⁻¹(Wᵀ G)` onto an `[n, c, h, w]` map (`h`, `w` given: stride makes them
    /// ambiguous). Linear in each input; used by the recorded backward of `conv2d`.
    pub(crate) fn conv2d_grad_input(
        &mut self,
        gy: Id,
        w: Id,
        stride: usize,
        pad: usize,
        hw: (usize, usize),
    ) -> Id {
        let (ng, nw) = (self.node(gy), self.node(w));
        let [n, o, ho, wo] = dims4(ng.shape);
        let xs = Shape::new(&[n, nw.shape.dim(1), hw.0, hw.1]).unwrap_or_default();
        let g = match geo(xs, nw.shape, stride, pad) {
            Some(g) if ng.shape.rank() == 4 && g.o == o && g.ho == ho && g.wo == wo => g,
            _ => {
                return self.fail(Error::ShapeMismatch {
                    op: "conv2d_grad_input",
                    lhs: ng.shape,
                    rhs: nw.shape,
                });
            }
        };
        // Written, not accumulated: the output need not be zeroed first.
        let off = self.alloc_uninit(xs.len());
        let (src, dst) = self.vals.split_at_mut(off);
        conv_back(
            &g,
            &[],
            &src[nw.off..nw.off + nw.shape.len()],
            &src[ng.off..ng.off + ng.shape.len()],
            &mut dst[..xs.len()],
            Some(0),
            None,
            true,
            &mut self.scratch,
            &mut self.scratch2,
        );
        let op = Op::Conv2dGradInput { stride, pad };
        self.push(op, xs, off, &[gy, w])
    }

    /// `∂w` of a convolution as an operation of `(x, gy)`: `G · col(X)ᵀ` as an
    /// `[o, c, kh, kw]` tensor. Linear in each input; used by the recorded backward.
    pub(crate) fn conv2d_grad_weight(
        &mut self,
        x: Id,
        gy: Id,
        stride: usize,
        pad: usize,
        k: (usize, usize),
    ) -> Id {
        let (nx, ng) = (self.node(x), self.node(gy));
        let [_, o, ho, wo] = dims4(ng.shape);
        let ws = Shape::new(&[o, nx.shape.dim(1), k.0, k.1]).unwrap_or_default();
        let g = match geo(nx.shape, ws, stride, pad) {
            Some(g)
                if ng.shape.rank() == 4 && ng.shape.dim(0) == g.n && g.ho == ho && g.wo == wo =>
            {
                g
            }
            _ => {
                return self.fail(Error::ShapeMismatch {
                    op: "conv2d_grad_weight",
                    lhs: nx.shape,
                    rhs: ng.shape,
                });
            }
        };
        let off = self.alloc(ws.len());
        let (src, dst) = self.vals.split_at_mut(off);
        conv_back(
            &g,
            &src[nx.off..nx.off + nx.shape.len()],
            &[],
            &src[ng.off..ng.off + ng.shape.len()],
            &mut dst[..ws.len()],
            None,
            Some(0),
            false,
            &mut self.scratch,
            &mut self.scratch2,
        );
        let op = Op::Conv2dGradWeight { stride, pad };
        self.push(op, ws, off, &[x, gy])
    }

    /// Average pooling with a `k × k` window and stride `stride` (no padding).
    pub(crate) fn avg_pool(&mut self, x: Id, k: usize, stride: usize) -> Id {
        let n = self.node(x);
        let s = n.shape;
        if s.rank() != 4 || k == 0 || stride == 0 || s.dim(2) < k || s.dim(3) < k {
            return self.fail(Error::InvalidArgument {
                op: "avg_pool2d",
                shape: s,
                reason: "needs [n, c, h, w] with h, w >= k >= 1 and stride >= 1",
            });
        }
        let (h, w) = (s.dim(2), s.dim(3));
        let (ho, wo) = ((h - k) / stride + 1, (w - k) / stride + 1);
        let shape = Shape::new(&[s.dim(0), s.dim(1), ho, wo]).unwrap_or_default();
        let off = self.alloc_uninit(shape.len());
        let (src, dst) = self.vals.split_at_mut(off);
        let pg = Pool {
            planes: s.dim(0) * s.dim(1),
            h,
            w,
            ho,
            wo,
            k,
            stride,
        };
        pool_fwd(&pg, &src[n.off..n.off + s.len()], &mut dst[..shape.len()]);
        self.push(Op::AvgPool { k, stride }, shape, off, &[x])
    }

    /// Transpose of average pooling (its VJP as an operation): spreads each entry of
    /// `g [n, c, ho, wo]` with weight `1/k²` over its window of an `[n, c, h, w]` map.
    pub(crate) fn avg_pool_t(&mut self, g: Id, k: usize, stride: usize, hw: (usize, usize)) -> Id {
        let n = self.node(g);
        let s = n.shape;
        let (h, w) = hw;
        let ok = s.rank() == 4
            && k >= 1
            && stride >= 1
            && h >= k
            && w >= k
            && (h - k) / stride + 1 == s.dim(2)
            && (w - k) / stride + 1 == s.dim(3);
        if !ok {
            return self.fail(Error::InvalidArgument {
                op: "avg_pool2d_grad",
                shape: s,
                reason: "window, stride and map size do not match the pooled shape",
            });
        }
        let shape = Shape::new(&[s.dim(0), s.dim(1), h, w]).unwrap_or_default();
        let off = self.alloc(shape.len());
        let (src, dst) = self.vals.split_at_mut(off);
        let pg = Pool {
            planes: s.dim(0) * s.dim(1),
            h,
            w,
            ho: s.dim(2),
            wo: s.dim(3),
            k,
            stride,
        };
        pool_t(&pg, &src[n.off..n.off + s.len()], &mut dst[..shape.len()]);
        let op = Op::AvgPoolGrad { k, stride };
        self.push(op, shape, off, &[g])
    }

    /// Mean over the spatial dimensions: `[n, c, h, w] → [n, c]`.
    pub(crate) fn global_avg_pool(&mut self, x: Id) -> Id {
        let n = self.node(x);
        let s = n.shape;
        if s.rank() != 4 {
            return self.fail(Error::InvalidArgument {
                op: "global_avg_pool2d",
                shape: s,
                reason: "needs a [n, c, h, w] tensor",
            });
        }
        let hw = s.dim(2) * s.dim(3);
        let shape = Shape::new(&[s.dim(0), s.dim(1)]).unwrap_or_default();
        let off = self.alloc_uninit(shape.len());
        let (src, dst) = self.vals.split_at_mut(off);
        let inv = T::one() / T::from_f64_const(hw.max(1) as f64);
        for p in 0..s.dim(0) * s.dim(1) {
            let mut acc = T::zero();
            for &v in &src[n.off + p * hw..n.off + (p + 1) * hw] {
                acc += v;
            }
            dst[p] = acc * inv;
        }
        self.push(Op::GlobalAvgPool, shape, off, &[x])
    }
}

/// Fast VJP.
pub(crate) fn backward<T: Float>(t: &mut Inner<T>, i: usize) {
    let n = t.nodes[i];
    if matches!(n.op, Op::GroupNorm { .. }) {
        return norm::backward(t, i);
    }
    let xn = t.nodes[n.inputs[0] as usize];
    let Inner {
        grads,
        vals,
        scratch,
        scratch2,
        nodes,
        assign,
        goff,
        ..
    } = t;
    let (lo, gy) = split_grad(grads, goff, &n, i);
    let val = |m: &Node<T>| &vals[m.off..m.off + m.shape.len()];
    match n.op {
        Op::Conv2d { stride, pad } => {
            let wn = nodes[n.inputs[1] as usize];
            let Some(g) = geo(xn.shape, wn.shape, stride, pad) else {
                return;
            };
            let (gx, gw) = (xn.rg.then_some(xn.off), wn.rg.then_some(wn.off));
            let gxa = assign[n.inputs[0] as usize];
            conv_back(
                &g,
                val(&xn),
                val(&wn),
                gy,
                lo,
                gx,
                gw,
                gxa,
                scratch,
                scratch2,
            );
            let bi = n.inputs[2] as usize;
            if n.n_in == 3 && nodes[bi].rg {
                // ∂b[k] (+)= Σ over samples and positions of G[·, k, ·] (per channel),
                // ∂b[k, ·] (+)= Σ over samples of G[·, k, ·] (per position).
                let hw = g.ho * g.wo;
                let (bo, bl) = (nodes[bi].off, nodes[bi].shape.len());
                let db = &mut lo[bo..bo + bl];
                if assign[bi] {
                    db.fill(T::zero());
                }
                for gs in gy.chunks_exact(g.o * hw) {
                    if bl == g.o {
                        for (d, gk) in db.iter_mut().zip(gs.chunks_exact(hw)) {
                            *d += norm::lane_sum(gk, |v| v);
                        }
                    } else {
                        db.iter_mut().zip(gs).for_each(|(d, &v)| *d += v);
                    }
                }
            }
        }
        Op::Conv2dGradInput { stride, pad } => {
            // out = convᵀ(G, W) for inputs (G, W); cotangent U (x-shaped):
            // ∂G += conv(U, W), ∂W += G · col(U)ᵀ.
            let (gn, wn) = (xn, nodes[n.inputs[1] as usize]);
            let Some(g) = geo(n.shape, wn.shape, stride, pad) else {
                return;
            };
            if gn.rg {
                let d = &mut lo[gn.off..gn.off + gn.shape.len()];
                conv_fwd(&g, gy, val(&wn), None, d, true, scratch, scratch2);
            }
            if wn.rg {
                let woff = Some(wn.off);
                conv_back(
                    &g,
                    gy,
                    &[],
                    val(&gn),
                    lo,
                    None,
                    woff,
                    false,
                    scratch,
                    scratch2,
                );
            }
        }
        Op::Conv2dGradWeight { stride, pad } => {
            // out = G · col(X)ᵀ for inputs (X, G); cotangent U (w-shaped):
            // ∂X += convᵀ(G, U), ∂G += conv(X, U).
            let gn = nodes[n.inputs[1] as usize];
            let Some(g) = geo(xn.shape, n.shape, stride, pad) else {
                return;
            };
            if xn.rg {
                let xoff = Some(xn.off);
                conv_back(
                    &g,
                    &[],
                    gy,
                    val(&gn),
                    lo,
                    xoff,
                    None,
                    false,
                    scratch,
                    scratch2,
                );
            }
            if gn.rg {
                let d = &mut lo[gn.off..gn.off + gn.shape.len()];
                conv_fwd(&g, val(&xn), gy, None, d, true, scratch, scratch2);
            }
        }
        Op::AvgPool { k, stride } => {
            if !xn.rg {
                return;
            }
            let pg = Pool {
                planes: xn.shape.dim(0) * xn.shape.dim(1),
                h: xn.shape.dim(2),
                w: xn.shape.dim(3),
                ho: n.shape.dim(2),
                wo: n.shape.dim(3),
                k,
                stride,
            };
            pool_t(&pg, gy, &mut lo[xn.off..xn.off + xn.shape.len()]);
        }
        Op::AvgPoolGrad { k, stride } => {
            if !xn.rg {
                return;
            }
            // out = poolᵀ(g): its VJP is pooling the cotangent.
            let pg = Pool {
                planes: xn.shape.dim(0) * xn.shape.dim(1),
                h: n.shape.dim(2),
                w: n.shape.dim(3),
                ho: xn.shape.dim(2),
                wo: xn.shape.dim(3),
                k,
                stride,
            };
            let d = &mut lo[xn.off..xn.off + xn.shape.len()];
            let inv = T::one() / T::from_f64_const((pg.k * pg.k) as f64);
            for p in 0..pg.planes {
                for oy in 0..pg.ho {
                    for ox in 0..pg.wo {
                        let mut acc = T::zero();
                        for a in 0..pg.k {
                            let r = (p * pg.h + oy * pg.stride + a) * pg.w + ox * pg.stride;
                            for &v in &gy[r..r + pg.k] {
                                acc += v;
                            }
                        }
                        d[(p * pg.ho + oy) * pg.wo + ox] += acc * inv;
                    }
                }
            }
        }
        Op::GlobalAvgPool => {
            if !xn.rg {
                return;
            }
            let hw = xn.shape.dim(2) * xn.shape.dim(3);
            let inv = T::one() / T::from_f64_const(hw.max(1) as f64);
            let gx = &mut lo[xn.off..xn.off + xn.shape.len()];
            for (p, &g) in gy.iter().enumerate() {
                gx[p * hw..(p + 1) * hw]
                    .iter_mut()
                    .for_each(|d| *d += g * inv);
            }
        }
        _ => {}
    }
}

/// VJP as tape operations. The convolution family is closed under differentiation:
/// `conv2d`, its input gradient (a transposed convolution) and its weight gradient are
/// each bilinear, and the VJPs of each are expressed with the other two; average
/// pooling and its transpose are linear and each other's VJP.
pub(crate) fn backward_graph<T: Float>(t: &mut Inner<T>, i: usize, g: Id) -> Result<(), Error> {
    let n = t.nodes[i];
    let x = n.inputs[0];
    let sx = t.nodes[x as usize].shape;
    match n.op {
        Op::Conv2d { stride, pad } => {
            let w = n.inputs[1];
            let sw = t.nodes[w as usize].shape;
            if t.nodes[x as usize].rg {
                let v = t.conv2d_grad_input(g, w, stride, pad, (sx.dim(2), sx.dim(3)));
                t.acc_gvar(x, v);
            }
            if t.nodes[w as usize].rg {
                let v = t.conv2d_grad_weight(x, g, stride, pad, (sw.dim(2), sw.dim(3)));
                t.acc_gvar(w, v);
            }
            let b = n.inputs[2];
            if n.n_in == 3 && t.nodes[b as usize].rg {
                let sb = t.nodes[b as usize].shape;
                let o = t.nodes[w as usize].shape.dim(0);
                let [_, _, ho, wo] = dims4(n.shape);
                let cs = if sb.len() == o {
                    Shape::new(&[o, 1, 1])
                } else {
                    Shape::new(&[o, ho, wo])
                }
                .unwrap_or_default();
                let s = t.sum_to(g, cs);
                let v = t.view(s, 0, sb);
                t.acc_gvar(b, v);
            }
            Ok(())
        }
        Op::Conv2dGradInput { stride, pad } => {
            // inputs (G, W); g is x-shaped.
            let w = n.inputs[1];
            let sw = t.nodes[w as usize].shape;
            let (s, p) = (stride, pad);
            if t.nodes[x as usize].rg {
                let v = t.conv2d(g, w, s, p);
                t.acc_gvar(x, v);
            }
            if t.nodes[w as usize].rg {
                let v = t.conv2d_grad_weight(g, x, s, p, (sw.dim(2), sw.dim(3)));
                t.acc_gvar(w, v);
            }
            Ok(())
        }
        Op::Conv2dGradWeight { stride, pad } => {
            // inputs (X, G); g is w-shaped.
            let gy = n.inputs[1];
            let (s, p) = (stride, pad);
            if t.nodes[x as usize].rg {
                let v = t.conv2d_grad_input(gy, g, s, p, (sx.dim(2), sx.dim(3)));
                t.acc_gvar(x, v);
            }
            if t.nodes[gy as usize].rg {
                let v = t.conv2d(x, g, s, p);
                t.acc_gvar(gy, v);
            }
            Ok(())
        }
        Op::AvgPool { k, stride } => {
            let v = t.avg_pool_t(g, k, stride, (sx.dim(2), sx.dim(3)));
            t.acc_gvar(x, v);
            Ok(())
        }
        Op::AvgPoolGrad { k, stride } => {
            let v = t.avg_pool(g, k, stride);
            t.acc_gvar(x, v);
            Ok(())
        }
        Op::GlobalAvgPool => {
            let keep = Shape::new(&[sx.dim(0), sx.dim(1), 1, 1]).unwrap_or_default();
            let r = t.view(g, 0, keep);
            let e = t.expand(r, sx);
            let v = t.scalar_op(
                e,
                T::one() / T::from_f64_const((sx.dim(2) * sx.dim(3)).max(1) as f64),
                false,
            );
            t.acc_gvar(x, v);
            Ok(())
        }
        Op::GroupNorm { .. } => norm::backward_graph(t, i, g),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
