//! Types shared by the eBPF programs (`profiler-ebpf`) and the agent (`profiler`).
//!
//! Everything here is `#[repr(C)]`, `Copy` and padded explicitly, because the
//! kernel side and the user side must agree on the layout byte for byte.
#![no_std]

pub mod block;
pub mod pattern;

/// Names of the programs in the eBPF object, so both sides spell them once.
pub mod programs {
    pub const BLOCK_IO_START: &str = "block_io_start";
    pub const BLOCK_RQ_ISSUE: &str = "block_rq_issue";
    pub const BLOCK_RQ_COMPLETE: &str = "block_rq_complete";
    pub const BLOCK_BIO_FRONTMERGE: &str = "block_bio_frontmerge";
    /// No-op programs used by `dmaprof doctor` to test each attach mechanism for real.
    pub const PROBE_FENTRY: &str = "probe_fentry";
    pub const PROBE_KPROBE: &str = "probe_kprobe";
    pub const PROBE_TRACEPOINT: &str = "probe_tracepoint";
}
