//! Failure detector micro-benchmarks: the per-packet `heard` hook and
//! `check_all` over 5 000 tracked peers (the reference system's figures:
//! 14–242 ns per heartbeat, `check_all` ≈ 204 µs at 5 000 nodes).
//!
//! `cargo bench -p net-proto --bench detector`

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use net_crypto::NodeId;
use net_proto::{DetectorConfig, FailureDetector, PeerSlot};

const PEERS: u32 = 5_000;

fn node(n: u32) -> NodeId {
    let mut id = [0u8; 32];
    id[..4].copy_from_slice(&n.to_le_bytes());
    id[4..8].copy_from_slice(&n.wrapping_mul(0x9e37_79b9).to_le_bytes());
    NodeId(id)
}

/// A detector with `PEERS` peers, all heard at `t0`.
fn tracked(t0: Instant) -> (FailureDetector, Vec<PeerSlot>) {
    let mut d = FailureDetector::new(DetectorConfig::default()).expect("default config is valid");
    let slots = (0..PEERS)
        .map(|n| d.track(node(n), t0).expect("below max_peers"))
        .collect();
    (d, slots)
}

fn heard(c: &mut Criterion) {
    let t0 = Instant::now();
    let (mut d, slots) = tracked(t0);
    let mut g = c.benchmark_group("detector_heard");
    // Steady state: an Up peer heard again (the per-packet cost).
    let mut i = 0usize;
    let mut now = t0;
    g.bench_function("up", |b| {
        b.iter(|| {
            i = (i + 1) % slots.len();
            now += Duration::from_nanos(1);
            d.heard(black_box(slots[i]), now);
        })
    });
    // Recovery: a Down peer heard again (state change plus queued event).
    // Each round marks all peers Down untimed, then times `heard` on each.
    g.bench_function("down_to_up", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut done = 0u64;
            while done < iters {
                let (mut d, slots) = tracked(t0);
                d.check_all(t0 + Duration::from_secs(10));
                while d.poll_event().is_some() {}
                let n = (iters - done).min(u64::from(PEERS)) as usize;
                let at = t0 + Duration::from_secs(11);
                let start = Instant::now();
                for &slot in &slots[..n] {
                    d.heard(black_box(slot), at);
                }
                total += start.elapsed();
                done += n as u64;
            }
            total
        })
    });
    g.finish();
}

fn check_all(c: &mut Criterion) {
    let t0 = Instant::now();
    let mut g = c.benchmark_group("detector_check_all_5000");
    // Every peer recently heard: the common case, nothing changes.
    let (mut d, _) = tracked(t0);
    g.bench_function("all_up", |b| {
        b.iter(|| d.check_all(black_box(t0 + Duration::from_secs(1))))
    });
    // Every peer goes Up -> Down at once: 5 000 transitions and events
    // (draining the events is included).
    g.bench_function("all_transition", |b| {
        b.iter_batched_ref(
            || tracked(t0).0,
            |d| {
                d.check_all(black_box(t0 + Duration::from_secs(10)));
                while let Some(event) = d.poll_event() {
                    black_box(event);
                }
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, heard, check_all);
criterion_main!(benches);
