//! `Mesh`: building, starting and serving.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use net_crypto::{Identity, NodeId, PublicIdentity};
use net_engine::{
    CoreStats, DriverChoice, Handler, IncomingCall, MeshNode, MeshNodeConfig, RequestInfo,
    ServeOptions,
};
use net_proto::{PeerEvent, PeerState, ServiceId, Status};

use crate::error::MeshError;

/// Builds a [`Mesh`]. Identity and PSK are required; everything else has defaults.
#[derive(Default)]
pub struct MeshBuilder {
    identity: Option<Identity>,
    psk: Option<[u8; 32]>,
    listen: Option<SocketAddr>,
    cores: Option<usize>,
    driver: Option<DriverChoice>,
    spin: Option<Duration>,
    spin_yield: Option<bool>,
    pin: Option<bool>,
    peers: Vec<(SocketAddr, PublicIdentity)>,
    trusted_providers: Vec<(String, Vec<NodeId>)>,
    detector: Option<net_proto::DetectorConfig>,
    call_deadline: Option<Option<Duration>>,
    base: Option<MeshNodeConfig>,
}

impl MeshBuilder {
    /// This node's identity.
    pub fn identity(mut self, id: Identity) -> Self {
        self.identity = Some(id);
        self
    }
    /// The mesh pre-shared key.
    pub fn psk(mut self, psk: [u8; 32]) -> Self {
        self.psk = Some(psk);
        self
    }
    /// Address to listen on (default 127.0.0.1, ephemeral port).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = Some(addr);
        self
    }
    /// Event-loop cores (default 1).
    pub fn cores(mut self, n: usize) -> Self {
        self.cores = Some(n);
        self
    }
    /// UDP driver (default: `NET_DRIVER`, else auto).
    pub fn driver(mut self, d: DriverChoice) -> Self {
        self.driver = Some(d);
        self
    }
    /// Spin before parking (default 50 µs).
    pub fn spin(mut self, d: Duration) -> Self {
        self.spin = Some(d);
        self
    }
    /// Whether a spinning core yields its CPU after each idle pass (default
    /// on: the tokio threads calling through this mesh may share the
    /// cores' CPUs; see `MeshNodeConfig::with_spin_yield`).
    pub fn spin_yield(mut self, on: bool) -> Self {
        self.spin_yield = Some(on);
        self
    }
    /// Pin core `i` to CPU `i` (default off; see `MeshNodeConfig::with_cpus`).
    pub fn pin(mut self, pin: bool) -> Self {
        self.pin = Some(pin);
        self
    }
    /// The failure detector (default: heartbeat 1 s, Suspect after 3 s and
    /// Down after 6 s of silence); checked by `build`.
    pub fn failure_detector(mut self, d: net_proto::DetectorConfig) -> Self {
        self.detector = Some(d);
        self
    }
    /// Deadline of unary calls made without one (default 30 s; `None`:
    /// wait for the outcome however long it takes). A call never waits
    /// minutes silently: past it, it fails `Timeout` with the cause.
    pub fn call_deadline(mut self, d: Option<Duration>) -> Self {
        self.call_deadline = Some(d);
        self
    }
    /// A peer this node may call.
    pub fn peer(mut self, addr: SocketAddr, identity: PublicIdentity) -> Self {
        self.peers.push((addr, identity));
        self
    }

    /// Trusts `providers` to serve `service`: [`Mesh::call_service`] sends
    /// `service`'s payloads only to advertisers listed here (or holding a
    /// token chain scoped `nrpc-serve:<service>` from this node's token
    /// roots). Adds to any earlier list for `service`; default: nobody. See
    /// `MeshNodeConfig::with_trusted_providers`.
    pub fn trusted_providers(mut self, service: &str, providers: Vec<NodeId>) -> Self {
        self.trusted_providers
            .push((service.to_string(), providers));
        self
    }

    /// Starts from a complete engine configuration (every knob, e.g. one
    /// loaded from a TOML file by the `net` CLI, crate `net-cli`); identity and PSK come from
    /// it, so [`identity`](Self::identity) and [`psk`](Self::psk) must not
    /// also be set. The builder's other settings apply on top of it.
    pub fn node_config(mut self, cfg: MeshNodeConfig) -> Self {
        self.base = Some(cfg);
        self
    }

    /// Validates and creates the mesh (nothing is bound until `start`).
    pub fn build(self) -> Result<Mesh, MeshError> {
        let mut cfg = match self.base {
            Some(base) => {
                if self.identity.is_some() || self.psk.is_some() {
                    return Err(MeshError::Conflict(
                        "identity and psk come from node_config; do not set them too",
                    ));
                }
                base
            }
            None => {
                let identity = self.identity.ok_or(MeshError::MissingIdentity)?;
                let psk = self.psk.ok_or(MeshError::MissingPsk)?;
                MeshNodeConfig::new(identity, psk)
            }
        };
        if let Some(a) = self.listen {
            cfg = cfg.with_listen(a);
        }
        if let Some(n) = self.cores {
            cfg = cfg.with_cores(n);
        }
        if let Some(d) = self.driver {
            cfg = cfg.with_driver(d);
        }
        if let Some(y) = self.spin_yield {
            cfg = cfg.with_spin_yield(y);
        }
        if let Some(s) = self.spin {
            cfg = cfg.with_spin(s);
        }
        if let Some(p) = self.pin {
            cfg = cfg.with_pinning(p);
        }
        if let Some(d) = self.detector {
            cfg = cfg.with_failure_detector(d);
        }
        for (addr, id) in self.peers {
            cfg = cfg.with_peer(addr, id);
        }
        for (service, providers) in self.trusted_providers {
            cfg = cfg.with_trusted_providers(&service, providers);
        }
        let node = Arc::new(MeshNode::new(cfg)?);
        let (peers, _) = tokio::sync::broadcast::channel(PEER_EVENTS_BUFFER);
        let tx = peers.clone();
        node.on_peer_event(Arc::new(move |e: &PeerEvent| {
            // Fails only while nobody subscribes: then nobody is told.
            let _ = tx.send(*e);
        }));
        let call_deadline = self.call_deadline.unwrap_or(Some(DEFAULT_CALL_DEADLINE));
        Ok(Mesh {
            node,
            peers,
            call_deadline,
        })
    }
}

