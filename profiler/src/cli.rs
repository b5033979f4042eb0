//! The command line. The workload options are `plan::Args` itself (one
//! definition, no mirror struct); the rest are small groups shared by the
//! commands that take them.
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::{
    compare::report::Format,
    probes::attach::Method,
    workload::{
        BufferUse, CacheMode,
        mode::{Direction, parse_size},
        plan,
    },
};

#[derive(Parser)]
#[command(
    name = "dmaprof",
    version,
    about = "Profile moving file data into and out of Linux dma-bufs (DMA_BUF_IOCTL_RW_FILE, pread, udmabuf) with eBPF"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Report what this machine lets dmaprof measure: BPF, each probe's attach
    /// method (tried for real), dma-heaps, udmabuf, RW_FILE support, O_DIRECT.
    ///
    /// Where RW_FILE works, also whether READ into a read-only dma-buf is
    /// refused (a one-page probe; the seed's v2 lets it overwrite the buffer).
    ///
    /// Kernels CI runs it on: the host's (no dma-buf exporter, no kprobes,
    /// no fentry); the lab's patched debug kernel (Debian linux-source-6.12
    /// with the RW_FILE patches: everything supported); Debian's stock 6.12
    /// kernel image (RW_FILE absent: ENOTTY; heaps, udmabuf, fentry, kprobes).
    Doctor(DoctorArgs),
    /// Drive real transfers between a file and buffers, mode by mode, and
    /// report alloc / transfer / total time, throughput, per-call latency
    /// and CPU cost (the seed's table). Every byte moved is verified.
    Run(RunArgs),
    /// The seed's benchmark: every read mode this kernel supports, 32 MiB
    /// buffers, a 1 GiB file, cold cache, several iterations; prints the
    /// seed's table (alloc / read / total ms per path) with MiB/s, CPU per
    /// GiB and the ratio to pread-direct. Save it with --json and compare later.
    Bench(BenchArgs),
    /// Observe another process's dma-buf ioctls, exporter calls, pread64
    /// calls and block I/O without driving a workload: one line (or CSV row)
    /// per call, block totals and the agent's own cost at the end. Ends after
    /// --duration, when the process exits, or on Ctrl-C.
    Trace(TraceArgs),
    /// Compare a candidate run against a baseline run (results JSON from
    /// `run --json`, or per-call CSV from `run --csv`): per mode and metric,
    /// medians with 95% CI, change, Mann-Whitney p-value (`~`: not
    /// significant); and each mode against pread / pread-direct in the
    /// candidate. Exit 1 on a significant regression beyond --threshold,
    /// 2 on unusable input. With one file, only the pread comparison.
    Compare(CompareArgs),
    /// One self-contained HTML report of a results file (`run --json`):
    /// latency CDF per mode, throughput with its 95% CI, the seed's table,
    /// alloc/transfer/sync/free as stacked bars, bandwidth over time, block
    /// device latency, the flame graphs when the run was profiled and, with
    /// --baseline, the comparison with significance marks. Plots are inline
    /// SVG; the page makes no request.
    Report(ReportArgs),
}

#[derive(clap::Args)]
pub struct ReportArgs {
    /// The results file (`run --json` or `bench --json`).
    pub results: PathBuf,
    /// A baseline results file to compare against (as `dmaprof compare`).
    #[arg(long, value_name = "BASE.json")]
    pub baseline: Option<PathBuf>,
    /// The HTML file to write (replaced whole, never left half-written).
    #[arg(short, long, value_name = "report.html")]
    pub output: PathBuf,
}

#[derive(clap::Args)]
pub struct DoctorArgs {
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// A file or directory whose block device, filesystem and O_DIRECT
    /// support to check (default: the current directory).
    #[arg(long, value_name = "PATH")]
    pub path: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub plan: plan::Args,
    #[command(flatten)]
    pub outputs: OutputArgs,
    #[command(flatten)]
    pub probes: ProbeArgs,
    #[command(flatten)]
    pub view: ViewArgs,
    #[command(flatten)]
    pub metrics: MetricsArgs,
}

