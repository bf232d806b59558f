//! The `net` binary end to end: the README quickstart on loopback (keygen
//! twice, two nodes, echo, stats, graceful shutdown) and the error paths of
//! configs and secret files; `net call` with multi-MiB bodies from files and
//! stdin. Every wait is bounded; children die on drop.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const NET: &str = env!("CARGO_BIN_EXE_net");
/// Bound on any one command or awaited line (generous: CI shares 2 cores).
const LIMIT: Duration = Duration::from_secs(30);

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("net-cli-{}-{n}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn write(&self, name: &str, text: &str, mode: u32) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).expect("write");
        chmod(&p, mode);
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777
}

fn command(bin: &Path, dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(bin);
    c.args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// Reads a pipe to the end on a thread; the text arrives on the channel.
fn drain(mut r: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = r.read_to_string(&mut s);
        let _ = tx.send(s);
    });
    rx
}

struct Out {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs a one-shot command to completion within [`LIMIT`] (killed after).
fn run_bin(bin: &Path, dir: &Path, args: &[&str]) -> Out {
    run_bin_with(bin, dir, args, None)
}

/// [`run_bin`] with `input`, if any, written to the command's stdin on a
/// thread (then closed; a command that stops reading early is fine).
fn run_bin_with(bin: &Path, dir: &Path, args: &[&str], input: Option<Vec<u8>>) -> Out {
    let mut cmd = command(bin, dir, args);
    if input.is_some() {
        cmd.stdin(Stdio::piped());
    }
    let mut child = cmd.spawn().expect("spawn net");
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
    }
    let out = drain(child.stdout.take().expect("stdout"));
    let err = drain(child.stderr.take().expect("stderr"));
    let deadline = Instant::now() + LIMIT;
    let left = || deadline.saturating_duration_since(Instant::now());
    let (stdout, stderr) = match (out.recv_timeout(left()), err.recv_timeout(left())) {
        (Ok(o), Ok(e)) => (o, e),
        _ => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`net {}` did not finish within {LIMIT:?}", args.join(" "));
        }
    };
    let status = child.wait().expect("wait");
    Out {
        status,
        stdout,
        stderr,
    }
}

fn net(dir: &Path, args: &[&str]) -> Out {
    run_bin(Path::new(NET), dir, args)
}

/// `net …` that must succeed; returns stdout.
fn ok(dir: &Path, args: &[&str]) -> String {
    succeeded(net(dir, args), args)
}

/// `net …` fed `input` on stdin that must succeed; returns stdout.
fn ok_with(dir: &Path, args: &[&str], input: Vec<u8>) -> String {
    succeeded(run_bin_with(Path::new(NET), dir, args, Some(input)), args)
}

fn succeeded(o: Out, args: &[&str]) -> String {
    assert!(
        o.status.success(),
        "`net {}` failed: {}\n{}",
        args.join(" "),
        o.stdout,
        o.stderr
    );
    o.stdout
}

/// `net …` that must fail; returns stderr.
fn fails(dir: &Path, args: &[&str]) -> String {
    let o = net(dir, args);
    assert!(
        !o.status.success(),
        "`net {}` should fail: {}",
        args.join(" "),
        o.stdout
    );
    o.stderr
}

/// A running `net node`: stdout lines on a channel, stderr collected.
struct Node {
    child: Child,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
}

impl Node {
    fn start(dir: &Path, config: &str) -> Node {
        let mut child = command(Path::new(NET), dir, &["node", "--config", config])
            .spawn()
            .expect("spawn net node");
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let (mut pipe, sink) = (child.stderr.take().expect("stderr"), stderr.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = pipe.read(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                sink.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push_str(&text);
            }
        });
        Node {
            child,
            lines,
            stderr,
        }
    }

    /// The first stdout line starting with `prefix`, within [`LIMIT`].
    fn wait_line(&self, prefix: &str) -> String {
        let deadline = Instant::now() + LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => return line,
                Ok(_) => {}
                Err(e) => panic!(
                    "no line starting with {prefix:?} ({e:?}); stderr:\n{}",
                    self.stderr.lock().unwrap_or_else(|e| e.into_inner())
                ),
            }
        }
    }

    /// Sends `signal` with kill(1) and waits (bounded) for a clean exit.
    fn stop(&mut self, signal: &str) -> ExitStatus {
        let pid = self.child.id().to_string();
        let st = Command::new("kill").args([signal, &pid]).status();
        assert!(st.expect("kill(1)").success());
        self.wait_line("stopped");
        // Exiting closes stdout: wait for the reader to see the end.
        let deadline = Instant::now() + LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => panic!("node did not exit after `stopped`"),
            }
        }
        self.child.wait().expect("wait")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value after `label` on the line that starts with it.
