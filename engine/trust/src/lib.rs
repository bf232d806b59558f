//! The trust layer of Net (DESIGN §5): signed capability announcements,
//! the capability and reservation folds, the callee gate, re-announce
//! policy, root-anchored token chains and bounded origin-keyed caches.
//!
//! Sans-IO: nothing here reads a clock, opens a socket or spawns a thread.
//! Time is always a parameter, `now_ms: u64`, in Unix milliseconds.
//!
//! # The invariants this crate enforces by construction
//!
//! * **State is keyed by the verified signer, never by a claimed id.** The
//!   folds only accept a [`Verified`] value, which only
//!   [`Signed::verify`] can build, and `verify` refuses any envelope whose
//!   `node_id` is not the signer's ([`AnnounceError::NodeIdMismatch`]).
//!   The fold then keys the entry by [`Verified::signer`], not by the body.
//!   This closes the reference system's critical bypass (a peer signing an
//!   announcement under a victim's node id) twice over.
//! * **The callee gate reads only this node's own, locally set entry**
//!   ([`CapabilityFold::set_local`]), never one that arrived from the
//!   network, and takes the caller's id from the authenticated session.
//! * **Our own entry does not silently expire**: [`AnnouncePolicy`] sizes
//!   the stamped TTL to twice the cadence peers actually see refreshes at,
//!   and [`AnnounceThrottle`] drives the periodic re-announce.
//! * **Hostile bytes cost bounded memory and produce a typed error and a
//!   counter** ([`TrustStats`]), never a panic: every decoder checks the
//!   total size first and refuses over-long vectors before allocating them.
//! * **Bearer secrets compare in constant time** ([`GroupId`],
//!   [`SubnetId`], [`ct_contains`]).
//!
//! See `docs/SECURITY.md` for the threat model and the test pinning each
//! check.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod cache;
mod capability;
mod envelope;
mod error;
mod fold;
// Fuzz target bodies: compiled for tests and for the fuzz crate (feature
// `fuzzing`), never into a normal build.
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
mod gate;
mod policy;
mod reservation;
mod secret;
mod serde_util;
mod snapshot;
mod stats;
mod token;

pub use cache::{OriginCache, DEFAULT_ORIGIN_CACHE_CAPACITY};
pub use capability::{
    AnnouncementBody, Capability, ClassHash, NRPC_SERVE_SCOPE_PREFIX, NRPC_TAG_PREFIX,
};
pub use envelope::{
    decode_and_verify, transcript, verify_many, EnvelopeBody, Signed, SignedAnnouncement, Verified,
};
pub use error::{AnnounceError, ReservationError, SnapshotError, TokenError};
pub use fold::{
    entry_bytes, CapabilityFold, FoldLimits, CAPABILITY_OVERHEAD, DEFAULT_FOLD_BYTES,
    DEFAULT_NODE_BYTES, DEFAULT_SETTLE_MS, ENTRY_OVERHEAD, NODE_OVERHEAD,
};
pub use gate::{gate, gate_with, Peer};
pub use policy::{AnnouncePolicy, AnnounceThrottle};
pub use reservation::{
    decode_and_verify_reservation, ReservationBody, ReservationFold, ReservationOp,
    ReservationOutcome, SignedReservation, MAX_RESOURCE_LEN,
};
pub use secret::{ct_contains, GroupId, SubnetId};
pub use snapshot::SnapshotKey;
pub use stats::TrustStats;
pub use token::{TokenChain, MAX_LINKS, MAX_SCOPE, MAX_SCOPE_ITEM_LEN, MAX_TOKEN};

/// Version byte every body type of this crate carries first; anything else
/// is [`AnnounceError::UnknownVersion`].
pub const VERSION: u8 = 1;

/// Largest encoded [`SignedAnnouncement`] accepted or produced (8 KiB).
/// Checked before any decoding, so it bounds the work and memory a single
/// hostile envelope can cost.
pub const MAX_ANNOUNCEMENT: usize = 8 * 1024;

/// Largest encoded [`SignedReservation`] (a reservation body is small).
pub const MAX_RESERVATION: usize = 512;

/// How far in the future an envelope's `issued_at_ms` may lie (60 s of
/// clock skew); beyond it the envelope is [`AnnounceError::FromTheFuture`].
pub const MAX_SKEW_MS: u64 = 60_000;

/// Longest TTL an envelope may carry (1 h); beyond it the envelope is
/// [`AnnounceError::TtlTooLong`]. Bounds how long a signed message, once
/// seen, can be replayed into a fold.
pub const MAX_TTL_MS: u64 = 3_600_000;

/// Most capabilities one announcement may carry.
pub const MAX_CAPABILITIES: usize = 64;

/// Most entries in each allow-list (nodes, groups, subnets) of one
/// capability. The 8 KiB envelope bound usually binds first.
pub const MAX_ALLOW_LIST: usize = 256;

/// Longest capability tag, in bytes.
pub const MAX_TAG_LEN: usize = 128;

/// Fewest pending signatures for which [`verify_many`] uses batch
/// verification; below it, single verification is as fast.
pub const BATCH_MIN: usize = 8;
