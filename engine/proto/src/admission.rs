//! Which authenticated initiations may create a responder session, and which
//! session gives way when the table is full.
//!
//! A PSK holder can mint identities at will, and one identity can name any
//! of 65 536 lanes, so the session table ([`EndpointConfig::max_sessions`],
//! 4 096 per core by default, ~7 KiB per session) must not be first come,
//! first served. The policy, applied after the initiation authenticated
//! (so a stranger cannot trigger it) and before its response is sent:
//!
//! 1. **Per identity.** A peer holds at most
//!    [`EndpointConfig::max_sessions_per_peer`] responder sessions
//!    (half-open and established; default 64, one per core of a 64-core
//!    peer). An initiation on a *new* lane beyond it is refused
//!    ([`HandshakeError::PeerSessionLimit`], counted) and leaves no state. An
//!    initiation on a lane the peer already holds is admitted even at the
//!    limit: it replaces that lane's session (a restarted peer reconnects at
//!    once instead of waiting out the idle timeout), so the peer's sessions
//!    stay within 2 × the limit (one established and one handshake per lane).
//! 2. **Reservation.** Peers in [`EndpointConfig::reserved_peers`] (the
//!    engine fills it with the configured peers) are *reserved*; the others
//!    together hold at most `max_sessions − reserved_sessions` responder
//!    sessions ([`EndpointConfig::reserved_sessions`], default 1 024), so
//!    reserved peers and this node's own outgoing sessions always find room.
//! 3. **Eviction.** When a session is needed and there is no room (the
//!    unreserved share is used up, or the whole table is full), one
//!    responder session of an unreserved peer gives way: from the source
//!    address holding the most unreserved sessions (a host flooding from
//!    one address pays with its own sessions), the one heard from longest
//!    ago, preferring one with no calls in flight. Ties go to the lowest
//!    receiver index, so a simulation replays. An established victim is
//!    sent CLOSE with [`CLOSE_EVICTED`]; every victim ends with
//!    `Event::Closed { reason: CloseReason::Evicted }`, so the application
//!    fails its calls, and is counted (`sessions_evicted`). Reserved peers'
//!    sessions and sessions this node initiated are never evicted; if nothing
//!    may be evicted the initiation is refused
//!    ([`HandshakeError::SessionTableFull`], counted).
//!
//! So one identity holds at most 2 × 64 sessions, and however many fresh
//! identities fill the table, a configured peer connects into its
//! reservation and an honest newcomer connects by evicting the stalest
//! unreserved session. A flooder that keeps handshaking can evict unreserved
//! sessions in turn, but each eviction costs it a full handshake within the
//! initiation budget ([`crate::HandshakeLimits`]); peers that must never be
//! evicted belong in the configuration.
//!
//! Choosing a victim is one pass over the table (O(sessions)); it runs only
//! when there is no room, at most once per admitted handshake, which already
//! cost a Diffie-Hellman, so the initiation budget bounds it too. Measured
//! (release, 4 096-session table of which 3 072 unreserved, 2-core machine
//! at load average ~6): median `handle` of an initiation 351 µs without an
//! eviction, 492 µs with one.

use std::cmp::Reverse;
use std::net::IpAddr;
use std::time::Instant;

use net_crypto::NodeId;

use crate::config::EndpointConfig;
use crate::handshake::HandshakeError;
use crate::ids::{ReceiverIndex, Side};
use crate::session::Session;
use crate::FastMap;

/// CLOSE code sent to a peer whose session was evicted to make room: the
/// session table was full; the peer may reconnect.
pub const CLOSE_EVICTED: u16 = 1;

/// Orders eviction candidates from one address: idle before busy, then
/// heard from longest ago, then lowest index (deterministic).
type VictimKey = (bool, Instant, ReceiverIndex);

/// Whether an admitted initiation needs a slot freed first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Room {
    /// There is room (or the new session replaces a half-open one).
    Free,
    /// A session must be evicted first ([`SessionTable::victim`]).
    Evict,
}

