//! End-to-end: MLP and conv blocks, the function-level API, errors and NaN detection.

use autodiff::{
    CustomOp, Error, Float, Shape, Tape, Var, default_gradcheck_tolerance, gradcheck, jacobian,
    jvp, vjp,
};
use std::sync::Arc;

fn vals<T: Float>(n: usize, a: f64) -> Vec<T> {
    (0..n)
        .map(|i| T::from_f64_const(((i as f64 + 1.0) * a).sin()))
        .collect()
}

/// 2 → 16 → 16 → 2 tanh MLP with all parameters in one flat leaf.
fn mlp<'t, T: Float>(z: Var<'t, T>, th: Var<'t, T>) -> Var<'t, T> {
    let (d, h) = (2, 16);
    let mut o = 0;
    let mut take = |dims: &[usize]| {
        let v = th.view(o, dims);
        o += dims.iter().product::<usize>();
        v
    };
    let (w1, b1, w2, b2, w3, b3) = (
        take(&[d, h]),
        take(&[h]),
        take(&[h, h]),
        take(&[h]),
        take(&[h, d]),
        take(&[d]),
    );
    let a = (z.matmul(w1) + b1).tanh();
    let a = (a.matmul(w2) + b2).tanh();
    a.matmul(w3) + b3
}
const N_MLP: usize = 2 * 16 + 16 + 16 * 16 + 16 + 16 * 2 + 2;

fn mlp_end_to_end<T: Float>() {
    let theta: Vec<T> = vals(N_MLP, 0.37)
        .iter()
        .map(|&v: &T| v * T::from_f64_const(0.5))
        .collect();
    let z: Vec<T> = vals(5 * 2, 0.91);
    // Gradient w.r.t. θ (with z fixed) and w.r.t. z (θ fixed) both pass gradcheck.
    let tol = default_gradcheck_tolerance::<T>();
    let a: Vec<T> = vals(10, 1.7);
    let zc = z.clone();
    let rep = gradcheck(
        move |th: Var<'_, T>| mlp(th.tape().constant(&zc, &[5, 2]).unwrap(), th),
        &theta,
        &[N_MLP],
        &a,
    )
    .unwrap();
    assert!(rep.passes(tol), "{rep:?}");
    let tc = theta.clone();
    let rep = gradcheck(
        move |z: Var<'_, T>| mlp(z, z.tape().constant(&tc, &[N_MLP]).unwrap()),
        &z,
        &[5, 2],
        &a,
    )
    .unwrap();
    assert!(rep.passes(tol), "{rep:?}");
    // Every parameter receives a gradient.
    let tape = Tape::<T>::new();
    tape.set_recording(true);
    let th = tape.leaf(&theta, &[N_MLP]).unwrap();
    let zv = tape.leaf(&z, &[5, 2]).unwrap();
    let y = mlp(zv, th);
    tape.backward(y, &a).unwrap();
    assert!(th.grad().unwrap().iter().all(|g| g.abs() > T::zero()));
    // Recording off: same values.
    let v_on = y.value().unwrap();
    let tape2 = Tape::<T>::new();
    let y2 = mlp(
        tape2.constant(&z, &[5, 2]).unwrap(),
        tape2.constant(&theta, &[N_MLP]).unwrap(),
    );
    assert_eq!(v_on, y2.value().unwrap());
    assert_eq!(tape2.backward(y2, &a), Err(Error::NotRecording));
}

#[test]
fn mlp_end_to_end_f64() {
    mlp_end_to_end::<f64>();
}
#[test]
fn mlp_end_to_end_f32() {
    mlp_end_to_end::<f32>();
}

/// ODENet-style block: conv(3x3) → group norm (affine) → softplus → conv → group norm, + skip.
fn conv_block<'t, T: Float>(x: Var<'t, T>, th: Var<'t, T>, c: usize) -> Var<'t, T> {
    let w = c * c * 9;
    let k1 = th.view(0, &[c, c, 3, 3]);
    let k2 = th.view(w, &[c, c, 3, 3]);
    let gamma = th.view(2 * w, &[c, 1, 1]);
    let beta = th.view(2 * w + c, &[c, 1, 1]);
    let h = x.conv2d(k1, 1, 1).group_norm(2, T::from_f64_const(1e-5)) * gamma + beta;
    let h = h
        .softplus()
        .conv2d(k2, 1, 1)
        .group_norm(2, T::from_f64_const(1e-5));
    h + x
}

