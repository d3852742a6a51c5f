//! `neuralode fe`: function encoders (see [`models::function_encoder`]): train bases of
//! `K` Neural ODE fields on a family of systems, transfer them zero-shot to held-out
//! systems, and compare with one Neural ODE trained on all systems and an oracle Neural
//! ODE trained on each held-out system alone.
//!
//! Reports: the multi-step prediction RMSE on the held-out systems' test trajectories
//! against `K` (least squares and inner-product coefficients), against the number of
//! demonstration points used to encode a system, the cost of encoding a new system
//! (wall time, basis evaluations; no optimiser), and the baselines' errors and training
//! times. Plots: the basis fields, transferred predictions beside the truth, error
//! against `K` and against the number of demonstration points.

use std::path::PathBuf;
use std::time::Instant;

use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use models::function_encoder::transfer::predict_test;
use models::function_encoder::{
    BasisConfig, CoefficientMethod, DemoConfig, Demonstrations, EncoderSettings, FunctionEncoder,
    System, TrainPlan, TransferCase, VelocityEstimate, rmse, train_encoder, train_oracle,
    zero_shot,
};
use models::training::{Control, Model, StepInfo};
use serde::Serialize;
use serde_json::json;

use super::positive;
use crate::CliError;
use crate::output::write_json;
use crate::plot::{Figure, Series};

/// `--velocity`: how demonstration velocities are estimated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VelocityArg {
    /// Three-point finite differences on the irregular grid.
    Fd,
    /// Slope of a local least-squares quadratic over 5 samples.
    Quadratic,
}

/// `--coefficients`: how coefficients are computed inside the training loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CoefficientArg {
    /// Regularised least squares through the Gram matrix (ridge `--lambda`).
    Ls,
    /// The inner product `α_i = ⟨v, f_i⟩` (pushes the basis towards orthonormality).
    Ip,
}

/// Options of `neuralode fe`.
#[derive(Debug, Clone, Args, Serialize)]
pub struct FeArgs {
    /// Numbers of basis fields K to train (one basis each), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8")]
    pub ks: Vec<usize>,
    /// Hidden units per layer of every field (two tanh hidden layers).
    #[arg(long, default_value_t = 32)]
    pub hidden: usize,
    /// Use the residual variant (a shared average field plus the basis).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub residual: bool,
    /// Training systems (cycling Van der Pol, damped oscillator, pendulum).
    #[arg(long, default_value_t = 24)]
    pub train_systems: usize,
    /// Held-out systems (new parameter draws).
    #[arg(long, default_value_t = 6)]
    pub test_systems: usize,
    /// Demonstration trajectories per system.
    #[arg(long, default_value_t = 4)]
    pub n_traj: usize,
    /// Samples per demonstration trajectory (irregular times).
    #[arg(long, default_value_t = 20)]
    pub n_times: usize,
    /// Time span of each trajectory.
    #[arg(long, default_value_t = 2.0)]
    pub horizon: f64,
    /// Standard deviation of the observation noise of the demonstrations.
    #[arg(long, default_value_t = 0.0)]
    pub noise: f64,
    /// Velocity estimate from the samples.
    #[arg(long, value_enum, default_value_t = VelocityArg::Fd)]
    pub velocity: VelocityArg,
    /// Coefficients inside the training loss (the table reports both methods at transfer).
    #[arg(long, value_enum, default_value_t = CoefficientArg::Ls)]
    pub coefficients: CoefficientArg,
    /// Ridge λ of the least-squares coefficients.
    #[arg(long, default_value_t = 1e-4)]
    pub lambda: f64,
    /// Weight of the velocity residual in the training loss (0: through the solves alone).
    #[arg(long, default_value_t = 1.0)]
    pub velocity_weight: f64,
    /// Training epochs over the training systems (basis and global Neural ODE).
    #[arg(long, default_value_t = 40)]
    pub epochs: u64,
    /// Systems per mini-batch.
    #[arg(long, default_value_t = 6)]
    pub batch: usize,
    /// Adam's peak learning rate (cosine-decayed to 1 %).
    #[arg(long, default_value_t = 1e-2)]
    pub lr: f64,
    /// Optimiser steps of each oracle (one per held-out system, on its demonstrations).
    #[arg(long, default_value_t = 160)]
    pub oracle_steps: u64,
    /// rtol = atol of the Dopri5 solves.
    #[arg(long, default_value_t = 1e-5)]
    pub tol: f64,
    /// Demonstration points used to encode a held-out system, for the error against
    /// points (with the largest K), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "5,10,20,40,80,160")]
    pub demo_points: Vec<usize>,
    /// Seed of the systems, demonstrations and initialisations.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output directory.
    #[arg(long, default_value = "out/fe")]
    pub out: PathBuf,
}

