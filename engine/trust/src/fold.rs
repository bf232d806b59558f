//! The capability fold: the latest verified announcement of each (class,
//! node), with TTL expiry and a hard bound on remote entries.

use std::collections::HashMap;

use net_crypto::NodeId;

use crate::capability::{AnnouncementBody, ClassHash};
use crate::envelope::decode_and_verify;
use crate::{AnnounceError, TrustStats, Verified};

/// One fold entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The announcement; `body.node_id` equals the key's node id.
    pub(crate) body: AnnouncementBody,
    /// Set by [`CapabilityFold::set_local`]: this node's own state. Only a
    /// local entry can open the callee gate, and only `set_local` can
    /// replace one.
    pub(crate) local: bool,
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
///   otherwise), compared even against an expired entry until it is swept.
/// * At most `max_entries` remote entries; a new node beyond that is
///   refused (`FoldFull`) after expired entries are dropped. This node's
///   own entries ([`CapabilityFold::set_local`]) never count and are never
///   refused, so a flood of announcements cannot lock a node out of its
///   own gate.
/// * Expired entries are invisible to every read and removed by
///   [`CapabilityFold::sweep`].
#[derive(Clone, Debug)]
pub struct CapabilityFold {
    pub(crate) entries: HashMap<(ClassHash, NodeId), Entry>,
    pub(crate) max_entries: usize,
    /// Number of entries with `local == false`.
    remote: usize,
    /// No entry expires before this (a lower bound; `u64::MAX` if empty),
    /// so a sweep with nothing to remove costs nothing.
    earliest_expiry: u64,
}

impl CapabilityFold {
    /// An empty fold holding at most `max_entries` remote entries.
    pub fn new(max_entries: usize) -> CapabilityFold {
        CapabilityFold {
            entries: HashMap::new(),
            max_entries,
            remote: 0,
            earliest_expiry: u64::MAX,
        }
    }

    /// Rebuilds a fold from entries (used by restore, whose input is
    /// authenticated as this node's own).
    pub(crate) fn from_entries(max_entries: usize, entries: Vec<Entry>) -> CapabilityFold {
        let mut fold = CapabilityFold::new(max_entries);
        for e in entries {
            fold.remote += usize::from(!e.local);
            fold.earliest_expiry = fold.earliest_expiry.min(e.body.expires_at_ms());
            if let Some(old) = fold.entries.insert((e.body.class, e.body.node_id), e) {
                fold.remote -= usize::from(!old.local);
            }
        }
        fold
    }

    /// Applies a verified announcement at `now_ms`, keyed by
    /// `(body.class, v.signer())`.
    ///
    /// Errors: `Expired` (it expired since verification), `OwnEntry` (the
    /// key holds this node's locally set entry), `Stale` (`seq` not
    /// greater than the entry's), `FoldFull` (a new remote entry beyond
    /// the bound). Count them with [`TrustStats::count`].
    pub fn apply(&mut self, v: Verified, now_ms: u64) -> Result<(), AnnounceError> {
        let signer = v.signer();
        let body = v.into_body();
        let expires = body.expires_at_ms();
        if expires <= now_ms {
            return Err(AnnounceError::Expired);
        }
        let key = (body.class, signer);
        if let Some(entry) = self.entries.get_mut(&key) {
            if entry.local {
                return Err(AnnounceError::OwnEntry);
            }
            if body.seq <= entry.body.seq {
                return Err(AnnounceError::Stale);
            }
            entry.body = body;
            self.earliest_expiry = self.earliest_expiry.min(expires);
            return Ok(());
        }
        if self.remote >= self.max_entries {
            self.sweep(now_ms);
            if self.remote >= self.max_entries {
                return Err(AnnounceError::FoldFull);
            }
        }
        self.entries.insert(key, Entry { body, local: false });
        self.remote += 1;
        self.earliest_expiry = self.earliest_expiry.min(expires);
        Ok(())
    }

    /// Decodes, verifies and applies wire bytes, counting every outcome in
    /// `stats` (the verification outcome, then any fold error).
    pub fn handle_announcement(
        &mut self,
        bytes: &[u8],
        now_ms: u64,
        stats: &mut TrustStats,
    ) -> Result<(), AnnounceError> {
        let v = decode_and_verify(bytes, now_ms, stats)?;
        self.apply(v, now_ms).inspect_err(|e| stats.count(e))
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
        let expires = body.expires_at_ms();
        let key = (body.class, body.node_id);
        if let Some(old) = self.entries.insert(key, Entry { body, local: true }) {
            self.remote -= usize::from(!old.local);
        }
        self.earliest_expiry = self.earliest_expiry.min(expires);
        self.sweep(now_ms);
    }

    /// Removes every entry expired at `now_ms` (local ones too: an expired
    /// entry authorizes nothing); returns how many.
    pub fn sweep(&mut self, now_ms: u64) -> usize {
        if now_ms < self.earliest_expiry {
            return 0;
        }
        let before = self.entries.len();
        let mut earliest = u64::MAX;
        let mut remote = 0;
        self.entries.retain(|_, e| {
            let exp = e.body.expires_at_ms();
            let keep = exp > now_ms;
            if keep {
                earliest = earliest.min(exp);
                remote += usize::from(!e.local);
            }
            keep
        });
        self.earliest_expiry = earliest;
        self.remote = remote;
        before - self.entries.len()
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

    /// Number of remote entries (the ones the bound applies to).
    pub fn remote_len(&self) -> usize {
        self.remote
    }

    /// The bound on remote entries.
    pub fn max_entries(&self) -> usize {
        self.max_entries
    }
}
