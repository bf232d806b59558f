//! Per-call message streams with credit flow control, and the window of
//! peer-opened call numbers already seen (exactly-once request delivery).
//!
//! # Credit units
//!
//! Stream credit counts *credit units*: a message of `len` payload bytes
//! costs `len + MESSAGE_CHARGE`. Messages `0..=seq` of a direction therefore
//! use `offset + len + MESSAGE_CHARGE * (seq + 1)` units, where `offset` is
//! the byte offset carried on the wire (the sum of the lengths of messages
//! `0..seq`). Charging per message bounds the *number* of messages a peer can
//! make us hold, not only their bytes: empty messages are not free.
//!
//! # Memory bounds
//!
//! * A [`RecvStream`] holds (buffered, not yet delivered) at most
//!   `granted − delivered` credit units: every buffered message must sit,
//!   consistently with its neighbours, inside the window we granted.
//! * With credit on consumption ([`RecvStream::defer`]), `granted` never
//!   exceeds `consumed + window`, so what we buffer plus what the
//!   application holds undelivered-to-its-reader is at most one window.
//! * A [`SendStream`] holds (unacknowledged) at most `cap` credit units,
//!   our own bound, whatever credit the peer grants.

use std::collections::{BTreeMap, VecDeque};

use thiserror::Error;

/// Credit units one stream message costs on top of its payload bytes
/// (protocol constant, docs/PROTOCOL.md §9). It roughly covers what holding
/// one buffered message costs (map entry and buffer header), so a window of
/// credit bounds memory for any mix of message sizes.
pub const MESSAGE_CHARGE: u64 = 64;

/// A peer broke a flow-control or framing rule on a stream. Closes the session.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamViolation {
    /// Data beyond the credit we granted.
    #[error("stream data beyond granted credit")]
    Credit,
    /// A message number so high that its per-message charge alone exceeds
    /// the credit we granted.
    #[error("stream message number too far ahead")]
    TooFarAhead,
    /// A message's offset disagrees with the messages around it or lies
    /// behind data already delivered, or a retransmission differs from the
    /// original.
    #[error("inconsistent stream offsets")]
    Offset,
    /// A message after the announced end of the stream.
    #[error("stream data after end")]
    AfterEnd,
}

/// What [`RecvStream::on_data`] did with a valid message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Accepted {
    /// Buffered for delivery (its bytes are now held).
    Kept,
    /// Already buffered or delivered: an honest retransmission.
    Duplicate,
    /// Valid, but the stream discards data (its call is answered).
    Discarded,
}

/// Credit units a message of `len` bytes costs.
fn cost(len: usize) -> u64 {
    len as u64 + MESSAGE_CHARGE
}

/// One outgoing stream message, kept until acknowledged.
pub(crate) struct OutMsg {
    pub offset: u64,
    pub data: Vec<u8>,
    pub acked: bool,
    /// Queued for (re)transmission and not yet written.
    pub pending: bool,
}

/// Test hook (hostile-peer tests): how a forged stream is written.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Forgery {
    /// Write every message with this offset instead of its true one.
    pub offset: Option<u64>,
    /// Never write messages with a sequence below this.
    pub withhold: u64,
}

/// Outgoing direction of a call's stream.
///
/// Invariant: the messages held in `msgs` (sent or not, unacknowledged or
/// acknowledged out of order) cost at most `cap` credit units, unless the
/// testing hook `testing_ignore_credit` bypasses [`fits`](Self::fits).
pub(crate) struct SendStream {
    /// Unacknowledged messages; `msgs[0]` has sequence `base_seq`.
    msgs: VecDeque<OutMsg>,
    /// Sequence of `msgs[0]`.
    base_seq: u64,
    /// Offset (payload bytes before it) of the next message pushed.
    next_offset: u64,
    /// Peer's credit, in credit units: messages `0..=seq` may cost at most this.
    limit: u64,
    /// Our own bound on the credit units held in `msgs`: the peer's credit
    /// alone would let a peer that never acknowledges make us keep
    /// everything it allowed (up to 4 GiB per stream).
    cap: u64,
    /// Payload bytes held in `msgs`.
    held: u64,
    /// Total messages, once finished.
    end: Option<u64>,
    /// The end (STREAM_END) needs writing.
    end_pending: bool,
    /// The peer acknowledged the end.
    end_acked: bool,
    /// The app was refused a message of this length; tell it (`Writable`)
    /// once it fits.
    blocked: Option<usize>,
    /// Test hook; `None` in production.
    forgery: Option<Forgery>,
}

