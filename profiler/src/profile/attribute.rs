//! The calls' time line: which call each thread had in flight at a given
//! kernel-monotonic instant, so a sample lands in its call's bucket.
use std::collections::{BTreeSet, HashMap};

use profiler_common::call::CallEvent;

use crate::workload::Outcome;

/// Samples of a call thread outside any call: the caller's own work
/// (dmaprof's accounting between its timed calls, or the application's).
pub const BETWEEN_CALLS: &str = "between calls";
/// Samples of the process's other threads (dmaprof's agent, for one).
pub const OTHER_THREADS: &str = "other threads";

/// One call on the time line, in kernel monotonic ns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallSpan {
    pub tid: u32,
    pub start_ns: u64,
    pub end_ns: u64,
    /// The bucket its samples go to (the mode, or the kind of call).
    pub bucket: String,
}

pub struct Timeline {
    /// Per thread, the calls sorted by start.
    calls: HashMap<u32, Vec<CallSpan>>,
    /// Threads whose samples outside calls are "between calls".
    call_threads: BTreeSet<u32>,
}

impl Timeline {
    /// `call_threads` also counts threads that made no call yet (the
    /// workload thread before its first one).
    pub fn new(spans: Vec<CallSpan>, call_threads: &[u32]) -> Timeline {
        let mut calls: HashMap<u32, Vec<CallSpan>> = HashMap::new();
        let mut threads: BTreeSet<u32> = call_threads.iter().copied().collect();
        for s in spans {
            threads.insert(s.tid);
            calls.entry(s.tid).or_default().push(s);
        }
        for v in calls.values_mut() {
            v.sort_by_key(|s| s.start_ns);
        }
        Timeline {
            calls,
            call_threads: threads,
        }
    }

    /// The bucket of an instant on a thread.
    pub fn bucket(&self, tid: u32, time_ns: u64) -> &str {
        if let Some(calls) = self.calls.get(&tid) {
            // The last call that started at or before the instant.
            let i = calls.partition_point(|c| c.start_ns <= time_ns);
            if let Some(c) = i.checked_sub(1).map(|i| &calls[i])
                && time_ns < c.end_ns
            {
                return &c.bucket;
            }
        }
        if self.call_threads.contains(&tid) {
            BETWEEN_CALLS
        } else {
            OTHER_THREADS
        }
    }
}

/// A run's calls on the kernel's clock, each in its mode's bucket; `tid`
/// is the workload thread (its samples outside calls are between calls).
pub fn run_timeline(outcome: &Outcome, tid: u32) -> Timeline {
    let spans = outcome
        .passes
        .iter()
        .flat_map(|p| &p.calls)
        .map(|c| CallSpan {
            tid: c.tid,
            start_ns: outcome.epoch_mono_ns + c.start_ns,
            end_ns: outcome.epoch_mono_ns + c.start_ns + c.wall_ns,
            bucket: c.mode.name().to_string(),
        })
        .collect();
    Timeline::new(spans, &[tid])
}

/// A trace's calls (ioctls and preads, from the ring), each in the bucket
/// its kind of call has in the trace's dashboard.
pub fn trace_timeline(events: &[CallEvent]) -> Timeline {
    let spans = events
        .iter()
        .map(|e| CallSpan {
            tid: e.tid,
            start_ns: e.start_ns,
            end_ns: e.start_ns + e.duration_ns,
            bucket: crate::probes::events::name(e).into_owned(),
        })
        .collect();
    Timeline::new(spans, &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instant_is_in_its_calls_bucket_else_between_or_other() {
        let span = |start_ns, end_ns, bucket: &str| CallSpan {
            tid: 1,
            start_ns,
            end_ns,
            bucket: bucket.into(),
        };
        let t = Timeline::new(vec![span(300, 400, "b"), span(100, 200, "a")], &[2]);
        assert_eq!(t.bucket(1, 100), "a");
        assert_eq!(t.bucket(1, 199), "a");
        assert_eq!(t.bucket(1, 200), BETWEEN_CALLS);
        assert_eq!(t.bucket(1, 50), BETWEEN_CALLS);
        assert_eq!(t.bucket(1, 350), "b");
        assert_eq!(t.bucket(1, 401), BETWEEN_CALLS);
        assert_eq!(t.bucket(2, 150), BETWEEN_CALLS);
        assert_eq!(t.bucket(3, 150), OTHER_THREADS);
    }
}
