//! Layers of `autodiff::nn`: gradients against finite differences (parameters and inputs
//! together), every parameter receives a gradient, PyTorch names and layouts, seeded
//! initialisation, hand-computed forward values, errors.

use autodiff::nn::{
    Activation, ConcatSquashLinear, Conv2d, Conv2dConfig, GroupNorm, GruCell, Init, Linear, Mlp,
    Module, ParamStore,
};
use autodiff::{Error, Float, Tape, default_gradcheck_tolerance, gradcheck};

/// Deterministic pseudo-random values in [-1, 1).
fn noise<T: Float>(n: usize, seed: u64) -> Vec<T> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            T::from_f64_const(((s >> 11) as f64) / ((1u64 << 53) as f64) * 2.0 - 1.0)
        })
        .collect()
}

/// `[θ, x]` concatenated, for a gradcheck over parameters and input together.
fn joint<T: Float>(store: &ParamStore<T>, x: &[T]) -> Vec<T> {
    let mut v = store.as_slice().to_vec();
    v.extend_from_slice(x);
    v
}

#[test]
fn linear_gradcheck_rank2_and_rank3() -> Result<(), Error> {
    let mut store = ParamStore::<f64>::new(1);
    let lin = Linear::new(&mut store, "fc", 3, 4, true)?;
    let p = store.n_params();
    assert_eq!(p, 3 * 4 + 4);
    for dims in [vec![5usize, 3], vec![2, 2, 3], vec![3]] {
        let n: usize = dims.iter().product();
        let all = joint(&store, &noise::<f64>(n, 2));
        let out_len = n / 3 * 4;
        let v = noise::<f64>(out_len, 3);
        let rep = gradcheck(
            |a| lin.forward(a.view(0, &[p]), a.view(p, &dims)),
            &all,
            &[all.len()],
            &v,
        )?;
        assert!(rep.passes(default_gradcheck_tolerance::<f64>()), "{rep:?}");
    }
    Ok(())
}

#[test]
fn mlp_gradcheck_every_activation_f64_and_f32() -> Result<(), Error> {
    let acts = [
        Activation::Tanh,
        Activation::Relu,
        Activation::Softplus,
        Activation::Sigmoid,
        Activation::Elu(0.7),
        Activation::Silu,
        Activation::Sin,
        Activation::Identity,
    ];
    for (k, act) in acts.into_iter().enumerate() {
        let mut store = ParamStore::<f64>::new(k as u64);
        let mlp = Mlp::builder(2, 3)
            .hidden(&[5, 4])
            .activation(act)
            .output_activation(Activation::Tanh)
            .build(&mut store, "f")?;
        let p = store.n_params();
        let all = joint(&store, &noise::<f64>(8, 10 + k as u64));
        let v = noise::<f64>(12, 20 + k as u64);
        let rep = gradcheck(
            |a| mlp.forward(a.view(0, &[p]), a.view(p, &[4, 2])),
            &all,
            &[all.len()],
            &v,
        )?;
        // ReLU has a kink: a finite difference straddling it is off; the inputs are
        // generic, so it does not happen here, and the tolerance stays tight.
        assert!(
            rep.passes(default_gradcheck_tolerance::<f64>()),
            "{act:?}: {rep:?}"
        );
    }
    // f32: same network type, f32 tolerance.
    let mut store = ParamStore::<f32>::new(3);
    let mlp = Mlp::builder(2, 2).hidden(&[6]).build(&mut store, "")?;
    let p = store.n_params();
    let all = joint(&store, &noise::<f32>(6, 4));
    let v = noise::<f32>(6, 5);
    let rep = gradcheck(
        |a| mlp.forward(a.view(0, &[p]), a.view(p, &[3, 2])),
        &all,
        &[all.len()],
        &v,
    )?;
    assert!(rep.passes(default_gradcheck_tolerance::<f32>()), "{rep:?}");
    Ok(())
}

