//! Handshake initiation rate limiting (WireGuard-style), so a flood of
//! initiations cannot turn the responder's Diffie-Hellman work into a
//! denial of service for established sessions or for honest initiators.
//!
//! Consulted after the cheap checks (size, mac1) and before any public-key
//! work, with token buckets:
//! * an *offered* bucket counts every initiation that passed mac1; when it
//!   falls below half, the endpoint is *under load*, and stays so for
//!   [`LOAD_HOLD`] after the last such moment. Under load, initiations
//!   without a valid mac2 get a cookie reply ([`crate::cookie`]) and no
//!   further work;
//! * cookie replies are limited per source address (the per-source rate
//!   below) and in total ([`COOKIE_FACTOR`] × the DH budget): a reply costs
//!   a few µs and a send, and a flood beyond that is dropped after the mac1
//!   check, so the core keeps draining its socket and established sessions
//!   keep their latency. A flooding address gets its share and no more,
//!   so an honest initiator elsewhere still gets its cookie; against a
//!   flood spoofing many addresses only the total applies, and an honest
//!   initiator's attempt then gets a cookie with probability ≈ the cap over
//!   the offered rate;
//! * a global bucket caps initiations given public-key work per second
//!   (default 1 000/s, burst 200: ~0.2 s of CPU per second at worst,
//!   leaving the data path its core);
//! * under load, a per-source bucket (default 20/s, burst 10), keyed by the
//!   address that mac2 proved, keeps one address from taking the whole
//!   budget.
//!
//! Per-source tables are bounded; a full one is cleared.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Most source addresses tracked at once.
const MAX_SOURCES: usize = 4096;
/// Cookie replies allowed per second in total, as a multiple of the DH
/// budget.
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

    fn take_at(&mut self, rate: f64, burst: f64, now: Instant) -> bool {
        self.refill(rate, burst, now);
        self.take()
    }
}

/// One bucket per source address, at most [`MAX_SOURCES`] of them.
#[derive(Default)]
struct SourceBuckets(HashMap<IpAddr, Bucket>);

impl SourceBuckets {
    fn take(&mut self, src: IpAddr, rate: f64, burst: f64, now: Instant) -> bool {
        if self.0.len() >= MAX_SOURCES && !self.0.contains_key(&src) {
            self.0.clear();
        }
        let b = self
            .0
            .entry(src)
            .or_insert_with(|| Bucket::full(burst, now));
        b.take_at(rate, burst, now)
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

impl HandshakeLimits {
    /// No load control at all: for capacity benchmarks, never production.
    pub fn unlimited() -> Self {
        HandshakeLimits {
            per_second: 1e12,
            burst: 1e12,
            per_source_per_second: 1e12,
            per_source_burst: 1e12,
        }
    }
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

/// A rate and a burst: at most `burst` at once, refilled at `per_second`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimit {
    /// Sustained rate.
    pub per_second: f64,
    /// Most allowed at once.
    pub burst: f64,
}

/// One token bucket under a [`RateLimit`].
pub(crate) struct Limiter {
    limit: RateLimit,
    bucket: Bucket,
}

impl Limiter {
    pub fn new(limit: RateLimit, now: Instant) -> Self {
        Limiter {
            limit,
            bucket: Bucket::full(limit.burst, now),
        }
    }

    /// Takes one token if there is one at `now`.
    pub fn allow(&mut self, now: Instant) -> bool {
        self.bucket
            .take_at(self.limit.per_second, self.limit.burst, now)
    }
}

/// Decides whether an initiation may proceed to public-key work, and
/// whether it may be answered with a cookie.
pub(crate) struct InitLimiter {
    limits: HandshakeLimits,
    offered: Bucket,
    loaded_until: Option<Instant>,
    dh: Bucket,
    dh_sources: SourceBuckets,
    cookies: Bucket,
    cookie_sources: SourceBuckets,
}

impl InitLimiter {
    pub fn new(limits: HandshakeLimits, now: Instant) -> Self {
        InitLimiter {
            offered: Bucket::full(limits.burst, now),
            loaded_until: None,
            dh: Bucket::full(limits.burst, now),
            dh_sources: SourceBuckets::default(),
            cookies: Bucket::full(limits.burst * COOKIE_FACTOR, now),
            cookie_sources: SourceBuckets::default(),
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
        let loaded = self.loaded_until.is_some_and(|t| now < t);
        if !loaded {
            self.dh_sources.0.clear();
            self.cookie_sources.0.clear();
        }
        loaded
    }

    /// True if a cookie reply may be sent to `src` now: within its share,
    /// then within the total.
    pub fn allow_cookie(&mut self, src: IpAddr, now: Instant) -> bool {
        let l = self.limits;
        let per_source = (l.per_source_per_second, l.per_source_burst);
        self.cookie_sources
            .take(src, per_source.0, per_source.1, now)
            && self
                .cookies
                .take_at(l.per_second * COOKIE_FACTOR, l.burst * COOKIE_FACTOR, now)
    }

    /// True if an initiation may get public-key work now. `proven_src` is
    /// the source address mac2 proved (under load), which is then held to
    /// its own share; `None` when not under load.
    pub fn allow(&mut self, proven_src: Option<IpAddr>, now: Instant) -> bool {
        let l = self.limits;
        if let Some(src) = proven_src {
            let (rate, burst) = (l.per_source_per_second, l.per_source_burst);
            if !self.dh_sources.take(src, rate, burst, now) {
                return false;
            }
        }
        self.dh.take_at(l.per_second, l.burst, now)
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
    fn cookie_replies_have_a_per_source_share_and_a_total() {
        let t0 = Instant::now();
        let mut l = InitLimiter::new(limits(), t0);
        let flooder: IpAddr = [10, 0, 0, 9].into();
        // One address: its burst (2), then nothing at the same instant...
        assert_eq!((0..100).filter(|_| l.allow_cookie(flooder, t0)).count(), 2);
        // ...while another address still gets its cookie.
        assert!(l.allow_cookie([10, 0, 0, 1].into(), t0));
        // Many addresses: the total (burst 20 × 10) binds.
        let spoofed = (0..1000u32).filter(|&i| {
            let [_, b, c, d] = i.to_be_bytes();
            l.allow_cookie(IpAddr::from([11, b, c, d]), t0)
        });
        assert_eq!(spoofed.count(), 200 - 3);
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
