//! Failure detector: Up / Suspect / Down per peer, from when we last heard
//! from it.
//!
//! Heartbeats ride on traffic. Any authenticated packet from a peer is a
//! heartbeat; the session layer sends a PING only when it has sent nothing
//! ack-eliciting for [`DetectorConfig::heartbeat`], so while calls flow no
//! packet exists for the detector's sake. This module only consumes
//! "heard from the peer at `t`" and the passage of time.
//!
//! # Call contract (sans-IO, after quinn-proto)
//!
//! Nothing here reads a clock, owns a timer or does IO; `now` is passed in.
//!
//! | call | direction | when |
//! |---|---|---|
//! | [`track`](FailureDetector::track) | in | a peer should be watched (e.g. its first session opened); returns the [`PeerSlot`] to keep next to the session |
//! | [`heard`](FailureDetector::heard) | in | every authenticated packet from the peer: O(1), an array store |
//! | [`check_all`](FailureDetector::check_all) | in | when [`next_check`](FailureDetector::next_check) is due (the timeout input, `handle_timeout` in quinn-proto) |
//! | [`forget`](FailureDetector::forget) | in | the peer should no longer be watched; its slot goes stale |
//! | [`poll_event`](FailureDetector::poll_event) | out | after any input: call until `None` |
//! | [`next_check`](FailureDetector::next_check) | out | after any input: when to call `check_all` next (`poll_timeout`) |
//!
//! # Detection latency
//!
//! `check_all` compares each peer's silence (`now` − last heard) with the
//! thresholds, and `next_check` asks for it every `heartbeat / 2`. If the
//! runtime calls `check_all` when `next_check` says, a peer last heard at
//! `h` is reported Suspect by `h + suspect_after + heartbeat / 2` and Down
//! by `h + down_after + heartbeat / 2` (plus the runtime's timer slack), and
//! never before `h + suspect_after` / `h + down_after`. A peer heard again
//! is Up at once, inside `heard`.
//!
//! # Bounds
//!
//! At most [`DetectorConfig::max_peers`] peers are tracked (`track` beyond
//! that is [`TrackError::Full`]); slots, the index and the event queue are
//! all bounded by it. The event queue holds every transition until it has
//! `max_peers` events; then it coalesces so that no tracked peer's *latest*
//! state is lost (see [`FailureDetector::poll_event`]) and counts what it
//! dropped ([`FailureDetector::coalesced_events`]).

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use net_crypto::NodeId;
use thiserror::Error;

use crate::FastMap;

/// Default [`DetectorConfig::heartbeat`].
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(1);
/// Default [`DetectorConfig::suspect_after`].
pub const DEFAULT_SUSPECT_AFTER: Duration = Duration::from_secs(3);
/// Default [`DetectorConfig::down_after`].
pub const DEFAULT_DOWN_AFTER: Duration = Duration::from_secs(6);
/// Default [`DetectorConfig::max_peers`].
pub const DEFAULT_MAX_PEERS: usize = 65_536;
/// Shortest accepted heartbeat: `check_all` runs every `heartbeat / 2`, and
/// sub-millisecond checks would only burn CPU.
pub const MIN_HEARTBEAT: Duration = Duration::from_millis(1);
/// Longest accepted interval: keeps `Instant + interval` far from overflow.
pub const MAX_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// The detector's intervals and bound. Timers are durations; time comes in
/// as `now`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DetectorConfig {
    /// A session that has sent nothing for this long sends a PING, so a live
    /// peer is heard at least this often (plus a round trip). `check_all` is
    /// due every `heartbeat / 2`.
    pub heartbeat: Duration,
    /// A peer silent for at least this long is Suspect.
    pub suspect_after: Duration,
    /// A peer silent for at least this long is Down.
    pub down_after: Duration,
    /// Most peers tracked at once; also the event queue's bound.
    pub max_peers: usize,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            heartbeat: DEFAULT_HEARTBEAT,
            suspect_after: DEFAULT_SUSPECT_AFTER,
            down_after: DEFAULT_DOWN_AFTER,
            max_peers: DEFAULT_MAX_PEERS,
        }
    }
}

