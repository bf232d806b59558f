//! The capability fold, snapshots, the callee gate, and the re-announce
//! policy and throttle.

mod common;

use std::time::Duration;

use common::{body, forge, ident, seq_of, verified, NOW};
use net_crypto::{Identity, NodeId};
use net_trust::{
    gate, gate_with, AnnounceError, AnnouncePolicy, AnnounceThrottle, AnnouncementBody, Capability,
    CapabilityFold, ClassHash, FoldLimits, GroupId, Peer, SignedAnnouncement, SnapshotError,
    SnapshotKey, SubnetId, TrustStats, MAX_TTL_MS,
};

#[test]
fn newer_seq_applies_stale_does_not() {
    let a = ident(1);
    let mut fold = CapabilityFold::new(FoldLimits::default());
    fold.apply(verified(&a, &body(a.node_id(), 5, vec![]), NOW), NOW)
        .unwrap();
    assert_eq!(seq_of(&fold, &a.node_id()), Some(5));
    for stale in [5, 4, 0] {
        let v = verified(&a, &body(a.node_id(), stale, vec![]), NOW);
        assert_eq!(fold.apply(v, NOW), Err(AnnounceError::Stale));
    }
    assert_eq!(seq_of(&fold, &a.node_id()), Some(5));
    let newer = body(a.node_id(), 6, vec![ident(2).node_id()]);
    fold.apply(verified(&a, &newer, NOW), NOW).unwrap();
    assert_eq!(
        fold.get(ClassHash::CAPABILITIES, &a.node_id(), NOW),
        Some(&newer)
    );
    assert_eq!(fold.len(), 1);
    // Classes are independent keys.
    let mut other = body(a.node_id(), 1, vec![]);
    other.class = ClassHash::of("placement");
    fold.apply(verified(&a, &other, NOW), NOW).unwrap();
    assert_eq!(fold.len(), 2);
    assert_eq!(seq_of(&fold, &a.node_id()), Some(6));
}

#[test]
fn entries_are_keyed_by_the_verified_signer() {
    let (a, b, c) = (ident(1), ident(2), ident(3));
    let mut fold = CapabilityFold::new(FoldLimits::default());
    let mut stats = TrustStats::default();
    let bytes = SignedAnnouncement::sign(&a, &body(a.node_id(), 1, vec![]))
        .unwrap()
        .encode();
    fold.handle_announcement(&bytes, NOW, &mut stats).unwrap();
    assert!(fold
        .get(ClassHash::CAPABILITIES, &a.node_id(), NOW)
        .is_some());
    assert!(fold
        .get(ClassHash::CAPABILITIES, &b.node_id(), NOW)
        .is_none());
    // B tries to overwrite A's entry, and to create C's, by claiming their
    // ids with a higher seq: both refused, state unchanged.
    for victim in [&a, &c] {
        let forged = forge(
            &b,
            ClassHash::CAPABILITIES,
            &body(victim.node_id(), 99, vec![b.node_id()]),
        );
        assert_eq!(
            fold.handle_announcement(&forged, NOW, &mut stats),
            Err(AnnounceError::NodeIdMismatch)
        );
    }
    assert_eq!(seq_of(&fold, &a.node_id()), Some(1));
    assert!(fold
        .get(ClassHash::CAPABILITIES, &c.node_id(), NOW)
        .is_none());
    assert_eq!(fold.len(), 1);
    assert_eq!(stats.node_id_mismatch, 2);
}

#[test]
fn expiry_and_sweep() {
    let (a, b) = (ident(1), ident(2));
    let mut fold = CapabilityFold::new(FoldLimits::default());
    fold.apply(verified(&a, &body(a.node_id(), 1, vec![]), NOW), NOW)
        .unwrap();
    let mut long = body(b.node_id(), 1, vec![]);
    long.ttl_ms = 600_000;
    fold.apply(verified(&b, &long, NOW), NOW).unwrap();
    assert_eq!(fold.sweep(NOW + 299_999), 0);
    let later = NOW + 300_000;
    // Expired: invisible to reads immediately, removed by the sweep.
    assert!(fold
        .get(ClassHash::CAPABILITIES, &a.node_id(), later)
        .is_none());
    assert!(fold
        .get(ClassHash::CAPABILITIES, &b.node_id(), later)
        .is_some());
    assert_eq!(fold.len(), 2);
    assert_eq!(fold.sweep(later), 1);
    assert_eq!(fold.len(), 1);
    assert_eq!(fold.sweep(later), 0);
    assert_eq!(fold.sweep(NOW + 600_000), 1);
    assert!(fold.is_empty());
    // Applying something already expired by apply time.
    let v = verified(&a, &body(a.node_id(), 2, vec![]), NOW);
    assert_eq!(fold.apply(v, NOW + 300_000), Err(AnnounceError::Expired));
}

