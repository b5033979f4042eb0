//! dmaprof's eBPF programs. One module per probe family.
#![no_std]
#![no_main]

mod block;
mod probe_check;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

// GPL: bpf_probe_read_kernel and the tracing helpers the later probes use are GPL-only.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
