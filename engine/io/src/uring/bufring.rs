//! A provided-buffer ring (`IORING_REGISTER_PBUF_RING`): `entries` receive
//! buffers the kernel picks from for multishot `recvmsg`.
//!
//! The ring itself is an mmap'd, page-aligned array of `io_uring_buf`
//! entries whose first entry's reserved field is the tail the application
//! advances (with a release store) to hand buffers to the kernel. The buffers
//! are one heap slab of `entries * buf_size` bytes; buffer id `bid` is slot
//! `bid` of the slab.

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;

/// See the module docs. Registration and unregistration are the owner's job
/// (it holds the `IoUring`); this type owns the memory.
pub(crate) struct BufRing {
    ring: NonNull<BufRingEntry>,
    map_len: usize,
    entries: u16,
    tail: u16,
    bufs: Vec<u8>,
    buf_size: usize,
    leaked: bool,
}

// SAFETY: the mapping and the slab are owned exclusively by this value; the
// only other party touching them is the kernel, on behalf of the io_uring
// instance owned by the same driver. Nothing is shared between threads.
unsafe impl Send for BufRing {}

impl BufRing {
    /// Maps a ring of `entries` (a power of two ≤ 32768) and allocates the
    /// buffers; all buffers start in the ring once `publish`ed.
    pub(crate) fn new(entries: u16, buf_size: usize) -> io::Result<Self> {
        debug_assert!(entries.is_power_of_two());
        let map_len = entries as usize * std::mem::size_of::<BufRingEntry>();
        // SAFETY: anonymous private mapping, no address hint, no fd: the
        // kernel picks a fresh page-aligned region of `map_len` bytes,
        // zero-filled (a valid all-zero BufRingEntry array).
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ring = NonNull::new(p.cast::<BufRingEntry>())
            .ok_or_else(|| io::Error::other("mmap returned null"))?;
        let mut r = BufRing {
            ring,
            map_len,
            entries,
            tail: 0,
            bufs: vec![0u8; entries as usize * buf_size],
            buf_size,
            leaked: false,
        };
        for bid in 0..entries {
            r.push(bid);
        }
        Ok(r)
    }

    /// The ring address to register.
    pub(crate) fn ring_addr(&self) -> u64 {
        self.ring.as_ptr() as u64
    }

    /// Buffer `bid`'s first `len` bytes (`len` clamped to the buffer).
    pub(crate) fn buf(&self, bid: u16, len: usize) -> &[u8] {
        let start = bid as usize * self.buf_size;
        &self.bufs[start..start + len.min(self.buf_size)]
    }

    /// Bytes `off..off+len` of buffer `bid`, mutable.
    pub(crate) fn buf_mut(&mut self, bid: u16, off: usize, len: usize) -> &mut [u8] {
        let start = bid as usize * self.buf_size + off.min(self.buf_size);
        let end = bid as usize * self.buf_size + (off + len).min(self.buf_size);
        &mut self.bufs[start..end]
    }

    /// Returns buffer `bid` to the ring (visible to the kernel after the
    /// next `publish`). The caller guarantees `bid` is not already in the
    /// ring, so at most `entries` buffers are ever queued.
    pub(crate) fn push(&mut self, bid: u16) {
        if bid >= self.entries {
            return;
        }
        let idx = (self.tail & (self.entries - 1)) as usize;
        let addr = self
            .bufs
            .as_mut_ptr()
            .wrapping_add(bid as usize * self.buf_size) as u64;
        // SAFETY: `idx < entries`, so the entry lies inside the mapping. The
        // kernel only reads entries between its head and our published tail,
        // and this slot is beyond the published tail (the ring never holds
        // more than `entries` buffers), so no one else accesses it now. The
        // setters leave the `resv` field (entry 0's tail) untouched.
        unsafe {
            let e = &mut *self.ring.as_ptr().add(idx);
            e.set_addr(addr);
            e.set_len(self.buf_size as u32);
            e.set_bid(bid);
        }
        self.tail = self.tail.wrapping_add(1);
    }

    /// Publishes pushed buffers to the kernel (release store of the tail).
    pub(crate) fn publish(&self) {
        // SAFETY: the mapping is live and page-aligned, so entry 0 exists and
        // its `resv` field (the tail) is a properly aligned u16; the kernel
        // reads it concurrently, hence the atomic access.
        unsafe {
            let tail = BufRingEntry::tail(self.ring.as_ptr()).cast_mut();
            AtomicU16::from_ptr(tail).store(self.tail, Ordering::Release);
        }
    }

    /// Makes `drop` leak the memory instead of freeing it (used when the
    /// kernel may still hold references to it).
    pub(crate) fn leak(&mut self) {
        self.leaked = true;
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        if self.leaked {
            std::mem::forget(std::mem::take(&mut self.bufs));
            return;
        }
        // SAFETY: `ring`/`map_len` are exactly the mapping made in `new`,
        // unmapped once here. The owner drops (unregisters) the io_uring
        // before this value, so the kernel no longer reads it; if it still
        // pinned the pages they stay alive until unpinned.
        unsafe { libc::munmap(self.ring.as_ptr().cast(), self.map_len) };
    }
}
