//! Handshake initiation rate limiting (WireGuard-style), so a flood of
//! initiations cannot turn the responder's Diffie-Hellman work into a
//! denial of service for established sessions or for honest initiators.
//!
//! Consulted after the cheap checks (size, mac1) and before any public-key
//! work, with three token buckets:
//! * an *offered* bucket counts every initiation that passed mac1; when it
//!   falls below half, the endpoint is *under load*, and stays so for
//!   [`LOAD_HOLD`] after the last such moment. Under load, initiations
//!   without a valid mac2 get a cookie reply ([`crate::cookie`]) and no
//!   further work, so a spoofed flood costs one cheap reply per packet;
//! * a global bucket caps initiations given public-key work per second
//!   (default 1 000/s, burst 200: ~0.4 s of CPU per second at worst,
//!   leaving the data path its core);
//! * cookie replies are themselves capped at [`COOKIE_FACTOR`] times the
//!   DH rate (each costs ~2 µs and a send): beyond that, a flood is
//!   dropped and counted, and an honest initiator retries on its timer;
//! * under load, a per-source bucket (default 20/s, burst 10), keyed by the
//!   address that mac2 proved, keeps one address from taking the whole
//!   budget. Its table is bounded; when full, it is cleared.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Most source addresses tracked at once.
const MAX_SOURCES: usize = 4096;
/// Cookie replies allowed per second, as a multiple of the DH budget.
pub(crate) const COOKIE_FACTOR: f64 = 10.0;

/// How long the endpoint stays under load after the offered rate last
/// exceeded its budget (WireGuard holds one second too).
pub(crate) const LOAD_HOLD: Duration = Duration::from_secs(1);

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(burst: f64, now: Instant) -> Self {
        Bucket {
            tokens: burst,
            at: now,
        }
    }

    fn refill(&mut self, rate: f64, burst: f64, now: Instant) {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + dt * rate).min(burst);
        self.at = now;
    }

    fn take(&mut self) -> bool {
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Rates for [`InitLimiter`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HandshakeLimits {
    /// Initiations processed per second by one endpoint.
    pub per_second: f64,
    /// Burst allowed above that rate.
    pub burst: f64,
    /// Per source address, when under load.
    pub per_source_per_second: f64,
    /// Per-source burst.
    pub per_source_burst: f64,
}

impl Default for HandshakeLimits {
    fn default() -> Self {
        HandshakeLimits {
            per_second: 1000.0,
            burst: 200.0,
            per_source_per_second: 20.0,
            per_source_burst: 10.0,
        }
    }
}

/// Decides whether an initiation may proceed to public-key work.
pub(crate) struct InitLimiter {
    limits: HandshakeLimits,
    offered: Bucket,
    cookies: Bucket,
    loaded_until: Option<Instant>,
    global: Bucket,
    sources: HashMap<IpAddr, Bucket>,
}

impl InitLimiter {
    pub fn new(limits: HandshakeLimits, now: Instant) -> Self {
        InitLimiter {
            offered: Bucket::full(limits.burst, now),
            cookies: Bucket::full(limits.burst * COOKIE_FACTOR, now),
            loaded_until: None,
            global: Bucket::full(limits.burst, now),
            sources: HashMap::new(),
            limits,
        }
    }

    /// Counts one offered initiation (mac1 already checked); true if the
    /// endpoint is under load, i.e. the caller must require a valid mac2.
    pub fn offer(&mut self, now: Instant) -> bool {
        let l = self.limits;
        self.offered.refill(l.per_second, l.burst, now);
        self.offered.take();
        if self.offered.tokens < l.burst / 2.0 {
            self.loaded_until = Some(now + LOAD_HOLD);
        }
        self.loaded_until.is_some_and(|t| now < t)
    }

    /// True if a cookie reply may be sent now.
    pub fn allow_cookie(&mut self, now: Instant) -> bool {
        let l = self.limits;
        let (rate, burst) = (l.per_second * COOKIE_FACTOR, l.burst * COOKIE_FACTOR);
        self.cookies.refill(rate, burst, now);
        self.cookies.take()
    }

    /// True if an initiation may get public-key work now. `proven_src` is
    /// the source address mac2 proved (under load), which is then held to
    /// its own share; `None` when not under load.
    pub fn allow(&mut self, proven_src: Option<IpAddr>, now: Instant) -> bool {
        let l = self.limits;
        self.global.refill(l.per_second, l.burst, now);
        match proven_src {
            Some(src) => {
                if self.sources.len() >= MAX_SOURCES && !self.sources.contains_key(&src) {
                    self.sources.clear();
                }
                let b = self
                    .sources
                    .entry(src)
                    .or_insert_with(|| Bucket::full(l.per_source_burst, now));
                b.refill(l.per_source_per_second, l.per_source_burst, now);
                if !b.take() {
                    return false;
                }
            }
            None if !self.sources.is_empty() => self.sources.clear(),
            None => {}
        }
        self.global.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limits() -> HandshakeLimits {
        HandshakeLimits {
            per_second: 100.0,
            burst: 20.0,
            per_source_per_second: 5.0,
            per_source_burst: 2.0,
        }
    }

    #[test]
    fn load_starts_at_half_the_burst_and_holds() {
        let t0 = Instant::now();
        let mut l = InitLimiter::new(limits(), t0);
        // 20 → 10 tokens: the 11th offer at one instant leaves 9 < 10.
        let calm: Vec<bool> = (0..11).map(|_| l.offer(t0)).collect();
        assert!(calm[..10].iter().all(|&x| !x), "{calm:?}");
        assert!(calm[10]);
        // The bucket refills within 0.2 s, but the load holds for LOAD_HOLD.
        let t1 = t0 + Duration::from_millis(500);
        assert!(l.offer(t1));
        assert!(!l.offer(t0 + LOAD_HOLD + Duration::from_millis(1)));
    }

    #[test]
    fn cookie_replies_are_capped() {
        let t0 = Instant::now();
        let mut l = InitLimiter::new(limits(), t0);
        // Burst 20 × 10, then 100/s × 10.
        assert_eq!((0..1000).filter(|_| l.allow_cookie(t0)).count(), 200);
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!((0..1000).filter(|_| l.allow_cookie(t1)).count(), 100);
    }

    #[test]
    fn global_rate_and_per_source_share() {
        let t0 = Instant::now();
        let mut l = InitLimiter::new(limits(), t0);
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        // Not under load, the global burst is the only limit.
        assert_eq!((0..50).filter(|_| l.allow(None, t0)).count(), 20);
        // Under load, a proven source gets its own burst once tokens exist...
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!((0..50).filter(|_| l.allow(Some(a), t1)).count(), 2);
        // ...and another source still gets its share.
        assert!(l.allow(Some(b), t1));
        // A sustained flood (1 per ms for 1 s) is held to the per-source
        // rate, while a quiet source trying every 250 ms always gets through.
        let t2 = t1 + Duration::from_secs(1);
        let (mut flood_ok, mut quiet_ok) = (0, 0);
        for i in 0..1000u64 {
            let t = t2 + Duration::from_millis(i);
            flood_ok += u32::from(l.allow(Some(a), t));
            if i % 250 == 100 {
                quiet_ok += u32::from(l.allow(Some(b), t));
            }
        }
        assert!(flood_ok <= 5 + 2, "the flood got {flood_ok} in 1 s");
        assert_eq!(quiet_ok, 4, "the quiet source got {quiet_ok} of 4");
    }
}
