//! `dmaprof doctor` run as a user would, checked against facts read
//! independently from the system (not against hard-coded answers).
use std::{path::Path, process::Command};

use dmaprof_e2e::{disk_scratch_dir, dmaprof_bin, require_bpf};
use serde_json::Value;

fn doctor_json(args: &[&str]) -> Value {
    let _serial = dmaprof_e2e::probe_lock();
    let out = Command::new(dmaprof_bin())
        .args(["doctor", "--json"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "doctor failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("doctor --json prints JSON")
}

fn target<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["probe_targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no probe target {name}"))
}

fn rung<'a>(t: &'a Value, method: &str) -> Option<&'a Value> {
    t["rungs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["method"] == method)
}

#[test]
fn report_matches_this_machine() {
    if !require_bpf("doctor as root") {
        return;
    }
    let dir = disk_scratch_dir();
    let report = doctor_json(&["--path", dir.path().to_str().unwrap()]);

    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert_eq!(report["kernel_release"], release.trim());
    assert_eq!(report["bpf"]["ok"], true);
    assert_eq!(
        report["btf"]["ok"],
        Path::new("/sys/kernel/btf/vmlinux").exists()
    );

    let mut heaps: Vec<String> = std::fs::read_dir("/dev/dma_heap")
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    heaps.sort();
    let reported: Vec<String> = serde_json::from_value(report["dma_buf"]["heaps"].clone()).unwrap();
    assert_eq!(reported, heaps);
    assert_eq!(
        report["dma_buf"]["udmabuf"],
        Path::new("/dev/udmabuf").exists()
    );
    if heaps.is_empty() {
        assert_ne!(
            report["dma_buf"]["rw_file"], "supported",
            "no heap, so RW_FILE cannot work"
        );
    }

    // The block layer's BTF-typed tracepoints work on this kernel (it has
    // BTF and tp_btf), and the classic ones exist on every kernel dmaprof
    // supports.
    let block = target(&report, "block layer");
    assert_eq!(block["best"], "tp_btf", "{block:#}");
    assert_eq!(
        rung(block, "tracepoint").unwrap()["works"],
        true,
        "{block:#}"
    );

    // The kprobe rung can only work where the kernel has a kprobe PMU.
    let ioctl = target(&report, "dma_buf_ioctl");
    let kprobe = rung(ioctl, "kprobe").unwrap();
    if !Path::new("/sys/bus/event_source/devices/kprobe").exists() {
        assert_eq!(kprobe["works"], false);
        assert!(
            kprobe["detail"]
                .as_str()
                .unwrap()
                .contains("CONFIG_KPROBES")
        );
    }
    // The best method is the first working rung in ladder order.
    let first_working = ["fentry", "kprobe", "tp_btf", "tracepoint"]
        .into_iter()
        .find(|m| rung(ioctl, m).is_some_and(|r| r["works"] == true));
    assert_eq!(ioctl["best"].as_str(), first_working);

    // pread64 has a ladder of its own: the BTF-typed raw syscall
    // tracepoints (x86_64 programs), then the syscalls: tracepoints.
    let pread = target(&report, "pread64 syscall");
    let first_working = ["tp_btf", "tracepoint"]
        .into_iter()
        .find(|m| rung(pread, m).is_some_and(|r| r["works"] == true));
    assert_eq!(pread["best"].as_str(), first_working, "{pread:#}");
    if cfg!(target_arch = "x86_64") && Path::new("/sys/kernel/btf/vmlinux").exists() {
        assert_eq!(pread["best"], "tp_btf", "{pread:#}");
    }

    let fs = &report["filesystem"]["info"];
    let meta = std::os::unix::fs::MetadataExt::dev(&std::fs::metadata(dir.path()).unwrap());
    assert_eq!(
        fs["device"],
        format!("{}:{}", libc::major(meta), libc::minor(meta))
    );
    assert_eq!(
        fs["o_direct"], true,
        "disk-backed scratch dir supports O_DIRECT: {fs:#}"
    );
}

#[test]
fn text_report_names_every_section() {
    let _serial = dmaprof_e2e::probe_lock();
    let out = Command::new(dmaprof_bin()).arg("doctor").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for section in [
        "kernel facilities",
        "probe targets",
        "dma-buf",
        "filesystem",
        "limitations",
    ] {
        assert!(text.contains(section), "missing {section}:\n{text}");
    }
}

#[test]
fn answers_without_privileges() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIP: already unprivileged; covered by the other tests");
        return;
    }
    // Drop to nobody with no capabilities: the report must still come, and say what is lost.
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(dmaprof_bin())
        .args(["doctor", "--json", "--path", "/"])
        .output()
        .expect("setpriv (util-linux)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["bpf"]["ok"], false);
    assert_eq!(report["privileges"]["cap_bpf"], false);
    let limits = report["limitations"].to_string();
    assert!(limits.contains("not root"), "{limits}");
}

#[test]
fn bad_path_is_one_clear_line_and_exit_2() {
    let out = Command::new(dmaprof_bin())
        .args(["doctor", "--path", "/nonexistent/dmaprof"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("dmaprof: ") && err.contains("/nonexistent/dmaprof"),
        "{err}"
    );
    assert!(!err.contains("panicked"));
}
