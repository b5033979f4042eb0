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

use dmaprof_e2e::{folded_stacks, through};
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
) -> std::io::Result<u64> {
    let args = RwFileArgs {
        flags,
        fd: file.as_raw_fd(),
        file_offset,
        buf_offset,
        buf_len: len,
    };
    dma_buf::rw_file(buf, &args)
}

/// A fresh output file, open for reading and writing.
fn create_output(path: impl AsRef<Path>) -> File {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .unwrap()
}

fn errno(r: std::io::Result<u64>) -> i32 {
    r.expect_err("expected an error")
        .raw_os_error()
        .expect("an errno")
}

/// The file's direct I/O alignment from statx(STATX_DIOALIGN): (memory, offset).
fn dio_align(path: &str) -> (u32, u32) {
    let c = std::ffi::CString::new(path).unwrap();
    // SAFETY: statx fills the zeroed struct we pass.
    let mut st: libc::statx = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statx(libc::AT_FDCWD, c.as_ptr(), 0, libc::STATX_DIOALIGN, &mut st) };
    assert_eq!(rc, 0, "statx {path}: {}", std::io::Error::last_os_error());
    assert_ne!(
        st.stx_mask & libc::STATX_DIOALIGN,
        0,
        "{path}: no STATX_DIOALIGN"
    );
    (st.stx_dio_mem_align, st.stx_dio_offset_align)
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
        let moved = rw(&buf, &file, flags, 0, 0, 4 * MIB).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(moved, 4 * MIB, "{name}: the ioctl returns the bytes moved");
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
    assert_eq!(
        rw(&buf, &file, RW_FLAGS_READ, 12345, 3 * MIB + 7, 1000).unwrap(),
        1000
    );
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
        let file = create_output(&path);
        let moved = rw(&buf, &file, flags, 0, 0, 4 * MIB).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(moved, 4 * MIB, "{name}: a WRITE is never short");
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

    // DIRECT alignment is the file's (STATX_DIOALIGN), checked by the
    // filesystem: here ext4 on a disk of 512-byte sectors, not PAGE_SIZE.
    let (mem_align, off_align) = dio_align(DATA_4M);
    assert!(
        off_align > 0 && off_align < 4096,
        "lab disk: {off_align}-byte direct I/O"
    );
    assert_eq!(
        errno(rw(&buf, &file, direct, off_align as u64 / 2, 0, MIB)),
        libc::EINVAL,
        "direct file offset below the file's alignment"
    );
    assert_eq!(
        errno(rw(
            &buf,
            &file,
            direct,
            0,
            (mem_align as u64 / 2).max(1),
            MIB
        )),
        libc::EINVAL,
        "direct buffer offset below the memory alignment"
    );
    assert_eq!(
        errno(rw(&buf, &file, direct, 0, 0, MIB + off_align as u64 / 2)),
        libc::EINVAL,
        "direct length below the file's alignment"
    );
    let (o, m) = (off_align as u64, mem_align.max(off_align) as u64);
    assert_eq!(
        rw(&buf, &file, direct, o, m, MIB).expect("DIRECT at the file's alignment"),
        MIB
    );
    let map = Mapping::new(&buf, 4 * MIB);
    map.with(false, |b| {
        assert_eq!(
            pattern::first_mismatch(LAB_SEED, o, &b[m as usize..(m + MIB) as usize]),
            None
        )
    });
    drop(map);
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
    assert_eq!(
        errno(rw(&buf, &file, read, 0, 0, 1 << 31)),
        libc::EINVAL,
        "buf_len above MAX_RW_COUNT (the count must fit an int)"
    );
    // Huge lengths on this 4 MiB buffer, and a range that wraps around.
    for (off, len) in [(0, u64::MAX), (0, 1 << 30), (u64::MAX - 4095, 8192)] {
        assert_eq!(
            errno(rw(&buf, &file, read, 0, off, len)),
            libc::EINVAL,
            "buf_offset {off:#x}, buf_len {len:#x} on a 4 MiB buffer"
        );
    }
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
    assert_eq!(
        rw(&buf, &ram, read, 0, 0, 4096).expect("buffered READ from ramfs works"),
        4096
    );

    // Reading past the end of the file: a short count, as pread() gives,
    // and 0 at the end itself.
    assert_eq!(
        rw(&buf, &file, read, 3 * MIB, 0, 2 * MIB).unwrap(),
        MIB,
        "READ across EOF"
    );
    assert_eq!(
        rw(&buf, &file, direct, 3 * MIB, 0, 2 * MIB).unwrap(),
        MIB,
        "READ|DIRECT across EOF"
    );
    assert_eq!(
        rw(&buf, &file, read, 4 * MIB, 0, 4096).unwrap(),
        0,
        "READ at EOF"
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

/// The dma-buf fd's own access mode: READ stores into the buffer, so it
/// needs the buffer open for writing; WRITE needs it open for reading.
#[test]
#[ignore = "lab: needs the patched kernel; run by `cargo xtask lab test`"]
fn read_only_and_write_only_dma_bufs_are_respected() {
    let heap = File::open(dma_buf::heap_path("system")).unwrap();
    let file = File::open(DATA_4M).unwrap();
    let ro = dma_buf::heap_alloc_with(&heap, MIB, libc::O_RDONLY).unwrap();
    assert_eq!(
        errno(rw(&ro, &file, RW_FLAGS_READ, 0, 0, MIB)),
        libc::EBADF,
        "READ into a read-only dma-buf"
    );
    assert_eq!(
        errno(rw(&ro, &file, RW_FLAGS_READ | RW_FLAGS_DIRECT, 0, 0, MIB)),
        libc::EBADF,
        "READ|DIRECT into a read-only dma-buf"
    );
    // WRITE loads from the buffer, which a read-only fd allows: what it
    // saves shows the refused READs left the (zeroed) buffer untouched.
    let path = "/mnt/ro-saved.bin";
    let out = create_output(path);
    assert_eq!(rw(&ro, &out, RW_FLAGS_WRITE, 0, 0, MIB).unwrap(), MIB);
    let back = std::fs::read(path).unwrap();
    assert!(
        back.iter().all(|&b| b == 0),
        "a refused READ wrote into the read-only buffer"
    );
    std::fs::remove_file(path).unwrap();

    let wo = dma_buf::heap_alloc_with(&heap, MIB, libc::O_WRONLY).unwrap();
    assert_eq!(
        errno(rw(&wo, &out, RW_FLAGS_WRITE, 0, 0, MIB)),
        libc::EBADF,
        "WRITE from a write-only dma-buf"
    );
    assert_eq!(
        rw(&wo, &file, RW_FLAGS_READ, 0, 0, MIB).unwrap(),
        MIB,
        "READ into a write-only dma-buf"
    );
}

/// An exporter without the callback (udmabuf) says so with its own errno.
#[test]
#[ignore = "lab: needs the patched kernel; run by `cargo xtask lab test`"]
fn an_exporter_without_rw_file_answers_eopnotsupp() {
    // SAFETY: a new memfd with a static name; we own the fd.
    let fd =
        unsafe { libc::memfd_create(c"lab".as_ptr(), libc::MFD_ALLOW_SEALING | libc::MFD_CLOEXEC) };
    assert!(fd >= 0);
    // SAFETY: fd is ours.
    let memfd = unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    memfd.set_len(MIB).unwrap();
    assert_eq!(
        unsafe { libc::fcntl(fd, libc::F_ADD_SEALS, libc::F_SEAL_SHRINK) },
        0
    );
    let buf = dma_buf::udmabuf_create(&memfd, MIB).expect("udmabuf");
    let file = File::open(DATA_4M).unwrap();
    assert_eq!(
        errno(rw(&buf, &file, RW_FLAGS_READ, 0, 0, MIB)),
        libc::EOPNOTSUPP
    );
}

/// A file whose size is not aligned, read to its end with DIRECT: ask for
/// the aligned length, get the bytes up to the end of the file.
#[test]
#[ignore = "lab: needs the patched kernel; run by `cargo xtask lab test`"]
fn direct_read_of_an_unaligned_tail_returns_the_bytes_to_eof() {
    const LEN: u64 = 3 * 4096 + 100;
    let path = "/mnt/tail.bin";
    let mut data = vec![0u8; LEN as usize];
    pattern::fill(7, 0, &mut data);
    std::fs::write(path, &data).unwrap();
    drop_caches();
    let file = File::open(path).unwrap();
    let buf = alloc(4 * 4096);
    let moved = rw(
        &buf,
        &file,
        RW_FLAGS_READ | RW_FLAGS_DIRECT,
        4096,
        0,
        3 * 4096,
    )
    .unwrap();
    assert_eq!(moved, LEN - 4096, "the count stops at the end of the file");
    let map = Mapping::new(&buf, 4 * 4096);
    map.with(false, |b| assert_eq!(&b[..moved as usize], &data[4096..]));
    std::fs::remove_file(path).unwrap();
}

/// Two threads on one buffer at once (different ranges): the second waits
/// for the first instead of failing, and both land intact.
#[test]
#[ignore = "lab: needs the patched kernel; run by `cargo xtask lab test`"]
fn two_threads_on_one_buffer_both_complete() {
    let buf = std::sync::Arc::new(alloc(2 * MIB));
    let workers: Vec<_> = [0u64, 1]
        .into_iter()
        .map(|i| {
            let buf = buf.clone();
            std::thread::spawn(move || {
                let file = File::open(DATA_4M).unwrap();
                for _ in 0..40 {
                    let flags = RW_FLAGS_READ | RW_FLAGS_DIRECT;
                    let moved = rw(&buf, &file, flags, 2 * i * MIB, i * MIB, MIB)
                        .unwrap_or_else(|e| panic!("thread {i}: {e}"));
                    assert_eq!(moved, MIB);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("a worker failed");
    }
    let map = Mapping::new(&buf, 2 * MIB);
    map.with(false, |b| {
        let m = MIB as usize;
        assert_eq!(pattern::first_mismatch(LAB_SEED, 0, &b[..m]), None);
        assert_eq!(pattern::first_mismatch(LAB_SEED, 2 * MIB, &b[m..]), None);
    });
}

/// How many dma-bufs the kernel holds (debugfs bufinfo's total).
fn dma_buf_count() -> u64 {
    dmaprof_e2e::dma_bufs_alive().expect("debugfs dma_buf/bufinfo")
}

fn free_bytes(dir: &str) -> u64 {
    let c = std::ffi::CString::new(dir).unwrap();
    // SAFETY: statvfs fills the zeroed struct we pass.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut st) }, 0);
    st.f_bfree * st.f_frsize
}

/// SIGKILL in the middle of 32 MiB DIRECT transfers (dmaprof writing
/// through RW_FILE): afterwards no dma-buf is left, and the file it wrote
/// can be unlinked and its space comes back (no page or file reference leaked).
#[test]
#[ignore = "lab: needs the patched kernel; run by `cargo xtask lab test`"]
fn sigkill_during_direct_transfers_leaks_nothing() {
    let dir = "/mnt/killed";
    std::fs::create_dir_all(dir).unwrap();
    let (bufs_before, free_before) = (dma_buf_count(), free_bytes("/mnt"));
    let mut child = std::process::Command::new(dmaprof_e2e::dmaprof_bin())
        .args([
            "run",
            "--headless",
            "--no-probes",
            "--no-verify",
            "--mode",
            "rw-file-direct",
        ])
        .args([
            "--direction",
            "write",
            "--dir",
            dir,
            "--size",
            "256M",
            "--chunk",
            "32M",
            "--iterations",
            "50",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(File::create("/tmp/killed.err").unwrap())
        .spawn()
        .unwrap();
    // Wait (without a timer) until one of its threads sleeps inside an
    // RW_FILE ioctl (/proc's syscall file: number and arguments of the
    // syscall a sleeping thread is in; 16 is ioctl on x86_64), after its
    // first pass, so a 32 MiB DIRECT write is in flight when it dies.
    let rw_file_arg = format!("{:#x}", dma_buf::DMA_BUF_IOCTL_RW_FILE);
    let in_rw_file = |pid: u32| -> bool {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            return false;
        };
        tasks.flatten().any(|t| {
            std::fs::read_to_string(t.path().join("syscall")).is_ok_and(|s| {
                let f: Vec<&str> = s.split_whitespace().collect();
                f.first() == Some(&"16") && f.get(2) == Some(&rw_file_arg.as_str())
            })
        })
    };
    let passes_done = || {
        std::fs::read_to_string("/tmp/killed.err")
            .unwrap_or_default()
            .matches("iteration ")
            .count()
    };
    while passes_done() == 0 || !in_rw_file(child.id()) {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "dmaprof ended ({status}) before it was killed: {}",
                std::fs::read_to_string("/tmp/killed.err").unwrap_or_default()
            );
        }
        std::thread::yield_now();
    }
    let held = dma_buf_count();
    assert!(
        held > bufs_before,
        "no dma-buf held during the call: {held}, {bufs_before} before:\n{}",
        std::fs::read_to_string("/sys/kernel/debug/dma_buf/bufinfo").unwrap()
    );
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        dma_buf_count(),
        bufs_before,
        "dma-bufs left after SIGKILL ({held} held when it was killed)"
    );
    println!("lab: killed inside RW_FILE holding {held} dma-bufs; none left");
    std::fs::remove_dir_all(dir).unwrap();
    // SAFETY: plain syscall.
    unsafe { libc::sync() };
    assert!(
        free_bytes("/mnt") + MIB >= free_before,
        "space not returned: {} bytes free before, {} after",
        free_before,
        free_bytes("/mnt")
    );
}

/// tmpfs takes O_DIRECT (FMODE_CAN_ODIRECT, since 6.6) and serves it from
/// the page cache: RW_FILE DIRECT from a tmpfs file works, buffered inside.
#[test]
#[ignore = "lab: needs the patched kernel; run by `cargo xtask lab test`"]
fn direct_from_tmpfs_works_and_is_buffered() {
    let path = "/tmp/tmpfs-direct.bin";
    let mut data = vec![0u8; MIB as usize];
    pattern::fill(9, 0, &mut data);
    std::fs::write(path, &data).unwrap();
    let file = File::open(path).unwrap();
    let buf = alloc(MIB);
    assert_eq!(
        rw(&buf, &file, RW_FLAGS_READ | RW_FLAGS_DIRECT, 0, 0, MIB).unwrap(),
        MIB
    );
    let map = Mapping::new(&buf, MIB);
    map.with(false, |b| assert_eq!(b, &data[..]));
    std::fs::remove_file(path).unwrap();
}

/// A sw_sync timeline (debugfs, CONFIG_SW_SYNC): fences userspace creates
/// and signals, to stand in for a device still working on the buffer.
struct Timeline(File);

/// `struct sw_sync_create_fence_data` and the two sw_sync ioctls
/// (drivers/dma-buf/sw_sync.c; a test-only debugfs interface).
#[repr(C)]
struct SwSyncCreateFence {
    value: u32,
    name: [u8; 32],
    fence: i32,
}
const SW_SYNC_IOC_CREATE_FENCE: u32 = 0xc028_5700;
const SW_SYNC_IOC_INC: u32 = 0x4004_5701;

impl Timeline {
    fn new() -> Timeline {
        Timeline(
            OpenOptions::new()
                .read(true)
                .write(true)
                .open("/sys/kernel/debug/sync/sw_sync")
                .expect("sw_sync in debugfs (CONFIG_SW_SYNC)"),
        )
    }

    /// A fence that signals when the timeline reaches 1: a sync_file fd.
    fn fence(&self) -> OwnedFd {
        let mut data = SwSyncCreateFence {
            value: 1,
            name: [0; 32],
            fence: -1,
        };
        data.name[..3].copy_from_slice(b"lab");
        // SAFETY: the kernel reads and writes one SwSyncCreateFence.
        let rc =
            unsafe { libc::ioctl(self.0.as_raw_fd(), SW_SYNC_IOC_CREATE_FENCE as _, &mut data) };
        assert_eq!(rc, 0, "sw_sync fence: {}", std::io::Error::last_os_error());
        // SAFETY: the kernel returned a new fd.
        unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(data.fence) }
    }

    /// Signals every fence made so far.
    fn signal(&self) {
        let step: u32 = 1;
        // SAFETY: the kernel reads one u32.
        let rc = unsafe { libc::ioctl(self.0.as_raw_fd(), SW_SYNC_IOC_INC as _, &step) };
        assert_eq!(rc, 0, "sw_sync inc: {}", std::io::Error::last_os_error());
    }
}

/// Adds `fence` to the buffer's reservation object as a reader or a writer.
fn import_fence(buf: &OwnedFd, fence: &OwnedFd, usage: u64) {
    let arg = dma_buf::DmaBufImportSyncFile {
        flags: usage as u32,
        fd: fence.as_raw_fd(),
    };
    // SAFETY: the kernel reads one DmaBufImportSyncFile.
    let rc = unsafe {
        libc::ioctl(
            buf.as_raw_fd(),
            dma_buf::DMA_BUF_IOCTL_IMPORT_SYNC_FILE as _,
            &arg,
        )
    };
    assert_eq!(
        rc,
        0,
        "DMA_BUF_IOCTL_IMPORT_SYNC_FILE: {}",
        std::io::Error::last_os_error()
    );
}

/// Whether thread `tid` of this process sleeps in a function whose name
/// holds `what` (/proc wchan: where a sleeping task waits).
fn sleeps_in(tid: i32, what: &str) -> bool {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/wchan")).is_ok_and(|w| w.contains(what))
}

/// Runs `call` on a thread and reports whether it waited for the buffer's
/// fence: it did if it is seen asleep in a fence wait before it returns
/// (then the fence is signalled and the call must complete); it did not if
/// it returns first. No timer decides: the call either returns or is found
/// asleep in the wait.
fn waits_for_fence(
    timeline: &Timeline,
    call: impl FnOnce() -> std::io::Result<u64> + Send + 'static,
) -> (bool, std::io::Result<u64>) {
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let worker = std::thread::spawn(move || {
        // SAFETY: plain syscall.
        tid_tx.send(unsafe { libc::gettid() }).unwrap();
        done_tx.send(call()).unwrap();
    });
    let tid = tid_rx.recv().unwrap();
    let waited = loop {
        if let Ok(r) = done_rx.try_recv() {
            worker.join().unwrap();
            timeline.signal();
            return (false, r);
        }
        if sleeps_in(tid, "fence") {
            break true;
        }
        std::thread::yield_now();
    };
    // Still blocked: nothing has come back while the fence is unsignalled.
    assert!(done_rx.try_recv().is_err());
    timeline.signal();
    let r = done_rx.recv().unwrap();
    worker.join().unwrap();
    (waited, r)
}

/// The buffer's dma_resv fences (a device still reading or writing it) are
/// waited for: all of them before a READ stores into the buffer, the
/// writers' before a WRITE loads from it; a reader's fence does not hold
/// up a WRITE. The seed's re-implementation waited for none.
#[test]
#[ignore = "lab: needs the patched kernel; run by `cargo xtask lab test`"]
fn rw_file_waits_for_the_buffers_fences() {
    let out_path = "/mnt/fenced-save.bin";
    for (op, usage, must_wait) in [
        ("READ", dma_buf::DMA_BUF_SYNC_WRITE, true),
        ("READ", dma_buf::DMA_BUF_SYNC_READ, true),
        ("WRITE", dma_buf::DMA_BUF_SYNC_WRITE, true),
        ("WRITE", dma_buf::DMA_BUF_SYNC_READ, false),
    ] {
        let buf = std::sync::Arc::new(alloc(MIB));
        let timeline = Timeline::new();
        import_fence(&buf, &timeline.fence(), usage);
        let worker_buf = buf.clone();
        let (waited, r) = waits_for_fence(&timeline, move || {
            if op == "READ" {
                let file = File::open(DATA_4M).unwrap();
                rw(
                    &worker_buf,
                    &file,
                    RW_FLAGS_READ | RW_FLAGS_DIRECT,
                    0,
                    0,
                    MIB,
                )
            } else {
                let out = create_output(out_path);
                rw(&worker_buf, &out, RW_FLAGS_WRITE, 0, 0, MIB)
            }
        });
        let what = if usage == dma_buf::DMA_BUF_SYNC_WRITE {
            "a writer's"
        } else {
            "a reader's"
        };
        assert_eq!(
            waited, must_wait,
            "{op} with {what} fence unsignalled: waited {waited}, should wait {must_wait}"
        );
        assert_eq!(r.unwrap_or_else(|e| panic!("{op}: {e}")), MIB);
        if op == "READ" {
            let map = Mapping::new(&buf, MIB);
            map.with(false, |b| {
                assert_eq!(pattern::first_mismatch(LAB_SEED, 0, b), None)
            });
        }
    }
    std::fs::remove_file(out_path).unwrap();
}

/// RW_FILE while another thread of the process writes the buffer through
/// its mmap: the kernel does not exclude a CPU mapping (docs/rw-file.md), so
/// the data is the writer's or the file's, but every call moves its full
/// count, nothing breaks (the debug kernel watches), and once the writer
/// stops a READ leaves exactly the file's bytes.
#[test]
#[ignore = "lab: needs the patched kernel; run by `cargo xtask lab test`"]
fn rw_file_while_the_buffer_is_written_through_its_mmap() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let buf = std::sync::Arc::new(alloc(4 * MIB));
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let writer = {
        let (buf, stop) = (buf.clone(), stop.clone());
        std::thread::spawn(move || {
            let map = Mapping::new(&buf, 4 * MIB);
            let mut fills = 0u64;
            while !stop.load(Ordering::Relaxed) {
                map.with(true, |b| b.fill(0xa5));
                fills += 1;
                if fills == 1 {
                    started_tx.send(()).unwrap();
                }
            }
            fills
        })
    };
    started_rx.recv().unwrap();
    let file = File::open(DATA_4M).unwrap();
    let out_path = "/mnt/mmap-race-save.bin";
    let out = create_output(out_path);
    for round in 0..10 {
        for flags in [RW_FLAGS_READ | RW_FLAGS_DIRECT, RW_FLAGS_READ] {
            let moved = rw(&buf, &file, flags, 0, 0, 4 * MIB)
                .unwrap_or_else(|e| panic!("round {round}, READ {flags:#x}: {e}"));
            assert_eq!(moved, 4 * MIB);
        }
        for flags in [RW_FLAGS_WRITE | RW_FLAGS_DIRECT, RW_FLAGS_WRITE] {
            let moved = rw(&buf, &out, flags, 0, 0, 4 * MIB)
                .unwrap_or_else(|e| panic!("round {round}, WRITE {flags:#x}: {e}"));
            assert_eq!(moved, 4 * MIB);
        }
    }
    stop.store(true, Ordering::Relaxed);
    let fills = writer.join().unwrap();
    println!("lab: 40 transfers ran beside {fills} fills through the mmap");
    assert_eq!(std::fs::metadata(out_path).unwrap().len(), 4 * MIB);
    assert_eq!(
        rw(&buf, &file, RW_FLAGS_READ | RW_FLAGS_DIRECT, 0, 0, 4 * MIB).unwrap(),
        4 * MIB
    );
    let map = Mapping::new(&buf, 4 * MIB);
    map.with(false, |b| {
        assert_eq!(pattern::first_mismatch(LAB_SEED, 0, b), None)
    });
    std::fs::remove_file(out_path).unwrap();
}

/// Writes a file of `len` pattern bytes (seed 11) at `path` and syncs it.
fn pattern_file(path: &str, len: u64) {
    let mut data = vec![0u8; len as usize];
    pattern::fill(11, 0, &mut data);
    let mut f = File::create(path).unwrap();
    std::io::Write::write_all(&mut f, &data).unwrap();
    f.sync_all().unwrap();
}

/// The file truncated by another thread while a 32 MiB READ runs: the call
/// returns a count (what it read before the end moved), never an error and
/// never bytes the file did not hold. The seed answered ENODATA and no count.
#[test]
#[ignore = "lab: needs the patched kernel; run by `cargo xtask lab test`"]
fn truncating_the_file_during_a_read_gives_a_short_count() {
    const LEN: u64 = 32 * MIB;
    const CUT: u64 = 8 * MIB;
    let path = "/mnt/truncated.bin";
    let buf = alloc(LEN);
    let mut short = 0;
    for round in 0..12 {
        pattern_file(path, LEN);
        drop_caches();
        let flags = if round % 2 == 0 {
            RW_FLAGS_READ | RW_FLAGS_DIRECT
        } else {
            RW_FLAGS_READ
        };
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
        let cutter = {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let f = OpenOptions::new().write(true).open(path).unwrap();
                barrier.wait();
                f.set_len(CUT).unwrap();
            })
        };
        let file = File::open(path).unwrap();
        barrier.wait();
        let r = rw(&buf, &file, flags, 0, 0, LEN);
        cutter.join().unwrap();
        let moved = r.unwrap_or_else(|e| panic!("round {round} ({flags:#x}): {e}"));
        assert!(
            (CUT..=LEN).contains(&moved),
            "round {round}: {moved} bytes moved"
        );
        if moved < LEN {
            short += 1;
        }
        let map = Mapping::new(&buf, LEN);
        map.with(false, |b| {
            assert_eq!(
                pattern::first_mismatch(11, 0, &b[..moved as usize]),
                None,
                "round {round}: the bytes the call reports"
            )
        });
    }
    println!("lab: {short} of 12 truncated reads came back short");
    std::fs::remove_file(path).unwrap();
}

