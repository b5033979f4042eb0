//! Types shared by the eBPF programs (`profiler-ebpf`) and the agent (`profiler`).
//!
//! Everything here is `#[repr(C)]`, `Copy` and padded explicitly, because the
//! kernel side and the user side must agree on the layout byte for byte.
#![no_std]

#[cfg(feature = "std")]
extern crate std;

pub mod block;
pub mod call;
pub mod pattern;
pub mod profile;
#[cfg(feature = "std")]
pub mod stats;
pub mod uapi;

/// Names of the programs in the eBPF object, so both sides spell them once.
pub mod programs {
    pub const BLOCK_IO_START: &str = "block_io_start";
    pub const BLOCK_RQ_ISSUE: &str = "block_rq_issue";
    pub const BLOCK_RQ_COMPLETE: &str = "block_rq_complete";
    pub const BLOCK_BIO_FRONTMERGE: &str = "block_bio_frontmerge";
    pub const BLOCK_BIO_BACKMERGE: &str = "block_bio_backmerge";
    /// The same five on the BTF-typed tracepoints.
    pub const BLOCK_START_BTF: &str = "block_start_btf";
    pub const BLOCK_ISSUE_BTF: &str = "block_issue_btf";
    pub const BLOCK_COMPLETE_BTF: &str = "block_complete_btf";
    pub const BLOCK_FRONTMERGE_BTF: &str = "block_frontmerge_btf";
    pub const BLOCK_BACKMERGE_BTF: &str = "block_backmerge_btf";
    pub const IOCTL_FENTRY: &str = "dma_buf_ioctl_fentry";
    pub const IOCTL_FEXIT: &str = "dma_buf_ioctl_fexit";
    pub const IOCTL_KPROBE: &str = "dma_buf_ioctl_kprobe";
    pub const IOCTL_KRETPROBE: &str = "dma_buf_ioctl_kretprobe";
    pub const IOCTL_SYS_ENTER: &str = "sys_enter_ioctl";
    pub const IOCTL_SYS_EXIT: &str = "sys_exit_ioctl";
    /// The ioctl syscall on the raw, BTF-typed sys_enter/sys_exit (x86_64).
    pub const IOCTL_RAW_ENTER: &str = "ioctl_raw_enter";
    pub const IOCTL_RAW_EXIT: &str = "ioctl_raw_exit";
    pub const EXPORTER_FENTRY: &str = "rw_file_fentry";
    pub const EXPORTER_FEXIT: &str = "rw_file_fexit";
    pub const EXPORTER_KPROBE: &str = "rw_file_kprobe";
    pub const EXPORTER_KRETPROBE: &str = "rw_file_kretprobe";
    pub const SCHED_SWITCH: &str = "sched_switch";
    /// The same on the BTF-typed tracepoint (no `bpf_prog_active` guard).
    pub const SCHED_SWITCH_BTF: &str = "sched_switch_btf";
    pub const PREAD_SYS_ENTER: &str = "sys_enter_pread64";
    pub const PREAD_SYS_EXIT: &str = "sys_exit_pread64";
    pub const PREAD_RAW_ENTER: &str = "pread_raw_enter";
    pub const PREAD_RAW_EXIT: &str = "pread_raw_exit";
    /// `--profile`: on-CPU samples (perf event on the CPU clock) and
    /// off-CPU intervals (sched_switch).
    pub const PROFILE_CPU_SAMPLE: &str = "profile_cpu_sample";
    pub const PROFILE_OFF_CPU: &str = "profile_off_cpu";
    /// copy_file_range: the syscall (every kernel), and the dma-buf core's
    /// handler of v4 (fentry or kprobe).
    pub const CFR_SYS_ENTER: &str = "sys_enter_copy_file_range";
    pub const CFR_SYS_EXIT: &str = "sys_exit_copy_file_range";
    pub const CFR_HANDLER_FENTRY: &str = "dma_buf_cfr_fentry";
    pub const CFR_HANDLER_FEXIT: &str = "dma_buf_cfr_fexit";
    pub const CFR_HANDLER_KPROBE: &str = "dma_buf_cfr_kprobe";
    pub const CFR_HANDLER_KRETPROBE: &str = "dma_buf_cfr_kretprobe";
    /// io_uring requests: submission and completion tracepoints.
    pub const URING_SUBMIT: &str = "io_uring_submit_req";
    pub const URING_COMPLETE: &str = "io_uring_complete";
    /// No-op programs used by `dmaprof doctor` to test each attach mechanism for real.
    pub const PROBE_FENTRY: &str = "probe_fentry";
    pub const PROBE_KPROBE: &str = "probe_kprobe";
    pub const PROBE_TRACEPOINT: &str = "probe_tracepoint";
}
