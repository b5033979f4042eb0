//! `cargo xtask bench profile`: what `--profile` costs, and whether its
//! stacks agree with the anchor's. Cost: `pread-direct` 1 MiB on the
//! RAM-backed loop device with the probes on, without a profile and with
//! `--profile-hz 99` and `999`, rounds in rotated order, throughput and p50
//! ratios with 95% intervals. Agreement: one fio load of 4 KiB page-cache
//! preads profiled at the same time by `dmaprof trace --profile` and by
//! bpftrace (`profile:hz:999 /pid == N/ { @[kstack] = count(); }`), the two
//! top-10 tables of kernel functions (self % of the process's samples) side
//! by side. Prints figures.
use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader},
    path::Path,
    process::{Command, Stdio},
};

use std::fmt::Write as _;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::{
    Ratio,
    events::{Tracing, read_until},
};
use crate::cmd;

const ROUNDS: u32 = 10;
const TOP: usize = 10;

pub fn run() -> Result<String> {
    super::ensure_debian_tool("fio", "fio")?;
    super::ensure_debian_tool("bpftrace", "bpftrace")?;
    let dmaprof = cmd::build_dmaprof()?;
    let mut out = String::new();
    cost(&dmaprof, &mut out)?;
    agreement(&dmaprof, &mut out)?;
    Ok(out)
}

/// (MiB/s, p50 us) of each pass of one run.
fn passes(json: &Path) -> Result<Vec<(f64, f64)>> {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(json)?)?;
    Ok(v["modes"][0]["passes"]
        .as_array()
        .context("no passes")?
        .iter()
        .map(|p| {
            (
                p["mib_per_s"].as_f64().unwrap_or(0.0),
                p["lat_p50_us"].as_f64().unwrap_or(0.0),
            )
        })
        .collect())
}

fn cost(dmaprof: &Path, out: &mut String) -> Result<()> {
    let fs = super::loopfs::LoopFs::new(1 << 10)?;
    let json = std::env::temp_dir().join(format!("dmaprof-profile-{}.json", std::process::id()));
    let sides: [(&str, &[&str]); 3] = [
        ("no profile", &[]),
        ("--profile-hz 99", &["--profile", "--profile-hz", "99"]),
        ("--profile-hz 999", &["--profile", "--profile-hz", "999"]),
    ];
    // Per side, per round: the median (MiB/s, p50) of the run's passes.
    let mut rounds: Vec<Vec<(f64, f64)>> = vec![Vec::new(); sides.len()];
    for round in 0..ROUNDS {
        for k in 0..sides.len() {
            let i = (k + round as usize) % sides.len();
            let mut c = Command::new(dmaprof);
            c.args([
                "run",
                "--headless",
                "--mode",
                "pread-direct",
                "--chunk",
                "1M",
            ])
            .args(["--size", "256M", "--iterations", "3", "--dir"])
            .arg(fs.dir())
            .arg("--json")
            .arg(&json)
            .args(sides[i].1);
            cmd::output(&mut c)?;
            let p = passes(&json)?;
            let med = |f: fn(&(f64, f64)) -> f64| {
                profiler_common::stats::median(&p.iter().map(f).collect::<Vec<_>>())
            };
            rounds[i].push((med(|x| x.0), med(|x| x.1)));
        }
    }
    let _ = std::fs::remove_file(&json);
    writeln!(out, "## What `--profile` costs\n")?;
    writeln!(
        out,
        "`pread-direct`, 1 MiB calls, 256 MiB x 3 passes per run, probes on in every run, on {} \
         (ext4 over RAM); {ROUNDS} rounds, the three runs of a round in rotated order. Ratios \
         against the run without a profile: the median of per-round ratios with its 95% \
         interval. Command: `cargo xtask bench profile`.\n",
        fs.device()
    )?;
    writeln!(
        out,
        "| profile | MiB/s | p50 us | throughput ratio | p50 ratio |"
    )?;
    writeln!(out, "|---|---:|---:|---:|---:|")?;
    let base = &rounds[0];
    for (i, (label, _)) in sides.iter().enumerate() {
        let mine = &rounds[i];
        let ratio = |f: fn(&(f64, f64)) -> f64| {
            let r: Vec<f64> = mine.iter().zip(base).map(|(m, b)| f(m) / f(b)).collect();
            Ratio::of(&r)
        };
        let med = |f: fn(&(f64, f64)) -> f64| {
            profiler_common::stats::median(&mine.iter().map(f).collect::<Vec<_>>())
        };
        writeln!(
            out,
            "| {label} | {:.0} | {:.1} | {} | {} |",
            med(|x| x.0),
            med(|x| x.1),
            ratio(|x| x.0),
            ratio(|x| x.1)
        )?;
    }
    Ok(())
}

