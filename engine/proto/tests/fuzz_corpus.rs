//! Replays the committed fuzz corpora (and any saved crash artifacts)
//! through the fuzz target bodies, so every regression input the fuzzer ever
//! found keeps running in `cargo test` without cargo-fuzz or nightly.
//!
//! `cargo test -p net-proto --test fuzz_corpus -- --ignored` regenerates the
//! seed files this test writes (see `write_seed_corpus`).

use std::fs;
use std::path::PathBuf;

use net_proto::fuzzing;
use net_proto::ids::{CallId, CallKind, ReceiverIndex, ServiceId, Side, Status};
use net_proto::ranges::RangeSet;
use net_proto::wire::{
    encode_ack, Body, Credit, DataHeader, Frame, Part, ResetPacket, Writer, RESET_LEN, TAG_LEN,
};

/// Fuzz target name (the directory under `fuzz/corpus/`) → body. Add a row
/// per new target.
const TARGETS: &[(&str, replay::Target)] = &[
    ("header", fuzzing::header),
    ("frames", fuzzing::frames),
    ("ranges_replay", fuzzing::ranges_and_replay),
    ("handshake_responder", fuzzing::handshake_responder),
    ("handshake_initiator", fuzzing::handshake_initiator),
    ("session_ops", fuzzing::session_ops),
];

#[path = "../../../fuzz/replay.rs"]
mod replay;

fn fuzz_dir() -> PathBuf {
    replay::fuzz_dir(env!("CARGO_MANIFEST_DIR"), 2)
}

#[test]
fn corpora_replay_cleanly() {
    replay::replay_all(&fuzz_dir(), TARGETS);
}

/// Named seed inputs per target: valid encodings of every packet and frame
/// shape, plus a few near-misses, so the fuzzer starts past the parsers'
/// first checks.
fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out = Vec::new();
    let (init, response, cookie_reply) = fuzzing::handshake_seeds();
    out.push((
        "handshake_initiator",
        "cookie_reply".to_string(),
        cookie_reply,
    ));
    out.push(("handshake_responder", "init".to_string(), init.clone()));
    out.push((
        "handshake_initiator",
        "response".to_string(),
        response.clone(),
    ));
    let mut truncated = init.clone();
    truncated.truncate(100);
    out.push((
        "handshake_responder",
        "init_truncated".to_string(),
        truncated,
    ));
    out.push(("handshake_initiator", "init_echoed".to_string(), init));
    // Handshake both ways, calls, replies, loss, duplication, time.
    out.push((
        "session_ops",
        "calls".to_string(),
        vec![
            1, 0, 2, 0, 0, 8, 0, 9, 1, 0, 1, 0, 7, 1, 7, 2, 2, 0, 2, 0, 6, 5, 3, 0, 1, 0, 4, 0, 2,
            0,
        ],
    ));
    out.push((
        "session_ops",
        "timeouts".to_string(),
        vec![
            1, 0, 2, 0, 0, 4, 1, 0, 6, 255, 6, 255, 6, 255, 2, 0, 8, 0, 1, 0, 9, 255,
        ],
    ));
    for (name, h) in [
        ("data_min", header(false, 0, 0)),
        ("data_phase1", header(true, 0x0102_0304, 1 << 40)),
        ("data_max", header(true, u32::MAX, u64::MAX)),
    ] {
        let mut p = h.to_vec();
        p.extend_from_slice(&[0u8; TAG_LEN + 3]);
        out.push(("header", name.to_string(), p));
    }
    for (name, ty) in [("init", 1u8), ("response", 2), ("cookie", 3)] {
        let mut p = vec![ty, 1, 0, 0, 0xaa, 0xbb, 0xcc, 0xdd];
        p.resize(48, 0x11);
        out.push(("header", format!("handshake_{name}"), p));
    }
    out.push(("header", "bad_flags".into(), bad_flags()));
    let mut reset = [0u8; RESET_LEN];
    ResetPacket {
        steer: 1,
        index: ReceiverIndex::new(0x0102_0304),
        token: [0x5a; 16],
    }
    .encode(&mut reset);
    out.push(("header", "reset".into(), reset.to_vec()));
    let mut reset_bad = reset;
    reset_bad[5] = 1;
    out.push(("header", "reset_bad_steer".into(), reset_bad.to_vec()));
    let mut stale = header(false, 0x0bad_0001, 9).to_vec();
    stale.extend_from_slice(&[0u8; TAG_LEN + 8]);
    out.push(("handshake_responder", "data_unknown_index".into(), stale));
    for (name, bytes) in frame_seeds() {
        out.push(("frames", name, bytes));
    }
    for (name, bytes) in ops_seeds() {
        out.push(("ranges_replay", name.to_string(), bytes));
    }
    out
}

