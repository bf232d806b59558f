//! Hashing, MAC and key derivation primitives used by the handshake and ids.

use blake2::digest::consts::U16;
use blake2::digest::{Digest, KeyInit, Mac};
use blake2::{Blake2s256, Blake2sMac};
use ring::hkdf;

/// BLAKE2s-256 over the concatenation of `parts`.
///
/// Concatenation is not injective (`["ab", "c"]` and `["a", "bc"]` hash the
/// same); callers that hash variable-length fields must length-prefix them
/// or use fixed-size fields, as the node id derivation does.
pub fn blake2s(parts: &[&[u8]]) -> [u8; 32] {
    let mut hasher = Blake2s256::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().into()
}

/// Keyed BLAKE2s with a 16-byte output (BLAKE2s' native keyed mode, not
/// HMAC) over the concatenation of `parts`.
///
/// This is the construction WireGuard uses for its handshake `mac1`; the
/// output length is part of BLAKE2's parameter block, so this is not a
/// truncation of the 32-byte MAC.
pub fn mac16(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 16] {
    let mut mac = <Blake2sMac<U16> as KeyInit>::new(key.into());
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// Output length requested from ring's HKDF-Expand.
struct OkmLen(usize);

impl hkdf::KeyType for OkmLen {
    fn len(&self) -> usize {
        self.0
    }
}

/// The most bytes HKDF-SHA256 can produce (RFC 5869: 255 blocks of 32).
pub const HKDF_SHA256_MAX_OUTPUT: usize = 255 * 32;

/// HKDF-SHA256 (RFC 5869): extract with `salt` over `ikm`, then expand with
/// the concatenation of `info` into `out`.
///
/// An empty `salt` is the RFC's "not provided" (HMAC pads keys with zeros,
/// so it equals a salt of 32 zero bytes).
///
/// # Panics
///
/// If `out.len()` exceeds [`HKDF_SHA256_MAX_OUTPUT`]. Output lengths are
/// fixed by the calling protocol code, never by peer input, so this is a
/// programming error rather than a runtime condition.
pub fn hkdf_sha256(salt: &[u8], ikm: &[u8], info: &[&[u8]], out: &mut [u8]) {
    assert!(
        out.len() <= HKDF_SHA256_MAX_OUTPUT,
        "HKDF-SHA256 output of {} bytes exceeds 255*32",
        out.len()
    );
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(ikm);
    let okm = prk
        .expand(info, OkmLen(out.len()))
        .expect("length checked against 255*32 above");
    okm.fill(out).expect("length matches the requested OkmLen");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    #[test]
    fn hkdf_rfc5869_case1() {
        let ikm = [0x0bu8; 22];
        let salt = unhex("000102030405060708090a0b0c");
        let info = unhex("f0f1f2f3f4f5f6f7f8f9");
        let mut okm = [0u8; 42];
        hkdf_sha256(&salt, &ikm, &[&info], &mut okm);
        assert_eq!(
            hex::encode(okm),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
        );
        // Info parts are concatenated: splitting them changes nothing.
        let mut split = [0u8; 42];
        hkdf_sha256(&salt, &ikm, &[&info[..3], &info[3..]], &mut split);
        assert_eq!(okm, split);
    }

    #[test]
    fn hkdf_lengths() {
        let mut empty = [0u8; 0];
        hkdf_sha256(b"s", b"k", &[], &mut empty);
        let mut max = vec![0u8; HKDF_SHA256_MAX_OUTPUT];
        hkdf_sha256(b"s", b"k", &[b"i"], &mut max);
        assert!(max.iter().any(|&b| b != 0));
    }

    #[test]
    #[should_panic(expected = "exceeds 255*32")]
    fn hkdf_too_long_panics() {
        let mut out = vec![0u8; HKDF_SHA256_MAX_OUTPUT + 1];
        hkdf_sha256(b"s", b"k", &[], &mut out);
    }

    #[test]
    fn blake2s_known_answer_and_concatenation() {
        // BLAKE2s-256("abc") from RFC 7693 appendix B.
        assert_eq!(
            hex::encode(blake2s(&[b"abc"])),
            "508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982"
        );
        assert_eq!(blake2s(&[b"a", b"", b"bc"]), blake2s(&[b"abc"]));
    }

    #[test]
    fn mac16_key_and_message_sensitivity() {
        let key = [7u8; 32];
        let base = mac16(&key, &[b"hello", b" world"]);
        assert_eq!(base, mac16(&key, &[b"hello world"]));
        for i in 0..32 {
            let mut k = key;
            k[i] ^= 1;
            assert_ne!(base, mac16(&k, &[b"hello world"]), "key byte {i}");
        }
        assert_ne!(base, mac16(&key, &[b"hello worle"]));
        // Keyed mode with a 16-byte output is its own function, not a
        // truncated 32-byte MAC and not an unkeyed hash.
        assert_ne!(base[..], blake2s(&[b"hello world"])[..16]);
        let mut mac32 = <blake2::Blake2sMac256 as KeyInit>::new((&key).into());
        mac32.update(b"hello world");
        assert_ne!(base[..], mac32.finalize().into_bytes()[..16]);
    }
}
