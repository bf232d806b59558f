//! Cross-thread wake-up of a driver parked in `recv`.
//!
//! # Protocol
//!
//! Two flags, both `SeqCst`, in the style of Dekker's algorithm:
//!
//! * `wake()`: `pending = true`, then `if parked.swap(false) { notify }`;
//! * the driver, before blocking: `parked = true`, then `if pending` →
//!   don't block; after blocking: `parked = false`, `pending.swap(false)`.
//!
//! In the single total order of `SeqCst` operations either the waker's swap
//! sees `parked == true` (and notifies, so the kernel wait returns), or the
//! driver's load sees `pending == true` (and never blocks). So a wake is
//! never lost, and a wake while the driver is not parked costs one store and
//! one swap: no syscall. At most one notification is sent per park.
//!
//! The notification is an eventfd write (uring, mmsg); for the portable
//! driver, which can only block on its socket, a datagram sent to the
//! driver's own socket from a private loopback socket; for the in-memory
//! driver ([`crate::MemNet`]), a flag set under its port's lock and a
//! `Condvar` notify.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;

/// How a parked driver is notified.
#[derive(Debug)]
pub(crate) enum Notify {
    /// Write 1 to this eventfd (closed when the last `Arc` drops).
    EventFd(OwnedFd),
    /// Send `payload` from `sock` (connected to the driver's socket).
    Datagram {
        /// A private socket connected to the driver's address.
        sock: UdpSocket,
        /// Shaped so the steering program routes it to the right socket.
        payload: Box<[u8]>,
    },
    /// Set the in-memory port's wake flag and notify its `Condvar`.
    Memory(Arc<crate::mem::Port>),
}

/// State shared between a driver and its [`Waker`]s.
#[derive(Debug)]
pub(crate) struct WakeShared {
    parked: AtomicBool,
    pending: AtomicBool,
    notify: Notify,
}

impl WakeShared {
    pub(crate) fn new(notify: Notify) -> Arc<Self> {
        Arc::new(WakeShared {
            parked: AtomicBool::new(false),
            pending: AtomicBool::new(false),
            notify,
        })
    }

    /// The eventfd, for the drivers that wait on it.
    pub(crate) fn eventfd(&self) -> Option<std::os::fd::RawFd> {
        match &self.notify {
            Notify::EventFd(fd) => Some(fd.as_raw_fd()),
            Notify::Datagram { .. } | Notify::Memory(_) => None,
        }
    }

    /// Driver side, just before blocking. Returns `false` (and does not
    /// leave the parked flag set) when a wake is already pending: the driver
    /// must not block then.
    pub(crate) fn park_begin(&self) -> bool {
        self.parked.store(true, SeqCst);
        if self.pending.load(SeqCst) {
            self.parked.store(false, SeqCst);
            return false;
        }
        true
    }

    /// Driver side, after the kernel wait returned.
    pub(crate) fn park_end(&self) {
        self.parked.store(false, SeqCst);
    }

    /// Driver side: consumes a pending wake. True if there was one.
    pub(crate) fn take_pending(&self) -> bool {
        self.pending.swap(false, SeqCst)
    }

    fn wake(&self) {
        self.pending.store(true, SeqCst);
        if self.parked.swap(false, SeqCst) {
            match &self.notify {
                Notify::EventFd(fd) => crate::sock::eventfd_signal(fd.as_raw_fd()),
                Notify::Datagram { sock, payload } => {
                    // Best effort: if the driver's receive buffer is full the
                    // datagram may be dropped, but then the socket is readable
                    // and the driver is not blocked anyway.
                    let _ = sock.send(payload);
                }
                Notify::Memory(port) => port.notify_wake(),
            }
        }
    }
}

