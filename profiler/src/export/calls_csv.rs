//! One row per timed call. The column names (with their units) are part of
//! dmaprof's contract: scripts select columns by name.
use std::io::{self, Write};

use crate::workload::CallRecord;

pub const COLUMNS: &[&str] = &[
    "mode",
    "direction",
    "iteration",
    "index",
    "file_offset",
    "bytes",
    "start_ns",
    "wall_ns",
    "cpu_user_ns",
    "cpu_sys_ns",
    "voluntary_switches",
    "involuntary_switches",
    "tid",
    // Kernel probes (empty when dmaprof ran without them).
    "ioctl_calls",
    "ioctl_ns",
    "ioctl_errors",
    "exporter_calls",
    "exporter_ns",
    "exporter_bytes",
    "block_requests",
    "block_bytes",
    "block_device_ns",
    "on_cpu_ns",
    "off_cpu_ns",
    "switches",
];

pub fn header(out: &mut impl Write) -> io::Result<()> {
    writeln!(out, "{}", COLUMNS.join(","))
}

pub fn row(out: &mut impl Write, c: &CallRecord) -> io::Result<()> {
    write!(
        out,
        "{},{},{},{},{},{},{},{},{},{},{},{},{}",
        c.mode.name(),
        c.direction,
        c.iteration,
        c.index,
        c.file_offset,
        c.bytes,
        c.start_ns,
        c.wall_ns,
        c.cpu.user_ns,
        c.cpu.sys_ns,
        c.cpu.voluntary_switches,
        c.cpu.involuntary_switches,
        c.tid
    )?;
    match &c.kernel {
        Some(k) => writeln!(
            out,
            ",{},{},{},{},{},{},{},{},{},{},{},{}",
            k.ioctl_calls,
            k.ioctl_ns,
            k.ioctl_errors,
            k.exporter_calls,
            k.exporter_ns,
            k.exporter_bytes,
            k.block_requests,
            k.block_bytes,
            k.block_device_ns,
            k.on_cpu_ns,
            k.off_cpu_ns,
            k.switches
        ),
        None => writeln!(out, ",,,,,,,,,,,,"),
    }
}
