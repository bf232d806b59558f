//! Frames: the plaintext of a data packet (`docs/PROTOCOL.md` §3).

use std::iter::FusedIterator;

use super::ack::AckFrame;
use super::cursor::{varint_len, Reader, Writer};
use super::registry::wire_registry;
use super::WireError;
use crate::ids::{CallId, CallKind, ServiceId, Status};

/// Longest CLOSE reason in bytes. Keeps CLOSE small enough to fit any packet
/// and stops a peer from using it to ship data.
pub const MAX_CLOSE_REASON: usize = 128;

wire_registry! {
    /// Frame type byte (`docs/PROTOCOL.md` §3). An undefined byte is
    /// [`WireError::UnknownFrame`].
    pub enum FrameType: u8, unknown = WireError::UnknownFrame {
        /// One byte of padding; never yielded by the decoder.
        Padding = 0x00 => "PADDING",
        /// Acknowledged packet-number ranges.
        Ack = 0x01 => "ACK",
        /// Opens a call.
        RpcRequest = 0x02 => "RPC_REQUEST",
        /// Completes a call from the callee side.
        RpcResponse = 0x03 => "RPC_RESPONSE",
        /// Abandons a call.
        Cancel = 0x04 => "CANCEL",
        /// One stream message of a call.
        StreamData = 0x05 => "STREAM_DATA",
        /// Ends one direction's stream of a call.
        StreamEnd = 0x06 => "STREAM_END",
        /// Grants flow-control credit.
        Credit = 0x07 => "CREDIT",
        /// Capability announcement (opaque at this layer).
        Announce = 0x08 => "ANNOUNCE",
        /// Elicits an ACK; carries nothing.
        Ping = 0x09 => "PING",
        /// Closes the session.
        Close = 0x0a => "CLOSE",
    }
}

/// Flow-control credit granted to the peer (frame type CREDIT).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Credit {
    /// Kind 0: the peer may open calls whose sequence number is below
    /// `limit`. Limits only grow; a smaller one is stale and ignored.
    Calls {
        /// Exclusive upper bound on the peer's call sequence numbers.
        limit: u64,
    },
    /// Kind 1: the peer may send stream bytes of `call` up to byte offset
    /// `limit` (offset + length ≤ limit).
    Stream {
        /// The call whose stream the credit is for.
        call: CallId,
        /// Highest stream byte offset (exclusive) the peer may reach.
        limit: u64,
    },
}

/// One decoded frame. Payloads borrow from the decrypted packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame<'a> {
    /// ACK: packet numbers received.
    Ack(AckFrame<'a>),
    /// RPC_REQUEST: opens `call` on `service`.
    RpcRequest {
        /// The new call's id.
        call: CallId,
        /// Hashed service name.
        service: ServiceId,
        /// Unary or streaming shape.
        kind: CallKind,
        /// No request-stream messages follow (always true for unary and
        /// server-streaming calls).
        end: bool,
        /// Remaining deadline budget in ms at send time; 0 = none.
        deadline_ms: u64,
        /// The request message.
        payload: &'a [u8],
    },
    /// RPC_RESPONSE: final status and message of `call`.
    RpcResponse {
        /// The call being answered.
        call: CallId,
        /// Outcome.
        status: Status,
        /// STREAM_DATA messages the responder sent on this call before this
        /// frame, so the caller knows when it has them all.
        stream_count: u64,
        /// The response message.
        payload: &'a [u8],
    },
    /// CANCEL: either end abandons `call`.
    Cancel {
        /// The call abandoned.
        call: CallId,
        /// Why (usually [`Status::CANCELLED`] or [`Status::TIMEOUT`]).
        status: Status,
    },
    /// STREAM_DATA: one message of a call's stream in the sender's direction.
    StreamData {
        /// The call.
        call: CallId,
        /// Message number in this direction, from 0.
        seq: u64,
        /// Byte offset of this message in the direction's stream (the sum of
        /// the lengths of messages 0..seq).
        offset: u64,
        /// The message.
        payload: &'a [u8],
    },
    /// STREAM_END: the sender's direction of `call` carries no more messages.
    StreamEnd {
        /// The call.
        call: CallId,
        /// Total STREAM_DATA messages sent in this direction.
        count: u64,
    },
    /// CREDIT: flow-control grant.
    Credit(Credit),
    /// ANNOUNCE: opaque announcement payload.
    Announce {
        /// The announcement bytes.
        payload: &'a [u8],
    },
    /// PING: elicits an ACK.
    Ping,
    /// CLOSE: the sender tears the session down.
    Close {
        /// Application or protocol close code.
        code: u16,
        /// Human-readable reason, ≤ [`MAX_CLOSE_REASON`] bytes.
        reason: &'a [u8],
    },
}

