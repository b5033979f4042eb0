//! Helpers shared by dmaprof's end-to-end scenarios.
use std::{path::PathBuf, process::Command, sync::OnceLock};

/// True when running under CI, where a missing capability is a failure, not a skip.
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Whether this process may load and attach tracing programs. Without it a
/// test skips loudly; under CI it fails instead (CI runs as root with BPF).
pub fn require_bpf(test: &str) -> bool {
    let euid = unsafe { libc::geteuid() };
    if euid == 0 {
        return true;
    }
    assert!(
        !under_ci(),
        "{test}: needs root for BPF, and CI=true forbids skipping"
    );
    eprintln!("SKIP {test}: needs root (euid {euid}) to load eBPF programs");
    false
}

/// The `dmaprof` binary of the same profile as this test, built on demand.
pub fn dmaprof_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("current_exe");
        // target/<profile>/deps/<test> -> target/<profile>/dmaprof
        let profile_dir = exe
            .parent()
            .and_then(|d| d.parent())
            .expect("target dir")
            .to_path_buf();
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet", "-p", "profiler", "--bin", "dmaprof"]);
        if release {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("running cargo build for dmaprof");
        assert!(status.success(), "building dmaprof failed");
        let bin = profile_dir.join("dmaprof");
        assert!(bin.exists(), "{} missing after build", bin.display());
        bin
    })
    .clone()
}

/// A scratch directory on a disk-backed filesystem (O_DIRECT and the block
/// layer need a real block device; /tmp may be tmpfs).
pub fn disk_scratch_dir() -> tempfile::TempDir {
    let base = std::env::var_os("DMAPROF_TEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/var/tmp".into());
    tempfile::Builder::new()
        .prefix("dmaprof-test-")
        .tempdir_in(base)
        .expect("scratch dir")
}

/// The calling thread's kernel thread id.
pub fn gettid() -> u32 {
    unsafe { libc::gettid() as u32 }
}

/// Serializes the tests of one binary that attach probes: they check what
/// the kernel has loaded, which parallel tests would disturb.
pub fn probe_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}
