//! Neural ODE models and the `neuralode` command-line program.
