//! Pictures of an `nrpc_qps` report ([`crate::Report`]): one latency
//! percentile panel per measured point and one panel of QPS ratios to raw
//! UDP, as SVG ([`svg`]) or as an HTML page with the figures in a table
//! ([`write()`]).
//!
//! Why SVG through plotters' SVG backend only: it needs no system font or
//! image library (no fontconfig, no freetype), so the bench builds on a
//! bare CI box; the viewer's browser renders the text.
//!
//! The drawing never trusts the report: NaN, zero, negative or absurd
//! figures are left out (log axes need positive ranges), a point or system
//! without data becomes an empty panel or a missing line, and anything that
//! still cannot be drawn is an `Err`, never a panic.

use std::collections::HashMap;
use std::path::Path;

use plotters::coord::combinators::WithKeyPoints;
use plotters::coord::types::{RangedCoordf64, RangedCoordi32};
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::{Record, Report};

/// Panels per row: 6 points and the ratio panel make a 3 × 3 grid.
const COLS: usize = 3;
/// Size of one panel, px: 3 × 3 panels make a picture of about 1500 × 1400.
const PANEL: (u32, u32) = (500, 440);
/// Height of the title band, px.
const TITLE_H: u32 = 80;
/// More points than this would make an unreadable picture of megabytes;
/// such a report is refused rather than drawn.
const MAX_POINTS: usize = 64;
/// More series than this would repeat colours and bury the legends.
const MAX_SERIES: usize = 24;
/// The systems in the order they are drawn and coloured (raw first: it is
/// the baseline); others follow in order of appearance.
const KNOWN: [&str; 5] = ["raw", "nrpc engine", "nrpc sdk", "quinn", "ping-pong"];
/// Series colours, one per series label, the same in every panel.
const PALETTE: [RGBColor; 8] = [
    RGBColor(40, 40, 40),
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(23, 190, 207),
];
/// The percentile ticks of the latency panels.
const TICKS: [f64; 5] = [0.5, 0.9, 0.99, 0.999, 0.9999];
/// Latencies (µs) outside this range are measurement garbage, not data.
const US_RANGE: (f64, f64) = (1e-3, 1e9);
/// Ratios beyond this magnitude are left out of the ratio panel.
const MAX_RATIO: f64 = 1e6;
/// Width of one category of the ratio panel in x units (integer units:
/// plotters formats tick labels of an integer axis with key points, not of
/// a float one); marks are shifted sideways within it.
const X_UNIT: i32 = 100;
/// Room above the data for the legend in the top corner of a panel, per
/// legend entry, as a fraction of the data's span (so no legend hides a
/// mark, whatever the data).
const LEGEND_ROOM: f64 = 0.1;
/// The font of all text.
const FONT: &str = "sans-serif";

/// Writes the report of `report` to `path`: `.svg` → one SVG picture;
/// `.html` → an HTML page (the SVG inline, a title with host and command, a
/// table of records and of slice ratios). Any other extension → `Err`, so a
/// typo does not silently write a format nobody can open.
pub fn write(report: &Report, path: &Path) -> Result<(), String> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let text = match ext.as_deref() {
        Some("svg") => svg(report)?,
        Some("html") | Some("htm") => html::page(report)?,
        _ => {
            return Err(format!(
                "{}: the plot is written as .svg or .html, not as {}",
                path.display(),
                ext.map_or("a file without extension".into(), |e| format!(".{e}"))
            ))
        }
    };
    std::fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()))
}

/// The report as one SVG document: a title band, one latency panel per
/// point and the QPS-ratio panel, in a grid of up to three columns.
pub fn svg(report: &Report) -> Result<String, String> {
    // plotters is foreign code drawing untrusted numbers: a panic inside it
    // must become an error of this report, not abort the bench's run.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| draw(report)))
        .unwrap_or_else(|_| Err("plotters panicked while drawing the report".into()))
}

