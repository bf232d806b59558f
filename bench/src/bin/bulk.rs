//! `bulk`: goodput of large (segmented) unary calls. Each flow is its own
//! client node, so its own session, sending `--total-mib` MiB (or sending
//! for `--duration-s`) as unary calls of `--chunk-mib` MiB to a "sink"
//! service that answers each with the body's length (8 bytes), `--conc`
//! calls in flight per flow; all flows start together. Every answer is
//! checked against the bytes sent.
//!
//! Across two namespaces (`scripts/netns.sh`, `scripts/bulk-tbf.sh`):
//!
//! ```text
//! bulk --total-mib 256 --chunk-mib 16 --conc 2 --flows 1 \
//!      --server-netns netA --bind 10.77.0.2 --server-bind 10.77.0.1
//! ```
//!
//! Locally: `bulk --total-mib 32 --flows 2 --processes 1` (sink server on a
//! thread, loopback). The sink server alone: `bulk --serve --bind ADDR[:PORT]`
//! prints `READY <addr>` and serves until its stdin closes.
#![forbid(unsafe_code)]

use std::net::{IpAddr, SocketAddr};
use std::process::Child;
use std::str::FromStr;
use std::time::{Duration, Instant};

use clap::Parser;
use net_bench::bulk::{self, FlowPlan, FlowResult, MIB};
use net_bench::{pin, Host};
use net_engine::{DriverChoice, MeshNode};
use serde::Serialize;

/// Bulk goodput of segmented unary calls to a sink service.
#[derive(Parser, Debug, Clone)]
#[command(version)]
struct Args {
    /// Run only the sink server on `--bind` (ADDR or ADDR:PORT); prints
    /// `READY <addr>` and serves until stdin closes.
    #[arg(long)]
    serve: bool,
    /// Client side: the address the flows bind (any port). With `--serve`:
    /// where the server listens (ADDR or ADDR:PORT, port 0 = any).
    #[arg(long, default_value = "127.0.0.1")]
    bind: String,
    /// Where the spawned sink server binds (default: the `--bind` address).
    #[arg(long)]
    server_bind: Option<IpAddr>,
    /// Spawn the sink server under `ip netns exec NAME` (needs `--processes 2`).
    #[arg(long, value_name = "NAME")]
    server_netns: Option<String>,
    /// 2: sink server in a child process; 1: on a thread of this process.
    #[arg(long, default_value_t = 2)]
    processes: u8,
    /// MiB each flow sends.
    #[arg(long, default_value_t = 256)]
    total_mib: u64,
    /// Send for this many seconds instead of `--total-mib` (no call starts
    /// after it; the calls in flight then finish).
    #[arg(long)]
    duration_s: Option<f64>,
    /// Body size of one call, MiB (at most the receiver's max_message, 16 MiB).
    #[arg(long, default_value_t = 16)]
    chunk_mib: u64,
    /// Calls in flight per flow.
    #[arg(long, default_value_t = 2)]
    conc: usize,
    /// Flows (client nodes, one session each), started together.
    #[arg(long, default_value_t = 1)]
    flows: usize,
    /// Deadline of each call, seconds.
    #[arg(long, default_value_t = 120)]
    call_timeout_s: u64,
    /// UDP driver: auto, uring, mmsg or portable.
    #[arg(long, default_value = "auto")]
    driver: String,
    /// Spin before parking, µs (0: park at once; the default, as the flows,
    /// the server and the tokio runtime may share few cores).
    #[arg(long, default_value_t = 0)]
    spin_us: u64,
    /// Pin the sink server to this CPU.
    #[arg(long)]
    server_cpu: Option<usize>,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

impl Args {
    /// `--bind` as a socket address (a bare address gets port 0).
    fn bind_addr(&self) -> SocketAddr {
        SocketAddr::from_str(&self.bind)
            .or_else(|_| IpAddr::from_str(&self.bind).map(|ip| SocketAddr::new(ip, 0)))
            .unwrap_or_else(|_| fail(&format!("--bind {}: need ADDR or ADDR:PORT", self.bind)))
    }

    /// Where the spawned sink server binds.
    fn server_ip(&self) -> IpAddr {
        self.server_bind.unwrap_or(self.bind_addr().ip())
    }

    fn driver(&self) -> DriverChoice {
        DriverChoice::from_str(&self.driver).unwrap_or_else(|e| fail(&format!("--driver: {e}")))
    }

    fn spin(&self) -> Duration {
        Duration::from_micros(self.spin_us)
    }

    /// What each flow sends.
    fn plan(&self) -> FlowPlan {
        FlowPlan {
            total: self.total_mib * MIB,
            chunk: self.chunk_mib * MIB,
            conc: self.conc,
            for_time: self.duration_s.map(Duration::from_secs_f64),
        }
    }

