//! The seed's udmabuf sendfile rows: sendfile(2) from the file (buffered or
//! O_DIRECT) into the memfd behind a udmabuf. Reads into the memfd mapping
//! use `pread`.
use std::{fs::File, io, os::fd::AsRawFd};

use crate::workload::buffers::Buffer;

pub fn sendfile(file: &File, buf: &mut Buffer, offset: u64, len: u64) -> io::Result<()> {
    let memfd = buf
        .memfd()
        .ok_or_else(|| io::Error::other("not a udmabuf"))?;
    // sendfile writes at the output's file position: start of the buffer.
    // SAFETY: plain lseek on our fd.
    if unsafe { libc::lseek(memfd.as_raw_fd(), 0, libc::SEEK_SET) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut in_off = offset as libc::off_t;
    let end = offset + len;
    while (in_off as u64) < end {
        let want = (end - in_off as u64) as usize;
        // SAFETY: valid fds; in_off is updated by the kernel.
        let n = unsafe { libc::sendfile(memfd.as_raw_fd(), file.as_raw_fd(), &mut in_off, want) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("file ended at offset {in_off} during sendfile"),
            ));
        }
    }
    Ok(())
}
