//! The endpoint: all sessions of one core, behind the sans-IO contract.
//!
//! # Call contract
//!
//! The endpoint never reads a clock, opens a socket or spawns a thread. The
//! driver owns the IO and calls, in a loop:
//!
//! 1. [`Endpoint::handle`] for every datagram received (in place: the buffer
//!    is decrypted where it lies);
//! 2. [`Endpoint::handle_timeout`] when the instant returned by
//!    [`Endpoint::poll_timeout`] has passed;
//! 3. [`Endpoint::poll_event`] until `None`, acting on each event (run the
//!    handler of a `Request` and answer with [`Endpoint::respond`], deliver a
//!    `Response` to the caller, ...);
//! 4. [`Endpoint::poll_transmit`] until `None`, sending each datagram;
//! 5. [`Endpoint::poll_timeout`] to learn when to wake up if no datagram comes.
//!
//! Application operations ([`Endpoint::call`], [`Endpoint::respond`], ...)
//! may be made at any point; their output appears in the next
//! `poll_transmit`. `now` must never go backwards.
//!
//! # Session table
//!
//! At most [`EndpointConfig::max_sessions`] sessions; which initiations get
//! one (at most `max_sessions_per_peer` per identity, a share reserved for
//! configured peers) and which session is evicted when the table is full is
//! the admission policy of `crate::admission` (`engine/proto/src/admission.rs`).
//!
//! # Liveness
//!
//! The failure detector's bookkeeping, stateless resets and reports of
//! refused handshakes live in the child module `liveness`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use net_crypto::{NodeId, PublicIdentity};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::admission::{Candidate, Room, SessionTable, CLOSE_EVICTED};
use crate::config::EndpointConfig;
use crate::cookie::{self, CookieJar, COOKIE_REPLY_LEN};
use crate::detector::{FailureDetector, PeerState};
use crate::event::{ApiError, CloseReason, Event, SessionId};
use crate::handshake::{self, mac1_key, AcceptedInit, HandshakeError, RESP_LEN};
use crate::ids::{CallId, CallKind, ReceiverIndex, ServiceId, Side, Status};
use crate::pool::BufPool;
use crate::pool::Payload;
use crate::reset::ResetState;
use crate::services::Services;
use crate::session::{Ctx, Session};
use crate::stats::EndpointStats;
use crate::wire::{DataHeader, PacketType, RESET_LEN};
use crate::FastMap;

/// A datagram to send, written into the buffer given to [`Endpoint::poll_transmit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit {
    /// Where to send it.
    pub dst: SocketAddr,
    /// Bytes written at the start of the buffer.
    pub len: usize,
}

/// A confirmed responder session, remembered per (peer, lane) for replay
/// protection of initiations and to supersede stale sessions.
#[derive(Clone, Copy)]
struct LaneEntry {
    timestamp: u64,
    session: ReceiverIndex,
}

/// All sessions of one core. See the module docs for the call contract.
pub struct Endpoint {
    cfg: EndpointConfig,
    own_mac1: [u8; 32],
    rng: ChaCha8Rng,
    sessions: FastMap<ReceiverIndex, Session>,
    /// Unconfirmed responder sessions by (peer, lane), with their timestamps.
    half_open: FastMap<(NodeId, u16), LaneEntry>,
    /// Confirmed responder sessions by (peer, lane).
    confirmed: FastMap<(NodeId, u16), LaneEntry>,
    events: VecDeque<Event>,
    ready: VecDeque<ReceiverIndex>,
    timers: BinaryHeap<Reverse<(Instant, ReceiverIndex)>>,
    services: Services,
    pool: BufPool,
    stats: EndpointStats,
    wall_base: (Instant, u64),
    /// Reused list of sessions whose timers are due.
    due: Vec<ReceiverIndex>,
    limiter: crate::ratelimit::InitLimiter,
    cookies: CookieJar,
    /// Cookie replies waiting for `poll_transmit`, bounded by
    /// [`MAX_COOKIE_REPLIES`] (the driver drains it every loop pass).
    cookie_out: VecDeque<(SocketAddr, [u8; COOKIE_REPLY_LEN])>,
    /// Responder sessions per peer, for the admission policy
    /// ([`crate::admission`]).
    table: SessionTable,
    /// CLOSE datagrams of evicted sessions, written at eviction (the
    /// session is gone before the next transmit pass), bounded by
    /// [`MAX_FAREWELLS`].
    farewells: VecDeque<(SocketAddr, Vec<u8>)>,
    /// Reset key, rate limit and burned indices ([`crate::reset`]).
    reset: ResetState,
    /// Resets waiting for `poll_transmit`, bounded by [`MAX_RESETS`].
    reset_out: VecDeque<(SocketAddr, [u8; RESET_LEN])>,
    /// Our session by the peer's receiver index, for resets (which name the
    /// index the peer lost). One entry per index: should two peers choose
    /// the same index, the later session cannot be reset and ends by its
    /// failure detector or idle timeout instead.
    by_peer_index: FastMap<ReceiverIndex, ReceiverIndex>,
    /// Up / Suspect / Down per peer, from authenticated traffic.
    detector: FailureDetector,
    /// The smoothed RTT of the last established session to each peer, for
    /// the next handshake's retransmission timer; at most `max_sessions`
    /// entries (cleared when full).
    peer_rtt: FastMap<NodeId, Duration>,
    /// Rate of `HandshakeRejected` reports (the log's, not the counters').
    rejects: crate::ratelimit::Limiter,
    /// Established sessions per watched peer: a peer is forgotten by the
    /// detector when its last one ends, unless it is Down (then it stays,
    /// so calls keep failing fast until it is heard from again).
    watched: FastMap<NodeId, u32>,
}

