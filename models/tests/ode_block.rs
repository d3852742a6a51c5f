//! The ODE block inside networks: gradients of whole models against central differences
//! and against direct backpropagation through the solver, f32 and f64; two blocks in
//! sequence; errors; ResNet = Euler.

use adjoint::{GradientMode, Method, Options};
use autodiff::{Float, Tape, Var};
use models::ModelsError;
use models::ode_block::OdeBlock;

const B: usize = 3; // batch
const DIN: usize = 2; // input features
const D: usize = 2; // state
const H: usize = 5; // hidden width of the field
const DOUT: usize = 1; // outputs

/// Parameters of the field: [W (D×H), b (H), u (H), V (H×D), c (D)].
const P_FIELD: usize = D * H + H + H + H * D + D;

/// `f(t, z) = tanh(z W + b + t u) V + c`.
fn field<'t, T: Float>(
    _tape: &'t Tape<T>,
    t: Var<'t, T>,
    z: Var<'t, T>,
    th: Var<'t, T>,
) -> Var<'t, T> {
    let w = th.view(0, &[D, H]);
    let b = th.view(D * H, &[H]);
    let u = th.view(D * H + H, &[H]);
    let v = th.view(D * H + 2 * H, &[H, D]);
    let c = th.view(D * H + 2 * H + H * D, &[D]);
    (z.matmul(w) + b + u * t).tanh().matmul(v) + c
}

/// The field as a function pointer (a nameable type).
type Field<T> = for<'t> fn(&'t Tape<T>, Var<'t, T>, Var<'t, T>, Var<'t, T>) -> Var<'t, T>;

fn block<T: Float>(
    method: Method,
    options: Options<T>,
    mode: GradientMode<T>,
) -> Result<OdeBlock<T, Field<T>>, ModelsError> {
    Ok(OdeBlock::new(&[B, D], P_FIELD, field::<T> as Field<T>)?
        .with_solver(method, options)
        .with_mode(mode))
}

/// Which model.
#[derive(Clone, Copy, Debug)]
enum Model {
    /// tanh(x W_in + b_in) → block → tanh(· W_out + b_out) at every output time → MSE.
    Sandwich,
    /// x W_in + b_in → block 1 → (its final state) → block 2 → linear read-out → MSE,
    /// plus a penalty on block 1's states at its output times.
    TwoBlocks,
}

impl Model {
    fn n_params(self) -> usize {
        let io = DIN * D + D + D * DOUT + DOUT;
        match self {
            Model::Sandwich => io + P_FIELD,
            Model::TwoBlocks => io + 2 * P_FIELD,
        }
    }
    /// Output times: one leaf (the second block's are `ts[3..]`).
    fn times(self) -> Vec<f64> {
        match self {
            Model::Sandwich => vec![0.0, 0.4, 1.0],
            Model::TwoBlocks => vec![0.0, 0.5, 0.8, 0.8, 1.3],
        }
    }
}

/// The gradient mode and solver of every block of a model.
#[derive(Clone, Debug)]
struct Solver<T> {
    method: Method,
    options: Options<T>,
    mode: GradientMode<T>,
}

/// Loss and gradients (to the data `x`, the flat parameters, the times), as f64.
struct Eval {
    loss: f64,
    gx: Vec<f64>,
    gp: Vec<f64>,
    gts: Vec<f64>,
}

fn to<T: Float>(v: &[f64]) -> Vec<T> {
    v.iter().map(|&x| T::from_f64_const(x)).collect()
}

fn from<T: Float>(v: &[T]) -> Vec<f64> {
    v.iter().map(|x| x.to_f64_lossy()).collect()
}

fn data() -> (Vec<f64>, Vec<f64>) {
    let x = (0..B * DIN)
        .map(|i| 0.6 * ((i * 7 % 5) as f64 - 2.0) / 2.0)
        .collect();
    let target = (0..5 * B * DOUT)
        .map(|i| 0.5 * ((i * 3 % 7) as f64 - 3.0) / 3.0)
        .collect();
    (x, target)
}

fn params(model: Model) -> Vec<f64> {
    (0..model.n_params())
        .map(|i| 0.8 * (((i * 37 + 11) % 23) as f64 / 22.0 - 0.5))
        .collect()
}

fn mse<'t, T: Float>(
    tape: &'t Tape<T>,
    y: Var<'t, T>,
    target: &[f64],
) -> Result<Var<'t, T>, ModelsError> {
    let n = y.len();
    let tg = tape.constant(&to::<T>(&target[..n]), &[n / DOUT, DOUT])?;
    Ok((y - tg).square().mean())
}

