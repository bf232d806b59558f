//! Signed announcements: encoding, every verification check, stats, and
//! batch verification.

mod common;

use common::{body, envelope, forge, forge_in, ident, transcript, NOW};
use net_crypto::NodeId;
use net_trust::{
    decode_and_verify, verify_many, AnnounceError, AnnouncementBody, Capability, CapabilityFold,
    ClassHash, FoldLimits, ReservationBody, ReservationOp, SignedAnnouncement, SignedReservation,
    TrustStats, BATCH_MIN, MAX_ANNOUNCEMENT, MAX_CAPABILITIES, MAX_SKEW_MS, MAX_TTL_MS,
};

#[test]
fn sign_verify_round_trip() {
    let a = ident(1);
    let b = body(a.node_id(), 7, vec![ident(2).node_id()]);
    let signed = SignedAnnouncement::sign(&a, &b).unwrap();
    let bytes = signed.encode();
    assert_eq!(bytes.len(), signed.encoded_len());
    // The wire form is exactly the documented postcard tuple.
    let body_bytes = postcard::to_allocvec(&b).unwrap();
    let sig = a.sign(&transcript(b"net/announce/v1\0", b.class, &body_bytes));
    assert_eq!(bytes, envelope(a.public().to_bytes(), &body_bytes, sig));

    let decoded = SignedAnnouncement::decode(&bytes).unwrap();
    assert_eq!(decoded, signed);
    assert_eq!(decoded.signer(), &a.public());
    let v = decoded.verify(NOW).unwrap();
    assert_eq!(v.body(), &b);
    assert_eq!(v.signer(), a.node_id());
    assert_eq!(v.signer_identity(), &a.public());
}

/// The reference system's critical bypass: peer A signs a body claiming
/// victim C's node id. The envelope is built by hand, as an attacker would.
#[test]
fn node_id_mismatch_forgery_is_rejected() {
    let (a, c) = (ident(1), ident(3));
    // Forged: C's id, allow-list naming the attacker.
    let forged_body = body(c.node_id(), 1_000, vec![a.node_id()]);
    let bytes = forge(&a, ClassHash::CAPABILITIES, &forged_body);

    // It decodes (a well-formed envelope, validly signed by A) ...
    let decoded = SignedAnnouncement::decode(&bytes).unwrap();
    assert_eq!(decoded.signer().node_id(), a.node_id());
    // ... but never verifies: the claimed id is not the signer's.
    assert_eq!(decoded.verify(NOW), Err(AnnounceError::NodeIdMismatch));
    let mut stats = TrustStats::default();
    assert_eq!(
        decode_and_verify(&bytes, NOW, &mut stats),
        Err(AnnounceError::NodeIdMismatch)
    );
    assert_eq!(stats.node_id_mismatch, 1);
    assert_eq!(stats.verified, 0);

    // A bystander's fold gains nothing under C (or A).
    let mut fold = CapabilityFold::new(FoldLimits::default());
    assert_eq!(
        fold.handle_announcement(&bytes, NOW, &mut stats),
        Err(AnnounceError::NodeIdMismatch)
    );
    assert!(fold.is_empty());
    assert_eq!(fold.nodes_with_tag("nrpc:echo", NOW).count(), 0);

    // And our own signer refuses to produce such a body at all.
    assert_eq!(
        SignedAnnouncement::sign(&a, &forged_body),
        Err(AnnounceError::NodeIdMismatch)
    );
}

#[test]
fn bad_signature_and_tampered_body() {
    let a = ident(1);
    let signed = SignedAnnouncement::sign(&a, &body(a.node_id(), 1, vec![])).unwrap();
    let bytes = signed.encode();
    let n = bytes.len();
    for i in [n - 1, n - 33, n - 64] {
        let mut bad = bytes.clone();
        bad[i] ^= 0x01;
        let s = SignedAnnouncement::decode(&bad).unwrap();
        assert_eq!(
            s.verify(NOW),
            Err(AnnounceError::BadSignature),
            "sig byte {i}"
        );
    }
    // Another key's signature over the same body.
    let body_bytes = postcard::to_allocvec(&body(a.node_id(), 1, vec![])).unwrap();
    let other = ident(2).sign(&transcript(
        b"net/announce/v1\0",
        ClassHash::CAPABILITIES,
        &body_bytes,
    ));
    let s =
        SignedAnnouncement::decode(&envelope(a.public().to_bytes(), &body_bytes, other)).unwrap();
    assert_eq!(s.verify(NOW), Err(AnnounceError::BadSignature));
    // The seq field (the body's 4th field) altered: still decodes, fails.
    let mut b2 = body(a.node_id(), 1, vec![]);
    b2.seq = 2;
    let body2 = postcard::to_allocvec(&b2).unwrap();
    let s = SignedAnnouncement::decode(&envelope(
        a.public().to_bytes(),
        &body2,
        signed.encode()[n - 64..].try_into().unwrap(),
    ))
    .unwrap();
    assert_eq!(s.verify(NOW), Err(AnnounceError::BadSignature));
}