/// The file's fd closed by another thread while RW_FILE uses it: the call
/// either never got the file (EBADF) or finishes with its own reference
/// (full count, right bytes); afterwards the file can be unlinked and its
/// space comes back, so no reference to it was leaked.
#[test]
#[ignore = "lab: needs the patched kernel; run by `cargo xtask lab test`"]
fn closing_the_file_during_a_call_is_safe_and_leaks_nothing() {
    use std::os::fd::IntoRawFd;
    const LEN: u64 = 32 * MIB;
    let path = "/mnt/closed.bin";
    pattern_file(path, LEN);
    let free_with_file = free_bytes("/mnt");
    let buf = alloc(LEN);
    let (mut ebadf, mut full) = (0, 0);
    for round in 0..12 {
        drop_caches();
        let fd = File::open(path).unwrap().into_raw_fd();
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
        let closer = {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                // SAFETY: the fd is this test's; the call may still use it.
                unsafe { libc::close(fd) }
            })
        };
        barrier.wait();
        let args = RwFileArgs {
            flags: RW_FLAGS_READ | RW_FLAGS_DIRECT,
            fd,
            file_offset: 0,
            buf_offset: 0,
            buf_len: LEN,
        };
        let r = dma_buf::rw_file(&buf, &args);
        assert_eq!(closer.join().unwrap(), 0, "close");
        match r {
            Ok(n) => {
                assert_eq!(n, LEN, "round {round}");
                full += 1;
                let map = Mapping::new(&buf, LEN);
                map.with(false, |b| {
                    assert_eq!(pattern::first_mismatch(11, 0, b), None)
                });
            }
            Err(e) if e.raw_os_error() == Some(libc::EBADF) => ebadf += 1,
            Err(e) => panic!("round {round}: {e}"),
        }
    }
    println!("lab: fd closed during the call: {full} completed, {ebadf} EBADF");
    std::fs::remove_file(path).unwrap();
    // SAFETY: plain syscall.
    unsafe { libc::sync() };
    assert!(
        free_bytes("/mnt") >= free_with_file + LEN - MIB,
        "the file's space did not come back: {free_with_file} bytes free with it, {} after unlinking",
        free_bytes("/mnt")
    );
}

