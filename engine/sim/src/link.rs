//! The per-direction link model: configuration, counters and the function
//! that decides each datagram's fate.
//!
//! Every random decision is drawn from the simulator's single RNG, in a
//! fixed order per datagram, so a seed fully determines what the link does.

use std::fmt;
use std::time::{Duration, Instant};

use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Extra gap between a datagram and its duplicate copy (on top of a fresh
/// jitter draw), so the copy always arrives strictly after the original.
pub const DUPLICATE_GAP: Duration = Duration::from_micros(1);

/// Link model for one direction (src -> dst).
///
/// All probabilities are in `[0, 1]`; [`LinkConfig::validate`] checks this
/// and the simulator refuses (panics on) an invalid config, because that is
/// a bug in the test setup, not a runtime condition.
///
/// Per datagram the model acts in this order: MTU check, serialization
/// (bandwidth), loss, corruption, delay + jitter, reorder, duplication.
#[derive(Clone, Debug, PartialEq)]
pub struct LinkConfig {
    /// One-way base latency (default 50 µs).
    pub delay: Duration,
    /// Uniform extra delay in `[0, jitter]` drawn per datagram (default 0).
    /// Non-zero jitter may reorder datagrams naturally.
    pub jitter: Duration,
    /// Probability a datagram is dropped.
    pub loss: f64,
    /// Probability a delivered datagram is also delivered a second time,
    /// [`DUPLICATE_GAP`] plus a fresh jitter draw after the original.
    pub duplicate: f64,
    /// Probability a datagram gets `reorder_delay` extra delay, so datagrams
    /// sent after it can overtake it.
    pub reorder: f64,
    /// Extra delay of a reordered datagram (default 1 ms).
    pub reorder_delay: Duration,
    /// Probability that one uniformly chosen bit of the datagram is flipped
    /// (empty datagrams are never corrupted).
    pub corrupt: f64,
    /// Datagrams longer than this are dropped and counted as `too_big`
    /// (default 65 535).
    pub mtu: usize,
    /// Optional link rate: each datagram occupies the link for
    /// `len * 8 / bps` seconds, FIFO per direction (default `None`: infinite).
    pub bandwidth_bps: Option<u64>,
}

impl Default for LinkConfig {
    /// A clean link: 50 µs one-way delay, no impairments, MTU 65 535.
    fn default() -> Self {
        Self {
            delay: Duration::from_micros(50),
            jitter: Duration::ZERO,
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_delay: Duration::from_millis(1),
            corrupt: 0.0,
            mtu: 65_535,
            bandwidth_bps: None,
        }
    }
}

impl LinkConfig {
    /// A clean link that drops each datagram with probability `loss`.
    pub fn lossy(loss: f64) -> Self {
        Self::default().with_loss(loss)
    }

    /// Sets the one-way base latency.
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Sets the uniform jitter bound.
    pub fn with_jitter(mut self, jitter: Duration) -> Self {
        self.jitter = jitter;
        self
    }

    /// Sets the drop probability.
    pub fn with_loss(mut self, loss: f64) -> Self {
        self.loss = loss;
        self
    }

    /// Sets the duplication probability.
    pub fn with_duplicate(mut self, duplicate: f64) -> Self {
        self.duplicate = duplicate;
        self
    }

    /// Sets the reorder probability and the extra delay of a reordered datagram.
    pub fn with_reorder(mut self, reorder: f64, reorder_delay: Duration) -> Self {
        self.reorder = reorder;
        self.reorder_delay = reorder_delay;
        self
    }

    /// Sets the single-bit corruption probability.
    pub fn with_corrupt(mut self, corrupt: f64) -> Self {
        self.corrupt = corrupt;
        self
    }

    /// Sets the MTU (largest datagram that is not dropped).
    pub fn with_mtu(mut self, mtu: usize) -> Self {
        self.mtu = mtu;
        self
    }

    /// Sets the link rate in bits per second (must be non-zero).
    pub fn with_bandwidth(mut self, bps: u64) -> Self {
        self.bandwidth_bps = Some(bps);
        self
    }

    /// Checks that every probability is in `[0, 1]` (and not NaN) and that a
    /// configured bandwidth is non-zero.
    pub fn validate(&self) -> Result<(), InvalidLinkConfig> {
        let probs = [
            ("loss", self.loss),
            ("duplicate", self.duplicate),
            ("reorder", self.reorder),
            ("corrupt", self.corrupt),
        ];
        for (field, p) in probs {
            if !(0.0..=1.0).contains(&p) {
                return Err(InvalidLinkConfig { field });
            }
        }
        if self.bandwidth_bps == Some(0) {
            return Err(InvalidLinkConfig {
                field: "bandwidth_bps",
            });
        }
        Ok(())
    }
}

/// A [`LinkConfig`] field holds an out-of-range value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidLinkConfig {
    /// Name of the offending field.
    pub field: &'static str,
}

impl fmt::Display for InvalidLinkConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid LinkConfig: `{}` out of range", self.field)
    }
}

impl std::error::Error for InvalidLinkConfig {}

