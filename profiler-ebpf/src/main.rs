//! dmaprof's eBPF programs. One module per probe family.
#![no_std]
#![no_main]
// atomic_xadd: the bpf target has no atomic types, but BPF has atomic add.
#![allow(internal_features)]
#![feature(core_intrinsics)]

mod block;
mod copy_range;
mod dma_buf_ioctl;
mod files;
mod pending;
mod pread;
mod probe_check;
mod profile;
mod rw_file;
mod sched;
mod threads;
mod uring;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

// GPL: bpf_probe_read_kernel and the tracing helpers the later probes use are GPL-only.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
