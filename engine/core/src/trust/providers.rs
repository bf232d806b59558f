//! The discovery trust rule: which advertising nodes a call routed by
//! service name (`MeshNode::call_service`) may reach, and whose turn it is.
//!
//! Advertising `nrpc:<service>` proves only that the advertiser holds the
//! mesh PSK and signed its own announcement: it is matchmaking, not
//! authority. A node routes a service's payloads only to an advertising
//! node it has its own reason to trust for that service:
//!
//! * the caller's allow-list names it for the service
//!   (`MeshNodeConfig::with_trusted_providers`), or
//! * it presented, on a session to this node, a token chain verified
//!   against this node's token roots and bound to that session's peer,
//!   whose leaf scope holds `nrpc-serve:<service>` and has not expired
//!   ([`ProviderGrants`]).
//!
//! Everyone advertising is still listed by `discover`; sending to an
//! untrusted advertiser takes an explicit `call_service_untrusted`.

use std::collections::HashMap;

use net_crypto::NodeId;
use net_trust::{TrustStats, NRPC_SERVE_SCOPE_PREFIX, NRPC_TAG_PREFIX};

use super::SharedTrust;

/// Most peers whose serve grants the node keeps at once, node-wide. Only a
/// peer holding a chain from this node's own roots that grants serving
/// takes an entry (one per node id, the latest presentation replacing the
/// earlier), so the bound matters only against a grant holder delegating
/// to many fresh identities; an entry is at most 32 names of at most 53
/// bytes. At the bound, expired grants go first, then the one expiring
/// soonest (counted in `provider_grants_evicted`).
pub(crate) const MAX_PROVIDER_GRANTS: usize = 4096;

/// Most services with a round-robin position; beyond it the positions
/// start over (the only cost: one pick that does not alternate).
const MAX_TURNS: usize = 1024;

/// Least gap between two `warn` logs about untrusted-only services; the
/// others log at `debug` (every refusal is counted and returned anyway).
const WARN_EVERY_MS: u64 = 10_000;

/// The services a verified chain lets its holder serve, and until when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ServeGrant {
    /// Service names: the leaf scope's `nrpc-serve:` items, prefix removed.
    services: Vec<String>,
    /// The leaf's expiry (Unix ms): the whole chain's.
    expires_at_ms: u64,
}

impl ServeGrant {
    /// The grant in a *verified* chain's leaf scope; `None` if it names no
    /// service to serve.
    pub fn from_scope(scope: &[String], expires_at_ms: u64) -> Option<ServeGrant> {
        let services: Vec<String> = scope
            .iter()
            .filter_map(|s| s.strip_prefix(NRPC_SERVE_SCOPE_PREFIX))
            .map(str::to_string)
            .collect();
        (!services.is_empty()).then_some(ServeGrant {
            services,
            expires_at_ms,
        })
    }

    fn covers(&self, service: &str, now_ms: u64) -> bool {
        self.expires_at_ms > now_ms && self.services.iter().any(|s| s == service)
    }
}

/// Node-wide record of "node X holds a verified chain letting it serve
/// services S until T", written by the cores when a session's peer
/// presents its chain, read when a call is routed by service name.
///
/// Invariants: at most `cap` entries; an entry exists only for a node
/// whose chain verified against this node's roots with that node as the
/// presenting session's peer; a grant never outlives its chain's expiry
/// (checked on every read).
pub(crate) struct ProviderGrants {
    by_node: HashMap<NodeId, ServeGrant>,
    cap: usize,
}

impl Default for ProviderGrants {
    fn default() -> Self {
        ProviderGrants::new(MAX_PROVIDER_GRANTS)
    }
}

impl ProviderGrants {
    /// An empty record of at most `cap` nodes (at least 1).
    pub fn new(cap: usize) -> Self {
        ProviderGrants {
            by_node: HashMap::new(),
            cap: cap.max(1),
        }
    }

    /// `node` presented a verified chain granting `grant` (`None`: it
    /// grants no serving). The latest presentation replaces the earlier.
    pub fn record(
        &mut self,
        node: NodeId,
        grant: Option<ServeGrant>,
        now_ms: u64,
        stats: &mut TrustStats,
    ) {
        let Some(grant) = grant else {
            self.by_node.remove(&node);
            return;
        };
        if !self.by_node.contains_key(&node) && self.by_node.len() >= self.cap {
            self.by_node.retain(|_, g| g.expires_at_ms > now_ms);
        }
        if !self.by_node.contains_key(&node) && self.by_node.len() >= self.cap {
            let soonest = self
                .by_node
                .iter()
                .min_by_key(|(_, g)| g.expires_at_ms)
                .map(|(n, _)| *n);
            if let Some(n) = soonest {
                self.by_node.remove(&n);
                stats.provider_grants_evicted += 1;
            }
        }
        self.by_node.insert(node, grant);
    }

    /// Whether `node` holds an unexpired grant to serve `service`.
    pub fn covers(&self, node: &NodeId, service: &str, now_ms: u64) -> bool {
        self.by_node
            .get(node)
            .is_some_and(|g| g.covers(service, now_ms))
    }

    /// Nodes recorded (expired grants included until room is needed).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_node.len()
    }
}

/// Per-service round-robin positions over providers. Separate from the
/// node's per-core counter: sharing it made two calls per pick (the pick,
/// then the core) advance it by two, so with two cores and two providers
/// every call went to the same provider.
#[derive(Default)]
pub(crate) struct ProviderTurns {
    next: HashMap<String, usize>,
    /// When the last `warn` about an untrusted-only service was logged.
    last_warn_ms: Option<u64>,
}

