//! Helpers shared by the driver tests: opening drivers of a kind (skipping
//! uring loudly when the kernel refuses it), sending, collecting.

#![allow(dead_code)]

use std::io::Write;
use std::net::{SocketAddr, UdpSocket};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use net_io::{open, open_group, Driver, DriverChoice, DriverConfig, DriverKind, IoError, Steering};

/// Upper bound for anything a test waits for.
pub const PATIENCE: Duration = Duration::from_secs(5);

pub fn local() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Whether `kind` can be opened here; `Err(reason)` when the kernel refuses.
pub fn availability(kind: DriverKind) -> &'static Result<(), String> {
    static CACHE: [OnceLock<Result<(), String>>; 3] =
        [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    let i = DriverKind::ALL.iter().position(|k| *k == kind).unwrap();
    CACHE[i].get_or_init(|| {
        match open(local(), DriverChoice::Force(kind), &DriverConfig::default()) {
            Ok(_) => Ok(()),
            Err(IoError::Unavailable { reason, .. }) => Err(reason),
            Err(e) => panic!("opening {kind} failed unexpectedly: {e}"),
        }
    })
}

/// Whether a kernel that refuses io_uring fails the uring tests instead of
/// skipping them: `NET_REQUIRE_URING=1`, which `.ci/run` sets.
pub fn uring_required() -> bool {
    std::env::var_os("NET_REQUIRE_URING").is_some_and(|v| v == "1")
}

/// Runs `body` for `kind`, or prints why it is skipped (uring only, and
/// only without `NET_REQUIRE_URING=1`: the other kinds must work
/// everywhere). The message bypasses the test harness's capture so it is
/// always visible.
pub fn run(kind: DriverKind, name: &str, body: fn(DriverKind)) {
    match availability(kind) {
        Ok(()) => body(kind),
        Err(reason) if kind == DriverKind::Uring && !uring_required() => {
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {name} for uring: kernel refused it: {reason}"
            );
        }
        Err(reason) => panic!("{kind} must be available everywhere, got: {reason}"),
    }
}

pub fn open_with(kind: DriverKind, cfg: &DriverConfig) -> Box<dyn Driver> {
    let d = open(local(), DriverChoice::Force(kind), cfg).expect("open");
    assert_eq!(d.kind(), kind);
    d
}

pub fn open_kind(kind: DriverKind) -> Box<dyn Driver> {
    open_with(kind, &DriverConfig::default())
}

pub fn open_pair(kind: DriverKind, n: usize) -> Vec<Box<dyn Driver>> {
    let g = open_group(
        local(),
        n,
        Steering::for_group(n),
        DriverChoice::Force(kind),
        &DriverConfig::default(),
    )
    .expect("open_group");
    assert_eq!(g.len(), n);
    g
}

/// Queues every datagram, flushes, and makes sure the kernel got them
/// (the uring driver submits on the next `recv`). Any datagram received
/// by that `recv` is returned.
pub fn send_all(d: &mut dyn Driver, msgs: &[(SocketAddr, Vec<u8>)]) -> Vec<(SocketAddr, Vec<u8>)> {
    for (dst, bytes) in msgs {
        let slot = match d.tx_slot() {
            Some(s) => s,
            None => {
                d.flush().unwrap();
                d.tx_slot().expect("slot after flush")
            }
        };
        slot[..bytes.len()].copy_from_slice(bytes);
        d.tx_commit(*dst, bytes.len());
    }
    d.flush().unwrap();
    take(d)
}

/// One `recv(Some(ZERO))` (which submits deferred sends) and its datagrams.
pub fn take(d: &mut dyn Driver) -> Vec<(SocketAddr, Vec<u8>)> {
    let n = d.recv(Some(Duration::ZERO)).unwrap();
    (0..n)
        .map(|i| {
            let (src, b) = d.rx(i);
            (src, b.to_vec())
        })
        .collect()
}

/// Receives until `want` datagrams arrived or [`PATIENCE`] ran out. Returns
/// them and the number of `recv` calls that returned datagrams.
pub fn collect(d: &mut dyn Driver, want: usize) -> (Vec<(SocketAddr, Vec<u8>)>, usize) {
    let deadline = Instant::now() + PATIENCE;
    let mut got = Vec::new();
    let mut calls = 0;
    while got.len() < want {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let n = d.recv(Some(left)).unwrap();
        if n > 0 {
            calls += 1;
        }
        for i in 0..n {
            let (src, b) = d.rx(i);
            got.push((src, b.to_vec()));
        }
    }
    (got, calls)
}

/// A std socket on loopback with a bounded read timeout.
pub fn peer() -> UdpSocket {
    let s = UdpSocket::bind(local()).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s
}

/// `len` bytes identifying datagram `i`: byte 0..2 = i, bytes 2..8 the
/// same for every `i` (where Net puts the receiver index, which a GSO run
/// keeps constant), then a pattern of `i`.
pub fn payload(i: usize, len: usize) -> Vec<u8> {
    assert!(len >= 2);
    let mut v: Vec<u8> = (0..len)
        .map(|j| {
            if j < 8 {
                j as u8
            } else {
                (i.wrapping_mul(31) + j) as u8
            }
        })
        .collect();
    v[..2].copy_from_slice(&(i as u16).to_be_bytes());
    v
}

/// The index encoded by [`payload`], after checking the pattern.
pub fn check_payload(b: &[u8]) -> usize {
    let i = u16::from_be_bytes([b[0], b[1]]) as usize;
    assert_eq!(b, &payload(i, b.len())[..], "payload {i} corrupted");
    i
}
