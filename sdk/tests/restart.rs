//! A server process killed with SIGKILL and restarted at once on the same
//! port with the same identity, while a client calls every 10 ms: the
//! client reaches the new process within 200 ms of it listening (the new
//! process answers the stale session with a stateless reset, the client
//! handshakes again at once), no call runs twice, and every call either
//! succeeds or fails `Unavailable` because of the reset.
//!
//! The server is this test binary itself, re-run with the ignored test
//! `restart_child_server` selected and its settings in the environment.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use net::{CallOptions, Identity, Mesh, RpcError, Status};
use net_testkit::eventually;

const PSK: [u8; 32] = [9; 32];
const SERVER_SEED: [u8; 32] = [42; 32];
const CLIENT_SEED: [u8; 32] = [43; 32];
const ENV_PORT: &str = "NET_RESTART_CHILD_PORT";
const ENV_LOG: &str = "NET_RESTART_CHILD_LOG";
/// How long the client may take to reach the restarted process.
const RECOVERY_BOUND: Duration = Duration::from_millis(200);
/// Per-call deadline: generous, so only the reset can fail a call.
const CALL_DEADLINE: Duration = Duration::from_secs(3);

/// The server process: serves `exec`, which appends the 8-byte call id to
/// the log file (one `write` with `O_APPEND`, so a kill cannot tear it) and
/// echoes it; prints "listening" once bound, then waits to be killed.
#[test]
#[ignore = "the server process `a_killed_server_*` spawns; not a test by itself"]
fn restart_child_server() {
    let port: u16 = std::env::var(ENV_PORT)
        .expect("run by the restart test")
        .parse()
        .expect("port");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(std::env::var(ENV_LOG).expect("log path"))
        .expect("open log");
    let mesh = Mesh::builder()
        .identity(Identity::from_seed(&SERVER_SEED))
        .psk(PSK)
        .listen(SocketAddr::from(([127, 0, 0, 1], port)))
        .cores(1)
        .pin(false)
        .build()
        .expect("build");
    mesh.start().expect("start");
    let _serving = mesh
        .serve_rpc("exec", move |_, req, out| {
            if (&log).write_all(req).is_err() {
                return Status::INTERNAL;
            }
            out.extend_from_slice(req);
            Status::OK
        })
        .expect("serve");
    println!("listening");
    std::io::stdout().flush().expect("flush");
    loop {
        std::thread::park();
    }
}

/// A running server process and the instant it said it was listening.
struct Server {
    child: Child,
    listening: Instant,
}

fn spawn_server(port: u16, log: &std::path::Path) -> Server {
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--ignored",
            "--exact",
            "restart_child_server",
            "--nocapture",
        ])
        .env(ENV_PORT, port.to_string())
        .env(ENV_LOG, log)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn server");
    let out = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { return };
            if line.contains("listening") && tx.send(Instant::now()).is_err() {
                return;
            }
        }
    });
    let listening = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the server process started listening");
    Server { child, listening }
}

/// One call: its id, when it was issued, and how and when it ended.
struct Record {
    id: u64,
    done: Instant,
    result: Result<(), RpcError>,
}

/// Calls `exec` every 10 ms until `stop` says so; each call runs in its own
/// task so a slow one never delays the next.
async fn call_every_10ms(
    client: Mesh,
    peer: net::NodeId,
    records: Arc<Mutex<Vec<Record>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) {
    let mut tasks = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut id = 0u64;
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        tick.tick().await;
        id += 1;
        let (c, recs) = (client.clone(), records.clone());
        tasks.push(tokio::spawn(async move {
            let opts = CallOptions {
                deadline: Some(CALL_DEADLINE),
            };
            let r = c
                .call_with(peer, "exec", id.to_be_bytes().to_vec(), opts)
                .await;
            let result = match r {
                Ok(body) if body[..] == id.to_be_bytes() => Ok(()),
                Ok(_) => panic!("call {id}: wrong echo"),
                Err(e) => Err(e),
            };
            recs.lock().unwrap().push(Record {
                id,
                done: Instant::now(),
                result,
            });
        }));
    }
    for t in tasks {
        t.await.expect("call task");
    }
}

