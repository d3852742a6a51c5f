//! `Vjp::sensitivity_rhs` (the block right-hand side of forward sensitivities, as
//! `TanhMlp` implements it) against the column-by-column JVPs, and `GradientMode::Forward`
//! through it against the generic forward paths (JVPs, explicit Jacobians), the adjoint
//! and central differences.

use adjoint::test_problems::{Mlp, SplitMix64};
use adjoint::{AdjointSolver, Dynamics, GradientMode, Method, Options, Result, Vjp};

/// The dynamics with `sensitivity_rhs` and the JVP hidden: forward sensitivities take the
/// generic explicit-Jacobian path.
struct Generic<'a, D>(&'a mut D);

impl<D: Dynamics<f64>> Dynamics<f64> for Generic<'_, D> {
    fn n_states(&self) -> usize {
        self.0.n_states()
    }
    fn n_params(&self) -> usize {
        self.0.n_params()
    }
    fn eval(&mut self, t: f64, z: &[f64], th: &[f64], out: &mut [f64]) -> Result<()> {
        self.0.eval(t, z, th, out)
    }
}

impl<D: Vjp<f64>> Vjp<f64> for Generic<'_, D> {
    fn vjp_z(&mut self, t: f64, z: &[f64], th: &[f64], a: &[f64], o: &mut [f64]) -> Result<()> {
        self.0.vjp_z(t, z, th, a, o)
    }
    fn vjp_theta(&mut self, t: f64, z: &[f64], th: &[f64], a: &[f64], o: &mut [f64]) -> Result<()> {
        self.0.vjp_theta(t, z, th, a, o)
    }
    fn vjp_t(&mut self, t: f64, z: &[f64], th: &[f64], a: &[f64]) -> Result<f64> {
        self.0.vjp_t(t, z, th, a)
    }
}

fn rel(a: &[f64], b: &[f64]) -> f64 {
    let scale = b.iter().fold(0.0f64, |m, x| m.max(x.abs())).max(1e-300);
    a.iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()))
        / scale
}

/// Block right-hand side = eval and one JVP per column (unit θ tangent for the first
/// `P` columns, none for the last `n`), for planar (unrolled) and 3-d rows, with and
/// without the time input, two and three hidden layers.
#[test]
fn block_rhs_matches_columnwise_jvps() {
    for (widths, batch, time_input) in [
        (vec![2, 5, 4, 2], 3, true),
        (vec![2, 6, 2], 4, false),
        (vec![3, 4, 5, 4, 3], 2, true),
        (vec![3, 7, 3], 1, false),
    ] {
        let mut mlp = Mlp::<f64>::new(&widths, batch, time_input).unwrap();
        assert!(mlp.has_sensitivity_rhs());
        let (n, p) = (mlp.n_states(), mlp.n_params());
        let theta = mlp.init_params(7, 1.3);
        let mut rng = SplitMix64::new(11);
        let z: Vec<f64> = (0..n).map(|_| rng.uniform_pm1()).collect();
        let s: Vec<f64> = (0..n * (p + n)).map(|_| rng.uniform_pm1()).collect();
        let t = 0.37;
        let (mut f, mut ds) = (vec![0.0; n], vec![0.0; n * (p + n)]);
        mlp.sensitivity_rhs(t, &z, &theta, &s, &mut f, &mut ds)
            .unwrap();
        let mut f_ref = vec![0.0; n];
        mlp.eval(t, &z, &theta, &mut f_ref).unwrap();
        assert!(rel(&f, &f_ref) < 1e-14, "{widths:?}: f differs");
        let mut e = vec![0.0; p];
        let mut col = vec![0.0; n];
        for c in 0..p + n {
            if c < p {
                e[c] = 1.0;
            }
            mlp.jvp(t, &z, &theta, &s[c * n..(c + 1) * n], &e, &mut col)
                .unwrap();
            if c < p {
                e[c] = 0.0;
            }
            let got = &ds[c * n..(c + 1) * n];
            assert!(
                rel(got, &col) < 1e-13,
                "{widths:?} batch {batch} column {c}: {got:?} vs {col:?}"
            );
        }
    }
}

fn loss(n: usize) -> impl FnMut(&[f64], &mut [f64]) -> f64 {
    move |zs, dl| {
        let zt = &zs[zs.len() - n..];
        let len = dl.len();
        for (o, z) in dl[len - n..].iter_mut().zip(zt) {
            *o = 2.0 * z / n as f64;
        }
        zt.iter().map(|z| z * z).sum::<f64>() / n as f64
    }
}

fn gradient<D: Vjp<f64>>(
    d: &mut D,
    mode: GradientMode<f64>,
    z0: &[f64],
    theta: &[f64],
    ts: &[f64],
) -> (f64, Vec<f64>, Vec<f64>, adjoint::GradStats) {
    let mut s = AdjointSolver::new(Method::Dopri5, Options::with_tol(1e-10, 1e-10)).with_mode(mode);
    let (l, g) = s.value_and_grad(d, z0, theta, ts, loss(z0.len())).unwrap();
    (l, g.theta, g.z0, s.stats())
}

