//! The pieces of `bulk` (bulk goodput of segmented unary calls): a "sink"
//! service that answers each request with its body's length, client flows
//! (one node, so one session, each) that push a fixed number of bytes or
//! push for a fixed time, and the child-process plumbing that runs the sink
//! server under `ip netns exec`.

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use net_engine::{CoreStats, DriverChoice, Handler, MeshNode, ServeOptions};
use net_proto::Status;
use serde::Serialize;

use crate::nrpc;

/// Name of the service that swallows request bodies.
pub const SINK: &str = "sink";
/// One mebibyte.
pub const MIB: u64 = 1 << 20;
/// How long the handshake call of each flow may take.
const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);

/// The sink's answer to a body of `len` bytes: `len` as 8 bytes, big endian.
pub fn sink_answer(len: usize) -> [u8; 8] {
    (len as u64).to_be_bytes()
}

/// The length a sink answer acknowledges, if `reply` is one.
pub fn acked_len(reply: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(reply.try_into().ok()?))
}

/// Starts the bench's server node (`nrpc::server`: fixed identity, echo
/// service) on `listen` and adds the [`SINK`] service to it.
pub fn sink_server(
    listen: SocketAddr,
    driver: DriverChoice,
    spin: Duration,
    cpu: Option<usize>,
) -> Result<MeshNode, String> {
    let node = nrpc::server(listen, driver, spin, cpu, Duration::ZERO)?;
    let sink: Arc<net_engine::SyncHandler> = Arc::new(|_, body: &[u8], out: &mut Vec<u8>| {
        out.extend_from_slice(&sink_answer(body.len()));
        Status::OK
    });
    let opts = ServeOptions {
        max_in_flight: Some(1 << 20),
        allowed: Vec::new(),
        ..Default::default()
    };
    node.serve(SINK, Handler::Sync(sink), opts)
        .map_err(|e| e.to_string())?;
    Ok(node)
}

/// A client node for flow `flow` (its own identity, so its own session with
/// the server), listening on `bind` (any port), peered with the sink server
/// at `server`. Unary calls without a deadline get `call_deadline`.
pub fn flow_client(
    server: SocketAddr,
    bind: IpAddr,
    driver: DriverChoice,
    spin: Duration,
    flow: usize,
    call_deadline: Duration,
) -> Result<net::Mesh, String> {
    let seed = [0x10u8.wrapping_add(flow as u8); 32];
    let mesh = net::Mesh::builder()
        .identity(net_crypto::Identity::from_seed(&seed))
        .psk(nrpc::PSK)
        .listen(SocketAddr::new(bind, 0))
        .driver(driver)
        .spin(spin)
        .call_deadline(Some(call_deadline))
        .peer(server, nrpc::server_identity())
        .build()
        .map_err(|e| e.to_string())?;
    mesh.start().map_err(|e| e.to_string())?;
    Ok(mesh)
}

/// What one flow sends.
#[derive(Clone, Copy, Debug)]
pub struct FlowPlan {
    /// Bytes to send in all (ignored when `for_time` is set).
    pub total: u64,
    /// Body size of one call (the last of a fixed total may be shorter).
    pub chunk: u64,
    /// Calls in flight.
    pub conc: usize,
    /// Send for this long instead of a fixed total: no call starts after it.
    pub for_time: Option<Duration>,
}

impl FlowPlan {
    /// Body length of call number `i`, or `None` once the flow is done
    /// (`elapsed` since the common start).
    fn call_len(&self, i: u64, elapsed: Duration) -> Option<u64> {
        match self.for_time {
            Some(d) => (elapsed < d).then_some(self.chunk),
            None => {
                let sent = i.checked_mul(self.chunk)?;
                (sent < self.total).then(|| self.chunk.min(self.total - sent))
            }
        }
    }
}

/// Sender-side counters of one flow's node over its measured stretch.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct SendCounters {
    /// Datagrams the kernel accepted from the node.
    pub datagrams_tx: u64,
    /// Bytes the protocol sent (ciphertext, headers included).
    pub bytes_tx: u64,
    /// Packets the node declared lost.
    pub packets_lost: u64,
    /// Frames it re-queued after loss.
    pub frames_retransmitted: u64,
    /// Probe timeouts it fired.
    pub ptos: u64,
}