impl SendStream {
    /// Whether this side finished its stream.
    pub fn is_finished(&self) -> bool {
        self.end.is_some()
    }

    /// Finishes the stream after the messages pushed so far.
    pub fn finish(&mut self) {
        self.end = Some(self.next_seq());
        self.end_pending = true;
    }

    /// The application was refused a message of `len` bytes: it gets
    /// `Writable` once one fits ([`take_writable`](Self::take_writable)).
    pub fn block(&mut self, len: usize) {
        self.blocked = Some(len);
    }

    /// The end to write (its message count) and its pending flag, if it is
    /// due.
    pub fn end_to_write(&mut self) -> Option<(u64, &mut bool)> {
        let count = self.end.filter(|_| self.end_pending)?;
        Some((count, &mut self.end_pending))
    }

    /// Whether the end waits to be written.
    pub fn end_pending(&self) -> bool {
        self.end_pending
    }

    /// The end's pending flag, to queue it again — unless it was acknowledged.
    pub fn end_unacked(&mut self) -> Option<&mut bool> {
        (!self.end_acked).then_some(&mut self.end_pending)
    }

    /// The peer acknowledged the end.
    pub fn on_end_acked(&mut self) {
        self.end_acked = true;
    }

    /// Sequences of the messages waiting to be written, in order.
    pub fn pending_seqs(&self) -> impl Iterator<Item = u64> + '_ {
        let base = self.base_seq;
        let pending = self
            .msgs
            .iter()
            .enumerate()
            .filter(|(_, m)| m.pending && !m.acked);
        pending.map(move |(i, _)| base + i as u64)
    }

    /// The test hook, if set.
    pub fn forgery(&self) -> Option<Forgery> {
        self.forgery
    }

    /// Sets the test hook (hostile-peer tests only).
    pub fn set_forgery(&mut self, f: Forgery) {
        self.forgery = Some(f);
    }

    /// `limit` is the peer's initial credit, `cap` our own bound on held credit.
    pub fn new(limit: u64, cap: u64) -> Self {
        SendStream {
            msgs: VecDeque::new(),
            base_seq: 0,
            next_offset: 0,
            limit,
            cap,
            held: 0,
            end: None,
            end_pending: false,
            end_acked: false,
            blocked: None,
            forgery: None,
        }
    }

    pub fn next_seq(&self) -> u64 {
        self.base_seq + self.msgs.len() as u64
    }

    /// Payload bytes held for retransmission.
    pub fn held(&self) -> u64 {
        self.held
    }

    /// The largest payload that can ever fit: larger messages would block forever.
    pub fn max_message(&self) -> usize {
        usize::try_from(self.cap.saturating_sub(MESSAGE_CHARGE)).unwrap_or(usize::MAX)
    }

    /// Whether a message of `len` bytes fits the peer's credit and our own
    /// bound on unacknowledged data now.
    pub fn fits(&self, len: usize) -> bool {
        let used = self
            .next_offset
            .saturating_add(MESSAGE_CHARGE.saturating_mul(self.next_seq()));
        let held = self.held + MESSAGE_CHARGE * self.msgs.len() as u64;
        used.saturating_add(cost(len)) <= self.limit && held + cost(len) <= self.cap
    }

    /// Appends a message; the caller checked [`fits`](Self::fits). Returns its sequence.
    pub fn push(&mut self, data: Vec<u8>) -> u64 {
        let seq = self.next_seq();
        let len = data.len() as u64;
        self.msgs.push_back(OutMsg {
            offset: self.next_offset,
            data,
            acked: false,
            pending: true,
        });
        self.next_offset += len;
        self.held += len;
        seq
    }

    /// Held message `seq`, if not yet released.
    pub fn get(&self, seq: u64) -> Option<&OutMsg> {
        let i = usize::try_from(seq.checked_sub(self.base_seq)?).ok()?;
        self.msgs.get(i)
    }

    pub fn get_mut(&mut self, seq: u64) -> Option<&mut OutMsg> {
        let i = usize::try_from(seq.checked_sub(self.base_seq)?).ok()?;
        self.msgs.get_mut(i)
    }

    /// Marks `seq` acknowledged and releases the acknowledged prefix into
    /// `free`. Returns the payload bytes released.
    pub fn ack(&mut self, seq: u64, mut free: impl FnMut(Vec<u8>)) -> u64 {
        if let Some(m) = self.get_mut(seq) {
            m.acked = true;
        }
        let mut released = 0;
        while self.msgs.front().is_some_and(|m| m.acked) {
            if let Some(m) = self.msgs.pop_front() {
                released += m.data.len() as u64;
                free(m.data);
            }
            self.base_seq += 1;
        }
        self.held -= released;
        released
    }

    /// The peer raised its credit to `limit`.
    pub fn on_credit(&mut self, limit: u64) {
        self.limit = self.limit.max(limit);
    }

    /// Sets our bound on held credit (once the peer's window is known).
    pub fn set_cap(&mut self, cap: u64) {
        self.cap = cap;
    }

    /// Whether the app was refused a message that fits now (then it is told
    /// once: the refusal is cleared).
    pub fn take_writable(&mut self) -> bool {
        match self.blocked {
            Some(len) if self.fits(len) => {
                self.blocked = None;
                true
            }
            _ => false,
        }
    }

    /// Releases every held message into `free`; returns the payload bytes released.
    pub fn drain(&mut self, mut free: impl FnMut(Vec<u8>)) -> u64 {
        if self.msgs.is_empty() {
            return 0;
        }
        let released = self.held;
        for m in self.msgs.drain(..) {
            free(m.data);
        }
        self.held = 0;
        released
    }

    /// Everything sent, including the end marker, is acknowledged.
    pub fn all_acked(&self) -> bool {
        self.msgs.is_empty() && (self.end.is_none() || self.end_acked)
    }
}

