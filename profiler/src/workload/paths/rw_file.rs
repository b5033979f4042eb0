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
    let dmabuf = super::dmabuf_of(buf)?;
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
    let moved = dma_buf::rw_file(dmabuf, &args)?;
    super::whole("RW_FILE", direction, moved, len, offset)
}
