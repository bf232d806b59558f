//! The trust layer's hot and warm paths (DESIGN §5, §6: Ed25519 verify
//! ~29 µs, batch of 64 ~14 µs each).
//!
//! * `trust/fold_apply/{new_node,replace}` — applying a verified
//!   announcement to a capability fold of 1024 nodes (timed in chunks so
//!   that cloning inputs and resetting the fold stay outside the clock).
//! * `trust/gate/{allowed,denied}` — the per-call callee gate against a
//!   fold holding our entry (16-node allow-list) and 1024 remote entries.
//! * `trust/origin_cache/{hit,insert}` — the per-response origin cache at
//!   its default 4096 capacity (insert: a new origin, evicting).
//! * `trust/verify/{single,batch64}` — decode-free verification of 64
//!   announcements, one by one vs `verify_many`; both report per item.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use net_crypto::{Identity, NodeId};
use net_trust::{
    gate, verify_many, AnnouncementBody, Capability, CapabilityFold, FoldLimits, OriginCache,
    SignedAnnouncement, TrustStats, Verified,
};

const NOW: u64 = 1_750_000_000_000;
const NODES: usize = 1024;

fn identity(i: usize) -> Identity {
    let mut seed = [0x5a; 32];
    seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
    Identity::from_seed(&seed)
}

fn body(id: &Identity, seq: u64, allowed: Vec<NodeId>) -> AnnouncementBody {
    AnnouncementBody::new(
        id.node_id(),
        seq,
        NOW,
        300_000,
        vec![
            Capability::for_nodes("nrpc:echo", allowed),
            Capability::open("nrpc:status"),
        ],
    )
}

fn signed(id: &Identity, seq: u64) -> SignedAnnouncement {
    SignedAnnouncement::sign(id, &body(id, seq, vec![])).expect("valid body")
}

/// Times applying `items` (cloned outside the clock) to clones of `base`,
/// `iters` applications in all.
fn time_apply(base: &CapabilityFold, items: &[Verified], iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(items.len() as u64) as usize;
        let batch = items[..n].to_vec();
        let mut fold = base.clone();
        let start = Instant::now();
        for v in batch {
            let _ = black_box(fold.apply(v, NOW));
        }
        total += start.elapsed();
        left -= n as u64;
    }
    total
}

fn fold_apply(c: &mut Criterion) {
    let ids: Vec<Identity> = (0..NODES).map(identity).collect();
    let v1: Vec<Verified> = ids
        .iter()
        .map(|id| signed(id, 1).verify(NOW).unwrap())
        .collect();
    let v2: Vec<Verified> = ids
        .iter()
        .map(|id| signed(id, 2).verify(NOW).unwrap())
        .collect();
    let empty = CapabilityFold::new(FoldLimits::default());
    let mut full = CapabilityFold::new(FoldLimits::default());
    for v in &v1 {
        full.apply(v.clone(), NOW).unwrap();
    }
    let mut group = c.benchmark_group("trust/fold_apply");
    group.bench_function("new_node", |b| {
        b.iter_custom(|iters| time_apply(&empty, &v1, iters))
    });
    group.bench_function("replace", |b| {
        b.iter_custom(|iters| time_apply(&full, &v2, iters))
    });
    group.finish();
}

fn gate_check(c: &mut Criterion) {
    let me = identity(100_000);
    let allowed: Vec<NodeId> = (0..16).map(|i| identity(200_000 + i).node_id()).collect();
    let caller = allowed[11];
    let stranger = identity(300_000).node_id();
    let mut fold = CapabilityFold::new(FoldLimits::default());
    fold.set_local(body(&me, 1, allowed), NOW);
    for i in 0..NODES {
        let id = identity(i);
        fold.apply(signed(&id, 1).verify(NOW).unwrap(), NOW)
            .unwrap();
    }
    let local = me.node_id();
    let mut stats = TrustStats::default();
    let mut group = c.benchmark_group("trust/gate");
    group.bench_function("allowed", |b| {
        b.iter(|| {
            gate(
                &fold,
                &local,
                black_box("echo"),
                black_box(&caller),
                NOW,
                &mut stats,
            )
        })
    });
    group.bench_function("denied", |b| {
        b.iter(|| {
            gate(
                &fold,
                &local,
                black_box("echo"),
                black_box(&stranger),
                NOW,
                &mut stats,
            )
        })
    });
    group.finish();
    assert!(stats.gate_allowed > 0 && stats.gate_denied > 0);
}

fn origin_cache(c: &mut Criterion) {
    let mut cache: OriginCache<u64> = OriginCache::default();
    let cap = cache.capacity() as u64;
    for k in 0..cap {
        cache.insert(k.wrapping_mul(0x9e37_79b9_7f4a_7c15), k);
    }
    let mut group = c.benchmark_group("trust/origin_cache");
    let mut i = 0u64;
    group.bench_function("hit", |b| {
        b.iter(|| {
            i = (i + 1) % cap;
            black_box(cache.get(i.wrapping_mul(0x9e37_79b9_7f4a_7c15)).copied())
        })
    });
    let mut next = cap;
    group.bench_function("insert", |b| {
        b.iter(|| {
            next += 1;
            cache.insert(black_box(next.wrapping_mul(0x9e37_79b9_7f4a_7c15)), next);
        })
    });
    group.finish();
    assert_eq!(cache.len() as u64, cap);
}

fn verify(c: &mut Criterion) {
    let items: Vec<SignedAnnouncement> = (0..64).map(|i| signed(&identity(i), 1)).collect();
    let mut group = c.benchmark_group("trust/verify");
    group.sample_size(20);
    group.throughput(Throughput::Elements(items.len() as u64));
    group.bench_function("single", |b| {
        b.iter(|| {
            for s in &items {
                black_box(s.verify(NOW).unwrap());
            }
        })
    });
    let mut stats = TrustStats::default();
    group.bench_function("batch64", |b| {
        b.iter(|| black_box(verify_many(&items, NOW, &mut stats)))
    });
    group.finish();
    assert!(stats.batch_verifies > 0 && stats.batch_fallbacks == 0);
}

criterion_group!(benches, fold_apply, gate_check, origin_cache, verify);
criterion_main!(benches);
