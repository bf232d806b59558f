//! Calls from async code: unary, server-streaming, client-streaming, duplex.
//!
//! Each call's events arrive on the engine core that owns its session; a
//! small sink forwards them into tokio channels (no runtime needed on the
//! core). Dropping a call's future or stream object before it completes
//! cancels the call at the callee.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use net_crypto::NodeId;
use net_engine::{CallEvents, CallHandle, SendError};
use net_proto::{CallKind, Cause, ServiceId, Status};
use tokio::sync::{mpsc, oneshot};

use crate::error::RpcError;
use crate::mesh::Mesh;
use crate::unary::{copy_out, UnaryCell, UnaryOutcome};

/// Per-call options.
#[derive(Debug, Clone, Copy, Default)]
pub struct CallOptions {
    /// Give up (status `Timeout`, and cancel at the callee) after this long.
    /// `None` on a unary call means the mesh's default
    /// ([`MeshBuilder::call_deadline`](crate::MeshBuilder::call_deadline),
    /// 30 s unless set); streaming calls have no default deadline.
    pub deadline: Option<Duration>,
}

#[derive(Default)]
struct Shared {
    handle: Option<CallHandle>,
    dropped: bool,
    done: bool,
}

fn lock(s: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// Forwards one call's events from the core to the awaiting task.
struct Sink {
    shared: Arc<Mutex<Shared>>,
    /// The callee streams: its credit follows what the application reads.
    defer: bool,
    opened: Option<oneshot::Sender<CallHandle>>,
    msgs: Option<mpsc::UnboundedSender<Bytes>>,
    done: Option<oneshot::Sender<Ended>>,
}

impl CallEvents for Sink {
    fn credit_on_consume(&self) -> bool {
        self.defer
    }

    fn opened(&mut self, handle: CallHandle) {
        let mut s = lock(&self.shared);
        if s.dropped {
            handle.cancel();
            return;
        }
        s.handle = Some(handle.clone());
        drop(s);
        if let Some(tx) = self.opened.take() {
            // A receiver gone means the call object was dropped; its guard
            // cancels the call through `shared`.
            let _ = tx.send(handle);
        }
    }

    fn message(&mut self, payload: &[u8]) {
        if let Some(tx) = &self.msgs {
            // As above: a dropped receiver's guard cancels the call.
            let _ = tx.send(copy_out(payload));
        }
    }

    fn complete(&mut self, status: Status, payload: &[u8]) {
        self.end(Ended::Answered(status, copy_out(payload)));
    }

    fn failed(&mut self, status: Status, cause: Cause) {
        self.end(Ended::Failed(status, cause));
    }
}

impl Sink {
    fn end(&mut self, ended: Ended) {
        lock(&self.shared).done = true;
        self.msgs = None;
        if let Some(tx) = self.done.take() {
            // Nobody awaits the outcome any more (the future was dropped).
            let _ = tx.send(ended);
        }
    }
}

/// Cancels the call when dropped before completion.
struct CancelGuard(Arc<Mutex<Shared>>);

impl Drop for CancelGuard {
    fn drop(&mut self) {
        let mut s = lock(&self.0);
        if s.done {
            return;
        }
        match s.handle.take() {
            Some(h) => h.cancel(),
            None => s.dropped = true,
        }
    }
}

/// The id of service `name`, from a per-thread cache: hashing the name
/// (BLAKE2s) on every call cost ~2 % of an SDK-mode c128 run's CPU. The
/// cache is bounded: past [`SERVICE_CACHE`] names it starts over.
fn service_id(name: &str) -> ServiceId {
    thread_local! {
        static CACHE: std::cell::RefCell<net_proto::FastMap<Box<str>, ServiceId>> =
            std::cell::RefCell::default();
    }
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if let Some(&id) = c.get(name) {
            return id;
        }
        if c.len() >= SERVICE_CACHE {
            c.clear();
        }
        let id = ServiceId::of(name);
        c.insert(name.into(), id);
        id
    })
}

/// Names a thread's [`service_id`] cache holds at most.
const SERVICE_CACHE: usize = 256;

