//! The nRPC client of a run, in either mode: a node whose core issues the
//! calls (engine), or a `net::Mesh` called from tokio tasks (SDK).

use std::net::SocketAddr;
use std::time::Duration;

use net_bench::{nrpc, Point, PointResult};
use net_proto::Status;

use super::{driver, fail, Args, Mode};

/// The nRPC client side, in either mode, peered with one server.
pub(crate) enum NrpcClient {
    /// Calls from the client node's own core.
    Engine(Box<net_engine::MeshNode>),
    /// Calls through the public API: from tokio tasks, or (`on_core`) from
    /// futures spawned on the client's engine core.
    Sdk {
        mesh: net::Mesh,
        rt: tokio::runtime::Runtime,
        on_core: bool,
    },
}

impl NrpcClient {
    pub(crate) fn start(args: &Args, addr: SocketAddr, mode: Mode) -> Self {
        let spin = Duration::from_micros(args.spin_us);
        match mode {
            Mode::Engine => NrpcClient::Engine(Box::new(
                nrpc::client(addr, args.bind, driver(args), spin, Some(args.client_cpu))
                    .unwrap_or_else(|e| fail(&e)),
            )),
            Mode::Sdk | Mode::Core => {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                    .unwrap_or_else(|e| fail(&e.to_string()));
                // Not the engine client's identity (seed 2) nor each
                // other's: the clients are up at once, and a server keeps
                // one session per peer.
                let seed = if mode == Mode::Core { 4 } else { 3 };
                let base = net_bench::tune(net_engine::MeshNodeConfig::new(
                    net_crypto::Identity::from_seed(&[seed; 32]),
                    nrpc::PSK,
                ));
                // On-core futures share the core's thread: pin it as the
                // engine mode's core is.
                let on_core = mode == Mode::Core;
                let base = if on_core {
                    base.with_cpus(vec![args.client_cpu])
                } else {
                    base
                };
                let mesh = net::Mesh::builder()
                    .node_config(base)
                    .listen(SocketAddr::new(args.bind, 0))
                    .driver(driver(args))
                    .spin(spin)
                    .peer(addr, nrpc::server_identity())
                    .build()
                    .unwrap_or_else(|e| fail(&e.to_string()));
                mesh.start().unwrap_or_else(|e| fail(&e.to_string()));
                NrpcClient::Sdk { mesh, rt, on_core }
            }
        }
    }

    /// (driver, AEAD) of the client.
    pub(crate) fn describe(&self) -> (String, String) {
        match self {
            NrpcClient::Engine(node) => (
                node.driver().map(|d| d.to_string()).unwrap_or_default(),
                node.aead().to_string(),
            ),
            NrpcClient::Sdk { mesh, .. } => (mesh.describe().0, mesh.describe().1.to_string()),
        }
    }

    /// One line of the client core's loss and retransmission counters
    /// (`NRPC_QPS_STATS=1`, a diagnostic).
    pub(crate) fn loss_line(&self) -> String {
        let stats = match self {
            NrpcClient::Engine(node) => node.stats(),
            NrpcClient::Sdk { mesh, .. } => mesh.stats(),
        };
        stats
            .iter()
            .map(|s| {
                format!(
                    "core {}: packets lost {}, PTOs {}, frames retransmitted {}, rx errors {}, datagrams tx {} rx {}",
                    s.core,
                    s.proto.packets_lost,
                    s.proto.ptos,
                    s.proto.frames_retransmitted,
                    s.io.rx_errors,
                    s.proto.datagrams_tx,
                    s.proto.datagrams_rx
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Why nRPC cannot carry a unary call of `payload` bytes on this path,
    /// asked with one probe call before the point is measured (exits if
    /// the probe fails any other way).
    pub(crate) fn skip_reason(&self, payload: usize) -> Option<String> {
        let status = match self {
            NrpcClient::Engine(node) => nrpc::probe_engine(node, payload),
            NrpcClient::Sdk { mesh, rt, .. } => nrpc::probe_sdk(mesh, rt, payload),
        }
        .unwrap_or_else(|e| fail(&e));
        if status == Status::PAYLOAD_TOO_LARGE {
            Some(format!(
                "nRPC answered PayloadTooLarge to a {payload} B unary call (a unary message must fit one packet on this path)"
            ))
        } else if status.is_ok() {
            None
        } else {
            fail(&format!(
                "probe call of {payload} B failed with status {status}"
            ))
        }
    }

    /// Measures one point; a point with no completed call is returned, not
    /// fatal (a slice on a loaded machine may be starved).
    pub(crate) fn run_unchecked(&self, p: &Point) -> PointResult {
        match self {
            NrpcClient::Engine(node) => nrpc::run_engine(node, p).unwrap_or_else(|e| fail(&e)),
            NrpcClient::Sdk { mesh, rt, on_core } => nrpc::run_sdk(mesh, rt, p, *on_core)
                .unwrap_or_else(|e| fail(&format!("nrpc {}: {e}", p.name()))),
        }
    }
}

impl Drop for NrpcClient {
    fn drop(&mut self) {
        // Best effort: the run's figures are already taken.
        let grace = Duration::from_millis(200);
        match self {
            NrpcClient::Engine(node) => {
                let _ = node.shutdown(grace);
            }
            NrpcClient::Sdk { mesh, .. } => {
                let _ = mesh.shutdown(grace);
            }
        }
    }
}
