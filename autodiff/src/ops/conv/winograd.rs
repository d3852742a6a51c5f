//! Winograd F(2×2, 3×3) convolutions (stride 1, 3×3 kernel, padding 1): each 2×2 block
//! of output positions (a *tile*) is computed from the 4×4 block of the zero-padded input
//! under it with 16 multiplies per (input channel, output channel) instead of 36.
//!
//! 1-D F(2, 3): `y = Aᵀ [(G g) ⊙ (Bᵀ d)]` for a 3-tap correlation `g` over 4 inputs `d`,
//! with `Bᵀ = [[1,0,−1,0],[0,1,1,0],[0,−1,1,0],[0,1,0,−1]]`,
//! `G = [[1,0,0],[½,½,½],[½,−½,½],[0,0,1]]`, `Aᵀ = [[1,1,1,0],[0,1,−1,−1]]`; 2-D by
//! nesting. Per call `U[ξ][c, o] = (G W[o, c] Gᵀ)[ξ]` (`ξ` the 16 positions of the
//! transform domain); per chunk of whole samples `V[ξ][t, c] = (Bᵀ d_t,c B)[ξ]` for every
//! tile `t` of the chunk (4×4 input block at `(2i − 1, 2j − 1)`, read from the input
//! re-laid out channels-last with a zero border rounded up to an even map, so odd maps
//! get partial last tiles), the 16 GEMMs `M[ξ] [tiles, O] = V[ξ] · U[ξ]`, and
//! `Y_t = Aᵀ M_t A` (positions past the map dropped), transposed back to `[n, O, h, w]`
//! with the bias added (`pm::scatter_t`).
//!
//! Backward, the exact transpose of that linear map: `Z_t = A ∂Y_t Aᵀ` (the gradient
//! read channels-last, zero past the map), `∂U[ξ] = Σ_chunks V[ξ]ᵀ · Z[ξ]` (in sample
//! order: results depend on the geometry only) and `∂W[o, c] += Gᵀ ∂U[o, c] G`;
//! `∂V[ξ] = Z[ξ] · U[ξ]ᵀ` and `∂X += B ∂V_t Bᵀ` added over the overlapping 4×4 input
//! blocks (the padded border dropped).
//!
//! The transforms run over channel-contiguous vectors (blocks of 16 channels, compiled
//! per vector unit by `simd_dispatch!`); the transform-domain arrays are laid out
//! `[ξ][tile][channel]` so each of the 16 products is one plain row-major GEMM.
//!
//! Round-off: the transforms add at most 4 (input), 3 (kernel) and 9 (output) terms, with
//! coefficients ±1 and ½, so F(2, 3) stays within a small factor of direct summation
//! (unlike larger tiles such as F(4, 3), whose interpolation points ±2, ±½ amplify it).
//! Measured on the ODE-Net field's convolution (64 → 64 channels, 6×6 maps, batch 64,
//! PyTorch's default initialisation, non-negative inputs) in f32 against the direct sum
//! in f64, as the largest error relative to the largest magnitude: `y` 3.2e-7, `∂x`
//! 3.4e-7, `∂w` 4.0e-7, against 4.7e-7, 8.8e-7, 3.2e-7 for the patch-major im2col + GEMM
//! (test `winograd_f32_round_off_on_the_odenet_field` of the parent module, which
//! bounds it by 2e-6: about 17 ulp of the largest value).

use super::Geo;
use super::pm::{grow, scatter_t, to_hwc_ext};
use crate::Float;

/// Target size, in elements, of one chunk's transformed input `V` (`16 × tiles × C`):
/// 512 KB in f32 (14 samples of 6×6 maps at 64 channels; 36 K – 128 K elements measured
/// alike per ODE-Net step, 256 K 4 %, 512 K 14 % and the whole batch 19 % slower).
pub(super) const CHUNK_ELEMS: usize = 128 * 1024;

