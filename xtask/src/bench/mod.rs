//! `cargo xtask bench`: benchmarks that print figures (speed goals are read
//! from them, never asserted by tests), and the report that gathers them.
mod events;
mod fidelity;
mod loopfs;
mod overhead;
mod profile;
mod soak;
pub mod stress;
mod uring;

use std::process::{Command, ExitCode};

use std::fmt::Write as _;

use profiler_common::stats;

use anyhow::{Context, Result};

use crate::cmd;

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
    /// dmaprof --buffers reuse against fio on the same work, and distinct
    /// against reuse (installs fio): sequential read and write, buffered and
    /// O_DIRECT, 4 KiB / 1 MiB / 32 MiB blocks.
    Fidelity {
        /// loop: ext4 on a loop device over RAM, set up and torn down here
        /// (no disk drift; the VM's CPU noise remains); disk: --dir on this machine's disk.
        #[arg(long, value_enum, default_value = "loop")]
        device: fidelity::Device,
        /// Scratch directory with --device disk.
        #[arg(long, default_value = "/var/tmp/dmaprof-fidelity")]
        dir: String,
        /// Rounds per case, each tool first in half of them (use an even number).
        #[arg(long, default_value_t = 10)]
        rounds: u32,
        /// Only cases whose label contains this (labels: read-direct-1M, write-buffered-4K, ...).
        #[arg(long)]
        only: Option<String>,
    },
    /// Per-call records the agent sustains (fio 4 KiB page-cache reads
    /// traced by `dmaprof trace`), where loss starts, agent CPU per million.
    Events,
    /// What `--profile` costs (99 and 999 Hz against none, on the RAM-backed
    /// loop device), and its top kernel functions beside bpftrace's on one load.
    Profile,
    /// dmaprof's uring-direct against fio's io_uring engine at queue depths
    /// 1, 8 and 32 (O_DIRECT 1 MiB reads, the RAM-backed loop device), and
    /// pread-direct beside uring-direct at depth 1.
    Uring {
        #[arg(long, default_value_t = 6)]
        rounds: u32,
    },
    /// Agent RSS after 1 minute and at the end of a continuous traced run,
    /// and the CPU of the dashboard drawing at 10 fps.
    Soak {
        #[arg(long, default_value_t = 10)]
        minutes: u32,
    },
    /// Back-to-back traces of a process making known numbers of dma-buf
    /// ioctls, preads and O_DIRECT reads while other BPF users load the
    /// CPUs: each records exactly the known counts or reports the shortfall
    /// in its lost events; an unexplained shortfall fails (exit 1).
    Stress {
        #[arg(long, default_value_t = 500)]
        rounds: u32,
    },
    /// Everything in one markdown report (machine, kernel, commands,
    /// overhead host and lab, fidelity, event rate, soak), written to --out.
    Report {
        #[arg(long, default_value_t = 6)]
        rounds: u32,
        #[arg(long, default_value_t = 10)]
        minutes: u32,
        #[arg(long, default_value = "docs/bench-report.md")]
        out: std::path::PathBuf,
    },
}

