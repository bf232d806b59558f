//! In-crate tests that need the drivers' internals: the GSO fallback (the
//! kernel refuses GSO on a socket with `SO_NO_CHECK`, with EINVAL), the
//! EMSGSIZE fallback (a run holding a datagram larger than the path), and
//! the uring driver's quiescent shutdown.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

use crate::{mmsg::MmsgDriver, sock, uring::UringDriver, Driver, DriverConfig};

/// `SO_NO_CHECK` (asm-generic): no UDP checksum on transmit, which the
/// kernel's GSO path rejects with EINVAL.
const SO_NO_CHECK: libc::c_int = 11;

fn bound_no_check() -> socket2::Socket {
    let mut v = sock::bind_group("127.0.0.1:0".parse().unwrap(), 1, None).unwrap();
    let s = v.pop().unwrap();
    sock::setsockopt_int(s.as_raw_fd(), libc::SOL_SOCKET, SO_NO_CHECK, 1).unwrap();
    s
}

fn send_equal(d: &mut dyn Driver, dst: SocketAddr, n: usize, len: usize) {
    for i in 0..n {
        let slot = d.tx_slot().unwrap();
        slot[..len].fill(i as u8);
        slot[4..8].fill(0); // one receiver index: the datagrams form a GSO run
        d.tx_commit(dst, len);
    }
    d.flush().unwrap();
    d.recv(Some(Duration::ZERO)).unwrap();
    let _ = d.tx_slot(); // reap uring completions
}

fn check_fallback(d: &mut dyn Driver) {
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let dst = peer.local_addr().unwrap();
    send_equal(d, dst, 20, 1000);
    let mut buf = [0u8; 2048];
    let mut got = [false; 20];
    for _ in 0..20 {
        let (n, _) = peer.recv_from(&mut buf).unwrap();
        assert_eq!(n, 1000);
        assert!(buf[8..n].iter().all(|&b| b == buf[0]));
        got[buf[0] as usize] = true;
    }
    assert!(got.iter().all(|&g| g));
    let s = d.stats();
    assert_eq!(
        (s.tx_datagrams, s.tx_errors, s.gso_sends, s.downgrades),
        (20, 0, 0, 1),
        "{s:?}"
    );
    // GSO stays off: a second run sends plainly without a new downgrade.
    send_equal(d, dst, 4, 100);
    assert_eq!(d.stats().downgrades, 1);
    assert_eq!(d.stats().tx_datagrams, 24);
}

#[test]
fn mmsg_gso_fallback() {
    let s = bound_no_check();
    let mut d = MmsgDriver::new(&s, &DriverConfig::default(), false).unwrap();
    check_fallback(&mut d);
}

#[test]
fn uring_gso_fallback() {
    let s = bound_no_check();
    match UringDriver::new(&s, &DriverConfig::default(), false) {
        Ok(mut d) => check_fallback(&mut d),
        Err(e) => eprintln!("uring unavailable ({e}); fallback test skipped"),
    }
}

#[test]
fn uring_shutdown_quiesces() {
    let s = bound_no_check();
    let Ok(mut d) = UringDriver::new(&s, &DriverConfig::default(), false) else {
        eprintln!("uring unavailable; skipped");
        return;
    };
    let dst = d.local_addr();
    // Leave sends in flight and datagrams unreaped, then shut down.
    for _ in 0..8 {
        let slot = d.tx_slot().unwrap();
        slot[..10].fill(1);
        d.tx_commit(dst, 10);
    }
    d.flush().unwrap();
    assert!(d.shutdown_for_test());
}

/// A driver opened here, used on another thread (which re-arms its receive
/// there) and dropped back here still quiesces: the cancelled generations'
/// completions all arrive.
#[test]
fn uring_shutdown_after_migration() {
    let s = bound_no_check();
    let Ok(mut d) = UringDriver::new(&s, &DriverConfig::default(), false) else {
        eprintln!("uring unavailable; skipped");
        return;
    };
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    let dst = d.local_addr();
    let mut d = std::thread::spawn(move || {
        assert_eq!(d.recv(Some(Duration::ZERO)).unwrap(), 0);
        d
    })
    .join()
    .unwrap();
    peer.send_to(b"back home", dst).unwrap();
    let n = d.recv(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(n, 1);
    assert_eq!(d.rx(0).1, b"back home");
    assert!(d.shutdown_for_test());
}

/// Moves the calling thread into a fresh network namespace whose loopback
/// has MTU 1500 (root only). `Err(reason)` where that is impossible.
fn private_loopback_1500() -> Result<(), String> {
    // SAFETY: unshare takes no pointers; CLONE_NEWNET moves only the calling
    // thread (this test's own) into a new network namespace.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(format!(
            "unshare(CLONE_NEWNET): {}",
            std::io::Error::last_os_error()
        ));
    }
    // A child forked from this thread starts in its namespace.
    let out = std::process::Command::new("ip")
        .args(["link", "set", "lo", "mtu", "1500", "up"])
        .output()
        .map_err(|e| format!("running ip: {e}"))?;
    if !out.status.success() {
        return Err(format!("ip link: {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(())
}

/// A GSO run whose first datagram is larger than the path (a path-MTU
/// probe: DF is set) is refused whole with EMSGSIZE; the driver resends its
/// datagrams one by one, so only the probe is lost and the datagram grouped
/// behind it arrives. Run in a private namespace whose loopback has MTU
/// 1500; skipped (with the reason) without root, except under `CI=true`.
fn check_emsgsize_fallback(kind: crate::DriverKind) {
    let r = std::thread::spawn(move || -> Result<(), String> {
        private_loopback_1500()?;
        let cfg = DriverConfig::default();
        let choice = crate::DriverChoice::Force(kind);
        let mut d = crate::open("127.0.0.1:0".parse().unwrap(), choice, &cfg)
            .map_err(|e| format!("{kind} driver: {e}"))?;
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let dst = peer.local_addr().unwrap();
        for (len, fill) in [(2000, 1u8), (1000, 2u8)] {
            let slot = d.tx_slot().unwrap();
            slot[..len].fill(fill);
            slot[4..8].fill(0); // one receiver index: one GSO run
            d.tx_commit(dst, len);
        }
        d.flush().unwrap();
        d.recv(Some(Duration::ZERO)).unwrap();
        let _ = d.tx_slot(); // reap uring completions
        let mut buf = [0u8; 4096];
        let (n, _) = peer.recv_from(&mut buf).unwrap();
        assert_eq!(
            (n, buf[0]),
            (1000, 2),
            "the datagram behind the probe arrives"
        );
        let s = d.stats();
        assert_eq!((s.tx_datagrams, s.tx_errors), (1, 1), "{kind}: {s:?}");
        assert_eq!(s.downgrades, 0, "GSO stays on");
        Ok(())
    })
    .join()
    .expect("test thread");
    match r {
        Ok(()) => {}
        Err(reason) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("SKIPPED under CI=true (CI runs as root with iproute2): {reason}")
        }
        Err(reason) => eprintln!("SKIPPED emsgsize fallback for {kind}: {reason}"),
    }
}

#[test]
fn mmsg_emsgsize_fallback() {
    check_emsgsize_fallback(crate::DriverKind::Mmsg);
}

#[test]
fn uring_emsgsize_fallback() {
    check_emsgsize_fallback(crate::DriverKind::Uring);
}
