//! Calls this core makes: the backlog of calls waiting for a session or
//! for call credit, issuing them to the endpoint, and completing waiters.
//!
//! Invariants:
//! * per session, calls are issued in the order they were opened: a call
//!   joins the back of a non-empty backlog, and only `drain_backlog` (on
//!   `Connected` and `CallsAvailable`) takes from its front;
//! * every waiter completes exactly once: a `Pending` is either issued
//!   (its waiter moves to `waiting`, completed by the response, the
//!   session's close or the core's exit) or refused (completed at once).

use std::collections::VecDeque;
use std::time::Instant;

use net_crypto::NodeId;
use net_proto::{ApiError, CallId, CallKind, Cause, FastMap, SessionId, Status};

use crate::config::PeerConfig;
use crate::core_loop::{Core, Waiter};
use crate::handler::{CallHandle, CallRef, CancelHandle};
use crate::inbox::CallRequest;
use crate::waiter::Body;

/// A call not yet handed to the endpoint (waiting for a session or call
/// credit).
pub(crate) type Pending = CallRequest;

type Key = (SessionId, CallId);

/// The calls this core makes and the sessions they go out on. Fields are
/// private to this module; the rest of the core uses the methods.
pub(crate) struct OwnCalls {
    /// The peers this node may connect to, by node id.
    peers: FastMap<NodeId, PeerConfig>,
    /// This core's session to each peer (per-core sessions).
    sessions: FastMap<NodeId, SessionId>,
    /// Calls waiting for a session or for call credit, per session, in the
    /// order they were opened.
    backlog: FastMap<SessionId, VecDeque<Pending>>,
    /// Who waits for each open call; removed exactly when the call
    /// completes (or is cancelled by its caller).
    waiting: FastMap<Key, Waiter>,
}

impl OwnCalls {
    /// No calls yet; `peers` are the ones this core may connect to.
    pub fn new(peers: FastMap<NodeId, PeerConfig>) -> Self {
        OwnCalls {
            peers,
            sessions: FastMap::default(),
            backlog: FastMap::default(),
            waiting: FastMap::default(),
        }
    }

    /// The session this core uses to reach `peer`, if any.
    pub fn session_of(&self, peer: &NodeId) -> Option<SessionId> {
        self.sessions.get(peer).copied()
    }

    /// A session to `peer` came up: use it unless one is already in use.
    pub fn adopt_session(&mut self, peer: NodeId, session: SessionId) {
        self.sessions.entry(peer).or_insert(session);
    }

    /// `session` to `peer` closed: forget it, and hand back the calls that
    /// were waiting for it (to be refused, or re-sent on a new session).
    pub fn session_closed(&mut self, peer: &NodeId, session: SessionId) -> VecDeque<Pending> {
        if self.sessions.get(peer) == Some(&session) {
            self.sessions.remove(peer);
        }
        self.backlog.remove(&session).unwrap_or_default()
    }

    /// The waiter of an open call, to deliver a stream message to.
    pub fn waiter_mut(&mut self, key: Key) -> Option<&mut Waiter> {
        self.waiting.get_mut(&key)
    }

    /// Takes the waiter of a call that ends now.
    pub fn take_waiter(&mut self, key: Key) -> Option<Waiter> {
        self.waiting.remove(&key)
    }

    /// Nothing in flight and nothing waiting.
    pub fn is_idle(&self) -> bool {
        self.waiting.is_empty() && self.backlog.values().all(VecDeque::is_empty)
    }

    /// Every waiter still open or backlogged (the core is exiting).
    pub fn drain_waiters(&mut self) -> Vec<Waiter> {
        let open = self.waiting.drain().map(|(_, w)| w);
        let queued = self.backlog.drain().flat_map(|(_, q)| q).map(|p| p.waiter);
        open.chain(queued).collect()
    }
}

/// The status a call refused by the endpoint completes with, and (for
/// failures of the engine's own making) why.
fn status_of(e: ApiError) -> (Status, Option<Cause>) {
    match e {
        ApiError::PayloadTooLarge { .. } => (Status::PAYLOAD_TOO_LARGE, None),
        ApiError::CallsBlocked => (Status::BACKPRESSURE, None),
        ApiError::TooManySessions => (Status::UNAVAILABLE, Some(Cause::TooManySessions)),
        _ => (
            Status::UNAVAILABLE,
            Some(Cause::Session(net_proto::CloseReason::Local)),
        ),
    }
}

impl Core {
    /// This core's session to `peer`, connecting if it is a configured peer.
    pub(crate) fn session_for(&mut self, now: Instant, peer: NodeId) -> Result<SessionId, Cause> {
        if let Some(&s) = self.own.sessions.get(&peer) {
            if self.ep.session_peer(s).is_some() {
                return Ok(s);
            }
            self.own.sessions.remove(&peer);
        }
        let cfg = *self.own.peers.get(&peer).ok_or(Cause::UnknownPeer)?;
        let s = self
            .ep
            .connect(now, cfg.identity, cfg.addr)
            .map_err(|_| Cause::TooManySessions)?;
        self.own.sessions.insert(peer, s);
        Ok(s)
    }

