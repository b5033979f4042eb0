//! `cargo xtask lab test`: the lab suite. Every check runs inside the
//! patched kernel; a kernel warning on the console fails the suite too.
use std::{path::PathBuf, process::Command};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

use super::{
    kernel, stock,
    vm::{self, GuestFiles},
};
use crate::cmd::{self, Phases};

/// Guest test binaries: integration tests of the `dmaprof-e2e` crate marked
/// `#[ignore = "lab: ..."]`, run in the patched guest with `--ignored`.
const PATCHED_TESTS: &[&str] = &["lab_rw_file", "signals"];
/// The same for the stock kernel (`#[ignore = "lab-stock: ..."]`).
const STOCK_TESTS: &[&str] = &["lab_stock"];
/// Every guest test binary (each guest gets them all; `lab run` too).
pub const LAB_TESTS: &[&str] = &["lab_rw_file", "signals", "lab_stock"];

/// Builds the release `dmaprof` (and the named lab test binaries) for the guest.
pub fn guest_files(lab_tests: &[&str]) -> Result<GuestFiles> {
    let mut executables = vec![("/usr/bin/dmaprof".to_string(), cmd::build_dmaprof()?)];
    for test in lab_tests {
        executables.push((format!("/lab/{test}"), test_executable(test)?));
    }
    Ok(GuestFiles { executables })
}

fn test_executable(name: &str) -> Result<PathBuf> {
    let out = cmd::output(
        Command::new("cargo")
            .args([
                "test",
                "--release",
                "--quiet",
                "-p",
                "dmaprof-e2e",
                "--test",
                name,
                "--no-run",
            ])
            .args(["--message-format=json"])
            .current_dir(cmd::workspace_root()),
    )?;
    for line in out.lines() {
        let Ok(msg) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if msg["reason"] == "compiler-artifact"
            && msg["target"]["name"] == name
            && let Some(exe) = msg["executable"].as_str()
        {
            return Ok(PathBuf::from(exe));
        }
    }
    bail!("cargo did not report an executable for test {name}")
}

