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
    let dmabuf = super::dmabuf_of(buf)?;
    let moved = match direction {
        Direction::Read => dma_buf::copy_file_range(file, offset, dmabuf, 0, len)?,
        Direction::Write => dma_buf::copy_file_range(dmabuf, 0, file, offset, len)?,
    };
    super::whole("copy_file_range", direction, moved, len, offset)
}
