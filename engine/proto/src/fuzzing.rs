//! Bodies of the fuzz targets in `fuzz/` and the naive models they check
//! against. Not part of the API: kept in the crate so that the corpus replay
//! test (`tests/fuzz_corpus.rs`) and the unit tests run exactly the code the
//! fuzzer runs.
//!
//! Each function panics only when a real invariant breaks: a decoder
//! accepting what its encoder cannot reproduce, an encoder emitting what its
//! decoder rejects, or a data structure disagreeing with its naive model.
#![doc(hidden)]

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::time::Instant;

use crate::ranges::RangeSet;
use crate::replay::{ReplayError, ReplayWindow, WINDOW};
use crate::wire::{
    self, encode_ack, steering_index, AckFrame, DataHeader, Frame, PacketType, ResetPacket,
    WireError, Writer, DATA_HEADER_LEN, MAX_ACK_RANGES, RESET_LEN,
};

/// Fuzz target `header`: packet classification, the data header and the
/// stateless reset packet.
pub fn header(data: &[u8]) {
    reset_packet(data);
    let parsed = PacketType::parse(data);
    match DataHeader::decode(data) {
        Ok(h) => {
            assert_eq!(parsed, Ok(PacketType::Data));
            // Only canonical headers are accepted, so re-encoding is exact.
            assert_eq!(data.get(..DATA_HEADER_LEN), Some(&h.to_bytes()[..]));
            assert_eq!(steering_index(data), Some(h.receiver.get()));
        }
        Err(e) => match parsed {
            Err(pe) => assert_eq!(e, pe),
            Ok(PacketType::Data) => {
                assert!(matches!(e, WireError::Truncated | WireError::ReservedFlags))
            }
            Ok(other) => assert_eq!(e, WireError::UnexpectedPacketType(other as u8)),
        },
    }
}

/// The reset decoder: only canonical resets are accepted (they re-encode
/// exactly and steer by their steering byte); anything else is refused
/// with the classification error or a reset-specific one.
fn reset_packet(data: &[u8]) {
    match ResetPacket::decode(data) {
        Ok(r) => {
            let mut out = [0u8; RESET_LEN];
            r.encode(&mut out);
            assert_eq!(&out[..], data);
            assert_eq!(steering_index(data), Some(u32::from(r.steer)));
        }
        Err(e) => match PacketType::parse(data) {
            Err(pe) => assert_eq!(e, pe),
            Ok(PacketType::Reset) => {
                assert!(matches!(e, WireError::Truncated | WireError::ReservedFlags))
            }
            Ok(other) => assert_eq!(e, WireError::UnexpectedPacketType(other as u8)),
        },
    }
}

/// Fuzz target `frames`: every decoded frame re-encodes to bytes that decode
/// to an equal frame, no longer than the input it came from, and encoding is
/// all-or-nothing. ACKs also round-trip through a [`RangeSet`] and
/// [`encode_ack`].
pub fn frames(data: &[u8]) {
    let mut it = wire::frames(data);
    loop {
        let before = it.remaining().len();
        match it.next() {
            None => break,
            Some(Ok(f)) => {
                let consumed = before - it.remaining().len();
                check_frame_round_trip(&f, consumed);
                if let Frame::Ack(a) = &f {
                    check_ack_via_range_set(a);
                }
            }
            Some(Err(_)) => {
                assert!(it.next().is_none(), "frames() must fuse after an error");
                break;
            }
        }
    }
}

fn check_frame_round_trip(f: &Frame<'_>, consumed: usize) {
    let len = f.encoded_len();
    // Minimal varints never take more room than the ones that were read.
    assert!(len <= consumed, "{f:?}: {len} > {consumed}");
    let mut buf = vec![0u8; len];
    let mut short = Writer::new(&mut buf[..len - 1]);
    assert_eq!(f.encode(&mut short), Err(WireError::BufferTooSmall));
    assert_eq!(short.position(), 0);
    let mut w = Writer::new(&mut buf);
    assert_eq!(f.encode(&mut w), Ok(()));
    assert_eq!(w.remaining(), 0);
    let again: Vec<_> = wire::frames(&buf).collect();
    assert_eq!(again, [Ok(f.clone())]);
}

