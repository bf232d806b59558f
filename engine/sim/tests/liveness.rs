//! Liveness on the simulated network: a restarted peer's stateless reset
//! ends the stale session within one round trip; forged, replayed and
//! excess resets change nothing.

mod support;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use net_proto::wire::{ResetPacket, RESET_LEN};
use net_proto::{Cause, CloseReason, PeerState, Status};
use net_sim::{LinkConfig, Sim};
use support::*;

/// Client and server with a session after `n` completed calls.
fn warmed_up(seed: u64, n: u64) -> Sim<RpcNode> {
    let mut sim = pair(seed, PSK);
    let now = sim.now();
    sim.node_mut(addr(CLIENT))
        .start_calls(now, identity(SERVER).public(), addr(SERVER), n, 1, 32);
    sim.run_until(Duration::from_secs(5), |s| s.node(addr(CLIENT)).done())
        .expect("warm-up calls complete");
    sim
}

/// The server process dies and a new one starts on the same address with
/// the same identity: every session state is gone.
fn restart_server(sim: &mut Sim<RpcNode>) {
    let now = sim.now();
    let mut cfg = config(SERVER, PSK);
    cfg.rng_seed = 0x5eed;
    *sim.node_mut(addr(SERVER)) = RpcNode::new(cfg, now);
}

/// Reset datagrams seen on the wire, in order.
type Seen = Rc<RefCell<Vec<Vec<u8>>>>;

/// Records every reset datagram the network carries.
fn capture_resets(sim: &mut Sim<RpcNode>) -> Seen {
    let seen = Rc::new(RefCell::new(Vec::new()));
    let sink = seen.clone();
    sim.set_tap(Box::new(move |_, _, _, bytes| {
        if packet_type(bytes) == 5 {
            sink.borrow_mut().push(bytes.to_vec());
        }
    }));
    seen
}

/// A warmed-up pair whose server restarts; the client's next call on the
/// stale session provokes a reset. Returns the simulator, the resets seen
/// on the wire and how long the session took to end after the call.
fn provoke_reset(seed: u64) -> (Sim<RpcNode>, Seen, Duration) {
    let mut sim = warmed_up(seed, 10);
    restart_server(&mut sim);
    let resets = capture_resets(&mut sim);
    let start = sim.now();
    sim.node_mut(addr(CLIENT)).call_more(start, 1);
    sim.run_until(Duration::from_secs(1), |s| {
        !s.node(addr(CLIENT)).client.closed.is_empty()
    })
    .expect("the stale session ends");
    let took = sim.now() - start;
    (sim, resets, took)
}

/// The client dials the (restarted) server anew and completes calls up to
/// 16 in total.
fn reconnect(sim: &mut Sim<RpcNode>) {
    let now = sim.now();
    sim.node_mut(addr(CLIENT))
        .start_calls(now, identity(SERVER).public(), addr(SERVER), 16, 1, 32);
    sim.run_until(Duration::from_secs(1), |s| {
        s.node(addr(CLIENT)).client.completed >= 16
    })
    .expect("calls on the new session complete");
}

#[test]
fn a_restarted_peer_resets_the_stale_session_within_one_round_trip() {
    let (mut sim, resets, took) = provoke_reset(1);
    // One-way delay is 50 µs: the call goes out, the reset comes back.
    assert!(took <= Duration::from_micros(110), "took {took:?}");
    let client = &sim.node(addr(CLIENT));
    assert_eq!(client.client.closed, vec![CloseReason::PeerReset]);
    assert_eq!(client.client.causes, vec![Cause::PeerReset]);
    assert_eq!(
        client.client.statuses.get(&Status::UNAVAILABLE.get()),
        Some(&1)
    );
    assert_eq!(client.ep.stats().resets_rx, 1);
    assert_eq!(sim.node(addr(SERVER)).ep.stats().resets_tx, 1);
    assert_eq!(resets.borrow().len(), 1);
    assert_eq!(resets.borrow()[0].len(), RESET_LEN);
    // The new server never saw the call: it was not executed.
    assert!(sim.node(addr(SERVER)).server.by_tag.is_empty());

    // A fresh handshake to the restarted node works at once.
    reconnect(&mut sim);
}

