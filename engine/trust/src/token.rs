//! Root-anchored delegation chains: the access boundary for channels.
//!
//! A chain is a sequence of links. Link 0 is issued by a trusted root;
//! each later link is issued by the previous link's subject, may only
//! narrow the scope and shorten the lifetime, and is signed over the hash
//! of the previous link, so links cannot be cut out, reordered or spliced
//! from another chain. The leaf's subject is the only node that may present
//! the chain: the verifier compares it with the presenting session's
//! authenticated node id, so a stolen chain is useless to anyone else.
//!
//! Link wire form (postcard): `issuer [u8;32] || subject [u8;32] || scope
//! (varint count, then varint-length strings) || expires_at_ms (varint) ||
//! signature [u8;64]`; a chain is a varint link count then the links.
//! The signature is Ed25519 by `issuer` over `b"net/token/v1\0" ||
//! previous link hash (32 zero bytes for the root) || link body` (the link
//! without its signature); a link's hash is BLAKE2s over
//! `b"net/token-link/v1\0" || link body || signature`.

use net_crypto::{blake2s, Identity, NodeId, PublicIdentity};
use serde::{Deserialize, Deserializer};

use crate::serde_util::{bounded_vec, write_varint, write_varint_u64};
use crate::{TokenError, TrustStats};

/// Most links in a chain.
pub const MAX_LINKS: usize = 8;
/// Most scope entries per link.
pub const MAX_SCOPE: usize = 32;
/// Longest scope entry, in bytes.
pub const MAX_SCOPE_ITEM_LEN: usize = 64;
/// Largest encoded chain, in bytes (checked before decoding).
pub const MAX_TOKEN: usize = 16 * 1024;

/// Signature domain of a link.
const TOKEN_DOMAIN: &[u8] = b"net/token/v1\0";
/// Hash domain of a link.
const LINK_HASH_DOMAIN: &[u8] = b"net/token-link/v1\0";

/// One delegation step.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Link {
    issuer: PublicIdentity,
    subject: NodeId,
    scope: Vec<String>,
    expires_at_ms: u64,
    signature: [u8; 64],
}

/// Bounded scope deserializer (count only; item lengths checked after).
fn scope_de<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    bounded_vec(d, MAX_SCOPE)
}

/// A link as decoded (signature in two halves: serde arrays stop at 32).
#[derive(Deserialize)]
struct WireLink {
    issuer: [u8; 32],
    subject: [u8; 32],
    #[serde(deserialize_with = "scope_de")]
    scope: Vec<String>,
    expires_at_ms: u64,
    sig_lo: [u8; 32],
    sig_hi: [u8; 32],
}

/// Bounded link-list deserializer.
fn links_de<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<WireLink>, D::Error> {
    bounded_vec(d, MAX_LINKS)
}

/// The whole chain as decoded.
#[derive(Deserialize)]
struct WireChain(#[serde(deserialize_with = "links_de")] Vec<WireLink>);

/// The bytes of a link without its signature (see the module docs).
fn link_body(issuer: &PublicIdentity, subject: &NodeId, scope: &[String], exp: u64) -> Vec<u8> {
    let scope_len: usize = scope.iter().map(|s| s.len() + 2).sum();
    let mut out = Vec::with_capacity(64 + 2 + scope_len + 10);
    out.extend_from_slice(&issuer.to_bytes());
    out.extend_from_slice(&subject.0);
    write_varint(&mut out, scope.len());
    for item in scope {
        write_varint(&mut out, item.len());
        out.extend_from_slice(item.as_bytes());
    }
    write_varint_u64(&mut out, exp);
    out
}

/// Whether a scope is within the count and item-length limits.
fn scope_ok(scope: &[String]) -> bool {
    scope.len() <= MAX_SCOPE && scope.iter().all(|s| s.len() <= MAX_SCOPE_ITEM_LEN)
}

/// Whether every entry of `narrow` is in `wide`.
fn is_subset(narrow: &[String], wide: &[String]) -> bool {
    narrow.iter().all(|n| wide.contains(n))
}

impl Link {
    /// Signs a link chained to `prev_hash`.
    fn sign(
        issuer: &Identity,
        prev_hash: &[u8; 32],
        subject: NodeId,
        scope: Vec<String>,
        expires_at_ms: u64,
    ) -> Link {
        let public = issuer.public();
        let body = link_body(&public, &subject, &scope, expires_at_ms);
        let signature = issuer.sign(&[TOKEN_DOMAIN, prev_hash, &body].concat());
        Link {
            issuer: public,
            subject,
            scope,
            expires_at_ms,
            signature,
        }
    }

    fn body(&self) -> Vec<u8> {
        link_body(&self.issuer, &self.subject, &self.scope, self.expires_at_ms)
    }

    /// This link's hash, given its body bytes.
    fn hash(&self, body: &[u8]) -> [u8; 32] {
        blake2s(&[LINK_HASH_DOMAIN, body, &self.signature])
    }

    fn from_wire(w: WireLink) -> Result<Link, TokenError> {
        let issuer = PublicIdentity::from_bytes(&w.issuer).map_err(|_| TokenError::Malformed)?;
        if !scope_ok(&w.scope) {
            return Err(TokenError::Malformed);
        }
        let mut signature = [0u8; 64];
        signature[..32].copy_from_slice(&w.sig_lo);
        signature[32..].copy_from_slice(&w.sig_hi);
        Ok(Link {
            issuer,
            subject: NodeId(w.subject),
            scope: w.scope,
            expires_at_ms: w.expires_at_ms,
            signature,
        })
    }
}

/// A root-anchored delegation chain of 1 to [`MAX_LINKS`] links.
///
/// Building one ([`TokenChain::root`], [`TokenChain::delegate`]) proves
/// nothing to anyone: only [`TokenChain::verify`], against the verifier's
/// own roots and the presenting session's node id, does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenChain {
    /// The root link (a chain is never empty, by construction).
    first: Link,
    /// The delegations after it.
    rest: Vec<Link>,
}

