//! ACK frames (`docs/PROTOCOL.md` §3.2): QUIC-style descending ranges of
//! received packet numbers.

use std::fmt;
use std::iter::FusedIterator;
use std::ops::RangeInclusive;

use super::cursor::{varint_len, Reader, Writer, MAX_VARINT};
use super::frame::FrameType;
use super::WireError;
use crate::ranges::RangeSet;

/// Most additional ranges (beyond the first) one ACK frame may carry.
///
/// Bounds the work a single frame can cause: decoding validates every range,
/// and the sender's loss detection walks them.
pub const MAX_ACK_RANGES: usize = 64;

/// A decoded ACK frame.
///
/// Every range is validated when the frame is decoded (no range extends below
/// packet number 0, at most [`MAX_ACK_RANGES`] additional ranges), so
/// iterating [`ranges`](Self::ranges) cannot fail; the ranges are kept as the
/// raw bytes they arrived in and re-read on iteration, so decoding allocates
/// nothing.
///
/// Equality compares the acknowledged ranges and the delay, not the bytes: a
/// non-minimal varint encodes the same frame.
#[derive(Clone, Copy)]
pub struct AckFrame<'a> {
    /// Highest packet number acknowledged.
    pub largest: u64,
    /// Time in microseconds between receiving `largest` and sending this
    /// ACK, which the peer subtracts from its RTT sample.
    pub ack_delay_us: u64,
    first_range: u64,
    /// Additional ranges after the first (≤ MAX_ACK_RANGES).
    range_count: usize,
    /// The (gap, length) varint pairs, exactly `range_count` of them.
    raw: &'a [u8],
}

impl<'a> AckFrame<'a> {
    /// Decodes the body of an ACK (after its type byte), validating ranges.
    pub(crate) fn decode(r: &mut Reader<'a>) -> Result<Self, WireError> {
        let largest = r.get_varint()?;
        let ack_delay_us = r.get_varint()?;
        let range_count = r.get_varint()?;
        let range_count = match usize::try_from(range_count) {
            Ok(n) if n <= MAX_ACK_RANGES => n,
            _ => return Err(WireError::TooManyAckRanges),
        };
        let first_range = r.get_varint()?;
        let mut lo = largest
            .checked_sub(first_range)
            .ok_or(WireError::InvalidAckRange)?;
        let start = r.rest();
        for _ in 0..range_count {
            let gap = r.get_varint()?;
            let len = r.get_varint()?;
            lo = next_range(lo, gap, len)
                .ok_or(WireError::InvalidAckRange)?
                .0;
        }
        let used = start.len().saturating_sub(r.remaining());
        Ok(AckFrame {
            largest,
            ack_delay_us,
            first_range,
            range_count,
            raw: start.get(..used).unwrap_or_default(),
        })
    }

    /// Encoded length including the type byte.
    pub(crate) fn encoded_len(&self) -> usize {
        1 + varint_len(self.largest)
            + varint_len(self.ack_delay_us)
            + varint_len(self.range_count as u64)
            + varint_len(self.first_range)
            + self.raw.len()
    }

    /// Writes the frame including its type byte (not all-or-nothing; the
    /// caller rewinds).
    pub(crate) fn encode_fields(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        w.put_u8(FrameType::Ack as u8)?;
        w.put_varint(self.largest)?;
        w.put_varint(self.ack_delay_us)?;
        w.put_varint(self.range_count as u64)?;
        w.put_varint(self.first_range)?;
        w.put_bytes(self.raw)
    }

    /// The acknowledged ranges, highest first.
    pub fn ranges(&self) -> AckRanges<'a> {
        AckRanges {
            next: self
                .largest
                .checked_sub(self.first_range)
                .map(|lo| (lo, self.largest)),
            left: self.range_count,
            raw: Reader::new(self.raw),
        }
    }

    /// Number of ranges, the first included (1 ..= MAX_ACK_RANGES + 1).
    pub fn range_count(&self) -> usize {
        self.range_count + 1
    }

    /// Smallest packet number acknowledged.
    pub fn smallest(&self) -> u64 {
        self.ranges().last().map_or(self.largest, |r| *r.start())
    }
}

/// The range below one ending at `prev_lo`, as `(lo, hi)`: QUIC's
/// `hi = prev_lo − gap − 2`, `lo = hi − len`. `None` on underflow.
#[inline]
fn next_range(prev_lo: u64, gap: u64, len: u64) -> Option<(u64, u64)> {
    let hi = prev_lo.checked_sub(gap)?.checked_sub(2)?;
    Some((hi.checked_sub(len)?, hi))
}

impl PartialEq for AckFrame<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.largest == other.largest
            && self.ack_delay_us == other.ack_delay_us
            && self.ranges().eq(other.ranges())
    }
}

impl Eq for AckFrame<'_> {}

