//! `nrpc_qps`: unary nRPC throughput and latency on loopback, against a raw
//! UDP baseline measured in the same run with the same pinning and payloads.
//!
//! `cargo run --release -p net-bench --bin nrpc_qps` sweeps concurrency
//! {1, 16, 128} × payload {32, 1024} B. Server and client run in separate
//! processes (`--processes 2`, default), pinned to different CPUs.
//!
//! Every system of a run is up at once — the raw baseline, nRPC in each
//! `--mode`, the QUIC peer with `--system quinn` — and each point is
//! measured as `--slices` rounds (default 6) of one short slice per system
//! in turn, on sockets and sessions kept open. Each ratio is taken per
//! round, between slices a few hundred milliseconds apart, and reported as
//! a median with its spread (min–max); the CI gate reads the same figures
//! (`scripts/bench-gate.sh`). `--slices 0` measures one `--duration-ms`
//! stretch per system and point instead. `--report PATH.svg|.html` draws
//! the latency curves and the ratio chart (`net_bench::plot`).
//!
//! Off loopback (docs/BENCHMARKS.md, "Two hosts: network namespaces"):
//! `--bind` (client side) and `--server-bind` (servers), `--server-netns`
//! (server children under `ip netns exec`), or `--server-addr` and
//! `--raw-server-addr` for servers started by hand with `--role` (behind
//! `udp_relay`, say). The raw baseline always takes the same path as nRPC.
//! A point one system cannot carry (a unary body larger than one packet on
//! the path answers `PayloadTooLarge`) is skipped with its reason.
#![forbid(unsafe_code)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use net_bench::load::{CpuWindow, LoadProbe};
use net_bench::{nrpc, pin, pingpong, raw, Host, Point, PointResult, Record, Report};
use net_engine::DriverChoice;
use sweep::Sweep;

mod client;
mod report;
mod rig;
mod servers;
mod sweep;

use report::{progress, Outcome};
use servers::{serve_role, start_server, Role};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Calls issued from the client node's core directly (no hand-off).
    Engine,
    /// Calls through the public async API on tokio.
    Sdk,
    /// Calls through the public async API from futures on the client's
    /// engine core (`Mesh::spawn_on_core`).
    Core,
}

impl Mode {
    /// What the mode measures, in a line.
    fn describe(self) -> &'static str {
        match self {
            Mode::Engine => "calls issued on the client node's own core (no hand-off)",
            Mode::Sdk => "calls through the public async API (net::Mesh::call) from tokio tasks",
            Mode::Core => "calls through the public async API (net::Mesh::call) from futures on the client's engine core (Mesh::spawn_on_core)",
        }
    }

    /// The mode's name, as on the command line and in JSON records.
    fn name(self) -> &'static str {
        match self {
            Mode::Engine => "engine",
            Mode::Sdk => "sdk",
            Mode::Core => "core",
        }
    }
}

