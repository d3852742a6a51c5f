//! The family of dynamical systems a function encoder is trained on and transferred to,
//! and their demonstrations: trajectories observed at irregular, seeded sample times.
//!
//! Three two-dimensional autonomous systems, each with parameters drawn from a range:
//!
//! ```text
//! Van der Pol        ẋ = y,   ẏ = μ (1 − x²) y − x,          μ ∈ [0.5, 2]
//! damped oscillator  ẋ = y,   ẏ = −ω² x − 2 ζ ω y,            ω ∈ [0.8, 1.5], ζ ∈ [0.05, 0.3]
//! pendulum           ẋ = y,   ẏ = −(g / L) sin x,            L ∈ [4, 12] m, g = 9.81
//! ```
//!
//! A [`Demonstrations`] set holds `n_traj` trajectories of one system from seeded random
//! initial states, all observed at the same `n_times` irregular times on `[0, T]`
//! (`t₀ = 0`, `t_{n−1} = T`, the others jittered by up to ±35 % of the mean spacing), in
//! the ODE block's layout `[n_times, n_traj, 2]`. The trajectories are integrated with
//! Dopri5 at `rtol = atol = 1e-10`; optional Gaussian observation noise is added after.

use ode_solvers::{Method, Options, odeint};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::ModelsError;

/// Gravity (m/s²) of the pendulum.
pub const GRAVITY: f64 = 9.81;

/// The state dimension of every system here.
pub const DIM: usize = 2;

/// One system of the family, with its parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum System {
    /// Van der Pol oscillator `ẍ − μ (1 − x²) ẋ + x = 0`.
    VanDerPol {
        /// Nonlinear damping `μ`.
        mu: f64,
    },
    /// Linear damped oscillator `ẍ + 2 ζ ω ẋ + ω² x = 0`.
    DampedOscillator {
        /// Natural frequency `ω` (rad/s).
        omega: f64,
        /// Damping ratio `ζ`.
        zeta: f64,
    },
    /// Pendulum `ẍ = −(g / L) sin x`.
    Pendulum {
        /// Length `L` (m).
        length: f64,
    },
}

/// The kinds of system, for drawing a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SystemKind {
    /// [`System::VanDerPol`].
    VanDerPol,
    /// [`System::DampedOscillator`].
    DampedOscillator,
    /// [`System::Pendulum`].
    Pendulum,
}

impl SystemKind {
    /// All three kinds.
    pub const ALL: [SystemKind; 3] = [
        SystemKind::VanDerPol,
        SystemKind::DampedOscillator,
        SystemKind::Pendulum,
    ];
}

impl System {
    /// A system of `kind` with parameters drawn uniformly from the family's ranges.
    pub fn sample(kind: SystemKind, rng: &mut StdRng) -> Self {
        match kind {
            SystemKind::VanDerPol => System::VanDerPol {
                mu: rng.random_range(0.5..2.0),
            },
            SystemKind::DampedOscillator => System::DampedOscillator {
                omega: rng.random_range(0.8..1.5),
                zeta: rng.random_range(0.05..0.3),
            },
            SystemKind::Pendulum => System::Pendulum {
                length: rng.random_range(4.0..12.0),
            },
        }
    }

