//! The servers of a run: child processes (`--processes 2`, optionally
//! under `ip netns exec`), threads of this process, or servers started by
//! hand (`--server-addr`); and the `--role` entry point a child runs.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use clap::ValueEnum;
use net_bench::{pin, pingpong, quic, raw};

use super::{driver, fail, nrpc_server, Args};

/// A server alone (what `nrpc_qps` spawns as its children; also usable by
/// hand with `--server-bind`, `--server-port` and `--serve-ms`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Role {
    /// The raw-UDP echo server of the baseline.
    #[value(name = "raw-server")]
    Raw,
    /// The nRPC echo server node.
    #[value(name = "nrpc-server")]
    Nrpc,
    /// The busy-poll ping-pong echo of the c1 floor (`net_bench::pingpong`).
    #[value(name = "ping-server")]
    Ping,
    /// The QUIC echo of `--system quinn` (`net_bench::quic`).
    #[value(name = "quinn-server")]
    Quinn,
}

impl Role {
    /// The role's name on the command line.
    fn arg(self) -> &'static str {
        match self {
            Role::Raw => "raw-server",
            Role::Nrpc => "nrpc-server",
            Role::Ping => "ping-server",
            Role::Quinn => "quinn-server",
        }
    }
}

/// A running server: a child process, a thread with its stop flag, or one
/// started by someone else (`--server-addr`, `--raw-server-addr`).
pub(crate) enum Server {
    External,
    Child(Child),
    Thread(
        Arc<AtomicBool>,
        Option<std::thread::JoinHandle<()>>,
        Option<Box<net_engine::MeshNode>>,
    ),
    /// The QUIC echo on its own thread (held only to stop it when dropped).
    Quic {
        _server: quic::Server,
    },
}

impl Server {
    /// The child process's id (a thread server has none: its CPU time is
    /// this process's; an external one is not counted).
    pub(crate) fn pid(&self) -> Option<u32> {
        match self {
            Server::Child(c) => Some(c.id()),
            Server::Thread(..) | Server::Quic { .. } | Server::External => None,
        }
    }
}

impl Drop for Server {
    /// Stops the server. The run's figures are taken by now; a child that
    /// cannot be waited for, a server thread that panicked (it reported
    /// itself) or a node slow to shut down changes none of them, so the
    /// results are only reported, never acted on.
    fn drop(&mut self) {
        match self {
            Server::External | Server::Quic { .. } => {}
            Server::Child(c) => {
                drop(c.stdin.take());
                if let Err(e) = c.wait() {
                    eprintln!("nrpc_qps: waiting for a server child: {e}");
                }
            }
            Server::Thread(stop, t, node) => {
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
                if t.take().is_some_and(|t| t.join().is_err()) {
                    eprintln!("nrpc_qps: a server thread panicked");
                }
                if let Some(Err(e)) = node.take().map(|n| n.shutdown(Duration::from_millis(200))) {
                    eprintln!("nrpc_qps: server node shutdown: {e}");
                }
            }
        }
    }
}

/// The raw echo of the baseline on this thread until `stop`; a driver
/// error ends the run with its cause (a silent stop would only show up as
/// a stalled point).
fn raw_echo(drv: Box<dyn net_io::Driver>, spin: Duration, stop: &AtomicBool) {
    if let Err(e) = raw::serve(drv, spin, stop) {
        fail(&format!("raw echo server: {e}"));
    }
}

/// Child process (or a server by hand): run `role` pinned to the server
/// CPU on `--server-bind`:`--server-port` until stdin closes or
/// `--serve-ms` passes.
pub(crate) fn serve_role(args: &Args, role: Role) {
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
            Some(std::thread::spawn(move || raw_echo(drv, spin, &s)))
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
            if let Err(e) = node.shutdown(Duration::from_millis(200)) {
                eprintln!("nrpc_qps: nRPC server shutdown: {e}");
            }
            return;
        }
        Role::Quinn => {
            let server = quic_server(listen, args.server_cpu);
            println!("READY {}", server.local_addr());
            wait_until_told(args.serve_ms);
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
pub(crate) fn start_server(args: &Args, role: Role) -> (Server, SocketAddr) {
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
                raw_echo(drv, spin, &s);
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
        Role::Quinn => {
            let server = quic_server(listen, args.server_cpu);
            let addr = server.local_addr();
            (Server::Quic { _server: server }, addr)
        }
    }
}

/// The QUIC echo bound to `listen`, its thread pinned to `cpu`.
fn quic_server(listen: SocketAddr, cpu: usize) -> quic::Server {
    quic::Server::start(listen, Some(cpu))
        .unwrap_or_else(|e| fail(&format!("QUIC echo on {listen}: {e}")))
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
    let role_arg = role.arg();
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
