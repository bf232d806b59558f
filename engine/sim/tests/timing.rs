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
