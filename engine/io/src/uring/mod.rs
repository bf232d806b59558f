//! The io_uring driver.
//!
//! * **rx**: one multishot `RECVMSG` SQE draws buffers from a provided-buffer
//!   ring ([`bufring`]); each completion is one message (header, source
//!   name, control data, payload) in one buffer: one datagram, or with GRO
//!   a coalesced run that `recv` cuts into datagrams (`crate::gro`). Completions are moved to `ready`; `recv`
//!   hands out up to `batch` of them and returns their buffers to the ring
//!   at the start of the next `recv`. When the kernel runs out of buffers it
//!   ends the multishot with `ENOBUFS` (the datagrams stay queued in the
//!   socket); it is re-armed once buffers are back.
//! * **wake**: a `READ` SQE on the waker's eventfd is always armed, so a wake
//!   completes it and ends any wait.
//! * **tx**: `flush` turns the queue into `SENDMSG` SQEs (GSO runs as one
//!   message with a `UDP_SEGMENT` cmsg) but does not enter the kernel: they
//!   are submitted by the next `recv`'s `io_uring_enter`, together with the
//!   wait (one enter per loop iteration). The slab must stay untouched until
//!   every send completes, so `tx_slot` after a flush first reaps the send
//!   completions, entering the kernel only if they are not in yet (counted
//!   in `tx_waits`).
//! * **one enter per iteration**: a blocking `recv` submits the queued sends
//!   and waits in the same `io_uring_enter`, asking for one completion more
//!   than the sends it submits (UDP sends complete inline), so their
//!   completions do not end the wait.
//! * **owning thread**: io_uring runs a request's completion work in the
//!   task that submitted it. Drivers are opened on one thread and moved to
//!   their core's thread, so the receive and wake requests are re-armed (the
//!   old ones cancelled) when `recv` first runs on a new thread; otherwise
//!   every datagram would wake the opening thread.
//! * **spinning**: the ring is set up with `COOP_TASKRUN | TASKRUN_FLAG`, so
//!   the kernel flags pending completion work in the SQ ring; `recv(Some(0))`
//!   on an idle ring with nothing to submit makes no syscall at all.

mod bufring;

use std::collections::VecDeque;
use std::io;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use io_uring::{cqueue, opcode, squeue, types, IoUring};

use self::bufring::BufRing;
use crate::gro::{self, CTRL_LEN, GRO_SLOT};
use crate::sock::{self, NAME_LEN};
use crate::txq::{Run, TxHeaders, TxQueue};
use crate::waker::{Notify, WakeShared};
use crate::{Driver, DriverConfig, DriverKind, DriverStats, Waker};

const TAG_SHIFT: u32 = 60;
const TAG_MASK: u64 = 0xf << TAG_SHIFT;
const UD_RECV: u64 = 1 << TAG_SHIFT;
const UD_WAKE: u64 = 2 << TAG_SHIFT;
const UD_SEND: u64 = 3 << TAG_SHIFT;
const UD_CANCEL: u64 = 4 << TAG_SHIFT;
/// Buffer group id of the provided-buffer ring.
const BGID: u16 = 0;
/// Size of the `io_uring_recvmsg_out` header the kernel writes first.
const RECVMSG_OUT_LEN: usize = 16;
/// Low user-data bits holding the arming generation of receive/wake SQEs.
const GEN_MASK: u64 = 0xffff_ffff;

/// An identifier of the calling thread, unique among live threads: the
/// address of a thread-local (no allocation, no atomics).
fn thread_token() -> usize {
    thread_local! {
        static TOKEN: u8 = const { 0 };
    }
    TOKEN.with(|t| t as *const u8 as usize)
}

/// How long `tx_slot` waits for the previous flush's sends before
/// cancelling them.
const SEND_PATIENCE: Duration = Duration::from_millis(100);

