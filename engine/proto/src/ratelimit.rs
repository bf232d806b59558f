//! Handshake initiation rate limiting (WireGuard-style), so a flood of
//! initiations cannot turn the responder's Diffie-Hellman work into a
//! denial of service for established sessions.
//!
//! Two token buckets, consulted after the cheap checks (size, mac1) and
//! before any public-key work:
//! * a global bucket caps initiations processed per second by this
//!   endpoint (default 1 000/s, burst 200: ~0.4 s of CPU per second at
//!   worst, leaving the data path its core);
//! * under load (global bucket below half), a per-source bucket
//!   (default 20/s, burst 10) keeps one address from taking the whole
//!   budget. Its table is bounded; when full, it is cleared (a flood of
//!   spoofed sources then only meets the global cap).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

/// Most source addresses tracked at once.
const MAX_SOURCES: usize = 4096;

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
    global: Bucket,
    sources: HashMap<IpAddr, Bucket>,
}

impl InitLimiter {
    pub fn new(limits: HandshakeLimits, now: Instant) -> Self {
        InitLimiter {
            global: Bucket::full(limits.burst, now),
            sources: HashMap::new(),
            limits,
        }
    }

    /// True if an initiation from `src` may be processed now.
    pub fn allow(&mut self, src: IpAddr, now: Instant) -> bool {
        let l = self.limits;
        self.global.refill(l.per_second, l.burst, now);
        let under_load = self.global.tokens < l.burst / 2.0;
        if under_load {
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
        } else if !self.sources.is_empty() {
            self.sources.clear();
        }
        self.global.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn global_rate_and_per_source_under_load() {
        let t0 = Instant::now();
        let limits = HandshakeLimits {
            per_second: 100.0,
            burst: 20.0,
            per_source_per_second: 5.0,
            per_source_burst: 2.0,
        };
        let mut l = InitLimiter::new(limits, t0);
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        // Not under load at first: one source may use the global burst until
        // it falls below half (11 takes: 20 → 9 tokens); from then on `a`
        // gets only its per-source burst (2).
        let first: usize = (0..50).filter(|_| l.allow(a, t0)).count();
        assert_eq!(first, 11 + 2);
        // Another source still gets its own share.
        assert!(l.allow(b, t0));
        // After a second, the global bucket has refilled.
        let t1 = t0 + Duration::from_secs(1);
        assert!(l.allow(a, t1));
        // A sustained flood (1 per ms for 1 s) is held to the global rate...
        let t2 = t1 + Duration::from_secs(1);
        let (mut flood_ok, mut quiet_ok) = (0, 0);
        for i in 0..1000u64 {
            let t = t2 + Duration::from_millis(i);
            flood_ok += u32::from(l.allow(a, t));
            // ...while a quiet source trying every 100 ms still gets through.
            if i % 100 == 50 {
                quiet_ok += u32::from(l.allow(b, t));
            }
        }
        assert!(flood_ok <= 100 + 20, "the flood got {flood_ok} in 1 s");
        assert!(quiet_ok >= 8, "the quiet source got {quiet_ok} of 10");
    }
}
