//! The in-memory driver ([`MemNet`]) against the [`Driver`] contract:
//! delivery, batches, timeouts, wakes, drops, binding, steering and the
//! seeded fault knob. No socket is opened.

use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use net_io::{open, Driver, DriverChoice, DriverConfig, DriverKind, IoError, MemNet, Steering};

/// Upper bound for anything a test waits for (only reached on failure).
const PATIENCE: Duration = Duration::from_secs(10);

fn local() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn send(d: &mut dyn Driver, dst: SocketAddr, payload: &[u8]) {
    let slot = d.tx_slot().expect("free tx slot");
    slot[..payload.len()].copy_from_slice(payload);
    d.tx_commit(dst, payload.len());
    d.flush().unwrap();
}

/// Receives until `n` datagrams arrived (or PATIENCE passed).
fn collect(d: &mut dyn Driver, n: usize) -> Vec<(SocketAddr, Vec<u8>)> {
    let deadline = Instant::now() + PATIENCE;
    let mut got = Vec::new();
    while got.len() < n && Instant::now() < deadline {
        let k = d.recv(Some(PATIENCE)).unwrap();
        for i in 0..k {
            let (src, b) = d.rx(i);
            got.push((src, b.to_vec()));
        }
    }
    got
}

#[test]
fn datagrams_travel_both_ways_with_their_source() {
    let net = MemNet::new();
    let mut a = net.bind(local()).unwrap();
    let mut b = net.bind(local()).unwrap();
    assert_eq!(a.kind(), DriverKind::Memory);
    assert_ne!(a.local_addr(), b.local_addr());
    assert_ne!(a.local_addr().port(), 0);

    send(&mut *a, b.local_addr(), b"ping");
    assert_eq!(b.recv(Some(PATIENCE)).unwrap(), 1);
    let (src, bytes) = b.rx(0);
    assert_eq!((src, &bytes[..]), (a.local_addr(), &b"ping"[..]));
    bytes[0] = b'P'; // decrypted in place by callers: the view is mutable
    assert_eq!(b.rx(0).1, b"Ping");
    assert!(
        b.rx(1).1.is_empty(),
        "out-of-range index yields an empty slice"
    );

    send(&mut *b, src, b"pong");
    let got = collect(&mut *a, 1);
    assert_eq!(got, vec![(b.local_addr(), b"pong".to_vec())]);
    assert_eq!(a.stats().tx_datagrams, 1);
    assert_eq!(a.stats().rx_datagrams, 1);
    assert_eq!(a.stats().syscalls, 0);
}

#[test]
fn batches_fill_up_and_arrive_in_order() {
    let net = MemNet::new();
    let cfg = DriverConfig {
        batch: 8,
        ..DriverConfig::default()
    };
    let mut a = net
        .bind_group(local(), 1, Steering::default(), &cfg)
        .unwrap()
        .pop()
        .unwrap();
    let mut b = net
        .bind_group(local(), 1, Steering::default(), &cfg)
        .unwrap()
        .pop()
        .unwrap();
    let dst = b.local_addr();
    let mut sent = 0u32;
    for _ in 0..3 {
        while let Some(slot) = a.tx_slot() {
            slot[..4].copy_from_slice(&sent.to_be_bytes());
            a.tx_commit(dst, 4);
            sent += 1;
        }
        a.flush().unwrap();
    }
    assert_eq!(sent, 24, "a tx batch holds exactly `batch` datagrams");
    assert_eq!(a.stats().tx_batches, 3);
    // Each recv returns at most one batch.
    let mut seen = Vec::new();
    while seen.len() < 24 {
        let n = b.recv(Some(PATIENCE)).unwrap();
        assert!((1..=8).contains(&n), "recv returned {n}");
        for i in 0..n {
            let bytes = b.rx(i).1;
            seen.push(u32::from_be_bytes(bytes.try_into().unwrap()));
        }
    }
    assert_eq!(seen, (0..24).collect::<Vec<_>>());
    assert_eq!(b.stats().rx_batches, 3);
    assert_eq!(b.recv(Some(Duration::ZERO)).unwrap(), 0);
}

#[test]
fn recv_times_out_with_zero() {
    let net = MemNet::new();
    let mut d = net.bind(local()).unwrap();
    assert_eq!(d.recv(Some(Duration::ZERO)).unwrap(), 0);
    assert_eq!(d.stats().parks, 0, "a zero timeout never blocks");
    let t = Duration::from_millis(30);
    let start = Instant::now();
    assert_eq!(d.recv(Some(t)).unwrap(), 0);
    assert!(start.elapsed() >= t, "returned after {:?}", start.elapsed());
    assert!(d.stats().parks >= 1);
    assert_eq!(d.stats().wakes, 0);
}

