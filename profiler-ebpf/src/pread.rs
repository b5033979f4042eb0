//! The pread baseline of a traced process: `pread64` syscalls (fd, bytes
//! asked, bytes returned, duration), so `dmaprof trace` shows an
//! application's plain reads next to its dma-buf calls. Syscall tracepoints:
//! the syscall ABI is the stable thing to hook, on every kernel.
use aya_ebpf::{
    macros::{map, tracepoint},
    maps::HashMap,
    programs::TracePointContext,
};
use profiler_common::call::{CallEvent, EVENT_PREAD, Pending};

use crate::threads::{begin, emit, end, traced_current};

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
    begin(&PREAD_PENDING, tid, fd, count);
    0
}

#[tracepoint]
pub fn sys_exit_pread64(ctx: TracePointContext) -> u32 {
    let Some((tgid, tid)) = traced_current() else {
        return 0;
    };
    let Some((p, duration_ns)) = end(&PREAD_PENDING, tid) else {
        return 0;
    };
    let Ok(ret) = (unsafe { ctx.read_at::<i64>(SYS_EXIT_RET) }) else {
        return 0;
    };
    emit(CallEvent {
        kind: EVENT_PREAD,
        tgid,
        tid,
        what: p.what as u32,
        ret,
        start_ns: p.start_ns,
        duration_ns,
        len: p.len,
    });
    0
}
