//! The direct adjoint with the field's residuals kept by the forward solve
//! ([`Vjp::residual_len`], [`AdjointSolver::set_residual_bytes`]): its gradients equal, bit
//! for bit, those of the same dynamics without residuals (every VJP evaluating the field
//! again) on every Runge–Kutta method, with rejected steps, many outputs, time gradients
//! and the byte cap hit mid-solve; each kept evaluation is matched to its stage by input
//! (a dynamics that reads its input back from the residuals would be wrong otherwise); the
//! backward pass then does no forward work; central differences of fixed-step solves.

use core::cell::Cell;

mod common;

use adjoint::test_problems::SplitMix64;
use adjoint::{
    AdjointSolver, Dynamics, GradientMode, Gradients, Method, Options, Result, TanhMlp, Vjp,
};
use common::{loss, weights};
use ode_solvers::tableau::{DOPRI5_SHAMPINE, HEUN};

#[global_allocator]
static GLOBAL: alloc_count::Counting = alloc_count::Counting;

const BATCH: usize = 3;

/// The weight scale of the fields that must reject steps at the tolerances of [`methods`].
const SCALE: f64 = 6.0;

/// A time-dependent MLP (the `t` input makes stage times matter) and its inputs; `scale`
/// sets how stiff the field is.
fn field(scale: f64) -> (TanhMlp<f64>, Vec<f64>, Vec<f64>) {
    field_of(BATCH, scale)
}

/// [`field`] over `batch` rows.
fn field_of(batch: usize, scale: f64) -> (TanhMlp<f64>, Vec<f64>, Vec<f64>) {
    let mlp = TanhMlp::new(&[2, 12, 12, 2], batch, true).unwrap();
    let theta = mlp.init_params(7, scale);
    let mut rng = SplitMix64::new(11);
    let z0: Vec<f64> = (0..2 * batch).map(|_| rng.uniform_pm1()).collect();
    (mlp, theta, z0)
}

/// Counts of what the dynamics were asked.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Counts {
    eval: usize,
    eval_saving: usize,
    vjp: usize,
    vjp_saved: usize,
}

/// `D` with counters; `keep` false hides the residuals (the trait's defaults: every VJP
/// evaluates the field again, the direct mode as before residuals).
struct Counted<D> {
    d: D,
    keep: bool,
    c: Cell<Counts>,
}

impl<D> Counted<D> {
    fn new(d: D, keep: bool) -> Self {
        Counted {
            d,
            keep,
            c: Cell::new(Counts::default()),
        }
    }
    fn bump(&self, f: impl FnOnce(&mut Counts)) {
        let mut c = self.c.get();
        f(&mut c);
        self.c.set(c);
    }
    fn take(&self) -> Counts {
        self.c.replace(Counts::default())
    }
}

impl<D: Vjp<f64>> Dynamics<f64> for Counted<D> {
    fn n_states(&self) -> usize {
        self.d.n_states()
    }
    fn n_params(&self) -> usize {
        self.d.n_params()
    }
    fn eval(&mut self, t: f64, z: &[f64], th: &[f64], out: &mut [f64]) -> Result<()> {
        self.bump(|c| c.eval += 1);
        self.d.eval(t, z, th, out)
    }
}

impl<D: Vjp<f64>> Vjp<f64> for Counted<D> {
    fn vjp_z(&mut self, t: f64, z: &[f64], th: &[f64], a: &[f64], out: &mut [f64]) -> Result<()> {
        self.bump(|c| c.vjp += 1);
        self.d.vjp_z(t, z, th, a, out)
    }
    fn vjp_theta(
        &mut self,
        t: f64,
        z: &[f64],
        th: &[f64],
        a: &[f64],
        out: &mut [f64],
    ) -> Result<()> {
        self.bump(|c| c.vjp += 1);
        self.d.vjp_theta(t, z, th, a, out)
    }
    fn vjp_t(&mut self, t: f64, z: &[f64], th: &[f64], a: &[f64]) -> Result<f64> {
        self.bump(|c| c.vjp += 1);
        self.d.vjp_t(t, z, th, a)
    }
    fn vjp(
        &mut self,
        t: f64,
        z: &[f64],
        th: &[f64],
        a: &[f64],
        oz: &mut [f64],
        ot: &mut [f64],
    ) -> Result<f64> {
        self.bump(|c| c.vjp += 1);
        self.d.vjp(t, z, th, a, oz, ot)
    }
    fn residual_len(&self) -> usize {
        if self.keep { self.d.residual_len() } else { 0 }
    }
    fn eval_saving(
        &mut self,
        t: f64,
        z: &[f64],
        th: &[f64],
        out: &mut [f64],
        res: &mut [f64],
    ) -> Result<()> {
        assert!(self.keep, "eval_saving without residuals");
        self.bump(|c| c.eval_saving += 1);
        self.d.eval_saving(t, z, th, out, res)
    }
    fn vjp_saved(
        &mut self,
        t: f64,
        z: &[f64],
        th: &[f64],
        res: &[f64],
        a: &[f64],
        oz: &mut [f64],
        ot: &mut [f64],
    ) -> Result<f64> {
        assert!(self.keep, "vjp_saved without residuals");
        self.bump(|c| c.vjp_saved += 1);
        self.d.vjp_saved(t, z, th, res, a, oz, ot)
    }
}