/// [`svg`] without the panic guard.
fn draw(report: &Report) -> Result<String, String> {
    let data = Data::of(report)?;
    let panels = data.points.len() + 1;
    let cols = panels.min(COLS);
    let rows = panels.div_ceil(cols);
    let size = (PANEL.0 * cols as u32, TITLE_H + PANEL.1 * rows as u32);
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, size).into_drawing_area();
        root.fill(&WHITE).map_err(drawing)?;
        let (top, body) = root.split_vertically(TITLE_H);
        draw_title(&top, report)?;
        let areas = body.split_evenly((rows, cols));
        for (i, area) in areas.iter().enumerate().take(data.points.len()) {
            draw_curves(area, &data, i)?;
        }
        if let Some(area) = areas.get(data.points.len()) {
            draw_ratios(area, &data)?;
        }
        root.present().map_err(drawing)?;
    }
    Ok(out)
}

/// A plotters error as this module's error string.
fn drawing(e: impl std::fmt::Display) -> String {
    format!("drawing the report: {e}")
}

/// A drawing area of the SVG picture.
type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// A measurement point: (calls in flight, payload bytes).
type PointKey = (usize, usize);

/// `c16/32B`: the name `nrpc_qps` prints for a point.
fn point_name((conc, payload): PointKey) -> String {
    format!("c{conc}/{payload}B")
}

/// The series a record belongs to: its system, with the mode where the
/// system has several ("nrpc engine", "nrpc sdk").
fn series_label(r: &Record) -> String {
    if r.mode == "raw" || r.mode == "quic" || r.mode == r.system || r.mode.is_empty() {
        r.system.clone()
    } else {
        format!("{} {}", r.system, r.mode)
    }
}

/// One system's QPS ratio to raw at one point.
struct Ratio {
    /// Series label.
    label: String,
    /// Index into [`Data::points`].
    point: usize,
    /// Median (or the single record ratio).
    median: f64,
    /// Min and max over the slice pairs; `None` without slices.
    bar: Option<(f64, f64)>,
}

/// What the picture shows, sorted out of a report once.
struct Data<'a> {
    /// Every point, in the order the run measured it.
    points: Vec<PointKey>,
    /// Every series label, raw first (its index picks its colour).
    labels: Vec<String>,
    /// The record of each (label, point); the first one if several.
    records: HashMap<(String, PointKey), &'a Record>,
    /// The ratio panel's marks.
    ratios: Vec<Ratio>,
    /// Whether the ratios come from slice pairs (else from records).
    sliced: bool,
}

impl<'a> Data<'a> {
    /// Sorts `report` out; `Err` if it is too large to draw legibly.
    fn of(report: &'a Report) -> Result<Self, String> {
        let mut data = Data {
            points: Vec::new(),
            labels: Vec::new(),
            records: HashMap::new(),
            ratios: Vec::new(),
            sliced: !report.slices.is_empty(),
        };
        for r in report.records.iter().filter(|r| r.system != "handshake") {
            let label = series_label(r);
            data.add(&label, (r.conc, r.payload));
            data.records
                .entry((label, (r.conc, r.payload)))
                .or_insert(r);
        }
        for s in &report.slices {
            data.add(&s.system, (s.conc, s.payload));
        }
        let (points, series) = (data.points.len(), data.labels.len());
        if points > MAX_POINTS || series > MAX_SERIES {
            return Err(format!(
                "the report has {points} points and {series} series; at most \
                 {MAX_POINTS} points and {MAX_SERIES} series can be drawn legibly"
            ));
        }
        data.labels
            .sort_by_key(|l| KNOWN.iter().position(|k| k == l).unwrap_or(KNOWN.len()));
        data.ratios = if data.sliced {
            data.slice_ratios(report)
        } else {
            data.record_ratios()
        };
        Ok(data)
    }

    /// Notes that `label` was measured at `point`.
    fn add(&mut self, label: &str, point: PointKey) {
        if !self.points.contains(&point) {
            self.points.push(point);
        }
        if !self.labels.iter().any(|l| l == label) {
            self.labels.push(label.to_string());
        }
    }

    /// The ratios of the slice series: median with a min–max bar.
    fn slice_ratios(&self, report: &Report) -> Vec<Ratio> {
        let mut out = Vec::new();
        for s in &report.slices {
            let Some(q) = &s.qps_ratio else { continue };
            let Some(point) = self.points.iter().position(|&p| p == (s.conc, s.payload)) else {
                continue;
            };
            if !sane_ratio(q.median) {
                continue;
            }
            let bar = (sane_ratio(q.min) && sane_ratio(q.max) && q.min <= q.max)
                .then_some((q.min, q.max));
            out.push(Ratio {
                label: s.system.clone(),
                point,
                median: q.median,
                bar,
            });
        }
        out
    }

