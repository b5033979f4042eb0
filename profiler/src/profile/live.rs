//! The profile while the run goes, for the dashboard: each on-CPU sample is
//! held until its thread's calls have reached its instant (the call in
//! flight when it was taken ends after the sample arrives), then counted in
//! its call's bucket. Bounded: recent calls only (a window of kernel time
//! and a cap per thread), pending samples capped, and what either bound
//! pushes out is counted as unattributed, never guessed.
use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
};

use super::{BETWEEN_CALLS, top::FunctionCounts};

/// Calls kept per thread: those ending within this much kernel time of
/// the newest (samples arrive tens of ms after they are taken) ...
const SPAN_WINDOW_NS: u64 = 2_000_000_000;
/// ... and at most this many (8 MiB a thread of 4 KiB page-cache preads).
const SPANS_PER_THREAD: usize = 1 << 18;
/// Samples waiting for their thread's calls to reach them.
const PENDING_SAMPLES: usize = 1 << 16;

/// One on-CPU sample: its thread, its instant (kernel monotonic ns) and
/// its kernel frames, outermost first (empty: taken in user mode).
#[derive(Debug, Clone)]
pub struct LiveSample {
    pub tid: u32,
    pub time_ns: u64,
    pub kernel: Arc<[Arc<str>]>,
}

#[derive(Debug, Clone)]
struct Span {
    start_ns: u64,
    end_ns: u64,
    bucket: Arc<str>,
}

#[derive(Debug, Default)]
pub struct LiveProfile {
    spans: HashMap<u32, VecDeque<Span>>,
    /// Per thread, the end of the last call pushed out of `spans`: a sample
    /// before it can no longer be placed.
    forgotten_until: HashMap<u32, u64>,
    /// Per thread, in the order they came (nearly time order: a thread
    /// runs on one CPU at a time).
    pending: HashMap<u32, VecDeque<LiveSample>>,
    /// Samples pending, over every thread; the oldest thread's first go
    /// when over the cap.
    pending_count: usize,
    buckets: HashMap<Arc<str>, FunctionCounts>,
    /// Samples no call could be found for (pushed out by the bounds).
    pub unattributed: u64,
}

impl LiveProfile {
    /// A call of `bucket` on `tid`, in kernel monotonic ns; a thread's calls
    /// come in the order they ended.
    pub fn call(&mut self, tid: u32, start_ns: u64, end_ns: u64, bucket: &str) {
        let spans = self.spans.entry(tid).or_default();
        let bucket = match spans.back() {
            Some(s) if &*s.bucket == bucket => s.bucket.clone(),
            _ => self
                .buckets
                .keys()
                .find(|b| &***b == bucket)
                .cloned()
                .unwrap_or_else(|| Arc::from(bucket)),
        };
        spans.push_back(Span {
            start_ns,
            end_ns,
            bucket,
        });
        while spans.len() > SPANS_PER_THREAD
            || spans
                .front()
                .is_some_and(|s| s.end_ns + SPAN_WINDOW_NS < end_ns)
        {
            let gone = spans.pop_front().expect("front exists");
            self.forgotten_until.insert(tid, gone.end_ns);
        }
        self.settle(tid);
    }

    pub fn samples(&mut self, samples: impl IntoIterator<Item = LiveSample>) {
        let mut threads = Vec::new();
        for s in samples {
            if !threads.contains(&s.tid) {
                threads.push(s.tid);
            }
            self.pending.entry(s.tid).or_default().push_back(s);
            self.pending_count += 1;
        }
        while self.pending_count > PENDING_SAMPLES {
            let oldest = self
                .pending
                .iter()
                .filter_map(|(tid, q)| q.front().map(|s| (s.time_ns, *tid)))
                .min()
                .map(|(_, tid)| tid);
            let Some(q) = oldest.and_then(|tid| self.pending.get_mut(&tid)) else {
                break;
            };
            let n = (self.pending_count - PENDING_SAMPLES).min(q.len());
            q.drain(..n);
            self.pending_count -= n;
            self.unattributed += n as u64;
        }
        for tid in threads {
            self.settle(tid);
        }
    }

