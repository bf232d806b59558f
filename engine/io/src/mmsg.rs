//! The `recvmmsg`/`sendmmsg` driver.
//!
//! One `recvmmsg` harvests up to `batch` messages (with GRO each may be a
//! coalesced buffer, cut into datagrams that `recv` hands out `batch` at a
//! time before harvesting again); one `sendmmsg` sends a
//! whole flush (GSO runs as single messages). The socket is nonblocking; to
//! park, `ppoll` waits on the socket and the waker's eventfd. All header,
//! iovec and address arrays are allocated at open and only rewritten.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use crate::gro::{self, CTRL_LEN, GRO_SLOT, MAX_GRO_SEGMENTS};
use crate::portable::{is_full, is_transient};
use crate::sock::{self, errno, NAME_LEN};
use crate::txq::{Run, TxHeaders, TxQueue};
use crate::waker::{Notify, WakeShared};
use crate::{Driver, DriverConfig, DriverKind, DriverStats, Waker};

/// Receive-side arrays: `hdrs[i]` points at `iov[i]` (slot `i` of `bufs`),
/// `names[i]` and, with GRO, `ctrl[i]` (its control buffer).
struct RxArrays {
    hdrs: Vec<libc::mmsghdr>,
    iov: Vec<libc::iovec>,
    names: Vec<libc::sockaddr_in6>,
    bufs: Vec<u8>,
    slot: usize,
    /// `CTRL_LEN` bytes per header when GRO is on, else empty.
    ctrl: Vec<u8>,
}

impl RxArrays {
    fn new(batch: usize, slot: usize, gro: bool) -> Self {
        RxArrays {
            // SAFETY: mmsghdr is a C struct of integers and pointers; all
            // zero (null pointers, zero lengths) is a valid value.
            hdrs: (0..batch).map(|_| unsafe { std::mem::zeroed() }).collect(),
            iov: (0..batch)
                .map(|_| libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                })
                .collect(),
            names: (0..batch).map(|_| sock::zero_sockaddr()).collect(),
            bufs: vec![0u8; batch * slot],
            slot,
            ctrl: if gro {
                vec![0u8; batch * CTRL_LEN]
            } else {
                Vec::new()
            },
        }
    }

    /// Points header `i` at `iov[i]` (slot `i` of `bufs`), `names[i]` and
    /// its control buffer, and resets the lengths the kernel overwrites.
    /// Pointers are derived afresh each call, so they are never stale.
    fn prepare(&mut self) {
        let base = self.bufs.as_mut_ptr();
        let names = self.names.as_mut_ptr();
        let iov = self.iov.as_mut_ptr();
        let ctrl = self.ctrl.as_mut_ptr();
        let ctrl_len = if self.ctrl.is_empty() { 0 } else { CTRL_LEN };
        for (i, h) in self.hdrs.iter_mut().enumerate() {
            // SAFETY: `i < batch` = length of `iov` and `names`, so these
            // element pointers are in bounds; nothing else borrows them now.
            unsafe {
                *iov.add(i) = libc::iovec {
                    iov_base: base.wrapping_add(i * self.slot).cast(),
                    iov_len: self.slot,
                };
                h.msg_hdr.msg_iov = iov.add(i);
                h.msg_hdr.msg_name = names.add(i).cast();
            }
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_namelen = NAME_LEN as libc::socklen_t;
            // In bounds of `ctrl` (batch * CTRL_LEN bytes) when GRO is on;
            // a null pointer with length 0 otherwise.
            h.msg_hdr.msg_control = if ctrl_len == 0 {
                std::ptr::null_mut()
            } else {
                ctrl.wrapping_add(i * CTRL_LEN).cast()
            };
            h.msg_hdr.msg_controllen = ctrl_len;
            h.msg_hdr.msg_flags = 0;
            h.msg_len = 0;
        }
    }

    /// The control data the kernel wrote for header `i` (empty without GRO).
    fn control(&self, i: usize) -> &[u8] {
        let n = self.hdrs[i].msg_hdr.msg_controllen.min(CTRL_LEN);
        self.ctrl.get(i * CTRL_LEN..i * CTRL_LEN + n).unwrap_or(&[])
    }
}

