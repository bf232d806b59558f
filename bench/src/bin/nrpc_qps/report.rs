//! What `nrpc_qps` prints: the progress line of each point, the main table
//! (and its JSON records), and the slice spreads.

use net_bench::slices::{SlicePair, SliceSeries, Spread};
use net_bench::{Point, PointResult, Record, Skip};

/// One system's result at one point: its figures, or why it was skipped.
pub(crate) type Outcome = Result<PointResult, String>;

/// One stderr line per point as it ends (`[i/n] system point: figures`), so
/// a sweep shows it is alive, with a warning when the machine was busy with
/// other work meanwhile (`load`, from [`LoadProbe::verdict`]); the table on
/// stdout is unchanged.
pub(crate) fn progress(
    system: &str,
    i: usize,
    n: usize,
    p: &Point,
    r: &Outcome,
    load: Option<String>,
) {
    let what = match r {
        Ok(r) => format!(
            "{:.0} calls/s, p50 {:.1} µs, p99 {:.1} µs, {} errors, CPU {} s per million calls",
            r.qps(),
            r.quantile_us(0.5),
            r.quantile_us(0.99),
            r.errors,
            cpu_cell(Some(r))
        ),
        Err(why) => format!("skipped: {why}"),
    };
    eprintln!("nrpc_qps: [{}/{n}] {system} {}: {what}", i + 1, p.name());
    if let Some(w) = load {
        eprintln!("nrpc_qps: WARNING: {system} {}: {w}", p.name());
    }
}

/// Prints each point's slice-ratio spreads and the pairs' gate ratios.
pub(crate) fn print_slices(series: &[SliceSeries]) {
    let show_p = |s: &Option<Spread>, p: usize| {
        s.as_ref().map_or("-".to_string(), |s| {
            format!(
                "median {:.p$} (min {:.p$}, q1 {:.p$}, q3 {:.p$}, max {:.p$}, IQR {:.p$})",
                s.median, s.min, s.q1, s.q3, s.max, s.iqr
            )
        })
    };
    let show = |s: &Option<Spread>| show_p(s, 3);
    for s in series {
        println!(
            "slices c{}/{}B: {} pairs of {} ms (+{} ms warm-up each), {} left out (a starved slice)",
            s.conc,
            s.payload,
            s.pairs.len(),
            s.slice_ms,
            s.slice_warmup_ms,
            s.skipped
        );
        println!("  CPU per call ratio {}", show(&s.cpu_ratio));
        println!(
            "  raw CPU ns per round trip {}",
            show(&s.raw_cpu_ns_per_call)
        );
        println!("  nRPC CPU ns per call {}", show(&s.nrpc_cpu_ns_per_call));
        println!("  mean latency ratio {}", show(&s.mean_ratio));
        println!("  p99 ratio {}", show(&s.p99_ratio));
        println!("  p50 ratio {}", show(&s.p50_ratio));
        println!("  qps ratio {}", show(&s.qps_ratio));
        let each = |f: fn(&SlicePair) -> f64| {
            let v: Vec<String> = s.pairs.iter().map(|p| format!("{:.2}", f(p))).collect();
            v.join(" ")
        };
        println!("  CPU per call ratio per pair: {}", each(|p| p.cpu_ratio));
        println!("  mean latency ratio per pair: {}", each(|p| p.mean_ratio));
        println!("  p99 ratio per pair: {}", each(|p| p.p99_ratio));
    }
}

pub(crate) fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}", a / b)
    } else {
        "-".into()
    }
}

/// CPU seconds per million calls, or "-" where not measured.
pub(crate) fn cpu_cell(r: Option<&PointResult>) -> String {
    r.and_then(PointResult::cpu_s_per_million)
        .map_or("-".into(), |c| format!("{c:.2}"))
}

