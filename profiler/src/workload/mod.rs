//! The workload engine: drives real transfers between a file and buffers,
//! one pass per (iteration, mode), and records every call. It is the ground
//! truth the probes, exports and views build on.
pub mod buffers;
mod check;
pub mod cputime;
pub mod datafile;
mod kernel;
pub mod limit;
pub mod mode;
mod paths;
pub mod plan;
mod queued;
pub mod resources;
pub mod summary;
pub mod syscpu;

use std::{
    fs::{File, OpenOptions},
    os::unix::fs::{FileExt, OpenOptionsExt},
    path::PathBuf,
    sync::atomic::{AtomicBool, Ordering},
    time::Instant,
};

use profiler_common::{call::ThreadCounters, pattern};
use serde::Serialize;

use buffers::Buffer;
use cputime::{CpuMark, ThreadCpu};
use mode::{BufferKind, Direction, Mode};

use crate::dma_buf;
pub use kernel::KernelCall;
pub use paths::uring::probe as probe_io_uring;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum CacheMode {
    /// Drop the file's pages before each read pass.
    Cold,
    /// Read the file once before each read pass.
    Warm,
}

/// Which memory the calls move data into or out of.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum BufferUse {
    /// A fresh buffer per call, all of a pass allocated up front: the seed's
    /// work and a model loader's (every destination is new, cold memory).
    #[default]
    Distinct,
    /// One buffer per mode, warm, used by every call of every pass: fio's work.
    Reuse,
}

impl std::fmt::Display for BufferUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BufferUse::Distinct => "distinct",
            BufferUse::Reuse => "reuse",
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Config {
    pub modes: Vec<Mode>,
    pub direction: Direction,
    /// Read: the source. Write: the directory the destinations go to, or the
    /// destination itself when a single mode runs with --file.
    pub file: PathBuf,
    /// Write destinations, one per mode (set by `destinations`).
    #[serde(skip)]
    pub write_to: Vec<(Mode, PathBuf)>,
    pub size: u64,
    pub chunk: u64,
    pub iterations: u32,
    pub heap: String,
    pub cache: CacheMode,
    pub verify: bool,
    pub force: bool,
    pub buffers: BufferUse,
    /// I/Os in flight in the io_uring modes.
    pub queue_depth: u32,
    /// The source file's pattern seed, when dmaprof made it.
    pub seed: Option<u64>,
    /// Direct I/O's alignment of offsets and lengths on the file
    /// (STATX_DIOALIGN; 0 where O_DIRECT does not work). A direct mode's
    /// last call, when its length is not a multiple, is moved buffered.
    pub direct_align: u64,
}

/// One timed call.
#[derive(Debug, Clone, Serialize)]
pub struct CallRecord {
    pub mode: Mode,
    pub direction: Direction,
    pub iteration: u32,
    pub index: u32,
    pub file_offset: u64,
    pub bytes: u64,
    /// Start, ns since the run began.
    pub start_ns: u64,
    pub wall_ns: u64,
    pub cpu: ThreadCpu,
    /// The calling thread (for joining with kernel probes).
    pub tid: u32,
    /// What the kernel probes saw during the call (None: probes off).
    pub kernel: Option<KernelCall>,
    /// Distinct buffers or one reused (the work the call did).
    pub buffers: BufferUse,
}

