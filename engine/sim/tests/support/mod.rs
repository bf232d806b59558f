//! Test harness: a protocol endpoint plus app logic, as a simulator node.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use net_crypto::{Identity, PublicIdentity};
use net_proto::{CallId, CallKind, Endpoint, EndpointConfig, Event, ServiceId, SessionId, Status};
use net_sim::{SimNode, Transmit};

pub const PSK: [u8; 32] = [7; 32];

pub fn identity(n: u8) -> Identity {
    Identity::from_seed(&[n; 32])
}

pub fn config(n: u8, psk: [u8; 32]) -> EndpointConfig {
    let mut c = EndpointConfig::new(identity(n), psk);
    c.rng_seed = u64::from(n);
    c
}

pub fn echo() -> ServiceId {
    ServiceId::of("echo")
}
pub fn sink() -> ServiceId {
    ServiceId::of("sink")
}
pub fn ticker() -> ServiceId {
    ServiceId::of("ticker")
}
pub fn duplex() -> ServiceId {
    ServiceId::of("duplex")
}
pub fn silent() -> ServiceId {
    ServiceId::of("silent")
}

/// Server behaviour and what it observed.
#[derive(Default)]
pub struct Server {
    /// Request events per (session, call): must never exceed 1.
    pub invocations: HashMap<(SessionId, CallId), u32>,
    /// Request events per client tag (first 8 payload bytes).
    pub by_tag: HashMap<u64, u32>,
    pub cancelled: Vec<(CallId, Status)>,
    /// Sink: bytes received per call, and whether order held.
    pub sink_bytes: HashMap<CallId, u64>,
    pub sink_next_seq: HashMap<CallId, u64>,
    pub sink_out_of_order: u64,
    /// Messages each ticker call sends before its trailer.
    pub ticker_count: u32,
    /// Handshakes this node refused, as reported.
    pub rejected: Vec<net_proto::HandshakeError>,
}

/// One outstanding client call.
struct Pending {
    tag: u64,
    payload: Vec<u8>,
    issued: Instant,
}

/// Client workload: `total` unary calls to `service`, `concurrency` at a time.
#[derive(Default)]
pub struct Client {
    pub session: Option<SessionId>,
    pub peer: Option<(PublicIdentity, SocketAddr)>,
    pub service: Option<ServiceId>,
    pub total: u64,
    pub concurrency: usize,
    pub payload_len: usize,
    pub deadline: Option<Duration>,
    next_tag: u64,
    in_flight: HashMap<CallId, Pending>,
    pub completed: u64,
    pub mismatches: u64,
    pub statuses: BTreeMap<u16, u64>,
    pub messages: HashMap<CallId, Vec<Vec<u8>>>,
    pub responses: HashMap<CallId, (Status, Vec<u8>)>,
    pub closed: Vec<net_proto::CloseReason>,
    /// Latency of every completed unary call of the workload.
    pub latencies: Vec<Duration>,
    /// Failure-detector changes, in order.
    pub peer_states: Vec<(net_crypto::NodeId, net_proto::PeerState)>,
    /// Causes of calls the endpoint ended itself, in order.
    pub causes: Vec<net_proto::Cause>,
    pub connected: bool,
    /// Stream upload: (call, bytes left, message size, next seq).
    pub upload: Option<(CallId, u64, usize, u64)>,
    pub writable_events: u64,
}

pub struct RpcNode {
    pub ep: Endpoint,
    pub server: Server,
    pub client: Client,
}

impl RpcNode {
    pub fn new(cfg: EndpointConfig, now: Instant) -> Self {
        let mut ep = Endpoint::new(cfg, now, 1_000_000_000);
        for s in [echo(), sink(), ticker(), duplex(), silent()] {
            ep.register_service(s, 100_000);
        }
        RpcNode {
            ep,
            server: Server {
                ticker_count: 5,
                ..Server::default()
            },
            client: Client::default(),
        }
    }

    /// Starts the unary workload against `peer`.
    pub fn start_calls(
        &mut self,
        now: Instant,
        peer: PublicIdentity,
        addr: SocketAddr,
        total: u64,
        concurrency: usize,
        payload_len: usize,
    ) {
        let session = self.ep.connect(now, peer, addr).expect("connect");
        let c = &mut self.client;
        c.session = Some(session);
        c.service = Some(echo());
        c.total = total;
        c.concurrency = concurrency;
        c.payload_len = payload_len.max(8);
        self.issue(now);
    }

    pub fn done(&self) -> bool {
        self.client.completed >= self.client.total
    }

