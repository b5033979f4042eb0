//! SIGINT / SIGTERM at chosen and at random points of a run (during the
//! buffer allocation, mid-transfer, during fsync / verification, during the
//! export, under the dashboard): the output files hold every call done and
//! are complete, no temporary file is left, the terminal is given back, and
//! no eBPF program, link or map of the process survives it.
//!
//! Phases are aimed at with `DMAPROF_ANNOUNCE_PHASES` (dmaprof then prints
//! `dmaprof: phase <name> <mode> <iteration>` on stderr as each starts): the
//! test reads stderr line by line and signals as soon as the line arrives
//! (or a set delay after it). Each trial prints where the signal landed.
//! Random trials print their seed; rerun one with `DMAPROF_SIGNALS_SEED=<n>`.
//! While dmaprof runs, the ids of the eBPF programs, links and maps it holds
//! are read from /proc/<pid>/fdinfo; after it exits each must be gone
//! (bpf(2) *_GET_FD_BY_ID: ENOENT) and absent from the kernel's lists.
use std::{
    collections::{BTreeMap, BTreeSet},
    io::{BufRead, BufReader, Read},
    os::fd::AsRawFd,
    os::unix::process::ExitStatusExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{Arc, Mutex, Weak, mpsc},
    time::{Duration, Instant},
};

use dmaprof_e2e::{
    BpfIds, Tmux, bpf_ids_held_by, disk_scratch_dir, dma_bufs_alive, dmaprof_bin, probe_lock,
    require_bpf, wait_bpf_ids_gone,
};
use profiler::{
    export::{calls_csv, results},
    workload::{Verification, datafile},
};
use profiler_common::pattern;

/// Read trials: 512 MiB in 4 KiB calls, so each phase lasts long enough to
/// be aimed at (about 0.2 s of allocation, 0.3 s of transfers on the 2-core
/// dev VM, where a signal reaches dmaprof within a millisecond or so).
const READ_SIZE: u64 = 512 << 20;
const READ_CHUNK: u64 = 4 << 10;
const ITERATIONS: u32 = 2;
/// Generous bounds: the machine may be loaded; nothing here is a benchmark.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);
const EXIT_TIMEOUT: Duration = Duration::from_secs(60);
const FREE_TIMEOUT: Duration = Duration::from_secs(5);
/// Mid-transfer: this long after the transfers start (they last ~0.2-0.4 s;
/// signalled right at the line, dmaprof often sees the stop before its
/// first call: the reader woken by its write may run before it goes on).
const INTO_TRANSFER: Duration = Duration::from_millis(50);

fn sig_name(sig: libc::c_int) -> &'static str {
    match sig {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        _ => "signal",
    }
}

