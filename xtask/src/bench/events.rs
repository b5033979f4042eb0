//! `cargo xtask bench events`: how many per-call records the agent sustains.
//! fio (several threads of 4 KiB psync reads from a file in the page cache)
//! is traced by `dmaprof trace --pid` with every probe family on and one CSV
//! row per call. Steps of rising offered rate, then one with the agent
//! starved (niced and sharing one CPU with the readers) to show where loss
//! starts. Each step checks the records against fio's own I/O count.
use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
};

use std::fmt::Write as _;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::cmd;

const JOBS: u32 = 2;
const SECONDS: u32 = 5;

struct Step {
    label: String,
    /// fio --rate_iops per job (None: as fast as it goes).
    rate_per_job: Option<u32>,
    tracer: Tracer,
    /// Agent niced 19 and every thread pinned to CPU 0.
    starved: bool,
}

#[derive(Clone, Copy, PartialEq)]
enum Tracer {
    None,
    /// `dmaprof trace --pid <fio>` with these extra arguments
    /// (`--no-probe-stats`: what measuring the probes' cost costs;
    /// `--attach tracepoint`: pread64 on its syscall tracepoints).
    Dmaprof {
        args: &'static [&'static str],
    },
    /// `dmaprof trace --pid <an idle process>`: every probe attached, each
    /// fio syscall runs the programs, which stop at the process filter. The
    /// floor any syscall tracer pays here (the kernel's syscall-tracing path
    /// plus a program that does nothing).
    DmaprofIdle,
    /// The anchor everyone knows, on the same pread64 tracepoints.
    Bpftrace(Script),
}

#[derive(Clone, Copy, PartialEq)]
enum Script {
    /// Latency histogram kept in the kernel: nothing per call leaves it.
    Histogram,
    /// One printf line per call: per-call records, as dmaprof's CSV.
    Printf,
}

impl Script {
    fn source(self, pid: u32) -> String {
        let enter =
            format!("tracepoint:syscalls:sys_enter_pread64 /pid == {pid}/ {{ @s[tid] = nsecs; }}");
        let exit = format!("tracepoint:syscalls:sys_exit_pread64 /pid == {pid} && @s[tid]/");
        match self {
            Script::Histogram => format!(
                "{enter} {exit} {{ @ns = hist(nsecs - @s[tid]); @calls = count(); delete(@s[tid]); }}"
            ),
            Script::Printf => format!(
                "{enter} {exit} {{ printf(\"%d %d %d\\n\", tid, nsecs - @s[tid], args->ret); delete(@s[tid]); }}"
            ),
        }
    }
}

/// What a tracer recorded: calls, counted losses, its CPU seconds.
struct Recorded {
    events: u64,
    lost: u64,
    cpu_s: f64,
    /// dmaprof's BPF run-time statistics: (program, runs, ns per run).
    costs: Vec<(String, u64, f64)>,
}

struct Outcome {
    fio_ios: u64,
    fio_iops: f64,
    runtime_s: f64,
    recorded: Option<Recorded>,
}

fn fio_args(dir: &Path, s: &Step) -> Vec<String> {
    let mut a: Vec<String> = ["--name=events", "--output-format=json"]
        .iter()
        .chain(super::FIO_CACHED_4K_READS)
        .map(|s| s.to_string())
        .collect();
    a.push(format!("--filename={}", dir.join("events.bin").display()));
    a.push(format!("--numjobs={JOBS}"));
    a.push(format!("--runtime={SECONDS}"));
    // Time for the agent to attach before the first read.
    a.push("--startdelay=3".into());
    a.push(format!("--output={}", dir.join("fio.json").display()));
    if let Some(r) = s.rate_per_job {
        a.push(format!("--rate_iops={r}"));
    }
    if s.starved {
        a.push("--cpus_allowed=0".into());
    }
    a
}

fn run_step(dmaprof: &Path, dir: &Path, s: &Step) -> Result<Outcome> {
    let mut fio = Command::new("fio")
        .args(fio_args(dir, s))
        .stdout(Stdio::null())
        .spawn()
        .context("starting fio")?;
    let recorded = match s.tracer {
        Tracer::None => {
            wait_fio(&mut fio)?;
            None
        }
        Tracer::Dmaprof { args } => Some(dmaprof_trace(dmaprof, dir, s, args, &mut fio)?),
        Tracer::DmaprofIdle => {
            dmaprof_idle(dmaprof, &mut fio)?;
            None
        }
        Tracer::Bpftrace(script) => Some(bpftrace(script, &mut fio)?),
    };
    let f: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("fio.json"))?)
        .context("fio JSON")?;
    let jobs = f["jobs"].as_array().context("fio jobs")?;
    let sum = |k: &str| {
        jobs.iter()
            .map(|j| j["read"][k].as_f64().unwrap_or(0.0))
            .sum::<f64>()
    };
    let runtime_ms = jobs
        .iter()
        .map(|j| j["read"]["runtime"].as_f64().unwrap_or(0.0))
        .fold(0.0, f64::max);
    Ok(Outcome {
        fio_ios: sum("total_ios") as u64,
        fio_iops: sum("iops"),
        runtime_s: runtime_ms / 1e3,
        recorded,
    })
}

