//! The impairment logic of `udp_relay`, sans-IO: datagrams go in with the
//! time they arrived, come out at the time they are due, and in between are
//! dropped, delayed, duplicated and reordered by decisions drawn from a
//! seeded RNG. Everything is a pure function of (seed, parameters, the
//! sequence of `handle_datagram` calls with their virtual times, the times
//! `release_due` is called at), so a run replays exactly from its seed and
//! the unit tests need no sockets and no clock.
//!
//! Rules, per datagram, in arrival order:
//! 1. Four numbers are drawn from the RNG whatever the parameters (loss,
//!    duplicate, reorder, jitter), so changing one probability does not move
//!    the decisions of the others.
//! 2. Lost with probability `loss`: counted, never held.
//! 3. Otherwise due at `now + delay + jitter`, jitter uniform in
//!    `[0, jitter]`. Jitter does not reorder: a datagram is never due before
//!    the last in-order datagram of its direction (a FIFO floor per
//!    direction), as on a real path with one queue.
//! 4. With probability `reorder` it is held `reorder_extra` longer and does
//!    not move the floor, so the datagrams after it overtake it.
//! 5. With probability `duplicate` a copy is due right after it.
//! 6. Bounded: at most `max_datagrams` held and `max_bytes` bytes held
//!    (copies included). A datagram (or copy) over either bound is dropped
//!    and counted as `overflow`.
//!
//! Memory: one heap of due times (capacity `max_datagrams`, allocated once)
//! and a pool of byte buffers reused from datagram to datagram; a buffer
//! keeps the capacity of the largest datagram it held, so after warm-up no
//! datagram allocates, and the pool holds at most `max_datagrams` buffers.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// Which way a datagram travels through the relay.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
pub enum Dir {
    /// From the client to the upstream.
    #[default]
    ToUpstream,
    /// From the upstream back to the client.
    ToClient,
}

impl Dir {
    fn index(self) -> usize {
        match self {
            Dir::ToUpstream => 0,
            Dir::ToClient => 1,
        }
    }
}

/// What happens to the datagrams (both directions alike).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Impairment {
    /// Fixed one-way delay.
    pub delay: Duration,
    /// Extra delay, uniform in `[0, jitter]` (order kept, see rule 3).
    pub jitter: Duration,
    /// Probability a datagram is dropped.
    pub loss: f64,
    /// Probability a datagram is sent twice.
    pub duplicate: f64,
    /// Probability a datagram is held `reorder_extra` longer than the rest.
    pub reorder: f64,
    /// How much longer a reordered datagram is held.
    pub reorder_extra: Duration,
}

/// How much the relay may hold at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    /// Datagrams held (copies count).
    pub max_datagrams: usize,
    /// Payload bytes held (copies count).
    pub max_bytes: usize,
}

/// What the relay did, per datagram.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Datagrams handed in, client → upstream.
    pub received_to_upstream: u64,
    /// Datagrams handed in, upstream → client.
    pub received_to_client: u64,
    /// Datagrams released (copies included), client → upstream.
    pub released_to_upstream: u64,
    /// Datagrams released (copies included), upstream → client.
    pub released_to_client: u64,
    /// Dropped by the `loss` draw.
    pub lost: u64,
    /// Copies made by the `duplicate` draw.
    pub duplicated: u64,
    /// Held back by the `reorder` draw.
    pub reordered: u64,
    /// Dropped because a bound was reached.
    pub overflow: u64,
}

/// One held datagram: due time, arrival order (ties), pool slot.
type Due = Reverse<(Duration, u64, usize)>;

/// A pool slot: which way the datagram goes and its bytes.
#[derive(Debug, Default)]
struct Held {
    dir: Dir,
    bytes: Vec<u8>,
}

/// The relay's schedule. Invariants: every index in `heap` names a slot
/// that is not in `free`, and `held_bytes` is the sum of their lengths.
#[derive(Debug)]
pub struct Scheduler {
    imp: Impairment,
    bounds: Bounds,
    rng: ChaCha8Rng,
    heap: BinaryHeap<Due>,
    pool: Vec<Held>,
    free: Vec<usize>,
    held_bytes: usize,
    /// Per direction: the due time of the last in-order datagram.
    floor: [Duration; 2],
    seq: u64,
    counters: Counters,
}

