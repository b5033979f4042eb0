//! Where the time goes, as stacks: every on-CPU sample and off-CPU interval
//! of the traced process, put on the calls' time line (the call in flight
//! on its thread, "between calls", or "other threads"), symbolized with
//! blazesym, and folded per bucket in Brendan Gregg's `frame;frame count`
//! form (user frames outermost, then kernel frames marked `_[k]`), with the
//! top kernel functions of each bucket.
pub mod attribute;
pub mod live;
pub mod report;
pub mod symbols;
pub mod top;

use std::collections::{BTreeMap, HashMap};

use profiler_common::profile::{SAMPLE_OFF_CPU, SAMPLE_ON_CPU, StackSample};
use serde::{Deserialize, Serialize};

use crate::probes::profile::ProfileLost;
pub use attribute::{
    BETWEEN_CALLS, CallSpan, OTHER_THREADS, Timeline, run_timeline, trace_timeline,
};
pub use top::TopFunction;

/// A kernel frame's mark in folded stacks (flamegraph.pl's and inferno's).
pub const KERNEL_MARK: &str = "_[k]";

/// One bucket's stacks: a mode (or a kind of traced call), the time
/// between its calls, or the process's other threads.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stacks {
    /// On-CPU samples per folded stack.
    pub on_cpu: BTreeMap<String, u64>,
    /// Off-CPU microseconds per folded stack.
    pub off_cpu_us: BTreeMap<String, u64>,
}

impl Stacks {
    pub fn samples(&self) -> u64 {
        self.on_cpu.values().sum()
    }

    pub fn off_cpu_us(&self) -> u64 {
        self.off_cpu_us.values().sum()
    }
}

/// A run's (or a trace's) profile.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Samples per second per CPU.
    pub hz: u64,
    pub buckets: BTreeMap<String, Stacks>,
    pub limits: Limits,
}

/// What the profile could not see, counted (never silently dropped).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// On-CPU samples and off-CPU intervals received.
    pub samples: u64,
    pub off_cpu_intervals: u64,
    /// Lost in the kernel: ring full, off-CPU start not stored.
    pub lost: ProfileLost,
    /// A stack the stack-trace map could not hold (a full bucket: EEXIST),
    /// or that was gone before it was read.
    pub kernel_stacks_lost: u64,
    pub user_stacks_lost: u64,
    /// Frames no symbol was found for (shown as `[unknown]`).
    pub unknown_frames: u64,
}

/// Builds the profile: each sample placed on `timeline`, its stacks' frames
/// (from the stack-trace map) symbolized, folded per bucket.
pub fn build(
    hz: u64,
    samples: &[StackSample],
    frames: &HashMap<u32, Vec<u64>>,
    lost: ProfileLost,
    timeline: &Timeline,
    symbols: &mut symbols::Symbols,
) -> Profile {
    let mut limits = Limits {
        lost,
        ..Limits::default()
    };
    // EFAULT: no stack of that kind to walk (a sample taken in user mode has
    // no kernel stack), not a loss; any other error lost the stack.
    let stack = |id: i64, missing: &mut u64| -> &[u64] {
        match u32::try_from(id).ok().and_then(|id| frames.get(&id)) {
            Some(f) => f,
            None if id == -(libc::EFAULT as i64) => &[],
            None => {
                *missing += 1;
                &[]
            }
        }
    };
    // Symbolize every address once, in two batches.
    let mut kernel_addrs = Vec::new();
    let mut user_addrs: HashMap<u32, Vec<u64>> = HashMap::new();
    for s in samples {
        let (mut k, mut u) = (0, 0);
        kernel_addrs.extend_from_slice(stack(s.kernel_stack, &mut k));
        user_addrs
            .entry(s.tgid)
            .or_default()
            .extend_from_slice(stack(s.user_stack, &mut u));
    }
    symbols.learn_kernel(&kernel_addrs);
    for (pid, addrs) in &user_addrs {
        symbols.learn_user(*pid, addrs);
    }

    let mut buckets: BTreeMap<String, Stacks> = BTreeMap::new();
    for s in samples {
        let kernel = stack(s.kernel_stack, &mut limits.kernel_stacks_lost);
        let user = stack(s.user_stack, &mut limits.user_stacks_lost);
        let folded = fold(s.tgid, user, kernel, symbols, &mut limits.unknown_frames);
        let bucket = buckets
            .entry(timeline.bucket(s.tid, s.time_ns).to_string())
            .or_default();
        match s.kind {
            SAMPLE_ON_CPU => {
                limits.samples += 1;
                *bucket.on_cpu.entry(folded).or_default() += 1;
            }
            SAMPLE_OFF_CPU => {
                limits.off_cpu_intervals += 1;
                *bucket.off_cpu_us.entry(folded).or_default() += s.duration_ns / 1000;
            }
            _ => {}
        }
    }
    Profile {
        hz,
        buckets,
        limits,
    }
}