fn eval<T: Float>(
    model: Model,
    s: &Solver<T>,
    x: &[f64],
    p: &[f64],
    ts: &[f64],
    grad: bool,
) -> Result<Eval, ModelsError> {
    let (_, target) = data();
    let tape = Tape::<T>::new();
    tape.set_recording(grad);
    let xv = tape.leaf(&to::<T>(x), &[B, DIN])?;
    let th = tape.leaf(&to::<T>(p), &[p.len()])?;
    let tv = tape.leaf(&to::<T>(ts), &[ts.len()])?;
    let w_in = th.view(0, &[DIN, D]);
    let b_in = th.view(DIN * D, &[D]);
    let mut off = DIN * D + D;
    let w_out = th.view(off, &[D, DOUT]);
    let b_out = th.view(off + D * DOUT, &[DOUT]);
    off += D * DOUT + DOUT;
    let b1 = block(s.method, s.options.clone(), s.mode.clone())?;
    let loss = match model {
        Model::Sandwich => {
            let z0 = (xv.matmul(w_in) + b_in).tanh();
            let zs = b1.apply(z0, th.view(off, &[P_FIELD]), tv);
            let nt = ts.len();
            let y = (zs.reshape(&[nt * B, D]).matmul(w_out) + b_out).tanh();
            mse(&tape, y, &target)?
        }
        Model::TwoBlocks => {
            let b2 = block(s.method, s.options.clone(), s.mode.clone())?;
            let z0 = xv.matmul(w_in) + b_in;
            let zs1 = b1.apply(z0, th.view(off, &[P_FIELD]), tv.view(0, &[3]));
            let z1 = b1.final_state(zs1);
            let zs2 = b2.apply(z1, th.view(off + P_FIELD, &[P_FIELD]), tv.view(3, &[2]));
            let y = zs2.reshape(&[2 * B, D]).matmul(w_out) + b_out;
            mse(&tape, y, &target)? + zs1.square().mean().mul_scalar(T::from_f64_const(0.1))
        }
    };
    let value = loss.item()?.to_f64_lossy();
    if !grad {
        return Ok(Eval {
            loss: value,
            gx: vec![],
            gp: vec![],
            gts: vec![],
        });
    }
    tape.backward(loss, &[T::one()])?;
    Ok(Eval {
        loss: value,
        gx: from(&xv.grad()?),
        gp: from(&th.grad()?),
        gts: from(&tv.grad()?),
    })
}

/// Central differences of the model in `T` (step `ε^{1/3}·max(1, |x|)`), all three inputs.
fn central<T: Float>(model: Model, s: &Solver<T>) -> Result<Eval, ModelsError> {
    let (x, _) = data();
    let (p, ts) = (params(model), model.times());
    let h = T::epsilon().to_f64_lossy().cbrt();
    let mut out = [vec![], vec![], vec![]];
    for (which, o) in out.iter_mut().enumerate() {
        let base = [&x, &p, &ts][which].clone();
        for i in 0..base.len() {
            let step = h * base[i].abs().max(1.0);
            let mut v = [x.clone(), p.clone(), ts.clone()];
            v[which][i] = base[i] + step;
            let fp = eval(model, s, &v[0], &v[1], &v[2], false)?.loss;
            v[which][i] = base[i] - step;
            let fm = eval(model, s, &v[0], &v[1], &v[2], false)?.loss;
            // The step actually taken in T.
            let taken =
                [base[i] + step, base[i] - step].map(|v| T::from_f64_const(v).to_f64_lossy());
            o.push((fp - fm) / (taken[0] - taken[1]));
        }
    }
    let [gx, gp, gts] = out;
    Ok(Eval {
        loss: eval(model, s, &x, &p, &ts, false)?.loss,
        gx,
        gp,
        gts,
    })
}

fn analytic<T: Float>(model: Model, s: &Solver<T>) -> Result<Eval, ModelsError> {
    let (x, _) = data();
    eval(model, s, &x, &params(model), &model.times(), true)
}

/// Worst error of each gradient relative to the reference's largest entry,
/// `max_i |a_i − b_i| / max_i |b_i|`, as `[x, θ, ts]`.
fn errors(a: &Eval, b: &Eval) -> [f64; 3] {
    let e = |u: &[f64], v: &[f64]| {
        assert_eq!(u.len(), v.len());
        let scale = v.iter().fold(f64::MIN_POSITIVE, |m, q| m.max(q.abs()));
        u.iter()
            .zip(v)
            .map(|(p, q)| (p - q).abs() / scale)
            .fold(0.0, f64::max)
    };
    [e(&a.gx, &b.gx), e(&a.gp, &b.gp), e(&a.gts, &b.gts)]
}

fn fmt3(e: [f64; 3]) -> String {
    format!("[{:.1e}, {:.1e}, {:.1e}]", e[0], e[1], e[2])
}

