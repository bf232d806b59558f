//! The spin-then-park trade-off, measured: c1 unary round trips on loopback
//! (inline echo handler, engine mode) for several `spin` settings, with the
//! process's CPU time per call.
//!
//! `cargo run --release -p net-engine --example spin`

use std::sync::mpsc::sync_channel;
use std::sync::Arc;
use std::time::Duration;

use net_crypto::Identity;
use net_engine::loadgen::{ClosedLoop, LoadSpec};
use net_engine::{Handler, MeshNode, MeshNodeConfig};
use net_proto::{ServiceId, Status};

fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields 14 and 15 (utime, stime) in clock ticks, after the ")" of comm.
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
    let ticks = field(11) + field(12);
    Duration::from_millis(ticks * 10)
}

fn main() {
    println!("| spin | p50 µs | p99 µs | calls/s | CPU µs per call |");
    println!("|---|---|---|---|---|");
    for spin_us in [0u64, 10, 50, 200] {
        // Server on CPU 0, client on CPU 1.
        let cfg = |seed: u8| {
            MeshNodeConfig::new(Identity::from_seed(&[seed; 32]), [7; 32])
                .with_spin(Duration::from_micros(spin_us))
                .with_cpus(vec![usize::from(seed) - 1])
        };
        let server = MeshNode::new(cfg(1)).unwrap();
        server.start().unwrap();
        let echo: Arc<net_engine::SyncHandler> = Arc::new(|_, b: &[u8], out: &mut Vec<u8>| {
            out.extend_from_slice(b);
            Status::OK
        });
        server
            .serve("echo", Handler::Sync(echo), Default::default())
            .unwrap();
        let client = MeshNode::new(cfg(2).with_peer(
            server.local_addr().unwrap(),
            server.config().public_identity(),
        ))
        .unwrap();
        client.start().unwrap();
        let spec = |total| LoadSpec::calls(server.node_id(), ServiceId::of("echo"), 1, 32, total);
        let go = |total| {
            let (tx, rx) = sync_channel(1);
            client
                .run_on_core(0, Box::new(ClosedLoop::new(spec(total), tx)))
                .unwrap();
            rx.recv().unwrap()
        };
        go(2_000);
        let cpu0 = cpu_time();
        let r = go(20_000);
        let cpu = cpu_time() - cpu0;
        let q = |p: f64| r.hist.value_at_quantile(p) as f64 / 1000.0;
        let secs = r.elapsed.as_secs_f64();
        println!(
            "| {spin_us} µs | {:.1} | {:.1} | {:.0} | {:.1} |",
            q(0.5),
            q(0.99),
            r.ok as f64 / secs,
            cpu.as_secs_f64() * 1e6 / r.ok as f64
        );
    }
}
