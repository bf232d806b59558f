//! The capability fold's memory bound: the charge per entry, the per-node
//! quota, the byte bound and its eviction order (newcomers, settled nodes,
//! protected peers), and a flood of 16 500 fresh identities.

mod common;

use std::collections::HashSet;

use common::{body, ident, seq_of, verified, NOW};
use net_crypto::{Identity, NodeId};
use net_trust::{
    entry_bytes, AnnounceError, AnnouncementBody, Capability, CapabilityFold, ClassHash,
    FoldLimits, SignedAnnouncement, TrustStats, CAPABILITY_OVERHEAD, DEFAULT_NODE_BYTES,
    ENTRY_OVERHEAD, MAX_ANNOUNCEMENT, MAX_CAPABILITIES, NODE_OVERHEAD,
};

/// `max` bytes with `newcomer` of them reserved for newcomers.
fn limits(max: usize, newcomer: usize, settle_ms: u64) -> FoldLimits {
    FoldLimits {
        max_bytes: max,
        newcomer_bytes: newcomer,
        settle_ms,
        ..FoldLimits::default()
    }
}

/// Identity `i` of family `family` (deterministic, distinct from `ident`).
fn fresh(family: u8, i: u32) -> Identity {
    let mut seed = [family; 32];
    seed[..4].copy_from_slice(&i.to_le_bytes());
    Identity::from_seed(&seed)
}

/// What a node announcing `body(.., vec![])` (one open `nrpc:echo`) is
/// charged.
fn small() -> usize {
    NODE_OVERHEAD + ENTRY_OVERHEAD + CAPABILITY_OVERHEAD + "nrpc:echo".len()
}

/// `id` announces `body(id, seq, [])` issued and applied at `at`.
fn announce(
    fold: &mut CapabilityFold,
    id: &Identity,
    seq: u64,
    at: u64,
    stats: &mut TrustStats,
) -> Result<(), AnnounceError> {
    let mut b = body(id.node_id(), seq, vec![]);
    b.issued_at_ms = at;
    let bytes = SignedAnnouncement::sign(id, &b).unwrap().encode();
    let r = fold.handle_announcement(&bytes, at, stats);
    fold.assert_invariants();
    r
}

/// `nrpc:echo` and 63 one-byte tags (the most capabilities, each charged
/// [`CAPABILITY_OVERHEAD`]), with `ids` allowed node ids spread over them.
fn max_set(node: NodeId, seq: u64, at: u64, ids: usize) -> AnnouncementBody {
    let tags = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_";
    let mut caps = vec![Capability::open("nrpc:echo")];
    caps.extend(tags.chars().map(|c| Capability::open(c.to_string())));
    assert_eq!(caps.len(), MAX_CAPABILITIES);
    for k in 0..ids {
        let mut n = [0xEE; 32];
        n[..8].copy_from_slice(&(k as u64).to_le_bytes());
        caps[k % MAX_CAPABILITIES].allowed_nodes.push(NodeId(n));
    }
    AnnouncementBody::new(node, seq, at, 300_000, caps)
}

