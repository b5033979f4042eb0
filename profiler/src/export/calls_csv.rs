//! One row per timed call. The column names (with their units) are part of
//! dmaprof's contract: scripts select columns by name.
use std::io::{self, Write};

use crate::workload::{CallRecord, KernelCall};

/// The columns of the call itself; the kernel's follow (`KernelCall::columns`).
const CALL_COLUMNS: &[&str] = &[
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
];

/// Every column, in order. Kernel columns are empty when dmaprof ran without probes.
pub fn columns() -> Vec<&'static str> {
    CALL_COLUMNS
        .iter()
        .copied()
        .chain(KernelCall::columns())
        .collect()
}

pub fn header(out: &mut impl Write) -> io::Result<()> {
    writeln!(out, "{}", columns().join(","))
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
        Some(k) => {
            for (_, v) in k.fields() {
                write!(out, ",{v}")?;
            }
        }
        None => write!(out, "{}", ",".repeat(KernelCall::COLUMN_COUNT))?,
    }
    writeln!(out)
}
