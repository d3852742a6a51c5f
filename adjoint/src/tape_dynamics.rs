//! [`TapeDynamics`]: dynamics written as a forward pass on an autodiff tape.

use autodiff::{Float, Tape, Var};

use crate::dynamics::{Dynamics, Vjp};
use crate::error::{Error, Result};

/// Dynamics given only by their forward pass on an [`autodiff::Tape`]; every derivative
/// the gradient modes need comes from the tape.
///
/// The closure receives the tape, `t` (shape `[1]`), `z` (shape `state_dims`, e.g.
/// `[batch, dim]` for a batch of trajectories run as one state) and `θ` (one flat leaf of
/// shape `[n_params]` that layers `view` into), and returns `f(t, z, θ)` with
/// `z`'s number of entries. One tape is kept and reset at every call, so evaluations
/// allocate nothing after the first.
///
/// * `eval` runs with recording off (plain arithmetic);
/// * `vjp` records once and runs one reverse pass for `aᵀ∂f/∂z`, `aᵀ∂f/∂θ`, `aᵀ∂f/∂t`;
/// * `jvp` (forward sensitivities) is a double VJP through the tape's recorded backward
///   pass (`backward_graph`), about three reverse passes.
///
/// ```
/// use adjoint::{AdjointSolver, GradientMode, Method, Options, TapeDynamics};
/// // A 2→8→2 tanh MLP on a batch of 3 states, θ = [W1 (2×8), b1 (8), W2 (8×2), b2 (2)].
/// let (d, h, batch) = (2, 8, 3);
/// let p = d * h + h + h * d + d;
/// let mut f = TapeDynamics::new(&[batch, d], p, move |_tape, _t, z, th| {
///     let w1 = th.view(0, &[d, h]);
///     let b1 = th.view(d * h, &[h]);
///     let w2 = th.view(d * h + h, &[h, d]);
///     let b2 = th.view(d * h + h + h * d, &[d]);
///     (z.matmul(w1) + b1).tanh().matmul(w2) + b2
/// })?;
/// let theta: Vec<f64> = (0..p).map(|i| 0.1 * ((i * 7 % 11) as f64 - 5.0)).collect();
/// let z0 = vec![0.5; batch * d];
/// let mut solver = AdjointSolver::new(Method::Dopri5, Options::with_tol(1e-8, 1e-8));
/// // loss = mean of z(1)²
/// let (loss, g) = solver.value_and_grad(&mut f, &z0, &theta, &[0.0, 1.0], |zs, dl| {
///     let zt = &zs[batch * d..];
///     let m = zt.len() as f64;
///     for (o, z) in dl[batch * d..].iter_mut().zip(zt) {
///         *o = 2.0 * z / m;
///     }
///     zt.iter().map(|z| z * z).sum::<f64>() / m
/// })?;
/// assert!(loss > 0.0 && g.theta.len() == p);
/// # Ok::<(), adjoint::Error>(())
/// ```
pub struct TapeDynamics<T: Float, F> {
    state_dims: Vec<usize>,
    n_states: usize,
    n_params: usize,
    f: F,
    tape: Tape<T>,
    zeros: Vec<T>,
    tbuf: [T; 1],
}

impl<T: Float, F> core::fmt::Debug for TapeDynamics<T, F> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TapeDynamics")
            .field("state_dims", &self.state_dims)
            .field("n_params", &self.n_params)
            .finish_non_exhaustive()
    }
}

impl<T, F> TapeDynamics<T, F>
where
    T: Float,
    F: for<'t> FnMut(&'t Tape<T>, Var<'t, T>, Var<'t, T>, Var<'t, T>) -> Var<'t, T>,
{
    /// Wraps the forward pass `f(tape, t, z, θ)` for a state of shape `state_dims` (up to
    /// rank 3, so that `[batch, dim]` and `[batch, c, h]` fit) and `n_params` parameters.
    pub fn new(state_dims: &[usize], n_params: usize, f: F) -> Result<Self> {
        let shape = autodiff::Shape::new(state_dims)?;
        let n_states = shape.len();
        Ok(TapeDynamics {
            state_dims: state_dims.to_vec(),
            n_states,
            n_params,
            f,
            tape: Tape::new(),
            zeros: vec![T::zero(); n_states],
            tbuf: [T::zero()],
        })
    }

    /// The tape (for inspection, e.g. `tape().len()` nodes per evaluation).
    pub fn tape(&self) -> &Tape<T> {
        &self.tape
    }

    fn check_out(&self, y: Var<'_, T>) -> Result<()> {
        if y.len() != self.n_states {
            return Err(Error::LengthMismatch {
                what: "output of the TapeDynamics closure (must have as many entries as z)",
                expected: self.n_states,
                found: y.len(),
            });
        }
        Ok(())
    }
}

impl<T, F> Dynamics<T> for TapeDynamics<T, F>
where
    T: Float,
    F: for<'t> FnMut(&'t Tape<T>, Var<'t, T>, Var<'t, T>, Var<'t, T>) -> Var<'t, T>,
{
    fn n_states(&self) -> usize {
        self.n_states
    }
    fn n_params(&self) -> usize {
        self.n_params
    }
    fn eval(&mut self, t: T, z: &[T], theta: &[T], out: &mut [T]) -> Result<()> {
        self.tape.reset();
        self.tape.set_recording(false);
        let tape = &self.tape;
        let tv = tape.constant(&[t], &[1])?;
        let zv = tape.constant(z, &self.state_dims)?;
        let th = tape.constant(theta, &[self.n_params])?;
        let y = (self.f)(tape, tv, zv, th);
        if y.len() != self.n_states {
            return Err(Error::LengthMismatch {
                what: "output of the TapeDynamics closure (must have as many entries as z)",
                expected: self.n_states,
                found: y.len(),
            });
        }
        y.value_into(out)?;
        Ok(())
    }
}