/// Incoming direction of a call's stream.
///
/// Invariants (`delivered_credit` = `delivered + MESSAGE_CHARGE * next_seq`):
/// * buffered messages occupy disjoint, ordered credit ranges inside
///   `[delivered_credit, granted)`, so they cost at most
///   `granted − delivered_credit` units — whatever offsets the peer claims;
/// * `granted ≤ base + window`, where `base` is `consumed` under deferred
///   credit and `delivered_credit` otherwise.
pub(crate) struct RecvStream {
    /// Sequence of the next message to deliver.
    next_seq: u64,
    /// Payload bytes delivered: the offset message `next_seq` must carry.
    delivered: u64,
    /// seq → (offset, length, payload): the payload is `None` while a
    /// segmented message's body is still being reassembled (its place and
    /// credit were checked when its carrier arrived).
    buffered: BTreeMap<u64, (u64, u64, Option<Vec<u8>>)>,
    /// Payload bytes in `buffered` (of the messages with their payload).
    held: u64,
    /// Total messages, once the peer finished (or will never stream).
    end: Option<u64>,
    /// Credit units granted ahead of what is delivered (or consumed).
    window: u64,
    /// Credit we have advertised (credit units).
    granted: u64,
    /// A credit grant needs writing.
    credit_pending: bool,
    /// The end was reported to the application (`StreamFinished`).
    end_delivered: bool,
    /// Credit units the application reported consumed, once credit follows
    /// consumption instead of delivery.
    consumed: Option<u64>,
    /// Data is checked against the credit but no longer kept: the call is
    /// answered (callee) or abandoned (caller), nobody will read it.
    discard: bool,
}

impl RecvStream {
    /// Sequence of the next message to deliver.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The peer will send no stream on this call: it counts as finished,
    /// and that is not reported as an event.
    pub fn close_empty(&mut self) {
        self.end = Some(0);
        self.end_delivered = true;
    }

    /// True once, when the whole stream was delivered: report the end.
    pub fn take_end(&mut self) -> bool {
        let due = self.finished() && !self.end_delivered;
        self.end_delivered |= due;
        due
    }

    /// Whether a credit grant waits to be written.
    pub fn credit_pending(&self) -> bool {
        self.credit_pending
    }

    /// The credit to write (the limit granted) and its pending flag, if due.
    pub fn credit_to_write(&mut self) -> Option<(u64, &mut bool)> {
        self.credit_pending
            .then_some((self.granted, &mut self.credit_pending))
    }