/// One of the detector's intervals, as named in a [`DetectorConfigError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DetectorInterval {
    /// [`DetectorConfig::heartbeat`].
    Heartbeat,
    /// [`DetectorConfig::suspect_after`].
    SuspectAfter,
    /// [`DetectorConfig::down_after`].
    DownAfter,
}

impl fmt::Display for DetectorInterval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DetectorInterval::Heartbeat => "heartbeat",
            DetectorInterval::SuspectAfter => "suspect_after",
            DetectorInterval::DownAfter => "down_after",
        })
    }
}

/// Why a [`DetectorConfig`] was refused.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum DetectorConfigError {
    /// An interval is zero.
    #[error("failure detector: {0} is zero")]
    Zero(DetectorInterval),
    /// The heartbeat is shorter than [`MIN_HEARTBEAT`].
    #[error("failure detector: heartbeat {0:?} is shorter than {min:?}", min = MIN_HEARTBEAT)]
    HeartbeatTooShort(Duration),
    /// An interval is longer than [`MAX_INTERVAL`].
    #[error("failure detector: {0} is longer than {max:?}", max = MAX_INTERVAL)]
    TooLong(DetectorInterval),
    /// The intervals are not `heartbeat < suspect_after < down_after`.
    #[error(
        "failure detector: need heartbeat ({heartbeat:?}) < suspect_after \
         ({suspect_after:?}) < down_after ({down_after:?})"
    )]
    NotIncreasing {
        /// The configured heartbeat.
        heartbeat: Duration,
        /// The configured suspect threshold.
        suspect_after: Duration,
        /// The configured down threshold.
        down_after: Duration,
    },
    /// `max_peers` is zero or does not fit a slot index (`u32`).
    #[error("failure detector: max_peers {0} is outside 1..=4294967295")]
    MaxPeers(usize),
}

impl DetectorConfig {
    /// Checks `0 < heartbeat < suspect_after < down_after`, the heartbeat's
    /// floor, the intervals' ceiling and `1 <= max_peers <= u32::MAX`.
    pub fn validate(&self) -> Result<(), DetectorConfigError> {
        let intervals = [
            (DetectorInterval::Heartbeat, self.heartbeat),
            (DetectorInterval::SuspectAfter, self.suspect_after),
            (DetectorInterval::DownAfter, self.down_after),
        ];
        for (name, value) in intervals {
            if value.is_zero() {
                return Err(DetectorConfigError::Zero(name));
            }
            if value > MAX_INTERVAL {
                return Err(DetectorConfigError::TooLong(name));
            }
        }
        if self.heartbeat < MIN_HEARTBEAT {
            return Err(DetectorConfigError::HeartbeatTooShort(self.heartbeat));
        }
        if self.heartbeat >= self.suspect_after || self.suspect_after >= self.down_after {
            return Err(DetectorConfigError::NotIncreasing {
                heartbeat: self.heartbeat,
                suspect_after: self.suspect_after,
                down_after: self.down_after,
            });
        }
        if self.max_peers == 0 || u32::try_from(self.max_peers).is_err() {
            return Err(DetectorConfigError::MaxPeers(self.max_peers));
        }
        Ok(())
    }

    /// How often `check_all` is due: `heartbeat / 2`.
    pub fn check_interval(&self) -> Duration {
        self.heartbeat / 2
    }
}

/// Why [`FailureDetector::track`] refused a peer.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum TrackError {
    /// `max_peers` peers are tracked already; forget one first.
    #[error("failure detector full: {max_peers} peers tracked")]
    Full {
        /// The configured bound.
        max_peers: usize,
    },
}

/// What the detector believes about a peer. Ordered by badness:
/// `Up < Suspect < Down`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PeerState {
    /// Heard from within `suspect_after`.
    Up,
    /// Silent for at least `suspect_after`: callers should prefer others.
    Suspect,
    /// Silent for at least `down_after`: calls to it fail at once. Stays
    /// Down until the peer is heard again.
    Down,
}

impl fmt::Display for PeerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PeerState::Up => "up",
            PeerState::Suspect => "suspect",
            PeerState::Down => "down",
        })
    }
}

/// A peer's state changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerEvent {
    /// The peer.
    pub peer: NodeId,
    /// Its new state.
    pub state: PeerState,
    /// How long it had been silent when the change was seen: the silence
    /// that crossed the threshold for Suspect/Down, the silence just ended
    /// for Up.
    pub silent_for: Duration,
}

