//! Grids and their finite-difference Laplacians: the heated rod (1-D) and the
//! heated plate (2-D) behind one [`Grid`] trait.

use real::Real;

use crate::discrete::FillOrdering;
use sprs::CsMat;

use crate::error::{PdeError, Result};

/// Converts an `f64` constant to the working float type.
#[inline]
pub(crate) fn lit<T: Real>(x: f64) -> T {
    T::from_f64_const(x)
}

/// A uniform grid of interior nodes on the unit interval or square, with
/// homogeneous Dirichlet conditions on the boundary.
///
/// Everything downstream (solve, objective, adjoint, forward sensitivities,
/// finite differences, smoothing, inverse design, scaling) is written once
/// against this trait.
pub trait Grid {
    /// Number of unknowns (interior nodes).
    fn n_unknowns(&self) -> usize;
    /// Spatial dimension `d` (1 for the rod, 2 for the plate).
    fn dimension(&self) -> usize;
    /// Mesh spacing `h`.
    fn spacing(&self) -> f64;
    /// Coordinates of unknown `k` (the second is 0 on the rod).
    fn point(&self, k: usize) -> [f64; 2];
    /// Calls `f(i, j)` once for every pair of neighbouring unknowns `i < j`.
    fn for_each_edge(&self, f: &mut dyn FnMut(usize, usize));
    /// The finite-difference matrix of `−Δ` (second-order, `1/h²` scaling),
    /// symmetric positive definite, in CSC storage with sorted indices.
    fn laplacian<T: Real>(&self) -> CsMat<T>;

    /// The fill-reducing ordering for the Cholesky factor of
    /// [`Grid::laplacian`] (AMD unless a grid knows better).
    fn fill_ordering(&self) -> FillOrdering {
        FillOrdering::Amd
    }

    /// Quadrature weight of one node, `hᵈ`: `∫ f ≈ hᵈ Σₖ f(xₖ)` (see the crate
    /// docs for why this is the trapezoidal rule here).
    fn cell_volume(&self) -> f64 {
        self.spacing().powi(self.dimension() as i32)
    }

    /// Evaluates `f` at every unknown.
    fn sample<T: Real>(&self, f: &dyn Fn([f64; 2]) -> f64) -> Vec<T> {
        (0..self.n_unknowns())
            .map(|k| lit(f(self.point(k))))
            .collect()
    }
}

/// The heated rod: `n` interior nodes `xᵢ = i h`, `h = 1/(n+1)`, on `(0, 1)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rod {
    n: usize,
}

impl Rod {
    /// A rod with `n ≥ 1` interior nodes.
    pub fn new(n: usize) -> Result<Self> {
        if n == 0 {
            return Err(PdeError::Empty { what: "n" });
        }
        if n > (usize::MAX / 4) {
            return Err(PdeError::TooLarge {
                what: "n",
                value: n,
            });
        }
        Ok(Self { n })
    }
}

impl Grid for Rod {
    fn n_unknowns(&self) -> usize {
        self.n
    }
    fn dimension(&self) -> usize {
        1
    }
    fn spacing(&self) -> f64 {
        1.0 / (self.n as f64 + 1.0)
    }
    fn point(&self, k: usize) -> [f64; 2] {
        [(k as f64 + 1.0) * self.spacing(), 0.0]
    }
    /// Tridiagonal: the natural order has no fill and needs no analysis.
    fn fill_ordering(&self) -> FillOrdering {
        FillOrdering::Natural
    }
    fn for_each_edge(&self, f: &mut dyn FnMut(usize, usize)) {
        for i in 1..self.n {
            f(i - 1, i);
        }
    }
    /// `tridiag(−1, 2, −1) / h²`, assembled straight into CSC arrays.
    fn laplacian<T: Real>(&self) -> CsMat<T> {
        let n = self.n;
        let h = self.spacing();
        let d: T = lit(2.0 / (h * h));
        let o: T = lit(-1.0 / (h * h));
        let mut indptr = Vec::with_capacity(n + 1);
        let mut indices = Vec::with_capacity(3 * n);
        let mut data = Vec::with_capacity(3 * n);
        indptr.push(0);
        for j in 0..n {
            if j > 0 {
                indices.push(j - 1);
                data.push(o);
            }
            indices.push(j);
            data.push(d);
            if j + 1 < n {
                indices.push(j + 1);
                data.push(o);
            }
            indptr.push(indices.len());
        }
        CsMat::new_csc((n, n), indptr, indices, data)
    }
}

/// The heated plate: an `m × m` grid of interior nodes on the unit square,
/// `h = 1/(m+1)`, unknown `k = j m + i` at `(x, y) = ((i+1)h, (j+1)h)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plate {
    m: usize,
}

