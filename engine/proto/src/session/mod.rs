//! One session with one peer: handshake phase, transport keys, reliability
//! and the calls it carries.
//!
//! The session is driven by the [`Endpoint`](crate::Endpoint); it never sees
//! sockets or clocks. Its phase is an explicit enum whose variants own the
//! state that only exists in that phase (an initiator has no keys, a
//! responder keeps its response until confirmed), so a data packet cannot be
//! sealed before keys exist and an initiation cannot be sent once they do.

mod acks;
mod calls;
mod reasm;
mod recv;
mod segsend;
mod send;
mod sent;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use net_crypto::{NodeId, PublicIdentity, Suite};

use crate::config::{EndpointConfig, TransportParams};
use crate::cookie::Cookie;
use crate::detector::PeerSlot;
use crate::event::{CloseReason, Event, SessionId};
use crate::handshake::{HandshakeError, Initiation, Negotiated, RESP_LEN};
use crate::ids::{CallId, ReceiverIndex, Side};
use crate::keys::TransportKeys;
use crate::pmtu::PathMtu;
use crate::pool::BufPool;
use crate::recovery::Ledger;
use crate::replay::ReplayWindow;
use crate::services::Services;
use crate::stats::EndpointStats;
use crate::stream::SeenWindow;
use crate::wire::RESET_TOKEN_LEN;
use crate::FastMap;

use acks::Acks;
pub(crate) use calls::Call;
pub(crate) use sent::Sent;

/// A responder session whose initiator never confirms is dropped after this.
const HALF_OPEN_TIMEOUT: Duration = Duration::from_secs(5);
/// Counters stop well short of wrapping (and of the varint range).
const MAX_COUNTER: u64 = 1 << 62;

/// Wall-clock nanoseconds at `now`, from `base` = (instant, wall-clock
/// nanoseconds at that instant): handshake timestamps and cookie epochs.
pub(crate) fn wall_nanos(base: (Instant, u64), now: Instant) -> u64 {
    let since = now.saturating_duration_since(base.0);
    base.1.saturating_add(since.as_nanos() as u64)
}

/// After losses or a probe timeout: falls back to the base datagram size
/// if the evidence says the path no longer carries the validated one.
fn check_black_hole(t: &mut Transport, ctx: &mut Ctx<'_>) {
    let evidence = (t.ledger.pto_count(), t.ledger.large_loss_streak());
    if t.pmtu.on_evidence(evidence, ctx.cfg.base_datagram) {
        t.ledger.reset_large_losses();
        ctx.stats.pmtu_black_holes += 1;
    }
}

/// Endpoint-wide state a session needs while handling input or output.
pub(crate) struct Ctx<'a> {
    /// The driver's clock reading for this input or output; never goes back.
    pub now: Instant,
    /// The endpoint's configuration.
    pub cfg: &'a EndpointConfig,
    /// Events for the application, in the order they happened.
    pub events: &'a mut VecDeque<Event>,
    /// The endpoint's counters.
    pub stats: &'a mut EndpointStats,
    /// Payload buffers for reuse.
    pub pool: &'a mut BufPool,
    /// Registered services and their in-flight admission.
    pub services: &'a mut Services,
    /// (instant, wall-clock nanoseconds at that instant): the base for
    /// handshake timestamps.
    pub wall_base: (Instant, u64),
}

impl Initiating {
    /// Why the handshake has not completed, as far as we can tell: a
    /// response that failed to authenticate means a different PSK; only
    /// cookies means the peer is under load; nothing at all, no answer.
    fn verdict(&self) -> HandshakeError {
        match self.last_error {
            Some(HandshakeError::Decrypt) => HandshakeError::WrongPsk,
            Some(e) => e,
            None if self.cookies > 0 => HandshakeError::CookieLoop {
                cookies: self.cookies,
            },
            None => HandshakeError::NoAnswer {
                attempts: self.attempts,
            },
        }
    }
}