/// Handle to a tracked peer's slot, kept next to its session(s) so that
/// [`FailureDetector::heard`] is an array store, not a hash lookup.
///
/// Invariant: a handle names one tracking of one peer. After
/// [`FailureDetector::forget`] its generation no longer matches, so a stale
/// handle is ignored even once the slot holds another peer (the generation
/// is a `u64` and never wraps in practice).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PeerSlot {
    index: u32,
    generation: u64,
}

/// A tracked peer.
struct Tracked {
    peer: NodeId,
    /// Latest time the peer was heard (never moves back).
    last_heard: Instant,
    state: PeerState,
}

/// One entry of the slot array.
struct Slot {
    /// Bumped by `forget`, so handles to the previous tracking go stale.
    generation: u64,
    /// Sequence number of this tracking's latest pushed event (possibly
    /// popped since); 0 if none.
    last_event: u64,
    tracked: Option<Tracked>,
}

impl Slot {
    fn live(&self, handle: PeerSlot) -> Option<&Tracked> {
        self.tracked
            .as_ref()
            .filter(|_| self.generation == handle.generation)
    }
}

/// An event in the queue, with what coalescing needs to judge it.
struct Queued {
    /// Consecutive along the queue: `seq(front) + position`.
    seq: u64,
    slot: PeerSlot,
    event: PeerEvent,
}

/// Bounded queue of [`PeerEvent`]s.
///
/// Invariants: `len <= cap`; the `seq`s of queued events are consecutive
/// from the front; for a live tracking, `Slot::last_event` is the `seq` of
/// its latest event ever pushed (queued or already popped).
struct EventQueue {
    events: VecDeque<Queued>,
    cap: usize,
    next_seq: u64,
    coalesced: u64,
}

impl EventQueue {
    fn new(cap: usize) -> Self {
        EventQueue {
            events: VecDeque::new(),
            cap,
            next_seq: 1,
            coalesced: 0,
        }
    }

    /// Queues `event` for the tracking `handle` (which must be live).
    ///
    /// Below the bound every event is kept. At the bound: if this peer has
    /// an event still queued, it is overwritten in place (O(1)); otherwise
    /// the queue drops every event that is not its tracking's latest, or
    /// whose peer was forgotten (O(queue)). Either way each tracked peer's
    /// latest event stays queued. `len <= cap` holds: after coalescing, at
    /// most one event per live tracking remains, none of them `handle`'s
    /// (else it would have been overwritten), so at most `cap - 1`.
    fn push(&mut self, slots: &mut [Slot], handle: PeerSlot, event: PeerEvent) {
        if self.events.len() >= self.cap {
            if self.overwrite(slots, handle, event) {
                return;
            }
            self.coalesce(slots);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        slots[handle.index as usize].last_event = seq;
        self.events.push_back(Queued {
            seq,
            slot: handle,
            event,
        });
    }

    /// Replaces `handle`'s queued latest event, if it has one.
    fn overwrite(&mut self, slots: &[Slot], handle: PeerSlot, event: PeerEvent) -> bool {
        let Some(front) = self.events.front().map(|q| q.seq) else {
            return false;
        };
        let last = slots[handle.index as usize].last_event;
        let Some(pos) = last.checked_sub(front) else {
            return false; // its latest event was popped already
        };
        match self.events.get_mut(pos as usize) {
            Some(q) if q.slot == handle => {
                q.event = event;
                self.coalesced += 1;
                true
            }
            _ => false,
        }
    }

    /// Keeps only each live tracking's latest event, then renumbers.
    fn coalesce(&mut self, slots: &mut [Slot]) {
        let before = self.events.len();
        self.events.retain(|q| {
            let slot = &slots[q.slot.index as usize];
            slot.live(q.slot).is_some() && slot.last_event == q.seq
        });
        self.coalesced += (before - self.events.len()) as u64;
        let base = self.events.front().map_or(self.next_seq, |q| q.seq);
        for (q, seq) in self.events.iter_mut().zip(base..) {
            q.seq = seq;
            slots[q.slot.index as usize].last_event = seq;
        }
        self.next_seq = base + self.events.len() as u64;
    }

    fn pop(&mut self) -> Option<PeerEvent> {
        self.events.pop_front().map(|q| q.event)
    }
}

/// Per-peer Up / Suspect / Down from the times a peer was heard; see the
/// [module documentation](self) for the call contract and bounds.
///
/// Invariants: `index` maps exactly the live trackings to their slot;
/// `free` lists exactly the slots without one; `watching` counts the live
/// trackings not Down (when it is 0, `check_all` has nothing to do).
pub struct FailureDetector {
    config: DetectorConfig,
    slots: Vec<Slot>,
    free: Vec<u32>,
    index: FastMap<NodeId, u32>,
    queue: EventQueue,
    watching: usize,
    last_check: Option<Instant>,
}

impl fmt::Debug for FailureDetector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FailureDetector")
            .field("config", &self.config)
            .field("tracked", &self.index.len())
            .field("watching", &self.watching)
            .field("queued_events", &self.queue.events.len())
            .finish_non_exhaustive()
    }
}