/// The most allowed ids [`max_set`] can carry within `MAX_ANNOUNCEMENT`:
/// the capability set charged the most of all that sign.
fn max_ids() -> usize {
    let id = ident(1);
    let fits = |n| SignedAnnouncement::sign(&id, &max_set(id.node_id(), 1, NOW, n)).is_ok();
    let (mut lo, mut hi) = (0, MAX_ANNOUNCEMENT / 32);
    assert!(fits(lo) && !fits(hi));
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if fits(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

#[test]
fn charge_is_the_documented_formula() {
    let a = ident(1);
    let mut b = body(a.node_id(), 1, vec![ident(2).node_id(), ident(3).node_id()]);
    let mut cap = Capability::open("x");
    cap.allowed_groups.push([1; 32]);
    cap.allowed_subnets.push([2; 16]);
    b.capabilities.push(cap);
    let expect = ENTRY_OVERHEAD + (CAPABILITY_OVERHEAD + 9 + 64) + (CAPABILITY_OVERHEAD + 1 + 48);
    assert_eq!(entry_bytes(&b), expect);
    let mut fold = CapabilityFold::new(FoldLimits::default());
    fold.apply(verified(&a, &b, NOW), NOW).unwrap();
    assert_eq!(fold.bytes(), NODE_OVERHEAD + expect);
    assert_eq!(fold.node_bytes(&a.node_id()), NODE_OVERHEAD + expect);
    // A second class of the same node: no second node overhead.
    let mut other = body(a.node_id(), 1, vec![]);
    other.class = ClassHash::of("placement");
    fold.apply(verified(&a, &other, NOW), NOW).unwrap();
    assert_eq!(fold.bytes(), small() + expect);
    // Local entries are not charged.
    fold.set_local(body(ident(9).node_id(), 1, vec![]), NOW);
    assert_eq!(fold.bytes(), small() + expect);
    fold.assert_invariants();
    // The costliest valid announcement fits the default quota, and is
    // charged at most its wire length plus the fixed overheads.
    let m = max_set(a.node_id(), 2, NOW, max_ids());
    let wire = SignedAnnouncement::sign(&a, &m).unwrap().encoded_len();
    let charge = NODE_OVERHEAD + entry_bytes(&m);
    eprintln!("costliest valid announcement: {wire} B on the wire, charged {charge} B");
    assert!(charge <= DEFAULT_NODE_BYTES);
    assert!(entry_bytes(&m) <= wire + ENTRY_OVERHEAD + MAX_CAPABILITIES * CAPABILITY_OVERHEAD);
}

#[test]
fn per_node_quota_spans_classes() {
    let (a, b) = (ident(1), ident(2));
    let mut fold = CapabilityFold::new(FoldLimits::default());
    let mut stats = TrustStats::default();
    let per = entry_bytes(&body(a.node_id(), 1, vec![]));
    let fits = (DEFAULT_NODE_BYTES - NODE_OVERHEAD) / per;
    let in_class = |c: usize, seq: u64, allowed: Vec<NodeId>| {
        let mut x = body(a.node_id(), seq, allowed);
        x.class = ClassHash::of(&format!("class-{c}"));
        verified(&a, &x, NOW)
    };
    for c in 0..fits {
        fold.apply_counted(in_class(c, 1, vec![]), NOW, &mut stats)
            .unwrap();
    }
    let over = fold.apply_counted(in_class(fits, 1, vec![]), NOW, &mut stats);
    assert_eq!(over, Err(AnnounceError::OverQuota));
    assert_eq!(fold.node_bytes(&a.node_id()), NODE_OVERHEAD + fits * per);
    assert!(fold.node_bytes(&a.node_id()) <= DEFAULT_NODE_BYTES);
    // Growing an entry past the quota is refused and the entry stays;
    // shrinking it back is fine.
    let room = DEFAULT_NODE_BYTES - fold.node_bytes(&a.node_id());
    let grown = vec![ident(3).node_id(); room / 32 + 1];
    let r = fold.apply_counted(in_class(0, 2, grown), NOW, &mut stats);
    assert_eq!(r, Err(AnnounceError::OverQuota));
    let cap = fold
        .get(ClassHash::of("class-0"), &a.node_id(), NOW)
        .unwrap();
    assert_eq!(cap.seq, 1);
    fold.apply_counted(in_class(0, 3, vec![]), NOW, &mut stats)
        .unwrap();
    assert_eq!((stats.over_quota, stats.envelope_errors()), (2, 2));
    // Other nodes are unaffected; a costliest-set node gets one such
    // entry, not two.
    let big = max_set(b.node_id(), 1, NOW, max_ids());
    fold.apply(verified(&b, &big, NOW), NOW).unwrap();
    let mut second = big.clone();
    second.class = ClassHash::of("placement");
    let r = fold.apply(verified(&b, &second, NOW), NOW);
    assert_eq!(r, Err(AnnounceError::OverQuota));
    fold.assert_invariants();
}

#[test]
fn byte_bound_refuses_only_what_it_cannot_evict() {
    // No newcomer reserve and immediate settling: every node settles, so
    // a full fold has nothing an unprotected node may evict.
    let ids: Vec<Identity> = (1..=4).map(ident).collect();
    let mut fold = CapabilityFold::new(limits(3 * small(), 0, 0));
    let mut stats = TrustStats::default();
    let mut short = body(ids[0].node_id(), 1, vec![]);
    short.ttl_ms = 1_000;
    fold.apply(verified(&ids[0], &short, NOW), NOW).unwrap();
    for id in &ids[1..3] {
        announce(&mut fold, id, 1, NOW, &mut stats).unwrap();
    }
    assert!(ids[..3].iter().all(|i| fold.is_settled(&i.node_id())));
    assert_eq!(fold.bytes(), 3 * small());
    let fourth = verified(&ids[3], &body(ids[3].node_id(), 1, vec![]), NOW);
    let r = fold.apply_counted(fourth.clone(), NOW, &mut stats);
    assert_eq!(r, Err(AnnounceError::FoldFull));
    assert_eq!((stats.fold_full, stats.fold_evicted), (1, 0));
    // Existing nodes still update at the same size; growing is refused
    // (nothing to evict) and the entry stays.
    announce(&mut fold, &ids[1], 2, NOW, &mut stats).unwrap();
    let grown = verified(
        &ids[1],
        &body(ids[1].node_id(), 3, vec![ids[0].node_id()]),
        NOW,
    );
    assert_eq!(fold.apply(grown, NOW), Err(AnnounceError::FoldFull));
    assert_eq!(seq_of(&fold, &ids[1].node_id()), Some(2));
    // Our own entry is never refused and does not count.
    let me = ident(50);
    fold.set_local(body(me.node_id(), 1, vec![]), NOW);
    assert_eq!((fold.len(), fold.remote_len()), (4, 3));
    // Once an entry expires, room is made for the new node.
    fold.apply(fourth, NOW + 1_000).unwrap();
    assert_eq!(fold.remote_len(), 3);
    assert!(fold
        .get(ClassHash::CAPABILITIES, &ids[0].node_id(), NOW + 1_000)
        .is_none());
    fold.assert_invariants();
}

#[test]
fn full_fold_evicts_the_oldest_newcomer_first() {
    let mut fold = CapabilityFold::new(limits(5 * small(), 2 * small(), 600_000));
    let mut stats = TrustStats::default();
    let n: Vec<Identity> = (0..8).map(|i| fresh(0x51, i)).collect();
    for (i, id) in n[..5].iter().enumerate() {
        announce(&mut fold, id, 1, NOW + i as u64, &mut stats).unwrap();
    }
    assert_eq!(fold.bytes(), 5 * small());
    // Full: the next newcomer evicts the oldest (n0), not itself.
    announce(&mut fold, &n[5], 1, NOW + 5, &mut stats).unwrap();
    let live = |f: &CapabilityFold, i: usize| seq_of(f, &n[i].node_id()).is_some();
    assert!(!live(&fold, 0) && (1..=5).all(|i| live(&fold, i)));
    // Re-announcing keeps a node's place: n1 is still the oldest.
    announce(&mut fold, &n[1], 2, NOW + 6, &mut stats).unwrap();
    announce(&mut fold, &n[6], 1, NOW + 7, &mut stats).unwrap();
    assert!(!live(&fold, 1) && (2..=6).all(|i| live(&fold, i)));
    assert_eq!((stats.fold_evicted, fold.evictions()), (2, 2));
    assert_eq!(stats.fold_full, 0);
    // An evicted node comes back as the youngest.
    announce(&mut fold, &n[0], 2, NOW + 8, &mut stats).unwrap();
    assert!(live(&fold, 0) && !live(&fold, 2));
    assert!(fold.bytes() <= 5 * small());
}

/// `ids` announce every 150 s from `NOW` until `until` (inclusive), the
/// `i`-th `i` ms after the others' (so they are first seen in order).
fn keep_alive(fold: &mut CapabilityFold, ids: &[Identity], until: u64, stats: &mut TrustStats) {
    for step in 0..=(until - NOW) / 150_000 {
        for (i, id) in ids.iter().enumerate() {
            let at = NOW + step * 150_000 + i as u64;
            announce(fold, id, step + 1, at, stats).unwrap();
        }
    }
}

#[test]
fn settled_nodes_survive_newcomers_and_the_reserve_holds() {
    let s = small();
    let mut fold = CapabilityFold::new(limits(6 * s, 2 * s, 600_000));
    let mut stats = TrustStats::default();
    let old: Vec<Identity> = (0..5).map(|i| fresh(0x52, i)).collect();
    keep_alive(&mut fold, &old, NOW + 600_000, &mut stats);
    // Four settle at their re-announce after 600 s; the fifth would break
    // the newcomer reserve (6 - 2 nodes' worth) and stays a newcomer.
    assert!(old[..4].iter().all(|i| fold.is_settled(&i.node_id())));
    assert!(!fold.is_settled(&old[4].node_id()));
    assert_eq!(fold.settled_bytes(), 4 * s);
    for i in 0..50 {
        let at = NOW + 600_000 + 1 + i;
        let r = announce(&mut fold, &fresh(0x53, i as u32), 1, at, &mut stats);
        assert_eq!(r, Ok(()), "a newcomer is always admitted");
        assert!(fold.bytes() <= 6 * s);
        assert!(old[..4]
            .iter()
            .all(|i| seq_of(&fold, &i.node_id()).is_some()));
    }
    // The unsettled old node went first; 48 of the fresh ones after it.
    assert!(seq_of(&fold, &old[4].node_id()).is_none());
    assert_eq!(stats.fold_evicted, 49);
}

#[test]
fn protected_peers_are_admitted_into_a_full_fold() {
    let s = small();
    let mut fold = CapabilityFold::new(limits(4 * s, s, 600_000));
    let mut stats = TrustStats::default();
    let peers: Vec<Identity> = (0..3).map(|i| fresh(0x54, i)).collect();
    fold.set_protected(peers.iter().map(Identity::node_id));
    let old: Vec<Identity> = (0..3).map(|i| fresh(0x55, i)).collect();
    keep_alive(&mut fold, &old, NOW + 600_000, &mut stats);
    assert_eq!(fold.settled_bytes(), 3 * s);
    let t = NOW + 600_001;
    announce(&mut fold, &fresh(0x56, 0), 1, t, &mut stats).unwrap();
    assert_eq!(fold.bytes(), 4 * s);
    // A peer evicts the newcomer first, then the youngest settled node.
    announce(&mut fold, &peers[0], 1, t, &mut stats).unwrap();
    assert!(seq_of(&fold, &fresh(0x56, 0).node_id()).is_none());
    assert_eq!(fold.settled_bytes(), 3 * s);
    announce(&mut fold, &peers[1], 1, t, &mut stats).unwrap();
    assert!(
        seq_of(&fold, &old[2].node_id()).is_none(),
        "youngest settled"
    );
    assert!(old[..2]
        .iter()
        .all(|i| seq_of(&fold, &i.node_id()).is_some()));
    assert_eq!(stats.fold_evicted, 2);
    // Protected nodes eat the newcomer reserve: with two peers and two
    // settled nodes the fold has nothing a newcomer may evict.
    let r = announce(&mut fold, &fresh(0x56, 1), 1, t, &mut stats);
    assert_eq!(r, Err(AnnounceError::FoldFull));
    // Protected nodes are never evicted, not even for each other: the third
    // peer gets the last settled node's room.
    announce(&mut fold, &peers[2], 1, t, &mut stats).unwrap();
    assert!(peers.iter().all(|p| seq_of(&fold, &p.node_id()).is_some()));
    assert!(fold.is_protected(&peers[0].node_id()));
    // Leaving the protected set makes a node a newcomer again.
    fold.set_protected(peers[..2].iter().map(Identity::node_id));
    fold.assert_invariants();
    announce(&mut fold, &fresh(0x56, 2), 1, t, &mut stats).unwrap();
    assert!(seq_of(&fold, &peers[2].node_id()).is_none());
}

/// Resident memory of this process (Linux `statm`, 4 KiB pages; 0
/// elsewhere). For the printed figures only: other tests run alongside.
fn rss() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<usize>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// Fresh identity `i` of the flood announces the costliest set at `at`.
fn flood_one(fold: &mut CapabilityFold, i: u32, at: u64, ids: usize, stats: &mut TrustStats) {
    let id = fresh(0xF0, i);
    let body = max_set(id.node_id(), 1, at, ids);
    let bytes = SignedAnnouncement::sign(&id, &body).unwrap().encode();
    let r = fold.handle_announcement(&bytes, at, stats);
    assert_eq!(r, Ok(()), "a newcomer is admitted (arrival {i})");
}

/// How many of `nodes` discovery of `nrpc:echo` misses at `at`.
fn undiscoverable(fold: &CapabilityFold, nodes: &[NodeId], at: u64) -> usize {
    let found: HashSet<NodeId> = fold.nodes_with_tag("nrpc:echo", at).collect();
    nodes.iter().filter(|n| !found.contains(n)).count()
}

/// Issue 12: 16 500 fresh identities, each announcing the costliest valid
/// capability set (`nrpc:echo` among them), into a fold with the default
/// limits. At every step the fold stays within its byte bound and every
/// configured peer that has announced — half before the flood, half
/// during it — and every long-lived node stays discoverable; a newcomer
/// arriving mid-flood stays for at least the arrivals the newcomer reserve
/// guarantees; a node arriving after the flood gets in.
#[test]
fn flood_of_16500_fresh_identities_stays_within_the_byte_bound() {
    const FLOOD: u32 = 16_500;
    let limits = FoldLimits::default();
    let (mut fold, mut stats) = (CapabilityFold::new(limits), TrustStats::default());
    let peers: Vec<Identity> = (0..8).map(|i| fresh(0xA0, i)).collect();
    fold.set_protected(peers.iter().map(Identity::node_id));
    let long: Vec<Identity> = (0..16).map(|i| fresh(0xB0, i)).collect();
    let before: Vec<Identity> = peers[..4].iter().chain(&long).cloned().collect();
    keep_alive(&mut fold, &before, NOW + 750_000, &mut stats);
    assert!(long.iter().all(|l| fold.is_settled(&l.node_id())));
    let (start, ids) = (NOW + 750_100, max_ids());
    let sample = max_set(peers[0].node_id(), 1, start, ids);
    let wire = SignedAnnouncement::sign(&peers[0], &sample)
        .unwrap()
        .encoded_len();
    let charge = NODE_OVERHEAD + entry_bytes(&sample);
    // The reserve's guarantee: every newcomer older than the mid-flood one
    // goes first, and newcomers share at least the reserve minus what the
    // peers hold.
    let guaranteed = (limits.newcomer_bytes - 9 * small()) / charge - 1;
    let honest = fresh(0xC0, 0);
    let mut announced: Vec<NodeId> = before.iter().map(Identity::node_id).collect();
    let (mut peak, mut honest_stayed, rss_before) = (0, None, rss());
    for i in 0..FLOOD {
        let at = start + u64::from(i);
        flood_one(&mut fold, i, at, ids, &mut stats);
        peak = peak.max(fold.bytes());
        assert!(fold.bytes() <= limits.max_bytes, "byte bound at step {i}");
        if i % 4_000 == 3_999 {
            let p = &peers[4 + (i / 4_000) as usize];
            announce(&mut fold, p, 1, at, &mut stats).unwrap();
            announced.push(p.node_id());
        }
        if i == 10_000 {
            announce(&mut fold, &honest, 1, at, &mut stats).unwrap();
        }
        if i > 10_000 && honest_stayed.is_none() && seq_of(&fold, &honest.node_id()).is_none() {
            honest_stayed = Some(i - 10_000);
        }
        if i % 100 == 0 || i + 1 == FLOOD {
            assert_eq!(undiscoverable(&fold, &announced, at), 0, "step {i}");
        }
        if i % 1_000 == 0 {
            fold.assert_invariants();
        }
    }
    let rss_after = rss();
    let stayed = honest_stayed.unwrap_or(FLOOD - 10_000) as usize;
    assert!(stayed > guaranteed, "{stayed} <= {guaranteed}");
    assert_eq!(announced.len(), 24);
    let (held, entries, evicted) = (fold.bytes(), fold.remote_len(), fold.evictions());
    // After the flood: a late node gets in, the mid-flood one is back on its
    // next re-announce, and the peers and long-lived nodes are all there.
    let (end, late) = (start + u64::from(FLOOD), fresh(0xC0, 1));
    announce(&mut fold, &late, 1, end, &mut stats).unwrap();
    announce(&mut fold, &honest, 2, end, &mut stats).unwrap();
    let want: Vec<NodeId> = peers
        .iter()
        .chain(&long)
        .chain([&late, &honest])
        .map(Identity::node_id)
        .collect();
    assert_eq!(undiscoverable(&fold, &want, end), 0);
    assert!(long.iter().all(|l| fold.is_settled(&l.node_id())));
    assert_eq!(stats.fold_evicted, fold.evictions());
    assert_eq!((stats.fold_full, stats.over_quota), (0, 0));
    eprintln!(
        "fold flood: {FLOOD} fresh identities x {wire} B on the wire ({charge} B charged each): \
         held {held} B of {} B (peak {peak} B), {entries} remote entries, {evicted} evicted, \
         settled {} B; mid-flood newcomer stayed {stayed} arrivals (guaranteed > {guaranteed}); \
         process RSS {} -> {} MiB",
        limits.max_bytes,
        fold.settled_bytes(),
        rss_before >> 20,
        rss_after >> 20,
    );
}
