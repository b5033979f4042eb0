//! Per-mode summary of a run, in the shape of the seed's table (alloc /
//! transfer / total ms) plus throughput, per-call latency percentiles and
//! CPU cost.
use std::fmt::Write;

use serde::{Deserialize, Serialize};

use super::{
    BufferUse, KernelCall, Pass, Verification,
    limit::DeviceLimit,
    mode::{Direction, Mode},
};
use crate::metrics::{self, CallTotals};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModeSummary {
    pub mode: Mode,
    /// The kernel interface the mode's calls go through (absent in older
    /// files: read back as the mode's).
    #[serde(default)]
    pub mechanism: Option<crate::mechanism::Mechanism>,
    pub passes: usize,
    pub calls: u64,
    pub bytes: u64,
    /// Medians over passes, milliseconds.
    pub alloc_ms: f64,
    pub transfer_ms: f64,
    pub sync_ms: f64,
    pub free_ms: f64,
    pub total_ms: f64,
    /// Bytes / transfer time (median pass), MiB/s.
    pub mib_per_s: f64,
    /// Per-call wall latency, microseconds.
    pub lat_min_us: f64,
    pub lat_p50_us: f64,
    pub lat_p90_us: f64,
    pub lat_p99_us: f64,
    pub lat_p999_us: f64,
    pub lat_max_us: f64,
    /// CPU of the calling thread per MiB moved, nanoseconds.
    pub cpu_user_ns_per_mib: f64,
    pub cpu_sys_ns_per_mib: f64,
    /// Per-call CPU time of the calling thread, microseconds, and where it
    /// came from (absent in older files).
    #[serde(default)]
    pub cpu_p50_us: Option<f64>,
    #[serde(default)]
    pub cpu_p90_us: Option<f64>,
    #[serde(default)]
    pub cpu_p99_us: Option<f64>,
    #[serde(default)]
    pub cpu_source: Option<String>,
    /// CPU the rest of the system spent during the transfers, per MiB
    /// (kworkers, interrupts: the cost the calling thread does not see).
    pub others_cpu_ns_per_mib: f64,
    pub voluntary_switches: u64,
    pub involuntary_switches: u64,
    pub verified: Verification,
    /// Kernel probe totals over every call (None: probes off).
    pub kernel: Option<KernelCall>,
    /// The probes' own run time (BPF statistics) per call, ns, and as a
    /// share of the time inside the calls, % (None: unknown).
    #[serde(default)]
    pub probe_ns_per_call: Option<f64>,
    #[serde(default)]
    pub probe_pct_of_call_time: Option<f64>,
    /// Distinct buffers or one reused: the work the calls did.
    #[serde(default)]
    pub buffers: BufferUse,
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

pub fn summarize(passes: &[Pass]) -> Vec<ModeSummary> {
    let mut modes: Vec<Mode> = passes.iter().map(|p| p.mode).collect();
    modes.sort();
    modes.dedup();
    modes
        .into_iter()
        .map(|mode| {
            let mine: Vec<&Pass> = passes.iter().filter(|p| p.mode == mode).collect();
            summarize_mode(mode, &mine)
        })
        .collect()
}

fn summarize_mode(mode: Mode, mine: &[&Pass]) -> ModeSummary {
    let ms = |f: &dyn Fn(&Pass) -> u64| median(mine.iter().map(|p| f(p) as f64 / 1e6).collect());
    let calls = || mine.iter().flat_map(|p| &p.calls);
    let kernel = kernel_totals(calls().map(|c| c.kernel));
    let mut totals = CallTotals::default();
    let (mut user, mut sys, mut vol, mut invol) = (0, 0, 0, 0);
    for c in calls() {
        totals.add(c.bytes, c.wall_ns, Some(c.cpu.total_ns()));
        user += c.cpu.user_ns;
        sys += c.cpu.sys_ns;
        vol += c.cpu.voluntary_switches;
        invol += c.cpu.involuntary_switches;
    }
    let lat = &totals.latency;
    let probe_ns: Option<u64> = mine.iter().map(|p| p.probe_ns).sum();
    ModeSummary {
        mode,
        mechanism: Some(mode.mechanism()),
        passes: mine.len(),
        calls: totals.calls,
        bytes: totals.bytes,
        alloc_ms: ms(&|p| p.alloc_ns),
        transfer_ms: ms(&|p| p.transfer_ns),
        sync_ms: ms(&|p| p.sync_ns),
        free_ms: ms(&|p| p.free_ns),
        total_ms: ms(&|p| p.total_ns()),
        mib_per_s: median(
            mine.iter()
                .filter(|p| p.transfer_ns > 0)
                .map(|p| metrics::mib_per_s(p.bytes, p.transfer_ns))
                .collect(),
        ),
        lat_min_us: lat.min_ns() as f64 / 1e3,
        lat_p50_us: lat.quantile_us(0.5),
        lat_p90_us: lat.quantile_us(0.9),
        lat_p99_us: lat.quantile_us(0.99),
        lat_p999_us: lat.quantile_us(0.999),
        lat_max_us: lat.max_ns() as f64 / 1e3,
        cpu_user_ns_per_mib: metrics::per_mib(user, totals.bytes),
        cpu_sys_ns_per_mib: metrics::per_mib(sys, totals.bytes),
        cpu_p50_us: Some(totals.cpu.quantile_us(0.5)),
        cpu_p90_us: Some(totals.cpu.quantile_us(0.9)),
        cpu_p99_us: Some(totals.cpu.quantile_us(0.99)),
        cpu_source: Some(super::cputime::SOURCE.to_string()),
        others_cpu_ns_per_mib: metrics::per_mib(
            mine.iter().filter_map(|p| p.others_cpu_ns).sum(),
            totals.bytes,
        ),
        voluntary_switches: vol,
        involuntary_switches: invol,
        verified: verified(mine),
        kernel,
        probe_ns_per_call: probe_ns.map(|ns| metrics::per(ns, totals.calls)),
        probe_pct_of_call_time: probe_ns.map(|ns| metrics::per(ns, totals.wall_ns) * 100.0),
        buffers: calls().next().map(|c| c.buffers).unwrap_or_default(),
    }
}

/// Pattern if every pass was checked against the pattern, reference if
/// every pass was checked somehow, else skipped.
fn verified(passes: &[&Pass]) -> Verification {
    if passes.iter().all(|p| p.verified == Verification::Pattern) {
        Verification::Pattern
    } else if passes.iter().all(|p| p.verified != Verification::Skipped) {
        Verification::Reference
    } else {
        Verification::Skipped
    }
}

/// Sums the calls' kernel columns; None if any call ran without probes.
fn kernel_totals(calls: impl Iterator<Item = Option<KernelCall>>) -> Option<KernelCall> {
    let mut t = KernelCall::default();
    let mut any = false;
    for k in calls {
        t.add(&k?);
        any = true;
    }
    any.then_some(t)
}

/// What the kernel probes saw, per mode.
pub fn render_kernel_table(rows: &[ModeSummary]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\n{:<24} {:>7} {:>10} {:>9} {:>12} {:>9} {:>9} {:>10} {:>10} {:>10} {:>13} {:>8}",
        "kernel (totals)",
        "ioctls",
        "ioctl us",
        "exporter",
        "exporter us",
        "blk reqs",
        "blk MiB",
        "dev us/req",
        "on-cpu ms",
        "off-cpu ms",
        "probe ns/call",
        "probe %"
    );
    for r in rows {
        let Some(k) = &r.kernel else { continue };
        let per = |ns: u64, n: u64| metrics::per(ns, n) / 1e3;
        let _ = writeln!(
            s,
            "{:<24} {:>7} {:>10.0} {:>9} {:>12.0} {:>9} {:>9.1} {:>10.0} {:>10.1} {:>10.1} {:>13} {:>8}",
            r.mode.name(),
            k.ioctl_calls,
            per(k.ioctl_ns, k.ioctl_calls),
            k.exporter_calls,
            per(k.exporter_ns, k.exporter_calls),
            k.block_requests,
            k.block_bytes as f64 / metrics::MIB,
            per(k.block_device_ns, k.block_requests),
            k.on_cpu_ns as f64 / 1e6,
            k.off_cpu_ns as f64 / 1e6,
            r.probe_ns_per_call
                .map_or("-".into(), |ns| format!("{ns:.0}")),
            r.probe_pct_of_call_time
                .map_or("-".into(), |p| format!("{p:.3}"))
        );
    }
    s
}

