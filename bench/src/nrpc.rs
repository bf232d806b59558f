//! The nRPC side of `nrpc_qps`: an echo server node and clients in two
//! modes — `engine` (an on-core load generator: no hand-off at all) and
//! `sdk` (tokio tasks calling through the public async API).

use std::net::{IpAddr, SocketAddr};
use std::sync::mpsc::sync_channel;
use std::sync::Arc;
use std::time::{Duration, Instant};

use net_crypto::{Identity, PublicIdentity};
use net_engine::loadgen::{ClosedLoop, LoadSpec};
use net_engine::{DriverChoice, Handler, MeshNode, MeshNodeConfig};
use net_proto::{ServiceId, Status};

use crate::{Point, PointResult, STALL};

/// The bench's mesh PSK (loopback and the bench's own namespaces only).
pub const PSK: [u8; 32] = [0x42; 32];

fn service() -> ServiceId {
    ServiceId::of("echo")
}

/// Environment variable naming extra busy-wait per call in the echo
/// handler, in nanoseconds. Bench-only and unset in every real run: it
/// exists to show that the CI gate catches a regression (docs/BENCHMARKS.md,
/// "CI gate"). Read by the `nrpc_qps` binary, which passes the value to
/// [`server`]; a server child process inherits it.
#[doc(hidden)]
pub const INJECT_SPIN_ENV: &str = "NET_BENCH_INJECT_SERVER_SPIN_NS";

/// The injected per-call work named by [`INJECT_SPIN_ENV`]: zero if unset,
/// an error if set to anything but a number of nanoseconds (a typo must not
/// turn a regression demonstration into a silent pass).
#[doc(hidden)]
pub fn injected_work() -> Result<Duration, String> {
    match std::env::var(INJECT_SPIN_ENV) {
        Err(_) => Ok(Duration::ZERO),
        Ok(v) => v
            .trim()
            .parse()
            .map(Duration::from_nanos)
            .map_err(|e| format!("{INJECT_SPIN_ENV}={v:?}: {e}")),
    }
}

/// Busy-waits for `d` (a simulated regression: CPU work, not a sleep).
fn spin_for(d: Duration) {
    let t = Instant::now();
    while t.elapsed() < d {
        std::hint::spin_loop();
    }
}

/// Starts an echo server node on one core, listening on `listen`.
/// `extra_work` (zero in every real run) is busy-waited in the handler per
/// call: see [`INJECT_SPIN_ENV`].
pub fn server(
    listen: SocketAddr,
    driver: DriverChoice,
    spin: Duration,
    cpu: Option<usize>,
    extra_work: Duration,
) -> Result<MeshNode, String> {
    // Handshake load control off: the handshake point measures capacity,
    // from one client address (which the default per-source share under
    // load would hold to 20/s).
    let unlimited = net_proto::HandshakeLimits::unlimited();
    let mut cfg = crate::tune(MeshNodeConfig::new(Identity::from_seed(&[1; 32]), PSK))
        .with_listen(listen)
        .with_driver(driver)
        .with_spin(spin)
        .with_handshake_limits(unlimited);
    if let Some(c) = cpu {
        cfg = cfg.with_cpus(vec![c]);
    }
    let node = MeshNode::new(cfg).map_err(|e| e.to_string())?;
    node.start().map_err(|e| e.to_string())?;
    let echo: Arc<net_engine::SyncHandler> = Arc::new(move |_, body: &[u8], out: &mut Vec<u8>| {
        if !extra_work.is_zero() {
            spin_for(extra_work);
        }
        out.extend_from_slice(body);
        Status::OK
    });
    node.serve(
        "echo",
        Handler::Sync(echo),
        net_engine::ServeOptions {
            max_in_flight: Some(1 << 20),
            allowed: Vec::new(),
            ..Default::default()
        },
    )
    .map_err(|e| e.to_string())?;
    Ok(node)
}

/// The server's public identity (fixed seed: the bench runs on loopback or
/// across its own namespaces only).
pub fn server_identity() -> PublicIdentity {
    Identity::from_seed(&[1; 32]).public()
}

/// A client node on one core, bound to `bind` (any port), peered with the
/// server.
pub fn client(
    server: SocketAddr,
    bind: IpAddr,
    driver: DriverChoice,
    spin: Duration,
    cpu: Option<usize>,
) -> Result<MeshNode, String> {
    let mut cfg = crate::tune(MeshNodeConfig::new(Identity::from_seed(&[2; 32]), PSK))
        .with_listen(SocketAddr::new(bind, 0))
        .with_driver(driver)
        .with_spin(spin)
        .with_peer(server, server_identity());
    if let Some(c) = cpu {
        cfg = cfg.with_cpus(vec![c]);
    }
    let node = MeshNode::new(cfg).map_err(|e| e.to_string())?;
    node.start().map_err(|e| e.to_string())?;
    Ok(node)
}

/// Where a probe call's outcome goes (the engine calls it on its core).
struct ProbeSink(std::sync::mpsc::SyncSender<Status>);

impl net_engine::CallEvents for ProbeSink {
    fn complete(&mut self, status: Status, _payload: &[u8]) {
        // Called once per call, into a channel of one: this fails only if
        // the prober stopped waiting, and it reports that itself.
        let _ = self.0.try_send(status);
    }
}

