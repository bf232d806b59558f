//! The HTML page of a report: the picture inline and the figures in tables,
//! for reading the numbers behind a mark without the JSON.

use std::fmt::Write as _;

use super::{number, point_name, svg};
use crate::Report;

/// The HTML page: title, host, command, the picture inline, and tables of
/// the records, the slice ratios and the skipped points.
pub(super) fn page(report: &Report) -> Result<String, String> {
    let picture = svg(report)?;
    let h = &report.host;
    let mut out = String::new();
    // `write!` into a `String` cannot fail (here and below).
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>nrpc_qps report</title>\n\
         <style>body{{font-family:sans-serif;margin:1em}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #bbb;padding:2px 8px;text-align:right}}\
         td:first-child,th:first-child{{text-align:left}}</style></head><body>\n\
         <h1>nrpc_qps report</h1>\n<p>{} cores, Linux {}, {}, AEAD {}, unix time {}</p>\n\
         <p><code>{}</code></p>\n{picture}\n",
        h.cores,
        escape(&h.kernel),
        escape(&h.cpu),
        escape(&h.aead),
        h.unix_time,
        escape(&report.command)
    );
    records_table(&mut out, report);
    slices_table(&mut out, report);
    if !report.skipped_points.is_empty() {
        out.push_str("<h2>Skipped points</h2>\n<ul>\n");
        for s in &report.skipped_points {
            let point = point_name((s.conc, s.payload));
            let _ = writeln!(
                out,
                "<li>{} {point}: {}</li>",
                escape(&s.system),
                escape(&s.reason)
            );
        }
        out.push_str("</ul>\n");
    }
    out.push_str("</body></html>\n");
    Ok(out)
}

/// The table of every record (handshakes included: they have no panel).
fn records_table(out: &mut String, report: &Report) {
    out.push_str(
        "<h2>Records</h2>\n<table><tr><th>system</th><th>mode</th><th>driver</th>\
         <th>point</th><th>qps</th><th>p50 µs</th><th>p99 µs</th><th>p99.9 µs</th>\
         <th>CPU s / M calls</th><th>calls</th><th>errors</th></tr>\n",
    );
    for r in &report.records {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.0}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&r.system),
            escape(&r.mode),
            escape(&r.driver),
            point_name((r.conc, r.payload)),
            r.qps,
            number(r.p50_us),
            number(r.p99_us),
            number(r.p999_us),
            r.cpu_s_per_million.map_or("–".into(), number),
            r.calls,
            r.errors
        );
    }
    out.push_str("</table>\n");
}

/// The table of the slice series' median ratios (absent without slices).
fn slices_table(out: &mut String, report: &Report) {
    if report.slices.is_empty() {
        return;
    }
    out.push_str(
        "<h2>Slice ratios to raw (median [min – max])</h2>\n<table><tr><th>system</th>\
         <th>point</th><th>pairs</th><th>qps</th><th>CPU / call</th><th>p50</th>\
         <th>p99</th><th>mean</th></tr>\n",
    );
    let spread = |s: &Option<crate::slices::Spread>| {
        s.as_ref().map_or("–".into(), |s| {
            format!(
                "{} [{} – {}]",
                number(s.median),
                number(s.min),
                number(s.max)
            )
        })
    };
    for s in &report.slices {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td></tr>",
            escape(&s.system),
            point_name((s.conc, s.payload)),
            s.pairs.len() - s.skipped.min(s.pairs.len()),
            spread(&s.qps_ratio),
            spread(&s.cpu_ratio),
            spread(&s.p50_ratio),
            spread(&s.p99_ratio),
            spread(&s.mean_ratio)
        );
    }
    out.push_str("</table>\n");
}

/// `s` safe inside HTML text.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}