#[test]
fn nodes_with_tag_sorted_and_live() {
    let ids: Vec<Identity> = (1..=6).map(ident).collect();
    let mut fold = CapabilityFold::new(FoldLimits::default());
    for (i, id) in ids.iter().enumerate() {
        let tag = if i % 2 == 0 {
            "nrpc:echo"
        } else {
            "nrpc:other"
        };
        let mut b =
            AnnouncementBody::new(id.node_id(), 1, NOW, 300_000, vec![Capability::open(tag)]);
        if i == 4 {
            b.ttl_ms = 1_000; // expires early
        }
        fold.apply(verified(id, &b, NOW), NOW).unwrap();
    }
    let mut expect: Vec<NodeId> = [0, 2, 4].iter().map(|&i| ids[i].node_id()).collect();
    expect.sort();
    assert_eq!(
        fold.nodes_with_tag("nrpc:echo", NOW).collect::<Vec<_>>(),
        expect
    );
    expect.retain(|n| *n != ids[4].node_id());
    assert_eq!(
        fold.nodes_with_tag("nrpc:echo", NOW + 1_000)
            .collect::<Vec<_>>(),
        expect
    );
    assert_eq!(fold.nodes_with_tag("nrpc:none", NOW).count(), 0);
    // Other classes are not capabilities.
    let x = ident(9);
    let mut b = AnnouncementBody::new(
        x.node_id(),
        1,
        NOW,
        1000,
        vec![Capability::open("nrpc:echo")],
    );
    b.class = ClassHash::of("placement");
    fold.apply(verified(&x, &b, NOW), NOW).unwrap();
    assert_eq!(fold.nodes_with_tag("nrpc:echo", NOW).count(), 3);
}

#[test]
fn set_local_and_own_entry_protection() {
    let me = ident(1);
    let peer = ident(2);
    let mut fold = CapabilityFold::new(FoldLimits::default());
    let mut stats = TrustStats::default();
    // Before set_local, even an announcement genuinely signed by our own key
    // (e.g. an old one replayed by a peer) does not open our gate.
    let old = verified(&me, &body(me.node_id(), 1, vec![peer.node_id()]), NOW);
    fold.apply(old.clone(), NOW).unwrap();
    assert!(!gate(
        &fold,
        &me.node_id(),
        "echo",
        &peer.node_id(),
        NOW,
        &mut stats
    ));
    // set_local installs our state regardless of seq ...
    fold.set_local(body(me.node_id(), 0, vec![ident(3).node_id()]), NOW);
    assert!(fold
        .get_local(ClassHash::CAPABILITIES, &me.node_id(), NOW)
        .is_some());
    assert!(!gate(
        &fold,
        &me.node_id(),
        "echo",
        &peer.node_id(),
        NOW,
        &mut stats
    ));
    assert!(gate(
        &fold,
        &me.node_id(),
        "echo",
        &ident(3).node_id(),
        NOW,
        &mut stats
    ));
    // ... and nothing from the network replaces it, however new.
    let newer = verified(&me, &body(me.node_id(), 100, vec![peer.node_id()]), NOW);
    assert_eq!(fold.apply(newer, NOW), Err(AnnounceError::OwnEntry));
    assert!(!gate(
        &fold,
        &me.node_id(),
        "echo",
        &peer.node_id(),
        NOW,
        &mut stats
    ));
    assert_eq!(fold.remote_len(), 0);
    assert_eq!(fold.len(), 1);
    // A refresh replaces it (lower seq too: it is ours).
    fold.set_local(body(me.node_id(), 0, vec![peer.node_id()]), NOW);
    assert!(gate(
        &fold,
        &me.node_id(),
        "echo",
        &peer.node_id(),
        NOW,
        &mut stats
    ));
}