    /// Adds `n` calls to the workload, on the client's current session.
    pub fn call_more(&mut self, now: Instant, n: u64) {
        self.client.total += n;
        self.issue(now);
    }

    fn issue(&mut self, now: Instant) {
        let c = &mut self.client;
        let (Some(session), Some(service)) = (c.session, c.service) else {
            return;
        };
        while c.in_flight.len() < c.concurrency && c.next_tag < c.total {
            let tag = c.next_tag;
            let mut payload = vec![0u8; c.payload_len];
            payload[..8].copy_from_slice(&tag.to_be_bytes());
            for (i, b) in payload[8..].iter_mut().enumerate() {
                *b = (tag as u8).wrapping_mul(31).wrapping_add(i as u8);
            }
            let deadline = c.deadline.map(|d| now + d);
            match self
                .ep
                .call(now, session, service, CallKind::Unary, deadline, &payload)
            {
                Ok(call) => {
                    c.next_tag += 1;
                    c.in_flight.insert(
                        call,
                        Pending {
                            tag,
                            payload,
                            issued: now,
                        },
                    );
                }
                Err(net_proto::ApiError::CallsBlocked) => break,
                Err(e) => panic!("call failed: {e}"),
            }
        }
    }

    fn pump(&mut self, now: Instant) {
        while let Some(ev) = self.ep.poll_event() {
            self.on_event(now, ev);
        }
        self.continue_upload(now);
    }

    fn on_event(&mut self, now: Instant, ev: Event) {
        match ev {
            Event::Connected { .. } => self.client.connected = true,
            Event::Request {
                session,
                call,
                service,
                kind,
                payload,
                ..
            } => self.on_request(now, session, call, service, kind, payload),
            Event::Response {
                call,
                status,
                payload,
                cause,
                ..
            } => {
                if let Some(c) = cause {
                    self.client.causes.push(c);
                }
                self.on_response(now, call, status, payload)
            }
            Event::Message {
                session,
                call,
                payload,
            } => self.on_message(now, session, call, payload),
            Event::StreamFinished { session, call } => {
                let bytes = self.server.sink_bytes.get(&call).copied().unwrap_or(0);
                let _ = self
                    .ep
                    .respond(now, session, call, Status::OK, &bytes.to_be_bytes());
            }
            Event::Cancelled { call, status, .. } => self.server.cancelled.push((call, status)),
            Event::CallsAvailable { .. } => self.issue(now),
            Event::Writable { .. } => self.client.writable_events += 1,
            Event::Closed { reason, .. } => self.client.closed.push(reason),
            Event::Announce { .. } => {}
            Event::HandshakeRejected { error, .. } => self.server.rejected.push(error),
            Event::PeerState { peer, state, .. } => self.client.peer_states.push((peer, state)),
        }
    }

    fn on_request(
        &mut self,
        now: Instant,
        session: SessionId,
        call: CallId,
        service: ServiceId,
        kind: CallKind,
        payload: Vec<u8>,
    ) {
        *self.server.invocations.entry((session, call)).or_default() += 1;
        if payload.len() >= 8 {
            let tag = u64::from_be_bytes(payload[..8].try_into().unwrap());
            *self.server.by_tag.entry(tag).or_default() += 1;
        }
        if service == echo() {
            self.ep
                .respond(now, session, call, Status::OK, &payload)
                .expect("respond");
        } else if service == ticker() {
            assert_eq!(kind, CallKind::ServerStream);
            for i in 0..self.server.ticker_count {
                self.ep
                    .send_message(now, session, call, &i.to_be_bytes())
                    .expect("tick");
            }
            self.ep
                .respond(now, session, call, Status::OK, b"done")
                .expect("trailer");
        }
        self.ep.recycle(payload);
    }

    fn on_response(&mut self, now: Instant, call: CallId, status: Status, payload: Vec<u8>) {
        let c = &mut self.client;
        *c.statuses.entry(status.get()).or_default() += 1;
        c.completed += 1;
        if let Some(p) = c.in_flight.remove(&call) {
            if status.is_ok() && payload != p.payload {
                c.mismatches += 1;
            }
            c.latencies.push(now - p.issued);
            let _ = p.tag;
        } else {
            c.responses.insert(call, (status, payload));
            return;
        }
        self.ep.recycle(payload);
        self.issue(now);
    }

