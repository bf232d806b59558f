//! Deterministic workload for the CI gate: `gate_calls N` runs N unary echo
//! calls (c16, 32 B) between two protocol endpoints in this one thread, with
//! virtual time and no IO — so `valgrind --tool=callgrind` counts the same
//! instructions on every run. `scripts/bench-gate.sh` runs it for two values
//! of N and divides the difference, which cancels start-up and handshake.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use net_crypto::Identity;
use net_proto::{CallKind, Endpoint, EndpointConfig, Event, ServiceId, Status};

const CONC: u64 = 16;

fn endpoint(seed: u8, now: Instant) -> Endpoint {
    let mut cfg = EndpointConfig::new(Identity::from_seed(&[seed; 32]), [7; 32]);
    cfg.rng_seed = u64::from(seed);
    let mut ep = Endpoint::new(cfg, now, 1_000_000_000);
    ep.register_service(ServiceId::of("echo"), 1 << 20);
    ep
}

/// Moves every pending datagram from `from` into `to`.
fn shuttle(
    from: &mut Endpoint,
    to: &mut Endpoint,
    from_addr: SocketAddr,
    now: Instant,
    buf: &mut [u8],
) -> bool {
    let mut any = false;
    while let Some(t) = from.poll_transmit(now, buf) {
        to.handle(now, from_addr, &mut buf[..t.len]);
        any = true;
    }
    any
}

fn main() {
    let total: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let (a_addr, b_addr) = (
        SocketAddr::from(([127, 0, 0, 1], 1)),
        SocketAddr::from(([127, 0, 0, 1], 2)),
    );
    let mut now = Instant::now();
    let mut client = endpoint(1, now);
    let mut server = endpoint(2, now);
    let session = client
        .connect(now, server.public_identity(), b_addr)
        .expect("connect");
    let service = ServiceId::of("echo");
    let body = [0x5au8; 32];
    let mut buf = vec![0u8; 65536];
    let (mut issued, mut done) = (0u64, 0u64);
    while done < total {
        while issued < total && issued - done < CONC {
            client
                .call(now, session, service, CallKind::Unary, None, &body)
                .expect("call");
            issued += 1;
        }
        shuttle(&mut client, &mut server, a_addr, now, &mut buf);
        while let Some(ev) = server.poll_event() {
            if let Event::Request {
                session,
                call,
                payload,
                ..
            } = ev
            {
                server
                    .respond(now, session, call, Status::OK, &payload)
                    .expect("respond");
                server.recycle(payload);
            }
        }
        shuttle(&mut server, &mut client, b_addr, now, &mut buf);
        while let Some(ev) = client.poll_event() {
            if let Event::Response {
                status, payload, ..
            } = ev
            {
                assert!(status.is_ok() && payload[..] == body[..], "bad response");
                done += 1;
                client.recycle(payload);
            }
        }
        now += Duration::from_micros(20);
        for ep in [&mut client, &mut server] {
            if ep.poll_timeout().is_some_and(|t| t <= now) {
                ep.handle_timeout(now);
            }
        }
    }
    println!("{done} calls");
}