/// How many refused handshakes per second become `HandshakeRejected`
/// events (for the operator's log); a flood is counted, not narrated.
const REJECT_REPORTS: crate::RateLimit = crate::RateLimit {
    per_second: 2.0,
    burst: 10.0,
};

/// Most resets queued between two transmit passes.
const MAX_RESETS: usize = 256;
/// Most cookie replies queued between two transmit passes.
const MAX_COOKIE_REPLIES: usize = 256;
/// Most eviction CLOSEs queued between two transmit passes; beyond it an
/// evicted peer learns of the eviction by its idle timeout.
const MAX_FAREWELLS: usize = 256;
/// Buffer for an eviction CLOSE: a data header, an ACK frame (the session
/// writes at most 17 ranges, under 300 bytes), the CLOSE frame and the tag.
const FAREWELL_LEN: usize = 512;

macro_rules! ctx {
    ($self:ident, $now:expr) => {
        Ctx {
            now: $now,
            cfg: &$self.cfg,
            events: &mut $self.events,
            stats: &mut $self.stats,
            pool: &mut $self.pool,
            services: &mut $self.services,
            wall_base: $self.wall_base,
        }
    };
}

// After the macro: the child module uses `ctx!`.
mod liveness;

impl Endpoint {
    /// Creates an endpoint. `wall_nanos` is the wall-clock time at `now` in
    /// nanoseconds since the Unix epoch; it only seeds handshake timestamps,
    /// which must increase across restarts of a node.
    ///
    /// # Panics
    ///
    /// If `cfg.detector` fails [`DetectorConfig::validate`](crate::DetectorConfig::validate)
    /// (a programming error: engines validate configuration first).
    pub fn new(cfg: EndpointConfig, now: Instant, wall_nanos: u64) -> Self {
        let own_mac1 = mac1_key(&cfg.identity.public());
        let cfg_limits = cfg.handshake_limits;
        let rng = ChaCha8Rng::seed_from_u64(cfg.rng_seed);
        let cookies = CookieJar::new(&cfg.identity);
        let reset = ResetState::new(&cfg.identity, cfg.reset_limit, now);
        let mut detector = FailureDetector::new(cfg.detector).unwrap_or_else(|e| {
            panic!("EndpointConfig::detector is invalid ({e}); validate it before building")
        });
        // Starts the check cadence: `next_check` then needs no clock.
        detector.check_all(now);
        Endpoint {
            cfg,
            own_mac1,
            rng,
            sessions: FastMap::default(),
            half_open: FastMap::default(),
            confirmed: FastMap::default(),
            events: VecDeque::new(),
            ready: VecDeque::new(),
            timers: BinaryHeap::new(),
            services: Services::default(),
            pool: BufPool::default(),
            stats: EndpointStats::default(),
            wall_base: (now, wall_nanos),
            due: Vec::new(),
            limiter: crate::ratelimit::InitLimiter::new(cfg_limits, now),
            cookies,
            cookie_out: VecDeque::new(),
            table: SessionTable::default(),
            farewells: VecDeque::new(),
            reset,
            reset_out: VecDeque::new(),
            by_peer_index: FastMap::default(),
            detector,
            rejects: crate::ratelimit::Limiter::new(REJECT_REPORTS, now),
            peer_rtt: FastMap::default(),
            watched: FastMap::default(),
        }
    }

