//! The stage loop of a Runge–Kutta step unrolled at compile time, for the built-in adaptive
//! tableaux (Dopri5, Tsit5, Dop853) on states of up to [`MAX_N`] components.
//!
//! The generic driver reads a tableau's rows at run time, so every stage value makes a round
//! trip through memory: the stage sum stores the argument, the right-hand side loads it and
//! stores its derivative, the next sum loads that. Here the tableau is a compile-time constant
//! and the state length a const parameter, so the loop unrolls into straight-line code: the
//! coefficients become immediates, the stages live in a local array the compiler keeps in
//! registers, and a right-hand side it can inline takes its argument and gives its derivative
//! in registers. On small states the step sequence is latency-bound, and those round trips
//! are on its critical path, so the time outside the right-hand side per evaluation falls.
//! Behind a right-hand side kept out of line the values go through memory again and the call
//! clobbers the vector registers the unrolled code holds: there it is no faster than the
//! generic loop. Measured effect, with the command: `benches/README.md` ("Where the time
//! goes").
//!
//! The sums are [`crate::rk`]'s `combine_fixed`: the same operations in the same order, so
//! results are bit-identical to the generic loop (tested against a copy of each tableau that
//! the dispatch does not recognise).

use seq_macro::seq;

use crate::real::{Real, c};
use crate::system::OdeSystem;
use crate::tableau::{self, Tableau};

/// Longest state the unrolled stage loops are compiled for (the generic loop takes longer
/// ones, where the round trips through memory are a smaller share of a step).
pub(crate) const MAX_N: usize = 8;

/// Most stages of an unrolled tableau (DOP853's 12); the `seq!` bounds below.
const MAX_S: usize = 12;

/// A tableau known at compile time.
trait ConstTableau {
    const TAB: Tableau;
}

struct Dopri5;
struct Tsit5;
struct Dop853;

impl ConstTableau for Dopri5 {
    const TAB: Tableau = tableau::DOPRI5;
}
impl ConstTableau for Tsit5 {
    const TAB: Tableau = tableau::TSIT5;
}
impl ConstTableau for Dop853 {
    const TAB: Tableau = tableau::DOP853;
}

/// Which unrolled stage loop a solve uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unrolled {
    Dopri5,
    Tsit5,
    Dop853,
}

impl Unrolled {
    /// The unrolled loop for `tab` on `n` components, if there is one: `tab` has a built-in
    /// tableau's name and the `a`, `c` and FSAL property the loop is compiled from (the rest
    /// the driver reads from `tab` itself). A user's copy under another name runs the
    /// generic loop. Runs once per stepper set-up (the slices are compared by address
    /// first, by content when that differs).
    pub(crate) fn new(tab: &Tableau, n: usize) -> Option<Self> {
        if n == 0 || n > MAX_N {
            return None;
        }
        let same = |t: &Tableau| {
            let rows = core::ptr::eq(tab.a, t.a) || tab.a == t.a;
            let nodes = core::ptr::eq(tab.c, t.c) || tab.c == t.c;
            tab.name == t.name && tab.stages == t.stages && tab.fsal == t.fsal && rows && nodes
        };
        [
            (&tableau::DOPRI5, Unrolled::Dopri5),
            (&tableau::DOPRI5_SHAMPINE, Unrolled::Dopri5),
            (&tableau::TSIT5, Unrolled::Tsit5),
            (&tableau::DOP853, Unrolled::Dop853),
        ]
        .into_iter()
        .find_map(|(t, u)| same(t).then_some(u))
    }
}

// The helpers below are total (zero, or `MAX_S`, out of range): the `const` blocks of
// stages past a tableau's last one are evaluated too, although their code is never reached.

/// Row `i` of `a` (empty past the last stage).
const fn row(tab: &Tableau, i: usize) -> &'static [f64] {
    if i < tab.a.len() { tab.a[i] } else { &[] }
}

/// `a_ij`, zero outside the stored lower triangle.
const fn coef(tab: &Tableau, i: usize, j: usize) -> f64 {
    let row = row(tab, i);
    if j < row.len() { row[j] } else { 0.0 }
}

/// The node `c_i` (zero past the last stage).
const fn node(tab: &Tableau, i: usize) -> f64 {
    if i < tab.c.len() { tab.c[i] } else { 0.0 }
}

