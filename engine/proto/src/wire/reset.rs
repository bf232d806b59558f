//! The stateless reset packet (`docs/PROTOCOL.md` §2.4).

use super::header::{PacketType, PROTOCOL_VERSION};
use super::WireError;
use crate::ids::ReceiverIndex;

/// Size of a reset on the wire: always smaller than the smallest data
/// packet ([`MIN_DATA_PACKET`](super::MIN_DATA_PACKET), 32 bytes) that can
/// provoke one, so a reset never amplifies.
pub const RESET_LEN: usize = 28;
const _: () = assert!(
    RESET_LEN < super::MIN_DATA_PACKET,
    "a reset must never amplify"
);

/// Length of the token that authenticates a reset.
pub const RESET_TOKEN_LEN: usize = 16;

/// "I hold no session with receiver index `index`": sent by a node that
/// lost its state (crash, restart) in answer to a data packet for a session
/// it no longer knows. The peer that holds the session checks `token`
/// against the one this node gave it, encrypted, in the handshake; only
/// this node (its static identity) can compute it.
///
/// Layout (28 bytes): `[0] = 5`, `[1] = PROTOCOL_VERSION`, `[2..4]` zero,
/// `[4..8]` steering value (u32 BE: the provoking packet's reply hint, so
/// the kernel steers the reset to the core that owns the session), `[8..12]`
/// the unknown receiver index (u32 BE), `[12..28]` the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResetPacket {
    /// Echo of the provoking packet's [`DataHeader::reply_hint`](super::DataHeader::reply_hint).
    pub steer: u8,
    /// The receiver index the sender no longer knows (the peer's view:
    /// its session's peer index).
    pub index: ReceiverIndex,
    /// Proof that the node that issued `index` sent this.
    pub token: [u8; RESET_TOKEN_LEN],
}

impl ResetPacket {
    /// Writes the packet.
    pub fn encode(&self, out: &mut [u8; RESET_LEN]) {
        out[..4].copy_from_slice(&[PacketType::Reset as u8, PROTOCOL_VERSION, 0, 0]);
        out[4..8].copy_from_slice(&u32::from(self.steer).to_be_bytes());
        out[8..12].copy_from_slice(&self.index.get().to_be_bytes());
        out[12..].copy_from_slice(&self.token);
    }

    /// Decodes a whole reset datagram. Checks, in order:
    /// [`PacketType::parse`]; type [`PacketType::Reset`]
    /// ([`WireError::UnexpectedPacketType`]); exactly [`RESET_LEN`] bytes
    /// ([`WireError::Truncated`] otherwise); zero reserved bytes and a
    /// steering value below 256 ([`WireError::ReservedFlags`]). Accepted
    /// packets re-encode to exactly the input.
    pub fn decode(datagram: &[u8]) -> Result<ResetPacket, WireError> {
        let ty = PacketType::parse(datagram)?;
        if ty != PacketType::Reset {
            return Err(WireError::UnexpectedPacketType(ty as u8));
        }
        let d: &[u8; RESET_LEN] = datagram.try_into().map_err(|_| WireError::Truncated)?;
        let [_, _, r0, r1, s0, s1, s2, s3, i0, i1, i2, i3, ..] = *d;
        let steer = u32::from_be_bytes([s0, s1, s2, s3]);
        if r0 != 0 || r1 != 0 || steer > 0xff {
            return Err(WireError::ReservedFlags);
        }
        let mut token = [0u8; RESET_TOKEN_LEN];
        token.copy_from_slice(&d[12..]);
        Ok(ResetPacket {
            steer: s3,
            index: ReceiverIndex::new(u32::from_be_bytes([i0, i1, i2, i3])),
            token,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::steering_index;

    #[test]
    fn layout_round_trip_and_steering() {
        let p = ResetPacket {
            steer: 3,
            index: ReceiverIndex::new(0xdead_beef),
            token: [7; RESET_TOKEN_LEN],
        };
        let mut b = [0u8; RESET_LEN];
        p.encode(&mut b);
        assert_eq!(&b[..12], &[5, 1, 0, 0, 0, 0, 0, 3, 0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(ResetPacket::decode(&b), Ok(p));
        assert_eq!(steering_index(&b), Some(3));
    }

    #[test]
    fn decode_rejects_wrong_size_type_and_reserved() {
        let mut b = [0u8; RESET_LEN];
        ResetPacket {
            steer: 0,
            index: ReceiverIndex::new(1),
            token: [0; RESET_TOKEN_LEN],
        }
        .encode(&mut b);
        assert_eq!(ResetPacket::decode(&b[..27]), Err(WireError::Truncated));
        let mut long = b.to_vec();
        long.push(0);
        assert_eq!(ResetPacket::decode(&long), Err(WireError::Truncated));
        let mut bad = b;
        bad[2] = 1;
        assert_eq!(ResetPacket::decode(&bad), Err(WireError::ReservedFlags));
        let mut bad = b;
        bad[6] = 1;
        assert_eq!(ResetPacket::decode(&bad), Err(WireError::ReservedFlags));
        let mut bad = b;
        bad[0] = 4;
        assert_eq!(
            ResetPacket::decode(&bad),
            Err(WireError::UnexpectedPacketType(4))
        );
    }
}
