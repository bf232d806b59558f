//! The relay's schedule on virtual time: no sockets, no clock.

use super::*;

const MS: Duration = Duration::from_millis(1);

fn roomy() -> Bounds {
    Bounds {
        max_datagrams: 1 << 16,
        max_bytes: 1 << 30,
    }
}

/// One released datagram: when, which way, its first byte pair as a number.
type Out = (Duration, Dir, u16);

/// Feeds `n` datagrams `gap` apart (alternating directions if `both`),
/// datagram `i` carrying `i` in its first two bytes; releases at every
/// arrival and then at each due time until nothing is held.
fn drive(s: &mut Scheduler, n: u16, gap: Duration, both: bool) -> Vec<Out> {
    drive_from(s, Duration::ZERO, n, gap, both)
}

/// [`drive`] with the first arrival at `start`.
fn drive_from(s: &mut Scheduler, start: Duration, n: u16, gap: Duration, both: bool) -> Vec<Out> {
    let mut out = Vec::new();
    let mut body = [0u8; 100];
    for i in 0..n {
        let now = start + gap * u32::from(i);
        s.release_due(now, |d, b| out.push((now, d, num(b))));
        body[..2].copy_from_slice(&i.to_be_bytes());
        let dir = if both && i % 2 == 1 {
            Dir::ToClient
        } else {
            Dir::ToUpstream
        };
        s.handle_datagram(now, dir, &body);
    }
    while let Some(t) = s.poll_timeout() {
        s.release_due(t, |d, b| out.push((t, d, num(b))));
    }
    out
}

