//! The engine and SDK on loopback, once per UDP driver: unary, streaming both
//! ways, duplex, cancel, deadline, 10 000 calls at c128, shutdown with calls
//! in flight. A driver the kernel refuses is skipped with a printed reason.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use net::{CallOptions, DriverChoice, DriverKind, Identity, Mesh, MeshError, RpcError, Status};
use net_engine::{CallEvents, EngineError, IncomingCall, Responder};
use net_io::IoError;
use net_testkit::eventually_async;

const PSK: [u8; 32] = [7; 32];
/// Every scenario must finish well within this; a hang fails the test.
const BOUND: Duration = Duration::from_secs(60);

/// Whether a kernel that refuses io_uring fails the uring suite instead of
/// skipping it: `NET_REQUIRE_URING=1`, which `.ci/run` sets.
fn uring_required() -> bool {
    std::env::var_os("NET_REQUIRE_URING").is_some_and(|v| v == "1")
}

/// Server (seed 1) and client (seed 2) on `kind`, or None if the kernel
/// refuses io_uring (see [`uring_required`]).
fn pair(kind: DriverKind, cores: usize) -> Option<(Mesh, Mesh)> {
    let server = Mesh::builder()
        .identity(Identity::from_seed(&[1; 32]))
        .psk(PSK)
        .driver(DriverChoice::Force(kind))
        .cores(cores)
        .pin(false)
        .build()
        .unwrap();
    match server.start() {
        Ok(()) => {}
        // Only io_uring may be missing (an old or locked-down kernel), and
        // not where `NET_REQUIRE_URING=1` (CI) says it must be there.
        Err(MeshError::Engine(EngineError::Io(e @ IoError::Unavailable { .. })))
            if kind == DriverKind::Uring && !uring_required() =>
        {
            eprintln!("SKIPPED the {kind} suite: {e}");
            return None;
        }
        Err(e) => panic!("start: {e}"),
    }
    let client = common::start_client_of(
        Mesh::builder()
            .identity(Identity::from_seed(&[2; 32]))
            .psk(PSK)
            .driver(DriverChoice::Force(kind))
            .cores(cores)
            .pin(false),
        &server,
    );
    assert_eq!(
        client.describe().0,
        kind.to_string(),
        "forced driver in use"
    );
    Some((server, client))
}

fn echo(server: &Mesh) -> net::ServeHandle {
    server
        .serve_rpc("echo", |_, body, out| {
            out.extend_from_slice(body);
            Status::OK
        })
        .unwrap()
}

/// Client-stream sink: counts bytes, answers the total at end of stream.
struct Count {
    bytes: u64,
    responder: Responder,
    duplex: bool,
}

impl CallEvents for Count {
    fn message(&mut self, payload: &[u8]) {
        self.bytes += payload.len() as u64;
        if self.duplex {
            // On the core: never wait; the test's echoes fit the credit.
            self.responder.try_send(payload.to_vec()).unwrap();
        }
    }
    fn finished(&mut self) {
        self.responder
            .respond(Status::OK, self.bytes.to_be_bytes().to_vec())
            .unwrap();
    }
    fn complete(&mut self, _: Status, _: &[u8]) {}
}

fn streaming_services(server: &Mesh) -> Vec<net::ServeHandle> {
    let ticker = server
        .serve_stream("ticker", |call: IncomingCall| {
            let n = u32::from_be_bytes(call.payload[..4].try_into().unwrap());
            for i in 0..n {
                call.responder.try_send(i.to_be_bytes().to_vec()).unwrap();
            }
            call.responder
                .respond(Status::OK, b"done".to_vec())
                .unwrap();
            None
        })
        .unwrap();
    let sink = server
        .serve_stream("sink", |call: IncomingCall| {
            Some(Box::new(Count {
                bytes: 0,
                responder: call.responder,
                duplex: false,
            }) as _)
        })
        .unwrap();
    let duplex = server
        .serve_stream("duplex", |call: IncomingCall| {
            Some(Box::new(Count {
                bytes: 0,
                responder: call.responder,
                duplex: true,
            }) as _)
        })
        .unwrap();
    vec![ticker, sink, duplex]
}