/// Initiator waiting for the handshake response.
struct Initiating {
    /// The handshake state of the initiation in flight, taken by the first
    /// response to it (`None` before the first is written and after).
    init: Option<Initiation>,
    /// Build and send a fresh initiation at the next transmit opportunity.
    send_now: bool,
    /// Valid cookie replies received (the peer is under load).
    cookies: u32,
    /// The initiation in flight, kept to be retransmitted as is (same
    /// ephemeral key and timestamp) while `init` waits for its response, so
    /// a response to any copy completes the handshake; the responder
    /// answers a copy with its stored response.
    sent: Option<Box<[u8; crate::handshake::INIT_LEN]>>,
    /// First retransmission timeout (doubles per attempt): the configured
    /// `handshake_retry`, or twice the RTT last measured to this peer if
    /// that is longer, so a long path does not get every initiation twice.
    retry: Duration,
    /// Our reset token for this session's index, sent in every initiation.
    reset_token: [u8; RESET_TOKEN_LEN],
    /// Initiations written so far; the handshake gives up at
    /// `handshake_attempts`.
    attempts: u32,
    /// When the next initiation is due if no response came (backs off
    /// exponentially with `attempts`).
    retry_at: Instant,
    /// When the latest initiation was written (first RTT sample).
    sent_at: Instant,
    /// The latest handshake failure: the close reason if we give up.
    last_error: Option<HandshakeError>,
    /// mac1 of the initiation in flight: a cookie reply must be bound to it.
    /// Cleared by the first valid reply, so a replayed one does nothing.
    last_mac1: Option<[u8; 16]>,
    /// The responder's latest cookie and when it arrived.
    cookie: Option<(Cookie, Instant)>,
}

/// Keyed transport state, present once the handshake produced keys.
struct Transport {
    /// Packet protection for both directions, with key-phase updates.
    keys: TransportKeys,
    /// What the peer announced in the handshake; fixed.
    peer_params: TransportParams,
    /// The peer's token for its receiver index: a reset carrying it ends the
    /// session ([`crate::reset`]).
    peer_reset_token: [u8; RESET_TOKEN_LEN],
    /// Number of our next data packet; strictly increasing, below
    /// `MAX_COUNTER` (the session closes before it wraps).
    next_pn: u64,
    /// Packet numbers already opened: each is accepted once.
    replay: ReplayWindow,
    /// What we owe the peer in ACKs.
    acks: Acks,
    /// Our packets in flight, with the frames each carried, and the RTT.
    ledger: Ledger<Sent>,
    /// Path-MTU discovery: the size of the datagrams we send.
    pmtu: PathMtu,
}

impl Transport {
    fn new(cfg: &EndpointConfig, side: Side, peer: Negotiated, now: Instant) -> Self {
        let Negotiated {
            params: peer_params,
            keys,
            reset_token,
            peer_index: _,
        } = peer;
        let (send, recv) = match side {
            Side::Initiator => (keys.i2r, keys.r2i),
            Side::Responder => (keys.r2i, keys.i2r),
        };
        let suite = Suite::agree(cfg.params.aead_suites, peer_params.aead_suites);
        Transport {
            keys: TransportKeys::new((cfg.aead, suite), send, recv, now),
            peer_params,
            peer_reset_token: reset_token,
            next_pn: 0,
            replay: ReplayWindow::new(),
            acks: Acks::new(now),
            ledger: Ledger::new(
                0,
                cfg.initial_rtt,
                (cfg.params.max_ack_delay(), peer_params.max_ack_delay()),
                (cfg.congestion, cfg.base_datagram),
            ),
            pmtu: PathMtu::new(
                cfg.base_datagram,
                cfg.max_datagram.min(usize::from(peer_params.max_datagram)),
            ),
        }
    }
}

/// Where the session is in its life. Transitions are methods on [`Session`].
enum Phase {
    /// Initiator before the response.
    Initiating(Box<Initiating>),
    /// Responder with keys, until the initiator's first data packet confirms
    /// them. The response is kept to be sent once.
    Responding {
        /// Keys and transport state, as established.
        transport: Box<Transport>,
        /// The handshake response to send.
        response: Box<[u8; RESP_LEN]>,
        /// Written once; a lost response is recovered by the initiator's retry.
        response_sent: bool,
        /// The half-open session is dropped at this instant.
        expires: Instant,
    },
    /// Both sides hold confirmed keys.
    Established(Box<Transport>),
    /// Finished; the endpoint removes it.
    Closed,
}

