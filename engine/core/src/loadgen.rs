//! A load generator that runs on a core (engine-mode benchmarks and
//! hand-off measurements). Closed loop: `concurrency` unary calls always in
//! flight. Open loop (`rate`): calls start on a fixed schedule, and latency
//! is measured from each call's *intended* start, so a stalled server
//! cannot hide its tail (no coordinated omission). Every response is
//! checked against its request (the service must echo). Recording uses an
//! HDR histogram, so measuring allocates nothing per call.

use std::sync::mpsc::SyncSender;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use net_crypto::NodeId;
use net_proto::{ServiceId, Status};

use crate::handler::{CoreApp, CoreCx};

/// A run with no completion for this long reports itself stalled.
pub const STALL: Duration = Duration::from_secs(20);

/// What to run.
#[derive(Clone, Debug)]
pub struct LoadSpec {
    /// Callee.
    pub peer: NodeId,
    /// Service (an echo: the response must equal the request).
    pub service: ServiceId,
    /// Calls in flight (closed loop), or the cap on calls in flight (open loop).
    pub concurrency: usize,
    /// Request body size (≥ 8: the first 8 bytes carry the call's slot).
    pub payload: usize,
    /// Stop after this many calls...
    pub total: Option<u64>,
    /// ...or after warm-up plus this long.
    pub duration: Option<Duration>,
    /// Completions in this first stretch are not counted.
    pub warmup: Duration,
    /// Open loop: calls per second on a fixed schedule.
    pub rate: Option<f64>,
}

impl LoadSpec {
    /// A closed-loop run of `total` calls.
    pub fn calls(
        peer: NodeId,
        service: ServiceId,
        concurrency: usize,
        payload: usize,
        total: u64,
    ) -> Self {
        LoadSpec {
            peer,
            service,
            concurrency,
            payload,
            total: Some(total),
            duration: None,
            warmup: Duration::ZERO,
            rate: None,
        }
    }
}

/// Result of a run.
#[derive(Clone, Debug)]
pub struct LoadReport {
    /// Calls answered OK with the right body (measurement window only).
    pub ok: u64,
    /// Calls that failed or came back wrong (measurement window only).
    pub errors: u64,
    /// Latencies in nanoseconds (measurement window only).
    pub hist: Histogram<u64>,
    /// Length of the measurement window.
    pub elapsed: Duration,
    /// No completion for [`STALL`]: the point is not measurable here.
    pub stalled: bool,
}

/// The app. Install with [`MeshNode::run_on_core`](crate::MeshNode::run_on_core).
pub struct ClosedLoop {
    spec: LoadSpec,
    issued: u64,
    /// Per slot: when the call was meant to start.
    started: Vec<Instant>,
    free: Vec<usize>,
    body: Vec<u8>,
    report: LoadReport,
    start: Option<Instant>,
    measure_from: Option<Instant>,
    next_send: Option<Instant>,
    last_progress: Option<Instant>,
    done: Option<SyncSender<LoadReport>>,
}

impl ClosedLoop {
    /// A run that reports on `done` when finished.
    pub fn new(spec: LoadSpec, done: SyncSender<LoadReport>) -> Self {
        let slots = spec.concurrency.max(1);
        let hist = Histogram::new_with_bounds(1, 60_000_000_000, 3)
            .unwrap_or_else(|_| Histogram::new(3).expect("histogram"));
        ClosedLoop {
            started: vec![Instant::now(); slots],
            free: (0..slots).rev().collect(),
            body: vec![0xa5; spec.payload.max(8)],
            report: LoadReport {
                ok: 0,
                errors: 0,
                hist,
                elapsed: Duration::ZERO,
                stalled: false,
            },
            issued: 0,
            start: None,
            measure_from: None,
            next_send: None,
            last_progress: None,
            done: Some(done),
            spec,
        }
    }

    fn may_issue(&self, now: Instant) -> bool {
        let by_count = self.spec.total.is_none_or(|t| self.issued < t);
        let by_time = match (self.spec.duration, self.measure_from) {
            (Some(d), Some(m)) => now < m + d,
            _ => true,
        };
        by_count && by_time
    }

    fn issue(&mut self, cx: &mut CoreCx<'_>, slot: usize, intended: Instant) {
        self.issued += 1;
        self.body[..8].copy_from_slice(&(slot as u64).to_be_bytes());
        self.started[slot] = intended;
        cx.call(self.spec.peer, self.spec.service, &self.body, slot as u64);
    }

    fn finish(&mut self, now: Instant, stalled: bool) {
        self.report.stalled = stalled;
        self.report.elapsed = self
            .measure_from
            .map_or(Duration::ZERO, |m| now.saturating_duration_since(m));
        if let Some(tx) = self.done.take() {
            let hist = self.report.hist.clone();
            let _ = tx.try_send(LoadReport {
                hist,
                ..self.report.clone()
            });
        }
    }

    fn check_end(&mut self, now: Instant) {
        if self.done.is_none() {
            return;
        }
        let counted = self
            .spec
            .total
            .is_some_and(|t| self.report.ok + self.report.errors >= t);
        let timed =
            matches!((self.spec.duration, self.measure_from), (Some(d), Some(m)) if now >= m + d);
        let stalled = self
            .last_progress
            .is_some_and(|p| now.saturating_duration_since(p) >= STALL);
        if counted || timed || stalled {
            self.finish(now, stalled && !counted && !timed);
        }
    }
}

impl CoreApp for ClosedLoop {
    fn start(&mut self, cx: &mut CoreCx<'_>) {
        let now = cx.now();
        self.start = Some(now);
        self.measure_from = Some(now + self.spec.warmup);
        self.last_progress = Some(now);
        if self.spec.rate.is_some() {
            self.next_send = Some(now);
            return;
        }
        while let Some(slot) = self.free.pop() {
            if !self.may_issue(now) {
                self.free.push(slot);
                break;
            }
            self.issue(cx, slot, now);
        }
    }

    fn response(&mut self, cx: &mut CoreCx<'_>, token: u64, status: Status, payload: &[u8]) {
        let now = Instant::now();
        let slot = token as usize;
        if slot >= self.started.len() {
            return; // not one of ours
        }
        self.last_progress = Some(now);
        if self.measure_from.is_some_and(|m| now >= m) {
            let good = status.is_ok()
                && payload.len() == self.body.len()
                && payload[..8] == token.to_be_bytes()
                && payload[8..] == self.body[8..];
            if good {
                self.report.ok += 1;
            } else {
                self.report.errors += 1;
            }
            if let Some(sent) = self.started.get(slot) {
                let ns = now.saturating_duration_since(*sent).as_nanos() as u64;
                let _ = self.report.hist.record(ns.max(1));
            }
        }
        self.check_end(now);
        if self.done.is_none() {
            return;
        }
        if self.spec.rate.is_none() && self.may_issue(now) {
            self.issue(cx, slot, now);
        } else {
            self.free.push(slot);
        }
    }

    fn poll(&mut self, cx: &mut CoreCx<'_>) {
        let now = cx.now();
        self.check_end(now);
        let (Some(rate), Some(mut next)) = (self.spec.rate, self.next_send) else {
            return;
        };
        let gap = Duration::from_secs_f64(1.0 / rate.max(1e-3));
        while next <= now && self.done.is_some() && self.may_issue(now) {
            let Some(slot) = self.free.pop() else { break };
            self.issue(cx, slot, next);
            next += gap;
        }
        self.next_send = Some(next);
    }

    fn next_wake(&self) -> Option<Instant> {
        self.next_send.filter(|_| self.done.is_some())
    }

    fn done(&self) -> bool {
        self.done.is_none()
    }
}
