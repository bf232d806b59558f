//! Work for a core from other threads: a bounded lock-free queue plus the
//! park/wake protocol.
//!
//! Protocol (a Dekker-style handshake on two SeqCst operations):
//! * the core, before blocking in the kernel, sets `parked` and then checks
//!   the queue; it blocks only if the queue is still empty;
//! * a producer pushes and then swaps `parked` to false; only if it was set
//!   does it wake the core (an eventfd write or equivalent).
//!
//! Either the core sees the push, or the producer sees `parked`: a command
//! can never sit unnoticed while the core sleeps, and a busy (spinning) core
//! costs producers no syscall at all. At most one wake is sent per park.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use crossbeam_queue::ArrayQueue;
use net_crypto::NodeId;
use net_io::Waker;
use net_proto::{CallId, CallKind, ServiceId, SessionId, Status};

use crate::handler::{CallEvents, CoreApp, Handler};
use crate::stats::CoreStats;

/// A call to open from a core.
pub(crate) struct CallRequest {
    pub peer: NodeId,
    pub service: ServiceId,
    pub kind: CallKind,
    pub deadline: Option<Instant>,
    pub payload: Vec<u8>,
    pub events: Box<dyn CallEvents>,
}

/// One unit of work for a core.
pub(crate) enum Command {
    Call(CallRequest),
    /// Answer to a call delivered to an async handler.
    Respond {
        session: SessionId,
        call: CallId,
        status: Status,
        payload: Vec<u8>,
    },
    /// A stream message on an open call (either role).
    Send {
        session: SessionId,
        call: CallId,
        payload: Vec<u8>,
    },
    /// Caller half-close.
    Finish {
        session: SessionId,
        call: CallId,
    },
    /// Caller gives up.
    Cancel {
        session: SessionId,
        call: CallId,
    },
    /// Installs a handler; `ack` is signalled once it is live on this core.
    Register {
        service: ServiceId,
        handler: Handler,
        max_in_flight: u32,
        /// Name and allow-list, announced as `nrpc:<name>`.
        advert: crate::trust::Advert,
        ack: std::sync::mpsc::SyncSender<()>,
    },
    /// Removes a handler; `ack` is signalled once it is gone on this core.
    Unregister {
        service: ServiceId,
        ack: std::sync::mpsc::SyncSender<()>,
    },
    Stats(std::sync::mpsc::SyncSender<CoreStats>),
    /// Sends an ANNOUNCE payload to `peer`'s session on this core, or to
    /// every established session.
    Announce {
        peer: Option<NodeId>,
        payload: Vec<u8>,
    },
    /// Run an application on this core (engine-mode benchmarks).
    App(Box<dyn CoreApp>),
    Shutdown {
        deadline: Instant,
    },
}

/// A core's inbox. Shared between the core and any number of producers.
pub(crate) struct Inbox {
    queue: ArrayQueue<Command>,
    parked: AtomicBool,
    waker: Waker,
    /// Wakes actually sent (each is a syscall by the producer).
    pub wakes: AtomicU64,
}

impl Inbox {
    pub fn new(capacity: usize, waker: Waker) -> Self {
        Inbox {
            queue: ArrayQueue::new(capacity.max(16)),
            parked: AtomicBool::new(false),
            waker,
            wakes: AtomicU64::new(0),
        }
    }

    /// Queues a command; gives it back if the inbox is full (the caller
    /// reports backpressure rather than blocking or growing memory).
    pub fn push(&self, cmd: Command) -> Result<(), Command> {
        self.queue.push(cmd)?;
        if self.parked.swap(false, Ordering::SeqCst) {
            self.wakes.fetch_add(1, Ordering::Relaxed);
            self.waker.wake();
        }
        Ok(())
    }

    /// Core side: next command, if any.
    pub fn pop(&self) -> Option<Command> {
        self.queue.pop()
    }

    /// Core side: announce the intent to park. Returns false (and withdraws)
    /// if work arrived meanwhile, in which case the core must not block.
    pub fn prepare_park(&self) -> bool {
        self.parked.store(true, Ordering::SeqCst);
        if self.queue.is_empty() {
            return true;
        }
        self.parked.store(false, Ordering::SeqCst);
        false
    }

    /// Core side: back from the kernel.
    pub fn unpark(&self) {
        self.parked.store(false, Ordering::SeqCst);
    }
}