/// The seed-shaped table.
pub fn render_table(rows: &[ModeSummary]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<24} {:>9} {:>10} {:>8} {:>8} {:>10} {:>9} {:>10} {:>10} {:>11} {:>12} {:>13} {:>9}",
        "mode",
        "alloc ms",
        "xfer ms",
        "sync ms",
        "free ms",
        "total ms",
        "MiB/s",
        "p50 us",
        "p99 us",
        "cpu p50 us",
        "cpu ms/GiB",
        "others ms/GiB",
        "verified"
    );
    for r in rows {
        let cpu_ms_per_gib = (r.cpu_user_ns_per_mib + r.cpu_sys_ns_per_mib) * 1024.0 / 1e6;
        let _ = writeln!(
            s,
            "{:<24} {:>9.1} {:>10.1} {:>8.1} {:>8.1} {:>10.1} {:>9.0} {:>10.0} {:>10.0} {:>11.1} {:>12.1} {:>13.1} {:>9}",
            r.mode.name(),
            r.alloc_ms,
            r.transfer_ms,
            r.sync_ms,
            r.free_ms,
            r.total_ms,
            r.mib_per_s,
            r.lat_p50_us,
            r.lat_p99_us,
            r.cpu_p50_us.unwrap_or(f64::NAN),
            cpu_ms_per_gib,
            r.others_cpu_ns_per_mib * 1024.0 / 1e6,
            match r.verified {
                Verification::Pattern => "pattern",
                Verification::Reference => "reference",
                Verification::Skipped => "no",
            }
        );
    }
    s
}