fn wait_fio(fio: &mut Child) -> Result<()> {
    if !fio.wait()?.success() {
        bail!("fio failed");
    }
    Ok(())
}

/// Lines of `r` up to and including the first containing `marker`; on
/// end of output first, fio is stopped and the lines so far are the error.
pub(super) fn read_until(
    lines: &mut impl Iterator<Item = std::io::Result<String>>,
    marker: &str,
    fio: &mut Child,
    who: &str,
) -> Result<()> {
    let mut log = String::new();
    for l in lines.by_ref() {
        let l = l?;
        log.push_str(&l);
        log.push('\n');
        if l.contains(marker) {
            return Ok(());
        }
    }
    let _ = fio.kill();
    bail!("{who} ended before it was tracing:\n{log}")
}

fn dmaprof_trace(
    dmaprof: &Path,
    dir: &Path,
    s: &Step,
    extra: &[&str],
    fio: &mut Child,
) -> Result<Recorded> {
    let (csv, json) = (dir.join("events.csv"), dir.join("events.json"));
    let mut c = if s.starved {
        let mut c = Command::new("taskset");
        c.args(["-c", "0", "nice", "-n", "19"]).arg(dmaprof);
        c
    } else {
        Command::new(dmaprof)
    };
    c.args(["trace", "--headless", "--pid", &fio.id().to_string()])
        .args(extra)
        .arg("--csv")
        .arg(&csv)
        .arg("--json")
        .arg(&json);
    let tracer = Tracing::start(&mut c, fio)?;
    tracer.end(None)?;
    wait_fio(fio)?;
    let _ = std::fs::remove_file(&csv);
    let t: Value = serde_json::from_str(&std::fs::read_to_string(&json)?)?;
    Ok(Recorded {
        events: t["events"].as_u64().unwrap_or(0),
        lost: t["lost"]
            .as_object()
            .map(|m| m.values().filter_map(Value::as_u64).sum())
            .unwrap_or(0),
        cpu_s: t["agent_user_s"].as_f64().unwrap_or(0.0) + t["agent_sys_s"].as_f64().unwrap_or(0.0),
        costs: t["probe_costs"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|c| {
                        let n = |k: &str| c[k].as_u64().unwrap_or(0);
                        let runs = n("runs");
                        let per_run = n("run_ns") as f64 / runs.max(1) as f64;
                        (
                            c["program"].as_str().unwrap_or("?").to_string(),
                            runs,
                            per_run,
                        )
                    })
                    .collect()
            })
            .unwrap_or_default(),
    })
}

/// A `dmaprof trace` child that has said it is tracing, its stderr drained.
pub(super) struct Tracing {
    child: Child,
    stderr: std::thread::JoinHandle<Vec<String>>,
}

impl Tracing {
    /// Spawns `c` and returns once it is attached (before fio's start
    /// delay ends); fio is stopped if it ends first.
    pub(super) fn start(c: &mut Command, fio: &mut Child) -> Result<Tracing> {
        let mut child = c
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting dmaprof trace")?;
        let mut lines = BufReader::new(child.stderr.take().context("stderr")?).lines();
        read_until(&mut lines, "dmaprof: tracing", fio, "dmaprof trace")?;
        // Keep draining stderr so the agent never blocks on it.
        let stderr = std::thread::spawn(move || lines.map_while(Result::ok).collect());
        Ok(Tracing { child, stderr })
    }

    /// Waits for it to end (after `signal`, if given); its stderr if it failed.
    pub(super) fn end(mut self, signal: Option<i32>) -> Result<()> {
        if let Some(sig) = signal {
            // SAFETY: signalling our own child, still unreaped.
            unsafe { libc::kill(self.child.id() as i32, sig) };
        }
        let status = self.child.wait()?;
        let rest = self.stderr.join().unwrap_or_default();
        if !status.success() {
            bail!("dmaprof trace failed ({status}):\n{}", rest.join("\n"));
        }
        Ok(())
    }
}

