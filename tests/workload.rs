//! The workload engine on this host: the modes the host supports, end to
//! end with verification, and every bad input the host can produce.
use std::{
    os::unix::fs::FileExt,
    path::Path,
    process::{Command, Output},
    sync::atomic::AtomicBool,
};

use dmaprof_e2e::{disk_scratch_dir, dmaprof_bin, require_bpf};
use profiler::workload::{
    self, BufferUse, CacheMode, CallRecord, Observer, Verification, datafile,
    mode::{Direction, Mode},
    plan,
};
use profiler_common::pattern;

const MIB: u64 = 1 << 20;

fn dmaprof(args: &[&str]) -> Output {
    Command::new(dmaprof_bin())
        .arg("run")
        .args(args)
        .output()
        .expect("run dmaprof")
}

/// One line on stderr naming the cause, and the exit code.
fn assert_clean_failure(out: &Output, code: i32, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("dmaprof: ") && last.contains(needle),
        "expected `{needle}` in: {err}"
    );
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "{err}"
    );
}

fn args(dir: &Path, modes: &[&str], direction: Direction) -> plan::Args {
    plan::Args {
        modes: modes.iter().map(|s| s.to_string()).collect(),
        direction,
        file: None,
        dir: Some(dir.to_path_buf()),
        size: Some(16 * MIB),
        chunk: 4 * MIB,
        iterations: 2,
        heap: "system".into(),
        cache: CacheMode::Cold,
        verify: true,
        force: false,
        buffers: BufferUse::Distinct,
        queue_depth: 1,
    }
}

#[derive(Default)]
struct Collect(Vec<CallRecord>);
impl Observer for Collect {
    fn on_call(&mut self, c: &CallRecord) {
        self.0.push(c.clone());
    }
}

#[test]
fn read_baselines_move_and_verify_every_byte() {
    let dir = disk_scratch_dir();
    let plan = plan::plan(
        &args(dir.path(), &["pread", "pread-direct"], Direction::Read),
        &AtomicBool::new(false),
    )
    .unwrap();
    let mut seen = Collect::default();
    let out = workload::run(&plan.config, &AtomicBool::new(false), &mut seen, None);
    assert!(out.error.is_none(), "{:?}", out.error);
    assert!(!out.interrupted);
    // 2 iterations x 2 modes, interleaved, 4 calls of 4 MiB each.
    let order: Vec<Mode> = out.passes.iter().map(|p| p.mode).collect();
    assert_eq!(
        order,
        [
            Mode::Pread,
            Mode::PreadDirect,
            Mode::Pread,
            Mode::PreadDirect
        ]
    );
    for p in &out.passes {
        assert_eq!(p.bytes, 16 * MIB);
        assert_eq!(p.verified, Verification::Pattern);
        assert!(p.cache.starts_with("cold"), "{}", p.cache);
        let offsets: Vec<u64> = p.calls.iter().map(|c| c.file_offset).collect();
        assert_eq!(offsets, [0, 4 * MIB, 8 * MIB, 12 * MIB]);
        assert!(p.calls.iter().all(|c| c.bytes == 4 * MIB && c.wall_ns > 0));
        // Start stamps and durations come from separate clock reads: calls
        // run one after another, each ending before the next starts.
        for w in p.calls.windows(2) {
            assert!(
                w[1].start_ns >= w[0].start_ns + w[0].wall_ns,
                "call {} starts at {} before call {} ends at {}",
                w[1].index,
                w[1].start_ns,
                w[0].index,
                w[0].start_ns + w[0].wall_ns
            );
        }
    }
    assert_eq!(seen.0.len(), 16, "the observer saw every call");
    // The direct pass left the page cache alone; buffered reads populated it and
    // the next pass's cold start dropped it again (mincore said so).
    assert!(
        out.passes[2].cache.contains(" 0/4096 pages resident"),
        "{}",
        out.passes[2].cache
    );
}

