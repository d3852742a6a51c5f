//! `neuralode solve`: one reference problem or linear system with any method and
//! tolerance → trajectory CSV, plots and statistics; optionally a work–precision sweep
//! of every adaptive method.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Args, ValueEnum};
use ode_solvers::problems::{
    Arenstorf, Brusselator, LinearSystem, Lorenz, Pleiades, TestProblem, VanDerPol,
};
use ode_solvers::{Method, Options, Real, Stats, odeint};
use serde::Serialize;

use super::{is_adaptive, method_parser, parse_list, positive, serialize_method};
use crate::CliError;
use crate::output::write_json;
use crate::plot::{Figure, Series};
use models::data::Trajectory;

/// A problem `neuralode solve` can integrate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProblemArg {
    /// The Arenstorf orbit (restricted three-body problem), one period.
    Arenstorf,
    /// The Lorenz system (σ = 10, ρ = 28, β = 8/3) on [0, 10].
    Lorenz,
    /// Van der Pol's oscillator, μ = 1, on [0, 20].
    VanDerPol,
    /// The Brusselator (A = 1, B = 3) on [0, 20].
    Brusselator,
    /// The Pleiades: seven bodies in the plane, on [0, 3].
    Pleiades,
    /// y' = A y with the matrix of `--matrix` (exact solution by the matrix exponential).
    Linear,
}

/// Floating-point precision of the solve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Precision {
    /// Single precision.
    F32,
    /// Double precision.
    F64,
}

/// Options of `neuralode solve`.
#[derive(Debug, Clone, Args, Serialize)]
pub struct SolveArgs {
    /// The problem to integrate.
    #[arg(long, value_enum, default_value_t = ProblemArg::Arenstorf)]
    pub problem: ProblemArg,
    /// The solver.
    #[arg(long, value_parser = method_parser(), default_value = "dopri5")]
    #[serde(serialize_with = "serialize_method")]
    pub method: Method,
    /// Relative tolerance (adaptive methods).
    #[arg(long, default_value_t = 1e-8, value_parser = crate::checks::positive_f64, allow_negative_numbers = true)]
    pub rtol: f64,
    /// Absolute tolerance (adaptive methods).
    #[arg(long, default_value_t = 1e-8, value_parser = crate::checks::positive_f64, allow_negative_numbers = true)]
    pub atol: f64,
    /// Fixed step size: runs any Runge–Kutta method without error control
    /// (required by euler, midpoint, heun and rk4 unless the output grid is the step).
    #[arg(long, allow_negative_numbers = true)]
    pub fixed_step: Option<f64>,
    /// End time (default: the problem's own interval).
    #[arg(long, allow_negative_numbers = true)]
    pub t_end: Option<f64>,
    /// Number of output times, evenly spaced, both ends included.
    #[arg(long, default_value_t = 1000, value_parser = crate::checks::count, allow_negative_numbers = true)]
    pub samples: usize,
    /// Initial state, comma-separated (default: the problem's own).
    #[arg(long, allow_hyphen_values = true)]
    pub y0: Option<String>,
    /// The matrix A of the linear problem, rows separated by ';', entries by ','.
    #[arg(long, default_value = "-0.1, 2; -2, -0.1", allow_hyphen_values = true)]
    pub matrix: String,
    /// Maximum number of step attempts.
    #[arg(long, default_value_t = 1_000_000, value_parser = crate::checks::count, allow_negative_numbers = true)]
    pub max_steps: usize,
    /// Floating-point precision.
    #[arg(long, value_enum, default_value_t = Precision::F64)]
    pub precision: Precision,
    /// Also run every adaptive method at tolerances 1e-3 … 1e-10 and write a
    /// work–precision table and plot (evaluations against error).
    #[arg(long)]
    pub work_precision: bool,
    /// Output directory.
    #[arg(long, default_value = "out/solve")]
    pub out: PathBuf,
}

/// The most output times `solve` accepts.
pub const MAX_SAMPLES: usize = 10_000_000;

/// The statistics of one solve.
#[derive(Debug, Clone, Serialize)]
pub struct SolveReport {
    /// Problem name.
    pub problem: String,
    /// Method name.
    pub method: String,
    /// Relative tolerance used.
    pub rtol: f64,
    /// Absolute tolerance used.
    pub atol: f64,
    /// Right-hand-side evaluations.
    pub nfe: usize,
    /// Accepted steps.
    pub accepted: usize,
    /// Rejected steps.
    pub rejected: usize,
    /// Wall-clock seconds of the solve.
    pub seconds: f64,
    /// State at the end time.
    pub y_end: Vec<f64>,
    /// Max-norm error at the end time against the exact solution when known, else
    /// against a Dop853 solve at rtol = atol = 1e-13 in f64.
    pub error_end: f64,
    /// What `error_end` is measured against.
    pub error_reference: &'static str,
}

