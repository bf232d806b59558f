//! Congestion control: NewReno (RFC 9002 §7), per session.
//!
//! The window bounds the bytes of ack-eliciting packets in flight. Bulk
//! data (segmented bodies) is sent only while the window is open; the
//! frames of calls are not held back (a LAN call is one packet each way,
//! and calls coalesced into one packet count as that packet's bytes), but
//! their packets count in flight, so a burst of calls makes room for bulk
//! data only as it is acknowledged.
//!
//! Call contract: [`on_sent`](NewReno::on_sent) for every ack-eliciting
//! packet, then exactly one of [`on_acked`](NewReno::on_acked) or
//! [`on_lost`](NewReno::on_lost) for it; time is passed in.

use std::time::Instant;

/// RFC 9002 `kLossReductionFactor`, as a fraction.
const LOSS_REDUCTION: (u64, u64) = (1, 2);

/// NewReno state.
#[derive(Debug, Clone)]
pub(crate) struct NewReno {
    /// Bytes of ack-eliciting packets in flight may reach this.
    window: u64,
    /// Slow start ends here.
    ssthresh: u64,
    /// Bytes of ack-eliciting packets sent and neither acknowledged nor lost.
    in_flight: u64,
    /// Packets sent before this instant do not reduce the window again
    /// (one reduction per round trip of losses).
    recovery_start: Option<Instant>,
    /// The sender's maximum datagram size: the unit of growth.
    mds: u64,
}

impl NewReno {
    /// A new controller for datagrams of up to `mds` bytes: the initial
    /// window of RFC 9002 §7.2, `min(10 × mds, max(14 720, 2 × mds))`.
    pub fn new(mds: u64) -> Self {
        NewReno {
            window: (10 * mds).min(14_720u64.max(2 * mds)),
            ssthresh: u64::MAX,
            in_flight: 0,
            recovery_start: None,
            mds,
        }
    }

    fn min_window(&self) -> u64 {
        2 * self.mds
    }

    /// Whether another packet of bulk data may be sent.
    pub fn is_open(&self) -> bool {
        self.in_flight < self.window
    }

    /// The congestion window in bytes.
    pub fn window(&self) -> u64 {
        self.window
    }

    /// Bytes in flight.
    pub fn in_flight(&self) -> u64 {
        self.in_flight
    }

    /// An ack-eliciting packet of `bytes` was sent.
    pub fn on_sent(&mut self, bytes: u64) {
        self.in_flight += bytes;
    }

    /// An ack-eliciting packet of `bytes` sent at `sent` was acknowledged.
    /// The window grows only while it is used (RFC 9002 §7.8): with less
    /// than half of it in flight, a sender of calls would otherwise grow it
    /// without bound and later burst bulk data into a queue.
    pub fn on_acked(&mut self, bytes: u64, sent: Instant) {
        let used = self.in_flight * 2 >= self.window;
        self.in_flight = self.in_flight.saturating_sub(bytes);
        if self.in_recovery(sent) || !used {
            return;
        }
        if self.window < self.ssthresh {
            self.window += bytes;
        } else {
            self.window += self.mds * bytes / self.window;
        }
    }

    /// An ack-eliciting packet of `bytes` sent at `sent` was declared lost
    /// at `now`: the window halves, once per round trip of losses.
    pub fn on_lost(&mut self, bytes: u64, sent: Instant, now: Instant) {
        self.in_flight = self.in_flight.saturating_sub(bytes);
        if self.in_recovery(sent) {
            return;
        }
        self.recovery_start = Some(now);
        let (num, den) = LOSS_REDUCTION;
        self.ssthresh = (self.window * num / den).max(self.min_window());
        self.window = self.ssthresh;
    }

    fn in_recovery(&self, sent: Instant) -> bool {
        self.recovery_start.is_some_and(|r| sent <= r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn slow_start_doubles_per_round_trip_and_a_loss_halves_once() {
        let t0 = Instant::now();
        let mut cc = NewReno::new(1000);
        assert_eq!(cc.window(), 10_000);
        for _ in 0..10 {
            cc.on_sent(1000);
        }
        assert!(!cc.is_open());
        // A window acknowledged while the sender keeps it full: doubled.
        for _ in 0..10 {
            cc.on_acked(1000, t0);
            cc.on_sent(1000);
            cc.on_sent(1000);
        }
        assert_eq!((cc.window(), cc.in_flight()), (20_000, 20_000));
        // Two losses of one flight: one reduction.
        let later = t0 + Duration::from_millis(1);
        cc.on_lost(1000, later, later + Duration::from_millis(1));
        cc.on_lost(1000, later, later + Duration::from_millis(2));
        assert_eq!((cc.window(), cc.in_flight()), (10_000, 18_000));
        // Congestion avoidance: about one datagram per window acknowledged.
        let after = later + Duration::from_millis(3);
        for _ in 0..10 {
            cc.on_acked(1000, after);
        }
        assert!(
            cc.window() > 10_000 && cc.window() <= 11_000,
            "{}",
            cc.window()
        );
    }

    #[test]
    fn an_idle_window_does_not_grow_and_never_drops_below_two_datagrams() {
        let t0 = Instant::now();
        let mut cc = NewReno::new(1000);
        for _ in 0..100 {
            cc.on_sent(100);
            cc.on_acked(100, t0);
        }
        assert_eq!(cc.window(), 10_000, "application-limited");
        for i in 0..20u64 {
            let at = t0 + Duration::from_millis(i + 1);
            cc.on_sent(1000);
            cc.on_lost(1000, at, at);
        }
        assert_eq!(cc.window(), 2000);
    }
}