/// How long a probe call may take (it may include the handshake).
const PROBE_DEADLINE: Duration = Duration::from_secs(10);

/// One echo call of `payload` bytes from `node`'s engine, before a point is
/// measured: its status says whether the point can run at all (a body
/// larger than one packet on this path is answered `PAYLOAD_TOO_LARGE`
/// until messages are segmented). `Err` if no status came back.
pub fn probe_engine(node: &MeshNode, payload: usize) -> Result<Status, String> {
    let (tx, rx) = sync_channel(1);
    node.call(
        server_identity().node_id(),
        service(),
        net_proto::CallKind::Unary,
        Some(Instant::now() + PROBE_DEADLINE),
        vec![0x5a; payload.max(8)].into(),
        Box::new(ProbeSink(tx)),
    )
    .map_err(|e| format!("probe call: {e}"))?;
    rx.recv_timeout(PROBE_DEADLINE + Duration::from_secs(5))
        .map_err(|_| format!("probe call of {payload} B: no outcome"))
}

/// [`probe_engine`] through the public API.
pub fn probe_sdk(
    mesh: &net::Mesh,
    rt: &tokio::runtime::Runtime,
    payload: usize,
) -> Result<Status, String> {
    let peer = server_identity().node_id();
    let body = vec![0x5a; payload.max(8)];
    let call = mesh.call(peer, "echo", body);
    match rt.block_on(async { tokio::time::timeout(PROBE_DEADLINE, call).await }) {
        Err(_) => Err(format!("probe call of {payload} B: no outcome")),
        Ok(Ok(_)) => Ok(Status::OK),
        Ok(Err(e)) => e
            .status()
            .ok_or_else(|| format!("probe call of {payload} B: {e}")),
    }
}

/// Engine mode: the load generator runs on the client node's own core.
pub fn run_engine(node: &MeshNode, point: &Point) -> Result<PointResult, String> {
    let spec = LoadSpec {
        peer: server_identity().node_id(),
        service: service(),
        concurrency: if point.rate.is_some() {
            4096
        } else {
            point.conc
        },
        payload: point.payload,
        total: None,
        duration: Some(point.duration),
        warmup: point.warmup,
        rate: point.rate,
    };
    let (tx, rx) = sync_channel(1);
    node.run_on_core(0, Box::new(ClosedLoop::new(spec, tx)))
        .map_err(|e| e.to_string())?;
    let limit = point.warmup + point.duration + STALL + Duration::from_secs(5);
    let r = rx
        .recv_timeout(limit)
        .map_err(|_| format!("{}: the load generator never reported", point.name()))?;
    Ok(PointResult {
        hist: r.hist,
        ok: r.ok,
        errors: r.errors,
        elapsed: r.elapsed,
        stalled: r.stalled,
        refused_sends: 0,
        cpu: None,
    })
}

/// SDK mode: `conc` tasks call through `net::Mesh` in a closed loop, on
/// tokio (`on_core` false) or spawned on the client's engine core
/// (`Mesh::spawn_on_core`, `on_core` true).
pub fn run_sdk(
    mesh: &net::Mesh,
    rt: &tokio::runtime::Runtime,
    point: &Point,
    on_core: bool,
) -> Result<PointResult, String> {
    let start = Instant::now();
    let measure_from = start + point.warmup;
    let end = measure_from + point.duration;
    let peer = server_identity().node_id();
    let payload = point.payload.max(8);
    let results = rt.block_on(async {
        let mut all = Vec::with_capacity(point.conc);
        if on_core {
            let mut tasks = Vec::with_capacity(point.conc);
            for t in 0..point.conc {
                let task = sdk_task(mesh.clone(), peer, t as u64, payload, measure_from, end);
                tasks.push(mesh.spawn_on_core(0, task).map_err(|e| e.to_string())?);
            }
            for t in tasks {
                all.push(t.await.map_err(|e| e.to_string())?);
            }
        } else {
            let mut tasks = Vec::with_capacity(point.conc);
            for t in 0..point.conc {
                let task = sdk_task(mesh.clone(), peer, t as u64, payload, measure_from, end);
                tasks.push(tokio::spawn(task));
            }
            for t in tasks {
                all.push(t.await.map_err(|e| e.to_string())?);
            }
        }
        Ok::<_, String>(all)
    })?;
    PointResult::of_tasks(results, point.duration)
}

/// One closed-loop caller: calls back to back until `end`, recording those
/// that end from `measure_from` on. Needs no runtime (it also runs on an
/// engine core). A full core inbox makes `call` wait (bounded by the call
/// deadline); a call refused even so means the transport is saturated.
async fn sdk_task(
    mesh: net::Mesh,
    peer: net_crypto::NodeId,
    t: u64,
    payload: usize,
    measure_from: Instant,
    end: Instant,
) -> Result<PointResult, String> {
    let mesh = &mesh;
    crate::closed_loop(t, payload, measure_from, end, |body| {
        let body = body.to_vec();
        async move {
            match mesh.call(peer, "echo", body).await {
                Ok(reply) => Ok(Some(reply)),
                Err(e) if e.status() == Some(Status::BACKPRESSURE) => {
                    Err(format!("transport saturated: {e}; not measurable here"))
                }
                Err(_) => Ok(None),
            }
        }
    })
    .await
}
