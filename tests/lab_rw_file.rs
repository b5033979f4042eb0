//! DMA_BUF_IOCTL_RW_FILE against the lab kernel's system heap: every test is
//! `#[ignore]`d on the host (no stock kernel has the ioctl) and run inside
//! the lab VM by `cargo xtask lab test` with `--ignored`. The lab disk at
//! /mnt holds files of known content (profiler_common::pattern, LAB_SEED).
use std::{
    fs::{File, OpenOptions},
    io::Read,
    os::fd::{AsRawFd, OwnedFd},
    path::Path,
    time::Instant,
};

use profiler::dma_buf::{self, RW_FLAGS_DIRECT, RW_FLAGS_READ, RW_FLAGS_WRITE, RwFileArgs};
use profiler_common::pattern::{self, LAB_SEED};

const MIB: u64 = 1 << 20;
const DATA_4M: &str = "/mnt/data-4m.bin";
const DATA_256M: &str = "/mnt/data-256m.bin";

fn alloc(len: u64) -> OwnedFd {
    let heap = File::open(dma_buf::heap_path("system")).expect("open /dev/dma_heap/system");
    dma_buf::heap_alloc(&heap, len).expect("allocate from the system heap")
}

/// A CPU mapping of a dma-buf, with DMA_BUF_IOCTL_SYNC around every access
/// as the dma-buf rules require.
struct Mapping {
    ptr: *mut u8,
    len: usize,
    fd: i32,
}

impl Mapping {
    fn new(buf: &OwnedFd, len: u64) -> Mapping {
        // SAFETY: mapping a dma-buf fd we own, shared, read/write.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                buf.as_raw_fd(),
                0,
            )
        };
        assert_ne!(
            ptr,
            libc::MAP_FAILED,
            "mmap dma-buf: {}",
            std::io::Error::last_os_error()
        );
        Mapping {
            ptr: ptr as *mut u8,
            len: len as usize,
            fd: buf.as_raw_fd(),
        }
    }

    fn sync(&self, flags: u64) {
        // SAFETY: DMA_BUF_IOCTL_SYNC reads one u64.
        let rc = unsafe { libc::ioctl(self.fd, dma_buf::DMA_BUF_IOCTL_SYNC as _, &flags) };
        assert_eq!(
            rc,
            0,
            "DMA_BUF_IOCTL_SYNC: {}",
            std::io::Error::last_os_error()
        );
    }

    fn with<R>(&self, write: bool, f: impl FnOnce(&mut [u8]) -> R) -> R {
        let dir = if write {
            dma_buf::DMA_BUF_SYNC_WRITE
        } else {
            dma_buf::DMA_BUF_SYNC_READ
        };
        self.sync(dma_buf::DMA_BUF_SYNC_START | dir);
        // SAFETY: the mapping is live for self's lifetime and len bytes long.
        let r = f(unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) });
        self.sync(dma_buf::DMA_BUF_SYNC_END | dir);
        r
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping what new() mapped.
        unsafe { libc::munmap(self.ptr as *mut _, self.len) };
    }
}

fn rw(
    buf: &OwnedFd,
    file: &File,
    flags: u32,
    file_offset: u64,
    buf_offset: u64,
    len: u64,
) -> std::io::Result<()> {
    let args = RwFileArgs {
        flags,
        fd: file.as_raw_fd(),
        file_offset,
        buf_offset,
        buf_len: len,
    };
    dma_buf::rw_file(buf, &args)
}

fn errno(r: std::io::Result<()>) -> i32 {
    r.expect_err("expected an error")
        .raw_os_error()
        .expect("an errno")
}

fn drop_caches() {
    std::fs::write("/proc/sys/vm/drop_caches", "3").expect("drop caches");
}

#[test]
#[ignore = "lab: needs the patched kernel; run by `cargo xtask lab test`"]
fn read_direct_and_buffered_fill_the_buffer() {
    let file = File::open(DATA_4M).unwrap();
    for (name, flags) in [
        ("READ|DIRECT", RW_FLAGS_READ | RW_FLAGS_DIRECT),
        ("READ", RW_FLAGS_READ),
    ] {
        let buf = alloc(4 * MIB);
        rw(&buf, &file, flags, 0, 0, 4 * MIB).unwrap_or_else(|e| panic!("{name}: {e}"));
        let map = Mapping::new(&buf, 4 * MIB);
        map.with(false, |bytes| {
            assert_eq!(
                pattern::first_mismatch(LAB_SEED, 0, bytes),
                None,
                "{name}: data differs"
            );
        });
    }
}

