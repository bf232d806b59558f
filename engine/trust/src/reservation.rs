//! The reservation fold: named resources leased by nodes, driven by signed
//! messages that obey the same envelope and signer binding as
//! announcements (one generic [`Signed`] implementation serves both).

use std::collections::HashMap;

use net_crypto::NodeId;
use serde::{Deserialize, Serialize};

use crate::capability::ClassHash;
use crate::envelope::{sealed, EnvelopeBody, Signed, Verified};
use crate::{
    serde_util, AnnounceError, ReservationError, TrustStats, MAX_RESERVATION, MAX_SKEW_MS,
    MAX_TTL_MS,
};

/// Longest resource name, in bytes.
pub const MAX_RESOURCE_LEN: usize = 128;

/// What a reservation message asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReservationOp {
    /// Take (or renew) a lease on the resource until `issued_at_ms +
    /// ttl_ms`.
    Acquire,
    /// Give the lease back (only its holder can).
    Release,
}

/// The signed content of a reservation message.
///
/// Same envelope rules as [`crate::AnnouncementBody`]: `node_id` must be
/// the signer's, `ttl_ms <= MAX_TTL_MS`, not from the future, not expired.
/// For `Acquire`, `ttl_ms` is the lease length; for `Release` it is how
/// long the message stays valid. `seq` must increase across all of a
/// node's reservation messages (derive it from the issue time).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReservationBody {
    /// Format version; [`crate::VERSION`].
    pub version: u8,
    /// The node the message speaks for; must be the signer's node id.
    #[serde(with = "serde_util::node_id")]
    pub node_id: NodeId,
    /// Sequence number; the fold applies only a newer one per node.
    pub seq: u64,
    /// When it was issued (Unix ms).
    pub issued_at_ms: u64,
    /// Lease length (`Acquire`) or message validity (`Release`).
    pub ttl_ms: u64,
    /// The resource's name; 1 to [`MAX_RESOURCE_LEN`] bytes.
    pub resource: String,
    /// Acquire or release.
    pub op: ReservationOp,
}

impl ReservationBody {
    /// A version-1 reservation message.
    pub fn new(
        node_id: NodeId,
        seq: u64,
        issued_at_ms: u64,
        ttl_ms: u64,
        resource: impl Into<String>,
        op: ReservationOp,
    ) -> ReservationBody {
        ReservationBody {
            version: crate::VERSION,
            node_id,
            seq,
            issued_at_ms,
            ttl_ms,
            resource: resource.into(),
            op,
        }
    }
}

impl sealed::Sealed for ReservationBody {}

impl EnvelopeBody for ReservationBody {
    const DOMAIN: &'static [u8] = b"net/reserve/v1\0";
    const MAX_WIRE: usize = MAX_RESERVATION;

    fn version(&self) -> u8 {
        self.version
    }
    fn class(&self) -> ClassHash {
        ClassHash::RESERVATIONS
    }
    fn class_ok(&self) -> bool {
        true
    }
    fn node_id(&self) -> &NodeId {
        &self.node_id
    }
    fn issued_at_ms(&self) -> u64 {
        self.issued_at_ms
    }
    fn ttl_ms(&self) -> u64 {
        self.ttl_ms
    }
    fn within_limits(&self) -> bool {
        !self.resource.is_empty() && self.resource.len() <= MAX_RESOURCE_LEN
    }
}

/// A signed reservation message.
pub type SignedReservation = Signed<ReservationBody>;

/// Decodes and verifies a reservation message, counting the envelope
/// outcome in `stats` (and `reservation_rejected` on failure). A message
/// whose `node_id` is not the signer's is `NodeIdMismatch`.
pub fn decode_and_verify_reservation(
    bytes: &[u8],
    now_ms: u64,
    stats: &mut TrustStats,
) -> Result<Verified<ReservationBody>, AnnounceError> {
    let r = SignedReservation::decode_and_verify(bytes, now_ms, stats);
    stats.reservation_rejected += u64::from(r.is_err());
    r
}

/// What an applied reservation message did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReservationOutcome {
    /// The signer now holds the resource.
    Acquired,
    /// The signer already held it; the lease was extended.
    Renewed,
    /// The signer's lease was removed.
    Released,
    /// Release of a resource nobody holds (idempotent).
    NotHeld,
}

/// A lease on a resource.
#[derive(Clone, Debug)]
struct Lease {
    holder: NodeId,
    expires_at_ms: u64,
}

/// A node's replay high-water mark.
#[derive(Clone, Debug)]
struct SeqMark {
    seq: u64,
    /// After this, every message with a seq at or below `seq` (issued no
    /// later than the one that set it) has expired, so the mark is moot.
    forget_at_ms: u64,
}

/// Leases on named resources, each held by at most one node.
///
/// Invariants: a lease is created, renewed or released only by a
/// [`Verified`] message, for the **verified signer** (a message forged for
/// another node id never gets here: `NodeIdMismatch`); acquiring a
/// resource another node holds unexpired is `Conflict`; releasing another
/// node's lease is `NotHolder`; per node, only a strictly newer `seq`
/// applies (`Stale`), so a replayed acquire cannot resurrect a released
/// lease; at most `max_resources` leases and `max_nodes` replay marks
/// (`Full` beyond, after expiry).
#[derive(Clone, Debug)]
pub struct ReservationFold {
    leases: HashMap<String, Lease>,
    marks: HashMap<NodeId, SeqMark>,
    max_resources: usize,
    max_nodes: usize,
}

