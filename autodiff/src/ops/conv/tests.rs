//! Tests of the convolution kernels (im2col, patch-major, Winograd) and of group norm
//! against direct loops over the definitions.

use super::norm::{gn_back_dispatch, gn_fwd_dispatch};
use super::*;
use crate::Tape;

/// Deterministic values in [-1, 1).
fn vals(n: usize, seed: u64) -> Vec<f64> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 11) as f64 / (1u64 << 52) as f64 - 1.0
        })
        .collect()
}

/// `y`, `∂x` and `∂w` by direct loops over the definition.
fn direct(g: &Geo, x: &[f64], w: &[f64], gy: &[f64]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut y = vec![0.0; g.n * g.o * g.ho * g.wo];
    let (mut gx, mut gw) = (vec![0.0; x.len()], vec![0.0; w.len()]);
    for b in 0..g.n {
        for o in 0..g.o {
            for i in 0..g.ho {
                for j in 0..g.wo {
                    let yi = ((b * g.o + o) * g.ho + i) * g.wo + j;
                    for c in 0..g.c {
                        for p in 0..g.kh {
                            for q in 0..g.kw {
                                let iy = (i * g.s + p) as isize - g.p as isize;
                                let ix = (j * g.s + q) as isize - g.p as isize;
                                if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize {
                                    continue;
                                }
                                let xi = ((b * g.c + c) * g.h + iy as usize) * g.w + ix as usize;
                                let wi = ((o * g.c + c) * g.kh + p) * g.kw + q;
                                y[yi] += w[wi] * x[xi];
                                gx[xi] += w[wi] * gy[yi];
                                gw[wi] += x[xi] * gy[yi];
                            }
                        }
                    }
                }
            }
        }
    }
    (y, gx, gw)
}

/// `y + b` for `y` `[n, o, hw]` and a bias per channel (`[o]`) or per channel and
/// position (`[o, hw]`).
fn biased(y: &[f64], b: &[f64], o: usize, hw: usize) -> Vec<f64> {
    (0..y.len())
        .map(|i| {
            y[i] + if b.len() == o {
                b[i / hw % o]
            } else {
                b[i % (o * hw)]
            }
        })
        .collect()
}

fn max_err(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .fold(0.0, |m, (u, v)| m.max((u - v).abs() / (1.0 + v.abs())))
}

