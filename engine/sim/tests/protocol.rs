//! Protocol behaviour on the simulated network: packet economy, reliability
//! under loss, integrity, replay, handshake failures, rekey and streaming.

mod support;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use net_proto::{CallKind, Cause, CloseReason, HandshakeError, Status};
use net_sim::{LinkConfig, Sim};
use support::*;

fn server_identity() -> net_crypto::PublicIdentity {
    identity(SERVER).public()
}

fn start(sim: &mut Sim<RpcNode>, total: u64, concurrency: usize, payload: usize) {
    let now = sim.now();
    sim.node_mut(addr(CLIENT)).start_calls(
        now,
        server_identity(),
        addr(SERVER),
        total,
        concurrency,
        payload,
    );
}

fn run_to_completion(sim: &mut Sim<RpcNode>, limit: Duration) {
    sim.run_until(limit, |s| s.node(addr(CLIENT)).done())
        .unwrap_or_else(|e| {
            panic!(
                "calls did not complete: {e}; completed {}",
                sim.node(addr(CLIENT)).client.completed
            )
        });
}

fn assert_exactly_once(sim: &Sim<RpcNode>, total: u64) {
    let client = &sim.node(addr(CLIENT)).client;
    let server = &sim.node(addr(SERVER)).server;
    assert_eq!(client.completed, total);
    assert_eq!(client.mismatches, 0, "a response did not match its request");
    assert_eq!(
        client.statuses.get(&Status::OK.get()),
        Some(&total),
        "statuses: {:?}",
        client.statuses
    );
    assert_eq!(
        server.by_tag.len() as u64,
        total,
        "every call reached the handler"
    );
    assert!(
        server.by_tag.values().all(|&n| n == 1),
        "a handler ran twice"
    );
    assert!(server.invocations.values().all(|&n| n == 1));
}

/// (a) On a clean link a unary call costs exactly two packets: the request
/// and the response, with ACKs riding on them.
#[test]
fn unary_call_is_two_packets_on_a_clean_link() {
    let mut sim = pair(1, PSK);
    let data_packets = Rc::new(RefCell::new(0u64));
    let counter = data_packets.clone();
    sim.set_tap(Box::new(move |_, _, _, bytes| {
        if packet_type(bytes) == 4 {
            *counter.borrow_mut() += 1;
        }
    }));
    const N: u64 = 1000;
    start(&mut sim, N, 1, 32);
    run_to_completion(&mut sim, Duration::from_secs(10));
    assert_exactly_once(&sim, N);
    // Counted up to the moment the last response was delivered; the
    // path-MTU search's probes (a handful, at the start) come on top.
    let probes: u64 = [CLIENT, SERVER]
        .iter()
        .map(|n| sim.node(addr(*n)).ep.stats().pmtu_probes_tx)
        .sum();
    assert!(probes > 0 && probes < 40, "{probes} probes");
    assert_eq!(
        *data_packets.borrow(),
        2 * N + probes,
        "request + response per call"
    );
    for n in [CLIENT, SERVER] {
        assert_eq!(
            sim.node(addr(n)).ep.stats().ack_only_tx,
            0,
            "no standalone ACK while calls flow"
        );
    }
    // After the last call, the delayed-ACK timer sends one ACK, not more.
    sim.run_for(Duration::from_secs(1)).unwrap();
    let acks: u64 = [CLIENT, SERVER]
        .iter()
        .map(|n| sim.node(addr(*n)).ep.stats().ack_only_tx)
        .sum();
    assert_eq!(acks, 1);
}

/// (b) 10 % loss with reordering and duplication: every call completes, its
/// handler ran exactly once, and its response matches its request.
#[test]
fn lossy_link_exactly_once_for_seeds_0_to_50() {
    for seed in 0..=50 {
        let mut sim = pair(seed, PSK);
        sim.set_default_link(
            LinkConfig::lossy(0.10)
                .with_duplicate(0.05)
                .with_reorder(0.10, Duration::from_micros(300))
                .with_jitter(Duration::from_micros(20)),
        );
        const N: u64 = 10_000;
        start(&mut sim, N, 8, 24);
        run_to_completion(&mut sim, Duration::from_secs(600));
        assert_exactly_once(&sim, N);
        let t = sim.total_stats();
        assert!(
            t.lost * 100 >= t.sent * 8 && t.lost > 200,
            "seed {seed}: the link really was lossy: {t:?}"
        );
    }
}

