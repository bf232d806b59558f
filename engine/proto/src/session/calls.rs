//! nRPC call state: the caller's and the callee's view of each call, the
//! application operations on it, and the handling of RPC frames.
//!
//! Invariants:
//! * a peer-opened call number produces at most one `Request` event (the
//!   [`SeenWindow`](crate::stream::SeenWindow) remembers every number seen);
//! * a caller's call produces exactly one final `Response` event (or none if
//!   the application cancelled it itself);
//! * call state is freed only when nothing about it still needs delivering,
//!   and every freed peer call returns one unit of call credit.

use std::cmp::Reverse;
use std::time::Instant;

use super::{Ctx, Sent, Session};
use crate::event::{ApiError, Cause, CloseReason, Event, ProtocolViolation, SegmentViolation};
use crate::ids::{CallId, CallKind, ServiceId, Side, Status};
use crate::stream::{Accepted, Forgery, RecvStream, SendStream};
use crate::wire::{Body, Frame, Part};

/// A response as it travels: status, the number of stream messages the
/// responder sent before it, and the body.
pub(super) struct Outcome {
    /// The call's final status.
    pub(super) status: Status,
    /// Stream messages sent before the response: the receiver completes the
    /// call only once it delivered this many.
    pub(super) count: u64,
    /// The response body (a pool buffer, returned when the call is freed).
    pub(super) body: Vec<u8>,
}

/// A value that goes to the peer in a retransmittable frame.
pub(super) struct Outgoing<T> {
    /// What the frame carries.
    pub(super) value: T,
    /// A [`Sent`] reference to it is queued and not yet written since it was
    /// queued (or since its packet was lost); cleared when written.
    pub(super) pending: bool,
}

impl<T> Outgoing<T> {
    /// `value`, to be written at the next transmit.
    fn queued(value: T) -> Self {
        Outgoing {
            value,
            pending: true,
        }
    }
}

/// The state only the side that opened the call has.
pub(super) struct Caller {
    /// The request body, held until the callee acknowledges the request
    /// (`None` after: the callee knows the call, stream frames may flow).
    pub(super) request: Option<Outgoing<Vec<u8>>>,
    /// The response, held until every stream message before it is delivered.
    pub(super) response: Option<Outcome>,
    /// The status of our CANCEL, once the application gave up or the
    /// deadline passed: it has then seen the call's final outcome. The call
    /// lives until the CANCEL is acknowledged.
    pub(super) cancel: Option<Outgoing<Status>>,
    /// The response arrived with a segmented body still being reassembled.
    pub(super) awaiting_body: bool,
}

/// The state only the side that serves the call has.
pub(super) struct Callee {
    /// Our response, once the application (or a refusal, or the deadline)
    /// answered. `Some` means the application is done with the call.
    pub(super) response: Option<Answer>,
    /// The request's segmented body is still being reassembled: the
    /// `Request` event waits for it.
    pub(super) request_body: bool,
}

/// A callee's response and its delivery state.
pub(super) struct Answer {
    /// The response frame, and whether it is queued to be written.
    pub(super) frame: Outgoing<Outcome>,
    /// The peer acknowledged the response (the call is freed once its
    /// outgoing stream is acknowledged too).
    pub(super) acked: bool,
}

impl Answer {
    /// A response to be written at the next transmit.
    fn new(status: Status, count: u64, body: Vec<u8>) -> Self {
        Answer {
            frame: Outgoing::queued(Outcome {
                status,
                count,
                body,
            }),
            acked: false,
        }
    }
}

/// Which end of the call this side is, with the state only that end has:
/// a callee has no request to retransmit, a caller no response to send.
pub(super) enum Role {
    /// We opened the call.
    Caller(Caller),
    /// The peer opened the call.
    Callee(Callee),
}

/// One call, either role.
pub(crate) struct Call {
    /// Caller or callee, with that side's state.
    pub(super) role: Role,
    /// Unary or which way it streams; fixed when the call is opened.
    pub(super) kind: CallKind,
    /// The service called; fixed when the call is opened.
    pub(super) service: ServiceId,
    /// When the call times out (a callee's: arrival plus the request's
    /// `deadline_ms`); also in the session's deadline heap.
    pub(super) deadline: Option<Instant>,
    /// Our outgoing stream (credit, unacknowledged messages, STREAM_END).
    pub(super) send: SendStream,
    /// The peer's incoming stream (reassembly, credit we granted).
    pub(super) recv: RecvStream,
}