#[test]
fn signature_does_not_transfer_across_class_or_domain() {
    let a = ident(1);
    let mut b = body(a.node_id(), 1, vec![]);
    b.class = ClassHash::of("other");
    // Signed as if the class were "capabilities": the transcript differs.
    let body_bytes = postcard::to_allocvec(&b).unwrap();
    let sig = a.sign(&transcript(
        b"net/announce/v1\0",
        ClassHash::CAPABILITIES,
        &body_bytes,
    ));
    let s = SignedAnnouncement::decode(&envelope(a.public().to_bytes(), &body_bytes, sig)).unwrap();
    assert_eq!(s.verify(NOW), Err(AnnounceError::BadSignature));
    // Right class, wrong domain.
    let bytes = forge_in(b"net/reserve/v1\0", &a, b.class, &b);
    let s = SignedAnnouncement::decode(&bytes).unwrap();
    assert_eq!(s.verify(NOW), Err(AnnounceError::BadSignature));
}

#[test]
fn expiry_boundaries() {
    let a = ident(1);
    let b = body(a.node_id(), 1, vec![]); // issued NOW, ttl 300 s
    let s = SignedAnnouncement::sign(&a, &b).unwrap();
    assert!(s.verify(NOW + 299_999).is_ok());
    assert_eq!(s.verify(NOW + 300_000), Err(AnnounceError::Expired));
    assert_eq!(s.verify(u64::MAX), Err(AnnounceError::Expired));
    // A zero TTL is expired on arrival.
    let mut z = b.clone();
    z.ttl_ms = 0;
    let s = SignedAnnouncement::sign(&a, &z).unwrap();
    assert_eq!(s.verify(NOW), Err(AnnounceError::Expired));
}

#[test]
fn from_the_future() {
    let a = ident(1);
    let mut b = body(a.node_id(), 1, vec![]);
    b.issued_at_ms = NOW + MAX_SKEW_MS;
    let s = SignedAnnouncement::sign(&a, &b).unwrap();
    assert!(s.verify(NOW).is_ok(), "within skew");
    b.issued_at_ms = NOW + MAX_SKEW_MS + 1;
    let s = SignedAnnouncement::sign(&a, &b).unwrap();
    assert_eq!(s.verify(NOW), Err(AnnounceError::FromTheFuture));
    // Saturation: issued at u64::MAX.
    b.issued_at_ms = u64::MAX;
    let s = SignedAnnouncement::sign(&a, &b).unwrap();
    assert_eq!(s.verify(NOW), Err(AnnounceError::FromTheFuture));
}

#[test]
fn ttl_too_long() {
    let a = ident(1);
    let mut b = body(a.node_id(), 1, vec![]);
    b.ttl_ms = MAX_TTL_MS;
    assert!(SignedAnnouncement::sign(&a, &b)
        .unwrap()
        .verify(NOW)
        .is_ok());
    b.ttl_ms = MAX_TTL_MS + 1;
    assert_eq!(
        SignedAnnouncement::sign(&a, &b),
        Err(AnnounceError::TtlTooLong)
    );
    let s = SignedAnnouncement::decode(&forge(&a, b.class, &b)).unwrap();
    assert_eq!(s.verify(NOW), Err(AnnounceError::TtlTooLong));
}

