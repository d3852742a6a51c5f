//! Function-level conveniences: `vjp`, `grad`, `jvp`, `jacobian`, `gradcheck`.
//!
//! They build a fresh [`Tape`] per call (and allocate their results); in hot loops drive a
//! [`Tape`] directly, as the crate docs show.

use crate::{Error, Float, Tape, Var};

/// Value `f(x)` and `vᵀ ∂f/∂x` in one forward and one reverse pass (no Jacobian formed).
pub fn vjp<T: Float, F>(f: F, x: &[T], dims: &[usize], v: &[T]) -> Result<(Vec<T>, Vec<T>), Error>
where
    F: for<'t> Fn(Var<'t, T>) -> Var<'t, T>,
{
    let tape = Tape::new();
    tape.set_recording(true);
    let xv = tape.leaf(x, dims)?;
    let y = f(xv);
    let val = y.value()?;
    tape.backward(y, v)?;
    Ok((val, xv.grad()?))
}

/// Value and gradient of a scalar function.
pub fn grad<T: Float, F>(f: F, x: &[T], dims: &[usize]) -> Result<(T, Vec<T>), Error>
where
    F: for<'t> Fn(Var<'t, T>) -> Var<'t, T>,
{
    let tape = Tape::new();
    tape.set_recording(true);
    let xv = tape.leaf(x, dims)?;
    let y = f(xv);
    let val = y.item()?;
    tape.backward(y, &[T::one()])?;
    Ok((val, xv.grad()?))
}

/// Value `f(x)` and the forward-mode product `J v` by the double-VJP trick: `g(u) = uᵀJ`
/// is recorded (linear in `u`), then `∂(g·v)/∂u = J v`. Needs the recorded backward of
/// every op in `f` (see [`Tape::backward_graph`]).
pub fn jvp<T: Float, F>(f: F, x: &[T], dims: &[usize], v: &[T]) -> Result<(Vec<T>, Vec<T>), Error>
where
    F: for<'t> Fn(Var<'t, T>) -> Var<'t, T>,
{
    if v.len() != x.len() {
        return Err(Error::LengthMismatch {
            what: "jvp direction",
            expected: x.len(),
            found: v.len(),
        });
    }
    let tape = Tape::new();
    tape.set_recording(true);
    let xv = tape.leaf(x, dims)?;
    let y = f(xv);
    let val = y.value()?;
    let ys = y.shape();
    let zeros = vec![T::zero(); ys.len()];
    let u = tape.leaf(&zeros, ys.dims())?;
    tape.backward_graph(y, u)?;
    let g = tape.gradient(xv)?;
    let vc = tape.constant(v, dims)?;
    let s = g.mul(vc).sum();
    tape.backward(s, &[T::one()])?;
    Ok((val, u.grad()?))
}

/// Value `f(x)` (length `m`) and the Jacobian `∂f/∂x` as a row-major `m × n` matrix:
/// one recording, `m` reverse passes over it. For small `m` (CNF exact traces).
pub fn jacobian<T: Float, F>(f: F, x: &[T], dims: &[usize]) -> Result<(Vec<T>, Vec<T>), Error>
where
    F: for<'t> Fn(Var<'t, T>) -> Var<'t, T>,
{
    let tape = Tape::new();
    tape.set_recording(true);
    let xv = tape.leaf(x, dims)?;
    let y = f(xv);
    let val = y.value()?;
    let (m, n) = (val.len(), x.len());
    let mut jac = vec![T::zero(); m * n];
    let mut seed = vec![T::zero(); m];
    for i in 0..m {
        seed[i] = T::one();
        tape.backward(y, &seed)?;
        seed[i] = T::zero();
        xv.grad_into(&mut jac[i * n..(i + 1) * n])?;
    }
    Ok((val, jac))
}