/// Prints the main table and the reasons of skipped points; returns the
/// JSON records and skips.
pub(crate) fn table(
    pts: &[Point],
    raw: &[Outcome],
    nrpc: &[Outcome],
    drv: &str,
    mode: &str,
) -> (Vec<Record>, Vec<Skip>) {
    println!("| conc | payload | raw qps | nrpc qps | qps ratio | raw p50 µs | nrpc p50 µs | p50 ratio | raw p99 µs | nrpc p99 µs | p99 ratio | nrpc p99.9 µs | errors | raw CPU s/M calls | nrpc CPU s/M calls |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut records = Vec::new();
    let mut skips = Vec::new();
    for (i, p) in pts.iter().enumerate() {
        let r = raw.get(i).and_then(|r| r.as_ref().ok());
        let rq = r.map_or(0.0, |r| r.qps());
        let (r50, r99) = r.map_or((0.0, 0.0), |r| (r.quantile_us(0.5), r.quantile_us(0.99)));
        if let Some(r) = r {
            records.push(Record::new("raw", drv, "raw", p, r));
        }
        let n = match &nrpc[i] {
            Ok(n) => n,
            Err(_) => {
                println!(
                    "| {} | {} B | {} | skipped | - | {} | - | - | {} | - | - | - | - | {} | - |",
                    p.conc,
                    p.payload,
                    r.map_or("-".into(), |_| format!("{rq:.0}")),
                    r.map_or("-".into(), |_| format!("{r50:.1}")),
                    r.map_or("-".into(), |_| format!("{r99:.1}")),
                    cpu_cell(r),
                );
                continue;
            }
        };
        println!(
            "| {} | {} B | {:.0} | {:.0} | {} | {:.1} | {:.1} | {} | {:.1} | {:.1} | {} | {:.1} | {} | {} | {} |",
            p.conc,
            p.payload,
            rq,
            n.qps(),
            ratio(n.qps(), rq),
            r50,
            n.quantile_us(0.5),
            ratio(n.quantile_us(0.5), r50),
            r99,
            n.quantile_us(0.99),
            ratio(n.quantile_us(0.99), r99),
            n.quantile_us(0.999),
            n.errors,
            cpu_cell(r),
            cpu_cell(Some(n)),
        );
        records.push(Record::new("nrpc", drv, mode, p, n));
    }
    for (system, outcomes) in [("raw", raw), ("nrpc", nrpc)] {
        for (p, o) in pts.iter().zip(outcomes) {
            if let Err(why) = o {
                println!("skipped {system} {}: {why}", p.name());
                skips.push(Skip::new(system, p, why));
            }
        }
    }
    (records, skips)
}

/// Prints the c1 floor (busy-poll ping-pong) beside the raw baseline's and
/// nRPC's c1 figures of the same run; returns its JSON records.
pub(crate) fn floor_table(
    floor: &[(Point, Outcome)],
    pts: &[Point],
    raw: &[Outcome],
    nrpc: &[Outcome],
    mode: &str,
) -> Vec<Record> {
    if floor.is_empty() {
        return Vec::new();
    }
    println!();
    println!("c1 floor: a plain busy-poll UDP ping-pong (std sockets, non-blocking recv_from/send_to, one datagram in flight)");
    println!("| payload | floor round trips/s | floor p50 µs | floor p99 µs | raw p50 µs | nrpc {mode} p50 µs | raw p50 ÷ floor | nrpc {mode} p50 ÷ floor |");
    println!("|---|---|---|---|---|---|---|---|");
    let mut records = Vec::new();
    for (p, f) in floor {
        let Ok(f) = f else { continue };
        let at = pts
            .iter()
            .position(|q| q.conc == p.conc && q.payload == p.payload);
        let p50 = |o: Option<&Outcome>| o.and_then(|o| o.as_ref().ok()).map(|r| r.quantile_us(0.5));
        let (r50, n50) = (
            p50(at.and_then(|i| raw.get(i))),
            p50(at.and_then(|i| nrpc.get(i))),
        );
        let f50 = f.quantile_us(0.5);
        let show = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.1}"));
        let of = |v: Option<f64>| v.map_or("-".into(), |v| ratio(v, f50));
        println!(
            "| {} B | {:.0} | {f50:.1} | {:.1} | {} | {} | {} | {} |",
            p.payload,
            f.qps(),
            f.quantile_us(0.99),
            show(r50),
            show(n50),
            of(r50),
            of(n50),
        );
        records.push(Record::new("pingpong", "std", "pingpong", p, f));
    }
    records
}

/// When both modes ran: what a user of the public API gets as a share of
/// what the engine does, point by point (the same raw baseline under both).
pub(crate) fn sdk_vs_engine(pts: &[Point], engine: &[Outcome], sdk: &[Outcome]) {
    println!();
    println!(
        "| conc | payload | engine qps | sdk qps | sdk ÷ engine | engine p50 µs | sdk p50 µs |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (i, p) in pts.iter().enumerate() {
        let (Some(Ok(e)), Some(Ok(s))) = (engine.get(i), sdk.get(i)) else {
            continue;
        };
        println!(
            "| {} | {} B | {:.0} | {:.0} | {} | {:.1} | {:.1} |",
            p.conc,
            p.payload,
            e.qps(),
            s.qps(),
            ratio(s.qps(), e.qps()),
            e.quantile_us(0.5),
            s.quantile_us(0.5),
        );
    }
}
