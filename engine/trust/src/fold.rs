//! The capability fold: the latest verified announcement of each (class,
//! node), with TTL expiry, a bound in bytes, a per-node quota, and an
//! eviction order under which configured peers and long-lived nodes
//! survive a flood of freshly minted identities.
//!
//! # What an entry costs ([`entry_bytes`])
//!
//! Every remote entry is charged the heap it makes the fold hold: each
//! payload byte what it costs on the wire (a tag byte, a 32-byte node id or
//! group tag, a 16-byte subnet tag), plus fixed overheads for the
//! structures decoding builds ([`CAPABILITY_OVERHEAD`] per capability,
//! [`ENTRY_OVERHEAD`] per entry) and [`NODE_OVERHEAD`] once per node that
//! has remote entries. The length prefixes, header and signature of the
//! wire form are not kept, so the charge is at most the encoded length plus
//! the fixed overheads; it is what matters for memory, which an encoded
//! length alone understates (64 one-byte tags are 320 wire bytes but about
//! 8 KiB of decoded structures). The largest valid capabilities
//! announcement (8 KiB on the wire) is charged about 20 KiB.
//!
//! # Tiers and eviction ([`FoldLimits`])
//!
//! Each node with remote entries is in one tier:
//! * **protected**: a configured peer ([`CapabilityFold::set_protected`]);
//!   never evicted, only expired;
//! * **settled**: in the fold for at least `settle_ms` (an honest node
//!   keeps its entry by re-announcing; an evicted or expired node starts
//!   over), promoted when it next announces if settled nodes then hold at
//!   most `max_bytes - newcomer_bytes`; evicted only to admit a protected
//!   node, youngest first;
//! * **newcomer**: everyone else. When the fold is full, the oldest
//!   newcomer is evicted first (first in, first out).
//!
//! What that guarantees, at the byte bound and under a sustained flood of
//! fresh identities:
//! * configured peers are always admitted while protected nodes alone stay
//!   under the bound (≥ `max_bytes / max_node_bytes` peers);
//! * settled nodes are never evicted to admit an unprotected node;
//! * newcomers always share at least `newcomer_bytes` minus what protected
//!   nodes hold, so a newcomer is always admitted (unless its own entry is
//!   over quota), and is evicted only after every newcomer older than it:
//!   it stays discoverable until at least that many bytes of newer
//!   newcomers arrived after it. Fresh identities reach the fold only
//!   first-hand, over a session of their own, so the handshake rate limit
//!   bounds how fast that happens; a flood faster than
//!   `newcomer_bytes / settle_ms` keeps newcomers (its own identities
//!   included) from settling, but never touches settled or protected nodes.

use std::collections::{BTreeSet, HashMap, HashSet};

use net_crypto::NodeId;

use crate::capability::{AnnouncementBody, ClassHash};
use crate::envelope::decode_and_verify;
use crate::{AnnounceError, TrustStats, Verified};

/// Default [`FoldLimits::max_bytes`]: 32 MiB. Room for about 24 000
/// typical nodes (one service, ~1.4 KiB charged each; the previous count
/// bound allowed 16 384 entries) or about 1 600 nodes announcing the
/// largest valid set (~20 KiB), against 214 MiB a flood of 16 500 fresh
/// identities used to pin.
pub const DEFAULT_FOLD_BYTES: usize = 32 << 20;

/// Default [`FoldLimits::max_node_bytes`]: 32 KiB per node across classes.
/// Holds the largest valid capabilities announcement (~20 KiB charged)
/// plus small entries of other classes.
pub const DEFAULT_NODE_BYTES: usize = 32 << 10;

/// Default [`FoldLimits::settle_ms`]: 10 minutes, two default TTLs (four
/// re-announce intervals of an honest node).
pub const DEFAULT_SETTLE_MS: u64 = 600_000;

/// Bytes charged per remote entry besides its capabilities: the hash-table
/// slot of key and entry (~150 B, up to 3.5 × with the table's spare
/// capacity, which the fold shrinks beyond that), the capability vector's
/// heap block and the entry's place in its node's class list.
pub const ENTRY_OVERHEAD: usize = 640;

