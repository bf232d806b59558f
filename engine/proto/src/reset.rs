//! Stateless reset: how a node that lost its state (crash, restart) makes
//! its peers drop their sessions with it at once, instead of after their
//! idle timeout (QUIC's stateless reset, RFC 9000 §10.3, is the model).
//!
//! * Each side gives the other, encrypted inside the handshake, a token for
//!   its own receiver index: `mac16(reset_key, index ‖ peer address)`, with
//!   `reset_key` derived from the node's static identity. A restarted node
//!   (same identity) can therefore recompute the token for any index a
//!   stale data packet names, with no session state at all.
//! * A data packet for an unknown index is answered, within a rate limit
//!   ([`ResetState::allow`]), by a [`ResetPacket`] of 28 bytes: smaller
//!   than any data packet, so it never amplifies, and never sent in answer
//!   to a reset, so two nodes cannot loop.
//! * The peer holding the session finds it by the index (its session's peer
//!   index) and compares the token in constant time; only a match closes
//!   the session (`CloseReason::PeerReset`). Observers never see a token
//!   before the reset that reveals it, and a revealed token only matches
//!   its own index and address; the index is then *burned* (never chosen
//!   again by this process), so a captured reset cannot be replayed against
//!   a later session. Across a restart the same index is chosen again with
//!   probability ≈ 2⁻²⁴ per session (random indices).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use net_crypto::{blake2s, mac16, Identity};
use zeroize::Zeroizing;

use crate::ids::ReceiverIndex;
use crate::ratelimit::{Limiter, RateLimit};
use crate::wire::RESET_TOKEN_LEN;
use crate::FastMap;

const KEY_LABEL: &[u8] = b"net/v1 stateless reset key\0";
const TOKEN_LABEL: &[u8] = b"net/v1 reset token\0";

/// Indices a reset was sent for that this process will not choose again.
const MAX_BURNED: usize = 4096;

/// Default rate of resets one endpoint sends: enough for every peer of a
/// restarted node to learn within a second, too few to be worth provoking.
pub const DEFAULT_RESET_LIMIT: RateLimit = RateLimit {
    per_second: 100.0,
    burst: 20.0,
};

/// The reset token of `index` as seen from `peer`: derived from the node's
/// identity, so it survives a restart, and bound to the peer's address.
pub(crate) struct ResetKey(Zeroizing<[u8; 32]>);

impl ResetKey {
    pub fn new(identity: &Identity) -> Self {
        let private = identity.noise_private_key();
        ResetKey(Zeroizing::new(blake2s(&[KEY_LABEL, &private[..]])))
    }

    pub fn token(&self, index: ReceiverIndex, peer: &SocketAddr) -> [u8; RESET_TOKEN_LEN] {
        let idx = index.get().to_be_bytes();
        let port = peer.port().to_be_bytes();
        match peer {
            SocketAddr::V4(a) => mac16(&self.0, &[TOKEN_LABEL, &idx, &a.ip().octets(), &port]),
            SocketAddr::V6(a) => mac16(&self.0, &[TOKEN_LABEL, &idx, &a.ip().octets(), &port]),
        }
    }
}

/// The endpoint's reset state: its key, the send rate limit and the
/// burned indices.
pub(crate) struct ResetState {
    key: ResetKey,
    limiter: Limiter,
    burned: FastMap<ReceiverIndex, ()>,
    burned_order: VecDeque<ReceiverIndex>,
}

impl ResetState {
    pub fn new(identity: &Identity, limit: RateLimit, now: Instant) -> Self {
        ResetState {
            key: ResetKey::new(identity),
            limiter: Limiter::new(limit, now),
            burned: FastMap::default(),
            burned_order: VecDeque::new(),
        }
    }

    /// Our token for `index`, to give to the peer at `peer`.
    pub fn token(&self, index: ReceiverIndex, peer: &SocketAddr) -> [u8; RESET_TOKEN_LEN] {
        self.key.token(index, peer)
    }

    /// Whether a reset may be sent now (the rate limit).
    pub fn allow(&mut self, now: Instant) -> bool {
        self.limiter.allow(now)
    }

    /// A reset for `index` was sent: never choose it again (bounded: the
    /// oldest burned index is forgotten first).
    pub fn burn(&mut self, index: ReceiverIndex) {
        if self.burned.insert(index, ()).is_some() {
            return;
        }
        self.burned_order.push_back(index);
        if self.burned_order.len() > MAX_BURNED {
            if let Some(old) = self.burned_order.pop_front() {
                self.burned.remove(&old);
            }
        }
    }

    /// Whether `index` may not be chosen for a new session.
    pub fn is_burned(&self, index: ReceiverIndex) -> bool {
        self.burned.contains_key(&index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_depends_on_identity_index_and_address() {
        let a = Identity::from_seed(&[1; 32]);
        let b = Identity::from_seed(&[2; 32]);
        let addr: SocketAddr = "10.0.0.1:7000".parse().unwrap();
        let other: SocketAddr = "10.0.0.1:7001".parse().unwrap();
        let i = ReceiverIndex::new(0x1234_5600);
        let t = ResetKey::new(&a).token(i, &addr);
        assert_eq!(t, ResetKey::new(&a).token(i, &addr), "survives a restart");
        assert_ne!(t, ResetKey::new(&b).token(i, &addr));
        assert_ne!(
            t,
            ResetKey::new(&a).token(ReceiverIndex::new(0x1234_5601), &addr)
        );
        assert_ne!(t, ResetKey::new(&a).token(i, &other));
    }

    #[test]
    fn rate_limit_and_burned_set_are_bounded() {
        let now = Instant::now();
        let limit = RateLimit {
            per_second: 10.0,
            burst: 3.0,
        };
        let mut r = ResetState::new(&Identity::from_seed(&[1; 32]), limit, now);
        assert_eq!((0..10).filter(|_| r.allow(now)).count(), 3);
        let later = now + std::time::Duration::from_millis(500);
        assert_eq!(
            (0..10).filter(|_| r.allow(later)).count(),
            3,
            "5 refilled, burst 3"
        );
        for i in 0..(MAX_BURNED as u32 + 10) {
            r.burn(ReceiverIndex::new(i));
        }
        assert!(!r.is_burned(ReceiverIndex::new(0)), "oldest forgotten");
        assert!(r.is_burned(ReceiverIndex::new(MAX_BURNED as u32 + 9)));
        assert_eq!(r.burned.len(), MAX_BURNED);
    }
}
