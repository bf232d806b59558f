//! Deterministic simulated network with virtual time (dev/test only).
//!
//! [`Sim`] drives two or more sans-IO nodes ([`SimNode`]: typically a test
//! harness wrapping a `net-proto` endpoint plus app logic) over a lossy
//! link model ([`LinkConfig`]: delay, jitter, loss, duplication, reordering,
//! corruption, MTU, bandwidth) with a virtual clock. Everything random comes
//! from one ChaCha8 RNG seeded by a `u64`, and every tie is broken by
//! insertion order, so a failing seed replays exactly.
//!
//! ```
//! use std::net::SocketAddr;
//! use std::time::{Duration, Instant};
//! use net_sim::{v4, LinkConfig, Sim, SimNode, Transmit};
//!
//! /// Sends one datagram to `peer`, counts what comes back.
//! struct Toy { peer: SocketAddr, to_send: u32, got: u32 }
//! impl SimNode for Toy {
//!     fn handle_datagram(&mut self, _: Instant, _: SocketAddr, _: &mut [u8]) {
//!         self.got += 1;
//!     }
//!     fn poll_transmit(&mut self, _: Instant, buf: &mut [u8]) -> Option<Transmit> {
//!         if self.to_send == 0 { return None; }
//!         self.to_send -= 1;
//!         buf[0] = 42;
//!         Some(Transmit { dst: self.peer, len: 1 })
//!     }
//!     fn poll_timeout(&mut self) -> Option<Instant> { None }
//!     fn handle_timeout(&mut self, _: Instant) {}
//! }
//!
//! let (a, b) = (v4(1, 1000), v4(2, 1000));
//! let mut sim = Sim::new(7);
//! sim.set_default_link(LinkConfig::default().with_delay(Duration::from_millis(5)));
//! sim.add_node(a, Toy { peer: b, to_send: 1, got: 0 });
//! sim.add_node(b, Toy { peer: a, to_send: 0, got: 0 });
//! sim.run_until(Duration::from_secs(1), |s| s.node(b).got == 1).unwrap();
//! assert_eq!(sim.elapsed(), Duration::from_millis(5));
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Instant;

mod link;
mod queue;
mod sim;

pub use link::{Fate, InvalidLinkConfig, LinkConfig, LinkStats, DUPLICATE_GAP};
pub use sim::{
    FateTap, Sim, Tap, DEFAULT_DRAIN_LIMIT, DEFAULT_TIMEOUT_SPIN_LIMIT, TRANSMIT_BUF_LEN,
};

/// One datagram a node wants sent: its first `len` bytes were written into
/// the buffer the simulator passed to [`SimNode::poll_transmit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Destination address.
    pub dst: SocketAddr,
    /// Payload length in bytes (at most the buffer length).
    pub len: usize,
}

/// What the simulator drives: implemented by test harnesses that wrap a
/// protocol endpoint plus app logic. Implementations must be deterministic
/// (no wall clock, no unseeded randomness) for runs to replay.
pub trait SimNode {
    /// A datagram arrived from `src`. `data` is the node's own copy and may
    /// be modified in place (e.g. decrypted in place).
    fn handle_datagram(&mut self, now: Instant, src: SocketAddr, data: &mut [u8]);

    /// Next datagram to send, written into `buf` ([`TRANSMIT_BUF_LEN`]
    /// bytes). `None` when there is nothing to send right now.
    fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit>;

    /// Earliest time the node wants [`SimNode::handle_timeout`]; `None` means
    /// no timer. Re-queried after every interaction, so it may change freely.
    fn poll_timeout(&mut self) -> Option<Instant>;

    /// Called at (or after) the time returned by `poll_timeout`.
    fn handle_timeout(&mut self, now: Instant);
}

impl<T: SimNode + ?Sized> SimNode for Box<T> {
    fn handle_datagram(&mut self, now: Instant, src: SocketAddr, data: &mut [u8]) {
        (**self).handle_datagram(now, src, data)
    }

    fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        (**self).poll_transmit(now, buf)
    }

    fn poll_timeout(&mut self) -> Option<Instant> {
        (**self).poll_timeout()
    }

    fn handle_timeout(&mut self, now: Instant) {
        (**self).handle_timeout(now)
    }
}

/// Why a run stopped without reaching its goal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SimError {
    /// Virtual time reached the run's limit first.
    TimeLimit,
    /// Nothing left to do (nothing in flight, no timers, nothing to send)
    /// before the goal was reached.
    Idle,
    /// The node at `addr` would spin forever: its timer stayed due after
    /// the spin limit of consecutive `handle_timeout` calls at one virtual
    /// instant without receiving a datagram, or it produced more datagrams
    /// in one step than the drain limit. A node bug, surfaced instead of
    /// hanging the test.
    Livelock {
        /// The misbehaving node.
        addr: SocketAddr,
    },
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SimError::TimeLimit => f.write_str("simulation reached its virtual time limit"),
            SimError::Idle => f.write_str("simulation went idle before its goal"),
            SimError::Livelock { addr } => write!(f, "node {addr} livelocked at one instant"),
        }
    }
}

impl std::error::Error for SimError {}

/// `127.0.0.last:port`, a convenient node address for tests.
pub fn v4(last: u8, port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, last), port))
}
