//! `--profile`: where the traced process's threads spend their time, as
//! stacks. On-CPU: a perf-event program on the software CPU clock (hardware
//! counters do not exist on the VMs this runs on) samples them. Off-CPU
//! (libbpf-tools offcputime's model): at sched_switch, seen through tp_btf
//! so both tasks are BTF pointers, the thread leaving the CPU notes when and
//! with which stacks in its task storage; when it is switched back in, the
//! interval is sent. Both go through a ring buffer of their own with stack
//! ids; user space attributes each to the call in flight by time.
use aya_ebpf::{
    bindings::BPF_F_USER_STACK,
    helpers::bpf_ktime_get_ns,
    macros::{btf_map, btf_tracepoint, map, perf_event},
    maps::{PerCpuArray, RingBuf, StackTrace},
    programs::{BtfTracePointContext, PerfEventContext, tracing::StackIdContext},
};
use profiler_common::profile::{
    OffCpuStart, SAMPLE_OFF_CPU, SAMPLE_ON_CPU, STACK_ENTRIES, StackSample, lost,
};

use crate::{pending::TaskStorage, threads::traced_current};

#[map]
pub static STACKS: StackTrace = StackTrace::with_max_entries(STACK_ENTRIES, 0);

/// 1 MiB: about 20k samples; at 999 Hz on every CPU plus the switches of
/// an I/O-bound thread, user space drains it many times over before it fills.
#[map]
pub static PROFILE_EVENTS: RingBuf = RingBuf::with_byte_size(1 << 20, 0);

#[map]
pub static PROFILE_LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(lost::COUNT, 0);

#[btf_map]
static OFF_CPU: TaskStorage<OffCpuStart> = TaskStorage::new();

#[inline(always)]
fn count_lost(index: u32) {
    if let Some(slot) = PROFILE_LOST.get_ptr_mut(index) {
        unsafe { *slot += 1 };
    }
}

/// Kernel and user stack ids of the current task (or the negative errno).
#[inline(always)]
fn stacks<C: StackIdContext>(ctx: &C) -> (i64, i64) {
    let kernel = ctx.get_stackid(&STACKS, 0).unwrap_or_else(|e| e as i64);
    let user = ctx
        .get_stackid(&STACKS, BPF_F_USER_STACK as u64)
        .unwrap_or_else(|e| e as i64);
    (kernel, user)
}

#[inline(always)]
fn send(sample: StackSample) {
    if PROFILE_EVENTS.output::<StackSample>(&sample, 0).is_err() {
        count_lost(lost::RINGBUF_FULL);
    }
}

#[perf_event]
pub fn profile_cpu_sample(ctx: PerfEventContext) -> u32 {
    let Some((tgid, tid)) = traced_current() else {
        return 0;
    };
    if tid == 0 {
        return 0; // the idle task
    }
    // The time first: walking the stacks takes microseconds, and a sample
    // must land inside the call it interrupted.
    let time_ns = unsafe { bpf_ktime_get_ns() };
    let (kernel_stack, user_stack) = stacks(&ctx);
    send(StackSample {
        kind: SAMPLE_ON_CPU,
        tgid,
        tid,
        _pad: 0,
        time_ns,
        duration_ns: 0,
        kernel_stack,
        user_stack,
    });
    0
}

/// sched_switch(preempt, prev, next): `prev` is the current task.
#[btf_tracepoint(function = "sched_switch")]
pub fn profile_off_cpu(ctx: BtfTracePointContext) -> i32 {
    let now = unsafe { bpf_ktime_get_ns() };
    if let Some((tgid, tid)) = traced_current()
        && tid != 0
    {
        let (kernel_stack, user_stack) = stacks(&ctx);
        match OFF_CPU.current(true) {
            Some(s) => unsafe {
                *s = OffCpuStart {
                    tgid,
                    tid,
                    time_ns: now,
                    kernel_stack,
                    user_stack,
                }
            },
            None => count_lost(lost::OFF_CPU_FULL),
        }
    }
    let next: *mut core::ffi::c_void = ctx.arg(2);
    if let Some(s) = OFF_CPU.of(next, false) {
        // SAFETY: next's storage, valid for this program's run.
        let start = unsafe { *s };
        if start.time_ns != 0 {
            unsafe { (*s).time_ns = 0 };
            send(StackSample {
                kind: SAMPLE_OFF_CPU,
                tgid: start.tgid,
                tid: start.tid,
                _pad: 0,
                time_ns: start.time_ns,
                duration_ns: now.saturating_sub(start.time_ns),
                kernel_stack: start.kernel_stack,
                user_stack: start.user_stack,
            });
        }
    }
    0
}
