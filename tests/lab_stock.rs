//! dmaprof on Debian's stock 6.12 kernel (no RW_FILE): `#[ignore]`d on the
//! host and run inside the stock lab guest by `cargo xtask lab test` with
//! `--ignored`. The lab disk at /mnt holds dmaprof test files.
use profiler::dma_buf::{self, DMA_BUF_IOCTL_SYNC, RW_FLAGS_READ, RwFileArgs};

/// `dmaprof trace --pid` of a process that maps dma-bufs and brackets its
/// CPU access with DMA_BUF_IOCTL_SYNC: one CSV row per SYNC, each returning
/// 0, from that process only. The traced process is `dmaprof run --mode
/// dmabuf-read` (mmap + read() inside SYNC START/END), held at a `read`
/// until the tracer says its probes are attached.
#[test]
#[ignore = "lab-stock: needs Debian's stock kernel; run by `cargo xtask lab test`"]
fn trace_sees_every_dma_buf_sync_of_a_process() {
    let (text, log, pid) = dmaprof_e2e::trace_a_run(
        "--mode dmabuf-read --file /mnt/data-4m.bin --chunk 1M --iterations 2 --no-verify",
        "/tmp/sync-trace.csv",
    );
    let pid = pid.to_string();
    let sync = format!("{DMA_BUF_IOCTL_SYNC:#x}");
    let rows: Vec<Vec<&str>> = text
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    let syncs: Vec<&Vec<&str>> = rows
        .iter()
        .filter(|r| r[3] == "ioctl" && r[4] == sync)
        .collect();
    // 2 passes of 4 calls, each one SYNC START and one SYNC END.
    assert!(
        syncs.len() >= 16,
        "{} SYNC rows in:\n{text}\n{log}",
        syncs.len()
    );
    for r in &syncs {
        assert_eq!(r[1], pid, "a SYNC of another process: {r:?}");
        assert_eq!(r[6], "0", "a failed SYNC: {r:?}");
    }
    println!(
        "lab-stock: {} SYNC ioctls traced ({} rows)",
        syncs.len(),
        rows.len()
    );
}

/// The stock kernel has no RW_FILE: the ioctl is unknown to the dma-buf
/// core (ENOTTY), which is what `dmaprof doctor` and `run` rely on.
#[test]
#[ignore = "lab-stock: needs Debian's stock kernel; run by `cargo xtask lab test`"]
fn rw_file_is_unknown_to_the_stock_kernel() {
    let heap = std::fs::File::open(dma_buf::heap_path("system")).expect("the system heap");
    let buf = dma_buf::heap_alloc(&heap, 4096).unwrap();
    let file = std::fs::File::open("/mnt/data-4m.bin").unwrap();
    let args = RwFileArgs {
        flags: RW_FLAGS_READ,
        fd: std::os::fd::AsRawFd::as_raw_fd(&file),
        buf_len: 4096,
        ..Default::default()
    };
    let e = dma_buf::rw_file(&buf, &args).expect_err("RW_FILE on a stock kernel");
    assert_eq!(e.raw_os_error(), Some(libc::ENOTTY), "{e}");
}