#[test]
fn snapshot_restore_round_trip() {
    let me = ident(1);
    let (a, b) = (ident(2), ident(3));
    let mut fold = CapabilityFold::new(FoldLimits::default());
    fold.set_local(body(me.node_id(), 1, vec![a.node_id()]), NOW);
    fold.apply(verified(&a, &body(a.node_id(), 4, vec![]), NOW), NOW)
        .unwrap();
    let mut short = body(b.node_id(), 2, vec![]);
    short.ttl_ms = 10_000;
    fold.apply(verified(&b, &short, NOW), NOW).unwrap();

    let key = SnapshotKey::derive(&me);
    let snap = fold.snapshot(&key);
    assert_eq!(snap, fold.clone().snapshot(&key), "deterministic");
    let restored = CapabilityFold::restore(&key, &snap, NOW).unwrap();
    assert_eq!(restored.len(), 3);
    assert_eq!(restored.limits(), fold.limits());
    assert_eq!(restored.bytes(), fold.bytes());
    restored.assert_invariants();
    for n in [me.node_id(), a.node_id(), b.node_id()] {
        assert_eq!(
            restored.get(ClassHash::CAPABILITIES, &n, NOW),
            fold.get(ClassHash::CAPABILITIES, &n, NOW)
        );
    }
    // The local flag survives: the gate still works, and stays protected.
    let mut stats = TrustStats::default();
    let mut restored = restored;
    assert!(gate(
        &restored,
        &me.node_id(),
        "echo",
        &a.node_id(),
        NOW,
        &mut stats
    ));
    let v = verified(&me, &body(me.node_id(), 9, vec![]), NOW);
    assert_eq!(restored.apply(v, NOW), Err(AnnounceError::OwnEntry));
    // Seq history survives too.
    let v = verified(&a, &body(a.node_id(), 4, vec![]), NOW);
    assert_eq!(restored.apply(v, NOW), Err(AnnounceError::Stale));
    // Restoring later drops what expired meanwhile.
    let later = CapabilityFold::restore(&key, &snap, NOW + 10_000).unwrap();
    assert_eq!(later.len(), 2);
    assert_eq!(later.remote_len(), 1);
}

#[test]
fn restore_accepts_only_this_nodes_snapshots() {
    let me = ident(1);
    let peer = ident(2);
    let mut fold = CapabilityFold::new(FoldLimits::default());
    fold.set_local(body(me.node_id(), 1, vec![]), NOW);
    let mine = SnapshotKey::derive(&me);
    let theirs = SnapshotKey::derive(&peer);
    // A peer's snapshot (sealed with its key): refused.
    let foreign = fold.snapshot(&theirs);
    assert_eq!(
        CapabilityFold::restore(&mine, &foreign, NOW).err(),
        Some(SnapshotError::BadMac)
    );
    // Tampering with any single byte: refused.
    let snap = fold.snapshot(&mine);
    for i in 0..snap.len() {
        let mut t = snap.clone();
        t[i] ^= 0x20;
        assert_eq!(
            CapabilityFold::restore(&mine, &t, NOW).err(),
            Some(SnapshotError::BadMac),
            "byte {i}"
        );
    }
    // Truncation and extension.
    for len in 0..24 {
        assert_eq!(
            CapabilityFold::restore(&mine, &snap[..len.min(snap.len())], NOW).err(),
            Some(SnapshotError::Truncated),
            "len {len}"
        );
    }
    let mut ext = snap.clone();
    ext.push(0);
    assert_eq!(
        CapabilityFold::restore(&mine, &ext, NOW).err(),
        Some(SnapshotError::BadMac)
    );
    assert!(CapabilityFold::restore(&mine, &snap, NOW).is_ok());
    // The key does not leak through Debug.
    assert_eq!(format!("{mine:?}"), "SnapshotKey(<redacted>)");
}

// ---- gate ----

/// Our node `me` serving `echo` restricted to `allowed`.
fn serving(me: &Identity, allowed: Vec<NodeId>, ttl_ms: u64) -> CapabilityFold {
    let mut fold = CapabilityFold::new(FoldLimits::default());
    let mut b = body(me.node_id(), 1, allowed);
    b.ttl_ms = ttl_ms;
    fold.set_local(b, NOW);
    fold
}

#[test]
fn gate_allow_list() {
    let me = ident(1);
    let (good, bad) = (ident(2), ident(3));
    let fold = serving(&me, vec![good.node_id()], 300_000);
    let mut stats = TrustStats::default();
    assert!(gate(
        &fold,
        &me.node_id(),
        "echo",
        &good.node_id(),
        NOW,
        &mut stats
    ));
    assert!(!gate(
        &fold,
        &me.node_id(),
        "echo",
        &bad.node_id(),
        NOW,
        &mut stats
    ));
    // A service we do not advertise.
    assert!(!gate(
        &fold,
        &me.node_id(),
        "other",
        &good.node_id(),
        NOW,
        &mut stats
    ));
    // "nrpc:" prefix is required; no prefix confusion.
    assert!(!gate(
        &fold,
        &me.node_id(),
        "ech",
        &good.node_id(),
        NOW,
        &mut stats
    ));
    assert_eq!((stats.gate_allowed, stats.gate_denied), (1, 3));
}

