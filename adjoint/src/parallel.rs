//! [`RowParallel`]: dynamics whose batch rows are split over threads, and
//! [`ParallelTapeDynamics`], the same for a tape field.
//!
//! A Neural ODE on a batch of `B` states solves one ODE on the flat state
//! `z = [z₁; …; z_B]` (the leading axis of the state shape). When the field acts on
//! every row by itself, `f(t, z, θ)ᵦ = g(t, zᵦ, θ)` (an MLP, a convolution over each
//! image, a CNF's field with its per-sample trace), every product the gradient modes
//! need splits by rows too:
//!
//! ```text
//! f(t, z, θ)  = [g(t, z_C₁, θ); …; g(t, z_Cₘ, θ)]           (C₁ … Cₘ: chunks of rows)
//! aᵀ ∂f/∂z    = [a_C₁ᵀ ∂g/∂z_C₁; …; a_Cₘᵀ ∂g/∂z_Cₘ]
//! aᵀ ∂f/∂θ    = Σₖ a_Cₖᵀ ∂g(t, z_Cₖ, θ)/∂θ,     aᵀ ∂f/∂t = Σₖ a_Cₖᵀ ∂g/∂t
//! ∂f/∂z v_z + ∂f/∂θ v_θ = [∂g/∂z_Cₖ v_Cₖ + ∂g/∂θ v_θ]ₖ
//! ```
//!
//! so each chunk runs on its own dynamics on any thread of a rayon pool (for
//! [`ParallelTapeDynamics`] a [`TapeDynamics`] with its own tape and its own clone of the
//! field closure; for [`RowParallel`] whatever row-separable [`Vjp`] the caller's
//! factory makes for a chunk's rows, e.g. a [`crate::TanhMlp`] of that batch), and the θ-
//! and t-gradients are summed
//! over the chunks **in chunk order**. The chunks are fixed by the number of rows alone
//! (never by the number of threads), and each chunk's arithmetic is the same wherever it
//! runs, so every result is **bit-identical for any number of threads** (1, 2, 3, … and
//! the calling thread alone; `tests/parallel.rs` checks it). Against the unchunked
//! dynamics only the order of the sums over rows differs (the `θ`-gradient's
//! products `Xᵀ G` and the `t`-gradient, summed per chunk and then over chunks): a
//! round-off difference of order `ε · Σ|terms|`, measured below `1e-13` relative on the
//! W2 gradient (`tests/parallel.rs`); `eval`, `aᵀ ∂f/∂z` and the JVP are bitwise equal.
//!
//! # Requirements
//!
//! * The rows must be independent: the user asserts it by choosing this type. Ops that
//!   couple the rows of a batch (batch normalisation, a mean over the batch, attention
//!   across samples, a loss inside the field) silently compute something else per
//!   chunk. Group normalisation over each sample's channels is fine.
//! * The closure is cloned once per worker (`F: Clone + Send`, or made by a factory,
//!   [`from_factory`](ParallelTapeDynamics::from_factory)); [`RowParallel::from_rows`]'s
//!   factory is called once per worker and chunk length. What they make must not rely
//!   on shared mutable state.
//!
//! # Chunks and threshold
//!
//! A batch of fewer than `2 × chunk_rows` rows is one chunk: exactly the unchunked
//! dynamics (no thread hop, no copy), so small batches (`B = 16`) are not
//! slower. Larger batches are cut into chunks of [`DEFAULT_CHUNK_ROWS`] rows (the last
//! one shorter), [`with_chunk_rows`](RowParallel::with_chunk_rows) to change
//! it. Besides spreading the work, a chunk keeps the field's activations in cache: for a
//! width-64 MLP one activation of 128 rows is 64 KiB in f64, where a whole batch of 4,096
//! is 2 MiB (an L2 cache) per activation.
//!
//! # Threads
//!
//! [`with_threads`](RowParallel::with_threads) ([`Threads`]): `0` (the default)
//! runs the chunks on the current rayon pool (the global one, all cores unless the program
//! sized it, as the `neuralode --threads` flag does, or the pool the call is
//! [`install`](rayon::ThreadPool::install)ed in), `1` on the calling thread, `n ≥ 2` on a
//! pool of its own; [`set_threads`](RowParallel::set_threads) shares a pool.
//! Workers (a chunk's dynamics each: for a tape field a tape and a closure) are created on first use, at most one per concurrently running chunk,
//! and then reused: evaluations allocate nothing after warm-up, except that a call from
//! outside the pool hands the job to rayon's queue, which allocates one small block
//! every 63 calls. Run the whole solve inside the pool to avoid that too.
//!
//! # Scaling
//!
//! What limits the speed-up on many cores, for a batch of `B` rows in chunks of `c`:
//!
//! * `⌈B / c⌉` chunks are the units of work: with 4,096 rows and 128-row chunks, 32
//!   chunks keep 16 threads busy with at most one chunk of imbalance (a 2-chunk share
//!   each), 32 threads with none to spare; beyond, lower the chunk size (the per-chunk
//!   cost of the tape's bookkeeping and the copy of `θ` grow in relative terms).
//! * The per-chunk `θ`-gradients (`⌈B/c⌉ × P` values) are summed in chunk order, in
//!   parallel over blocks of 1,024 parameters: `O(P B / c)` additions per VJP, small
//!   against the VJP's `O(P B)` work.
//! * The solver's own vector work (stage combinations, error norm, dense output and, in
//!   the backward pass, the adjoint's) over `n = B·d` states stays on the calling
//!   thread: about 40 memory-bound `axpy`s of length `n` per step against the field's
//!   `≈ 2 P B` flops per evaluation (W2: `3.6 × 10⁷` flops and `5 × 10⁵` tanh per
//!   evaluation, 8,192 states). Measured on W2 (the same solve with a near-free field):
//!   about 1 % of the single-thread value + gradient, so it caps the speed-up near
//!   `1 / (0.01 + 0.99/p)`: 14× on 16 threads, 24× on 32. Beyond ~16 threads this is the
//!   next limit (it would need the solver's vector work split as well).
//! * Each parallel call costs one wake-up of the pool (a few µs), paid per evaluation
//!   and per VJP: it dominates once a chunk's work falls to the same order.
//! * Memory bandwidth: each chunk reads `θ` (35 KiB for W2) and its rows; the
//!   activations of a chunk stay in its core's cache.