fn header(key_phase: bool, receiver: u32, counter: u64) -> [u8; 16] {
    DataHeader {
        key_phase,
        reply_hint: 0,
        receiver: ReceiverIndex::new(receiver),
        counter,
    }
    .to_bytes()
}

fn bad_flags() -> Vec<u8> {
    let mut p = header(false, 7, 7).to_vec();
    p[3] = 0x80;
    p.resize(40, 0);
    p
}

fn encode(frames: &[Frame<'_>]) -> Vec<u8> {
    let mut buf = vec![0u8; 4096];
    let mut w = Writer::new(&mut buf);
    for f in frames {
        f.encode(&mut w).expect("seed frame fits");
    }
    let n = w.position();
    buf.truncate(n);
    buf
}

fn ack(ranges: &[(u64, u64)]) -> Vec<u8> {
    let mut set = RangeSet::new();
    for &(lo, hi) in ranges {
        set.insert_range(lo..=hi);
    }
    let mut buf = vec![0u8; 1024];
    let mut w = Writer::new(&mut buf);
    assert!(encode_ack(&mut w, 125, &set, 65).unwrap());
    let n = w.position();
    buf.truncate(n);
    buf
}

/// Seeds with a segmented carrier and its SEGMENT pieces.
fn segmented_seeds(call: CallId, svc: ServiceId) -> Vec<(&'static str, Vec<Frame<'static>>)> {
    vec![
        (
            "segmented_request_and_pieces",
            vec![
                Frame::RpcRequest {
                    call,
                    service: svc,
                    kind: CallKind::Unary,
                    end: true,
                    deadline_ms: 0,
                    body: Body::Segmented(2000),
                },
                Frame::Segment {
                    call,
                    part: Part::Request,
                    total: 2000,
                    offset: 0,
                    payload: &[1; 1200],
                },
                Frame::Segment {
                    call,
                    part: Part::Request,
                    total: 2000,
                    offset: 1200,
                    payload: &[2; 800],
                },
            ],
        ),
        (
            "segmented_response_and_stream",
            vec![
                Frame::RpcResponse {
                    call,
                    status: Status::OK,
                    stream_count: 1,
                    body: Body::Segmented(600),
                },
                Frame::StreamData {
                    call,
                    seq: 0,
                    offset: 0,
                    body: Body::Segmented(700),
                },
                Frame::Segment {
                    call,
                    part: Part::Stream(0),
                    total: 700,
                    offset: 100,
                    payload: &[3; 600],
                },
                Frame::Segment {
                    call,
                    part: Part::Response,
                    total: 600,
                    offset: 0,
                    payload: &[4; 600],
                },
            ],
        ),
    ]
}

fn frame_seeds() -> Vec<(String, Vec<u8>)> {
    let call = CallId::new(3, Side::Initiator);
    let svc = ServiceId::of("echo");
    let req = |kind, end| Frame::RpcRequest {
        call,
        service: svc,
        kind,
        end,
        deadline_ms: 250,
        body: Body::Inline(&[0x42; 32]),
    };
    let singles: Vec<(&str, Vec<Frame<'_>>)> = vec![
        ("rpc_request_unary", vec![req(CallKind::Unary, true)]),
        ("rpc_request_duplex", vec![req(CallKind::Duplex, false)]),
        (
            "rpc_response",
            vec![Frame::RpcResponse {
                call,
                status: Status::OK,
                stream_count: 0,
                body: Body::Inline(&[7; 100]),
            }],
        ),
        (
            "cancel",
            vec![Frame::Cancel {
                call: CallId::new(9, Side::Responder),
                status: Status::TIMEOUT,
            }],
        ),
        (
            "stream_data",
            vec![Frame::StreamData {
                call,
                seq: 2,
                offset: 64,
                body: Body::Inline(b"chunk"),
            }],
        ),
        ("stream_end", vec![Frame::StreamEnd { call, count: 3 }]),
        (
            "credit_calls",
            vec![Frame::Credit(Credit::Calls { limit: 256 })],
        ),
        (
            "credit_stream",
            vec![Frame::Credit(Credit::Stream {
                call,
                limit: 1 << 20,
            })],
        ),
        ("announce", vec![Frame::Announce { payload: b"caps" }]),
        ("ping", vec![Frame::Ping]),
        (
            "close",
            vec![Frame::Close {
                code: 1,
                reason: b"shutdown",
            }],
        ),
    ];
    let mut out: Vec<(String, Vec<u8>)> = singles
        .into_iter()
        .chain(segmented_seeds(call, svc))
        .map(|(n, f)| (n.to_string(), encode(&f)))
        .collect();
    out.push(("ack_one_range".into(), ack(&[(0, 41)])));
    out.push((
        "ack_three_ranges".into(),
        ack(&[(1, 3), (10, 20), (22, 90)]),
    ));
    let many: Vec<(u64, u64)> = (0..80).map(|i| (i * 5, i * 5 + 2)).collect();
    out.push(("ack_max_ranges".into(), ack(&many)));
    let mut packet = ack(&[(5, 9), (11, 30)]);
    for i in 0..4 {
        packet.extend(encode(&[Frame::RpcRequest {
            call: CallId::new(i, Side::Responder),
            service: svc,
            kind: CallKind::Unary,
            end: true,
            deadline_ms: 0,
            body: Body::Inline(&[i as u8; 32]),
        }]));
    }
    packet.extend_from_slice(&[0, 0, 0]);
    out.push(("packet_ack_and_requests".into(), packet));
    out
}

fn ops_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let in_order: Vec<u8> = std::iter::once(0x07)
        .chain((0..200u16).flat_map(|i| [0x00, (i >> 8) as u8, i as u8]))
        .collect();
    let mut holes = vec![0x02];
    for i in 0..100u16 {
        let v = i * 3;
        holes.extend_from_slice(&[0x01, (v >> 8) as u8, v as u8]);
        holes.extend_from_slice(&[0x85, 0x00, 0x00]); // check+commit near top
    }
    let mut replay = vec![0x18];
    for i in 0..120u8 {
        replay.extend_from_slice(&[0x80, i & 7, 0x81, 0x10, i, 0x82, 0x00, i]);
    }
    let mut edges = vec![0x0b, 0x83];
    edges.extend_from_slice(&u64::MAX.to_be_bytes());
    edges.extend_from_slice(&[
        0x83, 0, 0, 0, 0, 0, 0, 0, 0, 0x46, 0x02, 0xff, 0x7f, 0x00, 0x10,
    ]);
    vec![
        ("in_order_inserts", in_order),
        ("holes_and_replay", holes),
        ("replay_laps", replay),
        ("edges", edges),
    ]
}

/// Writes the seed corpus into `fuzz/corpus/<target>/`. Run on purpose only.
#[test]
#[ignore = "writes fuzz/corpus; run with --ignored to regenerate seeds"]
fn write_seed_corpus() {
    for (target, name, bytes) in seeds() {
        let dir = fuzz_dir().join("corpus").join(target);
        fs::create_dir_all(&dir).expect("create corpus dir");
        fs::write(dir.join(format!("seed_{name}")), bytes).expect("write seed");
    }
}

#[test]
fn seeds_are_valid_for_their_targets() {
    for &(name, body) in TARGETS {
        for (target, seed, bytes) in seeds() {
            if target == name {
                let res = std::panic::catch_unwind(|| body(&bytes));
                assert!(res.is_ok(), "{name}: seed {seed} fails");
            }
        }
    }
}