/// Bytes charged per capability besides its payload: the 96-byte
/// `Capability` plus the allocator's overhead on its four heap blocks (tag
/// and three lists, at most 24 B each).
pub const CAPABILITY_OVERHEAD: usize = 192;

/// Bytes charged once per node with remote entries: its accounting record
/// (with the table's spare capacity), its place in the eviction order and
/// its class list.
pub const NODE_OVERHEAD: usize = 512;

/// The bytes a remote entry with this body is charged (see the module
/// docs): `ENTRY_OVERHEAD + Σ (CAPABILITY_OVERHEAD + tag + 32 · nodes + 32
/// · groups + 16 · subnets)`.
pub fn entry_bytes(body: &AnnouncementBody) -> usize {
    body.capabilities
        .iter()
        .map(|c| {
            CAPABILITY_OVERHEAD
                + c.tag.len()
                + 32 * c.allowed_nodes.len()
                + 32 * c.allowed_groups.len()
                + 16 * c.allowed_subnets.len()
        })
        .sum::<usize>()
        + ENTRY_OVERHEAD
}

/// Size and share limits of a [`CapabilityFold`] (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FoldLimits {
    /// Bound on the bytes charged to all remote entries
    /// ([`DEFAULT_FOLD_BYTES`]). Never exceeded.
    pub max_bytes: usize,
    /// Bound on the bytes charged to one node's remote entries across all
    /// classes, [`NODE_OVERHEAD`] included ([`DEFAULT_NODE_BYTES`]); an
    /// announcement that would exceed it is `OverQuota`.
    pub max_node_bytes: usize,
    /// Bytes reserved for newcomers: settled nodes hold at most
    /// `max_bytes - newcomer_bytes` (default a quarter of `max_bytes`).
    pub newcomer_bytes: usize,
    /// How long a node must have been in the fold before it can settle
    /// ([`DEFAULT_SETTLE_MS`]).
    pub settle_ms: u64,
}

impl Default for FoldLimits {
    fn default() -> FoldLimits {
        FoldLimits::with_max_bytes(DEFAULT_FOLD_BYTES)
    }
}

impl FoldLimits {
    /// `max_bytes` with the default quota and settle time, and a quarter of
    /// it reserved for newcomers.
    pub fn with_max_bytes(max_bytes: usize) -> FoldLimits {
        FoldLimits {
            max_bytes,
            max_node_bytes: DEFAULT_NODE_BYTES,
            newcomer_bytes: max_bytes / 4,
            settle_ms: DEFAULT_SETTLE_MS,
        }
    }

    /// Most bytes settled nodes may hold.
    fn settled_cap(&self) -> usize {
        self.max_bytes.saturating_sub(self.newcomer_bytes)
    }
}

/// One fold entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The announcement; `body.node_id` equals the key's node id.
    pub(crate) body: AnnouncementBody,
    /// Set by [`CapabilityFold::set_local`]: this node's own state. Only a
    /// local entry can open the callee gate, and only `set_local` can
    /// replace one.
    pub(crate) local: bool,
    /// [`entry_bytes`] of `body` for a remote entry; 0 for a local one.
    bytes: usize,
}

/// A node's tier (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tier {
    Newcomer = 0,
    Settled = 1,
    Protected = 2,
}

/// Accounting of one node that has remote entries.
#[derive(Clone, Debug)]
struct NodeState {
    /// When its first entry (still held) was admitted.
    first_seen_ms: u64,
    /// Charged bytes: [`NODE_OVERHEAD`] plus its entries' bytes.
    bytes: usize,
    tier: Tier,
    /// Classes of its remote entries (non-empty while it is tracked).
    classes: Vec<ClassHash>,
}

/// A remote or local entry as a snapshot carries it.
pub(crate) struct Restored {
    pub(crate) body: AnnouncementBody,
    pub(crate) local: bool,
    pub(crate) first_seen_ms: u64,
    pub(crate) settled: bool,
}

