//! v4's interface: copy_file_range(2) between the file and a dma-buf (a
//! heap's or a udmabuf's), one call per chunk at buffer offset 0. A read is
//! file -> buffer, a write buffer -> file; direct I/O when the file was
//! opened O_DIRECT (v4 has no flag of its own).
use std::{fs::File, io};

use crate::{
    dma_buf,
    workload::{buffers::Buffer, mode::Direction},
};

pub fn transfer(
    direction: Direction,
    file: &File,
    buf: &mut Buffer,
    offset: u64,
    len: u64,
) -> io::Result<()> {
    let dmabuf = buf
        .dmabuf()
        .ok_or_else(|| io::Error::other("not a dma-buf"))?;
    let moved = match direction {
        Direction::Read => dma_buf::copy_file_range(file, offset, dmabuf, 0, len)?,
        Direction::Write => dma_buf::copy_file_range(dmabuf, 0, file, offset, len)?,
    };
    // As for RW_FILE: every call of the plan is inside the file (reads) or
    // extends it (writes), so anything short is the file changing under the run.
    if moved != len {
        return Err(io::Error::other(format!(
            "copy_file_range {direction} moved {moved} of {len} bytes at offset {offset} (the file changed during the run?)"
        )));
    }
    Ok(())
}
