//! The engine on the in-memory driver: two nodes on one [`MemNet`] make a
//! unary call and a 1 000-message server stream without opening a socket
//! (driver kind `Memory`, zero driver syscalls), on one core and on two
//! (steered like a reuseport group). Everything waits on events.

use std::future::Future;
use std::pin::pin;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use net_crypto::Identity;
use net_engine::{
    CallEvents, DriverChoice, DriverKind, EngineError, Handler, IncomingCall, MemNet, MeshNode,
    MeshNodeConfig, ServeOptions,
};
use net_io::{DriverConfig, IoError};
use net_proto::{CallKind, ServiceId, Status};

const PSK: [u8; 32] = [9; 32];

/// Upper bound for anything a test waits for (only reached on failure).
const PATIENCE: Duration = Duration::from_secs(60);

const MESSAGES: u32 = 1_000;

fn node(net: &MemNet, seed: u8, cores: usize, peer: Option<&MeshNode>) -> MeshNode {
    node_sized(net, seed, cores, peer, DriverConfig::default().max_datagram)
}

/// A started node on `net` whose datagrams are at most `max_datagram` bytes.
fn node_sized(
    net: &MemNet,
    seed: u8,
    cores: usize,
    peer: Option<&MeshNode>,
    max_datagram: usize,
) -> MeshNode {
    let mut cfg = MeshNodeConfig::new(Identity::from_seed(&[seed; 32]), PSK)
        .with_memory_network(net.clone())
        .with_cores(cores)
        .with_pinning(false)
        .with_driver_config(DriverConfig {
            max_datagram,
            ..DriverConfig::default()
        });
    if let Some(p) = peer {
        cfg = cfg.with_peer(p.local_addr().unwrap(), p.config().public_identity());
    }
    let n = MeshNode::new(cfg).unwrap();
    n.start().unwrap();
    assert_eq!(n.driver(), Some(DriverKind::Memory));
    n
}