    /// The grant's pending flag, to queue it again.
    pub fn credit_pending_mut(&mut self) -> &mut bool {
        &mut self.credit_pending
    }

    pub fn new(window: u64) -> Self {
        RecvStream {
            next_seq: 0,
            delivered: 0,
            buffered: BTreeMap::new(),
            held: 0,
            end: None,
            window,
            granted: window,
            credit_pending: false,
            end_delivered: false,
            consumed: None,
            discard: false,
        }
    }

    /// Payload bytes buffered, not yet delivered.
    pub fn held(&self) -> u64 {
        self.held
    }

    fn delivered_credit(&self) -> u64 {
        self.delivered + MESSAGE_CHARGE * self.next_seq
    }

    /// Checks one message against credit, the end marker and the messages
    /// around it, then keeps it unless it is a duplicate or the stream
    /// discards. `take` gives the owned payload only when it is kept: `None`
    /// for a segmented message, whose body [`fill`](Self::fill) brings.
    pub fn on_data(
        &mut self,
        seq: u64,
        offset: u64,
        len: u64,
        take: impl FnOnce() -> Option<Vec<u8>>,
    ) -> Result<Accepted, StreamViolation> {
        let charge = seq
            .checked_add(1)
            .and_then(|n| n.checked_mul(MESSAGE_CHARGE))
            .filter(|&c| c <= self.granted)
            .ok_or(StreamViolation::TooFarAhead)?;
        let end = offset
            .checked_add(len)
            .and_then(|e| e.checked_add(charge))
            .ok_or(StreamViolation::Credit)?;
        if end > self.granted {
            return Err(StreamViolation::Credit);
        }
        if self.end.is_some_and(|e| seq >= e) {
            return Err(StreamViolation::AfterEnd);
        }
        if seq < self.next_seq {
            // Delivered already: it must have lain before what was delivered.
            return match offset + len <= self.delivered {
                true => Ok(Accepted::Duplicate),
                false => Err(StreamViolation::Offset),
            };
        }
        if self.check_placement(seq, offset, len)? {
            return Ok(Accepted::Duplicate);
        }
        if self.discard {
            return Ok(Accepted::Discarded);
        }
        let data = take();
        if data.is_some() {
            self.held += len;
        }
        self.buffered.insert(seq, (offset, len, data));
        Ok(Accepted::Kept)
    }

    /// Whether message `seq` is placed and waits for its segmented body.
    pub fn awaits_segmented(&self, seq: u64) -> bool {
        matches!(self.buffered.get(&seq), Some((_, _, None)))
    }

    /// Whether a piece of message `seq`'s segmented body is still wanted:
    /// the stream keeps data, the message is not delivered or whole yet.
    /// An error if the stream can never carry message `seq`.
    pub fn wants_segment(&self, seq: u64) -> Result<bool, StreamViolation> {
        if self.end.is_some_and(|e| seq >= e) {
            return Err(StreamViolation::AfterEnd);
        }
        Ok(!self.discard
            && seq >= self.next_seq
            && !matches!(self.buffered.get(&seq), Some((_, _, Some(_)))))
    }

    /// The segmented body of placed message `seq` is whole. Returns its
    /// length if it was awaited (else the body is given back).
    pub fn fill(&mut self, seq: u64, body: Vec<u8>) -> Result<u64, Vec<u8>> {
        match self.buffered.get_mut(&seq) {
            Some((_, len, slot @ None)) if *len == body.len() as u64 => {
                *slot = Some(body);
                self.held += *len;
                Ok(*len)
            }
            _ => Err(body),
        }
    }

    /// Message `seq ≥ next_seq` must start at or after what was delivered,
    /// exactly there if it is next, and fit between its buffered
    /// neighbours (exactly against adjacent ones). Returns whether it is a
    /// retransmission of a buffered message (which must match it).
    fn check_placement(&self, seq: u64, offset: u64, len: u64) -> Result<bool, StreamViolation> {
        let bad = Err(StreamViolation::Offset);
        if offset < self.delivered || (seq == self.next_seq && offset != self.delivered) {
            return bad;
        }
        if let Some((o, l, _)) = self.buffered.get(&seq) {
            return if *o == offset && *l == len {
                Ok(true)
            } else {
                bad
            };
        }
        if let Some((&p, (po, pl, _))) = self.buffered.range(..seq).next_back() {
            let after = po + pl;
            if offset < after || (p + 1 == seq && offset != after) {
                return bad;
            }
        }
        if let Some((&n, (no, _, _))) = self.buffered.range(seq + 1..).next() {
            let end = offset + len;
            if *no < end || (n == seq + 1 && *no != end) {
                return bad;
            }
        }
        Ok(false)
    }