/// The OpenMetrics endpoint (docs/metrics.md).
#[derive(clap::Args, Default, Clone)]
pub struct MetricsArgs {
    /// Serve Prometheus/OpenMetrics text at http://IP:PORT/metrics while
    /// running: per-call duration histograms (seconds; buckets 1 us to 10 s,
    /// four per decade) and bytes by mode, mechanism, direction, exporter
    /// and process;
    /// block request latency and bytes by device; lost events by reason;
    /// each probe program's runs and run time; the agent's CPU seconds.
    /// Only this address is bound (an IP, no name lookup): use
    /// 127.0.0.1:PORT to keep it on loopback. Port 0 picks a free one.
    #[arg(long, value_name = "IP:PORT")]
    pub metrics_addr: Option<String>,
    /// Bound on each label's distinct values (mode, mechanism, direction,
    /// exporter, process, device, program); later values are counted under `other`.
    #[arg(long, value_name = "N", default_value_t = 32,
          value_parser = clap::value_parser!(u64).range(1..=10000))]
    pub max_label_values: u64,
    /// When the run or trace ends, keep serving until the final figures
    /// have been scraped once (`dmaprof_session_ended 1`), at most this many
    /// seconds; 0 exits at once.
    #[arg(long, value_name = "SECONDS", default_value_t = 15.0)]
    pub metrics_linger: f64,
}

/// The result files of a run; each is checked writable before any work.
#[derive(clap::Args, Default)]
pub struct OutputArgs {
    /// Write one CSV row per call (every column, units in the names).
    #[arg(long, value_name = "PATH")]
    pub csv: Option<PathBuf>,
    /// Write one CSV row per mode (calls, bytes, MiB/s, latency percentiles, CPU per MiB ...).
    #[arg(long, value_name = "PATH")]
    pub summary_csv: Option<PathBuf>,
    /// Write the results document (schema dmaprof.results/3, docs/results.md):
    /// what `dmaprof compare` reads.
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
}

#[derive(clap::Args, Default)]
pub struct ProbeArgs {
    /// Run without kernel probes (userspace timing only).
    #[arg(long, conflicts_with_all = ["attach", "profile", "folded", "flamegraph"])]
    pub no_probes: bool,
    /// Force the mechanism for the dma_buf_ioctl and rw_file probes instead
    /// of the best that works (fentry, then kprobe, then tracepoint).
    #[arg(long, value_enum, value_name = "METHOD")]
    pub attach: Option<Method>,
    /// The exporter's rw_file function to probe (default: found in the
    /// kernel's BTF by its prototype).
    #[arg(long, value_name = "FUNCTION")]
    pub exporter_fn: Option<String>,
    #[command(flatten)]
    pub stats: StatsArgs,
    #[command(flatten)]
    pub profile: ProfileArgs,
}

/// Stack profiles of the calls: where each mode's time goes.
#[derive(clap::Args, Default, Clone)]
pub struct ProfileArgs {
    /// Sample the kernel and user stacks of the calls: on-CPU at
    /// --profile-hz on every CPU (the software CPU clock), off-CPU at every
    /// switch; each sample goes to the call in flight on its thread, and
    /// the top kernel functions of each mode are printed (and in --json).
    #[arg(long)]
    pub profile: bool,
    /// On-CPU samples per second per CPU, with --profile.
    #[arg(long, value_name = "HZ", default_value_t = 999,
          value_parser = clap::value_parser!(u64).range(1..=20000))]
    pub profile_hz: u64,
    /// Folded stacks per mode into DIR (MODE.on-cpu.folded: samples;
    /// MODE.off-cpu.folded: microseconds); implies --profile.
    #[arg(long, value_name = "DIR")]
    pub folded: Option<PathBuf>,
    /// A flame graph SVG per mode into DIR (MODE.on-cpu.svg,
    /// MODE.off-cpu.svg); implies --profile.
    #[arg(long, value_name = "DIR")]
    pub flamegraph: Option<PathBuf>,
}

