//! Commands from the inbox and events from the endpoint, on the core thread.

use std::collections::VecDeque;
use std::time::Instant;

use net_crypto::NodeId;
use net_proto::{ApiError, CallKind, Event, ServiceId, SessionId, Status};

use crate::core_loop::{Core, Held, Waiter};
use crate::handler::{CallHandle, CallRef, CoreCx, Handler, IncomingCall, RequestInfo, Responder};
use crate::inbox::{CallRequest, Command};

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
    pub(crate) fn command(&mut self, now: Instant, cmd: Command) {
        match cmd {
            Command::Call(req) => self.open_call(now, req.into()),
            Command::Respond {
                session,
                call,
                status,
                payload,
            } => {
                if let Err(ApiError::PayloadTooLarge { .. }) =
                    self.ep.respond(now, session, call, status, &payload)
                {
                    let _ = self
                        .ep
                        .respond(now, session, call, Status::PAYLOAD_TOO_LARGE, &[]);
                }
                self.ep.recycle(payload);
            }
            Command::Send {
                session,
                call,
                payload,
            } => self.send_held(now, session, call, Held::Msg(payload)),
            Command::Finish { session, call } => self.send_held(now, session, call, Held::Finish),
            Command::Cancel { session, call } => {
                let _ = self.ep.cancel(now, session, call);
                self.waiting.remove(&(session, call));
                self.held.remove(&(session, call));
            }
            Command::Register {
                service,
                handler,
                max_in_flight,
                advert,
                ack,
            } => {
                self.handlers.insert(service, handler);
                self.ep.register_service(service, max_in_flight);
                self.trust.set_advert(service, Some(advert), now);
                let _ = ack.try_send(());
            }
            Command::Unregister { service, ack } => {
                self.handlers.remove(&service);
                self.ep.unregister_service(service);
                self.trust.set_advert(service, None, now);
                let _ = ack.try_send(());
            }
            Command::Stats(tx) => {
                let _ = tx.try_send(self.snapshot());
            }
            Command::App(mut app) => {
                let mut cx = CoreCx {
                    now,
                    calls: &mut self.app_calls,
                    spare: &mut self.spare,
                };
                app.start(&mut cx);
                self.app = Some(app);
                self.app_gen += 1;
                self.issue_app_calls(now);
            }
            Command::Shutdown { deadline } => self.draining = Some(deadline),
            Command::Announce {
                peer: None,
                payload,
            } => self.announce_all(now, &payload),
            Command::Announce {
                peer: Some(p),
                payload,
            } => {
                if let Some(&s) = self.sessions.get(&p) {
                    let _ = self.ep.announce(now, s, &payload);
                }
            }
        }
    }

    fn snapshot(&self) -> crate::CoreStats {
        let mut s = self.stats.clone();
        s.core = self.index;
        s.driver = self.driver.kind().to_string();
        s.io = self.driver.stats();
        s.proto = self.ep.stats().clone();
        s.inbox_wakes = self.inbox.wakes.load(std::sync::atomic::Ordering::Relaxed);
        s.trust = self.trust.stats.clone();
        s.open_calls = self.ep.call_count() as u64;
        s
    }

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
            return self.refuse(p, Status::UNAVAILABLE);
        }
        let Some(session) = self.session_for(now, p.peer) else {
            return self.refuse(p, Status::UNAVAILABLE);
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
                    Waiter::App { .. } if self.spare.len() < 1024 => self.spare.push(p.payload),
                    _ => self.ep.recycle(p.payload),
                }
                let mut waiter = p.waiter;
                if let Waiter::Events(e) = &mut waiter {
                    e.opened(CallHandle(CallRef {
                        inbox: self.inbox.clone(),
                        session,
                        call,
                    }));
                }
                self.waiting.insert((session, call), waiter);
            }
            Err(ApiError::CallsBlocked) => {
                self.backlog.entry(session).or_default().push_front(p);
                return false;
            }
            Err(e) => self.refuse(p, status_of(e)),
        }
        true
    }

    fn refuse(&mut self, p: Pending, status: Status) {
        self.stats.calls_refused += 1;
        self.complete(p.waiter, status, &[]);
        self.ep.recycle(p.payload);
    }

    /// Issues backlogged calls while credit lasts.
    fn drain_backlog(&mut self, now: Instant, session: SessionId) {
        while let Some(p) = self.backlog.get_mut(&session).and_then(VecDeque::pop_front) {
            if !self.issue(now, session, p) {
                break;
            }
        }
    }

    /// Stream items leave in order: once one waits for credit, later ones wait too.
    fn send_held(&mut self, now: Instant, session: SessionId, call: net_proto::CallId, item: Held) {
        let key = (session, call);
        self.held.entry(key).or_default().push_back(item);
        self.flush_held(now, key);
    }

    fn flush_held(&mut self, now: Instant, key: (SessionId, net_proto::CallId)) {
        let Some(q) = self.held.get_mut(&key) else {
            return;
        };
        while let Some(item) = q.pop_front() {
            let r = match &item {
                Held::Msg(m) => self.ep.send_message(now, key.0, key.1, m),
                Held::Finish => self.ep.finish_stream(now, key.0, key.1),
            };
            match r {
                Err(ApiError::StreamBlocked) => {
                    q.push_front(item);
                    return;
                }
                _ => {
                    if let Held::Msg(m) = item {
                        self.ep.recycle(m);
                    }
                }
            }
        }
        self.held.remove(&key);
    }

    fn complete(&mut self, waiter: Waiter, status: Status, payload: &[u8]) {
        self.stats.calls_completed += 1;
        match waiter {
            Waiter::Events(mut e) => e.complete(status, payload),
            Waiter::App { token, gen } => {
                if let Some(app) = self.app.as_mut().filter(|_| gen == self.app_gen) {
                    let mut cx = CoreCx {
                        now: Instant::now(),
                        calls: &mut self.app_calls,
                        spare: &mut self.spare,
                    };
                    app.response(&mut cx, token, status, payload);
                }
            }
        }
    }

    fn issue_app_calls(&mut self, now: Instant) {
        while let Some((peer, service, token, payload)) = self.app_calls.pop() {
            let p = Pending {
                peer,
                service,
                kind: CallKind::Unary,
                deadline: None,
                payload,
                waiter: Waiter::App {
                    token,
                    gen: self.app_gen,
                },
            };
            self.open_call(now, p);
        }
        if self.app.as_ref().is_some_and(|a| a.done()) {
            self.app = None;
        }
    }

    /// Handles every pending endpoint event. Returns whether there were any.
    pub(crate) fn dispatch_events(&mut self, now: Instant) -> bool {
        let mut any = false;
        while let Some(ev) = self.ep.poll_event() {
            any = true;
            self.event(now, ev);
        }
        if let Some(app) = self.app.as_mut() {
            let mut cx = CoreCx {
                now,
                calls: &mut self.app_calls,
                spare: &mut self.spare,
            };
            app.poll(&mut cx);
        }
        if !self.app_calls.is_empty() {
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
            } => {
                if let Some(w) = self.waiting.remove(&(session, call)) {
                    self.complete(w, status, &payload);
                }
                self.held.remove(&(session, call));
                self.ep.recycle(payload);
            }
            Event::Message {
                session,
                call,
                payload,
            } => {
                let key = (session, call);
                if let Some(Waiter::Events(e)) = self.waiting.get_mut(&key) {
                    e.message(&payload);
                } else if let Some(s) = self.served.get_mut(&key) {
                    s.message(&payload);
                }
                self.ep.recycle(payload);
            }
            Event::StreamFinished { session, call } => {
                if let Some(s) = self.served.get_mut(&(session, call)) {
                    s.finished();
                }
            }
            Event::Writable { session, call } => self.flush_held(now, (session, call)),
            Event::Cancelled {
                session,
                call,
                status,
            } => {
                if let Some(mut s) = self.served.remove(&(session, call)) {
                    s.complete(status, &[]);
                }
                self.held.remove(&(session, call));
            }
            Event::CallsAvailable { session } => self.drain_backlog(now, session),
            Event::Connected { session, peer } => {
                self.sessions.entry(peer).or_insert(session);
                if let Some(bytes) = self.trust.current() {
                    let _ = self.ep.announce(now, session, bytes);
                }
                if let Some(bytes) = self.trust.own_token() {
                    let _ = self.ep.announce(now, session, bytes);
                }
                self.drain_backlog(now, session);
            }
            Event::Closed {
                session,
                peer,
                reason,
            } => {
                if matches!(reason, net_proto::CloseReason::Protocol(_)) {
                    tracing::warn!(core = self.index, peer = %peer.short(), %reason, "session closed: peer broke the protocol");
                }
                self.on_closed(session, peer);
            }
            Event::Announce {
                session,
                peer,
                payload,
            } => {
                let _ = self.trust.on_announcement(&peer, session, &payload, now);
                self.ep.recycle(payload);
            }
        }
    }

    /// Sends the sync handler's answer (in `self.out`); one that does not
    /// fit a packet becomes `PayloadTooLarge` instead of leaving the caller
    /// waiting.
    fn respond_or_refuse(
        &mut self,
        now: Instant,
        session: SessionId,
        call: net_proto::CallId,
        status: Status,
    ) {
        if let Err(ApiError::PayloadTooLarge { .. }) =
            self.ep.respond(now, session, call, status, &self.out)
        {
            let _ = self
                .ep
                .respond(now, session, call, Status::PAYLOAD_TOO_LARGE, &[]);
        }
    }

    fn on_closed(&mut self, session: SessionId, peer: NodeId) {
        self.trust.session_closed(session);
        if self.sessions.get(&peer) == Some(&session) {
            self.sessions.remove(&peer);
        }
        if let Some(q) = self.backlog.remove(&session) {
            for p in q {
                self.refuse(p, Status::UNAVAILABLE);
            }
        }
        self.served.retain(|(s, _), _| *s != session);
        self.held.retain(|(s, _), _| *s != session);
    }

    fn on_request(
        &mut self,
        now: Instant,
        session: SessionId,
        call: net_proto::CallId,
        info: RequestInfo,
        payload: Vec<u8>,
    ) {
        if self.draining.is_some() {
            let _ = self
                .ep
                .respond(now, session, call, Status::UNAVAILABLE, &[]);
            self.ep.recycle(payload);
            return;
        }
        if !self.trust.allows(info.service, &info.peer, session, now) {
            let _ = self
                .ep
                .respond(now, session, call, Status::CAPABILITY_DENIED, &[]);
            self.ep.recycle(payload);
            return;
        }
        match self.handlers.get(&info.service) {
            Some(Handler::Sync(h)) => {
                self.out.clear();
                let status = h(&info, &payload, &mut self.out);
                self.respond_or_refuse(now, session, call, status);
                self.stats.inline_handled += 1;
                self.ep.recycle(payload);
            }
            Some(Handler::Async(h)) => {
                let responder = Responder(CallRef {
                    inbox: self.inbox.clone(),
                    session,
                    call,
                });
                self.stats.async_handled += 1;
                if let Some(sink) = h(IncomingCall {
                    info,
                    payload,
                    responder,
                }) {
                    self.served.insert((session, call), sink);
                }
            }
            None => {
                let _ = self.ep.respond(now, session, call, Status::NOT_FOUND, &[]);
                self.ep.recycle(payload);
            }
        }
    }
}
