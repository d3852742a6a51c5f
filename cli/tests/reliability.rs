//! No lost training and bounded sizes (issue 19, items 1 and 2): the output directory is
//! checked before any work, an interrupted run resumes to the same numbers as an
//! uninterrupted one, the input checkpoint is never overwritten, a checkpoint of another
//! architecture is refused naming both, and oversized jobs are refused at once.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cli::CliError;
use cli::jobs::train::{FeaturesArg, TrainArgs, run};
use models::neural_ode::{Features, NeuralOde};

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cli-reliability-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A tiny training run (a fraction of a second).
fn tiny(out: &Path) -> TrainArgs {
    TrainArgs {
        hidden: 8,
        layers: 1,
        iters: 30,
        batch: 4,
        window: 5,
        eval_every: 10,
        checkpoint_every: 7,
        quiet: true,
        out: out.to_path_buf(),
        ..TrainArgs::default()
    }
}

fn params(path: &Path, features: Features) -> Vec<f64> {
    let mut m = NeuralOde::new(2, features, 8, 1, 99).unwrap();
    m.load(path).unwrap();
    m.params().to_vec()
}

#[test]
fn resumed_run_matches_an_uninterrupted_one_bit_for_bit() {
    let dir = temp("resume");
    let whole = run(&tiny(&dir.join("whole"))).unwrap();

    let part = dir.join("part");
    let err = run(&TrainArgs {
        stop_after: Some(12),
        ..tiny(&part)
    })
    .unwrap_err();
    let checkpoint = part.join("checkpoint.safetensors");
    match &err {
        CliError::Interrupted { iteration, .. } => assert_eq!(*iteration, 12),
        other => panic!("expected an interruption, got {other}"),
    }
    assert!(err.to_string().contains("--resume"), "{err}");
    let saved = std::fs::read(&checkpoint).unwrap();

    let resumed = run(&TrainArgs {
        resume: Some(checkpoint.clone()),
        ..tiny(&part)
    })
    .unwrap();
    // The input checkpoint is kept as it was; the new one has another name.
    assert_eq!(std::fs::read(&checkpoint).unwrap(), saved);
    assert_eq!(
        resumed.checkpoint_file,
        part.join("checkpoint.1.safetensors")
    );

    let losses = |r: &cli::jobs::train::TrainReport| -> Vec<u64> {
        r.history.iter().map(|h| h.loss.to_bits()).collect()
    };
    assert_eq!(losses(&resumed), losses(&whole));
    assert_eq!(
        resumed.final_trajectory_mae.to_bits(),
        whole.final_trajectory_mae.to_bits()
    );
    assert_eq!(
        params(&resumed.params_file, Features::Cubic),
        params(&whole.params_file, Features::Cubic)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_checkpoint_of_another_architecture_is_refused_naming_both() {
    let dir = temp("arch");
    let identity = TrainArgs {
        features: FeaturesArg::Identity,
        iters: 3,
        ..tiny(&dir.join("identity"))
    };
    let r = run(&identity).unwrap();
    let err = run(&TrainArgs {
        resume: Some(r.params_file.clone()),
        ..tiny(&dir.join("cubic"))
    })
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("--features identity") && err.contains("--features cubic"),
        "{err}"
    );
    assert!(err.contains("params.safetensors"), "{err}");
    // Same architecture, resumed into the same folder: the input is not overwritten.
    let before = std::fs::read(&r.params_file).unwrap();
    let again = run(&TrainArgs {
        resume: Some(r.params_file.clone()),
        ..identity.clone()
    })
    .unwrap();
    assert_ne!(again.params_file, r.params_file);
    assert_eq!(std::fs::read(&r.params_file).unwrap(), before);
    // A file that is not safetensors is named.
    let junk = dir.join("junk.safetensors");
    std::fs::write(&junk, b"\x05\x00\x00\x00\x00\x00\x00\x00{}").unwrap();
    let err = run(&TrainArgs {
        resume: Some(junk),
        ..identity
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("junk.safetensors"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn runs_append_whole_lines() {
    let dir = temp("runs");
    std::thread::scope(|s| {
        for seed in 0..3 {
            let dir = &dir;
            s.spawn(move || {
                run(&TrainArgs {
                    iters: 2,
                    seed,
                    ..tiny(dir)
                })
                .unwrap()
            });
        }
    });
    let text = std::fs::read_to_string(dir.join("runs.jsonl")).unwrap();
    assert_eq!(text.lines().count(), 3, "{text}");
    for l in text.lines() {
        serde_json::from_str::<serde_json::Value>(l).unwrap();
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Runs `neuralode ARGS` and returns (exit status, stderr, seconds).
fn neuralode(args: &[&str]) -> (Option<i32>, String, f64) {
    let start = Instant::now();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_neuralode"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        start.elapsed().as_secs_f64(),
    )
}

#[test]
fn an_output_path_that_is_a_file_fails_before_any_work() {
    let dir = temp("outfile");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("taken");
    std::fs::write(&file, b"x").unwrap();
    let f = file.to_str().unwrap();
    for args in [
        vec!["train", "--out", f],
        vec!["solve", "--out", f],
        vec!["rod", "design", "--out", f],
        vec!["rod", "scaling", "--out", f],
        vec!["sensitivity", "--out", f],
    ] {
        let (code, err, secs) = neuralode(&args);
        assert_eq!(code, Some(1), "{args:?}: {err}");
        assert!(err.contains("not a directory"), "{args:?}: {err}");
        assert!(secs < 5.0, "{args:?} took {secs} s");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn oversized_jobs_are_refused_at_once_without_abort_or_panic() {
    let dir = temp("sizes");
    let out = dir.to_str().unwrap();
    for args in [
        vec!["train", "--hidden", "100000"],
        vec!["train", "--iters", "1000000000"],
        vec!["train", "--iters", "18446744073709551615"],
        vec!["train", "--batch", "18446744073709551615"],
        vec!["rod", "design", "--n", "100000000"],
        vec!["rod", "design", "--plate", "100000"],
        vec!["solve", "--samples", "100000000"],
        vec!["sensitivity", "--widths", "8,100000000"],
    ] {
        let mut full = args.clone();
        full.extend(["--out", out]);
        let (code, err, secs) = neuralode(&full);
        assert_eq!(code, Some(1), "{args:?}: {err}");
        assert!(err.starts_with("error: "), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(
            secs < Duration::from_secs(5).as_secs_f64(),
            "{args:?} took {secs} s"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn negative_numbers_are_validated_in_one_style() {
    for args in [
        vec!["train", "--rtol", "-1"],
        vec!["train", "--atol", "-1"],
        vec!["train", "--seed", "-1"],
        vec!["train", "--iters", "-1"],
        vec!["solve", "--rtol", "-1"],
        vec!["rod", "scaling", "--repeats", "-1"],
        vec!["sensitivity", "--tol", "-1"],
    ] {
        let (code, err, _) = neuralode(&args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(!err.contains("unexpected argument"), "{args:?}: {err}");
        assert!(
            err.contains("must be finite and positive, got -1")
                || err.contains("must be a whole number >= 0, got -1")
                || err.contains("must be a whole number >= 1, got -1"),
            "{args:?}: {err}"
        );
    }
}
