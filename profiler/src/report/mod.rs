//! `dmaprof report`: one self-contained HTML file from a results document
//! and, optionally, a baseline: the plots as inline SVG (plots.rs), the
//! tables with each figure's exact value in `data-value` beside the rounded
//! text (what the browser test reads back), the flame graphs as data: URIs.
//! Nothing is fetched from anywhere. The page is a format! template: one
//! page, no logic a template engine would add.
pub mod plots;

use std::fmt::Write as _;

use base64::Engine as _;

use crate::{
    compare::{self, Report, Side},
    export::{flame, results::Results},
    metrics::LatencyHistogram,
};

/// A baseline and the comparison of the results against it.
pub struct Baseline {
    pub path: String,
    pub report: Report,
}

/// The summary figures the tables show: (JSON field, heading, decimals).
const TABLE: [(&str, &str, usize); 9] = [
    ("alloc_ms", "alloc ms", 1),
    ("transfer_ms", "transfer ms", 1),
    ("sync_ms", "sync ms", 1),
    ("free_ms", "free ms", 1),
    ("total_ms", "total ms", 1),
    ("mib_per_s", "MiB/s", 0),
    ("lat_p50_us", "p50 us", 1),
    ("lat_p99_us", "p99 us", 1),
    ("calls", "calls", 0),
];

pub fn render(r: &Results, baseline: Option<&Baseline>) -> Result<String, String> {
    let mut body = String::new();
    body += &header(r);
    body += &section("The seed's table", &summary_table(r)?);
    body += &section("Throughput per mode", &throughput(r)?);
    body += &section("Call latency", &latency_cdf(r)?);
    body += &section("Where each mode's time goes", &phases(r)?);
    body += &section("Bandwidth over time", &bandwidth(r)?);
    body += &section("Block device latency", &block_latency(r)?);
    if let Some(b) = baseline {
        body += &section(
            &format!("Against the baseline {}", esc(&b.path)),
            &comparison(b)?,
        );
    }
    if let Some(p) = &r.profile {
        body += &section("Flame graphs", &flamegraphs(p)?);
    }
    Ok(format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>dmaprof report: {kernel}</title><style>{STYLE}</style></head>\
         <body><h1>dmaprof report</h1>{body}</body></html>\n",
        kernel = esc(&r.kernel_release)
    ))
}

const STYLE: &str = "body{font-family:sans-serif;margin:2em;max-width:1000px}\
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}\
td:first-child,th:first-child{text-align:left}h2{margin-top:2em;border-bottom:1px solid #ccc}\
.note{color:#555}.plot svg,.plot img{max-width:100%;height:auto}";

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn section(title: &str, content: &str) -> String {
    format!("<h2>{}</h2>\n{content}\n", esc(title))
}

fn plot(svg: String) -> String {
    format!("<div class=\"plot\">{svg}</div>")
}

fn header(r: &Results) -> String {
    let o = &r.options;
    let mut s = format!(
        "<p>kernel <b>{}</b>, dmaprof {}, started {} (Unix s). {} {} bytes of <code>{}</code> in {}-byte calls, {} iteration(s), cache {}, buffers {:?}, heap {}.</p>",
        esc(&r.kernel_release),
        esc(&r.dmaprof_version),
        r.started_unix_s,
        esc(&o.direction),
        o.size,
        esc(&o.file),
        o.chunk,
        o.iterations,
        esc(&o.cache),
        o.buffers,
        esc(&o.heap),
    );
    if r.interrupted || r.error.is_some() {
        let _ = write!(
            s,
            "<p class=\"note\"><b>Incomplete run</b>: {}</p>",
            esc(r.error.as_deref().unwrap_or("interrupted"))
        );
    }
    for k in &r.skipped {
        let _ = write!(
            s,
            "<p class=\"note\">skipped {}: {}</p>",
            k.mode.name(),
            esc(&k.reason)
        );
    }
    if let Some(l) = &r.lost_events {
        let _ = write!(s, "<p class=\"note\">events the probes lost: {l}</p>");
    }
    s
}

fn summary_table(r: &Results) -> Result<String, String> {
    let mut s = String::from("<table id=\"summary\"><tr><th>mode</th>");
    for (_, heading, _) in TABLE {
        let _ = write!(s, "<th>{heading}</th>");
    }
    s += "<th>verified</th></tr>\n";
    for m in &r.modes {
        let fields = serde_json::to_value(&m.summary).map_err(|e| e.to_string())?;
        let mode = m.summary.mode.name();
        let _ = write!(s, "<tr><td>{mode}</td>");
        for (field, _, decimals) in TABLE {
            let v = fields[field].as_f64().unwrap_or(f64::NAN);
            let _ = write!(
                s,
                "<td data-mode=\"{mode}\" data-field=\"{field}\" data-value=\"{v}\">{v:.decimals$}</td>"
            );
        }
        let _ = writeln!(s, "<td>{:?}</td></tr>", m.summary.verified);
    }
    s += "</table>";
    if let Some(l) = &r.device_limit {
        let _ = write!(
            s,
            "<p class=\"note\">device limit (io_uring O_DIRECT, queue depth {}): {:.0} MiB/s</p>",
            l.queue_depth, l.mib_per_s
        );
    }
    Ok(s)
}