/// Announcement state of the mesh, keyed by `(class, node id)`.
///
/// Invariants:
/// * A remote entry is only ever created or replaced from a [`Verified`]
///   announcement, and its key's node id is the **verified signer**
///   ([`Verified::signer`]), never an id read from the body. Combined with
///   the `NodeIdMismatch` check in verification, no peer can place or
///   alter state under another node's id.
/// * A replacement must carry a strictly greater `seq` (`Stale`
///   otherwise), compared even against an expired entry until it is swept
///   (or its node evicted).
/// * The bytes charged to remote entries ([`CapabilityFold::bytes`]) never
///   exceed `max_bytes`, one node's never exceed `max_node_bytes`
///   (`OverQuota`), and settled nodes' never exceed `max_bytes -
///   newcomer_bytes`. At the bound, room is made by the eviction order of
///   the module docs, else the announcement is `FoldFull` (the current
///   entry, if any, stays). This node's own entries
///   ([`CapabilityFold::set_local`]) are never counted and never refused,
///   so a flood of announcements cannot lock a node out of its own gate.
/// * Expired entries are invisible to every read and removed by
///   [`CapabilityFold::sweep`].
#[derive(Clone, Debug)]
pub struct CapabilityFold {
    pub(crate) entries: HashMap<(ClassHash, NodeId), Entry>,
    nodes: HashMap<NodeId, NodeState>,
    /// Newcomer nodes by `(first_seen_ms, id)`: the eviction order.
    newcomers: BTreeSet<(u64, NodeId)>,
    /// Settled nodes by `(first_seen_ms, id)`.
    settled: BTreeSet<(u64, NodeId)>,
    protected: HashSet<NodeId>,
    limits: FoldLimits,
    /// Charged bytes per tier (indexed by `Tier as usize`).
    tier_bytes: [usize; 3],
    /// Number of entries with `local == false`.
    remote: usize,
    /// No entry expires before this (a lower bound; `u64::MAX` if empty),
    /// so a sweep with nothing to remove costs nothing.
    earliest_expiry: u64,
    /// Remote entries evicted to make room, in total.
    evicted: u64,
}

impl CapabilityFold {
    /// An empty fold with these limits and no protected nodes.
    pub fn new(limits: FoldLimits) -> CapabilityFold {
        CapabilityFold {
            entries: HashMap::new(),
            nodes: HashMap::new(),
            newcomers: BTreeSet::new(),
            settled: BTreeSet::new(),
            protected: HashSet::new(),
            limits,
            tier_bytes: [0; 3],
            remote: 0,
            earliest_expiry: u64::MAX,
            evicted: 0,
        }
    }

    /// Rebuilds a fold from a snapshot's entries (used by restore, whose
    /// input is authenticated as this node's own and was within `limits`).
    pub(crate) fn from_entries(limits: FoldLimits, entries: Vec<Restored>) -> CapabilityFold {
        let mut fold = CapabilityFold::new(limits);
        for r in entries {
            let key = (r.body.class, r.body.node_id);
            fold.earliest_expiry = fold.earliest_expiry.min(r.body.expires_at_ms());
            if r.local {
                fold.insert_local(r.body);
                continue;
            }
            if let Some(old) = fold.entries.remove(&key) {
                fold.unaccount(key, &old);
            }
            let bytes = entry_bytes(&r.body);
            fold.account(key, bytes, r.first_seen_ms);
            if r.settled {
                fold.settle(&key.1);
            }
            let entry = Entry {
                body: r.body,
                local: false,
                bytes,
            };
            fold.entries.insert(key, entry);
        }
        fold
    }

    /// The nodes whose entries are protected: this node's configured peers.
    /// Replaces the previous set; a node leaving it becomes a newcomer
    /// (settling again when it next announces).
    pub fn set_protected(&mut self, nodes: impl IntoIterator<Item = NodeId>) {
        self.protected = nodes.into_iter().collect();
        let tracked: Vec<NodeId> = self.nodes.keys().copied().collect();
        for node in tracked {
            let tier = self.nodes[&node].tier;
            if self.protected.contains(&node) {
                self.set_tier(&node, Tier::Protected);
            } else if tier == Tier::Protected {
                self.set_tier(&node, Tier::Newcomer);
            }
        }
    }

