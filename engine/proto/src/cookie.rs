//! Cookie replies (WireGuard §5.4.7, adapted): under load, a responder
//! answers an initiation that lacks a valid `mac2` with a small encrypted
//! cookie instead of doing public-key work. Only a sender that receives
//! packets at its claimed address can learn the cookie, so once under load
//! the responder spends Diffie-Hellman work only on initiations whose
//! source address is proven. Spoofed floods then cost one cheap reply
//! each and can no longer starve real initiators of the DH budget.
//!
//! * cookie = mac16(secret(epoch), source ip ‖ port), 16 bytes. The secret
//!   of each two-minute epoch of wall time is derived from a seed that
//!   only this node knows (its Noise private key through a labelled hash),
//!   so every core of a node computes the same cookie without sharing
//!   state, and a cookie made by one core is accepted by another.
//! * mac2 = mac16(cookie ‖ 0¹⁶, initiation up to mac2) — the cookie padded
//!   to the MAC's 32-byte key; mac2 covers mac1.
//! * The reply encrypts the cookie under a one-time key derived from the
//!   responder's public identity and a fresh 24-byte nonce, with the
//!   initiation's mac1 as associated data: only the initiator that sent
//!   that initiation (and knows whom it sent it to) can open it, and an
//!   off-path attacker cannot forge replies.
//!
//! Wire layout (64 bytes, smaller than the initiation, so no amplification):
//! type 3, version, 2 zero bytes, the initiator's index (4), nonce (24),
//! encrypted cookie (16), tag (16).

use std::net::SocketAddr;

use net_crypto::{blake2s, mac16, AeadKey, Backend, Identity, PublicIdentity};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::handshake::{HandshakeError, MAC_LEN};
use crate::ids::ReceiverIndex;
use crate::wire::{PacketType, WireError, Writer, PROTOCOL_VERSION};

const SEED_LABEL: &[u8] = b"net/cookie-seed/v1\0";
const REPLY_KEY_LABEL: &[u8] = b"net/cookie-reply/v1\0";
/// How long one cookie secret lives, and how long an initiator uses a
/// cookie (WireGuard: 120 s).
pub(crate) const EPOCH_SECS: u64 = 120;
/// A cookie.
pub(crate) type Cookie = [u8; 16];
const NONCE_LEN: usize = 24;
/// Size of a cookie reply on the wire.
pub const COOKIE_REPLY_LEN: usize = 8 + NONCE_LEN + 16 + 16;

/// The responder's cookie maker. Stateless apart from the node's seed.
pub(crate) struct CookieJar {
    seed: Zeroizing<[u8; 32]>,
    public: [u8; 32],
}

impl CookieJar {
    pub fn new(identity: &Identity) -> Self {
        let private = identity.noise_private_key();
        CookieJar {
            seed: Zeroizing::new(blake2s(&[SEED_LABEL, &private[..]])),
            public: identity.public().to_bytes(),
        }
    }

    fn cookie(&self, epoch: u64, src: &SocketAddr) -> Cookie {
        let secret = Zeroizing::new(blake2s(&[&self.seed[..], &epoch.to_be_bytes()]));
        let port = src.port().to_be_bytes();
        match src {
            SocketAddr::V4(a) => mac16(&secret, &[&a.ip().octets(), &port]),
            SocketAddr::V6(a) => mac16(&secret, &[&a.ip().octets(), &port]),
        }
    }

    /// Whether `init` (a full initiation whose mac1 was checked) carries the
    /// mac2 of a cookie this node gave `src` in this or the previous epoch.
    pub fn check_mac2(&self, init: &[u8], src: &SocketAddr, wall_secs: u64) -> bool {
        let epoch = wall_secs / EPOCH_SECS;
        let (body, mac2) = init.split_at(init.len() - MAC_LEN);
        // An initiator without a cookie sends zeros: no hashing for those
        // (a flood's usual case).
        if mac2.iter().all(|&b| b == 0) {
            return false;
        }
        [epoch, epoch.wrapping_sub(1)].into_iter().any(|e| {
            let expected = mac2_of(&self.cookie(e, src), body);
            bool::from(expected.ct_eq(mac2))
        })
    }

    /// Writes the cookie reply to `init` from `src` into `out`.
    pub fn write_reply(
        &self,
        init: &[u8],
        src: &SocketAddr,
        wall_secs: u64,
        nonce: [u8; NONCE_LEN],
        backend: Backend,
        out: &mut [u8; COOKIE_REPLY_LEN],
    ) -> Result<(), WireError> {
        let sender = crate::handshake::steering_index(init)?;
        let mac1 = mac1_of(init);
        let mut w = Writer::new(&mut out[..8 + NONCE_LEN]);
        w.put_u8(PacketType::CookieReply as u8)?;
        w.put_u8(PROTOCOL_VERSION)?;
        w.put_u16(0)?;
        w.put_u32(sender.get())?;
        w.put_bytes(&nonce)?;
        let sealed = &mut out[8 + NONCE_LEN..];
        sealed[..16].copy_from_slice(&self.cookie(wall_secs / EPOCH_SECS, src));
        reply_key(&self.public, &nonce, backend)
            .seal_in_place(0, mac1, sealed, 16)
            .map_err(|_| WireError::BufferTooSmall)?;
        Ok(())
    }
}

