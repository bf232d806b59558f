//! Sliced measurement: raw UDP and nRPC measured in short alternating
//! stretches ("slices") on the same sockets and sessions, each nRPC slice
//! compared with the raw slice just before it.
//!
//! Why: on a shared machine the speed of the whole box moves by 2× within
//! minutes, so two long back-to-back runs (raw, then nRPC) compare two
//! different machines. Adjacent slices a few hundred milliseconds apart
//! see nearly the same machine; the ratio of each pair cancels the slow
//! drift, and the median over the pairs discards the pairs a burst of
//! foreign load hit on one side only.
//!
//! Each slice also records the CPU time the bench's processes ran in it
//! ([`cpu_time`]), so a pair compares the CPU cost per call of the two
//! systems: time a loaded machine keeps a process off the CPU is not in it,
//! which makes it the steadiest of the ratios (docs/BENCHMARKS.md).

use std::time::Duration;

use serde::Serialize;

use crate::PointResult;

/// CPU time that the live threads of this process and of the processes
/// `pids` have run so far (user and kernel), from
/// `/proc/<pid>/task/*/schedstat`. `None` if a process's thread list cannot
/// be read (not Linux, no such process). A thread that exits between the
/// listing and the read is skipped; its time then leaves the sum, so a
/// difference of two readings can be negative (see [`cpu_spent`]).
pub fn cpu_time(pids: &[u32]) -> Option<Duration> {
    let mut total = 0u64;
    let procs = pids.iter().map(|p| p.to_string());
    for p in procs.chain(std::iter::once("self".to_string())) {
        for task in std::fs::read_dir(format!("/proc/{p}/task")).ok()? {
            let Ok(task) = task else { continue };
            total += task_cpu_ns(&task.path().join("schedstat")).unwrap_or(0);
        }
    }
    Some(Duration::from_nanos(total))
}

/// CPU time between two [`cpu_time`] readings; `None` if either is missing
/// or a thread's exit made the second smaller.
pub fn cpu_spent(before: Option<Duration>, after: Option<Duration>) -> Option<Duration> {
    after?.checked_sub(before?)
}

/// The first field of a `schedstat` file: nanoseconds on a CPU.
fn task_cpu_ns(path: &std::path::Path) -> Option<u64> {
    let stat = std::fs::read_to_string(path).ok()?;
    stat.split_whitespace().next()?.parse().ok()
}

/// One system's figures in one slice.
#[derive(Clone, Debug, Serialize)]
pub struct SliceFigures {
    /// Completed calls (round trips) per second of the slice.
    pub qps: f64,
    /// Mean latency, µs. In a closed loop it is `conc / qps` (Little's
    /// law), so it moves with the work per call even when preemptions of a
    /// loaded machine decide the tail.
    pub mean_us: f64,
    /// Median latency, µs.
    pub p50_us: f64,
    /// 99th percentile, µs.
    pub p99_us: f64,
    /// Calls completed correctly in the slice.
    pub calls: u64,
    /// Calls failed, wrong or lost.
    pub errors: u64,
    /// CPU time of all the bench's processes over the whole slice (its
    /// unmeasured start included) per call completed in it, ns; `None` if
    /// CPU time could not be read.
    pub cpu_ns_per_call: Option<f64>,
}

impl SliceFigures {
    /// The figures of one slice's result; `cpu` is the CPU time spent over
    /// `span`, the slice's whole length. Calls over `span` are estimated
    /// from the rate of the measured part.
    pub fn of(r: &PointResult, cpu: Option<Duration>, span: Duration) -> Self {
        let calls_in_span = r.qps() * span.as_secs_f64();
        SliceFigures {
            cpu_ns_per_call: cpu
                .filter(|_| calls_in_span > 0.0)
                .map(|c| c.as_nanos() as f64 / calls_in_span),
            qps: r.qps(),
            mean_us: r.hist.mean() / 1000.0,
            p50_us: r.quantile_us(0.5),
            p99_us: r.quantile_us(0.99),
            calls: r.ok,
            errors: r.errors,
        }
    }
}