impl TokenChain {
    /// A one-link chain: `root` grants `scope` to `subject` until
    /// `expires_at_ms`. Limits are not checked here (this cannot fail);
    /// an over-limit chain fails [`TokenChain::verify`] (`Malformed`).
    pub fn root(
        root: &Identity,
        subject: NodeId,
        scope: Vec<String>,
        expires_at_ms: u64,
    ) -> TokenChain {
        TokenChain {
            first: Link::sign(root, &[0; 32], subject, scope, expires_at_ms),
            rest: Vec::new(),
        }
    }

    /// Extends the chain: `holder` (who must be the current leaf subject,
    /// `NotHolder` otherwise) grants `scope` to `subject` until
    /// `expires_at_ms`. Refuses what verify would refuse: a scope not
    /// within the leaf's (`ScopeWidened`), a later expiry than the leaf's
    /// (`Expired`), more than [`MAX_LINKS`] links (`TooLong`), a scope over
    /// its limits (`Malformed`), an encoding over [`MAX_TOKEN`]
    /// (`Oversize`).
    pub fn delegate(
        &self,
        holder: &Identity,
        subject: NodeId,
        scope: Vec<String>,
        expires_at_ms: u64,
    ) -> Result<TokenChain, TokenError> {
        let leaf = self.leaf();
        if holder.node_id() != leaf.subject {
            return Err(TokenError::NotHolder);
        }
        if self.len() >= MAX_LINKS {
            return Err(TokenError::TooLong);
        }
        if !is_subset(&scope, &leaf.scope) {
            return Err(TokenError::ScopeWidened);
        }
        if expires_at_ms > leaf.expires_at_ms {
            return Err(TokenError::Expired);
        }
        if !scope_ok(&scope) {
            return Err(TokenError::Malformed);
        }
        let chain = self.delegate_unchecked(holder, subject, scope, expires_at_ms);
        if chain.encode().len() > MAX_TOKEN {
            return Err(TokenError::Oversize);
        }
        Ok(chain)
    }

    /// Appends a correctly signed link without the delegation rules, for
    /// tests and fuzzing to build chains that verify must refuse (anyone
    /// can sign such a link with their own key; this grants nothing).
    #[doc(hidden)]
    pub fn delegate_unchecked(
        &self,
        issuer: &Identity,
        subject: NodeId,
        scope: Vec<String>,
        expires_at_ms: u64,
    ) -> TokenChain {
        let leaf = self.leaf();
        let prev_hash = leaf.hash(&leaf.body());
        let mut chain = self.clone();
        let link = Link::sign(issuer, &prev_hash, subject, scope, expires_at_ms);
        chain.rest.push(link);
        chain
    }

    fn links(&self) -> impl Iterator<Item = &Link> {
        std::iter::once(&self.first).chain(self.rest.iter())
    }

    fn leaf(&self) -> &Link {
        self.rest.last().unwrap_or(&self.first)
    }

    /// Number of links (at least 1).
    pub fn len(&self) -> usize {
        1 + self.rest.len()
    }

    /// Always false: a chain has at least its root link.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The root link's issuer.
    pub fn root_issuer(&self) -> &PublicIdentity {
        &self.first.issuer
    }

    /// The leaf's subject: the only node that may present the chain.
    pub fn leaf_subject(&self) -> NodeId {
        self.leaf().subject
    }

    /// The leaf's scope.
    pub fn leaf_scope(&self) -> &[String] {
        &self.leaf().scope
    }