impl ProfileArgs {
    /// The sampling frequency when profiling, else None.
    pub fn hz(&self) -> Option<u64> {
        (self.profile || self.folded.is_some() || self.flamegraph.is_some())
            .then_some(self.profile_hz)
    }
}

/// The probes' own cost, per program, from BPF run-time statistics.
#[derive(clap::Args, Default)]
pub struct StatsArgs {
    /// Leave BPF run-time statistics off: no per-program probe cost, and
    /// none of their cost (two clock reads per program run).
    #[arg(long)]
    pub no_probe_stats: bool,
    /// Exit 1 when the probes missed any event (ring or map full, a block
    /// request's start or end not seen, a program run the kernel skipped):
    /// a CI gate on the figures being whole. Without it a loss is reported
    /// in the closing line, the JSON and the metrics, and the exit is 0.
    #[arg(long)]
    pub strict: bool,
}

#[derive(clap::Args)]
pub struct ViewArgs {
    /// No live dashboard: progress on stderr, tables on stdout (automatic
    /// when stdin or stdout is not a terminal).
    #[arg(long)]
    pub headless: bool,
    /// Dashboard redraws per second.
    #[arg(long, default_value_t = 10.0)]
    pub fps: f64,
}

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Bytes per pass (the seed used a 1 GiB file).
    #[arg(long, value_parser = parse_size, default_value = "1G")]
    pub size: u64,
    /// Bytes per buffer and per call (the seed: 32 MiB buffers).
    #[arg(long, value_parser = parse_size, default_value = plan::DEFAULT_CHUNK_TEXT)]
    pub chunk: u64,
    /// Passes per mode (modes interleaved); at least 6 gives confidence intervals in `compare`.
    #[arg(long, default_value_t = 3)]
    pub iterations: u32,
    /// Source file (default: a dmaprof test file of --size in --dir).
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// Scratch directory [default: $DMAPROF_DIR or /var/tmp/dmaprof].
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// dma-heap to allocate dma-bufs from (/dev/dma_heap/NAME).
    #[arg(long, default_value = plan::DEFAULT_HEAP)]
    pub heap: String,
    /// v2: the seed's table (its rows and columns); v4: the v4 cover
    /// letter's (create, close, I/O ms and MiB/s per path, copy_file_range
    /// beside the paths it was measured against); all: every mode this
    /// kernel runs side by side, fastest first, with its mechanism and the
    /// ratio to the best baseline. Each ends with each path's share of the
    /// device's limit, measured after them on the same file (io_uring
    /// O_DIRECT at queue depth 32, in the bench's direction).
    #[arg(long, value_enum, default_value = "v2")]
    pub table: BenchTable,
    /// read: file -> buffer (model loading; the seed's and v4's first
    /// table); write: buffer -> file, a new file in --dir (v4's second).
    /// The v2 table is reads only.
    #[arg(long, value_enum, default_value = "read")]
    pub direction: Direction,
    #[command(flatten)]
    pub outputs: OutputArgs,
    #[command(flatten)]
    pub probes: ProbeArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchTable {
    V2,
    V4,
    All,
}

impl BenchArgs {
    /// The seed's experiment: every read mode, cold cache, verified.
    pub fn plan_args(&self) -> plan::Args {
        plan::Args {
            modes: vec!["all".into()],
            direction: self.direction,
            file: self.file.clone(),
            dir: self.dir.clone(),
            size: Some(self.size),
            chunk: self.chunk,
            iterations: self.iterations,
            heap: self.heap.clone(),
            cache: CacheMode::Cold,
            verify: true,
            force: false,
            buffers: BufferUse::Distinct,
            queue_depth: 1,
        }
    }
}