/// Fewest channels (in and out) for which the Winograd path runs by default: per call of
/// the ODE-Net field's convolution (batch 64, value and value + VJP), 64 channels on 6×6
/// maps 1.4–1.6× faster than the patch-major path and 1.3× on 2×2 maps; 32 channels
/// 1.2–1.3× on 6×6 and even on 2×2; 16 channels 8 % slower to 7 % faster on 4×4 to
/// 14×14 maps and 22–28 % slower on the digits' 2×2 maps (table in `benches/README.md`).
pub(super) const MIN_CHANNELS: usize = 32;

/// True if Winograd F(2×2, 3×3) computes this geometry: stride 1, 3×3 kernel,
/// padding 1 (any channel count; the parent module picks by [`MIN_CHANNELS`]).
pub(super) fn fits(g: &Geo) -> bool {
    g.s == 1 && g.kh == 3 && g.kw == 3 && g.p == 1
}

/// Channels per vector block of the transforms.
const L: usize = 16;

/// Runs `f(c0)` for blocks of `L` channels, then `r(c0)` for each channel left over.
macro_rules! blocks {
    ($ch:expr, |$c0:ident| $f:expr, |$r0:ident| $r:expr) => {{
        let mut $c0 = 0;
        while $c0 + L <= $ch {
            $f;
            $c0 += L;
        }
        for $r0 in $c0..$ch {
            $r;
        }
    }};
}

/// Tiling of a map: `th × tw` tiles of 2×2 outputs; the input planes are
/// `(2th + 2) × (2tw + 2)` positions (padding 1 before, 1 or 2 after).
#[derive(Clone, Copy)]
struct Tiles {
    th: usize,
    tw: usize,
    hp: usize,
    wp: usize,
}

impl Tiles {
    fn new(g: &Geo) -> Self {
        let (th, tw) = (g.h.div_ceil(2), g.w.div_ceil(2));
        Tiles {
            th,
            tw,
            hp: 2 * th + 2,
            wp: 2 * tw + 2,
        }
    }
    fn per(&self) -> usize {
        self.th * self.tw
    }
}

/// Samples per chunk.
fn chunk(g: &Geo, t: &Tiles) -> usize {
    (CHUNK_ELEMS / (16 * t.per() * g.c.max(g.o)).max(1)).clamp(1, g.n.max(1))
}

/// `Bᵀ a` (4 → 4).
#[inline(always)]
fn bt<T: Float>(a: [T; 4]) -> [T; 4] {
    [a[0] - a[2], a[1] + a[2], a[2] - a[1], a[1] - a[3]]
}

/// `B a` (4 → 4), the transpose of [`bt`].
#[inline(always)]
fn b<T: Float>(a: [T; 4]) -> [T; 4] {
    [a[0], a[1] - a[2] + a[3], a[1] + a[2] - a[0], -a[3]]
}

/// `Aᵀ a` (4 → 2).
#[inline(always)]
fn at<T: Float>(a: [T; 4]) -> [T; 2] {
    [a[0] + a[1] + a[2], a[1] - a[2] - a[3]]
}

/// `A a` (2 → 4), the transpose of [`at`].
#[inline(always)]
fn a<T: Float>(v: [T; 2]) -> [T; 4] {
    [v[0], v[0] + v[1], v[0] - v[1], -v[1]]
}

/// `R = M D Mᵀ` for a separable 1-D map `f` (`P → Q`) on each of the `N` lanes of the
/// `P × P` blocks `d` (row-major, `d[i·P + j][lane]`): `f` over the rows' columns
/// (first index), then over the rows. Plain loops over fixed-size arrays: the lane
/// loop is vectorised.
#[inline(always)]
fn sep<T: Float, const N: usize, const P: usize, const Q: usize>(
    d: &[[T; N]; 16],
    r: &mut [[T; N]; 16],
    f: impl Fn([T; P]) -> [T; Q],
) {
    for l in 0..N {
        let mut t = [[T::zero(); P]; Q];
        for j in 0..P {
            let mut cin = [T::zero(); P];
            for (i, v) in cin.iter_mut().enumerate() {
                *v = d[i * P + j][l];
            }
            let col = f(cin);
            for i in 0..Q {
                t[i][j] = col[i];
            }
        }
        for (i, row) in t.iter().enumerate() {
            let v = f(*row);
            for j in 0..Q {
                r[i * Q + j][l] = v[j];
            }
        }
    }
}