fn conv_end_to_end<T: Float>() {
    let c = 4;
    let np = 2 * c * c * 9 + 2 * c;
    let theta: Vec<T> = vals(np, 0.53)
        .iter()
        .map(|&v: &T| v * T::from_f64_const(0.3))
        .collect();
    let x: Vec<T> = vals(2 * c * 5 * 5, 0.77);
    let a: Vec<T> = vals(2 * c * 5 * 5, 1.3);
    let tol = default_gradcheck_tolerance::<T>();
    let xc = x.clone();
    let rep = gradcheck(
        move |th: Var<'_, T>| conv_block(th.tape().constant(&xc, &[2, c, 5, 5]).unwrap(), th, c),
        &theta,
        &[np],
        &a,
    )
    .unwrap();
    assert!(rep.passes(tol), "{rep:?}");
    let tc = theta.clone();
    let rep = gradcheck(
        move |x: Var<'_, T>| conv_block(x, x.tape().constant(&tc, &[np]).unwrap(), c),
        &x,
        &[2, c, 5, 5],
        &a,
    )
    .unwrap();
    assert!(rep.passes(tol), "{rep:?}");
}

#[test]
fn conv_end_to_end_f64() {
    conv_end_to_end::<f64>();
}
#[test]
fn conv_end_to_end_f32() {
    conv_end_to_end::<f32>();
}

#[test]
fn fan_out_and_accumulation() {
    // y = x·x + 3x, used three times: dy/dx = 2x + 3
    let (v, g) = vjp(|x| x.mul(x) + x * 3.0, &[1.5, -2.0], &[2], &[1.0, 1.0]).unwrap();
    assert_eq!(v, vec![6.75, -2.0]);
    assert_eq!(g, vec![6.0, -1.0]);
    // grad_acc adds.
    let tape = Tape::<f64>::new();
    tape.set_recording(true);
    let x = tape.leaf(&[2.0], &[1]).unwrap();
    let y = x.square();
    tape.backward(y, &[1.0]).unwrap();
    let mut acc = [10.0];
    x.grad_acc(&mut acc).unwrap();
    x.grad_acc(&mut acc).unwrap();
    assert_eq!(acc, [18.0]);
}

#[test]
fn jacobian_jvp_vjp_agree() {
    let f = autodiff::func(|x: Var<'_, f64>| {
        let w = x
            .tape()
            .constant(&[0.5, -1.0, 2.0, 0.3, 0.7, -0.2], &[3, 2])
            .unwrap();
        x.reshape(&[1, 3]).matmul(w).tanh().reshape(&[2])
    });
    let x = [0.2, -0.4, 0.9];
    let (val, jac) = jacobian(f, &x, &[3]).unwrap();
    assert_eq!(val.len(), 2);
    let v = [0.3, 1.0, -0.5];
    let (_, jv) = jvp(f, &x, &[3], &v).unwrap();
    for i in 0..2 {
        let r: f64 = (0..3).map(|j| jac[i * 3 + j] * v[j]).sum();
        assert!((r - jv[i]).abs() < 1e-13, "{r} vs {}", jv[i]);
    }
    let a = [0.7, -1.1];
    let (_, va) = vjp(f, &x, &[3], &a).unwrap();
    for j in 0..3 {
        let r: f64 = (0..2).map(|i| a[i] * jac[i * 3 + j]).sum();
        assert!((r - va[j]).abs() < 1e-13);
    }
    // Jacobian against central differences.
    let h = 1e-6;
    for j in 0..3 {
        let mut xp = x;
        xp[j] += h;
        let mut xm = x;
        xm[j] -= h;
        let (fp, _) = vjp(f, &xp, &[3], &[0.0, 0.0]).unwrap();
        let (fm, _) = vjp(f, &xm, &[3], &[0.0, 0.0]).unwrap();
        for i in 0..2 {
            assert!(((fp[i] - fm[i]) / (2.0 * h) - jac[i * 3 + j]).abs() < 1e-8);
        }
    }
}

