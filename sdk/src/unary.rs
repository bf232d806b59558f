//! The unary call path without a per-call allocation: a pooled receiver
//! shared by the caller and the core, and response bodies carved from a
//! per-core block.
//!
//! * [`UnaryCell`]: one call's cancel handle, outcome and waiting task. The
//!   core holds an `Arc` of it while the call is open; once the caller took
//!   the outcome and the core let go (`Arc::get_mut`), the cell goes back
//!   to its thread's pool for the next call ([`CELL_POOL`] kept per
//!   thread).
//! * [`copy_out`]: a response body is copied once, out of the core's
//!   receive buffer (which the next datagram reuses), into a block shared
//!   with the core's other recent small responses, as hyper does with its
//!   read buffer: no allocation until a block is used up, and a block is
//!   reused once every response carved from it was dropped.
//!
//! Cancellation: the core sets the handle and then checks `dropped`; the
//! future's drop sets `dropped` and then checks the handle (both SeqCst),
//! so a future dropped while the call opens is cancelled by at least one
//! of them (cancel is idempotent).

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use atomic_waker::AtomicWaker;
use bytes::{Bytes, BytesMut};
use net_engine::{CancelHandle, UnaryEvents};
use net_proto::{Cause, Status};

use crate::call::Ended;

/// Cells a thread keeps for reuse (enough for 1 024 calls in flight from
/// one runtime thread before a call allocates again).
const CELL_POOL: usize = 1024;

/// Response bodies up to this size share blocks; larger ones get their own
/// allocation (the copy then costs more than the allocation).
const SHARED_MAX: usize = 1024;

/// The size of a shared block of response bodies: what one retained small
/// response can keep alive at most.
const BLOCK: usize = 16 * 1024;

thread_local! {
    static CELLS: RefCell<Vec<Arc<UnaryCell>>> = const { RefCell::new(Vec::new()) };
    static BLOCK_BUF: RefCell<BytesMut> = RefCell::new(BytesMut::new());
}

/// One unary call's state, shared by the core (as its [`UnaryEvents`]) and
/// the caller's future. Lock-free: the outcome is set once ([`OnceLock`]),
/// the waiting task is handed over through an [`AtomicWaker`] (register,
/// then re-check the outcome, so a completion between the two is not
/// missed).
#[derive(Default)]
pub(crate) struct UnaryCell {
    handle: OnceLock<CancelHandle>,
    dropped: AtomicBool,
    /// The outcome, once the call ended.
    ended: OnceLock<Ended>,
    /// The core let go of the call without an outcome.
    abandoned: AtomicBool,
    waker: AtomicWaker,
}

impl UnaryCell {
    /// A cell from this thread's pool, or a new one.
    pub(crate) fn take() -> Arc<UnaryCell> {
        CELLS
            .try_with(|p| p.borrow_mut().pop())
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    /// Back to this thread's pool, if nobody else holds it any more (the
    /// core dropped its reference; otherwise it is freed when it does).
    pub(crate) fn recycle(mut cell: Arc<UnaryCell>) {
        let Some(c) = Arc::get_mut(&mut cell) else {
            return;
        };
        c.handle.take();
        c.ended.take();
        *c.dropped.get_mut() = false;
        *c.abandoned.get_mut() = false;
        c.waker.take();
        // During thread teardown the pool is gone: the cell is just freed.
        let _ = CELLS.try_with(|p| {
            let mut p = p.borrow_mut();
            if p.len() < CELL_POOL {
                p.push(cell);
            }
        });
    }

    /// The outcome if the call is over: `Err` if the core let go untold.
    fn outcome(&self) -> Option<Result<Ended, ()>> {
        if let Some(e) = self.ended.get() {
            return Some(Ok(e.clone()));
        }
        self.abandoned.load(Ordering::Acquire).then_some(Err(()))
    }

    fn end(&self, ended: Ended) {
        if self.ended.set(ended).is_err() {
            return; // an outcome is delivered once
        }
        // Woken together with this pass's other completions; nobody waits
        // if the future was dropped (it cancelled the call).
        if let Some(w) = self.waker.take() {
            net_engine::wake_later(w);
        }
    }
}

impl UnaryEvents for UnaryCell {
    fn opened(&self, cancel: CancelHandle) {
        if self.handle.set(cancel).is_ok() && self.dropped.load(Ordering::SeqCst) {
            if let Some(h) = self.handle.get() {
                h.cancel();
            }
        }
    }

    fn complete(&self, status: Status, payload: &[u8]) {
        self.end(Ended::Answered(status, copy_out(payload)));
    }

    fn failed(&self, status: Status, cause: Cause) {
        self.end(Ended::Failed(status, cause));
    }

