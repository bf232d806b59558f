//! The on-core app slot: at most one [`CoreApp`] per core (engine-mode load
//! generators), the calls it queued and the buffers it reuses.
//!
//! Invariants: a response reaches the app only if it answers a call of the
//! app installed now (`gen` matches; a replaced app's responses are
//! dropped); a finished app (`done`) is removed once its queued calls left.

use std::time::Instant;

use net_crypto::NodeId;
use net_proto::{ServiceId, Status};

use crate::handler::{CoreApp, CoreCx};

/// Buffers kept for the app's next calls (beyond that they are freed).
const SPARE_BUFFERS: usize = 1024;

/// One call an app queued: peer, service, its token, body.
pub(crate) type AppCall = (NodeId, ServiceId, u64, Vec<u8>);

/// See the module docs.
#[derive(Default)]
pub(crate) struct AppSlot {
    app: Option<Box<dyn CoreApp>>,
    /// Incremented each time an app is installed.
    gen: u64,
    /// Calls the app made, issued after it returns.
    calls: Vec<AppCall>,
    /// Request buffers recycled for the app's next calls.
    spare: Vec<Vec<u8>>,
}

impl AppSlot {
    /// Installs `app` (replacing any other) and starts it.
    pub fn install(&mut self, now: Instant, mut app: Box<dyn CoreApp>) {
        app.start(&mut cx(now, &mut self.calls, &mut self.spare));
        self.app = Some(app);
        self.gen += 1;
    }

    /// The generation of the app installed now (for its calls' waiters).
    pub fn gen(&self) -> u64 {
        self.gen
    }

    /// Hands a response to the app, if it is still the one that called.
    pub fn response(&mut self, now: Instant, gen: u64, token: u64, status: Status, body: &[u8]) {
        if gen != self.gen {
            return;
        }
        if let Some(app) = self.app.as_mut() {
            app.response(
                &mut cx(now, &mut self.calls, &mut self.spare),
                token,
                status,
                body,
            );
        }
    }

    /// Lets the app run its per-pass work; true if it queued calls.
    pub fn poll(&mut self, now: Instant) -> bool {
        if let Some(app) = self.app.as_mut() {
            app.poll(&mut cx(now, &mut self.calls, &mut self.spare));
        }
        !self.calls.is_empty()
    }

    /// The next call the app queued.
    pub fn take_call(&mut self) -> Option<AppCall> {
        self.calls.pop()
    }

    /// Drops the app once it is done.
    pub fn reap(&mut self) {
        if self.app.as_ref().is_some_and(|a| a.done()) {
            self.app = None;
        }
    }

    /// Keeps an issued call's body for the app's next call.
    pub fn recycle(&mut self, buf: Vec<u8>) -> Option<Vec<u8>> {
        if self.spare.len() < SPARE_BUFFERS {
            self.spare.push(buf);
            None
        } else {
            Some(buf)
        }
    }

    /// When the app next needs a pass.
    pub fn next_wake(&self) -> Option<Instant> {
        self.app.as_ref().and_then(|a| a.next_wake())
    }
}

/// What the app may touch during one callback.
fn cx<'a>(now: Instant, calls: &'a mut Vec<AppCall>, spare: &'a mut Vec<Vec<u8>>) -> CoreCx<'a> {
    CoreCx { now, calls, spare }
}
