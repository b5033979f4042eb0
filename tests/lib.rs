//! Helpers shared by dmaprof's end-to-end scenarios.
use std::{
    path::PathBuf,
    process::Command,
    sync::OnceLock,
    time::{Duration, Instant},
};

/// True when running under CI, where a missing capability is a failure, not a skip.
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Whether this process may load and attach tracing programs. Without it a
/// test skips loudly; under CI it fails instead (CI runs as root with BPF).
pub fn require_bpf(test: &str) -> bool {
    let euid = unsafe { libc::geteuid() };
    if euid == 0 {
        return true;
    }
    assert!(
        !under_ci(),
        "{test}: needs root for BPF, and CI=true forbids skipping"
    );
    eprintln!("SKIP {test}: needs root (euid {euid}) to load eBPF programs");
    false
}

/// The `dmaprof` binary of the same profile as this test, built on demand;
/// `$DMAPROF_BIN` when set (the lab guest has the binary but no cargo).
pub fn dmaprof_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("DMAPROF_BIN") {
            return PathBuf::from(bin);
        }
        let exe = std::env::current_exe().expect("current_exe");
        // target/<profile>/deps/<test> -> target/<profile>/dmaprof
        let profile_dir = exe
            .parent()
            .and_then(|d| d.parent())
            .expect("target dir")
            .to_path_buf();
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet", "-p", "profiler", "--bin", "dmaprof"]);
        if release {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("running cargo build for dmaprof");
        assert!(status.success(), "building dmaprof failed");
        let bin = profile_dir.join("dmaprof");
        assert!(bin.exists(), "{} missing after build", bin.display());
        bin
    })
    .clone()
}

/// A scratch directory on a disk-backed filesystem (O_DIRECT and the block
/// layer need a real block device; /tmp may be tmpfs).
pub fn disk_scratch_dir() -> tempfile::TempDir {
    let base = std::env::var_os("DMAPROF_TEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/var/tmp".into());
    tempfile::Builder::new()
        .prefix("dmaprof-test-")
        .tempdir_in(base)
        .expect("scratch dir")
}

/// A CSV's header and rows, split at commas (dmaprof's CSVs quote nothing).
pub fn csv_table(text: &str) -> (Vec<&str>, Vec<Vec<&str>>) {
    let mut lines = text.lines();
    let header = lines.next().expect("a header line").split(',').collect();
    let rows = lines.map(|l| l.split(',').collect()).collect();
    (header, rows)
}

/// The index of column `name`.
pub fn column(header: &[&str], name: &str) -> usize {
    header
        .iter()
        .position(|h| *h == name)
        .unwrap_or_else(|| panic!("no column {name} in {header:?}"))
}

/// A file as a trace names it: its canonical path, its device as
/// `major:minor` and its inode number.
pub fn file_identity(path: &std::path::Path) -> (String, String, String) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).unwrap();
    let dev = m.dev();
    (
        path.canonicalize().unwrap().display().to_string(),
        format!("{}:{}", libc::major(dev), libc::minor(dev)),
        m.ino().to_string(),
    )
}

/// The calling thread's kernel thread id.
pub fn gettid() -> u32 {
    unsafe { libc::gettid() as u32 }
}

/// Serializes every test that attaches probes, across the suite's test
/// binaries too: they count what the kernel saw and loaded, which another
/// BPF user on the same CPUs disturbs (a classic tracepoint program is
/// skipped while another program runs there). A mutex for this binary's
/// threads, and an exclusive flock on a file shared by every binary (and
/// by a second `cargo test` on the machine); both released with the guard.
pub fn probe_lock() -> ProbeLock {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let threads = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(std::env::temp_dir().join("dmaprof-tests-bpf.lock"))
        .expect("the suite's BPF lock file");
    // SAFETY: flock on an fd we own; blocks until the other holder is done.
    let rc = unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&file), libc::LOCK_EX) };
    assert_eq!(rc, 0, "flock: {}", std::io::Error::last_os_error());
    ProbeLock {
        _file: file,
        _threads: threads,
    }
}

