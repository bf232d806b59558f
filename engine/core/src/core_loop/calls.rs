//! The life of calls addressed from other threads, on the core thread:
//! their flows, stream items held back by flow control, answers from async
//! handlers, and how each call ends.
//!
//! Rules (the "nothing is lost silently" contract):
//! * a stream message whose send was accepted is handed to the protocol in
//!   order, or the call ends with an error on this side: a caller's OK
//!   outcome becomes `Incomplete` if any message of its stream was dropped
//!   or is still queued when the answer arrives;
//! * a callee's answer leaves after every stream message queued before it;
//! * every flow ends exactly once, with the call's final status, so remote
//!   senders and handlers learn at once (`SendError::Ended`,
//!   `Responder::cancelled`);
//! * an async handler holds its `max_in_flight` slot until its last
//!   `Responder` is dropped, i.e. while it actually runs.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Instant;

use net_proto::{ApiError, CallId, CallKind, Endpoint, FastMap, ServiceId, SessionId, Status};

use crate::core_loop::{Core, Held};
use crate::flow::Flow;
use crate::handler::{
    AsyncHandler, CallEvents, CallRef, IncomingCall, RequestInfo, Responder, ResponderInner,
};

type Key = (SessionId, CallId);

/// The state of calls that other threads act on (through a `Responder`, a
/// `CallHandle` or a call sink), until each call ends. Fields are private
/// to this module; the rest of the core uses the methods.
#[derive(Default)]
pub(crate) struct Handoffs {
    /// Callee-side sinks of streaming calls.
    served: FastMap<Key, Box<dyn CallEvents>>,
    /// Outgoing stream items flow control holds back, in order (an answer
    /// waits behind the messages queued before it).
    held: FastMap<Key, VecDeque<Held>>,
    /// Credit and end of each call addressed from another thread.
    flows: FastMap<Key, Arc<Flow>>,
    /// Async handlers running per service: admitted and not yet released
    /// (their last `Responder` not yet dropped).
    running: FastMap<ServiceId, u32>,
}

impl Handoffs {
    /// The sink of a served streaming call.
    pub fn sink_mut(&mut self, key: Key) -> Option<&mut Box<dyn CallEvents>> {
        self.served.get_mut(&key)
    }

    /// Whether `key` is a call other threads still act on.
    pub fn is_open(&self, key: Key) -> bool {
        self.flows.contains_key(&key)
    }

    /// No served call is open.
    pub fn is_idle(&self) -> bool {
        self.served.is_empty()
    }

    /// Async handlers of `service` running now (tests).
    #[cfg(test)]
    pub fn running(&self, service: ServiceId) -> u32 {
        self.running.get(&service).copied().unwrap_or(0)
    }

    /// The core is exiting: every served sink completes `Cancelled`, every
    /// flow ends with `status` (senders and handlers learn at once).
    pub fn end_all(&mut self, status: Status) {
        for (_, mut s) in self.served.drain() {
            s.complete(Status::CANCELLED, &[]);
        }
        for (_, f) in self.flows.drain() {
            f.end(status);
        }
    }
}

/// Answers a call, replacing a body over the peer's `max_message` by
/// `PayloadTooLarge` so the caller is never left waiting. Errors only if
/// the call is gone (answered, cancelled, session closed).
fn respond_fitting(
    ep: &mut Endpoint,
    now: Instant,
    key: Key,
    status: Status,
    body: &[u8],
) -> Result<(), ApiError> {
    match ep.respond(now, key.0, key.1, status, body) {
        Err(ApiError::PayloadTooLarge { len, max }) => {
            tracing::warn!(
                len,
                max,
                "response larger than the peer's max_message; answered PayloadTooLarge"
            );
            ep.respond(now, key.0, key.1, Status::PAYLOAD_TOO_LARGE, &[])
        }
        r => r,
    }
}

impl Core {
    /// A flow for a call addressed from another thread.
    pub(crate) fn new_flow(&mut self, key: Key, streams: bool) -> Arc<Flow> {
        let window = self.ep.config().params.stream_window as usize;
        // Messages larger than a packet are segmented: the stream's own
        // limit (its window, the peer's max_message) is what bounds them.
        let max = self.ep.max_message(key.0).map_or(0, |(_, stream)| stream);
        let flow = Arc::new(Flow::new(window, max, streams));
        self.handoffs.flows.insert(key, flow.clone());
        flow
    }