/// Consecutive failed receive completions after which `recv` reports an
/// error instead of re-arming forever.
const MAX_RX_ERROR_STREAK: u32 = 64;

/// One received datagram held in buffer `bid` at `off..off+len`. A GRO
/// buffer yields several entries; only its last has `release` set, and the
/// buffer goes back to the ring when that entry's batch is done.
#[derive(Clone, Copy, Debug)]
struct RxEntry {
    bid: u16,
    src: SocketAddr,
    off: u32,
    len: u32,
    release: bool,
}

/// A received buffer not yet handed out in full: its datagrams are the
/// pieces `cut` still yields, at `base` + offset in buffer `bid`.
#[derive(Clone, Copy, Debug)]
struct RxBuf {
    bid: u16,
    src: SocketAddr,
    base: u32,
    cut: gro::Cut,
}

/// What a send SQE (indexed by its `TxHeaders` entry) carries.
#[derive(Clone, Copy, Debug, Default)]
struct SendRec {
    run: Run,
    retried: bool,
    in_flight: bool,
}

/// See the module docs. Field order matters for drop: the ring is closed
/// before the memory the kernel could touch (buffers, headers, slab) is
/// freed.
pub(crate) struct UringDriver {
    ring: IoUring,
    bufs: BufRing,
    recv_hdr: Box<libc::msghdr>,
    wake_buf: Box<u64>,
    tx: TxQueue,
    txh: TxHeaders,
    /// Owns the descriptor `fd` (closed on drop).
    _sock: socket2::Socket,
    fd: RawFd,
    efd: RawFd,
    local: SocketAddr,
    batch: usize,
    max_datagram: usize,
    recv_armed: bool,
    wake_armed: bool,
    /// Generation of the current receive/wake SQEs (in their user data);
    /// bumped when they are re-armed from another thread.
    arm_gen: u64,
    /// `thread_token()` of the thread that armed them.
    armed_by: usize,
    /// Cancelled receive/wake SQEs of older generations whose final
    /// completion has not arrived yet.
    stale_armed: u32,
    /// Send SQEs pushed since the last `io_uring_enter`.
    sends_unsubmitted: usize,
    ready: VecDeque<RxBuf>,
    cur: Vec<RxEntry>,
    sends: Vec<SendRec>,
    /// Send SQEs pushed and not completed.
    tx_in_flight: usize,
    /// The queued items were turned into SQEs; the slab is frozen until
    /// `tx_in_flight` drops to 0.
    tx_submitted: bool,
    /// The previous flush's sends could not be completed or cancelled.
    tx_stuck: bool,
    gso: bool,
    rx_error_streak: u32,
    /// The errno of the first failed receive/wake completion (probe).
    setup_errno: Option<i32>,
    wake: Arc<WakeShared>,
    stats: DriverStats,
}

// SAFETY: every raw pointer in the driver (`recv_hdr`, `txh`, the buffer
// ring) targets heap memory owned by this same value; the kernel accesses it
// only for the io_uring instance also owned by it. Nothing is shared with
// another thread, so moving the whole driver to another thread is sound.
unsafe impl Send for UringDriver {}

/// Memory the receive buffer pool may take before it is shrunk below four
/// batches (only large `max_datagram`s get near it).
const MAX_POOL_BYTES: usize = 32 << 20;

/// Buffer-pool entries, SQ and CQ sizes for a batch and a buffer size: four
/// batches of buffers (at least 64) unless that exceeds [`MAX_POOL_BYTES`],
/// never below one batch (and 16).
fn ring_sizes(batch: usize, buf_size: usize) -> (u16, u32, u32) {
    let floor = batch.max(16).next_power_of_two();
    let mut bufs = (batch * 4).max(64).next_power_of_two();
    while bufs > floor && bufs * buf_size > MAX_POOL_BYTES {
        bufs /= 2;
    }
    let bufs = bufs.min(1 << 15);
    let sq = (batch * 2 + 8).next_power_of_two() as u32;
    let cq = (bufs + batch * 2 + 16).next_power_of_two() as u32;
    (bufs as u16, sq, cq)
}