impl SendCounters {
    /// The node's counters now, summed over its cores.
    pub fn of(stats: &[CoreStats]) -> Self {
        stats.iter().fold(Self::default(), |a, s| SendCounters {
            datagrams_tx: a.datagrams_tx + s.io.tx_datagrams,
            bytes_tx: a.bytes_tx + s.proto.bytes_tx,
            packets_lost: a.packets_lost + s.proto.packets_lost,
            frames_retransmitted: a.frames_retransmitted + s.proto.frames_retransmitted,
            ptos: a.ptos + s.proto.ptos,
        })
    }

    /// What happened between `before` and `self`.
    pub fn since(&self, before: &Self) -> Self {
        SendCounters {
            datagrams_tx: self.datagrams_tx.saturating_sub(before.datagrams_tx),
            bytes_tx: self.bytes_tx.saturating_sub(before.bytes_tx),
            packets_lost: self.packets_lost.saturating_sub(before.packets_lost),
            frames_retransmitted: self
                .frames_retransmitted
                .saturating_sub(before.frames_retransmitted),
            ptos: self.ptos.saturating_sub(before.ptos),
        }
    }
}

/// What one flow achieved.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FlowResult {
    /// Flow number, from 1.
    pub flow: usize,
    /// Body bytes the sink acknowledged with the right length.
    pub bytes: u64,
    /// Calls answered correctly.
    pub calls: u64,
    /// Calls failed or answered with a wrong length.
    pub errors: u64,
    /// The first error, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
    /// From the common start to this flow's last answer.
    pub seconds: f64,
    /// `bytes` × 8 / `seconds` / 10⁶.
    pub goodput_mbps: f64,
    /// The flow's node's sender counters over the stretch.
    pub sent: SendCounters,
}

/// Goodput in Mbit/s (10⁶ bit/s) of `bytes` over `seconds`.
pub fn mbps(bytes: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        bytes as f64 * 8.0 / seconds / 1e6
    } else {
        0.0
    }
}

/// One small sink call, so the flow's handshake is done before timing starts.
pub async fn handshake(mesh: &net::Mesh) -> Result<(), String> {
    let peer = nrpc::server_identity().node_id();
    let opts = net::CallOptions {
        deadline: Some(HANDSHAKE_DEADLINE),
    };
    let reply = mesh
        .call_with(peer, SINK, vec![0u8; 8], opts)
        .await
        .map_err(|e| format!("handshake call: {e}"))?;
    match acked_len(&reply) {
        Some(8) => Ok(()),
        _ => Err(format!("handshake call: sink answered {reply:?}")),
    }
}

/// What the calls of one flow share.
struct Shared {
    mesh: net::Mesh,
    plan: FlowPlan,
    body: Vec<u8>,
    next: AtomicU64,
    start: Instant,
    retry_for: Duration,
}

/// One sender's tally.
#[derive(Default)]
struct Tally {
    bytes: u64,
    calls: u64,
    errors: u64,
    first_error: Option<String>,
    last_answer: Duration,
}

impl Tally {
    fn fail(&mut self, why: String) {
        self.errors += 1;
        self.first_error.get_or_insert(why);
    }
}

/// One call of `len` bytes; a `Backpressure` refusal is retried for
/// `retry_for`. Returns the length the sink acknowledged.
async fn sink_call(s: &Shared, len: usize) -> Result<u64, String> {
    let peer = nrpc::server_identity().node_id();
    let give_up = Instant::now() + s.retry_for;
    loop {
        match s.mesh.call(peer, SINK, s.body[..len].to_vec()).await {
            Err(e) if e.status() == Some(Status::BACKPRESSURE) && Instant::now() < give_up => {
                tokio::time::sleep(Duration::from_millis(1)).await
            }
            Err(e) => return Err(format!("call of {len} B: {e}")),
            Ok(reply) => {
                return acked_len(&reply)
                    .ok_or_else(|| format!("call of {len} B: sink answered {} B", reply.len()))
            }
        }
    }
}

