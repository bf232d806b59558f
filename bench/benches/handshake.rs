//! Noise IKpsk2 handshake cost, sans-IO: the responder processing one
//! initiation (what bounds a server core's handshakes per second), and a
//! whole handshake with both sides on one core.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use net_crypto::Identity;
use net_proto::{Endpoint, EndpointConfig, HandshakeLimits};

const PSK: [u8; 32] = [7; 32];

fn endpoint(seed: u8, now: Instant) -> Endpoint {
    let mut cfg = EndpointConfig::new(Identity::from_seed(&[seed; 32]), PSK);
    cfg.rng_seed = u64::from(seed);
    cfg.max_sessions = usize::MAX;
    cfg.max_half_open = usize::MAX;
    cfg.handshake_limits = HandshakeLimits::unlimited();
    Endpoint::new(cfg, now, 1_000_000_000)
}

fn addr(n: u8) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, n], 4000))
}

fn handshake(c: &mut Criterion) {
    let now = Instant::now();
    let mut buf = vec![0u8; 65536];
    let mut g = c.benchmark_group("handshake");
    // Responder only: a fresh initiation per iteration, built outside the
    // timed part. Time advances 1 µs per iteration so every initiation has
    // a newer timestamp (an older one is a replay).
    let mut client = endpoint(1, now);
    let mut server = endpoint(2, now);
    let server_id = server.public_identity();
    let mut t = now;
    g.bench_function("responder", |b| {
        b.iter_batched(
            || {
                t += Duration::from_micros(1);
                client.connect(t, server_id, addr(2)).expect("connect");
                let tx = client.poll_transmit(t, &mut buf).expect("initiation");
                (t, buf[..tx.len].to_vec())
            },
            |(t, mut init)| {
                server.handle(t, addr(1), &mut init);
                let mut out = [0u8; 256];
                server.poll_transmit(t, &mut out).expect("response")
            },
            criterion::BatchSize::SmallInput,
        )
    });
    g.bench_function("both_sides", |b| {
        let mut client = endpoint(3, now);
        let mut server = endpoint(4, now);
        let server_id = server.public_identity();
        let mut out = vec![0u8; 65536];
        let mut now = now;
        b.iter(|| {
            now += Duration::from_micros(1);
            client.connect(now, server_id, addr(2)).expect("connect");
            let t = client.poll_transmit(now, &mut out).expect("initiation");
            server.handle(now, addr(1), &mut out[..t.len]);
            let t = server.poll_transmit(now, &mut out).expect("response");
            client.handle(now, addr(2), &mut out[..t.len]);
        })
    });
    g.finish();
}

criterion_group!(benches, handshake);
criterion_main!(benches);
