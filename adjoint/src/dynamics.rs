//! The seam between user models and the gradient modes: [`Dynamics`] and [`Vjp`].

use core::marker::PhantomData;

use ode_solvers::Real;

use crate::error::{Error, Result};

/// A parameterised right-hand side `ż = f(t, z, θ)`.
///
/// `z` has [`Dynamics::n_states`] entries (a batch of trajectories is one flat state),
/// `θ` has [`Dynamics::n_params`]. Every method writes into caller buffers and is called
/// thousands of times per solve: implementations should not allocate.
pub trait Dynamics<T: Real> {
    /// Length of the state `z`.
    fn n_states(&self) -> usize;
    /// Length of the flat parameter vector `θ`.
    fn n_params(&self) -> usize;
    /// Writes `f(t, z, θ)` into `out` (every entry must be written).
    fn eval(&mut self, t: T, z: &[T], theta: &[T], out: &mut [T]) -> Result<()>;
}

/// Vector–Jacobian products of a [`Dynamics`]: what the adjoint and direct modes need.
///
/// All products *overwrite* their output buffers. Implement the three split products;
/// override [`Vjp::vjp`] when one pass can produce all three at once (a reverse-mode tape
/// does), since the gradient modes call it in their hot loop.
///
/// The optional Jacobian–vector product also lives here, so that a gradient mode chosen at
/// run time ([`crate::GradientMode::Forward`]) can use it: when [`Vjp::has_jvp`] is `false`,
/// forward sensitivities build `∂f/∂z` and `∂f/∂θ` from `n_states` VJPs per evaluation.
pub trait Vjp<T: Real>: Dynamics<T> {
    /// `out = aᵀ ∂f/∂z` (length `n_states`).
    fn vjp_z(&mut self, t: T, z: &[T], theta: &[T], a: &[T], out: &mut [T]) -> Result<()>;
    /// `out = aᵀ ∂f/∂θ` (length `n_params`).
    fn vjp_theta(&mut self, t: T, z: &[T], theta: &[T], a: &[T], out: &mut [T]) -> Result<()>;
    /// Returns `aᵀ ∂f/∂t` (zero for autonomous dynamics).
    fn vjp_t(&mut self, t: T, z: &[T], theta: &[T], a: &[T]) -> Result<T>;
    /// All three products at once: writes `aᵀ∂f/∂z` into `out_z`, `aᵀ∂f/∂θ` into
    /// `out_theta` and returns `aᵀ∂f/∂t`.
    fn vjp(
        &mut self,
        t: T,
        z: &[T],
        theta: &[T],
        a: &[T],
        out_z: &mut [T],
        out_theta: &mut [T],
    ) -> Result<T> {
        self.vjp_z(t, z, theta, a, out_z)?;
        self.vjp_theta(t, z, theta, a, out_theta)?;
        self.vjp_t(t, z, theta, a)
    }
    /// Length of the residuals [`Vjp::eval_saving`] keeps of one evaluation: what a VJP at
    /// the same point needs from the forward pass (for an MLP its hidden activations).
    /// `0` (the default): the dynamics keep nothing, and [`crate::GradientMode::Direct`]
    /// runs every VJP through [`Vjp::vjp`].
    ///
    /// Contract: [`Vjp::vjp_saved`]`(t, z, θ, res, a, ·, ·)` after
    /// [`Vjp::eval_saving`]`(t, z, θ, ·, res)` equals [`Vjp::vjp`]`(t, z, θ, a, ·, ·)` bit for
    /// bit (the residuals are a function of `(t, z, θ)` alone; the direct mode hands them
    /// back only for the same point, compared bit for bit, and the same dynamics).
    fn residual_len(&self) -> usize {
        0
    }
    /// [`Dynamics::eval`] that also writes the residuals of the point into `res`
    /// ([`Vjp::residual_len`] entries; see there for the contract). Default: `eval`.
    fn eval_saving(
        &mut self,
        t: T,
        z: &[T],
        theta: &[T],
        out: &mut [T],
        res: &mut [T],
    ) -> Result<()> {
        let _ = res;
        self.eval(t, z, theta, out)
    }
    /// [`Vjp::vjp`] at a point whose residuals `res` [`Vjp::eval_saving`] wrote: only the
    /// reverse pass (see [`Vjp::residual_len`] for the contract). Default: `vjp`.
    #[allow(clippy::too_many_arguments)]
    fn vjp_saved(
        &mut self,
        t: T,
        z: &[T],
        theta: &[T],
        res: &[T],
        a: &[T],
        out_z: &mut [T],
        out_theta: &mut [T],
    ) -> Result<T> {
        let _ = res;
        self.vjp(t, z, theta, a, out_z, out_theta)
    }
    /// Whether [`Vjp::jvp`] is implemented.
    fn has_jvp(&self) -> bool {
        false
    }
    /// Whether forward sensitivities ([`crate::GradientMode::Forward`]) should build
    /// explicit Jacobians from `n` VJPs per evaluation instead of calling [`Vjp::jvp`]
    /// `P + n` times: true without a JVP, and worth overriding to true when a JVP costs
    /// several VJPs and the state is small.
    fn prefers_jacobians(&self) -> bool {
        !self.has_jvp()
    }
    /// `out = ∂f/∂z v_z + ∂f/∂θ v_θ` (optional; see [`Vjp::has_jvp`]).
    fn jvp(
        &mut self,
        t: T,
        z: &[T],
        theta: &[T],
        v_z: &[T],
        v_theta: &[T],
        out: &mut [T],
    ) -> Result<()> {
        let _ = (t, z, theta, v_z, v_theta, out);
        Err(Error::MissingCapability {
            what: "jvp",
            hint: "implement Vjp::jvp and Vjp::has_jvp (or FnDynamics::with_jvp)",
        })
    }
    /// Whether [`Vjp::jacobians`] is implemented.
    fn has_jacobians(&self) -> bool {
        false
    }
    /// The explicit Jacobians at one point (optional; see [`Vjp::has_jacobians`]): writes
    /// `∂f/∂z` into `jz` (`n × n`, row-major) and `∂f/∂θ` into `jth` (`n × P`, row-major).
    /// Forward sensitivities' Jacobian path ([`Vjp::prefers_jacobians`]) calls it once per
    /// evaluation when present, and `n` [`Vjp::vjp`]s with unit cotangents otherwise:
    /// implement it when the `n` products can share work (a tape records the forward
    /// pass once and runs `n` reverse passes over it).
    fn jacobians(&mut self, t: T, z: &[T], theta: &[T], jz: &mut [T], jth: &mut [T]) -> Result<()> {
        let _ = (t, z, theta, jz, jth);
        Err(Error::MissingCapability {
            what: "jacobians",
            hint: "implement Vjp::jacobians and Vjp::has_jacobians, or use GradientMode::Forward without them",
        })
    }
    /// Whether [`Vjp::sensitivity_rhs`] is implemented. When it is,
    /// [`crate::GradientMode::Forward`] calls it once per evaluation instead of `P + n`
    /// JVPs or `n` VJPs and an `n × n` by `n × (P + n)` product.
    fn has_sensitivity_rhs(&self) -> bool {
        false
    }
    /// The right-hand side of forward sensitivities for every tangent column at once
    /// (optional; see [`Vjp::has_sensitivity_rhs`]).
    ///
    /// `s` holds `S = [S_θ, S_z0]`, the `P + n` columns of `∂z/∂θ` then `∂z/∂z0`, column
    /// `c` at `s[c n..(c + 1) n]` (`n = n_states`, `P = n_params`). Writes
    /// `out_f = f(t, z, θ)` and `out_s = ∂f/∂z S + [∂f/∂θ, 0]` in the same layout: column
    /// `c < P` gets `∂f/∂θ_c` added (the tangent of `θ` is the unit vector `e_c`), the last
    /// `n` columns get nothing. Implement it when the structure of `f` makes the whole
    /// block cheaper than its columns: e.g. a batch of independent rows has a
    /// block-diagonal `∂f/∂z` and a `∂f/∂θ` of per-row gradients ([`crate::TanhMlp`]).
    fn sensitivity_rhs(
        &mut self,
        t: T,
        z: &[T],
        theta: &[T],
        s: &[T],
        out_f: &mut [T],
        out_s: &mut [T],
    ) -> Result<()> {
        let _ = (t, z, theta, s, out_f, out_s);
        Err(Error::MissingCapability {
            what: "sensitivity_rhs",
            hint: "implement Vjp::sensitivity_rhs and Vjp::has_sensitivity_rhs, or use GradientMode::Forward without them",
        })
    }
}