impl Call {
    fn new(
        role: Role,
        kind: CallKind,
        service: ServiceId,
        deadline: Option<Instant>,
        send: SendStream,
        recv_window: u64,
    ) -> Self {
        Call {
            role,
            kind,
            service,
            deadline,
            send,
            recv: RecvStream::new(recv_window),
        }
    }

    /// The application has seen the final outcome (caller: it cancelled or
    /// the deadline passed) or answered (callee).
    pub(super) fn is_done(&self) -> bool {
        match &self.role {
            Role::Caller(c) => c.cancel.is_some(),
            Role::Callee(c) => c.response.is_some(),
        }
    }

    /// Whether we opened the call.
    pub(super) fn is_caller(&self) -> bool {
        matches!(self.role, Role::Caller(_))
    }

    /// The caller's state, if we opened the call.
    pub(super) fn caller_mut(&mut self) -> Option<&mut Caller> {
        match &mut self.role {
            Role::Caller(c) => Some(c),
            Role::Callee(_) => None,
        }
    }

    /// The callee's state, if the peer opened the call.
    pub(super) fn callee_mut(&mut self) -> Option<&mut Callee> {
        match &mut self.role {
            Role::Callee(c) => Some(c),
            Role::Caller(_) => None,
        }
    }
}

/// Whether the caller streams on this kind of call.
pub(super) fn caller_streams(kind: CallKind) -> bool {
    matches!(kind, CallKind::ClientStream | CallKind::Duplex)
}

/// Whether the callee streams on this kind of call.
fn callee_streams(kind: CallKind) -> bool {
    matches!(kind, CallKind::ServerStream | CallKind::Duplex)
}

impl Session {
    fn our_side(&self) -> Side {
        self.side
    }

    /// The outgoing stream of a new call: the peer's window is its first
    /// credit; what we hold unacknowledged is capped by the smaller of its
    /// window and ours, so a peer announcing 4 GiB and never acknowledging
    /// cannot make us keep more than our own window. Before the handshake
    /// the peer's window is unknown: the minimum every peer grants, and our
    /// own cap, until [`on_peer_window`](Self::on_peer_window).
    fn new_send_stream(&self, cfg: &crate::EndpointConfig) -> SendStream {
        let own = u64::from(cfg.params.stream_window);
        match self.transport() {
            Some(t) => {
                let peer = u64::from(t.peer_params.stream_window);
                SendStream::new(peer, peer.min(own))
            }
            None => SendStream::new(u64::from(crate::config::MIN_STREAM_WINDOW), own),
        }
    }

    /// The handshake told us the peer's stream window: calls opened before
    /// it get their real credit and cap (and `Writable` if they were refused).
    pub(super) fn on_peer_window(&mut self, ctx: &mut Ctx<'_>, peer_window: u32) {
        let (peer, own) = (
            u64::from(peer_window),
            u64::from(ctx.cfg.params.stream_window),
        );
        let mut woken = Vec::new();
        for (&id, call) in self.calls.iter_mut() {
            call.send.on_credit(peer);
            call.send.set_cap(peer.min(own));
            if call.send.take_writable() {
                woken.push(id);
            }
        }
        // Once per session: sorted, so the events do not follow hash order.
        woken.sort_unstable();
        for call in woken {
            ctx.events.push_back(Event::Writable {
                session: self.id,
                call,
            });
        }
    }

    fn push_fresh(&mut self, s: Sent) {
        self.queue.push_back(s);
    }

