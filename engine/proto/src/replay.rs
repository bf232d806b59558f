//! Sliding replay window over 64-bit packet counters (RFC 6479 style, as in
//! WireGuard).
//!
//! The receiver checks a counter *before* decrypting (cheap rejection of
//! replays and floods of stale packets) and commits it only *after* the AEAD
//! tag verified, so that forged packets can never move the window.
//!
//! The bitmap is a ring of u64 words with one word of slack beyond the
//! window: advancing the top clears whole words instead of shifting bits, so
//! a commit costs O(words skipped), bounded by the ring size, whatever the
//! jump.

use thiserror::Error;

/// Number of counters below the highest committed one that are still
/// accepted (the highest itself included). DESIGN requires ≥ 2048 so that
/// reordering across a full batch of in-flight packets on a fast link is not
/// mistaken for replay.
pub const WINDOW: u64 = 4096;

const WORD_BITS: u64 = 64;
/// Ring words: the window plus one slack word, so that the word holding the
/// oldest in-window counter is never the one being cleared for a new top.
const RING_WORDS: usize = (WINDOW / WORD_BITS) as usize + 1;

/// Why a packet counter is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// The counter is `WINDOW` or more below the highest committed counter;
    /// whether it was seen is no longer known, so it is refused.
    #[error("packet counter is older than the replay window")]
    TooOld,
    /// The counter was already committed.
    #[error("duplicate packet counter")]
    Duplicate,
}

/// Replay window for one receive key.
///
/// Accepts each counter at most once, and only counters greater than
/// `highest − WINDOW` where `highest` is the largest committed counter.
#[derive(Clone)]
pub struct ReplayWindow {
    ring: [u64; RING_WORDS],
    /// Largest committed counter; meaningless while `empty`.
    top: u64,
    empty: bool,
}

impl Default for ReplayWindow {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for ReplayWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayWindow")
            .field("highest", &self.highest())
            .finish_non_exhaustive()
    }
}

/// Ring word that holds the 64 counters of `block` (= counter / 64).
#[inline]
fn word_of(block: u64) -> usize {
    // The remainder is < RING_WORDS, so the cast cannot truncate.
    (block % RING_WORDS as u64) as usize
}

/// Ring word and bit mask of `counter`.
#[inline]
fn slot(counter: u64) -> (usize, u64) {
    (word_of(counter / WORD_BITS), 1 << (counter % WORD_BITS))
}

impl ReplayWindow {
    /// An empty window: every counter is acceptable until the first commit.
    pub const fn new() -> Self {
        Self {
            ring: [0; RING_WORDS],
            top: 0,
            empty: true,
        }
    }

    /// The highest committed counter, if any.
    pub fn highest(&self) -> Option<u64> {
        (!self.empty).then_some(self.top)
    }

    /// Whether `counter` may be accepted. Never mutates: call it before
    /// decrypting, and [`commit`](Self::commit) only once the packet
    /// authenticated.
    #[inline]
    pub fn check(&self, counter: u64) -> Result<(), ReplayError> {
        if self.empty || counter > self.top {
            return Ok(());
        }
        if self.top - counter >= WINDOW {
            return Err(ReplayError::TooOld);
        }
        let (word, bit) = slot(counter);
        match self.ring.get(word) {
            Some(w) if w & bit != 0 => Err(ReplayError::Duplicate),
            _ => Ok(()),
        }
    }

    /// Records `counter` as received, sliding the window forward if it is a
    /// new highest. Idempotent; a counter already too old is ignored (it can
    /// only get here without a preceding [`check`](Self::check)).
    #[inline]
    pub fn commit(&mut self, counter: u64) {
        if self.empty {
            self.empty = false;
            self.top = counter;
        } else if counter > self.top {
            self.advance(counter);
        } else if self.top - counter >= WINDOW {
            return;
        }
        let (word, bit) = slot(counter);
        if let Some(w) = self.ring.get_mut(word) {
            *w |= bit;
        }
    }

