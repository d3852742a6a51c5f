//! A tiny deterministic generator (SplitMix64) for audit directions, the MLP's
//! initial parameters and test data; public to tests through `test_problems`.

/// SplitMix64: a tiny deterministic generator for test data and audit directions.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }
    /// Next raw 64-bit value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `[0, 1)`.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform in `[-1, 1)`.
    pub fn uniform_pm1(&mut self) -> f64 {
        2.0 * self.uniform() - 1.0
    }
    /// `N(0, 1)` by Box–Muller from two uniforms (the draw `benches/scripts/peers_w2.py`
    /// reproduces bit for bit); used by the test problems only.
    #[cfg(feature = "test-support")]
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(1e-300);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (core::f64::consts::TAU * u2).cos()
    }
}
