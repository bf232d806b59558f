//! Bodies of the trust-layer fuzz targets. Not part of the API: kept in the
//! crate so the corpus replay and unit tests run exactly what the fuzzer
//! runs.
//!
//! Each function panics only when an invariant breaks: an accepted input
//! that does not round-trip, an outcome counted zero or twice, or state
//! keyed by anything but the verified signer.
#![doc(hidden)]

use net_crypto::{Identity, NodeId};

use crate::capability::{AnnouncementBody, Capability, ClassHash};
use crate::envelope::{decode_and_verify, SignedAnnouncement};
use crate::reservation::{ReservationFold, ReservationOutcome};
use crate::serde_util::write_varint;
use crate::token::TokenChain;
use crate::{AnnounceError, CapabilityFold, FoldLimits, TrustStats};

/// The fixed "now" of the fuzz targets (Unix ms, November 2023).
pub const NOW_MS: u64 = 1_700_000_000_000;

/// Fuzz target `announcement`: decode and verify any bytes.
pub fn announcement(data: &[u8]) {
    let mut stats = TrustStats::default();
    let r = decode_and_verify(data, NOW_MS, &mut stats);
    assert_eq!(
        stats.verified + stats.envelope_errors(),
        1,
        "one outcome counted"
    );
    match SignedAnnouncement::decode(data) {
        // Only canonical envelopes decode, so re-encoding is exact.
        Ok(s) => assert_eq!(s.encode(), data),
        Err(e) => assert_eq!(r.as_ref().err(), Some(&e)),
    }
    if let Ok(v) = r {
        let signer = v.signer();
        let class = v.body().class;
        assert_eq!(v.body().node_id, signer);
        // Every valid announcement fits the default per-node quota.
        let mut fold = CapabilityFold::new(FoldLimits::default());
        fold.apply(v, NOW_MS)
            .expect("fresh fold accepts a verified body");
        fold.assert_invariants();
        assert!(fold.get(class, &signer, NOW_MS).is_some());
    }
}

/// Fuzz target `token`: decode any bytes; a decoded chain round-trips and
/// verifies (against its own root, so the deep checks run) without panic.
pub fn token(data: &[u8]) {
    let Ok(chain) = TokenChain::decode(data) else {
        return;
    };
    assert_eq!(TokenChain::decode(&chain.encode()).as_ref(), Ok(&chain));
    let roots = [*chain.root_issuer()];
    let presenter = chain.leaf_subject();
    let required = chain.leaf_scope().first().cloned().unwrap_or_default();
    let mut stats = TrustStats::default();
    let r = chain.verify_counted(&roots, &presenter, &required, NOW_MS, &mut stats);
    assert_eq!(stats.token_rejected, u64::from(r.is_err()));
}

/// Fuzz target `reservation`: decode, verify and apply any bytes.
pub fn reservation(data: &[u8]) {
    let mut stats = TrustStats::default();
    let mut fold = ReservationFold::new(4, 4);
    let r = fold.handle_message(data, NOW_MS, &mut stats);
    assert_eq!(stats.reservation_rejected, u64::from(r.is_err()));
    if let Ok(ReservationOutcome::Acquired | ReservationOutcome::Renewed) = r {
        assert_eq!(fold.len(), 1);
    }
}

/// Builds announcement wire bytes by hand, signed by `signer` over `body`
/// **whatever `body.node_id` says** — what an attacker can always do.
pub fn forge_envelope(signer: &Identity, body: &AnnouncementBody) -> Vec<u8> {
    forge(signer, body)
}

/// [`forge_envelope`] for any envelope body type (reservations too): signs
/// whatever the body claims, bypassing `Signed::sign`'s refusal, so tests
/// can play a hostile node.
pub fn forge<B: crate::envelope::EnvelopeBody>(signer: &Identity, body: &B) -> Vec<u8> {
    let body_bytes = postcard::to_allocvec(body).unwrap_or_default();
    let sig = signer.sign(&crate::envelope::transcript_for(
        B::DOMAIN,
        body.class(),
        &body_bytes,
    ));
    let mut out = signer.public().to_bytes().to_vec();
    write_varint(&mut out, body_bytes.len());
    out.extend_from_slice(&body_bytes);
    out.extend_from_slice(&sig);
    out
}