/// A uniform draw in `[0, 1)` from the top 53 bits.
fn unit(x: u64) -> f64 {
    (x >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

impl Scheduler {
    /// An empty schedule whose decisions come from `seed`.
    pub fn new(imp: Impairment, bounds: Bounds, seed: u64) -> Self {
        Scheduler {
            imp,
            bounds,
            rng: ChaCha8Rng::seed_from_u64(seed),
            heap: BinaryHeap::with_capacity(bounds.max_datagrams),
            pool: Vec::with_capacity(bounds.max_datagrams),
            free: Vec::with_capacity(bounds.max_datagrams),
            held_bytes: 0,
            floor: [Duration::ZERO; 2],
            seq: 0,
            counters: Counters::default(),
        }
    }

    /// The counters so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Datagrams held now.
    pub fn held(&self) -> usize {
        self.heap.len()
    }

    /// A datagram arrived at `now` going `dir` (rules in the module doc).
    pub fn handle_datagram(&mut self, now: Duration, dir: Dir, data: &[u8]) {
        match dir {
            Dir::ToUpstream => self.counters.received_to_upstream += 1,
            Dir::ToClient => self.counters.received_to_client += 1,
        }
        let lose = unit(self.rng.next_u64()) < self.imp.loss;
        let dup = unit(self.rng.next_u64()) < self.imp.duplicate;
        let reorder = unit(self.rng.next_u64()) < self.imp.reorder;
        let jitter = self.imp.jitter.mul_f64(unit(self.rng.next_u64()));
        if lose {
            self.counters.lost += 1;
            return;
        }
        let natural = now + self.imp.delay + jitter;
        let floor = &mut self.floor[dir.index()];
        let due = if reorder {
            self.counters.reordered += 1;
            natural + self.imp.reorder_extra
        } else {
            *floor = natural.max(*floor);
            *floor
        };
        self.hold(due, dir, data);
        if dup && self.hold(due, dir, data) {
            self.counters.duplicated += 1;
        }
    }

    /// Takes a pool slot for `data` due at `due`; false (and counted) if a
    /// bound is reached.
    fn hold(&mut self, due: Duration, dir: Dir, data: &[u8]) -> bool {
        if self.heap.len() >= self.bounds.max_datagrams
            || self.held_bytes + data.len() > self.bounds.max_bytes
        {
            self.counters.overflow += 1;
            return false;
        }
        let slot = self.free.pop().unwrap_or_else(|| {
            self.pool.push(Held::default());
            self.pool.len() - 1
        });
        let held = &mut self.pool[slot];
        held.dir = dir;
        held.bytes.clear();
        held.bytes.extend_from_slice(data);
        self.held_bytes += data.len();
        self.heap.push(Reverse((due, self.seq, slot)));
        self.seq += 1;
        true
    }

    /// When the next datagram is due, if any is held.
    pub fn poll_timeout(&self) -> Option<Duration> {
        self.heap.peek().map(|Reverse((due, _, _))| *due)
    }

    /// Hands every datagram due at or before `now` to `send`, earliest
    /// first (ties in arrival order), and frees its slot.
    pub fn release_due(&mut self, now: Duration, mut send: impl FnMut(Dir, &[u8])) {
        while let Some(&Reverse((due, _, slot))) = self.heap.peek() {
            if due > now {
                break;
            }
            self.heap.pop();
            let held = &self.pool[slot];
            let dir = held.dir;
            match dir {
                Dir::ToUpstream => self.counters.released_to_upstream += 1,
                Dir::ToClient => self.counters.released_to_client += 1,
            }
            send(dir, &held.bytes);
            self.held_bytes -= held.bytes.len();
            self.free.push(slot);
        }
    }
}

#[cfg(test)]
mod tests;