fn check_ack_via_range_set(a: &AckFrame<'_>) {
    let mut set = RangeSet::new();
    for r in a.ranges() {
        set.insert_range(r);
    }
    // Decoded ranges are disjoint and non-adjacent (gap ≥ 0 leaves a hole).
    assert_eq!(set.len_ranges(), a.range_count());
    assert_eq!(set.min(), Some(a.smallest()));
    assert_eq!(set.max(), Some(a.largest));
    let mut buf = [0u8; 1024];
    let mut w = Writer::new(&mut buf);
    assert_eq!(
        encode_ack(&mut w, a.ack_delay_us, &set, MAX_ACK_RANGES + 1),
        Ok(true)
    );
    let again: Vec<_> = wire::frames(w.written()).collect();
    assert_eq!(again, [Ok(Frame::Ack(*a))]);
}

/// Naive model of a capped [`RangeSet`]: every value, one by one.
#[derive(Debug, Default)]
pub struct RangeModel {
    /// The values in the set.
    pub values: BTreeSet<u64>,
}

impl RangeModel {
    /// The set's ranges, ascending, adjacent values merged.
    pub fn ranges(&self) -> Vec<(u64, u64)> {
        let mut out: Vec<(u64, u64)> = Vec::new();
        for &v in &self.values {
            match out.last_mut() {
                Some(last) if last.1.checked_add(1) == Some(v) => last.1 = v,
                _ => out.push((v, v)),
            }
        }
        out
    }

    /// Drops whole lowest ranges until at most `limit` remain.
    pub fn cap(&mut self, limit: usize) {
        let ranges = self.ranges();
        let excess = ranges.len().saturating_sub(limit);
        for &(lo, hi) in ranges.iter().take(excess) {
            self.values.retain(|&v| v < lo || v > hi);
        }
    }

    /// Asserts that `set` holds exactly the model's values.
    pub fn assert_matches(&self, set: &RangeSet) {
        let actual: Vec<_> = set.iter().map(|r| (*r.start(), *r.end())).collect();
        assert_eq!(actual, self.ranges());
        assert_eq!(set.max(), self.values.last().copied());
        assert_eq!(set.min(), self.values.first().copied());
    }
}

/// Naive model of [`ReplayWindow`]: the set of committed counters.
#[derive(Debug, Default)]
pub struct ReplayModel {
    /// Every counter committed (and not refused as too old).
    pub seen: BTreeSet<u64>,
}

impl ReplayModel {
    /// What [`ReplayWindow::check`] must answer.
    pub fn check(&self, c: u64) -> Result<(), ReplayError> {
        match self.seen.last() {
            Some(&top) if c <= top && top - c >= WINDOW => Err(ReplayError::TooOld),
            _ if self.seen.contains(&c) => Err(ReplayError::Duplicate),
            _ => Ok(()),
        }
    }

    /// What [`ReplayWindow::commit`] must record.
    pub fn commit(&mut self, c: u64) {
        if self.check(c) != Err(ReplayError::TooOld) {
            self.seen.insert(c);
        }
    }
}

/// Byte source for the ops fuzzer: yields zeros once exhausted.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        let (&b, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        b
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    fn u64(&mut self) -> u64 {
        (0..4).fold(0, |acc, _| (acc << 16) | u64::from(self.u16()))
    }
}

