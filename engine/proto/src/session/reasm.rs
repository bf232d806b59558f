//! Receiving segmented bodies (`docs/PROTOCOL.md` §3.15): pieces from
//! SEGMENT frames are copied into one buffer per body, in any order and
//! with duplicates, and the body is handed to the call once it is whole
//! and its carrier frame (RPC_REQUEST_SEG, RPC_RESPONSE_SEG,
//! STREAM_DATA_SEG) has arrived.
//!
//! Bounds, whatever the peer sends: every body under reassembly costs its
//! length plus [`PARTIAL_CHARGE`] of our `reassembly_window`, counted from
//! its first piece until it is handed over or its call no longer wants it;
//! a piece that would exceed the window closes the session. A body's piece
//! record has at most `total / MIN_SEGMENT + 1` ranges (the decoder
//! refuses shorter pieces that do not end the body).

use super::calls::{Call, Role};
use super::{Ctx, Session};
use crate::config::PARTIAL_CHARGE;
use crate::event::{ProtocolViolation, SegmentViolation};
use crate::ids::CallId;
use crate::ranges::RangeSet;
use crate::wire::Part;
use crate::FastMap;

/// One body being put together.
pub(super) struct Partial {
    /// `total` bytes, zeroed until their piece arrives.
    buf: Vec<u8>,
    /// Byte offsets received (inclusive ranges).
    got: RangeSet,
}

impl Partial {
    fn new(total: u64) -> Self {
        Partial {
            // Zeroed pages come from the allocator untouched (calloc), so
            // a body costs memory as its pieces arrive, up to `total`.
            buf: vec![0; total as usize],
            got: RangeSet::new(),
        }
    }

    fn total(&self) -> u64 {
        self.buf.len() as u64
    }

    /// Copies a piece in (the decoder checked it lies within the body).
    fn add(&mut self, offset: u64, piece: &[u8]) {
        let at = offset as usize;
        if let Some(dst) = self.buf.get_mut(at..at + piece.len()) {
            dst.copy_from_slice(piece);
            self.got
                .insert_range(offset..=offset + piece.len() as u64 - 1);
        }
    }

    fn is_complete(&self) -> bool {
        self.got.len_ranges() == 1
            && self.got.min() == Some(0)
            && self.got.max() == Some(self.total() - 1)
    }
}

/// The bodies a session is reassembling, and what they cost.
#[derive(Default)]
pub(super) struct Reassembly {
    partials: FastMap<(CallId, Part), Partial>,
    /// Credit units in use: Σ (total + `PARTIAL_CHARGE`).
    used: u64,
}

impl Reassembly {
    /// Credit units in use.
    #[cfg(test)]
    fn used(&self) -> u64 {
        self.used
    }

    /// Whether no body is under reassembly (the common case).
    pub(super) fn is_empty(&self) -> bool {
        self.partials.is_empty()
    }

    /// The whole body of `(call, part)`, if every piece has arrived: taken
    /// out, its credit returned.
    pub(super) fn take_complete(&mut self, call: CallId, part: Part) -> Option<Vec<u8>> {
        let key = (call, part);
        if !self.partials.get(&key)?.is_complete() {
            return None;
        }
        let p = self.partials.remove(&key)?;
        self.used -= p.total() + PARTIAL_CHARGE;
        Some(p.buf)
    }

    /// Drops every body of `call` (it no longer wants them). Returns the
    /// bytes dropped.
    pub(super) fn drop_call(&mut self, call: CallId) -> u64 {
        if self.partials.is_empty() {
            return 0;
        }
        let (mut bytes, mut bodies) = (0, 0);
        self.partials.retain(|(c, _), p| {
            if *c != call {
                return true;
            }
            bytes += p.total();
            bodies += 1;
            false
        });
        self.used -= bytes + bodies * PARTIAL_CHARGE;
        bytes
    }

    /// A carrier announced a body of `total` bytes: pieces that came first
    /// must agree. Returns `total`.
    pub(super) fn check_total(
        &self,
        call: CallId,
        part: Part,
        total: u64,
    ) -> Result<u64, SegmentViolation> {
        match self.partials.get(&(call, part)) {
            Some(p) if p.total() != total => Err(SegmentViolation::TotalMismatch),
            _ => Ok(total),
        }
    }

    /// Adds a piece; a new body must fit `window`. Returns whether the body
    /// is now whole.
    fn add(
        &mut self,
        key: (CallId, Part),
        total: u64,
        offset: u64,
        piece: &[u8],
        window: u64,
    ) -> Result<bool, SegmentViolation> {
        let p = match self.partials.entry(key) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let charge = total + PARTIAL_CHARGE;
                if self.used + charge > window {
                    return Err(SegmentViolation::Window);
                }
                self.used += charge;
                e.insert(Partial::new(total))
            }
        };
        if p.total() != total {
            return Err(SegmentViolation::TotalMismatch);
        }
        p.add(offset, piece);
        Ok(p.is_complete())
    }
}

/// Whether a piece of `(call, part)` is still wanted.
enum Wanted {
    /// Keep it.
    Yes,
    /// The body was delivered, or its call is answered, cancelled or gone:
    /// a late or duplicate piece, dropped.
    No,
}

impl Session {
    /// A SEGMENT frame: keep the piece if its body is still wanted, and
    /// hand the body over once whole.
    pub(super) fn on_segment(
        &mut self,
        ctx: &mut Ctx<'_>,
        id: CallId,
        part: Part,
        total: u64,
        offset: u64,
        piece: &[u8],
    ) -> Result<(), ProtocolViolation> {
        let params = &ctx.cfg.params;
        if total > u64::from(params.max_message) {
            return Err(SegmentViolation::TooLarge.into());
        }
        if let Wanted::No = self.segment_wanted(id, part)? {
            ctx.stats.segment_bytes_discarded += piece.len() as u64;
            return Ok(());
        }
        let window = u64::from(params.reassembly_window);
        ctx.stats.segment_bytes_rx += piece.len() as u64;
        if self.reasm.add((id, part), total, offset, piece, window)? {
            self.on_body_complete(ctx, id, part)?;
        }
        Ok(())
    }

