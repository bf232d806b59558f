//! Nothing lost, nothing dies (issue 12), through the public SDK on loopback:
//! every stream message a sender's `send` accepted arrives before the final
//! OK, oversized messages are refused at `send`, panicking handlers fail
//! only their call, and cancelled callers stop their async handlers.

mod common;

use std::hash::Hasher;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use net::{CallOptions, Identity, Mesh, RpcError, SendError, Status};
use net_engine::{CallEvents, IncomingCall, MeshNodeConfig, Responder};

const PSK: [u8; 32] = [9; 32];
/// Every scenario must finish well within this; a hang fails the test.
const BOUND: Duration = Duration::from_secs(120);

fn server(max_in_flight: u32) -> Mesh {
    let cfg =
        MeshNodeConfig::new(Identity::from_seed(&[1; 32]), PSK).with_max_in_flight(max_in_flight);
    let m = Mesh::builder().node_config(cfg).pin(false).build().unwrap();
    m.start().unwrap();
    m
}

/// A client of `server` with this configuration (identity and PSK in it).
fn client_with(server: &Mesh, cfg: MeshNodeConfig) -> Mesh {
    common::start_client_of(Mesh::builder().node_config(cfg).pin(false), server)
}

fn client_of(server: &Mesh, seed: u8) -> Mesh {
    client_with(
        server,
        MeshNodeConfig::new(Identity::from_seed(&[seed; 32]), PSK),
    )
}

fn stat(m: &Mesh, f: impl Fn(&net::CoreStats) -> u64) -> u64 {
    m.stats().iter().map(f).sum()
}

/// Message `i` of a stream of `len`-byte messages: its index, then filler.
fn message(i: u32, len: usize) -> Vec<u8> {
    let mut m = vec![(i % 251) as u8; len];
    m[..4].copy_from_slice(&i.to_be_bytes());
    m
}

/// Serves "ticker": sends `n` messages of `len` bytes (from the request)
/// with the waiting `send`, then answers OK.
fn ticker(server: &Mesh) -> net::ServeHandle {
    let rt = tokio::runtime::Handle::current();
    server
        .serve_stream("ticker", move |call: IncomingCall| {
            let n = u32::from_be_bytes(call.payload[..4].try_into().unwrap());
            let len = u32::from_be_bytes(call.payload[4..8].try_into().unwrap()) as usize;
            let r = call.responder;
            rt.spawn(async move {
                for i in 0..n {
                    r.send(message(i, len)).await.expect("send accepted");
                }
                r.respond(Status::OK, b"done".to_vec()).unwrap();
            });
            None
        })
        .unwrap()
}

