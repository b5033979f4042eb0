//! Driving the dma-buf UAPI (`profiler_common::uapi`, re-exported here): the
//! seed patch's `DMA_BUF_IOCTL_RW_FILE`, v4's copy_file_range(2) with a
//! dma-buf, dma-heap allocation, CPU-access syncs and udmabuf.
use std::{
    fs::{File, OpenOptions},
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    path::{Path, PathBuf},
};

pub use profiler_common::uapi::*;

pub const DMA_HEAP_DIR: &str = "/dev/dma_heap";
pub const UDMABUF_DEV: &str = "/dev/udmabuf";

/// dma-heaps present on this system (names under /dev/dma_heap), sorted.
pub fn heaps() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(DMA_HEAP_DIR) else {
        return Vec::new();
    };
    let mut names: Vec<String> = dir
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

pub fn heap_path(name: &str) -> PathBuf {
    Path::new(DMA_HEAP_DIR).join(name)
}

/// Allocates a dma-buf of `len` bytes from a dma-heap, open read-write.
pub fn heap_alloc(heap: &File, len: u64) -> io::Result<OwnedFd> {
    heap_alloc_with(heap, len, libc::O_RDWR)
}

/// As `heap_alloc`, the dma-buf's file opened with `access` (O_RDONLY,
/// O_WRONLY or O_RDWR).
pub fn heap_alloc_with(heap: &File, len: u64, access: i32) -> io::Result<OwnedFd> {
    let mut data = HeapAllocationData {
        len,
        fd_flags: (access | libc::O_CLOEXEC) as u32,
        ..Default::default()
    };
    // SAFETY: the kernel reads and writes exactly one HeapAllocationData.
    let rc = unsafe { libc::ioctl(heap.as_raw_fd(), DMA_HEAP_IOCTL_ALLOC as _, &mut data) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: on success the kernel returned a new file descriptor we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(data.fd as i32) })
}

/// Issues `DMA_BUF_IOCTL_RW_FILE` on a dma-buf: the bytes it moved, short
/// only for a READ at the end of the file (the lab kernel's semantics,
/// docs/rw-file.md; the seed's v2 returned 0 for a full transfer).
pub fn rw_file(dmabuf: &impl AsRawFd, args: &RwFileArgs) -> io::Result<u64> {
    // SAFETY: the kernel only reads one RwFileArgs.
    let rc = unsafe { libc::ioctl(dmabuf.as_raw_fd(), DMA_BUF_IOCTL_RW_FILE as _, args) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc as u64)
    }
}

