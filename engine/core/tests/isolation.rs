//! A fault stays where it happened: `shutdown(timeout)` returns in time
//! whatever state a core is in (here: stuck in a handler, its inbox full),
//! and the calls queued to a core that stops complete instead of hanging.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use net_crypto::Identity;
use net_engine::{CallEvents, EngineError, Handler, MeshNode, MeshNodeConfig, ServeOptions};
use net_proto::{CallKind, ServiceId, Status};

const PSK: [u8; 32] = [6; 32];

/// Counts completions by status.
struct Count(Arc<AtomicU64>, Arc<AtomicU64>);
impl CallEvents for Count {
    fn complete(&mut self, status: Status, _: &[u8]) {
        if status == Status::UNAVAILABLE {
            self.1.fetch_add(1, Ordering::SeqCst);
        }
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn shutdown_returns_in_time_with_a_stuck_core_and_a_full_inbox() {
    let cfg = MeshNodeConfig::new(Identity::from_seed(&[40; 32]), PSK).with_inbox(16);
    let server = MeshNode::new(cfg).unwrap();
    server.start().unwrap();
    // A handler that blocks its core until the test lets it go.
    let (entered_tx, entered) = sync_channel::<()>(1);
    let (release, released) = channel::<()>();
    let released = Mutex::new(released);
    let stuck: Arc<net_engine::SyncHandler> = Arc::new(move |_, _, _| {
        entered_tx.send(()).unwrap();
        released.lock().unwrap().recv().unwrap();
        Status::OK
    });
    server
        .serve("stuck", Handler::Sync(stuck), ServeOptions::default())
        .unwrap();
    let client = MeshNode::new(
        MeshNodeConfig::new(Identity::from_seed(&[41; 32]), PSK).with_peer(
            server.local_addr().unwrap(),
            server.config().public_identity(),
        ),
    )
    .unwrap();
    client.start().unwrap();
    let (done, unavailable) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let count = || Box::new(Count(done.clone(), unavailable.clone()));
    let call = |from: &MeshNode, to, service| {
        from.call(
            to,
            ServiceId::of(service),
            CallKind::Unary,
            None,
            Vec::new().into(),
            count(),
        )
    };
    call(&client, server.node_id(), "stuck").unwrap();
    entered
        .recv_timeout(Duration::from_secs(30))
        .expect("handler runs");
    // Fill the stuck core's inbox with calls of its own.
    let mut queued = 0u64;
    while call(&server, client.node_id(), "x").is_ok() {
        queued += 1;
    }
    assert!(queued >= 16, "inbox took {queued}");
    assert!(matches!(
        call(&server, client.node_id(), "x"),
        Err(EngineError::Backpressure)
    ));

    let timeout = Duration::from_millis(300);
    let t = Instant::now();
    let r = server.shutdown(timeout);
    let took = t.elapsed();
    eprintln!("shutdown({timeout:?}) of a stuck core returned {r:?} after {took:?}");
    assert!(matches!(r, Err(EngineError::ShutdownTimeout(1))), "{r:?}");
    // A bound on scheduling slack, not a speed claim: before, it never returned.
    assert!(took < timeout + Duration::from_secs(5), "{took:?}");

    // Let the core go: every call queued to it completes, none hangs.
    release.send(()).unwrap();
    net_testkit::eventually("every queued call completed", || {
        done.load(Ordering::SeqCst) >= queued
    });
    assert_eq!(unavailable.load(Ordering::SeqCst), queued);
}
