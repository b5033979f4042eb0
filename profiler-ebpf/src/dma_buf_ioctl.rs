//! The dma-buf ioctl: every call's command, return value and kernel-side
//! duration. Four attach mechanisms, one per rung of the ladder:
//! fentry/fexit and kprobe/kretprobe on `dma_buf_ioctl`, or, at the syscall,
//! filtered to dma-buf commands (`_IOC_TYPE == 'b'`): the BTF-typed raw
//! `sys_enter`/`sys_exit` tracepoints (x86_64: arguments from `pt_regs`;
//! skipped by the kernel only on recursion), else the `syscalls:` ioctl
//! tracepoints (skipped while another BPF program or a `bpf()` map syscall
//! holds the CPU).
use aya_ebpf::{
    helpers::bpf_probe_read_user,
    macros::{btf_map, fentry, fexit, kprobe, kretprobe, tracepoint},
    programs::{FEntryContext, FExitContext, ProbeContext, RetProbeContext, TracePointContext},
};
#[cfg(bpf_target_arch = "x86_64")]
use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};
use profiler_common::{
    call::{EVENT_IOCTL, FileId, Pending},
    uapi::{DMA_BUF_IOCTL_RW_FILE, DMA_BUF_IOCTL_TYPE, RwFileArgs},
};

use crate::files::{
    Finished, dma_buf_of, emit_pending, file_of_fd, identity_into, is_dma_buf, offsets,
    remember_file,
};
use crate::pending::TaskStorage;
use crate::threads::{add, begin_in_place, counters, end_in_place, traced_current};

#[btf_map]
static IOCTL_PENDING: TaskStorage<Pending> = TaskStorage::new();
/// An RW_FILE request's file, read at entry.
#[btf_map]
static IOCTL_FILE: TaskStorage<FileId> = TaskStorage::new();

// sys_enter_ioctl: fd at 16, cmd at 24, arg at 32; sys_exit_ioctl: ret at 16.
// Stable syscall tracepoint layout; user space checks it against tracefs
// before attaching.
const SYS_ENTER_FD: usize = 16;
const SYS_ENTER_CMD: usize = 24;
const SYS_ENTER_ARG: usize = 32;
const SYS_EXIT_RET: usize = 16;

/// `arg` is the ioctl's user pointer: an RW_FILE request is read from it
/// now, as the kernel is about to (zero when unreadable), with the file its
/// fd names and the dma-buf `file` (the ioctl's own) is.
#[inline(always)]
fn enter(file: *const u8, cmd: u32, arg: u64) {
    if traced_current().is_none() {
        return;
    }
    let Some(p) = begin_in_place(&IOCTL_PENDING) else {
        return;
    };
    let off = offsets();
    unsafe {
        (*p).what = cmd as u64;
        (*p).rw = RwFileArgs::default();
        let mut dmabuf = core::ptr::null();
        if cmd == DMA_BUF_IOCTL_RW_FILE {
            (*p).rw = bpf_probe_read_user(arg as *const RwFileArgs).unwrap_or_default();
            remember_file(&IOCTL_FILE, &off, file_of_fd(&off, (*p).rw.fd as i64));
            if is_dma_buf(&off, file) {
                dmabuf = dma_buf_of(&off, file);
            }
        }
        (*p).len = (*p).rw.buf_len;
        identity_into(&off, dmabuf, &raw mut (*p).buf);
    }
}

#[inline(always)]
fn exit(ret: i64) {
    let Some((tgid, tid)) = traced_current() else {
        return;
    };
    let Some((p, start_ns, duration_ns)) = end_in_place(&IOCTL_PENDING) else {
        return;
    };
    if let Some(c) = counters(tid) {
        unsafe {
            add(&raw mut (*c).ioctl_calls, 1);
            add(&raw mut (*c).ioctl_ns, duration_ns);
            if ret < 0 {
                add(&raw mut (*c).ioctl_errors, 1);
            }
        }
    }
    let f = Finished {
        kind: EVENT_IOCTL,
        tgid,
        tid,
        ret,
        start_ns,
        duration_ns,
    };
    emit_pending(&f, p, &IOCTL_FILE);
}

