//! The runtime layer on virtual time: every test below is single-threaded
//! and deterministic (no sleeps, no wall-clock reads, seeded loss).

use std::sync::Arc;
use std::time::Duration;

use net_io::MemNet;
use net_proto::{CallKind, ServiceId, Status};

use super::{parking_handler, serve, Calls, Log, Pair};
use crate::flow::SendError;
use crate::handler::{CallEvents, Handler, Responder};
use crate::ServeOptions;

/// Virtual time any of these exchanges may take at most (only reached on
/// failure; the happy paths take milliseconds of virtual time).
const LIMIT: Duration = Duration::from_secs(60);

fn echo() -> Handler {
    Handler::Sync(Arc::new(|_, req: &[u8], out: &mut Vec<u8>| {
        assert!(req != b"boom", "handler bug");
        out.extend_from_slice(req);
        Status::OK
    }))
}

fn pair_serving(name: &str, handler: Handler) -> Pair {
    Pair::new(MemNet::new(), |c| c, |n| serve(n, name, handler))
}

fn unary(p: &mut Pair, body: &[u8]) -> (Status, Vec<u8>) {
    let log = p.call_with("echo", CallKind::Unary, None, body.to_vec(), false);
    p.run_until(LIMIT, |_| log.status().is_some());
    let end = log.lock().end.clone().unwrap();
    end
}

#[test]
fn a_panicking_sync_handler_fails_its_call_and_the_core_goes_on() {
    let mut p = pair_serving("echo", echo());
    assert_eq!(unary(&mut p, b"boom"), (Status::INTERNAL, Vec::new()));
    assert_eq!(unary(&mut p, b"next"), (Status::OK, b"next".to_vec()));
    assert_eq!(p.server.core.stats.handler_panics, 1);
}

/// The server streams `n` messages of `len` bytes as fast as credit
/// allows, then answers OK right behind the last one.
fn server_stream(n: usize, len: usize) {
    let calls = Calls::default();
    let mut p = pair_serving("stream", parking_handler(&calls));
    let log = p.call("stream", CallKind::ServerStream, None);
    p.run_until(LIMIT, |_| !calls.0.lock().unwrap().is_empty());
    let responder = calls.take().pop().unwrap().responder;
    let mut sent = 0;
    while sent < n {
        let msg = (sent as u32).to_le_bytes().repeat(len / 4);
        match responder.try_send(msg) {
            Ok(()) => sent += 1,
            Err(SendError::Full(_)) => p.run_until(LIMIT, |_| responder.0.call.flow.has_room(len)),
            Err(e) => panic!("send {sent}: {e}"),
        }
    }
    responder.respond(Status::OK, Vec::new()).unwrap();
    drop(responder);
    p.run_until(LIMIT, |_| log.status().is_some());
    let seen = log.lock();
    assert_eq!(seen.end.as_ref().unwrap().0, Status::OK);
    assert_eq!(seen.messages.len(), n, "every message, then OK");
    assert_eq!(seen.late, 0);
    for (i, m) in seen.messages.iter().enumerate() {
        assert_eq!(m, &(i as u32).to_le_bytes().repeat(len / 4), "message {i}");
    }
}

#[test]
fn a_server_stream_of_20000_small_messages_arrives_whole_before_ok() {
    server_stream(20_000, 100);
}

#[test]
fn a_server_stream_of_2000_large_messages_arrives_whole_before_ok() {
    server_stream(2_000, 16_000);
}

/// Counts what a client stream delivered and answers the count on finish.
struct Count {
    responder: Responder,
    msgs: u32,
    bytes: u64,
}

impl CallEvents for Count {
    fn message(&mut self, payload: &[u8]) {
        self.msgs += 1;
        self.bytes += payload.len() as u64;
    }

    fn finished(&mut self) {
        let body = [
            self.msgs.to_le_bytes().as_slice(),
            &self.bytes.to_le_bytes(),
        ]
        .concat();
        self.responder.respond(Status::OK, body).unwrap();
    }

