//! Serde helpers: node ids as raw bytes, and vectors whose length is
//! checked *before* anything is allocated.
//!
//! serde's own `Vec` impl preallocates up to 1 MiB from the length a peer
//! claims; these helpers refuse a claimed length above the limit outright
//! and never preallocate more than the limit, so a hostile length prefix
//! costs nothing.

use std::fmt;
use std::marker::PhantomData;

use net_crypto::NodeId;
use serde::de::{Error as _, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{MAX_ALLOW_LIST, MAX_CAPABILITIES};

/// A `Vec<T>` visitor that fails as soon as the sequence is longer than
/// `limit`.
struct BoundedVisitor<T> {
    limit: usize,
    _t: PhantomData<T>,
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for BoundedVisitor<T> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a sequence of at most {} elements", self.limit)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        let hint = seq.size_hint().unwrap_or(0);
        if hint > self.limit {
            return Err(A::Error::invalid_length(hint, &self));
        }
        let mut out = Vec::with_capacity(hint);
        while let Some(item) = seq.next_element()? {
            if out.len() == self.limit {
                return Err(A::Error::invalid_length(self.limit + 1, &self));
            }
            out.push(item);
        }
        Ok(out)
    }
}

/// Deserializes a `Vec<T>` of at most `limit` elements.
pub(crate) fn bounded_vec<'de, D, T>(d: D, limit: usize) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    d.deserialize_seq(BoundedVisitor {
        limit,
        _t: PhantomData,
    })
}

/// `NodeId` as its 32 raw bytes (`net-crypto` has no serde).
pub(crate) mod node_id {
    use super::*;

    /// Serializes the raw bytes.
    pub(crate) fn serialize<S: Serializer>(id: &NodeId, s: S) -> Result<S::Ok, S::Error> {
        id.0.serialize(s)
    }

    /// Deserializes 32 raw bytes (every 32-byte string is a node id).
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<NodeId, D::Error> {
        <[u8; 32]>::deserialize(d).map(NodeId)
    }
}

/// `Vec<NodeId>` (an allow-list) as a sequence of raw ids, at most
/// [`MAX_ALLOW_LIST`].
pub(crate) mod node_ids {
    use super::*;

    /// Serializes as a sequence of 32-byte arrays.
    pub(crate) fn serialize<S: Serializer>(ids: &[NodeId], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(ids.iter().map(|id| id.0))
    }

    /// Deserializes at most [`MAX_ALLOW_LIST`] ids.
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<NodeId>, D::Error> {
        let raw: Vec<[u8; 32]> = bounded_vec(d, MAX_ALLOW_LIST)?;
        Ok(raw.into_iter().map(NodeId).collect())
    }
}

/// Deserializes an allow-list of at most [`MAX_ALLOW_LIST`] entries.
pub(crate) fn allow_list<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    bounded_vec(d, MAX_ALLOW_LIST)
}

/// Deserializes at most [`MAX_CAPABILITIES`] capabilities.
pub(crate) fn capabilities<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    bounded_vec(d, MAX_CAPABILITIES)
}

/// Minimal LEB128 varint, as postcard writes lengths.
pub(crate) fn write_varint(out: &mut Vec<u8>, v: usize) {
    write_varint_u64(out, v as u64);
}

/// Minimal LEB128 varint of a `u64` (postcard's encoding of integers).
pub(crate) fn write_varint_u64(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Bytes [`write_varint`] writes for `v`.
pub(crate) fn varint_len(mut v: usize) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Serialize, Debug, PartialEq)]
    struct Probe {
        #[serde(deserialize_with = "capabilities")]
        v: Vec<u8>,
    }

    #[test]
    fn bounded_vec_refuses_claimed_length_before_allocating() {
        // Claims 2^40 elements with no data: refused from the prefix alone.
        let mut bytes = Vec::new();
        write_varint(&mut bytes, 1 << 40);
        assert!(postcard::from_bytes::<Probe>(&bytes).is_err());
        // Exactly the limit is fine, one more is not.
        let ok = Probe {
            v: vec![1; MAX_CAPABILITIES],
        };
        let enc = postcard::to_allocvec(&ok).unwrap();
        assert_eq!(postcard::from_bytes::<Probe>(&enc).unwrap(), ok);
        let over = Probe {
            v: vec![1; MAX_CAPABILITIES + 1],
        };
        let enc = postcard::to_allocvec(&over).unwrap();
        assert!(postcard::from_bytes::<Probe>(&enc).is_err());
    }

    #[test]
    fn varint_matches_postcard() {
        for v in [0usize, 1, 127, 128, 300, 16_383, 16_384, 1 << 30] {
            let mut mine = Vec::new();
            write_varint(&mut mine, v);
            assert_eq!(mine, postcard::to_allocvec(&(v as u64)).unwrap(), "{v}");
            assert_eq!(mine.len(), varint_len(v));
        }
    }
}