/// Index of the first (`first = true`) or last non-zero of row `i` of `a`; `MAX_S` if none.
const fn nonzero(tab: &Tableau, i: usize, first: bool) -> usize {
    let row = row(tab, i);
    let mut found = MAX_S;
    let mut j = 0;
    while j < row.len() {
        if row[j] != 0.0 && (found == MAX_S || !first) {
            found = j;
        }
        j += 1;
    }
    found
}

/// Stages `1..s` of a step of size `h` from `(t, y)` with stage 0 in `k[..n]`, as the
/// generic loop computes them: stage `i` in `k[i n..(i + 1) n]`, and for FSAL tableaux the
/// last stage's argument (the new state) in `y_new`. `n = y.len()` is the length `u` was
/// made for ([`Unrolled::new`] accepts only `1..=MAX_N`).
pub(crate) fn stages<T: Real, S: OdeSystem<T> + ?Sized>(
    u: Unrolled,
    sys: &mut S,
    t: T,
    h: T,
    y: &[T],
    k: &mut [T],
    y_new: &mut [T],
) {
    // One arm per length `1..=MAX_N`.
    const { assert!(MAX_N == 8) };
    macro_rules! by_len {
        ($m:ty) => {
            seq!(L in 1..=8 {
                match y.len() {
                    #(L => stages_fixed::<$m, T, S, L>(sys, t, h, y, k, y_new),)*
                    n => unreachable!("no unrolled stage loop for {n} components"),
                }
            })
        };
    }
    match u {
        Unrolled::Dopri5 => by_len!(Dopri5),
        Unrolled::Tsit5 => by_len!(Tsit5),
        Unrolled::Dop853 => by_len!(Dop853),
    }
}

/// [`stages`] for tableau `M` and `N` components. Out of line: one call per step, and the
/// right-hand side is inlined here (when the compiler chooses to) rather than into the
/// driver.
// `kl[I]` is stored for the later stages that read it; the lint, run before the `const`
// conditions fold, sees the stores of stages no later stage reads. `seq!` writes `1 * N`.
#[allow(unused_assignments, clippy::identity_op)]
#[inline(never)]
fn stages_fixed<M: ConstTableau, T: Real, S: OdeSystem<T> + ?Sized, const N: usize>(
    sys: &mut S,
    t: T,
    h: T,
    y: &[T],
    k: &mut [T],
    y_new: &mut [T],
) {
    const { assert!(M::TAB.stages <= MAX_S) };
    let k = &mut k[..const { M::TAB.stages } * N];
    let y: [T; N] = core::array::from_fn(|m| y[m]);
    let mut kl = [[T::zero(); N]; MAX_S];
    kl[0] = core::array::from_fn(|m| k[m]);
    seq!(I in 1..12 {
        if const { I < M::TAB.stages } {
            // The stage argument: `(y + Σ_{j<l} (h a_ij) k_j) + (h a_il) k_l`, `l` the
            // newest stage with a non-zero weight (see `rk::combine`).
            let mut arg = y;
            if const { nonzero(&M::TAB, I, false) < MAX_S } {
                let newest = const { nonzero(&M::TAB, I, false) } % MAX_S;
                if const { nonzero(&M::TAB, I, true) < nonzero(&M::TAB, I, false) } {
                    let mut acc = [T::zero(); N];
                    seq!(J in 0..11 {
                        if const { J < nonzero(&M::TAB, I, false) && coef(&M::TAB, I, J) != 0.0 } {
                            let hw = h * c::<T>(const { coef(&M::TAB, I, J) });
                            if const { J == nonzero(&M::TAB, I, true) } {
                                for m in 0..N {
                                    acc[m] = hw * kl[J][m];
                                }
                            } else {
                                for m in 0..N {
                                    acc[m] += hw * kl[J][m];
                                }
                            }
                        }
                    });
                    for m in 0..N {
                        arg[m] += acc[m];
                    }
                }
                let hw = h * c::<T>(const { coef(&M::TAB, I, nonzero(&M::TAB, I, false)) });
                for m in 0..N {
                    arg[m] += hw * kl[newest][m];
                }
            }
            if M::TAB.fsal && I == M::TAB.stages - 1 {
                y_new[..N].copy_from_slice(&arg);
            }
            let ki = &mut k[I * N..(I + 1) * N];
            sys.rhs(t + c::<T>(const { node(&M::TAB, I) }) * h, &arg, ki);
            if const { I + 1 < M::TAB.stages } {
                // Read back one scalar at a time (see `Real::opaque`).
                kl[I] = core::array::from_fn(|m| ki[m].opaque());
            }
        }
    });
}