#[test]
fn a_wake_before_recv_is_not_lost() {
    let net = MemNet::new();
    let mut d = net.bind(local()).unwrap();
    d.waker().wake();
    // Would block forever if the wake were lost.
    assert_eq!(d.recv(None).unwrap(), 0);
    assert_eq!(d.stats().wakes, 1);
    // Wakes coalesce and are consumed.
    assert_eq!(d.recv(Some(Duration::from_millis(1))).unwrap(), 0);
    assert_eq!(d.stats().wakes, 1);
}

/// A driver blocked in `recv(None)` on another thread returns on a wake,
/// and on a datagram; 200 rounds make the wake race the park both ways.
#[test]
fn wakes_and_datagrams_release_a_blocked_recv() {
    let net = MemNet::new();
    let d = net.bind(local()).unwrap();
    let mut peer = net.bind(local()).unwrap();
    let addr = d.local_addr();
    let waker = d.waker();
    let (go_tx, go_rx) = mpsc::channel::<bool>();
    let (done_tx, done_rx) = mpsc::channel::<(usize, u64)>();
    let worker = std::thread::spawn(move || {
        let mut d = d;
        while let Ok(expect_data) = go_rx.recv() {
            let mut n = d.recv(None).unwrap();
            while expect_data && n == 0 {
                // A stale wake from an earlier round may return first.
                n = d.recv(None).unwrap();
            }
            done_tx.send((n, d.stats().parks)).unwrap();
        }
    });
    for round in 0..200 {
        let data = round % 2 == 1;
        go_tx.send(data).unwrap();
        if data {
            send(&mut *peer, addr, b"x");
        } else {
            waker.wake();
        }
        let (n, _) = done_rx
            .recv_timeout(PATIENCE)
            .unwrap_or_else(|_| panic!("round {round}: blocked recv was not released"));
        assert_eq!(n, usize::from(data), "round {round}");
    }
    drop(go_tx);
    worker.join().unwrap();
}

#[test]
fn datagrams_to_unbound_addresses_are_dropped_and_counted() {
    let net = MemNet::new();
    let mut a = net.bind(local()).unwrap();
    let gone = {
        let b = net.bind(local()).unwrap();
        b.local_addr()
    };
    send(&mut *a, gone, b"lost");
    send(&mut *a, "127.0.0.1:9".parse().unwrap(), b"lost");
    let s = a.stats();
    assert_eq!((s.tx_errors, s.tx_datagrams), (2, 0));
    // A dropped driver released its address.
    let again = net
        .bind_group(gone, 1, Steering::default(), &DriverConfig::default())
        .unwrap();
    assert_eq!(again[0].local_addr(), gone);
}

#[test]
fn binding_a_taken_address_fails_with_addr_in_use() {
    let net = MemNet::new();
    let a = net.bind(local()).unwrap();
    match net.bind(a.local_addr()) {
        Err(IoError::Bind(e)) => assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse),
        other => panic!(
            "expected AddrInUse, got {:?}",
            other.map(|d| d.local_addr())
        ),
    }
    let any = SocketAddr::new([0, 0, 0, 0].into(), a.local_addr().port());
    assert!(
        net.bind(any).is_err(),
        "the wildcard overlaps the bound port"
    );
    // Another network is another namespace.
    assert!(MemNet::new().bind(a.local_addr()).is_ok());
}

#[test]
fn a_wildcard_port_receives_loopback_traffic_and_replies_from_loopback() {
    let net = MemNet::new();
    let mut server = net.bind("0.0.0.0:7000".parse().unwrap()).unwrap();
    let mut client = net.bind(local()).unwrap();
    send(&mut *client, "127.0.0.1:7000".parse().unwrap(), b"hi");
    assert_eq!(server.recv(Some(PATIENCE)).unwrap(), 1);
    let src = server.rx(0).0;
    send(&mut *server, src, b"back");
    let got = collect(&mut *client, 1);
    assert_eq!(got[0].0, "127.0.0.1:7000".parse().unwrap());
}

#[test]
fn oversized_datagrams_are_dropped_on_both_sides() {
    let net = MemNet::new();
    let small = DriverConfig {
        max_datagram: 100,
        ..DriverConfig::default()
    };
    let mut big = net.bind(local()).unwrap();
    let mut little = net
        .bind_group(local(), 1, Steering::default(), &small)
        .unwrap()
        .pop()
        .unwrap();
    little.tx_slot().unwrap();
    little.tx_commit(big.local_addr(), 101);
    assert_eq!(little.stats().tx_errors, 1);
    send(&mut *big, little.local_addr(), &[7u8; 101]);
    send(&mut *big, little.local_addr(), &[8u8; 100]);
    let got = collect(&mut *little, 1);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1, vec![8u8; 100]);
    assert_eq!(little.stats().rx_errors, 1);
}

