//! A sweep: every point measured on every system of the rig, and the
//! tables, ratios and records made from it.

use net_bench::load::LoadProbe;
use net_bench::slices::{SliceFigures, SlicePair, SliceSeries, Spread};
use net_bench::{Point, Record, Skip};

use super::report::{compare, floor_table, print_series, progress, table, Outcome};
use super::rig::{Kind, Rig, Sys};
use super::{Args, Mode};

/// What a sweep measured.
pub(crate) struct Sweep {
    /// The systems, in the order measured (raw first, if any).
    kinds: Vec<Kind>,
    /// Per system, per point: its merged result or why it was skipped.
    outcomes: Vec<Vec<Outcome>>,
    /// Per point, per system: its figures round by round.
    rounds: Vec<Vec<Vec<SliceFigures>>>,
    /// The nRPC client's driver.
    pub(crate) driver: String,
    /// The nRPC client's AEAD.
    pub(crate) aead: String,
}

impl Sweep {
    /// Measures every point of `pts` on every system, printing a progress
    /// line per system and point (and a warning when the machine was busy
    /// with other work during a point).
    pub(crate) fn run(args: &Args, pts: &[Point]) -> Sweep {
        let mut rig = Rig::start(args);
        let kinds: Vec<Kind> = rig.systems().iter().map(Sys::kind).collect();
        let mut outcomes: Vec<Vec<Outcome>> = vec![Vec::new(); kinds.len()];
        let mut rounds = Vec::with_capacity(pts.len());
        for (i, p) in pts.iter().enumerate() {
            let probe = LoadProbe::start(rig.pids());
            let run = rig.measure(args, p);
            let load = probe.verdict(rig.pids());
            for (k, o) in run.outcomes.into_iter().enumerate() {
                progress(&kinds[k].label(), i, pts.len(), p, &o, None);
                outcomes[k].push(o);
            }
            if let Some(w) = load {
                eprintln!("nrpc_qps: WARNING: {}: {w}", p.name());
            }
            rounds.push(run.rounds);
            if std::env::var_os("NRPC_QPS_STATS").is_some() {
                for s in rig.systems() {
                    if let Some(line) = s.loss_line() {
                        eprintln!("nrpc_qps: {} after {}: {line}", s.kind().label(), p.name());
                    }
                }
            }
        }
        let (driver, aead) = rig.describe();
        Sweep {
            kinds,
            outcomes,
            rounds,
            driver,
            aead,
        }
    }

    /// Where system `k` is in the run's order.
    fn index(&self, k: Kind) -> Option<usize> {
        self.kinds.iter().position(|&x| x == k)
    }

    /// System `k`'s outcomes per point (empty if it did not run).
    fn outcomes_of(&self, k: Kind) -> &[Outcome] {
        self.index(k).map_or(&[], |i| &self.outcomes[i])
    }

    /// Every compared system's rounds at every point, each slice paired
    /// with the raw slice of its round (none without a baseline).
    pub(crate) fn series(&self, args: &Args, pts: &[Point]) -> Vec<SliceSeries> {
        let Some(raw) = self.index(Kind::Raw) else {
            return Vec::new();
        };
        let (slice_ms, warm_ms) = if args.slices > 0 {
            (args.slice_ms, args.slice_warmup_ms)
        } else {
            (args.duration_ms, args.warmup_ms)
        };
        let mut out = Vec::new();
        for (i, p) in pts.iter().enumerate() {
            let here = &self.rounds[i];
            for (s, kind) in self.kinds.iter().enumerate() {
                if s == raw || here[raw].is_empty() || here[s].is_empty() {
                    continue;
                }
                let pairs = here[raw]
                    .iter()
                    .zip(&here[s])
                    .map(|(r, x)| SlicePair::new(r.clone(), x.clone()))
                    .collect();
                out.push(SliceSeries::new(
                    &kind.label(),
                    p.conc,
                    p.payload,
                    slice_ms,
                    warm_ms,
                    pairs,
                ));
            }
        }
        out
    }

    /// The spread over the rounds of point `i` of `f(a) / f(b)`.
    fn round_ratio(
        &self,
        i: usize,
        a: Kind,
        b: Kind,
        f: fn(&SliceFigures) -> f64,
    ) -> Option<Spread> {
        let (a, b) = (self.index(a)?, self.index(b)?);
        let here = &self.rounds[i];
        Spread::of(here[a].iter().zip(&here[b]).map(|(x, y)| {
            if x.calls == 0 || y.calls == 0 || f(y) <= 0.0 {
                f64::NAN
            } else {
                f(x) / f(y)
            }
        }))
    }

    /// Prints every table of the run: one per compared system against raw,
    /// the per-round ratio spreads, SDK and core ÷ engine, nRPC ÷ quinn, and the
    /// c1 floor; returns the JSON records and the skipped points.
    pub(crate) fn print(
        &self,
        pts: &[Point],
        series: &[SliceSeries],
        floor: &[(Point, Outcome)],
    ) -> (Vec<Record>, Vec<Skip>) {
        let raw = self.outcomes_of(Kind::Raw);
        let (mut records, mut skips) = (Vec::new(), Vec::new());
        let compared: Vec<Kind> = self
            .kinds
            .iter()
            .copied()
            .filter(|&k| k != Kind::Raw)
            .collect();
        for (n, &k) in compared.iter().enumerate() {
            println!();
            println!("{}: {}", k.label(), describe(k));
            let (r, s) = table(pts, raw, self.outcomes_of(k), &self.driver, k, n == 0);
            records.extend(r);
            skips.extend(s);
        }
        if compared.is_empty() && !raw.is_empty() {
            let (r, s) = table(pts, raw, &[], &self.driver, Kind::Raw, true);
            records.extend(r);
            skips.extend(s);
        }
        print_series(series);
        let engine = Kind::Nrpc(Mode::Engine);
        let mut pairs = vec![
            (Kind::Nrpc(Mode::Sdk), engine),
            (Kind::Nrpc(Mode::Core), engine),
        ];
        pairs.extend(
            compared
                .iter()
                .filter(|k| matches!(k, Kind::Nrpc(_)))
                .map(|&k| (k, Kind::Quinn)),
        );
        for (a, b) in pairs {
            if self.index(a).is_some() && self.index(b).is_some() {
                let spread = |i: usize| self.round_ratio(i, a, b, |f| f.qps);
                compare(pts, a, self.outcomes_of(a), b, self.outcomes_of(b), spread);
            }
        }
        let sys: Vec<(String, &[Outcome])> = compared
            .iter()
            .map(|&k| (k.label(), self.outcomes_of(k)))
            .collect();
        records.extend(floor_table(floor, pts, raw, &sys));
        (records, skips)
    }

    /// Whether any system counted a failed call.
    pub(crate) fn any_errors(&self) -> bool {
        self.outcomes
            .iter()
            .flatten()
            .flatten()
            .any(|r| r.errors > 0)
    }
}

/// What a compared system measures, in a line.
fn describe(k: Kind) -> &'static str {
    match k {
        Kind::Nrpc(m) => m.describe(),
        Kind::Quinn => "a QUIC unary echo on quinn (TLS 1.3, one bidirectional stream per call) from tokio tasks",
        Kind::Raw => "the raw-UDP echo alone",
    }
}
