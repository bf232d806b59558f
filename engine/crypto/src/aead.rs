//! Transport AEAD with a run-time choice of implementation and suite.
//!
//! Two suites: ChaCha20-Poly1305 (RFC 8439; every node has it) and
//! AES-256-GCM, which peers agree on in the handshake when both have AES
//! and carry-less-multiply instructions: there it is 2–3× faster than
//! ChaCha20 at every size (BENCHMARKS.md). Both backends compute the same
//! ChaCha20-Poly1305, so peers may use different ones. ring is the default:
//! its fused assembly is several times faster on the small packets that
//! dominate RPC traffic (DESIGN §6); AES-256-GCM always runs on ring.

use std::ffi::OsStr;
use std::fmt;
use std::str::FromStr;

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, CHACHA20_POLY1305};

use crate::CryptoError;

/// Length of the Poly1305 authentication tag appended to every ciphertext.
pub const TAG_LEN: usize = 16;
/// Length of a ChaCha20-Poly1305 key.
pub const KEY_LEN: usize = 32;
/// Length of the RFC 8439 nonce built by [`nonce_bytes`].
pub const NONCE_LEN: usize = 12;
/// Environment variable read by [`BackendChoice::from_env`].
pub const AEAD_ENV_VAR: &str = "NET_AEAD";

/// The nonce for packet `counter`: 4 zero bytes, then the counter as u64
/// little-endian (WireGuard's layout).
///
/// The wire format depends on this layout: the packet counter in the
/// header *is* the nonce, so a counter must never repeat under one key.
pub fn nonce_bytes(counter: u64) -> [u8; NONCE_LEN] {
    let mut nonce = [0u8; NONCE_LEN];
    nonce[4..].copy_from_slice(&counter.to_le_bytes());
    nonce
}

/// A transport AEAD algorithm. Both have 32-byte keys, 12-byte nonces and
/// 16-byte tags, so the wire format does not depend on the suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Suite {
    /// ChaCha20-Poly1305: mandatory, fast everywhere in software.
    ChaCha20Poly1305,
    /// AES-256-GCM: used only when both peers have AES hardware.
    Aes256Gcm,
}

impl Suite {
    /// Bit in the suites field of the transport parameters.
    pub const fn bit(self) -> u8 {
        match self {
            Suite::ChaCha20Poly1305 => 1,
            Suite::Aes256Gcm => 2,
        }
    }

    /// `chacha20-poly1305` or `aes-256-gcm`.
    pub fn name(self) -> &'static str {
        match self {
            Suite::ChaCha20Poly1305 => "chacha20-poly1305",
            Suite::Aes256Gcm => "aes-256-gcm",
        }
    }

    /// The suite two peers use given both offers (bitmasks of [`Self::bit`]):
    /// AES-256-GCM if both offer it, else ChaCha20-Poly1305, which every
    /// node must accept whatever its offer says. Symmetric, so both sides
    /// agree without a further message.
    pub fn agree(ours: u8, theirs: u8) -> Suite {
        if ours & theirs & Suite::Aes256Gcm.bit() != 0 {
            Suite::Aes256Gcm
        } else {
            Suite::ChaCha20Poly1305
        }
    }

    /// The suites `backend` runs fast on this CPU, as an offer: ChaCha20
    /// always; AES-256-GCM with ring on a CPU with AES and carry-less
    /// multiply instructions (without them AES is slow, and a software AES
    /// risks cache-timing leaks).
    pub fn offer(backend: Backend) -> u8 {
        let aes = backend == Backend::Ring && crate::cpu::has_aes_clmul();
        Suite::ChaCha20Poly1305.bit() | if aes { Suite::Aes256Gcm.bit() } else { 0 }
    }
}

/// An AEAD implementation that is compiled in and can be keyed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// ring's BoringSSL-derived assembly, dispatched on CPU features at run
    /// time. The default.
    Ring,
    /// The pure-Rust `chacha20poly1305` crate (feature `rustcrypto`).
    RustCrypto,
}

/// Which backend the operator asked for (config file or `NET_AEAD`).
///
/// Parsed from and displayed as `auto`, `ring` or `rustcrypto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum BackendChoice {
    /// Let the library pick; currently always [`Backend::Ring`].
    #[default]
    Auto,
    /// Force ring.
    Ring,
    /// Force RustCrypto; fails to select if the feature is compiled out.
    RustCrypto,
}

impl BackendChoice {
    /// Reads `NET_AEAD`. Unset or empty means [`BackendChoice::Auto`];
    /// anything else must parse (see [`FromStr`]), so a typo fails loudly
    /// instead of silently running the default.
    pub fn from_env() -> Result<BackendChoice, CryptoError> {
        Self::from_env_value(std::env::var_os(AEAD_ENV_VAR).as_deref())
    }

