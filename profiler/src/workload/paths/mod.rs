//! One module per I/O path: each moves one chunk between the file and one
//! buffer, exactly as a real user of that path would (this is the timed call).
mod copy_range;
mod dmabuf_mmap;
mod pread;
mod rw_file;
mod udmabuf;
pub mod uring;

use std::{fs::File, io, os::fd::OwnedFd};

use super::{
    buffers::Buffer,
    mode::{Direction, Mode},
};

/// Moves `len` bytes at file offset `offset` into (read) or out of (write) `buf`.
pub fn transfer(
    mode: Mode,
    direction: Direction,
    file: &File,
    buf: &mut Buffer,
    offset: u64,
    len: u64,
) -> io::Result<()> {
    match (mode, direction) {
        (
            Mode::Pread | Mode::PreadDirect | Mode::UdmabufRead | Mode::UdmabufDirectRead,
            Direction::Read,
        ) => pread::read(file, buf.cpu_bytes()?, offset, len),
        (Mode::Pwrite | Mode::PwriteDirect, Direction::Write) => {
            pread::write(file, buf.cpu_bytes()?, offset, len)
        }
        (Mode::DmabufRead, Direction::Read) => dmabuf_mmap::read(file, buf, offset, len),
        (Mode::DmabufWrite, Direction::Write) => dmabuf_mmap::write(file, buf, offset, len),
        (Mode::RwFile | Mode::RwFileDirect, _) => {
            rw_file::transfer(mode, direction, file, buf, offset, len)
        }
        (Mode::Cfr | Mode::CfrDirect | Mode::UdmabufCfr | Mode::UdmabufCfrDirect, _) => {
            copy_range::transfer(direction, file, buf, offset, len)
        }
        (Mode::UdmabufSendfile | Mode::UdmabufDirectSendfile, Direction::Read) => {
            udmabuf::sendfile(file, buf, offset, len)
        }
        _ => Err(io::Error::other(format!("{mode} does not do {direction}s"))),
    }
}

/// The buffer's dma-buf fd, for the paths that hand it to the kernel.
fn dmabuf_of(buf: &Buffer) -> io::Result<&OwnedFd> {
    buf.dmabuf()
        .ok_or_else(|| io::Error::other("not a dma-buf"))
}

/// Every call of a plan is inside the file (reads) or extends it (writes),
/// so a dma-buf call that moves less than asked is the file changing under
/// the run.
fn whole(what: &str, direction: Direction, moved: u64, len: u64, offset: u64) -> io::Result<()> {
    if moved != len {
        return Err(io::Error::other(format!(
            "{what} {direction} moved {moved} of {len} bytes at offset {offset} (the file changed during the run?)"
        )));
    }
    Ok(())
}
