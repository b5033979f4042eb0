//! What the probes did not see, counted and said: a number dmaprof does not
//! have is a number it says it does not have.
//!
//! Besides the probes' own counters (ring full, maps full, block completions
//! whose start was not seen, requests never completed), the kernel counts
//! every run of a program it skipped: a classic tracepoint or kprobe program
//! is not run while another BPF program, or a `bpf()` map syscall, holds the
//! CPU's `bpf_prog_active` (since 6.7 it counts that); a BTF-typed or raw
//! tracepoint program only when it would recurse into itself. Those counts,
//! `recursion_misses` in `bpf_prog_info`, are read per program from the
//! program fd's `/proc/self/fdinfo` entry (aya's `ProgramInfo` does not
//! expose the field; the fdinfo lines are the kernel's stable text form).
use std::{
    collections::{BTreeMap, BTreeSet},
    os::fd::AsFd as _,
    os::fd::AsRawFd as _,
};

use anyhow::{Context, Result};
use aya::{Ebpf, maps::PerCpuArray};
use profiler_common::{
    block::{Inflight, InflightKey},
    call::lost,
};
use serde::Serialize;

use super::block;

/// Events the probes could not record, over the session.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Lost {
    pub ringbuf_full: u64,
    pub pending_map_full: u64,
    pub block_inflight_map_full: u64,
    pub block_totals_map_full: u64,
    /// Block completions whose start the probes did not see, more than a
    /// second after they were armed (absent in older files).
    #[serde(default)]
    pub block_unmatched_completions: u64,
    /// Block requests of the traced processes started more than a second
    /// before the end and never seen completing: counted once, at the end.
    #[serde(default)]
    pub block_left_in_flight: u64,
    /// Block requests of the traced processes the probes still hold as in
    /// flight at the end, started in the last second, that their device no
    /// longer has in flight: completions the probes did not see (no program
    /// run for them, and none counted as skipped), or requests merged into
    /// another. Counted once, at the end (absent in older files).
    #[serde(default)]
    pub block_completions_not_seen: u64,
    /// Runs of the programs the kernel skipped, all programs.
    #[serde(default)]
    pub recursion_misses: u64,
    /// The same, per program that missed any.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub recursion_misses_by_program: BTreeMap<String, u64>,
    /// Not a loss: block completions in the second after arming whose
    /// start came before it (requests already in flight).
    #[serde(default)]
    pub block_completions_started_before: u64,
    /// Not a loss: the traced processes' requests started in the last
    /// second and still in flight when the session ended (readahead a
    /// process left behind as it exited).
    #[serde(default)]
    pub block_in_flight_at_end: u64,
}

impl Lost {
    /// Every event missed (what `--strict` fails on).
    pub fn total(&self) -> u64 {
        self.by_reason().iter().map(|(_, _, n)| n).sum()
    }

    /// Each reason: its label (the metrics'), what it means, its count.
    pub fn by_reason(&self) -> [(&'static str, &'static str, u64); 8] {
        [
            ("ringbuf_full", "ring buffer full", self.ringbuf_full),
            (
                "pending_map_full",
                "no task storage for a call in flight",
                self.pending_map_full,
            ),
            (
                "block_inflight_map_full",
                "block in-flight map full",
                self.block_inflight_map_full,
            ),
            (
                "block_totals_map_full",
                "block totals map full",
                self.block_totals_map_full,
            ),
            (
                "block_unmatched_completions",
                "block completions whose start was not seen",
                self.block_unmatched_completions,
            ),
            (
                "block_left_in_flight",
                "block requests never seen completing",
                self.block_left_in_flight,
            ),
            (
                "block_completions_not_seen",
                "block completions the probes did not see",
                self.block_completions_not_seen,
            ),
            (
                "recursion_misses",
                "program runs the kernel skipped",
                self.recursion_misses,
            ),
        ]
    }

    /// The closing line of a run or a trace: every event seen, or what was
    /// lost and where.
    pub fn verdict(&self) -> String {
        let mut notes = Vec::new();
        if self.block_completions_started_before > 0 {
            notes.push(format!(
                "{} block completions of requests started before the probes were armed not counted",
                self.block_completions_started_before
            ));
        }
        if self.block_in_flight_at_end > 0 {
            notes.push(format!(
                "{} block requests still in flight at the end",
                self.block_in_flight_at_end
            ));
        }
        let before = match notes.is_empty() {
            true => String::new(),
            false => format!(" ({})", notes.join("; ")),
        };
        if self.total() == 0 {
            return format!("probes: every event was seen{before}");
        }
        format!("probes: LOST {} events: {self}{before}", self.total())
    }
}