/// Length of a varint length prefix plus the bytes it prefixes.
#[inline]
fn len_prefixed(bytes: &[u8]) -> usize {
    varint_len(bytes.len() as u64) + bytes.len()
}

/// Writes a varint length prefix and the bytes.
#[inline]
fn put_len_prefixed(w: &mut Writer<'_>, bytes: &[u8]) -> Result<(), WireError> {
    let len = u64::try_from(bytes.len()).map_err(|_| WireError::VarintOverflow)?;
    w.put_varint(len)?;
    w.put_bytes(bytes)
}

impl Frame<'_> {
    /// The frame's type byte.
    pub fn frame_type(&self) -> FrameType {
        match self {
            Frame::Ack(_) => FrameType::Ack,
            Frame::RpcRequest { .. } => FrameType::RpcRequest,
            Frame::RpcResponse { .. } => FrameType::RpcResponse,
            Frame::Cancel { .. } => FrameType::Cancel,
            Frame::StreamData { .. } => FrameType::StreamData,
            Frame::StreamEnd { .. } => FrameType::StreamEnd,
            Frame::Credit(_) => FrameType::Credit,
            Frame::Announce { .. } => FrameType::Announce,
            Frame::Ping => FrameType::Ping,
            Frame::Close { .. } => FrameType::Close,
        }
    }

    /// Bytes [`encode`](Self::encode) writes, type byte included. Exact for
    /// every encodable frame; for one that fails with
    /// [`WireError::VarintOverflow`] it is an overestimate.
    pub fn encoded_len(&self) -> usize {
        1 + match self {
            Frame::Ack(a) => a.encoded_len() - 1,
            Frame::RpcRequest {
                call,
                deadline_ms,
                payload,
                ..
            } => {
                varint_len(call.get())
                    + 8
                    + 1
                    + 1
                    + varint_len(*deadline_ms)
                    + len_prefixed(payload)
            }
            Frame::RpcResponse {
                call,
                stream_count,
                payload,
                ..
            } => varint_len(call.get()) + 2 + varint_len(*stream_count) + len_prefixed(payload),
            Frame::Cancel { call, .. } => varint_len(call.get()) + 2,
            Frame::StreamData {
                call,
                seq,
                offset,
                payload,
            } => {
                varint_len(call.get())
                    + varint_len(*seq)
                    + varint_len(*offset)
                    + len_prefixed(payload)
            }
            Frame::StreamEnd { call, count } => varint_len(call.get()) + varint_len(*count),
            Frame::Credit(Credit::Calls { limit }) => 1 + varint_len(*limit),
            Frame::Credit(Credit::Stream { call, limit }) => {
                1 + varint_len(call.get()) + varint_len(*limit)
            }
            Frame::Announce { payload } => len_prefixed(payload),
            Frame::Ping => 0,
            Frame::Close { code: _, reason } => 2 + len_prefixed(reason),
        }
    }

    /// Appends the frame to `w`. All-or-nothing: on any error (including
    /// [`WireError::BufferTooSmall`]) the writer's position is unchanged, so a
    /// packet builder can carry the frame over to the next packet.
    ///
    /// Fails with [`WireError::VarintOverflow`] if a varint field exceeds
    /// 2^62 − 1 and [`WireError::ReasonTooLong`] for a CLOSE reason over
    /// [`MAX_CLOSE_REASON`] bytes: the encoder never emits what the decoder
    /// would reject.
    pub fn encode(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        if matches!(self, Frame::Close { reason, .. } if reason.len() > MAX_CLOSE_REASON) {
            return Err(WireError::ReasonTooLong);
        }
        if self.encoded_len() > w.remaining() {
            return Err(WireError::BufferTooSmall);
        }
        let start = w.position();
        let res = self.encode_fields(w);
        if res.is_err() {
            w.rewind(start);
        }
        res
    }

    fn encode_fields(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        if let Frame::Ack(a) = self {
            return a.encode_fields(w);
        }
        w.put_u8(self.frame_type() as u8)?;
        match self {
            Frame::Ack(_) | Frame::Ping => Ok(()),
            Frame::RpcRequest {
                call,
                service,
                kind,
                end,
                deadline_ms,
                payload,
            } => {
                w.put_varint(call.get())?;
                w.put_u64(service.get())?;
                w.put_u8(*kind as u8)?;
                w.put_u8(u8::from(*end))?;
                w.put_varint(*deadline_ms)?;
                put_len_prefixed(w, payload)
            }
            Frame::RpcResponse {
                call,
                status,
                stream_count,
                payload,
            } => {
                w.put_varint(call.get())?;
                w.put_u16(status.get())?;
                w.put_varint(*stream_count)?;
                put_len_prefixed(w, payload)
            }
            Frame::Cancel { call, status } => {
                w.put_varint(call.get())?;
                w.put_u16(status.get())
            }
            Frame::StreamData {
                call,
                seq,
                offset,
                payload,
            } => {
                w.put_varint(call.get())?;
                w.put_varint(*seq)?;
                w.put_varint(*offset)?;
                put_len_prefixed(w, payload)
            }
            Frame::StreamEnd { call, count } => {
                w.put_varint(call.get())?;
                w.put_varint(*count)
            }
            Frame::Credit(c) => encode_credit(w, c),
            Frame::Announce { payload } => put_len_prefixed(w, payload),
            Frame::Close { code, reason } => {
                w.put_u16(*code)?;
                put_len_prefixed(w, reason)
            }
        }
    }

    /// True if receiving this frame obliges the peer to send an ACK: every
    /// frame but ACK (and padding, which is never a `Frame`). ACK-only
    /// packets are not acknowledged, or two idle peers would ACK forever.
    pub fn is_ack_eliciting(&self) -> bool {
        !matches!(self, Frame::Ack(_))
    }

    /// True if the frame's content must reach the peer, so a lost copy is
    /// re-sent: everything but ACK (rebuilt fresh from current state each
    /// time) and PING (its only job is to elicit an ACK, which any later
    /// packet can do).
    pub fn is_retransmittable(&self) -> bool {
        !matches!(self, Frame::Ack(_) | Frame::Ping)
    }
}

