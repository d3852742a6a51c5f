//! Tensor shapes: up to four dimensions, row-major.

use crate::Error;
use std::fmt;

/// The shape of a dense row-major tensor with at most four dimensions
/// (batch, channels, height, width). Rank 0 is a scalar (one element).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Shape {
    dims: [usize; 4],
    rank: usize,
}

impl Shape {
    /// Largest supported rank.
    pub const MAX_RANK: usize = 4;

    /// A shape from its dimensions; errors if there are more than four.
    pub fn new(dims: &[usize]) -> Result<Self, Error> {
        if dims.len() > 4 {
            return Err(Error::RankTooLarge { rank: dims.len() });
        }
        let mut d = [1usize; 4];
        d[..dims.len()].copy_from_slice(dims);
        Ok(Self {
            dims: d,
            rank: dims.len(),
        })
    }

    /// The rank-0 (scalar) shape.
    pub const fn scalar() -> Self {
        Self {
            dims: [1; 4],
            rank: 0,
        }
    }

    /// The dimensions.
    pub fn dims(&self) -> &[usize] {
        &self.dims[..self.rank]
    }

    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Number of elements (1 for a scalar).
    pub fn len(&self) -> usize {
        self.dims[..self.rank].iter().product()
    }

    /// True if the tensor has no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Size along `axis` (1 beyond the rank).
    pub fn dim(&self, axis: usize) -> usize {
        if axis < self.rank { self.dims[axis] } else { 1 }
    }

    /// Dimensions right-aligned in four slots, padded with leading 1s (for broadcasting).
    pub(crate) fn padded(&self) -> [usize; 4] {
        let mut p = [1usize; 4];
        p[4 - self.rank..].copy_from_slice(&self.dims[..self.rank]);
        p
    }

    /// Product of the dimensions before `axis`, the dimension, and the product after it.
    pub(crate) fn split_at_axis(&self, axis: usize) -> (usize, usize, usize) {
        let outer = self.dims[..axis].iter().product();
        let inner = self.dims[axis + 1..self.rank].iter().product();
        (outer, self.dims[axis], inner)
    }

    /// Copy with dimension `axis` set to `n`.
    pub(crate) fn with_dim(mut self, axis: usize, n: usize) -> Self {
        self.dims[axis] = n;
        self
    }

    /// Copy without dimension `axis`.
    pub(crate) fn without_axis(&self, axis: usize) -> Self {
        let mut d = [1usize; 4];
        let mut r = 0;
        for a in 0..self.rank {
            if a != axis {
                d[r] = self.dims[a];
                r += 1;
            }
        }
        Self { dims: d, rank: r }
    }

    /// Shape from padded dims with the given rank.
    pub(crate) fn from_padded(p: [usize; 4], rank: usize) -> Self {
        let mut d = [1usize; 4];
        d[..rank].copy_from_slice(&p[4 - rank..]);
        Self { dims: d, rank }
    }
}

impl fmt::Debug for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.dims())
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.dims())
    }
}
