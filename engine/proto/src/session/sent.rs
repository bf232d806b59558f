//! Retransmission bookkeeping: what each frame that must reach the peer
//! refers to, how a queued reference becomes a frame, and what the
//! acknowledgement or the loss of a packet carrying it does.
//!
//! A data packet records one [`Sent`] per frame it carries (in the
//! [`Ledger`](crate::recovery::Ledger)); the session's queue holds the same
//! references for frames still to go out. A reference names state, not
//! bytes: the frame is rebuilt from the call (or announcement) each time it
//! is written, and a reference whose state no longer needs sending is
//! [`Written::Stale`] and dropped. The per-item rules are the three `match`
//! arms below, [`write_item`](Session::write_item),
//! [`on_acked`](Session::on_acked) and [`on_lost`](Session::on_lost); each
//! variant's doc line summarises them. A new retransmittable frame adds a
//! variant and its arms here; `send.rs` only assembles packets from the
//! queue, and the ACK handler (`recv.rs`) and loss timers (`mod.rs`) only
//! feed acknowledged and lost items in.

use std::time::Instant;

use super::calls::{caller_streams, Call, Callee, Caller, Role};
use super::{Ctx, Session};
use crate::ids::CallId;
use crate::wire::{Body, Credit, Frame, Part, Writer};

/// Reference to the state a sent frame was built from; see [`crate::recovery`].
///
/// For each: what is written; what its acknowledgement does; what its loss
/// does. "Re-queued" means set the state's pending flag and push the
/// reference to the front of the queue, once (not if already pending).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sent {
    /// RPC_REQUEST of our call, from the caller's held `request` while it is
    /// pending. Acked: the body is freed and the call's stream messages and
    /// STREAM_END, held back until the callee knows the call, are queued.
    /// Lost: re-queued while the body is held and the call is not cancelled.
    Request(CallId),
    /// RPC_RESPONSE of a peer's call, from the callee's `response` while it
    /// is pending. Acked: the call is freed once its stream is acknowledged
    /// too. Lost: re-queued unless already acknowledged.
    Response(CallId),
    /// CANCEL of our call, from the caller's `cancel` while it is pending.
    /// Acked: the call is freed. Lost: re-queued.
    Cancel(CallId),
    /// STREAM_DATA message `seq` of a call, while pending and unacknowledged.
    /// Acked: its buffer is released (which may make the call `Writable`)
    /// and a callee's call may finish. Lost: re-queued unless acknowledged.
    Stream(CallId, u64),
    /// STREAM_END of a call's outgoing stream, while `end_pending`. Acked:
    /// a callee's call may finish. Lost: re-queued unless acknowledged.
    StreamEnd(CallId),
    /// CREDIT for calls. Never queued: the packet builder writes it from
    /// the peer calls' `credit_pending` with the limit current at that time.
    /// Acked: nothing. Lost: `credit_pending` is set again.
    CallCredit,
    /// CREDIT for a call's stream, with the limit current when written,
    /// while `credit_pending`. Acked: nothing. Lost: re-queued while the
    /// call exists.
    StreamCredit(CallId),
    /// ANNOUNCE number `n`, while it is held. Acked: it is dropped. Lost:
    /// queued again at the front (no pending flag) while held.
    Announce(u64),
    /// PING. Never queued: written only when nothing else is. Acked or
    /// lost: nothing, since any later packet elicits an ACK just as well.
    Ping,
    /// A path-MTU probe of this many bytes (PING and PADDING). Never
    /// queued: written when `PathMtu::probe_due` says so. Acked: the path
    /// carries that size. Lost: one failed attempt at it (not retransmitted).
    MtuProbe(u16),
    /// A SEGMENT piece of a body. Never queued: the session's started
    /// bodies are cut into pieces as packets have room (`segsend.rs`).
    /// Acked: the range counts as delivered; once the whole body and its
    /// carrier are, the body is freed like an acknowledged inline frame.
    /// Lost: the range is sent again unless acknowledged meanwhile.
    Segment(SegRef),
}

/// A piece of a segmented body, as recorded with the packet that carried
/// it: `(call, part, offset, len)` packed into 24 bytes, since every frame
/// reference of every packet in flight has the size of the largest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SegRef {
    call: CallId,
    part: u64,
    offset: u32,
    len: u32,
}

impl SegRef {
    /// Bodies are at most `max_message` (a `u32`) bytes, so offsets and
    /// lengths fit.
    pub(super) fn new(call: CallId, part: Part, offset: u64, len: u64) -> Self {
        SegRef {
            call,
            part: part.code(),
            offset: offset as u32,
            len: len as u32,
        }
    }