fn encode_credit(w: &mut Writer<'_>, c: &Credit) -> Result<(), WireError> {
    match *c {
        Credit::Calls { limit } => {
            w.put_u8(0)?;
            w.put_varint(limit)
        }
        Credit::Stream { call, limit } => {
            w.put_u8(1)?;
            w.put_varint(call.get())?;
            w.put_varint(limit)
        }
    }
}

/// Appends `n` PADDING bytes (for example to pad a probe to a path-MTU size).
/// All-or-nothing like every `Writer` call.
pub fn encode_padding(w: &mut Writer<'_>, n: usize) -> Result<(), WireError> {
    w.put_zeros(n)
}

/// Decodes the frame body that follows type byte `ty`.
///
/// Dispatches on [`FrameType`], exhaustively: a type added to the registry
/// does not compile until it has a decoder here.
fn decode_body<'a>(ty: u8, r: &mut Reader<'a>) -> Result<Frame<'a>, WireError> {
    let call = |r: &mut Reader<'a>| r.get_varint().map(CallId::from_raw);
    Ok(match FrameType::try_from(ty)? {
        // The iterator skips padding before it reads a type byte, so a 0x00
        // here cannot happen; if it did, it would not be a frame.
        FrameType::Padding => return Err(WireError::UnknownFrame(ty)),
        FrameType::Ack => Frame::Ack(AckFrame::decode(r)?),
        FrameType::RpcRequest => {
            let call = call(r)?;
            let service = ServiceId::from_raw(r.get_u64()?);
            let kind = CallKind::try_from(r.get_u8()?)?;
            let flags = r.get_u8()?;
            if flags & !1 != 0 {
                return Err(WireError::ReservedFlags);
            }
            Frame::RpcRequest {
                call,
                service,
                kind,
                end: flags & 1 != 0,
                deadline_ms: r.get_varint()?,
                payload: r.get_len_prefixed()?,
            }
        }
        FrameType::RpcResponse => Frame::RpcResponse {
            call: call(r)?,
            status: Status::from_raw(r.get_u16()?),
            stream_count: r.get_varint()?,
            payload: r.get_len_prefixed()?,
        },
        FrameType::Cancel => Frame::Cancel {
            call: call(r)?,
            status: Status::from_raw(r.get_u16()?),
        },
        FrameType::StreamData => Frame::StreamData {
            call: call(r)?,
            seq: r.get_varint()?,
            offset: r.get_varint()?,
            payload: r.get_len_prefixed()?,
        },
        FrameType::StreamEnd => Frame::StreamEnd {
            call: call(r)?,
            count: r.get_varint()?,
        },
        FrameType::Credit => Frame::Credit(match r.get_u8()? {
            0 => Credit::Calls {
                limit: r.get_varint()?,
            },
            1 => Credit::Stream {
                call: call(r)?,
                limit: r.get_varint()?,
            },
            other => return Err(WireError::InvalidCreditKind(other)),
        }),
        FrameType::Announce => Frame::Announce {
            payload: r.get_len_prefixed()?,
        },
        FrameType::Ping => Frame::Ping,
        FrameType::Close => {
            let code = r.get_u16()?;
            let len = r.get_varint()?;
            if len > MAX_CLOSE_REASON as u64 {
                return Err(WireError::ReasonTooLong);
            }
            // len ≤ 128, so the conversion cannot fail.
            let len = usize::try_from(len).map_err(|_| WireError::ReasonTooLong)?;
            Frame::Close {
                code,
                reason: r.get_bytes(len)?,
            }
        }
    })
}

