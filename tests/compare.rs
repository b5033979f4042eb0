//! `dmaprof compare` on synthetic runs with a known answer, and on inputs
//! it must refuse (exit 2, one line).
use std::{fmt::Write as _, path::Path, process::Command};

use dmaprof_e2e::dmaprof_bin;

/// A per-call CSV with `passes` passes of `calls` 1 MiB calls per mode,
/// each call taking `ns` * (1 + tiny deterministic noise).
fn synthetic(path: &Path, modes: &[(&str, f64)], passes: u32) {
    let mut s = String::from(
        "mode,direction,iteration,index,file_offset,bytes,start_ns,wall_ns,cpu_user_ns,cpu_sys_ns,voluntary_switches,involuntary_switches,tid\n",
    );
    for (mode, ns) in modes {
        for it in 0..passes {
            for i in 0..8u64 {
                // Noise of +-0.4%, different in every pass.
                let noise = 1.0 + (((it as u64 * 31 + i * 17) % 9) as f64 - 4.0) / 1000.0;
                let wall = (ns * noise) as u64;
                let _ = writeln!(
                    s,
                    "{mode},read,{it},{i},{},1048576,0,{wall},1000,{},1,0,1",
                    i << 20,
                    wall / 10
                );
            }
        }
    }
    std::fs::write(path, s).unwrap();
}

fn compare(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(dmaprof_bin())
        .arg("compare")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn row<'a>(text: &'a str, mode: &str, metric: &str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(&format!("{mode:<24} {metric}")))
        .unwrap_or_else(|| panic!("no {mode} {metric} row in\n{text}"))
}

#[test]
fn identical_runs_are_never_significant() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.csv");
    synthetic(&a, &[("pread", 1e6), ("rw-file-direct", 3e5)], 8);
    let (code, out, err) = compare(&[a.to_str().unwrap(), a.to_str().unwrap(), "--threshold", "1"]);
    assert_eq!(code, 0, "{err}");
    for mode in ["pread", "rw-file-direct"] {
        for metric in ["MiB/s", "p50 us", "p99 us", "cpu ns/MiB"] {
            let r = row(&out, mode, metric);
            assert!(r.contains(" ~ "), "{r}");
        }
    }
}

