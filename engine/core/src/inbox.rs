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
//!
//! Two queues share that protocol. New work (calls, registrations) goes to a
//! bounded queue and is refused when it is full: the producer learns
//! `Backpressure` and can act — or, from async code, waits for room
//! ([`Inbox::room`]): each pass the core wakes as many waiters as it has
//! free slots. Commands about a call that already exists
//! (its answer, stream messages, half-close, cancel, release) go to the
//! *call queue*, which never refuses: dropping an answer would leave its
//! caller waiting, and what it can hold is bounded elsewhere — at most one
//! answer, finish, cancel and release per open call (open calls are bounded
//! by call credit and `max_in_flight`), and stream messages by each call's
//! [`Flow`](crate::flow::Flow) credit.

use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use crossbeam_queue::{ArrayQueue, SegQueue};
use net_crypto::NodeId;
use net_io::Waker;
use net_proto::{CallId, CallKind, Cause, ServiceId, SessionId, Status};

use crate::flow::Flow;
use crate::handler::{CoreApp, Handler};
use crate::stats::CoreStats;
use crate::waiter::{Body, Waiter};

/// A call to open from a core, and who waits for its outcome (the core's
/// backlog holds these too, until the call has a session and credit).
pub(crate) struct CallRequest {
    pub peer: NodeId,
    pub service: ServiceId,
    pub kind: CallKind,
    pub deadline: Option<Instant>,
    pub payload: Body,
    pub waiter: Waiter,
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
        /// The call's flow, whose credit `payload` holds (it may already be
        /// gone from the core's map when the message arrives).
        flow: Arc<Flow>,
    },
    /// Caller half-close.
    Finish {
        session: SessionId,
        call: CallId,
    },
    /// The application read `msgs` more messages (`bytes` in total) of a
    /// call's incoming stream: the peer may get more credit.
    Consumed {
        session: SessionId,
        call: CallId,
        msgs: u64,
        bytes: u64,
    },
    /// Caller gives up.
    Cancel {
        session: SessionId,
        call: CallId,
    },
    /// The last [`Responder`](crate::Responder) of an async call is gone:
    /// its handler stopped running (answered, failed, or cancelled).
    Released {
        session: SessionId,
        call: CallId,
        service: ServiceId,
        /// Dropped while unwinding from a panic.
        panicked: bool,
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
    /// Run a future on this core (`MeshNode::spawn_on_core`).
    Spawn(crate::local::CoreFuture),
    Shutdown {
        deadline: Instant,
    },
}

/// A core's inbox. Shared between the core and any number of producers.
pub(crate) struct Inbox {
    queue: ArrayQueue<Command>,
    /// Commands about existing calls; never refuses (see the module docs).
    calls: SegQueue<Command>,
    parked: AtomicBool,
    waker: Waker,
    /// Wakes actually sent (each is a syscall by the producer).
    pub wakes: AtomicU64,
    /// The core exited: nothing will take commands any more.
    closed: AtomicBool,
    /// Producers waiting for room in `queue` (the backpressure path only,
    /// so a lock is fine here), and how many: the core reads the count
    /// each pass and takes the lock only when it is not zero.
    room: Mutex<std::collections::VecDeque<std::task::Waker>>,
    room_waiters: AtomicUsize,
    /// Times a producer found `queue` full and waited for room.
    pub room_waits: AtomicU64,
}

impl Inbox {
    pub fn new(capacity: usize, waker: Waker) -> Self {
        Inbox {
            queue: ArrayQueue::new(capacity.max(16)),
            calls: SegQueue::new(),
            parked: AtomicBool::new(false),
            waker,
            wakes: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            room: Mutex::new(std::collections::VecDeque::new()),
            room_waiters: AtomicUsize::new(0),
            room_waits: AtomicU64::new(0),
        }
    }

