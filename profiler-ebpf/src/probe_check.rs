//! No-op programs, one per attach mechanism. `dmaprof doctor` loads and attaches
//! each against a real target to learn what this kernel allows, instead of
//! guessing from config files.
use aya_ebpf::{
    macros::{fentry, kprobe, tracepoint},
    programs::{FEntryContext, ProbeContext, TracePointContext},
};

#[fentry]
pub fn probe_fentry(_ctx: FEntryContext) -> i32 {
    0
}

#[kprobe]
pub fn probe_kprobe(_ctx: ProbeContext) -> u32 {
    0
}

#[tracepoint]
pub fn probe_tracepoint(_ctx: TracePointContext) -> u32 {
    0
}
