//! Shared plumbing: sub-networks whose parameters sit contiguously in the model's flat
//! store (so that an ODE block gets only its own slice `θ_f` and its adjoint integrates
//! only `∂L/∂θ_f`), and one ODE block per number of rows met.

use adjoint::{GradientMode, Method, Options};
use autodiff::nn::ParamStore;
use autodiff::{Float, Tape, Var};

use crate::{ModelsError, OdeBlock};

/// A boxed ODE-block field `f(tape, t, z, θ)`.
pub type BoxField<T> =
    Box<dyn for<'t> FnMut(&'t Tape<T>, Var<'t, T>, Var<'t, T>, Var<'t, T>) -> Var<'t, T> + Send>;

/// Boxes a field (the call site gives the closure its higher-ranked signature).
pub fn boxed<T: Float, F>(f: F) -> BoxField<T>
where
    F: for<'t> FnMut(&'t Tape<T>, Var<'t, T>, Var<'t, T>, Var<'t, T>) -> Var<'t, T>
        + Send
        + 'static,
{
    Box::new(f)
}

/// Builds networks with `build` in a fresh store (so their views start at 0) and appends
/// its tensors to `store` under the same names; returns what `build` returned and the
/// `(offset, len)` of the appended range. The values equal those `build` would get in
/// `store` directly (initialisation depends only on the seed and the name).
pub fn sub_network<T: Float, X>(
    store: &mut ParamStore<T>,
    build: impl FnOnce(&mut ParamStore<T>) -> Result<X, autodiff::Error>,
) -> Result<(X, usize, usize), ModelsError> {
    let mut sub = ParamStore::<T>::new(store.seed());
    let x = build(&mut sub)?;
    let offset = store.n_params();
    for p in sub.params() {
        let values = p.view.slice(sub.as_slice()).unwrap_or(&[]);
        store.insert(&p.name, p.view.shape().dims(), values)?;
    }
    Ok((x, offset, sub.n_params()))
}

/// ODE blocks over one field, one per number of rows (batch sizes differ between
/// batches and with the number of posterior samples), with shared solver settings, and
/// a count of the field evaluations of forward solves.
pub struct BlockCache<T: Float> {
    make: Box<dyn Fn() -> BoxField<T> + Send>,
    width: usize,
    n_params: usize,
    method: Method,
    options: Options<T>,
    mode: GradientMode<T>,
    blocks: Vec<(usize, OdeBlock<T, BoxField<T>>)>,
    last: Option<usize>,
    nfe: usize,
}

impl<T: Float> std::fmt::Debug for BlockCache<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockCache")
            .field("width", &self.width)
            .field("n_params", &self.n_params)
            .field("method", &self.method)
            .finish_non_exhaustive()
    }
}

impl<T: Float> BlockCache<T> {
    /// Blocks for states `[rows, width]` with fields made by `make` (`n_params`
    /// parameters), solved by `method` / `options`, gradients by `mode`.
    pub fn new(
        width: usize,
        n_params: usize,
        method: Method,
        options: Options<T>,
        mode: GradientMode<T>,
        make: Box<dyn Fn() -> BoxField<T> + Send>,
    ) -> Self {
        Self {
            make,
            width,
            n_params,
            method,
            options,
            mode,
            blocks: Vec::new(),
            last: None,
            nfe: 0,
        }
    }

    /// Sets the gradient mode (of every block).
    pub fn set_mode(&mut self, mode: GradientMode<T>) {
        for (_, b) in &mut self.blocks {
            b.set_mode(mode.clone());
        }
        self.mode = mode;
    }

    /// Sets the forward solver (drops the blocks built so far).
    pub fn set_solver(&mut self, method: Method, options: Options<T>) {
        self.method = method;
        self.options = options;
        self.blocks.clear();
        self.last = None;
    }

    /// The gradient mode.
    pub fn mode(&self) -> &GradientMode<T> {
        &self.mode
    }

    /// Field evaluations of all forward solves since the last [`take_nfe`](Self::take_nfe).
    pub fn take_nfe(&mut self) -> usize {
        std::mem::take(&mut self.nfe)
    }

    /// The solver counts of the block used last (after a backward pass they include its
    /// backward evaluations and VJPs), `None` before the first solve.
    pub fn last_stats(&self) -> Option<adjoint::GradStats> {
        self.last.map(|i| self.blocks[i].1.stats())
    }

    /// Solves from `z0` (`[rows, width]`) with parameters `theta` to the times `ts`
    /// (`[n]`): the block's output `[n, rows, width]`.
    pub fn apply<'t>(
        &mut self,
        z0: Var<'t, T>,
        theta: Var<'t, T>,
        ts: Var<'t, T>,
    ) -> Result<Var<'t, T>, ModelsError> {
        let rows = z0.shape().dim(0);
        let idx = match self.blocks.iter().position(|(r, _)| *r == rows) {
            Some(i) => i,
            None => {
                let block = OdeBlock::new(&[rows, self.width], self.n_params, (self.make)())?
                    .with_solver(self.method, self.options.clone())
                    .with_mode(self.mode.clone());
                self.blocks.push((rows, block));
                self.blocks.len() - 1
            }
        };
        self.last = Some(idx);
        let block = &self.blocks[idx].1;
        let out = block.apply(z0, theta, ts);
        self.nfe += block.stats().forward.nfe;
        Ok(out)
    }
}