/// The 512 MiB source file, made once by dmaprof (pattern content, marked
/// as its own so passes verify against the pattern) and shared by the tests
/// that run at the same time; deleted when the last of them ends.
struct DataFile {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

fn data_file() -> Arc<DataFile> {
    static SHARED: Mutex<Weak<DataFile>> = Mutex::new(Weak::new());
    let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(d) = shared.upgrade() {
        return d;
    }
    let dir = disk_scratch_dir();
    let out = Command::new(dmaprof_bin())
        .args([
            "run",
            "--no-probes",
            "--mode",
            "pread",
            "--size",
            "512M",
            "--chunk",
            "32M",
            "--cache",
            "warm",
            "--dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "making the test file: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = dir.path().join("dmaprof-data-512M.bin");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), READ_SIZE);
    let d = Arc::new(DataFile { _dir: dir, path });
    *shared = Arc::downgrade(&d);
    d
}

fn read_args(data: &Path) -> Vec<String> {
    [
        "--mode",
        "pread",
        "--size",
        "512M",
        "--chunk",
        "4K",
        "--cache",
        "warm",
        "--iterations",
        &ITERATIONS.to_string(),
        "--file",
        &data.display().to_string(),
    ]
    .map(String::from)
    .to_vec()
}

/// The line of dmaprof's stderr a signal is aimed at.
#[derive(Clone, Copy, Debug)]
enum At {
    /// The start of a phase of a pass (`alloc`, `transfer`, `sync`, `verify`,
    /// `free`) of this mode and iteration.
    Phase(&'static str, &'static str, u32),
    /// The start of the export (after the probes are detached).
    Export,
    /// The probes reported attached (the first `dmaprof: probe` line).
    Probes,
    /// The line describing the run (`dmaprof: read ... bytes of ...`),
    /// printed once the output files are open, before the probes attach.
    Start,
}

impl At {
    fn matches(self, line: &str) -> bool {
        match self {
            At::Phase(phase, mode, it) => line == format!("dmaprof: phase {phase} {mode} {it}"),
            At::Export => line == "dmaprof: phase export",
            At::Probes => line.starts_with("dmaprof: probe "),
            At::Start => line.starts_with("dmaprof: read ") || line.starts_with("dmaprof: write "),
        }
    }
}

/// Where a signal is aimed: this long after that line.
#[derive(Clone, Copy, Debug)]
struct Aim {
    at: At,
    delay: Duration,
}

/// As soon as the line arrives.
fn at(at: At) -> Aim {
    Aim {
        at,
        delay: Duration::ZERO,
    }
}

/// One `dmaprof run` and what happened to it.
struct Ran {
    dir: tempfile::TempDir,
    code: Option<i32>,
    /// The signal that killed it (a signal it did not handle).
    killed_by: Option<i32>,
    stderr: String,
    /// Per signal: its aim and the last phase dmaprof had announced when it
    /// was sent (or why it was not).
    hits: Vec<String>,
    /// The eBPF objects it held while running.
    held: BpfIds,
    /// From the probes reported attached to the exit.
    probes_to_exit: Duration,
}

fn loaded_prog_ids() -> BTreeSet<u32> {
    aya::programs::loaded_programs()
        .filter_map(|p| p.ok())
        .map(|p| p.id())
        .collect()
}

fn loaded_link_ids() -> BTreeSet<u32> {
    aya::programs::loaded_links()
        .filter_map(|l| l.ok())
        .map(|l| l.id())
        .collect()
}

/// Runs `dmaprof run <args>` (probes on, --csv and --json into a fresh
/// scratch directory) and sends each signal at its aim, in order. Checks
/// that every eBPF object the process held is gone after it exits.
fn run_trial(name: &str, args: &[String], signals: &[(Aim, libc::c_int)]) -> Ran {
    run_trial_with(false, name, args, signals)
}

/// `run_trial`, with the thread reading dmaprof's stderr polling it
/// without sleeping until it sends its first signal when `spin` is set:
/// the signal then follows the line within a microsecond or so (no wake-up
/// of a sleeping thread in between), before dmaprof takes its next step.
/// (Used for signals before the probes attach: dmaprof then detaches them
/// as soon as it reports them, and the ids read may be only some, or none.)
fn run_trial_with(spin: bool, name: &str, args: &[String], signals: &[(Aim, libc::c_int)]) -> Ran {
    let dir = disk_scratch_dir();
    let progs_before = loaded_prog_ids();
    let links_before = loaded_link_ids();
    let mut child = Command::new(dmaprof_bin())
        .arg("run")
        .args(args)
        .arg("--dir")
        .arg(dir.path())
        .arg("--csv")
        .arg(dir.path().join("calls.csv"))
        .arg("--json")
        .arg(dir.path().join("r.json"))
        .env("DMAPROF_ANNOUNCE_PHASES", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    // Signals sent so far, and the last phase dmaprof announced: the reader
    // thread keeps them as lines come, and sends the signals aimed right at
    // a line itself (no hop between reading the line and kill(2)).
    struct Firing {
        next: usize,
        hits: Vec<String>,
        last_phase: String,
    }
    let firing = Arc::new(Mutex::new(Firing {
        next: 0,
        hits: Vec::new(),
        last_phase: "startup (no phase announced yet)".into(),
    }));
    fn fire(f: &mut Firing, pid: u32, (aim, sig): (Aim, libc::c_int)) {
        // SAFETY: plain kill(2) of our own child (not reaped yet).
        assert_eq!(unsafe { libc::kill(pid as i32, sig) }, 0, "kill");
        f.hits.push(format!(
            "{} {:?} after {:?}, during `{}`",
            sig_name(sig),
            aim.delay,
            aim.at,
            f.last_phase
        ));
        f.next += 1;
    }
    let (tx, rx) = mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    let reader = {
        let (firing, signals) = (firing.clone(), signals.to_vec());
        std::thread::spawn(move || {
            let fd = stderr.as_raw_fd();
            // SAFETY: fcntl on the pipe we own.
            unsafe { libc::fcntl(fd, libc::F_SETFL, libc::O_NONBLOCK) };
            let mut spinning = spin;
            let (mut all, mut partial, mut buf) = (String::new(), Vec::new(), [0u8; 8192]);
            loop {
                // SAFETY: reading into our buffer, of its length.
                let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
                if n == 0 {
                    break;
                }
                if n < 0 {
                    match std::io::Error::last_os_error().raw_os_error() {
                        Some(libc::EAGAIN) if spinning => std::hint::spin_loop(),
                        Some(libc::EAGAIN) => {
                            let mut p = libc::pollfd {
                                fd,
                                events: libc::POLLIN,
                                revents: 0,
                            };
                            // SAFETY: one valid pollfd.
                            unsafe { libc::poll(&mut p, 1, -1) };
                        }
                        Some(libc::EINTR) => {}
                        _ => break,
                    }
                    continue;
                }
                partial.extend_from_slice(&buf[..n as usize]);
                while let Some(end) = partial.iter().position(|&b| b == b'\n') {
                    let line = String::from_utf8_lossy(&partial[..end]).into_owned();
                    partial.drain(..=end);
                    all.push_str(&line);
                    all.push('\n');
                    let mut f = firing.lock().unwrap();
                    if let Some(p) = line.strip_prefix("dmaprof: phase ") {
                        f.last_phase = p.to_string();
                    }
                    if let Some(&(aim, sig)) = signals.get(f.next)
                        && aim.delay.is_zero()
                        && aim.at.matches(&line)
                    {
                        fire(&mut f, pid, (aim, sig));
                        spinning = false;
                    }
                    drop(f);
                    let _ = tx.send(line);
                }
            }
            all.push_str(&String::from_utf8_lossy(&partial));
            all
        })
    };

    let deadline = Instant::now() + RUN_TIMEOUT;
    let mut held: Option<BpfIds> = None;
    let (mut progs_during, mut links_during) = (BTreeSet::new(), BTreeSet::new());
    let mut probes_at = None;
    // Armed when the line of the next aim came and it has a delay.
    let mut timer: Option<Instant> = None;
    // Until every signal is sent (and, with none, until the probes are seen).
    loop {
        let next = signals.get(firing.lock().unwrap().next).copied();
        if next.is_none() && held.is_some() {
            break;
        }
        let now = Instant::now();
        assert!(
            now < deadline,
            "{name}: {next:?} never came; last phase: {}",
            firing.lock().unwrap().last_phase
        );
        let wait = timer.unwrap_or(deadline).saturating_duration_since(now);
        match rx.recv_timeout(wait) {
            Ok(line) => {
                if held.is_none() && At::Probes.matches(&line) {
                    // Printed once every probe is attached: collect what it
                    // holds (after the lists, so the lists hold all it holds).
                    probes_at = Some(Instant::now());
                    progs_during = loaded_prog_ids();
                    links_during = loaded_link_ids();
                    held = Some(bpf_ids_held_by(pid));
                }
                if let Some((aim, _)) = next
                    && !aim.delay.is_zero()
                    && timer.is_none()
                    && aim.at.matches(&line)
                {
                    timer = Some(Instant::now() + aim.delay);
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if let (Some(t), Some(aim)) = (timer, next)
            && Instant::now() >= t
        {
            timer = None;
            fire(&mut firing.lock().unwrap(), pid, aim);
        }
    }
    let hits = {
        let mut f = firing.lock().unwrap();
        let mut hits = std::mem::take(&mut f.hits);
        for (aim, sig) in &signals[f.next..] {
            hits.push(format!(
                "{} not sent: dmaprof ended before {aim:?}",
                sig_name(*sig)
            ));
        }
        hits
    };

    let end = Instant::now() + EXIT_TIMEOUT;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{name}: dmaprof did not exit within {EXIT_TIMEOUT:?} of the signal");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let exited_at = Instant::now();
    let stderr = reader.join().unwrap();
    let killed_by = status.signal();
    let Some(held) = held else {
        // Killed (by one of our signals) before it attached anything.
        assert!(
            killed_by.is_some(),
            "{name}: dmaprof never reported its probes:\n{stderr}"
        );
        return Ran {
            dir,
            code: status.code(),
            killed_by,
            stderr,
            hits,
            held: BpfIds::default(),
            probes_to_exit: Duration::ZERO,
        };
    };
    let probes_at = probes_at.unwrap();

    // Nothing of the process stays in the kernel: by id (fdinfo -> bpf(2))...
    assert!(
        spin || (!held.progs.is_empty() && !held.maps.is_empty()),
        "{name}: dmaprof held no eBPF programs or maps while running: {held:?}"
    );
    let survivors = wait_bpf_ids_gone(&held, FREE_TIMEOUT);
    assert!(
        survivors.is_empty(),
        "{name}: eBPF objects of the exited dmaprof still loaded: {survivors:?}"
    );
    // ... and in the kernel's lists: its programs and links appeared during
    // the run and are gone from the lists now.
    let ours_progs: BTreeSet<u32> = progs_during
        .difference(&progs_before)
        .filter(|id| held.progs.contains(id))
        .copied()
        .collect();
    assert_eq!(
        ours_progs, held.progs,
        "{name}: dmaprof's programs (fdinfo) were loaded during the run"
    );
    let ours_links: BTreeSet<u32> = links_during
        .difference(&links_before)
        .filter(|id| held.links.contains(id))
        .copied()
        .collect();
    assert_eq!(ours_links, held.links, "{name}: dmaprof's links appeared");
    let listed_after = |ours: &BTreeSet<u32>, now: fn() -> BTreeSet<u32>| {
        let end = Instant::now() + FREE_TIMEOUT;
        loop {
            let left: BTreeSet<u32> = now().intersection(ours).copied().collect();
            if left.is_empty() || Instant::now() > end {
                return left;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let left = listed_after(&ours_progs, loaded_prog_ids);
    assert!(left.is_empty(), "{name}: programs still listed: {left:?}");
    let left = listed_after(&ours_links, loaded_link_ids);
    assert!(left.is_empty(), "{name}: links still listed: {left:?}");

    // A clean exit: no panic, no backtrace.
    for bad in ["panicked", "stack backtrace", "RUST_BACKTRACE"] {
        assert!(
            !stderr.contains(bad),
            "{name}: `{bad}` on stderr:\n{stderr}"
        );
    }
    Ran {
        dir,
        code: status.code(),
        killed_by,
        stderr,
        hits,
        held,
        probes_to_exit: exited_at - probes_at,
    }
}

/// What the exports say, once checked against each other.
struct Exports {
    interrupted: bool,
    /// (iteration, calls, bytes) per pass, in order.
    passes: Vec<(u32, u64, u64)>,
    verified: Vec<Verification>,
}

/// Checks --csv and --json of a finished run: both exist and are complete
/// (header, every row with every field, no partial last line, one row per
/// call of the JSON's passes, same bytes), the JSON is a valid results
/// document, and the directory holds nothing else than `allowed` (no
/// temporary or partial file).
fn check_exports(name: &str, dir: &Path, mode: &str, allowed: &[&str]) -> Exports {
    let csv = std::fs::read_to_string(dir.join("calls.csv"))
        .unwrap_or_else(|e| panic!("{name}: calls.csv: {e}"));
    assert!(
        csv.ends_with('\n'),
        "{name}: the CSV ends with a partial row"
    );
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some(calls_csv::columns().join(",").as_str()),
        "{name}: CSV header"
    );
    // Per iteration: rows, bytes, and indices in order from 0.
    let mut per_iteration: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
    for (n, line) in lines.enumerate() {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(
            f.len(),
            calls_csv::columns().len(),
            "{name}: CSV row {n} is incomplete: {line}"
        );
        assert_eq!(f[0], mode, "{name}: row {n}: {line}");
        assert!(
            !f[13].is_empty(),
            "{name}: row {n} has no kernel columns though the probes ran: {line}"
        );
        let num = |i: usize| -> u64 {
            f[i].parse()
                .unwrap_or_else(|_| panic!("{name}: row {n} column {i}: {line}"))
        };
        let entry = per_iteration.entry(num(2) as u32).or_default();
        assert_eq!(num(3), entry.0, "{name}: row {n}: calls out of order");
        entry.0 += 1;
        entry.1 += num(5);
    }

    let text = std::fs::read_to_string(dir.join("r.json"))
        .unwrap_or_else(|e| panic!("{name}: r.json: {e}"));
    let doc = results::parse(&text).unwrap_or_else(|e| panic!("{name}: r.json: {e}"));
    assert_eq!(doc.error, None, "{name}: the run failed");
    let mut passes = Vec::new();
    let mut verified = Vec::new();
    for m in &doc.modes {
        assert_eq!(m.summary.mode.name(), mode);
        for p in &m.passes {
            passes.push((p.iteration, p.calls, p.bytes));
            verified.push(p.verified);
        }
    }
    let json_iterations: BTreeMap<u32, (u64, u64)> = passes
        .iter()
        .filter(|p| p.1 > 0)
        .map(|&(it, calls, bytes)| (it, (calls, bytes)))
        .collect();
    assert_eq!(
        per_iteration, json_iterations,
        "{name}: the CSV rows (calls, bytes per iteration) are the JSON's calls"
    );

    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for n in &names {
        assert!(
            ["calls.csv", "r.json"].contains(&n.as_str()) || allowed.contains(&n.as_str()),
            "{name}: unexpected file left in the output directory: {n} (all: {names:?})"
        );
    }
    Exports {
        interrupted: doc.interrupted,
        passes,
        verified,
    }
}

/// Where the signal landed, read from the pass it stopped.
fn landed(e: &Exports, calls_per_pass: u64) -> String {
    match e.passes.last() {
        None => "before the first pass".into(),
        Some(&(it, 0, _)) => format!("pass {it} before its first call"),
        Some(&(it, c, _)) if c < calls_per_pass => {
            format!("pass {it} mid-transfer ({c}/{calls_per_pass} calls)")
        }
        Some(&(it, _, _)) if !e.interrupted => {
            format!("after the last pass ({it}): the run was complete")
        }
        Some(&(it, _, _)) => format!("pass {it} after its transfers (fsync/verify/free)"),
    }
}

fn report(name: &str, ran: &Ran, e: &Exports, calls_per_pass: u64) {
    eprintln!(
        "signals: {name}: {} -> exit {:?}, {} pass(es), landed: {}; {} progs, {} links, {} maps freed",
        ran.hits.join(", then "),
        ran.code,
        e.passes.len(),
        landed(e, calls_per_pass),
        ran.held.progs.len(),
        ran.held.links.len(),
        ran.held.maps.len()
    );
}

/// A signalled run exits 130 and says so; its exports say interrupted.
fn assert_interrupted(name: &str, ran: &Ran, e: &Exports) {
    assert_eq!(ran.code, Some(130), "{name}: exit code\n{}", ran.stderr);
    assert!(e.interrupted, "{name}: the JSON says interrupted");
    assert!(
        ran.stderr.contains("dmaprof: interrupted;"),
        "{name}:\n{}",
        ran.stderr
    );
}

#[test]
fn a_signal_during_allocation_stops_before_the_first_call() {
    if !require_bpf("signals") {
        return;
    }
    let data = data_file();
    let _serial = probe_lock();
    let count = READ_SIZE / READ_CHUNK;
    for (sig, it) in [(libc::SIGINT, 0), (libc::SIGTERM, 1)] {
        let name = format!("{} during alloc of pass {it}", sig_name(sig));
        let ran = run_trial(
            &name,
            &read_args(&data.path),
            &[(at(At::Phase("alloc", "pread", it)), sig)],
        );
        let e = check_exports(&name, ran.dir.path(), "pread", &[]);
        report(&name, &ran, &e, count);
        assert_interrupted(&name, &ran, &e);
        // The passes before are whole; the signalled one stopped before its
        // first call (allocation lasts ~0.2 s, the signal takes ~1 ms).
        assert_eq!(e.passes.len() as u32, it + 1, "{name}: {:?}", e.passes);
        assert!(e.passes[..it as usize].iter().all(|p| p.1 == count));
        assert_eq!(
            e.passes[it as usize].1, 0,
            "{name}: the signal landed after the allocation"
        );
    }
}

#[test]
fn a_signal_mid_transfer_keeps_the_calls_done() {
    if !require_bpf("signals") {
        return;
    }
    let data = data_file();
    let _serial = probe_lock();
    let count = READ_SIZE / READ_CHUNK;
    for (sig, it) in [(libc::SIGTERM, 0), (libc::SIGINT, 1)] {
        let name = format!("{} mid-transfer of pass {it}", sig_name(sig));
        let ran = run_trial(
            &name,
            &read_args(&data.path),
            &[(
                Aim {
                    at: At::Phase("transfer", "pread", it),
                    delay: INTO_TRANSFER,
                },
                sig,
            )],
        );
        let e = check_exports(&name, ran.dir.path(), "pread", &[]);
        report(&name, &ran, &e, count);
        assert_interrupted(&name, &ran, &e);
        assert_eq!(e.passes.len() as u32, it + 1, "{name}: {:?}", e.passes);
        // Signalled 50 ms into ~0.3 s of transfers: some calls, not all.
        let calls = e.passes[it as usize].1;
        assert!(
            calls > 0 && calls < count,
            "{name}: {calls}/{count} calls: the signal did not land mid-transfer"
        );
        // What was moved before the signal was verified.
        assert!(e.verified.iter().all(|v| *v == Verification::Pattern));
    }
}

#[test]
fn a_signal_during_the_export_changes_nothing() {
    if !require_bpf("signals") {
        return;
    }
    let data = data_file();
    let _serial = probe_lock();
    let count = READ_SIZE / READ_CHUNK;
    // The run had finished: the export completes and the exit is 0 (the
    // signal asked to stop the work, and there was none left).
    for sig in [libc::SIGINT, libc::SIGTERM] {
        let name = format!("{} during the export", sig_name(sig));
        let ran = run_trial(&name, &read_args(&data.path), &[(at(At::Export), sig)]);
        let e = check_exports(&name, ran.dir.path(), "pread", &[]);
        report(&name, &ran, &e, count);
        assert_eq!(ran.code, Some(0), "{name}: exit code\n{}", ran.stderr);
        assert!(!e.interrupted);
        assert_eq!(e.passes.len() as u32, ITERATIONS);
        assert!(e.passes.iter().all(|p| p.1 == count));
    }
    // Ctrl-C, then another during the export of what was done: still 130.
    let name = "SIGINT mid-transfer, then SIGTERM during the export";
    let ran = run_trial(
        name,
        &read_args(&data.path),
        &[
            (
                Aim {
                    at: At::Phase("transfer", "pread", 0),
                    delay: INTO_TRANSFER,
                },
                libc::SIGINT,
            ),
            (at(At::Export), libc::SIGTERM),
        ],
    );
    let e = check_exports(name, ran.dir.path(), "pread", &[]);
    report(name, &ran, &e, count);
    assert_eq!(ran.hits.len(), 2, "{:?}", ran.hits);
    assert!(ran.hits[1].contains("export"), "{:?}", ran.hits);
    assert_interrupted(name, &ran, &e);
    assert_eq!(e.passes.len(), 1);
}

#[test]
fn a_signal_at_startup_is_handled_and_leaves_no_temp_file() {
    if !require_bpf("signals") {
        return;
    }
    let data = data_file();
    let _serial = probe_lock();
    // Right after dmaprof opened its outputs (the CSV is being written to a
    // temporary file next to it): the signal must end the run like any
    // other, not kill dmaprof with the temporary file left behind. Several
    // trials: whether the signal beats dmaprof to its next step is a race
    // (which a reader polling without sleeping makes likely to be won).
    for trial in 0..8 {
        let sig = [libc::SIGINT, libc::SIGTERM][trial % 2];
        let name = format!("{} at startup (trial {trial})", sig_name(sig));
        // (The ids of its eBPF objects are read as it detaches them: some
        // may be missed; those read must be gone all the same.)
        let ran = run_trial_with(true, &name, &read_args(&data.path), &[(at(At::Start), sig)]);
        let left: Vec<String> = std::fs::read_dir(ran.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            ran.code,
            Some(130),
            "{name}: dmaprof died of signal {:?} (not handled yet when it came); \
             left in the output directory: {left:?}\n{}",
            ran.killed_by,
            ran.stderr
        );
        let e = check_exports(&name, ran.dir.path(), "pread", &[]);
        report(&name, &ran, &e, READ_SIZE / READ_CHUNK);
        assert_interrupted(&name, &ran, &e);
    }
}

#[test]
fn a_signal_while_the_test_file_is_written_leaves_no_partial_file() {
    // Before any probe or output: dmaprof is writing its 1 GiB pattern file.
    for sig in [libc::SIGINT, libc::SIGTERM] {
        let dir = disk_scratch_dir();
        let mut child = Command::new(dmaprof_bin())
            .args([
                "run",
                "--headless",
                "--no-probes",
                "--mode",
                "pread",
                "--size",
                "1G",
            ])
            .arg("--dir")
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Until the partial file exists: the signal lands mid-write.
        let partial = dir.path().join("dmaprof-data-1024M.partial");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !partial.exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(
            partial.exists(),
            "dmaprof did not start writing its test file"
        );
        std::thread::sleep(Duration::from_millis(100));
        unsafe { libc::kill(child.id() as i32, sig) };
        let mut stderr = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
        let code = child.wait().unwrap().code();
        let left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(code, Some(130), "{}: {stderr}", sig_name(sig));
        assert!(
            left.is_empty(),
            "{}: nothing half written stays: {left:?}",
            sig_name(sig)
        );
        assert!(stderr.contains("interrupted"), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

/// The lab (patched kernel, system dma-heap, udmabuf): the same trials on
/// the dma-buf paths, where allocation is a dma-heap (or memfd + udmabuf)
/// allocation of 64 buffers. Also checks no dma-buf outlives dmaprof.
#[test]
#[ignore = "lab: needs /dev/dma_heap/system and RW_FILE; run in the guest by cargo xtask lab test"]
fn lab_signals_on_the_dma_buf_paths() {
    let file = "/mnt/data-256m.bin";
    let count = 64;
    let trials: [(&str, Aim, libc::c_int); 6] = [
        (
            "rw-file-direct",
            at(At::Phase("alloc", "rw-file-direct", 0)),
            libc::SIGINT,
        ),
        (
            "dmabuf-read",
            at(At::Phase("alloc", "dmabuf-read", 1)),
            libc::SIGTERM,
        ),
        (
            "udmabuf-direct-read",
            at(At::Phase("alloc", "udmabuf-direct-read", 0)),
            libc::SIGTERM,
        ),
        (
            "rw-file",
            Aim {
                at: At::Phase("transfer", "rw-file", 0),
                delay: Duration::from_millis(30),
            },
            libc::SIGTERM,
        ),
        (
            "rw-file-direct",
            at(At::Phase("free", "rw-file-direct", 0)),
            libc::SIGINT,
        ),
        ("rw-file-direct", at(At::Export), libc::SIGINT),
    ];
    for (mode, aim, sig) in trials {
        let name = format!("{} at {:?} ({mode})", sig_name(sig), aim.at);
        let args: Vec<String> = [
            "--mode",
            mode,
            "--file",
            file,
            "--size",
            "256M",
            "--chunk",
            "4M",
            "--iterations",
            "2",
        ]
        .map(String::from)
        .to_vec();
        let ran = run_trial(&name, &args, &[(aim, sig)]);
        let e = check_exports(&name, ran.dir.path(), mode, &[]);
        report(&name, &ran, &e, count);
        match aim.at {
            // The work was done: complete exports, exit 0.
            At::Export => {
                assert_eq!(ran.code, Some(0), "{name}\n{}", ran.stderr);
                assert!(e.passes.iter().all(|p| p.1 == count), "{name}");
            }
            _ => assert_interrupted(&name, &ran, &e),
        }
        if let At::Phase("alloc", _, it) = aim.at {
            assert_eq!(
                e.passes[it as usize].1, 0,
                "{name}: the signal landed after the allocation"
            );
        }
        assert!(
            e.verified.iter().all(|v| *v != Verification::Skipped),
            "{name}: what was moved was verified"
        );
        // Every dma-buf and udmabuf went with the process.
        if let Some(n) = dma_bufs_alive() {
            assert_eq!(n, 0, "{name}: dma-bufs left behind");
        }
    }
    assert!(
        dma_bufs_alive().is_some(),
        "the lab kernel has debugfs: the dma-buf check ran"
    );
}

/// splitmix64: enough randomness to spread signals over a run.
struct Rng(u64);
impl Rng {
    fn seeded() -> (Rng, u64) {
        let seed = match std::env::var("DMAPROF_SIGNALS_SEED") {
            Ok(s) => s.parse().expect("DMAPROF_SIGNALS_SEED: a number"),
            Err(_) => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64,
        };
        (Rng(seed), seed)
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [0, d].
    fn below(&mut self, d: Duration) -> Duration {
        Duration::from_nanos(self.next() % (d.as_nanos() as u64 + 1))
    }
}

#[test]
fn signals_at_random_points_leave_complete_files() {
    if !require_bpf("signals") {
        return;
    }
    let data = data_file();
    let _serial = probe_lock();
    let count = READ_SIZE / READ_CHUNK;
    let (mut rng, seed) = Rng::seeded();
    eprintln!("signals: random trials, seed {seed} (rerun with DMAPROF_SIGNALS_SEED={seed})");
    // A whole run first: how long it lasts once the probes are attached, and
    // that a run nobody signals leaves nothing behind either.
    let ran = run_trial("unsignalled", &read_args(&data.path), &[]);
    let e = check_exports("unsignalled", ran.dir.path(), "pread", &[]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert!(!e.interrupted && e.passes.iter().all(|p| p.1 == count));
    let span = ran.probes_to_exit;
    eprintln!("signals: an unsignalled run lasts {span:?} after its probes are attached");
    for trial in 0..4 {
        let sig = if rng.next() % 2 == 0 {
            libc::SIGINT
        } else {
            libc::SIGTERM
        };
        let delay = rng.below(span);
        let name = format!("random trial {trial}: {} after {delay:?}", sig_name(sig));
        let ran = run_trial(
            &name,
            &read_args(&data.path),
            &[(
                Aim {
                    at: At::Probes,
                    delay,
                },
                sig,
            )],
        );
        let e = check_exports(&name, ran.dir.path(), "pread", &[]);
        report(&name, &ran, &e, count);
        match ran.code {
            // Too late to stop anything: the run is whole.
            Some(0) => assert!(
                !e.interrupted
                    && e.passes.len() as u32 == ITERATIONS
                    && e.passes.iter().all(|p| p.1 == count),
                "{name}: exit 0 for an incomplete run: {:?}",
                e.passes
            ),
            _ => assert_interrupted(&name, &ran, &e),
        }
    }
}

#[test]
fn write_runs_signalled_mid_transfer_and_during_fsync_and_verify() {
    if !require_bpf("signals") {
        return;
    }
    let _serial = probe_lock();
    let trials: [(&str, &str, &str, u32, libc::c_int); 4] = [
        ("pwrite", "4K", "transfer", 0, libc::SIGTERM),
        ("pwrite", "4K", "sync", 0, libc::SIGINT),
        ("pwrite-direct", "64K", "transfer", 1, libc::SIGINT),
        ("pwrite-direct", "64K", "verify", 0, libc::SIGTERM),
    ];
    let size: u64 = 256 << 20;
    for (mode, chunk, phase, it, sig) in trials {
        let name = format!("write {mode}: {} at {phase} of pass {it}", sig_name(sig));
        let args = [
            "--direction",
            "write",
            "--mode",
            mode,
            "--size",
            "256M",
            "--chunk",
            chunk,
            "--iterations",
            &ITERATIONS.to_string(),
        ]
        .map(String::from);
        let aim = Aim {
            at: At::Phase(phase, mode, it),
            delay: if phase == "transfer" {
                INTO_TRANSFER
            } else {
                Duration::ZERO
            },
        };
        let ran = run_trial(&name, &args, &[(aim, sig)]);
        let dest_name = format!("dmaprof-out-{mode}.bin");
        // dmaprof's ownership mark goes to a side file where xattrs are missing.
        let mark = format!(".{dest_name}.dmaprof");
        let e = check_exports(&name, ran.dir.path(), mode, &[&dest_name, &mark]);
        let count = size / profiler::workload::mode::parse_size(chunk).unwrap();
        report(&name, &ran, &e, count);
        assert_interrupted(&name, &ran, &e);
        assert_eq!(e.passes.len() as u32, it + 1, "{name}: {:?}", e.passes);
        let last = *e.passes.last().unwrap();
        match phase {
            "transfer" => assert!(
                last.1 > 0 && last.1 < count,
                "{name}: {}/{count} calls: not mid-transfer",
                last.1
            ),
            // fsync and verification come after every call of the pass.
            _ => assert_eq!(last.1, count, "{name}"),
        }
        // The destination holds exactly the bytes of the calls done, synced
        // and verified (the data file is the measured I/O, not an export:
        // it is written in place, not renamed into place).
        let dest = ran.dir.path().join(&dest_name);
        let mut f = std::fs::File::open(&dest).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            f.metadata().unwrap().len(),
            last.2,
            "{name}: destination size"
        );
        let mut buf = vec![0u8; 4 << 20];
        let mut off = 0u64;
        loop {
            let n = f.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            let bad = pattern::first_mismatch(datafile::DEFAULT_SEED, off, &buf[..n]);
            assert_eq!(bad, None, "{name}: destination differs near offset {off}");
            off += n as u64;
        }
        if last.1 > 0 {
            assert_eq!(e.verified.last(), Some(&Verification::Pattern), "{name}");
        }
    }
}

/// A tmux session running one command (as in tui.rs).
fn wait_file(p: &Path, timeout: Duration) -> Option<String> {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if let Ok(s) = std::fs::read_to_string(p)
            && s.ends_with('\n')
        {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

#[test]
fn sigterm_under_the_dashboard_restores_the_terminal() {
    if !require_bpf("signals") {
        return;
    }
    let data = data_file();
    let _serial = probe_lock();
    let dir = disk_scratch_dir();
    let d = dir.path();
    let (pid_file, status) = (d.join("pid"), d.join("status"));
    // The shell execs dmaprof, so the pid it writes is dmaprof's.
    let cmd = format!(
        "sh -c 'echo $$ > {pid}; exec {bin} run --mode pread --size 512M --chunk 4K --cache warm --iterations 1000 --file {data} --dir {d} --csv {d}/calls.csv --json {d}/r.json'; echo EXIT=$? > {status}; sleep 60",
        pid = pid_file.display(),
        bin = dmaprof_bin().display(),
        data = data.path.display(),
        d = d.display(),
        status = status.display(),
    );
    let Some(t) = Tmux::start(&cmd) else { return };
    t.wait_for("per-call latency", 60);
    assert!(
        t.alternate_screen(),
        "the dashboard uses the alternate screen"
    );
    let pid: u32 = wait_file(&pid_file, Duration::from_secs(10))
        .expect("pid file")
        .trim()
        .parse()
        .unwrap();
    // The probes are attached before the dashboard starts.
    let held = bpf_ids_held_by(pid);
    assert!(!held.progs.is_empty(), "{held:?}");
    let (mut rng, seed) = Rng::seeded();
    let delay = rng.below(Duration::from_millis(2500));
    eprintln!(
        "signals: dashboard: SIGTERM {delay:?} after it is drawn (seed {seed}, DMAPROF_SIGNALS_SEED={seed} to rerun)"
    );
    std::thread::sleep(delay);
    // SAFETY: kill(2) of dmaprof, which runs until told to stop.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGTERM) }, 0);
    let exit = wait_file(&status, Duration::from_secs(30));
    let screen = t.screen();
    let alternate = t.alternate_screen();
    assert_eq!(
        exit.as_deref().map(str::trim),
        Some("EXIT=130"),
        "dmaprof did not exit 130 within 30 s of SIGTERM under the dashboard \
         (alternate screen still on: {alternate}); screen:\n{screen}"
    );
    assert!(!alternate, "terminal restored: alternate screen left");
    assert!(!screen.contains("panicked"), "{screen}");
    let e = check_exports("dashboard", d, "pread", &["pid", "status"]);
    assert!(e.interrupted);
    eprintln!(
        "signals: dashboard: exit 130, {} pass(es), landed: {}",
        e.passes.len(),
        landed(&e, READ_SIZE / READ_CHUNK)
    );
    let survivors = wait_bpf_ids_gone(&held, FREE_TIMEOUT);
    assert!(survivors.is_empty(), "still loaded: {survivors:?}");
}

#[test]
fn a_signalled_trace_commits_its_csv_and_detaches() {
    if !require_bpf("signals") {
        return;
    }
    let _serial = probe_lock();
    let dir = disk_scratch_dir();
    let data = dir.path().join("d.bin");
    std::fs::write(&data, vec![5u8; 1 << 20]).unwrap();
    // A process reading 4 KiB blocks from the page cache until killed.
    let mut reader = dmaprof_e2e::KillOnDrop(Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import os\nfd = os.open('{}', os.O_RDONLY)\nos.pread(fd, 4096, 0)\nprint('ready', flush=True)\nwhile True:\n    os.pread(fd, 4096, 0)",
            data.display()
        ))
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3"));
    // Started, and in its loop, before any tracer looks for its calls.
    let mut ready = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(reader.0.stdout.take().unwrap()),
        &mut ready,
    )
    .unwrap();
    assert_eq!(ready.trim(), "ready");
    for sig in [libc::SIGINT, libc::SIGTERM] {
        let (csv, json) = (dir.path().join("t.csv"), dir.path().join("t.json"));
        let mut tracer = Command::new(dmaprof_bin())
            .args(["trace", "--pid", &reader.0.id().to_string(), "--csv"])
            .arg(&csv)
            .arg("--json")
            .arg(&json)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = dmaprof_e2e::wait_until_tracing(&mut tracer);
        let held = bpf_ids_held_by(tracer.id());
        assert!(!held.progs.is_empty(), "the tracer holds its programs");
        // Mid-stream: rows are flowing into the CSV's temporary file.
        wait_for_rows_in_flight(tracer.id(), dir.path(), 128 << 10);
        unsafe { libc::kill(tracer.id() as i32, sig) };
        let code = tracer.wait().unwrap().code();
        let log = log.join().unwrap();
        let name = sig_name(sig);
        assert_eq!(code, Some(0), "{name}: Ctrl-C is how a trace ends\n{log}");
        assert!(!log.contains("panicked"), "{log}");
        let text = std::fs::read_to_string(&csv).unwrap();
        assert!(text.ends_with('\n'), "{name}: no partial row");
        let rows = text.lines().skip(1).count() as u64;
        assert!(
            text.lines()
                .skip(1)
                .all(|l| l.split(',').count() == profiler::probes::events::CSV_COLUMNS.len()),
            "{name}: every row whole"
        );
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        assert_eq!(
            v["events"].as_u64(),
            Some(rows),
            "{name}: JSON counts the rows"
        );
        assert!(rows > 1000, "{name}: {rows} rows");
        let left = wait_bpf_ids_gone(&held, FREE_TIMEOUT);
        assert!(left.is_empty(), "{name}: still loaded: {left:?}");
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            names
                .iter()
                .all(|n| ["d.bin", "t.csv", "t.json"].contains(&n.as_str())),
            "{name}: no temporary file: {names:?}"
        );
    }
}

/// A signal while the probes attach (trace's temporary CSV already exists):
/// the trace ends cleanly, its CSV committed, no temporary file left.
#[test]
fn a_signal_while_trace_attaches_leaves_no_temp_file() {
    if !require_bpf("signals") {
        return;
    }
    let _serial = probe_lock();
    let dir = disk_scratch_dir();
    let csv = dir.path().join("t.csv");
    for sig in [libc::SIGINT, libc::SIGTERM] {
        let mut tracer = Command::new(dmaprof_bin())
            .args(["trace", "--all", "--csv"])
            .arg(&csv)
            .env("DMAPROF_ANNOUNCE_PHASES", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut err = BufReader::new(tracer.stderr.take().unwrap());
        let mut log = String::new();
        let mut line = String::new();
        while err.read_line(&mut line).unwrap() > 0 {
            log.push_str(&line);
            if line.trim() == "dmaprof: phase attach" {
                break;
            }
            line.clear();
        }
        unsafe { libc::kill(tracer.id() as i32, sig) };
        err.read_to_string(&mut log).unwrap();
        let code = tracer.wait().unwrap().code();
        let name = sig_name(sig);
        assert_eq!(code, Some(0), "{name}: {log}");
        assert!(!log.contains("panicked"), "{log}");
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["t.csv"], "{name}: no temporary file\n{log}");
        assert!(
            std::fs::read_to_string(&csv)
                .unwrap()
                .starts_with("start_ns,")
        );
    }
}

/// Waits until the unnamed file (O_TMPFILE) process `pid` writes an output
/// to in `dir` holds `bytes`: the run is mid-stream.
fn wait_for_rows_in_flight(pid: u32, dir: &Path, bytes: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let size = unnamed_files(pid, dir).into_iter().max().unwrap_or(0);
        if size >= bytes {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{}: {size} of {bytes} bytes in flight after 60 s",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The sizes of the files `pid` holds open in `dir` that have no name
/// (an output being written: `/dir/#inode (deleted)` in /proc).
fn unnamed_files(pid: u32, dir: &Path) -> Vec<u64> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    fds.filter_map(Result::ok)
        .filter(|fd| {
            std::fs::read_link(fd.path())
                .is_ok_and(|t| t.starts_with(dir) && t.to_string_lossy().ends_with(" (deleted)"))
        })
        .filter_map(|fd| std::fs::metadata(fd.path()).ok())
        .map(|m| m.len())
        .collect()
}

/// The names in `dir`, sorted.
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// SIGKILL cannot be handled: at every phase of a run the kernel must take
/// back every eBPF program, link and map (`run_trial` checks them by id and
/// in the kernel's lists) and no output or temporary file may be left: the
/// outputs have no name until they are committed.
#[test]
fn sigkill_at_each_phase_of_a_run_leaves_no_bpf_object_and_no_file() {
    if !require_bpf("signals") {
        return;
    }
    let data = data_file();
    let _serial = probe_lock();
    let soon = |at: At| Aim {
        at,
        delay: Duration::from_millis(30),
    };
    let aims = [
        at(At::Start),
        // After the ids are read (they are read on this line).
        soon(At::Probes),
        at(At::Phase("alloc", "pread", 0)),
        soon(At::Phase("transfer", "pread", 0)),
        at(At::Phase("verify", "pread", 0)),
        at(At::Phase("free", "pread", 1)),
        at(At::Export),
    ];
    for aim in aims {
        let name = format!("SIGKILL {:?} after {:?}", aim.delay, aim.at);
        let spin = matches!(aim.at, At::Start);
        let ran = run_trial_with(spin, &name, &read_args(&data.path), &[(aim, libc::SIGKILL)]);
        eprintln!("{name}: {:?}", ran.hits);
        assert_eq!(
            ran.killed_by,
            Some(libc::SIGKILL),
            "{name}: ended before the signal ({:?})\n{}",
            ran.code,
            ran.stderr
        );
        let exporting = matches!(aim.at, At::Export);
        killed_leaves_only_whole_outputs(
            &name,
            ran.dir.path(),
            exporting,
            &["calls.csv", "r.json"],
        );
    }
}

/// After a SIGKILL: nothing in `dir`, or, killed while it wrote its
/// results (`exporting`: the phase is announced before the files are
/// committed, and the kill races the commits), outputs committed whole.
/// Never a temporary or partial file.
fn killed_leaves_only_whole_outputs(name: &str, dir: &Path, exporting: bool, outputs: &[&str]) {
    let names = names_in(dir);
    if !exporting {
        assert_eq!(
            names,
            Vec::<String>::new(),
            "{name}: nothing named in {}",
            dir.display()
        );
        return;
    }
    for n in &names {
        assert!(
            outputs.contains(&n.as_str()),
            "{name}: {n} left in {}",
            dir.display()
        );
        let text = std::fs::read_to_string(dir.join(n)).unwrap();
        if n.ends_with(".json") {
            serde_json::from_str::<serde_json::Value>(&text)
                .unwrap_or_else(|e| panic!("{name}: {n} is not whole: {e}"));
        } else {
            assert!(
                text.ends_with('\n') && text.lines().count() >= 1,
                "{name}: {n} is not whole"
            );
        }
    }
    eprintln!("{name}: committed before the kill: {names:?}");
}

/// The same for `trace`: killed while attaching, as it starts tracing,
/// mid-stream (rows flowing into its CSV) and while writing its results.
#[test]
fn sigkill_at_each_phase_of_a_trace_leaves_no_bpf_object_and_no_file() {
    if !require_bpf("signals") {
        return;
    }
    let _serial = probe_lock();
    let dir = disk_scratch_dir();
    let data = dir.path().join("d.bin");
    std::fs::write(&data, vec![5u8; 1 << 20]).unwrap();
    let mut reader = dmaprof_e2e::KillOnDrop(
        Command::new("python3")
            .arg("-c")
            .arg(format!(
                "import os\nfd = os.open('{}', os.O_RDONLY)\nos.pread(fd, 4096, 0)\nprint('ready', flush=True)\nwhile True:\n    os.pread(fd, 4096, 0)",
                data.display()
            ))
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3"),
    );
    let mut ready = String::new();
    BufReader::new(reader.0.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert_eq!(ready.trim(), "ready");
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    for when in ["phase attach", "tracing", "mid-stream", "phase export"] {
        let mut tracer = dmaprof_e2e::KillOnDrop(
            Command::new(dmaprof_bin())
                .args(["trace", "--pid", &reader.0.id().to_string(), "--csv"])
                .arg(out.join("t.csv"))
                .arg("--json")
                .arg(out.join("t.json"))
                .env("DMAPROF_ANNOUNCE_PHASES", "1")
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let pid = tracer.0.id();
        let mut err = BufReader::new(tracer.0.stderr.take().unwrap());
        let (mut log, mut line) = (String::new(), String::new());
        let mut held = BpfIds::default();
        loop {
            line.clear();
            assert!(
                err.read_line(&mut line).unwrap() > 0,
                "{when}: the trace ended first\n{log}"
            );
            log.push_str(&line);
            let line = line.trim_end();
            if line.starts_with("dmaprof: tracing") {
                held = bpf_ids_held_by(pid);
                assert!(
                    !held.progs.is_empty(),
                    "{when}: the tracer holds its programs"
                );
            }
            match when {
                "phase attach" if line == "dmaprof: phase attach" => break,
                "tracing" if line.starts_with("dmaprof: tracing") => break,
                "mid-stream" if line.starts_with("dmaprof: tracing") => {
                    wait_for_rows_in_flight(pid, &out, 64 << 10);
                    break;
                }
                // Ends the trace: the export starts once it has detached.
                "phase export" if line.starts_with("dmaprof: tracing") => {
                    // SAFETY: kill(2) of our own child.
                    unsafe { libc::kill(pid as i32, libc::SIGINT) };
                }
                "phase export" if line == "dmaprof: phase export" => break,
                _ => {}
            }
        }
        // What it holds now (while attaching: what it loaded so far), with
        // what it held when tracing started.
        let now = bpf_ids_held_by(pid);
        held.progs.extend(now.progs);
        held.maps.extend(now.maps);
        held.links.extend(now.links);
        // SAFETY: kill(2) of our own child (not reaped yet).
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        let status = tracer.0.wait().unwrap();
        let _ = err.read_to_string(&mut log);
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{when}\n{log}");
        let left = wait_bpf_ids_gone(&held, FREE_TIMEOUT);
        assert!(left.is_empty(), "{when}: still loaded: {left:?}");
        killed_leaves_only_whole_outputs(when, &out, when == "phase export", &["t.csv", "t.json"]);
    }
}
