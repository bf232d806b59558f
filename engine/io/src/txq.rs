//! The transmit queue the syscall drivers share: a packed slab of queued
//! datagrams, their grouping into GSO runs, and preallocated `msghdr`s.
//!
//! Datagrams are written back to back into one slab of
//! `batch * max_datagram` bytes: the slot handed out by `slot()` starts where
//! the previous datagram ended. Consecutive datagrams to one destination with
//! equal size are therefore contiguous, and a run of them is one iovec with a
//! `UDP_SEGMENT` control message: the kernel cuts it into datagrams.

use std::net::SocketAddr;

use crate::config::MAX_UDP_PAYLOAD;
use crate::sock::{write_sockaddr, zero_sockaddr};

/// The most segments one GSO send may carry (`UDP_MAX_SEGMENTS` was 64
/// before Linux 6.x raised it; 64 works everywhere).
pub(crate) const MAX_GSO_SEGMENTS: usize = 64;

/// The bytes that must be equal for datagrams to share a GSO run: the
/// receiver index at [`crate::Steering`]'s offset (4..8). The receiving
/// kernel steers a GSO buffer as a whole by its first datagram, so a run
/// mixing sessions that different cores own would all land on one core.
const RUN_KEY: std::ops::Range<usize> = 4..8;

/// One queued datagram.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TxItem {
    pub(crate) dst: SocketAddr,
    pub(crate) off: usize,
    pub(crate) len: usize,
}

/// A run of queued datagrams sent with one `msghdr`: `count` datagrams from
/// item `first`, `seg` bytes each (the last may be shorter), `bytes` total.
/// `count == 1` is a plain send; `count > 1` carries a GSO cmsg.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Run {
    pub(crate) first: usize,
    pub(crate) count: usize,
    pub(crate) seg: usize,
    pub(crate) bytes: usize,
}

impl Run {
    pub(crate) fn is_gso(&self) -> bool {
        self.count > 1
    }
}

/// Packed slab plus the list of queued datagrams. No allocation after `new`.
pub(crate) struct TxQueue {
    slab: Vec<u8>,
    max_datagram: usize,
    batch: usize,
    end: usize,
    items: Vec<TxItem>,
}

impl TxQueue {
    pub(crate) fn new(batch: usize, max_datagram: usize) -> Self {
        TxQueue {
            slab: vec![0u8; batch * max_datagram],
            max_datagram,
            batch,
            end: 0,
            items: Vec::with_capacity(batch),
        }
    }

    /// The next slot, or `None` when `batch` datagrams are queued. Because
    /// every committed datagram is at most `max_datagram` bytes, a slot of
    /// `max_datagram` bytes always fits while fewer than `batch` are queued.
    pub(crate) fn slot(&mut self) -> Option<&mut [u8]> {
        if self.items.len() >= self.batch {
            return None;
        }
        let start = self.end;
        self.slab.get_mut(start..start + self.max_datagram)
    }

    /// Queues the `len` bytes at the current slot for `dst`. `false` (nothing
    /// queued) when the queue is full or `len > max_datagram`.
    pub(crate) fn commit(&mut self, dst: SocketAddr, len: usize) -> bool {
        if self.items.len() >= self.batch || len > self.max_datagram {
            return false;
        }
        self.items.push(TxItem {
            dst,
            off: self.end,
            len,
        });
        self.end += len;
        true
    }

