//! The JSON results document (schema `dmaprof.results/1`, described in
//! docs/results.md) and the per-mode summary CSV. The same types read the
//! document back for `dmaprof compare`, with unknown fields refused, so
//! what is written and what is read cannot drift apart.
use std::io::{self, Write};

use base64::Engine as _;
use hdrhistogram::{
    Histogram,
    serialization::{Deserializer, Serializer, V2DeflateSerializer},
};
use serde::{Deserialize, Serialize};

use crate::probes::session::{Attached, Lost};
use crate::workload::{
    Config, Outcome, Pass, Verification,
    mode::Mode,
    summary::{self, ModeSummary},
};

pub const SCHEMA: &str = "dmaprof.results/1";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Results {
    pub schema: String,
    pub dmaprof_version: String,
    pub kernel_release: String,
    /// Seconds since the Unix epoch when the run started.
    pub started_unix_s: u64,
    pub options: RunOptions,
    pub interrupted: bool,
    pub error: Option<String>,
    pub skipped: Vec<Skipped>,
    /// How each kernel probe attached (empty: probes off).
    pub probes: Vec<Attached>,
    /// Events the probes lost (None: probes off).
    pub lost_events: Option<Lost>,
    pub modes: Vec<ModeResult>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunOptions {
    pub modes: Vec<Mode>,
    pub direction: String,
    pub file: String,
    pub size: u64,
    pub chunk: u64,
    pub iterations: u32,
    pub heap: String,
    pub cache: String,
    pub verify: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Skipped {
    pub mode: Mode,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModeResult {
    pub summary: ModeSummary,
    /// One entry per pass: the samples `compare` tests.
    pub passes: Vec<PassResult>,
    /// Every call's wall latency (ns), hdrhistogram V2 + deflate, base64:
    /// the full distribution, not a few percentiles.
    pub latency_histogram: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PassResult {
    pub iteration: u32,
    pub calls: u64,
    pub bytes: u64,
    pub alloc_ns: u64,
    pub transfer_ns: u64,
    pub sync_ns: u64,
    pub free_ns: u64,
    pub mib_per_s: f64,
    pub lat_p50_us: f64,
    pub lat_p99_us: f64,
    pub cpu_ns_per_mib: f64,
    pub cache: String,
    pub verified: Verification,
}

fn pass_result(p: &Pass) -> PassResult {
    let mut hist = summary::latency_histogram();
    let (mut cpu, mut bytes) = (0u64, 0u64);
    for c in &p.calls {
        hist.saturating_record(c.wall_ns.max(1));
        cpu += c.cpu.user_ns + c.cpu.sys_ns;
        bytes += c.bytes;
    }
    let mib = bytes as f64 / (1u64 << 20) as f64;
    let q = |q: f64| {
        if p.calls.is_empty() {
            0.0
        } else {
            hist.value_at_quantile(q) as f64 / 1e3
        }
    };
    PassResult {
        iteration: p.iteration,
        calls: p.calls.len() as u64,
        bytes: p.bytes,
        alloc_ns: p.alloc_ns,
        transfer_ns: p.transfer_ns,
        sync_ns: p.sync_ns,
        free_ns: p.free_ns,
        mib_per_s: if p.transfer_ns > 0 {
            mib / (p.transfer_ns as f64 / 1e9)
        } else {
            0.0
        },
        lat_p50_us: q(0.5),
        lat_p99_us: q(0.99),
        cpu_ns_per_mib: if mib > 0.0 { cpu as f64 / mib } else { 0.0 },
        cache: p.cache.clone(),
        verified: p.verified,
    }
}

pub fn encode_histogram(hist: &Histogram<u64>) -> String {
    let mut bytes = Vec::new();
    V2DeflateSerializer::new()
        .serialize(hist, &mut bytes)
        .expect("serializing to memory");
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn decode_histogram(text: &str) -> Result<Histogram<u64>, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| format!("latency_histogram is not base64: {e}"))?;
    Deserializer::new()
        .deserialize(&mut io::Cursor::new(bytes))
        .map_err(|e| format!("latency_histogram is not an hdrhistogram: {e:?}"))
}

pub fn build(
    cfg: &Config,
    outcome: &Outcome,
    skipped: &[(Mode, String)],
    started_unix_s: u64,
    probes: Option<(Vec<Attached>, Lost)>,
) -> Results {
    let (probes, lost_events) = match probes {
        Some((a, l)) => (a, Some(l)),
        None => (Vec::new(), None),
    };
    let modes = summary::summarize(&outcome.passes)
        .into_iter()
        .map(|s| {
            let mine: Vec<&Pass> = outcome.passes.iter().filter(|p| p.mode == s.mode).collect();
            let mut hist = summary::latency_histogram();
            for c in mine.iter().flat_map(|p| &p.calls) {
                hist.saturating_record(c.wall_ns.max(1));
            }
            ModeResult {
                summary: s,
                passes: mine.iter().map(|p| pass_result(p)).collect(),
                latency_histogram: encode_histogram(&hist),
            }
        })
        .collect();
    Results {
        schema: SCHEMA.into(),
        dmaprof_version: env!("CARGO_PKG_VERSION").into(),
        kernel_release: crate::kernel::release(),
        started_unix_s,
        options: RunOptions {
            modes: cfg.modes.clone(),
            direction: cfg.direction.to_string(),
            file: cfg.file.display().to_string(),
            size: cfg.size,
            chunk: cfg.chunk,
            iterations: cfg.iterations,
            heap: cfg.heap.clone(),
            cache: format!("{:?}", cfg.cache).to_lowercase(),
            verify: cfg.verify,
        },
        interrupted: outcome.interrupted,
        error: outcome.error.as_ref().map(|e| e.to_string()),
        skipped: skipped
            .iter()
            .map(|(m, r)| Skipped {
                mode: *m,
                reason: r.clone(),
            })
            .collect(),
        probes,
        lost_events,
        modes,
    }
}

/// Reads a results document, with the reason when it is not one.
pub fn parse(text: &str) -> Result<Results, String> {
    let r: Results =
        serde_json::from_str(text).map_err(|e| format!("not a dmaprof results file: {e}"))?;
    if r.schema != SCHEMA {
        return Err(format!("schema `{}` is not `{SCHEMA}`", r.schema));
    }
    Ok(r)
}

pub const SUMMARY_COLUMNS: &[&str] = &[
    "mode",
    "passes",
    "calls",
    "bytes",
    "alloc_ms",
    "transfer_ms",
    "sync_ms",
    "free_ms",
    "total_ms",
    "mib_per_s",
    "lat_min_us",
    "lat_p50_us",
    "lat_p90_us",
    "lat_p99_us",
    "lat_p999_us",
    "lat_max_us",
    "cpu_user_ns_per_mib",
    "cpu_sys_ns_per_mib",
    "others_cpu_ns_per_mib",
    "voluntary_switches",
    "involuntary_switches",
    "verified",
];

pub fn write_summary_csv(out: &mut impl Write, rows: &[ModeSummary]) -> io::Result<()> {
    writeln!(out, "{}", SUMMARY_COLUMNS.join(","))?;
    for r in rows {
        writeln!(
            out,
            "{},{},{},{},{:.3},{:.3},{:.3},{:.3},{:.3},{:.1},{:.1},{:.1},{:.1},{:.1},{:.1},{:.1},{:.0},{:.0},{:.0},{},{},{}",
            r.mode.name(),
            r.passes,
            r.calls,
            r.bytes,
            r.alloc_ms,
            r.transfer_ms,
            r.sync_ms,
            r.free_ms,
            r.total_ms,
            r.mib_per_s,
            r.lat_min_us,
            r.lat_p50_us,
            r.lat_p90_us,
            r.lat_p99_us,
            r.lat_p999_us,
            r.lat_max_us,
            r.cpu_user_ns_per_mib,
            r.cpu_sys_ns_per_mib,
            r.others_cpu_ns_per_mib,
            r.voluntary_switches,
            r.involuntary_switches,
            serde_json::to_value(r.verified)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default()
        )?;
    }
    Ok(())
}
