//! The signed envelope, generic over its body type: one implementation of
//! encoding, size bounds, the signer binding, freshness and signature
//! checks, shared by announcements and reservations.
//!
//! Wire form: the postcard encoding of `(signer: [u8; 32], body: bytes,
//! signature: [u8; 64])`, i.e. 32 key bytes, a varint length, the body
//! bytes (postcard of the body), 64 signature bytes. The signature is
//! Ed25519 over the transcript `B::DOMAIN || class (u64 BE) || body`.

use net_crypto::{verify_batch, Identity, NodeId, PublicIdentity};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::capability::{AnnouncementBody, ClassHash};
use crate::serde_util::{varint_len, write_varint};
use crate::{AnnounceError, TrustStats, BATCH_MIN, MAX_SKEW_MS, MAX_TTL_MS, VERSION};

/// Seals [`EnvelopeBody`]: only this crate's body types can be signed, so
/// every envelope obeys the rules enforced here.
pub(crate) mod sealed {
    /// The seal.
    pub trait Sealed {}
}

/// A body type that travels in a [`Signed`] envelope (sealed:
/// [`AnnouncementBody`] and [`crate::ReservationBody`]).
///
/// Contract: the first serialized field is the version byte (so an unknown
/// version is recognised before the rest is parsed).
pub trait EnvelopeBody: Serialize + DeserializeOwned + Clone + sealed::Sealed {
    /// Transcript domain separator, distinct per body type.
    const DOMAIN: &'static [u8];
    /// Largest encoded envelope of this type, in bytes.
    const MAX_WIRE: usize;
    /// Format version (must be [`VERSION`]).
    fn version(&self) -> u8;
    /// Class, bound into the transcript.
    fn class(&self) -> ClassHash;
    /// Whether the class is one this body type may carry.
    fn class_ok(&self) -> bool;
    /// The node the body speaks for; must be the signer's.
    fn node_id(&self) -> &NodeId;
    /// Issue time (Unix ms).
    fn issued_at_ms(&self) -> u64;
    /// Lifetime after `issued_at_ms`.
    fn ttl_ms(&self) -> u64;
    /// Per-field limits (vector lengths, string lengths, uniqueness).
    fn within_limits(&self) -> bool;
}

/// The bytes an envelope's signature covers: `domain || class.0 (u64 BE)
/// || body_bytes`. The domain keeps envelope signatures apart from every
/// other Ed25519 use of the same key; the class keeps classes apart.
pub(crate) fn transcript_for(domain: &[u8], class: ClassHash, body_bytes: &[u8]) -> Vec<u8> {
    let mut t = Vec::with_capacity(domain.len() + 8 + body_bytes.len());
    t.extend_from_slice(domain);
    t.extend_from_slice(&class.0.to_be_bytes());
    t.extend_from_slice(body_bytes);
    t
}

/// The announcement transcript: `b"net/announce/v1\0" || class.0 (u64 BE)
/// || body_bytes` (for other implementations and hand-built test vectors).
pub fn transcript(class: ClassHash, body_bytes: &[u8]) -> Vec<u8> {
    transcript_for(
        <AnnouncementBody as EnvelopeBody>::DOMAIN,
        class,
        body_bytes,
    )
}

/// A decoded or freshly signed envelope. **Not trusted**: the body is
/// deliberately not readable until [`Signed::verify`] has produced a
/// [`Verified`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signed<B> {
    signer: PublicIdentity,
    body: B,
    body_bytes: Vec<u8>,
    signature: [u8; 64],
}

/// A signed capability announcement.
pub type SignedAnnouncement = Signed<AnnouncementBody>;

/// What the envelope decodes from: the signature travels as two 32-byte
/// halves because serde implements arrays only up to 32 elements; postcard
/// encodes both forms identically (fixed arrays carry no length).
type WireIn<'a> = ([u8; 32], &'a [u8], [u8; 32], [u8; 32]);

/// Encoded envelope length for a body of `body_len` bytes.
fn envelope_len(body_len: usize) -> usize {
    32 + varint_len(body_len) + body_len + 64
}