/// Held while a test attaches probes (see `probe_lock`).
pub struct ProbeLock {
    // The file first: the flock goes when it closes, then the mutex.
    _file: std::fs::File,
    _threads: std::sync::MutexGuard<'static, ()>,
}

/// The eBPF objects a process holds, by kernel id: what must be gone once
/// it exits (signals.rs checks a signalled `dmaprof` leaves nothing behind).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BpfIds {
    pub progs: std::collections::BTreeSet<u32>,
    pub links: std::collections::BTreeSet<u32>,
    pub maps: std::collections::BTreeSet<u32>,
}

impl BpfIds {
    pub fn is_empty(&self) -> bool {
        self.progs.is_empty() && self.links.is_empty() && self.maps.is_empty()
    }
}

/// The ids of the programs, links and maps a running process holds open,
/// read from the `prog_id:`, `link_id:` and `map_id:` lines of
/// `/proc/<pid>/fdinfo/*` (a link's fd names its program too). Fds that
/// close while they are read are skipped.
pub fn bpf_ids_held_by(pid: u32) -> BpfIds {
    let mut ids = BpfIds::default();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return ids;
    };
    for entry in dir.flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        for line in text.lines() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let Ok(id) = value.trim().parse::<u32>() else {
                continue;
            };
            match key {
                "prog_id" => ids.progs.insert(id),
                "link_id" => ids.links.insert(id),
                "map_id" => ids.maps.insert(id),
                _ => false,
            };
        }
    }
    ids
}

/// Whether the kernel still has the object of this id: bpf(2)
/// `BPF_*_GET_FD_BY_ID` succeeds (the fd is closed at once) or fails with
/// something else than ENOENT. `cmd`: 13 prog, 14 map, 30 link. Needs root.
fn bpf_id_exists(cmd: libc::c_int, id: u32) -> bool {
    // union bpf_attr, the *_GET_FD_BY_ID part: { id, next_id, open_flags }.
    let attr: [u32; 3] = [id, 0, 0];
    // SAFETY: a valid, fully initialised attribute of the size passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.as_ptr(),
            std::mem::size_of_val(&attr) as libc::c_uint,
        )
    };
    if fd >= 0 {
        // SAFETY: the fd was just returned to us.
        unsafe { libc::close(fd as libc::c_int) };
        return true;
    }
    std::io::Error::last_os_error().raw_os_error() != Some(libc::ENOENT)
}

/// The subset of `ids` the kernel still has.
pub fn bpf_ids_alive(ids: &BpfIds) -> BpfIds {
    const PROG: libc::c_int = 13; // BPF_PROG_GET_FD_BY_ID
    const MAP: libc::c_int = 14; // BPF_MAP_GET_FD_BY_ID
    const LINK: libc::c_int = 30; // BPF_LINK_GET_FD_BY_ID
    let keep = |cmd, set: &std::collections::BTreeSet<u32>| {
        set.iter()
            .copied()
            .filter(|&id| bpf_id_exists(cmd, id))
            .collect()
    };
    BpfIds {
        progs: keep(PROG, &ids.progs),
        links: keep(LINK, &ids.links),
        maps: keep(MAP, &ids.maps),
    }
}