use std::sync::{Arc, Mutex, PoisonError};

use autodiff::{Float, Tape, Var};
use rayon::prelude::*;

use crate::Real;
use crate::dynamics::{Dynamics, Vjp};
use crate::error::{Error, Result};
use crate::tape_dynamics::TapeDynamics;

/// Rows per chunk by default (see the [module documentation](self)).
pub const DEFAULT_CHUNK_ROWS: usize = 128;

/// Parameters per block of the parallel sum of the chunks' `θ`-gradients.
const REDUCE_BLOCK: usize = 1024;

/// One chunk's share of a parallel call: state, second input, output, `θ`-part,
/// `t`-part, error slot.
type Chunk<'a, T> = (
    &'a [T],
    &'a [T],
    &'a mut [T],
    &'a mut [T],
    &'a mut T,
    &'a mut Option<Error>,
);

/// Where the chunks of a [`RowParallel`] run (cheap to clone: a pool is shared
/// through an `Arc`).
#[derive(Clone, Default)]
pub enum Threads {
    /// The current rayon pool: the pool whose [`install`](rayon::ThreadPool::install) the
    /// call runs in, else rayon's global pool (all cores unless the program sized it, as
    /// the `neuralode --threads` flag does). The default.
    #[default]
    Current,
    /// The calling thread, chunk after chunk.
    Caller,
    /// A given pool.
    Pool(Arc<rayon::ThreadPool>),
}

impl Threads {
    /// `0`: [`Threads::Current`]; `1`: [`Threads::Caller`]; `n ≥ 2`: a new pool of `n`
    /// threads. Errors if the operating system refuses the threads.
    pub fn new(threads: usize) -> Result<Self> {
        Ok(match threads {
            0 => Threads::Current,
            1 => Threads::Caller,
            n => Threads::Pool(Arc::new(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(n)
                    .thread_name(|i| format!("adjoint-rows-{i}"))
                    .build()
                    .map_err(|_| Error::InvalidOption {
                        name: "threads",
                        value: n as f64,
                        reason: "the operating system refused to start that many threads",
                    })?,
            )),
        })
    }

    /// Number of threads the chunks can run on.
    pub fn count(&self) -> usize {
        match self {
            Threads::Current => rayon::current_num_threads(),
            Threads::Caller => 1,
            Threads::Pool(p) => p.current_num_threads(),
        }
    }

