//! Two hosts on one machine: `nrpc_qps` and `udp_relay` across two network
//! namespaces joined by an MTU-1500 veth (`scripts/netns.sh`), the client
//! in one namespace and the servers in the other.
//!
//! Needs root and `ip netns`. Without them each test prints `SKIPPED:
//! <reason>` and passes — except under `CI=true` (CI runs as root), where a
//! skip fails. Each test makes its own pair of namespaces (named after the
//! process and the test, so runs and tests never share one) and removes it
//! when it ends, failed or not. Every child runs under `timeout`, so a test
//! is bounded (well under 60 s) even if a child hangs.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

const ADDR_A: &str = "10.77.0.1";
const ADDR_B: &str = "10.77.0.2";
/// The longest any child may run, in seconds (coreutils `timeout`).
const CHILD_LIMIT_S: &str = "45";

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/netns.sh")
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().next().map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// Why this machine cannot run the tests, if it cannot.
fn unavailable() -> Option<String> {
    if !is_root() {
        return Some("not root (namespaces and veth pairs need root)".into());
    }
    match Command::new("ip").args(["netns", "list"]).output() {
        Err(e) => Some(format!("`ip` not runnable ({e}); Debian package iproute2")),
        Ok(o) if !o.status.success() => Some(format!(
            "`ip netns list` failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Ok(_) => None,
    }
}

/// Prints the skip; fails under `CI=true`, where nothing may skip silently.
fn skip(reason: &str) {
    eprintln!("SKIPPED: {reason}");
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("SKIPPED under CI=true: {reason} (CI runs as root with iproute2)");
    }
}

/// A pair of namespaces made by `netns.sh up`, removed by `netns.sh down`
/// when dropped (also when the test panics).
struct Pair {
    a: String,
    b: String,
}

impl Pair {
    /// Brings the pair up, or says why it could not.
    fn up(tag: &str) -> Result<Pair, String> {
        let pid = std::process::id();
        let pair = Pair {
            a: format!("nq{tag}A{pid}"),
            b: format!("nq{tag}B{pid}"),
        };
        let o = pair.script("up");
        if o.status.success() {
            Ok(pair)
        } else {
            Err(format!(
                "netns.sh up failed: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ))
        }
    }

    fn script(&self, verb: &str) -> Output {
        Command::new("bash")
            .arg(script())
            .arg(verb)
            .env("NETNS_A", &self.a)
            .env("NETNS_B", &self.b)
            .env("NETNS_ADDR_A", ADDR_A)
            .env("NETNS_ADDR_B", ADDR_B)
            .stdin(Stdio::null())
            .output()
            .expect("bash runs")
    }

    /// `program args` inside namespace `ns`, bounded by [`CHILD_LIMIT_S`].
    fn exec(&self, ns: &str, program: &str, args: &[&str]) -> Command {
        let mut c = Command::new("timeout");
        c.args([CHILD_LIMIT_S, "ip", "netns", "exec", ns, program])
            .args(args)
            .stdin(Stdio::null());
        c
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        let o = self.script("down");
        if !o.status.success() {
            eprintln!(
                "netns.sh down failed: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
    }
}

/// The pair for `tag`, or `None` after printing why not (see [`skip`]).
fn pair(tag: &str) -> Option<Pair> {
    if let Some(why) = unavailable() {
        skip(&why);
        return None;
    }
    match Pair::up(tag) {
        Ok(p) => Some(p),
        Err(why) => {
            skip(&why);
            None
        }
    }
}

fn show(what: &str, o: &Output) -> String {
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    eprintln!("--- {what}: {}\n{out}{err}", o.status);
    out.into_owned()
}

/// The table rows `| conc | payload B | raw qps | nrpc qps | ratio | ...`
/// of a run; panics unless every expected point has numbers and a ratio.
fn assert_measured(out: &str, points: &[(usize, usize)]) {
    for &(conc, payload) in points {
        let head = format!("| {conc} | {payload} B | ");
        let row = out
            .lines()
            .find(|l| l.starts_with(&head))
            .unwrap_or_else(|| panic!("no row for c{conc}/{payload}B"));
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let (raw_qps, nrpc_qps, ratio) = (cells[3], cells[4], cells[5]);
        for (name, v) in [
            ("raw qps", raw_qps),
            ("nrpc qps", nrpc_qps),
            ("qps ratio", ratio),
        ] {
            let x: f64 = v
                .parse()
                .unwrap_or_else(|_| panic!("c{conc}/{payload}B {name} is {v:?}"));
            assert!(x > 0.0, "c{conc}/{payload}B {name} is {x}");
        }
    }
}

#[test]
fn nrpc_qps_runs_across_two_namespaces_with_the_baseline_on_the_same_path() {
    let Some(p) = pair("q") else { return };
    let o = p
        .exec(
            &p.b,
            env!("CARGO_BIN_EXE_nrpc_qps"),
            &[
                "--conc",
                "1,16",
                "--payload",
                "32,1024",
                "--duration-ms",
                "300",
                "--warmup-ms",
                "100",
                "--handshake-ms",
                "0",
                "--slices",
                "0",
                "--system",
                "nrpc",
                "--mode",
                "engine",
                "--server-netns",
                &p.a,
                "--bind",
                ADDR_B,
                "--server-bind",
                ADDR_A,
            ],
        )
        .output()
        .expect("nrpc_qps runs");
    let out = show("nrpc_qps", &o);
    assert!(o.status.success(), "nrpc_qps failed: {}", o.status);
    assert!(
        out.contains(&format!(
            "path: client on {ADDR_B}, servers on {ADDR_A} in netns {}",
            p.a
        )),
        "no path line"
    );
    assert_measured(&out, &[(1, 32), (16, 32), (1, 1024), (16, 1024)]);
}

/// Starts `args` in the background in `ns` with a pipe on its stdin (it
/// stops when the pipe closes, also when a failing test drops it); returns
/// it once it printed its `READY` line.
fn start_ready(p: &Pair, ns: &str, program: &str, args: &[&str]) -> std::process::Child {
    use std::io::BufRead;
    let mut child = p
        .exec(ns, program, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawns");
    let mut line = String::new();
    let stdout = child.stdout.as_mut().expect("piped");
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .expect("reads");
    assert!(line.starts_with("READY "), "{program} said {line:?}");
    child
}

#[test]
fn udp_relay_delays_both_ways_between_running_servers_and_the_client() {
    let Some(p) = pair("r") else { return };
    let qps = env!("CARGO_BIN_EXE_nrpc_qps");
    let relay = env!("CARGO_BIN_EXE_udp_relay");
    let at = |port: u16| format!("{ADDR_A}:{port}");
    let (nrpc_up, raw_up, nrpc_relay, raw_relay) = (at(9001), at(9003), at(9000), at(9002));
    let serve = |role: &str, addr: &str| {
        let port = addr.rsplit(':').next().expect("port").to_string();
        start_ready(
            &p,
            &p.a,
            qps,
            &[
                "--role",
                role,
                "--server-bind",
                ADDR_A,
                "--server-port",
                &port,
            ],
        )
    };
    let servers = [serve("nrpc-server", &nrpc_up), serve("raw-server", &raw_up)];
    // 2 ms each way: every round trip takes at least 4 ms.
    let relay_to = |listen: &str, upstream: &str| {
        start_ready(
            &p,
            &p.a,
            relay,
            &[
                "--listen",
                listen,
                "--upstream",
                upstream,
                "--delay-ms",
                "2",
                "--seed",
                "1",
                "--stdin-eof",
            ],
        )
    };
    let relays = [
        relay_to(&nrpc_relay, &nrpc_up),
        relay_to(&raw_relay, &raw_up),
    ];
    let o = p
        .exec(
            &p.b,
            qps,
            &[
                "--conc",
                "1",
                "--payload",
                "32",
                "--duration-ms",
                "300",
                "--warmup-ms",
                "100",
                "--handshake-ms",
                "0",
                "--slices",
                "0",
                "--system",
                "nrpc",
                "--mode",
                "engine",
                "--bind",
                ADDR_B,
                "--server-addr",
                &nrpc_relay,
                "--raw-server-addr",
                &raw_relay,
            ],
        )
        .output()
        .expect("nrpc_qps runs");
    let out = show("nrpc_qps through udp_relay", &o);
    for r in relays {
        // SIGINT (`timeout` passes it on), then stdin closes
        // (`wait_with_output`): either way the relay prints its counters
        // and exits.
        let int = Command::new("bash")
            .args(["-c", &format!("kill -INT {}", r.id())])
            .status();
        assert!(int.is_ok_and(|s| s.success()), "kill -INT");
        let counters = show("udp_relay", &r.wait_with_output().expect("relay exits"));
        assert!(counters.contains("lost 0;"), "{counters}");
        assert!(
            !counters.contains("released client->upstream 0 "),
            "{counters}"
        );
    }
    for mut s in servers {
        drop(s.stdin.take()); // a server's way to be told to stop
        let status = s.wait().expect("server exits");
        assert!(status.success(), "server: {status}");
    }
    assert!(o.status.success(), "nrpc_qps failed: {}", o.status);
    assert_measured(&out, &[(1, 32)]);
    let row = out
        .lines()
        .find(|l| l.starts_with("| 1 | 32 B"))
        .expect("row");
    let p50: Vec<f64> = [6, 7]
        .map(|i| {
            row.split('|')
                .nth(i)
                .expect("cell")
                .trim()
                .parse()
                .expect("number")
        })
        .to_vec();
    assert!(
        p50.iter().all(|&us| us >= 4000.0),
        "p50 under 4 ms: {p50:?}"
    );
}
