//! Per-thread counters the kernel probes add to, so user space can join
//! kernel activity to each timed call: it reads a thread's counters after
//! every call and takes the difference (counters only grow, so there is no
//! reset race with events arriving from other CPUs).

use crate::uapi::RwFileArgs;

/// Declares the per-thread counters once: the `#[repr(C)]` struct the eBPF
/// programs add to, and the table user space derives everything from (the
/// per-call difference, sums, CSV columns, JSON fields).
macro_rules! thread_counters {
    ($(#[$doc:meta])* pub struct $name:ident { $($(#[$fdoc:meta])* $field:ident,)* }) => {
        $(#[$doc])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct $name {
            $($(#[$fdoc])* pub $field: u64,)*
        }

        impl $name {
            /// The field names, in declaration order.
            pub const FIELDS: &'static [&'static str] = &[$(stringify!($field)),*];

            /// The values, in the order of `FIELDS`.
            pub fn values(&self) -> [u64; { [$(stringify!($field)),*].len() }] {
                [$(self.$field),*]
            }

            /// Builds the counters from values in the order of `FIELDS`.
            pub fn from_values(v: [u64; { [$(stringify!($field)),*].len() }]) -> Self {
                let mut it = v.into_iter();
                $name { $($field: it.next().unwrap_or(0),)* }
            }

            /// What was added since `before` (counters only grow).
            pub fn since(&self, before: &Self) -> Self {
                $name { $($field: self.$field.saturating_sub(before.$field),)* }
            }

            pub fn add(&mut self, other: &Self) {
                $(self.$field += other.$field;)*
            }
        }
    };
}

thread_counters! {
    /// Cumulative kernel-side activity of one traced thread. Every field is
    /// updated with atomic adds (block completions arrive on other CPUs).
    /// New fields go at the end: the per-call CSV columns follow this order.
    pub struct ThreadCounters {
        /// dma_buf_ioctl (or ioctl syscalls with a dma-buf command) calls and time.
        ioctl_calls,
        ioctl_ns,
        /// Calls that returned an error.
        ioctl_errors,
        /// The exporter's rw_file callback: calls, time, bytes requested.
        exporter_calls,
        exporter_ns,
        exporter_bytes,
        /// Block requests this thread started and the bytes it submitted
        /// (requests started plus bios merged into others), counted in submit
        /// context; device time is added at completion.
        block_requests,
        block_bytes,
        block_device_ns,
        /// Time spent switched out (sleeping, waiting for I/O, preempted).
        off_cpu_ns,
        switches,
        /// Exporter calls that returned an error.
        exporter_errors,
    }
}

/// An ioctl or exporter call in flight on a thread (entry -> exit).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Pending {
    pub start_ns: u64,
    /// ioctl: the command; exporter: the RW_FILE flags.
    pub what: u64,
    /// exporter: buf_len.
    pub len: u64,
    /// RW_FILE calls: the request as the kernel sees it at the call.
    pub rw: RwFileArgs,
    /// The exporter's calls: the dma-buf, read at the call.
    pub buf: DmaBufId,
}

/// A dma-buf as the exporter probe reads it from `struct dma_buf` at the
/// call: its size, its file's inode number and the exporter's name.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DmaBufId {
    pub size: u64,
    pub ino: u64,
    /// `exp_name`, NUL-terminated (truncated to 15 bytes).
    pub exporter: [u8; 16],
}

/// Where `DmaBufId`'s fields are, in bytes, from the kernel's BTF (set by
/// user space before load; `valid` 0: unknown, nothing is read).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DmaBufOffsets {
    pub valid: u32,
    /// In struct dma_buf.
    pub size: u32,
    pub exp_name: u32,
    pub file: u32,
    /// In struct file.
    pub f_inode: u32,
    /// In struct inode.
    pub i_ino: u32,
}

/// One finished dma-buf ioctl, exporter call or pread, sent through the ring
/// buffer (for `dmaprof trace`, which has no workload loop to read counters).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CallEvent {
    pub kind: u32,
    pub tgid: u32,
    pub tid: u32,
    /// ioctl command, or RW_FILE flags for the exporter.
    pub what: u32,
    pub ret: i64,
    pub start_ns: u64,
    pub duration_ns: u64,
    /// Exporter: buf_len.
    pub len: u64,
    /// RW_FILE (the ioctl and the exporter's callback): the request read at
    /// the call (the ioctl's from user memory at entry, the exporter's from
    /// the kernel's copy); zero for other calls or when it was unreadable.
    pub rw: RwFileArgs,
    /// The exporter's calls: the dma-buf (zero for other calls).
    pub buf: DmaBufId,
}

pub const EVENT_IOCTL: u32 = 1;
pub const EVENT_EXPORTER: u32 = 2;
/// A pread64 syscall (`dmaprof trace` only): what = fd, len = bytes asked,
/// ret = bytes read or -errno.
pub const EVENT_PREAD: u32 = 3;

/// sched_switch field offsets (set from tracefs before load).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SchedOffsets {
    pub prev_pid: u32,
    pub next_pid: u32,
}

impl SchedOffsets {
    pub const DEFAULT: SchedOffsets = SchedOffsets {
        prev_pid: 24,
        next_pid: 56,
    };
}

/// Per-CPU counters of events the call probes could not record.
pub mod lost {
    /// Ring buffer full: a CallEvent was dropped.
    pub const RINGBUF_FULL: u32 = 0;
    /// An entry probe could not remember its start: the thread's task
    /// storage could not be created (the kernel was out of memory).
    pub const PENDING_FULL: u32 = 1;
    pub const COUNT: u32 = 2;
}

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: plain #[repr(C)] integers; any bit pattern is valid.
    unsafe impl aya::Pod for ThreadCounters {}
    unsafe impl aya::Pod for Pending {}
    unsafe impl aya::Pod for CallEvent {}
    unsafe impl aya::Pod for SchedOffsets {}
    unsafe impl aya::Pod for DmaBufOffsets {}
}
