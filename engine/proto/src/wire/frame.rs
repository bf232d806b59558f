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
        /// One piece of a segmented message body.
        Segment = 0x0b => "SEGMENT",
        /// RPC_REQUEST whose body travels in SEGMENT frames.
        RpcRequestSeg = 0x0c => "RPC_REQUEST_SEG",
        /// RPC_RESPONSE whose body travels in SEGMENT frames.
        RpcResponseSeg = 0x0d => "RPC_RESPONSE_SEG",
        /// STREAM_DATA whose body travels in SEGMENT frames.
        StreamDataSeg = 0x0e => "STREAM_DATA_SEG",
    }
}

/// Smallest piece of a segmented body a SEGMENT frame may carry, unless it
/// is the body's last piece (`docs/PROTOCOL.md` §3.15). A receiver's record
/// of the pieces it holds is then at most `total / MIN_SEGMENT + 1` ranges,
/// whatever the sender does.
pub const MIN_SEGMENT: u64 = 512;

/// A message body as a carrier frame (RPC_REQUEST, RPC_RESPONSE,
/// STREAM_DATA) holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body<'a> {
    /// The whole body, in the carrier frame itself (the base frame type).
    Inline(&'a [u8]),
    /// A body of this many bytes (at least 1), carried by SEGMENT frames
    /// (the `_SEG` frame type).
    Segmented(u64),
}

impl<'a> Body<'a> {
    /// The inline bytes, or `None` for a segmented body.
    pub fn inline(self) -> Option<&'a [u8]> {
        match self {
            Body::Inline(b) => Some(b),
            Body::Segmented(_) => None,
        }
    }

    /// The body's length in bytes.
    pub fn len(self) -> u64 {
        match self {
            Body::Inline(b) => b.len() as u64,
            Body::Segmented(t) => t,
        }
    }

    /// Whether the body has no bytes.
    pub fn is_empty(self) -> bool {
        self.len() == 0
    }

    #[inline(always)]
    fn encoded_len(self) -> usize {
        match self {
            Body::Inline(b) => len_prefixed(b),
            Body::Segmented(t) => varint_len(t),
        }
    }

    #[inline(always)]
    fn encode(self, w: &mut Writer<'_>) -> Result<(), WireError> {
        match self {
            Body::Inline(b) => put_len_prefixed(w, b),
            Body::Segmented(t) => w.put_varint(t),
        }
    }

    /// `inline` for an inline body, else `segmented`.
    #[inline(always)]
    fn pick(self, inline: FrameType, segmented: FrameType) -> FrameType {
        match self {
            Body::Inline(_) => inline,
            Body::Segmented(_) => segmented,
        }
    }

    /// A body as the frame type says: length-prefixed bytes in the base
    /// type, the length (at least 1) in the `_SEG` type.
    #[inline(always)]
    fn read(r: &mut Reader<'a>, segmented: bool) -> Result<Self, WireError> {
        if !segmented {
            return Ok(Body::Inline(r.get_len_prefixed()?));
        }
        match r.get_varint()? {
            0 => Err(WireError::InvalidSegment),
            t => Ok(Body::Segmented(t)),
        }
    }
}

/// Which message of a call a SEGMENT frame belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Part {
    /// The request body (varint 0).
    Request,
    /// The response body (varint 1).
    Response,
    /// Stream message `n` of the sender's direction (varint `n + 2`).
    Stream(u64),
}

impl Part {
    /// The varint code: 0, 1, or `n + 2`. Saturates for an `n` no stream
    /// reaches (message numbers stay far below 2^62).
    pub fn code(self) -> u64 {
        match self {
            Part::Request => 0,
            Part::Response => 1,
            Part::Stream(n) => n.saturating_add(2),
        }
    }