impl fmt::Debug for AckFrame<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct List<'b>(AckRanges<'b>);
        impl fmt::Debug for List<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_list().entries(self.0.clone()).finish()
            }
        }
        f.debug_struct("AckFrame")
            .field("largest", &self.largest)
            .field("ack_delay_us", &self.ack_delay_us)
            .field("ranges", &List(self.ranges()))
            .finish()
    }
}

/// Iterator over the ranges of an [`AckFrame`], highest first.
#[derive(Debug, Clone)]
pub struct AckRanges<'a> {
    next: Option<(u64, u64)>,
    left: usize,
    raw: Reader<'a>,
}

impl Iterator for AckRanges<'_> {
    type Item = RangeInclusive<u64>;

    fn next(&mut self) -> Option<Self::Item> {
        let (lo, hi) = self.next.take()?;
        if self.left > 0 {
            self.left -= 1;
            // Validated at decode; if the public fields were altered since,
            // the walk simply stops instead of wrapping.
            self.next = match (self.raw.get_varint(), self.raw.get_varint()) {
                (Ok(gap), Ok(len)) => next_range(lo, gap, len),
                _ => None,
            };
        }
        Some(lo..=hi)
    }
}

impl FusedIterator for AckRanges<'_> {}

/// Encodes an ACK frame for `set`, highest ranges first, with at most
/// `max_ranges` ranges (capped at `MAX_ACK_RANGES + 1`) and only as many as
/// fit in `w`: older ranges are the ones left out, since the peer has most
/// likely learned of them from earlier ACKs.
///
/// Returns `Ok(true)` if a frame was written, `Ok(false)` without writing if
/// `set` is empty, `max_ranges` is 0, or not even the first range fits. Fails
/// with [`WireError::VarintOverflow`] (writing nothing) if the largest value
/// or the delay exceeds [`MAX_VARINT`].
pub fn encode_ack(
    w: &mut Writer<'_>,
    ack_delay_us: u64,
    set: &RangeSet,
    max_ranges: usize,
) -> Result<bool, WireError> {
    let mut it = set.iter_desc();
    let (Some(first), true) = (it.next(), max_ranges > 0) else {
        return Ok(false);
    };
    let (first_lo, largest) = (*first.start(), *first.end());
    if largest > MAX_VARINT || ack_delay_us > MAX_VARINT {
        return Err(WireError::VarintOverflow);
    }
    let first_range = largest - first_lo;
    let fixed = 1 + varint_len(largest) + varint_len(ack_delay_us) + varint_len(first_range);
    let avail = w.remaining();
    if fixed + 1 > avail {
        return Ok(false);
    }
    let extra_max = max_ranges.min(MAX_ACK_RANGES + 1) - 1;
    let (mut extra, mut extra_bytes, mut prev_lo) = (0usize, 0usize, first_lo);
    for r in it.take(extra_max) {
        let Some((gap, len)) = gap_len(prev_lo, &r) else {
            break;
        };
        let cost = varint_len(gap) + varint_len(len);
        if fixed + varint_len(extra as u64 + 1) + extra_bytes + cost > avail {
            break;
        }
        extra += 1;
        extra_bytes += cost;
        prev_lo = *r.start();
    }
    let start = w.position();
    let res = write_ack(w, ack_delay_us, set, extra, first_range);
    if res.is_err() {
        w.rewind(start);
    }
    res.map(|()| true)
}

/// Gap and length fields for range `r` below a range starting at `prev_lo`.
fn gap_len(prev_lo: u64, r: &RangeInclusive<u64>) -> Option<(u64, u64)> {
    let gap = prev_lo.checked_sub(*r.end())?.checked_sub(2)?;
    Some((gap, r.end().checked_sub(*r.start())?))
}