/// Who the session is with and where it reaches them.
struct Peer {
    /// The peer's authenticated static identity (from the handshake, or the
    /// one we dialled).
    identity: PublicIdentity,
    /// `identity.node_id()`, computed once.
    node: NodeId,
    /// Where we send: the source of the latest authenticated packet.
    addr: SocketAddr,
    /// The initiator's lane (one session per peer and lane is confirmed).
    lane: u16,
    /// The peer's receiver index for this session (the header of every
    /// packet we send), from its handshake message; kept after the session
    /// closes so the endpoint can unlist it.
    index: Option<ReceiverIndex>,
    /// The smoothed RTT when the session closed, if it had keys.
    final_rtt: Option<Duration>,
}

/// Calls this side opens, and the peer's credit for them.
struct OwnCalls {
    /// Sequence number of our next call; never above `limit` (unless
    /// `testing_ignore_credit`).
    next_seq: u64,
    /// Calls numbered below this may be opened (the peer's CREDIT for calls).
    limit: u64,
    /// A call was refused for want of credit: `CallsAvailable` is due when
    /// the limit rises.
    blocked: bool,
}

/// Calls the peer opens, and the credit we give it.
struct PeerCalls {
    /// Every call number the peer has used (each gives at most one `Request`).
    seen: SeenWindow,
    /// Peer calls freed so far: each returns one unit of credit.
    closed: u64,
    /// The peer may open calls numbered below this (what we last granted).
    granted: u64,
    /// A CREDIT for calls with `granted` is due at the next transmit.
    credit_pending: bool,
}

/// ANNOUNCE payloads held until acknowledged.
struct Announces {
    /// (number, payload) in number order; an entry leaves when acknowledged.
    held: VecDeque<(u64, Vec<u8>)>,
    /// Number of the next announcement; numbers are never reused.
    next: u64,
}

impl Announces {
    /// The payload of announcement `n`, while held.
    fn get(&self, n: u64) -> Option<&[u8]> {
        self.held.iter().find(|(k, _)| *k == n).map(|(_, b)| &b[..])
    }

    /// Whether announcement `n` still awaits its acknowledgement.
    fn is_held(&self, n: u64) -> bool {
        self.held.iter().any(|(k, _)| *k == n)
    }

    /// Announcement `n` was acknowledged: drop it.
    fn release(&mut self, n: u64) {
        self.held.retain(|(k, _)| *k != n);
    }
}

/// Idle and keepalive timing.
struct Liveness {
    /// When the latest authenticated packet arrived (idle timeout base).
    last_recv: Instant,
    /// When we last sent a data packet (keepalive base).
    last_sent: Instant,
    /// A PING is due (PTO probe or keepalive); cleared by any packet that
    /// carries a frame.
    ping_pending: bool,
}

/// The endpoint's bookkeeping about this session, kept here so the
/// endpoint's ready queue and timer heap need no map of their own. Only
/// read and written through the methods the endpoint calls.
struct Slot {
    /// In the endpoint's ready queue (so it is pushed there at most once).
    queued: bool,
    /// The deadline last pushed to the endpoint's timer heap; a heap entry
    /// with another instant is stale.
    timer: Option<Instant>,
}

/// Reused lists for the frames one ACK or one loss timer hands back
/// (empty between uses: they only keep their allocation).
struct Scratch {
    /// Frames of packets one ACK acknowledged.
    acked: Vec<Sent>,
    /// Frames of packets declared lost (by an ACK or a timer).
    lost: Vec<Sent>,
}

