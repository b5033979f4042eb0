//! `cargo xtask bench overhead`: what tracing costs. The same workload runs
//! untraced and traced, alternating rounds so drift hits both alike, and
//! the medians of per-pass throughput and p50 latency are compared. Prints
//! figures; asserts nothing (speed goals are read, not tested).
use std::process::{Command, ExitCode};

use std::fmt::Write as _;

use anyhow::{Context, Result};
use serde_json::Value;

use crate::{cmd, lab};

#[derive(clap::Subcommand)]
pub enum Bench {
    /// Traced versus untraced throughput and p50 latency, on this host
    /// (pread-direct) and in the lab VM (rw-file-direct).
    Overhead {
        /// Alternating (untraced, traced) rounds.
        #[arg(long, default_value_t = 5)]
        rounds: u32,
        /// Skip the lab part.
        #[arg(long)]
        no_lab: bool,
    },
    /// Everything in one markdown report (machine, kernel, commands, overhead
    /// host and lab, fidelity against fio), written to --out.
    Report {
        #[arg(long, default_value_t = 6)]
        rounds: u32,
        #[arg(long, default_value = "docs/bench-report.md")]
        out: std::path::PathBuf,
    },
    /// dmaprof against fio on the same work (installs fio): sequential read
    /// and write, buffered and O_DIRECT, 4 KiB / 1 MiB / 32 MiB blocks.
    Fidelity {
        /// Scratch directory on the file system to measure.
        #[arg(long, default_value = "/var/tmp/dmaprof-fidelity")]
        dir: String,
    },
}