/// Fuzz target `ranges_replay`: interprets the input as operations on a
/// [`RangeSet`] and a [`ReplayWindow`] and compares both with naive models
/// after every operation.
pub fn ranges_and_replay(data: &[u8]) {
    const MAX_OPS: usize = 2048;
    let mut b = Bytes(data);
    let cfg = b.u8();
    let limit = [1, 2, 3, 4, 8, 16, 64, usize::MAX][usize::from(cfg & 7)];
    let base = [0, u64::MAX - 700, 1 << 40, wire::MAX_VARINT - 700][usize::from((cfg >> 3) & 3)];
    let mut set = RangeSet::with_capacity_limit(limit);
    let mut model = RangeModel::default();
    let mut win = ReplayWindow::new();
    let mut replay = ReplayModel::default();
    for _ in 0..MAX_OPS {
        if b.0.is_empty() {
            break;
        }
        let op = b.u8();
        if op & 0x80 != 0 {
            replay_op(&mut b, op, &mut win, &mut replay);
        } else {
            range_op(&mut b, op, base, &mut set, &mut model);
            model.cap(limit);
            model.assert_matches(&set);
            assert!(set.len_ranges() <= limit);
        }
    }
}

fn range_op(b: &mut Bytes<'_>, op: u8, base: u64, set: &mut RangeSet, model: &mut RangeModel) {
    // A 1024-value span around `base`, wrapping, so sets straddle 0/u64::MAX.
    let v = base.wrapping_add(u64::from(b.u16() & 1023));
    match op % 8 {
        0..=3 => assert_eq!(set.insert(v), model.values.insert(v), "insert {v}"),
        4 | 5 => {
            let hi = v.saturating_add(u64::from((op >> 3) & 31));
            set.insert_range(v..=hi);
            model.values.extend(v..=hi);
        }
        6 => {
            set.remove_below(v);
            model.values.retain(|&x| x >= v);
        }
        _ => {
            assert_eq!(set.contains(v), model.values.contains(&v), "contains {v}");
            if op == 0x7f {
                set.clear();
                model.values.clear();
            }
        }
    }
}

fn replay_op(b: &mut Bytes<'_>, op: u8, win: &mut ReplayWindow, model: &mut ReplayModel) {
    let top = model.seen.last().copied().unwrap_or(0);
    let c = match op & 3 {
        0 => top.saturating_add(u64::from(b.u8() & 7)),
        1 => top.saturating_sub(u64::from(b.u16())),
        2 => top.saturating_add(u64::from(b.u16()) * 64),
        _ => b.u64(),
    };
    let verdict = win.check(c);
    assert_eq!(verdict, model.check(c), "check {c}");
    // Mostly commit only what passed, as the receive path does; sometimes
    // commit regardless to exercise idempotence and too-old commits.
    if verdict.is_ok() || op & 0x40 != 0 {
        win.commit(c);
        model.commit(c);
    }
    assert_eq!(win.highest(), model.seen.last().copied());
}

/// Fixed identities for the handshake targets: node 1 initiates to node 2.
fn fuzz_endpoint(seed: u8) -> (crate::Endpoint, std::time::Instant) {
    let mut cfg = crate::EndpointConfig::new(net_crypto::Identity::from_seed(&[seed; 32]), [7; 32]);
    cfg.rng_seed = u64::from(seed);
    let now = std::time::Instant::now();
    (crate::Endpoint::new(cfg, now, 1_000_000_000), now)
}

fn fuzz_addr() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], 4000))
}

/// A responder fed one arbitrary datagram (initiations, data for unknown
/// sessions, garbage): it never panics, accounts for the datagram, and
/// answers with at most one handshake response or one reset, never larger
/// than the datagram that provoked it unless it is a handshake response.
pub fn handshake_responder(data: &[u8]) {
    let (mut ep, now) = fuzz_endpoint(2);
    let mut buf = data.to_vec();
    ep.handle(now, fuzz_addr(), &mut buf);
    assert_eq!(ep.stats().datagrams_rx, 1);
    let mut out = vec![0u8; 2048];
    let mut sent = 0;
    while let Some(t) = ep.poll_transmit(now, &mut out) {
        if t.len == RESET_LEN {
            assert!(t.len < data.len(), "a reset must never amplify");
        } else {
            assert_eq!(t.len, crate::RESP_LEN);
        }
        sent += 1;
    }
    assert!(sent <= 1);
    assert!(ep.session_count() <= 1);
    while let Some(ev) = ep.poll_event() {
        assert!(
            !matches!(ev, crate::Event::Connected { .. }),
            "unconfirmed session reported"
        );
    }
}