/// The flipped-kernel backward (stride 1) and the col2im backward agree with each
/// other and with direct loops, on random shapes: non-square maps, kernels 1 to 5
/// (even ones too), padding 0/1/2, stride 1 and 2, several GEMM chunks, `∂x`
/// accumulated onto existing values or written over stale ones.
#[test]
fn flipped_and_col2im_backward_match_direct_loops() {
    let mut cases = 0;
    let mut flipped_cases = 0;
    for (t, &(k, p, s)) in [
        (3, 1, 1),
        (3, 0, 1),
        (3, 2, 1),
        (5, 2, 1),
        (5, 1, 1),
        (2, 1, 1),
        (2, 0, 1),
        (1, 0, 1),
        (4, 3, 1),
        (3, 1, 2),
        (3, 0, 2),
        (3, 2, 2),
        (1, 1, 1),
    ]
    .iter()
    .enumerate()
    {
        let seed = t as u64 * 7 + 1;
        let (n, c, o) = (6 + t % 4, 1 + t % 3, 2 + t % 2);
        let (h, w) = (15 + t % 5, 13 + (t * 3) % 7);
        let xs = Shape::new(&[n, c, h, w]).unwrap();
        let ws = Shape::new(&[o, c, k, k]).unwrap();
        let g = geo(xs, ws, s, p).unwrap();
        assert!(chunk(&g) < g.n, "several chunks");
        let x = vals(xs.len(), seed);
        let wt = vals(ws.len(), seed + 1);
        let gy = vals(g.n * g.o * g.ho * g.wo, seed + 2);
        let (yr, gxr, gwr) = direct(&g, &x, &wt, &gy);
        let (mut col, mut tmp) = (Vec::new(), Vec::new());
        let mut y = vec![0.5; yr.len()];
        conv_fwd(&g, &x, &wt, None, &mut y, false, &mut col, &mut tmp);
        assert!(max_err(&y, &yr) < 1e-12, "forward k{k} p{p} s{s}");
        // out = [∂w | ∂x], pre-filled: accumulate adds to it, assign overwrites it.
        let (lw, lx) = (wt.len(), x.len());
        for assign in [false, true] {
            let mut out = vec![0.25; lw + lx];
            let (gx, gw) = (Some(lw), Some(0));
            back_col2im(
                &g, &x, &wt, &gy, &mut out, gx, gw, assign, &mut col, &mut tmp,
            );
            let mut paths = vec![("col2im", out)];
            if let Some(gt) = flipped(&g) {
                flipped_cases += 1;
                let mut out = vec![0.25; lw + lx];
                let (c, t) = (&mut col, &mut tmp);
                back_flipped(&g, &gt, &x, &wt, &gy, &mut out, gx, gw, assign, c, t);
                paths.push(("flipped", out));
            }
            for (name, out) in &paths {
                let shift = |v: &[f64], by: f64| v.iter().map(|a| a + by).collect::<Vec<_>>();
                let gw_want = shift(&gwr, 0.25);
                let gx_want = shift(&gxr, if assign { 0.0 } else { 0.25 });
                let (ew, ex) = (max_err(&out[..lw], &gw_want), max_err(&out[lw..], &gx_want));
                assert!(
                    ew < 1e-12 && ex < 1e-12,
                    "{name} k{k} p{p} s{s} assign {assign}: ∂w err {ew:e}, ∂x err {ex:e}"
                );
            }
            cases += 1;
        }
    }
    assert_eq!(cases, 26);
    assert_eq!(
        flipped_cases, 18,
        "stride-1 cases with pad < k take the flipped path"
    );
}