    /// Whether `node` is protected.
    pub fn is_protected(&self, node: &NodeId) -> bool {
        self.protected.contains(node)
    }

    /// Applies a verified announcement at `now_ms`, keyed by
    /// `(body.class, v.signer())`.
    ///
    /// Errors: `Expired` (it expired since verification), `OwnEntry` (the
    /// key holds this node's locally set entry), `Stale` (`seq` not
    /// greater than the entry's), `OverQuota` (the signer's entries would
    /// exceed `max_node_bytes`), `FoldFull` (no room even after sweeping
    /// and evicting what the signer's tier may evict). Count them, and the
    /// evictions, with [`CapabilityFold::apply_counted`].
    pub fn apply(&mut self, v: Verified, now_ms: u64) -> Result<(), AnnounceError> {
        let signer = v.signer();
        let body = v.into_body();
        if body.expires_at_ms() <= now_ms {
            return Err(AnnounceError::Expired);
        }
        let key = (body.class, signer);
        let cost = entry_bytes(&body);
        self.check_replace(&key, body.seq)?;
        let mut growth = self.growth(&key, cost)?;
        if self.tier_bytes.iter().sum::<usize>() + growth > self.limits.max_bytes {
            self.sweep(now_ms);
            self.check_replace(&key, body.seq)?;
            growth = self.growth(&key, cost)?;
            self.make_room(&signer, growth)?;
        }
        self.earliest_expiry = self.earliest_expiry.min(body.expires_at_ms());
        if let Some(e) = self.entries.get_mut(&key) {
            // A replacement keeps the node's first-seen time and tier.
            let old = std::mem::replace(&mut e.bytes, cost);
            e.body = body;
            self.recharge(&signer, old, cost);
        } else {
            self.account(key, cost, now_ms);
            let entry = Entry {
                body,
                local: false,
                bytes: cost,
            };
            self.entries.insert(key, entry);
        }
        self.maybe_settle(&signer, now_ms);
        Ok(())
    }

    /// [`CapabilityFold::apply`], counting a refusal under its error's
    /// counter and the entries evicted to make room in `fold_evicted`.
    pub fn apply_counted(
        &mut self,
        v: Verified,
        now_ms: u64,
        stats: &mut TrustStats,
    ) -> Result<(), AnnounceError> {
        let before = self.evicted;
        let r = self.apply(v, now_ms);
        stats.fold_evicted += self.evicted - before;
        if let Err(e) = &r {
            stats.count(e);
        }
        r
    }

    /// Decodes, verifies and applies wire bytes, counting every outcome in
    /// `stats` (the verification outcome, then any fold error and the
    /// evictions).
    pub fn handle_announcement(
        &mut self,
        bytes: &[u8],
        now_ms: u64,
        stats: &mut TrustStats,
    ) -> Result<(), AnnounceError> {
        let v = decode_and_verify(bytes, now_ms, stats)?;
        self.apply_counted(v, now_ms, stats)
    }

    /// `OwnEntry` / `Stale` against the current entry under `key`.
    fn check_replace(&self, key: &(ClassHash, NodeId), seq: u64) -> Result<(), AnnounceError> {
        match self.entries.get(key) {
            Some(e) if e.local => Err(AnnounceError::OwnEntry),
            Some(e) if seq <= e.body.seq => Err(AnnounceError::Stale),
            _ => Ok(()),
        }
    }

    /// How many bytes the node's charge grows by if the entry under `key`
    /// becomes one of `cost` bytes (0 if it shrinks); `OverQuota` if the
    /// node's charge would exceed `max_node_bytes`.
    fn growth(&self, key: &(ClassHash, NodeId), cost: usize) -> Result<usize, AnnounceError> {
        let old = self.entries.get(key).map_or(0, |e| e.bytes);
        let now = self.nodes.get(&key.1).map_or(0, |n| n.bytes);
        let after = now.max(NODE_OVERHEAD) - old + cost;
        if after > self.limits.max_node_bytes {
            return Err(AnnounceError::OverQuota);
        }
        Ok(after.saturating_sub(now))
    }