/// One session with one peer.
pub(crate) struct Session {
    /// Our receiver index for this session (the endpoint's key for it).
    id: SessionId,
    /// Whether we initiated the session; fixed.
    side: Side,
    /// Who the peer is and where it is.
    peer: Peer,
    /// Handshake or transport state; see [`Phase`].
    phase: Phase,
    /// Calls of either role whose state is still held.
    calls: FastMap<CallId, Call>,
    /// Calls we open.
    ours: OwnCalls,
    /// Calls the peer opens.
    theirs: PeerCalls,
    /// Frames to (re)send, front first; entries whose state no longer needs
    /// sending are skipped when written.
    queue: VecDeque<Sent>,
    /// Call deadlines, earliest first; an entry whose call is gone or has
    /// another deadline is skipped.
    deadlines: BinaryHeap<Reverse<(Instant, CallId)>>,
    /// Announcements not yet acknowledged.
    announces: Announces,
    /// Idle and keepalive timing.
    liveness: Liveness,
    /// Send CLOSE with this code, then finish (set only once established).
    close_pending: Option<u16>,
    /// The endpoint's ready-queue and timer-heap bookkeeping.
    slot: Slot,
    /// The peer's slot in the endpoint's failure detector, once established
    /// (every authenticated packet is a heartbeat).
    watch: Option<PeerSlot>,
    /// Reused lists for frames acknowledged / lost.
    scratch: Scratch,
    /// Segmented bodies the peer is sending us, being put together.
    reasm: reasm::Reassembly,
    /// Segmented bodies we are sending.
    segs: segsend::SegSend,
}

impl Session {
    /// `peer` is (identity, address, lane).
    fn base(
        id: SessionId,
        side: Side,
        peer: (PublicIdentity, SocketAddr, u16),
        phase: Phase,
        now: Instant,
        cfg: &EndpointConfig,
    ) -> Self {
        let (identity, addr, lane) = peer;
        Session {
            id,
            side,
            peer: Peer {
                identity,
                node: identity.node_id(),
                addr,
                lane,
                index: None,
                final_rtt: None,
            },
            phase,
            calls: FastMap::default(),
            ours: OwnCalls {
                next_seq: 0,
                limit: 0,
                blocked: false,
            },
            theirs: PeerCalls {
                seen: SeenWindow::new(),
                closed: 0,
                granted: u64::from(cfg.params.max_calls),
                credit_pending: false,
            },
            queue: VecDeque::new(),
            deadlines: BinaryHeap::new(),
            announces: Announces {
                held: VecDeque::new(),
                next: 0,
            },
            liveness: Liveness {
                last_recv: now,
                last_sent: now,
                ping_pending: false,
            },
            close_pending: None,
            slot: Slot {
                queued: false,
                timer: None,
            },
            watch: None,
            scratch: Scratch {
                acked: Vec::new(),
                lost: Vec::new(),
            },
            reasm: Default::default(),
            segs: segsend::SegSend::new(cfg.testing_ignore_credit),
        }
    }

    /// A session we initiate; the first initiation goes out at the next
    /// transmit. `reset_token` is our token for `id` as seen from `addr`;
    /// `known_rtt` the RTT last measured to this peer, if any.
    pub fn initiator(
        id: SessionId,
        (peer, addr): (PublicIdentity, SocketAddr),
        (reset_token, known_rtt): ([u8; RESET_TOKEN_LEN], Option<Duration>),
        now: Instant,
        cfg: &EndpointConfig,
    ) -> Self {
        let init = Initiating {
            init: None,
            send_now: true,
            cookies: 0,
            sent: None,
            retry: known_rtt.map_or(cfg.handshake_retry, |rtt| cfg.handshake_retry.max(rtt * 2)),
            reset_token,
            attempts: 0,
            retry_at: now,
            sent_at: now,
            last_error: None,
            last_mac1: None,
            cookie: None,
        };
        let phase = Phase::Initiating(Box::new(init));
        let mut s = Session::base(id, Side::Initiator, (peer, addr, cfg.lane), phase, now, cfg);
        // Every peer grants at least this much, so calls can be queued before
        // the handshake tells us the real limit.
        s.ours.limit = u64::from(crate::config::MIN_MAX_CALLS);
        s
    }

