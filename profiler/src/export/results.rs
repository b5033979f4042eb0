//! The JSON results document (schema `dmaprof.results/3`, described in
//! docs/results.md) and the per-mode summary CSV. The same types read the
//! document back for `dmaprof compare`, with unknown fields refused, so
//! what is written and what is read cannot drift apart.
use std::{
    collections::BTreeMap,
    io::{self, Write},
};

pub use crate::metrics::LatencyHistogram;

use serde::{Deserialize, Serialize};

use super::RunReport;
use crate::metrics::CallTotals;
use crate::probes::session::{Attached, Lost, ProgramCost};
use crate::profile::{Profile, TopFunction, top};
use crate::workload::{
    BufferUse, CallRecord, Pass, Verification, mode::Mode, summary::ModeSummary,
};

pub const SCHEMA: &str = "dmaprof.results/3";
/// The schemas this reader takes: each later one only added fields
/// (2: `profile` and `profile_top_kernel`; 3: each pass's `bandwidth`,
/// `block_latency`).
const READABLE: [&str; 3] = ["dmaprof.results/1", "dmaprof.results/2", SCHEMA];

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
    /// Each probe program's runs and run time over the run (BPF run-time
    /// statistics; None: probes off or statistics unavailable).
    #[serde(default)]
    pub probe_costs: Option<Vec<ProgramCost>>,
    pub modes: Vec<ModeResult>,
    /// The stack profile (`--profile`): folded stacks per bucket (a mode,
    /// "between calls", "other threads") and what it could not see.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<Profile>,
    /// Per bucket, its top kernel functions (self and total % of samples).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_top_kernel: Option<BTreeMap<String, Vec<TopFunction>>>,
    /// `bench`: io_uring O_DIRECT at queue depth 32 on the same file, the
    /// figure each path's share of the device's limit is taken against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_limit: Option<crate::workload::limit::DeviceLimit>,
    /// Block requests' device time per device (name or MAJOR:MINOR): log2
    /// ns slots, slot i holding [2^i, 2^(i+1)) ns (None: no block probe).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_latency: Option<BTreeMap<String, Vec<u64>>>,
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
    /// `distinct` or `reuse` (absent in older files: distinct).
    #[serde(default)]
    pub buffers: BufferUse,
    /// I/Os in flight in the io_uring modes (absent in older files: 1).
    #[serde(default = "one")]
    pub queue_depth: u32,
}

fn one() -> u32 {
    1
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
    /// Bandwidth over the pass: [seconds since the run began at the end of
    /// a window of its calls, MiB/s over that window], up to 20 windows.
    #[serde(default)]
    pub bandwidth: Vec<[f64; 2]>,
}

/// Windows of a pass's bandwidth time line.
const BANDWIDTH_WINDOWS: usize = 20;

/// A pass's bandwidth over time: its calls in up to BANDWIDTH_WINDOWS
/// consecutive windows, each its bytes over its span (first start to last end).
fn bandwidth(calls: &[CallRecord]) -> Vec<[f64; 2]> {
    let per = calls.len().div_ceil(BANDWIDTH_WINDOWS).max(1);
    calls
        .chunks(per)
        .filter_map(|w| {
            let start = w.iter().map(|c| c.start_ns).min()?;
            let end = w.iter().map(|c| c.start_ns + c.wall_ns).max()?;
            let bytes = w.iter().map(|c| c.bytes).sum();
            Some([
                end as f64 / 1e9,
                crate::metrics::mib_per_s(bytes, end - start),
            ])
        })
        .collect()
}

/// One pass as `compare` samples it: the same definitions as a per-call
/// CSV of the run gives (`compare::input`), so both read alike.
pub fn pass_totals<'a>(calls: impl IntoIterator<Item = &'a CallRecord>) -> CallTotals {
    let mut t = CallTotals::default();
    for c in calls {
        t.add(c.bytes, c.wall_ns, Some(c.cpu.total_ns()));
    }
    t
}

