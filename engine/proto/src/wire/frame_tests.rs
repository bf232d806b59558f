//! Unit tests for frame encoding and decoding.

use super::*;
use crate::ids::Side;
use crate::ranges::RangeSet;
use crate::wire::{encode_ack, MAX_VARINT};

fn encode_one(f: &Frame<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; f.encoded_len()];
    let mut w = Writer::new(&mut buf);
    f.encode(&mut w).unwrap();
    assert_eq!(w.remaining(), 0, "encoded_len is exact for {f:?}");
    buf
}

fn decode_all(bytes: &[u8]) -> Vec<Result<Frame<'_>, WireError>> {
    frames(bytes).collect()
}

fn ack_bytes() -> Vec<u8> {
    let mut set = RangeSet::new();
    set.insert_range(90..=92);
    set.insert_range(95..=100);
    let mut buf = [0u8; 64];
    let mut w = Writer::new(&mut buf);
    assert_eq!(encode_ack(&mut w, 33, &set, 8), Ok(true));
    w.written().to_vec()
}

/// One frame of every type, with payloads long enough for 2-byte lengths.
fn samples(ack: &[u8]) -> Vec<Frame<'_>> {
    let Some(Ok(ack)) = frames(ack).next() else {
        panic!("ack sample")
    };
    let call = CallId::new(7, Side::Responder);
    vec![
        ack,
        Frame::RpcRequest {
            call,
            service: ServiceId::of("echo"),
            kind: CallKind::Duplex,
            end: false,
            deadline_ms: 1500,
            body: Body::Inline(&[0x5a; 100]),
        },
        Frame::RpcResponse {
            call,
            status: Status::app(3).unwrap(),
            stream_count: 2,
            body: Body::Inline(b"ok"),
        },
        Frame::Cancel {
            call,
            status: Status::CANCELLED,
        },
        Frame::StreamData {
            call,
            seq: 3,
            offset: 70_000,
            body: Body::Inline(b""),
        },
        Frame::StreamEnd { call, count: 4 },
        Frame::Credit(Credit::Calls { limit: 128 }),
        Frame::Credit(Credit::Stream {
            call,
            limit: 1 << 20,
        }),
        Frame::Announce { payload: &[1; 64] },
        Frame::Ping,
        Frame::Close {
            code: 9,
            reason: b"bye",
        },
        Frame::Segment {
            call,
            part: Part::Stream(3),
            total: 70_000,
            offset: 69_000,
            payload: &[0x33; 1000],
        },
        Frame::Segment {
            call,
            part: Part::Request,
            total: 3,
            offset: 1,
            payload: b"yz",
        },
        Frame::RpcRequest {
            call,
            service: ServiceId::of("echo"),
            kind: CallKind::Unary,
            end: true,
            deadline_ms: 0,
            body: Body::Segmented(1 << 24),
        },
        Frame::RpcResponse {
            call,
            status: Status::OK,
            stream_count: 0,
            body: Body::Segmented(2000),
        },
        Frame::StreamData {
            call,
            seq: 3,
            offset: 70_000,
            body: Body::Segmented(70_000),
        },
    ]
}

#[test]
fn segment_golden_layout() {
    // Call 2, response body, total 3, bytes 1..3 = "yz".
    let f = Frame::Segment {
        call: CallId::new(1, Side::Initiator),
        part: Part::Response,
        total: 3,
        offset: 1,
        payload: b"yz",
    };
    let mut buf = [0u8; 16];
    let mut w = Writer::new(&mut buf);
    f.encode(&mut w).unwrap();
    let n = w.position();
    assert_eq!(&buf[..n], &[0x0b, 2, 1, 3, 1, 2, b'y', b'z']);
    assert_eq!(f.frame_type().name(), "SEGMENT");
    // The segmented form of a carrier: its own type, `total` for the payload.
    let r = Frame::RpcResponse {
        call: CallId::new(1, Side::Initiator),
        status: Status::OK,
        stream_count: 0,
        body: Body::Segmented(2000),
    };
    let mut w = Writer::new(&mut buf);
    r.encode(&mut w).unwrap();
    let n = w.position();
    assert_eq!(&buf[..n], &[0x0d, 2, 0, 0, 0, 0x47, 0xd0]);
}

#[test]
fn golden_layouts() {
    let call = CallId::new(1, Side::Initiator);
    let req = Frame::RpcRequest {
        call,
        service: ServiceId::from_raw(0x0102_0304_0506_0708),
        kind: CallKind::Unary,
        end: true,
        deadline_ms: 100,
        body: Body::Inline(b"hi"),
    };
    assert_eq!(
        encode_one(&req),
        [0x02, 0x02, 1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0x40, 100, 2, b'h', b'i']
    );
    let resp = Frame::RpcResponse {
        call,
        status: Status::NOT_FOUND,
        stream_count: 0,
        body: Body::Inline(b""),
    };
    assert_eq!(encode_one(&resp), [0x03, 0x02, 0, 1, 0, 0]);
    let credit = Frame::Credit(Credit::Stream { call, limit: 64 });
    assert_eq!(encode_one(&credit), [0x07, 1, 0x02, 0x40, 64]);
    let close = Frame::Close {
        code: 0x0102,
        reason: b"x",
    };
    assert_eq!(encode_one(&close), [0x0a, 1, 2, 1, b'x']);
    assert_eq!(encode_one(&Frame::Ping), [0x09]);
    assert_eq!(ack_bytes(), [0x01, 0x40, 100, 33, 1, 5, 1, 2]);
}

