//! `udp_relay`: a seeded UDP impairment relay — delay, jitter, loss,
//! duplication and reordering between one client and one upstream, for the
//! paths this kernel cannot emulate (it has no `sch_netem`).
//!
//! ```sh
//! udp_relay --listen 10.77.0.1:9000 --upstream 10.77.0.1:9001 --seed 1 \
//!     --delay-ms 50 --jitter-ms 2 --loss 0.01
//! ```
//!
//! One socket, bound to `--listen`: the first source address that is not
//! `--upstream` becomes the client (fixed for the run); what the client sends
//! goes to the upstream, what the upstream sends goes to the client, both
//! through the same schedule (`net_bench::relay`: rules, bounds and memory).
//! Datagrams from any other address are dropped and counted. The upstream
//! sees the relay's `--listen` address as its peer.
//!
//! One thread, no sleep per datagram: it waits in the driver until the
//! next datagram arrives or the earliest held one is due. Queue bound:
//! `--queue` datagrams (default 4096) and `--queue-bytes` (default 16 MiB)
//! held at once, copies included; more is dropped and counted `overflow`.
//! At 100k datagrams/s one way, 4096 holds 40 ms of delay: raise it for
//! longer delays.
//!
//! Stopping: SIGINT (Ctrl-C) or SIGTERM; `--duration-ms N` stops by itself;
//! with `--stdin-eof` it also stops when its standard input closes (a
//! parent holding a pipe). It prints `READY <addr>` once listening and its
//! counters when it stops (`udp_relay: ...` on stdout).
#![forbid(unsafe_code)]

use std::io::Write;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use net_bench::relay::{Bounds, Counters, Dir, Impairment, Scheduler};
use net_io::{Driver, DriverChoice, DriverConfig, Waker};

/// Seeded UDP impairment relay (delay, jitter, loss, duplication, reordering).
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Address to listen on (the client sends here).
    #[arg(long)]
    listen: SocketAddr,
    /// Where the client's datagrams go.
    #[arg(long)]
    upstream: SocketAddr,
    /// RNG seed: the same seed and the same arrivals give the same decisions.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// One-way delay, ms (each direction).
    #[arg(long, default_value_t = 0.0)]
    delay_ms: f64,
    /// Extra delay uniform in [0, J] ms; order is kept (a datagram waits
    /// behind its predecessor).
    #[arg(long, default_value_t = 0.0)]
    jitter_ms: f64,
    /// Probability a datagram is dropped (each direction).
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Probability a datagram is sent twice.
    #[arg(long, default_value_t = 0.0)]
    duplicate: f64,
    /// Probability a datagram is held `--reorder-ms` longer than the rest,
    /// so later datagrams overtake it.
    #[arg(long, default_value_t = 0.0)]
    reorder: f64,
    /// How much longer a reordered datagram is held, ms.
    #[arg(long, default_value_t = 1.0)]
    reorder_ms: f64,
    /// At most this many datagrams held at once (excess dropped, counted).
    #[arg(long, default_value_t = 4096)]
    queue: usize,
    /// At most this many bytes held at once (excess dropped, counted).
    #[arg(long, default_value_t = 16 << 20)]
    queue_bytes: usize,
    /// UDP driver: mmsg (default), uring or portable.
    #[arg(long, default_value = "mmsg")]
    driver: String,
    /// Stop after this long (0: run until SIGINT/SIGTERM).
    #[arg(long, default_value_t = 0)]
    duration_ms: u64,
    /// Also stop when standard input closes.
    #[arg(long)]
    stdin_eof: bool,
}

/// What the relay's edge counted (the schedule counts the rest).
#[derive(Debug, Default)]
struct Edge {
    /// From neither the client nor the upstream: dropped.
    strangers: u64,
    /// From the upstream before any client was seen: dropped.
    no_client: u64,
    /// Due but no transmit slot even after a flush: dropped.
    send_dropped: u64,
}

fn fail(msg: &str) -> ! {
    eprintln!("udp_relay: {msg}");
    std::process::exit(2)
}

fn millis(name: &str, ms: f64) -> Duration {
    Duration::try_from_secs_f64(ms / 1000.0)
        .unwrap_or_else(|_| fail(&format!("--{name} {ms}: not a duration")))
}

fn probability(name: &str, p: f64) -> f64 {
    if (0.0..=1.0).contains(&p) {
        p
    } else {
        fail(&format!("--{name} {p}: not a probability in [0, 1]"))
    }
}

fn impairment(a: &Args) -> Impairment {
    Impairment {
        delay: millis("delay-ms", a.delay_ms),
        jitter: millis("jitter-ms", a.jitter_ms),
        loss: probability("loss", a.loss),
        duplicate: probability("duplicate", a.duplicate),
        reorder: probability("reorder", a.reorder),
        reorder_extra: millis("reorder-ms", a.reorder_ms),
    }
}

/// Sets `stop` and wakes the relay on SIGINT or SIGTERM (own thread).
fn stop_on_signals(stop: Arc<AtomicBool>, waker: Waker) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(&format!("signal runtime: {e}")));
    std::thread::spawn(move || {
        rt.block_on(async {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut int), Ok(mut term)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) else {
                eprintln!("udp_relay: cannot catch SIGINT/SIGTERM; they end it without counters");
                return;
            };
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        });
        stop.store(true, Ordering::Relaxed);
        waker.wake();
    });
}

