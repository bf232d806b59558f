//! Tests of the report pictures: a synthetic report drawn, hostile reports
//! survived, formats picked by extension.

use super::*;
use crate::slices::{SliceFigures, SlicePair, SliceSeries};
use crate::{Host, Quantile, Skip, CURVE_QUANTILES};

/// A record of `system`/`mode` at (`conc`, `payload`) whose latency
/// curve rises from `p50_us`.
fn record(system: &str, mode: &str, point: PointKey, qps: f64, p50_us: f64) -> Record {
    let curve: Vec<Quantile> = CURVE_QUANTILES
        .iter()
        .map(|&q| Quantile {
            q,
            us: p50_us * (0.5 / (1.0 - q)).powf(0.3),
        })
        .collect();
    Record {
        system: system.into(),
        driver: "sendmmsg".into(),
        mode: mode.into(),
        conc: point.0,
        payload: point.1,
        rate: None,
        qps,
        p50_us,
        p99_us: curve[4].us,
        p999_us: curve[6].us,
        calls: 1000,
        errors: 0,
        cpu_s_per_million: Some(3.5),
        latency_curve: curve,
    }
}

/// Slice figures with `qps` and `calls`.
fn figures(qps: f64, calls: u64) -> SliceFigures {
    SliceFigures {
        qps,
        mean_us: 20.0,
        p50_us: 18.0,
        p99_us: 60.0,
        calls,
        errors: 0,
        cpu_ns_per_call: Some(4000.0),
    }
}

/// Two points; raw, nrpc engine, nrpc sdk and quinn at each; slice
/// series for nrpc engine at both points.
fn sample() -> Report {
    let mut records = Vec::new();
    for (i, point) in [(1, 32), (16, 32)].into_iter().enumerate() {
        let k = 1.0 + i as f64;
        records.push(record("raw", "raw", point, 100_000.0 * k, 10.0 * k));
        records.push(record("nrpc", "engine", point, 80_000.0 * k, 14.0 * k));
        records.push(record("nrpc", "sdk", point, 60_000.0 * k, 17.0 * k));
        records.push(record("quinn", "quic", point, 30_000.0 * k, 40.0 * k));
    }
    records.push(record("handshake", "handshake", (4, 0), 900.0, 500.0));
    let slices = [(1, 32), (16, 32)]
        .into_iter()
        .map(|(conc, payload)| {
            let pairs = [0.7, 0.8, 0.75, 0.9]
                .iter()
                .map(|r| SlicePair::new(figures(1000.0, 100), figures(1000.0 * r, 100)))
                .collect();
            SliceSeries::new("nrpc engine", conc, payload, 300, 50, pairs)
        })
        .collect();
    Report {
        host: Host {
            cores: 2,
            kernel: "6.1.0-test".into(),
            cpu: "Test CPU @ 3.0GHz".into(),
            aead: "chacha20-poly1305/ring/avx2".into(),
            unix_time: 0,
        },
        command: "nrpc_qps --system all --slices 4 --json <out>".into(),
        records,
        slices,
        skipped_points: vec![Skip {
            system: "raw".into(),
            conc: 1,
            payload: 65536,
            reason: "too large".into(),
        }],
    }
}

/// A fresh path in the temp dir, unique to this process and `name`.
fn temp_path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("net-plot-{}-{name}", std::process::id()))
}

#[test]
fn svg_shows_every_system_tick_and_point() {
    let svg = svg(&sample()).expect("svg");
    assert!(svg.contains("<svg"), "not an SVG document");
    for text in [
        "raw",
        "nrpc engine",
        "nrpc sdk",
        "quinn",
        "raw = 1.0",
        "50%",
        "90%",
        "99%",
        "99.9%",
        "99.99%",
        "c1/32B",
        "c16/32B",
        "Test CPU @ 3.0GHz",
        "--slices 4",
        "&lt;out&gt;",
        "latency, µs",
        "median of slice pairs",
    ] {
        assert!(svg.contains(text), "{text:?} missing from the SVG");
    }
    assert!(!svg.contains("handshake"), "handshakes have no panel");
}

#[test]
fn ratios_fall_back_to_records_without_slices() {
    let mut report = sample();
    report.slices.clear();
    let data = Data::of(&report).expect("data");
    assert!(!data.sliced);
    // nrpc engine, nrpc sdk and quinn at both points.
    assert_eq!(data.ratios.len(), 6);
    let engine = data
        .ratios
        .iter()
        .find(|r| r.label == "nrpc engine")
        .expect("engine");
    assert!((engine.median - 0.8).abs() < 1e-9 && engine.bar.is_none());
    assert!(svg(&report).expect("svg").contains("whole-run records"));
}

#[test]
fn series_are_coloured_alike_in_every_panel_raw_first() {
    let report = sample();
    let data = Data::of(&report).expect("data");
    assert_eq!(data.labels, ["raw", "nrpc engine", "nrpc sdk", "quinn"]);
    assert_eq!(data.points, [(1, 32), (16, 32)]);
    assert_eq!(data.colour("quinn"), PALETTE[3]);
}

