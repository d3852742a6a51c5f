//! `autodiff::io`: safetensors round trips (bit-exact, f32 and f64), the file layout
//! PyTorch / NumPy read, atomic writes, and the error cases.

use autodiff::io::{
    CheckpointError, Dtype, LoadOptions, from_safetensors_bytes, load_safetensors,
    load_safetensors_bytes_with, load_safetensors_with, read_safetensors, save_safetensors,
    to_safetensors_bytes,
};
use autodiff::nn::{Conv2d, Conv2dConfig, GroupNorm, GruCell, Linear, Mlp, ParamStore};
use autodiff::{Error, Float};
use std::path::PathBuf;

type Res = Result<(), Box<dyn std::error::Error>>;

/// A fresh directory for one test.
fn tmp_dir(name: &str) -> Result<PathBuf, std::io::Error> {
    let d = std::env::temp_dir().join(format!("autodiff-io-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

/// A store with every layer type, deterministic.
fn model<T: Float>(seed: u64) -> Result<ParamStore<T>, Error> {
    let mut s = ParamStore::new(seed);
    Conv2d::new(&mut s, "conv", Conv2dConfig::new(2, 3, 3))?;
    GroupNorm::new(&mut s, "gn", 1, 3, 1e-5, true)?;
    Mlp::builder(3, 2)
        .hidden(&[5])
        .time_input(true)
        .build(&mut s, "f")?;
    GruCell::new(&mut s, "gru", 2, 4, true)?;
    Linear::new(&mut s, "head", 4, 1, false)?;
    Ok(s)
}

fn bits<T: Float>(s: &ParamStore<T>) -> Vec<u64> {
    s.as_slice()
        .iter()
        .map(|v| {
            let x = *v;
            // to_f64_lossy is exact for f32 except NaN payloads, checked separately.
            x.to_f64_lossy().to_bits()
        })
        .collect()
}

#[test]
fn round_trip_is_bit_exact_f64_with_special_values() -> Res {
    let dir = tmp_dir("rt64")?;
    let path = dir.join("m.safetensors");
    let mut a = model::<f64>(1)?;
    let specials = [
        -0.0,
        f64::MIN_POSITIVE / 8.0, // subnormal
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::from_bits(0x7ff8_0000_dead_beef), // NaN with a payload
        f64::MAX,
        1.0 + f64::EPSILON,
    ];
    a.as_mut_slice()[..specials.len()].copy_from_slice(&specials);
    save_safetensors(&path, &a)?;
    let mut b = model::<f64>(2)?;
    assert_ne!(bits(&a), bits(&b));
    load_safetensors(&path, &mut b)?;
    let ab: Vec<u64> = a.as_slice().iter().map(|v| v.to_bits()).collect();
    let bb: Vec<u64> = b.as_slice().iter().map(|v| v.to_bits()).collect();
    assert_eq!(ab, bb);
    // Reading into a new store restores names, order, shapes and values.
    let c = read_safetensors::<f64>(&path, false)?;
    assert_eq!(c.params().len(), a.params().len());
    for (pa, pc) in a.params().iter().zip(c.params()) {
        assert_eq!((&pa.name, pa.view), (&pc.name, pc.view));
    }
    let cb: Vec<u64> = c.as_slice().iter().map(|v| v.to_bits()).collect();
    assert_eq!(ab, cb);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[test]
fn round_trip_is_bit_exact_f32_including_nan_payloads() -> Res {
    let mut a = model::<f32>(3)?;
    let specials = [
        -0.0f32,
        f32::from_bits(1), // smallest subnormal
        f32::from_bits(0x7fc0_1234),
        f32::from_bits(0xff80_0001), // signalling NaN pattern
        f32::INFINITY,
    ];
    a.as_mut_slice()[..specials.len()].copy_from_slice(&specials);
    let bytes = to_safetensors_bytes(&a)?;
    let mut b = model::<f32>(4)?;
    load_safetensors_bytes_with(&bytes, &mut b, &LoadOptions::default())?;
    let ab: Vec<u32> = a.as_slice().iter().map(|v| v.to_bits()).collect();
    let bb: Vec<u32> = b.as_slice().iter().map(|v| v.to_bits()).collect();
    assert_eq!(ab, bb);
    let c = from_safetensors_bytes::<f32>(&bytes, false)?;
    let cb: Vec<u32> = c.as_slice().iter().map(|v| v.to_bits()).collect();
    assert_eq!(ab, cb);
    assert_eq!(bits(&model::<f32>(3)?).len(), a.n_params());
    Ok(())
}

/// Parses the file by hand, following the format specification (8-byte little-endian
/// header length, JSON header, raw little-endian data), independently of the
/// `safetensors` crate: what PyTorch's and NumPy's loaders do.
#[test]
fn file_layout_follows_the_safetensors_specification() -> Res {
    let s = model::<f32>(5)?;
    let bytes = to_safetensors_bytes(&s)?;
    let n = u64::from_le_bytes(bytes[..8].try_into()?) as usize;
    assert_eq!(n % 8, 0, "header padded to 8 bytes");
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n])?;
    let data = &bytes[8 + n..];
    let meta = &header["__metadata__"];
    assert_eq!(meta["format"], "pt");
    let mut covered = 0;
    for p in s.params() {
        let t = &header[p.name.as_str()];
        assert_eq!(t["dtype"], "F32", "{}", p.name);
        let shape: Vec<usize> = serde_json::from_value(t["shape"].clone())?;
        assert_eq!(shape, p.view.shape().dims());
        let off: (usize, usize) = serde_json::from_value(t["data_offsets"].clone())?;
        assert_eq!(off.1 - off.0, 4 * p.view.len());
        covered += off.1 - off.0;
        let vals: Vec<f32> = data[off.0..off.1]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(Some(&vals[..]), s.get(&p.name), "{}", p.name);
    }
    assert_eq!(covered, data.len());
    // f64 stores write F64.
    let s64 = model::<f64>(5)?;
    let b64 = to_safetensors_bytes(&s64)?;
    let n = u64::from_le_bytes(b64[..8].try_into()?) as usize;
    let h: serde_json::Value = serde_json::from_slice(&b64[8..8 + n])?;
    assert_eq!(h["gru.weight_hh"]["dtype"], "F64");
    assert_eq!(h["gru.weight_hh"]["shape"], serde_json::json!([12, 4]));
    Ok(())
}

#[test]
fn writes_are_atomic_and_leave_no_temporary_files() -> Res {
    let dir = tmp_dir("atomic")?;
    let path = dir.join("ckpt.safetensors");
    let a = model::<f64>(6)?;
    let b = model::<f64>(7)?;
    save_safetensors(&path, &a)?;
    save_safetensors(&path, &b)?; // replaces
    let entries: Vec<_> = std::fs::read_dir(&dir)?.collect::<Result<_, _>>()?;
    assert_eq!(entries.len(), 1, "{entries:?}");
    let c = read_safetensors::<f64>(&path, false)?;
    assert_eq!(c.as_slice(), b.as_slice());

    // A failing rename (the destination is a directory) keeps it and cleans up.
    let blocker = dir.join("blocked.safetensors");
    std::fs::create_dir(&blocker)?;
    std::fs::write(blocker.join("keep"), b"x")?;
    let e = save_safetensors(&blocker, &a);
    assert!(matches!(e, Err(CheckpointError::Io { .. })), "{e:?}");
    assert_eq!(std::fs::read(blocker.join("keep"))?, b"x");
    let names: Vec<String> = std::fs::read_dir(&dir)?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()?;
    assert!(names.iter().all(|n| !n.contains(".tmp-")), "{names:?}");

    // A missing directory is an I/O error naming the path.
    let e = save_safetensors(dir.join("no/such/dir/x.safetensors"), &a);
    match e {
        Err(CheckpointError::Io { path, .. }) => {
            assert!(path.to_string_lossy().contains("no/such"))
        }
        other => panic!("{other:?}"),
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[test]
fn load_errors_name_the_tensor_and_leave_the_store_unchanged() -> Res {
    let full = to_safetensors_bytes(&model::<f64>(8)?)?;

    // Missing tensor: the file lacks "extra.weight".
    let mut bigger = model::<f64>(9)?;
    Linear::new(&mut bigger, "extra", 2, 2, true)?;
    let before = bigger.as_slice().to_vec();
    let e = load_safetensors_bytes_with(&full, &mut bigger, &LoadOptions::default());
    assert_eq!(
        e,
        Err(CheckpointError::MissingTensor {
            name: "extra.weight".into()
        })
    );
    assert_eq!(bigger.as_slice(), &before[..]);
    // ... allowed: the rest loads, the missing tensors keep their values.
    let opts = LoadOptions {
        allow_missing: true,
        ..LoadOptions::default()
    };
    load_safetensors_bytes_with(&full, &mut bigger, &opts)?;
    assert_eq!(
        bigger.get("gru.bias_hh"),
        model::<f64>(8)?.get("gru.bias_hh")
    );
    let eb = bigger.view("extra.bias").ok_or("no extra.bias")?;
    assert_eq!(bigger.get("extra.bias"), eb.slice(&before));

    // Unexpected tensor: the model lacks "head.weight".
    let mut smaller = ParamStore::<f64>::new(0);
    Conv2d::new(&mut smaller, "conv", Conv2dConfig::new(2, 3, 3))?;
    let e = load_safetensors_bytes_with(&full, &mut smaller, &LoadOptions::default());
    assert!(
        matches!(e, Err(CheckpointError::UnexpectedTensor { .. })),
        "{e:?}"
    );
    let opts = LoadOptions {
        allow_unexpected: true,
        ..LoadOptions::default()
    };
    load_safetensors_bytes_with(&full, &mut smaller, &opts)?;
    assert_eq!(
        smaller.get("conv.weight"),
        model::<f64>(8)?.get("conv.weight")
    );

    // Shape mismatch.
    let mut other = ParamStore::<f64>::new(0);
    Conv2d::new(&mut other, "conv", Conv2dConfig::new(2, 3, 5))?;
    let e = load_safetensors_bytes_with(&full, &mut other, &opts);
    assert_eq!(
        e,
        Err(CheckpointError::ShapeMismatch {
            name: "conv.weight".into(),
            expected: vec![3, 2, 5, 5],
            found: vec![3, 2, 3, 3],
        })
    );
    let msg = e.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        msg.contains("conv.weight") && msg.contains("[3, 2, 3, 3]"),
        "{msg}"
    );

    // Dtype mismatch (F64 file, f32 model), and the conversion when allowed.
    let mut m32 = model::<f32>(10)?;
    let before = m32.as_slice().to_vec();
    let e = load_safetensors_bytes_with(&full, &mut m32, &LoadOptions::default());
    assert!(
        matches!(&e, Err(CheckpointError::DtypeMismatch { expected: Dtype::F32, found, .. }) if found == "F64"),
        "{e:?}"
    );
    assert_eq!(m32.as_slice(), &before[..]);
    let conv = LoadOptions {
        convert_dtype: true,
        ..LoadOptions::default()
    };
    load_safetensors_bytes_with(&full, &mut m32, &conv)?;
    let m64 = model::<f64>(8)?;
    assert!(
        m32.as_slice()
            .iter()
            .zip(m64.as_slice())
            .all(|(a, b)| *a == *b as f32)
    );
    // F32 → F64 is exact.
    let b32 = to_safetensors_bytes(&m32)?;
    let back = from_safetensors_bytes::<f64>(&b32, true)?;
    assert!(
        back.as_slice()
            .iter()
            .zip(m32.as_slice())
            .all(|(a, b)| *a == *b as f64)
    );
    assert!(from_safetensors_bytes::<f64>(&b32, false).is_err());

    // Not a safetensors file; a truncated one; a missing file.
    let e = load_safetensors_bytes_with(b"hello", &mut m32, &LoadOptions::default());
    assert!(matches!(e, Err(CheckpointError::Format { .. })), "{e:?}");
    let e = from_safetensors_bytes::<f64>(&full[..full.len() - 3], false);
    assert!(matches!(e, Err(CheckpointError::Format { .. })), "{e:?}");
    let e = load_safetensors_with("/nonexistent/x.safetensors", &mut m32, &conv);
    assert!(
        matches!(
            &e,
            Err(CheckpointError::Io {
                kind: std::io::ErrorKind::NotFound,
                ..
            })
        ),
        "{e:?}"
    );
    Ok(())
}

#[test]
fn other_dtypes_are_reported_by_name() -> Res {
    // A file written by someone else with an I64 tensor and a BF16 tensor.
    let data_i = [0u8; 16];
    let data_b = [0u8; 4];
    let t1 = safetensors::tensor::TensorView::new(safetensors::Dtype::I64, vec![2], &data_i)?;
    let t2 = safetensors::tensor::TensorView::new(safetensors::Dtype::BF16, vec![2], &data_b)?;
    let bytes = safetensors::serialize([("steps", t1), ("w", t2)], None)?;
    let e = from_safetensors_bytes::<f32>(&bytes, true);
    assert!(
        matches!(&e, Err(CheckpointError::DtypeMismatch { found, .. }) if found == "BF16" || found == "I64"),
        "{e:?}"
    );
    let mut s = ParamStore::<f32>::new(0);
    s.insert("w", &[2], &[1.0, 2.0])?;
    let opts = LoadOptions {
        allow_unexpected: true,
        convert_dtype: true,
        ..LoadOptions::default()
    };
    let e = load_safetensors_bytes_with(&bytes, &mut s, &opts);
    assert!(
        matches!(&e, Err(CheckpointError::DtypeMismatch { name, found, .. }) if name == "w" && found == "BF16"),
        "{e:?}"
    );
    // Files from elsewhere (no order metadata) load in file order.
    let t3 =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![1], &[0, 0, 128, 63])?;
    let t4 =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![1], &[0, 0, 0, 64])?;
    let bytes = safetensors::serialize([("b", t3), ("a", t4)], None)?;
    let st = from_safetensors_bytes::<f32>(&bytes, false)?;
    assert_eq!(st.names().collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(st.as_slice(), &[2.0, 1.0]);
    Ok(())
}

/// Train 10 steps, checkpoint parameters and optimizer state, train 10 more; a run
/// restored from the checkpoint reproduces the last 10 steps bit for bit.
#[test]
fn training_resumes_exactly_from_parameters_and_optimizer_state() -> Res {
    use autodiff::Tape;
    use autodiff::optim::{
        Adam, AdamConfig, Optimizer, OptimizerState, Schedule, Scheduled, Sgd, SgdConfig,
    };
    let dir = tmp_dir("resume")?;
    let (pp, ps) = (dir.join("params.safetensors"), dir.join("opt.safetensors"));
    let loss_grad = |store: &ParamStore<f32>, mlp: &Mlp, grad: &mut [f32]| -> Result<f32, Error> {
        let tape = Tape::new();
        tape.set_recording(true);
        let th = store.leaf(&tape)?;
        let x = tape.constant(&[0.1, -0.4, 0.7, 0.3, -0.2, 0.5], &[2, 3])?;
        let y = mlp.forward(th, x);
        let loss = (y - 0.5).square().mean();
        let l = loss.item()?;
        tape.backward_scalar(loss)?;
        th.grad_into(grad)?;
        Ok(l)
    };
    type MakeOptimizer = Box<dyn Fn() -> Result<Box<dyn Optimizer<f32>>, Error>>;
    let optimizers: Vec<MakeOptimizer> = vec![
        Box::new(|| {
            Ok(Box::new(Scheduled::new(
                Adam::new(AdamConfig {
                    lr: 0.05,
                    amsgrad: true,
                    ..AdamConfig::adamw()
                })?,
                Schedule::cosine(0.05, 30, 0.0)?.with_warmup(3)?,
            )))
        }),
        Box::new(|| {
            Ok(Box::new(Sgd::new(SgdConfig {
                lr: 0.1,
                momentum: 0.9,
                ..SgdConfig::default()
            })?))
        }),
    ];
    for make in &optimizers {
        let mut store = ParamStore::<f32>::new(77);
        let mlp = Mlp::builder(3, 2).hidden(&[8]).build(&mut store, "net")?;
        let mut grad = store.zeros_like();
        let mut opt = make()?;
        let initial = loss_grad(&store, &mlp, &mut grad)?;
        for _ in 0..10 {
            loss_grad(&store, &mlp, &mut grad)?;
            opt.step(store.as_mut_slice(), &grad)?;
        }
        save_safetensors(&pp, &store)?;
        autodiff::io::save_optimizer_state(&ps, &opt.state())?;
        let mut losses = Vec::new();
        for _ in 0..10 {
            losses.push(loss_grad(&store, &mlp, &mut grad)?);
            opt.step(store.as_mut_slice(), &grad)?;
        }
        // Restore into fresh objects.
        let mut store2 = ParamStore::<f32>::new(1);
        let mlp2 = Mlp::builder(3, 2).hidden(&[8]).build(&mut store2, "net")?;
        load_safetensors(&pp, &mut store2)?;
        let mut opt2 = make()?;
        let st: OptimizerState<f32> = autodiff::io::read_optimizer_state(&ps)?;
        assert_eq!(st, {
            let mut o = make()?;
            o.load_state(&st)?;
            o.state()
        });
        assert_eq!(st.n_steps, 10);
        opt2.load_state(&st)?;
        let mut losses2 = Vec::new();
        for _ in 0..10 {
            losses2.push(loss_grad(&store2, &mlp2, &mut grad)?);
            opt2.step(store2.as_mut_slice(), &grad)?;
        }
        assert_eq!(losses, losses2);
        assert_eq!(store.as_slice(), store2.as_slice());
        let best = losses.iter().copied().fold(f32::INFINITY, f32::min);
        assert!(best < 0.5 * initial, "{initial} -> {losses:?}");
    }
    // A parameter file is not an optimizer state, and states do not cross kinds.
    assert!(matches!(
        autodiff::io::read_optimizer_state::<f32>(&pp),
        Err(CheckpointError::Format { .. })
    ));
    let sgd_state = Sgd::<f32>::with_lr(0.1)?.state();
    assert!(Adam::<f32>::with_lr(0.1)?.load_state(&sgd_state).is_err());
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