impl<T: Real, D: Dynamics<T> + ?Sized> Dynamics<T> for &mut D {
    fn n_states(&self) -> usize {
        (**self).n_states()
    }
    fn n_params(&self) -> usize {
        (**self).n_params()
    }
    fn eval(&mut self, t: T, z: &[T], theta: &[T], out: &mut [T]) -> Result<()> {
        (**self).eval(t, z, theta, out)
    }
}

impl<T: Real, D: Vjp<T> + ?Sized> Vjp<T> for &mut D {
    fn vjp_z(&mut self, t: T, z: &[T], theta: &[T], a: &[T], out: &mut [T]) -> Result<()> {
        (**self).vjp_z(t, z, theta, a, out)
    }
    fn vjp_theta(&mut self, t: T, z: &[T], theta: &[T], a: &[T], out: &mut [T]) -> Result<()> {
        (**self).vjp_theta(t, z, theta, a, out)
    }
    fn vjp_t(&mut self, t: T, z: &[T], theta: &[T], a: &[T]) -> Result<T> {
        (**self).vjp_t(t, z, theta, a)
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
        (**self).vjp(t, z, theta, a, out_z, out_theta)
    }
    fn residual_len(&self) -> usize {
        (**self).residual_len()
    }
    fn eval_saving(
        &mut self,
        t: T,
        z: &[T],
        theta: &[T],
        out: &mut [T],
        res: &mut [T],
    ) -> Result<()> {
        (**self).eval_saving(t, z, theta, out, res)
    }
    fn vjp_saved(
        &mut self,
        t: T,
        z: &[T],
        theta: &[T],
        res: &[T],
        a: &[T],
        out_z: &mut [T],
        out_theta: &mut [T],
    ) -> Result<T> {
        (**self).vjp_saved(t, z, theta, res, a, out_z, out_theta)
    }
    fn has_jvp(&self) -> bool {
        (**self).has_jvp()
    }
    fn prefers_jacobians(&self) -> bool {
        (**self).prefers_jacobians()
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
        (**self).jvp(t, z, theta, v_z, v_theta, out)
    }
    fn has_jacobians(&self) -> bool {
        (**self).has_jacobians()
    }
    fn jacobians(&mut self, t: T, z: &[T], theta: &[T], jz: &mut [T], jth: &mut [T]) -> Result<()> {
        (**self).jacobians(t, z, theta, jz, jth)
    }
    fn has_sensitivity_rhs(&self) -> bool {
        (**self).has_sensitivity_rhs()
    }
    fn sensitivity_rhs(
        &mut self,
        t: T,
        z: &[T],
        theta: &[T],
        s: &[T],
        out_f: &mut [T],
        out_s: &mut [T],
    ) -> Result<()> {
        (**self).sensitivity_rhs(t, z, theta, s, out_f, out_s)
    }
}

