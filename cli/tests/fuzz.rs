//! Fuzzed entry points (issue 19, item 6): arbitrary bytes and numbers fed to the CSV
//! reader, the checkpoint loader, `odeint`, `AdjointSolver`, the matrix parser and the
//! command-line parser must give `Ok` or an error: never a panic (proptest reports one
//! as a failure), an abort or a hang (every solve is bounded by `max_steps`; the whole
//! file runs in a few seconds in release).

use std::path::Path;

use adjoint::{AdjointSolver, FnDynamics, GradientMode};
use clap::{Parser, Subcommand};
use models::data::Trajectory;
use models::neural_ode::{Features, NeuralOde};
use ode_solvers::{Method, Options, SolveError, odeint};
use proptest::prelude::*;

/// Cases per property (each property runs this many; 7 properties).
const CASES: u32 = 300;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: CASES,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Any f64, with the awkward ones (0, ±inf, NaN, huge, tiny, negative) often.
fn number() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        -10.0..10.0f64,
        prop::sample::select(vec![
            0.0,
            -0.0,
            1.0,
            -1.0,
            1e-300,
            1e150,
            -1e150,
            1e308,
            f64::MAX,
            f64::MIN_POSITIVE,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            1e-12,
        ]),
    ]
}

/// CSV-like text: tokens that are numbers, names, empty or special, joined by commas and
/// every kind of line ending.
fn csv_like() -> impl Strategy<Value = String> {
    let token = prop::sample::select(vec![
        "t", "x", "y", "0", "1", "-2.5", "1e308", "1e-320", "nan", "inf", "", " ", "#c", "0.1",
        "3", "\u{feff}", "é",
    ]);
    let sep = prop::sample::select(vec![",", ",", ",", "\n", "\r", "\r\n", ", "]);
    prop::collection::vec((token, sep), 0..60)
        .prop_map(|v| v.into_iter().flat_map(|(a, b)| [a, b]).collect::<String>())
}

fn valid_checkpoint() -> Vec<u8> {
    let model = NeuralOde::new(2, Features::Cubic, 4, 1, 3).unwrap();
    let path = std::env::temp_dir().join(format!("cli-fuzz-{}.safetensors", std::process::id()));
    model.save(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    bytes
}

/// The program's command line, from the public option types (`main.rs` has the same
/// shape; its subcommands are these).
#[derive(Debug, Parser)]
#[command(name = "neuralode")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    Train(cli::jobs::train::TrainArgs),
    Solve(cli::jobs::solve::SolveArgs),
    #[command(subcommand)]
    Rod(cli::jobs::rod::RodCommand),
    Sensitivity(cli::jobs::sensitivity::SensitivityArgs),
    Odenet(cli::jobs::odenet::OdenetArgs),
}

fn cli_args() -> impl Strategy<Value = Vec<String>> {
    let word = prop_oneof![
        prop::sample::select(vec![
            "train",
            "solve",
            "rod",
            "design",
            "scaling",
            "sensitivity",
            "odenet",
            "--rtol",
            "--atol",
            "--iters",
            "--seed",
            "--hidden",
            "--layers",
            "--batch",
            "--window",
            "--lr",
            "--samples",
            "--y0",
            "--matrix",
            "--n",
            "--widths",
            "--method",
            "--features",
            "--gradient",
            "--precision",
            "--resume",
            "--out",
            "--help",
            "-1",
            "1e-3",
            "18446744073709551616",
            "nan",
            "dopri5",
            "rk4",
            "identity",
            "0",
            "8,8",
            "--checkpoint-every",
            "--stop-after",
            "--max-steps",
            "--t-end",
            "--fixed-step",
            "--no-normalize",
            "--",
            "-",
            "=",
        ])
        .prop_map(str::to_owned),
        "[-a-z0-9.,;= ]{0,12}",
        any::<String>(),
    ];
    prop::collection::vec(word, 0..8)
}

#[test]
fn the_command_line_definition_is_consistent() {
    use clap::CommandFactory;
    Cli::command().debug_assert();
}

#[test]
fn an_empty_state_is_one_clear_error_for_every_method() {
    let mut f = |_t: f64, _y: &[f64], _dy: &mut [f64]| {};
    for m in Method::ALL {
        let err = odeint(&mut f, &[], &[0.0, 1.0], m, &Options::default()).unwrap_err();
        assert_eq!(err, SolveError::EmptyState, "{}", m.name());
        assert_eq!(
            err.to_string(),
            "the initial state is empty: give at least one component"
        );
    }
}

#[test]
fn a_tolerance_below_the_precision_of_f32_is_refused() {
    let mut f = |_t: f32, y: &[f32], dy: &mut [f32]| dy[0] = -y[0];
    let err = odeint(
        &mut f,
        &[1.0],
        &[0.0, 1.0],
        Method::Dopri5,
        &Options::with_tol(1e-12, 1e-12),
    )
    .unwrap_err();
    assert!(
        matches!(err, SolveError::ToleranceBelowPrecision { .. }),
        "{err}"
    );
    let ok = odeint(
        &mut f,
        &[1.0],
        &[0.0, 1.0],
        Method::Dopri5,
        &Options::with_tol(1e-6, 1e-6),
    );
    assert!(ok.is_ok());
}

