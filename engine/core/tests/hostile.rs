//! Hostile peers against a running node on loopback: a million random and
//! mutated datagrams, a handshake-initiation flood, and authenticated peers
//! that break flow control — while a legitimate client keeps calling.

use net_testkit::eventually;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::Arc;
use std::time::{Duration, Instant};

use net_crypto::Identity;
use net_engine::{
    CallEvents, CallHandle, Handler, IncomingCall, MeshNode, MeshNodeConfig, ServeOptions,
};
use net_proto::{CallKind, ServiceId, Status};

const PSK: [u8; 32] = [5; 32];

fn server() -> MeshNode {
    let n = MeshNode::new(MeshNodeConfig::new(Identity::from_seed(&[30; 32]), PSK)).unwrap();
    n.start().unwrap();
    let echo: Arc<net_engine::SyncHandler> = Arc::new(|_, b: &[u8], out: &mut Vec<u8>| {
        out.extend_from_slice(b);
        Status::OK
    });
    n.serve("echo", Handler::Sync(echo), ServeOptions::default())
        .unwrap();
    n
}

fn client(seed: u8, server: &MeshNode, hostile: bool) -> MeshNode {
    let mut cfg = MeshNodeConfig::new(Identity::from_seed(&[seed; 32]), PSK).with_peer(
        server.local_addr().unwrap(),
        server.config().public_identity(),
    );
    if hostile {
        cfg = cfg.testing_ignore_credit();
    }
    let n = MeshNode::new(cfg).unwrap();
    n.start().unwrap();
    n
}

struct Done(
    std::sync::mpsc::SyncSender<(Status, Option<CallHandle>)>,
    Option<CallHandle>,
);
impl CallEvents for Done {
    fn opened(&mut self, h: CallHandle) {
        self.1 = Some(h.clone());
        let _ = self.0.try_send((Status::OK, Some(h)));
    }
    fn complete(&mut self, status: Status, _: &[u8]) {
        let _ = self.0.try_send((status, None));
    }
}

/// One echo call; its status and latency.
fn echo(from: &MeshNode, to: &MeshNode) -> (Status, Duration) {
    let (tx, rx) = sync_channel(2);
    let t = Instant::now();
    from.call(
        to.node_id(),
        ServiceId::of("echo"),
        CallKind::Unary,
        None,
        b"ping".to_vec().into(),
        Box::new(Done(tx, None)),
    )
    .unwrap();
    loop {
        // A hang guard, not a latency bound: on a loaded 2-core machine a
        // call queued behind a flood has taken seconds.
        match rx
            .recv_timeout(Duration::from_secs(120))
            .expect("call completes")
        {
            (_, Some(_)) => continue,
            (s, None) => return (s, t.elapsed()),
        }
    }
}

fn sum(n: &MeshNode, f: impl Fn(&net_proto::EndpointStats) -> u64) -> u64 {
    n.stats().iter().map(|s| f(&s.proto)).sum()
}

/// Small deterministic PRNG for the garbage (xorshift64*).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Random bytes, and datagrams shaped like each packet type (right type,
/// version and length, random content) so they get past the first checks.
fn garbage(rng: &mut Rng, buf: &mut [u8; 256]) -> usize {
    for chunk in buf.chunks_mut(8) {
        let r = rng.next().to_le_bytes();
        chunk.copy_from_slice(&r[..chunk.len()]);
    }
    let kind = rng.next() % 6;
    let len = match kind {
        0 => (rng.next() % 256) as usize,
        1 => net_proto::INIT_LEN,
        2 => net_proto::RESP_LEN,
        3 => net_proto::COOKIE_REPLY_LEN,
        _ => 32 + (rng.next() % 200) as usize,
    };
    if kind > 0 {
        buf[0] = [1, 1, 2, 3, 4, 4][kind as usize];
        buf[1] = 1;
        buf[2] = 0;
        buf[3] = 0;
    }
    len
}

