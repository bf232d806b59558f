//! An in-process datagram network: drivers without sockets, for tests.
//!
//! A [`MemNet`] is a set of ports keyed by [`SocketAddr`]. [`MemNet::bind`]
//! (or [`MemNet::bind_group`]) returns drivers of kind
//! [`DriverKind::Memory`] that follow the [`Driver`] contract exactly: a
//! flushed datagram is copied into the destination port's queue, and that
//! port's driver harvests it with `recv`. Nothing crosses into the kernel
//! (`stats().syscalls` stays 0), so an engine run on a `MemNet` needs no
//! free UDP port and no network namespace.
//!
//! Semantics follow UDP on loopback:
//!
//! * a datagram to an address nobody bound is dropped and counted in the
//!   sender's `tx_errors` (the kernel would answer ICMP unreachable);
//! * a port queues at most [`MemNet::QUEUE_BYTES`] bytes (like a socket's
//!   receive buffer): beyond that a datagram is dropped and counted in the
//!   receiver's `rx_errors`; so is one longer than the receiver's
//!   `max_datagram`;
//! * a port bound to an unspecified IP (`0.0.0.0:p`) receives datagrams sent
//!   to any IP of its family at port `p`, and its datagrams carry the
//!   loopback IP as source;
//! * a group of `n` drivers sharing one address ([`MemNet::bind_group`])
//!   delivers each datagram to the driver [`Steering::select`] names (the
//!   Rust model of the kernel program), falling back to the source port
//!   modulo `n` where the kernel would hash.
//!
//! Faults: [`MemNet::with_faults`] drops and duplicates datagrams with
//! probabilities drawn from one seeded generator. The sequence of decisions
//! is fixed by the seed; which datagram meets which decision depends on the
//! order the senders' flushes reach the network (deterministic with one
//! sending thread).
//!
//! # Parking
//!
//! `recv` parks on the port's `Condvar` with the waker protocol of
//! [`crate::waker`]: a [`Waker`] that finds the driver parked locks the
//! port, sets a flag and notifies; the driver checks that flag (and its
//! queue) under the same lock before waiting, so a wake is never lost.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crate::txq::TxQueue;
use crate::waker::{Notify, Parking, WakeShared};
use crate::{Driver, DriverConfig, DriverKind, DriverStats, IoError, Steering, Waker, MAX_GROUP};

/// Free receive buffers a port keeps for reuse (beyond that they are freed).
const FREE_BUFFERS: usize = 1024;

/// The first port tried for a bind to port 0.
const FIRST_EPHEMERAL: u16 = 40_000;

/// An in-process network of datagram ports. Cheap to clone (all clones are
/// the same network); `Send + Sync`. See the module docs.
#[derive(Clone)]
pub struct MemNet {
    inner: Arc<NetInner>,
}

struct NetInner {
    state: Mutex<NetState>,
    lost: AtomicU64,
    duplicated: AtomicU64,
}

struct NetState {
    groups: HashMap<SocketAddr, Arc<Group>>,
    next_port: u16,
    faults: Option<Faults>,
}

/// Seeded loss and duplication: a splitmix64 stream and two thresholds
/// (a draw below `loss` drops the datagram, one below `duplicate` delivers
/// it twice).
struct Faults {
    rng: u64,
    loss: u64,
    duplicate: u64,
}

impl Faults {
    fn next(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// How many copies of the next datagram to deliver (0, 1 or 2).
    fn copies(&mut self) -> usize {
        if self.next() < self.loss {
            0
        } else if self.next() < self.duplicate {
            2
        } else {
            1
        }
    }
}

/// Maps a probability to a threshold on a uniform `u64` draw.
fn threshold(p: f64) -> u64 {
    if p.is_nan() || p <= 0.0 {
        0
    } else if p >= 1.0 {
        u64::MAX
    } else {
        (p * u64::MAX as f64) as u64
    }
}

/// Drivers sharing one address; `live` counts the drivers not yet dropped
/// (the address is released when it reaches 0).
struct Group {
    addr: SocketAddr,
    ports: Vec<Arc<Port>>,
    steering: Steering,
    live: AtomicUsize,
}

impl Group {
    /// The port a datagram from `src` with `payload` lands on.
    fn pick(&self, src: SocketAddr, payload: &[u8]) -> &Arc<Port> {
        let n = self.ports.len();
        let i = if n == 1 {
            0
        } else {
            self.steering
                .select(payload, n)
                .unwrap_or(src.port() as usize % n)
        };
        &self.ports[i]
    }
}

/// One driver's receive queue, shared with every sender.
#[derive(Debug, Default)]
pub(crate) struct Port {
    state: Mutex<PortState>,
    cv: Condvar,
    /// Datagrams dropped because the queue was full.
    overflow: AtomicU64,
}

#[derive(Debug, Default)]
struct PortState {
    queue: VecDeque<(SocketAddr, Vec<u8>)>,
    bytes: usize,
    free: Vec<Vec<u8>>,
    /// Set by a waker that found the driver parked; cleared by the driver.
    woken: bool,
}

impl Port {
    fn lock(&self) -> MutexGuard<'_, PortState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The waker's notification: the flag is set under the lock the driver
    /// holds while deciding to wait, so the driver either sees it or is
    /// already waiting and gets the notify.
    pub(crate) fn notify_wake(&self) {
        self.lock().woken = true;
        self.cv.notify_all();
    }

