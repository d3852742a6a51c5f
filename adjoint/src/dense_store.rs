//! Dense output of many accepted steps in flat storage (the checkpointed adjoint's record
//! of the forward trajectory).

use ode_solvers::DenseStep;

use crate::Real;

/// Dense output of many steps in flat storage, reused across calls (no allocation per
/// stored step once warm). Each step's interpolant, a polynomial of degree `m − 1` in
/// `θ = (t − t₀)/h` (`m` = its number of coefficient vectors), is kept as its values at the
/// `m` Chebyshev–Lobatto points of `[0, 1]` and evaluated by barycentric interpolation,
/// which reproduces the polynomial up to rounding.
#[derive(Debug, Clone, Default)]
pub(crate) struct DenseStore<T> {
    n: usize,
    t0: Vec<T>,
    t1: Vec<T>,
    m: Vec<usize>,
    off: Vec<usize>,
    vals: Vec<T>,
    /// Nodes and barycentric weights per `m`.
    nodes: Vec<(Vec<T>, Vec<T>)>,
}

impl<T: Real> DenseStore<T> {
    /// Empties the store for states of length `n` (capacity kept).
    pub(crate) fn clear(&mut self, n: usize) {
        self.n = n;
        self.t0.clear();
        self.t1.clear();
        self.m.clear();
        self.off.clear();
        self.vals.clear();
    }

    /// Number of stored steps.
    pub(crate) fn len(&self) -> usize {
        self.t0.len()
    }

    /// Bytes held by steps `lo..hi`.
    pub(crate) fn bytes(&self, lo: usize, hi: usize) -> usize {
        let vals = if hi > lo {
            self.off.get(hi).copied().unwrap_or(self.vals.len()) - self.off[lo]
        } else {
            0
        };
        (vals + 2 * (hi - lo)) * core::mem::size_of::<T>() + 2 * (hi - lo) * 8
    }

    /// The (signed) size of step `k`.
    pub(crate) fn h(&self, k: usize) -> T {
        self.t1[k] - self.t0[k]
    }

    fn nodes_for(&mut self, m: usize) {
        while self.nodes.len() <= m {
            let k = self.nodes.len();
            let (x, w) = if k < 2 {
                (vec![T::zero(); k], vec![T::one(); k])
            } else {
                let x: Vec<T> = (0..k)
                    .map(|j| {
                        let c = (core::f64::consts::PI * j as f64 / (k - 1) as f64).cos();
                        T::from_f64_const(0.5 * (1.0 - c))
                    })
                    .collect();
                let w: Vec<T> = (0..k)
                    .map(|j| {
                        let s = if j % 2 == 0 { 1.0 } else { -1.0 };
                        let h = if j == 0 || j == k - 1 { 0.5 } else { 1.0 };
                        T::from_f64_const(s * h)
                    })
                    .collect();
                (x, w)
            };
            self.nodes.push((x, w));
        }
    }

    /// Appends the interpolant of one step.
    pub(crate) fn push(&mut self, d: &DenseStep<T>) {
        let n = self.n;
        let m = d.n_coeffs().max(2);
        self.nodes_for(m);
        let (t0, h) = (d.t_start(), d.h());
        let start = self.vals.len();
        self.vals.resize(start + m * n, T::zero());
        for k in 0..m {
            let x = self.nodes[m].0[k];
            let t = if k == m - 1 { d.t_end() } else { t0 + x * h };
            d.eval_into(t, &mut self.vals[start + k * n..start + (k + 1) * n]);
        }
        self.t0.push(t0);
        self.t1.push(d.t_end());
        self.m.push(m);
        self.off.push(start);
    }

    /// Index in `lo..hi` of the step containing `t`.
    #[inline]
    pub(crate) fn locate(&self, lo: usize, hi: usize, t: T, forward: bool) -> usize {
        let ends = &self.t1[lo..hi];
        let k = if forward {
            ends.partition_point(|e| *e < t)
        } else {
            ends.partition_point(|e| *e > t)
        };
        lo + k.min(hi - lo - 1)
    }

    /// The interpolant of step `k` at `t` into `out`.
    #[inline]
    pub(crate) fn eval(&self, k: usize, t: T, out: &mut [T]) {
        let n = self.n;
        let m = self.m[k];
        let vals = &self.vals[self.off[k]..self.off[k] + m * n];
        let x = (t - self.t0[k]) / (self.t1[k] - self.t0[k]);
        let (nodes, w) = (&self.nodes[m].0, &self.nodes[m].1);
        if let Some(j) = nodes.iter().position(|xj| *xj == x) {
            out.copy_from_slice(&vals[j * n..(j + 1) * n]);
            return;
        }
        let mut den = T::zero();
        out.fill(T::zero());
        for j in 0..m {
            let c = w[j] / (x - nodes[j]);
            den += c;
            for (o, v) in out.iter_mut().zip(&vals[j * n..(j + 1) * n]) {
                *o += c * *v;
            }
        }
        let inv = T::one() / den;
        for o in out.iter_mut() {
            *o *= inv;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dense_store_locates_and_reproduces_the_interpolant() {
        let mut store = DenseStore::<f64>::default();
        store.clear(2);
        let mut steps = Vec::new();
        for k in 0..4 {
            let mut d = DenseStep::with_capacity(2, 4);
            let t0 = f64::from(k);
            let kk = f64::from(k);
            d.set_hermite(
                t0,
                1.0,
                &[kk, 1.0],
                &[kk + 1.0, -2.0],
                &[0.3, 4.0],
                &[-1.0, 0.5],
            );
            store.push(&d);
            steps.push(d);
        }
        assert_eq!(store.locate(0, 4, 0.0, true), 0);
        assert_eq!(store.locate(0, 4, 1.5, true), 1);
        assert_eq!(store.locate(0, 4, 3.5, true), 3);
        assert_eq!(store.locate(0, 4, 3.0, true), 2); // a shared boundary: the earlier step
        assert_eq!(store.locate(0, 4, 9.0, true), 3);
        assert_eq!(store.locate(1, 3, 0.2, true), 1);
        let (mut a, mut b) = ([0.0; 2], [0.0; 2]);
        for &t in &[0.0, 0.1, 0.77, 1.0, 2.5, 3.999, 4.0] {
            let k = store.locate(0, 4, t, true);
            store.eval(k, t, &mut a);
            steps[k].eval_into(t, &mut b);
            for i in 0..2 {
                assert!((a[i] - b[i]).abs() < 1e-14, "t = {t}: {a:?} vs {b:?}");
            }
        }
        let mut back = DenseStore::<f64>::default();
        back.clear(1);
        for k in 0..3 {
            let mut d = DenseStep::with_capacity(1, 4);
            d.set_hermite(-f64::from(k), -1.0, &[0.0], &[0.0], &[0.0], &[0.0]);
            back.push(&d);
        }
        assert_eq!(back.locate(0, 3, -0.5, false), 0);
        assert_eq!(back.locate(0, 3, -2.5, false), 2);
    }
}
