//! Loss recovery in the style of RFC 9002: RTT estimation, packet- and
//! time-threshold loss detection, and probe timeouts.
//!
//! Packets are numbered by their AEAD counter, which increases by one for
//! every data packet a session sends, so the ledger is a dense ring indexed by
//! `pn - base`. What is retransmitted is never a packet but the *frames* it
//! carried: each sent packet records references to the state its frames were
//! built from, and on loss the session re-queues whatever of that state still
//! needs delivering.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::congestion::{Congestion, CongestionControl, Pacer};

/// RFC 9002 `kGranularity`: the smallest timer the loss and probe rules
/// use. RFC 9002 suggests 1 ms for OS timers of that resolution; the
/// engine's timers (`ppoll`, io_uring timeouts) are finer, and on a LAN
/// 1 ms is ten round trips, so one lost packet would cost that.
const GRANULARITY: Duration = Duration::from_micros(20);
/// Shortest ACK delay a receiver uses (and a sender assumes): below it a
/// delayed ACK saves nothing over an immediate one.
pub(crate) const MIN_ACK_DELAY: Duration = Duration::from_micros(10);
/// RFC 9002 `kPacketThreshold`.
const PACKET_THRESHOLD: u64 = 3;
/// Exponential backoff stops doubling here, so a long outage probes every
/// `pto << MAX_PTO_BACKOFF` rather than never.
const MAX_PTO_BACKOFF: u32 = 6;

/// Black-hole evidence (RFC 8899 §4.3): packets larger than the base size
/// declared lost, with none acknowledged after them. A queue overflow
/// drops large packets too, but the ones after the gap are acknowledged
/// (so the losses below them do not count); a path that shrank
/// acknowledges none.
#[derive(Debug, Clone)]
struct LargeLosses {
    /// Packets of at most this many bytes fit any path.
    base: u32,
    /// Highest acknowledged packet number above the base size.
    largest_acked: Option<u64>,
    /// Large packets lost past `largest_acked` (probes aside).
    streak: u32,
}

impl LargeLosses {
    fn on_acked(&mut self, pn: u64, pkt_size: u32, probe: bool) {
        if pkt_size > self.base && !probe {
            self.largest_acked = Some(self.largest_acked.map_or(pn, |l| l.max(pn)));
            self.streak = 0;
        }
    }

    fn on_lost(&mut self, pn: u64, pkt_size: u32, probe: bool) {
        if pkt_size > self.base && !probe && self.largest_acked.is_none_or(|l| pn > l) {
            self.streak += 1;
        }
    }
}

/// What a sent packet carried, as far as pacing and congestion go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Carries {
    /// Calls, acknowledgements, control frames.
    Calls,
    /// Bulk data (SEGMENT pieces): paced.
    Bulk,
    /// A path-MTU probe: its loss does not shrink the window.
    Probe,
}

/// Smoothed RTT per RFC 6298 / RFC 9002 §5.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rtt {
    latest: Duration,
    smoothed: Duration,
    var: Duration,
    min: Duration,
    has_sample: bool,
}

impl Rtt {
    pub fn new(initial: Duration) -> Self {
        Rtt {
            latest: initial,
            smoothed: initial,
            var: initial / 2,
            min: initial,
            has_sample: false,
        }
    }

    /// Adds a sample; `ack_delay` is what the peer says it held the ACK.
    pub fn update(&mut self, sample: Duration, ack_delay: Duration) {
        self.latest = sample;
        if !self.has_sample {
            self.has_sample = true;
            self.min = sample;
            self.smoothed = sample;
            self.var = sample / 2;
            return;
        }
        self.min = self.min.min(sample);
        let adjusted = if sample >= self.min + ack_delay {
            sample - ack_delay
        } else {
            sample
        };
        let diff = self.smoothed.abs_diff(adjusted);
        self.var = (self.var * 3 + diff) / 4;
        self.smoothed = (self.smoothed * 7 + adjusted) / 8;
    }

    /// Smoothed RTT.
    pub fn smoothed(&self) -> Duration {
        self.smoothed
    }

    /// How long this side delays an ACK (PROTOCOL §7): an eighth of the
    /// smoothed RTT, within [`MIN_ACK_DELAY`] and the announced maximum.
    pub fn ack_delay(&self, max_ack_delay: Duration) -> Duration {
        (self.smoothed / 8).clamp(MIN_ACK_DELAY, max_ack_delay.max(MIN_ACK_DELAY))
    }

