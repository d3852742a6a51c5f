//! Criterion benchmarks of the workspace (see `benches/`); this library is empty.
