//! How applications plug into a core: service handlers, call event sinks and
//! on-core applications.

use std::sync::Arc;
use std::time::Instant;

use net_crypto::NodeId;
use net_proto::{CallId, CallKind, ServiceId, SessionId, Status};

use crate::inbox::{Command, Inbox};

/// What a handler learns about a request. `peer` is the node id the session
/// authenticated in its handshake — never a value the caller wrote in a frame.
#[derive(Clone, Copy, Debug)]
pub struct RequestInfo {
    /// Authenticated caller.
    pub peer: NodeId,
    /// Service called.
    pub service: ServiceId,
    /// Unary or streaming.
    pub kind: CallKind,
    /// When the caller stops waiting.
    pub deadline: Option<Instant>,
    /// Which core runs the call.
    pub core: usize,
}

/// A synchronous handler: runs inline on the core (no hand-off), writes the
/// response body into the buffer and returns the status. It must not block.
pub type SyncHandler = dyn Fn(&RequestInfo, &[u8], &mut Vec<u8>) -> Status + Send + Sync;

/// An asynchronous handler: receives the call and answers later through its
/// [`Responder`], from any thread. It may return a sink for the caller's
/// stream messages (client-streaming and duplex calls).
pub type AsyncHandler = dyn Fn(IncomingCall) -> Option<Box<dyn CallEvents>> + Send + Sync;

/// A registered service's handler.
#[derive(Clone)]
pub enum Handler {
    /// Inline on the core: the QPS path.
    Sync(Arc<SyncHandler>),
    /// Off the core; the answer comes back through the core's inbox.
    Async(Arc<AsyncHandler>),
}

/// A request handed to an asynchronous handler.
pub struct IncomingCall {
    /// About the request.
    pub info: RequestInfo,
    /// Request body.
    pub payload: Vec<u8>,
    /// Answers the call.
    pub responder: Responder,
}

/// One call on one core, addressed from another thread: what both a
/// [`Responder`] and a [`CallHandle`] push their commands through.
#[derive(Clone)]
pub(crate) struct CallRef {
    pub(crate) inbox: Arc<Inbox>,
    pub(crate) session: SessionId,
    pub(crate) call: CallId,
}

impl CallRef {
    fn push(&self, make: impl FnOnce(SessionId, CallId) -> Command) -> Result<(), InboxFull> {
        self.inbox
            .push(make(self.session, self.call))
            .map_err(|_| InboxFull)
    }

    fn send(&self, payload: Vec<u8>) -> Result<(), InboxFull> {
        self.push(|session, call| Command::Send {
            session,
            call,
            payload,
        })
    }
}

/// Sends a call's answer (and stream messages) back to its core.
#[derive(Clone)]
pub struct Responder(pub(crate) CallRef);

/// The core's inbox is full; the message was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("core inbox full")]
pub struct InboxFull;

impl Responder {
    /// Answers the call (for streaming calls: the trailer after the messages).
    pub fn respond(&self, status: Status, payload: Vec<u8>) -> Result<(), InboxFull> {
        self.0.push(|session, call| Command::Respond {
            session,
            call,
            status,
            payload,
        })
    }

    /// Sends one stream message (server-streaming and duplex calls).
    pub fn send(&self, payload: Vec<u8>) -> Result<(), InboxFull> {
        self.0.send(payload)
    }
}

/// Handle to an open call for the caller: send stream messages, finish, cancel.
#[derive(Clone)]
pub struct CallHandle(pub(crate) CallRef);

impl CallHandle {
    /// Sends one stream message (client-streaming and duplex calls). Messages
    /// beyond the peer's credit wait on the core, in order.
    pub fn send(&self, payload: Vec<u8>) -> Result<(), InboxFull> {
        self.0.send(payload)
    }

    /// No more stream messages.
    pub fn finish(&self) -> Result<(), InboxFull> {
        self.0
            .push(|session, call| Command::Finish { session, call })
    }

    /// Abandons the call; no completion follows.
    pub fn cancel(&self) -> Result<(), InboxFull> {
        self.0
            .push(|session, call| Command::Cancel { session, call })
    }
}

/// Receives the events of one call, on the core thread. Implementations must
/// be quick (hand the data to another thread and return).
pub trait CallEvents: Send + 'static {
    /// The call is open (caller side; streaming callers need the handle).
    fn opened(&mut self, _handle: CallHandle) {}
    /// Next stream message, in order.
    fn message(&mut self, _payload: &[u8]) {}
    /// The peer finished its stream (callee side: the caller half-closed).
    fn finished(&mut self) {}
    /// The call ended: caller side with the response; callee side when the
    /// caller cancelled or the deadline passed. Called at most once, last.
    fn complete(&mut self, status: Status, payload: &[u8]);
}

/// An application running on a core's own thread (engine-mode benchmarks):
/// it issues calls without any hand-off and gets completions inline.
pub trait CoreApp: Send + 'static {
    /// Called once when the app is installed.
    fn start(&mut self, cx: &mut CoreCx<'_>);
    /// A call made with `token` completed.
    fn response(&mut self, cx: &mut CoreCx<'_>, token: u64, status: Status, payload: &[u8]);
    /// The app is finished; the core drops it.
    fn done(&self) -> bool;
    /// Called every loop iteration (open-loop apps send on a schedule).
    fn poll(&mut self, _cx: &mut CoreCx<'_>) {}
    /// When the app next needs `poll`; the core does not park past it.
    fn next_wake(&self) -> Option<Instant> {
        None
    }
}

/// What an on-core app may do.
pub struct CoreCx<'a> {
    pub(crate) now: Instant,
    pub(crate) calls: &'a mut Vec<(NodeId, ServiceId, u64, Vec<u8>)>,
    pub(crate) spare: &'a mut Vec<Vec<u8>>,
}

impl CoreCx<'_> {
    /// The loop's current time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Opens a unary call; its completion arrives in [`CoreApp::response`]
    /// with `token`. Queued and issued when the app returns.
    pub fn call(&mut self, peer: NodeId, service: ServiceId, payload: &[u8], token: u64) {
        let mut buf = self.spare.pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(payload);
        self.calls.push((peer, service, token, buf));
    }
}
