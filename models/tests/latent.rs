//! Latent ODE checks: ELBO / IWAE / Poisson gradients with fixed noise against central
//! differences and between gradient modes, the Poisson term against its closed form, the
//! union-of-times batching against per-series solves, f32, a short training run, the CSV
//! reader's errors.

use std::path::Path;

use adjoint::GradientMode;
use autodiff::Tape;
use models::ModelsError;
use models::latent::data::{self, IrregularDataset, SpiralConfig};
use models::latent::elbo::{KlAnnealing, draw_noise};
use models::latent::poisson::constant_rate_log_likelihood;
use models::latent::{EncoderKind, FitConfig, LatentConfig, LatentOde, SeriesModel, fit};
use rand::SeedableRng;
use rand::rngs::StdRng;

fn tiny_cfg(poisson: bool) -> LatentConfig {
    LatentConfig {
        latent: 2,
        units: 5,
        rec_hidden: 4,
        rec_units: 4,
        dec_units: 5,
        enc_max_step: 0.05,
        poisson,
        // Outputs come from the dense output, whose error jumps when a perturbation
        // changes the accepted steps: central differences need it far below their step.
        rtol: 1e-12,
        atol: 1e-14,
        seed: 3,
        ..LatentConfig::new(2)
    }
}

fn tiny_spirals(n: usize) -> IrregularDataset<f64> {
    let cfg = SpiralConfig {
        n_spirals: n,
        n_total: 40,
        n_sample: 8,
        keep: 0.6,
        ..Default::default()
    };
    // Rescale times to keep the solves short: the data's own times span ~3.4.
    data::spirals::<f64>(&cfg, 7).unwrap().0
}

/// The loss as a function of the flat parameters, with the noise fixed.
fn loss_at(
    model: &mut LatentOde<f64>,
    theta: &[f64],
    batch: &data::IrregularBatch<f64>,
    noise: &[f64],
    k: usize,
    beta: f64,
) -> f64 {
    model.params_mut().copy_from_slice(theta).unwrap();
    let tape = Tape::new();
    let th = model.params().leaf(&tape).unwrap();
    model
        .loss(&tape, th, batch, noise, k, beta)
        .unwrap()
        .loss
        .item()
        .unwrap()
}

fn grad_at(
    model: &mut LatentOde<f64>,
    theta: &[f64],
    batch: &data::IrregularBatch<f64>,
    noise: &[f64],
    k: usize,
    beta: f64,
) -> Vec<f64> {
    model.params_mut().copy_from_slice(theta).unwrap();
    let tape = Tape::new();
    tape.set_recording(true);
    let th = model.params().leaf(&tape).unwrap();
    let l = model.loss(&tape, th, batch, noise, k, beta).unwrap().loss;
    tape.backward(l, &[1.0]).unwrap();
    th.grad().unwrap()
}

/// Central differences on a spread of parameter indices (every tensor is hit), against
/// the checkpointed adjoint and the direct mode.
fn check_gradient(poisson: bool, k: usize, beta: f64) {
    check_gradient_cfg(tiny_cfg(poisson), k, beta, 2e-5);
}

