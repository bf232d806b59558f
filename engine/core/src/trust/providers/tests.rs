//! The discovery trust rule on its own: serve grants, their bound, the
//! rule (allow-list or grant), per-service turns, and a chain presented on
//! a session reaching the node-wide grants.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use net_crypto::{Identity, NodeId};
use net_proto::{ReceiverIndex, SessionId};
use net_trust::{
    AnnouncePolicy, AnnouncementBody, Capability, CapabilityFold, FoldLimits, ReservationFold,
    SignedAnnouncement, TokenChain, TrustStats,
};

use super::*;
use crate::trust::{CoreTrust, SharedTrust, KIND_TOKEN};

const NOW: u64 = 1_700_000_000_000;

fn id(seed: u8) -> NodeId {
    Identity::from_seed(&[seed; 32]).node_id()
}

fn grant(services: &[&str], expires_at_ms: u64) -> Option<ServeGrant> {
    let scope: Vec<String> = services
        .iter()
        .map(|s| format!("{NRPC_SERVE_SCOPE_PREFIX}{s}"))
        .collect();
    ServeGrant::from_scope(&scope, expires_at_ms)
}

fn shared() -> SharedTrust {
    SharedTrust {
        fold: CapabilityFold::new(FoldLimits::default()),
        reservations: ReservationFold::new(64, 64),
        stats: TrustStats::default(),
        grants: ProviderGrants::default(),
        turns: ProviderTurns::default(),
    }
}

/// Applies `seed`'s own signed announcement of `services` to the fold.
fn advertise(t: &mut SharedTrust, seed: u8, services: &[&str]) {
    let me = Identity::from_seed(&[seed; 32]);
    let caps = services
        .iter()
        .map(|s| Capability::open(Capability::service_tag(s)))
        .collect();
    let body = AnnouncementBody::new(me.node_id(), NOW, NOW, 60_000, caps);
    let v = SignedAnnouncement::sign(&me, &body)
        .unwrap()
        .verify(NOW)
        .unwrap();
    t.fold.apply(v, NOW).unwrap();
}

#[test]
fn a_grant_is_the_serve_items_of_the_scope_only() {
    // The right to call (`nrpc:vault`) is not the right to serve.
    let call_only = ServeGrant::from_scope(&["nrpc:vault".to_string()], NOW + 1);
    assert_eq!(call_only, None);
    let g = grant(&["vault", "logs"], NOW + 10).unwrap();
    assert!(g.covers("vault", NOW) && g.covers("logs", NOW + 9));
    assert!(!g.covers("other", NOW), "another service");
    assert!(!g.covers("vault", NOW + 10), "expired");
}

#[test]
fn the_latest_presentation_replaces_a_grant() {
    let (mut g, mut stats) = (ProviderGrants::default(), TrustStats::default());
    g.record(id(1), grant(&["vault"], NOW + 60_000), NOW, &mut stats);
    assert!(g.covers(&id(1), "vault", NOW));
    g.record(id(1), grant(&["logs"], NOW + 60_000), NOW, &mut stats);
    assert!(!g.covers(&id(1), "vault", NOW) && g.covers(&id(1), "logs", NOW));
    g.record(id(1), None, NOW, &mut stats);
    assert!(!g.covers(&id(1), "logs", NOW));
    assert_eq!(g.len(), 0);
}

/// The bound of the node-wide grants (docs/SECURITY.md, resource bounds):
/// 5 000 nodes present serve grants against the default 4 096: the record
/// never holds more; expired grants go first and uncounted, then the one
/// expiring soonest, counted; a long-lived grant survives throughout.
#[test]
fn grants_stay_within_their_bound() {
    let (mut g, mut stats) = (ProviderGrants::default(), TrustStats::default());
    let keeper = id(0);
    g.record(keeper, grant(&["vault"], NOW + 3_600_000), NOW, &mut stats);
    // 100 grants that expire at NOW + 1, then fresh ones.
    for i in 0..5_000u32 {
        let node = NodeId(net_crypto::blake2s(&[&i.to_le_bytes()]));
        let expires = if i < 100 {
            NOW + 1
        } else {
            NOW + 60_000 + u64::from(i)
        };
        g.record(node, grant(&["vault"], expires), NOW + 2, &mut stats);
        assert!(g.len() <= MAX_PROVIDER_GRANTS, "over the bound at {i}");
    }
    assert_eq!(g.len(), MAX_PROVIDER_GRANTS);
    // 5 001 recorded, 4 096 kept: the 100 expired were purged uncounted.
    assert_eq!(stats.provider_grants_evicted, 5_001 - 4_096 - 100);
    assert!(g.covers(&keeper, "vault", NOW + 2), "long-lived grant kept");
    let newest = NodeId(net_crypto::blake2s(&[&4_999u32.to_le_bytes()]));
    assert!(g.covers(&newest, "vault", NOW + 2), "newest grant kept");
}

