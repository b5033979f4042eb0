//! Test files: dmaprof's own (pattern content, marked as created by dmaprof),
//! page-cache control, and the rule that dmaprof never overwrites a file it
//! did not create unless told to.
use std::{
    ffi::CString,
    fs::{File, OpenOptions},
    io::{self, Write},
    os::{fd::AsRawFd, unix::ffi::OsStrExt},
    path::{Path, PathBuf},
};

use profiler_common::pattern;

/// Seed of the files dmaprof generates.
pub const DEFAULT_SEED: u64 = 0x00d0_aa9f_0001;
/// Extended attribute marking a file as dmaprof's, holding its pattern seed.
const XATTR: &str = "user.dmaprof.seed";

/// The scratch directory when none is given: disk-backed (not /tmp, which
/// may be tmpfs) and kept across runs so the test file is made once.
pub fn default_dir() -> PathBuf {
    std::env::var_os("DMAPROF_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/var/tmp/dmaprof".into())
}

/// The pattern seed of a file dmaprof created, or None for anyone else's file.
pub fn owner_seed(path: &Path) -> Option<u64> {
    let c = CString::new(path.as_os_str().as_bytes()).ok()?;
    let name = CString::new(XATTR).ok()?;
    let mut buf = [0u8; 32];
    // SAFETY: valid C strings and buffer.
    let n = unsafe {
        libc::getxattr(
            c.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    let text = if n > 0 {
        String::from_utf8_lossy(&buf[..n as usize]).into_owned()
    } else {
        std::fs::read_to_string(sidecar(path)).ok()?
    };
    u64::from_str_radix(text.trim(), 16).ok()
}

/// Where the mark goes on filesystems without user xattrs.
fn sidecar(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.dmaprof"))
}

pub fn mark_as_ours(file: &File, path: &Path, seed: u64) -> io::Result<()> {
    let name = CString::new(XATTR).expect("no NUL");
    let value = format!("{seed:x}");
    // SAFETY: valid fd, C string and buffer.
    let rc = unsafe {
        libc::fsetxattr(
            file.as_raw_fd(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    std::fs::write(sidecar(path), value)
}

/// Whether `path` is already dmaprof's pattern file of this size and seed.
pub fn is_pattern_file(path: &Path, size: u64, seed: u64) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.len() == size) && owner_seed(path) == Some(seed)
}

/// Creates (or reuses, when it is already dmaprof's, of this size and seed)
/// a pattern file. Returns whether it had to be written. `stop` (Ctrl-C)
/// ends the writing between blocks and removes the partial file.
pub fn ensure_pattern_file(
    path: &Path,
    size: u64,
    seed: u64,
    stop: &std::sync::atomic::AtomicBool,
) -> io::Result<bool> {
    if let Ok(meta) = std::fs::metadata(path) {
        if owner_seed(path) == Some(seed) && meta.len() == size {
            return Ok(false);
        }
        if owner_seed(path).is_none() {
            return Err(io::Error::other(format!(
                "{} exists and was not created by dmaprof; not overwriting it",
                path.display()
            )));
        }
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("partial");
    let written = write_pattern(&tmp, size, seed, stop);
    if written.is_err() {
        // Interrupted, or the disk filled up: no partial file is left.
        let _ = std::fs::remove_file(&tmp);
        let _ = std::fs::remove_file(sidecar(&tmp));
    }
    written?;
    std::fs::rename(&tmp, path)?;
    let old = sidecar(&tmp);
    if old.exists() {
        std::fs::rename(old, sidecar(path))?;
    }
    Ok(true)
}

fn write_pattern(
    tmp: &Path,
    size: u64,
    seed: u64,
    stop: &std::sync::atomic::AtomicBool,
) -> io::Result<()> {
    let mut f = File::create(tmp)?;
    let mut buf = vec![0u8; 4 << 20];
    let mut off = 0;
    while off < size {
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(io::Error::new(io::ErrorKind::Interrupted, "interrupted"));
        }
        let n = (size - off).min(buf.len() as u64) as usize;
        pattern::fill(seed, off, &mut buf[..n]);
        f.write_all(&buf[..n])?;
        off += n as u64;
    }
    f.sync_all()?;
    mark_as_ours(&f, tmp, seed)
}

/// Opens a write destination: creates it, or truncates it only if dmaprof made it
/// (or `force`). Marks it as dmaprof's.
pub fn open_destination(path: &Path, force: bool, o_direct: bool) -> io::Result<File> {
    if path.exists() && owner_seed(path).is_none() && !force {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "{} exists and was not created by dmaprof (use --force to overwrite it)",
                path.display()
            ),
        ));
    }
    let mut opts = OpenOptions::new();
    opts.read(true).write(true).create(true).truncate(true);
    if o_direct {
        use std::os::unix::fs::OpenOptionsExt;
        opts.custom_flags(libc::O_DIRECT);
    }
    let f = opts.open(path)?;
    mark_as_ours(&f, path, DEFAULT_SEED)?;
    Ok(f)
}

/// How many of the file's pages are in the page cache (mincore on a mapping).
pub fn resident_pages(file: &File, len: u64) -> io::Result<(u64, u64)> {
    if len == 0 {
        return Ok((0, 0));
    }
    // SAFETY: read-only shared mapping of our fd; only mincore touches it.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len as usize,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let pages = len.div_ceil(4096);
    let mut vec = vec![0u8; pages as usize];
    // SAFETY: vec has one byte per page of the mapping.
    let rc = unsafe { libc::mincore(ptr, len as usize, vec.as_mut_ptr()) };
    let err = io::Error::last_os_error();
    unsafe { libc::munmap(ptr, len as usize) };
    if rc != 0 {
        return Err(err);
    }
    Ok((vec.iter().filter(|&&b| b & 1 != 0).count() as u64, pages))
}

/// Drops the file's pages from the page cache (no root needed, and unlike
/// drop_caches it leaves the rest of the system alone). Dirty pages are
/// written back first: DONTNEED only drops clean ones, so a file just
/// written would otherwise stay cached and a "cold" pass read it from RAM.
pub fn drop_from_cache(file: &File) -> io::Result<()> {
    file.sync_data()?;
    // SAFETY: plain call on our fd.
    let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

/// Reads the file once through the page cache so a pass starts warm.
pub fn warm_cache(file: &File, len: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; 4 << 20];
    let mut off = 0;
    while off < len {
        let n = file.read_at(&mut buf, off)?;
        if n == 0 {
            break;
        }
        off += n as u64;
    }
    Ok(())
}

/// Turns O_DIRECT off on an open file (for an unaligned last call, which
/// direct I/O cannot move).
pub fn clear_o_direct(file: &File) -> io::Result<()> {
    // SAFETY: fcntl on our fd.
    let flags = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETFL, flags & !libc::O_DIRECT) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
