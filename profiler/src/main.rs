//! The `dmaprof` command line.
use std::{path::PathBuf, process::ExitCode};

use std::{
    io::IsTerminal,
    sync::{Arc, Mutex},
};

use clap::{Parser, Subcommand};
use profiler::{
    compare, doctor,
    export::{
        atomic::{self, AtomicFile},
        calls_csv, results,
    },
    live::{self, state::LiveState},
    workload::{
        self, CacheMode, RunError,
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
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Report what this machine lets dmaprof measure: BPF, each probe's attach
    /// method (tried for real), dma-heaps, udmabuf, RW_FILE support, O_DIRECT.
    Doctor {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// A file or directory whose block device, filesystem and O_DIRECT
        /// support to check (default: the current directory).
        #[arg(long, value_name = "PATH")]
        path: Option<PathBuf>,
    },
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
    Trace {
        /// The process to trace.
        #[arg(long, conflicts_with = "all", required_unless_present = "all")]
        pid: Option<u32>,
        /// Trace every process.
        #[arg(long)]
        all: bool,
        /// Stop after this many seconds (default: until Ctrl-C).
        #[arg(long, value_name = "SECONDS")]
        duration: Option<f64>,
        /// Force the mechanism for the ioctl and rw_file probes.
        #[arg(long, value_enum, value_name = "METHOD")]
        attach: Option<profiler::probes::attach::Method>,
        /// No live dashboard: one line per call on stdout (automatic when
        /// stdin or stdout is not a terminal).
        #[arg(long)]
        headless: bool,
        /// Write one CSV row per call here (start_ns, pid, tid, kind, what,
        /// bytes_asked, ret, duration_ns) instead of printing lines.
        #[arg(long, value_name = "FILE")]
        csv: Option<PathBuf>,
        /// Write the session summary (events per kind and per second, lost
        /// events, the agent's CPU) as JSON here.
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
    },
    /// Compare a candidate run against a baseline run (results JSON from
    /// `run --json`, or per-call CSV from `run --csv`): per mode and metric,
    /// medians with 95% CI, change, Mann-Whitney p-value (`~`: not
    /// significant); and each mode against pread / pread-direct in the
    /// candidate. Exit 1 on a significant regression beyond --threshold,
    /// 2 on unusable input. With one file, only the pread comparison.
    Compare {
        /// The baseline results file.
        baseline: PathBuf,
        /// The candidate results file.
        candidate: Option<PathBuf>,
        /// Percent: a significant change for the worse beyond this fails (exit 1).
        #[arg(long, value_name = "PCT")]
        threshold: Option<f64>,
        #[arg(long, value_enum, default_value = "text")]
        format: compare::report::Format,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// I/O path to measure; repeat for several. `all` (the default) runs
    /// every mode this machine supports for the direction and lists the
    /// others with the reason. Modes: pread, pread-direct, dmabuf-read,
    /// rw-file, rw-file-direct, udmabuf-read, udmabuf-direct-read,
    /// udmabuf-sendfile, udmabuf-direct-sendfile, pwrite, pwrite-direct, dmabuf-write.
    #[arg(long = "mode", value_name = "MODE")]
    modes: Vec<String>,
    /// read: file -> buffer (restore); write: buffer -> file (save).
    #[arg(long, value_enum, default_value = "read")]
    direction: DirectionArg,
    /// Read: the source file (default: a dmaprof test file in --dir, made
    /// once). Write: the destination (one mode only); never overwritten
    /// unless dmaprof created it or --force is given.
    #[arg(long, value_name = "PATH")]
    file: Option<PathBuf>,
    /// Scratch directory for dmaprof's test and output files
    /// [default: $DMAPROF_DIR or /var/tmp/dmaprof].
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Bytes to move per pass (K, M, G suffixes) [default: the file's size; 256M for dmaprof's files].
    #[arg(long, value_parser = parse_size)]
    size: Option<u64>,
    /// Bytes per buffer and per call, as in the seed (32 MiB buffers).
    #[arg(long, value_parser = parse_size, default_value = "32M")]
    chunk: u64,
    /// Passes per mode; modes are interleaved within each iteration.
    #[arg(long, default_value_t = 1)]
    iterations: u32,
    /// dma-heap to allocate dma-bufs from (/dev/dma_heap/NAME).
    #[arg(long, default_value = "system")]
    heap: String,
    /// Page-cache state at the start of each read pass: cold drops the file's
    /// pages (posix_fadvise DONTNEED), warm reads the file once first.
    #[arg(long, value_enum, default_value = "cold")]
    cache: CacheMode,
    /// Skip verifying the data moved (verification runs outside the timed calls).
    #[arg(long)]
    no_verify: bool,
    /// Allow overwriting a write destination that dmaprof did not create.
    #[arg(long)]
    force: bool,
    /// Write one CSV row per call (every column, units in the names).
    #[arg(long, value_name = "PATH")]
    csv: Option<PathBuf>,
    /// Write one CSV row per mode (calls, bytes, MiB/s, latency percentiles, CPU per MiB ...).
    #[arg(long, value_name = "PATH")]
    summary_csv: Option<PathBuf>,
    /// Write the results document (schema dmaprof.results/1, docs/results.md):
    /// what `dmaprof compare` reads.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
    /// Run without kernel probes (userspace timing only).
    #[arg(long, conflicts_with = "attach")]
    no_probes: bool,
    /// No live dashboard: progress on stderr, tables on stdout (automatic
    /// when stdin or stdout is not a terminal).
    #[arg(long)]
    headless: bool,
    /// Dashboard redraws per second.
    #[arg(long, default_value_t = 10.0)]
    fps: f64,
    /// Force the mechanism for the dma_buf_ioctl and rw_file probes instead
    /// of the best that works (fentry, then kprobe, then tracepoint).
    #[arg(long, value_enum, value_name = "METHOD")]
    attach: Option<profiler::probes::attach::Method>,
    /// The exporter's rw_file function to probe (default: found in the
    /// kernel's BTF by its prototype).
    #[arg(long, value_name = "FUNCTION")]
    exporter_fn: Option<String>,
}

#[derive(clap::Args)]
struct BenchArgs {
    /// Bytes per pass (the seed used a 1 GiB file).
    #[arg(long, value_parser = parse_size, default_value = "1G")]
    size: u64,
    /// Bytes per buffer and per call (the seed: 32 MiB buffers).
    #[arg(long, value_parser = parse_size, default_value = "32M")]
    chunk: u64,
    /// Passes per mode (modes interleaved); at least 6 gives confidence intervals in `compare`.
    #[arg(long, default_value_t = 3)]
    iterations: u32,
    /// Source file (default: a dmaprof test file of --size in --dir).
    #[arg(long, value_name = "PATH")]
    file: Option<PathBuf>,
    /// Scratch directory [default: $DMAPROF_DIR or /var/tmp/dmaprof].
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    #[arg(long, default_value = "system")]
    heap: String,
    /// Save the results document for `dmaprof compare`.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
    /// Per-call CSV.
    #[arg(long, value_name = "PATH")]
    csv: Option<PathBuf>,
    /// Run without kernel probes.
    #[arg(long)]
    no_probes: bool,
}

impl BenchArgs {
    fn into_run(self) -> RunArgs {
        RunArgs {
            modes: vec!["all".into()],
            direction: DirectionArg::Read,
            file: self.file,
            dir: self.dir,
            size: Some(self.size),
            chunk: self.chunk,
            iterations: self.iterations,
            heap: self.heap,
            cache: CacheMode::Cold,
            no_verify: false,
            force: false,
            csv: self.csv,
            summary_csv: None,
            json: self.json,
            no_probes: self.no_probes,
            headless: true,
            fps: 10.0,
            attach: None,
            exporter_fn: None,
        }
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum DirectionArg {
    Read,
    Write,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("dmaprof: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// clap's errors span several lines; dmaprof's rule is one line naming the
/// cause. Help and version output are printed as clap formats them.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        return if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        };
    }
    let text = e.render().to_string();
    let first = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("invalid arguments");
    eprintln!(
        "dmaprof: {} (see --help)",
        first.trim_start_matches("error: ")
    );
    ExitCode::from(2)
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run(args) => Ok(run_workload(args, false)),
        Command::Bench(args) => Ok(run_workload(args.into_run(), true)),
        Command::Trace {
            pid,
            all: _,
            duration,
            attach,
            headless,
            csv,
            json,
        } => Ok(run_trace(TraceArgs {
            pid,
            duration,
            attach,
            headless,
            csv,
            json,
        })),
        Command::Compare {
            baseline,
            candidate,
            threshold,
            format,
        } => Ok(run_compare(
            &baseline,
            candidate.as_deref(),
            threshold,
            format,
        )),
        Command::Doctor { json, path } => {
            let path = match path {
                Some(p) => {
                    if !p.exists() {
                        anyhow::bail!("--path {}: no such file or directory", p.display());
                    }
                    p
                }
                None => std::env::current_dir()?,
            };
            let report = doctor::run(&doctor::Options { path: Some(path) });
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", doctor::render_text(&report));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Prints each pass as it ends (stderr: stdout stays for the table) and
/// streams call rows to the CSV file.
struct Recorder<'a> {
    csv: Option<AtomicFile>,
    csv_error: Option<std::io::Error>,
    /// The dashboard's state, and the probes to refresh its block view from.
    live: Option<(Arc<Mutex<LiveState>>, Option<&'a RunProbes>)>,
    last_block_read: std::time::Instant,
    /// Headless on a terminal: a progress bar on stderr (calls done / planned).
    bar: Option<(u64, u64)>,
}

impl workload::Observer for Recorder<'_> {
    fn on_pass_start(&mut self, mode: workload::mode::Mode, _iteration: u32) {
        if let Some((state, _)) = &self.live {
            state
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .header
                .running = Some(mode.name().into());
        }
    }

    fn on_call(&mut self, c: &workload::CallRecord) {
        if let (Some(f), None) = (self.csv.as_mut(), self.csv_error.as_ref())
            && let Err(e) = calls_csv::row(f.writer(), c)
        {
            self.csv_error = Some(e);
        }
        if let Some((done, planned)) = &mut self.bar {
            *done += 1;
            let width = 30;
            let filled = (*done * width / (*planned).max(1)).min(width) as usize;
            eprint!(
                "\r\x1b[2K  [{}{}] {:>3}%  {} call {}",
                "#".repeat(filled),
                " ".repeat(width as usize - filled),
                *done * 100 / (*planned).max(1),
                c.mode.name(),
                c.index
            );
        }
        if let Some((state, probes)) = &self.live {
            // Block histograms come from kernel maps: a few reads a second at most.
            let block = match probes {
                Some(p)
                    if self.last_block_read.elapsed() > std::time::Duration::from_millis(250) =>
                {
                    self.last_block_read = std::time::Instant::now();
                    p.session.block().ok()
                }
                _ => None,
            };
            let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
            s.record(c);
            if block.is_some() {
                s.block = block;
            }
        }
    }

    fn on_pass(&mut self, p: &workload::Pass) {
        if let Some((state, _)) = &self.live {
            state
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .header
                .passes_done += 1;
            return; // the dashboard shows progress; stderr would garble it
        }
        if self.bar.is_some() {
            eprint!("\r\x1b[2K"); // the pass line replaces the bar
        }
        eprintln!(
            "  {:<24} iteration {}: {} in {:.1} ms ({:.0} MiB/s)",
            p.mode.name(),
            p.iteration,
            p.bytes,
            p.transfer_ns as f64 / 1e6,
            p.bytes as f64 / (1u64 << 20) as f64 / (p.transfer_ns.max(1) as f64 / 1e9)
        );
    }
}

/// Opens the per-call CSV before the run so a bad path fails before any work.
fn open_csv(path: &std::path::Path) -> Result<AtomicFile, String> {
    let mut f = AtomicFile::create(path).map_err(|e| format!("--csv {}: {e}", path.display()))?;
    calls_csv::header(f.writer()).map_err(|e| format!("--csv {}: {e}", path.display()))?;
    Ok(f)
}

/// Checks an output path can be written, before any work.
fn check_output(flag: &str, path: &std::path::Path) -> Result<(), String> {
    AtomicFile::create(path)
        .map(drop)
        .map_err(|e| format!("{flag} {}: {e}", path.display()))
}

fn run_workload(a: RunArgs, seed_table: bool) -> ExitCode {
    let args = plan::Args {
        modes: a.modes.clone(),
        direction: match a.direction {
            DirectionArg::Read => Direction::Read,
            DirectionArg::Write => Direction::Write,
        },
        file: a.file.clone(),
        dir: a.dir.clone(),
        size: a.size,
        chunk: a.chunk,
        iterations: a.iterations,
        heap: a.heap.clone(),
        cache: a.cache,
        verify: !a.no_verify,
        force: a.force,
    };
    // Ctrl-C / SIGTERM end the run between calls; what was done is reported.
    // Registered before anything is written, so no signal leaves a temp file.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register(sig, stop.clone());
    }
    workload::datafile::stop_on(stop.clone());
    let plan = match plan::plan(&args) {
        Ok(p) => p,
        Err(_) if stop.load(std::sync::atomic::Ordering::Relaxed) => {
            eprintln!("dmaprof: interrupted before the run started");
            return ExitCode::from(130);
        }
        Err(e) => {
            eprintln!("dmaprof: {e}");
            return ExitCode::from(2);
        }
    };
    let outputs = (|| -> Result<Option<AtomicFile>, String> {
        if let Some(p) = &a.summary_csv {
            check_output("--summary-csv", p)?;
        }
        if let Some(p) = &a.json {
            check_output("--json", p)?;
        }
        a.csv.as_deref().map(open_csv).transpose()
    })();
    let csv = match outputs {
        Ok(csv) => csv,
        Err(e) => {
            eprintln!("dmaprof: {e}");
            return ExitCode::from(2);
        }
    };
    let started_unix_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let cfg = &plan.config;
    for note in &plan.notes {
        eprintln!("dmaprof: {note}");
    }
    eprintln!(
        "dmaprof: {} {} bytes {} {} in {}-byte calls, {} iteration(s), cache {}, modes: {}",
        cfg.direction,
        cfg.size,
        if cfg.direction == Direction::Read {
            "of"
        } else {
            "to"
        },
        match cfg.write_to.first() {
            Some((_, dest)) => dest.display().to_string(),
            None => cfg.file.display().to_string(),
        },
        cfg.chunk,
        cfg.iterations,
        match (cfg.direction, cfg.cache) {
            (Direction::Write, _) => "n/a",
            (_, CacheMode::Cold) => "cold",
            (_, CacheMode::Warm) => "warm",
        },
        cfg.modes
            .iter()
            .map(|m| m.name())
            .collect::<Vec<_>>()
            .join(", ")
    );
    for (mode, why) in &plan.skipped {
        eprintln!("dmaprof: skipping {mode}: {why}");
    }

    let mut probes = match start_probes(&a) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("dmaprof: {e}");
            return ExitCode::from(2);
        }
    };
    let tui = !a.headless && std::io::stdout().is_terminal() && std::io::stdin().is_terminal();
    let live = tui.then(|| {
        Arc::new(Mutex::new(LiveState::new(
            live_header(cfg, probes.as_ref()),
            &mode_names(cfg),
        )))
    });
    let ui = match &live {
        Some(state) => match live::tui::start(state.clone(), stop.clone(), a.fps) {
            Ok(ui) => Some(ui),
            Err(e) => {
                eprintln!("dmaprof: no dashboard ({e}); running headless");
                None
            }
        },
        None => None,
    };
    let mut recorder = Recorder {
        csv,
        csv_error: None,
        live: ui.as_ref().and(live.clone()).map(|s| (s, probes.as_ref())),
        last_block_read: std::time::Instant::now(),
        bar: (ui.is_none() && std::io::stderr().is_terminal()).then_some((
            0,
            cfg.size.div_ceil(cfg.chunk) * cfg.modes.len() as u64 * cfg.iterations as u64,
        )),
    };
    let counters = probes.as_ref().map(|p| p as &dyn workload::KernelCounters);
    let outcome = workload::run(cfg, &stop, &mut recorder, counters);
    let Recorder { csv, csv_error, .. } = recorder;
    if let Some(state) = &live {
        let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
        s.ended = Some(std::time::Instant::now());
        s.header.running = None;
        if let Some(p) = &probes {
            s.block = p.session.block().ok();
        }
    }
    if let Some(p) = probes.as_mut() {
        print_diagnostics(&mut p.session);
    }
    let probe_report = probes.as_ref().map(|p| {
        (
            p.session.attached.clone(),
            p.session.lost().unwrap_or_default(),
        )
    });
    drop(probes); // detach before writing results
    // Exports first: whatever happened, the calls done so far are kept.
    // Exports first, then the dashboard waits for the user to quit.
    workload::announce(format_args!("export"));
    let export_error = write_exports(
        &a,
        cfg,
        &plan.skipped,
        &outcome,
        (csv, csv_error),
        started_unix_s,
        probe_report.clone(),
    );

    if let Some(ui) = ui
        && let Err(e) = ui.finish()
    {
        eprintln!("dmaprof: dashboard: {e}");
    }
    let rows = workload::summary::summarize(&outcome.passes);
    if !rows.is_empty() {
        if let Some(p) = outcome.passes.first()
            && cfg.direction == Direction::Read
        {
            println!("cache: {}", p.cache);
        }
        if seed_table {
            print!("{}", workload::summary::render_seed_table(&rows));
        } else {
            print!("{}", workload::summary::render_table(&rows));
        }
        if probe_report.is_some() {
            print!("{}", workload::summary::render_kernel_table(&rows));
        }
    }
    if let Some((_, lost)) = &probe_report
        && *lost != Default::default()
    {
        eprintln!("dmaprof: WARNING: the probes lost events: {lost:?}");
    }
    if let Some(e) = export_error {
        eprintln!("dmaprof: {e}");
        return ExitCode::from(1);
    }
    match outcome.error {
        Some(RunError::Input(e)) => {
            eprintln!("dmaprof: {e}");
            ExitCode::from(2)
        }
        Some(RunError::Failed(e)) => {
            eprintln!("dmaprof: {e}");
            ExitCode::from(1)
        }
        None if outcome.interrupted => {
            eprintln!(
                "dmaprof: interrupted; {} pass(es) completed",
                outcome.passes.len()
            );
            ExitCode::from(130)
        }
        None => ExitCode::SUCCESS,
    }
}

/// Commits the per-call CSV and writes the summary CSV and JSON. Returns the
/// first failure, after trying every file.
fn write_exports(
    a: &RunArgs,
    cfg: &workload::Config,
    skipped: &[(workload::mode::Mode, String)],
    outcome: &workload::Outcome,
    (csv, csv_error): (Option<AtomicFile>, Option<std::io::Error>),
    started_unix_s: u64,
    probes: Option<(
        Vec<profiler::probes::session::Attached>,
        profiler::probes::session::Lost,
    )>,
) -> Option<String> {
    let mut first_error = None;
    let mut note = |e: String| {
        if first_error.is_none() {
            first_error = Some(e);
        }
    };
    if let Some(f) = csv {
        let dest = f.dest().display().to_string();
        match csv_error {
            Some(e) => note(format!("--csv {dest}: {e}")),
            None => {
                if let Err(e) = f.commit() {
                    note(format!("--csv {dest}: {e}"));
                }
            }
        }
    }
    let rows = workload::summary::summarize(&outcome.passes);
    if let Some(p) = &a.summary_csv {
        let mut bytes = Vec::new();
        let r =
            results::write_summary_csv(&mut bytes, &rows).and_then(|()| atomic::write(p, &bytes));
        if let Err(e) = r {
            note(format!("--summary-csv {}: {e}", p.display()));
        }
    }
    if let Some(p) = &a.json {
        let doc = results::build(cfg, outcome, skipped, started_unix_s, probes);
        let text = serde_json::to_string_pretty(&doc).expect("results serialize");
        if let Err(e) = atomic::write(p, text.as_bytes()) {
            note(format!("--json {}: {e}", p.display()));
        }
    }
    first_error
}

fn run_compare(
    baseline: &std::path::Path,
    candidate: Option<&std::path::Path>,
    threshold: Option<f64>,
    format: compare::report::Format,
) -> ExitCode {
    if let Some(t) = threshold
        && !(t.is_finite() && t >= 0.0)
    {
        eprintln!("dmaprof: --threshold must be a non-negative percentage, not {t}");
        return ExitCode::from(2);
    }
    let loaded = compare::input::load(baseline).and_then(|b| match candidate {
        Some(c) => compare::input::load(c).map(|c| (b, Some(c))),
        None => Ok((b, None)),
    });
    let (base, cand) = match loaded {
        Ok(x) => x,
        Err(e) => {
            eprintln!("dmaprof: {e}");
            return ExitCode::from(2);
        }
    };
    let Some(cand) = cand else {
        let speedups = compare::speedups(&base);
        if speedups.is_empty() {
            eprintln!(
                "dmaprof: {}: no pread or pread-direct pass to compare against",
                baseline.display()
            );
            return ExitCode::from(2);
        }
        let report = compare::Report {
            rows: Vec::new(),
            speedups,
            threshold_pct: None,
            only_in_baseline: Vec::new(),
            only_in_candidate: Vec::new(),
        };
        print!("{}", compare::report::render(&report, format));
        return ExitCode::SUCCESS;
    };
    match compare::compare(&base, &cand, threshold) {
        Ok(report) => {
            print!("{}", compare::report::render(&report, format));
            if report.regressions().next().is_some() {
                eprintln!(
                    "dmaprof: significant regression beyond {}%",
                    threshold.unwrap_or(0.0)
                );
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("dmaprof: {e}");
            ExitCode::from(2)
        }
    }
}

/// The kernel probes of a run, counting the workload thread.
struct RunProbes {
    session: profiler::probes::session::Session,
    tid: u32,
}

impl workload::KernelCounters for RunProbes {
    fn read(&self) -> Option<profiler_common::call::ThreadCounters> {
        self.session.thread_counters(self.tid).ok()
    }
}

/// Attaches the probes unless told not to. Without the privileges, or when
/// attaching fails, the run goes on without them and says so, unless a
/// method was forced with --attach (then it is an error).
fn start_probes(a: &RunArgs) -> Result<Option<RunProbes>, String> {
    use profiler::probes::session::{Families, Options, Session};
    if a.no_probes {
        eprintln!("dmaprof: kernel probes off (--no-probes)");
        return Ok(None);
    }
    if !profiler::kernel::Privileges::current().can_trace() {
        if a.attach.is_some() {
            return Err("--attach needs root (or CAP_BPF + CAP_PERFMON)".into());
        }
        eprintln!(
            "dmaprof: kernel probes off: not root and no CAP_BPF + CAP_PERFMON (userspace timing only)"
        );
        return Ok(None);
    }
    let opts = Options {
        filter_tgid: Some(std::process::id()),
        force: a.attach,
        exporter_fn: a.exporter_fn.clone(),
        families: Families::WORKLOAD,
        inflight_capacity: None,
    };
    let mut session = match Session::attach(&opts) {
        Ok(s) => s,
        Err(e) if a.attach.is_some() => {
            return Err(format!("--attach {}: {e:#}", a.attach.unwrap()));
        }
        Err(e) => {
            eprintln!("dmaprof: WARNING: kernel probes off: {e:#}");
            return Ok(None);
        }
    };
    if let (Some(forced), Some(ioctl)) = (a.attach, session.attached.first())
        && ioctl.method != Some(forced)
    {
        return Err(format!("--attach {forced}: {}", ioctl.not_used.join("; ")));
    }
    // SAFETY: gettid cannot fail. The workload runs on this thread.
    let tid = unsafe { libc::gettid() } as u32;
    session
        .register_thread(tid)
        .map_err(|e| format!("registering the workload thread: {e:#}"))?;
    report_probes(&session.attached, true);
    Ok(Some(RunProbes { session, tid }))
}

struct TraceArgs {
    pid: Option<u32>,
    duration: Option<f64>,
    attach: Option<profiler::probes::attach::Method>,
    headless: bool,
    csv: Option<PathBuf>,
    json: Option<PathBuf>,
}

fn run_trace(a: TraceArgs) -> ExitCode {
    use profiler::probes::{
        events::{self, Sink, TraceSummary},
        session::{Families, Options, Session},
    };
    let TraceArgs {
        pid,
        duration,
        attach,
        headless,
        ..
    } = a;
    if let Some(p) = pid
        && !std::path::Path::new(&format!("/proc/{p}")).exists()
    {
        eprintln!("dmaprof: --pid {p}: no such process");
        return ExitCode::from(2);
    }
    if let Some(d) = duration
        && !(d.is_finite() && d > 0.0)
    {
        eprintln!("dmaprof: --duration must be a positive number of seconds");
        return ExitCode::from(2);
    }
    if let Some(j) = &a.json
        && let Err(e) = check_output("--json", j)
    {
        eprintln!("dmaprof: {e}");
        return ExitCode::from(2);
    }
    let csv = match a.csv.as_deref().map(|p| {
        let mut f = AtomicFile::create(p).map_err(|e| format!("--csv {}: {e}", p.display()))?;
        events::csv_header(f.writer()).map_err(|e| format!("--csv {}: {e}", p.display()))?;
        Ok::<_, String>(f)
    }) {
        Some(Err(e)) => {
            eprintln!("dmaprof: {e}");
            return ExitCode::from(2);
        }
        Some(Ok(f)) => Some(f),
        None => None,
    };
    if !profiler::kernel::Privileges::current().can_trace() {
        eprintln!("dmaprof: trace needs root (or CAP_BPF + CAP_PERFMON)");
        return ExitCode::from(2);
    }
    let opts = Options {
        filter_tgid: pid,
        force: attach,
        exporter_fn: None,
        families: Families::ALL,
        inflight_capacity: None,
    };
    let mut session = match Session::attach(&opts) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("dmaprof: attaching probes: {e:#}");
            return ExitCode::from(2);
        }
    };
    let mut ring = match session.take_events() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("dmaprof: reading events: {e:#}");
            return ExitCode::from(1);
        }
    };
    report_probes(&session.attached, false);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register(sig, stop.clone());
    }
    let start = std::time::Instant::now();
    let cpu0 = events::own_cpu_s();
    // On a terminal (and without --csv): the dashboard, one row per kind of call.
    let tui = !headless
        && csv.is_none()
        && std::io::stdout().is_terminal()
        && std::io::stdin().is_terminal();
    let live = tui.then(|| {
        let header = dashboards::model::Header {
            kernel: profiler::kernel::release(),
            direction: "trace".into(),
            file: pid
                .map(|p| format!("pid {p}"))
                .unwrap_or_else(|| "every process".into()),
            cache: "-".into(),
            probes: probe_status(&session.attached),
            running: Some("tracing".into()),
            ..Default::default()
        };
        let mut state = LiveState::new(header, &[]);
        state.tgid = pid.unwrap_or(0);
        Arc::new(Mutex::new(state))
    });
    let ui = match &live {
        Some(state) => live::tui::start(state.clone(), stop.clone(), 10.0).ok(),
        None => None,
    };
    let mut sink = match (csv, &live, &ui) {
        (Some(f), _, _) => Sink::Csv(f),
        (None, Some(state), Some(_)) => Sink::Live(state.clone()),
        _ => {
            println!(
                "{:>12} {:>8} {:>8} {:<9} {:>12} {:>12} {:>10} {:>6}",
                "t_ms", "pid", "tid", "kind", "cmd/fd", "bytes", "dur_us", "ret"
            );
            Sink::Lines(std::io::BufWriter::new(std::io::stdout()))
        }
    };
    eprintln!(
        "dmaprof: tracing {} (Ctrl-C to stop)",
        pid.map(|p| format!("pid {p}"))
            .unwrap_or_else(|| "every process".into())
    );
    let mut summary = TraceSummary {
        pid,
        ..Default::default()
    };
    let mut last_block = std::time::Instant::now();
    let mut sink_error = None;
    loop {
        // Decided before draining: whatever was emitted up to now is taken.
        let done = stop.load(std::sync::atomic::Ordering::Relaxed)
            || duration.is_some_and(|d| start.elapsed().as_secs_f64() >= d)
            || pid.is_some_and(|p| !process_alive(p));
        if let Err(e) = sink.drain(&mut ring, &mut summary, start) {
            // A full disk or a closed pipe: stop tracing, keep what was written.
            sink_error = Some(e);
            break;
        }
        if let Some(state) = &live
            && last_block.elapsed() > std::time::Duration::from_millis(250)
        {
            last_block = std::time::Instant::now();
            let block = session.block().ok();
            state.lock().unwrap_or_else(|e| e.into_inner()).block = block;
        }
        if done {
            break;
        }
        // Batches, not wakeups: waking per event costs ~6 us of CPU each at
        // moderate rates; the 8 MiB ring holds >100 ms of events at 1M/s.
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    summary.finish(start.elapsed().as_secs_f64(), cpu0);
    summary.lost = session.lost().unwrap_or_default();
    summary.probes = session.attached.clone();
    if let Some(state) = &live {
        let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
        s.ended = Some(std::time::Instant::now());
        s.header.running = None;
    }
    if let Some(ui) = ui
        && let Err(e) = ui.finish()
    {
        eprintln!("dmaprof: dashboard: {e}");
    }
    let block = session.block();
    print_diagnostics(&mut session);
    drop(ring);
    drop(session); // detach before writing results
    let mut failed = sink_error.map(|e| format!("writing calls: {e}"));
    if let Sink::Csv(f) = sink {
        let dest = f.dest().display().to_string();
        if let Err(e) = f.commit() {
            failed.get_or_insert(format!("--csv {dest}: {e}"));
        }
    }
    if let Ok(snap) = block {
        let mut per_pid: std::collections::BTreeMap<u32, profiler_common::block::BlockTotals> =
            Default::default();
        for (k, t) in &snap.per_thread {
            per_pid.entry(k.tgid).or_default().add(t);
        }
        println!("\nblock I/O (counted at completion, attributed to the submitting process)");
        println!(
            "{:>8} {:>10} {:>14} {:>14} {:>12}",
            "pid", "requests", "read bytes", "write bytes", "dev us/req"
        );
        for (p, t) in per_pid {
            println!(
                "{:>8} {:>10} {:>14} {:>14} {:>12.1}",
                p,
                t.completions,
                t.read_bytes,
                t.write_bytes,
                if t.completions == 0 {
                    0.0
                } else {
                    t.device_ns as f64 / t.completions as f64 / 1e3
                }
            );
        }
    }
    if let Some(j) = &a.json {
        let text = serde_json::to_string_pretty(&summary).unwrap_or_default();
        if let Err(e) = atomic::write(j, text.as_bytes()) {
            failed.get_or_insert(format!("--json {}: {e}", j.display()));
        }
    }
    eprintln!("dmaprof: {}", summary.line());
    if summary.lost != Default::default() {
        eprintln!(
            "dmaprof: WARNING: the probes lost events: {:?}",
            summary.lost
        );
    }
    match failed {
        Some(e) => {
            eprintln!("dmaprof: {e}");
            ExitCode::from(1)
        }
        None => ExitCode::SUCCESS,
    }
}