    /// Without slices: each record's qps over raw's at the same point.
    fn record_ratios(&self) -> Vec<Ratio> {
        let mut out = Vec::new();
        for (point, &key) in self.points.iter().enumerate() {
            let Some(raw) = self.records.get(&("raw".to_string(), key)) else {
                continue;
            };
            for label in self.labels.iter().filter(|l| *l != "raw") {
                let Some(r) = self.records.get(&(label.clone(), key)) else {
                    continue;
                };
                let ratio = r.qps / raw.qps;
                if raw.qps > 0.0 && sane_ratio(ratio) {
                    out.push(Ratio {
                        label: label.clone(),
                        point,
                        median: ratio,
                        bar: None,
                    });
                }
            }
        }
        out
    }

    /// The colour of series `label`, the same in every panel.
    fn colour(&self, label: &str) -> RGBColor {
        let i = self.labels.iter().position(|l| l == label).unwrap_or(0);
        PALETTE[i % PALETTE.len()]
    }
}

/// Whether `v` can stand on the ratio axis.
fn sane_ratio(v: f64) -> bool {
    v.is_finite() && v.abs() <= MAX_RATIO
}

/// The latency curve of `r` as (1/(1-q), µs) points a log–log chart can
/// show: quantiles in (0, 1) short of 1 - 1e-7, latencies in [`US_RANGE`].
fn curve_points(r: &Record) -> Vec<(f64, f64)> {
    r.latency_curve
        .iter()
        .filter(|p| p.q > 0.0 && p.q <= 1.0 - 1e-7)
        .filter(|p| p.us >= US_RANGE.0 && p.us <= US_RANGE.1)
        .map(|p| (1.0 / (1.0 - p.q), p.us))
        .collect()
}

/// Draws the title band: the host on one line, the command on the next,
/// the skipped points on a third.
fn draw_title(area: &Area<'_>, report: &Report) -> Result<(), String> {
    let h = &report.host;
    let host = format!(
        "nrpc_qps on {} cores, Linux {}, {}, AEAD {}",
        h.cores,
        clip(&h.kernel, 60),
        clip(&h.cpu, 80),
        clip(&h.aead, 60)
    );
    text(area, host, (12, 10), 20)?;
    text(
        area,
        format!("$ {}", clip(&report.command, 220)),
        (12, 34),
        13,
    )?;
    if report.skipped_points.is_empty() {
        return Ok(());
    }
    let skipped: Vec<String> = report
        .skipped_points
        .iter()
        .map(|s| format!("{} {}", s.system, point_name((s.conc, s.payload))))
        .collect();
    let line = format!(
        "skipped ({}): {}",
        skipped.len(),
        clip(&skipped.join(", "), 200)
    );
    text(area, line, (12, 58), 13)
}

/// Draws `s` at `at` (px, top left) in the font of size `size`.
fn text(area: &Area<'_>, s: impl Into<String>, at: (i32, i32), size: u32) -> Result<(), String> {
    let font = (FONT, size).into_font();
    area.draw(&Text::new(s.into(), at, font)).map_err(drawing)
}

/// `s` cut to `n` characters (with an ellipsis), so a long command or CPU
/// name cannot push the title off the picture.
fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut c: String = s.chars().take(n).collect();
        c.push('…');
        c
    }
}

/// An empty panel: its caption and why it is empty.
fn draw_empty(area: &Area<'_>, caption: &str, why: &str) -> Result<(), String> {
    text(area, caption, (20, 12), 18)?;
    text(area, why, (20, 200), 15)
}

