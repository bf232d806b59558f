//! One shared test body per behaviour, run against every driver kind
//! (`uring::*`, `mmsg::*`, `portable::*`). Loopback only, bounded waits.

mod common;

use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use net_io::{Driver, DriverConfig, DriverKind};

/// Driver-to-driver echo: A → B, B echoes to the source, A gets it back;
/// also a std peer → driver → std peer round trip.
fn echo(kind: DriverKind) {
    let mut a = open_kind(kind);
    let mut b = open_kind(kind);
    let b_addr = b.local_addr();
    assert!(send_all(&mut *a, &[(b_addr, b"hello".to_vec())]).is_empty());
    let (got, _) = collect(&mut *b, 1);
    assert_eq!(got.len(), 1);
    let (src, bytes) = &got[0];
    assert_eq!(bytes, b"hello");
    assert_eq!(*src, a.local_addr());
    send_all(&mut *b, &[(*src, b"olleh".to_vec())]);
    let (back, _) = collect(&mut *a, 1);
    assert_eq!(back, vec![(b_addr, b"olleh".to_vec())]);

    let p = peer();
    p.send_to(b"ping", a.local_addr()).unwrap();
    let (got, _) = collect(&mut *a, 1);
    assert_eq!(got, vec![(p.local_addr().unwrap(), b"ping".to_vec())]);
    send_all(&mut *a, &[(p.local_addr().unwrap(), b"pong".to_vec())]);
    let mut buf = [0u8; 16];
    let (n, from) = p.recv_from(&mut buf).unwrap();
    assert_eq!((&buf[..n], from), (&b"pong"[..], a.local_addr()));

    let (sa, sb) = (a.stats(), b.stats());
    assert_eq!((sa.tx_datagrams, sa.rx_datagrams), (2, 2));
    assert_eq!((sb.tx_datagrams, sb.rx_datagrams), (1, 1));
    assert_eq!(sa.tx_errors + sa.rx_errors + sb.tx_errors + sb.rx_errors, 0);
}

/// 64 datagrams of mixed sizes (2..=2048 bytes) in one flush arrive intact
/// and in few `recv` calls.
fn batch_mixed(kind: DriverKind) {
    let mut a = open_kind(kind);
    let mut b = open_kind(kind);
    let dst = b.local_addr();
    let size = |i: usize| if i == 7 { 2048 } else { 2 + (i * 523) % 2047 };
    let msgs: Vec<(SocketAddr, Vec<u8>)> = (0..64).map(|i| (dst, payload(i, size(i)))).collect();
    assert!(msgs.iter().any(|m| m.1.len() == 2048));
    send_all(&mut *a, &msgs);
    assert_eq!(a.stats().tx_batches, 1);
    let (got, calls) = collect(&mut *b, 64);
    assert_eq!(got.len(), 64, "all 64 datagrams arrive");
    let mut seen = [false; 64];
    for (src, bytes) in &got {
        assert_eq!(*src, a.local_addr());
        let i = check_payload(bytes);
        assert_eq!(bytes.len(), msgs[i].1.len());
        assert!(!seen[i], "datagram {i} duplicated");
        seen[i] = true;
    }
    assert!(calls <= 8, "64 datagrams took {calls} recv calls");
    eprintln!(
        "{kind}: 64 datagrams in {calls} recv calls; sender {:?}; receiver {:?}",
        a.stats(),
        b.stats()
    );
    let s = b.stats();
    assert_eq!(s.rx_datagrams, 64);
    assert_eq!(s.rx_batches as usize, calls);
}

