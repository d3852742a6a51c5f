//! Gradients through ODE solves and discrete adjoints of sparse constraints.