fn build_ring(sq: u32, cq: u32) -> io::Result<IoUring> {
    let tuned = IoUring::builder()
        .setup_coop_taskrun()
        .setup_taskrun_flag()
        .setup_cqsize(cq)
        .build(sq);
    match tuned {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            IoUring::builder().setup_cqsize(cq).build(sq)
        }
        r => r,
    }
}

fn check_opcodes(ring: &IoUring) -> io::Result<()> {
    if !ring.params().is_feature_ext_arg() {
        return Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP));
    }
    let mut probe = io_uring::Probe::new();
    ring.submitter().register_probe(&mut probe)?;
    for (code, name) in [
        (opcode::RecvMsg::CODE, "RECVMSG"),
        (opcode::SendMsg::CODE, "SENDMSG"),
        (opcode::Read::CODE, "READ"),
        (opcode::AsyncCancel::CODE, "ASYNC_CANCEL"),
    ] {
        if !probe.is_supported(code) {
            tracing::debug!("net-io: io_uring opcode {name} unsupported");
            return Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP));
        }
    }
    Ok(())
}

impl UringDriver {
    /// Sets up the ring, buffer ring and eventfd for (a duplicate of) the
    /// bound socket `s`, and arms the receive; fails with the kernel's errno
    /// if any piece is refused.
    ///
    /// With `gro` (already set on the socket) each buffer holds a coalesced
    /// message and room for its control data, and is split by segment size.
    pub(crate) fn new(s: &socket2::Socket, cfg: &DriverConfig, gro: bool) -> io::Result<Self> {
        let sock = s.try_clone()?;
        // io_uring never blocks the task; a blocking socket lets it poll
        // instead of failing sends with EAGAIN.
        sock.set_nonblocking(false)?;
        let local = sock::local_addr(&sock)?;
        let (ctrl_len, payload) = if gro {
            (CTRL_LEN, GRO_SLOT)
        } else {
            (0, cfg.max_datagram)
        };
        let buf_size = RECVMSG_OUT_LEN + NAME_LEN + ctrl_len + payload;
        let (nbufs, sq, cq) = ring_sizes(cfg.batch, buf_size);
        let ring = build_ring(sq, cq)?;
        check_opcodes(&ring)?;
        let bufs = BufRing::new(nbufs, buf_size)?;
        bufs.publish();
        // SAFETY: the ring memory is a live, page-aligned mapping of `nbufs`
        // entries owned by `bufs`, which the driver keeps (and only frees
        // after the ring is closed, see Drop).
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(bufs.ring_addr(), nbufs, BGID, 0)?
        };
        let wake = WakeShared::new(Notify::EventFd(sock::eventfd(false)?));
        // SAFETY: msghdr is a C struct of integers and pointers; all-zero is
        // valid. Only namelen/controllen matter for a multishot recvmsg.
        let mut recv_hdr: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
        recv_hdr.msg_namelen = NAME_LEN as libc::socklen_t;
        recv_hdr.msg_controllen = ctrl_len;
        let mut d = UringDriver {
            ring,
            bufs,
            recv_hdr,
            wake_buf: Box::new(0),
            tx: TxQueue::new(cfg.batch, cfg.max_datagram),
            txh: TxHeaders::new(cfg.batch),
            fd: sock.as_raw_fd(),
            efd: wake.eventfd().unwrap_or(-1),
            _sock: sock,
            local,
            batch: cfg.batch,
            max_datagram: cfg.max_datagram,
            recv_armed: false,
            wake_armed: false,
            arm_gen: 0,
            armed_by: thread_token(),
            stale_armed: 0,
            sends_unsubmitted: 0,
            ready: VecDeque::with_capacity(nbufs as usize),
            cur: Vec::with_capacity(cfg.batch),
            sends: vec![SendRec::default(); cfg.batch],
            tx_in_flight: 0,
            tx_submitted: false,
            tx_stuck: false,
            gso: cfg.gso,
            rx_error_streak: 0,
            setup_errno: None,
            wake,
            stats: DriverStats::default(),
        };
        d.probe_arm()?;
        Ok(d)
    }

    /// Arms receive and wake, submits, and fails if the kernel rejects the
    /// multishot receive or the eventfd read right away (kernels before 6.0
    /// say EINVAL to a multishot recvmsg).
    fn probe_arm(&mut self) -> io::Result<()> {
        self.prepare()?;
        self.enter(0, None)?;
        self.reap()?;
        match self.setup_errno.take() {
            Some(errno) => Err(io::Error::from_raw_os_error(errno)),
            None => Ok(()),
        }
    }

    pub(crate) fn stats_mut(&mut self) -> &mut DriverStats {
        &mut self.stats
    }

    /// Pushes one SQE, submitting first if the SQ is full.
    ///
    /// # Safety
    /// Every pointer in `e` must stay valid until its completion is reaped.
    unsafe fn push(&mut self, e: &squeue::Entry) -> io::Result<()> {
        for _ in 0..16 {
            // SAFETY: forwarded from the caller's contract.
            if unsafe { self.ring.submission().push(e) }.is_ok() {
                return Ok(());
            }
            // Submitting empties the SQ (CQEs are not reaped here, so this
            // never re-enters the completion handlers).
            self.enter(0, None)?;
        }
        Err(io::Error::from_raw_os_error(libc::EBUSY))
    }

    /// Returns the last batch's buffers, re-arms what is not armed (from
    /// this thread, see the module docs), and publishes the buffer ring.
    fn prepare(&mut self) -> io::Result<()> {
        for i in 0..self.cur.len() {
            let e = self.cur[i];
            if e.release {
                self.bufs.push(e.bid);
            }
        }
        self.cur.clear();
        self.bufs.publish();
        let me = thread_token();
        if me != self.armed_by {
            self.retire_arms()?;
            self.armed_by = me;
        }
        let gen = self.arm_gen & GEN_MASK;
        if !self.recv_armed {
            let e = opcode::RecvMsgMulti::new(types::Fd(self.fd), &*self.recv_hdr, BGID)
                .build()
                .user_data(UD_RECV | gen);
            // SAFETY: `recv_hdr` is boxed and lives as long as the ring (it is
            // dropped after it); the buffers come from the registered ring.
            unsafe { self.push(&e)? };
            self.recv_armed = true;
        }
        if !self.wake_armed {
            let buf: *mut u64 = &mut *self.wake_buf;
            let e = opcode::Read::new(types::Fd(self.efd), buf.cast(), 8)
                .build()
                .user_data(UD_WAKE | gen);
            // SAFETY: `wake_buf` is a boxed u64 (8 bytes, as declared) that
            // outlives the ring; the eventfd is kept open by `self.wake`.
            unsafe { self.push(&e)? };
            self.wake_armed = true;
        }
        Ok(())
    }

    /// Cancels the armed receive/wake SQEs and starts a new generation, so
    /// `prepare` arms fresh ones from the calling thread.
    fn retire_arms(&mut self) -> io::Result<()> {
        let gen = self.arm_gen & GEN_MASK;
        for (armed, tag) in [(self.recv_armed, UD_RECV), (self.wake_armed, UD_WAKE)] {
            if armed {
                let e = opcode::AsyncCancel::new(tag | gen)
                    .build()
                    .user_data(UD_CANCEL);
                // SAFETY: a cancel SQE carries no pointers.
                unsafe { self.push(&e)? };
                self.stale_armed += 1;
            }
        }
        self.arm_gen = self.arm_gen.wrapping_add(1);
        self.recv_armed = false;
        self.wake_armed = false;
        Ok(())
    }

    /// One `io_uring_enter`: submits the SQ and waits for `want` completions
    /// for at most `timeout`. Timeouts and interrupts are not errors.
    fn enter(&mut self, want: usize, timeout: Option<Duration>) -> io::Result<()> {
        self.bufs.publish();
        self.stats.syscalls += 1;
        let r = match timeout {
            Some(t) if want > 0 => {
                let ts = types::Timespec::from(t);
                let args = types::SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(want, &args)
            }
            _ => self.ring.submitter().submit_and_wait(want),
        };
        if self.ring.submission().is_empty() {
            self.sends_unsubmitted = 0;
        }
        match r {
            Ok(_) => Ok(()),
            Err(e) => match e.raw_os_error() {
                Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN) => Ok(()),
                _ => Err(e),
            },
        }
    }

    /// Handles every completion currently in the CQ (no syscall).
    fn reap(&mut self) -> io::Result<()> {
        let mut tmp = [const { MaybeUninit::<cqueue::Entry>::uninit() }; 64];
        loop {
            let n = self.ring.completion().fill(&mut tmp).len();
            for e in &tmp[..n] {
                // SAFETY: `fill` initialised the first `n` entries.
                let e = unsafe { e.assume_init_ref() };
                self.on_cqe(e.user_data(), e.result(), e.flags())?;
            }
            if n < tmp.len() {
                return Ok(());
            }
        }
    }

    fn on_cqe(&mut self, ud: u64, res: i32, flags: u32) -> io::Result<()> {
        let current = ud & GEN_MASK == self.arm_gen & GEN_MASK;
        match ud & TAG_MASK {
            UD_RECV => {
                let last = !cqueue::more(flags);
                if last && current {
                    self.recv_armed = false;
                } else if last {
                    self.stale_armed = self.stale_armed.saturating_sub(1);
                }
                // Data is data, whichever generation delivered it.
                self.on_recv(res, flags, current);
            }
            UD_WAKE if current => {
                self.wake_armed = false;
                if res < 0 && res != -libc::ECANCELED {
                    self.setup_errno.get_or_insert(-res);
                    tracing::debug!(errno = -res, "net-io: eventfd read failed");
                }
            }
            UD_WAKE => self.stale_armed = self.stale_armed.saturating_sub(1),
            UD_SEND => return self.on_send((ud & !TAG_MASK) as usize, res),
            _ => {}
        }
        Ok(())
    }

    fn on_recv(&mut self, res: i32, flags: u32, current: bool) {
        if res < 0 {
            if res != -libc::ENOBUFS && res != -libc::ECANCELED && current {
                self.setup_errno.get_or_insert(-res);
                tracing::debug!(errno = -res, "net-io: multishot recvmsg error");
                self.stats.rx_errors += 1;
                self.rx_error_streak += 1;
            }
            return;
        }
        let Some(bid) = cqueue::buffer_select(flags) else {
            self.stats.rx_errors += 1;
            return;
        };
        match self.parse(bid, res as usize) {
            Some(b) => {
                self.rx_error_streak = 0;
                self.stats.gro_buffers += u64::from(b.cut.remaining() > 1);
                self.ready.push_back(b);
            }
            None => self.bufs.push(bid),
        }
    }

    /// Reads buffer `bid` (`len` bytes filled, in the `recvmsg_out` layout)
    /// and cuts its payload into datagrams. Refused datagrams are counted in
    /// `rx_errors`; `None` (the caller returns the buffer) when nothing of
    /// it is usable: truncated, unparsable or wholly refused.
    fn parse(&mut self, bid: u16, len: usize) -> Option<RxBuf> {
        let buf = self.bufs.buf(bid, len);
        let out = types::RecvMsgOut::parse(buf, &self.recv_hdr).ok();
        let out = out.filter(|o| !o.is_payload_truncated() && !o.is_name_data_truncated());
        let Some(src) = out
            .as_ref()
            .and_then(|o| sock::read_sockaddr(o.name_data()))
        else {
            self.stats.rx_errors += 1;
            return None;
        };
        let out = out?;
        let seg = gro::segment_size(out.control_data());
        let payload = out.payload_data();
        let base = (payload.as_ptr() as usize - buf.as_ptr() as usize) as u32;
        let (cut, refused) = gro::Cut::new(payload.len(), seg, self.max_datagram);
        self.stats.rx_errors += refused;
        (cut.remaining() > 0).then_some(RxBuf {
            bid,
            src,
            base,
            cut,
        })
    }

    fn on_send(&mut self, slot: usize, res: i32) -> io::Result<()> {
        let Some(rec) = self.sends.get_mut(slot) else {
            return Ok(());
        };
        rec.in_flight = false;
        let rec = *rec;
        self.tx_in_flight = self.tx_in_flight.saturating_sub(1);
        if res >= 0 {
            self.stats.tx_datagrams += rec.run.count as u64;
            self.stats.gso_sends += u64::from(rec.run.is_gso());
            return Ok(());
        }
        let errno = -res;
        if rec.run.is_gso() && matches!(errno, libc::EIO | libc::EINVAL) {
            if self.gso {
                tracing::warn!(
                    errno,
                    "net-io: kernel refused UDP GSO; sending datagrams one by one"
                );
                self.gso = false;
                self.stats.downgrades += 1;
            }
            for i in rec.run.first..rec.run.first + rec.run.count {
                let run = self.tx.run_at(i, false);
                self.queue_send(i, run, false)?;
            }
        } else if rec.run.is_gso() && errno == libc::EMSGSIZE {
            // One datagram of the run is larger than the path (a path-MTU
            // probe: the socket sets DF) and the kernel refuses the whole
            // GSO run: send them one by one, so only that one is lost.
            for i in rec.run.first..rec.run.first + rec.run.count {
                let run = self.tx.run_at(i, false);
                self.queue_send(i, run, false)?;
            }
        } else if matches!(errno, libc::EAGAIN | libc::ENOBUFS) && !rec.retried {
            self.queue_send(slot, rec.run, true)?;
        } else {
            tracing::debug!(errno, "net-io: datagram dropped by the kernel");
            self.stats.tx_errors += rec.run.count as u64;
        }
        Ok(())
    }

    /// Fills header `slot` for `run` and pushes its `SENDMSG`.
    fn queue_send(&mut self, slot: usize, run: Run, retried: bool) -> io::Result<()> {
        let base = self.tx.slab_ptr();
        self.txh.fill(slot, base, &self.tx, &run);
        self.sends[slot] = SendRec {
            run,
            retried,
            in_flight: true,
        };
        let e = opcode::SendMsg::new(types::Fd(self.fd), self.txh.msghdr_ptr(slot))
            .build()
            .user_data(UD_SEND | slot as u64);
        // SAFETY: the msghdr, its name, iovec and cmsg live in `txh`, and the
        // iovec points into the tx slab; both are owned by the driver, freed
        // only after the ring, and not modified until `tx_in_flight` is 0
        // (`tx_slot` waits for that before handing out the slab again).
        unsafe { self.push(&e)? };
        self.tx_in_flight += 1;
        self.sends_unsubmitted += 1;
        Ok(())
    }

    /// Reaps until every send completed. Sends still pending after
    /// [`SEND_PATIENCE`] (a send buffer that does not drain, e.g. a stalled
    /// interface) are cancelled and counted as dropped. `false` if even the
    /// cancellation does not complete, or the kernel failed us.
    fn await_sends(&mut self) -> bool {
        let mut deadline = Instant::now() + SEND_PATIENCE;
        let mut cancelled = false;
        let mut waited = false;
        loop {
            if let Err(e) = self.reap() {
                tracing::warn!(error = %e, "net-io: reaping sends failed");
                return false;
            }
            if self.tx_in_flight == 0 {
                return true;
            }
            if !waited {
                waited = true;
                self.stats.tx_waits += 1;
            }
            let now = Instant::now();
            if now >= deadline {
                if cancelled || self.cancel_sends().is_err() {
                    return false;
                }
                tracing::warn!("net-io: sends stuck; cancelling them");
                cancelled = true;
                deadline = now + Duration::from_secs(1);
            }
            if let Err(e) = self.enter(1, Some(deadline.saturating_duration_since(now))) {
                tracing::warn!(error = %e, "net-io: waiting for sends failed");
                return false;
            }
        }
    }

    /// Asks the kernel to cancel every in-flight send (they complete with
    /// ECANCELED and are counted in `tx_errors`).
    fn cancel_sends(&mut self) -> io::Result<()> {
        for slot in 0..self.sends.len() {
            if self.sends[slot].in_flight {
                let e = opcode::AsyncCancel::new(UD_SEND | slot as u64)
                    .build()
                    .user_data(UD_CANCEL);
                // SAFETY: a cancel SQE carries no pointers.
                unsafe { self.push(&e)? };
            }
        }
        Ok(())
    }

    /// Moves up to `batch` ready datagrams into the current batch, cutting
    /// coalesced buffers (a buffer may span two batches: it is returned
    /// with the batch that holds its last datagram).
    fn take_batch(&mut self) -> usize {
        while self.cur.len() < self.batch {
            let Some(b) = self.ready.front_mut() else {
                break;
            };
            let Some((off, len)) = b.cut.next() else {
                self.ready.pop_front();
                continue;
            };
            let release = b.cut.remaining() == 0;
            self.cur.push(RxEntry {
                bid: b.bid,
                src: b.src,
                off: b.base + off as u32,
                len: len as u32,
                release,
            });
            if release {
                self.ready.pop_front();
            }
        }
        let n = self.cur.len();
        if n > 0 {
            self.stats.rx_batches += 1;
            self.stats.rx_datagrams += n as u64;
        }
        n
    }

    fn check_streak(&mut self) -> io::Result<()> {
        if self.rx_error_streak >= MAX_RX_ERROR_STREAK {
            self.rx_error_streak = 0;
            return Err(io::Error::other("io_uring receive keeps failing"));
        }
        Ok(())
    }

    /// Enters the kernel (without waiting) only if there is something to
    /// submit or the kernel flagged pending completion work; then reaps.
    fn poll_ready(&mut self) -> io::Result<()> {
        let need_enter = {
            let sq = self.ring.submission();
            !sq.is_empty() || sq.taskrun() || sq.cq_overflow()
        };
        if need_enter {
            self.enter(0, None)?;
            self.reap()?;
            self.prepare()?;
        }
        Ok(())
    }

    /// The blocking part of `recv`: parks in one `io_uring_enter` that also
    /// submits the queued sends, until a datagram, a wake or the deadline.
    fn wait(&mut self, timeout: Option<Duration>) -> io::Result<usize> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        loop {
            self.check_streak()?;
            let left = match deadline {
                None => None,
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(l) if !l.is_zero() => Some(l),
                    // Every earlier iteration entered, so nothing is unsent.
                    _ => return Ok(self.take_batch()),
                },
            };
            if !self.wake.park_begin() {
                self.wake.take_pending();
                self.stats.wakes += 1;
                self.poll_ready()?;
                return Ok(self.take_batch());
            }
            if !self.ring.submission().taskrun() {
                self.stats.parks += 1;
            }
            // Sends submitted now complete inline; wait for one more.
            let want = 1 + self.sends_unsubmitted;
            let r = self.enter(want, left);
            self.wake.park_end();
            r?;
            let woke = self.wake.take_pending();
            self.stats.wakes += u64::from(woke);
            self.reap()?;
            self.prepare()?;
            if woke || !self.ready.is_empty() {
                return Ok(self.take_batch());
            }
        }
    }

    /// Cancels the receive and wake SQEs and waits (bounded) for their final
    /// completions (older generations' too) and for in-flight sends.
    /// `true` when nothing is left in the kernel.
    fn shutdown(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(2);
        if self.tx_submitted && !self.await_sends() {
            return false;
        }
        if self.retire_arms().is_err() {
            return false;
        }
        while self.stale_armed > 0 || self.tx_in_flight > 0 {
            if Instant::now() >= deadline {
                return false;
            }
            if self.enter(1, Some(Duration::from_millis(50))).is_err() {
                return false;
            }
            // Receives completing now just fill `ready`; errors don't matter.
            let _ = self.reap();
        }
        true
    }
}