#[test]
fn gate_denies_without_entry_or_after_expiry() {
    let me = ident(1);
    let peer = ident(2);
    let mut stats = TrustStats::default();
    let empty = CapabilityFold::new(FoldLimits::default());
    assert!(!gate(
        &empty,
        &me.node_id(),
        "echo",
        &peer.node_id(),
        NOW,
        &mut stats
    ));
    let fold = serving(&me, vec![peer.node_id()], 1_000);
    assert!(gate(
        &fold,
        &me.node_id(),
        "echo",
        &peer.node_id(),
        NOW + 999,
        &mut stats
    ));
    assert!(!gate(
        &fold,
        &me.node_id(),
        "echo",
        &peer.node_id(),
        NOW + 1_000,
        &mut stats
    ));
    // Another node's entry is not ours: the gate for `me` ignores it.
    let other = ident(5);
    let mut fold = CapabilityFold::new(FoldLimits::default());
    fold.set_local(body(other.node_id(), 1, vec![]), NOW);
    assert!(!gate(
        &fold,
        &me.node_id(),
        "echo",
        &peer.node_id(),
        NOW,
        &mut stats
    ));
    assert_eq!(stats.gate_denied, 3);
}

#[test]
fn gate_open_allow_list_allows_any_peer() {
    let me = ident(1);
    let fold = serving(&me, vec![], 300_000);
    let mut stats = TrustStats::default();
    for n in 2..10 {
        assert!(gate(
            &fold,
            &me.node_id(),
            "echo",
            &ident(n).node_id(),
            NOW,
            &mut stats
        ));
    }
}

#[test]
fn gate_groups_and_subnets() {
    let me = ident(1);
    let peer = ident(2).node_id();
    let group = GroupId([7; 32]);
    let subnet = SubnetId([8; 16]);
    let mut cap = Capability::open("nrpc:echo");
    cap.allowed_groups.push(group.tag());
    cap.allowed_subnets.push(subnet.tag());
    let mut fold = CapabilityFold::new(FoldLimits::default());
    fold.set_local(
        AnnouncementBody::new(me.node_id(), 1, NOW, 300_000, vec![cap]),
        NOW,
    );
    let mut stats = TrustStats::default();
    let check = |groups: &[GroupId], subnets: &[SubnetId], stats: &mut TrustStats| {
        let p = Peer {
            node: &peer,
            groups,
            subnets,
        };
        gate_with(&fold, &me.node_id(), "echo", &p, NOW, stats)
    };
    assert!(!check(&[], &[], &mut stats), "restricted: no membership");
    assert!(check(std::slice::from_ref(&group), &[], &mut stats));
    assert!(check(&[], std::slice::from_ref(&subnet), &mut stats));
    assert!(!check(
        &[GroupId([6; 32])],
        &[SubnetId([6; 16])],
        &mut stats
    ));
    // The secret itself in the list (instead of its tag) grants nothing.
    let mut leaky = Capability::open("nrpc:echo");
    leaky.allowed_groups.push(group.0);
    assert!(!leaky.allows(&peer, std::slice::from_ref(&group), &[]));
    assert!(!gate(&fold, &me.node_id(), "echo", &peer, NOW, &mut stats));
}

// ---- re-announce policy and throttle ----

#[test]
fn policy_ttl_math() {
    let p = AnnouncePolicy::default();
    assert_eq!(p.reannounce_interval, Duration::from_secs(150));
    assert_eq!(p.min_announce_interval, Duration::from_secs(10));
    assert_eq!(p.ttl(), Duration::from_secs(300));
    assert_eq!(p.ttl_ms(), 300_000);
    assert!(p.enabled());
    // Re-announce below the throttle minimum: TTL sized to the minimum.
    let p = AnnouncePolicy {
        reannounce_interval: Duration::from_secs(5),
        min_announce_interval: Duration::from_secs(10),
    };
    assert_eq!(p.ttl(), Duration::from_secs(20));
    assert_eq!(p.interval(), Some(Duration::from_secs(10)));
    // Disabled loop.
    let p = AnnouncePolicy {
        reannounce_interval: Duration::MAX,
        ..AnnouncePolicy::default()
    };
    assert!(!p.enabled());
    assert_eq!(p.interval(), None);
    assert_eq!(p.ttl_ms(), MAX_TTL_MS);
    // Never a TTL verifiers would refuse.
    let p = AnnouncePolicy {
        reannounce_interval: Duration::from_secs(7200),
        ..AnnouncePolicy::default()
    };
    assert_eq!(p.ttl_ms(), MAX_TTL_MS);
    assert_eq!(p.interval(), Some(Duration::from_millis(MAX_TTL_MS / 2)));
}