impl Default for FeArgs {
    fn default() -> Self {
        use clap::Parser;
        #[derive(Parser)]
        struct Wrapper {
            #[command(flatten)]
            args: FeArgs,
        }
        Wrapper::parse_from(["fe"]).args
    }
}

/// One row of the table: a model's zero-shot (or trained) error on the held-out systems.
#[derive(Debug, Clone, Serialize)]
pub struct ModelRow {
    /// "function encoder", "global Neural ODE" or "oracle Neural ODE".
    pub model: String,
    /// Basis size (0 for the baselines).
    pub k: usize,
    /// Mean multi-step RMSE over the held-out systems, least-squares coefficients.
    pub rmse_ls: f64,
    /// The same with inner-product coefficients (NaN for the baselines).
    pub rmse_ip: f64,
    /// RMSE per held-out system (least squares).
    pub rmse_per_system: Vec<f64>,
    /// Final training loss (mean of the last epoch's steps; oracles: mean over systems).
    pub final_loss: f64,
    /// Training wall time (s; oracles: summed over the held-out systems).
    pub train_seconds: f64,
    /// Mean encoding wall time per held-out system (µs).
    pub encode_micros: f64,
    /// Network parameters.
    pub n_params: usize,
}

/// Error against the number of demonstration points (largest K).
#[derive(Debug, Clone, Serialize)]
pub struct PointsRow {
    /// Demonstration points (trajectories × samples).
    pub points: usize,
    /// Trajectories used.
    pub n_traj: usize,
    /// Samples per trajectory.
    pub n_times: usize,
    /// Mean zero-shot RMSE (least squares).
    pub rmse_ls: f64,
    /// Mean encoding wall time (µs).
    pub encode_micros: f64,
}

/// What `neuralode fe` reports (also written as `fe.json`).
#[derive(Debug, Clone, Serialize)]
pub struct FeReport {
    /// Held-out systems.
    pub held_out: Vec<String>,
    /// Basis rows (one per K), then the global and oracle Neural ODEs.
    pub rows: Vec<ModelRow>,
    /// Error against demonstration points.
    pub points: Vec<PointsRow>,
    /// Basis-field evaluations per encoding: K × points.
    pub encode_basis_evals: usize,
}

fn check(args: &FeArgs) -> Result<(), CliError> {
    let invalid = |name, reason: String| Err(CliError::InvalidArgument { name, reason });
    if args.ks.is_empty() || args.ks.contains(&0) {
        return invalid("--ks", format!("need one or more K ≥ 1, got {:?}", args.ks));
    }
    if args.train_systems == 0 || args.test_systems == 0 {
        return invalid(
            "--train-systems/--test-systems",
            "must be at least 1".into(),
        );
    }
    if args.n_traj == 0 || args.n_times < 3 {
        return invalid(
            "--n-traj/--n-times",
            format!(
                "need ≥ 1 trajectory of ≥ 3 samples, got {} x {}",
                args.n_traj, args.n_times
            ),
        );
    }
    if args.hidden == 0 || args.epochs == 0 || args.batch == 0 || args.oracle_steps == 0 {
        return invalid(
            "--hidden/--epochs/--batch/--oracle-steps",
            "must be at least 1".into(),
        );
    }
    if args.demo_points.iter().any(|&p| p < 3) {
        return invalid("--demo-points", "each needs at least 3 points".into());
    }
    positive("--horizon", args.horizon)?;
    positive("--lr", args.lr)?;
    positive("--tol", args.tol)?;
    if !(args.noise.is_finite() && args.noise >= 0.0) {
        return invalid(
            "--noise",
            format!("must be finite and ≥ 0, got {}", args.noise),
        );
    }
    if !(args.lambda.is_finite() && args.lambda >= 0.0) {
        return invalid(
            "--lambda",
            format!("must be finite and ≥ 0, got {}", args.lambda),
        );
    }
    if !(args.velocity_weight.is_finite() && args.velocity_weight >= 0.0) {
        return invalid(
            "--velocity-weight",
            format!("must be finite and ≥ 0, got {}", args.velocity_weight),
        );
    }
    Ok(())
}