/// 20 equal-size datagrams to one destination go out as GSO super-buffers
/// (mmsg, uring) and arrive as 20 intact datagrams.
fn gso(kind: DriverKind) {
    let mut a = open_kind(kind);
    let mut b = open_kind(kind);
    let dst = b.local_addr();
    let msgs: Vec<(SocketAddr, Vec<u8>)> = (0..20).map(|i| (dst, payload(i, 1200))).collect();
    send_all(&mut *a, &msgs);
    let (got, _) = collect(&mut *b, 20);
    assert_eq!(got.len(), 20);
    let mut idx: Vec<usize> = got.iter().map(|(_, b)| check_payload(b)).collect();
    assert!(got.iter().all(|(_, b)| b.len() == 1200));
    idx.sort_unstable();
    assert_eq!(idx, (0..20).collect::<Vec<_>>());
    // The sender learns of completions by its next call (uring reaps them).
    let _ = a.tx_slot();
    let s = a.stats();
    assert_eq!(s.tx_datagrams, 20);
    assert_eq!(s.tx_errors, 0);
    if kind == DriverKind::Portable {
        assert_eq!(s.gso_sends, 0);
    } else {
        assert!(s.gso_sends > 0, "{kind}: no GSO send ({s:?})");
    }
}

/// A GSO run of 40 × 1200 B and a 600-B tail reaches a uring or mmsg
/// receiver as one coalesced buffer (loopback keeps the run whole), which
/// the driver cuts back into the 41 datagrams, in order, even when its
/// batch of 8 ends in the middle of the buffer. Portable gets them one by
/// one.
fn gro(kind: DriverKind) {
    let mut a = open_kind(kind);
    let cfg = DriverConfig {
        batch: 8,
        ..DriverConfig::default()
    };
    let mut b = open_with(kind, &cfg);
    let dst = b.local_addr();
    let msgs: Vec<(SocketAddr, Vec<u8>)> = (0..41)
        .map(|i| (dst, payload(i, if i == 40 { 600 } else { 1200 })))
        .collect();
    send_all(&mut *a, &msgs);
    let (got, calls) = collect(&mut *b, 41);
    let idx: Vec<usize> = got.iter().map(|(_, b)| check_payload(b)).collect();
    assert_eq!(idx, (0..41).collect::<Vec<_>>(), "in order, none lost");
    assert!(got.iter().all(|(src, _)| *src == a.local_addr()));
    assert!(calls >= 6, "batch of 8 respected: {calls} calls");
    let s = b.stats();
    assert_eq!((s.rx_datagrams, s.rx_errors), (41, 0), "{s:?}");
    if kind == DriverKind::Portable {
        assert_eq!(s.gro_buffers, 0);
    } else {
        assert!(s.gro_buffers >= 1, "{kind}: nothing coalesced ({s:?})");
    }
}

/// A burst far larger than the receiver's batch (and, for uring, its
/// buffer ring: the multishot receive ends with ENOBUFS and is re-armed)
/// arrives complete, `batch` datagrams per `recv` at most.
fn burst_beyond_buffers(kind: DriverKind) {
    let mut a = open_kind(kind);
    let cfg = DriverConfig {
        batch: 4,
        ..DriverConfig::default()
    };
    let mut b = open_with(kind, &cfg);
    let dst = b.local_addr();
    let msgs: Vec<(SocketAddr, Vec<u8>)> =
        (0..300).map(|i| (dst, payload(i, 100 + i % 7))).collect();
    for chunk in msgs.chunks(64) {
        send_all(&mut *a, chunk);
    }
    let (got, calls) = collect(&mut *b, 300);
    assert_eq!(got.len(), 300);
    assert!(calls >= 75, "batch of 4 respected");
    let mut seen = vec![false; 300];
    for (_, bytes) in &got {
        let i = check_payload(bytes);
        assert!(!seen[i]);
        seen[i] = true;
    }
    assert_eq!(b.stats().rx_errors, 0);
}

/// `recv(Some(ZERO))` never blocks; `recv(Some(50ms))` times out.
fn idle_and_timeout(kind: DriverKind) {
    let mut d = open_kind(kind);
    let t = Instant::now();
    let before = d.stats().syscalls;
    for _ in 0..100 {
        assert_eq!(d.recv(Some(Duration::ZERO)).unwrap(), 0);
    }
    let spent = d.stats().syscalls - before;
    if kind == DriverKind::Uring {
        // Nothing to submit and no completion work flagged: no kernel entry.
        assert_eq!(spent, 0, "idle uring polls entered the kernel");
    } else {
        assert!(spent >= 100);
    }
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "100 idle polls took {:?}",
        t.elapsed()
    );
    assert_eq!(d.stats().parks, 0);
    assert!(
        d.rx(0).1.is_empty(),
        "rx past the count is empty, not a panic"
    );
    let t = Instant::now();
    let before = d.stats().syscalls;
    assert_eq!(d.recv(Some(Duration::from_millis(50))).unwrap(), 0);
    let e = t.elapsed();
    let spent = d.stats().syscalls - before;
    assert!(spent <= 6, "a 50 ms park took {spent} syscalls (spinning?)");
    assert!(
        e >= Duration::from_millis(50) && e < PATIENCE,
        "timeout took {e:?}"
    );
    assert!(d.stats().parks >= 1);
}