fn adaptive<T: Float>(mode: GradientMode<T>, rtol: f64) -> Solver<T> {
    Solver {
        method: Method::Dopri5,
        options: Options::with_tol(T::from_f64_const(rtol), T::from_f64_const(rtol)),
        mode,
    }
}

fn check_f64(model: Model) -> Result<(), ModelsError> {
    let fd = central(model, &adaptive::<f64>(GradientMode::Direct, 1e-12))?;
    let direct = analytic(model, &adaptive::<f64>(GradientMode::Direct, 1e-10))?;
    let ckpt = analytic(model, &adaptive::<f64>(GradientMode::checkpointed(), 1e-10))?;
    assert!((direct.loss - ckpt.loss).abs() < 1e-12);
    assert!((direct.loss - fd.loss).abs() < 1e-8);
    let (e_dir, e_ck, e_pair) = (
        errors(&direct, &fd),
        errors(&ckpt, &fd),
        errors(&ckpt, &direct),
    );
    eprintln!(
        "{model:?} f64 [x, θ, ts]: direct vs FD {}, checkpointed vs FD {}, checkpointed vs direct {}",
        fmt3(e_dir),
        fmt3(e_ck),
        fmt3(e_pair)
    );
    for e in [e_dir, e_ck, e_pair] {
        assert!(e.iter().all(|&e| e < 1e-7), "{e:?}");
    }
    Ok(())
}

fn check_f32(model: Model) -> Result<(), ModelsError> {
    // The reference: the f64 model at tight tolerances (its gradient is checked above).
    let reference = analytic(model, &adaptive::<f64>(GradientMode::Direct, 1e-10))?;
    let direct = analytic(model, &adaptive::<f32>(GradientMode::Direct, 1e-5))?;
    let ckpt = analytic(model, &adaptive::<f32>(GradientMode::checkpointed(), 1e-5))?;
    let fd = central(model, &adaptive::<f32>(GradientMode::Direct, 1e-6))?;
    let e_fd = errors(&ckpt, &fd);
    eprintln!("{model:?} f32 checkpointed vs f32 FD {}", fmt3(e_fd));
    assert!(e_fd.iter().all(|&e| e < 2e-2), "{e_fd:?}");
    let (e_dir, e_ck, e_pair) = (
        errors(&direct, &reference),
        errors(&ckpt, &reference),
        errors(&ckpt, &direct),
    );
    eprintln!(
        "{model:?} f32 [x, θ, ts]: direct vs f64 {}, checkpointed vs f64 {}, checkpointed vs direct {}",
        fmt3(e_dir),
        fmt3(e_ck),
        fmt3(e_pair)
    );
    for e in [e_dir, e_ck, e_pair] {
        assert!(e.iter().all(|&e| e < 1e-4), "{e:?}");
    }
    Ok(())
}

#[test]
fn sandwich_gradients_f64() -> Result<(), ModelsError> {
    check_f64(Model::Sandwich)
}

#[test]
fn two_blocks_gradients_f64() -> Result<(), ModelsError> {
    check_f64(Model::TwoBlocks)
}

#[test]
fn sandwich_gradients_f32() -> Result<(), ModelsError> {
    check_f32(Model::Sandwich)
}

#[test]
fn two_blocks_gradients_f32() -> Result<(), ModelsError> {
    check_f32(Model::TwoBlocks)
}

#[test]
fn block_is_send_and_sync() {
    fn assert_traits<X: Send + Sync>() {}
    assert_traits::<OdeBlock<f64, Field<f64>>>();
    assert_traits::<OdeBlock<f32, Field<f32>>>();
}

#[test]
fn pooled_solvers_repeat_the_same_result() -> Result<(), ModelsError> {
    let blk = block::<f64>(Method::Dopri5, Options::default(), GradientMode::default())?;
    let mut tape = Tape::<f64>::new();
    let mut first = None;
    for _ in 0..3 {
        tape.reset();
        tape.set_recording(true);
        let z0 = tape.leaf(&[0.1, -0.2, 0.3, 0.0, 0.5, -0.4], &[B, D])?;
        let th = tape.leaf(&params(Model::Sandwich)[..P_FIELD], &[P_FIELD])?;
        let ts = tape.constant(&[0.0, 1.0], &[2])?;
        let loss = blk.apply(z0, th, ts).square().sum();
        tape.backward(loss, &[1.0])?;
        let r = (loss.item()?, z0.grad()?, th.grad()?);
        match &first {
            None => first = Some(r),
            Some(f) => assert_eq!(f, &r),
        }
    }
    assert!(blk.stats().backward_vjp > 0);
    Ok(())
}