#[test]
fn only_allow_listed_or_granted_advertisers_are_trusted() {
    let mut t = shared();
    let (attacker, listed, granted, granted_other) = (1, 2, 3, 4);
    for seed in [attacker, listed, granted, granted_other] {
        advertise(&mut t, seed, &["vault"]);
    }
    t.grants.record(
        id(granted),
        grant(&["vault"], NOW + 1_000),
        NOW,
        &mut t.stats,
    );
    t.grants.record(
        id(granted_other),
        grant(&["logs"], NOW + 1_000),
        NOW,
        &mut t.stats,
    );
    let p = t.providers("vault", &[id(listed)], NOW);
    assert_eq!(p.advertising.len(), 4);
    let mut want = vec![id(listed), id(granted)];
    want.sort();
    assert_eq!(p.trusted, want);
    // A grant ends with its chain; an allow-list entry does not.
    let later = t.providers("vault", &[id(listed)], NOW + 1_000);
    assert_eq!(later.trusted, vec![id(listed)]);
    // Trusted for a service it does not advertise: not a provider of it.
    assert!(t.providers("logs", &[], NOW).trusted.is_empty());
}

#[test]
fn no_trusted_provider_is_refused_with_its_reason_and_counted() {
    let mut t = shared();
    advertise(&mut t, 1, &["vault"]);
    let e = t
        .pick("vault", &[], Route::Trusted, &|_| true, NOW)
        .unwrap_err();
    assert_eq!(
        e,
        NoProvider::Untrusted {
            service: "vault".into(),
            advertising: 1
        }
    );
    assert!(e
        .to_string()
        .starts_with("no trusted provider for service `vault` among 1 advertising it"));
    assert_eq!(t.stats.no_trusted_provider, 1);
    // The explicit opt-in reaches the advertiser.
    assert_eq!(
        t.pick("vault", &[], Route::AnyAdvertiser, &|_| true, NOW),
        Ok(id(1))
    );
    let e = t
        .pick("nobody", &[], Route::Trusted, &|_| true, NOW)
        .unwrap_err();
    assert!(matches!(e, NoProvider::NotAdvertised { .. }));
    assert_eq!(t.stats.no_trusted_provider, 1, "not a trust refusal");
}

/// Each service has its own turn: two trusted providers alternate even
/// when calls to another service come in between (a shared counter made
/// them alternate in step with everything else that advanced it).
#[test]
fn trusted_providers_alternate_per_service() {
    let mut t = shared();
    for seed in [1, 2, 3] {
        advertise(&mut t, seed, &["vault", "logs"]);
    }
    let allow = [id(1), id(2)];
    let mut vault = Vec::new();
    for _ in 0..6 {
        vault.push(
            t.pick("vault", &allow, Route::Trusted, &|_| true, NOW)
                .unwrap(),
        );
        t.pick("logs", &allow, Route::Trusted, &|_| true, NOW)
            .unwrap();
    }
    let (a, b) = (vault[0], vault[1]);
    assert_ne!(a, b);
    assert_eq!(vault, vec![a, b, a, b, a, b]);
    assert!(!vault.contains(&id(3)), "untrusted never picked");
}

/// A chain presented on a session reaches the node-wide grants only if it
/// verifies against this node's roots and names the session's peer, and
/// only with its serve items.
#[test]
fn a_presented_chain_grants_serving_node_wide() {
    let root = Identity::from_seed(&[50; 32]);
    let shared = Arc::new(Mutex::new(shared()));
    let me = Identity::from_seed(&[9; 32]);
    let now = Instant::now();
    let mut core = CoreTrust::new(me, AnnouncePolicy::default(), shared.clone(), now, NOW);
    core.set_tokens(vec![root.public()], None);
    let present = |core: &mut CoreTrust, peer: u8, chain: &TokenChain| {
        let mut bytes = vec![KIND_TOKEN];
        bytes.extend_from_slice(&chain.encode());
        let session = SessionId(ReceiverIndex::new(u32::from(peer)));
        core.on_announcement(&id(peer), session, &bytes, now)
    };
    let until = NOW + 60_000;
    let serve = vec![format!("{NRPC_SERVE_SCOPE_PREFIX}vault")];
    let good = TokenChain::root(&root, id(1), serve.clone(), until);
    assert!(present(&mut core, 1, &good).is_ok());
    // Someone else's chain, a foreign root, a right to call only.
    assert!(present(&mut core, 2, &good).is_err());
    let stranger = Identity::from_seed(&[51; 32]);
    let foreign = TokenChain::root(&stranger, id(3), serve, until);
    assert!(present(&mut core, 3, &foreign).is_err());
    let call_only = TokenChain::root(&root, id(4), vec!["nrpc:vault".into()], until);
    assert!(present(&mut core, 4, &call_only).is_ok());
    let t = shared.lock().unwrap();
    assert!(t.grants.covers(&id(1), "vault", NOW));
    for peer in [2, 3, 4] {
        assert!(!t.grants.covers(&id(peer), "vault", NOW), "peer {peer}");
    }
    assert_eq!(t.grants.len(), 1);
}

/// Suspect and Down providers (the failure detector's view) are skipped;
/// with all of them down the call fails with that cause, not a trust one.
#[test]
fn providers_the_detector_holds_down_are_skipped() {
    let mut t = shared();
    for seed in [1, 2] {
        advertise(&mut t, seed, &["vault"]);
    }
    let allow = [id(1), id(2)];
    let only_2 = |n: &NodeId| *n == id(2);
    for _ in 0..4 {
        assert_eq!(
            t.pick("vault", &allow, Route::Trusted, &only_2, NOW),
            Ok(id(2))
        );
    }
    let e = t
        .pick("vault", &allow, Route::Trusted, &|_| false, NOW)
        .unwrap_err();
    assert!(matches!(e, NoProvider::AllDown { candidates: 2, .. }));
    assert_eq!(e.cause(), net_proto::Cause::PeerDown);
    assert_eq!(t.stats.no_trusted_provider, 0);
}