    /// The policy behind [`Self::from_env`], separated so tests need not
    /// mutate the process environment.
    fn from_env_value(value: Option<&OsStr>) -> Result<BackendChoice, CryptoError> {
        match value {
            None => Ok(BackendChoice::Auto),
            Some(raw) => {
                let text = raw.to_str().ok_or(CryptoError::UnknownBackend)?.trim();
                if text.is_empty() {
                    Ok(BackendChoice::Auto)
                } else {
                    text.parse()
                }
            }
        }
    }

    /// The canonical spelling accepted by [`FromStr`].
    pub fn as_str(&self) -> &'static str {
        match self {
            BackendChoice::Auto => "auto",
            BackendChoice::Ring => "ring",
            BackendChoice::RustCrypto => "rustcrypto",
        }
    }
}

impl FromStr for BackendChoice {
    type Err = CryptoError;

    /// Accepts `auto`, `ring`, `rustcrypto` in any ASCII case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            BackendChoice::Auto,
            BackendChoice::Ring,
            BackendChoice::RustCrypto,
        ]
        .into_iter()
        .find(|choice| choice.as_str().eq_ignore_ascii_case(s))
        .ok_or(CryptoError::UnknownBackend)
    }
}

impl fmt::Display for BackendChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Backend {
    /// Resolves an operator's choice to a backend that this build has.
    ///
    /// `Auto` is ring. Asking for RustCrypto in a build without the
    /// `rustcrypto` feature is an error rather than a silent substitution,
    /// so benchmark labels never lie.
    pub fn select(choice: BackendChoice) -> Result<Backend, CryptoError> {
        match choice {
            BackendChoice::Auto | BackendChoice::Ring => Ok(Backend::Ring),
            BackendChoice::RustCrypto if cfg!(feature = "rustcrypto") => Ok(Backend::RustCrypto),
            BackendChoice::RustCrypto => Err(CryptoError::BackendUnavailable(
                "rustcrypto (built without the `rustcrypto` feature)",
            )),
        }
    }

    /// Every backend compiled into this build, default first.
    pub fn available() -> &'static [Backend] {
        if cfg!(feature = "rustcrypto") {
            &[Backend::Ring, Backend::RustCrypto]
        } else {
            &[Backend::Ring]
        }
    }

    /// Short name: `ring` or `rustcrypto` (same spelling as
    /// [`BackendChoice`]).
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Ring => "ring",
            Backend::RustCrypto => "rustcrypto",
        }
    }

    /// `algorithm/backend/cpu-path`, e.g. `chacha20-poly1305/ring/avx2`.
    ///
    /// The CPU path is what the backend's own dispatch picks on this CPU,
    /// detected at run time: for ring `avx2` (AVX2+BMI2), `sse4.1`, `ssse3`,
    /// `neon` or `generic`; for RustCrypto `avx2` (global `+avx2` build),
    /// `avx2-noinline` (AVX2 found at run time, but its intrinsics are not
    /// inlined, which is why it is slow), `sse2` or `soft`. A
    /// RustCrypto backend in a build without that feature reports `ring`,
    /// because that is what [`AeadKey::new`] then runs. See
    /// [`crate::simd_level`] for the CPU's own capability.
    pub fn describe(&self) -> &'static str {
        match self {
            #[cfg(feature = "rustcrypto")]
            Backend::RustCrypto => crate::cpu::rustcrypto_path(),
            _ => crate::cpu::ring_path(),
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The keyed implementation behind an [`AeadKey`].
///
/// ring's key is ~544 bytes (it sizes for AES key schedules) against 32 for
/// RustCrypto. It stays inline: a session owns two keys for its lifetime,
/// and a `Box` would add a pointer chase to every seal and open.
#[allow(clippy::large_enum_variant)]
enum Inner {
    Ring(LessSafeKey),
    #[cfg(feature = "rustcrypto")]
    RustCrypto(chacha20poly1305::ChaCha20Poly1305),
}

/// One direction's AEAD key (ChaCha20-Poly1305 unless keyed with
/// [`AeadKey::with_suite`]).
///
/// Not `Clone`: a key is bound to one sender's counter sequence, and a
/// copy would invite nonce reuse. Seal and open work in caller-provided
/// buffers and never allocate. The RustCrypto key is zeroized on drop;
/// ring does not zeroize its key schedule.
pub struct AeadKey {
    inner: Inner,
}

impl fmt::Debug for AeadKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AeadKey")
            .field("backend", &self.backend())
            .finish_non_exhaustive()
    }
}

impl AeadKey {
    /// Keys `backend` with `key`.
    ///
    /// `Backend::RustCrypto` in a build without the `rustcrypto` feature
    /// falls back to ring (same ciphertexts) and [`Self::backend`] then says
    /// `Ring`; use [`Backend::select`] to get an error instead.
    pub fn new(backend: Backend, key: &[u8; KEY_LEN]) -> AeadKey {
        Self::with_suite(backend, Suite::ChaCha20Poly1305, key)
    }

