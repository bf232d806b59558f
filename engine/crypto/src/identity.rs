//! Ed25519 identities, their public halves, and the node ids derived from
//! them.
//!
//! A node's Noise static key is derived from its Ed25519 key (DESIGN §3),
//! so knowing a node's public identity is knowing its Noise public key.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use crate::{blake2s, CryptoError};

/// Domain separator hashed before the public key to form a [`NodeId`]; the
/// trailing NUL keeps it prefix-free against future labels.
pub const NODE_ID_DOMAIN: &[u8] = b"net/node-id/v1\0";

/// Writes `bytes` as lowercase hex without allocating.
fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    bytes.iter().try_for_each(|b| write!(f, "{b:02x}"))
}

/// Parses exactly 64 hex characters (either case) into 32 bytes.
fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if s.len() != 64 {
        return None;
    }
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

/// A node's identity: an Ed25519 keypair built from a 32-byte seed.
///
/// Holds secret material: `Debug` shows only the node id, the signing key
/// is zeroized on drop (ed25519-dalek's `zeroize` feature), and secret
/// accessors return [`Zeroizing`] copies. `Clone` exists so each core can
/// own a copy; every copy is zeroized on drop.
#[derive(Clone)]
pub struct Identity {
    signing: SigningKey,
    public: PublicIdentity,
}

impl Identity {
    /// Deterministically derives the keypair from `seed` (RFC 8032 secret
    /// key). The same seed always yields the same node id.
    pub fn from_seed(seed: &[u8; 32]) -> Identity {
        let signing = SigningKey::from_bytes(seed);
        // A key derived from a seed is a clamped multiple of the base point:
        // canonical and never of small order, so no validation is needed.
        let public = PublicIdentity::from_verifying_key(signing.verifying_key());
        Identity { signing, public }
    }

    /// A fresh identity from the operating system's CSPRNG.
    pub fn generate() -> Result<Identity, CryptoError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        SystemRandom::new()
            .fill(seed.as_mut())
            .map_err(|_| CryptoError::RandomUnavailable)?;
        Ok(Identity::from_seed(&seed))
    }

    /// The 32-byte seed, for persisting to the identity file.
    pub fn seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.signing.to_bytes())
    }

    /// The public half.
    pub fn public(&self) -> PublicIdentity {
        self.public
    }

    /// This identity's node id (cached; no hashing).
    pub fn node_id(&self) -> NodeId {
        self.public.node_id
    }

    /// Ed25519 signature of `msg` (deterministic, RFC 8032).
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.signing.sign(msg).to_bytes()
    }

    /// X25519 static private key for Noise: the clamped first half of
    /// SHA-512(seed), i.e. the same scalar Ed25519 signs with.
    ///
    /// Invariant: `x25519(noise_private_key(), 9) ==
    /// public().noise_public_key()`. Clamping here is redundant for X25519
    /// (which clamps its input) but makes the bytes a canonical X25519
    /// private key for any consumer.
    pub fn noise_private_key(&self) -> Zeroizing<[u8; 32]> {
        let mut scalar = Zeroizing::new(self.signing.to_scalar_bytes());
        scalar[0] &= 248;
        scalar[31] &= 127;
        scalar[31] |= 64;
        scalar
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("node_id", &self.public.node_id)
            .finish_non_exhaustive()
    }
}

/// A validated Ed25519 public key, with its node id cached.
///
/// Validation (in [`PublicIdentity::from_bytes`]) guarantees the encoding
/// is canonical and the point is not of small order, so one key has exactly
/// one byte string and hence exactly one node id. Equality, ordering and
/// hashing follow the key bytes. Display/FromStr: 64 lowercase hex chars.
#[derive(Clone, Copy)]
pub struct PublicIdentity {
    key: VerifyingKey,
    node_id: NodeId,
}

impl PublicIdentity {
    /// Wraps a key already known to be valid (derived from a secret).
    fn from_verifying_key(key: VerifyingKey) -> PublicIdentity {
        let node_id = NodeId::derive(key.as_bytes());
        PublicIdentity { key, node_id }
    }

