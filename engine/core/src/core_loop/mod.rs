//! One core's event loop.
//!
//! Per iteration: harvest a batch of datagrams → feed the endpoint → drain
//! the inbox → run due timers → dispatch events (sync handlers inline) →
//! write every outgoing datagram into one transmit batch → flush. When an
//! iteration finds no work the loop keeps polling for `spin`, then parks in
//! the kernel until a datagram, a timer or an inbox wake (see
//! [`crate::inbox`]). All state here is owned by the core's thread: no locks.
//!
//! [`Core`]'s fields are private to this module and its children, one per
//! seam: `commands` (the inbox), `events` (the endpoint's events),
//! `dispatch` (calls this core makes), `calls` (flows, held stream items,
//! async handlers), `app` (the on-core app), `pair` (the virtual-time test
//! harness). Other modules build a core with [`Core::new`] and run it.

mod app;
mod calls;
mod commands;
mod dispatch;
mod events;
#[cfg(test)]
mod pair;

use std::sync::Arc;
use std::time::{Duration, Instant};

use net_io::Driver;
use net_proto::{Endpoint, FastMap, ServiceId};

use crate::handler::Handler;
use crate::inbox::Inbox;
use crate::stats::CoreStats;
pub(crate) use crate::waiter::Waiter;

/// Outgoing items of one call held back by flow control, in order: a
/// callee's answer waits behind the stream messages queued before it.
pub(crate) enum Held {
    Msg(Vec<u8>),
    Finish,
    Respond(net_proto::Status, Vec<u8>),
}

/// A service registered on this core.
#[derive(Clone)]
pub(crate) struct Service {
    pub handler: Handler,
    /// The name it was registered under (for logs).
    pub name: Arc<str>,
    /// Handlers of this service that may run at once on this core.
    pub max_in_flight: u32,
}

/// What one [`Core::turn`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pass {
    /// It did something; the next pass should poll again at once.
    Busy,
    /// Nothing to do: the loop may park after its spin.
    Idle,
    /// Shutdown finished: the loop exits.
    Exit,
}

/// Panics in application callbacks a core survives before it stops.
pub(crate) const MAX_CORE_PANICS: u64 = 1000;

/// Inbox commands one loop pass takes at most.
const MAX_COMMANDS_PER_PASS: usize = 4096;

/// Everything one core owns. Only this core's thread touches it (other
/// threads reach it through `inbox`), so nothing here is locked. The
/// modules that act on it: `commands` (the inbox), `events` (the
/// endpoint's events), `dispatch` (calls this core makes), `calls` (flows,
/// held stream items, async handlers), `app` (the on-core app) and this
/// module (the pass itself).
pub(crate) struct Core {
    /// Which core of the node this is (names its sessions' receiver
    /// indices and its log lines).
    index: usize,
    /// This core's socket (or in-memory port).
    driver: Box<dyn Driver>,
    /// The protocol state machine: every session this core owns.
    ep: Endpoint,
    /// Commands from other threads; wakes the driver when the core parks.
    inbox: Arc<Inbox>,
    /// How long an idle loop keeps polling before it parks.
    spin: Duration,
    /// Yield the CPU after each idle pass while spinning
    /// (`MeshNodeConfig::with_spin_yield`).
    spin_yield: bool,
    /// The calls this core makes, their backlog and sessions.
    own: dispatch::OwnCalls,
    /// Calls other threads act on: flows, held stream items, served
    /// sinks, running async handlers.
    handoffs: calls::Handoffs,
    /// The services registered on this core.
    handlers: FastMap<ServiceId, Service>,
    /// The on-core app, if one runs.
    app: app::AppSlot,
    /// Futures spawned on this core (`MeshNode::spawn_on_core`).
    tasks: crate::local::LocalTasks,
    /// Response buffer for sync handlers, reused.
    out: Vec<u8>,
    /// Counters (a snapshot answers `MeshNode::stats`).
    stats: CoreStats,
    /// Set by shutdown: the deadline by which the core closes its sessions
    /// and exits (earlier if nothing is in flight).
    draining: Option<Instant>,
    /// This core's copy of the trust state: its announcement, the callee
    /// gate, verification of peers' announcements.
    trust: crate::trust::CoreTrust,
    /// Where this core reports its failure detector's changes.
    board: Arc<crate::peers::PeerBoard>,
}

/// What a core is built from (the rest starts empty).
pub(crate) struct CoreParts {
    pub index: usize,
    pub driver: Box<dyn Driver>,
    pub ep: Endpoint,
    pub inbox: Arc<Inbox>,
    pub spin: Duration,
    pub spin_yield: bool,
    pub peers: FastMap<net_crypto::NodeId, crate::config::PeerConfig>,
    pub handlers: FastMap<ServiceId, Service>,
    pub trust: crate::trust::CoreTrust,
    pub board: Arc<crate::peers::PeerBoard>,
}

