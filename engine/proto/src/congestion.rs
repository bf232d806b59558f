//! Congestion control, per session: CUBIC (RFC 9438, the default) or
//! NewReno (RFC 9002 §7), and a pacer for bulk data.
//!
//! The window bounds the bytes of ack-eliciting packets in flight. Bulk
//! data (segmented bodies) is sent only while the window is open; the
//! frames of calls are not held back (a LAN call is one packet each way,
//! and calls coalesced into one packet count as that packet's bytes), but
//! their packets count in flight, so a burst of calls makes room for bulk
//! data only as it is acknowledged.
//!
//! Call contract: [`on_sent`](Congestion::on_sent) for every ack-eliciting
//! packet, then exactly one of [`on_acked`](Congestion::on_acked) or
//! [`on_lost`](Congestion::on_lost) for it; time and the RTT are passed in.
//!
//! The pacer spreads bulk data over the round trip instead of sending a
//! window at once into a bottleneck's queue: a token bucket filled at
//! 1.25 × window / RTT (2 × in slow start), holding at most 500 µs of that
//! rate (2 to 256 datagrams). On a LAN the bucket covers the whole window,
//! so pacing costs nothing there. (Bursts of 2 ms and at least 10
//! datagrams, quinn's choice, left an iperf3 TCP flow 24 % of a shared
//! 100 Mbit/s bottleneck; these leave it 20–36 % across runs:
//! docs/BENCHMARKS.md.)

use std::time::{Duration, Instant};

/// Which congestion controller a session runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CongestionControl {
    /// RFC 9438: window growth a cubic function of the time since the last
    /// reduction, so a long fat path refills quickly; Reno-friendly below.
    #[default]
    Cubic,
    /// RFC 9002 §7: one datagram per window per round trip after slow start.
    NewReno,
}

/// RFC 9002 `kLossReductionFactor` (NewReno).
const RENO_BETA: f64 = 0.5;
/// RFC 9438 `β_cubic`.
const CUBIC_BETA: f64 = 0.7;
/// RFC 9438 `C`, in segments per second³.
const CUBIC_C: f64 = 0.4;

/// CUBIC's state since the last reduction, in segments of `mds` bytes.
#[derive(Debug, Clone, Default)]
struct CubicEpoch {
    /// Window before the last reduction (`W_max`).
    w_max: f64,
    /// Seconds from the epoch's start until the window is back at `w_max`.
    k: f64,
    /// Start of the epoch: the first acknowledgement in congestion avoidance.
    start: Option<Instant>,
    /// The Reno-friendly estimate (`W_est`).
    w_est: f64,
}

/// Window, bytes in flight and the controller's state.
#[derive(Debug, Clone)]
pub(crate) struct Congestion {
    algo: CongestionControl,
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
    cubic: CubicEpoch,
}

