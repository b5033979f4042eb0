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
    configure(&mut loader);
    loader.load(OBJECT).context("loading dmaprof's eBPF object")
}