/// `tol`: relative tolerance of both modes against the differences.
fn check_gradient_cfg(cfg: LatentConfig, k: usize, beta: f64, tol: f64) {
    let mut model = LatentOde::<f64>::new(cfg).unwrap();
    let data = tiny_spirals(3);
    let batch = data.batch(&[0, 1, 2]).unwrap();
    let noise = draw_noise(&mut StdRng::seed_from_u64(11), k, 3, 2);
    let theta0 = model.params().as_slice().to_vec();
    let g_adj = grad_at(&mut model, &theta0, &batch, &noise, k, beta);
    model.set_mode(GradientMode::Direct);
    let g_dir = grad_at(&mut model, &theta0, &batch, &noise, k, beta);
    let n = theta0.len();
    // Step 1e-4: the loss jumps by ~tol·|L| when a perturbation changes the accepted
    // steps (outputs come from the dense output), so smaller steps amplify that noise;
    // the O(h²) truncation stays ~1e-7.
    let h = 1e-4;
    let mut checked = 0;
    let mut names = Vec::new();
    for p in model.params().params() {
        let r = p.view.range();
        names.push((p.name.clone(), r.clone()));
    }
    for (name, r) in names {
        for i in [r.start, (r.start + r.end) / 2, r.end - 1] {
            let mut tp = theta0.clone();
            tp[i] += h;
            let lp = loss_at(&mut model, &tp, &batch, &noise, k, beta);
            tp[i] -= 2.0 * h;
            let lm = loss_at(&mut model, &tp, &batch, &noise, k, beta);
            let fd = (lp - lm) / (2.0 * h);
            let scale = 1e-3f64.max(fd.abs());
            assert!(
                (g_adj[i] - fd).abs() < tol * scale.max(1.0),
                "{name}[{i}]: adjoint {} vs fd {fd}",
                g_adj[i]
            );
            assert!(
                (g_dir[i] - fd).abs() < tol * scale.max(1.0),
                "{name}[{i}]: direct {} vs fd {fd}",
                g_dir[i]
            );
            // The two modes differ by O(solver tolerance) only, far below the noise of
            // the differences.
            assert!(
                (g_adj[i] - g_dir[i]).abs() < 1e-5 * g_dir[i].abs().max(1.0),
                "{name}[{i}]: adjoint {} vs direct {}",
                g_adj[i],
                g_dir[i]
            );
            checked += 1;
        }
    }
    assert!(checked >= 30 && n > 100, "checked {checked} of {n}");
    assert!(g_adj.iter().any(|g| g.abs() > 1e-3));
}

#[test]
fn elbo_gradient_matches_central_differences() {
    check_gradient(false, 1, 0.3);
}

#[test]
fn iwae_gradient_matches_central_differences() {
    // The IWAE bound's log-sum-exp over draws makes the loss more curved and its solve
    // (9 latent rows) noisier under perturbation: differences within 1e-4 (measured
    // 2.5e-5 at worst), while the two gradient modes agree to 1e-5 (checked below).
    check_gradient_cfg(tiny_cfg(false), 3, 1.0, 1e-4);
}

#[test]
fn poisson_gradient_matches_central_differences() {
    check_gradient(true, 1, 1.0);
}

#[test]
fn poisson_term_matches_closed_form_for_constant_intensity() {
    let mut model = LatentOde::<f64>::new(tiny_cfg(true)).unwrap();
    let b = 0.4f64; // λ = softplus(b) for every component
    let st = model.params_mut();
    st.get_mut("intensity.2.weight").unwrap().fill(0.0);
    st.get_mut("intensity.2.bias").unwrap().fill(b);
    let rate = (1.0 + b.exp()).ln();
    let data = tiny_spirals(4);
    let batch = data.batch(&[0, 1, 2, 3]).unwrap();
    let window = batch.times[batch.n_times() - 1] - batch.times[0];
    let tape = Tape::new();
    let th = model.params().leaf(&tape).unwrap();
    let noise = draw_noise(&mut StdRng::seed_from_u64(2), 1, 4, 2);
    let terms = model.loss(&tape, th, &batch, &noise, 1, 1.0).unwrap();
    let got = terms.log_pt.item().unwrap();
    // Each of the 2 components of each series is a process on the batch's window.
    let expected: f64 = data
        .series()
        .iter()
        .map(|s| 2.0 * constant_rate_log_likelihood(s.times.len(), rate, window))
        .sum::<f64>()
        / 4.0;
    assert!(
        (got - expected).abs() < 1e-8 * expected.abs().max(1.0),
        "{got} vs {expected}"
    );
    assert!(window > 1.0);
}

