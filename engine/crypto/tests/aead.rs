//! AEAD behaviour through the public API: backend agreement, tamper
//! rejection, buffer contracts and backend selection.

use net_crypto::{AeadKey, Backend, BackendChoice, CryptoError, TAG_LEN};

/// SplitMix64: deterministic, so a failure names a reproducible case.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }

    fn key(&mut self) -> [u8; 32] {
        std::array::from_fn(|_| self.next() as u8)
    }
}

fn seal(key: &AeadKey, counter: u64, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let mut buf = plaintext.to_vec();
    buf.resize(plaintext.len() + TAG_LEN, 0);
    let n = key
        .seal_in_place(counter, aad, &mut buf, plaintext.len())
        .unwrap();
    assert_eq!(n, buf.len());
    buf
}

/// Seal/open round trip for every available backend, and (with the
/// `rustcrypto` feature) byte-for-byte agreement between backends in both
/// directions, for random sizes 0..9000.
#[test]
fn backends_agree_on_random_sizes() {
    let mut rng = Rng(1);
    let mut sizes: Vec<usize> = vec![0, 1, 15, 16, 17, 63, 64, 65, 128, 129, 8999];
    sizes.extend((0..60).map(|_| rng.below(9000)));
    for size in sizes {
        let key_bytes = rng.key();
        let counter = rng.next();
        let aad_len = rng.below(40);
        let aad = rng.bytes(aad_len);
        let plaintext = rng.bytes(size);
        let keys: Vec<AeadKey> = Backend::available()
            .iter()
            .map(|&b| AeadKey::new(b, &key_bytes))
            .collect();
        let sealed = seal(&keys[0], counter, &aad, &plaintext);
        if size >= 8 {
            assert_ne!(&sealed[..size], &plaintext[..], "size {size} not encrypted");
        }
        for key in &keys {
            assert_eq!(
                seal(key, counter, &aad, &plaintext),
                sealed,
                "{} size {size}",
                key.backend()
            );
            let mut buf = sealed.clone();
            let n = key.open_in_place(counter, &aad, &mut buf).unwrap();
            assert_eq!(&buf[..n], &plaintext[..], "{} size {size}", key.backend());
        }
    }
}

#[cfg(feature = "rustcrypto")]
#[test]
fn both_backends_are_compiled_in() {
    assert_eq!(Backend::available(), &[Backend::Ring, Backend::RustCrypto]);
}

/// Flipping any single bit of ciphertext, tag or AAD, or changing the
/// counter or key, must fail authentication on every backend.
#[test]
fn any_tamper_fails_to_open() {
    let mut rng = Rng(2);
    let key_bytes = rng.key();
    let aad = rng.bytes(16);
    let plaintext = rng.bytes(70);
    for &backend in Backend::available() {
        let key = AeadKey::new(backend, &key_bytes);
        let sealed = seal(&key, 7, &aad, &plaintext);
        for i in 0..sealed.len() {
            let mut buf = sealed.clone();
            buf[i] ^= 1 << (i % 8);
            assert_eq!(
                key.open_in_place(7, &aad, &mut buf),
                Err(CryptoError::Decrypt),
                "{backend} byte {i}"
            );
        }
        for i in 0..aad.len() {
            let mut bad_aad = aad.clone();
            bad_aad[i] ^= 0x80;
            let mut buf = sealed.clone();
            assert_eq!(
                key.open_in_place(7, &bad_aad, &mut buf),
                Err(CryptoError::Decrypt),
                "{backend} aad byte {i}"
            );
        }
        let mut buf = sealed.clone();
        assert_eq!(
            key.open_in_place(8, &aad, &mut buf),
            Err(CryptoError::Decrypt)
        );
        let mut other_key = key_bytes;
        other_key[31] ^= 1;
        let mut buf = sealed.clone();
        assert_eq!(
            AeadKey::new(backend, &other_key).open_in_place(7, &aad, &mut buf),
            Err(CryptoError::Decrypt)
        );
        let mut truncated = sealed[..sealed.len() - 1].to_vec();
        assert_eq!(
            key.open_in_place(7, &aad, &mut truncated),
            Err(CryptoError::Decrypt)
        );
    }
}

#[test]
fn buffer_contracts() {
    for &backend in Backend::available() {
        let key = AeadKey::new(backend, &[9; 32]);
        // Too small for plaintext + tag, including an overflowing length.
        let mut buf = [0u8; 20];
        assert_eq!(
            key.seal_in_place(0, b"", &mut buf, 5),
            Err(CryptoError::BufferTooSmall)
        );
        assert_eq!(
            key.seal_in_place(0, b"", &mut buf, usize::MAX),
            Err(CryptoError::BufferTooSmall)
        );
        // Exactly large enough; bytes past the tag are left alone.
        let mut buf = [0xaau8; 24];
        assert_eq!(key.seal_in_place(0, b"", &mut buf, 4), Ok(20));
        assert_eq!(&buf[20..], &[0xaa; 4]);
        assert_eq!(key.open_in_place(0, b"", &mut buf[..20]), Ok(4));
        assert_eq!(&buf[..4], &[0xaa; 4]);
        // Empty plaintext still authenticates; shorter than a tag fails.
        let mut tag_only = [0u8; TAG_LEN];
        assert_eq!(key.seal_in_place(1, b"x", &mut tag_only, 0), Ok(TAG_LEN));
        assert_eq!(key.open_in_place(1, b"x", &mut tag_only), Ok(0));
        for len in 0..TAG_LEN {
            let mut short = vec![0u8; len];
            assert_eq!(
                key.open_in_place(1, b"x", &mut short),
                Err(CryptoError::Decrypt)
            );
        }
    }
}

