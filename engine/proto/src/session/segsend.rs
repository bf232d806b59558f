//! Sending segmented bodies (`docs/PROTOCOL.md` §3.15): a body too large
//! for one packet goes out as SEGMENT pieces cut to whatever room a packet
//! has left, after the carrier frame announced its length.
//!
//! A body is *started* only once the peer's `reassembly_window` has room
//! for it (its length plus `PARTIAL_CHARGE`), and it keeps that room until
//! every piece and its carrier are acknowledged or its call is gone. The
//! peer holds a body at most from its first piece to its delivery, which
//! lies inside that span, so an honest sender never makes the peer exceed
//! its window. Pieces go out only while the congestion window is open, in
//! round-robin between the bodies in flight; a lost piece is queued to go
//! out again as a range (re-cut to fit, never below `MIN_SEGMENT` unless it
//! ends the body). Pieces are copied from the message's own buffer into the
//! packet: nothing is allocated per piece.

use std::collections::VecDeque;

use super::calls::{Call, Role};
use super::sent::SegRef;
use super::{Ctx, Session};
use crate::config::TransportParams;
use crate::ids::CallId;
use crate::ranges::RangeSet;
use crate::wire::{varint_len, Frame, Part, Writer, MIN_SEGMENT};
use crate::FastMap;

/// Send state of one segmented body; the bytes stay in the message's buffer.
#[derive(Debug, Default)]
pub(super) struct TxBody {
    /// The body's length.
    total: u64,
    /// First byte never sent.
    next: u64,
    /// Lost pieces to send again, `[lo, hi)`, oldest first.
    resend: VecDeque<(u64, u64)>,
    /// Bytes acknowledged (inclusive ranges).
    acked: RangeSet,
    /// The carrier frame was acknowledged.
    head_acked: bool,
    /// Holds room in the peer's reassembly window.
    reserved: bool,
    /// In the session's active list.
    listed: bool,
    /// Queued to start (waiting or started): a body starts once.
    queued: bool,
}

impl TxBody {
    fn new(total: u64) -> Self {
        TxBody {
            total,
            ..TxBody::default()
        }
    }

    /// The next range to send, `[lo, hi)`: lost pieces first.
    fn next_range(&self, total: u64) -> Option<(u64, u64)> {
        self.resend
            .front()
            .copied()
            .or((self.next < total).then_some((self.next, total)))
    }

    /// `len` bytes from `lo` were written.
    fn advance(&mut self, lo: u64, len: u64) {
        match self.resend.front_mut() {
            Some(r) if r.0 == lo => {
                r.0 += len;
                if r.0 >= r.1 {
                    self.resend.pop_front();
                }
            }
            _ => self.next = lo + len,
        }
    }

    /// Whether every byte of the body is acknowledged.
    fn all_acked(&self) -> bool {
        self.total == 0
            || (self.acked.len_ranges() == 1
                && self.acked.min() == Some(0)
                && self.acked.max() == Some(self.total - 1))
    }

    /// Every piece and the carrier are acknowledged.
    pub(super) fn is_delivered(&self) -> bool {
        self.head_acked && self.all_acked()
    }

    /// The carrier was acknowledged; returns whether the body now is too.
    pub(super) fn on_head_acked(&mut self) -> bool {
        self.head_acked = true;
        self.all_acked()
    }
}

/// The session's segmented bodies on their way out. Their send state lives
/// here, keyed by message, not in the calls: a call that never segments
/// pays nothing for it (one emptiness check when it goes).
#[derive(Default)]
pub(super) struct SegSend {
    /// Send state of every segmented body not yet delivered or dropped.
    txs: FastMap<(CallId, Part), TxBody>,
    /// Started bodies that may have pieces to send, round-robin.
    active: VecDeque<(CallId, Part)>,
    /// Bodies waiting for room in the peer's reassembly window, in order.
    waiting: VecDeque<(CallId, Part)>,
    /// Credit units of the peer's window held by started bodies.
    reserved: u64,
    /// Test hook (`EndpointConfig::testing_ignore_credit`): start every
    /// body at once, as a hostile peer would.
    ignore_window: bool,
}

impl SegSend {
    /// Send state for a session; `ignore_window` plays a hostile peer.
    pub(super) fn new(ignore_window: bool) -> Self {
        SegSend {
            ignore_window,
            ..SegSend::default()
        }
    }