pub fn run(b: Bench) -> Result<ExitCode> {
    let text = match b {
        Bench::Fidelity {
            device,
            dir,
            rounds,
            only,
        } => fidelity::run(&fidelity::Options {
            device,
            dir,
            rounds,
            only,
        })?,
        Bench::Overhead { rounds, no_lab } => overhead::run(rounds, no_lab)?,
        Bench::Events => events::run()?,
        Bench::Profile => profile::run()?,
        Bench::Soak { minutes } => soak::run(minutes)?,
        Bench::Uring { rounds } => uring::run(rounds)?,
        Bench::Stress { rounds } => stress::run(rounds)?,
        Bench::Report {
            rounds,
            minutes,
            out,
        } => {
            let report = report(rounds, minutes, &out)?;
            eprintln!("bench: report written to {}", out.display());
            report
        }
    };
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

/// A benchmark's tool, installed from Debian's package the first time
/// (idempotent: nothing is done when `binary --version` already runs).
pub fn ensure_debian_tool(binary: &str, package: &str) -> Result<()> {
    if cmd::succeeds(Command::new(binary).arg("--version")) {
        return Ok(());
    }
    eprintln!("bench: installing {package} (Debian's package)");
    cmd::run(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends", package])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

/// fio reading 4 KiB blocks of a 64 MiB file in the page cache with pread,
/// jobs as threads of one process (one pid to trace), for a set time.
pub const FIO_CACHED_4K_READS: &[&str] = &[
    "--rw=read",
    "--bs=4k",
    "--size=64m",
    "--ioengine=psync",
    "--thread",
    "--invalidate=0",
    "--time_based",
];

/// The whole report: what was measured where, with which commands.
/// Written to `out` as each section ends (a later section's failure keeps
/// the figures already made, marked incomplete).
fn report(rounds: u32, minutes: u32, out: &std::path::Path) -> Result<String> {
    let mut r = String::new();
    let sh = |c: &str| cmd::output(Command::new("sh").arg("-c").arg(c)).unwrap_or_default();
    writeln!(r, "# dmaprof benchmark report\n")?;
    writeln!(r, "- date: {}", sh("date -u +%Y-%m-%dT%H:%MZ").trim())?;
    writeln!(
        r,
        "- machine: {} CPUs ({}), {} memory; {}",
        sh("nproc").trim(),
        sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").trim(),
        sh("free -h | awk '/Mem:/ {print $2}'").trim(),
        sh("uname -srm").trim()
    )?;
    writeln!(r, "- commit: {}", sh("git rev-parse --short HEAD").trim())?;
    writeln!(
        r,
        "- command: `cargo xtask bench report --rounds {rounds} --minutes {minutes}`, which runs \
         `bench overhead --rounds {rounds}`, `bench fidelity --rounds 10` (loop device), `bench fidelity --device disk --rounds 6`, `bench events`, `bench profile`, `bench uring --rounds {rounds}`, \
         `bench stress --rounds 500` and `bench soak --minutes {minutes}` in that order"
    )?;
    writeln!(
        r,
        "- lab: Debian linux-source-6.12 + the project's RW_FILE patches, QEMU TCG, 2 vCPUs, 2 GiB\n"
    )?;
    writeln!(
        r,
        "Caveat: this machine is a shared VM whose disk throughput varies by tens of percent from \
         one minute to the next; that is why every comparison interleaves its sides and compares \
         medians.\n"
    )?;
    type Section<'a> = (&'a str, Box<dyn Fn() -> Result<String> + 'a>);
    let fidelity_on = |device, rounds| {
        move || {
            fidelity::run(&fidelity::Options {
                device,
                dir: "/var/tmp/dmaprof-fidelity".into(),
                rounds,
                only: None,
            })
        }
    };
    // The drift-free device for the comparison, the real disk beside it.
    let sections: Vec<Section> = vec![
        ("overhead", Box::new(|| overhead::run(rounds, false))),
        (
            "fidelity (loop)",
            Box::new(fidelity_on(fidelity::Device::Loop, 10)),
        ),
        (
            "fidelity (disk)",
            Box::new(fidelity_on(fidelity::Device::Disk, 6)),
        ),
        ("events", Box::new(events::run)),
        ("profile", Box::new(profile::run)),
        ("io_uring", Box::new(|| uring::run(rounds))),
        ("stress", Box::new(|| stress::run(500))),
        ("soak", Box::new(|| soak::run(minutes))),
    ];
    let save = |text: &str| {
        std::fs::write(out, text).with_context(|| format!("writing {}", out.display()))
    };
    for (name, section) in sections {
        match section() {
            Ok(text) => {
                r.push_str(&text);
                writeln!(r)?;
                save(&r)?;
            }
            Err(e) => {
                save(&format!(
                    "{r}\n**Incomplete: the {name} section failed: {e:#}**\n"
                ))?;
                return Err(e.context(format!(
                    "report section {name} (earlier sections kept in {})",
                    out.display()
                )));
            }
        }
    }
    Ok(r)
}

/// Runs one `dmaprof run` (its arguments in `run`) and reads its first
/// mode's (MiB/s, p50 us) from the results JSON, written off the measured
/// file system (the device carries only the measured I/O).
fn dmaprof_figures(run: &mut Command) -> Result<[f64; 2]> {
    let json = std::env::temp_dir().join(format!("dmaprof-bench-{}.json", std::process::id()));
    cmd::output(run.arg("--json").arg(&json))?;
    let d: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json)?)?;
    let _ = std::fs::remove_file(&json);
    let s = &d["modes"][0]["summary"];
    let f = |k: &str| s[k].as_f64().unwrap_or(0.0);
    Ok([f("mib_per_s"), f("lat_p50_us")])
}

/// How benchmarks state a ratio: the median of per-round ratios a/b (the
/// runs of one round are seconds apart, so slow drift cancels) and its
/// distribution-free 95% interval.
#[derive(Clone, Copy)]
pub struct Ratio {
    pub median: f64,
    pub ci95: Option<(f64, f64)>,
}

impl Ratio {
    /// Round k of `a` against round k of `b`, figure `i` of each.
    pub fn paired<const N: usize>(a: &[[f64; N]], b: &[[f64; N]], i: usize) -> Ratio {
        let r: Vec<f64> = a
            .iter()
            .zip(b)
            .map(|(a, b)| a[i] / b[i].max(f64::MIN_POSITIVE))
            .collect();
        Ratio::of(&r)
    }

    pub fn of(per_round: &[f64]) -> Ratio {
        Ratio {
            median: stats::median(per_round),
            ci95: stats::median_ci95(per_round),
        }
    }

    pub fn within(&self, tolerance: f64) -> bool {
        (self.median - 1.0).abs() <= tolerance
    }

    pub fn narrower_than(&self, half_width: f64) -> bool {
        self.ci95.is_some_and(|(lo, hi)| {
            self.median - lo <= half_width && hi - self.median <= half_width
        })
    }
}

impl std::fmt::Display for Ratio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.ci95 {
            Some((lo, hi)) => write!(f, "{:.3} [{lo:.3}, {hi:.3}]", self.median),
            None => write!(f, "{:.3} (too few rounds for a 95% interval)", self.median),
        }
    }
}