impl ReservationFold {
    /// An empty fold bounded to `max_resources` leases and `max_nodes`
    /// distinct signers.
    pub fn new(max_resources: usize, max_nodes: usize) -> ReservationFold {
        ReservationFold {
            leases: HashMap::new(),
            marks: HashMap::new(),
            max_resources,
            max_nodes,
        }
    }

    /// Applies a verified reservation message at `now_ms`.
    pub fn apply(
        &mut self,
        v: Verified<ReservationBody>,
        now_ms: u64,
    ) -> Result<ReservationOutcome, ReservationError> {
        let signer = v.signer();
        let body = v.into_body();
        if body.issued_at_ms.saturating_add(body.ttl_ms) <= now_ms {
            return Err(AnnounceError::Expired.into());
        }
        match self.marks.get(&signer) {
            Some(mark) if body.seq <= mark.seq => return Err(ReservationError::Stale),
            Some(_) => {}
            None => self.make_room(now_ms, |f| f.marks.len() < f.max_nodes)?,
        }
        let outcome = match body.op {
            ReservationOp::Acquire => self.acquire(&signer, &body, now_ms)?,
            ReservationOp::Release => self.release(&signer, &body.resource, now_ms)?,
        };
        let forget_at_ms = body
            .issued_at_ms
            .saturating_add(MAX_TTL_MS)
            .saturating_add(MAX_SKEW_MS);
        self.marks.insert(
            signer,
            SeqMark {
                seq: body.seq,
                forget_at_ms,
            },
        );
        Ok(outcome)
    }

    /// Decodes, verifies and applies wire bytes, counting every outcome.
    pub fn handle_message(
        &mut self,
        bytes: &[u8],
        now_ms: u64,
        stats: &mut TrustStats,
    ) -> Result<ReservationOutcome, ReservationError> {
        let v = decode_and_verify_reservation(bytes, now_ms, stats)?;
        self.apply(v, now_ms)
            .inspect_err(|e| stats.count_reservation(e))
    }

    /// If `has_room` is false, expires what it can; `Full` if still false.
    fn make_room(
        &mut self,
        now_ms: u64,
        has_room: impl Fn(&ReservationFold) -> bool,
    ) -> Result<(), ReservationError> {
        if !has_room(self) {
            self.expire(now_ms);
            if !has_room(self) {
                return Err(ReservationError::Full);
            }
        }
        Ok(())
    }

    fn acquire(
        &mut self,
        signer: &NodeId,
        body: &ReservationBody,
        now_ms: u64,
    ) -> Result<ReservationOutcome, ReservationError> {
        let expires_at_ms = body.issued_at_ms.saturating_add(body.ttl_ms);
        let renewed = match self.leases.get(&body.resource) {
            Some(l) if l.holder != *signer && l.expires_at_ms > now_ms => {
                return Err(ReservationError::Conflict { holder: l.holder });
            }
            Some(l) => l.holder == *signer && l.expires_at_ms > now_ms,
            None => {
                self.make_room(now_ms, |f| f.leases.len() < f.max_resources)?;
                false
            }
        };
        self.leases.insert(
            body.resource.clone(),
            Lease {
                holder: *signer,
                expires_at_ms,
            },
        );
        Ok(if renewed {
            ReservationOutcome::Renewed
        } else {
            ReservationOutcome::Acquired
        })
    }

    fn release(
        &mut self,
        signer: &NodeId,
        resource: &str,
        now_ms: u64,
    ) -> Result<ReservationOutcome, ReservationError> {
        match self.leases.get(resource) {
            None => Ok(ReservationOutcome::NotHeld),
            Some(l) if l.holder == *signer => {
                self.leases.remove(resource);
                Ok(ReservationOutcome::Released)
            }
            Some(l) if l.expires_at_ms <= now_ms => Ok(ReservationOutcome::NotHeld),
            Some(_) => Err(ReservationError::NotHolder),
        }
    }

    /// The unexpired holder of `resource`.
    pub fn holder(&self, resource: &str, now_ms: u64) -> Option<NodeId> {
        self.leases
            .get(resource)
            .filter(|l| l.expires_at_ms > now_ms)
            .map(|l| l.holder)
    }

    /// Removes leases expired at `now_ms` (and replay marks that can no
    /// longer matter); returns how many leases.
    pub fn expire(&mut self, now_ms: u64) -> usize {
        let before = self.leases.len();
        self.leases.retain(|_, l| l.expires_at_ms > now_ms);
        self.marks.retain(|_, m| m.forget_at_ms > now_ms);
        before - self.leases.len()
    }

    /// Number of leases (expired ones until [`ReservationFold::expire`]).
    pub fn len(&self) -> usize {
        self.leases.len()
    }

    /// Whether there are no leases.
    pub fn is_empty(&self) -> bool {
        self.leases.is_empty()
    }
}
