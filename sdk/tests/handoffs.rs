//! Hand-offs per unary call through the public async API (tokio callers,
//! inline server handler), counted on a real loopback run at c128. The
//! numbers are quoted in docs/ARCHITECTURE.md; the bound below is a
//! regression guard (the engine-only path is pinned at zero allocations in
//! engine/core/tests/handoffs.rs).

mod common;

use std::time::Duration;

use net::{Identity, Mesh};
use net_io::alloc_counter::{allocations, CountingAllocator};

#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator;

async fn burst(client: &Mesh, id: net::NodeId, calls: u64) {
    let mut tasks = Vec::new();
    for t in 0..128u64 {
        let c = client.clone();
        tasks.push(tokio::spawn(async move {
            // One body per task, shared (not copied) by each of its calls.
            let body = net::Bytes::copy_from_slice(&t.to_be_bytes());
            for _ in 0..calls / 128 {
                let r = c.call(id, "echo", body.clone()).await.unwrap();
                assert_eq!(r, body);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn sdk_hand_offs_per_call_c128() {
    let (server, _echo) = common::start_echo_server();
    let client = common::start_client_of(
        Mesh::builder()
            .identity(Identity::from_seed(&[2; 32]))
            .psk([7; 32])
            .pin(false),
        &server,
    );
    let id = server.node_id();
    burst(&client, id, 12_800).await;
    const N: u64 = 25_600;
    let (c0, s0) = (client.stats(), server.stats());
    let a0 = allocations();
    burst(&client, id, N).await;
    let a1 = allocations();
    let (c1, s1) = (client.stats(), server.stats());
    let per = |a: u64, b: u64| (b - a) as f64 / N as f64;
    let allocs = per(a0, a1);
    let wakes = c1[0].completion_wakes - c0[0].completion_wakes;
    let batches = c1[0].wake_batches - c0[0].wake_batches;
    println!(
        "sdk c128 per call: allocations {allocs:.2} (process), client syscalls {:.3}, server syscalls {:.3}, client parks {:.3}, server parks {:.3}, client inbox wakes {:.3}; {wakes} completion wakes in {batches} batches",
        per(c0[0].io.syscalls, c1[0].io.syscalls),
        per(s0[0].io.syscalls, s1[0].io.syscalls),
        per(c0[0].parks, c1[0].parks),
        per(s0[0].parks, s1[0].parks),
        per(c0[0].inbox_wakes, c1[0].inbox_wakes),
    );
    // Every call's completion wakes its caller once, and the callers a
    // pass completes are woken together, after the pass (one batch).
    assert_eq!(wakes, N, "one completion wake per call");
    assert!(
        batches * 4 <= wakes,
        "{wakes} wakes in {batches} batches: not batched"
    );
    // 9 before the unary fast path (2026-12-03), 4 with a shared cell and
    // a cancel-only sink, 0.02 with pooled cells, response bodies carved
    // from shared blocks and `Bytes` bodies (same day, fourth sitting):
    // what is left is the burst's 128 task spawns and a new 16 KiB block
    // now and then.
    assert!(allocs < 0.05, "{allocs} allocations per SDK call");
    client.shutdown(Duration::from_secs(1)).unwrap();
    server.shutdown(Duration::from_secs(1)).unwrap();
}
