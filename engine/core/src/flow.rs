//! Per-call state shared between the core that owns a call and the threads
//! holding its [`CallHandle`](crate::CallHandle) or
//! [`Responder`](crate::Responder).
//!
//! It carries what a remote thread needs to know without asking the core:
//! how many stream bytes it may still queue (credit), whether and how the
//! call ended, and whether a stream message it handed over was lost.
//!
//! Invariants:
//! * bytes of stream messages queued on a core for one call (in its inbox or
//!   held back by the peer's flow control) never exceed the credit the flow
//!   started with: a sender takes [`cost`] permits before queuing and the
//!   core returns them only once the protocol took the message;
//! * once [`Flow::end`] ran, every waiting or later send fails with the
//!   call's final status, and [`Flow::ended`] resolves.

use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};

use net_proto::Status;
use tokio::sync::{Notify, Semaphore};

/// Credit charged per stream message on top of its length, so that the
/// number of queued messages is bounded too (empty messages are not free).
pub const MSG_OVERHEAD: usize = 64;

/// Credit a stream message of `len` bytes costs.
pub(crate) fn cost(len: usize) -> usize {
    len + MSG_OVERHEAD
}

const OPEN: u16 = u16::MAX;

/// Why a stream message was not queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The message exceeds the largest this stream carries (its window, the peer's `max_message`).
    #[error("stream message of {len} bytes exceeds the limit of {max}")]
    PayloadTooLarge {
        /// Offered size.
        len: usize,
        /// Largest accepted.
        max: usize,
    },
    /// No credit right now (non-blocking send): the message is handed back;
    /// retry after the peer consumed some, or use the waiting `send`.
    #[error("stream credit exhausted")]
    Full(Vec<u8>),
    /// The call ended (answered, cancelled, timed out, or its session
    /// closed) with this status: nothing more can be sent on it.
    #[error("call ended with status {0}")]
    Ended(Status),
    /// This side already finished its stream (`finish`).
    #[error("stream already finished")]
    Finished,
    /// This side of the call carries no stream (a unary request or
    /// response, or the request of a server-streaming call).
    #[error("this side of the call does not stream")]
    NotAStream,
}

/// Shared state of one call. See the module docs.
pub(crate) struct Flow {
    credit: Semaphore,
    end: AtomicU16,
    ended: Notify,
    /// Stream messages pushed towards the core and not yet taken by it.
    queued: AtomicU64,
    /// A stream message this side handed over was dropped by the core.
    lost: AtomicBool,
    /// The final answer, the half-close, the cancel: each sent at most once.
    answered: AtomicBool,
    finished: AtomicBool,
    cancelled: AtomicBool,
    max_payload: usize,
    /// This side may send stream messages.
    streams: bool,
}

impl Flow {
    /// A flow allowing `credit` bytes of queued stream messages (at least
    /// one maximal message) of at most `max_payload` bytes each, if this
    /// side `streams` at all.
    pub fn new(credit: usize, max_payload: usize, streams: bool) -> Self {
        Flow {
            credit: Semaphore::new(credit.max(cost(max_payload))),
            end: AtomicU16::new(OPEN),
            ended: Notify::new(),
            queued: AtomicU64::new(0),
            lost: AtomicBool::new(false),
            answered: AtomicBool::new(false),
            finished: AtomicBool::new(false),
            cancelled: AtomicBool::new(false),
            max_payload,
            streams,
        }
    }

    /// The final status, once the call ended.
    pub fn end_status(&self) -> Option<Status> {
        match self.end.load(Ordering::Acquire) {
            OPEN => None,
            s => Some(Status::from_raw(s)),
        }
    }

    /// Core side: the call ended with `status`; wakes everyone waiting.
    /// Only the first end counts.
    pub fn end(&self, status: Status) {
        // `OPEN` is u16::MAX, an application code no call can end with
        // (`Status::app` tops out below it).
        let raw = if status.get() == OPEN {
            Status::INTERNAL.get()
        } else {
            status.get()
        };
        if self
            .end
            .compare_exchange(OPEN, raw, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.credit.close();
            self.ended.notify_waiters();
        }
    }

    /// Resolves with the final status once the call ended.
    pub async fn ended(&self) -> Status {
        loop {
            let notified = self.ended.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(s) = self.end_status() {
                return s;
            }
            notified.await;
        }
    }

    /// Checks a message before queuing: size and end of the call.
    fn admit(&self, len: usize) -> Result<u32, SendError> {
        if !self.streams {
            return Err(SendError::NotAStream);
        }
        if len > self.max_payload {
            return Err(SendError::PayloadTooLarge {
                len,
                max: self.max_payload,
            });
        }
        if let Some(s) = self.end_status() {
            return Err(SendError::Ended(s));
        }
        if self.finished.load(Ordering::Acquire) {
            return Err(SendError::Finished);
        }
        // `max_payload` is a packet's payload: far below u32::MAX.
        Ok(u32::try_from(cost(len)).unwrap_or(u32::MAX))
    }

