//! Configuration of a [`MeshNode`](crate::MeshNode).

use std::net::SocketAddr;
use std::time::Duration;

use net_crypto::{Backend, BackendChoice, Identity, NodeId, PublicIdentity, Suite};
use net_io::{DriverChoice, DriverConfig};
use net_proto::{EndpointConfig, HandshakeLimits, TransportParams};

/// A peer the node may call: where it listens and who it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerConfig {
    /// UDP address of any of the peer's sockets (its reuseport group shares one port).
    pub addr: SocketAddr,
    /// The peer's public identity; its node id and Noise key derive from it.
    pub identity: PublicIdentity,
}

/// How a node runs. Build with [`MeshNodeConfig::new`] and the `with_*` methods.
#[derive(Clone)]
pub struct MeshNodeConfig {
    pub(crate) identity: Identity,
    pub(crate) psk: [u8; 32],
    pub(crate) listen: SocketAddr,
    pub(crate) cores: usize,
    pub(crate) cpus: Option<Vec<usize>>,
    pub(crate) driver: DriverChoice,
    pub(crate) driver_cfg: DriverConfig,
    pub(crate) spin: Duration,
    pub(crate) spin_yield: bool,
    pub(crate) aead: BackendChoice,
    pub(crate) peers: Vec<PeerConfig>,
    pub(crate) params: TransportParams,
    pub(crate) handshake_retry: Duration,
    pub(crate) handshake_attempts: u32,
    pub(crate) idle_timeout: Duration,
    pub(crate) detector: net_proto::DetectorConfig,
    pub(crate) max_in_flight: u32,
    pub(crate) inbox: usize,
    pub(crate) announce: net_trust::AnnouncePolicy,
    pub(crate) fold_limits: net_trust::FoldLimits,
    pub(crate) token_roots: Vec<PublicIdentity>,
    pub(crate) token: Option<net_trust::TokenChain>,
    /// Caller-side allow-list per service name: who `call_service` may
    /// route that service's payloads to (see `with_trusted_providers`).
    pub(crate) trusted_providers: std::collections::BTreeMap<String, Vec<NodeId>>,
    pub(crate) testing_ignore_credit: bool,
    pub(crate) handshake_limits: HandshakeLimits,
    pub(crate) max_sessions: usize,
    pub(crate) max_sessions_per_peer: usize,
    pub(crate) reserved_sessions: usize,
    /// When set, `start` binds the cores' drivers on this in-process network
    /// instead of UDP sockets (tests); `driver` is then ignored.
    pub(crate) memory_net: Option<net_io::MemNet>,
}

impl MeshNodeConfig {
    /// Defaults: listen on 127.0.0.1 with an ephemeral port, one core,
    /// driver from `NET_DRIVER` (else auto), 50 µs of spinning before parking.
    pub fn new(identity: Identity, psk: [u8; 32]) -> Self {
        MeshNodeConfig {
            identity,
            psk,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            cores: 1,
            cpus: None,
            driver: DriverChoice::from_env().unwrap_or(DriverChoice::Auto),
            driver_cfg: DriverConfig::default(),
            spin: Duration::from_micros(50),
            spin_yield: true,
            aead: BackendChoice::from_env().unwrap_or_default(),
            peers: Vec::new(),
            params: TransportParams::default(),
            handshake_retry: Duration::from_millis(250),
            handshake_attempts: 8,
            idle_timeout: Duration::from_secs(30),
            detector: net_proto::DetectorConfig::default(),
            max_in_flight: 4096,
            inbox: 4096,
            announce: net_trust::AnnouncePolicy {
                reannounce_interval: Duration::from_secs(150),
                min_announce_interval: Duration::from_secs(10),
            },
            fold_limits: net_trust::FoldLimits::default(),
            token_roots: Vec::new(),
            token: None,
            trusted_providers: std::collections::BTreeMap::new(),
            testing_ignore_credit: false,
            handshake_limits: HandshakeLimits::default(),
            max_sessions: net_proto::config::DEFAULT_MAX_SESSIONS,
            max_sessions_per_peer: net_proto::config::DEFAULT_MAX_SESSIONS_PER_PEER,
            reserved_sessions: net_proto::config::DEFAULT_RESERVED_SESSIONS,
            memory_net: None,
        }
    }