/// Ends a collection: the samples put on `timeline` and symbolized. A
/// failure is reported on stderr and leaves no profile (the run's other
/// results stand).
pub fn finish(
    rt: &tokio::runtime::Runtime,
    hz: u64,
    collector: crate::probes::profile::Collector,
    lost: anyhow::Result<ProfileLost>,
    timeline: &Timeline,
    symbols: &mut symbols::Symbols,
) -> Option<Profile> {
    let built = collector
        .finish(rt)
        .and_then(|c| Ok(build(hz, &c.samples, &c.frames, lost?, timeline, symbols)));
    built
        .map_err(|e| eprintln!("dmaprof: WARNING: no profile: {e:#}"))
        .ok()
}

/// One folded stack: user frames outermost first, then kernel frames.
/// Stack-trace maps hold the innermost frame first, hence the reversal.
fn fold(
    pid: u32,
    user: &[u64],
    kernel: &[u64],
    symbols: &symbols::Symbols,
    unknown: &mut u64,
) -> String {
    let mut frames: Vec<String> = Vec::with_capacity(user.len() + kernel.len());
    for &ip in user.iter().rev() {
        frames.push(symbols.user(pid, ip, unknown));
    }
    for &ip in kernel.iter().rev() {
        frames.push(format!("{}{KERNEL_MARK}", symbols.kernel(ip, unknown)));
    }
    if frames.is_empty() {
        frames.push("[no stack]".into());
    }
    frames.join(";")
}

/// Folded lines (`stack count`) of a bucket's on- or off-CPU stacks.
pub fn folded_lines(stacks: &BTreeMap<String, u64>) -> Vec<String> {
    stacks
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(s, n)| format!("{s} {n}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(kind: u32, tid: u32, time_ns: u64, k: i64, u: i64) -> StackSample {
        StackSample {
            kind,
            tgid: 7,
            tid,
            time_ns,
            duration_ns: 2_000,
            kernel_stack: k,
            user_stack: u,
            ..Default::default()
        }
    }

    #[test]
    fn samples_fold_per_bucket_outermost_first_and_losses_are_counted() {
        let mut frames = HashMap::new();
        // Innermost first, as the stack-trace map returns them.
        frames.insert(1, vec![0xffff_0002, 0xffff_0001]);
        frames.insert(2, vec![0x2000, 0x1000]);
        let timeline = Timeline::new(
            vec![CallSpan {
                tid: 10,
                start_ns: 100,
                end_ns: 200,
                bucket: "pread".into(),
            }],
            &[10],
        );
        let mut symbols = symbols::Symbols::fixed(
            [(0xffff_0001, "ksys_pread64"), (0xffff_0002, "filemap_read")],
            [(0x1000, "main"), (0x2000, "read_at")],
        );
        let samples = [
            sample(SAMPLE_ON_CPU, 10, 150, 1, 2),
            sample(SAMPLE_ON_CPU, 10, 150, 1, 2),
            sample(SAMPLE_ON_CPU, 10, 250, -17, 2),
            sample(SAMPLE_ON_CPU, 10, 260, -14, 2),
            sample(SAMPLE_OFF_CPU, 11, 150, 1, -17),
        ];
        let p = build(
            99,
            &samples,
            &frames,
            ProfileLost::default(),
            &timeline,
            &mut symbols,
        );
        let pread = &p.buckets["pread"];
        assert_eq!(
            folded_lines(&pread.on_cpu),
            ["main;read_at;ksys_pread64_[k];filemap_read_[k] 2"]
        );
        // A lost kernel stack and a user-mode sample (EFAULT: none to walk).
        assert_eq!(
            folded_lines(&p.buckets[BETWEEN_CALLS].on_cpu),
            ["main;read_at 2"]
        );
        assert_eq!(
            p.buckets[OTHER_THREADS].off_cpu_us["ksys_pread64_[k];filemap_read_[k]"],
            2
        );
        assert_eq!(p.limits.samples, 4);
        assert_eq!(p.limits.off_cpu_intervals, 1);
        assert_eq!(
            (p.limits.kernel_stacks_lost, p.limits.user_stacks_lost),
            (1, 1)
        );
    }
}