#[test]
fn throttle_delays_but_never_drops() {
    let mut t = AnnounceThrottle::new(AnnouncePolicy::default());
    assert_eq!(t.next_due(), None);
    assert!(!t.poll(NOW));
    t.request(NOW);
    assert!(t.poll(NOW), "first change goes out at once");
    assert!(!t.poll(NOW));
    // A change 3 s later is inside the 10 s window: delayed ...
    t.request(NOW + 3_000);
    assert_eq!(t.next_due(), Some(NOW + 10_000));
    assert!(!t.poll(NOW + 3_000));
    assert!(!t.poll(NOW + 9_999));
    // ... coalescing with a further change ...
    t.request(NOW + 5_000);
    // ... and sent when the window ends.
    assert!(t.poll(NOW + 10_000));
    assert!(!t.poll(NOW + 10_001));
    // With nothing pending, the periodic re-announce is due 150 s later.
    assert_eq!(t.next_due(), Some(NOW + 160_000));
    assert!(!t.poll(NOW + 159_999));
    assert!(t.poll(NOW + 160_000));
    // Clock jumping backwards does not stall a pending change.
    t.request(NOW);
    assert_eq!(t.next_due(), Some(NOW + 10_000));
    assert!(t.poll(NOW + 10_000));
}

#[test]
fn throttle_disabled_loop_still_sends_changes() {
    let p = AnnouncePolicy {
        reannounce_interval: Duration::MAX,
        ..AnnouncePolicy::default()
    };
    let mut t = AnnounceThrottle::new(p);
    t.request(NOW);
    assert!(t.poll(NOW));
    assert_eq!(t.next_due(), None, "no periodic re-announce");
    t.request(NOW + 1);
    assert!(t.poll(NOW + 10_000));
}

/// The reference system's self-inflicted outage, run for a simulated day:
/// a node serving `echo` re-announces on the throttle's schedule with the
/// policy's TTL; its gate must never deny the allowed peer, and a peer's
/// fold must never lose its entry. With `reannounce == false` (a one-time
/// announce, the reference bug) the gate starts denying after one TTL.
fn run_day(policy: AnnouncePolicy, reannounce: bool) -> (u64, u64) {
    let me = ident(1);
    let caller = ident(2).node_id();
    let mut own = CapabilityFold::new(FoldLimits::default());
    let mut peer_fold = CapabilityFold::new(FoldLimits::default());
    let mut throttle = AnnounceThrottle::new(policy);
    let mut stats = TrustStats::default();
    let (mut denied, mut missing) = (0, 0);
    throttle.request(NOW);
    let mut announced = false;
    for s in 0..86_400u64 {
        let now = NOW + s * 1_000;
        if throttle.poll(now) && (reannounce || !announced) {
            announced = true;
            let b = AnnouncementBody::new(
                me.node_id(),
                now,
                now,
                policy.ttl_ms(),
                vec![Capability::for_nodes("nrpc:echo", vec![caller])],
            );
            own.set_local(b.clone(), now);
            let bytes = SignedAnnouncement::sign(&me, &b).unwrap().encode();
            peer_fold
                .handle_announcement(&bytes, now, &mut stats)
                .unwrap();
        }
        peer_fold.sweep(now);
        denied += u64::from(!gate(&own, &me.node_id(), "echo", &caller, now, &mut stats));
        missing += u64::from(peer_fold.nodes_with_tag("nrpc:echo", now).next().is_none());
    }
    (denied, missing)
}

#[test]
fn reannounce_keeps_own_entry_alive_for_a_day() {
    assert_eq!(run_day(AnnouncePolicy::default(), true), (0, 0));
    // Re-announce configured below the throttle minimum: still no gap.
    let fast = AnnouncePolicy {
        reannounce_interval: Duration::from_secs(3),
        min_announce_interval: Duration::from_secs(10),
    };
    assert_eq!(run_day(fast, true), (0, 0));
    // Without re-announcing, the outage reproduces after one TTL (300 s).
    let (denied, missing) = run_day(AnnouncePolicy::default(), false);
    assert_eq!(denied, 86_400 - 300);
    assert_eq!(missing, 86_400 - 300);
}
