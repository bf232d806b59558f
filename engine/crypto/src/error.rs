//! The one error type of this crate.

/// Why a crypto operation was refused.
///
/// Every variant is a value the caller can count and act on; none carries
/// secret material, so errors may be logged freely. The enum is
/// `#[non_exhaustive]` so that new failure modes do not break matches in
/// other crates (which should keep a wildcard arm).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// AEAD authentication failed (wrong key, counter, AAD, or a tampered
    /// packet), or the input was too short to hold a tag.
    #[error("AEAD authentication failed")]
    Decrypt,
    /// The output buffer cannot hold plaintext plus the 16-byte tag.
    #[error("buffer too small for ciphertext and tag")]
    BufferTooSmall,
    /// The bytes are not an acceptable Ed25519 public key: not a curve point,
    /// a small-order (weak) point, a non-canonical encoding, or bad hex.
    #[error("invalid Ed25519 public key")]
    InvalidPublicKey,
    /// An Ed25519 signature (or a batch containing it) did not verify.
    #[error("invalid Ed25519 signature")]
    InvalidSignature,
    /// The requested AEAD backend is not compiled into this build; the
    /// payload says which and why.
    #[error("AEAD backend unavailable: {0}")]
    BackendUnavailable(&'static str),
    /// A node id string is not exactly 64 hexadecimal characters.
    #[error("invalid node id: expected 64 hex characters")]
    InvalidNodeId,
    /// A backend choice string (config or `NET_AEAD`) is not one of
    /// `auto`, `ring`, `rustcrypto`.
    #[error("unknown AEAD backend: expected auto, ring or rustcrypto")]
    UnknownBackend,
    /// The message exceeds the AEAD's per-message limit (about 256 GiB);
    /// unreachable with datagram-sized buffers.
    #[error("message too long for ChaCha20-Poly1305")]
    MessageTooLong,
    /// The operating system's random number generator failed.
    #[error("system random number generator unavailable")]
    RandomUnavailable,
    /// `verify_batch` was given slices of different lengths.
    #[error("batch verification inputs differ in length")]
    BatchLengthMismatch,
}