/// See the module docs.
pub(crate) struct MmsgDriver {
    /// Owns the descriptor `fd` (closed on drop).
    _sock: socket2::Socket,
    fd: RawFd,
    efd: RawFd,
    local: SocketAddr,
    batch: usize,
    max_datagram: usize,
    rx: RxArrays,
    /// Source, offset in `rx.bufs` and length of each accepted datagram of
    /// the last `recvmmsg` (a GRO buffer yields several). `recv` hands them
    /// out `batch` at a time, from `rx_pos`, and harvests again only when
    /// all are handed out.
    rx_meta: Vec<(SocketAddr, u32, u32)>,
    /// First datagram of the current batch in `rx_meta`.
    rx_pos: usize,
    /// Datagrams in the current batch.
    rx_n: usize,
    tx: TxQueue,
    txh: TxHeaders,
    /// The run each `txh` entry of the current `sendmmsg` carries.
    runs: Vec<Run>,
    gso: bool,
    wake: Arc<WakeShared>,
    stats: DriverStats,
}

// SAFETY: the raw pointers inside `rx` and `txh` point only into heap
// buffers owned by this same struct (never shared), and are dereferenced
// only by the kernel during syscalls this driver makes from whichever single
// thread owns it. Moving the driver to another thread moves that ownership.
unsafe impl Send for MmsgDriver {}

impl MmsgDriver {
    /// Sets up the driver on (a duplicate of) the bound socket `s`.
    /// With `gro` (already set on the socket) each receive slot holds a
    /// coalesced buffer and is split by segment size.
    pub(crate) fn new(s: &socket2::Socket, cfg: &DriverConfig, gro: bool) -> io::Result<Self> {
        let sock = s.try_clone()?;
        sock.set_nonblocking(true)?;
        let local = sock::local_addr(&sock)?;
        let wake = WakeShared::new(Notify::EventFd(sock::eventfd(true)?));
        let mut d = MmsgDriver {
            fd: sock.as_raw_fd(),
            efd: wake.eventfd().unwrap_or(-1),
            _sock: sock,
            local,
            batch: cfg.batch,
            max_datagram: cfg.max_datagram,
            rx: RxArrays::new(
                cfg.batch,
                if gro { GRO_SLOT } else { cfg.max_datagram },
                gro,
            ),
            rx_meta: Vec::with_capacity(cfg.batch * if gro { MAX_GRO_SEGMENTS } else { 1 }),
            rx_pos: 0,
            rx_n: 0,
            tx: TxQueue::new(cfg.batch, cfg.max_datagram),
            txh: TxHeaders::new(cfg.batch),
            runs: vec![Run::default(); cfg.batch],
            gso: cfg.gso && gso_supported(&local),
            wake,
            stats: DriverStats::default(),
        };
        d.probe()?;
        Ok(d)
    }

    pub(crate) fn stats_mut(&mut self) -> &mut DriverStats {
        &mut self.stats
    }

    /// Checks that the kernel (or a seccomp filter) allows `recvmmsg`,
    /// without consuming anything: one peeking, nonblocking call.
    fn probe(&mut self) -> io::Result<()> {
        self.rx.prepare();
        self.stats.syscalls += 1;
        // SAFETY: as in `harvest`, with a vector length of 1 (≤ batch).
        let r = unsafe {
            libc::recvmmsg(
                self.fd,
                self.rx.hdrs.as_mut_ptr(),
                1,
                libc::MSG_DONTWAIT | libc::MSG_PEEK,
                std::ptr::null_mut(),
            )
        };
        match r {
            r if r >= 0 => Ok(()),
            _ if errno() == libc::EAGAIN => Ok(()),
            _ => Err(io::Error::last_os_error()),
        }
    }

