//! One session with one peer: handshake phase, transport keys, reliability
//! and the calls it carries.
//!
//! The session is driven by the [`Endpoint`](crate::Endpoint); it never sees
//! sockets or clocks. Its phase is an explicit enum whose variants own the
//! state that only exists in that phase (an initiator has no keys, a
//! responder keeps its response until confirmed), so a data packet cannot be
//! sealed before keys exist and an initiation cannot be sent once they do.

mod calls;
mod recv;
mod send;
mod sent;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use net_crypto::{NodeId, PublicIdentity, Suite};

use crate::config::{EndpointConfig, TransportParams};
use crate::cookie::Cookie;
use crate::event::{CloseReason, Event, SessionId};
use crate::handshake::{HandshakeError, Initiation, SessionKeys, RESP_LEN};
use crate::ids::{CallId, ReceiverIndex, Side};
use crate::keys::TransportKeys;
use crate::pool::BufPool;
use crate::ranges::RangeSet;
use crate::recovery::Ledger;
use crate::replay::ReplayWindow;
use crate::services::Services;
use crate::stats::EndpointStats;
use crate::stream::SeenWindow;
use crate::FastMap;

pub(crate) use calls::Call;
pub(crate) use sent::Sent;

/// Ranges of received packet numbers remembered for ACKs.
const ACK_RANGES: usize = 32;
/// Immediately acknowledge after this many ack-eliciting packets.
const ACK_EVERY: u32 = 2;
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

/// Endpoint-wide state a session needs while handling input or output.
pub(crate) struct Ctx<'a> {
    pub now: Instant,
    pub cfg: &'a EndpointConfig,
    pub events: &'a mut VecDeque<Event>,
    pub stats: &'a mut EndpointStats,
    pub pool: &'a mut BufPool,
    pub services: &'a mut Services,
    /// (instant, wall-clock nanoseconds at that instant): the base for
    /// handshake timestamps.
    pub wall_base: (Instant, u64),
}

/// Initiator waiting for the handshake response.
pub(crate) struct Initiating {
    pub init: Option<Initiation>,
    /// Build and send a fresh initiation at the next transmit opportunity.
    pub send_now: bool,
    pub attempts: u32,
    pub retry_at: Instant,
    pub sent_at: Instant,
    pub last_error: Option<HandshakeError>,
    /// mac1 of the initiation in flight: a cookie reply must be bound to it.
    /// Cleared by the first valid reply, so a replayed one does nothing.
    pub last_mac1: Option<[u8; 16]>,
    /// The responder's latest cookie and when it arrived.
    pub cookie: Option<(Cookie, Instant)>,
}

/// Keyed transport state, present once the handshake produced keys.
pub(crate) struct Transport {
    pub keys: TransportKeys,
    pub peer_index: ReceiverIndex,
    pub peer_params: TransportParams,
    pub next_pn: u64,
    pub replay: ReplayWindow,
    pub received: RangeSet,
    /// Something arrived since our last ACK.
    pub ack_dirty: bool,
    pub unacked_eliciting: u32,
    /// When the delayed ACK is due; cleared into `ack_now` when it fires.
    pub ack_deadline: Option<Instant>,
    /// An ACK must go out at the next transmit, alone if need be.
    pub ack_now: bool,
    pub largest_recv_time: Instant,
    pub ledger: Ledger<Sent>,
}

impl Transport {
    fn new(
        cfg: &EndpointConfig,
        side: Side,
        keys: SessionKeys,
        peer_index: ReceiverIndex,
        peer_params: TransportParams,
        now: Instant,
    ) -> Self {
        let (send, recv) = match side {
            Side::Initiator => (keys.i2r, keys.r2i),
            Side::Responder => (keys.r2i, keys.i2r),
        };
        let suite = Suite::agree(cfg.params.aead_suites, peer_params.aead_suites);
        Transport {
            keys: TransportKeys::new((cfg.aead, suite), send, recv, now),
            peer_index,
            peer_params,
            next_pn: 0,
            replay: ReplayWindow::new(),
            received: RangeSet::with_capacity_limit(ACK_RANGES),
            ack_dirty: false,
            unacked_eliciting: 0,
            ack_deadline: None,
            ack_now: false,
            largest_recv_time: now,
            ledger: Ledger::new(0, cfg.initial_rtt),
        }
    }
}

/// Where the session is in its life. Transitions are methods on [`Session`].
pub(crate) enum Phase {
    /// Initiator before the response.
    Initiating(Box<Initiating>),
    /// Responder with keys, until the initiator's first data packet confirms
    /// them. The response is kept to be sent once.
    Responding {
        transport: Box<Transport>,
        response: Box<[u8; RESP_LEN]>,
        response_sent: bool,
        expires: Instant,
    },
    /// Both sides hold confirmed keys.
    Established(Box<Transport>),
    /// Finished; the endpoint removes it.
    Closed,
}

