//! Plain-text rendering of the doctor report.
use std::fmt::Write;

use super::{Check, Report};
use crate::dma_buf::RwFileSupport;

fn mark(ok: bool) -> &'static str {
    if ok { "ok  " } else { "NO  " }
}

fn line(out: &mut String, label: &str, c: &Check) {
    let _ = writeln!(out, "  {}{label:<22} {}", mark(c.ok), c.detail);
}

pub fn render_text(r: &Report) -> String {
    let mut out = String::new();
    let p = &r.privileges;
    let _ = writeln!(out, "dmaprof {} doctor", r.dmaprof_version);
    let _ = writeln!(out, "kernel {}", r.kernel_release);
    let _ = writeln!(
        out,
        "privileges: euid {}{}",
        p.euid,
        match p.require_tracing("tracing") {
            Ok(()) => " (can load and attach tracing programs)".to_string(),
            Err(why) => format!(" (cannot trace: {why})"),
        }
    );
    let _ = writeln!(out, "\nkernel facilities");
    line(&mut out, "BTF", &r.btf);
    line(&mut out, "BPF", &r.bpf);
    line(&mut out, "tracefs", &r.tracefs);
    probe_targets(&mut out, r);
    dma_buf(&mut out, &r.dma_buf);
    if let Some(fs) = &r.filesystem {
        filesystem(&mut out, fs);
    }
    let _ = writeln!(out, "\nio_uring");
    line(&mut out, "registered buffers", &r.io_uring);
    let _ = writeln!(out, "\ncopy_file_range with dma-bufs (v4)");
    line(&mut out, "into a heap dma-buf", &r.copy_file_range_heap);
    line(&mut out, "into a udmabuf", &r.copy_file_range_udmabuf);
    let _ = writeln!(out, "\nlimitations on this machine");
    if r.limitations.is_empty() {
        let _ = writeln!(out, "  none: every mode and probe is available");
    }
    for l in &r.limitations {
        let _ = writeln!(out, "  - {l}");
    }
    out
}

fn probe_targets(out: &mut String, r: &Report) {
    let _ = writeln!(
        out,
        "\nprobe targets (fentry > kprobe > tracepoint; pread64: tp_btf > tracepoint; each tried for real)"
    );
    if r.probe_targets.is_empty() {
        let _ = writeln!(out, "  none tried: BPF is not usable by this process");
    }
    for t in &r.probe_targets {
        let best = t
            .best
            .map(|m| m.to_string())
            .unwrap_or_else(|| "none".into());
        let _ = writeln!(out, "  {:<17} -> {best:<10} {}", t.name, t.what);
        for rung in &t.rungs {
            let _ = writeln!(
                out,
                "      {}{:<10} {:<28} {}",
                mark(rung.works),
                rung.method.to_string(),
                rung.target,
                rung.detail
            );
        }
    }
}

fn dma_buf(out: &mut String, d: &super::DmaBuf) {
    let _ = writeln!(out, "\ndma-buf");
    let _ = writeln!(
        out,
        "  {}dma-heaps             {}",
        mark(!d.heaps.is_empty()),
        if d.heaps.is_empty() {
            "none under /dev/dma_heap".to_string()
        } else {
            d.heaps.join(", ")
        }
    );
    let _ = writeln!(
        out,
        "  {}udmabuf               /dev/udmabuf",
        mark(d.udmabuf)
    );
    let rw = match d.rw_file {
        RwFileSupport::Supported => "supported",
        RwFileSupport::NoExporterCallback => "ioctl known, exporter has no rw_file",
        RwFileSupport::NotSupported => "not supported (kernel without the patch)",
        RwFileSupport::Unknown => "unknown",
    };
    let _ = writeln!(
        out,
        "  {}RW_FILE               {rw}: {}",
        mark(d.rw_file == RwFileSupport::Supported),
        d.rw_file_detail
    );
    if let Some(how) = &d.read_only_detail {
        let finding = match d.read_only_refused {
            Some(true) => "refused",
            Some(false) => {
                "ALLOWED: the seed's permission hole (a read-only dma-buf can be overwritten)"
            }
            None => "not known",
        };
        let _ = writeln!(out, "      READ into a read-only dma-buf: {finding}; {how}");
    }
    if !d.rw_file_callbacks.is_empty() {
        let _ = writeln!(
            out,
            "      exporter callbacks in BTF: {}",
            d.rw_file_callbacks.join(", ")
        );
    }
}

fn filesystem(out: &mut String, fs: &super::FsCheck) {
    let _ = writeln!(out, "\nfilesystem");
    match (&fs.info, &fs.error) {
        (Some(i), _) => {
            let _ = writeln!(
                out,
                "      {} on {} ({}), {} mounted at {}",
                i.path.display(),
                i.block_device.as_deref().unwrap_or("no block device"),
                i.device,
                i.fs_type.as_deref().unwrap_or("?"),
                i.mount_point.as_deref().unwrap_or("?")
            );
            let align = match i.dio_align {
                Some(a) if i.o_direct => {
                    format!("; offsets and lengths in multiples of {a} bytes (STATX_DIOALIGN)")
                }
                _ => String::new(),
            };
            let _ = writeln!(
                out,
                "  {}O_DIRECT              {}{align}",
                mark(i.o_direct),
                i.o_direct_detail
            );
        }
        (None, Some(e)) => {
            let _ = writeln!(out, "  NO  {e}");
        }
        (None, None) => {}
    }
}
