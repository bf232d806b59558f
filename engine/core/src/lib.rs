//! Net's thread-per-core runtime.
//!
//! A [`MeshNode`] runs one event loop per configured core, each pinned to a
//! CPU and owning one UDP socket of a reuseport group, one protocol
//! [`Endpoint`](net_proto::Endpoint) and one inbox. The kernel steers every
//! packet of a session to the core that owns it (the receiver index's low
//! bits name the core), so a session's state is touched by exactly one thread
//! and the hot path takes no lock. The engine needs no async runtime; the SDK
//! bridges it to tokio.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod config;
mod core_loop;
mod flow;
mod handler;
mod inbox;
pub mod loadgen;
mod local;
mod node;
mod peers;
mod stats;
mod trust;
mod waiter;

pub use config::{MeshNodeConfig, PeerConfig};
pub use flow::{SendError, MSG_OVERHEAD};
pub use handler::{
    AlreadyAnswered, AsyncHandler, CallEvents, CallHandle, CancelHandle, CoreApp, CoreCx, Handler,
    IncomingCall, RequestInfo, Responder, SyncHandler, UnaryEvents,
};
pub use local::{now as clock_now, wake_later, CoreFuture, MAX_TASKS};
pub use net_io::{DriverChoice, DriverKind, DriverStats, MemNet};
pub use node::{EngineError, MeshNode, ServeOptions};
pub use peers::PeerListener;
pub use stats::CoreStats;
