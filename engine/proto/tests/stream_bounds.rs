//! Bounded stream memory against hostile or slow peers (issue 12), driven by
//! hand without the simulator: every datagram is moved (or withheld,
//! reordered, dropped) by the test, so the figures are exact and repeatable.
//!
//! `cargo test -p net-proto --test stream_bounds -- --nocapture` prints the
//! peak buffered bytes each test observed.

use std::net::SocketAddr;
use std::time::Instant;

use net_crypto::Identity;
use net_proto::{
    ApiError, CallId, CallKind, CloseReason, Endpoint, EndpointConfig, Event, ProtocolViolation,
    ServiceId, SessionId, Status, StreamViolation, MESSAGE_CHARGE,
};

const PSK: [u8; 32] = [7; 32];
/// The default stream window (`TransportParams::default().stream_window`).
const WINDOW: u64 = 1 << 20;

fn config(seed: u8) -> EndpointConfig {
    let mut cfg = EndpointConfig::new(Identity::from_seed(&[seed; 32]), PSK);
    cfg.rng_seed = u64::from(seed);
    cfg
}

fn endpoint(cfg: EndpointConfig, now: Instant) -> Endpoint {
    Endpoint::new(cfg, now, 1_000_000_000)
}

fn addr(n: u8) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, n], 4000))
}

fn sink() -> ServiceId {
    ServiceId::of("sink")
}

fn ticker() -> ServiceId {
    ServiceId::of("ticker")
}

/// Every datagram `ep` wants to send now.
fn out(ep: &mut Endpoint, now: Instant) -> Vec<Vec<u8>> {
    let mut buf = vec![0u8; 65536];
    let mut v = Vec::new();
    while let Some(t) = ep.poll_transmit(now, &mut buf) {
        v.push(buf[..t.len].to_vec());
    }
    v
}

fn deliver(ep: &mut Endpoint, now: Instant, from: u8, datagrams: Vec<Vec<u8>>) {
    for mut d in datagrams {
        ep.handle(now, addr(from), &mut d);
    }
}

fn events(ep: &mut Endpoint) -> Vec<Event> {
    std::iter::from_fn(|| ep.poll_event()).collect()
}

/// Moves datagrams both ways until both sides are quiet; returns the events
/// each side produced meanwhile (client `a` is node 1, server `b` node 2).
fn shuttle(a: &mut Endpoint, b: &mut Endpoint, now: Instant) -> (Vec<Event>, Vec<Event>) {
    let (mut ea, mut eb) = (Vec::new(), Vec::new());
    for _ in 0..10_000 {
        let to_b = out(a, now);
        let to_a = out(b, now);
        if to_a.is_empty() && to_b.is_empty() {
            return (ea, eb);
        }
        deliver(b, now, 1, to_b);
        deliver(a, now, 2, to_a);
        ea.extend(events(a));
        eb.extend(events(b));
    }
    panic!("endpoints never went quiet");
}

/// Client `a` with a session to server `b`, `n` calls of `kind` to
/// `service` open and their requests delivered. Returns the calls on both
/// sides (client ids, then the server's session and its ids, same order).
fn open_calls(
    a: &mut Endpoint,
    b: &mut Endpoint,
    now: Instant,
    service: ServiceId,
    kind: CallKind,
    n: usize,
) -> (SessionId, Vec<CallId>, SessionId, Vec<CallId>) {
    let s = a.connect(now, b.public_identity(), addr(2)).unwrap();
    let calls: Vec<CallId> = (0..n)
        .map(|_| a.call(now, s, service, kind, None, b"open").unwrap())
        .collect();
    let (_, eb) = shuttle(a, b, now);
    let served: Vec<(SessionId, CallId)> = eb
        .iter()
        .filter_map(|e| match e {
            Event::Request { session, call, .. } => Some((*session, *call)),
            _ => None,
        })
        .collect();
    assert_eq!(served.len(), n, "every request reached the server");
    (s, calls, served[0].0, served.iter().map(|x| x.1).collect())
}

/// Deterministic permutation (xorshift, fixed seed).
fn shuffle<T>(v: &mut [T], mut x: u64) {
    for i in (1..v.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.swap(i, (x % (i as u64 + 1)) as usize);
    }
}

fn stream_violation(evs: &[Event]) -> Option<StreamViolation> {
    evs.iter().find_map(|e| match e {
        Event::Closed {
            reason: CloseReason::Protocol(ProtocolViolation::Stream(v)),
            ..
        } => Some(*v),
        _ => None,
    })
}

