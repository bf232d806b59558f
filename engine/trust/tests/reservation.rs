//! The reservation fold: leases, conflicts, the signer binding, replays.

mod common;

use common::{forge_in, ident, NOW};
use net_crypto::Identity;
use net_trust::{
    decode_and_verify_reservation, AnnounceError, ClassHash, ReservationBody, ReservationError,
    ReservationFold, ReservationOp, ReservationOutcome, SignedReservation, TrustStats,
};

const DOMAIN: &[u8] = b"net/reserve/v1\0";

fn msg(id: &Identity, seq: u64, at: u64, ttl: u64, res: &str, op: ReservationOp) -> Vec<u8> {
    let b = ReservationBody::new(id.node_id(), seq, at, ttl, res, op);
    SignedReservation::sign(id, &b).unwrap().encode()
}

fn acquire(id: &Identity, seq: u64, at: u64, ttl: u64, res: &str) -> Vec<u8> {
    msg(id, seq, at, ttl, res, ReservationOp::Acquire)
}

fn release(id: &Identity, seq: u64, at: u64, res: &str) -> Vec<u8> {
    msg(id, seq, at, 60_000, res, ReservationOp::Release)
}

#[test]
fn acquire_renew_release_expire() {
    let a = ident(1);
    let mut fold = ReservationFold::new(8, 8);
    let mut s = TrustStats::default();
    let r = fold.handle_message(&acquire(&a, 1, NOW, 10_000, "gpu0"), NOW, &mut s);
    assert_eq!(r, Ok(ReservationOutcome::Acquired));
    assert_eq!(fold.holder("gpu0", NOW), Some(a.node_id()));
    let r = fold.handle_message(
        &acquire(&a, 2, NOW + 5_000, 10_000, "gpu0"),
        NOW + 5_000,
        &mut s,
    );
    assert_eq!(r, Ok(ReservationOutcome::Renewed));
    assert_eq!(fold.holder("gpu0", NOW + 14_999), Some(a.node_id()));
    let r = fold.handle_message(&release(&a, 3, NOW + 6_000, "gpu0"), NOW + 6_000, &mut s);
    assert_eq!(r, Ok(ReservationOutcome::Released));
    assert_eq!(fold.holder("gpu0", NOW + 6_000), None);
    assert!(fold.is_empty());
    let r = fold.handle_message(&release(&a, 4, NOW + 6_000, "gpu0"), NOW + 6_000, &mut s);
    assert_eq!(r, Ok(ReservationOutcome::NotHeld));
    // Expiry.
    fold.handle_message(
        &acquire(&a, 5, NOW + 7_000, 1_000, "disk"),
        NOW + 7_000,
        &mut s,
    )
    .unwrap();
    assert_eq!(fold.holder("disk", NOW + 7_999), Some(a.node_id()));
    assert_eq!(fold.holder("disk", NOW + 8_000), None);
    assert_eq!(fold.len(), 1);
    assert_eq!(fold.expire(NOW + 8_000), 1);
    assert!(fold.is_empty());
    assert_eq!(s.verified, 5);
    assert_eq!(s.reservation_rejected, 0);
}

#[test]
fn conflict_with_another_holder() {
    let (a, b) = (ident(1), ident(2));
    let mut fold = ReservationFold::new(8, 8);
    let mut s = TrustStats::default();
    fold.handle_message(&acquire(&a, 1, NOW, 10_000, "gpu0"), NOW, &mut s)
        .unwrap();
    let r = fold.handle_message(&acquire(&b, 1, NOW, 10_000, "gpu0"), NOW, &mut s);
    assert_eq!(
        r,
        Err(ReservationError::Conflict {
            holder: a.node_id()
        })
    );
    // B may not release A's lease either.
    let r = fold.handle_message(&release(&b, 2, NOW, "gpu0"), NOW, &mut s);
    assert_eq!(r, Err(ReservationError::NotHolder));
    assert_eq!(fold.holder("gpu0", NOW), Some(a.node_id()));
    assert_eq!(s.reservation_rejected, 2);
    // Once A's lease has expired, B acquires.
    let later = NOW + 10_000;
    let r = fold.handle_message(&acquire(&b, 3, later, 10_000, "gpu0"), later, &mut s);
    assert_eq!(r, Ok(ReservationOutcome::Acquired));
    assert_eq!(fold.holder("gpu0", later), Some(b.node_id()));
}