    /// Opens a call. The request goes out with the next packet.
    pub fn open_call(
        &mut self,
        ctx: &mut Ctx<'_>,
        service: ServiceId,
        kind: CallKind,
        deadline: Option<Instant>,
        payload: crate::Payload<'_>,
    ) -> Result<CallId, ApiError> {
        let len = payload.len();
        let segmented = self.check_body(ctx.cfg, len)?;
        if self.ours.next_seq >= self.ours.limit && !ctx.cfg.testing_ignore_credit {
            self.ours.blocked = true;
            return Err(ApiError::CallsBlocked);
        }
        let id = CallId::new(self.ours.next_seq, self.our_side());
        self.ours.next_seq += 1;
        let window = u64::from(ctx.cfg.params.stream_window);
        let send = self.new_send_stream(ctx.cfg);
        let role = Role::Caller(Caller {
            request: Some(Outgoing::queued(payload.into_buf(ctx.pool))),
            response: None,
            cancel: None,
            awaiting_body: false,
        });
        let mut call = Call::new(role, kind, service, deadline, send, window);
        if !callee_streams(kind) {
            // The callee never streams on this kind: its stream data would
            // be a violation (AfterEnd), not something to buffer.
            call.recv.close_empty();
        }
        self.calls.insert(id, call);
        if let Some(d) = deadline {
            self.deadlines.push(Reverse((d, id)));
        }
        self.push_fresh(Sent::Request(id));
        if segmented {
            self.segs.create(id, Part::Request, len as u64);
            self.start_body(id, Part::Request);
        }
        Ok(id)
    }

    /// Whether a body of `len` bytes must be segmented; `PayloadTooLarge`
    /// beyond the peer's `max_message` (our own before the handshake).
    fn check_body(&self, cfg: &crate::EndpointConfig, len: usize) -> Result<bool, ApiError> {
        if len <= self.max_payload(cfg) {
            return Ok(false);
        }
        let max = self
            .transport()
            .map_or(cfg.params.max_message, |t| t.peer_params.max_message);
        let max = max as usize;
        if len > max {
            return Err(ApiError::PayloadTooLarge { len, max });
        }
        Ok(true)
    }

    /// The callee answers a call (for streaming calls this is the trailer).
    pub fn respond(
        &mut self,
        ctx: &mut Ctx<'_>,
        id: CallId,
        status: Status,
        payload: &[u8],
    ) -> Result<(), ApiError> {
        let segmented = self.check_body(ctx.cfg, payload.len());
        let call = self.calls.get_mut(&id).ok_or(ApiError::UnknownCall)?;
        let count = call.send.next_seq();
        let Some(callee) = call.callee_mut().filter(|c| c.response.is_none()) else {
            return Err(ApiError::UnknownCall);
        };
        let segmented = segmented?;
        callee.response = Some(Answer::new(status, count, ctx.pool.copy_of(payload)));
        callee.request_body = false;
        ctx.services.release(call.service);
        stop_receiving(ctx, call);
        self.reasm.drop_call(id);
        self.push_fresh(Sent::Response(id));
        if segmented {
            self.segs.create(id, Part::Response, payload.len() as u64);
            self.start_body(id, Part::Response);
        }
        Ok(())
    }

    /// Sends one stream message on a call.
    pub fn send_message(
        &mut self,
        ctx: &mut Ctx<'_>,
        id: CallId,
        payload: &[u8],
    ) -> Result<(), ApiError> {
        let segmented = self.check_body(ctx.cfg, payload.len())?;
        let call = self.calls.get_mut(&id).ok_or(ApiError::UnknownCall)?;
        let may_stream = match &call.role {
            Role::Caller(c) => caller_streams(call.kind) && c.cancel.is_none(),
            Role::Callee(c) => callee_streams(call.kind) && c.response.is_none(),
        };
        if !may_stream || call.send.is_finished() {
            return Err(ApiError::InvalidForCall);
        }
        let max = call.send.max_message();
        if payload.len() > max {
            return Err(ApiError::PayloadTooLarge {
                len: payload.len(),
                max,
            });
        }
        if !call.send.fits(payload.len()) && !ctx.cfg.testing_ignore_credit {
            call.send.block(payload.len());
            return Err(ApiError::StreamBlocked);
        }
        let seq = call.send.push(ctx.pool.copy_of(payload));
        if segmented {
            self.segs
                .create(id, Part::Stream(seq), payload.len() as u64);
        }
        ctx.stats.stream_hold(payload.len() as u64);
        if self.stream_may_flow(id) {
            self.push_fresh(Sent::Stream(id, seq));
            if segmented {
                self.start_body(id, Part::Stream(seq));
            }
        }
        Ok(())
    }

