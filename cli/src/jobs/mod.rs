//! The jobs of the `neuralode` program, one module each, with their command-line
//! options (clap) and their reports. Each job prints a table, writes a plot (PNG and
//! SVG) and a JSON summary into its output directory.

pub mod cnf;
pub mod fe;
pub mod latent;
pub mod odenet;
pub mod rod;
pub mod sensitivity;
pub mod solve;
pub mod train;

use clap::builder::TypedValueParser as _;
use ode_solvers::Method;

/// Parses a solver name (`dopri5`, `tsit5`, ...: [`Method::name`] of every built-in
/// method) for clap, listing the names in `--help` and in the error for a wrong one.
pub fn method_parser() -> impl clap::builder::TypedValueParser<Value = Method> {
    clap::builder::PossibleValuesParser::new(Method::ALL.map(|m| m.name())).map(|name| {
        Method::ALL
            .into_iter()
            .find(|m| m.name() == name)
            .unwrap_or(Method::Dopri5)
    })
}

/// Whether the method has an error estimate (runs adaptively).
pub fn is_adaptive(method: Method) -> bool {
    method.tableau().is_none_or(|t| t.is_adaptive())
}

/// Serialises a method as its name (for the settings recorded in JSON).
pub(crate) fn serialize_method<S: serde::Serializer>(m: &Method, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(m.name())
}

/// Rejects a value that is not finite and positive.
pub(crate) fn positive(name: &'static str, v: f64) -> Result<f64, crate::CliError> {
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(crate::CliError::InvalidArgument {
            name,
            reason: format!("must be finite and positive, got {v}"),
        })
    }
}

/// Parses a comma-separated list of numbers (`"2, 0"`).
pub(crate) fn parse_list(name: &'static str, text: &str) -> Result<Vec<f64>, crate::CliError> {
    text.split(',')
        .map(|f| {
            let f = f.trim();
            f.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| crate::CliError::InvalidArgument {
                    name,
                    reason: format!("{f:?} is not a finite number (expected e.g. \"2, 0\")"),
                })
        })
        .collect()
}