    /// Ends the future with `Dropped` rather than leave it waiting forever.
    fn abandoned(&self) {
        self.abandoned.store(true, Ordering::Release);
        self.waker.wake();
    }
}

/// The future's side of a unary call: its outcome when the core delivers
/// it; `Err` if the core let go without one (or when polled again after
/// it resolved). Dropping it before the outcome cancels the call at the
/// callee.
pub(crate) struct UnaryOutcome(Option<Arc<UnaryCell>>);

impl UnaryOutcome {
    pub(crate) fn new(cell: Arc<UnaryCell>) -> Self {
        UnaryOutcome(Some(cell))
    }
}

impl Future for UnaryOutcome {
    type Output = Result<Ended, ()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(cell) = &self.0 else {
            return Poll::Ready(Err(()));
        };
        let out = match cell.outcome() {
            Some(out) => out,
            None => {
                cell.waker.register(cx.waker());
                match cell.outcome() {
                    Some(out) => out,
                    None => return Poll::Pending,
                }
            }
        };
        if let Some(cell) = self.0.take() {
            UnaryCell::recycle(cell);
        }
        Poll::Ready(out)
    }
}

impl Drop for UnaryOutcome {
    /// Before the outcome: cancels the call (the core still holds the
    /// cell, so it is not recycled).
    fn drop(&mut self) {
        let Some(cell) = self.0.take() else {
            return;
        };
        if cell.outcome().is_some() {
            return; // the call is over: nothing to cancel
        }
        cell.dropped.store(true, Ordering::SeqCst);
        if let Some(h) = cell.handle.get() {
            h.cancel();
        }
    }
}

/// `payload`, copied out of the core's receive buffer: into the current
/// shared block when small (no allocation until the block is used up),
/// into its own buffer otherwise.
pub(crate) fn copy_out(payload: &[u8]) -> Bytes {
    if payload.is_empty() {
        return Bytes::new();
    }
    if payload.len() > SHARED_MAX {
        return Bytes::copy_from_slice(payload);
    }
    BLOCK_BUF
        .try_with(|b| {
            let mut b = b.borrow_mut();
            if b.capacity() - b.len() < payload.len() {
                // Reuses the block in place when every body carved from it
                // was dropped; otherwise starts a new one.
                b.reserve(BLOCK);
            }
            b.extend_from_slice(payload);
            b.split().freeze()
        })
        .unwrap_or_else(|_| Bytes::copy_from_slice(payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_bodies_share_a_block_that_is_reused_once_dropped() {
        let a = copy_out(b"first");
        let b = copy_out(b"second");
        assert_eq!((&a[..], &b[..]), (&b"first"[..], &b"second"[..]));
        // Adjacent in one block: the second starts where the first ends.
        assert_eq!(a.as_ptr().wrapping_add(a.len()), b.as_ptr());
        let start = a.as_ptr();
        drop((a, b));
        // Use up the rest of the block, dropping each body at once.
        loop {
            let left = BLOCK_BUF.with(|b| b.borrow().capacity());
            if left < 8 {
                break;
            }
            drop(copy_out(&vec![7; left.min(SHARED_MAX)]));
        }
        // Nothing carved from it is alive: the next body reclaims it.
        let next = copy_out(b"again!!!");
        assert_eq!(&next[..], b"again!!!");
        assert_eq!(next.as_ptr(), start, "block reused in place");
    }

    #[test]
    fn large_and_empty_bodies_are_their_own() {
        assert!(copy_out(b"").is_empty());
        let big = vec![3u8; SHARED_MAX + 1];
        assert_eq!(&copy_out(&big)[..], &big[..]);
    }

    #[test]
    fn a_cell_returns_to_the_pool_only_when_unique() {
        let cell = UnaryCell::take();
        let core_ref = cell.clone();
        UnaryCell::recycle(cell);
        let fresh = UnaryCell::take();
        assert!(
            !Arc::ptr_eq(&fresh, &core_ref),
            "a shared cell is not pooled"
        );
        let again = core_ref.clone();
        drop(core_ref);
        UnaryCell::recycle(again);
        UnaryCell::recycle(fresh);
        assert_eq!(CELLS.with(|p| p.borrow().len()), 2);
    }

    #[test]
    fn an_outcome_racing_the_registration_is_not_missed() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        for i in 0..2_000u32 {
            let cell = UnaryCell::take();
            let core = cell.clone();
            let t = std::thread::spawn(move || {
                for _ in 0..i % 64 {
                    std::hint::spin_loop();
                }
                core.complete(Status::OK, &i.to_be_bytes());
            });
            let out = rt.block_on(UnaryOutcome::new(cell));
            t.join().expect("core thread");
            assert!(
                matches!(out, Ok(Ended::Answered(s, b)) if s.is_ok() && b[..] == i.to_be_bytes()),
                "call {i}"
            );
        }
    }

    #[test]
    fn abandoned_ends_the_future() {
        let cell = UnaryCell::take();
        cell.abandoned();
        let waker = std::task::Waker::noop();
        let mut out = UnaryOutcome::new(cell);
        let mut cx = Context::from_waker(waker);
        assert!(matches!(
            Pin::new(&mut out).poll(&mut cx),
            Poll::Ready(Err(()))
        ));
    }
}