/// The reference system's reservation hijack: A signs a message claiming
/// B's node id, to release B's lock or take one in B's name.
#[test]
fn forged_node_id_is_rejected() {
    let (a, b) = (ident(1), ident(2));
    let mut fold = ReservationFold::new(8, 8);
    let mut s = TrustStats::default();
    fold.handle_message(&acquire(&b, 1, NOW, 10_000, "lock"), NOW, &mut s)
        .unwrap();
    let forged_release = ReservationBody::new(
        b.node_id(),
        100,
        NOW,
        10_000,
        "lock",
        ReservationOp::Release,
    );
    let forged_acquire = ReservationBody::new(
        b.node_id(),
        101,
        NOW,
        10_000,
        "other",
        ReservationOp::Acquire,
    );
    for body in [forged_release, forged_acquire] {
        let bytes = forge_in(DOMAIN, &a, ClassHash::RESERVATIONS, &body);
        // Well-formed and validly signed by A ...
        assert!(SignedReservation::decode(&bytes).is_ok());
        // ... but refused.
        let r = fold.handle_message(&bytes, NOW, &mut s);
        assert_eq!(
            r,
            Err(ReservationError::Envelope(AnnounceError::NodeIdMismatch))
        );
        assert_eq!(
            SignedReservation::sign(&a, &body),
            Err(AnnounceError::NodeIdMismatch)
        );
    }
    assert_eq!(fold.holder("lock", NOW), Some(b.node_id()));
    assert_eq!(fold.holder("other", NOW), None);
    assert_eq!(s.node_id_mismatch, 2);
    assert_eq!(s.reservation_rejected, 2);
    // B's own next message still applies (the forgeries did not advance
    // B's sequence number).
    let r = fold.handle_message(&release(&b, 2, NOW, "lock"), NOW, &mut s);
    assert_eq!(r, Ok(ReservationOutcome::Released));
}

#[test]
fn replayed_acquire_cannot_resurrect_a_lease() {
    let a = ident(1);
    let mut fold = ReservationFold::new(8, 8);
    let mut s = TrustStats::default();
    let take = acquire(&a, 1, NOW, 60_000, "lock");
    fold.handle_message(&take, NOW, &mut s).unwrap();
    fold.handle_message(&release(&a, 2, NOW + 1, "lock"), NOW + 1, &mut s)
        .unwrap();
    assert_eq!(
        fold.handle_message(&take, NOW + 2, &mut s),
        Err(ReservationError::Stale)
    );
    assert_eq!(fold.holder("lock", NOW + 2), None);
}

#[test]
fn envelope_rules_apply_to_reservations() {
    let a = ident(1);
    let mut s = TrustStats::default();
    // Expired, from the future, bad signature, garbage, oversize.
    let old = acquire(&a, 1, NOW - 20_000, 10_000, "x");
    assert_eq!(
        decode_and_verify_reservation(&old, NOW, &mut s).err(),
        Some(AnnounceError::Expired)
    );
    let future = acquire(&a, 1, NOW + 120_000, 10_000, "x");
    assert_eq!(
        decode_and_verify_reservation(&future, NOW, &mut s).err(),
        Some(AnnounceError::FromTheFuture)
    );
    let mut bad = acquire(&a, 1, NOW, 10_000, "x");
    *bad.last_mut().unwrap() ^= 1;
    assert_eq!(
        decode_and_verify_reservation(&bad, NOW, &mut s).err(),
        Some(AnnounceError::BadSignature)
    );
    assert_eq!(
        decode_and_verify_reservation(b"junk", NOW, &mut s).err(),
        Some(AnnounceError::Malformed)
    );
    assert_eq!(
        decode_and_verify_reservation(&[0; 600], NOW, &mut s).err(),
        Some(AnnounceError::Oversize)
    );
    let long_name = ReservationBody::new(
        a.node_id(),
        1,
        NOW,
        1,
        "r".repeat(129),
        ReservationOp::Acquire,
    );
    assert_eq!(
        SignedReservation::sign(&a, &long_name),
        Err(AnnounceError::Oversize)
    );
    // An announcement's bytes are not a reservation.
    let ann = net_trust::SignedAnnouncement::sign(&a, &common::body(a.node_id(), 1, vec![]))
        .unwrap()
        .encode();
    assert!(decode_and_verify_reservation(&ann, NOW, &mut s).is_err());
    assert_eq!(s.reservation_rejected, 6);
    assert_eq!(s.verified, 0);
}

#[test]
fn bounds() {
    let mut fold = ReservationFold::new(2, 3);
    let mut s = TrustStats::default();
    let ids: Vec<Identity> = (1..=4).map(ident).collect();
    fold.handle_message(&acquire(&ids[0], 1, NOW, 1_000, "r0"), NOW, &mut s)
        .unwrap();
    fold.handle_message(&acquire(&ids[0], 2, NOW, 10_000, "r1"), NOW, &mut s)
        .unwrap();
    assert_eq!(
        fold.handle_message(&acquire(&ids[0], 3, NOW, 10_000, "r2"), NOW, &mut s),
        Err(ReservationError::Full)
    );
    // Room again once r0 expires.
    let t = NOW + 1_000;
    fold.handle_message(&acquire(&ids[0], 4, t, 10_000, "r2"), t, &mut s)
        .unwrap();
    // Node bound: three signers fine, a fourth refused.
    fold.handle_message(&release(&ids[1], 1, t, "zz"), t, &mut s)
        .unwrap();
    fold.handle_message(&release(&ids[2], 1, t, "zz"), t, &mut s)
        .unwrap();
    assert_eq!(
        fold.handle_message(&release(&ids[3], 1, t, "zz"), t, &mut s),
        Err(ReservationError::Full)
    );
    assert_eq!(s.reservation_rejected, 2);
}
