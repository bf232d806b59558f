//! The trust layer on real nodes over loopback: the seed's exploit chain
//! (an announcement, and a reservation, forged for another node's id), the
//! callee gate using the session's authenticated peer, and re-announce
//! keeping a node callable and discoverable past its TTL.

use net_testkit::eventually;
use std::sync::mpsc::sync_channel;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use net_crypto::{Identity, NodeId};
use net_engine::{CallEvents, Handler, MeshNode, MeshNodeConfig, ServeOptions};
use net_proto::{CallKind, ServiceId, Status};
use net_trust::{AnnouncementBody, Capability, ReservationBody, ReservationOp};

const PSK: [u8; 32] = [9; 32];

fn node(seed: u8, peers: &[&MeshNode], intervals: Option<(Duration, Duration)>) -> MeshNode {
    let mut cfg = MeshNodeConfig::new(Identity::from_seed(&[seed; 32]), PSK);
    for p in peers {
        cfg = cfg.with_peer(p.local_addr().unwrap(), p.config().public_identity());
    }
    if let Some((re, min)) = intervals {
        cfg = cfg.with_capability_intervals(re, min);
    }
    let n = MeshNode::new(cfg).unwrap();
    n.start().unwrap();
    n
}

struct Outcome(std::sync::mpsc::SyncSender<Status>);
impl CallEvents for Outcome {
    fn complete(&mut self, status: Status, _: &[u8]) {
        let _ = self.0.try_send(status);
    }
}

fn call(from: &MeshNode, to: NodeId, service: &str) -> Status {
    let (tx, rx) = sync_channel(1);
    from.call(
        to,
        ServiceId::of(service),
        CallKind::Unary,
        None,
        b"x".to_vec().into(),
        Box::new(Outcome(tx)),
    )
    .unwrap();
    rx.recv_timeout(Duration::from_secs(10))
        .expect("call completes")
}

fn ok_handler() -> Handler {
    let h: Arc<net_engine::SyncHandler> = Arc::new(|_, _: &[u8], _: &mut Vec<u8>| Status::OK);
    Handler::Sync(h)
}

