//! Noise `IKpsk2_25519_ChaChaPoly_BLAKE2s` handshake messages (snow), bound to
//! Net identities, and the split into transport keys.
//!
//! The initiator knows the responder's public identity (IK), so its first
//! message is already authenticated to the responder's static key; the mesh
//! PSK enters at the end of the second message (psk2), so only the initiator
//! learns whether the responder shares it. Identity binding:
//! * both static keys are the X25519 keys derived from the Ed25519
//!   identities ([`net_crypto::Identity::noise_private_key`]);
//! * the prologue binds the protocol version and both node ids;
//! * the responder checks that the Noise static key it received is the one
//!   derived from the identity the initiator named in clear.

use std::sync::OnceLock;

use net_crypto::{blake2s, hkdf_sha256, mac16, Identity, NodeId, PublicIdentity};
use snow::params::NoiseParams;
use snow::HandshakeState;
use thiserror::Error;
use zeroize::Zeroizing;

use crate::config::TransportParams;
use crate::cookie::{mac2_of, Cookie};
use crate::ids::ReceiverIndex;
use crate::wire::{PacketType, Reader, WireError, Writer, PROTOCOL_VERSION, RESET_TOKEN_LEN};

const NOISE_PATTERN: &str = "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s";
const PROLOGUE_LABEL: &[u8] = b"net/v1 IKpsk2\0";
const MAC1_LABEL: &[u8] = b"net/mac1/v1\0";
pub(crate) const MAC_LEN: usize = 16;
const TAG: usize = 16;
const DH: usize = 32;

/// Timestamp (u64), lane (u16), transport parameters, the initiator's
/// reset token for its index ([`crate::reset`]).
const INIT_PAYLOAD_LEN: usize = 8 + 2 + TransportParams::LEN + RESET_TOKEN_LEN;
/// Noise message 1: e, s (encrypted), payload (encrypted).
const INIT_NOISE_LEN: usize = DH + (DH + TAG) + (INIT_PAYLOAD_LEN + TAG);
const INIT_HEADER_LEN: usize = 8 + 32;
/// Size of a handshake initiation on the wire.
pub const INIT_LEN: usize = INIT_HEADER_LEN + INIT_NOISE_LEN + 2 * MAC_LEN;

/// Transport parameters, the responder's reset token for its index.
const RESP_PAYLOAD_LEN: usize = TransportParams::LEN + RESET_TOKEN_LEN;
const RESP_NOISE_LEN: usize = DH + (RESP_PAYLOAD_LEN + TAG);
const RESP_HEADER_LEN: usize = 12;
/// Size of a handshake response on the wire.
pub const RESP_LEN: usize = RESP_HEADER_LEN + RESP_NOISE_LEN + 2 * MAC_LEN;

/// Why a handshake message was refused. Each has a counter in
/// [`EndpointStats`](crate::EndpointStats).
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The message is not a well-formed handshake message of the expected size.
    #[error("malformed handshake message: {0}")]
    Malformed(#[from] WireError),
    /// mac1 does not match: the sender does not know our public identity.
    #[error(
        "handshake mac1 mismatch: the initiator does not know this node's public identity \
         (it dialled another identity at this address)"
    )]
    Mac1,
    /// The initiator named an identity that is not a valid Ed25519 key.
    #[error("invalid initiator identity")]
    InvalidIdentity,
    /// Noise processing failed: wrong PSK, wrong keys, or a tampered message.
    #[error("handshake decryption failed (wrong PSK or keys, or tampered)")]
    Decrypt,
    /// The Noise static key does not belong to the identity named in clear.
    #[error("noise static key does not match the claimed identity")]
    IdentityMismatch,
    /// The initiation's timestamp is not newer than one already accepted from
    /// this peer and lane: a replay.
    #[error("replayed handshake initiation")]
    Replay,
    /// Initiator: no answer to any of our initiations (the peer is down or
    /// unreachable, or does not hold the public identity we dialled: a
    /// responder drops initiations whose mac1 names another identity).
    #[error(
        "no answer to {attempts} handshake initiation(s): the peer is down or unreachable, \
         or does not hold the public identity we dialled"
    )]
    NoAnswer {
        /// Initiations sent.
        attempts: u32,
    },
    /// Initiator: the peer answered only with cookies (it is under load)
    /// and never completed the handshake.
    #[error("the peer answered {cookies} time(s) with a cookie (under load) but never completed the handshake")]
    CookieLoop {
        /// Cookie replies received.
        cookies: u32,
    },
    /// Initiator: the peer answered, but its response did not authenticate:
    /// its mesh PSK differs from ours (or the response was tampered with).
    #[error(
        "the peer answered but its handshake did not authenticate: its mesh PSK differs from ours"
    )]
    WrongPsk,
    /// Responder: the initiator never confirmed our response (it could not
    /// authenticate it: most likely a different mesh PSK).
    #[error("the initiator never confirmed our response (a different mesh PSK?)")]
    Unconfirmed,
    /// Too many unconfirmed responder sessions; the initiation was dropped.
    #[error("too many half-open handshakes")]
    Overloaded,
    /// The initiator already holds `max_sessions_per_peer` sessions and
    /// named a new lane; the initiation was refused.
    #[error("the peer holds its limit of sessions")]
    PeerSessionLimit,
    /// The session table is full and holds no session that may be evicted
    /// for this initiator; the initiation was refused.
    #[error("session table full")]
    SessionTableFull,
    /// The response names a receiver index we have no handshake for.
    #[error("handshake response for an unknown index")]
    UnknownIndex,
    /// Responder: a copy of the initiation a half-open session answered
    /// (the initiator retransmitted it): that session's response is sent
    /// again, nothing new is created.
    #[error("duplicate initiation: the response is sent again")]
    Duplicate,
}