    /// The part a varint code names.
    pub fn from_code(c: u64) -> Self {
        match c {
            0 => Part::Request,
            1 => Part::Response,
            n => Part::Stream(n - 2),
        }
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
        body: Body<'a>,
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
        body: Body<'a>,
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
        body: Body<'a>,
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
    /// SEGMENT: bytes `offset..offset + payload.len()` of a segmented body.
    /// Decoded only if non-empty, within `total`, and at least
    /// [`MIN_SEGMENT`] bytes unless it ends the body.
    Segment {
        /// The call.
        call: CallId,
        /// Which of the call's messages (in the sender's direction).
        part: Part,
        /// The whole body's length; equal in every piece and the carrier.
        total: u64,
        /// Where this piece starts in the body.
        offset: u64,
        /// The piece.
        payload: &'a [u8],
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
            Frame::RpcRequest {
                body: Body::Inline(_),
                ..
            } => FrameType::RpcRequest,
            Frame::RpcRequest { .. } => FrameType::RpcRequestSeg,
            Frame::RpcResponse {
                body: Body::Inline(_),
                ..
            } => FrameType::RpcResponse,
            Frame::RpcResponse { .. } => FrameType::RpcResponseSeg,
            Frame::Cancel { .. } => FrameType::Cancel,
            Frame::StreamData {
                body: Body::Inline(_),
                ..
            } => FrameType::StreamData,
            Frame::StreamData { .. } => FrameType::StreamDataSeg,
            Frame::Segment { .. } => FrameType::Segment,
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
                body,
                ..
            } => varint_len(call.get()) + 8 + 1 + 1 + varint_len(*deadline_ms) + body.encoded_len(),
            Frame::RpcResponse {
                call,
                stream_count,
                body,
                ..
            } => varint_len(call.get()) + 2 + varint_len(*stream_count) + body.encoded_len(),
            Frame::Cancel { call, .. } => varint_len(call.get()) + 2,
            Frame::StreamData {
                call,
                seq,
                offset,
                body,
            } => {
                varint_len(call.get()) + varint_len(*seq) + varint_len(*offset) + body.encoded_len()
            }
            Frame::Segment {
                call,
                part,
                total,
                offset,
                payload,
            } => {
                varint_len(call.get())
                    + varint_len(part.code())
                    + varint_len(*total)
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
        // The type byte, from the arm at hand (one match, not two).
        let ty = |w: &mut Writer<'_>, t: FrameType| w.put_u8(t as u8);
        match self {
            Frame::Ack(_) => Ok(()),
            Frame::RpcRequest {
                call,
                service,
                kind,
                end,
                deadline_ms,
                body,
            } => {
                ty(
                    w,
                    body.pick(FrameType::RpcRequest, FrameType::RpcRequestSeg),
                )?;
                w.put_varint(call.get())?;
                w.put_u64(service.get())?;
                w.put_u8(*kind as u8)?;
                w.put_u8(u8::from(*end))?;
                w.put_varint(*deadline_ms)?;
                body.encode(w)
            }
            Frame::RpcResponse {
                call,
                status,
                stream_count,
                body,
            } => {
                ty(
                    w,
                    body.pick(FrameType::RpcResponse, FrameType::RpcResponseSeg),
                )?;
                w.put_varint(call.get())?;
                w.put_u16(status.get())?;
                w.put_varint(*stream_count)?;
                body.encode(w)
            }
            Frame::StreamData {
                call,
                seq,
                offset,
                body,
            } => {
                ty(
                    w,
                    body.pick(FrameType::StreamData, FrameType::StreamDataSeg),
                )?;
                w.put_varint(call.get())?;
                w.put_varint(*seq)?;
                w.put_varint(*offset)?;
                body.encode(w)
            }
            Frame::Segment {
                call,
                part,
                total,
                offset,
                payload,
            } => encode_segment(w, *call, *part, (*total, *offset), payload),
            _ => self.encode_control(w),
        }
    }

    /// The frames that carry no message body, type byte included.
    fn encode_control(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        w.put_u8(self.frame_type() as u8)?;
        match self {
            Frame::Cancel { call, status } => {
                w.put_varint(call.get())?;
                w.put_u16(status.get())
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
            _ => Ok(()),
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

/// A SEGMENT frame, type byte included.
fn encode_segment(
    w: &mut Writer<'_>,
    call: CallId,
    part: Part,
    (total, offset): (u64, u64),
    payload: &[u8],
) -> Result<(), WireError> {
    w.put_u8(FrameType::Segment as u8)?;
    w.put_varint(call.get())?;
    w.put_varint(part.code())?;
    w.put_varint(total)?;
    w.put_varint(offset)?;
    put_len_prefixed(w, payload)
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
        t @ (FrameType::RpcRequest | FrameType::RpcRequestSeg) => {
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
                body: Body::read(r, t == FrameType::RpcRequestSeg)?,
            }
        }
        t @ (FrameType::RpcResponse | FrameType::RpcResponseSeg) => Frame::RpcResponse {
            call: call(r)?,
            status: Status::from_raw(r.get_u16()?),
            stream_count: r.get_varint()?,
            body: Body::read(r, t == FrameType::RpcResponseSeg)?,
        },
        FrameType::Cancel => Frame::Cancel {
            call: call(r)?,
            status: Status::from_raw(r.get_u16()?),
        },
        t @ (FrameType::StreamData | FrameType::StreamDataSeg) => Frame::StreamData {
            call: call(r)?,
            seq: r.get_varint()?,
            offset: r.get_varint()?,
            body: Body::read(r, t == FrameType::StreamDataSeg)?,
        },
        FrameType::Segment => decode_segment(call(r)?, r)?,
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

/// The rest of a SEGMENT frame (after its call id): a piece must be
/// non-empty, lie within `total`, and be at least [`MIN_SEGMENT`] bytes
/// unless it ends the body.
fn decode_segment<'a>(call: CallId, r: &mut Reader<'a>) -> Result<Frame<'a>, WireError> {
    let part = Part::from_code(r.get_varint()?);
    let total = r.get_varint()?;
    let offset = r.get_varint()?;
    let payload = r.get_len_prefixed()?;
    let len = payload.len() as u64;
    let end = offset.checked_add(len).ok_or(WireError::InvalidSegment)?;
    if len == 0 || end > total || (len < MIN_SEGMENT && end != total) {
        return Err(WireError::InvalidSegment);
    }
    Ok(Frame::Segment {
        call,
        part,
        total,
        offset,
        payload,
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