    /// `(call, part, offset, len)`.
    pub(super) fn get(self) -> (CallId, Part, u64, u64) {
        let (o, l) = (u64::from(self.offset), u64::from(self.len));
        (self.call, Part::from_code(self.part), o, l)
    }
}

/// What writing one queued reference did.
pub(super) enum Written {
    /// The frame is in the packet; record the reference with it.
    Yes,
    /// The referenced state no longer needs sending; drop the entry.
    Stale,
    /// The frame does not fit what is left of the packet; it stays queued.
    NoRoom,
}

impl Session {
    /// Writes the frame `item` refers to, if its state still needs sending.
    pub(super) fn write_item(&mut self, item: Sent, w: &mut Writer<'_>, now: Instant) -> Written {
        let frame = match item {
            Sent::Request(id) => return self.write_request(id, w, now),
            Sent::Response(id) => {
                let segmented = self.segs.is_segmented(id, Part::Response);
                let Some(a) = self.callee_mut(id).and_then(|c| c.response.as_mut()) else {
                    return Written::Stale;
                };
                let Some(r) = Some(&mut a.frame).filter(|r| r.pending) else {
                    return Written::Stale;
                };
                let f = Frame::RpcResponse {
                    call: id,
                    status: r.value.status,
                    stream_count: r.value.count,
                    body: body_of(&r.value.body, segmented),
                };
                return finish(f.encode(w), &mut r.pending);
            }
            Sent::Cancel(id) => {
                let Some(c) = self.caller_mut(id).and_then(|c| c.cancel.as_mut()) else {
                    return Written::Stale;
                };
                if !c.pending {
                    return Written::Stale;
                }
                let status = c.value;
                return finish(Frame::Cancel { call: id, status }.encode(w), &mut c.pending);
            }
            Sent::Stream(id, seq) => return self.write_stream(id, seq, w),
            Sent::StreamEnd(id) => {
                let Some(c) = self.calls.get_mut(&id) else {
                    return Written::Stale;
                };
                let Some((count, pending)) = c.send.end_to_write() else {
                    return Written::Stale;
                };
                return finish(Frame::StreamEnd { call: id, count }.encode(w), pending);
            }
            Sent::StreamCredit(id) => {
                let Some(c) = self.calls.get_mut(&id) else {
                    return Written::Stale;
                };
                let Some((limit, pending)) = c.recv.credit_to_write() else {
                    return Written::Stale;
                };
                let f = Frame::Credit(Credit::Stream { call: id, limit });
                return finish(f.encode(w), pending);
            }
            Sent::Announce(n) => {
                let Some(body) = self.announces.get(n) else {
                    return Written::Stale;
                };
                Frame::Announce { payload: body }
            }
            Sent::CallCredit | Sent::Ping | Sent::Segment(_) | Sent::MtuProbe(_) => {
                return Written::Stale
            }
        };
        match frame.encode(w) {
            Ok(()) => Written::Yes,
            Err(_) => Written::NoRoom,
        }
    }

    /// The request head of call `id`, with its deadline as time left.
    fn write_request(&mut self, id: CallId, w: &mut Writer<'_>, now: Instant) -> Written {
        let segmented = self.segs.is_segmented(id, Part::Request);
        let Some(c) = self.calls.get_mut(&id) else {
            return Written::Stale;
        };
        let (service, kind, deadline) = (c.service, c.kind, c.deadline);
        let Some(caller) = c.caller_mut() else {
            return Written::Stale;
        };
        let Some(head) = caller.request.as_mut().filter(|r| r.pending) else {
            return Written::Stale;
        };
        let deadline_ms = deadline.map_or(0, |d| {
            d.saturating_duration_since(now).as_millis().max(1) as u64
        });
        let f = Frame::RpcRequest {
            call: id,
            service,
            kind,
            // No stream messages follow the request.
            end: !caller_streams(kind),
            deadline_ms,
            body: body_of(&head.value, segmented),
        };
        finish(f.encode(w), &mut head.pending)
    }

    /// Stream message `seq` of call `id`, unless acknowledged meanwhile
    /// (or withheld by a test's forgery).
    fn write_stream(&mut self, id: CallId, seq: u64, w: &mut Writer<'_>) -> Written {
        let segmented = self.segs.is_segmented(id, Part::Stream(seq));
        let Some(c) = self.calls.get_mut(&id) else {
            return Written::Stale;
        };
        let forgery = c.send.forgery();
        if forgery.is_some_and(|f| seq < f.withhold) {
            return Written::Stale;
        }
        let Some(m) = c.send.get_mut(seq).filter(|m| m.pending && !m.acked) else {
            return Written::Stale;
        };
        let f = Frame::StreamData {
            call: id,
            seq,
            offset: forgery.and_then(|f| f.offset).unwrap_or(m.offset),
            body: body_of(&m.data, segmented),
        };
        finish(f.encode(w), &mut m.pending)
    }