#[test]
fn mlp_with_time_gradcheck_scalar_and_per_row_time() -> Result<(), Error> {
    let mut store = ParamStore::<f64>::new(5);
    let mlp = Mlp::builder(3, 3)
        .hidden(&[7])
        .time_input(true)
        .build(&mut store, "f")?;
    assert_eq!(
        store.view("f.0.weight").map(|v| v.shape().dims().to_vec()),
        Some(vec![7, 4])
    );
    let p = store.n_params();
    let b = 4;
    for nt in [1usize, b] {
        let mut x = noise::<f64>(b * 3, 6);
        x.extend(noise::<f64>(nt, 7));
        let all = joint(&store, &x);
        let v = noise::<f64>(b * 3, 8);
        let rep = gradcheck(
            |a| {
                let t = if nt == 1 {
                    a.view(p + b * 3, &[])
                } else {
                    a.view(p + b * 3, &[b])
                };
                mlp.forward_t(a.view(0, &[p]), a.view(p, &[b, 3]), t)
            },
            &all,
            &[all.len()],
            &v,
        )?;
        assert!(
            rep.passes(default_gradcheck_tolerance::<f64>()),
            "nt={nt}: {rep:?}"
        );
    }
    Ok(())
}

#[test]
fn mlp_time_input_changes_the_output_and_matches_explicit_concat() -> Result<(), Error> {
    let mut store = ParamStore::<f64>::new(9);
    let mlp = Mlp::builder(2, 2)
        .hidden(&[8])
        .time_input(true)
        .build(&mut store, "f")?;
    let mut tape = Tape::new();
    let x = [0.3, -0.7, 1.1, 0.2];
    let mut eval = |t: f64| -> Result<Vec<f64>, Error> {
        tape.reset();
        let th = store.leaf(&tape)?;
        let xv = tape.constant(&x, &[2, 2])?;
        let tv = tape.constant(&[t], &[1])?;
        mlp.forward_t(th, xv, tv).value()
    };
    let y0 = eval(0.0)?;
    let y1 = eval(0.5)?;
    assert!(y0.iter().zip(&y1).any(|(a, b)| (a - b).abs() > 1e-6));
    // Same as a plain MLP on [x, t] with the same weights.
    let mut plain = ParamStore::<f64>::new(9);
    let mlp3 = Mlp::builder(3, 2).hidden(&[8]).build(&mut plain, "f")?;
    assert_eq!(plain.as_slice(), store.as_slice());
    let tape2 = Tape::new();
    let th = plain.leaf(&tape2)?;
    let xt = tape2.constant(&[0.3, -0.7, 0.5, 1.1, 0.2, 0.5], &[2, 3])?;
    let y = mlp3.forward(th, xt).value()?;
    for (a, b) in y.iter().zip(&y1) {
        assert!((a - b).abs() <= 1e-15 * (1.0 + a.abs()), "{a} vs {b}");
    }
    Ok(())
}

#[test]
fn conv2d_gradcheck_stride_and_padding() -> Result<(), Error> {
    let mut store = ParamStore::<f64>::new(11);
    let conv = Conv2d::new(
        &mut store,
        "conv",
        Conv2dConfig::new(2, 3, 3).stride(2).padding(1),
    )?;
    let p = store.n_params();
    assert_eq!(p, 3 * 2 * 9 + 3);
    let xdims = [2usize, 2, 5, 5];
    let all = joint(&store, &noise::<f64>(2 * 2 * 25, 12));
    let v = noise::<f64>(2 * 3 * 3 * 3, 13); // output [2, 3, 3, 3]
    let rep = gradcheck(
        |a| conv.forward(a.view(0, &[p]), a.view(p, &xdims)),
        &all,
        &[all.len()],
        &v,
    )?;
    assert!(rep.passes(default_gradcheck_tolerance::<f64>()), "{rep:?}");
    Ok(())
}