    fn install<R: Send>(&self, op: impl FnOnce() -> R + Send) -> R {
        match self {
            Threads::Pool(p) => p.install(op),
            Threads::Current | Threads::Caller => op(),
        }
    }
}

impl core::fmt::Debug for Threads {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Threads::Current => write!(f, "Current({})", self.count()),
            Threads::Caller => write!(f, "Caller"),
            Threads::Pool(p) => write!(f, "Pool({})", p.current_num_threads()),
        }
    }
}

/// One worker: a chunk's dynamics per chunk length met (the full chunks and the shorter
/// last one).
struct Worker<D> {
    full: Option<D>,
    tail: Option<D>,
}

/// Makes the dynamics of one chunk of the given number of rows.
type Maker<D> = Box<dyn Fn(usize) -> Result<D> + Send + Sync>;

/// What every chunk task shares: the idle workers and the chunk factory.
struct Shared<D> {
    idle: Mutex<Vec<Worker<D>>>,
    make: Maker<D>,
    chunk_rows: usize,
}

impl<D> Shared<D> {
    /// Runs `op` on a worker's dynamics for a chunk of `rows` rows (a worker is taken from
    /// the idle list, or made on first use, and given back).
    fn with_worker<R>(&self, rows: usize, op: impl FnOnce(&mut D) -> Result<R>) -> Result<R> {
        let taken = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let mut w = taken.unwrap_or(Worker {
            full: None,
            tail: None,
        });
        let slot = if rows == self.chunk_rows {
            &mut w.full
        } else {
            &mut w.tail
        };
        if slot.is_none() {
            *slot = Some((self.make)(rows)?);
        }
        let res = match slot.as_mut() {
            Some(d) => op(d),
            None => unreachable!("the slot was filled above"),
        };
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(w);
        res
    }
}

/// A [`TapeDynamics`] whose batch rows (the leading axis of the state) are split into
/// fixed chunks evaluated on several threads; results do not depend on the number of
/// threads (see the [module documentation](self) for the maths, the requirements and
/// the scaling limits).
///
/// ```
/// use adjoint::{Dynamics, ParallelTapeDynamics, TapeDynamics};
/// use autodiff::{Tape, Var};
/// // A 2→16→2 tanh MLP acting on each row of a [600, 2] state.
/// const D: usize = 2;
/// const H: usize = 16;
/// fn field<'t>(_: &'t Tape<f64>, _t: Var<'t, f64>, z: Var<'t, f64>, th: Var<'t, f64>) -> Var<'t, f64> {
///     let a = (z.matmul(th.view(0, &[D, H])) + th.view(D * H, &[H])).tanh();
///     a.matmul(th.view(D * H + H, &[H, D])) + th.view(D * H + H + H * D, &[D])
/// }
/// let (batch, p) = (600, D * H + H + H * D + D);
/// let mut par = ParallelTapeDynamics::new(&[batch, D], p, field)?.with_threads(2)?;
/// assert_eq!(par.n_chunks(), 5); // 4 chunks of 128 rows and one of 88
/// let mut serial = TapeDynamics::new(&[batch, D], p, field)?;
/// let theta: Vec<f64> = (0..p).map(|i| 0.1 * ((i * 7 % 11) as f64 - 5.0)).collect();
/// let z: Vec<f64> = (0..batch * D).map(|i| (i as f64 * 0.37).sin()).collect();
/// let (mut a, mut b) = (vec![0.0; batch * D], vec![0.0; batch * D]);
/// par.eval(0.0, &z, &theta, &mut a)?;
/// serial.eval(0.0, &z, &theta, &mut b)?;
/// assert_eq!(a, b); // rows are evaluated alike, chunked or not
/// # Ok::<(), adjoint::Error>(())
/// ```
pub type ParallelTapeDynamics<T, F> = RowParallel<T, TapeDynamics<T, F>>;