    /// `(id, part)` is a body of `total` bytes to be segmented.
    pub(super) fn create(&mut self, id: CallId, part: Part, total: u64) {
        self.txs.insert((id, part), TxBody::new(total));
    }

    /// Whether no segmented body is being sent.
    pub(super) fn is_idle(&self) -> bool {
        self.txs.is_empty()
    }

    /// Whether `(id, part)` is sent segmented (its carrier is the `_SEG` form).
    pub(super) fn is_segmented(&self, id: CallId, part: Part) -> bool {
        !self.txs.is_empty() && self.txs.contains_key(&(id, part))
    }

    /// Whether the carrier of segmented `(id, part)` was acknowledged (so
    /// a lost copy is not sent again).
    pub(super) fn head_acked(&self, id: CallId, part: Part) -> bool {
        !self.txs.is_empty() && self.txs.get(&(id, part)).is_some_and(|t| t.head_acked)
    }

    /// The send state of `(id, part)`, if segmented.
    pub(super) fn get_mut(&mut self, id: CallId, part: Part) -> Option<&mut TxBody> {
        if self.txs.is_empty() {
            return None;
        }
        self.txs.get_mut(&(id, part))
    }

    /// Whether a started body may have a piece to send.
    pub(super) fn has_active(&self) -> bool {
        !self.active.is_empty()
    }

    /// The stream messages of `id` sent segmented, in order.
    pub(super) fn stream_parts(&self, id: CallId) -> Vec<Part> {
        let mut v: Vec<Part> = self
            .txs
            .keys()
            .filter(|(c, p)| *c == id && matches!(p, Part::Stream(_)))
            .map(|(_, p)| *p)
            .collect();
        v.sort_unstable();
        v
    }

    /// Forgets a body's send state; returns whether room in the peer's
    /// window came free.
    fn remove(&mut self, id: CallId, part: Part) -> bool {
        match self.txs.remove(&(id, part)) {
            Some(tx) if tx.reserved => {
                self.reserved -= TransportParams::reassembly_charge(tx.total);
                true
            }
            _ => false,
        }
    }

    /// Forgets every body of call `id`; returns whether room came free.
    fn remove_call(&mut self, id: CallId) -> bool {
        let mut freed = 0;
        self.txs.retain(|(c, _), tx| {
            if *c != id {
                return true;
            }
            if tx.reserved {
                freed += TransportParams::reassembly_charge(tx.total);
            }
            false
        });
        self.reserved -= freed;
        freed > 0
    }
}

/// What writing one piece did.
enum Piece {
    /// A piece went into the packet.
    Wrote(SegRef),
    /// Nothing of this body to send now (all sent, or the body is gone).
    Idle,
    /// The next piece does not fit what is left of the packet.
    NoRoom,
}

/// The body bytes of `(id, part)` and its send state, while it is still
/// to be delivered (a cancelled caller's request, an acknowledged stream
/// message are not).
fn tx_of<'a>(
    calls: &'a mut FastMap<CallId, Call>,
    txs: &'a mut FastMap<(CallId, Part), TxBody>,
    id: CallId,
    part: Part,
) -> Option<(&'a [u8], &'a mut TxBody)> {
    let tx = txs.get_mut(&(id, part))?;
    Some((body_of(calls.get(&id)?, part)?, tx))
}

/// The body of message `part` of `call`, while it is still to be
/// delivered.
fn body_of(call: &Call, part: Part) -> Option<&[u8]> {
    match (part, &call.role) {
        (Part::Stream(seq), _) => call.send.get(seq).filter(|m| !m.acked).map(|m| &m.data[..]),
        (Part::Request, Role::Caller(c)) if c.cancel.is_none() => Some(&c.request.as_ref()?.value),
        (Part::Response, Role::Callee(c)) => Some(&c.response.as_ref()?.frame.value.body),
        _ => None,
    }
}

/// How many bytes of `[lo, hi)` (of a `total`-byte body) to put in a piece
/// of at most `max` bytes, so that neither the piece nor what is left of
/// the range is shorter than `MIN_SEGMENT` without ending the body.
fn cut(lo: u64, hi: u64, total: u64, max: u64) -> Option<u64> {
    let want = hi - lo;
    if want <= max {
        return Some(want);
    }
    if max < MIN_SEGMENT {
        return None;
    }
    let len = if want - max < MIN_SEGMENT && hi != total {
        want - MIN_SEGMENT
    } else {
        max
    };
    (len >= MIN_SEGMENT).then_some(len)
}

