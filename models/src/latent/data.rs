//! Irregularly sampled time series: the series type, mini-batches on the union of their
//! time points, the data sets of the literature and a CSV reader.
//!
//! A series is a list of strictly increasing times with a `dim`-component observation at
//! each, some components possibly missing. A [`IrregularBatch`] puts `B` series on the
//! sorted union of their times `t_0 < … < t_{N−1}`, in the layout of an
//! [`OdeBlock`](crate::OdeBlock)'s output, `[N, B, dim]`, with two 0/1 masks of the same
//! shape: `mask` (what the encoder sees) and `target` (what the likelihood and the
//! errors score). Training on a series uses `target = mask`; interpolation scores
//! held-out points, extrapolation encodes the first part and scores the rest.
//!
//! Data sets:
//! * [`spirals`]: the noisy two-dimensional spirals of Chen et al. (2018) §5 and
//!   torchdiffeq's `examples/latent_ode.py` (clockwise `r = a + 50 b / (6π + 1 − t)`
//!   centred at `(−5, 0)`, counter-clockwise `r = a + b t` centred at `(5, 0)`, each
//!   series a random window of `n_sample` consecutive points of one of them, Gaussian
//!   noise), with each point kept with probability `keep` so that every series has its
//!   own irregular times on the shared grid.
//! * [`periodic`]: the toy of Rubanova et al. (2019) §4.1, `x(t) = a sin(ω t + φ)` with
//!   random amplitude, frequency and phase, observed at random times of a shared
//!   irregular grid on `[0, t_max]`, noise `σ`.
//! * [`state_dependent_spirals`]: spirals whose observation times are a (grid-discretised)
//!   Poisson process with an intensity that depends on the state,
//!   `λ(t) = λ_lo + (λ_hi − λ_lo) σ(3 y(t))`: observations are dense where `y > 0`.
//! * [`rate_spirals`]: the same times, with `y` (the component that drives the rate)
//!   observed only at a fraction of them (or never), and the clean trajectories: data on
//!   which the times say something about the state that the values do not.
//! * [`read_csv`]: a user's file of rows `series,time,v_1,…,v_d` (a header line naming the
//!   columns, empty cells for missing values), errors with `file:line:column`.

use std::path::Path;

use autodiff::Float;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::ModelsError;

/// One irregularly sampled series: `times` strictly increasing, `values` `[n, dim]`
/// row-major (ignored where missing), `observed` `[n, dim]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Series<T> {
    /// Name of the series (the CSV's id, or its index).
    pub id: String,
    /// Observation times, strictly increasing.
    pub times: Vec<T>,
    /// Values, `[times.len(), dim]` row-major.
    pub values: Vec<T>,
    /// Which values are observed, `[times.len(), dim]`.
    pub observed: Vec<bool>,
}

/// A set of irregular series with `dim` components each.
#[derive(Clone, Debug, PartialEq)]
pub struct IrregularDataset<T> {
    dim: usize,
    series: Vec<Series<T>>,
    names: Vec<String>,
}

/// `x > 0` (false for NaN).
pub(crate) fn gt0(x: f64) -> bool {
    x.partial_cmp(&0.0) == Some(std::cmp::Ordering::Greater)
}

/// `x ≥ 0` (false for NaN).
pub(crate) fn ge0(x: f64) -> bool {
    x.partial_cmp(&0.0)
        .is_some_and(|o| o != std::cmp::Ordering::Less)
}

/// A generated data set with its clean values: the series, the shared grid, and each
/// series' noise-free values on the grid.
pub type WithClean<T> = (IrregularDataset<T>, Vec<T>, Vec<Vec<T>>);

fn invalid(name: &'static str, reason: String) -> ModelsError {
    ModelsError::InvalidArgument { name, reason }
}