    /// Queues `copies` copies of `data` from `src`, within the byte bound.
    fn push(&self, src: SocketAddr, data: &[u8], copies: usize) {
        let mut st = self.lock();
        let mut pushed = false;
        for _ in 0..copies {
            if st.bytes + data.len() > MemNet::QUEUE_BYTES {
                self.overflow.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let mut buf = st.free.pop().unwrap_or_default();
            buf.clear();
            buf.extend_from_slice(data);
            st.bytes += data.len();
            st.queue.push_back((src, buf));
            pushed = true;
        }
        drop(st);
        if pushed {
            self.cv.notify_all();
        }
    }
}

impl fmt::Debug for MemNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.inner.lock();
        f.debug_struct("MemNet")
            .field("bound", &st.groups.len())
            .field("faults", &st.faults.is_some())
            .finish()
    }
}

impl Default for MemNet {
    fn default() -> Self {
        Self::new()
    }
}

impl NetInner {
    fn lock(&self) -> MutexGuard<'_, NetState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl NetState {
    /// Whether `addr` conflicts with a bound address: same port and the
    /// same IP, or either IP unspecified (as without `SO_REUSEADDR`).
    fn in_use(&self, addr: SocketAddr) -> bool {
        self.groups.keys().any(|k| {
            k.port() == addr.port()
                && k.is_ipv4() == addr.is_ipv4()
                && (k.ip() == addr.ip() || k.ip().is_unspecified() || addr.ip().is_unspecified())
        })
    }

    /// A free port for `addr` (whose port is 0), or `None` if all are taken.
    fn pick_port(&mut self, addr: SocketAddr) -> Option<u16> {
        for _ in 0..=u16::MAX as usize {
            let p = self.next_port;
            self.next_port = if p == u16::MAX { 1024 } else { p + 1 };
            if !self.in_use(SocketAddr::new(addr.ip(), p)) {
                return Some(p);
            }
        }
        None
    }

    /// The group bound at `dst`: exactly, or at the unspecified IP of its
    /// family with the same port.
    fn lookup(&self, dst: SocketAddr) -> Option<Arc<Group>> {
        if let Some(g) = self.groups.get(&dst) {
            return Some(g.clone());
        }
        let any = SocketAddr::new(unspecified(dst.ip()), dst.port());
        self.groups.get(&any).cloned()
    }
}

fn unspecified(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        IpAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    }
}