    /// Keys `suite` on `backend` with `key`. AES-256-GCM always runs on
    /// ring (RustCrypto implements only ChaCha20-Poly1305 here; see
    /// [`Suite::offer`], which never offers AES for it).
    pub fn with_suite(backend: Backend, suite: Suite, key: &[u8; KEY_LEN]) -> AeadKey {
        if suite == Suite::Aes256Gcm {
            let unbound =
                UnboundKey::new(&AES_256_GCM, key).expect("KEY_LEN is AES_256_GCM's key length");
            return AeadKey {
                inner: Inner::Ring(LessSafeKey::new(unbound)),
            };
        }
        let inner = match backend {
            #[cfg(feature = "rustcrypto")]
            Backend::RustCrypto => {
                use chacha20poly1305::KeyInit;
                Inner::RustCrypto(chacha20poly1305::ChaCha20Poly1305::new(key.into()))
            }
            _ => {
                let unbound = UnboundKey::new(&CHACHA20_POLY1305, key)
                    .expect("KEY_LEN is CHACHA20_POLY1305's key length");
                Inner::Ring(LessSafeKey::new(unbound))
            }
        };
        AeadKey { inner }
    }

    /// The backend actually keyed (see [`Self::new`] for the fallback).
    pub fn backend(&self) -> Backend {
        match self.inner {
            Inner::Ring(_) => Backend::Ring,
            #[cfg(feature = "rustcrypto")]
            Inner::RustCrypto(_) => Backend::RustCrypto,
        }
    }

    /// Encrypts `buf[..plaintext_len]` in place under the nonce for
    /// `counter` and writes the tag to `buf[plaintext_len..plaintext_len +
    /// 16]`; bytes after that are untouched. Returns `plaintext_len + 16`.
    ///
    /// The caller must never reuse a counter with this key: ChaCha20-
    /// Poly1305 loses confidentiality and integrity on nonce reuse.
    pub fn seal_in_place(
        &self,
        counter: u64,
        aad: &[u8],
        buf: &mut [u8],
        plaintext_len: usize,
    ) -> Result<usize, CryptoError> {
        self.seal_with_nonce(&nonce_bytes(counter), aad, buf, plaintext_len)
    }

    /// Decrypts `buf` = ciphertext || tag in place under the nonce for
    /// `counter`; returns the plaintext length (`buf.len() - 16`), the
    /// plaintext being `buf[..len]`.
    ///
    /// On `Err(Decrypt)` (bad tag, or `buf` shorter than a tag) the contents
    /// of `buf` are unspecified and must be discarded.
    pub fn open_in_place(
        &self,
        counter: u64,
        aad: &[u8],
        buf: &mut [u8],
    ) -> Result<usize, CryptoError> {
        self.open_with_nonce(&nonce_bytes(counter), aad, buf)
    }

    /// [`Self::seal_in_place`] with an explicit 12-byte nonce; private so
    /// the counter layout stays the only way in, but lets tests feed RFC
    /// vectors.
    fn seal_with_nonce(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
        plaintext_len: usize,
    ) -> Result<usize, CryptoError> {
        let total = plaintext_len
            .checked_add(TAG_LEN)
            .ok_or(CryptoError::BufferTooSmall)?;
        let (msg, tag_out) = buf
            .get_mut(..total)
            .ok_or(CryptoError::BufferTooSmall)?
            .split_at_mut(plaintext_len);
        match &self.inner {
            Inner::Ring(key) => {
                let tag = key
                    .seal_in_place_separate_tag(
                        Nonce::assume_unique_for_key(*nonce),
                        Aad::from(aad),
                        msg,
                    )
                    .map_err(|_| CryptoError::MessageTooLong)?;
                tag_out.copy_from_slice(tag.as_ref());
            }
            #[cfg(feature = "rustcrypto")]
            Inner::RustCrypto(cipher) => {
                use chacha20poly1305::AeadInPlace;
                let tag = cipher
                    .encrypt_in_place_detached(chacha20poly1305::Nonce::from_slice(nonce), aad, msg)
                    .map_err(|_| CryptoError::MessageTooLong)?;
                tag_out.copy_from_slice(&tag);
            }
        }
        Ok(total)
    }

