//! Reference problems shared by tests, benchmarks and examples.
//!
//! Each problem is a struct implementing [`OdeSystem`] for any [`Real`] and
//! [`TestProblem`] (initial value, interval, and the exact solution where one is known).
//!
//! | problem | n | interval | known solution |
//! |---|---|---|---|
//! | [`Arenstorf`] orbit (restricted three-body) | 4 | `[0, 17.0652…]` | periodic: `y(T) = y0` |
//! | [`Lorenz`] (σ = 10, ρ = 28, β = 8/3) | 3 | `[0, 10]` | — (chaotic) |
//! | [`VanDerPol`] (μ = 1) | 2 | `[0, 20]` | — |
//! | [`Brusselator`] (A = 1, B = 3) | 2 | `[0, 20]` | — |
//! | [`Pleiades`] (7 bodies) | 28 | `[0, 3]` | — |
//! | [`LinearSystem`] `y' = A y` | any | any | `expm(A t) y0` |
//! | [`Decay`] `y' = λ y` | 1 | any | `y0 e^{λt}` |
//! | [`Harmonic`] `x'' = −ω² x` | 2 | any | rotation |
//! | [`Logistic`] `y' = r y (1 − y)` | 1 | any | logistic curve |
//! | [`Riccati`] `y' = −2 t y²` (non-autonomous) | 1 | any | `1 / (1 + t²)` |

// Coefficients are copied digit for digit from the published sources (more digits than
// f64 holds); keeping them verbatim makes them checkable against the originals.
#![allow(clippy::excessive_precision)]

use crate::real::{Real, c};
use crate::system::OdeSystem;

/// A reference problem: an [`OdeSystem`] with its initial value and interval.
pub trait TestProblem<T: Real>: OdeSystem<T> {
    /// Short name.
    fn name(&self) -> &'static str;
    /// Initial state.
    fn y0(&self) -> Vec<T>;
    /// `(t0, t_end)`.
    fn t_span(&self) -> (T, T);
    /// The exact solution at `t`, if known in closed form.
    fn exact(&self, _t: T) -> Option<Vec<T>> {
        None
    }
}

/// The Arenstorf orbit (Hairer–Nørsett–Wanner I, II.0): a periodic orbit of the restricted
/// three-body problem Earth–Moon–satellite, `μ = 0.012277471`. The period `T` is known to
/// 30 digits, so `y(T) = y0` is the exact end value.
#[derive(Debug, Clone, Copy, Default)]
pub struct Arenstorf;

/// Period of the Arenstorf orbit.
pub const ARENSTORF_PERIOD: f64 = 17.065_216_560_157_962_558_891_720_624_9;

impl<T: Real> OdeSystem<T> for Arenstorf {
    #[inline]
    fn rhs(&mut self, _t: T, y: &[T], dy: &mut [T]) {
        let mu: T = c(0.012277471);
        let mu1 = T::one() - mu;
        let (y1, y2, y3, y4) = (y[0], y[1], y[2], y[3]);
        let a = (y1 + mu) * (y1 + mu) + y2 * y2;
        let b = (y1 - mu1) * (y1 - mu1) + y2 * y2;
        let d1 = a * a.sqrt();
        let d2 = b * b.sqrt();
        dy[0] = y3;
        dy[1] = y4;
        dy[2] = y1 + c::<T>(2.0) * y4 - mu1 * (y1 + mu) / d1 - mu * (y1 - mu1) / d2;
        dy[3] = y2 - c::<T>(2.0) * y3 - mu1 * y2 / d1 - mu * y2 / d2;
    }
}

impl<T: Real> TestProblem<T> for Arenstorf {
    fn name(&self) -> &'static str {
        "arenstorf"
    }
    fn y0(&self) -> Vec<T> {
        vec![
            c(0.994),
            T::zero(),
            T::zero(),
            c(-2.001_585_106_379_082_522_405_378_622_24),
        ]
    }
    fn t_span(&self) -> (T, T) {
        (T::zero(), c(ARENSTORF_PERIOD))
    }
    fn exact(&self, t: T) -> Option<Vec<T>> {
        // Only the end point (one period) is known exactly.
        let (t0, t1) = <Self as TestProblem<T>>::t_span(self);
        (t == t0 || t == t1).then(|| <Self as TestProblem<T>>::y0(self))
    }
}