    /// Refuses combinations that cannot work (exits).
    fn validate(&self) {
        if self.server_netns.is_some() && self.processes < 2 {
            fail("--server-netns runs the server as a child process: needs --processes 2");
        }
        if self.bind_addr().port() != 0 {
            fail("--bind: the client flows bind any port; give an address only");
        }
        if self.chunk_mib == 0 || self.chunk_mib > 16 {
            fail("--chunk-mib: 1 to 16 (the receiver's max_message is 16 MiB)");
        }
        if self.flows == 0 || self.conc == 0 {
            fail("--flows and --conc must be at least 1");
        }
        if self.duration_s.is_none() && self.total_mib == 0 {
            fail("--total-mib must be at least 1");
        }
        if self.duration_s.is_some_and(|d| !(d > 0.0 && d < 3600.0)) {
            fail("--duration-s: more than 0 and less than 3600");
        }
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("bulk: {msg}");
    std::process::exit(2)
}

/// The server role: the sink server on `--bind` until stdin closes.
fn serve(args: &Args) {
    pin(args.server_cpu);
    let listen = args.bind_addr();
    let node = bulk::sink_server(listen, args.driver(), args.spin(), args.server_cpu)
        .unwrap_or_else(|e| fail(&format!("binding {listen}: {e}")));
    println!("READY {}", node.local_addr().expect("started"));
    bulk::wait_for_stdin_eof();
    // The run is over; a slow shutdown changes no figure.
    let _ = node.shutdown(Duration::from_millis(200));
}

/// The running sink server: a child process (stopped by closing its stdin)
/// or a node on this process's threads.
enum Server {
    Child(Child),
    Local(Box<MeshNode>),
}

impl Drop for Server {
    fn drop(&mut self) {
        match self {
            Server::Child(c) => {
                drop(c.stdin.take());
                // The server child exits on EOF; its status changes no figure.
                let _ = c.wait();
            }
            Server::Local(node) => {
                // After the run: a slow shutdown changes no figure.
                let _ = node.shutdown(Duration::from_millis(200));
            }
        }
    }
}

/// Starts the sink server as the arguments say; returns it and its address.
fn start_server(args: &Args) -> (Server, SocketAddr) {
    let listen = SocketAddr::new(args.server_ip(), 0);
    if args.processes < 2 {
        let node = bulk::sink_server(listen, args.driver(), args.spin(), args.server_cpu)
            .unwrap_or_else(|e| fail(&format!("binding {listen}: {e}")));
        let addr = node.local_addr().expect("started");
        return (Server::Local(Box::new(node)), addr);
    }
    let exe = std::env::current_exe().unwrap_or_else(|e| fail(&e.to_string()));
    let mut child_args = vec![
        "--serve".to_string(),
        "--bind".into(),
        listen.to_string(),
        "--driver".into(),
        args.driver.clone(),
        "--spin-us".into(),
        args.spin_us.to_string(),
    ];
    if let Some(c) = args.server_cpu {
        child_args.extend(["--server-cpu".into(), c.to_string()]);
    }
    let (child, addr) = bulk::spawn_server(&exe, args.server_netns.as_deref(), &child_args)
        .unwrap_or_else(|e| fail(&e));
    (Server::Child(child), addr)
}

/// The whole run, as printed and written to `--json`.
#[derive(Serialize)]
struct BulkReport {
    host: Host,
    command: String,
    /// Where the traffic went.
    path: String,
    driver: String,
    flows: usize,
    /// MiB each flow was to send (absent with `--duration-s`).
    total_mib: Option<u64>,
    /// Seconds each flow sent for (absent with `--total-mib`).
    duration_s: Option<f64>,
    chunk_mib: u64,
    conc: usize,
    per_flow: Vec<FlowResult>,
    /// Sum over the flows; `seconds` is the longest flow's.
    total: FlowResult,
}

/// Starts the flows' nodes, does each handshake, then runs all flows from
/// one common start.
/// Returns the flows' results and the (driver, AEAD) of the first flow.
fn run_flows(args: &Args, server: SocketAddr) -> (Vec<FlowResult>, (String, String)) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(&e.to_string()));
    let deadline = Duration::from_secs(args.call_timeout_s);
    let meshes: Vec<net::Mesh> = (0..args.flows)
        .map(|i| {
            let ip = args.bind_addr().ip();
            bulk::flow_client(server, ip, args.driver(), args.spin(), i, deadline)
                .unwrap_or_else(|e| fail(&format!("flow {}: {e}", i + 1)))
        })
        .collect();
    let (driver, aead) = meshes[0].describe();
    let plan = args.plan();
    let results = rt.block_on(async {
        for (i, m) in meshes.iter().enumerate() {
            bulk::handshake(m)
                .await
                .map_err(|e| format!("flow {}: {e}", i + 1))?;
        }
        let start = Instant::now();
        let tasks: Vec<_> = meshes
            .iter()
            .enumerate()
            .map(|(i, m)| tokio::spawn(bulk::run_flow(m.clone(), i + 1, plan, start, deadline)))
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.map_err(|e| e.to_string())??);
        }
        Ok::<_, String>(out)
    });
    for m in &meshes {
        // After the run: a slow shutdown changes no figure.
        let _ = m.shutdown(Duration::from_millis(200));
    }
    (
        results.unwrap_or_else(|e| fail(&e)),
        (driver, aead.to_string()),
    )
}