impl<T: Float> IrregularDataset<T> {
    /// A data set of `series` with `dim` components named `names` (`dim` names). Errors
    /// if a series has lengths that do not match, times that are not finite and strictly
    /// increasing, non-finite observed values, or no observation at all.
    pub fn new(
        dim: usize,
        names: Vec<String>,
        series: Vec<Series<T>>,
    ) -> Result<Self, ModelsError> {
        if dim == 0 || names.len() != dim {
            return Err(invalid(
                "dataset",
                format!(
                    "need dim > 0 and one name per component, got dim {dim} and {} names",
                    names.len()
                ),
            ));
        }
        for (k, s) in series.iter().enumerate() {
            let n = s.times.len();
            if s.values.len() != n * dim || s.observed.len() != n * dim {
                return Err(invalid(
                    "series",
                    format!(
                        "series {k} ({}): {n} times need {} values and mask entries, got {} and {}",
                        s.id,
                        n * dim,
                        s.values.len(),
                        s.observed.len()
                    ),
                ));
            }
            if let Some(i) =
                (0..n).find(|&i| !s.times[i].is_finite() || (i > 0 && s.times[i] <= s.times[i - 1]))
            {
                return Err(invalid(
                    "series",
                    format!(
                        "series {k} ({}): times must be finite and strictly increasing (index {i})",
                        s.id
                    ),
                ));
            }
            if let Some(i) = (0..n * dim).find(|&i| s.observed[i] && !s.values[i].is_finite()) {
                return Err(invalid(
                    "series",
                    format!(
                        "series {k} ({}): non-finite observed value at index {i}",
                        s.id
                    ),
                ));
            }
            if !s.observed.iter().any(|&o| o) {
                return Err(invalid(
                    "series",
                    format!("series {k} ({}) has no observation", s.id),
                ));
            }
        }
        Ok(Self { dim, series, names })
    }

    /// Number of components of an observation.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Names of the components.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The series.
    pub fn series(&self) -> &[Series<T>] {
        &self.series
    }

    /// Number of series.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// Whether there is no series.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// The two parts `(first n, rest)` (for a train/test split of a shuffled data set).
    pub fn split(mut self, n: usize) -> (Self, Self) {
        let rest = self.series.split_off(n.min(self.series.len()));
        let other = Self {
            dim: self.dim,
            series: rest,
            names: self.names.clone(),
        };
        (self, other)
    }

    /// The series `indices` on the union of their times, `target = mask = observed`.
    /// Errors on an empty or out-of-range index list.
    pub fn batch(&self, indices: &[usize]) -> Result<IrregularBatch<T>, ModelsError> {
        if indices.is_empty() || indices.iter().any(|&i| i >= self.series.len()) {
            return Err(invalid(
                "batch",
                format!("indices must be non-empty and < {}", self.series.len()),
            ));
        }
        let mut times: Vec<T> = indices
            .iter()
            .flat_map(|&i| self.series[i].times.iter().copied())
            .collect();
        times.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        times.dedup();
        let (n, b, d) = (times.len(), indices.len(), self.dim);
        let mut values = vec![T::zero(); n * b * d];
        let mut mask = vec![T::zero(); n * b * d];
        for (j, &i) in indices.iter().enumerate() {
            let s = &self.series[i];
            let mut row = 0;
            for (k, &t) in s.times.iter().enumerate() {
                while times[row] < t {
                    row += 1;
                }
                for c in 0..d {
                    if s.observed[k * d + c] {
                        values[(row * b + j) * d + c] = s.values[k * d + c];
                        mask[(row * b + j) * d + c] = T::one();
                    }
                }
            }
        }
        let target = mask.clone();
        IrregularBatch::new(times, values, mask, target, b, d)
    }
}

/// `B` series on the union of their times, in the layout `[N, B, dim]` (time-major, as an
/// ODE block's output), with the encoder's mask and the likelihood's mask.
#[derive(Clone, Debug, PartialEq)]
pub struct IrregularBatch<T> {
    /// The union of the times, strictly increasing, `[N]`.
    pub times: Vec<T>,
    /// Values `[N, B, dim]` (zero where not observed).
    pub values: Vec<T>,
    /// 1 where the encoder sees the value, else 0, `[N, B, dim]`.
    pub mask: Vec<T>,
    /// 1 where the likelihood (and the error) scores the value, else 0, `[N, B, dim]`.
    pub target: Vec<T>,
    /// Number of series `B`.
    pub batch: usize,
    /// Components `dim`.
    pub dim: usize,
}