    /// Address to bind (port 0 picks one; all cores share it).
    pub fn with_listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// Number of cores (event-loop threads, one socket each).
    pub fn with_cores(mut self, n: usize) -> Self {
        self.cores = n.clamp(1, 64);
        self
    }

    /// Pins core `i`'s loop thread to CPU `cpus[i % cpus.len()]`. Unpinned by
    /// default: two nodes on one machine pinned to the same CPUs would make
    /// their spinning loops take turns (measured: +2 × spin per round trip).
    pub fn with_cpus(mut self, cpus: Vec<usize>) -> Self {
        self.cpus = (!cpus.is_empty()).then_some(cpus);
        self
    }

    /// `true` pins core `i` to CPU `i`; `false` (the default) leaves
    /// placement to the kernel. See [`with_cpus`](Self::with_cpus).
    pub fn with_pinning(mut self, pin: bool) -> Self {
        self.cpus = pin.then(|| (0..self.cores).collect());
        self
    }

    /// UDP driver: auto (uring → mmsg → portable) or a forced kind.
    pub fn with_driver(mut self, driver: DriverChoice) -> Self {
        self.driver = driver;
        self
    }

    /// How long an idle loop polls before parking in the kernel. Spinning
    /// trades a core's CPU for latency: waking a parked thread costs ~30 µs
    /// on our machines, a spinning one notices work within a microsecond.
    pub fn with_spin(mut self, spin: Duration) -> Self {
        self.spin = spin;
        self
    }

    /// Whether a spinning idle loop yields its CPU (`sched_yield`) after
    /// each pass that found nothing to do (default true). Where other
    /// threads share the CPUs with the cores — the tokio workers that issue
    /// SDK calls, on a 2-core machine — a pure spin holds the CPU those
    /// threads need to issue the next calls. Measured 2026-12-03, three
    /// interleaved runs each (docs/BENCHMARKS.md, "Spin yield"): SDK c16/32 B
    /// 88 k → 251 k calls/s, c128 214 k → 298 k; SDK c1 46 k → 38 k (p50
    /// 20.0 → 22.6 µs: each idle pass now costs a syscall); engine mode
    /// within noise. Turn it off for cores that own their CPUs outright.
    pub fn with_spin_yield(mut self, on: bool) -> Self {
        self.spin_yield = on;
        self
    }

    /// AEAD backend choice (default from `NET_AEAD`, else ring).
    pub fn with_aead(mut self, aead: BackendChoice) -> Self {
        self.aead = aead;
        self
    }

    /// Adds a peer this node may call by node id.
    pub fn with_peer(mut self, addr: SocketAddr, identity: PublicIdentity) -> Self {
        self.peers.push(PeerConfig { addr, identity });
        self
    }

    /// Session idle timeout, and the heartbeat: a session that sent nothing
    /// for that long sends a PING (keepalive). The failure detector keeps
    /// its proportions: a peer silent for 3 heartbeats is Suspect, for 6
    /// Down (set them apart with [`with_failure_detector`](Self::with_failure_detector)).
    pub fn with_timeouts(mut self, idle: Duration, heartbeat: Duration) -> Self {
        self.idle_timeout = idle;
        self.detector = net_proto::DetectorConfig {
            heartbeat,
            suspect_after: heartbeat * 3,
            down_after: heartbeat * 6,
            ..self.detector
        };
        self
    }

    /// The failure detector: heartbeat (also the keepalive), how long a
    /// silent peer takes to become Suspect and Down, and how many peers each
    /// core watches. Checked by [`MeshNode::new`](crate::MeshNode::new).
    pub fn with_failure_detector(mut self, detector: net_proto::DetectorConfig) -> Self {
        self.detector = detector;
        self
    }

    /// Handshake retransmission timeout (doubling) and attempts.
    pub fn with_handshake(mut self, retry: Duration, attempts: u32) -> Self {
        self.handshake_retry = retry;
        self.handshake_attempts = attempts.max(1);
        self
    }

