//! The callee gate: may this peer call this service on this node?

use net_crypto::NodeId;

use crate::capability::ClassHash;
use crate::fold::CapabilityFold;
use crate::secret::{GroupId, SubnetId};
use crate::TrustStats;

/// The caller as the engine knows it from the authenticated session.
///
/// Every field must come from the session (its Noise-authenticated node id
/// and the memberships the engine associates with it), never from anything
/// the caller wrote into a frame: a frame-supplied id would let any peer
/// claim to be an allowed one.
#[derive(Clone, Copy, Debug)]
pub struct Peer<'a> {
    /// The session's authenticated node id.
    pub node: &'a NodeId,
    /// Groups the engine knows the peer belongs to.
    pub groups: &'a [GroupId],
    /// Subnets the engine knows the peer belongs to.
    pub subnets: &'a [SubnetId],
}

/// Whether `peer` — the **session's authenticated node id**, never an id
/// taken from a frame — may call service `service` on node `local`, at
/// `now_ms`. Counts the decision in `gate_allowed` / `gate_denied`.
///
/// Reads only `local`'s own entry of class [`ClassHash::CAPABILITIES`] as
/// set by [`CapabilityFold::set_local`] (an entry that arrived over the
/// network, even one signed by this node's key, is ignored: it could be a
/// replay of a revoked allow-list). Fails closed: no local entry, an
/// expired one, or no `nrpc:<service>` capability in it → deny. Otherwise
/// every capability tagged `nrpc:<service>` must allow the peer
/// ([`crate::Capability::allows`]; an empty allow-list allows any
/// authenticated peer). The peer is assumed to hold no groups or subnets;
/// see [`gate_with`].
pub fn gate(
    fold: &CapabilityFold,
    local: &NodeId,
    service: &str,
    peer: &NodeId,
    now_ms: u64,
    stats: &mut TrustStats,
) -> bool {
    let peer = Peer {
        node: peer,
        groups: &[],
        subnets: &[],
    };
    gate_with(fold, local, service, &peer, now_ms, stats)
}

/// [`gate`] with the peer's group and subnet memberships.
pub fn gate_with(
    fold: &CapabilityFold,
    local: &NodeId,
    service: &str,
    peer: &Peer<'_>,
    now_ms: u64,
    stats: &mut TrustStats,
) -> bool {
    let allowed = fold
        .get_local(ClassHash::CAPABILITIES, local, now_ms)
        .is_some_and(|body| {
            let mut found = false;
            let mut all = true;
            for cap in body.capabilities.iter().filter(|c| c.is_service(service)) {
                found = true;
                all &= cap.allows(peer.node, peer.groups, peer.subnets);
            }
            found && all
        });
    if allowed {
        stats.gate_allowed += 1;
    } else {
        stats.gate_denied += 1;
    }
    allowed
}
