//! Block layer: bytes and device latency per submitting thread, from the
//! classic block tracepoints (available on every kernel dmaprof targets).
//!
//! `block_io_start` runs in the context that submitted the I/O, so it names
//! the thread; `block_rq_issue` and `block_rq_complete` may run in a kworker
//! or an interrupt, so they find the request by (device, sector) instead.
use crate::threads::{add, counters, filter_tgid};
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::{map, tracepoint},
    maps::{Array, HashMap, PerCpuArray, PerCpuHashMap},
    programs::TracePointContext,
};
use profiler_common::block::{
    BlockFieldOffsets, BlockKey, BlockTotals, Inflight, InflightKey, LATENCY_SLOTS, LatencySlotKey,
    counter,
};

/// Tracepoint field offsets (set by user space from tracefs before load).
#[unsafe(no_mangle)]
static BLOCK_OFFSETS: BlockFieldOffsets = BlockFieldOffsets::DEFAULT;

#[map]
static BLOCK_INFLIGHT: HashMap<InflightKey, Inflight> = HashMap::with_max_entries(16384, 0);

#[map]
static BLOCK_TOTALS: PerCpuHashMap<BlockKey, BlockTotals> =
    PerCpuHashMap::with_max_entries(4096, 0);

#[map]
static BLOCK_LATENCY: PerCpuHashMap<LatencySlotKey, u64> = PerCpuHashMap::with_max_entries(4096, 0);

/// Request-size histogram: log2 buckets of completed bytes, per process.
#[map]
static BLOCK_SIZES: PerCpuHashMap<LatencySlotKey, u64> = PerCpuHashMap::with_max_entries(4096, 0);

#[map]
static BLOCK_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

/// When user space finished attaching (CLOCK_MONOTONIC ns; 0 until then):
/// a completion without a start seen in the second after it is most likely
/// a request already in flight then, counted apart from a missed start.
#[map]
static BLOCK_ARMED_NS: Array<u64> = Array::with_max_entries(1, 0);

/// Unmatched completions this long after arming are misses.
const SETTLE_NS: u64 = 1_000_000_000;

#[inline(always)]
fn offsets() -> BlockFieldOffsets {
    // Volatile: the value is patched into .rodata at load; the compiler must not fold it.
    unsafe { core::ptr::read_volatile(&BLOCK_OFFSETS) }
}

#[inline(always)]
fn bump(index: u32) {
    if let Some(slot) = BLOCK_COUNTERS.get_ptr_mut(index) {
        unsafe { *slot += 1 };
    }
}

#[inline(always)]
fn request_key(ctx: &TracePointContext, off: &BlockFieldOffsets) -> Option<InflightKey> {
    let dev: u32 = unsafe { ctx.read_at(off.dev as usize) }.ok()?;
    let sector: u64 = unsafe { ctx.read_at(off.sector as usize) }.ok()?;
    Some(InflightKey {
        dev,
        _pad: 0,
        sector,
    })
}

/// Tracks every process's requests, traced or not: a completion without an
/// entry is then a start the probes missed, whatever the filter (the
/// filter applies when the completion is counted).
#[tracepoint]
pub fn block_io_start(ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    let off = offsets();
    let Some(key) = request_key(&ctx, &off) else {
        return 0;
    };
    let bytes: u32 = unsafe { ctx.read_at(off.start_bytes as usize) }.unwrap_or(0);
    let entry = Inflight {
        tgid,
        tid: pid_tgid as u32,
        remaining_bytes: bytes as u64,
        start_ns: unsafe { bpf_ktime_get_ns() },
        issue_ns: 0,
    };
    if BLOCK_INFLIGHT.insert(key, entry, 0).is_err() {
        bump(counter::INFLIGHT_FULL);
        // Diagnostics through aya-log: only on this failure path, never per event.
        aya_log_ebpf::warn!(
            &ctx,
            "block: in-flight map full, request at sector {} not tracked",
            key.sector
        );
    }
    // The per-call join counts bytes here, in the submitting thread, inside
    // the call that submits them: exact per call, whenever completions land.
    if let Some(c) = counters(pid_tgid as u32) {
        unsafe {
            add(&raw mut (*c).block_requests, 1);
            add(&raw mut (*c).block_bytes, bytes as u64);
        }
    }
    0
}

/// Bytes a thread adds to an existing request by merging a bio into it
/// (submit context): part of its I/O without a request of its own.
#[inline(always)]
fn count_merged_bio(ctx: &TracePointContext, off: &BlockFieldOffsets) {
    let tid = bpf_get_current_pid_tgid() as u32;
    if let Some(c) = counters(tid) {
        let nr_sector: u32 = unsafe { ctx.read_at(off.nr_sector as usize) }.unwrap_or(0);
        unsafe { add(&raw mut (*c).block_bytes, (nr_sector as u64) << 9) };
    }
}

#[tracepoint]
pub fn block_bio_backmerge(ctx: TracePointContext) -> u32 {
    count_merged_bio(&ctx, &offsets());
    0
}

#[tracepoint]
pub fn block_rq_issue(ctx: TracePointContext) -> u32 {
    let off = offsets();
    let Some(key) = request_key(&ctx, &off) else {
        return 0;
    };
    if let Some(entry) = BLOCK_INFLIGHT.get_ptr_mut(key) {
        // A requeued request is issued again: the device time starts over.
        unsafe { (*entry).issue_ns = bpf_ktime_get_ns() };
        // Its size as issued, bios merged at its back included (they do not
        // move its start, so no event before this one carries them): a
        // request completed in parts is followed to its last byte.
        let nr_sector: u32 = unsafe { ctx.read_at(off.nr_sector as usize) }.unwrap_or(0);
        if nr_sector != 0 {
            unsafe { (*entry).remaining_bytes = (nr_sector as u64) << 9 };
        }
    }
    0
}

