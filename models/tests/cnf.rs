//! Continuous normalizing flows: the change of variables against closed forms on affine
//! flows, Hutchinson's estimator against the exact trace (a statistical test), NLL
//! gradients by the adjoint against direct backpropagation and central differences,
//! a trained 2-D density integrating to one, and the Gaussian baseline on a toy density.

use adjoint::{GradientMode, Options};
use autodiff::nn::ParamStore;
use autodiff::optim::Adam;
use autodiff::{Float, Tape};
use models::Model;
use models::cnf::trace::{Probes, divergence, one_hot_seeds};
use models::cnf::{
    Activation, Cnf, CnfConfig, ConcatSquashNet, Divergence, GaussianBaseline, Noise, Rnode,
    ToyDensity,
};
use models::datasets::Batch;
use models::training::{TrainConfig, Trainer};
use rand::SeedableRng;
use rand::rngs::StdRng;

fn batch_of<T: Float>(points: &[f64]) -> Batch<T> {
    let n = points.len() / 2;
    Batch {
        images: points.iter().map(|&v| T::from_f64_const(v)).collect(),
        labels: vec![0; n],
        shape: [n, 1, 1, 2],
    }
}

/// Sets block `k`'s single concat-squash layer to the affine field
/// `ż_j = s (a_j z_j + b_j) + t h_j` (`s = σ(g)`), and its end time to `t_end`.
fn set_affine<T: Float>(
    flow: &mut Cnf<T>,
    k: usize,
    a: [f64; 2],
    b: [f64; 2],
    g: f64,
    h: [f64; 2],
    t_end: f64,
) {
    let p = flow.params_mut();
    let mut set = |name: &str, v: &[f64]| {
        let dst = p.get_mut(&format!("blocks.{k}.{name}")).expect(name);
        for (d, s) in dst.iter_mut().zip(v) {
            *d = T::from_f64_const(*s);
        }
    };
    set("net.layers.0.weight", &[a[0], 0.0, 0.0, a[1]]);
    set("net.layers.0.bias", &b);
    set("net.layers.0.gate_weight", &[0.0, 0.0]);
    set("net.layers.0.gate_bias", &[g, g]);
    set("net.layers.0.hyper_bias", &h);
    set("sqrt_end_time", &[t_end.sqrt()]);
}

/// The affine block's exact map and log-determinant: `z(T)` from `z0`, and
/// `∫ tr = T s (a_0 + a_1)`.
fn affine_closed_form(
    z0: [f64; 2],
    a: [f64; 2],
    b: [f64; 2],
    g: f64,
    h: [f64; 2],
    t: f64,
) -> ([f64; 2], f64) {
    let s = 1.0 / (1.0 + (-g).exp());
    let mut z = [0.0; 2];
    for j in 0..2 {
        let al = s * a[j];
        let e = (al * t).exp();
        z[j] = e * z0[j] + s * b[j] * (e - 1.0) / al + h[j] * (e - 1.0 - al * t) / (al * al);
    }
    (z, t * s * (a[0] + a[1]))
}

fn affine_check<T: Float>(div: Divergence, rtol: f64, tol: f64) {
    let config = CnfConfig {
        hidden: vec![],
        n_blocks: 2,
        divergence: div,
        rtol,
        atol: rtol,
        ..CnfConfig::toy()
    };
    let mut flow = Cnf::<T>::new(config).unwrap();
    let p0 = ([0.7, -0.4], [0.3, -0.2], 0.5, [0.4, 0.1], 0.6);
    let p1 = ([-0.3, 0.9], [-0.1, 0.25], -0.2, [-0.2, 0.3], 0.45);
    set_affine(&mut flow, 0, p0.0, p0.1, p0.2, p0.3, p0.4);
    set_affine(&mut flow, 1, p1.0, p1.1, p1.2, p1.3, p1.4);
    let xs = [0.5, -1.0, -0.2, 0.3, 1.5, 0.8];
    let got = flow.log_density(&xs.map(T::from_f64_const), div).unwrap();
    for (i, x) in xs.chunks_exact(2).enumerate() {
        let (z1, l1) = affine_closed_form([x[0], x[1]], p0.0, p0.1, p0.2, p0.3, p0.4);
        let (z2, l2) = affine_closed_form(z1, p1.0, p1.1, p1.2, p1.3, p1.4);
        let log_n = -(2.0 * std::f64::consts::PI).ln() - 0.5 * (z2[0] * z2[0] + z2[1] * z2[1]);
        let want = log_n + l1 + l2;
        let g = got[i].to_f64_lossy();
        assert!(
            (g - want).abs() < tol,
            "{div:?} point {i}: log p {g} vs closed form {want}"
        );
    }
    // Sampling inverts the flow: data → base (closed form) → data (solver).
    let mut zs = Vec::new();
    for x in xs.chunks_exact(2) {
        let (z1, _) = affine_closed_form([x[0], x[1]], p0.0, p0.1, p0.2, p0.3, p0.4);
        let (z2, _) = affine_closed_form(z1, p1.0, p1.1, p1.2, p1.3, p1.4);
        zs.extend(z2.map(T::from_f64_const));
    }
    let back = flow.transform_to_data(&zs).unwrap();
    for (b, x) in back.iter().zip(xs) {
        assert!((b.to_f64_lossy() - x).abs() < tol, "inverse {b:?} vs {x}");
    }
}