#[test]
fn hutchinson_trace_and_its_gradient() {
    // f(z) = tanh(z W), exact trace of ∂f/∂z vs εᵀ(∂f/∂z)ε averaged over all ε ∈ {±1}².
    let w = [0.8, -0.3, 0.5, 1.2];
    let z = [0.1, -0.7];
    let (_, j) = jacobian(
        |z| {
            z.reshape(&[1, 2])
                .matmul(z.tape().constant(&w, &[2, 2]).unwrap())
                .tanh()
                .reshape(&[2])
        },
        &z,
        &[2],
    )
    .unwrap();
    let tr = j[0] + j[3];
    let mut est = 0.0;
    for e in [[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]] {
        // εᵀ J ε through a recorded VJP, then differentiated w.r.t. z (FFJORD's adjoint).
        let tape = Tape::<f64>::new();
        tape.set_recording(true);
        let zv = tape.leaf(&z, &[1, 2]).unwrap();
        let wv = tape.constant(&w, &[2, 2]).unwrap();
        let y = zv.matmul(wv).tanh();
        let ev = tape.constant(&e, &[1, 2]).unwrap();
        tape.backward_graph(y, ev).unwrap();
        let ej = tape.gradient(zv).unwrap();
        let q = ej.mul(ev).sum();
        est += q.item().unwrap() / 4.0;
        tape.backward(q, &[1.0]).unwrap();
        assert!(
            zv.grad()
                .unwrap()
                .iter()
                .all(|g| g.is_finite() && *g != 0.0)
        );
    }
    assert!((est - tr).abs() < 1e-14, "{est} vs {tr}");
}

#[test]
fn sticky_errors_and_nan_detection() {
    let tape = Tape::<f64>::new();
    tape.set_recording(true);
    let a = tape.leaf(&[1.0, 2.0, 3.0], &[3]).unwrap();
    let b = tape.leaf(&[1.0, 2.0], &[2]).unwrap();
    let c = (a + b).tanh();
    match c.value() {
        Err(Error::ShapeMismatch { op: "add", .. }) => {}
        other => panic!("expected shape mismatch, got {other:?}"),
    }
    assert!(tape.backward(c, &[1.0]).is_err());
    assert!(matches!(
        tape.leaf(&[1.0], &[2]),
        Err(Error::LengthMismatch {
            expected: 2,
            found: 1,
            ..
        })
    ));
    assert!(matches!(
        Shape::new(&[1, 2, 3, 4, 5]),
        Err(Error::RankTooLarge { rank: 5 })
    ));

    let tape = Tape::<f32>::new();
    tape.set_check_finite(true);
    let x = tape.constant(&[1.0, -1.0], &[1, 2]).unwrap();
    let y = x.sqrt().sum();
    match y.item() {
        Err(Error::NonFinite(info)) => {
            assert_eq!((info.op, info.index), ("sqrt", 1));
            assert_eq!(info.output.dims(), &[1, 2]);
            assert!(info.to_string().contains("sqrt"));
        }
        other => panic!("expected NonFinite in sqrt, got {other:?}"),
    }
    let labels_err = {
        let t = Tape::<f64>::new();
        let l = t.constant(&[0.0; 6], &[2, 3]).unwrap();
        l.cross_entropy(&[0, 3]).item()
    };
    assert!(matches!(
        labels_err,
        Err(Error::LabelOutOfRange {
            row: 1,
            label: 3,
            classes: 3
        })
    ));
}

struct Cube;
impl<T: Float> CustomOp<T> for Cube {
    fn name(&self) -> &'static str {
        "cube"
    }
    fn output_shape(&self, inputs: &[Shape]) -> Result<Shape, Error> {
        Ok(inputs[0])
    }
    fn forward(&self, inputs: &[&[T]], out: &mut [T]) {
        for (o, &x) in out.iter_mut().zip(inputs[0]) {
            *o = x * x * x;
        }
    }
    fn backward(
        &self,
        _k: usize,
        inputs: &[&[T]],
        _o: &[T],
        g: &[T],
        gx: &mut [T],
    ) -> Result<(), Error> {
        for ((d, &x), &g) in gx.iter_mut().zip(inputs[0]).zip(g) {
            *d += T::from_f64_const(3.0) * x * x * g;
        }
        Ok(())
    }
    fn backward_graph<'t>(
        &self,
        _k: usize,
        inputs: &[Var<'t, T>],
        _out: Var<'t, T>,
        g: Var<'t, T>,
    ) -> Result<Var<'t, T>, Error> {
        Ok(inputs[0].square().mul(g).mul_scalar(T::from_f64_const(3.0)))
    }
}