    /// Ends a call's flow with its final status.
    fn end_flow(&mut self, key: Key, status: Status) {
        if let Some(f) = self.handoffs.flows.remove(&key) {
            f.end(status);
        }
    }

    /// A stream message from another thread. Its credit was taken; it joins
    /// the call's hold queue if the call is still open.
    pub(crate) fn queue_send(&mut self, now: Instant, key: Key, payload: Vec<u8>, flow: &Flow) {
        let live = self.handoffs.flows.contains_key(&key);
        flow.took(payload.len(), live);
        if live {
            self.send_held(now, key, Held::Msg(payload));
        } else {
            // The call ended while the message was on its way; the flow
            // recorded the loss, which the caller's outcome reflects.
            self.stats.stream_msgs_dropped += 1;
            self.ep.recycle(payload);
        }
    }

    /// Stream items leave in order: once one waits for credit, later ones wait too.
    pub(crate) fn send_held(&mut self, now: Instant, key: Key, item: Held) {
        self.handoffs.held.entry(key).or_default().push_back(item);
        self.flush_held(now, key);
    }

    /// Hands held items to the protocol while its flow control allows.
    pub(crate) fn flush_held(&mut self, now: Instant, key: Key) {
        let Some(q) = self.handoffs.held.get_mut(&key) else {
            return;
        };
        while let Some(item) = q.pop_front() {
            let r = match &item {
                Held::Msg(m) => self.ep.send_message(now, key.0, key.1, m),
                Held::Finish => self.ep.finish_stream(now, key.0, key.1),
                Held::Respond(status, body) => {
                    respond_fitting(&mut self.ep, now, key, *status, body)
                }
            };
            if let Err(ApiError::StreamBlocked) = r {
                q.push_front(item);
                return;
            }
            match item {
                Held::Msg(m) => {
                    if let Some(f) = self.handoffs.flows.get(&key) {
                        if r.is_ok() {
                            f.release(m.len());
                        } else {
                            // The protocol refused it (the call completed
                            // meanwhile): mark the loss for the outcome.
                            f.refused(m.len());
                        }
                    }
                    if r.is_err() {
                        self.stats.stream_msgs_dropped += 1;
                    }
                    self.ep.recycle(m);
                }
                Held::Respond(status, body) => {
                    if let Some(f) = self.handoffs.flows.remove(&key) {
                        f.end(status);
                    }
                    // Answered: the callee needs no more of the caller's stream.
                    self.handoffs.served.remove(&key);
                    self.ep.recycle(body);
                }
                Held::Finish => {}
            }
        }
        self.handoffs.held.remove(&key);
    }

    /// Drops a call's held items; returns whether stream messages were
    /// among them (accepted, never sent).
    fn drop_held(&mut self, key: Key) -> bool {
        let Some(q) = self.handoffs.held.remove(&key) else {
            return false;
        };
        let mut lost = false;
        for item in q {
            match item {
                Held::Msg(m) => {
                    lost = true;
                    self.stats.stream_msgs_dropped += 1;
                    self.ep.recycle(m);
                }
                Held::Respond(_, body) => self.ep.recycle(body),
                Held::Finish => {}
            }
        }
        lost
    }

    /// A caller's own call completed with `status`: ends its flow and
    /// returns the outcome to report — `Incomplete` instead of OK if a
    /// stream message it accepted was not sent.
    pub(crate) fn end_own(&mut self, key: Key, status: Status) -> Status {
        let lost = self.drop_held(key);
        let Some(flow) = self.handoffs.flows.remove(&key) else {
            return status;
        };
        let status = if status.is_ok() && (lost || flow.incomplete()) {
            self.stats.streams_incomplete += 1;
            Status::INCOMPLETE
        } else {
            status
        };
        flow.end(status);
        status
    }

    /// The caller gave up on its own call (its handle's `cancel`).
    pub(crate) fn cancel_own(&mut self, now: Instant, key: Key) {
        if self.ep.cancel(now, key.0, key.1).is_err() {
            // Already completed: its outcome was delivered; nothing to cancel.
        }
        self.own.take_waiter(key);
        self.drop_held(key);
        self.end_flow(key, Status::CANCELLED);
    }

    /// A served call ended without our answer (caller cancelled, deadline
    /// passed): the handler learns through its flow and sink.
    pub(crate) fn end_served(&mut self, key: Key, status: Status) {
        if let Some(mut s) = self.handoffs.served.remove(&key) {
            s.complete(status, &[]);
        }
        self.drop_held(key);
        self.end_flow(key, status);
    }