impl<T: Float> IrregularBatch<T> {
    /// Checks the sizes (`values`, `mask`, `target` of `N·B·dim` entries), the times
    /// (finite, strictly increasing, at least one), the masks (0 or 1) and the values
    /// (finite where a mask is 1).
    pub fn new(
        times: Vec<T>,
        values: Vec<T>,
        mask: Vec<T>,
        target: Vec<T>,
        batch: usize,
        dim: usize,
    ) -> Result<Self, ModelsError> {
        let len = times.len() * batch * dim;
        if times.is_empty()
            || batch == 0
            || dim == 0
            || values.len() != len
            || mask.len() != len
            || target.len() != len
        {
            return Err(invalid(
                "batch",
                format!(
                    "{} times × {batch} series × {dim} components need {len} values and mask entries, got {}, {}, {}",
                    times.len(),
                    values.len(),
                    mask.len(),
                    target.len()
                ),
            ));
        }
        if let Some(i) =
            (0..times.len()).find(|&i| !times[i].is_finite() || (i > 0 && times[i] <= times[i - 1]))
        {
            return Err(invalid(
                "batch",
                format!("times must be finite and strictly increasing (index {i})"),
            ));
        }
        for (name, m) in [("mask", &mask), ("target", &target)] {
            if let Some(i) = m.iter().position(|&v| v != T::zero() && v != T::one()) {
                return Err(invalid(
                    "batch",
                    format!("{name} entries must be 0 or 1 (index {i})"),
                ));
            }
        }
        if let Some(i) = (0..len)
            .find(|&i| (mask[i] == T::one() || target[i] == T::one()) && !values[i].is_finite())
        {
            return Err(invalid(
                "batch",
                format!("non-finite observed value at index {i}"),
            ));
        }
        Ok(Self {
            times,
            values,
            mask,
            target,
            batch,
            dim,
        })
    }

    /// Number of union time points `N`.
    pub fn n_times(&self) -> usize {
        self.times.len()
    }

    /// Extrapolation split: the encoder sees the observations at times `< t_split`, the
    /// target is the observations at times `≥ t_split`.
    pub fn extrapolation(&self, t_split: T) -> Self {
        let row = self.batch * self.dim;
        let mut out = self.clone();
        for (i, &t) in self.times.iter().enumerate() {
            let r = i * row..(i + 1) * row;
            if t < t_split {
                out.target[r].fill(T::zero());
            } else {
                out.mask[r].fill(T::zero());
            }
        }
        out
    }

    /// Interpolation split: each observed value is held out with probability `frac`
    /// (seeded): the encoder sees the others, the target is the held-out ones. At least
    /// one observation per series stays visible.
    pub fn holdout(&self, frac: f64, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut out = self.clone();
        out.target.fill(T::zero());
        let (b, d) = (self.batch, self.dim);
        for j in 0..b {
            let mut first = true;
            for i in 0..self.times.len() {
                for c in 0..d {
                    let k = (i * b + j) * d + c;
                    if self.mask[k] == T::one() {
                        if !first && rng.random::<f64>() < frac {
                            out.mask[k] = T::zero();
                            out.target[k] = T::one();
                        }
                        first = false;
                    }
                }
            }
        }
        out
    }

    /// Number of scored values (entries of `target` equal to 1).
    pub fn n_targets(&self) -> usize {
        self.target.iter().filter(|&&m| m == T::one()).count()
    }

    /// For each series, the index of its last time with a value the encoder sees or the
    /// likelihood scores (`None` for a series with neither).
    pub fn last_index(&self) -> Vec<Option<usize>> {
        let (b, d) = (self.batch, self.dim);
        (0..b)
            .map(|j| {
                (0..self.times.len()).rev().find(|&i| {
                    (0..d).any(|c| {
                        let k = (i * b + j) * d + c;
                        self.mask[k] == T::one() || self.target[k] == T::one()
                    })
                })
            })
            .collect()
    }
}

/// A standard normal draw (Box–Muller; `rand_distr` is not a dependency of `models`).
pub fn normal(rng: &mut StdRng) -> f64 {
    let u: f64 = 1.0 - rng.random::<f64>();
    let v: f64 = rng.random::<f64>();
    (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
}

/// Settings of [`spirals`] (torchdiffeq's `latent_ode.py` defaults, plus `keep`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SpiralConfig {
    /// Number of series.
    pub n_spirals: usize,
    /// Points of the full spirals on `[0, stop]`.
    pub n_total: usize,
    /// Consecutive points per series (its times are the first `n_sample` grid times).
    pub n_sample: usize,
    /// End of the spirals' parameter range (6π).
    pub stop: f64,
    /// Standard deviation of the observation noise.
    pub noise_std: f64,
    /// Spiral parameter `a`.
    pub a: f64,
    /// Spiral parameter `b`.
    pub b: f64,
    /// Probability of keeping each point (1 = the regular data of torchdiffeq).
    pub keep: f64,
}