/// (c) Corrupted packets are dropped and counted, never delivered.
#[test]
fn corrupted_packets_are_dropped_and_counted() {
    let mut sim = pair(3, PSK);
    sim.set_default_link(LinkConfig::default().with_corrupt(0.2));
    const N: u64 = 2000;
    // c1: one packet per request and per response, so plenty get corrupted.
    start(&mut sim, N, 1, 64);
    run_to_completion(&mut sim, Duration::from_secs(120));
    assert_exactly_once(&sim, N);
    let corrupted = sim.total_stats().corrupted;
    let dropped: u64 = [CLIENT, SERVER]
        .iter()
        .map(|n| {
            let s = sim.node(addr(*n)).ep.stats();
            s.drop_decrypt
                + s.drop_malformed
                + s.handshake_mac1
                + s.drop_unknown_index
                + s.handshake_malformed
        })
        .sum();
    assert!(
        corrupted > 100,
        "corrupted {corrupted}, stats {:?}",
        sim.total_stats()
    );
    // Every corrupted datagram that reached a node was refused by something
    // (a flipped bit in the header can also make it unknown/malformed).
    assert!(
        dropped >= corrupted * 9 / 10,
        "dropped {dropped} of {corrupted} corrupted"
    );
}

/// (e) A wrong PSK fails the handshake with a typed error.
#[test]
fn wrong_psk_fails_the_handshake_with_a_typed_error() {
    let mut sim = pair(4, [9; 32]);
    start(&mut sim, 1, 1, 8);
    sim.run_until(Duration::from_secs(300), |s| {
        !s.node(addr(CLIENT)).client.closed.is_empty()
    })
    .expect("handshake gives up");
    let client = sim.node(addr(CLIENT));
    assert_eq!(
        client.client.closed,
        vec![CloseReason::Handshake(HandshakeError::WrongPsk)]
    );
    assert!(client.ep.stats().handshake_decrypt > 0);
    assert_eq!(
        client.client.statuses.get(&Status::UNAVAILABLE.get()),
        Some(&1),
        "the queued call failed as unavailable"
    );
    assert_eq!(
        client.client.causes,
        vec![Cause::Handshake(HandshakeError::WrongPsk)]
    );
    assert_eq!(sim.node(addr(SERVER)).server.by_tag.len(), 0);
    // The callee cannot see the PSK differs, but it sees its responses
    // never confirmed, and reports that.
    let server = sim.node(addr(SERVER));
    assert!(server
        .server
        .rejected
        .contains(&HandshakeError::Unconfirmed));
    assert!(server.ep.stats().handshake_unconfirmed > 0);
}

/// (e2) Dialling an address with the wrong public identity gets no answer
/// (mac1 names another node); the caller's cause says so, and the callee
/// reports the refused initiations.
#[test]
fn dialling_the_wrong_identity_gets_no_answer_and_the_callee_reports_it() {
    let mut sim = pair(4, PSK);
    let now = sim.now();
    let stranger = identity(9).public();
    sim.node_mut(addr(CLIENT))
        .start_calls(now, stranger, addr(SERVER), 1, 1, 8);
    sim.run_until(Duration::from_secs(300), |s| {
        !s.node(addr(CLIENT)).client.closed.is_empty()
    })
    .expect("handshake gives up");
    let client = sim.node(addr(CLIENT));
    let attempts = 8;
    let no_answer = HandshakeError::NoAnswer { attempts };
    assert_eq!(
        client.client.closed,
        vec![CloseReason::Handshake(no_answer)]
    );
    assert_eq!(client.client.causes, vec![Cause::Handshake(no_answer)]);
    let server = sim.node(addr(SERVER));
    assert_eq!(server.ep.stats().handshake_mac1, u64::from(attempts));
    assert_eq!(server.server.rejected, vec![HandshakeError::Mac1; 8]);
}