pub fn test_suite(phases: &mut Phases, variant: kernel::Variant) -> Result<()> {
    let kernel = phases.run("lab: kernel (build or cache)", || {
        kernel::ensure_variant(variant)
    })?;
    let files = phases.run("lab: guest binaries", || guest_files(LAB_TESTS))?;

    phases.run("lab: dmaprof doctor in the guest", || {
        check_doctor(&guest_doctor(&kernel, &files)?)
    })?;

    for test in PATCHED_TESTS {
        phases.run(&format!("lab: {test} in the guest"), || {
            guest_tests(&kernel, &files, test)
        })?;
    }
    phases.run("lab: dmaprof run, read, every mode", || {
        let out = vm::run(
            &kernel,
            &files,
            "dmaprof run --file /mnt/data-256m.bin --mode all",
            1200,
        )?;
        eprint!("{}", out.output);
        check_clean(&out)?;
        ensure!(out.status == 0, "dmaprof run (read) exited {}", out.status);
        check_table(&out.output, READ_MODES)
    })?;
    // 128 MiB: every write mode keeps its file, 11 of them on the 3 GiB disk.
    phases.run("lab: dmaprof run, write, every mode", || {
        let cmd = "mkdir -p /mnt/out && dmaprof run --direction write --dir /mnt/out --size 128M --mode all";
        let out = vm::run(&kernel, &files, cmd, 1200)?;
        eprint!("{}", out.output);
        check_clean(&out)?;
        ensure!(out.status == 0, "dmaprof run (write) exited {}", out.status);
        check_table(&out.output, WRITE_MODES)
    })?;
    phases.run("lab: probes, every rung forced over RW_FILE", || {
        let mut cmd = String::new();
        for rung in RUNGS {
            cmd.push_str(&format!(
                "dmaprof run --file /mnt/data-256m.bin --mode rw-file-direct --mode rw-file --attach {rung} \
                 --csv /tmp/{rung}.csv > /tmp/{rung}.out 2>&1 || {{ echo FAILED-{rung}; cat /tmp/{rung}.out; }}; \
                 echo '@@CSV {rung}'; cat /tmp/{rung}.csv; "
            ));
        }
        let out = vm::run(&kernel, &files, &cmd, 1200)?;
        check_clean(&out)?;
        ensure!(!out.output.contains("FAILED-"), "a forced rung failed:\n{}", out.output);
        check_rungs(&out.output)
    })?;
    phases.run("lab: dmaprof bench, the seed's ordering", || {
        let out = vm::run(
            &kernel,
            &files,
            "dmaprof bench --file /mnt/data-256m.bin --size 256M --iterations 2",
            1200,
        )?;
        eprint!("{}", out.output);
        check_clean(&out)?;
        ensure!(out.status == 0, "dmaprof bench exited {}", out.status);
        check_seed_ordering(&out.output)?;
        check_device_limit(&out.output)
    })?;
    phases.run(
        "lab: dmaprof bench --table all --profile (kept for the report)",
        || {
            let out = vm::run(
                &kernel,
                &files,
                &bench_all_printing_results("--profile --profile-hz 199"),
                1200,
            )?;
            let (shown, results) = guest_results(&out.output)?;
            eprint!("{shown}");
            check_clean(&out)?;
            ensure!(out.status == 0, "dmaprof bench exited {}", out.status);
            check_all_table(shown)?;
            keep_results("bench-all.json", &results).map(drop)
        },
    )?;
    for direction in ["read", "write"] {
        phases.run(&format!("lab: dmaprof bench --table v4 --direction {direction}, v4's ordering"), || {
            // Reads from the lab's data file; writes make new files in --dir.
            let source = if direction == "read" { "--file /mnt/data-256m.bin" } else { "" };
            let cmd = format!(
                "mkdir -p /mnt/out && dmaprof bench --table v4 --direction {direction} {source} \
                 --dir /mnt/out --size 64M --chunk 8M --iterations 1"
            );
            let out = vm::run(&kernel, &files, &cmd, 1200)?;
            eprint!("{}", out.output);
            check_clean(&out)?;
            ensure!(out.status == 0, "dmaprof bench exited {}", out.status);
            check_device_limit(&out.output)?;
            check_v4_ordering(&out.output, direction)
        })?;
    }
    phases.run("lab: dmaprof run, lab-only bad inputs", || {
        let cmd = "dmaprof run --mode rw-file-direct --heap nope --file /mnt/data-4m.bin; echo rc=$?; \
                   dmaprof run --mode rw-file-direct --chunk 6000 --file /mnt/data-4m.bin; echo rc=$?";
        let out = vm::run(&kernel, &files, cmd, 300)?;
        check_clean(&out)?;
        let lines: Vec<&str> = out.output.lines().collect();
        ensure!(
            lines.iter().any(|l| l.contains("no dma-heap /dev/dma_heap/nope")),
            "missing-heap error not reported:\n{}",
            out.output
        );
        ensure!(lines.iter().any(|l| l.contains("the direct I/O alignment of this file")), "alignment error:\n{}", out.output);
        ensure!(lines.iter().filter(|l| **l == "rc=2").count() == 2, "exit codes:\n{}", out.output);
        Ok(())
    })?;
    stock_suite(phases, &files)
}

/// `bench --table all` on the lab's data file with these extra arguments,
/// its results JSON printed after a marker line (the last echo: the
/// capture keeps whole lines only).
fn bench_all_printing_results(extra: &str) -> String {
    format!(
        "mkdir -p /mnt/out && dmaprof bench --table all --file /mnt/data-256m.bin --size 64M \
         --chunk 8M --iterations 1 {extra} --json /mnt/out/all.json \
         && echo @@results@@ && cat /mnt/out/all.json && echo"
    )
}

/// The guest's output before the results marker, and the results after it.
fn guest_results(output: &str) -> Result<(&str, Value)> {
    let (shown, results) = output
        .split_once("@@results@@\n")
        .with_context(|| format!("the guest printed no results:\n{output}"))?;
    let doc = serde_json::Deserializer::from_str(results)
        .into_iter::<Value>()
        .next()
        .context("the guest printed no results JSON")?
        .context("the guest's results JSON")?;
    Ok((shown, doc))
}

/// A lab run's results, kept in the cache (never the repo) for the report.
fn keep_results(name: &str, doc: &Value) -> Result<PathBuf> {
    let dir = cmd::cache_dir().join("lab/results");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_string_pretty(doc)?)?;
    Ok(path)
}