/// What the kernel reviewers asked, from the profile of each dma-buf mode:
/// RW_FILE's calls run the exporter's rw_file and vfs_iocb_iter_read (no
/// page-table walk); udmabuf's direct reads pin user pages (GUP) for the
/// bio; dmabuf-read's calls copy through the page cache into a mapping the
/// system heap populated at mmap() (remap_pfn_range), so no fault path runs
/// in them; the direct modes' off-CPU time is mostly waiting for the device.
#[test]
#[ignore = "lab: needs the patched kernel; run by `cargo xtask lab test`"]
fn profiles_of_the_dma_buf_modes_show_their_kernel_paths() {
    let dir = "/tmp/profile";
    let run = std::process::Command::new(dmaprof_e2e::dmaprof_bin())
        .args(["run", "--headless", "--file", DATA_256M, "--chunk", "32M"])
        .args(["--mode", "rw-file-direct", "--mode", "udmabuf-direct-read"])
        .args(["--mode", "dmabuf-read", "--profile", "--folded", dir])
        .args(["--flamegraph", dir])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&run.stderr)
    );
    println!("{stdout}");
    let on = |mode: &str| folded_stacks(Path::new(&format!("{dir}/{mode}.on-cpu.folded")));
    let off = |mode: &str| folded_stacks(Path::new(&format!("{dir}/{mode}.off-cpu.folded")));

    let rw = on("rw-file-direct");
    assert!(
        through(&rw, &["system_heap_rw_file"]) > 0 && through(&rw, &["vfs_iocb_iter_read"]) > 0,
        "rw-file-direct: {rw:#?}"
    );
    let gup = [
        "pin_user_pages_fast",
        "gup_fast_fallback",
        "__gup_longterm_locked",
        // Not bio_iov_iter_get_pages: for a bvec iterator (RW_FILE's) it
        // takes the pages as they are, no walk; a sample can land there.
        "iov_iter_extract_pages",
    ];
    assert_eq!(
        through(&rw, &gup),
        0,
        "RW_FILE walks no page table: {rw:#?}"
    );
    let udma = on("udmabuf-direct-read");
    assert!(through(&udma, &gup) > 0, "udmabuf-direct-read: {udma:#?}");
    let mapped = on("dmabuf-read");
    assert!(
        through(&mapped, &["filemap_read"]) > 0,
        "dmabuf-read: {mapped:#?}"
    );
    // A page of the buffer not mapped would fault inside the read's copy
    // to it (under pread); faults elsewhere (dmaprof's own code and stack
    // paged in) are not the heap's.
    let in_the_copy: std::collections::BTreeMap<String, u64> = mapped
        .iter()
        .filter(|(stack, _)| stack.contains(";__libc_pread;"))
        .map(|(s, n)| (s.clone(), *n))
        .collect();
    assert_eq!(
        through(&in_the_copy, &["handle_mm_fault"]),
        0,
        "the system heap maps every page at mmap(): {mapped:#?}"
    );
    for mode in ["rw-file-direct", "udmabuf-direct-read"] {
        let waits = off(mode);
        let all: u64 = waits.values().sum();
        let io = through(
            &waits,
            &["io_schedule", "blk_mq_get_tag", "folio_wait_bit_common"],
        );
        println!("lab: {mode}: {io} of {all} us off-CPU waiting for I/O");
        assert!(io * 2 > all, "{mode}: off-CPU mostly I/O wait: {waits:#?}");
    }
    let svg = std::fs::read_to_string(format!("{dir}/rw-file-direct.on-cpu.svg")).unwrap();
    assert!(svg.contains("<svg") && svg.contains("system_heap_rw_file"));
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

