//! Path-MTU discovery for one session: datagram packetization layer PMTUD
//! (RFC 8899), sans-IO.
//!
//! A session starts at the base size, 1 200 bytes, which any IPv4 or IPv6
//! path carries, and searches upward to its ceiling (the smaller of our
//! `max_datagram` and the peer's) with probe packets: a PING padded to the
//! candidate size. An acknowledged probe raises the validated size, the
//! session's datagram budget; a size whose probe is lost `MAX_PROBES` times
//! in a row bounds the search from above. The search is a binary search
//! that stops when the bounds are within `SEARCH_GAP` bytes. Loopback's
//! large datagrams are found by the same search (no special case by
//! address); on an Ethernet path it ends at the interface MTU (the engine's
//! sockets set `IP_PMTUDISC_PROBE`, so an oversized probe is refused, never
//! fragmented).
//!
//! A path that shrinks is caught by black-hole detection: when
//! `BLACK_HOLE_LOSSES` packets above the base size are lost with none
//! acknowledged after them (small ones still arrive), or probe timeouts
//! fire `BLACK_HOLE_PTOS` times in a row (nothing arrives), with a
//! validated size above the base, the size falls back to the base and the
//! search starts again below the old size. A finished search is repeated after
//! `RAISE_INTERVAL`, at the next packet sent (RFC 8899 §5.1.1
//! `PMTU_RAISE_TIMER`), in case the path grew.
//!
//! Call contract: [`probe_due`](PathMtu::probe_due) before building a
//! packet; [`on_probe_acked`](PathMtu::on_probe_acked) /
//! [`on_probe_lost`](PathMtu::on_probe_lost) exactly once per probe sent;
//! [`on_evidence`](PathMtu::on_evidence) after losses and probe timeouts.

use std::time::{Duration, Instant};

/// RFC 8899 `BASE_PLPMTU` for a QUIC-like protocol: the size every path
/// must carry (IPv6's minimum MTU less headers).
pub const BASE_DATAGRAM: usize = 1200;
/// RFC 8899 `MAX_PROBES`.
const MAX_PROBES: u8 = 3;
/// The search ends when the bounds are closer than this.
const SEARCH_GAP: usize = 16;
/// RFC 8899 §5.1.1 `PMTU_RAISE_TIMER`.
const RAISE_INTERVAL: Duration = Duration::from_secs(600);
/// Consecutive probe timeouts that mean a black hole (or a dead peer:
/// either way the base size is the safe choice).
const BLACK_HOLE_PTOS: u32 = 3;
/// Packets above the base size lost, none acknowledged after them, that
/// mean a black hole while smaller packets still get through.
const BLACK_HOLE_LOSSES: u32 = 6;

/// One session's path-MTU state.
#[derive(Debug, Clone)]
pub(crate) struct PathMtu {
    /// Validated size: the largest datagram the session sends.
    current: usize,
    /// Lower search bound: the largest size known to work.
    lo: usize,
    /// Upper search bound: no size above it is tried.
    hi: usize,
    /// The largest size the session may ever use.
    ceiling: usize,
    /// A probe of this size is in flight.
    in_flight: Option<usize>,
    /// Consecutive lost probes of the current candidate.
    fails: u8,
    /// When a finished search is repeated (`None` while searching).
    raise_at: Option<Instant>,
}

impl PathMtu {
    /// A path starting at `base`, searching up to `ceiling`.
    pub fn new(base: usize, ceiling: usize) -> Self {
        let base = base.min(ceiling);
        PathMtu {
            current: base,
            lo: base,
            hi: ceiling,
            ceiling,
            in_flight: None,
            fails: 0,
            raise_at: None,
        }
    }

    /// The validated datagram size.
    pub fn current(&self) -> usize {
        self.current
    }

    /// The next size to try, while searching.
    fn candidate(&self) -> Option<usize> {
        (self.raise_at.is_none() && self.hi >= self.lo + SEARCH_GAP)
            .then(|| self.lo + (self.hi - self.lo).div_ceil(2))
    }

    /// Whether a probe should go out at the next transmit opportunity
    /// (not time-dependent: a finished search waits for
    /// [`probe_due`](Self::probe_due) at a packet that goes out anyway).
    pub fn wants_probe(&self) -> bool {
        self.in_flight.is_none() && self.candidate().is_some()
    }

    /// The size of a probe to send now, if one is due and fits `room`
    /// bytes; marks it in flight.
    pub fn probe_due(&mut self, now: Instant, room: usize) -> Option<usize> {
        if self.in_flight.is_some() {
            return None;
        }
        if self.raise_at.is_some_and(|t| now >= t) {
            // Search upward again from what works.
            self.raise_at = None;
            self.hi = self.ceiling;
        }
        let size = self.candidate().filter(|&s| s <= room)?;
        self.in_flight = Some(size);
        Some(size)
    }

