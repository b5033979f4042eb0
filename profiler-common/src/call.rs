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
        /// io_uring requests this thread submitted that completed, and
        /// their time from submission to completion (summed: requests
        /// overlap at queue depth > 1).
        uring_requests,
        uring_ns,
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
/// call: its size, its file's inode number, the exporter's name and the
/// buffer's own name when one was set (DMA_BUF_SET_NAME).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DmaBufId {
    pub size: u64,
    pub ino: u64,
    /// `exp_name`, NUL-terminated (truncated to 15 bytes).
    pub exporter: [u8; 16],
    /// `name`, NUL-terminated (the kernel keeps at most 31 bytes), empty
    /// when unset.
    pub name: [u8; DMA_BUF_NAME_LEN],
}

/// The kernel's DMA_BUF_NAME_LEN.
pub const DMA_BUF_NAME_LEN: usize = 32;

/// Where the fields the probes read at a call are, in bytes, from the
/// kernel's BTF (set by user space before load; `valid` 0: unknown, nothing
/// is read): a dma-buf's identity, a file's, and the way from the current
/// task to the `struct file` behind an fd.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOffsets {
    pub valid: u32,
    /// struct dma_buf: size, exp_name, file, name.
    pub dmabuf_size: u32,
    pub dmabuf_exp_name: u32,
    pub dmabuf_file: u32,
    pub dmabuf_name: u32,
    /// struct file: f_inode, f_path.dentry, private_data, f_pos, f_flags.
    pub file_inode: u32,
    pub file_dentry: u32,
    pub file_private: u32,
    pub file_pos: u32,
    pub file_flags: u32,
    /// struct inode: i_ino, i_sb.
    pub inode_ino: u32,
    pub inode_sb: u32,
    /// struct super_block: s_dev, s_magic.
    pub sb_dev: u32,
    pub sb_magic: u32,
    /// struct dentry: d_name.name, d_parent.
    pub dentry_name: u32,
    pub dentry_parent: u32,
    /// task_struct.files, files_struct.fdt, fdtable.fd, fdtable.max_fds.
    pub task_files: u32,
    pub files_fdt: u32,
    pub fdt_fd: u32,
    pub fdt_max_fds: u32,
    /// This architecture's O_DIRECT bit in f_flags.
    pub o_direct: u32,
}

/// The dma-buf filesystem's magic (`DMA_BUF_MAGIC`): a file on it is a dma-buf.
pub const DMA_BUF_MAGIC: u64 = 0x444d_4142;

/// Bytes kept of each path component.
pub const FILE_NAME_LEN: usize = 32;
/// Path components read from the leaf up.
pub const FILE_PATH_DEPTH: usize = 8;

/// A regular file as the probes read it from the kernel at the call: its
/// device and inode, its open flags, and the names of its dentry and its
/// parents (leaf first), up to its filesystem's root when `complete`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileId {
    pub ino: u64,
    /// The filesystem's `s_dev` (the kernel's dev_t: major << 20 | minor).
    pub dev: u32,
    /// Names read (0: no file).
    pub depth: u32,
    /// 1 when the walk reached the root of the file's filesystem.
    pub complete: u32,
    /// The file's `f_flags` (O_DIRECT...).
    pub flags: u32,
    /// NUL-terminated names, truncated to FILE_NAME_LEN - 1 bytes.
    pub names: [[u8; FILE_NAME_LEN]; FILE_PATH_DEPTH],
}

impl Default for FileId {
    fn default() -> Self {
        FileId {
            ino: 0,
            dev: 0,
            depth: 0,
            complete: 0,
            flags: 0,
            names: [[0; FILE_NAME_LEN]; FILE_PATH_DEPTH],
        }
    }
}

/// A finished call that names a file (an RW_FILE ioctl, a copy_file_range):
/// the call and the file read at its entry. Sent through the same ring as
/// `CallEvent`s, told apart by their size.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileCallEvent {
    pub call: CallEvent,
    pub file: FileId,
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
    /// RW_FILE (the ioctl and the exporter's callback) and copy_file_range:
    /// the request read at the call (the ioctl's from user memory at entry,
    /// the exporter's from the kernel's copy); zero for other dma-buf calls
    /// or when it was unreadable. Not written for EVENT_PREAD and
    /// EVENT_URING (whatever the ring held): readers look at the kind first.
    pub rw: RwFileArgs,
    /// The call's dma-buf (zero when none; not written, as `rw`, for
    /// EVENT_PREAD and EVENT_URING).
    pub buf: DmaBufId,
}

pub const EVENT_IOCTL: u32 = 1;
pub const EVENT_EXPORTER: u32 = 2;
/// A pread64 syscall (`dmaprof trace` only): what = fd, len = bytes asked,
/// ret = bytes read or -errno.
pub const EVENT_PREAD: u32 = 3;
/// A copy_file_range syscall (`dmaprof trace`): what = the request's flags
/// as RW_FILE would spell them when one side is a dma-buf (READ: file ->
/// buffer, WRITE: buffer -> file, DIRECT when the file is O_DIRECT), else 0;
/// len = bytes asked, ret = bytes copied or -errno.
pub const EVENT_COPY_RANGE: u32 = 4;
/// The dma-buf core's copy_file_range handler (v4), which calls the
/// exporter's rw_file_v4: fields as for EVENT_COPY_RANGE.
pub const EVENT_CFR_HANDLER: u32 = 5;
/// An io_uring request, submission to completion (`dmaprof trace`): what =
/// the opcode, ret = the CQE's result (bytes or -errno), attributed to the
/// thread that submitted it.
pub const EVENT_URING: u32 = 6;

/// io_uring_submit_req and io_uring_complete field offsets (from tracefs).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UringOffsets {
    pub submit_req: u32,
    pub submit_opcode: u32,
    pub complete_req: u32,
    pub complete_res: u32,
    /// 1: send one event per completed request (`dmaprof trace`); 0: count
    /// only (a workload run reads the counters, nobody the events).
    pub emit: u32,
}

/// An io_uring request in flight, keyed by its `struct io_kiocb *`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct UringPending {
    pub start_ns: u64,
    pub tgid: u32,
    pub tid: u32,
    pub opcode: u32,
    pub _pad: u32,
}

/// sched_switch field offsets (set from tracefs before load), and where
/// `task_struct.pid` is (from BTF, for the BTF-typed program; 0: unknown).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SchedOffsets {
    pub prev_pid: u32,
    pub next_pid: u32,
    pub task_pid: u32,
    pub _pad: u32,
}

impl SchedOffsets {
    pub const DEFAULT: SchedOffsets = SchedOffsets {
        prev_pid: 24,
        next_pid: 56,
        task_pid: 0,
        _pad: 0,
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
    unsafe impl aya::Pod for KernelOffsets {}
    unsafe impl aya::Pod for UringOffsets {}
    unsafe impl aya::Pod for UringPending {}
    unsafe impl aya::Pod for FileId {}
    unsafe impl aya::Pod for FileCallEvent {}
}
