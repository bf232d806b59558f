//! Capability announcements and the callee gate, per core.
//!
//! Each core keeps its own copy of this node's capability entry (set
//! locally, never from the network) so the gate runs on every inbound
//! request without a lock, and each core announces the node's capabilities
//! to its own sessions: on every session open, on every change (rate
//! limited, never dropped) and every re-announce interval. The re-announce
//! timer is part of the event loop, so it runs for as long as the node runs
//! — whichever way it was started — and stops with it: there is no
//! separate thread that could outlive the node or be forgotten.
//!
//! Announcements from peers are verified (signature, expiry, and the signer
//! binding: the body's node id must be the signer's) and accepted only
//! first-hand — the signer must be the session's authenticated peer — then
//! applied to the node-wide fold used for discovery. Token chains peers
//! present are verified here too; what they grant for serving is kept
//! node-wide ([`providers`]), for the discovery trust rule.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use net_crypto::{Identity, NodeId};
use net_proto::ServiceId;
use net_trust::{
    decode_and_verify_reservation, verify_many, AnnounceError, AnnouncePolicy, AnnounceThrottle,
    AnnouncementBody, Capability, CapabilityFold, ClassHash, FoldLimits, ReservationError,
    ReservationFold, SignedAnnouncement, TrustStats,
};

use crate::MeshNodeConfig;

mod providers;

pub(crate) use providers::{NoProvider, Providers, Route};
use providers::{ProviderGrants, ProviderTurns, ServeGrant};

/// ANNOUNCE payload kinds (first byte; the rest is a signed envelope).
pub(crate) const KIND_CAPABILITIES: u8 = 1;
/// See [`KIND_CAPABILITIES`].
pub(crate) const KIND_RESERVATION: u8 = 2;
/// See [`KIND_CAPABILITIES`]: a token chain the sender presents.
pub(crate) const KIND_TOKEN: u8 = 3;

/// The node-wide fold of peers' announcements (discovery): bounded by
/// `cfg`'s fold limits (bytes, per-node quota, newcomer reserve), with the
/// configured peers ([`MeshNodeConfig::with_peer`]) protected, so a flood
/// of freshly minted identities can neither grow it past its bound nor
/// make a configured peer undiscoverable.
pub(crate) fn discovery_fold(cfg: &MeshNodeConfig) -> CapabilityFold {
    let mut fold = CapabilityFold::new(cfg.fold_limits);
    fold.set_protected(cfg.peers.iter().map(|p| p.identity.node_id()));
    fold
}

/// The node-wide folds of peers' announcements (discovery) and
/// reservations, the serve grants of verified token chains and the
/// round-robin positions of calls routed by service name. Locked only when
/// such a message arrives or a query or a call by service name runs.
pub(crate) struct SharedTrust {
    pub fold: CapabilityFold,
    pub reservations: ReservationFold,
    pub stats: TrustStats,
    /// Who may serve what for us, from verified chains (bounded).
    pub grants: ProviderGrants,
    /// Per-service provider turns (bounded).
    pub turns: ProviderTurns,
}

/// A served service as announced: its name and optional allow-list.
#[derive(Clone, Debug)]
pub(crate) struct Advert {
    pub name: String,
    pub allowed: Vec<NodeId>,
    pub require_token: bool,
}

/// A token chain a session's peer presented, verified on receipt against
/// the roots and that peer: what the gate needs is its scope and expiry.
struct Presented {
    scope: Vec<String>,
    expires_at_ms: u64,
}

/// One core's trust state.
pub(crate) struct CoreTrust {
    identity: Identity,
    node: NodeId,
    policy: AnnouncePolicy,
    throttle: AnnounceThrottle,
    adverts: HashMap<ServiceId, Advert>,
    /// Only this node's own entry: what the gate reads.
    local: CapabilityFold,
    /// The latest signed announcement, sent to each new session.
    current: Option<Vec<u8>>,
    pub stats: TrustStats,
    shared: Arc<Mutex<SharedTrust>>,
    base: (Instant, u64),
    roots: Vec<net_crypto::PublicIdentity>,
    /// Our own chain, framed, sent on every session.
    own_token: Option<Vec<u8>>,
    /// Verified chains by session (bounded by the session count; dropped
    /// when the session closes).
    tokens: HashMap<net_proto::SessionId, Presented>,
    /// Capability announcements received this loop iteration, verified together.
    pending: Vec<SignedAnnouncement>,
}

impl CoreTrust {
    pub fn new(
        identity: Identity,
        policy: AnnouncePolicy,
        shared: Arc<Mutex<SharedTrust>>,
        now: Instant,
        wall_ms: u64,
    ) -> Self {
        CoreTrust {
            node: identity.node_id(),
            identity,
            policy,
            throttle: AnnounceThrottle::new(policy),
            adverts: HashMap::new(),
            local: CapabilityFold::new(FoldLimits::default()),
            current: None,
            stats: TrustStats::default(),
            shared,
            base: (now, wall_ms),
            roots: Vec::new(),
            own_token: None,
            tokens: HashMap::new(),
            pending: Vec::new(),
        }
    }