/// `ż_i = θ_i sin(z_i + t) + θ_{n+i} z_{i+1}` (cyclic), whose residuals are `(t, z)`
/// themselves and whose [`Vjp::vjp_saved`] reads the point from them and ignores its `t`
/// and `z`: handed the residuals of another evaluation, it differentiates at the wrong point.
struct ReadsBack {
    n: usize,
    /// `vjp_saved` calls whose `(t, z)` differed from the residuals' (must stay 0).
    mismatches: usize,
}

impl ReadsBack {
    fn f(&self, t: f64, z: &[f64], th: &[f64], out: &mut [f64]) {
        let n = self.n;
        for i in 0..n {
            out[i] = th[i] * (z[i] + t).sin() + th[n + i] * z[(i + 1) % n];
        }
    }
}

impl Dynamics<f64> for ReadsBack {
    fn n_states(&self) -> usize {
        self.n
    }
    fn n_params(&self) -> usize {
        2 * self.n
    }
    fn eval(&mut self, t: f64, z: &[f64], th: &[f64], out: &mut [f64]) -> Result<()> {
        self.f(t, z, th, out);
        Ok(())
    }
}

impl Vjp<f64> for ReadsBack {
    fn vjp_z(&mut self, t: f64, z: &[f64], th: &[f64], a: &[f64], out: &mut [f64]) -> Result<()> {
        let mut g = vec![0.0; 2 * self.n];
        self.vjp(t, z, th, a, out, &mut g).map(|_| ())
    }
    fn vjp_theta(
        &mut self,
        t: f64,
        z: &[f64],
        th: &[f64],
        a: &[f64],
        out: &mut [f64],
    ) -> Result<()> {
        let mut g = vec![0.0; self.n];
        self.vjp(t, z, th, a, &mut g, out).map(|_| ())
    }
    fn vjp_t(&mut self, t: f64, z: &[f64], th: &[f64], a: &[f64]) -> Result<f64> {
        let (mut g, mut h) = (vec![0.0; self.n], vec![0.0; 2 * self.n]);
        self.vjp(t, z, th, a, &mut g, &mut h)
    }
    fn vjp(
        &mut self,
        t: f64,
        z: &[f64],
        th: &[f64],
        a: &[f64],
        oz: &mut [f64],
        ot: &mut [f64],
    ) -> Result<f64> {
        let n = self.n;
        let mut dt = 0.0;
        oz.fill(0.0);
        for i in 0..n {
            let (s, c) = (z[i] + t).sin_cos();
            ot[i] = a[i] * s;
            ot[n + i] = a[i] * z[(i + 1) % n];
            oz[i] += a[i] * th[i] * c;
            oz[(i + 1) % n] += a[i] * th[n + i];
            dt += a[i] * th[i] * c;
        }
        Ok(dt)
    }
    fn residual_len(&self) -> usize {
        self.n + 1
    }
    fn eval_saving(
        &mut self,
        t: f64,
        z: &[f64],
        th: &[f64],
        out: &mut [f64],
        res: &mut [f64],
    ) -> Result<()> {
        res[0] = t;
        res[1..].copy_from_slice(z);
        self.eval(t, z, th, out)
    }
    fn vjp_saved(
        &mut self,
        t: f64,
        z: &[f64],
        th: &[f64],
        res: &[f64],
        a: &[f64],
        oz: &mut [f64],
        ot: &mut [f64],
    ) -> Result<f64> {
        if res[0].to_bits() != t.to_bits()
            || res[1..]
                .iter()
                .zip(z)
                .any(|(x, y)| x.to_bits() != y.to_bits())
        {
            self.mismatches += 1;
        }
        let (t, z) = (res[0], res[1..].to_vec());
        self.vjp(t, &z, th, a, oz, ot)
    }
}

