//! `cargo xtask bench soak`: a continuous run with the dashboard on. fio
//! reads 4 KiB blocks from the page cache at a steady rate for the whole
//! run while `dmaprof trace --pid` draws its dashboard at 10 fps in a tmux
//! terminal. Samples the agent's RSS (after 1 minute and at the end: goal
//! flat within 5%) and the CPU of the thread that draws (`dmaprof-agent`,
//! the runtime's worker, where the dashboard task runs; the events are read
//! on the main thread): goal at most 5% of a core.
use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use std::fmt::Write as _;

use anyhow::{Context, Result, bail};

use crate::cmd;

const RATE_PER_JOB: u32 = 50_000;
const JOBS: u32 = 2;

/// utime + stime of a /proc stat line, in seconds.
fn cpu_s(stat: &str) -> Option<f64> {
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the comm: state is field 3, utime 14 and stime 15 (1-based).
    let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    Some(ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64)
}

fn rss_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The dashboard is a task on the runtime's one worker thread.
const DRAWING_THREAD: &str = "dmaprof-agent";

fn ui_thread(pid: u32) -> Option<u32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .filter_map(|e| e.ok())
        .find(|e| {
            std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == DRAWING_THREAD)
        })?
        .file_name()
        .to_str()?
        .parse()
        .ok()
}

fn find_agent() -> Option<u32> {
    let out = cmd::output(Command::new("pgrep").args(["-n", "-x", "dmaprof"])).ok()?;
    out.trim().parse().ok()
}

struct TmuxSession(String);

impl Drop for TmuxSession {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.0])
            .stderr(Stdio::null())
            .status();
    }
}

pub fn run(minutes: u32) -> Result<String> {
    super::fidelity::ensure_fio()?;
    let dmaprof = cmd::build_dmaprof()?;
    let dir = Path::new("/var/tmp/dmaprof-soak");
    std::fs::create_dir_all(dir)?;
    let file = dir.join("soak.bin");
    super::fidelity::warm_64m(&file)?;
    let total = Duration::from_secs(minutes as u64 * 60);
    let mut fio = Command::new("fio")
        .args(["--name=soak", "--startdelay=2", "--output=/dev/null"])
        .args(super::FIO_CACHED_4K_READS)
        .arg(format!("--filename={}", file.display()))
        .arg(format!("--numjobs={JOBS}"))
        .arg(format!("--rate_iops={RATE_PER_JOB}"))
        .arg(format!("--runtime={}", total.as_secs() + 30))
        .stdout(Stdio::null())
        .spawn()
        .context("starting fio")?;
    let name = format!("dmaprof-soak-{}", std::process::id());
    let err = dir.join("trace.err");
    cmd::run(Command::new("tmux").args([
        "new-session",
        "-d",
        "-s",
        &name,
        "-x",
        "160",
        "-y",
        "48",
        &format!(
            "{} trace --pid {} 2>{}",
            dmaprof.display(),
            fio.id(),
            err.display()
        ),
    ]))?;
    let _session = TmuxSession(name.clone());
    let start = Instant::now();
    let (agent, ui) = loop {
        if let Some(a) = find_agent()
            && let Some(u) = ui_thread(a)
        {
            break (a, u);
        }
        if start.elapsed() > Duration::from_secs(30) {
            let _ = fio.kill();
            bail!(
                "the dashboard did not start:\n{}",
                std::fs::read_to_string(&err).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stat = |p: String| std::fs::read_to_string(p).ok().and_then(|s| cpu_s(&s));
    let sample = || {
        (
            start.elapsed().as_secs_f64(),
            rss_kib(agent),
            stat(format!("/proc/{agent}/task/{ui}/stat")),
            stat(format!("/proc/{agent}/stat")),
        )
    };
    let mut samples = Vec::new();
    let mut at_1min = None;
    while start.elapsed() < total {
        std::thread::sleep(Duration::from_secs(5));
        let s = sample();
        if s.1.is_none() {
            let _ = fio.kill();
            bail!(
                "the agent exited early:\n{}",
                std::fs::read_to_string(&err).unwrap_or_default()
            );
        }
        if at_1min.is_none() && s.0 >= 60.0 {
            at_1min = Some(s);
        }
        samples.push(s);
    }
    let end = sample();
    let screen = cmd::output(Command::new("tmux").args(["capture-pane", "-p", "-t", &name]))
        .unwrap_or_default();
    let _ = fio.kill();
    let _ = fio.wait();
    // The agent ends by itself when fio is gone.
    let _ = Command::new("tmux")
        .args(["send-keys", "-t", &name, "q"])
        .status();
    std::thread::sleep(Duration::from_secs(2));
    let summary = std::fs::read_to_string(&err).unwrap_or_default();

    let first = at_1min.context("the run was shorter than a minute")?;
    let (r1, rn) = (first.1.unwrap_or(0), end.1.unwrap_or(0));
    let max_rss = samples.iter().filter_map(|s| s.1).max().unwrap_or(0);
    let window = end.0 - first.0;
    let ui_pct = (end.2.unwrap_or(0.0) - first.2.unwrap_or(0.0)) / window * 100.0;
    let agent_pct = (end.3.unwrap_or(0.0) - first.3.unwrap_or(0.0)) / window * 100.0;
    let events_line = summary
        .lines()
        .rev()
        .find(|l| l.contains(" events in "))
        .unwrap_or("(no summary: the agent had not finished)")
        .trim()
        .to_string();
    let mut out = String::new();
    writeln!(
        out,
        "## Memory and dashboard CPU over a continuous run\n\n\
         `dmaprof trace --pid <fio>` with the dashboard at 10 fps in a 160x48 tmux terminal for \
         {minutes} min while fio reads 4 KiB blocks from the page cache at {} calls/s ({JOBS} \
         threads); every probe family on. Command: `cargo xtask bench soak --minutes {minutes}`.\n",
        RATE_PER_JOB * JOBS
    )?;
    writeln!(out, "| figure | value | goal |")?;
    writeln!(out, "|---|---:|---|")?;
    writeln!(
        out,
        "| agent RSS after 1 min | {:.1} MiB | |",
        r1 as f64 / 1024.0
    )?;
    writeln!(
        out,
        "| agent RSS after {minutes} min | {:.1} MiB ({:+.1}%) | flat within 5% |",
        rn as f64 / 1024.0,
        (rn as f64 / r1.max(1) as f64 - 1.0) * 100.0
    )?;
    writeln!(
        out,
        "| agent RSS max over the run | {:.1} MiB | |",
        max_rss as f64 / 1024.0
    )?;
    writeln!(
        out,
        "| dashboard thread CPU (1 min to end) | {ui_pct:.2}% of a core | at most 5% |"
    )?;
    writeln!(
        out,
        "| whole agent CPU (1 min to end) | {agent_pct:.1}% of a core | at most one core |"
    )?;
    writeln!(out, "\nagent's own summary: `{events_line}`")?;
    let rss_series: Vec<String> = samples
        .iter()
        .step_by(12)
        .map(|s| format!("{:.0}s {:.1}", s.0, s.1.unwrap_or(0) as f64 / 1024.0))
        .collect();
    writeln!(
        out,
        "\nRSS samples (MiB, one a minute): {}",
        rss_series.join(", ")
    )?;
    if !screen.contains("pread") {
        eprintln!("bench: warning: the captured dashboard has no pread row:\n{screen}");
    }
    Ok(out)
}
