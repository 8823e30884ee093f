//! The benchmark's global allocator: `std::alloc::System`, counting per thread (allocation
//! calls and bytes, frees and bytes) in thread-local cells, so a thread reads its own counts
//! with no atomic operation and no thread slows another. Used for allocations per forwarded
//! packet (the forwarder's thread, over its loop) and for heap bytes per participant (the live
//! bytes a thread's allocations and frees add up to across a step, such as dropping an `Sfu`).
//!
//! Counts are of what Rust asks for (`Layout::size`), not of what malloc rounds it up to.

// `GlobalAlloc` is an unsafe trait: this module is the crate's one exception to
// `unsafe_code = "deny"` (crates/bench/Cargo.toml).
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// `System`, counted.
#[derive(Debug)]
pub(crate) struct Counting;

/// One thread's counts since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Allocs {
    /// Calls to allocate (`alloc`, `alloc_zeroed`, `realloc`).
    pub(crate) calls: u64,
    /// Bytes they asked for (a `realloc`: its new size).
    pub(crate) bytes: u64,
    /// Calls to free (`dealloc`; a `realloc` frees its old block too).
    pub(crate) frees: u64,
    /// Bytes freed.
    pub(crate) freed: u64,
}

impl Allocs {
    /// This thread's counts now.
    pub(crate) fn now() -> Self {
        COUNTS
            .try_with(|c| Self {
                calls: c.calls.get(),
                bytes: c.bytes.get(),
                frees: c.frees.get(),
                freed: c.freed.get(),
            })
            .unwrap_or_default()
    }

    /// What happened on this thread since `earlier`.
    pub(crate) fn since(earlier: Self) -> Self {
        let n = Self::now();
        Self {
            calls: n.calls - earlier.calls,
            bytes: n.bytes - earlier.bytes,
            frees: n.frees - earlier.frees,
            freed: n.freed - earlier.freed,
        }
    }

    /// Live bytes added (negative: released) over the interval.
    pub(crate) fn live(&self) -> i64 {
        self.bytes as i64 - self.freed as i64
    }
}

struct Cells {
    calls: Cell<u64>,
    bytes: Cell<u64>,
    frees: Cell<u64>,
    freed: Cell<u64>,
}

thread_local! {
    // Const-initialised and without `Drop`: reading it never allocates nor registers a
    // destructor, so the allocator may use it.
    static COUNTS: Cells = const {
        Cells {
            calls: Cell::new(0),
            bytes: Cell::new(0),
            frees: Cell::new(0),
            freed: Cell::new(0),
        }
    };
}

fn note_alloc(size: usize) {
    let _ = COUNTS.try_with(|c| {
        c.calls.set(c.calls.get() + 1);
        c.bytes.set(c.bytes.get() + size as u64);
    });
}

fn note_free(size: usize) {
    let _ = COUNTS.try_with(|c| {
        c.frees.set(c.frees.get() + 1);
        c.freed.set(c.freed.get() + size as u64);
    });
}

// SAFETY (every method): each forwards its arguments unchanged to `System`, whose contract is
// the caller's; the counting touches only this thread's cells and never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_alloc(layout.size());
        // SAFETY: see the impl.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_alloc(layout.size());
        // SAFETY: see the impl.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note_free(layout.size());
        // SAFETY: see the impl.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_free(layout.size());
        note_alloc(new_size);
        // SAFETY: see the impl.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_sees_its_own_allocations() {
        let before = Allocs::now();
        let v: Vec<u8> = Vec::with_capacity(1000);
        std::hint::black_box(&v);
        let mid = Allocs::since(before);
        assert!(mid.calls >= 1 && mid.bytes >= 1000, "{mid:?}");
        drop(v);
        let after = Allocs::since(before);
        assert!(after.freed >= 1000, "{after:?}");
        // Another thread's allocations are not this thread's.
        let other = Allocs::now();
        std::thread::spawn(|| std::hint::black_box(vec![0u8; 1 << 20]))
            .join()
            .expect("the thread ran");
        assert!(Allocs::since(other).bytes < 1 << 20);
    }
}
