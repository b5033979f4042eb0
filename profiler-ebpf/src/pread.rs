//! The pread baseline of a traced process: `pread64` syscalls (fd, bytes
//! asked, bytes returned, duration), so `dmaprof trace` shows an
//! application's plain reads next to its dma-buf calls. Syscall tracepoints:
//! the syscall ABI is the stable thing to hook, on every kernel.
use aya_ebpf::{
    helpers::bpf_ktime_get_ns,
    macros::{map, tracepoint},
    maps::HashMap,
    programs::TracePointContext,
};
use profiler_common::call::{CallEvent, EVENT_PREAD, Pending, lost};

use crate::threads::{emit, lost_event, traced_current};

#[map]
static PREAD_PENDING: HashMap<u32, Pending> = HashMap::with_max_entries(4096, 0);

// sys_enter_pread64: fd at 16, count at 32; sys_exit_pread64: ret at 16.
// User space checks these against tracefs before attaching.
const SYS_ENTER_FD: usize = 16;
const SYS_ENTER_COUNT: usize = 32;
const SYS_EXIT_RET: usize = 16;

#[tracepoint]
pub fn sys_enter_pread64(ctx: TracePointContext) -> u32 {
    let Some((_, tid)) = traced_current() else {
        return 0;
    };
    let (Ok(fd), Ok(count)) = (unsafe { ctx.read_at::<u64>(SYS_ENTER_FD) }, unsafe {
        ctx.read_at::<u64>(SYS_ENTER_COUNT)
    }) else {
        return 0;
    };
    let p = Pending {
        start_ns: unsafe { bpf_ktime_get_ns() },
        what: fd,
        len: count,
    };
    if PREAD_PENDING.insert(&tid, &p, 0).is_err() {
        lost_event(lost::PENDING_FULL);
    }
    0
}

#[tracepoint]
pub fn sys_exit_pread64(ctx: TracePointContext) -> u32 {
    let Some((tgid, tid)) = traced_current() else {
        return 0;
    };
    let Some(p) = (unsafe { PREAD_PENDING.get(&tid) }).copied() else {
        return 0;
    };
    let _ = PREAD_PENDING.remove(&tid);
    let Ok(ret) = (unsafe { ctx.read_at::<i64>(SYS_EXIT_RET) }) else {
        return 0;
    };
    let now = unsafe { bpf_ktime_get_ns() };
    emit(CallEvent {
        kind: EVENT_PREAD,
        tgid,
        tid,
        what: p.what as u32,
        ret,
        start_ns: p.start_ns,
        duration_ns: now.saturating_sub(p.start_ns),
        len: p.len,
    });
    0
}
