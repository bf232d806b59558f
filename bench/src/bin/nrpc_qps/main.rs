//! `nrpc_qps`: unary nRPC throughput and latency on loopback, against a raw
//! UDP baseline measured in the same run with the same pinning and payloads.
//!
//! `cargo run --release -p net-bench --bin nrpc_qps` sweeps concurrency
//! {1, 16, 128} × payload {32, 1024} B. Server and client run in separate
//! processes (`--processes 2`, default), pinned to different CPUs.
//!
//! `--slices N` measures each point as N alternating pairs of short raw and
//! nRPC stretches on sockets and sessions kept open, and reports the spread
//! of the per-pair ratios (the CI gate's figure: `scripts/bench-gate.sh`).
//!
//! Off loopback (docs/BENCHMARKS.md, "Two hosts: network namespaces"):
//! `--bind` (client side) and `--server-bind` (servers), `--server-netns`
//! (server children under `ip netns exec`), or `--server-addr` and
//! `--raw-server-addr` for servers started by hand with `--role` (behind
//! `udp_relay`, say). The raw baseline always takes the same path as nRPC.
//! A point one system cannot carry (a unary body larger than one packet on
//! the path answers `PayloadTooLarge`) is skipped with its reason.
#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use net_bench::load::{CpuWindow, LoadProbe};
use net_bench::slices::{cpu_spent, cpu_time, merge, SliceFigures, SlicePair, SliceSeries};
use net_bench::{nrpc, pin, pingpong, raw, Host, Point, PointResult, Record, Report};
use net_engine::DriverChoice;

mod client;
mod report;

use client::NrpcClient;

use report::{floor_table, print_slices, progress, sdk_vs_engine, table, Outcome};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Calls issued from the client node's core directly (no hand-off).
    Engine,
    /// Calls through the public async API on tokio.
    Sdk,
}

impl Mode {
    /// What the mode measures, in a line.
    fn describe(self) -> &'static str {
        match self {
            Mode::Engine => "calls issued on the client node's own core (no hand-off)",
            Mode::Sdk => "calls through the public async API (net::Mesh::call) from tokio tasks",
        }
    }

    /// The mode's name, as on the command line and in JSON records.
    fn name(self) -> &'static str {
        match self {
            Mode::Engine => "engine",
            Mode::Sdk => "sdk",
        }
    }
}

/// A server alone (what `nrpc_qps` spawns as its children; also usable by
/// hand with `--server-bind`, `--server-port` and `--serve-ms`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Role {
    /// The raw-UDP echo server of the baseline.
    #[value(name = "raw-server")]
    Raw,
    /// The nRPC echo server node.
    #[value(name = "nrpc-server")]
    Nrpc,
    /// The busy-poll ping-pong echo of the c1 floor (`net_bench::pingpong`).
    #[value(name = "ping-server")]
    Ping,
}