/// A raw slice and the slice of the system compared with it (an nRPC mode,
/// or the QUIC peer), measured right after it. Ratios are NaN
/// (`null` in JSON, left out of every [`Spread`]) when either slice
/// completed no call: a slice the machine starved says nothing about nRPC.
#[derive(Clone, Debug, Serialize)]
pub struct SlicePair {
    /// The raw-UDP slice.
    pub raw: SliceFigures,
    /// The compared system's slice.
    pub sys: SliceFigures,
    /// The system's CPU time per call / raw CPU time per round trip (the
    /// gate's regression detector).
    pub cpu_ratio: f64,
    /// nRPC mean latency / raw mean latency (a gate guard).
    pub mean_ratio: f64,
    /// nRPC p99 / raw p99 (a gate guard).
    pub p99_ratio: f64,
    /// nRPC p50 / raw p50.
    pub p50_ratio: f64,
    /// nRPC qps / raw qps.
    pub qps_ratio: f64,
}

impl SlicePair {
    /// Pairs two slices' figures.
    pub fn new(raw: SliceFigures, sys: SliceFigures) -> Self {
        let ratio = |a: f64, b: f64| {
            if raw.calls == 0 || sys.calls == 0 {
                f64::NAN
            } else {
                ratio(a, b)
            }
        };
        let cpu = match (sys.cpu_ns_per_call, raw.cpu_ns_per_call) {
            (Some(n), Some(r)) => ratio(n, r),
            _ => f64::NAN,
        };
        SlicePair {
            cpu_ratio: cpu,
            mean_ratio: ratio(sys.mean_us, raw.mean_us),
            p99_ratio: ratio(sys.p99_us, raw.p99_us),
            p50_ratio: ratio(sys.p50_us, raw.p50_us),
            qps_ratio: ratio(sys.qps, raw.qps),
            raw,
            sys,
        }
    }
}

/// `a / b`, or NaN when `b` is not positive (serialized as `null`).
fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        f64::NAN
    }
}

/// Order statistics of a set of ratios.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Spread {
    /// Middle value (mean of the middle two for an even count).
    pub median: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
    /// First quartile (linear interpolation between order statistics).
    pub q1: f64,
    /// Third quartile.
    pub q3: f64,
    /// `q3 - q1`.
    pub iqr: f64,
}

impl Spread {
    /// The spread of `values`, NaNs left out; `None` if none is left.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Self> {
        let mut v: Vec<f64> = values.into_iter().filter(|x| !x.is_nan()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let (q1, q3) = (quantile(&v, 0.25), quantile(&v, 0.75));
        Some(Spread {
            median: quantile(&v, 0.5),
            min: v[0],
            max: v[v.len() - 1],
            q1,
            q3,
            iqr: q3 - q1,
        })
    }
}