#[test]
fn a_huge_initial_state_does_not_underflow_the_first_step() {
    // `solve --problem linear --matrix "0, 1; -1, 0" --y0 "1e150, 0"`: the squares of the
    // first step's norm overflowed; the solution is the rotation of y0.
    let mut f = |_t: f64, y: &[f64], dy: &mut [f64]| {
        dy[0] = y[1];
        dy[1] = -y[0];
    };
    let sol = odeint(
        &mut f,
        &[1e150, 0.0],
        &[0.0, 1.0],
        Method::Dopri5,
        &Options::with_tol(1e-8, 1e-8),
    )
    .unwrap();
    let y = sol.y_last();
    assert!((y[0] / (1e150 * 1f64.cos()) - 1.0).abs() < 1e-6, "{y:?}");
    assert!((y[1] / (-1e150 * 1f64.sin()) - 1.0).abs() < 1e-6, "{y:?}");
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn csv_reader_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = Trajectory::parse_csv_bytes(&bytes, Path::new("fuzz.csv"));
    }

    #[test]
    fn csv_reader_never_panics_on_csv_like_text(text in csv_like()) {
        if let Ok(t) = Trajectory::parse_csv(&text, Path::new("fuzz.csv")) {
            // What it accepts is a valid trajectory.
            prop_assert!(t.len() >= 2 && t.ts.windows(2).all(|w| w[1] > w[0]));
            prop_assert!(t.ys.iter().all(|v| v.is_finite()));
        }
    }

    #[test]
    fn checkpoint_loader_never_panics(
        garbage in prop::collection::vec(any::<u8>(), 0..300),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut model = NeuralOde::new(2, Features::Cubic, 4, 1, 0).unwrap();
        let before = model.params().to_vec();
        let r = model.load_checkpoint_bytes(&garbage, Path::new("fuzz.safetensors"));
        if r.is_err() {
            prop_assert_eq!(model.params(), &before[..], "unchanged on error");
        }
        let mut bytes = valid_checkpoint();
        for (i, b) in flips {
            let i = i.index(bytes.len());
            bytes[i] = b;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len()));
        }
        let r = model.load_checkpoint_bytes(&bytes, Path::new("fuzz.safetensors"));
        if let Err(e) = r {
            prop_assert!(e.to_string().contains("fuzz.safetensors"), "{}", e);
        }
    }

    #[test]
    fn odeint_never_panics_or_hangs(
        y0 in prop::collection::vec(number(), 0..4),
        coef in prop::collection::vec(number(), 4),
        ts in prop::collection::vec(number(), 0..5),
        method in prop::sample::select(Method::ALL.to_vec()),
        rtol in number(),
        atol in number(),
        fixed in prop::option::of(number()),
        max_steps in 0usize..2000,
        blow_up in any::<bool>(),
    ) {
        let mut f = |t: f64, y: &[f64], dy: &mut [f64]| {
            let n = y.len();
            for i in 0..n {
                dy[i] = coef[i % 4] * y[(i + 1) % n] + if blow_up { y[i] * y[i] } else { t.sin() };
            }
        };
        let mut o = Options::with_tol(rtol, atol);
        o.max_steps = max_steps;
        o.fixed_step = fixed;
        let _ = odeint(&mut f, &y0, &ts, method, &o);
        let y32: Vec<f32> = y0.iter().map(|&v| v as f32).collect();
        let ts32: Vec<f32> = ts.iter().map(|&v| v as f32).collect();
        let mut f32 = |_t: f32, y: &[f32], dy: &mut [f32]| {
            for i in 0..y.len() {
                dy[i] = coef[i % 4] as f32 * y[(i + 1) % y.len()];
            }
        };
        let mut o32 = Options::with_tol(rtol as f32, atol as f32);
        o32.max_steps = max_steps;
        let _ = odeint(&mut f32, &y32, &ts32, method, &o32);
    }

    #[test]
    fn adjoint_solver_never_panics_or_hangs(
        n in 0usize..3,
        z0 in prop::collection::vec(number(), 0..4),
        theta in prop::collection::vec(number(), 0..3),
        ts in prop::collection::vec(number(), 0..4),
        g in prop::collection::vec(number(), 0..12),
        method in prop::sample::select(Method::ALL.to_vec()),
        mode in 0usize..4,
        rtol in number(),
        atol in number(),
        max_steps in 1usize..1500,
    ) {
        let mut f = FnDynamics::new(n, 1, |_t: f64, z: &[f64], th: &[f64], out: &mut [f64]| {
            for i in 0..z.len() {
                out[i] = -th[0] * z[i];
            }
        })
        .with_vjp(|_t, z, th, a, gz, gth| {
            gth[0] = 0.0;
            for i in 0..z.len() {
                gz[i] = -th[0] * a[i];
                gth[0] -= z[i] * a[i];
            }
            0.0
        });
        let mode = match mode {
            0 => GradientMode::checkpointed(),
            1 => GradientMode::backsolve(true),
            2 => GradientMode::Direct,
            _ => GradientMode::Forward,
        };
        let mut o = Options::with_tol(rtol, atol);
        o.max_steps = max_steps;
        let mut solver = AdjointSolver::new(method, o).with_mode(mode);
        let forward = solver.forward(&mut f, &z0, &theta, &ts).map(|zs| zs.len());
        if z0.is_empty() || n == 0 {
            prop_assert!(forward.is_err());
        }
        let _ = solver.backward(&mut f, &g);
    }

    #[test]
    fn matrix_parser_never_panics(
        text in prop_oneof!["[-0-9eE.,; +naif]{0,40}".prop_map(String::from), any::<String>()],
    ) {
        if let Ok((a, n)) = cli::jobs::solve::parse_matrix(&text) {
            prop_assert_eq!(a.len(), n * n);
            prop_assert!(a.iter().all(|v| v.is_finite()));
        }
    }

    #[test]
    fn command_line_parser_never_panics(args in cli_args()) {
        let argv = std::iter::once("neuralode".to_owned()).chain(args);
        let _ = Cli::try_parse_from(argv);
    }
}