/// The patch-major path (wide channels) against direct loops: forward (written,
/// accumulated, with a bias per channel and per position) and both backward forms
/// (flipped for stride 1, col2im otherwise), with several chunks whose last is
/// partial, and a batch of one.
#[test]
fn patch_major_paths_match_direct_loops() {
    // The 3×3, stride-1, pad-1 cases would otherwise run by Winograd.
    let prev = set_winograd(Winograd::Off);
    let mut chunked = 0;
    for (t, &(k, p, s, n)) in [
        (3, 1, 1, 13),
        (3, 0, 1, 11),
        (5, 2, 1, 7),
        (2, 1, 1, 4),
        (4, 1, 2, 25),
        (3, 1, 2, 6),
        (1, 0, 1, 3),
        (3, 1, 1, 1),
        (4, 1, 2, 1),
    ]
    .iter()
    .enumerate()
    {
        let seed = t as u64 * 11 + 3;
        let (c, o) = (16 + 4 * (t % 3), 8 + 4 * (t % 3) + t % 2);
        let (h, w) = (20 - t % 3, 17 + t % 4);
        let xs = Shape::new(&[n, c, h, w]).unwrap();
        let ws = Shape::new(&[o, c, k, k]).unwrap();
        let g = geo(xs, ws, s, p).unwrap();
        assert!(pm::applies(&g));
        let (ckk, hw) = (c * k * k, g.ho * g.wo);
        // Samples per chunk of the forward and of the backward.
        let fb = (pm::CHUNK_ELEMS / (ckk * hw)).max(1);
        let bb = match flipped(&g) {
            Some(_) => (pm::CHUNK_ELEMS / (o * k * k * h * w)).max(1),
            None => fb,
        };
        chunked += [fb, bb].iter().filter(|&&b| b < n && n % b != 0).count();
        let x = vals(xs.len(), seed);
        let wt = vals(ws.len(), seed + 1);
        let gy = vals(g.n * g.o * hw, seed + 2);
        let (yr, gxr, gwr) = direct(&g, &x, &wt, &gy);
        let (mut col, mut tmp) = (Vec::new(), Vec::new());
        let mut y = vec![0.5; yr.len()];
        conv_fwd(&g, &x, &wt, None, &mut y, false, &mut col, &mut tmp);
        assert!(max_err(&y, &yr) < 1e-12, "forward k{k} p{p} s{s}");
        conv_fwd(&g, &x, &wt, None, &mut y, true, &mut col, &mut tmp);
        let y2: Vec<f64> = yr.iter().map(|v| 2.0 * v).collect();
        assert!(
            max_err(&y, &y2) < 1e-12,
            "accumulated forward k{k} p{p} s{s}"
        );
        let (bo, bp) = (vals(o, seed + 3), vals(o * hw, seed + 4));
        for b in [&bo, &bp] {
            conv_fwd(&g, &x, &wt, Some(b), &mut y, true, &mut col, &mut tmp);
            let want = biased(&yr, b, o, hw);
            assert!(max_err(&y, &want) < 1e-12, "bias k{k} p{p} s{s}");
        }
        let (lw, lx) = (wt.len(), x.len());
        for assign in [false, true] {
            let mut out = vec![0.25; lw + lx];
            let (c_, t_) = (&mut col, &mut tmp);
            conv_back(
                &g,
                &x,
                &wt,
                &gy,
                &mut out,
                Some(lw),
                Some(0),
                assign,
                c_,
                t_,
            );
            let shift = |v: &[f64], by: f64| v.iter().map(|a| a + by).collect::<Vec<_>>();
            let gx_want = shift(&gxr, if assign { 0.0 } else { 0.25 });
            let (ew, ex) = (
                max_err(&out[..lw], &shift(&gwr, 0.25)),
                max_err(&out[lw..], &gx_want),
            );
            assert!(
                ew < 1e-12 && ex < 1e-12,
                "k{k} p{p} s{s} {assign}: {ew:e} {ex:e}"
            );
            // Each gradient alone, the other operand absent.
            let mut out = vec![0.0; lw + lx];
            let (c_, t_) = (&mut col, &mut tmp);
            conv_back(&g, &[], &wt, &gy, &mut out, Some(lw), None, assign, c_, t_);
            conv_back(&g, &x, &[], &gy, &mut out, None, Some(0), false, c_, t_);
            assert!(max_err(&out[..lw], &gwr) < 1e-12 && max_err(&out[lw..], &gxr) < 1e-12);
        }
    }
    assert!(
        chunked >= 6,
        "several chunks with a partial last one: {chunked}"
    );
    set_winograd(prev);
}

/// Round-off of Winograd F(2×2, 3×3) in f32 on the ODE-Net field's convolution (64 →
/// 64 channels, 6×6 maps, batch 64, PyTorch's default initialisation
/// `U(±1/√(9·65))`, non-negative inputs as after a ReLU), against the direct sum in
/// f64, beside the patch-major path's: the largest error of `y`, `∂x`, `∂w` relative
/// to the largest magnitude of each (quoted in `winograd.rs`).
#[test]
fn winograd_f32_round_off_on_the_odenet_field() {
    let (n, c, o, h, w) = (64, 64, 64, 6, 6);
    let xs = Shape::new(&[n, c, h, w]).unwrap();
    let g = geo(xs, Shape::new(&[o, c, 3, 3]).unwrap(), 1, 1).unwrap();
    let bound = 1.0 / (9.0 * 65.0f64).sqrt();
    let x: Vec<f64> = vals(xs.len(), 1).iter().map(|v| v.max(0.0) * 2.0).collect();
    let wt: Vec<f64> = vals(o * c * 9, 2).iter().map(|v| v * bound).collect();
    let gy = vals(n * o * h * w, 3);
    let (yr, gxr, gwr) = direct(&g, &x, &wt, &gy);
    let f = |v: &[f64]| v.iter().map(|&a| a as f32).collect::<Vec<f32>>();
    let (xf, wf, gf) = (f(&x), f(&wt), f(&gy));
    let rel = |a: &[f32], b: &[f64]| {
        let m = b.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        a.iter()
            .zip(b)
            .fold(0.0f64, |e, (&a, b)| e.max((a as f64 - b).abs()))
            / m
    };
    let mut errs = Vec::new();
    for wino in [Winograd::Always, Winograd::Off] {
        let prev = set_winograd(wino);
        let (mut col, mut tmp) = (Vec::new(), Vec::new());
        let mut y = vec![0.0f32; yr.len()];
        conv_fwd(&g, &xf, &wf, None, &mut y, false, &mut col, &mut tmp);
        let (lw, lx) = (wt.len(), x.len());
        let mut out = vec![0.0f32; lw + lx];
        let (c_, t_) = (&mut col, &mut tmp);
        conv_back(&g, &xf, &wf, &gf, &mut out, Some(lw), Some(0), true, c_, t_);
        errs.push([rel(&y, &yr), rel(&out[lw..], &gxr), rel(&out[..lw], &gwr)]);
        set_winograd(prev);
    }
    eprintln!(
        "f32 error / max |·| (y, ∂x, ∂w): Winograd {:?}, patch-major {:?}",
        errs[0], errs[1]
    );
    for k in 0..3 {
        assert!(
            errs[0][k] < WINOGRAD_F32_ERR,
            "Winograd {k}: {:e}",
            errs[0][k]
        );
    }
}

