//! The eBPF object built by build.rs, embedded in the binary.
use anyhow::{Context, Result};
use aya::{Ebpf, EbpfLoader};

/// The object file produced from `profiler-ebpf` (see profiler/build.rs).
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/profiler"));

/// Loads the object with the given globals patched in (filters, tracepoint
/// offsets). Programs are loaded into the kernel later, one by one, by the
/// probe family that needs them.
pub fn load_with<'a>(configure: impl FnOnce(&mut EbpfLoader<'a>)) -> Result<Ebpf> {
    crate::kernel::raise_memlock_limit();
    let mut loader = EbpfLoader::new();
    // The task-storage maps of calls in flight (profiler-ebpf/src/pending.rs)
    // are only used by the programs; aya has no user-space type for them.
    loader.allow_unsupported_maps();
    configure(&mut loader);
    loader.load(OBJECT).context("loading dmaprof's eBPF object")
}