impl Default for SpiralConfig {
    fn default() -> Self {
        Self {
            n_spirals: 1000,
            n_total: 500,
            n_sample: 100,
            stop: 6.0 * std::f64::consts::PI,
            noise_std: 0.3,
            a: 0.0,
            b: 0.3,
            keep: 0.5,
        }
    }
}

/// The clockwise (`cw = true`) or counter-clockwise spiral at parameter `t ∈ [0, stop]`.
pub fn spiral_point(cfg: &SpiralConfig, t: f64, cw: bool) -> [f64; 2] {
    if cw {
        let z = cfg.stop + 1.0 - t;
        let r = cfg.a + cfg.b * 50.0 / z;
        [r * z.cos() - 5.0, r * z.sin()]
    } else {
        let r = cfg.a + cfg.b * t;
        [r * t.cos() + 5.0, r * t.sin()]
    }
}

fn check_spirals(cfg: &SpiralConfig) -> Result<(), ModelsError> {
    if cfg.n_spirals == 0
        || cfg.n_sample < 2
        || cfg.n_total < 2 * cfg.n_sample + 1
        || !gt0(cfg.stop)
        || !ge0(cfg.noise_std)
        || !(cfg.keep > 0.0 && cfg.keep <= 1.0)
    {
        return Err(invalid(
            "spirals",
            format!(
                "need n_spirals > 0, n_sample ≥ 2, n_total > 2 n_sample, stop > 0, noise ≥ 0, keep in (0, 1]; got {cfg:?}"
            ),
        ));
    }
    Ok(())
}

/// The noisy irregular spirals (see the module docs); the series' ids say `cw` or
/// `ccw`; the clean trajectory of each series comes back too (`[n_sample, 2]` per
/// series, on the grid times).
pub fn spirals<T: Float>(
    cfg: &SpiralConfig,
    seed: u64,
) -> Result<(IrregularDataset<T>, Vec<Vec<T>>), ModelsError> {
    check_spirals(cfg)?;
    let mut rng = StdRng::seed_from_u64(seed);
    let dt = cfg.stop / (cfg.n_total - 1) as f64;
    let mut series = Vec::with_capacity(cfg.n_spirals);
    let mut clean = Vec::with_capacity(cfg.n_spirals);
    for k in 0..cfg.n_spirals {
        let t0 = rng.random_range(0..cfg.n_total - 2 * cfg.n_sample) + cfg.n_sample;
        let cw = rng.random::<f64>() <= 0.5;
        let (mut times, mut values, mut truth) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..cfg.n_sample {
            let p = spiral_point(cfg, (t0 + i) as f64 * dt, cw);
            truth.extend(p.map(T::from_f64_const));
            if rng.random::<f64>() < cfg.keep || (i == 0 && cfg.keep < 1.0 && times.is_empty()) {
                times.push(T::from_f64_const(i as f64 * dt));
                values.extend(p.map(|v| T::from_f64_const(v + cfg.noise_std * normal(&mut rng))));
            }
        }
        let n = times.len();
        series.push(Series {
            id: format!("{k}:{}", if cw { "cw" } else { "ccw" }),
            times,
            values,
            observed: vec![true; 2 * n],
        });
        clean.push(truth);
    }
    Ok((
        IrregularDataset::new(2, vec!["x".into(), "y".into()], series)?,
        clean,
    ))
}

/// Spirals whose observation times depend on the state: on the grid of `cfg` (each
/// series a window of `n_sample` points as in [`spirals`]) point `i` is observed with
/// probability `λ(t_i) Δt`, `λ = λ_lo + (λ_hi − λ_lo) σ(3 y)` (a Poisson process with
/// that intensity, discretised on the grid; `λ_hi Δt ≤ 1` required). `cfg.keep` is
/// unused. Returns the data and the intensities used, `[n_sample]` per series.
/// (Both components are observed at every event: [`rate_spirals`] with
/// `hidden_keep = 1`.)
pub fn state_dependent_spirals<T: Float>(
    cfg: &SpiralConfig,
    lambda_lo: f64,
    lambda_hi: f64,
    seed: u64,
) -> Result<(IrregularDataset<T>, Vec<Vec<f64>>), ModelsError> {
    let r = rate_spirals::<T>(cfg, lambda_lo, lambda_hi, 1.0, seed)?;
    Ok((r.data, r.rates))
}

