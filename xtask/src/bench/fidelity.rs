//! `cargo xtask bench fidelity`: dmaprof against fio on the same work, file
//! and machine: sequential read and write, buffered and O_DIRECT, 4 KiB,
//! 1 MiB and 32 MiB blocks; dmaprof with one reused buffer (fio's work) and
//! with a buffer per call (its default). Each case runs in rounds whose
//! order rotates, so drift hits every side alike; ratios are medians of
//! per-round ratios with 95% intervals. Prints figures.
use std::process::Command;

use std::fmt::Write as _;

use anyhow::{Context, Result};
use serde_json::Value;

use profiler_common::stats;

use super::Ratio;
use crate::cmd;

/// Where and what `bench fidelity` measures.
pub struct Options {
    pub device: Device,
    /// The scratch directory on `Device::Disk`.
    pub dir: String,
    pub rounds: u32,
    /// Only the cases whose label (e.g. `read-direct-1M`) contains this.
    pub only: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Device {
    /// ext4 on a loop device over RAM: no disk drift (the VM's CPU noise remains).
    Loop,
    /// The scratch directory's own (virtual) disk: what users run on, drifts.
    Disk,
}

struct Case {
    write: bool,
    direct: bool,
    bs: &'static str,
    size: &'static str,
}

impl Case {
    fn op(&self) -> &'static str {
        if self.write { "write" } else { "read" }
    }

    fn label(&self) -> String {
        let io = if self.direct { "direct" } else { "buffered" };
        format!("{}-{io}-{}", self.op(), self.bs)
    }

    fn mode(&self) -> &'static str {
        match (self.write, self.direct) {
            (false, false) => "pread",
            (false, true) => "pread-direct",
            (true, false) => "pwrite",
            (true, true) => "pwrite-direct",
        }
    }
}

/// Ensures fio is installed (Debian package), only for the benchmarks.
pub fn ensure_fio() -> Result<()> {
    super::ensure_debian_tool("fio", "fio")
}

/// Lays out a 64 MiB file with fio and reads it once, so later 4 KiB reads
/// of it hit the page cache.
pub fn warm_64m(file: &std::path::Path) -> Result<()> {
    cmd::output(Command::new("fio").args([
        "--name=warm",
        &format!("--filename={}", file.display()),
        "--rw=read",
        "--bs=1m",
        "--size=64m",
        "--output=/dev/null",
    ]))
    .map(drop)
}

fn mib(bytes_per_s: f64) -> f64 {
    bytes_per_s / (1u64 << 20) as f64
}

/// One dmaprof run of the case: (MiB/s in the calls, p50 us), dmaprof's own figures.
fn dmaprof_once(dmaprof: &std::path::Path, dir: &str, c: &Case, buffers: &str) -> Result<[f64; 2]> {
    super::dmaprof_figures(
        Command::new(dmaprof)
            .args([
                "run",
                "--headless",
                "--no-probes",
                "--no-verify",
                "--mode",
                c.mode(),
                "--chunk",
                c.bs,
                "--size",
                c.size,
            ])
            .args(["--direction", c.op(), "--dir", dir, "--buffers", buffers]),
    )
}

/// One fio job on the same file (reads) or a fresh file (writes):
/// (MiB/s, p50 us).
fn fio_once(dir: &str, c: &Case) -> Result<[f64; 2]> {
    let file = if c.write {
        format!("{dir}/fio-out.bin")
    } else {
        format!("{dir}/dmaprof-data-{}.bin", c.size)
    };
    let figures = fio_on(&file, c);
    let _ = std::fs::remove_file(format!("{dir}/fio-out.bin"));
    figures
}

fn fio_on(file: &str, c: &Case) -> Result<[f64; 2]> {
    let out = cmd::output(Command::new("fio").args([
        "--name=fidelity",
        &format!("--filename={file}"),
        &format!("--rw={}", c.op()),
        &format!("--bs={}", c.bs.replace('K', "k").replace('M', "m")),
        &format!("--size={}", c.size.replace('M', "m")),
        &format!("--direct={}", c.direct as u8),
        "--ioengine=psync",
        // Like dmaprof: drop the file's pages before reading (posix_fadvise
        // DONTNEED), write a fresh file without preallocating it.
        "--invalidate=1",
        "--fallocate=none",
        "--output-format=json",
    ]))?;
    let f: Value = serde_json::from_str(&out).context("fio JSON")?;
    let j = &f["jobs"][0][c.op()];
    let pct = |p: &str| j["clat_ns"]["percentile"][p].as_f64().unwrap_or(0.0) / 1e3;
    Ok([mib(j["bw_bytes"].as_f64().unwrap_or(0.0)), pct("50.000000")])
}

