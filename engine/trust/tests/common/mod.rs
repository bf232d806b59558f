//! Helpers shared by the integration tests. Wire bytes are built here *by
//! hand* (postcard of the documented tuple, transcript from the documented
//! domain) so that the tests pin the wire format independently of the
//! crate's own encoder — and can build what an attacker would send.
#![allow(dead_code)]

use net_crypto::{Identity, NodeId};
use net_trust::{
    AnnouncementBody, Capability, CapabilityFold, ClassHash, SignedAnnouncement, Verified,
};
use serde::Serialize;

/// A fixed "now" (Unix ms).
pub const NOW: u64 = 1_750_000_000_000;

/// Identity number `n` (deterministic).
pub fn ident(n: u8) -> Identity {
    Identity::from_seed(&[n; 32])
}

/// A capabilities announcement by `node` for `nrpc:echo` restricted to
/// `allowed`, issued at `NOW` with a 300 s TTL.
pub fn body(node: NodeId, seq: u64, allowed: Vec<NodeId>) -> AnnouncementBody {
    AnnouncementBody::new(
        node,
        seq,
        NOW,
        300_000,
        vec![Capability::for_nodes("nrpc:echo", allowed)],
    )
}

/// Postcard of `(signer [u8;32], body bytes, signature [u8;64])`, the
/// signature halves serialized as two 32-byte arrays (identical bytes).
pub fn envelope(signer: [u8; 32], body_bytes: &[u8], sig: [u8; 64]) -> Vec<u8> {
    let mut lo = [0u8; 32];
    let mut hi = [0u8; 32];
    lo.copy_from_slice(&sig[..32]);
    hi.copy_from_slice(&sig[32..]);
    postcard::to_allocvec(&(signer, body_bytes, lo, hi)).unwrap()
}

/// `domain || class (u64 BE) || body`.
pub fn transcript(domain: &[u8], class: ClassHash, body_bytes: &[u8]) -> Vec<u8> {
    [domain, &class.0.to_be_bytes()[..], body_bytes].concat()
}

/// An announcement envelope signed by `signer` over any serializable body
/// (whatever node id, version or class it claims): the attacker's tool.
pub fn forge<B: Serialize>(signer: &Identity, class: ClassHash, body: &B) -> Vec<u8> {
    forge_in(b"net/announce/v1\0", signer, class, body)
}

/// [`forge`] with an explicit transcript domain.
pub fn forge_in<B: Serialize>(
    domain: &[u8],
    signer: &Identity,
    class: ClassHash,
    body: &B,
) -> Vec<u8> {
    let body_bytes = postcard::to_allocvec(body).unwrap();
    let sig = signer.sign(&transcript(domain, class, &body_bytes));
    envelope(signer.public().to_bytes(), &body_bytes, sig)
}

/// `b` signed by `id` and verified at `now`.
pub fn verified(id: &Identity, b: &AnnouncementBody, now: u64) -> Verified {
    SignedAnnouncement::sign(id, b)
        .unwrap()
        .verify(now)
        .unwrap()
}

/// The sequence number of `node`'s current capabilities entry at `NOW`.
pub fn seq_of(fold: &CapabilityFold, node: &NodeId) -> Option<u64> {
    fold.get(ClassHash::CAPABILITIES, node, NOW).map(|b| b.seq)
}