#[test]
fn every_frame_round_trips_alone_and_concatenated() {
    let ack = ack_bytes();
    let all = samples(&ack);
    let mut packet = Vec::new();
    for f in &all {
        let bytes = encode_one(f);
        assert_eq!(bytes[0], f.frame_type() as u8);
        assert_eq!(decode_all(&bytes), [Ok(f.clone())]);
        packet.extend_from_slice(&bytes);
        packet.extend_from_slice(&[0, 0]);
    }
    let decoded: Vec<_> = decode_all(&packet)
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(decoded, all);
}

#[test]
fn every_strict_prefix_is_truncated() {
    let ack = ack_bytes();
    for f in samples(&ack) {
        let bytes = encode_one(&f);
        for cut in 1..bytes.len() {
            assert_eq!(
                decode_all(&bytes[..cut]),
                [Err(WireError::Truncated)],
                "{f:?} cut at {cut}"
            );
        }
    }
}

#[test]
fn encode_is_all_or_nothing() {
    let ack = ack_bytes();
    for f in samples(&ack) {
        let need = f.encoded_len();
        for cap in 0..need {
            let mut buf = vec![0u8; cap + 1];
            let mut w = Writer::new(&mut buf);
            w.put_u8(0xee).unwrap();
            assert_eq!(f.encode(&mut w), Err(WireError::BufferTooSmall));
            assert_eq!(w.position(), 1);
        }
    }
}

#[test]
fn padding_is_skipped_and_never_yielded() {
    assert!(decode_all(&[]).is_empty());
    assert!(decode_all(&[0; 40]).is_empty());
    assert_eq!(
        decode_all(&[0, 0, 9, 0, 9, 0]),
        [Ok(Frame::Ping), Ok(Frame::Ping)]
    );
    let mut buf = [0xffu8; 4];
    let mut w = Writer::new(&mut buf);
    encode_padding(&mut w, 3).unwrap();
    assert_eq!(encode_padding(&mut w, 2), Err(WireError::BufferTooSmall));
    assert_eq!(buf, [0, 0, 0, 0xff]);
}

#[test]
fn malformed_frames_error_once_then_fuse() {
    let mut it = frames(&[9, 0x0f, 9]);
    assert_eq!(it.next(), Some(Ok(Frame::Ping)));
    assert_eq!(it.next(), Some(Err(WireError::UnknownFrame(0x0f))));
    assert_eq!(it.next(), None);
    assert_eq!(it.remaining(), &[9]);

    let cases: [(&[u8], WireError); 13] = [
        // SEGMENT: empty piece; past its total; short without ending the
        // body; a segmented carrier with an empty body.
        (&[0x0b, 0, 0, 10, 0, 0], WireError::InvalidSegment),
        (&[0x0b, 0, 0, 2, 1, 2, 7, 7], WireError::InvalidSegment),
        (
            &[0x0b, 0, 0, 0x43, 0xe8, 0, 1, 7],
            WireError::InvalidSegment,
        ),
        (&[0x0d, 0, 0, 0, 0, 0], WireError::InvalidSegment),
        (
            &[
                0x0b, 0, 0, 0x43, 0xe8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 7,
            ],
            WireError::InvalidSegment,
        ),
        (
            &[0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0],
            WireError::InvalidCallKind(4),
        ),
        (
            &[0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0],
            WireError::ReservedFlags,
        ),
        (
            &[0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80, 0, 0],
            WireError::ReservedFlags,
        ),
        (&[0x07, 2, 0], WireError::InvalidCreditKind(2)),
        (&[0x0a, 0, 0, 0x40, 129], WireError::ReasonTooLong),
        (&[0x0a, 0, 0, 0x40, 128], WireError::Truncated),
        (&[0x08, 0xbf, 0xff, 0xff, 0xff, 1], WireError::Truncated),
        (&[0xff], WireError::UnknownFrame(0xff)),
    ];
    for (bytes, err) in cases {
        assert_eq!(decode_all(bytes), [Err(err)], "{bytes:?}");
    }
}

#[test]
fn encoder_refuses_what_the_decoder_would_reject() {
    let mut buf = [0u8; 512];
    let mut w = Writer::new(&mut buf);
    let long = [b'a'; MAX_CLOSE_REASON + 1];
    let close = Frame::Close {
        code: 1,
        reason: &long,
    };
    assert_eq!(close.encode(&mut w), Err(WireError::ReasonTooLong));
    let max_reason = Frame::Close {
        code: 1,
        reason: &long[..MAX_CLOSE_REASON],
    };
    assert_eq!(max_reason.encode(&mut w), Ok(()));
    let at = w.position();
    let huge = Frame::StreamEnd {
        call: CallId::from_raw(MAX_VARINT + 1),
        count: 0,
    };
    assert_eq!(huge.encode(&mut w), Err(WireError::VarintOverflow));
    let huge = Frame::RpcRequest {
        call: CallId::from_raw(1),
        service: ServiceId::from_raw(1),
        kind: CallKind::Unary,
        end: true,
        deadline_ms: u64::MAX,
        body: Body::Inline(b""),
    };
    assert_eq!(huge.encode(&mut w), Err(WireError::VarintOverflow));
    assert_eq!(w.position(), at);
}

#[test]
fn ack_eliciting_and_retransmittable() {
    let ack = ack_bytes();
    for f in samples(&ack) {
        let is_ack = matches!(f, Frame::Ack(_));
        assert_eq!(f.is_ack_eliciting(), !is_ack);
        assert_eq!(f.is_retransmittable(), !is_ack && f != Frame::Ping);
    }
}
