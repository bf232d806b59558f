//! The c1 floor: a plain busy-polling UDP ping-pong with std sockets
//! (non-blocking `recv_from` / `send_to` in a loop, one datagram in flight,
//! nothing else: no batching, no driver, no parking). It is what "one round
//! trip across the two cores" costs here, the bound any c1 figure is read
//! against (issue 16; on these machines p50 ≈ 6.5–7.3 µs for 32 B). The
//! raw baseline of the main table uses the engine's own driver, which parks
//! after `--spin-us` and so can be slower at c1.

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::{Point, PointResult, STALL};

/// A reply not back after this long is counted as an error and the
/// datagram sent again (loopback and a veth do not lose datagrams unless
/// something is wrong).
const LOST_AFTER: Duration = Duration::from_millis(200);

/// Binds the echo socket (non-blocking).
pub fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
    let s = UdpSocket::bind(addr)?;
    s.set_nonblocking(true)?;
    Ok(s)
}

/// Echoes every datagram to its sender, busy-polling, until `stop`.
pub fn serve(s: &UdpSocket, stop: &AtomicBool) -> io::Result<()> {
    let mut buf = vec![0u8; 65_536];
    let mut polls = 0u32;
    loop {
        match s.recv_from(&mut buf) {
            Ok((n, from)) => {
                // A refused echo is a lost round trip: the client counts it.
                let _ = s.send_to(&buf[..n], from);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                polls = polls.wrapping_add(1);
                if polls % 4096 == 0 && stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
                std::hint::spin_loop();
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Runs `point` (its concurrency is ignored: one datagram in flight) from
/// a socket bound to `bind` against the echo at `server`.
pub fn run(bind: IpAddr, server: SocketAddr, point: &Point) -> io::Result<PointResult> {
    let s = UdpSocket::bind(SocketAddr::new(bind, 0))?;
    s.set_nonblocking(true)?;
    s.connect(server)?;
    let mut out = vec![0u8; point.payload.max(8)];
    let mut back = vec![0u8; out.len() + 1];
    let mut r = PointResult::new();
    let start = Instant::now();
    let measure_from = start + point.warmup;
    let end = measure_from + point.duration;
    let mut last_ok = start;
    for seq in 0u64.. {
        let now = Instant::now();
        if now >= end {
            break;
        }
        if now.saturating_duration_since(last_ok) > STALL {
            r.stalled = true;
            break;
        }
        out[..8].copy_from_slice(&seq.to_be_bytes());
        let sent = Instant::now();
        let good = round_trip(&s, &out, &mut back, sent)?;
        let done = Instant::now();
        if good {
            last_ok = done;
        }
        if sent >= measure_from {
            r.record(done - sent, good);
        }
    }
    r.elapsed = point.duration;
    Ok(r)
}

/// Sends `out` and spins until its echo is back (`true`), or
/// [`LOST_AFTER`] passed (`false`).
fn round_trip(s: &UdpSocket, out: &[u8], back: &mut [u8], sent: Instant) -> io::Result<bool> {
    s.send(out)?;
    loop {
        match s.recv(back) {
            Ok(n) if back[..n] == *out => return Ok(true),
            Ok(_) => {} // a late echo of an earlier datagram
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if sent.elapsed() > LOST_AFTER {
                    return Ok(false);
                }
                std::hint::spin_loop();
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn measures_round_trips_against_the_echo() {
        let echo = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = echo.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let t = std::thread::spawn(move || serve(&echo, &st));
        let p = Point {
            conc: 1,
            payload: 32,
            duration: Duration::from_millis(50),
            warmup: Duration::from_millis(10),
            spin: Duration::ZERO,
            rate: None,
        };
        let r = run("127.0.0.1".parse().unwrap(), addr, &p).unwrap();
        stop.store(true, Ordering::Relaxed);
        t.join().unwrap().unwrap();
        assert!(
            r.ok > 0 && r.errors == 0 && !r.stalled,
            "{} ok, {} errors",
            r.ok,
            r.errors
        );
    }
}
