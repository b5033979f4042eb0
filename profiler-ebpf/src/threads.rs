//! The per-thread counters every probe family adds to (see
//! profiler_common::call::ThreadCounters), and the process filter.
use core::intrinsics::{AtomicOrdering, atomic_xadd};

use aya_ebpf::{
    EbpfContext,
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::map,
    maps::{HashMap, PerCpuArray, RingBuf},
    programs::TracePointContext,
};
use profiler_common::call::{Pending, ThreadCounters, lost};

use crate::pending::TaskStorage;

/// Only this process is traced when non-zero (set by user space before load).
#[unsafe(no_mangle)]
static FILTER_TGID: u32 = 0;

/// Counters of the threads user space registered (a thread without an
/// entry is not counted; entries are created by user space only).
#[map]
pub static THREAD_COUNTERS: HashMap<u32, ThreadCounters> = HashMap::with_max_entries(1024, 0);

/// Finished ioctl / exporter / pread calls, for `dmaprof trace`.
/// 8 MiB: about 150k events, 0.3 s at 500k events/s, so a busy agent
/// catches up before anything is dropped.
#[map]
pub static CALL_EVENTS: RingBuf = RingBuf::with_byte_size(8 << 20, 0);

#[map]
pub static CALL_LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(lost::COUNT, 0);

#[inline(always)]
pub fn filter_tgid() -> u32 {
    // Volatile: patched into .rodata at load; the compiler must not fold it.
    unsafe { core::ptr::read_volatile(&FILTER_TGID) }
}

/// (tgid, tid) of the current task if it is traced, else None.
#[inline(always)]
pub fn traced_current() -> Option<(u32, u32)> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    let filter = filter_tgid();
    if filter != 0 && filter != tgid {
        return None;
    }
    Some((tgid, pid_tgid as u32))
}

/// A field of a tracepoint record at a constant offset, loaded straight
/// from the context: the verifier allows that for tracepoint programs, where
/// aya's `read_at` makes a `bpf_probe_read_kernel` helper call per field.
///
/// # Safety
/// `offset` must be a compile-time constant inside the record (the
/// verifier refuses anything else at load).
#[inline(always)]
pub unsafe fn tp_field<T: Copy>(ctx: &TracePointContext, offset: usize) -> T {
    unsafe { core::ptr::read_unaligned((ctx.as_ptr() as *const u8).add(offset) as *const T) }
}

/// Atomically adds to one field of a counters entry.
#[inline(always)]
pub fn add(field: *mut u64, v: u64) {
    // SAFETY: field points into a live map value; the adds race with other
    // CPUs, hence atomic (BPF_ATOMIC add; the bpf target has no AtomicU64).
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(field, v) };
}

#[inline(always)]
pub fn counters(tid: u32) -> Option<*mut ThreadCounters> {
    THREAD_COUNTERS.get_ptr_mut(tid)
}

#[inline(always)]
fn lost_event(index: u32) {
    if let Some(slot) = CALL_LOST.get_ptr_mut(index) {
        unsafe { *slot += 1 };
    }
}

/// An exporter call (v2's rw_file, v4's copy_file_range handler) of `tid`
/// ended: its count, time, and `bytes` moved or an error.
#[inline(always)]
pub fn count_exporter(tid: u32, duration_ns: u64, bytes: Result<u64, ()>) {
    if let Some(c) = counters(tid) {
        unsafe {
            add(&raw mut (*c).exporter_calls, 1);
            add(&raw mut (*c).exporter_ns, duration_ns);
            match bytes {
                Ok(b) => add(&raw mut (*c).exporter_bytes, b),
                Err(()) => add(&raw mut (*c).exporter_errors, 1),
            }
        }
    }
}

/// A record the ring had no room for.
#[inline(always)]
pub fn lost_ringbuf() {
    lost_event(lost::RINGBUF_FULL);
}

/// Entry probe, in place: this thread's in-flight slot with its start
/// time set, for the caller to fill (the records of the calls that name a
/// file and a dma-buf are too large to build on the BPF stack and copy).
#[inline(always)]
pub fn begin_in_place(pending: &TaskStorage<Pending>) -> Option<*mut Pending> {
    let Some(p) = pending.current(true) else {
        lost_event(lost::PENDING_FULL);
        return None;
    };
    // SAFETY: p is this task's storage, valid for the program's run.
    unsafe { (*p).start_ns = bpf_ktime_get_ns() };
    Some(p)
}

/// Exit probe, in place: the slot (its start cleared), the start and the
/// duration; None when the entry was not seen.
#[inline(always)]
pub fn end_in_place(pending: &TaskStorage<Pending>) -> Option<(*const Pending, u64, u64)> {
    let slot = pending.current(false)?;
    // SAFETY: as in begin.
    let start_ns = unsafe { (*slot).start_ns };
    if start_ns == 0 {
        return None;
    }
    unsafe { (*slot).start_ns = 0 };
    let duration_ns = unsafe { bpf_ktime_get_ns() }.saturating_sub(start_ns);
    Some((slot, start_ns, duration_ns))
}