/// mac2 of a message body (everything before mac2) under `cookie`.
pub(crate) fn mac2_of(cookie: &Cookie, body: &[u8]) -> [u8; MAC_LEN] {
    let mut key = Zeroizing::new([0u8; 32]);
    key[..16].copy_from_slice(cookie);
    mac16(&key, &[body])
}

/// The mac1 field of a handshake message (the 16 bytes before mac2).
pub(crate) fn mac1_of(msg: &[u8]) -> &[u8] {
    &msg[msg.len() - 2 * MAC_LEN..msg.len() - MAC_LEN]
}

fn reply_key(responder: &[u8; 32], nonce: &[u8; NONCE_LEN], backend: Backend) -> AeadKey {
    // A fresh key per reply (random 24-byte nonce in the derivation), so
    // the AEAD's own nonce can stay zero: an XChaCha-style construction
    // from the primitives we already have.
    let key = Zeroizing::new(blake2s(&[REPLY_KEY_LABEL, responder, nonce]));
    AeadKey::new(backend, &key)
}

/// The initiator's index a cookie reply is addressed to.
pub(crate) fn reply_index(reply: &[u8]) -> Result<ReceiverIndex, WireError> {
    if reply.len() != COOKIE_REPLY_LEN {
        return Err(WireError::Truncated);
    }
    crate::handshake::steering_index(reply)
}

/// Initiator side: opens a cookie reply from `responder` to the initiation
/// whose mac1 was `mac1`.
pub(crate) fn open_reply(
    reply: &[u8],
    responder: &PublicIdentity,
    mac1: &[u8; MAC_LEN],
    backend: Backend,
) -> Result<Cookie, HandshakeError> {
    if reply.len() != COOKIE_REPLY_LEN {
        return Err(WireError::Truncated.into());
    }
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&reply[8..8 + NONCE_LEN]);
    let mut sealed = [0u8; 32];
    sealed.copy_from_slice(&reply[8 + NONCE_LEN..]);
    reply_key(&responder.to_bytes(), &nonce, backend)
        .open_in_place(0, mac1, &mut sealed)
        .map_err(|_| HandshakeError::Decrypt)?;
    let mut cookie = [0u8; 16];
    cookie.copy_from_slice(&sealed[..16]);
    Ok(cookie)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_round_trip_and_binding() {
        let responder = Identity::from_seed(&[7; 32]);
        let jar = CookieJar::new(&responder);
        let src: SocketAddr = "10.0.0.1:4000".parse().unwrap();
        let other: SocketAddr = "10.0.0.1:4001".parse().unwrap();
        let mut init = vec![0u8; 8 + 64];
        init[4..8].copy_from_slice(&9u32.to_be_bytes());
        init[40..56].copy_from_slice(&[0xAB; 16]); // mac1
        let mut reply = [0u8; COOKIE_REPLY_LEN];
        let wall = 1_000_000;
        jar.write_reply(&init, &src, wall, [3; 24], Backend::Ring, &mut reply)
            .unwrap();
        assert_eq!(reply_index(&reply).unwrap(), ReceiverIndex::new(9));
        let mac1: [u8; 16] = [0xAB; 16];
        let cookie = open_reply(&reply, &responder.public(), &mac1, Backend::Ring).unwrap();
        // The wrong mac1 (a reply to someone else's initiation) or the wrong
        // responder does not open.
        assert!(open_reply(&reply, &responder.public(), &[0; 16], Backend::Ring).is_err());
        let stranger = Identity::from_seed(&[8; 32]).public();
        assert!(open_reply(&reply, &stranger, &mac1, Backend::Ring).is_err());
        // mac2 with the cookie verifies for that source, in this and the next
        // epoch, and not for another port or two epochs later.
        let mac2 = mac2_of(&cookie, &init[..56]);
        init[56..].copy_from_slice(&mac2);
        assert!(jar.check_mac2(&init, &src, wall));
        assert!(jar.check_mac2(&init, &src, wall + EPOCH_SECS));
        assert!(!jar.check_mac2(&init, &other, wall));
        assert!(!jar.check_mac2(&init, &src, wall + 2 * EPOCH_SECS));
        init[56] ^= 1;
        assert!(!jar.check_mac2(&init, &src, wall));
    }
}
