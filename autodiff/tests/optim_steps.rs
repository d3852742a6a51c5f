//! `autodiff::optim`: hand-computed steps of SGD / Adam / AdamW, minimisation of a
//! quadratic and of Rosenbrock's function, schedules' values, errors.

use autodiff::Error;
use autodiff::optim::{
    Adam, AdamConfig, LrSchedule, Optimizer, Schedule, Scheduled, Sgd, SgdConfig, clip_grad_norm,
};

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * (1.0 + b.abs())
}

/// Runs `opt` on f(p) = p² from p = 1 (gradient 2p) and returns the iterates.
fn quadratic_iterates<O: Optimizer<f64>>(opt: &mut O, n: usize) -> Result<Vec<f64>, Error> {
    let mut p = [1.0];
    let mut out = Vec::new();
    for _ in 0..n {
        let g = [2.0 * p[0]];
        opt.step(&mut p, &g)?;
        out.push(p[0]);
    }
    Ok(out)
}

#[test]
fn sgd_matches_hand_computed_steps() -> Result<(), Error> {
    // Plain: p ← p − 0.1·2p = 0.8 p.
    let mut sgd = Sgd::with_lr(0.1)?;
    let it = quadratic_iterates(&mut sgd, 3)?;
    for (a, b) in it.iter().zip([0.8, 0.64, 0.512]) {
        assert!(close(*a, b, 1e-15), "{it:?}");
    }
    // Momentum 0.9: b = 2, 3.4, 3.98; p = 0.8, 0.46, 0.062.
    let mut sgd = Sgd::new(SgdConfig {
        lr: 0.1,
        momentum: 0.9,
        ..SgdConfig::default()
    })?;
    let it = quadratic_iterates(&mut sgd, 3)?;
    for (a, b) in it.iter().zip([0.8, 0.46, 0.062]) {
        assert!(close(*a, b, 1e-14), "{it:?}");
    }
    // Nesterov: d = g + μb: p = 1 − 0.1·3.8 = 0.62; g = 1.24, b = 3.04,
    // d = 1.24 + 2.736 = 3.976, p = 0.2224.
    let mut sgd = Sgd::new(SgdConfig {
        lr: 0.1,
        momentum: 0.9,
        nesterov: true,
        ..SgdConfig::default()
    })?;
    let it = quadratic_iterates(&mut sgd, 2)?;
    for (a, b) in it.iter().zip([0.62, 0.2224]) {
        assert!(close(*a, b, 1e-14), "{it:?}");
    }
    // Weight decay 0.5 and dampening 0.5 with momentum 0.5 on a zero gradient:
    // g = 0.5 p; step 1: b = g = 0.5, p = 1 − 0.05 = 0.95; step 2: g = 0.475,
    // b = 0.25 + 0.2375 = 0.4875, p = 0.95 − 0.04875 = 0.90125.
    let mut sgd = Sgd::new(SgdConfig {
        lr: 0.1,
        momentum: 0.5,
        dampening: 0.5,
        weight_decay: 0.5,
        nesterov: false,
    })?;
    let mut p = [1.0];
    sgd.step(&mut p, &[0.0])?;
    assert!(close(p[0], 0.95, 1e-15));
    sgd.step(&mut p, &[0.0])?;
    assert!(close(p[0], 0.90125, 1e-15), "{}", p[0]);
    assert_eq!(Optimizer::<f64>::n_steps(&sgd), 2);
    Ok(())
}

