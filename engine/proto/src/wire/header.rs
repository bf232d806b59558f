//! Packet types and the data-packet header (`docs/PROTOCOL.md` §2).

use super::registry::wire_registry;
use super::WireError;
use crate::ids::ReceiverIndex;

/// The protocol version carried in byte 1 of every datagram. A receiver
/// drops datagrams of any other version before touching keys.
pub const PROTOCOL_VERSION: u8 = 1;

/// Length of the data-packet header, which is also the AEAD associated data.
pub const DATA_HEADER_LEN: usize = 16;

/// Length of the AEAD tag that ends every data packet.
pub const TAG_LEN: usize = 16;

/// Shortest well-formed data packet: a header and a tag around an empty
/// plaintext. Anything shorter cannot authenticate and is dropped unopened.
pub const MIN_DATA_PACKET: usize = DATA_HEADER_LEN + TAG_LEN;

/// Offset of the u32 (big-endian) that kernel steering reads in every packet
/// type: the receiver's index for data, handshake-response and cookie-reply
/// packets, and the sender's index for handshake-init (which has no receiver
/// index yet, so steering falls back to spreading by the sender's).
pub const STEERING_INDEX_OFFSET: usize = 4;

wire_registry! {
    /// Kind of datagram, from byte 0 (`docs/PROTOCOL.md` §2). An undefined
    /// byte is [`WireError::UnknownPacketType`].
    pub enum PacketType: u8, unknown = WireError::UnknownPacketType {
        /// First Noise IKpsk2 message (initiator → responder).
        HandshakeInit = 1 => "HandshakeInit",
        /// Second Noise IKpsk2 message (responder → initiator).
        HandshakeResponse = 2 => "HandshakeResponse",
        /// Stateless reply to a handshake-init under load (cookie challenge).
        CookieReply = 3 => "CookieReply",
        /// Encrypted transport packet carrying frames.
        Data = 4 => "Data",
        /// Stateless reset: "I hold no session for this index" from a node
        /// that lost its state (see [`ResetPacket`]).
        Reset = 5 => "Reset",
    }
}

impl PacketType {
    /// Classifies a datagram by its first two bytes.
    ///
    /// Checks, in order: at least 2 bytes ([`WireError::Truncated`]), a known
    /// type ([`WireError::UnknownPacketType`]), and [`PROTOCOL_VERSION`]
    /// ([`WireError::UnsupportedVersion`]). The rest of the datagram is the
    /// type-specific decoder's business.
    pub fn parse(datagram: &[u8]) -> Result<PacketType, WireError> {
        let [ty, version] = *datagram.first_chunk::<2>().ok_or(WireError::Truncated)?;
        let ty = PacketType::try_from(ty)?;
        if version != PROTOCOL_VERSION {
            return Err(WireError::UnsupportedVersion(version));
        }
        Ok(ty)
    }
}

/// Reads the steering index (bytes 4..8, big-endian) of any datagram, as the
/// kernel's BPF program does; `None` if the datagram is shorter than 8 bytes.
/// It does not validate the type: the kernel cannot either.
pub fn steering_index(datagram: &[u8]) -> Option<u32> {
    let bytes = datagram.get(STEERING_INDEX_OFFSET..STEERING_INDEX_OFFSET + 4)?;
    let mut word = [0u8; 4];
    word.copy_from_slice(bytes);
    Some(u32::from_be_bytes(word))
}

/// Header of a data packet. Sent in clear and authenticated as AEAD
/// associated data, so a forged or flipped bit fails decryption.
///
/// Layout (16 bytes): `[0] = 4`, `[1] = PROTOCOL_VERSION`, `[2]` reply
/// hint, `[3]` flags (bit 0 = key phase, all other bits zero), `[4..8]`
/// receiver index (u32 BE), `[8..16]` packet counter (u64 BE).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DataHeader {
    /// Which of the two current key generations sealed the packet; flips on
    /// every rekey so that the receiver can pick the key without trial
    /// decryption.
    pub key_phase: bool,
    /// The low byte of the *sender's* receiver index: a receiver that lost
    /// the session echoes it in a [`ResetPacket`]'s steering field, so the
    /// kernel steers the reset to the sender's owning core (whose index
    /// bits are at most 8 wide).
    pub reply_hint: u8,
    /// The receiver's session index (see [`ReceiverIndex`]).
    pub receiver: ReceiverIndex,
    /// Packet number: the AEAD nonce, the replay-window position and the
    /// number ACK frames refer to. Never reused under one key.
    pub counter: u64,
}

impl DataHeader {
    const FLAG_KEY_PHASE: u8 = 0x01;

    /// Writes the header. Infallible: every field value has an encoding.
    pub fn encode(&self, out: &mut [u8; DATA_HEADER_LEN]) {
        let f1 = if self.key_phase {
            Self::FLAG_KEY_PHASE
        } else {
            0
        };
        let f0 = self.reply_hint;
        let [r0, r1, r2, r3] = self.receiver.get().to_be_bytes();
        let [c0, c1, c2, c3, c4, c5, c6, c7] = self.counter.to_be_bytes();
        *out = [
            PacketType::Data as u8,
            PROTOCOL_VERSION,
            f0,
            f1,
            r0,
            r1,
            r2,
            r3,
            c0,
            c1,
            c2,
            c3,
            c4,
            c5,
            c6,
            c7,
        ];
    }