impl FailureDetector {
    /// A detector tracking nobody, or why `config` is refused.
    pub fn new(config: DetectorConfig) -> Result<Self, DetectorConfigError> {
        config.validate()?;
        Ok(FailureDetector {
            config,
            slots: Vec::new(),
            free: Vec::new(),
            index: FastMap::default(),
            queue: EventQueue::new(config.max_peers),
            watching: 0,
            last_check: None,
        })
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &DetectorConfig {
        &self.config
    }

    /// Starts watching `peer`, as Up and heard at `now`, and returns its
    /// slot. Idempotent: a peer tracked already keeps its state and last
    /// heard time and gets its existing slot back, so every session to one
    /// peer shares one slot. No event is emitted.
    pub fn track(&mut self, peer: NodeId, now: Instant) -> Result<PeerSlot, TrackError> {
        if let Some(&index) = self.index.get(&peer) {
            let generation = self.slots[index as usize].generation;
            return Ok(PeerSlot { index, generation });
        }
        let full = TrackError::Full {
            max_peers: self.config.max_peers,
        };
        if self.index.len() >= self.config.max_peers {
            return Err(full);
        }
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                let index = u32::try_from(self.slots.len()).map_err(|_| full)?;
                self.slots.push(Slot {
                    generation: 0,
                    last_event: 0,
                    tracked: None,
                });
                index
            }
        };
        let slot = &mut self.slots[index as usize];
        slot.tracked = Some(Tracked {
            peer,
            last_heard: now,
            state: PeerState::Up,
        });
        self.index.insert(peer, index);
        self.watching += 1;
        Ok(PeerSlot {
            index,
            generation: slot.generation,
        })
    }

    /// The peer behind `slot` was heard at `now` (any authenticated packet).
    /// O(1). A Suspect or Down peer becomes Up and an event is queued. A
    /// stale slot (its peer forgotten) is ignored. `now` earlier than the
    /// last heard time does not move it back.
    pub fn heard(&mut self, slot: PeerSlot, now: Instant) {
        let Some(entry) = self.slots.get_mut(slot.index as usize) else {
            return;
        };
        if entry.generation != slot.generation {
            return;
        }
        let Some(tracked) = entry.tracked.as_mut() else {
            return;
        };
        let silent_for = now.saturating_duration_since(tracked.last_heard);
        tracked.last_heard = tracked.last_heard.max(now);
        if tracked.state == PeerState::Up {
            return;
        }
        if tracked.state == PeerState::Down {
            self.watching += 1;
        }
        tracked.state = PeerState::Up;
        let event = PeerEvent {
            peer: tracked.peer,
            state: PeerState::Up,
            silent_for,
        };
        self.queue.push(&mut self.slots, slot, event);
    }

    /// Stops watching `peer`; its slot goes stale and will be reused. Events
    /// already queued for it stay queued unless the queue has to coalesce,
    /// which drops them. Returns whether it was tracked.
    ///
    /// Several sessions to one peer share its slot: forget a peer only when
    /// none of them needs watching any more.
    pub fn forget(&mut self, peer: &NodeId) -> bool {
        let Some(index) = self.index.remove(peer) else {
            return false;
        };
        let slot = &mut self.slots[index as usize];
        if let Some(tracked) = slot.tracked.take() {
            if tracked.state != PeerState::Down {
                self.watching -= 1;
            }
        }
        slot.generation += 1;
        slot.last_event = 0;
        self.free.push(index);
        true
    }

    /// `peer`'s state, if tracked.
    pub fn state(&self, peer: &NodeId) -> Option<PeerState> {
        let index = *self.index.get(peer)?;
        self.slots[index as usize]
            .tracked
            .as_ref()
            .map(|tracked| tracked.state)
    }

    /// The state of the peer behind `slot` (O(1)), if it is still tracked
    /// under that slot.
    pub fn slot_state(&self, slot: PeerSlot) -> Option<PeerState> {
        let entry = self.slots.get(slot.index as usize)?;
        entry.live(slot).map(|tracked| tracked.state)
    }

    /// `peer`'s slot, if tracked.
    pub fn slot(&self, peer: &NodeId) -> Option<PeerSlot> {
        let index = *self.index.get(peer)?;
        let generation = self.slots[index as usize].generation;
        Some(PeerSlot { index, generation })
    }

    /// Number of tracked peers.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether no peer is tracked.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Applies Up → Suspect → Down by each peer's silence at `now`, queuing
    /// one event per change. A peer whose silence crossed both thresholds
    /// since the last check goes straight to Down (one event). Down is
    /// terminal until the peer is heard. O(slots), and nothing to do when
    /// every tracked peer is Down already. Correct at any time; the runtime
    /// only needs to call it by [`next_check`](Self::next_check).
    pub fn check_all(&mut self, now: Instant) {
        self.last_check = Some(now);
        if self.watching == 0 {
            return;
        }
        // Cannot truncate: slots never outnumber max_peers <= u32::MAX.
        let len = u32::try_from(self.slots.len()).unwrap_or(u32::MAX);
        for index in 0..len {
            if let Some((handle, event)) = self.check_one(index, now) {
                if event.state == PeerState::Down {
                    self.watching -= 1;
                }
                self.queue.push(&mut self.slots, handle, event);
            }
        }
    }

    /// Moves slot `index` to the state its silence at `now` calls for, if
    /// that is worse than its current one, and returns the event.
    fn check_one(&mut self, index: u32, now: Instant) -> Option<(PeerSlot, PeerEvent)> {
        let entry = &mut self.slots[index as usize];
        let tracked = entry.tracked.as_mut()?;
        if tracked.state == PeerState::Down {
            return None;
        }
        let silent_for = now.saturating_duration_since(tracked.last_heard);
        let state = if silent_for >= self.config.down_after {
            PeerState::Down
        } else if silent_for >= self.config.suspect_after {
            PeerState::Suspect
        } else {
            return None;
        };
        if state == tracked.state {
            return None;
        }
        tracked.state = state;
        let handle = PeerSlot {
            index,
            generation: entry.generation,
        };
        let event = PeerEvent {
            peer: tracked.peer,
            state,
            silent_for,
        };
        Some((handle, event))
    }

    /// The next state change seen, oldest first; call until `None`.
    ///
    /// Every change is delivered while fewer than `max_peers` events wait.
    /// Beyond that the queue coalesces: a peer's older events may be dropped
    /// or overwritten by its newer one, and events of forgotten peers may be
    /// dropped, but the latest state of every tracked peer is always
    /// delivered. Dropped events are counted in
    /// [`coalesced_events`](Self::coalesced_events).
    pub fn poll_event(&mut self) -> Option<PeerEvent> {
        self.queue.pop()
    }

    /// When `check_all` is next due: `heartbeat / 2` after the last check
    /// (or `now` if there was none), and `None` while no tracked peer can
    /// change state by silence (none tracked, or all Down). A time in the
    /// past means "now".
    pub fn next_check(&self, now: Instant) -> Option<Instant> {
        if self.watching == 0 {
            return None;
        }
        Some(
            self.last_check
                .map_or(now, |at| at + self.config.check_interval()),
        )
    }

    /// Events dropped or overwritten by coalescing since creation (each one
    /// superseded by a later state of the same peer, or of a forgotten
    /// peer).
    pub fn coalesced_events(&self) -> u64 {
        self.queue.coalesced
    }
}
