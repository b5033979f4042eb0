//! Scheduler: how long each registered thread spends switched out (asleep
//! on I/O, preempted). On-CPU time of a call is its wall time minus this.
use aya_ebpf::{
    helpers::bpf_ktime_get_ns,
    macros::{map, tracepoint},
    maps::HashMap,
    programs::TracePointContext,
};
use profiler_common::call::SchedOffsets;

use crate::threads::{THREAD_COUNTERS, add, counters};

#[unsafe(no_mangle)]
static SCHED_OFFSETS: SchedOffsets = SchedOffsets::DEFAULT;

/// When each registered thread was last switched out.
#[map]
static SWITCHED_OUT: HashMap<u32, u64> = HashMap::with_max_entries(1024, 0);

#[tracepoint]
pub fn sched_switch(ctx: TracePointContext) -> u32 {
    let off = unsafe { core::ptr::read_volatile(&SCHED_OFFSETS) };
    let (Ok(prev), Ok(next)) = (
        unsafe { ctx.read_at::<i32>(off.prev_pid as usize) },
        unsafe { ctx.read_at::<i32>(off.next_pid as usize) },
    ) else {
        return 0;
    };
    let now = unsafe { bpf_ktime_get_ns() };
    let prev = prev as u32;
    let next = next as u32;
    if unsafe { THREAD_COUNTERS.get(prev) }.is_some() {
        let _ = SWITCHED_OUT.insert(prev, now, 0);
    }
    if let Some(c) = counters(next)
        && let Some(out) = unsafe { SWITCHED_OUT.get(next) }.copied()
    {
        let _ = SWITCHED_OUT.remove(next);
        unsafe {
            add(&raw mut (*c).off_cpu_ns, now.saturating_sub(out));
            add(&raw mut (*c).switches, 1);
        }
    }
    0
}
