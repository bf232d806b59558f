//! Events from the protocol endpoint, on the core thread: requests to run,
//! responses and stream messages to deliver, sessions opening and closing.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use net_crypto::NodeId;
use net_proto::{CallId, Cause, CloseReason, Event, SessionId, Status};

use crate::core_loop::{Core, Waiter};
use crate::handler::{Handler, RequestInfo};

type Key = (SessionId, CallId);

impl Core {
    /// Handles every pending endpoint event. Returns whether there were any.
    pub(crate) fn dispatch_events(&mut self, now: Instant) -> bool {
        let mut any = false;
        while let Some(ev) = self.ep.poll_event() {
            any = true;
            self.event(now, ev);
        }
        if self.app.poll(now) {
            any = true;
            self.issue_app_calls(now);
        }
        any
    }

    fn event(&mut self, now: Instant, ev: Event) {
        match ev {
            Event::Request {
                session,
                call,
                service,
                kind,
                deadline,
                payload,
            } => {
                let peer = self.ep.session_peer(session).unwrap_or(NodeId([0; 32]));
                let info = RequestInfo {
                    peer,
                    service,
                    kind,
                    deadline,
                    core: self.index,
                };
                self.on_request(now, session, call, info, payload);
            }
            Event::Response {
                session,
                call,
                status,
                payload,
                cause,
            } => self.on_response(now, (session, call), (status, cause), payload),
            Event::Message {
                session,
                call,
                payload,
            } => self.on_message((session, call), payload),
            Event::StreamFinished { session, call } => {
                if let Some(s) = self.handoffs.sink_mut((session, call)) {
                    s.finished();
                }
            }
            Event::Writable { session, call } => self.flush_held(now, (session, call)),
            Event::Cancelled {
                session,
                call,
                status,
            } => self.end_served((session, call), status),
            Event::CallsAvailable { session } => self.drain_backlog(now, session),
            Event::Connected { session, peer } => self.on_connected(now, session, peer),
            Event::Closed {
                session,
                peer,
                reason,
            } => self.on_closed(now, session, peer, reason),
            Event::HandshakeRejected { src, peer, error } => {
                let claimed = peer.map(|p| p.short()).unwrap_or_else(|| "?".into());
                tracing::warn!(core = self.index, %src, claimed_peer = %claimed, %error, "handshake rejected");
            }
            Event::PeerState {
                peer,
                state,
                silent_for,
            } => self.on_peer_state(peer, state, silent_for),
            Event::Announce {
                session,
                peer,
                payload,
            } => {
                // Rejections are typed, counted in the trust stats and
                // logged there; the peer gets no answer by design.
                let _ = self.trust.on_announcement(&peer, session, &payload, now);
                self.ep.recycle(payload);
            }
        }
    }

    /// This core's failure detector changed its view of `peer`: logged by
    /// severity, and reported to the node's merged view.
    fn on_peer_state(
        &mut self,
        peer: NodeId,
        state: net_proto::PeerState,
        silent_for: std::time::Duration,
    ) {
        let (p, ms) = (peer.short(), silent_for.as_millis() as u64);
        match state {
            net_proto::PeerState::Up => {
                tracing::debug!(core = self.index, peer = %p, silent_ms = ms, "peer up")
            }
            net_proto::PeerState::Suspect => {
                tracing::info!(core = self.index, peer = %p, silent_ms = ms, "peer suspect")
            }
            _ => {
                tracing::warn!(core = self.index, peer = %p, silent_ms = ms, "peer down: calls to it fail at once until it is heard again")
            }
        }
        let e = net_proto::PeerEvent {
            peer,
            state,
            silent_for,
        };
        self.board.report(self.index, &e);
    }

    /// Queues an ANNOUNCE on one session. It fails only when the session is
    /// gone (closed meanwhile): its successor gets the announcement on
    /// `Connected`, so this is counted, not retried.
    pub(crate) fn announce_on(&mut self, now: Instant, session: SessionId, bytes: &[u8]) {
        if self.ep.announce(now, session, bytes).is_err() {
            self.stats.announces_skipped += 1;
        }
    }

    /// A caller's call ended: its waiter completes, exactly once (the
    /// waiter leaves `waiting` here, and nowhere else for a live call).
    fn on_response(
        &mut self,
        now: Instant,
        key: Key,
        (status, cause): (Status, Option<Cause>),
        payload: Vec<u8>,
    ) {
        let status = self.end_own(key, status);
        if let Some(w) = self.own.take_waiter(key) {
            self.complete(now, w, (status, cause), &payload);
        }
        self.ep.recycle(payload);
    }

