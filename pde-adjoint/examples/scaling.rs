//! Cost of `J` + gradient by the adjoint, by forward sensitivities and by
//! finite differences against the forward solve, rod `n = 10²…10⁶` and plate
//! up to `10⁶` unknowns.
//!
//! ```text
//! cargo run --release -p pde-adjoint --example scaling -- [OUT_DIR] [--quick]
//! ```
//!
//! Prints the tables and writes `scaling_rod.{png,svg}`,
//! `scaling_plate.{png,svg}` and `scaling.json` into `OUT_DIR` (default `out/`).

mod common;

use common::{AnyError, Plot, Series, has_flag, out_dir, register_font, save_plot, write_atomic};
use pde_adjoint::{Plate, Rod, ScalingOptions, ScalingTable, measure_scaling};

fn plot(table: &ScalingTable, title: &str) -> Plot {
    let col = |f: &dyn Fn(&pde_adjoint::ScalingRow) -> Option<f64>| -> Vec<(f64, f64)> {
        table
            .rows
            .iter()
            .filter_map(|r| f(r).map(|t| (r.n as f64, t)))
            .collect()
    };
    Plot {
        title: title.into(),
        x_label: "unknowns n".into(),
        y_label: "seconds".into(),
        log_log: true,
        series: vec![
            Series {
                label: "forward solve (factorisation included)".into(),
                points: col(&|r| Some(r.forward)),
                colour: 5,
                markers: true,
                width: 2,
            },
            Series {
                label: "J + gradient, adjoint".into(),
                points: col(&|r| Some(r.adjoint)),
                colour: 0,
                markers: true,
                width: 2,
            },
            Series {
                label: "forward solve, factor kept".into(),
                points: col(&|r| Some(r.forward_reused)),
                colour: 5,
                markers: false,
                width: 1,
            },
            Series {
                label: "J + gradient, adjoint, factor kept".into(),
                points: col(&|r| Some(r.adjoint_reused)),
                colour: 4,
                markers: false,
                width: 2,
            },
            Series {
                label: "J + gradient, forward sensitivities".into(),
                points: col(&|r| r.forward_sensitivities),
                colour: 1,
                markers: true,
                width: 2,
            },
            Series {
                label: "J + gradient, central differences".into(),
                points: col(&|r| r.finite_differences),
                colour: 2,
                markers: true,
                width: 2,
            },
        ],
    }
}

fn json(table: &ScalingTable) -> serde_json::Value {
    let rows: Vec<_> = table
        .rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "n": r.n,
                "forward_s": r.forward,
                "adjoint_s": r.adjoint,
                "adjoint_over_forward": r.adjoint_ratio(),
                "forward_factor_kept_s": r.forward_reused,
                "adjoint_factor_kept_s": r.adjoint_reused,
                "forward_sensitivities_s": r.forward_sensitivities,
                "finite_differences_s": r.finite_differences,
            })
        })
        .collect();
    serde_json::json!({ "rows": rows, "adjoint_loglog_slope_n_ge_1e4": table.slope(10_000, |r| r.adjoint),
        "adjoint_factor_kept_loglog_slope_n_ge_1e4": table.slope(10_000, |r| r.adjoint_reused),
    })
}

fn report(name: &str, table: &ScalingTable) {
    println!("{name}\n{}", table.to_text());
    let worst = table
        .rows
        .iter()
        .map(|r| r.adjoint_ratio())
        .fold(0.0, f64::max);
    println!(
        "worst adjoint/forward ratio {worst:.3} (goal <= 1.5); log-log slope of the adjoint time for n >= 1e4: {}\n",
        table
            .slope(10_000, |r| r.adjoint)
            .map_or("-".into(), |s| format!("{s:.3}"))
    );
    println!(
        "log-log slope with the factor kept (one design iteration) for n >= 1e4: forward {}, adjoint {}\n",
        table
            .slope(10_000, |r| r.forward_reused)
            .map_or("-".into(), |s| format!("{s:.3}")),
        table
            .slope(10_000, |r| r.adjoint_reused)
            .map_or("-".into(), |s| format!("{s:.3}"))
    );
}

fn main() -> Result<(), AnyError> {
    register_font()?;
    let dir = out_dir()?;
    let quick = has_flag("--quick");
    let options = ScalingOptions {
        repeats: if quick { 2 } else { 3 },
        quadratic_budget: if quick { 2.0 } else { 20.0 },
    };
    let exps: &[u32] = if quick {
        &[2, 3, 4, 5]
    } else {
        &[2, 3, 4, 5, 6]
    };
    let mut rods = Vec::new();
    for &e in exps {
        rods.push(Rod::new(10usize.pow(e))?);
        if e < *exps.last().unwrap_or(&2) {
            rods.push(Rod::new(3 * 10usize.pow(e))?);
        }
    }
    let rod_table = measure_scaling::<_, f64>(&rods, &options)?;
    report("heated rod (1-D), f64", &rod_table);
    let sides: &[usize] = if quick {
        &[10, 32, 100, 316]
    } else {
        &[10, 32, 100, 316, 1000]
    };
    let plates: Vec<Plate> = sides
        .iter()
        .map(|&m| Plate::new(m))
        .collect::<Result<_, _>>()?;
    let plate_table = measure_scaling::<_, f64>(&plates, &options)?;
    report("heated plate (2-D, m x m), f64", &plate_table);

    save_plot(
        &dir,
        "scaling_rod",
        &plot(&rod_table, "Heated rod: J + gradient"),
    )?;
    save_plot(
        &dir,
        "scaling_plate",
        &plot(&plate_table, "Heated plate: J + gradient"),
    )?;
    let j = serde_json::json!({ "rod": json(&rod_table), "plate": json(&plate_table), "repeats": options.repeats });
    write_atomic(
        &dir.join("scaling.json"),
        serde_json::to_string_pretty(&j)?.as_bytes(),
    )?;
    println!("wrote {}", dir.display());
    Ok(())
}
