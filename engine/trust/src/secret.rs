//! Bearer secrets: group and subnet ids, compared in constant time.
//!
//! Knowing a group (or subnet) id is what makes a node a member, so the id
//! is a secret: it must not be compared with an early-exit `==` (timing
//! would leak how many leading bytes matched), it must not appear in logs,
//! and it must never be broadcast. Capabilities therefore carry the
//! *public tag* of a group ([`GroupId::tag`]), a domain-separated hash,
//! never the secret itself.

use std::fmt;

use net_crypto::blake2s;
use subtle::{Choice, ConstantTimeEq};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Domain separator for [`GroupId::tag`].
const GROUP_TAG_DOMAIN: &[u8] = b"net/group-tag/v1\0";
/// Domain separator for [`SubnetId::tag`].
const SUBNET_TAG_DOMAIN: &[u8] = b"net/subnet-tag/v1\0";

/// A 32-byte group membership secret (bearer: holding it is membership).
///
/// Invariants: equality is only available in constant time
/// ([`ConstantTimeEq`]); there is deliberately no `PartialEq`, `Eq` or
/// `Hash`, so it cannot end up in a `==`, a `Vec::contains` or a hash map
/// by accident. `Debug` redacts the bytes; the bytes are zeroized on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct GroupId(pub [u8; 32]);

/// A 16-byte subnet membership secret; same rules as [`GroupId`].
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SubnetId(pub [u8; 16]);

impl GroupId {
    /// The group's public tag: BLAKE2s-256 over a domain separator and the
    /// secret. This is what a [`crate::Capability`] lists in
    /// `allowed_groups`, because announcements are broadcast to every peer
    /// and must not carry the secret. One-way, so the tag does not reveal
    /// the secret.
    pub fn tag(&self) -> [u8; 32] {
        blake2s(&[GROUP_TAG_DOMAIN, &self.0])
    }
}

impl SubnetId {
    /// The subnet's public tag: the first 16 bytes of a domain-separated
    /// BLAKE2s-256 of the secret (see [`GroupId::tag`] for why a tag).
    pub fn tag(&self) -> [u8; 16] {
        let h = blake2s(&[SUBNET_TAG_DOMAIN, &self.0]);
        let mut out = [0u8; 16];
        out.copy_from_slice(&h[..16]);
        out
    }
}

impl ConstantTimeEq for GroupId {
    fn ct_eq(&self, other: &Self) -> Choice {
        self.0[..].ct_eq(&other.0[..])
    }
}

impl ConstantTimeEq for SubnetId {
    fn ct_eq(&self, other: &Self) -> Choice {
        self.0[..].ct_eq(&other.0[..])
    }
}

impl fmt::Debug for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("GroupId(<redacted>)")
    }
}

impl fmt::Debug for SubnetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SubnetId(<redacted>)")
    }
}

/// Whether `list` contains `id`, in time independent of where (or
/// whether) it matches: every entry is compared and the results are
/// combined with a constant-time OR, with no early exit. Only the list's
/// length is observable.
///
/// Works for [`GroupId`], [`SubnetId`] and any other [`ConstantTimeEq`]
/// type (e.g. the byte arrays of public tags).
pub fn ct_contains<T: ConstantTimeEq>(list: &[T], id: &T) -> bool {
    let hit = list
        .iter()
        .fold(Choice::from(0), |acc, entry| acc | entry.ct_eq(id));
    bool::from(hit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_domain_separated_and_stable() {
        let g = GroupId([9; 32]);
        let s = SubnetId([9; 16]);
        assert_eq!(g.tag(), GroupId([9; 32]).tag());
        assert_ne!(g.tag(), GroupId([8; 32]).tag());
        assert_ne!(g.tag()[..16], s.tag()[..]);
        assert_ne!(g.tag(), [9; 32]);
    }
}