impl Plate {
    /// A plate with `m ≥ 1` interior nodes per side (`m²` unknowns).
    pub fn new(m: usize) -> Result<Self> {
        if m == 0 {
            return Err(PdeError::Empty { what: "m" });
        }
        match m.checked_mul(m) {
            Some(n) if n <= usize::MAX / 8 => Ok(Self { m }),
            _ => Err(PdeError::TooLarge {
                what: "m",
                value: m,
            }),
        }
    }

    /// Nodes per side.
    pub fn side(&self) -> usize {
        self.m
    }
}

impl Grid for Plate {
    fn n_unknowns(&self) -> usize {
        self.m * self.m
    }
    fn dimension(&self) -> usize {
        2
    }
    fn spacing(&self) -> f64 {
        1.0 / (self.m as f64 + 1.0)
    }
    fn point(&self, k: usize) -> [f64; 2] {
        let h = self.spacing();
        [
            ((k % self.m) as f64 + 1.0) * h,
            ((k / self.m) as f64 + 1.0) * h,
        ]
    }
    fn for_each_edge(&self, f: &mut dyn FnMut(usize, usize)) {
        let m = self.m;
        for j in 0..m {
            for i in 0..m {
                let k = j * m + i;
                if i + 1 < m {
                    f(k, k + 1);
                }
                if j + 1 < m {
                    f(k, k + m);
                }
            }
        }
    }
    /// The 5-point stencil `(4u_k − u_{k±1} − u_{k±m}) / h²`, assembled
    /// straight into CSC arrays.
    fn laplacian<T: Real>(&self) -> CsMat<T> {
        let m = self.m;
        let n = m * m;
        let h = self.spacing();
        let d: T = lit(4.0 / (h * h));
        let o: T = lit(-1.0 / (h * h));
        let mut indptr = Vec::with_capacity(n + 1);
        let mut indices = Vec::with_capacity(5 * n);
        let mut data = Vec::with_capacity(5 * n);
        indptr.push(0);
        for k in 0..n {
            let (i, j) = (k % m, k / m);
            if j > 0 {
                indices.push(k - m);
                data.push(o);
            }
            if i > 0 {
                indices.push(k - 1);
                data.push(o);
            }
            indices.push(k);
            data.push(d);
            if i + 1 < m {
                indices.push(k + 1);
                data.push(o);
            }
            if j + 1 < m {
                indices.push(k + m);
                data.push(o);
            }
            indptr.push(indices.len());
        }
        CsMat::new_csc((n, n), indptr, indices, data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The discrete Laplacian is exact on quadratics: −(x(1−x))'' = 2.
    #[test]
    fn rod_laplacian_exact_on_quadratic() {
        let g = Rod::new(9).unwrap();
        let a: CsMat<f64> = g.laplacian();
        let u: Vec<f64> = g.sample(&|p| p[0] * (1.0 - p[0]));
        let mut au = vec![0.0; 9];
        for (j, col) in a.outer_iterator().enumerate() {
            for (i, &v) in col.iter() {
                au[i] += v * u[j];
            }
        }
        for x in au {
            assert!((x - 2.0).abs() < 1e-10, "{x}");
        }
    }

    #[test]
    fn plate_laplacian_exact_on_quadratic() {
        let g = Plate::new(7).unwrap();
        let a: CsMat<f64> = g.laplacian();
        assert_eq!(a.nnz(), 5 * 49 - 4 * 7);
        // Vanishes on the boundary; the 5-point stencil is exact on it.
        let q = |t: f64| t * (1.0 - t);
        let u: Vec<f64> = g.sample(&|p| q(p[0]) * q(p[1]));
        let mut au = vec![0.0; 49];
        for (j, col) in a.outer_iterator().enumerate() {
            for (i, &v) in col.iter() {
                au[i] += v * u[j];
            }
        }
        for (k, x) in au.into_iter().enumerate() {
            let p = g.point(k);
            let exact = 2.0 * (q(p[0]) + q(p[1]));
            assert!((x - exact).abs() < 1e-9, "{x} vs {exact}");
        }
        let mut edges = 0;
        g.for_each_edge(&mut |_, _| edges += 1);
        assert_eq!(edges, 2 * 7 * 6);
    }

    #[test]
    fn empty_grids_are_errors() {
        assert_eq!(Rod::new(0), Err(PdeError::Empty { what: "n" }));
        assert_eq!(Plate::new(0), Err(PdeError::Empty { what: "m" }));
        assert!(matches!(
            Plate::new(usize::MAX),
            Err(PdeError::TooLarge { .. })
        ));
    }
}