/// `G k` (3 → 4).
#[inline(always)]
fn gm<T: Float>(k: [T; 3]) -> [T; 4] {
    let half = T::from_f64_const(0.5);
    [
        k[0],
        (k[0] + k[1] + k[2]) * half,
        (k[0] - k[1] + k[2]) * half,
        k[2],
    ]
}

/// `Gᵀ d` (4 → 3), the transpose of [`gm`].
#[inline(always)]
fn gt<T: Float>(d: [T; 4]) -> [T; 3] {
    let half = T::from_f64_const(0.5);
    let (s, t) = ((d[1] + d[2]) * half, (d[1] - d[2]) * half);
    [d[0] + s, t, s + d[3]]
}

/// `U[ξ][c, o] = (G W[o, c] Gᵀ)[ξ]` into `u` (`16 · C · O`).
fn kernel_tf<T: Float>(g: &Geo, w: &[T], u: &mut [T]) {
    crate::vmath::simd_dispatch!(kernel_tf_k::<T>(g: &Geo, w: &[T], u: &mut [T]) -> ())
}

#[inline(always)]
fn kernel_tf_k<T: Float>(g: &Geo, w: &[T], u: &mut [T]) {
    let (c, o) = (g.c, g.o);
    for ci in 0..c {
        blocks!(o, |o0| kernel_block::<T, L>(w, c, ci, o0, u, o), |o0| {
            kernel_block::<T, 1>(w, c, ci, o0, u, o)
        });
    }
}

/// [`kernel_tf`] for input channel `ci` and output channels `o0..o0 + N` (the lanes).
#[inline(always)]
fn kernel_block<T: Float, const N: usize>(
    w: &[T],
    c: usize,
    ci: usize,
    o0: usize,
    u: &mut [T],
    o: usize,
) {
    let mut d = [[T::zero(); N]; 16];
    for l in 0..N {
        let k = &w[((o0 + l) * c + ci) * 9..((o0 + l) * c + ci) * 9 + 9];
        for (q, &v) in k.iter().enumerate() {
            d[q][l] = v;
        }
    }
    let mut r = [[T::zero(); N]; 16];
    sep::<T, N, 3, 4>(&d, &mut r, gm);
    for (k, r) in r.iter().enumerate() {
        let at = k * c * o + ci * o + o0;
        u[at..at + N].copy_from_slice(r);
    }
}

/// `∂W[o, c] += Gᵀ ∂U[o, c] G` from `du` (`16 · C · O`), the transpose of [`kernel_tf`].
fn kernel_tf_t<T: Float>(g: &Geo, du: &[T], dw: &mut [T]) {
    crate::vmath::simd_dispatch!(kernel_tf_t_k::<T>(g: &Geo, du: &[T], dw: &mut [T]) -> ())
}

#[inline(always)]
fn kernel_tf_t_k<T: Float>(g: &Geo, du: &[T], dw: &mut [T]) {
    let (c, o) = (g.c, g.o);
    for ci in 0..c {
        blocks!(o, |o0| kernel_t_block::<T, L>(du, c, ci, o0, dw, o), |o0| {
            kernel_t_block::<T, 1>(du, c, ci, o0, dw, o)
        });
    }
}

/// [`kernel_tf_t`] for input channel `ci` and output channels `o0..o0 + N`.
#[inline(always)]
fn kernel_t_block<T: Float, const N: usize>(
    du: &[T],
    c: usize,
    ci: usize,
    o0: usize,
    dw: &mut [T],
    o: usize,
) {
    let mut d = [[T::zero(); N]; 16];
    for (k, d) in d.iter_mut().enumerate() {
        let at = k * c * o + ci * o + o0;
        d.copy_from_slice(&du[at..at + N]);
    }
    let mut r = [[T::zero(); N]; 16];
    sep::<T, N, 4, 3>(&d, &mut r, gt);
    for l in 0..N {
        let k = &mut dw[((o0 + l) * c + ci) * 9..((o0 + l) * c + ci) * 9 + 9];
        for (q, v) in k.iter_mut().enumerate() {
            *v += r[q][l];
        }
    }
}