    /// Frees `need` bytes for `node` by evicting other nodes in the order of
    /// the module docs, or evicts nothing and returns `FoldFull` if even
    /// that cannot free enough.
    fn make_room(&mut self, node: &NodeId, need: usize) -> Result<(), AnnounceError> {
        let held: usize = self.tier_bytes.iter().sum();
        let free = self.limits.max_bytes.saturating_sub(held);
        if free >= need {
            return Ok(());
        }
        let protected = self.protected.contains(node);
        let (own_tier, own_bytes) = self
            .nodes
            .get(node)
            .map_or((None, 0), |n| (Some(n.tier), n.bytes));
        let evictable = |tier: Tier| {
            let own = if own_tier == Some(tier) { own_bytes } else { 0 };
            self.tier_bytes[tier as usize] - own
        };
        let mut room = free + evictable(Tier::Newcomer);
        if protected {
            room += evictable(Tier::Settled);
        }
        if room < need {
            return Err(AnnounceError::FoldFull);
        }
        while self.limits.max_bytes - self.tier_bytes.iter().sum::<usize>() < need {
            let oldest_newcomer = self.newcomers.iter().map(|(_, n)| *n).find(|n| n != node);
            let victim = oldest_newcomer.or_else(|| {
                protected
                    .then(|| {
                        self.settled
                            .iter()
                            .rev()
                            .map(|(_, n)| *n)
                            .find(|n| n != node)
                    })
                    .flatten()
            });
            match victim {
                Some(v) => self.evict_node(&v),
                None => return Err(AnnounceError::FoldFull),
            }
        }
        self.shrink();
        Ok(())
    }

    /// Removes every remote entry of `node`, counting them as evicted.
    fn evict_node(&mut self, node: &NodeId) {
        let classes = self
            .nodes
            .get(node)
            .map(|n| n.classes.clone())
            .unwrap_or_default();
        for class in classes {
            let key = (class, *node);
            if let Some(e) = self.entries.remove(&key) {
                self.unaccount(key, &e);
                self.evicted += 1;
            }
        }
    }

    /// Promotes a newcomer that has been in the fold for `settle_ms` if the
    /// settled tier has room for it.
    fn maybe_settle(&mut self, node: &NodeId, now_ms: u64) {
        let Some(n) = self.nodes.get(node) else {
            return;
        };
        let old_enough = now_ms.saturating_sub(n.first_seen_ms) >= self.limits.settle_ms;
        let fits = self.tier_bytes[Tier::Settled as usize] + n.bytes <= self.limits.settled_cap();
        if n.tier == Tier::Newcomer && old_enough && fits {
            self.set_tier(node, Tier::Settled);
        }
    }

    /// Settles a tracked newcomer (restore's settle flag).
    fn settle(&mut self, node: &NodeId) {
        let cap = self.limits.settled_cap();
        let settled = self.tier_bytes[Tier::Settled as usize];
        if self
            .nodes
            .get(node)
            .is_some_and(|n| n.tier == Tier::Newcomer && settled + n.bytes <= cap)
        {
            self.set_tier(node, Tier::Settled);
        }
    }

    /// Moves a tracked node between tiers, keeping the orders and per-tier
    /// byte counts in step.
    fn set_tier(&mut self, node: &NodeId, tier: Tier) {
        let Some(n) = self.nodes.get_mut(node) else {
            return;
        };
        let (old, bytes, order) = (n.tier, n.bytes, (n.first_seen_ms, *node));
        n.tier = tier;
        self.tier_bytes[old as usize] -= bytes;
        self.tier_bytes[tier as usize] += bytes;
        match old {
            Tier::Newcomer => self.newcomers.remove(&order),
            Tier::Settled => self.settled.remove(&order),
            Tier::Protected => false,
        };
        match tier {
            Tier::Newcomer => self.newcomers.insert(order),
            Tier::Settled => self.settled.insert(order),
            Tier::Protected => false,
        };
    }

