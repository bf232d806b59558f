//! UDP drivers for Net: the only crate of the engine that makes syscalls.
//!
//! A core's event loop owns one [`Driver`]: one UDP socket of an
//! `SO_REUSEPORT` group, harvested and flushed in batches. Three
//! implementations share the contract ([`DriverKind`]):
//!
//! * [`DriverKind::Uring`]: io_uring multishot `recvmsg` with a
//!   provided-buffer ring, sends queued as SQEs and submitted with the next
//!   wait: one `io_uring_enter` per loop iteration, none while spinning idle;
//! * [`DriverKind::Mmsg`]: `recvmmsg`/`sendmmsg`, `ppoll` to park;
//! * [`DriverKind::Portable`]: `std::net::UdpSocket`, one syscall per datagram;
//! * [`DriverKind::Memory`]: no socket at all: ports of an in-process
//!   [`MemNet`], for tests (bound with [`MemNet::bind`], never by
//!   [`open_group`]).
//!
//! [`open_group`] binds the sockets, attaches the steering program
//! ([`Steering`], documented in its module: which payload bytes pick the
//! socket, and what happens to runt datagrams) and picks the best driver the
//! kernel allows ([`DriverChoice::Auto`]: uring → mmsg → portable).
//!
//! # Loop contract
//!
//! ```text
//! loop {
//!     let n = d.recv(timeout)?;            // park here when idle
//!     for i in 0..n { let (src, bytes) = d.rx(i); /* decrypt in place */ }
//!     while let Some(slot) = d.tx_slot() { /* write */ d.tx_commit(dst, len); }
//!     d.flush()?;                          // uring: submitted by the next recv
//! }
//! ```
//!
//! Send and receive failures at run time are never errors of these calls:
//! the datagram is dropped and counted ([`DriverStats`]). No call allocates
//! after open and none takes a lock; a [`Waker`] uses two atomics and, only
//! when the driver is really parked, one eventfd write (or loopback datagram).

#![warn(missing_docs)]

#[cfg(feature = "alloc-counter")]
pub mod alloc_counter;
mod config;
mod error;
mod gro;
mod mem;
mod mmsg;
mod portable;
mod sock;
mod steering;
mod txq;
mod uring;
mod waker;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::time::Duration;

pub use config::{
    DriverChoice, DriverConfig, DriverKind, DriverStats, ParseDriverError, DRIVER_ENV, MAX_BATCH,
    MAX_UDP_PAYLOAD,
};
pub use error::IoError;
pub use mem::MemNet;
pub use sock::SOCKET_BUFFER_BYTES;
pub use steering::{core_bits_for, Steering, MAX_GROUP};
pub use waker::Waker;

/// One core's UDP endpoint. Owned and used by exactly one thread (`Send`,
/// not `Sync`).
pub trait Driver: Send {
    /// Which implementation this is.
    fn kind(&self) -> DriverKind;
    /// The bound address (with the port the group got).
    fn local_addr(&self) -> SocketAddr;
    /// A transmit slot of `max_datagram` bytes to write the next datagram
    /// into; `None` when the tx batch is full (call `flush`).
    fn tx_slot(&mut self) -> Option<&mut [u8]>;
    /// Queues the datagram just written into the slot from `tx_slot` (its
    /// first `len` bytes) to `dst`. `len > max_datagram`, or a commit with
    /// no free slot, drops it and counts a `tx_errors`.
    fn tx_commit(&mut self, dst: SocketAddr, len: usize);
    /// Sends everything queued. The uring driver defers the kernel entry to
    /// the next `recv` (one `io_uring_enter` per loop iteration); `flush`
    /// followed by `recv(Some(ZERO))` has always sent them. Datagrams the
    /// kernel refuses are counted in `tx_errors` and dropped, never retried
    /// forever.
    fn flush(&mut self) -> std::io::Result<()>;
    /// Receives up to `batch` datagrams. Returns at once if any are ready;
    /// otherwise waits up to `timeout` (`None` = until a datagram or a wake;
    /// `Some(ZERO)` = never block) or until [`Waker::wake`]. Returns the
    /// number received (0 on timeout or wake). Counts a park when it blocks.
    /// Buffers handed out by the previous `recv` are reused.
    fn recv(&mut self, timeout: Option<Duration>) -> std::io::Result<usize>;
    /// The `i`-th datagram of the last `recv` (`i` < its count): source and
    /// a mutable view of its bytes (decrypted in place by the caller). Valid
    /// until the next `recv`. An out-of-range `i` yields an empty slice.
    fn rx(&mut self, i: usize) -> (SocketAddr, &mut [u8]);
    /// A handle that wakes this driver from another thread.
    fn waker(&self) -> Waker;
    /// The counters so far.
    fn stats(&self) -> DriverStats;
}

