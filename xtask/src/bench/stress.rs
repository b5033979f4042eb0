//! `cargo xtask bench stress`: do the counts hold while other BPF users
//! load the same CPUs? Many back-to-back `dmaprof trace --pid` of a process
//! that makes a known number of dma-buf ioctls (RW_FILE on a regular file:
//! ENOTTY here, the ioctl syscall tracepoints see it), cached preads and
//! O_DIRECT reads, while a second dmaprof traces everything, bpftrace
//! counts on the same tracepoints and prints its map 200 times a second,
//! and a loop of `bpf()` map syscalls runs (each holds its CPU's
//! `bpf_prog_active`, which makes the kernel skip classic tracepoint
//! programs). Every trace must record exactly the known counts, or say in
//! its `lost` what it missed: a shortfall with nothing lost is unexplained,
//! and fails the bench (`cargo xtask test` runs a short form).
use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use anyhow::{Context, Result, bail, ensure};

use crate::cmd;

const IOCTLS: u64 = 100;
const PREADS: u64 = 1000;
const DIRECT_READS: u64 = 16;
const DIRECT_BYTES: u64 = DIRECT_READS << 20;

/// What one trace recorded of the known work, and what it said it lost.
#[derive(Debug, Default)]
struct Round {
    ioctls: u64,
    preads: u64,
    block_read_bytes: u64,
    lost: u64,
    lost_text: String,
}

impl Round {
    fn short(&self) -> bool {
        self.ioctls < IOCTLS || self.preads < PREADS || self.block_read_bytes < DIRECT_BYTES
    }
}

pub fn run(rounds: u32) -> Result<String> {
    let dmaprof = cmd::build_dmaprof()?;
    super::ensure_debian_tool("bpftrace", "bpftrace")?;
    let dir = PathBuf::from("/var/tmp/dmaprof-stress");
    std::fs::create_dir_all(&dir)?;
    let data = dir.join("data.bin");
    std::fs::write(&data, vec![0x5au8; DIRECT_BYTES as usize])?;
    let _load = Load::start(&dmaprof)?;
    let (mut exact, mut explained, mut unexplained) = (0u32, 0u32, Vec::new());
    for i in 0..rounds {
        let r = round(&dmaprof, &dir, &data).with_context(|| format!("round {i}"))?;
        match (r.short(), r.lost) {
            (false, _) => exact += 1,
            (true, 0) => unexplained.push(format!("round {i}: {r:?}")),
            (true, _) => explained += 1,
        }
        if r.lost > 0 {
            eprintln!("stress: round {i}: lost {} ({})", r.lost, r.lost_text);
        }
    }
    let text = format!(
        "## Stress: counts under other BPF users\n\n\
         `cargo xtask bench stress --rounds {rounds}`: {rounds} traces (`dmaprof trace --pid`) of a \
         process making {IOCTLS} dma-buf ioctls, {PREADS} cached 4 KiB preads and {DIRECT_READS} \
         O_DIRECT 1 MiB reads, while a second `dmaprof trace --all`, a bpftrace on the same \
         tracepoints printing its map every 5 ms, and a loop of bpf() map lookups ran.\n\n\
         | traces | exact | short, loss reported | short, unexplained |\n|---|---|---|---|\n\
         | {rounds} | {exact} | {explained} | {} |\n",
        unexplained.len()
    );
    ensure!(
        unexplained.is_empty(),
        "{text}\nunexplained shortfalls:\n{}",
        unexplained.join("\n")
    );
    Ok(text)
}

/// One traced run of the known work.
fn round(dmaprof: &Path, dir: &Path, data: &Path) -> Result<Round> {
    let go = dir.join("go");
    let json = dir.join("trace.json");
    let _ = std::fs::remove_file(&go);
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(workload_script(data, &go))
        .stdout(Stdio::piped())
        .spawn()
        .context("python3")?;
    let mut ready = String::new();
    BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut ready)?;
    ensure!(
        ready.trim() == "ready",
        "the workload did not start: {ready}"
    );
    let mut tracer = Command::new(dmaprof)
        .args([
            "trace",
            "--headless",
            "--pid",
            &child.id().to_string(),
            "--json",
        ])
        .arg(&json)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stderr = BufReader::new(tracer.stderr.take().context("stderr")?);
    let mut log = String::new();
    loop {
        let mut line = String::new();
        if stderr.read_line(&mut line)? == 0 {
            let _ = child.kill();
            bail!("the tracer ended before tracing: {log}");
        }
        log.push_str(&line);
        if line.contains("dmaprof: tracing") {
            break;
        }
    }
    std::fs::write(&go, b"")?;
    let status = child.wait()?;
    ensure!(status.success(), "the workload failed: {status}");
    let out = tracer.wait_with_output()?;
    std::io::Read::read_to_string(&mut stderr, &mut log)?;
    ensure!(out.status.success(), "trace failed: {log}");
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json)?)?;
    let count = |k: &str| doc["by_kind"][k].as_u64().unwrap_or(0);
    let pid = child.id().to_string();
    // The block table's row of the traced process: pid, requests, read bytes ...
    let block_read_bytes = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.split_whitespace().next() == Some(pid.as_str()))
        .and_then(|l| l.split_whitespace().nth(2)?.parse().ok())
        .unwrap_or(0);
    let lost_text = log
        .lines()
        .find(|l| l.starts_with("dmaprof: probes: "))
        .unwrap_or("no verdict line")
        .to_string();
    Ok(Round {
        ioctls: count("ioctl"),
        preads: count("pread"),
        block_read_bytes,
        lost: lost_total(&doc["lost"]),
        lost_text,
    })
}