/// The client: one core, the server at `port` as its peer.
fn client_of(port: u16, detector: Option<net::DetectorConfig>) -> Mesh {
    let server = Identity::from_seed(&SERVER_SEED).public();
    let mut b = Mesh::builder()
        .identity(Identity::from_seed(&CLIENT_SEED))
        .psk(PSK)
        .peer(SocketAddr::from(([127, 0, 0, 1], port)), server)
        .cores(1)
        .pin(false);
    if let Some(d) = detector {
        b = b.failure_detector(d);
    }
    let client = b.build().expect("client");
    client.start().expect("client start");
    client
}

fn free_udp_port() -> u16 {
    let s = UdpSocket::bind("127.0.0.1:0").expect("probe bind");
    s.local_addr().expect("addr").port()
}

#[test]
fn a_killed_server_is_reached_again_within_200ms_of_its_restart() {
    let port = free_udp_port();
    let log = std::env::temp_dir().join(format!("net-restart-{}-{port}.log", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let mut server = spawn_server(port, &log);
    let server_id = Identity::from_seed(&SERVER_SEED);
    let client = client_of(port, None);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let records = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let caller = rt.spawn(call_every_10ms(
        client.clone(),
        server_id.node_id(),
        records.clone(),
        stop.clone(),
    ));
    let ok_after = |t: Instant| -> Option<Instant> {
        records
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.result.is_ok() && r.done > t)
            .map(|r| r.done)
            .min()
    };
    let wait_ok_after = |t: Instant, what: &str| -> Instant {
        eventually(what, || ok_after(t).is_some());
        ok_after(t).expect("just seen")
    };
    // Warm up: calls flow to the first process.
    let first = wait_ok_after(server.listening, "a successful call to the first process");
    let until = first + Duration::from_millis(300);
    wait_ok_after(until, "successful calls after the warm-up");

    server.child.kill().expect("SIGKILL");
    server.child.wait().expect("reap");
    let killed = Instant::now();
    let mut server = spawn_server(port, &log);
    let recovered = wait_ok_after(
        server.listening,
        "a successful call to the restarted process",
    );
    wait_ok_after(
        recovered + Duration::from_millis(300),
        "successful calls after recovery",
    );
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    rt.block_on(caller).expect("caller");
    server.child.kill().expect("SIGKILL");
    server.child.wait().expect("reap");

    let records = records.lock().unwrap();
    let mut reset = 0;
    for r in records.iter() {
        match &r.result {
            Ok(()) => {}
            Err(RpcError::Failed { status, cause })
                if *status == Status::UNAVAILABLE && *cause == net::Cause::PeerReset =>
            {
                reset += 1
            }
            Err(e) => panic!("call {} failed otherwise: {e}", r.id),
        }
    }
    let log_bytes = std::fs::read(&log).expect("read log");
    let _ = std::fs::remove_file(&log);
    let mut executed: Vec<u64> = log_bytes
        .chunks_exact(8)
        .map(|c| u64::from_be_bytes(c.try_into().unwrap()))
        .collect();
    executed.sort_unstable();
    let runs = executed.len();
    executed.dedup();
    assert_eq!(runs, executed.len(), "a call was executed twice");
    for r in records.iter().filter(|r| r.result.is_ok()) {
        assert!(
            executed.binary_search(&r.id).is_ok(),
            "call {} OK, never run",
            r.id
        );
    }
    let gap = recovered - server.listening;
    let stats: u64 = client.stats().iter().map(|s| s.reconnects).sum();
    println!(
        "restart: down {:.1} ms (kill to listening), first OK {:.1} ms after listening; \
         calls {} ok {} failed-by-reset {reset}; executed {runs}; reconnects {stats}",
        (server.listening - killed).as_secs_f64() * 1e3,
        gap.as_secs_f64() * 1e3,
        records.len(),
        records.iter().filter(|r| r.result.is_ok()).count(),
    );
    assert!(
        gap <= RECOVERY_BOUND,
        "first successful call {gap:?} after the restarted server listened"
    );
    client
        .shutdown(Duration::from_secs(1))
        .expect("client shutdown");
}

/// The next peer event (bounded wait), as (state, time since `since`).
async fn next_event(
    events: &mut net::PeerEvents,
    peer: net::NodeId,
    since: Instant,
) -> (net::PeerState, Duration) {
    use tokio_stream::StreamExt;
    let e = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("a peer event in time")
        .expect("stream open")
        .expect("no missed events");
    assert_eq!(e.peer, peer);
    (e.state, since.elapsed())
}

/// A killed server that stays down: the client's detector reports it
/// Suspect then Down within the configured bounds (events on the stream),
/// calls then fail at once with `PeerDown`, and once the server is back the
/// peer is Up again and calls succeed.
#[test]
fn a_dead_server_goes_down_calls_fail_fast_and_it_comes_back_up() {
    let port = free_udp_port();
    let log = std::env::temp_dir().join(format!("net-down-{}-{port}.log", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let mut server = spawn_server(port, &log);
    let server_id = Identity::from_seed(&SERVER_SEED);
    let peer = server_id.node_id();
    let detector = net::DetectorConfig {
        heartbeat: Duration::from_millis(50),
        suspect_after: Duration::from_millis(150),
        down_after: Duration::from_millis(300),
        ..Default::default()
    };
    let client = client_of(port, Some(detector));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut events = client.peer_events();
        let call = |c: &Mesh| {
            let opts = CallOptions {
                deadline: Some(Duration::from_secs(5)),
            };
            let c = c.clone();
            async move { c.call_with(peer, "exec", 1u64.to_be_bytes().to_vec(), opts).await }
        };
        call(&client).await.expect("first call");
        assert_eq!(client.peer_state(&peer), Some(net::PeerState::Up));
        // The first session made the peer known, Up.
        let (s0, _) = next_event(&mut events, peer, Instant::now()).await;
        assert_eq!(s0, net::PeerState::Up);

        server.child.kill().expect("SIGKILL");
        server.child.wait().expect("reap");
        let killed = Instant::now();
        let (s1, t1) = next_event(&mut events, peer, killed).await;
        let (s2, t2) = next_event(&mut events, peer, killed).await;
        assert_eq!((s1, s2), (net::PeerState::Suspect, net::PeerState::Down));
        // Suspect by last-heard + 150 ms + 25 ms (check cadence), Down by
        // + 300 ms + 25 ms; the last heartbeat came at most ~50 ms before
        // the kill. Generous slack for a loaded machine.
        assert!(t1 >= Duration::from_millis(100) && t1 < Duration::from_millis(1500), "{t1:?}");
        assert!(t2 >= Duration::from_millis(250) && t2 < Duration::from_millis(2000), "{t2:?}");
        assert_eq!(client.peer_state(&peer), Some(net::PeerState::Down));

        let t = Instant::now();
        let err = call(&client).await.expect_err("peer down");
        let fast = t.elapsed();
        assert_eq!(err.cause(), Some(net::Cause::PeerDown), "{err}");
        assert_eq!(err.status(), Some(Status::UNAVAILABLE));

        let mut server = spawn_server(port, &log);
        let (s3, _) = next_event(&mut events, peer, killed).await;
        assert_eq!(s3, net::PeerState::Up);
        let back = server.listening.elapsed();
        call(&client).await.expect("a call after the peer came back");
        println!(
            "down: Suspect {:.0} ms, Down {:.0} ms after the kill; a call to the down peer failed in {:.3} ms; Up {:.0} ms after the restart",
            t1.as_secs_f64() * 1e3,
            t2.as_secs_f64() * 1e3,
            fast.as_secs_f64() * 1e3,
            back.as_secs_f64() * 1e3,
        );
        // Locally refused: no round trip, no timer (bounded loosely for a loaded machine).
        assert!(fast < Duration::from_millis(250), "a call to a Down peer took {fast:?}");
        server.child.kill().expect("SIGKILL");
        server.child.wait().expect("reap");
    });
    let _ = std::fs::remove_file(&log);
    client
        .shutdown(Duration::from_secs(1))
        .expect("client shutdown");
}
