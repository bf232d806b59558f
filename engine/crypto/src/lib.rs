//! Crypto for Net: ChaCha20-Poly1305 with a run-time backend and CPU path,
//! Ed25519 identities and the node ids derived from them, and the hash, MAC
//! and KDF primitives the handshake needs.
//!
//! Nothing here compiles in a CPU floor: every SIMD path is chosen at run
//! time by the backend, and [`Backend::describe`] reports which one runs.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod aead;
mod cpu;
mod error;
mod hash;
mod identity;

pub use aead::{
    nonce_bytes, AeadKey, Backend, BackendChoice, Suite, AEAD_ENV_VAR, KEY_LEN, NONCE_LEN, TAG_LEN,
};
pub use cpu::simd_level;
pub use error::CryptoError;
pub use hash::{blake2s, hkdf_sha256, mac16, HKDF_SHA256_MAX_OUTPUT};
pub use identity::{verify_batch, Identity, NodeId, PublicIdentity, NODE_ID_DOMAIN};