/// The host's `dmaprof report` of the patched kernel's bench against the
/// stock kernel's, rendered in headless Chromium by the report test that
/// waits for them.
fn lab_report_in_chromium(results: &std::path::Path, baseline: &std::path::Path) -> Result<()> {
    let out = Command::new("cargo")
        .args([
            "test",
            "--release",
            "-p",
            "dmaprof-e2e",
            "--test",
            "report",
            "--",
        ])
        .args([
            "--ignored",
            "--exact",
            "a_lab_benchs_report_renders_in_chromium",
        ])
        .env("DMAPROF_LAB_RESULTS", results)
        .env("DMAPROF_LAB_BASELINE", baseline)
        .current_dir(cmd::workspace_root())
        .output()
        .context("cargo test --test report")?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success() && tests_passed(&text) == Some(1),
        "the lab bench's report in Chromium:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "lab: the report of {} against {} renders in Chromium",
        results.display(),
        baseline.display()
    );
    Ok(())
}

/// `dmaprof doctor --json` in `kernel`'s guest: its report.
fn guest_doctor(kernel: &kernel::Kernel, files: &GuestFiles) -> Result<Value> {
    let out = vm::run(kernel, files, "dmaprof doctor --json --path /mnt", 300)?;
    check_clean(&out)?;
    eprintln!("lab: {}: boot to command {:.1}s", kernel.key, out.boot_secs);
    ensure!(
        out.status == 0,
        "doctor exited {}:\n{}",
        out.status,
        out.output
    );
    let start = out.output.find('{').context("no JSON in doctor output")?;
    serde_json::from_str(&out.output[start..])
        .with_context(|| format!("doctor output is not JSON:\n{}", out.output))
}

/// A guest test binary, all its lab tests, in `kernel`'s guest.
fn guest_tests(kernel: &kernel::Kernel, files: &GuestFiles, test: &str) -> Result<()> {
    let out = vm::run(
        kernel,
        files,
        &format!(
            "DMAPROF_BIN=/usr/bin/dmaprof DMAPROF_TEST_DIR=/mnt \
             /lab/{test} --ignored --test-threads=1 --nocapture"
        ),
        900,
    )?;
    eprint!("{}", out.output);
    check_clean(&out)?;
    ensure!(
        out.status == 0,
        "{test} failed in the guest (exit {})",
        out.status
    );
    let passed =
        tests_passed(&out.output).with_context(|| format!("{test}: no `test result: ok` line"))?;
    ensure!(passed > 0, "{test}: the guest ran 0 tests");
    Ok(())
}

/// Debian's stock 6.12 kernel, unpatched: what users run. doctor says
/// RW_FILE is absent (ENOTTY) and what else is there; run does every other
/// mode, both directions, and skips the RW_FILE ones with that reason;
/// trace follows a process's dma-buf SYNC ioctls.
fn stock_suite(phases: &mut Phases, files: &GuestFiles) -> Result<()> {
    let kernel = phases.run("lab stock: kernel (download or cache)", stock::ensure)?;
    phases.run("lab stock: dmaprof doctor in the guest", || {
        check_stock_doctor(&guest_doctor(&kernel, files)?)
    })?;
    phases.run("lab stock: dmaprof run, both directions, every mode", || {
        let cmd = "dmaprof run --file /mnt/data-256m.bin --mode all; echo \"@@rc=$?\"; \
                   mkdir -p /mnt/out && dmaprof run --direction write --dir /mnt/out --size 64M --mode all; echo \"@@rc=$?\"";
        let out = vm::run(&kernel, files, cmd, 1200)?;
        eprint!("{}", out.output);
        check_clean(&out)?;
        ensure!(
            out.output.lines().filter(|l| *l == "@@rc=0").count() == 2,
            "dmaprof run did not exit 0 in both directions"
        );
        check_stock_run(&out.output)
    })?;
    phases.run(
        "lab stock: dmaprof bench --table all; the patched kernel's report against it, in Chromium",
        || {
            let out = vm::run(&kernel, files, &bench_all_printing_results(""), 1200)?;
            let (shown, results) = guest_results(&out.output)?;
            eprint!("{shown}");
            check_clean(&out)?;
            ensure!(out.status == 0, "dmaprof bench exited {}", out.status);
            let baseline = keep_results("bench-all-stock.json", &results)?;
            let patched = cmd::cache_dir().join("lab/results/bench-all.json");
            lab_report_in_chromium(&patched, &baseline)
        },
    )?;
    for test in STOCK_TESTS {
        phases.run(&format!("lab stock: {test} in the guest"), || {
            guest_tests(&kernel, files, test)
        })?;
    }
    Ok(())
}

