//! The float abstraction: [`Real`] is implemented for `f32` and `f64`.

use core::fmt::{Debug, Display};
use core::iter::Sum;

/// A real scalar the integrators run on (`f32` or `f64`).
///
/// It is `num_traits::Float` plus a lossless-enough conversion from the `f64`
/// constants the tableaux are written in, and back to `f64` for error messages.
pub trait Real:
    num_traits::Float + num_traits::NumAssign + Sum + Debug + Display + Default + Send + Sync + 'static
{
    /// Converts an `f64` constant (a tableau coefficient, a default tolerance).
    fn from_f64_const(x: f64) -> Self;
    /// Converts to `f64` (for error messages and statistics).
    fn to_f64_lossy(self) -> f64;
    /// `self` unchanged, as a value the optimiser must treat as unknown, held in a register.
    ///
    /// The solver reads back each derivative component a right-hand side has just stored
    /// through it: the compiler then cannot merge neighbouring components into one vector
    /// load, which, spanning several pending scalar stores, would wait for them to reach the
    /// cache (a store-forwarding stall) instead of taking them from the store queue. The
    /// identity where there is no such barrier (the default, and off x86-64).
    #[inline(always)]
    fn opaque(self) -> Self {
        self
    }
}

/// [`Real::opaque`] as an empty `asm!` block on an `xmm` register (x86-64).
macro_rules! opaque_in_register {
    () => {
        #[inline(always)]
        fn opaque(mut self) -> Self {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: an empty instruction sequence; the value stays in its register.
            unsafe {
                core::arch::asm!(
                    "/* {0} */",
                    inout(xmm_reg) self,
                    options(pure, nomem, nostack, preserves_flags)
                );
            }
            self
        }
    };
}

impl Real for f64 {
    opaque_in_register!();
    #[inline(always)]
    fn from_f64_const(x: f64) -> Self {
        x
    }
    #[inline(always)]
    fn to_f64_lossy(self) -> f64 {
        self
    }
}

impl Real for f32 {
    opaque_in_register!();
    #[inline(always)]
    fn from_f64_const(x: f64) -> Self {
        x as f32
    }
    #[inline(always)]
    fn to_f64_lossy(self) -> f64 {
        f64::from(self)
    }
}

/// Shorthand for [`Real::from_f64_const`].
#[inline(always)]
pub(crate) fn c<T: Real>(x: f64) -> T {
    T::from_f64_const(x)
}