    fn local(&self) -> handshake::Local<'_> {
        handshake::Local {
            identity: &self.cfg.identity,
            psk: &self.cfg.psk,
            params: &self.cfg.params,
            mac1: &self.own_mac1,
        }
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.cfg.identity.node_id()
    }

    /// This node's public identity (what peers need to connect).
    pub fn public_identity(&self) -> PublicIdentity {
        self.cfg.identity.public()
    }

    /// The configuration.
    pub fn config(&self) -> &EndpointConfig {
        &self.cfg
    }

    /// Counters.
    pub fn stats(&self) -> &EndpointStats {
        &self.stats
    }

    /// Number of live sessions (any phase).
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Calls (either role) whose state is still held: unanswered, or answered
    /// but not yet acknowledged. Zero means nothing is in flight.
    pub fn call_count(&self) -> usize {
        self.sessions.values().map(Session::call_count).sum()
    }

    /// Every live session (for shutdown; allocates).
    pub fn session_ids(&self) -> Vec<SessionId> {
        let mut v: Vec<SessionId> = self.sessions.keys().map(|&i| SessionId(i)).collect();
        v.sort_unstable();
        v
    }

    /// The authenticated peer of a session.
    pub fn session_peer(&self, session: SessionId) -> Option<NodeId> {
        self.sessions.get(&session.0).map(Session::peer_node)
    }

    /// Whether the session's handshake is complete.
    pub fn is_established(&self, session: SessionId) -> bool {
        self.sessions
            .get(&session.0)
            .is_some_and(Session::is_established)
    }

    /// The receiver index the peer chose for `session` (what every packet
    /// we send it carries), once the handshake gave it.
    pub fn session_peer_index(&self, session: SessionId) -> Option<ReceiverIndex> {
        self.sessions.get(&session.0)?.peer_index()
    }

    /// Smoothed RTT of an established session.
    pub fn session_rtt(&self, session: SessionId) -> Option<Duration> {
        self.sessions.get(&session.0)?.rtt()
    }

    /// The AEAD suite an established session agreed on.
    pub fn session_suite(&self, session: SessionId) -> Option<net_crypto::Suite> {
        self.sessions.get(&session.0)?.suite()
    }

    /// (largest body, largest stream message) a session's peer accepts;
    /// see `Session::max_message`.
    pub fn max_message(&self, session: SessionId) -> Option<(usize, usize)> {
        self.sessions
            .get(&session.0)
            .map(|s| s.max_message(&self.cfg))
    }

    /// The datagram size path-MTU discovery validated for a session.
    pub fn session_datagram_size(&self, session: SessionId) -> Option<usize> {
        self.sessions
            .get(&session.0)
            .map(|s| s.datagram_budget(&self.cfg))
    }

    /// (congestion window, bytes in flight) of an established session.
    pub fn session_congestion(&self, session: SessionId) -> Option<(u64, u64)> {
        self.sessions.get(&session.0)?.congestion()
    }

    /// Largest payload that travels in one packet on this session; larger
    /// bodies (up to the peer's `max_message`) are segmented.
    pub fn max_payload(&self, session: SessionId) -> Option<usize> {
        self.sessions
            .get(&session.0)
            .map(|s| s.max_payload(&self.cfg))
    }

    fn alloc_index(&mut self) -> ReceiverIndex {
        let mask = (1u32 << self.cfg.core_bits.min(16)) - 1;
        loop {
            let v = (self.rng.gen::<u32>() & !mask) | (self.cfg.core_id & mask);
            let idx = ReceiverIndex::new(v);
            if v != 0 && !self.sessions.contains_key(&idx) && !self.reset.is_burned(idx) {
                return idx;
            }
        }
    }

    /// Starts a session to `peer` at `addr`. Calls may be made on it at once;
    /// they go out when the handshake completes (`Event::Connected`). In a
    /// full table an unreserved peer's session is evicted to make room
    /// ([`crate::admission`]); `TooManySessions` if none may be.
    pub fn connect(
        &mut self,
        now: Instant,
        peer: PublicIdentity,
        addr: SocketAddr,
    ) -> Result<SessionId, ApiError> {
        if self.sessions.len() >= self.cfg.max_sessions {
            let victim = self.table.victim(&self.cfg, &self.sessions);
            self.evict(now, victim.ok_or(ApiError::TooManySessions)?);
        }
        let idx = self.alloc_index();
        let id = SessionId(idx);
        let token = self.reset.token(idx, &addr);
        let rtt = self.peer_rtt.get(&peer.node_id()).copied();
        let s = Session::initiator(id, (peer, addr), (token, rtt), now, &self.cfg);
        self.sessions.insert(idx, s);
        self.touch(idx);
        Ok(id)
    }

    /// Feeds one received datagram. Anything refused is counted in [`stats`](Self::stats).
    pub fn handle(&mut self, now: Instant, src: SocketAddr, datagram: &mut [u8]) {
        self.stats.datagrams_rx += 1;
        self.stats.bytes_rx += datagram.len() as u64;
        match PacketType::parse(datagram) {
            Ok(PacketType::Data) => self.handle_data(now, src, datagram),
            Ok(PacketType::HandshakeInit) => self.handle_init(now, src, datagram),
            Ok(PacketType::HandshakeResponse) => self.handle_response(now, datagram),
            Ok(PacketType::CookieReply) => self.handle_cookie_reply(now, datagram),
            Ok(PacketType::Reset) => self.handle_reset(now, datagram),
            Err(_) => self.stats.drop_malformed += 1,
        }
    }

    fn handle_data(&mut self, now: Instant, src: SocketAddr, datagram: &mut [u8]) {
        let Ok(hdr) = DataHeader::decode(datagram) else {
            self.stats.drop_malformed += 1;
            return;
        };
        let Some(s) = self.sessions.get_mut(&hdr.receiver) else {
            self.stats.drop_unknown_index += 1;
            self.queue_reset(now, src, hdr);
            return;
        };
        let was_half_open = s.is_half_open();
        let mut ctx = ctx!(self, now);
        s.handle_data(&mut ctx, src, hdr, datagram);
        // Authenticated packets (only they move `last_recv`) are heartbeats.
        if let Some(slot) = s.watch().filter(|_| s.last_recv() == now) {
            self.detector.heard(slot, now);
        }
        if was_half_open && s.is_established() {
            let key = s.lane_key();
            self.on_confirmed(now, key, hdr.receiver);
            self.watch(now, hdr.receiver);
        }
        self.touch(hdr.receiver);
    }

    /// A responder session was confirmed: it becomes the (peer, lane)'s
    /// session, superseding an older one.
    fn on_confirmed(&mut self, now: Instant, key: (NodeId, u16), idx: ReceiverIndex) {
        let Some(entry) = self.half_open.remove(&key) else {
            return;
        };
        let entry = LaneEntry {
            session: idx,
            ..entry
        };
        if let Some(old) = self.confirmed.insert(key, entry) {
            if old.session != idx {
                if let Some(s) = self.sessions.get_mut(&old.session) {
                    s.close(&mut ctx!(self, now), CloseReason::Superseded);
                }
                self.touch(old.session);
            }
        }
    }

    fn handle_init(&mut self, now: Instant, src: SocketAddr, datagram: &[u8]) {
        if let Err(e) = handshake::precheck_init(datagram, &self.own_mac1) {
            self.stats.handshake_error(&e);
            return self.report_reject(now, src, datagram, e);
        }
        let under_load = self.limiter.offer(now);
        if under_load && !self.cookies.check_mac2(datagram, &src, self.wall_secs(now)) {
            self.queue_cookie_reply(now, src, datagram);
            return;
        }
        if !self.limiter.allow(under_load.then_some(src.ip()), now) {
            self.stats.handshake_rate_limited += 1;
            return self.report_reject(now, src, datagram, HandshakeError::Overloaded);
        }
        if let Err(e) = self.room_for_init(datagram) {
            self.stats.handshake_error(&e);
            return self.report_reject(now, src, datagram, e);
        }
        let idx = self.alloc_index();
        let mut resp = [0u8; RESP_LEN];
        let mut room = Room::Free;
        let mut duplicate_of = None;
        let (half_open, confirmed, table) = (&self.half_open, &self.confirmed, &self.table);
        let (cfg, total) = (&self.cfg, self.sessions.len());
        // Runs once the initiation authenticated, before the response exists.
        let admit = |node: &NodeId, lane: u16, ts: u64| {
            let (pending, live) = (half_open.get(&(*node, lane)), confirmed.get(&(*node, lane)));
            if let Some(p) = pending.filter(|p| p.timestamp == ts) {
                // The initiator retransmitted the initiation we answered.
                duplicate_of = Some(p.session);
                return Err(HandshakeError::Duplicate);
            }
            let newest = [pending, live]
                .into_iter()
                .flatten()
                .map(|e| e.timestamp)
                .max();
            if newest.is_some_and(|last| ts <= last) {
                return Err(HandshakeError::Replay);
            }
            let new = Candidate {
                peer: node,
                lane_held: newest.is_some(),
                replaces_half_open: pending.is_some(),
            };
            room = table.admit(cfg, total, &new)?;
            Ok(())
        };
        let token = self.reset.token(idx, &src);
        let local = self.local();
        match handshake::respond(&local, datagram, (idx, &token), admit, &mut resp) {
            Ok((acc, _)) => self.accept_init(now, src, idx, acc, resp, room),
            Err(HandshakeError::Duplicate) => {
                self.stats.handshake_error(&HandshakeError::Duplicate);
                if let Some(idx) = duplicate_of {
                    if let Some(s) = self.sessions.get_mut(&idx) {
                        s.resend_response();
                    }
                    self.touch(idx);
                }
            }
            Err(e) => {
                self.stats.handshake_error(&e);
                self.report_reject(now, src, datagram, e);
            }
        }
    }

    /// Before any public-key work: refuses an initiation no session could be
    /// made for, whatever it proves. Peers in `reserved_peers` are exempt
    /// from the half-open bound (the claim is checked by the handshake).
    fn room_for_init(&self, datagram: &[u8]) -> Result<(), HandshakeError> {
        let reserved = &self.cfg.reserved_peers;
        if self.half_open.len() >= self.cfg.max_half_open
            && (reserved.is_empty()
                || !handshake::claimed_initiator(datagram)
                    .is_some_and(|p| reserved.contains(&p.node_id())))
        {
            return Err(HandshakeError::Overloaded);
        }
        if self.sessions.len() >= self.cfg.max_sessions && self.table.evictable() == 0 {
            return Err(HandshakeError::SessionTableFull);
        }
        Ok(())
    }

    /// An admitted initiation becomes a half-open responder session, after
    /// an eviction if `room` asks for one.
    fn accept_init(
        &mut self,
        now: Instant,
        src: SocketAddr,
        idx: ReceiverIndex,
        acc: AcceptedInit,
        resp: [u8; RESP_LEN],
        room: Room,
    ) {
        if room == Room::Evict {
            let Some(victim) = self.table.victim(&self.cfg, &self.sessions) else {
                self.stats
                    .handshake_error(&HandshakeError::SessionTableFull);
                return;
            };
            self.evict(now, victim);
        }
        let key = (acc.peer.node_id(), acc.lane);
        let entry = LaneEntry {
            timestamp: acc.timestamp,
            session: idx,
        };
        if let Some(old) = self.half_open.insert(key, entry) {
            // A newer initiation replaces the unconfirmed one.
            if let Some(s) = self.sessions.get_mut(&old.session) {
                s.close(&mut ctx!(self, now), CloseReason::Superseded);
            }
            self.touch(old.session);
        }
        self.by_peer_index.insert(acc.session.peer_index, idx);
        let peer = (acc.peer, src, acc.lane);
        let s = Session::responder(SessionId(idx), peer, acc.session, resp, now, &self.cfg);
        self.sessions.insert(idx, s);
        self.table.added(&self.cfg, key.0);
        self.touch(idx);
    }

    /// Evicts a session to make room ([`crate::admission`]). Its slot is
    /// reused at once, so an established session's CLOSE is written now and
    /// queued for the next transmit pass.
    fn evict(&mut self, now: Instant, idx: ReceiverIndex) {
        let Some(s) = self.sessions.get_mut(&idx) else {
            return;
        };
        let id = s.id();
        let mut ctx = ctx!(self, now);
        if s.is_established() && self.farewells.len() < MAX_FAREWELLS {
            s.close_with(&mut ctx, CLOSE_EVICTED);
            let mut buf = vec![0u8; FAREWELL_LEN.min(s.datagram_budget(ctx.cfg))];
            if let Some(len) = s.write_datagram(&mut ctx, &mut buf) {
                buf.truncate(len);
                self.farewells.push_back((s.addr(), buf));
            }
        }
        s.close(&mut ctx, CloseReason::Evicted);
        // A written CLOSE ends the session as `Local`; name the real reason
        // (its `Closed` is the last event the close pushed).
        if let Some(Event::Closed {
            session, reason, ..
        }) = self.events.back_mut()
        {
            if *session == id {
                *reason = CloseReason::Evicted;
            }
        }
        self.stats.sessions_evicted += 1;
        self.touch(idx);
    }

    fn wall_secs(&self, now: Instant) -> u64 {
        crate::session::wall_nanos(self.wall_base, now) / 1_000_000_000
    }

    fn queue_cookie_reply(&mut self, now: Instant, src: SocketAddr, init: &[u8]) {
        if self.cookie_out.len() >= MAX_COOKIE_REPLIES || !self.limiter.allow_cookie(src.ip(), now)
        {
            self.stats.cookie_replies_dropped += 1;
            return;
        }
        let mut reply = [0u8; COOKIE_REPLY_LEN];
        let wall = self.wall_secs(now);
        let nonce = self.rng.gen();
        match self
            .cookies
            .write_reply(init, &src, wall, nonce, self.cfg.aead, &mut reply)
        {
            Ok(()) => self.cookie_out.push_back((src, reply)),
            Err(e) => self.stats.handshake_error(&e.into()),
        }
    }

    fn handle_cookie_reply(&mut self, now: Instant, datagram: &[u8]) {
        let idx = match cookie::reply_index(datagram) {
            Ok(idx) => idx,
            Err(e) => return self.stats.handshake_error(&e.into()),
        };
        let Some(s) = self.sessions.get_mut(&idx) else {
            self.stats.handshake_error(&HandshakeError::UnknownIndex);
            return;
        };
        s.handle_cookie_reply(&mut ctx!(self, now), datagram);
        self.touch(idx);
    }

    fn handle_response(&mut self, now: Instant, datagram: &[u8]) {
        let Ok(idx) = handshake::steering_index(datagram) else {
            self.stats.handshake_error(&HandshakeError::Malformed(
                crate::wire::WireError::Truncated,
            ));
            return;
        };
        let Some(s) = self.sessions.get_mut(&idx) else {
            self.stats.handshake_error(&HandshakeError::UnknownIndex);
            return;
        };
        let was_established = s.is_established();
        s.handle_handshake_response(&mut ctx!(self, now), datagram, &self.own_mac1);
        if let Some(peer_index) = s.peer_index() {
            self.by_peer_index.insert(peer_index, idx);
        }
        if !was_established && s.is_established() {
            self.watch(now, idx);
        }
        self.touch(idx);
    }

    /// Re-evaluates a session after anything touched it: removes it if
    /// closed, queues it for transmit, re-arms its timer.
    fn touch(&mut self, idx: ReceiverIndex) {
        let Some(s) = self.sessions.get_mut(&idx) else {
            return;
        };
        if s.is_closed() {
            let (key, side, watched) = (s.lane_key(), s.side(), s.watch().is_some());
            if let (true, Some(rtt)) = (watched, s.final_rtt()) {
                if self.peer_rtt.len() >= self.cfg.max_sessions {
                    self.peer_rtt.clear();
                }
                self.peer_rtt.insert(key.0, rtt);
            }
            if let Some(p) = s.peer_index() {
                if self.by_peer_index.get(&p) == Some(&idx) {
                    self.by_peer_index.remove(&p);
                }
            }
            self.sessions.remove(&idx);
            if side == Side::Responder {
                self.table.removed(&self.cfg, key.0);
            }
            for map in [&mut self.half_open, &mut self.confirmed] {
                if map.get(&key).is_some_and(|e| e.session == idx) {
                    map.remove(&key);
                }
            }
            if watched {
                self.unwatch(key.0);
            }
            return;
        }
        if s.enter_ready_queue() {
            self.ready.push_back(idx);
        }
        if let Some(t) = s.rearm_timer(&self.cfg) {
            self.timers.push(Reverse((t, idx)));
        }
    }

    /// Writes the next datagram to send into `buf` (65 536 bytes suffice).
    #[must_use = "a datagram not taken is not sent"]
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        if let Some((dst, len)) = take_fixed(&mut self.cookie_out, buf) {
            self.stats.cookie_replies_tx += 1;
            return Some(self.sent(dst, len));
        }
        if let Some((dst, len)) = take_fixed(&mut self.reset_out, buf) {
            self.stats.resets_tx += 1;
            return Some(self.sent(dst, len));
        }
        if let Some((dst, close)) = self.farewells.pop_front() {
            if let Some(out) = buf.get_mut(..close.len()) {
                out.copy_from_slice(&close);
                return Some(self.sent(dst, close.len()));
            }
        }
        while let Some(idx) = self.ready.pop_front() {
            let Some(s) = self.sessions.get_mut(&idx) else {
                continue;
            };
            s.leave_ready_queue();
            let written = s.write_datagram(&mut ctx!(self, now), buf);
            let dst = s.addr();
            self.touch(idx);
            if let Some(len) = written {
                return Some(self.sent(dst, len));
            }
        }
        None
    }

    /// Counts a datagram written for `poll_transmit`.
    fn sent(&mut self, dst: SocketAddr, len: usize) -> Transmit {
        self.stats.datagrams_tx += 1;
        self.stats.bytes_tx += len as u64;
        Transmit { dst, len }
    }

    /// When [`handle_timeout`](Self::handle_timeout) next has work.
    #[must_use]
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        // `check_all` ran at creation, so the detector needs no clock here.
        let check = self.detector.next_check(self.wall_base.0);
        while let Some(&Reverse((t, idx))) = self.timers.peek() {
            if self.sessions.get(&idx).is_some_and(|s| s.timer_armed_at(t)) {
                return Some(check.map_or(t, |c| c.min(t)));
            }
            self.timers.pop();
        }
        check
    }

    /// Runs every timer due at `now`. Timers re-armed at or before `now` by
    /// this call wait for the next one, so a bug cannot spin here.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self
            .detector
            .next_check(self.wall_base.0)
            .is_some_and(|c| c <= now)
        {
            self.detector.check_all(now);
        }
        self.detector_events(now);
        let mut due = std::mem::take(&mut self.due);
        while let Some(&Reverse((t, idx))) = self.timers.peek() {
            if t > now {
                break;
            }
            self.timers.pop();
            if self.sessions.get(&idx).is_some_and(|s| s.timer_armed_at(t)) {
                due.push(idx);
            }
        }
        for idx in due.drain(..) {
            let Some(s) = self.sessions.get_mut(&idx) else {
                continue;
            };
            let half_open = s.is_half_open();
            s.fire_timer(&mut ctx!(self, now));
            if half_open && s.is_closed() {
                let (src, peer) = (s.addr(), s.peer_node());
                self.report(now, src, Some(peer), HandshakeError::Unconfirmed);
            }
            self.touch(idx);
        }
        self.due = due;
    }

    /// Next event for the application.
    #[must_use = "an event not taken is lost"]
    pub fn poll_event(&mut self) -> Option<Event> {
        // Peers heard again (Up) since the last timeout: `Down` only comes
        // from `check_all`, whose events `handle_timeout` drains at once.
        while let Some(e) = self.detector.poll_event() {
            debug_assert_ne!(e.state, PeerState::Down);
            self.events.push_back(Event::PeerState {
                peer: e.peer,
                state: e.state,
                silent_for: e.silent_for,
            });
        }
        self.events.pop_front()
    }

    /// Returns a payload buffer from an event for reuse (optional; avoids
    /// allocation at a steady call rate).
    pub fn recycle(&mut self, buf: Vec<u8>) {
        self.pool.put(buf);
    }

    /// Serves `service`: requests for it become `Event::Request`; beyond
    /// `max_in_flight` unanswered ones, callers get `BACKPRESSURE`.
    pub fn register_service(&mut self, service: ServiceId, max_in_flight: u32) {
        self.services.register(service, max_in_flight);
    }

    /// Stops serving `service`: new requests get `NOT_FOUND`.
    pub fn unregister_service(&mut self, service: ServiceId) {
        self.services.unregister(service);
    }

    fn with_session<T>(
        &mut self,
        now: Instant,
        session: SessionId,
        f: impl FnOnce(&mut Session, &mut Ctx<'_>) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let s = self
            .sessions
            .get_mut(&session.0)
            .ok_or(ApiError::UnknownSession)?;
        let r = f(s, &mut ctx!(self, now));
        self.touch(session.0);
        r
    }

    /// Opens a call. Its outcome arrives as `Event::Response` (and, for
    /// server-streaming calls, `Event::Message`s before it). The body is
    /// copied from a slice, or taken from a vector without a copy when large
    /// ([`Payload`]).
    pub fn call<'p>(
        &mut self,
        now: Instant,
        session: SessionId,
        service: ServiceId,
        kind: CallKind,
        deadline: Option<Instant>,
        payload: impl Into<Payload<'p>>,
    ) -> Result<CallId, ApiError> {
        let payload = payload.into();
        self.with_session(now, session, |s, ctx| {
            s.open_call(ctx, service, kind, deadline, payload)
        })
    }

    /// Answers a call delivered as `Event::Request`.
    pub fn respond(
        &mut self,
        now: Instant,
        session: SessionId,
        call: CallId,
        status: Status,
        payload: &[u8],
    ) -> Result<(), ApiError> {
        self.with_session(now, session, |s, ctx| s.respond(ctx, call, status, payload))
    }

    /// Sends a stream message on a call (either role, if the call kind streams that way).
    pub fn send_message(
        &mut self,
        now: Instant,
        session: SessionId,
        call: CallId,
        payload: &[u8],
    ) -> Result<(), ApiError> {
        self.with_session(now, session, |s, ctx| s.send_message(ctx, call, payload))
    }

    /// Caller: no more stream messages on this call.
    pub fn finish_stream(
        &mut self,
        now: Instant,
        session: SessionId,
        call: CallId,
    ) -> Result<(), ApiError> {
        self.with_session(now, session, |s, _| s.finish_stream(call))
    }

    /// Caller: abandons a call; the callee sees `Event::Cancelled`.
    pub fn cancel(
        &mut self,
        now: Instant,
        session: SessionId,
        call: CallId,
    ) -> Result<(), ApiError> {
        self.with_session(now, session, |s, ctx| {
            s.cancel_call(ctx, call, Status::CANCELLED)
        })
    }

    /// Switches the incoming stream of `call` (a server stream this side
    /// called, or a client stream it serves) to credit on consumption:
    /// from now on the peer gets more credit only as the application
    /// reports what it read with [`consumed`](Self::consumed), counted from
    /// the start of the stream (messages delivered before this call
    /// included). Without it, credit follows delivery as `Event::Message`.
    /// Idempotent. `UnknownCall`, or `InvalidForCall` if the peer does not
    /// stream on this call.
    pub fn defer_credit(&mut self, session: SessionId, call: CallId) -> Result<(), ApiError> {
        self.sessions
            .get_mut(&session.0)
            .ok_or(ApiError::UnknownSession)?
            .defer_credit(call)
    }

    /// The application read `msgs` more messages of `call`'s incoming
    /// stream, `bytes` payload bytes in total (after
    /// [`defer_credit`](Self::defer_credit)). Each message costs its bytes
    /// plus `MESSAGE_CHARGE` credit units; reports beyond what was
    /// delivered are clamped. May queue a CREDIT frame. `UnknownCall` once
    /// the call is gone (harmless), `InvalidForCall` if credit was not
    /// deferred.
    pub fn consumed(
        &mut self,
        now: Instant,
        session: SessionId,
        call: CallId,
        msgs: u64,
        bytes: u64,
    ) -> Result<(), ApiError> {
        self.with_session(now, session, |s, _| s.consume_credit(call, msgs, bytes))
    }

    /// Stream payload bytes held by every call of every session, recounted
    /// (O(calls)): what `stats().stream_bytes_buffered` tracks incrementally.
    pub fn stream_bytes_held(&self) -> u64 {
        self.sessions.values().map(|s| s.stream_bytes_held()).sum()
    }

    /// Test hook for hostile-peer tests, never used in production: this
    /// side's STREAM_DATA on `call` carries `offset` instead of the true
    /// offset (if `Some`), messages below `withhold` are never written, and
    /// a caller does not wait for its request's acknowledgement.
    #[doc(hidden)]
    pub fn testing_forge_stream(
        &mut self,
        session: SessionId,
        call: CallId,
        offset: Option<u64>,
        withhold: u64,
    ) -> Result<(), ApiError> {
        self.sessions
            .get_mut(&session.0)
            .ok_or(ApiError::UnknownSession)?
            .forge_stream(call, offset, withhold)
    }

    /// Sends an opaque ANNOUNCE payload reliably.
    pub fn announce(
        &mut self,
        now: Instant,
        session: SessionId,
        payload: &[u8],
    ) -> Result<(), ApiError> {
        self.with_session(now, session, |s, ctx| s.queue_announce(ctx, payload))
    }

    /// Closes a session with `code`: CLOSE goes out in the next packet.
    pub fn close(&mut self, now: Instant, session: SessionId, code: u16) -> Result<(), ApiError> {
        self.with_session(now, session, |s, ctx| {
            s.close_with(ctx, code);
            Ok(())
        })
    }

    /// Which side of `session` this endpoint is.
    pub fn session_side(&self, session: SessionId) -> Option<Side> {
        self.sessions.get(&session.0).map(Session::side)
    }
}

/// Moves the next fixed-size datagram of `queue` into `buf`, if `buf` can
/// hold it (else it stays queued).
fn take_fixed<const N: usize>(
    queue: &mut VecDeque<(SocketAddr, [u8; N])>,
    buf: &mut [u8],
) -> Option<(SocketAddr, usize)> {
    let out = buf.get_mut(..N)?;
    let (dst, bytes) = queue.pop_front()?;
    out.copy_from_slice(&bytes);
    Some((dst, N))
}