/// The kernel probes' counters of the thread running the workload.
pub trait KernelCounters {
    fn read(&self) -> Option<ThreadCounters>;
    /// The probes' own run time so far, all programs, ns (None: unknown).
    fn probe_ns(&self) -> Option<u64> {
        None
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Pass {
    pub mode: Mode,
    pub direction: Direction,
    pub iteration: u32,
    pub bytes: u64,
    pub alloc_ns: u64,
    pub transfer_ns: u64,
    /// Write passes: fsync of the destination after the transfers.
    pub sync_ns: u64,
    pub free_ns: u64,
    /// CPU time the rest of the system spent during the transfers
    /// (kworkers, interrupts; see syscpu), None if /proc could not be read.
    pub others_cpu_ns: Option<u64>,
    /// Run time of the probes' programs during the transfers, ns (None:
    /// no probes, or BPF statistics unavailable).
    pub probe_ns: Option<u64>,
    /// How the page cache was prepared, and what mincore saw after.
    pub cache: String,
    pub verified: Verification,
    #[serde(skip)]
    pub calls: Vec<CallRecord>,
}

impl Pass {
    pub fn total_ns(&self) -> u64 {
        self.alloc_ns + self.transfer_ns + self.sync_ns + self.free_ns
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verification {
    /// Checked against the generated pattern.
    Pattern,
    /// Checked against a separate buffered read of the same range.
    Reference,
    Skipped,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Bad arguments or an unsupported setup: exit 2.
    #[error("{0}")]
    Input(String),
    /// The run started and something failed: exit 1.
    #[error("{0}")]
    Failed(String),
}

/// Receives the run as it happens (exports, progress, the TUI).
pub trait Observer {
    /// The run's epoch: CLOCK_MONOTONIC at the zero of its calls' start_ns.
    fn on_run_start(&mut self, _epoch_mono_ns: u64) {}
    fn on_pass_start(&mut self, _mode: Mode, _iteration: u32) {}
    fn on_call(&mut self, _call: &CallRecord) {}
    fn on_pass(&mut self, _pass: &Pass) {}
}

pub struct NoObserver;
impl Observer for NoObserver {}

/// Everything a run produced; complete up to the point it stopped.
#[derive(Debug, Default)]
pub struct Outcome {
    pub passes: Vec<Pass>,
    pub interrupted: bool,
    pub error: Option<RunError>,
    /// CLOCK_MONOTONIC (the kernel's bpf_ktime_get_ns clock) at the run's
    /// epoch, the zero of every call's `start_ns`: kernel-side samples are
    /// placed on the calls' time line with it.
    pub epoch_mono_ns: u64,
}

pub fn run(
    cfg: &Config,
    stop: &AtomicBool,
    obs: &mut dyn Observer,
    kernel: Option<&dyn KernelCounters>,
) -> Outcome {
    let mut out = Outcome::default();
    let epoch = Instant::now();
    out.epoch_mono_ns = monotonic_ns();
    obs.on_run_start(out.epoch_mono_ns);
    // --buffers reuse: each mode's buffers, kept across passes.
    let mut warm: Vec<(Mode, Vec<Buffer>)> = Vec::new();
    'outer: for iteration in 0..cfg.iterations {
        for &mode in &cfg.modes {
            if stop.load(Ordering::Relaxed) {
                out.interrupted = true;
                break 'outer;
            }
            obs.on_pass_start(mode, iteration);
            let ctx = PassCtx {
                cfg,
                mode,
                iteration,
                epoch,
                stop,
                kernel,
            };
            match run_pass(&ctx, &mut warm, obs) {
                Ok(pass) => {
                    obs.on_pass(&pass);
                    let interrupted = pass.calls.len() as u64 != cfg.size.div_ceil(cfg.chunk);
                    out.passes.push(pass);
                    if interrupted {
                        out.interrupted = true;
                        break 'outer;
                    }
                }
                Err(e) => {
                    out.error = Some(e);
                    break 'outer;
                }
            }
        }
    }
    out
}

/// CLOCK_MONOTONIC now, in ns (Instant's clock on Linux, and the BPF side's).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime fills the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Announces on stderr that a phase starts (`dmaprof: phase alloc pread 0`,
/// `dmaprof: phase export`), only when `DMAPROF_ANNOUNCE_PHASES` is set. It
/// exists so tests can aim signals at a phase (tests/signals.rs).
pub fn announce(phase: std::fmt::Arguments) {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if *ON.get_or_init(|| std::env::var_os("DMAPROF_ANNOUNCE_PHASES").is_some()) {
        eprintln!("dmaprof: phase {phase}");
    }
}

fn failed(mode: Mode, what: &str, e: impl std::fmt::Display) -> RunError {
    RunError::Failed(format!("{mode}: {what}: {e}"))
}

fn open_file(cfg: &Config, mode: Mode) -> Result<File, RunError> {
    match cfg.direction {
        Direction::Read => {
            let mut opts = OpenOptions::new();
            opts.read(true);
            if mode.opens_o_direct() {
                opts.custom_flags(libc::O_DIRECT);
            }
            opts.open(&cfg.file)
                .map_err(|e| RunError::Input(format!("{}: {e}", cfg.file.display())))
        }
        Direction::Write => {
            let dest = destination(cfg, mode);
            datafile::open_destination(&dest, cfg.force, mode.opens_o_direct()).map_err(|e| match e
                .kind()
            {
                std::io::ErrorKind::AlreadyExists => RunError::Input(e.to_string()),
                _ => RunError::Input(format!("{}: {e}", dest.display())),
            })
        }
    }
}

/// Where a write pass writes.
pub fn destination(cfg: &Config, mode: Mode) -> PathBuf {
    cfg.write_to
        .iter()
        .find(|(m, _)| *m == mode)
        .map(|(_, p)| p.clone())
        .unwrap_or_else(|| cfg.file.join(format!("dmaprof-out-{mode}.bin")))
}

fn prepare_cache(cfg: &Config) -> Result<String, String> {
    let file = File::open(&cfg.file).map_err(|e| e.to_string())?;
    let how = match cfg.cache {
        CacheMode::Cold => {
            datafile::drop_from_cache(&file)
                .map_err(|e| format!("posix_fadvise(DONTNEED): {e}"))?;
            "cold (posix_fadvise DONTNEED on the file)"
        }
        CacheMode::Warm => {
            datafile::warm_cache(&file, cfg.size).map_err(|e| format!("warming: {e}"))?;
            "warm (file read once before the pass)"
        }
    };
    let seen = match datafile::resident_pages(&file, cfg.size) {
        Ok((resident, pages)) => format!("{resident}/{pages} pages resident"),
        Err(e) => format!("mincore failed: {e}"),
    };
    Ok(format!("{how}; {seen}"))
}

fn chunk_len(cfg: &Config, index: u64) -> u64 {
    (cfg.size - index * cfg.chunk).min(cfg.chunk)
}

/// Where one pass stands: what it runs on and what it has timed so far.
struct PassCtx<'a> {
    cfg: &'a Config,
    mode: Mode,
    iteration: u32,
    epoch: Instant,
    stop: &'a AtomicBool,
    kernel: Option<&'a dyn KernelCounters>,
}

fn run_pass(
    ctx: &PassCtx,
    warm: &mut Vec<(Mode, Vec<Buffer>)>,
    obs: &mut dyn Observer,
) -> Result<Pass, RunError> {
    let (cfg, mode, iteration, kernel) = (ctx.cfg, ctx.mode, ctx.iteration, ctx.kernel);
    let file = open_file(cfg, mode)?;
    let cache = match cfg.direction {
        Direction::Read => {
            prepare_cache(cfg).map_err(|e| failed(mode, "preparing the page cache", e))?
        }
        Direction::Write => "n/a (write)".to_string(),
    };
    announce(format_args!("alloc {mode} {iteration}"));
    let kept = warm
        .iter()
        .position(|(m, _)| *m == mode)
        .map(|i| warm.remove(i).1);
    let t = Instant::now();
    let mut bufs = match (cfg.buffers, kept) {
        (BufferUse::Reuse, Some(b)) => b,
        (BufferUse::Reuse, None) => (0..reused_buffers(cfg, mode))
            .map(|_| allocate_one(cfg, mode, cfg.chunk.min(cfg.size)))
            .collect::<Result<_, _>>()?,
        (BufferUse::Distinct, _) => allocate(cfg, mode)?,
    };
    // A reused buffer from an earlier pass cost nothing to allocate now.
    let mut alloc_ns = match cfg.buffers {
        BufferUse::Reuse if iteration > 0 => 0,
        _ => t.elapsed().as_nanos() as u64,
    };
    // The io_uring modes register (pin) their buffers with a new ring: a
    // user of the path pays it before the first I/O.
    let mut ring = None;
    if mode.uring() {
        let t = Instant::now();
        ring = Some(
            paths::uring::Ring::new(cfg.queue_depth, &mut bufs)
                .map_err(|e| failed(mode, "setting up io_uring", e))?,
        );
        alloc_ns += t.elapsed().as_nanos() as u64;
    }
    if cfg.direction == Direction::Write && cfg.buffers == BufferUse::Distinct {
        fill_sources(mode, 0, &mut bufs)?;
    }

    announce(format_args!("transfer {mode} {iteration}"));
    let sys_before = syscpu::sample();
    let probe_before = kernel.and_then(|k| k.probe_ns());
    let mut check = check::ReadCheck::for_pass(cfg);
    let calls = match &mut ring {
        Some(ring) => queued::transfer_all(ctx, &file, &mut bufs, ring, &mut check, obs)?,
        None => transfer_all(ctx, &file, &mut bufs, &mut check, obs)?,
    };
    let probe_ns = match (probe_before, kernel.and_then(|k| k.probe_ns())) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a)),
        _ => None,
    };
    let others_cpu_ns = match (sys_before, syscpu::sample()) {
        (Some(a), Some(b)) => Some(syscpu::others_ns(a, b)),
        _ => None,
    };
    let mut sync_ns = 0;
    if cfg.direction == Direction::Write {
        announce(format_args!("sync {mode} {iteration}"));
        let t = Instant::now();
        file.sync_all().map_err(|e| failed(mode, "fsync", e))?;
        sync_ns = t.elapsed().as_nanos() as u64;
    }
    let verified = if cfg.verify {
        announce(format_args!("verify {mode} {iteration}"));
        // Reads only: a write pass's file is its destination, opened truncated.
        let replay_file = match cfg.direction {
            Direction::Read => Some(open_file(cfg, mode)?),
            Direction::Write => None,
        };
        let mut replay = |buf: &mut Buffer, off: u64, len: u64| match &replay_file {
            Some(file) => replay_call(cfg, mode, file, ring.as_mut(), buf, off, len),
            None => Err(std::io::Error::other("a write pass is not made again")),
        };
        verify(cfg, mode, &mut bufs, &check, calls.len(), &mut replay)
            .map_err(|e| failed(mode, "verification", e))?
    } else {
        Verification::Skipped
    };

    announce(format_args!("free {mode} {iteration}"));
    let t = Instant::now();
    drop(ring); // unregisters the buffers
    match cfg.buffers {
        BufferUse::Reuse => warm.push((mode, bufs)),
        BufferUse::Distinct => drop(bufs),
    }
    let free_ns = t.elapsed().as_nanos() as u64;

    Ok(Pass {
        mode,
        direction: cfg.direction,
        iteration,
        bytes: calls.iter().map(|c| c.bytes).sum(),
        alloc_ns,
        transfer_ns: busy_ns(&calls),
        sync_ns,
        free_ns,
        others_cpu_ns,
        probe_ns,
        cache,
        verified,
        calls,
    })
}