fn bits(v: &[f64]) -> Vec<u64> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn assert_same(a: &Gradients<f64>, b: &Gradients<f64>, what: &str) {
    assert_eq!(bits(&a.theta), bits(&b.theta), "{what}: dL/dθ");
    assert_eq!(bits(&a.z0), bits(&b.z0), "{what}: dL/dz0");
    assert_eq!(bits(&a.ts), bits(&b.ts), "{what}: dL/dt");
}

/// The methods: FSAL with an interpolant (Dopri5, Shampine's Dopri5, Tsit5, Bosh3) and
/// without FSAL (DOP853, restarting at outputs), adaptive; RK4 and Heun on fixed steps.
fn methods() -> Vec<(Method, Options<f64>)> {
    let fixed = Options {
        fixed_step: Some(0.07),
        ..Options::default()
    };
    vec![
        (Method::Dopri5, Options::with_tol(1e-9, 1e-9)),
        (
            Method::Rk(&DOPRI5_SHAMPINE),
            Options::neural_ode(1e-7, 1e-7),
        ),
        (Method::Tsit5, Options::with_tol(1e-9, 1e-9)),
        (Method::Bosh3, Options::with_tol(1e-7, 1e-7)),
        (Method::Dop853, Options::with_tol(1e-10, 1e-10)),
        (Method::Dopri5, fixed.clone()),
        (Method::Rk4, fixed.clone()),
        (Method::Rk(&HEUN), fixed),
    ]
}

/// Value and gradient with and without residuals; returns both gradients and the stats
/// of the run with residuals.
fn both<D: Vjp<f64>>(
    with: &mut Counted<D>,
    without: &mut Counted<D>,
    method: Method,
    opts: &Options<f64>,
    cap: Option<usize>,
    z0: &[f64],
    theta: &[f64],
    ts: &[f64],
) -> (Gradients<f64>, Gradients<f64>, adjoint::GradStats) {
    let w = weights(ts.len() * z0.len());
    let mut s = AdjointSolver::new(method, opts.clone()).with_mode(GradientMode::Direct);
    if let Some(c) = cap {
        s.set_residual_bytes(c);
    }
    let (_, gw) = s.value_and_grad(with, z0, theta, ts, loss(&w)).unwrap();
    let st = s.stats();
    let mut s0 = AdjointSolver::new(method, opts.clone()).with_mode(GradientMode::Direct);
    let (_, g0) = s0.value_and_grad(without, z0, theta, ts, loss(&w)).unwrap();
    assert_eq!(s0.stats().backward_vjp_saved, 0);
    assert_eq!(s0.stats().backward_vjp, st.backward_vjp);
    (gw, g0, st)
}

/// States of 6 (the unrolled stage loops and their fixed-length sums) and of 40 components
/// (the stepper's `axpy` path beyond 32).
#[test]
fn residuals_give_the_same_bits_on_every_method() {
    for batch in [BATCH, 20] {
        same_bits_on_every_method(batch);
    }
}

fn same_bits_on_every_method(batch: usize) {
    let (mlp, theta, z0) = field_of(batch, SCALE);
    let ts: Vec<f64> = (0..9).map(|i| 0.3 * i as f64).collect();
    let mut with = Counted::new(mlp.clone(), true);
    let mut without = Counted::new(mlp, false);
    for (method, opts) in methods() {
        let (gw, g0, st) = both(
            &mut with,
            &mut without,
            method,
            &opts,
            None,
            &z0,
            &theta,
            &ts,
        );
        let name = method.name();
        println!("{name}: {st:?}");
        assert_same(&gw, &g0, name);
        // Every stage VJP found its evaluation.
        assert_eq!(st.backward_vjp_saved, st.backward_vjp, "{name}");
        assert!(st.backward_vjp > 0);
        assert!(gw.ts.iter().any(|x| *x != 0.0));
        // Rejected attempts leave evaluations that match no stage (the wider batch, other
        // states, rejects fewer: checked on the first).
        if opts.fixed_step.is_none() && batch == BATCH {
            assert!(st.forward.rejected > 0, "{name}: no rejected step");
        }
    }
}