    /// Token roots we accept and the chain we present.
    pub fn set_tokens(
        &mut self,
        roots: Vec<net_crypto::PublicIdentity>,
        own: Option<&net_trust::TokenChain>,
    ) {
        self.roots = roots;
        self.own_token = own.map(|t| {
            let mut b = vec![KIND_TOKEN];
            b.extend_from_slice(&t.encode());
            b
        });
    }

    /// Our framed token chain, to send on a new session.
    pub fn own_token(&self) -> Option<&[u8]> {
        self.own_token.as_deref()
    }

    /// A session closed: forget its token.
    pub fn session_closed(&mut self, session: net_proto::SessionId) {
        self.tokens.remove(&session);
    }

    /// Wall-clock milliseconds at `now` (announcement times are wall time).
    pub fn now_ms(&self, now: Instant) -> u64 {
        self.base.1 + now.saturating_duration_since(self.base.0).as_millis() as u64
    }

    /// The served set changed: refresh the local entry now, announce soon.
    pub fn set_advert(&mut self, service: ServiceId, advert: Option<Advert>, now: Instant) {
        match advert {
            Some(a) => self.adverts.insert(service, a),
            None => self.adverts.remove(&service),
        };
        let now_ms = self.now_ms(now);
        self.refresh_local(now_ms);
        self.throttle.request(now_ms);
    }

    fn body(&self, now_ms: u64) -> AnnouncementBody {
        let mut capabilities: Vec<Capability> = self
            .adverts
            .values()
            .map(|a| Capability {
                tag: format!("{}{}", net_trust::NRPC_TAG_PREFIX, a.name),
                allowed_nodes: a.allowed.clone(),
                allowed_groups: Vec::new(),
                allowed_subnets: Vec::new(),
            })
            .collect();
        capabilities.sort_by(|a, b| a.tag.cmp(&b.tag));
        AnnouncementBody {
            version: net_trust::VERSION,
            class: ClassHash::CAPABILITIES,
            node_id: self.node,
            // Time-based: strictly increasing across re-signs, cores and restarts.
            seq: now_ms,
            issued_at_ms: now_ms,
            ttl_ms: self.policy.ttl_ms(),
            capabilities,
        }
    }

    fn refresh_local(&mut self, now_ms: u64) {
        self.local.set_local(self.body(now_ms), now_ms);
    }

    /// If an announcement is due (a change, or the re-announce interval),
    /// signs it, refreshes the local entry and returns the bytes to send to
    /// every session of this core.
    pub fn poll(&mut self, now: Instant) -> Option<Vec<u8>> {
        let now_ms = self.now_ms(now);
        if !self.throttle.poll(now_ms) {
            return None;
        }
        let body = self.body(now_ms);
        self.local.set_local(body.clone(), now_ms);
        match SignedAnnouncement::sign(&self.identity, &body) {
            Ok(s) => {
                let mut bytes = vec![KIND_CAPABILITIES];
                bytes.extend_from_slice(&s.encode());
                self.current = Some(bytes.clone());
                Some(bytes)
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not sign capability announcement");
                None
            }
        }
    }

    /// When [`poll`](Self::poll) next has work.
    pub fn next_wake(&self) -> Option<Instant> {
        let due = self.throttle.next_due()?;
        let ms = due.saturating_sub(self.base.1);
        Some(self.base.0 + Duration::from_millis(ms))
    }

    /// The announcement to send on a new session.
    pub fn current(&self) -> Option<&[u8]> {
        self.current.as_deref()
    }

    /// The callee gate: may `peer` (the session's authenticated node id)
    /// call `service` here on `session`? Unknown services are left to the
    /// endpoint (NotFound).
    pub fn allows(
        &mut self,
        service: ServiceId,
        peer: &NodeId,
        session: net_proto::SessionId,
        now: Instant,
    ) -> bool {
        let now_ms = self.now_ms(now);
        let Some(advert) = self.adverts.get(&service) else {
            return true;
        };
        if !net_trust::gate(
            &self.local,
            &self.node,
            &advert.name,
            peer,
            now_ms,
            &mut self.stats,
        ) {
            return false;
        }
        if !advert.require_token {
            return true;
        }
        let tag = advert.name.as_str();
        let ok = self.tokens.get(&session).is_some_and(|t| {
            t.expires_at_ms > now_ms
                && t.scope
                    .iter()
                    .any(|s| s.strip_prefix(net_trust::NRPC_TAG_PREFIX) == Some(tag))
        });
        if !ok {
            self.stats.gate_denied += 1;
        }
        ok
    }