    /// `n` systems cycling through the three kinds (Van der Pol, oscillator, pendulum,
    /// Van der Pol, …), parameters drawn from `seed`.
    pub fn family(n: usize, seed: u64) -> Vec<System> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..n)
            .map(|i| System::sample(SystemKind::ALL[i % 3], &mut rng))
            .collect()
    }

    /// The kind of the system.
    pub fn kind(&self) -> SystemKind {
        match self {
            System::VanDerPol { .. } => SystemKind::VanDerPol,
            System::DampedOscillator { .. } => SystemKind::DampedOscillator,
            System::Pendulum { .. } => SystemKind::Pendulum,
        }
    }

    /// A short label, e.g. `vdp(mu=1.20)`.
    pub fn label(&self) -> String {
        match *self {
            System::VanDerPol { mu } => format!("vdp(mu={mu:.2})"),
            System::DampedOscillator { omega, zeta } => {
                format!("osc(w={omega:.2},z={zeta:.2})")
            }
            System::Pendulum { length } => format!("pend(L={length:.1})"),
        }
    }

    /// Writes the velocity `f(z)` at the state `z = (x, y)` into `dz`.
    pub fn field(&self, z: &[f64], dz: &mut [f64]) {
        let (x, y) = (z[0], z[1]);
        dz[0] = y;
        dz[1] = match *self {
            System::VanDerPol { mu } => mu * (1.0 - x * x) * y - x,
            System::DampedOscillator { omega, zeta } => -omega * omega * x - 2.0 * zeta * omega * y,
            System::Pendulum { length } => -(GRAVITY / length) * x.sin(),
        };
    }

    /// A seeded random initial state: `x, y ∈ [−2, 2]` (Van der Pol, oscillator), angle
    /// in `[−1.5, 1.5]` rad and angular velocity in `[−1, 1]` rad/s (pendulum).
    pub fn initial_state(&self, rng: &mut StdRng) -> [f64; 2] {
        match self {
            System::Pendulum { .. } => [rng.random_range(-1.5..1.5), rng.random_range(-1.0..1.0)],
            _ => [rng.random_range(-2.0..2.0), rng.random_range(-2.0..2.0)],
        }
    }

    /// The states at `ts` (strictly increasing) from `z0`, row `k` the state at `ts[k]`
    /// (`[n_times, 2]`), by Dopri5 at `rtol = atol = 1e-10`.
    pub fn trajectory(&self, z0: [f64; 2], ts: &[f64]) -> Result<Vec<f64>, ModelsError> {
        let sys = *self;
        let mut rhs = move |_t: f64, z: &[f64], dz: &mut [f64]| sys.field(z, dz);
        let sol = odeint(
            &mut rhs,
            &z0,
            ts,
            Method::Dopri5,
            &Options::with_tol(1e-10, 1e-10),
        )?;
        Ok(sol.ys)
    }
}

/// Irregular sample times on `[0, horizon]`: `n ≥ 2` strictly increasing times, the
/// first 0 and the last `horizon`, the interior ones `h (k + u_k)` with `h` the mean
/// spacing and `u_k` uniform in `[−0.35, 0.35]` (seeded).
pub fn irregular_times(n: usize, horizon: f64, seed: u64) -> Result<Vec<f64>, ModelsError> {
    if n < 3 || !(horizon.is_finite() && horizon > 0.0) {
        return Err(ModelsError::InvalidArgument {
            name: "sample times",
            reason: format!(
                "need at least 3 samples on a finite positive horizon, got {n} on {horizon}"
            ),
        });
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let h = horizon / (n - 1) as f64;
    Ok((0..n)
        .map(|k| match k {
            0 => 0.0,
            k if k == n - 1 => horizon,
            k => h * (k as f64 + rng.random_range(-0.35..0.35)),
        })
        .collect())
}

/// Trajectories of one system at shared irregular times, in the ODE block's layout.
#[derive(Debug, Clone, PartialEq)]
pub struct Demonstrations {
    /// The system observed.
    pub system: System,
    /// Sample times, strictly increasing from 0 (`n_times`).
    pub ts: Vec<f64>,
    /// Number of trajectories.
    pub n_traj: usize,
    /// Observed states `[n_times, n_traj, 2]` row-major: `states[(k n_traj + b) 2 + d]`
    /// is component `d` of trajectory `b` at `ts[k]`.
    pub states: Vec<f64>,
}

/// How demonstrations are drawn (see [`Demonstrations::generate`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DemoConfig {
    /// Trajectories per system (≥ 1).
    pub n_traj: usize,
    /// Samples per trajectory (≥ 3).
    pub n_times: usize,
    /// Time span `T` of each trajectory (> 0).
    pub horizon: f64,
    /// Standard deviation of the Gaussian observation noise (≥ 0; 0 = exact samples).
    pub noise: f64,
}

