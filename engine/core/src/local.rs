//! On-core tasks: futures the core loop polls itself
//! ([`MeshNode::spawn_on_core`](crate::MeshNode::spawn_on_core)), as
//! thread-per-core runtimes do, so a call made from one needs no
//! cross-thread hand-off: the call goes into this core's own inbox (taken
//! in the same pass), its response completes on this core, and the wake
//! lands in this core's ready list without a syscall.
//!
//! Contract:
//! * a task is polled only on its core's thread, once per pass while
//!   woken; a wake from any thread is never lost: the waker adds the task
//!   to the ready list and then nudges the inbox, whose park protocol
//!   ([`crate::inbox`]) makes the core either see the list or be woken;
//! * a task that panics is dropped (its own state only), counted in
//!   `CoreStats::task_panics`, and the core goes on;
//! * at most [`MAX_TASKS`] tasks live on a core; a spawn past it is refused;
//! * tasks still running when the core exits are dropped there (their call
//!   guards cancel what they had in flight).
//!
//! A task must not need a tokio runtime (no tokio timers or sockets): the
//! core is not one. `Mesh` calls, channels and plain futures work.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Wake, Waker};

use crate::inbox::Inbox;

/// A future spawned on a core.
pub type CoreFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Tasks one core holds at most (a spawn past it is refused with
/// `Backpressure`): each holds its future's memory until it ends.
pub const MAX_TASKS: usize = 65_536;

/// Ids of woken tasks, shared with their wakers (any thread).
struct Ready {
    ids: Mutex<Vec<usize>>,
    inbox: Arc<Inbox>,
}

/// One task's waker: queues the task once until it is polled again.
struct TaskWaker {
    id: usize,
    queued: AtomicBool,
    ready: Arc<Ready>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.queued.swap(true, Ordering::AcqRel) {
            return;
        }
        self.ready
            .ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(self.id);
        // After the push: a core about to park either sees the id or is
        // woken here (no syscall when it is running).
        self.ready.inbox.nudge();
    }
}

/// A spawned future and its waker.
struct Task {
    fut: CoreFuture,
    waker: Arc<TaskWaker>,
}

/// The tasks of one core. See the module docs.
pub(crate) struct LocalTasks {
    /// Slots by task id; `None` is free (listed in `free`).
    slots: Vec<Option<Task>>,
    free: Vec<usize>,
    ready: Arc<Ready>,
    /// The ready ids taken for this pass (kept to reuse its memory).
    batch: Vec<usize>,
}

impl LocalTasks {
    /// No tasks; wakes go through `inbox`.
    pub fn new(inbox: Arc<Inbox>) -> Self {
        LocalTasks {
            slots: Vec::new(),
            free: Vec::new(),
            ready: Arc::new(Ready {
                ids: Mutex::new(Vec::new()),
                inbox,
            }),
            batch: Vec::new(),
        }
    }

    /// Adds `fut`, to be polled in the next pass; false (and `fut` is
    /// dropped) if the core holds [`MAX_TASKS`] already.
    pub fn spawn(&mut self, fut: CoreFuture) -> bool {
        let id = match self.free.pop() {
            Some(id) => id,
            None if self.slots.len() < MAX_TASKS => {
                self.slots.push(None);
                self.slots.len() - 1
            }
            None => return false,
        };
        let waker = Arc::new(TaskWaker {
            id,
            queued: AtomicBool::new(false),
            ready: self.ready.clone(),
        });
        waker.wake_by_ref();
        self.slots[id] = Some(Task { fut, waker });
        true
    }

    /// Whether a task waits to be polled.
    pub fn has_ready(&self) -> bool {
        // With no task alive, a queued id is a stale wake of an ended task
        // (queued once per waker, see `TaskWaker`): nothing to poll, and no
        // lock taken on the loop's idle path.
        self.len() > 0 && !self.lock_ids().is_empty()
    }

