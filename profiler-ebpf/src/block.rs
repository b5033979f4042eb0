//! Block layer: bytes and device latency per submitting thread.
//!
//! One set of handlers (a request started, issued, completed; a bio merged
//! at its front or back), fed by two sets of programs: on the BTF-typed
//! tracepoints where the kernel has them (the kernel skips such a program
//! only if it would recurse into itself), else on the classic ones (skipped
//! while another BPF program or a `bpf()` map syscall holds the CPU's
//! `bpf_prog_active`: a completion lost, a request never seen completing).
//!
//! `block_io_start` runs in the context that submitted the I/O, so it names
//! the thread; `block_rq_issue` and `block_rq_complete` may run in a kworker
//! or an interrupt, so they find the request by (device, sector) instead.
use crate::threads::{add, counters, filter_tgid};
use aya_ebpf::{
    EbpfContext,
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_kernel},
    macros::{btf_tracepoint, map, tracepoint},
    maps::{Array, HashMap, PerCpuArray, PerCpuHashMap},
    programs::{BtfTracePointContext, TracePointContext},
};
use profiler_common::block::{
    BlockBtfOffsets, BlockFieldOffsets, BlockKey, BlockTotals, Inflight, InflightKey,
    LATENCY_SLOTS, LatencySlotKey, counter,
};

/// Tracepoint field offsets (set by user space from tracefs before load).
#[unsafe(no_mangle)]
static BLOCK_OFFSETS: BlockFieldOffsets = BlockFieldOffsets::DEFAULT;

/// Struct member offsets for the BTF-typed programs (from BTF, before load).
#[unsafe(no_mangle)]
static BLOCK_BTF: BlockBtfOffsets = BlockBtfOffsets {
    valid: 0,
    rq_sector: 0,
    rq_data_len: 0,
    rq_cmd_flags: 0,
    rq_q: 0,
    q_disk: 0,
    disk_major: 0,
    disk_first_minor: 0,
    bio_sector: 0,
    bio_size: 0,
    bio_bdev: 0,
    bdev_disk: 0,
};

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
fn btf() -> BlockBtfOffsets {
    // Volatile: patched into .rodata at load; the compiler must not fold it.
    unsafe { core::ptr::read_volatile(&BLOCK_BTF) }
}

/// A kernel value at `base + off` (None when unreadable).
#[inline(always)]
fn kread<T>(base: *const u8, off: u32) -> Option<T> {
    // SAFETY: a checked kernel read; a bad address is an error, not a fault.
    unsafe { bpf_probe_read_kernel(base.wrapping_add(off as usize) as *const T) }.ok()
}

/// A gendisk's dev_t, kernel-internal (major << 20 | minor), as the
/// classic tracepoints' `dev` (disk_devt).
#[inline(always)]
fn disk_dev(disk: *const u8, o: &BlockBtfOffsets) -> Option<u32> {
    if disk.is_null() {
        return Some(0);
    }
    let major: i32 = kread(disk, o.disk_major)?;
    let minor: i32 = kread(disk, o.disk_first_minor)?;
    Some(((major as u32) << 20) | minor as u32)
}

/// A request's key and size, from `struct request`.
#[inline(always)]
fn rq_fields(rq: *const u8, o: &BlockBtfOffsets) -> Option<(InflightKey, u32)> {
    let q: *const u8 = kread(rq, o.rq_q)?;
    let disk: *const u8 = kread(q, o.q_disk)?;
    let key = InflightKey {
        dev: disk_dev(disk, o)?,
        _pad: 0,
        sector: kread(rq, o.rq_sector)?,
    };
    Some((key, kread(rq, o.rq_data_len)?))
}

/// A bio's key (its whole disk's dev, like a request's) and size.
#[inline(always)]
fn bio_fields(bio: *const u8, o: &BlockBtfOffsets) -> Option<(InflightKey, u32)> {
    let bdev: *const u8 = kread(bio, o.bio_bdev)?;
    let disk: *const u8 = kread(bdev, o.bdev_disk)?;
    let key = InflightKey {
        dev: disk_dev(disk, o)?,
        _pad: 0,
        sector: kread(bio, o.bio_sector)?,
    };
    Some((key, kread(bio, o.bio_size)?))
}

#[inline(always)]
fn tp_key(ctx: &TracePointContext, off: &BlockFieldOffsets) -> Option<InflightKey> {
    let dev: u32 = unsafe { ctx.read_at(off.dev as usize) }.ok()?;
    let sector: u64 = unsafe { ctx.read_at(off.sector as usize) }.ok()?;
    Some(InflightKey {
        dev,
        _pad: 0,
        sector,
    })
}