    /// A probe of `size` was acknowledged: the path carries it.
    pub fn on_probe_acked(&mut self, size: usize, now: Instant) {
        if self.in_flight == Some(size) {
            self.in_flight = None;
        }
        if size > self.current {
            self.current = size;
        }
        if size > self.lo {
            self.lo = size;
            self.hi = self.hi.max(size);
            self.fails = 0;
        }
        self.check_done(now);
    }

    /// A probe of `size` was declared lost (or its probe timer fired).
    pub fn on_probe_lost(&mut self, size: usize, now: Instant) {
        if self.in_flight != Some(size) {
            return;
        }
        self.in_flight = None;
        if size <= self.lo {
            return;
        }
        self.fails += 1;
        if self.fails >= MAX_PROBES {
            self.fails = 0;
            self.hi = size - 1;
        }
        self.check_done(now);
    }

    fn check_done(&mut self, now: Instant) {
        if self.raise_at.is_none() && self.hi < self.lo + SEARCH_GAP {
            self.raise_at = Some(now + RAISE_INTERVAL);
        }
    }

    /// Black-hole evidence: `ptos` probe timeouts in a row, `losses` large
    /// packets lost with none acknowledged after them. At either threshold
    /// with a size above the base, fall back to the base and search again
    /// below the size that stopped working. Returns whether the size fell.
    pub fn on_evidence(&mut self, (ptos, losses): (u32, u32), base: usize) -> bool {
        if (ptos < BLACK_HOLE_PTOS && losses < BLACK_HOLE_LOSSES) || self.current <= base {
            return false;
        }
        let lost = self.current;
        self.current = base;
        self.lo = base;
        self.hi = lost - 1;
        self.in_flight = None;
        self.fails = 0;
        self.raise_at = None;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the search against a path carrying datagrams up to `mtu`;
    /// returns the validated size and the probes sent.
    fn search(p: &mut PathMtu, mtu: usize, now: Instant) -> (usize, u32) {
        let mut probes = 0;
        while let Some(size) = p.probe_due(now, usize::MAX) {
            probes += 1;
            if size <= mtu {
                p.on_probe_acked(size, now);
            } else {
                p.on_probe_lost(size, now);
            }
            assert!(probes < 100, "the search ends");
        }
        (p.current(), probes)
    }

    #[test]
    fn the_search_finds_an_ethernet_path_and_loopback_alike() {
        let now = Instant::now();
        let mut eth = PathMtu::new(BASE_DATAGRAM, 16_384);
        let (size, probes) = search(&mut eth, 1472, now);
        assert!((1472 - SEARCH_GAP..=1472).contains(&size), "{size}");
        assert!(probes <= 40, "{probes} probes");
        assert!(!eth.wants_probe(), "done until the raise timer");
        let mut lo = PathMtu::new(BASE_DATAGRAM, 16_384);
        let (size, _) = search(&mut lo, 65_535, now);
        assert!(size > 16_384 - SEARCH_GAP, "{size}");
        // A path no larger than the base: nothing to search.
        let mut tiny = PathMtu::new(BASE_DATAGRAM, BASE_DATAGRAM);
        assert_eq!(tiny.probe_due(now, usize::MAX), None);
    }

    #[test]
    fn a_shrinking_path_falls_back_to_the_base_and_searches_below_the_old_size() {
        let now = Instant::now();
        let mut p = PathMtu::new(BASE_DATAGRAM, 16_384);
        search(&mut p, 9000, now);
        assert!(p.current() > 8900);
        assert!(
            !p.on_evidence((2, 0), BASE_DATAGRAM),
            "two timeouts are not a black hole"
        );
        assert!(!p.on_evidence((0, 5), BASE_DATAGRAM), "nor five losses");
        assert!(p.on_evidence((0, 6), BASE_DATAGRAM));
        assert_eq!(p.current(), BASE_DATAGRAM);
        let (size, _) = search(&mut p, 1400, now);
        assert!((1400 - SEARCH_GAP..=1400).contains(&size), "{size}");
        // The raise timer searches upward again later.
        assert_eq!(p.probe_due(now + Duration::from_secs(1), usize::MAX), None);
        assert!(p.probe_due(now + RAISE_INTERVAL, usize::MAX).is_some());
    }

    #[test]
    fn one_lost_probe_is_not_enough_to_give_up_a_size() {
        let now = Instant::now();
        let mut p = PathMtu::new(BASE_DATAGRAM, 2000);
        let first = p.probe_due(now, usize::MAX).unwrap();
        p.on_probe_lost(first, now);
        assert_eq!(p.probe_due(now, usize::MAX), Some(first), "tried again");
        p.on_probe_acked(first, now);
        assert_eq!(p.current(), first);
        // A late acknowledgement of an old probe still counts.
        let next = p.probe_due(now, usize::MAX).unwrap();
        p.on_probe_lost(next, now);
        p.on_probe_acked(next, now);
        assert_eq!(p.current(), next);
    }
}