    /// Takes credit for a message of `len` bytes without waiting.
    pub fn try_reserve(&self, payload: Vec<u8>) -> Result<Vec<u8>, SendError> {
        let n = self.admit(payload.len())?;
        match self.credit.try_acquire_many(n) {
            Ok(p) => p.forget(),
            Err(tokio::sync::TryAcquireError::NoPermits) => return Err(SendError::Full(payload)),
            Err(tokio::sync::TryAcquireError::Closed) => return Err(self.ended_error()),
        }
        self.queued.fetch_add(1, Ordering::AcqRel);
        Ok(payload)
    }

    /// Takes credit for a message of `len` bytes, waiting for the core to
    /// pass earlier ones on.
    pub async fn reserve(&self, len: usize) -> Result<(), SendError> {
        let n = self.admit(len)?;
        match self.credit.acquire_many(n).await {
            Ok(p) => p.forget(),
            Err(_) => return Err(self.ended_error()),
        }
        self.queued.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    fn ended_error(&self) -> SendError {
        SendError::Ended(self.end_status().unwrap_or(Status::UNAVAILABLE))
    }

    /// Core side: a queued message of `len` bytes left the inbox; `taken`
    /// says whether the protocol (or the hold queue) accepted it.
    pub fn took(&self, len: usize, taken: bool) {
        self.queued.fetch_sub(1, Ordering::AcqRel);
        if !taken {
            self.refused(len);
        }
    }

    /// Core side: a message this side handed over will never be sent; its
    /// credit returns and the loss shows in [`incomplete`](Self::incomplete).
    pub fn refused(&self, len: usize) {
        self.lost.store(true, Ordering::Release);
        self.release(len);
    }

    /// Core side: the protocol took a held message; its credit returns.
    pub fn release(&self, len: usize) {
        self.credit.add_permits(cost(len));
    }

    /// Whether a message of `len` bytes would get credit now (tests).
    #[cfg(test)]
    pub fn has_room(&self, len: usize) -> bool {
        self.credit.available_permits() >= cost(len)
    }

    /// Core side: whether a message this side handed over is lost or still
    /// on its way (so an OK outcome would claim more than happened).
    pub fn incomplete(&self) -> bool {
        self.lost.load(Ordering::Acquire) || self.queued.load(Ordering::Acquire) > 0
    }

    /// Marks the final answer sent; false if it already was.
    pub fn mark_answered(&self) -> bool {
        !self.answered.swap(true, Ordering::AcqRel)
    }

    /// Whether the final answer was sent.
    pub fn answered(&self) -> bool {
        self.answered.load(Ordering::Acquire)
    }

    /// Marks the half-close sent; false if it already was.
    pub fn mark_finished(&self) -> bool {
        !self.finished.swap(true, Ordering::AcqRel)
    }

    /// Marks the cancel sent; false if it already was.
    pub fn mark_cancelled(&self) -> bool {
        !self.cancelled.swap(true, Ordering::AcqRel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credit_bounds_queued_bytes_and_end_wakes() {
        let f = Flow::new(1000, 400, true);
        let a = f.try_reserve(vec![0; 400]).unwrap();
        let b = f.try_reserve(vec![0; 400]).unwrap();
        assert!(matches!(
            f.try_reserve(vec![0; 400]),
            Err(SendError::Full(_))
        ));
        assert!(matches!(
            f.try_reserve(vec![0; 401]),
            Err(SendError::PayloadTooLarge { len: 401, max: 400 })
        ));
        assert!(f.incomplete());
        f.took(a.len(), true);
        f.release(a.len());
        f.took(b.len(), false);
        assert!(f.incomplete(), "a lost message stays visible");
        assert!(f.try_reserve(vec![0; 400]).is_ok());
        f.end(Status::CANCELLED);
        f.end(Status::OK);
        assert_eq!(f.end_status(), Some(Status::CANCELLED));
        assert_eq!(
            f.try_reserve(vec![0; 1]),
            Err(SendError::Ended(Status::CANCELLED))
        );
    }

    #[test]
    fn empty_messages_cost_credit() {
        let f = Flow::new(10 * MSG_OVERHEAD, 0, true);
        for _ in 0..10 {
            f.try_reserve(Vec::new()).unwrap();
        }
        assert!(matches!(f.try_reserve(Vec::new()), Err(SendError::Full(_))));
    }

    #[test]
    fn once_flags() {
        let f = Flow::new(0, 10, true);
        assert!(f.mark_answered() && !f.mark_answered() && f.answered());
        assert!(f.mark_finished() && !f.mark_finished());
        assert!(f.mark_cancelled() && !f.mark_cancelled());
        assert_eq!(f.try_reserve(vec![1]), Err(SendError::Finished));
        let unary = Flow::new(100, 10, false);
        assert_eq!(unary.try_reserve(vec![1]), Err(SendError::NotAStream));
    }
}