    fn on_token(
        &mut self,
        peer: &NodeId,
        session: net_proto::SessionId,
        bytes: &[u8],
        now_ms: u64,
    ) -> Result<(), AnnounceError> {
        let chain = net_trust::TokenChain::decode(bytes).map_err(|_| {
            self.stats.token_rejected += 1;
            AnnounceError::Malformed
        })?;
        // Verified once, against the roots and the presenting session's peer;
        // the gate then only checks scope and expiry.
        let first = chain.leaf_scope().first().cloned().unwrap_or_default();
        if chain.verify(&self.roots, peer, &first, now_ms).is_err() {
            self.stats.token_rejected += 1;
            return Err(AnnounceError::BadSignature);
        }
        let presented = Presented {
            scope: chain.leaf_scope().to_vec(),
            expires_at_ms: chain.leaf_expires_at_ms(),
        };
        // Node-wide: what the chain lets `peer` serve (the discovery trust
        // rule reads it); the latest presentation replaces the earlier.
        let grant = ServeGrant::from_scope(&presented.scope, presented.expires_at_ms);
        let mut shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        let SharedTrust { grants, stats, .. } = &mut *shared;
        grants.record(*peer, grant, now_ms, stats);
        drop(shared);
        self.tokens.insert(session, presented);
        Ok(())
    }

    /// An ANNOUNCE payload arrived on a session whose authenticated peer is
    /// `peer`. Only first-hand messages count: the signer must be `peer`.
    pub fn on_announcement(
        &mut self,
        peer: &NodeId,
        session: net_proto::SessionId,
        bytes: &[u8],
        now: Instant,
    ) -> Result<(), AnnounceError> {
        let now_ms = self.now_ms(now);
        match bytes.split_first() {
            Some((&KIND_TOKEN, rest)) => self.on_token(peer, session, rest, now_ms),
            Some((&KIND_CAPABILITIES, rest)) => self.on_capabilities(peer, rest, now_ms),
            Some((&KIND_RESERVATION, rest)) => {
                self.on_reservation(peer, rest, now_ms)
                    .map_err(|e| match e {
                        ReservationError::Envelope(e) => e,
                        _ => AnnounceError::Stale,
                    })
            }
            _ => {
                self.stats.count(&AnnounceError::Malformed);
                Err(AnnounceError::Malformed)
            }
        }
    }

    fn second_hand(&mut self, signer: NodeId, peer: &NodeId) -> Result<(), AnnounceError> {
        if signer == *peer {
            return Ok(());
        }
        self.stats.count(&AnnounceError::NodeIdMismatch);
        Err(AnnounceError::NodeIdMismatch)
    }

    /// Queues a capability announcement; [`flush`](Self::flush) verifies
    /// everything queued in one loop iteration together (a burst, e.g. many
    /// sessions opening at once, is batch-verified).
    fn on_capabilities(
        &mut self,
        peer: &NodeId,
        bytes: &[u8],
        _now_ms: u64,
    ) -> Result<(), AnnounceError> {
        let signed = SignedAnnouncement::decode(bytes).inspect_err(|e| self.stats.count(e))?;
        if signed.signer().node_id() != *peer {
            // Second-hand: only the node itself may announce for itself here.
            self.stats.count(&AnnounceError::NodeIdMismatch);
            return Err(AnnounceError::NodeIdMismatch);
        }
        self.pending.push(signed);
        Ok(())
    }

    /// Verifies the queued announcements (batch verification from
    /// `net_trust::BATCH_MIN` up) and applies the good ones to the fold.
    pub fn flush(&mut self, now: Instant) {
        if self.pending.is_empty() {
            return;
        }
        let now_ms = self.now_ms(now);
        let results = verify_many(&self.pending, now_ms, &mut self.stats);
        self.pending.clear();
        let mut shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        let SharedTrust { fold, stats, .. } = &mut *shared;
        for v in results.into_iter().flatten() {
            // A refusal is counted (as are evictions) in the node-wide
            // stats; nobody else could act on it.
            if let Err(e) = fold.apply_counted(v, now_ms, stats) {
                tracing::trace!(error = %e, "announcement not applied");
            }
        }
    }

    fn on_reservation(
        &mut self,
        peer: &NodeId,
        bytes: &[u8],
        now_ms: u64,
    ) -> Result<(), ReservationError> {
        let v = decode_and_verify_reservation(bytes, now_ms, &mut self.stats)?;
        self.second_hand(v.signer(), peer)?;
        let mut shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        let r = shared.reservations.apply(v, now_ms).map(|_| ());
        if let Err(e) = &r {
            shared.stats.count_reservation(e);
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_fold_protects_configured_peers_with_configured_limits() {
        let (peer, stranger) = (Identity::from_seed(&[2; 32]), Identity::from_seed(&[3; 32]));
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 9));
        let cfg = MeshNodeConfig::new(Identity::from_seed(&[1; 32]), [7; 32])
            .with_peer(addr, peer.public());
        let fold = discovery_fold(&cfg);
        assert!(fold.is_protected(&peer.node_id()));
        assert!(!fold.is_protected(&stranger.node_id()));
        assert_eq!(fold.limits(), FoldLimits::default());
        let small = FoldLimits::with_max_bytes(1 << 20);
        let fold = discovery_fold(&cfg.with_fold_limits(small));
        assert_eq!(fold.limits(), small);
        assert!(fold.is_protected(&peer.node_id()));
    }
}
