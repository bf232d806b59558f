//! `net`: keys, configuration checks, a node serving `echo` and `stats`,
//! one-shot calls, and the benchmark launcher. Run `net help` for usage.
#![forbid(unsafe_code)]

use std::ffi::OsString;
use std::io::IsTerminal;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use net::{Bytes, CallOptions, CoreStats, Identity, Mesh, MeshError, PublicIdentity, RpcError};
use net::{IncomingCall, ServeHandle, Status};
use net_cli::config::{self, ConfigError, NodeConfig};
use net_proto::CallKind;
use tracing_subscriber::{reload, EnvFilter};

/// Net: encrypted, capability-gated RPC between the nodes of a mesh.
///
/// Quickstart: `net keygen --out a.seed`, `net psk --out mesh.psk`, write a
/// config (see docs/node.example.toml), `net node --config a.toml`. Logs go
/// to stderr, filtered by RUST_LOG (else the config's `log`, else `info` for
/// `net node` and `warn` for the other commands).
#[derive(Parser, Debug)]
#[command(name = "net", version)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

/// `ID@ADDR` as given on the command line.
#[derive(Clone, Debug)]
struct Peer {
    identity: PublicIdentity,
    addr: SocketAddr,
}

const PEER_HELP: &str = "The peer as PUBLIC_IDENTITY@ADDR: its public identity (64 hex, what \
    `net id --public` or `net keygen` print), `@`, its listen address, e.g. \
    3b6a…c1@127.0.0.1:7002. A node id is not enough: it is a hash of the public \
    identity, and connecting needs the key itself";

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Create an identity: a 32-byte random seed in a new file (mode 0600,
    /// never overwritten); prints its node id and public identity.
    Keygen {
        /// Where to write the seed.
        #[arg(long, default_value = "identity.seed")]
        out: PathBuf,
    },
    /// Create a mesh PSK: 64 random hex characters in a new file (mode 0600).
    /// Every node of a mesh uses the same PSK (`psk_file` in the config).
    Psk {
        /// Where to write the PSK.
        #[arg(long, default_value = "mesh.psk")]
        out: PathBuf,
    },
    /// Print the node id and public identity of a seed file (refused if its
    /// mode is looser than 0600).
    Id {
        /// The seed file.
        path: PathBuf,
        /// Print only the public identity (what peers put in `--peer` and
        /// `[[peers]]`).
        #[arg(long)]
        public: bool,
    },
    /// Validate a config file and the files it names; print a summary.
    Check {
        /// The node's TOML config (see docs/node.example.toml).
        #[arg(long)]
        config: PathBuf,
    },
    /// Run a node serving the built-in `echo` and `stats` services until
    /// Ctrl-C or SIGTERM, then shut down gracefully.
    Node {
        /// The node's TOML config (see docs/node.example.toml).
        #[arg(long)]
        config: PathBuf,
    },
    /// Call a service on a peer once (or --count times); prints the reply and
    /// the round-trip time. Uses the config's identity and PSK on an
    /// ephemeral port, so it can run beside a node using the same config.
    Call {
        #[command(flatten)]
        client: ClientArgs,
        /// Service name.
        #[arg(long, default_value = "echo")]
        service: String,
        #[command(flatten)]
        body: BodyArgs,
        /// Write the (first) response body byte-exact to this file (`-`:
        /// standard output, and the RTT lines go to standard error). Without
        /// it the reply is printed if it is UTF-8 of at most 4 KiB, else
        /// summarized as `<N bytes …>`.
        #[arg(long, value_name = "PATH")]
        output: Option<PathBuf>,
        /// Number of calls (the first includes the handshake).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        count: u32,
    },
    /// Print a peer's per-core counters (JSON), from its built-in `stats` service.
    Stats {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Run the `nrpc_qps` benchmark (found next to this executable) with
    /// these arguments, e.g. `net bench --conc 1,16 --payload 32`.
    Bench {
        /// Arguments for nrpc_qps (`net bench --help` shows this help;
        /// `net bench -- --help` shows nrpc_qps's).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
}

#[derive(clap::Args, Debug)]
struct ClientArgs {
    /// TOML config providing this side's identity and the mesh PSK.
    #[arg(long)]
    config: PathBuf,
    #[arg(long, value_parser = parse_peer, help = PEER_HELP)]
    peer: Peer,
    /// Address to bind (default: the config's listen IP, port 0).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Give up after this many milliseconds (including the handshake).
    #[arg(long, default_value_t = 5000)]
    timeout_ms: u64,
}

/// Where `net call`'s request body comes from (empty if neither is given).
#[derive(clap::Args, Debug)]
struct BodyArgs {
    /// Request body (UTF-8 text). Bodies larger than a packet are segmented;
    /// the limit is the peer's `max_message` (16 MiB by default).
    #[arg(long, conflicts_with = "data_file")]
    data: Option<String>,
    /// Read the request body (raw bytes) from this file; `-` reads standard
    /// input to its end. Refused before sending if it is over 16 MiB (the
    /// default `max_message`).
    #[arg(long, value_name = "PATH")]
    data_file: Option<PathBuf>,
}

/// Largest request body `net call` sends: the `max_message` a peer accepts
/// by default (one configured lower refuses with PAYLOAD_TOO_LARGE).
const MAX_BODY: u64 = net_proto::config::DEFAULT_MAX_MESSAGE as u64;

/// Longest reply `net call` prints as text without `--output`; longer or
/// non-UTF-8 replies are summarized on one line.
const PRINT_MAX: usize = 4096;

fn parse_peer(s: &str) -> Result<Peer, String> {
    let (id, addr) = s
        .split_once('@')
        .ok_or("expected PUBLIC_IDENTITY@ADDR (no `@` found)")?;
    let identity = id.parse().map_err(|_| {
        "the part before `@` must be the peer's public identity: 64 hex characters as \
         `net id --public` prints (a node id will not do)"
            .to_string()
    })?;
    let addr = addr.parse().map_err(|e| {
        format!("the part after `@` must be a socket address such as 127.0.0.1:7001: {e}")
    })?;
    Ok(Peer { identity, addr })
}

#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Mesh(#[from] MeshError),
    #[error(transparent)]
    Crypto(#[from] net_crypto::CryptoError),
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("log filter {0}")]
    Log(String),
    #[error("{what} {}: {source}", .path.display())]
    File {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the request body from {0} is over the {MAX_BODY}-byte (16 MiB) limit, the largest \
         message a peer accepts by default (max_message); not sent"
    )]
    BodyTooLarge(String),
    #[error("{0}")]
    Call(String),
    #[error(
        "nrpc_qps was not found next to this executable (looked for {}). From the \
         repository, run `cargo run --release -p net-bench --bin nrpc_qps -- ARGS`, or build \
         it beside `net` with `cargo build --release -p net-bench --bin nrpc_qps`",
        .0.display()
    )]
    BenchMissing(PathBuf),
}

