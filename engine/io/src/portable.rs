//! The portable driver: `std::net::UdpSocket`, one syscall per datagram.
//!
//! The socket is nonblocking while draining; to wait it is switched to
//! blocking with a read timeout for one `recv_from` (two extra syscalls per
//! park, acceptable for a fallback). Wakes arrive as datagrams from a
//! private loopback socket ([`crate::waker`]) and are discarded.

use std::io::{self, ErrorKind};
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use crate::waker::{datagram_notify, WakeShared};
use crate::{Driver, DriverConfig, DriverKind, DriverStats, Steering, Waker};

/// See the module docs.
pub(crate) struct PortableDriver {
    sock: UdpSocket,
    local: SocketAddr,
    /// `batch` receive slots of `max_datagram + 1` bytes: the extra byte
    /// detects (and drops) datagrams that do not fit.
    rx_buf: Vec<u8>,
    rx_slot: usize,
    max_datagram: usize,
    batch: usize,
    /// Source and length of each datagram of the last `recv`.
    rx_meta: Vec<(SocketAddr, usize)>,
    tx: crate::txq::TxQueue,
    wake: Arc<WakeShared>,
    wake_from: SocketAddr,
    nonblocking: bool,
    read_timeout: Option<Duration>,
    stats: DriverStats,
}

impl PortableDriver {
    pub(crate) fn new(
        sock: socket2::Socket,
        group_index: usize,
        steering: Option<&Steering>,
        cfg: &DriverConfig,
    ) -> io::Result<Self> {
        let sock: UdpSocket = sock.into();
        sock.set_nonblocking(true)?;
        let local = sock.local_addr()?;
        let (notify, wake_from) = datagram_notify(local, group_index, steering)?;
        let rx_slot = cfg.max_datagram + 1;
        Ok(PortableDriver {
            sock,
            local,
            rx_buf: vec![0u8; rx_slot * cfg.batch],
            rx_slot,
            max_datagram: cfg.max_datagram,
            batch: cfg.batch,
            rx_meta: Vec::with_capacity(cfg.batch),
            tx: crate::txq::TxQueue::new(cfg.batch, cfg.max_datagram),
            wake: WakeShared::new(notify),
            wake_from,
            nonblocking: true,
            read_timeout: None,
            stats: DriverStats::default(),
        })
    }

    pub(crate) fn stats_mut(&mut self) -> &mut DriverStats {
        &mut self.stats
    }

    fn set_nonblocking(&mut self, on: bool) -> io::Result<()> {
        if self.nonblocking != on {
            self.stats.syscalls += 1;
            self.sock.set_nonblocking(on)?;
            self.nonblocking = on;
        }
        Ok(())
    }

    /// Files one received datagram of `n` bytes in the next slot. Returns
    /// true if it was a wake notification.
    fn accept(&mut self, src: SocketAddr, n: usize) -> bool {
        if src == self.wake_from {
            return true;
        }
        if n > self.max_datagram {
            self.stats.rx_errors += 1;
        } else {
            self.rx_meta.push((src, n));
        }
        false
    }

    /// Reads without blocking until `batch` datagrams or `WouldBlock`.
    fn drain(&mut self) -> io::Result<()> {
        self.set_nonblocking(true)?;
        while self.rx_meta.len() < self.batch {
            let i = self.rx_meta.len();
            let buf = &mut self.rx_buf[i * self.rx_slot..(i + 1) * self.rx_slot];
            self.stats.syscalls += 1;
            match self.sock.recv_from(buf) {
                Ok((n, src)) => {
                    self.accept(src, n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if is_transient(&e) => self.stats.rx_errors += 1,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// One blocking receive of at most `timeout` (None = forever).
    fn wait_one(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.set_nonblocking(false)?;
        if self.read_timeout != timeout {
            self.stats.syscalls += 1;
            self.sock.set_read_timeout(timeout)?;
            self.read_timeout = timeout;
        }
        let buf = &mut self.rx_buf[..self.rx_slot];
        self.stats.syscalls += 1;
        match self.sock.recv_from(buf) {
            Ok((n, src)) => {
                self.accept(src, n);
                Ok(())
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) =>
            {
                Ok(())
            }
            Err(e) if is_transient(&e) => {
                self.stats.rx_errors += 1;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn finish(&mut self) -> usize {
        let n = self.rx_meta.len();
        if n > 0 {
            self.stats.rx_batches += 1;
            self.stats.rx_datagrams += n as u64;
        }
        n
    }

    fn send_one(&mut self, i: usize) {
        let it = self.tx.items()[i];
        let mut retried = false;
        loop {
            self.stats.syscalls += 1;
            match self.sock.send_to(self.tx.data(&it), it.dst) {
                Ok(_) => {
                    self.stats.tx_datagrams += 1;
                    return;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if !retried && is_full(&e) => {
                    retried = true;
                    std::thread::yield_now();
                }
                Err(e) => {
                    tracing::debug!(error = %e, dst = %it.dst, "net-io: portable send dropped");
                    self.stats.tx_errors += 1;
                    return;
                }
            }
        }
    }
}

/// Errors a UDP socket reports for earlier ICMP feedback or local routing:
/// counted and skipped, never fatal.
pub(crate) fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::ECONNREFUSED
                | libc::EHOSTUNREACH
                | libc::ENETUNREACH
                | libc::EHOSTDOWN
                | libc::ENETDOWN
                | libc::ECONNRESET
                | libc::EMSGSIZE
                | libc::EPROTO
        )
    )
}

/// The socket buffer is full: worth one retry.
pub(crate) fn is_full(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::ENOBUFS))
}

impl Driver for PortableDriver {
    fn kind(&self) -> DriverKind {
        DriverKind::Portable
    }

    fn local_addr(&self) -> SocketAddr {
        self.local
    }

    fn tx_slot(&mut self) -> Option<&mut [u8]> {
        self.tx.slot()
    }

    fn tx_commit(&mut self, dst: SocketAddr, len: usize) {
        if !self.tx.commit(dst, len) {
            self.stats.tx_errors += 1;
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.tx.is_empty() {
            return Ok(());
        }
        self.stats.tx_batches += 1;
        for i in 0..self.tx.items().len() {
            self.send_one(i);
        }
        self.tx.clear();
        Ok(())
    }

    fn recv(&mut self, timeout: Option<Duration>) -> io::Result<usize> {
        crate::waker::recv_parked(self, timeout)
    }

    fn rx(&mut self, i: usize) -> (SocketAddr, &mut [u8]) {
        match self.rx_meta.get(i) {
            Some(&(src, n)) => (
                src,
                &mut self.rx_buf[i * self.rx_slot..i * self.rx_slot + n],
            ),
            None => (self.local, &mut []),
        }
    }

    fn waker(&self) -> Waker {
        Waker::new(&self.wake)
    }

    fn stats(&self) -> DriverStats {
        self.stats
    }
}

impl crate::waker::Parking for PortableDriver {
    fn wake_state(&self) -> &crate::waker::WakeShared {
        &self.wake
    }
    fn counters(&mut self) -> &mut crate::DriverStats {
        &mut self.stats
    }
    fn clear_rx(&mut self) {
        self.rx_meta.clear();
    }
    fn harvest(&mut self) -> io::Result<()> {
        PortableDriver::drain(self)
    }
    fn wait(&mut self, left: Option<Duration>) -> io::Result<()> {
        self.wait_one(left)
    }
    fn has_rx(&self) -> bool {
        !self.rx_meta.is_empty()
    }
    fn finish(&mut self) -> usize {
        PortableDriver::finish(self)
    }
}
