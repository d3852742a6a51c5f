//! What the forward solve and every gradient mode share: stepping a system through
//! [`ode_solvers::Integrator`] (the one driver; it picks the stepper and the adaptive, fixed
//! or onto-the-target stepping), fallible right-hand sides, the backward options and the
//! byte accounting of [`crate::GradStats::peak_bytes`].

use core::ops::Range;

use ode_solvers::{
    Integrator, Method, OdeSystem, Options, SolveError, Stats, StepControl, Tableau, Tolerance,
};

use crate::Real;
use crate::dynamics::Vjp;
use crate::error::{Error, Result};
use crate::solver::{AdjointAtol, BackwardSolver};

/// A right-hand side made of fallible dynamics (the augmented systems of the gradient
/// modes implement this; [`Guarded`] makes it an [`OdeSystem`]).
pub(crate) trait TryRhs<T> {
    /// Writes `f(t, y)` into `dy`, or returns the dynamics' error.
    fn try_rhs(&mut self, t: T, y: &[T], dy: &mut [T]) -> Result<()>;
}

/// A [`TryRhs`] as an [`OdeSystem`]: the first error is kept (and the output filled with
/// NaN so the solver stops) until taken.
pub(crate) struct Guarded<R> {
    pub(crate) rhs: R,
    err: Option<Error>,
}

impl<R> Guarded<R> {
    pub(crate) fn new(rhs: R) -> Self {
        Guarded { rhs, err: None }
    }

    /// The first error of the dynamics since the last call.
    pub(crate) fn take_err(&mut self) -> Option<Error> {
        self.err.take()
    }

    /// Turns a solver error into the dynamics' own error when the dynamics failed first.
    fn solve_err(&mut self, e: SolveError) -> Error {
        self.take_err().unwrap_or(Error::Solve(e))
    }
}

impl<T: Real, R: TryRhs<T>> OdeSystem<T> for Guarded<R> {
    #[inline]
    fn rhs(&mut self, t: T, y: &[T], dy: &mut [T]) {
        if let Err(e) = self.rhs.try_rhs(t, y, dy) {
            self.err.get_or_insert(e);
            dy.fill(T::nan());
        }
    }
}

/// `sys` for the stepper, behind `dyn`: the steppers are compiled once per float type
/// instead of once per augmented system, which keeps the short-state stage loops
/// `ode-solvers` compiles for every system type out of this crate's build; a call through
/// a pointer costs nothing next to a right-hand side made of network VJPs.
pub(crate) fn as_dyn<'a, T: Real, S: OdeSystem<T> + 'a>(
    sys: &'a mut S,
) -> &'a mut (dyn OdeSystem<T> + 'a) {
    sys
}