#[fentry]
pub fn dma_buf_ioctl_fentry(ctx: FEntryContext) -> i32 {
    let file: *const u8 = ctx.arg(0);
    let cmd: u32 = ctx.arg(1);
    let arg: u64 = ctx.arg(2);
    enter(file, cmd, arg);
    0
}

#[fexit]
pub fn dma_buf_ioctl_fexit(ctx: FExitContext) -> i32 {
    // long dma_buf_ioctl(struct file *, unsigned int, unsigned long): the
    // return value follows the three arguments.
    let ret: i64 = ctx.arg(3);
    exit(ret);
    0
}

#[kprobe]
pub fn dma_buf_ioctl_kprobe(ctx: ProbeContext) -> u32 {
    if let (Some(file), Some(cmd), Some(arg)) = (
        ctx.arg::<*const u8>(0),
        ctx.arg::<u32>(1),
        ctx.arg::<u64>(2),
    ) {
        enter(file, cmd, arg);
    }
    0
}

#[kretprobe]
pub fn dma_buf_ioctl_kretprobe(ctx: RetProbeContext) -> u32 {
    let ret: i64 = ctx.ret();
    exit(ret);
    0
}

#[tracepoint]
pub fn sys_enter_ioctl(ctx: TracePointContext) -> u32 {
    let Ok(cmd) = (unsafe { ctx.read_at::<u64>(SYS_ENTER_CMD) }) else {
        return 0;
    };
    let cmd = cmd as u32;
    if (cmd >> 8) & 0xff == DMA_BUF_IOCTL_TYPE {
        let arg = unsafe { ctx.read_at::<u64>(SYS_ENTER_ARG) }.unwrap_or(0);
        let fd = unsafe { ctx.read_at::<i64>(SYS_ENTER_FD) }.unwrap_or(-1);
        enter(file_of_fd(&offsets(), fd), cmd, arg);
    }
    0
}

#[tracepoint]
pub fn sys_exit_ioctl(ctx: TracePointContext) -> u32 {
    // Only ioctls whose entry was recorded (dma-buf commands) have a pending entry.
    if let Ok(ret) = unsafe { ctx.read_at::<i64>(SYS_EXIT_RET) } {
        exit(ret);
    }
    0
}

/// x86_64's syscall number of ioctl; its arguments in `pt_regs` (fd in di,
/// cmd in si, arg in dx).
#[cfg(bpf_target_arch = "x86_64")]
const NR_IOCTL: i64 = 16;

#[cfg(bpf_target_arch = "x86_64")]
#[btf_tracepoint(function = "sys_enter")]
pub fn ioctl_raw_enter(ctx: BtfTracePointContext) -> i32 {
    let id: i64 = ctx.arg(1);
    if id != NR_IOCTL {
        return 0;
    }
    let regs: *const aya_ebpf::bindings::pt_regs = ctx.arg(0);
    // Direct loads: the verifier types `regs` from BTF (tp_btf).
    let (fd, cmd, arg) = unsafe { ((*regs).rdi, (*regs).rsi as u32, (*regs).rdx) };
    if (cmd >> 8) & 0xff == DMA_BUF_IOCTL_TYPE {
        enter(file_of_fd(&offsets(), fd as i64), cmd, arg);
    }
    0
}

/// sys_exit(regs, ret): ioctls only (the syscall number stays in
/// `orig_ax`), then only a thread with a dma-buf ioctl pending emits.
#[cfg(bpf_target_arch = "x86_64")]
#[btf_tracepoint(function = "sys_exit")]
pub fn ioctl_raw_exit(ctx: BtfTracePointContext) -> i32 {
    let regs: *const aya_ebpf::bindings::pt_regs = ctx.arg(0);
    if unsafe { (*regs).orig_rax } as i64 == NR_IOCTL {
        exit(ctx.arg(1));
    }
    0
}