fn num(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

fn ids(out: &[Out]) -> Vec<u16> {
    out.iter().map(|o| o.2).collect()
}

#[test]
fn without_impairment_everything_passes_at_once_in_order() {
    let mut s = Scheduler::new(Impairment::default(), roomy(), 1);
    let mut out = Vec::new();
    s.handle_datagram(MS, Dir::ToUpstream, b"ab");
    s.handle_datagram(MS, Dir::ToClient, b"cd");
    assert_eq!(s.poll_timeout(), Some(MS));
    s.release_due(MS, |d, b| out.push((d, b.to_vec())));
    assert_eq!(
        out,
        vec![
            (Dir::ToUpstream, b"ab".to_vec()),
            (Dir::ToClient, b"cd".to_vec())
        ]
    );
    assert_eq!(s.held(), 0);
    let c = s.counters();
    assert_eq!((c.released_to_upstream, c.released_to_client), (1, 1));
    assert_eq!(
        (c.lost, c.duplicated, c.reordered, c.overflow),
        (0, 0, 0, 0)
    );
}

#[test]
fn a_datagram_is_held_exactly_the_delay() {
    let imp = Impairment {
        delay: 40 * MS,
        ..Default::default()
    };
    let mut s = Scheduler::new(imp, roomy(), 1);
    s.handle_datagram(10 * MS, Dir::ToClient, b"x");
    assert_eq!(s.poll_timeout(), Some(50 * MS));
    let mut n = 0;
    s.release_due(50 * MS - Duration::from_nanos(1), |_, _| n += 1);
    assert_eq!(n, 0, "released early");
    s.release_due(50 * MS, |_, _| n += 1);
    assert_eq!(n, 1);
    assert_eq!(s.poll_timeout(), None);
}

fn everything() -> Impairment {
    Impairment {
        delay: 5 * MS,
        jitter: 3 * MS,
        loss: 0.1,
        duplicate: 0.05,
        reorder: 0.1,
        reorder_extra: 2 * MS,
    }
}

#[test]
fn the_same_seed_replays_and_another_seed_differs() {
    let run = |seed| {
        drive(
            &mut Scheduler::new(everything(), roomy(), seed),
            2000,
            MS,
            true,
        )
    };
    let a = run(7);
    assert_eq!(a, run(7));
    assert_ne!(a, run(8));
}

#[test]
fn loss_drops_about_its_probability_and_only_it() {
    for (p, lo, hi) in [(0.0, 0, 0), (0.1, 900, 1100), (1.0, 10_000, 10_000)] {
        let imp = Impairment {
            loss: p,
            ..Default::default()
        };
        let mut s = Scheduler::new(imp, roomy(), 3);
        let out = drive(&mut s, 10_000, MS, false);
        let lost = s.counters().lost;
        assert!((lo..=hi).contains(&lost), "loss {p}: {lost} lost");
        assert_eq!(out.len() as u64, 10_000 - lost);
    }
}

#[test]
fn jitter_delays_within_its_range_and_never_reorders() {
    let imp = Impairment {
        delay: 10 * MS,
        jitter: 4 * MS,
        ..Default::default()
    };
    let mut s = Scheduler::new(imp, roomy(), 5);
    // Arrivals 1 ms apart: jitter alone would reorder many of them.
    let out = drive(&mut s, 1000, MS, true);
    for dir in [Dir::ToUpstream, Dir::ToClient] {
        let mine: Vec<u16> = out.iter().filter(|o| o.1 == dir).map(|o| o.2).collect();
        assert!(mine.windows(2).all(|w| w[0] < w[1]), "{dir:?} out of order");
    }
    let mut spread = (Duration::MAX, Duration::ZERO);
    for &(t, _, i) in &out {
        let held = t - MS * u32::from(i);
        assert!(held >= 10 * MS, "datagram {i} held only {held:?}");
        spread = (spread.0.min(held), spread.1.max(held));
    }
    // Kept in order, a datagram may wait behind its predecessor's jitter
    // but never past the predecessor's latest due time.
    assert!(spread.1 <= 14 * MS, "held up to {:?}", spread.1);
    assert!(spread.1 - spread.0 > 2 * MS, "no jitter seen: {spread:?}");
}

#[test]
fn a_reordered_datagram_is_overtaken_by_later_ones() {
    let imp = Impairment {
        delay: MS,
        reorder: 0.2,
        reorder_extra: 10 * MS,
        ..Default::default()
    };
    let mut s = Scheduler::new(imp, roomy(), 11);
    let out = drive(&mut s, 1000, MS, false);
    let order = ids(&out);
    assert_eq!(order.len(), 1000, "nothing lost");
    // Datagram i was held back iff some later datagram came out before it.
    let overtaken = (0..order.len())
        .filter(|&k| order[k + 1..].iter().any(|&j| j < order[k]))
        .count() as u64;
    let reordered = s.counters().reordered;
    assert!((150..=250).contains(&reordered), "{reordered}");
    let late = (0..order.len())
        .filter(|&k| order[..k].iter().any(|&j| j > order[k]))
        .count() as u64;
    // Each held-back datagram arrives late unless every datagram in the
    // next 10 ms was held back too (or the run ended first).
    assert!(
        late <= reordered && late + 10 >= reordered,
        "{late} of {reordered}"
    );
    assert!(overtaken > 0);
}

#[test]
fn duplicate_sends_a_copy_right_after_the_original() {
    let imp = Impairment {
        duplicate: 1.0,
        delay: 2 * MS,
        ..Default::default()
    };
    let mut s = Scheduler::new(imp, roomy(), 1);
    let out = drive(&mut s, 50, MS, true);
    let order = ids(&out);
    let twice: Vec<u16> = (0..50).flat_map(|i| [i, i]).collect();
    assert_eq!(order, twice);
    assert_eq!(s.counters().duplicated, 50);
    assert_eq!(out[0].0, out[1].0, "the copy is due with its original");
}

#[test]
fn bounds_drop_and_count_the_excess_and_the_pool_does_not_grow() {
    let imp = Impairment {
        delay: 10 * MS,
        ..Default::default()
    };
    let bounds = Bounds {
        max_datagrams: 4,
        max_bytes: 1 << 20,
    };
    let mut s = Scheduler::new(imp, bounds, 1);
    // 1 ms apart with 10 ms delay: 10 would be held at once; 4 may be.
    let out = drive(&mut s, 100, MS, false);
    let c = s.counters();
    assert_eq!(out.len() as u64 + c.overflow, 100);
    assert!(c.overflow >= 60, "{c:?}");
    assert!(s.pool.len() <= 4, "pool grew to {}", s.pool.len());
    // A byte bound: two 100-byte datagrams fit in 250 bytes, a third does not.
    let bytes = Bounds {
        max_datagrams: 100,
        max_bytes: 250,
    };
    let mut s = Scheduler::new(imp, bytes, 1);
    for _ in 0..3 {
        s.handle_datagram(Duration::ZERO, Dir::ToUpstream, &[0; 100]);
    }
    assert_eq!((s.held(), s.counters().overflow), (2, 1));
    s.release_due(10 * MS, |_, _| {});
    assert_eq!((s.held(), s.held_bytes), (0, 0));
}

#[test]
fn buffers_are_reused_once_warm() {
    let imp = Impairment {
        delay: 3 * MS,
        ..Default::default()
    };
    let mut s = Scheduler::new(imp, roomy(), 1);
    drive(&mut s, 100, MS, false);
    let warm: Vec<(usize, *const u8)> = s
        .pool
        .iter()
        .map(|h| (h.bytes.capacity(), h.bytes.as_ptr()))
        .collect();
    drive_from(&mut s, Duration::from_secs(1), 100, MS, false);
    let again: Vec<(usize, *const u8)> = s
        .pool
        .iter()
        .map(|h| (h.bytes.capacity(), h.bytes.as_ptr()))
        .collect();
    assert_eq!(warm, again, "a datagram of a known size allocated");
    assert!(
        warm.len() <= 4,
        "at most delay/gap + 1 held: {}",
        warm.len()
    );
}