/// The time at least one of the calls was in flight: the sum of their
/// times when one follows another, the span they cover when they overlap
/// (the io_uring modes at a queue depth above 1).
fn busy_ns(calls: &[CallRecord]) -> u64 {
    let mut spans: Vec<(u64, u64)> = calls
        .iter()
        .map(|c| (c.start_ns, c.start_ns + c.wall_ns))
        .collect();
    spans.sort_unstable();
    let mut busy = 0;
    let mut covered_to = 0;
    for (start, end) in spans {
        let from = start.max(covered_to);
        busy += end.saturating_sub(from);
        covered_to = covered_to.max(end);
    }
    busy
}

/// --buffers reuse: one buffer, or one per I/O in flight for the io_uring
/// modes (two I/Os never share one).
fn reused_buffers(cfg: &Config, mode: Mode) -> u64 {
    match mode.uring() {
        true => (cfg.queue_depth as u64).min(cfg.size.div_ceil(cfg.chunk)),
        false => 1,
    }
}

/// Allocate: what a user of this path pays before moving any data.
fn allocate(cfg: &Config, mode: Mode) -> Result<Vec<Buffer>, RunError> {
    (0..cfg.size.div_ceil(cfg.chunk))
        .map(|i| allocate_one(cfg, mode, chunk_len(cfg, i)))
        .collect()
}