#[test]
fn union_batch_equals_per_series_solves() {
    let mut model = LatentOde::<f64>::new(tiny_cfg(true)).unwrap();
    let data = tiny_spirals(3);
    let noise = draw_noise(&mut StdRng::seed_from_u64(5), 1, 3, 2);
    let theta = model.params().as_slice().to_vec();
    let both = loss_at(
        &mut model,
        &theta,
        &data.batch(&[0, 1, 2]).unwrap(),
        &noise,
        1,
        1.0,
    );
    // Per series: its own times, its own noise (noise is [K, B, L]).
    let mut sum = 0.0;
    for j in 0..3 {
        let b = data.batch(&[j]).unwrap();
        // The window of the Poisson term is the batch's: pad each series' batch with the
        // union's first and last times so that all three see the same window.
        let full = data.batch(&[0, 1, 2]).unwrap();
        let (t0, t1) = (full.times[0], full.times[full.n_times() - 1]);
        let mut times = vec![t0];
        times.extend(b.times.iter().copied().filter(|&t| t != t0 && t != t1));
        times.push(t1);
        let n = times.len();
        let (mut values, mut mask) = (vec![0.0; n * 2], vec![0.0; n * 2]);
        for (i, &t) in b.times.iter().enumerate() {
            let r = times.iter().position(|&u| u == t).unwrap();
            values[2 * r..2 * r + 2].copy_from_slice(&b.values[2 * i..2 * i + 2]);
            mask[2 * r..2 * r + 2].copy_from_slice(&b.mask[2 * i..2 * i + 2]);
        }
        let bj = data::IrregularBatch::new(times, values, mask.clone(), mask, 1, 2).unwrap();
        sum += loss_at(&mut model, &theta, &bj, &noise[2 * j..2 * j + 2], 1, 1.0);
    }
    let mean = sum / 3.0;
    assert!(
        (both - mean).abs() < 1e-6 * mean.abs(),
        "union {both} vs per series {mean}"
    );
}

#[test]
fn f32_matches_f64() {
    let cfg = LatentConfig {
        rtol: 1e-6,
        atol: 1e-7,
        ..tiny_cfg(false)
    };
    let mut m64 = LatentOde::<f64>::new(cfg.clone()).unwrap();
    let mut m32 = LatentOde::<f32>::new(cfg).unwrap();
    let c = SpiralConfig {
        n_spirals: 3,
        n_total: 40,
        n_sample: 8,
        keep: 0.6,
        ..Default::default()
    };
    let b64 = data::spirals::<f64>(&c, 7)
        .unwrap()
        .0
        .batch(&[0, 1, 2])
        .unwrap();
    let b32 = data::spirals::<f32>(&c, 7)
        .unwrap()
        .0
        .batch(&[0, 1, 2])
        .unwrap();
    let n64 = draw_noise::<f64>(&mut StdRng::seed_from_u64(1), 1, 3, 2);
    let n32: Vec<f32> = n64.iter().map(|&v| v as f32).collect();
    let t64 = Tape::new();
    t64.set_recording(true);
    let th64 = m64.params().leaf(&t64).unwrap();
    let l64 = m64.loss(&t64, th64, &b64, &n64, 1, 1.0).unwrap().loss;
    t64.backward(l64, &[1.0]).unwrap();
    let t32 = Tape::new();
    t32.set_recording(true);
    let th32 = m32.params().leaf(&t32).unwrap();
    let l32 = m32.loss(&t32, th32, &b32, &n32, 1, 1.0).unwrap().loss;
    t32.backward(l32, &[1.0]).unwrap();
    let (a, b) = (l64.item().unwrap(), l32.item().unwrap() as f64);
    assert!((a - b).abs() < 1e-4 * a.abs(), "{a} vs {b}");
    let (g64, g32) = (th64.grad().unwrap(), th32.grad().unwrap());
    let gn: f64 = g64.iter().map(|g| g * g).sum::<f64>().sqrt();
    let diff: f64 = g64
        .iter()
        .zip(&g32)
        .map(|(x, &y)| (x - y as f64).powi(2))
        .sum::<f64>()
        .sqrt();
    assert!(diff < 1e-3 * gn, "gradient differs by {diff} of {gn}");
}

