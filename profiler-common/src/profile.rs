//! Stack samples for `--profile`: on-CPU samples of the software CPU clock
//! and off-CPU intervals that end at a sched_switch, each with the ids of
//! its kernel and user stacks in the stack-trace map, sent through a ring
//! buffer of their own so user space can attribute each one to the call in
//! flight on its thread by time.

/// One sample of a traced thread.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StackSample {
    /// `SAMPLE_ON_CPU` or `SAMPLE_OFF_CPU`.
    pub kind: u32,
    pub tgid: u32,
    pub tid: u32,
    pub _pad: u32,
    /// On-CPU: when the sample was taken; off-CPU: when the thread left the
    /// CPU (kernel monotonic ns, as bpf_ktime_get_ns).
    pub time_ns: u64,
    /// Off-CPU: how long the thread was away; on-CPU: 0.
    pub duration_ns: u64,
    /// Stack ids in the stack-trace map, or the negative errno
    /// bpf_get_stackid returned (-EFAULT: no stack, -EEXIST: a different
    /// stack already held the bucket).
    pub kernel_stack: i64,
    pub user_stack: i64,
}

pub const SAMPLE_ON_CPU: u32 = 1;
pub const SAMPLE_OFF_CPU: u32 = 2;

/// Where an off-CPU interval began (per thread, between switch-out and
/// switch-in).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OffCpuStart {
    pub tgid: u32,
    pub tid: u32,
    pub time_ns: u64,
    pub kernel_stack: i64,
    pub user_stack: i64,
}

/// Distinct stacks the stack-trace map holds; a new stack that hashes to a
/// bucket already taken is lost (-EEXIST) and counted.
pub const STACK_ENTRIES: u32 = 16384;
/// Threads that can be off-CPU at once with their start remembered.
pub const OFF_CPU_THREADS: u32 = 4096;

/// Per-CPU counters of samples the programs could not record.
pub mod lost {
    /// The profile ring buffer was full.
    pub const RINGBUF_FULL: u32 = 0;
    /// The off-CPU map was full: a switch-out was not remembered.
    pub const OFF_CPU_FULL: u32 = 1;
    pub const COUNT: u32 = 2;
}

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: plain #[repr(C)] integers; any bit pattern is valid.
    unsafe impl aya::Pod for StackSample {}
    unsafe impl aya::Pod for OffCpuStart {}
}