struct NoBackward;
impl CustomOp<f64> for NoBackward {
    fn name(&self) -> &'static str {
        "nobackward"
    }
    fn output_shape(&self, inputs: &[Shape]) -> Result<Shape, Error> {
        Ok(inputs[0])
    }
    fn forward(&self, inputs: &[&[f64]], out: &mut [f64]) {
        out.copy_from_slice(inputs[0]);
    }
}

#[test]
fn custom_ops() {
    let op: Arc<dyn CustomOp<f64>> = Arc::new(Cube);
    let op2 = op.clone();
    let rep = gradcheck(
        move |x: Var<'_, f64>| x.tape().custom(&op2, &[x.sin()]),
        &[0.3, -0.8, 1.2],
        &[3],
        &[1.0, 0.5, -2.0],
    )
    .unwrap();
    assert!(rep.passes(1e-7), "{rep:?}");
    let nb: Arc<dyn CustomOp<f64>> = Arc::new(NoBackward);
    let r = vjp(
        move |x: Var<'_, f64>| x.tape().custom(&nb, &[x]),
        &[1.0],
        &[1],
        &[1.0],
    );
    assert!(matches!(
        r,
        Err(Error::BackwardNotSupported {
            op: "nobackward",
            ..
        })
    ));
    // A custom op without `backward_graph` cannot be differentiated twice: an error,
    // not a panic nor a wrong answer.
    let nb: Arc<dyn CustomOp<f64>> = Arc::new(NoBackward);
    let t = Tape::<f64>::new();
    t.set_recording(true);
    let x = t.leaf(&[1.0, 2.0], &[2]).unwrap();
    let y = t.custom(&nb, &[x]).sum();
    let one = t.constant(&[1.0], &[]).unwrap();
    assert!(matches!(
        t.backward_graph(y, one),
        Err(Error::BackwardNotSupported {
            op: "nobackward",
            ..
        })
    ));
    // With `backward_graph`: second derivatives through the custom op.
    // s = Σ (d/dx Σ cube(sin x))² = Σ (3 sin²x cos x)², checked against its own
    // gradient by central differences (gradcheck of x ↦ ∂s/∂x).
    let op3 = op.clone();
    let ds = autodiff::func(move |x: Var<'_, f64>| {
        let t = x.tape();
        let y = t.custom(&op3, &[x.sin()]).sum();
        let one = t.constant(&[1.0], &[]).unwrap();
        t.backward_graph(y, one).unwrap();
        let g = t.gradient(x).unwrap();
        g.square().sum()
    });
    let xs = [0.3, -0.8, 1.2];
    let rep = gradcheck(&ds, &xs, &[3], &[1.0]).unwrap();
    assert!(rep.passes(1e-7), "{rep:?}");
    let (_, g) = autodiff::grad(&ds, &xs, &[3]).unwrap();
    for (&x, &g) in xs.iter().zip(&g) {
        // d/dx (3 s² c)² = 2 (3 s² c) · 3 (2 s c² − s³)
        let (s, c) = (f64::sin(x), f64::cos(x));
        let e = 2.0 * (3.0 * s * s * c) * 3.0 * (2.0 * s * c * c - s * s * s);
        assert!((g - e).abs() < 1e-12, "{g} vs {e}");
    }
}

#[test]
fn hamiltonian_loss_on_dh_dx() {
    // H(q, p) = ½p² + (1 − cos q); loss = ‖∂H/∂x − target‖²; d loss/d x via grad-of-grad.
    let loss = autodiff::func(|x: Var<'_, f64>| {
        let t = x.tape();
        let h = x.narrow(0, 1, 1).square().mul_scalar(0.5) + (-x.narrow(0, 0, 1).cos() + 1.0);
        let h = h.sum();
        let one = t.constant(&[1.0], &[]).unwrap();
        t.backward_graph(h, one).unwrap();
        let dh = t.gradient(x).unwrap();
        let target = t.constant(&[0.1, 0.2], &[2]).unwrap();
        (dh - target).square().sum()
    });
    let rep = gradcheck(loss, &[0.4, -0.3], &[2], &[1.0]).unwrap();
    assert!(rep.passes(1e-7), "{rep:?}");
    // analytic: ∂H = (sin q, p); loss = (sin q − .1)² + (p − .2)²
    let (_, g) = autodiff::grad(loss, &[0.4, -0.3], &[2]).unwrap();
    let want0 = 2.0 * (0.4f64.sin() - 0.1) * 0.4f64.cos();
    let want1 = 2.0 * (-0.3 - 0.2);
    assert!(
        (g[0] - want0).abs() < 1e-14 && (g[1] - want1).abs() < 1e-14,
        "{g:?}"
    );
}

