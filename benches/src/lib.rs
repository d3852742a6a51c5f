//! Criterion benchmarks of the workspace, one binary per layer in `benches/benches/`:
//! `ode` (work–precision and time per evaluation against `ode_solvers` and diffsol),
//! `autodiff` (an MLP and a conv block against candle, the slice kernels against libm),
//! `adjoint` (one gradient of a Neural ODE per gradient mode; cost against the parameter
//! count) and `pde` (the heated rod and plate against the forward solve). Run one with
//! `cargo bench -p benches --bench <name>`. The measured results, each with the command
//! that reproduces it, are in `benches/README.md`. This library holds what several benches
//! and examples share.

use models::datasets::ImageDataset;

/// `batch` images of `data` taken at a fixed stride through the rows (which are sorted by
/// label, so the batch holds every class), scaled to [0, 1]: the images, their labels and
/// the batch's `[n, c, h, w]` shape. The ODE-Net benches' fixed batch.
pub fn strided_batch(
    mut data: ImageDataset<f32>,
    batch: usize,
) -> (Vec<f32>, Vec<usize>, [usize; 4]) {
    data.to_unit_range();
    let [_, c, h, w] = data.shape();
    let per = c * h * w;
    let stride = data.len() / batch.max(1);
    let mut images = Vec::with_capacity(batch * per);
    let mut labels = Vec::with_capacity(batch);
    for i in 0..batch {
        let k = i * stride;
        images.extend_from_slice(&data.images()[k * per..(k + 1) * per]);
        labels.push(data.labels()[k]);
    }
    (images, labels, [batch, c, h, w])
}