#[test]
#[ignore = "lab: needs the patched kernel; run by `cargo xtask lab test`"]
fn partial_ranges_land_where_asked() {
    let file = File::open(DATA_4M).unwrap();
    let buf = alloc(4 * MIB);
    // Direct: page-aligned 1 MiB from file offset 2 MiB into buffer offset 1 MiB.
    rw(
        &buf,
        &file,
        RW_FLAGS_READ | RW_FLAGS_DIRECT,
        2 * MIB,
        MIB,
        MIB,
    )
    .unwrap();
    // Buffered: unaligned offsets are allowed.
    rw(&buf, &file, RW_FLAGS_READ, 12345, 3 * MIB + 7, 1000).unwrap();
    let map = Mapping::new(&buf, 4 * MIB);
    map.with(false, |b| {
        let m = MIB as usize;
        assert!(
            b[..m].iter().all(|&x| x == 0),
            "bytes before the range untouched (heap memory is zeroed)"
        );
        assert_eq!(
            pattern::first_mismatch(LAB_SEED, 2 * MIB, &b[m..2 * m]),
            None
        );
        assert!(b[2 * m..3 * m + 7].iter().all(|&x| x == 0));
        assert_eq!(
            pattern::first_mismatch(LAB_SEED, 12345, &b[3 * m + 7..3 * m + 1007]),
            None
        );
        assert!(b[3 * m + 1007..].iter().all(|&x| x == 0));
    });
}

#[test]
#[ignore = "lab: needs the patched kernel; run by `cargo xtask lab test`"]
fn write_direct_and_buffered_save_the_buffer() {
    const SEED: u64 = 42;
    let buf = alloc(4 * MIB);
    let map = Mapping::new(&buf, 4 * MIB);
    map.with(true, |b| pattern::fill_aligned(SEED, 0, b));
    for (name, flags) in [
        ("WRITE|DIRECT", RW_FLAGS_WRITE | RW_FLAGS_DIRECT),
        ("WRITE", RW_FLAGS_WRITE),
    ] {
        let path = Path::new("/mnt").join(format!("saved-{}.bin", flags));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        rw(&buf, &file, flags, 0, 0, 4 * MIB).unwrap_or_else(|e| panic!("{name}: {e}"));
        file.sync_all().unwrap();
        drop(file);
        drop_caches();
        let mut back = Vec::new();
        File::open(&path).unwrap().read_to_end(&mut back).unwrap();
        assert_eq!(back.len() as u64, 4 * MIB, "{name}: file length");
        assert_eq!(
            pattern::first_mismatch(SEED, 0, &back),
            None,
            "{name}: saved data differs"
        );
        std::fs::remove_file(&path).unwrap();
    }
}