/// Transport keys for both directions, from the Noise split via HKDF.
pub(crate) struct SessionKeys {
    /// Initiator → responder.
    pub i2r: Zeroizing<[u8; 32]>,
    /// Responder → initiator.
    pub r2i: Zeroizing<[u8; 32]>,
}

/// What either side learns about the session from the other's handshake
/// message: enough to key the transport.
pub(crate) struct Negotiated {
    /// The peer's receiver index: the header of every packet we send.
    pub peer_index: ReceiverIndex,
    /// The peer's transport parameters.
    pub params: TransportParams,
    /// Transport keys for both directions.
    pub keys: SessionKeys,
    /// The token that authenticates the peer's resets of this session.
    pub reset_token: [u8; RESET_TOKEN_LEN],
}

/// What a valid initiation tells the responder.
pub(crate) struct AcceptedInit {
    pub peer: PublicIdentity,
    pub timestamp: u64,
    pub lane: u16,
    pub session: Negotiated,
}

fn get_token(r: &mut Reader<'_>) -> Result<[u8; RESET_TOKEN_LEN], WireError> {
    let mut t = [0u8; RESET_TOKEN_LEN];
    t.copy_from_slice(r.get_bytes(RESET_TOKEN_LEN)?);
    Ok(t)
}

fn noise_params() -> NoiseParams {
    static PARAMS: OnceLock<NoiseParams> = OnceLock::new();
    PARAMS
        .get_or_init(|| {
            NOISE_PATTERN
                .parse()
                .expect("constant noise pattern parses")
        })
        .clone()
}

fn prologue(initiator: &NodeId, responder: &NodeId) -> [u8; 14 + 1 + 64] {
    let mut p = [0u8; 14 + 1 + 64];
    p[..14].copy_from_slice(PROLOGUE_LABEL);
    p[14] = PROTOCOL_VERSION;
    p[15..47].copy_from_slice(initiator.as_bytes());
    p[47..].copy_from_slice(responder.as_bytes());
    p
}

/// Key for mac1 on messages sent *to* `receiver`: anyone who knows the
/// receiver's public identity can compute it, strangers cannot.
pub(crate) fn mac1_key(receiver: &PublicIdentity) -> [u8; 32] {
    blake2s(&[MAC1_LABEL, &receiver.to_bytes()])
}

fn check_mac1(msg: &[u8], key: &[u8; 32]) -> Result<(), HandshakeError> {
    let mac_at = msg.len() - 2 * MAC_LEN;
    let expected = mac16(key, &[&msg[..mac_at]]);
    if subtle::ConstantTimeEq::ct_eq(&expected[..], &msg[mac_at..mac_at + MAC_LEN]).into() {
        Ok(())
    } else {
        Err(HandshakeError::Mac1)
    }
}

/// Rewrites the macs of an initiation kept for retransmission to `peer`,
/// with its latest cookie (mac1 covers the unchanged message, so only mac2
/// can change).
pub(crate) fn refresh_macs(msg: &mut [u8], peer: &PublicIdentity, cookie: Option<&Cookie>) {
    put_macs(msg, &mac1_key(peer), cookie);
}

/// Writes mac1 and mac2: mac2 is zero without a cookie (see [`crate::cookie`]).
fn put_macs(msg: &mut [u8], key: &[u8; 32], cookie: Option<&Cookie>) {
    let mac_at = msg.len() - 2 * MAC_LEN;
    let mac = mac16(key, &[&msg[..mac_at]]);
    msg[mac_at..mac_at + MAC_LEN].copy_from_slice(&mac);
    let mac2_at = mac_at + MAC_LEN;
    let mac2 = cookie.map_or([0; MAC_LEN], |c| mac2_of(c, &msg[..mac2_at]));
    msg[mac2_at..].copy_from_slice(&mac2);
}

