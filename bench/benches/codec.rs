//! Wire codec micro-benchmarks: the per-packet header and frame work on the
//! hot path, without crypto or I/O.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use net_proto::ids::{CallId, CallKind, ReceiverIndex, ServiceId, Side, Status};
use net_proto::ranges::RangeSet;
use net_proto::wire::{
    encode_ack, frames, Body, DataHeader, Frame, Writer, DATA_HEADER_LEN, TAG_LEN,
};

const MTU_PAYLOAD: usize = 1400;

fn header(c: &mut Criterion) {
    let h = DataHeader {
        key_phase: true,
        reply_hint: 0,
        receiver: ReceiverIndex::new(0x0001_0203),
        counter: 123_456_789,
    };
    let mut packet = [0u8; DATA_HEADER_LEN + 32 + TAG_LEN];
    let mut out = [0u8; DATA_HEADER_LEN];
    h.encode(&mut out);
    packet[..DATA_HEADER_LEN].copy_from_slice(&out);

    let mut g = c.benchmark_group("data_header");
    g.bench_function("encode", |b| {
        b.iter(|| {
            black_box(&h).encode(&mut out);
            black_box(&out);
        })
    });
    g.bench_function("decode", |b| {
        b.iter(|| DataHeader::decode(black_box(&packet)))
    });
    g.finish();
}

fn ack_set() -> RangeSet {
    let mut set = RangeSet::with_capacity_limit(32);
    set.insert_range(100..=140);
    set.insert_range(143..=170);
    set.insert_range(172..=180);
    set
}

/// ACK with 3 ranges + 8 RPC_REQUESTs with 32-byte payloads.
fn encode_requests(buf: &mut [u8], set: &RangeSet, payload: &[u8]) -> usize {
    let mut w = Writer::new(buf);
    encode_ack(&mut w, 25, set, 8).expect("ack");
    for i in 0..8 {
        Frame::RpcRequest {
            call: CallId::new(1000 + i, Side::Initiator),
            service: ServiceId::from_raw(0x1234_5678_9abc_def0),
            kind: CallKind::Unary,
            end: true,
            deadline_ms: 5_000,
            body: Body::Inline(payload),
        }
        .encode(&mut w)
        .expect("request fits");
    }
    w.position()
}

fn decode_all(payload: &[u8]) -> usize {
    let mut n = 0;
    for f in frames(payload) {
        black_box(f.expect("valid frame"));
        n += 1;
    }
    n
}

fn request_packet(c: &mut Criterion) {
    let set = ack_set();
    let payload = [0x5au8; 32];
    let mut buf = [0u8; MTU_PAYLOAD];
    let len = encode_requests(&mut buf, &set, &payload);
    let encoded = buf[..len].to_vec();
    assert_eq!(decode_all(&encoded), 9);

    let mut g = c.benchmark_group("ack3_plus_8_requests_32B");
    g.throughput(Throughput::Bytes(len as u64));
    g.bench_function("encode", |b| {
        b.iter(|| encode_requests(black_box(&mut buf), black_box(&set), black_box(&payload)))
    });
    g.bench_function("decode", |b| b.iter(|| decode_all(black_box(&encoded))));
    g.finish();
}

fn response_packet(c: &mut Criterion) {
    let payload = vec![0xa5u8; 1024];
    let frame = Frame::RpcResponse {
        call: CallId::new(77, Side::Responder),
        status: Status::OK,
        stream_count: 0,
        body: Body::Inline(&payload),
    };
    let mut buf = [0u8; MTU_PAYLOAD];
    let mut w = Writer::new(&mut buf);
    frame.encode(&mut w).expect("fits");
    let encoded = w.written().to_vec();

    let mut g = c.benchmark_group("response_1KiB");
    g.throughput(Throughput::Bytes(encoded.len() as u64));
    g.bench_function("encode", |b| {
        b.iter(|| {
            let mut w = Writer::new(black_box(&mut buf));
            black_box(&frame).encode(&mut w).expect("fits");
            w.position()
        })
    });
    g.bench_function("decode", |b| b.iter(|| decode_all(black_box(&encoded))));
    g.finish();
}

criterion_group!(benches, header, request_packet, response_packet);
criterion_main!(benches);