/// Marker: no VJP closure was given to a [`FnDynamics`].
#[derive(Debug, Clone, Copy, Default)]
pub struct NoVjp;

/// Marker: no JVP closure was given to a [`FnDynamics`].
#[derive(Debug, Clone, Copy, Default)]
pub struct NoJvp;

/// A VJP closure held by a [`FnDynamics`] (see [`FnDynamics::with_vjp`]).
#[derive(Debug, Clone, Copy)]
pub struct WithVjp<V>(V);

/// A JVP closure held by a [`FnDynamics`] (see [`FnDynamics::with_jvp`]).
#[derive(Debug, Clone, Copy)]
pub struct WithJvp<J>(J);

/// The optional JVP slot of [`FnDynamics`] (implemented by [`NoJvp`] and [`WithJvp`]).
pub trait JvpSlot<T> {
    /// Whether a JVP is present.
    fn present(&self) -> bool;
    /// Calls it (`None` when absent).
    fn call(&mut self, t: T, z: &[T], theta: &[T], vz: &[T], vth: &[T], out: &mut [T]) -> bool;
}

impl<T> JvpSlot<T> for NoJvp {
    fn present(&self) -> bool {
        false
    }
    fn call(&mut self, _: T, _: &[T], _: &[T], _: &[T], _: &[T], _: &mut [T]) -> bool {
        false
    }
}