fn split(hs: &mut HandshakeState) -> SessionKeys {
    let (k1, k2) = hs.dangerously_get_raw_split();
    let (k1, k2) = (Zeroizing::new(k1), Zeroizing::new(k2));
    let h = hs.get_handshake_hash().to_vec();
    let mut keys = SessionKeys {
        i2r: Zeroizing::new([0; 32]),
        r2i: Zeroizing::new([0; 32]),
    };
    hkdf_sha256(&h, &k1[..], &[b"net/v1 i2r"], &mut keys.i2r[..]);
    hkdf_sha256(&h, &k2[..], &[b"net/v1 r2i"], &mut keys.r2i[..]);
    keys
}

/// This node's side of every handshake.
pub(crate) struct Local<'a> {
    pub identity: &'a Identity,
    pub psk: &'a [u8; 32],
    pub params: &'a TransportParams,
    /// mac1 key for messages sent to us.
    pub mac1: &'a [u8; 32],
}

/// An initiation in flight. Consumed by a successful response.
pub(crate) struct Initiation {
    hs: HandshakeState,
}

impl Initiation {
    /// Builds a fresh initiation (new ephemeral key) into `out`, which must
    /// hold [`INIT_LEN`] bytes; `cookie` is the peer's latest cookie, if
    /// any; `reset_token` is our token for `sender` (given to the peer).
    pub fn start(
        me: &Local<'_>,
        peer: &PublicIdentity,
        (sender, timestamp, lane): (ReceiverIndex, u64, u16),
        reset_token: &[u8; RESET_TOKEN_LEN],
        cookie: Option<&Cookie>,
        out: &mut [u8],
    ) -> Result<(Initiation, usize), HandshakeError> {
        let (local, psk, params) = (me.identity, me.psk, me.params);
        let out = out.get_mut(..INIT_LEN).ok_or(WireError::BufferTooSmall)?;
        let private = local.noise_private_key();
        let prologue = prologue(&local.node_id(), &peer.node_id());
        let remote = peer.noise_public_key();
        let mut hs = snow::Builder::new(noise_params())
            .local_private_key(&private[..])
            .and_then(|b| b.remote_public_key(&remote))
            .and_then(|b| b.psk(2, psk))
            .and_then(|b| b.prologue(&prologue))
            .and_then(|b| b.build_initiator())
            .map_err(|_| HandshakeError::Decrypt)?;
        let mut payload = [0u8; INIT_PAYLOAD_LEN];
        let mut w = Writer::new(&mut payload);
        w.put_u64(timestamp)?;
        w.put_u16(lane)?;
        params.encode(&mut w)?;
        w.put_bytes(reset_token)?;
        let mut w = Writer::new(&mut out[..INIT_HEADER_LEN]);
        w.put_u8(PacketType::HandshakeInit as u8)?;
        w.put_u8(PROTOCOL_VERSION)?;
        w.put_u16(0)?;
        w.put_u32(sender.get())?;
        w.put_bytes(&local.public().to_bytes())?;
        let n = hs
            .write_message(
                &payload,
                &mut out[INIT_HEADER_LEN..INIT_HEADER_LEN + INIT_NOISE_LEN],
            )
            .map_err(|_| HandshakeError::Decrypt)?;
        debug_assert_eq!(n, INIT_NOISE_LEN);
        put_macs(out, &mac1_key(peer), cookie);
        Ok((Initiation { hs }, INIT_LEN))
    }

    /// Reads the response. snow's state is spent by a failed read, so on
    /// error the caller drops this initiation and its retransmission timer
    /// sends a fresh one (never sooner: a forged response must not be able to
    /// trigger a flood of initiations).
    pub fn finish(
        mut self,
        msg: &[u8],
        own_mac1_key: &[u8; 32],
    ) -> Result<Negotiated, HandshakeError> {
        if msg.len() != RESP_LEN {
            return Err(WireError::Truncated.into());
        }
        check_mac1(msg, own_mac1_key)?;
        let mut r = Reader::new(&msg[8..RESP_HEADER_LEN]);
        let peer_index = ReceiverIndex::new(r.get_u32()?);
        let mut payload = [0u8; RESP_PAYLOAD_LEN + TAG];
        let noise = &msg[RESP_HEADER_LEN..RESP_HEADER_LEN + RESP_NOISE_LEN];
        let n = self
            .hs
            .read_message(noise, &mut payload)
            .map_err(|_| HandshakeError::Decrypt)?;
        let mut r = Reader::new(&payload[..n]);
        let params = TransportParams::decode(&mut r)?;
        let reset_token = get_token(&mut r)?;
        Ok(Negotiated {
            peer_index,
            params,
            keys: split(&mut self.hs),
            reset_token,
        })
    }
}