fn mismatches(n: &MeshNode) -> u64 {
    n.stats().iter().map(|s| s.trust.node_id_mismatch).sum()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[test]
fn seed_exploit_chain_is_refused_end_to_end() {
    let c = node(3, &[], None);
    let b = node(2, &[&c], None);
    let a = node(1, &[&b, &c], None);
    let (a_id, b_id, c_id) = (a.node_id(), b.node_id(), c.node_id());
    // C serves "vault" to B only.
    c.serve(
        "vault",
        ok_handler(),
        ServeOptions {
            max_in_flight: None,
            allowed: vec![b_id],
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(call(&b, c_id, "vault"), Status::OK);
    assert_eq!(
        call(&a, c_id, "vault"),
        Status::CAPABILITY_DENIED,
        "the gate uses A's authenticated id"
    );
    // A also has a session with B (B serves nothing: NotFound).
    assert_eq!(call(&a, b_id, "vault"), Status::NOT_FOUND);
    // A and B learned C's real announcement on session open.
    eventually("B holds C's announcement", || {
        b.capabilities_of(&c_id).is_some()
    });
    let honest = b.capabilities_of(&c_id).unwrap();
    assert_eq!(honest.capabilities[0].allowed_nodes, vec![b_id]);

    // The exploit: A signs (with its own key) a body claiming C's node id,
    // listing A on C's vault, and sends it to B and C.
    let forged_body = AnnouncementBody::new(
        c_id,
        now_ms() + 1,
        now_ms(),
        60_000,
        vec![Capability::for_nodes("nrpc:vault", vec![a_id])],
    );
    let mut payload = vec![1u8];
    payload.extend_from_slice(&net_trust::fuzzing::forge_envelope(
        &Identity::from_seed(&[1; 32]),
        &forged_body,
    ));
    let (before_b, before_c) = (mismatches(&b), mismatches(&c));
    a.send_raw_announcement(None, payload).unwrap();
    eventually("B rejects the forgery", || mismatches(&b) > before_b);
    eventually("C rejects the forgery", || mismatches(&c) > before_c);
    assert_eq!(
        b.capabilities_of(&c_id).unwrap(),
        honest,
        "C's entry unchanged at B"
    );
    assert_eq!(call(&a, c_id, "vault"), Status::CAPABILITY_DENIED);
    assert_eq!(call(&b, c_id, "vault"), Status::OK);

    // Same for a reservation: C holds "lock"; A forges a release (and an
    // acquire of "other") in C's name.
    c.reserve("lock", Duration::from_secs(60)).unwrap();
    eventually("B sees C's lock", || {
        b.reservation_holder("lock") == Some(c_id)
    });
    let before = mismatches(&b);
    for (resource, op) in [
        ("lock", ReservationOp::Release),
        ("other", ReservationOp::Acquire),
    ] {
        let body = ReservationBody::new(c_id, now_ms() + 10, now_ms(), 60_000, resource, op);
        let mut payload = vec![2u8];
        payload.extend_from_slice(&net_trust::fuzzing::forge(
            &Identity::from_seed(&[1; 32]),
            &body,
        ));
        a.send_raw_announcement(None, payload).unwrap();
    }
    eventually("B rejects both forged reservations", || {
        mismatches(&b) >= before + 2
    });
    assert_eq!(
        b.reservation_holder("lock"),
        Some(c_id),
        "the lock was not hijacked"
    );
    assert_eq!(b.reservation_holder("other"), None);
    // A's own, honest attempt conflicts with C's lock.
    eventually("A sees C's lock", || {
        a.reservation_holder("lock") == Some(c_id)
    });
    assert!(matches!(
        a.reserve("lock", Duration::from_secs(60)),
        Err(net_trust::ReservationError::Conflict { .. })
    ));
    assert_eq!(a.reservation_holder("lock"), Some(c_id));
}

/// A node serving past two TTLs keeps accepting calls and stays
/// discoverable because its loops re-announce (TTL 2 × max(200, 100) ms).
#[test]
fn reannounce_keeps_a_node_callable_and_discoverable_past_two_ttls() {
    let intervals = Some((Duration::from_millis(200), Duration::from_millis(100)));
    let s = node(4, &[], intervals);
    let c = node(5, &[&s], intervals);
    s.serve(
        "svc",
        ok_handler(),
        ServeOptions {
            max_in_flight: None,
            allowed: vec![c.node_id()],
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(call(&c, s.node_id(), "svc"), Status::OK);
    let ttl = Duration::from_millis(400);
    let end = Instant::now() + 2 * ttl + Duration::from_millis(300);
    while Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(
            call(&c, s.node_id(), "svc"),
            Status::OK,
            "denied after {:?}",
            end - Instant::now()
        );
    }
    eventually("discoverable", || c.discover("svc") == vec![s.node_id()]);
    let got = c.capabilities_of(&s.node_id()).unwrap();
    assert_eq!(got.ttl_ms, 400, "TTL = 2 × max(reannounce, min)");
}

/// With the interval below the minimum announce gap, the TTL follows the
/// gap peers actually see: 2 × max(50, 300) = 600 ms.
#[test]
fn ttl_follows_the_announce_throttle() {
    let intervals = Some((Duration::from_millis(50), Duration::from_millis(300)));
    let s = node(6, &[], intervals);
    let c = node(7, &[&s], intervals);
    s.serve("svc", ok_handler(), ServeOptions::default())
        .unwrap();
    assert_eq!(call(&c, s.node_id(), "svc"), Status::OK);
    eventually("announcement arrives", || {
        c.capabilities_of(&s.node_id()).is_some()
    });
    assert_eq!(c.capabilities_of(&s.node_id()).unwrap().ttl_ms, 600);
}

/// Token chains on real sessions: a service served with `require_token`
/// accepts a chain from a configured root whose leaf names the calling
/// session's peer and whose scope covers the service; anything else is
/// `CapabilityDenied`.
#[test]
fn token_chains_are_checked_against_the_presenting_session() {
    let root = Identity::from_seed(&[50; 32]);
    let other_root = Identity::from_seed(&[51; 32]);
    let server = {
        let cfg = MeshNodeConfig::new(Identity::from_seed(&[10; 32]), PSK)
            .with_token_roots(vec![root.public()]);
        let n = MeshNode::new(cfg).unwrap();
        n.start().unwrap();
        n
    };
    let opts = ServeOptions {
        require_token: true,
        ..Default::default()
    };
    server.serve("vault", ok_handler(), opts).unwrap();
    let expires = now_ms() + 60_000;
    let client = |seed: u8, token: Option<net_trust::TokenChain>| {
        let mut cfg = MeshNodeConfig::new(Identity::from_seed(&[seed; 32]), PSK).with_peer(
            server.local_addr().unwrap(),
            server.config().public_identity(),
        );
        if let Some(t) = token {
            cfg = cfg.with_token(t);
        }
        let n = MeshNode::new(cfg).unwrap();
        n.start().unwrap();
        n
    };
    let id = |seed: u8| Identity::from_seed(&[seed; 32]).node_id();
    let scope = vec!["nrpc:vault".to_string()];
    // Valid: root → 11 (delegated through 14, narrowing nothing away).
    let via = net_trust::TokenChain::root(
        &root,
        id(14),
        vec!["nrpc:vault".into(), "nrpc:other".into()],
        expires,
    );
    let valid = via
        .delegate(
            &Identity::from_seed(&[14; 32]),
            id(11),
            scope.clone(),
            expires,
        )
        .unwrap();
    let cases: Vec<(&str, u8, Option<net_trust::TokenChain>, Status)> = vec![
        ("valid chain", 11, Some(valid.clone()), Status::OK),
        ("no token", 12, None, Status::CAPABILITY_DENIED),
        (
            "someone else's chain",
            13,
            Some(valid),
            Status::CAPABILITY_DENIED,
        ),
        (
            "wrong scope",
            15,
            Some(net_trust::TokenChain::root(
                &root,
                id(15),
                vec!["nrpc:other".into()],
                expires,
            )),
            Status::CAPABILITY_DENIED,
        ),
        (
            "wrong root",
            16,
            Some(net_trust::TokenChain::root(
                &other_root,
                id(16),
                scope.clone(),
                expires,
            )),
            Status::CAPABILITY_DENIED,
        ),
        (
            "expired",
            17,
            Some(net_trust::TokenChain::root(
                &root,
                id(17),
                scope.clone(),
                now_ms() - 1,
            )),
            Status::CAPABILITY_DENIED,
        ),
    ];
    for (what, seed, token, want) in cases {
        let c = client(seed, token);
        assert_eq!(call(&c, server.node_id(), "vault"), want, "{what}");
    }
}

/// Amplification: one peer opens 1 000 000 calls, each with a distinct call
/// id (the only caller-chosen key the callee holds state under; replies go
/// back on the session, so there is no origin-keyed route cache). The
/// callee's state stays within call credit throughout, and another
/// client's calls keep working.
#[test]
fn a_million_caller_keys_stay_bounded_and_others_keep_working() {
    let server = node(20, &[], None);
    let echo: Arc<net_engine::SyncHandler> = Arc::new(|_, b: &[u8], out: &mut Vec<u8>| {
        out.extend_from_slice(b);
        Status::OK
    });
    server
        .serve("echo", Handler::Sync(echo), ServeOptions::default())
        .unwrap();
    let sprayer = node(21, &[&server], None);
    let legit = node(22, &[&server], None);
    let (tx, rx) = sync_channel(1);
    let spec = net_engine::loadgen::LoadSpec::calls(
        server.node_id(),
        ServiceId::of("echo"),
        4096,
        16,
        1_000_000,
    );
    sprayer
        .run_on_core(0, Box::new(net_engine::loadgen::ClosedLoop::new(spec, tx)))
        .unwrap();
    let credit = u64::from(net_proto::TransportParams::default().max_calls);
    let (mut max_open, mut legit_ok) = (0, 0);
    let report = loop {
        max_open = max_open.max(server.stats().iter().map(|s| s.open_calls).sum::<u64>());
        if call(&legit, server.node_id(), "echo") == Status::OK {
            legit_ok += 1;
        }
        if let Ok(r) = rx.try_recv() {
            break r;
        }
    };
    assert_eq!(report.ok, 1_000_000);
    assert!(
        max_open <= credit + 1,
        "callee held {max_open} calls (credit {credit})"
    );
    assert!(
        legit_ok > 10,
        "the other client's calls kept working ({legit_ok})"
    );
}