/// The receiving ends of one call.
struct Parts {
    guard: CancelGuard,
    opened: oneshot::Receiver<CallHandle>,
    msgs: mpsc::UnboundedReceiver<Bytes>,
    done: oneshot::Receiver<Ended>,
}

/// A call by service name that found nobody to send to.
fn no_provider(cause: Cause) -> RpcError {
    RpcError::Failed {
        status: Status::UNAVAILABLE,
        cause,
    }
}

/// How a call ended, as its sink saw it.
#[derive(Clone)]
pub(crate) enum Ended {
    /// The callee answered.
    Answered(Status, Bytes),
    /// The engine ended the call itself.
    Failed(Status, Cause),
}

fn outcome(r: Result<Ended, oneshot::error::RecvError>) -> Result<Bytes, RpcError> {
    match r {
        Ok(Ended::Answered(s, b)) if s.is_ok() => Ok(b),
        Ok(Ended::Answered(status, payload)) => Err(RpcError::Status { status, payload }),
        Ok(Ended::Failed(status, cause)) => Err(RpcError::Failed { status, cause }),
        Err(_) => Err(RpcError::Dropped),
    }
}

impl Mesh {
    fn open(
        &self,
        peer: NodeId,
        service: &str,
        kind: CallKind,
        payload: Bytes,
        opts: CallOptions,
    ) -> Result<Parts, RpcError> {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let (open_tx, opened) = oneshot::channel();
        let (msg_tx, msgs) = mpsc::unbounded_channel();
        let (done_tx, done) = oneshot::channel();
        let sink = Sink {
            shared: shared.clone(),
            defer: matches!(kind, CallKind::ServerStream | CallKind::Duplex),
            opened: Some(open_tx),
            msgs: Some(msg_tx),
            done: Some(done_tx),
        };
        let deadline = opts.deadline.map(|d| Instant::now() + d);
        self.node.call(
            peer,
            service_id(service),
            kind,
            deadline,
            payload,
            Box::new(sink),
        )?;
        Ok(Parts {
            guard: CancelGuard(shared),
            opened,
            msgs,
            done,
        })
    }

    /// Unary call: sends `payload` to `service` on `peer`, returns the response.
    ///
    /// When the core's queue of new calls is full (`with_inbox`, 4 096 by
    /// default), the call waits for room instead of failing, for at most
    /// its deadline (then `Backpressure`).
    ///
    /// The body is anything that becomes [`Bytes`] without a copy: a `Vec`,
    /// a `String`, a `&'static [u8]`, or a `Bytes` you clone to send the
    /// same body again (a borrowed slice needs `Bytes::copy_from_slice`).
    /// In steady state the call allocates nothing. A small response (up to
    /// 1 KiB) is carved from a 16 KiB block it shares with other recent
    /// responses of the same core; keeping it alive keeps the block, so
    /// copy small responses you hold for long.
    pub async fn call(
        &self,
        peer: NodeId,
        service: &str,
        payload: impl Into<Bytes>,
    ) -> Result<Bytes, RpcError> {
        self.call_with(peer, service, payload, CallOptions::default())
            .await
    }

    /// Unary call to a provider of `service` this node trusts, round robin
    /// per service over [`trusted_providers`](Self::trusted_providers).
    ///
    /// Advertising a service proves nothing (any holder of the mesh PSK can
    /// advertise any name), so a provider is trusted only if it is on this
    /// node's allow-list for the service
    /// ([`MeshBuilder::trusted_providers`](crate::MeshBuilder::trusted_providers))
    /// or presented a token chain rooted in this node's token roots whose
    /// scope holds `nrpc-serve:<service>`; providers the failure detector
    /// holds Suspect or Down are skipped. If none may be picked the call
    /// fails at once with `RpcError::Failed` (`Unavailable`, and the cause:
    /// `NoProvider`, `NoTrustedProvider` or `PeerDown`); nothing is sent.
    /// The callee's gate still decides whether this node may call.
    pub async fn call_service(
        &self,
        service: &str,
        payload: impl Into<Bytes>,
    ) -> Result<Bytes, RpcError> {
        let peer = self.node.pick_provider(service).map_err(no_provider)?;
        self.call(peer, service, payload).await
    }