fn field(text: &str, label: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(label))
        .unwrap_or_else(|| panic!("no {label:?} in:\n{text}"))
        .trim()
        .to_string()
}

fn config(listen: &str, seed: &str) -> String {
    format!("identity = \"{seed}\"\npsk_file = \"mesh.psk\"\nlisten = \"{listen}\"\n")
}

/// The quickstart's files: two identities, a PSK, two configs (0600).
/// Returns (public identity, node id) of A and of B.
fn quickstart_files(d: &TempDir) -> [(String, String); 2] {
    let dir = &d.0;
    let a = ok(dir, &["keygen", "--out", "a.seed"]);
    let b = ok(dir, &["keygen", "--out", "b.seed"]);
    ok(dir, &["psk", "--out", "mesh.psk"]);
    assert_eq!(mode(&d.path("a.seed")), 0o600);
    assert_eq!(mode(&d.path("mesh.psk")), 0o600);
    assert_eq!(std::fs::metadata(d.path("a.seed")).expect("seed").len(), 32);
    let ids = [&a, &b].map(|o| (field(o, "public identity"), field(o, "node id")));
    assert_ne!(ids[0], ids[1]);
    assert_eq!(ok(dir, &["id", "--public", "b.seed"]).trim(), ids[1].0);
    assert_eq!(field(&ok(dir, &["id", "a.seed"]), "node id"), ids[0].1);
    d.write("a.toml", &config("127.0.0.1:0", "a.seed"), 0o600);
    d.write("b.toml", &config("127.0.0.1:0", "b.seed"), 0o600);
    ids
}

#[test]
fn quickstart_two_nodes_echo_stats_and_graceful_shutdown() {
    let d = TempDir::new("quickstart");
    let dir = &d.0;
    let [(pub_a, _), (pub_b, id_b)] = quickstart_files(&d);

    let mut node_a = Node::start(dir, "a.toml");
    let mut node_b = Node::start(dir, "b.toml");
    let addr_a = field(
        &node_a.wait_line("net node listening on"),
        "net node listening on",
    );
    let addr_b = field(
        &node_b.wait_line("net node listening on"),
        "net node listening on",
    );
    let banner = node_b.wait_line("driver");
    assert!(
        banner.contains("aead") && banner.contains("cores 1"),
        "{banner}"
    );
    assert!(banner.contains("spin 50 µs"), "{banner}");

    let peer_b = format!("{pub_b}@{addr_b}");
    let call = ["call", "--config", "a.toml", "--peer", &peer_b];
    let out = ok(
        dir,
        &[
            &call[..],
            &["--service", "echo", "--data", "hello, mesh", "--count", "2"],
        ]
        .concat(),
    );
    assert!(out.lines().any(|l| l == "reply: hello, mesh"), "{out}");
    assert_eq!(
        out.lines().filter(|l| l.starts_with("rtt: ")).count(),
        2,
        "{out}"
    );

    // B's counters, fetched over the mesh by A's identity.
    let stats = ok(dir, &["stats", "--config", "a.toml", "--peer", &peer_b]);
    let v: serde_json::Value = serde_json::from_str(&stats).expect("stats JSON");
    assert_eq!(v["node_id"].as_str(), Some(id_b.as_str()), "{v}");
    let cores = v["cores"].as_array().expect("cores");
    assert_eq!(cores.len(), 1);
    assert!(
        cores[0]["inline_handled"].as_u64() >= Some(2),
        "the two echoes: {v}"
    );
    assert!(
        cores[0]["proto"]["handshakes_completed"].as_u64() >= Some(2),
        "{v}"
    );
    // And A's, asked with B's identity (both configs work as callers).
    let peer_a = format!("{pub_a}@{addr_a}");
    let stats_a = ok(dir, &["stats", "--config", "b.toml", "--peer", &peer_a]);
    assert!(
        stats_a.contains("\"inline_handled\": 0"),
        "A served no echo: {stats_a}"
    );

    assert!(node_a.stop("-TERM").success());
    assert!(node_b.stop("-INT").success());
    let log = node_b
        .stderr
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    assert!(
        log.contains("node started") && log.contains("SIGINT"),
        "{log}"
    );
}