/// Writes the next piece of `(id, part)` into `w`.
fn write_piece(
    calls: &mut FastMap<CallId, Call>,
    txs: &mut FastMap<(CallId, Part), TxBody>,
    id: CallId,
    part: Part,
    w: &mut Writer<'_>,
) -> Piece {
    let Some((body, tx)) = tx_of(calls, txs, id, part) else {
        return Piece::Idle;
    };
    let total = body.len() as u64;
    let Some((lo, hi)) = tx.next_range(total) else {
        return Piece::Idle;
    };
    // Type, ids, total, offset and a length prefix (at most 4 bytes: a
    // piece is shorter than a datagram).
    let head = 1 + varint_len(id.get()) + varint_len(part.code()) + 2 * varint_len(total) + 4;
    let Some(max) = w.remaining().checked_sub(head) else {
        return Piece::NoRoom;
    };
    let Some(len) = cut(lo, hi, total, max as u64) else {
        return Piece::NoRoom;
    };
    let payload = &body[lo as usize..(lo + len) as usize];
    let f = Frame::Segment {
        call: id,
        part,
        total,
        offset: lo,
        payload,
    };
    if f.encode(w).is_err() {
        return Piece::NoRoom;
    }
    tx.advance(lo, len);
    Piece::Wrote(SegRef::new(id, part, lo, len))
}

impl Session {
    /// A new segmented body: it starts once the peer's window has room.
    /// Its send state must exist ([`SegSend::create`]).
    pub(super) fn start_body(&mut self, id: CallId, part: Part) {
        match self.segs.get_mut(id, part) {
            Some(tx) if !tx.queued => tx.queued = true,
            _ => return,
        }
        self.segs.waiting.push_back((id, part));
        self.promote_bodies();
    }

    /// Starts waiting bodies, in order, while the peer's reassembly window
    /// has room (not before the handshake tells us its size).
    pub(super) fn promote_bodies(&mut self) {
        let Some((window, max)) = self.transport().map(|t| {
            let p = &t.peer_params;
            (u64::from(p.reassembly_window), u64::from(p.max_message))
        }) else {
            return;
        };
        while let Some(&(id, part)) = self.segs.waiting.front() {
            let Some((body, tx)) = tx_of(&mut self.calls, &mut self.segs.txs, id, part) else {
                self.segs.waiting.pop_front();
                continue;
            };
            if body.len() as u64 > max {
                // Made before the handshake told us the peer's limit: the
                // carrier alone goes, and the peer refuses it with
                // PAYLOAD_TOO_LARGE (its pieces would break the protocol).
                self.segs.waiting.pop_front();
                continue;
            }
            let charge = TransportParams::reassembly_charge(body.len() as u64);
            if self.segs.reserved + charge > window && !self.segs.ignore_window {
                return;
            }
            self.segs.reserved += charge;
            tx.reserved = true;
            tx.listed = true;
            self.segs.waiting.pop_front();
            self.segs.active.push_back((id, part));
        }
    }

    /// Writes pieces of the started bodies into `w`, round-robin, until the
    /// packet is full or nothing is left to send.
    pub(super) fn write_segments(&mut self, w: &mut Writer<'_>, frames: &mut Vec<super::Sent>) {
        while let Some(&(id, part)) = self.segs.active.front() {
            match write_piece(&mut self.calls, &mut self.segs.txs, id, part, w) {
                Piece::Wrote(r) => {
                    frames.push(super::Sent::Segment(r));
                    self.segs.active.rotate_left(1);
                }
                Piece::Idle => {
                    self.segs.active.pop_front();
                    if let Some(tx) = self.segs.get_mut(id, part) {
                        tx.listed = false;
                    }
                }
                Piece::NoRoom => return,
            }
        }
    }

    /// A piece was acknowledged. Returns whether its body is now delivered
    /// (every piece and the carrier acknowledged).
    pub(super) fn on_piece_acked(&mut self, r: SegRef) -> bool {
        let (id, part, lo, len) = r.get();
        let Some(tx) = self.segs.get_mut(id, part) else {
            return false;
        };
        if tx.is_delivered() {
            return false;
        }
        tx.acked.insert_range(lo..=lo + len - 1);
        tx.is_delivered()
    }