/// A closed loop: takes the next call of the plan until none is left.
async fn sender(s: Arc<Shared>) -> Tally {
    let mut t = Tally::default();
    loop {
        let i = s.next.fetch_add(1, Ordering::Relaxed);
        let Some(len) = s.plan.call_len(i, s.start.elapsed()) else {
            return t;
        };
        let len = len as usize;
        match sink_call(&s, len).await {
            Ok(n) if n == len as u64 => {
                t.bytes += n;
                t.calls += 1;
                t.last_answer = s.start.elapsed();
            }
            Ok(n) => t.fail(format!("sent {len} B, sink acknowledged {n} B")),
            Err(e) => t.fail(e),
        }
    }
}

/// Runs flow `flow` on `mesh` from `start` (the flows' common start) to its
/// last answer; `retry_for` bounds backpressure retries.
pub async fn run_flow(
    mesh: net::Mesh,
    flow: usize,
    plan: FlowPlan,
    start: Instant,
    retry_for: Duration,
) -> Result<FlowResult, String> {
    let before = SendCounters::of(&mesh.stats());
    let body: Vec<u8> = (0..plan.chunk).map(|i| (i % 251) as u8).collect();
    let shared = Arc::new(Shared {
        mesh: mesh.clone(),
        plan,
        body,
        next: AtomicU64::new(0),
        start,
        retry_for,
    });
    let tasks: Vec<_> = (0..plan.conc.max(1))
        .map(|_| tokio::spawn(sender(shared.clone())))
        .collect();
    let mut r = FlowResult {
        flow,
        ..Default::default()
    };
    let mut last = Duration::ZERO;
    for t in tasks {
        let t = t.await.map_err(|e| format!("flow {flow}: {e}"))?;
        r.bytes += t.bytes;
        r.calls += t.calls;
        r.errors += t.errors;
        if r.first_error.is_none() {
            r.first_error = t.first_error;
        }
        last = last.max(t.last_answer);
    }
    r.seconds = last.as_secs_f64();
    r.goodput_mbps = mbps(r.bytes, r.seconds);
    r.sent = SendCounters::of(&mesh.stats()).since(&before);
    Ok(r)
}

/// Spawns `exe args…` (under `ip netns exec NS` if `netns` is given) as a
/// server child with piped stdin (closing it stops the child) and returns
/// once it printed `READY <addr>`.
pub fn spawn_server(
    exe: &Path,
    netns: Option<&str>,
    args: &[String],
) -> Result<(Child, SocketAddr), String> {
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(exe);
            c
        }
        None => Command::new(exe),
    };
    let mut child = cmd
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawning the server ({}): {e}", exe.display()))?;
    let mut out = BufReader::new(child.stdout.take().expect("piped"));
    let mut line = String::new();
    let read = out.read_line(&mut line).map_err(|e| e.to_string());
    let addr = line
        .trim()
        .strip_prefix("READY ")
        .and_then(|a| a.parse().ok());
    match (read, addr) {
        (Ok(_), Some(addr)) => Ok((child, addr)),
        (read, _) => {
            // Tearing down a child that failed to start: its own error is
            // what is reported below; nothing can act on these.
            let _ = child.kill();
            let _ = child.wait();
            Err(match read {
                Err(e) => format!("reading the server's READY line: {e}"),
                Ok(_) if line.is_empty() => "the server exited before it was ready".into(),
                Ok(_) => format!("the server said {line:?}"),
            })
        }
    }
}

/// Blocks until stdin closes (the parent's way of saying stop; also what
/// happens if the parent dies).
pub fn wait_for_stdin_eof() {
    let mut line = String::new();
    while std::io::stdin()
        .read_line(&mut line)
        .map(|n| n > 0)
        .unwrap_or(false)
    {
        line.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_splits_a_total_into_chunks() {
        let p = FlowPlan {
            total: 10,
            chunk: 4,
            conc: 2,
            for_time: None,
        };
        let z = Duration::ZERO;
        let lens: Vec<_> = (0..4).map(|i| p.call_len(i, z)).collect();
        assert_eq!(lens, [Some(4), Some(4), Some(2), None]);
    }

    #[test]
    fn sink_answer_round_trips() {
        assert_eq!(acked_len(&sink_answer(16 << 20)), Some(16 << 20));
        assert_eq!(acked_len(&[1, 2, 3]), None);
    }
}
