//! Messages larger than a packet (`docs/PROTOCOL.md` §3.15) on the
//! simulated MTU-1500 network: byte-exact and exactly once under loss,
//! reordering and duplication; refused with a typed status beyond the
//! receiver's `max_message`; reassembly memory returned.

mod support;

use std::time::Duration;

use net_proto::{CallKind, Status};
use net_sim::{LinkConfig, Sim};
use support::*;

fn server_identity() -> net_crypto::PublicIdentity {
    identity(SERVER).public()
}

/// The path of two real hosts: MTU 1500, 50 µs one way.
fn lan() -> LinkConfig {
    LinkConfig::default().with_mtu(1500)
}

/// A node with the default configuration: path-MTU discovery finds what
/// the link carries.
fn node_cfg(n: u8) -> net_proto::EndpointConfig {
    config(n, PSK)
}

/// Datagrams the link dropped for size must all have been probes (sent and
/// not acknowledged: lost, or the last one still in flight).
fn assert_only_probes_were_too_big(sim: &Sim<RpcNode>) {
    let unacked: u64 = [CLIENT, SERVER]
        .iter()
        .map(|&n| {
            let s = sim.node(addr(n)).ep.stats();
            s.pmtu_probes_tx - s.pmtu_probes_acked
        })
        .sum();
    let too_big = sim.total_stats().too_big;
    assert!(
        too_big <= unacked,
        "{too_big} datagrams over the MTU, {unacked} probes unacknowledged"
    );
}

/// A client and a server that send MTU-1500 datagrams, on `lan()`.
fn pair(seed: u64) -> Sim<RpcNode> {
    let mut sim = Sim::new(seed);
    let now = sim.now();
    sim.add_node(addr(CLIENT), RpcNode::new(node_cfg(CLIENT), now));
    sim.add_node(addr(SERVER), RpcNode::new(node_cfg(SERVER), now));
    sim.set_default_link(lan());
    sim
}

/// Runs `total` echo calls of `len` bytes, `conc` at a time, and checks
/// each response equals its request and each handler ran once.
fn echo_calls(sim: &mut Sim<RpcNode>, total: u64, conc: usize, len: usize, limit: Duration) {
    let now = sim.now();
    sim.node_mut(addr(CLIENT))
        .start_calls(now, server_identity(), addr(SERVER), total, conc, len);
    sim.run_until(limit, |s| s.node(addr(CLIENT)).done())
        .unwrap_or_else(|e| {
            panic!(
                "{len}-byte calls did not complete: {e}; completed {}",
                sim.node(addr(CLIENT)).client.completed
            )
        });
    let client = &sim.node(addr(CLIENT)).client;
    let server = &sim.node(addr(SERVER)).server;
    assert_eq!(
        client.mismatches, 0,
        "{len} B: a response differs from its request"
    );
    assert_eq!(
        client.statuses.get(&Status::OK.get()),
        Some(&total),
        "{len} B: {:?}",
        client.statuses
    );
    assert!(
        server.by_tag.values().all(|&n| n == 1),
        "a handler ran twice"
    );
    assert!(client.closed.is_empty(), "{:?}", client.closed);
}

/// Requests and responses of 2 KiB, 64 KiB and 1 MiB cross an MTU-1500
/// link byte-exact, with every datagram within the MTU (the link drops
/// larger ones and counts them).
#[test]
fn large_unary_calls_are_byte_exact_across_mtu_1500() {
    for (len, total, conc) in [(2048, 40, 8), (65_536, 10, 4), (1 << 20, 3, 2)] {
        let mut sim = pair(len as u64);
        echo_calls(&mut sim, total, conc, len, Duration::from_secs(60));
        assert_only_probes_were_too_big(&sim);
        let srv = sim.node(addr(SERVER)).ep.stats();
        assert_eq!(
            srv.segmented_bodies_rx, total,
            "{len} B requests reassembled"
        );
    }
}

/// A 16 MiB request and response (the default `max_message`).
#[test]
fn a_16_mib_call_round_trips() {
    let mut sim = pair(16);
    echo_calls(&mut sim, 1, 1, 16 << 20, Duration::from_secs(120));
}

/// Loss, reordering and duplication: every body still arrives whole,
/// exactly once, for seeds 0 to 9.
#[test]
fn segmented_calls_survive_loss_reordering_and_duplication() {
    for seed in 0..10 {
        let mut sim = pair(100 + seed);
        sim.set_default_link(
            lan()
                .with_loss(0.05)
                .with_duplicate(0.02)
                .with_reorder(0.05, Duration::from_micros(300)),
        );
        echo_calls(
            &mut sim,
            12,
            4,
            20_000 + seed as usize * 997,
            Duration::from_secs(120),
        );
        let srv = sim.node(addr(SERVER)).ep.stats();
        assert!(srv.segment_bytes_rx > 0);
    }
}

/// Client-stream messages larger than a packet are segmented too, and
/// arrive in order.
#[test]
fn stream_messages_larger_than_a_packet_arrive_whole_and_in_order() {
    let mut sim = pair(21);
    sim.set_default_link(lan().with_loss(0.02));
    const TOTAL: u64 = 4 << 20;
    let answer = upload_to_sink(&mut sim, TOTAL, 100_000, Duration::from_secs(600));
    assert_eq!(answer, (Status::OK, TOTAL));
    assert_eq!(sim.node(addr(SERVER)).server.sink_out_of_order, 0);
    assert!(sim.node(addr(SERVER)).ep.stats().segmented_bodies_rx >= TOTAL / 100_000);
}