/// Iterator over the frames of a decrypted packet payload.
///
/// Skips PADDING, yields each frame in order, and on the first malformed
/// frame yields that error once and then ends: after a framing error the
/// boundaries of later frames are unknowable. Frames yielded before the
/// error were well-formed; whether to act on them or drop the packet is the
/// session's policy (the packet authenticated, so the peer is at fault).
#[derive(Debug, Clone)]
pub struct Frames<'a> {
    r: Reader<'a>,
    done: bool,
}

/// Frames of `payload` (the plaintext of one data packet).
pub fn frames(payload: &[u8]) -> Frames<'_> {
    Frames {
        r: Reader::new(payload),
        done: false,
    }
}

impl<'a> Frames<'a> {
    /// The bytes not yet decoded.
    pub fn remaining(&self) -> &'a [u8] {
        self.r.rest()
    }
}

impl<'a> Iterator for Frames<'a> {
    type Item = Result<Frame<'a>, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let rest = self.r.rest();
        let padding = rest.iter().position(|&b| b != 0).unwrap_or(rest.len());
        // Cannot fail: `padding` ≤ the remaining length.
        let _ = self.r.get_bytes(padding);
        let Ok(ty) = self.r.get_u8() else {
            self.done = true;
            return None;
        };
        let res = decode_body(ty, &mut self.r);
        if res.is_err() {
            self.done = true;
        }
        Some(res)
    }
}

impl FusedIterator for Frames<'_> {}

#[cfg(test)]
#[path = "frame_tests.rs"]
mod tests;
