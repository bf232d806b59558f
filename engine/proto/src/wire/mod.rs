//! Wire codec: byte cursors, QUIC varints, the packet header and frames.
//!
//! Layouts are specified in `docs/PROTOCOL.md` §1–§3; this module is the
//! reference implementation of those sections.
//!
//! Every decoder here borrows from its input and allocates nothing, and none
//! of them can panic on any input: lengths are checked before slicing, all
//! arithmetic on wire values is checked, and a malformed input yields a
//! [`WireError`]. Encoders are all-or-nothing where documented so that a
//! packet builder can try a frame, and on [`WireError::BufferTooSmall`] send
//! what it has and carry the frame over to the next packet.

mod ack;
mod cursor;
mod frame;
mod header;
pub(crate) mod registry;
mod reset;

pub use ack::{encode_ack, AckFrame, AckRanges, MAX_ACK_RANGES};
pub use cursor::{varint_len, Reader, Writer, MAX_VARINT};
pub use frame::{
    encode_padding, frames, Body, Credit, Frame, FrameType, Frames, Part, MAX_CLOSE_REASON,
    MIN_SEGMENT,
};
pub use header::{
    steering_index, DataHeader, PacketType, DATA_HEADER_LEN, MIN_DATA_PACKET, PROTOCOL_VERSION,
    STEERING_INDEX_OFFSET, TAG_LEN,
};
pub use reset::{ResetPacket, RESET_LEN, RESET_TOKEN_LEN};

use thiserror::Error;

/// Why a datagram, frame or field could not be decoded or encoded.
///
/// Decoding errors carry the offending byte where one exists so that the
/// engine can count them per kind; none of them carries input-sized data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Error)]
#[non_exhaustive]
pub enum WireError {
    /// The input ended before a field, or a length prefix points past its end.
    #[error("input truncated")]
    Truncated,
    /// The output buffer cannot hold the value being written.
    #[error("output buffer too small")]
    BufferTooSmall,
    /// Byte 0 of a datagram is not a known [`PacketType`].
    #[error("unknown packet type {0:#04x}")]
    UnknownPacketType(u8),
    /// A known packet type was given to a decoder for a different type (for
    /// example a handshake packet to [`DataHeader::decode`]).
    #[error("unexpected packet type {0:#04x}")]
    UnexpectedPacketType(u8),
    /// Byte 1 of a datagram is not [`PROTOCOL_VERSION`].
    #[error("unsupported protocol version {0}")]
    UnsupportedVersion(u8),
    /// A flags field has a bit set that this version does not define.
    #[error("reserved flag bits set")]
    ReservedFlags,
    /// A frame type byte is not defined by this version.
    #[error("unknown frame type {0:#04x}")]
    UnknownFrame(u8),
    /// The call-kind byte of an RPC_REQUEST is not a [`crate::ids::CallKind`].
    #[error("invalid call kind {0}")]
    InvalidCallKind(u8),
    /// The kind byte of a CREDIT frame is not defined.
    #[error("invalid credit kind {0}")]
    InvalidCreditKind(u8),
    /// An ACK range would extend below packet number 0.
    #[error("invalid ACK range")]
    InvalidAckRange,
    /// An ACK frame lists more than [`MAX_ACK_RANGES`] additional ranges.
    #[error("too many ACK ranges")]
    TooManyAckRanges,
    /// A CLOSE reason is longer than [`MAX_CLOSE_REASON`] bytes.
    #[error("close reason too long")]
    ReasonTooLong,
    /// A SEGMENT piece is empty, ends past its body's `total`, or is shorter
    /// than [`MIN_SEGMENT`] without ending the body; or a segmented
    /// carrier announces an empty body.
    #[error("invalid segment")]
    InvalidSegment,
    /// A value to be encoded as a varint exceeds [`MAX_VARINT`] (2^62 − 1).
    #[error("value too large for a varint")]
    VarintOverflow,
}