impl Core {
    /// A core with no calls yet.
    pub fn new(p: CoreParts) -> Self {
        Core {
            index: p.index,
            driver: p.driver,
            ep: p.ep,
            spin: p.spin,
            spin_yield: p.spin_yield,
            own: dispatch::OwnCalls::new(p.peers),
            handoffs: calls::Handoffs::default(),
            handlers: p.handlers,
            app: app::AppSlot::default(),
            tasks: crate::local::LocalTasks::new(p.inbox.clone()),
            inbox: p.inbox,
            out: Vec::new(),
            stats: CoreStats::default(),
            draining: None,
            trust: p.trust,
            board: p.board,
        }
    }

    /// Where other threads push this core's commands.
    pub fn inbox(&self) -> &Arc<Inbox> {
        &self.inbox
    }

    /// This core's driver.
    pub fn driver(&self) -> &dyn Driver {
        &*self.driver
    }

    /// Runs until shutdown completes or the driver fails irrecoverably.
    ///
    /// Handlers run under their own panic guards (a panicking handler fails
    /// its call, see `events`); this is the last line for panics in other
    /// application callbacks (call sinks, on-core apps): the pass is
    /// abandoned, counted and logged, and the core goes on — up to
    /// [`MAX_CORE_PANICS`], after which it stops and fails what it holds
    /// rather than spin on a state that keeps panicking.
    pub fn run(mut self) {
        let mut idle_since: Option<Instant> = None;
        crate::local::enter(node_key(&self.board), self.inbox.clone());
        loop {
            let pass = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.iteration(&mut idle_since)
            }));
            match pass {
                Ok(Ok(true)) => {}
                Ok(Ok(false)) => break,
                Ok(Err(e)) => {
                    tracing::error!(core = self.index, error = %e, "driver failed; core stops");
                    break;
                }
                Err(_) => {
                    self.stats.core_panics += 1;
                    tracing::error!(
                        core = self.index,
                        panics = self.stats.core_panics,
                        "a callback panicked on the core; the loop pass was abandoned"
                    );
                    if self.stats.core_panics >= MAX_CORE_PANICS {
                        tracing::error!(
                            core = self.index,
                            "too many panics; core stops and fails its calls"
                        );
                        break;
                    }
                }
            }
        }
        self.fail_all();
        crate::local::leave();
    }

    /// One pass of the loop: harvest (parking when idle), then [`Self::turn`]
    /// at the time the harvest returned. Returns Ok(false) when the core
    /// should exit. The clock is read here and only here: everything below
    /// runs on the `now` it is given.
    fn iteration(&mut self, idle_since: &mut Option<Instant>) -> std::io::Result<bool> {
        let n = self.receive(*idle_since)?;
        let now = Instant::now();
        crate::local::set_pass_time(now);
        let pass = self.turn(now, n)?;
        *idle_since = match pass {
            Pass::Exit => return Ok(false),
            Pass::Busy => None,
            Pass::Idle => {
                if self.spin_yield {
                    // Idle and still spinning: let a thread that shares this
                    // CPU (a caller about to issue work) run first.
                    std::thread::yield_now();
                }
                Some(idle_since.unwrap_or(now))
            }
        };
        Ok(true)
    }

    /// Everything one pass does after the harvest, at `now`: feeds the `n`
    /// harvested datagrams to the endpoint, takes commands, runs due timers,
    /// dispatches events and transmits. Never reads the clock and never
    /// blocks, so a test can drive a core on virtual time.
    pub(crate) fn turn(&mut self, now: Instant, n: usize) -> std::io::Result<Pass> {
        self.stats.loops += 1;
        let mut work = n > 0;
        for i in 0..n {
            let (src, buf) = self.driver.rx(i);
            self.ep.handle(now, src, buf);
        }
        work |= self.tasks_and_commands(now);
        if self.ep.poll_timeout().is_some_and(|t| t <= now) {
            self.ep.handle_timeout(now);
            work = true;
        }
        work |= self.dispatch_events(now);
        self.flush_wakes();
        if self.tasks.has_ready() {
            // Answers just completed woke on-core tasks: let them call
            // again now, so their calls leave in this pass's transmit
            // with the acknowledgements, not in a datagram of their own.
            self.tasks_and_commands(now);
            self.dispatch_events(now);
            self.flush_wakes();
        }
        self.trust.flush(now);
        if let Some(bytes) = self.trust.poll(now) {
            self.announce_all(now, &bytes);
        }
        work |= self.transmit(now)?;
        if let Some(deadline) = self.draining {
            if self.drained() || now >= deadline {
                self.close_all(now)?;
                return Ok(Pass::Exit);
            }
        }
        Ok(if work { Pass::Busy } else { Pass::Idle })
    }

    /// Wakes the callers whose calls completed in this pass, together
    /// (`local::wake_later`), and counts the batch.
    fn flush_wakes(&mut self) {
        let n = crate::local::flush_wakes() as u64;
        if n > 0 {
            self.stats.completion_wakes += n;
            self.stats.wake_batches += 1;
        }
    }

    /// Polls the woken on-core tasks, then takes inbox commands (so calls
    /// the tasks just made are opened in the same pass); true if anything
    /// was done.
    fn tasks_and_commands(&mut self, now: Instant) -> bool {
        let (polled, panics) = self.tasks.poll();
        self.stats.task_polls += polled as u64;
        self.stats.task_panics += panics;
        let mut work = polled > 0;
        // Bounded per pass: producers that never stop must not starve the
        // socket and the timers.
        for _ in 0..MAX_COMMANDS_PER_PASS {
            let Some(cmd) = self.inbox.pop() else { break };
            self.stats.commands += 1;
            self.command(now, cmd);
            work = true;
        }
        self.inbox.wake_room();
        work
    }

    /// Receives a batch: polls while busy or spinning, parks after `spin` idle.
    fn receive(&mut self, idle_since: Option<Instant>) -> std::io::Result<usize> {
        let now = Instant::now();
        let spinning = idle_since.is_none_or(|t| now.saturating_duration_since(t) < self.spin);
        if spinning || !self.inbox.prepare_park() {
            return self.driver.recv(Some(Duration::ZERO));
        }
        if self.tasks.has_ready() {
            // Woken before `prepare_park` marked the core parked: the
            // waker saw it running and sent no wake (see `local`).
            self.inbox.unpark();
            return self.driver.recv(Some(Duration::ZERO));
        }
        let timeout = self.next_wake().map(|t| t.saturating_duration_since(now));
        self.stats.parks += 1;
        let n = self.driver.recv(timeout);
        self.inbox.unpark();
        n
    }

    /// The earliest time a pass has work without any input: a protocol
    /// timer, the shutdown deadline, the on-core app, the trust layer.
    pub(crate) fn next_wake(&mut self) -> Option<Instant> {
        let extras = [self.draining, self.app.next_wake(), self.trust.next_wake()];
        let mut wake_at = self.ep.poll_timeout();
        for extra in extras.into_iter().flatten() {
            wake_at = Some(wake_at.map_or(extra, |t| t.min(extra)));
        }
        wake_at
    }

    /// Writes every datagram the endpoint has into the driver's batch.
    fn transmit(&mut self, now: Instant) -> std::io::Result<bool> {
        let mut sent = false;
        loop {
            let Some(slot) = self.driver.tx_slot() else {
                self.driver.flush()?;
                continue;
            };
            let Some(t) = self.ep.poll_transmit(now, slot) else {
                break;
            };
            self.driver.tx_commit(t.dst, t.len);
            sent = true;
        }
        if sent {
            self.driver.flush()?;
        }
        Ok(sent)
    }

    /// Sends the node's capability announcement on every established session.
    pub(crate) fn announce_all(&mut self, now: Instant, bytes: &[u8]) {
        for s in self.ep.session_ids() {
            if self.ep.is_established(s) {
                self.announce_on(now, s, bytes);
            }
        }
    }

    /// Shutdown may finish: nothing of ours or of our callers is in flight.
    fn drained(&self) -> bool {
        self.own.is_idle() && self.handoffs.is_idle() && self.ep.call_count() == 0
    }

    /// Sends CLOSE on every session and flushes.
    fn close_all(&mut self, now: Instant) -> std::io::Result<()> {
        for s in self.ep.session_ids() {
            // Listed just above, so it exists: nothing can fail here.
            let closed = self.ep.close(now, s, 0);
            debug_assert!(closed.is_ok(), "{closed:?}");
        }
        self.dispatch_events(now);
        self.transmit(now)?;
        Ok(())
    }

    /// Completes everything still waiting with `UNAVAILABLE` (core exiting),
    /// ends every flow (remote senders and handlers learn at once) and
    /// closes the inbox, failing calls still queued in it.
    fn fail_all(&mut self) {
        let status = net_proto::Status::UNAVAILABLE;
        self.inbox.close();
        for w in self.own.drain_waiters() {
            w.fail(status, net_proto::Cause::Shutdown);
        }
        self.handoffs.end_all(status);
        self.inbox.fail_queued();
        self.tasks.clear();
    }
}

/// The key that tells this node's cores from other nodes' in the same
/// process (`local::current_inbox`): its peer board's address.
pub(crate) fn node_key(board: &Arc<crate::peers::PeerBoard>) -> usize {
    Arc::as_ptr(board) as usize
}
