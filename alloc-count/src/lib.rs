//! Counting heap allocations for the workspace's "no allocation after warm-up" tests.
//!
//! Install [`Counting`] as the test binary's global allocator, then measure a closure
//! with [`allocations_in`]:
//!
//! ```
//! #[global_allocator]
//! static GLOBAL: alloc_count::Counting = alloc_count::Counting;
//!
//! fn main() {
//!     let mut buffer = Vec::with_capacity(64); // warm-up: the one allocation
//!     let (_, n) = alloc_count::allocations_in(|| {
//!         buffer.clear();
//!         buffer.extend((0..64).map(|i| i as f64));
//!     });
//!     assert_eq!(n, 0);
//! }
//! ```
//!
//! Only allocations made **by the calling thread** while the closure runs are counted.
//! A process-wide counter also sees the test harness's own main thread (which
//! allocates its bookkeeping right after spawning the test thread, whenever the
//! scheduler gets to it), and on a loaded machine those allocations land inside the
//! measured window: the workspace's code under test is single-threaded, so the
//! calling thread is the right scope. [`allocations_in`] checks that [`Counting`] is
//! installed (a counter that never counts would make every test pass).
//!
//! [`Counting`] also tracks the bytes held **by the whole process**: [`current_bytes`]
//! and the high-water mark [`peak_bytes`] since the last [`reset_peak`] (all threads;
//! what a program reports as "peak memory of a phase": reset, run the phase, read the
//! peak and subtract the level the phase started from).
#![warn(missing_docs)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grow(bytes: usize) {
    let now = CURRENT.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

fn shrink(bytes: usize) {
    CURRENT.fetch_sub(bytes, Ordering::Relaxed);
}

/// Bytes currently allocated through [`Counting`] by all threads (0 if it is not the
/// global allocator).
pub fn current_bytes() -> usize {
    CURRENT.load(Ordering::Relaxed)
}

/// The largest [`current_bytes`] since the last [`reset_peak`] (or the start).
pub fn peak_bytes() -> usize {
    PEAK.load(Ordering::Relaxed)
}

/// Sets the high-water mark to the current level and returns that level.
pub fn reset_peak() -> usize {
    let now = CURRENT.load(Ordering::Relaxed);
    PEAK.store(now, Ordering::Relaxed);
    now
}

thread_local! {
    // `const` thread-locals without destructors: reading them never allocates and
    // works at any point of a thread's life, as an allocator requires.
    static ACTIVE: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<usize> = const { Cell::new(0) };
}

fn note() {
    let _ = ACTIVE.try_with(|active| {
        if active.get() {
            let _ = COUNT.try_with(|c| c.set(c.get() + 1));
        }
    });
}

/// The system allocator, counting `alloc`, `alloc_zeroed` and `realloc` calls made by
/// a thread inside [`allocations_in`], and the bytes held by the process
/// ([`current_bytes`], [`peak_bytes`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Counting;

// SAFETY: every call is forwarded unchanged to the system allocator; counting only
// touches destructor-free thread-locals, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: the caller's contract, forwarded.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grow(layout.size());
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: the caller's contract, forwarded.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grow(layout.size());
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        shrink(layout.size());
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: the caller's contract, forwarded.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            shrink(layout.size());
            grow(new_size);
        }
        p
    }
}

/// Runs `f` and returns its result with the number of heap allocations (including
/// reallocations) the calling thread made meanwhile.
///
/// # Panics
/// If [`Counting`] is not the global allocator (checked with one probe allocation),
/// or if called from inside another `allocations_in` on the same thread.
pub fn allocations_in<R>(f: impl FnOnce() -> R) -> (R, usize) {
    assert!(
        !ACTIVE.with(Cell::get),
        "alloc_count::allocations_in does not nest"
    );
    COUNT.with(|c| c.set(0));
    ACTIVE.with(|a| a.set(true));
    let probe = std::hint::black_box(Box::new(0u64));
    drop(probe);
    let probed = COUNT.with(Cell::get);
    let out = f();
    ACTIVE.with(|a| a.set(false));
    let n = COUNT.with(Cell::get);
    assert!(
        probed == 1,
        "install `alloc_count::Counting` as the #[global_allocator] of this test binary"
    );
    (out, n - probed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[global_allocator]
    static GLOBAL: Counting = Counting;

    #[test]
    fn counts_allocations_and_reallocations() {
        let ((), zero) = allocations_in(|| {
            let mut x = [0u64; 4];
            std::hint::black_box(&mut x);
        });
        assert_eq!(zero, 0);
        let (_, one) = allocations_in(|| std::hint::black_box(Box::new(1u32)));
        assert_eq!(one, 1);
        let (_, two) = allocations_in(|| {
            let mut v: Vec<u8> = std::hint::black_box(Vec::with_capacity(10));
            v.reserve_exact(100);
            v
        });
        assert_eq!(two, 2);
    }

    #[test]
    fn peak_bytes_tracks_the_high_water_mark() {
        reset_peak();
        let big = std::hint::black_box(vec![0u8; 1 << 20]);
        // Other test threads allocate and free meanwhile: compare with a level read while
        // `big` is held, never with one read before it.
        let during = current_bytes();
        assert!(during >= 1 << 20, "{during} bytes held while holding 1 MiB");
        assert!(peak_bytes() >= during);
        drop(big);
    }

    #[test]
    fn other_threads_are_not_counted() {
        use std::sync::{Arc, Barrier};
        let (start, done) = (Arc::new(Barrier::new(2)), Arc::new(Barrier::new(2)));
        let (s, d) = (start.clone(), done.clone());
        let worker = std::thread::spawn(move || {
            s.wait();
            let v: Vec<Vec<u8>> = (0..100).map(|i| vec![0; i + 1]).collect();
            std::hint::black_box(v);
            d.wait();
        });
        let ((), n) = allocations_in(|| {
            start.wait();
            done.wait();
        });
        worker.join().unwrap();
        assert_eq!(n, 0);
    }
}