/// What [`rate_spirals`] generates: the data, the shared grid of the series' windows,
/// each series' clean (noise-free) values on the grid and the intensity it was sampled
/// with.
#[derive(Clone, Debug, PartialEq)]
pub struct RateSpirals<T> {
    /// The noisy irregular series (components `x`, `y`).
    pub data: IrregularDataset<T>,
    /// The grid `t_i = i Δt`, `i < n_sample` (every series' times are a subset of it).
    pub grid: Vec<f64>,
    /// Clean values per series, `[n_sample, 2]` row-major on `grid`.
    pub clean: Vec<Vec<f64>>,
    /// Intensity `λ(t_i)` per series, `[n_sample]` on `grid`.
    pub rates: Vec<Vec<f64>>,
}

/// Spirals observed at a rate driven by a component that is seen rarely or never: the
/// observation times are those of [`state_dependent_spirals`] (a grid-discretised
/// Poisson process of intensity `λ = λ_lo + (λ_hi − λ_lo) σ(3 y(t))`), `x` is observed
/// (noisy) at every one of them, `y` only at a random fraction `hidden_keep` of them
/// (independent draws; `0`: never, `1`: always, which is exactly
/// [`state_dependent_spirals`]).
///
/// This is the situation the Poisson-process likelihood of the times is for (Rubanova et
/// al. 2019, §4): the times carry information about the state (the sign of `y`) that the
/// values carry only weakly (through `x`'s dynamics) or, for the rarely observed `y`,
/// sparsely. With the same `seed`, the times and the `x` values do not depend on
/// `hidden_keep` (the keep draws use their own stream). Errors on invalid spiral
/// settings, intensities outside `0 ≤ λ_lo ≤ λ_hi ≤ 1/Δt`, or `hidden_keep ∉ [0, 1]`.
pub fn rate_spirals<T: Float>(
    cfg: &SpiralConfig,
    lambda_lo: f64,
    lambda_hi: f64,
    hidden_keep: f64,
    seed: u64,
) -> Result<RateSpirals<T>, ModelsError> {
    check_spirals(cfg)?;
    let dt = cfg.stop / (cfg.n_total - 1) as f64;
    if !(lambda_lo >= 0.0 && lambda_hi >= lambda_lo && lambda_hi * dt <= 1.0) {
        return Err(invalid(
            "intensity",
            format!(
                "need 0 ≤ λ_lo ≤ λ_hi ≤ 1/Δt = {}, got {lambda_lo}, {lambda_hi}",
                1.0 / dt
            ),
        ));
    }
    if !(0.0..=1.0).contains(&hidden_keep) {
        return Err(invalid(
            "hidden_keep",
            format!(
                "the fraction of times at which y is observed must be in [0, 1], got {hidden_keep}"
            ),
        ));
    }
    let mut rng = StdRng::seed_from_u64(seed);
    // A stream of its own, so the times and x values do not depend on `hidden_keep`.
    let mut keep_rng = StdRng::seed_from_u64(seed ^ 0x4849_4445);
    let grid: Vec<f64> = (0..cfg.n_sample).map(|i| i as f64 * dt).collect();
    let mut series = Vec::with_capacity(cfg.n_spirals);
    let mut rates = Vec::with_capacity(cfg.n_spirals);
    let mut clean = Vec::with_capacity(cfg.n_spirals);
    for k in 0..cfg.n_spirals {
        let t0 = rng.random_range(0..cfg.n_total - 2 * cfg.n_sample) + cfg.n_sample;
        let cw = rng.random::<f64>() <= 0.5;
        let (mut times, mut values, mut observed) = (Vec::new(), Vec::new(), Vec::new());
        let (mut lam, mut truth) = (Vec::with_capacity(cfg.n_sample), Vec::new());
        for (i, &t) in grid.iter().enumerate() {
            let p = spiral_point(cfg, (t0 + i) as f64 * dt, cw);
            truth.extend(p);
            let l = lambda_lo + (lambda_hi - lambda_lo) / (1.0 + (-3.0 * p[1]).exp());
            lam.push(l);
            if rng.random::<f64>() < l * dt || (i + 1 == cfg.n_sample && times.is_empty()) {
                times.push(T::from_f64_const(t));
                values.extend(p.map(|v| T::from_f64_const(v + cfg.noise_std * normal(&mut rng))));
                let y_seen = hidden_keep >= 1.0 || keep_rng.random::<f64>() < hidden_keep;
                observed.extend([true, y_seen]);
            }
        }
        series.push(Series {
            id: format!("{k}:{}", if cw { "cw" } else { "ccw" }),
            times,
            values,
            observed,
        });
        rates.push(lam);
        clean.push(truth);
    }
    Ok(RateSpirals {
        data: IrregularDataset::new(2, vec!["x".into(), "y".into()], series)?,
        grid,
        clean,
        rates,
    })
}