/// Unary nRPC QPS and latency vs a same-run raw-UDP baseline.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Concurrency levels (calls in flight), comma separated.
    #[arg(long, value_delimiter = ',', default_values_t = vec![1usize, 16, 128])]
    conc: Vec<usize>,
    /// Payload sizes in bytes, comma separated.
    #[arg(long, value_delimiter = ',', default_values_t = vec![32usize, 1024])]
    payload: Vec<usize>,
    /// Measured time per point.
    #[arg(long, default_value_t = 2000)]
    duration_ms: u64,
    /// Unmeasured warm-up per point.
    #[arg(long, default_value_t = 500)]
    warmup_ms: u64,
    /// UDP GRO on receive (on, off) for every driver of the run, raw
    /// baseline and nodes alike. With it a raw echo receives and answers up
    /// to 64 datagrams per kernel crossing; off gives the baseline of the
    /// figures published before 2026-12-03 (and of the CI gate).
    #[arg(long, default_value = "on", value_parser = ["on", "off"])]
    gro: String,

    /// Whether the nodes' spinning loops yield their CPU after each idle
    /// pass (on, off; `MeshNodeConfig::with_spin_yield`, default on).
    #[arg(long, default_value = "on", value_parser = ["on", "off"])]
    spin_yield: String,

    /// UDP driver: auto, uring, mmsg or portable.
    #[arg(long, default_value = "auto")]
    driver: String,
    /// Spin before parking, µs (0 = park at once; the baseline then blocks too).
    #[arg(long, default_value_t = 50)]
    spin_us: u64,
    /// Where calls are issued from, comma separated: each mode is measured
    /// against the same raw baseline and printed as its own table (the
    /// default runs both: the engine's own figure and what a user of the
    /// public API gets). `--slices` takes one mode.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = vec![Mode::Engine, Mode::Sdk])]
    mode: Vec<Mode>,
    /// 2: server in a child process; 1: server on a thread of this process.
    #[arg(long, default_value_t = 2)]
    processes: u8,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// Open loop: offered calls per second (latency from intended send time).
    #[arg(long)]
    rate: Option<f64>,
    /// CPU for the server.
    #[arg(long, default_value_t = 0)]
    server_cpu: usize,
    /// CPU for the client.
    #[arg(long, default_value_t = 1)]
    client_cpu: usize,
    /// Measured time of the handshake point (0 skips it).
    #[arg(long, default_value_t = 2000)]
    handshake_ms: u64,
    /// Concurrent handshakes the client keeps going in the handshake point.
    #[arg(long, default_value_t = 8)]
    handshake_slots: usize,
    /// Skip the raw-UDP baseline.
    #[arg(long)]
    no_baseline: bool,
    /// Measure each point as this many alternating (raw, nRPC) slice pairs
    /// on sockets and a session kept open, instead of one stretch of
    /// `--duration-ms` per system (0). `--warmup-ms` then warms each system
    /// once per point.
    #[arg(long, default_value_t = 0)]
    slices: usize,
    /// Measured length of one slice.
    #[arg(long, default_value_t = 250)]
    slice_ms: u64,
    /// Unmeasured start of each slice (refills the pipeline after a switch).
    #[arg(long, default_value_t = 25)]
    slice_warmup_ms: u64,
    /// The client side binds here (any port).
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    bind: IpAddr,
    /// Servers bind here (default: `--bind`).
    #[arg(long)]
    server_bind: Option<IpAddr>,
    /// Spawn the server children under `ip netns exec NAME` (needs
    /// `--processes 2`; the servers then bind `--server-bind` inside it).
    #[arg(long, value_name = "NAME")]
    server_netns: Option<String>,
    /// Use this already-running nRPC server (`--role nrpc-server`) instead
    /// of spawning one; needs `--raw-server-addr` or `--no-baseline`.
    #[arg(long, value_name = "ADDR")]
    server_addr: Option<SocketAddr>,
    /// Use this already-running raw echo server (`--role raw-server`) for
    /// the baseline; needs `--server-addr`.
    #[arg(long, value_name = "ADDR", requires = "server_addr")]
    raw_server_addr: Option<SocketAddr>,
    /// Run only a server: `nrpc-server` or `raw-server`, bound to
    /// `--server-bind`:`--server-port`, pinned to `--server-cpu`. Prints
    /// `READY <addr>`, then serves until its stdin closes or `--serve-ms`
    /// passes.
    #[arg(long, value_enum)]
    role: Option<Role>,
    /// With `--role`: the port to bind (0: any; the READY line names it).
    #[arg(long, default_value_t = 0)]
    server_port: u16,
    /// With `--role`: stop after this long (0: when stdin closes; a
    /// server started in the background with stdin on /dev/null needs this).
    #[arg(long, default_value_t = 0)]
    serve_ms: u64,
}

impl Args {
    /// Where servers bind.
    fn server_ip(&self) -> IpAddr {
        self.server_bind.unwrap_or(self.bind)
    }

    /// The already-running server for `role`, if one was named.
    fn external(&self, role: Role) -> Option<SocketAddr> {
        match role {
            Role::Raw => self.raw_server_addr,
            Role::Nrpc => self.server_addr,
            Role::Ping => None,
        }
    }

