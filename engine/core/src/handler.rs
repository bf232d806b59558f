//! How applications plug into a core: service handlers, call event sinks and
//! on-core applications.

use std::sync::Arc;
use std::time::Instant;

use net_crypto::NodeId;
use net_proto::{CallId, CallKind, ServiceId, SessionId, Status};

use crate::flow::{Flow, SendError};
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
    /// Credit and end of the call, for calls that stream or are answered
    /// off the core.
    pub(crate) flow: Arc<Flow>,
}

impl CallRef {
    fn push(&self, make: impl FnOnce(SessionId, CallId) -> Command) {
        self.inbox.push_call(make(self.session, self.call));
    }

    fn queue(&self, payload: Vec<u8>) {
        let flow = self.flow.clone();
        self.push(|session, call| Command::Send {
            session,
            call,
            payload,
            flow,
        });
    }

    fn try_send(&self, payload: Vec<u8>) -> Result<(), SendError> {
        let payload = self.flow.try_reserve(payload)?;
        self.queue(payload);
        Ok(())
    }

    async fn send(&self, payload: Vec<u8>) -> Result<(), SendError> {
        self.flow.reserve(payload.len()).await?;
        self.queue(payload);
        Ok(())
    }
}

/// Answers a call (and sends its stream messages) from any thread.
///
/// Clones share one answer. When the last clone is dropped without
/// answering — the handler returned early, or panicked — the call is
/// answered `Internal` and the handler's `max_in_flight` slot is freed:
/// a caller is never left waiting on a handler that is gone.
#[derive(Clone)]
pub struct Responder(pub(crate) Arc<ResponderInner>);

pub(crate) struct ResponderInner {
    pub(crate) call: CallRef,
    pub(crate) service: ServiceId,
}

impl Drop for ResponderInner {
    fn drop(&mut self) {
        let service = self.service;
        let panicked = std::thread::panicking();
        self.call.push(|session, call| Command::Released {
            session,
            call,
            service,
            panicked,
        });
    }
}

/// The call's final answer was already given; this one was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the call was already answered")]
pub struct AlreadyAnswered;

impl Responder {
    /// Answers the call (for streaming calls: the trailer, sent after every
    /// stream message queued before it). Never refused for lack of room;
    /// a body over the peer's `max_message` is answered `PayloadTooLarge`. A call
    /// that already ended (cancelled, timed out, session closed) ignores it.
    pub fn respond(&self, status: Status, payload: Vec<u8>) -> Result<(), AlreadyAnswered> {
        if !self.0.call.flow.mark_answered() {
            return Err(AlreadyAnswered);
        }
        self.0.call.push(|session, call| Command::Respond {
            session,
            call,
            status,
            payload,
        });
        Ok(())
    }

    /// Queues one stream message (server-streaming and duplex calls)
    /// without waiting; `Full` hands it back when the call's credit is used
    /// up. Use this on a core thread, where waiting would stall the core.
    pub fn try_send(&self, payload: Vec<u8>) -> Result<(), SendError> {
        self.0.call.try_send(payload)
    }

    /// Queues one stream message, waiting while the call's credit is used
    /// up (the caller has not consumed earlier messages yet).
    pub async fn send(&self, payload: Vec<u8>) -> Result<(), SendError> {
        self.0.call.send(payload).await
    }

    /// Resolves once the call ended — answered, cancelled by the caller,
    /// past its deadline, or its session closed — with its final status.
    /// Async handlers select on it to stop work nobody waits for.
    pub async fn cancelled(&self) -> Status {
        self.0.call.flow.ended().await
    }

    /// The final status, if the call already ended.
    pub fn ended(&self) -> Option<Status> {
        self.0.call.flow.end_status()
    }
}

/// Handle to an open call for the caller: send stream messages, finish, cancel.
#[derive(Clone)]
pub struct CallHandle(pub(crate) CallRef);

impl CallHandle {
    /// Queues one stream message (client-streaming and duplex calls)
    /// without waiting; `Full` hands it back when the call's credit is used
    /// up. Messages leave in order as the callee grants credit.
    pub fn try_send(&self, payload: Vec<u8>) -> Result<(), SendError> {
        self.0.try_send(payload)
    }

    /// Queues one stream message, waiting while the call's credit is used up.
    pub async fn send(&self, payload: Vec<u8>) -> Result<(), SendError> {
        self.0.send(payload).await
    }