fn io_err(what: &'static str) -> impl FnOnce(std::io::Error) -> CliError {
    move |source| CliError::Io { what, source }
}

/// `println!` that ignores a closed stdout (`net … | head` must not panic).
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

type Reload = reload::Handle<EnvFilter, tracing_subscriber::Registry>;

/// Logs to stderr. `RUST_LOG` wins; otherwise `default` until a config's
/// `log` replaces it (see [`apply_config_log`]).
fn init_logging(default: &str) -> Result<Option<Reload>, CliError> {
    use tracing_subscriber::prelude::*;
    let env = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty());
    let filter = EnvFilter::try_new(env.as_deref().unwrap_or(default))
        .map_err(|e| CliError::Log(format!("RUST_LOG: {e}")))?;
    let (layer, handle) = reload::Layer::new(filter);
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    let _ = tracing_subscriber::registry()
        .with(layer)
        .with(fmt)
        .try_init();
    Ok(env.is_none().then_some(handle))
}

fn apply_config_log(reload: &Option<Reload>, cfg: &NodeConfig) -> Result<(), CliError> {
    if let (Some(handle), Some(log)) = (reload, &cfg.file.log) {
        let filter = EnvFilter::try_new(log).map_err(|e| CliError::Log(e.to_string()))?;
        let _ = handle.reload(filter);
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.cmd) {
        Ok(code) => code,
        Err(e) => {
            use std::io::Write as _;
            let _ = writeln!(std::io::stderr(), "net: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cmd: Cmd) -> Result<ExitCode, CliError> {
    let default_log = if matches!(cmd, Cmd::Node { .. }) {
        "info"
    } else {
        "warn"
    };
    let reload = init_logging(default_log)?;
    match cmd {
        Cmd::Keygen { out } => keygen(&out)?,
        Cmd::Psk { out } => psk(&out)?,
        Cmd::Id { path, public } => print_identity(&config::read_identity(&path)?, public),
        Cmd::Check { config } => check(&config)?,
        Cmd::Node { config } => node(&config, &reload)?,
        Cmd::Call {
            client,
            service,
            body,
            output,
            count,
        } => {
            // Before any network: a refused body sends nothing.
            let data = read_body(body)?;
            let to = output.as_deref();
            call(&client, &reload, &service, &data, count, to)?;
        }
        Cmd::Stats { client } => stats(&client, &reload)?,
        Cmd::Bench { args } => return bench(args),
    }
    Ok(ExitCode::SUCCESS)
}

fn print_identity(id: &Identity, public_only: bool) {
    if public_only {
        out!("{}", id.public());
    } else {
        out!("node id          {}", id.node_id());
        out!("public identity  {}", id.public());
    }
}

fn keygen(out: &Path) -> Result<(), CliError> {
    let id = Identity::generate()?;
    config::create_secret_file(out, id.seed().as_ref())?;
    out!("wrote identity seed to {} (mode 0600)", out.display());
    print_identity(&id, false);
    Ok(())
}

fn psk(out: &Path) -> Result<(), CliError> {
    // A fresh identity's seed is 32 bytes from the OS CSPRNG (ring).
    let random = Identity::generate()?.seed();
    let mut text = zeroize::Zeroizing::new(hex::encode(random.as_ref()));
    text.push('\n');
    config::create_secret_file(out, text.as_bytes())?;
    out!(
        "wrote mesh PSK to {} (mode 0600); share it only with mesh nodes",
        out.display()
    );
    Ok(())
}

fn load(path: &Path, reload: &Option<Reload>) -> Result<NodeConfig, CliError> {
    let cfg = NodeConfig::load(path)?;
    apply_config_log(reload, &cfg)?;
    Ok(cfg)
}

fn check(path: &Path) -> Result<(), CliError> {
    let cfg = NodeConfig::load(path)?;
    let f = &cfg.file;
    out!("{}: OK", path.display());
    print_identity(&cfg.identity, false);
    out!("identity seed    {}", cfg.identity_path.display());
    let listen = f
        .listen
        .map_or("127.0.0.1:0 (default)".into(), |a| a.to_string());
    out!("listen           {listen}");
    out!("cores            {}", f.cores.unwrap_or(1));
    let driver = f
        .driver
        .map_or("default (NET_DRIVER, else auto)".into(), |d| d.to_string());
    out!("driver           {driver}");
    out!(
        "spin             {} µs",
        f.spin_us.unwrap_or(config::DEFAULT_SPIN_US)
    );
    out!("peers            {}", f.peers.len());
    out!("warnings         {}", cfg.warnings.len());
    Ok(())
}

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(io_err("starting the async runtime"))
}

/// Waits for SIGINT (Ctrl-C) or SIGTERM; returns the signal's name.
async fn wait_for_signal(
    mut int: tokio::signal::unix::Signal,
    mut term: tokio::signal::unix::Signal,
) -> &'static str {
    std::future::poll_fn(|cx| {
        if int.poll_recv(cx).is_ready() {
            return Poll::Ready("SIGINT");
        }
        if term.poll_recv(cx).is_ready() {
            return Poll::Ready("SIGTERM");
        }
        Poll::Pending
    })
    .await
}

fn node(path: &Path, reload: &Option<Reload>) -> Result<(), CliError> {
    let cfg = load(path, reload)?;
    let rt = runtime()?;
    rt.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        // Handlers first: a signal that arrives once we are ready is ours.
        let int = signal(SignalKind::interrupt()).map_err(io_err("installing a SIGINT handler"))?;
        let term =
            signal(SignalKind::terminate()).map_err(io_err("installing a SIGTERM handler"))?;
        let mesh = Mesh::builder().node_config(cfg.mesh_config()).build()?;
        let services = serve_builtins(&mesh)?;
        mesh.start()?;
        print_banner(&mesh, &cfg);
        let sig = wait_for_signal(int, term).await;
        tracing::info!("{sig}: shutting down");
        drop(services);
        mesh.shutdown(Duration::from_secs(2))?;
        out!("stopped");
        Ok(())
    })
}

