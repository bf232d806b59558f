//! Counters for every trust decision.

use crate::{AnnounceError, ReservationError, TokenError};

/// Counters for every outcome of the trust layer. Plain integers (the
/// engine owns one per core and sums them for reporting).
///
/// Counting rules: [`crate::decode_and_verify`] and [`crate::verify_many`]
/// count exactly one outcome per envelope (`verified` or one error
/// counter); [`TrustStats::count`] maps any [`AnnounceError`] (including
/// the fold's) to its counter; reservation and token rejections count in
/// `reservation_rejected` / `token_rejected` in addition to any envelope
/// counter.
#[derive(Default, Clone, Debug, PartialEq, Eq)]
pub struct TrustStats {
    /// Envelopes that passed every check.
    pub verified: u64,
    /// [`AnnounceError::Malformed`].
    pub malformed: u64,
    /// [`AnnounceError::Oversize`].
    pub oversize: u64,
    /// [`AnnounceError::UnknownVersion`].
    pub unknown_version: u64,
    /// [`AnnounceError::NodeIdMismatch`]: forgery attempts.
    pub node_id_mismatch: u64,
    /// [`AnnounceError::BadSignature`].
    pub bad_signature: u64,
    /// [`AnnounceError::Expired`].
    pub expired: u64,
    /// [`AnnounceError::FromTheFuture`].
    pub future: u64,
    /// [`AnnounceError::TtlTooLong`].
    pub ttl_too_long: u64,
    /// [`AnnounceError::Stale`].
    pub stale: u64,
    /// Batch verifications attempted by [`crate::verify_many`].
    pub batch_verifies: u64,
    /// Calls the callee gate denied.
    pub gate_denied: u64,
    /// Calls the callee gate allowed.
    pub gate_allowed: u64,
    /// Reservation messages refused (envelope or fold).
    pub reservation_rejected: u64,
    /// Token chains refused.
    pub token_rejected: u64,
    /// [`AnnounceError::WrongClass`].
    pub wrong_class: u64,
    /// [`AnnounceError::OwnEntry`].
    pub own_entry: u64,
    /// [`AnnounceError::FoldFull`].
    pub fold_full: u64,
    /// Batches that failed and fell back to single verification.
    pub batch_fallbacks: u64,
    /// [`AnnounceError::OverQuota`].
    pub over_quota: u64,
    /// Remote fold entries evicted to make room for another node's
    /// ([`crate::CapabilityFold::apply_counted`]); not an envelope error.
    pub fold_evicted: u64,
    /// Serve grants (verified `nrpc-serve:` token scopes peers presented)
    /// forgotten to make room for another node's, at the engine's bound.
    pub provider_grants_evicted: u64,
    /// Calls routed by service name that went nowhere because no node
    /// advertising the service was trusted to serve it (the discovery
    /// trust rule); nothing was sent.
    pub no_trusted_provider: u64,
}

impl TrustStats {
    /// Counts one refused envelope under its error's counter.
    pub fn count(&mut self, e: &AnnounceError) {
        let c = match e {
            AnnounceError::Malformed => &mut self.malformed,
            AnnounceError::Oversize => &mut self.oversize,
            AnnounceError::UnknownVersion(_) => &mut self.unknown_version,
            AnnounceError::NodeIdMismatch => &mut self.node_id_mismatch,
            AnnounceError::BadSignature => &mut self.bad_signature,
            AnnounceError::Expired => &mut self.expired,
            AnnounceError::FromTheFuture => &mut self.future,
            AnnounceError::TtlTooLong => &mut self.ttl_too_long,
            AnnounceError::Stale => &mut self.stale,
            AnnounceError::WrongClass => &mut self.wrong_class,
            AnnounceError::OwnEntry => &mut self.own_entry,
            AnnounceError::FoldFull => &mut self.fold_full,
            AnnounceError::OverQuota => &mut self.over_quota,
        };
        *c += 1;
    }

    /// Counts one verification outcome: `verified` or the error's counter.
    pub fn record<T>(&mut self, r: &Result<T, AnnounceError>) {
        match r {
            Ok(_) => self.verified += 1,
            Err(e) => self.count(e),
        }
    }

    /// Counts a refused reservation message in `reservation_rejected`.
    /// Envelope counters are not touched: the decoder
    /// ([`crate::decode_and_verify_reservation`]) already counted those.
    pub fn count_reservation(&mut self, _e: &ReservationError) {
        self.reservation_rejected += 1;
    }

    /// Counts a refused token chain.
    pub fn count_token(&mut self, _e: &TokenError) {
        self.token_rejected += 1;
    }

    /// Total refused envelopes across the per-error counters (excluding
    /// gate, reservation and token counters).
    pub fn envelope_errors(&self) -> u64 {
        self.malformed
            + self.oversize
            + self.unknown_version
            + self.node_id_mismatch
            + self.bad_signature
            + self.expired
            + self.future
            + self.ttl_too_long
            + self.stale
            + self.wrong_class
            + self.own_entry
            + self.fold_full
            + self.over_quota
    }
}