/// The seed's row names, in the seed's order, for the modes it measured.
fn seed_name(mode: Mode) -> &'static str {
    match mode {
        Mode::UdmabufRead => "udmabuf buffer read",
        Mode::UdmabufDirectRead => "udmabuf direct read",
        Mode::UdmabufSendfile => "udmabuf buffer sendfile",
        Mode::UdmabufDirectSendfile => "udmabuf direct sendfile",
        Mode::DmabufRead => "dmabuf buffer read",
        Mode::RwFileDirect => "RW_FILE direct read",
        Mode::RwFile => "RW_FILE buffer read",
        Mode::Pread => "pread (baseline)",
        Mode::PreadDirect => "pread O_DIRECT (baseline)",
        _ => "",
    }
}

const SEED_ORDER: [Mode; 9] = [
    Mode::UdmabufRead,
    Mode::UdmabufDirectRead,
    Mode::UdmabufSendfile,
    Mode::UdmabufDirectSendfile,
    Mode::DmabufRead,
    Mode::RwFileDirect,
    Mode::RwFile,
    Mode::Pread,
    Mode::PreadDirect,
];

/// The table in the seed's shape: alloc / read / total per path, plus
/// throughput, CPU, the ratio to the O_DIRECT pread baseline and the share
/// of the device's limit.
pub fn render_seed_table(rows: &[ModeSummary], limit: Option<&DeviceLimit>) -> String {
    let mut s = String::new();
    let base = rows
        .iter()
        .find(|r| r.mode == Mode::PreadDirect)
        .map(|r| r.mib_per_s);
    let _ = writeln!(
        s,
        "{:<26} {:>10} {:>10} {:>10} {:>9} {:>11} {:>13} {:>15} {:>8}  mode",
        "path",
        "alloc (ms)",
        "read (ms)",
        "total (ms)",
        "MiB/s",
        "cpu ms/GiB",
        "others ms/GiB",
        "x pread-direct",
        "% limit"
    );
    for mode in SEED_ORDER {
        let Some(r) = rows.iter().find(|r| r.mode == mode) else {
            continue;
        };
        let ratio = ratio_to(r.mib_per_s, base);
        let _ = writeln!(
            s,
            "{:<26} {:>10.0} {:>10.0} {:>10.0} {:>9.0} {:>11.1} {:>13.1} {:>15} {:>8}  {}",
            seed_name(mode),
            r.alloc_ms,
            r.transfer_ms,
            r.alloc_ms + r.transfer_ms,
            r.mib_per_s,
            (r.cpu_user_ns_per_mib + r.cpu_sys_ns_per_mib) * 1024.0 / 1e6,
            r.others_cpu_ns_per_mib * 1024.0 / 1e6,
            ratio,
            share_of(r, limit),
            mode.name()
        );
    }
    s
}