    /// No more stream messages (sent after every message queued before it).
    pub fn finish(&self) -> Result<(), SendError> {
        if let Some(s) = self.0.flow.end_status() {
            return Err(SendError::Ended(s));
        }
        if !self.0.flow.mark_finished() {
            return Err(SendError::Finished);
        }
        self.0
            .push(|session, call| Command::Finish { session, call });
        Ok(())
    }

    /// Reports that the application read `msgs` more messages, `bytes` in
    /// total, of the callee's stream; only for sinks whose
    /// [`CallEvents::credit_on_consume`] is true (their credit follows these
    /// reports). Report in batches: each report is one command to the core.
    pub fn consumed(&self, msgs: u64, bytes: u64) {
        self.0.push(|session, call| Command::Consumed {
            session,
            call,
            msgs,
            bytes,
        });
    }

    /// Abandons the call; no completion follows. Idempotent.
    pub fn cancel(&self) {
        if self.0.flow.end_status().is_none() && self.0.flow.mark_cancelled() {
            self.0
                .push(|session, call| Command::Cancel { session, call });
        }
    }
}

/// Abandons one unary call from any thread: what a unary caller needs of
/// its call once it is open ([`UnaryEvents::opened`]).
#[derive(Clone)]
pub struct CancelHandle {
    pub(crate) inbox: Arc<Inbox>,
    pub(crate) session: SessionId,
    pub(crate) call: CallId,
}

impl CancelHandle {
    /// Abandons the call; no completion follows once the core takes it.
    /// Cancelling a call that already ended does nothing (call ids are
    /// never reused), so calling this twice is harmless.
    pub fn cancel(&self) {
        let (session, call) = (self.session, self.call);
        self.inbox.push_call(Command::Cancel { session, call });
    }
}

/// Receives the events of one call, on the core thread. Implementations must
/// be quick (hand the data to another thread and return).
pub trait CallEvents: Send + 'static {
    /// The call is open (caller side; streaming callers need the handle).
    fn opened(&mut self, _handle: CallHandle) {}
    /// Caller side: the callee's stream gets credit only as the application
    /// reports what it read ([`CallHandle::consumed`]) rather than as
    /// messages reach this sink. Sinks that pass messages to a reader on
    /// another thread say true, so a reader that stops reading bounds what
    /// it holds to one stream window. Default false.
    fn credit_on_consume(&self) -> bool {
        false
    }
    /// Next stream message, in order.
    fn message(&mut self, _payload: &[u8]) {}
    /// The peer finished its stream (callee side: the caller half-closed).
    fn finished(&mut self) {}
    /// The call ended: caller side with the response; callee side when the
    /// caller cancelled or the deadline passed. Called at most once, last.
    fn complete(&mut self, status: Status, payload: &[u8]);
    /// Caller side: the engine ended the call itself, without an answer
    /// from the callee — `status` (`Unavailable`, `Timeout`, ...) and why.
    /// Called at most once, last, instead of [`complete`](Self::complete);
    /// by default it forwards to `complete` with an empty body.
    fn failed(&mut self, status: Status, _cause: net_proto::Cause) {
        self.complete(status, &[]);
    }
}

/// Receives one unary call's outcome. The core holds an `Arc` of it while
/// the call is open and calls it on the core thread; the caller keeps
/// another, so it can reuse the receiver for its next call once the core
/// let go (`Arc::get_mut` succeeds): a unary call then costs no allocation.
/// Exactly one of [`complete`](Self::complete), [`failed`](Self::failed)
/// and [`abandoned`](Self::abandoned) follows [`opened`](Self::opened),
/// unless the caller cancelled. Implementations must be quick.
pub trait UnaryEvents: Send + Sync + 'static {
    /// The call is open: `cancel` abandons it (no outcome follows then).
    /// Not called for a call refused before it opened.
    fn opened(&self, cancel: CancelHandle);
    /// The callee answered with `status` and `payload` (a view into the
    /// core's receive buffer: copy what you keep).
    fn complete(&self, status: Status, payload: &[u8]);
    /// The engine ended the call itself, without an answer from the
    /// callee: `status` (`Unavailable`, `Timeout`, ...) and why.
    fn failed(&self, status: Status, cause: net_proto::Cause);
    /// The core let go of the call without an outcome (it stopped
    /// abnormally): the call's fate is unknown.
    fn abandoned(&self);
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
