//! CPU cost of the calling thread, sampled around each call.
//!
//! The total is the thread's CPU clock (`CLOCK_THREAD_CPUTIME_ID`: the
//! scheduler's own runtime of the thread, to the nanosecond). getrusage
//! alone is not enough: for `RUSAGE_THREAD` it reports
//! `se.sum_exec_runtime`, which the scheduler brings up to date only at a
//! tick or a context switch, so a call shorter than a tick often showed 0
//! (43 of 64 cold 4 MiB preads did). Reading the clock first brings it up to
//! date (`task_sched_runtime` runs the scheduler's `update_curr`), and
//! getrusage then gives the user/system split of that same total.
use serde::Serialize;

/// Where per-call CPU comes from, as the results JSON names it.
pub const SOURCE: &str = "thread-cputime";

/// One call's CPU: `user_ns + sys_ns` is the thread clock's difference.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ThreadCpu {
    pub user_ns: u64,
    pub sys_ns: u64,
    pub voluntary_switches: u64,
    pub involuntary_switches: u64,
}

impl ThreadCpu {
    /// The call's CPU time, user plus system: the thread clock's.
    pub fn total_ns(&self) -> u64 {
        self.user_ns + self.sys_ns
    }
}

/// Where a thread's CPU stood at one instant (cumulative).
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuMark {
    thread_ns: u64,
    sys_ns: u64,
    voluntary_switches: u64,
    involuntary_switches: u64,
}

impl CpuMark {
    pub fn now() -> CpuMark {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime fills the timespec we pass. First: it brings
        // the runtime getrusage reads up to date.
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        // SAFETY: getrusage fills a plain struct.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
        CpuMark {
            thread_ns: ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64,
            sys_ns: ru.ru_stime.tv_sec as u64 * 1_000_000_000 + ru.ru_stime.tv_usec as u64 * 1_000,
            voluntary_switches: ru.ru_nvcsw as u64,
            involuntary_switches: ru.ru_nivcsw as u64,
        }
    }

    /// The CPU spent since `start`: the thread clock's difference, split
    /// as rusage splits it (rusage counts whole microseconds: its rounding
    /// goes to the user side, the smaller one in a system call).
    pub fn since(&self, start: &CpuMark) -> ThreadCpu {
        let total = self.thread_ns.saturating_sub(start.thread_ns);
        let sys = self.sys_ns.saturating_sub(start.sys_ns).min(total);
        ThreadCpu {
            user_ns: total - sys,
            sys_ns: sys,
            voluntary_switches: self
                .voluntary_switches
                .saturating_sub(start.voluntary_switches),
            involuntary_switches: self
                .involuntary_switches
                .saturating_sub(start.involuntary_switches),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A busy loop's CPU is seen, and user + sys is the thread clock's.
    #[test]
    fn sees_a_short_busy_loop() {
        let start = CpuMark::now();
        let t = std::time::Instant::now();
        let mut x = 0u64;
        while t.elapsed() < std::time::Duration::from_micros(300) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let end = CpuMark::now();
        let cpu = end.since(&start);
        assert!(cpu.total_ns() > 0, "{cpu:?}");
        assert_eq!(cpu.total_ns(), end.thread_ns - start.thread_ns);
    }
}