    fn complete(&mut self, _: Status, _: &[u8]) {}
}

#[test]
fn a_client_stream_ends_ok_only_after_every_message_arrived() {
    let counting = Handler::Async(Arc::new(|c: crate::IncomingCall| {
        let sink = Count {
            responder: c.responder,
            msgs: 0,
            bytes: 0,
        };
        Some(Box::new(sink) as Box<dyn CallEvents>)
    }));
    let mut p = pair_serving("count", counting);
    let log = p.call("count", CallKind::ClientStream, None);
    p.run_until(LIMIT, |_| log.lock().handle.is_some());
    let handle = log.handle();
    let (n, len) = (5_000u32, 1_284usize);
    let mut sent = 0;
    while sent < n {
        match handle.try_send(vec![sent as u8; len]) {
            Ok(()) => sent += 1,
            Err(SendError::Full(_)) => p.run_until(LIMIT, |_| handle.0.flow.has_room(len)),
            Err(e) => panic!("send {sent}: {e}"),
        }
    }
    let too_big = handle.try_send(vec![0; 1 << 20]);
    assert!(matches!(too_big, Err(SendError::PayloadTooLarge { .. })));
    handle.finish().unwrap();
    p.run_until(LIMIT, |_| log.status().is_some());
    let (status, body) = log.lock().end.clone().unwrap();
    assert_eq!(status, Status::OK);
    assert_eq!(body[..4], n.to_le_bytes());
    assert_eq!(body[4..], (u64::from(n) * len as u64).to_le_bytes());
}

#[test]
fn a_deadline_passes_in_virtual_time_and_frees_the_handler_slot() {
    let calls = Calls::default();
    let mut p = pair_serving("slow", parking_handler(&calls));
    let log = p.call("slow", CallKind::Unary, Some(Duration::from_millis(50)));
    p.run_until(LIMIT, |_| !calls.0.lock().unwrap().is_empty());
    let parked = calls.take().pop().unwrap();
    assert_eq!(parked.responder.ended(), None);
    // Not yet: 49 ms of virtual time later the call is still open.
    p.advance(Duration::from_millis(49));
    assert_eq!(log.status(), None);
    p.run_until(LIMIT, |_| log.status().is_some());
    assert_eq!(log.status(), Some(Status::TIMEOUT));
    // The handler learns it was abandoned; dropping it frees its slot.
    p.run_until(LIMIT, |_| parked.responder.ended().is_some());
    drop(parked);
    p.settle();
    assert_eq!(p.server.core.handoffs.running(ServiceId::of("slow")), 0);
}

#[test]
fn max_in_flight_bounds_running_handlers_and_a_closed_session_ends_them() {
    const MAX: u32 = 16;
    let calls = Calls::default();
    let opts = ServeOptions {
        max_in_flight: Some(MAX),
        ..ServeOptions::default()
    };
    let handler = parking_handler(&calls);
    let mut p = Pair::new(
        MemNet::new(),
        |c| c,
        |n| n.serve("slow", handler, opts).unwrap(),
    );
    let logs: Vec<Log> = (0..64)
        .map(|_| p.call("slow", CallKind::Unary, None))
        .collect();
    p.run_until(LIMIT, |_| {
        logs.iter().filter(|l| l.status().is_some()).count() == 64 - MAX as usize
    });
    let running = calls.take();
    assert_eq!(running.len(), MAX as usize, "handlers started");
    for l in logs.iter().filter(|l| l.status().is_some()) {
        assert_eq!(l.status(), Some(Status::BACKPRESSURE));
    }
    // The client's session closes: every running handler observes it.
    let now = p.now();
    for s in p.client.core.ep.session_ids() {
        p.client.core.ep.close(now, s, 0).unwrap();
    }
    p.run_until(LIMIT, |_| {
        running.iter().all(|c| c.responder.ended().is_some())
    });
    drop(running);
    p.settle();
    assert_eq!(p.server.core.handoffs.running(ServiceId::of("slow")), 0);
    assert!(
        logs.iter().all(|l| l.status().is_some()),
        "every caller told"
    );
}