/// The Lorenz system `x' = σ(y − x), y' = x(ρ − z) − y, z' = xy − βz` with the classical
/// chaotic parameters, from `(1, 1, 1)` over `[0, 10]`.
#[derive(Debug, Clone, Copy)]
pub struct Lorenz {
    /// σ
    pub sigma: f64,
    /// ρ
    pub rho: f64,
    /// β
    pub beta: f64,
}

impl Default for Lorenz {
    fn default() -> Self {
        Lorenz {
            sigma: 10.0,
            rho: 28.0,
            beta: 8.0 / 3.0,
        }
    }
}

impl<T: Real> OdeSystem<T> for Lorenz {
    #[inline]
    fn rhs(&mut self, _t: T, y: &[T], dy: &mut [T]) {
        let (s, r, b): (T, T, T) = (c(self.sigma), c(self.rho), c(self.beta));
        dy[0] = s * (y[1] - y[0]);
        dy[1] = y[0] * (r - y[2]) - y[1];
        dy[2] = y[0] * y[1] - b * y[2];
    }
}

impl<T: Real> TestProblem<T> for Lorenz {
    fn name(&self) -> &'static str {
        "lorenz"
    }
    fn y0(&self) -> Vec<T> {
        vec![T::one(); 3]
    }
    fn t_span(&self) -> (T, T) {
        (T::zero(), c(10.0))
    }
}

/// Van der Pol's oscillator `x'' = μ(1 − x²)x' − x` as a first-order system, μ = 1 by
/// default, from `(2, 0)` over `[0, 20]`.
#[derive(Debug, Clone, Copy)]
pub struct VanDerPol {
    /// μ
    pub mu: f64,
}

impl Default for VanDerPol {
    fn default() -> Self {
        VanDerPol { mu: 1.0 }
    }
}

impl<T: Real> OdeSystem<T> for VanDerPol {
    #[inline]
    fn rhs(&mut self, _t: T, y: &[T], dy: &mut [T]) {
        let mu: T = c(self.mu);
        dy[0] = y[1];
        dy[1] = mu * (T::one() - y[0] * y[0]) * y[1] - y[0];
    }
}

impl<T: Real> TestProblem<T> for VanDerPol {
    fn name(&self) -> &'static str {
        "vanderpol"
    }
    fn y0(&self) -> Vec<T> {
        vec![c(2.0), T::zero()]
    }
    fn t_span(&self) -> (T, T) {
        (T::zero(), c(20.0))
    }
}

/// The Brusselator `y1' = A + y1² y2 − (B + 1) y1, y2' = B y1 − y1² y2`, A = 1, B = 3
/// (Hairer–Nørsett–Wanner I, BRUS), from `(1.5, 3)` over `[0, 20]`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Brusselator;

impl<T: Real> OdeSystem<T> for Brusselator {
    #[inline]
    fn rhs(&mut self, _t: T, y: &[T], dy: &mut [T]) {
        let y1sq_y2 = y[0] * y[0] * y[1];
        dy[0] = T::one() + y1sq_y2 - c::<T>(4.0) * y[0];
        dy[1] = c::<T>(3.0) * y[0] - y1sq_y2;
    }
}

impl<T: Real> TestProblem<T> for Brusselator {
    fn name(&self) -> &'static str {
        "brusselator"
    }
    fn y0(&self) -> Vec<T> {
        vec![c(1.5), c(3.0)]
    }
    fn t_span(&self) -> (T, T) {
        (T::zero(), c(20.0))
    }
}

/// The Pleiades problem (Hairer–Nørsett–Wanner I, PLEI): seven stars in the plane with
/// masses `m_i = i`, state `[x(7), y(7), x'(7), y'(7)]`, over `[0, 3]`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Pleiades;

impl<T: Real> OdeSystem<T> for Pleiades {
    #[inline]
    fn rhs(&mut self, _t: T, y: &[T], dy: &mut [T]) {
        let (pos, vel) = y.split_at(14);
        let (x, yy) = pos.split_at(7);
        dy[..14].copy_from_slice(vel);
        let (ax, ay) = dy[14..].split_at_mut(7);
        ax.fill(T::zero());
        ay.fill(T::zero());
        for i in 0..7 {
            for j in (i + 1)..7 {
                let dx = x[j] - x[i];
                let dyy = yy[j] - yy[i];
                let r2 = dx * dx + dyy * dyy;
                let r3 = r2 * r2.sqrt();
                let mi: T = c((i + 1) as f64);
                let mj: T = c((j + 1) as f64);
                ax[i] += mj * dx / r3;
                ay[i] += mj * dyy / r3;
                ax[j] -= mi * dx / r3;
                ay[j] -= mi * dyy / r3;
            }
        }
    }
}