/// The tableau of `method`, or [`Error::UnsupportedMethod`] saying what needed one.
pub(crate) fn tableau_of(method: Method, what: &'static str) -> Result<&'static Tableau> {
    method.tableau().ok_or(Error::UnsupportedMethod {
        method: method.name(),
        what,
    })
}

/// Checks that `method` can step under `opts` (Adams refuses a fixed step), before any
/// solve: the error [`Integrator::new`] would return at the first integration.
pub(crate) fn check_control<T: Real>(method: Method, opts: &Options<T>) -> Result<()> {
    StepControl::of(method, opts)?;
    Ok(())
}

/// [`check_control`] for the backward solver `bwd` of a forward solve with `method`
/// under `opts`.
pub(crate) fn check_backward<T: Real>(
    method: Method,
    opts: &Options<T>,
    bwd: &BackwardSolver<T>,
) -> Result<()> {
    if let AdjointAtol::Scale(c) = bwd.adjoint_atol
        && !(c.is_finite() && c > T::zero())
    {
        return Err(Error::InvalidOption {
            name: "AdjointAtol::Scale",
            value: c.to_f64_lossy(),
            reason: "the factor must be finite and > 0",
        });
    }
    let (method, opts) = backward_solver(method, opts, bwd, None);
    check_control(method, &opts)
}

/// Applies [`BackwardSolver::adjoint_atol`] to the backward options `o` of a state of
/// length `m` whose components `scaled` are adjoint components (linear in the seeds);
/// `seeds` are the `∂L/∂z(t_k)` entering the backward integration (`k ≥ 1`). Once per
/// backward pass (a `PerComponent` tolerance is built only when some components keep
/// theirs).
pub(crate) fn scale_adjoint_atol<T: Real>(
    o: &mut Options<T>,
    bwd: &BackwardSolver<T>,
    seeds: &[T],
    m: usize,
    scaled: Range<usize>,
) {
    let s = match bwd.adjoint_atol {
        AdjointAtol::Absolute => return,
        AdjointAtol::Scale(c) => c,
        AdjointAtol::RelativeToSeed => seeds.iter().fold(T::zero(), |a, g| a.max(g.abs())),
    };
    // `s ≥ 0`: the seeds are finite (checked) and a `Scale` factor is > 0 (checked).
    if s == T::zero() {
        // Every seed zero: the adjoint is zero, any tolerance will do (a zero one would not).
        return;
    }
    // Never let the product underflow to a zero tolerance.
    let mul = |x: T| (x * s).max(T::min_positive_value());
    o.atol = match &o.atol {
        Tolerance::Scalar(x) if scaled.start == 0 && scaled.end >= m => Tolerance::Scalar(mul(*x)),
        Tolerance::Scalar(x) => Tolerance::PerComponent(
            (0..m)
                .map(|i| if scaled.contains(&i) { mul(*x) } else { *x })
                .collect(),
        ),
        Tolerance::PerComponent(v) => Tolerance::PerComponent(
            v.iter()
                .enumerate()
                .map(|(i, &x)| if scaled.contains(&i) { mul(x) } else { x })
                .collect(),
        ),
    };
}

/// Sets up one integration of `sys` from `(t0, y0)` towards `t1` with `method`.
pub(crate) fn start<T: Real, R: TryRhs<T>>(
    method: Method,
    sys: &mut Guarded<R>,
    t0: T,
    y0: &[T],
    t1: T,
    opts: &Options<T>,
) -> Result<Integrator<T>> {
    let it = match Integrator::new(method, as_dyn(sys), t0, y0, t1, opts) {
        Ok(it) => it,
        Err(e) => return Err(sys.solve_err(e)),
    };
    match sys.take_err() {
        Some(e) => Err(e),
        None => Ok(it),
    }
}

/// Steps `it` to its end, calling `on_step` after each accepted step.
pub(crate) fn run_to_end<T, R, G>(
    it: &mut Integrator<T>,
    sys: &mut Guarded<R>,
    mut on_step: G,
) -> Result<()>
where
    T: Real,
    R: TryRhs<T>,
    G: FnMut(&mut Integrator<T>, &mut Guarded<R>) -> Result<()>,
{
    let t1 = it.t_end();
    while !it.is_done() {
        if let Err(e) = it.advance(as_dyn(sys), t1) {
            return Err(sys.solve_err(e));
        }
        if let Some(e) = sys.take_err() {
            return Err(e);
        }
        on_step(it, sys)?;
    }
    Ok(())
}

/// One integration from `t0` to `t1` with `method` ([`start`], then [`run_to_end`]).
pub(crate) fn integrate<T, R, G>(
    method: Method,
    sys: &mut Guarded<R>,
    t0: T,
    y0: &[T],
    t1: T,
    opts: &Options<T>,
    on_step: G,
) -> Result<Integrator<T>>
where
    T: Real,
    R: TryRhs<T>,
    G: FnMut(&mut Integrator<T>, &mut Guarded<R>) -> Result<()>,
{
    let mut it = start(method, sys, t0, y0, t1, opts)?;
    run_to_end(&mut it, sys, on_step)?;
    Ok(it)
}

/// The method and options of a backward integration after a forward solve with `method`
/// under `fwd`; `seminorm` is the part of the state under error control when the backward
/// solver asks for the seminorm.
pub(crate) fn backward_solver<T: Real>(
    method: Method,
    fwd: &Options<T>,
    bwd: &BackwardSolver<T>,
    seminorm: Option<Range<usize>>,
) -> (Method, Options<T>) {
    let mut o = match &bwd.options {
        Some(o) => o.clone(),
        None => {
            let mut o = fwd.clone();
            let scal = |t: &Tolerance<T>| match t {
                Tolerance::Scalar(x) => Tolerance::Scalar(*x),
                Tolerance::PerComponent(v) => {
                    Tolerance::Scalar(v.iter().copied().fold(T::infinity(), |a, b| a.min(b)))
                }
            };
            o.rtol = scal(&fwd.rtol);
            o.atol = scal(&fwd.atol);
            o.first_step = None;
            o
        }
    };
    if bwd.seminorm {
        o.error_components = seminorm;
    }
    (bwd.method.unwrap_or(method), o)
}

/// `f` alone (forward solves).
pub(crate) struct Eval<'a, T: Real> {
    pub(crate) d: &'a mut dyn Vjp<T>,
    pub(crate) theta: &'a [T],
}

impl<T: Real> TryRhs<T> for Eval<'_, T> {
    #[inline]
    fn try_rhs(&mut self, t: T, y: &[T], dy: &mut [T]) -> Result<()> {
        self.d.eval(t, y, self.theta, dy)
    }
}

/// The system of a forward solve of `d` with parameters `theta`.
pub(crate) fn eval_sys<'a, T: Real>(d: &'a mut dyn Vjp<T>, theta: &'a [T]) -> Guarded<Eval<'a, T>> {
    Guarded::new(Eval { d, theta })
}

/// Adds the counters of one integration to `acc`.
pub(crate) fn add_stats(acc: &mut Stats, s: Stats) {
    acc.nfe += s.nfe;
    acc.accepted += s.accepted;
    acc.rejected += s.rejected;
}

/// Bytes of an integrator's working state for a state of length `m` (estimate: stages,
/// seven state-sized buffers, tolerances, dense coefficients; Adams keeps up to 13 back
/// values and a few state-sized buffers).
pub(crate) fn stepper_bytes<T>(method: Method, m: usize) -> usize {
    let stages = method.tableau().map_or(16, |t| t.stages);
    (stages + 3 + 9 + 8) * m * core::mem::size_of::<T>()
}

/// Bytes held by a vector (its capacity).
pub(crate) fn vec_bytes<T>(v: &Vec<T>) -> usize {
    v.capacity() * core::mem::size_of::<T>()
}
