//! Who waits for a call a core makes, and the body it sends.
//!
//! Invariant: a [`Waiter`] ends exactly once: completed by the core
//! (answer, failure, shutdown), cancelled by its caller (then nobody
//! listens), or — only if a core drops it without either, which is a bug
//! or a core that died — told so by [`UnaryWaiter`]'s `Drop` (a boxed
//! [`CallEvents`] sink sees its own drop).

use std::sync::Arc;

use bytes::Bytes;
use net_proto::{Cause, Payload, Status, MAX_POOLED_CAPACITY};

use crate::handler::{CallEvents, UnaryEvents};

/// Who waits for a call this core made.
pub(crate) enum Waiter {
    /// A remote thread (SDK) through its event sink: streaming calls.
    Events(Box<dyn CallEvents>),
    /// A remote thread's unary call, through a receiver it shares (and may
    /// reuse for its next call: no allocation per call).
    Unary(UnaryWaiter),
    /// The on-core app, by token and by the app's generation: responses to
    /// calls of an app that has since been replaced are dropped.
    App { token: u64, gen: u64 },
}

impl Waiter {
    /// Ends a remote thread's call with the engine's own failure; the app's
    /// calls end with the app (nothing to tell).
    pub(crate) fn fail(self, status: Status, cause: Cause) {
        match self {
            Waiter::Events(mut e) => e.failed(status, cause),
            Waiter::Unary(u) => u.failed(status, cause),
            Waiter::App { .. } => {}
        }
    }
}

/// A unary caller's receiver as a core holds it: told the outcome at most
/// once; dropped without one, it calls [`UnaryEvents::abandoned`] so the
/// caller never waits on a call nobody holds.
pub(crate) struct UnaryWaiter(Option<Arc<dyn UnaryEvents>>);

impl UnaryWaiter {
    pub(crate) fn new(events: Arc<dyn UnaryEvents>) -> Self {
        UnaryWaiter(Some(events))
    }

    /// The receiver, while the call is open.
    pub(crate) fn events(&self) -> Option<&dyn UnaryEvents> {
        self.0.as_deref()
    }

    /// Lets the receiver go untold: the call never reached a core, and
    /// its caller learns why from the error it gets instead.
    pub(crate) fn forget(mut self) {
        self.0 = None;
    }

    pub(crate) fn complete(mut self, status: Status, payload: &[u8]) {
        if let Some(e) = self.0.take() {
            e.complete(status, payload);
        }
    }

    pub(crate) fn failed(mut self, status: Status, cause: Cause) {
        if let Some(e) = self.0.take() {
            e.failed(status, cause);
        }
    }
}

impl Drop for UnaryWaiter {
    fn drop(&mut self) {
        if let Some(e) = self.0.take() {
            e.abandoned();
        }
    }
}

/// A call's request body on its way to the endpoint.
pub(crate) enum Body {
    /// A buffer the core owns and recycles (the on-core app's).
    Owned(Vec<u8>),
    /// The caller's bytes: copied into the endpoint's pooled buffers when
    /// small, moved (without a copy when nothing else holds them) when
    /// larger than the pool keeps.
    Shared(Bytes),
}

impl Body {
    /// The body as the endpoint takes it.
    pub(crate) fn payload(&mut self) -> Payload<'_> {
        if let Body::Shared(b) = self {
            if b.len() > MAX_POOLED_CAPACITY {
                *self = Body::Owned(Vec::from(std::mem::take(b)));
            }
        }
        match self {
            Body::Owned(v) => Payload::Take(v),
            Body::Shared(b) => Payload::Copy(b),
        }
    }

    /// The buffer left to recycle, if the core owns one.
    pub(crate) fn into_owned(self) -> Option<Vec<u8>> {
        match self {
            Body::Owned(v) => Some(v),
            Body::Shared(_) => None,
        }
    }
}