/// conv2d over several GEMM chunks (n · ho · wo > 4096) against a direct loop, forward
/// and both VJPs.
#[test]
fn conv2d_chunks_match_direct_loops() {
    for (s, p) in [(1, 1), (1, 0), (2, 1), (2, 0), (3, 2)] {
        conv_vs_direct(s, p);
    }
}

fn conv_vs_direct(s: usize, p: usize) {
    let (n, c, h, w, o, k) = (3, 2, 41, 40, 2, 3);
    let x: Vec<f64> = vals(n * c * h * w, 0.37);
    let wt: Vec<f64> = vals(o * c * k * k, 0.71);
    let (ho, wo) = ((h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1);
    let g: Vec<f64> = vals(n * o * ho * wo, 1.13);
    let tape = Tape::<f64>::new();
    tape.set_recording(true);
    let xv = tape.leaf(&x, &[n, c, h, w]).unwrap();
    let wv = tape.leaf(&wt, &[o, c, k, k]).unwrap();
    let y = xv.conv2d(wv, s, p);
    tape.backward(y, &g).unwrap();
    let (yv, gx, gw) = (y.value().unwrap(), xv.grad().unwrap(), wv.grad().unwrap());
    let mut yr = vec![0.0; yv.len()];
    let mut gxr = vec![0.0; x.len()];
    let mut gwr = vec![0.0; wt.len()];
    for b in 0..n {
        for oc in 0..o {
            for i in 0..ho {
                for j in 0..wo {
                    let yi = ((b * o + oc) * ho + i) * wo + j;
                    for ic in 0..c {
                        for a in 0..k {
                            for d in 0..k {
                                let (iy, ix) = (
                                    (i * s + a) as isize - p as isize,
                                    (j * s + d) as isize - p as isize,
                                );
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                    continue;
                                }
                                let xi = ((b * c + ic) * h + iy as usize) * w + ix as usize;
                                let wi = ((oc * c + ic) * k + a) * k + d;
                                yr[yi] += wt[wi] * x[xi];
                                gxr[xi] += wt[wi] * g[yi];
                                gwr[wi] += x[xi] * g[yi];
                            }
                        }
                    }
                }
            }
        }
    }
    let close = |a: &[f64], b: &[f64]| {
        a.iter()
            .zip(b)
            .all(|(u, v)| (u - v).abs() <= 1e-11 * (1.0 + v.abs()))
    };
    assert!(
        close(&yv, &yr) && close(&gx, &gxr) && close(&gw, &gwr),
        "stride {s} pad {p}"
    );
}

/// A function touching every op whose output buffer is not zeroed before it is written
/// (the arena reuses stale values of earlier recordings for those).
fn every_overwriting_op<'t>(x: Var<'t, f64>, img: Var<'t, f64>, w: Var<'t, f64>) -> Var<'t, f64> {
    let t = x.tape();
    let a = x.tanh() + x.sigmoid() * x.softplus() - x.exp().mul_scalar(0.1);
    let a = a + x.square().add_scalar(1.0).log() + x.sin() * x.cos() + x.relu() + x.elu(0.5);
    let a = a.add_scalar(2.0).sqrt() / x.view(0, &[4]).square().add_scalar(1.0);
    let m = a.matmul(a.transpose()).matmul_t(a, false, false);
    let c = t.concat(&[m, a.neg()], 1).narrow(1, 1, 5);
    let e = c
        .sum_axis(0)
        .reshape(&[1, 5])
        .expand(&[3, 5])
        .log_softmax()
        .pick(&[0, 4, 2]);
    let y = img.conv2d(w, 1, 1).group_norm(2, 1e-5).avg_pool2d(2, 1);
    let y = y.global_avg_pool2d().mean_axis(1).mean();
    e.sum() + c.mean() + y
}

