//! Errors the SDK returns.

use bytes::Bytes;
use net_engine::{EngineError, SendError};
use net_proto::{Cause, Status};

/// Why a call did not return a successful response.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RpcError {
    /// The call completed with a non-OK status (NotFound, CapabilityDenied,
    /// Timeout, Backpressure, Cancelled, Internal, Unavailable or an
    /// application code); `payload` is whatever the callee sent with it.
    #[error("call failed with status {status}")]
    Status {
        /// Outcome.
        status: Status,
        /// Body sent with the status.
        payload: Bytes,
    },
    /// The engine ended the call itself, without an answer from the
    /// callee: `status` is `Unavailable`, `Timeout` or similar, and `cause`
    /// says why (peer reset, peer down, deadline, handshake failure, no
    /// trusted provider, ...).
    #[error("call failed with status {status}: {cause}")]
    Failed {
        /// Outcome.
        status: Status,
        /// Why the engine ended the call.
        cause: Cause,
    },
    /// The engine refused the call (not running, inbox full).
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The engine dropped the call without an outcome (node shut down).
    #[error("call dropped by the engine")]
    Dropped,
    /// A stream message was refused (too large for a packet, stream already
    /// finished, or this side does not stream).
    #[error("stream message refused: {0}")]
    Stream(SendError),
}

impl From<SendError> for RpcError {
    fn from(e: SendError) -> Self {
        match e {
            SendError::Ended(status) => RpcError::Status {
                status,
                payload: Bytes::new(),
            },
            e => RpcError::Stream(e),
        }
    }
}

impl RpcError {
    /// The call's status, if it completed with one.
    pub fn status(&self) -> Option<Status> {
        match self {
            RpcError::Status { status, .. } | RpcError::Failed { status, .. } => Some(*status),
            RpcError::Engine(EngineError::Backpressure) => Some(Status::BACKPRESSURE),
            _ => None,
        }
    }
}

impl RpcError {
    /// Why the engine ended the call itself, if it did (`None` for the
    /// callee's own answers).
    pub fn cause(&self) -> Option<Cause> {
        match self {
            RpcError::Failed { cause, .. } => Some(*cause),
            _ => None,
        }
    }
}

/// Why a mesh could not be built or started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MeshError {
    /// `build()` without an identity.
    #[error("no identity configured")]
    MissingIdentity,
    /// `build()` without a mesh PSK.
    #[error("no mesh PSK configured")]
    MissingPsk,
    /// Two builder settings contradict each other.
    #[error("conflicting mesh settings: {0}")]
    Conflict(&'static str),
    /// `serve_*` for a service name this mesh already serves: drop (or
    /// keep) the first [`ServeHandle`](crate::ServeHandle) rather than
    /// replace its handler behind its back.
    #[error("service `{0}` is already served on this mesh")]
    AlreadyServing(String),
    /// An async handler was registered outside a tokio runtime (it runs
    /// its requests on the runtime it was registered from).
    #[error("serve_rpc_async must be called from within a tokio runtime")]
    NoRuntime,
    /// The engine refused.
    #[error(transparent)]
    Engine(EngineError),
}

impl From<EngineError> for MeshError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::AlreadyServing(name) => MeshError::AlreadyServing(name),
            e => MeshError::Engine(e),
        }
    }
}