/// The source address a port's datagrams carry: the loopback IP for a port
/// bound to an unspecified IP, so replies find it.
fn visible(addr: SocketAddr) -> SocketAddr {
    let ip: IpAddr = match addr.ip() {
        IpAddr::V4(v) if v.is_unspecified() => Ipv4Addr::LOCALHOST.into(),
        IpAddr::V6(v) if v.is_unspecified() => Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    SocketAddr::new(ip, addr.port())
}

impl MemNet {
    /// The most bytes a port queues before dropping (as a socket's receive
    /// buffer would): [`crate::SOCKET_BUFFER_BYTES`].
    pub const QUEUE_BYTES: usize = crate::SOCKET_BUFFER_BYTES;

    /// An empty, lossless network.
    pub fn new() -> Self {
        MemNet {
            inner: Arc::new(NetInner {
                state: Mutex::new(NetState {
                    groups: HashMap::new(),
                    next_port: FIRST_EPHEMERAL,
                    faults: None,
                }),
                lost: AtomicU64::new(0),
                duplicated: AtomicU64::new(0),
            }),
        }
    }

    /// An empty network that drops each datagram with probability `loss`
    /// and delivers a surviving one twice with probability `duplicate`
    /// (both clamped to 0..=1), drawn from a generator seeded with `seed`.
    pub fn with_faults(seed: u64, loss: f64, duplicate: f64) -> Self {
        let net = Self::new();
        net.inner.lock().faults = Some(Faults {
            rng: seed,
            loss: threshold(loss),
            duplicate: threshold(duplicate),
        });
        net
    }

    /// [`MemNet::with_faults`] without duplication.
    pub fn with_loss(seed: u64, loss: f64) -> Self {
        Self::with_faults(seed, loss, 0.0)
    }

    /// Datagrams the fault generator dropped so far.
    pub fn lost(&self) -> u64 {
        self.inner.lost.load(Ordering::Relaxed)
    }

    /// Datagrams the fault generator delivered twice so far.
    pub fn duplicated(&self) -> u64 {
        self.inner.duplicated.load(Ordering::Relaxed)
    }

    /// Binds one driver at `addr` with the default [`DriverConfig`]. Port 0
    /// picks a free port; an address in use fails with [`IoError::Bind`]
    /// (`AddrInUse`).
    pub fn bind(&self, addr: SocketAddr) -> Result<Box<dyn Driver>, IoError> {
        let mut v = self.bind_group(addr, 1, Steering::default(), &DriverConfig::default())?;
        v.pop()
            .ok_or_else(|| IoError::Io(io::Error::other("no driver bound")))
    }

    /// Binds `n` drivers sharing `addr`, like [`crate::open_group`]: driver
    /// `i` receives the datagrams `steering` routes to index `i`. Errors as
    /// `open_group` for an invalid `cfg`, `n` or `steering`, and as
    /// [`MemNet::bind`] for the address.
    pub fn bind_group(
        &self,
        addr: SocketAddr,
        n: usize,
        steering: Steering,
        cfg: &DriverConfig,
    ) -> Result<Vec<Box<dyn Driver>>, IoError> {
        cfg.validate()
            .map_err(|m| IoError::Io(crate::error::invalid(m)))?;
        if n == 0 || n > MAX_GROUP {
            return Err(IoError::Io(crate::error::invalid(format!(
                "group of {n} drivers not in 1..={MAX_GROUP}"
            ))));
        }
        if n > 1 {
            steering.validate(n).map_err(IoError::Steering)?;
        }
        let group = self.register(addr, n, steering)?;
        let drivers = group
            .ports
            .iter()
            .map(|port| {
                Box::new(MemDriver::new(
                    self.inner.clone(),
                    group.clone(),
                    port.clone(),
                    cfg,
                )) as Box<dyn Driver>
            })
            .collect();
        Ok(drivers)
    }

    /// Claims `addr` (picking a port for port 0) for a new group of `n`.
    fn register(
        &self,
        addr: SocketAddr,
        n: usize,
        steering: Steering,
    ) -> Result<Arc<Group>, IoError> {
        let mut st = self.inner.lock();
        let addr = if addr.port() == 0 {
            let port = st
                .pick_port(addr)
                .ok_or_else(|| IoError::Bind(io::ErrorKind::AddrInUse.into()))?;
            SocketAddr::new(addr.ip(), port)
        } else if st.in_use(addr) {
            return Err(IoError::Bind(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{addr} already bound on this MemNet"),
            )));
        } else {
            addr
        };
        let group = Arc::new(Group {
            addr,
            ports: (0..n).map(|_| Arc::new(Port::default())).collect(),
            steering,
            live: AtomicUsize::new(n),
        });
        st.groups.insert(addr, group.clone());
        Ok(group)
    }
}

/// See the module docs.
struct MemDriver {
    net: Arc<NetInner>,
    group: Arc<Group>,
    port: Arc<Port>,
    src: SocketAddr,
    max_datagram: usize,
    batch: usize,
    /// The datagrams of the last `recv`.
    rx: Vec<(SocketAddr, Vec<u8>)>,
    /// Buffers of the previous batch, handed back to the port at the next
    /// harvest (under the lock taken anyway).
    spare: Vec<Vec<u8>>,
    tx: TxQueue,
    wake: Arc<WakeShared>,
    stats: DriverStats,
}