/// Reads the receiver-visible index at bytes 4..8 (the steering field).
pub(crate) fn steering_index(msg: &[u8]) -> Result<ReceiverIndex, WireError> {
    let mut r = Reader::new(msg.get(4..8).ok_or(WireError::Truncated)?);
    Ok(ReceiverIndex::new(r.get_u32()?))
}

/// The cheap checks of an initiation (size, mac1), done before any rate
/// limiting or public-key work.
pub(crate) fn precheck_init(msg: &[u8], own_mac1_key: &[u8; 32]) -> Result<(), HandshakeError> {
    if msg.len() != INIT_LEN {
        return Err(WireError::Truncated.into());
    }
    check_mac1(msg, own_mac1_key)
}

/// The identity an initiation names in clear, unauthenticated: only for
/// cheap decisions taken before the Noise work (which then checks it). `None`
/// if the message is too short or the bytes are not a valid key.
pub(crate) fn claimed_initiator(msg: &[u8]) -> Option<PublicIdentity> {
    let id: &[u8; 32] = msg.get(8..INIT_HEADER_LEN)?.try_into().ok()?;
    PublicIdentity::from_bytes(id).ok()
}

/// Responder side: validates an initiation and writes the response into `out`
/// (which must hold [`RESP_LEN`] bytes). `admit` sees (peer, lane,
/// timestamp) after the Noise message authenticated them and may refuse
/// (replay, session limits) before anything is written. `our_token` is our
/// reset token for `our_index`, given to the initiator.
pub(crate) fn respond(
    me: &Local<'_>,
    msg: &[u8],
    (our_index, our_token): (ReceiverIndex, &[u8; RESET_TOKEN_LEN]),
    admit: impl FnOnce(&NodeId, u16, u64) -> Result<(), HandshakeError>,
    out: &mut [u8],
) -> Result<(AcceptedInit, usize), HandshakeError> {
    let (local, psk, params, own_mac1_key) = (me.identity, me.psk, me.params, me.mac1);
    if msg.len() != INIT_LEN {
        return Err(WireError::Truncated.into());
    }
    check_mac1(msg, own_mac1_key)?;
    let peer_index = steering_index(msg)?;
    let mut id = [0u8; 32];
    id.copy_from_slice(&msg[8..INIT_HEADER_LEN]);
    let peer = PublicIdentity::from_bytes(&id).map_err(|_| HandshakeError::InvalidIdentity)?;
    let private = local.noise_private_key();
    let prologue = prologue(&peer.node_id(), &local.node_id());
    let mut hs = snow::Builder::new(noise_params())
        .local_private_key(&private[..])
        .and_then(|b| b.psk(2, psk))
        .and_then(|b| b.prologue(&prologue))
        .and_then(|b| b.build_responder())
        .map_err(|_| HandshakeError::Decrypt)?;
    let mut payload = [0u8; INIT_PAYLOAD_LEN + TAG];
    let noise = &msg[INIT_HEADER_LEN..INIT_HEADER_LEN + INIT_NOISE_LEN];
    let n = hs
        .read_message(noise, &mut payload)
        .map_err(|_| HandshakeError::Decrypt)?;
    if hs.get_remote_static() != Some(&peer.noise_public_key()[..]) {
        return Err(HandshakeError::IdentityMismatch);
    }
    let mut r = Reader::new(&payload[..n]);
    let timestamp = r.get_u64()?;
    let lane = r.get_u16()?;
    let peer_params = TransportParams::decode(&mut r)?;
    let reset_token = get_token(&mut r)?;
    admit(&peer.node_id(), lane, timestamp)?;

    let out = out.get_mut(..RESP_LEN).ok_or(WireError::BufferTooSmall)?;
    let mut w = Writer::new(&mut out[..RESP_HEADER_LEN]);
    w.put_u8(PacketType::HandshakeResponse as u8)?;
    w.put_u8(PROTOCOL_VERSION)?;
    w.put_u16(0)?;
    w.put_u32(peer_index.get())?;
    w.put_u32(our_index.get())?;
    let mut resp_payload = [0u8; RESP_PAYLOAD_LEN];
    let mut w = Writer::new(&mut resp_payload);
    params.encode(&mut w)?;
    w.put_bytes(our_token)?;
    hs.write_message(
        &resp_payload,
        &mut out[RESP_HEADER_LEN..RESP_HEADER_LEN + RESP_NOISE_LEN],
    )
    .map_err(|_| HandshakeError::Decrypt)?;
    put_macs(out, &mac1_key(&peer), None);
    let keys = split(&mut hs);
    Ok((
        AcceptedInit {
            peer,
            timestamp,
            lane,
            session: Negotiated {
                peer_index,
                params: peer_params,
                keys,
                reset_token,
            },
        },
        RESP_LEN,
    ))
}