fn bar(len: u64, prefix: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>12} [{elapsed_precise}] {bar:32} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_prefix(prefix.to_string());
    bar
}

/// Trains `fe` with a progress bar; returns (mean loss of the last epoch, seconds).
fn train_with_bar(
    fe: &mut FunctionEncoder,
    plan: &TrainPlan,
    label: &str,
) -> Result<(f64, f64), CliError> {
    let per_epoch = fe.n_systems().div_ceil(plan.batch) as u64;
    let pb = bar(plan.epochs * per_epoch, label);
    let mut last = Vec::new();
    let start = Instant::now();
    train_encoder(fe, plan, &mut |i: &StepInfo<'_>| {
        if i.epoch + 1 == plan.epochs {
            last.push(i.loss);
        }
        pb.set_message(format!("epoch {} loss {:.2e}", i.epoch + 1, i.loss));
        pb.inc(1);
        Control::Continue
    })?;
    pb.finish();
    let mean = last.iter().sum::<f64>() / last.len().max(1) as f64;
    Ok((mean, start.elapsed().as_secs_f64()))
}

/// Runs the job: trains the bases and the baselines, prints the tables, writes `fe.json`
/// and the plots.
pub fn run(args: &FeArgs) -> Result<FeReport, CliError> {
    check(args)?;
    let demo = DemoConfig {
        n_traj: args.n_traj,
        n_times: args.n_times,
        horizon: args.horizon,
        noise: args.noise,
    };
    let test_demo = DemoConfig { noise: 0.0, ..demo };
    let train_demos = System::family(args.train_systems, args.seed)
        .into_iter()
        .enumerate()
        .map(|(i, s)| Demonstrations::generate(s, &demo, args.seed.wrapping_add(1000 + i as u64)))
        .collect::<Result<Vec<_>, _>>()?;
    let cases = System::family(args.test_systems, args.seed ^ 0xD1FF)
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            TransferCase::new(
                s,
                &demo,
                &test_demo,
                args.seed.wrapping_add(9000 + i as u64),
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    let ls = CoefficientMethod::LeastSquares {
        lambda: args.lambda,
    };
    let settings = EncoderSettings {
        coefficients: match args.coefficients {
            CoefficientArg::Ls => ls,
            CoefficientArg::Ip => CoefficientMethod::InnerProduct,
        },
        velocity: match args.velocity {
            VelocityArg::Fd => VelocityEstimate::FiniteDifference,
            VelocityArg::Quadratic => VelocityEstimate::LocalQuadratic { half_width: 2 },
        },
        velocity_weight: args.velocity_weight,
        tol: args.tol,
        ..EncoderSettings::default()
    };
    let plan = TrainPlan {
        epochs: args.epochs,
        batch: args.batch.min(args.train_systems),
        lr: args.lr,
        clip: 10.0,
        seed: args.seed,
    };
    println!(
        "function encoders: {} training systems, {} held out, {} demonstrations x {} irregular samples on [0, {}], {} epochs, batch {}",
        args.train_systems,
        args.test_systems,
        args.n_traj,
        args.n_times,
        args.horizon,
        args.epochs,
        plan.batch
    );
    let mut rows = Vec::new();
    let mut ks = args.ks.clone();
    ks.sort_unstable();
    ks.dedup();
    let mut main_fe = None;
    for (j, &k) in ks.iter().enumerate() {
        let config = BasisConfig {
            k,
            hidden: args.hidden,
            layers: 2,
            residual: args.residual,
            seed: args.seed,
        };
        let mut fe = FunctionEncoder::new(
            format!("fe-k{k}"),
            config,
            train_demos.clone(),
            settings.clone(),
        )?;
        let (final_loss, secs) = train_with_bar(&mut fe, &plan, &format!("basis K={k}"))?;
        let mut per = Vec::new();
        let (mut ip_sum, mut micros) = (0.0, 0.0);
        for case in &cases {
            let z = zero_shot(&mut fe, case, ls)?;
            per.push(z.rmse);
            micros += z.encode_time.as_secs_f64() * 1e6;
            ip_sum += zero_shot(&mut fe, case, CoefficientMethod::InnerProduct)?.rmse;
        }
        let n = cases.len() as f64;
        rows.push(ModelRow {
            model: "function encoder".into(),
            k,
            rmse_ls: per.iter().sum::<f64>() / n,
            rmse_ip: ip_sum / n,
            rmse_per_system: per,
            final_loss,
            train_seconds: secs,
            encode_micros: micros / n,
            n_params: fe.params().n_params(),
        });
        if j + 1 == ks.len() {
            main_fe = Some(fe);
        }
    }
    let Some(mut main_fe) = main_fe else {
        return Err(CliError::InvalidArgument {
            name: "--ks",
            reason: "no basis was trained".into(),
        });
    };

    // The global Neural ODE: the average field alone, trained on every system.
    let base = BasisConfig {
        k: 0,
        hidden: args.hidden,
        layers: 2,
        residual: true,
        seed: args.seed,
    };
    let mut global = FunctionEncoder::new("global", base, train_demos.clone(), settings.clone())?;
    let (g_loss, g_secs) = train_with_bar(&mut global, &plan, "global NODE")?;
    let mut g_per = Vec::new();
    for case in &cases {
        let pred = predict_test(&mut global, &[], &case.test)?;
        g_per.push(rmse(&pred, &case.test.states));
    }
    let n = cases.len() as f64;
    rows.push(ModelRow {
        model: "global Neural ODE".into(),
        k: 0,
        rmse_ls: g_per.iter().sum::<f64>() / n,
        rmse_ip: f64::NAN,
        rmse_per_system: g_per,
        final_loss: g_loss,
        train_seconds: g_secs,
        encode_micros: 0.0,
        n_params: global.params().n_params(),
    });

    // The oracles: one Neural ODE per held-out system, trained on its demonstrations.
    let oracle_plan = TrainPlan {
        epochs: args.oracle_steps,
        batch: 1,
        ..plan
    };
    let pb = bar(args.oracle_steps * cases.len() as u64, "oracles");
    let start = Instant::now();
    let (mut o_per, mut o_loss, mut oracles) = (Vec::new(), 0.0, Vec::new());
    for case in &cases {
        let mut last = f64::NAN;
        let mut oracle = train_oracle(case, base, &settings, &oracle_plan, &mut |i: &StepInfo<
            '_,
        >| {
            last = i.loss;
            pb.set_message(format!("{} loss {:.2e}", case.system.label(), i.loss));
            pb.inc(1);
            Control::Continue
        })?;
        o_loss += last;
        let pred = predict_test(&mut oracle, &[], &case.test)?;
        o_per.push(rmse(&pred, &case.test.states));
        oracles.push(oracle);
    }
    pb.finish();
    rows.push(ModelRow {
        model: "oracle Neural ODE".into(),
        k: 0,
        rmse_ls: o_per.iter().sum::<f64>() / n,
        rmse_ip: f64::NAN,
        rmse_per_system: o_per,
        final_loss: o_loss / n,
        train_seconds: start.elapsed().as_secs_f64(),
        encode_micros: 0.0,
        n_params: global.params().n_params(),
    });

    // Error against the number of demonstration points, with the largest basis.
    let mut points = Vec::new();
    for &p in &args.demo_points {
        let n_times = p.min(args.n_times.max(3)).max(3);
        let n_traj = p.div_ceil(n_times);
        let config = DemoConfig {
            n_traj,
            n_times,
            ..demo
        };
        let (mut sum, mut micros) = (0.0, 0.0);
        for (i, case) in cases.iter().enumerate() {
            let c = TransferCase {
                encode: Demonstrations::generate(
                    case.system,
                    &config,
                    args.seed.wrapping_add(7000 + i as u64),
                )?,
                ..case.clone()
            };
            let z = zero_shot(&mut main_fe, &c, ls)?;
            sum += z.rmse;
            micros += z.encode_time.as_secs_f64() * 1e6;
        }
        points.push(PointsRow {
            points: n_traj * n_times,
            n_traj,
            n_times,
            rmse_ls: sum / n,
            encode_micros: micros / n,
        });
    }
    let k_main = main_fe.basis().k();
    let report = FeReport {
        held_out: cases.iter().map(|c| c.system.label()).collect(),
        rows,
        points,
        encode_basis_evals: k_main * args.n_traj * args.n_times,
    };
    print_tables(&report);
    let dir = &args.out;
    write_json(
        &dir.join("fe.json"),
        &json!({ "settings": args, "report": &report }),
    )?;
    plots(
        &report,
        &mut main_fe,
        &mut global,
        &mut oracles,
        &cases,
        args,
    )?;
    println!("wrote {}", dir.display());
    Ok(report)
}

fn print_tables(report: &FeReport) {
    println!(
        "\nzero-shot transfer to {} held-out systems: multi-step RMSE on test trajectories",
        report.held_out.len()
    );
    println!(
        "{:<20} {:>3} {:>10} {:>10} {:>10} {:>11} {:>12} {:>8}",
        "model", "K", "RMSE (LS)", "RMSE (IP)", "train loss", "train (s)", "encode (µs)", "params"
    );
    for r in &report.rows {
        println!(
            "{:<20} {:>3} {:>10.4} {:>10.4} {:>10.2e} {:>11.1} {:>12.0} {:>8}",
            r.model,
            r.k,
            r.rmse_ls,
            r.rmse_ip,
            r.final_loss,
            r.train_seconds,
            r.encode_micros,
            r.n_params
        );
    }
    println!("\nerror against demonstration points (largest K, least squares)");
    println!(
        "{:>7} {:>7} {:>8} {:>10} {:>12}",
        "points", "traj", "samples", "RMSE", "encode (µs)"
    );
    for p in &report.points {
        println!(
            "{:>7} {:>7} {:>8} {:>10.4} {:>12.0}",
            p.points, p.n_traj, p.n_times, p.rmse_ls, p.encode_micros
        );
    }
}

/// The plots: basis fields, predictions beside the truth, error against K and points.
fn plots(
    report: &FeReport,
    fe: &mut FunctionEncoder,
    global: &mut FunctionEncoder,
    oracles: &mut [FunctionEncoder],
    cases: &[TransferCase],
    args: &FeArgs,
) -> Result<(), CliError> {
    let dir = &args.out;
    // Basis fields on a grid (arrows scaled to a common length scale).
    let (n, lo, hi) = (15usize, -2.5, 2.5);
    let step = (hi - lo) / (n - 1) as f64;
    let grid: Vec<f64> = (0..n * n)
        .flat_map(|i| [lo + step * (i % n) as f64, lo + step * (i / n) as f64])
        .collect();
    let theta = fe.params().as_slice().to_vec();
    let (phi, avg) = fe.basis().values(&theta, &grid)?;
    let k = fe.basis().k();
    let mut fields: Vec<(String, &[f64])> = (0..k.min(4))
        .map(|i| {
            (
                format!("f_{}", i + 1),
                &phi[i * grid.len()..(i + 1) * grid.len()],
            )
        })
        .collect();
    if fe.basis().is_residual() {
        fields.insert(0, ("f_0 (average)".into(), &avg[..]));
    }
    for (i, (name, values)) in fields.iter().enumerate() {
        let max = values
            .chunks_exact(2)
            .map(|v| v[0].hypot(v[1]))
            .fold(0.0f64, f64::max)
            .max(1e-12);
        let s = 0.9 * step / max;
        let arrows: Vec<(f64, f64, f64, f64)> = grid
            .chunks_exact(2)
            .zip(values.chunks_exact(2))
            .map(|(x, v)| (x[0], x[1], s * v[0], s * v[1]))
            .collect();
        let mut fig = Figure::new(format!("basis field {name} (K = {k})"), "x", "y")
            .with(Series::arrows(name.clone(), &arrows));
        fig.equal_aspect = true;
        fig.save(dir, &format!("fe_basis_{i}"))?;
    }
    // Predictions beside the truth: the first test trajectory of up to three held-out
    // systems, in the phase plane.
    for (c, case) in cases.iter().enumerate().take(3) {
        let alpha = fe.encode(&case.encode)?;
        let pred = predict_test(fe, &alpha, &case.test)?;
        let gpred = predict_test(global, &[], &case.test)?;
        let opred = predict_test(&mut oracles[c], &[], &case.test)?;
        let b = case.test.n_traj;
        let path = |ys: &[f64], j: usize| -> Vec<(f64, f64)> {
            (0..case.test.n_times())
                .map(|t| (ys[(t * b + j) * 2], ys[(t * b + j) * 2 + 1]))
                .collect()
        };
        let fig = Figure::new(
            format!(
                "{}: zero-shot prediction (K = {k}) vs truth",
                case.system.label()
            ),
            "x",
            "y",
        )
        .with(Series::line_markers("truth", path(&case.test.states, 0)).width(4))
        .with(Series::line("function encoder", path(&pred, 0)))
        .with(Series::line("global NODE", path(&gpred, 0)))
        .with(Series::line("oracle NODE", path(&opred, 0)));
        fig.save(dir, &format!("fe_transfer_{c}"))?;
    }
    // Error against K, with the baselines as horizontal lines.
    let fe_rows: Vec<&ModelRow> = report.rows.iter().filter(|r| r.k > 0).collect();
    if let (Some(first), Some(last)) = (fe_rows.first(), fe_rows.last()) {
        let (k0, k1) = (first.k as f64, last.k as f64);
        let mut fig = Figure::new("zero-shot error against K", "K (basis fields)", "RMSE")
            .with(Series::line_markers(
                "function encoder (least squares)",
                fe_rows.iter().map(|r| (r.k as f64, r.rmse_ls)).collect(),
            ))
            .with(Series::line_markers(
                "function encoder (inner product)",
                fe_rows.iter().map(|r| (r.k as f64, r.rmse_ip)).collect(),
            ));
        for r in report.rows.iter().filter(|r| r.k == 0) {
            fig = fig.with(Series::line(
                r.model.clone(),
                vec![(k0, r.rmse_ls), (k1, r.rmse_ls)],
            ));
        }
        fig.log_y = true;
        fig.save(dir, "fe_error_vs_k")?;
    }
    if !report.points.is_empty() {
        let fig = Figure::new(
            format!("zero-shot error against demonstration points (K = {k})"),
            "demonstration points",
            "RMSE",
        )
        .with(Series::line_markers(
            "function encoder",
            report
                .points
                .iter()
                .map(|p| (p.points as f64, p.rmse_ls))
                .collect(),
        ))
        .log_log();
        fig.save(dir, "fe_error_vs_points")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny(out: PathBuf) -> FeArgs {
        FeArgs {
            ks: vec![1],
            hidden: 4,
            train_systems: 3,
            test_systems: 1,
            n_traj: 1,
            n_times: 6,
            horizon: 0.5,
            epochs: 1,
            batch: 3,
            oracle_steps: 1,
            demo_points: vec![5],
            out,
            ..FeArgs::default()
        }
    }

    #[test]
    fn tiny_run_writes_the_report_and_plots() {
        let dir = std::env::temp_dir().join(format!("cli-fe-{}", std::process::id()));
        let report = run(&tiny(dir.clone())).unwrap();
        assert_eq!(report.rows.len(), 3); // K = 1, global, oracle
        assert!(report.rows.iter().all(|r| r.rmse_ls.is_finite()));
        for f in [
            "fe.json",
            "fe_basis_0.png",
            "fe_transfer_0.svg",
            "fe_error_vs_k.png",
        ] {
            assert!(dir.join(f).exists(), "{f}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_options_are_rejected() {
        let out = std::env::temp_dir().join("cli-fe-never-written");
        for args in [
            FeArgs {
                ks: vec![0],
                ..tiny(out.clone())
            },
            FeArgs {
                n_times: 2,
                ..tiny(out.clone())
            },
            FeArgs {
                lambda: -1.0,
                ..tiny(out.clone())
            },
            FeArgs {
                demo_points: vec![2],
                ..tiny(out.clone())
            },
        ] {
            assert!(matches!(run(&args), Err(CliError::InvalidArgument { .. })));
        }
        assert!(!out.exists());
    }
}