    /// The ACK delay a sender allows the peer in its probe timeout: a
    /// quarter of its own smoothed RTT (twice what a peer with the same
    /// RTT estimate delays), within 2 × [`MIN_ACK_DELAY`] and the peer's
    /// announced maximum.
    pub fn peer_ack_delay(&self, peer_max_ack_delay: Duration) -> Duration {
        (self.smoothed / 4).clamp(MIN_ACK_DELAY * 2, peer_max_ack_delay.max(MIN_ACK_DELAY * 2))
    }

    /// Base probe timeout before backoff, given the peer's announced
    /// `max_ack_delay` (of which only the RTT-sized part counts, see
    /// [`peer_ack_delay`](Self::peer_ack_delay)).
    pub fn pto(&self, max_ack_delay: Duration) -> Duration {
        self.smoothed + (self.var * 4).max(GRANULARITY) + self.peer_ack_delay(max_ack_delay)
    }

    /// Time after which an unacknowledged packet older than an acknowledged
    /// one is declared lost.
    fn loss_delay(&self) -> Duration {
        (self.smoothed.max(self.latest) * 9 / 8).max(GRANULARITY)
    }
}

struct SentPacket<F> {
    time: Instant,
    ack_eliciting: bool,
    /// Datagram bytes (counted in flight if ack-eliciting).
    size: u32,
    /// A path-MTU probe: its loss says nothing about congestion.
    probe: bool,
    frames: Vec<F>,
}

/// Sent packets awaiting acknowledgement, for one session.
pub(crate) struct Ledger<F> {
    base: u64,
    packets: VecDeque<Option<SentPacket<F>>>,
    /// Emptied frame vectors, reused so steady state allocates nothing.
    pool: Vec<Vec<F>>,
    largest_acked: Option<u64>,
    last_ack_eliciting: Option<Instant>,
    in_flight: usize,
    pto_count: u32,
    /// Round-trip estimate from acknowledged packets (and the handshake).
    rtt: Rtt,
    /// The peer's announced `max_ack_delay`.
    peer_max_ack_delay: Duration,
    /// `rtt.pto(peer_max_ack_delay)`, recomputed when the RTT changes (the
    /// probe timer is read on every timer re-arm, the RTT changes once per
    /// acknowledgement).
    pto_base: Duration,
    /// Our own announced `max_ack_delay`.
    own_max_ack_delay: Duration,
    /// `rtt.ack_delay(own_max_ack_delay)`, recomputed with the RTT.
    ack_delay: Duration,
    /// Congestion window and bytes in flight.
    cc: Congestion,
    /// Spaces bulk data over the round trip.
    pacer: Pacer,
    /// Losses of packets above the base size since one was acknowledged:
    /// black-hole detection for path-MTU discovery.
    large: LargeLosses,
}

impl<F: Copy> Ledger<F> {
    /// The smoothed round-trip time.
    pub fn smoothed_rtt(&self) -> Duration {
        self.rtt.smoothed()
    }

    /// How long this side may delay an ACK now (see [`Rtt::ack_delay`]).
    pub fn ack_delay(&self) -> Duration {
        self.ack_delay
    }

    /// A round-trip sample taken outside the ledger (the handshake's).
    pub fn rtt_sample(&mut self, rtt: Duration, ack_delay: Duration) {
        self.rtt.update(rtt, ack_delay);
        self.pto_base = self.rtt.pto(self.peer_max_ack_delay);
        self.ack_delay = self.rtt.ack_delay(self.own_max_ack_delay);
    }

    /// An empty ledger; the `max_ack_delay`s are (ours, the peer's), as
    /// announced in the handshake; `cc` is the congestion controller and
    /// `mds` the largest datagram we send (the window's unit).
    pub fn new(
        first_pn: u64,
        initial_rtt: Duration,
        (own, peer): (Duration, Duration),
        (cc, mds): (CongestionControl, usize),
    ) -> Self {
        let rtt = Rtt::new(initial_rtt);
        Ledger {
            cc: Congestion::new(cc, mds as u64),
            pacer: Pacer::new(),
            large: LargeLosses {
                base: mds as u32,
                largest_acked: None,
                streak: 0,
            },
            peer_max_ack_delay: peer,
            pto_base: rtt.pto(peer),
            own_max_ack_delay: own,
            ack_delay: rtt.ack_delay(own),
            base: first_pn,
            packets: VecDeque::new(),
            pool: Vec::new(),
            largest_acked: None,
            last_ack_eliciting: None,
            in_flight: 0,
            pto_count: 0,
            rtt,
        }
    }