    /// Capability re-announce cadence (default 150 s; `Duration::MAX`
    /// disables the periodic re-announce) and the minimum gap between
    /// network announces (default 10 s; a change inside it is delayed, never
    /// dropped). Announcements carry TTL = 2 × max(reannounce, min).
    pub fn with_capability_intervals(
        mut self,
        reannounce: Duration,
        min_announce: Duration,
    ) -> Self {
        self.announce = net_trust::AnnouncePolicy {
            reannounce_interval: reannounce,
            min_announce_interval: min_announce,
        };
        self
    }

    /// Bounds of the discovery fold, which holds peers' capability
    /// announcements (default [`net_trust::FoldLimits::default`]: 32 MiB,
    /// 32 KiB per node across classes, a quarter reserved for newcomers,
    /// nodes settle after 10 min). Peers added with
    /// [`with_peer`](Self::with_peer) are protected: never evicted for
    /// another node. Policy and guarantees: `engine/trust/src/fold.rs`.
    pub fn with_fold_limits(mut self, limits: net_trust::FoldLimits) -> Self {
        self.fold_limits = limits;
        self
    }

    /// Roots whose delegation chains are accepted for services served with
    /// `require_token`.
    pub fn with_token_roots(mut self, roots: Vec<PublicIdentity>) -> Self {
        self.token_roots = roots;
        self
    }

    /// A token chain this node presents on every session it opens or
    /// accepts (its leaf must name this node).
    pub fn with_token(mut self, token: net_trust::TokenChain) -> Self {
        self.token = Some(token);
        self
    }

    /// Trusts `providers` to serve `service` when this node routes by
    /// service name ([`MeshNode::call_service`](crate::MeshNode::call_service)).
    /// Adds to any earlier list for `service`. Default: nobody.
    ///
    /// Advertising a service is not a reason to receive its payloads: any
    /// node holding the mesh PSK can advertise any name. `call_service`
    /// sends only to advertising nodes listed here or presenting a token
    /// chain rooted in [`with_token_roots`](Self::with_token_roots) whose
    /// scope holds `nrpc-serve:<service>` (`net_trust::NRPC_SERVE_SCOPE_PREFIX`);
    /// others are still listed by `discover` and reachable with
    /// `call_service_untrusted` or a call by node id. The list only
    /// chooses where this node's calls go; it grants nobody access here.
    pub fn with_trusted_providers(
        mut self,
        service: &str,
        providers: impl IntoIterator<Item = NodeId>,
    ) -> Self {
        let list = self
            .trusted_providers
            .entry(service.to_string())
            .or_default();
        for p in providers {
            if !list.contains(&p) {
                list.push(p);
            }
        }
        self
    }

    /// Test hook: this node ignores peers' call and stream credit, to play
    /// a misbehaving peer in hostile-input tests. Never set in production.
    #[doc(hidden)]
    pub fn testing_ignore_credit(mut self) -> Self {
        self.testing_ignore_credit = true;
        self
    }

    /// Default per-service limit, per core, of unanswered calls and of
    /// async handlers running at once (beyond it: `Backpressure`).
    pub fn with_max_in_flight(mut self, n: u32) -> Self {
        self.max_in_flight = n.max(1);
        self
    }

    /// Capacity of each core's queue of new work from other threads (calls,
    /// registrations; default 4096, at least 16). When it is full, new calls
    /// are refused with `Backpressure`; answers and stream messages of
    /// existing calls do not use it and are never refused.
    pub fn with_inbox(mut self, n: usize) -> Self {
        self.inbox = n.max(16);
        self
    }

    /// Transport parameters offered to peers.
    pub fn with_transport_params(mut self, params: TransportParams) -> Self {
        self.params = params;
        self
    }

    /// Handshake load control: the initiation budget per core and when
    /// cookies are required (see `net_proto::HandshakeLimits`).
    pub fn with_handshake_limits(mut self, limits: HandshakeLimits) -> Self {
        self.handshake_limits = limits;
        self
    }

