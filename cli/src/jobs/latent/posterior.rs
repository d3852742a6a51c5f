//! Posterior trajectory plots of a latent ODE on test series.

use models::latent::LatentOde;
use models::latent::data::{IrregularBatch, IrregularDataset};

use super::{LatentArgs, ModelArg, TaskArg};
use crate::CliError;
use crate::plot::{Figure, Series};

/// Posterior trajectories of the first test series: 5–95 % bands and mean of 40 draws on
/// a dense grid, the points the encoder saw, the targets, and the clean curve if known.
pub(super) fn posterior_plot(
    a: &LatentArgs,
    m: &mut LatentOde<f64>,
    test: &IrregularDataset<f64>,
    clean: Option<&[(Vec<f64>, Vec<f64>)]>,
    task: TaskArg,
    which: ModelArg,
    split: &dyn Fn(&IrregularBatch<f64>) -> IrregularBatch<f64>,
) -> Result<(), CliError> {
    let k = a.plot_series.min(test.len());
    if k == 0 {
        return Ok(());
    }
    let idx: Vec<usize> = (0..k).collect();
    let batch = split(&test.batch(&idx)?);
    let (t0, t1) = (batch.times[0], batch.times[batch.n_times() - 1]);
    let n_grid = 120;
    let grid: Vec<f64> = (0..n_grid)
        .map(|i| t0 + (t1 - t0) * i as f64 / (n_grid - 1) as f64)
        .collect();
    let draws = 40;
    let samples = m.sample_trajectories(&batch, &grid, draws, a.seed ^ 0xB0B)?;
    let d = batch.dim;
    let model = format!("{which:?}").to_lowercase();
    let task_s = format!("{task:?}").to_lowercase();
    for j in 0..k {
        let mut fig = Figure::new(
            format!(
                "{} ({task_s}), test series {j}: mean and 5-95% band of {draws} posterior draws",
                which.label()
            ),
            "t",
            "value",
        );
        for c in 0..d.min(3) {
            let name = &test.names()[c];
            let (mut lo, mut hi, mut mean) = (Vec::new(), Vec::new(), Vec::new());
            for (i, &t) in grid.iter().enumerate() {
                let mut v: Vec<f64> = (0..draws)
                    .map(|s| samples[((s * n_grid + i) * k + j) * d + c])
                    .collect();
                v.sort_by(f64::total_cmp);
                let q = |p: f64| v[((p * (draws - 1) as f64).round() as usize).min(draws - 1)];
                lo.push((t, q(0.05)));
                hi.push((t, q(0.95)));
                mean.push((t, v.iter().sum::<f64>() / draws as f64));
            }
            fig = fig.with(Series::line(format!("{name} mean"), mean).width(2));
            fig = fig.with(Series::line(format!("{name} 5%"), lo).width(1));
            fig = fig.with(Series::line(format!("{name} 95%"), hi).width(1));
            let pts = |mask: &[f64]| -> Vec<(f64, f64)> {
                (0..batch.n_times())
                    .filter(|&i| mask[(i * k + j) * d + c] != 0.0)
                    .map(|i| (batch.times[i], batch.values[(i * k + j) * d + c]))
                    .collect()
            };
            fig = fig.with(Series::markers(
                format!("{name} seen by encoder"),
                pts(&batch.mask),
            ));
            fig = fig.with(Series::markers(
                format!("{name} targets"),
                pts(&batch.target),
            ));
            if let Some(cl) = clean.and_then(|cl| cl.get(j)) {
                let line =
                    cl.0.iter()
                        .enumerate()
                        .map(|(i, &t)| (t, cl.1[i * d + c]))
                        .collect();
                fig = fig.with(Series::line(format!("{name} clean"), line));
            }
        }
        fig.save(&a.out, &format!("posterior_{task_s}_{model}_s{j}"))?;
    }
    Ok(())
}
