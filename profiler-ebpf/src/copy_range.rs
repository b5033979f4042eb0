//! copy_file_range(2), the v4 interface: the syscall on every kernel
//! (syscall tracepoints: fds, offsets read from user memory or the files'
//! positions, length, result), and in a v4 kernel the dma-buf core's
//! handler `dma_buf_copy_file_range` (fentry/fexit or kprobe/kretprobe),
//! which runs the exporter's rw_file_v4: the dma-buf side of the call, as
//! the exporter probe is for RW_FILE. Both record the regular file and the
//! dma-buf read at entry.
use aya_ebpf::{
    helpers::bpf_probe_read_user,
    macros::{btf_map, fentry, fexit, kprobe, kretprobe, tracepoint},
    programs::{FEntryContext, FExitContext, ProbeContext, RetProbeContext, TracePointContext},
};
use profiler_common::call::{EVENT_CFR_HANDLER, EVENT_COPY_RANGE, FileId, Pending};

use crate::files::{Finished, copy_request, emit_pending, file_of_fd, file_pos, offsets};
use crate::pending::TaskStorage;
use crate::threads::{begin_in_place, count_exporter, end_in_place, traced_current};

#[btf_map]
static CFR_PENDING: TaskStorage<Pending> = TaskStorage::new();
#[btf_map]
static CFR_FILE: TaskStorage<FileId> = TaskStorage::new();
#[btf_map]
static CFR_HANDLER_PENDING: TaskStorage<Pending> = TaskStorage::new();
#[btf_map]
static CFR_HANDLER_FILE: TaskStorage<FileId> = TaskStorage::new();

// sys_enter_copy_file_range: fd_in 16, off_in 24, fd_out 32, off_out 40,
// len 48; sys_exit_copy_file_range: ret 16 (checked against tracefs).
const FD_IN: usize = 16;
const OFF_IN: usize = 24;
const FD_OUT: usize = 32;
const OFF_OUT: usize = 40;
const LEN: usize = 48;
const RET: usize = 16;

/// The offset a copy starts at: `*ptr` from user memory, or the file's
/// position when the caller passed NULL.
#[inline(always)]
fn position(ptr: u64, file: *const u8) -> u64 {
    if ptr == 0 {
        file_pos(&offsets(), file)
    } else {
        unsafe { bpf_probe_read_user(ptr as *const u64) }.unwrap_or(0)
    }
}

#[tracepoint]
pub fn sys_enter_copy_file_range(ctx: TracePointContext) -> u32 {
    if traced_current().is_none() {
        return 0;
    }
    let Some(p) = begin_in_place(&CFR_PENDING) else {
        return 0;
    };
    let field = |at: usize| unsafe { ctx.read_at::<u64>(at) }.unwrap_or(0);
    let off = offsets();
    let (fd_in, fd_out) = (field(FD_IN) as i32, field(FD_OUT) as i32);
    let file_in = file_of_fd(&off, fd_in as i64);
    let file_out = file_of_fd(&off, fd_out as i64);
    copy_request(
        p,
        &off,
        &CFR_FILE,
        (file_in, fd_in, position(field(OFF_IN), file_in)),
        (file_out, fd_out, position(field(OFF_OUT), file_out)),
        field(LEN),
    );
    0
}

#[tracepoint]
pub fn sys_exit_copy_file_range(ctx: TracePointContext) -> u32 {
    let Some((tgid, tid)) = traced_current() else {
        return 0;
    };
    let Some((p, start_ns, duration_ns)) = end_in_place(&CFR_PENDING) else {
        return 0;
    };
    let ret = unsafe { ctx.read_at::<i64>(RET) }.unwrap_or(0);
    let f = Finished {
        kind: EVENT_COPY_RANGE,
        tgid,
        tid,
        ret,
        start_ns,
        duration_ns,
    };
    emit_pending(&f, p, &CFR_FILE);
    0
}

/// `ssize_t dma_buf_copy_file_range(struct file *file_in, loff_t pos_in,
/// struct file *file_out, loff_t pos_out, size_t count, unsigned int flags)`:
/// the files are at hand (no fd: -1 in the record).
#[inline(always)]
fn handler_enter(file_in: *const u8, pos_in: u64, file_out: *const u8, pos_out: u64, len: u64) {
    if traced_current().is_none() {
        return;
    }
    let Some(p) = begin_in_place(&CFR_HANDLER_PENDING) else {
        return;
    };
    copy_request(
        p,
        &offsets(),
        &CFR_HANDLER_FILE,
        (file_in, -1, pos_in),
        (file_out, -1, pos_out),
        len,
    );
}

#[inline(always)]
fn handler_exit(ret: i64) {
    let Some((tgid, tid)) = traced_current() else {
        return;
    };
    let Some((p, start_ns, duration_ns)) = end_in_place(&CFR_HANDLER_PENDING) else {
        return;
    };
    // The dma-buf side of the call, counted as the exporter's (the handler
    // does nothing but call the exporter's rw_file_v4).
    count_exporter(
        tid,
        duration_ns,
        if ret >= 0 { Ok(ret as u64) } else { Err(()) },
    );
    let f = Finished {
        kind: EVENT_CFR_HANDLER,
        tgid,
        tid,
        ret,
        start_ns,
        duration_ns,
    };
    emit_pending(&f, p, &CFR_HANDLER_FILE);
}

#[fentry]
pub fn dma_buf_cfr_fentry(ctx: FEntryContext) -> i32 {
    handler_enter(ctx.arg(0), ctx.arg(1), ctx.arg(2), ctx.arg(3), ctx.arg(4));
    0
}

#[fexit]
pub fn dma_buf_cfr_fexit(ctx: FExitContext) -> i32 {
    // Six arguments, then the return value.
    let ret: i64 = ctx.arg(6);
    handler_exit(ret);
    0
}

#[kprobe]
pub fn dma_buf_cfr_kprobe(ctx: ProbeContext) -> u32 {
    if let (Some(a), Some(b), Some(c), Some(d), Some(e)) = (
        ctx.arg::<*const u8>(0),
        ctx.arg::<u64>(1),
        ctx.arg::<*const u8>(2),
        ctx.arg::<u64>(3),
        ctx.arg::<u64>(4),
    ) {
        handler_enter(a, b, c, d, e);
    }
    0
}

#[kretprobe]
pub fn dma_buf_cfr_kretprobe(ctx: RetProbeContext) -> u32 {
    let ret: i64 = ctx.ret();
    handler_exit(ret);
    0
}
