//! The seed's "dmabuf buffer read": read() into the CPU mapping of a
//! dma-heap buffer, inside the DMA_BUF_IOCTL_SYNC bracket a real user needs.
//! (O_DIRECT into such a mapping fails with EFAULT: it is VM_PFNMAP.)
use std::{
    fs::File,
    io,
    os::fd::{AsRawFd, BorrowedFd},
};

use super::pread;
use crate::{dma_buf, workload::buffers::Buffer};

pub fn read(file: &File, buf: &mut Buffer, offset: u64, len: u64) -> io::Result<()> {
    let fd = dmabuf_fd(buf)?;
    dma_buf::sync(
        &fd,
        dma_buf::DMA_BUF_SYNC_START | dma_buf::DMA_BUF_SYNC_WRITE,
    )?;
    let r = pread::read(file, buf.cpu_bytes()?, offset, len);
    dma_buf::sync(&fd, dma_buf::DMA_BUF_SYNC_END | dma_buf::DMA_BUF_SYNC_WRITE)?;
    r
}

pub fn write(file: &File, buf: &mut Buffer, offset: u64, len: u64) -> io::Result<()> {
    let fd = dmabuf_fd(buf)?;
    dma_buf::sync(
        &fd,
        dma_buf::DMA_BUF_SYNC_START | dma_buf::DMA_BUF_SYNC_READ,
    )?;
    let r = pread::write(file, buf.cpu_bytes()?, offset, len);
    dma_buf::sync(&fd, dma_buf::DMA_BUF_SYNC_END | dma_buf::DMA_BUF_SYNC_READ)?;
    r
}

/// The dma-buf's fd, borrowed independently of `buf` so the mapping can be
/// borrowed mutably at the same time (no dup() inside the timed call).
fn dmabuf_fd(buf: &Buffer) -> io::Result<BorrowedFd<'static>> {
    let raw = buf
        .dmabuf()
        .ok_or_else(|| io::Error::other("not a dma-buf"))?
        .as_raw_fd();
    // SAFETY: the caller keeps `buf`, which owns the fd, alive across the call.
    Ok(unsafe { BorrowedFd::borrow_raw(raw) })
}