/// `V[ξ][t, c] = (Bᵀ d B)[ξ]` for the `m·per` tiles of a chunk, from its channels-last
/// padded planes `xh` (`[m][hp][wp][C]`); `v` is `16 · tiles · C`.
fn input_tf<T: Float>(g: &Geo, t: &Tiles, xh: &[T], m: usize, v: &mut [T]) {
    crate::vmath::simd_dispatch!(input_tf_k::<T>(g: &Geo, t: &Tiles, xh: &[T], m: usize, v: &mut [T]) -> ())
}

#[inline(always)]
fn input_tf_k<T: Float>(g: &Geo, t: &Tiles, xh: &[T], m: usize, v: &mut [T]) {
    let c = g.c;
    let ld = m * t.per() * c;
    let (rs, plane) = (t.wp * c, t.hp * t.wp * c);
    for s in 0..m {
        for ty in 0..t.th {
            for tx in 0..t.tw {
                let tile = (s * t.th + ty) * t.tw + tx;
                let base = s * plane + (2 * ty * t.wp + 2 * tx) * c;
                // One row of `Bᵀ d B` at a time: each reads two input rows (`Bᵀ` has two
                // nonzeros per row) and writes four outputs, 12 streams per channel loop
                // instead of 32 (whose pointers the compiler spilled).
                for (i, (r0, r1, sg)) in ROWS.iter().enumerate() {
                    let (a0, a1) = (base + r0 * rs, base + r1 * rs);
                    let dst = i * 4 * ld + tile * c;
                    blocks!(
                        c,
                        |c0| in_row::<T, L>(xh, a0 + c0, a1 + c0, *sg, c, v, dst + c0, ld),
                        |c0| in_row::<T, 1>(xh, a0 + c0, a1 + c0, *sg, c, v, dst + c0, ld)
                    );
                }
            }
        }
    }
}

/// The rows of `Bᵀ` as `(first, second, sign)`: row `i` is `d[first] ± d[second]`
/// (`+` if `sign`).
const ROWS: [(usize, usize, bool); 4] = [(0, 2, false), (1, 2, true), (2, 1, false), (1, 3, false)];

/// Row `i` of `Bᵀ d B` for `N` channels: `e = d[a0 row] ± d[a1 row]` (4 positions at
/// stride `cs`), then `Bᵀ e` stored at `dst + j·ld`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn in_row<T: Float, const N: usize>(
    xh: &[T],
    a0: usize,
    a1: usize,
    plus: bool,
    cs: usize,
    v: &mut [T],
    dst: usize,
    ld: usize,
) {
    let mut e = [[T::zero(); N]; 4];
    for (j, e) in e.iter_mut().enumerate() {
        let (p, q) = (
            &xh[a0 + j * cs..a0 + j * cs + N],
            &xh[a1 + j * cs..a1 + j * cs + N],
        );
        for l in 0..N {
            e[l] = if plus { p[l] + q[l] } else { p[l] - q[l] };
        }
    }
    let mut r = [[T::zero(); N]; 4];
    for l in 0..N {
        let o = bt([e[0][l], e[1][l], e[2][l], e[3][l]]);
        for j in 0..4 {
            r[j][l] = o[j];
        }
    }
    for (j, r) in r.iter().enumerate() {
        v[dst + j * ld..dst + j * ld + N].copy_from_slice(r);
    }
}