    /// Parses and validates a public key received from elsewhere.
    ///
    /// Rejects bytes that do not decompress to a curve point, small-order
    /// ("weak") points, which can carry signatures valid for many messages,
    /// and non-canonical encodings (y ≥ p), which would give one key two
    /// node ids.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<PublicIdentity, CryptoError> {
        let key = VerifyingKey::from_bytes(bytes).map_err(|_| CryptoError::InvalidPublicKey)?;
        if key.is_weak() || key.to_edwards().compress().as_bytes() != bytes {
            return Err(CryptoError::InvalidPublicKey);
        }
        Ok(PublicIdentity::from_verifying_key(key))
    }

    /// The 32-byte compressed Edwards encoding.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// The node id of this key (cached; no hashing).
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// The X25519 public key for Noise: the birational Edwards→Montgomery
    /// image of this key, matching [`Identity::noise_private_key`].
    pub fn noise_public_key(&self) -> [u8; 32] {
        self.key.to_montgomery().to_bytes()
    }

    /// Strict Ed25519 verification (`verify_strict`): also rejects
    /// non-canonical `s` and small-order `R`, so a signature that verifies
    /// here is not malleable.
    pub fn verify(&self, msg: &[u8], sig: &[u8; 64]) -> Result<(), CryptoError> {
        self.key
            .verify_strict(msg, &Signature::from_bytes(sig))
            .map_err(|_| CryptoError::InvalidSignature)
    }
}

impl PartialEq for PublicIdentity {
    fn eq(&self, other: &Self) -> bool {
        self.key.as_bytes() == other.key.as_bytes()
    }
}

impl Eq for PublicIdentity {}

impl Hash for PublicIdentity {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key.as_bytes().hash(state);
    }
}

impl PartialOrd for PublicIdentity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for PublicIdentity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key.as_bytes().cmp(other.key.as_bytes())
    }
}

impl fmt::Display for PublicIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, self.key.as_bytes())
    }
}

impl fmt::Debug for PublicIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PublicIdentity(")?;
        write_hex(f, self.key.as_bytes())?;
        f.write_str(")")
    }
}

impl FromStr for PublicIdentity {
    type Err = CryptoError;

    /// 64 hex characters (either case), then the checks of
    /// [`PublicIdentity::from_bytes`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = parse_hex32(s).ok_or(CryptoError::InvalidPublicKey)?;
        PublicIdentity::from_bytes(&bytes)
    }
}

/// Verifies many signatures at once (ed25519-dalek `verify_batch`):
/// `Ok` only if every `(msgs[i], sigs[i], keys[i])` is valid.
///
/// Roughly twice as fast per signature as [`PublicIdentity::verify`] for
/// large batches, but says nothing about *which* signature failed; on
/// `Err`, fall back to single verification to find it. Batch verification
/// is cofactorless and does not reject a small-order `R`, so a key holder
/// could craft a signature of its own that passes here yet fails
/// [`PublicIdentity::verify`]; it cannot forge for anyone else's key. Keys
/// are already screened for small order by [`PublicIdentity::from_bytes`].
pub fn verify_batch(
    msgs: &[&[u8]],
    sigs: &[[u8; 64]],
    keys: &[PublicIdentity],
) -> Result<(), CryptoError> {
    if msgs.len() != sigs.len() || msgs.len() != keys.len() {
        return Err(CryptoError::BatchLengthMismatch);
    }
    let sigs: Vec<Signature> = sigs.iter().map(Signature::from_bytes).collect();
    let keys: Vec<VerifyingKey> = keys.iter().map(|k| k.key).collect();
    ed25519_dalek::verify_batch(msgs, &sigs, &keys).map_err(|_| CryptoError::InvalidSignature)
}

/// A node's stable name on the mesh: BLAKE2s-256 over
/// [`NODE_ID_DOMAIN`] || Ed25519 public key bytes.
///
/// Public, not secret: compares in variable time. Display is 64 lowercase
/// hex; FromStr accepts 64 hex characters in either case; Debug shows the
/// first 16 hex characters, enough to tell nodes apart in logs.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub [u8; 32]);

impl NodeId {
    /// Hashes key bytes; only called on keys that passed validation (or
    /// were derived from a secret), so every node id names a usable key.
    fn derive(public_key: &[u8; 32]) -> NodeId {
        NodeId(blake2s(&[NODE_ID_DOMAIN, public_key]))
    }

    /// The raw 32 bytes, as carried on the wire.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The first 16 hex characters (8 bytes), for logs and CLI output.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..8])
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NodeId(")?;
        write_hex(f, &self.0[..8])?;
        f.write_str(")")
    }
}

impl FromStr for NodeId {
    type Err = CryptoError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_hex32(s).map(NodeId).ok_or(CryptoError::InvalidNodeId)
    }
}

impl From<[u8; 32]> for NodeId {
    fn from(bytes: [u8; 32]) -> Self {
        NodeId(bytes)
    }
}