#[test]
fn affine_flow_matches_closed_form_f64() {
    affine_check::<f64>(Divergence::Exact, 1e-10, 1e-7);
    // For a diagonal Jacobian, Rademacher probes give the trace exactly: ε_j² = 1.
    affine_check::<f64>(Divergence::Hutchinson(Noise::Rademacher), 1e-10, 1e-7);
}

#[test]
fn affine_flow_matches_closed_form_f32() {
    affine_check::<f32>(Divergence::Exact, 1e-6, 2e-4);
    affine_check::<f32>(Divergence::Hutchinson(Noise::Rademacher), 1e-6, 2e-4);
}

/// Hutchinson's estimate at one point, `K` independent probes, against the exact trace.
/// The estimator's variance is known from the Jacobian (`½ Σ_{i≠j} (J_ij + J_ji)²` for
/// Rademacher, `½ Σ_{i,j} (J_ij + J_ji)²` for Gaussian probes); the test fails if the mean
/// is more than 5 standard errors from the trace. By the central limit theorem
/// (K = 4000) a correct estimator fails with probability about 5.7e-7 per seed (and at
/// most 4 % by Chebyshev's inequality, whatever the distribution); the sample variance
/// must also be within 25 % of the predicted one.
#[test]
fn hutchinson_matches_exact_trace_in_expectation() {
    const K: usize = 4000;
    let d = 3;
    for (noise, seed) in [(Noise::Rademacher, 11), (Noise::Gaussian, 12)] {
        let mut store = ParamStore::<f64>::new(3);
        let net = ConcatSquashNet::register(&mut store, "n", d, &[8], Activation::Tanh).unwrap();
        let z0 = [0.4, -0.7, 0.2];
        let tape = Tape::<f64>::new();
        tape.set_recording(true);
        let theta = tape
            .constant(store.as_slice(), &[store.n_params()])
            .unwrap();
        let t = tape.constant(&[0.3], &[1]).unwrap();
        // The Jacobian, row by row.
        let z1 = tape.leaf(&z0, &[1, d]).unwrap();
        let f1 = net.forward(theta, t, z1);
        let mut jac = vec![0.0; d * d];
        for i in 0..d {
            let mut e = vec![0.0; d];
            e[i] = 1.0;
            tape.backward(f1, &e).unwrap();
            z1.grad_into(&mut jac[i * d..(i + 1) * d]).unwrap();
        }
        let exact: f64 = (0..d).map(|i| jac[i * d + i]).sum();
        // The exact trace through `divergence` agrees with the Jacobian's.
        let zk: Vec<f64> = (0..K).flat_map(|_| z0).collect();
        let zv = tape.leaf(&zk, &[K, d]).unwrap();
        let fk = net.forward(theta, t, zv);
        let seeds = one_hot_seeds::<f64>(K, d);
        let ex = divergence(&tape, fk, zv, Probes::Exact(&seeds), false)
            .unwrap()
            .trace
            .value()
            .unwrap();
        assert!(
            ex.iter().all(|v| (v - exact).abs() < 1e-12),
            "exact trace {} vs {exact}",
            ex[0]
        );
        let mut eps = vec![0.0; K * d];
        noise.fill(&mut StdRng::seed_from_u64(seed), &mut eps);
        let ev = tape.constant(&eps, &[K, d]).unwrap();
        let est = divergence(&tape, fk, zv, Probes::Hutchinson(ev), false)
            .unwrap()
            .trace
            .value()
            .unwrap();
        let mean = est.iter().sum::<f64>() / K as f64;
        let var_s = est.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (K - 1) as f64;
        let mut var = 0.0;
        for i in 0..d {
            for j in 0..d {
                if i != j || noise == Noise::Gaussian {
                    var += 0.5 * (jac[i * d + j] + jac[j * d + i]).powi(2);
                }
            }
        }
        let se = (var / K as f64).sqrt();
        assert!(
            (mean - exact).abs() < 5.0 * se,
            "{noise:?}: mean {mean} vs trace {exact}, se {se}"
        );
        assert!(
            (var_s / var - 1.0).abs() < 0.25,
            "{noise:?}: variance {var_s} vs predicted {var}"
        );
    }
}

