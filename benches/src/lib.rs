//! Criterion benchmarks of the workspace, one binary per layer in `benches/benches/`:
//! `ode` (work–precision and time per evaluation against `ode_solvers` and diffsol),
//! `autodiff` (an MLP and a conv block against candle, the slice kernels against libm),
//! `adjoint` (one gradient of a Neural ODE per gradient mode; cost against the parameter
//! count) and `pde` (the heated rod and plate against the forward solve). Run one with
//! `cargo bench -p benches --bench <name>`. The measured results, each with the command
//! that reproduces it, are in `benches/README.md`. This library is empty.
