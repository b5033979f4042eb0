//! Up-front checks that a run fits this machine, so a run that cannot fit
//! fails at once with one line naming the shortfall, instead of writing a
//! 100 TiB test file or running out of memory or descriptors half way: free
//! space for dmaprof's test file, memory for one pass's buffers (a pass holds
//! all of them at once), and file descriptors for the dma-bufs.
use std::{ffi::CString, os::unix::ffi::OsStrExt, path::Path};

use super::mode::{BufferKind, Mode};

/// "3.0 GiB", "512 KiB", "17 bytes".
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// Bytes an unprivileged writer may still use on the filesystem of `dir`.
pub fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    let c = CString::new(dir.as_os_str().as_bytes())?;
    // SAFETY: a valid C string and an out-struct.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(st.f_bavail as u64 * st.f_frsize as u64)
}

/// `MemAvailable` from /proc/meminfo, in bytes.
pub fn available_memory() -> Option<u64> {
    std::fs::read_to_string("/proc/meminfo")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
}

/// The soft limit on open files.
pub fn fd_limit() -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: an out-struct.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 {
        return u64::MAX;
    }
    r.rlim_cur
}

/// Making `bytes` of test file in `dir`.
pub fn check_space(dir: &Path, bytes: u64) -> Result<(), String> {
    let free = free_bytes(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if free < bytes {
        return Err(format!(
            "the test file needs {} and {} has {} free (use a smaller --size or another --dir)",
            human(bytes),
            dir.display(),
            human(free)
        ));
    }
    Ok(())
}

/// One pass holds `size` bytes of buffers at once.
pub fn check_memory(size: u64, available: Option<u64>) -> Result<(), String> {
    match available {
        Some(avail) if avail < size => Err(format!(
            "--size {} needs {} of buffers per pass and this machine has {} of memory available",
            human(size),
            human(size),
            human(avail)
        )),
        _ => Ok(()),
    }
}

/// dma-heap buffers hold a descriptor each, udmabufs two (memfd and dma-buf).
pub fn check_fds(modes: &[Mode], buffers: u64, limit: u64) -> Result<(), String> {
    let per_buffer = |m: &Mode| match m.buffer() {
        BufferKind::Heap => 1,
        BufferKind::Udmabuf => 2,
        BufferKind::Anon => 0,
    };
    let Some(worst) = modes.iter().max_by_key(|m| per_buffer(m)) else {
        return Ok(());
    };
    // Headroom for the file, the probes' maps and programs, stdio.
    let needed = buffers * per_buffer(worst) + 256;
    if per_buffer(worst) > 0 && needed > limit {
        return Err(format!(
            "mode {worst}: {buffers} buffers per pass need about {needed} file descriptors and the limit is {limit} (raise `ulimit -n` or use a larger --chunk)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortfalls_are_named() {
        assert_eq!(human(3 << 30), "3.0 GiB");
        assert_eq!(human(100 << 40), "100.0 TiB");
        assert!(
            check_memory(100 << 40, Some(8 << 30))
                .unwrap_err()
                .contains("100.0 TiB")
        );
        assert!(check_memory(1 << 20, Some(8 << 30)).is_ok());
        assert!(check_fds(&[Mode::UdmabufRead], 1000, 1024).is_err());
        assert!(check_fds(&[Mode::RwFile], 500, 1024).is_ok());
        assert!(check_fds(&[Mode::Pread], 1_000_000, 1024).is_ok());
    }
}