/// An initiator with a handshake in flight, fed one arbitrary datagram as
/// the "response" or cookie reply: arbitrary bytes never complete a
/// handshake, and trigger at most one fresh initiation.
pub fn handshake_initiator(data: &[u8]) {
    let (mut ep, now) = fuzz_endpoint(1);
    let peer = net_crypto::Identity::from_seed(&[2; 32]).public();
    ep.connect(now, peer, fuzz_addr()).expect("connect");
    let mut out = vec![0u8; 2048];
    assert!(ep.poll_transmit(now, &mut out).is_some(), "initiation sent");
    let mut buf = data.to_vec();
    ep.handle(now, fuzz_addr(), &mut buf);
    while let Some(ev) = ep.poll_event() {
        assert!(
            !matches!(ev, crate::Event::Connected { .. }),
            "forged handshake completed"
        );
    }
    let mut resent = 0;
    while ep.poll_transmit(now, &mut out).is_some() {
        resent += 1;
    }
    assert!(resent <= 1, "{resent} initiations after one datagram");
}

/// A valid initiation from node 1 to node 2, node 2's response, and a
/// cookie reply node 2 sends once a flood of that initiation has put it
/// under load: seeds for the handshake targets.
pub fn handshake_seeds() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let (mut a, now) = fuzz_endpoint(1);
    let (mut b, _) = fuzz_endpoint(2);
    a.connect(now, b.public_identity(), fuzz_addr())
        .expect("connect");
    let mut out = vec![0u8; 2048];
    let t = a.poll_transmit(now, &mut out).expect("initiation");
    let init = out[..t.len].to_vec();
    let mut buf = init.clone();
    b.handle(now, fuzz_addr(), &mut buf);
    let t = b.poll_transmit(now, &mut out).expect("response");
    let response = out[..t.len].to_vec();
    let mut cookie_reply = Vec::new();
    while cookie_reply.is_empty() {
        b.handle(now, fuzz_addr(), &mut init.clone());
        // Before the load sets in, the copies get the stored response.
        while let Some(t) = b.poll_transmit(now, &mut out) {
            if t.len == crate::COOKIE_REPLY_LEN {
                cookie_reply = out[..t.len].to_vec();
            } else {
                assert_eq!(t.len, crate::RESP_LEN);
            }
        }
    }
    (init, response, cookie_reply)
}

/// Fuzz target `session_ops`: a client and a server endpoint driven
/// through an arbitrary sequence of operations — calls, cancels, replies,
/// delivering, dropping, duplicating and reordering packets, time passing,
/// closing — checking the session invariants after every step: a call
/// completes at most once, a request reaches the handler at most once, no
/// event names a session after it closed, and state stays bounded.
pub fn session_ops(data: &[u8]) {
    let mut ops = SessionOps::new();
    for op in data.chunks(2).take(512) {
        ops.apply(op[0], op.get(1).copied().unwrap_or(0));
        ops.pump();
    }
}

/// The two endpoints of a [`session_ops`] run, the datagrams between them
/// and what the invariants remember.
struct SessionOps {
    client: crate::Endpoint,
    server: crate::Endpoint,
    session: crate::SessionId,
    client_addr: std::net::SocketAddr,
    server_addr: std::net::SocketAddr,
    now: Instant,
    to_server: VecDeque<Vec<u8>>,
    to_client: VecDeque<Vec<u8>>,
    /// Calls whose response arrived (each at most once).
    completed: HashSet<crate::CallId>,
    /// Requests the server delivered (each at most once).
    delivered: HashSet<crate::CallId>,
    /// Delivered requests not yet answered.
    pending_requests: VecDeque<(crate::SessionId, crate::CallId)>,
    /// Sessions closed, per side (true: the client).
    closed: HashMap<bool, HashSet<crate::SessionId>>,
    buf: Vec<u8>,
}

