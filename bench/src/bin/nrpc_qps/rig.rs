//! The systems of a run, all up at once, and the interleaved measurement
//! of a point: round after round, one short slice of each system in turn
//! (raw, then each nRPC mode, then the QUIC peer), so the machine's drift
//! lands on every system alike and each ratio is taken between slices a
//! few hundred milliseconds apart (`net_bench::slices`).

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use net_bench::slices::{cpu_spent, cpu_time, merge, SliceFigures};
use net_bench::{pin, quic, raw, Point, PointResult};

use super::client::NrpcClient;
use super::report::Outcome;
use super::servers::{start_server, Role, Server};
use super::{check, driver, fail, refused, Args, Mode, Peer};

/// What a system is, for labels and JSON records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The raw-UDP echo baseline.
    Raw,
    /// nRPC, calls issued in this mode.
    Nrpc(Mode),
    /// The QUIC peer (`--system quinn`).
    Quinn,
}

impl Kind {
    /// "raw", "nrpc engine", "nrpc sdk" or "quinn".
    pub(crate) fn label(self) -> String {
        match self {
            Kind::Nrpc(m) => format!("nrpc {}", m.name()),
            _ => self.system().into(),
        }
    }

    /// The JSON record's `system`.
    pub(crate) fn system(self) -> &'static str {
        match self {
            Kind::Raw => "raw",
            Kind::Nrpc(_) => "nrpc",
            Kind::Quinn => "quinn",
        }
    }

    /// The JSON record's `mode`.
    pub(crate) fn mode(self) -> &'static str {
        match self {
            Kind::Raw => "raw",
            Kind::Nrpc(m) => m.name(),
            Kind::Quinn => "quic",
        }
    }
}

/// One system's client side.
enum Client {
    Raw {
        client: raw::Client,
        addr: SocketAddr,
        never: AtomicBool,
    },
    Nrpc(NrpcClient),
    Quinn(quic::Client),
}

/// A system of the run: what it is and its client.
pub(crate) struct Sys {
    kind: Kind,
    client: Client,
}

impl Sys {
    /// What this system is.
    pub(crate) fn kind(&self) -> Kind {
        self.kind
    }

    /// The nRPC client's loss counters, if this is one (a diagnostic).
    pub(crate) fn loss_line(&self) -> Option<String> {
        match &self.client {
            Client::Nrpc(c) => Some(c.loss_line()),
            _ => None,
        }
    }

    /// Why this system cannot carry point `p`, if it cannot.
    fn skip(&self, p: &Point) -> Option<String> {
        match &self.client {
            Client::Raw { .. } => super::raw_skip(p),
            Client::Nrpc(c) => c.skip_reason(p.payload),
            Client::Quinn(_) => None,
        }
    }

    /// One stretch of `p`; a stretch with no completion is returned, not
    /// fatal (a loaded machine may starve a slice).
    fn run(&mut self, p: &Point) -> PointResult {
        match &mut self.client {
            Client::Raw {
                client,
                addr,
                never,
            } => client
                .run(p, *addr, never)
                .unwrap_or_else(|e| fail(&format!("raw {}: {e}", p.name()))),
            Client::Nrpc(c) => c.run_unchecked(p),
            Client::Quinn(c) => c
                .run(p)
                .unwrap_or_else(|e| fail(&format!("quinn {}: {e}", p.name()))),
        }
    }
}

/// One point's measurement: per system (in the rig's order) its merged
/// result or why it was skipped, and its figures round by round (empty for
/// a skipped system).
pub(crate) struct PointRun {
    pub(crate) outcomes: Vec<Outcome>,
    pub(crate) rounds: Vec<Vec<SliceFigures>>,
}

/// Every server and client of the run, kept open from the first point to
/// the last (each parks while another is measured).
pub(crate) struct Rig {
    systems: Vec<Sys>,
    /// The server child processes, whose CPU time is read with ours.
    pids: Vec<u32>,
    _servers: Vec<Server>,
}

