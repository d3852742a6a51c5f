//! The initial step size of an adaptive solve (Hairer's `HINIT`), shared by the
//! Runge–Kutta and Adams steppers.

use core::ops::Range;

use crate::options::{InitialStep, Stats};
use crate::real::{Real, c};
use crate::system::OdeSystem;

/// Hairer's `HINIT`: `h0 = 0.01 ‖y‖/‖f‖`, one explicit Euler step to estimate `‖y''‖`,
/// then `h = min(100 h0, (0.01 / max(‖f‖, ‖y''‖))^{1/p}, max_step)` (sums of squares of the
/// scaled components as in the Fortran code, or their means with
/// [`InitialStep::Rms`]). Costs one evaluation.
pub(crate) fn hinit<T: Real, S: OdeSystem<T> + ?Sized>(
    kind: InitialStep,
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
    let range_len = range.len().max(1);
    let mut dnf = T::zero();
    let mut dny = T::zero();
    for i in range.clone() {
        let sk = atol[i] + rtol[i] * y[i].abs();
        let a = f0[i] / sk;
        let b = y[i] / sk;
        dnf += a * a;
        dny += b * b;
    }
    // A sum of squares overflows once a scaled component passes √MAX (1e154 in f64,
    // e.g. y0 = (1e150, 0) with atol 1e-8): then recompute it scaled by the largest
    // component, which gives the same norm without overflow (and the plain sum, bit for
    // bit, whenever it is finite).
    if !(dnf.is_finite() && dny.is_finite()) {
        dnf = scaled_sum_of_squares(
            range
                .clone()
                .map(|i| f0[i] / (atol[i] + rtol[i] * y[i].abs())),
        );
        dny = scaled_sum_of_squares(
            range
                .clone()
                .map(|i| y[i] / (atol[i] + rtol[i] * y[i].abs())),
        );
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
    for i in range.clone() {
        let sk = atol[i] + rtol[i] * y[i].abs();
        let a = (f1[i] - f0[i]) / sk;
        der2 += a * a;
    }
    let der2 = if der2.is_finite() {
        der2.sqrt() / h.abs()
    } else {
        let d = range.map(|i| (f1[i] - f0[i]) / (atol[i] + rtol[i] * y[i].abs()));
        scaled_norm(d) / h.abs()
    };
    // The RMS variant divides the sums of squares by the number of controlled components
    // (the ratio `dny / dnf` above is the same either way).
    let (der2, dnf) = match kind {
        InitialStep::Hairer => (der2, dnf),
        InitialStep::Rms => {
            let n: T = c(range_len as f64);
            (der2 / n.sqrt(), dnf / n)
        }
    };
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

/// `√Σ xᵢ²` without overflow or underflow: `m √Σ (xᵢ/m)²` with `m = max |xᵢ|`
/// (`MAX` if the sum itself overflows; an infinite or NaN component gives itself).
fn scaled_norm<T: Real>(xs: impl Iterator<Item = T> + Clone) -> T {
    let m = xs.clone().fold(T::zero(), |m, x| m.max(x.abs()));
    if !(m.is_finite() && m > T::zero()) {
        return m;
    }
    let s = xs.fold(T::zero(), |s, x| {
        let r = x / m;
        s + r * r
    });
    m * s.sqrt()
}

/// `Σ xᵢ²` through [`scaled_norm`], saturated at the float type's largest value (the
/// heuristic only compares and divides it).
fn scaled_sum_of_squares<T: Real>(xs: impl Iterator<Item = T> + Clone) -> T {
    let n = scaled_norm(xs);
    let sq = n * n;
    if sq.is_finite() { sq } else { T::max_value() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaled_norm_does_not_overflow() {
        let v = [1e200_f64, -1e200, 0.0];
        let n = scaled_norm(v.iter().copied());
        assert!((n / (2f64.sqrt() * 1e200) - 1.0).abs() < 1e-15, "{n}");
        let v = [3e-200_f64, 4e-200];
        assert!((scaled_norm(v.iter().copied()) / 5e-200 - 1.0).abs() < 1e-15);
        assert_eq!(scaled_norm([0.0_f32; 3].into_iter()).to_bits(), 0);
        assert_eq!(
            scaled_sum_of_squares([1e200_f64].into_iter()).to_bits(),
            f64::MAX.to_bits()
        );
    }
}