#[test]
fn group_norm_gradcheck_rank4_and_rank2() -> Result<(), Error> {
    for (dims, groups) in [(vec![2usize, 4, 3, 3], 2usize), (vec![3, 6], 3)] {
        let mut store = ParamStore::<f64>::new(13);
        let c = dims[1];
        let gn = GroupNorm::new(&mut store, "gn", groups, c, 1e-5, true)?;
        // Move γ, β away from 1, 0 so that both enter the check non-trivially.
        let g = noise::<f64>(2 * c, 14);
        store.as_mut_slice().copy_from_slice(&g);
        let p = store.n_params();
        let n: usize = dims.iter().product();
        let all = joint(&store, &noise::<f64>(n, 15));
        let v = noise::<f64>(n, 16);
        let rep = gradcheck(
            |a| gn.forward(a.view(0, &[p]), a.view(p, &dims)),
            &all,
            &[all.len()],
            &v,
        )?;
        assert!(
            rep.passes(default_gradcheck_tolerance::<f64>()),
            "{dims:?}: {rep:?}"
        );
    }
    Ok(())
}

#[test]
fn gru_cell_gradcheck() -> Result<(), Error> {
    let mut store = ParamStore::<f64>::new(17);
    let gru = GruCell::new(&mut store, "gru", 3, 4, true)?;
    let p = store.n_params();
    assert_eq!(p, 12 * 3 + 12 * 4 + 12 + 12);
    let b = 2;
    let mut xh = noise::<f64>(b * 3, 18);
    xh.extend(noise::<f64>(b * 4, 19));
    let all = joint(&store, &xh);
    let v = noise::<f64>(b * 4, 20);
    let rep = gradcheck(
        |a| {
            gru.forward(
                a.view(0, &[p]),
                a.view(p, &[b, 3]),
                a.view(p + b * 3, &[b, 4]),
            )
        },
        &all,
        &[all.len()],
        &v,
    )?;
    assert!(rep.passes(default_gradcheck_tolerance::<f64>()), "{rep:?}");
    Ok(())
}

/// A model using every layer type; the loss is a random projection of all outputs.
#[test]
fn every_registered_parameter_receives_a_nonzero_gradient() -> Result<(), Error> {
    let mut store = ParamStore::<f64>::new(21);
    let conv = Conv2d::new(&mut store, "conv", Conv2dConfig::new(2, 4, 3).padding(1))?;
    let gn = GroupNorm::new(&mut store, "gn", 2, 4, 1e-5, true)?;
    let head = Linear::new(&mut store, "head", 4, 3, true)?;
    let f = Mlp::builder(3, 3)
        .hidden(&[6, 6])
        .activation(Activation::Softplus)
        .time_input(true)
        .build(&mut store, "f")?;
    let gru = GruCell::new(&mut store, "gru", 3, 5, true)?;
    let out = Linear::new(&mut store, "out", 5, 2, false)?;
    let names: Vec<&str> = store.names().collect();
    assert_eq!(
        names,
        [
            "conv.weight",
            "conv.bias",
            "gn.weight",
            "gn.bias",
            "head.weight",
            "head.bias",
            "f.0.weight",
            "f.0.bias",
            "f.2.weight",
            "f.2.bias",
            "f.4.weight",
            "f.4.bias",
            "gru.weight_ih",
            "gru.weight_hh",
            "gru.bias_ih",
            "gru.bias_hh",
            "out.weight",
        ]
    );
    let mut tape = Tape::new();
    let mut grad = store.zeros_like();
    for _ in 0..2 {
        tape.reset();
        tape.set_recording(true);
        let th = store.leaf(&tape)?;
        let x = tape.constant(&noise::<f64>(2 * 2 * 4 * 4, 22), &[2, 2, 4, 4])?;
        let feat = gn
            .forward(th, conv.forward(th, x))
            .tanh()
            .global_avg_pool2d();
        let z = Module::forward(&head, th, feat); // through the trait
        let t = tape.constant(&[0.25], &[])?;
        let dz = f.forward_t(th, z, t);
        let h0 = tape.constant(&noise::<f64>(2 * 5, 23), &[2, 5])?;
        let h1 = gru.forward(th, dz, h0);
        let y = out.forward(th, h1);
        let seed = noise::<f64>(2 * 2, 24);
        tape.backward(y, &seed)?;
        th.grad_into(&mut grad)?;
    }
    assert!(store.params_without_gradient(&grad).is_empty());
    // ... and a parameter left out of the forward pass is reported.
    let mut grad_cut = grad.clone();
    if let Some(g) = store
        .view("gru.bias_hh")
        .and_then(|v| v.slice_mut(&mut grad_cut))
    {
        g.fill(0.0);
    }
    assert_eq!(store.params_without_gradient(&grad_cut), ["gru.bias_hh"]);
    for info in store.params() {
        let g = info.view.slice(&grad).unwrap_or(&[]);
        assert_eq!(g.len(), info.view.len());
        let zeros = g.iter().filter(|v| **v == 0.0 || !v.is_finite()).count();
        assert_eq!(
            zeros,
            0,
            "{}: {zeros} of {} gradients are zero",
            info.name,
            g.len()
        );
    }
    Ok(())
}