/// The latency percentile panel of point `i` (HDR style: x = percentile on
/// a log scale of 1/(1-q), y = latency on a log scale).
fn draw_curves(area: &Area<'_>, data: &Data<'_>, i: usize) -> Result<(), String> {
    let key = data.points[i];
    let caption = format!("{}: latency percentiles", point_name(key));
    let series: Vec<(&str, Vec<(f64, f64)>)> = data
        .labels
        .iter()
        .filter_map(|l| {
            data.records
                .get(&(l.clone(), key))
                .map(|r| (l.as_str(), curve_points(r)))
        })
        .filter(|(_, c)| !c.is_empty())
        .collect();
    let all = series.iter().flat_map(|(_, c)| c.iter().copied());
    let Some((x, y)) = log_ranges(all, series.len()) else {
        return draw_empty(area, &caption, "no latency data at this point");
    };
    let x_ticks: Vec<f64> = TICKS
        .iter()
        .map(|q| 1.0 / (1.0 - q))
        .filter(|t| (x.0..=x.1).contains(t))
        .collect();
    let mut chart = ChartBuilder::on(area)
        .caption(caption, (FONT, 18))
        .margin(10)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(
            (x.0..x.1).log_scale().with_key_points(x_ticks),
            (y.0..y.1).log_scale().with_key_points(y_ticks(y)),
        )
        .map_err(drawing)?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency, µs")
        .x_label_formatter(&|v| percentile_label(*v))
        .y_label_formatter(&|v| number(*v))
        .label_style((FONT, 13))
        .draw()
        .map_err(drawing)?;
    for (label, curve) in series {
        let colour = data.colour(label);
        chart
            .draw_series(LineSeries::new(
                curve.iter().copied(),
                colour.stroke_width(2),
            ))
            .map_err(drawing)?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2))
            });
        chart
            .draw_series(curve.iter().map(|&p| Circle::new(p, 3, colour.filled())))
            .map_err(drawing)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font((FONT, 13))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .draw()
        .map_err(drawing)
}

/// The x and y ranges of a log–log latency panel holding `points` (all
/// positive and finite), padded, the x range wide enough for the p50 and
/// p99.99 ticks, the y range with room on top for a legend of `entries`;
/// `None` without points.
fn log_ranges(
    points: impl Iterator<Item = (f64, f64)>,
    entries: usize,
) -> Option<((f64, f64), (f64, f64))> {
    let (mut x0, mut x1) = (2.0f64, 1e4f64);
    let (mut y0, mut y1) = (f64::INFINITY, 0.0f64);
    let mut any = false;
    for (x, y) in points {
        any = true;
        (x0, x1) = (x0.min(x), x1.max(x));
        (y0, y1) = (y0.min(y), y1.max(y));
    }
    let (y0, y1) = (y0 / 1.3, y1 * 1.3);
    let room = (y1 / y0).powf(LEGEND_ROOM * entries as f64);
    any.then_some(((x0 / 1.25, x1 * 1.25), (y0, y1 * room)))
}

/// Ticks for a log latency axis over `range`: 1–2–5 steps per decade; only
/// the decades when that would crowd the axis, every step 1…9 when a narrow
/// range would leave it almost bare.
fn y_ticks((lo, hi): (f64, f64)) -> Vec<f64> {
    let (first, last) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
    let ticks = |steps: &[f64]| -> Vec<f64> {
        (first..=last)
            .flat_map(|e| steps.iter().map(move |m| m * 10f64.powi(e)))
            .filter(|t| (lo..=hi).contains(t))
            .collect()
    };
    if last - first > 4 {
        return ticks(&[1.0]);
    }
    let t = ticks(&[1.0, 2.0, 5.0]);
    if t.len() >= 3 {
        t
    } else {
        ticks(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0])
    }
}

/// "99.9%": the percentile at x = 1/(1-q).
fn percentile_label(x: f64) -> String {
    let p = format!("{:.4}", 100.0 * (1.0 - 1.0 / x));
    format!("{}%", p.trim_end_matches('0').trim_end_matches('.'))
}

/// `v` to three significant digits, without trailing zeros.
fn number(v: f64) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    if v == 0.0 {
        return "0".into();
    }
    let decimals = (2 - v.abs().log10().floor() as i32).clamp(0, 6) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// The QPS-ratio panel: per point and compared system, the median ratio of
