//! A batched tanh multilayer perceptron as dynamics, with hand-written VJP and JVP.

use ode_solvers::Real;

use crate::dynamics::{Dynamics, Vjp};
use crate::error::{Error, Result};
use crate::rng::SplitMix64;

/// A batched tanh MLP `ż = f(t, z, θ)` with hand-written derivatives.
///
/// Its VJP and JVP are exact and cost about one evaluation each, with no tape: a
/// reference dynamics for benchmarks (the built-in family of [`crate::scaling`]) and for
/// checking tape-based dynamics ([`crate::TapeDynamics`]) against.
///
/// Layer widths `widths = [d, h₁, …, h_k, d]`: hidden layers use `tanh`, the output layer
/// is linear. The state is a batch of `batch` rows of `d` (row-major). With `time_input`,
/// the first pre-activation gets `t · w_t` (`w_t` a learned vector of length `h₁`), so the
/// dynamics are non-autonomous. Parameter layout: for each layer `W` (`in × out`,
/// row-major) then `b` (`out`), then `w_t`.
#[derive(Debug, Clone)]
pub struct TanhMlp<T> {
    widths: Vec<usize>,
    batch: usize,
    time_input: bool,
    offsets: Vec<(usize, usize)>,
    n_params: usize,
    /// Activations per layer (`acts[l]` is `batch × widths[l]`).
    acts: Vec<Vec<T>>,
    /// Tangents / cotangents per layer.
    tans: Vec<Vec<T>>,
    scratch_z: Vec<T>,
    scratch_theta: Vec<T>,
}

impl<T: Real> TanhMlp<T> {
    /// An MLP with the given widths (`[d, h₁, …, d]`, at least two entries, first and last
    /// equal) over a batch of `batch` states.
    pub fn new(widths: &[usize], batch: usize, time_input: bool) -> Result<Self> {
        if widths.len() < 2 || widths[0] != widths[widths.len() - 1] || batch == 0 {
            return Err(Error::InvalidOption {
                name: "TanhMlp widths",
                value: widths.len() as f64,
                reason: "need at least [d, d] with equal first and last width, and batch >= 1",
            });
        }
        if let Some(i) = widths.iter().position(|w| *w == 0) {
            return Err(Error::InvalidOption {
                name: "TanhMlp widths",
                value: i as f64,
                reason: "every width must be >= 1",
            });
        }
        let mut offsets = Vec::new();
        let mut off = 0;
        for l in 0..widths.len() - 1 {
            offsets.push((off, off + widths[l] * widths[l + 1]));
            off += widths[l] * widths[l + 1] + widths[l + 1];
        }
        let n_params = off + if time_input { widths[1] } else { 0 };
        let bufs = || widths.iter().map(|w| vec![T::zero(); batch * w]).collect();
        Ok(TanhMlp {
            widths: widths.to_vec(),
            batch,
            time_input,
            offsets,
            n_params,
            acts: bufs(),
            tans: bufs(),
            scratch_z: vec![T::zero(); batch * widths[0]],
            scratch_theta: vec![T::zero(); n_params],
        })
    }

    /// Layer widths.
    pub fn widths(&self) -> &[usize] {
        &self.widths
    }

    /// Deterministic parameters: weights uniform in `±scale/√fan_in` from a seeded
    /// SplitMix64 generator, biases and `w_t` likewise scaled by `0.1`.
    pub fn init_params(&self, seed: u64, scale: f64) -> Vec<T> {
        let mut rng = SplitMix64::new(seed);
        let mut th = vec![T::zero(); self.n_params];
        for (l, &(w, b)) in self.offsets.iter().enumerate() {
            let fan_in = self.widths[l] as f64;
            let r = scale / fan_in.sqrt();
            for v in &mut th[w..b] {
                *v = T::from_f64_const(r * rng.uniform_pm1());
            }
            for v in &mut th[b..b + self.widths[l + 1]] {
                *v = T::from_f64_const(0.1 * r * rng.uniform_pm1());
            }
        }
        if self.time_input {
            let start = self.n_params - self.widths[1];
            for v in &mut th[start..] {
                *v = T::from_f64_const(0.1 * scale * rng.uniform_pm1());
            }
        }
        th
    }

    fn forward(&mut self, t: T, z: &[T], theta: &[T]) {
        let nb = self.batch;
        self.acts[0].copy_from_slice(z);
        let nl = self.widths.len() - 1;
        for l in 0..nl {
            let (din, dout) = (self.widths[l], self.widths[l + 1]);
            let (w, b) = self.offsets[l];
            let (lo, hi) = self.acts.split_at_mut(l + 1);
            let x = &lo[l];
            let y = &mut hi[0];
            for r in 0..nb {
                let yr = &mut y[r * dout..(r + 1) * dout];
                yr.copy_from_slice(&theta[b..b + dout]);
                if l == 0 && self.time_input {
                    let wt = &theta[self.n_params - dout..];
                    for (v, c) in yr.iter_mut().zip(wt) {
                        *v += t * *c;
                    }
                }
                for k in 0..din {
                    let xk = x[r * din + k];
                    let wr = &theta[w + k * dout..w + (k + 1) * dout];
                    for (v, c) in yr.iter_mut().zip(wr) {
                        *v += xk * *c;
                    }
                }
                if l + 1 < nl {
                    for v in yr.iter_mut() {
                        *v = v.tanh();
                    }
                }
            }
        }
    }
}

impl<T: Real> Dynamics<T> for TanhMlp<T> {
    fn n_states(&self) -> usize {
        self.batch * self.widths[0]
    }
    fn n_params(&self) -> usize {
        self.n_params
    }
    fn eval(&mut self, t: T, z: &[T], theta: &[T], out: &mut [T]) -> Result<()> {
        self.forward(t, z, theta);
        if let Some(last) = self.acts.last() {
            out.copy_from_slice(last);
        }
        Ok(())
    }
}

