//! Seal and open must not allocate: they run per packet on the data path.
//!
//! A counting global allocator records allocations made by this thread
//! while `COUNTING` is set; other test-harness threads are not counted.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use net_crypto::{AeadKey, Backend, TAG_LEN};

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged, so `System`'s guarantees carry over; the counter only touches
// const-initialised thread-locals, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.with(|n| n.set(n.get() + 1));
        }
        // SAFETY: forwarded unchanged; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.with(|n| n.set(n.get() + 1));
        }
        // SAFETY: forwarded unchanged; the caller upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations this thread makes while running `f`.
fn allocations_during(f: impl FnOnce()) -> usize {
    ALLOCATIONS.with(|n| n.set(0));
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCATIONS.with(Cell::get)
}

#[test]
fn seal_and_open_do_not_allocate() {
    assert_eq!(
        allocations_during(|| drop(vec![0u8; 8])),
        1,
        "counter works"
    );
    for &backend in Backend::available() {
        let key = AeadKey::new(backend, &[3; 32]);
        for len in [0usize, 32, 1024, 8192] {
            let mut buf = vec![0x5a; len + TAG_LEN];
            let n = allocations_during(|| {
                for counter in 0..4 {
                    let sealed = key.seal_in_place(counter, b"aad", &mut buf, len).unwrap();
                    let opened = key
                        .open_in_place(counter, b"aad", &mut buf[..sealed])
                        .unwrap();
                    assert_eq!(opened, len);
                }
            });
            assert_eq!(n, 0, "{backend} len {len}");
        }
    }
}