    /// Refuses combinations that cannot work (exits).
    fn validate(&self) {
        if self.server_netns.is_some() && self.processes < 2 {
            fail("--server-netns runs the servers as child processes: needs --processes 2");
        }
        if self.server_addr.is_some() && self.server_netns.is_some() {
            fail("--server-netns spawns servers; --server-addr uses running ones: pick one");
        }
        if self.server_addr.is_some() && self.raw_server_addr.is_none() && !self.no_baseline {
            fail("--server-addr needs --raw-server-addr (the baseline on the same path) or --no-baseline");
        }
    }

    /// One line on where the traffic goes, if not the default loopback.
    fn path(&self) -> Option<String> {
        let local = self.bind.is_loopback() && self.server_ip().is_loopback();
        if local && self.server_netns.is_none() && self.server_addr.is_none() {
            return None;
        }
        let servers = match (self.server_addr, &self.server_netns) {
            (Some(n), _) => match self.raw_server_addr {
                Some(r) => format!("running servers nRPC {n}, raw {r}"),
                None => format!("running nRPC server {n}"),
            },
            (None, Some(ns)) => format!("servers on {} in netns {ns}", self.server_ip()),
            (None, None) => format!("servers on {}", self.server_ip()),
        };
        Some(format!("path: client on {}, {servers}", self.bind))
    }
}

fn driver(args: &Args) -> DriverChoice {
    DriverChoice::from_str(&args.driver).unwrap_or_else(|e| fail(&format!("--driver: {e}")))
}

/// Bench-only regression injection (see `nrpc::INJECT_SPIN_ENV`).
fn injected_work() -> Duration {
    nrpc::injected_work().unwrap_or_else(|e| fail(&e))
}

/// The nRPC server node bound to `listen`, pinned to `--server-cpu`.
fn nrpc_server(args: &Args, listen: SocketAddr, spin: Duration) -> net_engine::MeshNode {
    nrpc::server(
        listen,
        driver(args),
        spin,
        Some(args.server_cpu),
        injected_work(),
    )
    .unwrap_or_else(|e| fail(&format!("binding {listen}: {e}")))
}

fn fail(msg: &str) -> ! {
    eprintln!("nrpc_qps: {msg}");
    std::process::exit(2)
}

/// A running server: a child process, a thread with its stop flag, or one
/// started by someone else (`--server-addr`, `--raw-server-addr`).
enum Server {
    External,
    Child(Child),
    Thread(
        Arc<AtomicBool>,
        Option<std::thread::JoinHandle<()>>,
        Option<Box<net_engine::MeshNode>>,
    ),
}