fn print_banner(mesh: &Mesh, cfg: &NodeConfig) {
    let addr = mesh.local_addr().map_or("?".into(), |a| a.to_string());
    let (driver, aead) = mesh.describe();
    let spin = cfg.file.spin_us.unwrap_or(config::DEFAULT_SPIN_US);
    out!("net node listening on {addr}");
    print_identity(&cfg.identity, false);
    out!(
        "driver {driver} · aead {aead} · cores {} · spin {spin} µs then park",
        cfg.file.cores.unwrap_or(1)
    );
    out!(
        "serving echo, stats; peers reach it with --peer {}@{addr}",
        cfg.identity.public()
    );
    out!("press Ctrl-C to stop");
}

/// Serves `echo` (inline on the cores) and `stats`.
fn serve_builtins(mesh: &Mesh) -> Result<[ServeHandle; 2], MeshError> {
    let echo = mesh.serve_rpc("echo", |_info, body, out| {
        out.extend_from_slice(body);
        Status::OK
    })?;
    Ok([echo, serve_stats(mesh)?])
}

/// Bytes of the stats document per stream message: each fits one packet
/// (~1.2 KB at the default datagram size), so none needs segmenting; the
/// document is ~2.5 KB per core.
const STATS_CHUNK: usize = 1024;
/// Most stats bytes `net stats` accepts from a peer.
const STATS_MAX: usize = 4 << 20;

