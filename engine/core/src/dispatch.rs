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
use net_proto::{ApiError, CallKind, ServiceId, SessionId, Status};

use crate::core_loop::{Core, Waiter};
use crate::handler::{CallHandle, CallRef};
use crate::inbox::CallRequest;

/// A call not yet handed to the endpoint (waiting for call credit).
pub(crate) struct Pending {
    pub peer: NodeId,
    pub service: ServiceId,
    pub kind: CallKind,
    pub deadline: Option<Instant>,
    pub payload: Vec<u8>,
    pub waiter: Waiter,
}

impl From<CallRequest> for Pending {
    fn from(r: CallRequest) -> Self {
        Pending {
            peer: r.peer,
            service: r.service,
            kind: r.kind,
            deadline: r.deadline,
            payload: r.payload,
            waiter: Waiter::Events(r.events),
        }
    }
}

fn status_of(e: ApiError) -> Status {
    match e {
        ApiError::PayloadTooLarge { .. } => Status::PAYLOAD_TOO_LARGE,
        ApiError::CallsBlocked => Status::BACKPRESSURE,
        _ => Status::UNAVAILABLE,
    }
}

impl Core {
    /// This core's session to `peer`, connecting if it is a configured peer.
    fn session_for(&mut self, now: Instant, peer: NodeId) -> Option<SessionId> {
        if let Some(&s) = self.sessions.get(&peer) {
            if self.ep.session_peer(s).is_some() {
                return Some(s);
            }
            self.sessions.remove(&peer);
        }
        let cfg = *self.peers.get(&peer)?;
        let s = self.ep.connect(now, cfg.identity, cfg.addr).ok()?;
        self.sessions.insert(peer, s);
        Some(s)
    }

    pub(crate) fn open_call(&mut self, now: Instant, p: Pending) {
        if self.draining.is_some() {
            return self.refuse(now, p, Status::UNAVAILABLE);
        }
        let Some(session) = self.session_for(now, p.peer) else {
            return self.refuse(now, p, Status::UNAVAILABLE);
        };
        let queue = self.backlog.entry(session).or_default();
        if !queue.is_empty() {
            queue.push_back(p);
            return;
        }
        self.issue(now, session, p);
    }

    /// Hands a call to the endpoint, or puts it back at the head of the
    /// backlog when credit is exhausted (then returns false).
    fn issue(&mut self, now: Instant, session: SessionId, p: Pending) -> bool {
        match self
            .ep
            .call(now, session, p.service, p.kind, p.deadline, &p.payload)
        {
            Ok(call) => {
                // The endpoint copied the body; keep the buffer for the next
                // on-core call (SDK buffers go to the endpoint's pool).
                match p.waiter {
                    Waiter::App { .. } => {
                        if let Some(buf) = self.app.recycle(p.payload) {
                            self.ep.recycle(buf);
                        }
                    }
                    Waiter::Events(_) => self.ep.recycle(p.payload),
                }
                let mut waiter = p.waiter;
                if let Waiter::Events(e) = &mut waiter {
                    let replies = matches!(p.kind, CallKind::ServerStream | CallKind::Duplex);
                    if replies && e.credit_on_consume() {
                        // Just opened, and the callee streams: cannot fail.
                        let deferred = self.ep.defer_credit(session, call);
                        debug_assert!(deferred.is_ok(), "{deferred:?}");
                    }
                    let streams = matches!(p.kind, CallKind::ClientStream | CallKind::Duplex);
                    let flow = self.new_flow((session, call), streams);
                    e.opened(CallHandle(CallRef {
                        inbox: self.inbox.clone(),
                        session,
                        call,
                        flow,
                    }));
                }
                self.waiting.insert((session, call), waiter);
            }
            Err(ApiError::CallsBlocked) => {
                self.backlog.entry(session).or_default().push_front(p);
                return false;
            }
            Err(e) => self.refuse(now, p, status_of(e)),
        }
        true
    }

    pub(crate) fn refuse(&mut self, now: Instant, p: Pending, status: Status) {
        self.stats.calls_refused += 1;
        self.complete(now, p.waiter, status, &[]);
        self.ep.recycle(p.payload);
    }

    /// Issues backlogged calls while credit lasts.
    pub(crate) fn drain_backlog(&mut self, now: Instant, session: SessionId) {
        while let Some(p) = self.backlog.get_mut(&session).and_then(VecDeque::pop_front) {
            if !self.issue(now, session, p) {
                break;
            }
        }
    }

    pub(crate) fn complete(
        &mut self,
        now: Instant,
        waiter: Waiter,
        status: Status,
        payload: &[u8],
    ) {
        self.stats.calls_completed += 1;
        match waiter {
            Waiter::Events(mut e) => e.complete(status, payload),
            Waiter::App { token, gen } => self.app.response(now, gen, token, status, payload),
        }
    }

    pub(crate) fn issue_app_calls(&mut self, now: Instant) {
        while let Some((peer, service, token, payload)) = self.app.take_call() {
            let p = Pending {
                peer,
                service,
                kind: CallKind::Unary,
                deadline: None,
                payload,
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