    /// Counts the thread's pending samples its calls have reached.
    fn settle(&mut self, tid: u32) {
        let (Some(spans), Some(queue)) = (self.spans.get(&tid), self.pending.get_mut(&tid)) else {
            return;
        };
        let forgotten_until = self.forgotten_until.get(&tid).copied().unwrap_or(0);
        while let Some(s) = queue.front() {
            let bucket = match bucket_of(spans, s.time_ns, forgotten_until) {
                Placed::Waiting => break,
                Placed::Gone => None,
                Placed::In(bucket) => Some(bucket.clone()),
                Placed::Between => Some(Arc::from(BETWEEN_CALLS)),
            };
            let s = queue.pop_front().expect("front exists");
            self.pending_count -= 1;
            match bucket {
                Some(b) => {
                    self.buckets
                        .entry(b)
                        .or_default()
                        .add(&s.kernel, !s.kernel.is_empty(), 1)
                }
                None => self.unattributed += 1,
            }
        }
    }

    /// The counts of a bucket's samples so far.
    pub fn bucket(&self, name: &str) -> Option<&FunctionCounts> {
        self.buckets.get(name)
    }

    /// 'r': counts restart; calls and pending samples stay (they place
    /// samples still to come).
    pub fn reset(&mut self) {
        self.buckets.clear();
        self.unattributed = 0;
    }
}

enum Placed<'a> {
    /// The thread's calls have not reached the instant yet.
    Waiting,
    /// Before the end of a call no longer kept.
    Gone,
    In(&'a Arc<str>),
    Between,
}

fn bucket_of(spans: &VecDeque<Span>, t: u64, forgotten_until: u64) -> Placed<'_> {
    match spans.back() {
        None => Placed::Waiting,
        Some(last) if t >= last.end_ns => Placed::Waiting,
        Some(_) if t < forgotten_until => Placed::Gone,
        Some(_) => {
            let i = spans.partition_point(|s| s.start_ns <= t);
            match i.checked_sub(1).map(|i| &spans[i]) {
                Some(s) if t < s.end_ns => Placed::In(&s.bucket),
                _ => Placed::Between,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(tid: u32, time_ns: u64, kernel: &[&str]) -> LiveSample {
        LiveSample {
            tid,
            time_ns,
            kernel: kernel.iter().map(|f| Arc::from(*f)).collect(),
        }
    }

    #[test]
    fn a_sample_waits_for_its_call_then_counts_in_its_bucket() {
        let mut p = LiveProfile::default();
        p.call(1, 100, 200, "pread");
        // Taken during a call that has not ended yet: it waits.
        p.samples([
            sample(1, 150, &["ksys_pread64", "filemap_read"]),
            sample(1, 250, &["ksys_pread64", "copy_page_to_iter"]),
            sample(1, 210, &[]),
        ]);
        assert_eq!(p.bucket("pread").unwrap().samples(), 1);
        assert!(p.bucket(BETWEEN_CALLS).is_none());
        p.call(1, 240, 300, "pread-direct");
        assert_eq!(p.bucket(BETWEEN_CALLS).unwrap().samples(), 1);
        let direct = p.bucket("pread-direct").unwrap();
        assert_eq!(direct.samples(), 1);
        assert_eq!(direct.top(1)[0].function, "copy_page_to_iter");
        let pread = p.bucket("pread").unwrap().top(5);
        assert_eq!(
            (pread[0].function.as_str(), pread[0].self_pct),
            ("filemap_read", 100.0)
        );
        assert_eq!(pread[1].total_pct, 100.0);
        // A thread that never made a call waits; before the first call is
        // between calls.
        p.samples([sample(2, 150, &["x"]), sample(1, 50, &["y"])]);
        assert_eq!(p.bucket(BETWEEN_CALLS).unwrap().samples(), 2);
        assert_eq!(p.unattributed, 0);
        p.reset();
        assert!(p.bucket("pread").is_none());
    }

    #[test]
    fn stays_bounded() {
        let mut p = LiveProfile::default();
        for i in 0..(SPANS_PER_THREAD as u64 + 10) {
            p.call(1, i * 10, i * 10 + 5, "pread");
        }
        assert_eq!(p.spans[&1].len(), SPANS_PER_THREAD);
        // A call much later pushes every older one out of the window.
        p.call(1, 100 * SPAN_WINDOW_NS, 100 * SPAN_WINDOW_NS + 1, "pread");
        assert_eq!(p.spans[&1].len(), 1);
        // Taken during a call no longer kept: not placed, counted.
        p.samples([sample(1, 12, &[])]);
        assert_eq!(p.unattributed, 1);
        p.samples((0..PENDING_SAMPLES as u64 + 3).map(|i| sample(9, i, &[])));
        assert_eq!(p.pending[&9].len(), PENDING_SAMPLES);
        assert_eq!(p.pending_count, PENDING_SAMPLES);
        assert_eq!(p.unattributed, 4);
    }
}