async fn unary_and_streams(server: &Mesh, client: &Mesh) {
    let _e = echo(server);
    let _s = streaming_services(server);
    let id = server.node_id();
    let r = client.call(id, "echo", b"ping".to_vec()).await.unwrap();
    assert_eq!(&r[..], b"ping");
    // Server streaming.
    let mut s = client
        .call_server_stream(
            id,
            "ticker",
            100u32.to_be_bytes().to_vec(),
            CallOptions::default(),
        )
        .unwrap();
    for i in 0..100u32 {
        assert_eq!(s.next().await.as_deref(), Some(&i.to_be_bytes()[..]));
    }
    assert_eq!(s.next().await, None);
    assert_eq!(&s.finish().await.unwrap()[..], b"done");
    // Client streaming.
    let mut c = client
        .call_client_stream(id, "sink", CallOptions::default())
        .unwrap();
    for _ in 0..500 {
        c.send(vec![1u8; 1000]).await.unwrap();
    }
    assert_eq!(c.finish().await.unwrap()[..], 500_000u64.to_be_bytes());
    // Duplex.
    let mut d = client
        .call_duplex(id, "duplex", CallOptions::default())
        .unwrap();
    for i in 0..50u8 {
        d.send(vec![i; 10]).await.unwrap();
        assert_eq!(d.recv().await.unwrap()[..], [i; 10]);
    }
    assert_eq!(d.finish().await.unwrap()[..], 500u64.to_be_bytes());
    // A response larger than a packet (the 16 KiB loopback datagram) is
    // segmented; one over the caller's `max_message` is refused, not dropped.
    let _big = server
        .serve_rpc("big", |_, _, out| {
            out.resize(20_000, 7);
            Status::OK
        })
        .unwrap();
    let body = client.call(id, "big", b"x".to_vec()).await.unwrap();
    assert!(body.len() == 20_000 && body.iter().all(|&b| b == 7));
    let _huge = server
        .serve_rpc("huge", |_, _, out| {
            out.resize(net_proto::config::DEFAULT_MAX_MESSAGE as usize + 1, 0);
            Status::OK
        })
        .unwrap();
    let err = client.call(id, "huge", b"x".to_vec()).await.unwrap_err();
    assert_eq!(err.status(), Some(Status::PAYLOAD_TOO_LARGE));
    // Unknown service.
    let err = client.call(id, "nope", b"x".to_vec()).await.unwrap_err();
    assert_eq!(err.status(), Some(Status::NOT_FOUND));
    // Discovery: the server announced its services on session open.
    eventually_async("echo discovered", || client.discover("echo") == vec![id]).await;
    // The client trusts no provider for `echo` (no allow-list, no token),
    // so routing by name needs the explicit opt-in.
    let err = client
        .call_service("echo", b"x".to_vec())
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(Status::UNAVAILABLE));
    assert_eq!(
        &client
            .call_service_untrusted("echo", b"found".to_vec())
            .await
            .unwrap()[..],
        b"found"
    );
    let err = client
        .call_service("nobody-serves-this", b"x".to_vec())
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(Status::UNAVAILABLE));
}

async fn cancel_and_deadline(server: &Mesh, client: &Mesh) {
    let _slow = server
        .serve_rpc_async("slow", |_req| async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok(net::Bytes::new())
        })
        .unwrap();
    let id = server.node_id();
    // The deadline's cancel and the dropped call's cancel both reach the callee.
    let before = cancelled(server);
    let opts = CallOptions {
        deadline: Some(Duration::from_millis(50)),
    };
    let err = client
        .call_with(id, "slow", b"x".to_vec(), opts)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(Status::TIMEOUT), "{err}");
    // Dropping the future cancels the call at the callee.
    let r = tokio::time::timeout(
        Duration::from_millis(50),
        client.call(id, "slow", b"y".to_vec()),
    )
    .await;
    assert!(r.is_err(), "the slow call was still running");
    eventually_async("both cancels at the callee", || {
        cancelled(server) >= before + 2
    })
    .await;
}

fn cancelled(m: &Mesh) -> u64 {
    m.stats().iter().map(|s| s.proto.calls_cancelled).sum()
}

