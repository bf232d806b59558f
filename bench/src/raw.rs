//! The raw-UDP baseline: the same drivers, pinning and payloads as the
//! engine, but no crypto and no RPC — an echo server and a client that keeps
//! `conc` datagrams in flight (c1 with spin on is a busy-poll ping-pong;
//! c > 1 batches receives and sends through recvmmsg/sendmmsg or io_uring).

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use net_io::{Driver, DriverChoice, DriverConfig};

use crate::{Point, PointResult};

/// A datagram not echoed within this is counted lost and re-sent.
const LOSS_TIMEOUT: Duration = Duration::from_millis(200);
/// How long a parked side blocks in one `recv` before looking at its flags.
const PARK: Duration = Duration::from_millis(50);
/// Open loop: at most this many datagrams in flight.
const OPEN_LOOP_SLOTS: usize = 4096;

/// The `recv` timeout for a side that last saw traffic at `last`: poll
/// while within `spin` of it (the engine's spin-then-park), block after.
/// Bytes before the slot and sequence number of a raw datagram: a constant
/// header standing in for Net's packet type and receiver index.
const HDR: usize = 8;

fn wait(spin: Duration, last: Instant, now: Instant) -> Option<Duration> {
    if now.saturating_duration_since(last) < spin {
        Some(Duration::ZERO)
    } else {
        Some(PARK)
    }
}

/// The largest payload the baseline carries: one datagram of the drivers'
/// default `max_datagram` (larger points are skipped, not measured).
pub fn max_payload() -> usize {
    DriverConfig::default().max_datagram
}

/// Opens a raw driver bound to `addr`.
pub fn open(addr: SocketAddr, driver: DriverChoice) -> std::io::Result<Box<dyn Driver>> {
    net_io::open(addr, driver, &crate::driver_config()).map_err(std::io::Error::other)
}

/// Echoes every datagram back to its sender until `stop` is set. Like an
/// engine core it polls for `spin` after the last datagram and then parks,
/// so an idle baseline server (sliced runs keep it up while nRPC is
/// measured) does not take the CPU from the system being measured.
pub fn serve(mut drv: Box<dyn Driver>, spin: Duration, stop: &AtomicBool) -> std::io::Result<()> {
    let mut tmp = vec![0u8; 65536];
    let mut last = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let n = drv.recv(wait(spin, last, Instant::now()))?;
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
            last = Instant::now();
        }
    }
    Ok(())
}

struct Slot {
    seq: u64,
    sent: Instant,
    busy: bool,
}

/// A baseline client whose socket outlives one point: a sliced run
/// measures many short stretches on it without reopening anything.
pub struct Client {
    drv: Box<dyn Driver>,
    /// Sequence numbers of run `k` start at `k << 32`, so an echo still in
    /// flight from an earlier run never matches a slot of this one.
    runs: u64,
}

/// One run's state: the slots and the stretch boundaries.
struct Run<'a> {
    drv: &'a mut Box<dyn Driver>,
    server: SocketAddr,
    body: Vec<u8>,
    slots: Vec<Slot>,
    /// Open loop: idle slots and the spacing of sends.
    free: Vec<usize>,
    gap: Option<Duration>,
    measure_from: Instant,
    result: PointResult,
}

impl Run<'_> {
    fn send(&mut self, i: usize) {
        let s = &self.slots[i];
        // Bytes 0..8 stay zero, like the type and receiver index of Net's
        // packets to one session, so equal-size echoes form GSO runs as
        // Net's do (net-io joins a run only while bytes 4..8 are equal).
        self.body[HDR..HDR + 8].copy_from_slice(&(i as u64).to_be_bytes());
        self.body[HDR + 8..HDR + 16].copy_from_slice(&s.seq.to_be_bytes());
        if self.drv.tx_slot().is_none() {
            let _ = self.drv.flush();
        }
        if let Some(buf) = self.drv.tx_slot() {
            buf[..self.body.len()].copy_from_slice(&self.body);
            self.drv.tx_commit(self.server, self.body.len());
        }
    }

    /// Takes the echoes of the last `recv`; true if any was current.
    fn take_replies(
        &mut self,
        n: usize,
        now: Instant,
        replies: &mut Vec<(usize, u64, usize)>,
    ) -> bool {
        let mut progress = false;
        replies.clear();
        for i in 0..n {
            let (_, buf) = self.drv.rx(i);
            if buf.len() < HDR + 16 {
                continue;
            }
            let slot = u64::from_be_bytes(buf[HDR..HDR + 8].try_into().unwrap_or_default());
            let slot = slot as usize;
            let seq = u64::from_be_bytes(buf[HDR + 8..HDR + 16].try_into().unwrap_or_default());
            replies.push((slot, seq, buf.len()));
        }
        for &(slot, seq, len) in replies.iter() {
            let Some(s) = self.slots.get_mut(slot) else {
                continue;
            };
            if s.seq != seq {
                continue; // a late echo of a datagram already counted lost
            }
            progress = true;
            if now >= self.measure_from {
                self.result
                    .record(now.duration_since(s.sent), len == self.body.len());
            }
            s.seq += 1;
            s.sent = now;
            if self.gap.is_some() {
                s.busy = false;
                self.free.push(slot);
            } else {
                self.send(slot);
            }
        }
        progress
    }

    /// Re-sends (and counts) every datagram in flight for over
    /// [`LOSS_TIMEOUT`].
    fn resend_lost(&mut self, now: Instant) {
        for i in 0..self.slots.len() {
            let s = &mut self.slots[i];
            if (self.gap.is_none() || s.busy) && now.duration_since(s.sent) > LOSS_TIMEOUT {
                if now >= self.measure_from {
                    self.result.errors += 1;
                }
                s.seq += 1;
                s.sent = now;
                self.send(i);
            }
        }
    }
}

