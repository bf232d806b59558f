//! Endpoint behaviour driven by hand (no simulator): replayed packets and
//! initiations, tampered handshakes, unknown indexes, identity binding.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use net_crypto::Identity;
use net_proto::{CallKind, Endpoint, EndpointConfig, Event, ServiceId, SessionId};

const PSK: [u8; 32] = [7; 32];

fn endpoint(seed: u8, now: Instant) -> Endpoint {
    let mut cfg = EndpointConfig::new(Identity::from_seed(&[seed; 32]), PSK);
    cfg.rng_seed = u64::from(seed);
    let mut ep = Endpoint::new(cfg, now, 1_000_000_000);
    ep.register_service(ServiceId::of("echo"), 1000);
    ep
}

fn addr(n: u8) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, n], 4000))
}

/// Every datagram `ep` wants to send now.
fn out(ep: &mut Endpoint, now: Instant) -> Vec<Vec<u8>> {
    let mut buf = vec![0u8; 65536];
    let mut v = Vec::new();
    while let Some(t) = ep.poll_transmit(now, &mut buf) {
        v.push(buf[..t.len].to_vec());
    }
    v
}

fn deliver(ep: &mut Endpoint, now: Instant, from: u8, datagrams: &[Vec<u8>]) {
    for d in datagrams {
        ep.handle(now, addr(from), &mut d.clone());
    }
}

fn events(ep: &mut Endpoint) -> Vec<Event> {
    std::iter::from_fn(|| ep.poll_event()).collect()
}

/// A connected pair: client 1 → server 2, both sides confirmed.
fn connected(now: Instant) -> (Endpoint, Endpoint, SessionId) {
    let mut a = endpoint(1, now);
    let mut b = endpoint(2, now);
    let s = a.connect(now, b.public_identity(), addr(2)).unwrap();
    let init = out(&mut a, now);
    deliver(&mut b, now, 1, &init);
    let resp = out(&mut b, now);
    deliver(&mut a, now, 2, &resp);
    assert!(a.is_established(s));
    // The first data packet confirms the responder.
    a.call(
        now,
        s,
        ServiceId::of("echo"),
        CallKind::Unary,
        None,
        b"hello",
    )
    .unwrap();
    let req = out(&mut a, now);
    deliver(&mut b, now, 1, &req);
    assert!(events(&mut b)
        .iter()
        .any(|e| matches!(e, Event::Connected { .. })));
    (a, b, s)
}

/// (d) A replayed data packet is rejected and counted; its request is not
/// delivered twice.
#[test]
fn replayed_data_packet_is_rejected() {
    let now = Instant::now();
    let (mut a, mut b, s) = connected(now);
    a.call(
        now,
        s,
        ServiceId::of("echo"),
        CallKind::Unary,
        None,
        b"once",
    )
    .unwrap();
    let pkt = out(&mut a, now);
    assert_eq!(pkt.len(), 1);
    deliver(&mut b, now, 1, &pkt);
    let requests = |evs: &[Event]| {
        evs.iter()
            .filter(|e| matches!(e, Event::Request { .. }))
            .count()
    };
    assert_eq!(requests(&events(&mut b)), 1);
    let before = b.stats().drop_replay;
    deliver(&mut b, now, 1, &pkt);
    assert_eq!(b.stats().drop_replay, before + 1);
    assert_eq!(requests(&events(&mut b)), 0);
}

/// (d) A copy of an initiation the responder answered and that is not yet
/// confirmed (the initiator retransmits the same initiation when its
/// response is late or lost) gets the stored response again, byte for
/// byte: no second session, no new state, and smaller than the copy.
#[test]
fn a_copy_of_an_answered_initiation_gets_the_same_response() {
    let now = Instant::now();
    let mut a = endpoint(1, now);
    let mut b = endpoint(2, now);
    a.connect(now, b.public_identity(), addr(2)).unwrap();
    let init = out(&mut a, now);
    deliver(&mut b, now, 1, &init);
    assert_eq!(b.session_count(), 1);
    let first = out(&mut b, now);
    assert_eq!(first.len(), 1, "one response");
    deliver(&mut b, now + Duration::from_millis(300), 1, &init);
    assert_eq!(b.stats().handshake_duplicates, 1);
    assert_eq!(b.stats().handshake_replay, 0);
    assert_eq!(b.session_count(), 1);
    let again = out(&mut b, now);
    assert_eq!(again, first, "the stored response, unchanged");
    assert!(again[0].len() < init[0].len(), "never amplifies");
}

/// A replayed initiation after the session was confirmed is rejected too,
/// and leaves the live session alone.
#[test]
fn replay_after_confirmation_leaves_session_alone() {
    let now = Instant::now();
    let mut a = endpoint(1, now);
    let mut b = endpoint(2, now);
    let s = a.connect(now, b.public_identity(), addr(2)).unwrap();
    let init = out(&mut a, now);
    deliver(&mut b, now, 1, &init);
    let resp = out(&mut b, now);
    deliver(&mut a, now, 2, &resp);
    a.call(now, s, ServiceId::of("echo"), CallKind::Unary, None, b"x")
        .unwrap();
    let req = out(&mut a, now);
    deliver(&mut b, now, 1, &req);
    deliver(&mut b, now, 1, &init);
    assert_eq!(b.stats().handshake_replay, 1);
    assert_eq!(b.session_count(), 1);
}