impl std::fmt::Display for Lost {
    /// "none", or each non-zero reason with its count (and the programs
    /// that missed runs).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .by_reason()
            .iter()
            .filter(|(_, _, n)| *n > 0)
            .map(|(label, why, n)| match *label {
                "recursion_misses" => {
                    let by: Vec<String> = self
                        .recursion_misses_by_program
                        .iter()
                        .map(|(p, n)| format!("{p} {n}"))
                        .collect();
                    format!("{n} ({why}: {})", by.join(", "))
                }
                _ => format!("{n} ({why})"),
            })
            .collect();
        if parts.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

/// What the session lost so far. `at_end` also counts the traced
/// processes' requests still in flight (during a session they are work in
/// progress; once it ends, completions never seen).
pub fn read(ebpf: &Ebpf, filter_tgid: Option<u32>, at_end: bool) -> Result<Lost> {
    let counters: PerCpuArray<_, u64> =
        PerCpuArray::try_from(ebpf.map("CALL_LOST").context("CALL_LOST")?)?;
    let call = |i: u32| -> Result<u64> { Ok(counters.get(&i, 0)?.iter().sum()) };
    let b = block::lost_events(ebpf).unwrap_or_default();
    let by_program = recursion_misses(ebpf);
    let left = match at_end {
        true => left_in_flight(ebpf, filter_tgid).unwrap_or_default(),
        false => LeftInFlight::default(),
    };
    Ok(Lost {
        ringbuf_full: call(lost::RINGBUF_FULL)?,
        pending_map_full: call(lost::PENDING_FULL)?,
        block_inflight_map_full: b.inflight_map_full,
        block_totals_map_full: b.totals_map_full,
        block_unmatched_completions: b.unmatched_completions,
        block_left_in_flight: left.stale,
        block_completions_not_seen: left.not_seen,
        recursion_misses: by_program.values().sum(),
        recursion_misses_by_program: by_program,
        block_completions_started_before: b.unmatched_at_start,
        block_in_flight_at_end: left.recent,
    })
}

/// Each loaded program's `recursion_misses`, the non-zero ones.
fn recursion_misses(ebpf: &Ebpf) -> BTreeMap<String, u64> {
    ebpf.programs()
        .filter_map(|(name, p)| {
            let fd = p.fd().ok()?.as_fd().as_raw_fd();
            let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).ok()?;
            let n = fdinfo_field(&info, "recursion_misses")?;
            (n > 0).then(|| (name.to_string(), n))
        })
        .collect()
}

/// `name:\tvalue` in an fdinfo text.
fn fdinfo_field(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|v| v.trim().parse().ok())
}

/// The traced processes' requests left in the in-flight map at the end.
#[derive(Debug, Default, PartialEq, Eq)]
struct LeftInFlight {
    /// Started over a second ago: a completion missed.
    stale: u64,
    /// Younger, and the device has none of them in flight any more:
    /// completions the probes did not see.
    not_seen: u64,
    /// Younger, and possibly still on the device: work in progress.
    recent: u64,
}

/// Sorts the traced process's in-flight entries (every process's without a
/// filter). The block programs track every process's requests, so per
/// device, the recent issued entries beyond what the device says it has in
/// flight (`/sys/dev/block/M:m/inflight`, read before and after the map,
/// the larger kept) are requests whose completion no program saw.
fn left_in_flight(ebpf: &Ebpf, filter_tgid: Option<u32>) -> Result<LeftInFlight> {
    let devs: BTreeSet<u32> = block::in_flight(ebpf)?.iter().map(|(k, _)| k.dev).collect();
    let before: BTreeMap<u32, Option<u64>> = devs
        .iter()
        .map(|&d| (d, block::device_in_flight(d)))
        .collect();
    let entries = block::in_flight(ebpf)?;
    let now = crate::workload::monotonic_ns();
    let mut device_in_flight = |dev: u32| -> Option<u64> {
        let after = block::device_in_flight(dev)?;
        Some(before.get(&dev).copied().flatten()?.max(after))
    };
    Ok(classify(&entries, filter_tgid, now, &mut device_in_flight))
}