/// Every mode but the patches' runs and verifies; RW_FILE's and
/// copy_file_range's are skipped, in both directions, with the kernel's
/// answer (ENOTTY; EINVAL for a dma-buf in copy_file_range).
fn check_stock_run(output: &str) -> Result<()> {
    let patch_only = |m: &&str| PATCH_ONLY.iter().any(|(p, _)| p == m);
    let read: Vec<&str> = READ_MODES
        .iter()
        .copied()
        .filter(|m| !patch_only(m))
        .collect();
    let write: Vec<&str> = WRITE_MODES
        .iter()
        .copied()
        .filter(|m| !patch_only(m))
        .collect();
    let (reads, writes) = output
        .split_once("@@rc=")
        .context("no end of the read run")?;
    for (text, modes) in [(reads, read), (writes, write)] {
        for (mode, why) in PATCH_ONLY {
            let skip = format!("dmaprof: skipping {mode}: {why}");
            ensure!(text.contains(&skip), "`{skip}` missing in:\n{text}");
        }
        let other_skips: Vec<&str> = text
            .lines()
            .filter(|l| {
                l.starts_with("dmaprof: skipping")
                    && !PATCH_ONLY
                        .iter()
                        .any(|(m, why)| l.starts_with(&format!("dmaprof: skipping {m}: {why}")))
            })
            .collect();
        ensure!(
            other_skips.is_empty(),
            "skipped on the stock kernel: {other_skips:?}"
        );
        check_rows(text, &modes)?;
    }
    Ok(())
}

/// What the stock kernel has and lacks, as doctor must report it.
fn check_stock_doctor(r: &Value) -> Result<()> {
    let d = &r["dma_buf"];
    ensure!(
        d["heaps"].to_string().contains("\"system\""),
        "no system heap: {d}"
    );
    ensure!(d["udmabuf"] == true, "no udmabuf: {d}");
    ensure!(d["rw_file"] == "not-supported", "RW_FILE: {d}");
    for key in ["copy_file_range_heap", "copy_file_range_udmabuf"] {
        ensure!(
            r[key]["ok"] == false
                && r[key]["detail"]
                    .as_str()
                    .is_some_and(|s| s.contains("EINVAL") || s.contains("EXDEV")),
            "{key} on a stock kernel: {}",
            r[key]
        );
    }
    ensure!(
        d["rw_file_detail"]
            .as_str()
            .is_some_and(|s| s.contains("ENOTTY")),
        "RW_FILE detail: {d}"
    );
    ensure!(
        d["rw_file_in_btf"] == false,
        "dma_buf_ops.rw_file in a stock kernel's BTF: {d}"
    );
    ensure!(
        d["read_only_refused"].is_null(),
        "read-only probe without RW_FILE: {d}"
    );
    let ioctl = target(r, "dma_buf_ioctl")?;
    ensure!(
        ioctl["best"] == "fentry" || ioctl["best"] == "kprobe",
        "dma_buf_ioctl on a kernel with BTF and kprobes: {ioctl:#}"
    );
    ensure!(
        r["filesystem"]["info"]["o_direct"] == true,
        "O_DIRECT on /mnt: {}",
        r["filesystem"]
    );
    Ok(())
}