impl<T, J: FnMut(T, &[T], &[T], &[T], &[T], &mut [T])> JvpSlot<T> for WithJvp<J> {
    fn present(&self) -> bool {
        true
    }
    fn call(&mut self, t: T, z: &[T], theta: &[T], vz: &[T], vth: &[T], out: &mut [T]) -> bool {
        (self.0)(t, z, theta, vz, vth, out);
        true
    }
}

/// Closure adapter: hand-written dynamics and (optionally) their derivatives.
///
/// ```
/// use adjoint::{FnDynamics, Dynamics, Vjp};
/// // ż = -θ₀ z (two states, one parameter), with its VJP.
/// let mut f = FnDynamics::new(2, 1, |_t: f64, z: &[f64], th: &[f64], out: &mut [f64]| {
///     for (o, zi) in out.iter_mut().zip(z) {
///         *o = -th[0] * zi;
///     }
/// })
/// .with_vjp(|_t, z, th, a, gz, gth| {
///     for i in 0..2 {
///         gz[i] = -th[0] * a[i];
///     }
///     gth[0] = -(a[0] * z[0] + a[1] * z[1]);
///     0.0 // aᵀ∂f/∂t: autonomous
/// });
/// let mut gz = [0.0; 2];
/// f.vjp_z(0.0, &[1.0, 2.0], &[0.5], &[1.0, 1.0], &mut gz)?;
/// assert_eq!(gz, [-0.5, -0.5]);
/// # Ok::<(), adjoint::Error>(())
/// ```
pub struct FnDynamics<T, F, V = NoVjp, J = NoJvp> {
    n_states: usize,
    n_params: usize,
    f: F,
    vjp: V,
    jvp: J,
    scratch_z: Vec<T>,
    scratch_theta: Vec<T>,
    _t: PhantomData<fn(T)>,
}

impl<T: Real, F: FnMut(T, &[T], &[T], &mut [T])> FnDynamics<T, F> {
    /// Wraps `f(t, z, θ, out)` for a state of `n_states` entries and `n_params` parameters.
    pub fn new(n_states: usize, n_params: usize, f: F) -> Self {
        FnDynamics {
            n_states,
            n_params,
            f,
            vjp: NoVjp,
            jvp: NoJvp,
            scratch_z: Vec::new(),
            scratch_theta: Vec::new(),
            _t: PhantomData,
        }
    }
}