impl MemDriver {
    fn new(net: Arc<NetInner>, group: Arc<Group>, port: Arc<Port>, cfg: &DriverConfig) -> Self {
        let wake = WakeShared::new(Notify::Memory(port.clone()));
        MemDriver {
            src: visible(group.addr),
            net,
            group,
            port,
            max_datagram: cfg.max_datagram,
            batch: cfg.batch,
            rx: Vec::with_capacity(cfg.batch),
            spare: Vec::with_capacity(cfg.batch),
            tx: TxQueue::new(cfg.batch, cfg.max_datagram),
            wake,
            stats: DriverStats::default(),
        }
    }

    /// Delivers queued datagram `i`; false if nobody is bound at its address.
    fn send_one(&mut self, i: usize) -> bool {
        let it = self.tx.items()[i];
        let (group, copies) = {
            let mut st = self.net.lock();
            let Some(group) = st.lookup(it.dst) else {
                return false;
            };
            let copies = st.faults.as_mut().map_or(1, Faults::copies);
            (group, copies)
        };
        if copies == 0 {
            self.net.lost.fetch_add(1, Ordering::Relaxed);
        } else if copies == 2 {
            self.net.duplicated.fetch_add(1, Ordering::Relaxed);
        }
        let data = self.tx.data(&it);
        group.pick(self.src, data).push(self.src, data, copies);
        true
    }
}

impl Drop for MemDriver {
    fn drop(&mut self) {
        if self.group.live.fetch_sub(1, Ordering::AcqRel) == 1 {
            let mut st = self.net.lock();
            if st
                .groups
                .get(&self.group.addr)
                .is_some_and(|g| Arc::ptr_eq(g, &self.group))
            {
                st.groups.remove(&self.group.addr);
            }
        }
    }
}

impl Driver for MemDriver {
    fn kind(&self) -> DriverKind {
        DriverKind::Memory
    }

    fn local_addr(&self) -> SocketAddr {
        self.group.addr
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
            if self.send_one(i) {
                self.stats.tx_datagrams += 1;
            } else {
                self.stats.tx_errors += 1;
            }
        }
        self.tx.clear();
        Ok(())
    }

    fn recv(&mut self, timeout: Option<Duration>) -> io::Result<usize> {
        crate::waker::recv_parked(self, timeout)
    }

    fn rx(&mut self, i: usize) -> (SocketAddr, &mut [u8]) {
        match self.rx.get_mut(i) {
            Some((src, buf)) => (*src, buf.as_mut_slice()),
            None => (self.group.addr, &mut []),
        }
    }

    fn waker(&self) -> Waker {
        Waker::new(&self.wake)
    }

    fn stats(&self) -> DriverStats {
        let mut s = self.stats;
        s.rx_errors += self.port.overflow.load(Ordering::Relaxed);
        s
    }
}

impl Parking for MemDriver {
    fn wake_state(&self) -> &WakeShared {
        &self.wake
    }

    fn counters(&mut self) -> &mut DriverStats {
        &mut self.stats
    }

    fn clear_rx(&mut self) {
        self.spare.extend(self.rx.drain(..).map(|(_, buf)| buf));
    }

    fn harvest(&mut self) -> io::Result<()> {
        let mut st = self.port.lock();
        let room = FREE_BUFFERS.saturating_sub(st.free.len());
        let keep = self.spare.len().min(room);
        st.free.extend(self.spare.drain(..keep));
        self.spare.clear();
        while self.rx.len() < self.batch {
            let Some((src, buf)) = st.queue.pop_front() else {
                break;
            };
            st.bytes -= buf.len();
            if buf.len() > self.max_datagram {
                self.stats.rx_errors += 1;
                if st.free.len() < FREE_BUFFERS {
                    st.free.push(buf);
                }
            } else {
                self.rx.push((src, buf));
            }
        }
        Ok(())
    }

    fn wait(&mut self, left: Option<Duration>) -> io::Result<()> {
        let mut st = self.port.lock();
        if st.queue.is_empty() && !st.woken {
            st = match left {
                None => self.port.cv.wait(st).unwrap_or_else(|e| e.into_inner()),
                Some(l) => {
                    self.port
                        .cv
                        .wait_timeout(st, l)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
        st.woken = false;
        Ok(())
    }

    fn has_rx(&self) -> bool {
        !self.rx.is_empty()
    }

    fn finish(&mut self) -> usize {
        let n = self.rx.len();
        if n > 0 {
            self.stats.rx_batches += 1;
            self.stats.rx_datagrams += n as u64;
        }
        n
    }
}