#[test]
fn keygen_never_overwrites_and_call_rejects_a_bad_peer() {
    let d = TempDir::new("keygen");
    let first = ok(&d.0, &["keygen", "--out", "k.seed"]);
    let seed = std::fs::read(d.path("k.seed")).expect("seed");
    let err = fails(&d.0, &["keygen", "--out", "k.seed"]);
    assert!(
        err.contains("already exists; refusing to overwrite"),
        "{err}"
    );
    assert_eq!(std::fs::read(d.path("k.seed")).expect("seed"), seed);
    assert_eq!(
        field(&ok(&d.0, &["id", "k.seed"]), "node id"),
        field(&first, "node id")
    );
    // A node id (or anything that is not a public key) is refused by the parser.
    let err = fails(
        &d.0,
        &["call", "--config", "x.toml", "--peer", "nothex@127.0.0.1:1"],
    );
    assert!(
        err.contains("public identity") && err.contains("node id will not do"),
        "{err}"
    );
}

#[test]
fn unknown_config_field_names_line_and_column() {
    let d = TempDir::new("unknown");
    ok(&d.0, &["keygen", "--out", "n.seed"]);
    ok(&d.0, &["psk", "--out", "mesh.psk"]);
    let text = format!(
        "{}\n[session]\n  idle_timeout = 5\n",
        config("127.0.0.1:0", "n.seed")
    );
    d.write("bad.toml", &text, 0o600);
    let err = fails(&d.0, &["node", "--config", "bad.toml"]);
    assert!(
        err.contains("bad.toml:6:3: unknown field `idle_timeout`"),
        "{err}"
    );
    d.write(
        "top.toml",
        "identity = \"n.seed\"\npsk_file = \"mesh.psk\"\nlistn = \"x\"\n",
        0o600,
    );
    let err = fails(&d.0, &["check", "--config", "top.toml"]);
    assert!(err.contains("top.toml:3:1: unknown field `listn`"), "{err}");
}

#[test]
fn psk_of_the_wrong_length_is_refused() {
    let d = TempDir::new("psk");
    ok(&d.0, &["keygen", "--out", "n.seed"]);
    let short = "ab".repeat(31);
    d.write(
        "inline.toml",
        &format!("identity = \"n.seed\"\npsk = \"{short}\"\n"),
        0o600,
    );
    let err = fails(&d.0, &["check", "--config", "inline.toml"]);
    assert!(err.contains("inline.toml:2:7:"), "{err}");
    assert!(
        err.contains("64 hex characters") && err.contains("found 62"),
        "{err}"
    );
    d.write("short.psk", &format!("{short}\n"), 0o600);
    d.write(
        "file.toml",
        "identity = \"n.seed\"\npsk_file = \"short.psk\"\n",
        0o600,
    );
    let err = fails(&d.0, &["node", "--config", "file.toml"]);
    assert!(
        err.contains("short.psk: a PSK file holds 64 hex characters"),
        "{err}"
    );
    assert!(!err.contains(&short), "the PSK is never echoed: {err}");
}

