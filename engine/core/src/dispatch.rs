//! Commands from the inbox and events from the endpoint, on the core thread.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use net_crypto::NodeId;
use net_proto::{ApiError, CallKind, Event, ServiceId, SessionId, Status};

use crate::core_loop::{Core, Held, Service, Waiter};
use crate::handler::{CallHandle, CallRef, CoreCx, Handler, RequestInfo};
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
            } => self.respond_async(now, (session, call), status, payload),
            Command::Send {
                session,
                call,
                payload,
                flow,
            } => self.queue_send(now, (session, call), payload, &flow),
            Command::Finish { session, call } => {
                if self.flows.contains_key(&(session, call)) {
                    self.send_held(now, (session, call), Held::Finish);
                }
            }
            Command::Consumed {
                session,
                call,
                msgs,
                bytes,
            } => {
                if self.ep.consumed(now, session, call, msgs, bytes).is_err() {
                    // The call ended meanwhile: no credit is owed any more.
                    self.stats.credit_reports_late += 1;
                }
            }
            Command::Cancel { session, call } => self.cancel_own(now, (session, call)),
            Command::Released {
                session,
                call,
                service,
                panicked,
            } => self.released(now, (session, call), service, panicked),
            Command::Register {
                service,
                handler,
                max_in_flight,
                advert,
                ack,
            } => {
                self.ep.register_service(service, max_in_flight);
                self.trust.set_advert(service, Some(advert.clone()), now);
                let svc = Service {
                    handler,
                    name: advert.name.as_str().into(),
                    max_in_flight,
                };
                self.handlers.insert(service, svc);
                // The registering thread waits on the other end; if it gave
                // up (timeout), nobody is left to tell.
                let _ = ack.try_send(());
            }
            Command::Unregister { service, ack } => {
                self.handlers.remove(&service);
                self.ep.unregister_service(service);
                self.trust.set_advert(service, None, now);
                // As for Register: a gone waiter needs no ack.
                let _ = ack.try_send(());
            }
            Command::Stats(tx) => {
                // A caller that stopped waiting (timeout) needs no answer.
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
                    self.announce_on(now, s, &payload);
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
                    Waiter::App { .. } if self.spare.len() < 1024 => self.spare.push(p.payload),
                    _ => self.ep.recycle(p.payload),
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

    fn refuse(&mut self, now: Instant, p: Pending, status: Status) {
        self.stats.calls_refused += 1;
        self.complete(now, p.waiter, status, &[]);
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

    fn complete(&mut self, now: Instant, waiter: Waiter, status: Status, payload: &[u8]) {
        self.stats.calls_completed += 1;
        match waiter {
            Waiter::Events(mut e) => e.complete(status, payload),
            Waiter::App { token, gen } => {
                if let Some(app) = self.app.as_mut().filter(|_| gen == self.app_gen) {
                    let mut cx = CoreCx {
                        now,
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
                let status = self.end_own((session, call), status);
                if let Some(w) = self.waiting.remove(&(session, call)) {
                    self.complete(now, w, status, &payload);
                }
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
            } => self.end_served((session, call), status),
            Event::CallsAvailable { session } => self.drain_backlog(now, session),
            Event::Connected { session, peer } => {
                self.sessions.entry(peer).or_insert(session);
                if let Some(bytes) = self.trust.current().map(<[u8]>::to_vec) {
                    self.announce_on(now, session, &bytes);
                }
                if let Some(bytes) = self.trust.own_token().map(<[u8]>::to_vec) {
                    self.announce_on(now, session, &bytes);
                }
                self.drain_backlog(now, session);
            }
            Event::Closed {
                session,
                peer,
                reason,
            } => {
                match reason {
                    net_proto::CloseReason::Protocol(_) => {
                        tracing::warn!(core = self.index, peer = %peer.short(), %reason, "session closed: peer broke the protocol");
                    }
                    net_proto::CloseReason::Evicted => {
                        tracing::info!(core = self.index, peer = %peer.short(), "session evicted to make room (session table full)");
                    }
                    _ => {}
                }
                self.on_closed(now, session, peer);
            }
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

    /// Queues an ANNOUNCE on one session. It fails only when the session is
    /// gone (closed meanwhile): its successor gets the announcement on
    /// `Connected`, so this is counted, not retried.
    pub(crate) fn announce_on(&mut self, now: Instant, session: SessionId, bytes: &[u8]) {
        if self.ep.announce(now, session, bytes).is_err() {
            self.stats.announces_skipped += 1;
        }
    }

    fn on_closed(&mut self, now: Instant, session: SessionId, peer: NodeId) {
        self.trust.session_closed(session);
        if self.sessions.get(&peer) == Some(&session) {
            self.sessions.remove(&peer);
        }
        if let Some(q) = self.backlog.remove(&session) {
            for p in q {
                self.refuse(now, p, Status::UNAVAILABLE);
            }
        }
        self.close_calls_of(session);
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