/// Reusing a tape after a recording full of NaN and inf gives bit-identical values and
/// gradients to a fresh tape: no stale value leaks into an op's output.
#[test]
fn stale_arena_values_never_leak() {
    let x: Vec<f64> = vals(12, 0.7);
    let img: Vec<f64> = vals(2 * 4 * 5 * 5, 0.3);
    let w: Vec<f64> = vals(4 * 4 * 3 * 3, 0.9);
    let run = |tape: &mut Tape<f64>| {
        tape.reset();
        tape.set_recording(true);
        let xv = tape.leaf(&x, &[3, 4]).unwrap();
        let iv = tape.leaf(&img, &[2, 4, 5, 5]).unwrap();
        let wv = tape.leaf(&w, &[4, 4, 3, 3]).unwrap();
        let y = every_overwriting_op(xv, iv, wv);
        tape.backward_scalar(y).unwrap();
        let mut v = y.value().unwrap();
        v.extend(xv.grad().unwrap());
        v.extend(iv.grad().unwrap());
        v.extend(wv.grad().unwrap());
        v
    };
    let fresh = run(&mut Tape::new());
    assert!(fresh.iter().all(|v| v.is_finite()));
    let mut tape = Tape::new();
    for _ in 0..2 {
        // Poison: a long recording of NaN and inf values and gradients.
        tape.reset();
        tape.set_recording(true);
        let p = tape.leaf(&[f64::NAN; 4096], &[64, 64]).unwrap();
        let q = tape.full(f64::INFINITY, &[64, 64]).unwrap();
        let mut r = p;
        for _ in 0..8 {
            r = (r.matmul(q) + p).tanh().exp();
        }
        tape.backward(r, &[f64::NAN; 4096]).unwrap();
        let again = run(&mut tape);
        let same = fresh
            .iter()
            .zip(&again)
            .all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(same, "stale values changed the result");
    }
}

/// Forward-mode products (`jvp`, by the double-VJP trick) through a convolutional block
/// with pooling and group norm, against central differences of the function, and the
/// FFJORD Hutchinson term `εᵀ(∂f/∂x)ε` differentiated w.r.t. the weights.
#[test]
fn jvp_through_conv_pool_norm() {
    let w: Vec<f64> = vals::<f64>(3 * 2 * 3 * 3, 0.41)
        .iter()
        .map(|v| 0.5 * v)
        .collect();
    let wc = w.clone();
    let f = autodiff::func(move |x: Var<'_, f64>| {
        let k = x.tape().constant(&wc, &[3, 2, 3, 3]).unwrap();
        let y = x.conv2d(k, 1, 1).group_norm(1, 1e-5).tanh();
        y.avg_pool2d(2, 1).conv2d(k.reshape(&[2, 3, 3, 3]), 2, 1)
    });
    let dims = [2, 2, 5, 4];
    let x: Vec<f64> = vals(2 * 2 * 5 * 4, 0.23);
    let v: Vec<f64> = vals(x.len(), 0.67);
    let (fx, jv) = jvp(&f, &x, &dims, &v).unwrap();
    let h = 1e-5;
    let shift = |s: f64| -> Vec<f64> { x.iter().zip(&v).map(|(a, b)| a + s * b).collect() };
    let (fp, _) = vjp(&f, &shift(h), &dims, &vec![0.0; fx.len()]).unwrap();
    let (fm, _) = vjp(&f, &shift(-h), &dims, &vec![0.0; fx.len()]).unwrap();
    let mut worst = 0.0f64;
    for i in 0..fx.len() {
        let fd = (fp[i] - fm[i]) / (2.0 * h);
        worst = worst.max((fd - jv[i]).abs() / (1.0 + fd.abs()));
    }
    assert!(worst < 1e-8, "jvp vs central difference: {worst}");

    // ∂/∂W of εᵀ(∂f/∂x)ε for a two-conv block (second derivatives through conv2d).
    let eps: Vec<f64> = (0..x.len())
        .map(|i| if i % 3 == 0 { -1.0 } else { 1.0 })
        .collect();
    let xc = x.clone();
    let hutch = autodiff::func(move |wv: Var<'_, f64>| {
        let t = wv.tape();
        let xv = t.leaf(&xc, &dims).unwrap();
        let k = wv.reshape(&[3, 2, 3, 3]);
        let y = xv
            .conv2d(k, 1, 1)
            .softplus()
            .conv2d(wv.reshape(&[2, 3, 3, 3]), 1, 1);
        let e = t.constant(&eps, &dims).unwrap();
        t.backward_graph(y, e).unwrap();
        (t.gradient(xv).unwrap() * e).sum()
    });
    let rep = gradcheck(&hutch, &w, &[w.len()], &[1.0]).unwrap();
    assert!(rep.passes(default_gradcheck_tolerance::<f64>()), "{rep:?}");
}