#[test]
fn oversize_and_limits() {
    let a = ident(1);
    // Over 8 KiB on the wire: refused before parsing.
    let mut stats = TrustStats::default();
    let big = vec![0u8; MAX_ANNOUNCEMENT + 1];
    assert_eq!(
        decode_and_verify(&big, NOW, &mut stats),
        Err(AnnounceError::Oversize)
    );
    assert_eq!(stats.oversize, 1);
    // A body whose envelope would exceed 8 KiB: the signer refuses.
    let many: Vec<NodeId> = (0..=255u8).map(|i| NodeId([i; 32])).collect();
    let b = AnnouncementBody::new(
        a.node_id(),
        1,
        NOW,
        1000,
        vec![Capability::for_nodes("nrpc:x", many)],
    );
    assert_eq!(
        SignedAnnouncement::sign(&a, &b),
        Err(AnnounceError::Oversize)
    );
    // Hand-built, it is refused on decode too.
    assert_eq!(
        SignedAnnouncement::decode(&forge(&a, b.class, &b)),
        Err(AnnounceError::Oversize)
    );
    // More than MAX_CAPABILITIES (small enough to fit 8 KiB): the signer
    // says Oversize; on the wire it is Malformed (never materialised).
    let caps = (0..=MAX_CAPABILITIES)
        .map(|i| Capability::open(format!("t{i}")))
        .collect();
    let b = AnnouncementBody::new(a.node_id(), 1, NOW, 1000, caps);
    assert_eq!(
        SignedAnnouncement::sign(&a, &b),
        Err(AnnounceError::Oversize)
    );
    let bytes = forge(&a, b.class, &b);
    assert!(bytes.len() <= MAX_ANNOUNCEMENT);
    assert_eq!(
        SignedAnnouncement::decode(&bytes),
        Err(AnnounceError::Malformed)
    );
    // Duplicate tags and over-long tags are refused the same way.
    let dup = AnnouncementBody::new(
        a.node_id(),
        1,
        NOW,
        1000,
        vec![Capability::open("t"), Capability::open("t")],
    );
    assert_eq!(
        SignedAnnouncement::sign(&a, &dup),
        Err(AnnounceError::Oversize)
    );
    assert_eq!(
        SignedAnnouncement::decode(&forge(&a, dup.class, &dup)),
        Err(AnnounceError::Malformed)
    );
}

/// A hypothetical version-2 body: same leading fields.
#[derive(serde::Serialize)]
struct BodyV2 {
    version: u8,
    extra: u64,
}

#[test]
fn unknown_version() {
    let a = ident(1);
    let bytes = forge(
        &a,
        ClassHash::CAPABILITIES,
        &BodyV2 {
            version: 2,
            extra: 9,
        },
    );
    let mut stats = TrustStats::default();
    assert_eq!(
        decode_and_verify(&bytes, NOW, &mut stats),
        Err(AnnounceError::UnknownVersion(2))
    );
    assert_eq!(stats.unknown_version, 1);
    // A v1-shaped body stamped version 0: decodes structurally, refused.
    let mut b = body(a.node_id(), 1, vec![]);
    b.version = 0;
    assert_eq!(
        SignedAnnouncement::decode(&forge(&a, b.class, &b)),
        Err(AnnounceError::UnknownVersion(0))
    );
    assert_eq!(
        SignedAnnouncement::sign(&a, &b),
        Err(AnnounceError::UnknownVersion(0))
    );
}

#[test]
fn wrong_class_reservations_reserved() {
    let a = ident(1);
    let mut b = body(a.node_id(), 1, vec![]);
    b.class = ClassHash::RESERVATIONS;
    assert_eq!(
        SignedAnnouncement::sign(&a, &b),
        Err(AnnounceError::WrongClass)
    );
    let s = SignedAnnouncement::decode(&forge(&a, b.class, &b)).unwrap();
    assert_eq!(s.verify(NOW), Err(AnnounceError::WrongClass));
}

#[test]
fn garbage_is_malformed() {
    let a = ident(1);
    let good = SignedAnnouncement::sign(&a, &body(a.node_id(), 1, vec![]))
        .unwrap()
        .encode();
    let mut stats = TrustStats::default();
    // Every strict prefix.
    for len in 0..good.len() {
        let r = decode_and_verify(&good[..len], NOW, &mut stats);
        assert_eq!(r, Err(AnnounceError::Malformed), "prefix {len}");
    }
    // Trailing byte.
    let mut long = good.clone();
    long.push(0);
    assert_eq!(
        decode_and_verify(&long, NOW, &mut stats),
        Err(AnnounceError::Malformed)
    );
    // Non-canonical (over-long) body length prefix.
    let body_len = good.len() - 32 - 64 - 1;
    assert!(body_len < 128);
    let mut noncanon = good[..32].to_vec();
    noncanon.extend_from_slice(&[body_len as u8 | 0x80, 0x00]);
    noncanon.extend_from_slice(&good[33..]);
    assert_eq!(
        decode_and_verify(&noncanon, NOW, &mut stats),
        Err(AnnounceError::Malformed)
    );
    // An invalid signer key (not a curve point / small order).
    let mut bad_key = good.clone();
    bad_key[..32].copy_from_slice(&[0u8; 32]);
    assert_eq!(
        decode_and_verify(&bad_key, NOW, &mut stats),
        Err(AnnounceError::Malformed)
    );
    // Plain garbage.
    for g in [&b"hello"[..], &[0xff; 200][..], &[0x01; 100][..]] {
        assert_eq!(
            decode_and_verify(g, NOW, &mut stats),
            Err(AnnounceError::Malformed)
        );
    }
    assert_eq!(stats.malformed, good.len() as u64 + 6);
    assert_eq!(stats.envelope_errors(), stats.malformed);
}