/// Self % per kernel function of the samples taken in the kernel, from
/// (leaf kernel function, or None for a sample in user mode, count) pairs;
/// and how many kernel samples that was. User-mode samples (no kernel
/// stack) stay out of the total: it is the kernel the two tables compare.
fn shares(
    samples: impl IntoIterator<Item = (Option<String>, u64)>,
) -> (BTreeMap<String, f64>, u64) {
    let mut own: BTreeMap<String, u64> = BTreeMap::new();
    let mut all = 0;
    for (leaf, n) in samples {
        if let Some(f) = leaf {
            all += n;
            *own.entry(f).or_default() += n;
        }
    }
    let pct = own
        .into_iter()
        .map(|(f, n)| (f, 100.0 * n as f64 / all.max(1) as f64))
        .collect();
    (pct, all)
}

/// dmaprof's trace JSON: every bucket's on-CPU stacks, by kernel leaf.
fn dmaprof_shares(trace: &Value) -> (BTreeMap<String, f64>, u64) {
    let mut pairs = Vec::new();
    if let Some(buckets) = trace["profile"]["buckets"].as_object() {
        for b in buckets.values() {
            for (stack, n) in b["on_cpu"].as_object().into_iter().flatten() {
                let leaf = stack
                    .rsplit(';')
                    .next()
                    .and_then(|f| f.strip_suffix("_[k]"))
                    .map(str::to_string);
                pairs.push((leaf, n.as_u64().unwrap_or(0)));
            }
        }
    }
    shares(pairs)
}

/// bpftrace's `@[kstack]: count` map: innermost frame first, `name+off`.
fn bpftrace_shares(text: &str) -> (BTreeMap<String, f64>, u64) {
    let mut pairs = Vec::new();
    let mut leaf: Option<Option<String>> = None;
    for l in text.lines() {
        let l = l.trim();
        if let Some(n) = l.strip_prefix("@[]: ") {
            // A sample in user mode: an empty kernel stack on one line.
            pairs.push((None, n.trim().parse().unwrap_or(0)));
        } else if l == "@[" {
            leaf = Some(None);
        } else if let Some(n) = l.strip_prefix("]: ") {
            pairs.push((leaf.take().flatten(), n.trim().parse().unwrap_or(0)));
        } else if let Some(None) = leaf
            && !l.is_empty()
        {
            let name = l.split('+').next().unwrap_or(l).to_string();
            leaf = Some(Some(name));
        }
    }
    shares(pairs)
}

