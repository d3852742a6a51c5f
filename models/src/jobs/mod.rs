//! The jobs of the `neuralode` program, one module each, with their command-line
//! options (clap) and their reports. Each job prints a table, writes a plot (PNG and
//! SVG) and a JSON summary into its output directory.

pub mod rod;
pub mod sensitivity;
pub mod solve;
pub mod train;

use clap::ValueEnum;
use ode_solvers::Method;
use serde::Serialize;

/// An ODE solver, as named on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MethodArg {
    /// Explicit Euler (order 1, fixed step only).
    Euler,
    /// Explicit midpoint (order 2, fixed step only).
    Midpoint,
    /// Heun (order 2, fixed step only).
    Heun,
    /// Classical Runge–Kutta (order 4, fixed step only).
    Rk4,
    /// Bogacki–Shampine 3(2).
    Bosh3,
    /// Dormand–Prince 5(4), Hairer's DOPRI5.
    Dopri5,
    /// Tsitouras 5(4).
    Tsit5,
    /// Dormand–Prince 8(5,3), Hairer's DOP853.
    Dop853,
    /// Variable-step, variable-order Adams–Bashforth–Moulton.
    Adams,
}

impl MethodArg {
    /// The solver method.
    pub fn method(self) -> Method {
        match self {
            MethodArg::Euler => Method::Euler,
            MethodArg::Midpoint => Method::Midpoint,
            MethodArg::Heun => Method::Heun,
            MethodArg::Rk4 => Method::Rk4,
            MethodArg::Bosh3 => Method::Bosh3,
            MethodArg::Dopri5 => Method::Dopri5,
            MethodArg::Tsit5 => Method::Tsit5,
            MethodArg::Dop853 => Method::Dop853,
            MethodArg::Adams => Method::Adams,
        }
    }

    /// Whether the method has an error estimate (runs adaptively).
    pub fn is_adaptive(self) -> bool {
        !matches!(
            self,
            MethodArg::Euler | MethodArg::Midpoint | MethodArg::Heun | MethodArg::Rk4
        )
    }
}

/// Rejects a value that is not finite and positive.
pub(crate) fn positive(name: &'static str, v: f64) -> Result<f64, crate::ModelsError> {
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(crate::ModelsError::InvalidArgument {
            name,
            reason: format!("must be finite and positive, got {v}"),
        })
    }
}

/// Parses a comma-separated list of numbers (`"2, 0"`).
pub(crate) fn parse_list(name: &'static str, text: &str) -> Result<Vec<f64>, crate::ModelsError> {
    text.split(',')
        .map(|f| {
            let f = f.trim();
            f.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| crate::ModelsError::InvalidArgument {
                    name,
                    reason: format!("{f:?} is not a finite number (expected e.g. \"2, 0\")"),
                })
        })
        .collect()
}