/// (f) Key updates in the middle of a call stream lose no call.
#[test]
fn rekey_mid_stream_loses_no_call() {
    let mut sim = Sim::new(5);
    let now = sim.now();
    for n in [CLIENT, SERVER] {
        let mut cfg = config(n, PSK);
        cfg.rekey_after_packets = 97;
        sim.add_node(addr(n), RpcNode::new(cfg, now));
    }
    sim.set_default_link(LinkConfig::lossy(0.05).with_reorder(0.1, Duration::from_micros(200)));
    const N: u64 = 5000;
    start(&mut sim, N, 2, 16);
    run_to_completion(&mut sim, Duration::from_secs(300));
    assert_exactly_once(&sim, N);
    let updates: u64 = [CLIENT, SERVER]
        .iter()
        .map(|n| sim.node(addr(*n)).ep.stats().key_updates)
        .sum();
    assert!(updates >= 20, "keys were updated repeatedly ({updates})");
}

/// Rekey by age: a phase older than `rekey_after_time` is replaced.
#[test]
fn rekey_by_age() {
    let mut sim = Sim::new(6);
    let now = sim.now();
    for n in [CLIENT, SERVER] {
        let mut cfg = config(n, PSK);
        cfg.rekey_after_time = Duration::from_millis(20);
        sim.add_node(addr(n), RpcNode::new(cfg, now));
    }
    const N: u64 = 3000;
    start(&mut sim, N, 1, 16);
    run_to_completion(&mut sim, Duration::from_secs(60));
    assert_exactly_once(&sim, N);
    assert!(sim.node(addr(CLIENT)).ep.stats().key_updates >= 5);
}

/// (g) A client stream under credit flow control delivers 100 MiB in order
/// under 5 % loss.
#[test]
fn stream_delivers_100_mib_in_order_under_loss() {
    let mut sim = pair(7, PSK);
    sim.set_default_link(LinkConfig::lossy(0.05));
    const TOTAL: u64 = 100 << 20;
    let answer = upload_to_sink(&mut sim, TOTAL, 1200, Duration::from_secs(3600));
    assert_eq!(answer, (Status::OK, TOTAL), "server received every byte");
    assert_eq!(
        sim.node(addr(SERVER)).server.sink_out_of_order,
        0,
        "in order"
    );
    assert!(
        sim.node(addr(CLIENT)).client.writable_events > 0,
        "flow control blocked the sender"
    );
}

/// Server streaming: messages arrive in order before the trailer.
#[test]
fn server_stream_delivers_messages_then_trailer() {
    let mut sim = pair(8, PSK);
    sim.set_default_link(LinkConfig::lossy(0.1).with_reorder(0.2, Duration::from_micros(300)));
    sim.node_mut(addr(SERVER)).server.ticker_count = 200;
    let now = sim.now();
    let c = sim.node_mut(addr(CLIENT));
    let session = c.ep.connect(now, server_identity(), addr(SERVER)).unwrap();
    let call =
        c.ep.call(now, session, ticker(), CallKind::ServerStream, None, b"go")
            .unwrap();
    sim.run_until(Duration::from_secs(60), |s| {
        s.node(addr(CLIENT)).client.responses.contains_key(&call)
    })
    .unwrap();
    let client = &sim.node(addr(CLIENT)).client;
    assert_eq!(client.responses[&call], (Status::OK, b"done".to_vec()));
    let msgs = &client.messages[&call];
    assert_eq!(msgs.len(), 200);
    for (i, m) in msgs.iter().enumerate() {
        assert_eq!(m, &(i as u32).to_be_bytes());
    }
}

