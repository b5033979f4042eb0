//! Block-layer accounting, aggregated in the kernel (requests are too frequent
//! to ship one by one through a ring buffer).

/// Identifies an in-flight request between `block_io_start` and
/// `block_rq_complete`: the tracepoints expose no request pointer, but a
/// request's (device, start sector) is unique while it is in flight.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InflightKey {
    /// Kernel-internal dev_t (major << 20 | minor).
    pub dev: u32,
    pub _pad: u32,
    pub sector: u64,
}

/// What is known of a request while it is in flight.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Inflight {
    /// The process and thread that submitted it (recorded in submit context).
    pub tgid: u32,
    pub tid: u32,
    /// Bytes not completed yet: a request may complete in several parts.
    pub remaining_bytes: u64,
    /// `block_io_start` time (request allocated), ns since boot.
    pub start_ns: u64,
    /// `block_rq_issue` time (handed to the driver), 0 until issued.
    pub issue_ns: u64,
}

/// Per-thread, per-device totals. Kept in a per-CPU map: user space sums the CPUs.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockKey {
    pub tgid: u32,
    pub tid: u32,
    /// Kernel-internal dev_t (major << 20 | minor).
    pub dev: u32,
    pub _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockTotals {
    /// Completion events (a request completed in parts counts each part).
    pub completions: u64,
    /// Bytes completed, counted at completion (a requeued request is issued
    /// twice but completes once).
    pub bytes: u64,
    pub read_bytes: u64,
    pub write_bytes: u64,
    /// Sum of issue -> complete time over completions that saw their issue.
    pub device_ns: u64,
    /// Sum of start -> issue time (time queued in the block layer).
    pub queue_ns: u64,
    pub max_device_ns: u64,
    /// Completions with a non-zero error.
    pub errors: u64,
}

impl BlockTotals {
    pub fn add(&mut self, other: &BlockTotals) {
        self.completions += other.completions;
        self.bytes += other.bytes;
        self.read_bytes += other.read_bytes;
        self.write_bytes += other.write_bytes;
        self.device_ns += other.device_ns;
        self.queue_ns += other.queue_ns;
        self.errors += other.errors;
        if other.max_device_ns > self.max_device_ns {
            self.max_device_ns = other.max_device_ns;
        }
    }
}

/// Device-latency histogram: log2 buckets of issue -> complete nanoseconds,
/// keyed per process and device (bucket i holds latencies in [2^i, 2^(i+1)) ns).
pub const LATENCY_SLOTS: u32 = 40;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct LatencySlotKey {
    pub tgid: u32,
    pub slot: u32,
    /// Kernel-internal dev_t (major << 20 | minor).
    pub dev: u32,
    pub _pad: u32,
}

/// Indexes of the per-CPU counters of things that went wrong in the probes.
/// They are shown to the user: a lost event is never silent.
pub mod counter {
    /// The in-flight map was full: a request was not tracked.
    pub const INFLIGHT_FULL: u32 = 0;
    /// A completion whose start was never seen, more than a second after
    /// the probes were armed: a start missed (every process's requests are
    /// tracked, whatever the filter, so this is a miss under --pid too).
    pub const UNMATCHED_COMPLETE: u32 = 1;
    /// A totals entry could not be created (map full).
    pub const TOTALS_FULL: u32 = 2;
    /// A completion whose start was never seen, in the second after the
    /// probes were armed: most likely a request already in flight then.
    pub const UNMATCHED_AT_START: u32 = 3;
    pub const COUNT: u32 = 4;
}

/// Tracepoint field offsets, read from tracefs `format` files by user space
/// and written into the object's globals before load, so the programs do not
/// depend on one kernel's layout. These defaults hold for 5.x to 6.18.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockFieldOffsets {
    pub dev: u32,
    pub sector: u32,
    pub nr_sector: u32,
    /// `rwbs` in block_rq_complete (first char 'R' / 'W').
    pub complete_rwbs: u32,
    /// `error` in block_rq_complete.
    pub complete_error: u32,
    /// `bytes` in block_io_start.
    pub start_bytes: u32,
}

impl BlockFieldOffsets {
    pub const DEFAULT: BlockFieldOffsets = BlockFieldOffsets {
        dev: 8,
        sector: 16,
        nr_sector: 24,
        complete_rwbs: 34,
        complete_error: 28,
        start_bytes: 28,
    };
}

/// Where the BTF-typed block programs read a request's and a bio's fields
/// (byte offsets from the kernel's BTF, set by user space before load;
/// `valid` 0: unknown, those programs are not used).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockBtfOffsets {
    pub valid: u32,
    /// request.__sector, __data_len, cmd_flags, q.
    pub rq_sector: u32,
    pub rq_data_len: u32,
    pub rq_cmd_flags: u32,
    pub rq_q: u32,
    /// request_queue.disk; gendisk.major, first_minor.
    pub q_disk: u32,
    pub disk_major: u32,
    pub disk_first_minor: u32,
    /// bio.bi_iter.bi_sector and .bi_size (bi_iter's offset added), bio.bi_bdev.
    pub bio_sector: u32,
    pub bio_size: u32,
    pub bio_bdev: u32,
    /// block_device.bd_disk.
    pub bdev_disk: u32,
}

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: plain #[repr(C)] integers with explicit padding; any bit pattern is valid.
    unsafe impl aya::Pod for InflightKey {}
    unsafe impl aya::Pod for Inflight {}
    unsafe impl aya::Pod for BlockKey {}
    unsafe impl aya::Pod for BlockTotals {}
    unsafe impl aya::Pod for LatencySlotKey {}
    unsafe impl aya::Pod for BlockFieldOffsets {}
    unsafe impl aya::Pod for BlockBtfOffsets {}
}