    /// A stream message, to whichever side of the call this core holds.
    fn on_message(&mut self, key: Key, payload: Vec<u8>) {
        if let Some(Waiter::Events(e)) = self.own.waiter_mut(key) {
            e.message(&payload);
        } else if let Some(s) = self.handoffs.sink_mut(key) {
            s.message(&payload);
        }
        self.ep.recycle(payload);
    }

    /// A session is up: announce ourselves on it, then issue the calls
    /// that waited for it, in order.
    fn on_connected(&mut self, now: Instant, session: SessionId, peer: NodeId) {
        tracing::debug!(core = self.index, peer = %peer.short(), %session, "session open");
        self.own.adopt_session(peer, session);
        if let Some(bytes) = self.trust.current().map(<[u8]>::to_vec) {
            self.announce_on(now, session, &bytes);
        }
        if let Some(bytes) = self.trust.own_token().map(<[u8]>::to_vec) {
            self.announce_on(now, session, &bytes);
        }
        self.drain_backlog(now, session);
    }

    /// A session ended: every call on it ends now (backlogged calls are
    /// refused `Unavailable`, open ones end with the session). After a
    /// peer reset the peer is reachable again at once: this core
    /// handshakes anew right away, and the backlogged calls — never sent,
    /// so never executed — go out on the new session.
    fn on_closed(&mut self, now: Instant, session: SessionId, peer: NodeId, reason: CloseReason) {
        tracing::debug!(core = self.index, peer = %peer.short(), %session, %reason, "session closed");
        match reason {
            CloseReason::PeerReset => {
                tracing::info!(core = self.index, peer = %peer.short(), "peer reset (it restarted): calls in flight fail, handshaking again");
            }
            CloseReason::Protocol(_) => {
                tracing::warn!(core = self.index, peer = %peer.short(), %reason, "session closed: peer broke the protocol");
            }
            CloseReason::Evicted => {
                tracing::info!(core = self.index, peer = %peer.short(), "session evicted to make room (session table full)");
            }
            _ => {}
        }
        self.trust.session_closed(session);
        let ours = self.own.session_of(&peer) == Some(session);
        let backlog = self.own.session_closed(&peer, session);
        self.close_calls_of(session);
        if reason == CloseReason::PeerReset && self.draining.is_none() {
            // Only sessions this core dialled are re-dialled: a session the
            // peer opened is the peer's to reopen.
            if ours && self.session_for(now, peer).is_ok() {
                self.stats.reconnects += 1;
            }
            for p in backlog {
                self.open_call(now, p);
            }
            return;
        }
        let cause = Some(Cause::Session(reason));
        for p in backlog {
            self.refuse(now, p, Status::UNAVAILABLE, cause);
        }
    }

    fn on_request(
        &mut self,
        now: Instant,
        session: SessionId,
        call: net_proto::CallId,
        info: RequestInfo,
        payload: Vec<u8>,
    ) {
        let refusal = if self.draining.is_some() {
            Some(Status::UNAVAILABLE)
        } else if !self.trust.allows(info.service, &info.peer, session, now) {
            Some(Status::CAPABILITY_DENIED)
        } else {
            None
        };
        if let Some(status) = refusal {
            self.answer_now(now, (session, call), status);
            self.ep.recycle(payload);
            return;
        }
        // One lookup, and no handler clone on the inline (QPS) path.
        let ran = match self.handlers.get(&info.service).map(|s| &s.handler) {
            Some(Handler::Sync(h)) => {
                self.out.clear();
                let out = &mut self.out;
                catch_unwind(AssertUnwindSafe(|| h(&info, &payload, out)))
            }
            Some(Handler::Async(h)) => {
                let h = h.clone();
                return self.start_async(now, session, call, info, payload, &*h);
            }
            None => {
                self.answer_now(now, (session, call), Status::NOT_FOUND);
                self.ep.recycle(payload);
                return;
            }
        };
        let status = ran.unwrap_or_else(|_| {
            self.stats.handler_panics += 1;
            let name = self.service_name(info.service);
            tracing::error!(core = self.index, service = %name, "sync handler panicked; its call is answered Internal");
            self.out.clear();
            Status::INTERNAL
        });
        self.respond_or_refuse(now, session, call, status);
        self.stats.inline_handled += 1;
        self.ep.recycle(payload);
    }
}