    /// Moves the top to `counter` (> top), clearing the ring words of the
    /// blocks that enter the window so stale bits from a lap ago vanish.
    fn advance(&mut self, counter: u64) {
        let old_block = self.top / WORD_BITS;
        let new_block = counter / WORD_BITS;
        let skipped = new_block - old_block;
        if skipped >= RING_WORDS as u64 {
            self.ring = [0; RING_WORDS];
        } else {
            for b in old_block + 1..=new_block {
                if let Some(w) = self.ring.get_mut(word_of(b)) {
                    *w = 0;
                }
            }
        }
        self.top = counter;
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::fuzzing::ReplayModel;

    /// Accept-and-commit, as the receive path does.
    fn accept(w: &mut ReplayWindow, c: u64) -> Result<(), ReplayError> {
        w.check(c)?;
        w.commit(c);
        Ok(())
    }

    #[test]
    fn in_order_then_duplicates() {
        let mut w = ReplayWindow::new();
        assert_eq!(w.highest(), None);
        for c in 0..10_000 {
            assert_eq!(accept(&mut w, c), Ok(()));
        }
        assert_eq!(w.highest(), Some(9_999));
        assert_eq!(w.check(9_999), Err(ReplayError::Duplicate));
        assert_eq!(w.check(9_999 - (WINDOW - 1)), Err(ReplayError::Duplicate));
        assert_eq!(w.check(9_999 - WINDOW), Err(ReplayError::TooOld));
        assert_eq!(w.check(0), Err(ReplayError::TooOld));
        assert_eq!(w.check(10_000), Ok(()));
    }

    #[test]
    fn out_of_order_within_window() {
        let mut w = ReplayWindow::new();
        accept(&mut w, 5000).unwrap();
        // Exactly WINDOW − 1 below the top is the oldest acceptable counter.
        assert_eq!(accept(&mut w, 5000 - (WINDOW - 1)), Ok(()));
        assert_eq!(w.check(5000 - WINDOW), Err(ReplayError::TooOld));
        for c in (4000..5000).rev().step_by(3) {
            assert_eq!(accept(&mut w, c), Ok(()));
            assert_eq!(accept(&mut w, c), Err(ReplayError::Duplicate));
        }
        assert_eq!(w.check(4001), Ok(()));
    }

    #[test]
    fn check_does_not_mutate_and_commit_is_idempotent() {
        let mut w = ReplayWindow::new();
        assert_eq!(w.check(7), Ok(()));
        assert_eq!(w.check(7), Ok(()));
        w.commit(7);
        w.commit(7);
        assert_eq!(w.check(7), Err(ReplayError::Duplicate));
        assert_eq!(w.check(6), Ok(()));
        // A too-old commit is ignored and does not disturb the window.
        w.commit(100_000);
        w.commit(7);
        assert_eq!(w.check(7), Err(ReplayError::TooOld));
        assert_eq!(w.highest(), Some(100_000));
    }

    #[test]
    fn window_slides_and_old_bits_do_not_alias() {
        let mut w = ReplayWindow::new();
        accept(&mut w, 100).unwrap();
        // Slide by exactly one ring lap: counter 100 + 64*65 maps to the same
        // word and bit as 100 but must be accepted.
        let lap = 64 * RING_WORDS as u64;
        assert_eq!(accept(&mut w, 100 + lap), Ok(()));
        assert_eq!(w.check(100 + lap - 64), Ok(()));
        assert_eq!(accept(&mut w, 100 + 2 * lap), Ok(()));
        // 100 + lap is now lap = 4160 behind: too old.
        assert_eq!(w.check(100 + lap), Err(ReplayError::TooOld));
    }

    #[test]
    fn huge_jumps_and_edges() {
        let mut w = ReplayWindow::new();
        assert_eq!(accept(&mut w, 0), Ok(()));
        assert_eq!(accept(&mut w, 0), Err(ReplayError::Duplicate));
        assert_eq!(accept(&mut w, u64::MAX - 1), Ok(()));
        assert_eq!(w.check(0), Err(ReplayError::TooOld));
        assert_eq!(accept(&mut w, u64::MAX), Ok(()));
        assert_eq!(accept(&mut w, u64::MAX), Err(ReplayError::Duplicate));
        assert_eq!(accept(&mut w, u64::MAX - 1), Err(ReplayError::Duplicate));
        assert_eq!(accept(&mut w, u64::MAX - 2), Ok(()));
        assert_eq!(accept(&mut w, u64::MAX - (WINDOW - 1)), Ok(()));
        assert_eq!(w.check(u64::MAX - WINDOW), Err(ReplayError::TooOld));

        let mut w = ReplayWindow::new();
        assert_eq!(accept(&mut w, u64::MAX), Ok(()));
        assert_eq!(w.check(u64::MAX - 1), Ok(()));
    }

    fn next_counter(rng: &mut ChaCha8Rng, top: u64) -> u64 {
        match rng.gen_range(0..10) {
            0..=3 => top.saturating_add(rng.gen_range(0..4)),
            4..=6 => top.saturating_sub(rng.gen_range(0..WINDOW + 200)),
            7 => top.saturating_add(rng.gen_range(0..3 * WINDOW)),
            8 => top.saturating_sub(WINDOW - 1 + rng.gen_range(0..3)),
            _ => {
                if rng.gen_range(0..50) == 0 {
                    top.saturating_add(rng.gen())
                } else {
                    top.saturating_add(64 * rng.gen_range(60..70))
                }
            }
        }
    }

    #[test]
    fn matches_naive_model_under_random_sequences() {
        let mut rng = ChaCha8Rng::seed_from_u64(0x5eed_0002);
        for round in 0..100 {
            let start = match round % 4 {
                0 => 0,
                1 => u64::MAX - 20_000,
                _ => rng.gen_range(0..1 << 40),
            };
            let mut w = ReplayWindow::new();
            let mut m = ReplayModel::default();
            let mut top = start;
            for _ in 0..3000 {
                let c = next_counter(&mut rng, top);
                assert_eq!(w.check(c), m.check(c), "round {round} counter {c}");
                if rng.gen_range(0..8) != 0 {
                    w.commit(c);
                    m.commit(c);
                }
                top = m.seen.last().copied().unwrap_or(start);
                assert_eq!(w.highest(), m.seen.last().copied());
            }
        }
    }
}
