//! Event location: integrate until `g(t, y)` crosses zero.

use crate::driver::{Integrator, StepControl};
use crate::error::SolveError;
use crate::odeint::{Method, check_times};
use crate::options::{Options, Stats};
use crate::real::{Real, c};
use crate::system::OdeSystem;

/// Which zero crossings of `g` count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EventDirection {
    /// Any sign change.
    #[default]
    Either,
    /// `g` goes from negative to positive.
    Rising,
    /// `g` goes from positive to negative.
    Falling,
}

/// Result of [`solve_until_event`].
#[derive(Debug, Clone, PartialEq)]
pub struct Event<T> {
    /// Time of the event, or the end time if no event happened.
    pub t: T,
    /// State at `t` (dense output).
    pub y: Vec<T>,
    /// `true` if `g` crossed zero, `false` if `t_end` was reached first.
    pub found: bool,
    /// Counters.
    pub stats: Stats,
}

/// Integrates from `(t0, y0)` towards `t_end` until `g(t, y)` changes sign (in the given
/// direction) and returns the crossing time and state.
///
/// After every accepted step, `g` is evaluated at the step's end; on a sign change the root
/// is located on the dense output by the Illinois (modified regula falsi) method to
/// `|Δt| ≤ t_tol` (default when `t_tol <= 0`: `100 ε max(|t|, |h|)`). Crossings that enter and
/// leave within one step are not seen (shorten `max_step` to catch them).
/// Works forwards and backwards in time; fixed-step-only methods need `options.fixed_step`.
pub fn solve_until_event<T, S, G>(
    sys: &mut S,
    y0: &[T],
    t0: T,
    t_end: T,
    method: Method,
    options: &Options<T>,
    mut g: G,
    direction: EventDirection,
    t_tol: T,
) -> Result<Event<T>, SolveError>
where
    T: Real,
    S: OdeSystem<T> + ?Sized,
    G: FnMut(T, &[T]) -> T,
{
    check_times(&[t0, t_end])?;
    let mut it = Integrator::new(method, sys, t0, y0, t_end, options)?;
    if it.control() == StepControl::ToTargets {
        return Err(SolveError::Unsupported {
            method: method.name(),
            what: "locate events without Options::fixed_step",
        });
    }
    locate(&mut it, sys, &mut g, direction, t_tol)
}

fn locate<T, S, G>(
    st: &mut Integrator<T>,
    sys: &mut S,
    g: &mut G,
    direction: EventDirection,
    t_tol: T,
) -> Result<Event<T>, SolveError>
where
    T: Real,
    S: OdeSystem<T> + ?Sized,
    G: FnMut(T, &[T]) -> T,
{
    let n = st.y().len();
    let mut buf = vec![T::zero(); n];
    let mut g_prev = g(st.t(), st.y());
    let crosses = |a: T, b: T| -> bool {
        let rising = a < T::zero() && b >= T::zero();
        let falling = a > T::zero() && b <= T::zero();
        match direction {
            EventDirection::Either => rising || falling,
            EventDirection::Rising => rising,
            EventDirection::Falling => falling,
        }
    };
    while !st.is_done() {
        let t_prev = st.t();
        st.advance(sys, st.t_end())?;
        let t_new = st.t();
        let g_new = g(t_new, st.y());
        if crosses(g_prev, g_new) {
            // Illinois method on [t_prev, t_new] with the dense output.
            let (mut a, mut ga, mut b, mut gb) = (t_prev, g_prev, t_new, g_new);
            let tol = if t_tol > T::zero() {
                t_tol
            } else {
                c::<T>(100.0) * T::epsilon() * t_new.abs().max((t_new - t_prev).abs())
            };
            let mut side = 0i8;
            for _ in 0..200 {
                if (b - a).abs() <= tol || gb == T::zero() {
                    break;
                }
                let mut m = (a * gb - b * ga) / (gb - ga);
                if !m.is_finite() || (m - a) * (m - b) > T::zero() {
                    m = c::<T>(0.5) * (a + b);
                }
                st.interpolate(sys, m, &mut buf)?;
                let gm = g(m, &buf);
                if gm == T::zero() {
                    // An exact root.
                    b = m;
                    break;
                }
                if (gm < T::zero()) == (gb < T::zero()) {
                    b = m;
                    gb = gm;
                    if side == -1 {
                        ga *= c(0.5);
                    }
                    side = -1;
                } else {
                    a = m;
                    ga = gm;
                    if side == 1 {
                        gb *= c(0.5);
                    }
                    side = 1;
                }
            }
            st.interpolate(sys, b, &mut buf)?;
            return Ok(Event {
                t: b,
                y: buf,
                found: true,
                stats: st.stats(),
            });
        }
        g_prev = g_new;
    }
    Ok(Event {
        t: st.t(),
        y: st.y().to_vec(),
        found: false,
        stats: st.stats(),
    })
}