#[test]
fn forged_and_replayed_resets_change_nothing() {
    let (mut sim, resets, _) = provoke_reset(2);
    let captured = resets.borrow()[0].clone();
    reconnect(&mut sim);
    let session = sim.node(addr(CLIENT)).client.session.expect("session");

    // Replayed: the old reset names the old session's index.
    let now = sim.now();
    let client = sim.node_mut(addr(CLIENT));
    client.ep.handle(now, addr(SERVER), &mut captured.clone());
    // Forged: the live session's peer index (an observer sees it in every
    // packet) with a guessed token, and with the replayed token.
    let live = ResetPacket::decode(&captured).expect("reset decodes");
    for token in [[0u8; 16], [0xff; 16], live.token] {
        let forged = ResetPacket {
            steer: 0,
            index: live_peer_index(&sim, session),
            token,
        };
        let mut b = [0u8; RESET_LEN];
        forged.encode(&mut b);
        sim.node_mut(addr(CLIENT))
            .ep
            .handle(now, addr(SERVER), &mut b);
    }
    let client = sim.node(addr(CLIENT));
    assert_eq!(client.ep.stats().resets_invalid, 4);
    assert_eq!(client.ep.stats().resets_rx, 1, "only the genuine one");
    assert!(client.ep.is_established(session), "session untouched");
    assert_eq!(client.client.closed.len(), 1);
    sim.node_mut(addr(CLIENT)).call_more(now, 3);
    sim.run_until(Duration::from_secs(1), |s| {
        s.node(addr(CLIENT)).client.completed >= 19
    })
    .expect("the session still carries calls");
}

/// The receiver index the server chose for the client's live session, as
/// the client's packets carry it (read off the wire).
fn live_peer_index(sim: &Sim<RpcNode>, session: net_proto::SessionId) -> net_proto::ReceiverIndex {
    sim.node(addr(CLIENT))
        .ep
        .session_peer_index(session)
        .expect("established")
}

#[test]
fn resets_cannot_be_provoked_faster_than_their_rate_limit() {
    let mut sim = pair(3, PSK);
    let mut cfg = config(SERVER, PSK);
    cfg.reset_limit = net_proto::RateLimit {
        per_second: 10.0,
        burst: 3.0,
    };
    let now = sim.now();
    *sim.node_mut(addr(SERVER)) = RpcNode::new(cfg, now);
    // A flood of 40-byte data packets for sessions the server does not hold.
    let flood = |sim: &mut Sim<RpcNode>, base: u32| {
        let now = sim.now();
        for i in 0..100u32 {
            let mut p = net_proto::wire::DataHeader {
                key_phase: false,
                reply_hint: 0,
                receiver: net_proto::ReceiverIndex::new(base + i),
                counter: 0,
            }
            .to_bytes()
            .to_vec();
            p.resize(40, 0);
            sim.node_mut(addr(SERVER))
                .ep
                .handle(now, addr(CLIENT), &mut p);
        }
    };
    let resets = capture_resets(&mut sim);
    flood(&mut sim, 1000);
    sim.run_for(Duration::from_millis(1)).expect("run");
    assert_eq!(resets.borrow().len(), 3, "the burst");
    sim.set_default_link(LinkConfig::default());
    sim.run_for(Duration::from_millis(999)).expect("run");
    flood(&mut sim, 2000);
    sim.run_for(Duration::from_millis(1)).expect("run");
    // One second refills 10 tokens, capped at the burst of 3.
    assert_eq!(resets.borrow().len(), 6);
    let stats = sim.node(addr(SERVER)).ep.stats();
    assert_eq!(stats.resets_tx, 6);
    assert_eq!(stats.resets_rate_limited, 194);
    assert!(resets
        .borrow()
        .iter()
        .all(|r| r.len() == RESET_LEN && r.len() < 40));
}

fn partition(sim: &mut Sim<RpcNode>, loss: f64) {
    let cfg = LinkConfig {
        loss,
        ..LinkConfig::default()
    };
    sim.set_link_both(addr(CLIENT), addr(SERVER), cfg);
}

/// Runs until the client's detector reports `state` (its `n`th change).
fn until_peer_state(
    sim: &mut Sim<RpcNode>,
    n: usize,
    state: PeerState,
    limit: Duration,
) -> Duration {
    let start = sim.now();
    sim.run_until(limit, |s| {
        s.node(addr(CLIENT)).client.peer_states.len() >= n
    })
    .unwrap_or_else(|e| panic!("no change to {state}: {e}"));
    let seen = sim.node(addr(CLIENT)).client.peer_states[n - 1];
    assert_eq!(seen, (identity(SERVER).node_id(), state));
    sim.now() - start
}