/// `GradientMode::Forward` through the block right-hand side equals the generic forward
/// paths to round-off (the same steps: the sensitivities agree to round-off, so the error
/// norm does), and matches the checkpointed adjoint and central differences.
#[test]
fn forward_block_matches_generic_paths_adjoint_and_fd() {
    let mut mlp = Mlp::<f64>::new(&[2, 6, 5, 2], 3, true).unwrap();
    let theta = mlp.init_params(3, 1.5);
    let mut rng = SplitMix64::new(5);
    let z0: Vec<f64> = (0..6).map(|_| rng.uniform_pm1()).collect();
    let ts = [0.0, 0.7, 1.4];
    let (l, g_block, gz_block, st_block) =
        gradient(&mut mlp, GradientMode::Forward, &z0, &theta, &ts);
    let (_, g_jvp, gz_jvp, st_jvp) = gradient(&mut mlp, GradientMode::ForwardJvp, &z0, &theta, &ts);
    let (_, g_jac, gz_jac, st_jac) = gradient(
        &mut Generic(&mut mlp),
        GradientMode::Forward,
        &z0,
        &theta,
        &ts,
    );
    let (_, g_adj, gz_adj, _) = gradient(&mut mlp, GradientMode::checkpointed(), &z0, &theta, &ts);
    // The block path spends neither JVPs nor VJPs; the others their columns.
    assert_eq!((st_block.jvp, st_block.backward_vjp), (0, 0));
    let (n, p) = (z0.len(), theta.len());
    assert_eq!(st_jvp.jvp, st_jvp.forward.nfe * (p + n));
    assert_eq!(st_jac.backward_vjp, st_jac.forward.nfe * n);
    assert_eq!(st_block.forward, st_jvp.forward);
    assert_eq!(st_block.forward, st_jac.forward);
    for (name, g, gz) in [("jvp", &g_jvp, &gz_jvp), ("jacobian", &g_jac, &gz_jac)] {
        assert!(
            rel(&g_block, g) < 1e-11,
            "θ vs {name}: {}",
            rel(&g_block, g)
        );
        assert!(
            rel(&gz_block, gz) < 1e-11,
            "z0 vs {name}: {}",
            rel(&gz_block, gz)
        );
    }
    assert!(
        rel(&g_block, &g_adj) < 1e-7,
        "θ vs adjoint: {}",
        rel(&g_block, &g_adj)
    );
    assert!(
        rel(&gz_block, &gz_adj) < 1e-7,
        "z0 vs adjoint: {}",
        rel(&gz_block, &gz_adj)
    );
    // Central differences on a few parameters (step ε^{1/3}).
    let h = f64::EPSILON.cbrt();
    let mut s = AdjointSolver::new(Method::Dopri5, Options::with_tol(1e-12, 1e-12));
    let mut value = |th: &[f64]| {
        let zs = s.forward(&mut mlp, &z0, th, &ts).unwrap().to_vec();
        let mut dl = vec![0.0; zs.len()];
        loss(z0.len())(&zs, &mut dl)
    };
    assert!((value(&theta) - l).abs() < 1e-8 * l.abs().max(1.0));
    let scale = g_block.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    for j in [0, 5, 13, 20, p - 7, p - 1] {
        let mut tp = theta.clone();
        tp[j] += h;
        let up = value(&tp);
        tp[j] -= 2.0 * h;
        let down = value(&tp);
        let fd = (up - down) / (2.0 * h);
        assert!(
            (fd - g_block[j]).abs() < 1e-6 * scale,
            "θ_{j}: fd {fd} vs forward {}",
            g_block[j]
        );
    }
}

/// The hand-written VJP (faer's products for f32/f64) agrees between f32 and f64 and with
/// the JVP by the duality `uᵀ (J v) = (Jᵀ u)ᵀ v`.
#[test]
fn vjp_jvp_duality_f64_and_f32() {
    let widths = [2, 33, 17, 2];
    let batch = 5;
    let mut m64 = Mlp::<f64>::new(&widths, batch, true).unwrap();
    let mut m32 = Mlp::<f32>::new(&widths, batch, true).unwrap();
    let (n, p) = (m64.n_states(), m64.n_params());
    let th = m64.init_params(9, 1.0);
    let mut rng = SplitMix64::new(3);
    let z: Vec<f64> = (0..n).map(|_| rng.uniform_pm1()).collect();
    let u: Vec<f64> = (0..n).map(|_| rng.uniform_pm1()).collect();
    let vz: Vec<f64> = (0..n).map(|_| rng.uniform_pm1()).collect();
    let vth: Vec<f64> = (0..p).map(|_| rng.uniform_pm1()).collect();
    let (mut gz, mut gth, mut jv) = (vec![0.0; n], vec![0.0; p], vec![0.0; n]);
    let t = 0.2;
    m64.vjp(t, &z, &th, &u, &mut gz, &mut gth).unwrap();
    m64.jvp(t, &z, &th, &vz, &vth, &mut jv).unwrap();
    let lhs: f64 = u.iter().zip(&jv).map(|(a, b)| a * b).sum();
    let rhs: f64 = gz.iter().zip(&vz).map(|(a, b)| a * b).sum::<f64>()
        + gth.iter().zip(&vth).map(|(a, b)| a * b).sum::<f64>();
    assert!(
        (lhs - rhs).abs() < 1e-12 * lhs.abs().max(1.0),
        "{lhs} vs {rhs}"
    );
    let f32s = |v: &[f64]| v.iter().map(|x| *x as f32).collect::<Vec<f32>>();
    let (mut gz32, mut gth32) = (vec![0.0f32; n], vec![0.0f32; p]);
    m32.vjp(
        t as f32,
        &f32s(&z),
        &f32s(&th),
        &f32s(&u),
        &mut gz32,
        &mut gth32,
    )
    .unwrap();
    let up = |v: &[f32]| v.iter().map(|x| *x as f64).collect::<Vec<f64>>();
    assert!(rel(&up(&gz32), &gz) < 1e-4);
    assert!(rel(&up(&gth32), &gth) < 1e-4);
}