/// The flows summed: bytes, calls, errors and counters added, the longest
/// flow's seconds.
fn total(flows: &[FlowResult]) -> FlowResult {
    let mut t = FlowResult::default();
    for f in flows {
        t.bytes += f.bytes;
        t.calls += f.calls;
        t.errors += f.errors;
        t.seconds = t.seconds.max(f.seconds);
        t.sent.datagrams_tx += f.sent.datagrams_tx;
        t.sent.bytes_tx += f.sent.bytes_tx;
        t.sent.packets_lost += f.sent.packets_lost;
        t.sent.frames_retransmitted += f.sent.frames_retransmitted;
        t.sent.ptos += f.sent.ptos;
        if t.first_error.is_none() {
            t.first_error = f.first_error.clone();
        }
    }
    t.goodput_mbps = bulk::mbps(t.bytes, t.seconds);
    t
}

/// One markdown table row for `name`; `sum` (the flows' goodputs added)
/// gives its share, if it is a flow.
fn row(name: &str, f: &FlowResult, sum: Option<f64>) {
    let share = match sum {
        Some(s) if s > 0.0 => format!("{:.1}", 100.0 * f.goodput_mbps / s),
        _ => "-".into(),
    };
    println!(
        "| {name} | {:.1} | {:.2} | {:.1} | {share} | {} | {} | {} | {} | {} | {} |",
        f.bytes as f64 / MIB as f64,
        f.seconds,
        f.goodput_mbps,
        f.calls,
        f.errors,
        f.sent.datagrams_tx,
        f.sent.packets_lost,
        f.sent.frames_retransmitted,
        f.sent.ptos
    );
}

/// Prints the run's header line and its table.
fn print(r: &BulkReport) {
    let what = match (r.duration_s, r.total_mib) {
        (Some(d), _) => format!("{d} s per flow"),
        (None, Some(m)) => format!("{m} MiB per flow"),
        (None, None) => String::new(),
    };
    println!(
        "bulk — {} cores, kernel {}, {}; driver {}; {}; {} flow(s), {what}, {} MiB calls, {} in flight per flow",
        r.host.cores, r.host.kernel, r.host.aead, r.driver, r.path, r.flows, r.chunk_mib, r.conc
    );
    println!("| flow | MiB acked | seconds | goodput Mbit/s | share % | calls | errors | datagrams sent | packets lost | frames retransmitted | PTOs |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let sum: f64 = r.per_flow.iter().map(|f| f.goodput_mbps).sum();
    for f in &r.per_flow {
        row(&f.flow.to_string(), f, Some(sum));
    }
    row("total", &r.total, None);
    if let Some(e) = &r.total.first_error {
        println!("first error: {e}");
    }
}

/// One line on where the traffic goes.
fn path(args: &Args) -> String {
    let ns = args
        .server_netns
        .as_ref()
        .map_or(String::new(), |n| format!(" in netns {n}"));
    let how = if args.processes < 2 {
        "thread"
    } else {
        "child process"
    };
    format!(
        "client {} -> sink server {}{ns} ({how})",
        args.bind_addr().ip(),
        args.server_ip()
    )
}

fn main() {
    let args = Args::parse();
    if args.serve {
        serve(&args);
        return;
    }
    args.validate();
    let (server, addr) = start_server(&args);
    let (per_flow, (driver, aead)) = run_flows(&args, addr);
    drop(server);
    let report = BulkReport {
        host: Host::detect(&aead),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        path: path(&args),
        driver,
        flows: args.flows,
        total_mib: args.duration_s.is_none().then_some(args.total_mib),
        duration_s: args.duration_s,
        chunk_mib: args.chunk_mib,
        conc: args.conc,
        total: total(&per_flow),
        per_flow,
    };
    print(&report);
    if let Some(p) = &args.json {
        let json = serde_json::to_string_pretty(&report).unwrap_or_default();
        std::fs::write(p, json).unwrap_or_else(|e| fail(&format!("writing {}: {e}", p.display())));
    }
    check(&args, &report);
}

/// Exits non-zero if a call failed or (with `--total-mib`) a flow's bytes
/// were not all acknowledged.
fn check(args: &Args, r: &BulkReport) {
    if r.total.errors > 0 {
        fail(&format!(
            "{} call(s) failed (see the errors column)",
            r.total.errors
        ));
    }
    let want = args.total_mib * MIB;
    for f in &r.per_flow {
        if args.duration_s.is_none() && f.bytes != want {
            fail(&format!(
                "flow {}: {} of {want} B acknowledged",
                f.flow, f.bytes
            ));
        }
        if f.bytes == 0 {
            fail(&format!("flow {}: nothing acknowledged", f.flow));
        }
    }
}