fn allocate_one(cfg: &Config, mode: Mode, len: u64) -> Result<Buffer, RunError> {
    let heap = match mode.buffer() {
        BufferKind::Heap => Some(File::open(dma_buf::heap_path(&cfg.heap)).map_err(|e| {
            RunError::Input(format!("{}: {e}", dma_buf::heap_path(&cfg.heap).display()))
        })?),
        _ => None,
    };
    let map_heap = matches!(mode, Mode::DmabufRead | Mode::DmabufWrite);
    Buffer::alloc(mode.buffer(), len, heap.as_ref(), map_heap)
        .map_err(|e| failed(mode, &format!("allocating a {len}-byte buffer"), e))
}

/// Write passes: the buffers hold the pattern the destination is checked
/// against, buffer i that of file offset `first + i * chunk`.
fn fill_sources(mode: Mode, first: u64, bufs: &mut [Buffer]) -> Result<(), RunError> {
    let chunk = bufs.first().map_or(0, |b| b.size());
    for (i, b) in bufs.iter_mut().enumerate() {
        let off = first + i as u64 * chunk;
        b.with_bytes(true, |bytes| {
            pattern::fill(datafile::DEFAULT_SEED, off, bytes)
        })
        .map_err(|e| failed(mode, "filling the source buffers", e))?;
    }
    Ok(())
}