/// Reports nothing sane can be drawn from: each gives Ok or Err.
fn hostile_reports() -> Vec<Report> {
    let empty = Report {
        records: Vec::new(),
        slices: Vec::new(),
        skipped_points: Vec::new(),
        ..sample()
    };
    let mut no_curves = sample();
    no_curves
        .records
        .iter_mut()
        .for_each(|r| r.latency_curve.clear());
    let mut bad = sample();
    let values = [
        f64::NAN,
        f64::INFINITY,
        -1.0,
        0.0,
        1e300,
        -f64::INFINITY,
        1e-300,
    ];
    for (i, r) in bad.records.iter_mut().enumerate() {
        r.qps = values[i % values.len()];
        r.system = ["<&\">", "", "raw"][i % 3].into();
        for (j, p) in r.latency_curve.iter_mut().enumerate() {
            p.us = values[(i + j) % values.len()];
            p.q = [p.q, 1.0, f64::NAN, -0.5, 1.0 - 1e-12][j % 5];
        }
    }
    for s in &mut bad.slices {
        if let Some(q) = &mut s.qps_ratio {
            (q.median, q.min, q.max) = (f64::NAN, f64::INFINITY, -1e300);
        }
        s.skipped = usize::MAX;
    }
    let mut one_value = sample();
    one_value.records.truncate(1);
    one_value.records[0].latency_curve.truncate(1);
    one_value.slices[0].qps_ratio = None;
    vec![empty, no_curves, bad, one_value]
}

#[test]
fn hostile_reports_never_panic() {
    for (i, report) in hostile_reports().iter().enumerate() {
        match svg(report) {
            Ok(s) => assert!(s.contains("<svg"), "report {i}"),
            // The panic guard is a last resort, not how bad data is handled.
            Err(e) => assert!(!e.contains("panicked"), "report {i}: {e}"),
        }
        if let Ok(page) = html::page(report) {
            assert!(!page.contains("<&\">"), "report {i}: unescaped label");
        }
    }
}

#[test]
fn random_garbage_figures_are_drawn_or_refused_without_panic() {
    let pool = [
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        -1.0,
        0.0,
        1e-12,
        0.5,
        1.0,
        7.0,
        1e12,
    ];
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        // xorshift64: deterministic, so a failure replays.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..40 {
        let mut report = sample();
        for r in &mut report.records {
            r.qps = pool[next() as usize % pool.len()];
            for p in &mut r.latency_curve {
                p.us = pool[next() as usize % pool.len()];
                p.q = [p.q, pool[next() as usize % pool.len()]][next() as usize % 2];
            }
        }
        for s in &mut report.slices {
            if let Some(q) = &mut s.qps_ratio {
                q.median = pool[next() as usize % pool.len()];
                q.min = pool[next() as usize % pool.len()];
                q.max = pool[next() as usize % pool.len()];
            }
        }
        if let Err(e) = svg(&report) {
            assert!(!e.contains("panicked"), "round {round}: {e}");
        }
    }
}

#[test]
fn a_report_too_large_to_read_is_refused() {
    let mut report = sample();
    report.records = (0..=MAX_POINTS)
        .map(|c| record("raw", "raw", (c, 32), 1.0, 1.0))
        .collect();
    let e = svg(&report).expect_err("too many points");
    assert!(e.contains("points"), "{e}");
}

#[test]
fn write_picks_the_format_by_extension() {
    let report = sample();
    for bad in ["report.txt", "report"] {
        let path = temp_path(bad);
        assert!(write(&report, &path).is_err(), "{bad}");
        assert!(!path.exists(), "{bad} was written");
    }
    let svg_path = temp_path("report.svg");
    write(&report, &svg_path).expect("svg");
    let text = std::fs::read_to_string(&svg_path).expect("read svg");
    let _ = std::fs::remove_file(&svg_path);
    assert!(text.starts_with("<svg"));
    let html_path = temp_path("report.html");
    write(&report, &html_path).expect("html");
    let page = std::fs::read_to_string(&html_path).expect("read html");
    let _ = std::fs::remove_file(&html_path);
    for text in [
        "<!DOCTYPE html>",
        "<svg",
        "<table>",
        "--json &lt;out&gt;",
        "too large",
    ] {
        assert!(page.contains(text), "{text:?} missing from the page");
    }
}

#[test]
fn labels_read_as_people_write_them() {
    let ticks: Vec<String> = TICKS
        .iter()
        .map(|q| percentile_label(1.0 / (1.0 - q)))
        .collect();
    assert_eq!(ticks, ["50%", "90%", "99%", "99.9%", "99.99%"]);
    assert_eq!(number(1234.6), "1235");
    assert_eq!(number(12.34), "12.3");
    assert_eq!(number(0.005), "0.005");
    assert_eq!(number(0.95), "0.95");
    assert_eq!(number(f64::NAN), "–");
    assert_eq!(y_ticks((3.0, 60.0)), [5.0, 10.0, 20.0, 50.0]);
    assert_eq!(y_ticks((0.5, 1e6)), [1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6]);
}
