//! `MeshNode`: owns the per-core threads and is the engine's public face.

use std::collections::HashMap;

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use net_crypto::{Backend, NodeId, Suite};
use net_io::{DriverKind, Steering};
use net_proto::{CallKind, Endpoint, ServiceId};

use crate::config::MeshNodeConfig;
use crate::core_loop::{Core, CoreParts};
use crate::handler::{CallEvents, CoreApp, Handler, UnaryEvents};
use crate::inbox::{CallRequest, Command, Inbox};
use crate::stats::CoreStats;
use crate::waiter::{Body, UnaryWaiter, Waiter};

/// Why the engine refused an operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// Sockets could not be opened or a driver could not start.
    #[error("io: {0}")]
    Io(#[from] net_io::IoError),
    /// The configured AEAD backend is not available in this build.
    #[error("crypto: {0}")]
    Crypto(#[from] net_crypto::CryptoError),
    /// `start` was called twice.
    #[error("node already started")]
    AlreadyStarted,
    /// `serve` for a name this node already serves (or one whose id
    /// collides with it): unserve it first (or drop its handle).
    #[error("service `{0}` is already served on this node")]
    AlreadyServing(String),
    /// The node is not running (not started, or shut down).
    #[error("node not running")]
    NotRunning,
    /// The chosen core's inbox is full: back off and retry.
    #[error("core inbox full")]
    Backpressure,
    /// A core thread could not be spawned.
    #[error("spawning core thread: {0}")]
    Spawn(std::io::Error),
    /// `shutdown` gave up waiting: this many core threads had not exited
    /// by its deadline (they are detached and exit on their own).
    #[error("{0} core thread(s) did not stop within the shutdown timeout")]
    ShutdownTimeout(usize),
    /// The failure detector's settings are inconsistent.
    #[error("failure detector: {0}")]
    Detector(#[from] net_proto::detector::DetectorConfigError),
}

struct CoreHandle {
    inbox: Arc<Inbox>,
    thread: Option<JoinHandle<()>>,
}

/// Tells `shutdown` that a core thread is gone, however it ended.
struct ExitSignal(std::sync::mpsc::Sender<usize>, usize);

impl Drop for ExitSignal {
    fn drop(&mut self) {
        // `shutdown` stopped listening only if it gave up; then nobody waits.
        let _ = self.0.send(self.1);
    }
}

/// How a service is served.
#[derive(Clone, Debug, Default)]
pub struct ServeOptions {
    /// Unanswered calls per core beyond which callers get `Backpressure`
    /// (default: the node's `max_in_flight`).
    pub max_in_flight: Option<u32>,
    /// Node ids allowed to call (checked against the session's
    /// authenticated peer). Empty: any node of the mesh.
    pub allowed: Vec<NodeId>,
    /// Also require a token chain from one of the node's `token_roots`
    /// whose leaf names the calling session's peer and whose scope holds
    /// `nrpc:<name>`.
    pub require_token: bool,
}

struct Running {
    cores: Vec<CoreHandle>,
    local_addr: SocketAddr,
    driver: DriverKind,
    /// One message per core thread that exited.
    exited: std::sync::mpsc::Receiver<usize>,
}

/// A mesh node: one pinned event loop per configured core.
pub struct MeshNode {
    cfg: MeshNodeConfig,
    aead: Backend,
    running: Mutex<Option<Running>>,
    /// The running cores' inboxes, readable without the `running` lock (a
    /// caller per call must not contend on it): set at start, cleared at
    /// shutdown.
    inboxes: ArcSwapOption<Vec<Arc<Inbox>>>,
    /// Services registered before start, installed on every core at start.
    services: Mutex<HashMap<ServiceId, (Handler, u32, crate::trust::Advert)>>,
    /// Held by `serve` and `unserve` for their whole run (map update and
    /// broadcast), so the cores see registrations in the map's order.
    registry: Mutex<()>,
    next_core: AtomicUsize,
    trust: Arc<Mutex<crate::trust::SharedTrust>>,
    /// Peers' liveness, merged from the cores' failure detectors.
    board: Arc<crate::peers::PeerBoard>,
    /// Last reservation sequence used (time-based, strictly increasing).
    reservation_seq: std::sync::atomic::AtomicU64,
}

impl MeshNode {
    /// A node with this configuration (nothing is bound until [`start`](Self::start)).
    pub fn new(cfg: MeshNodeConfig) -> Result<Self, EngineError> {
        let aead = Backend::select(cfg.aead)?;
        cfg.detector.validate()?;
        let fold = crate::trust::discovery_fold(&cfg);
        let board = Arc::new(crate::peers::PeerBoard::new(cfg.cores));
        Ok(MeshNode {
            board,
            cfg,
            aead,
            running: Mutex::new(None),
            inboxes: ArcSwapOption::empty(),
            services: Mutex::new(HashMap::new()),
            registry: Mutex::new(()),
            next_core: AtomicUsize::new(0),
            trust: Arc::new(Mutex::new(crate::trust::SharedTrust {
                fold,
                reservations: net_trust::ReservationFold::new(65_536, 16_384),
                stats: net_trust::TrustStats::default(),
                grants: Default::default(),
                turns: Default::default(),
            })),
            reservation_seq: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.cfg.node_id()
    }

    /// The configuration.
    pub fn config(&self) -> &MeshNodeConfig {
        &self.cfg
    }

    /// The AEAD suites this node offers, preferred first, with backend and
    /// CPU path, e.g. `aes-256-gcm/ring + chacha20-poly1305/ring/avx2`.
    /// Each session runs the first one its peer offers too.
    pub fn aead(&self) -> String {
        if Suite::offer(self.aead) & self.cfg.params.aead_suites & Suite::Aes256Gcm.bit() != 0 {
            let aes = Suite::Aes256Gcm.name();
            format!("{aes}/ring + {}", self.aead.describe())
        } else {
            self.aead.describe().to_string()
        }
    }

    /// Bound address, once started.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.lock().as_ref().map(|r| r.local_addr)
    }

    /// Driver in use, once started.
    pub fn driver(&self) -> Option<DriverKind> {
        self.lock().as_ref().map(|r| r.driver)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Running>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Binds the sockets and starts one loop thread per core.
    pub fn start(&self) -> Result<(), EngineError> {
        let mut running = self.lock();
        if running.is_some() {
            return Err(EngineError::AlreadyStarted);
        }
        let cores_built = self.build_cores(Instant::now())?;
        let local_addr = cores_built[0].driver().local_addr();
        let driver = cores_built[0].driver().kind();
        // CPUs are set directly rather than looked up in the current mask: a
        // thread (or process) already pinned elsewhere must still be movable.
        let pin_to = |i: usize| {
            let want = self.cfg.cpus.as_ref()?;
            Some(core_affinity::CoreId {
                id: want[i % want.len()],
            })
        };
        let mut cores = Vec::with_capacity(cores_built.len());
        let (exit_tx, exited) = std::sync::mpsc::channel();
        for (i, core) in cores_built.into_iter().enumerate() {
            let inbox = core.inbox().clone();
            let cpu = pin_to(i);
            let signal = ExitSignal(exit_tx.clone(), i);
            let thread = std::thread::Builder::new()
                .name(format!("net-core-{i}"))
                .spawn(move || {
                    let _signal = signal;
                    if let Some(cpu) = cpu {
                        core_affinity::set_for_current(cpu);
                    }
                    core.run();
                })
                .map_err(EngineError::Spawn)?;
            cores.push(CoreHandle {
                inbox,
                thread: Some(thread),
            });
        }
        tracing::info!(node = %self.node_id().short(), %local_addr, %driver, aead = self.aead(), cores = cores.len(), spin_us = self.cfg.spin.as_micros() as u64, "node started");
        let inboxes = cores.iter().map(|c| c.inbox.clone()).collect();
        self.inboxes.store(Some(Arc::new(inboxes)));
        *running = Some(Running {
            cores,
            local_addr,
            driver,
            exited,
        });
        Ok(())
    }

    /// Starts a node shared through an `Arc`. Background loops the node runs
    /// (capability re-announce) hold only a `Weak`, so dropping the last
    /// `Arc` stops them.
    pub fn start_arc(self: &Arc<Self>) -> Result<(), EngineError> {
        self.start()
    }

    /// Binds the drivers and builds every core's state at `now`, without
    /// starting a thread ([`Self::start`] runs each on its own; tests drive
    /// them by hand on virtual time).
    pub(crate) fn build_cores(&self, now: Instant) -> Result<Vec<Core>, EngineError> {
        let n = self.cfg.cores;
        let steering = Steering {
            index_offset: 4,
            core_bits: self.cfg.core_bits(),
            init_type: 1,
        };
        let drivers = match &self.cfg.memory_net {
            Some(net) => net.bind_group(self.cfg.listen, n, steering, &self.cfg.driver_cfg)?,
            None => net_io::open_group(
                self.cfg.listen,
                n,
                steering,
                self.cfg.driver,
                &self.cfg.driver_cfg,
            )?,
        };
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let services = self
            .services
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let cores = drivers.into_iter().enumerate().map(|(i, drv)| {
            let inbox = Arc::new(Inbox::new(self.cfg.inbox, drv.waker()));
            self.new_core(i, drv, inbox, (now, wall), &services)
        });
        Ok(cores.collect())
    }

    fn new_core(
        &self,
        i: usize,
        driver: Box<dyn net_io::Driver>,
        inbox: Arc<Inbox>,
        (now, wall): (Instant, u64),
        services: &HashMap<ServiceId, (Handler, u32, crate::trust::Advert)>,
    ) -> Core {
        let mut ep = Endpoint::new(self.cfg.endpoint_config(i, self.aead), now, wall);
        let wall_ms = wall / 1_000_000;
        let mut trust = crate::trust::CoreTrust::new(
            self.cfg.identity.clone(),
            self.cfg.announce,
            self.trust.clone(),
            now,
            wall_ms,
        );
        trust.set_tokens(self.cfg.token_roots.clone(), self.cfg.token.as_ref());
        let mut handlers = net_proto::FastMap::default();
        for (id, (h, max, advert)) in services {
            ep.register_service(*id, *max);
            let svc = crate::core_loop::Service {
                handler: h.clone(),
                name: advert.name.as_str().into(),
                max_in_flight: *max,
            };
            handlers.insert(*id, svc);
            trust.set_advert(*id, Some(advert.clone()), now);
        }
        let peers = self.cfg.peers.iter();
        let peers = peers.map(|p| (p.identity.node_id(), *p)).collect();
        Core::new(CoreParts {
            index: i,
            driver,
            ep,
            inbox,
            spin: self.cfg.spin,
            spin_yield: self.cfg.spin_yield,
            peers,
            handlers,
            trust,
            board: self.board.clone(),
        })
    }

    /// Pushes `make(ack)` to every core and waits until each has applied it,
    /// so a service is live (or gone) everywhere when `serve` returns.
    fn broadcast(
        &self,
        make: impl Fn(std::sync::mpsc::SyncSender<()>) -> Command,
    ) -> Result<(), EngineError> {
        let running = self.lock();
        let Some(r) = running.as_ref() else {
            return Ok(());
        };
        let (tx, rx) = std::sync::mpsc::sync_channel(r.cores.len());
        for c in &r.cores {
            c.inbox
                .push(make(tx.clone()))
                .map_err(|_| EngineError::Backpressure)?;
        }
        for _ in &r.cores {
            rx.recv_timeout(Duration::from_secs(5))
                .map_err(|_| EngineError::NotRunning)?;
        }
        Ok(())
    }

    /// Serves `name` on every core with `handler` and advertises it as
    /// `nrpc:<name>` (with the allow-list, if any, enforced by the callee
    /// gate against each session's authenticated peer). A name already
    /// served is refused with [`EngineError::AlreadyServing`]: replacing a
    /// handler is `unserve`, then `serve`.
    pub fn serve(
        &self,
        name: &str,
        handler: Handler,
        opts: ServeOptions,
    ) -> Result<(), EngineError> {
        let service = ServiceId::of(name);
        let max = opts.max_in_flight.unwrap_or(self.cfg.max_in_flight);
        let advert = crate::trust::Advert {
            name: name.to_string(),
            allowed: opts.allowed,
            require_token: opts.require_token,
        };
        let _registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        {
            // Checked and taken under one lock: of two racing `serve`s of a
            // name, exactly one wins.
            let mut services = self.services.lock().unwrap_or_else(|e| e.into_inner());
            if services.contains_key(&service) {
                return Err(EngineError::AlreadyServing(name.to_string()));
            }
            services.insert(service, (handler.clone(), max, advert.clone()));
        }
        self.broadcast(|ack| Command::Register {
            service,
            handler: handler.clone(),
            max_in_flight: max,
            advert: advert.clone(),
            ack,
        })
    }

    /// Stops serving `name`; new calls get `NotFound`.
    pub fn unserve(&self, name: &str) -> Result<(), EngineError> {
        let service = ServiceId::of(name);
        let _registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        self.services
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&service);
        self.broadcast(|ack| Command::Unregister { service, ack })
    }

    /// Opens a call to `peer` on the next core (round robin); its events go
    /// to `events` on that core's thread.
    pub fn call(
        &self,
        peer: NodeId,
        service: ServiceId,
        kind: CallKind,
        deadline: Option<Instant>,
        payload: Bytes,
        events: Box<dyn CallEvents>,
    ) -> Result<(), EngineError> {
        let inbox = self.next_inbox()?;
        let waiter = Waiter::Events(events);
        push(
            &inbox,
            call_command(peer, service, kind, deadline, payload, waiter),
        )
    }

    /// The inbox of the next core, round robin, without a lock; on one of
    /// this node's core threads (an on-core task, a handler), that core's
    /// own: no hand-off to another thread.
    fn next_inbox(&self) -> Result<Arc<Inbox>, EngineError> {
        let key = crate::core_loop::node_key(&self.board);
        if let Some(inbox) = crate::local::current_inbox(key) {
            return Ok(inbox);
        }
        let inboxes = self.inboxes.load();
        let all = inboxes.as_deref().ok_or(EngineError::NotRunning)?;
        let i = self.next_core.fetch_add(1, Ordering::Relaxed) % all.len();
        Ok(all[i].clone())
    }

    /// A unary call from async code, its outcome to `events` (which the
    /// caller may reuse once the core let go of it: see [`UnaryEvents`]).
    /// When the core's inbox is full, waits for room instead of failing
    /// with `Backpressure` (each core pass wakes as many waiting callers as
    /// it has free slots). The wait is bounded by `deadline`: a caller
    /// still waiting when a wake finds it past is refused with
    /// `Backpressure`; without a deadline it waits as long as the core
    /// takes commands. Dropping the future before it resolves sends
    /// nothing. Runtime-agnostic (a plain `Future`).
    pub async fn call_unary(
        &self,
        peer: NodeId,
        service: ServiceId,
        deadline: Option<Instant>,
        payload: Bytes,
        events: Arc<dyn UnaryEvents>,
    ) -> Result<(), EngineError> {
        let inbox = self.next_inbox()?;
        let waiter = Waiter::Unary(UnaryWaiter::new(events));
        let mut cmd = call_command(peer, service, CallKind::Unary, deadline, payload, waiter);
        loop {
            match inbox.push(cmd) {
                Ok(()) => return Ok(()),
                Err(back) if inbox.is_closed() => {
                    return Err(refused(back, EngineError::NotRunning))
                }
                Err(back) => cmd = back,
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(refused(cmd, EngineError::Backpressure));
            }
            std::future::poll_fn(|cx| inbox.room(cx)).await;
        }
    }

    /// Nodes whose current (verified, unexpired) announcements advertise
    /// `nrpc:<name>`, in node-id order, trusted or not: matchmaking. Any
    /// PSK holder can advertise any name; [`call_service`](Self::call_service)
    /// sends only to [`trusted_providers`](Self::trusted_providers), and
    /// the callee's gate decides who may call.
    pub fn discover(&self, name: &str) -> Vec<NodeId> {
        self.providers(name).advertising
    }

    /// The nodes of [`discover`](Self::discover) this node trusts to serve
    /// `name`, in node-id order: those listed for it with
    /// [`MeshNodeConfig::with_trusted_providers`], and those that presented,
    /// on a session to this node, an unexpired token chain rooted in this
    /// node's token roots whose scope holds `nrpc-serve:<name>`
    /// (`net_trust::NRPC_SERVE_SCOPE_PREFIX`).
    pub fn trusted_providers(&self, name: &str) -> Vec<NodeId> {
        self.providers(name).trusted
    }

    fn providers(&self, name: &str) -> crate::trust::Providers {
        let t = self.trust.lock().unwrap_or_else(|e| e.into_inner());
        t.providers(name, self.allowed_providers(name), wall_ms())
    }

    fn allowed_providers(&self, name: &str) -> &[NodeId] {
        self.cfg
            .trusted_providers
            .get(name)
            .map_or(&[], Vec::as_slice)
    }

    fn pick(
        &self,
        name: &str,
        route: crate::trust::Route,
    ) -> Result<NodeId, crate::trust::NoProvider> {
        let mut t = self.trust.lock().unwrap_or_else(|e| e.into_inner());
        let live = |n: &NodeId| self.board.routable(n);
        t.pick(name, self.allowed_providers(name), route, &live, wall_ms())
    }

    /// The trusted provider of `name` the next call goes to: round robin
    /// over [`trusted_providers`](Self::trusted_providers) that are not
    /// Suspect or Down, per service, so successive calls alternate. If none
    /// may be picked, why: `NoProvider`, `NoTrustedProvider` (counted in
    /// `no_trusted_provider` and logged) or `PeerDown`.
    pub fn pick_provider(&self, name: &str) -> Result<NodeId, net_proto::Cause> {
        self.pick(name, crate::trust::Route::Trusted)
            .map_err(|e| e.cause())
    }

    /// Like [`pick_provider`](Self::pick_provider) over every node that
    /// advertises `name`, trusted or not: see
    /// [`call_service_untrusted`](Self::call_service_untrusted).
    pub fn pick_provider_untrusted(&self, name: &str) -> Result<NodeId, net_proto::Cause> {
        self.pick(name, crate::trust::Route::AnyAdvertiser)
            .map_err(|e| e.cause())
    }

    /// Calls `name` on a trusted provider ([`pick_provider`](Self::pick_provider)).
    /// If none is, `events` fails at once with `Unavailable` and the cause
    /// (no node advertises it, or none of the N that do is trusted), and
    /// nothing is sent.
    pub fn call_service(
        &self,
        name: &str,
        kind: CallKind,
        deadline: Option<Instant>,
        payload: Bytes,
        events: Box<dyn CallEvents>,
    ) -> Result<(), EngineError> {
        let route = crate::trust::Route::Trusted;
        self.route_service(name, route, kind, deadline, payload, events)
    }

    /// Calls `name` on any node that advertises it, **trusted or not**: the
    /// payload may go to any holder of the mesh PSK that claims the name.
    /// Only for payloads any mesh member may see and answers the caller
    /// checks itself; otherwise use [`call_service`](Self::call_service).
    pub fn call_service_untrusted(
        &self,
        name: &str,
        kind: CallKind,
        deadline: Option<Instant>,
        payload: Bytes,
        events: Box<dyn CallEvents>,
    ) -> Result<(), EngineError> {
        let route = crate::trust::Route::AnyAdvertiser;
        self.route_service(name, route, kind, deadline, payload, events)
    }

    fn route_service(
        &self,
        name: &str,
        route: crate::trust::Route,
        kind: CallKind,
        deadline: Option<Instant>,
        payload: Bytes,
        mut events: Box<dyn CallEvents>,
    ) -> Result<(), EngineError> {
        match self.pick(name, route) {
            Ok(peer) => self.call(peer, ServiceId::of(name), kind, deadline, payload, events),
            Err(e) => {
                events.failed(net_proto::Status::UNAVAILABLE, e.cause());
                Ok(())
            }
        }
    }

    /// The node's view of `peer`'s liveness: the best any core holds (a
    /// core that still hears it makes it Up); `None` if no core watches it
    /// (no session yet). Calls to a peer a core sees Down fail at once
    /// with `Cause::PeerDown`.
    pub fn peer_state(&self, peer: &NodeId) -> Option<net_proto::PeerState> {
        self.board.state(peer)
    }

    /// Calls `listener` on every change of the node's view of a peer (see
    /// [`peer_state`](Self::peer_state)), from the core thread that saw it:
    /// it must not block.
    pub fn on_peer_event(&self, listener: crate::PeerListener) {
        self.board.listen(listener);
    }

    /// Trust counters of the node-wide fold (announcements applied, stale,
    /// full...); per-core gate and verification counters are in [`stats`](Self::stats).
    pub fn trust_stats(&self) -> net_trust::TrustStats {
        self.trust
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .stats
            .clone()
    }

    /// Acquires (or renews) a lease on `resource` for `ttl` across the mesh:
    /// applied locally, then announced signed on every session. Fails with
    /// `Conflict` if another node holds it.
    pub fn reserve(
        &self,
        resource: &str,
        ttl: Duration,
    ) -> Result<net_trust::ReservationOutcome, net_trust::ReservationError> {
        self.reservation(
            resource,
            ttl.as_millis() as u64,
            net_trust::ReservationOp::Acquire,
        )
    }

    /// Releases a lease this node holds.
    pub fn release(
        &self,
        resource: &str,
    ) -> Result<net_trust::ReservationOutcome, net_trust::ReservationError> {
        self.reservation(resource, 60_000, net_trust::ReservationOp::Release)
    }

    fn reservation(
        &self,
        resource: &str,
        ttl_ms: u64,
        op: net_trust::ReservationOp,
    ) -> Result<net_trust::ReservationOutcome, net_trust::ReservationError> {
        let now_ms = wall_ms();
        let seq = 1 + self
            .reservation_seq
            .fetch_max(now_ms, Ordering::SeqCst)
            .max(now_ms);
        self.reservation_seq.fetch_max(seq, Ordering::SeqCst);
        let body =
            net_trust::ReservationBody::new(self.node_id(), seq, now_ms, ttl_ms, resource, op);
        let signed = net_trust::SignedReservation::sign(&self.cfg.identity, &body)?;
        let verified = signed.verify(now_ms)?;
        let outcome = self
            .trust
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .reservations
            .apply(verified, now_ms)?;
        let mut payload = vec![crate::trust::KIND_RESERVATION];
        payload.extend_from_slice(&signed.encode());
        if let Err(e) = self.broadcast_announce(None, payload) {
            // Applied here; peers learn it on their next session open or
            // from the holder's renewal. The caller keeps its outcome.
            tracing::warn!(node = %self.node_id().short(), resource, error = %e, "reservation not announced now");
        }
        Ok(outcome)
    }

    /// The node holding `resource` now, if any.
    pub fn reservation_holder(&self, resource: &str) -> Option<NodeId> {
        self.trust
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .reservations
            .holder(resource, wall_ms())
    }

    /// `node`'s current verified capability announcement, as this node's
    /// fold holds it.
    pub fn capabilities_of(&self, node: &NodeId) -> Option<net_trust::AnnouncementBody> {
        let t = self.trust.lock().unwrap_or_else(|e| e.into_inner());
        t.fold
            .get(net_trust::ClassHash::CAPABILITIES, node, wall_ms())
            .cloned()
    }

    /// Sends raw ANNOUNCE bytes to `peer` (or every session). Anything a
    /// peer could put on its own sessions; exists so tests can play a
    /// hostile node. Not part of the supported API.
    #[doc(hidden)]
    pub fn send_raw_announcement(
        &self,
        peer: Option<NodeId>,
        payload: Vec<u8>,
    ) -> Result<(), EngineError> {
        self.broadcast_announce(peer, payload)
    }

    fn broadcast_announce(
        &self,
        peer: Option<NodeId>,
        payload: Vec<u8>,
    ) -> Result<(), EngineError> {
        let running = self.lock();
        let r = running.as_ref().ok_or(EngineError::NotRunning)?;
        for c in &r.cores {
            c.inbox
                .push(Command::Announce {
                    peer,
                    payload: payload.clone(),
                })
                .map_err(|_| EngineError::Backpressure)?;
        }
        Ok(())
    }

    /// Runs `app` on core `core`'s own thread (engine-mode benchmarks).
    pub fn run_on_core(&self, core: usize, app: Box<dyn CoreApp>) -> Result<(), EngineError> {
        let running = self.lock();
        let r = running.as_ref().ok_or(EngineError::NotRunning)?;
        let c = r.cores.get(core).ok_or(EngineError::NotRunning)?;
        c.inbox
            .push(Command::App(app))
            .map_err(|_| EngineError::Backpressure)
    }

    /// Runs `fut` on core `core`'s own thread: the core loop polls it
    /// (see `local`), so the calls it makes go to that core with no
    /// cross-thread hand-off and their completions wake it without a
    /// syscall. The future must not need a tokio runtime (no tokio timers
    /// or sockets). A task that panics is dropped and counted
    /// (`CoreStats::task_panics`); tasks still running at shutdown are
    /// dropped. `Backpressure` if the core's inbox is full; a core already
    /// holding [`MAX_TASKS`](crate::MAX_TASKS) tasks drops the future
    /// (`CoreStats::tasks_refused`).
    pub fn spawn_on_core(&self, core: usize, fut: crate::CoreFuture) -> Result<(), EngineError> {
        let running = self.lock();
        let r = running.as_ref().ok_or(EngineError::NotRunning)?;
        let c = r.cores.get(core).ok_or(EngineError::NotRunning)?;
        push(&c.inbox, Command::Spawn(fut))
    }

    /// Per-core counters (asks each core; waits up to 1 s per core).
    pub fn stats(&self) -> Vec<CoreStats> {
        let running = self.lock();
        let Some(r) = running.as_ref() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for c in &r.cores {
            let (tx, rx) = std::sync::mpsc::sync_channel(1);
            if c.inbox.push(Command::Stats(tx)).is_ok() {
                if let Ok(s) = rx.recv_timeout(Duration::from_secs(1)) {
                    out.push(s);
                }
            }
        }
        out
    }

    /// Graceful shutdown: cores stop accepting calls, finish what is in
    /// flight (or give up at half of `timeout`), send CLOSE on every session
    /// and exit. Calls still waiting then complete with `Unavailable`.
    ///
    /// Returns within `timeout` (plus scheduling slack) whatever state the
    /// cores are in; a core that has not exited by then is left to finish on
    /// its own and reported as [`EngineError::ShutdownTimeout`].
    pub fn shutdown(&self, timeout: Duration) -> Result<(), EngineError> {
        self.inboxes.store(None);
        let Some(mut r) = self.lock().take() else {
            return Err(EngineError::NotRunning);
        };
        let start = Instant::now();
        let deadline = start + timeout;
        // Calls in flight get the first half; the rest is for closing the
        // sessions and the threads' exit, so an orderly stop is `Ok`.
        let drain_until = start + timeout / 2;
        for c in &r.cores {
            // The call queue never refuses, so a full inbox cannot block this.
            c.inbox.push_call(Command::Shutdown {
                deadline: drain_until,
            });
        }
        let mut left = r.cores.len();
        while left > 0 {
            let wait = deadline.saturating_duration_since(Instant::now());
            match r.exited.recv_timeout(wait) {
                Ok(i) => {
                    left -= 1;
                    if let Some(t) = r.cores.get_mut(i).and_then(|c| c.thread.take()) {
                        // The thread has signalled its exit; a panic in it
                        // was already logged by the panic hook.
                        let _ = t.join();
                    }
                }
                Err(_) => {
                    tracing::warn!(node = %self.node_id().short(), cores = left, "shutdown timed out; cores left running detached");
                    return Err(EngineError::ShutdownTimeout(left));
                }
            }
        }
        tracing::info!(node = %self.node_id().short(), "node stopped");
        Ok(())
    }
}

/// Wall-clock Unix milliseconds (announcements and reservations carry wall time).
fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Drop for MeshNode {
    fn drop(&mut self) {
        // Nobody is left to act on an error here: not running is the normal
        // case, and a timeout was already logged by `shutdown`.
        let _ = self.shutdown(Duration::from_millis(500));
    }
}

/// Queues `cmd` on a core: `NotRunning` if the core has exited,
/// `Backpressure` if its queue of new work is full.
fn push(inbox: &Inbox, cmd: Command) -> Result<(), EngineError> {
    inbox.push(cmd).map_err(|_| {
        if inbox.is_closed() {
            EngineError::NotRunning
        } else {
            EngineError::Backpressure
        }
    })
}

/// The command that opens a call on a core.
fn call_command(
    peer: NodeId,
    service: ServiceId,
    kind: CallKind,
    deadline: Option<Instant>,
    payload: Bytes,
    waiter: Waiter,
) -> Command {
    Command::Call(CallRequest {
        peer,
        service,
        kind,
        deadline,
        payload: Body::Shared(payload),
        waiter,
    })
}

/// `err`, for a call command no core took: its unary receiver is released
/// quietly (the caller learns `err`, not an abandoned call).
fn refused(cmd: Command, err: EngineError) -> EngineError {
    if let Command::Call(CallRequest {
        waiter: Waiter::Unary(u),
        ..
    }) = cmd
    {
        u.forget();
    }
    err
}