#[test]
fn a_ten_percent_slowdown_is_significant_and_fails_the_gate() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.csv"), dir.path().join("b.csv"));
    synthetic(&a, &[("pread", 1e6), ("rw-file-direct", 3e5)], 8);
    // rw-file-direct calls take 10% longer: throughput about -9.1%.
    synthetic(&b, &[("pread", 1e6), ("rw-file-direct", 3.3e5)], 8);
    let (code, out, _) = compare(&[a.to_str().unwrap(), b.to_str().unwrap(), "--threshold", "5"]);
    assert_eq!(code, 1, "{out}");
    let r = row(&out, "rw-file-direct", "MiB/s");
    assert!(r.contains("-9.1%") && r.contains("REGRESSION"), "{r}");
    assert!(row(&out, "pread", "MiB/s").contains(" ~ "));
    // Beyond the threshold only: a 12% gate lets -9.1% throughput and +10% latency pass.
    let (code, _, _) = compare(&[
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--threshold",
        "12",
    ]);
    assert_eq!(code, 0);
    // Without a threshold it is reported, not enforced.
    let (code, out, _) = compare(&[a.to_str().unwrap(), b.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(row(&out, "rw-file-direct", "MiB/s").contains("-9.1%"));
    // The other way round it is an improvement: exit 0 even with a gate.
    let (code, out, _) = compare(&[b.to_str().unwrap(), a.to_str().unwrap(), "--threshold", "5"]);
    assert_eq!(code, 0, "{out}");
    assert!(row(&out, "rw-file-direct", "MiB/s").contains("+10.0%"));
}

#[test]
fn speedup_against_pread_within_a_run() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.csv");
    synthetic(
        &a,
        &[
            ("pread", 1e6),
            ("pread-direct", 5e5),
            ("rw-file-direct", 2.5e5),
        ],
        6,
    );
    let (code, out, err) = compare(&[a.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let line = out
        .lines()
        .find(|l| l.contains("rw-file-direct") && l.contains("vs pread "))
        .unwrap();
    assert!(line.contains("x4.00"), "{line}");
    let line = out
        .lines()
        .find(|l| l.contains("rw-file-direct") && l.contains("vs pread-direct"))
        .unwrap();
    assert!(line.contains("x2.00"), "{line}");
}

#[test]
fn every_format_carries_the_same_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.csv"), dir.path().join("b.csv"));
    synthetic(&a, &[("pread", 1e6)], 8);
    synthetic(&b, &[("pread", 1.1e6)], 8);
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
    let (_, json, _) = compare(&[a, b, "--format", "json", "--threshold", "5"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let tput = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["metric"] == "MiB/s")
        .unwrap();
    assert_eq!(tput["regression"], true);
    assert!(tput["p_value"].as_f64().unwrap() < 0.05);
    let (_, csv, _) = compare(&[a, b, "--format", "csv", "--threshold", "5"]);
    assert!(csv.starts_with("mode,metric,baseline_median"));
    assert!(
        csv.lines()
            .any(|l| l.starts_with("pread,MiB/s,") && l.ends_with(",true,true")),
        "{csv}"
    );
    let (_, md, _) = compare(&[a, b, "--format", "markdown", "--threshold", "5"]);
    assert!(
        md.contains("| pread | MiB/s |") && md.contains("**regression**"),
        "{md}"
    );
}

#[test]
fn unusable_inputs_exit_2_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.csv");
    synthetic(&good, &[("pread", 1e6)], 3);
    let g = good.to_str().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let other = dir.path().join("other.csv");
    synthetic(&other, &[("rw-file", 1e6)], 3);
    let cases = [
        (write("empty.csv", ""), "empty file"),
        (
            write("nocol.csv", "mode,iteration,bytes\npread,0,1\n"),
            "missing column `wall_ns`",
        ),
        (
            write(
                "nan.csv",
                "mode,iteration,bytes,wall_ns,cpu_user_ns,cpu_sys_ns\npread,0,1048576,NaN,1,1\n",
            ),
            "not a finite number",
        ),
        (
            write("bad.json", "{\"schema\": 3}"),
            "not a dmaprof results file",
        ),
        (
            write(
                "schema.json",
                &std::fs::read_to_string(good_json(dir.path()))
                    .unwrap()
                    .replace("dmaprof.results/3", "x/9"),
            ),
            "schema `x/9`",
        ),
        (other.to_str().unwrap().to_string(), "no mode in common"),
        ("/nonexistent/r.json".to_string(), "No such file"),
    ];
    for (path, needle) in cases {
        let (code, _, err) = compare(&[g, &path]);
        assert_eq!(code, 2, "{path}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with("dmaprof: ") && err.contains(needle),
            "{path}: expected `{needle}` in {err}"
        );
    }
    // Schema 1 (no profile) is still read.
    let v1 = write(
        "v1.json",
        &std::fs::read_to_string(good_json(dir.path()))
            .unwrap()
            .replace("dmaprof.results/3", "dmaprof.results/1"),
    );
    let (code, _, err) = compare(&[g, &v1]);
    assert_eq!(code, 0, "a schema 1 file: {err}");
    let (code, _, err) = compare(&[g, g, "--threshold", "-3"]);
    assert_eq!(code, 2, "{err}");
}

/// A real results JSON from a short run on this host.
fn good_json(dir: &Path) -> std::path::PathBuf {
    let out = dir.join("real.json");
    let status = Command::new(dmaprof_bin())
        .args([
            "run", "--mode", "pread", "--size", "2M", "--chunk", "1M", "--dir",
        ])
        .arg(dir)
        .arg("--json")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    out
}

/// One run read as its per-call CSV and as its results JSON: the same
/// samples, so every metric is unchanged and not significant.
#[test]
fn a_runs_csv_and_json_compare_as_identical() {
    let dir = tempfile::tempdir().unwrap();
    let (csv, json) = (dir.path().join("run.csv"), dir.path().join("run.json"));
    dmaprof_e2e::succeeded(
        Command::new(dmaprof_bin())
            .args(["run", "--mode", "pread", "--mode", "pread-direct"])
            .args([
                "--size",
                "4M",
                "--chunk",
                "256K",
                "--iterations",
                "6",
                "--no-probes",
            ])
            .arg("--dir")
            .arg(dir.path())
            .arg("--csv")
            .arg(&csv)
            .arg("--json")
            .arg(&json),
    );
    let (c, j) = (csv.to_str().unwrap(), json.to_str().unwrap());
    let (code, text, err) = compare(&[c, j, "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2 * 4, "two modes, four metrics");
    for r in rows {
        assert_eq!(r["delta_pct"].as_f64(), Some(0.0), "{r}");
        assert_eq!(r["significant"], false, "{r}");
        assert_eq!(r["baseline"]["median"], r["candidate"]["median"], "{r}");
    }
    let (_, text, _) = compare(&[c, j]);
    let metric_lines: Vec<&str> = text.lines().filter(|l| l.contains(" n=")).collect();
    assert_eq!(metric_lines.len(), 2 * 4, "{text}");
    assert!(
        metric_lines
            .iter()
            .all(|l| l.contains(" ~ ") && l.contains("p=1.000")),
        "{text}"
    );
}

/// compare reads whole files: a FIFO (which would block) and /dev/zero
/// (which never ends) are refused at once.
#[test]
fn special_files_are_refused_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    dmaprof_e2e::mkfifo(&fifo);
    for path in [fifo.to_str().unwrap(), "/dev/zero"] {
        let mut child = Command::new(dmaprof_bin())
            .args(["compare", path])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("compare {path} did not return");
            }
            std::thread::yield_now();
        };
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
        assert_eq!(status.code(), Some(2), "{path}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("not a regular file"), "{err}");
    }
}
