//! Neural ODE models and the `neuralode` command-line program.
//!
//! This crate holds the models (ODENet, CNF, latent ODE, function encoders and the
//! extensions, as they are built) and the pieces the program needs to report results:
//! atomic file output ([`output`]) and PNG/SVG plots ([`plot`]).

pub mod data;
pub mod error;
pub mod jobs;
pub mod neural_ode;
pub mod output;
pub mod plot;
pub mod spiral;

pub use error::ModelsError;
