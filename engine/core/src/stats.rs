//! Per-core counters, snapshotted on request (`MeshNode::stats`).

use net_io::DriverStats;
use net_proto::EndpointStats;

/// One core's counters. Monotonic since the core started.
#[derive(Debug, Clone, Default)]
pub struct CoreStats {
    /// Core index.
    pub core: usize,
    /// Driver kind in use ("uring", "mmsg", "portable").
    pub driver: String,
    /// Syscalls, batches and datagrams as the driver counts them.
    pub io: DriverStats,
    /// Protocol counters, including drops by reason.
    pub proto: EndpointStats,
    /// Loop iterations.
    pub loops: u64,
    /// Times the loop blocked in the kernel after spinning.
    pub parks: u64,
    /// Wakes other threads sent to this core's parked loop.
    pub inbox_wakes: u64,
    /// Times a caller found this core's inbox full and waited for room
    /// ([`MeshNode::call_unary`](crate::MeshNode::call_unary)).
    pub inbox_room_waits: u64,
    /// Commands taken from the inbox.
    pub commands: u64,
    /// Requests answered inline by sync handlers.
    pub inline_handled: u64,
    /// Requests handed to async handlers.
    pub async_handled: u64,
    /// Calls this core made that completed.
    pub calls_completed: u64,
    /// Calls refused because the peer is unknown or the core is shutting down.
    pub calls_refused: u64,
    /// Sessions re-dialled at once because the peer reset the old one
    /// (it restarted).
    pub reconnects: u64,
    /// Handlers that panicked (sync or async); each call was answered `Internal`.
    pub handler_panics: u64,
    /// Async handlers that dropped their call without answering (answered `Internal`).
    pub handlers_unanswered: u64,
    /// Requests answered `Backpressure` because `max_in_flight` handlers
    /// of their service were still running on this core.
    pub handlers_busy: u64,
    /// Stream messages accepted from a sender but dropped because their call
    /// ended first; the sender's side of the call reports it (`Incomplete`).
    pub stream_msgs_dropped: u64,
    /// Caller calls whose OK outcome became `Incomplete` (a stream message
    /// they sent was not delivered).
    pub streams_incomplete: u64,
    /// Answers the core could not send because the call was already gone.
    pub answers_skipped: u64,
    /// Announcements not queued because their session had closed.
    pub announces_skipped: u64,
    /// Consumption reports that arrived after their call ended (harmless).
    pub credit_reports_late: u64,
    /// Replies to `serve`/`unserve`/`stats` whose caller had stopped
    /// waiting (it already got its timeout error).
    pub replies_unheard: u64,
    /// Panics caught on the core loop outside handlers (a pass abandoned).
    pub core_panics: u64,
    /// Polls of on-core tasks (`MeshNode::spawn_on_core`).
    pub task_polls: u64,
    /// On-core tasks that panicked (each dropped; the core went on).
    pub task_panics: u64,
    /// Spawns refused because the core held `MAX_TASKS` tasks.
    pub tasks_refused: u64,
    /// On-core tasks alive right now (a gauge, at most `MAX_TASKS`).
    pub tasks: u64,
    /// Callers woken because their call completed (`net_engine::wake_later`).
    pub completion_wakes: u64,
    /// Passes that woke such callers: each woke its completions together,
    /// so `completion_wakes / wake_batches` is the batch size.
    pub wake_batches: u64,
    /// Calls whose state this core holds right now (either role): a gauge,
    /// bounded by call credit.
    pub open_calls: u64,
    /// Gate decisions and announcements verified on this core, by outcome.
    pub trust: net_trust::TrustStats,
}

impl CoreStats {
    /// Mean datagrams per receive batch.
    pub fn mean_rx_batch(&self) -> f64 {
        ratio(self.io.rx_datagrams, self.io.rx_batches)
    }

    /// Mean datagrams per transmit batch.
    pub fn mean_tx_batch(&self) -> f64 {
        ratio(self.io.tx_datagrams, self.io.tx_batches)
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}