/// Bound on the f32 error of Winograd relative to the largest magnitude, on the
/// ODE-Net field (see the test above).
const WINOGRAD_F32_ERR: f64 = 2e-6;

/// Winograd F(2×2, 3×3) for one precision against direct loops (in f64): forward
/// (written, accumulated, with a bias per channel and per position) and both VJPs
/// (accumulated and assigned, together and each alone). Returns the largest error.
fn winograd_case<T: Float>(n: usize, c: usize, o: usize, h: usize, w: usize, tol: f64) -> f64 {
    let seed = (n * 1000 + c * 100 + o * 10 + h * 3 + w) as u64;
    let xs = Shape::new(&[n, c, h, w]).unwrap();
    let ws = Shape::new(&[o, c, 3, 3]).unwrap();
    let g = geo(xs, ws, 1, 1).unwrap();
    assert!(winograd::fits(&g));
    let hw = h * w;
    let (x, wt, gy) = (
        vals(xs.len(), seed),
        vals(ws.len(), seed + 1),
        vals(n * o * hw, seed + 2),
    );
    let (yr, gxr, gwr) = direct(&g, &x, &wt, &gy);
    let cv = |v: &[f64]| v.iter().map(|&a| T::from_f64_const(a)).collect::<Vec<T>>();
    let bk = |v: &[T]| v.iter().map(|a| a.to_f64_lossy()).collect::<Vec<f64>>();
    let (xt, wtt, gyt) = (cv(&x), cv(&wt), cv(&gy));
    let (mut col, mut tmp) = (Vec::new(), Vec::new());
    let mut worst: f64 = 0.0;
    let mut check = |what: &str, got: &[T], want: &[f64]| {
        let e = max_err(&bk(got), want);
        assert!(e < tol, "{what} n{n} c{c} o{o} {h}×{w}: {e:e}");
        worst = worst.max(e);
    };
    let mut y = cv(&vec![0.5; yr.len()]);
    winograd::conv_fwd(&g, &xt, &wtt, None, &mut y, false, &mut col, &mut tmp);
    check("forward", &y, &yr);
    winograd::conv_fwd(&g, &xt, &wtt, None, &mut y, true, &mut col, &mut tmp);
    check(
        "accumulated forward",
        &y,
        &yr.iter().map(|v| 2.0 * v).collect::<Vec<_>>(),
    );
    let (bo, bp) = (vals(o, seed + 3), vals(o * hw, seed + 4));
    for b in [&bo, &bp] {
        winograd::conv_fwd(
            &g,
            &xt,
            &wtt,
            Some(&cv(b)),
            &mut y,
            true,
            &mut col,
            &mut tmp,
        );
        let want = biased(&yr, b, o, hw);
        check("bias", &y, &want);
    }
    let (lw, lx) = (wt.len(), x.len());
    let shift = |v: &[f64], by: f64| v.iter().map(|a| a + by).collect::<Vec<_>>();
    for assign in [false, true] {
        let mut out = cv(&vec![0.25; lw + lx]);
        let (c_, t_) = (&mut col, &mut tmp);
        winograd::conv_back(
            &g,
            &xt,
            &wtt,
            &gyt,
            &mut out,
            Some(lw),
            Some(0),
            assign,
            c_,
            t_,
        );
        check("∂w", &out[..lw], &shift(&gwr, 0.25));
        check(
            "∂x",
            &out[lw..],
            &shift(&gxr, if assign { 0.0 } else { 0.25 }),
        );
        // Each gradient alone, the other operand absent.
        let mut out = cv(&vec![0.0; lw + lx]);
        let (c_, t_) = (&mut col, &mut tmp);
        winograd::conv_back(
            &g,
            &[],
            &wtt,
            &gyt,
            &mut out,
            Some(lw),
            None,
            assign,
            c_,
            t_,
        );
        winograd::conv_back(&g, &xt, &[], &gyt, &mut out, None, Some(0), false, c_, t_);
        check("∂w alone", &out[..lw], &gwr);
        check("∂x alone", &out[lw..], &gxr);
    }
    worst
}

