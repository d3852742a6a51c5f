//! Tensor-level reverse-mode automatic differentiation on a reusable tape.
