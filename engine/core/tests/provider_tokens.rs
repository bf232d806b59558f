//! The discovery trust rule's token path on real nodes over loopback: a
//! provider is trusted for a service when it presented, on a session to
//! the caller, a chain rooted in the caller's token roots whose scope
//! holds `nrpc-serve:<service>`. A chain granting only the right to call
//! the service (`nrpc:<service>`) does not make its holder a provider.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use net_crypto::{Identity, NodeId};
use net_engine::{CallEvents, Handler, MeshNode, MeshNodeConfig, ServeOptions};
use net_proto::{CallKind, Cause, ServiceId, Status};
use net_testkit::eventually;
use net_trust::{TokenChain, NRPC_SERVE_SCOPE_PREFIX};

const PSK: [u8; 32] = [31; 32];

fn start(cfg: MeshNodeConfig) -> MeshNode {
    let n = MeshNode::new(cfg).unwrap();
    n.start().unwrap();
    n
}

fn with_peers(mut cfg: MeshNodeConfig, peers: &[&MeshNode]) -> MeshNodeConfig {
    for p in peers {
        cfg = cfg.with_peer(p.local_addr().unwrap(), p.config().public_identity());
    }
    cfg
}

/// Records a call's outcome.
struct Outcome(std::sync::mpsc::SyncSender<(Status, Option<Cause>)>);
impl CallEvents for Outcome {
    fn complete(&mut self, status: Status, _: &[u8]) {
        // The test waits on the receiver; a second completion would be a bug
        // the bounded channel turns into a missing message.
        let _ = self.0.try_send((status, None));
    }

    fn failed(&mut self, status: Status, cause: Cause) {
        let _ = self.0.try_send((status, Some(cause)));
    }
}

/// Calls `service` on `to` (by node id), or by service name (`to: None`).
fn call(from: &MeshNode, to: Option<NodeId>, service: &str) -> (Status, Option<Cause>) {
    let (tx, rx) = sync_channel(1);
    let events = Box::new(Outcome(tx));
    let (kind, payload) = (CallKind::Unary, b"secret".to_vec());
    match to {
        Some(peer) => from.call(
            peer,
            ServiceId::of(service),
            kind,
            None,
            payload.into(),
            events,
        ),
        None => from.call_service(service, kind, None, payload.into(), events),
    }
    .unwrap();
    rx.recv_timeout(Duration::from_secs(30))
        .expect("call completes")
}

/// Serves `service`, counting calls.
fn serve_counted(n: &MeshNode, service: &str) -> Arc<AtomicU64> {
    let hits = Arc::new(AtomicU64::new(0));
    let h = hits.clone();
    let handler: Arc<net_engine::SyncHandler> = Arc::new(move |_, _: &[u8], _: &mut Vec<u8>| {
        h.fetch_add(1, Ordering::SeqCst);
        Status::OK
    });
    n.serve(service, Handler::Sync(handler), ServeOptions::default())
        .unwrap();
    hits
}

#[test]
fn a_serve_grant_from_the_callers_root_makes_a_provider_trusted() {
    let root = Identity::from_seed(&[60; 32]);
    let until = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        + 600_000;
    let node = |seed: u8, scope: &str| {
        let id = Identity::from_seed(&[seed; 32]);
        let chain = TokenChain::root(&root, id.node_id(), vec![scope.to_string()], until);
        start(MeshNodeConfig::new(id, PSK).with_token(chain))
    };
    let provider = node(61, &format!("{NRPC_SERVE_SCOPE_PREFIX}vault"));
    let caller_only = node(62, "nrpc:vault");
    let provider_hits = serve_counted(&provider, "vault");
    let impostor_hits = serve_counted(&caller_only, "vault");
    let caller_cfg = MeshNodeConfig::new(Identity::from_seed(&[63; 32]), PSK)
        .with_token_roots(vec![root.public()]);
    let caller = start(with_peers(caller_cfg, &[&provider, &caller_only]));
    // Sessions up (nobody serves `hello`); both sides present on them.
    for p in [&provider, &caller_only] {
        assert_eq!(
            call(&caller, Some(p.node_id()), "hello").0,
            Status::NOT_FOUND
        );
    }
    eventually("both advertisers discovered", || {
        caller.discover("vault").len() == 2
    });
    eventually("the provider's grant recorded", || {
        caller.trusted_providers("vault") == vec![provider.node_id()]
    });
    for i in 0..20 {
        assert_eq!(call(&caller, None, "vault").0, Status::OK, "call {i}");
    }
    assert_eq!(provider_hits.load(Ordering::SeqCst), 20);
    assert_eq!(impostor_hits.load(Ordering::SeqCst), 0);

    // A caller whose roots did not issue the grant trusts nobody here.
    let stranger_cfg = MeshNodeConfig::new(Identity::from_seed(&[64; 32]), PSK)
        .with_token_roots(vec![Identity::from_seed(&[65; 32]).public()]);
    let stranger = start(with_peers(stranger_cfg, &[&provider]));
    assert_eq!(
        call(&stranger, Some(provider.node_id()), "hello").0,
        Status::NOT_FOUND
    );
    eventually("discovered", || stranger.discover("vault").len() == 1);
    let (status, why) = call(&stranger, None, "vault");
    assert_eq!(status, Status::UNAVAILABLE);
    assert_eq!(why, Some(Cause::NoTrustedProvider { advertising: 1 }));
    assert_eq!(provider_hits.load(Ordering::SeqCst), 20, "nothing sent");
}