#[test]
fn the_cap_falls_back_to_recomputation_mid_solve() {
    let (mlp, theta, z0) = field(SCALE);
    let ts = [0.0, 0.3, 0.7, 1.2];
    let n = z0.len();
    let slot = (n + mlp.residual_len() + 1) * 8;
    let mut with = Counted::new(mlp.clone(), true);
    let mut without = Counted::new(mlp, false);
    for (method, opts) in methods() {
        let name = method.name();
        let full = both(
            &mut with,
            &mut without,
            method,
            &opts,
            None,
            &z0,
            &theta,
            &ts,
        )
        .2;
        let stages = method.tableau().unwrap().stages;
        // Room for about half the kept stages.
        let cap = full.backward_vjp / 2 * slot;
        let (gw, g0, st) = both(
            &mut with,
            &mut without,
            method,
            &opts,
            Some(cap),
            &z0,
            &theta,
            &ts,
        );
        println!(
            "{name}: cap {cap} B: {} of {} VJPs from residuals",
            st.backward_vjp_saved, st.backward_vjp
        );
        assert_same(&gw, &g0, name);
        assert!(
            st.backward_vjp_saved > 0 && st.backward_vjp_saved + stages < st.backward_vjp,
            "{name}: {st:?}"
        );
        // No room for one slot: nothing kept.
        let (gw, g0, st) = both(
            &mut with,
            &mut without,
            method,
            &opts,
            Some(slot - 1),
            &z0,
            &theta,
            &ts,
        );
        assert_same(&gw, &g0, name);
        assert_eq!(st.backward_vjp_saved, 0);
        with.take();
    }
}

/// The residuals are the point itself and `vjp_saved` differentiates there: the slots
/// must be matched to the stages by input for the gradients to agree (many stages share a
/// time on Dopri5, `c₅ = c₆ = 1`, and rejected attempts evaluate at other points).
#[test]
fn slots_are_matched_by_input() {
    let n = 5;
    let mut rng = SplitMix64::new(2);
    let theta: Vec<f64> = (0..2 * n).map(|_| 2.0 * rng.uniform_pm1()).collect();
    let z0: Vec<f64> = (0..n).map(|_| rng.uniform_pm1()).collect();
    let ts = [0.0, 0.5, 1.1, 2.0];
    for (method, opts) in methods() {
        let name = method.name();
        let mut with = Counted::new(ReadsBack { n, mismatches: 0 }, true);
        let mut without = Counted::new(ReadsBack { n, mismatches: 0 }, false);
        let (gw, g0, st) = both(
            &mut with,
            &mut without,
            method,
            &opts,
            None,
            &z0,
            &theta,
            &ts,
        );
        assert_same(&gw, &g0, name);
        assert_eq!(with.d.mismatches, 0, "{name}");
        assert_eq!(st.backward_vjp_saved, st.backward_vjp, "{name}");
    }
}

/// With residuals the backward pass evaluates nothing: only reverse passes (and, with
/// time gradients, `f` at the interior outputs the interpolant gave).
#[test]
fn the_saved_backward_does_no_forward_work() {
    let (mlp, theta, z0) = field(1.5);
    let ts = [0.0, 0.4, 1.0];
    let w = weights(ts.len() * z0.len());
    let mut f = Counted::new(mlp, true);
    for method in [Method::Dopri5, Method::Tsit5, Method::Bosh3, Method::Dop853] {
        let mut s = AdjointSolver::new(method, Options::with_tol(1e-7, 1e-7))
            .with_mode(GradientMode::Direct);
        s.set_time_gradients(false);
        s.forward(&mut f, &z0, &theta, &ts).unwrap();
        let fwd = f.take();
        // Every forward evaluation kept its residuals.
        assert_eq!(fwd.eval, 0, "{}", method.name());
        assert_eq!(fwd.eval_saving, s.stats().forward.nfe);
        let mut dl = vec![0.0; w.len()];
        loss(&w)(s.states(), &mut dl);
        s.backward(&mut f, &dl).unwrap();
        let bwd = f.take();
        let st = s.stats();
        println!("{}: forward {fwd:?}, backward {bwd:?}", method.name());
        assert_eq!(
            bwd,
            Counts {
                vjp_saved: st.backward_vjp,
                ..Counts::default()
            },
            "{}",
            method.name()
        );
        assert_eq!(st.backward_nfe, 0);
    }
}