    /// One nonblocking `recvmmsg`, unless datagrams of the previous one are
    /// still to be handed out; appends accepted datagrams to `rx_meta`.
    fn harvest(&mut self) -> io::Result<()> {
        if self.rx_pos < self.rx_meta.len() {
            return Ok(());
        }
        self.rx.prepare();
        loop {
            self.stats.syscalls += 1;
            // SAFETY: `hdrs` holds `batch` initialised mmsghdrs whose name and
            // iovec pointers target `names`/`bufs` slots of this struct, each
            // sized as declared (NAME_LEN, `slot`); the kernel writes at most
            // that much into each. No timeout pointer is passed.
            let r = unsafe {
                libc::recvmmsg(
                    self.fd,
                    self.rx.hdrs.as_mut_ptr(),
                    self.batch as libc::c_uint,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if r >= 0 {
                self.accept(r as usize);
                return Ok(());
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EAGAIN) => return Ok(()),
                Some(libc::EINTR) => continue,
                _ if is_transient(&e) => {
                    self.stats.rx_errors += 1;
                    continue;
                }
                _ => return Err(e),
            }
        }
    }

    fn accept(&mut self, n: usize) {
        for i in 0..n {
            let h = &self.rx.hdrs[i];
            let truncated = h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            let len = h.msg_len as usize;
            let src = sock::sockaddr_from_raw(&self.rx.names[i], h.msg_hdr.msg_namelen);
            let Some(src) = src.filter(|_| !truncated) else {
                self.stats.rx_errors += 1;
                continue;
            };
            let seg = gro::segment_size(self.rx.control(i));
            let base = i * self.rx.slot;
            let (cut, refused) = gro::Cut::new(len, seg, self.max_datagram);
            self.stats.rx_errors += refused;
            self.stats.gro_buffers += u64::from(cut.remaining() > 1);
            for (off, l) in cut {
                self.rx_meta.push((src, (base + off) as u32, l as u32));
            }
        }
    }

    /// `ppoll` on the socket and the eventfd for at most `left`.
    fn poll(&mut self, left: Option<Duration>) -> io::Result<()> {
        let mut fds = [
            libc::pollfd {
                fd: self.fd,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: self.efd,
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let ts = left.map(|d| libc::timespec {
            tv_sec: d.as_secs().min(i64::MAX as u64) as libc::time_t,
            tv_nsec: d.subsec_nanos() as libc::c_long,
        });
        let tsp = ts
            .as_ref()
            .map_or(std::ptr::null(), |t| t as *const libc::timespec);
        self.stats.syscalls += 1;
        // SAFETY: `fds` is a live array of 2 pollfds; `tsp` is null or points
        // at the live local `ts`; no signal mask is passed.
        let r = unsafe { libc::ppoll(fds.as_mut_ptr(), 2, tsp, std::ptr::null()) };
        if r < 0 && errno() != libc::EINTR {
            return Err(io::Error::last_os_error());
        }
        if fds[1].revents != 0 {
            self.stats.syscalls += 1;
            sock::eventfd_drain(self.efd);
        }
        Ok(())
    }

    fn finish(&mut self) -> usize {
        let n = (self.rx_meta.len() - self.rx_pos).min(self.batch);
        self.rx_n = n;
        if n > 0 {
            self.stats.rx_batches += 1;
            self.stats.rx_datagrams += n as u64;
        }
        n
    }

    /// Sends queued items from `start` with one `sendmmsg` per call, GSO
    /// runs as single messages. Returns `Some(i)` if GSO was refused for the
    /// run starting at item `i` (the caller turns GSO off and resends from
    /// there), `None` when every item was sent or counted as dropped.
    fn send_from(&mut self, start: usize) -> Option<usize> {
        let n_items = self.tx.items().len();
        let base = self.tx.slab_ptr();
        let mut m = 0;
        let mut i = start;
        while i < n_items {
            let run = self.tx.run_at(i, self.gso);
            self.txh.fill(m, base, &self.tx, &run);
            self.runs[m] = run;
            m += 1;
            i += run.count;
        }
        let mut k = 0;
        let mut retried = false;
        while k < m {
            self.stats.syscalls += 1;
            // SAFETY: entries k..m of `txh.msgs` were filled above: their
            // name, iovec and control pointers target live buffers of this
            // struct, and each iovec lies inside the tx slab (whose queued
            // items end before its length). The kernel only reads them.
            let r = unsafe {
                libc::sendmmsg(
                    self.fd,
                    self.txh.msgs.as_mut_ptr().add(k),
                    (m - k) as libc::c_uint,
                    0,
                )
            };
            if r > 0 {
                for run in &self.runs[k..k + r as usize] {
                    self.stats.tx_datagrams += run.count as u64;
                    self.stats.gso_sends += u64::from(run.is_gso());
                }
                k += r as usize;
                continue;
            }
            if r == 0 {
                // Not expected from Linux; never loop on it.
                let rest: usize = self.runs[k..m].iter().map(|r| r.count).sum();
                self.stats.tx_errors += rest as u64;
                return None;
            }
            let e = io::Error::last_os_error();
            let run = self.runs[k];
            match e.raw_os_error() {
                Some(libc::EINTR) => {}
                Some(libc::EIO | libc::EINVAL) if run.is_gso() => return Some(run.first),
                Some(libc::EMSGSIZE) if run.is_gso() => {
                    // One datagram of the run is larger than the path (a
                    // path-MTU probe: the socket sets DF) and the kernel
                    // refuses the whole GSO run: send them one by one, so
                    // only that one is lost.
                    self.send_singly(k, base, run);
                    k += 1;
                }
                _ if is_full(&e) && !retried => {
                    retried = true;
                    self.wait_writable();
                }
                _ if is_full(&e) => {
                    // Still full after a wait: drop the rest of the flush.
                    let rest: usize = self.runs[k..m].iter().map(|r| r.count).sum();
                    self.stats.tx_errors += rest as u64;
                    tracing::debug!(dropped = rest, "net-io: send buffer full");
                    return None;
                }
                _ => {
                    tracing::debug!(error = %e, "net-io: datagram dropped by the kernel");
                    self.stats.tx_errors += run.count as u64;
                    k += 1;
                }
            }
        }
        None
    }

    /// Sends the datagrams of `run` one `sendmsg` each, through header `k`
    /// (the run's own, free once the kernel refused it). Refusals are
    /// counted in `tx_errors`, as for any datagram the kernel drops.
    fn send_singly(&mut self, k: usize, base: *mut u8, run: Run) {
        for i in run.first..run.first + run.count {
            let single = self.tx.run_at(i, false);
            self.txh.fill(k, base, &self.tx, &single);
            self.stats.syscalls += 1;
            // SAFETY: entry k of `txh.msgs` was just filled for item i: its
            // name, iovec and control pointers target live buffers of this
            // struct and the iovec lies inside the tx slab. The kernel only
            // reads them.
            let r = unsafe { libc::sendmsg(self.fd, &self.txh.msgs[k].msg_hdr, 0) };
            if r >= 0 {
                self.stats.tx_datagrams += 1;
            } else {
                self.stats.tx_errors += 1;
            }
        }
    }

    /// Waits up to 1 ms for send-buffer space.
    fn wait_writable(&mut self) {
        let mut fd = libc::pollfd {
            fd: self.fd,
            events: libc::POLLOUT,
            revents: 0,
        };
        self.stats.syscalls += 1;
        // SAFETY: one live pollfd; the count passed is 1.
        unsafe { libc::poll(&mut fd, 1, 1) };
    }
}

/// Whether the kernel knows `UDP_SEGMENT` (Linux ≥ 4.18). Probed on a
/// throwaway socket of the same family.
fn gso_supported(local: &SocketAddr) -> bool {
    let Ok(s) = socket2::Socket::new(
        socket2::Domain::for_address(*local),
        socket2::Type::DGRAM,
        None,
    ) else {
        return false;
    };
    match sock::getsockopt_int(s.as_raw_fd(), libc::SOL_UDP, libc::UDP_SEGMENT) {
        Ok(_) => true,
        Err(e) => {
            tracing::debug!(error = %e, "net-io: UDP GSO unsupported");
            false
        }
    }
}

impl Driver for MmsgDriver {
    fn kind(&self) -> DriverKind {
        DriverKind::Mmsg
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
        let mut start = 0;
        while let Some(failed) = self.send_from(start) {
            tracing::warn!("net-io: kernel refused UDP GSO; sending datagrams one by one");
            self.gso = false;
            self.stats.downgrades += 1;
            start = failed;
        }
        self.tx.clear();
        Ok(())
    }

    fn recv(&mut self, timeout: Option<Duration>) -> io::Result<usize> {
        crate::waker::recv_parked(self, timeout)
    }

    fn rx(&mut self, i: usize) -> (SocketAddr, &mut [u8]) {
        let got = (i < self.rx_n).then(|| self.rx_meta.get(self.rx_pos + i));
        match got.flatten() {
            Some(&(src, off, len)) => {
                let start = off as usize;
                (src, &mut self.rx.bufs[start..start + len as usize])
            }
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

impl crate::waker::Parking for MmsgDriver {
    fn wake_state(&self) -> &crate::waker::WakeShared {
        &self.wake
    }
    fn counters(&mut self) -> &mut crate::DriverStats {
        &mut self.stats
    }
    fn clear_rx(&mut self) {
        self.rx_pos += self.rx_n;
        self.rx_n = 0;
        if self.rx_pos >= self.rx_meta.len() {
            self.rx_meta.clear();
            self.rx_pos = 0;
        }
    }
    fn harvest(&mut self) -> io::Result<()> {
        MmsgDriver::harvest(self)
    }
    fn wait(&mut self, left: Option<Duration>) -> io::Result<()> {
        self.poll(left)
    }
    fn has_rx(&self) -> bool {
        self.rx_pos < self.rx_meta.len()
    }
    fn finish(&mut self) -> usize {
        MmsgDriver::finish(self)
    }
}
