//! io_uring with registered (fixed) buffers: what a user who needs speed
//! today reaches for. The buffers are pinned once, when registered (the
//! pass's allocation pays it), so no I/O walks page tables; READ_FIXED and
//! WRITE_FIXED move each chunk, up to the ring's depth in flight. With an
//! O_DIRECT fd these are direct I/O, else they go through the page cache.
use std::{fs::File, io, os::fd::AsRawFd};

use io_uring::{IoUring, opcode, types};

use super::super::{buffers::Buffer, mode::Direction};

pub struct Ring {
    ring: IoUring,
    /// Each registered buffer's start and length, by index.
    buffers: Vec<(*mut u8, usize)>,
}

/// One I/O: `len` bytes of registered buffer `index` at file `offset`.
#[derive(Debug, Clone, Copy)]
pub struct Io {
    pub index: u16,
    pub offset: u64,
    pub len: u64,
}

impl Ring {
    /// A ring of `depth` entries with `bufs` registered, index for index.
    pub fn new(depth: u32, bufs: &mut [Buffer]) -> io::Result<Ring> {
        let ring = IoUring::new(depth)?;
        let buffers: Vec<(*mut u8, usize)> = bufs
            .iter_mut()
            .map(|b| b.cpu_bytes().map(|s| (s.as_mut_ptr(), s.len())))
            .collect::<io::Result<_>>()?;
        let iovecs: Vec<libc::iovec> = buffers
            .iter()
            .map(|&(base, len)| libc::iovec {
                iov_base: base.cast(),
                iov_len: len,
            })
            .collect();
        // SAFETY: the buffers outlive the ring (the pass drops the ring
        // first, which unregisters them) and are not moved: they are mappings.
        unsafe { ring.submitter().register_buffers(&iovecs) }
            .map_err(|e| io::Error::new(e.kind(), format!("registering the buffers: {e}")))?;
        Ok(Ring { ring, buffers })
    }

    /// Queues `io`, moving its bytes from `done` on; `tag` comes back with
    /// its completion.
    pub fn queue(
        &mut self,
        direction: Direction,
        file: &File,
        io: Io,
        done: u64,
        tag: u64,
    ) -> io::Result<()> {
        let (base, size) = *self
            .buffers
            .get(io.index as usize)
            .ok_or_else(|| io::Error::other(format!("no registered buffer {}", io.index)))?;
        if io.len > size as u64 || io.len - done > u32::MAX as u64 {
            return Err(io::Error::other(format!(
                "{} bytes do not fit one io_uring I/O into buffer {} ({size} bytes)",
                io.len - done,
                io.index
            )));
        }
        // SAFETY: inside the registered buffer (checked above).
        let at = unsafe { base.add(done as usize) };
        let (fd, len, off) = (
            types::Fd(file.as_raw_fd()),
            (io.len - done) as u32,
            io.offset + done,
        );
        let entry = match direction {
            Direction::Read => opcode::ReadFixed::new(fd, at, len, io.index)
                .offset(off)
                .build(),
            Direction::Write => opcode::WriteFixed::new(fd, at, len, io.index)
                .offset(off)
                .build(),
        }
        .user_data(tag);
        // SAFETY: the entry's buffer is registered memory that stays valid
        // until its completion is reaped (the pass waits for every one).
        unsafe { self.ring.submission().push(&entry) }
            .map_err(|_| io::Error::other("the submission queue is full"))
    }

    /// Submits what is queued, waits for at least one completion and
    /// appends every completion ready as (tag, result: bytes or -errno).
    pub fn submit_and_wait(&mut self, out: &mut Vec<(u64, i32)>) -> io::Result<()> {
        loop {
            match self.ring.submit_and_wait(1) {
                Ok(_) => break,
                // A signal (Ctrl-C): the I/Os in flight still complete.
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        out.extend(self.ring.completion().map(|c| (c.user_data(), c.result())));
        Ok(())
    }
}

impl Ring {
    /// One read of `len` bytes at `offset` into registered buffer `index`,
    /// alone on the ring, reissued for the rest when short: a call of the
    /// pass made again to check it (untimed).
    pub fn read_one(&mut self, file: &File, index: u16, offset: u64, len: u64) -> io::Result<()> {
        let io = Io { index, offset, len };
        let (mut done, mut out) = (0, Vec::new());
        while done < len {
            self.queue(Direction::Read, file, io, done, 0)?;
            out.clear();
            self.submit_and_wait(&mut out)?;
            match out.first().map(|&(_, res)| res) {
                Some(res) if res > 0 => done += res as u64,
                Some(res) if res == -libc::EAGAIN => continue,
                Some(0) => {
                    return Err(io::Error::other(format!(
                        "the file ended at {}",
                        offset + done
                    )));
                }
                Some(res) => return Err(io::Error::from_raw_os_error(-res)),
                None => return Err(io::Error::other("no completion")),
            }
        }
        Ok(())
    }
}

/// Whether io_uring with a registered buffer works here, found by trying:
/// one page READ_FIXED from a temporary file (io_uring may be absent, or
/// turned off by kernel.io_uring_disabled, or refused by a seccomp filter).
pub fn probe() -> Result<(), String> {
    let mut file = tempfile::tempfile().map_err(|e| format!("temporary file: {e}"))?;
    let page: Vec<u8> = (0..4096u32).map(|i| (i * 7) as u8).collect();
    std::io::Write::write_all(&mut file, &page).map_err(|e| e.to_string())?;
    let mut bufs = [
        Buffer::alloc(super::super::mode::BufferKind::Anon, 4096, None, false)
            .map_err(|e| e.to_string())?,
    ];
    let mut ring = Ring::new(1, &mut bufs).map_err(|e| format!("io_uring: {e}"))?;
    let io = Io {
        index: 0,
        offset: 0,
        len: 4096,
    };
    ring.queue(Direction::Read, &file, io, 0, 7)
        .map_err(|e| e.to_string())?;
    let mut done = Vec::new();
    ring.submit_and_wait(&mut done)
        .map_err(|e| format!("io_uring_enter: {e}"))?;
    match done.first() {
        Some(&(7, 4096)) => {}
        Some(&(_, res)) if res < 0 => {
            return Err(format!(
                "READ_FIXED: {}",
                io::Error::from_raw_os_error(-res)
            ));
        }
        other => return Err(format!("READ_FIXED: unexpected completion {other:?}")),
    }
    drop(ring);
    match bufs[0].cpu_bytes().map_err(|e| e.to_string())? == page.as_slice() {
        true => Ok(()),
        false => Err("READ_FIXED returned other bytes than the file's".into()),
    }
}
