//! Per-call message streams with byte-credit flow control, and the window of
//! peer-opened call numbers already seen (exactly-once request delivery).

use std::collections::{BTreeMap, VecDeque};

use thiserror::Error;

/// Out-of-order messages a receiver buffers per stream, beyond byte credit:
/// empty messages cost no credit, so their count needs a bound of its own.
pub const MAX_BUFFERED_MESSAGES: u64 = 1024;

/// A peer broke a flow-control or framing rule on a stream. Closes the session.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum StreamViolation {
    /// Data beyond the credit we granted.
    #[error("stream data beyond granted credit")]
    Credit,
    /// A message number too far ahead of delivery.
    #[error("stream message number too far ahead")]
    TooFarAhead,
    /// Message offsets disagree with the lengths of earlier messages.
    #[error("inconsistent stream offsets")]
    Offset,
    /// A message after the announced end of the stream.
    #[error("stream data after end")]
    AfterEnd,
}

/// One outgoing stream message, kept until acknowledged.
pub(crate) struct OutMsg {
    pub offset: u64,
    pub data: Vec<u8>,
    pub acked: bool,
    /// Queued for (re)transmission and not yet written.
    pub pending: bool,
}

/// Outgoing direction of a call's stream.
pub(crate) struct SendStream {
    /// Unacknowledged messages; `msgs[0]` has sequence `base_seq`.
    pub msgs: VecDeque<OutMsg>,
    pub base_seq: u64,
    pub next_offset: u64,
    /// Peer's credit: offset + len of any message must not exceed it.
    pub limit: u64,
    /// Total messages, once finished.
    pub end: Option<u64>,
    pub end_pending: bool,
    pub end_acked: bool,
    /// The app was refused for lack of credit; tell it when credit arrives.
    pub blocked: bool,
}

impl SendStream {
    pub fn new(limit: u64) -> Self {
        SendStream {
            msgs: VecDeque::new(),
            base_seq: 0,
            next_offset: 0,
            limit,
            end: None,
            end_pending: false,
            end_acked: false,
            blocked: false,
        }
    }

    pub fn next_seq(&self) -> u64 {
        self.base_seq + self.msgs.len() as u64
    }

    /// Whether a message of `len` bytes fits the peer's credit now.
    pub fn fits(&self, len: usize) -> bool {
        self.next_offset + len as u64 <= self.limit
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
        seq
    }

    pub fn get_mut(&mut self, seq: u64) -> Option<&mut OutMsg> {
        let i = usize::try_from(seq.checked_sub(self.base_seq)?).ok()?;
        self.msgs.get_mut(i)
    }

    /// Marks `seq` acknowledged and releases the acknowledged prefix into `free`.
    pub fn ack(&mut self, seq: u64, mut free: impl FnMut(Vec<u8>)) {
        if let Some(m) = self.get_mut(seq) {
            m.acked = true;
        }
        while self.msgs.front().is_some_and(|m| m.acked) {
            if let Some(m) = self.msgs.pop_front() {
                free(m.data);
            }
            self.base_seq += 1;
        }
    }

    /// Everything sent, including the end marker, is acknowledged.
    pub fn all_acked(&self) -> bool {
        self.msgs.is_empty() && (self.end.is_none() || self.end_acked)
    }
}

/// Incoming direction of a call's stream.
pub(crate) struct RecvStream {
    pub next_seq: u64,
    pub delivered: u64,
    buffered: BTreeMap<u64, (u64, Vec<u8>)>,
    pub end: Option<u64>,
    window: u64,
    /// Credit we have advertised (offset limit).
    pub granted: u64,
    pub credit_pending: bool,
    pub end_delivered: bool,
}

impl RecvStream {
    pub fn new(window: u64) -> Self {
        RecvStream {
            next_seq: 0,
            delivered: 0,
            buffered: BTreeMap::new(),
            end: None,
            window,
            granted: window,
            credit_pending: false,
            end_delivered: false,
        }
    }

    /// Accepts one message. Duplicates are ignored. `take` turns the borrowed
    /// payload into an owned buffer only when it must be kept.
    pub fn on_data(
        &mut self,
        seq: u64,
        offset: u64,
        payload: &[u8],
        take: impl FnOnce(&[u8]) -> Vec<u8>,
    ) -> Result<(), StreamViolation> {
        let end = offset
            .checked_add(payload.len() as u64)
            .ok_or(StreamViolation::Credit)?;
        if end > self.granted {
            return Err(StreamViolation::Credit);
        }
        if self.end.is_some_and(|e| seq >= e) {
            return Err(StreamViolation::AfterEnd);
        }
        if seq < self.next_seq || self.buffered.contains_key(&seq) {
            return Ok(());
        }
        if seq - self.next_seq >= MAX_BUFFERED_MESSAGES {
            return Err(StreamViolation::TooFarAhead);
        }
        self.buffered.insert(seq, (offset, take(payload)));
        Ok(())
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
        if *entry.key() != self.next_seq {
            return Ok(None);
        }
        let (offset, data) = entry.remove();
        if offset != self.delivered {
            return Err(StreamViolation::Offset);
        }
        self.next_seq += 1;
        self.delivered += data.len() as u64;
        // Grant more once half the window is consumed: one CREDIT frame per
        // half window instead of one per message.
        if self.delivered + self.window - self.granted >= self.window / 2 {
            self.granted = self.delivered + self.window;
            self.credit_pending = true;
        }
        Ok(Some(data))
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

    #[test]
    fn recv_reorders_and_grants() {
        let mut r = RecvStream::new(10);
        r.on_data(1, 3, b"defg", |p| p.to_vec()).unwrap();
        assert_eq!(r.pop().unwrap(), None);
        r.on_data(0, 0, b"abc", |p| p.to_vec()).unwrap();
        r.on_data(0, 0, b"abc", |p| p.to_vec()).unwrap();
        assert_eq!(r.pop().unwrap().as_deref(), Some(&b"abc"[..]));
        assert!(!r.credit_pending);
        assert_eq!(r.pop().unwrap().as_deref(), Some(&b"defg"[..]));
        assert!(r.credit_pending);
        assert_eq!(r.granted, 17);
        assert_eq!(
            r.on_data(2, 7, &[0; 11], |p| p.to_vec()),
            Err(StreamViolation::Credit)
        );
        r.on_end(2).unwrap();
        assert!(r.finished());
        assert_eq!(
            r.on_data(2, 7, b"x", |p| p.to_vec()),
            Err(StreamViolation::AfterEnd)
        );
    }

    #[test]
    fn recv_bounds_empty_messages() {
        let mut r = RecvStream::new(10);
        assert_eq!(
            r.on_data(MAX_BUFFERED_MESSAGES, 0, b"", |p| p.to_vec()),
            Err(StreamViolation::TooFarAhead)
        );
    }

    #[test]
    fn send_acks_release_prefix() {
        let mut s = SendStream::new(8);
        assert!(s.fits(8) && !s.fits(9));
        s.push(vec![1; 4]);
        s.push(vec![2; 4]);
        let mut freed = 0;
        s.ack(1, |_| freed += 1);
        assert_eq!(freed, 0);
        s.ack(0, |_| freed += 1);
        assert_eq!(freed, 2);
        assert!(s.all_acked());
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