impl<B: EnvelopeBody> Signed<B> {
    /// Signs `body` with `identity`.
    ///
    /// Refuses what every verifier would refuse regardless of time: a
    /// version other than [`VERSION`] (`UnknownVersion`), a class this body
    /// type may not carry (`WrongClass`), a `node_id` that is not
    /// `identity`'s (`NodeIdMismatch` — we never sign for another node), a
    /// TTL above [`MAX_TTL_MS`] (`TtlTooLong`), and a body over its field
    /// limits or an envelope over `B::MAX_WIRE` (`Oversize`).
    pub fn sign(identity: &Identity, body: &B) -> Result<Signed<B>, AnnounceError> {
        if body.version() != VERSION {
            return Err(AnnounceError::UnknownVersion(body.version()));
        }
        if !body.class_ok() {
            return Err(AnnounceError::WrongClass);
        }
        if *body.node_id() != identity.node_id() {
            return Err(AnnounceError::NodeIdMismatch);
        }
        if body.ttl_ms() > MAX_TTL_MS {
            return Err(AnnounceError::TtlTooLong);
        }
        if !body.within_limits() {
            return Err(AnnounceError::Oversize);
        }
        let body_bytes = postcard::to_allocvec(body).map_err(|_| AnnounceError::Malformed)?;
        if envelope_len(body_bytes.len()) > B::MAX_WIRE {
            return Err(AnnounceError::Oversize);
        }
        let signature = identity.sign(&transcript_for(B::DOMAIN, body.class(), &body_bytes));
        Ok(Signed {
            signer: identity.public(),
            body: body.clone(),
            body_bytes,
            signature,
        })
    }

    /// The wire bytes (see the module docs).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        out.extend_from_slice(&self.signer.to_bytes());
        write_varint(&mut out, self.body_bytes.len());
        out.extend_from_slice(&self.body_bytes);
        out.extend_from_slice(&self.signature);
        out
    }

    /// Length of [`Signed::encode`]'s output.
    pub fn encoded_len(&self) -> usize {
        envelope_len(self.body_bytes.len())
    }

    /// Parses wire bytes. Checks, in order: total size ≤ `B::MAX_WIRE`
    /// (`Oversize`, before any parsing), the envelope decodes exactly and
    /// canonically with nothing trailing, the signer key is a valid
    /// Ed25519 key (`Malformed`), the body's version byte
    /// (`UnknownVersion`), the body decodes exactly within its field
    /// limits (`Malformed`). Verifies nothing about the signature or the
    /// claims: use [`Signed::verify`].
    pub fn decode(bytes: &[u8]) -> Result<Signed<B>, AnnounceError> {
        if bytes.len() > B::MAX_WIRE {
            return Err(AnnounceError::Oversize);
        }
        let ((signer, body_bytes, s1, s2), rest) =
            postcard::take_from_bytes::<WireIn<'_>>(bytes).map_err(|_| AnnounceError::Malformed)?;
        if !rest.is_empty() || envelope_len(body_bytes.len()) != bytes.len() {
            return Err(AnnounceError::Malformed);
        }
        let signer = PublicIdentity::from_bytes(&signer).map_err(|_| AnnounceError::Malformed)?;
        match body_bytes.first() {
            None => return Err(AnnounceError::Malformed),
            Some(&v) if v != VERSION => return Err(AnnounceError::UnknownVersion(v)),
            Some(_) => {}
        }
        let (body, tail) =
            postcard::take_from_bytes::<B>(body_bytes).map_err(|_| AnnounceError::Malformed)?;
        if !tail.is_empty() || !body.within_limits() {
            return Err(AnnounceError::Malformed);
        }
        let mut signature = [0u8; 64];
        signature[..32].copy_from_slice(&s1);
        signature[32..].copy_from_slice(&s2);
        Ok(Signed {
            signer,
            body,
            body_bytes: body_bytes.to_vec(),
            signature,
        })
    }

    /// The public identity that signed (claims to have signed) this.
    pub fn signer(&self) -> &PublicIdentity {
        &self.signer
    }

    /// The bytes the signature covers.
    pub fn transcript(&self) -> Vec<u8> {
        transcript_for(B::DOMAIN, self.body.class(), &self.body_bytes)
    }

    /// Every check but the signature, cheapest first, so hostile envelopes
    /// are refused before any curve arithmetic: version, class, **the
    /// signer binding** (`body.node_id == signer.node_id()`), TTL bound,
    /// not from the future (beyond [`MAX_SKEW_MS`]), not expired.
    fn check_claims(&self, now_ms: u64) -> Result<(), AnnounceError> {
        let b = &self.body;
        if b.version() != VERSION {
            return Err(AnnounceError::UnknownVersion(b.version()));
        }
        if !b.class_ok() {
            return Err(AnnounceError::WrongClass);
        }
        if *b.node_id() != self.signer.node_id() {
            return Err(AnnounceError::NodeIdMismatch);
        }
        if b.ttl_ms() > MAX_TTL_MS {
            return Err(AnnounceError::TtlTooLong);
        }
        if b.issued_at_ms() > now_ms.saturating_add(MAX_SKEW_MS) {
            return Err(AnnounceError::FromTheFuture);
        }
        if b.issued_at_ms().saturating_add(b.ttl_ms()) <= now_ms {
            return Err(AnnounceError::Expired);
        }
        Ok(())
    }

    /// Strict Ed25519 verification of the signature over the transcript.
    fn check_signature(&self) -> Result<(), AnnounceError> {
        self.signer
            .verify(&self.transcript(), &self.signature)
            .map_err(|_| AnnounceError::BadSignature)
    }

    /// Verifies the envelope at `now_ms`: `UnknownVersion`, `WrongClass`,
    /// `NodeIdMismatch` (the body's `node_id` is not the signer's),
    /// `TtlTooLong`, `FromTheFuture`, `Expired`, then `BadSignature`.
    /// Only on success does the body become readable, as a [`Verified`].
    pub fn verify(&self, now_ms: u64) -> Result<Verified<B>, AnnounceError> {
        self.check_claims(now_ms)?;
        self.check_signature()?;
        Ok(Verified {
            body: self.body.clone(),
            signer: self.signer,
        })
    }

    /// [`Signed::verify`], consuming the envelope (no body clone).
    pub fn into_verified(self, now_ms: u64) -> Result<Verified<B>, AnnounceError> {
        self.check_claims(now_ms)?;
        self.check_signature()?;
        Ok(Verified {
            body: self.body,
            signer: self.signer,
        })
    }

    /// Decodes and verifies, counting exactly one outcome in `stats`.
    pub fn decode_and_verify(
        bytes: &[u8],
        now_ms: u64,
        stats: &mut TrustStats,
    ) -> Result<Verified<B>, AnnounceError> {
        let r = Signed::<B>::decode(bytes).and_then(|s| s.into_verified(now_ms));
        stats.record(&r);
        r
    }
}