/// Quantile `q` of sorted, non-empty `v`: linear interpolation at position
/// `q * (n - 1)` (numpy's default), so `q = 0.5` is the usual median.
fn quantile(v: &[f64], q: f64) -> f64 {
    let pos = q * (v.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
}

/// Every pair of one point and one compared system, and the spread of
/// their ratios.
#[derive(Clone, Debug, Serialize)]
pub struct SliceSeries {
    /// The compared system: "nrpc engine", "nrpc sdk" or "quinn".
    pub system: String,
    /// Calls in flight.
    pub conc: usize,
    /// Payload bytes.
    pub payload: usize,
    /// Measured length of each slice, ms.
    pub slice_ms: u64,
    /// Unmeasured start of each slice, ms.
    pub slice_warmup_ms: u64,
    /// In the order measured.
    pub pairs: Vec<SlicePair>,
    /// Pairs left out of the spreads (a slice with no completed call).
    pub skipped: usize,
    /// Spread of the pairs' CPU-per-call ratios (gate: its median).
    pub cpu_ratio: Option<Spread>,
    /// Spread of raw's CPU time per round trip, ns.
    pub raw_cpu_ns_per_call: Option<Spread>,
    /// Spread of the system's CPU time per call, ns.
    pub sys_cpu_ns_per_call: Option<Spread>,
    /// Spread of the pairs' mean-latency ratios (gate: its median).
    pub mean_ratio: Option<Spread>,
    /// Spread of the pairs' p99 ratios (gate: its median).
    pub p99_ratio: Option<Spread>,
    /// Spread of the pairs' p50 ratios.
    pub p50_ratio: Option<Spread>,
    /// Spread of the pairs' qps ratios.
    pub qps_ratio: Option<Spread>,
}

impl SliceSeries {
    /// The series of `system`'s `pairs` measured at (`conc`, `payload`).
    pub fn new(
        system: &str,
        conc: usize,
        payload: usize,
        slice_ms: u64,
        slice_warmup_ms: u64,
        pairs: Vec<SlicePair>,
    ) -> Self {
        SliceSeries {
            system: system.into(),
            conc,
            payload,
            slice_ms,
            slice_warmup_ms,
            skipped: pairs.iter().filter(|p| p.p99_ratio.is_nan()).count(),
            cpu_ratio: Spread::of(pairs.iter().map(|p| p.cpu_ratio)),
            raw_cpu_ns_per_call: Spread::of(
                pairs
                    .iter()
                    .filter_map(|p| p.raw.cpu_ns_per_call.filter(|_| !p.cpu_ratio.is_nan())),
            ),
            sys_cpu_ns_per_call: Spread::of(
                pairs
                    .iter()
                    .filter_map(|p| p.sys.cpu_ns_per_call.filter(|_| !p.cpu_ratio.is_nan())),
            ),
            mean_ratio: Spread::of(pairs.iter().map(|p| p.mean_ratio)),
            p99_ratio: Spread::of(pairs.iter().map(|p| p.p99_ratio)),
            p50_ratio: Spread::of(pairs.iter().map(|p| p.p50_ratio)),
            qps_ratio: Spread::of(pairs.iter().map(|p| p.qps_ratio)),
            pairs,
        }
    }
}

/// Folds one slice's result into a point's running total (the merged
/// histogram and counts stand for the point in the main table).
pub fn merge(total: &mut PointResult, slice: &PointResult) -> Result<(), String> {
    total.hist.add(&slice.hist).map_err(|e| e.to_string())?;
    total.ok += slice.ok;
    total.errors += slice.errors;
    total.elapsed += slice.elapsed;
    total.stalled |= slice.stalled;
    total.refused_sends += slice.refused_sends;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_of_an_odd_count_takes_the_middle_value() {
        let s = Spread::of([3.0, 1.0, 2.0, 5.0, 4.0]).expect("values");
        assert_eq!(s.median, 3.0);
        assert_eq!((s.min, s.max), (1.0, 5.0));
        assert_eq!((s.q1, s.q3, s.iqr), (2.0, 4.0, 2.0));
    }

    #[test]
    fn spread_of_an_even_count_interpolates() {
        let s = Spread::of([4.0, 1.0, 3.0, 2.0]).expect("values");
        assert_eq!(s.median, 2.5);
        assert_eq!((s.q1, s.q3), (1.75, 3.25));
    }

    #[test]
    fn spread_leaves_out_nan_and_is_none_when_empty() {
        let s = Spread::of([f64::NAN, 2.0]).expect("one value");
        assert_eq!((s.median, s.min, s.max, s.iqr), (2.0, 2.0, 2.0, 0.0));
        assert_eq!(Spread::of([f64::NAN]), None);
        assert_eq!(Spread::of([]), None);
    }

    #[test]
    fn one_outlying_pair_does_not_move_the_median_far() {
        // Nine pairs near 0.5 and one where a burst of load hit nRPC only.
        let mut v = vec![0.48, 0.5, 0.52, 0.49, 0.51, 0.5, 0.47, 0.53, 0.5];
        v.push(9.0);
        let s = Spread::of(v).expect("values");
        assert_eq!(s.median, 0.5);
        assert_eq!(s.max, 9.0);
    }

    #[test]
    fn a_pair_divides_nrpc_by_raw() {
        let mut raw = PointResult::new();
        let mut nrpc = PointResult::new();
        for _ in 0..100 {
            raw.record(Duration::from_micros(100), true);
            nrpc.record(Duration::from_micros(50), true);
        }
        raw.elapsed = Duration::from_secs(1);
        nrpc.elapsed = Duration::from_millis(500);
        let span = Duration::from_secs(2);
        // raw: 100 calls/s over 2 s, 1 ms CPU -> 5 µs per call; nRPC: 200
        // calls/s, 1 ms CPU -> 2.5 µs per call.
        let cpu = Some(Duration::from_millis(1));
        let p = SlicePair::new(
            SliceFigures::of(&raw, cpu, span),
            SliceFigures::of(&nrpc, cpu, span),
        );
        assert!((p.p99_ratio - 0.5).abs() < 0.01, "{}", p.p99_ratio);
        assert!((p.qps_ratio - 2.0).abs() < 1e-9, "{}", p.qps_ratio);
        assert!((p.mean_ratio - 0.5).abs() < 0.01, "{}", p.mean_ratio);
        assert_eq!(p.raw.cpu_ns_per_call, Some(5000.0));
        assert!((p.cpu_ratio - 0.5).abs() < 1e-9, "{}", p.cpu_ratio);
        let unknown = SlicePair::new(
            SliceFigures::of(&raw, None, span),
            SliceFigures::of(&nrpc, cpu, span),
        );
        assert!(unknown.cpu_ratio.is_nan() && !unknown.p99_ratio.is_nan());
    }

    #[test]
    fn a_starved_slice_on_either_side_is_left_out() {
        let mut full = PointResult::new();
        full.record(Duration::from_micros(100), true);
        full.elapsed = Duration::from_millis(250);
        let mut empty = PointResult::new();
        empty.elapsed = Duration::from_millis(250);
        let fig = |r: &PointResult| {
            SliceFigures::of(
                r,
                Some(Duration::from_millis(1)),
                Duration::from_millis(275),
            )
        };
        assert_eq!(fig(&empty).cpu_ns_per_call, None);
        let pairs = vec![
            SlicePair::new(fig(&full), fig(&full)),
            SlicePair::new(fig(&empty), fig(&full)),
            SlicePair::new(fig(&full), fig(&empty)),
        ];
        for p in &pairs[1..] {
            assert!(p.p99_ratio.is_nan() && p.mean_ratio.is_nan() && p.qps_ratio.is_nan());
            assert!(p.cpu_ratio.is_nan());
        }
        let s = SliceSeries::new("nrpc engine", 128, 32, 250, 25, pairs);
        assert_eq!(s.skipped, 2);
        assert_eq!(s.p99_ratio.map(|s| s.median), Some(1.0));
        assert_eq!(s.cpu_ratio.map(|s| s.median), Some(1.0));
    }

    #[test]
    fn a_thread_s_cpu_time_grows_with_work() {
        // This thread's own counter: other test threads may come and go.
        let me = std::path::Path::new("/proc/thread-self/schedstat");
        let before = task_cpu_ns(me).expect("schedstat readable on Linux");
        // Fixed work (tens of ms, several scheduler ticks), not a clock.
        let mut x = 0u64;
        for i in 0..50_000_000u64 {
            x = std::hint::black_box(x.wrapping_add(i));
        }
        let after = task_cpu_ns(me).expect("schedstat readable on Linux");
        assert!(after > before, "{before} -> {after}");
    }

    #[test]
    fn cpu_time_needs_every_process_and_spent_needs_both_readings() {
        assert!(cpu_time(&[]).is_some());
        assert_eq!(cpu_time(&[u32::MAX]), None, "an unknown pid is an error");
        let (a, b) = (Duration::from_millis(5), Duration::from_millis(7));
        assert_eq!(cpu_spent(Some(a), Some(b)), Some(Duration::from_millis(2)));
        assert_eq!(cpu_spent(Some(b), Some(a)), None, "a thread exited");
        assert_eq!(cpu_spent(None, Some(b)), None);
    }
}