impl<T: Real> TestProblem<T> for Pleiades {
    fn name(&self) -> &'static str {
        "pleiades"
    }
    fn y0(&self) -> Vec<T> {
        let v: [f64; 28] = [
            3.0, 3.0, -1.0, -3.0, 2.0, -2.0, 2.0, // x
            3.0, -3.0, 2.0, 0.0, 0.0, -4.0, 4.0, // y
            0.0, 0.0, 0.0, 0.0, 0.0, 1.75, -1.5, // x'
            0.0, 0.0, 0.0, -1.25, 1.0, 0.0, 0.0, // y'
        ];
        v.iter().map(|&x| c(x)).collect()
    }
    fn t_span(&self) -> (T, T) {
        (T::zero(), c(3.0))
    }
}

/// `e^{A t}` by scaling and squaring with a degree-20 Taylor polynomial (f64, row-major,
/// `n × n`); accurate to a few ulp times `‖A t‖` for the moderate norms used in tests.
pub fn expm(a: &[f64], n: usize, t: f64) -> Vec<f64> {
    let norm = (0..n)
        .map(|i| (0..n).map(|j| (a[i * n + j] * t).abs()).sum::<f64>())
        .fold(0.0, f64::max);
    let mut s = 0u32;
    while norm / f64::from(1u32 << s.min(30)) > 0.25 && s < 60 {
        s += 1;
    }
    let scale = t / 2f64.powi(s as i32);
    let b: Vec<f64> = a.iter().map(|x| x * scale).collect();
    let matmul = |x: &[f64], y: &[f64]| -> Vec<f64> {
        let mut z = vec![0.0; n * n];
        for i in 0..n {
            for k in 0..n {
                let xik = x[i * n + k];
                for j in 0..n {
                    z[i * n + j] += xik * y[k * n + j];
                }
            }
        }
        z
    };
    // Horner: I + B(I + B/2(I + B/3(...)))
    let mut e = vec![0.0; n * n];
    for i in 0..n {
        e[i * n + i] = 1.0;
    }
    for k in (1..=20).rev() {
        let mut be = matmul(&b, &e);
        for v in be.iter_mut() {
            *v /= f64::from(k);
        }
        for i in 0..n {
            be[i * n + i] += 1.0;
        }
        e = be;
    }
    for _ in 0..s {
        e = matmul(&e, &e);
    }
    e
}

/// The linear system `y' = A y` (row-major `A`), exact solution `expm(A t) y0`.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearSystem {
    /// `A`, row-major `n × n`.
    pub a: Vec<f64>,
    /// Initial state.
    pub y0: Vec<f64>,
    /// End time (start is 0).
    pub t_end: f64,
}

impl LinearSystem {
    /// State length.
    pub fn n(&self) -> usize {
        self.y0.len()
    }

    /// `expm(A t) y0` in f64.
    pub fn exact_f64(&self, t: f64) -> Vec<f64> {
        let n = self.n();
        let e = expm(&self.a, n, t);
        (0..n)
            .map(|i| (0..n).map(|j| e[i * n + j] * self.y0[j]).sum())
            .collect()
    }
}

impl<T: Real> OdeSystem<T> for LinearSystem {
    #[inline]
    fn rhs(&mut self, _t: T, y: &[T], dy: &mut [T]) {
        let n = y.len();
        for i in 0..n {
            let row = &self.a[i * n..(i + 1) * n];
            let mut acc = T::zero();
            for (aij, &yj) in row.iter().zip(y) {
                acc += c::<T>(*aij) * yj;
            }
            dy[i] = acc;
        }
    }
}