/// Fixed steps: the computed solution is smooth in `(θ, z₀)`, so its central differences
/// check the gradient from residuals.
#[test]
fn residual_gradients_match_central_differences() {
    let (mut f, theta, z0) = field(1.5);
    let ts = [0.0, 0.55, 1.3];
    let w = weights(ts.len() * z0.len());
    for method in [Method::Dopri5, Method::Dop853, Method::Bosh3] {
        let opts = Options {
            fixed_step: Some(0.25),
            ..Options::default()
        };
        let mut s = AdjointSolver::new(method, opts).with_mode(GradientMode::Direct);
        let (_, g) = s
            .value_and_grad(&mut f, &z0, &theta, &ts, loss(&w))
            .unwrap();
        let st = s.stats();
        assert_eq!(st.backward_vjp_saved, st.backward_vjp);
        let mut value = |th: &[f64], z: &[f64]| -> f64 {
            s.forward(&mut f, z, th, &ts).unwrap();
            s.states().iter().zip(&w).map(|(z, w)| z * w).sum()
        };
        let mut rng = SplitMix64::new(3);
        let eps = 1e-5;
        let mut worst = 0.0f64;
        for _ in 0..3 {
            let vt: Vec<f64> = theta.iter().map(|_| rng.uniform_pm1()).collect();
            let vz: Vec<f64> = z0.iter().map(|_| rng.uniform_pm1()).collect();
            let at = |e: f64| -> (Vec<f64>, Vec<f64>) {
                (
                    theta.iter().zip(&vt).map(|(a, b)| a + e * b).collect(),
                    z0.iter().zip(&vz).map(|(a, b)| a + e * b).collect(),
                )
            };
            let (tp, zp) = at(eps);
            let (tm, zm) = at(-eps);
            let fd = (value(&tp, &zp) - value(&tm, &zm)) / (2.0 * eps);
            let ad: f64 = g.theta.iter().zip(&vt).map(|(a, b)| a * b).sum::<f64>()
                + g.z0.iter().zip(&vz).map(|(a, b)| a * b).sum::<f64>();
            worst = worst.max((fd - ad).abs() / ad.abs().max(1e-3));
        }
        println!(
            "{}: worst relative error against FD {worst:.2e}",
            method.name()
        );
        assert!(worst < 1e-7, "{}: {worst:e}", method.name());
    }
}

/// The kept residuals are counted in `peak_bytes`, and a warm solver reuses its pool: the
/// allocations of a call do not grow with its steps.
#[test]
fn residuals_are_counted_and_reused() {
    let (mut f, theta, z0) = field(1.5);
    let r = f.residual_len();
    let n = z0.len();
    let run = |s: &mut AdjointSolver<f64>, f: &mut TanhMlp<f64>, t1: f64| {
        let ts = [0.0, t1];
        let mut dl = vec![1.0; 2 * n];
        let mut g = Gradients::default();
        s.forward(f, &z0, &theta, &ts).unwrap();
        s.backward_into(f, &dl, &mut g).unwrap();
        let ((), allocs) = alloc_count::allocations_in(|| {
            s.forward(f, &z0, &theta, &ts).unwrap();
            dl.fill(1.0);
            s.backward_into(f, &dl, &mut g).unwrap();
        });
        (allocs, s.stats())
    };
    let mut s = AdjointSolver::new(Method::Dopri5, Options::with_tol(1e-8, 1e-8))
        .with_mode(GradientMode::Direct);
    let mut s0 = s.clone();
    s0.set_residual_bytes(0);
    run(&mut s, &mut f, 20.0);
    let (short, _) = run(&mut s, &mut f, 2.0);
    let (long, st) = run(&mut s, &mut f, 20.0);
    let (_, st0) = run(&mut s0, &mut f, 20.0);
    println!("{short} allocations (short), {long} (long); {st:?} / {st0:?}");
    assert!(
        long <= short,
        "{long} allocations for the long solve vs {short}"
    );
    assert_eq!(st0.backward_vjp_saved, 0);
    let kept = st.backward_vjp_saved * (n + r + 1) * 8;
    assert!(
        st.peak_bytes >= st0.peak_bytes + kept,
        "{} vs {} + {kept}",
        st.peak_bytes,
        st0.peak_bytes
    );
}