/// Every mode that ran, side by side, fastest first: its mechanism, the
/// phases, throughput, latency, CPU, the ratio to the best baseline of the
/// run (the fastest of pread, pread-direct, uring-direct) and the share of
/// the device's limit.
pub fn render_all_table(rows: &[ModeSummary], limit: Option<&DeviceLimit>) -> String {
    let mut s = String::new();
    let best = rows
        .iter()
        .filter(|r| BASELINES.contains(&r.mode))
        .max_by(|a, b| a.mib_per_s.total_cmp(&b.mib_per_s));
    let ratio_header = best.map_or("x best baseline".to_string(), |b| format!("x {}", b.mode));
    let _ = writeln!(
        s,
        "{:<24} {:<15} {:>10} {:>10} {:>10} {:>9} {:>10} {:>11} {:>18} {:>8}",
        "mode",
        "mechanism",
        "alloc (ms)",
        "I/O (ms)",
        "free (ms)",
        "MiB/s",
        "p50 (us)",
        "cpu ms/GiB",
        ratio_header,
        "% limit"
    );
    let mut sorted: Vec<&ModeSummary> = rows.iter().collect();
    sorted.sort_by(|a, b| b.mib_per_s.total_cmp(&a.mib_per_s));
    for r in sorted {
        let ratio = ratio_to(r.mib_per_s, best.map(|b| b.mib_per_s));
        let _ = writeln!(
            s,
            "{:<24} {:<15} {:>10.0} {:>10.0} {:>10.0} {:>9.0} {:>10.0} {:>11.1} {:>18} {:>8}",
            r.mode.name(),
            r.mode.mechanism().name(),
            r.alloc_ms,
            r.transfer_ms,
            r.free_ms,
            r.mib_per_s,
            r.lat_p50_us,
            (r.cpu_user_ns_per_mib + r.cpu_sys_ns_per_mib) * 1024.0 / 1e6,
            ratio,
            share_of(r, limit)
        );
    }
    // uring-direct deeper: measured with the limit, throughput only.
    if let Some(l) = limit {
        let depths = l
            .shallower
            .iter()
            .map(|d| (d.queue_depth, d.mib_per_s))
            .chain([(l.queue_depth, l.mib_per_s)]);
        for (depth, mib_per_s) in depths {
            let ratio = ratio_to(mib_per_s, best.map(|b| b.mib_per_s));
            let _ = writeln!(
                s,
                "{:<24} {:<15} {:>10} {:>10} {:>10} {:>9.0} {:>10} {:>11} {:>18} {:>8.0}",
                format!("uring-direct QD{depth}"),
                Mode::UringDirect.mechanism().name(),
                "-",
                "-",
                "-",
                mib_per_s,
                "-",
                "-",
                ratio,
                100.0 * mib_per_s / l.mib_per_s.max(f64::MIN_POSITIVE)
            );
        }
    }
    s
}

