//! Sans-IO protocol core for Net.
//!
//! No sockets, no threads, no clock reads: every entry point takes `now` as a
//! parameter and output is pulled with `poll_*`. See [`Endpoint`] for the call
//! contract, and `docs/PROTOCOL.md` for the wire specification.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod admission;
pub mod config;
mod congestion;
mod cookie;
pub mod detector;
mod endpoint;
mod event;
// Fuzz target bodies: compiled for tests and for the fuzz crate (feature
// `fuzzing`), never into a normal build.
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
mod handshake;
pub mod ids;
mod keys;
mod pmtu;
mod pool;
pub mod ranges;
mod ratelimit;
mod recovery;
pub mod replay;
mod reset;
mod services;
mod session;
mod stats;
mod stream;
pub mod wire;

pub use admission::CLOSE_EVICTED;
pub use config::{EndpointConfig, TransportParams};
pub use congestion::CongestionControl;
pub use cookie::COOKIE_REPLY_LEN;
pub use detector::{DetectorConfig, FailureDetector, PeerEvent, PeerSlot, PeerState};
pub use endpoint::{Endpoint, Transmit};
pub use event::{
    ApiError, Cause, CloseReason, Event, ProtocolViolation, SegmentViolation, SessionId,
};
pub use handshake::{HandshakeError, INIT_LEN, RESP_LEN};
pub use ids::{CallId, CallKind, ReceiverIndex, ServiceId, Side, Status};
pub use pool::{Payload, MAX_POOLED_CAPACITY};
pub use ratelimit::{HandshakeLimits, RateLimit};
pub use reset::DEFAULT_RESET_LIMIT;
pub use stats::EndpointStats;
pub use stream::{StreamViolation, MESSAGE_CHARGE};

/// The hash map for per-packet lookups: aHash, randomly keyed per process.
/// SipHash (std's default) was 13 % of each core at c128 in the
/// flamegraphs; aHash keeps the DoS resistance that peer-chosen keys
/// (call ids) need at a fraction of the cost.
pub type FastMap<K, V> = std::collections::HashMap<K, V, ahash::RandomState>;