/// Fuzz target `capability_fold`: a sequence of announcements from four
/// real identities (the first one protected) into a fold with room for
/// about two nodes, each byte quadruple choosing (signer, claimed node id,
/// class and seq, time step). Forged ones must be refused with
/// `NodeIdMismatch`; after every step every entry must sit under its
/// body's own node id, every byte count must add up within its bound, and
/// no live entry of the protected node may have been evicted.
pub fn capability_fold(data: &[u8]) {
    let ids: Vec<Identity> = (1..=4u8).map(|i| Identity::from_seed(&[i; 32])).collect();
    let limits = FoldLimits {
        max_bytes: 3_000,
        max_node_bytes: 2_500,
        newcomer_bytes: 1_500,
        settle_ms: 5_000,
    };
    let mut fold = CapabilityFold::new(limits);
    fold.set_protected([ids[0].node_id()]);
    let mut stats = TrustStats::default();
    let mut now = NOW_MS;
    let classes = [ClassHash::CAPABILITIES, ClassHash::of("placement")];
    for op in data.chunks_exact(4).take(64) {
        let signer = &ids[usize::from(op[0] % 4)];
        let claimed = ids[usize::from(op[1] % 4)].node_id();
        now += u64::from(op[3]) * 1000;
        let cap = Capability::for_nodes("nrpc:svc", vec![signer.node_id()]);
        let mut body =
            AnnouncementBody::new(claimed, u64::from(op[2] >> 1), now, 60_000, vec![cap]);
        body.class = classes[usize::from(op[2] & 1)];
        let protected_before = live_classes(&fold, &ids[0].node_id(), now);
        let r = fold.handle_announcement(&forge_envelope(signer, &body), now, &mut stats);
        if claimed != signer.node_id() {
            assert_eq!(r, Err(AnnounceError::NodeIdMismatch));
        } else if claimed == ids[0].node_id() {
            // The protected node alone fits: it is never refused for room.
            assert_ne!(r, Err(AnnounceError::FoldFull));
        }
        fold.assert_invariants();
        let protected_after = live_classes(&fold, &ids[0].node_id(), now);
        assert!(protected_before.iter().all(|c| protected_after.contains(c)));
        check_fold_keys(&fold, &ids, now);
    }
    assert_eq!(stats.fold_evicted, fold.evictions());
}

/// Classes of `node`'s entries unexpired at `now`.
fn live_classes(fold: &CapabilityFold, node: &NodeId, now: u64) -> Vec<ClassHash> {
    [ClassHash::CAPABILITIES, ClassHash::of("placement")]
        .into_iter()
        .filter(|c| fold.get(*c, node, now).is_some())
        .collect()
}

/// Every unexpired entry is keyed by the node id its body carries.
fn check_fold_keys(fold: &CapabilityFold, ids: &[Identity], now: u64) {
    for id in ids {
        let node: NodeId = id.node_id();
        if let Some(body) = fold.get(ClassHash::CAPABILITIES, &node, now) {
            assert_eq!(body.node_id, node);
        }
    }
    assert!(fold.bytes() <= fold.limits().max_bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (xorshift) for smoke inputs.
    fn bytes(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn targets_survive_random_bytes() {
        for seed in 0..300u64 {
            let data = bytes(seed, (seed as usize * 7) % 600);
            announcement(&data);
            token(&data);
            reservation(&data);
        }
    }

    #[test]
    fn capability_fold_target_with_forgeries() {
        for seed in 0..8u64 {
            capability_fold(&bytes(seed, 64));
        }
    }
}
