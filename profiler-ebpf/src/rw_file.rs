//! The exporter's `rw_file` callback (found by prototype in BTF by user
//! space, e.g. `system_heap_rw_file`): time spent in the exporter, the
//! bytes requested, the flags and the result. fentry/fexit or
//! kprobe/kretprobe; there is no tracepoint inside exporters.
use aya_ebpf::{
    helpers::bpf_probe_read_kernel,
    macros::{btf_map, fentry, fexit, kprobe, kretprobe},
    programs::{FEntryContext, FExitContext, ProbeContext, RetProbeContext},
};
use profiler_common::{
    call::{EVENT_EXPORTER, FileId, Pending},
    uapi::RwFileArgs,
};

use crate::files::{Finished, emit_pending, file_of_fd, identity_into, offsets, remember_file};
use crate::pending::TaskStorage;
use crate::threads::{begin_in_place, count_exporter, end_in_place, traced_current};

#[btf_map]
static EXPORTER_PENDING: TaskStorage<Pending> = TaskStorage::new();
#[btf_map]
static EXPORTER_FILE: TaskStorage<FileId> = TaskStorage::new();

/// `dmabuf` is the callback's `struct dma_buf *`, `arg` the kernel copy
/// of `struct dma_buf_rw_file`.
#[inline(always)]
fn enter(dmabuf: *const u8, arg: *const u8) {
    if traced_current().is_none() {
        return;
    }
    let Some(p) = begin_in_place(&EXPORTER_PENDING) else {
        return;
    };
    let off = offsets();
    unsafe {
        (*p).rw = bpf_probe_read_kernel(arg as *const RwFileArgs).unwrap_or_default();
        (*p).what = (*p).rw.flags as u64;
        (*p).len = (*p).rw.buf_len;
        remember_file(&EXPORTER_FILE, &off, file_of_fd(&off, (*p).rw.fd as i64));
        identity_into(&off, dmabuf, &raw mut (*p).buf);
    }
}

#[inline(always)]
fn exit(ret: i64) {
    let Some((tgid, tid)) = traced_current() else {
        return;
    };
    let Some((p, start_ns, duration_ns)) = end_in_place(&EXPORTER_PENDING) else {
        return;
    };
    // The lab kernel returns the count; the seed's v2 returned 0 for a full
    // transfer (docs/rw-file.md).
    let bytes = match ret {
        r if r > 0 => Ok(r as u64),
        0 => Ok(unsafe { (*p).len }),
        _ => Err(()),
    };
    count_exporter(tid, duration_ns, bytes);
    let f = Finished {
        kind: EVENT_EXPORTER,
        tgid,
        tid,
        ret,
        start_ns,
        duration_ns,
    };
    emit_pending(&f, p, &EXPORTER_FILE);
}

#[fentry]
pub fn rw_file_fentry(ctx: FEntryContext) -> i32 {
    let dmabuf: *const u8 = ctx.arg(0);
    let arg: *const u8 = ctx.arg(1);
    enter(dmabuf, arg);
    0
}

#[fexit]
pub fn rw_file_fexit(ctx: FExitContext) -> i32 {
    // int rw_file(struct dma_buf *, struct dma_buf_rw_file *): the return
    // value follows the two arguments.
    let ret: i32 = ctx.arg(2);
    exit(ret as i64);
    0
}

#[kprobe]
pub fn rw_file_kprobe(ctx: ProbeContext) -> u32 {
    if let (Some(dmabuf), Some(arg)) = (ctx.arg::<*const u8>(0), ctx.arg::<*const u8>(1)) {
        enter(dmabuf, arg);
    }
    0
}

#[kretprobe]
pub fn rw_file_kretprobe(ctx: RetProbeContext) -> u32 {
    let ret: i32 = ctx.ret();
    exit(ret as i64);
    0
}