#[test]
fn linear_and_gru_forward_match_hand_computation() -> Result<(), Error> {
    // Linear: y = x Wᵀ + b with W [2, 3] in PyTorch layout.
    let mut store = ParamStore::<f64>::new(0);
    let lin = Linear::new(&mut store, "fc", 3, 2, true)?;
    store
        .as_mut_slice()
        .copy_from_slice(&[1.0, 2.0, 3.0, -1.0, 0.5, 0.0, 0.25, -0.5]);
    let tape = Tape::new();
    let th = store.leaf(&tape)?;
    let x = tape.constant(&[1.0, 1.0, 1.0, 2.0, 0.0, -1.0], &[2, 3])?;
    let y = lin.forward(th, x).value()?;
    assert_eq!(y, vec![6.25, -1.0, -0.75, -2.5]);

    // GRU with input 1, hidden 1: gates r, z, n stacked.
    let mut store = ParamStore::<f64>::new(0);
    let gru = GruCell::new(&mut store, "g", 1, 1, true)?;
    let (wir, wiz, win) = (0.5, -0.3, 0.8);
    let (whr, whz, whn) = (0.2, 0.4, -0.6);
    let (bir, biz, bin) = (0.1, 0.0, -0.2);
    let (bhr, bhz, bhn) = (0.05, 0.3, 0.1);
    store
        .as_mut_slice()
        .copy_from_slice(&[wir, wiz, win, whr, whz, whn, bir, biz, bin, bhr, bhz, bhn]);
    let (xv, hv) = (0.7f64, -0.4f64);
    let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
    let r = sig(wir * xv + bir + whr * hv + bhr);
    let z = sig(wiz * xv + biz + whz * hv + bhz);
    let n = (win * xv + bin + r * (whn * hv + bhn)).tanh();
    let want = (1.0 - z) * n + z * hv;
    let tape = Tape::new();
    let th = store.leaf(&tape)?;
    let x = tape.constant(&[xv], &[1, 1])?;
    let h = tape.constant(&[hv], &[1, 1])?;
    let got = gru.forward(th, x, h).item()?;
    assert!((got - want).abs() < 1e-15, "{got} vs {want}");
    Ok(())
}

#[test]
fn initialisation_is_seeded_bounded_and_pytorch_like() -> Result<(), Error> {
    let build = |seed: u64| -> Result<ParamStore<f64>, Error> {
        let mut s = ParamStore::new(seed);
        Linear::new(&mut s, "a", 256, 128, true)?;
        GroupNorm::new(&mut s, "gn", 4, 8, 1e-5, true)?;
        Ok(s)
    };
    let s1 = build(7)?;
    let s2 = build(7)?;
    let s3 = build(8)?;
    assert_eq!(s1.as_slice(), s2.as_slice());
    assert_ne!(s1.as_slice(), s3.as_slice());
    // U(−b, b) with b = 1/√256: bounds and variance b²/3 (128·256 draws: 2% is > 10 σ).
    let w = s1.get("a.weight").unwrap_or(&[]);
    let b = 1.0 / 16.0;
    assert!(w.iter().all(|v| v.abs() <= b));
    let var = w.iter().map(|v| v * v).sum::<f64>() / w.len() as f64;
    assert!((var / (b * b / 3.0) - 1.0).abs() < 0.02, "variance {var}");
    let mean = w.iter().sum::<f64>() / w.len() as f64;
    assert!(mean.abs() < 0.01 * b, "mean {mean}");
    assert!(s1.get("a.bias").unwrap_or(&[]).iter().all(|v| v.abs() <= b));
    assert_eq!(s1.get("gn.weight"), Some(&[1.0; 8][..]));
    assert_eq!(s1.get("gn.bias"), Some(&[0.0; 8][..]));
    // f32 is the rounding of f64, for the same seed.
    let mut s32 = ParamStore::<f32>::new(7);
    Linear::new(&mut s32, "a", 256, 128, true)?;
    let w32 = s32.get("a.weight").unwrap_or(&[]);
    assert!(w32.iter().zip(w).all(|(a, b)| *a == *b as f32));
    // A tensor's values depend on its name and the seed only, not on other layers.
    let mut s4 = ParamStore::<f64>::new(7);
    Linear::new(&mut s4, "other", 5, 5, true)?;
    Linear::new(&mut s4, "a", 256, 128, true)?;
    assert_eq!(s4.get("a.weight"), s1.get("a.weight"));
    // Re-initialisation with the same seed restores the values.
    let mut s5 = s1.clone();
    s5.as_mut_slice().fill(0.0);
    s5.reinitialize(7);
    assert_eq!(s5.as_slice(), s1.as_slice());
    Ok(())
}