#[test]
fn adam_and_adamw_match_hand_computed_steps() -> Result<(), Error> {
    // Expected values: the textbook formulas m̂ / (√v̂ + ε), evaluated in double
    // precision outside this crate, with gradients 1, −2, 0.5 from p = 1, η = 0.1.
    let grads = [1.0, -2.0, 0.5];
    let cases: [(Adam<f64>, [f64; 3]); 3] = [
        (
            Adam::with_lr(0.1)?,
            [0.900000001, 0.9366103534720749, 0.9502794196738216],
        ),
        (
            Adam::adamw(0.1, 0.1)?,
            [0.890000001, 0.9177103534620747, 0.9222023161292007],
        ),
        (
            Adam::new(AdamConfig {
                lr: 0.1,
                weight_decay: 0.1,
                ..AdamConfig::default()
            })?,
            [0.9000000009090909, 0.9310642948391922, 0.937642154937361],
        ),
    ];
    for (mut opt, want) in cases {
        let mut p = [1.0];
        for (g, w) in grads.iter().zip(want) {
            opt.step(&mut p, &[*g])?;
            assert!(close(p[0], w, 1e-13), "{:?}: {} vs {w}", opt.config(), p[0]);
        }
    }
    // With a constant gradient, m̂ = g and v̂ = g² exactly: every step moves by
    // η·|g|/(|g| + ε), whatever β₁, β₂.
    let mut opt = Adam::new(AdamConfig {
        lr: 0.01,
        beta1: 0.5,
        beta2: 0.6,
        ..AdamConfig::default()
    })?;
    let mut p = [0.0f64, 0.0];
    for k in 1..=5 {
        opt.step(&mut p, &[3.0, -0.25])?;
        let step = |g: f64| 0.01 * g.abs() / (g.abs() + 1e-8);
        assert!(close(p[0], -step(3.0) * k as f64, 1e-12), "{p:?}");
        assert!(close(p[1], step(0.25) * k as f64, 1e-12), "{p:?}");
    }
    Ok(())
}

#[test]
fn amsgrad_uses_the_running_maximum() -> Result<(), Error> {
    // After a large gradient, a small one: AMSGrad's denominator keeps the large v, so
    // its step is smaller than Adam's.
    let mut adam = Adam::<f64>::with_lr(0.1)?;
    let mut ams = Adam::<f64>::new(AdamConfig {
        lr: 0.1,
        amsgrad: true,
        ..AdamConfig::default()
    })?;
    let (mut pa, mut pb) = ([0.0], [0.0]);
    for g in [10.0, 0.1, 0.1] {
        adam.step(&mut pa, &[g])?;
        ams.step(&mut pb, &[g])?;
    }
    assert!(pb[0] > pa[0], "{pa:?} {pb:?}");
    Ok(())
}

/// f(x) = Σ c_i (x_i − x*_i)², condition number 100.
fn quadratic_grad(x: &[f64], g: &mut [f64]) {
    for i in 0..x.len() {
        let c = 1.0 + 99.0 * i as f64 / (x.len() - 1) as f64;
        g[i] = 2.0 * c * (x[i] - (i as f64 - 2.0));
    }
}

#[test]
fn every_optimizer_minimises_an_ill_conditioned_quadratic() -> Result<(), Error> {
    let mut opts: Vec<(&str, Box<dyn Optimizer<f64>>)> = vec![
        (
            "sgd+momentum",
            Box::new(Sgd::new(SgdConfig {
                lr: 4e-3,
                momentum: 0.9,
                ..SgdConfig::default()
            })?),
        ),
        (
            "nesterov",
            Box::new(Sgd::new(SgdConfig {
                lr: 4e-3,
                momentum: 0.9,
                nesterov: true,
                ..SgdConfig::default()
            })?),
        ),
        ("adam", Box::new(Adam::with_lr(0.05)?)),
        (
            "adam+cosine",
            Box::new(Scheduled::new(
                Adam::with_lr(0.05)?,
                Schedule::cosine(0.1, 2000, 1e-4)?.with_warmup(50)?,
            )),
        ),
    ];
    for (name, opt) in opts.iter_mut() {
        let mut x = vec![0.0; 5];
        let mut g = vec![0.0; 5];
        for _ in 0..2000 {
            quadratic_grad(&x, &mut g);
            opt.step(&mut x, &g)?;
        }
        let err = x
            .iter()
            .enumerate()
            .map(|(i, v)| (v - (i as f64 - 2.0)).abs())
            .fold(0.0, f64::max);
        assert!(err < 1e-4, "{name}: max error {err}, x = {x:?}");
    }
    // AdamW's decoupled decay moves the fixed point towards 0, by a small amount.
    let mut opt = Adam::adamw(0.01, 1e-3)?;
    let mut x = vec![0.0; 5];
    let mut g = vec![0.0; 5];
    for _ in 0..5000 {
        quadratic_grad(&x, &mut g);
        opt.step(&mut x, &g)?;
    }
    let err = x
        .iter()
        .enumerate()
        .map(|(i, v)| (v - (i as f64 - 2.0)).abs())
        .fold(0.0, f64::max);
    assert!(err < 2e-2, "adamw: {x:?}");
    Ok(())
}