fn write_ack(
    w: &mut Writer<'_>,
    ack_delay_us: u64,
    set: &RangeSet,
    extra: usize,
    first_range: u64,
) -> Result<(), WireError> {
    let mut it = set.iter_desc();
    let first = it.next().ok_or(WireError::InvalidAckRange)?;
    w.put_u8(FrameType::Ack as u8)?;
    w.put_varint(*first.end())?;
    w.put_varint(ack_delay_us)?;
    w.put_varint(extra as u64)?;
    w.put_varint(first_range)?;
    let mut prev_lo = *first.start();
    for r in it.take(extra) {
        let (gap, len) = gap_len(prev_lo, &r).ok_or(WireError::InvalidAckRange)?;
        w.put_varint(gap)?;
        w.put_varint(len)?;
        prev_lo = *r.start();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{frames, Frame};

    fn decode_ack(bytes: &[u8]) -> Result<AckFrame<'_>, WireError> {
        let mut r = Reader::new(bytes);
        assert_eq!(r.get_u8(), Ok(FrameType::Ack as u8));
        AckFrame::decode(&mut r)
    }

    fn set_of(ranges: &[(u64, u64)]) -> RangeSet {
        let mut s = RangeSet::new();
        for &(lo, hi) in ranges {
            s.insert_range(lo..=hi);
        }
        s
    }

    #[test]
    fn quic_range_arithmetic() {
        // largest 100, first range 100..=95 (first_range 5),
        // gap 1 → hi = 95 - 1 - 2 = 92, len 2 → 90..=92,
        // gap 0 → hi = 88, len 0 → 88..=88.
        let bytes = [1, 0x40, 100, 7, 2, 5, 1, 2, 0, 0];
        let a = decode_ack(&bytes).unwrap();
        assert_eq!((a.largest, a.ack_delay_us), (100, 7));
        assert_eq!(a.ranges().collect::<Vec<_>>(), [95..=100, 90..=92, 88..=88]);
        assert_eq!(a.smallest(), 88);
        assert_eq!(a.range_count(), 3);
        assert_eq!(a.encoded_len(), bytes.len());
    }

    #[test]
    fn underflow_and_too_many_ranges_are_rejected() {
        assert_eq!(
            decode_ack(&[1, 5, 0, 0, 6]),
            Err(WireError::InvalidAckRange)
        );
        assert_eq!(decode_ack(&[1, 5, 0, 0, 5]).map(|a| a.smallest()), Ok(0));
        // 0..=5 then gap 0 would put hi at -2.
        assert_eq!(
            decode_ack(&[1, 5, 0, 1, 5, 0, 0]),
            Err(WireError::InvalidAckRange)
        );
        // 2..=7 then gap 0 → hi 0, len 1 → underflow; len 0 is fine.
        assert_eq!(
            decode_ack(&[1, 7, 0, 1, 5, 0, 1]),
            Err(WireError::InvalidAckRange)
        );
        let a = decode_ack(&[1, 7, 0, 1, 5, 0, 0]).unwrap();
        assert_eq!(a.ranges().collect::<Vec<_>>(), [2..=7, 0..=0]);
        assert_eq!(decode_ack(&[1, 7, 0, 1, 5, 0]), Err(WireError::Truncated));
        assert_eq!(
            decode_ack(&[1, 7, 0, 0x40, 65]),
            Err(WireError::TooManyAckRanges)
        );
        assert_eq!(decode_ack(&[1, 7, 0, 0x40, 64]), Err(WireError::Truncated));
    }

    #[test]
    fn encode_ack_round_trips_and_truncates_to_fit() {
        let ranges: Vec<(u64, u64)> = (0..100).map(|i| (i * 10, i * 10 + 3)).collect();
        let set = set_of(&ranges);
        let mut buf = [0u8; 1500];
        let mut w = Writer::new(&mut buf);
        assert_eq!(encode_ack(&mut w, 250, &set, usize::MAX), Ok(true));
        let n = w.position();
        let f: Vec<_> = frames(&buf[..n]).collect();
        let [Ok(Frame::Ack(a))] = f.as_slice() else {
            panic!("{f:?}")
        };
        assert_eq!(a.range_count(), MAX_ACK_RANGES + 1);
        let expect: Vec<_> = set.iter_desc().take(MAX_ACK_RANGES + 1).collect();
        assert_eq!(a.ranges().collect::<Vec<_>>(), expect);
        assert_eq!(a.ack_delay_us, 250);

        // A small writer keeps only the highest ranges that fit.
        for cap in 0..40 {
            let mut buf = vec![0u8; cap];
            let mut w = Writer::new(&mut buf);
            let wrote = encode_ack(&mut w, 250, &set, 8).unwrap();
            let n = w.position();
            assert_eq!(wrote, n > 0);
            assert!(n <= cap);
            if wrote {
                let Some(Ok(Frame::Ack(a))) = frames(&buf[..n]).next() else {
                    panic!()
                };
                let got: Vec<_> = a.ranges().collect();
                assert!(!got.is_empty() && got.len() <= 8);
                assert_eq!(got, set.iter_desc().take(got.len()).collect::<Vec<_>>());
            }
        }
    }

    #[test]
    fn encode_ack_edge_cases() {
        let mut buf = [0u8; 64];
        let mut w = Writer::new(&mut buf);
        assert_eq!(encode_ack(&mut w, 0, &RangeSet::new(), 4), Ok(false));
        assert_eq!(encode_ack(&mut w, 0, &set_of(&[(1, 2)]), 0), Ok(false));
        let big = set_of(&[(MAX_VARINT + 1, MAX_VARINT + 1)]);
        assert_eq!(
            encode_ack(&mut w, 0, &big, 4),
            Err(WireError::VarintOverflow)
        );
        let s = set_of(&[(0, MAX_VARINT)]);
        assert_eq!(
            encode_ack(&mut w, MAX_VARINT + 1, &s, 4),
            Err(WireError::VarintOverflow)
        );
        assert_eq!(w.position(), 0);
        assert_eq!(encode_ack(&mut w, MAX_VARINT, &s, 4), Ok(true));
        let Some(Ok(Frame::Ack(a))) = frames(w.written()).next() else {
            panic!()
        };
        assert_eq!(a.ranges().collect::<Vec<_>>(), [0..=MAX_VARINT]);
    }
}