#[test]
fn a_0644_seed_file_is_refused() {
    let d = TempDir::new("seed");
    ok(&d.0, &["keygen", "--out", "n.seed"]);
    ok(&d.0, &["psk", "--out", "mesh.psk"]);
    d.write("n.toml", &config("127.0.0.1:0", "n.seed"), 0o600);
    ok(&d.0, &["check", "--config", "n.toml"]);
    chmod(&d.path("n.seed"), 0o644);
    let err = fails(&d.0, &["id", "n.seed"]);
    assert!(
        err.contains("n.seed: identity seed has mode 0644, looser than 0600"),
        "{err}"
    );
    let err = fails(&d.0, &["node", "--config", "n.toml"]);
    assert!(err.contains("mode 0644, looser than 0600"), "{err}");
}

#[test]
fn a_group_readable_config_is_warned_about() {
    let d = TempDir::new("warn");
    ok(&d.0, &["keygen", "--out", "n.seed"]);
    ok(&d.0, &["psk", "--out", "mesh.psk"]);
    let cfg = d.write("n.toml", &config("127.0.0.1:0", "n.seed"), 0o600);
    let quiet = net(&d.0, &["check", "--config", "n.toml"]);
    assert!(
        quiet.status.success() && !quiet.stderr.contains("WARN"),
        "{}",
        quiet.stderr
    );
    chmod(&cfg, 0o640);
    let o = net(&d.0, &["check", "--config", "n.toml"]);
    assert!(o.status.success(), "a warning, not an error: {}", o.stderr);
    assert!(o.stderr.contains("WARN"), "{}", o.stderr);
    assert!(
        o.stderr
            .contains("n.toml has mode 0640: readable by group/others"),
        "{}",
        o.stderr
    );
    assert!(o.stdout.contains("warnings         1"), "{}", o.stdout);
}

