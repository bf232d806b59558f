//! A test harness for the runtime layer: a client node and a server node,
//! one core each, on one [`MemNet`], driven by hand on the test thread in
//! virtual time.
//!
//! No core thread runs: [`Pair::step`] harvests each core's datagrams
//! without blocking and runs one [`Core::turn`] at the harness's clock;
//! [`Pair::advance`] moves that clock. Nothing sleeps and nothing reads the
//! clock, so a run is a function of its inputs and the network's seed —
//! timeouts, retransmissions and deadlines included.

mod tests;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use net_crypto::{Identity, NodeId};
use net_io::MemNet;
use net_proto::{CallKind, ServiceId, Status};

use crate::core_loop::{Core, Pass};
use crate::handler::{CallEvents, CallHandle, Handler, IncomingCall};
use crate::inbox::{CallRequest, Command};
use crate::{MeshNode, MeshNodeConfig, ServeOptions};

const PSK: [u8; 32] = [7; 32];

/// Passes after which a pair that is still busy is declared livelocked.
const MAX_STEPS: usize = 1_000_000;

/// One node and its only core.
pub(crate) struct Side {
    pub node: MeshNode,
    pub core: Core,
}

impl Side {
    /// Services `serve` registers before the core exists are built into it.
    fn new(cfg: MeshNodeConfig, now: Instant, serve: impl FnOnce(&MeshNode)) -> Self {
        let node = MeshNode::new(cfg.with_cores(1).with_pinning(false)).expect("config");
        serve(&node);
        let mut cores = node.build_cores(now).expect("bind");
        let core = cores.pop().expect("one core");
        Side { node, core }
    }

    /// One pass at `now`; harvesting never blocks.
    fn turn(&mut self, now: Instant) -> Pass {
        let n = self.core.driver.recv(Some(Duration::ZERO)).expect("recv");
        self.core.turn(now, n).expect("turn")
    }
}

/// Two one-core nodes on one network and the clock they run on.
pub(crate) struct Pair {
    pub client: Side,
    pub server: Side,
    now: Instant,
}

impl Pair {
    /// A server with the services `serve` registers and a client that has
    /// it as its configured peer; `tune` adjusts both configurations.
    pub fn new(
        net: MemNet,
        tune: impl Fn(MeshNodeConfig) -> MeshNodeConfig,
        serve: impl FnOnce(&MeshNode),
    ) -> Self {
        let now = Instant::now();
        let config = |seed: u8| {
            let cfg = MeshNodeConfig::new(Identity::from_seed(&[seed; 32]), PSK);
            tune(cfg.with_memory_network(net.clone()))
        };
        let server = Side::new(config(2), now, serve);
        let addr = server.core.driver.local_addr();
        let identity = server.node.config().public_identity();
        let client = Side::new(config(1).with_peer(addr, identity), now, |_| {});
        Pair {
            client,
            server,
            now,
        }
    }

    /// The harness's current (virtual) time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// The server's node id (what the client calls).
    pub fn server_id(&self) -> NodeId {
        self.server.node.node_id()
    }

    /// Turns both cores until neither finds work at the current time.
    pub fn settle(&mut self) {
        for _ in 0..MAX_STEPS {
            let a = self.client.turn(self.now);
            let b = self.server.turn(self.now);
            if a == Pass::Idle && b == Pass::Idle {
                return;
            }
        }
        panic!("the pair never went idle");
    }

    /// Moves the clock by `d` and settles.
    pub fn advance(&mut self, d: Duration) {
        self.now += d;
        self.settle();
    }

    /// Settles, then jumps from timer to timer until `done` holds; panics
    /// if it does not within `limit` of virtual time.
    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&mut Self) -> bool) {
        let end = self.now + limit;
        self.settle();
        while !done(self) {
            let next = [self.client.core.next_wake(), self.server.core.next_wake()]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(end);
            assert!(self.now < end, "not done after {limit:?} of virtual time");
            self.now = next.clamp(self.now + Duration::from_micros(1), end);
            self.settle();
        }
    }

    /// Opens a call from the client to the server's `service`; its events
    /// land in the returned log.
    pub fn call(&mut self, service: &str, kind: CallKind, deadline: Option<Duration>) -> Log {
        self.call_with(service, kind, deadline, Vec::new(), false)
    }

    /// [`Self::call`] with a request body, and credit granted on
    /// consumption (`Log::consume`) rather than on arrival if `on_consume`.
    pub fn call_with(
        &mut self,
        service: &str,
        kind: CallKind,
        deadline: Option<Duration>,
        payload: Vec<u8>,
        on_consume: bool,
    ) -> Log {
        let log = Log::default();
        log.lock().on_consume = on_consume;
        let req = CallRequest {
            peer: self.server_id(),
            service: ServiceId::of(service),
            kind,
            deadline: deadline.map(|d| self.now + d),
            payload: crate::waiter::Body::Owned(payload),
            waiter: crate::waiter::Waiter::Events(Box::new(log.clone())),
        };
        self.client.core.inbox.push_call(Command::Call(req));
        log
    }
}

/// An async handler that parks every call it gets in `calls`, for the test
/// to answer (or not).
pub(crate) fn parking_handler(calls: &Calls) -> Handler {
    let calls = calls.clone();
    Handler::Async(Arc::new(move |c: IncomingCall| {
        calls.0.lock().unwrap().push(c);
        None
    }))
}

/// Calls an async handler was given and has not answered yet.
#[derive(Clone, Default)]
pub(crate) struct Calls(pub Arc<Mutex<Vec<IncomingCall>>>);

impl Calls {
    /// Takes every parked call.
    pub fn take(&self) -> Vec<IncomingCall> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// Serves `name` with `handler` and default options.
pub(crate) fn serve(node: &MeshNode, name: &str, handler: Handler) {
    node.serve(name, handler, ServeOptions::default())
        .expect("serve");
}

/// What a caller's sink saw, shared with the test.
#[derive(Clone, Default)]
pub(crate) struct Log(Arc<Mutex<Seen>>);

/// The events of one call, in arrival order.
#[derive(Default)]
pub(crate) struct Seen {
    pub handle: Option<CallHandle>,
    pub messages: Vec<Vec<u8>>,
    /// Messages that arrived after the call completed (must stay 0).
    pub late: usize,
    pub end: Option<(Status, Vec<u8>)>,
    on_consume: bool,
}

impl Log {
    pub fn lock(&self) -> MutexGuard<'_, Seen> {
        self.0.lock().unwrap()
    }

    /// The final status, once the call ended.
    pub fn status(&self) -> Option<Status> {
        self.lock().end.as_ref().map(|e| e.0)
    }

    /// The caller's handle (panics before the call opened).
    pub fn handle(&self) -> CallHandle {
        self.lock().handle.clone().expect("call not open")
    }
}

impl CallEvents for Log {
    fn opened(&mut self, handle: CallHandle) {
        self.lock().handle = Some(handle);
    }

    fn credit_on_consume(&self) -> bool {
        self.lock().on_consume
    }

    fn message(&mut self, payload: &[u8]) {
        let mut s = self.lock();
        if s.end.is_some() {
            s.late += 1;
        }
        s.messages.push(payload.to_vec());
    }

    fn complete(&mut self, status: Status, payload: &[u8]) {
        let mut s = self.lock();
        assert!(s.end.is_none(), "completed twice");
        s.end = Some((status, payload.to_vec()));
    }
}