/// Floods `streams` client streams from a peer that ignores credit and
/// forges stream offsets, datagrams delivered shuffled in rounds; returns
/// the server's events and its peak buffered bytes.
fn flood(forged_offset: Option<u64>, per_stream: usize) -> (Vec<Event>, Endpoint) {
    const STREAMS: usize = 16;
    let now = Instant::now();
    let mut hostile = config(1);
    hostile.testing_ignore_credit = true;
    let mut a = endpoint(hostile, now);
    let mut b = endpoint(config(2), now);
    b.register_service(sink(), 64);
    let (s, calls, _, _) = open_calls(&mut a, &mut b, now, sink(), CallKind::ClientStream, STREAMS);
    let max = a.max_payload(s).unwrap();
    for &c in &calls {
        // Message 0 is never sent, so nothing is ever delivered.
        a.testing_forge_stream(s, c, forged_offset, 1).unwrap();
    }
    let mut evs = Vec::new();
    let payload = vec![0xa5; max];
    for round in 0..per_stream.div_ceil(8) {
        for &c in &calls {
            for _ in 0..8 {
                a.send_message(now, s, c, &payload).unwrap();
            }
        }
        let mut dgrams = out(&mut a, now);
        shuffle(&mut dgrams, 0x5eed + round as u64);
        for mut d in dgrams {
            b.handle(now, addr(1), &mut d);
            assert!(b.stats().stream_bytes_buffered <= STREAMS as u64 * WINDOW);
        }
        evs.extend(events(&mut b));
        if b.session_count() == 0 {
            break;
        }
    }
    (evs, b)
}

/// (a) The attack: 16 streams, each flooded with messages that all
/// claim offset 0 (message 0 withheld so nothing is ever delivered). The
/// session closes with a typed stream violation and the server never holds
/// more than window × streams (on 0b6570b it held 16 MiB per stream).
#[test]
fn offset_lie_closes_the_session_within_the_window() {
    let (evs, b) = flood(Some(0), 1023);
    let st = b.stats();
    eprintln!(
        "offset-lie: peak buffered {} B (bound {} B = 16 streams × {} B window), violation {:?}",
        st.stream_bytes_buffered_peak,
        16 * WINDOW,
        WINDOW,
        stream_violation(&evs)
    );
    assert_eq!(stream_violation(&evs), Some(StreamViolation::Offset));
    assert_eq!(st.protocol_violations, 1);
    assert!(st.stream_bytes_buffered_peak <= 16 * WINDOW);
    assert_eq!((st.stream_bytes_buffered, b.stream_bytes_held()), (0, 0));
}

/// (a') Honest offsets but message 0 withheld and credit ignored: the
/// server buffers out of order up to the window of each stream, never
/// beyond, and closes the session at the first byte past the credit.
#[test]
fn out_of_order_flood_holds_at_most_the_window() {
    let (evs, b) = flood(None, 160);
    let st = b.stats();
    eprintln!(
        "withheld-first flood: peak buffered {} B (bound {} B), violation {:?}",
        st.stream_bytes_buffered_peak,
        16 * WINDOW,
        stream_violation(&evs)
    );
    assert_eq!(stream_violation(&evs), Some(StreamViolation::Credit));
    assert!(st.stream_bytes_buffered_peak <= 16 * WINDOW);
    assert!(
        st.stream_bytes_buffered_peak > 8 * WINDOW,
        "the flood did fill the windows"
    );
    assert_eq!((st.stream_bytes_buffered, b.stream_bytes_held()), (0, 0));
}

/// Sends `len`-byte messages on `call` until the endpoint refuses for lack
/// of credit; returns how many it took (panics past 8 windows of credit,
/// so a missing bound fails instead of exhausting memory).
fn fill(ep: &mut Endpoint, now: Instant, s: SessionId, call: CallId, len: usize) -> u64 {
    let payload = vec![0x5a; len];
    for n in 0..=8 * WINDOW / (len as u64 + MESSAGE_CHARGE) {
        match ep.send_message(now, s, call, &payload) {
            Ok(()) => {}
            Err(ApiError::StreamBlocked) => return n,
            Err(e) => panic!("send: {e}"),
        }
    }
    panic!("never blocked");
}

fn writable(evs: &[Event]) -> Vec<CallId> {
    evs.iter()
        .filter_map(|e| match e {
            Event::Writable { call, .. } => Some(*call),
            _ => None,
        })
        .collect()
}