/// Waits (up to `timeout`) for every object of `ids` to be gone and returns
/// those that survived (empty: all freed). Freeing is deferred in the
/// kernel (RCU, work queues), so a just-exited process's objects may linger
/// for a moment.
pub fn wait_bpf_ids_gone(ids: &BpfIds, timeout: std::time::Duration) -> BpfIds {
    let end = std::time::Instant::now() + timeout;
    loop {
        let alive = bpf_ids_alive(ids);
        if alive.is_empty() || std::time::Instant::now() >= end {
            return alive;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// A detached tmux session running one command in a 110x32 terminal: the
/// dashboard tests' real terminal. Killed on drop.
pub struct Tmux(String);

impl Tmux {
    /// None (a loud skip) without tmux, never under CI.
    pub fn start(cmd: &str) -> Option<Tmux> {
        if Command::new("tmux").arg("-V").output().is_err() {
            assert!(
                !under_ci(),
                "tmux is needed for the terminal tests (cargo xtask setup installs it)"
            );
            eprintln!("SKIP: no tmux");
            return None;
        }
        let name = format!("dmaprof-tui-{}-{}", std::process::id(), rand_suffix());
        let ok = Command::new("tmux")
            .args([
                "new-session",
                "-d",
                "-s",
                &name,
                "-x",
                "110",
                "-y",
                "32",
                cmd,
            ])
            .status()
            .unwrap()
            .success();
        assert!(ok, "tmux new-session");
        Some(Tmux(name))
    }

    pub fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.0])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn keys(&self, keys: &str) {
        Command::new("tmux")
            .args(["send-keys", "-t", &self.0, keys])
            .status()
            .unwrap();
    }

    pub fn alternate_screen(&self) -> bool {
        let out = Command::new("tmux")
            .args(["display", "-p", "-t", &self.0, "#{alternate_on}"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim() == "1"
    }

    pub fn wait_for(&self, what: &str, secs: u64) -> String {
        let end = Instant::now() + Duration::from_secs(secs);
        loop {
            let s = self.screen();
            if s.contains(what) {
                return s;
            }
            assert!(
                Instant::now() < end,
                "`{what}` never appeared; screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.0])
            .status();
    }
}

/// Distinguishes sessions of concurrent tests.
fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        % 1_000_000
}

/// Reads a `dmaprof trace` child's stderr (piped) until it says it is
/// tracing (every probe attached), then keeps reading it in a thread (the
/// tracer must never find its stderr closed) that returns the whole log.
pub fn wait_until_tracing(tracer: &mut std::process::Child) -> std::thread::JoinHandle<String> {
    use std::io::{BufRead, Read};
    let mut stderr = std::io::BufReader::new(tracer.stderr.take().expect("stderr piped"));
    let mut log = String::new();
    let mut line = String::new();
    while stderr.read_line(&mut line).unwrap_or(0) > 0 {
        log.push_str(&line);
        if line.contains("dmaprof: tracing") {
            break;
        }
        line.clear();
    }
    std::thread::spawn(move || {
        let _ = stderr.read_to_string(&mut log);
        log
    })
}

/// Makes a FIFO at `path` (for the tests that feed dmaprof one).
pub fn mkfifo(path: &std::path::Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid C string.
    assert_eq!(
        unsafe { libc::mkfifo(c.as_ptr(), 0o600) },
        0,
        "mkfifo {}",
        path.display()
    );
}

/// Runs `cmd` to the end and insists it succeeded (stderr in the message).
pub fn succeeded(cmd: &mut std::process::Command) -> std::process::Output {
    let out = cmd.output().expect("run the command");
    assert!(
        out.status.success(),
        "{:?}: {}",
        cmd,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// How many dma-bufs the kernel holds, from debugfs bufinfo's closing
/// "Total N objects, B bytes" line (each buffer has a "Total N devices
/// attached" line of its own before it). None: no debugfs here.
pub fn dma_bufs_alive() -> Option<u64> {
    let text = std::fs::read_to_string("/sys/kernel/debug/dma_buf/bufinfo").ok()?;
    bufinfo_total(&text)
}

fn bufinfo_total(text: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        l.strip_prefix("Total ")?
            .strip_suffix(" bytes")?
            .split_once(" objects,")?
            .0
            .parse()
            .ok()
    })
}

/// A python3 `script` traced by `dmaprof trace --pid` with `args`: the
/// child, the tracer (attached) and its stderr so far plus the rest.
/// The script waits for a go file in a loop (`while not os.path.exists(`);
/// the tracer starts only once the script reaches that loop, so what the
/// interpreter does before (its start-up and imports: the dynamic loader's
/// preads of each extension module) is never in the trace.
pub fn traced_python<S: AsRef<std::ffi::OsStr>>(
    script: &str,
    args: &[S],
) -> (
    std::process::Child,
    std::process::Child,
    std::thread::JoinHandle<String>,
) {
    use std::io::BufRead;
    const MARK: &str = "dmaprof-test: waiting for go";
    let at = script
        .find("while not os.path.exists(")
        .expect("a traced script waits for its go file");
    let script = format!(
        "{}print(\"{MARK}\", flush=True)\n{}",
        &script[..at],
        &script[at..]
    );
    let mut child = std::process::Command::new("python3")
        .arg("-c")
        .arg(&script)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout piped"))
        .read_line(&mut line)
        .expect("the script's first line");
    assert_eq!(
        line.trim_end(),
        MARK,
        "the script failed before its go loop"
    );
    let mut tracer = std::process::Command::new(dmaprof_bin())
        .args(["trace", "--pid", &child.id().to_string()])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let rest = wait_until_tracing(&mut tracer);
    (child, tracer, rest)
}

/// A folded-stack file (`frame;frame count` lines) as stack -> count;
/// empty when there is no file.
pub fn folded_stacks(path: &std::path::Path) -> std::collections::BTreeMap<String, u64> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (stack, n) = l.rsplit_once(' ')?;
            Some((stack.to_string(), n.parse().ok()?))
        })
        .collect()
}

/// The count of the stacks holding any of `functions` (a kernel frame
/// matches without its `_[k]` mark).
pub fn through(stacks: &std::collections::BTreeMap<String, u64>, functions: &[&str]) -> u64 {
    stacks
        .iter()
        .filter(|(s, _)| {
            s.split(';').any(|f| {
                let name = f.strip_suffix("_[k]").unwrap_or(f);
                functions.contains(&name)
            })
        })
        .map(|(_, n)| n)
        .sum()
}

/// `dmaprof run RUN_ARGS` (headless, no probes of its own) held until
/// `dmaprof trace --pid` of it writes `csv`, attached; both must succeed.
/// Returns the trace CSV's text, the tracer's log and the run's pid.
pub fn trace_a_run(run_args: &str, csv: &str) -> (String, String, u32) {
    use std::{
        io::Write,
        process::{Command, Stdio},
    };
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "read go; exec {} run --headless --no-probes {run_args}",
            dmaprof_bin().display()
        ))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut tracer = Command::new(dmaprof_bin())
        .args(["trace", "--pid", &pid.to_string(), "--csv", csv])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = wait_until_tracing(&mut tracer);
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let run = child.wait_with_output().unwrap();
    assert!(
        run.status.success(),
        "the traced run failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let out = tracer.wait_with_output().unwrap();
    let log = log.join().unwrap();
    assert!(out.status.success(), "trace: {log}");
    (std::fs::read_to_string(csv).unwrap(), log, pid)
}