#[test]
fn select_and_describe() {
    assert_eq!(Backend::select(BackendChoice::Auto), Ok(Backend::Ring));
    assert_eq!(Backend::select(BackendChoice::Ring), Ok(Backend::Ring));
    let rc = Backend::select(BackendChoice::RustCrypto);
    if cfg!(feature = "rustcrypto") {
        assert_eq!(rc, Ok(Backend::RustCrypto));
    } else {
        assert!(matches!(rc, Err(CryptoError::BackendUnavailable(_))));
    }
    assert_eq!(BackendChoice::default(), BackendChoice::Auto);

    let ring = Backend::Ring.describe();
    assert!(ring.starts_with("chacha20-poly1305/ring/"), "{ring}");
    let path = ring.rsplit('/').next().unwrap();
    assert!(
        ["avx2", "sse4.1", "ssse3", "neon", "generic"].contains(&path),
        "{ring}"
    );
    let rc = Backend::RustCrypto.describe();
    if cfg!(feature = "rustcrypto") {
        assert!(rc.starts_with("chacha20-poly1305/rustcrypto/"), "{rc}");
        let path = rc.rsplit('/').next().unwrap();
        assert!(
            ["avx2", "avx2-noinline", "sse2", "soft"].contains(&path),
            "{rc}"
        );
    } else {
        // What AeadKey::new actually runs without the feature.
        assert_eq!(rc, ring);
    }
    let level = net_crypto::simd_level();
    assert!(
        ["avx512", "avx2", "ssse3", "neon", "generic"].contains(&level),
        "{level}"
    );
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("bmi2") {
        assert_eq!(ring, "chacha20-poly1305/ring/avx2");
    }
}

#[test]
fn backend_choice_parse_and_display() {
    for (text, choice) in [
        ("auto", BackendChoice::Auto),
        ("ring", BackendChoice::Ring),
        ("rustcrypto", BackendChoice::RustCrypto),
    ] {
        assert_eq!(text.parse::<BackendChoice>(), Ok(choice));
        assert_eq!(text.to_uppercase().parse::<BackendChoice>(), Ok(choice));
        assert_eq!(choice.to_string(), text);
    }
    for bad in ["", "rust-crypto", "ring ", "aesgcm", "autoo"] {
        assert_eq!(
            bad.parse::<BackendChoice>(),
            Err(CryptoError::UnknownBackend),
            "{bad:?}"
        );
    }
    assert_eq!(Backend::Ring.to_string(), "ring");
    assert_eq!(Backend::RustCrypto.to_string(), "rustcrypto");
}

/// `from_env` is a thin wrapper over the tested policy; this only checks it
/// agrees with whatever the test process was started with.
#[test]
fn from_env_matches_process_environment() {
    let expected = match std::env::var_os(net_crypto::AEAD_ENV_VAR) {
        None => Ok(BackendChoice::Auto),
        Some(raw) => match raw.to_str().map(str::trim) {
            None => Err(CryptoError::UnknownBackend),
            Some("") => Ok(BackendChoice::Auto),
            Some(text) => text.parse(),
        },
    };
    assert_eq!(BackendChoice::from_env(), expected);
}

#[test]
fn key_debug_shows_no_key_material() {
    let key = AeadKey::new(Backend::Ring, &[0x41; 32]);
    let shown = format!("{key:?}");
    assert!(shown.contains("Ring"), "{shown}");
    assert!(!shown.contains("41"), "{shown}");
}

#[test]
fn aes_suite_round_trips_and_differs_from_chacha() {
    use net_crypto::Suite;
    let key = [0x11; 32];
    let aes = AeadKey::with_suite(Backend::Ring, Suite::Aes256Gcm, &key);
    let chacha = AeadKey::with_suite(Backend::Ring, Suite::ChaCha20Poly1305, &key);
    let mut buf = [0u8; 64];
    buf[..40].copy_from_slice(&[0xAB; 40]);
    let n = aes.seal_in_place(5, b"hdr", &mut buf, 40).unwrap();
    assert_eq!(n, 40 + 16);
    let sealed = buf;
    assert!(chacha.open_in_place(5, b"hdr", &mut buf[..n]).is_err());
    buf = sealed;
    assert_eq!(aes.open_in_place(5, b"hdr", &mut buf[..n]), Ok(40));
    assert_eq!(&buf[..40], &[0xAB; 40]);
}

#[test]
fn suites_agree_symmetrically_and_chacha_is_always_offered() {
    use net_crypto::Suite;
    for a in 0..4u8 {
        for b in 0..4u8 {
            assert_eq!(Suite::agree(a, b), Suite::agree(b, a));
        }
    }
    assert_eq!(Suite::agree(3, 3), Suite::Aes256Gcm);
    assert_eq!(Suite::agree(3, 1), Suite::ChaCha20Poly1305);
    for &b in Backend::available() {
        assert_ne!(Suite::offer(b) & Suite::ChaCha20Poly1305.bit(), 0);
    }
    if cfg!(feature = "rustcrypto") {
        assert_eq!(
            Suite::offer(Backend::RustCrypto),
            1,
            "AES runs only on ring"
        );
    }
}