#[test]
fn a_million_garbage_datagrams_do_not_disturb_legitimate_calls() {
    let s = server();
    let c = client(31, &s, false);
    assert_eq!(echo(&c, &s).0, Status::OK);
    let stop = Arc::new(AtomicBool::new(false));
    let target: SocketAddr = s.local_addr().unwrap();
    let sprayer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
            let (mut rng, mut buf) = (Rng(0x9e37_79b9_7f4a_7c15), [0u8; 256]);
            for _ in 0..1_000_000 {
                let n = garbage(&mut rng, &mut buf);
                let _ = sock.send_to(&buf[..n], target);
            }
            stop.store(true, Ordering::Relaxed);
        })
    };
    let (mut ok, mut bad) = (0, 0);
    while !stop.load(Ordering::Relaxed) {
        match echo(&c, &s).0 {
            Status::OK => ok += 1,
            _ => bad += 1,
        }
    }
    sprayer.join().unwrap();
    assert_eq!(bad, 0, "legitimate calls failed during the spray");
    assert!(ok > 100, "legitimate calls kept flowing ({ok})");
    let rx = sum(&s, |p| p.datagrams_rx);
    let dropped = sum(&s, |p| {
        p.drop_malformed
            + p.drop_unknown_index
            + p.drop_replay
            + p.drop_decrypt
            + p.handshake_mac1
            + p.handshake_malformed
            + p.handshake_unknown_index
    });
    assert!(rx > 100_000, "the spray reached the node ({rx} datagrams)");
    assert!(
        sum(&s, |p| p.drop_malformed) > 0
            && sum(&s, |p| p.drop_unknown_index) > 0
            && sum(&s, |p| p.handshake_mac1) > 0
    );
    // Every garbage datagram that arrived is accounted for by a reason.
    let legit_rx = sum(&s, |p| p.data_packets_rx + p.handshake_resp_tx);
    assert!(
        dropped + legit_rx + 10 >= rx,
        "rx {rx}, dropped {dropped}, legit {legit_rx}"
    );
    assert_eq!(echo(&c, &s).0, Status::OK, "still serving");
}

#[test]
fn a_handshake_flood_keeps_legitimate_latency_bounded() {
    let s = server();
    let c = client(32, &s, false);
    // Baseline latency of the legitimate client.
    let mut base: Vec<Duration> = (0..500).map(|_| echo(&c, &s).1).collect();
    base.sort();
    // Valid-looking initiations (the attacker knows the node's public
    // identity, so mac1 is right): each would cost the node a DH.
    let server_pub = s.config().public_identity();
    let addr = s.local_addr().unwrap();
    let t0 = Instant::now();
    let mut gen = net_proto::Endpoint::new(
        net_proto::EndpointConfig::new(Identity::from_seed(&[33; 32]), [0; 32]),
        t0,
        0,
    );
    let mut buf = vec![0u8; 2048];
    let inits: Vec<Vec<u8>> = (0..1000u64)
        .map(|i| {
            let now = t0 + Duration::from_micros(i);
            gen.connect(now, server_pub, addr).unwrap();
            let t = gen.poll_transmit(now, &mut buf).unwrap();
            buf[..t.len].to_vec()
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let flood = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            // Another loopback address than the legitimate clients', as an
            // attacker would have: cookie replies are shared out per address.
            let sock = UdpSocket::bind("127.0.0.2:0").unwrap();
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for m in &inits {
                    let _ = sock.send_to(m, addr);
                }
                sent += inits.len() as u64;
            }
            sent
        })
    };
    let start = Instant::now();
    let mut during = Vec::new();
    let mut newcomer = None;
    while start.elapsed() < Duration::from_secs(2) {
        let (st, lat) = echo(&c, &s);
        assert_eq!(st, Status::OK);
        during.push(lat);
        if newcomer.is_none() && start.elapsed() > Duration::from_millis(500) {
            // A client that was not connected before the flood still gets
            // in: the node is under load, so it is sent a cookie, and its
            // retry with mac2 is given DH work.
            let n = client(33, &s, false);
            assert_eq!(
                echo(&n, &s).0,
                Status::OK,
                "a new client connects mid-flood"
            );
            newcomer = Some(n);
        }
    }
    stop.store(true, Ordering::Relaxed);
    let newcomer = newcomer.expect("the newcomer ran");
    assert!(
        sum(&newcomer, |p| p.cookie_replies_rx) >= 1,
        "the newcomer went through a cookie round trip"
    );
    let sent = flood.join().unwrap();
    let secs = start.elapsed().as_secs_f64();
    during.sort();
    let p99 = |v: &[Duration]| v[v.len() * 99 / 100];
    let cookies = sum(&s, |p| p.cookie_replies_tx);
    let challenged = cookies + sum(&s, |p| p.cookie_replies_dropped);
    let limited = sum(&s, |p| p.handshake_rate_limited);
    let processed = sum(&s, |p| p.handshake_resp_tx + p.handshake_replay);
    eprintln!(
        "flood: {sent} initiations in {secs:.1} s; {challenged} challenged ({cookies} cookie replies, the rest over the cookie limits), {limited} rate-limited, {processed} processed; legit p99 {:?} (baseline {:?}), {} calls",
        p99(&during),
        p99(&base),
        during.len()
    );
    // Budgets that hold however much CPU the machine gives each thread
    // (the flood's latency effect is a benchmark figure, not asserted here:
    // on a loaded 2-core machine it measured 4 ms to 2.2 s).
    let limits = net_proto::HandshakeLimits::default();
    assert!(
        sent as f64 > 4.0 * limits.per_second * secs,
        "the flood offered more than the node's DH rate ({sent} in {secs:.1} s)"
    );
    assert!(
        challenged > 0,
        "the cookie challenge engaged ({challenged})"
    );
    // DH work never exceeds the limiter's budget (burst + rate × time), and
    // in practice stays near the run-up to load (each core's burst).
    let budget = limits.burst + limits.per_second * secs;
    assert!(
        processed as f64 <= budget,
        "DH work {processed} within the budget {budget:.0}"
    );
}