#[test]
fn init_variants_and_insert() -> Result<(), Error> {
    let mut s = ParamStore::<f64>::new(3);
    let c = s.register("c", &[4], Init::Constant(2.5))?;
    let u = s.register(
        "u",
        &[1000],
        Init::Uniform {
            low: 2.0,
            high: 3.0,
        },
    )?;
    let n = s.register(
        "n",
        &[4000],
        Init::Normal {
            mean: 1.0,
            std: 0.5,
        },
    )?;
    let e = s.insert("e", &[2, 2], &[1.0, 2.0, 3.0, 4.0])?;
    assert_eq!(c.slice(s.as_slice()), Some(&[2.5; 4][..]));
    assert!(
        u.slice(s.as_slice())
            .unwrap_or(&[])
            .iter()
            .all(|v| (2.0..3.0).contains(v))
    );
    let nv = n.slice(s.as_slice()).unwrap_or(&[]);
    let mean = nv.iter().sum::<f64>() / nv.len() as f64;
    let sd = (nv.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / nv.len() as f64).sqrt();
    assert!(
        (mean - 1.0).abs() < 0.05 && (sd - 0.5).abs() < 0.05,
        "{mean} {sd}"
    );
    assert_eq!(e.offset(), 5004);
    assert_eq!(s.get("e"), Some(&[1.0, 2.0, 3.0, 4.0][..]));
    assert_eq!(s.n_params(), 5008);
    assert_eq!(s.n_tensors(), 4);
    // Re-initialisation keeps inserted values.
    s.reinitialize(99);
    assert_eq!(s.get("e"), Some(&[1.0, 2.0, 3.0, 4.0][..]));
    Ok(())
}