fn pass_result(p: &Pass) -> PassResult {
    let t = pass_totals(&p.calls);
    PassResult {
        iteration: p.iteration,
        calls: t.calls,
        bytes: p.bytes,
        alloc_ns: p.alloc_ns,
        transfer_ns: p.transfer_ns,
        sync_ns: p.sync_ns,
        free_ns: p.free_ns,
        mib_per_s: t.mib_per_s(),
        lat_p50_us: t.latency.quantile_us(0.5),
        lat_p99_us: t.latency.quantile_us(0.99),
        cpu_ns_per_mib: t.cpu_ns_per_mib(),
        cache: p.cache.clone(),
        verified: p.verified,
        bandwidth: bandwidth(&p.calls),
    }
}

pub fn build(run: &RunReport) -> Results {
    let (probes, lost_events, probe_costs, block_latency) = match &run.probes {
        Some(p) => (
            p.attached.clone(),
            Some(p.lost.clone()),
            p.costs.clone(),
            p.block_latency.clone(),
        ),
        None => (Vec::new(), None, None, None),
    };
    let passes = &run.outcome.passes;
    let modes = run
        .summary
        .iter()
        .map(|s| {
            let mine: Vec<&Pass> = passes.iter().filter(|p| p.mode == s.mode).collect();
            ModeResult {
                summary: s.clone(),
                passes: mine.iter().map(|p| pass_result(p)).collect(),
                latency_histogram: pass_totals(mine.iter().flat_map(|p| &p.calls))
                    .latency
                    .encode(),
            }
        })
        .collect();
    let cfg = run.config;
    Results {
        schema: SCHEMA.into(),
        dmaprof_version: env!("CARGO_PKG_VERSION").into(),
        kernel_release: crate::kernel::release(),
        started_unix_s: run.started_unix_s,
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
            buffers: cfg.buffers,
            queue_depth: cfg.queue_depth,
        },
        interrupted: run.outcome.interrupted,
        error: run.outcome.error.as_ref().map(|e| e.to_string()),
        skipped: run
            .skipped
            .iter()
            .map(|(m, r)| Skipped {
                mode: *m,
                reason: r.clone(),
            })
            .collect(),
        probes,
        lost_events,
        probe_costs,
        modes,
        profile: run.profile.cloned(),
        profile_top_kernel: run.profile.map(|p| {
            p.buckets
                .iter()
                .map(|(b, s)| (b.clone(), top::kernel_functions(s, TOP_IN_JSON)))
                .collect()
        }),
        device_limit: run.device_limit.cloned(),
        block_latency,
    }
}

/// Kernel functions per bucket in the JSON.
const TOP_IN_JSON: usize = 20;

/// Reads a results document, with the reason when it is not one.
pub fn parse(text: &str) -> Result<Results, String> {
    let r: Results =
        serde_json::from_str(text).map_err(|e| format!("not a dmaprof results file: {e}"))?;
    if !READABLE.contains(&r.schema.as_str()) {
        return Err(format!(
            "schema `{}` is not one of {}",
            r.schema,
            READABLE.join(", ")
        ));
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
    "probe_ns_per_call",
    "probe_pct_of_call_time",
    "buffers",
    "cpu_p50_us",
    "cpu_p90_us",
    "cpu_p99_us",
    "cpu_source",
];

pub fn write_summary_csv(out: &mut impl Write, rows: &[ModeSummary]) -> io::Result<()> {
    writeln!(out, "{}", SUMMARY_COLUMNS.join(","))?;
    for r in rows {
        writeln!(
            out,
            "{},{},{},{},{:.3},{:.3},{:.3},{:.3},{:.3},{:.1},{:.1},{:.1},{:.1},{:.1},{:.1},{:.1},{:.0},{:.0},{:.0},{},{},{},{},{},{},{},{},{},{}",
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
                .unwrap_or_default(),
            r.probe_ns_per_call
                .map_or(String::new(), |v| format!("{v:.1}")),
            r.probe_pct_of_call_time
                .map_or(String::new(), |v| format!("{v:.4}")),
            r.buffers,
            r.cpu_p50_us.map_or(String::new(), |v| format!("{v:.1}")),
            r.cpu_p90_us.map_or(String::new(), |v| format!("{v:.1}")),
            r.cpu_p99_us.map_or(String::new(), |v| format!("{v:.1}")),
            r.cpu_source.as_deref().unwrap_or_default(),
        )?;
    }
    Ok(())
}
