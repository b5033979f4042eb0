//! DMA_BUF_IOCTL_RW_FILE: one ioctl per chunk, READ or WRITE, with DIRECT
//! for `rw-file-direct`. The buffer is never mapped for the transfer.
use std::{fs::File, io, os::fd::AsRawFd};

use crate::{
    dma_buf::{self, RW_FLAGS_DIRECT, RW_FLAGS_READ, RW_FLAGS_WRITE, RwFileArgs},
    workload::{
        buffers::Buffer,
        mode::{Direction, Mode},
    },
};

pub fn transfer(
    mode: Mode,
    direction: Direction,
    file: &File,
    buf: &mut Buffer,
    offset: u64,
    len: u64,
) -> io::Result<()> {
    let dmabuf = buf
        .dmabuf()
        .ok_or_else(|| io::Error::other("not a dma-buf"))?;
    let op = match direction {
        Direction::Read => RW_FLAGS_READ,
        Direction::Write => RW_FLAGS_WRITE,
    };
    let flags = if mode == Mode::RwFileDirect {
        op | RW_FLAGS_DIRECT
    } else {
        op
    };
    let args = RwFileArgs {
        flags,
        fd: file.as_raw_fd(),
        file_offset: offset,
        buf_offset: 0,
        buf_len: len,
    };
    // Every call of the plan is inside the file (reads) or extends it
    // (writes), so anything short is the file changing under the run.
    let moved = dma_buf::rw_file(dmabuf, &args)?;
    if moved != len {
        return Err(io::Error::other(format!(
            "RW_FILE {direction} moved {moved} of {len} bytes at offset {offset} (the file changed during the run?)"
        )));
    }
    Ok(())
}