#[test]
fn errors_are_reported_not_panics() -> Result<(), Error> {
    let mut s = ParamStore::<f64>::new(0);
    Linear::new(&mut s, "fc", 2, 2, true)?;
    assert_eq!(
        Linear::new(&mut s, "fc", 2, 2, true),
        Err(Error::DuplicateParameter {
            name: "fc.weight".into()
        })
    );
    assert!(matches!(
        GroupNorm::new(&mut s, "g", 1, 1, -1.0, true),
        Err(Error::InvalidHyperparameter { name: "eps", .. })
    ));
    assert!(Linear::new(&mut s, "z", 0, 2, true).is_err());
    assert!(s.register("", &[1], Init::Zeros).is_err());
    assert!(s.register("big", &[1, 1, 1, 1, 1], Init::Zeros).is_err());
    assert!(
        s.register(
            "u",
            &[1],
            Init::Uniform {
                low: 1.0,
                high: 1.0
            }
        )
        .is_err()
    );
    assert!(
        s.register("k", &[1], Init::KaimingUniform { fan_in: 0 })
            .is_err()
    );
    assert!(
        s.register(
            "nrm",
            &[1],
            Init::Normal {
                mean: 0.0,
                std: -1.0
            }
        )
        .is_err()
    );
    assert!(s.insert("ins", &[3], &[1.0]).is_err());
    assert!(s.register("huge", &[usize::MAX, 2], Init::Zeros).is_err());
    assert!(
        s.register("huge2", &[1 << 40, 1 << 40], Init::Zeros)
            .is_err()
    );
    assert!(s.insert("huge3", &[usize::MAX, 3], &[1.0]).is_err());
    assert!(GroupNorm::new(&mut s, "gn", 3, 4, 1e-5, true).is_err());
    assert!(GroupNorm::new(&mut s, "gn", 2, 4, 0.0, true).is_err());
    assert!(Conv2d::new(&mut s, "cv", Conv2dConfig::new(1, 1, 3).stride(0)).is_err());
    assert!(s.copy_from_slice(&[0.0]).is_err());
    // Failed registrations leave the store as it was.
    assert_eq!(s.n_tensors(), 2);
    assert_eq!(s.n_params(), 6);

    // Shape errors in forward passes surface at the next read.
    let lin = Linear::new(&mut s, "fc2", 3, 2, true)?;
    let gn = GroupNorm::new(&mut s, "gn2", 2, 4, 1e-5, true)?;
    let mlp_t = Mlp::builder(2, 2).time_input(true).build(&mut s, "mt")?;
    let mlp = Mlp::builder(2, 2).build(&mut s, "m")?;
    let gru = GruCell::new(&mut s, "gru", 2, 3, true)?;
    let mut tape = Tape::<f64>::new();
    type Case = fn(
        &autodiff::Tape<f64>,
        autodiff::Var<'_, f64>,
        &(Linear, GroupNorm, Mlp, Mlp, GruCell),
    ) -> Result<(), Error>;
    let cases: [Case; 6] = [
        |t, th, m| {
            let x = t.constant(&[1.0; 4], &[2, 2])?;
            m.0.forward(th, x).value().map(|_| ())
        },
        |t, th, m| {
            let x = t.constant(&[1.0; 6], &[1, 6])?;
            m.1.forward(th, x).value().map(|_| ())
        },
        |t, th, m| {
            let x = t.constant(&[1.0; 4], &[2, 2])?;
            m.2.forward(th, x).value().map(|_| ())
        },
        |t, th, m| {
            let x = t.constant(&[1.0; 4], &[2, 2])?;
            let tt = t.constant(&[1.0], &[1])?;
            m.3.forward_t(th, x, tt).value().map(|_| ())
        },
        |t, th, m| {
            let x = t.constant(&[1.0; 4], &[2, 2])?;
            let tt = t.constant(&[1.0; 3], &[3])?;
            m.2.forward_t(th, x, tt).value().map(|_| ())
        },
        |t, th, m| {
            let x = t.constant(&[1.0; 4], &[2, 2])?;
            let h = t.constant(&[1.0; 3], &[1, 3])?;
            m.4.forward(th, x, h).value().map(|_| ())
        },
    ];
    let models = (lin, gn, mlp_t, mlp, gru);
    for (i, case) in cases.iter().enumerate() {
        tape.reset();
        let th = s.leaf(&tape)?;
        assert!(case(&tape, th, &models).is_err(), "case {i} should fail");
    }
    Ok(())
}

#[test]
fn conv_group_norm_and_gru_gradcheck_in_f32() -> Result<(), Error> {
    let tol = default_gradcheck_tolerance::<f32>();
    let mut store = ParamStore::<f32>::new(31);
    let conv = Conv2d::new(&mut store, "c", Conv2dConfig::new(2, 2, 3).padding(1))?;
    let gn = GroupNorm::new(&mut store, "g", 1, 2, 1e-5, true)?;
    let p = store.n_params();
    let all = joint(&store, &noise::<f32>(2 * 16, 32));
    let v = noise::<f32>(2 * 16, 33);
    let rep = gradcheck(
        |a| {
            let th = a.view(0, &[p]);
            gn.forward(th, conv.forward(th, a.view(p, &[1, 2, 4, 4])))
        },
        &all,
        &[all.len()],
        &v,
    )?;
    assert!(rep.passes(tol), "conv+gn f32: {rep:?}");

    let mut store = ParamStore::<f32>::new(34);
    let gru = GruCell::new(&mut store, "gru", 2, 3, true)?;
    let p = store.n_params();
    let all = joint(&store, &noise::<f32>(2 * 2 + 2 * 3, 35));
    let v = noise::<f32>(2 * 3, 36);
    let rep = gradcheck(
        |a| gru.forward(a.view(0, &[p]), a.view(p, &[2, 2]), a.view(p + 4, &[2, 3])),
        &all,
        &[all.len()],
        &v,
    )?;
    assert!(rep.passes(tol), "gru f32: {rep:?}");
    Ok(())
}