impl<T: Real> Vjp<T> for TanhMlp<T> {
    fn vjp_z(&mut self, t: T, z: &[T], theta: &[T], a: &[T], out: &mut [T]) -> Result<()> {
        let mut g = core::mem::take(&mut self.scratch_theta);
        let r = self.vjp(t, z, theta, a, out, &mut g);
        self.scratch_theta = g;
        r.map(|_| ())
    }
    fn vjp_theta(&mut self, t: T, z: &[T], theta: &[T], a: &[T], out: &mut [T]) -> Result<()> {
        let mut g = core::mem::take(&mut self.scratch_z);
        let r = self.vjp(t, z, theta, a, &mut g, out);
        self.scratch_z = g;
        r.map(|_| ())
    }
    fn vjp_t(&mut self, t: T, z: &[T], theta: &[T], a: &[T]) -> Result<T> {
        let mut g = core::mem::take(&mut self.scratch_z);
        let mut h = core::mem::take(&mut self.scratch_theta);
        let r = self.vjp(t, z, theta, a, &mut g, &mut h);
        self.scratch_z = g;
        self.scratch_theta = h;
        r
    }
    fn vjp(
        &mut self,
        t: T,
        z: &[T],
        theta: &[T],
        a: &[T],
        out_z: &mut [T],
        out_theta: &mut [T],
    ) -> Result<T> {
        self.forward(t, z, theta);
        let nb = self.batch;
        let nl = self.widths.len() - 1;
        // tans[l + 1] holds the cotangent of layer l's pre-activation.
        self.tans[nl].copy_from_slice(a);
        let mut dt = T::zero();
        for l in (0..nl).rev() {
            let (din, dout) = (self.widths[l], self.widths[l + 1]);
            let (w, b) = self.offsets[l];
            let (lo, hi) = self.tans.split_at_mut(l + 1);
            let delta = &hi[0];
            let x = &self.acts[l];
            // Parameter gradients.
            let (gw, rest) = out_theta[w..].split_at_mut(b - w);
            let gb = &mut rest[..dout];
            gw.fill(T::zero());
            gb.fill(T::zero());
            for r in 0..nb {
                let dr = &delta[r * dout..(r + 1) * dout];
                for (g, d) in gb.iter_mut().zip(dr) {
                    *g += *d;
                }
                for k in 0..din {
                    let xk = x[r * din + k];
                    for (g, d) in gw[k * dout..(k + 1) * dout].iter_mut().zip(dr) {
                        *g += xk * *d;
                    }
                }
            }
            if l == 0 && self.time_input {
                // ∂u₀/∂w_t = t, ∂u₀/∂t = w_t: the bias gradient times t, and its dot with w_t.
                let start = self.n_params - dout;
                out_theta.copy_within(b..b + dout, start);
                for g in &mut out_theta[start..] {
                    *g *= t;
                }
                let gbias = &out_theta[b..b + dout];
                let wt = &theta[start..];
                dt = gbias.iter().zip(wt).map(|(g, c)| *g * *c).sum();
            }
            // Input cotangent.
            let gx = &mut lo[l];
            for r in 0..nb {
                let dr = &delta[r * dout..(r + 1) * dout];
                for k in 0..din {
                    let wr = &theta[w + k * dout..w + (k + 1) * dout];
                    let s: T = wr.iter().zip(dr).map(|(c, d)| *c * *d).sum();
                    gx[r * din + k] = if l > 0 {
                        let ak = x[r * din + k];
                        s * (T::one() - ak * ak)
                    } else {
                        s
                    };
                }
            }
        }
        out_z.copy_from_slice(&self.tans[0]);
        Ok(dt)
    }
    fn has_jvp(&self) -> bool {
        true
    }
    fn jvp(
        &mut self,
        t: T,
        z: &[T],
        theta: &[T],
        vz: &[T],
        vth: &[T],
        out: &mut [T],
    ) -> Result<()> {
        self.forward(t, z, theta);
        let nb = self.batch;
        let nl = self.widths.len() - 1;
        self.tans[0].copy_from_slice(vz);
        for l in 0..nl {
            let (din, dout) = (self.widths[l], self.widths[l + 1]);
            let (w, b) = self.offsets[l];
            let (lo, hi) = self.tans.split_at_mut(l + 1);
            let dx = &lo[l];
            let dy = &mut hi[0];
            let x = &self.acts[l];
            let y = &self.acts[l + 1];
            for r in 0..nb {
                let yr = &mut dy[r * dout..(r + 1) * dout];
                yr.copy_from_slice(&vth[b..b + dout]);
                if l == 0 && self.time_input {
                    let dwt = &vth[self.n_params - dout..];
                    for (v, c) in yr.iter_mut().zip(dwt) {
                        *v += t * *c;
                    }
                }
                for k in 0..din {
                    let xk = x[r * din + k];
                    let dxk = dx[r * din + k];
                    let wr = &theta[w + k * dout..w + (k + 1) * dout];
                    let dwr = &vth[w + k * dout..w + (k + 1) * dout];
                    for ((v, c), dc) in yr.iter_mut().zip(wr).zip(dwr) {
                        *v += dxk * *c + xk * *dc;
                    }
                }
                if l + 1 < nl {
                    for (v, a) in yr.iter_mut().zip(&y[r * dout..(r + 1) * dout]) {
                        *v *= T::one() - *a * *a;
                    }
                }
            }
        }
        out.copy_from_slice(&self.tans[nl]);
        Ok(())
    }
}