#[test]
fn bench_without_nrpc_qps_beside_it_says_how_to_run_it() {
    // A hard link (same file system as the build): `net` then runs from a
    // folder without nrpc_qps. Not a copy: a copy's write handle, inherited
    // by a child another test forks at that moment, makes exec fail with
    // ETXTBSY.
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("net-cli-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let d = TempDir(dir);
    let link = d.path("net");
    std::fs::hard_link(NET, &link).expect("hard link beside the build");
    let o = run_bin(&link, &d.0, &["bench", "--conc", "1"]);
    assert!(!o.status.success());
    let looked = format!("looked for {})", d.path("nrpc_qps").display());
    assert!(o.stderr.contains(&looked), "{}", o.stderr);
    assert!(
        o.stderr
            .contains("cargo run --release -p net-bench --bin nrpc_qps -- ARGS"),
        "{}",
        o.stderr
    );
}

/// `net call` tells a down node, a wrong PSK and a wrong identity apart,
/// each within `--timeout-ms`, and the callee's log names the wrong-PSK
/// and wrong-identity attempts.
#[test]
fn call_failures_name_their_cause_and_the_callee_logs_rejected_handshakes() {
    let d = TempDir::new("causes");
    let dir = &d.0;
    let [(pub_a, _), (pub_b, _)] = quickstart_files(&d);
    ok(dir, &["psk", "--out", "other.psk"]);
    d.write(
        "wrong-psk.toml",
        "identity = \"a.seed\"\npsk_file = \"other.psk\"\nlisten = \"127.0.0.1:0\"\n",
        0o600,
    );
    let mut node_b = Node::start(dir, "b.toml");
    let addr_b = field(
        &node_b.wait_line("net node listening on"),
        "net node listening on",
    );
    let free = std::net::UdpSocket::bind("127.0.0.1:0").expect("probe");
    let dead = free.local_addr().expect("addr");
    drop(free);

    const TIMEOUT_MS: u64 = 1500;
    let timeout = TIMEOUT_MS.to_string();
    let failing_call = |config: &str, peer: &str| -> String {
        let args = [
            "call",
            "--config",
            config,
            "--peer",
            peer,
            "--timeout-ms",
            &timeout,
        ];
        let t = Instant::now();
        let err = fails(dir, &args);
        // Process start and teardown on top of the call itself.
        let took = t.elapsed();
        assert!(
            took < Duration::from_millis(TIMEOUT_MS + 1500),
            "`net {}` took {took:?}",
            args.join(" ")
        );
        err
    };
    let down = failing_call("a.toml", &format!("{pub_b}@{dead}"));
    let psk = failing_call("wrong-psk.toml", &format!("{pub_b}@{addr_b}"));
    let identity = failing_call("a.toml", &format!("{pub_a}@{addr_b}"));
    eprintln!("down:     {down}wrong PSK: {psk}wrong id: {identity}");
    assert!(down.contains("no node is listening at"), "{down}");
    assert!(psk.contains("its mesh PSK differs"), "{psk}");
    assert!(
        identity.contains("did not answer") && identity.contains("public identity"),
        "{identity}"
    );
    for (a, b) in [(&down, &psk), (&psk, &identity), (&down, &identity)] {
        assert_ne!(a, b);
    }

    // The callee saw initiations naming another identity (mac1) at once,
    // and, once its half-open session expired, that the wrong-PSK caller
    // never confirmed its response.
    let log = || {
        node_b
            .stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    };
    net_testkit::eventually("the callee logs the wrong-identity attempts", || {
        let l = log();
        l.contains("handshake rejected") && l.contains("mac1 mismatch")
    });
    net_testkit::eventually("the callee logs the wrong-PSK attempt", || {
        log().contains("never confirmed our response")
    });
    assert!(node_b.stop("-TERM").success());
}

/// `len` pseudo-random bytes (xorshift64*, fixed seed): almost surely not
/// UTF-8, and any misplaced or lost piece shows.
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Asserts equal bodies without printing megabytes when they differ.
fn assert_same_body(got: &[u8], want: &[u8]) {
    let first_diff = got.iter().zip(want).position(|(a, b)| a != b);
    assert!(
        got.len() == want.len() && first_diff.is_none(),
        "got {} bytes, want {}; first difference at {first_diff:?}",
        got.len(),
        want.len()
    );
}

/// The 16 MiB limit on a request body (the default `max_message`).
const MAX_BODY: usize = net_proto::config::DEFAULT_MAX_MESSAGE as usize;
/// A body far over one packet: segmented both ways.
const TWO_MIB: usize = 2 << 20;

/// Node B of the quickstart, running; returns it, `call` arguments from A
/// to it (with a generous timeout for a loaded CI) and the temp dir.
fn echo_node(name: &str) -> (Node, Vec<String>, TempDir) {
    let d = TempDir::new(name);
    let [_, (pub_b, _)] = quickstart_files(&d);
    let node_b = Node::start(&d.0, "b.toml");
    let addr_b = field(
        &node_b.wait_line("net node listening on"),
        "net node listening on",
    );
    let call = [
        "call",
        "--config",
        "a.toml",
        "--timeout-ms",
        "20000",
        "--peer",
    ];
    let mut args: Vec<String> = call.iter().map(|s| s.to_string()).collect();
    args.push(format!("{pub_b}@{addr_b}"));
    (node_b, args, d)
}

fn with<'a>(base: &'a [String], more: &[&'a str]) -> Vec<&'a str> {
    base.iter()
        .map(String::as_str)
        .chain(more.iter().copied())
        .collect()
}

/// A 2 MiB body (far over a packet) goes out from `--data-file`, and the
/// echo comes back byte-exact in `--output`'s file; without `--output` the
/// binary reply is summarized, and `--output -` writes just the body.
#[test]
fn call_data_file_of_2_mib_echoes_byte_exact_to_output() {
    let (mut node_b, call, d) = echo_node("data-file");
    let body = noise(TWO_MIB);
    std::fs::write(d.path("body.bin"), &body).expect("write body");
    let args = with(&call, &["--data-file", "body.bin", "--output", "reply.bin"]);
    let out = ok(&d.0, &args);
    let written = format!("reply: {TWO_MIB} bytes written to reply.bin");
    assert!(out.lines().any(|l| l == written), "{out}");
    assert!(out.lines().any(|l| l.starts_with("rtt: ")), "{out}");
    assert_same_body(&std::fs::read(d.path("reply.bin")).expect("reply"), &body);

    let out = ok(&d.0, &with(&call, &["--data-file", "body.bin"]));
    let summary = format!("reply: <{TWO_MIB} bytes, not UTF-8; --output saves it>");
    assert!(
        out.lines().any(|l| l == summary),
        "{}",
        &out[..out.len().min(300)]
    );

    let o = net(&d.0, &with(&call, &["--data", "hello", "--output", "-"]));
    assert!(o.status.success(), "{}", o.stderr);
    assert_eq!(o.stdout, "hello", "the body alone, no newline");
    assert!(o.stderr.contains("rtt: "), "{}", o.stderr);
    assert!(node_b.stop("-TERM").success());
}

/// `--data-file -` reads the body from stdin to its end.
#[test]
fn call_data_file_dash_reads_2_mib_from_stdin() {
    let (mut node_b, call, d) = echo_node("stdin");
    let body = noise(TWO_MIB);
    let args = with(&call, &["--data-file", "-", "--output", "reply.bin"]);
    let out = ok_with(&d.0, &args, body.clone());
    assert!(
        out.contains(&format!("reply: {TWO_MIB} bytes written")),
        "{out}"
    );
    assert_same_body(&std::fs::read(d.path("reply.bin")).expect("reply"), &body);
    assert!(node_b.stop("-TERM").success());
}

/// A body over 16 MiB, from a file or from stdin, is refused before any
/// network: no node runs, yet the error names the limit, not the peer.
#[test]
fn call_refuses_a_body_over_16_mib_before_sending() {
    let d = TempDir::new("too-large");
    let dir = &d.0;
    let key = ok(dir, &["keygen", "--out", "a.seed"]);
    ok(dir, &["psk", "--out", "mesh.psk"]);
    d.write("a.toml", &config("127.0.0.1:0", "a.seed"), 0o600);
    let free = std::net::UdpSocket::bind("127.0.0.1:0").expect("probe");
    let peer = format!(
        "{}@{}",
        field(&key, "public identity"),
        free.local_addr().expect("addr")
    );
    drop(free);
    let big = std::fs::File::create(d.path("big.bin")).expect("create");
    big.set_len(MAX_BODY as u64 + 1).expect("sparse 16 MiB + 1");
    drop(big);
    let call = ["call", "--config", "a.toml", "--peer", &peer, "--data-file"];
    let limit = |err: &str| {
        assert!(
            err.contains("16777216-byte (16 MiB) limit")
                && err.contains("max_message")
                && err.contains("not sent"),
            "{err}"
        );
        assert!(!err.contains("listening"), "refused before the call: {err}");
    };
    let err = fails(dir, &[&call[..], &["big.bin"]].concat());
    limit(&err);
    assert!(err.contains("from big.bin"), "{err}");

    let o = run_bin_with(
        Path::new(NET),
        dir,
        &[&call[..], &["-"]].concat(),
        Some(vec![b'x'; MAX_BODY + 1]),
    );
    assert!(!o.status.success(), "{}", o.stdout);
    limit(&o.stderr);
    assert!(o.stderr.contains("from standard input"), "{}", o.stderr);
}

/// `--data` and `--data-file` together are a usage error (exit 2).
#[test]
fn call_data_and_data_file_together_is_a_usage_error() {
    let d = TempDir::new("conflict");
    let key = ok(&d.0, &["keygen", "--out", "a.seed"]);
    let peer = format!("{}@127.0.0.1:9", field(&key, "public identity"));
    let args = [
        "call",
        "--config",
        "a.toml",
        "--peer",
        &peer,
        "--data",
        "hi",
        "--data-file",
        "x.bin",
    ];
    let o = net(&d.0, &args);
    assert_eq!(o.status.code(), Some(2), "{}", o.stderr);
    assert!(
        o.stderr.contains("--data <DATA>") && o.stderr.contains("cannot be used with"),
        "{}",
        o.stderr
    );
    assert!(o.stderr.contains("--data-file <PATH>"), "{}", o.stderr);
}