#[test]
fn concat_squash_gradcheck_and_time_dependence() -> Result<(), Error> {
    let mut store = ParamStore::<f64>::new(41);
    let cs = ConcatSquashLinear::new(&mut store, "cs", 3, 4)?;
    let names: Vec<&str> = store.names().collect();
    assert_eq!(
        names,
        [
            "cs._layer.weight",
            "cs._layer.bias",
            "cs._hyper_gate.weight",
            "cs._hyper_gate.bias",
            "cs._hyper_bias.weight"
        ]
    );
    let p = store.n_params();
    let mut x = noise::<f64>(2 * 3, 42);
    x.push(0.7);
    let all = joint(&store, &x);
    let v = noise::<f64>(2 * 4, 43);
    let rep = gradcheck(
        |a| cs.forward(a.view(0, &[p]), a.view(p, &[2, 3]), a.view(p + 6, &[])),
        &all,
        &[all.len()],
        &v,
    )?;
    assert!(rep.passes(default_gradcheck_tolerance::<f64>()), "{rep:?}");
    // Every parameter gets a gradient, and at t = 0 the output is the gated layer.
    let (grad, y0, lin) = {
        let tape = Tape::new();
        tape.set_recording(true);
        let th = store.leaf(&tape)?;
        let xv = tape.constant(&x[..6], &[2, 3])?;
        let t = tape.constant(&[0.7], &[1])?;
        let y = cs.forward(th, xv, t);
        tape.backward(y, &v)?;
        let t0 = tape.constant(&[0.0], &[])?;
        let y0 = cs.forward(th, xv, t0).value()?;
        // A Linear registered first in a store with the same seed has the same view and
        // the same values as the `_layer` part.
        let lin_layer = Linear::new(&mut ParamStore::<f64>::new(41), "cs._layer", 3, 4, true)?;
        let lin = lin_layer.forward(th, xv).value()?;
        (th.grad()?, y0, lin)
    };
    assert!(store.params_without_gradient(&grad).is_empty());
    let g0: Vec<f64> = store
        .get("cs._hyper_gate.bias")
        .unwrap_or(&[])
        .iter()
        .map(|b| 1.0 / (1.0 + (-b).exp()))
        .collect();
    for (i, (a, b)) in y0.iter().zip(&lin).enumerate() {
        assert!(
            (a - b * g0[i % 4]).abs() < 1e-14,
            "{a} vs {}",
            b * g0[i % 4]
        );
    }
    Ok(())
}

#[test]
fn layers_register_all_or_nothing_and_custom_inits() -> Result<(), Error> {
    let mut s = ParamStore::<f64>::new(0);
    s.register("g.bias_hh", &[3], Init::Zeros)?;
    s.register("m.4.weight", &[1], Init::Zeros)?;
    let (nt, np) = (s.n_tensors(), s.n_params());
    // The GRU's last tensor and the MLP's last layer collide: nothing of them stays.
    assert!(GruCell::new(&mut s, "g", 2, 1, true).is_err());
    assert!(
        Mlp::builder(2, 2)
            .hidden(&[3, 3])
            .build(&mut s, "m")
            .is_err()
    );
    assert_eq!((s.n_tensors(), s.n_params()), (nt, np));
    assert!(s.view("g.weight_ih").is_none() && s.view("m.0.weight").is_none());

    // torchdiffeq-style initialisation through the builder.
    let mlp = Mlp::builder(2, 2)
        .hidden(&[50])
        .weight_init(Init::Normal {
            mean: 0.0,
            std: 0.1,
        })
        .bias_init(Init::Zeros)
        .build(&mut s, "f")?;
    assert_eq!(mlp.layers().len(), 2);
    assert!(
        s.get("f.0.bias")
            .unwrap_or(&[1.0])
            .iter()
            .all(|v| *v == 0.0)
    );
    let w = s.get("f.2.weight").unwrap_or(&[]);
    let sd = (w.iter().map(|v| v * v).sum::<f64>() / w.len() as f64).sqrt();
    assert!(w.len() == 100 && (sd - 0.1).abs() < 0.03, "{sd}");
    let lin = Linear::with_init(&mut s, "l", 3, 2, Init::Ones, None)?;
    assert!(lin.bias().is_none());
    assert_eq!(s.get("l.weight"), Some(&[1.0; 6][..]));
    Ok(())
}