/// `DMA_BUF_IOCTL_SYNC`: brackets CPU access to a mapped dma-buf
/// (`DMA_BUF_SYNC_START | dir` before, `DMA_BUF_SYNC_END | dir` after).
pub fn sync(dmabuf: &impl AsRawFd, flags: u64) -> io::Result<()> {
    // SAFETY: the kernel reads one u64.
    let rc = unsafe { libc::ioctl(dmabuf.as_raw_fd(), DMA_BUF_IOCTL_SYNC as _, &flags) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Runs `f` on a mapped dma-buf inside a SYNC_START/SYNC_END bracket.
pub fn with_cpu_access<R>(
    dmabuf: &impl AsRawFd,
    write: bool,
    f: impl FnOnce() -> R,
) -> io::Result<R> {
    let dir = if write {
        DMA_BUF_SYNC_WRITE
    } else {
        DMA_BUF_SYNC_READ
    };
    sync(dmabuf, DMA_BUF_SYNC_START | dir)?;
    let r = f();
    sync(dmabuf, DMA_BUF_SYNC_END | dir)?;
    Ok(r)
}

/// A memfd of `len` bytes sealed against shrinking, as udmabuf requires.
pub fn sealed_memfd(len: u64) -> io::Result<File> {
    // SAFETY: a static C string; flags are plain integers.
    let fd = unsafe {
        libc::memfd_create(
            c"dmaprof".as_ptr(),
            libc::MFD_ALLOW_SEALING | libc::MFD_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: memfd_create returned a new fd we own.
    let file = unsafe { File::from_raw_fd(fd) };
    file.set_len(len)?;
    // SAFETY: plain fcntl on our fd.
    if unsafe { libc::fcntl(fd, libc::F_ADD_SEALS, libc::F_SEAL_SHRINK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(file)
}

/// copy_file_range(2) of `len` bytes from `fd_in` at `off_in` to `fd_out`
/// at `off_out` (v4's interface when one side is a dma-buf): the bytes
/// copied.
pub fn copy_file_range(
    fd_in: &impl AsRawFd,
    off_in: u64,
    fd_out: &impl AsRawFd,
    off_out: u64,
    len: u64,
) -> io::Result<u64> {
    let mut off_in = off_in as libc::loff_t;
    let mut off_out = off_out as libc::loff_t;
    // SAFETY: valid fds; the kernel reads and updates the two offsets.
    let n = unsafe {
        libc::copy_file_range(
            fd_in.as_raw_fd(),
            &mut off_in,
            fd_out.as_raw_fd(),
            &mut off_out,
            len as usize,
            0,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as u64)
    }
}

/// Whether copy_file_range(2) moves data into a dma-buf here (v4), found by
/// trying: one page of a memfd into a one-page buffer from `heap`, or a
/// one-page udmabuf when `heap` is None. Ok, or why not: a kernel without
/// v4 refuses a dma-buf with EINVAL (not a regular file) or EXDEV.
pub fn probe_copy_file_range(heap: Option<&Path>) -> Result<(), String> {
    let source = sealed_memfd(4096).map_err(|e| format!("memfd: {e}"))?;
    let (target, _memfd, what) = match heap {
        Some(heap) => {
            let heap_file =
                File::open(heap).map_err(|e| format!("open {}: {e}", heap.display()))?;
            let buf = heap_alloc(&heap_file, 4096)
                .map_err(|e| format!("allocating 4 KiB from {}: {e}", heap.display()))?;
            (buf, None, format!("a 4 KiB buffer from {}", heap.display()))
        }
        None => {
            let memfd = sealed_memfd(4096).map_err(|e| format!("memfd: {e}"))?;
            let buf = udmabuf_create(&memfd, 4096).map_err(|e| format!("a 4 KiB udmabuf: {e}"))?;
            (buf, Some(memfd), "a 4 KiB udmabuf".to_string())
        }
    };
    let how = format!("copy_file_range of one memfd page into {what}");
    match copy_file_range(&source, 0, &target, 0, 4096) {
        Ok(4096) => Ok(()),
        Ok(n) => Err(format!("{how}: moved {n} bytes")),
        Err(e) => Err(format!(
            "{how}: {:?} ({e})",
            nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0))
        )),
    }
}

/// Wraps `len` bytes of a sealed memfd into a dma-buf through /dev/udmabuf.
pub fn udmabuf_create(memfd: &impl AsRawFd, len: u64) -> io::Result<OwnedFd> {
    let dev = OpenOptions::new()
        .read(true)
        .write(true)
        .open(UDMABUF_DEV)?;
    let arg = UdmabufCreate {
        memfd: memfd.as_raw_fd() as u32,
        flags: UDMABUF_FLAGS_CLOEXEC,
        offset: 0,
        size: len,
    };
    // SAFETY: the kernel reads one UdmabufCreate.
    let fd = unsafe { libc::ioctl(dev.as_raw_fd(), UDMABUF_CREATE as _, &arg) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the ioctl returned a new dma-buf fd we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// What the running kernel does with `DMA_BUF_IOCTL_RW_FILE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RwFileSupport {
    /// The ioctl reached an exporter's rw_file callback.
    Supported,
    /// The kernel knows the ioctl but this heap's exporter has no rw_file.
    NoExporterCallback,
    /// The kernel does not know the ioctl (ENOTTY): not patched.
    NotSupported,
    /// Could not be asked (no dma-heap to allocate a buffer from).
    Unknown,
}

/// Asks the kernel without moving any data: allocate one page from `heap`
/// and issue RW_FILE READ with fd -1. A patched kernel whose exporter has
/// rw_file answers EBADF (the fd is checked after the arguments); a patched
/// kernel without the callback answers EOPNOTSUPP (the seed's v2: EINVAL);
/// an unpatched one ENOTTY.
pub fn probe_rw_file(heap: &Path) -> Result<(RwFileSupport, String), String> {
    let heap_file = OpenOptions::new()
        .read(true)
        .open(heap)
        .map_err(|e| format!("open {}: {e}", heap.display()))?;
    let buf = heap_alloc(&heap_file, 4096)
        .map_err(|e| format!("allocating 4 KiB from {}: {e}", heap.display()))?;
    let args = RwFileArgs {
        flags: RW_FLAGS_READ,
        fd: -1,
        buf_len: 4096,
        ..Default::default()
    };
    let how = format!(
        "RW_FILE READ with fd -1 on a 4 KiB buffer from {} (no data moved)",
        heap.display()
    );
    match rw_file(&buf, &args) {
        Err(e) => match e.raw_os_error() {
            Some(libc::EBADF) => Ok((RwFileSupport::Supported, format!("{how}: EBADF"))),
            // EOPNOTSUPP from the lab kernel, EINVAL from the seed's v2.
            Some(libc::EOPNOTSUPP) => Ok((
                RwFileSupport::NoExporterCallback,
                format!("{how}: EOPNOTSUPP"),
            )),
            Some(libc::EINVAL) => Ok((RwFileSupport::NoExporterCallback, format!("{how}: EINVAL"))),
            Some(libc::ENOTTY) => Ok((RwFileSupport::NotSupported, format!("{how}: ENOTTY"))),
            _ => Err(format!("{how}: unexpected {e}")),
        },
        Ok(_) => Err(format!("{how}: unexpectedly succeeded")),
    }
}

/// Whether RW_FILE READ into a read-only dma-buf is refused, as it must be
/// (mmap refuses such a buffer PROT_WRITE): allocates one page from `heap`
/// with O_RDONLY and asks it to READ one page of a memfd into it. On a kernel
/// with the seed's hole the READ succeeds, overwriting only that new page.
pub fn probe_read_only_refused(heap: &Path) -> Result<(bool, String), String> {
    let heap_file = File::open(heap).map_err(|e| format!("open {}: {e}", heap.display()))?;
    let buf = heap_alloc_with(&heap_file, 4096, libc::O_RDONLY)
        .map_err(|e| format!("allocating a read-only page from {}: {e}", heap.display()))?;
    // SAFETY: a new anonymous file with a static name; we own the fd.
    let memfd = unsafe { libc::memfd_create(c"dmaprof-probe".as_ptr(), libc::MFD_CLOEXEC) };
    if memfd < 0 {
        return Err(format!("memfd_create: {}", io::Error::last_os_error()));
    }
    // SAFETY: memfd_create returned a new fd we now own.
    let source = unsafe { File::from_raw_fd(memfd) };
    source
        .set_len(4096)
        .map_err(|e| format!("sizing the memfd: {e}"))?;
    let args = RwFileArgs {
        flags: RW_FLAGS_READ,
        fd: source.as_raw_fd(),
        buf_len: 4096,
        ..Default::default()
    };
    let how = "RW_FILE READ into a one-page dma-buf allocated O_RDONLY";
    match rw_file(&buf, &args) {
        // EBADF as write(2) on a read-only fd (the lab kernel); a kernel
        // might also answer as a permission check does.
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EBADF | libc::EACCES | libc::EPERM)
            ) =>
        {
            Ok((true, format!("{how}: refused ({e})")))
        }
        Err(e) => Err(format!("{how}: inconclusive, unexpected {e}")),
        Ok(n) => Ok((
            false,
            format!(
                "{how}: succeeded ({n} bytes written into a buffer that cannot be mapped writable)"
            ),
        )),
    }
}