    /// A session accepted from a valid initiation (`peer` is identity,
    /// address, lane); `response` is sent once.
    pub fn responder(
        id: SessionId,
        peer: (PublicIdentity, SocketAddr, u16),
        negotiated: Negotiated,
        response: [u8; RESP_LEN],
        now: Instant,
        cfg: &EndpointConfig,
    ) -> Self {
        let (max_calls, peer_index) = (negotiated.params.max_calls, negotiated.peer_index);
        let transport = Box::new(Transport::new(cfg, Side::Responder, negotiated, now));
        let phase = Phase::Responding {
            transport,
            response: Box::new(response),
            response_sent: false,
            expires: now + HALF_OPEN_TIMEOUT,
        };
        let mut s = Session::base(id, Side::Responder, peer, phase, now, cfg);
        s.ours.limit = u64::from(max_calls);
        s.peer.index = Some(peer_index);
        s
    }

    /// Initiator: a handshake response addressed to this session. Completes
    /// the handshake if it answers the initiation in flight; an error is
    /// counted and kept as the reason should the handshake give up.
    pub fn handle_handshake_response(
        &mut self,
        ctx: &mut Ctx<'_>,
        datagram: &[u8],
        own_mac1: &[u8; 32],
    ) {
        let Phase::Initiating(init) = &mut self.phase else {
            ctx.stats.handshake_error(&HandshakeError::UnknownIndex);
            return;
        };
        let Some(pending) = init.init.take() else {
            ctx.stats.handshake_error(&HandshakeError::UnknownIndex);
            return;
        };
        match pending.finish(datagram, own_mac1) {
            Ok(negotiated) => self.on_handshake_response(ctx, negotiated),
            Err(e) => {
                ctx.stats.handshake_error(&e);
                init.last_error = Some(e);
            }
        }
    }

    /// Initiator: the response arrived and produced keys.
    fn on_handshake_response(&mut self, ctx: &mut Ctx<'_>, negotiated: Negotiated) {
        let Phase::Initiating(init) = &self.phase else {
            return;
        };
        let params = negotiated.params;
        self.peer.index = Some(negotiated.peer_index);
        let mut t = Transport::new(ctx.cfg, Side::Initiator, negotiated, ctx.now);
        if init.attempts == 1 {
            // A clean exchange gives the first RTT sample (Karn: only if not retransmitted).
            let sample = ctx.now.saturating_duration_since(init.sent_at);
            t.ledger.rtt_sample(sample, Duration::ZERO);
        }
        self.ours.limit = u64::from(params.max_calls);
        self.on_peer_window(ctx, params.stream_window);
        self.phase = Phase::Established(Box::new(t));
        self.promote_bodies();
        self.liveness.last_recv = ctx.now;
        ctx.stats.handshakes_completed += 1;
        ctx.events.push_back(Event::Connected {
            session: self.id,
            peer: self.peer.node,
        });
    }

    /// Responder: the first authenticated data packet confirms the keys.
    fn confirm(&mut self, ctx: &mut Ctx<'_>) {
        let phase = std::mem::replace(&mut self.phase, Phase::Closed);
        self.phase = match phase {
            Phase::Responding { transport, .. } => {
                ctx.stats.handshakes_completed += 1;
                ctx.events.push_back(Event::Connected {
                    session: self.id,
                    peer: self.peer.node,
                });
                Phase::Established(transport)
            }
            other => other,
        };
    }

    fn transport(&self) -> Option<&Transport> {
        match &self.phase {
            Phase::Established(t) => Some(t),
            Phase::Responding { transport, .. } => Some(transport),
            _ => None,
        }
    }