    /// The caller finishes its stream (half-close).
    pub fn finish_stream(&mut self, id: CallId) -> Result<(), ApiError> {
        let call = self.calls.get_mut(&id).ok_or(ApiError::UnknownCall)?;
        if !call.is_caller() || !caller_streams(call.kind) || call.send.is_finished() {
            return Err(ApiError::InvalidForCall);
        }
        call.send.finish();
        if self.stream_may_flow(id) {
            self.push_fresh(Sent::StreamEnd(id));
        }
        Ok(())
    }

    /// The caller gives up on a call; no `Response` event follows.
    pub fn cancel_call(
        &mut self,
        ctx: &mut Ctx<'_>,
        id: CallId,
        status: Status,
    ) -> Result<(), ApiError> {
        let call = self.calls.get_mut(&id).ok_or(ApiError::UnknownCall)?;
        let Some(caller) = call.caller_mut().filter(|c| c.cancel.is_none()) else {
            return Err(ApiError::UnknownCall);
        };
        caller.cancel = Some(Outgoing::queued(status));
        caller.awaiting_body = false;
        stop_receiving(ctx, call);
        self.reasm.drop_call(id);
        self.queue.push_front(Sent::Cancel(id));
        Ok(())
    }

    /// The peer is down (failure detector): every call we made that is
    /// still open completes `UNAVAILABLE` with `cause` and is cancelled at
    /// the peer (the CANCEL goes out should the peer come back). Calls the
    /// peer made are left to their deadline or the session's end.
    pub fn fail_own_calls(&mut self, ctx: &mut Ctx<'_>, cause: Cause) {
        let mut ids: Vec<CallId> = self
            .calls
            .iter()
            .filter(|(_, c)| c.is_caller() && !c.is_done())
            .map(|(&id, _)| id)
            .collect();
        ids.sort_unstable();
        for id in ids {
            if self.cancel_call(ctx, id, Status::UNAVAILABLE).is_ok() {
                self.emit_failure(ctx, id, Status::UNAVAILABLE, cause);
            }
        }
    }

    /// Deadlines that passed: callers complete with TIMEOUT and cancel; callees
    /// answer TIMEOUT themselves so their state and credit are freed.
    pub(super) fn expire_deadlines(&mut self, ctx: &mut Ctx<'_>) {
        while let Some(Reverse((d, id))) = self.deadlines.peek().copied() {
            if d > ctx.now {
                break;
            }
            self.deadlines.pop();
            let Some(call) = self.calls.get(&id) else {
                continue;
            };
            if call.is_done() || call.deadline != Some(d) {
                continue;
            }
            match call.role {
                Role::Caller(_) => {
                    let _ = self.cancel_call(ctx, id, Status::TIMEOUT);
                    // Still handshaking: the deadline passed because of that.
                    let cause = self
                        .handshake_verdict()
                        .map_or(Cause::Deadline, Cause::Handshake);
                    self.emit_failure(ctx, id, Status::TIMEOUT, cause);
                }
                Role::Callee(_) => {
                    ctx.stats.calls_cancelled += 1;
                    ctx.events.push_back(Event::Cancelled {
                        session: self.id,
                        call: id,
                        status: Status::TIMEOUT,
                    });
                    let _ = self.respond(ctx, id, Status::TIMEOUT, &[]);
                }
            }
        }
    }

    fn emit_response(&mut self, ctx: &mut Ctx<'_>, call: CallId, status: Status, payload: Vec<u8>) {
        ctx.stats.calls_completed += 1;
        ctx.events.push_back(Event::Response {
            session: self.id,
            call,
            status,
            payload,
            cause: None,
        });
    }

    /// Ends a call of ours without the callee's answer, saying why.
    fn emit_failure(&mut self, ctx: &mut Ctx<'_>, call: CallId, status: Status, cause: Cause) {
        ctx.stats.calls_completed += 1;
        ctx.events.push_back(Event::Response {
            session: self.id,
            call,
            status,
            payload: Vec::new(),
            cause: Some(cause),
        });
    }