    /// An empty frame list to fill for the next packet.
    pub fn frame_vec(&mut self) -> Vec<F> {
        self.pool.pop().unwrap_or_default()
    }

    /// Returns an unused frame list to the pool.
    pub fn recycle(&mut self, mut v: Vec<F>) {
        v.clear();
        self.pool.push(v);
    }

    /// Number of ack-eliciting packets not yet acknowledged or declared lost.
    #[cfg(test)]
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Whether the congestion window and the pacer let bulk data go out now.
    pub fn bulk_open(&self) -> bool {
        self.cc.is_open() && self.pacer.blocked_until().is_none()
    }

    /// When the pacer lets bulk data go out again, if it holds it back.
    pub fn pace_time(&self) -> Option<Instant> {
        self.pacer.blocked_until()
    }

    /// Large packets (above the base size) lost with none acknowledged
    /// after them; see `LargeLosses`.
    pub fn large_loss_streak(&self) -> u32 {
        self.large.streak
    }

    /// The datagram size fell back to the base: start counting afresh.
    pub fn reset_large_losses(&mut self) {
        self.large.streak = 0;
    }

    /// Consecutive probe timeouts without an acknowledgement.
    pub fn pto_count(&self) -> u32 {
        self.pto_count
    }

    /// Timers at `now`: a pacing wait that ended is over.
    pub fn on_timeout(&mut self, now: Instant) {
        self.pacer.on_timeout(now);
    }

    /// The congestion controller (window, bytes in flight).
    pub fn congestion(&self) -> &Congestion {
        &self.cc
    }

    /// Records packet `pn` of `size` bytes, which must be the next number
    /// after the last one recorded (the session sends numbers densely);
    /// `carries` says what for the pacer and the congestion controller.
    pub fn on_sent(
        &mut self,
        pn: u64,
        now: Instant,
        frames: Vec<F>,
        (size, carries): (usize, Carries),
    ) {
        debug_assert_eq!(pn, self.base + self.packets.len() as u64);
        let ack_eliciting = !frames.is_empty();
        let size = u32::try_from(size).unwrap_or(u32::MAX);
        if ack_eliciting {
            self.in_flight += 1;
            self.last_ack_eliciting = Some(now);
            self.cc.on_sent(u64::from(size));
        }
        if carries == Carries::Bulk {
            self.pacer
                .on_sent(u64::from(size), now, &self.cc, self.rtt.smoothed());
        }
        self.packets.push_back(Some(SentPacket {
            time: now,
            ack_eliciting,
            size,
            probe: carries == Carries::Probe,
            frames,
        }));
    }

    fn slot(&mut self, pn: u64) -> Option<&mut Option<SentPacket<F>>> {
        let i = usize::try_from(pn.checked_sub(self.base)?).ok()?;
        self.packets.get_mut(i)
    }

    fn release(&mut self, mut pkt: SentPacket<F>, on_frame: &mut impl FnMut(F)) {
        if pkt.ack_eliciting {
            self.in_flight -= 1;
        }
        for f in pkt.frames.drain(..) {
            on_frame(f);
        }
        self.pool.push(pkt.frames);
    }

    fn trim(&mut self) {
        while let Some(None) = self.packets.front() {
            self.packets.pop_front();
            self.base += 1;
        }
    }

    /// Processes the ranges of an ACK frame (any order). Frames of newly
    /// acknowledged packets go to `acked`. Ranges outside what was sent are
    /// ignored, so a hostile ACK costs at most one pass over the ledger.
    pub fn on_ack(
        &mut self,
        now: Instant,
        ranges: impl Iterator<Item = std::ops::RangeInclusive<u64>>,
        ack_delay: Duration,
        mut acked: impl FnMut(F),
    ) {
        let end = self.base + self.packets.len() as u64;
        let mut largest_newly: Option<(u64, Instant, bool)> = None;
        for r in ranges {
            let lo = (*r.start()).max(self.base);
            let hi = (*r.end()).min(end.saturating_sub(1));
            if self.packets.is_empty() || lo > hi {
                continue;
            }
            for pn in lo..=hi {
                let Some(pkt) = self.slot(pn).and_then(Option::take) else {
                    continue;
                };
                if largest_newly.is_none_or(|(l, _, _)| pn > l) {
                    largest_newly = Some((pn, pkt.time, pkt.ack_eliciting));
                }
                if pkt.ack_eliciting {
                    let rtt = self.rtt.smoothed();
                    self.cc.on_acked(u64::from(pkt.size), pkt.time, now, rtt);
                }
                self.large.on_acked(pn, pkt.size, pkt.probe);
                self.release(pkt, &mut acked);
            }
        }
        if let Some((pn, sent, eliciting)) = largest_newly {
            if self.largest_acked.is_none_or(|l| pn > l) {
                self.largest_acked = Some(pn);
                if eliciting {
                    self.rtt_sample(now.saturating_duration_since(sent), ack_delay);
                }
            }
            self.pto_count = 0;
        }
        self.trim();
    }

