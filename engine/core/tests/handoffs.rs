//! Hand-offs per unary round trip, counted on a real loopback run: heap
//! allocations (process-wide counting allocator), syscalls, parks and inbox
//! wakes, per side. Prints the table quoted in docs/ARCHITECTURE.md and
//! asserts the inline-handler targets: zero allocations per call in steady
//! state and at most one wakeup per side per call.

use std::sync::mpsc::sync_channel;
use std::sync::Arc;
use std::time::Duration;

use net_crypto::Identity;
use net_engine::loadgen::{ClosedLoop, LoadReport, LoadSpec};
use net_engine::{CoreStats, DriverChoice, Handler, MeshNode, MeshNodeConfig};
use net_io::alloc_counter::{allocations, CountingAllocator};
use net_proto::{ServiceId, Status};

#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator;

const PSK: [u8; 32] = [7; 32];

fn node(seed: u8, peer: Option<&MeshNode>) -> MeshNode {
    let mut cfg = MeshNodeConfig::new(Identity::from_seed(&[seed; 32]), PSK)
        .with_driver(DriverChoice::from_env().unwrap_or(DriverChoice::Auto))
        .with_pinning(false);
    if let Some(p) = peer {
        cfg = cfg.with_peer(p.local_addr().unwrap(), p.config().public_identity());
    }
    let n = MeshNode::new(cfg).unwrap();
    n.start().unwrap();
    n
}

fn run(client: &MeshNode, spec: LoadSpec) -> LoadReport {
    let (tx, rx) = sync_channel(1);
    client
        .run_on_core(0, Box::new(ClosedLoop::new(spec, tx)))
        .unwrap();
    rx.recv_timeout(Duration::from_secs(60))
        .expect("load completes")
}

fn totals(stats: &[CoreStats]) -> (u64, u64, u64) {
    stats.iter().fold((0, 0, 0), |(s, p, w), c| {
        (s + c.io.syscalls, p + c.parks, w + c.inbox_wakes)
    })
}

#[derive(Debug)]
struct PerCall {
    allocations: f64,
    client_syscalls: f64,
    server_syscalls: f64,
    client_parks: f64,
    server_parks: f64,
    inbox_wakes: f64,
}

fn measure(concurrency: usize) -> PerCall {
    let server = node(1, None);
    let echo: Arc<net_engine::SyncHandler> = Arc::new(|_, body: &[u8], out: &mut Vec<u8>| {
        out.extend_from_slice(body);
        Status::OK
    });
    server
        .serve("echo", Handler::Sync(echo), Default::default())
        .unwrap();
    let client = node(2, Some(&server));
    let spec = |total| {
        LoadSpec::calls(
            server.node_id(),
            ServiceId::of("echo"),
            concurrency,
            32,
            total,
        )
    };
    // Warm up: handshake, pools, map capacities.
    let warm = run(&client, spec(20_000));
    assert_eq!(warm.errors, 0);
    const N: u64 = 20_000;
    let (cs0, cp0, cw0) = totals(&client.stats());
    let (ss0, sp0, _) = totals(&server.stats());
    let a0 = allocations();
    let report = run(&client, spec(N));
    let a1 = allocations();
    let (cs1, cp1, cw1) = totals(&client.stats());
    let (ss1, sp1, _) = totals(&server.stats());
    assert_eq!(report.ok, N);
    let n = N as f64;
    PerCall {
        // Includes the run's own set-up (its histogram, the app box).
        allocations: (a1 - a0) as f64 / n,
        client_syscalls: (cs1 - cs0) as f64 / n,
        server_syscalls: (ss1 - ss0) as f64 / n,
        client_parks: (cp1 - cp0) as f64 / n,
        server_parks: (sp1 - sp0) as f64 / n,
        inbox_wakes: (cw1 - cw0) as f64 / n,
    }
}

#[test]
fn inline_handler_hand_offs_per_call() {
    for c in [1, 128] {
        let p = measure(c);
        println!("c{c}: {p:?}");
        assert!(
            p.allocations < 0.01,
            "c{c}: {} allocations per call",
            p.allocations
        );
        assert!(
            p.client_parks <= 1.0 && p.server_parks <= 1.0,
            "c{c}: more than one wakeup per side per call: {p:?}"
        );
        // Engine-mode calls never cross threads, so nobody needs to wake a core.
        assert!(p.inbox_wakes < 0.01, "c{c}: {p:?}");
        if c == 128 {
            // Batching: many calls share each receive and each send.
            assert!(
                p.client_syscalls < 1.0 && p.server_syscalls < 1.0,
                "c128 not batched: {p:?}"
            );
        }
    }
}