/// Unregistered services and overload are answered without the handler.
#[test]
fn not_found_and_backpressure() {
    let mut sim = pair(9, PSK);
    sim.node_mut(addr(SERVER)).ep.register_service(silent(), 2);
    let now = sim.now();
    let c = sim.node_mut(addr(CLIENT));
    let session = c.ep.connect(now, server_identity(), addr(SERVER)).unwrap();
    let missing =
        c.ep.call(
            now,
            session,
            net_proto::ServiceId::of("nope"),
            CallKind::Unary,
            None,
            b"x",
        )
        .unwrap();
    let calls: Vec<_> = (0..3)
        .map(|_| {
            c.ep.call(now, session, silent(), CallKind::Unary, None, b"x")
                .unwrap()
        })
        .collect();
    sim.run_until(Duration::from_secs(5), |s| {
        let r = &s.node(addr(CLIENT)).client.responses;
        r.contains_key(&missing) && r.contains_key(&calls[2])
    })
    .unwrap();
    let r = &sim.node(addr(CLIENT)).client.responses;
    assert_eq!(r[&missing].0, Status::NOT_FOUND);
    assert_eq!(r[&calls[2]].0, Status::BACKPRESSURE);
    assert!(
        !r.contains_key(&calls[0]) && !r.contains_key(&calls[1]),
        "admitted calls wait for the handler"
    );
}

/// A deadline completes the call with TIMEOUT on both sides; cancel reaches
/// the server.
#[test]
fn deadline_and_cancel() {
    let mut sim = pair(10, PSK);
    let now = sim.now();
    let c = sim.node_mut(addr(CLIENT));
    let session = c.ep.connect(now, server_identity(), addr(SERVER)).unwrap();
    let timed =
        c.ep.call(
            now,
            session,
            silent(),
            CallKind::Unary,
            Some(now + Duration::from_millis(50)),
            b"slow",
        )
        .unwrap();
    let cancelled =
        c.ep.call(now, session, silent(), CallKind::Unary, None, b"cancel me")
            .unwrap();
    sim.run_for(Duration::from_millis(10)).unwrap();
    let now = sim.now();
    sim.node_mut(addr(CLIENT))
        .ep
        .cancel(now, session, cancelled)
        .unwrap();
    sim.run_for(Duration::from_millis(200)).unwrap();
    let client = &sim.node(addr(CLIENT)).client;
    assert_eq!(
        client.responses.get(&timed).map(|r| r.0),
        Some(Status::TIMEOUT)
    );
    assert!(
        !client.responses.contains_key(&cancelled),
        "a cancelled call has no response event"
    );
    let server = &sim.node(addr(SERVER)).server;
    assert!(server.cancelled.contains(&(cancelled, Status::CANCELLED)));
    assert!(server
        .cancelled
        .iter()
        .any(|&(c, s)| c == timed && s == Status::TIMEOUT));
}

/// A call's deadline holds even while its session's handshake cannot
/// complete (nobody answers): it ends with TIMEOUT at the deadline, not
/// when the handshake finally gives up.
#[test]
fn deadline_applies_while_handshaking() {
    let mut sim = Sim::new(11);
    let now = sim.now();
    sim.add_node(addr(CLIENT), RpcNode::new(config(CLIENT, PSK), now));
    let c = sim.node_mut(addr(CLIENT));
    // Nobody listens at node 9's address.
    let session =
        c.ep.connect(now, server_identity(), net_sim::v4(9, 4000))
            .unwrap();
    let deadline = now + Duration::from_millis(100);
    let call =
        c.ep.call(now, session, echo(), CallKind::Unary, Some(deadline), b"x")
            .unwrap();
    sim.run_until(Duration::from_secs(5), |s| {
        s.node(addr(CLIENT)).client.responses.contains_key(&call)
    })
    .expect("the call completes");
    assert_eq!(
        sim.node(addr(CLIENT)).client.responses[&call].0,
        Status::TIMEOUT
    );
    assert!(
        sim.elapsed() < Duration::from_millis(150),
        "completed at its deadline ({:?})",
        sim.elapsed()
    );
}