    pub(crate) fn items(&self) -> &[TxItem] {
        &self.items
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub(crate) fn clear(&mut self) {
        self.items.clear();
        self.end = 0;
    }

    /// The run starting at item `first`. With `gso`, it extends over
    /// following items to the same destination while their size equals the
    /// first's (one final shorter item is allowed), up to
    /// [`MAX_GSO_SEGMENTS`] and [`MAX_UDP_PAYLOAD`] bytes, and only while
    /// their [`RUN_KEY`] bytes equal the first's.
    pub(crate) fn run_at(&self, first: usize, gso: bool) -> Run {
        let head = self.items[first];
        let mut run = Run {
            first,
            count: 1,
            seg: head.len,
            bytes: head.len,
        };
        if !gso || head.len == 0 {
            return run;
        }
        let key = self.data(&head).get(RUN_KEY);
        for it in &self.items[first + 1..] {
            if it.dst != head.dst
                || self.data(it).get(RUN_KEY) != key
                || it.len > head.len
                || it.len == 0
                || run.count >= MAX_GSO_SEGMENTS
                || run.bytes + it.len > MAX_UDP_PAYLOAD
            {
                break;
            }
            run.count += 1;
            run.bytes += it.len;
            if it.len < head.len {
                break;
            }
        }
        run
    }

    /// The bytes of a queued item.
    pub(crate) fn data(&self, it: &TxItem) -> &[u8] {
        &self.slab[it.off..it.off + it.len]
    }

    /// The slab (sends read from it).
    pub(crate) fn slab_ptr(&mut self) -> *mut u8 {
        self.slab.as_mut_ptr()
    }
}

/// `CMSG_SPACE(sizeof(u16))`, rounded up in u64 words for alignment.
const CMSG_WORDS: usize = 4;

/// Preallocated `msghdr`s (inside `mmsghdr`s so `sendmmsg` can take them
/// directly) with their iovec, destination name and GSO control buffer.
/// Entry `i` only ever points at its own `iov[i]`, `names[i]`, `ctrl[i]`
/// (set by `fill`); all four vectors are allocated once and never resized,
/// so the pointers stay valid while the driver lives.
pub(crate) struct TxHeaders {
    pub(crate) msgs: Vec<libc::mmsghdr>,
    iov: Vec<libc::iovec>,
    names: Vec<libc::sockaddr_in6>,
    ctrl: Vec<[u64; CMSG_WORDS]>,
}

// SAFETY: the raw pointers inside `msgs` point only into the sibling
// vectors of the same value (and into the tx slab of the driver owning it);
// they are used only by syscalls of the thread that owns the driver.
unsafe impl Send for TxHeaders {}

impl TxHeaders {
    pub(crate) fn new(n: usize) -> Self {
        TxHeaders {
            // SAFETY: mmsghdr is a C struct of integers and pointers; all
            // zero (null pointers, zero lengths) is a valid value.
            msgs: (0..n).map(|_| unsafe { std::mem::zeroed() }).collect(),
            iov: (0..n)
                .map(|_| libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                })
                .collect(),
            names: (0..n).map(|_| zero_sockaddr()).collect(),
            ctrl: vec![[0u64; CMSG_WORDS]; n],
        }
    }

    /// Fills entry `i` to send `run` (whose bytes start at `base + offset of
    /// its first item`) to `dst`, with a GSO cmsg when the run has several
    /// datagrams.
    pub(crate) fn fill(&mut self, i: usize, base: *mut u8, q: &TxQueue, run: &Run) {
        let head = q.items()[run.first];
        // `base + head.off` stays inside the slab: off + bytes <= slab len.
        self.iov[i] = libc::iovec {
            iov_base: base.wrapping_add(head.off).cast(),
            iov_len: run.bytes,
        };
        let namelen = write_sockaddr(&head.dst, &mut self.names[i]);
        // Pointers are derived after the writes above, so they are fresh.
        let name = self.names.as_mut_ptr().wrapping_add(i);
        let iov = self.iov.as_mut_ptr().wrapping_add(i);
        let m = &mut self.msgs[i];
        m.msg_len = 0;
        m.msg_hdr.msg_name = name.cast();
        m.msg_hdr.msg_namelen = namelen;
        m.msg_hdr.msg_iov = iov;
        m.msg_hdr.msg_iovlen = 1;
        m.msg_hdr.msg_flags = 0;
        if run.is_gso() {
            let ctrl = &mut self.ctrl[i];
            // SAFETY: CMSG_SPACE/CMSG_LEN are pure arithmetic on a constant.
            let (space, len) =
                unsafe { (libc::CMSG_SPACE(2) as usize, libc::CMSG_LEN(2) as usize) };
            debug_assert!(space <= CMSG_WORDS * 8);
            let bytes = ctrl.as_mut_ptr().cast::<u8>();
            // SAFETY: `ctrl` is CMSG_WORDS*8 = 32 bytes, 8-aligned, which
            // holds one cmsghdr (16 bytes) plus CMSG_ALIGN(2) data bytes
            // (`space` = 24 ≤ 32). The header is written through an aligned
            // pointer and the data at CMSG_LEN(0) = 16 bytes in.
            unsafe {
                let hdr = bytes.cast::<libc::cmsghdr>();
                (*hdr).cmsg_len = len as _;
                (*hdr).cmsg_level = libc::SOL_UDP;
                (*hdr).cmsg_type = libc::UDP_SEGMENT;
                let data = bytes.add(libc::CMSG_LEN(0) as usize).cast::<u16>();
                data.write_unaligned(run.seg as u16);
            }
            m.msg_hdr.msg_control = bytes.cast();
            m.msg_hdr.msg_controllen = space as _;
        } else {
            m.msg_hdr.msg_control = std::ptr::null_mut();
            m.msg_hdr.msg_controllen = 0;
        }
    }