    /// A call is dropped while the session closes for `reason`.
    pub(super) fn abandon_call(
        &mut self,
        ctx: &mut Ctx<'_>,
        id: CallId,
        mut call: Call,
        reason: CloseReason,
    ) {
        if !(self.segs.is_idle() && self.reasm.is_empty()) {
            self.release_call_bodies(id);
        }
        release_streams(ctx, &mut call);
        match &call.role {
            Role::Caller(c) if c.cancel.is_none() => {
                self.emit_failure(ctx, id, Status::UNAVAILABLE, Cause::from(reason))
            }
            Role::Callee(c) if c.response.is_none() => ctx.services.release(call.service),
            _ => {}
        }
    }

    /// Frees a finished call; a peer-opened one returns call credit.
    pub(super) fn remove_call(&mut self, ctx: &mut Ctx<'_>, id: CallId) {
        let Some(mut call) = self.calls.remove(&id) else {
            return;
        };
        if !(self.segs.is_idle() && self.reasm.is_empty()) {
            self.release_call_bodies(id);
        }
        release_streams(ctx, &mut call);
        match call.role {
            Role::Caller(Caller {
                request: Some(r), ..
            }) => ctx.pool.put(r.value),
            Role::Callee(Callee {
                response: Some(a), ..
            }) => ctx.pool.put(a.frame.value.body),
            _ => {}
        }
        if id.opener() != self.side {
            self.peer_call_closed(ctx);
        }
    }

    /// A call is going: the bodies it was sending give back their room in
    /// the peer's reassembly window, and the ones it was receiving go.
    #[cold]
    fn release_call_bodies(&mut self, id: CallId) {
        self.reasm.drop_call(id);
        self.drop_call_bodies(id);
    }

    fn peer_call_closed(&mut self, ctx: &mut Ctx<'_>) {
        let theirs = &mut self.theirs;
        theirs.closed += 1;
        let max = u64::from(ctx.cfg.params.max_calls);
        let limit = (theirs.closed + max).min(theirs.seen.horizon());
        if limit >= theirs.granted + (max / 8).max(1) {
            theirs.granted = limit;
            theirs.credit_pending = true;
        }
    }

    /// Callee: frees the call once its response and stream are acknowledged.
    pub(super) fn maybe_finish_callee(&mut self, ctx: &mut Ctx<'_>, id: CallId) {
        let done = self.calls.get(&id).is_some_and(|c| match &c.role {
            Role::Callee(Callee {
                response: Some(a), ..
            }) => a.acked && c.send.all_acked(),
            _ => false,
        });
        if done {
            self.remove_call(ctx, id);
        }
    }

    /// Caller: completes the call once the response and every stream message
    /// before it have been delivered.
    fn maybe_complete_caller(&mut self, ctx: &mut Ctx<'_>, id: CallId) {
        let ready = self.calls.get(&id).is_some_and(|c| match &c.role {
            Role::Caller(Caller {
                response: Some(r),
                awaiting_body: false,
                ..
            }) => c.recv.next_seq() >= r.count,
            _ => false,
        });
        if !ready {
            return;
        }
        // Taken in place: moving the whole call out and back in was ~10 %
        // of the instructions per call (callgrind, `gate_calls`).
        let taken = self
            .calls
            .get_mut(&id)
            .and_then(Call::caller_mut)
            .and_then(|c| Some((c.response.take()?, c.cancel.is_some())));
        if let Some((r, done)) = taken {
            if !done {
                self.emit_response(ctx, id, r.status, r.body);
            } else {
                ctx.pool.put(r.body);
            }
        }
        self.remove_call(ctx, id);
    }