/// `stats`: a server-streaming service sending the per-core counters as one
/// JSON document in [`STATS_CHUNK`]-byte pieces. Asking the cores for their
/// counters blocks (and would deadlock on a core), so it runs on tokio's
/// blocking pool.
fn serve_stats(mesh: &Mesh) -> Result<ServeHandle, MeshError> {
    // Weak: the handler lives inside the node; a strong ref would keep it alive.
    let node = Arc::downgrade(mesh.engine());
    let rt = tokio::runtime::Handle::current();
    mesh.serve_stream("stats", move |call: IncomingCall| {
        let r = call.responder;
        if call.info.kind != CallKind::ServerStream {
            let msg = b"stats is served as a stream of JSON pieces: use `net stats`";
            answer(&r, Status::OK, msg.to_vec());
            return None;
        }
        let node = node.clone();
        rt.spawn(async move {
            let doc = tokio::task::spawn_blocking(move || {
                let node = node.upgrade()?;
                Some(
                    serde_json::json!({
                        "node_id": node.node_id().to_string(),
                        "driver": node.driver().map(|d| d.to_string()),
                        "aead": node.aead(),
                        "cores": node.stats().iter().map(core_json).collect::<Vec<_>>(),
                    })
                    .to_string(),
                )
            })
            .await;
            let Ok(Some(doc)) = doc else {
                return answer(&r, Status::UNAVAILABLE, Vec::new());
            };
            for chunk in doc.as_bytes().chunks(STATS_CHUNK) {
                // Waits for stream credit; fails only if the caller left.
                if r.send(chunk.to_vec()).await.is_err() {
                    return;
                }
            }
            answer(&r, Status::OK, Vec::new());
        });
        None
    })
}

/// Answers a stats call; only this service answers it, once.
fn answer(r: &net::Responder, status: Status, body: Vec<u8>) {
    if let Err(e) = r.respond(status, body) {
        tracing::debug!(error = %e, "stats answer not sent");
    }
}

macro_rules! fields {
    ($s:expr; $($f:ident),* $(,)?) => {{
        let mut m = serde_json::Map::new();
        $( m.insert(stringify!($f).into(), serde_json::Value::from($s.$f)); )*
        serde_json::Value::Object(m)
    }};
}

