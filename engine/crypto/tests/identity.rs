//! Identities, public keys, node ids and signatures through the public API.

use std::collections::HashSet;

use curve25519_dalek::edwards::CompressedEdwardsY;
use curve25519_dalek::montgomery::MontgomeryPoint;
use net_crypto::{blake2s, verify_batch, CryptoError, Identity, NodeId, PublicIdentity};

fn seed(i: u8) -> [u8; 32] {
    std::array::from_fn(|j| i.wrapping_mul(31).wrapping_add(j as u8))
}

#[test]
fn rfc8032_test1_key_and_signature() {
    // RFC 8032 §7.1 TEST 1 (empty message).
    let sk: [u8; 32] =
        hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
            .unwrap()
            .try_into()
            .unwrap();
    let id = Identity::from_seed(&sk);
    assert_eq!(
        id.public().to_string(),
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    );
    assert_eq!(
        hex::encode(id.sign(b"")),
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
    );
    assert_eq!(*id.seed(), sk);
}

#[test]
fn noise_keys_match_x25519_of_basepoint() {
    for i in 0..16 {
        let id = Identity::from_seed(&seed(i));
        let private = id.noise_private_key();
        let public = id.public().noise_public_key();
        assert_eq!(
            MontgomeryPoint::mul_base_clamped(*private).to_bytes(),
            public,
            "seed {i}"
        );
        // The private key is already a clamped X25519 scalar.
        assert_eq!(private[0] & 7, 0);
        assert_eq!(private[31] & 0xc0, 0x40);
        // A DH between two identities agrees from both sides.
        let other = Identity::from_seed(&seed(i + 100));
        let ab = MontgomeryPoint(other.public().noise_public_key()).mul_clamped(*private);
        let ba = MontgomeryPoint(public).mul_clamped(*other.noise_private_key());
        assert_eq!(ab, ba);
    }
}

#[test]
fn node_id_is_deterministic_and_domain_separated() {
    let a = Identity::from_seed(&seed(1));
    let again = Identity::from_seed(&seed(1));
    assert_eq!(a.node_id(), again.node_id());
    assert_eq!(a.node_id(), a.public().node_id());
    let pk = a.public().to_bytes();
    assert_eq!(a.node_id().0, blake2s(&[b"net/node-id/v1\0", &pk]));
    assert_ne!(a.node_id().0, blake2s(&[&pk]));
    let ids: HashSet<NodeId> = (0..50)
        .map(|i| Identity::from_seed(&seed(i)).node_id())
        .collect();
    assert_eq!(ids.len(), 50);
    // Re-parsed public keys give the same node id.
    let parsed = PublicIdentity::from_bytes(&pk).unwrap();
    assert_eq!(parsed, a.public());
    assert_eq!(parsed.node_id(), a.node_id());
}

#[test]
fn node_id_text_forms() {
    let id = Identity::from_seed(&seed(3)).node_id();
    let text = id.to_string();
    assert_eq!(text.len(), 64);
    assert_eq!(text, hex::encode(id.as_bytes()));
    assert_eq!(text.parse::<NodeId>(), Ok(id));
    assert_eq!(text.to_uppercase().parse::<NodeId>(), Ok(id));
    assert_eq!(id.short(), &text[..16]);
    assert_eq!(format!("{id:?}"), format!("NodeId({})", &text[..16]));
    let bad_char = format!("{}g", &text[..63]);
    let non_ascii = format!("{}é", &text[..62]);
    for bad in [
        "",
        &text[..62],
        &text[..63],
        &format!("{text}00"),
        &format!("{text}0"),
        &bad_char,
        &non_ascii,
        &format!(" {}", &text[..63]),
    ] {
        assert_eq!(
            bad.parse::<NodeId>(),
            Err(CryptoError::InvalidNodeId),
            "{bad:?}"
        );
    }
}

#[test]
fn public_identity_text_forms() {
    let public = Identity::from_seed(&seed(4)).public();
    let text = public.to_string();
    assert_eq!(text, hex::encode(public.to_bytes()));
    assert_eq!(text.parse::<PublicIdentity>(), Ok(public));
    assert_eq!(format!("{public:?}"), format!("PublicIdentity({text})"));
    assert_eq!(
        text[..63].parse::<PublicIdentity>(),
        Err(CryptoError::InvalidPublicKey)
    );
    assert_eq!(
        "zz".repeat(32).parse::<PublicIdentity>(),
        Err(CryptoError::InvalidPublicKey)
    );
}

