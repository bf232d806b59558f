//! What `nrpc_qps` prints: the progress line of each point, the main table
//! (and its JSON records), and the slice spreads.

use net_bench::slices::{SliceSeries, Spread};
use net_bench::{Point, PointResult, Record, Skip};

use super::rig::Kind;

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

/// Prints one row per compared system and point: the spreads over the
/// rounds of its ratios to the raw slice of the same round.
pub(crate) fn print_series(series: &[SliceSeries]) {
    let Some(first) = series.first() else {
        return;
    };
    println!();
    println!(
        "Per-round ratios to raw: median (min–max) over {} rounds of {} ms slices (+{} ms warm-up each); CPU is the bench's processes' CPU time per call",
        first.pairs.len(),
        first.slice_ms,
        first.slice_warmup_ms
    );
    println!("| conc | payload | system | qps ratio | p50 ratio | p99 ratio | CPU per call ratio | rounds left out |");
    println!("|---|---|---|---|---|---|---|---|");
    for s in series {
        println!(
            "| {} | {} B | {} | {} | {} | {} | {} | {} |",
            s.conc,
            s.payload,
            s.system,
            spread_cell(&s.qps_ratio),
            spread_cell(&s.p50_ratio),
            spread_cell(&s.p99_ratio),
            spread_cell(&s.cpu_ratio),
            s.skipped
        );
    }
}