/// [`left_in_flight`] on given entries and device counts (None: unknown).
fn classify(
    entries: &[(InflightKey, Inflight)],
    filter_tgid: Option<u32>,
    now: u64,
    device_in_flight: &mut dyn FnMut(u32) -> Option<u64>,
) -> LeftInFlight {
    let traced = |v: &Inflight| filter_tgid.is_none_or(|t| t == v.tgid);
    let recent = |v: &Inflight| now.saturating_sub(v.start_ns) <= 1_000_000_000;
    let mut left = LeftInFlight::default();
    // Per device: recent issued entries, every process's and the traced ones'.
    let mut issued: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
    for (k, v) in entries {
        match (recent(v), traced(v)) {
            (false, true) => left.stale += 1,
            (false, false) => {}
            (true, traced) => {
                left.recent += traced as u64;
                if v.issue_ns != 0 {
                    let n = issued.entry(k.dev).or_default();
                    n.0 += 1;
                    n.1 += traced as u64;
                }
            }
        }
    }
    for (dev, (all, mine)) in issued {
        if let Some(on_device) = device_in_flight(dev) {
            let gone = all.saturating_sub(on_device).min(mine);
            left.not_seen += gone;
            left.recent -= gone;
        }
    }
    left
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(
        dev: u32,
        sector: u64,
        tgid: u32,
        age_ms: u64,
        issued: bool,
    ) -> (InflightKey, Inflight) {
        let now = 10_000_000_000;
        let start_ns = now - age_ms * 1_000_000;
        (
            InflightKey {
                dev,
                _pad: 0,
                sector,
            },
            Inflight {
                tgid,
                tid: tgid,
                remaining_bytes: 4096,
                start_ns,
                issue_ns: if issued { start_ns + 1 } else { 0 },
            },
        )
    }

    #[test]
    fn requests_the_device_no_longer_has_are_completions_not_seen() {
        let now = 10_000_000_000;
        let entries = [
            entry(1, 0, 7, 5, true),     // traced, recent, issued
            entry(1, 8, 7, 5, true),     // traced, recent, issued
            entry(1, 16, 7, 5, false),   // traced, recent, not issued yet
            entry(1, 24, 9, 5, true),    // another process's, recent, issued
            entry(1, 32, 7, 3000, true), // traced, stale
            entry(2, 0, 7, 5, true),     // traced, on a device of unknown count
        ];
        // Device 1 has one request in flight: of the three recent issued
        // entries there, two completed unseen, charged to the traced process.
        let mut on_device = |dev: u32| (dev == 1).then_some(1);
        let left = classify(&entries, Some(7), now, &mut on_device);
        assert_eq!(
            left,
            LeftInFlight {
                stale: 1,
                not_seen: 2,
                recent: 2,
            }
        );
        // Everything still on the device: nothing unseen.
        let mut busy = |_| Some(10);
        let left = classify(&entries, Some(7), now, &mut busy);
        assert_eq!((left.not_seen, left.recent), (0, 4));
        // Another process's unseen completions are not charged to the traced one.
        let mut idle = |_| Some(0);
        let left = classify(&entries[3..4], Some(7), now, &mut idle);
        assert_eq!(left, LeftInFlight::default());
    }

    #[test]
    fn reads_an_fdinfo_field() {
        let text = "pos:\t0\nflags:\t02000002\nprog_type:\t5\nrun_time_ns:\t0\nrun_cnt:\t0\nrecursion_misses:\t17\nverified_insns:\t42\n";
        assert_eq!(fdinfo_field(text, "recursion_misses"), Some(17));
        assert_eq!(fdinfo_field(text, "run_cnt"), Some(0));
        assert_eq!(fdinfo_field(text, "missing"), None);
    }

    #[test]
    fn the_verdict_names_every_loss_and_only_losses() {
        let mut l = Lost {
            block_completions_started_before: 3,
            ..Lost::default()
        };
        assert_eq!(l.total(), 0);
        assert!(
            l.verdict()
                .starts_with("probes: every event was seen (3 block")
        );
        l.recursion_misses = 5;
        l.recursion_misses_by_program
            .insert("block_rq_complete".into(), 5);
        l.block_left_in_flight = 1;
        l.block_completions_not_seen = 2;
        assert_eq!(l.total(), 8);
        let v = l.verdict();
        assert!(v.contains("LOST 8 events"), "{v}");
        assert!(
            v.contains("2 (block completions the probes did not see)"),
            "{v}"
        );
        assert!(v.contains("block_rq_complete 5"), "{v}");
        assert!(
            v.contains("1 (block requests never seen completing)"),
            "{v}"
        );
    }
}