/// Settings of [`periodic`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PeriodicConfig {
    /// Number of series.
    pub n_series: usize,
    /// Points of the shared irregular grid on `[0, t_max]`.
    pub n_points: usize,
    /// End of the time range.
    pub t_max: f64,
    /// Frequency range `[ω_lo, ω_hi]` (radians per unit time).
    pub omega: (f64, f64),
    /// Noise standard deviation.
    pub noise_std: f64,
    /// Probability of observing each grid point.
    pub keep: f64,
}

impl Default for PeriodicConfig {
    fn default() -> Self {
        Self {
            n_series: 1000,
            n_points: 100,
            t_max: 5.0,
            omega: (1.0, 4.0),
            noise_std: 0.01,
            keep: 0.5,
        }
    }
}

/// Rubanova et al.'s periodic toy (see the module docs): one component; the clean values
/// on the grid come back too.
pub fn periodic<T: Float>(cfg: &PeriodicConfig, seed: u64) -> Result<WithClean<T>, ModelsError> {
    if cfg.n_series == 0
        || cfg.n_points < 2
        || !gt0(cfg.t_max)
        || !(cfg.omega.0 > 0.0 && cfg.omega.1 >= cfg.omega.0)
        || !ge0(cfg.noise_std)
        || !(cfg.keep > 0.0 && cfg.keep <= 1.0)
    {
        return Err(invalid("periodic", format!("invalid settings {cfg:?}")));
    }
    let mut rng = StdRng::seed_from_u64(seed);
    // The shared irregular grid: sorted uniform draws, starting at 0.
    let mut grid: Vec<f64> = (0..cfg.n_points - 1)
        .map(|_| rng.random::<f64>() * cfg.t_max)
        .collect();
    grid.push(0.0);
    grid.sort_by(f64::total_cmp);
    grid.dedup();
    let mut series = Vec::with_capacity(cfg.n_series);
    let mut clean = Vec::with_capacity(cfg.n_series);
    for k in 0..cfg.n_series {
        let amp = 0.5 + rng.random::<f64>();
        let w = cfg.omega.0 + (cfg.omega.1 - cfg.omega.0) * rng.random::<f64>();
        let phi = 2.0 * std::f64::consts::PI * rng.random::<f64>();
        let (mut times, mut values) = (Vec::new(), Vec::new());
        let truth: Vec<T> = grid
            .iter()
            .map(|&t| T::from_f64_const(amp * (w * t + phi).sin()))
            .collect();
        for (i, &t) in grid.iter().enumerate() {
            if rng.random::<f64>() < cfg.keep || (i + 1 == grid.len() && times.is_empty()) {
                times.push(T::from_f64_const(t));
                values.push(T::from_f64_const(
                    amp * (w * t + phi).sin() + cfg.noise_std * normal(&mut rng),
                ));
            }
        }
        let n = times.len();
        series.push(Series {
            id: k.to_string(),
            times,
            values,
            observed: vec![true; n],
        });
        clean.push(truth);
    }
    let grid_t = grid.iter().map(|&t| T::from_f64_const(t)).collect();
    Ok((
        IrregularDataset::new(1, vec!["x".into()], series)?,
        grid_t,
        clean,
    ))
}