/// Gradients of intermediate nodes: a node whose only use is an elementwise op gets its
/// gradient written (not accumulated) into a range that was not zeroed; one used only
/// after the output gets zeros. Both read correctly after a recording full of NaN.
#[test]
fn intermediate_gradients_after_poisoned_recording() {
    let mut tape = Tape::<f64>::new();
    tape.set_recording(true);
    let p = tape.leaf(&[f64::NAN; 64], &[8, 8]).unwrap();
    let y = p.tanh().matmul(p).sum();
    tape.backward(y, &[f64::NAN]).unwrap();
    tape.reset();
    let x = tape.leaf(&[0.3, -0.7, 1.1], &[3]).unwrap();
    let h = x.tanh(); // only use: the product below
    let m = h.mul_scalar(2.0); // only use: the sum
    let y = m.sum();
    let after = x.exp(); // a use of x after y: x is not assigned
    let late = after.sin(); // `after`'s only use comes after y: zeros
    tape.backward(y, &[1.0]).unwrap();
    assert_eq!(m.grad().unwrap(), vec![1.0; 3]);
    assert_eq!(h.grad().unwrap(), vec![2.0; 3]);
    let gx = x.grad().unwrap();
    for (g, v) in gx.iter().zip([0.3f64, -0.7, 1.1]) {
        assert!((g - 2.0 * (1.0 - v.tanh().powi(2))).abs() < 1e-15);
    }
    assert_eq!(after.grad().unwrap(), vec![0.0; 3]);
    assert_eq!(late.grad().unwrap(), vec![0.0; 3]);
}

#[test]
fn gradients_of_add_operands_read_in_place() {
    // `h` and `a` are each used only as the first operand of an add of their shape, so
    // their gradients are the last add's, shared rather than copied (`Inner::goff`).
    let mut tape = Tape::<f64>::new();
    tape.set_recording(true);
    let xs = [0.3, -0.7, 1.1, 0.2, -1.3, 0.5];
    let x = tape.leaf(&xs, &[2, 3]).unwrap();
    let b = tape.leaf(&[0.1, -0.2, 0.4], &[3]).unwrap();
    let h = x.tanh();
    let a = h + b;
    let c = a + x;
    let y = c.square().sum();
    tape.backward(y, &[1.0]).unwrap();
    let cv = c.value().unwrap();
    let want: Vec<f64> = cv.iter().map(|v| 2.0 * v).collect();
    assert_eq!(c.grad().unwrap(), want);
    assert_eq!(a.grad().unwrap(), want);
    assert_eq!(h.grad().unwrap(), want);
    let gb: Vec<f64> = (0..3).map(|j| want[j] + want[3 + j]).collect();
    assert_eq!(b.grad().unwrap(), gb);
    for (k, g) in x.grad().unwrap().iter().enumerate() {
        let d = want[k] * (1.0 - xs[k].tanh().powi(2)) + want[k];
        assert!((g - d).abs() < 1e-14, "{k}: {g} vs {d}");
    }
    // A second reverse pass from `a` alone: `h` now shares `a`'s gradient.
    tape.backward(a, &[1.0; 6]).unwrap();
    assert_eq!(h.grad().unwrap(), vec![1.0; 6]);
    assert_eq!(c.grad().unwrap(), vec![0.0; 6]);
    // After a reset, nodes at the same positions have no gradient until a backward.
    tape.reset();
    let x = tape.leaf(&xs, &[2, 3]).unwrap();
    let h = x.sin();
    let _ = h + x;
    assert_eq!(h.grad().unwrap(), vec![0.0; 6]);
}