/// "median (min–max)", or "-".
pub(crate) fn spread_cell(s: &Option<Spread>) -> String {
    s.as_ref().map_or("-".into(), |s| {
        format!("{:.2} ({:.2}–{:.2})", s.median, s.min, s.max)
    })
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

/// Prints the table of system `kind` against the raw baseline and the
/// reasons of skipped points; returns the JSON records (raw's too with
/// `with_raw`, so they are written once) and skips.
pub(crate) fn table(
    pts: &[Point],
    raw: &[Outcome],
    sys: &[Outcome],
    drv: &str,
    kind: Kind,
    with_raw: bool,
) -> (Vec<Record>, Vec<Skip>) {
    let name = kind.label();
    println!("| conc | payload | raw qps | {name} qps | qps ratio | raw p50 µs | {name} p50 µs | p50 ratio | raw p99 µs | {name} p99 µs | p99 ratio | {name} p99.9 µs | errors | raw CPU s/M calls | {name} CPU s/M calls |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut records = Vec::new();
    for (i, p) in pts.iter().enumerate() {
        let r = raw.get(i).and_then(|r| r.as_ref().ok());
        if let (Some(r), true) = (r, with_raw) {
            records.push(Record::new("raw", drv, "raw", p, r));
        }
        let n = sys.get(i).and_then(|n| n.as_ref().ok());
        println!("{}", row(p, r, n));
        if let Some(n) = n {
            records.push(Record::new(kind.system(), drv, kind.mode(), p, n));
        }
    }
    let mut skips = Vec::new();
    let mut both = vec![(name.as_str(), sys)];
    if with_raw {
        both.insert(0, ("raw", raw));
    }
    for (system, outcomes) in both {
        for (p, o) in pts.iter().zip(outcomes) {
            if let Err(why) = o {
                println!("skipped {system} {}: {why}", p.name());
                skips.push(Skip::new(system, p, why));
            }
        }
    }
    (records, skips)
}

/// One row of [`table`]; "-" or "skipped" where a side has no figures.
fn row(p: &Point, r: Option<&PointResult>, n: Option<&PointResult>) -> String {
    let f = |x: Option<&PointResult>, q: f64| {
        x.map_or("-".into(), |x| format!("{:.1}", x.quantile_us(q)))
    };
    let qps = |x: Option<&PointResult>| x.map_or("-".into(), |x| format!("{:.0}", x.qps()));
    let rel = |g: fn(&PointResult) -> f64| match (n, r) {
        (Some(n), Some(r)) => ratio(g(n), g(r)),
        _ => "-".into(),
    };
    format!(
        "| {} | {} B | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
        p.conc,
        p.payload,
        qps(r),
        n.map_or("skipped".into(), |n| format!("{:.0}", n.qps())),
        rel(PointResult::qps),
        f(r, 0.5),
        f(n, 0.5),
        rel(|x| x.quantile_us(0.5)),
        f(r, 0.99),
        f(n, 0.99),
        rel(|x| x.quantile_us(0.99)),
        f(n, 0.999),
        n.map_or("-".into(), |n| n.errors.to_string()),
        cpu_cell(r),
        cpu_cell(n),
    )
}

/// Prints the c1 floor (busy-poll ping-pong) beside the c1 p50 of the raw
/// baseline and of every compared system `sys` (label, outcomes) of the
/// same run; returns its JSON records.
pub(crate) fn floor_table(
    floor: &[(Point, Outcome)],
    pts: &[Point],
    raw: &[Outcome],
    sys: &[(String, &[Outcome])],
) -> Vec<Record> {
    if floor.is_empty() {
        return Vec::new();
    }
    println!();
    println!("c1 floor: a plain busy-poll UDP ping-pong (std sockets, non-blocking recv_from/send_to, one datagram in flight); p50 µs (÷ floor)");
    let all: Vec<(&str, &[Outcome])> = std::iter::once(("raw", raw))
        .chain(sys.iter().map(|(l, o)| (l.as_str(), *o)))
        .collect();
    let names: Vec<&str> = all.iter().map(|(l, _)| *l).collect();
    println!(
        "| payload | floor round trips/s | floor p50 µs | floor p99 µs | {} |",
        names.join(" | ")
    );
    println!("|---|---|---|---|{}", "---|".repeat(all.len()));
    let mut records = Vec::new();
    for (p, f) in floor {
        let Ok(f) = f else { continue };
        let at = pts
            .iter()
            .position(|q| q.conc == p.conc && q.payload == p.payload);
        let f50 = f.quantile_us(0.5);
        let cells: Vec<String> = all
            .iter()
            .map(
                |(_, o)| match at.and_then(|i| o.get(i)).and_then(|o| o.as_ref().ok()) {
                    Some(r) => format!(
                        "{:.1} ({})",
                        r.quantile_us(0.5),
                        ratio(r.quantile_us(0.5), f50)
                    ),
                    None => "-".into(),
                },
            )
            .collect();
        println!(
            "| {} B | {:.0} | {f50:.1} | {:.1} | {} |",
            p.payload,
            f.qps(),
            f.quantile_us(0.99),
            cells.join(" | ")
        );
        records.push(Record::new("pingpong", "std", "pingpong", p, f));
    }
    records
}

/// Prints system `a` against system `b` point by point: both qps, and the
/// spread over the rounds of `a`'s qps ÷ `b`'s in the same round.
pub(crate) fn compare(
    pts: &[Point],
    a: Kind,
    a_out: &[Outcome],
    b: Kind,
    b_out: &[Outcome],
    spread: impl Fn(usize) -> Option<Spread>,
) {
    let (an, bn) = (a.label(), b.label());
    println!();
    println!("| conc | payload | {an} qps | {bn} qps | {an} ÷ {bn} (per round: median (min–max)) | {an} p50 µs | {bn} p50 µs |");
    println!("|---|---|---|---|---|---|---|");
    for (i, p) in pts.iter().enumerate() {
        let (Some(Ok(x)), Some(Ok(y))) = (a_out.get(i), b_out.get(i)) else {
            continue;
        };
        println!(
            "| {} | {} B | {:.0} | {:.0} | {} | {:.1} | {:.1} |",
            p.conc,
            p.payload,
            x.qps(),
            y.qps(),
            spread_cell(&spread(i)),
            x.quantile_us(0.5),
            y.quantile_us(0.5),
        );
    }
}