fn loss_and_grad(flow: &mut Cnf<f64>, batch: &Batch<f64>, seed: u64) -> (f64, Vec<f64>) {
    let tape = Tape::new();
    tape.set_recording(true);
    let theta = flow.params().leaf(&tape).unwrap();
    flow.reseed_noise(seed);
    let loss = flow.loss(&tape, theta, batch).unwrap();
    tape.backward_scalar(loss).unwrap();
    (loss.item().unwrap(), theta.grad().unwrap())
}

/// dL/dθ (network weights and end times of two stacked blocks) by the checkpointed
/// adjoint, by direct backpropagation through the solver and by central differences.
fn gradient_check(div: Divergence, rnode: Rnode) {
    let config = CnfConfig {
        hidden: vec![5],
        n_blocks: 2,
        divergence: div,
        rnode,
        rtol: 1e-10,
        atol: 1e-10,
        seed: 4,
        ..CnfConfig::toy()
    };
    let mut flow = Cnf::<f64>::new(config).unwrap();
    let batch = batch_of::<f64>(&[0.5, -1.0, -0.2, 0.3, 1.5, 0.8]);
    let (l_adj, g_adj) = loss_and_grad(&mut flow, &batch, 9);
    let (nfe_f, nfe_b) = flow.nfe();
    assert!(nfe_f > 0 && nfe_b > 0);
    flow.set_mode(GradientMode::Direct);
    let (l_dir, g_dir) = loss_and_grad(&mut flow, &batch, 9);
    assert!((l_adj - l_dir).abs() < 1e-12);
    let scale = g_dir.iter().fold(0.0f64, |m, g| m.max(g.abs()));
    let n = g_dir.len();
    let mut fd = vec![0.0; n];
    for i in 0..n {
        let x = flow.params().as_slice()[i];
        let h = f64::EPSILON.cbrt() * x.abs().max(1.0);
        flow.params_mut().as_mut_slice()[i] = x + h;
        let (lp, _) = loss_and_grad(&mut flow, &batch, 9);
        flow.params_mut().as_mut_slice()[i] = x - h;
        let (lm, _) = loss_and_grad(&mut flow, &batch, 9);
        flow.params_mut().as_mut_slice()[i] = x;
        fd[i] = (lp - lm) / (2.0 * h);
    }
    for i in 0..n {
        let (a, d, f) = (g_adj[i], g_dir[i], fd[i]);
        assert!(
            (a - d).abs() < 1e-6 * scale,
            "{div:?} θ[{i}]: adjoint {a} vs direct {d}"
        );
        assert!(
            (d - f).abs() < 1e-6 * scale,
            "{div:?} θ[{i}]: direct {d} vs central differences {f}"
        );
    }
    // The end times receive gradients (they are trained).
    let names: Vec<_> = flow.params().names().map(str::to_owned).collect();
    for (k, name) in names
        .iter()
        .enumerate()
        .filter(|(_, n)| n.ends_with("sqrt_end_time"))
    {
        let off = flow.params().view(name).unwrap().offset();
        assert!(g_dir[off].abs() > 0.0, "{k}: no gradient for {name}");
    }
}

#[test]
fn nll_gradient_exact_trace() {
    gradient_check(Divergence::Exact, Rnode::off());
}

#[test]
fn nll_gradient_hutchinson_with_rnode() {
    gradient_check(
        Divergence::Hutchinson(Noise::Gaussian),
        Rnode::new(0.1, 0.05).unwrap(),
    );
}

#[test]
fn nll_gradient_exact_with_rnode() {
    gradient_check(Divergence::Exact, Rnode::new(0.2, 0.1).unwrap());
}

fn train(flow: &mut Cnf<f64>, data: ToyDensity, steps: usize, batch: usize, lr: f64) -> f64 {
    let mut trainer = Trainer::new(Adam::with_lr(lr).unwrap(), TrainConfig::epochs(1).unwrap());
    let mut rng = StdRng::seed_from_u64(5);
    let mut last = f64::NAN;
    for _ in 0..steps {
        last = trainer
            .step(flow, &data.batch(batch, &mut rng))
            .unwrap()
            .loss;
    }
    last
}