#[derive(clap::Args)]
pub struct TraceArgs {
    /// The process to trace (a process id, not a thread id).
    #[arg(long, conflicts_with = "all", required_unless_present = "all")]
    pub pid: Option<u32>,
    /// Trace every process.
    #[arg(long)]
    pub all: bool,
    /// Stop after this many seconds (default: until Ctrl-C).
    #[arg(long, value_name = "SECONDS")]
    pub duration: Option<f64>,
    /// Force the mechanism for the ioctl and rw_file probes; `tracepoint`
    /// also puts pread64 on its syscall tracepoints (default: the raw
    /// sys_enter/sys_exit tracepoints, typed by BTF, where the kernel has them).
    #[arg(long, value_enum, value_name = "METHOD")]
    pub attach: Option<Method>,
    /// No live dashboard: one line per call on stdout (automatic when
    /// stdin or stdout is not a terminal).
    #[arg(long)]
    pub headless: bool,
    /// Write one CSV row per call here (start_ns, pid, tid, kind, what,
    /// bytes_asked, ret, duration_ns) instead of printing lines.
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
    /// Write the session summary (events per kind and per second, lost
    /// events, the agent's CPU, the probes' cost) as JSON here.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Stream one JSON object per call as it happens (`{"type":"call",...}`:
    /// the CSV's fields, the request, file and dma-buf as objects), and one
    /// per --interval (`{"type":"interval",...}`), to this file (appended
    /// to) or `-` for stdout (then no lines and no dashboard there). Lines
    /// are written whole.
    #[arg(long, value_name = "PATH|-")]
    pub jsonl: Option<PathBuf>,
    /// Every SECONDS, a summary of the interval per kind of call (calls,
    /// bytes, MiB/s, p50/p99/max latency), printed and, with --jsonl,
    /// streamed: for traces that never end.
    #[arg(long, value_name = "SECONDS")]
    pub interval: Option<f64>,
    #[command(flatten)]
    pub stats: StatsArgs,
    #[command(flatten)]
    pub metrics: MetricsArgs,
    /// Stack profile of the traced process, its samples in the bucket of
    /// the traced call in flight (pread, ioctl RW_FILE, ioctl SYNC ...).
    #[command(flatten)]
    pub profile: ProfileArgs,
}

#[derive(clap::Args)]
pub struct CompareArgs {
    /// The baseline results file.
    pub baseline: PathBuf,
    /// The candidate results file.
    pub candidate: Option<PathBuf>,
    /// Percent: a significant change for the worse beyond this fails (exit 1).
    #[arg(long, value_name = "PCT")]
    pub threshold: Option<f64>,
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Also write a differential flame graph of on-CPU stacks to OUT.svg:
    /// the candidate's stacks coloured by how their share changed from the
    /// baseline's (red grew, blue shrank). Needs results JSON written with
    /// `run --profile --json`. With one file, two of its modes compare.
    #[arg(long, value_name = "OUT.svg")]
    pub flamegraph: Option<PathBuf>,
    /// The modes of the flame graph: MODE (in both files) or
    /// BASE_MODE,CANDIDATE_MODE (with one file, two of its modes; with two,
    /// a mode of each). Default: the one mode both sides have.
    #[arg(long, value_name = "MODE[,MODE]", requires = "flamegraph")]
    pub flamegraph_modes: Option<String>,
}

/// clap's errors span several lines; dmaprof's rule is one line naming the
/// cause. Help and version output are printed as clap formats them.
pub fn usage_error(e: clap::Error) -> crate::exit::Exit {
    use crate::exit::Exit;
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            Exit::Success
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            Exit::Input("a command is needed (see --help)".into())
        }
        _ => {
            let text = e.render().to_string();
            let first = text
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("invalid arguments");
            Exit::Input(format!(
                "{} (see --help)",
                first.trim_start_matches("error: ")
            ))
        }
    }
}