async fn server_stream(client: &Mesh, server: &Mesh, n: u32, len: usize) {
    let mut req = n.to_be_bytes().to_vec();
    req.extend_from_slice(&(len as u32).to_be_bytes());
    let mut s = client
        .call_server_stream(server.node_id(), "ticker", req, CallOptions::default())
        .unwrap();
    let mut got = 0u32;
    while let Some(m) = s.next().await {
        assert_eq!(m[..], message(got, len)[..], "message {got} of {n}");
        got += 1;
    }
    assert_eq!(got, n, "every message before the trailer");
    assert_eq!(&s.finish().await.unwrap()[..], b"done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_streams_deliver_every_message_before_ok() {
    let server = server(4096);
    let client = client_of(&server, 2);
    let _t = ticker(&server);
    tokio::time::timeout(BOUND, async {
        server_stream(&client, &server, 2_000, 16_000).await;
        server_stream(&client, &server, 20_000, 100).await;
    })
    .await
    .expect("streams bounded");
}

/// Client-stream sink: hashes every byte, answers the hash at end of stream.
struct Hash {
    h: std::collections::hash_map::DefaultHasher,
    responder: Responder,
}

impl CallEvents for Hash {
    fn message(&mut self, payload: &[u8]) {
        self.h.write(payload);
    }
    fn finished(&mut self) {
        let digest = self.h.finish().to_be_bytes().to_vec();
        self.responder.respond(Status::OK, digest).unwrap();
    }
    fn complete(&mut self, _: Status, _: &[u8]) {}
}

/// Serves "hash": a client stream whose answer is the hash of its bytes.
fn hash_service(server: &Mesh) -> net::ServeHandle {
    server
        .serve_stream("hash", |call: IncomingCall| {
            Some(Box::new(Hash {
                h: Default::default(),
                responder: call.responder,
            }) as _)
        })
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_stream_of_50_mib_arrives_whole() {
    let server = server(4096);
    // A tiny inbox: the engine must not lose stream messages when it is full.
    let cfg = MeshNodeConfig::new(Identity::from_seed(&[3; 32]), PSK).with_inbox(16);
    let client = client_with(&server, cfg);
    let _sink = hash_service(&server);
    const LEN: usize = 1284;
    let n = (50 << 20) / LEN + 1;
    let t = std::time::Instant::now();
    tokio::time::timeout(BOUND, async {
        let mut c = client
            .call_client_stream(server.node_id(), "hash", CallOptions::default())
            .unwrap();
        let mut h = std::collections::hash_map::DefaultHasher::default();
        for i in 0..n as u32 {
            let m = message(i, LEN);
            h.write(&m);
            c.send(m).await.unwrap();
        }
        let digest = c.finish().await.unwrap();
        assert_eq!(digest[..], h.finish().to_be_bytes(), "every byte, in order");
    })
    .await
    .expect("client stream bounded");
    eprintln!("50 MiB client stream in {:?}", t.elapsed());
    assert_eq!(stat(&client, |s| s.stream_msgs_dropped), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_stream_message_is_refused_at_send() {
    let server = server(4096);
    let client = client_of(&server, 4);
    let _sink = hash_service(&server);
    let mut c = client
        .call_client_stream(server.node_id(), "hash", CallOptions::default())
        .unwrap();
    c.send(vec![1; 1000]).await.unwrap();
    match c.send(vec![1; 1 << 20]).await {
        Err(RpcError::Stream(SendError::PayloadTooLarge { len, max })) => {
            assert_eq!(len, 1 << 20);
            assert!(max < len);
        }
        other => panic!("expected PayloadTooLarge at send, got {other:?}"),
    }
    c.send(vec![2; 10]).await.unwrap();
    let mut h = std::collections::hash_map::DefaultHasher::default();
    h.write(&[1; 1000]);
    h.write(&[2; 10]);
    assert_eq!(c.finish().await.unwrap()[..], h.finish().to_be_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panicking_handlers_fail_their_call_not_their_core() {
    let server = server(4096);
    let client = client_of(&server, 5);
    let id = server.node_id();
    let _boom = server
        .serve_rpc("boom", |_, _, _| panic!("sync handler bug"))
        .unwrap();
    let _aboom = server
        .serve_rpc_async("aboom", |_req| async {
            tokio::task::yield_now().await;
            panic!("async handler bug");
        })
        .unwrap();
    let _echo = server
        .serve_rpc("echo", |_, body, out| {
            out.extend_from_slice(body);
            Status::OK
        })
        .unwrap();
    for round in 0..3u8 {
        let e = client.call(id, "boom", vec![round]).await.unwrap_err();
        assert_eq!(e.status(), Some(Status::INTERNAL), "{e}");
        let e = client.call(id, "aboom", vec![round]).await.unwrap_err();
        assert_eq!(e.status(), Some(Status::INTERNAL), "{e}");
        // The same (only) core keeps serving.
        assert_eq!(
            client.call(id, "echo", vec![round]).await.unwrap()[..],
            [round]
        );
    }
    assert_eq!(stat(&server, |s| s.handler_panics), 6);
    assert_eq!(server.stats().len(), 1, "the core is alive");
}

/// Live handler futures and their peak, through a guard in each future.
#[derive(Default)]
struct Live {
    now: AtomicUsize,
    peak: AtomicUsize,
    started: AtomicU64,
}

struct LiveGuard(Arc<Live>);

impl LiveGuard {
    fn new(l: &Arc<Live>) -> Self {
        let n = l.now.fetch_add(1, Ordering::SeqCst) + 1;
        l.peak.fetch_max(n, Ordering::SeqCst);
        l.started.fetch_add(1, Ordering::SeqCst);
        LiveGuard(l.clone())
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_async_handlers_stop_and_stay_within_max_in_flight() {
    const MAX: u32 = 32;
    let server = server(MAX);
    let live = Arc::new(Live::default());
    let l = live.clone();
    let _slow = server
        .serve_rpc_async("slow", move |_req| {
            let l = l.clone();
            async move {
                let _g = LiveGuard::new(&l);
                tokio::time::sleep(Duration::from_secs(600)).await;
                Ok(net::Bytes::new())
            }
        })
        .unwrap();
    let clients: Vec<Mesh> = (0..20u8).map(|i| client_of(&server, 10 + i)).collect();
    let id = server.node_id();
    tokio::time::timeout(BOUND, async {
        // Each session calls in 8 waves of 32: a wave's calls time out, and
        // the next wave must find the slots of handlers that really stopped.
        let mut tasks = Vec::new();
        for c in &clients {
            let c = c.clone();
            tasks.push(tokio::spawn(async move {
                for wave in 0..8u32 {
                    let mut calls = Vec::new();
                    for i in 0..32u32 {
                        let opts = CallOptions {
                            deadline: Some(Duration::from_millis(100)),
                        };
                        let body = (wave << 16 | i).to_be_bytes().to_vec();
                        let c = c.clone();
                        calls.push(tokio::spawn(async move {
                            c.call_with(id, "slow", body, opts).await
                        }));
                    }
                    for call in calls {
                        let s = call.await.unwrap().unwrap_err().status();
                        assert!(
                            s == Some(Status::TIMEOUT) || s == Some(Status::BACKPRESSURE),
                            "{s:?}"
                        );
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        // Close every session: whatever still runs must stop.
        for c in clients {
            tokio::task::spawn_blocking(move || c.shutdown(Duration::from_secs(5)))
                .await
                .unwrap()
                .unwrap();
        }
        net_testkit::eventually_async("abandoned handlers stopped", || {
            live.now.load(Ordering::SeqCst) == 0
        })
        .await;
    })
    .await
    .expect("abandoned handlers stopped");
    let peak = live.peak.load(Ordering::SeqCst);
    eprintln!(
        "handlers started {}, peak running {peak} (max_in_flight {MAX})",
        live.started.load(Ordering::SeqCst)
    );
    assert!(peak <= MAX as usize, "peak {peak} > {MAX}");
    assert!(
        live.started.load(Ordering::SeqCst) > u64::from(MAX),
        "slots were reused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_holds_at_most_one_window() {
    const LEN: usize = 16_000;
    const N: u32 = 1_000; // 16 MB offered
    let server = server(4096);
    let client = client_of(&server, 6);
    let accepted = Arc::new(AtomicU64::new(0));
    let a = accepted.clone();
    let rt = tokio::runtime::Handle::current();
    let _push = server
        .serve_stream("push", move |call: IncomingCall| {
            let (r, a) = (call.responder, a.clone());
            rt.spawn(async move {
                for i in 0..N {
                    r.send(message(i, LEN)).await.expect("send accepted");
                    a.fetch_add(LEN as u64, Ordering::SeqCst);
                }
                r.respond(Status::OK, Vec::new()).unwrap();
            });
            None
        })
        .unwrap();
    let mut s = client
        .call_server_stream(server.node_id(), "push", Vec::new(), CallOptions::default())
        .unwrap();
    // The server's sends stall: wait until they stop advancing.
    let mut last = (u64::MAX, 0);
    let until = std::time::Instant::now() + BOUND;
    while last.1 < 50 {
        assert!(std::time::Instant::now() < until, "sender never stalled");
        tokio::time::sleep(Duration::from_millis(10)).await;
        let now = accepted.load(Ordering::SeqCst);
        last = if now == last.0 {
            (now, last.1 + 1)
        } else {
            (now, 0)
        };
    }
    let window = 1u64 << 20;
    let held = accepted.load(Ordering::SeqCst);
    let client_buffered = stat(&client, |s| s.proto.stream_bytes_buffered);
    eprintln!(
        "non-reading client: server accepted {held} of {} B; client protocol buffer {client_buffered} B (window {window})",
        u64::from(N) * LEN as u64
    );
    // At most one window in flight to the client (protocol buffer plus the
    // unread channel) and one window queued on the server's core.
    assert!(held <= 2 * window + LEN as u64, "{held}");
    assert!(client_buffered <= window, "{client_buffered}");
    // Reading resumes the stream: every message arrives, in order, then OK.
    for i in 0..N {
        let m = tokio::time::timeout(BOUND, s.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(m[..], message(i, LEN)[..], "message {i}");
    }
    assert_eq!(s.next().await, None);
    s.finish().await.unwrap();
}
