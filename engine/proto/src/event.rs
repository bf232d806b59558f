//! What the endpoint tells the application ([`Endpoint::poll_event`](crate::Endpoint::poll_event)).

use std::fmt;
use std::time::{Duration, Instant};

use net_crypto::NodeId;
use thiserror::Error;

use crate::detector::PeerState;
use crate::handshake::HandshakeError;
use crate::ids::{CallId, CallKind, ReceiverIndex, ServiceId, Status};
use crate::stream::StreamViolation;
use crate::wire::WireError;

/// A session, named by the receiver index this endpoint chose for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub ReceiverIndex);

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "session {}", self.0)
    }
}

/// Why a session ended.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// Nothing was received for the idle timeout.
    #[error("idle timeout")]
    Idle,
    /// The application closed it.
    #[error("closed locally")]
    Local,
    /// The peer sent CLOSE with this code.
    #[error("closed by peer (code {0})")]
    Peer(u16),
    /// The handshake did not complete.
    #[error("handshake failed: {0}")]
    Handshake(HandshakeError),
    /// The peer sent a packet that authenticated but broke the protocol.
    #[error("protocol violation: {0}")]
    Protocol(ProtocolViolation),
    /// The packet counter is exhausted (after 2^62 packets).
    #[error("packet counter exhausted")]
    CounterExhausted,
    /// A newer session to the same peer and lane replaced this one.
    #[error("superseded by a newer session")]
    Superseded,
    /// The peer lost its state (crash or restart) and said so with a valid
    /// stateless reset: it no longer knows this session.
    #[error("peer reset (it restarted and lost the session)")]
    PeerReset,
    /// The session table was full and this unreserved peer's session gave
    /// way to a new one (see the admission policy of the endpoint).
    #[error("evicted from a full session table")]
    Evicted,
}

/// Why a call ended without an answer from its callee: the engine's own
/// verdict, given with the status (`Unavailable`, `Timeout`, ...) so the
/// caller learns the cause, not only that it failed.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Cause {
    /// The call's deadline passed before the answer arrived.
    #[error("deadline exceeded")]
    Deadline,
    /// The session's handshake did not complete (no answer, only cookies,
    /// a response that did not authenticate, ...): the call never left.
    #[error("handshake: {0}")]
    Handshake(HandshakeError),
    /// The peer restarted and lost the call's session (a valid stateless
    /// reset): the call may or may not have run there before the crash.
    #[error("peer reset (it restarted; the call's outcome is unknown)")]
    PeerReset,
    /// The session carrying the call ended otherwise (the reason says how:
    /// handshake failure, idle timeout, eviction, closed by the peer, ...).
    #[error("session ended: {0}")]
    Session(CloseReason),
    /// The failure detector holds the peer down: calls fail at once until
    /// it is heard from again.
    #[error("peer down (no sign of life within the failure detector's bound)")]
    PeerDown,
    /// This node is shutting down, or the core that held the call stopped.
    #[error("this node is shutting down")]
    Shutdown,
    /// The peer is not configured on this node: there is no address to
    /// reach it at.
    #[error("peer not configured on this node (no address)")]
    UnknownPeer,
    /// The session table is full and no session could be evicted for a
    /// new one to this peer.
    #[error("session table full")]
    TooManySessions,
    /// Routing by service name found no node advertising the service.
    #[error("no node advertises the service")]
    NoProvider,
    /// Routing by service name found only providers this node does not
    /// trust for the service (no allow-list entry, no `nrpc-serve:` token).
    #[error(
        "no trusted provider among {advertising} node(s) advertising the service (trust one \
         with an allow-list or a token chain scoped `nrpc-serve:<service>`; \
         call_service_untrusted opts out)"
    )]
    NoTrustedProvider {
        /// Nodes advertising the service, none of them trusted.
        advertising: usize,
    },
}

impl From<CloseReason> for Cause {
    /// A session's end as a call's cause (`PeerReset` is its own cause).
    fn from(reason: CloseReason) -> Self {
        match reason {
            CloseReason::PeerReset => Cause::PeerReset,
            CloseReason::Handshake(e) => Cause::Handshake(e),
            other => Cause::Session(other),
        }
    }
}