#[test]
fn public_types_are_send_sync_clone() {
    fn check<X: Send + Sync + Clone>() {}
    check::<ParamStore<f32>>();
    check::<ParamStore<f64>>();
    check::<Linear>();
    check::<Mlp>();
    check::<Conv2d>();
    check::<GroupNorm>();
    check::<GruCell>();
    check::<autodiff::optim::Adam<f64>>();
    check::<autodiff::optim::Sgd<f32>>();
    check::<autodiff::optim::Schedule>();
    check::<autodiff::io::CheckpointError>();
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]

        /// Random widths, batch, seed and activation: the MLP's gradient in (θ, x, t)
        /// agrees with central differences.
        #[test]
        fn mlp_gradient_matches_finite_differences(
            d_in in 1usize..4,
            d_out in 1usize..4,
            h in 1usize..7,
            depth in 0usize..3,
            batch in 1usize..4,
            act in 0usize..4,
            seed in 0u64..1000,
        ) {
            let act = [Activation::Tanh, Activation::Softplus, Activation::Sigmoid, Activation::Silu][act];
            let mut store = ParamStore::<f64>::new(seed);
            let widths = vec![h; depth];
            let mlp = Mlp::builder(d_in, d_out)
                .hidden(&widths)
                .activation(act)
                .time_input(true)
                .build(&mut store, "f")
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let p = store.n_params();
            let mut x = noise::<f64>(batch * d_in, seed + 1);
            x.push(0.3);
            let all = joint(&store, &x);
            let v = noise::<f64>(batch * d_out, seed + 2);
            let rep = gradcheck(
                |a| mlp.forward_t(a.view(0, &[p]), a.view(p, &[batch, d_in]), a.view(p + batch * d_in, &[1])),
                &all,
                &[all.len()],
                &v,
            ).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(rep.passes(default_gradcheck_tolerance::<f64>()), "{:?}", rep);
        }

        /// Random channel counts, groups, kernel, stride and padding: conv → group norm
        /// gradient in (θ, x) agrees with central differences.
        #[test]
        fn conv_group_norm_gradient_matches_finite_differences(
            c in 1usize..3,
            groups in 1usize..3,
            per_group in 1usize..3,
            k in 1usize..4,
            stride in 1usize..3,
            pad in 0usize..2,
            seed in 0u64..1000,
        ) {
            let o = groups * per_group;
            let hw = 5;
            let mut store = ParamStore::<f64>::new(seed);
            let conv = Conv2d::new(&mut store, "c", Conv2dConfig::new(c, o, k).stride(stride).padding(pad))
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let gn = GroupNorm::new(&mut store, "g", groups, o, 1e-5, true)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let n_gn = 2 * o;
            let gvals = noise::<f64>(n_gn, seed + 3);
            let p = store.n_params();
            store.as_mut_slice()[p - n_gn..].copy_from_slice(&gvals);
            let xd = [2usize, c, hw, hw];
            let all = joint(&store, &noise::<f64>(2 * c * hw * hw, seed + 4));
            let ho = (hw + 2 * pad - k) / stride + 1;
            let v = noise::<f64>(2 * o * ho * ho, seed + 5);
            let rep = gradcheck(
                |a| {
                    let th = a.view(0, &[p]);
                    gn.forward(th, conv.forward(th, a.view(p, &xd)))
                },
                &all,
                &[all.len()],
                &v,
            ).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(rep.passes(default_gradcheck_tolerance::<f64>()), "{:?}", rep);
        }
    }
}
