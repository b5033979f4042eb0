//! The pread baseline of a traced process: `pread64` syscalls (fd, bytes
//! asked, bytes returned, duration), so `dmaprof trace` shows an
//! application's plain reads next to its dma-buf calls. The syscall ABI is
//! the stable thing to hook, on every kernel, two ways:
//! - BTF-typed raw tracepoints on `sys_enter`/`sys_exit` (x86_64): the
//!   arguments come straight from `pt_regs`, without the perf-event
//!   machinery a syscall tracepoint goes through (record buffer, argument
//!   copy); they run on every syscall and drop all but pread64 at the top;
//! - the `syscalls:sys_{enter,exit}_pread64` tracepoints, everywhere else.
use aya_ebpf::{
    macros::{btf_map, btf_tracepoint, tracepoint},
    programs::{BtfTracePointContext, TracePointContext},
};
use profiler_common::call::{CallEvent, EVENT_PREAD, Pending};

use crate::{
    pending::TaskStorage,
    threads::{CALL_EVENTS, begin_in_place, end_in_place, lost_ringbuf, tp_field, traced_current},
};

#[btf_map]
static PREAD_PENDING: TaskStorage<Pending> = TaskStorage::new();

// sys_enter_pread64: fd at 16, count at 32; sys_exit_pread64: ret at 16.
// User space checks these against tracefs before attaching.
const SYS_ENTER_FD: usize = 16;
const SYS_ENTER_COUNT: usize = 32;
const SYS_EXIT_RET: usize = 16;

/// Only the scalar fields are written, here and in the event: a pread has
/// no request or dma-buf, and zeroing those (a memset call per syscall)
/// was a visible part of the probes' cost on every pread.
#[inline(always)]
fn enter(fd: u64, count: u64) {
    if traced_current().is_some()
        && let Some(p) = begin_in_place(&PREAD_PENDING)
    {
        unsafe {
            (*p).what = fd;
            (*p).len = count;
        }
    }
}

/// A syscall of this thread ended with `ret`: if a pread was in flight on
/// it (a thread makes one syscall at a time), that pread's event.
#[inline(always)]
fn exit(ret: i64) {
    let Some((p, start_ns, duration_ns)) = end_in_place(&PREAD_PENDING) else {
        return;
    };
    let Some((tgid, tid)) = traced_current() else {
        return;
    };
    let Some(mut entry) = CALL_EVENTS.reserve::<CallEvent>(0) else {
        lost_ringbuf();
        return;
    };
    let out = entry.as_mut_ptr();
    // SAFETY: `out` is the reserved record, `p` this task's slot.
    unsafe {
        (*out).kind = EVENT_PREAD;
        (*out).tgid = tgid;
        (*out).tid = tid;
        (*out).what = (*p).what as u32;
        (*out).ret = ret;
        (*out).start_ns = start_ns;
        (*out).duration_ns = duration_ns;
        (*out).len = (*p).len;
    }
    entry.submit(0);
}

#[tracepoint]
pub fn sys_enter_pread64(ctx: TracePointContext) -> u32 {
    unsafe {
        enter(
            tp_field(&ctx, SYS_ENTER_FD),
            tp_field(&ctx, SYS_ENTER_COUNT),
        )
    };
    0
}

#[tracepoint]
pub fn sys_exit_pread64(ctx: TracePointContext) -> u32 {
    exit(unsafe { tp_field(&ctx, SYS_EXIT_RET) });
    0
}

/// x86_64's syscall number of pread64, and where its arguments are in
/// `pt_regs` (fd in di, count in dx).
#[cfg(bpf_target_arch = "x86_64")]
mod raw {
    use aya_ebpf::bindings::pt_regs;

    pub const NR_PREAD64: i64 = 17;

    #[inline(always)]
    pub unsafe fn args(regs: *const pt_regs) -> (u64, u64) {
        // Direct loads: the verifier types `regs` from BTF (tp_btf) and
        // turns them into fault-safe kernel reads, no helper call.
        unsafe { ((*regs).rdi, (*regs).rdx) }
    }
}

#[cfg(bpf_target_arch = "x86_64")]
#[btf_tracepoint(function = "sys_enter")]
pub fn pread_raw_enter(ctx: BtfTracePointContext) -> i32 {
    let id: i64 = ctx.arg(1);
    if id == raw::NR_PREAD64 {
        let (fd, count) = unsafe { raw::args(ctx.arg(0)) };
        enter(fd, count);
    }
    0
}

#[cfg(bpf_target_arch = "x86_64")]
#[btf_tracepoint(function = "sys_exit")]
pub fn pread_raw_exit(ctx: BtfTracePointContext) -> i32 {
    exit(ctx.arg(1));
    0
}