fn core_json(s: &CoreStats) -> serde_json::Value {
    let io = fields!(s.io; syscalls, rx_batches, rx_datagrams, tx_batches, tx_datagrams,
        gso_sends, parks, wakes, rx_errors, tx_errors, downgrades, tx_waits);
    let p = fields!(s.proto; datagrams_rx, datagrams_tx, bytes_rx, bytes_tx, data_packets_rx,
        data_packets_tx, ack_only_tx, handshake_init_tx, handshake_resp_tx, handshakes_completed,
        drop_malformed, drop_unknown_index, drop_replay, drop_decrypt, drop_not_ready,
        handshake_mac1, handshake_invalid_identity, handshake_decrypt,
        handshake_identity_mismatch, handshake_replay, handshake_overloaded, handshake_peer_limit,
        handshake_table_full, handshake_rate_limited, cookie_replies_tx, cookie_replies_dropped,
        cookie_replies_rx, handshake_malformed, handshake_unknown_index, protocol_violations,
        stream_bytes_buffered, stream_bytes_buffered_peak, stream_bytes_discarded, packets_lost,
        ptos, frames_retransmitted, key_updates, duplicate_requests, calls_not_found,
        calls_backpressure, calls_cancelled, requests_delivered, calls_completed,
        sessions_closed, sessions_evicted, resets_tx, resets_rate_limited, resets_not_ours,
        resets_rx, resets_invalid, handshake_duplicates, handshake_unconfirmed,
        handshake_rejects_unreported, keepalives_tx, detector_full);
    let t = fields!(s.trust; verified, malformed, oversize, unknown_version, node_id_mismatch,
        bad_signature, expired, future, ttl_too_long, stale, batch_verifies, gate_denied,
        gate_allowed, reservation_rejected, token_rejected, wrong_class, own_entry, fold_full,
        batch_fallbacks, over_quota, fold_evicted, provider_grants_evicted, no_trusted_provider);
    let mut c = fields!(s; core, loops, parks, inbox_wakes, commands, inline_handled,
        async_handled, calls_completed, calls_refused, reconnects, open_calls, handler_panics,
        handlers_unanswered, handlers_busy, stream_msgs_dropped, streams_incomplete,
        answers_skipped, announces_skipped, credit_reports_late, replies_unheard, core_panics);
    if let serde_json::Value::Object(m) = &mut c {
        m.insert("driver".into(), s.driver.clone().into());
        m.insert("io".into(), io);
        m.insert("proto".into(), p);
        m.insert("trust".into(), t);
    }
    c
}

/// A transient node for one-shot calls: the config's identity and PSK, one
/// core, an ephemeral port, and the peer.
fn client(args: &ClientArgs, reload: &Option<Reload>) -> Result<Mesh, CliError> {
    let cfg = load(&args.config, reload)?;
    let ip = cfg
        .file
        .listen
        .map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |a| a.ip());
    let bind = args.listen.unwrap_or(SocketAddr::new(ip, 0));
    let mc = cfg
        .mesh_config()
        .with_listen(bind)
        .with_cores(1)
        .with_cpus(Vec::new())
        .with_peer(args.peer.addr, args.peer.identity);
    let mesh = Mesh::builder().node_config(mc).build()?;
    mesh.start()?;
    Ok(mesh)
}

/// Time kept back from `--timeout-ms` to tell a dead address from a
/// silent one after a handshake got no answer ([`nothing_listens`]).
const PROBE: Duration = Duration::from_millis(100);

/// Whether nothing listens at `addr`: a datagram to it draws an ICMP port
/// unreachable (`ECONNREFUSED` on a connected socket) within [`PROBE`].
/// `false` if anything (or nothing) else happens, e.g. a firewall or a host
/// that is down altogether. Only run after a failed handshake: a live node
/// counts the probe byte as a malformed datagram.
fn nothing_listens(addr: SocketAddr) -> bool {
    let local: SocketAddr = if addr.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let Ok(s) = std::net::UdpSocket::bind(local) else {
        return false;
    };
    let sent = s.connect(addr).and_then(|()| s.send(&[0]));
    let refused = |e: std::io::Error| e.kind() == std::io::ErrorKind::ConnectionRefused;
    match sent {
        Err(e) => refused(e),
        Ok(_) => {
            s.set_read_timeout(Some(PROBE)).is_ok()
                && s.recv(&mut [0u8; 1]).err().is_some_and(refused)
        }
    }
}