#[test]
fn write_baselines_save_verified_files() {
    let dir = disk_scratch_dir();
    let plan = plan::plan(
        &args(dir.path(), &["pwrite", "pwrite-direct"], Direction::Write),
        &AtomicBool::new(false),
    )
    .unwrap();
    let out = workload::run(
        &plan.config,
        &AtomicBool::new(false),
        &mut workload::NoObserver,
        None,
    );
    assert!(out.error.is_none(), "{:?}", out.error);
    assert_eq!(out.passes.len(), 4);
    for mode in ["pwrite", "pwrite-direct"] {
        // Checked here independently of dmaprof's own verification.
        let path = dir.path().join(format!("dmaprof-out-{mode}.bin"));
        let data = std::fs::read(&path).unwrap();
        assert_eq!(data.len() as u64, 16 * MIB);
        assert_eq!(
            pattern::first_mismatch(datafile::DEFAULT_SEED, 0, &data),
            None,
            "{mode}"
        );
        assert!(datafile::owner_seed(&path).is_some(), "marked as dmaprof's");
    }
    assert!(
        out.passes
            .iter()
            .all(|p| p.verified == Verification::Pattern && p.sync_ns > 0)
    );
}

#[test]
fn the_binary_prints_the_seed_shaped_table() {
    let dir = disk_scratch_dir();
    let d = dir.path().to_str().unwrap();
    let out = dmaprof(&[
        "--dir",
        d,
        "--size",
        "8M",
        "--chunk",
        "2M",
        "--mode",
        "pread",
        "--mode",
        "pread-direct",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8(out.stdout).unwrap();
    for col in [
        "alloc ms",
        "xfer ms",
        "total ms",
        "MiB/s",
        "p99 us",
        "cpu ms/GiB",
    ] {
        assert!(table.contains(col), "{table}");
    }
    let rows: Vec<&str> = table
        .lines()
        .filter(|l| l.starts_with("pread") && !l.contains("kernel"))
        .take(2)
        .collect();
    assert_eq!(rows.len(), 2, "{table}");
    assert!(rows.iter().all(|r| r.ends_with("pattern")), "{table}");
    // The default test file is made once and reused.
    let again = dmaprof(&[
        "--dir", d, "--size", "8M", "--chunk", "2M", "--mode", "pread",
    ]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("reusing test file"));
}

#[test]
fn mode_all_lists_what_it_skips_and_why() {
    let dir = disk_scratch_dir();
    let out = dmaprof(&[
        "--dir",
        dir.path().to_str().unwrap(),
        "--size",
        "4M",
        "--chunk",
        "1M",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    if !Path::new("/dev/dma_heap/system").exists() {
        assert!(
            err.contains("skipping rw-file-direct: no dma-heap"),
            "{err}"
        );
    }
    if !Path::new("/dev/udmabuf").exists() {
        assert!(
            err.contains("skipping udmabuf-sendfile: no /dev/udmabuf"),
            "{err}"
        );
    }
}

#[test]
fn a_user_file_is_verified_against_a_reference_read() {
    let dir = disk_scratch_dir();
    let path = dir.path().join("user.bin");
    std::fs::write(
        &path,
        (0..(2 * MIB))
            .map(|i| (i * 7 % 251) as u8)
            .collect::<Vec<u8>>(),
    )
    .unwrap();
    let out = dmaprof(&[
        "--file",
        path.to_str().unwrap(),
        "--mode",
        "pread-direct",
        "--chunk",
        "1M",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("reference"));
}

#[test]
fn corrupted_data_fails_verification() {
    let dir = disk_scratch_dir();
    let d = dir.path().to_str().unwrap();
    assert!(
        dmaprof(&[
            "--dir", d, "--size", "4M", "--chunk", "1M", "--mode", "pread"
        ])
        .status
        .success()
    );
    // Flip one byte of dmaprof's own file: it still claims the pattern.
    let path = dir.path().join("dmaprof-data-4M.bin");
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.write_at(
        &[0xff ^ pattern::word(datafile::DEFAULT_SEED, 300_000) as u8],
        2_400_000,
    )
    .unwrap();
    drop(f);
    let out = dmaprof(&[
        "--dir", d, "--size", "4M", "--chunk", "1M", "--mode", "pread",
    ]);
    assert_clean_failure(&out, 1, "differs from the file at offset 2400000");
    // A reused buffer: the byte is not in the sample taken between calls
    // (the first line of each page and the last); the calls made again
    // after the pass find it.
    assert_ne!(2_400_000 % 4096 / 64, 0);
    let out = dmaprof(&[
        "--dir",
        d,
        "--size",
        "4M",
        "--chunk",
        "1M",
        "--mode",
        "pread",
        "--buffers",
        "reuse",
    ]);
    assert_clean_failure(
        &out,
        1,
        "made again: its buffer differs from the file at offset 2400000",
    );
}

#[test]
fn bad_inputs_get_one_line_and_exit_2() {
    let dir = disk_scratch_dir();
    let d = dir.path().to_str().unwrap();
    let small = dir.path().join("small.bin");
    std::fs::write(&small, vec![1u8; 8192]).unwrap();
    let small = small.to_str().unwrap();

    assert_clean_failure(
        &dmaprof(&["--file", "/nonexistent/x.bin"]),
        2,
        "No such file",
    );
    assert_clean_failure(&dmaprof(&["--file", d]), 2, "is a directory");
    assert_clean_failure(
        &dmaprof(&["--file", small, "--size", "1M"]),
        2,
        "larger than",
    );
    assert_clean_failure(
        &dmaprof(&["--file", small, "--size", "0"]),
        2,
        "--size must be greater than 0",
    );
    assert_clean_failure(
        &dmaprof(&["--file", small, "--chunk", "0"]),
        2,
        "--chunk must be greater than 0",
    );
    assert_clean_failure(
        &dmaprof(&["--file", small, "--mode", "pread-direct", "--chunk", "1000"]),
        2,
        "the direct I/O alignment of this file",
    );
    assert_clean_failure(
        &dmaprof(&["--file", small, "--mode", "nope"]),
        2,
        "unknown mode `nope`",
    );
    assert_clean_failure(
        &dmaprof(&["--file", small, "--size", "12Q"]),
        2,
        "unknown unit",
    );
    let empty = dir.path().join("empty.bin");
    std::fs::write(&empty, b"").unwrap();
    assert_clean_failure(
        &dmaprof(&["--file", empty.to_str().unwrap()]),
        2,
        "is empty",
    );
    assert_clean_failure(&dmaprof(&["--file", "/dev/null"]), 2, "not a regular file");
    if !Path::new("/dev/dma_heap/system").exists() {
        assert_clean_failure(
            &dmaprof(&["--file", small, "--mode", "dmabuf-read"]),
            2,
            "no dma-heap",
        );
        assert_clean_failure(
            &dmaprof(&["--file", small, "--mode", "rw-file-direct"]),
            2,
            "no dma-heap",
        );
    }
    if !Path::new("/dev/udmabuf").exists() {
        assert_clean_failure(
            &dmaprof(&["--file", small, "--mode", "udmabuf-read"]),
            2,
            "no /dev/udmabuf",
        );
    }
    assert_clean_failure(
        &dmaprof(&["--file", small, "--mode", "pwrite"]),
        2,
        "pwrite does not do reads",
    );
}

#[test]
fn writes_never_clobber_a_file_dmaprof_did_not_create() {
    let dir = disk_scratch_dir();
    let theirs = dir.path().join("precious.txt");
    std::fs::write(&theirs, b"keep me").unwrap();
    let t = theirs.to_str().unwrap();
    let out = dmaprof(&[
        "--direction",
        "write",
        "--file",
        t,
        "--mode",
        "pwrite",
        "--size",
        "1M",
    ]);
    assert_clean_failure(&out, 2, "was not created by dmaprof");
    assert_eq!(std::fs::read(&theirs).unwrap(), b"keep me");
    let out = dmaprof(&[
        "--direction",
        "write",
        "--file",
        t,
        "--mode",
        "pwrite",
        "--size",
        "1M",
        "--force",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::metadata(&theirs).unwrap().len(), MIB);
}

#[test]
fn rw_file_on_a_kernel_or_fd_without_it_is_enotty() {
    // The host kernel has no RW_FILE; any non-dma-buf fd answers ENOTTY too.
    let dir = disk_scratch_dir();
    let path = dir.path().join("f.bin");
    std::fs::write(&path, vec![0u8; 4096]).unwrap();
    let f = std::fs::File::open(&path).unwrap();
    let args = profiler::dma_buf::RwFileArgs {
        flags: profiler::dma_buf::RW_FLAGS_READ,
        fd: std::os::fd::AsRawFd::as_raw_fd(&f),
        buf_len: 4096,
        ..Default::default()
    };
    let err = profiler::dma_buf::rw_file(&f, &args).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOTTY));
}

/// Root-only scenarios: a filesystem without O_DIRECT (ramfs), a full
/// filesystem (a small tmpfs), and permission denied (as nobody).
#[test]
fn filesystem_limits_and_permissions() {
    if !require_bpf("mounting ramfs/tmpfs needs root") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ram = dir.path().join("ramfs");
    let small = dir.path().join("tmpfs");
    std::fs::create_dir_all(&ram).unwrap();
    std::fs::create_dir_all(&small).unwrap();
    let mount = |fs: &str, at: &Path, opts: &str| {
        let ok = Command::new("mount")
            .args(["-t", fs, "-o", opts, fs])
            .arg(at)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount {fs}");
    };
    mount("ramfs", &ram, "mode=755");
    mount("tmpfs", &small, "size=4m");
    let result = std::panic::catch_unwind(|| {
        let f = ram.join("data.bin");
        std::fs::write(&f, vec![3u8; 65536]).unwrap();
        let out = dmaprof(&[
            "--file",
            f.to_str().unwrap(),
            "--mode",
            "pread-direct",
            "--chunk",
            "64K",
        ]);
        assert_clean_failure(&out, 2, "O_DIRECT does not work here");

        let out = dmaprof(&[
            "--direction",
            "write",
            "--dir",
            small.to_str().unwrap(),
            "--mode",
            "pwrite",
            "--size",
            "16M",
            "--chunk",
            "1M",
        ]);
        assert_clean_failure(&out, 1, "No space left on device");

        // A test file larger than the free space is refused before a byte is
        // written: no partial file is left behind.
        let out = dmaprof(&[
            "--dir",
            small.to_str().unwrap(),
            "--mode",
            "pread",
            "--size",
            "16M",
            "--chunk",
            "1M",
        ]);
        assert_clean_failure(&out, 2, "free");
        let left: Vec<_> = std::fs::read_dir(&small)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().starts_with("dmaprof-data"))
            .collect();
        assert!(left.is_empty(), "{left:?}");

        let secret = ram.join("secret.bin");
        std::fs::write(&secret, vec![1u8; 4096]).unwrap();
        std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let out = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(dmaprof_bin())
            .args(["run", "--mode", "pread", "--file", secret.to_str().unwrap()])
            .output()
            .unwrap();
        assert_clean_failure(&out, 2, "Permission denied");
    });
    for at in [&ram, &small] {
        Command::new("umount").arg(at).status().unwrap();
    }
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

#[test]
fn sigint_ends_the_run_cleanly_with_what_was_done() {
    let dir = disk_scratch_dir();
    let d = dir.path().to_str().unwrap();
    // Make the file first so the run starts transferring at once.
    assert!(
        dmaprof(&[
            "--dir", d, "--size", "64M", "--chunk", "64K", "--mode", "pread", "--cache", "warm"
        ])
        .status
        .success()
    );
    let mut child = Command::new(dmaprof_bin())
        .args([
            "run",
            "--dir",
            d,
            "--size",
            "64M",
            "--chunk",
            "4K",
            "--mode",
            "pread",
            "--iterations",
            "1000",
            "--cache",
            "warm",
        ])
        .env("DMAPROF_ANNOUNCE_PHASES", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // In the third pass: two are done.
    let stderr = dmaprof_e2e::wait_for_phase(&mut child, "transfer pread 2");
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let mut out = child.wait_with_output().unwrap();
    out.stderr = stderr.join().unwrap().into_bytes();
    assert_clean_failure(&out, 130, "interrupted");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("pread"),
        "the passes done are reported"
    );
}

#[test]
fn a_size_that_is_not_a_multiple_of_the_chunk_ends_with_a_short_call() {
    let dir = disk_scratch_dir();
    let mut a = args(dir.path(), &["pread"], Direction::Read);
    a.size = Some(10 * MIB);
    a.iterations = 1;
    let plan = plan::plan(&a, &AtomicBool::new(false)).unwrap();
    let out = workload::run(
        &plan.config,
        &AtomicBool::new(false),
        &mut workload::NoObserver,
        None,
    );
    assert!(out.error.is_none(), "{:?}", out.error);
    let sizes: Vec<u64> = out.passes[0].calls.iter().map(|c| c.bytes).collect();
    assert_eq!(sizes, [4 * MIB, 4 * MIB, 2 * MIB]);
    assert_eq!(out.passes[0].verified, Verification::Pattern);
}

/// Direct I/O cannot move a length that is not a multiple of the file's
/// alignment: a direct mode's unaligned last call goes buffered, the run
/// says so, and every byte is still moved and verified, both directions.
#[test]
fn a_direct_modes_unaligned_tail_is_moved_buffered_and_said_so() {
    let dir = disk_scratch_dir();
    let odd = 2 * MIB + 100;
    let file = dir.path().join("odd.bin");
    let mut data = vec![0u8; odd as usize];
    pattern::fill(3, 0, &mut data);
    std::fs::write(&file, &data).unwrap();
    let (f, d) = (file.to_str().unwrap(), dir.path().to_str().unwrap());
    let size = odd.to_string();
    for (direction, mode) in [("read", "pread-direct"), ("write", "pwrite-direct")] {
        let mut a = vec!["--headless", "--no-probes", "--mode", mode, "--chunk", "1M"];
        a.extend(["--direction", direction]);
        if direction == "read" {
            a.extend(["--file", f]);
        } else {
            a.extend(["--dir", d, "--size", &size]);
        }
        let out = dmaprof(&a);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{direction}: {err}");
        assert!(
            err.contains(&format!(
                "{mode}: the last call moves the unaligned 100-byte tail buffered"
            )),
            "{direction}: {err}"
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let row = stdout
            .lines()
            .find(|l| l.starts_with(mode))
            .unwrap_or_else(|| panic!("{stdout}"));
        assert!(
            row.ends_with("reference") || row.ends_with("pattern"),
            "verified: {row}"
        );
    }
    let written = dir.path().join("dmaprof-out-pwrite-direct.bin");
    assert_eq!(std::fs::metadata(written).unwrap().len(), odd);
}

#[test]
fn a_file_that_shrinks_during_the_run_is_a_clear_error_and_the_calls_done_are_kept() {
    let dir = disk_scratch_dir();
    let path = dir.path().join("shrinking.bin");
    std::fs::write(&path, vec![9u8; 64 << 20]).unwrap();
    let csv = dir.path().join("calls.csv");
    let mut child = Command::new(dmaprof_bin())
        .args([
            "run",
            "--headless",
            "--no-probes",
            "--mode",
            "pread",
            "--chunk",
            "64K",
            "--iterations",
            "1000",
            "--cache",
            "warm",
        ])
        .arg("--file")
        .arg(&path)
        .arg("--csv")
        .arg(&csv)
        .env("DMAPROF_ANNOUNCE_PHASES", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // In the second pass: the first one's calls are in the CSV.
    let stderr = dmaprof_e2e::wait_for_phase(&mut child, "transfer pread 1");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    let mut out = child.wait_with_output().unwrap();
    out.stderr = stderr.join().unwrap().into_bytes();
    // Mid-transfer the read hits the new end of file; between transfer and
    // verification the reference read disagrees. Either is named, exit 1.
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err.lines().last().unwrap_or_default();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        last.starts_with("dmaprof: ")
            && (last.contains("file ended at offset") || last.contains("differs from the file")),
        "{last}"
    );
    let rows = std::fs::read_to_string(&csv).unwrap();
    assert!(
        rows.lines().count() > 1 && rows.ends_with('\n'),
        "the calls done are in a complete CSV"
    );
}

/// A size no machine holds is refused before any file is made, naming the
/// shortfall; so is an output in a missing directory.
#[test]
fn impossible_sizes_and_bad_outputs_fail_before_the_test_file() {
    let dir = disk_scratch_dir();
    let d = dir.path().to_str().unwrap();
    let out = dmaprof(&["--dir", d, "--mode", "pread", "--size", "100T"]);
    assert_clean_failure(&out, 2, "of memory available");
    let out = dmaprof(&[
        "--dir",
        d,
        "--mode",
        "pread",
        "--size",
        "3M",
        "--csv",
        "/nonexistent/dir/calls.csv",
    ]);
    assert_clean_failure(&out, 2, "--csv /nonexistent/dir/calls.csv");
    let made: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(made.is_empty(), "nothing written: {made:?}");
}

/// --force overwrites a regular file, never a device or a FIFO.
#[test]
fn write_destinations_must_be_regular_files() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    dmaprof_e2e::mkfifo(&fifo);
    for dest in [fifo.to_str().unwrap(), "/dev/null", "/dev/loop0"] {
        if !Path::new(dest).exists() {
            continue;
        }
        let out = dmaprof(&[
            "--direction",
            "write",
            "--mode",
            "pwrite",
            "--size",
            "1M",
            "--force",
            "--file",
            dest,
        ]);
        assert_clean_failure(&out, 2, "is not a regular file");
    }
}

/// --buffers reuse: one buffer per mode, allocated in the first pass only
/// and used by every call; every byte still verified (reads call by call,
/// writes in the destination), in both directions, with a short last call.
#[test]
fn reused_buffers_are_allocated_once_and_every_byte_is_verified() {
    let dir = disk_scratch_dir();
    for (direction, modes) in [
        (Direction::Read, ["pread", "pread-direct"]),
        (Direction::Write, ["pwrite", "pwrite-direct"]),
    ] {
        let mut a = args(dir.path(), &modes, direction);
        a.buffers = BufferUse::Reuse;
        a.size = Some(10 * MIB);
        a.iterations = 3;
        let plan = plan::plan(&a, &AtomicBool::new(false)).unwrap();
        let mut seen = Collect::default();
        let out = workload::run(&plan.config, &AtomicBool::new(false), &mut seen, None);
        assert!(out.error.is_none(), "{direction}: {:?}", out.error);
        assert_eq!(out.passes.len(), 6);
        for p in &out.passes {
            assert_eq!(p.bytes, 10 * MIB, "{direction} {}", p.mode);
            assert_eq!(p.verified, Verification::Pattern);
            let sizes: Vec<u64> = p.calls.iter().map(|c| c.bytes).collect();
            assert_eq!(sizes, [4 * MIB, 4 * MIB, 2 * MIB]);
            if p.iteration == 0 {
                assert!(p.alloc_ns > 0, "{direction} {}: allocated once", p.mode);
            } else {
                assert_eq!(p.alloc_ns, 0, "{direction} {}: reused", p.mode);
            }
        }
        assert!(seen.0.iter().all(|c| c.buffers == BufferUse::Reuse));
    }
}

/// The work is named in the exports: the per-call CSV's last column and the
/// JSON's options and summaries.
#[test]
fn the_buffer_policy_is_named_in_every_export() {
    let dir = disk_scratch_dir();
    let (csv, json) = (dir.path().join("c.csv"), dir.path().join("r.json"));
    let d = dir.path().to_str().unwrap();
    let out = dmaprof(&[
        "--dir",
        d,
        "--mode",
        "pread",
        "--size",
        "4M",
        "--chunk",
        "1M",
        "--buffers",
        "reuse",
        "--no-probes",
        "--csv",
        csv.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("buffers: reuse"));
    let text = std::fs::read_to_string(&csv).unwrap();
    assert!(text.lines().next().unwrap().ends_with(",buffers,mechanism"));
    assert!(
        text.lines().skip(1).all(|l| l.ends_with(",reuse,pread")),
        "{text}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["options"]["buffers"], "reuse");
    assert_eq!(v["modes"][0]["summary"]["buffers"], "reuse");
}

/// io_uring with registered buffers, at depth 1 (pread's shape: one I/O
/// at a time) and 8 (I/Os overlap; the pass's transfer time is the time
/// any was in flight), both directions, distinct and reused buffers, an
/// unaligned direct tail: every byte verified, every call recorded once.
#[test]
fn uring_direct_moves_verified_bytes_at_every_queue_depth() {
    let dir = disk_scratch_dir();
    for (direction, buffers, depth) in [
        (Direction::Read, BufferUse::Distinct, 1),
        (Direction::Read, BufferUse::Distinct, 8),
        (Direction::Read, BufferUse::Reuse, 4),
        (Direction::Write, BufferUse::Distinct, 8),
        (Direction::Write, BufferUse::Reuse, 4),
    ] {
        let what = format!("{direction} {buffers} depth {depth}");
        let mut a = args(dir.path(), &["uring-direct"], direction);
        a.size = Some(16 * MIB + 12_345);
        a.chunk = MIB;
        a.buffers = buffers;
        a.queue_depth = depth;
        let plan = plan::plan(&a, &AtomicBool::new(false)).unwrap();
        let mut seen = Collect::default();
        let out = workload::run(&plan.config, &AtomicBool::new(false), &mut seen, None);
        assert!(out.error.is_none(), "{what}: {:?}", out.error);
        assert_eq!(out.passes.len(), 2, "{what}");
        for p in &out.passes {
            assert_eq!(p.bytes, 16 * MIB + 12_345, "{what}");
            assert_eq!(p.verified, Verification::Pattern, "{what}");
            let indexes: Vec<u32> = p.calls.iter().map(|c| c.index).collect();
            assert_eq!(indexes, (0..17).collect::<Vec<u32>>(), "{what}");
            assert_eq!(p.calls[16].bytes, 12_345, "{what}: the tail");
            let wall: u64 = p.calls.iter().map(|c| c.wall_ns).sum();
            let overlapping = p
                .calls
                .iter()
                .zip(&p.calls[1..])
                .any(|(a, b)| b.start_ns < a.start_ns + a.wall_ns);
            if depth == 1 {
                assert!(!overlapping, "{what}: one I/O at a time");
                assert_eq!(p.transfer_ns, wall, "{what}");
            } else {
                assert!(overlapping, "{what}: I/Os in flight together");
                assert!(p.transfer_ns < wall, "{what}: {} >= {wall}", p.transfer_ns);
            }
        }
        assert_eq!(seen.0.len(), 34, "{what}: the observer saw every call");
    }
}

#[test]
fn uring_bad_inputs_get_one_line_and_exit_2() {
    let dir = disk_scratch_dir();
    let d = dir.path().to_str().unwrap();
    let out = dmaprof(&["--dir", d, "--mode", "uring-direct", "--queue-depth", "0"]);
    assert_clean_failure(&out, 2, "--queue-depth must be between 1 and 4096");
    let out = dmaprof(&[
        "--dir",
        d,
        "--mode",
        "uring-direct",
        "--size",
        "128M",
        "--chunk",
        "4K",
    ]);
    assert_clean_failure(&out, 2, "which takes at most 16384");
}

/// `bench --table all` and `--table v2`: every path's share of the device
/// limit measured in the same run is its throughput over the limit's, as
/// the JSON holds both; `all` names each path's mechanism and its ratio to
/// the best baseline.
#[test]
fn bench_tables_state_each_paths_share_of_the_device_limit() {
    let dir = disk_scratch_dir();
    let d = dir.path().to_str().unwrap();
    for table in ["all", "v2"] {
        let json = dir.path().join(format!("{table}.json"));
        let out = Command::new(dmaprof_bin())
            .args([
                "bench",
                "--no-probes",
                "--dir",
                d,
                "--size",
                "32M",
                "--chunk",
                "4M",
            ])
            .args(["--iterations", "2", "--table", table, "--json"])
            .arg(&json)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        let limit = v["device_limit"]["mib_per_s"]
            .as_f64()
            .expect("device_limit");
        assert_eq!(v["device_limit"]["queue_depth"], 32);
        assert!(
            text.contains(&format!("device limit: {limit:.0} MiB/s (uring-direct")),
            "{text}"
        );
        let header = text
            .lines()
            .find(|l| l.contains("% limit"))
            .unwrap_or_else(|| panic!("{table}: no table in {text}"));
        let modes: Vec<(&str, &serde_json::Value)> = v["modes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m["summary"]["mode"].as_str().unwrap(), &m["summary"]))
            .collect();
        let best = modes
            .iter()
            .filter(|(n, _)| ["pread", "pread-direct", "uring-direct"].contains(n))
            .map(|(_, m)| m["mib_per_s"].as_f64().unwrap())
            .fold(0.0, f64::max);
        assert_eq!(modes.len(), 3, "{table}: pread, pread-direct, uring-direct");
        for &(name, m) in &modes {
            let mibs = m["mib_per_s"].as_f64().unwrap();
            let row: Vec<&str> = match text.lines().find(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                (table == "all" && w.first() == Some(&name))
                    || (table == "v2" && w.last() == Some(&name))
            }) {
                Some(l) => l.split_whitespace().collect(),
                None if table == "v2" && name == "uring-direct" => continue, // not a seed row
                None => panic!("{table}: no row for {name}:\n{text}"),
            };
            let share = if table == "all" {
                row[row.len() - 1]
            } else {
                row[row.len() - 2]
            };
            assert_eq!(
                share,
                format!("{:.0}", 100.0 * mibs / limit),
                "{table} {name}: {header}\n{row:?}"
            );
            if table == "all" {
                assert_eq!(row[1], m["mechanism"].as_str().unwrap(), "{row:?}");
                assert_eq!(row[row.len() - 2], format!("{:.2}", mibs / best), "{row:?}");
            }
        }
    }
}

/// `bench --direction write` makes its own files: a `--file` is refused
/// with the reason, before anything is planned or written; `--table v2`
/// (the seed's read table) refuses writes.
#[test]
fn bench_writes_refuse_a_source_file_and_the_read_only_table() {
    let out = Command::new(dmaprof_bin())
        .args(["bench", "--table", "v4", "--direction", "write"])
        .args(["--file", "/nonexistent/model.bin"])
        .output()
        .unwrap();
    assert_clean_failure(&out, 2, "--file names a file to read");
    let out = Command::new(dmaprof_bin())
        .args(["bench", "--direction", "write"])
        .output()
        .unwrap();
    assert_clean_failure(&out, 2, "--table v2 is the seed's read table");
}

/// Per-call CPU is the thread's CPU clock: every cold 4 MiB pread copies
/// 4 MiB, so none took no CPU (getrusage alone gave 0 for two calls in
/// three: its runtime is brought up to date only at a tick or a switch).
#[test]
fn every_calls_cpu_is_seen() {
    let dir = disk_scratch_dir();
    let mut a = args(dir.path(), &["pread"], Direction::Read);
    a.size = Some(64 * MIB);
    a.iterations = 1;
    let plan = plan::plan(&a, &AtomicBool::new(false)).unwrap();
    let out = workload::run(
        &plan.config,
        &AtomicBool::new(false),
        &mut Collect::default(),
        None,
    );
    assert!(out.error.is_none(), "{:?}", out.error);
    let cpu: Vec<u64> = out.passes[0]
        .calls
        .iter()
        .map(|c| c.cpu.total_ns())
        .collect();
    assert_eq!(cpu.len(), 16);
    assert!(cpu.iter().all(|&ns| ns > 0), "per-call CPU ns: {cpu:?}");
    let summary = &workload::summary::summarize(&out.passes)[0];
    assert!(summary.cpu_p50_us.is_some_and(|us| us > 0.0), "{summary:?}");
    assert_eq!(summary.cpu_source.as_deref(), Some("thread-cputime"));
}

/// Checking the reads of a file dmaprof did not make changes nothing the
/// next call sees: no page of the file is cached at any call of a verified
/// O_DIRECT pass (the reference is read after the pass, O_DIRECT), and a
/// byte the calls read that differs from the file then is still caught.
#[test]
fn a_user_files_reads_are_checked_without_filling_its_page_cache() {
    let dir = disk_scratch_dir();
    let path = dir.path().join("model.bin");
    let content: Vec<u8> = (0..8 * MIB).map(|i| (i * 13 % 253) as u8).collect();
    std::fs::write(&path, &content).unwrap();
    let mut a = args(dir.path(), &["pread-direct"], Direction::Read);
    a.file = Some(path.clone());
    a.dir = None;
    a.size = None;
    a.chunk = MIB;
    a.iterations = 1;
    a.buffers = BufferUse::Reuse;
    let plan = plan::plan(&a, &AtomicBool::new(false)).unwrap();
    assert_eq!(plan.config.seed, None, "a user's file has no pattern");

    /// The file's cached pages after each call; at call `corrupt_at` a byte
    /// an earlier call read is changed in the file.
    struct Watch<'a> {
        file: &'a Path,
        cached: Vec<u64>,
        corrupt_at: Option<u32>,
        flipped: u8,
    }
    impl Observer for Watch<'_> {
        fn on_call(&mut self, c: &CallRecord) {
            let f = std::fs::File::open(self.file).unwrap();
            let (resident, _) = datafile::resident_pages(&f, 8 * MIB).unwrap();
            self.cached.push(resident);
            if Some(c.index) == self.corrupt_at {
                let w = std::fs::OpenOptions::new()
                    .write(true)
                    .open(self.file)
                    .unwrap();
                // In the sample of call 1 (the first line of each page):
                // the timed call read the old byte, the file now differs.
                w.write_at(&[self.flipped], MIB + 5).unwrap();
                w.sync_all().unwrap();
                datafile::drop_from_cache(&w).unwrap();
            }
        }
    }
    let mut watch = Watch {
        file: &path,
        cached: Vec::new(),
        corrupt_at: None,
        flipped: !content[(MIB + 5) as usize],
    };
    let out = workload::run(&plan.config, &AtomicBool::new(false), &mut watch, None);
    assert!(out.error.is_none(), "{:?}", out.error);
    assert_eq!(out.passes[0].verified, Verification::Reference);
    assert_eq!(
        watch.cached,
        vec![0; 8],
        "pages of the file cached after each call"
    );

    let mut watch = Watch {
        file: &path,
        cached: Vec::new(),
        corrupt_at: Some(3),
        flipped: !content[(MIB + 5) as usize],
    };
    let out = workload::run(&plan.config, &AtomicBool::new(false), &mut watch, None);
    let err = out.error.map(|e| e.to_string()).unwrap_or_default();
    assert!(
        err.contains("the timed call at file offset 1048576"),
        "{err}"
    );
}