    /// Records the peer's end marker.
    pub fn on_end(&mut self, count: u64) -> Result<(), StreamViolation> {
        if count < self.next_seq
            || self
                .buffered
                .last_key_value()
                .is_some_and(|(s, _)| *s >= count)
        {
            return Err(StreamViolation::AfterEnd);
        }
        if self.end.is_some_and(|e| e != count) {
            return Err(StreamViolation::AfterEnd);
        }
        self.end = Some(count);
        Ok(())
    }

    /// Next in-order message, if it has arrived.
    pub fn pop(&mut self) -> Result<Option<Vec<u8>>, StreamViolation> {
        let Some(entry) = self.buffered.first_entry() else {
            return Ok(None);
        };
        if *entry.key() != self.next_seq || entry.get().2.is_none() {
            return Ok(None);
        }
        let (offset, _, data) = entry.remove();
        let data = data.unwrap_or_default();
        // Checked on arrival; kept as a guard for the invariant.
        if offset != self.delivered {
            return Err(StreamViolation::Offset);
        }
        let len = data.len() as u64;
        self.held -= len;
        self.next_seq += 1;
        self.delivered += len;
        self.maybe_grant();
        Ok(Some(data))
    }

    /// Raises the credit once half a window was delivered (or consumed,
    /// under deferred credit): one CREDIT frame per half window, not per message.
    fn maybe_grant(&mut self) {
        let base = self.consumed.unwrap_or_else(|| self.delivered_credit());
        if (base + self.window).saturating_sub(self.granted) >= self.window / 2 {
            self.granted = base + self.window;
            self.credit_pending = true;
        }
    }

    /// From now on credit follows what the application reports consumed
    /// ([`consume`](Self::consume)), counted from the start of the stream.
    /// Idempotent.
    pub fn defer(&mut self) {
        if self.consumed.is_none() {
            self.consumed = Some(0);
        }
    }

    /// Whether credit follows consumption.
    pub fn deferred(&self) -> bool {
        self.consumed.is_some()
    }

    /// The application consumed `msgs` messages of `bytes` payload bytes in
    /// total. Clamped to what was delivered: credit is never granted for
    /// data the application cannot have read. No-op unless deferred.
    pub fn consume(&mut self, msgs: u64, bytes: u64) {
        let Some(consumed) = self.consumed else {
            return;
        };
        let units = MESSAGE_CHARGE.saturating_mul(msgs).saturating_add(bytes);
        self.consumed = Some(consumed.saturating_add(units).min(self.delivered_credit()));
        self.maybe_grant();
    }

    /// Stops keeping data (the call is answered or abandoned) and releases
    /// what is buffered into `free`; returns the payload bytes released.
    pub fn discard(&mut self, mut free: impl FnMut(Vec<u8>)) -> u64 {
        self.discard = true;
        let released = self.held;
        while let Some((_, (_, _, data))) = self.buffered.pop_first() {
            data.into_iter().for_each(&mut free);
        }
        self.held = 0;
        released
    }

    /// All messages up to the end marker have been delivered.
    pub fn finished(&self) -> bool {
        self.end == Some(self.next_seq)
    }
}

/// Which peer-opened call sequences have been seen (request or cancel).
///
/// Everything below `floor` is seen; `bits` covers `[floor, floor + CAP)`.
/// The peer may only open sequences below the credit we grant, and we never
/// grant beyond `floor + CAP`, so the window cannot overflow; a sequence
/// outside it is a protocol violation.
pub(crate) struct SeenWindow {
    floor: u64,
    bits: VecDeque<bool>,
}

impl SeenWindow {
    pub const CAP: u64 = 1 << 16;

    pub fn new() -> Self {
        SeenWindow {
            floor: 0,
            bits: VecDeque::new(),
        }
    }

    /// Highest sequence (exclusive) that may ever be granted right now.
    pub fn horizon(&self) -> u64 {
        self.floor + Self::CAP
    }