/// One timed call per buffer, until done or stopped.
fn transfer_all(
    ctx: &PassCtx,
    file: &File,
    bufs: &mut [Buffer],
    check: &mut check::ReadCheck,
    obs: &mut dyn Observer,
) -> Result<Vec<CallRecord>, RunError> {
    let (cfg, mode) = (ctx.cfg, ctx.mode);
    // SAFETY: gettid cannot fail.
    let tid = unsafe { libc::gettid() } as u32;
    let count = cfg.size.div_ceil(cfg.chunk) as usize;
    let reuse = cfg.buffers == BufferUse::Reuse;
    let mut calls = Vec::with_capacity(count);
    for i in 0..count {
        if ctx.stop.load(Ordering::Relaxed) {
            break;
        }
        let n = bufs.len();
        let buf = &mut bufs[i % n];
        let off = i as u64 * cfg.chunk;
        let len = chunk_len(cfg, i as u64);
        if reuse && cfg.direction == Direction::Write {
            // One buffer for every call: it holds this call's data (untimed).
            fill_sources(mode, off, std::slice::from_mut(buf))?;
        }
        let call_mode = call_mode(cfg, mode, file, len)?;
        // Read just before the call: what happened since the last call
        // (refilling or checking a reused buffer, the observers' work, a
        // preemption there) is not this call's.
        let before = ctx.kernel.and_then(|k| k.read());
        let cpu0 = CpuMark::now();
        let t = Instant::now();
        let r = paths::transfer(call_mode, cfg.direction, file, buf, off, len);
        let wall_ns = t.elapsed().as_nanos() as u64;
        let cpu = CpuMark::now().since(&cpu0);
        // Outside the timed region: two map lookups per call.
        let after = ctx.kernel.and_then(|k| k.read());
        let kernel = match (&before, &after) {
            (Some(b), Some(a)) => Some(KernelCall::between(b, a, wall_ns)),
            _ => None,
        };
        r.map_err(|e| failed(mode, &format!("call {i} at file offset {off}"), e))?;
        // The next call overwrites it: checked now, outside the timed call.
        check
            .call_ended(buf, off, len)
            .map_err(|e| failed(mode, "verification", format!("call {i}: {e}")))?;
        let rec = CallRecord {
            mode,
            direction: cfg.direction,
            iteration: ctx.iteration,
            index: i as u32,
            file_offset: off,
            bytes: len,
            start_ns: (t - ctx.epoch).as_nanos() as u64,
            wall_ns,
            cpu,
            tid,
            kernel,
            buffers: cfg.buffers,
        };
        obs.on_call(&rec);
        calls.push(rec);
    }
    Ok(calls)
}