    /// Charges a new remote entry of `bytes` under `key` to its node,
    /// tracking the node (first seen at `now_ms`) if it is new. A settled
    /// node pushed over the settled cap becomes a newcomer again.
    fn account(&mut self, key: (ClassHash, NodeId), bytes: usize, now_ms: u64) {
        let (class, node) = key;
        if !self.nodes.contains_key(&node) {
            let tier = if self.protected.contains(&node) {
                Tier::Protected
            } else {
                Tier::Newcomer
            };
            let state = NodeState {
                first_seen_ms: now_ms,
                bytes: NODE_OVERHEAD,
                tier,
                classes: Vec::new(),
            };
            self.nodes.insert(node, state);
            self.tier_bytes[tier as usize] += NODE_OVERHEAD;
            if tier == Tier::Newcomer {
                self.newcomers.insert((now_ms, node));
            }
        }
        if let Some(n) = self.nodes.get_mut(&node) {
            n.classes.push(class);
            self.remote += 1;
        }
        self.recharge(&node, 0, bytes);
    }

    /// A tracked node's entry went from `old` to `new` bytes. A settled
    /// node pushed over the settled cap becomes a newcomer again.
    fn recharge(&mut self, node: &NodeId, old: usize, new: usize) {
        let Some(n) = self.nodes.get_mut(node) else {
            return;
        };
        n.bytes = n.bytes - old + new;
        let tier = n.tier;
        self.tier_bytes[tier as usize] = self.tier_bytes[tier as usize] - old + new;
        if tier == Tier::Settled && self.tier_bytes[tier as usize] > self.limits.settled_cap() {
            self.set_tier(node, Tier::Newcomer);
        }
    }

    /// Uncharges a removed entry (nothing for a local one).
    fn unaccount(&mut self, key: (ClassHash, NodeId), e: &Entry) {
        if !e.local {
            self.unaccount_entry(key, e.bytes);
        }
    }

    /// Uncharges a removed remote entry of `bytes` under `key`, forgetting
    /// its node once it has none left.
    fn unaccount_entry(&mut self, key: (ClassHash, NodeId), bytes: usize) {
        let (class, node) = key;
        let Some(n) = self.nodes.get_mut(&node) else {
            return;
        };
        n.bytes -= bytes;
        if let Some(i) = n.classes.iter().position(|c| *c == class) {
            n.classes.swap_remove(i);
        }
        let (tier, empty, order) = (n.tier, n.classes.is_empty(), (n.first_seen_ms, node));
        self.tier_bytes[tier as usize] -= bytes;
        self.remote -= 1;
        if empty {
            self.nodes.remove(&node);
            self.tier_bytes[tier as usize] -= NODE_OVERHEAD;
            match tier {
                Tier::Newcomer => self.newcomers.remove(&order),
                Tier::Settled => self.settled.remove(&order),
                Tier::Protected => false,
            };
        }
    }

    /// Installs a local entry, uncharging a remote one it replaces.
    fn insert_local(&mut self, body: AnnouncementBody) {
        let key = (body.class, body.node_id);
        let entry = Entry {
            body,
            local: true,
            bytes: 0,
        };
        if let Some(old) = self.entries.insert(key, entry) {
            self.unaccount(key, &old);
        }
    }

    /// Gives back table capacity far beyond what is held, so the tables'
    /// spare room stays within what [`ENTRY_OVERHEAD`] and
    /// [`NODE_OVERHEAD`] charge for it.
    fn shrink(&mut self) {
        if self.entries.capacity() > 3 * self.entries.len() + 1024 {
            self.entries.shrink_to(self.entries.len());
        }
        if self.nodes.capacity() > 3 * self.nodes.len() + 1024 {
            self.nodes.shrink_to(self.nodes.len());
        }
    }