/// The Winograd path against direct loops: even and odd maps (partial last tiles),
/// 1×1 and 1×2 maps, a batch of one, several chunks with a partial last one, channel
/// counts off the vector block; f64 to round-off and f32 to its precision.
#[test]
fn winograd_matches_direct_loops() {
    let shapes = [
        (3, 16, 16, 6, 6),
        (2, 17, 20, 5, 7),
        (1, 16, 18, 1, 1),
        (2, 16, 16, 1, 2),
        (1, 33, 16, 4, 3),
        (13, 32, 24, 9, 8),
        (5, 20, 17, 2, 5),
    ];
    // 9×8 maps: 5 × 4 tiles; samples per chunk at 32 channels.
    let nb = winograd::CHUNK_ELEMS / (16 * 5 * 4 * 32);
    assert!(nb < 13 && 13 % nb != 0, "several chunks, the last partial");
    for &(n, c, o, h, w) in &shapes {
        winograd_case::<f64>(n, c, o, h, w, 1e-12);
        winograd_case::<f32>(n, c, o, h, w, 2e-5);
    }
}

/// Through the tape: a conv whose input is a single-use intermediate gets its `∂x`
/// written (the `assign` bookkeeping), and the recorded `∂x` (`conv2d_grad_input`,
/// whose output is not zeroed first) is fully written, on an arena holding stale
/// values of an earlier, differently laid-out recording.
#[test]
fn conv_writes_the_gradient_of_a_single_use_input() {
    let (n, c, h, w, o, k) = (5, 3, 8, 7, 4, 3);
    let x = vals(n * c * h * w, 11);
    let wt = vals(o * c * k * k, 12);
    let gy = vals(n * o * h * w, 13);
    let xs = Shape::new(&[n, c, h, w]).unwrap();
    let g = geo(xs, Shape::new(&[o, c, k, k]).unwrap(), 1, 1).unwrap();
    let a2: Vec<f64> = x.iter().map(|v| 2.0 * v).collect();
    let (_, gar, gwr) = direct(&g, &a2, &wt, &gy);
    let gxr: Vec<f64> = gar.iter().map(|v| 2.0 * v).collect();
    let mut tape = Tape::<f64>::new();
    for pass in 0..2 {
        tape.reset();
        tape.set_recording(true);
        if pass == 0 {
            // Shifts this recording's layout and leaves large stale values behind.
            let junk = tape.leaf(&vec![1e9; 3 * x.len()], &[3 * x.len()]).unwrap();
            let j = junk.mul_scalar(3.0);
            tape.backward(j, &vec![1e9; 3 * x.len()]).unwrap();
        }
        let xv = tape.leaf(&x, &[n, c, h, w]).unwrap();
        let wv = tape.leaf(&wt, &[o, c, k, k]).unwrap();
        let a = xv.mul_scalar(2.0);
        let y = a.conv2d(wv, 1, 1);
        tape.backward(y, &gy).unwrap();
        assert!(max_err(&xv.grad().unwrap(), &gxr) < 1e-12, "pass {pass}");
        assert!(max_err(&wv.grad().unwrap(), &gwr) < 1e-12, "pass {pass}");
        let seed = tape.constant(&gy, &[n, o, h, w]).unwrap();
        tape.backward_graph(y, seed).unwrap();
        let ga = tape.gradient(a).unwrap().value().unwrap();
        assert!(max_err(&ga, &gar) < 1e-12, "recorded ∂a, pass {pass}");
        let gw = tape.gradient(wv).unwrap().value().unwrap();
        assert!(max_err(&gw, &gwr) < 1e-12, "recorded ∂w, pass {pass}");
    }
}

