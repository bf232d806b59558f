//! The in-flight datagram queue: a min-heap keyed by (arrival time,
//! insertion sequence), so datagrams due at the same instant are delivered
//! in the order they were scheduled — deterministic ties.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::time::Instant;

/// Most spare payload buffers kept for reuse; beyond this they are freed.
const POOL_MAX: usize = 4096;

/// One datagram copy on its way to `dst`.
#[derive(Debug)]
pub(crate) struct InFlight {
    /// When it reaches `dst`.
    pub at: Instant,
    /// Insertion order; breaks ties between equal `at`.
    pub seq: u64,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub data: Vec<u8>,
}

impl PartialEq for InFlight {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for InFlight {}

impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for InFlight {
    /// Orders by `(at, seq)` only; `seq` is unique, so this is a total order
    /// consistent with `Eq`.
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// In-flight datagrams plus a pool of payload buffers (to avoid one
/// allocation per datagram on hot simulations).
#[derive(Debug, Default)]
pub(crate) struct Queue {
    heap: BinaryHeap<Reverse<InFlight>>,
    next_seq: u64,
    pool: Vec<Vec<u8>>,
}

impl Queue {
    /// A buffer holding a copy of `bytes`, reused from the pool if possible.
    pub fn copy_of(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut v = self.pool.pop().unwrap_or_default();
        v.clear();
        v.extend_from_slice(bytes);
        v
    }

    /// Returns a payload buffer to the pool.
    pub fn recycle(&mut self, v: Vec<u8>) {
        if self.pool.len() < POOL_MAX {
            self.pool.push(v);
        }
    }

    /// Schedules `data` for delivery at `at`.
    pub fn push(&mut self, at: Instant, src: SocketAddr, dst: SocketAddr, data: Vec<u8>) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.heap.push(Reverse(InFlight {
            at,
            seq,
            src,
            dst,
            data,
        }));
    }

    /// Arrival time of the earliest in-flight datagram.
    pub fn next_at(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse(f)| f.at)
    }

    /// Removes and returns the earliest datagram if it is due by `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<InFlight> {
        if self.next_at()? <= now {
            self.heap.pop().map(|Reverse(f)| f)
        } else {
            None
        }
    }

    /// Number of datagram copies in flight.
    pub fn len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn ties_pop_in_insertion_order_and_times_in_order() {
        let a: SocketAddr = "127.0.0.1:1".parse().expect("addr");
        let t0 = Instant::now();
        let late = t0 + Duration::from_millis(1);
        let mut q = Queue::default();
        q.push(late, a, a, vec![9]);
        for i in 0..5u8 {
            q.push(t0, a, a, vec![i]);
        }
        let mut got = Vec::new();
        while let Some(f) = q.pop_due(t0) {
            got.push(f.data[0]);
        }
        assert_eq!(got, vec![0, 1, 2, 3, 4]);
        assert_eq!(q.len(), 1);
        assert_eq!(q.next_at(), Some(late));
        assert!(q.pop_due(t0).is_none());
        assert_eq!(q.pop_due(late).map(|f| f.data), Some(vec![9]));
    }

    #[test]
    fn pooled_buffers_hold_exact_copies() {
        let mut q = Queue::default();
        let v = q.copy_of(&[1, 2, 3, 4]);
        q.recycle(v);
        assert_eq!(q.copy_of(&[7]), vec![7]);
    }
}