    /// Polls every task woken since the last pass, once; returns how many
    /// were polled and how many panicked (those are dropped).
    pub fn poll(&mut self) -> (usize, u64) {
        if self.len() == 0 {
            // Every pass runs this: no task, no lock (see `has_ready`).
            return (0, 0);
        }
        {
            let mut ids = self.ready.ids.lock().unwrap_or_else(|e| e.into_inner());
            std::mem::swap(&mut *ids, &mut self.batch);
        }
        let (mut polled, mut panics) = (0, 0);
        for i in 0..self.batch.len() {
            let id = self.batch[i];
            let Some(task) = self.slots.get_mut(id).and_then(Option::as_mut) else {
                continue; // a stale wake of an ended task
            };
            task.waker.queued.store(false, Ordering::Release);
            let waker = Waker::from(task.waker.clone());
            let fut = &mut task.fut;
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                fut.as_mut().poll(&mut Context::from_waker(&waker))
            }));
            polled += 1;
            match r {
                Ok(std::task::Poll::Pending) => {}
                Ok(std::task::Poll::Ready(())) => self.end(id),
                Err(_) => {
                    panics += 1;
                    self.end(id);
                }
            }
        }
        self.batch.clear();
        (polled, panics)
    }

    /// Tasks alive.
    pub fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Drops every task (the core is exiting).
    pub fn clear(&mut self) {
        self.slots.clear();
        self.free.clear();
    }

    fn end(&mut self, id: usize) {
        self.slots[id] = None;
        self.free.push(id);
    }

    fn lock_ids(&self) -> std::sync::MutexGuard<'_, Vec<usize>> {
        self.ready.ids.lock().unwrap_or_else(|e| e.into_inner())
    }
}

thread_local! {
    /// On a core's thread: its node's key and its inbox, so calls made
    /// there (from an on-core task or a handler) go to this core.
    static CURRENT: RefCell<Option<(usize, Arc<Inbox>)>> = const { RefCell::new(None) };
    /// On a core's thread: the time its current pass started.
    static PASS_TIME: std::cell::Cell<Option<std::time::Instant>> = const { std::cell::Cell::new(None) };
    /// On a core's thread: wakers of completed calls, woken together once
    /// the pass has dispatched its events ([`wake_later`]).
    static DEFERRED: RefCell<Option<Vec<Waker>>> = const { RefCell::new(None) };
}

/// Wakes `w` — on a core's thread not at once but with every other
/// completion of this pass, after the pass dispatched its events
/// ([`flush_wakes`]): a task woken alone, on a runtime whose worker parks
/// between wakes, costs that worker a park and a wake-up per call; woken
/// together, the batch costs one. Elsewhere it wakes at once.
pub fn wake_later(w: Waker) {
    let w = DEFERRED.with(|d| match d.borrow_mut().as_mut() {
        Some(list) => {
            list.push(w);
            None
        }
        None => Some(w),
    });
    if let Some(w) = w {
        w.wake();
    }
}

/// Core side: wakes every deferred waker; returns how many.
pub(crate) fn flush_wakes() -> usize {
    let mut list = DEFERRED.with(|d| {
        d.borrow_mut()
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    });
    let n = list.len();
    for w in list.drain(..) {
        w.wake();
    }
    // Give the (now empty) list's memory back for the next pass.
    DEFERRED.with(|d| {
        if let Some(slot) = d.borrow_mut().as_mut() {
            if slot.capacity() < list.capacity() {
                *slot = list;
            }
        }
    });
    n
}

/// Records the time of the pass this core thread is running.
pub(crate) fn set_pass_time(now: std::time::Instant) {
    PASS_TIME.with(|t| t.set(Some(now)));
}

/// The time for a call's deadline: on a core's thread the time its current
/// pass started (at most one pass old: a loop pass takes microseconds, and
/// the core's timers run on that same clock), elsewhere `Instant::now()`.
/// Saves a clock read per call made from an on-core task.
pub fn now() -> std::time::Instant {
    PASS_TIME
        .with(std::cell::Cell::get)
        .unwrap_or_else(std::time::Instant::now)
}

/// Marks this thread as core `inbox` of node `key` (until [`leave`]).
pub(crate) fn enter(key: usize, inbox: Arc<Inbox>) {
    CURRENT.with(|c| *c.borrow_mut() = Some((key, inbox)));
    DEFERRED.with(|d| *d.borrow_mut() = Some(Vec::new()));
}