impl Server {
    /// The child process's id (a thread server has none: its CPU time is
    /// this process's; an external one is not counted).
    fn pid(&self) -> Option<u32> {
        match self {
            Server::Child(c) => Some(c.id()),
            Server::Thread(..) | Server::External => None,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        match self {
            Server::External => {}
            Server::Child(c) => {
                drop(c.stdin.take());
                let _ = c.wait();
            }
            Server::Thread(stop, t, node) => {
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
                if let Some(t) = t.take() {
                    let _ = t.join();
                }
                if let Some(n) = node.take() {
                    let _ = n.shutdown(Duration::from_millis(200));
                }
            }
        }
    }
}

/// Child process (or a server by hand): run `role` pinned to the server
/// CPU on `--server-bind`:`--server-port` until stdin closes or
/// `--serve-ms` passes.
fn serve_role(args: &Args, role: Role) {
    pin(Some(args.server_cpu));
    let spin = Duration::from_micros(args.spin_us);
    let stop = Arc::new(AtomicBool::new(false));
    let listen = SocketAddr::new(args.server_ip(), args.server_port);
    let _keep = match role {
        Role::Raw => {
            let drv = raw::open(listen, driver(args))
                .unwrap_or_else(|e| fail(&format!("binding {listen}: {e}")));
            println!("READY {}", drv.local_addr());
            let s = stop.clone();
            Some(std::thread::spawn(move || {
                let _ = raw::serve(drv, spin, &s);
            }))
        }
        Role::Ping => {
            let (addr, t) = ping_server(listen, args.server_cpu, stop.clone());
            println!("READY {addr}");
            Some(t)
        }
        Role::Nrpc => {
            let node = nrpc_server(args, listen, spin);
            println!("READY {}", node.local_addr().expect("started"));
            wait_until_told(args.serve_ms);
            let _ = node.shutdown(Duration::from_millis(200));
            return;
        }
    };
    wait_until_told(args.serve_ms);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Flushes the READY line, then waits `serve_ms` if set, else until stdin
/// closes.
fn wait_until_told(serve_ms: u64) {
    if serve_ms > 0 {
        std::io::stdout().flush().ok();
        std::thread::sleep(Duration::from_millis(serve_ms));
    } else {
        wait_for_stdin_eof();
    }
}

/// Flushes the READY line, then blocks until the parent closes our stdin
/// (its way of saying stop; also what happens if the parent dies).
fn wait_for_stdin_eof() {
    std::io::stdout().flush().ok();
    let mut line = String::new();
    while std::io::stdin()
        .read_line(&mut line)
        .map(|n| n > 0)
        .unwrap_or(false)
    {}
}

/// The server for `role`: the running one named on the command line, a
/// child process (`--processes 2`, under `ip netns exec` with
/// `--server-netns`), or a thread of this process.
fn start_server(args: &Args, role: Role) -> (Server, SocketAddr) {
    if let Some(addr) = args.external(role) {
        return (Server::External, addr);
    }
    if args.processes >= 2 {
        return spawn_server(args, role);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let spin = Duration::from_micros(args.spin_us);
    let listen = SocketAddr::new(args.server_ip(), 0);
    match role {
        Role::Raw => {
            let drv = raw::open(listen, driver(args))
                .unwrap_or_else(|e| fail(&format!("binding {listen}: {e}")));
            let addr = drv.local_addr();
            let (s, cpu) = (stop.clone(), args.server_cpu);
            let t = std::thread::spawn(move || {
                pin(Some(cpu));
                let _ = raw::serve(drv, spin, &s);
            });
            (Server::Thread(stop, Some(t), None), addr)
        }
        Role::Nrpc => {
            let node = nrpc_server(args, listen, spin);
            let addr = node.local_addr().expect("started");
            (Server::Thread(stop, None, Some(Box::new(node))), addr)
        }
        Role::Ping => {
            let (addr, t) = ping_server(listen, args.server_cpu, stop.clone());
            (Server::Thread(stop, Some(t), None), addr)
        }
    }
}

/// Binds the ping-pong echo at `listen` and runs it on a thread pinned to
/// `cpu` until `stop`; returns its address.
fn ping_server(
    listen: SocketAddr,
    cpu: usize,
    stop: Arc<AtomicBool>,
) -> (SocketAddr, std::thread::JoinHandle<()>) {
    let sock = pingpong::bind(listen).unwrap_or_else(|e| fail(&format!("binding {listen}: {e}")));
    let addr = sock.local_addr().unwrap_or_else(|e| fail(&e.to_string()));
    let t = std::thread::spawn(move || {
        pin(Some(cpu));
        if let Err(e) = pingpong::serve(&sock, &stop) {
            fail(&format!("ping-pong echo: {e}"));
        }
    });
    (addr, t)
}

/// A server child process; returns once it said READY.
fn spawn_server(args: &Args, role: Role) -> (Server, SocketAddr) {
    let exe = std::env::current_exe().unwrap_or_else(|e| fail(&e.to_string()));
    let role_arg = match role {
        Role::Raw => "raw-server",
        Role::Nrpc => "nrpc-server",
        Role::Ping => "ping-server",
    };
    let mut cmd = match &args.server_netns {
        Some(ns) => {
            // `ip netns exec` execs the program: the child's pid is the
            // server's (its CPU time is read by pid).
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(&exe);
            c
        }
        None => Command::new(&exe),
    };
    let mut child = cmd
        .args([
            "--role",
            role_arg,
            "--driver",
            &args.driver,
            "--gro",
            &args.gro,
            "--spin-yield",
            &args.spin_yield,
            "--spin-us",
            &args.spin_us.to_string(),
        ])
        .args(["--server-cpu", &args.server_cpu.to_string()])
        .args(["--server-bind", &args.server_ip().to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            let what = if args.server_netns.is_some() {
                "`ip` (iproute2) for --server-netns"
            } else {
                "the server"
            };
            fail(&format!("spawning {what}: {e}"))
        });
    let mut out = BufReader::new(child.stdout.take().expect("piped"));
    let mut line = String::new();
    out.read_line(&mut line)
        .unwrap_or_else(|e| fail(&e.to_string()));
    let addr = line
        .trim()
        .strip_prefix("READY ")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| {
            if line.is_empty() {
                let hint = match (&args.server_netns, args.server_bind) {
                    (Some(ns), None) => format!(
                        "; it binds --server-bind, which defaults to --bind {}: give an address of netns {ns}",
                        args.bind
                    ),
                    _ => String::new(),
                };
                fail(&format!(
                    "the {role_arg} exited before it was ready (its error is above){hint}"
                ))
            }
            fail(&format!("server said {line:?}"))
        });
    (Server::Child(child), addr)
}

fn points(args: &Args) -> Vec<Point> {
    let mut v = Vec::new();
    for &payload in &args.payload {
        for &conc in &args.conc {
            v.push(Point {
                conc: conc.max(1),
                payload: payload.max(16),
                duration: Duration::from_millis(args.duration_ms),
                warmup: Duration::from_millis(args.warmup_ms),
                spin: Duration::from_micros(args.spin_us),
                rate: args.rate,
            });
        }
    }
    v
}

fn check(point: &Point, system: &str, r: &PointResult) {
    if let Some(why) = refused(r) {
        fail(&format!("{system} {}: {why}", point.name()));
    }
    if r.stalled || r.ok == 0 {
        fail(&format!(
            "{system} {}: no progress for {:?}; transport saturated or broken, not measurable here",
            point.name(),
            net_bench::STALL
        ));
    }
}

/// Why a point completed nothing, if the kernel refused its sends.
fn refused(r: &PointResult) -> Option<String> {
    (r.ok == 0 && r.refused_sends > 0).then(|| {
        format!(
            "the kernel refused every send ({} datagrams; a UDP GSO batch of datagrams larger than the path MTU gets EMSGSIZE: try --driver portable)",
            r.refused_sends
        )
    })
}

/// Why the baseline cannot carry `p`, if it cannot.
fn raw_skip(p: &Point) -> Option<String> {
    let max = raw::max_payload();
    (p.payload > max).then(|| format!("the raw baseline sends one datagram of at most {max} B"))
}

/// The baseline, point by point, on one client socket (a relay in the path
/// serves one client address: see `udp_relay`).
fn run_raw(args: &Args, pts: &[Point]) -> Vec<Outcome> {
    let (server, addr) = start_server(args, Role::Raw);
    let pids: Vec<u32> = server.pid().into_iter().collect();
    pin(Some(args.client_cpu));
    let mut client =
        raw::Client::open(args.bind, driver(args)).unwrap_or_else(|e| fail(&e.to_string()));
    let never = AtomicBool::new(false);
    let mut one = |p: &Point| {
        if let Some(why) = raw_skip(p) {
            return Err(why);
        }
        let r = client
            .run(p, addr, &never)
            .unwrap_or_else(|e| fail(&format!("raw {}: {e}", p.name())));
        if let Some(why) = refused(&r) {
            return Err(why);
        }
        check(p, "raw", &r);
        Ok(r)
    };
    let mut out = Vec::with_capacity(pts.len());
    for (i, p) in pts.iter().enumerate() {
        let probe = LoadProbe::start(&pids);
        let cpu = CpuWindow::start(&pids, p.warmup, p.duration);
        let mut r = one(p);
        if let Ok(r) = &mut r {
            r.cpu = cpu.finish();
        }
        out.push(r);
        progress("raw", i, pts.len(), p, &out[i], probe.verdict(&pids));
    }
    out
}

/// The c1 floor: the busy-poll ping-pong at each c1 point, unless the run
/// uses servers started elsewhere (`--server-addr`) or no baseline.
fn run_floor(args: &Args, pts: &[Point]) -> Vec<(Point, Outcome)> {
    let c1: Vec<&Point> = pts
        .iter()
        .filter(|p| p.conc == 1 && p.rate.is_none())
        .collect();
    if c1.is_empty() || args.no_baseline || args.server_addr.is_some() {
        return Vec::new();
    }
    let (server, addr) = start_server(args, Role::Ping);
    let pids: Vec<u32> = server.pid().into_iter().collect();
    pin(Some(args.client_cpu));
    let mut out = Vec::new();
    for (i, p) in c1.iter().enumerate() {
        let probe = LoadProbe::start(&pids);
        let cpu = CpuWindow::start(&pids, p.warmup, p.duration);
        let mut r = pingpong::run(args.bind, addr, p)
            .unwrap_or_else(|e| fail(&format!("ping-pong {}: {e}", p.name())));
        r.cpu = cpu.finish();
        check(p, "ping-pong", &r);
        let r = Ok(r);
        progress("ping-pong", i, c1.len(), p, &r, probe.verdict(&pids));
        out.push(((*p).clone(), r));
    }
    out
}

fn run_nrpc(args: &Args, pts: &[Point], mode: Mode) -> (Vec<Outcome>, String, String) {
    let (server, addr) = start_server(args, Role::Nrpc);
    let pids: Vec<u32> = server.pid().into_iter().collect();
    let client = NrpcClient::start(args, addr, mode);
    let system = format!("nrpc {}", mode.name());
    let (drv, aead) = client.describe();
    let mut out = Vec::with_capacity(pts.len());
    for (i, p) in pts.iter().enumerate() {
        let probe = LoadProbe::start(&pids);
        out.push(match client.skip_reason(p.payload) {
            Some(why) => Err(why),
            None => {
                let cpu = CpuWindow::start(&pids, p.warmup, p.duration);
                let mut r = client.run(p);
                r.cpu = cpu.finish();
                Ok(r)
            }
        });
        progress(&system, i, pts.len(), p, &out[i], probe.verdict(&pids));
    }
    (out, drv, aead)
}

/// What a sliced run measured: per point the merged raw and nRPC results
/// (for the main table) and the slice pairs.
struct Sliced {
    raw: Vec<Outcome>,
    nrpc: Vec<Outcome>,
    series: Vec<SliceSeries>,
    driver: String,
    aead: String,
}

/// What a sliced run keeps open for its whole length.
struct SliceRig {
    raw_client: raw::Client,
    raw_addr: SocketAddr,
    nrpc_client: NrpcClient,
    /// The server child processes, whose CPU time is read with ours.
    pids: Vec<u32>,
    never: AtomicBool,
}

impl SliceRig {
    /// One raw slice; a slice the machine starved (no completion) is
    /// returned, and left out of the ratios by [`SlicePair`].
    fn raw_slice(&mut self, p: &Point) -> PointResult {
        self.raw_client
            .run(p, self.raw_addr, &self.never)
            .unwrap_or_else(|e| fail(&format!("raw {}: {e}", p.name())))
    }

    /// Why point `p` cannot be measured as pairs, if it cannot: each
    /// system's reason (the other is not measured without its partner).
    fn skip(&self, p: &Point) -> Option<(String, String)> {
        if let Some(why) = raw_skip(p) {
            return Some((why, "not measured: no raw slice to pair with".into()));
        }
        let why = self.nrpc_client.skip_reason(p.payload)?;
        Some(("not measured: no nRPC slice to pair with".into(), why))
    }

    /// Point `p`: one warm-up stretch per system, then `slices` pairs.
    fn measure(&mut self, args: &Args, p: &Point) -> (PointResult, PointResult, SliceSeries) {
        let slice = Point {
            duration: Duration::from_millis(args.slice_ms),
            warmup: Duration::from_millis(args.slice_warmup_ms),
            ..p.clone()
        };
        let warm = Point {
            warmup: p.warmup,
            ..slice.clone()
        };
        self.raw_slice(&warm);
        self.nrpc_client.run_unchecked(&warm);
        let (mut raw_total, mut nrpc_total) = (PointResult::new(), PointResult::new());
        let mut pairs = Vec::with_capacity(args.slices);
        let span = slice.warmup + slice.duration;
        for _ in 0..args.slices {
            let t0 = cpu_time(&self.pids);
            let r = self.raw_slice(&slice);
            let t1 = cpu_time(&self.pids);
            let n = self.nrpc_client.run_unchecked(&slice);
            let t2 = cpu_time(&self.pids);
            merge(&mut raw_total, &r).unwrap_or_else(|e| fail(&e));
            merge(&mut nrpc_total, &n).unwrap_or_else(|e| fail(&e));
            pairs.push(SlicePair::new(
                SliceFigures::of(&r, cpu_spent(t0, t1), span),
                SliceFigures::of(&n, cpu_spent(t1, t2), span),
            ));
        }
        // Only a point with no completion in any slice fails.
        check(p, "raw", &raw_total);
        check(p, "nrpc", &nrpc_total);
        let series = SliceSeries::new(
            p.conc,
            p.payload,
            args.slice_ms,
            args.slice_warmup_ms,
            pairs,
        );
        (raw_total, nrpc_total, series)
    }
}

/// `--slices N`: both servers up at once (each parks while the other is
/// measured), one raw socket and one nRPC session for the whole run; per
/// point one unmeasured warm-up stretch per system, then N pairs of a raw
/// slice followed at once by an nRPC slice. The CPU time of all the bench's
/// processes is read around every slice (servers started by hand are not
/// among them).
fn run_sliced(args: &Args, pts: &[Point]) -> Sliced {
    let (raw_server, raw_addr) = start_server(args, Role::Raw);
    let (nrpc_server, nrpc_addr) = start_server(args, Role::Nrpc);
    pin(Some(args.client_cpu));
    let mut rig = SliceRig {
        raw_client: raw::Client::open(args.bind, driver(args))
            .unwrap_or_else(|e| fail(&e.to_string())),
        raw_addr,
        nrpc_client: NrpcClient::start(args, nrpc_addr, args.mode[0]),
        pids: [raw_server.pid(), nrpc_server.pid()]
            .into_iter()
            .flatten()
            .collect(),
        never: AtomicBool::new(false),
    };
    let (driver, aead) = rig.nrpc_client.describe();
    let mut out = Sliced {
        raw: Vec::new(),
        nrpc: Vec::new(),
        series: Vec::new(),
        driver,
        aead,
    };
    for (i, p) in pts.iter().enumerate() {
        let probe = LoadProbe::start(&rig.pids);
        if let Some((raw_why, nrpc_why)) = rig.skip(p) {
            out.raw.push(Err(raw_why));
            out.nrpc.push(Err(nrpc_why));
        } else {
            let (r, n, series) = rig.measure(args, p);
            out.raw.push(Ok(r));
            out.nrpc.push(Ok(n));
            out.series.push(series);
        }
        let load = probe.verdict(&rig.pids);
        progress("raw (sliced)", i, pts.len(), p, &out.raw[i], None);
        progress("nrpc (sliced)", i, pts.len(), p, &out.nrpc[i], load);
    }
    out
}

/// The handshake point against a fresh server (or the running one of
/// `--server-addr`); prints its line.
fn run_handshakes(args: &Args) -> Option<PointResult> {
    if args.handshake_ms == 0 {
        return None;
    }
    let (_server, addr) = start_server(args, Role::Nrpc);
    pin(Some(args.client_cpu));
    let r = net_bench::handshake::run(
        addr,
        args.bind,
        nrpc::server_identity(),
        nrpc::PSK,
        args.handshake_slots.max(1),
        Duration::from_millis(args.warmup_ms),
        Duration::from_millis(args.handshake_ms),
    )
    .unwrap_or_else(|e| fail(&format!("handshakes: {e}")));
    println!(
        "handshakes: {:.0}/s completed (server: 1 core, CPU {}; client: {} slots on CPU {}), p50 {:.1} µs, p99 {:.1} µs, {} errors",
        r.qps(),
        args.server_cpu,
        args.handshake_slots,
        args.client_cpu,
        r.quantile_us(0.5),
        r.quantile_us(0.99),
        r.errors
    );
    if r.stalled || r.ok == 0 {
        fail("handshakes: no progress");
    }
    Some(r)
}

fn main() {
    let args = Args::parse();
    args.validate();
    net_bench::set_gro(args.gro == "on");
    net_bench::set_spin_yield(args.spin_yield == "on");
    if let Some(role) = args.role {
        serve_role(&args, role);
        return;
    }
    let pts = points(&args);
    let extra = injected_work();
    if !extra.is_zero() {
        eprintln!(
            "nrpc_qps: INJECTED REGRESSION: the server handler busy-waits {} ns per call ({})",
            extra.as_nanos(),
            nrpc::INJECT_SPIN_ENV
        );
    }
    let (raw, runs, drv, aead, series) = if args.slices > 0 {
        if args.no_baseline {
            fail("--slices compares with the baseline; drop --no-baseline");
        }
        if args.mode.len() != 1 {
            fail("--slices measures one mode: add --mode engine or --mode sdk");
        }
        let s = run_sliced(&args, &pts);
        (
            s.raw,
            vec![(args.mode[0], s.nrpc)],
            s.driver,
            s.aead,
            s.series,
        )
    } else {
        let raw = if args.no_baseline {
            Vec::new()
        } else {
            run_raw(&args, &pts)
        };
        let mut runs = Vec::new();
        let (mut drv, mut aead) = (String::new(), String::new());
        for &m in &args.mode {
            let (nrpc, d, a) = run_nrpc(&args, &pts, m);
            (drv, aead) = (d, a);
            runs.push((m, nrpc));
        }
        (raw, runs, drv, aead, Vec::new())
    };
    let floor = if args.slices > 0 {
        Vec::new()
    } else {
        run_floor(&args, &pts)
    };
    let modes: Vec<&str> = args.mode.iter().map(|m| m.name()).collect();
    let host = Host::detect(&aead);
    println!(
        "nrpc_qps — {} cores, kernel {}, {}; driver {drv}, GRO {}, mode {}, spin {} µs (yield {}), {} process(es)",
        host.cores,
        host.kernel,
        host.aead,
        args.gro,
        modes.join(" and "),
        args.spin_us,
        args.spin_yield,
        args.processes
    );
    if let Some(path) = args.path() {
        println!("{path}");
    }
    let (mut records, mut skipped_points) = (Vec::new(), Vec::new());
    for (k, (m, nrpc)) in runs.iter().enumerate() {
        if runs.len() > 1 {
            println!();
            println!("mode {}: {}", m.name(), m.describe());
        }
        let (r, mut skips) = table(&pts, &raw, nrpc, &drv, m.name());
        if k > 0 {
            skips.retain(|s| s.system != "raw");
        }
        records.extend(r);
        skipped_points.extend(skips);
    }
    if let [(_, engine), (_, sdk)] = &runs[..] {
        sdk_vs_engine(&pts, engine, sdk);
    }
    records.extend(floor_table(
        &floor,
        &pts,
        &raw,
        &runs[0].1,
        runs[0].0.name(),
    ));
    print_slices(&series);
    if let Some(h) = run_handshakes(&args) {
        let p = Point {
            conc: args.handshake_slots,
            payload: 0,
            duration: Duration::from_millis(args.handshake_ms),
            warmup: Duration::from_millis(args.warmup_ms),
            spin: Duration::from_micros(args.spin_us),
            rate: None,
        };
        records.push(Record::new("handshake", &drv, modes[0], &p, &h));
    }
    if let Some(path) = &args.json {
        let report = Report {
            host,
            command: std::env::args().collect::<Vec<_>>().join(" "),
            records,
            slices: series,
            skipped_points,
        };
        let json = serde_json::to_string_pretty(&report).unwrap_or_default();
        std::fs::write(path, json)
            .unwrap_or_else(|e| fail(&format!("writing {}: {e}", path.display())));
    }
    if runs
        .iter()
        .flat_map(|(_, n)| n.iter().flatten())
        .any(|r| r.errors > 0)
    {
        fail("some calls failed (see the errors column)");
    }
}