    /// A packet carrying `item` was lost: queue whatever still needs delivering.
    pub(super) fn on_lost(&mut self, ctx: &mut Ctx<'_>, item: Sent) {
        // A segmented body's carrier, once acknowledged, is not sent again
        // while its pieces still are.
        let head_acked = match item {
            Sent::Request(id) => self.segs.head_acked(id, Part::Request),
            Sent::Response(id) => self.segs.head_acked(id, Part::Response),
            Sent::Stream(id, seq) => self.segs.head_acked(id, Part::Stream(seq)),
            _ => false,
        };
        if head_acked {
            return;
        }
        let requeue = match item {
            Sent::Request(id) => self
                .caller_mut(id)
                .filter(|c| c.cancel.is_none())
                .and_then(|c| c.request.as_mut())
                .map(|r| &mut r.pending),
            Sent::Response(id) => self
                .callee_mut(id)
                .and_then(|c| c.response.as_mut())
                .filter(|a| !a.acked)
                .map(|a| &mut a.frame.pending),
            Sent::Cancel(id) => self
                .caller_mut(id)
                .and_then(|c| c.cancel.as_mut())
                .map(|c| &mut c.pending),
            Sent::Stream(id, seq) => self
                .calls
                .get_mut(&id)
                .and_then(|c| c.send.get_mut(seq))
                .filter(|m| !m.acked)
                .map(|m| &mut m.pending),
            Sent::StreamEnd(id) => self.calls.get_mut(&id).and_then(|c| c.send.end_unacked()),
            Sent::StreamCredit(id) => self.calls.get_mut(&id).map(|c| c.recv.credit_pending_mut()),
            Sent::CallCredit => Some(&mut self.theirs.credit_pending),
            Sent::Announce(n) => {
                if self.announces.is_held(n) {
                    self.queue.push_front(item);
                    ctx.stats.frames_retransmitted += 1;
                }
                None
            }
            Sent::Segment(r) => {
                self.on_piece_lost(ctx, r);
                None
            }
            Sent::MtuProbe(size) => {
                ctx.stats.pmtu_probes_lost += 1;
                self.on_mtu_probe(ctx.now, usize::from(size), false);
                None
            }
            Sent::Ping => None,
        };
        if let Some(flag) = requeue {
            if !*flag {
                *flag = true;
                ctx.stats.frames_retransmitted += 1;
                if item != Sent::CallCredit {
                    self.queue.push_front(item);
                }
            }
        }
    }

    /// A packet carrying `item` was acknowledged.
    pub(super) fn on_acked(&mut self, ctx: &mut Ctx<'_>, item: Sent) {
        match item {
            Sent::Request(id) => self.request_delivered(ctx, id, true),
            Sent::Response(id) => {
                let callee = self.calls.get_mut(&id).and_then(Call::callee_mut);
                let Some(a) = callee.and_then(|c| c.response.as_mut()) else {
                    return;
                };
                a.frame.pending = false;
                match self.segs.get_mut(id, Part::Response) {
                    None => a.acked = true,
                    Some(tx) => {
                        if tx.on_head_acked() {
                            self.response_delivered(ctx, id);
                        }
                        return;
                    }
                }
                self.maybe_finish_callee(ctx, id);
            }
            Sent::Segment(r) => {
                if self.on_piece_acked(r) {
                    self.body_delivered(ctx, r);
                }
            }
            Sent::Cancel(id) => {
                if self.calls.get(&id).is_some_and(Call::is_caller) {
                    self.remove_call(ctx, id);
                }
            }
            Sent::Stream(id, seq) => {
                let head = self.calls.get_mut(&id).and_then(|c| c.send.get_mut(seq));
                if let Some(m) = head.filter(|m| !m.acked) {
                    m.pending = false;
                    let tx = self.segs.get_mut(id, Part::Stream(seq));
                    if tx.is_some_and(|tx| !tx.on_head_acked()) {
                        return;
                    }
                }
                self.stream_body_delivered(ctx, id, seq);
            }
            Sent::StreamEnd(id) => {
                if let Some(c) = self.calls.get_mut(&id) {
                    c.send.on_end_acked();
                }
                self.maybe_finish_callee(ctx, id);
            }
            Sent::Announce(n) => self.announces.release(n),
            Sent::MtuProbe(size) => {
                ctx.stats.pmtu_probes_acked += 1;
                self.on_mtu_probe(ctx.now, usize::from(size), true);
            }
            Sent::CallCredit | Sent::StreamCredit(_) | Sent::Ping => {}
        }
    }