impl Rig {
    /// Starts the servers and connects the clients: the raw baseline
    /// (unless `--no-baseline`), one nRPC client per `--mode`, the QUIC
    /// peer with `--system quinn`.
    pub(crate) fn start(args: &Args) -> Rig {
        let mut servers = Vec::new();
        let mut systems = Vec::new();
        pin(Some(args.client_cpu));
        if !args.no_baseline {
            let (server, addr) = start_server(args, Role::Raw);
            servers.push(server);
            let client =
                raw::Client::open(args.bind, driver(args)).unwrap_or_else(|e| fail(&e.to_string()));
            let never = AtomicBool::new(false);
            let client = Client::Raw {
                client,
                addr,
                never,
            };
            systems.push(Sys {
                kind: Kind::Raw,
                client,
            });
        }
        if args.runs(Peer::Nrpc) {
            let (server, addr) = start_server(args, Role::Nrpc);
            servers.push(server);
            for &m in &args.mode {
                let client = Client::Nrpc(NrpcClient::start(args, addr, m));
                systems.push(Sys {
                    kind: Kind::Nrpc(m),
                    client,
                });
            }
        }
        if args.runs(Peer::Quinn) {
            let (server, addr) = start_server(args, Role::Quinn);
            servers.push(server);
            let client = quic::Client::connect(args.bind, addr, Some(args.client_cpu))
                .unwrap_or_else(|e| fail(&format!("QUIC peer at {addr}: {e}")));
            systems.push(Sys {
                kind: Kind::Quinn,
                client: Client::Quinn(client),
            });
        }
        let pids = servers.iter().filter_map(Server::pid).collect();
        Rig {
            systems,
            pids,
            _servers: servers,
        }
    }

    /// The systems, in the order they are measured.
    pub(crate) fn systems(&self) -> &[Sys] {
        &self.systems
    }

    /// The server child processes.
    pub(crate) fn pids(&self) -> &[u32] {
        &self.pids
    }

    /// (driver, AEAD) of the first nRPC client, or of the QUIC peer.
    pub(crate) fn describe(&self) -> (String, String) {
        let mut out = (String::new(), String::new());
        for s in self.systems.iter().rev() {
            match &s.client {
                Client::Nrpc(c) => out = c.describe(),
                Client::Quinn(c) if out.0.is_empty() => out = ("-".into(), c.describe()),
                _ => {}
            }
        }
        out
    }

    /// Measures point `p` on every system: with `--slices N`, one
    /// unmeasured warm-up stretch per system, then N rounds of one slice
    /// per system; with `--slices 0`, one round of one `--duration-ms`
    /// stretch per system. The CPU time of the bench's processes is read
    /// around every slice.
    pub(crate) fn measure(&mut self, args: &Args, p: &Point) -> PointRun {
        let (slice, rounds) = slicing(args, p);
        let skips: Vec<Option<String>> = self.systems.iter().map(|s| s.skip(p)).collect();
        if args.slices > 0 {
            let warm = Point {
                warmup: p.warmup,
                ..slice.clone()
            };
            for (s, skip) in self.systems.iter_mut().zip(&skips) {
                if skip.is_none() {
                    s.run(&warm);
                }
            }
        }
        let n = self.systems.len();
        let mut totals: Vec<PointResult> = (0..n).map(|_| PointResult::new()).collect();
        let mut figures: Vec<Vec<SliceFigures>> = vec![Vec::new(); n];
        let mut cpu_sum: Vec<Option<Duration>> = vec![Some(Duration::ZERO); n];
        let span = slice.warmup + slice.duration;
        for _ in 0..rounds {
            for (i, s) in self.systems.iter_mut().enumerate() {
                if skips[i].is_some() {
                    continue;
                }
                let t0 = cpu_time(&self.pids);
                let r = s.run(&slice);
                let cpu = cpu_spent(t0, cpu_time(&self.pids));
                merge(&mut totals[i], &r).unwrap_or_else(|e| fail(&e));
                figures[i].push(SliceFigures::of(&r, cpu, span));
                // The measured part's share of the slice's CPU time.
                let measured =
                    cpu.map(|c| c.mul_f64(slice.duration.as_secs_f64() / span.as_secs_f64()));
                cpu_sum[i] = cpu_sum[i].zip(measured).map(|(a, b)| a + b);
            }
        }
        let outcomes = (0..n)
            .map(|i| {
                if let Some(why) = skips[i].clone() {
                    return Err(why);
                }
                let mut total = std::mem::take(&mut totals[i]);
                total.cpu = cpu_sum[i];
                self.verdict(i, p, total)
            })
            .collect();
        PointRun {
            outcomes,
            rounds: figures,
        }
    }

    /// A system's merged result at `p`: a raw baseline whose every send the
    /// kernel refused is skipped with the reason; any system that completed
    /// no call in any round ends the run.
    fn verdict(&self, i: usize, p: &Point, total: PointResult) -> Outcome {
        let kind = self.systems[i].kind;
        if kind == Kind::Raw {
            if let Some(why) = refused(&total) {
                return Err(why);
            }
        }
        check(p, &kind.label(), &total);
        Ok(total)
    }
}

/// The stretch each system runs per round at `p`, and how many rounds.
fn slicing(args: &Args, p: &Point) -> (Point, usize) {
    if args.slices == 0 {
        return (p.clone(), 1);
    }
    let slice = Point {
        duration: Duration::from_millis(args.slice_ms),
        warmup: Duration::from_millis(args.slice_warmup_ms),
        ..p.clone()
    };
    (slice, args.slices)
}