/// `Y_t = Aᵀ M_t A` for the tiles of a chunk, written channels-last into `ym`
/// (`[m][h·w][O]`, positions past the map dropped); `mm` is `16 · tiles · O`.
fn output_tf<T: Float>(g: &Geo, t: &Tiles, mm: &[T], m: usize, ym: &mut [T]) {
    crate::vmath::simd_dispatch!(output_tf_k::<T>(g: &Geo, t: &Tiles, mm: &[T], m: usize, ym: &mut [T]) -> ())
}

#[inline(always)]
fn output_tf_k<T: Float>(g: &Geo, t: &Tiles, mm: &[T], m: usize, ym: &mut [T]) {
    let o = g.o;
    let ld = m * t.per() * o;
    for s in 0..m {
        for ty in 0..t.th {
            for tx in 0..t.tw {
                let tile = (s * t.th + ty) * t.tw + tx;
                let (ni, nj) = ((g.h - 2 * ty).min(2), (g.w - 2 * tx).min(2));
                let base = (s * g.h * g.w + 2 * ty * g.w + 2 * tx) * o;
                let rs = g.w * o;
                blocks!(
                    o,
                    |c0| out_block::<T, L>(mm, tile * o + c0, ld, ym, base + c0, rs, o, ni, nj),
                    |c0| out_block::<T, 1>(mm, tile * o + c0, ld, ym, base + c0, rs, o, ni, nj)
                );
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn out_block<T: Float, const N: usize>(
    mm: &[T],
    mat: usize,
    ld: usize,
    ym: &mut [T],
    at0: usize,
    rs: usize,
    cs: usize,
    ni: usize,
    nj: usize,
) {
    let mut d = [[T::zero(); N]; 16];
    for (k, d) in d.iter_mut().enumerate() {
        d.copy_from_slice(&mm[k * ld + mat..k * ld + mat + N]);
    }
    let mut r = [[T::zero(); N]; 16];
    sep::<T, N, 4, 2>(&d, &mut r, at);
    for i in 0..ni {
        for j in 0..nj {
            let s = at0 + i * rs + j * cs;
            ym[s..s + N].copy_from_slice(&r[i * 2 + j]);
        }
    }
}

/// `Z_t = A ∂Y_t Aᵀ` for the tiles of a chunk, from the gradient's channels-last planes
/// `gh` (`[m][2th][2tw][O]`, zero past the map); `z` is `16 · tiles · O`.
fn grad_tf<T: Float>(g: &Geo, t: &Tiles, gh: &[T], m: usize, z: &mut [T]) {
    crate::vmath::simd_dispatch!(grad_tf_k::<T>(g: &Geo, t: &Tiles, gh: &[T], m: usize, z: &mut [T]) -> ())
}

#[inline(always)]
fn grad_tf_k<T: Float>(g: &Geo, t: &Tiles, gh: &[T], m: usize, z: &mut [T]) {
    let o = g.o;
    let ld = m * t.per() * o;
    let rs = 2 * t.tw * o;
    for s in 0..m {
        for ty in 0..t.th {
            for tx in 0..t.tw {
                let tile = (s * t.th + ty) * t.tw + tx;
                let base = ((s * 2 * t.th + 2 * ty) * 2 * t.tw + 2 * tx) * o;
                blocks!(
                    o,
                    |c0| grad_block::<T, L>(gh, base + c0, rs, o, z, tile * o + c0, ld),
                    |c0| grad_block::<T, 1>(gh, base + c0, rs, o, z, tile * o + c0, ld)
                );
            }
        }
    }
}

#[inline(always)]
fn grad_block<T: Float, const N: usize>(
    gh: &[T],
    at0: usize,
    rs: usize,
    cs: usize,
    z: &mut [T],
    zat: usize,
    ld: usize,
) {
    let mut d = [[T::zero(); N]; 16];
    for i in 0..2 {
        for j in 0..2 {
            let s = at0 + i * rs + j * cs;
            d[i * 2 + j].copy_from_slice(&gh[s..s + N]);
        }
    }
    let mut r = [[T::zero(); N]; 16];
    sep::<T, N, 2, 4>(&d, &mut r, a);
    for (k, r) in r.iter().enumerate() {
        z[k * ld + zat..k * ld + zat + N].copy_from_slice(r);
    }
}

/// `∂X_t += B ∂V_t Bᵀ` over the overlapping 4×4 input blocks of a chunk's tiles, into
/// the zeroed channels-last `dxh` (`[m][h·w][C]`, the padded border dropped); `dv` is
/// `16 · tiles · C`.
fn input_tf_t<T: Float>(g: &Geo, t: &Tiles, dv: &[T], m: usize, dxh: &mut [T]) {
    crate::vmath::simd_dispatch!(input_tf_t_k::<T>(g: &Geo, t: &Tiles, dv: &[T], m: usize, dxh: &mut [T]) -> ())
}

#[inline(always)]
fn input_tf_t_k<T: Float>(g: &Geo, t: &Tiles, dv: &[T], m: usize, dxh: &mut [T]) {
    let c = g.c;
    let ld = m * t.per() * c;
    for s in 0..m {
        for ty in 0..t.th {
            for tx in 0..t.tw {
                let tile = (s * t.th + ty) * t.tw + tx;
                // Rows 2ty − 1 .. 2ty + 3 of the map: the valid ones.
                let i0 = usize::from(ty == 0);
                let i1 = 4.min(g.h + 1 - 2 * ty);
                let j0 = usize::from(tx == 0);
                let j1 = 4.min(g.w + 1 - 2 * tx);
                let base = s * g.h * g.w;
                let pos = |i: usize, j: usize| (base + (2 * ty + i - 1) * g.w + 2 * tx + j - 1) * c;
                let r = (i0, i1, j0, j1);
                blocks!(
                    c,
                    |c0| back_block::<T, L>(dv, tile * c + c0, ld, dxh, c0, r, pos),
                    |c0| back_block::<T, 1>(dv, tile * c + c0, ld, dxh, c0, r, pos)
                );
            }
        }
    }
}

#[inline(always)]
fn back_block<T: Float, const N: usize>(
    dv: &[T],
    vat: usize,
    ld: usize,
    dxh: &mut [T],
    c0: usize,
    (i0, i1, j0, j1): (usize, usize, usize, usize),
    pos: impl Fn(usize, usize) -> usize,
) {
    let mut d = [[T::zero(); N]; 16];
    for (k, d) in d.iter_mut().enumerate() {
        d.copy_from_slice(&dv[k * ld + vat..k * ld + vat + N]);
    }
    let mut r = [[T::zero(); N]; 16];
    sep::<T, N, 4, 4>(&d, &mut r, b);
    for i in i0..i1 {
        for j in j0..j1 {
            let s = pos(i, j) + c0;
            dxh[s..s + N]
                .iter_mut()
                .zip(&r[i * 4 + j])
                .for_each(|(d, &v)| *d += v);
        }
    }
}

/// `y (+)= conv(x, w)` (`= conv(x, w) + bias` with a bias) by Winograd F(2×2, 3×3).
/// Scratch: `col` holds the channels-last input and `V`; `tmp` holds `U`, `M` and the
/// channels-last output.
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
    let t = Tiles::new(g);
    let (c, o, hw) = (g.c, g.o, g.h * g.w);
    let nb = chunk(g, &t);
    let (plane, tl) = (t.hp * t.wp * c, nb * t.per());
    let col = grow(col, nb * plane + 16 * tl * c);
    let (xh, v) = col.split_at_mut(nb * plane);
    let tmp = grow(tmp, 16 * c * o + 16 * tl * o + nb * hw * o);
    let (u, rest) = tmp.split_at_mut(16 * c * o);
    let (mm, ym) = rest.split_at_mut(16 * tl * o);
    kernel_tf(g, w, u);
    let mut s0 = 0;
    while s0 < g.n {
        let m = nb.min(g.n - s0);
        let nt = m * t.per();
        to_hwc_ext(x, c, g.h, g.w, 1, t.hp, t.wp, s0, m, xh);
        let v = &mut v[..16 * nt * c];
        input_tf(g, &t, xh, m, v);
        let mm = &mut mm[..16 * nt * o];
        for (xi, mx) in mm.chunks_exact_mut(nt * o).enumerate() {
            let (vx, ux) = (&v[xi * nt * c..], &u[xi * c * o..]);
            T::gemm(mx, nt, o, c, vx, false, ux, false, false);
        }
        let ym = &mut ym[..m * hw * o];
        output_tf(g, &t, mm, m, ym);
        scatter_t(y, ym, o, hw, s0, m, acc, bias);
        s0 += m;
    }
}

/// The VJPs of [`conv_fwd`] (see the parent's `conv_back` for the arguments): `∂W`
/// accumulated at `out[gw_off..]`, `∂X` at `out[gx_off..]` (written with `gx_assign`).
/// Scratch: `col` holds the channels-last input, `V` (then `∂V`), the channels-last
/// gradient and `Z`; `tmp` holds `U`, `∂U` and the channels-last `∂X`.
#[allow(clippy::too_many_arguments)]
pub(super) fn conv_back<T: Float>(
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
    let t = Tiles::new(g);
    let (c, o, hw) = (g.c, g.o, g.h * g.w);
    let nb = chunk(g, &t);
    let (gx, gw) = (gx_off.is_some(), gw_off.is_some());
    let (plane, gplane, tl) = (t.hp * t.wp * c, 4 * t.per() * o, nb * t.per());
    let xh_len = if gw { nb * plane } else { 0 };
    let col = grow(col, xh_len + 16 * tl * c + nb * gplane + 16 * tl * o);
    let (xh, rest) = col.split_at_mut(xh_len);
    let (v, rest) = rest.split_at_mut(16 * tl * c);
    let (gh, z) = rest.split_at_mut(nb * gplane);
    let (u_len, du_len) = (
        if gx { 16 * c * o } else { 0 },
        if gw { 16 * c * o } else { 0 },
    );
    let tmp = grow(tmp, u_len + du_len + if gx { nb * hw * c } else { 0 });
    let (u, rest) = tmp.split_at_mut(u_len);
    let (du, dxh) = rest.split_at_mut(du_len);
    if gx {
        kernel_tf(g, w, u);
    }
    let mut s0 = 0;
    while s0 < g.n {
        let m = nb.min(g.n - s0);
        let nt = m * t.per();
        to_hwc_ext(gy, o, g.h, g.w, 0, 2 * t.th, 2 * t.tw, s0, m, gh);
        let z = &mut z[..16 * nt * o];
        grad_tf(g, &t, gh, m, z);
        let v = &mut v[..16 * nt * c];
        if gw {
            // ∂U[ξ] [C, O] (+)= V[ξ]ᵀ · Z[ξ].
            to_hwc_ext(x, c, g.h, g.w, 1, t.hp, t.wp, s0, m, xh);
            input_tf(g, &t, xh, m, v);
            for (xi, dux) in du.chunks_exact_mut(c * o).enumerate() {
                let (vx, zx) = (&v[xi * nt * c..], &z[xi * nt * o..]);
                T::gemm(dux, c, o, nt, vx, true, zx, false, s0 > 0);
            }
        }
        if let Some(xo) = gx_off {
            // ∂V[ξ] [tiles, C] = Z[ξ] · U[ξ]ᵀ (over V, no longer needed).
            for (xi, dvx) in v.chunks_exact_mut(nt * c).enumerate() {
                let (zx, ux) = (&z[xi * nt * o..], &u[xi * c * o..]);
                T::gemm(dvx, nt, c, o, zx, false, ux, true, false);
            }
            let dxh = &mut dxh[..m * hw * c];
            dxh.fill(T::zero());
            input_tf_t(g, &t, v, m, dxh);
            scatter_t(&mut out[xo..], dxh, c, hw, s0, m, !gx_assign, None);
        }
        s0 += m;
    }
    if let Some(wo) = gw_off.filter(|_| g.n > 0) {
        kernel_tf_t(g, du, &mut out[wo..wo + o * c * 9]);
    }
}
