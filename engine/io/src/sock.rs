//! Socket setup and the raw-address helpers the syscall drivers share.

use std::io;
use std::mem;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use socket2::{Domain, Protocol, Socket, Type};

/// Socket buffer size requested for every driver socket (send and receive).
/// Loopback charges ~4 KiB of truesize per small datagram, so the kernel
/// default (~208 KiB) overflows on a single 64-datagram burst.
pub const SOCKET_BUFFER_BYTES: usize = 4 << 20;

/// `SO_RCVBUFFORCE` / `SO_SNDBUFFORCE` (asm-generic values; x86-64, arm64,
/// riscv share them). Root-only: they bypass `net.core.[rw]mem_max`.
const SO_SNDBUFFORCE: libc::c_int = 32;
const SO_RCVBUFFORCE: libc::c_int = 33;
/// `SO_BUSY_POLL` (asm-generic).
const SO_BUSY_POLL: libc::c_int = 46;

/// Binds `n` UDP sockets to `addr`. With `n > 1` they form one
/// `SO_REUSEPORT` group: the first binds `addr` (port 0 picks a port), the
/// rest bind the port it got. Returned in bind order, which is the group's
/// socket index order (what the steering program returns).
pub(crate) fn bind_group(
    addr: SocketAddr,
    n: usize,
    busy_poll_us: Option<u32>,
) -> io::Result<Vec<Socket>> {
    let mut socks = Vec::with_capacity(n);
    let mut target = addr;
    for i in 0..n {
        let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        if n > 1 {
            s.set_reuse_port(true)?;
        }
        if addr.is_ipv6() {
            // Best effort: a dual-stack socket is fine too.
            let _ = s.set_only_v6(true);
        }
        size_buffers(&s);
        set_dont_fragment(&s, addr);
        if let Some(us) = busy_poll_us {
            set_busy_poll(&s, us);
        }
        bind_retrying(&s, target)?;
        if i == 0 {
            target = local_addr(&s)?;
        }
        socks.push(s);
    }
    Ok(socks)
}

/// How long a bind waits for a port still held by a process that is
/// exiting (a node restarted right after a crash: `SIGKILL` returns before
/// the kernel has closed the dead process's sockets).
const BIND_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// Binds `s` to `addr`, retrying `AddrInUse` for up to [`BIND_GRACE`]: a
/// port still held after that belongs to a live process, and the error
/// stands.
fn bind_retrying(s: &Socket, addr: SocketAddr) -> io::Result<()> {
    let give_up = std::time::Instant::now() + BIND_GRACE;
    loop {
        match s.bind(&addr.into()) {
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && addr.port() != 0 => {
                if std::time::Instant::now() >= give_up {
                    return Err(e);
                }
                // Startup only, never on the data path.
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            r => return r,
        }
    }
}

/// The bound address of `s` as a std address.
pub(crate) fn local_addr(s: &Socket) -> io::Result<SocketAddr> {
    s.local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::other("socket has no IP address"))
}

fn size_buffers(s: &Socket) {
    for (force, set) in [(SO_RCVBUFFORCE, false), (SO_SNDBUFFORCE, true)] {
        if setsockopt_int(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            force,
            SOCKET_BUFFER_BYTES as libc::c_int,
        )
        .is_ok()
        {
            continue;
        }
        // Unprivileged: the kernel caps at net.core.[rw]mem_max, which is fine.
        let r = if set {
            s.set_send_buffer_size(SOCKET_BUFFER_BYTES)
        } else {
            s.set_recv_buffer_size(SOCKET_BUFFER_BYTES)
        };
        if let Err(e) = r {
            tracing::debug!(error = %e, "net-io: could not size socket buffer");
        }
    }
}

/// Sets DF on every datagram and stops the kernel from fragmenting or
/// capping them by its own path-MTU cache (`IP_PMTUDISC_PROBE`): the
/// protocol discovers the path MTU itself (PROTOCOL §7.1), and needs a
/// probe larger than the path to be refused (EMSGSIZE, counted in
/// `tx_errors`) or dropped on the way, never fragmented into success.
fn set_dont_fragment(s: &Socket, addr: SocketAddr) {
    let (level, name, v) = match addr {
        SocketAddr::V4(_) => (
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            libc::IP_PMTUDISC_PROBE,
        ),
        SocketAddr::V6(_) => (
            libc::IPPROTO_IPV6,
            libc::IPV6_MTU_DISCOVER,
            libc::IPV6_PMTUDISC_PROBE,
        ),
    };
    if let Err(e) = setsockopt_int(s.as_raw_fd(), level, name, v) {
        tracing::warn!(error = %e, "net-io: could not set DF (path-MTU probing); datagrams may be fragmented");
    }
}

fn set_busy_poll(s: &Socket, us: u32) {
    let v = us.min(i32::MAX as u32) as libc::c_int;
    match setsockopt_int(s.as_raw_fd(), libc::SOL_SOCKET, SO_BUSY_POLL, v) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
            tracing::debug!("net-io: SO_BUSY_POLL not permitted; ignored");
        }
        Err(e) => tracing::warn!(error = %e, "net-io: SO_BUSY_POLL failed; ignored"),
    }
}