/// The layers' fused nodes (conv + bias, group norm + affine) against the same maths
/// as separate broadcast ops: values, fast gradients and recorded gradients, with
/// the image used once (its gradient written) and twice (accumulated).
#[test]
fn fused_bias_and_affine_match_separate_ops() {
    use crate::nn::{Conv2d, Conv2dConfig, GroupNorm, ParamStore};
    for (s, p, k) in [(1, 1, 3), (2, 1, 4), (1, 0, 2)] {
        let (n, c, h, w, o) = (3, 4, 7, 6, 6);
        let mut st = ParamStore::<f64>::new(5);
        let conv = Conv2d::new(
            &mut st,
            "c",
            Conv2dConfig::new(c, o, k).stride(s).padding(p),
        );
        let conv = conv.unwrap();
        let gn = GroupNorm::new(&mut st, "g", 3, o, 1e-5, true).unwrap();
        let np = st.n_params();
        let th0: Vec<f64> = vals(np, 3).iter().map(|v| 1.0 + v).collect();
        let x0: Vec<f64> = vals(n * c * h * w, 4).iter().map(|v| 2.0 + v).collect();
        let mut res: Vec<Vec<Vec<f64>>> = Vec::new();
        for fused in [true, false] {
            let tape = Tape::<f64>::new();
            tape.set_recording(true);
            let th = tape.leaf(&th0, &[np]).unwrap();
            let x = tape.leaf(&x0, &[n, c, h, w]).unwrap();
            let a = x.mul_scalar(1.5);
            let y = if fused {
                let y = conv.forward(th, a);
                gn.forward(th, y)
            } else {
                let wv = conv.weight().var(th);
                let bv = conv.bias().unwrap().var_as(th, &[o, 1, 1]);
                let y = a.conv2d(wv, s, p) + bv;
                let gv = gn.weight().unwrap().var_as(th, &[o, 1, 1]);
                let be = gn.bias().unwrap().var_as(th, &[o, 1, 1]);
                y.group_norm(3, 1e-5) * gv + be
            };
            let z = (y.sin() * x.sum()).sum();
            tape.backward_scalar(z).unwrap();
            let (gt, gx) = (th.grad().unwrap(), x.grad().unwrap());
            let gt2 = tape.gradient(th).unwrap();
            let gx2 = tape.gradient(x).unwrap();
            res.push(vec![
                y.value().unwrap(),
                gt,
                gx,
                gt2.value().unwrap(),
                gx2.value().unwrap(),
            ]);
        }
        for (q, name) in ["y", "∂θ", "∂x", "recorded ∂θ", "recorded ∂x"]
            .iter()
            .enumerate()
        {
            let e = max_err(&res[0][q], &res[1][q]);
            assert!(e < 1e-10, "{name} s{s} p{p} k{k}: {e}");
        }
    }
}

