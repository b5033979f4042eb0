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
    call::{CallEvent, EVENT_EXPORTER, FileId, Pending},
    uapi::RwFileArgs,
};

use crate::files::{emit_with_file, file_of_fd, identity, offsets, remember_file};
use crate::pending::TaskStorage;
use crate::threads::{add, begin, counters, end, traced_current};

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
    let rw: RwFileArgs =
        unsafe { bpf_probe_read_kernel(arg as *const RwFileArgs) }.unwrap_or_default();
    let off = offsets();
    remember_file(&EXPORTER_FILE, &off, file_of_fd(&off, rw.fd as i64));
    begin(
        &EXPORTER_PENDING,
        Pending {
            what: rw.flags as u64,
            len: rw.buf_len,
            rw,
            buf: identity(&off, dmabuf),
            ..Default::default()
        },
    );
}

#[inline(always)]
fn exit(ret: i64) {
    let Some((tgid, tid)) = traced_current() else {
        return;
    };
    let Some((p, duration_ns)) = end(&EXPORTER_PENDING) else {
        return;
    };
    if let Some(c) = counters(tid) {
        unsafe {
            add(&raw mut (*c).exporter_calls, 1);
            add(&raw mut (*c).exporter_ns, duration_ns);
            // The lab kernel returns the count; the seed's v2 returned 0
            // for a full transfer (docs/rw-file.md).
            if ret > 0 {
                add(&raw mut (*c).exporter_bytes, ret as u64);
            } else if ret == 0 {
                add(&raw mut (*c).exporter_bytes, p.len);
            } else {
                add(&raw mut (*c).exporter_errors, 1);
            }
        }
    }
    emit_with_file(
        CallEvent {
            kind: EVENT_EXPORTER,
            tgid,
            tid,
            what: p.what as u32,
            ret,
            start_ns: p.start_ns,
            duration_ns,
            len: p.len,
            rw: p.rw,
            buf: p.buf,
        },
        &EXPORTER_FILE,
    );
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