    /// A piece was lost (or is the probe): its range goes out again unless
    /// already acknowledged.
    pub(super) fn on_piece_lost(&mut self, ctx: &mut Ctx<'_>, r: SegRef) {
        let (id, part, lo, len) = r.get();
        let Some((_, tx)) = tx_of(&mut self.calls, &mut self.segs.txs, id, part) else {
            return;
        };
        if covered(&tx.acked, lo, len) {
            return;
        }
        tx.resend.push_back((lo, lo + len));
        ctx.stats.frames_retransmitted += 1;
        if !std::mem::replace(&mut tx.listed, true) {
            self.segs.active.push_back((id, part));
        }
    }

    /// A body was delivered (or its message is gone): its send state goes,
    /// its room in the peer's window returns, and bodies waiting for room
    /// may start.
    pub(super) fn finish_body(&mut self, id: CallId, part: Part) {
        if self.segs.remove(id, part) {
            self.promote_bodies();
        }
    }

    /// A carrier with an inline body did not fit an empty packet (the path
    /// MTU fell since it was first sent): its body goes segmented from now
    /// on, and the carrier is written again in its `_SEG` form. A peer that
    /// already has the inline copy treats the rest as duplicates. Returns
    /// whether `item` was such a carrier.
    pub(super) fn resegment(&mut self, item: super::Sent) -> bool {
        let (id, part) = match item {
            super::Sent::Request(id) => (id, Part::Request),
            super::Sent::Response(id) => (id, Part::Response),
            super::Sent::Stream(id, seq) => (id, Part::Stream(seq)),
            _ => return false,
        };
        if self.segs.is_segmented(id, part) {
            return false;
        }
        let len = self
            .calls
            .get(&id)
            .and_then(|c| body_of(c, part))
            .map_or(0, <[u8]>::len);
        if len == 0 {
            return false;
        }
        self.segs.create(id, part, len as u64);
        self.start_body(id, part);
        true
    }

    /// Call `id` is going: the bodies it was sending go with it.
    pub(super) fn drop_call_bodies(&mut self, id: CallId) {
        if self.segs.remove_call(id) {
            self.promote_bodies();
        }
    }
}

/// Whether `[lo, lo + len)` lies inside one acknowledged range.
fn covered(acked: &RangeSet, lo: u64, len: u64) -> bool {
    acked
        .iter()
        .any(|r| *r.start() <= lo && lo + len - 1 <= *r.end())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_and_what_is_left_are_never_short_unless_they_end_the_body() {
        // Fits whole.
        assert_eq!(cut(0, 100, 100, 1000), Some(100));
        // Cut to the room.
        assert_eq!(cut(0, 5000, 5000, 1400), Some(1400));
        // The rest would be short and not end the range at the body's end:
        // leave MIN_SEGMENT for it.
        assert_eq!(cut(0, 1600, 9000, 1400), Some(1600 - MIN_SEGMENT));
        // ... but a short rest that ends the body is fine.
        assert_eq!(cut(0, 1600, 1600, 1400), Some(1400));
        // No room for a full-size piece.
        assert_eq!(cut(0, 5000, 5000, MIN_SEGMENT - 1), None);
        // A range that cannot be cut in two valid pieces waits for room.
        assert_eq!(cut(0, 900, 9000, 600), None);
    }

    #[test]
    fn lost_ranges_go_first_and_the_body_is_delivered_when_all_is_acked() {
        let mut tx = TxBody::new(3000);
        assert_eq!(tx.next_range(3000), Some((0, 3000)));
        tx.advance(0, 1400);
        tx.advance(1400, 1400);
        tx.resend.push_back((0, 1400));
        assert_eq!(tx.next_range(3000), Some((0, 1400)));
        tx.advance(0, 1400);
        assert_eq!(tx.next_range(3000), Some((2800, 3000)));
        tx.advance(2800, 200);
        assert_eq!(tx.next_range(3000), None);
        tx.acked.insert_range(0..=2999);
        assert!(!tx.is_delivered(), "the carrier is not acknowledged");
        assert!(tx.on_head_acked());
        assert!(tx.is_delivered());
    }
}
