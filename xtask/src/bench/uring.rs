//! `cargo xtask bench uring`: dmaprof's io_uring baseline against fio's
//! io_uring engine on the same work (O_DIRECT 1 MiB reads of one 1 GiB file
//! on the drift-free loop device, registered buffers, queue depths 1, 8 and
//! 32; dmaprof with `--buffers reuse`, one buffer per I/O in flight, as fio
//! keeps one per iodepth), and pread-direct beside uring-direct at depth 1:
//! what io_uring itself changes for one I/O at a time. Rounds alternate the
//! tools; ratios are medians of per-round ratios with 95% intervals.
use std::{fmt::Write as _, process::Command};

use anyhow::{Context, Result};
use serde_json::Value;

use super::Ratio;
use crate::cmd;

const DEPTHS: [u32; 3] = [1, 8, 32];

/// (MiB/s, p50 us) of one dmaprof pass of `mode` at `depth`.
fn dmaprof_once(dmaprof: &std::path::Path, dir: &str, mode: &str, depth: u32) -> Result<[f64; 2]> {
    super::dmaprof_figures(
        Command::new(dmaprof)
            .args([
                "run",
                "--headless",
                "--no-probes",
                "--no-verify",
                "--mode",
                mode,
            ])
            .args(["--chunk", "1M", "--size", "1024M", "--buffers", "reuse"])
            .args(["--queue-depth", &depth.to_string(), "--dir", dir]),
    )
}

/// (MiB/s, p50 us) of fio's io_uring engine on dmaprof's file.
fn fio_once(dir: &str, depth: u32) -> Result<[f64; 2]> {
    let out = cmd::output(Command::new("fio").args([
        "--name=uring",
        &format!("--filename={dir}/dmaprof-data-1024M.bin"),
        "--rw=read",
        "--bs=1m",
        "--size=1024m",
        "--direct=1",
        "--ioengine=io_uring",
        "--fixedbufs=1",
        &format!("--iodepth={depth}"),
        "--invalidate=1",
        "--output-format=json",
    ]))?;
    let f: Value = serde_json::from_str(&out).context("fio JSON")?;
    let j = &f["jobs"][0]["read"];
    let p50 = j["clat_ns"]["percentile"]["50.000000"]
        .as_f64()
        .unwrap_or(0.0)
        / 1e3;
    Ok([
        j["bw_bytes"].as_f64().unwrap_or(0.0) / (1u64 << 20) as f64,
        p50,
    ])
}

fn median(v: &[[f64; 2]], i: usize) -> f64 {
    profiler_common::stats::median(&v.iter().map(|x| x[i]).collect::<Vec<_>>())
}

pub fn run(rounds: u32) -> Result<String> {
    super::fidelity::ensure_fio()?;
    let dmaprof = cmd::build_dmaprof()?;
    let fs = super::loopfs::LoopFs::new(2 << 10)?;
    let dir = fs.dir().display().to_string();
    // The file, made once by dmaprof (the pattern it verifies elsewhere).
    dmaprof_once(&dmaprof, &dir, "pread-direct", 1)?;
    let mut out = String::new();
    writeln!(
        out,
        "## io_uring: dmaprof's uring-direct against fio's io_uring engine\n\n\
         ext4 on {} over RAM, O_DIRECT sequential 1 MiB reads of a 1 GiB file, cold cache, \
         registered buffers (dmaprof `--mode uring-direct --buffers reuse --queue-depth N`: \
         one buffer per I/O in flight; fio `--ioengine=io_uring --fixedbufs=1 --iodepth=N`). \
         {rounds} rounds, the tools alternating and each first in half of them. dmaprof's \
         MiB/s is bytes over the time any I/O was in flight, its p50 each I/O's submission \
         to the reaping of its completion; fio's p50 is its completion latency. \
         `pread-direct/uring` compares dmaprof's pread-direct with its uring-direct at depth \
         1, both `--buffers reuse`. Command: `cargo xtask bench uring --rounds {rounds}`.\n",
        fs.device()
    )?;
    writeln!(
        out,
        "| depth | fio MiB/s | dmaprof MiB/s | dmaprof/fio MiB/s | fio p50 us | dmaprof p50 us | dmaprof/fio p50 | pread-direct/uring MiB/s |"
    )?;
    writeln!(out, "|---:|---:|---:|---:|---:|---:|---:|---:|")?;
    for depth in DEPTHS {
        let (mut fio, mut ours, mut pread) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..rounds {
            let first_fio = round % 2 == 0;
            if first_fio {
                fio.push(fio_once(&dir, depth)?);
            }
            ours.push(dmaprof_once(&dmaprof, &dir, "uring-direct", depth)?);
            if !first_fio {
                fio.push(fio_once(&dir, depth)?);
            }
            if depth == 1 {
                pread.push(dmaprof_once(&dmaprof, &dir, "pread-direct", 1)?);
            }
            eprintln!("bench uring: depth {depth} round {}/{rounds}", round + 1);
        }
        let pread_ratio = match depth {
            1 => Ratio::paired(&pread, &ours, 0).to_string(),
            _ => "-".into(),
        };
        writeln!(
            out,
            "| {depth} | {:.0} | {:.0} | {} | {:.0} | {:.0} | {} | {pread_ratio} |",
            median(&fio, 0),
            median(&ours, 0),
            Ratio::paired(&ours, &fio, 0),
            median(&fio, 1),
            median(&ours, 1),
            Ratio::paired(&ours, &fio, 1),
        )?;
    }
    Ok(out)
}