#[test]
fn short_training_lowers_the_loss_both_encoders() {
    for kind in [EncoderKind::OdeRnn, EncoderKind::Rnn] {
        let cfg = LatentConfig {
            encoder: kind,
            enc_max_step: 0.5,
            rtol: 1e-3,
            atol: 1e-4,
            ..tiny_cfg(false)
        };
        let mut model = LatentOde::<f64>::new(cfg).unwrap();
        model
            .set_objective(
                2,
                KlAnnealing {
                    start: 0.1,
                    warmup: 10,
                },
            )
            .unwrap();
        let data = tiny_spirals(8);
        let mut opt = autodiff::optim::Adam::with_lr(0.02).unwrap();
        let fc = FitConfig {
            steps: 40,
            batch_size: 8,
            clip: Some(100.0),
            seed: 0,
        };
        let losses = fit(&mut model, &data, &mut opt, &fc, &mut |_| true).unwrap();
        let first: f64 = losses[..5].iter().sum::<f64>() / 5.0;
        let last: f64 = losses[35..].iter().sum::<f64>() / 5.0;
        assert!(last < 0.7 * first, "{kind:?}: loss {first} → {last}");
        let b = data.batch(&[0, 1, 2]).unwrap().holdout(0.3, 1);
        let mse = SeriesModel::target_mse(&mut model, &b).unwrap().unwrap();
        assert!(mse.is_finite());
    }
}

fn csv_err(text: &str) -> String {
    match data::parse_csv::<f64>(text, Path::new("in.csv")) {
        Err(e @ ModelsError::Data { .. }) => e.to_string(),
        other => panic!("expected a data error, got {other:?}"),
    }
}

#[test]
fn csv_reader_reads_missing_values_and_reports_errors() {
    let ok = "id,time,a,b\ns1,0.5,1.0,\ns1,0.0,,2.0\ns2,1.0,3,4\n";
    let d = data::parse_csv::<f64>(ok, Path::new("in.csv")).unwrap();
    assert_eq!(d.len(), 2);
    assert_eq!(d.names(), ["a", "b"]);
    let s1 = &d.series()[0];
    assert_eq!(s1.times, [0.0, 0.5]);
    assert_eq!(s1.observed, [false, true, true, false]);
    let b = d.batch(&[0, 1]).unwrap();
    assert_eq!(b.times, [0.0, 0.5, 1.0]);
    assert_eq!(b.mask.iter().sum::<f64>(), 4.0);

    assert!(csv_err("").contains("in.csv:1:1"));
    assert!(csv_err("id,time\n").contains("at least 3 columns"));
    let e = csv_err("id,time,a\ns,0,1\ns,x,2\n");
    assert!(
        e.starts_with("in.csv:3:2:") && e.contains("not a number"),
        "{e}"
    );
    let e = csv_err("id,time,a\ns,0,1\ns,1,oops\n");
    assert!(e.starts_with("in.csv:3:3:"), "{e}");
    let e = csv_err("id,time,a,b\ns,0,1\n");
    assert!(
        e.contains("in.csv:2:") && e.contains("expected 4 columns"),
        "{e}"
    );
    let e = csv_err("id,time,a\ns,0,\n");
    assert!(e.contains("no value"), "{e}");
    let e = csv_err("id,time,a\ns,1,1\ns,1,2\n");
    assert!(e.starts_with("in.csv:3:2:") && e.contains("twice"), "{e}");
    let e = csv_err("id,time,a\ns,inf,1\n");
    assert!(e.contains("not finite"), "{e}");
}