/// Never answers: calls stay open, so call credit is never returned.
fn sink_service(s: &MeshNode) {
    let h: Arc<net_engine::AsyncHandler> = Arc::new(|call: IncomingCall| {
        std::mem::forget(call.responder);
        struct Sink;
        impl CallEvents for Sink {
            fn complete(&mut self, _: Status, _: &[u8]) {}
        }
        Some(Box::new(Sink) as Box<dyn CallEvents>)
    });
    s.serve(
        "hold",
        Handler::Async(h),
        ServeOptions {
            max_in_flight: Some(1 << 20),
            ..Default::default()
        },
    )
    .unwrap();
}

/// A peer that ignores call credit is disconnected with a typed reason
/// (`ProtocolViolation::CallCredit`, counted in `protocol_violations` and
/// logged); a well-behaved client is unaffected. (Stream credit is granted
/// as messages are delivered, so in-order data cannot exceed it; the
/// receiver side of stream violations is pinned by
/// `net_proto::stream` unit tests.)
#[test]
fn credit_violations_close_only_the_offending_session() {
    let s = server();
    sink_service(&s);
    let good = client(34, &s, false);
    assert_eq!(echo(&good, &s).0, Status::OK);
    // A peer that ignores call credit: 1 500 calls held open > 1 024.
    let bad = client(35, &s, true);
    for _ in 0..1500 {
        let (tx, _rx) = sync_channel(2);
        bad.call(
            s.node_id(),
            ServiceId::of("hold"),
            CallKind::Unary,
            None,
            b"x".to_vec().into(),
            Box::new(Done(tx, None)),
        )
        .unwrap();
    }
    eventually("the violation detected", || {
        sum(&s, |p| p.protocol_violations) > 0
    });
    // The well-behaved client is unaffected.
    for _ in 0..100 {
        assert_eq!(echo(&good, &s).0, Status::OK);
    }
}

/// A peer that sends packets larger than the `max_datagram` the node
/// announced is disconnected (`ProtocolViolation::DatagramTooLarge`);
/// a well-behaved client is unaffected.
#[test]
fn oversized_packets_close_only_the_offending_session() {
    let params = net_proto::TransportParams {
        max_datagram: 1200,
        ..Default::default()
    };
    let s = MeshNode::new(
        MeshNodeConfig::new(Identity::from_seed(&[40; 32]), PSK).with_transport_params(params),
    )
    .unwrap();
    s.start().unwrap();
    let handler: Arc<net_engine::SyncHandler> = Arc::new(|_, b: &[u8], out: &mut Vec<u8>| {
        out.extend_from_slice(b);
        Status::OK
    });
    s.serve("echo", Handler::Sync(handler), ServeOptions::default())
        .unwrap();
    let good = client(41, &s, false);
    assert_eq!(echo(&good, &s).0, Status::OK);
    let bad = client(42, &s, true);
    let (tx, _rx) = sync_channel(2);
    // 1 250 B of payload makes a ~1 300 B datagram: over the announced 1 200.
    bad.call(
        s.node_id(),
        ServiceId::of("echo"),
        CallKind::Unary,
        None,
        vec![1u8; 1250].into(),
        Box::new(Done(tx, None)),
    )
    .unwrap();
    eventually("the oversized packet refused", || {
        sum(&s, |p| p.protocol_violations) > 0
    });
    for _ in 0..50 {
        assert_eq!(echo(&good, &s).0, Status::OK);
    }
}