    pub fn is_seen(&self, seq: u64) -> bool {
        seq < self.floor
            || self
                .bits
                .get((seq - self.floor) as usize)
                .copied()
                .unwrap_or(false)
    }

    /// Marks `seq` seen. Returns false if it lies beyond the window.
    pub fn mark(&mut self, seq: u64) -> bool {
        if seq < self.floor {
            return true;
        }
        let i = seq - self.floor;
        if i >= Self::CAP {
            return false;
        }
        let i = i as usize;
        if self.bits.len() <= i {
            self.bits.resize(i + 1, false);
        }
        self.bits[i] = true;
        while self.bits.front() == Some(&true) {
            self.bits.pop_front();
            self.floor += 1;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: u64 = MESSAGE_CHARGE;

    fn keep(r: &mut RecvStream, seq: u64, off: u64, p: &[u8]) -> Result<Accepted, StreamViolation> {
        r.on_data(seq, off, p.len() as u64, || Some(p.to_vec()))
    }

    #[test]
    fn recv_reorders_and_grants() {
        let mut r = RecvStream::new(256);
        assert_eq!(keep(&mut r, 1, 3, b"defg"), Ok(Accepted::Kept));
        assert_eq!(r.pop().unwrap(), None);
        assert_eq!(keep(&mut r, 0, 0, b"abc"), Ok(Accepted::Kept));
        assert_eq!(keep(&mut r, 0, 0, b"abc"), Ok(Accepted::Duplicate));
        assert_eq!(r.held(), 7);
        assert_eq!(r.pop().unwrap().as_deref(), Some(&b"abc"[..]));
        assert!(!r.credit_pending);
        assert_eq!(r.pop().unwrap().as_deref(), Some(&b"defg"[..]));
        assert!(r.credit_pending);
        assert_eq!(r.granted, 7 + 2 * C + 256);
        assert_eq!(r.held(), 0);
        // A retransmission of a delivered message is a harmless duplicate.
        assert_eq!(keep(&mut r, 1, 3, b"defg"), Ok(Accepted::Duplicate));
        assert_eq!(keep(&mut r, 2, 7, &[0; 200]), Err(StreamViolation::Credit));
        r.on_end(2).unwrap();
        assert!(r.finished());
        assert_eq!(keep(&mut r, 2, 7, b"x"), Err(StreamViolation::AfterEnd));
    }

    #[test]
    fn recv_refuses_offsets_that_disagree() {
        let mut r = RecvStream::new(1 << 20);
        assert_eq!(keep(&mut r, 1, 0, &[1; 100]), Ok(Accepted::Kept));
        // The attack: every message claims offset 0.
        assert_eq!(keep(&mut r, 2, 0, &[1; 100]), Err(StreamViolation::Offset));
        assert_eq!(keep(&mut r, 3, 50, &[1; 10]), Err(StreamViolation::Offset));
        assert_eq!(keep(&mut r, 0, 5, b""), Err(StreamViolation::Offset));
        assert_eq!(keep(&mut r, 0, 0, &[1; 5]), Err(StreamViolation::Offset));
        assert_eq!(keep(&mut r, 1, 0, &[1; 99]), Err(StreamViolation::Offset));
        assert_eq!(keep(&mut r, 5, 1000, b"x"), Ok(Accepted::Kept));
        assert_eq!(keep(&mut r, 4, 990, &[1; 20]), Err(StreamViolation::Offset));
        assert_eq!(keep(&mut r, 4, 999, &[1; 1]), Ok(Accepted::Kept));
        assert_eq!(keep(&mut r, 6, 1000, b""), Err(StreamViolation::Offset));
        assert_eq!(r.held(), 102);
    }

    #[test]
    fn recv_charges_every_message() {
        let mut r = RecvStream::new(10 * C);
        assert_eq!(keep(&mut r, 9, 0, b""), Ok(Accepted::Kept));
        assert_eq!(keep(&mut r, 10, 0, b""), Err(StreamViolation::TooFarAhead));
        assert_eq!(
            keep(&mut r, u64::MAX, 0, b""),
            Err(StreamViolation::TooFarAhead)
        );
        assert_eq!(keep(&mut r, 9, 0, b"x"), Err(StreamViolation::Credit));
        assert_eq!(
            keep(&mut r, 0, u64::MAX, b"x"),
            Err(StreamViolation::Credit)
        );
    }

    /// Whatever a peer sends, what is buffered fits the credit granted
    /// beyond what was delivered (xorshift-driven, seeded).
    #[test]
    fn recv_holds_at_most_the_granted_window() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..200 {
            let mut r = RecvStream::new(4096);
            let mut kept = 0;
            for _ in 0..300 {
                let (a, b, c) = (next(), next(), next());
                let seq = r.next_seq + a % 40;
                let offset = match b % 3 {
                    0 => r.delivered + b % 512,
                    1 => r.delivered + (seq - r.next_seq) * 37,
                    _ => b % 4096,
                };
                let payload = vec![0u8; (c % 300) as usize];
                if keep(&mut r, seq, offset, &payload) == Ok(Accepted::Kept) {
                    kept += 1;
                }
                let held = r.held() + C * r.buffered.len() as u64;
                assert!(held <= r.granted - r.delivered_credit(), "round {round}");
                if c % 5 == 0 {
                    while let Ok(Some(_)) = r.pop() {}
                }
            }
            assert!(kept > 0);
        }
    }

    #[test]
    fn deferred_credit_follows_consumption() {
        let mut r = RecvStream::new(1000);
        r.defer();
        for seq in 0..6 {
            assert_eq!(keep(&mut r, seq, seq * 100, &[0; 100]), Ok(Accepted::Kept));
            assert!(r.pop().unwrap().is_some());
        }
        assert!(!r.credit_pending, "delivery alone grants nothing");
        assert_eq!(
            keep(&mut r, 6, 600, &[0; 100]),
            Err(StreamViolation::Credit)
        );
        r.consume(3, 300);
        assert!(!r.credit_pending);
        r.consume(1, 100);
        assert!(r.credit_pending);
        assert_eq!(r.granted, 4 * (100 + C) + 1000);
        // Reports beyond what was delivered are clamped.
        r.consume(100, 100_000);
        assert_eq!(r.consumed, Some(6 * (100 + C)));
    }

    #[test]
    fn discarding_still_checks_credit() {
        let mut r = RecvStream::new(1000);
        assert_eq!(keep(&mut r, 1, 10, &[0; 10]), Ok(Accepted::Kept));
        let mut freed = 0;
        assert_eq!(r.discard(|_| freed += 1), 10);
        assert_eq!((freed, r.held()), (1, 0));
        assert_eq!(keep(&mut r, 2, 20, &[0; 10]), Ok(Accepted::Discarded));
        assert_eq!(keep(&mut r, 3, 30, &[0; 900]), Err(StreamViolation::Credit));
        assert_eq!(r.held(), 0);
    }

    #[test]
    fn send_respects_credit_and_own_cap() {
        let mut s = SendStream::new(8 + 2 * C, 1 << 20);
        assert!(s.fits(8 + C as usize) && !s.fits(9 + C as usize));
        s.push(vec![1; 4]);
        assert!(s.fits(4) && !s.fits(5));
        s.push(vec![2; 4]);
        s.blocked = Some(1);
        assert!(!s.take_writable());
        s.on_credit(8 + 3 * C + 1);
        assert!(s.take_writable() && s.blocked.is_none());
        let mut freed = 0;
        assert_eq!(s.ack(1, |_| freed += 1), 0);
        assert_eq!(s.ack(0, |_| freed += 1), 8);
        assert_eq!((freed, s.held()), (2, 0));
        assert!(s.all_acked());
        // A peer granting 4 GiB still cannot make us hold more than `cap`.
        let mut s = SendStream::new(u64::from(u32::MAX), 3 * (100 + C));
        for _ in 0..3 {
            assert!(s.fits(100));
            s.push(vec![0; 100]);
        }
        assert!(!s.fits(0));
        s.blocked = Some(100);
        assert_eq!(s.ack(0, |_| {}), 100);
        assert!(s.take_writable());
        assert_eq!(s.max_message() as u64, 3 * (100 + C) - C);
    }

    #[test]
    fn seen_window() {
        let mut w = SeenWindow::new();
        assert!(w.mark(2));
        assert!(w.is_seen(2) && !w.is_seen(0));
        assert!(w.mark(0) && w.mark(1));
        assert!(w.is_seen(1) && !w.is_seen(3));
        assert!(!w.mark(3 + SeenWindow::CAP));
    }
}