/// Opens one driver per socket of a reuseport group bound to `addr` (port 0
/// allowed: the first socket picks the port, the rest bind the same port).
///
/// The drivers are returned in group-index order: the steering program
/// returns these indices, so driver `i` belongs on core `i`. `sockets > 1`
/// attaches `steering` (validated: `sockets` ≤ 256). All drivers are of one
/// kind: with [`DriverChoice::Auto`] the first socket tries uring → mmsg →
/// portable, downgrading when the kernel refuses a kind (EINVAL, ENOSYS,
/// EPERM, EOPNOTSUPP, ENOMEM), with a `tracing::warn` and a count in
/// `stats().downgrades`; [`DriverChoice::Force`] fails with
/// [`IoError::Unavailable`] instead. `Force(DriverKind::Memory)` always
/// fails with `Unavailable`: memory drivers live on a network handle and are
/// bound with [`MemNet::bind_group`].
pub fn open_group(
    addr: SocketAddr,
    sockets: usize,
    steering: Steering,
    choice: DriverChoice,
    cfg: &DriverConfig,
) -> Result<Vec<Box<dyn Driver>>, IoError> {
    cfg.validate().map_err(|m| IoError::Io(error::invalid(m)))?;
    if choice == DriverChoice::Force(DriverKind::Memory) {
        return Err(IoError::Unavailable {
            kind: DriverKind::Memory,
            reason: "the in-memory driver needs a network handle: bind it with net_io::MemNet \
                     (MeshNodeConfig::with_memory_network for a node)"
                .into(),
        });
    }
    if sockets == 0 || sockets > MAX_GROUP {
        return Err(IoError::Io(error::invalid(format!(
            "group of {sockets} sockets not in 1..={MAX_GROUP}"
        ))));
    }
    let steer = (sockets > 1).then_some(steering);
    if let Some(s) = &steer {
        s.validate(sockets).map_err(IoError::Steering)?;
    }
    let socks = sock::bind_group(addr, sockets, cfg.busy_poll_us).map_err(IoError::Bind)?;
    if let Some(s) = &steer {
        s.attach(&socks[0], sockets).map_err(IoError::Steering)?;
    }
    let (kind, first, downgrades) = open_first(&socks[0], steer.as_ref(), choice, cfg)?;
    let mut drivers = Vec::with_capacity(sockets);
    drivers.push(first);
    for (i, s) in socks.iter().enumerate().skip(1) {
        let d = open_kind(kind, s, i, steer.as_ref(), cfg, downgrades)
            .map_err(|e| classify(kind, e))?;
        drivers.push(d);
    }
    Ok(drivers)
}

/// Convenience: one socket, no steering.
pub fn open(
    addr: SocketAddr,
    choice: DriverChoice,
    cfg: &DriverConfig,
) -> Result<Box<dyn Driver>, IoError> {
    let mut v = open_group(addr, 1, Steering::default(), choice, cfg)?;
    v.pop()
        .ok_or_else(|| IoError::Io(std::io::Error::other("no driver opened")))
}

/// Opens the first socket's driver, trying the candidate kinds in order.
fn open_first(
    sock: &socket2::Socket,
    steering: Option<&Steering>,
    choice: DriverChoice,
    cfg: &DriverConfig,
) -> Result<(DriverKind, Box<dyn Driver>, u64), IoError> {
    let mut downgrades = 0;
    let candidates = choice.candidates();
    for (n, &kind) in candidates.iter().enumerate() {
        match open_kind(kind, sock, 0, steering, cfg, downgrades) {
            Ok(d) => return Ok((kind, d, downgrades)),
            Err(e) if error::is_unsupported(&e) && n + 1 < candidates.len() => {
                tracing::warn!(%kind, error = %e, "net-io: driver unavailable; downgrading");
                downgrades += 1;
            }
            Err(e) => return Err(classify(kind, e)),
        }
    }
    Err(IoError::Io(std::io::Error::other("no driver kind to try")))
}

/// Maps a driver setup failure to the public error.
fn classify(kind: DriverKind, e: std::io::Error) -> IoError {
    if error::is_unsupported(&e) {
        IoError::Unavailable {
            kind,
            reason: e.to_string(),
        }
    } else {
        IoError::Io(e)
    }
}

fn open_kind(
    kind: DriverKind,
    sock: &socket2::Socket,
    index: usize,
    steering: Option<&Steering>,
    cfg: &DriverConfig,
    downgrades: u64,
) -> std::io::Result<Box<dyn Driver>> {
    // GRO only where one core receives everything and the driver reads the
    // segment size (see the `gro` module); set either way, so a socket a
    // failed attempt turned it on for is reset before a downgrade.
    let wants_gro = cfg.gro && steering.is_none() && kind != DriverKind::Portable;
    let gro = gro::set(sock, wants_gro) && wants_gro;
    Ok(match kind {
        DriverKind::Uring => {
            let mut d = uring::UringDriver::new(sock, cfg, gro)?;
            d.stats_mut().downgrades = downgrades;
            Box::new(d)
        }
        DriverKind::Mmsg => {
            let mut d = mmsg::MmsgDriver::new(sock, cfg, gro)?;
            d.stats_mut().downgrades = downgrades;
            Box::new(d)
        }
        DriverKind::Portable => {
            let mut d = portable::PortableDriver::new(sock.try_clone()?, index, steering, cfg)?;
            d.stats_mut().downgrades = downgrades;
            Box::new(d)
        }
        DriverKind::Memory => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "the in-memory driver is bound with net_io::MemNet",
            ))
        }
    })
}
