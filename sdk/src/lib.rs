//! Net: encrypted, capability-gated RPC between the nodes of a mesh.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use net::{Mesh, Identity, Status};
//! let server = Mesh::builder().identity(Identity::from_seed(&[1; 32])).psk([7; 32]).build()?;
//! server.start()?;
//! let _echo = server.serve_rpc("echo", |_req, body, out| { out.extend_from_slice(body); Status::OK })?;
//! let addr = server.local_addr().unwrap();
//! let client = Mesh::builder()
//!     .identity(Identity::from_seed(&[2; 32]))
//!     .psk([7; 32])
//!     .peer(addr, Identity::from_seed(&[1; 32]).public())
//!     .build()?;
//! client.start()?;
//! let reply = client.call(server.node_id(), "echo", b"hello".to_vec()).await?;
//! assert_eq!(&reply[..], b"hello");
//! # Ok(()) }
//! ```
//!
//! The engine runs its own pinned threads and needs no async runtime; calls
//! are awaited from tokio. Sync handlers run inline on the engine's cores
//! (the fast path); async handlers run on the tokio runtime that registered
//! them.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod call;
mod core_task;
mod error;
mod mesh;
mod unary;

pub use bytes::Bytes;
pub use call::{CallOptions, ClientStream, DuplexCall, ServerStream};
pub use core_task::{CoreTask, TaskError};
pub use error::{MeshError, RpcError};
pub use mesh::{Mesh, MeshBuilder, PeerEvents, Request, ServeHandle, DEFAULT_CALL_DEADLINE};
pub use net_crypto::{Identity, NodeId, PublicIdentity};
// Every type a public signature of this crate names is nameable from here
// (the engine's own, for `Mesh::engine`, `MeshBuilder::node_config`, the
// errors' `Engine` variants and the handler/stream types).
pub use net_engine::{
    AlreadyAnswered, CallEvents, CallHandle, CoreStats, DriverChoice, DriverKind, DriverStats,
    EngineError, IncomingCall, MemNet, MeshNode, MeshNodeConfig, PeerConfig, RequestInfo,
    Responder, SendError, ServeOptions, MAX_TASKS,
};
pub use net_proto::{
    CallKind, Cause, CloseReason, DetectorConfig, EndpointStats, HandshakeError, PeerEvent,
    PeerState, ServiceId, Status,
};
