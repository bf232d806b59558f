//! Net benchmarks: `nrpc_qps` (engine vs a same-run raw-UDP baseline) and
//! its building blocks. Criterion micro-benches live in `benches/`.
#![forbid(unsafe_code)]

pub mod bulk;
pub mod handshake;
pub mod load;
pub mod nrpc;
pub mod pingpong;
pub mod plot;
pub mod quic;
pub mod raw;
pub mod relay;
pub mod slices;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

static GRO: AtomicBool = AtomicBool::new(true);
static SPIN_YIELD: AtomicBool = AtomicBool::new(true);

/// Sets whether the nodes this process starts afterwards yield while they
/// spin (`nrpc_qps --spin-yield`; `MeshNodeConfig::with_spin_yield`).
pub fn set_spin_yield(on: bool) {
    SPIN_YIELD.store(on, Ordering::Relaxed);
}

/// `cfg` with the process's node settings: its driver configuration
/// ([`driver_config`]) and spin yield ([`set_spin_yield`]).
pub fn tune(cfg: net_engine::MeshNodeConfig) -> net_engine::MeshNodeConfig {
    cfg.with_driver_config(driver_config())
        .with_spin_yield(SPIN_YIELD.load(Ordering::Relaxed))
}

/// Turns UDP GRO on or off for every driver this process opens afterwards:
/// the raw baseline's and the nodes' alike, so the two always share one
/// driver configuration (`nrpc_qps --gro`).
pub fn set_gro(on: bool) {
    GRO.store(on, Ordering::Relaxed);
}

/// The driver configuration of every driver the bench opens: the default,
/// with GRO as [`set_gro`] left it.
pub fn driver_config() -> net_io::DriverConfig {
    net_io::DriverConfig {
        gro: GRO.load(Ordering::Relaxed),
        ..net_io::DriverConfig::default()
    }
}

/// A point with no progress for this long fails the run (never a livelock).
pub const STALL: Duration = Duration::from_secs(20);

/// One measurement point.
#[derive(Clone, Debug)]
pub struct Point {
    /// Calls (or datagrams) in flight.
    pub conc: usize,
    /// Request and response body size in bytes.
    pub payload: usize,
    /// Measured stretch.
    pub duration: Duration,
    /// Unmeasured stretch before it.
    pub warmup: Duration,
    /// Loop spin before parking (0 = park at once).
    pub spin: Duration,
    /// Open loop: calls per second.
    pub rate: Option<f64>,
}

impl Point {
    /// `c128/32B`-style name used in messages.
    pub fn name(&self) -> String {
        format!("c{}/{}B", self.conc, self.payload)
    }
}

/// What one run of one point measured.
#[derive(Clone, Debug)]
pub struct PointResult {
    /// Latencies in nanoseconds.
    pub hist: Histogram<u64>,
    /// Calls answered correctly.
    pub ok: u64,
    /// Calls failed, wrong, or lost.
    pub errors: u64,
    /// Length of the measured stretch.
    pub elapsed: Duration,
    /// No progress for [`STALL`].
    pub stalled: bool,
    /// Datagrams the kernel refused to send (raw baseline; nRPC counts
    /// its own). Zero where not counted.
    pub refused_sends: u64,
    /// CPU time of every bench process over the measured stretch (see
    /// [`load::CpuWindow`]); `None` where not measured.
    pub cpu: Option<Duration>,
}

impl PointResult {
    /// Empty result.
    pub fn new() -> Self {
        PointResult {
            hist: Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds"),
            ok: 0,
            errors: 0,
            elapsed: Duration::ZERO,
            stalled: false,
            refused_sends: 0,
            cpu: None,
        }
    }

    /// Records one completed call.
    pub fn record(&mut self, latency: Duration, good: bool) {
        if good {
            self.ok += 1;
            let _ = self.hist.record((latency.as_nanos() as u64).max(1));
        } else {
            self.errors += 1;
        }
    }

    /// Calls per second over the measured stretch.
    pub fn qps(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s > 0.0 {
            self.ok as f64 / s
        } else {
            0.0
        }
    }

    /// CPU seconds of the bench's processes per million completed calls.
    pub fn cpu_s_per_million(&self) -> Option<f64> {
        let cpu = self.cpu?.as_secs_f64();
        (self.ok > 0).then(|| cpu * 1e6 / self.ok as f64)
    }

    /// A point measured by several closed-loop tasks: their counts and
    /// histograms summed, `elapsed` the point's measured time; the first
    /// task's error if any failed.
    pub fn of_tasks(
        tasks: impl IntoIterator<Item = Result<PointResult, String>>,
        elapsed: Duration,
    ) -> Result<Self, String> {
        let mut out = PointResult::new();
        for r in tasks {
            let r = r?;
            out.ok += r.ok;
            out.errors += r.errors;
            out.hist.add(&r.hist).map_err(|e| e.to_string())?;
        }
        out.elapsed = elapsed;
        Ok(out)
    }

    /// Latency quantile in microseconds.
    pub fn quantile_us(&self, q: f64) -> f64 {
        self.hist.value_at_quantile(q) as f64 / 1000.0
    }
}

impl Default for PointResult {
    fn default() -> Self {
        Self::new()
    }
}