/// `dmaprof trace --pid` of a process moving a file into dma-bufs with
/// RW_FILE (`dmaprof run --mode rw-file-direct`, held until the tracer is
/// attached): every ioctl row and every exporter-callback row carries the
/// request as the kernel read it at the call (READ|DIRECT, the file's fd,
/// file_offset k MiB, buf_offset 0, buf_len 1 MiB) and its result (the
/// bytes moved), named by mechanism, the file the fd names (path, device,
/// inode, read from the kernel at the call) and the dma-buf (exporter name,
/// size, inode). The run's capability probe (one page, fd -1) shows as the
/// failing request it is, EBADF, with no file.
#[test]
#[ignore = "lab: needs the patched kernel; run by `cargo xtask lab test`"]
fn trace_decodes_each_rw_file_request_of_a_process() {
    let (text, log, _) = dmaprof_e2e::trace_a_run(
        "--mode rw-file-direct --file /mnt/data-4m.bin --chunk 1M --iterations 1 --no-verify",
        "/tmp/rw-trace.csv",
    );
    let (header, rows) = dmaprof_e2e::csv_table(&text);
    let col = |name: &str| dmaprof_e2e::column(&header, name);
    let rw = format!("{:#x}", dma_buf::DMA_BUF_IOCTL_RW_FILE);
    let (path, dev, ino) = dmaprof_e2e::file_identity(Path::new(DATA_4M));
    for kind in ["ioctl", "rw_file"] {
        let (failed, mut mine): (Vec<&Vec<&str>>, Vec<&Vec<&str>>) = rows
            .iter()
            .filter(|r| r[col("kind")] == kind && (kind != "ioctl" || r[col("what")] == rw))
            .partition(|r| r[col("ret")].starts_with('-'));
        // The planner's capability probe first: one page, an fd of -1.
        assert_eq!(
            failed.len(),
            1,
            "{kind}: the probe's request:\n{text}\n{log}"
        );
        let f = failed[0];
        assert_eq!(
            (
                f[col("errno")],
                f[col("rw_flags")],
                f[col("rw_fd")],
                f[col("buf_len")]
            ),
            ("EBADF", "READ", "-1", "4096"),
            "{f:?}"
        );
        assert_eq!(f[col("file_path")], "", "fd -1 names no file: {f:?}");
        assert_eq!(mine.len(), 4, "{kind}: one per 1 MiB call:\n{text}\n{log}");
        mine.sort_by_key(|r| r[col("file_offset")].parse::<u64>().unwrap());
        for (k, r) in mine.iter().enumerate() {
            assert_eq!(r[col("mechanism")], "rw_file-ioctl", "{r:?}");
            assert_eq!(r[col("rw_flags")], "READ|DIRECT", "{r:?}");
            assert_eq!(r[col("file_offset")], (k << 20).to_string(), "{r:?}");
            assert_eq!(r[col("buf_offset")], "0", "{r:?}");
            assert_eq!(r[col("buf_len")], "1048576", "{r:?}");
            // The lab kernel's ioctl and callback return the bytes moved.
            assert_eq!((r[col("ret")], r[col("errno")]), ("1048576", ""), "{r:?}");
            assert!(r[col("rw_fd")].parse::<u32>().unwrap() > 2, "{r:?}");
            // The dma-buf, read from struct dma_buf at the call (the
            // ioctl's own file, the callback's argument): the system heap's
            // 1 MiB buffers, each its own inode.
            assert_eq!(r[col("dmabuf_exporter")], "system", "{r:?}");
            assert_eq!(r[col("dmabuf_size")], "1048576", "{r:?}");
            assert!(r[col("dmabuf_ino")].parse::<u64>().unwrap() > 0, "{r:?}");
            assert_eq!(
                (r[col("file_path")], r[col("file_dev")], r[col("file_ino")]),
                (path.as_str(), dev.as_str(), ino.as_str()),
                "{r:?}"
            );
        }
        assert_eq!(f[col("dmabuf_size")], "4096", "the probe's one page: {f:?}");
        let inodes: std::collections::BTreeSet<&str> =
            mine.iter().map(|r| r[col("dmabuf_ino")]).collect();
        assert_eq!(inodes.len(), 4, "four distinct buffers: {inodes:?}");
    }
    println!("lab: trace decoded 4 RW_FILE ioctls and their 4 exporter calls");
}

