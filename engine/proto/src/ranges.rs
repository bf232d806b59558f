//! Sets of u64 values stored as ranges: received packet numbers for ACKs,
//! acknowledged packet numbers on the sender.
//!
//! Packet numbers arrive almost in order, so the set is a sorted deque of
//! disjoint, non-adjacent inclusive ranges and inserts at or just above the
//! top are O(1) amortised. The set can be capped in ranges; the cap drops the
//! lowest ranges first because an ACK only ever needs recent history (older
//! ranges were acknowledged long ago, or the sender has given up on them).

use std::collections::VecDeque;
use std::ops::RangeInclusive;

/// Sorted set of disjoint inclusive u64 ranges with an optional range cap.
///
/// Invariant: `ranges` is ascending, every `(lo, hi)` has `lo <= hi`, and
/// consecutive ranges are separated by at least one missing value
/// (`prev.hi + 1 < next.lo`), so the representation of a set is unique.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeSet {
    ranges: VecDeque<(u64, u64)>,
    limit: usize,
}

impl Default for RangeSet {
    fn default() -> Self {
        Self::new()
    }
}

impl RangeSet {
    /// An empty set with no cap on the number of ranges.
    pub fn new() -> Self {
        Self {
            ranges: VecDeque::new(),
            limit: usize::MAX,
        }
    }

    /// An empty set that keeps at most `limit` ranges (at least 1), dropping
    /// the lowest when an insert would exceed it. Memory stays bounded no
    /// matter what packet numbers a peer makes us record.
    pub fn with_capacity_limit(limit: usize) -> Self {
        let limit = limit.max(1);
        Self {
            ranges: VecDeque::with_capacity(limit.min(64)),
            limit,
        }
    }

    /// The cap on the number of ranges (`usize::MAX` if uncapped).
    pub fn capacity_limit(&self) -> usize {
        self.limit
    }

    /// Adds `v`; true if it was not already present.
    ///
    /// A value below the lowest range of a full set is added and then
    /// immediately dropped again by the cap, and still reports true.
    #[inline]
    pub fn insert(&mut self, v: u64) -> bool {
        if let Some(last) = self.ranges.back_mut() {
            if v > last.1 {
                // Fast path: in-order arrival extends or follows the top.
                if v == last.1 + 1 {
                    last.1 = v;
                } else {
                    self.ranges.push_back((v, v));
                    self.enforce_limit();
                }
                return true;
            }
            if v >= last.0 {
                return false;
            }
        }
        if self.contains(v) {
            return false;
        }
        self.insert_range(v..=v);
        true
    }

    /// Adds every value of `r`; an empty range (`lo > hi`) is a no-op.
    pub fn insert_range(&mut self, r: RangeInclusive<u64>) {
        let (lo, hi) = (*r.start(), *r.end());
        if lo > hi {
            return;
        }
        // First range that overlaps or touches [lo, hi] from below, and the
        // first range entirely above it (not touching). Saturation is exact
        // here: a range ending at u64::MAX can never lie below `lo`, and
        // when hi == u64::MAX nothing lies above.
        let i = self
            .ranges
            .partition_point(|&(_, h)| h.saturating_add(1) < lo);
        let j = self
            .ranges
            .partition_point(|&(l, _)| l <= hi.saturating_add(1));
        if i >= j {
            self.ranges.insert(i, (lo, hi));
        } else {
            let first_lo = self.ranges.get(i).map_or(lo, |r| r.0);
            let last_hi = self.ranges.get(j - 1).map_or(hi, |r| r.1);
            let merged = (lo.min(first_lo), hi.max(last_hi));
            self.ranges.drain(i + 1..j);
            if let Some(slot) = self.ranges.get_mut(i) {
                *slot = merged;
            }
        }
        self.enforce_limit();
    }

    fn enforce_limit(&mut self) {
        while self.ranges.len() > self.limit {
            self.ranges.pop_front();
        }
    }

    /// True if `v` is in the set.
    #[inline]
    pub fn contains(&self, v: u64) -> bool {
        let i = self.ranges.partition_point(|&(_, h)| h < v);
        self.ranges.get(i).is_some_and(|&(l, _)| l <= v)
    }

    /// Removes every value below `v` (for example packet numbers that can no
    /// longer be acknowledged usefully).
    pub fn remove_below(&mut self, v: u64) {
        while let Some(front) = self.ranges.front_mut() {
            if front.1 < v {
                self.ranges.pop_front();
            } else {
                front.0 = front.0.max(v);
                break;
            }
        }
    }