/// Sets `stop` and wakes the relay when stdin closes (own thread).
fn stop_on_stdin_eof(stop: Arc<AtomicBool>, waker: Waker) {
    std::thread::spawn(move || {
        // Read errors end the wait like EOF: either way the parent is gone.
        let mut sink = std::io::sink();
        let copied = std::io::copy(&mut std::io::stdin().lock(), &mut sink);
        if let Err(e) = copied {
            eprintln!("udp_relay: stdin: {e}; stopping");
        }
        stop.store(true, Ordering::Relaxed);
        waker.wake();
    });
}

/// The relay's socket side: who is who, and the edge counters.
struct Relay {
    drv: Box<dyn Driver>,
    upstream: SocketAddr,
    client: Option<SocketAddr>,
    edge: Edge,
}

impl Relay {
    /// Feeds the `n` datagrams of the last `recv` to the schedule.
    fn take(&mut self, n: usize, now: Duration, sched: &mut Scheduler) {
        for i in 0..n {
            let (src, buf) = self.drv.rx(i);
            let dir = if src == self.upstream {
                if self.client.is_none() {
                    self.edge.no_client += 1;
                    continue;
                }
                Dir::ToClient
            } else if *self.client.get_or_insert(src) == src {
                Dir::ToUpstream
            } else {
                self.edge.strangers += 1;
                continue;
            };
            sched.handle_datagram(now, dir, buf);
        }
    }

    /// Sends everything due at `now`.
    fn release(&mut self, now: Duration, sched: &mut Scheduler) -> std::io::Result<()> {
        let (upstream, client) = (self.upstream, self.client);
        let (drv, edge) = (&mut self.drv, &mut self.edge);
        let mut flush_err = Ok(());
        sched.release_due(now, |dir, bytes| {
            let dst = match dir {
                Dir::ToUpstream => upstream,
                // cannot fail: only datagrams from the upstream go this way,
                // and they are taken only once a client is known.
                Dir::ToClient => client.expect("client known"),
            };
            if drv.tx_slot().is_none() {
                if let Err(e) = drv.flush() {
                    flush_err = Err(e);
                }
            }
            match drv.tx_slot() {
                Some(slot) if slot.len() >= bytes.len() => {
                    slot[..bytes.len()].copy_from_slice(bytes);
                    drv.tx_commit(dst, bytes.len());
                }
                _ => edge.send_dropped += 1,
            }
        });
        flush_err?;
        self.drv.flush()
    }
}

fn print_counters(c: &Counters, edge: &Edge, held: usize, drv: &dyn Driver) {
    let io = drv.stats();
    println!(
        "udp_relay: received client->upstream {} upstream->client {}; released client->upstream {} upstream->client {}; lost {}; duplicated {}; reordered {}; overflow {}; strangers {}; upstream before any client {}; send dropped {}; driver tx errors {}; still held at exit {}",
        c.received_to_upstream,
        c.received_to_client,
        c.released_to_upstream,
        c.released_to_client,
        c.lost,
        c.duplicated,
        c.reordered,
        c.overflow,
        edge.strangers,
        edge.no_client,
        edge.send_dropped,
        io.tx_errors,
        held
    );
}

fn main() {
    let args = Args::parse();
    let imp = impairment(&args);
    let bounds = Bounds {
        max_datagrams: args.queue.max(1),
        max_bytes: args.queue_bytes,
    };
    let choice =
        DriverChoice::from_str(&args.driver).unwrap_or_else(|e| fail(&format!("--driver: {e}")));
    let cfg = DriverConfig {
        max_datagram: 65_535,
        ..DriverConfig::default()
    };
    let drv = net_io::open(args.listen, choice, &cfg)
        .unwrap_or_else(|e| fail(&format!("binding {}: {e}", args.listen)));
    let stop = Arc::new(AtomicBool::new(false));
    stop_on_signals(stop.clone(), drv.waker());
    if args.stdin_eof {
        stop_on_stdin_eof(stop.clone(), drv.waker());
    }
    println!("READY {}", drv.local_addr());
    std::io::stdout().flush().ok();
    let mut relay = Relay {
        drv,
        upstream: args.upstream,
        client: None,
        edge: Edge::default(),
    };
    let mut sched = Scheduler::new(imp, bounds, args.seed);
    let t0 = Instant::now();
    let end = (args.duration_ms > 0).then(|| Duration::from_millis(args.duration_ms));
    let result = run(&mut relay, &mut sched, t0, end, &stop);
    print_counters(
        &sched.counters(),
        &relay.edge,
        sched.held(),
        relay.drv.as_ref(),
    );
    if let Err(e) = result {
        fail(&format!("socket: {e}"));
    }
}

/// The loop: wait for a datagram or the next due time, take, release.
fn run(
    relay: &mut Relay,
    sched: &mut Scheduler,
    t0: Instant,
    end: Option<Duration>,
    stop: &AtomicBool,
) -> std::io::Result<()> {
    loop {
        let now = t0.elapsed();
        if stop.load(Ordering::Relaxed) || end.is_some_and(|e| now >= e) {
            return Ok(());
        }
        let wake = match (sched.poll_timeout(), end) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let n = relay.drv.recv(wake.map(|w| w.saturating_sub(now)))?;
        let now = t0.elapsed();
        relay.take(n, now, sched);
        relay.release(now, sched)?;
    }
}