/// `dmaprof trace --pid` of this test process while it issues known
/// copy_file_range calls between files and dma-bufs (v4), two of them
/// failing, and one RW_FILE: each syscall row, and each row of the dma-buf
/// handler that the call reached, carries the request spelled as RW_FILE
/// (READ: file -> buffer, WRITE: buffer -> file, DIRECT for an O_DIRECT
/// file), the regular file by path, device and inode, the offsets and
/// length, the result with its errno name, and the dma-buf by exporter,
/// size and the name it was given.
#[test]
#[ignore = "lab: needs the patched kernel; run by `cargo xtask lab test`"]
fn trace_decodes_copy_file_range_into_dma_bufs_with_their_files() {
    use std::os::unix::fs::OpenOptionsExt;
    let csv = "/tmp/cfr-trace.csv";
    let out_path = Path::new("/mnt/cfr-trace-out.bin");
    let mut tracer = std::process::Command::new(dmaprof_e2e::dmaprof_bin())
        .args([
            "trace",
            "--pid",
            &std::process::id().to_string(),
            "--csv",
            csv,
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let log = dmaprof_e2e::wait_until_tracing(&mut tracer);

    let direct = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(DATA_4M)
        .unwrap();
    let buffered = File::open(DATA_4M).unwrap();
    let out = File::create(out_path).unwrap();
    let read_only_out = File::open(out_path).unwrap();
    let heap_buf = alloc(MIB);
    // A named buffer: its name shows in the rows (the udmabuf stays unnamed).
    // SAFETY: DMA_BUF_SET_NAME reads a NUL-terminated string.
    let rc = unsafe {
        libc::ioctl(
            heap_buf.as_raw_fd(),
            dma_buf::DMA_BUF_SET_NAME as _,
            c"model-weights".as_ptr(),
        )
    };
    assert_eq!(
        rc,
        0,
        "DMA_BUF_SET_NAME: {}",
        std::io::Error::last_os_error()
    );
    let memfd = dma_buf::sealed_memfd(MIB).unwrap();
    let udmabuf = dma_buf::udmabuf_create(&memfd, MIB).unwrap();
    use dma_buf::copy_file_range as cfr;
    // (the call's result, errno) in the order they are made.
    let results = [
        cfr(&direct, MIB, &heap_buf, 0, MIB).map_err(|e| e.raw_os_error()),
        cfr(&heap_buf, 8192, &out, 4096, 65536).map_err(|e| e.raw_os_error()),
        cfr(&buffered, 0, &udmabuf, 0, 4096).map_err(|e| e.raw_os_error()),
        // Past the buffer's end: the handler refuses.
        cfr(&direct, 0, &heap_buf, MIB, 4096).map_err(|e| e.raw_os_error()),
        // Into a file not open for writing: the VFS refuses.
        cfr(&heap_buf, 0, &read_only_out, 0, 4096).map_err(|e| e.raw_os_error()),
    ];
    assert_eq!(
        results,
        [
            Ok(MIB),
            Ok(65536),
            Ok(4096),
            Err(Some(libc::ENOSPC)),
            Err(Some(libc::EBADF))
        ]
    );
    // SAFETY: plain kill(2) of our child.
    unsafe { libc::kill(tracer.id() as i32, libc::SIGINT) };
    let status = tracer.wait().unwrap();
    let log = log.join().unwrap();
    assert!(status.success(), "trace: {log}");

    let text = std::fs::read_to_string(csv).unwrap();
    let (header, rows) = dmaprof_e2e::csv_table(&text);
    let col = |name: &str| dmaprof_e2e::column(&header, name);
    let data = dmaprof_e2e::file_identity(Path::new(DATA_4M));
    let written = dmaprof_e2e::file_identity(out_path);
    let (fd_direct, fd_buffered, fd_out, fd_ro) = (
        direct.as_raw_fd().to_string(),
        buffered.as_raw_fd().to_string(),
        out.as_raw_fd().to_string(),
        read_only_out.as_raw_fd().to_string(),
    );
    let mib = MIB.to_string();
    // (flags, fd, file_offset, buf_offset, buf_len, ret, errno, file, exporter)
    let want = [
        (
            "READ|DIRECT",
            &fd_direct,
            "1048576",
            "0",
            "1048576",
            "1048576",
            "",
            &data,
            "system",
        ),
        (
            "WRITE", &fd_out, "4096", "8192", "65536", "65536", "", &written, "system",
        ),
        (
            "READ",
            &fd_buffered,
            "0",
            "0",
            "4096",
            "4096",
            "",
            &data,
            "udmabuf",
        ),
        (
            "READ|DIRECT",
            &fd_direct,
            "0",
            &mib,
            "4096",
            "-28",
            "ENOSPC",
            &data,
            "system",
        ),
        (
            "WRITE", &fd_ro, "0", "0", "4096", "-9", "EBADF", &written, "system",
        ),
    ];
    for kind in ["copy_range", "cfr_dmabuf"] {
        let mine: Vec<&Vec<&str>> = rows.iter().filter(|r| r[col("kind")] == kind).collect();
        // The handler is reached by every call but the one the VFS refuses.
        let expected: Vec<_> = want
            .iter()
            .filter(|w| kind == "copy_range" || w.6 != "EBADF")
            .collect();
        assert_eq!(mine.len(), expected.len(), "{kind}:\n{text}\n{log}");
        for (r, w) in mine.iter().zip(expected) {
            let (flags, fd, fo, bo, len, ret, errno, file, exporter) = *w;
            assert_eq!(r.len(), header.len(), "{r:?}");
            assert_eq!(r[col("mechanism")], "copy_file_range", "{r:?}");
            assert_eq!(r[col("rw_flags")], flags, "{r:?}");
            // The handler has the files, not the fds.
            let fd = if kind == "copy_range" {
                fd.as_str()
            } else {
                "-1"
            };
            assert_eq!(r[col("rw_fd")], fd, "{r:?}");
            assert_eq!(
                (
                    r[col("file_offset")],
                    r[col("buf_offset")],
                    r[col("buf_len")]
                ),
                (fo, bo, len),
                "{r:?}"
            );
            assert_eq!((r[col("ret")], r[col("errno")]), (ret, errno), "{r:?}");
            assert_eq!(
                (r[col("file_path")], r[col("file_dev")], r[col("file_ino")]),
                (file.0.as_str(), file.1.as_str(), file.2.as_str()),
                "{r:?}"
            );
            assert_eq!(r[col("dmabuf_exporter")], exporter, "{r:?}");
            assert_eq!(r[col("dmabuf_size")], mib, "{r:?}");
            let name = if exporter == "system" {
                "model-weights"
            } else {
                ""
            };
            assert_eq!(r[col("dmabuf_name")], name, "{r:?}");
        }
    }
    println!("lab: trace decoded 5 copy_file_range calls with dma-bufs and their handler calls");
}
