//! Golden shape of the exports (column names and JSON keys are a contract
//! scripts depend on) and their content checked against the run itself.
use std::process::Command;

use dmaprof_e2e::{disk_scratch_dir, dmaprof_bin};
use profiler::export::results;

const CALL_COLUMNS: &str = "mode,direction,iteration,index,file_offset,bytes,start_ns,wall_ns,cpu_user_ns,cpu_sys_ns,voluntary_switches,involuntary_switches,tid,ioctl_calls,ioctl_ns,ioctl_errors,exporter_calls,exporter_ns,exporter_bytes,block_requests,block_bytes,block_device_ns,on_cpu_ns,off_cpu_ns,switches,exporter_errors,uring_requests,uring_ns,buffers,mechanism";
const SUMMARY_COLUMNS: &str = "mode,passes,calls,bytes,alloc_ms,transfer_ms,sync_ms,free_ms,total_ms,mib_per_s,lat_min_us,lat_p50_us,lat_p90_us,lat_p99_us,lat_p999_us,lat_max_us,cpu_user_ns_per_mib,cpu_sys_ns_per_mib,others_cpu_ns_per_mib,voluntary_switches,involuntary_switches,verified,probe_ns_per_call,probe_pct_of_call_time,buffers,cpu_p50_us,cpu_p90_us,cpu_p99_us,cpu_source";
const TOP_KEYS: &[&str] = &[
    "block_latency",
    "dmaprof_version",
    "error",
    "interrupted",
    "kernel_release",
    "lost_events",
    "modes",
    "options",
    "probe_costs",
    "probes",
    "schema",
    "skipped",
    "started_unix_s",
];

fn keys(v: &serde_json::Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

#[test]
fn csv_and_json_have_the_documented_shape_and_agree() {
    let dir = disk_scratch_dir();
    let (calls, summary, json) = (
        dir.path().join("calls.csv"),
        dir.path().join("summary.csv"),
        dir.path().join("r.json"),
    );
    dmaprof_e2e::succeeded(
        Command::new(dmaprof_bin())
            .args([
                "run",
                "--mode",
                "pread",
                "--mode",
                "pread-direct",
                "--size",
                "8M",
                "--chunk",
                "2M",
                "--iterations",
                "3",
            ])
            .arg("--dir")
            .arg(dir.path())
            .arg("--csv")
            .arg(&calls)
            .arg("--summary-csv")
            .arg(&summary)
            .arg("--json")
            .arg(&json),
    );

    let calls = std::fs::read_to_string(&calls).unwrap();
    let mut lines = calls.lines();
    assert_eq!(lines.next().unwrap(), CALL_COLUMNS);
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 2 * 3 * 4, "2 modes x 3 iterations x 4 calls");
    assert!(
        rows.iter()
            .all(|r| r.len() == CALL_COLUMNS.split(',').count() && r[5] == "2097152")
    );
    // pread and pread-direct both go through pread(2).
    assert!(rows.iter().all(|r| r.last() == Some(&"pread")), "{rows:?}");
    if unsafe { libc::geteuid() } == 0 {
        // As root the probes ran: direct reads put exactly their bytes on the block device.
        for r in rows.iter().filter(|r| r[0] == "pread-direct") {
            assert_eq!(r[20], "2097152", "block_bytes of a direct call: {r:?}");
        }
    }

    let summary = std::fs::read_to_string(&summary).unwrap();
    assert_eq!(summary.lines().next().unwrap(), SUMMARY_COLUMNS);
    assert_eq!(summary.lines().count(), 3);

    let text = std::fs::read_to_string(&json).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let want: Vec<String> = TOP_KEYS.iter().map(|s| s.to_string()).collect();
    assert_eq!(keys(&v), want);
    assert_eq!(
        keys(&v["modes"][0]),
        ["latency_histogram", "passes", "summary"]
    );
    // The typed reader (which refuses unknown fields) accepts it: the schema is checked.
    let doc = results::parse(&text).unwrap();
    assert_eq!(doc.options.iterations, 3);
    for m in &doc.modes {
        assert_eq!(m.passes.len(), 3);
        assert_eq!(m.summary.calls, 12);
        // Each pass's time line: a window per call here (4 calls), in time order.
        for p in &m.passes {
            assert_eq!(p.bandwidth.len(), 4, "{:?}", p.bandwidth);
            assert!(p.bandwidth.windows(2).all(|w| w[1][0] > w[0][0]));
            assert!(p.bandwidth.iter().all(|[_, v]| *v > 0.0));
        }
        assert_eq!(m.summary.bytes, 3 * (8 << 20));
        // The histogram is lossless: every call is in it, and its max is the
        // slowest call of the per-call CSV (to its 3 significant digits).
        let h = results::LatencyHistogram::decode(&m.latency_histogram).unwrap();
        assert_eq!(h.len(), 12);
        let slowest = rows
            .iter()
            .filter(|r| r[0] == m.summary.mode.name())
            .map(|r| r[7].parse::<u64>().unwrap())
            .max()
            .unwrap();
        assert!(
            (h.max_ns() as f64 - slowest as f64).abs() / slowest as f64 <= 0.001,
            "histogram max {} ns, slowest call {slowest} ns",
            h.max_ns()
        );
        // The per-call CSV rows of this mode sum to the JSON's bytes.
        let csv_bytes: u64 = rows
            .iter()
            .filter(|r| r[0] == m.summary.mode.name())
            .map(|r| r[5].parse::<u64>().unwrap())
            .sum();
        assert_eq!(csv_bytes, m.summary.bytes);
    }
}

#[test]
fn an_interrupted_run_leaves_complete_files() {
    let dir = disk_scratch_dir();
    let d = dir.path();
    assert!(
        Command::new(dmaprof_bin())
            .args([
                "run", "--mode", "pread", "--size", "64M", "--chunk", "1M", "--cache", "warm",
                "--dir"
            ])
            .arg(d)
            .output()
            .unwrap()
            .status
            .success()
    );
    let (calls, json) = (d.join("calls.csv"), d.join("r.json"));
    let mut child = Command::new(dmaprof_bin())
        .args([
            "run",
            "--mode",
            "pread",
            "--size",
            "64M",
            "--chunk",
            "4K",
            "--iterations",
            "1000",
            "--cache",
            "warm",
            "--dir",
        ])
        .arg(d)
        .arg("--csv")
        .arg(&calls)
        .arg("--json")
        .arg(&json)
        .env("DMAPROF_ANNOUNCE_PHASES", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // In the second pass: the first one's calls are in the CSV.
    let stderr = dmaprof_e2e::wait_for_phase(&mut child, "transfer pread 1");
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    let err = stderr.join().unwrap();
    assert_eq!(status.code(), Some(130), "{err}");
    let csv = std::fs::read_to_string(&calls).unwrap();
    assert!(csv.ends_with('\n'), "last row complete");
    let n = csv.lines().count() - 1;
    assert!(n > 0);
    let doc = results::parse(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert!(doc.interrupted);
    assert_eq!(
        doc.modes[0].summary.calls as usize, n,
        "JSON and CSV hold the same calls"
    );
    // No temp files left behind.
    assert!(
        std::fs::read_dir(d).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".tmp"))
    );
}