#[test]
fn stats_count_every_outcome_once() {
    let a = ident(1);
    let good = SignedAnnouncement::sign(&a, &body(a.node_id(), 1, vec![]))
        .unwrap()
        .encode();
    let forged = forge(
        &a,
        ClassHash::CAPABILITIES,
        &body(ident(2).node_id(), 1, vec![]),
    );
    let mut flipped = good.clone();
    *flipped.last_mut().unwrap() ^= 1;
    let mut stats = TrustStats::default();
    let inputs: [(&[u8], u64); 6] = [
        (&good, NOW),
        (&good, NOW + 300_000),
        (&good, NOW - MAX_SKEW_MS - 1),
        (&forged, NOW),
        (&flipped, NOW),
        (b"x", NOW),
    ];
    for (bytes, now) in inputs {
        let _ = decode_and_verify(bytes, now, &mut stats);
    }
    assert_eq!(stats.verified, 1);
    assert_eq!(stats.expired, 1);
    assert_eq!(stats.future, 1);
    assert_eq!(stats.node_id_mismatch, 1);
    assert_eq!(stats.bad_signature, 1);
    assert_eq!(stats.malformed, 1);
    assert_eq!(stats.verified + stats.envelope_errors(), 6);
}

/// `n` valid announcements from distinct identities.
fn signed_batch(n: u8) -> Vec<SignedAnnouncement> {
    (0..n)
        .map(|i| {
            let id = ident(10 + i);
            SignedAnnouncement::sign(&id, &body(id.node_id(), 1, vec![])).unwrap()
        })
        .collect()
}

#[test]
fn verify_many_uses_batch_path() {
    let items = signed_batch(16);
    let mut stats = TrustStats::default();
    let out = verify_many(&items, NOW, &mut stats);
    assert!(out.iter().all(Result::is_ok));
    assert_eq!(stats.batch_verifies, 1);
    assert_eq!(stats.batch_fallbacks, 0);
    assert_eq!(stats.verified, 16);
    for (item, v) in items.iter().zip(&out) {
        assert_eq!(v.as_ref().unwrap().signer(), item.signer().node_id());
    }
    // Below BATCH_MIN: single verification only.
    let mut stats = TrustStats::default();
    let small = &items[..BATCH_MIN - 1];
    assert!(verify_many(small, NOW, &mut stats)
        .iter()
        .all(Result::is_ok));
    assert_eq!(stats.batch_verifies, 0);
}

#[test]
fn verify_many_rejects_only_the_bad_one() {
    let mut items = signed_batch(16);
    // Item 5: a flipped signature byte. Item 9: a forgery (cheap check,
    // never reaches the batch). Item 12: expired.
    let mut bytes = items[5].encode();
    *bytes.last_mut().unwrap() ^= 0x40;
    items[5] = SignedAnnouncement::decode(&bytes).unwrap();
    items[9] = SignedAnnouncement::decode(&forge(
        &ident(99),
        ClassHash::CAPABILITIES,
        &body(ident(10).node_id(), 1, vec![]),
    ))
    .unwrap();
    let id = ident(42);
    let mut old = body(id.node_id(), 1, vec![]);
    old.issued_at_ms = NOW - 400_000;
    items[12] = SignedAnnouncement::sign(&id, &old).unwrap();

    let mut stats = TrustStats::default();
    let out = verify_many(&items, NOW, &mut stats);
    for (i, r) in out.iter().enumerate() {
        match i {
            5 => assert_eq!(r, &Err(AnnounceError::BadSignature)),
            9 => assert_eq!(r, &Err(AnnounceError::NodeIdMismatch)),
            12 => assert_eq!(r, &Err(AnnounceError::Expired)),
            _ => assert!(r.is_ok(), "item {i}: {r:?}"),
        }
    }
    assert_eq!(stats.batch_verifies, 1);
    assert_eq!(stats.batch_fallbacks, 1);
    assert_eq!(stats.verified, 13);
    assert_eq!(stats.bad_signature, 1);
    // Same results as one-by-one verification.
    for (item, r) in items.iter().zip(&out) {
        assert_eq!(&item.verify(NOW), r);
    }
}

#[test]
fn reservation_bytes_are_not_announcements() {
    let a = ident(1);
    let r = ReservationBody::new(a.node_id(), 1, NOW, 1000, "lock", ReservationOp::Acquire);
    let bytes = SignedReservation::sign(&a, &r).unwrap().encode();
    let mut stats = TrustStats::default();
    assert!(decode_and_verify(&bytes, NOW, &mut stats).is_err());
    assert_eq!(stats.verified, 0);
}