#[test]
#[ignore = "lab: needs the patched kernel; run by `cargo xtask lab test`"]
fn bad_requests_get_the_documented_errno() {
    let buf = alloc(4 * MIB);
    let file = File::open(DATA_4M).unwrap();
    let read = RW_FLAGS_READ;
    let direct = RW_FLAGS_READ | RW_FLAGS_DIRECT;

    assert_eq!(
        errno(rw(&buf, &file, direct, 512, 0, MIB)),
        libc::EINVAL,
        "unaligned direct file offset"
    );
    assert_eq!(
        errno(rw(&buf, &file, direct, 0, 512, MIB)),
        libc::EINVAL,
        "unaligned direct buffer offset"
    );
    assert_eq!(
        errno(rw(&buf, &file, direct, 0, 0, MIB + 512)),
        libc::EINVAL,
        "unaligned direct length"
    );
    assert_eq!(
        errno(rw(&buf, &file, read, 0, 3 * MIB, 2 * MIB)),
        libc::EINVAL,
        "length past the buffer"
    );
    assert_eq!(
        errno(rw(&buf, &file, read, 0, u64::MAX - 10, 4096)),
        libc::EINVAL,
        "offset overflow"
    );
    assert_eq!(
        errno(rw(&buf, &file, read, 0, 0, 0)),
        libc::EINVAL,
        "zero length"
    );
    assert_eq!(errno(rw(&buf, &file, 0, 0, 0, 4096)), libc::EINVAL, "no op");
    assert_eq!(
        errno(rw(&buf, &file, 3, 0, 0, 4096)),
        libc::EINVAL,
        "READ|WRITE"
    );
    assert_eq!(
        errno(rw(&buf, &file, read | 0x100, 0, 0, 4096)),
        libc::EINVAL,
        "unknown flag bit"
    );
    assert_eq!(
        errno(rw(&buf, &file, RW_FLAGS_WRITE, 0, 0, 4096)),
        libc::EBADF,
        "WRITE to a read-only fd"
    );

    let wronly = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open("/mnt/wronly.bin")
        .unwrap();
    assert_eq!(
        errno(rw(&buf, &wronly, read, 0, 0, 4096)),
        libc::EBADF,
        "READ from a write-only fd"
    );
    drop(wronly);
    std::fs::remove_file("/mnt/wronly.bin").unwrap();

    let mut fds = [0i32; 2];
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let args = RwFileArgs {
        flags: read,
        fd: fds[0],
        buf_len: 4096,
        ..Default::default()
    };
    assert_eq!(
        errno(dma_buf::rw_file(&buf, &args)),
        libc::EINVAL,
        "a pipe is not a regular file"
    );
    let dir = File::open("/mnt").unwrap();
    assert_eq!(
        errno(rw(&buf, &dir, read, 0, 0, 4096)),
        libc::EINVAL,
        "a directory is not a regular file"
    );
    unsafe {
        libc::close(fds[0]);
        libc::close(fds[1]);
    }
    let args = RwFileArgs {
        flags: read,
        fd: 9999,
        buf_len: 4096,
        ..Default::default()
    };
    assert_eq!(
        errno(dma_buf::rw_file(&buf, &args)),
        libc::EBADF,
        "closed fd"
    );

    // Direct I/O on a filesystem without O_DIRECT (ramfs has no FMODE_CAN_ODIRECT).
    std::fs::create_dir_all("/tmp/ramfs").unwrap();
    let rc = unsafe {
        libc::mount(
            c"ramfs".as_ptr(),
            c"/tmp/ramfs".as_ptr(),
            c"ramfs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "mount ramfs: {}", std::io::Error::last_os_error());
    std::fs::write("/tmp/ramfs/t.bin", vec![0u8; 8192]).unwrap();
    let ram = File::open("/tmp/ramfs/t.bin").unwrap();
    assert_eq!(
        errno(rw(&buf, &ram, direct, 0, 0, 4096)),
        libc::EINVAL,
        "DIRECT on ramfs"
    );
    rw(&buf, &ram, read, 0, 0, 4096).expect("buffered READ from ramfs works");

    // Reading past the end of the file: short transfer.
    assert_eq!(
        errno(rw(&buf, &file, read, 3 * MIB, 0, 2 * MIB)),
        libc::ENODATA,
        "read past EOF"
    );

    // The ioctl on something that is not a dma-buf is not ours to answer.
    let args = RwFileArgs {
        flags: read,
        fd: file.as_raw_fd(),
        buf_len: 4096,
        ..Default::default()
    };
    assert_eq!(
        errno(dma_buf::rw_file(&file, &args)),
        libc::ENOTTY,
        "RW_FILE on a regular file"
    );
}

/// Figures, not a speed assertion: RW_FILE READ|DIRECT against READ over
/// the 256 MiB file, 32 MiB per call (the seed's shape), caches dropped
/// before each pass, data verified after each call (outside the timing).
#[test]
#[ignore = "lab: needs the patched kernel; run by `cargo xtask lab test`"]
fn rw_file_256mib_read_figures() {
    const CHUNK: u64 = 32 * MIB;
    let file = File::open(DATA_256M).unwrap();
    let size = file.metadata().unwrap().len();
    assert_eq!(size, 256 * MIB);
    let buf = alloc(CHUNK);
    let map = Mapping::new(&buf, CHUNK);
    for (name, flags) in [
        ("rw-file-direct", RW_FLAGS_READ | RW_FLAGS_DIRECT),
        ("rw-file", RW_FLAGS_READ),
    ] {
        drop_caches();
        let mut busy = std::time::Duration::ZERO;
        for off in (0..size).step_by(CHUNK as usize) {
            let t = Instant::now();
            rw(&buf, &file, flags, off, 0, CHUNK)
                .unwrap_or_else(|e| panic!("{name} at {off}: {e}"));
            busy += t.elapsed();
            map.with(false, |b| {
                assert_eq!(
                    pattern::first_mismatch(LAB_SEED, off, b),
                    None,
                    "{name}: data at {off}"
                );
            });
        }
        let mibs = size as f64 / MIB as f64 / busy.as_secs_f64();
        println!(
            "FIGURE {name}: 256 MiB in {:.3} s = {mibs:.0} MiB/s (32 MiB per call, cold cache, verified)",
            busy.as_secs_f64()
        );
    }
}