    /// `frame` must be a [`Frame::RpcRequest`].
    pub(super) fn on_request(
        &mut self,
        ctx: &mut Ctx<'_>,
        frame: Frame<'_>,
    ) -> Result<(), ProtocolViolation> {
        let Frame::RpcRequest {
            call: id,
            service,
            kind,
            end,
            deadline_ms,
            body,
        } = frame
        else {
            return Ok(());
        };
        if id.opener() == self.side {
            return Err(ProtocolViolation::WrongRole);
        }
        let seq = id.seq();
        if seq >= self.theirs.granted {
            return Err(ProtocolViolation::CallCredit);
        }
        if self.theirs.seen.is_seen(seq) {
            ctx.stats.duplicate_requests += 1;
            return Ok(());
        }
        if !self.theirs.seen.mark(seq) {
            return Err(ProtocolViolation::CallCredit);
        }
        let deadline =
            (deadline_ms > 0).then(|| ctx.now + std::time::Duration::from_millis(deadline_ms));
        let window = u64::from(ctx.cfg.params.stream_window);
        let send = self.new_send_stream(ctx.cfg);
        let request_body = match body {
            Body::Inline(_) => false,
            Body::Segmented(total) => {
                self.reasm.check_total(id, Part::Request, total)?;
                true
            }
        };
        let role = Role::Callee(Callee {
            response: None,
            request_body,
        });
        let mut call = Call::new(role, kind, service, deadline, send, window);
        if end || !caller_streams(kind) {
            call.recv.close_empty();
        }
        let admitted = if body.len() > u64::from(ctx.cfg.params.max_message) {
            Err(Status::PAYLOAD_TOO_LARGE)
        } else {
            ctx.services.admit(service)
        };
        self.calls.insert(id, call);
        if let Err(status) = admitted {
            self.refuse_request(ctx, id, status);
            return Ok(());
        }
        if let Some(d) = deadline {
            self.deadlines.push(Reverse((d, id)));
        }
        let Body::Inline(p) = body else {
            return self.on_body_complete(ctx, id, Part::Request);
        };
        ctx.stats.requests_delivered += 1;
        let payload = ctx.pool.copy_of(p);
        ctx.events.push_back(Event::Request {
            session: self.id,
            call: id,
            service,
            kind,
            deadline,
            payload,
        });
        Ok(())
    }

    /// A request the callee does not run (no such service, over its limits,
    /// a body over `max_message`) is answered `status` at once.
    fn refuse_request(&mut self, ctx: &mut Ctx<'_>, id: CallId, status: Status) {
        match status {
            Status::NOT_FOUND => ctx.stats.calls_not_found += 1,
            Status::PAYLOAD_TOO_LARGE => ctx.stats.calls_too_large += 1,
            _ => ctx.stats.calls_backpressure += 1,
        }
        self.reasm.drop_call(id);
        // Not admitted, so nothing to release: mark done before
        // responding. Stream data that follows is checked, not kept:
        // the refusal's ACK may never come.
        if let Some(c) = self.calls.get_mut(&id) {
            if let Some(callee) = c.callee_mut() {
                callee.response = Some(Answer::new(status, 0, Vec::new()));
                callee.request_body = false;
            }
            stop_receiving(ctx, c);
        }
        self.push_fresh(Sent::Response(id));
    }