fn agreement(dmaprof: &Path, out: &mut String) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("dmaprof-profile-agree-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let json = dir.join("trace.json");
    let mut fio = Command::new("fio")
        .args(["--name=profile", "--output-format=json", "--numjobs=1"])
        .args(super::FIO_CACHED_4K_READS)
        .arg(format!("--filename={}", dir.join("data.bin").display()))
        .args(["--runtime=10", "--startdelay=4"])
        .arg(format!("--output={}", dir.join("fio.json").display()))
        .stdout(Stdio::null())
        .spawn()
        .context("starting fio")?;
    let pid = fio.id().to_string();
    let mut c = Command::new(dmaprof);
    c.args(["trace", "--headless", "--pid", &pid, "--profile", "--csv"])
        .arg(dir.join("calls.csv"))
        .arg("--json")
        .arg(&json);
    let tracer = Tracing::start(&mut c, &mut fio)?;
    let mut bpf = Command::new("bpftrace")
        .arg("-e")
        .arg(format!(
            "profile:hz:999 /pid == {pid}/ {{ @[kstack] = count(); }}"
        ))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting bpftrace")?;
    let mut lines = BufReader::new(bpf.stdout.take().context("stdout")?).lines();
    read_until(&mut lines, "Attaching", &mut fio, "bpftrace")?;
    let reader = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());
    if !fio.wait()?.success() {
        bail!("fio failed");
    }
    // SAFETY: signalling our own child, still unreaped.
    unsafe { libc::kill(bpf.id() as i32, libc::SIGINT) };
    bpf.wait()?;
    tracer.end(None)?;
    let bpftrace = reader.join().unwrap_or_default().join("\n");
    let trace: Value = serde_json::from_str(&std::fs::read_to_string(&json)?)?;
    let _ = std::fs::remove_dir_all(&dir);

    let (d, d_all) = dmaprof_shares(&trace);
    let (b, b_all) = bpftrace_shares(&bpftrace);
    let top = |m: &BTreeMap<String, f64>| {
        let mut v: Vec<(String, f64)> = m.iter().map(|(f, p)| (f.clone(), *p)).collect();
        v.sort_by(|x, y| y.1.total_cmp(&x.1));
        v.truncate(TOP);
        v
    };
    let (dt, bt) = (top(&d), top(&b));
    writeln!(out, "\n## `--profile` against bpftrace, on the same load\n")?;
    writeln!(
        out,
        "fio, one thread of 4 KiB psync reads from the page cache for 10 s, profiled at once by \
         `dmaprof trace --pid <fio> --profile` ({d_all} samples in the kernel) and bpftrace \
         `profile:hz:999 /pid == <fio>/ {{ @[kstack] = count(); }}` ({b_all}). Self % of the \
         process's samples taken in the kernel, per kernel function.\n"
    )?;
    writeln!(out, "| # | dmaprof | self % | bpftrace | self % |")?;
    writeln!(out, "|---:|---|---:|---|---:|")?;
    for i in 0..TOP {
        let cell = |v: &[(String, f64)]| {
            v.get(i)
                .map(|(f, p)| (f.clone(), format!("{p:.1}")))
                .unwrap_or_default()
        };
        let ((df, dp), (bf, bp)) = (cell(&dt), cell(&bt));
        writeln!(out, "| {} | {df} | {dp} | {bf} | {bp} |", i + 1)?;
    }
    let union: std::collections::BTreeSet<&String> = dt.iter().chain(&bt).map(|(f, _)| f).collect();
    let worst = union
        .iter()
        .map(|f| {
            let g = |m: &BTreeMap<String, f64>| m.get(*f).copied().unwrap_or(0.0);
            ((g(&d) - g(&b)).abs(), f.as_str())
        })
        .fold((0.0, ""), |a, b| if b.0 > a.0 { b } else { a });
    writeln!(
        out,
        "\nLargest difference over both top-10 lists: {:.1} points ({}). Goal: within a few points.",
        worst.0, worst.1
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn bpftrace_stacks_give_their_leaf_and_user_samples_count() {
        let text = "Attaching 1 probe...\n\n@[]: 5\n@[\n    filemap_read+42\n    vfs_read+10\n]: 3\n@[\n]: 1\n";
        let (m, all) = super::bpftrace_shares(text);
        assert_eq!(all, 3, "the user-mode sample is not a kernel one");
        assert_eq!(m["filemap_read"], 100.0);
        let v: serde_json::Value = serde_json::json!({"profile": {"buckets": {"pread": {
            "on_cpu": {"main;read;vfs_read_[k];filemap_read_[k]": 3, "main;read;copy_[k]": 1,
                       "main;read": 5}}}}});
        let (m, all) = super::dmaprof_shares(&v);
        assert_eq!((all, m["filemap_read"]), (4, 75.0));
    }
}