/// A body over the receiver's `max_message`: refused locally once the
/// peer's limit is known, and with `PAYLOAD_TOO_LARGE` by the peer when
/// the call was made before the handshake told the caller.
#[test]
fn bodies_over_the_receivers_max_message_are_refused_with_a_typed_error() {
    let mut sim = Sim::new(5);
    let now = sim.now();
    let mut server_cfg = node_cfg(SERVER);
    server_cfg.params.max_message = 100_000;
    sim.add_node(addr(CLIENT), RpcNode::new(node_cfg(CLIENT), now));
    sim.add_node(addr(SERVER), RpcNode::new(server_cfg, now));
    sim.set_default_link(lan());
    let c = sim.node_mut(addr(CLIENT));
    let session = c.ep.connect(now, server_identity(), addr(SERVER)).unwrap();
    // Before the handshake the caller only knows its own limit.
    let early =
        c.ep.call(now, session, echo(), CallKind::Unary, None, &[1; 150_000])
            .expect("within the caller's own limit");
    sim.run_until(Duration::from_secs(10), |s| {
        s.node(addr(CLIENT)).client.responses.contains_key(&early)
    })
    .expect("refusal arrives");
    let (status, _) = &sim.node(addr(CLIENT)).client.responses[&early];
    assert_eq!(*status, Status::PAYLOAD_TOO_LARGE);
    assert_eq!(sim.node(addr(SERVER)).ep.stats().calls_too_large, 1);
    // Now it knows: refused at once, with the peer's limit in the error.
    let now = sim.now();
    let err = sim
        .node_mut(addr(CLIENT))
        .ep
        .call(now, session, echo(), CallKind::Unary, None, &[1; 150_000])
        .unwrap_err();
    assert_eq!(
        err,
        net_proto::ApiError::PayloadTooLarge {
            len: 150_000,
            max: 100_000
        }
    );
}

/// Path-MTU discovery finds the link's MTU without a special case, and a
/// path that shrinks mid-transfer is caught (black-hole detection): the
/// transfer completes, byte-exact, at the smaller size.
#[test]
fn path_mtu_is_discovered_and_a_shrinking_path_is_survived() {
    let mut sim = pair(31);
    echo_calls(&mut sim, 4, 2, 3000, Duration::from_secs(10));
    let s = sim.node(addr(CLIENT)).client.session.unwrap();
    let size = sim.node(addr(CLIENT)).ep.session_datagram_size(s).unwrap();
    assert!(
        (1484..=1500).contains(&size),
        "discovered {size} on an MTU-1500 link"
    );
    assert_only_probes_were_too_big(&sim);
    // The path shrinks to 1 300 bytes while 1 MiB calls are in flight.
    let now = sim.now();
    sim.node_mut(addr(CLIENT)).call_more(now, 4);
    sim.node_mut(addr(CLIENT)).client.payload_len = 1 << 20;
    sim.run_for(Duration::from_micros(300)).unwrap();
    sim.set_default_link(lan().with_mtu(1300));
    sim.run_until(Duration::from_secs(120), |s| s.node(addr(CLIENT)).done())
        .expect("calls complete after the path shrank");
    let client = &sim.node(addr(CLIENT)).client;
    assert_eq!(client.mismatches, 0);
    assert_eq!(client.statuses.get(&Status::OK.get()), Some(&8));
    let stats = sim.node(addr(CLIENT)).ep.stats();
    assert!(stats.pmtu_black_holes >= 1, "the shrink was detected");
    let size = sim.node(addr(CLIENT)).ep.session_datagram_size(s).unwrap();
    assert!((1200..=1300).contains(&size), "now {size}");
}

/// The reassembly window: an honest caller whose bodies do not all fit the
/// callee's window sends them one after another, and all complete; a
/// caller that ignores it has its session closed (`Segment(Window)`)
/// before the callee holds more than the window.
#[test]
fn the_reassembly_window_serialises_honest_bodies_and_stops_a_hostile_peer() {
    for hostile in [false, true] {
        let mut sim = Sim::new(41);
        let now = sim.now();
        let mut server_cfg = node_cfg(SERVER);
        server_cfg.params.max_message = 100_000;
        server_cfg.params.reassembly_window = 150_000;
        let mut client_cfg = node_cfg(CLIENT);
        client_cfg.testing_ignore_credit = hostile;
        sim.add_node(addr(CLIENT), RpcNode::new(client_cfg, now));
        sim.add_node(addr(SERVER), RpcNode::new(server_cfg, now));
        // The hook also skips path-MTU discovery (16 KiB datagrams): no MTU.
        sim.set_default_link(if hostile {
            LinkConfig::default()
        } else {
            lan()
        });
        if !hostile {
            echo_calls(&mut sim, 5, 5, 90_000, Duration::from_secs(30));
            continue;
        }
        let now = sim.now();
        sim.node_mut(addr(CLIENT))
            .start_calls(now, server_identity(), addr(SERVER), 5, 5, 90_000);
        sim.run_until(Duration::from_secs(30), |s| {
            !s.node(addr(SERVER)).client.closed.is_empty()
        })
        .expect("the hostile session is closed");
        let reason = sim.node(addr(SERVER)).client.closed[0];
        assert_eq!(
            reason,
            net_proto::CloseReason::Protocol(net_proto::ProtocolViolation::Segment(
                net_proto::SegmentViolation::Window
            ))
        );
        assert!(
            sim.node(addr(SERVER)).server.by_tag.is_empty(),
            "no request ran"
        );
    }
}