impl SessionOps {
    fn new() -> Self {
        let (mut client, now) = fuzz_endpoint(1);
        let (mut server, _) = fuzz_endpoint(2);
        server.register_service(crate::ServiceId::of("svc"), 64);
        let server_addr = std::net::SocketAddr::from(([127, 0, 0, 2], 4000));
        let session = client
            .connect(now, server.public_identity(), server_addr)
            .expect("connect");
        SessionOps {
            client,
            server,
            session,
            client_addr: fuzz_addr(),
            server_addr,
            now,
            to_server: VecDeque::new(),
            to_client: VecDeque::new(),
            completed: HashSet::new(),
            delivered: HashSet::new(),
            pending_requests: VecDeque::new(),
            closed: HashMap::new(),
            buf: vec![0u8; 65536],
        }
    }

    /// One operation: `code` picks it, `arg` parameterises it. An arbitrary
    /// operation may be refused (unknown call, closed session, no credit):
    /// that refusal is the API working, so results are not checked here —
    /// the invariants are, on every event, in [`Self::pump`].
    fn apply(&mut self, code: u8, arg: u8) {
        let now = self.now;
        match code % 10 {
            0 => {
                let _ = self.client.call(
                    now,
                    self.session,
                    crate::ServiceId::of("svc"),
                    crate::CallKind::Unary,
                    None,
                    &vec![arg; usize::from(arg)],
                );
            }
            1 => {
                if let Some(mut d) = self.to_server.pop_front() {
                    self.server.handle(now, self.client_addr, &mut d);
                }
            }
            2 => {
                if let Some(mut d) = self.to_client.pop_front() {
                    self.client.handle(now, self.server_addr, &mut d);
                }
            }
            3 => {
                self.to_server.pop_front();
            }
            4 => {
                if let Some(d) = self.to_client.front().cloned() {
                    self.to_client.push_back(d);
                }
            }
            5 => {
                let n = self.to_server.len();
                if n > 1 {
                    self.to_server.swap(0, usize::from(arg) % n);
                }
            }
            6 => self.now += std::time::Duration::from_millis(u64::from(arg) * 10),
            7 => {
                if let Some((s, c)) = self.pending_requests.pop_front() {
                    let _ = self.server.respond(now, s, c, crate::Status::OK, &[arg]);
                }
            }
            8 => {
                let call = crate::CallId::new(u64::from(arg) % 64, crate::Side::Initiator);
                let _ = self.client.cancel(now, self.session, call);
            }
            _ => {
                if arg == 0xff {
                    let _ = self.client.close(now, self.session, 1);
                }
            }
        }
    }

    /// Runs both endpoints' timers, moves their datagrams into the queues
    /// and checks every event against the invariants.
    fn pump(&mut self) {
        let now = self.now;
        for (ep, is_client) in [(&mut self.client, true), (&mut self.server, false)] {
            if ep.poll_timeout().is_some_and(|t| t <= now) {
                ep.handle_timeout(now);
            }
            let q = if is_client {
                &mut self.to_server
            } else {
                &mut self.to_client
            };
            while let Some(t) = ep.poll_transmit(now, &mut self.buf) {
                if q.len() < 4096 {
                    q.push_back(self.buf[..t.len].to_vec());
                }
            }
            while let Some(ev) = ep.poll_event() {
                let gone = self.closed.entry(is_client).or_default();
                match ev {
                    crate::Event::Closed { session, .. } => {
                        assert!(gone.insert(session), "closed twice");
                    }
                    crate::Event::Response { session, call, .. } => {
                        assert!(!gone.contains(&session), "response after close");
                        assert!(self.completed.insert(call), "call {call} completed twice");
                    }
                    crate::Event::Request { session, call, .. } => {
                        assert!(!gone.contains(&session), "request after close");
                        assert!(
                            self.delivered.insert(call),
                            "request {call} delivered twice"
                        );
                        self.pending_requests.push_back((session, call));
                    }
                    _ => {}
                }
            }
            assert!(ep.call_count() <= 2 * 1024 + 64, "unbounded call state");
        }
    }
}