impl<T: Real, F, J> FnDynamics<T, F, NoVjp, J> {
    /// Adds the VJP closure `vjp(t, z, θ, a, out_z, out_θ) -> aᵀ∂f/∂t`, which must
    /// overwrite `out_z = aᵀ∂f/∂z` and `out_θ = aᵀ∂f/∂θ` and return `aᵀ∂f/∂t`
    /// (return zero for autonomous dynamics).
    pub fn with_vjp<V>(self, vjp: V) -> FnDynamics<T, F, WithVjp<V>, J>
    where
        V: FnMut(T, &[T], &[T], &[T], &mut [T], &mut [T]) -> T,
    {
        FnDynamics {
            n_states: self.n_states,
            n_params: self.n_params,
            f: self.f,
            vjp: WithVjp(vjp),
            jvp: self.jvp,
            scratch_z: vec![T::zero(); self.n_states],
            scratch_theta: vec![T::zero(); self.n_params],
            _t: PhantomData,
        }
    }
}

impl<T: Real, F, V> FnDynamics<T, F, V, NoJvp> {
    /// Adds the JVP closure `jvp(t, z, θ, v_z, v_θ, out)`, which must overwrite
    /// `out = ∂f/∂z v_z + ∂f/∂θ v_θ` (used by forward sensitivities).
    pub fn with_jvp<J>(self, jvp: J) -> FnDynamics<T, F, V, WithJvp<J>>
    where
        J: FnMut(T, &[T], &[T], &[T], &[T], &mut [T]),
    {
        FnDynamics {
            n_states: self.n_states,
            n_params: self.n_params,
            f: self.f,
            vjp: self.vjp,
            jvp: WithJvp(jvp),
            scratch_z: self.scratch_z,
            scratch_theta: self.scratch_theta,
            _t: PhantomData,
        }
    }
}

impl<T: Real, F: FnMut(T, &[T], &[T], &mut [T]), V, J> Dynamics<T> for FnDynamics<T, F, V, J> {
    fn n_states(&self) -> usize {
        self.n_states
    }
    fn n_params(&self) -> usize {
        self.n_params
    }
    #[inline]
    fn eval(&mut self, t: T, z: &[T], theta: &[T], out: &mut [T]) -> Result<()> {
        (self.f)(t, z, theta, out);
        Ok(())
    }
}

impl<T, F, V, J> Vjp<T> for FnDynamics<T, F, WithVjp<V>, J>
where
    T: Real,
    F: FnMut(T, &[T], &[T], &mut [T]),
    V: FnMut(T, &[T], &[T], &[T], &mut [T], &mut [T]) -> T,
    J: JvpSlot<T>,
{
    fn vjp_z(&mut self, t: T, z: &[T], theta: &[T], a: &[T], out: &mut [T]) -> Result<()> {
        (self.vjp.0)(t, z, theta, a, out, &mut self.scratch_theta);
        Ok(())
    }
    fn vjp_theta(&mut self, t: T, z: &[T], theta: &[T], a: &[T], out: &mut [T]) -> Result<()> {
        (self.vjp.0)(t, z, theta, a, &mut self.scratch_z, out);
        Ok(())
    }
    fn vjp_t(&mut self, t: T, z: &[T], theta: &[T], a: &[T]) -> Result<T> {
        Ok((self.vjp.0)(
            t,
            z,
            theta,
            a,
            &mut self.scratch_z,
            &mut self.scratch_theta,
        ))
    }
    #[inline]
    fn vjp(
        &mut self,
        t: T,
        z: &[T],
        theta: &[T],
        a: &[T],
        out_z: &mut [T],
        out_theta: &mut [T],
    ) -> Result<T> {
        Ok((self.vjp.0)(t, z, theta, a, out_z, out_theta))
    }
    fn has_jvp(&self) -> bool {
        self.jvp.present()
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
        if self.jvp.call(t, z, theta, v_z, v_theta, out) {
            Ok(())
        } else {
            Err(Error::MissingCapability {
                what: "jvp",
                hint: "add one with FnDynamics::with_jvp",
            })
        }
    }
}