async fn c128(server: &Mesh, client: &Mesh) {
    let _e = echo(server);
    let id = server.node_id();
    let errors = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for t in 0..128u64 {
        let (client, errors) = (client.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..10_000u64 / 128 + 1 {
                let body = (t << 32 | i).to_be_bytes().to_vec();
                match client.call(id, "echo", body.clone()).await {
                    Ok(r) if r[..] == body[..] => {}
                    other => {
                        if errors.fetch_add(1, Ordering::Relaxed) < 3 {
                            eprintln!("c128 error: {other:?}");
                        }
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(errors.load(Ordering::Relaxed), 0);
}

/// Calls in flight when the server shuts down are answered (the server
/// drains), and calls in flight when the client shuts down complete — none
/// is lost, none hangs.
async fn shutdown_with_calls_in_flight(server: Mesh, client: Mesh) {
    // Every handler holds its call until released, and the release comes
    // only once the shutdown is requested: all 64 calls are in flight when
    // it is, and each must still be answered.
    let started = Arc::new(AtomicU64::new(0));
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let (s, r) = (started.clone(), release.clone());
    let _slow = server
        .serve_rpc_async("slow", move |req| {
            s.fetch_add(1, Ordering::SeqCst);
            let r = r.clone();
            async move {
                r.acquire().await.expect("never closed").forget();
                Ok(req.payload)
            }
        })
        .unwrap();
    let id = server.node_id();
    let mut calls = Vec::new();
    for i in 0..64u32 {
        let c = client.clone();
        calls.push(tokio::spawn(async move {
            c.call(id, "slow", i.to_be_bytes().to_vec()).await
        }));
    }
    eventually_async("64 handlers running", || {
        started.load(Ordering::SeqCst) == 64
    })
    .await;
    let s = server.clone();
    let stop = tokio::task::spawn_blocking(move || s.shutdown(Duration::from_secs(5)));
    release.add_permits(64);
    for (i, c) in calls.into_iter().enumerate() {
        let r = c.await.unwrap().expect("drained call answered");
        assert_eq!(r[..], (i as u32).to_be_bytes());
    }
    stop.await.unwrap().unwrap();
    // Now the server is gone: a client call in flight during the client's
    // own shutdown completes (Unavailable) instead of hanging.
    let inits = |m: &Mesh| -> u64 { m.stats().iter().map(|s| s.proto.handshake_init_tx).sum() };
    let opened = |m: &Mesh| -> u64 { m.stats().iter().map(|s| s.open_calls).sum() };
    let h0 = inits(&client);
    let c2 = client.clone();
    let pending = tokio::spawn(async move {
        c2.call_with(
            id,
            "slow",
            b"late".to_vec(),
            CallOptions {
                deadline: Some(Duration::from_secs(20)),
            },
        )
        .await
    });
    // The call reached the client's core: it reconnects (the server's CLOSE
    // ended the session) or, had the CLOSE been lost, the call is open.
    eventually_async("the late call on the client's core", || {
        inits(&client) > h0 || opened(&client) > 0
    })
    .await;
    tokio::task::spawn_blocking(move || client.shutdown(Duration::from_millis(200)))
        .await
        .unwrap()
        .unwrap();
    match pending.await.unwrap() {
        Err(e @ RpcError::Failed { .. }) => {
            assert_eq!(e.status(), Some(Status::UNAVAILABLE));
            // The session closed under it (locally) or the core exited.
            assert!(
                matches!(
                    e.cause(),
                    Some(net::Cause::Shutdown | net::Cause::Session(_))
                ),
                "{e}"
            );
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

async fn suite(kind: DriverKind) {
    let Some((server, client)) = pair(kind, 1) else {
        return;
    };
    tokio::time::timeout(BOUND, unary_and_streams(&server, &client))
        .await
        .expect("streams bounded");
    tokio::time::timeout(BOUND, cancel_and_deadline(&server, &client))
        .await
        .expect("cancel bounded");
    tokio::time::timeout(BOUND, c128(&server, &client))
        .await
        .expect("c128 bounded");
    tokio::time::timeout(BOUND, shutdown_with_calls_in_flight(server, client))
        .await
        .expect("shutdown bounded");
}

macro_rules! per_driver {
    ($($name:ident => $kind:expr),*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            suite($kind).await;
        }
    )*};
}

per_driver!(uring => DriverKind::Uring, mmsg => DriverKind::Mmsg, portable => DriverKind::Portable);

/// With two cores, the kernel steers every packet of a session to the core
/// that owns it: a packet on the wrong core would be an unknown index there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steering_two_cores() {
    let Some((server, client)) = pair(DriverKind::Mmsg, 2) else {
        return;
    };
    let _e = echo(&server);
    let id = server.node_id();
    for i in 0..2000u32 {
        let r = client
            .call(id, "echo", i.to_be_bytes().to_vec())
            .await
            .unwrap();
        assert_eq!(r[..], i.to_be_bytes());
    }
    let stats = server.stats();
    assert_eq!(stats.len(), 2);
    let rx: u64 = stats.iter().map(|s| s.proto.data_packets_rx).sum();
    assert!(rx >= 2000);
    // A handshake initiation retransmitted under load supersedes the
    // session its first copy made; packets already in flight to that index
    // are then unknown on the right core. Beyond those, an unknown index
    // would be a packet steered to the wrong core — but a stray datagram
    // can land here too: another suite of this process ran on a port the
    // kernel has since reused (seen once in ~40 runs under load: 1 unknown,
    // 0 superseded). Steering that failed would misroute a session's every
    // packet (thousands here) and fail the calls above, so two strays are
    // tolerated.
    let inits: u64 = client
        .stats()
        .iter()
        .map(|s| s.proto.handshake_init_tx)
        .sum();
    let superseded = inits.saturating_sub(2);
    for s in stats.iter().chain(client.stats().iter()) {
        assert!(
            s.proto.drop_unknown_index <= 4 * superseded + 2,
            "core {} got another core's packet ({} unknown, {superseded} superseded handshakes)",
            s.core,
            s.proto.drop_unknown_index
        );
        assert_eq!(s.proto.drop_decrypt, 0);
    }
    // Both client cores opened their own session (per-core sessions).
    let handshakes: u64 = client
        .stats()
        .iter()
        .map(|s| s.proto.handshakes_completed)
        .sum();
    assert_eq!(handshakes, 2);
}