/// Whether a process still runs (a zombie has exited: its I/O is over).
fn process_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

fn mode_names(cfg: &workload::Config) -> Vec<String> {
    cfg.modes.iter().map(|m| m.name().to_string()).collect()
}

fn live_header(cfg: &workload::Config, probes: Option<&RunProbes>) -> dashboards::model::Header {
    dashboards::model::Header {
        kernel: profiler::kernel::release(),
        direction: cfg.direction.to_string(),
        file: match cfg.write_to.first() {
            Some((_, p)) => p.display().to_string(),
            None => cfg.file.display().to_string(),
        },
        cache: match cfg.direction {
            Direction::Write => "n/a".into(),
            _ => format!("{:?}", cfg.cache).to_lowercase(),
        },
        probes: probes
            .map(|p| probe_status(&p.session.attached))
            .unwrap_or_default(),
        passes_planned: cfg.iterations * cfg.modes.len() as u32,
        ..Default::default()
    }
}

/// One line per probe on stderr: how it attached (and, with `why`, why the
/// better mechanisms were not used).
fn report_probes(attached: &[profiler::probes::session::Attached], why: bool) {
    for at in attached {
        let method = at
            .method
            .map(|m| m.to_string())
            .unwrap_or_else(|| "not traced".into());
        eprintln!("dmaprof: probe {}: {method} {}", at.probe, at.target);
        if why {
            for reason in &at.not_used {
                eprintln!("dmaprof:   not used: {reason}");
            }
        }
    }
}

fn probe_status(
    attached: &[profiler::probes::session::Attached],
) -> Vec<dashboards::model::ProbeStatus> {
    attached
        .iter()
        .map(|a| dashboards::model::ProbeStatus {
            name: a.probe.clone(),
            method: a.method.map(|m| m.to_string()),
            degraded: !a.not_used.is_empty(),
        })
        .collect()
}

/// What the eBPF programs reported through aya-log (failure paths only).
fn print_diagnostics(session: &mut profiler::probes::session::Session) {
    let (messages, dropped) = session.diagnostics();
    for m in &messages {
        eprintln!("dmaprof: eBPF {m}");
    }
    if dropped > 0 {
        eprintln!("dmaprof: eBPF: {dropped} more messages dropped");
    }
}