    /// Sets this node's own entry for `(body.class, body.node_id)`, with no
    /// signature check (it is our own state) and regardless of `seq`.
    ///
    /// The entry is marked local: the callee gate reads only local entries,
    /// a network announcement can never replace it (`OwnEntry`), and it
    /// does not count against the bound. It still expires at
    /// `issued_at_ms + ttl_ms`: call this again before then (the
    /// re-announce loop, [`crate::AnnounceThrottle`]). Also sweeps expired
    /// entries, so the re-announce tick doubles as the sweeper.
    ///
    /// The body should obey the announcement limits (the same body is
    /// signed and sent to peers): one over them cannot be signed and does
    /// not survive [`CapabilityFold::snapshot`] / `restore` (`Malformed`).
    pub fn set_local(&mut self, body: AnnouncementBody, now_ms: u64) {
        self.earliest_expiry = self.earliest_expiry.min(body.expires_at_ms());
        self.insert_local(body);
        self.sweep(now_ms);
    }

    /// Removes every entry expired at `now_ms` (local ones too: an expired
    /// entry authorizes nothing); returns how many.
    pub fn sweep(&mut self, now_ms: u64) -> usize {
        if now_ms < self.earliest_expiry {
            return 0;
        }
        let mut earliest = u64::MAX;
        let mut removed = Vec::new();
        self.entries.retain(|key, e| {
            let exp = e.body.expires_at_ms();
            let keep = exp > now_ms;
            if keep {
                earliest = earliest.min(exp);
            } else {
                removed.push((*key, e.local, e.bytes));
            }
            keep
        });
        for &(key, local, bytes) in &removed {
            if !local {
                self.unaccount_entry(key, bytes);
            }
        }
        self.earliest_expiry = earliest;
        self.shrink();
        removed.len()
    }

    /// The unexpired entry for `(class, node)`, local or remote.
    pub fn get(&self, class: ClassHash, node: &NodeId, now_ms: u64) -> Option<&AnnouncementBody> {
        self.entries
            .get(&(class, *node))
            .filter(|e| e.body.expires_at_ms() > now_ms)
            .map(|e| &e.body)
    }

    /// The unexpired entry for `(class, node)` only if it was set by
    /// [`CapabilityFold::set_local`]: what the callee gate reads.
    pub fn get_local(
        &self,
        class: ClassHash,
        node: &NodeId,
        now_ms: u64,
    ) -> Option<&AnnouncementBody> {
        self.entries
            .get(&(class, *node))
            .filter(|e| e.local && e.body.expires_at_ms() > now_ms)
            .map(|e| &e.body)
    }

