//! The initial step size of an adaptive solve (Hairer's `HINIT`), shared by the
//! Runge–Kutta and Adams steppers.

use core::ops::Range;

use crate::options::Stats;
use crate::real::{Real, c};
use crate::system::OdeSystem;

/// Hairer's `HINIT`: `h0 = 0.01 ‖y‖/‖f‖`, one explicit Euler step to estimate `‖y''‖`,
/// then `h = min(100 h0, (0.01 / max(‖f‖, ‖y''‖))^{1/p}, max_step)` (sums of squares of the
/// scaled components as in the Fortran code). Costs one evaluation.
pub(crate) fn hinit<T: Real, S: OdeSystem<T> + ?Sized>(
    sys: &mut S,
    t: T,
    y: &[T],
    f0: &[T],
    dir: T,
    max_step: T,
    rtol: &[T],
    atol: &[T],
    range: Range<usize>,
    order: u32,
    ytmp: &mut [T],
    f1: &mut [T],
    stats: &mut Stats,
) -> T {
    let mut dnf = T::zero();
    let mut dny = T::zero();
    for i in range.clone() {
        let sk = atol[i] + rtol[i] * y[i].abs();
        let a = f0[i] / sk;
        let b = y[i] / sk;
        dnf += a * a;
        dny += b * b;
    }
    let tiny: T = c(1e-10);
    let mut h = if dnf <= tiny || dny <= tiny {
        c(1e-6)
    } else {
        (dny / dnf).sqrt() * c(0.01)
    };
    h = h.min(max_step) * dir;
    for i in 0..y.len() {
        ytmp[i] = y[i] + h * f0[i];
    }
    sys.rhs(t + h, ytmp, f1);
    stats.nfe += 1;
    let mut der2 = T::zero();
    for i in range {
        let sk = atol[i] + rtol[i] * y[i].abs();
        let a = (f1[i] - f0[i]) / sk;
        der2 += a * a;
    }
    let der2 = der2.sqrt() / h.abs();
    let der12 = der2.max(dnf.sqrt());
    let h1 = if !(der12 > c(1e-15)) {
        (h.abs() * c(1e-3)).max(c(1e-6))
    } else {
        (c::<T>(0.01) / der12).powf(T::one() / c(f64::from(order.max(1))))
    };
    let mut hh = (h.abs() * c(100.0)).min(h1).min(max_step);
    if !(hh.is_finite() && hh > T::zero()) {
        hh = h.abs();
    }
    hh * dir
}