    /// The ranges, highest first (the order ACK frames list them in).
    pub fn iter_desc(&self) -> impl Iterator<Item = RangeInclusive<u64>> + '_ {
        self.ranges.iter().rev().map(|&(l, h)| l..=h)
    }

    /// The ranges, lowest first.
    pub fn iter(&self) -> impl Iterator<Item = RangeInclusive<u64>> + '_ {
        self.ranges.iter().map(|&(l, h)| l..=h)
    }

    /// The largest value, if any.
    pub fn max(&self) -> Option<u64> {
        self.ranges.back().map(|r| r.1)
    }

    /// The smallest value, if any.
    pub fn min(&self) -> Option<u64> {
        self.ranges.front().map(|r| r.0)
    }

    /// Number of disjoint ranges (not values).
    pub fn len_ranges(&self) -> usize {
        self.ranges.len()
    }

    /// True if the set holds no value.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Removes every value; keeps the cap and the allocation.
    pub fn clear(&mut self) {
        self.ranges.clear();
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::fuzzing::RangeModel;

    fn actual(s: &RangeSet) -> Vec<(u64, u64)> {
        s.iter().map(|r| (*r.start(), *r.end())).collect()
    }

    #[test]
    fn in_order_inserts_form_one_range() {
        let mut s = RangeSet::new();
        for v in 0..1000 {
            assert!(s.insert(v));
        }
        assert!(!s.insert(999));
        assert!(!s.insert(0));
        assert_eq!(actual(&s), [(0, 999)]);
        assert_eq!((s.min(), s.max(), s.len_ranges()), (Some(0), Some(999), 1));
    }

    #[test]
    fn holes_merge_and_desc_order() {
        let mut s = RangeSet::new();
        for v in [1, 3, 5, 7] {
            s.insert(v);
        }
        assert_eq!(s.len_ranges(), 4);
        assert_eq!(
            s.iter_desc().collect::<Vec<_>>(),
            [7..=7, 5..=5, 3..=3, 1..=1]
        );
        assert!(s.insert(4));
        assert_eq!(actual(&s), [(1, 1), (3, 5), (7, 7)]);
        s.insert_range(0..=10);
        assert_eq!(actual(&s), [(0, 10)]);
        let (lo, hi) = (12, 11);
        s.insert_range(lo..=hi);
        assert_eq!(actual(&s), [(0, 10)]);
        s.insert_range(11..=11);
        assert_eq!(actual(&s), [(0, 11)]);
    }

    #[test]
    fn edges_at_zero_and_u64_max() {
        let mut s = RangeSet::new();
        assert!(s.insert(u64::MAX));
        assert!(s.insert(u64::MAX - 1));
        assert!(s.insert(0));
        assert!(!s.insert(u64::MAX));
        assert_eq!(actual(&s), [(0, 0), (u64::MAX - 1, u64::MAX)]);
        s.insert_range(1..=u64::MAX - 2);
        assert_eq!(actual(&s), [(0, u64::MAX)]);
        assert!(s.contains(12345));
        s.remove_below(u64::MAX);
        assert_eq!(actual(&s), [(u64::MAX, u64::MAX)]);
        s.clear();
        assert!(s.is_empty() && s.max().is_none());
    }

    #[test]
    fn cap_drops_lowest_ranges() {
        let mut s = RangeSet::with_capacity_limit(3);
        for v in [10, 20, 30, 40] {
            s.insert(v);
        }
        assert_eq!(actual(&s), [(20, 20), (30, 30), (40, 40)]);
        // An insert below the lowest range of a full set is dropped at once.
        assert!(s.insert(5));
        assert!(!s.contains(5));
        // Filling a hole shrinks the count, so a low range survives.
        s.insert_range(21..=29);
        s.insert(1);
        assert_eq!(actual(&s), [(1, 1), (20, 30), (40, 40)]);
        assert_eq!(RangeSet::with_capacity_limit(0).capacity_limit(), 1);
    }

    #[test]
    fn remove_below_trims_and_drops() {
        let mut s = RangeSet::new();
        s.insert_range(0..=9);
        s.insert_range(20..=29);
        s.remove_below(5);
        assert_eq!(actual(&s), [(5, 9), (20, 29)]);
        s.remove_below(15);
        assert_eq!(actual(&s), [(20, 29)]);
        s.remove_below(0);
        assert_eq!(actual(&s), [(20, 29)]);
        s.remove_below(100);
        assert!(s.is_empty());
    }

    /// One random operation against both the set and the BTreeSet model.
    fn random_op(rng: &mut ChaCha8Rng, s: &mut RangeSet, m: &mut RangeModel, base: u64) {
        let m = &mut m.values;
        let v = base.wrapping_add(rng.gen_range(0..300));
        match rng.gen_range(0..10) {
            0..=5 => {
                let new = s.insert(v);
                let model_new = m.insert(v);
                assert_eq!(new, model_new, "insert {v}");
            }
            6 | 7 => {
                let hi = v.saturating_add(rng.gen_range(0..20));
                s.insert_range(v..=hi);
                m.extend(v..=hi);
            }
            8 => {
                if rng.gen_range(0..8) == 0 {
                    s.remove_below(v);
                    m.retain(|&x| x >= v);
                }
            }
            _ => assert_eq!(s.contains(v), m.contains(&v), "contains {v}"),
        }
    }

    #[test]
    fn matches_btreeset_model() {
        let mut rng = ChaCha8Rng::seed_from_u64(0x5eed_0001);
        for round in 0..200 {
            let limit = [1, 2, 3, 8, 64, usize::MAX][round % 6];
            let base = if round % 3 == 0 { u64::MAX - 299 } else { 1000 };
            let mut s = RangeSet::with_capacity_limit(limit);
            let mut m = RangeModel::default();
            for _ in 0..300 {
                random_op(&mut rng, &mut s, &mut m, base);
                m.cap(limit);
                m.assert_matches(&s);
                assert!(s.len_ranges() <= limit, "round {round}");
            }
        }
    }
}