    /// Declares lost every packet past the packet or time threshold; their
    /// frames go to `lost`. Returns how many packets were lost.
    pub fn detect_lost(&mut self, now: Instant, mut lost: impl FnMut(F)) -> u64 {
        let Some(largest) = self.largest_acked else {
            return 0;
        };
        let delay = self.rtt.loss_delay();
        let mut count = 0;
        for i in 0..self.packets.len() {
            let pn = self.base + i as u64;
            if pn >= largest {
                break;
            }
            let Some(pkt) = &self.packets[i] else {
                continue;
            };
            let by_count = largest - pn >= PACKET_THRESHOLD;
            let by_time = now.saturating_duration_since(pkt.time) >= delay;
            if by_count || by_time {
                if let Some(pkt) = self.packets[i].take() {
                    count += 1;
                    self.large.on_lost(pn, pkt.size, pkt.probe);
                    if pkt.ack_eliciting {
                        let size = u64::from(pkt.size);
                        match pkt.probe {
                            true => self.cc.on_probe_lost(size),
                            false => self.cc.on_lost(size, pkt.time, now),
                        }
                    }
                    self.release(pkt, &mut lost);
                }
            }
        }
        self.trim();
        count
    }

    /// When the time threshold will declare the oldest candidate lost.
    pub fn loss_time(&self) -> Option<Instant> {
        let largest = self.largest_acked?;
        // Read on every timer re-arm: in steady state every packet below
        // the largest acknowledged was trimmed, and there is nothing to scan.
        let below = usize::try_from(largest.checked_sub(self.base)?).ok()?;
        let delay = self.rtt.loss_delay();
        self.packets
            .range(..below.min(self.packets.len()))
            .find_map(|p| p.as_ref().map(|p| p.time + delay))
    }

    /// When the probe timer fires, if anything ack-eliciting is in flight.
    pub fn pto_time(&self) -> Option<Instant> {
        if self.in_flight == 0 {
            return None;
        }
        let backoff = 1u32 << self.pto_count.min(MAX_PTO_BACKOFF);
        Some(self.last_ack_eliciting? + self.pto_base * backoff)
    }