    /// [`Self::open_in_place`] with an explicit 12-byte nonce.
    fn open_with_nonce(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
    ) -> Result<usize, CryptoError> {
        let plaintext_len = buf.len().checked_sub(TAG_LEN).ok_or(CryptoError::Decrypt)?;
        match &self.inner {
            Inner::Ring(key) => {
                key.open_in_place(Nonce::assume_unique_for_key(*nonce), Aad::from(aad), buf)
                    .map_err(|_| CryptoError::Decrypt)?;
            }
            #[cfg(feature = "rustcrypto")]
            Inner::RustCrypto(cipher) => {
                use chacha20poly1305::AeadInPlace;
                let (ciphertext, tag) = buf.split_at_mut(plaintext_len);
                cipher
                    .decrypt_in_place_detached(
                        chacha20poly1305::Nonce::from_slice(nonce),
                        aad,
                        ciphertext,
                        chacha20poly1305::Tag::from_slice(tag),
                    )
                    .map_err(|_| CryptoError::Decrypt)?;
            }
        }
        Ok(plaintext_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8439 §2.8.2.
    const RFC_PLAINTEXT: &[u8] = b"Ladies and Gentlemen of the class of '99: If I could offer you \
only one tip for the future, sunscreen would be it.";
    const RFC_AAD: &str = "50515253c0c1c2c3c4c5c6c7";
    const RFC_NONCE: &str = "070000004041424344454647";
    const RFC_CIPHERTEXT: &str = "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d6\
3dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b3692ddbd7f2d778b8c9803aee328091b58\
fab324e4fad675945585808b4831d7bc3ff4def08e4b7a9de576d26586cec64b6116";
    const RFC_TAG: &str = "1ae10b594f09e26a7e902ecbd0600691";

    fn rfc_key() -> [u8; KEY_LEN] {
        std::array::from_fn(|i| 0x80 + i as u8)
    }

    fn rfc_vector(backend: Backend) {
        let key = AeadKey::new(backend, &rfc_key());
        assert_eq!(key.backend(), backend);
        let nonce: [u8; NONCE_LEN] = hex::decode(RFC_NONCE).unwrap().try_into().unwrap();
        let aad = hex::decode(RFC_AAD).unwrap();
        let mut buf = RFC_PLAINTEXT.to_vec();
        buf.resize(RFC_PLAINTEXT.len() + TAG_LEN, 0);
        let n = key
            .seal_with_nonce(&nonce, &aad, &mut buf, RFC_PLAINTEXT.len())
            .unwrap();
        assert_eq!(n, RFC_PLAINTEXT.len() + TAG_LEN);
        let (ct, tag) = buf.split_at(RFC_PLAINTEXT.len());
        assert_eq!(hex::encode(ct), RFC_CIPHERTEXT, "{backend}");
        assert_eq!(hex::encode(tag), RFC_TAG, "{backend}");
        let len = key.open_with_nonce(&nonce, &aad, &mut buf).unwrap();
        assert_eq!(&buf[..len], RFC_PLAINTEXT);
    }

    #[test]
    fn rfc8439_ring() {
        rfc_vector(Backend::Ring);
    }

    #[cfg(feature = "rustcrypto")]
    #[test]
    fn rfc8439_rustcrypto() {
        rfc_vector(Backend::RustCrypto);
    }

    #[test]
    fn counter_path_uses_wireguard_nonce_layout() {
        assert_eq!(
            nonce_bytes(0x0102_0304_0506_0708),
            [0, 0, 0, 0, 8, 7, 6, 5, 4, 3, 2, 1]
        );
        for &backend in Backend::available() {
            let key = AeadKey::new(backend, &rfc_key());
            let counter = 0x4746_4544_4342_4140u64;
            let mut via_counter = [0u8; 40];
            let mut via_nonce = [0u8; 40];
            key.seal_in_place(counter, b"ad", &mut via_counter, 24)
                .unwrap();
            key.seal_with_nonce(&nonce_bytes(counter), b"ad", &mut via_nonce, 24)
                .unwrap();
            assert_eq!(via_counter, via_nonce);
            let mut other = [0u8; 40];
            key.seal_in_place(counter + 1, b"ad", &mut other, 24)
                .unwrap();
            assert_ne!(via_counter, other);
        }
    }

    #[test]
    fn env_value_policy() {
        let parse = |v: Option<&str>| BackendChoice::from_env_value(v.map(OsStr::new));
        assert_eq!(parse(None), Ok(BackendChoice::Auto));
        assert_eq!(parse(Some("")), Ok(BackendChoice::Auto));
        assert_eq!(parse(Some("  ")), Ok(BackendChoice::Auto));
        assert_eq!(parse(Some("ring")), Ok(BackendChoice::Ring));
        assert_eq!(parse(Some(" RustCrypto\n")), Ok(BackendChoice::RustCrypto));
        assert_eq!(parse(Some("auto")), Ok(BackendChoice::Auto));
        assert_eq!(parse(Some("openssl")), Err(CryptoError::UnknownBackend));
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStrExt;
            let not_utf8 = OsStr::from_bytes(b"ring\xff");
            assert_eq!(
                BackendChoice::from_env_value(Some(not_utf8)),
                Err(CryptoError::UnknownBackend)
            );
        }
    }
}