#[test]
fn failing_field_is_an_error() -> Result<(), ModelsError> {
    // √z of a negative state is NaN at the first evaluation.
    let blk = OdeBlock::new(&[2], 1, |_tape, _t, z: Var<'_, f64>, th| z.sqrt() * th)?;
    let tape = Tape::<f64>::new();
    tape.set_recording(true);
    let z0 = tape.leaf(&[-1.0, 1.0], &[2])?;
    let th = tape.leaf(&[1.0], &[1])?;
    let ts = tape.constant(&[0.0, 1.0], &[2])?;
    let loss = blk.apply(z0, th, ts).sum();
    let err = tape.backward(loss, &[1.0]).err();
    match &err {
        Some(autodiff::Error::CustomOpFailed { op, source }) => {
            assert_eq!(*op, "ode_block");
            let inner = source.inner().downcast_ref::<adjoint::Error>();
            assert!(inner.is_some(), "{err:?}");
        }
        _ => panic!("expected CustomOpFailed, got {err:?}"),
    }
    assert!(loss.item().is_err());
    // Wrong shapes are errors too.
    let tape = Tape::<f64>::new();
    let z0 = tape.leaf(&[1.0, 2.0, 3.0], &[3])?;
    let out = blk.apply(z0, th_of(&tape)?, tape.constant(&[0.0, 1.0], &[2])?);
    assert!(matches!(
        out.value(),
        Err(autodiff::Error::ShapeMismatch {
            op: "ode_block",
            ..
        })
    ));
    Ok(())
}

fn th_of(tape: &Tape<f64>) -> Result<Var<'_, f64>, autodiff::Error> {
    tape.leaf(&[1.0], &[1])
}

/// Output, `dL/dz0` and `dL/dθ` of one run.
type Outcome = (Vec<f64>, Vec<f64>, Vec<f64>);

/// ResNet with shared weights over `T` residual layers, `z_{k+1} = z_k + (1/T) f(t_k, z_k)`,
/// against the ODE block with Euler at step `1/T` on `[0, 1]`: same output, same
/// gradients (direct mode), and the continuous adjoint of the Euler solution nearby.
#[test]
fn resnet_is_euler() -> Result<(), ModelsError> {
    const T_LAYERS: usize = 16;
    let h = 1.0 / T_LAYERS as f64;
    let z0v = [0.3, -0.5, 0.8, 0.1, -0.2, 0.6];
    let p = params(Model::Sandwich)[..P_FIELD].to_vec();
    let target = [0.5, -0.5, 0.2, 0.0, 0.1, 0.3];
    let run = |mode: Option<GradientMode<f64>>| -> Result<Outcome, ModelsError> {
        let tape = Tape::<f64>::new();
        tape.set_recording(true);
        let z0 = tape.leaf(&z0v, &[B, D])?;
        let th = tape.leaf(&p, &[P_FIELD])?;
        let zt = match mode {
            None => {
                let mut z = z0;
                for k in 0..T_LAYERS {
                    let t = tape.constant(&[k as f64 * h], &[1])?;
                    z = z + field(&tape, t, z, th).mul_scalar(h);
                }
                z
            }
            Some(mode) => {
                let options = Options {
                    fixed_step: Some(h),
                    ..Options::default()
                };
                let blk = block(Method::Euler, options, mode)?;
                let ts = tape.constant(&[0.0, 1.0], &[2])?;
                blk.final_state(blk.apply(z0, th, ts))
            }
        };
        let tg = tape.constant(&target, &[B, D])?;
        let loss = (zt - tg).square().mean();
        tape.backward(loss, &[1.0])?;
        Ok((zt.value()?, z0.grad()?, th.grad()?))
    };
    let resnet = run(None)?;
    let direct = run(Some(GradientMode::Direct))?;
    let ckpt = run(Some(GradientMode::checkpointed()))?;
    let diff = |a: &[f64], b: &[f64]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max)
    };
    let (dz, dg0, dgp) = (
        diff(&resnet.0, &direct.0),
        diff(&resnet.1, &direct.1),
        diff(&resnet.2, &direct.2),
    );
    let (cg0, cgp) = (diff(&resnet.1, &ckpt.1), diff(&resnet.2, &ckpt.2));
    eprintln!(
        "ResNet({T_LAYERS}) vs Euler block: output {dz:.1e}, direct grads z0 {dg0:.1e} θ {dgp:.1e}; checkpointed grads z0 {cg0:.1e} θ {cgp:.1e}"
    );
    let round_off = 64.0 * f64::EPSILON;
    assert!(dz < round_off && dg0 < round_off && dgp < round_off);
    // The continuous adjoint of the Euler solution differs from its exact gradient by
    // O(h), not by round-off.
    assert!(cg0.max(cgp) < 0.1 && cg0.max(cgp) > 1e3 * round_off);
    Ok(())
}