/// The modes of each direction (the CSV/JSON contract's names): in the lab
/// every one of them must run, and verify.
const READ_MODES: &[&str] = &[
    "pread",
    "pread-direct",
    "dmabuf-read",
    "rw-file",
    "rw-file-direct",
    "udmabuf-read",
    "udmabuf-direct-read",
    "udmabuf-sendfile",
    "udmabuf-direct-sendfile",
    "uring-direct",
    "udmabuf-uring-direct",
    "cfr",
    "cfr-direct",
    "udmabuf-cfr",
    "udmabuf-cfr-direct",
];
const WRITE_MODES: &[&str] = &[
    "pwrite",
    "pwrite-direct",
    "dmabuf-write",
    "rw-file",
    "rw-file-direct",
    "uring-direct",
    "udmabuf-uring-direct",
    "cfr",
    "cfr-direct",
    "udmabuf-cfr",
    "udmabuf-cfr-direct",
];
/// The modes a stock kernel cannot run, and the start of the reason `run`
/// gives for each: v2's ioctl and v4's copy_file_range with a dma-buf.
const PATCH_ONLY: &[(&str, &str)] = &[
    (
        "rw-file",
        "kernel does not support DMA_BUF_IOCTL_RW_FILE (ENOTTY)",
    ),
    (
        "rw-file-direct",
        "kernel does not support DMA_BUF_IOCTL_RW_FILE (ENOTTY)",
    ),
    ("cfr", "kernel does not copy_file_range into a dma-buf (v4)"),
    (
        "cfr-direct",
        "kernel does not copy_file_range into a dma-buf (v4)",
    ),
    (
        "udmabuf-cfr",
        "kernel does not copy_file_range into a dma-buf (v4)",
    ),
    (
        "udmabuf-cfr-direct",
        "kernel does not copy_file_range into a dma-buf (v4)",
    ),
];

/// How many tests libtest says passed (`test result: ok. N passed; ...`).
fn tests_passed(output: &str) -> Option<u64> {
    output
        .lines()
        .filter_map(|l| l.trim().strip_prefix("test result: ok. "))
        .filter_map(|rest| rest.split_once(" passed")?.0.parse().ok())
        .reduce(|a, b| a + b)
}

fn check_table(output: &str, modes: &[&str]) -> Result<()> {
    ensure!(
        !output.contains("skipping"),
        "a mode was skipped in the lab:\n{output}"
    );
    check_rows(output, modes)
}

/// A verified row of the run's table for each of `modes`.
fn check_rows(output: &str, modes: &[&str]) -> Result<()> {
    for mode in modes {
        let row = output
            .lines()
            // The table row (progress lines are indented; the kernel table follows it).
            .find(|l| !l.starts_with(' ') && l.split_whitespace().next() == Some(mode))
            .with_context(|| format!("no row for {mode} in:\n{output}"))?;
        ensure!(
            row.trim_end().ends_with("pattern"),
            "{mode} not verified against the pattern: {row}"
        );
    }
    Ok(())
}

/// The bench's device limit was measured, and each row has its share.
fn check_device_limit(output: &str) -> Result<()> {
    let line = output
        .lines()
        .find(|l| l.starts_with("device limit: "))
        .context("no device limit line")?;
    ensure!(line.contains(" MiB/s (uring-direct"), "{line}");
    Ok(())
}

/// `--table all`: every read mode of the lab kernel in one table, each
/// with its mechanism and a share of the device's limit.
fn check_all_table(output: &str) -> Result<()> {
    check_device_limit(output)?;
    let table: Vec<&str> = output
        .lines()
        .skip_while(|l| !(l.starts_with("mode ") && l.contains("mechanism")))
        .skip(1)
        .take_while(|l| !l.trim().is_empty() && !l.starts_with("device limit"))
        .collect();
    for mode in READ_MODES {
        let row = table
            .iter()
            .find(|l| l.split_whitespace().next() == Some(*mode))
            .with_context(|| format!("no --table all row for {mode}:\n{output}"))?;
        let share = row.split_whitespace().last().unwrap_or_default();
        ensure!(share.parse::<f64>().is_ok(), "no share of the limit: {row}");
    }
    let mechanism = |mode: &str| {
        table
            .iter()
            .find(|l| l.split_whitespace().next() == Some(mode))
            .and_then(|l| l.split_whitespace().nth(1))
    };
    ensure!(
        mechanism("rw-file-direct") == Some("rw_file-ioctl"),
        "{output}"
    );
    ensure!(
        mechanism("udmabuf-uring-direct") == Some("io_uring"),
        "{output}"
    );
    ensure!(
        mechanism("cfr-direct") == Some("copy_file_range"),
        "{output}"
    );
    eprintln!("lab: --table all has every read mode with its share of the device limit");
    Ok(())
}

