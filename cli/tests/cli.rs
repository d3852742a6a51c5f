//! End-to-end runs of the `neuralode` binary on small settings: exit status, the files
//! written, and that they parse.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn neuralode(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_neuralode"))
        .args(args)
        .output()
        .expect("the neuralode binary runs")
}

/// A fresh output directory under the target's temporary directory.
fn out_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn assert_images(dir: &Path, stem: &str) {
    let png = std::fs::read(dir.join(format!("{stem}.png"))).expect("png written");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{stem}.png is a PNG");
    let svg = std::fs::read_to_string(dir.join(format!("{stem}.svg"))).expect("svg written");
    assert!(svg.contains("<svg"), "{stem}.svg is an SVG");
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "neuralode failed:\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn solve_writes_trajectory_plots_and_stats() {
    let dir = out_dir("solve");
    let d = dir.to_str().unwrap();
    ok(&neuralode(&[
        "solve",
        "--problem",
        "linear",
        "--method",
        "dop853",
        "--rtol",
        "1e-10",
        "--atol",
        "1e-10",
        "--samples",
        "50",
        "--out",
        d,
    ]));
    let report = json(&dir.join("solve.json"));
    let error = report["report"]["error_end"].as_f64().unwrap();
    assert!(error < 1e-7, "linear system end error {error}");
    assert!(report["report"]["nfe"].as_u64().unwrap() > 0);
    let csv = std::fs::read_to_string(dir.join("trajectory.csv")).unwrap();
    assert_eq!(csv.lines().count(), 51);
    assert_images(&dir, "trajectory");
    assert_images(&dir, "phase");
}

#[test]
fn solve_work_precision_falls_with_tolerance() {
    let dir = out_dir("work_precision");
    ok(&neuralode(&[
        "solve",
        "--problem",
        "arenstorf",
        "--work-precision",
        "--samples",
        "10",
        "--out",
        dir.to_str().unwrap(),
    ]));
    let rows = json(&dir.join("work_precision.json"));
    let rows = rows.as_array().unwrap();
    let error = |m: &str, tol: f64| {
        rows.iter()
            .find(|r| r["method"] == m && (r["tol"].as_f64().unwrap() / tol - 1.0).abs() < 1e-9)
            .map(|r| r["error_end"].as_f64().unwrap())
            .unwrap()
    };
    for m in ["dopri5", "dop853", "tsit5"] {
        assert!(error(m, 1e-10) < 1e-3 * error(m, 1e-4), "{m}");
    }
    assert_images(&dir, "work_precision");
}

#[test]
fn rod_design_recovers_the_heater() {
    let dir = out_dir("rod");
    ok(&neuralode(&[
        "rod",
        "design",
        "--n",
        "100",
        "--plate",
        "12",
        "--iters",
        "300",
        "--out",
        dir.to_str().unwrap(),
    ]));
    let report = json(&dir.join("rod_design.json"));
    let rod = &report["runs"][0];
    let j0 = rod["initial_objective"].as_f64().unwrap();
    let j = rod["final_misfit"].as_f64().unwrap();
    assert!(j < 1e-6 * j0, "misfit {j} from {j0}");
    assert!(rod["relative_error_to_s_true"].as_f64().unwrap() < 0.05);
    assert_eq!(report["runs"].as_array().unwrap().len(), 2);
    assert_images(&dir, "rod_design");
    assert_images(&dir, "rod_design_history");
}

