//! Loss recovery timing on the simulated network: one lost packet on a LAN
//! should cost about a round trip, not a fixed ACK delay.

mod support;

use std::time::Duration;

use net_sim::{LinkConfig, Sim};
use support::*;

/// p50 and p99 of `lat`.
fn percentiles(mut lat: Vec<Duration>) -> (Duration, Duration) {
    lat.sort_unstable();
    let at = |q: f64| lat[((lat.len() as f64 - 1.0) * q) as usize];
    (at(0.50), at(0.99))
}

/// c16 × 32 B unary calls over a LAN-like link (50 µs one way, jitter
/// 10 µs) with `loss` in both directions; returns (p50, p99).
fn c16(seed: u64, loss: f64) -> (Duration, Duration) {
    let mut sim: Sim<RpcNode> = pair(seed, PSK);
    sim.set_default_link(LinkConfig {
        jitter: Duration::from_micros(10),
        loss,
        ..LinkConfig::default()
    });
    let now = sim.now();
    const N: u64 = 20_000;
    sim.node_mut(addr(CLIENT))
        .start_calls(now, identity(SERVER).public(), addr(SERVER), N, 16, 32);
    sim.run_until(Duration::from_secs(600), |s| s.node(addr(CLIENT)).done())
        .expect("calls complete");
    let lat = sim.node(addr(CLIENT)).client.latencies.clone();
    assert_eq!(lat.len() as u64, N);
    percentiles(lat)
}

#[test]
fn one_percent_loss_costs_the_tail_less_than_3x() {
    let (p50, p99) = c16(7, 0.0);
    let (l50, l99) = c16(7, 0.01);
    eprintln!("c16 loss-free p50 {p50:?} p99 {p99:?}; 1% loss p50 {l50:?} p99 {l99:?}");
    assert!(
        l99 <= p99 * 3,
        "p99 {l99:?} with 1% loss vs {p99:?} without"
    );
}

/// A pair on a link of `one_way` delay (each direction).
fn long_path(seed: u64, one_way: Duration) -> Sim<RpcNode> {
    let mut sim: Sim<RpcNode> = pair(seed, PSK);
    sim.set_default_link(LinkConfig {
        delay: one_way,
        ..LinkConfig::default()
    });
    sim
}

fn call_once(sim: &mut Sim<RpcNode>, total: u64) {
    let now = sim.now();
    sim.node_mut(addr(CLIENT)).start_calls(
        now,
        identity(SERVER).public(),
        addr(SERVER),
        total,
        1,
        32,
    );
    sim.run_until(Duration::from_secs(60), |s| s.node(addr(CLIENT)).done())
        .expect("the call completes");
}

fn inits(sim: &Sim<RpcNode>) -> u64 {
    sim.node(addr(CLIENT)).ep.stats().handshake_init_tx
}

#[test]
fn a_handshake_is_sent_once_at_100ms_one_way() {
    let mut sim = long_path(8, Duration::from_millis(100));
    call_once(&mut sim, 1);
    assert_eq!(inits(&sim), 1);
}

#[test]
fn a_reconnect_times_its_handshake_by_the_rtt_last_measured() {
    // 300 ms round trips: longer than the default first retry (250 ms), so
    // the first handshake to an unknown peer goes out twice.
    let mut sim = long_path(9, Duration::from_millis(150));
    // Enough calls for the RTT estimate to converge (early packets are
    // probed before their ACK can come back, which gives no sample).
    call_once(&mut sim, 20);
    assert_eq!(inits(&sim), 2);
    let now = sim.now();
    let client = sim.node_mut(addr(CLIENT));
    let session = client.client.session.expect("session");
    client.ep.close(now, session, 0).expect("close");
    sim.run_for(Duration::from_secs(1)).expect("close goes out");
    // The next one waits twice the measured RTT before retrying: once.
    call_once(&mut sim, 21);
    assert_eq!(inits(&sim), 3);
}