/// Decodes and verifies an announcement, counting exactly one outcome in
/// `stats` (`verified` or the error's counter). See [`Signed::decode`] and
/// [`Signed::verify`] for the checks.
pub fn decode_and_verify(
    bytes: &[u8],
    now_ms: u64,
    stats: &mut TrustStats,
) -> Result<Verified, AnnounceError> {
    SignedAnnouncement::decode_and_verify(bytes, now_ms, stats)
}

/// An envelope that passed every check of [`Signed::verify`] at some
/// `now_ms`. Only `verify` (and [`verify_many`]) can build one, so a fold
/// taking a `Verified` cannot be fed unverified state.
///
/// Invariant: `body().node_id() == signer()`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified<B = AnnouncementBody> {
    body: B,
    signer: PublicIdentity,
}

impl<B> Verified<B> {
    /// The verified body.
    pub fn body(&self) -> &B {
        &self.body
    }

    /// The verified signer's node id — the only id state may be keyed by.
    pub fn signer(&self) -> NodeId {
        self.signer.node_id()
    }

    /// The verified signer's public identity.
    pub fn signer_identity(&self) -> &PublicIdentity {
        &self.signer
    }

    /// The body, by value.
    pub fn into_body(self) -> B {
        self.body
    }
}

/// Verifies many envelopes at `now_ms`, with the same checks and outcomes
/// as [`Signed::verify`], counting one outcome each in `stats`.
///
/// The cheap checks run first; when at least [`BATCH_MIN`] envelopes remain
/// their signatures are checked together with [`verify_batch`] (counted in
/// `batch_verifies`). If the batch fails, each is re-checked alone
/// (counted in `batch_fallbacks`), so only the bad ones are refused.
///
/// One difference from single verification, inherited from batch
/// verification: it is cofactorless and accepts a small-order `R`, so the
/// holder of a key can craft a signature of its own that passes here but
/// not in [`Signed::verify`]. Nobody can forge for someone else's key, so
/// this never admits a body its signer did not sign.
pub fn verify_many<B: EnvelopeBody>(
    items: &[Signed<B>],
    now_ms: u64,
    stats: &mut TrustStats,
) -> Vec<Result<Verified<B>, AnnounceError>> {
    let mut checks: Vec<Result<(), AnnounceError>> =
        items.iter().map(|s| s.check_claims(now_ms)).collect();
    let pending: Vec<usize> = (0..items.len()).filter(|&i| checks[i].is_ok()).collect();
    let batch_ok = pending.len() >= BATCH_MIN && {
        stats.batch_verifies += 1;
        let transcripts: Vec<Vec<u8>> = pending.iter().map(|&i| items[i].transcript()).collect();
        let msgs: Vec<&[u8]> = transcripts.iter().map(Vec::as_slice).collect();
        let sigs: Vec<[u8; 64]> = pending.iter().map(|&i| items[i].signature).collect();
        let keys: Vec<PublicIdentity> = pending.iter().map(|&i| items[i].signer).collect();
        let ok = verify_batch(&msgs, &sigs, &keys).is_ok();
        stats.batch_fallbacks += u64::from(!ok);
        ok
    };
    if !batch_ok {
        for &i in &pending {
            checks[i] = items[i].check_signature();
        }
    }
    items
        .iter()
        .zip(checks)
        .map(|(s, c)| {
            let r = c.map(|()| Verified {
                body: s.body.clone(),
                signer: s.signer,
            });
            stats.record(&r);
            r
        })
        .collect()
}