/// The outcome of [`gradcheck`].
#[derive(Debug, Clone, PartialEq)]
pub struct GradcheckReport {
    /// Largest `|analytic − numeric| / max(1, |analytic|, |numeric|)` over all inputs.
    pub max_rel_error: f64,
    /// Input index where it occurs.
    pub worst_index: usize,
    /// Analytic derivative at that index.
    pub analytic: f64,
    /// Central-difference derivative at that index.
    pub numeric: f64,
}

impl GradcheckReport {
    /// True if the worst relative error is at most `tol`.
    pub fn passes(&self, tol: f64) -> bool {
        self.max_rel_error <= tol
    }
}

/// A gradcheck tolerance suited to the float type: `ε^{1/3}` scaled (`≈ 6e-5` for f64,
/// `≈ 2.5e-2` for f32; central differences have error `O(ε^{2/3})` relative to the
/// curvature of the function, times the condition of the evaluation).
pub fn default_gradcheck_tolerance<T: Float>() -> f64 {
    let e = T::epsilon().to_f64_lossy();
    10.0 * e.cbrt()
}

/// Checks `vᵀ ∂f/∂x` from the tape against central differences of `φ(x) = vᵀ f(x)`
/// with step `h_i = ε^{1/3} · max(1, |x_i|)`, and reports the worst relative error
/// and where it occurs. `v` has the length of `f(x)`.
pub fn gradcheck<T: Float, F>(
    f: F,
    x: &[T],
    dims: &[usize],
    v: &[T],
) -> Result<GradcheckReport, Error>
where
    F: for<'t> Fn(Var<'t, T>) -> Var<'t, T>,
{
    let (_, analytic) = vjp(&f, x, dims, v)?;
    let mut tape = Tape::new();
    // Recording stays on so that `f` may itself call `backward_graph` (grad-of-grad checks).
    tape.set_recording(true);
    let mut phi = |xs: &[T]| -> Result<f64, Error> {
        tape.reset();
        let xv = tape.leaf(xs, dims)?;
        let y = f(xv);
        let mut out = vec![T::zero(); y.len()];
        y.value_into(&mut out)?;
        if out.len() != v.len() {
            return Err(Error::LengthMismatch {
                what: "gradcheck seed",
                expected: out.len(),
                found: v.len(),
            });
        }
        Ok(out
            .iter()
            .zip(v)
            .map(|(&a, &b)| a.to_f64_lossy() * b.to_f64_lossy())
            .sum())
    };
    let eps = T::epsilon().to_f64_lossy().cbrt();
    let mut xs = x.to_vec();
    let mut rep = GradcheckReport {
        max_rel_error: 0.0,
        worst_index: 0,
        analytic: 0.0,
        numeric: 0.0,
    };
    for i in 0..x.len() {
        let x0 = x[i];
        let h = eps * x0.to_f64_lossy().abs().max(1.0);
        let xp = T::from_f64_const(x0.to_f64_lossy() + h);
        let xm = T::from_f64_const(x0.to_f64_lossy() - h);
        xs[i] = xp;
        let fp = phi(&xs)?;
        xs[i] = xm;
        let fm = phi(&xs)?;
        xs[i] = x0;
        // Use the representable step actually taken.
        let num = (fp - fm) / (xp.to_f64_lossy() - xm.to_f64_lossy());
        let a = analytic[i].to_f64_lossy();
        let err = (a - num).abs() / 1f64.max(a.abs()).max(num.abs());
        if err > rep.max_rel_error || !err.is_finite() {
            rep = GradcheckReport {
                max_rel_error: if err.is_finite() { err } else { f64::INFINITY },
                worst_index: i,
                analytic: a,
                numeric: num,
            };
        }
    }
    Ok(rep)
}

/// Pins a closure to the higher-ranked signature `for<'t> Fn(Var<'t, T>) -> Var<'t, T>`
/// the functions above take. Needed when the closure is stored in a `let` before use
/// (Rust infers a single lifetime otherwise): `let f = func(|x| x.tanh());`.
pub fn func<T: Float, F>(f: F) -> F
where
    F: for<'t> Fn(Var<'t, T>) -> Var<'t, T>,
{
    f
}
