//! Re-announce policy and the announce rate limiter (pure arithmetic).
//!
//! The reference system's self-inflicted outage: a node's own capability
//! entry carried a TTL, nothing re-announced it, and after one TTL the
//! callee gate found no entry and denied every call. Here the engine
//! re-announces on the cadence [`AnnounceThrottle`] schedules, and the TTL
//! stamped on each announcement ([`AnnouncePolicy::ttl`]) is twice the
//! cadence peers actually see refreshes at — not the bare tick, which the
//! rate limit can stretch.

use std::time::Duration;

use crate::MAX_TTL_MS;

/// Default [`AnnouncePolicy::reannounce_interval`]: 150 s.
pub const DEFAULT_REANNOUNCE_INTERVAL: Duration = Duration::from_secs(150);
/// Default [`AnnouncePolicy::min_announce_interval`]: 10 s.
pub const DEFAULT_MIN_ANNOUNCE_INTERVAL: Duration = Duration::from_secs(10);

/// How often a node re-announces its capabilities, and how often at most
/// it sends an announcement to the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AnnouncePolicy {
    /// Period of the re-announce loop (default 150 s); `Duration::MAX`
    /// disables the loop.
    pub reannounce_interval: Duration,
    /// Least time between two network announcements (default 10 s); a
    /// change inside it is delayed, not dropped.
    pub min_announce_interval: Duration,
}

impl Default for AnnouncePolicy {
    fn default() -> Self {
        AnnouncePolicy {
            reannounce_interval: DEFAULT_REANNOUNCE_INTERVAL,
            min_announce_interval: DEFAULT_MIN_ANNOUNCE_INTERVAL,
        }
    }
}

/// Largest cadence: half the largest TTL, so that `2 × cadence` is still
/// a TTL verifiers accept.
const MAX_CADENCE: Duration = Duration::from_millis(MAX_TTL_MS / 2);

impl AnnouncePolicy {
    /// Whether the re-announce loop runs (`reannounce_interval` is not
    /// `Duration::MAX`).
    pub fn enabled(&self) -> bool {
        self.reannounce_interval != Duration::MAX
    }

    /// The cadence peers see refreshes at: `max(reannounce_interval,
    /// min_announce_interval)` — the throttle cannot send faster than the
    /// minimum — capped at half of [`MAX_TTL_MS`] (a longer configured
    /// interval is shortened, so the TTL stays acceptable). `None` when
    /// disabled.
    pub fn interval(&self) -> Option<Duration> {
        self.enabled().then(|| self.cadence())
    }

    /// `max(reannounce, min)` capped at [`MAX_CADENCE`].
    fn cadence(&self) -> Duration {
        self.reannounce_interval
            .max(self.min_announce_interval)
            .min(MAX_CADENCE)
    }

    /// The TTL to stamp on announcements: `2 × max(reannounce_interval,
    /// min_announce_interval)`, capped at [`MAX_TTL_MS`] (1 h, the most
    /// verifiers accept; this is also the value when the loop is disabled).
    /// Twice the cadence, so one lost or delayed refresh does not expire
    /// the entry at peers.
    pub fn ttl(&self) -> Duration {
        self.cadence().saturating_mul(2)
    }

    /// [`AnnouncePolicy::ttl`] in milliseconds.
    pub fn ttl_ms(&self) -> u64 {
        duration_ms(self.ttl())
    }
}

/// Whole milliseconds of `d`, saturating.
fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Schedules network announcements: at most one per
/// `min_announce_interval`, a requested change inside it delayed until the
/// window ends (never dropped; several changes coalesce into one send of
/// the latest state), and — when the loop is enabled — a periodic
/// re-announce every [`AnnouncePolicy::interval`] after the last send.
///
/// Drive it with [`AnnounceThrottle::next_due`] as a timer and
/// [`AnnounceThrottle::poll`] when it fires; `poll` returning `true` means
/// "build, sign and send the current announcement now". The local entry
/// ([`crate::CapabilityFold::set_local`]) should be refreshed on every
/// change and every send regardless; only the network send is throttled.
#[derive(Clone, Debug)]
pub struct AnnounceThrottle {
    min_ms: u64,
    interval_ms: Option<u64>,
    last_sent: Option<u64>,
    pending: bool,
}

impl AnnounceThrottle {
    /// A throttle with nothing sent and nothing pending.
    pub fn new(policy: AnnouncePolicy) -> AnnounceThrottle {
        AnnounceThrottle {
            min_ms: duration_ms(policy.min_announce_interval),
            interval_ms: policy.interval().map(duration_ms),
            last_sent: None,
            pending: false,
        }
    }

    /// The announced state changed at `now_ms`: send it as soon as the
    /// rate limit allows.
    pub fn request(&mut self, now_ms: u64) {
        self.clamp_clock(now_ms);
        self.pending = true;
    }

    /// Whether to send now. If so, records the send at `now_ms` and clears
    /// the pending change.
    pub fn poll(&mut self, now_ms: u64) -> bool {
        self.clamp_clock(now_ms);
        let due = self.next_due().is_some_and(|t| now_ms >= t);
        if due {
            self.last_sent = Some(now_ms);
            self.pending = false;
        }
        due
    }

    /// When [`AnnounceThrottle::poll`] will next return `true` (Unix ms; a
    /// time in the past means "now"), or `None` if nothing is scheduled
    /// (nothing pending and no periodic loop, or nothing ever sent).
    pub fn next_due(&self) -> Option<u64> {
        match (self.pending, self.last_sent) {
            (true, None) => Some(0),
            (true, Some(last)) => Some(last.saturating_add(self.min_ms)),
            (false, Some(last)) => self.interval_ms.map(|i| last.saturating_add(i)),
            (false, None) => None,
        }
    }

    /// If the clock went backwards past the last send, treat the last send
    /// as happening now: a pending change then waits at most one minimum
    /// interval instead of the size of the jump.
    fn clamp_clock(&mut self, now_ms: u64) {
        if let Some(last) = self.last_sent {
            if now_ms < last {
                self.last_sent = Some(now_ms);
            }
        }
    }
}
