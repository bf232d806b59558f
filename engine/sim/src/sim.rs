//! The simulator: nodes, links, virtual clock and the event loop.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::link::{transit, Fate, LinkConfig, LinkState, LinkStats};
use crate::queue::Queue;
use crate::{SimError, SimNode};

/// Size of the buffer handed to [`SimNode::poll_transmit`].
pub const TRANSMIT_BUF_LEN: usize = 65_536;

/// Default cap on `handle_timeout` calls for one node at one virtual
/// instant without it receiving a datagram; beyond it the node is reported
/// as [`SimError::Livelock`].
pub const DEFAULT_TIMEOUT_SPIN_LIMIT: u32 = 1000;

/// Default cap on datagrams drained from one node in one step; beyond it
/// the node is reported as [`SimError::Livelock`].
pub const DEFAULT_DRAIN_LIMIT: usize = 1_000_000;

/// Observer of every emitted datagram: `(time, src, dst, bytes)`.
pub type Tap = Box<dyn FnMut(Instant, SocketAddr, SocketAddr, &[u8])>;

/// Observer of every datagram fate: `(time, src, dst, fate)`.
pub type FateTap = Box<dyn FnMut(Instant, SocketAddr, SocketAddr, Fate)>;

/// One node plus the bookkeeping the livelock detector needs.
struct Slot<N> {
    node: N,
    /// Virtual instant of the latest `handle_timeout` call.
    spin_at: Option<Instant>,
    /// Consecutive `handle_timeout` calls at `spin_at` since the node last
    /// received a datagram.
    spins: u32,
}

/// Everything except the nodes, split out so the event loop can borrow a
/// node mutably while routing its output.
struct Network {
    /// The single source of randomness; seeded from the user's seed.
    rng: ChaCha8Rng,
    /// Registered addresses, sorted (for "is there a node at dst?").
    addrs: Vec<SocketAddr>,
    default_link: LinkConfig,
    /// Explicit per-direction configs; everything else uses `default_link`.
    configs: BTreeMap<(SocketAddr, SocketAddr), LinkConfig>,
    /// Per-direction counters and serializer state, created on first use.
    states: BTreeMap<(SocketAddr, SocketAddr), LinkState>,
    queue: Queue,
    tap: Option<Tap>,
    fate_tap: Option<FateTap>,
}

impl Network {
    /// Routes one datagram emitted by `src` at `now`: tap, link model, queue.
    fn emit(&mut self, now: Instant, src: SocketAddr, dst: SocketAddr, bytes: &[u8]) {
        if let Some(tap) = self.tap.as_mut() {
            tap(now, src, dst, bytes);
        }
        let state = self.states.entry((src, dst)).or_default();
        state.stats.sent += 1;
        state.stats.bytes_sent += bytes.len() as u64;
        let fate_tap = &mut self.fate_tap;
        let mut on_fate = |fate: Fate| {
            if let Some(t) = fate_tap.as_mut() {
                t(now, src, dst, fate);
            }
        };
        if self.addrs.binary_search(&dst).is_err() {
            state.stats.count(Fate::Lost);
            on_fate(Fate::Lost);
            return;
        }
        let cfg = self.configs.get(&(src, dst)).unwrap_or(&self.default_link);
        let mut data = self.queue.copy_of(bytes);
        let verdict = transit(cfg, state, &mut self.rng, now, &mut data, &mut on_fate);
        match (verdict.arrival, verdict.duplicate) {
            (Some(at), Some(dup_at)) => {
                let copy = self.queue.copy_of(&data);
                self.queue.push(at, src, dst, data);
                self.queue.push(dup_at, src, dst, copy);
            }
            (Some(at), None) => self.queue.push(at, src, dst, data),
            _ => self.queue.recycle(data),
        }
    }