/// A briefly trained flow's density integrates to one on a grid (midpoint rule over
/// [−6, 6]², where the data and base put all but ~1e-4 of their mass).
#[test]
fn trained_density_integrates_to_one() {
    let config = CnfConfig {
        hidden: vec![16, 16],
        rtol: 1e-6,
        atol: 1e-6,
        ..CnfConfig::toy()
    };
    let mut flow = Cnf::<f64>::new(config).unwrap();
    train(&mut flow, ToyDensity::EightGaussians, 15, 64, 2e-2);
    let (n, lim) = (60usize, 6.0);
    let h = 2.0 * lim / n as f64;
    let mut grid = Vec::with_capacity(2 * n * n);
    for i in 0..n {
        for j in 0..n {
            grid.push(-lim + (i as f64 + 0.5) * h);
            grid.push(-lim + (j as f64 + 0.5) * h);
        }
    }
    let logp = flow.log_density(&grid, Divergence::Exact).unwrap();
    let mass: f64 = logp.iter().map(|l| l.exp() * h * h).sum();
    assert!((mass - 1.0).abs() < 0.02, "mass {mass}");
}

/// On eight Gaussians a full-covariance Gaussian cannot fit the modes: a flow trained for
/// a few dozen steps has a lower test NLL, by the exact and by the Hutchinson estimate.
#[test]
fn trained_flow_beats_gaussian_baseline() {
    let data = ToyDensity::EightGaussians;
    let config = CnfConfig {
        hidden: vec![24, 24],
        rtol: 1e-5,
        atol: 1e-5,
        ..CnfConfig::toy()
    };
    let mut flow = Cnf::<f64>::new(config).unwrap();
    let train_pts: Vec<f64> = data.sample(2000, &mut StdRng::seed_from_u64(1));
    let test_pts: Vec<f64> = data.sample(500, &mut StdRng::seed_from_u64(2));
    let baseline = GaussianBaseline::fit(&train_pts, 2).unwrap().nll(&test_pts);
    let before = flow.nll(&test_pts, Divergence::Exact).unwrap();
    train(&mut flow, data, 60, 100, 2e-2);
    let exact = flow.nll(&test_pts, Divergence::Exact).unwrap();
    let hutch = flow
        .nll(&test_pts, Divergence::Hutchinson(Noise::Rademacher))
        .unwrap();
    assert!(
        exact < baseline && exact < before,
        "NLL {exact} (before {before}), Gaussian {baseline}"
    );
    assert!(
        (hutch - exact).abs() < 0.1,
        "Hutchinson NLL {hutch} vs exact {exact}"
    );
}

#[test]
fn bad_input_is_an_error() {
    assert!(
        Cnf::<f64>::new(CnfConfig {
            n_blocks: 0,
            ..CnfConfig::toy()
        })
        .is_err()
    );
    assert!(
        Cnf::<f64>::new(CnfConfig {
            rtol: -1.0,
            ..CnfConfig::toy()
        })
        .is_err()
    );
    assert!(
        Cnf::<f64>::new(CnfConfig {
            time_length: 0.0,
            ..CnfConfig::toy()
        })
        .is_err()
    );
    assert!(Rnode::new(-0.1, 0.0).is_err());
    assert!(ToyDensity::from_name("nope").is_err());
    let mut flow = Cnf::<f64>::new(CnfConfig {
        hidden: vec![4],
        ..CnfConfig::toy()
    })
    .unwrap();
    assert!(
        flow.log_density(&[1.0, 2.0, 3.0], Divergence::Exact)
            .is_err()
    );
    assert!(
        flow.log_density(&[1.0, f64::NAN], Divergence::Exact)
            .is_err()
    );
    let _ = Options::<f64>::default();
}

/// f32: the adjoint gradient agrees with direct backpropagation through the solver.
#[test]
fn nll_gradient_f32_adjoint_matches_direct() {
    let config = CnfConfig {
        hidden: vec![8],
        divergence: Divergence::Hutchinson(Noise::Rademacher),
        rnode: Rnode::new(0.1, 0.1).unwrap(),
        rtol: 1e-6,
        atol: 1e-6,
        seed: 2,
        ..CnfConfig::toy()
    };
    let mut flow = Cnf::<f32>::new(config).unwrap();
    let batch = batch_of::<f32>(&[0.5, -1.0, -0.2, 0.3, 1.5, 0.8, -2.0, 0.1]);
    let grad = |flow: &mut Cnf<f32>| {
        let tape = Tape::new();
        tape.set_recording(true);
        let theta = flow.params().leaf(&tape).unwrap();
        flow.reseed_noise(5);
        let loss = flow.loss(&tape, theta, &batch).unwrap();
        tape.backward_scalar(loss).unwrap();
        theta.grad().unwrap()
    };
    let g_adj = grad(&mut flow);
    flow.set_mode(GradientMode::Direct);
    let g_dir = grad(&mut flow);
    let scale = g_dir.iter().fold(0.0f32, |m, g| m.max(g.abs()));
    for (i, (a, d)) in g_adj.iter().zip(&g_dir).enumerate() {
        assert!(
            (a - d).abs() < 2e-3 * scale,
            "θ[{i}]: adjoint {a} vs direct {d}"
        );
    }
}