    /// The `msghdr` of entry `i`, for io_uring `SendMsg`.
    pub(crate) fn msghdr_ptr(&self, i: usize) -> *const libc::msghdr {
        &self.msgs[i].msg_hdr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q_with(lens: &[(u16, usize)]) -> TxQueue {
        let mut q = TxQueue::new(lens.len().max(1), 2048);
        for &(port, len) in lens {
            assert!(q.slot().is_some());
            assert!(q.commit(SocketAddr::from(([127, 0, 0, 1], port)), len));
        }
        q
    }

    #[test]
    fn runs() {
        let q = q_with(&[(1, 100), (1, 100), (1, 40), (1, 100), (2, 100), (2, 100)]);
        let r = q.run_at(0, true);
        assert_eq!((r.count, r.seg, r.bytes), (3, 100, 240));
        assert_eq!(q.run_at(3, true).count, 1); // next item has another dst
        assert_eq!(q.run_at(4, true).count, 2);
        assert_eq!(q.run_at(0, false).count, 1);
        // Contiguity: each item starts where the previous ended.
        let it = q.items();
        assert!(it.windows(2).all(|w| w[1].off == w[0].off + w[0].len));
    }

    #[test]
    fn a_run_holds_one_receiver_index() {
        let mut q = TxQueue::new(4, 2048);
        let dst = SocketAddr::from(([127, 0, 0, 1], 1));
        for index in [7u32, 7, 9, 9] {
            let slot = q.slot().expect("room");
            slot[..100].fill(0);
            slot[4..8].copy_from_slice(&index.to_be_bytes());
            assert!(q.commit(dst, 100));
        }
        assert_eq!(
            q.run_at(0, true).count,
            2,
            "index 9 belongs to another session"
        );
        assert_eq!(q.run_at(2, true).count, 2);
        // Datagrams too short to carry an index only join each other.
        let q = q_with(&[(1, 3), (1, 3), (1, 100)]);
        assert_eq!(q.run_at(0, true).count, 2);
    }

    #[test]
    fn caps() {
        let q = q_with(&[(1, 2048); 40]);
        let r = q.run_at(0, true);
        assert_eq!(r.count, MAX_UDP_PAYLOAD / 2048);
        let q = q_with(&[(1, 10); 100]);
        assert_eq!(q.run_at(0, true).count, MAX_GSO_SEGMENTS);
        let mut q = q_with(&[(1, 10)]);
        assert!(q.slot().is_none());
        assert!(!q.commit(SocketAddr::from(([127, 0, 0, 1], 1)), 10));
        q.clear();
        assert!(!q.commit(SocketAddr::from(([127, 0, 0, 1], 1)), 4000));
    }
}