    /// Counts and reports a copy reaching its node.
    fn delivered(&mut self, now: Instant, src: SocketAddr, dst: SocketAddr) {
        self.states
            .entry((src, dst))
            .or_default()
            .stats
            .count(Fate::Delivered);
        if let Some(t) = self.fate_tap.as_mut() {
            t(now, src, dst, Fate::Delivered);
        }
    }
}

/// Result of one bounded step of the event loop.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Something was transmitted, delivered or fired.
    Progress,
    /// Nothing in flight, no timers, nothing transmitted.
    Idle,
    /// The next event lies beyond the deadline; the clock now reads the deadline.
    Deadline,
}

/// A deterministic simulated network of [`SimNode`]s with virtual time.
///
/// Invariants:
/// - all randomness comes from one ChaCha8 RNG seeded with the user's seed,
///   and every iteration is over ordered containers, so a seed (plus the
///   nodes' own deterministic behaviour) replays exactly;
/// - the virtual clock never goes backwards; the only wall-clock read is
///   the epoch captured in [`Sim::new`], and only differences from it mean
///   anything;
/// - datagrams due at the same instant are delivered in scheduling order.
pub struct Sim<N: SimNode> {
    epoch: Instant,
    now: Instant,
    nodes: BTreeMap<SocketAddr, Slot<N>>,
    net: Network,
    buf: Box<[u8]>,
    drain_limit: usize,
    spin_limit: u32,
}

impl<N: SimNode> fmt::Debug for Sim<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sim")
            .field("elapsed", &self.elapsed())
            .field("nodes", &self.net.addrs)
            .field("in_flight", &self.net.queue.len())
            .finish_non_exhaustive()
    }
}

impl<N: SimNode> Sim<N> {
    /// An empty network whose randomness is fully determined by `seed`.
    /// Virtual time zero is `Instant::now()` at this call.
    pub fn new(seed: u64) -> Self {
        let epoch = Instant::now();
        Self {
            epoch,
            now: epoch,
            nodes: BTreeMap::new(),
            net: Network {
                rng: ChaCha8Rng::seed_from_u64(seed),
                addrs: Vec::new(),
                default_link: LinkConfig::default(),
                configs: BTreeMap::new(),
                states: BTreeMap::new(),
                queue: Queue::default(),
                tap: None,
                fate_tap: None,
            },
            buf: vec![0u8; TRANSMIT_BUF_LEN].into_boxed_slice(),
            drain_limit: DEFAULT_DRAIN_LIMIT,
            spin_limit: DEFAULT_TIMEOUT_SPIN_LIMIT,
        }
    }

    /// Current virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Virtual time zero.
    pub fn epoch(&self) -> Instant {
        self.epoch
    }

    /// Virtual time elapsed since the epoch.
    pub fn elapsed(&self) -> Duration {
        self.now - self.epoch
    }

    /// Adds a node at `addr`.
    ///
    /// # Panics
    /// If a node already has `addr` (a test-setup bug).
    pub fn add_node(&mut self, addr: SocketAddr, node: N) {
        assert!(
            !self.nodes.contains_key(&addr),
            "net-sim: duplicate node address {addr}"
        );
        let slot = Slot {
            node,
            spin_at: None,
            spins: 0,
        };
        self.nodes.insert(addr, slot);
        let pos = self.net.addrs.partition_point(|a| *a < addr);
        self.net.addrs.insert(pos, addr);
    }

    /// The node at `addr`.
    ///
    /// # Panics
    /// If there is no node at `addr`.
    pub fn node(&self, addr: SocketAddr) -> &N {
        match self.nodes.get(&addr) {
            Some(slot) => &slot.node,
            None => panic!("net-sim: no node at {addr}"),
        }
    }

    /// The node at `addr`, mutably. Its timer is re-read before the next
    /// event, so changes made here take effect.
    ///
    /// # Panics
    /// If there is no node at `addr`.
    pub fn node_mut(&mut self, addr: SocketAddr) -> &mut N {
        match self.nodes.get_mut(&addr) {
            Some(slot) => &mut slot.node,
            None => panic!("net-sim: no node at {addr}"),
        }
    }

