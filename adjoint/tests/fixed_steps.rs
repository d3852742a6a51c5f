//! Every gradient mode × {adaptive, fixed step} × {increasing, decreasing output times}
//! against the closed form of `ż = A z` with a loss on every output time.
//!
//! Fixed steps used to fail in the checkpointed and backsolve modes (the backward pass took
//! its step with the forward sign); this matrix is the test that would have caught it.

mod common;

use adjoint::test_problems::{Linear, SplitMix64};
use adjoint::{AdjointSolver, Error, GradientMode, Method, Options};
use common::{closed_form, rel};
use ode_solvers::SolveError;

fn modes() -> Vec<GradientMode<f64>> {
    common::every_mode(2)
}

struct Case {
    a: Vec<f64>,
    z0: Vec<f64>,
    w: Vec<f64>,
}

const N: usize = 3;

fn case() -> Case {
    let mut rng = SplitMix64::new(11);
    let a = (0..N * N)
        .map(|k| if k % (N + 1) == 0 { -0.5 } else { 0.0 } + 0.4 * rng.uniform_pm1())
        .collect();
    let z0 = (0..N).map(|_| rng.uniform_pm1()).collect();
    let w = (0..3 * N).map(|_| rng.uniform_pm1()).collect();
    Case { a, z0, w }
}

/// The worst relative error of `(dL/dz0, dL/dA, dL/dtᵢ)` for one mode, method and options.
fn worst_error(
    c: &Case,
    mode: GradientMode<f64>,
    method: Method,
    opts: Options<f64>,
    ts: &[f64],
) -> Result<f64, Error> {
    let (gz0, ga, gts) = closed_form(&c.a, N, &c.z0, &c.w, ts);
    let mut solver = AdjointSolver::new(method, opts).with_mode(mode);
    let mut d = Linear::new(N);
    solver.forward(&mut d, &c.z0, &c.a, ts)?;
    let g = solver.backward(&mut d, &c.w)?;
    Ok(rel(&g.z0, &gz0)
        .max(rel(&g.theta, &ga))
        .max(rel(&g.ts, &gts)))
}

const INCREASING: [f64; 3] = [0.2, 0.9, 1.6];
const DECREASING: [f64; 3] = [1.6, 0.9, 0.2];

#[test]
fn every_mode_adaptive_both_directions() {
    let c = case();
    for mode in modes() {
        for ts in [INCREASING, DECREASING] {
            let name = mode.name();
            let e = worst_error(
                &c,
                mode.clone(),
                Method::Dopri5,
                Options::with_tol(1e-10, 1e-12),
                &ts,
            )
            .unwrap_or_else(|err| panic!("{name}, times {ts:?}: {err}"));
            assert!(e < 1e-7, "{name}, adaptive, times {ts:?}: error {e:.2e}");
        }
    }
}

/// Every explicit RK method with a fixed step, in every mode and both directions: the error
/// falls as `h^p` (checked against `20 hᵖ`, with a floor for the high orders).
#[test]
fn every_mode_fixed_step_every_method_both_directions() {
    let c = case();
    let methods = [
        (Method::Euler, 1e-3f64),
        (Method::Midpoint, 1e-2),
        (Method::Heun, 1e-2),
        (Method::Rk4, 1e-2),
        (Method::Bosh3, 1e-2),
        (Method::Dopri5, 0.05),
        (Method::Tsit5, 0.05),
        (Method::Dop853, 0.1),
    ];
    for (method, h) in methods {
        let order = method.tableau().expect("an RK method").order;
        let bound = (20.0 * h.powi(order as i32)).max(1e-9);
        let opts = Options {
            fixed_step: Some(h),
            ..Options::default()
        };
        for mode in modes() {
            for ts in [INCREASING, DECREASING] {
                let name = mode.name();
                let e = worst_error(&c, mode.clone(), method, opts.clone(), &ts).unwrap_or_else(
                    |err| panic!("{name}, {}, h = {h}, times {ts:?}: {err}", method.name()),
                );
                assert!(
                    e < bound,
                    "{name}, {} with h = {h}, times {ts:?}: error {e:.2e} > {bound:.1e}",
                    method.name()
                );
            }
        }
    }
}

/// A fixed step changes the error by the expected power of `h`: halving the step of RK4
/// shrinks the gradient error about 16-fold in every mode (the step really is used).
#[test]
fn fixed_step_gradients_converge_at_the_method_order() {
    let c = case();
    for mode in modes() {
        let errs: Vec<f64> = [0.1, 0.05]
            .iter()
            .map(|&h| {
                let opts = Options {
                    fixed_step: Some(h),
                    ..Options::default()
                };
                worst_error(&c, mode.clone(), Method::Rk4, opts, &DECREASING).unwrap()
            })
            .collect();
        let ratio = errs[0] / errs[1];
        assert!(
            (10.0..24.0).contains(&ratio),
            "{}: error ratio for h = 0.1 → 0.05 is {ratio:.1} (errors {errs:?})",
            mode.name()
        );
    }
}

/// Adams is variable-step by design: a fixed step is a clear error in every mode, never a
/// silently adaptive run.
#[test]
fn adams_with_a_fixed_step_is_refused_in_every_mode() {
    let c = case();
    let opts = Options {
        fixed_step: Some(0.01),
        ..Options::default()
    };
    for mode in modes() {
        let name = mode.name();
        let r = worst_error(&c, mode, Method::Adams, opts.clone(), &INCREASING);
        assert!(
            matches!(
                r,
                Err(Error::Solve(SolveError::Unsupported { .. }))
                    | Err(Error::UnsupportedMethod { .. })
            ),
            "{name}: {r:?}"
        );
    }
}
