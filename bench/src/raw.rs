//! The raw-UDP baseline: the same drivers, pinning and payloads as the
//! engine, but no crypto and no RPC — an echo server and a client that keeps
//! `conc` datagrams in flight (c1 with spin on is a busy-poll ping-pong;
//! c > 1 batches receives and sends through recvmmsg/sendmmsg or io_uring).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use net_io::{Driver, DriverChoice, DriverConfig};

use crate::{Point, PointResult};

/// A datagram not echoed within this is counted lost and re-sent.
const LOSS_TIMEOUT: Duration = Duration::from_millis(200);

fn wait(spin: Duration) -> Option<Duration> {
    if spin.is_zero() {
        Some(Duration::from_millis(50))
    } else {
        Some(Duration::ZERO)
    }
}

/// Opens a raw driver bound to `addr`.
pub fn open(addr: SocketAddr, driver: DriverChoice) -> std::io::Result<Box<dyn Driver>> {
    net_io::open(addr, driver, &DriverConfig::default()).map_err(std::io::Error::other)
}

/// Echoes every datagram back to its sender until `stop` is set.
pub fn serve(mut drv: Box<dyn Driver>, spin: Duration, stop: &AtomicBool) -> std::io::Result<()> {
    let mut tmp = vec![0u8; 65536];
    while !stop.load(Ordering::Relaxed) {
        let n = drv.recv(wait(spin))?;
        for i in 0..n {
            let (src, buf) = drv.rx(i);
            let len = buf.len();
            tmp[..len].copy_from_slice(buf);
            if drv.tx_slot().is_none() {
                drv.flush()?;
            }
            if let Some(slot) = drv.tx_slot() {
                slot[..len].copy_from_slice(&tmp[..len]);
                drv.tx_commit(src, len);
            }
        }
        if n > 0 {
            drv.flush()?;
        }
    }
    Ok(())
}

struct Slot {
    seq: u64,
    sent: Instant,
    busy: bool,
}

/// Runs the baseline client against `server` for one point.
pub fn run(
    point: &Point,
    server: SocketAddr,
    driver: DriverChoice,
    stop: Arc<AtomicBool>,
) -> std::io::Result<PointResult> {
    let mut drv = open(SocketAddr::from(([127, 0, 0, 1], 0)), driver)?;
    let mut result = PointResult::new();
    let mut body = vec![0u8; point.payload.max(16)];
    let start = Instant::now();
    let measure_from = start + point.warmup;
    let end = measure_from + point.duration;
    let mut slots: Vec<Slot> = (0..point.conc)
        .map(|_| Slot {
            seq: 0,
            sent: start,
            busy: true,
        })
        .collect();
    let send = |drv: &mut Box<dyn Driver>, body: &mut Vec<u8>, i: usize, s: &Slot| {
        body[..8].copy_from_slice(&(i as u64).to_be_bytes());
        body[8..16].copy_from_slice(&s.seq.to_be_bytes());
        if drv.tx_slot().is_none() {
            let _ = drv.flush();
        }
        if let Some(buf) = drv.tx_slot() {
            buf[..body.len()].copy_from_slice(body);
            drv.tx_commit(server, body.len());
        }
    };
    // Open loop: slots are issued on a schedule (and capped at 4096 in
    // flight); latency counts from the intended send time.
    let gap = point
        .rate
        .map(|r| Duration::from_secs_f64(1.0 / r.max(1e-3)));
    let mut free: Vec<usize> = Vec::new();
    let mut next_send = start;
    if gap.is_some() {
        slots = (0..4096)
            .map(|_| Slot {
                seq: 0,
                sent: start,
                busy: false,
            })
            .collect();
        free = (0..slots.len()).rev().collect();
    } else {
        for (i, s) in slots.iter().enumerate() {
            send(&mut drv, &mut body, i, s);
        }
    }
    drv.flush()?;
    let mut last_progress = start;
    let mut replies = Vec::with_capacity(1024);
    let mut next_loss_check = start + LOSS_TIMEOUT;
    loop {
        let now = Instant::now();
        if now >= end || stop.load(Ordering::Relaxed) {
            break;
        }
        if now.duration_since(last_progress) > crate::STALL {
            result.stalled = true;
            break;
        }
        let n = drv.recv(wait(point.spin).map(|w| w.min(end.saturating_duration_since(now))))?;
        let now = Instant::now();
        replies.clear();
        for i in 0..n {
            let (_, buf) = drv.rx(i);
            if buf.len() < 16 {
                continue;
            }
            let slot = u64::from_be_bytes(buf[..8].try_into().unwrap_or_default()) as usize;
            let seq = u64::from_be_bytes(buf[8..16].try_into().unwrap_or_default());
            replies.push((slot, seq, buf.len()));
        }
        for &(slot, seq, len) in &replies {
            let Some(s) = slots.get_mut(slot) else {
                continue;
            };
            if s.seq != seq {
                continue; // a late echo of a datagram already counted lost
            }
            last_progress = now;
            if now >= measure_from {
                result.record(now.duration_since(s.sent), len == body.len());
            }
            s.seq += 1;
            s.sent = now;
            if gap.is_some() {
                s.busy = false;
                free.push(slot);
            } else {
                send(&mut drv, &mut body, slot, s);
            }
        }
        if let Some(gap) = gap {
            while next_send <= now {
                let Some(i) = free.pop() else { break };
                slots[i].sent = next_send;
                slots[i].busy = true;
                send(&mut drv, &mut body, i, &slots[i]);
                next_send += gap;
            }
        }
        let check = now >= next_loss_check;
        if check {
            next_loss_check = now + Duration::from_millis(1);
        }
        for (i, s) in slots
            .iter_mut()
            .enumerate()
            .filter(|(_, s)| check && (gap.is_none() || s.busy))
        {
            if now.duration_since(s.sent) > LOSS_TIMEOUT {
                if now >= measure_from {
                    result.errors += 1;
                }
                s.seq += 1;
                s.sent = now;
                send(&mut drv, &mut body, i, s);
            }
        }
        drv.flush()?;
    }
    result.elapsed = Instant::now()
        .saturating_duration_since(measure_from)
        .min(point.duration);
    Ok(result)
}