    /// Nodes whose unexpired [`ClassHash::CAPABILITIES`] entry advertises
    /// `tag`, in ascending node id order. Discovery only: advertising a
    /// tag is not authorization (the callee gate decides that).
    pub fn nodes_with_tag<'a>(
        &'a self,
        tag: &'a str,
        now_ms: u64,
    ) -> impl Iterator<Item = NodeId> + 'a {
        let mut nodes: Vec<NodeId> = self
            .entries
            .iter()
            .filter(|((class, _), e)| {
                *class == ClassHash::CAPABILITIES
                    && e.body.expires_at_ms() > now_ms
                    && e.body.capability(tag).is_some()
            })
            .map(|((_, node), _)| *node)
            .collect();
        nodes.sort_unstable();
        nodes.into_iter()
    }

    /// Number of entries (local and remote, expired ones until swept).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Number of remote entries.
    pub fn remote_len(&self) -> usize {
        self.remote
    }

    /// Bytes charged to remote entries (≤ `limits().max_bytes`).
    pub fn bytes(&self) -> usize {
        self.tier_bytes.iter().sum()
    }

    /// Bytes charged to `node`'s remote entries (0 if it has none).
    pub fn node_bytes(&self, node: &NodeId) -> usize {
        self.nodes.get(node).map_or(0, |n| n.bytes)
    }

    /// Bytes charged to settled nodes (≤ `max_bytes - newcomer_bytes`).
    pub fn settled_bytes(&self) -> usize {
        self.tier_bytes[Tier::Settled as usize]
    }

    /// Whether `node` has settled (see the module docs).
    pub fn is_settled(&self, node: &NodeId) -> bool {
        self.nodes
            .get(node)
            .is_some_and(|n| n.tier == Tier::Settled)
    }

    /// Remote entries evicted to make room since the fold was created.
    pub fn evictions(&self) -> u64 {
        self.evicted
    }

    /// The limits.
    pub fn limits(&self) -> FoldLimits {
        self.limits
    }

    /// `(first_seen_ms, settled)` of the node of a remote entry, for
    /// snapshots.
    pub(crate) fn node_meta(&self, node: &NodeId) -> (u64, bool) {
        self.nodes
            .get(node)
            .map_or((0, false), |n| (n.first_seen_ms, n.tier == Tier::Settled))
    }

    /// Recomputes every count from the entries and panics if one is off or
    /// a bound is broken. For tests and fuzz targets.
    #[doc(hidden)]
    pub fn assert_invariants(&self) {
        let mut per_node: HashMap<NodeId, usize> = HashMap::new();
        for ((class, node), e) in &self.entries {
            assert_eq!(e.body.class, *class);
            assert_eq!(e.body.node_id, *node, "keyed by its own node id");
            if !e.local {
                assert_eq!(e.bytes, entry_bytes(&e.body));
                *per_node.entry(*node).or_insert(NODE_OVERHEAD) += e.bytes;
            }
        }
        assert_eq!(per_node.len(), self.nodes.len());
        let mut tiers = [0usize; 3];
        for (node, n) in &self.nodes {
            assert_eq!(per_node.get(node), Some(&n.bytes));
            assert!(n.bytes <= self.limits.max_node_bytes, "per-node quota");
            assert_eq!(n.tier == Tier::Protected, self.protected.contains(node));
            let order = (n.first_seen_ms, *node);
            assert_eq!(self.newcomers.contains(&order), n.tier == Tier::Newcomer);
            assert_eq!(self.settled.contains(&order), n.tier == Tier::Settled);
            tiers[n.tier as usize] += n.bytes;
        }
        assert_eq!(tiers, self.tier_bytes);
        assert_eq!(self.newcomers.len() + self.settled.len(), {
            self.nodes
                .values()
                .filter(|n| n.tier != Tier::Protected)
                .count()
        });
        let remote = self.entries.values().filter(|e| !e.local).count();
        assert_eq!(remote, self.remote);
        assert!(self.bytes() <= self.limits.max_bytes, "byte bound");
        assert!(
            self.settled_bytes() <= self.limits.settled_cap(),
            "settled cap"
        );
    }
}

#[cfg(test)]
mod tests {
    use std::mem::size_of;

    use super::*;

    /// Heap of one table slot holding `T`, with the control byte, at up to
    /// 3 × spare capacity (what [`CapabilityFold::shrink`] allows) and 8/7
    /// buckets per usable slot.
    fn slot<T>() -> usize {
        (size_of::<T>() + 1) * 3 * 8 / 7
    }

    #[test]
    fn overheads_cover_the_structures() {
        // Entry: its table slot, the capability vector's block header and
        // its class in the node's list (with that list's spare room).
        let entry = slot::<((ClassHash, NodeId), Entry)>() + 16 + 2 * size_of::<ClassHash>();
        assert!(entry <= ENTRY_OVERHEAD, "{entry}");
        // Node: its table slot, its eviction-order element (a B-tree at
        // least half full) and its class list's block header.
        let node = slot::<(NodeId, NodeState)>() + 2 * size_of::<(u64, NodeId)>() + 16;
        assert!(node <= NODE_OVERHEAD, "{node}");
        // Capability: the struct and four heap blocks' overhead.
        let cap = size_of::<crate::Capability>() + 4 * 24;
        assert!(cap <= CAPABILITY_OVERHEAD, "{cap}");
        eprintln!("charged overheads cover: entry {entry} B, node {node} B, capability {cap} B");
    }
}