/// The message for a failed call: what went wrong, and what to check.
fn call_error(e: RpcError, args: &ClientArgs, service: &str) -> CliError {
    use net::{Cause, HandshakeError};
    let (addr, ms) = (args.peer.addr, args.timeout_ms);
    let why = match (&e, e.cause()) {
        (_, Some(Cause::Handshake(HandshakeError::NoAnswer { attempts }))) => {
            if nothing_listens(addr) {
                format!("no node is listening at {addr} (connection refused): is it running?")
            } else {
                format!(
                    "{addr} did not answer {attempts} handshake attempt(s) within {ms} ms: \
                     a node there answers only initiations naming its own public identity — \
                     is {} the identity of the node at {addr} (`net id --public`, not its node \
                     id)? Otherwise the host is down or a firewall drops UDP",
                    args.peer.identity
                )
            }
        }
        (_, Some(Cause::Handshake(HandshakeError::WrongPsk))) => format!(
            "the node at {addr} answered, but the handshake did not authenticate: its mesh PSK \
             differs from the one in {}",
            args.config.display()
        ),
        (_, Some(Cause::Handshake(HandshakeError::CookieLoop { .. }))) => format!(
            "the node at {addr} is under load and kept answering with cookies within {ms} ms; \
             retry later"
        ),
        (_, Some(cause @ (Cause::PeerDown | Cause::PeerReset))) => format!("{cause}"),
        (_, Some(Cause::Deadline)) => format!(
            "no answer within {ms} ms: the call reached the peer, whose handler did not answer \
             in time"
        ),
        (_, Some(cause)) => format!("{cause}"),
        (RpcError::Status { status, .. }, None) => match *status {
            Status::NOT_FOUND => format!("the peer does not serve `{service}`"),
            Status::PAYLOAD_TOO_LARGE => "a body over its receiver's max_message (16 MiB by \
                default): the request over the peer's, or the response over ours"
                .into(),
            s => format!("the peer answered {s}"),
        },
        (e, None) => e.to_string(),
    };
    CliError::Call(format!("call to `{service}` failed: {why}"))
}

/// The engine's deadline for a call: `--timeout-ms` less the time a
/// failure diagnosis may take, so the whole command ends within it.
fn call_deadline(args: &ClientArgs) -> Duration {
    let total = Duration::from_millis(args.timeout_ms);
    total.saturating_sub(PROBE).max(total / 2)
}

/// Bounds `fut` by `--timeout-ms` on this side too: the engine's deadline
/// does not cover a handshake that never completes.
async fn bounded<T>(
    args: &ClientArgs,
    fut: impl std::future::Future<Output = Result<T, RpcError>>,
) -> Result<T, RpcError> {
    let limit = Duration::from_millis(args.timeout_ms);
    tokio::time::timeout(limit, fut)
        .await
        .unwrap_or(Err(RpcError::Failed {
            status: Status::TIMEOUT,
            cause: net::Cause::Deadline,
        }))
}

/// The request body: `--data`'s text, or `--data-file`'s bytes (`-`: stdin),
/// at most [`MAX_BODY`] bytes.
fn read_body(body: BodyArgs) -> Result<Vec<u8>, CliError> {
    let Some(path) = body.data_file else {
        let data = body.data.unwrap_or_default().into_bytes();
        if data.len() as u64 > MAX_BODY {
            return Err(CliError::BodyTooLarge("--data".into()));
        }
        return Ok(data);
    };
    if path == Path::new("-") {
        return read_bounded(std::io::stdin().lock(), "standard input", &path);
    }
    let file_err = |source| CliError::File {
        what: "--data-file",
        path: path.clone(),
        source,
    };
    let file = std::fs::File::open(&path).map_err(file_err)?;
    let name = path.display().to_string();
    // A regular file's size is known: refuse it without reading it.
    let meta = file.metadata().map_err(file_err)?;
    if meta.is_file() && meta.len() > MAX_BODY {
        return Err(CliError::BodyTooLarge(name));
    }
    read_bounded(file, &name, &path)
}

/// Reads `r` to its end, but stops and fails once it is over [`MAX_BODY`].
fn read_bounded(r: impl std::io::Read, name: &str, path: &Path) -> Result<Vec<u8>, CliError> {
    use std::io::Read as _;
    let mut data = Vec::new();
    r.take(MAX_BODY + 1)
        .read_to_end(&mut data)
        .map_err(|source| CliError::File {
            what: "--data-file",
            path: path.to_path_buf(),
            source,
        })?;
    if data.len() as u64 > MAX_BODY {
        return Err(CliError::BodyTooLarge(name.into()));
    }
    Ok(data)
}

/// A status line of `net call`: on stdout, unless the reply goes there.
fn note(to_stderr: bool, line: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    if to_stderr {
        // A status line; if stderr is gone there is nowhere left to say so.
        let _ = writeln!(std::io::stderr(), "{line}");
    } else {
        out!("{line}");
    }
}

