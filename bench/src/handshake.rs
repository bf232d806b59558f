//! The handshake point of `nrpc_qps`: how many Noise IKpsk2 handshakes per
//! second one server core completes.
//!
//! The client runs `slots` sans-IO endpoints on one thread (one UDP socket
//! each, distinct lanes so the server keeps their sessions apart). Each slot
//! connects, and on `Connected` closes the session — its CLOSE is the data
//! packet that confirms the server side — and connects again at once. A
//! handshake counts when the client sees `Connected`; its latency runs from
//! `connect` to then. The client does the same public-key work per
//! handshake as the server (4 X25519 each), so with one core per side the
//! figure is the rate of the slower of the two.

use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use net_crypto::{Identity, PublicIdentity};
use net_proto::{Endpoint, EndpointConfig, Event, SessionId};

use crate::{PointResult, STALL};

struct Slot {
    ep: Endpoint,
    sock: UdpSocket,
    /// The session being set up, and when `connect` was called.
    current: Option<(SessionId, Instant)>,
}

fn wall_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Runs `slots` concurrent handshake loops against `server` for `warmup`
/// then `duration`, each slot on a socket bound to `bind`; latencies are
/// connect → `Connected`.
pub fn run(
    server: SocketAddr,
    bind: IpAddr,
    server_id: PublicIdentity,
    psk: [u8; 32],
    slots: usize,
    warmup: Duration,
    duration: Duration,
) -> std::io::Result<PointResult> {
    let identity = Identity::from_seed(&[3; 32]);
    let t0 = Instant::now();
    let mut slots: Vec<Slot> = (0..slots)
        .map(|i| {
            let mut cfg = EndpointConfig::new(identity.clone(), psk);
            cfg.lane = i as u16;
            cfg.rng_seed = i as u64;
            cfg.handshake_retry = Duration::from_millis(50);
            let sock = UdpSocket::bind(SocketAddr::new(bind, 0))?;
            sock.set_nonblocking(true)?;
            Ok(Slot {
                ep: Endpoint::new(cfg, t0, wall_nanos()),
                sock,
                current: None,
            })
        })
        .collect::<std::io::Result<_>>()?;
    let mut result = PointResult::new();
    let mut buf = vec![0u8; 65536];
    let start = t0 + warmup;
    let end = start + duration;
    let mut last_progress = t0;
    loop {
        let now = Instant::now();
        if now >= end || now.saturating_duration_since(last_progress) > STALL {
            result.stalled = now < end;
            break;
        }
        for slot in &mut slots {
            if step(slot, server, server_id, now, start, &mut buf, &mut result)? {
                last_progress = now;
            }
        }
    }
    result.elapsed = duration;
    Ok(result)
}

/// One pass over one slot; true if a handshake completed.
fn step(
    slot: &mut Slot,
    server: SocketAddr,
    server_id: PublicIdentity,
    now: Instant,
    measure_from: Instant,
    buf: &mut [u8],
    result: &mut PointResult,
) -> std::io::Result<bool> {
    let ep = &mut slot.ep;
    if slot.current.is_none() {
        let s = ep
            .connect(now, server_id, server)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        slot.current = Some((s, now));
    }
    loop {
        match slot.sock.recv_from(buf) {
            Ok((n, src)) => ep.handle(now, src, &mut buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    if ep.poll_timeout().is_some_and(|t| t <= now) {
        ep.handle_timeout(now);
    }
    let mut done = false;
    while let Some(ev) = ep.poll_event() {
        match ev {
            Event::Connected { session, .. } => {
                if let Some((s, started)) = slot.current.take_if(|(s, _)| *s == session) {
                    if now >= measure_from {
                        result.record(now - started, true);
                    }
                    let _ = ep.close(now, s, 0);
                    done = true;
                }
            }
            Event::Closed { session, .. }
                if slot.current.take_if(|(s, _)| *s == session).is_some() =>
            {
                result.record(Duration::ZERO, false);
            }
            _ => {}
        }
    }
    while let Some(t) = ep.poll_transmit(now, buf) {
        slot.sock.send_to(&buf[..t.len], t.dst)?;
    }
    Ok(done)
}