/// The seed's qualitative result: RW_FILE direct reads beat the mmap +
/// buffered read path and every udmabuf path.
fn check_seed_ordering(output: &str) -> Result<()> {
    // Rows end with the mode name; MiB/s is the fifth number from the right... read by header.
    let header = output
        .lines()
        .find(|l| l.starts_with("path "))
        .context("no seed table")?;
    ensure!(header.contains("MiB/s"), "{header}");
    // Numbers after the path name: alloc, read, total, MiB/s, cpu, ratio.
    let mibs = |mode: &str| fourth_number(output, "path ", mode);
    let direct = mibs("rw-file-direct")?;
    for other in [
        "dmabuf-read",
        "udmabuf-read",
        "udmabuf-direct-read",
        "udmabuf-sendfile",
        "udmabuf-direct-sendfile",
    ] {
        let m = mibs(other)?;
        ensure!(
            direct > m,
            "rw-file-direct ({direct:.0} MiB/s) is not faster than {other} ({m:.0} MiB/s)"
        );
    }
    eprintln!("lab: rw-file-direct {direct:.0} MiB/s beats dmabuf-read and every udmabuf mode");
    Ok(())
}

/// v4's qualitative result, in each direction: copy_file_range with direct
/// I/O into a heap dma-buf beats the buffered dma-buf path and (reads) the
/// udmabuf + memfd direct read; into a udmabuf it beats that read too.
fn check_v4_ordering(output: &str, direction: &str) -> Result<()> {
    // Numbers after the path name: create, close, I/O, MiB/s, cpu, ratio, share.
    let mibs = |mode: &str| fourth_number(output, "path (", mode);
    let faster = |a: &str, b: &str| -> Result<()> {
        let (x, y) = (mibs(a)?, mibs(b)?);
        ensure!(
            x > y,
            "{direction}: {a} ({x:.0} MiB/s) is not faster than {b} ({y:.0} MiB/s)"
        );
        eprintln!("lab: v4 {direction}: {a} {x:.0} MiB/s > {b} {y:.0} MiB/s");
        Ok(())
    };
    match direction {
        "read" => {
            faster("cfr-direct", "dmabuf-read")?;
            faster("cfr-direct", "udmabuf-direct-read")?;
            faster("udmabuf-cfr-direct", "udmabuf-direct-read")?;
        }
        _ => faster("cfr-direct", "dmabuf-write")?,
    }
    for mode in ["cfr", "udmabuf-cfr", "udmabuf-cfr-direct", "uring-direct"] {
        mibs(mode)?;
    }
    Ok(())
}

/// The fourth number of `mode`'s row (rows end with the mode's name) of
/// the bench table whose header line starts with `header`: its MiB/s in
/// the seed's and v4's tables.
fn fourth_number(output: &str, header: &str, mode: &str) -> Result<f64> {
    let row = output
        .lines()
        .skip_while(|l| !l.starts_with(header))
        .skip(1)
        .take_while(|l| !l.trim().is_empty() && !l.starts_with("device limit"))
        .find(|l| l.split_whitespace().last() == Some(mode))
        .with_context(|| format!("no bench row for {mode} in:\n{output}"))?;
    let nums: Vec<f64> = row
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    nums.get(3)
        .copied()
        .with_context(|| format!("no MiB/s in {row}"))
}

const RUNGS: [&str; 3] = ["fentry", "kprobe", "tracepoint"];

/// Every rung sees the same calls: one dma_buf ioctl per RW_FILE call, the
/// exporter once per call with the call's length (fentry and kprobe; the
/// tracepoint rung has no exporter probe), and for direct I/O exactly the
/// call's bytes on the block device.
fn check_rungs(output: &str) -> Result<()> {
    let mut totals = Vec::new();
    for rung in RUNGS {
        let block = output
            .split(&format!("@@CSV {rung}\n"))
            .nth(1)
            .and_then(|rest| rest.split("@@CSV").next())
            .with_context(|| format!("no CSV for {rung}"))?;
        let mut lines = block.lines().filter(|l| !l.is_empty());
        let header: Vec<&str> = lines.next().context("empty CSV")?.split(',').collect();
        let col = |name: &str| {
            header
                .iter()
                .position(|h| *h == name)
                .with_context(|| format!("no column {name}"))
        };
        let (mode, bytes, ioctls, errors) = (
            col("mode")?,
            col("bytes")?,
            col("ioctl_calls")?,
            col("ioctl_errors")?,
        );
        let (exp_calls, exp_bytes, blk) = (
            col("exporter_calls")?,
            col("exporter_bytes")?,
            col("block_bytes")?,
        );
        let (mut calls, mut moved) = (0u64, 0u64);
        for line in lines {
            let f: Vec<&str> = line.split(',').collect();
            let n = |i: usize| {
                f.get(i)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(u64::MAX)
            };
            ensure!(
                n(ioctls) == 1 && n(errors) == 0,
                "{rung}: not one clean ioctl per call: {line}"
            );
            if rung == "tracepoint" {
                ensure!(
                    n(exp_calls) == 0,
                    "{rung}: exporter traced without a probe: {line}"
                );
            } else {
                ensure!(
                    n(exp_calls) == 1 && n(exp_bytes) == n(bytes),
                    "{rung}: exporter: {line}"
                );
            }
            if f[mode] == "rw-file-direct" {
                ensure!(
                    n(blk) == n(bytes),
                    "{rung}: block bytes of a direct call: {line}"
                );
            }
            calls += 1;
            moved += n(bytes);
        }
        ensure!(calls == 16, "{rung}: {calls} calls, expected 16");
        eprintln!("lab: {rung}: {calls} calls, {moved} bytes, every call joined");
        totals.push((calls, moved));
    }
    ensure!(
        totals.windows(2).all(|w| w[0] == w[1]),
        "rungs disagree: {totals:?}"
    );
    Ok(())
}