    /// Whether the body a piece belongs to is still wanted; an error for a
    /// piece no honest peer sends.
    fn segment_wanted(&self, id: CallId, part: Part) -> Result<Wanted, ProtocolViolation> {
        let ours = id.opener() == self.side;
        let call = self.calls.get(&id);
        let wanted = match part {
            Part::Request => {
                if ours {
                    return Err(ProtocolViolation::WrongRole);
                }
                if id.seq() >= self.theirs.granted {
                    return Err(ProtocolViolation::CallCredit);
                }
                match call {
                    // Before its carrier: kept, counted against the window.
                    None => !self.theirs.seen.is_seen(id.seq()),
                    Some(c) => c.awaits_request_body(),
                }
            }
            Part::Response => {
                if !ours {
                    return Err(ProtocolViolation::WrongRole);
                }
                call.is_some_and(Call::awaits_response_body)
            }
            Part::Stream(seq) => match call {
                Some(c) => c.recv.wants_segment(seq)?,
                None => false,
            },
        };
        Ok(if wanted { Wanted::Yes } else { Wanted::No })
    }

    /// Every piece of `(id, part)` has arrived: hand it over if its carrier
    /// has too (else it waits for the carrier).
    pub(super) fn on_body_complete(
        &mut self,
        ctx: &mut Ctx<'_>,
        id: CallId,
        part: Part,
    ) -> Result<(), ProtocolViolation> {
        let ready = self.calls.get(&id).is_some_and(|c| match part {
            Part::Request => c.awaits_request_body(),
            Part::Response => c.awaits_response_body(),
            Part::Stream(seq) => c.recv.awaits_segmented(seq),
        });
        if !ready {
            return Ok(());
        }
        let Some(body) = self.reasm.take_complete(id, part) else {
            return Ok(());
        };
        ctx.stats.segmented_bodies_rx += 1;
        match part {
            Part::Request => self.deliver_request(ctx, id, body),
            Part::Response => self.deliver_response_body(ctx, id, body),
            Part::Stream(seq) => return self.deliver_stream_body(ctx, id, seq, body),
        }
        Ok(())
    }
}

impl Call {
    /// A callee whose request body is still being reassembled.
    pub(super) fn awaits_request_body(&self) -> bool {
        matches!(&self.role, Role::Callee(c) if c.response.is_none() && c.request_body)
    }

    /// A caller, not cancelled, whose segmented response body is awaited
    /// (or whose response has not arrived yet).
    pub(super) fn awaits_response_body(&self) -> bool {
        match &self.role {
            Role::Caller(c) => c.cancel.is_none() && (c.response.is_none() || c.awaiting_body),
            Role::Callee(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::Side;

    fn call(n: u64) -> CallId {
        CallId::new(n, Side::Initiator)
    }

    #[test]
    fn pieces_in_any_order_with_duplicates_make_the_body_once() {
        let mut r = Reassembly::default();
        let key = (call(0), Part::Request);
        let body: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
        for (lo, hi) in [(2000, 3000), (0, 1000), (2000, 3000), (1000, 2000)] {
            let whole = r.add(key, 3000, lo, &body[lo as usize..hi as usize], 1 << 20);
            assert_eq!(whole, Ok(hi == 2000), "{lo}..{hi}");
        }
        assert_eq!(r.used(), 3000 + PARTIAL_CHARGE);
        assert_eq!(r.take_complete(key.0, key.1), Some(body));
        assert_eq!(r.used(), 0);
    }

    #[test]
    fn the_window_bounds_bodies_and_their_count_and_frees_with_the_call() {
        let window = 10_000;
        let mut r = Reassembly::default();
        // Tiny bodies cost their charge: a window holds few of them.
        let fits = window / (1 + PARTIAL_CHARGE);
        for n in 0..fits {
            assert_eq!(
                r.add((call(n), Part::Request), 1, 0, &[1], window),
                Ok(true)
            );
        }
        assert_eq!(
            r.add((call(fits), Part::Request), 1, 0, &[1], window),
            Err(SegmentViolation::Window)
        );
        // A piece claiming a body beyond what is left: refused before any
        // allocation.
        assert_eq!(
            r.add((call(99), Part::Response), 1 << 40, 0, &[0; 600], window),
            Err(SegmentViolation::Window)
        );
        assert_eq!(r.drop_call(call(0)), 1);
        assert_eq!(r.used(), (fits - 1) * (1 + PARTIAL_CHARGE));
        assert_eq!(
            r.add((call(fits), Part::Request), 1, 0, &[1], window),
            Ok(true)
        );
    }

    #[test]
    fn pieces_must_agree_on_the_total() {
        let mut r = Reassembly::default();
        let key = (call(1), Part::Stream(4));
        assert_eq!(r.add(key, 2000, 0, &[0; 1000], 1 << 20), Ok(false));
        assert_eq!(
            r.add(key, 2001, 1000, &[0; 1001], 1 << 20),
            Err(SegmentViolation::TotalMismatch)
        );
        assert_eq!(
            r.check_total(key.0, key.1, 1999),
            Err(SegmentViolation::TotalMismatch)
        );
        assert_eq!(r.check_total(key.0, key.1, 2000), Ok(2000));
    }
}