/// Runs `recv(None)` on another thread and wakes it from this one; the
/// channel timeout is the watchdog.
fn wake_parked(mut d: Box<dyn Driver>) -> Box<dyn Driver> {
    let w = d.waker();
    let (ready_tx, ready_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel();
    let h = std::thread::spawn(move || {
        ready_tx.send(()).unwrap();
        let n = d.recv(None).unwrap();
        done_tx.send(n).unwrap();
        d
    });
    ready_rx.recv_timeout(PATIENCE).unwrap();
    // Not needed for correctness (a wake before the park is not lost), only
    // to exercise the parked path most of the time.
    std::thread::sleep(Duration::from_millis(20));
    let w2 = w.clone();
    std::thread::spawn(move || w2.wake()).join().unwrap();
    let n = done_rx
        .recv_timeout(PATIENCE)
        .expect("wake did not unblock recv(None)");
    assert_eq!(n, 0);
    h.join().unwrap()
}

/// A wake from another thread unblocks `recv(None)`; a wake while not
/// parked makes the next wait return at once, and only once.
fn waker(kind: DriverKind) {
    let mut d = open_kind(kind);
    for round in 1..=3 {
        d = wake_parked(d);
        assert_eq!(d.stats().wakes, round);
        assert_eq!(d.stats().rx_datagrams, 0);
    }
    let w = d.waker();
    w.wake();
    w.wake();
    let t = Instant::now();
    assert_eq!(d.recv(Some(PATIENCE)).unwrap(), 0);
    assert!(t.elapsed() < PATIENCE / 2);
    assert_eq!(d.stats().wakes, 4);
    // Coalesced: the next wait really times out.
    let t = Instant::now();
    assert_eq!(d.recv(Some(Duration::from_millis(30))).unwrap(), 0);
    assert!(t.elapsed() >= Duration::from_millis(30));
    // Still receives normally afterwards.
    let p = peer();
    p.send_to(b"after", d.local_addr()).unwrap();
    assert_eq!(collect(&mut *d, 1).0.len(), 1);
}

/// Sends to a closed port and oversize datagrams (both directions) are
/// counted, not fatal; the driver keeps working.
fn errors(kind: DriverKind) {
    let cfg = DriverConfig {
        batch: 4,
        max_datagram: 65_535,
        ..DriverConfig::default()
    };
    let mut d = open_with(kind, &cfg);
    let p = peer();
    let closed = {
        let s = std::net::UdpSocket::bind(local()).unwrap();
        s.local_addr().unwrap()
    };
    send_all(&mut *d, &[(closed, b"x".to_vec()), (closed, b"y".to_vec())]);
    let _ = d.recv(Some(Duration::from_millis(10))).unwrap();
    // Oversize for UDP/IPv4 (> 65507): the kernel says EMSGSIZE.
    send_all(&mut *d, &[(p.local_addr().unwrap(), vec![7u8; 65_535])]);
    let _ = d.tx_slot();
    assert!(
        d.stats().tx_errors >= 1,
        "EMSGSIZE counted: {:?}",
        d.stats()
    );
    // Longer than the slot: refused at commit.
    let before = d.stats().tx_errors;
    let _ = d.tx_slot();
    d.tx_commit(p.local_addr().unwrap(), 70_000);
    assert_eq!(d.stats().tx_errors, before + 1);
    send_all(&mut *d, &[(p.local_addr().unwrap(), b"fine".to_vec())]);
    let mut buf = [0u8; 64];
    let (n, _) = p.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"fine");

    // Receive side: a datagram larger than max_datagram is dropped.
    let mut small = open_kind(kind);
    p.send_to(&vec![1u8; 20_000], small.local_addr()).unwrap();
    p.send_to(b"next", small.local_addr()).unwrap();
    let (got, _) = collect(&mut *small, 1);
    assert_eq!(got[0].1, b"next");
    assert_eq!(small.stats().rx_errors, 1);
}