    /// The request of peer call `id` is whole: the application gets it.
    pub(super) fn deliver_request(&mut self, ctx: &mut Ctx<'_>, id: CallId, payload: Vec<u8>) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if let Some(c) = call.callee_mut() {
            c.request_body = false;
        }
        ctx.stats.requests_delivered += 1;
        ctx.events.push_back(Event::Request {
            session: self.id,
            call: id,
            service: call.service,
            kind: call.kind,
            deadline: call.deadline,
            payload,
        });
    }

    /// The segmented body of our call's response is whole.
    pub(super) fn deliver_response_body(&mut self, ctx: &mut Ctx<'_>, id: CallId, body: Vec<u8>) {
        let Some(c) = self.caller_mut_of(id) else {
            return;
        };
        c.awaiting_body = false;
        if let Some(r) = &mut c.response {
            ctx.pool.put(std::mem::replace(&mut r.body, body));
        }
        self.maybe_complete_caller(ctx, id);
    }

    fn caller_mut_of(&mut self, id: CallId) -> Option<&mut Caller> {
        self.calls.get_mut(&id).and_then(Call::caller_mut)
    }

    pub(super) fn on_response(
        &mut self,
        ctx: &mut Ctx<'_>,
        id: CallId,
        status: Status,
        count: u64,
        body: Body<'_>,
    ) -> Result<(), ProtocolViolation> {
        if id.opener() != self.side {
            return Err(ProtocolViolation::WrongRole);
        }
        let Some(call) = self.calls.get_mut(&id).and_then(Call::caller_mut) else {
            return Ok(());
        };
        if call.response.is_some() {
            return Ok(());
        }
        let body_kind = body;
        let body = match body {
            Body::Inline(p) => ctx.pool.copy_of(p),
            Body::Segmented(total) => {
                if total > u64::from(ctx.cfg.params.max_message) {
                    return Err(SegmentViolation::TooLarge.into());
                }
                // A cancelled call discards whatever comes.
                call.awaiting_body = call.cancel.is_none();
                Vec::new()
            }
        };
        call.response = Some(Outcome {
            status,
            count,
            body,
        });
        if let Body::Segmented(total) = body_kind {
            self.reasm.check_total(id, Part::Response, total)?;
            return self.on_body_complete(ctx, id, Part::Response);
        }
        self.maybe_complete_caller(ctx, id);
        Ok(())
    }

    pub(super) fn on_cancel(
        &mut self,
        ctx: &mut Ctx<'_>,
        id: CallId,
        status: Status,
    ) -> Result<(), ProtocolViolation> {
        if id.opener() == self.side {
            return Err(ProtocolViolation::WrongRole);
        }
        let seq = id.seq();
        if seq >= self.theirs.granted {
            return Err(ProtocolViolation::CallCredit);
        }
        if let Some(call) = self.calls.get(&id) {
            if !call.is_done() {
                ctx.services.release(call.service);
                ctx.stats.calls_cancelled += 1;
                ctx.events.push_back(Event::Cancelled {
                    session: self.id,
                    call: id,
                    status,
                });
            }
            self.remove_call(ctx, id);
        } else if !self.theirs.seen.is_seen(seq) {
            // Cancelled before its request arrived: the number is used up.
            if !self.theirs.seen.mark(seq) {
                return Err(ProtocolViolation::CallCredit);
            }
            self.peer_call_closed(ctx);
        }
        Ok(())
    }

    pub(super) fn on_stream_data(
        &mut self,
        ctx: &mut Ctx<'_>,
        id: CallId,
        seq: u64,
        offset: u64,
        body: Body<'_>,
    ) -> Result<(), ProtocolViolation> {
        let Some(call) = self.calls.get_mut(&id) else {
            return Ok(());
        };
        let pool = &mut *ctx.pool;
        let len = body.len();
        let accepted = call
            .recv
            .on_data(seq, offset, len, || body.inline().map(|p| pool.copy_of(p)))?;
        match (accepted, body) {
            (Accepted::Kept, Body::Inline(_)) => ctx.stats.stream_hold(len),
            (Accepted::Kept, Body::Segmented(total)) => {
                self.reasm.check_total(id, Part::Stream(seq), total)?;
                return self.on_body_complete(ctx, id, Part::Stream(seq));
            }
            (Accepted::Discarded, _) => ctx.stats.stream_bytes_discarded += len,
            (Accepted::Duplicate, _) => {}
        }
        self.deliver_stream(ctx, id)
    }

    /// The segmented body of placed stream message `seq` is whole.
    pub(super) fn deliver_stream_body(
        &mut self,
        ctx: &mut Ctx<'_>,
        id: CallId,
        seq: u64,
        body: Vec<u8>,
    ) -> Result<(), ProtocolViolation> {
        let Some(call) = self.calls.get_mut(&id) else {
            return Ok(());
        };
        match call.recv.fill(seq, body) {
            Ok(len) => ctx.stats.stream_hold(len),
            // Not awaited after all (the caller checked it is): counted,
            // like any body no longer wanted.
            Err(b) => ctx.stats.segment_bytes_discarded += b.len() as u64,
        }
        self.deliver_stream(ctx, id)
    }

    pub(super) fn on_stream_end(
        &mut self,
        ctx: &mut Ctx<'_>,
        id: CallId,
        count: u64,
    ) -> Result<(), ProtocolViolation> {
        let Some(call) = self.calls.get_mut(&id) else {
            return Ok(());
        };
        if call.is_caller() {
            return Err(ProtocolViolation::WrongRole);
        }
        call.recv.on_end(count)?;
        self.deliver_stream(ctx, id)
    }

    fn deliver_stream(&mut self, ctx: &mut Ctx<'_>, id: CallId) -> Result<(), ProtocolViolation> {
        let session = self.id;
        let Some(call) = self.calls.get_mut(&id) else {
            return Ok(());
        };
        let (caller, done) = (call.is_caller(), call.is_done());
        let mut delivered = false;
        let credit_was_pending = call.recv.credit_pending();
        while let Some(payload) = call.recv.pop()? {
            delivered = true;
            ctx.stats.stream_release(payload.len() as u64);
            if done && caller {
                ctx.pool.put(payload);
            } else {
                ctx.events.push_back(Event::Message {
                    session,
                    call: id,
                    payload,
                });
            }
        }
        if call.recv.credit_pending() && !credit_was_pending {
            self.queue.push_front(Sent::StreamCredit(id));
        }
        if call.recv.take_end() {
            ctx.events
                .push_back(Event::StreamFinished { session, call: id });
        }
        if delivered && caller {
            self.maybe_complete_caller(ctx, id);
        }
        Ok(())
    }

    pub(super) fn on_call_credit(&mut self, ctx: &mut Ctx<'_>, limit: u64) {
        if limit > self.ours.limit {
            self.ours.limit = limit;
            if std::mem::take(&mut self.ours.blocked) {
                ctx.events
                    .push_back(Event::CallsAvailable { session: self.id });
            }
        }
    }

    pub(super) fn on_stream_credit(&mut self, ctx: &mut Ctx<'_>, id: CallId, limit: u64) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        call.send.on_credit(limit);
        if call.send.take_writable() {
            ctx.events.push_back(Event::Writable {
                session: self.id,
                call: id,
            });
        }
    }

    /// Stream payload bytes held by this session's calls (recounted).
    pub fn stream_bytes_held(&self) -> u64 {
        self.calls
            .values()
            .map(|c| c.recv.held() + c.send.held())
            .sum()
    }

    /// Switches the incoming stream of `id` to credit on consumption (see
    /// [`Endpoint::defer_credit`](crate::Endpoint::defer_credit)).
    pub fn defer_credit(&mut self, id: CallId) -> Result<(), ApiError> {
        let call = self.calls.get_mut(&id).ok_or(ApiError::UnknownCall)?;
        let peer_streams = match call.role {
            Role::Caller(_) => callee_streams(call.kind),
            Role::Callee(_) => caller_streams(call.kind),
        };
        if !peer_streams {
            return Err(ApiError::InvalidForCall);
        }
        call.recv.defer();
        Ok(())
    }

    /// The application consumed `msgs` messages of `bytes` bytes of the
    /// incoming stream of `id` (see [`Endpoint::consumed`](crate::Endpoint::consumed)).
    pub fn consume_credit(&mut self, id: CallId, msgs: u64, bytes: u64) -> Result<(), ApiError> {
        let call = self.calls.get_mut(&id).ok_or(ApiError::UnknownCall)?;
        if !call.recv.deferred() {
            return Err(ApiError::InvalidForCall);
        }
        let was_pending = call.recv.credit_pending();
        call.recv.consume(msgs, bytes);
        if call.recv.credit_pending() && !was_pending {
            self.queue.push_front(Sent::StreamCredit(id));
        }
        Ok(())
    }

    /// Test hook: see [`Endpoint::testing_forge_stream`](crate::Endpoint::testing_forge_stream).
    pub fn forge_stream(
        &mut self,
        id: CallId,
        offset: Option<u64>,
        withhold: u64,
    ) -> Result<(), ApiError> {
        let call = self.calls.get_mut(&id).ok_or(ApiError::UnknownCall)?;
        call.send.set_forgery(Forgery { offset, withhold });
        Ok(())
    }
}

/// The call is answered (callee) or abandoned (caller): nobody will read
/// its incoming stream, so what is buffered goes and later data is only
/// checked against credit.
fn stop_receiving(ctx: &mut Ctx<'_>, call: &mut Call) {
    let pool = &mut *ctx.pool;
    let released = call.recv.discard(|b| pool.put(b));
    ctx.stats.stream_release(released);
}

/// Returns every stream buffer of a call that is going away.
fn release_streams(ctx: &mut Ctx<'_>, call: &mut Call) {
    stop_receiving(ctx, call);
    let pool = &mut *ctx.pool;
    let released = call.send.drain(|b| pool.put(b));
    ctx.stats.stream_release(released);
}
