//! `cargo xtask bench fidelity`: dmaprof against fio on the same work, file
//! and machine — sequential read and write, buffered and O_DIRECT, 4 KiB,
//! 1 MiB and 32 MiB blocks — side by side with their ratio. Prints figures.
use std::process::Command;

use std::fmt::Write as _;

use anyhow::{Context, Result};
use serde_json::Value;

use crate::cmd;

struct Case {
    write: bool,
    direct: bool,
    bs: &'static str,
    size: &'static str,
}

/// Ensures fio is installed (Debian package), only for this benchmark.
fn ensure_fio() -> Result<()> {
    if cmd::succeeds(Command::new("fio").arg("--version")) {
        return Ok(());
    }
    eprintln!("bench: installing fio");
    cmd::run(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends", "fio"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

fn mib(bytes_per_s: f64) -> f64 {
    bytes_per_s / (1u64 << 20) as f64
}

pub fn run(dir: &str) -> Result<String> {
    let mut out = String::new();
    ensure_fio()?;
    let dmaprof = cmd::build_dmaprof()?;
    std::fs::create_dir_all(dir)?;
    let cases: Vec<Case> = [false, true]
        .into_iter()
        .flat_map(|write| {
            [false, true].into_iter().flat_map(move |direct| {
                // 4 KiB blocks on 64 MiB: dmaprof keeps one buffer per call in memory.
                [("4K", "64M"), ("1M", "256M"), ("32M", "256M")]
                    .into_iter()
                    .map(move |(bs, size)| Case {
                        write,
                        direct,
                        bs,
                        size,
                    })
            })
        })
        .collect();
    writeln!(
        out,
        "## dmaprof against fio (same file system, sequential, one thread, cold cache for reads)\n"
    )?;
    writeln!(
        out,
        "| op | io | block | fio MiB/s | dmaprof MiB/s | dmaprof/fio | fio p50 us | dmaprof p50 us | fio p99 us | dmaprof p99 us |"
    )?;
    writeln!(out, "|---|---|---|---:|---:|---:|---:|---:|---:|---:|")?;
    for c in cases {
        let op = if c.write { "write" } else { "read" };
        // dmaprof first: for reads it also makes the test file fio then reads.
        let mode = match (c.write, c.direct) {
            (false, false) => "pread",
            (false, true) => "pread-direct",
            (true, false) => "pwrite",
            (true, true) => "pwrite-direct",
        };
        let json = format!("{dir}/fidelity.json");
        cmd::output(
            Command::new(&dmaprof)
                .args([
                    "run",
                    "--headless",
                    "--no-probes",
                    "--no-verify",
                    "--mode",
                    mode,
                    "--chunk",
                    c.bs,
                    "--size",
                    c.size,
                ])
                .args(["--direction", op, "--dir", dir, "--json", &json]),
        )?;
        let d: Value = serde_json::from_str(&std::fs::read_to_string(&json)?)?;
        let s = &d["modes"][0]["summary"];
        let (d_bw, d_p50, d_p99) = (
            s["mib_per_s"].as_f64().unwrap_or(0.0),
            s["lat_p50_us"].as_f64().unwrap_or(0.0),
            s["lat_p99_us"].as_f64().unwrap_or(0.0),
        );

        let file = if c.write {
            format!("{dir}/fio-out.bin")
        } else {
            format!("{dir}/dmaprof-data-{}.bin", c.size)
        };
        let fio_out = cmd::output(Command::new("fio").args([
            "--name=fidelity",
            &format!("--filename={file}"),
            &format!("--rw={op}"),
            &format!("--bs={}", c.bs.replace('K', "k").replace('M', "m")),
            &format!("--size={}", c.size.replace('M', "m")),
            &format!("--direct={}", c.direct as u8),
            "--ioengine=psync",
            "--invalidate=1",
            "--output-format=json",
        ]))?;
        let f: Value = serde_json::from_str(&fio_out).context("fio JSON")?;
        let j = &f["jobs"][0][op];
        let f_bw = mib(j["bw_bytes"].as_f64().unwrap_or(0.0));
        let pct = |p: &str| j["clat_ns"]["percentile"][p].as_f64().unwrap_or(0.0) / 1e3;
        writeln!(
            out,
            "| {op} | {} | {} | {f_bw:.0} | {d_bw:.0} | {:.3} | {:.0} | {d_p50:.0} | {:.0} | {d_p99:.0} |",
            if c.direct { "O_DIRECT" } else { "buffered" },
            c.bs,
            d_bw / f_bw.max(f64::MIN_POSITIVE),
            pct("50.000000"),
            pct("99.000000"),
        )?;
        let _ = std::fs::remove_file(format!("{dir}/fio-out.bin"));
    }
    writeln!(
        out,
        "\ngoal: dmaprof within 3% of fio's throughput for the same work"
    )?;
    Ok(out)
}