impl Default for DemoConfig {
    /// 4 trajectories of 25 samples on `[0, 3]`, no noise.
    fn default() -> Self {
        Self {
            n_traj: 4,
            n_times: 25,
            horizon: 3.0,
            noise: 0.0,
        }
    }
}

impl Demonstrations {
    /// `config.n_traj` trajectories of `system` from seeded random initial states, at
    /// seeded irregular times ([`irregular_times`]); everything drawn from `seed`.
    pub fn generate(system: System, config: &DemoConfig, seed: u64) -> Result<Self, ModelsError> {
        if config.n_traj == 0 || !(config.noise.is_finite() && config.noise >= 0.0) {
            return Err(ModelsError::InvalidArgument {
                name: "demonstrations",
                reason: format!(
                    "need at least one trajectory and a finite noise level ≥ 0, got {} and {}",
                    config.n_traj, config.noise
                ),
            });
        }
        let ts = irregular_times(config.n_times, config.horizon, seed ^ 0x9E37_79B9)?;
        let mut rng = StdRng::seed_from_u64(seed);
        let (n, b) = (ts.len(), config.n_traj);
        let mut states = vec![0.0; n * b * DIM];
        for j in 0..b {
            let z0 = system.initial_state(&mut rng);
            let ys = system.trajectory(z0, &ts)?;
            for k in 0..n {
                states[(k * b + j) * DIM..(k * b + j + 1) * DIM]
                    .copy_from_slice(&ys[k * DIM..(k + 1) * DIM]);
            }
        }
        if config.noise > 0.0 {
            for s in &mut states {
                *s += config.noise * standard_normal(&mut rng);
            }
        }
        Ok(Self {
            system,
            ts,
            n_traj: b,
            states,
        })
    }

    /// Number of sample times.
    pub fn n_times(&self) -> usize {
        self.ts.len()
    }

    /// The samples of trajectory `j`, `[n_times, 2]`.
    pub fn trajectory(&self, j: usize) -> Vec<f64> {
        let b = self.n_traj;
        (0..self.ts.len())
            .flat_map(|k| {
                let i = (k * b + j) * DIM;
                [self.states[i], self.states[i + 1]]
            })
            .collect()
    }

    /// The initial states `[n_traj, 2]`.
    pub fn initial_states(&self) -> &[f64] {
        &self.states[..self.n_traj * DIM]
    }

    /// Checks the layout (used by every consumer before indexing).
    pub fn validate(&self) -> Result<(), ModelsError> {
        let n = self.ts.len();
        let increasing = self.ts.windows(2).all(|w| w[1] > w[0]);
        if n < 3 || !increasing || self.ts.iter().any(|t| !t.is_finite()) {
            return Err(ModelsError::InvalidArgument {
                name: "demonstrations",
                reason: format!("need at least 3 finite, strictly increasing times, got {n}"),
            });
        }
        if self.n_traj == 0 || self.states.len() != n * self.n_traj * DIM {
            return Err(ModelsError::InvalidArgument {
                name: "demonstrations",
                reason: format!(
                    "{} states for {n} times x {} trajectories x {DIM} components",
                    self.states.len(),
                    self.n_traj
                ),
            });
        }
        if let Some(i) = self.states.iter().position(|s| !s.is_finite()) {
            return Err(ModelsError::NonFinite {
                what: "demonstration state",
                index: i,
            });
        }
        Ok(())
    }
}

/// One standard normal draw (Box–Muller).
fn standard_normal(rng: &mut StdRng) -> f64 {
    let u1: f64 = rng.random_range(f64::MIN_POSITIVE..1.0);
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}