    /// Producer side, after `push` found the queue full: `Ready` once there
    /// is room again (or the core closed: the next push says so), else
    /// registers the task to be woken by [`Self::wake_room`]. Dekker-style
    /// like parking: the waiter counts itself and then re-checks, the core
    /// frees a slot and then reads the count (fences in between), so a
    /// waiter cannot miss the slot a pass freed.
    pub fn room(&self, cx: &mut Context<'_>) -> Poll<()> {
        if !self.queue.is_full() || self.is_closed() {
            return Poll::Ready(());
        }
        {
            let mut w = self.room.lock().unwrap_or_else(|e| e.into_inner());
            w.push_back(cx.waker().clone());
            self.room_waiters.store(w.len(), Ordering::SeqCst);
        }
        self.room_waits.fetch_add(1, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        if !self.queue.is_full() || self.is_closed() {
            // Room appeared meanwhile; the registered waker may fire once
            // more, which only costs a poll.
            return Poll::Ready(());
        }
        Poll::Pending
    }

    /// Core side, once per pass: wakes as many producers waiting for room
    /// as there are free slots, oldest first (waking all of them would have
    /// thousands race for a few slots: a burst of 4 096 calls against 16
    /// slots counted 73 069 waits that way). Every pass calls it, not only
    /// those that took commands, so room left by woken producers that gave
    /// up is offered again. One fence and one atomic load when nobody waits.
    pub fn wake_room(&self) {
        fence(Ordering::SeqCst);
        if self.room_waiters.load(Ordering::SeqCst) == 0 {
            return;
        }
        let free = self.queue.capacity() - self.queue.len();
        self.wake_waiters(free);
    }

    /// Wakes up to `n` producers waiting for room, oldest first.
    fn wake_waiters(&self, n: usize) {
        if n == 0 {
            return;
        }
        let waking: Vec<std::task::Waker> = {
            let mut w = self.room.lock().unwrap_or_else(|e| e.into_inner());
            let k = n.min(w.len());
            let taken = w.drain(..k).collect();
            self.room_waiters.store(w.len(), Ordering::SeqCst);
            taken
        };
        for w in waking {
            w.wake();
        }
    }

    /// Queues a command; gives it back if the inbox is full (the caller
    /// reports backpressure rather than blocking or growing memory).
    pub fn push(&self, cmd: Command) -> Result<(), Command> {
        if self.is_closed() {
            return Err(cmd);
        }
        self.queue.push(cmd)?;
        self.wake();
        if self.is_closed() {
            // The core closed between the check and the push; it may
            // already have failed what it found, so fail the rest here.
            self.fail_queued();
        }
        Ok(())
    }

    /// Whether the core exited.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Core side, on exit: refuse further commands (and release producers
    /// waiting for room: their next push fails with the core closed).
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.wake_waiters(usize::MAX);
    }

    /// Fails every queued command that waits for an answer (calls get
    /// `Unavailable`, acks are dropped so their waiters stop); the rest
    /// concern calls that already ended. Safe from any thread.
    pub fn fail_queued(&self) {
        while let Some(cmd) = self.pop() {
            if let Command::Call(req) = cmd {
                req.waiter.fail(Status::UNAVAILABLE, Cause::Shutdown);
            }
        }
    }

    /// Queues a command about an existing call (or a shutdown); never
    /// refuses. See the module docs for why its length is bounded.
    pub fn push_call(&self, cmd: Command) {
        self.calls.push(cmd);
        self.wake();
        if self.is_closed() {
            self.fail_queued();
        }
    }

    /// Wakes the core if it is parked (an on-core task was woken).
    pub fn nudge(&self) {
        self.wake();
    }

    fn wake(&self) {
        if self.parked.swap(false, Ordering::SeqCst) {
            self.wakes.fetch_add(1, Ordering::Relaxed);
            self.waker.wake();
        }
    }

    /// Core side: next command, if any; call commands first (they finish
    /// work already admitted).
    pub fn pop(&self) -> Option<Command> {
        self.calls.pop().or_else(|| self.queue.pop())
    }

    /// Core side: announce the intent to park. Returns false (and withdraws)
    /// if work arrived meanwhile, in which case the core must not block.
    pub fn prepare_park(&self) -> bool {
        if self.room_waiters.load(Ordering::SeqCst) > 0 {
            // The queue has room and producers still wait for it (those
            // woken last pass may have given up): wake them all rather than
            // sleep on them.
            self.wake_waiters(usize::MAX);
            return false;
        }
        self.parked.store(true, Ordering::SeqCst);
        if self.queue.is_empty() && self.calls.is_empty() {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::task::{Wake, Waker};

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn filler() -> Command {
        Command::Announce {
            peer: None,
            payload: Vec::new(),
        }
    }

    fn full_inbox() -> Inbox {
        let drv = net_io::MemNet::new()
            .bind("127.0.0.1:0".parse().unwrap())
            .unwrap();
        let inbox = Inbox::new(16, drv.waker());
        while inbox.push(filler()).is_ok() {}
        inbox
    }

    #[test]
    fn a_producer_waits_for_room_and_the_core_wakes_it() {
        let inbox = full_inbox();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(inbox.room(&mut cx).is_pending(), "full: the producer waits");
        assert_eq!(inbox.room_waits.load(Ordering::SeqCst), 1);
        assert_eq!(count.0.load(Ordering::SeqCst), 0);
        assert!(inbox.pop().is_some());
        inbox.wake_room();
        assert_eq!(
            count.0.load(Ordering::SeqCst),
            1,
            "a pass that took commands wakes it"
        );
        assert!(inbox.room(&mut cx).is_ready());
        assert!(inbox.push(filler()).is_ok());
        inbox.wake_room();
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "woken once per wait");
    }

    #[test]
    fn closing_releases_producers_waiting_for_room() {
        let inbox = full_inbox();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(inbox.room(&mut cx).is_pending());
        inbox.close();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert!(inbox.room(&mut cx).is_ready());
        assert!(inbox.push(filler()).is_err(), "closed: the push is refused");
    }
}