pub fn run(b: Bench) -> Result<ExitCode> {
    match b {
        Bench::Fidelity { dir } => {
            print!("{}", crate::fidelity::run(&dir)?);
            Ok(ExitCode::SUCCESS)
        }
        Bench::Overhead { rounds, no_lab } => {
            print!("{}", overhead(rounds, no_lab)?);
            Ok(ExitCode::SUCCESS)
        }
        Bench::Report { rounds, out } => {
            let report = report(rounds)?;
            std::fs::write(&out, &report).with_context(|| format!("writing {}", out.display()))?;
            print!("{report}");
            eprintln!("bench: report written to {}", out.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Traced versus untraced, host then lab, as a markdown section.
fn overhead(rounds: u32, no_lab: bool) -> Result<String> {
    let mut out = String::new();
    let dmaprof = cmd::build_dmaprof()?;
    let dir = std::env::temp_dir().join(format!("dmaprof-overhead-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut host = Samples::default();
    for round in 0..rounds {
        for traced in order(round) {
            let json = dir.join(format!("r{round}-{traced}.json"));
            let mut c = Command::new(&dmaprof);
            c.args([
                "run",
                "--mode",
                "pread-direct",
                "--size",
                "256M",
                "--iterations",
                "3",
                "--dir",
            ])
            .arg("/var/tmp/dmaprof")
            .arg("--json")
            .arg(&json);
            if !traced {
                c.arg("--no-probes");
            }
            cmd::output(&mut c)?;
            host.add(traced, &std::fs::read_to_string(&json)?)?;
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    writeln!(out, "## Tracing overhead\n")?;
    writeln!(
        out,
        "| where | mode | throughput traced/untraced | p50 latency traced/untraced | passes |"
    )?;
    writeln!(out, "|---|---|---:|---:|---:|")?;
    writeln!(
        out,
        "| host {} | pread-direct | {} |",
        kernel_release(),
        host.ratios()
    )?;
    if !no_lab {
        let lab_samples = lab_overhead(rounds)?;
        writeln!(
            out,
            "| lab 6.12 (QEMU TCG) | rw-file-direct | {} |",
            lab_samples.ratios()
        )?;
    }
    writeln!(
        out,
        "\ngoal: throughput ratio >= 0.98 and p50 ratio <= 1.02"
    )?;
    Ok(out)
}

/// Untraced first in even rounds, traced first in odd ones: whatever the
/// order favours (device caches, CPU frequency) hits both sides alike.
fn order(round: u32) -> [bool; 2] {
    if round.is_multiple_of(2) {
        [false, true]
    } else {
        [true, false]
    }
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string()
}

#[derive(Default)]
struct Samples {
    /// (MiB/s, p50 us) per pass, untraced and traced.
    plain: Vec<(f64, f64)>,
    traced: Vec<(f64, f64)>,
}

impl Samples {
    fn add(&mut self, traced: bool, json: &str) -> Result<()> {
        let v: Value = serde_json::from_str(json).context("results JSON")?;
        let passes = v["modes"][0]["passes"].as_array().context("no passes")?;
        for p in passes {
            let s = (
                p["mib_per_s"].as_f64().unwrap_or(0.0),
                p["lat_p50_us"].as_f64().unwrap_or(0.0),
            );
            if traced {
                self.traced.push(s)
            } else {
                self.plain.push(s)
            }
        }
        Ok(())
    }

    fn ratios(&self) -> String {
        let med = |xs: Vec<f64>| {
            let mut v = xs;
            v.sort_by(f64::total_cmp);
            if v.is_empty() {
                f64::NAN
            } else {
                v[v.len() / 2]
            }
        };
        let t = med(self.traced.iter().map(|s| s.0).collect())
            / med(self.plain.iter().map(|s| s.0).collect());
        let p = med(self.traced.iter().map(|s| s.1).collect())
            / med(self.plain.iter().map(|s| s.1).collect());
        format!(
            "{t:.3} | {p:.3} | {}+{}",
            self.plain.len(),
            self.traced.len()
        )
    }
}

/// The same alternation inside the lab VM, on the patched path.
fn lab_overhead(rounds: u32) -> Result<Samples> {
    let kernel = lab::kernel_for_bench()?;
    let files = lab::guest_files_for_bench()?;
    let mut script = String::new();
    for round in 0..rounds {
        for traced in order(round) {
            let flag = if traced { "" } else { "--no-probes" };
            // One line per result: long console output is easier to take apart.
            script.push_str(&format!(
                "dmaprof run --file /mnt/data-256m.bin --mode rw-file-direct --iterations 3 {flag} \
                 --json /tmp/o.json >/dev/null 2>&1; echo \"@@JSON {traced} $(tr -d '\\n' < /tmp/o.json)\"; "
            ));
        }
    }
    let out = lab::run_for_bench(&kernel, &files, &script)?;
    let mut s = Samples::default();
    for line in out.lines().filter_map(|l| l.strip_prefix("@@JSON ")) {
        let (traced, json) = line.split_once(' ').context("malformed guest output")?;
        s.add(traced == "true", json)?;
    }
    Ok(s)
}

/// The whole report: what was measured where, with which commands.
fn report(rounds: u32) -> Result<String> {
    let mut r = String::new();
    let sh = |c: &str| cmd::output(Command::new("sh").arg("-c").arg(c)).unwrap_or_default();
    writeln!(r, "# dmaprof benchmark report\n")?;
    writeln!(r, "- date: {}", sh("date -u +%Y-%m-%dT%H:%MZ"))?;
    writeln!(
        r,
        "- machine: {} CPUs, {} memory; {}",
        sh("nproc"),
        sh("free -h | awk '/Mem:/ {print $2}'"),
        sh("uname -srm")
    )?;
    writeln!(r, "- commit: {}", sh("git rev-parse --short HEAD"))?;
    writeln!(
        r,
        "- commands: `cargo xtask bench overhead --rounds {rounds}`, `cargo xtask bench fidelity`"
    )?;
    writeln!(
        r,
        "- lab: Debian linux-source-6.12 + the project's RW_FILE patches, QEMU TCG, 2 vCPUs, 2 GiB\n"
    )?;
    writeln!(
        r,
        "Caveat: this machine is a shared VM whose disk throughput varies by tens of percent from one\n\
         minute to the next; fidelity rows are single passes taken one after the other, so only\n\
         repeated reports (or a quiet machine) separate a real gap from noise.\n"
    )?;
    r.push_str(&overhead(rounds, false)?);
    writeln!(r)?;
    r.push_str(&crate::fidelity::run("/var/tmp/dmaprof-fidelity")?);
    Ok(r)
}