/// The reply: byte-exact to `--output` (`-`: stdout), else printed as text
/// if it is short UTF-8 and summarized otherwise.
fn emit_reply(reply: &[u8], output: Option<&Path>) -> Result<(), CliError> {
    use std::io::Write as _;
    let Some(path) = output else {
        match std::str::from_utf8(reply) {
            Ok(text) if reply.len() <= PRINT_MAX => out!("reply: {text}"),
            Ok(_) => out!("reply: <{} bytes of text; --output saves it>", reply.len()),
            Err(_) => out!(
                "reply: <{} bytes, not UTF-8; --output saves it>",
                reply.len()
            ),
        }
        return Ok(());
    };
    let file_err = |source| CliError::File {
        what: "--output",
        path: path.to_path_buf(),
        source,
    };
    if path == Path::new("-") {
        let mut stdout = std::io::stdout().lock();
        return stdout
            .write_all(reply)
            .and_then(|()| stdout.flush())
            .map_err(file_err);
    }
    std::fs::write(path, reply).map_err(file_err)?;
    out!("reply: {} bytes written to {}", reply.len(), path.display());
    Ok(())
}

fn call(
    args: &ClientArgs,
    reload: &Option<Reload>,
    service: &str,
    data: &[u8],
    count: u32,
    output: Option<&Path>,
) -> Result<(), CliError> {
    let to_stderr = output == Some(Path::new("-"));
    let mesh = client(args, reload)?;
    let peer = args.peer.identity.node_id();
    let opts = CallOptions {
        deadline: Some(call_deadline(args)),
    };
    let rt = runtime()?;
    // One copy, shared by every repetition.
    let data = Bytes::copy_from_slice(data);
    let result = rt.block_on(async {
        for i in 1..=count {
            let t = Instant::now();
            let reply = bounded(args, mesh.call_with(peer, service, data.clone(), opts)).await;
            let rtt = t.elapsed();
            let reply = reply.map_err(|e| call_error(e, args, service))?;
            if i == 1 {
                emit_reply(&reply, output)?;
            }
            let first = if i == 1 {
                " (includes the handshake)"
            } else {
                ""
            };
            let ms = rtt.as_secs_f64() * 1e3;
            note(to_stderr, format_args!("rtt: {ms:.3} ms{first}"));
        }
        Ok(())
    });
    let _ = mesh.shutdown(Duration::from_millis(500));
    result
}

async fn fetch_stats(mesh: &Mesh, args: &ClientArgs) -> Result<Vec<u8>, RpcError> {
    let opts = CallOptions {
        deadline: Some(call_deadline(args)),
    };
    let peer = args.peer.identity.node_id();
    let mut s = mesh.call_server_stream(peer, "stats", Vec::new(), opts)?;
    let mut doc = Vec::new();
    while let Some(piece) = s.next().await {
        if doc.len() + piece.len() > STATS_MAX {
            return Err(RpcError::Status {
                status: Status::PAYLOAD_TOO_LARGE,
                payload: Bytes::new(),
            });
        }
        doc.extend_from_slice(&piece);
    }
    s.finish().await?;
    Ok(doc)
}

fn stats(args: &ClientArgs, reload: &Option<Reload>) -> Result<(), CliError> {
    let mesh = client(args, reload)?;
    let rt = runtime()?;
    let reply = rt.block_on(bounded(args, fetch_stats(&mesh, args)));
    let _ = mesh.shutdown(Duration::from_millis(500));
    let reply = reply.map_err(|e| call_error(e, args, "stats"))?;
    match serde_json::from_slice::<serde_json::Value>(&reply) {
        Ok(v) => out!("{v:#}"),
        Err(_) => out!("{}", String::from_utf8_lossy(&reply)),
    }
    Ok(())
}

fn bench(args: Vec<OsString>) -> Result<ExitCode, CliError> {
    let exe = std::env::current_exe().map_err(io_err("finding this executable"))?;
    let bin = exe.with_file_name("nrpc_qps");
    if !bin.is_file() {
        return Err(CliError::BenchMissing(bin));
    }
    let status = std::process::Command::new(&bin)
        .args(args)
        .status()
        .map_err(io_err("running nrpc_qps"))?;
    let code = status.code().unwrap_or(1);
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}