#[inline(always)]
fn tp_nr_sector(ctx: &TracePointContext, off: &BlockFieldOffsets) -> u32 {
    unsafe { ctx.read_at(off.nr_sector as usize) }.unwrap_or(0)
}

// The classic programs: fields from the tracepoint record.

#[tracepoint]
pub fn block_io_start(ctx: TracePointContext) -> u32 {
    let off = offsets();
    if let Some(key) = tp_key(&ctx, &off) {
        let bytes: u32 = unsafe { ctx.read_at(off.start_bytes as usize) }.unwrap_or(0);
        started(&ctx, key, bytes as u64);
    }
    0
}

#[tracepoint]
pub fn block_rq_issue(ctx: TracePointContext) -> u32 {
    let off = offsets();
    if let Some(key) = tp_key(&ctx, &off) {
        issued(key, (tp_nr_sector(&ctx, &off) as u64) << 9);
    }
    0
}

#[tracepoint]
pub fn block_bio_backmerge(ctx: TracePointContext) -> u32 {
    merged_bio((tp_nr_sector(&ctx, &offsets()) as u64) << 9);
    0
}

#[tracepoint]
pub fn block_bio_frontmerge(ctx: TracePointContext) -> u32 {
    let off = offsets();
    if let Some(key) = tp_key(&ctx, &off) {
        front_merged(key, tp_nr_sector(&ctx, &off) as u64);
    }
    0
}

#[tracepoint]
pub fn block_rq_complete(ctx: TracePointContext) -> u32 {
    let now = unsafe { bpf_ktime_get_ns() };
    let off = offsets();
    let Some(key) = tp_key(&ctx, &off) else {
        return 0;
    };
    let nr_sector = tp_nr_sector(&ctx, &off);
    let error: i32 = unsafe { ctx.read_at(off.complete_error as usize) }.unwrap_or(0);
    let rwbs0: u8 = unsafe { ctx.read_at(off.complete_rwbs as usize) }.unwrap_or(0);
    completed(now, key, (nr_sector as u64) << 9, error != 0, rwbs0);
    0
}

// The BTF-typed programs: fields from the kernel's structs.

/// block_io_start(rq) (6.5+), or block_rq_insert(rq) before.
#[btf_tracepoint(function = "block_io_start")]
pub fn block_start_btf(ctx: BtfTracePointContext) -> i32 {
    let rq: *const u8 = ctx.arg(0);
    if let Some((key, bytes)) = rq_fields(rq, &btf()) {
        started(&ctx, key, bytes as u64);
    }
    0
}

#[btf_tracepoint(function = "block_rq_issue")]
pub fn block_issue_btf(ctx: BtfTracePointContext) -> i32 {
    let rq: *const u8 = ctx.arg(0);
    if let Some((key, bytes)) = rq_fields(rq, &btf()) {
        issued(key, bytes as u64);
    }
    0
}

#[btf_tracepoint(function = "block_bio_backmerge")]
pub fn block_backmerge_btf(ctx: BtfTracePointContext) -> i32 {
    let bio: *const u8 = ctx.arg(0);
    if let Some(size) = kread::<u32>(bio, btf().bio_size) {
        merged_bio(size as u64);
    }
    0
}

#[btf_tracepoint(function = "block_bio_frontmerge")]
pub fn block_frontmerge_btf(ctx: BtfTracePointContext) -> i32 {
    let bio: *const u8 = ctx.arg(0);
    if let Some((key, size)) = bio_fields(bio, &btf()) {
        front_merged(key, (size >> 9) as u64);
    }
    0
}

/// block_rq_complete(rq, error, nr_bytes).
#[btf_tracepoint(function = "block_rq_complete")]
pub fn block_complete_btf(ctx: BtfTracePointContext) -> i32 {
    let now = unsafe { bpf_ktime_get_ns() };
    let o = btf();
    let rq: *const u8 = ctx.arg(0);
    let error: u64 = ctx.arg(1);
    let nr_bytes: u64 = ctx.arg(2);
    let Some((key, _)) = rq_fields(rq, &o) else {
        return 0;
    };
    // The operation, as the classic record's first rwbs letter.
    let op = match kread::<u32>(rq, o.rq_cmd_flags).map(|f| f & 0xff) {
        Some(0) => b'R',
        Some(1) => b'W',
        _ => 0,
    };
    // nr_bytes whole sectors, as the classic record's nr_sector.
    completed(
        now,
        key,
        (nr_bytes as u32 as u64) >> 9 << 9,
        error & 0xff != 0,
        op,
    );
    0
}

// The handlers.