    pub fn is_established(&self) -> bool {
        matches!(self.phase, Phase::Established(_))
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed)
    }

    pub fn is_half_open(&self) -> bool {
        matches!(self.phase, Phase::Responding { .. })
    }

    /// Ends the session: every call this side made completes with
    /// `UNAVAILABLE`-like status, server calls are abandoned, then `Closed`.
    pub fn close(&mut self, ctx: &mut Ctx<'_>, reason: CloseReason) {
        if self.is_closed() {
            return;
        }
        self.peer.final_rtt = self.rtt();
        self.phase = Phase::Closed;
        let mut ids: Vec<CallId> = self.calls.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            if let Some(call) = self.calls.remove(&id) {
                self.abandon_call(ctx, id, call, reason);
            }
        }
        ctx.stats.sessions_closed += 1;
        ctx.events.push_back(Event::Closed {
            session: self.id,
            peer: self.peer.node,
            reason,
        });
    }

    /// Whether `poll_transmit` has something for this session now.
    fn wants_transmit(&self) -> bool {
        match &self.phase {
            Phase::Initiating(i) => i.send_now,
            Phase::Responding { response_sent, .. } => !response_sent,
            Phase::Established(t) => {
                !self.queue.is_empty()
                    || self.liveness.ping_pending
                    || self.close_pending.is_some()
                    || self.theirs.credit_pending
                    || t.acks.due_now()
                    || (self.segs.has_active() && t.ledger.bulk_open())
                    || t.pmtu.wants_probe()
            }
            Phase::Closed => false,
        }
    }

    /// Earliest time [`on_timeout`](Self::on_timeout) has work.
    fn next_timeout(&self, cfg: &EndpointConfig) -> Option<Instant> {
        let t = match &self.phase {
            // While a fresh initiation is waiting to be written, the retry
            // timer is not armed (it would be in the past).
            Phase::Initiating(i) => {
                let retry = (!i.send_now).then_some(i.retry_at);
                let deadline = self.deadlines.peek().map(|Reverse((d, _))| *d);
                return [retry, deadline].into_iter().flatten().min();
            }
            Phase::Responding { expires, .. } => return Some(*expires),
            Phase::Closed => return None,
            Phase::Established(t) => t,
        };
        let next = [
            t.acks.timer(),
            t.ledger.loss_time(),
            t.ledger.pto_time(),
            t.keys.next_expiry(),
            self.deadlines.peek().map(|Reverse((d, _))| *d),
            Some(self.liveness.last_recv + cfg.idle_timeout),
            (!self.liveness.ping_pending)
                .then_some(self.liveness.last_sent + cfg.detector.heartbeat),
        ]
        .into_iter()
        .flatten()
        .min();
        if !self.segs.has_active() {
            return next;
        }
        // Bulk data held back by the pacer.
        next.into_iter().chain(t.ledger.pace_time()).min()
    }

    /// Runs whatever timers are due at `now`.
    fn on_timeout(&mut self, ctx: &mut Ctx<'_>) {
        let now = ctx.now;
        match &mut self.phase {
            Phase::Initiating(i) => {
                let retry_due = now >= i.retry_at;
                // Calls queued behind the handshake still time out on their deadline.
                self.expire_deadlines(ctx);
                let Phase::Initiating(i) = &mut self.phase else {
                    return;
                };
                if !retry_due {
                    return;
                }
                if i.attempts >= ctx.cfg.handshake_attempts {
                    let err = i.verdict();
                    self.close(ctx, CloseReason::Handshake(err));
                    return;
                }
                i.send_now = true;
            }
            Phase::Responding { expires, .. } => {
                if now >= *expires {
                    ctx.stats.handshake_error(&HandshakeError::Unconfirmed);
                    self.close(ctx, CloseReason::Handshake(HandshakeError::Unconfirmed));
                }
            }
            Phase::Established(_) => self.on_transport_timeout(ctx),
            Phase::Closed => {}
        }
    }

    fn on_transport_timeout(&mut self, ctx: &mut Ctx<'_>) {
        let now = ctx.now;
        if now >= self.liveness.last_recv + ctx.cfg.idle_timeout {
            self.close(ctx, CloseReason::Idle);
            return;
        }
        self.expire_deadlines(ctx);
        let Phase::Established(t) = &mut self.phase else {
            return;
        };
        t.keys.expire(now);
        t.acks.on_timeout(now);
        t.ledger.on_timeout(now);
        let mut lost = std::mem::take(&mut self.scratch.lost);
        if t.ledger.loss_time().is_some_and(|l| l <= now) {
            ctx.stats.packets_lost += t.ledger.detect_lost(now, |f| lost.push(f));
            check_black_hole(t, ctx);
        }
        if t.ledger.pto_time().is_some_and(|p| p <= now) {
            // A path-MTU probe that timed out is only a lost probe.
            if !t.ledger.on_pto(now, |f| lost.push(f)) {
                ctx.stats.ptos += 1;
                self.liveness.ping_pending = true;
                check_black_hole(t, ctx);
            }
        }
        if now >= self.liveness.last_sent + ctx.cfg.detector.heartbeat
            && !self.liveness.ping_pending
        {
            // A heartbeat: nothing went out for a whole interval.
            ctx.stats.keepalives_tx += 1;
            self.liveness.ping_pending = true;
        }
        for f in lost.drain(..) {
            self.on_lost(ctx, f);
        }
        self.scratch.lost = lost;
    }

    /// Our receiver index for this session.
    pub fn id(&self) -> SessionId {
        self.id
    }

    /// Whether we initiated the session.
    pub fn side(&self) -> Side {
        self.side
    }

    /// The peer's authenticated node id.
    pub fn peer_node(&self) -> NodeId {
        self.peer.node
    }

    /// (peer, lane): at most one confirmed responder session each.
    pub fn lane_key(&self) -> (NodeId, u16) {
        (self.peer.node, self.peer.lane)
    }

    /// Where the session's datagrams go.
    pub fn addr(&self) -> SocketAddr {
        self.peer.addr
    }

    /// Initiator still handshaking: why the handshake has not completed
    /// yet (see [`HandshakeError::NoAnswer`] and siblings).
    pub fn handshake_verdict(&self) -> Option<HandshakeError> {
        match &self.phase {
            Phase::Initiating(i) => Some(i.verdict()),
            _ => None,
        }
    }

    /// The peer's failure-detector slot, once watched.
    pub fn watch(&self) -> Option<PeerSlot> {
        self.watch
    }

    /// The endpoint watches the peer through `slot`.
    pub fn set_watch(&mut self, slot: PeerSlot) {
        self.watch = Some(slot);
    }

    /// The peer's receiver index, once keys exist (also after the close).
    pub fn peer_index(&self) -> Option<ReceiverIndex> {
        self.peer.index
    }

    /// Whether `token` is the peer's reset token for this session
    /// (constant time; never true before keys exist).
    pub fn is_reset_token(&self, token: &[u8; RESET_TOKEN_LEN]) -> bool {
        self.transport().is_some_and(|t| {
            subtle::ConstantTimeEq::ct_eq(&t.peer_reset_token[..], &token[..]).into()
        })
    }

    /// Calls (either role) whose state is still held.
    pub fn call_count(&self) -> usize {
        self.calls.len()
    }

    /// When the latest authenticated packet arrived.
    pub fn last_recv(&self) -> Instant {
        self.liveness.last_recv
    }

    /// The smoothed RTT the session had when it closed (keys existed).
    pub fn final_rtt(&self) -> Option<Duration> {
        self.peer.final_rtt
    }

    /// Smoothed RTT, once keys exist.
    pub fn rtt(&self) -> Option<Duration> {
        self.transport().map(|t| t.ledger.smoothed_rtt())
    }

    /// (congestion window, bytes in flight), once keys exist.
    pub fn congestion(&self) -> Option<(u64, u64)> {
        self.transport().map(|t| {
            let cc = t.ledger.congestion();
            (cc.window(), cc.in_flight())
        })
    }

    /// The AEAD suite agreed on, once keys exist.
    pub fn suite(&self) -> Option<Suite> {
        self.transport().map(|t| t.keys.suite())
    }

    /// Closes the session with `code`: an established session sends CLOSE in
    /// its next packet and then finishes; any other closes at once (`Local`).
    pub fn close_with(&mut self, ctx: &mut Ctx<'_>, code: u16) {
        if self.is_established() {
            self.close_pending = Some(code);
        } else {
            self.close(ctx, CloseReason::Local);
        }
    }

    /// Responder: the initiator sent its initiation again (our response
    /// was lost or slow): send the stored response once more.
    pub fn resend_response(&mut self) {
        if let Phase::Responding { response_sent, .. } = &mut self.phase {
            *response_sent = false;
        }
    }

    /// The endpoint's ready queue: whether to push this session there now
    /// (it wants to transmit and is not queued yet); marks it queued if so.
    pub fn enter_ready_queue(&mut self) -> bool {
        if !self.slot.queued && self.wants_transmit() {
            self.slot.queued = true;
            return true;
        }
        false
    }

    /// The endpoint took this session off its ready queue.
    pub fn leave_ready_queue(&mut self) {
        self.slot.queued = false;
    }

    /// Re-arms the session's timer after anything touched it; returns the
    /// instant to push to the endpoint's timer heap, if any. Only an earlier
    /// deadline is pushed: a later one would leave a stale entry per packet
    /// (the keepalive deadline moves with every send). The armed entry then
    /// fires early once and re-arms.
    pub fn rearm_timer(&mut self, cfg: &EndpointConfig) -> Option<Instant> {
        match (self.next_timeout(cfg), self.slot.timer) {
            (Some(t), Some(armed)) if t >= armed => None,
            (Some(t), _) => {
                self.slot.timer = Some(t);
                Some(t)
            }
            (None, _) => {
                self.slot.timer = None;
                None
            }
        }
    }

    /// Whether a timer-heap entry at `t` is this session's armed timer (and
    /// not a stale one).
    pub fn timer_armed_at(&self, t: Instant) -> bool {
        self.slot.timer == Some(t)
    }

    /// The armed timer fired: disarms it and runs what is due.
    pub fn fire_timer(&mut self, ctx: &mut Ctx<'_>) {
        self.slot.timer = None;
        self.on_timeout(ctx);
    }

    /// Queues an opaque ANNOUNCE payload for reliable delivery.
    pub fn queue_announce(
        &mut self,
        ctx: &mut Ctx<'_>,
        payload: &[u8],
    ) -> Result<(), crate::event::ApiError> {
        let max = self.max_payload(ctx.cfg);
        if payload.len() > max {
            return Err(crate::event::ApiError::PayloadTooLarge {
                len: payload.len(),
                max,
            });
        }
        let n = self.announces.next;
        self.announces.next += 1;
        self.announces
            .held
            .push_back((n, ctx.pool.copy_of(payload)));
        // Ahead of queued calls: a token or capability announcement sent on
        // connect must reach the peer before the calls that depend on it.
        self.queue.push_front(Sent::Announce(n));
        Ok(())
    }

    /// A path-MTU probe of `size` bytes was acknowledged (`carried`) or lost.
    fn on_mtu_probe(&mut self, now: Instant, size: usize, carried: bool) {
        if let Some(t) = self.transport_mut() {
            match carried {
                true => t.pmtu.on_probe_acked(size, now),
                false => t.pmtu.on_probe_lost(size, now),
            }
        }
    }

    /// Keys and transport state, once they exist (confirmed or not).
    fn transport_mut(&mut self) -> Option<&mut Transport> {
        match &mut self.phase {
            Phase::Established(t) => Some(t),
            Phase::Responding { transport, .. } => Some(transport),
            _ => None,
        }
    }

    /// The largest datagram we write to this peer: what path-MTU discovery
    /// validated (the base size until the handshake completes).
    pub fn datagram_budget(&self, cfg: &EndpointConfig) -> usize {
        if cfg.testing_ignore_credit {
            return cfg.max_datagram;
        }
        self.transport()
            .map_or(cfg.base_datagram, |t| t.pmtu.current())
    }

    /// The largest body the peer accepts (its `max_message`; our own before
    /// the handshake tells us), and the largest stream message a stream can
    /// carry (that, within the smaller stream window, less its charge).
    pub fn max_message(&self, cfg: &EndpointConfig) -> (usize, usize) {
        let (body, window) = match self.transport() {
            Some(t) => (
                t.peer_params.max_message,
                t.peer_params.stream_window.min(cfg.params.stream_window),
            ),
            None => (cfg.params.max_message, crate::config::MIN_STREAM_WINDOW),
        };
        let stream = u64::from(window).saturating_sub(crate::stream::MESSAGE_CHARGE);
        (body as usize, (stream as usize).min(body as usize))
    }

    /// The largest stream or unary message payload that fits one packet.
    pub fn max_payload(&self, cfg: &EndpointConfig) -> usize {
        // Header, tag, an ACK frame and the largest frame header.
        self.datagram_budget(cfg).saturating_sub(16 + 16 + 96 + 40)
    }
}