/// `open_group` of 2 with steering: data packets land on socket
/// `index & 1`, initiations on `(index >> 1) % 2`, runts somewhere, and
/// each driver's waker wakes that driver.
fn steering(kind: DriverKind) {
    let mut g = open_pair(kind, 2);
    let addr = g[0].local_addr();
    assert_eq!(g[1].local_addr(), addr);
    let st = net_io::Steering::for_group(2);
    let senders: Vec<_> = (0..4).map(|_| peer()).collect();
    let mut seed = 0x2545_f491_u32;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        seed
    };
    for (ptype, label) in [(4u8, "data"), (1u8, "init")] {
        let mut expect = Vec::new();
        for i in 0..64usize {
            let idx = match ptype {
                4 => (next() & !1) | (i as u32 & 1),
                _ => next(),
            };
            let mut p = vec![ptype, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
            p[4..8].copy_from_slice(&idx.to_be_bytes());
            p[8..10].copy_from_slice(&(i as u16).to_be_bytes());
            let want = st.select(&p, 2).expect("in range");
            if ptype == 4 {
                assert_eq!(want, (idx & 1) as usize);
            }
            expect.push(want);
            senders[i % 4].send_to(&p, addr).unwrap();
        }
        let landed = gather(&mut g, 64);
        let mut per = [0usize; 2];
        for (sock, bytes) in &landed {
            let i = u16::from_be_bytes([bytes[8], bytes[9]]) as usize;
            assert_eq!(*sock, expect[i], "{label} datagram {i} on the wrong socket");
            per[*sock] += 1;
        }
        assert_eq!(landed.len(), 64, "{label}: 64 of 64");
        assert!(per[0] > 0 && per[1] > 0, "{label} spread: {per:?}");
    }
    // Runts (shorter than the index field) still land on exactly one socket.
    for s in &senders {
        s.send_to(&[4, 1, 0], addr).unwrap();
    }
    assert_eq!(gather(&mut g, 4).len(), 4);
    // Wakes are routed to the right socket (the portable driver's wake is a
    // datagram that must pass the steering program).
    let d1 = g.pop().unwrap();
    let d1 = wake_parked(d1);
    assert_eq!(d1.stats().wakes, 1);
    let d0 = wake_parked(g.pop().unwrap());
    assert_eq!(d0.stats().wakes, 1);
}

/// Receives from every driver of a group until `want` datagrams arrived
/// (bounded by PATIENCE); returns (driver index, bytes).
fn gather(g: &mut [Box<dyn Driver>], want: usize) -> Vec<(usize, Vec<u8>)> {
    let deadline = Instant::now() + PATIENCE;
    let mut out = Vec::new();
    while out.len() < want && Instant::now() < deadline {
        for (k, d) in g.iter_mut().enumerate() {
            let n = d.recv(Some(Duration::from_millis(5))).unwrap();
            for i in 0..n {
                out.push((k, d.rx(i).1.to_vec()));
            }
        }
    }
    out
}

macro_rules! per_kind {
    ($($module:ident => $kind:expr),* ; $tests:tt) => {
        $(per_kind!(@one $module, $kind, $tests);)*
    };
    (@one $module:ident, $kind:expr, [$($test:ident),* $(,)?]) => {
        mod $module {
            $(
                #[test]
                fn $test() {
                    super::run($kind, stringify!($test), super::$test);
                }
            )*
        }
    };
}

per_kind!(
    uring => net_io::DriverKind::Uring,
    mmsg => net_io::DriverKind::Mmsg,
    portable => net_io::DriverKind::Portable;
    [
        echo,
        batch_mixed,
        gso,
        gro,
        idle_and_timeout,
        waker,
        errors,
        steering,
        burst_beyond_buffers,
    ]
);
