//! Scheduler: how long each registered thread spends switched out (asleep
//! on I/O, preempted). On-CPU time of a call is its wall time minus this.
//!
//! Two programs, one attached: on the BTF-typed tracepoint where the kernel
//! has it (the kernel skips a program there only if it would recurse into
//! itself), else the classic one, which the kernel skips while any other
//! BPF program or a `bpf()` map syscall holds the CPU's `bpf_prog_active`
//! (a thread preempted inside a map syscall holds it for everyone on its
//! CPU until it runs again: the switches there went unseen).
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_kernel},
    macros::{btf_tracepoint, map, tracepoint},
    maps::HashMap,
    programs::{BtfTracePointContext, TracePointContext},
};
use profiler_common::call::SchedOffsets;

use crate::threads::{THREAD_COUNTERS, add, counters};

#[unsafe(no_mangle)]
static SCHED_OFFSETS: SchedOffsets = SchedOffsets::DEFAULT;

/// When each registered thread was last switched out.
#[map]
static SWITCHED_OUT: HashMap<u32, u64> = HashMap::with_max_entries(1024, 0);

#[inline(always)]
fn offsets() -> SchedOffsets {
    // Volatile: patched into .rodata at load; the compiler must not fold it.
    unsafe { core::ptr::read_volatile(&SCHED_OFFSETS) }
}

#[tracepoint]
pub fn sched_switch(ctx: TracePointContext) -> u32 {
    let off = offsets();
    let (Ok(prev), Ok(next)) = (
        unsafe { ctx.read_at::<i32>(off.prev_pid as usize) },
        unsafe { ctx.read_at::<i32>(off.next_pid as usize) },
    ) else {
        return 0;
    };
    switched(prev as u32, next as u32);
    0
}

/// sched_switch(preempt, prev, next, ...): `prev` is the current task.
#[btf_tracepoint(function = "sched_switch")]
pub fn sched_switch_btf(ctx: BtfTracePointContext) -> i32 {
    let prev = bpf_get_current_pid_tgid() as u32;
    let next: *const u8 = ctx.arg(2);
    let off = offsets();
    // SAFETY: a kernel read of next->pid, checked by the helper.
    let Ok(next) =
        (unsafe { bpf_probe_read_kernel(next.wrapping_add(off.task_pid as usize) as *const i32) })
    else {
        return 0;
    };
    switched(prev, next as u32);
    0
}

#[inline(always)]
fn switched(prev: u32, next: u32) {
    let now = unsafe { bpf_ktime_get_ns() };
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
}