fn check_clean(out: &vm::VmOutput) -> Result<()> {
    // dmesg has every level; the console adds what came after it (poweroff).
    let mut complaints = vm::kernel_complaints(&out.dmesg);
    if complaints.is_empty() {
        complaints = vm::kernel_complaints(&out.console);
    }
    ensure!(
        complaints.is_empty(),
        "the guest kernel complained:\n{}",
        complaints.join("\n")
    );
    Ok(())
}

fn target<'a>(report: &'a Value, name: &str) -> Result<&'a Value> {
    report["probe_targets"]
        .as_array()
        .and_then(|a| a.iter().find(|t| t["name"] == name))
        .with_context(|| format!("doctor reported no probe target `{name}`"))
}

/// The lab kernel has everything the host lacks: doctor must see all of it.
fn check_doctor(r: &Value) -> Result<()> {
    let heaps = r["dma_buf"]["heaps"].to_string();
    ensure!(heaps.contains("\"system\""), "no system heap: {heaps}");
    ensure!(r["dma_buf"]["udmabuf"] == true, "no udmabuf");
    ensure!(
        r["dma_buf"]["rw_file"] == "supported",
        "RW_FILE: {}",
        r["dma_buf"]
    );
    ensure!(
        r["dma_buf"]["rw_file_in_btf"] == true,
        "dma_buf_ops.rw_file missing from BTF"
    );
    for key in ["copy_file_range_heap", "copy_file_range_udmabuf"] {
        ensure!(r[key]["ok"] == true, "{key}: {}", r[key]);
    }
    ensure!(
        r["dma_buf"]["read_only_refused"] == true,
        "READ into a read-only dma-buf is not refused: {}",
        r["dma_buf"]["read_only_detail"]
    );
    let ioctl = target(r, "dma_buf_ioctl")?;
    ensure!(ioctl["best"] == "fentry", "dma_buf_ioctl: {ioctl:#}");
    let kprobe_ok = ioctl["rungs"].as_array().is_some_and(|a| {
        a.iter()
            .any(|x| x["method"] == "kprobe" && x["works"] == true)
    });
    ensure!(kprobe_ok, "kprobe rung does not work in the lab: {ioctl:#}");
    let cb = target(r, "rw_file callback")?;
    ensure!(cb["best"] == "fentry", "rw_file callback: {cb:#}");
    let block = target(r, "block layer")?;
    ensure!(block["best"] == "tp_btf", "block layer: {block:#}");
    ensure!(
        r["filesystem"]["info"]["o_direct"] == true,
        "O_DIRECT on /mnt: {}",
        r["filesystem"]
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn zero_tests_is_not_a_pass() {
        let ok = "test a ... ok\ntest result: ok. 5 passed; 0 failed; 1 ignored\n";
        assert_eq!(super::tests_passed(ok), Some(5));
        let none = "running 0 tests\ntest result: ok. 0 passed; 0 failed; 0 ignored\n";
        assert_eq!(super::tests_passed(none), Some(0));
        assert_eq!(super::tests_passed("error: no such test\n"), None);
    }
}