/// An authenticated peer broke a rule; the session is closed with this.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolViolation {
    /// A frame did not decode.
    #[error("malformed frame: {0}")]
    Frame(#[from] WireError),
    /// Stream flow control or framing.
    #[error("stream: {0}")]
    Stream(#[from] StreamViolation),
    /// A call number beyond the call credit we granted.
    #[error("call credit exceeded")]
    CallCredit,
    /// A packet larger than the `max_datagram` we announced.
    #[error("datagram larger than the announced maximum")]
    DatagramTooLarge,
    /// A frame only the other role may send (e.g. a response to a call we never made).
    #[error("frame not valid for the call's role")]
    WrongRole,
    /// A segmented body broke its rules (`docs/PROTOCOL.md` §3.15).
    #[error("segment: {0}")]
    Segment(#[from] SegmentViolation),
}

/// How a peer broke the rules for segmented bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum SegmentViolation {
    /// A body longer than the `max_message` we announced.
    #[error("body larger than the announced maximum")]
    TooLarge,
    /// Pieces (or the carrier) of one body disagree on its total length.
    #[error("pieces disagree on the body's length")]
    TotalMismatch,
    /// A new body would take reassembly beyond the window we announced.
    #[error("reassembly window exceeded")]
    Window,
    /// A piece for a stream message the stream can never carry (past its
    /// end, or on a call kind where that side does not stream).
    #[error("segment for a message the stream cannot have")]
    NoSuchMessage,
}

/// Output of the endpoint for the application.
#[derive(Debug, PartialEq)]
pub enum Event {
    /// A session's handshake completed and keys are confirmed.
    Connected {
        /// The session.
        session: SessionId,
        /// Authenticated peer.
        peer: NodeId,
    },
    /// The session is gone; calls it carried completed with a status first.
    Closed {
        /// The session.
        session: SessionId,
        /// Authenticated (or, for a failed handshake, intended) peer.
        peer: NodeId,
        /// Why.
        reason: CloseReason,
    },
    /// A peer opened a call to a registered service: run the handler, then
    /// [`respond`](crate::Endpoint::respond). Emitted exactly once per call.
    Request {
        /// The session.
        session: SessionId,
        /// The call.
        call: CallId,
        /// Which service.
        service: ServiceId,
        /// Unary or streaming.
        kind: CallKind,
        /// When the caller stops waiting, if it set a deadline.
        deadline: Option<Instant>,
        /// Request body; give it back with [`recycle`](crate::Endpoint::recycle).
        payload: Vec<u8>,
    },
    /// Final result of a call this endpoint made.
    Response {
        /// The session.
        session: SessionId,
        /// The call.
        call: CallId,
        /// Outcome.
        status: Status,
        /// Response body (empty unless the handler returned one).
        payload: Vec<u8>,
        /// `None` if the callee answered; otherwise why the endpoint ended
        /// the call itself (deadline, session closed).
        cause: Option<Cause>,
    },
    /// The next stream message of a call, in order.
    Message {
        /// The session.
        session: SessionId,
        /// The call.
        call: CallId,
        /// Message body.
        payload: Vec<u8>,
    },
    /// The peer finished its stream on a call (client half-close).
    StreamFinished {
        /// The session.
        session: SessionId,
        /// The call.
        call: CallId,
    },
    /// A stream that was refused for lack of credit can take more now.
    Writable {
        /// The session.
        session: SessionId,
        /// The call.
        call: CallId,
    },
    /// Server side: the caller cancelled, or the call's deadline passed; do
    /// not respond.
    Cancelled {
        /// The session.
        session: SessionId,
        /// The call.
        call: CallId,
        /// `CANCELLED` or `TIMEOUT`.
        status: Status,
    },
    /// Call credit was exhausted and the peer granted more.
    CallsAvailable {
        /// The session.
        session: SessionId,
    },
    /// The failure detector changed its view of a peer (see
    /// [`crate::detector`]). On `Down`, the calls we made to the peer have
    /// already failed (`Cause::PeerDown`); its sessions stay open, and the
    /// first authenticated packet from it makes it `Up` again.
    PeerState {
        /// The peer.
        peer: NodeId,
        /// Its new state.
        state: PeerState,
        /// How long it had been silent when the state changed.
        silent_for: Duration,
    },
    /// A handshake was refused or did not complete on the responder side
    /// (wrong identity in mac1, a different PSK, replay, overload, ...):
    /// for the operator's log. Rate-limited (see
    /// `EndpointStats::handshake_rejects_unreported`); every rejection is
    /// counted in the stats regardless.
    HandshakeRejected {
        /// Where the handshake came from.
        src: std::net::SocketAddr,
        /// The identity the initiator claimed (authenticated only for
        /// [`HandshakeError::Unconfirmed`] and later errors).
        peer: Option<NodeId>,
        /// Why.
        error: HandshakeError,
    },
    /// An ANNOUNCE payload from the peer (opaque at this layer).
    Announce {
        /// The session.
        session: SessionId,
        /// Authenticated sender.
        peer: NodeId,
        /// Payload.
        payload: Vec<u8>,
    },
}

/// Why the endpoint refused an application request.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ApiError {
    /// No such session (closed, or never existed).
    #[error("unknown session")]
    UnknownSession,
    /// No such call, or it already completed.
    #[error("unknown call")]
    UnknownCall,
    /// The peer's call credit is exhausted; wait for [`Event::CallsAvailable`].
    #[error("call credit exhausted")]
    CallsBlocked,
    /// Stream credit is exhausted; wait for [`Event::Writable`].
    #[error("stream credit exhausted")]
    StreamBlocked,
    /// The payload does not fit in one packet.
    #[error("payload of {len} bytes exceeds the limit of {max}")]
    PayloadTooLarge {
        /// Offered size.
        len: usize,
        /// Largest accepted.
        max: usize,
    },
    /// The operation does not apply to this call (kind or role), or the
    /// stream was already finished.
    #[error("operation not valid for this call")]
    InvalidForCall,
    /// Too many sessions.
    #[error("session limit reached")]
    TooManySessions,
}
