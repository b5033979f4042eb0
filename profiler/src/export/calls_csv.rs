//! One row per timed call. The column names (with their units) are part of
//! dmaprof's contract: scripts select columns by name.
//!
//! Written by hand, read with the csv crate (`compare::input`): every field
//! dmaprof writes is a number or a fixed ASCII identifier (mode, direction,
//! trace kind), so no field ever needs quoting (the test below holds every
//! identifier to that), and the same row writer style serves `trace --csv`,
//! whose 1M rows/s leave no room for per-field formatting through a writer
//! object. Reading is where the crate earns its place: other people's files.
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

/// Every column, in order. Kernel columns are empty when dmaprof ran without
/// probes; `buffers` (distinct or reuse) and `mechanism` (the kernel
/// interface), appended after the first schema, last.
pub fn columns() -> Vec<&'static str> {
    CALL_COLUMNS
        .iter()
        .copied()
        .chain(KernelCall::columns())
        .chain(["buffers", "mechanism"])
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
    writeln!(out, ",{},{}", c.buffers, c.mode.mechanism())
}

#[cfg(test)]
mod tests {
    use crate::workload::mode::{ALL_MODES, Direction};

    /// The identifiers that go into CSV fields never need quoting.
    #[test]
    fn identifiers_need_no_quoting() {
        let plain = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_graphic() && b != b',' && b != b'"')
        };
        for m in ALL_MODES {
            assert!(plain(m.name()), "{m}");
        }
        for d in [Direction::Read, Direction::Write] {
            assert!(plain(&d.to_string()));
        }
        use profiler_common::call::{CallEvent, EVENT_EXPORTER, EVENT_IOCTL, EVENT_PREAD};
        for kind in [EVENT_IOCTL, EVENT_EXPORTER, EVENT_PREAD, 0] {
            let e = CallEvent {
                kind,
                ..Default::default()
            };
            assert!(plain(crate::probes::events::kind(&e)));
        }
        for c in super::columns() {
            assert!(plain(c));
        }
    }
}