/// Unmarks this thread.
pub(crate) fn leave() {
    flush_wakes();
    CURRENT.with(|c| *c.borrow_mut() = None);
    PASS_TIME.with(|t| t.set(None));
    DEFERRED.with(|d| *d.borrow_mut() = None);
}

/// The inbox of the core of node `key` this thread runs, if it runs one.
pub(crate) fn current_inbox(key: usize) -> Option<Arc<Inbox>> {
    CURRENT.with(|c| {
        c.borrow()
            .as_ref()
            .filter(|(k, _)| *k == key)
            .map(|(_, i)| i.clone())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn inbox() -> Arc<Inbox> {
        let drv = net_io::MemNet::new()
            .bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
            .expect("bind");
        Arc::new(Inbox::new(16, drv.waker()))
    }

    /// Pending until `flag` is set, then done; counts its polls.
    struct Gate {
        flag: Arc<AtomicBool>,
        polls: Arc<AtomicUsize>,
        waker: Arc<Mutex<Option<Waker>>>,
    }

    impl Future for Gate {
        type Output = ();
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> std::task::Poll<()> {
            self.polls.fetch_add(1, Ordering::SeqCst);
            if self.flag.load(Ordering::SeqCst) {
                return std::task::Poll::Ready(());
            }
            *self.waker.lock().expect("lock") = Some(cx.waker().clone());
            std::task::Poll::Pending
        }
    }

    #[test]
    fn a_task_is_polled_once_per_wake_and_ends_when_ready() {
        let mut tasks = LocalTasks::new(inbox());
        let (flag, polls) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicUsize::new(0)),
        );
        let waker = Arc::new(Mutex::new(None));
        let gate = Gate {
            flag: flag.clone(),
            polls: polls.clone(),
            waker: waker.clone(),
        };
        assert!(tasks.spawn(Box::pin(gate)));
        assert_eq!(tasks.poll(), (1, 0));
        assert_eq!(tasks.poll(), (0, 0), "not woken: not polled");
        let w = waker.lock().expect("lock").clone().expect("registered");
        w.wake_by_ref();
        w.wake_by_ref();
        assert_eq!(tasks.poll(), (1, 0), "two wakes, one poll");
        flag.store(true, Ordering::SeqCst);
        std::thread::spawn(move || w.wake())
            .join()
            .expect("waker thread");
        assert!(tasks.has_ready());
        assert_eq!(tasks.poll(), (1, 0));
        assert_eq!(tasks.len(), 0);
        assert_eq!(polls.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn a_panicking_task_is_dropped_and_counted_and_others_go_on() {
        let mut tasks = LocalTasks::new(inbox());
        let ran = Arc::new(AtomicBool::new(false));
        let r = ran.clone();
        assert!(tasks.spawn(Box::pin(async { panic!("task bug") })));
        assert!(tasks.spawn(Box::pin(async move { r.store(true, Ordering::SeqCst) })));
        assert_eq!(tasks.poll(), (2, 1));
        assert!(ran.load(Ordering::SeqCst));
        assert_eq!(tasks.len(), 0);
    }

    #[test]
    fn spawns_past_the_bound_are_refused_and_a_freed_slot_is_reused() {
        let mut tasks = LocalTasks::new(inbox());
        for _ in 0..MAX_TASKS {
            assert!(tasks.spawn(Box::pin(std::future::pending())));
        }
        assert!(!tasks.spawn(Box::pin(async {})), "one past the bound");
        assert_eq!(tasks.len(), MAX_TASKS);
        tasks.end(7);
        assert!(tasks.spawn(Box::pin(async {})), "a freed slot takes a task");
        assert_eq!(tasks.slots.len(), MAX_TASKS, "the slot table did not grow");
    }

    #[test]
    fn the_current_inbox_is_only_this_node_s() {
        let i = inbox();
        assert!(current_inbox(7).is_none());
        enter(7, i.clone());
        assert!(current_inbox(7).is_some_and(|c| Arc::ptr_eq(&c, &i)));
        assert!(current_inbox(8).is_none());
        leave();
        assert!(current_inbox(7).is_none());
    }
}
