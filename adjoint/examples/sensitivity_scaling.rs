//! Adjoint vs forward-sensitivity scaling in the number of parameters.
//!
//! `cargo run --release -p adjoint --example sensitivity_scaling [-- --quick] [--json]`
//!
//! Prints the table of one gradient's time per mode against `P` for the built-in
//! 2 → W → W → 2 tanh MLP family, the log-log slopes and the crossover (`--json` prints
//! the table as JSON for plotting). To measure your own dynamics, replace the family:
//! any closure `FnMut(size) -> Result<Instance>` works (see `adjoint::scaling`).

use adjoint::scaling::{MlpFamily, measure};

fn main() -> Result<(), adjoint::Error> {
    let args: Vec<String> = std::env::args().collect();
    let family = MlpFamily::new(1);
    let mut cfg = family.config::<f64>();
    if args.iter().any(|a| a == "--quick") {
        cfg.sizes = vec![8, 16, 32];
        cfg.repeats = 1;
    }
    let table = measure(&cfg, |w| family.instance(w))?;
    if args.iter().any(|a| a == "--json") {
        println!(
            "{}",
            serde_json::to_string_pretty(&table).unwrap_or_default()
        );
        return Ok(());
    }
    println!("{table}");
    for (m, s) in table.slopes() {
        println!("log-log slope of time vs P, {m:<17}: {s:.2}");
    }
    match table.crossover("checkpointed", "forward-jvp") {
        Some(p) => println!(
            "crossover: forward-jvp becomes slower than the checkpointed adjoint at P ≈ {p:.0}"
        ),
        None => match table.ratio("checkpointed", "forward-jvp") {
            Some(r) if r > 1.0 => println!(
                "no crossover in range: forward-jvp is slower than the checkpointed adjoint at every measured P (x{r:.1} at the largest common P); fitted power laws cross at P ≈ {:.1}",
                table
                    .extrapolated_crossover("checkpointed", "forward-jvp")
                    .unwrap_or(f64::NAN)
            ),
            Some(r) => println!("no crossover in range: forward-jvp stays faster (x{r:.2})"),
            None => println!("no common points"),
        },
    }
    if let Some(r) = table.ratio("checkpointed", "forward-jacobian") {
        println!("forward-jacobian / checkpointed at the largest P: {r:.2}");
    }
    Ok(())
}