/// v4's rows (its cover letter's names, then the baselines and the other
/// interfaces beside it), for each direction. v4's "memfd direct
/// copy_file_range" row has no counterpart here: the lab kernel marks only
/// dma-bufs as memory files, and 6.12 refuses a copy between ext4 and a
/// memfd (EXDEV).
fn v4_rows(direction: Direction) -> &'static [(Mode, &'static str)] {
    match direction {
        Direction::Read => &[
            (Mode::DmabufRead, "dmabuf buffer read"),
            (Mode::UdmabufDirectRead, "udmabuf + memfd direct read"),
            (Mode::UdmabufCfr, "udmabuf buffer copy_file_range"),
            (Mode::UdmabufCfrDirect, "udmabuf direct copy_file_range"),
            (Mode::Cfr, "dmabuf buffer copy_file_range"),
            (Mode::CfrDirect, "dmabuf direct copy_file_range"),
            (Mode::RwFileDirect, "dmabuf direct RW_FILE (v2)"),
            (Mode::UdmabufUringDirect, "udmabuf io_uring direct"),
            (Mode::UringDirect, "io_uring direct (baseline)"),
            (Mode::PreadDirect, "pread O_DIRECT (baseline)"),
        ],
        Direction::Write => &[
            (Mode::DmabufWrite, "dmabuf buffer write"),
            (Mode::UdmabufCfr, "udmabuf buffer copy_file_range"),
            (Mode::UdmabufCfrDirect, "udmabuf direct copy_file_range"),
            (Mode::Cfr, "dmabuf buffer copy_file_range"),
            (Mode::CfrDirect, "dmabuf direct copy_file_range"),
            (Mode::RwFileDirect, "dmabuf direct RW_FILE (v2)"),
            (Mode::UdmabufUringDirect, "udmabuf io_uring direct"),
            (Mode::UringDirect, "io_uring direct (baseline)"),
            (Mode::PwriteDirect, "pwrite O_DIRECT (baseline)"),
        ],
    }
}

/// The table in v4's shape (create / close / I/O ms and throughput per
/// path), read or write, with the ratio to the direct pread/pwrite baseline
/// and the share of the device's limit.
pub fn render_v4_table(
    rows: &[ModeSummary],
    direction: Direction,
    limit: Option<&DeviceLimit>,
) -> String {
    let mut s = String::new();
    let baseline = match direction {
        Direction::Read => Mode::PreadDirect,
        Direction::Write => Mode::PwriteDirect,
    };
    let base = rows
        .iter()
        .find(|r| r.mode == baseline)
        .map(|r| r.mib_per_s);
    let _ = writeln!(
        s,
        "{:<32} {:>11} {:>10} {:>9} {:>9} {:>11} {:>15} {:>8}  mode",
        format!("path ({direction})"),
        "create (ms)",
        "close (ms)",
        "I/O (ms)",
        "MiB/s",
        "cpu ms/GiB",
        format!("x {baseline}"),
        "% limit"
    );
    for (mode, name) in v4_rows(direction) {
        let Some(r) = rows.iter().find(|r| r.mode == *mode) else {
            continue;
        };
        let ratio = ratio_to(r.mib_per_s, base);
        let _ = writeln!(
            s,
            "{:<32} {:>11.0} {:>10.0} {:>9.0} {:>9.0} {:>11.1} {:>15} {:>8}  {}",
            name,
            r.alloc_ms,
            r.free_ms,
            r.transfer_ms,
            r.mib_per_s,
            (r.cpu_user_ns_per_mib + r.cpu_sys_ns_per_mib) * 1024.0 / 1e6,
            ratio,
            share_of(r, limit),
            mode.name()
        );
    }
    s
}

/// `mib_per_s` over a baseline's, "-" without one.
fn ratio_to(mib_per_s: f64, baseline: Option<f64>) -> String {
    match baseline {
        Some(b) if b > 0.0 => format!("{:.2}", mib_per_s / b),
        _ => "-".into(),
    }
}

/// The paths any kernel has: what a new interface must beat.
const BASELINES: [Mode; 3] = [Mode::Pread, Mode::PreadDirect, Mode::UringDirect];

/// The row's throughput as a % of the device's limit ("-" unmeasured).
fn share_of(r: &ModeSummary, limit: Option<&DeviceLimit>) -> String {
    match limit {
        Some(l) if l.mib_per_s > 0.0 => format!("{:.0}", 100.0 * r.mib_per_s / l.mib_per_s),
        _ => "-".into(),
    }
}

/// The line under a table saying what the limit is, or why it is missing.
pub fn render_limit(limit: &Result<DeviceLimit, String>, direction: Direction) -> String {
    match limit {
        Ok(l) => format!(
            "device limit: {:.0} MiB/s (uring-direct: io_uring O_DIRECT {direction}s, queue depth {}, same file and chunk, cold cache, median of {} pass(es), measured after the paths above)\n",
            l.mib_per_s, l.queue_depth, l.passes
        ),
        Err(why) => format!("device limit: not measured: {why}\n"),
    }
}