/// Wakes a driver parked in `recv` from another thread. Cheap to clone,
/// `Send + Sync`. A wake while the driver is not parked costs two atomic
/// operations and no syscall; it makes the driver's next blocking `recv`
/// return at once (with 0 if nothing else is ready). Wakes coalesce.
#[derive(Clone, Debug)]
pub struct Waker {
    shared: Arc<WakeShared>,
}

impl Waker {
    pub(crate) fn new(shared: &Arc<WakeShared>) -> Self {
        Waker {
            shared: Arc::clone(shared),
        }
    }

    /// Makes the driver's current or next blocking `recv` return.
    pub fn wake(&self) {
        self.shared.wake();
    }
}

/// Builds the portable driver's datagram notifier for a socket bound to
/// `local` with group index `group_index`. With steering, the payload is
/// shaped like a non-initiation packet whose index field holds the group
/// index, so the steering program routes it to this very socket; without,
/// it is one byte. Returns the notifier and the address it sends from (the
/// driver discards datagrams from that address).
pub(crate) fn datagram_notify(
    local: SocketAddr,
    group_index: usize,
    steering: Option<&crate::Steering>,
) -> std::io::Result<(Notify, SocketAddr)> {
    let target = crate::sock::reachable(local);
    let bind: SocketAddr = if target.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = UdpSocket::bind(bind)?;
    sock.connect(target)?;
    sock.set_nonblocking(true)?;
    let from = sock.local_addr()?;
    let payload: Box<[u8]> = match steering {
        None => Box::new([0u8]),
        Some(st) => {
            let off = st.index_offset as usize;
            let mut p = vec![0u8; off + 4];
            p[0] = if st.init_type == 0 { 0xff } else { 0 };
            p[off..off + 4].copy_from_slice(&(group_index as u32).to_be_bytes());
            p.into_boxed_slice()
        }
    };
    Ok((Notify::Datagram { sock, payload }, from))
}

/// What the shared blocking receive ([`recv_parked`]) needs from a driver
/// that waits with a readiness call (mmsg, portable). io_uring waits on its
/// completion queue instead and has its own loop.
pub(crate) trait Parking {
    /// The driver's wake state.
    fn wake_state(&self) -> &WakeShared;
    /// The driver's counters.
    fn counters(&mut self) -> &mut crate::DriverStats;
    /// Forgets the previous receive batch.
    fn clear_rx(&mut self);
    /// Takes whatever datagrams are ready, without blocking.
    fn harvest(&mut self) -> std::io::Result<()>;
    /// Blocks until the socket is readable, a wake arrives, or `left` passes.
    fn wait(&mut self, left: Option<std::time::Duration>) -> std::io::Result<()>;
    /// Whether the current batch holds any datagram.
    fn has_rx(&self) -> bool;
    /// Closes the batch and returns its size.
    fn finish(&mut self) -> usize;
}

/// `Driver::recv` for [`Parking`] drivers: returns at once if anything is
/// ready or the timeout is zero; otherwise parks (announcing it, so a
/// concurrent `Waker::wake` is never lost) until data, a wake or the timeout.
pub(crate) fn recv_parked<P: Parking>(
    p: &mut P,
    timeout: Option<std::time::Duration>,
) -> std::io::Result<usize> {
    use std::time::{Duration, Instant};
    p.clear_rx();
    p.harvest()?;
    if p.has_rx() || timeout == Some(Duration::ZERO) {
        return Ok(p.finish());
    }
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    loop {
        let left = match deadline {
            None => None,
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(l) if !l.is_zero() => Some(l),
                _ => return Ok(p.finish()),
            },
        };
        if !p.wake_state().park_begin() {
            p.wake_state().take_pending();
            p.counters().wakes += 1;
            return Ok(p.finish());
        }
        p.counters().parks += 1;
        let r = p.wait(left);
        p.wake_state().park_end();
        r?;
        let woke = p.wake_state().take_pending();
        p.counters().wakes += u64::from(woke);
        p.harvest()?;
        if woke || p.has_rx() {
            return Ok(p.finish());
        }
    }
}