/// One closed-loop caller of the SDK and QUIC load generators: calls back
/// to back until `end`, each body `payload` bytes (at least 8) whose first
/// 8 carry `t << 32 | i` (unique per call), and records the calls that end
/// from `measure_from` on, good if the reply equals the body. `call` makes
/// one call: `Ok(Some(reply))`, `Ok(None)` for a failed call (counted as an
/// error), or `Err` to end the task. Two clock reads per call: a call
/// starts when the previous one ended.
pub async fn closed_loop<F, Fut, R>(
    t: u64,
    payload: usize,
    measure_from: std::time::Instant,
    end: std::time::Instant,
    mut call: F,
) -> Result<PointResult, String>
where
    F: FnMut(&[u8]) -> Fut,
    Fut: std::future::Future<Output = Result<Option<R>, String>>,
    R: AsRef<[u8]>,
{
    let mut r = PointResult::new();
    let mut body = vec![0x5a; payload.max(8)];
    let mut i = 0u64;
    let mut sent = std::time::Instant::now();
    while sent < end {
        body[..8].copy_from_slice(&(t << 32 | i).to_be_bytes());
        i += 1;
        let reply = call(&body).await?;
        let now = std::time::Instant::now();
        if now >= measure_from {
            let good = reply.is_some_and(|b| b.as_ref() == &body[..]);
            r.record(now - sent, good);
        }
        sent = now;
    }
    Ok(r)
}

/// One JSON record: (system, driver, mode, conc, payload) → figures.
#[derive(Clone, Debug, Serialize)]
pub struct Record {
    /// "nrpc", "raw" or "handshake" (then `conc` is the client's slots,
    /// `payload` 0 and `qps` handshakes per second).
    pub system: String,
    /// Driver kind.
    pub driver: String,
    /// "engine" or "sdk" (raw: "raw").
    pub mode: String,
    /// Calls in flight.
    pub conc: usize,
    /// Payload bytes.
    pub payload: usize,
    /// Open-loop offered rate, if any.
    pub rate: Option<f64>,
    /// Completed calls per second.
    pub qps: f64,
    /// Median latency, µs.
    pub p50_us: f64,
    /// 99th percentile, µs.
    pub p99_us: f64,
    /// 99.9th percentile, µs.
    pub p999_us: f64,
    /// Calls completed correctly in the measured stretch.
    pub calls: u64,
    /// Calls failed, wrong or lost.
    pub errors: u64,
    /// CPU seconds of all the bench's processes (client and server) per
    /// million calls over the measured stretch, if measured.
    pub cpu_s_per_million: Option<f64>,
    /// Latency at each of [`CURVE_QUANTILES`] (HDR percentile curve).
    pub latency_curve: Vec<Quantile>,
}

/// The quantiles of a record's latency curve, p50 to p99.99.
pub const CURVE_QUANTILES: [f64; 9] = [0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9995, 0.9999];

/// One point of a latency percentile curve.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Quantile {
    /// The quantile, in (0, 1).
    pub q: f64,
    /// Latency at it, µs.
    pub us: f64,
}

impl Record {
    /// A record for `system` from a point's result.
    pub fn new(system: &str, driver: &str, mode: &str, point: &Point, r: &PointResult) -> Self {
        Record {
            system: system.into(),
            driver: driver.into(),
            mode: mode.into(),
            conc: point.conc,
            payload: point.payload,
            rate: point.rate,
            qps: r.qps(),
            p50_us: r.quantile_us(0.5),
            p99_us: r.quantile_us(0.99),
            p999_us: r.quantile_us(0.999),
            calls: r.ok,
            errors: r.errors,
            cpu_s_per_million: r.cpu_s_per_million(),
            latency_curve: CURVE_QUANTILES
                .iter()
                .map(|&q| Quantile {
                    q,
                    us: r.quantile_us(q),
                })
                .collect(),
        }
    }
}

/// Where the numbers were taken.
#[derive(Clone, Debug, Serialize)]
pub struct Host {
    /// Online CPUs.
    pub cores: usize,
    /// `uname -r`.
    pub kernel: String,
    /// CPU model name.
    pub cpu: String,
    /// AEAD backend string, e.g. `chacha20-poly1305/ring/avx2`.
    pub aead: String,
    /// Unix time of the run.
    pub unix_time: u64,
}

impl Host {
    /// Reads the host description.
    pub fn detect(aead: &str) -> Self {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let cpu = read("/proc/cpuinfo")
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            })
            .unwrap_or_default();
        Host {
            // Online CPUs, not this (possibly pinned) thread's parallelism.
            cores: read("/proc/cpuinfo")
                .lines()
                .filter(|l| l.starts_with("processor"))
                .count()
                .max(1),
            kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
            cpu,
            aead: aead.to_string(),
            unix_time: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        }
    }
}

/// The JSON document `--json` writes.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Where.
    pub host: Host,
    /// The command line.
    pub command: String,
    /// One per (system, driver, mode, conc, payload).
    pub records: Vec<Record>,
    /// `--slices N`: every slice pair of every point (absent otherwise).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub slices: Vec<slices::SliceSeries>,
    /// Points a system did not measure, with the reason (absent if none).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped_points: Vec<Skip>,
}

/// A point one system did not measure (a body its path cannot carry, say),
/// and why.
#[derive(Clone, Debug, Serialize)]
pub struct Skip {
    /// "nrpc" or "raw".
    pub system: String,
    /// Calls in flight.
    pub conc: usize,
    /// Payload bytes.
    pub payload: usize,
    /// Why, in a sentence.
    pub reason: String,
}

impl Skip {
    /// `system` skipped `point` for `reason`.
    pub fn new(system: &str, point: &Point, reason: &str) -> Self {
        Skip {
            system: system.into(),
            conc: point.conc,
            payload: point.payload,
            reason: reason.into(),
        }
    }
}

/// Pins the calling thread to `cpu`. The CPU is set directly, not looked up
/// among the CPUs this thread may use now: a child process inherits its
/// parent's (possibly pinned) mask and must still be able to move.
pub fn pin(cpu: Option<usize>) {
    if let Some(id) = cpu {
        if !core_affinity::set_for_current(core_affinity::CoreId { id }) {
            eprintln!("nrpc_qps: could not pin to CPU {id}");
        }
    }
}