/// What happened to a datagram, reported to the fate tap and counted in
/// [`LinkStats`]. One datagram can have several fates (e.g. `Corrupted`
/// then `Delivered`, or `Duplicated` then `Delivered` twice); each is
/// reported and counted separately.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fate {
    /// Handed to the destination node (once per copy).
    Delivered,
    /// Dropped by the loss model, or addressed to no node.
    Lost,
    /// A second copy was scheduled.
    Duplicated,
    /// One bit was flipped.
    Corrupted,
    /// Given the extra reorder delay.
    Reordered,
    /// Longer than the link MTU; dropped.
    TooBig,
}

/// Counters for one direction of one link (or the sum over all links).
///
/// `delivered` counts `handle_datagram` calls, duplicates included, so
/// `delivered <= sent - lost - too_big + duplicated` (equality once nothing
/// is in flight).
#[derive(Default, Clone, Debug, PartialEq, Eq)]
pub struct LinkStats {
    /// Datagrams emitted by the source node onto this link.
    pub sent: u64,
    /// Copies handed to the destination node.
    pub delivered: u64,
    /// Datagrams dropped by the loss model or addressed to no node.
    pub lost: u64,
    /// Datagrams that got a second copy.
    pub duplicated: u64,
    /// Datagrams that got the extra reorder delay.
    pub reordered: u64,
    /// Datagrams with one bit flipped.
    pub corrupted: u64,
    /// Datagrams dropped for exceeding the MTU.
    pub too_big: u64,
    /// Bytes emitted by the source node onto this link.
    pub bytes_sent: u64,
}

impl LinkStats {
    /// Adds every counter of `other` into `self` (used for totals).
    pub fn merge(&mut self, other: &LinkStats) {
        self.sent += other.sent;
        self.delivered += other.delivered;
        self.lost += other.lost;
        self.duplicated += other.duplicated;
        self.reordered += other.reordered;
        self.corrupted += other.corrupted;
        self.too_big += other.too_big;
        self.bytes_sent += other.bytes_sent;
    }

    /// Bumps the counter that corresponds to `fate`.
    pub(crate) fn count(&mut self, fate: Fate) {
        let c = match fate {
            Fate::Delivered => &mut self.delivered,
            Fate::Lost => &mut self.lost,
            Fate::Duplicated => &mut self.duplicated,
            Fate::Corrupted => &mut self.corrupted,
            Fate::Reordered => &mut self.reordered,
            Fate::TooBig => &mut self.too_big,
        };
        *c += 1;
    }
}

/// Mutable state of one direction: counters plus the time the (optional)
/// bandwidth-limited transmitter becomes free.
#[derive(Debug, Default)]
pub(crate) struct LinkState {
    pub stats: LinkStats,
    /// When the serializer is free again; `None` until first use.
    pub busy_until: Option<Instant>,
}

/// Where the surviving copies of one datagram arrive.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Verdict {
    /// Arrival of the datagram itself, `None` if it was dropped.
    pub arrival: Option<Instant>,
    /// Arrival of the duplicate copy, if any.
    pub duplicate: Option<Instant>,
}

/// True with probability `p`. Draws from `rng` only when `0 < p < 1`, so a
/// clean link consumes no randomness.
fn chance(rng: &mut ChaCha8Rng, p: f64) -> bool {
    if p <= 0.0 {
        false
    } else if p >= 1.0 {
        true
    } else {
        rng.gen::<f64>() < p
    }
}

/// Uniform duration in `[0, max]`; no draw when `max` is zero.
fn uniform(rng: &mut ChaCha8Rng, max: Duration) -> Duration {
    if max.is_zero() {
        return Duration::ZERO;
    }
    let hi = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rng.gen_range(0..=hi))
}