/// A bio merged at the front of a request moves the request's start sector:
/// move the in-flight entry with it so the completion still finds it.
#[tracepoint]
pub fn block_bio_frontmerge(ctx: TracePointContext) -> u32 {
    let off = offsets();
    let Some(bio_key) = request_key(&ctx, &off) else {
        return 0;
    };
    count_merged_bio(&ctx, &off);
    let nr_sector: u32 = unsafe { ctx.read_at(off.nr_sector as usize) }.unwrap_or(0);
    let old_key = InflightKey {
        sector: bio_key.sector + nr_sector as u64,
        ..bio_key
    };
    if let Some(entry) = unsafe { BLOCK_INFLIGHT.get(old_key) } {
        let mut moved = *entry;
        moved.remaining_bytes += (nr_sector as u64) << 9;
        let _ = BLOCK_INFLIGHT.remove(old_key);
        if BLOCK_INFLIGHT.insert(bio_key, moved, 0).is_err() {
            bump(counter::INFLIGHT_FULL);
        }
    }
    0
}

#[tracepoint]
pub fn block_rq_complete(ctx: TracePointContext) -> u32 {
    let now = unsafe { bpf_ktime_get_ns() };
    let off = offsets();
    let Some(key) = request_key(&ctx, &off) else {
        return 0;
    };
    let Some(found) = (unsafe { BLOCK_INFLIGHT.get(key) }) else {
        let armed = BLOCK_ARMED_NS.get(0).copied().unwrap_or(0);
        if armed != 0 && now > armed + SETTLE_NS {
            bump(counter::UNMATCHED_COMPLETE);
        } else {
            bump(counter::UNMATCHED_AT_START);
        }
        return 0;
    };
    let entry = *found;
    let nr_sector: u32 = unsafe { ctx.read_at(off.nr_sector as usize) }.unwrap_or(0);
    let error: i32 = unsafe { ctx.read_at(off.complete_error as usize) }.unwrap_or(0);
    let rwbs0: u8 = unsafe { ctx.read_at(off.complete_rwbs as usize) }.unwrap_or(0);
    let bytes = (nr_sector as u64) << 9;

    // Partial completion: the rest of the request continues at the next sector.
    let _ = BLOCK_INFLIGHT.remove(key);
    if bytes < entry.remaining_bytes && bytes > 0 {
        let rest = Inflight {
            remaining_bytes: entry.remaining_bytes - bytes,
            ..entry
        };
        let rest_key = InflightKey {
            sector: key.sector + nr_sector as u64,
            ..key
        };
        if BLOCK_INFLIGHT.insert(rest_key, rest, 0).is_err() {
            bump(counter::INFLIGHT_FULL);
        }
    }

    let filter = filter_tgid();
    if filter != 0 && filter != entry.tgid {
        return 0;
    }
    let device_ns = if entry.issue_ns != 0 && now > entry.issue_ns {
        now - entry.issue_ns
    } else {
        0
    };
    let queue_ns = entry.issue_ns.saturating_sub(entry.start_ns);
    let totals_key = BlockKey {
        tgid: entry.tgid,
        tid: entry.tid,
        dev: key.dev,
        _pad: 0,
    };
    let totals = match BLOCK_TOTALS.get_ptr_mut(totals_key) {
        Some(t) => t,
        None => {
            let zero = BlockTotals::default();
            if BLOCK_TOTALS.insert(totals_key, zero, 0).is_err() {
                bump(counter::TOTALS_FULL);
                return 0;
            }
            match BLOCK_TOTALS.get_ptr_mut(totals_key) {
                Some(t) => t,
                None => return 0,
            }
        }
    };
    // Per-CPU value: no other CPU writes it, plain adds are safe.
    let t = unsafe { &mut *totals };
    t.completions += 1;
    t.bytes += bytes;
    match rwbs0 {
        b'R' => t.read_bytes += bytes,
        b'W' => t.write_bytes += bytes,
        _ => {}
    }
    t.device_ns += device_ns;
    t.queue_ns += queue_ns;
    if device_ns > t.max_device_ns {
        t.max_device_ns = device_ns;
    }
    if error != 0 {
        t.errors += 1;
    }
    if bytes != 0 {
        let size_key = LatencySlotKey {
            tgid: entry.tgid,
            slot: log2(bytes).min(LATENCY_SLOTS - 1),
            dev: key.dev,
            _pad: 0,
        };
        match BLOCK_SIZES.get_ptr_mut(size_key) {
            Some(n) => unsafe { *n += 1 },
            None => {
                let one: u64 = 1;
                if BLOCK_SIZES.insert(size_key, one, 0).is_err() {
                    bump(counter::TOTALS_FULL);
                }
            }
        }
    }
    if device_ns != 0 {
        let slot = log2(device_ns).min(LATENCY_SLOTS - 1);
        let slot_key = LatencySlotKey {
            tgid: entry.tgid,
            slot,
            dev: key.dev,
            _pad: 0,
        };
        match BLOCK_LATENCY.get_ptr_mut(slot_key) {
            Some(n) => unsafe { *n += 1 },
            None => {
                let _ = BLOCK_LATENCY.insert(slot_key, 1, 0);
            }
        }
    }
    // The per-call join: device time of the submitting thread's requests
    // (bytes were counted at submission).
    if let Some(c) = counters(entry.tid) {
        unsafe { add(&raw mut (*c).block_device_ns, device_ns) };
    }
    0
}

#[inline(always)]
fn log2(v: u64) -> u32 {
    63 - v.leading_zeros()
}