#[cfg(test)]
impl UringDriver {
    /// Runs the drop-time shutdown and reports whether it quiesced.
    pub(crate) fn shutdown_for_test(&mut self) -> bool {
        self.shutdown()
    }
}

impl Drop for UringDriver {
    fn drop(&mut self) {
        if !self.shutdown() {
            // The kernel may still write into these: leak rather than free.
            tracing::warn!("net-io: io_uring did not quiesce; leaking its buffers");
            self.bufs.leak();
            std::mem::forget(std::mem::replace(&mut self.wake_buf, Box::new(0)));
            std::mem::forget(std::mem::replace(&mut self.tx, TxQueue::new(0, 0)));
        }
    }
}

impl Driver for UringDriver {
    fn kind(&self) -> DriverKind {
        DriverKind::Uring
    }

    fn local_addr(&self) -> SocketAddr {
        self.local
    }

    fn tx_slot(&mut self) -> Option<&mut [u8]> {
        if self.tx_submitted {
            self.tx_stuck = !self.await_sends();
            if self.tx_stuck {
                return None;
            }
            self.tx.clear();
            self.tx_submitted = false;
        }
        self.tx.slot()
    }

    fn tx_commit(&mut self, dst: SocketAddr, len: usize) {
        if self.tx_submitted || !self.tx.commit(dst, len) {
            self.stats.tx_errors += 1;
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.tx_stuck {
            return Err(io::Error::other(
                "io_uring sends neither complete nor cancel",
            ));
        }
        if self.tx_submitted || self.tx.is_empty() {
            return Ok(());
        }
        self.stats.tx_batches += 1;
        self.tx_submitted = true;
        let mut i = 0;
        while i < self.tx.items().len() {
            let run = self.tx.run_at(i, self.gso);
            self.queue_send(i, run, false)?;
            i += run.count;
        }
        Ok(())
    }

    fn recv(&mut self, timeout: Option<Duration>) -> io::Result<usize> {
        self.prepare()?;
        self.reap()?;
        if !self.ready.is_empty() || timeout == Some(Duration::ZERO) {
            // Submits deferred sends even when datagrams are already here.
            self.poll_ready()?;
            self.check_streak()?;
            return Ok(self.take_batch());
        }
        self.wait(timeout)
    }

    fn rx(&mut self, i: usize) -> (SocketAddr, &mut [u8]) {
        match self.cur.get(i).copied() {
            Some(e) => (
                e.src,
                self.bufs.buf_mut(e.bid, e.off as usize, e.len as usize),
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

#[cfg(test)]
mod tests {
    #[test]
    fn ring_sizes() {
        assert_eq!(super::ring_sizes(64, 2092), (256, 256, 512));
        assert_eq!(super::ring_sizes(4, 65_579), (64, 16, 128));
        let (bufs, _, _) = super::ring_sizes(1024, 65_579);
        assert_eq!(bufs, 1024);
        let (bufs, _, _) = super::ring_sizes(64, 65_579);
        assert_eq!(bufs, 256); // 16.8 MB: under the cap
    }
}
