//! A closed-loop load generator that runs on a core (engine-mode benchmarks
//! and hand-off measurements): it keeps `concurrency` unary calls in flight,
//! checks every response, and records each call's latency without
//! allocating (the latency buffer is sized up front).

use std::sync::mpsc::SyncSender;
use std::time::Instant;

use net_crypto::NodeId;
use net_proto::{ServiceId, Status};

use crate::handler::{CoreApp, CoreCx};

/// What to run.
#[derive(Clone, Debug)]
pub struct LoadSpec {
    /// Callee.
    pub peer: NodeId,
    /// Service (an echo: the response must equal the request).
    pub service: ServiceId,
    /// Calls in flight.
    pub concurrency: usize,
    /// Calls to complete before reporting.
    pub total: u64,
    /// Request body size (≥ 8: the first 8 bytes carry the call's token).
    pub payload: usize,
}

/// Result of a run.
#[derive(Clone, Debug, Default)]
pub struct LoadReport {
    /// Calls answered OK with the right body.
    pub ok: u64,
    /// Calls that failed or came back wrong.
    pub errors: u64,
    /// Latency of each completed call, in nanoseconds, in completion order.
    pub latencies_ns: Vec<u64>,
    /// First call issued to last completion.
    pub elapsed_ns: u64,
}

/// The app. Install with [`MeshNode::run_on_core`](crate::MeshNode::run_on_core).
pub struct ClosedLoop {
    spec: LoadSpec,
    issued: u64,
    sent_at: Vec<Instant>,
    body: Vec<u8>,
    report: LoadReport,
    start: Option<Instant>,
    done: Option<SyncSender<LoadReport>>,
}

impl ClosedLoop {
    /// A run that reports on `done` when `spec.total` calls completed.
    pub fn new(spec: LoadSpec, done: SyncSender<LoadReport>) -> Self {
        let payload = spec.payload.max(8);
        ClosedLoop {
            sent_at: vec![Instant::now(); spec.concurrency.max(1)],
            body: vec![0xa5; payload],
            report: LoadReport {
                latencies_ns: Vec::with_capacity(spec.total as usize),
                ..LoadReport::default()
            },
            issued: 0,
            start: None,
            done: Some(done),
            spec,
        }
    }

    fn issue(&mut self, cx: &mut CoreCx<'_>, slot: usize) {
        if self.issued >= self.spec.total {
            return;
        }
        self.issued += 1;
        // Token = slot; the body carries it so the echo can be checked.
        self.body[..8].copy_from_slice(&(slot as u64).to_be_bytes());
        self.sent_at[slot] = cx.now();
        cx.call(self.spec.peer, self.spec.service, &self.body, slot as u64);
    }

    fn completed(&self) -> u64 {
        self.report.ok + self.report.errors
    }
}

impl CoreApp for ClosedLoop {
    fn start(&mut self, cx: &mut CoreCx<'_>) {
        self.start = Some(cx.now());
        for slot in 0..self.spec.concurrency.max(1) {
            self.issue(cx, slot);
        }
    }

    fn response(&mut self, cx: &mut CoreCx<'_>, token: u64, status: Status, payload: &[u8]) {
        let slot = token as usize;
        let now = Instant::now();
        let good = status.is_ok()
            && payload.len() == self.body.len()
            && payload[..8] == token.to_be_bytes()
            && payload[8..] == self.body[8..];
        if good {
            self.report.ok += 1;
        } else {
            self.report.errors += 1;
        }
        if let Some(sent) = self.sent_at.get(slot) {
            self.report
                .latencies_ns
                .push(now.saturating_duration_since(*sent).as_nanos() as u64);
        }
        if self.completed() >= self.spec.total {
            self.report.elapsed_ns = self
                .start
                .map_or(0, |s| now.saturating_duration_since(s).as_nanos() as u64);
            if let Some(tx) = self.done.take() {
                let _ = tx.try_send(std::mem::take(&mut self.report));
            }
            return;
        }
        self.issue(cx, slot);
    }

    fn done(&self) -> bool {
        self.done.is_none()
    }
}