/// A system measured against the raw baseline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Peer {
    /// nRPC, in each `--mode`.
    Nrpc,
    /// A QUIC unary echo on quinn (TLS 1.3; one bidirectional stream per
    /// call), under the same load generator and pinning.
    Quinn,
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
    /// Measured time per point and system with `--slices 0` (the c1 floor
    /// always runs this long).
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
    /// public API gets).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = vec![Mode::Engine, Mode::Sdk, Mode::Core])]
    mode: Vec<Mode>,
    /// Systems measured against the raw baseline, comma separated: nrpc
    /// (in each `--mode`) and quinn (a QUIC echo on the quinn crate).
    /// Default: both, or nrpc alone with `--server-addr` (the QUIC echo is
    /// always started by this run) or `--rate` (the QUIC peer runs closed
    /// loop only).
    #[arg(long, value_enum, value_delimiter = ',')]
    system: Option<Vec<Peer>>,
    /// 2: server in a child process; 1: server on a thread of this process.
    #[arg(long, default_value_t = 2)]
    processes: u8,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// Draw the results here: `.svg` (one picture: latency percentile
    /// curves per point, the qps-ratio chart) or `.html` (the same, with
    /// the run's table).
    #[arg(long, value_name = "PATH")]
    report: Option<std::path::PathBuf>,
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
    /// Measure each point as this many rounds of one slice per system (raw
    /// first), on sockets and sessions kept open; `--warmup-ms` warms each
    /// system once per point. 0: one stretch of `--duration-ms` per system.
    #[arg(long, default_value_t = 6)]
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
    /// Whether `peer` is measured (see `--system`).
    fn runs(&self, peer: Peer) -> bool {
        match &self.system {
            Some(v) => v.contains(&peer),
            None => peer == Peer::Nrpc || (self.server_addr.is_none() && self.rate.is_none()),
        }
    }

    /// Where servers bind.
    fn server_ip(&self) -> IpAddr {
        self.server_bind.unwrap_or(self.bind)
    }

    /// The already-running server for `role`, if one was named.
    fn external(&self, role: Role) -> Option<SocketAddr> {
        match role {
            Role::Raw => self.raw_server_addr,
            Role::Nrpc => self.server_addr,
            Role::Ping | Role::Quinn => None,
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
        if self.rate.is_some()
            && self
                .system
                .as_ref()
                .is_some_and(|s| s.contains(&Peer::Quinn))
        {
            fail("--system quinn runs closed loop only: drop --rate or quinn");
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

/// Says so on stderr when the bench-only regression injection is on.
fn warn_injected() {
    let extra = injected_work();
    if !extra.is_zero() {
        eprintln!(
            "nrpc_qps: INJECTED REGRESSION: the server handler busy-waits {} ns per call ({})",
            extra.as_nanos(),
            nrpc::INJECT_SPIN_ENV
        );
    }
}

/// The run's first lines: the machine, the driver and the knobs.
fn print_header(args: &Args, sweep: &Sweep, host: &Host) {
    let modes: Vec<&str> = args.mode.iter().map(|m| m.name()).collect();
    let slicing = if args.slices > 0 {
        format!(
            "{} interleaved rounds of {} ms slices per point",
            args.slices, args.slice_ms
        )
    } else {
        format!("one {} ms stretch per system and point", args.duration_ms)
    };
    println!(
        "nrpc_qps — {} cores, kernel {}, {}; driver {}, GRO {}, mode {}, spin {} µs (yield {}), {} process(es); {slicing}",
        host.cores,
        host.kernel,
        host.aead,
        sweep.driver,
        args.gro,
        modes.join(" and "),
        args.spin_us,
        args.spin_yield,
        args.processes
    );
    if let Some(path) = args.path() {
        println!("{path}");
    }
}

/// The handshake point's JSON record.
fn handshake_record(args: &Args, drv: &str, h: &PointResult) -> Record {
    let p = Point {
        conc: args.handshake_slots,
        payload: 0,
        duration: Duration::from_millis(args.handshake_ms),
        warmup: Duration::from_millis(args.warmup_ms),
        spin: Duration::from_micros(args.spin_us),
        rate: None,
    };
    Record::new("handshake", drv, args.mode[0].name(), &p, h)
}

/// Writes `--json` and `--report` (exits if either cannot be written).
fn write_outputs(args: &Args, report: &Report) {
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(report).unwrap_or_default();
        std::fs::write(path, json)
            .unwrap_or_else(|e| fail(&format!("writing {}: {e}", path.display())));
    }
    if let Some(path) = &args.report {
        net_bench::plot::write(report, path)
            .unwrap_or_else(|e| fail(&format!("writing {}: {e}", path.display())));
        eprintln!("nrpc_qps: report written to {}", path.display());
    }
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
    warn_injected();
    let sweep = Sweep::run(&args, &pts);
    let floor = run_floor(&args, &pts);
    let host = Host::detect(&sweep.aead);
    print_header(&args, &sweep, &host);
    let series = sweep.series(&args, &pts);
    let (mut records, skipped_points) = sweep.print(&pts, &series, &floor);
    if args.runs(Peer::Nrpc) {
        if let Some(h) = run_handshakes(&args) {
            records.push(handshake_record(&args, &sweep.driver, &h));
        }
    }
    let report = Report {
        host,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        records,
        slices: series,
        skipped_points,
    };
    write_outputs(&args, &report);
    if sweep.any_errors() {
        fail("some calls failed (see the errors column)");
    }
}