    /// Unary call to **any** node that advertises `service`, trusted or
    /// not: the payload may reach whichever mesh member claims the name.
    /// Only for requests any member may see, whose answers the caller
    /// checks itself; otherwise use [`call_service`](Self::call_service).
    pub async fn call_service_untrusted(
        &self,
        service: &str,
        payload: impl Into<Bytes>,
    ) -> Result<Bytes, RpcError> {
        let peer = self
            .node
            .pick_provider_untrusted(service)
            .map_err(no_provider)?;
        self.call(peer, service, payload).await
    }

    /// The nodes advertising `service` that [`call_service`](Self::call_service)
    /// may send to, in node-id order (a subset of [`discover`](Self::discover)).
    pub fn trusted_providers(&self, service: &str) -> Vec<NodeId> {
        self.node.trusted_providers(service)
    }

    /// Unary call with options (deadline).
    pub async fn call_with(
        &self,
        peer: NodeId,
        service: &str,
        payload: impl Into<Bytes>,
        opts: CallOptions,
    ) -> Result<Bytes, RpcError> {
        let deadline = opts.deadline.or(self.call_deadline);
        let cell = UnaryCell::take();
        // A full core inbox makes this wait (bounded by the deadline), not fail.
        let sent = self
            .node
            .call_unary(
                peer,
                service_id(service),
                // On a core thread (an on-core task), the pass's time.
                deadline.map(|d| net_engine::clock_now() + d),
                payload.into(),
                cell.clone(),
            )
            .await;
        if let Err(e) = sent {
            UnaryCell::recycle(cell);
            return Err(e.into());
        }
        match UnaryOutcome::new(cell).await {
            Ok(Ended::Answered(s, b)) if s.is_ok() => Ok(b),
            Ok(Ended::Answered(status, payload)) => Err(RpcError::Status { status, payload }),
            Ok(Ended::Failed(status, cause)) => Err(RpcError::Failed { status, cause }),
            Err(()) => Err(RpcError::Dropped),
        }
    }

    /// Server-streaming call: one request, a stream of responses.
    pub fn call_server_stream(
        &self,
        peer: NodeId,
        service: &str,
        payload: impl Into<Bytes>,
        opts: CallOptions,
    ) -> Result<ServerStream, RpcError> {
        let p = self.open(peer, service, CallKind::ServerStream, payload.into(), opts)?;
        Ok(ServerStream {
            reader: Reader::new(p.msgs),
            opened: Some(p.opened),
            handle: None,
            done: p.done,
            _guard: p.guard,
        })
    }

    /// Client-streaming call: send messages, then `finish` for the response.
    pub fn call_client_stream(
        &self,
        peer: NodeId,
        service: &str,
        opts: CallOptions,
    ) -> Result<ClientStream, RpcError> {
        let p = self.open(peer, service, CallKind::ClientStream, Bytes::new(), opts)?;
        Ok(ClientStream {
            opened: Some(p.opened),
            handle: None,
            done: p.done,
            _guard: p.guard,
        })
    }

    /// Duplex call: streams both ways.
    pub fn call_duplex(
        &self,
        peer: NodeId,
        service: &str,
        opts: CallOptions,
    ) -> Result<DuplexCall, RpcError> {
        let p = self.open(peer, service, CallKind::Duplex, Bytes::new(), opts)?;
        let tx = ClientStream {
            opened: Some(p.opened),
            handle: None,
            done: p.done,
            _guard: p.guard,
        };
        Ok(DuplexCall {
            tx,
            reader: Reader::new(p.msgs),
        })
    }
}

/// Reads the callee's stream messages and reports what was read, in
/// batches, so the callee gets credit as the application consumes: a reader
/// that stops reading holds at most one stream window.
struct Reader {
    msgs: mpsc::UnboundedReceiver<Bytes>,
    /// Read and not yet reported: messages, bytes.
    unreported: (u64, u64),
}

/// Read bytes (at `MSG_OVERHEAD` per message on top) after which a report
/// goes to the core: a small fraction of the default 1 MiB window.
const REPORT_EVERY: u64 = 32 * 1024;

impl Reader {
    fn new(msgs: mpsc::UnboundedReceiver<Bytes>) -> Self {
        Reader {
            msgs,
            unreported: (0, 0),
        }
    }