#[test]
fn bad_flags_and_values_are_reported() {
    let out = neuralode(&["solve", "--method", "rk5"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("rk5"));
    let out = neuralode(&[
        "solve",
        "--rtol",
        "-1",
        "--out",
        out_dir("bad").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("rtol"));
    let out = neuralode(&["rod", "design", "--n", "0"]);
    assert!(!out.status.success());
    for cmd in [
        &["--help"][..],
        &["solve", "--help"],
        &["rod", "design", "--help"],
    ] {
        ok(&neuralode(cmd));
    }
}

/// Mean training loss over the first and the last `k` iterations of a metrics file.
fn loss_ends(metrics: &serde_json::Value, k: usize) -> (f64, f64) {
    let h = metrics["report"]["history"].as_array().unwrap();
    let mean = |s: &[serde_json::Value]| {
        s.iter().map(|p| p["loss"].as_f64().unwrap()).sum::<f64>() / s.len() as f64
    };
    (mean(&h[..k]), mean(&h[h.len() - k..]))
}

#[test]
fn train_fits_the_spiral_and_resumes() {
    let dir = out_dir("train");
    let d = dir.to_str().unwrap();
    let args = [
        "train", "--iters", "300", "--batch", "8", "--quiet", "--seed", "3", "--out", d,
    ];
    ok(&neuralode(&args));
    let metrics = json(&dir.join("metrics.json"));
    let (first, last) = loss_ends(&metrics, 10);
    assert!(last < 0.1 * first, "window loss {first:.3e} -> {last:.3e}");
    let report = &metrics["report"];
    assert!(
        report["final_trajectory_mae"].as_f64().unwrap()
            < report["initial_trajectory_mae"].as_f64().unwrap()
    );
    assert_eq!(metrics["settings"]["seed"], 3);
    for stem in ["trajectory", "phase", "vector_field", "loss"] {
        assert_images(&dir, stem);
    }
    let params = std::fs::read(dir.join("params.safetensors")).unwrap();
    assert!(params.len() > 8 * 252);
    // The learned trajectory at the data's times, starting from the data's first state.
    let pred = models::data::Trajectory::read_csv(&dir.join("prediction.csv")).unwrap();
    assert_eq!((pred.len(), pred.dim()), (1000, 2));
    assert_eq!(pred.y(0), &[2.0, 0.0]);

    // Same seed, same numbers.
    let again = out_dir("train_again");
    let mut args2 = args;
    args2[9] = again.to_str().unwrap();
    ok(&neuralode(&args2));
    let m2 = json(&again.join("metrics.json"));
    assert_eq!(m2["report"]["history"], metrics["report"]["history"]);

    // Two worker threads share each batch: deterministic, and training still works.
    let threaded = out_dir("train_threads");
    let mut args3 = args;
    args3[9] = threaded.to_str().unwrap();
    let mut with_threads = args3.to_vec();
    with_threads.extend(["--threads", "2"]);
    ok(&neuralode(&with_threads));
    let m3 = json(&threaded.join("metrics.json"));
    let (first3, last3) = loss_ends(&m3, 10);
    assert!(
        last3 < 0.1 * first3,
        "threads 2: {first3:.3e} -> {last3:.3e}"
    );
    ok(&neuralode(&with_threads));
    assert_eq!(
        json(&threaded.join("metrics.json"))["report"]["history"],
        m3["report"]["history"]
    );

    // Resuming starts from the trained parameters: the first losses are already low.
    let resumed = out_dir("train_resumed");
    let p = dir.join("params.safetensors");
    ok(&neuralode(&[
        "train",
        "--iters",
        "20",
        "--batch",
        "8",
        "--quiet",
        "--resume",
        p.to_str().unwrap(),
        "--out",
        resumed.to_str().unwrap(),
    ]));
    let (first_resumed, _) = loss_ends(&json(&resumed.join("metrics.json")), 10);
    assert!(
        first_resumed < 0.3 * first,
        "resumed at {first_resumed:.3e}, fresh {first:.3e}"
    );
    // Every run is appended to runs.jsonl in its output directory.
    let runs = std::fs::read_to_string(dir.join("runs.jsonl")).unwrap();
    assert_eq!(runs.lines().count(), 1);
    for line in runs.lines() {
        let _: serde_json::Value = serde_json::from_str(line).unwrap();
    }
}

#[test]
fn train_on_a_users_irregular_csv() {
    let dir = out_dir("train_csv");
    std::fs::create_dir_all(&dir).unwrap();
    // A damped rotation sampled at irregular times.
    let mut csv = String::from("time,x,y\n");
    let mut t = 0.0f64;
    for k in 0..120 {
        let (x, y) = ((-0.1 * t).exp() * t.cos(), -(-0.1 * t).exp() * t.sin());
        csv.push_str(&format!("{t},{x},{y}\n"));
        t += 0.04 + 0.03 * ((k * 7 % 5) as f64) / 4.0;
    }
    let data = dir.join("data.csv");
    std::fs::write(&data, csv).unwrap();
    ok(&neuralode(&[
        "train",
        "--data",
        data.to_str().unwrap(),
        "--features",
        "identity",
        "--iters",
        "200",
        "--batch",
        "4",
        "--window",
        "5",
        "--quiet",
        "--out",
        dir.to_str().unwrap(),
    ]));
    let (first, last) = loss_ends(&json(&dir.join("metrics.json")), 10);
    assert!(last < 0.1 * first, "window loss {first:.3e} -> {last:.3e}");
    assert_images(&dir, "phase");

    let bad = dir.join("bad.csv");
    std::fs::write(&bad, "t,x\n0,1\n0.5,oops\n").unwrap();
    let out = neuralode(&[
        "train",
        "--data",
        bad.to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.csv:3:2"), "{err}");
}

#[test]
fn sensitivity_writes_table_and_plot() {
    let dir = out_dir("sensitivity");
    ok(&neuralode(&[
        "sensitivity",
        "--widths",
        "4,16",
        "--repeats",
        "1",
        "--out",
        dir.to_str().unwrap(),
    ]));
    let report = json(&dir.join("sensitivity.json"));
    assert!(report["table"]["rows"].as_array().unwrap().len() >= 8);
    assert_images(&dir, "sensitivity");
    let out = neuralode(&["sensitivity", "--modes", "magic"]);
    assert!(!out.status.success());
}

#[test]
fn odenet_trains_the_three_models() {
    let dir = out_dir("odenet");
    ok(&neuralode(&[
        "odenet",
        "--epochs",
        "1",
        "--channels",
        "4",
        "--limit",
        "128",
        "--sweep-tols",
        "1e-2,1e-4",
        "--out",
        dir.to_str().unwrap(),
    ]));
    let report = json(&dir.join("odenet.json"));
    let rows = report["report"]["rows"].as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["model"].as_str().unwrap()).collect();
    assert_eq!(names, ["ODE-Net", "RK-Net", "ResNet"]);
    for r in rows {
        for key in [
            "test_error",
            "n_params",
            "peak_backward_bytes",
            "nfe_forward",
            "nfe_backward",
            "seconds_per_epoch",
        ] {
            let v = r[key].as_f64().unwrap_or(f64::NAN);
            assert!(v.is_finite() && v >= 0.0, "{key} = {v} in {r}");
        }
        // A few MB at this size: faer's one-time GEMM workspace (≈ 1 GB reserved per
        // thread at its first product, the field's worker threads included) must not be
        // counted.
        let peak = r["peak_backward_bytes"].as_f64().unwrap();
        assert!(peak > 0.0 && peak < 64.0 * 1024.0 * 1024.0, "{r}");
    }
    assert_eq!(rows[0]["n_params"], rows[1]["n_params"]);
    assert!(rows[0]["nfe_forward"].as_f64().unwrap() > 0.0);
    assert_eq!(
        report["report"]["memory_sweep"].as_array().unwrap().len(),
        6
    );
    for stem in ["learning_curve", "test_error", "nfe", "memory_sweep"] {
        assert_images(&dir, stem);
    }
    let out = neuralode(&["odenet", "--models", "vgg"]);
    assert!(!out.status.success());
}