    /// The encoded header as an array.
    pub fn to_bytes(&self) -> [u8; DATA_HEADER_LEN] {
        let mut out = [0u8; DATA_HEADER_LEN];
        self.encode(&mut out);
        out
    }

    /// Decodes the header of a whole data datagram (header, ciphertext, tag).
    ///
    /// Checks, in order: [`PacketType::parse`]; that the type is
    /// [`PacketType::Data`] ([`WireError::UnexpectedPacketType`]); length ≥
    /// [`MIN_DATA_PACKET`] ([`WireError::Truncated`]); no reserved flag bits
    /// ([`WireError::ReservedFlags`]). Accepted headers therefore re-encode
    /// to exactly the input bytes.
    pub fn decode(datagram: &[u8]) -> Result<DataHeader, WireError> {
        let ty = PacketType::parse(datagram)?;
        if ty != PacketType::Data {
            return Err(WireError::UnexpectedPacketType(ty as u8));
        }
        if datagram.len() < MIN_DATA_PACKET {
            return Err(WireError::Truncated);
        }
        let h = datagram
            .first_chunk::<DATA_HEADER_LEN>()
            .ok_or(WireError::Truncated)?;
        let [_, _, hint, flags, r0, r1, r2, r3, c0, c1, c2, c3, c4, c5, c6, c7] = *h;
        if flags & !Self::FLAG_KEY_PHASE != 0 {
            return Err(WireError::ReservedFlags);
        }
        Ok(DataHeader {
            key_phase: flags & Self::FLAG_KEY_PHASE != 0,
            reply_hint: hint,
            receiver: ReceiverIndex::new(u32::from_be_bytes([r0, r1, r2, r3])),
            counter: u64::from_be_bytes([c0, c1, c2, c3, c4, c5, c6, c7]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(h: &DataHeader, body: usize) -> Vec<u8> {
        let mut p = h.to_bytes().to_vec();
        p.resize(DATA_HEADER_LEN + body, 0xaa);
        p
    }

    #[test]
    fn header_layout_is_fixed() {
        let h = DataHeader {
            key_phase: true,
            reply_hint: 0x2a,
            receiver: ReceiverIndex::new(0x0102_0304),
            counter: 0x1112_1314_1516_1718,
        };
        assert_eq!(
            h.to_bytes(),
            [4, 1, 0x2a, 1, 1, 2, 3, 4, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18]
        );
        let p = packet(&h, TAG_LEN);
        assert_eq!(DataHeader::decode(&p), Ok(h));
        assert_eq!(steering_index(&p), Some(0x0102_0304));
        assert_eq!(PacketType::parse(&p), Ok(PacketType::Data));
    }

    #[test]
    fn decode_rejects_short_wrong_type_and_flags() {
        let h = DataHeader {
            key_phase: false,
            reply_hint: 0,
            receiver: ReceiverIndex::new(9),
            counter: u64::MAX,
        };
        let ok = packet(&h, TAG_LEN);
        assert_eq!(DataHeader::decode(&ok), Ok(h));
        assert_eq!(
            DataHeader::decode(&ok[..MIN_DATA_PACKET - 1]),
            Err(WireError::Truncated)
        );
        assert_eq!(DataHeader::decode(&ok[..1]), Err(WireError::Truncated));
        assert_eq!(DataHeader::decode(&[]), Err(WireError::Truncated));

        let mut bad = ok.clone();
        bad[3] = 0x80;
        assert_eq!(DataHeader::decode(&bad), Err(WireError::ReservedFlags));
        bad[3] = 0x02;
        assert_eq!(DataHeader::decode(&bad), Err(WireError::ReservedFlags));

        let mut bad = ok.clone();
        bad[1] = 2;
        assert_eq!(
            DataHeader::decode(&bad),
            Err(WireError::UnsupportedVersion(2))
        );
        bad[0] = 0;
        assert_eq!(
            DataHeader::decode(&bad),
            Err(WireError::UnknownPacketType(0))
        );
        let mut bad = ok;
        bad[0] = PacketType::HandshakeInit as u8;
        assert_eq!(
            DataHeader::decode(&bad),
            Err(WireError::UnexpectedPacketType(1))
        );
        assert_eq!(PacketType::parse(&bad), Ok(PacketType::HandshakeInit));
    }

    #[test]
    fn packet_type_parse_order() {
        assert_eq!(PacketType::parse(&[4]), Err(WireError::Truncated));
        assert_eq!(
            PacketType::parse(&[6, 1]),
            Err(WireError::UnknownPacketType(6))
        );
        assert_eq!(
            PacketType::parse(&[6, 9]),
            Err(WireError::UnknownPacketType(6))
        );
        assert_eq!(
            PacketType::parse(&[3, 0]),
            Err(WireError::UnsupportedVersion(0))
        );
        for t in 1..=5u8 {
            assert_eq!(PacketType::parse(&[t, 1]).map(|p| p as u8), Ok(t));
        }
        assert_eq!(steering_index(&[0; 7]), None);
    }
}