    /// Each core's session table: at most `max` sessions (default 4 096),
    /// at most `per_peer` of them accepted from one peer identity (default
    /// 64; a peer opens one per core), and `reserved` slots (default 1 024)
    /// that peers not added with [`with_peer`](Self::with_peer) cannot
    /// take. When the table is full, an unconfigured peer's session is
    /// evicted to make room; configured peers' sessions never are (policy:
    /// `engine/proto/src/admission.rs`). `reserved` is capped at `max`.
    pub fn with_session_limits(mut self, max: usize, per_peer: usize, reserved: usize) -> Self {
        self.max_sessions = max.max(1);
        self.max_sessions_per_peer = per_peer.max(1);
        self.reserved_sessions = reserved.min(self.max_sessions);
        self
    }

    /// Driver batch size and datagram slot size.
    pub fn with_driver_config(mut self, cfg: DriverConfig) -> Self {
        self.driver_cfg = cfg;
        self
    }

    /// Runs the node on an in-process network instead of UDP sockets: `start`
    /// binds the listen address (port 0 picks one) with
    /// [`MemNet::bind_group`](net_io::MemNet::bind_group), one
    /// [`DriverKind::Memory`](net_io::DriverKind::Memory) driver per core,
    /// steered like the kernel's reuseport group, and ignores the driver
    /// choice. Nodes sharing one `MemNet` (clones) reach each other; no
    /// socket is opened, so tests need no free port.
    pub fn with_memory_network(mut self, net: net_io::MemNet) -> Self {
        self.memory_net = Some(net);
        self
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.identity.node_id()
    }

    /// The identity's public half (what peers configure).
    pub fn public_identity(&self) -> PublicIdentity {
        self.identity.public()
    }

    /// Bits of a receiver index that name the core.
    pub(crate) fn core_bits(&self) -> u32 {
        usize::BITS - (self.cores.max(1) - 1).leading_zeros()
    }

    /// The protocol configuration of core `core`.
    pub(crate) fn endpoint_config(&self, core: usize, aead: Backend) -> EndpointConfig {
        let mut c = EndpointConfig::new(self.identity.clone(), self.psk);
        c.aead = aead;
        c.params = self.params;
        // Offer only what this backend runs fast on this CPU.
        c.params.aead_suites &= Suite::offer(aead);
        // Never write or invite datagrams the driver's slots cannot hold.
        let slot = self.driver_cfg.max_datagram;
        c.max_datagram = c.max_datagram.min(slot);
        c.base_datagram = c.base_datagram.min(slot);
        c.params.max_datagram = c
            .params
            .max_datagram
            .min(slot.try_into().unwrap_or(u16::MAX));
        c.handshake_retry = self.handshake_retry;
        c.handshake_attempts = self.handshake_attempts;
        c.idle_timeout = self.idle_timeout;
        c.detector = self.detector;
        c.core_id = core as u32;
        c.core_bits = self.core_bits();
        c.lane = core as u16;
        c.testing_ignore_credit = self.testing_ignore_credit;
        c.handshake_limits = self.handshake_limits;
        c.max_sessions = self.max_sessions;
        c.max_sessions_per_peer = self.max_sessions_per_peer;
        c.reserved_sessions = self.reserved_sessions;
        // Configured peers use the reservation and are never evicted.
        c.reserved_peers = self.peers.iter().map(|p| p.identity.node_id()).collect();
        // Receiver indexes should not be guessable off-path: seed from the
        // OS randomness std already uses for its hash keys.
        c.rng_seed = {
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_usize(core);
            h.finish()
        };
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Configured peers reach every core's endpoint as reserved peers, with
    /// the session limits.
    #[test]
    fn endpoint_config_reserves_configured_peers() {
        let peer = Identity::from_seed(&[2; 32]).public();
        let cfg = MeshNodeConfig::new(Identity::from_seed(&[1; 32]), [7; 32])
            .with_peer(SocketAddr::from(([127, 0, 0, 1], 9)), peer)
            .with_session_limits(512, 8, 64);
        let ep = cfg.endpoint_config(0, Backend::Ring);
        assert!(ep.reserved_peers.contains(&peer.node_id()));
        assert_eq!(ep.reserved_peers.len(), 1);
        assert_eq!(
            (
                ep.max_sessions,
                ep.max_sessions_per_peer,
                ep.reserved_sessions
            ),
            (512, 8, 64)
        );
    }
}