/// `TapeDynamics::jacobians` (one recording, one reverse pass per output) equals the rows
/// of `n` separate VJPs, and its Jacobians match `TanhMlp`'s on the same network.
#[test]
fn tape_jacobians_match_vjps() {
    let (d, h, batch) = (2, 5, 3);
    let widths = [d, h, h, d];
    let mut mlp = Mlp::<f64>::new(&widths, batch, false).unwrap();
    let p = mlp.n_params();
    let mut tape = adjoint::TapeDynamics::new(&[batch, d], p, move |_tape, _t, z, th| {
        let (o1, o2) = (d * h + h, d * h + h + h * h + h);
        let a = (z.matmul(th.view(0, &[d, h])) + th.view(d * h, &[h])).tanh();
        let a = (a.matmul(th.view(o1, &[h, h])) + th.view(o1 + h * h, &[h])).tanh();
        a.matmul(th.view(o2, &[h, d])) + th.view(o2 + h * d, &[d])
    })
    .unwrap();
    assert!(tape.has_jacobians());
    let n = batch * d;
    let theta = mlp.init_params(2, 1.2);
    let mut rng = SplitMix64::new(4);
    let z: Vec<f64> = (0..n).map(|_| rng.uniform_pm1()).collect();
    let (mut jz, mut jth) = (vec![0.0; n * n], vec![0.0; n * p]);
    tape.jacobians(0.1, &z, &theta, &mut jz, &mut jth).unwrap();
    let mut e = vec![0.0; n];
    let (mut gz, mut gth) = (vec![0.0; n], vec![0.0; p]);
    for r in 0..n {
        e[r] = 1.0;
        mlp.vjp(0.1, &z, &theta, &e, &mut gz, &mut gth).unwrap();
        e[r] = 0.0;
        assert!(
            rel(&jz[r * n..(r + 1) * n], &gz) < 1e-13,
            "row {r} of ∂f/∂z"
        );
        assert!(
            rel(&jth[r * p..(r + 1) * p], &gth) < 1e-13,
            "row {r} of ∂f/∂θ"
        );
        // Rows of other batch members do not depend on this one: block-diagonal ∂f/∂z.
        let b = r / d;
        for (q, v) in jz[r * n..(r + 1) * n].iter().enumerate() {
            if q / d != b {
                assert_eq!(*v, 0.0);
            }
        }
    }
}

/// Wrong buffer lengths are errors, not panics.
#[test]
fn wrong_lengths_are_errors() {
    let mut mlp = Mlp::<f64>::new(&[2, 3, 2], 2, false).unwrap();
    let (n, p) = (mlp.n_states(), mlp.n_params());
    let theta = mlp.init_params(1, 1.0);
    let z = vec![0.1; n];
    let mut f = vec![0.0; n];
    let s = vec![0.0; n * (p + n)];
    let mut short = vec![0.0; n * (p + n) - 1];
    let r = mlp.sensitivity_rhs(0.0, &z, &theta, &s, &mut f, &mut short);
    assert!(
        matches!(r, Err(adjoint::Error::LengthMismatch { .. })),
        "{r:?}"
    );
    let r = mlp.sensitivity_rhs(0.0, &z[1..], &theta, &s, &mut f, &mut short);
    assert!(
        matches!(r, Err(adjoint::Error::LengthMismatch { .. })),
        "{r:?}"
    );
    let mut tape =
        adjoint::TapeDynamics::new(&[2, 2], 2, |_tape, _t, z, th| z * th.view(0, &[2])).unwrap();
    let (mut jz, mut jth) = (vec![0.0; 16], vec![0.0; 7]);
    let r = tape.jacobians(0.0, &[0.1; 4], &[1.0, 2.0], &mut jz, &mut jth);
    assert!(
        matches!(r, Err(adjoint::Error::LengthMismatch { .. })),
        "{r:?}"
    );
}