/// Tracks every process's requests, traced or not: a completion without an
/// entry is then a start the probes missed, whatever the filter (the
/// filter applies when the completion is counted).
#[inline(always)]
fn started<C: EbpfContext>(ctx: &C, key: InflightKey, bytes: u64) {
    let pid_tgid = bpf_get_current_pid_tgid();
    let entry = Inflight {
        tgid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
        remaining_bytes: bytes,
        start_ns: unsafe { bpf_ktime_get_ns() },
        issue_ns: 0,
    };
    if BLOCK_INFLIGHT.insert(key, entry, 0).is_err() {
        bump(counter::INFLIGHT_FULL);
        // Diagnostics through aya-log: only on this failure path, never per event.
        aya_log_ebpf::warn!(
            ctx,
            "block: in-flight map full, request at sector {} not tracked",
            key.sector
        );
    }
    // The per-call join counts bytes here, in the submitting thread, inside
    // the call that submits them: exact per call, whenever completions land.
    if let Some(c) = counters(pid_tgid as u32) {
        unsafe {
            add(&raw mut (*c).block_requests, 1);
            add(&raw mut (*c).block_bytes, bytes);
        }
    }
}

/// Handed to the driver: the device time starts (again, for a requeued
/// request), and the request's size as issued, bios merged at its back
/// included (they do not move its start, so no earlier event carries them):
/// a request completed in parts is followed to its last byte.
#[inline(always)]
fn issued(key: InflightKey, bytes: u64) {
    if let Some(entry) = BLOCK_INFLIGHT.get_ptr_mut(key) {
        unsafe { (*entry).issue_ns = bpf_ktime_get_ns() };
        if bytes != 0 {
            unsafe { (*entry).remaining_bytes = bytes };
        }
    }
}

/// Bytes a thread adds to an existing request by merging a bio into it
/// (submit context): part of its I/O without a request of its own.
#[inline(always)]
fn merged_bio(bytes: u64) {
    let tid = bpf_get_current_pid_tgid() as u32;
    if let Some(c) = counters(tid) {
        unsafe { add(&raw mut (*c).block_bytes, bytes) };
    }
}

/// A bio merged at the front of a request moves the request's start sector:
/// the in-flight entry moves with it so the completion still finds it.
#[inline(always)]
fn front_merged(bio_key: InflightKey, nr_sector: u64) {
    merged_bio(nr_sector << 9);
    let old_key = InflightKey {
        sector: bio_key.sector + nr_sector,
        ..bio_key
    };
    if let Some(entry) = unsafe { BLOCK_INFLIGHT.get(old_key) } {
        let mut moved = *entry;
        moved.remaining_bytes += nr_sector << 9;
        let _ = BLOCK_INFLIGHT.remove(old_key);
        if BLOCK_INFLIGHT.insert(bio_key, moved, 0).is_err() {
            bump(counter::INFLIGHT_FULL);
        }
    }
}

/// `bytes` of the request at `key` completed (`op`: b'R', b'W' or other).
#[inline(always)]
fn completed(now: u64, key: InflightKey, bytes: u64, failed: bool, op: u8) {
    let Some(found) = (unsafe { BLOCK_INFLIGHT.get(key) }) else {
        let armed = BLOCK_ARMED_NS.get(0).copied().unwrap_or(0);
        if armed != 0 && now > armed + SETTLE_NS {
            bump(counter::UNMATCHED_COMPLETE);
        } else {
            bump(counter::UNMATCHED_AT_START);
        }
        return;
    };
    let entry = *found;
    // Partial completion: the rest of the request continues at the next sector.
    let _ = BLOCK_INFLIGHT.remove(key);
    if bytes < entry.remaining_bytes && bytes > 0 {
        let rest = Inflight {
            remaining_bytes: entry.remaining_bytes - bytes,
            ..entry
        };
        let rest_key = InflightKey {
            sector: key.sector + (bytes >> 9),
            ..key
        };
        if BLOCK_INFLIGHT.insert(rest_key, rest, 0).is_err() {
            bump(counter::INFLIGHT_FULL);
        }
    }
    let filter = filter_tgid();
    if filter != 0 && filter != entry.tgid {
        return;
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
                return;
            }
            match BLOCK_TOTALS.get_ptr_mut(totals_key) {
                Some(t) => t,
                None => return,
            }
        }
    };
    // Per-CPU value: no other CPU writes it, plain adds are safe.
    let t = unsafe { &mut *totals };
    t.completions += 1;
    t.bytes += bytes;
    match op {
        b'R' => t.read_bytes += bytes,
        b'W' => t.write_bytes += bytes,
        _ => {}
    }
    t.device_ns += device_ns;
    t.queue_ns += queue_ns;
    if device_ns > t.max_device_ns {
        t.max_device_ns = device_ns;
    }
    if failed {
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
}

#[inline(always)]
fn log2(v: u64) -> u32 {
    63 - v.leading_zeros()
}