/// What the admission check knows about an authenticated initiation.
pub(crate) struct Candidate<'a> {
    /// The authenticated initiator.
    pub peer: &'a NodeId,
    /// The peer already holds a session (half-open or confirmed) on this lane.
    pub lane_held: bool,
    /// The new session replaces this lane's half-open one at once.
    pub replaces_half_open: bool,
}

/// Responder-session accounting for the policy in the module docs.
///
/// Invariant: `per_peer[p]` is the number of live responder sessions of `p`
/// in the endpoint's table (no zero entries), and `unreserved` the number of
/// live responder sessions of peers not in `reserved_peers`; the endpoint
/// calls [`added`](Self::added) and [`removed`](Self::removed) exactly when a
/// responder session enters or leaves its table.
#[derive(Default)]
pub(crate) struct SessionTable {
    per_peer: FastMap<NodeId, u32>,
    unreserved: usize,
    /// Reused per-address tally for [`victim`](Self::victim): sessions from
    /// the address and its best victim (calls in flight, last received,
    /// index — smallest first).
    by_addr: FastMap<IpAddr, (u32, VictimKey)>,
}

impl SessionTable {
    /// A responder session of `peer` entered the table.
    pub fn added(&mut self, cfg: &EndpointConfig, peer: NodeId) {
        *self.per_peer.entry(peer).or_insert(0) += 1;
        if !cfg.reserved_peers.contains(&peer) {
            self.unreserved += 1;
        }
    }

    /// A responder session of `peer` left the table.
    pub fn removed(&mut self, cfg: &EndpointConfig, peer: NodeId) {
        if let Some(n) = self.per_peer.get_mut(&peer) {
            *n -= 1;
            if *n == 0 {
                self.per_peer.remove(&peer);
            }
        }
        if !cfg.reserved_peers.contains(&peer) {
            self.unreserved = self.unreserved.saturating_sub(1);
        }
    }

    /// Live responder sessions of `peer`.
    pub fn peer_sessions(&self, peer: &NodeId) -> usize {
        self.per_peer.get(peer).map_or(0, |&n| n as usize)
    }

    /// Live responder sessions of unreserved peers: the evictable ones.
    pub fn evictable(&self) -> usize {
        self.unreserved
    }

    /// Decides an authenticated initiation; `total` is the table's size.
    pub fn admit(
        &self,
        cfg: &EndpointConfig,
        total: usize,
        new: &Candidate<'_>,
    ) -> Result<Room, HandshakeError> {
        if !new.lane_held && self.peer_sessions(new.peer) >= cfg.max_sessions_per_peer {
            return Err(HandshakeError::PeerSessionLimit);
        }
        if new.replaces_half_open {
            return Ok(Room::Free);
        }
        let share = cfg.max_sessions.saturating_sub(cfg.reserved_sessions);
        let reserved = cfg.reserved_peers.contains(new.peer);
        if total < cfg.max_sessions && (reserved || self.unreserved < share) {
            Ok(Room::Free)
        } else if self.unreserved > 0 {
            Ok(Room::Evict)
        } else {
            Err(HandshakeError::SessionTableFull)
        }
    }

    /// The session to evict (see the module docs), if any may be. One pass
    /// over the table: per source address, its count and its best victim.
    pub fn victim(
        &mut self,
        cfg: &EndpointConfig,
        sessions: &FastMap<ReceiverIndex, Session>,
    ) -> Option<ReceiverIndex> {
        self.by_addr.clear();
        for (&idx, s) in sessions {
            let evictable = s.side() == Side::Responder
                && !s.is_closed()
                && !cfg.reserved_peers.contains(&s.peer_node());
            if !evictable {
                continue;
            }
            let key = (s.call_count() > 0, s.last_recv(), idx);
            self.by_addr
                .entry(s.addr().ip())
                .and_modify(|(n, best)| {
                    *n += 1;
                    *best = (*best).min(key);
                })
                .or_insert((1, key));
        }
        self.by_addr
            .values()
            .min_by_key(|&&(n, best)| (Reverse(n), best))
            .map(|&(_, (_, _, idx))| idx)
    }
}