#[test]
fn adam_and_sgd_minimise_rosenbrock_f64_and_f32() -> Result<(), Error> {
    // f(x, y) = (1 − x)² + 100 (y − x²)², minimum at (1, 1), start (−1.2, 1).
    fn grad(p: &[f64; 2]) -> [f64; 2] {
        let (x, y) = (p[0], p[1]);
        [
            -2.0 * (1.0 - x) - 400.0 * x * (y - x * x),
            200.0 * (y - x * x),
        ]
    }
    let mut adam = Adam::<f64>::with_lr(0.02)?;
    let mut p = [-1.2, 1.0];
    for _ in 0..20_000 {
        let g = grad(&p);
        adam.step(&mut p, &g)?;
    }
    assert!(
        (p[0] - 1.0).abs() < 1e-3 && (p[1] - 1.0).abs() < 2e-3,
        "adam: {p:?}"
    );

    let mut sgd = Sgd::<f64>::new(SgdConfig {
        lr: 1e-3,
        momentum: 0.9,
        ..SgdConfig::default()
    })?;
    let mut p = [-1.2, 1.0];
    for _ in 0..20_000 {
        let g = grad(&p);
        sgd.step(&mut p, &g)?;
    }
    assert!(
        (p[0] - 1.0).abs() < 1e-3 && (p[1] - 1.0).abs() < 2e-3,
        "sgd: {p:?}"
    );

    let mut adam = Adam::<f32>::with_lr(0.02)?;
    let mut p = [-1.2f32, 1.0];
    for _ in 0..20_000 {
        let g = grad(&[p[0] as f64, p[1] as f64]);
        adam.step(&mut p, &[g[0] as f32, g[1] as f32])?;
    }
    assert!(
        (p[0] - 1.0).abs() < 1e-2 && (p[1] - 1.0).abs() < 2e-2,
        "adam f32: {p:?}"
    );
    Ok(())
}

#[test]
fn schedules_take_the_documented_values() -> Result<(), Error> {
    let c = Schedule::constant(0.3)?;
    assert_eq!((c.lr(0), c.lr(1000)), (0.3, 0.3));

    let s = Schedule::step_decay(1.0, 10, 0.5)?;
    let v: Vec<f64> = [0, 9, 10, 19, 20, 35].iter().map(|&k| s.lr(k)).collect();
    assert_eq!(v, vec![1.0, 1.0, 0.5, 0.5, 0.25, 0.125]);

    let e = Schedule::exponential(2.0, 0.9)?;
    assert!(close(e.lr(3), 2.0 * 0.729, 1e-15));

    let cos = Schedule::cosine(1.0, 100, 0.1)?;
    assert!(close(cos.lr(0), 1.0, 1e-15));
    assert!(close(cos.lr(50), 0.55, 1e-15));
    assert!(close(
        cos.lr(25),
        0.1 + 0.9 * 0.5 * (1.0 + 0.5f64.sqrt()),
        1e-15
    ));
    assert!(close(cos.lr(100), 0.1, 1e-15));
    assert!(close(cos.lr(1000), 0.1, 1e-15));
    let mut prev = f64::INFINITY;
    for k in 0..=100 {
        assert!(cos.lr(k) <= prev);
        prev = cos.lr(k);
    }

    let w = Schedule::cosine(1.0, 100, 0.0)?.with_warmup(4)?;
    let v: Vec<f64> = (0..6).map(|k| w.lr(k)).collect();
    assert!(close(v[0], 0.2, 1e-15) && close(v[3], 0.8, 1e-15), "{v:?}");
    assert!(close(v[4], 1.0, 1e-15) && close(v[5], cos_at(1.0, 100, 1), 1e-15));

    // Closures are schedules.
    let f = |k: u64| 1.0 / (1.0 + k as f64);
    assert_eq!(f.lr(3), 0.25);

    // A boxed optimizer chosen at run time can be scheduled too.
    let boxed: Box<dyn Optimizer<f64>> = Box::new(Adam::with_lr(1.0)?);
    let mut opt = Scheduled::new(boxed, Schedule::constant(0.25)?);
    let mut p = [0.0];
    opt.step(&mut p, &[-1.0])?;
    assert_eq!(opt.learning_rate(), 0.25);
    assert!(close(p[0], 0.25, 1e-7), "{p:?}");

    // The wrapper applies the schedule before each step.
    let mut opt = Scheduled::new(
        Sgd::<f64>::with_lr(123.0)?,
        Schedule::step_decay(1.0, 1, 0.5)?,
    );
    let mut p = [0.0];
    let mut lrs = Vec::new();
    for _ in 0..3 {
        opt.step(&mut p, &[-1.0])?; // p += lr
        lrs.push(opt.learning_rate());
    }
    assert_eq!(lrs, vec![1.0, 0.5, 0.25]);
    assert_eq!(p[0], 1.75);
    Ok(())
}

