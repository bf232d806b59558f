//! AEAD seal+open round trip per backend and suite (DESIGN §6 budget:
//! ~0.28 µs for 32 B of ChaCha20-Poly1305 with ring).
//!
//! Benches are named `aead/<backend>/<bytes>` (ChaCha20-Poly1305) and
//! `aead/aes-256-gcm/<bytes>` (ring; run when this CPU offers it). Only backends compiled into
//! net-crypto run: net-bench takes it without default features, so add
//! `--features net-crypto/rustcrypto` to compare against RustCrypto.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use net_crypto::{AeadKey, Backend, Suite, TAG_LEN};

/// Payload sizes: a small RPC, a typical response, a near-jumbo datagram.
const SIZES: [usize; 3] = [32, 1024, 8192];

fn seal_open(c: &mut Criterion) {
    eprintln!("cpu simd level: {}", net_crypto::simd_level());
    let mut group = c.benchmark_group("aead");
    let aad = [0x11u8; 16];
    let mut keys: Vec<(&str, AeadKey)> = Backend::available()
        .iter()
        .map(|&b| {
            eprintln!("{}: {}", b, b.describe());
            (b.name(), AeadKey::new(b, &[7; 32]))
        })
        .collect();
    if Suite::offer(Backend::Ring) & Suite::Aes256Gcm.bit() != 0 {
        let aes = AeadKey::with_suite(Backend::Ring, Suite::Aes256Gcm, &[7; 32]);
        keys.push((Suite::Aes256Gcm.name(), aes));
    }
    for (name, key) in &keys {
        for size in SIZES {
            let mut buf = vec![0xa5u8; size + TAG_LEN];
            let mut counter = 0u64;
            group.throughput(Throughput::Bytes(size as u64));
            group.bench_function(BenchmarkId::new(*name, size), |b| {
                b.iter(|| {
                    counter += 1;
                    let sealed = key
                        .seal_in_place(counter, black_box(&aad), &mut buf, size)
                        .expect("buffer sized for tag");
                    key.open_in_place(counter, &aad, &mut buf[..sealed])
                        .expect("own ciphertext opens")
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, seal_open);
criterion_main!(benches);