/// Deadline of unary calls made without one ([`MeshBuilder::call_deadline`]).
pub const DEFAULT_CALL_DEADLINE: Duration = Duration::from_secs(30);

/// Peer-state changes a slow [`PeerEvents`] subscriber may fall behind by
/// before it misses some (and is told how many).
const PEER_EVENTS_BUFFER: usize = 1024;

/// Changes of the node's view of its peers' liveness, from
/// [`Mesh::peer_events`]: a `Stream` of [`PeerEvent`]s (Up, Suspect,
/// Down). A subscriber that falls more than 1 024 changes behind gets
/// `Err(missed)` with how many it missed; [`Mesh::peer_state`] then gives
/// the current view.
pub struct PeerEvents(tokio_stream::wrappers::BroadcastStream<PeerEvent>);

impl tokio_stream::Stream for PeerEvents {
    type Item = Result<PeerEvent, u64>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use tokio_stream::wrappers::errors::BroadcastStreamRecvError::Lagged;
        std::pin::Pin::new(&mut self.0)
            .poll_next(cx)
            .map(|item| item.map(|r| r.map_err(|Lagged(n)| n)))
    }
}

/// A node of the mesh, from the application's side. Cheap to clone.
#[derive(Clone)]
pub struct Mesh {
    pub(crate) node: Arc<MeshNode>,
    /// Peer-state changes, fanned out to [`PeerEvents`] subscribers.
    peers: tokio::sync::broadcast::Sender<PeerEvent>,
    /// Deadline of unary calls made without one.
    pub(crate) call_deadline: Option<Duration>,
}

/// Unregisters its service (and withdraws its advertisement) when dropped.
#[must_use = "dropping the handle stops serving"]
pub struct ServeHandle {
    node: Arc<MeshNode>,
    service: String,
}

impl Drop for ServeHandle {
    fn drop(&mut self) {
        // Fails only if the node is not running (then nothing serves) or a
        // core did not acknowledge in time; a drop cannot report either.
        if let Err(e) = self.node.unserve(&self.service) {
            tracing::debug!(service = %self.service, error = %e, "unserve on drop");
        }
    }
}

/// A request as an async handler sees it.
#[derive(Debug, Clone)]
pub struct Request {
    /// Authenticated caller.
    pub peer: NodeId,
    /// Service called.
    pub service: ServiceId,
    /// Request body.
    pub payload: Bytes,
}

impl Mesh {
    /// Starts building a mesh node.
    pub fn builder() -> MeshBuilder {
        MeshBuilder::default()
    }

    /// Binds and starts the event loops.
    pub fn start(&self) -> Result<(), MeshError> {
        Ok(self.node.start_arc()?)
    }

    /// Graceful shutdown within `timeout`.
    pub fn shutdown(&self, timeout: Duration) -> Result<(), MeshError> {
        Ok(self.node.shutdown(timeout)?)
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.node.node_id()
    }

