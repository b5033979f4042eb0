//! io_uring requests, submission to completion, from the io_uring
//! tracepoints: `io_uring_submit_req` runs in the submitting task (which
//! names the traced thread), `io_uring_complete` wherever the CQE is posted
//! (task work, an io-wq worker, interrupt context), so the request pointer
//! joins the two and the submitter gets the count and the time.
use aya_ebpf::{
    helpers::bpf_ktime_get_ns,
    macros::{map, tracepoint},
    maps::HashMap,
    programs::TracePointContext,
};
use profiler_common::call::{CallEvent, EVENT_URING, UringOffsets, UringPending};

use crate::threads::{CALL_EVENTS, add, counters, lost_ringbuf, traced_current};

#[unsafe(no_mangle)]
static URING_OFFSETS: UringOffsets = UringOffsets {
    submit_req: 16,
    submit_opcode: 32,
    complete_req: 16,
    complete_res: 32,
    emit: 0,
};

/// Requests of traced threads in flight, by `struct io_kiocb *`. A request
/// whose completion is never seen (the ring torn down) stays until evicted.
#[map]
static URING_INFLIGHT: HashMap<u64, UringPending> = HashMap::with_max_entries(16384, 0);

#[inline(always)]
fn offsets() -> UringOffsets {
    unsafe { core::ptr::read_volatile(&URING_OFFSETS) }
}

#[tracepoint]
pub fn io_uring_submit_req(ctx: TracePointContext) -> u32 {
    let Some((tgid, tid)) = traced_current() else {
        return 0;
    };
    let off = offsets();
    let (Ok(req), Ok(opcode)) = (
        unsafe { ctx.read_at::<u64>(off.submit_req as usize) },
        unsafe { ctx.read_at::<u8>(off.submit_opcode as usize) },
    ) else {
        return 0;
    };
    let pending = UringPending {
        start_ns: unsafe { bpf_ktime_get_ns() },
        tgid,
        tid,
        opcode: opcode as u32,
        _pad: 0,
    };
    let _ = URING_INFLIGHT.insert(req, pending, 0);
    0
}

#[tracepoint]
pub fn io_uring_complete(ctx: TracePointContext) -> u32 {
    let off = offsets();
    let Ok(req) = (unsafe { ctx.read_at::<u64>(off.complete_req as usize) }) else {
        return 0;
    };
    let Some(p) = (unsafe { URING_INFLIGHT.get(req) }).copied() else {
        return 0;
    };
    let _ = URING_INFLIGHT.remove(req);
    let res = unsafe { ctx.read_at::<i32>(off.complete_res as usize) }.unwrap_or(0);
    let duration_ns = unsafe { bpf_ktime_get_ns() }.saturating_sub(p.start_ns);
    if let Some(c) = counters(p.tid) {
        unsafe {
            add(&raw mut (*c).uring_requests, 1);
            add(&raw mut (*c).uring_ns, duration_ns);
        }
    }
    if off.emit != 0 {
        let Some(mut entry) = CALL_EVENTS.reserve::<CallEvent>(0) else {
            lost_ringbuf();
            return 0;
        };
        let out = entry.as_mut_ptr();
        // SAFETY: the reserved record; only the scalar fields (no request,
        // no dma-buf: see CallEvent).
        unsafe {
            (*out).kind = EVENT_URING;
            (*out).tgid = p.tgid;
            (*out).tid = p.tid;
            (*out).what = p.opcode;
            (*out).ret = res as i64;
            (*out).start_ns = p.start_ns;
            (*out).duration_ns = duration_ns;
            (*out).len = 0;
        }
        entry.submit(0);
    }
    0
}