impl<T, F> Vjp<T> for TapeDynamics<T, F>
where
    T: Float,
    F: for<'t> FnMut(&'t Tape<T>, Var<'t, T>, Var<'t, T>, Var<'t, T>) -> Var<'t, T>,
{
    fn vjp_z(&mut self, t: T, z: &[T], theta: &[T], a: &[T], out: &mut [T]) -> Result<()> {
        self.record_vjp(t, z, theta, a, Some(out), None).map(|_| ())
    }
    fn vjp_theta(&mut self, t: T, z: &[T], theta: &[T], a: &[T], out: &mut [T]) -> Result<()> {
        self.record_vjp(t, z, theta, a, None, Some(out)).map(|_| ())
    }
    fn vjp_t(&mut self, t: T, z: &[T], theta: &[T], a: &[T]) -> Result<T> {
        self.record_vjp(t, z, theta, a, None, None)
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
        self.record_vjp(t, z, theta, a, Some(out_z), Some(out_theta))
    }
    fn has_jvp(&self) -> bool {
        true
    }
    /// The tape's JVP is a double VJP (about three reverse passes): for the small states
    /// of Neural ODEs, `n` VJPs per evaluation are far cheaper than `P + n` JVPs.
    fn prefers_jacobians(&self) -> bool {
        true
    }
    fn jvp(
        &mut self,
        t: T,
        z: &[T],
        theta: &[T],
        v_z: &[T],
        v_theta: &[T],
        out: &mut [T],
    ) -> Result<()> {
        self.tape.reset();
        self.tape.set_recording(true);
        let tape = &self.tape;
        let tv = tape.constant(&[t], &[1])?;
        let zv = tape.leaf(z, &self.state_dims)?;
        let th = tape.leaf(theta, &[self.n_params])?;
        let y = (self.f)(tape, tv, zv, th);
        self.check_out(y)?;
        // u ↦ uᵀ(∂f/∂z v_z + ∂f/∂θ v_θ) is linear in u; its gradient is the JVP.
        let u = tape.leaf(&self.zeros, &self.state_dims)?;
        tape.backward_graph(y, u)?;
        let gz = tape.gradient(zv)?;
        let gth = tape.gradient(th)?;
        let cz = tape.constant(v_z, &self.state_dims)?;
        let cth = tape.constant(v_theta, &[self.n_params])?;
        let s = (gz * cz).sum() + (gth * cth).sum();
        tape.backward(s, &[T::one()])?;
        u.grad_into(out)?;
        Ok(())
    }
    fn has_jacobians(&self) -> bool {
        true
    }
    /// Records the forward pass once and runs one reverse pass per output (the tape
    /// allows several over one recording), instead of `n` recorded VJPs.
    fn jacobians(&mut self, t: T, z: &[T], theta: &[T], jz: &mut [T], jth: &mut [T]) -> Result<()> {
        let (n, p) = (self.n_states, self.n_params);
        for (what, expected, found) in [
            ("jz of TapeDynamics::jacobians (n × n)", n * n, jz.len()),
            ("jth of TapeDynamics::jacobians (n × P)", n * p, jth.len()),
        ] {
            if expected != found {
                return Err(Error::LengthMismatch {
                    what,
                    expected,
                    found,
                });
            }
        }
        self.tape.reset();
        self.tape.set_recording(true);
        let tape = &self.tape;
        let tv = tape.constant(&[t], &[1])?;
        let zv = tape.leaf(z, &self.state_dims)?;
        let th = tape.leaf(theta, &[p])?;
        let y = (self.f)(tape, tv, zv, th);
        if y.len() != n {
            return Err(Error::LengthMismatch {
                what: "output of the TapeDynamics closure (must have as many entries as z)",
                expected: n,
                found: y.len(),
            });
        }
        // `zeros` serves as the unit seed e_r, restored after each pass.
        for r in 0..n {
            self.zeros[r] = T::one();
            let res = tape.backward(y, &self.zeros);
            self.zeros[r] = T::zero();
            res?;
            zv.grad_into(&mut jz[r * n..(r + 1) * n])?;
            th.grad_into(&mut jth[r * p..(r + 1) * p])?;
        }
        Ok(())
    }
}

impl<T, F> TapeDynamics<T, F>
where
    T: Float,
    F: for<'t> FnMut(&'t Tape<T>, Var<'t, T>, Var<'t, T>, Var<'t, T>) -> Var<'t, T>,
{
    fn record_vjp(
        &mut self,
        t: T,
        z: &[T],
        theta: &[T],
        a: &[T],
        out_z: Option<&mut [T]>,
        out_theta: Option<&mut [T]>,
    ) -> Result<T> {
        self.tape.reset();
        self.tape.set_recording(true);
        let tape = &self.tape;
        let tv = tape.leaf(&[t], &[1])?;
        let zv = tape.leaf(z, &self.state_dims)?;
        let th = tape.leaf(theta, &[self.n_params])?;
        let y = (self.f)(tape, tv, zv, th);
        self.check_out(y)?;
        tape.backward(y, a)?;
        if let Some(o) = out_z {
            zv.grad_into(o)?;
        }
        if let Some(o) = out_theta {
            th.grad_into(o)?;
        }
        tv.grad_into(&mut self.tbuf)?;
        Ok(self.tbuf[0])
    }
}