/// `Conv2d::forward_with_time` (time channel by linearity, bias per position)
/// against the convolution of the materialised concatenation `[t·1; x]`.
#[test]
fn time_channel_matches_concatenation() {
    use crate::nn::{Conv2d, Conv2dConfig, ParamStore};
    for (s, p, k, bias) in [(1, 1, 3, true), (2, 1, 4, true), (1, 0, 2, false)] {
        let (n, c, h, w, o) = (3, 4, 7, 6, 5);
        let mut st = ParamStore::<f64>::new(9);
        let cfg = Conv2dConfig::new(c + 1, o, k)
            .stride(s)
            .padding(p)
            .bias(bias);
        let conv = Conv2d::new(&mut st, "c", cfg).unwrap();
        let np = st.n_params();
        let th0: Vec<f64> = vals(np, 3).iter().map(|v| 1.0 + v).collect();
        let x0 = vals(n * c * h * w, 4);
        let mut res: Vec<Vec<Vec<f64>>> = Vec::new();
        for fused in [true, false] {
            let tape = Tape::<f64>::new();
            tape.set_recording(true);
            let th = tape.leaf(&th0, &[np]).unwrap();
            let x = tape.leaf(&x0, &[n, c, h, w]).unwrap();
            let t = tape.leaf(&[0.7], &[1]).unwrap();
            let a = x.tanh();
            let y = if fused {
                conv.forward_with_time(th, t, a)
            } else {
                let tt = t.reshape(&[1, 1, 1, 1]).expand(&[n, 1, h, w]);
                conv.forward(th, tape.concat(&[tt, a], 1))
            };
            let z = (y.sin() * t).sum();
            tape.backward_scalar(z).unwrap();
            let g = [th.grad().unwrap(), x.grad().unwrap(), t.grad().unwrap()];
            let mut r = vec![y.value().unwrap()];
            r.extend(g);
            for v in [th, x, t] {
                r.push(tape.gradient(v).unwrap().value().unwrap());
            }
            res.push(r);
        }
        for q in 0..res[0].len() {
            let e = max_err(&res[0][q], &res[1][q]);
            assert!(e < 1e-10, "output {q} s{s} p{p} k{k}: {e}");
        }
    }
}

/// The vectorised group-norm forward and VJP against a sequential reference.
#[test]
fn group_norm_kernels_match_sequential_sums() {
    for m in [1usize, 7, 31, 32, 33, 392] {
        let q = 3;
        let x: Vec<f64> = vals(q * m, m as u64)
            .iter()
            .map(|v| 3.0 + 2.0 * v)
            .collect();
        let g = vals(q * m, m as u64 + 5);
        let (mut y, mut st) = (vec![0.0; q * m], vec![0.0; 2 * q]);
        gn_fwd_dispatch(&x, &mut y, &mut st, m, 1e-5);
        let mut gx = vec![1.0; q * m];
        gn_back_dispatch(&g, &y, &mut gx, &st, m, false);
        for j in 0..q {
            let (xs, gs) = (&x[j * m..(j + 1) * m], &g[j * m..(j + 1) * m]);
            let mu = xs.iter().sum::<f64>() / m as f64;
            let var = xs.iter().map(|v| (v - mu) * (v - mu)).sum::<f64>() / m as f64;
            let r = 1.0 / (var + 1e-5).sqrt();
            let yr: Vec<f64> = xs.iter().map(|v| (v - mu) * r).collect();
            let mg = gs.iter().sum::<f64>() / m as f64;
            let mgy = gs.iter().zip(&yr).map(|(a, b)| a * b).sum::<f64>() / m as f64;
            for i in 0..m {
                let want = 1.0 + r * (gs[i] - mg - yr[i] * mgy);
                assert!((y[j * m + i] - yr[i]).abs() < 1e-12, "y, m = {m}");
                assert!((gx[j * m + i] - want).abs() < 1e-11, "∂x, m = {m}");
            }
            assert!((st[2 * j] - mu).abs() < 1e-12 && (st[2 * j + 1] - r).abs() < 1e-9);
        }
    }
}