/// The lost counts that are losses (the JSON's numbers, less what is only
/// informative: completions of requests started before arming).
fn lost_total(lost: &serde_json::Value) -> u64 {
    lost.as_object()
        .map(|o| {
            o.iter()
                .filter(|(k, _)| {
                    !matches!(
                        k.as_str(),
                        "block_completions_started_before" | "block_in_flight_at_end"
                    )
                })
                .filter_map(|(_, v)| v.as_u64())
                .sum()
        })
        .unwrap_or(0)
}

fn workload_script(data: &Path, go: &Path) -> String {
    format!(
        r#"
import errno, fcntl, mmap, os, struct, sys, time
print("ready", flush=True)
deadline = time.time() + 60
while not os.path.exists("{go}"):
    if time.time() > deadline:
        sys.exit("no go file in 60 s")
    time.sleep(0.01)
f = open("{data}", "rb")
for _ in range({IOCTLS}):
    try:
        fcntl.ioctl(f.fileno(), 0x40206204, struct.pack("IiQQQ", 1, f.fileno(), 0, 0, 4096))
    except OSError as e:
        assert e.errno == errno.ENOTTY, e
fd = os.open("{data}", os.O_RDONLY)
for i in range({PREADS}):
    assert len(os.pread(fd, 4096, (i % 256) * 4096)) == 4096
dfd = os.open("{data}", os.O_RDONLY | os.O_DIRECT)
os.posix_fadvise(dfd, 0, 0, os.POSIX_FADV_DONTNEED)
buf = mmap.mmap(-1, 1 << 20)
for i in range({DIRECT_READS}):
    assert os.preadv(dfd, [buf], i << 20) == 1 << 20
"#,
        go = go.display(),
        data = data.display()
    )
}

/// The other BPF users, for the whole bench; stopped when dropped.
struct Load(Vec<Child>);

impl Load {
    fn start(dmaprof: &Path) -> Result<Load> {
        let quiet = || Stdio::null();
        let mut children = vec![
            Command::new(dmaprof)
                .args(["trace", "--all", "--headless", "--no-probe-stats"])
                .stdout(quiet())
                .stderr(quiet())
                .spawn()
                .context("a second dmaprof")?,
        ];
        children.push(
            Command::new("bpftrace")
                .arg("-e")
                .arg(
                    "tracepoint:block:block_rq_complete, tracepoint:block:block_io_start, \
                     tracepoint:syscalls:sys_enter_ioctl, tracepoint:sched:sched_switch \
                     { @[probe] = count(); } interval:ms:5 { print(@); clear(@); }",
                )
                .stdout(quiet())
                .stderr(quiet())
                .spawn()
                .context("bpftrace")?,
        );
        children.push(
            Command::new("python3")
                .arg("-c")
                .arg(MAP_SYSCALL_LOOP)
                .stdout(quiet())
                .spawn()
                .context("the bpf() map syscall loop")?,
        );
        Ok(Load(children))
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// bpf(BPF_MAP_CREATE) of a small hash map, then BPF_MAP_LOOKUP_ELEM as
/// fast as python calls it (each holds the CPU's bpf_prog_active).
const MAP_SYSCALL_LOOP: &str = r#"
import ctypes, struct
libc = ctypes.CDLL(None, use_errno=True)
SYS_bpf = {"x86_64": 321, "aarch64": 280}[__import__("platform").machine()]
create = ctypes.create_string_buffer(struct.pack("IIII", 1, 4, 8, 16), 72)
fd = libc.syscall(SYS_bpf, 0, create, 72)
assert fd >= 0, ctypes.get_errno()
key = ctypes.create_string_buffer(4)
value = ctypes.create_string_buffer(8)
attr = ctypes.create_string_buffer(struct.pack("IIQQQ", fd, 0, ctypes.addressof(key), ctypes.addressof(value), 0), 32)
while True:
    libc.syscall(SYS_bpf, 1, attr, 32)
"#;