/// Flipping any byte of an initiation makes the responder refuse it
/// (mac1 or Noise authentication), with a counter.
#[test]
fn tampered_initiations_are_refused() {
    let now = Instant::now();
    let mut a = endpoint(1, now);
    a.connect(now, Identity::from_seed(&[2; 32]).public(), addr(2))
        .unwrap();
    let init = out(&mut a, now).remove(0);
    for i in 0..init.len() {
        let mut b = endpoint(2, now);
        let mut bad = init.clone();
        bad[i] ^= 0x40;
        b.handle(now, addr(1), &mut bad);
        let s = b.stats();
        let refused =
            s.handshake_mac1 + s.handshake_malformed + s.drop_malformed + s.handshake_decrypt;
        // The trailing mac2 field is reserved and not yet checked.
        if i < init.len() - 16 {
            assert_eq!(refused, 1, "byte {i} flipped was accepted");
            assert_eq!(b.session_count(), 0);
        }
    }
}

/// An initiation for someone else (mac1 keyed to another identity) is refused.
#[test]
fn initiation_for_another_node_is_refused() {
    let now = Instant::now();
    let mut a = endpoint(1, now);
    a.connect(now, Identity::from_seed(&[3; 32]).public(), addr(2))
        .unwrap();
    let init = out(&mut a, now);
    let mut b = endpoint(2, now);
    deliver(&mut b, now, 1, &init);
    assert_eq!(b.stats().handshake_mac1, 1);
    assert_eq!(b.session_count(), 0);
}

/// Data for an index nobody owns is dropped and counted.
#[test]
fn unknown_index_is_counted() {
    let now = Instant::now();
    let (mut a, _b, s) = connected(now);
    a.call(
        now,
        s,
        ServiceId::of("echo"),
        CallKind::Unary,
        None,
        b"lost",
    )
    .unwrap();
    let pkt = out(&mut a, now);
    let mut c = endpoint(3, now);
    deliver(&mut c, now, 1, &pkt);
    assert_eq!(c.stats().drop_unknown_index, 1);
}

/// The session's peer is the authenticated identity, on both sides.
#[test]
fn sessions_know_the_authenticated_peer() {
    let now = Instant::now();
    let (a, mut b, s) = connected(now);
    assert_eq!(
        a.session_peer(s),
        Some(Identity::from_seed(&[2; 32]).node_id())
    );
    events(&mut b); // drain the confirming call
                    // The server side's session names node 1.
    let now2 = now + Duration::from_millis(1);
    let mut a = a;
    a.call(
        now2,
        s,
        ServiceId::of("echo"),
        CallKind::Unary,
        None,
        b"who",
    )
    .unwrap();
    let pkt = out(&mut a, now2);
    deliver(&mut b, now2, 1, &pkt);
    let session = events(&mut b)
        .into_iter()
        .find_map(|e| match e {
            Event::Request { session, .. } => Some(session),
            _ => None,
        })
        .expect("request");
    assert_eq!(
        b.session_peer(session),
        Some(Identity::from_seed(&[1; 32]).node_id())
    );
}

/// Calls larger than a packet are segmented; larger than the peer's
/// `max_message` they are refused with a typed error, not truncated.
#[test]
fn oversized_payload_is_refused() {
    let now = Instant::now();
    let (mut a, _b, s) = connected(now);
    let packet = a.max_payload(s).unwrap();
    let max = net_proto::config::DEFAULT_MAX_MESSAGE as usize;
    let echo = ServiceId::of("echo");
    let err = a
        .call(now, s, echo, CallKind::Unary, None, &vec![0; max + 1])
        .unwrap_err();
    assert_eq!(
        err,
        net_proto::ApiError::PayloadTooLarge { len: max + 1, max }
    );
    for len in [packet, packet + 1, max] {
        assert!(a
            .call(now, s, echo, CallKind::Unary, None, &vec![0; len])
            .is_ok());
    }
}

/// Both sides key the session with the suite `Suite::agree` picks from the
/// two offers, and calls flow under it.
#[test]
fn sessions_agree_on_the_aead_suite() {
    use net_crypto::Suite::{Aes256Gcm, ChaCha20Poly1305};
    let now = Instant::now();
    for (offer_a, offer_b, want) in [
        (3, 3, Aes256Gcm),
        (1, 3, ChaCha20Poly1305),
        (3, 1, ChaCha20Poly1305),
        (0, 2, ChaCha20Poly1305),
    ] {
        let with_offer = |seed: u8, offer: u8| {
            let mut cfg = EndpointConfig::new(Identity::from_seed(&[seed; 32]), PSK);
            cfg.rng_seed = u64::from(seed);
            cfg.params.aead_suites = offer;
            let mut ep = Endpoint::new(cfg, now, 1_000_000_000);
            ep.register_service(ServiceId::of("echo"), 10);
            ep
        };
        let (mut a, mut b) = (with_offer(1, offer_a), with_offer(2, offer_b));
        let s = a.connect(now, b.public_identity(), addr(2)).unwrap();
        let init = out(&mut a, now);
        deliver(&mut b, now, 1, &init);
        let resp = out(&mut b, now);
        deliver(&mut a, now, 2, &resp);
        assert_eq!(a.session_suite(s), Some(want), "{offer_a} × {offer_b}");
        let echo = ServiceId::of("echo");
        a.call(now, s, echo, CallKind::Unary, None, b"hi").unwrap();
        let req = out(&mut a, now);
        deliver(&mut b, now, 1, &req);
        let got = events(&mut b)
            .into_iter()
            .find_map(|e| match e {
                Event::Request { session, .. } => Some(session),
                _ => None,
            })
            .expect("the request opened under the agreed suite");
        assert_eq!(b.session_suite(got), Some(want));
    }
}