fn cos_at(lr: f64, t_max: u64, s: u64) -> f64 {
    lr * 0.5 * (1.0 + (std::f64::consts::PI * s as f64 / t_max as f64).cos())
}

#[test]
fn invalid_hyperparameters_and_lengths_are_errors() -> Result<(), Error> {
    let e = Sgd::<f64>::with_lr(-1.0).err();
    assert!(
        matches!(e, Some(Error::InvalidHyperparameter { name: "lr", value, .. }) if value == -1.0),
        "{e:?}"
    );
    let msg = Adam::<f64>::new(AdamConfig {
        beta2: 1.5,
        ..AdamConfig::default()
    })
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(msg.contains("beta2") && msg.contains("1.5"), "{msg}");
    assert!(Sgd::<f64>::with_lr(f64::NAN).is_err());
    for cfg in [
        SgdConfig {
            momentum: 1.0,
            ..SgdConfig::default()
        },
        SgdConfig {
            nesterov: true,
            ..SgdConfig::default()
        },
        SgdConfig {
            dampening: 2.0,
            ..SgdConfig::default()
        },
        SgdConfig {
            weight_decay: -0.1,
            ..SgdConfig::default()
        },
    ] {
        assert!(Sgd::<f64>::new(cfg).is_err(), "{cfg:?}");
    }
    for cfg in [
        AdamConfig {
            beta1: 1.0,
            ..AdamConfig::default()
        },
        AdamConfig {
            beta2: -0.1,
            ..AdamConfig::default()
        },
        AdamConfig {
            eps: 0.0,
            ..AdamConfig::default()
        },
        AdamConfig {
            lr: f64::INFINITY,
            ..AdamConfig::default()
        },
    ] {
        assert!(Adam::<f32>::new(cfg).is_err(), "{cfg:?}");
    }
    assert!(Schedule::step_decay(1.0, 0, 0.5).is_err());
    assert!(Schedule::cosine(1.0, 0, 0.0).is_err());
    assert!(Schedule::constant(1.0)?.with_warmup(0).is_err());

    let mut adam = Adam::<f64>::with_lr(0.1)?;
    let mut p = [0.0; 3];
    assert!(matches!(
        adam.step(&mut p, &[1.0; 2]),
        Err(Error::LengthMismatch { .. })
    ));
    adam.step(&mut p, &[1.0; 3])?;
    let mut q = [0.0; 4];
    assert!(adam.step(&mut q, &[1.0; 4]).is_err(), "state sized for 3");
    assert!(adam.set_learning_rate(-1.0).is_err());
    adam.reset();
    assert_eq!(adam.n_steps(), 0);
    adam.step(&mut p, &[1.0; 3])?;
    let mut sgd = Sgd::<f64>::new(SgdConfig {
        momentum: 0.5,
        ..SgdConfig::default()
    })?;
    assert!(sgd.step(&mut p, &[1.0; 1]).is_err());
    Ok(())
}

#[test]
fn clip_grad_norm_rescales_only_above_the_bound() {
    let mut g = [3.0f64, 4.0];
    let n = clip_grad_norm(&mut g, 1.0);
    assert_eq!(n, 5.0);
    let after = (g[0] * g[0] + g[1] * g[1]).sqrt();
    assert!((after - 1.0).abs() < 1e-5, "{after}");
    let mut g = [0.3f32, 0.4];
    assert!((clip_grad_norm(&mut g, 1.0) - 0.5).abs() < 1e-7);
    assert_eq!(g, [0.3, 0.4]);
}