/// `setsockopt(fd, level, name, &v, sizeof(int))`.
pub(crate) fn setsockopt_int(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    v: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `&v` points to a live c_int for the duration of the call and the
    // length passed is exactly its size; the kernel only reads it.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&v as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `getsockopt(fd, level, name)` of an int.
pub(crate) fn getsockopt_int(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
) -> io::Result<libc::c_int> {
    let mut v: libc::c_int = 0;
    let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `v` and `len` are live locals; `len` tells the kernel the
    // buffer's exact size so it cannot write past `v`.
    let r = unsafe {
        libc::getsockopt(
            fd,
            level,
            name,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if r == 0 {
        Ok(v)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A close-on-exec eventfd. The mmsg driver polls it and drains it with
/// nonblocking reads; the uring driver keeps a `READ` SQE on it, which must
/// be a blocking file: io_uring completes reads of an `O_NONBLOCK` file with
/// EAGAIN instead of waiting on some kernels. Writes never block either way
/// (the counter cannot come near overflow).
pub(crate) fn eventfd(nonblocking: bool) -> io::Result<OwnedFd> {
    let flags = libc::EFD_CLOEXEC | if nonblocking { libc::EFD_NONBLOCK } else { 0 };
    // SAFETY: plain syscall with constant flags; no pointers.
    let fd = unsafe { libc::eventfd(0, flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by eventfd(2), is valid and owned by
    // nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Adds 1 to an eventfd counter. Errors are ignored: EAGAIN means the
/// counter is saturated, i.e. a wake is already pending.
pub(crate) fn eventfd_signal(fd: RawFd) {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a live local u64, the size eventfd requires.
    let _ = unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
}

/// Resets an eventfd counter (nonblocking read). Returns whether it was set.
pub(crate) fn eventfd_drain(fd: RawFd) -> bool {
    let mut v: u64 = 0;
    // SAFETY: reads at most 8 bytes into a live local u64.
    let r = unsafe { libc::read(fd, (&mut v as *mut u64).cast(), 8) };
    r == 8
}

/// The raw errno of the last failed libc call.
pub(crate) fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Size of the name buffer the syscall drivers reserve per datagram: a
/// `sockaddr_in6` holds both families.
pub(crate) const NAME_LEN: usize = mem::size_of::<libc::sockaddr_in6>();

/// Writes `addr` as a `sockaddr_in`/`sockaddr_in6` into `out` and returns the
/// length to pass to the kernel.
pub(crate) fn write_sockaddr(addr: &SocketAddr, out: &mut libc::sockaddr_in6) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_in (16 bytes) is smaller than sockaddr_in6 (28)
            // and both are plain-old-data; the write stays inside `out`.
            unsafe {
                std::ptr::write_unaligned(
                    (out as *mut libc::sockaddr_in6).cast::<libc::sockaddr_in>(),
                    sin,
                )
            };
            mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            *out = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

/// Parses a kernel-written socket address (`sockaddr_in`/`sockaddr_in6`
/// bytes, as many as the kernel reported). Unknown families and short
/// buffers give `None`.
pub(crate) fn read_sockaddr(name: &[u8]) -> Option<SocketAddr> {
    if name.len() < 2 {
        return None;
    }
    let family = libc::sa_family_t::from_ne_bytes([name[0], name[1]]);
    match family as libc::c_int {
        libc::AF_INET if name.len() >= mem::size_of::<libc::sockaddr_in>() => {
            let port = u16::from_be_bytes([name[2], name[3]]);
            let ip = Ipv4Addr::new(name[4], name[5], name[6], name[7]);
            Some(SocketAddr::V4(SocketAddrV4::new(ip, port)))
        }
        libc::AF_INET6 if name.len() >= NAME_LEN => {
            let port = u16::from_be_bytes([name[2], name[3]]);
            let flow = u32::from_ne_bytes([name[4], name[5], name[6], name[7]]);
            let mut ip = [0u8; 16];
            ip.copy_from_slice(&name[8..24]);
            let scope = u32::from_ne_bytes([name[24], name[25], name[26], name[27]]);
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(ip),
                port,
                flow,
                scope,
            )))
        }
        _ => None,
    }
}

/// Views a kernel-filled `sockaddr_in6` buffer as the `len` bytes the kernel
/// wrote (clamped to the buffer) and parses it.
pub(crate) fn sockaddr_from_raw(
    name: &libc::sockaddr_in6,
    len: libc::socklen_t,
) -> Option<SocketAddr> {
    let len = (len as usize).min(NAME_LEN);
    // SAFETY: `name` is a live, initialised sockaddr_in6 of NAME_LEN bytes
    // and `len <= NAME_LEN`; u8 has no alignment or validity requirements.
    let bytes = unsafe {
        std::slice::from_raw_parts((name as *const libc::sockaddr_in6).cast::<u8>(), len)
    };
    read_sockaddr(bytes)
}

/// The address to reach a socket bound to `local` from this host: the
/// unspecified address is replaced by loopback of the same family.
pub(crate) fn reachable(local: SocketAddr) -> SocketAddr {
    let ip = match local.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, local.port())
}

/// An all-zero `sockaddr_in6` (valid: it is plain old data).
pub(crate) fn zero_sockaddr() -> libc::sockaddr_in6 {
    // SAFETY: sockaddr_in6 is a C struct of integers and byte arrays, for
    // which all-zero bytes are a valid value.
    unsafe { mem::zeroed() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockaddr_round_trip() {
        for a in [
            "127.0.0.1:4242",
            "[::1]:9",
            "[fe80::1%3]:65535",
            "0.0.0.0:0",
        ] {
            let a: SocketAddr = a.parse().unwrap();
            let mut raw = zero_sockaddr();
            let len = write_sockaddr(&a, &mut raw);
            assert_eq!(sockaddr_from_raw(&raw, len), Some(a));
        }
        assert_eq!(read_sockaddr(&[0u8; 1]), None);
        assert_eq!(read_sockaddr(&[0xffu8; 28]), None);
    }
}
