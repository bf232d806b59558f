//! Token chains: root-anchored delegation, bound to the presenter.

mod common;

use common::{ident, NOW};
use net_crypto::{Identity, PublicIdentity};
use net_trust::{TokenChain, TokenError, TrustStats, MAX_LINKS, MAX_SCOPE, MAX_TOKEN};

const DAY: u64 = 86_400_000;

fn scope(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// root → alice (read, write) → bob (read).
struct Fixture {
    root: Identity,
    alice: Identity,
    bob: Identity,
    chain: TokenChain,
}

fn fixture() -> Fixture {
    let (root, alice, bob) = (ident(1), ident(2), ident(3));
    let chain = TokenChain::root(
        &root,
        alice.node_id(),
        scope(&["chan:read", "chan:write"]),
        NOW + DAY,
    )
    .delegate(&alice, bob.node_id(), scope(&["chan:read"]), NOW + DAY / 2)
    .unwrap();
    Fixture {
        root,
        alice,
        bob,
        chain,
    }
}

fn roots(f: &Fixture) -> [PublicIdentity; 1] {
    [f.root.public()]
}

#[test]
fn valid_chain_accepted_and_round_trips() {
    let f = fixture();
    assert_eq!(f.chain.len(), 2);
    assert_eq!(f.chain.leaf_subject(), f.bob.node_id());
    assert_eq!(f.chain.root_issuer(), &f.root.public());
    assert_eq!(
        f.chain
            .verify(&roots(&f), &f.bob.node_id(), "chan:read", NOW),
        Ok(())
    );
    let decoded = TokenChain::decode(&f.chain.encode()).unwrap();
    assert_eq!(decoded, f.chain);
    assert_eq!(
        decoded.verify(&roots(&f), &f.bob.node_id(), "chan:read", NOW),
        Ok(())
    );
    // A one-link chain, and several trusted roots.
    let solo = TokenChain::root(&f.root, f.alice.node_id(), scope(&["a"]), NOW + 1);
    let many = [ident(9).public(), f.root.public()];
    assert_eq!(solo.verify(&many, &f.alice.node_id(), "a", NOW), Ok(()));
    // Full-length chains work.
    let mut chain = TokenChain::root(&f.root, ident(100).node_id(), scope(&["s"]), NOW + DAY);
    for i in 0..(MAX_LINKS as u8 - 1) {
        chain = chain
            .delegate(
                &ident(100 + i),
                ident(101 + i).node_id(),
                scope(&["s"]),
                NOW + DAY,
            )
            .unwrap();
    }
    assert_eq!(chain.len(), MAX_LINKS);
    let leaf = chain.leaf_subject();
    assert_eq!(chain.verify(&roots(&f), &leaf, "s", NOW), Ok(()));
    assert_eq!(
        chain.delegate(
            &ident(100 + MAX_LINKS as u8),
            leaf,
            scope(&["s"]),
            NOW + DAY
        ),
        Err(TokenError::NotHolder)
    );
    let last = ident(100 + MAX_LINKS as u8 - 1);
    assert_eq!(last.node_id(), leaf);
    assert_eq!(
        chain.delegate(&last, leaf, scope(&["s"]), NOW + DAY),
        Err(TokenError::TooLong)
    );
}

#[test]
fn widened_scope_rejected() {
    let f = fixture();
    let carol = ident(4);
    let wide = scope(&["chan:read", "chan:write"]);
    // Bob holds only chan:read; delegating chan:write is refused ...
    assert_eq!(
        f.chain
            .delegate(&f.bob, carol.node_id(), wide.clone(), NOW + 1000),
        Err(TokenError::ScopeWidened)
    );
    // ... and a hand-made link doing it anyway does not verify.
    let forged = f
        .chain
        .delegate_unchecked(&f.bob, carol.node_id(), wide, NOW + 1000);
    assert_eq!(
        forged.verify(&roots(&f), &carol.node_id(), "chan:write", NOW),
        Err(TokenError::ScopeWidened)
    );
    assert_eq!(
        forged.verify(&roots(&f), &carol.node_id(), "chan:read", NOW),
        Err(TokenError::ScopeWidened)
    );
}

#[test]
fn wrong_root_rejected() {
    let f = fixture();
    let other_roots = [ident(50).public(), f.alice.public()];
    assert_eq!(
        f.chain
            .verify(&other_roots, &f.bob.node_id(), "chan:read", NOW),
        Err(TokenError::WrongRoot)
    );
    assert_eq!(
        f.chain.verify(&[], &f.bob.node_id(), "chan:read", NOW),
        Err(TokenError::WrongRoot)
    );
    // A self-made root for the same subjects.
    let fake = TokenChain::root(&f.alice, f.bob.node_id(), scope(&["chan:read"]), NOW + DAY);
    assert_eq!(
        fake.verify(&roots(&f), &f.bob.node_id(), "chan:read", NOW),
        Err(TokenError::WrongRoot)
    );
}

#[test]
fn expired_links_rejected() {
    let f = fixture();
    let v = |c: &TokenChain, now| c.verify(&roots(&f), &f.bob.node_id(), "chan:read", now);
    assert_eq!(v(&f.chain, NOW + DAY / 2 - 1), Ok(()));
    assert_eq!(v(&f.chain, NOW + DAY / 2), Err(TokenError::Expired), "leaf");
    // Parent expires before the leaf would: a child may not outlive it.
    let short = TokenChain::root(&f.root, f.alice.node_id(), scope(&["chan:read"]), NOW + 10);
    assert_eq!(
        short.delegate(&f.alice, f.bob.node_id(), scope(&["chan:read"]), NOW + DAY),
        Err(TokenError::Expired)
    );
    let outlives =
        short.delegate_unchecked(&f.alice, f.bob.node_id(), scope(&["chan:read"]), NOW + DAY);
    assert_eq!(v(&outlives, NOW), Err(TokenError::Expired));
    assert_eq!(v(&outlives, NOW + 10), Err(TokenError::Expired));
}

#[test]
fn chain_presented_by_another_node_rejected() {
    let f = fixture();
    // Alice, Mallory or the root presenting Bob's chain: refused.
    for presenter in [f.alice.node_id(), ident(66).node_id(), f.root.node_id()] {
        assert_eq!(
            f.chain.verify(&roots(&f), &presenter, "chan:read", NOW),
            Err(TokenError::NotBoundToPresenter)
        );
    }
}

#[test]
fn broken_chain_rejected() {
    let f = fixture();
    let mallory = ident(66);
    // Mallory (not the leaf subject, Bob) extends Bob's chain to herself.
    assert_eq!(
        f.chain
            .delegate(&mallory, mallory.node_id(), scope(&["chan:read"]), NOW + 1),
        Err(TokenError::NotHolder)
    );
    let broken =
        f.chain
            .delegate_unchecked(&mallory, mallory.node_id(), scope(&["chan:read"]), NOW + 1);
    assert_eq!(
        broken.verify(&roots(&f), &mallory.node_id(), "chan:read", NOW),
        Err(TokenError::BrokenChain)
    );
}

#[test]
fn bad_signature_rejected() {
    let f = fixture();
    let bytes = f.chain.encode();
    // Flip a byte in each signature (the last 64 bytes of each link).
    for i in [bytes.len() - 1, bytes.len() - 64] {
        let mut bad = bytes.clone();
        bad[i] ^= 0x01;
        let chain = TokenChain::decode(&bad).unwrap();
        assert_eq!(
            chain.verify(&roots(&f), &f.bob.node_id(), "chan:read", NOW),
            Err(TokenError::BadSignature)
        );
    }
    // Root link body tampered: its expiry (first varint byte after count,
    // issuer, subject and the two scope strings) moved by one ms.
    let mut bad = bytes.clone();
    let expiry_at = 1 + 32 + 32 + 1 + (1 + 9) + (1 + 10);
    bad[expiry_at] ^= 0x01;
    let chain = TokenChain::decode(&bad).unwrap();
    assert_eq!(
        chain.verify(&roots(&f), &f.bob.node_id(), "chan:read", NOW),
        Err(TokenError::BadSignature)
    );
    // Tampering that changes semantics is caught even earlier.
    let mut bad = bytes.clone();
    let pos = bytes.windows(9).position(|w| w == b"chan:read").unwrap();
    bad[pos + 8] = b'e';
    let chain = TokenChain::decode(&bad).unwrap();
    assert!(chain
        .verify(&roots(&f), &f.bob.node_id(), "chan:read", NOW)
        .is_err());
    // Splicing: Bob's link from chain 1 onto a different root link with
    // the same subject and scope: the previous-hash binding breaks it.
    let other_root = TokenChain::root(
        &f.root,
        f.alice.node_id(),
        scope(&["chan:read", "chan:write"]),
        NOW + DAY - 1,
    );
    let root_len = other_root.encode().len() - 1;
    let first_len = TokenChain::root(
        &f.root,
        f.alice.node_id(),
        scope(&["chan:read", "chan:write"]),
        NOW + DAY,
    )
    .encode()
    .len()
        - 1;
    let mut spliced = vec![2u8];
    spliced.extend_from_slice(&other_root.encode()[1..=root_len]);
    spliced.extend_from_slice(&bytes[1 + first_len..]);
    let chain = TokenChain::decode(&spliced).unwrap();
    assert_eq!(
        chain.verify(&roots(&f), &f.bob.node_id(), "chan:read", NOW),
        Err(TokenError::BadSignature)
    );
}

#[test]
fn out_of_scope_rejected_and_counted() {
    let f = fixture();
    let mut stats = TrustStats::default();
    assert_eq!(
        f.chain
            .verify_counted(&roots(&f), &f.bob.node_id(), "chan:write", NOW, &mut stats),
        Err(TokenError::OutOfScope)
    );
    assert_eq!(
        f.chain
            .verify_counted(&roots(&f), &f.bob.node_id(), "chan:read", NOW, &mut stats),
        Ok(())
    );
    assert_eq!(stats.token_rejected, 1);
}

#[test]
fn decode_limits() {
    let f = fixture();
    assert_eq!(TokenChain::decode(&[]), Err(TokenError::Malformed));
    assert_eq!(
        TokenChain::decode(&[0]),
        Err(TokenError::Malformed),
        "empty chain"
    );
    assert_eq!(TokenChain::decode(&[9]), Err(TokenError::TooLong));
    assert_eq!(
        TokenChain::decode(&[0xff, 0xff, 0xff, 0xff, 0x0f]),
        Err(TokenError::TooLong)
    );
    assert_eq!(
        TokenChain::decode(&vec![1u8; MAX_TOKEN + 1]),
        Err(TokenError::Oversize)
    );
    let bytes = f.chain.encode();
    for len in 0..bytes.len() {
        assert!(TokenChain::decode(&bytes[..len]).is_err(), "prefix {len}");
    }
    let mut long = bytes.clone();
    long.push(0);
    assert_eq!(TokenChain::decode(&long), Err(TokenError::Malformed));
    // Scope over its count limit.
    let big: Vec<String> = (0..=MAX_SCOPE).map(|i| format!("s{i}")).collect();
    let over = TokenChain::root(&f.root, f.alice.node_id(), big, NOW + 1);
    assert_eq!(
        TokenChain::decode(&over.encode()),
        Err(TokenError::Malformed)
    );
    assert_eq!(
        over.verify(&roots(&f), &f.alice.node_id(), "s0", NOW),
        Err(TokenError::Malformed)
    );
    // An invalid issuer key.
    let mut bad_key = bytes.clone();
    bad_key[1..33].copy_from_slice(&[0u8; 32]);
    assert_eq!(TokenChain::decode(&bad_key), Err(TokenError::Malformed));
}