    pub(crate) fn open_call(&mut self, now: Instant, p: Pending) {
        if self.draining.is_some() {
            return self.refuse(now, p, Status::UNAVAILABLE, Some(Cause::Shutdown));
        }
        let session = match self.session_for(now, p.peer) {
            Ok(s) => s,
            Err(cause) => return self.refuse(now, p, Status::UNAVAILABLE, Some(cause)),
        };
        if self.ep.peer_state(&p.peer) == Some(net_proto::PeerState::Down) {
            // Fail fast; the session (kept, or just dialled) is the probe
            // that makes the peer Up again once it answers.
            return self.refuse(now, p, Status::UNAVAILABLE, Some(Cause::PeerDown));
        }
        let queue = self.own.backlog.entry(session).or_default();
        if !queue.is_empty() {
            queue.push_back(p);
            return;
        }
        self.issue(now, session, p);
    }

    /// Tells a remote caller its call is open: a unary receiver gets only
    /// a cancel handle (the core then keeps no flow for the call: no stream
    /// credit to track), an event sink a full [`CallHandle`].
    fn opened(&mut self, session: SessionId, call: CallId, kind: CallKind, w: &mut Waiter) {
        let e = match w {
            Waiter::App { .. } => return,
            Waiter::Unary(u) => {
                if let Some(u) = u.events() {
                    u.opened(CancelHandle {
                        inbox: self.inbox.clone(),
                        session,
                        call,
                    });
                }
                return;
            }
            Waiter::Events(e) => e.as_mut(),
        };
        let replies = matches!(kind, CallKind::ServerStream | CallKind::Duplex);
        if replies && e.credit_on_consume() {
            // Just opened, and the callee streams: cannot fail.
            let deferred = self.ep.defer_credit(session, call);
            debug_assert!(deferred.is_ok(), "{deferred:?}");
        }
        let streams = matches!(kind, CallKind::ClientStream | CallKind::Duplex);
        let flow = self.new_flow((session, call), streams);
        e.opened(CallHandle(CallRef {
            inbox: self.inbox.clone(),
            session,
            call,
            flow,
        }));
    }

    /// Hands a call to the endpoint, or puts it back at the head of the
    /// backlog when credit is exhausted (then returns false).
    fn issue(&mut self, now: Instant, session: SessionId, mut p: Pending) -> bool {
        let body = p.payload.payload();
        match self
            .ep
            .call(now, session, p.service, p.kind, p.deadline, body)
        {
            Ok(call) => {
                // The endpoint took a large body and copied a small one; keep
                // an owned buffer (emptied if taken) for the next on-core call.
                self.recycle_body(p.payload, &p.waiter);
                let mut waiter = p.waiter;
                self.opened(session, call, p.kind, &mut waiter);
                self.own.waiting.insert((session, call), waiter);
            }
            Err(ApiError::CallsBlocked) => {
                self.own.backlog.entry(session).or_default().push_front(p);
                return false;
            }
            Err(e) => {
                let (status, cause) = status_of(e);
                self.refuse(now, p, status, cause);
            }
        }
        true
    }

    /// Completes a call that never reached the endpoint with `status`, and
    /// `cause` if the failure is the engine's own.
    pub(crate) fn refuse(
        &mut self,
        now: Instant,
        p: Pending,
        status: Status,
        cause: Option<Cause>,
    ) {
        self.stats.calls_refused += 1;
        if let Some(buf) = p.payload.into_owned() {
            self.ep.recycle(buf);
        }
        self.complete(now, p.waiter, (status, cause), &[]);
    }

    /// Keeps a body buffer the core owns: the on-core app's for its next
    /// call, any other for the endpoint's pool.
    fn recycle_body(&mut self, body: Body, waiter: &Waiter) {
        let Some(buf) = body.into_owned() else {
            return;
        };
        let buf = match waiter {
            Waiter::App { .. } => self.app.recycle(buf),
            _ => Some(buf),
        };
        if let Some(buf) = buf {
            self.ep.recycle(buf);
        }
    }

    /// Issues backlogged calls while credit lasts.
    pub(crate) fn drain_backlog(&mut self, now: Instant, session: SessionId) {
        while let Some(p) = self
            .own
            .backlog
            .get_mut(&session)
            .and_then(VecDeque::pop_front)
        {
            if !self.issue(now, session, p) {
                break;
            }
        }
    }

    /// Completes a waiter with the callee's answer (`cause` `None`), or
    /// with the engine's own failure and its cause.
    pub(crate) fn complete(
        &mut self,
        now: Instant,
        waiter: Waiter,
        (status, cause): (Status, Option<Cause>),
        payload: &[u8],
    ) {
        self.stats.calls_completed += 1;
        match (waiter, cause) {
            (Waiter::App { token, gen }, _) => self.app.response(now, gen, token, status, payload),
            (w, Some(cause)) => w.fail(status, cause),
            (Waiter::Events(mut e), None) => e.complete(status, payload),
            (Waiter::Unary(u), None) => u.complete(status, payload),
        }
    }

    pub(crate) fn issue_app_calls(&mut self, now: Instant) {
        while let Some((peer, service, token, payload)) = self.app.take_call() {
            let p = Pending {
                peer,
                service,
                kind: CallKind::Unary,
                deadline: None,
                payload: Body::Owned(payload),
                waiter: Waiter::App {
                    token,
                    gen: self.app.gen(),
                },
            };
            self.open_call(now, p);
        }
        self.app.reap();
    }
}