/// One row of the work–precision sweep.
#[derive(Debug, Clone, Serialize)]
pub struct WorkPrecisionRow {
    /// Method name.
    pub method: String,
    /// rtol = atol.
    pub tol: f64,
    /// Right-hand-side evaluations.
    pub nfe: usize,
    /// Max-norm error at the end time (see [`SolveReport::error_end`]).
    pub error_end: f64,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// The problem as a boxed [`TestProblem`] plus its initial state and interval.
struct Setup {
    problem: Box<dyn TestProblem<f64>>,
    y0: Vec<f64>,
    t0: f64,
    t_end: f64,
    /// Exact end state, if known in closed form for this interval and y0.
    exact_end: Option<Vec<f64>>,
    /// Pairs of components drawn in the phase portrait.
    phase_pairs: Vec<(usize, usize)>,
}

/// Parses `--matrix`: rows separated by `;`, entries by `,`; returns the entries
/// row-major and the size of the (square) matrix.
pub fn parse_matrix(text: &str) -> Result<(Vec<f64>, usize), CliError> {
    let rows: Vec<Vec<f64>> = text
        .split(';')
        .map(|r| parse_list("matrix", r))
        .collect::<Result<_, _>>()?;
    let n = rows.len();
    if rows.iter().any(|r| r.len() != n) {
        return Err(CliError::InvalidArgument {
            name: "matrix",
            reason: format!("the matrix must be square: {n} rows of lengths {:?}", {
                rows.iter().map(Vec::len).collect::<Vec<_>>()
            }),
        });
    }
    Ok((rows.concat(), n))
}

fn setup(args: &SolveArgs) -> Result<Setup, CliError> {
    let boxed = |p: Box<dyn TestProblem<f64>>, pairs: Vec<(usize, usize)>| (p, pairs);
    let (problem, phase_pairs) = match args.problem {
        ProblemArg::Arenstorf => boxed(Box::new(Arenstorf), vec![(0, 1)]),
        ProblemArg::Lorenz => boxed(Box::<Lorenz>::default(), vec![(0, 2)]),
        ProblemArg::VanDerPol => boxed(Box::<VanDerPol>::default(), vec![(0, 1)]),
        ProblemArg::Brusselator => boxed(Box::new(Brusselator), vec![(0, 1)]),
        ProblemArg::Pleiades => boxed(Box::new(Pleiades), (0..7).map(|i| (i, i + 7)).collect()),
        ProblemArg::Linear => {
            let (a, n) = parse_matrix(&args.matrix)?;
            // The system carries the user's y0, so its exact solution is the one wanted.
            let y0 = match &args.y0 {
                Some(text) => parse_list("y0", text)?,
                None => {
                    let mut y0 = vec![0.0; n];
                    y0[0] = 2.0;
                    y0
                }
            };
            if y0.len() != n {
                return Err(CliError::InvalidArgument {
                    name: "y0",
                    reason: format!("the matrix has {n} rows, --y0 gives {}", y0.len()),
                });
            }
            let pairs = if n >= 2 { vec![(0, 1)] } else { vec![] };
            boxed(Box::new(LinearSystem { a, y0, t_end: 25.0 }), pairs)
        }
    };
    let (t0, default_end) = problem.t_span();
    let t_end = args.t_end.unwrap_or(default_end);
    if !(t_end.is_finite() && t_end != t0) {
        return Err(CliError::InvalidArgument {
            name: "t-end",
            reason: format!("must be finite and differ from the start time {t0}, got {t_end}"),
        });
    }
    let default_y0 = problem.y0();
    let y0 = match &args.y0 {
        Some(text) => parse_list("y0", text)?,
        None => default_y0.clone(),
    };
    if y0.len() != default_y0.len() {
        return Err(CliError::InvalidArgument {
            name: "y0",
            reason: format!(
                "the problem has {} components, --y0 gives {}",
                default_y0.len(),
                y0.len()
            ),
        });
    }
    let exact_end = if y0 == default_y0 {
        problem.exact(t_end)
    } else {
        None
    };
    Ok(Setup {
        problem,
        y0,
        t0,
        t_end,
        exact_end,
        phase_pairs,
    })
}

fn options<T: Real>(args: &SolveArgs, rtol: f64, atol: f64) -> Result<Options<T>, CliError> {
    let mut o = Options::with_tol(T::from_f64_const(rtol), T::from_f64_const(atol));
    o.max_steps = args.max_steps;
    if let Some(h) = args.fixed_step {
        o.fixed_step = Some(T::from_f64_const(positive("fixed-step", h)?));
    }
    Ok(o)
}

fn grid(t0: f64, t_end: f64, samples: usize) -> Result<Vec<f64>, CliError> {
    if samples < 2 {
        return Err(CliError::InvalidArgument {
            name: "samples",
            reason: format!("need at least 2 output times, got {samples}"),
        });
    }
    let last = (samples - 1) as f64;
    Ok((0..samples)
        .map(|k| {
            if k + 1 == samples {
                t_end
            } else {
                t0 + (t_end - t0) * k as f64 / last
            }
        })
        .collect())
}

/// Solves in precision `T` (the problems are written in f64: the state is widened
/// and the derivative narrowed around them); returns the states in f64, the
/// statistics and the wall-clock seconds.
fn solve_in<T: Real>(
    s: &mut Setup,
    ts: &[f64],
    method: Method,
    options: &Options<T>,
) -> Result<(Vec<f64>, Stats, f64), CliError> {
    let ts_t: Vec<T> = ts.iter().map(|&t| T::from_f64_const(t)).collect();
    let y0: Vec<T> = s.y0.iter().map(|&v| T::from_f64_const(v)).collect();
    let (mut y64, mut dy64) = (vec![0.0; y0.len()], vec![0.0; y0.len()]);
    let problem = &mut s.problem;
    let mut rhs = |t: T, y: &[T], dy: &mut [T]| {
        for (a, b) in y64.iter_mut().zip(y) {
            *a = b.to_f64_lossy();
        }
        problem.rhs(t.to_f64_lossy(), &y64, &mut dy64);
        for (a, b) in dy.iter_mut().zip(&dy64) {
            *a = T::from_f64_const(*b);
        }
    };
    let start = Instant::now();
    let sol = odeint(&mut rhs, &y0, &ts_t, method, options)?;
    let seconds = start.elapsed().as_secs_f64();
    let ys = sol.ys.iter().map(|v| v.to_f64_lossy()).collect();
    Ok((ys, sol.stats, seconds))
}

/// Solves with rtol and atol in the precision asked for.
fn solve(
    s: &mut Setup,
    ts: &[f64],
    method: Method,
    args: &SolveArgs,
    rtol: f64,
    atol: f64,
) -> Result<(Vec<f64>, Stats, f64), CliError> {
    match args.precision {
        Precision::F32 => solve_in::<f32>(s, ts, method, &options(args, rtol, atol)?),
        Precision::F64 => solve_in::<f64>(s, ts, method, &options(args, rtol, atol)?),
    }
}

fn max_error(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// Runs the job: writes `trajectory.csv`, `trajectory.{png,svg}`, `phase.{png,svg}`,
/// `solve.json` and, with `--work-precision`, `work_precision.{png,svg,json}`.
pub fn run(args: &SolveArgs) -> Result<SolveReport, CliError> {
    let mut s = setup(args)?;
    positive("rtol", args.rtol)?;
    positive("atol", args.atol)?;
    if args.samples > MAX_SAMPLES {
        return Err(CliError::InvalidArgument {
            name: "samples",
            reason: format!(
                "at most {MAX_SAMPLES} output times (a CSV of 10^7 rows is already ~1 GB), got {}",
                args.samples
            ),
        });
    }
    // Measured: about 60 bytes per output value (the states, their CSV text, the plots).
    crate::checks::check_memory(
        &format!("solve with --samples {}", args.samples),
        (args.samples as u128)
            .checked_mul(s.y0.len() as u128 + 1)
            .and_then(|v| v.checked_mul(60)),
    )?;
    crate::checks::prepare_out_dir(&args.out)?;
    if !is_adaptive(args.method) && args.fixed_step.is_none() {
        return Err(CliError::InvalidArgument {
            name: "fixed-step",
            reason: format!(
                "{} has no error estimate: give --fixed-step H",
                args.method.name()
            ),
        });
    }
    let ts = grid(s.t0, s.t_end, args.samples)?;
    let (ys, stats, seconds) = solve(&mut s, &ts, args.method, args, args.rtol, args.atol)?;
    let n = s.y0.len();
    let reference_end = match &s.exact_end {
        Some(e) => e.clone(),
        None => {
            let mut o = Options::with_tol(1e-13, 1e-13);
            o.max_steps = args.max_steps;
            let sol = odeint(&mut *s.problem, &s.y0, &[s.t0, s.t_end], Method::Dop853, &o)?;
            sol.y_last().to_vec()
        }
    };
    let error_reference = if s.exact_end.is_some() {
        "exact solution"
    } else {
        "dop853 at rtol = atol = 1e-13 (f64)"
    };
    let y_end = ys[ys.len() - n..].to_vec();
    let report = SolveReport {
        problem: s.problem.name().to_string(),
        method: args.method.name().to_string(),
        rtol: args.rtol,
        atol: args.atol,
        nfe: stats.nfe,
        accepted: stats.accepted,
        rejected: stats.rejected,
        seconds,
        error_end: max_error(&y_end, &reference_end),
        y_end,
        error_reference,
    };
    println!(
        "{:<12} {:<8} {:<9} {:>9} {:>9} {:>8} {:>9} {:>9} {:>10}  {:<26}",
        "problem",
        "method",
        "precision",
        "rtol",
        "atol",
        "NFE",
        "accepted",
        "rejected",
        "seconds",
        "error at t_end (against)"
    );
    println!(
        "{:<12} {:<8} {:<9} {:>9.1e} {:>9.1e} {:>8} {:>9} {:>9} {:>10.3e}  {:.3e} at t = {} ({})",
        report.problem,
        report.method,
        format!("{:?}", args.precision).to_lowercase(),
        report.rtol,
        report.atol,
        report.nfe,
        report.accepted,
        report.rejected,
        report.seconds,
        report.error_end,
        s.t_end,
        report.error_reference
    );

    let names: Vec<String> = (0..n).map(|i| format!("y{i}")).collect();
    let trajectory = Trajectory {
        names,
        ts: ts.clone(),
        ys,
    };
    let dir = &args.out;
    trajectory.write_csv(&dir.join("trajectory.csv"))?;
    write_figures(&trajectory, &s, &report, dir)?;

    let sweep = if args.work_precision {
        let mut rows = Vec::new();
        for m in [
            Method::Bosh3,
            Method::Dopri5,
            Method::Tsit5,
            Method::Dop853,
            Method::Adams,
        ] {
            for e in 3..=10 {
                let tol = 10f64.powi(-e);
                // Below 4 epsilons the solver refuses the tolerance (it cannot resolve it).
                if args.precision == Precision::F32 && tol < 4.0 * f64::from(f32::EPSILON) {
                    continue;
                }
                let mut a = args.clone();
                a.fixed_step = None;
                let (ys, stats, seconds) = solve(&mut s, &ts, m, &a, tol, tol)?;
                rows.push(WorkPrecisionRow {
                    method: m.name().to_string(),
                    tol,
                    nfe: stats.nfe,
                    error_end: max_error(&ys[ys.len() - n..], &reference_end),
                    seconds,
                });
            }
        }
        print_sweep(&rows);
        write_sweep(&rows, &report.problem, dir)?;
        Some(rows)
    } else {
        None
    };
    write_json(
        &dir.join("solve.json"),
        &serde_json::json!({ "settings": args, "report": &report, "work_precision": sweep }),
    )?;
    println!("wrote {}", dir.display());
    Ok(report)
}

fn write_figures(
    trajectory: &Trajectory,
    s: &Setup,
    report: &SolveReport,
    dir: &Path,
) -> Result<(), CliError> {
    let title = format!("{} with {}", report.problem, report.method);
    let mut fig = Figure::new(&title, "t", "y");
    for i in 0..trajectory.dim().min(8) {
        fig = fig.with(Series::line(
            trajectory.names[i].clone(),
            trajectory.component(i),
        ));
    }
    fig.save(dir, "trajectory")?;
    if !s.phase_pairs.is_empty() {
        let (i0, j0) = s.phase_pairs[0];
        let mut phase = Figure::new(
            format!("{title}: phase portrait"),
            format!("y{i0}"),
            format!("y{j0}"),
        );
        phase.equal_aspect = true;
        for &(i, j) in &s.phase_pairs {
            phase = phase.with(Series::line(
                format!("(y{i}, y{j})"),
                trajectory.phase(i, j),
            ));
        }
        phase.save(dir, "phase")?;
    }
    Ok(())
}

fn print_sweep(rows: &[WorkPrecisionRow]) {
    println!(
        "{:>8} {:>8} {:>9} {:>11} {:>11}",
        "method", "tol", "nfe", "error", "seconds"
    );
    for r in rows {
        println!(
            "{:>8} {:>8.0e} {:>9} {:>11.3e} {:>11.3e}",
            r.method, r.tol, r.nfe, r.error_end, r.seconds
        );
    }
}

fn write_sweep(rows: &[WorkPrecisionRow], problem: &str, dir: &Path) -> Result<(), CliError> {
    let mut fig = Figure::new(
        format!("Work–precision on {problem}"),
        "error at the end time",
        "function evaluations",
    )
    .log_log();
    let mut methods: Vec<&str> = rows.iter().map(|r| r.method.as_str()).collect();
    methods.dedup();
    for m in methods {
        let pts = rows
            .iter()
            .filter(|r| r.method == m)
            .map(|r| (r.error_end, r.nfe as f64))
            .collect();
        fig = fig.with(Series::line_markers(m, pts));
    }
    fig.save(dir, "work_precision")?;
    write_json(&dir.join("work_precision.json"), &rows)
}