/// (b) A caller announcing a 4 GiB window that never acknowledges: the
/// serving side stops each server stream at its own window of
/// unacknowledged data, and resumes (`Writable`) once acknowledgements come.
#[test]
fn never_acking_peer_holds_at_most_one_window_per_stream() {
    const STREAMS: usize = 4;
    let now = Instant::now();
    let mut greedy = config(1);
    greedy.params.stream_window = u32::MAX;
    let mut a = endpoint(greedy, now);
    let mut b = endpoint(config(2), now);
    b.register_service(ticker(), 64);
    let (_, _, bs, served) = open_calls(
        &mut a,
        &mut b,
        now,
        ticker(),
        CallKind::ServerStream,
        STREAMS,
    );
    let len = b.max_payload(bs).unwrap();
    let mut held_back = Vec::new();
    for &c in &served {
        let n = fill(&mut b, now, bs, c, len);
        assert!(n * (len as u64 + MESSAGE_CHARGE) <= WINDOW);
        assert!(n > 0);
        held_back.extend(out(&mut b, now));
    }
    let st = b.stats();
    eprintln!(
        "never-acking peer: {} B held for {STREAMS} streams (bound {} B)",
        st.stream_bytes_buffered,
        STREAMS as u64 * WINDOW
    );
    assert!(st.stream_bytes_buffered <= STREAMS as u64 * WINDOW);
    assert!(st.stream_bytes_buffered > (STREAMS as u64 - 1) * WINDOW);
    assert_eq!(st.stream_bytes_buffered, b.stream_bytes_held());
    // The caller finally receives and acknowledges: room frees, and the
    // server is told it may write again.
    deliver(&mut a, now, 2, held_back);
    let (_, mut eb) = shuttle(&mut a, &mut b, now);
    // The last packet's ACK may wait for the delayed-ACK timer.
    let later = now + std::time::Duration::from_millis(20);
    a.handle_timeout(later);
    eb.extend(shuttle(&mut a, &mut b, later).1);
    let mut woke = writable(&eb);
    woke.sort_unstable();
    let mut want = served.clone();
    want.sort_unstable();
    assert_eq!(woke, want);
    assert_eq!(b.stats().stream_bytes_buffered, 0);
}

fn messages(evs: &[Event], call: CallId) -> (u64, u64) {
    evs.iter().fold((0, 0), |(n, bytes), e| match e {
        Event::Message {
            call: c, payload, ..
        } if *c == call => (n + 1, bytes + payload.len() as u64),
        _ => (n, bytes),
    })
}

/// Runs a server stream of `len`-byte messages to a caller that deferred
/// credit and reads nothing until the sender is blocked for good; returns
/// the messages and bytes delivered.
fn stream_until_stalled(
    a: &mut Endpoint,
    b: &mut Endpoint,
    now: Instant,
    (bs, served): (SessionId, CallId),
    call: CallId,
    len: usize,
) -> (u64, u64) {
    let (mut msgs, mut bytes) = (0, 0);
    for _ in 0..64 {
        fill(b, now, bs, served, len);
        let (ea, eb) = shuttle(a, b, now);
        assert_eq!(stream_violation(&ea), None);
        let (n, by) = messages(&ea, call);
        msgs += n;
        bytes += by;
        if writable(&eb).is_empty() {
            return (msgs, bytes);
        }
    }
    panic!("the stream never stalled: {msgs} messages, {bytes} B delivered");
}

/// (c) Credit on consumption: a caller that never reads holds at most one
/// window (buffered plus delivered-but-unread); reading resumes the stream.
#[test]
fn deferred_credit_stalls_a_non_reading_caller_at_the_window() {
    let now = Instant::now();
    let mut a = endpoint(config(1), now);
    let mut b = endpoint(config(2), now);
    b.register_service(ticker(), 64);
    let (s, calls, bs, served) =
        open_calls(&mut a, &mut b, now, ticker(), CallKind::ServerStream, 1);
    a.defer_credit(s, calls[0]).unwrap();
    let key = (bs, served[0]);
    let (n, bytes) = stream_until_stalled(&mut a, &mut b, now, key, calls[0], 1000);
    let unread = bytes + n * MESSAGE_CHARGE + a.stats().stream_bytes_buffered;
    eprintln!("deferred credit: {n} messages ({bytes} B) unread when the sender stalled");
    assert!(unread <= WINDOW, "{unread} > window");
    assert!(unread > WINDOW - 2 * (1000 + MESSAGE_CHARGE));
    assert_eq!(
        b.send_message(now, bs, served[0], &[0; 1000]),
        Err(ApiError::StreamBlocked)
    );
    // Reading half a window releases credit; the sender may write again.
    let k = n / 2 + 2;
    a.consumed(now, s, calls[0], k, k * 1000).unwrap();
    let (_, eb) = shuttle(&mut a, &mut b, now);
    assert_eq!(writable(&eb), vec![served[0]]);
    let (m, _) = stream_until_stalled(&mut a, &mut b, now, key, calls[0], 1000);
    assert!(m + 2 >= k, "{m} more messages after reading {k}");
    // A call the peer does not stream on: refused.
    let unary = a
        .call(now, s, ticker(), CallKind::Unary, None, b"x")
        .unwrap();
    assert_eq!(a.defer_credit(s, unary), Err(ApiError::InvalidForCall));
    assert_eq!(
        a.consumed(now, s, unary, 1, 1),
        Err(ApiError::InvalidForCall)
    );
}