    async fn next(&mut self, handle: Option<&CallHandle>) -> Option<Bytes> {
        let m = self.msgs.recv().await?;
        let (n, bytes) = &mut self.unreported;
        *n += 1;
        *bytes += m.len() as u64;
        let charge = *bytes + *n * net_engine::MSG_OVERHEAD as u64;
        if let Some(h) = handle.filter(|_| charge >= REPORT_EVERY) {
            h.consumed(*n, *bytes);
            self.unreported = (0, 0);
        }
        Some(m)
    }
}

/// The handle of a call once its `opened` event arrived (without waiting).
fn poll_handle(
    opened: &mut Option<oneshot::Receiver<CallHandle>>,
    handle: &mut Option<CallHandle>,
) {
    if let Some(rx) = opened {
        match rx.try_recv() {
            Ok(h) => {
                *handle = Some(h);
                *opened = None;
            }
            Err(oneshot::error::TryRecvError::Empty) => {}
            Err(oneshot::error::TryRecvError::Closed) => *opened = None,
        }
    }
}

/// Responses of a server-streaming call.
pub struct ServerStream {
    reader: Reader,
    opened: Option<oneshot::Receiver<CallHandle>>,
    handle: Option<CallHandle>,
    done: oneshot::Receiver<Ended>,
    _guard: CancelGuard,
}

impl ServerStream {
    /// Next message; `None` once the stream ended (then call `finish`).
    /// The callee gets more credit as messages are read here.
    pub async fn next(&mut self) -> Option<Bytes> {
        poll_handle(&mut self.opened, &mut self.handle);
        self.reader.next(self.handle.as_ref()).await
    }

    /// The trailer: the call's status and final payload.
    pub async fn finish(self) -> Result<Bytes, RpcError> {
        outcome(self.done.await)
    }
}

/// Sending side of a client-streaming call.
pub struct ClientStream {
    opened: Option<oneshot::Receiver<CallHandle>>,
    handle: Option<CallHandle>,
    done: oneshot::Receiver<Ended>,
    _guard: CancelGuard,
}

impl ClientStream {
    async fn handle(&mut self) -> Result<CallHandle, RpcError> {
        if let Some(rx) = self.opened.take() {
            self.handle = rx.await.ok();
        }
        self.handle.clone().ok_or(RpcError::Dropped)
    }

    /// Sends one message, waiting while the call's send credit is used up
    /// (the callee has not consumed earlier messages yet). Order is kept.
    /// A message larger than the stream carries (its window, 1 MiB by default, or the peer's `max_message`) is refused here
    /// (`Stream(PayloadTooLarge)`); if the call already ended, its status
    /// is returned.
    pub async fn send(&mut self, payload: impl Into<Vec<u8>>) -> Result<(), RpcError> {
        let h = self.handle().await?;
        h.send(payload.into()).await.map_err(RpcError::from)
    }

    /// Ends the stream and waits for the response. OK means the callee
    /// answered OK after every message sent was handed over; a message that
    /// could not be delivered turns it into `Incomplete`.
    pub async fn finish(mut self) -> Result<Bytes, RpcError> {
        let h = self.handle().await?;
        match h.finish() {
            // Ended: the outcome is already on its way.
            Ok(()) | Err(SendError::Ended(_)) => {}
            Err(e) => return Err(e.into()),
        }
        outcome((&mut self.done).await)
    }
}

/// A duplex call: send like a [`ClientStream`], receive like a [`ServerStream`].
pub struct DuplexCall {
    tx: ClientStream,
    reader: Reader,
}

impl DuplexCall {
    /// Sends one message.
    pub async fn send(&mut self, payload: impl Into<Vec<u8>>) -> Result<(), RpcError> {
        self.tx.send(payload).await
    }

    /// Next message from the callee; `None` once its stream ended. The
    /// callee gets more credit as messages are read here.
    pub async fn recv(&mut self) -> Option<Bytes> {
        poll_handle(&mut self.tx.opened, &mut self.tx.handle);
        self.reader.next(self.tx.handle.as_ref()).await
    }

    /// Ends our stream and waits for the callee's final status.
    pub async fn finish(self) -> Result<Bytes, RpcError> {
        self.tx.finish().await
    }
}