/// dmaprof tracing an idle process while fio runs, stopped with SIGINT.
fn dmaprof_idle(dmaprof: &Path, fio: &mut Child) -> Result<()> {
    let mut idle = Command::new("sleep")
        .arg("infinity")
        .spawn()
        .context("starting sleep")?;
    let result = (|| {
        let mut c = Command::new(dmaprof);
        c.args(["trace", "--headless", "--pid", &idle.id().to_string()]);
        let tracer = Tracing::start(&mut c, fio)?;
        let waited = wait_fio(fio);
        tracer.end(Some(libc::SIGINT))?;
        waited
    })();
    let _ = idle.kill();
    let _ = idle.wait();
    result
}

/// bpftrace on fio's pid until fio ends, then SIGINT (it prints its maps
/// and exits). Its CPU is read from /proc before the signal.
fn bpftrace(script: Script, fio: &mut Child) -> Result<Recorded> {
    let mut child = Command::new("bpftrace")
        .arg("-e")
        .arg(script.source(fio.id()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting bpftrace")?;
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    read_until(&mut lines, "Attaching", fio, "bpftrace")?;
    // Count printf records and pick up the maps and loss reports as they come.
    let reader = std::thread::spawn(move || {
        let (mut events, mut lost, mut calls) = (0u64, 0u64, None);
        for l in lines.map_while(Result::ok) {
            if l.split(' ').count() == 3 && l.split(' ').all(|f| f.parse::<i64>().is_ok()) {
                events += 1;
            } else if let Some(n) = l.strip_prefix("@calls: ") {
                calls = n.trim().parse::<u64>().ok();
            } else if let Some(n) = l.strip_prefix("Lost ") {
                lost += n
                    .split(' ')
                    .next()
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
        (calls.unwrap_or(events), lost)
    });
    let stderr = child.stderr.take().context("stderr")?;
    let errors = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    wait_fio(fio)?;
    let cpu_s = process_cpu_s(child.id())?;
    // SAFETY: signalling our own child, still unreaped.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait()?;
    let (events, lost) = reader.join().unwrap_or_default();
    let errors = errors.join().unwrap_or_default();
    if !status.success() {
        bail!("bpftrace failed ({status}):\n{errors}");
    }
    Ok(Recorded {
        events,
        lost,
        cpu_s,
        costs: Vec::new(),
    })
}

/// utime + stime of a live process, from /proc/PID/stat.
fn process_cpu_s(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised name: state is the first; utime, stime the 12th, 13th.
    let rest = stat.rsplit_once(')').context("/proc stat")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok((ticks(11) + ticks(12)) / hz)
}

pub fn run() -> Result<String> {
    super::fidelity::ensure_fio()?;
    super::ensure_debian_tool("bpftrace", "bpftrace")?;
    let dmaprof = cmd::build_dmaprof()?;
    let dir = Path::new("/var/tmp/dmaprof-events");
    std::fs::create_dir_all(dir)?;
    // Lay the file out and read it once: every measured read hits the page cache.
    super::fidelity::warm_64m(&dir.join("events.bin"))?;
    let step = |label: &str, rate_per_job, tracer, starved| Step {
        label: label.into(),
        rate_per_job,
        tracer,
        starved,
    };
    let dmaprof_on = Tracer::Dmaprof { args: &[] };
    let mut steps = vec![
        step("untraced, max", None, Tracer::None, false),
        step(
            "floor: dmaprof attached, tracing an idle process",
            None,
            Tracer::DmaprofIdle,
            false,
        ),
    ];
    for r in [25_000, 100_000, 250_000] {
        let label = format!("{}k/s offered", r * JOBS / 1000);
        steps.push(step(&label, Some(r), dmaprof_on, false));
    }
    steps.extend([
        step("max", None, dmaprof_on, false),
        step(
            "max, --no-probe-stats",
            None,
            Tracer::Dmaprof {
                args: &["--no-probe-stats"],
            },
            false,
        ),
        step(
            "max, --metrics-addr (every call also into the endpoint's histograms)",
            None,
            Tracer::Dmaprof {
                args: &["--metrics-addr", "127.0.0.1:0", "--metrics-linger", "0"],
            },
            false,
        ),
        step(
            "max, pread64 on syscalls: tracepoints (--attach tracepoint)",
            None,
            Tracer::Dmaprof {
                args: &["--attach", "tracepoint"],
            },
            false,
        ),
        step(
            "max, agent starved (nice 19, all on CPU 0)",
            None,
            dmaprof_on,
            true,
        ),
        step(
            "max, bpftrace histogram",
            None,
            Tracer::Bpftrace(Script::Histogram),
            false,
        ),
        step(
            "max, bpftrace printf",
            None,
            Tracer::Bpftrace(Script::Printf),
            false,
        ),
        // The untraced rate again: the machine's drift over the run.
        step("untraced, max (again)", None, Tracer::None, false),
    ]);

    let mut out = String::new();
    writeln!(
        out,
        "## Event rate\n\n\
         fio, {JOBS} threads of 4 KiB psync reads of a 64 MiB file in the page cache, {SECONDS} s per \
         step, traced by `dmaprof trace --pid <fio> --csv --json` with every probe family on \
         (dma-buf ioctl, rw_file, pread64, block, sched): one CSV row per pread; pread64 on \
         its first rung, the BTF-typed raw `sys_enter`/`sys_exit` tracepoints, and once on \
         the `syscalls:` tracepoints (`--attach tracepoint`). The floor step attaches \
         every probe but traces an idle process: each fio syscall runs the programs, which \
         stop at the process filter, so it is what the kernel's syscall-tracing path costs \
         any tracer here. Beside it, on the same load in the same run, bpftrace (Debian's \
         {}) on the pread64 syscall tracepoints: an in-kernel latency histogram (`hist()`, nothing per call leaves the \
         kernel) and a per-call `printf`. `records = fio I/Os` checks every call fio made was \
         recorded (the histogram's `count()`, the printf lines). Tracer CPU is the tracer \
         process's user+sys over fio's running time. Command: `cargo xtask bench events`.\n",
        cmd::output(Command::new("bpftrace").arg("--version"))
            .unwrap_or_default()
            .trim()
    )?;
    writeln!(
        out,
        "| step | fio IOPS | x untraced (mean of both untraced steps) | records/s | records = fio I/Os | lost | tracer CPU (% of a core) | tracer CPU s per million records |"
    )?;
    writeln!(out, "|---|---:|---:|---:|---|---:|---:|---:|")?;
    let mut best_lossless = 0.0f64;
    let mut loss_at: Option<String> = None;
    let mut max_costs = Vec::new();
    let mut outcomes = Vec::new();
    for s in &steps {
        eprintln!("bench: events step {}", s.label);
        outcomes.push(run_step(&dmaprof, dir, s)?);
    }
    // Against the mean of the untraced runs at the start and the end.
    let plain: Vec<f64> = steps
        .iter()
        .zip(&outcomes)
        .filter(|(s, _)| s.tracer == Tracer::None)
        .map(|(_, o)| o.fio_iops)
        .collect();
    let untraced = plain.iter().sum::<f64>() / plain.len().max(1) as f64;
    for (s, o) in steps.iter().zip(&outcomes) {
        let vs = format!("{:.2}", o.fio_iops / untraced.max(f64::MIN_POSITIVE));
        let Some(r) = &o.recorded else {
            writeln!(
                out,
                "| {} | {:.0} | {vs} | - | - | - | - | - |",
                s.label, o.fio_iops
            )?;
            continue;
        };
        let rate = r.events as f64 / o.runtime_s.max(1e-9);
        if s.label == "max" {
            max_costs.clone_from(&r.costs);
        }
        if matches!(s.tracer, Tracer::Dmaprof { .. }) {
            if r.lost == 0 && r.events == o.fio_ios {
                best_lossless = best_lossless.max(rate);
            } else if loss_at.is_none() {
                loss_at = Some(s.label.clone());
            }
        }
        writeln!(
            out,
            "| {} | {:.0} | {vs} | {:.0} | {} | {} | {:.0}% | {} |",
            s.label,
            o.fio_iops,
            rate,
            if r.events == o.fio_ios {
                format!("yes ({})", r.events)
            } else if r.events + r.lost == o.fio_ios {
                format!("no: {} + {} counted lost = {}", r.events, r.lost, o.fio_ios)
            } else {
                format!("NO ({} vs {})", r.events, o.fio_ios)
            },
            r.lost,
            r.cpu_s / o.runtime_s.max(1e-9) * 100.0,
            match r.events {
                0 => "-".to_string(),
                n => format!("{:.2}", r.cpu_s / n as f64 * 1e6),
            }
        )?;
    }
    if !max_costs.is_empty() {
        writeln!(
            out,
            "\nWhere a traced call's time goes, step \"max\" (the kernel's BPF run-time \
             statistics, `probe_costs` in `dmaprof trace`'s JSON):\n\n\
             | program | runs | ns per run |\n|---|---:|---:|"
        )?;
        for (program, runs, per_run) in &max_costs {
            writeln!(out, "| {program} | {runs} | {per_run:.0} |")?;
        }
    }
    writeln!(
        out,
        "\ngoal: dmaprof recording every call at >= 0.8x the untraced rate and ahead of \
         bpftrace's in-kernel histogram (the `x untraced` column); at least 500,000 \
         per-call records/s with zero loss, agent at most one core: best lossless dmaprof \
         step {best_lossless:.0} records/s; dmaprof loss {}.",
        match loss_at {
            Some(l) => format!("first seen at step \"{l}\""),
            None => "not seen at any step (the readers, not the agent, set the ceiling)".into(),
        }
    )?;
    Ok(out)
}