impl<T: Real> TestProblem<T> for LinearSystem {
    fn name(&self) -> &'static str {
        "linear"
    }
    fn y0(&self) -> Vec<T> {
        self.y0.iter().map(|&x| c(x)).collect()
    }
    fn t_span(&self) -> (T, T) {
        (T::zero(), c(self.t_end))
    }
    fn exact(&self, t: T) -> Option<Vec<T>> {
        Some(
            self.exact_f64(t.to_f64_lossy())
                .into_iter()
                .map(|x| c(x))
                .collect(),
        )
    }
}

/// Exponential decay `y' = λ y`, `y(0) = 1` over `[0, 1]`.
#[derive(Debug, Clone, Copy)]
pub struct Decay {
    /// λ
    pub lambda: f64,
}

impl<T: Real> OdeSystem<T> for Decay {
    #[inline]
    fn rhs(&mut self, _t: T, y: &[T], dy: &mut [T]) {
        dy[0] = c::<T>(self.lambda) * y[0];
    }
}

impl<T: Real> TestProblem<T> for Decay {
    fn name(&self) -> &'static str {
        "decay"
    }
    fn y0(&self) -> Vec<T> {
        vec![T::one()]
    }
    fn t_span(&self) -> (T, T) {
        (T::zero(), T::one())
    }
    fn exact(&self, t: T) -> Option<Vec<T>> {
        Some(vec![(c::<T>(self.lambda) * t).exp()])
    }
}

/// Harmonic oscillator `x' = v, v' = −ω² x`, `(x, v)(0) = (1, 0)` over `[0, 2π/ω]`.
#[derive(Debug, Clone, Copy)]
pub struct Harmonic {
    /// ω
    pub omega: f64,
}

impl<T: Real> OdeSystem<T> for Harmonic {
    #[inline]
    fn rhs(&mut self, _t: T, y: &[T], dy: &mut [T]) {
        let w: T = c(self.omega);
        dy[0] = y[1];
        dy[1] = -w * w * y[0];
    }
}

impl<T: Real> TestProblem<T> for Harmonic {
    fn name(&self) -> &'static str {
        "harmonic"
    }
    fn y0(&self) -> Vec<T> {
        vec![T::one(), T::zero()]
    }
    fn t_span(&self) -> (T, T) {
        (T::zero(), c(2.0 * core::f64::consts::PI / self.omega))
    }
    fn exact(&self, t: T) -> Option<Vec<T>> {
        let w: T = c(self.omega);
        Some(vec![(w * t).cos(), -w * (w * t).sin()])
    }
}

/// Logistic growth `y' = r y (1 − y)`, `y(0) = y0` over `[0, 2]`.
#[derive(Debug, Clone, Copy)]
pub struct Logistic {
    /// Rate `r`.
    pub r: f64,
    /// Initial value in (0, 1).
    pub y0: f64,
}

impl<T: Real> OdeSystem<T> for Logistic {
    #[inline]
    fn rhs(&mut self, _t: T, y: &[T], dy: &mut [T]) {
        dy[0] = c::<T>(self.r) * y[0] * (T::one() - y[0]);
    }
}

impl<T: Real> TestProblem<T> for Logistic {
    fn name(&self) -> &'static str {
        "logistic"
    }
    fn y0(&self) -> Vec<T> {
        vec![c(self.y0)]
    }
    fn t_span(&self) -> (T, T) {
        (T::zero(), c(2.0))
    }
    fn exact(&self, t: T) -> Option<Vec<T>> {
        let y0: T = c(self.y0);
        let e = (c::<T>(self.r) * t).exp();
        Some(vec![y0 * e / (T::one() - y0 + y0 * e)])
    }
}

/// The non-autonomous Riccati equation `y' = −2 t y²`, `y(0) = 1`, solution `1/(1 + t²)`,
/// over `[0, 2]`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Riccati;

impl<T: Real> OdeSystem<T> for Riccati {
    #[inline]
    fn rhs(&mut self, t: T, y: &[T], dy: &mut [T]) {
        dy[0] = -c::<T>(2.0) * t * y[0] * y[0];
    }
}

impl<T: Real> TestProblem<T> for Riccati {
    fn name(&self) -> &'static str {
        "riccati"
    }
    fn y0(&self) -> Vec<T> {
        vec![T::one()]
    }
    fn t_span(&self) -> (T, T) {
        (T::zero(), c(2.0))
    }
    fn exact(&self, t: T) -> Option<Vec<T>> {
        Some(vec![T::one() / (T::one() + t * t)])
    }
}