/// How one call moves its `len` bytes: as the mode does, except an
/// unaligned tail of a direct mode, which direct I/O cannot move: that one
/// goes buffered (the plan's note says so), on the same fd with O_DIRECT
/// cleared where the mode opened it so (untimed).
fn call_mode(cfg: &Config, mode: Mode, file: &File, len: u64) -> Result<Mode, RunError> {
    if !mode.direct() || cfg.direct_align == 0 || len.is_multiple_of(cfg.direct_align) {
        return Ok(mode);
    }
    if mode.opens_o_direct() {
        datafile::clear_o_direct(file)
            .map_err(|e| failed(mode, "clearing O_DIRECT for the tail", e))?;
    }
    Ok(mode.buffered())
}

/// One call of a read pass made again after it, untimed (`check`): on a
/// file opened afresh, so a direct mode's unaligned tail, which cleared
/// O_DIRECT on the pass's file, leaves the other calls direct.
fn replay_call(
    cfg: &Config,
    mode: Mode,
    file: &File,
    ring: Option<&mut paths::uring::Ring>,
    buf: &mut Buffer,
    off: u64,
    len: u64,
) -> std::io::Result<()> {
    let call_mode =
        call_mode(cfg, mode, file, len).map_err(|e| std::io::Error::other(e.to_string()))?;
    match ring {
        Some(ring) => ring.read_one(file, 0, off, len),
        None => paths::transfer(call_mode, Direction::Read, file, buf, off, len),
    }
}

/// Checks the bytes moved, outside the timed region. Reads into a reused
/// buffer were sampled call by call and are made again here (`check`).
fn verify(
    cfg: &Config,
    mode: Mode,
    bufs: &mut [Buffer],
    check: &check::ReadCheck,
    calls: usize,
    replay: &mut check::Replay,
) -> Result<Verification, String> {
    match cfg.direction {
        Direction::Read => {
            if let Some(first) = bufs.first_mut() {
                check.finish(cfg, first, replay)?;
            }
            if cfg.buffers == BufferUse::Distinct {
                let reference = File::open(&cfg.file).map_err(|e| e.to_string())?;
                for (i, b) in bufs[..calls].iter_mut().enumerate() {
                    let off = i as u64 * cfg.chunk;
                    check::check_bytes(
                        cfg.seed,
                        Some(&reference),
                        b,
                        off,
                        chunk_len(cfg, i as u64),
                    )
                    .map_err(|e| format!("buffer {i}: {e}"))?;
                }
            }
            Ok(if cfg.seed.is_some() {
                Verification::Pattern
            } else {
                Verification::Reference
            })
        }
        Direction::Write => {
            let dest = destination(cfg, mode);
            let f = File::open(&dest).map_err(|e| e.to_string())?;
            let _ = datafile::drop_from_cache(&f);
            let len = f.metadata().map_err(|e| e.to_string())?.len();
            let written: u64 = (0..calls as u64).map(|i| chunk_len(cfg, i)).sum();
            if len < written {
                return Err(format!(
                    "{} is {len} bytes, {written} were written",
                    dest.display()
                ));
            }
            let mut buf = vec![0u8; 4 << 20];
            let mut off = 0;
            while off < written {
                let n = (written - off).min(buf.len() as u64) as usize;
                f.read_exact_at(&mut buf[..n], off)
                    .map_err(|e| e.to_string())?;
                if let Some(at) = pattern::first_mismatch(datafile::DEFAULT_SEED, off, &buf[..n]) {
                    return Err(format!(
                        "{} differs at offset {}",
                        dest.display(),
                        off + at as u64
                    ));
                }
                off += n as u64;
            }
            Ok(Verification::Pattern)
        }
    }
}