    /// Probe timeout (RFC 9002 §6.2.4): the frames of the oldest
    /// ack-eliciting packet go out again as the probe, and the timer backs
    /// off. The packet itself stays in flight, not lost: a probe is often
    /// spurious (the ACK was only late, say on a loaded machine), and its
    /// late ACK must still free what it carried and give an RTT sample.
    /// Frame handling is idempotent, so acknowledging both the packet and
    /// its probe does no harm.
    ///
    /// If that oldest packet is a path-MTU probe, it is declared lost
    /// instead (its frames go to `probe` as for a loss, and the caller
    /// learns it from the result) and the timer does not back off: a
    /// probe larger than the path is expected to vanish, and that says
    /// nothing about the path for ordinary packets. Returns whether this
    /// was such a probe timeout.
    pub fn on_pto(&mut self, now: Instant, mut probe: impl FnMut(F)) -> bool {
        self.last_ack_eliciting = Some(now);
        let oldest = self
            .packets
            .iter()
            .position(|p| p.as_ref().is_some_and(|p| p.ack_eliciting));
        let Some(i) = oldest else {
            self.pto_count = self.pto_count.saturating_add(1);
            return false;
        };
        if self.packets[i].as_ref().is_some_and(|p| p.probe) {
            if let Some(pkt) = self.packets[i].take() {
                self.cc.on_probe_lost(u64::from(pkt.size));
                self.release(pkt, &mut probe);
            }
            self.trim();
            return true;
        }
        self.pto_count = self.pto_count.saturating_add(1);
        if let Some(pkt) = &self.packets[i] {
            pkt.frames.iter().copied().for_each(&mut probe);
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtt_converges() {
        let mut rtt = Rtt::new(Duration::from_millis(100));
        for _ in 0..50 {
            rtt.update(Duration::from_millis(10), Duration::ZERO);
        }
        assert!(rtt.smoothed().abs_diff(Duration::from_millis(10)) < Duration::from_micros(100));
    }

    #[test]
    fn ack_delays_follow_the_rtt_within_their_bounds() {
        let max = Duration::from_millis(5);
        let mut rtt = Rtt::new(Duration::from_micros(800));
        rtt.update(Duration::from_micros(800), Duration::ZERO);
        // We delay an eighth of the RTT; we allow the peer a quarter.
        assert_eq!(rtt.ack_delay(max), Duration::from_micros(100));
        assert_eq!(rtt.peer_ack_delay(max), Duration::from_micros(200));
        // A fast LAN round trip: the floors.
        let lan = Rtt::new(Duration::from_micros(50));
        assert_eq!(lan.ack_delay(max), MIN_ACK_DELAY);
        assert_eq!(lan.peer_ack_delay(max), MIN_ACK_DELAY * 2);
        // A WAN round trip: the announced maximum caps both.
        let wan = Rtt::new(Duration::from_millis(200));
        assert_eq!(wan.ack_delay(max), max);
        assert_eq!(wan.peer_ack_delay(max), max);
        // PTO on a LAN: RTT + 4 × rttvar (half the initial RTT) + the
        // peer's RTT-sized delay.
        assert_eq!(
            lan.pto(max),
            Duration::from_micros(50) + Duration::from_micros(100) + MIN_ACK_DELAY * 2
        );
    }

    #[test]
    fn ack_releases_frames_and_threshold_declares_loss() {
        let t0 = Instant::now();
        let mut l: Ledger<u32> = Ledger::new(
            10,
            Duration::from_millis(10),
            (Duration::ZERO, Duration::ZERO),
            (CongestionControl::NewReno, 1200),
        );
        for pn in 10..20 {
            let mut v = l.frame_vec();
            v.push(pn as u32);
            l.on_sent(pn, t0, v, (100, Carries::Calls));
        }
        let mut acked = vec![];
        let t1 = t0 + Duration::from_millis(5);
        l.on_ack(t1, [15..=15].into_iter(), Duration::ZERO, |f| acked.push(f));
        assert_eq!(acked, vec![15]);
        let mut lost = vec![];
        // Packet threshold: 3 or more below the largest acknowledged (15).
        l.detect_lost(t1, |f| lost.push(f));
        assert_eq!(lost, vec![10, 11, 12]);
        assert_eq!(l.in_flight(), 6);
        // Time threshold takes 13 and 14; nothing above the largest acked.
        l.detect_lost(t0 + Duration::from_secs(1), |f| lost.push(f));
        assert_eq!(lost, vec![10, 11, 12, 13, 14]);
        assert_eq!(l.in_flight(), 4);
        assert!(l.pto_time().is_some());
    }

    #[test]
    fn hostile_ack_ranges_are_clamped() {
        let t0 = Instant::now();
        let mut l: Ledger<u32> = Ledger::new(
            0,
            Duration::from_millis(10),
            (Duration::ZERO, Duration::ZERO),
            (CongestionControl::NewReno, 1200),
        );
        l.on_sent(0, t0, vec![1], (100, Carries::Calls));
        let mut n = 0;
        l.on_ack(t0, [0..=u64::MAX >> 2].into_iter(), Duration::ZERO, |_| {
            n += 1
        });
        assert_eq!(n, 1);
    }

    #[test]
    fn pto_resends_oldest_and_backs_off() {
        let t0 = Instant::now();
        let mut l: Ledger<u32> = Ledger::new(
            0,
            Duration::from_millis(10),
            (Duration::ZERO, Duration::ZERO),
            (CongestionControl::NewReno, 1200),
        );
        l.on_sent(0, t0, vec![7], (100, Carries::Calls));
        let first = l.pto_time().unwrap();
        let mut lost = vec![];
        l.on_pto(first, |f| lost.push(f));
        assert_eq!(lost, vec![7]);
        l.on_sent(1, first, vec![7], (100, Carries::Calls));
        let second = l.pto_time().unwrap();
        assert!(second - first > first - t0, "backoff doubles the timeout");
    }
}