#[test]
fn baseline_gradients_match_central_differences() {
    use models::latent::baselines::{Baseline, BaselineKind};
    let data = tiny_spirals(3);
    let batch = data.batch(&[0, 1, 2]).unwrap().holdout(0.3, 4);
    for kind in [BaselineKind::OdeRnn, BaselineKind::RnnDt] {
        let mut m = Baseline::<f64>::new(kind, 2, 4, 4, 0.05, 0.3, 1).unwrap();
        let theta0 = m.params().as_slice().to_vec();
        let mut rng = StdRng::seed_from_u64(0);
        let mut eval = |m: &mut Baseline<f64>, th: &[f64], grad: bool| {
            m.params_mut().copy_from_slice(th).unwrap();
            let tape = Tape::new();
            tape.set_recording(grad);
            let t = m.params().leaf(&tape).unwrap();
            let l = m.train_loss(&tape, t, &batch, &mut rng, 0).unwrap();
            let v = l.item().unwrap();
            if grad {
                tape.backward(l, &[1.0]).unwrap();
                (v, t.grad().unwrap())
            } else {
                (v, Vec::new())
            }
        };
        let (_, g) = eval(&mut m, &theta0, true);
        for i in (0..theta0.len()).step_by(7) {
            let mut tp = theta0.clone();
            tp[i] += 1e-5;
            let lp = eval(&mut m, &tp, false).0;
            tp[i] -= 2e-5;
            let lm = eval(&mut m, &tp, false).0;
            let fd = (lp - lm) / 2e-5;
            assert!(
                (g[i] - fd).abs() < 1e-5 * fd.abs().max(1.0),
                "{kind:?}[{i}]: {} vs {fd}",
                g[i]
            );
        }
        assert!(g.iter().any(|v| v.abs() > 1e-3));
        let mse = m.target_mse(&batch).unwrap().unwrap();
        assert!(mse.is_finite() && mse > 0.0);
    }
}

#[test]
fn composed_elu_matches_the_tape_elu_in_value_and_gradient() {
    let xs: Vec<f64> = (0..41).map(|i| -4.0 + 0.2 * i as f64 + 1e-3).collect();
    let run = |composed: bool| {
        let tape = Tape::<f64>::new();
        tape.set_recording(true);
        let x = tape.leaf(&xs, &[xs.len()]).unwrap();
        let y = if composed {
            models::latent::decoder::elu(x)
        } else {
            x.elu(1.0)
        };
        let v = y.value().unwrap();
        // A weighted sum so that every element's derivative counts.
        let w: Vec<f64> = (0..xs.len()).map(|i| 1.0 + 0.1 * i as f64).collect();
        let l = (y * tape.constant(&w, &[xs.len()]).unwrap()).sum();
        tape.backward(l, &[1.0]).unwrap();
        (v, x.grad().unwrap())
    };
    let (va, ga) = run(true);
    let (vb, gb) = run(false);
    for i in 0..xs.len() {
        assert!(
            (va[i] - vb[i]).abs() < 1e-14,
            "value at {}: {} vs {}",
            xs[i],
            va[i],
            vb[i]
        );
        assert!(
            (ga[i] - gb[i]).abs() < 1e-13,
            "grad at {}: {} vs {}",
            xs[i],
            ga[i],
            gb[i]
        );
    }
}

#[test]
fn window_log_likelihood_of_a_constant_rate_matches_closed_form() {
    use models::latent::poisson::{constant_intensity, window_log_likelihood};
    // 4 union times, 2 series, 1 component; series 0 has events at rows 1 and 3, series 1
    // at row 2; window from row 1 (t = 0.5) to row 3 (t = 2).
    let times = [0.0, 0.5, 1.2, 2.0];
    let events = [0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0];
    let rate = 1.7;
    let (lam, big) = constant_intensity(&[rate], &times, 2);
    for thin in [1.0, 0.3] {
        let got = window_log_likelihood(&lam, &big, &events, 2, 1, 1, thin);
        let want0 = constant_rate_log_likelihood(2, thin * rate, 1.5);
        let want1 = constant_rate_log_likelihood(1, thin * rate, 1.5);
        assert!((got[0] - want0).abs() < 1e-12, "{got:?} vs {want0}");
        assert!((got[1] - want1).abs() < 1e-12, "{got:?} vs {want1}");
    }
}