/// its QPS to raw's with a min–max bar, and the raw line at 1.0.
fn draw_ratios(area: &Area<'_>, data: &Data<'_>) -> Result<(), String> {
    let caption = if data.sliced {
        "QPS ÷ raw (median of slice pairs, bar: min–max)"
    } else {
        "QPS ÷ raw QPS (whole-run records)"
    };
    if data.ratios.is_empty() {
        return draw_empty(area, caption, "no QPS ratio to raw in this report");
    }
    let values = data
        .ratios
        .iter()
        .flat_map(|r| [Some(r.median), r.bar.map(|b| b.0), r.bar.map(|b| b.1)])
        .flatten();
    let (lo, hi) = values.fold((1.0f64, 1.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let pad = ((hi - lo) * 0.1).max(0.05);
    let entries = 1 + data
        .labels
        .iter()
        .filter(|l| data.ratios.iter().any(|r| &r.label == *l))
        .count();
    let room = (hi - lo + 2.0 * pad) * LEGEND_ROOM * entries as f64;
    let n = data.points.len() as i32 * X_UNIT;
    let names: Vec<String> = data.points.iter().map(|&p| point_name(p)).collect();
    let mut chart = ChartBuilder::on(area)
        .caption(caption, (FONT, 16))
        .margin(10)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(
            (-X_UNIT / 2..n - X_UNIT / 2)
                .with_key_points((0..n).step_by(X_UNIT as usize).collect()),
            (lo - pad)..(hi + pad + room),
        )
        .map_err(drawing)?;
    chart
        .configure_mesh()
        .x_desc("point")
        .y_desc("QPS ratio to raw")
        .x_label_formatter(&|v| category(&names, *v))
        .y_label_formatter(&|v| number(*v))
        .label_style((FONT, 12))
        .light_line_style(TRANSPARENT)
        .draw()
        .map_err(drawing)?;
    chart
        .draw_series(LineSeries::new(
            [(-X_UNIT / 2, 1.0), (n - X_UNIT / 2, 1.0)],
            BLACK.mix(0.6).stroke_width(2),
        ))
        .map_err(drawing)?
        .label("raw = 1.0")
        .legend(|(x, y)| {
            PathElement::new(vec![(x, y), (x + 18, y)], BLACK.mix(0.6).stroke_width(2))
        });
    draw_ratio_marks(&mut chart, data)?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font((FONT, 13))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .draw()
        .map_err(drawing)
}

/// The name of the category at x = `v` (`v / X_UNIT` indexes `names`).
fn category(names: &[String], v: i32) -> String {
    let i = usize::try_from(v / X_UNIT).ok().filter(|_| v % X_UNIT == 0);
    i.and_then(|i| names.get(i)).cloned().unwrap_or_default()
}

/// The ratio panel's x of point `i`.
fn x_of(i: usize) -> i32 {
    i32::try_from(i).map_or(i32::MAX, |i| i.saturating_mul(X_UNIT))
}

/// The ratio chart's coordinate system.
type RatioChart<'a, 'b> =
    ChartContext<'a, SVGBackend<'b>, Cartesian2d<WithKeyPoints<RangedCoordi32>, RangedCoordf64>>;

/// The marks of each compared system: a dot at the median and a bar from
/// min to max, shifted sideways per system so the bars do not overlap.
fn draw_ratio_marks(chart: &mut RatioChart<'_, '_>, data: &Data<'_>) -> Result<(), String> {
    let labels: Vec<&String> = data
        .labels
        .iter()
        .filter(|l| data.ratios.iter().any(|r| &r.label == *l))
        .collect();
    let k = labels.len() as i32;
    let step = (X_UNIT * 3 / 5 / k.max(1)).min(X_UNIT * 3 / 20);
    for (j, label) in labels.into_iter().enumerate() {
        let colour = data.colour(label);
        let shift = (2 * j as i32 - (k - 1)) * step / 2;
        let mine: Vec<&Ratio> = data.ratios.iter().filter(|r| &r.label == label).collect();
        let bars = mine
            .iter()
            .filter_map(|r| r.bar.map(|b| (x_of(r.point) + shift, b)));
        chart
            .draw_series(bars.flat_map(|(x, (min, max))| {
                let cap = step / 3;
                [
                    PathElement::new(vec![(x, min), (x, max)], colour.stroke_width(2)),
                    PathElement::new(vec![(x - cap, min), (x + cap, min)], colour.stroke_width(2)),
                    PathElement::new(vec![(x - cap, max), (x + cap, max)], colour.stroke_width(2)),
                ]
            }))
            .map_err(drawing)?;
        chart
            .draw_series(
                mine.iter()
                    .map(|r| Circle::new((x_of(r.point) + shift, r.median), 5, colour.filled())),
            )
            .map_err(drawing)?
            .label(label.as_str())
            .legend(move |(x, y)| Circle::new((x + 9, y), 5, colour.filled()));
    }
    Ok(())
}

mod html;
#[cfg(test)]
mod tests;