/// Row-separable dynamics whose batch rows (the leading axis of the state) are split into
/// fixed chunks, each evaluated by its own dynamics `D` on any thread; results do not
/// depend on the number of threads (see the [module documentation](self) for the maths,
/// the requirements and the scaling limits). [`ParallelTapeDynamics`] is this for a tape
/// field; [`RowParallel::from_rows`] takes any [`Vjp`] through a factory of chunks.
///
/// ```
/// use adjoint::{Dynamics, RowParallel, TanhMlp};
/// // The hand-written 2→32→32→2 tanh MLP on a batch of 600 states, 128-row chunks.
/// let widths = [2, 32, 32, 2];
/// let mut par = RowParallel::from_rows(600, move |rows| TanhMlp::<f64>::new(&widths, rows, false))?
///     .with_threads(2)?;
/// assert_eq!(par.n_chunks(), 5); // 4 chunks of 128 rows and one of 88
/// let mut serial = TanhMlp::<f64>::new(&widths, 600, false)?;
/// let theta = serial.init_params(1, 1.0);
/// let z: Vec<f64> = (0..1200).map(|i| (i as f64 * 0.37).sin()).collect();
/// let (mut a, mut b) = (vec![0.0; 1200], vec![0.0; 1200]);
/// par.eval(0.0, &z, &theta, &mut a)?;
/// serial.eval(0.0, &z, &theta, &mut b)?;
/// assert_eq!(a, b); // rows are evaluated alike, chunked or not
/// # Ok::<(), adjoint::Error>(())
/// ```
pub struct RowParallel<T, D> {
    n_states: usize,
    n_params: usize,
    /// Rows (leading axis) and entries per row.
    rows: usize,
    row_len: usize,
    /// The unchunked dynamics (the one-chunk path).
    whole: D,
    shared: Shared<D>,
    pool: Threads,
    /// Per chunk: its `θ`-gradient, its `t`-gradient and its error.
    theta_parts: Vec<T>,
    t_parts: Vec<T>,
    errors: Vec<Option<Error>>,
    /// Output for the products whose `z`- or `θ`-part the caller does not want.
    scratch_z: Vec<T>,
    scratch_theta: Vec<T>,
}

impl<T, D> core::fmt::Debug for RowParallel<T, D> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RowParallel")
            .field("rows", &self.rows)
            .field("row_len", &self.row_len)
            .field("chunk_rows", &self.shared.chunk_rows)
            .field("n_params", &self.n_params)
            .finish_non_exhaustive()
    }
}

impl<T, F> RowParallel<T, TapeDynamics<T, F>>
where
    T: Float,
    F: for<'t> FnMut(&'t Tape<T>, Var<'t, T>, Var<'t, T>, Var<'t, T>) -> Var<'t, T> + Send,
{
    /// Wraps the forward pass `f(tape, t, z, θ)` (as [`TapeDynamics::new`] takes it) for a
    /// state of shape `state_dims` whose leading axis holds independent rows, with
    /// `n_params` parameters, on the current rayon pool and [`DEFAULT_CHUNK_ROWS`] rows
    /// per chunk. Each worker gets a clone of `f`.
    pub fn new(state_dims: &[usize], n_params: usize, f: F) -> Result<Self>
    where
        F: Clone + 'static,
    {
        let proto = Mutex::new(f);
        Self::from_factory(state_dims, n_params, move || {
            proto.lock().unwrap_or_else(PoisonError::into_inner).clone()
        })
    }

    /// As [`new`](Self::new), for a field that cannot be cloned (e.g. a boxed closure):
    /// `make` builds one field per worker (plus one for the single-tape path), each
    /// computing the same function.
    pub fn from_factory(
        state_dims: &[usize],
        n_params: usize,
        make: impl Fn() -> F + Send + Sync + 'static,
    ) -> Result<Self>
    where
        F: 'static,
        T: 'static,
    {
        let dims = state_dims.to_vec();
        let whole = TapeDynamics::new(state_dims, n_params, make())?;
        let rows = state_dims.first().copied().unwrap_or(1);
        Self::from_parts(whole, rows, move |r| {
            // A state without axes is one row: its chunk is the whole state.
            let mut d = dims.clone();
            if let Some(first) = d.first_mut() {
                *first = r;
            }
            TapeDynamics::new(&d, n_params, make())
        })
    }
}