fn throughput(r: &Results) -> Result<String, String> {
    let bars: Vec<plots::Bar> = r
        .modes
        .iter()
        .map(|m| {
            let per_pass: Vec<f64> = m.passes.iter().map(|p| p.mib_per_s).collect();
            let side = Side::of(&per_pass);
            (m.summary.mode.name().to_string(), side.median, side.ci95)
        })
        .collect();
    let svg = plots::bars_with_ci(
        "Throughput per mode: median of the passes, 95% CI (6+ passes)",
        "MiB/s",
        &bars,
    )?;
    Ok(plot(svg))
}

fn latency_cdf(r: &Results) -> Result<String, String> {
    let mut series = Vec::new();
    for m in &r.modes {
        let h = LatencyHistogram::decode(&m.latency_histogram)?;
        let points = h
            .cdf()
            .into_iter()
            .map(|(ns, share)| (ns as f64 / 1e3, share))
            .collect();
        series.push((m.summary.mode.name().to_string(), points));
    }
    let svg = plots::log_x_lines(
        "Call latency CDF per mode",
        "call latency, us (log)",
        "share of calls at or below",
        &series,
    )?;
    Ok(plot(svg))
}

fn phases(r: &Results) -> Result<String, String> {
    let bars: Vec<(String, Vec<f64>)> = r
        .modes
        .iter()
        .map(|m| {
            let s = &m.summary;
            (
                s.mode.name().to_string(),
                vec![s.alloc_ms, s.transfer_ms, s.sync_ms, s.free_ms],
            )
        })
        .collect();
    let svg = plots::stacked_bars(
        "alloc / transfer / sync / free per pass (median ms)",
        "ms",
        &["alloc", "transfer", "sync", "free"],
        &bars,
    )?;
    Ok(plot(svg))
}

fn bandwidth(r: &Results) -> Result<String, String> {
    let series: Vec<plots::Runs> = r
        .modes
        .iter()
        .map(|m| {
            let passes = m
                .passes
                .iter()
                .map(|p| p.bandwidth.iter().map(|[t, v]| (*t, *v)).collect())
                .collect();
            (m.summary.mode.name().to_string(), passes)
        })
        .collect();
    if series.iter().all(|(_, p)| p.iter().all(Vec::is_empty)) {
        return Ok(
            "<p class=\"note\">no time line in these results (written before schema 3)</p>".into(),
        );
    }
    let svg = plots::time_lines(
        "Bandwidth over each pass (windows of calls)",
        "MiB/s",
        &series,
    )?;
    Ok(plot(svg))
}

fn block_latency(r: &Results) -> Result<String, String> {
    let Some(devices) = r.block_latency.as_ref().filter(|d| !d.is_empty()) else {
        return Ok("<p class=\"note\">no block probe in this run (or no block I/O)</p>".into());
    };
    let series: Vec<(String, Vec<(f64, f64)>)> = devices
        .iter()
        .map(|(dev, slots)| {
            let points = slots
                .iter()
                .enumerate()
                .map(|(i, n)| (2f64.powi(i as i32 + 1) / 1e3, *n as f64))
                .collect();
            (dev.clone(), points)
        })
        .collect();
    let svg = plots::log_x_lines(
        "Block requests' device time (issue to completion), per device",
        "device time, us (log2 buckets, upper bound)",
        "requests",
        &series,
    )?;
    Ok(plot(svg))
}

fn comparison(b: &Baseline) -> Result<String, String> {
    let metric = compare::METRICS[0].name;
    let bars: Vec<(String, f64, bool, bool)> = b
        .report
        .rows
        .iter()
        .filter(|row| row.metric == metric)
        .map(|row| {
            (
                row.mode.clone(),
                row.delta_pct,
                row.significant,
                row.delta_pct > 0.0,
            )
        })
        .collect();
    let mut s = plot(plots::changes(
        &format!(
            "{metric}: candidate against baseline (Mann-Whitney, alpha {})",
            compare::ALPHA
        ),
        &bars,
    )?);
    s += "<table id=\"comparison\"><tr><th>mode</th><th>metric</th><th>baseline</th><th>candidate</th><th>change</th><th>p</th></tr>\n";
    for row in &b.report.rows {
        let change = if row.significant {
            format!("{:+.1}%", row.delta_pct)
        } else {
            "~".into()
        };
        let _ = writeln!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{:.1}</td><td>{:.1}</td><td>{change}{}</td><td>{:.3}</td></tr>",
            esc(&row.mode),
            row.metric,
            row.baseline.median,
            row.candidate.median,
            if row.regression { " REGRESSION" } else { "" },
            row.p_value
        );
    }
    s += "</table>";
    Ok(s)
}

fn flamegraphs(p: &crate::profile::Profile) -> Result<String, String> {
    let graphs = flame::flamegraphs(p).map_err(|e| format!("flame graphs: {e}"))?;
    let mut s = String::new();
    for (bucket, kind, svg) in graphs {
        let _ = write!(
            s,
            "<h3>{} ({kind})</h3><div class=\"plot\"><img alt=\"{} {kind} flame graph\" src=\"data:image/svg+xml;base64,{}\"></div>",
            esc(&bucket),
            esc(&bucket),
            base64::engine::general_purpose::STANDARD.encode(svg)
        );
    }
    if s.is_empty() {
        s = "<p class=\"note\">the profile has no stacks</p>".into();
    }
    Ok(s)
}