    /// Address peers reach this node at, once started.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.node.local_addr()
    }

    /// Driver and AEAD offer, e.g. `("mmsg", "aes-256-gcm/ring + chacha20-poly1305/ring/avx2")`.
    pub fn describe(&self) -> (String, String) {
        (
            self.node
                .driver()
                .map(|d| d.to_string())
                .unwrap_or_default(),
            self.node.aead(),
        )
    }

    /// The node's view of `peer`'s liveness (failure detector): Up,
    /// Suspect or Down; `None` before any session with it. Calls to a peer
    /// seen Down fail at once with [`Cause::PeerDown`](crate::Cause::PeerDown),
    /// and `call_service` skips Suspect and Down providers.
    pub fn peer_state(&self, peer: &NodeId) -> Option<PeerState> {
        self.node.peer_state(peer)
    }

    /// Every later change of the node's view of a peer, as a `Stream`
    /// (see [`PeerEvents`]).
    pub fn peer_events(&self) -> PeerEvents {
        PeerEvents(tokio_stream::wrappers::BroadcastStream::new(
            self.peers.subscribe(),
        ))
    }

    /// Per-core counters.
    pub fn stats(&self) -> Vec<CoreStats> {
        self.node.stats()
    }

    /// The engine node (advanced use: on-core apps, raw handlers).
    pub fn engine(&self) -> &Arc<MeshNode> {
        &self.node
    }

    fn register(
        &self,
        service: &str,
        handler: Handler,
        opts: ServeOptions,
    ) -> Result<ServeHandle, MeshError> {
        self.node.serve(service, handler, opts)?;
        Ok(ServeHandle {
            node: self.node.clone(),
            service: service.to_string(),
        })
    }

    /// Like [`serve_rpc`](Self::serve_rpc), only for the node ids in
    /// `allowed`: the callee gate checks each request's *session-authenticated*
    /// caller and answers others `CapabilityDenied`.
    pub fn serve_rpc_allowed<F>(
        &self,
        service: &str,
        allowed: Vec<NodeId>,
        handler: F,
    ) -> Result<ServeHandle, MeshError>
    where
        F: Fn(&RequestInfo, &[u8], &mut Vec<u8>) -> Status + Send + Sync + 'static,
    {
        let opts = ServeOptions {
            max_in_flight: None,
            allowed,
            ..Default::default()
        };
        self.register(service, Handler::Sync(Arc::new(handler)), opts)
    }

    /// Nodes that currently advertise `service` (verified announcements).
    pub fn discover(&self, service: &str) -> Vec<NodeId> {
        self.node.discover(service)
    }

    /// Serves `service` with a synchronous handler that runs inline on the
    /// core (no hand-off, no allocation by the engine): it gets the request
    /// and appends the response to `out`. It must not block.
    ///
    /// Every `serve_*` serves a name once: a name already served fails with
    /// [`MeshError::AlreadyServing`] (the first handler stays); dropping the
    /// [`ServeHandle`] frees the name.
    pub fn serve_rpc<F>(&self, service: &str, handler: F) -> Result<ServeHandle, MeshError>
    where
        F: Fn(&RequestInfo, &[u8], &mut Vec<u8>) -> Status + Send + Sync + 'static,
    {
        self.register(
            service,
            Handler::Sync(Arc::new(handler)),
            ServeOptions::default(),
        )
    }

    /// Serves `service` with an async handler run on the current tokio
    /// runtime (one task per request); its result returns through the
    /// owning core's inbox. Outside a tokio runtime it fails with
    /// [`MeshError::NoRuntime`].
    pub fn serve_rpc_async<F, Fut>(
        &self,
        service: &str,
        handler: F,
    ) -> Result<ServeHandle, MeshError>
    where
        F: Fn(Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Bytes, Status>> + Send + 'static,
    {
        let rt = tokio::runtime::Handle::try_current().map_err(|_| MeshError::NoRuntime)?;
        let handler = Arc::new(handler);
        let h = move |call: IncomingCall| {
            let req = Request {
                peer: call.info.peer,
                service: call.info.service,
                payload: Bytes::from(call.payload),
            };
            let fut = handler(req);
            let responder = call.responder;
            rt.spawn(async move {
                // A caller that cancels, times out or loses its session ends
                // the call: the handler's future is dropped right there, so
                // `max_in_flight` bounds handlers that actually run. A panic
                // in the future drops `responder` while unwinding, which
                // answers the call `Internal` (counted as `handler_panics`).
                let r = tokio::select! {
                    r = fut => r,
                    _ = responder.cancelled() => return,
                };
                let (status, body) = match r {
                    Ok(b) => (Status::OK, b.to_vec()),
                    Err(s) => (s, Vec::new()),
                };
                if let Err(e) = responder.respond(status, body) {
                    // Only this task answers; kept as a guard.
                    tracing::debug!(error = %e, "async handler answer not sent");
                }
            });
            None
        };
        self.register(
            service,
            Handler::Async(Arc::new(h)),
            ServeOptions::default(),
        )
    }

    /// Serves a streaming service: `handler` runs on the core for each call
    /// and returns the sink for the caller's messages; it answers through
    /// `call.responder` (stream messages, then the trailer) from any thread.
    pub fn serve_stream<F>(&self, service: &str, handler: F) -> Result<ServeHandle, MeshError>
    where
        F: Fn(IncomingCall) -> Option<Box<dyn net_engine::CallEvents>> + Send + Sync + 'static,
    {
        self.register(
            service,
            Handler::Async(Arc::new(handler)),
            ServeOptions::default(),
        )
    }
}