/// (d) Stream data for refused calls (NOT_FOUND at admission, or answered
/// by the application, e.g. a gate's CAPABILITY_DENIED) is checked and
/// dropped, never buffered — the refusal's ACK may never come.
#[test]
fn data_for_refused_calls_is_not_buffered() {
    let now = Instant::now();
    let mut a = endpoint(config(1), now);
    let mut b = endpoint(config(2), now);
    b.register_service(sink(), 64);
    let s = a.connect(now, b.public_identity(), addr(2)).unwrap();
    shuttle(&mut a, &mut b, now);
    let max = a.max_payload(s).unwrap();
    let payload = vec![1; max];
    let nope = ServiceId::of("nope");
    // NOT_FOUND: the requests and their streams go out together (the test
    // hook does not wait for the request's ACK), message 0 withheld.
    for _ in 0..8 {
        let c = a
            .call(now, s, nope, CallKind::ClientStream, None, b"")
            .unwrap();
        a.testing_forge_stream(s, c, None, 1).unwrap();
        for _ in 0..40 {
            a.send_message(now, s, c, &payload).unwrap();
        }
    }
    deliver(&mut b, now, 1, out(&mut a, now));
    let st = b.stats().clone();
    eprintln!(
        "refused calls: {} B discarded, peak buffered {} B",
        st.stream_bytes_discarded, st.stream_bytes_buffered_peak
    );
    assert_eq!(st.calls_not_found, 8);
    assert_eq!(st.stream_bytes_discarded, 8 * 39 * max as u64);
    assert_eq!(st.stream_bytes_buffered_peak, 0);
    assert_eq!(st.protocol_violations, 0);
    // Answered by the application: what was buffered goes at once.
    let c = a
        .call(now, s, sink(), CallKind::ClientStream, None, b"")
        .unwrap();
    a.testing_forge_stream(s, c, None, 1).unwrap();
    for _ in 0..40 {
        a.send_message(now, s, c, &payload).unwrap();
    }
    let mut dgrams = out(&mut a, now);
    let rest = dgrams.split_off(dgrams.len() / 2);
    deliver(&mut b, now, 1, dgrams);
    let (bs, served) = events(&mut b)
        .into_iter()
        .find_map(|e| match e {
            Event::Request { session, call, .. } => Some((session, call)),
            _ => None,
        })
        .expect("request");
    let kept = b.stats().stream_bytes_buffered;
    assert!(kept > 0);
    b.respond(now, bs, served, Status::CAPABILITY_DENIED, &[])
        .unwrap();
    assert_eq!(b.stats().stream_bytes_buffered, 0);
    deliver(&mut b, now, 1, rest);
    assert_eq!(b.stats().stream_bytes_buffered, 0);
    assert_eq!(b.stream_bytes_held(), 0);
    // Everything but what was buffered before the answer was discarded.
    let discarded = (8 + 1) * 39 * max as u64 - kept;
    assert_eq!(b.stats().stream_bytes_discarded, discarded);
    assert_eq!(b.stats().protocol_violations, 0);
}

/// (e) Thousands of empty messages arriving in reverse order are no
/// violation (on 0b6570b: `TooFarAhead` at 1 024), and to a caller that
/// reads nothing they are flow-controlled by the per-message charge.
#[test]
fn many_empty_messages_are_flow_controlled_not_a_violation() {
    let now = Instant::now();
    let mut a = endpoint(config(1), now);
    let mut b = endpoint(config(2), now);
    b.register_service(ticker(), 64);
    let (s, calls, bs, served) =
        open_calls(&mut a, &mut b, now, ticker(), CallKind::ServerStream, 2);
    for _ in 0..5000 {
        b.send_message(now, bs, served[0], b"").unwrap();
    }
    let mut dgrams = out(&mut b, now);
    assert!(dgrams.len() > 1);
    dgrams.reverse();
    deliver(&mut a, now, 2, dgrams);
    let ea = events(&mut a);
    assert_eq!(stream_violation(&ea), None);
    assert_eq!(messages(&ea, calls[0]), (5000, 0));
    // A reader that never consumes: blocked at window / MESSAGE_CHARGE.
    a.defer_credit(s, calls[1]).unwrap();
    let key = (bs, served[1]);
    let (n, _) = stream_until_stalled(&mut a, &mut b, now, key, calls[1], 0);
    eprintln!("empty messages to a non-reader: {n} delivered before the sender stalled");
    assert_eq!(n, WINDOW / MESSAGE_CHARGE);
    a.consumed(now, s, calls[1], n, 0).unwrap();
    let (_, eb) = shuttle(&mut a, &mut b, now);
    assert_eq!(writable(&eb), vec![served[1]]);
    assert_eq!(
        a.stats().protocol_violations + b.stats().protocol_violations,
        0
    );
}