#[test]
fn public_identity_rejects_bad_points() {
    // Not on the curve: the first y with no matching x.
    let off_curve = (2u8..=255)
        .map(|y| {
            let mut b = [0u8; 32];
            b[0] = y;
            b
        })
        .find(|b| CompressedEdwardsY(*b).decompress().is_none())
        .expect("some small y is not on the curve");
    assert_eq!(
        PublicIdentity::from_bytes(&off_curve),
        Err(CryptoError::InvalidPublicKey)
    );
    // Small order: the identity (y = 1), the order-2 point (y = -1) and an
    // order-4 point (y = 0).
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let mut minus_one = [0xffu8; 32];
    minus_one[0] = 0xec;
    minus_one[31] = 0x7f;
    for weak in [identity, minus_one, [0u8; 32]] {
        assert!(CompressedEdwardsY(weak).decompress().is_some());
        assert_eq!(
            PublicIdentity::from_bytes(&weak),
            Err(CryptoError::InvalidPublicKey),
            "{}",
            hex::encode(weak)
        );
    }
}

#[test]
fn public_identity_rejects_non_canonical_encoding() {
    // y = k and y = p + k name the same point; only the first is canonical.
    let k = (2u8..19)
        .find(|&k| {
            let mut b = [0u8; 32];
            b[0] = k;
            CompressedEdwardsY(b)
                .decompress()
                .is_some_and(|p| !p.is_small_order())
        })
        .expect("a small canonical y on the curve");
    let mut canonical = [0u8; 32];
    canonical[0] = k;
    let mut non_canonical = [0xffu8; 32];
    non_canonical[0] = 0xed + k; // p = 2^255 - 19 = ed ff .. ff 7f (LE)
    non_canonical[31] = 0x7f;
    assert!(CompressedEdwardsY(non_canonical).decompress().is_some());
    assert!(PublicIdentity::from_bytes(&canonical).is_ok());
    assert_eq!(
        PublicIdentity::from_bytes(&non_canonical),
        Err(CryptoError::InvalidPublicKey)
    );
}

#[test]
fn sign_and_verify() {
    let id = Identity::from_seed(&seed(5));
    let public = id.public();
    let msg = b"announce nrpc:echo";
    let sig = id.sign(msg);
    assert_eq!(public.verify(msg, &sig), Ok(()));
    assert_eq!(
        public.verify(b"announce nrpc:echO", &sig),
        Err(CryptoError::InvalidSignature)
    );
    for i in 0..64 {
        let mut bad = sig;
        bad[i] ^= 0x10;
        assert_eq!(
            public.verify(msg, &bad),
            Err(CryptoError::InvalidSignature),
            "byte {i}"
        );
    }
    let stranger = Identity::from_seed(&seed(6)).public();
    assert_eq!(
        stranger.verify(msg, &sig),
        Err(CryptoError::InvalidSignature)
    );
}

#[test]
fn batch_verification_is_all_or_nothing() {
    let ids: Vec<Identity> = (0..8).map(|i| Identity::from_seed(&seed(i))).collect();
    let msgs: Vec<Vec<u8>> = (0..8)
        .map(|i| format!("message {i}").into_bytes())
        .collect();
    let msg_refs: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
    let sigs: Vec<[u8; 64]> = ids.iter().zip(&msgs).map(|(id, m)| id.sign(m)).collect();
    let keys: Vec<PublicIdentity> = ids.iter().map(Identity::public).collect();
    assert_eq!(verify_batch(&msg_refs, &sigs, &keys), Ok(()));
    assert_eq!(verify_batch(&[], &[], &[]), Ok(()));

    for bad in 0..8 {
        let mut tampered = sigs.clone();
        tampered[bad][0] ^= 1;
        assert_eq!(
            verify_batch(&msg_refs, &tampered, &keys),
            Err(CryptoError::InvalidSignature),
            "sig {bad}"
        );
        let mut swapped = keys.clone();
        swapped.swap(bad, (bad + 1) % 8);
        assert_eq!(
            verify_batch(&msg_refs, &sigs, &swapped),
            Err(CryptoError::InvalidSignature)
        );
    }
    assert_eq!(
        verify_batch(&msg_refs[..7], &sigs, &keys),
        Err(CryptoError::BatchLengthMismatch)
    );
}

#[test]
fn generate_seed_round_trip_and_debug_hides_secrets() {
    let id = Identity::generate().unwrap();
    let again = Identity::from_seed(&id.seed());
    assert_eq!(again.public(), id.public());
    assert_ne!(Identity::generate().unwrap().node_id(), id.node_id());
    let shown = format!("{id:?}");
    assert!(shown.contains(&id.node_id().short()), "{shown}");
    assert!(!shown.contains(&hex::encode(*id.seed())[..8]), "{shown}");
    assert!(
        !shown.contains(&hex::encode(*id.noise_private_key())[..8]),
        "{shown}"
    );
    let copy = id.clone();
    assert_eq!(copy.sign(b"m"), id.sign(b"m"));
}