#[test]
fn a_partitioned_peer_goes_suspect_then_down_and_up_after_the_heal() {
    let mut sim = warmed_up(4, 10);
    // Idle but connected: keepalives keep the peer Up.
    sim.run_for(Duration::from_secs(10)).expect("idle");
    let client = sim.node(addr(CLIENT));
    let server_id = identity(SERVER).node_id();
    // Known (Up) since the session opened, and nothing since.
    assert_eq!(client.client.peer_states, vec![(server_id, PeerState::Up)]);
    assert!(client.ep.stats().keepalives_tx > 0);
    assert_eq!(
        client.ep.peer_state(&identity(SERVER).node_id()),
        Some(PeerState::Up)
    );

    partition(&mut sim, 1.0);
    let now = sim.now();
    sim.node_mut(addr(CLIENT)).call_more(now, 1);
    // Defaults: heartbeat 1 s, Suspect after 3 s, Down after 6 s of
    // silence, checked every 0.5 s; the peer was last heard at most one
    // heartbeat (plus a round trip) before the partition.
    let suspect = until_peer_state(&mut sim, 2, PeerState::Suspect, Duration::from_secs(10));
    assert!(
        suspect >= Duration::from_secs(2) && suspect <= Duration::from_millis(3_510),
        "Suspect after {suspect:?}"
    );
    let down = suspect + until_peer_state(&mut sim, 3, PeerState::Down, Duration::from_secs(10));
    assert!(
        down >= Duration::from_secs(5) && down <= Duration::from_millis(6_510),
        "Down after {down:?}"
    );
    // The call in flight failed at once, with the cause.
    let client = &sim.node(addr(CLIENT)).client;
    assert_eq!(client.causes, vec![Cause::PeerDown]);
    assert_eq!(client.completed, 11);
    // The server's detector saw the client go the same way.
    let server = sim.node(addr(SERVER));
    assert_eq!(
        server.ep.peer_state(&identity(CLIENT).node_id()),
        Some(PeerState::Down)
    );

    partition(&mut sim, 0.0);
    // The session's own probes (loss-recovery PINGs, backing off) find the
    // healed path; the first authenticated packet makes the peer Up.
    let up = until_peer_state(&mut sim, 4, PeerState::Up, Duration::from_secs(30));
    eprintln!(
        "partition: Suspect after {suspect:?}, Down after {down:?}; Up {up:?} after the heal"
    );
    let now = sim.now();
    sim.node_mut(addr(CLIENT)).call_more(now, 3);
    sim.run_until(Duration::from_secs(1), |s| {
        s.node(addr(CLIENT)).client.completed >= 14
    })
    .expect("calls flow again");
    assert_eq!(
        sim.node(addr(CLIENT))
            .client
            .statuses
            .get(&Status::OK.get()),
        Some(&13)
    );
}

#[test]
fn no_heartbeat_is_sent_while_calls_flow() {
    let mut sim = pair(5, PSK);
    let now = sim.now();
    // 30 000 sequential calls: about 3 s of traffic at a 100 µs round trip,
    // three heartbeat intervals.
    sim.node_mut(addr(CLIENT)).start_calls(
        now,
        identity(SERVER).public(),
        addr(SERVER),
        30_000,
        1,
        32,
    );
    sim.run_until(Duration::from_secs(60), |s| s.node(addr(CLIENT)).done())
        .expect("calls complete");
    assert!(
        sim.elapsed() >= Duration::from_secs(2),
        "{:?}",
        sim.elapsed()
    );
    for n in [CLIENT, SERVER] {
        assert_eq!(sim.node(addr(n)).ep.stats().keepalives_tx, 0, "node {n}");
    }
    // Idle, the heartbeat starts; the peer stays Up.
    sim.run_for(Duration::from_secs(3)).expect("idle");
    assert!(sim.node(addr(CLIENT)).ep.stats().keepalives_tx > 0);
    assert_eq!(
        sim.node(addr(CLIENT)).client.peer_states.len(),
        1,
        "only the first Up"
    );
}
