//! Typed errors. None carries secret material; all may be logged.

use net_crypto::NodeId;

/// Why a signed envelope (announcement or reservation) was refused, by the
/// decoder, the verifier or the capability fold.
///
/// Every variant maps to one [`crate::TrustStats`] counter
/// ([`crate::TrustStats::count`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum AnnounceError {
    /// The bytes do not decode: truncated, trailing bytes, a non-canonical
    /// envelope, an invalid signer key, bad UTF-8, or a vector or string on
    /// the wire longer than its limit (the decoder refuses to allocate it).
    #[error("malformed envelope")]
    Malformed,
    /// The encoded envelope exceeds its size bound
    /// ([`crate::MAX_ANNOUNCEMENT`] / [`crate::MAX_RESERVATION`]), or, when
    /// signing, a field exceeds its limit.
    #[error("envelope too large")]
    Oversize,
    /// The body's version byte is not [`crate::VERSION`].
    #[error("unknown body version {0}")]
    UnknownVersion(u8),
    /// The body's `node_id` is not the signer's node id: a peer signing
    /// state on behalf of another node (the reference system's critical
    /// bypass).
    #[error("body node id is not the signer's")]
    NodeIdMismatch,
    /// The Ed25519 signature does not verify over the transcript.
    #[error("bad signature")]
    BadSignature,
    /// `issued_at_ms + ttl_ms <= now_ms`: the envelope has expired.
    #[error("expired")]
    Expired,
    /// `issued_at_ms > now_ms + MAX_SKEW_MS`: issued too far in the future.
    #[error("issued in the future")]
    FromTheFuture,
    /// `ttl_ms > MAX_TTL_MS`.
    #[error("ttl too long")]
    TtlTooLong,
    /// Fold: the sequence number is not newer than the entry's.
    #[error("sequence number not newer than the current entry")]
    Stale,
    /// The body's class is not one this envelope type may carry (an
    /// announcement may not use the reservations class).
    #[error("wrong class for this envelope type")]
    WrongClass,
    /// Fold: the key holds this node's own, locally set entry, which only
    /// [`crate::CapabilityFold::set_local`] may replace — a copy of our own
    /// announcement coming back from the network never does.
    #[error("entry is this node's own")]
    OwnEntry,
    /// Fold: at its byte bound even after dropping expired entries and
    /// evicting every entry the signer's tier may evict (see
    /// [`crate::FoldLimits`]); the current entry, if any, stays.
    #[error("fold full")]
    FoldFull,
    /// Fold: the signer's entries across all classes would be charged
    /// more than [`crate::FoldLimits::max_node_bytes`].
    #[error("node over its fold quota")]
    OverQuota,
}

/// Why a reservation message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum ReservationError {
    /// The envelope was refused (decode or verify); a reservation forged for
    /// another node id is `Envelope(AnnounceError::NodeIdMismatch)`.
    #[error("reservation envelope: {0}")]
    Envelope(#[from] AnnounceError),
    /// Acquire of a resource another node holds (unexpired).
    #[error("resource held by {holder:?}")]
    Conflict {
        /// The current holder.
        holder: NodeId,
    },
    /// Release of a resource held by another node.
    #[error("resource held by another node")]
    NotHolder,
    /// The sequence number is not newer than the last one applied from
    /// this signer (a replay, or reordering).
    #[error("stale reservation sequence number")]
    Stale,
    /// The fold is at its resource or node bound even after expiry.
    #[error("reservation fold full")]
    Full,
}

/// Why a token chain was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The bytes do not decode, a key is invalid, the chain is empty, or a
    /// scope is longer than its limit.
    #[error("malformed token chain")]
    Malformed,
    /// The encoding exceeds [`crate::MAX_TOKEN`] bytes.
    #[error("token chain too large")]
    Oversize,
    /// More than [`crate::MAX_LINKS`] links.
    #[error("token chain too long")]
    TooLong,
    /// The first issuer is not one of the trusted roots.
    #[error("chain not anchored at a trusted root")]
    WrongRoot,
    /// A link's issuer is not the previous link's subject.
    #[error("broken delegation chain")]
    BrokenChain,
    /// A link's scope is not a subset of the previous link's.
    #[error("delegated scope wider than its parent")]
    ScopeWidened,
    /// A link has expired, or outlives its parent.
    #[error("token expired")]
    Expired,
    /// A link's signature does not verify.
    #[error("bad token signature")]
    BadSignature,
    /// The leaf subject is not the presenting session's node id.
    #[error("token not bound to the presenter")]
    NotBoundToPresenter,
    /// The required scope item is not in the leaf's scope.
    #[error("required scope not granted")]
    OutOfScope,
    /// `delegate` was called with an identity that is not the leaf subject.
    #[error("only the leaf subject may delegate")]
    NotHolder,
}

/// Why [`crate::CapabilityFold::restore`] refused a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// Shorter than a header and a MAC.
    #[error("snapshot truncated")]
    Truncated,
    /// The MAC does not verify under this node's key: the bytes were
    /// sealed by another node, or tampered with.
    #[error("snapshot not sealed by this node, or tampered")]
    BadMac,
    /// Authentic but of an unknown format version.
    #[error("unknown snapshot version")]
    UnknownVersion,
    /// Authentic but undecodable (cannot happen for bytes this crate wrote).
    #[error("malformed snapshot")]
    Malformed,
}