/// A child process killed and reaped when this goes out of scope, also
/// when a test panics (a looping helper process must not outlive its test).
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until `child` (spawned with `DMAPROF_ANNOUNCE_PHASES=1` and its
/// stderr piped) announces `phase` (e.g. `transfer pread 2`): the way to
/// aim a signal or a fault at a point of a run without sleeping. Returns a
/// thread that collects its whole stderr (what was read so far included),
/// so the child never blocks on a full pipe.
pub fn wait_for_phase(
    child: &mut std::process::Child,
    phase: &str,
) -> std::thread::JoinHandle<String> {
    use std::io::{BufRead, Read};
    let mut stderr = std::io::BufReader::new(child.stderr.take().expect("stderr piped"));
    let mut log = String::new();
    let want = format!("dmaprof: phase {phase}");
    loop {
        let mut line = String::new();
        let n = stderr
            .read_line(&mut line)
            .expect("reading dmaprof's stderr");
        log.push_str(&line);
        assert!(n > 0, "dmaprof ended before its phase `{phase}`: {log}");
        if line.trim_end() == want {
            break;
        }
    }
    std::thread::spawn(move || {
        let _ = stderr.read_to_string(&mut log);
        log
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn bufinfo_total_is_the_objects_line_not_a_buffers_devices_line() {
        let text = "\nDma-buf Objects:\nsize\tflags\n33554432\t00000002\t<none>\n\tAttached Devices:\nTotal 0 devices attached\n\n\nTotal 3 objects, 100663296 bytes\n";
        assert_eq!(super::bufinfo_total(text), Some(3));
        assert_eq!(super::bufinfo_total("Total 0 devices attached\n"), None);
    }
}