/// The same starting state for every run: no earlier output file (both
/// tools write a fresh file), nobody's dirty pages left to write back, and
/// a moment for the discards of freed blocks (this disk is mounted with
/// `discard`) to finish before the next run starts.
fn settle(dir: &str) -> Result<()> {
    // Every case's outputs, not only this one's: a 1 GiB file left by the
    // previous write case would fill the RAM-backed device.
    for entry in std::fs::read_dir(dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "fio-out.bin"
            || name.starts_with("dmaprof-out-")
            || name.starts_with(".dmaprof-out-")
        {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    cmd::run(&mut Command::new("sync"))?;
    std::thread::sleep(std::time::Duration::from_millis(500));
    Ok(())
}

pub fn run(o: &Options) -> Result<String> {
    let mut out = String::new();
    ensure_fio()?;
    let dmaprof = cmd::build_dmaprof()?;
    // 1 GiB to read and 1 GiB written by each tool in turn, with room to spare.
    let loop_fs = match o.device {
        Device::Loop => Some(super::loopfs::LoopFs::new(4 << 10)?),
        Device::Disk => None,
    };
    let dir = match &loop_fs {
        Some(fs) => fs.dir().display().to_string(),
        None => o.dir.clone(),
    };
    let (dir, rounds) = (dir.as_str(), o.rounds);
    std::fs::create_dir_all(dir)?;
    let device = match &loop_fs {
        Some(fs) => format!(
            "a drift-free device: ext4 on {} over a file in /dev/shm",
            fs.device()
        ),
        None => format!("the disk behind {dir} (real, drifting)"),
    };
    let cases: Vec<Case> = [false, true]
        .into_iter()
        .flat_map(|write| {
            [false, true].into_iter().flat_map(move |direct| {
                // Runs of a second or more: a 100 ms run measures the disk's
                // hiccups, not the tools. O_DIRECT 4 KiB calls take ~60 us each.
                let small = if direct { "64M" } else { "256M" };
                [("4K", small), ("1M", "1024M"), ("32M", "1024M")]
                    .into_iter()
                    .map(move |(bs, size)| Case {
                        write,
                        direct,
                        bs,
                        size,
                    })
            })
        })
        .filter(|c: &Case| {
            o.only
                .as_ref()
                .is_none_or(|only| c.label().contains(only.as_str()))
        })
        .collect();
    writeln!(
        out,
        "## dmaprof against fio, on {device}\n\n\
         Same file system and file, sequential, one thread, psync, cold cache for reads. \
         Each round runs four: dmaprof `--buffers reuse` (one warm buffer for every call: \
         fio's own work, so this is the accounting check), fio, dmaprof `--buffers \
         distinct` (a buffer per call, the seed's and a loader's work) and fio again (the \
         control), in an order rotated round by round; before each, the previous output file is removed, `sync`, 0.5 s of \
         quiet. {rounds} rounds per case. Figures are medians; a ratio is the median of the \
         per-round ratios with its distribution-free 95% confidence interval (order \
         statistics, as `dmaprof compare`). `reuse/fio` is dmaprof's in-call throughput and \
         p50 against fio's; `distinct/reuse` is what distinct destination buffers cost. \
         Command: `cargo xtask bench fidelity --rounds {rounds}{}`.\n",
        match o.device {
            Device::Loop => "",
            Device::Disk => " --device disk",
        }
    )?;
    writeln!(
        out,
        "| op | io | block | size | fio MiB/s | reuse MiB/s | reuse/fio MiB/s | fio p50 us | reuse p50 us | reuse/fio p50 | fio/fio MiB/s | fio/fio p50 | reuse against fio | distinct MiB/s | distinct/reuse MiB/s | distinct/reuse p50 |"
    )?;
    writeln!(
        out,
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|"
    )?;
    let mut rows: Vec<([Ratio; 2], String)> = Vec::new();
    for c in &cases {
        let (mut fio, mut reuse, mut distinct, mut fio_again) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for round in 0..rounds {
            // Every order of the three in turn: whichever runs first (and
            // for reads, reads the file first) gets no systematic edge.
            // Round 0 starts with dmaprof: it also makes the file fio reads.
            for run in ORDERS[round as usize % ORDERS.len()] {
                settle(dir)?;
                match run {
                    Run::Reuse => reuse.push(dmaprof_once(&dmaprof, dir, c, "reuse")?),
                    Run::Fio => fio.push(fio_once(dir, c)?),
                    Run::Distinct => distinct.push(dmaprof_once(&dmaprof, dir, c, "distinct")?),
                    Run::FioAgain => fio_again.push(fio_once(dir, c)?),
                }
            }
        }
        let med =
            |v: &[[f64; 2]], i: usize| stats::median(&v.iter().map(|x| x[i]).collect::<Vec<_>>());
        let tp = Ratio::paired(&reuse, &fio, 0);
        let p50 = Ratio::paired(&reuse, &fio, 1);
        let control = [
            Ratio::paired(&fio_again, &fio, 0),
            Ratio::paired(&fio_again, &fio, 1),
        ];
        let verdict = verdict(&[tp, p50], &control);
        let io = if c.direct { "O_DIRECT" } else { "buffered" };
        writeln!(
            out,
            "| {} | {io} | {} | {} | {:.0} | {:.0} | {tp} | {:.1} | {:.1} | {p50} | {} | {} | {verdict} | {:.0} | {} | {} |",
            c.op(),
            c.bs,
            c.size,
            med(&fio, 0),
            med(&reuse, 0),
            med(&fio, 1),
            med(&reuse, 1),
            control[0],
            control[1],
            med(&distinct, 0),
            Ratio::paired(&distinct, &reuse, 0),
            Ratio::paired(&distinct, &reuse, 1),
        )?;
        // As each case ends: a later failure keeps the figures already made.
        eprintln!("bench: {}", out.lines().last().unwrap_or_default());
        rows.push(([tp, p50], verdict));
    }
    if o.only
        .as_ref()
        .is_none_or(|only| "user-file".contains(only.as_str()))
    {
        out.push_str(&user_file(&dmaprof, dir, rounds)?);
    }
    let _ = std::fs::remove_file(std::env::temp_dir().join("dmaprof-fidelity.json"));
    let within = rows
        .iter()
        .filter(|(r, _)| r.iter().all(|x| x.within(0.03)))
        .count();
    let narrow = rows
        .iter()
        .filter(|(r, _)| r.iter().all(|x| x.narrower_than(0.02)))
        .count();
    let unresolved = rows
        .iter()
        .filter(|(_, v)| v.starts_with("no diff"))
        .count();
    let differs = rows.iter().filter(|(_, v)| v == "differs").count();
    writeln!(
        out,
        "\ngoal: `reuse` within 3% of fio in throughput and p50: {within} of {} cases; \
         95% interval narrower than +-2% in both: {narrow} of {}; of the rest, no difference \
         resolved (both intervals hold 1.0): {unresolved}, a difference resolved: {differs}. \
         `fio/fio` is the control: fio's second run of the round against its first, so its \
         interval is as fine as this machine resolves a ratio with this many rounds",
        rows.len(),
        rows.len()
    )?;
    Ok(out)
}

#[derive(Clone, Copy)]
enum Run {
    Reuse,
    Fio,
    Distinct,
    /// fio a second time: fio against itself is the control that says how
    /// finely this machine resolves a ratio at all.
    FioAgain,
}

/// Every run in every position equally often (the four rotations, forward
/// and backward), so neither tool has a place that favours it.
const ORDERS: [[Run; 4]; 8] = {
    use Run::*;
    [
        [Reuse, Fio, Distinct, FioAgain],
        [Fio, Distinct, FioAgain, Reuse],
        [Distinct, FioAgain, Reuse, Fio],
        [FioAgain, Reuse, Fio, Distinct],
        [Reuse, FioAgain, Distinct, Fio],
        [FioAgain, Distinct, Fio, Reuse],
        [Distinct, Fio, Reuse, FioAgain],
        [Fio, Reuse, FioAgain, Distinct],
    ]
};

/// What a case's `reuse/fio` ratios say, given fio's own spread.
fn verdict(r: &[Ratio; 2], control: &[Ratio; 2]) -> String {
    let holds_one = |x: &Ratio| x.ci95.is_some_and(|(lo, hi)| lo <= 1.0 && 1.0 <= hi);
    let spread = |x: &Ratio| {
        x.ci95
            .map_or(f64::NAN, |(lo, hi)| (x.median - lo).max(hi - x.median))
    };
    if r.iter().chain(control).any(|x| x.ci95.is_none()) {
        "too few rounds to tell".into()
    } else if r.iter().all(|x| x.within(0.03) && x.narrower_than(0.02)) {
        "met".into()
    } else if r.iter().all(holds_one) {
        format!(
            "no difference resolved; fio against itself spreads +-{:.0}% / +-{:.0}%",
            100.0 * spread(&control[0]),
            100.0 * spread(&control[1])
        )
    } else {
        "differs".into()
    }
}

/// A file of the user's (laid out by fio: no pattern dmaprof knows), read
/// O_DIRECT in 1 MiB calls into a reused buffer: dmaprof verified (each
/// call sampled, made again and checked in full after the pass) and
/// `--no-verify`, beside fio. Verifying must not change the calls' figures.
fn user_file(dmaprof: &std::path::Path, dir: &str, rounds: u32) -> Result<String> {
    let file = format!("{dir}/user-model.bin");
    cmd::output(Command::new("fio").args([
        "--name=layout",
        &format!("--filename={file}"),
        "--rw=write",
        "--bs=1m",
        "--size=1g",
        "--output=/dev/null",
    ]))?;
    let case = Case {
        write: false,
        direct: true,
        bs: "1M",
        size: "1024M",
    };
    let dmaprof_run = |verify: bool| {
        let mut c = Command::new(dmaprof);
        c.args(["run", "--headless", "--no-probes", "--mode", "pread-direct"])
            .args(["--chunk", "1M", "--buffers", "reuse", "--file", &file]);
        if !verify {
            c.arg("--no-verify");
        }
        super::dmaprof_figures(&mut c)
    };
    let (mut verified, mut unverified, mut fio) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        // The three in rotated order, so none has a place that favours it.
        for k in 0..3 {
            settle(dir)?;
            match (round + k) % 3 {
                0 => verified.push(dmaprof_run(true)?),
                1 => unverified.push(dmaprof_run(false)?),
                _ => fio.push(fio_on(&file, &case)?),
            }
        }
    }
    let _ = std::fs::remove_file(&file);
    let med = |v: &[[f64; 2]], i: usize| stats::median(&v.iter().map(|x| x[i]).collect::<Vec<_>>());
    let mut out = String::new();
    writeln!(
        out,
        "\n### A user's file: verifying does not disturb the calls\n\n\
         A 1 GiB file laid out by fio (no pattern dmaprof knows), read `pread-direct --buffers \
         reuse --chunk 1M --file ...`: verified (the default: a sample of each call's bytes \
         digested between calls, every call made again after the pass and checked in full \
         against the file read O_DIRECT) and \
         `--no-verify`, beside fio (psync, O_DIRECT, 1 MiB), {rounds} rounds in rotated order.\n\n\
         | | MiB/s | p50 us |\n|---|---:|---:|\n\
         | dmaprof verified | {:.0} | {:.1} |\n| dmaprof --no-verify | {:.0} | {:.1} |\n\
         | fio | {:.0} | {:.1} |\n| verified / --no-verify | {} | {} |\n\
         | verified / fio | {} | {} |",
        med(&verified, 0),
        med(&verified, 1),
        med(&unverified, 0),
        med(&unverified, 1),
        med(&fio, 0),
        med(&fio, 1),
        Ratio::paired(&verified, &unverified, 0),
        Ratio::paired(&verified, &unverified, 1),
        Ratio::paired(&verified, &fio, 0),
        Ratio::paired(&verified, &fio, 1),
    )?;
    eprintln!("bench: {out}");
    Ok(out)
}