    /// When the leaf expires (Unix ms). A valid chain's expiries never
    /// increase down the chain, so this is when the whole chain expires.
    pub fn leaf_expires_at_ms(&self) -> u64 {
        self.leaf().expires_at_ms
    }

    /// The wire bytes (see the module docs).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        write_varint(&mut out, self.len());
        for link in self.links() {
            out.extend_from_slice(&link.body());
            out.extend_from_slice(&link.signature);
        }
        out
    }

    /// Parses wire bytes: at most [`MAX_TOKEN`] bytes (`Oversize`, before
    /// parsing), at most [`MAX_LINKS`] links (`TooLong`, from the count
    /// prefix alone), then exact decoding with valid issuer keys and scopes
    /// within limits (`Malformed`). Verifies nothing else.
    pub fn decode(bytes: &[u8]) -> Result<TokenChain, TokenError> {
        if bytes.len() > MAX_TOKEN {
            return Err(TokenError::Oversize);
        }
        let (count, _) =
            postcard::take_from_bytes::<u64>(bytes).map_err(|_| TokenError::Malformed)?;
        if count > MAX_LINKS as u64 {
            return Err(TokenError::TooLong);
        }
        let (WireChain(wire), rest) =
            postcard::take_from_bytes::<WireChain>(bytes).map_err(|_| TokenError::Malformed)?;
        if !rest.is_empty() {
            return Err(TokenError::Malformed);
        }
        let mut links = wire.into_iter().map(Link::from_wire);
        let first = links.next().ok_or(TokenError::Malformed)??;
        let rest = links.collect::<Result<Vec<Link>, TokenError>>()?;
        Ok(TokenChain { first, rest })
    }

    /// Verifies the chain for `presenter` (the presenting **session's**
    /// authenticated node id) needing scope item `required`, at `now_ms`.
    ///
    /// Checks, cheapest first: at most [`MAX_LINKS`] (`TooLong`) and scopes
    /// within limits (`Malformed`); the first issuer is one of `roots`
    /// (`WrongRoot`); each later link's issuer is the previous subject
    /// (`BrokenChain`), its scope a subset of the previous
    /// (`ScopeWidened`) and its expiry no later (`Expired`); every link
    /// unexpired at `now_ms` (`Expired`); the leaf subject is `presenter`
    /// (`NotBoundToPresenter`); `required` is in the leaf scope
    /// (`OutOfScope`); finally every signature, each over the previous
    /// link's hash (`BadSignature`).
    pub fn verify(
        &self,
        roots: &[PublicIdentity],
        presenter: &NodeId,
        required: &str,
        now_ms: u64,
    ) -> Result<(), TokenError> {
        if self.len() > MAX_LINKS {
            return Err(TokenError::TooLong);
        }
        if !roots.contains(&self.first.issuer) {
            return Err(TokenError::WrongRoot);
        }
        let mut prev: Option<&Link> = None;
        for link in self.links() {
            if !scope_ok(&link.scope) {
                return Err(TokenError::Malformed);
            }
            if let Some(p) = prev {
                if link.issuer.node_id() != p.subject {
                    return Err(TokenError::BrokenChain);
                }
                if !is_subset(&link.scope, &p.scope) {
                    return Err(TokenError::ScopeWidened);
                }
                if link.expires_at_ms > p.expires_at_ms {
                    return Err(TokenError::Expired);
                }
            }
            if link.expires_at_ms <= now_ms {
                return Err(TokenError::Expired);
            }
            prev = Some(link);
        }
        let leaf = self.leaf();
        if leaf.subject != *presenter {
            return Err(TokenError::NotBoundToPresenter);
        }
        if !leaf.scope.iter().any(|s| s == required) {
            return Err(TokenError::OutOfScope);
        }
        self.check_signatures()
    }

    /// Every link's signature over `domain || previous hash || body`.
    fn check_signatures(&self) -> Result<(), TokenError> {
        let mut prev_hash = [0u8; 32];
        for link in self.links() {
            let body = link.body();
            let msg = [TOKEN_DOMAIN, &prev_hash, &body].concat();
            link.issuer
                .verify(&msg, &link.signature)
                .map_err(|_| TokenError::BadSignature)?;
            prev_hash = link.hash(&body);
        }
        Ok(())
    }

    /// [`TokenChain::verify`], counting a refusal in `token_rejected`.
    pub fn verify_counted(
        &self,
        roots: &[PublicIdentity],
        presenter: &NodeId,
        required: &str,
        now_ms: u64,
        stats: &mut TrustStats,
    ) -> Result<(), TokenError> {
        self.verify(roots, presenter, required, now_ms)
            .inspect_err(|e| stats.count_token(e))
    }
}
