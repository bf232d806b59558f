//! Discovery that cannot be hijacked, on real nodes over loopback UDP:
//! `call_service` sends a service's payloads only to providers the caller
//! trusts for it (here: its allow-list), never to another mesh member that
//! merely advertises the name; two trusted providers take turns.
//!
//! Waits are on events (discovery, polled with a bounded deadline), never
//! on time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use net::{Identity, Mesh, NodeId, ServeHandle, Status};
use net_testkit::eventually_async;

const PSK: [u8; 32] = [21; 32];

/// A started node (two cores: with one shared round-robin counter, two
/// cores made every service call land on the same provider).
fn node(seed: u8, peers: &[&Mesh], trusted: &[(&str, Vec<NodeId>)]) -> Mesh {
    let mut b = Mesh::builder()
        .identity(Identity::from_seed(&[seed; 32]))
        .psk(PSK)
        .cores(2)
        .pin(false);
    for p in peers {
        let addr = p.local_addr().expect("peer started");
        b = b.peer(addr, p.engine().config().public_identity());
    }
    for (service, providers) in trusted {
        b = b.trusted_providers(service, providers.clone());
    }
    let m = b.build().expect("config");
    m.start().expect("start");
    m
}

/// Serves `service` on `m`, answering `m`'s node id and counting calls.
fn serve_counted(m: &Mesh, service: &str) -> (ServeHandle, Arc<AtomicU64>) {
    let hits = Arc::new(AtomicU64::new(0));
    let (h, me) = (hits.clone(), m.node_id());
    let handle = m
        .serve_rpc(service, move |_, _, out| {
            h.fetch_add(1, Ordering::SeqCst);
            out.extend_from_slice(&me.0);
            Status::OK
        })
        .expect("serve");
    (handle, hits)
}

/// Opens `from`'s session to `to` (a call nobody serves: `NotFound` proves
/// the session is up); both sides announce themselves on it.
async fn connect(from: &Mesh, to: &Mesh) {
    let err = from
        .call(to.node_id(), "hello", b"hi".to_vec())
        .await
        .expect_err("nobody serves hello");
    assert_eq!(err.status(), Some(Status::NOT_FOUND), "{err}");
}

/// Waits until `caller` sees every node of `want` advertise `service`.
async fn until_discovered(caller: &Mesh, service: &str, want: &[NodeId]) {
    let what = format!("{} advertisers of {service}", want.len());
    eventually_async(&what, || {
        let seen = caller.discover(service);
        want.iter().all(|n| seen.contains(n))
    })
    .await;
}

/// An attacker holding the PSK advertises `vault` under its own id. The
/// caller trusts only the real provider: 40 of 40 calls go there and the
/// attacker's handler never runs. A caller trusting nobody fails
/// `Unavailable` at once, saying why, and sends nothing. The explicit
/// opt-in does reach the attacker, so only the rule kept it out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_advertising_attacker_receives_no_payload() {
    let provider = node(1, &[], &[]);
    let attacker = node(2, &[], &[]);
    let (_p, provider_hits) = serve_counted(&provider, "vault");
    let (_a, attacker_hits) = serve_counted(&attacker, "vault");
    let trusted = vec![provider.node_id()];
    let caller = node(3, &[&provider, &attacker], &[("vault", trusted.clone())]);
    let both = [provider.node_id(), attacker.node_id()];
    for p in [&provider, &attacker] {
        connect(&caller, p).await;
    }
    until_discovered(&caller, "vault", &both).await;
    assert_eq!(caller.trusted_providers("vault"), trusted);

    for i in 0..40 {
        let reply = caller.call_service("vault", vec![i; 32]).await.unwrap();
        assert_eq!(reply[..], provider.node_id().0, "call {i}");
    }
    assert_eq!(attacker_hits.load(Ordering::SeqCst), 0, "attacker invoked");
    assert_eq!(provider_hits.load(Ordering::SeqCst), 40);

    let lone = node(4, &[&provider, &attacker], &[]);
    for p in [&provider, &attacker] {
        connect(&lone, p).await;
    }
    until_discovered(&lone, "vault", &both).await;
    let err = lone.call_service("vault", b"secret".to_vec()).await;
    let Err(net::RpcError::Failed { status, cause }) = err else {
        panic!("want Unavailable, got {err:?}");
    };
    assert_eq!(status, Status::UNAVAILABLE);
    assert_eq!(cause, net::Cause::NoTrustedProvider { advertising: 2 });
    assert_eq!(lone.engine().trust_stats().no_trusted_provider, 1);
    let hits = |h: &AtomicU64| h.load(Ordering::SeqCst);
    assert_eq!((hits(&provider_hits), hits(&attacker_hits)), (40, 0));

    // Opting in routes over every advertiser: two calls, one each.
    for _ in 0..2 {
        caller
            .call_service_untrusted("vault", b"public".to_vec())
            .await
            .unwrap();
    }
    assert_eq!(hits(&attacker_hits), 1, "opt-in reaches the attacker");
}

/// Two trusted providers (and an untrusted third advertiser): successive
/// calls alternate A, B, A, B on a two-core caller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_trusted_providers_alternate() {
    let a = node(11, &[], &[]);
    let b = node(12, &[], &[]);
    let stranger = node(13, &[], &[]);
    let (_ha, a_hits) = serve_counted(&a, "vault");
    let (_hb, b_hits) = serve_counted(&b, "vault");
    let (_hs, stranger_hits) = serve_counted(&stranger, "vault");
    let trusted = vec![a.node_id(), b.node_id()];
    let caller = node(14, &[&a, &b, &stranger], &[("vault", trusted.clone())]);
    for p in [&a, &b, &stranger] {
        connect(&caller, p).await;
    }
    until_discovered(
        &caller,
        "vault",
        &[a.node_id(), b.node_id(), stranger.node_id()],
    )
    .await;
    let mut want = trusted;
    want.sort();
    assert_eq!(caller.trusted_providers("vault"), want);

    let mut served = Vec::new();
    for i in 0..20u8 {
        let reply = caller.call_service("vault", vec![i]).await.unwrap();
        served.push(NodeId(reply[..].try_into().expect("a node id")));
    }
    for (i, pair) in served.windows(2).enumerate() {
        assert_ne!(
            pair[0],
            pair[1],
            "calls {i} and {} went to one provider",
            i + 1
        );
    }
    assert_eq!(a_hits.load(Ordering::SeqCst), 10);
    assert_eq!(b_hits.load(Ordering::SeqCst), 10);
    assert_eq!(stranger_hits.load(Ordering::SeqCst), 0);
}