#[test]
fn lost_datagrams_are_recovered_on_virtual_time() {
    let net = MemNet::with_loss(7, 0.2);
    let mut p = Pair::new(net.clone(), |c| c, |n| serve(n, "echo", echo()));
    // One call at a time: each crosses in its own datagrams, so the seeded
    // loss meets requests, responses, ACKs and the handshake alike.
    for i in 0..100u32 {
        let body = i.to_le_bytes().to_vec();
        assert_eq!(unary(&mut p, &body), (Status::OK, body), "call {i}");
    }
    assert!(net.lost() > 10, "the seed drops datagrams: {}", net.lost());
}

#[test]
fn a_caller_that_never_consumes_holds_at_most_one_window() {
    const LEN: usize = 16_000;
    const N: usize = 1_000; // 16 MB offered
    let window = 1u64 << 20;
    let calls = Calls::default();
    let mut p = pair_serving("push", parking_handler(&calls));
    let log = p.call_with("push", CallKind::ServerStream, None, Vec::new(), true);
    p.run_until(LIMIT, |_| !calls.0.lock().unwrap().is_empty());
    let responder = calls.take().pop().unwrap().responder;
    // Send until the stream stays full through 5 s of virtual time: every
    // retransmission and ACK timer has fired, so it is stalled for good.
    let mut sent = 0;
    let mut idle = Duration::ZERO;
    while idle < Duration::from_secs(5) && sent < N {
        match responder.try_send(vec![sent as u8; LEN]) {
            Ok(()) => (sent, idle) = (sent + 1, Duration::ZERO),
            Err(SendError::Full(_)) => {
                p.advance(Duration::from_millis(100));
                idle += Duration::from_millis(100);
            }
            Err(e) => panic!("send {sent}: {e}"),
        }
    }
    let held = (sent * LEN) as u64;
    let client = p.client.core.ep.stats().stream_bytes_buffered_peak;
    let server = p.server.core.ep.stats().stream_bytes_buffered_peak;
    eprintln!("never-consuming caller: callee accepted {held} of {} B, caller buffered at most {client} B, callee {server} B (window {window})", N * LEN);
    // One window towards the caller plus one window of flow credit queued
    // on the server's core, whatever the caller does.
    assert!(held <= 2 * window + LEN as u64, "accepted {held}");
    assert!(client <= window, "caller buffered {client}");
    assert!(server <= window, "callee buffered {server}");
    assert!(sent < N, "the sender must stall");
    // Consuming resumes the stream: everything arrives, in order, then OK.
    let handle = log.handle();
    let deadline = p.now() + LIMIT;
    let mut read = 0;
    while sent < N || read < sent {
        let arrived = log.lock().messages.len();
        if arrived > read {
            handle.consumed((arrived - read) as u64, ((arrived - read) * LEN) as u64);
            read = arrived;
        }
        if sent < N {
            match responder.try_send(vec![sent as u8; LEN]) {
                Ok(()) => {
                    sent += 1;
                    continue;
                }
                Err(SendError::Full(_)) => {}
                Err(e) => panic!("send {sent}: {e}"),
            }
        }
        assert!(p.now() < deadline, "stream never resumed");
        p.advance(Duration::from_millis(1));
    }
    responder.respond(Status::OK, Vec::new()).unwrap();
    p.run_until(LIMIT, |_| log.status().is_some());
    let seen = log.lock();
    assert_eq!(seen.end.as_ref().unwrap().0, Status::OK);
    assert_eq!(seen.messages.len(), N);
    assert!(seen
        .messages
        .iter()
        .enumerate()
        .all(|(i, m)| m[0] == i as u8));
}