    /// Node addresses in ascending order (the order nodes are polled in).
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.net.addrs
    }

    /// Sets the link model for every direction without an explicit link.
    ///
    /// # Panics
    /// If `cfg` is invalid (see [`LinkConfig::validate`]).
    pub fn set_default_link(&mut self, cfg: LinkConfig) {
        if let Err(e) = cfg.validate() {
            panic!("net-sim: {e}");
        }
        self.net.default_link = cfg;
    }

    /// Sets the link model for the direction `src -> dst` only.
    ///
    /// # Panics
    /// If `cfg` is invalid (see [`LinkConfig::validate`]).
    pub fn set_link(&mut self, src: SocketAddr, dst: SocketAddr, cfg: LinkConfig) {
        if let Err(e) = cfg.validate() {
            panic!("net-sim: {e}");
        }
        self.net.configs.insert((src, dst), cfg);
    }

    /// Sets the link model for both directions between `a` and `b`.
    pub fn set_link_both(&mut self, a: SocketAddr, b: SocketAddr, cfg: LinkConfig) {
        self.set_link(a, b, cfg.clone());
        self.set_link(b, a, cfg);
    }

    /// Counters for `src -> dst` (all zero if nothing was ever sent).
    pub fn link_stats(&self, src: SocketAddr, dst: SocketAddr) -> LinkStats {
        self.net
            .states
            .get(&(src, dst))
            .map(|s| s.stats.clone())
            .unwrap_or_default()
    }

    /// Sum of the counters of every direction.
    pub fn total_stats(&self) -> LinkStats {
        let mut total = LinkStats::default();
        for s in self.net.states.values() {
            total.merge(&s.stats);
        }
        total
    }

    /// Number of datagram copies currently in flight.
    pub fn in_flight(&self) -> usize {
        self.net.queue.len()
    }

    /// Observes every datagram the moment a node emits it, before the link
    /// acts (so lost and oversize datagrams are seen too).
    pub fn set_tap(&mut self, tap: Tap) {
        self.net.tap = Some(tap);
    }

    /// Observes every fate: impairments and drops at emission time,
    /// `Delivered` when a copy reaches its node.
    pub fn set_fate_tap(&mut self, tap: FateTap) {
        self.net.fate_tap = Some(tap);
    }

    /// Sets the per-node, per-step drain cap (default [`DEFAULT_DRAIN_LIMIT`]).
    pub fn set_drain_limit(&mut self, limit: usize) {
        self.drain_limit = limit;
    }

    /// Sets the same-instant `handle_timeout` cap (default
    /// [`DEFAULT_TIMEOUT_SPIN_LIMIT`]).
    pub fn set_timeout_spin_limit(&mut self, limit: u32) {
        self.spin_limit = limit;
    }

    /// Processes the next event.
    ///
    /// First drains `poll_transmit` of every node (in address order) into
    /// the link model, then advances virtual time to the earliest of the
    /// next delivery and the earliest node timer, and processes everything
    /// due then: deliveries (in (time, sequence) order), then timers (in
    /// address order; `handle_timeout` only if `poll_timeout() <= now`).
    /// A timer already in the past fires at the current time.
    ///
    /// Returns `Ok(false)` if there was nothing to do: nothing transmitted,
    /// nothing in flight and no timers.
    pub fn step(&mut self) -> Result<bool, SimError> {
        Ok(self.step_bounded(None)? == Outcome::Progress)
    }

    /// Steps until `done(self)` is true (checked before each step, and once
    /// more when the limit is reached) → `Ok(())`; or until the next event
    /// would lie more than `limit` after the current time → the clock is
    /// left at now + `limit` and `Err(SimError::TimeLimit)`; or until the
    /// simulation goes idle → `Err(SimError::Idle)`.
    pub fn run_until(
        &mut self,
        limit: Duration,
        mut done: impl FnMut(&mut Self) -> bool,
    ) -> Result<(), SimError> {
        let deadline = self.now + limit;
        loop {
            if done(self) {
                return Ok(());
            }
            match self.step_bounded(Some(deadline))? {
                Outcome::Progress => {}
                Outcome::Idle => return Err(SimError::Idle),
                Outcome::Deadline if done(self) => return Ok(()),
                Outcome::Deadline => return Err(SimError::TimeLimit),
            }
        }
    }

    /// Runs for `d` of virtual time, processing every event due up to and
    /// including now + `d`, then leaves the clock at exactly now + `d`
    /// (also when the simulation goes idle earlier).
    pub fn run_for(&mut self, d: Duration) -> Result<(), SimError> {
        let deadline = self.now + d;
        loop {
            match self.step_bounded(Some(deadline))? {
                Outcome::Progress => {}
                Outcome::Idle | Outcome::Deadline => {
                    self.now = self.now.max(deadline);
                    return Ok(());
                }
            }
        }
    }

    /// One step that never moves the clock past `deadline`.
    fn step_bounded(&mut self, deadline: Option<Instant>) -> Result<Outcome, SimError> {
        let drained = self.drain_all()?;
        let next = [self.net.queue.next_at(), self.earliest_timer()]
            .into_iter()
            .flatten()
            .min();
        let Some(next) = next else {
            return Ok(if drained {
                Outcome::Progress
            } else {
                Outcome::Idle
            });
        };
        let next = next.max(self.now);
        if let Some(deadline) = deadline {
            if next > deadline {
                self.now = self.now.max(deadline);
                return Ok(Outcome::Deadline);
            }
        }
        self.now = next;
        self.deliver_due();
        self.fire_timers()?;
        Ok(Outcome::Progress)
    }

    /// Drains every node's pending datagrams into the network; true if any.
    fn drain_all(&mut self) -> Result<bool, SimError> {
        let now = self.now;
        let mut any = false;
        for (&addr, slot) in self.nodes.iter_mut() {
            let mut count = 0usize;
            while let Some(tx) = slot.node.poll_transmit(now, &mut self.buf) {
                count += 1;
                if count > self.drain_limit {
                    return Err(SimError::Livelock { addr });
                }
                assert!(
                    tx.len <= self.buf.len(),
                    "net-sim: node {addr} returned Transmit.len {} > buffer {}",
                    tx.len,
                    self.buf.len()
                );
                self.net.emit(now, addr, tx.dst, &self.buf[..tx.len]);
            }
            any |= count > 0;
        }
        Ok(any)
    }

    /// Earliest timer over all nodes, freshly queried (a node's timer may
    /// change after any interaction, including through `node_mut`).
    fn earliest_timer(&mut self) -> Option<Instant> {
        self.nodes
            .values_mut()
            .filter_map(|s| s.node.poll_timeout())
            .min()
    }

    /// Hands every datagram due by now to its node.
    fn deliver_due(&mut self) {
        let now = self.now;
        while let Some(mut f) = self.net.queue.pop_due(now) {
            if let Some(slot) = self.nodes.get_mut(&f.dst) {
                slot.spins = 0;
                self.net.delivered(now, f.src, f.dst);
                slot.node.handle_datagram(now, f.src, &mut f.data);
            }
            self.net.queue.recycle(f.data);
        }
    }

    /// Fires every node timer that is due, detecting nodes whose timer
    /// never moves past the current instant.
    fn fire_timers(&mut self) -> Result<(), SimError> {
        let now = self.now;
        for (&addr, slot) in self.nodes.iter_mut() {
            match slot.node.poll_timeout() {
                Some(t) if t <= now => {}
                _ => continue,
            }
            if slot.spin_at == Some(now) {
                if slot.spins >= self.spin_limit {
                    return Err(SimError::Livelock { addr });
                }
                slot.spins += 1;
            } else {
                slot.spin_at = Some(now);
                slot.spins = 1;
            }
            slot.node.handle_timeout(now);
        }
        Ok(())
    }
}