    /// Every call of a closed session ends `Unavailable`.
    pub(crate) fn close_calls_of(&mut self, session: SessionId) {
        let keys: Vec<Key> = self
            .handoffs
            .flows
            .keys()
            .chain(self.handoffs.served.keys())
            .chain(self.handoffs.held.keys())
            .filter(|k| k.0 == session)
            .copied()
            .collect();
        for key in keys {
            if let Some(mut s) = self.handoffs.served.remove(&key) {
                s.complete(Status::UNAVAILABLE, &[]);
            }
            self.drop_held(key);
            self.end_flow(key, Status::UNAVAILABLE);
        }
    }

    /// An async handler's answer: queued behind the call's stream messages.
    pub(crate) fn respond_async(&mut self, now: Instant, key: Key, status: Status, body: Vec<u8>) {
        if self.handoffs.flows.contains_key(&key) {
            self.send_held(now, key, Held::Respond(status, body));
        } else {
            // The call ended first (cancelled, timed out, session closed);
            // its caller already has that outcome.
            self.ep.recycle(body);
        }
    }

    /// The last `Responder` of an async call is gone: its handler no longer
    /// runs. One that never answered is answered `Internal`.
    pub(crate) fn released(&mut self, now: Instant, key: Key, service: ServiceId, panicked: bool) {
        if let Some(n) = self.handoffs.running.get_mut(&service) {
            *n = n.saturating_sub(1);
        }
        if panicked {
            self.stats.handler_panics += 1;
            let name = self.service_name(service);
            tracing::error!(core = self.index, service = %name, "async handler panicked; its call is answered Internal");
        }
        let unanswered = self.handoffs.flows.get(&key).is_some_and(|f| !f.answered());
        if unanswered {
            if !panicked {
                self.stats.handlers_unanswered += 1;
                let name = self.service_name(service);
                tracing::warn!(core = self.index, service = %name, "async handler dropped its call without answering; answered Internal");
            }
            self.send_held(now, key, Held::Respond(Status::INTERNAL, Vec::new()));
        }
    }

    /// Answers a call the core refuses itself (no handler ran). A call that
    /// cannot be answered is already gone, so nobody waits for it.
    pub(crate) fn answer_now(&mut self, now: Instant, key: Key, status: Status) {
        if self.ep.respond(now, key.0, key.1, status, &[]).is_err() {
            self.stats.answers_skipped += 1;
        }
    }

    /// Sends the sync handler's answer (in `self.out`).
    pub(crate) fn respond_or_refuse(
        &mut self,
        now: Instant,
        session: SessionId,
        call: CallId,
        status: Status,
    ) {
        if respond_fitting(&mut self.ep, now, (session, call), status, &self.out).is_err() {
            self.stats.answers_skipped += 1;
        }
    }

    /// Starts an async handler for a request, within its service's
    /// `max_in_flight` running handlers on this core.
    pub(crate) fn start_async(
        &mut self,
        now: Instant,
        session: SessionId,
        call: CallId,
        info: RequestInfo,
        payload: Vec<u8>,
        h: &AsyncHandler,
    ) {
        let key = (session, call);
        let max = self
            .handlers
            .get(&info.service)
            .map_or(0, |s| s.max_in_flight);
        let running = self.handoffs.running.entry(info.service).or_default();
        if *running >= max {
            self.stats.handlers_busy += 1;
            self.answer_now(now, key, Status::BACKPRESSURE);
            self.ep.recycle(payload);
            return;
        }
        *running += 1;
        self.stats.async_handled += 1;
        let streams = matches!(info.kind, CallKind::ServerStream | CallKind::Duplex);
        let flow = self.new_flow(key, streams);
        let responder = Responder(Arc::new(ResponderInner {
            call: CallRef {
                inbox: self.inbox.clone(),
                session,
                call,
                flow,
            },
            service: info.service,
        }));
        let incoming = IncomingCall {
            info,
            payload,
            responder,
        };
        // A panic drops `incoming` while unwinding: its responder's release
        // counts the panic and answers the call `Internal`.
        if let Ok(Some(sink)) = catch_unwind(AssertUnwindSafe(|| h(incoming))) {
            self.handoffs.served.insert(key, sink);
        }
    }

    /// A service's registered name, for logs.
    pub(crate) fn service_name(&self, service: ServiceId) -> Arc<str> {
        self.handlers
            .get(&service)
            .map_or_else(|| format!("{service}").into(), |s| s.name.clone())
    }
}