/// Time a datagram of `len` bytes occupies a link of `bps` bits/s.
fn serialization(len: usize, bps: u64) -> Duration {
    let nanos = (len as u128 * 8 * 1_000_000_000) / u128::from(bps.max(1));
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// Runs one datagram emitted at `now` through the link model.
///
/// Updates `state` (counters, serializer), may flip one bit of `data`, and
/// reports every fate except `Delivered` (which the simulator reports when
/// the copy actually reaches the node) through `on_fate`.
pub(crate) fn transit(
    cfg: &LinkConfig,
    state: &mut LinkState,
    rng: &mut ChaCha8Rng,
    now: Instant,
    data: &mut [u8],
    on_fate: &mut dyn FnMut(Fate),
) -> Verdict {
    let mut report = |state: &mut LinkState, fate: Fate| {
        state.stats.count(fate);
        on_fate(fate);
    };
    if data.len() > cfg.mtu {
        report(state, Fate::TooBig);
        return Verdict::default();
    }
    let depart = match cfg.bandwidth_bps {
        Some(bps) => {
            let start = state.busy_until.map_or(now, |b| b.max(now));
            let done = start + serialization(data.len(), bps);
            state.busy_until = Some(done);
            done
        }
        None => now,
    };
    if chance(rng, cfg.loss) {
        report(state, Fate::Lost);
        return Verdict::default();
    }
    if !data.is_empty() && chance(rng, cfg.corrupt) {
        let bit = rng.gen_range(0..data.len() * 8);
        data[bit / 8] ^= 1 << (bit % 8);
        report(state, Fate::Corrupted);
    }
    let mut arrival = depart + cfg.delay + uniform(rng, cfg.jitter);
    if chance(rng, cfg.reorder) {
        arrival += cfg.reorder_delay;
        report(state, Fate::Reordered);
    }
    let duplicate = if chance(rng, cfg.duplicate) {
        report(state, Fate::Duplicated);
        Some(arrival + DUPLICATE_GAP + uniform(rng, cfg.jitter))
    } else {
        None
    };
    Verdict {
        arrival: Some(arrival),
        duplicate,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn run(cfg: &LinkConfig, seed: u64, data: &mut [u8]) -> (Verdict, Vec<Fate>, LinkState) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut state = LinkState::default();
        let mut fates = Vec::new();
        let now = Instant::now();
        let v = transit(cfg, &mut state, &mut rng, now, data, &mut |f| fates.push(f));
        (v, fates, state)
    }

    #[test]
    fn clean_link_delivers_after_delay_without_touching_data() {
        let cfg = LinkConfig::default().with_delay(Duration::from_millis(3));
        let mut data = *b"hello";
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let before = rng.clone();
        let mut state = LinkState::default();
        let now = Instant::now();
        let v = transit(&cfg, &mut state, &mut rng, now, &mut data, &mut |_| {});
        assert_eq!(v.arrival, Some(now + Duration::from_millis(3)));
        assert_eq!(v.duplicate, None);
        assert_eq!(&data, b"hello");
        // A clean link consumes no randomness.
        assert_eq!(rng, before);
    }

    #[test]
    fn oversize_is_dropped_and_counted() {
        let cfg = LinkConfig::default().with_mtu(4);
        let (v, fates, state) = run(&cfg, 1, &mut [0u8; 5]);
        assert_eq!(v, Verdict::default());
        assert_eq!(fates, vec![Fate::TooBig]);
        assert_eq!(state.stats.too_big, 1);
        let (v, fates, _) = run(&cfg, 1, &mut [0u8; 4]);
        assert!(v.arrival.is_some());
        assert!(fates.is_empty());
    }

    #[test]
    fn certain_impairments_all_apply() {
        let cfg = LinkConfig::default()
            .with_corrupt(1.0)
            .with_reorder(1.0, Duration::from_millis(2))
            .with_duplicate(1.0);
        let mut data = [0u8; 8];
        let (v, fates, state) = run(&cfg, 9, &mut data);
        assert_eq!(
            fates,
            vec![Fate::Corrupted, Fate::Reordered, Fate::Duplicated]
        );
        let ones: u32 = data.iter().map(|b| b.count_ones()).sum();
        assert_eq!(ones, 1, "exactly one bit flipped");
        let arrival = v.arrival.expect("delivered");
        assert!(v.duplicate.expect("duplicated") > arrival);
        assert_eq!(state.stats.corrupted, 1);
        assert_eq!(state.stats.reordered, 1);
        assert_eq!(state.stats.duplicated, 1);
    }

    #[test]
    fn certain_loss_drops() {
        let (v, fates, _) = run(&LinkConfig::lossy(1.0), 3, &mut [1, 2, 3]);
        assert_eq!(v.arrival, None);
        assert_eq!(fates, vec![Fate::Lost]);
    }

    #[test]
    fn bandwidth_serializes_fifo() {
        // 1000 bytes at 8 Mbit/s = 1 ms each.
        let cfg = LinkConfig::default()
            .with_delay(Duration::ZERO)
            .with_bandwidth(8_000_000);
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let mut state = LinkState::default();
        let now = Instant::now();
        let mut data = vec![0u8; 1000];
        for i in 1..=3u64 {
            let v = transit(&cfg, &mut state, &mut rng, now, &mut data, &mut |_| {});
            assert_eq!(v.arrival, Some(now + Duration::from_millis(i)));
        }
    }

    #[test]
    fn jitter_stays_in_bounds() {
        let cfg = LinkConfig::default().with_jitter(Duration::from_micros(100));
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut state = LinkState::default();
        let now = Instant::now();
        let lo = now + cfg.delay;
        let hi = lo + cfg.jitter;
        let mut distinct = std::collections::BTreeSet::new();
        for _ in 0..1000 {
            let v = transit(&cfg, &mut state, &mut rng, now, &mut [0], &mut |_| {});
            let a = v.arrival.expect("no loss configured");
            assert!(a >= lo && a <= hi);
            distinct.insert(a);
        }
        assert!(distinct.len() > 100, "jitter actually varies");
    }

    #[test]
    fn validate_rejects_out_of_range() {
        assert!(LinkConfig::default().validate().is_ok());
        assert_eq!(
            LinkConfig::lossy(1.5).validate(),
            Err(InvalidLinkConfig { field: "loss" })
        );
        assert!(LinkConfig::default()
            .with_corrupt(f64::NAN)
            .validate()
            .is_err());
        assert!(LinkConfig::default().with_bandwidth(0).validate().is_err());
    }
}
