//! The CI gate's SDK point: `gate_sdk N [on-core [CONC]]` makes N unary
//! echo calls (c1,
//! 32 B) through the public API — `net::Mesh::call` awaited on a tokio
//! current-thread runtime — against a second mesh in this process, over
//! an in-process network (`MemNet`: no sockets, so no kernel in the count). `scripts/bench-gate.sh` counts its instructions with
//! `valgrind --tool=callgrind` for two values of N and divides the
//! difference by the difference of N, which cancels start-up, handshake
//! and shutdown. With `on-core` the calls are made from a future spawned
//! on the client's engine core (`Mesh::spawn_on_core`) instead, by CONC
//! tasks (default 1): not gated, for profiles.
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
    let on_core = std::env::args().nth(2).as_deref() == Some("on-core");
    let conc: u64 = std::env::args()
        .nth(3)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1);
    let calls = |n: u64| {
        let client = client.clone();
        async move {
            // Shared, not copied, per call: what a zero-allocation caller does.
            let body = net::Bytes::from_static(&[0x5a; 32]);
            for _ in 0..n {
                let reply = client.call(peer, "echo", body.clone()).await.expect("call");
                assert_eq!(&reply[..], &body[..], "bad echo");
            }
            n
        }
    };
    let done: u64 = if on_core {
        let tasks: Vec<_> = (0..conc)
            .map(|_| {
                client
                    .spawn_on_core(0, calls(total / conc))
                    .expect("spawn on core")
            })
            .collect();
        rt.block_on(async {
            let mut done = 0;
            for t in tasks {
                done += t.await.expect("on-core task");
            }
            done
        })
    } else {
        rt.block_on(calls(total))
    };
    if std::env::var_os("GATE_SDK_STATS").is_some() {
        print_stats(&[("client", &client), ("server", &server)], done);
    }
    client
        .shutdown(Duration::from_secs(1))
        .expect("client shutdown");
    server
        .shutdown(Duration::from_secs(1))
        .expect("server shutdown");
    println!("{done} calls");
}

/// Per-call counters of each mesh's cores, on stderr (`GATE_SDK_STATS=1`).
fn print_stats(meshes: &[(&str, &Mesh)], done: u64) {
    let per = |x: u64| x as f64 / done as f64;
    for (who, m) in meshes {
        for st in m.stats() {
            eprintln!(
                "{who} core {}: per call {:.3} datagrams out, {:.3} in, {:.3} loops, {:.3} parks, {:.3} task polls, {:.3} inbox wakes",
                st.core,
                per(st.io.tx_datagrams),
                per(st.io.rx_datagrams),
                per(st.loops),
                per(st.parks),
                per(st.task_polls),
                per(st.inbox_wakes),
            );
        }
    }
}
