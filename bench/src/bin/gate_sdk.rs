//! The CI gate's SDK point: `gate_sdk N` makes N unary echo calls (c1,
//! 32 B) through the public API — `net::Mesh::call` awaited on a tokio
//! current-thread runtime — against a second mesh in this process, over
//! an in-process network (`MemNet`: no sockets, so no kernel in the count). `scripts/bench-gate.sh` counts its instructions with
//! `valgrind --tool=callgrind` for two values of N and divides the
//! difference by the difference of N, which cancels start-up, handshake
//! and shutdown.
//!
//! Unlike `gate_calls` (the protocol core alone, virtual time), this path
//! has threads, sockets and a clock, so its count is not exact: both
//! meshes park at once when idle (`spin` 0, no spin yield), which makes a
//! call's path the same every time — the caller hands the call to the
//! client core and parks, each core wakes for its datagram — but a timer
//! that fires during one run and not another adds work. The gate allows
//! for that spread (docs/BENCHMARKS.md, "CI gate").
#![forbid(unsafe_code)]

use std::time::Duration;

use net::{Identity, MemNet, Mesh, Status};
use net_engine::MeshNodeConfig;

/// The mesh both sides are built from: on `net`, one core, park at once.
fn mesh(seed: u8, net: &MemNet) -> net::MeshBuilder {
    let cfg = MeshNodeConfig::new(Identity::from_seed(&[seed; 32]), [7; 32])
        .with_memory_network(net.clone());
    Mesh::builder()
        .node_config(cfg)
        .cores(1)
        .spin(Duration::ZERO)
        .spin_yield(false)
        .pin(false)
}

fn main() {
    let total: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000);
    let net = MemNet::new();
    let server = mesh(1, &net).build().expect("server config");
    server.start().expect("server start");
    let _echo = server
        .serve_rpc("echo", |_, body, out| {
            out.extend_from_slice(body);
            Status::OK
        })
        .expect("serve echo");
    let addr = server.local_addr().expect("server started");
    let identity = server.engine().config().public_identity();
    let client = mesh(2, &net)
        .peer(addr, identity)
        .build()
        .expect("client config");
    client.start().expect("client start");
    let peer = server.node_id();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let body = [0x5au8; 32];
    let done = rt.block_on(async {
        let mut done = 0u64;
        for _ in 0..total {
            let reply = client.call(peer, "echo", &body[..]).await.expect("call");
            assert_eq!(&reply[..], &body[..], "bad echo");
            done += 1;
        }
        done
    });
    client
        .shutdown(Duration::from_secs(1))
        .expect("client shutdown");
    server
        .shutdown(Duration::from_secs(1))
        .expect("server shutdown");
    println!("{done} calls");
}
