//! Sealed snapshots of the capability fold.
//!
//! The trust invariant of restore: a fold may only be restored from bytes
//! *this node* produced. Remote entries in a snapshot were verified when
//! they were applied; restoring a peer's bytes would install state nobody
//! verified (and local entries, which open the callee gate). So a snapshot
//! is sealed with a keyed BLAKE2s MAC ([`mac16`]) under a key derived from
//! this node's identity seed, and restore checks the MAC (in constant
//! time) before parsing a single byte.

use std::fmt;

use net_crypto::{blake2s, mac16, Identity};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::capability::AnnouncementBody;
use crate::fold::{CapabilityFold, FoldLimits, Restored};
use crate::SnapshotError;

/// Domain separator deriving the snapshot key from the identity seed.
const KEY_DOMAIN: &[u8] = b"net/trust/snapshot-key/v1\0";
/// Domain separator of the snapshot MAC.
const MAC_DOMAIN: &[u8] = b"net/trust/snapshot/v1\0";
/// Magic and format version at the start of every snapshot.
const MAGIC: &[u8; 7] = b"NTFOLD\0";
/// Snapshot format version (the byte after [`MAGIC`]). Version 2 carries
/// the byte limits and each remote entry's node age and tier; version 1
/// snapshots (an entry count bound) are `UnknownVersion`.
const SNAPSHOT_VERSION: u8 = 2;
/// Header length: magic and version.
const HEADER_LEN: usize = MAGIC.len() + 1;
/// MAC length.
const MAC_LEN: usize = 16;

/// The key sealing this node's fold snapshots: BLAKE2s over a domain
/// separator and the identity seed, so only the holder of the identity can
/// produce or check it. Zeroized on drop; `Debug` redacts it.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SnapshotKey([u8; 32]);

impl SnapshotKey {
    /// Derives this node's snapshot key from its identity.
    pub fn derive(identity: &Identity) -> SnapshotKey {
        SnapshotKey(blake2s(&[KEY_DOMAIN, identity.seed().as_slice()]))
    }
}

impl fmt::Debug for SnapshotKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SnapshotKey(<redacted>)")
    }
}

/// What a snapshot decodes to: the limits (`max_bytes`, `max_node_bytes`,
/// `newcomer_bytes`, `settle_ms`), then `(body, local, first_seen_ms,
/// settled)` per entry.
type SnapshotIn = ([u64; 4], Vec<(AnnouncementBody, bool, u64, bool)>);

/// The limits as a snapshot stores them.
fn limits_out(l: FoldLimits) -> [u64; 4] {
    let [a, b, c] = [l.max_bytes, l.max_node_bytes, l.newcomer_bytes].map(|v| v as u64);
    [a, b, c, l.settle_ms]
}

/// The limits a snapshot stores (`None` if they do not fit a `usize`).
fn limits_in(v: [u64; 4]) -> Option<FoldLimits> {
    Some(FoldLimits {
        max_bytes: usize::try_from(v[0]).ok()?,
        max_node_bytes: usize::try_from(v[1]).ok()?,
        newcomer_bytes: usize::try_from(v[2]).ok()?,
        settle_ms: v[3],
    })
}

impl CapabilityFold {
    /// The fold as bytes sealed with `key`: `MAGIC || version || postcard
    /// (limits, [(body, local, first_seen_ms, settled)]) || mac16(key,
    /// domain || all before)`. Entries are sorted by key, so equal folds
    /// give equal bytes. The protected set is configuration, not state:
    /// set it again after [`CapabilityFold::restore`].
    pub fn snapshot(&self, key: &SnapshotKey) -> Vec<u8> {
        let mut entries: Vec<(&AnnouncementBody, bool, u64, bool)> = self
            .entries
            .values()
            .map(|e| {
                let (first_seen, settled) = match e.local {
                    true => (0, false),
                    false => self.node_meta(&e.body.node_id),
                };
                (&e.body, e.local, first_seen, settled)
            })
            .collect();
        entries.sort_unstable_by_key(|(b, ..)| (b.class, b.node_id));
        let mut out = MAGIC.to_vec();
        out.push(SNAPSHOT_VERSION);
        let max = limits_out(self.limits());
        // Serializing into a Vec cannot fail for these types (every
        // sequence has a known length); if it ever did, the header alone is
        // sealed and restore reports `Malformed` instead of panicking here.
        out = postcard::to_extend(&(max, entries), out).unwrap_or_else(|_| {
            let mut header = MAGIC.to_vec();
            header.push(SNAPSHOT_VERSION);
            header
        });
        let tag = mac16(&key.0, &[MAC_DOMAIN, &out]);
        out.extend_from_slice(&tag);
        out
    }

    /// Restores a fold from [`CapabilityFold::snapshot`] bytes, dropping
    /// entries expired at `now_ms`.
    ///
    /// Accepts only bytes sealed with `key` (this node's): the MAC is
    /// checked in constant time before anything is parsed, so a peer's
    /// snapshot, or any tampered byte, is `BadMac`.
    pub fn restore(
        key: &SnapshotKey,
        bytes: &[u8],
        now_ms: u64,
    ) -> Result<CapabilityFold, SnapshotError> {
        if bytes.len() < HEADER_LEN + MAC_LEN {
            return Err(SnapshotError::Truncated);
        }
        let (payload, tag) = bytes.split_at(bytes.len() - MAC_LEN);
        let expected = mac16(&key.0, &[MAC_DOMAIN, payload]);
        if !bool::from(expected[..].ct_eq(tag)) {
            return Err(SnapshotError::BadMac);
        }
        if &payload[..MAGIC.len()] != MAGIC {
            return Err(SnapshotError::Malformed);
        }
        if payload[MAGIC.len()] != SNAPSHOT_VERSION {
            return Err(SnapshotError::UnknownVersion);
        }
        let ((limits, entries), rest) =
            postcard::take_from_bytes::<SnapshotIn>(&payload[HEADER_LEN..])
                .map_err(|_| SnapshotError::Malformed)?;
        if !rest.is_empty() {
            return Err(SnapshotError::Malformed);
        }
        let limits = limits_in(limits).ok_or(SnapshotError::Malformed)?;
        let live = entries
            .into_iter()
            .filter(|(body, ..)| body.expires_at_ms() > now_ms)
            .map(|(body, local, first_seen_ms, settled)| Restored {
                body,
                local,
                first_seen_ms,
                settled,
            })
            .collect();
        Ok(CapabilityFold::from_entries(limits, live))
    }
}
