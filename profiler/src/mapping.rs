//! Memory mappings: anonymous buffers and mapped dma-bufs/memfds, unmapped on drop.
use std::{io, os::fd::AsRawFd};

pub struct Mapping {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value.
unsafe impl Send for Mapping {}

impl Mapping {
    /// Page-aligned anonymous memory, every page touched so that page faults
    /// are paid at allocation, not during the first transfer.
    pub fn anonymous(len: usize) -> io::Result<Mapping> {
        let m = Self::map(len, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1)?;
        // SAFETY: writing inside the mapping we just created.
        for off in (0..len).step_by(4096) {
            unsafe { m.ptr.add(off).write_volatile(0) };
        }
        Ok(m)
    }

    /// A shared mapping of a file-like fd (dma-buf, memfd).
    pub fn shared(fd: &impl AsRawFd, len: usize) -> io::Result<Mapping> {
        Self::map(len, libc::MAP_SHARED, fd.as_raw_fd())
    }

    fn map(len: usize, flags: i32, fd: i32) -> io::Result<Mapping> {
        // SAFETY: a fresh mapping; the kernel validates fd and length.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                fd,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping {
            ptr: ptr as *mut u8,
            len,
        })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the mapping is live and len bytes long.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above, and &mut self guarantees exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what map() mapped.
        unsafe { libc::munmap(self.ptr as *mut _, self.len) };
    }
}