impl ProviderTurns {
    /// The next of `among` for `service`, or `None` if `among` is empty.
    /// Successive picks over the same providers go round them in order.
    fn take(&mut self, service: &str, among: &[NodeId]) -> Option<NodeId> {
        if among.is_empty() {
            return None;
        }
        if !self.next.contains_key(service) && self.next.len() >= MAX_TURNS {
            self.next.clear();
        }
        let turn = self.next.entry(service.to_string()).or_insert(0);
        let pick = among[*turn % among.len()];
        *turn = turn.wrapping_add(1);
        Some(pick)
    }

    /// Whether a `warn` may be logged now (at most one per [`WARN_EVERY_MS`]).
    fn may_warn(&mut self, now_ms: u64) -> bool {
        let quiet = self
            .last_warn_ms
            .is_some_and(|t| now_ms.saturating_sub(t) < WARN_EVERY_MS);
        if !quiet {
            self.last_warn_ms = Some(now_ms);
        }
        !quiet
    }
}

/// Which advertisers a call routed by service name may reach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// Only providers trusted for the service (the default everywhere).
    Trusted,
    /// Any advertiser: the caller opted in explicitly.
    AnyAdvertiser,
}

/// The nodes advertising a service and those of them trusted to serve it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Providers {
    /// Every node whose current announcement advertises it, in node-id order.
    pub advertising: Vec<NodeId>,
    /// The trusted subset, in the same order.
    pub trusted: Vec<NodeId>,
}

/// Why a call routed by service name found nobody to send to.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum NoProvider {
    /// No node's current, verified announcement advertises the service.
    #[error("no node advertises service `{service}`")]
    NotAdvertised {
        /// The service asked for.
        service: String,
    },
    /// Nodes advertise it, but none is trusted to serve it here.
    #[error(
        "no trusted provider for service `{service}` among {advertising} advertising it \
         (trust one with MeshNodeConfig::with_trusted_providers or a token chain scoped \
         `nrpc-serve:{service}`)"
    )]
    Untrusted {
        /// The service asked for.
        service: String,
        /// How many nodes advertise it.
        advertising: usize,
    },
    /// Every provider it may go to is Suspect or Down (failure detector).
    #[error("all {candidates} provider(s) of service `{service}` are suspect or down")]
    AllDown {
        /// The service asked for.
        service: String,
        /// How many it may go to.
        candidates: usize,
    },
}

impl NoProvider {
    /// The typed cause a call routed by name fails with.
    pub fn cause(&self) -> net_proto::Cause {
        match self {
            NoProvider::AllDown { .. } => net_proto::Cause::PeerDown,
            NoProvider::NotAdvertised { .. } => net_proto::Cause::NoProvider,
            NoProvider::Untrusted { advertising, .. } => net_proto::Cause::NoTrustedProvider {
                advertising: *advertising,
            },
        }
    }
}

impl SharedTrust {
    /// The discovery trust rule for `service` at `now_ms`: its advertisers,
    /// and those listed in `allow` (the caller's allow-list for it) or
    /// holding an unexpired serve grant for it.
    pub fn providers(&self, service: &str, allow: &[NodeId], now_ms: u64) -> Providers {
        let tag = format!("{NRPC_TAG_PREFIX}{service}");
        let advertising: Vec<NodeId> = self.fold.nodes_with_tag(&tag, now_ms).collect();
        let trusted = advertising
            .iter()
            .filter(|n| allow.contains(n) || self.grants.covers(n, service, now_ms))
            .copied()
            .collect();
        Providers {
            advertising,
            trusted,
        }
    }

    /// The provider a call to `service` goes to now: the next of those
    /// `route` admits and `live` holds reachable (not Suspect or Down),
    /// round robin per service. A refusal for want of
    /// trust is counted (`no_trusted_provider`) and logged, at `warn` at
    /// most every ten seconds.
    pub fn pick(
        &mut self,
        service: &str,
        allow: &[NodeId],
        route: Route,
        live: &dyn Fn(&NodeId) -> bool,
        now_ms: u64,
    ) -> Result<NodeId, NoProvider> {
        let p = self.providers(service, allow, now_ms);
        let among = match route {
            Route::Trusted => &p.trusted,
            Route::AnyAdvertiser => &p.advertising,
        };
        let up: Vec<NodeId> = among.iter().copied().filter(|n| live(n)).collect();
        if let Some(node) = self.turns.take(service, &up) {
            return Ok(node);
        }
        if p.advertising.is_empty() {
            return Err(NoProvider::NotAdvertised {
                service: service.to_string(),
            });
        }
        if !among.is_empty() {
            return Err(NoProvider::AllDown {
                service: service.to_string(),
                candidates: among.len(),
            });
        }
        self.stats.no_trusted_provider += 1;
        let e = NoProvider::Untrusted {
            service: service.to_string(),
            advertising: p.advertising.len(),
        };
        let untrusted: Vec<String> = p.advertising.iter().take(8).map(|n| n.short()).collect();
        if self.turns.may_warn(now_ms) {
            tracing::warn!(error = %e, ?untrusted, "call by service name not sent");
        } else {
            tracing::debug!(error = %e, ?untrusted, "call by service name not sent");
        }
        Err(e)
    }
}

#[cfg(test)]
mod tests;