impl<T, D> RowParallel<T, D>
where
    T: Real + Send + Sync,
    D: Vjp<T> + Send,
{
    /// Row-separable dynamics over `rows` rows, split into chunks of
    /// [`DEFAULT_CHUNK_ROWS`] rows on the current rayon pool: `make(r)` builds the
    /// dynamics of `r` rows (called for the whole batch, then once per worker and chunk
    /// length). Every `make(r)` must compute the same function of each row and share the
    /// parameters; its state length must be a multiple of `r`.
    pub fn from_rows(
        rows: usize,
        make: impl Fn(usize) -> Result<D> + Send + Sync + 'static,
    ) -> Result<Self> {
        let whole = make(rows)?;
        Self::from_parts(whole, rows, make)
    }

    fn from_parts(
        whole: D,
        rows: usize,
        make: impl Fn(usize) -> Result<D> + Send + Sync + 'static,
    ) -> Result<Self> {
        let n_states = whole.n_states();
        let n_params = whole.n_params();
        let row_len = n_states.checked_div(rows).unwrap_or(0);
        if row_len * rows != n_states {
            return Err(Error::LengthMismatch {
                what: "state of a RowParallel's dynamics (a multiple of its rows)",
                expected: row_len * rows,
                found: n_states,
            });
        }
        let mut me = RowParallel {
            n_states,
            n_params,
            rows,
            row_len,
            whole,
            shared: Shared {
                idle: Mutex::new(Vec::new()),
                make: Box::new(make),
                chunk_rows: DEFAULT_CHUNK_ROWS,
            },
            pool: Threads::Current,
            theta_parts: Vec::new(),
            t_parts: Vec::new(),
            errors: Vec::new(),
            scratch_z: vec![T::zero(); n_states],
            scratch_theta: vec![T::zero(); n_params],
        };
        me.set_chunk_rows(DEFAULT_CHUNK_ROWS)?;
        Ok(me)
    }

    /// Sets the rows per chunk (at least 1; builder form). A batch of fewer than twice
    /// that many rows runs as one chunk (the unchunked dynamics). Results depend on this
    /// value (the order of the `θ`-gradient's sums), never on the threads.
    pub fn with_chunk_rows(mut self, chunk_rows: usize) -> Result<Self> {
        self.set_chunk_rows(chunk_rows)?;
        Ok(self)
    }

    fn set_chunk_rows(&mut self, chunk_rows: usize) -> Result<()> {
        if chunk_rows == 0 {
            return Err(Error::InvalidOption {
                name: "chunk_rows",
                value: 0.0,
                reason: "a chunk holds at least one row",
            });
        }
        // An empty state (no rows or no entries per row) is one chunk as well.
        let chunk = if self.rows < 2 * chunk_rows || self.row_len == 0 {
            self.rows.max(1)
        } else {
            chunk_rows
        };
        let n_chunks = self.rows.div_ceil(chunk).max(1);
        self.shared.chunk_rows = chunk;
        self.shared
            .idle
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.theta_parts = vec![T::zero(); n_chunks * self.n_params];
        self.t_parts = vec![T::zero(); n_chunks];
        self.errors = vec![None; n_chunks];
        Ok(())
    }

    /// Threads (builder form; see [`Threads::new`]): `0` the current rayon pool (the
    /// default), `1` the calling thread only, `n ≥ 2` a pool of `n` threads owned by this
    /// dynamics. Errors if the pool cannot be built.
    pub fn with_threads(mut self, threads: usize) -> Result<Self> {
        self.pool = Threads::new(threads)?;
        Ok(self)
    }

    /// Where the chunks run from now on (e.g. a pool shared with other work).
    pub fn set_threads(&mut self, threads: Threads) {
        self.pool = threads;
    }

    /// Where the chunks run. With a pool of its own ([`Threads::Pool`]), running a whole
    /// solve inside it (`pool.install(|| solver.forward(&mut f, ..))`) hands each
    /// evaluation's chunks to the pool without rayon's queue for outside calls, so that no
    /// evaluation allocates.
    pub fn threads(&self) -> &Threads {
        &self.pool
    }

    /// Number of chunks the batch is cut into (1: the unchunked dynamics).
    pub fn n_chunks(&self) -> usize {
        self.t_parts.len()
    }

    /// Rows per chunk (the batch's row count when it is one chunk).
    pub fn chunk_rows(&self) -> usize {
        self.shared.chunk_rows
    }

    /// Runs `job(dynamics, z, b, out, θ-part, t-part)` on every chunk (in parallel, or in
    /// order on the calling thread) and returns the error of the first failing chunk in
    /// chunk order. `b` is the second state-sized input (`a` or `v_z`).
    fn run_chunks<J>(&mut self, z: &[T], b: &[T], out: &mut [T], job: J) -> Result<()>
    where
        J: Fn(&mut D, &[T], &[T], &mut [T], &mut [T], &mut T) -> Result<()> + Sync,
    {
        let shared = &self.shared;
        let row_len = self.row_len;
        let cl = shared.chunk_rows * row_len;
        // `par_chunks_mut(0)` is refused: with no parameters each part is one unused slot.
        let pl = self.n_params.max(1);
        let p = self.n_params;
        let task = |(z, b, out, th, tp, e): Chunk<'_, T>| {
            let r =
                shared.with_worker(z.len() / row_len, |td| job(td, z, b, out, &mut th[..p], tp));
            *e = r.err();
        };
        let (th, tps, errs) = (&mut self.theta_parts, &mut self.t_parts, &mut self.errors);
        match &self.pool {
            Threads::Caller => z
                .chunks(cl)
                .zip(b.chunks(cl))
                .zip(out.chunks_mut(cl))
                .zip(th.chunks_mut(pl))
                .zip(tps.iter_mut())
                .zip(errs.iter_mut())
                .for_each(|(((((z, b), o), th), tp), e)| task((z, b, o, th, tp, e))),
            pool => pool.install(|| {
                (
                    z.par_chunks(cl),
                    b.par_chunks(cl),
                    out.par_chunks_mut(cl),
                    th.par_chunks_mut(pl),
                    tps.par_iter_mut(),
                    errs.par_iter_mut(),
                )
                    .into_par_iter()
                    .for_each(task)
            }),
        }
        match self.errors.iter_mut().find_map(Option::take) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Writes the chunk-order sum of the `θ`-parts into `out_theta` (in parallel over
    /// blocks of parameters: each entry is still summed in chunk order); returns the
    /// chunk-order sum of the `t`-parts.
    fn reduce(threads: &Threads, theta_parts: &[T], t_parts: &[T], out_theta: &mut [T]) -> T {
        let p = out_theta.len();
        let pl = p.max(1);
        let sum_block = |(k, o): (usize, &mut [T])| {
            let at = k * REDUCE_BLOCK;
            let mut parts = theta_parts.chunks_exact(pl);
            if let Some(first) = parts.next() {
                o.copy_from_slice(&first[at..at + o.len()]);
            }
            for part in parts {
                for (o, x) in o.iter_mut().zip(&part[at..]) {
                    *o += *x;
                }
            }
        };
        match threads {
            Threads::Caller => out_theta
                .chunks_mut(REDUCE_BLOCK)
                .enumerate()
                .for_each(sum_block),
            threads => threads.install(|| {
                out_theta
                    .par_chunks_mut(REDUCE_BLOCK)
                    .enumerate()
                    .for_each(sum_block)
            }),
        }
        let mut gt = T::zero();
        for &x in t_parts {
            gt += x;
        }
        gt
    }

    fn check_lengths(&self, z: &[T], theta: &[T], other: &[T], what: &'static str) -> Result<()> {
        for (len, expected, what) in [
            (
                z.len(),
                self.n_states,
                "state z of the row-parallel dynamics",
            ),
            (
                theta.len(),
                self.n_params,
                "parameters of the row-parallel dynamics",
            ),
            (other.len(), self.n_states, what),
        ] {
            if len != expected {
                return Err(Error::LengthMismatch {
                    what,
                    expected,
                    found: len,
                });
            }
        }
        Ok(())
    }

    fn vjp_chunks(
        &mut self,
        t: T,
        z: &[T],
        theta: &[T],
        a: &[T],
        out_z: Option<&mut [T]>,
        out_theta: Option<&mut [T]>,
    ) -> Result<T> {
        self.check_lengths(z, theta, a, "adjoint a of the row-parallel dynamics")?;
        let mut sz = core::mem::take(&mut self.scratch_z);
        let mut sth = core::mem::take(&mut self.scratch_theta);
        let res = self.vjp_into(
            t,
            z,
            theta,
            a,
            out_z.unwrap_or(&mut sz),
            out_theta.unwrap_or(&mut sth),
        );
        self.scratch_z = sz;
        self.scratch_theta = sth;
        res
    }

    fn vjp_into(
        &mut self,
        t: T,
        z: &[T],
        theta: &[T],
        a: &[T],
        out_z: &mut [T],
        out_theta: &mut [T],
    ) -> Result<T> {
        if out_z.len() != self.n_states || out_theta.len() != self.n_params {
            return Err(Error::LengthMismatch {
                what: "output of a row-parallel VJP (z part, then θ part)",
                expected: if out_z.len() != self.n_states {
                    self.n_states
                } else {
                    self.n_params
                },
                found: if out_z.len() != self.n_states {
                    out_z.len()
                } else {
                    out_theta.len()
                },
            });
        }
        if self.n_chunks() == 1 {
            return self.whole.vjp(t, z, theta, a, out_z, out_theta);
        }
        self.run_chunks(z, a, out_z, |td, z, a, oz, oth, tp| {
            *tp = td.vjp(t, z, theta, a, oz, oth)?;
            Ok(())
        })?;
        Ok(Self::reduce(
            &self.pool,
            &self.theta_parts,
            &self.t_parts,
            out_theta,
        ))
    }
}

impl<T, D> Dynamics<T> for RowParallel<T, D>
where
    T: Real + Send + Sync,
    D: Vjp<T> + Send,
{
    fn n_states(&self) -> usize {
        self.n_states
    }
    fn n_params(&self) -> usize {
        self.n_params
    }
    fn eval(&mut self, t: T, z: &[T], theta: &[T], out: &mut [T]) -> Result<()> {
        if self.n_chunks() == 1 {
            return self.whole.eval(t, z, theta, out);
        }
        self.check_lengths(z, theta, out, "output of the row-parallel dynamics")?;
        self.run_chunks(z, z, out, |td, z, _, o, _, _| td.eval(t, z, theta, o))
    }
}

impl<T, D> Vjp<T> for RowParallel<T, D>
where
    T: Real + Send + Sync,
    D: Vjp<T> + Send,
{
    fn vjp_z(&mut self, t: T, z: &[T], theta: &[T], a: &[T], out: &mut [T]) -> Result<()> {
        self.vjp_chunks(t, z, theta, a, Some(out), None).map(|_| ())
    }
    fn vjp_theta(&mut self, t: T, z: &[T], theta: &[T], a: &[T], out: &mut [T]) -> Result<()> {
        self.vjp_chunks(t, z, theta, a, None, Some(out)).map(|_| ())
    }
    fn vjp_t(&mut self, t: T, z: &[T], theta: &[T], a: &[T]) -> Result<T> {
        self.vjp_chunks(t, z, theta, a, None, None)
    }
    fn vjp(
        &mut self,
        t: T,
        z: &[T],
        theta: &[T],
        a: &[T],
        out_z: &mut [T],
        out_theta: &mut [T],
    ) -> Result<T> {
        self.vjp_chunks(t, z, theta, a, Some(out_z), Some(out_theta))
    }
    /// The unchunked dynamics' residuals when the batch is one chunk (then every call
    /// goes to it); none otherwise (the direct mode then recomputes each VJP's forward).
    fn residual_len(&self) -> usize {
        if self.n_chunks() == 1 {
            self.whole.residual_len()
        } else {
            0
        }
    }
    fn eval_saving(
        &mut self,
        t: T,
        z: &[T],
        theta: &[T],
        out: &mut [T],
        res: &mut [T],
    ) -> Result<()> {
        if self.n_chunks() == 1 {
            return self.whole.eval_saving(t, z, theta, out, res);
        }
        self.eval(t, z, theta, out)
    }
    fn vjp_saved(
        &mut self,
        t: T,
        z: &[T],
        theta: &[T],
        res: &[T],
        a: &[T],
        out_z: &mut [T],
        out_theta: &mut [T],
    ) -> Result<T> {
        if self.n_chunks() == 1 {
            return self.whole.vjp_saved(t, z, theta, res, a, out_z, out_theta);
        }
        self.vjp(t, z, theta, a, out_z, out_theta)
    }
    fn has_jvp(&self) -> bool {
        self.whole.has_jvp()
    }
    /// As the unchunked dynamics (for a tape field: a JVP costs about three reverse
    /// passes).
    fn prefers_jacobians(&self) -> bool {
        self.whole.prefers_jacobians()
    }
    fn jvp(
        &mut self,
        t: T,
        z: &[T],
        theta: &[T],
        v_z: &[T],
        v_theta: &[T],
        out: &mut [T],
    ) -> Result<()> {
        if self.n_chunks() == 1 {
            return self.whole.jvp(t, z, theta, v_z, v_theta, out);
        }
        self.check_lengths(z, theta, v_z, "direction v_z of the row-parallel JVP")?;
        self.check_lengths(z, v_theta, out, "output of the row-parallel JVP")?;
        self.run_chunks(z, v_z, out, |td, z, vz, o, _, _| {
            td.jvp(t, z, theta, vz, v_theta, o)
        })
    }
}
