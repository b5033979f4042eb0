//! `cargo xtask bench overhead`: what tracing costs. The same workload runs
//! untraced and traced, alternating rounds so drift hits both alike, on a
//! RAM-backed loop device (host) so a 1% difference is resolvable; per-round
//! ratios of throughput and p50, their median and 95% interval. Prints
//! figures; asserts nothing (speed goals are read, not tested).
use std::process::Command;

use std::fmt::Write as _;

use anyhow::{Context, Result};
use serde_json::Value;

use profiler_common::stats;

use super::Ratio;
use crate::{cmd, lab};

/// Traced versus untraced, host then lab, as a markdown section.
pub fn run(rounds: u32, no_lab: bool) -> Result<String> {
    let mut out = String::new();
    let dmaprof = cmd::build_dmaprof()?;
    // The drift-free device: a tool-versus-tool difference of 1% is resolvable there.
    let fs = super::loopfs::LoopFs::new(2 << 10)?;
    let json_dir = std::env::temp_dir().join(format!("dmaprof-overhead-{}", std::process::id()));
    std::fs::create_dir_all(&json_dir)?;
    writeln!(out, "## Tracing overhead\n")?;
    writeln!(
        out,
        "| where | mode | block | throughput traced/untraced | p50 traced/untraced | passes |"
    )?;
    writeln!(out, "|---|---|---:|---:|---:|---:|")?;
    for chunk in ["1M", "32M"] {
        let mut host = Samples::default();
        for round in 0..rounds {
            for traced in order(round) {
                let json = json_dir.join(format!("r{round}-{traced}.json"));
                let mut c = Command::new(&dmaprof);
                c.args([
                    "run",
                    "--headless",
                    "--mode",
                    "pread-direct",
                    "--chunk",
                    chunk,
                ])
                .args([
                    "--size",
                    "256M",
                    "--iterations",
                    &PASSES.to_string(),
                    "--dir",
                ])
                .arg(fs.dir())
                .arg("--json")
                .arg(&json);
                if !traced {
                    c.arg("--no-probes");
                }
                cmd::output(&mut c)?;
                host.add(traced, &std::fs::read_to_string(&json)?)?;
            }
        }
        writeln!(
            out,
            "| host {}, ext4 on {} over RAM | pread-direct | {chunk} | {} |",
            kernel_release(),
            fs.device(),
            host.ratios()
        )?;
    }
    let _ = std::fs::remove_dir_all(&json_dir);
    drop(fs);
    if !no_lab {
        let lab_samples = lab_overhead(rounds)?;
        writeln!(
            out,
            "| lab 6.12 (QEMU TCG), virtio disk imaged in host RAM | rw-file-direct | 32M | {} |",
            lab_samples.ratios()
        )?;
    }
    writeln!(
        out,
        "\ngoal: throughput ratio >= 0.98 and p50 ratio <= 1.02. Each ratio is the median of \
         per-round ratios (a round: one traced and one untraced run of {PASSES} passes, seconds \
         apart, the order alternating) with its 95% interval; `--no-probes` is the untraced \
         side. The probes' own cost, measured by the kernel's BPF run-time statistics, is in \
         every traced run's output (`probe_costs`)."
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

pub fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Passes per dmaprof run (each round: one untraced run, one traced).
const PASSES: usize = 3;

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

    /// Per round, the median of its traced passes over that of its
    /// untraced ones; then the median of those with its 95% interval.
    fn ratios(&self) -> String {
        let per_round = |i: usize| {
            let pick = |v: &[(f64, f64)]| -> Vec<f64> {
                v.iter().map(|s| if i == 0 { s.0 } else { s.1 }).collect()
            };
            let rounds: Vec<f64> = self
                .traced
                .chunks(PASSES)
                .zip(self.plain.chunks(PASSES))
                .map(|(t, p)| stats::median(&pick(t)) / stats::median(&pick(p)))
                .collect();
            Ratio::of(&rounds)
        };
        format!(
            "{} | {} | {}+{}",
            per_round(0),
            per_round(1),
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
                "dmaprof run --file /mnt/data-256m.bin --mode rw-file-direct --iterations {PASSES} {flag} \
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