/// Reads irregular series from a CSV file: a header line `id,time,name_1,…,name_d`, then
/// rows `series id, time, values` (comma-separated; an empty cell is a missing value; a
/// row needs at least one value). Rows of one series may come in any order but a series
/// must not repeat a time. Errors name the file, line and column
/// ([`ModelsError::Data`]).
pub fn read_csv<T: Float>(path: &Path) -> Result<IrregularDataset<T>, ModelsError> {
    let text = std::fs::read_to_string(path).map_err(|source| ModelsError::Io {
        path: path.to_owned(),
        source,
    })?;
    parse_csv(&text, path)
}

/// [`read_csv`] on a string (`path` is only used in error messages).
pub fn parse_csv<T: Float>(text: &str, path: &Path) -> Result<IrregularDataset<T>, ModelsError> {
    let err = |line: usize, column: usize, reason: String| ModelsError::Data {
        path: path.to_owned(),
        line,
        column,
        reason,
    };
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
    let Some((hl, header)) = lines.next() else {
        return Err(err(
            1,
            1,
            "empty file: expected a header `id,time,value_1,...`".into(),
        ));
    };
    let names: Vec<String> = header.split(',').map(|s| s.trim().to_owned()).collect();
    if names.len() < 3 {
        return Err(err(
            hl + 1,
            1,
            format!(
                "the header needs at least 3 columns (id, time, one value), found {}",
                names.len()
            ),
        ));
    }
    let dim = names.len() - 2;
    // (id, rows of (time, values, observed, line)) in order of first appearance.
    type Row<T> = (f64, Vec<T>, Vec<bool>, usize);
    let mut groups: Vec<(String, Vec<Row<T>>)> = Vec::new();
    for (ln, line) in lines {
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        if cells.len() != names.len() {
            return Err(err(
                ln + 1,
                cells.len().min(names.len()) + 1,
                format!(
                    "expected {} columns as in the header, found {}",
                    names.len(),
                    cells.len()
                ),
            ));
        }
        if cells[0].is_empty() {
            return Err(err(ln + 1, 1, "empty series id".into()));
        }
        let t: f64 = cells[1]
            .parse()
            .map_err(|_| err(ln + 1, 2, format!("time `{}` is not a number", cells[1])))?;
        if !t.is_finite() {
            return Err(err(ln + 1, 2, format!("time `{}` is not finite", cells[1])));
        }
        let mut vals = vec![T::zero(); dim];
        let mut obs = vec![false; dim];
        for c in 0..dim {
            let s = cells[c + 2];
            if s.is_empty() {
                continue;
            }
            let v: f64 = s.parse().map_err(|_| {
                err(
                    ln + 1,
                    c + 3,
                    format!(
                        "value `{s}` is not a number (leave the cell empty for a missing value)"
                    ),
                )
            })?;
            if !v.is_finite() {
                return Err(err(ln + 1, c + 3, format!("value `{s}` is not finite")));
            }
            vals[c] = T::from_f64_const(v);
            obs[c] = true;
        }
        if !obs.iter().any(|&o| o) {
            return Err(err(
                ln + 1,
                3,
                "the row has no value (every value cell is empty)".into(),
            ));
        }
        match groups.iter_mut().find(|(id, _)| id == cells[0]) {
            Some((_, rows)) => rows.push((t, vals, obs, ln + 1)),
            None => groups.push((cells[0].to_owned(), vec![(t, vals, obs, ln + 1)])),
        }
    }
    if groups.is_empty() {
        return Err(err(hl + 1, 1, "no data rows after the header".into()));
    }
    let mut series = Vec::with_capacity(groups.len());
    for (id, mut rows) in groups {
        rows.sort_by(|a, b| a.0.total_cmp(&b.0));
        if let Some(w) = rows.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(err(
                w[1].3,
                2,
                format!(
                    "series `{id}` has time {} twice (also on line {})",
                    w[1].0, w[0].3
                ),
            ));
        }
        let times = rows.iter().map(|r| T::from_f64_const(r.0)).collect();
        let values = rows.iter().flat_map(|r| r.1.iter().copied()).collect();
        let observed = rows.iter().flat_map(|r| r.2.iter().copied()).collect();
        series.push(Series {
            id,
            times,
            values,
            observed,
        });
    }
    IrregularDataset::new(dim, names[2..].to_vec(), series)
}