    fn on_message(&mut self, now: Instant, session: SessionId, call: CallId, payload: Vec<u8>) {
        if self.ep.session_side(session) == Some(net_proto::Side::Responder)
            || self.server.sink_next_seq.contains_key(&call)
            || call.opener() != self.ep.session_side(session).unwrap()
        {
            // Server side: sink or duplex.
            if payload.len() >= 8 {
                let seq = u64::from_be_bytes(payload[..8].try_into().unwrap());
                let next = self.server.sink_next_seq.entry(call).or_default();
                if seq != *next {
                    self.server.sink_out_of_order += 1;
                }
                *next = seq + 1;
            }
            *self.server.sink_bytes.entry(call).or_default() += payload.len() as u64;
            if self.server.sink_bytes.contains_key(&call) && payload.starts_with(b"dup:") {
                let _ = self.ep.send_message(now, session, call, &payload);
            }
        } else {
            self.client.messages.entry(call).or_default().push(payload);
        }
    }

    /// Starts a client-stream upload of `total` bytes in `msg` byte messages.
    pub fn start_upload(
        &mut self,
        now: Instant,
        session: SessionId,
        total: u64,
        msg: usize,
    ) -> CallId {
        let call = self
            .ep
            .call(now, session, sink(), CallKind::ClientStream, None, b"")
            .expect("open upload");
        self.client.upload = Some((call, total, msg, 0));
        self.continue_upload(now);
        call
    }

    fn continue_upload(&mut self, now: Instant) {
        let Some((call, mut left, msg, mut seq)) = self.client.upload else {
            return;
        };
        let Some(session) = self.client.session else {
            return;
        };
        let mut buf = vec![0u8; msg];
        while left > 0 {
            let n = (msg as u64).min(left) as usize;
            buf[..8].copy_from_slice(&seq.to_be_bytes());
            match self.ep.send_message(now, session, call, &buf[..n]) {
                Ok(()) => {
                    left -= n as u64;
                    seq += 1;
                }
                Err(net_proto::ApiError::StreamBlocked) => break,
                Err(e) => panic!("upload: {e}"),
            }
        }
        if left == 0 {
            self.ep.finish_stream(now, session, call).expect("finish");
            self.client.upload = None;
        } else {
            self.client.upload = Some((call, left, msg, seq));
        }
    }
}

impl SimNode for RpcNode {
    fn handle_datagram(&mut self, now: Instant, src: SocketAddr, data: &mut [u8]) {
        self.ep.handle(now, src, data);
        self.pump(now);
    }

    fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        self.pump(now);
        self.ep.poll_transmit(now, buf).map(|t| Transmit {
            dst: t.dst,
            len: t.len,
        })
    }

    fn poll_timeout(&mut self) -> Option<Instant> {
        self.ep.poll_timeout()
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.ep.handle_timeout(now);
        self.pump(now);
    }
}

pub const CLIENT: u8 = 1;
pub const SERVER: u8 = 2;

pub fn addr(n: u8) -> SocketAddr {
    net_sim::v4(n, 4000)
}

/// A simulator with a client (node 1) and a server (node 2).
pub fn pair(seed: u64, client_psk: [u8; 32]) -> net_sim::Sim<RpcNode> {
    let mut sim = net_sim::Sim::new(seed);
    let now = sim.now();
    sim.add_node(addr(CLIENT), RpcNode::new(config(CLIENT, client_psk), now));
    sim.add_node(addr(SERVER), RpcNode::new(config(SERVER, PSK), now));
    sim
}

/// Connects the client to the server, uploads `total` bytes to the sink in
/// `msg`-byte stream messages, and returns the sink's answer: its status
/// and the byte count it received (panics past `limit` of simulated time).
pub fn upload_to_sink(
    sim: &mut net_sim::Sim<RpcNode>,
    total: u64,
    msg: usize,
    limit: Duration,
) -> (Status, u64) {
    let now = sim.now();
    let server = identity(SERVER).public();
    let client = sim.node_mut(addr(CLIENT));
    let session = client.ep.connect(now, server, addr(SERVER)).unwrap();
    client.client.session = Some(session);
    sim.run_until(limit, |s| s.node(addr(CLIENT)).client.connected)
        .expect("connected");
    let now = sim.now();
    let call = sim
        .node_mut(addr(CLIENT))
        .start_upload(now, session, total, msg);
    sim.run_until(limit, |s| {
        s.node(addr(CLIENT)).client.responses.contains_key(&call)
    })
    .expect("upload completes");
    let (status, body) = &sim.node(addr(CLIENT)).client.responses[&call];
    let received = body
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_be_bytes);
    (*status, received)
}

/// Packet type byte of a datagram.
pub fn packet_type(bytes: &[u8]) -> u8 {
    bytes.first().copied().unwrap_or(0)
}