impl Client {
    /// Opens a client socket on `bind` (any port).
    pub fn open(bind: IpAddr, driver: DriverChoice) -> std::io::Result<Self> {
        Ok(Client {
            drv: open(SocketAddr::new(bind, 0), driver)?,
            runs: 0,
        })
    }

    /// Runs the baseline against `server` for one point.
    pub fn run(
        &mut self,
        point: &Point,
        server: SocketAddr,
        stop: &AtomicBool,
    ) -> std::io::Result<PointResult> {
        self.runs += 1;
        let refused_before = self.drv.stats().tx_errors;
        let first_seq = self.runs << 32;
        let start = Instant::now();
        let gap = point
            .rate
            .map(|r| Duration::from_secs_f64(1.0 / r.max(1e-3)));
        // Open loop: slots are issued on a schedule (and capped at 4096 in
        // flight); latency counts from the intended send time.
        let (n, busy) = match gap {
            Some(_) => (OPEN_LOOP_SLOTS, false),
            None => (point.conc, true),
        };
        let slots = (0..n)
            .map(|_| Slot {
                seq: first_seq,
                sent: start,
                busy,
            })
            .collect();
        let mut run = Run {
            drv: &mut self.drv,
            server,
            body: vec![0u8; point.payload.max(HDR + 16)],
            slots,
            free: if gap.is_some() {
                (0..n).rev().collect()
            } else {
                Vec::new()
            },
            gap,
            measure_from: start + point.warmup,
            result: PointResult::new(),
        };
        if gap.is_none() {
            for i in 0..n {
                run.send(i);
            }
        }
        run.drv.flush()?;
        run.drive(point, start, stop)?;
        let mut result = run.result;
        result.refused_sends = self.drv.stats().tx_errors - refused_before;
        Ok(result)
    }
}

impl Run<'_> {
    /// The receive loop until the point's end, a stop or a stall.
    fn drive(&mut self, point: &Point, start: Instant, stop: &AtomicBool) -> std::io::Result<()> {
        let end = self.measure_from + point.duration;
        let mut last_progress = start;
        let mut last_rx = start;
        let mut replies = Vec::with_capacity(1024);
        let mut next_loss_check = start + LOSS_TIMEOUT;
        let mut next_send = start;
        loop {
            let now = Instant::now();
            if now >= end || stop.load(Ordering::Relaxed) {
                break;
            }
            if now.duration_since(last_progress) > crate::STALL {
                self.result.stalled = true;
                break;
            }
            // Spin-then-park like an engine core (and the server above): a
            // baseline that never parks would be treated differently by the
            // scheduler than the engine whenever the machine is loaded. A
            // parked open-loop client wakes for its next scheduled send.
            let mut wake = end;
            if self.gap.is_some() && !self.free.is_empty() {
                wake = wake.min(next_send);
            }
            let timeout =
                wait(point.spin, last_rx, now).map(|w| w.min(wake.saturating_duration_since(now)));
            let n = self.drv.recv(timeout)?;
            let now = Instant::now();
            if n > 0 {
                last_rx = now;
            }
            if self.take_replies(n, now, &mut replies) {
                last_progress = now;
            }
            if let Some(gap) = self.gap {
                while next_send <= now {
                    let Some(i) = self.free.pop() else { break };
                    self.slots[i].sent = next_send;
                    self.slots[i].busy = true;
                    self.send(i);
                    next_send += gap;
                }
            }
            if now >= next_loss_check {
                next_loss_check = now + Duration::from_millis(1);
                self.resend_lost(now);
            }
            self.drv.flush()?;
        }
        self.result.elapsed = Instant::now()
            .saturating_duration_since(self.measure_from)
            .min(point.duration);
        Ok(())
    }
}