    /// The callee has our whole request (inline, or every piece and the
    /// carrier of a segmented one): the body is freed (only the first time:
    /// a probe and the packet it repeated may both be acknowledged), and the
    /// call's stream messages and STREAM_END, held back until the callee
    /// knows the call, are queued (else they would be lost).
    fn request_delivered(&mut self, ctx: &mut Ctx<'_>, id: CallId, head_acked: bool) {
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(caller) = c.caller_mut() else {
            return;
        };
        let Some(r) = caller.request.as_mut() else {
            return;
        };
        let segmented = self.segs.get_mut(id, Part::Request);
        if let Some(tx) = segmented {
            r.pending = false;
            if head_acked && !tx.on_head_acked() {
                return;
            }
        }
        if let Some(r) = caller.request.take() {
            ctx.pool.put(r.value);
        }
        for seq in c.send.pending_seqs() {
            self.queue.push_back(Sent::Stream(id, seq));
        }
        if c.send.end_pending() {
            self.queue.push_back(Sent::StreamEnd(id));
        }
        if !self.segs.is_idle() {
            self.finish_body(id, Part::Request);
            // The call's segmented stream messages may start too.
            for part in self.segs.stream_parts(id) {
                self.start_body(id, part);
            }
        }
    }

    /// The caller has our whole response: the call is freed once its
    /// stream is acknowledged too.
    fn response_delivered(&mut self, ctx: &mut Ctx<'_>, id: CallId) {
        if let Some(a) = self.callee_mut(id).and_then(|c| c.response.as_mut()) {
            a.acked = true;
        }
        self.finish_body(id, Part::Response);
        self.maybe_finish_callee(ctx, id);
    }

    /// Stream message `seq` reached the peer whole (its inline frame, or
    /// every piece and the carrier): its buffer is released (which may make
    /// the call `Writable`) and a callee's call may finish.
    fn stream_body_delivered(&mut self, ctx: &mut Ctx<'_>, id: CallId, seq: u64) {
        if !self.segs.is_idle() {
            self.finish_body(id, Part::Stream(seq));
        }
        if let Some(c) = self.calls.get_mut(&id) {
            let pool = &mut *ctx.pool;
            ctx.stats.stream_release(c.send.ack(seq, |b| pool.put(b)));
            // Acknowledgements free room under our own cap too.
            if c.send.take_writable() {
                ctx.events.push_back(crate::event::Event::Writable {
                    session: self.id,
                    call: id,
                });
            }
        }
        self.maybe_finish_callee(ctx, id);
    }

    /// Every piece and the carrier of the body `r` belongs to are
    /// acknowledged: as if its inline frame had been.
    fn body_delivered(&mut self, ctx: &mut Ctx<'_>, r: SegRef) {
        let (id, part, _, _) = r.get();
        match part {
            Part::Request => self.request_delivered(ctx, id, false),
            Part::Response => self.response_delivered(ctx, id),
            Part::Stream(seq) => self.stream_body_delivered(ctx, id, seq),
        }
    }

    /// Whether a caller's stream frames may be queued yet (the request is
    /// acknowledged; a forged test stream does not wait).
    pub(super) fn stream_may_flow(&self, id: CallId) -> bool {
        self.calls.get(&id).is_some_and(|c| match &c.role {
            Role::Callee(_) => true,
            Role::Caller(r) => r.request.is_none() || c.send.forgery().is_some(),
        })
    }

    /// The caller's state of call `id`, if it exists and we opened it.
    fn caller_mut(&mut self, id: CallId) -> Option<&mut Caller> {
        self.calls.get_mut(&id).and_then(Call::caller_mut)
    }

    /// The callee's state of call `id`, if it exists and the peer opened it.
    fn callee_mut(&mut self, id: CallId) -> Option<&mut Callee> {
        self.calls.get_mut(&id).and_then(Call::callee_mut)
    }
}

/// A carrier's body: inline, or announced and sent in SEGMENT pieces.
fn body_of(bytes: &[u8], segmented: bool) -> Body<'_> {
    match segmented {
        true => Body::Segmented(bytes.len() as u64),
        false => Body::Inline(bytes),
    }
}

fn finish(r: Result<(), crate::wire::WireError>, pending: &mut bool) -> Written {
    match r {
        Ok(()) => {
            *pending = false;
            Written::Yes
        }
        Err(_) => Written::NoRoom,
    }
}