/// One session with one peer.
pub(crate) struct Session {
    pub id: SessionId,
    pub side: Side,
    pub peer: PublicIdentity,
    pub peer_node: NodeId,
    pub addr: SocketAddr,
    pub lane: u16,
    pub phase: Phase,
    pub calls: FastMap<CallId, Call>,
    /// Our next call sequence and the peer's credit for our calls.
    pub next_call_seq: u64,
    pub call_limit: u64,
    pub calls_blocked: bool,
    /// Peer-opened calls.
    pub seen: SeenWindow,
    pub peer_calls_closed: u64,
    pub calls_granted: u64,
    pub call_credit_pending: bool,
    /// Frames to (re)send, front first; entries whose state no longer needs
    /// sending are skipped when written.
    pub queue: VecDeque<Sent>,
    pub deadlines: BinaryHeap<Reverse<(Instant, CallId)>>,
    pub announces: VecDeque<(u64, Vec<u8>)>,
    pub next_announce: u64,
    pub last_recv: Instant,
    pub last_sent: Instant,
    pub ping_pending: bool,
    /// Send CLOSE with this code, then finish.
    pub close_pending: Option<u16>,
    /// The endpoint's ready-queue membership (avoids duplicates there).
    pub queued: bool,
    /// Last deadline registered in the endpoint's timer heap.
    pub timer: Option<Instant>,
    /// Reused lists for frames acknowledged / lost by one ACK.
    pub scratch: Vec<Sent>,
    pub scratch_lost: Vec<Sent>,
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
        let (peer, addr, lane) = peer;
        Session {
            id,
            side,
            peer,
            peer_node: peer.node_id(),
            addr,
            lane,
            phase,
            calls: FastMap::default(),
            next_call_seq: 0,
            call_limit: 0,
            calls_blocked: false,
            seen: SeenWindow::new(),
            peer_calls_closed: 0,
            calls_granted: u64::from(cfg.params.max_calls),
            call_credit_pending: false,
            queue: VecDeque::new(),
            deadlines: BinaryHeap::new(),
            announces: VecDeque::new(),
            next_announce: 0,
            last_recv: now,
            last_sent: now,
            ping_pending: false,
            close_pending: None,
            queued: false,
            timer: None,
            scratch: Vec::new(),
            scratch_lost: Vec::new(),
        }
    }

    /// A session we initiate; the first initiation goes out at the next transmit.
    pub fn initiator(
        id: SessionId,
        peer: PublicIdentity,
        addr: SocketAddr,
        now: Instant,
        cfg: &EndpointConfig,
    ) -> Self {
        let init = Initiating {
            init: None,
            send_now: true,
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
        s.call_limit = u64::from(crate::config::MIN_MAX_CALLS);
        s
    }

    /// A session accepted from a valid initiation; `response` is sent once.
    #[allow(clippy::too_many_arguments)]
    pub fn responder(
        id: SessionId,
        peer: PublicIdentity,
        addr: SocketAddr,
        lane: u16,
        keys: SessionKeys,
        peer_index: ReceiverIndex,
        peer_params: TransportParams,
        response: [u8; RESP_LEN],
        now: Instant,
        cfg: &EndpointConfig,
    ) -> Self {
        let transport = Box::new(Transport::new(
            cfg,
            Side::Responder,
            keys,
            peer_index,
            peer_params,
            now,
        ));
        let phase = Phase::Responding {
            transport,
            response: Box::new(response),
            response_sent: false,
            expires: now + HALF_OPEN_TIMEOUT,
        };
        let mut s = Session::base(id, Side::Responder, (peer, addr, lane), phase, now, cfg);
        s.call_limit = u64::from(peer_params.max_calls);
        s
    }

    /// Initiator: the response arrived and produced keys.
    pub fn on_handshake_response(
        &mut self,
        ctx: &mut Ctx<'_>,
        keys: SessionKeys,
        peer_index: ReceiverIndex,
        params: TransportParams,
    ) {
        let Phase::Initiating(init) = &self.phase else {
            return;
        };
        let mut t = Transport::new(ctx.cfg, Side::Initiator, keys, peer_index, params, ctx.now);
        if init.attempts == 1 {
            // A clean exchange gives the first RTT sample (Karn: only if not retransmitted).
            t.ledger.rtt.update(
                ctx.now.saturating_duration_since(init.sent_at),
                Duration::ZERO,
            );
        }
        self.call_limit = u64::from(params.max_calls);
        self.on_peer_window(ctx, params.stream_window);
        self.phase = Phase::Established(Box::new(t));
        self.last_recv = ctx.now;
        ctx.stats.handshakes_completed += 1;
        ctx.events.push_back(Event::Connected {
            session: self.id,
            peer: self.peer_node,
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
                    peer: self.peer_node,
                });
                Phase::Established(transport)
            }
            other => other,
        };
    }

    pub fn transport(&self) -> Option<&Transport> {
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
        self.phase = Phase::Closed;
        let mut ids: Vec<CallId> = self.calls.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            if let Some(call) = self.calls.remove(&id) {
                self.abandon_call(ctx, id, call);
            }
        }
        ctx.stats.sessions_closed += 1;
        ctx.events.push_back(Event::Closed {
            session: self.id,
            peer: self.peer_node,
            reason,
        });
    }

    /// Whether `poll_transmit` has something for this session now.
    pub fn wants_transmit(&self) -> bool {
        match &self.phase {
            Phase::Initiating(i) => i.send_now,
            Phase::Responding { response_sent, .. } => !response_sent,
            Phase::Established(t) => {
                !self.queue.is_empty()
                    || self.ping_pending
                    || self.close_pending.is_some()
                    || self.call_credit_pending
                    || (t.ack_dirty && t.ack_now)
            }
            Phase::Closed => false,
        }
    }

    /// Earliest time [`on_timeout`](Self::on_timeout) has work.
    pub fn next_timeout(&self, cfg: &EndpointConfig) -> Option<Instant> {
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
        let max_ack_delay = t.peer_params.max_ack_delay();
        [
            t.ack_deadline.filter(|_| t.ack_dirty),
            t.ledger.loss_time(),
            t.ledger.pto_time(max_ack_delay),
            t.keys.next_expiry(),
            self.deadlines.peek().map(|Reverse((d, _))| *d),
            Some(self.last_recv + cfg.idle_timeout),
            (!self.ping_pending).then_some(self.last_sent + cfg.keepalive),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Runs whatever timers are due at `now`.
    pub fn on_timeout(&mut self, ctx: &mut Ctx<'_>) {
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
                    let err = i.last_error.unwrap_or(HandshakeError::Timeout);
                    self.close(ctx, CloseReason::Handshake(err));
                    return;
                }
                i.send_now = true;
            }
            Phase::Responding { expires, .. } => {
                if now >= *expires {
                    self.close(ctx, CloseReason::Handshake(HandshakeError::Timeout));
                }
            }
            Phase::Established(_) => self.on_transport_timeout(ctx),
            Phase::Closed => {}
        }
    }

    fn on_transport_timeout(&mut self, ctx: &mut Ctx<'_>) {
        let now = ctx.now;
        if now >= self.last_recv + ctx.cfg.idle_timeout {
            self.close(ctx, CloseReason::Idle);
            return;
        }
        self.expire_deadlines(ctx);
        let Phase::Established(t) = &mut self.phase else {
            return;
        };
        t.keys.expire(now);
        if t.ack_deadline.is_some_and(|d| d <= now) {
            t.ack_deadline = None;
            t.ack_now = true;
        }
        let max_ack_delay = t.peer_params.max_ack_delay();
        let mut lost = std::mem::take(&mut self.scratch_lost);
        if t.ledger.loss_time().is_some_and(|l| l <= now) {
            ctx.stats.packets_lost += t.ledger.detect_lost(now, |f| lost.push(f));
        }
        if t.ledger.pto_time(max_ack_delay).is_some_and(|p| p <= now) {
            ctx.stats.ptos += 1;
            t.ledger.on_pto(now, |f| lost.push(f));
            self.ping_pending = true;
        }
        if now >= self.last_sent + ctx.cfg.keepalive {
            self.ping_pending = true;
        }
        for f in lost.drain(..) {
            self.on_lost(ctx, f);
        }
        self.scratch_lost = lost;
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
        let n = self.next_announce;
        self.next_announce += 1;
        self.announces.push_back((n, ctx.pool.copy_of(payload)));
        // Ahead of queued calls: a token or capability announcement sent on
        // connect must reach the peer before the calls that depend on it.
        self.queue.push_front(Sent::Announce(n));
        Ok(())
    }

    /// The largest datagram we write to this peer: our limit for its path
    /// (loopback or not), within what it accepts.
    pub fn datagram_budget(&self, cfg: &EndpointConfig) -> usize {
        let path = if self.addr.ip().is_loopback() {
            cfg.loopback_max_datagram.max(cfg.max_datagram)
        } else {
            cfg.max_datagram
        };
        if cfg.testing_ignore_credit {
            return path;
        }
        let peer_max = self
            .transport()
            .map_or(usize::MAX, |t| usize::from(t.peer_params.max_datagram));
        path.min(peer_max)
    }

    /// The largest stream or unary message payload that fits one packet.
    pub fn max_payload(&self, cfg: &EndpointConfig) -> usize {
        // Header, tag, an ACK frame and the largest frame header.
        self.datagram_budget(cfg).saturating_sub(16 + 16 + 96 + 40)
    }
}