impl Congestion {
    /// A new controller for datagrams of up to `mds` bytes: the initial
    /// window of RFC 9002 §7.2, `min(10 × mds, max(14 720, 2 × mds))`.
    pub fn new(algo: CongestionControl, mds: u64) -> Self {
        Congestion {
            algo,
            window: (10 * mds).min(14_720u64.max(2 * mds)),
            ssthresh: u64::MAX,
            in_flight: 0,
            recovery_start: None,
            mds,
            cubic: CubicEpoch::default(),
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

    /// Whether the window is still in slow start.
    pub fn in_slow_start(&self) -> bool {
        self.window < self.ssthresh
    }

    /// Bytes in flight.
    pub fn in_flight(&self) -> u64 {
        self.in_flight
    }

    /// An ack-eliciting packet of `bytes` was sent.
    pub fn on_sent(&mut self, bytes: u64) {
        self.in_flight += bytes;
    }

    /// An ack-eliciting packet of `bytes` sent at `sent` was acknowledged
    /// at `now`; `rtt` is the smoothed RTT. The window grows only while it
    /// is used (RFC 9002 §7.8): with less than half of it in flight, a
    /// sender of calls would otherwise grow it without bound and later
    /// burst bulk data into a queue.
    pub fn on_acked(&mut self, bytes: u64, sent: Instant, now: Instant, rtt: Duration) {
        let used = self.in_flight * 2 >= self.window;
        self.in_flight = self.in_flight.saturating_sub(bytes);
        if self.in_recovery(sent) || !used {
            return;
        }
        if self.window < self.ssthresh {
            self.window += bytes;
            return;
        }
        match self.algo {
            CongestionControl::NewReno => self.window += self.mds * bytes / self.window,
            CongestionControl::Cubic => self.cubic_grow(bytes, now, rtt),
        }
    }

    /// RFC 9438 §4.2–4.4: aim at the cubic curve one RTT ahead, never
    /// below the Reno-friendly estimate, growing at most 1.5× per RTT.
    fn cubic_grow(&mut self, bytes: u64, now: Instant, rtt: Duration) {
        let mds = self.mds as f64;
        let cwnd = self.window as f64 / mds;
        let acked = bytes as f64 / mds;
        let e = &mut self.cubic;
        let start = *e.start.get_or_insert_with(|| {
            if e.w_max < cwnd {
                // No reduction yet (or the window passed W_max): a new
                // plateau here.
                e.w_max = cwnd;
                e.k = 0.0;
            }
            e.w_est = cwnd;
            now
        });
        let t = now.saturating_duration_since(start) + rtt;
        let d = t.as_secs_f64() - e.k;
        let target = (CUBIC_C * d * d * d + e.w_max).clamp(cwnd, 1.5 * cwnd);
        let alpha = 3.0 * (1.0 - CUBIC_BETA) / (1.0 + CUBIC_BETA);
        e.w_est += alpha * acked / cwnd;
        let next = if target < e.w_est {
            e.w_est
        } else {
            cwnd + (target - cwnd) / cwnd * acked
        };
        self.window = ((next * mds) as u64).max(self.window);
    }

    /// An ack-eliciting packet of `bytes` sent at `sent` was declared lost
    /// at `now`: the window shrinks, once per round trip of losses.
    pub fn on_lost(&mut self, bytes: u64, sent: Instant, now: Instant) {
        self.in_flight = self.in_flight.saturating_sub(bytes);
        if self.in_recovery(sent) {
            return;
        }
        self.recovery_start = Some(now);
        let beta = match self.algo {
            CongestionControl::NewReno => RENO_BETA,
            CongestionControl::Cubic => {
                let mds = self.mds as f64;
                let cwnd = self.window as f64 / mds;
                let e = &mut self.cubic;
                // Fast convergence: a flow whose plateau fell yields more.
                e.w_max = if cwnd < e.w_max {
                    cwnd * (1.0 + CUBIC_BETA) / 2.0
                } else {
                    cwnd
                };
                e.k = (e.w_max * (1.0 - CUBIC_BETA) / CUBIC_C).cbrt();
                e.start = None;
                CUBIC_BETA
            }
        };
        self.ssthresh = ((self.window as f64 * beta) as u64).max(self.min_window());
        self.window = self.ssthresh;
    }

    /// A path-MTU probe of `bytes` was lost: out of flight, and no
    /// reduction (RFC 8899 §3: a probe's loss is not congestion).
    pub fn on_probe_lost(&mut self, bytes: u64) {
        self.in_flight = self.in_flight.saturating_sub(bytes);
    }

    fn in_recovery(&self, sent: Instant) -> bool {
        self.recovery_start.is_some_and(|r| sent <= r)
    }
}

/// Most of a burst: 500 µs of the pacing rate (RFC 9002 §7.7 leaves the
/// burst to the implementation; see the module docs for why not 2 ms).
const BURST_INTERVAL: Duration = Duration::from_micros(500);
/// A burst is 2 to 256 datagrams.
const MIN_BURST: u64 = 2;
const MAX_BURST: u64 = 256;

/// Token bucket for bulk data; see the module docs.
#[derive(Debug, Clone)]
pub(crate) struct Pacer {
    /// Bytes that may go out at once now.
    tokens: u64,
    /// When `tokens` was last brought up to date.
    last: Option<Instant>,
    /// Bulk data waits until this instant (not enough tokens for a datagram).
    blocked_until: Option<Instant>,
}

impl Pacer {
    /// A full bucket.
    pub fn new() -> Self {
        Pacer {
            tokens: u64::MAX,
            last: None,
            blocked_until: None,
        }
    }

    /// When bulk data may go out again, if it must wait.
    pub fn blocked_until(&self) -> Option<Instant> {
        self.blocked_until
    }

    /// Timers ran at `now`: a wait that ended is over.
    pub fn on_timeout(&mut self, now: Instant) {
        if self.blocked_until.is_some_and(|t| t <= now) {
            self.blocked_until = None;
        }
    }

    /// A datagram of `bytes` bulk bytes went out at `now`, under `cc`'s
    /// window and the smoothed `rtt`; datagrams are at most `mds` bytes.
    pub fn on_sent(&mut self, bytes: u64, now: Instant, cc: &Congestion, rtt: Duration) {
        let rtt = rtt.max(Duration::from_micros(1));
        let gain = if cc.in_slow_start() { 2.0 } else { 1.25 };
        let rate = gain * cc.window() as f64 / rtt.as_secs_f64(); // bytes/s
        let mds = cc.mds;
        let burst = (rate * BURST_INTERVAL.as_secs_f64()) as u64;
        let capacity = burst.clamp(MIN_BURST * mds, MAX_BURST * mds);
        let elapsed = self
            .last
            .map_or(Duration::MAX, |l| now.saturating_duration_since(l));
        let refill = (rate * elapsed.as_secs_f64().min(1.0)) as u64;
        self.tokens = self.tokens.saturating_add(refill).min(capacity);
        self.tokens = self.tokens.saturating_sub(bytes);
        self.last = Some(now);
        if self.tokens < mds {
            let wait = (mds - self.tokens) as f64 / rate;
            self.blocked_until = Some(now + Duration::from_secs_f64(wait));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RTT: Duration = Duration::from_millis(1);

    #[test]
    fn slow_start_doubles_per_round_trip_and_a_loss_halves_once() {
        let t0 = Instant::now();
        let mut cc = Congestion::new(CongestionControl::NewReno, 1000);
        assert_eq!(cc.window(), 10_000);
        for _ in 0..10 {
            cc.on_sent(1000);
        }
        assert!(!cc.is_open());
        // A window acknowledged while the sender keeps it full: doubled.
        for _ in 0..10 {
            cc.on_acked(1000, t0, t0, RTT);
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
            cc.on_acked(1000, after, after, RTT);
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
        let mut cc = Congestion::new(CongestionControl::NewReno, 1000);
        for _ in 0..100 {
            cc.on_sent(100);
            cc.on_acked(100, t0, t0, RTT);
        }
        assert_eq!(cc.window(), 10_000, "application-limited");
        for i in 0..20u64 {
            let at = t0 + Duration::from_millis(i + 1);
            cc.on_sent(1000);
            cc.on_lost(1000, at, at);
        }
        assert_eq!(cc.window(), 2000);
    }

    #[test]
    fn cubic_backs_off_less_than_reno_and_regrows_to_its_plateau_in_k() {
        let t0 = Instant::now();
        let mds = 1000;
        let mut cc = Congestion::new(CongestionControl::Cubic, mds);
        // Slow start to 100 datagrams, then a loss.
        while cc.window() < 100 * mds {
            cc.on_sent(mds);
            cc.on_acked(mds, t0, t0, RTT);
            cc.on_sent(mds);
        }
        let w_max = cc.window();
        let at = t0 + Duration::from_millis(1);
        cc.on_lost(mds, at, at);
        assert_eq!(cc.window(), (w_max as f64 * CUBIC_BETA) as u64);
        // Round trips of 100 ms, each acknowledging a full window: after
        // K = cbrt(W_max × 0.3 / 0.4) s (W_max in segments) the window is
        // back at its plateau. (On a short RTT the Reno-friendly estimate
        // leads instead, as RFC 9438 §4.3 intends.)
        let rtt = Duration::from_millis(100);
        let k = ((w_max / mds) as f64 * (1.0 - CUBIC_BETA) / CUBIC_C).cbrt();
        let mut now = at + rtt;
        let end = now + Duration::from_secs_f64(k);
        while now < end {
            while cc.is_open() {
                cc.on_sent(mds);
            }
            for _ in 0..cc.in_flight() / mds {
                cc.on_acked(mds, now, now, rtt);
            }
            now += rtt;
        }
        let w = cc.window() as f64 / w_max as f64;
        assert!(
            (0.95..=1.1).contains(&w),
            "window {w:.2} of the plateau after K"
        );
    }

    #[test]
    fn the_pacer_lets_a_burst_out_then_spaces_datagrams_at_the_rate() {
        let t0 = Instant::now();
        let mut cc = Congestion::new(CongestionControl::Cubic, 1000);
        cc.ssthresh = 0; // congestion avoidance: gain 1.25
        let rtt = Duration::from_millis(10);
        let mut p = Pacer::new();
        // Window 10 000 B per 10 ms → 1.25 MB/s; a burst is 2 datagrams
        // (500 µs of the rate is less).
        let mut sent = 0;
        while p.blocked_until().is_none() {
            p.on_sent(1000, t0, &cc, rtt);
            sent += 1;
        }
        assert_eq!(sent, 2, "the first burst");
        let wait = p.blocked_until().unwrap() - t0;
        assert!(
            wait > Duration::from_micros(700) && wait < Duration::from_micros(900),
            "{wait:?}"
        );
        p.on_timeout(t0 + wait);
        assert_eq!(p.blocked_until(), None);
    }
}