/// Drives a future on this thread, parking between polls.
fn block_on<F: Future>(f: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

/// What a caller's sink saw, in order.
#[derive(Debug, PartialEq)]
enum Event {
    Message(Vec<u8>),
    Complete(Status, Vec<u8>),
}

struct Sink(Sender<Event>);

impl CallEvents for Sink {
    fn message(&mut self, payload: &[u8]) {
        let _ = self.0.send(Event::Message(payload.to_vec()));
    }
    fn complete(&mut self, status: Status, payload: &[u8]) {
        let _ = self.0.send(Event::Complete(status, payload.to_vec()));
    }
}

fn call(
    from: &MeshNode,
    to: &MeshNode,
    service: &str,
    kind: CallKind,
    body: &[u8],
) -> Receiver<Event> {
    let (tx, rx) = channel();
    from.call(
        to.node_id(),
        ServiceId::of(service),
        kind,
        None,
        body.to_vec().into(),
        Box::new(Sink(tx)),
    )
    .unwrap();
    rx
}

/// Serves `echo` (unary) and `count` (a server stream of MESSAGES numbered
/// messages of 100 bytes, then OK).
fn serve(server: &MeshNode) {
    let echo: Arc<net_engine::SyncHandler> = Arc::new(|_, req, out| {
        out.extend_from_slice(req);
        Status::OK
    });
    server
        .serve("echo", Handler::Sync(echo), ServeOptions::default())
        .unwrap();
    let count: Arc<net_engine::AsyncHandler> = Arc::new(|call: IncomingCall| {
        std::thread::spawn(move || {
            block_on(async {
                for i in 0..MESSAGES {
                    let mut m = vec![0u8; 100];
                    m[..4].copy_from_slice(&i.to_be_bytes());
                    call.responder.send(m).await.expect("stream send");
                }
            });
            call.responder
                .respond(Status::OK, b"done".to_vec())
                .unwrap();
        });
        None
    });
    server
        .serve("count", Handler::Async(count), ServeOptions::default())
        .unwrap();
}

fn unary_echo(client: &MeshNode, server: &MeshNode, body: &[u8]) {
    let rx = call(client, server, "echo", CallKind::Unary, body);
    let ev = rx.recv_timeout(PATIENCE).expect("echo completes");
    assert_eq!(ev, Event::Complete(Status::OK, body.to_vec()));
}

fn server_stream(client: &MeshNode, server: &MeshNode) {
    let rx = call(client, server, "count", CallKind::ServerStream, b"");
    for i in 0..MESSAGES {
        match rx.recv_timeout(PATIENCE).expect("stream message") {
            Event::Message(m) => {
                assert_eq!(m.len(), 100);
                assert_eq!(
                    u32::from_be_bytes(m[..4].try_into().unwrap()),
                    i,
                    "in order"
                );
            }
            other => panic!("after {i} messages: {other:?}"),
        }
    }
    let end = rx.recv_timeout(PATIENCE).expect("final status");
    assert_eq!(end, Event::Complete(Status::OK, b"done".to_vec()));
}

fn no_syscalls(n: &MeshNode) {
    let s: u64 = n.stats().iter().map(|c| c.io.syscalls).sum();
    assert_eq!(s, 0, "memory drivers make no syscalls");
}

#[test]
fn unary_and_server_stream_over_memory() {
    let net = MemNet::new();
    let server = node(&net, 1, 1, None);
    serve(&server);
    let client = node(&net, 2, 1, Some(&server));
    unary_echo(&client, &server, b"hello over memory");
    server_stream(&client, &server);
    unary_echo(&client, &server, b"still alive");
    no_syscalls(&client);
    no_syscalls(&server);
    client.shutdown(PATIENCE).unwrap();
    server.shutdown(PATIENCE).unwrap();
}

#[test]
fn two_cores_each_are_steered_like_a_reuseport_group() {
    let net = MemNet::new();
    let server = node(&net, 3, 2, None);
    serve(&server);
    let client = node(&net, 4, 2, Some(&server));
    // Calls go round robin over the client's cores: both open a session.
    for i in 0..8u8 {
        unary_echo(&client, &server, &[i; 32]);
    }
    server_stream(&client, &server);
    server_stream(&client, &server);
    // Each client core's replies come back to that core (the low bits of
    // its receiver index); which server core a session lands on is random.
    let got: Vec<u64> = client.stats().iter().map(|c| c.io.rx_datagrams).collect();
    assert!(
        got.iter().all(|&d| d > 0),
        "both client cores got replies: {got:?}"
    );
    client.shutdown(PATIENCE).unwrap();
    server.shutdown(PATIENCE).unwrap();
}

#[test]
fn forcing_the_memory_driver_without_a_network_is_refused() {
    let cfg = MeshNodeConfig::new(Identity::from_seed(&[5; 32]), PSK)
        .with_driver(DriverChoice::Force(DriverKind::Memory));
    let n = MeshNode::new(cfg).unwrap();
    match n.start() {
        Err(EngineError::Io(IoError::Unavailable { kind, reason })) => {
            assert_eq!(kind, DriverKind::Memory);
            assert!(reason.contains("MemNet"), "{reason}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

/// Stream integrity on a lossy, duplicating network: 20 % of datagrams
/// dropped and 5 % delivered twice (seeded), including handshakes, with
/// 1 452-byte datagrams so the stream spans many of them; every message
/// still arrives once, in order, before OK.
#[test]
fn a_lossy_network_still_delivers_every_message_in_order() {
    let net = MemNet::with_faults(12, 0.2, 0.05);
    let server = node_sized(&net, 6, 1, None, 1_452);
    serve(&server);
    let client = node_sized(&net, 7, 1, Some(&server), 1_452);
    unary_echo(&client, &server, b"through loss");
    server_stream(&client, &server);
    eprintln!(
        "lossy memory net: {} datagrams dropped, {} duplicated",
        net.lost(),
        net.duplicated()
    );
    assert!(net.lost() > 0, "the knob dropped something");
    client.shutdown(PATIENCE).unwrap();
    // Not `server.shutdown(PATIENCE)`: when the client's CLOSE was among the
    // lost datagrams, the server drains toward the vanished peer until half
    // its timeout (30 s here). Dropping bounds that at 500 ms.
    drop(server);
}