#[test]
fn a_full_queue_drops_and_counts() {
    let net = MemNet::new();
    let mut a = net.bind(local()).unwrap();
    let mut b = net.bind(local()).unwrap();
    let size = 16_000;
    let fits = MemNet::QUEUE_BYTES / size;
    for _ in 0..fits + 5 {
        send(&mut *a, b.local_addr(), &vec![1u8; size]);
    }
    assert_eq!(b.stats().rx_errors, 5);
    let got = collect(&mut *b, fits);
    assert_eq!(got.len(), fits);
    assert_eq!(b.recv(Some(Duration::ZERO)).unwrap(), 0);
}

#[test]
fn a_group_steers_by_the_receiver_index() {
    let net = MemNet::new();
    let steering = Steering::for_group(2);
    let mut group = net
        .bind_group(local(), 2, steering, &DriverConfig::default())
        .unwrap();
    assert_eq!(group[0].local_addr(), group[1].local_addr());
    let mut c = net.bind(local()).unwrap();
    let dst = group[0].local_addr();
    // Data packet (type 2) whose receiver index has low bit 1 → driver 1.
    send(&mut *c, dst, &[2, 0, 0, 0, 0, 0, 0, 0x21]);
    // Data packet with low bit 0 → driver 0.
    send(&mut *c, dst, &[2, 0, 0, 0, 0, 0, 0, 0x20]);
    assert_eq!(collect(&mut *group[1], 1)[0].1[7], 0x21);
    assert_eq!(collect(&mut *group[0], 1)[0].1[7], 0x20);
    assert_eq!(group[0].recv(Some(Duration::ZERO)).unwrap(), 0);
    assert_eq!(group[1].recv(Some(Duration::ZERO)).unwrap(), 0);
}

/// Sends 2 000 numbered datagrams over a faulty network and returns what
/// arrived, with the net's loss and duplication counts.
fn faulty_run(seed: u64) -> (Vec<u32>, u64, u64) {
    let net = MemNet::with_faults(seed, 0.2, 0.1);
    let mut a = net.bind(local()).unwrap();
    let mut b = net.bind(local()).unwrap();
    let mut got = Vec::new();
    for i in 0..2_000u32 {
        send(&mut *a, b.local_addr(), &i.to_be_bytes());
        let n = b.recv(Some(Duration::ZERO)).unwrap();
        for k in 0..n {
            got.push(u32::from_be_bytes(b.rx(k).1.try_into().unwrap()));
        }
    }
    (got, net.lost(), net.duplicated())
}

#[test]
fn faults_are_seeded_and_counted() {
    let (got, lost, dup) = faulty_run(42);
    assert!(lost > 300 && lost < 500, "lost {lost} of 2000 at p=0.2");
    assert!(dup > 100 && dup < 220, "duplicated {dup} at p=0.1");
    assert_eq!(got.len() as u64, 2_000 - lost + dup);
    assert!(got.windows(2).all(|w| w[0] <= w[1]), "no reordering");
    assert_eq!(
        faulty_run(42),
        (got.clone(), lost, dup),
        "same seed, same run"
    );
    assert_ne!(faulty_run(43).0, got, "another seed, another run");
    assert_eq!(MemNet::with_loss(1, 0.0).lost(), 0);
}

#[test]
fn open_refuses_the_memory_kind_and_names_memnet() {
    match open(
        local(),
        DriverChoice::Force(DriverKind::Memory),
        &DriverConfig::default(),
    ) {
        Err(IoError::Unavailable { kind, reason }) => {
            assert_eq!(kind, DriverKind::Memory);
            assert!(reason.contains("MemNet"), "{reason}");
        }
        Err(e) => panic!("expected Unavailable, got {e}"),
        Ok(d) => panic!("opened a {} driver", d.kind()),
    }
    assert_eq!("memory".parse::<DriverKind>().unwrap(), DriverKind::Memory);
    assert_eq!(
        " Memory ".parse::<DriverChoice>().unwrap(),
        DriverChoice::Force(DriverKind::Memory)
    );
    assert_eq!(DriverKind::Memory.to_string(), "memory");
    assert!(
        !DriverKind::ALL.contains(&DriverKind::Memory),
        "Auto never picks it"
    );
}
