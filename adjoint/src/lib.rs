//! Gradients through ODE solves and discrete adjoints of sparse constraints.

pub mod discrete;
