//! `dmaprof trace`: another process's dma-buf ioctls, exporter calls,
//! preads and block I/O, without driving a workload. The loop runs on the
//! agent's runtime and wakes for what happens: events ready in the ring, a
//! signal, the traced process exiting (its pidfd), the deadline, the
//! dashboard's block refresh.
use std::{
    collections::BTreeMap,
    os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use aya::maps::{MapData, RingBuf};
use tokio::{io::unix::AsyncFd, runtime::Runtime};

use crate::{
    cli::TraceArgs,
    exit::Exit,
    export::{
        atomic::{self, AtomicFile},
        fanout, flame, metrics_server,
        trace_sink::{DRAIN_LIMIT, Sink, TraceMetrics, TraceOut},
    },
    kernel::Privileges,
    live::{self, state::LiveState, tui},
    probes::{
        events::{self, TraceSummary},
        profile::Collector,
        report,
        session::{Families, Options, Session},
    },
    profile::{self, Profile},
    stop::Stop,
};

/// Events are taken in batches: after a wake-up the loop drains the ring
/// and waits this long before the next, since a wake-up per event costs
/// ~6 us of CPU; the 8 MiB ring holds >100 ms of events at 1M/s.
const BATCH: Duration = Duration::from_millis(10);

pub fn trace(rt: &Runtime, a: TraceArgs) -> Result<Exit, Exit> {
    // Signals first: the temporary CSV below is never left behind.
    let stop = Stop::on_signals(rt).map_err(|e| Exit::failed(format!("signals: {e}")))?;
    let target = Target::check(&a)?;
    let (csv, json) = open_outputs(&a)?;
    let (jsonl, intervals) = open_stream(&a)?;
    let endpoint = metrics_server::start(rt, &a.metrics).map_err(Exit::Input)?;
    Privileges::current()
        .require_tracing("trace")
        .map_err(Exit::Input)?;
    crate::workload::announce(format_args!("attach"));
    let mut session = Session::attach(&Options {
        filter_tgid: a.pid,
        force: a.attach,
        exporter_fn: None,
        families: Families::ALL,
        inflight_capacity: None,
        stats: !a.stats.no_probe_stats,
        profile_hz: a.profile.hz(),
    })
    .map_err(|e| Exit::input(format!("attaching probes: {e:#}")))?;
    let ring = session
        .take_events()
        .map_err(|e| Exit::failed(format!("reading events: {e:#}")))?;
    let profiling = start_profile(rt, &a, &mut session)?;
    report::print_attached(&session.attached, false);
    let stdout_is_stream = a.jsonl.as_deref().is_some_and(|p| p.as_os_str() == "-");
    let dashboard = if stdout_is_stream {
        None
    } else {
        start_dashboard(rt, &a, csv.is_some(), &session, &stop)
    };
    if let (Some((state, _)), Some(p)) = (&dashboard, &profiling) {
        p.show_live(state, a.pid);
    }
    let mut intervals = intervals;
    if let Some(iv) = &mut intervals {
        // Tables go to stdout unless the stream or the dashboard has it.
        iv.print = !stdout_is_stream && dashboard.is_none();
    }
    let mut out = TraceOut {
        sink: sink_for(csv, &dashboard, stdout_is_stream),
        mounts: crate::probes::files::Mounts::new(),
        jsonl,
        intervals,
        metrics: endpoint
            .as_ref()
            .map(|e| TraceMetrics::new(e.metrics.clone())),
    };
    eprintln!("dmaprof: tracing {} (Ctrl-C to stop)", target.label());
    let mut summary = TraceSummary {
        pid: a.pid,
        kept: profiling.as_ref().map(|_| Vec::new()),
        ..Default::default()
    };
    let watched = rt.block_on(watch(
        ring,
        &mut out,
        &mut summary,
        &session,
        &target,
        &stop,
        dashboard.as_ref().map(|d| &d.0),
    ));
    if let Some(e) = &endpoint {
        e.metrics.set_kernel(&session.sample());
    }
    summary.lost = session.lost_at_end().unwrap_or_default();
    summary.probes = session.attached.clone();
    summary.set_probe_costs(session.program_costs());
    if let Some((state, ui)) = dashboard {
        state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .header
            .lost_events = summary.lost.total();
        live::mark_ended(&state);
        if let Err(e) = ui.finish() {
            eprintln!("dmaprof: dashboard: {e}");
        }
    }
    if let Some(p) = profiling {
        summary.profile = p.finish(rt, &session, summary.kept.take().unwrap_or_default());
    }
    let block = session.block();
    report::print_diagnostics(&mut session);
    if let Some(why) = session.stats_unavailable() {
        eprintln!("dmaprof: {why}");
    }
    drop(session); // detach before writing results
    crate::workload::announce(format_args!("export"));
    // The closing tables go where they do not mix into a JSON stream.
    let report = |text: String| {
        if stdout_is_stream {
            eprint!("{text}");
        } else {
            print!("{text}");
        }
    };
    if let Ok(snap) = block {
        report(render_block_table(&snap));
    }
    let mut failed = write_results(watched, out.sink, &summary, json.as_deref());
    if let Some(costs) = &summary.probe_costs {
        report(report::render_costs(costs));
    }
    if let Some(p) = &summary.profile {
        report(profile::report::render(p));
        failed = failed.or(flame::write_dirs(
            a.profile.folded.as_deref(),
            a.profile.flamegraph.as_deref(),
            p,
        ));
    }
    eprintln!("dmaprof: {}", summary.line());
    eprintln!("dmaprof: {}", summary.lost.verdict());
    if let Some(e) = endpoint {
        e.finish(rt, &stop);
    }
    Ok(failed
        .map_or(Exit::Success, Exit::Failed)
        .or_lost(Some(&summary.lost), a.stats.strict))
}

/// `--profile`: the samples drained while the trace runs, and the traced
/// process's mappings taken now (it may be gone when the trace ends).
struct Profiling {
    hz: u64,
    collector: Collector,
    symbols: profile::symbols::Symbols,
}

fn start_profile(
    rt: &Runtime,
    a: &TraceArgs,
    session: &mut Session,
) -> Result<Option<Profiling>, Exit> {
    let Some(hz) = a.profile.hz() else {
        return Ok(None);
    };
    let collector = session
        .collect_profile(rt)
        .map_err(|e| Exit::failed(format!("--profile: {e:#}")))?;
    let mut symbols = profile::symbols::Symbols::new();
    if let Some(pid) = a.pid {
        symbols.snapshot(pid);
    }
    Ok(Some(Profiling {
        hz,
        collector,
        symbols,
    }))
}

impl Profiling {
    /// Under the dashboard: the traced process's samples (every process's
    /// with --all) go to its profile panel as they come.
    fn show_live(&self, state: &Arc<Mutex<LiveState>>, pid: Option<u32>) {
        live::show_profile(state, &self.collector, self.hz, move |s| {
            pid.is_none_or(|p| s.tgid == p)
        });
    }

    /// The profile, its samples put on the traced calls' time line.
    fn finish(
        mut self,
        rt: &Runtime,
        session: &Session,
        calls: Vec<profiler_common::call::CallEvent>,
    ) -> Option<Profile> {
        profile::finish(
            rt,
            self.hz,
            self.collector,
            session.profile_lost(),
            &profile::trace_timeline(&calls),
            &mut self.symbols,
        )
    }
}

/// Commits the CSV and writes the JSON summary; the first failure (the
/// sink's own first) is returned.
fn write_results(
    watched: std::io::Result<()>,
    sink: Sink,
    summary: &TraceSummary,
    json: Option<&std::path::Path>,
) -> Option<String> {
    let mut failed = watched.err().map(|e| format!("writing calls: {e}"));
    if let Sink::Csv(f) = sink {
        let dest = f.dest().display().to_string();
        if let Err(e) = f.commit() {
            failed.get_or_insert(format!("--csv {dest}: {e}"));
        }
    }
    if let Some(j) = json {
        let text = serde_json::to_string_pretty(summary).expect("summary serializes");
        if let Err(e) = atomic::write(j, text.as_bytes()) {
            failed.get_or_insert(format!("--json {}: {e}", j.display()));
        }
    }
    failed
}

/// What is traced and when the trace ends on its own.
struct Target {
    pid: Option<u32>,
    /// Readable once the traced process has exited.
    pidfd: Option<OwnedFd>,
    duration: Option<Duration>,
}

impl Target {
    fn check(a: &TraceArgs) -> Result<Target, Exit> {
        let duration = match a.duration {
            Some(d) if !(d.is_finite() && d > 0.0) => {
                return Err(Exit::input(
                    "--duration must be a positive number of seconds",
                ));
            }
            d => d.map(Duration::from_secs_f64),
        };
        let pidfd = a.pid.map(open_process).transpose()?;
        Ok(Target {
            pid: a.pid,
            pidfd,
            duration,
        })
    }

    fn label(&self) -> String {
        self.pid
            .map(|p| format!("pid {p}"))
            .unwrap_or_else(|| "every process".into())
    }
}

/// A pidfd of process `pid`, refusing a thread id (its calls are filtered by
/// process id, so tracing a thread id would silently see nothing).
fn open_process(pid: u32) -> Result<OwnedFd, Exit> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|_| Exit::input(format!("--pid {pid}: no such process")))?;
    let tgid = status
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse::<u32>().ok());
    if let Some(tgid) = tgid.filter(|t| *t != pid) {
        return Err(Exit::input(format!(
            "--pid {pid} is a thread of process {tgid}: give the process id (--pid {tgid})"
        )));
    }
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(Exit::input(format!(
            "--pid {pid}: {}",
            std::io::Error::last_os_error()
        )));
    }
    // SAFETY: a fresh fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// The per-call CSV (its header written) and the JSON path, checked before
/// any probe is attached.
fn open_outputs(a: &TraceArgs) -> Result<(Option<AtomicFile>, Option<std::path::PathBuf>), Exit> {
    if let Some(j) = &a.json {
        crate::export::check_writable("--json", j).map_err(Exit::Input)?;
    }
    for (flag, dir) in [
        ("--folded", &a.profile.folded),
        ("--flamegraph", &a.profile.flamegraph),
    ] {
        if let Some(d) = dir {
            crate::export::check_dir(flag, d).map_err(Exit::Input)?;
        }
    }
    let csv = a
        .csv
        .as_deref()
        .map(|p| {
            let mut f = AtomicFile::create(p)
                .map_err(|e| Exit::input(format!("--csv {}: {e}", p.display())))?;
            events::csv_header(f.writer())
                .map_err(|e| Exit::input(format!("--csv {}: {e}", p.display())))?;
            Ok::<_, Exit>(f)
        })
        .transpose()?;
    Ok((csv, a.json.clone()))
}

/// `--jsonl` (opened now: a bad path is refused before any probe is
/// attached) and `--interval`.
fn open_stream(
    a: &TraceArgs,
) -> Result<
    (
        Option<crate::export::stream::Jsonl>,
        Option<crate::export::stream::Intervals>,
    ),
    Exit,
> {
    let intervals = match a.interval {
        Some(s) if !(s.is_finite() && s > 0.0) => {
            return Err(Exit::input(
                "--interval must be a positive number of seconds",
            ));
        }
        s => s.map(crate::export::stream::Intervals::new),
    };
    let jsonl = a
        .jsonl
        .as_deref()
        .map(|p| {
            crate::export::stream::Jsonl::open(p)
                .map_err(|e| Exit::input(format!("--jsonl {}: {e}", p.display())))
        })
        .transpose()?;
    Ok((jsonl, intervals))
}

type Dashboard = (Arc<Mutex<LiveState>>, tui::Ui);

/// On a terminal (and without --csv): the dashboard, one row per kind of call.
fn start_dashboard(
    rt: &Runtime,
    a: &TraceArgs,
    has_csv: bool,
    session: &Session,
    stop: &Stop,
) -> Option<Dashboard> {
    if a.headless || has_csv || !super::run::on_terminal() {
        return None;
    }
    let header = dashboards::model::Header {
        kernel: crate::kernel::release(),
        direction: "trace".into(),
        file: a
            .pid
            .map(|p| format!("pid {p}"))
            .unwrap_or_else(|| "every process".into()),
        cache: "-".into(),
        probes: report::status(&session.attached),
        running: Some("tracing".into()),
        ..Default::default()
    };
    let mut state = LiveState::new(header, &[]);
    state.tgid = a.pid.unwrap_or(0);
    let state = Arc::new(Mutex::new(state));
    let ui = tui::start(rt, state.clone(), stop.clone(), 10.0).ok()?;
    Some((state, ui))
}

fn sink_for(csv: Option<AtomicFile>, dashboard: &Option<Dashboard>, quiet: bool) -> Sink {
    match (csv, dashboard) {
        (Some(f), _) => Sink::Csv(f),
        (None, Some((state, _))) => Sink::Live(state.clone()),
        (None, None) if quiet => Sink::Quiet,
        (None, None) => {
            println!(
                "{:>12} {:>8} {:>8} {:<9} {:>12} {:>12} {:>10} {:>6}",
                "t_ms", "pid", "tid", "kind", "cmd/fd", "bytes", "dur_us", "ret"
            );
            Sink::Lines(std::io::BufWriter::new(std::io::stdout()))
        }
    }
}

/// Drains the ring until the trace ends; a sink that cannot be written (a
/// full disk, a closed pipe) ends it early with the error.
async fn watch(
    ring: RingBuf<MapData>,
    sink: &mut TraceOut,
    summary: &mut TraceSummary,
    session: &Session,
    target: &Target,
    stop: &Stop,
    live: Option<&Arc<Mutex<LiveState>>>,
) -> std::io::Result<()> {
    let live = live.map(|s| fanout::LiveFeed::new(s.clone()));
    let start = Instant::now();
    let cpu0 = events::own_cpu_s();
    // SAFETY: the ring owns its map fd and keeps it open until the AsyncFd
    // is dropped; the pidfd is borrowed from `target`, which outlives it.
    let mut ring = unsafe { AsyncFd::register(ring) }.map_err(std::io::Error::from)?;
    let exited = match &target.pidfd {
        Some(fd) => Some(unsafe { AsyncFd::register(fd.as_fd()) }.map_err(std::io::Error::from)?),
        None => None,
    };
    let deadline = tokio::time::sleep(target.duration.unwrap_or(Duration::MAX / 4));
    tokio::pin!(deadline);
    let mut block_tick = tokio::time::interval(fanout::KernelPoll::PERIOD);
    let period = sink.intervals.as_ref().map(|iv| iv.period());
    let every = period.unwrap_or(Duration::MAX / 4);
    let mut interval_tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    let result = loop {
        tokio::select! {
            _ = stop.wait() => break Ok(()),
            _ = &mut deadline, if target.duration.is_some() => break Ok(()),
            _ = readable(exited.as_ref()), if exited.is_some() => break Ok(()),
            ready = ring.readable_mut() => {
                let mut guard = ready?;
                match sink.drain(guard.get_inner_mut(), summary, start) {
                    Err(e) => break Err(e),
                    // More waiting: back to the select (a stop wins half
                    // the time), no pause.
                    Ok(n) if n >= DRAIN_LIMIT => {}
                    Ok(_) => {
                        guard.clear_ready();
                        tokio::time::sleep(BATCH).await;
                    }
                }
            }
            _ = interval_tick.tick(), if period.is_some() => {
                // The calls up to now belong to the interval that ends.
                let drained = sink.drain(ring.get_mut(), summary, start);
                let closed = drained.and_then(|_| {
                    sink.close_interval(start.elapsed().as_secs_f64())
                });
                if let Err(e) = closed {
                    break Err(e);
                }
            }
            _ = block_tick.tick(), if live.is_some() || sink.metrics.is_some() => {
                fanout::show_kernel(
                    &session.sample(),
                    live.as_ref(),
                    sink.metrics.as_ref().map(|m| &*m.metrics),
                );
            }
        }
    };
    // Whatever was emitted up to the end is taken, and ends the last
    // (partial) interval.
    let mut last = sink.drain(ring.get_mut(), summary, start);
    if period.is_some() && last.is_ok() {
        last = sink
            .close_interval(start.elapsed().as_secs_f64())
            .map(|()| 0);
    }
    summary.finish(start.elapsed().as_secs_f64(), cpu0);
    result.and(last.map(drop))
}

async fn readable(fd: Option<&AsyncFd<BorrowedFd<'_>>>) {
    if let Some(fd) = fd {
        let _ = fd.readable().await;
    }
}

/// Block totals per process, at the end of the trace.
fn render_block_table(snap: &crate::probes::block::BlockSnapshot) -> String {
    use std::fmt::Write as _;
    let mut per_pid: BTreeMap<u32, profiler_common::block::BlockTotals> = BTreeMap::new();
    for (k, t) in &snap.per_thread {
        per_pid.entry(k.tgid).or_default().add(t);
    }
    let mut out =
        "\nblock I/O (counted at completion, attributed to the submitting process)\n".to_string();
    let _ = writeln!(
        out,
        "{:>8} {:>10} {:>14} {:>14} {:>12}",
        "pid", "requests", "read bytes", "write bytes", "dev us/req"
    );
    for (p, t) in per_pid {
        let _ = writeln!(
            out,
            "{:>8} {:>10} {:>14} {:>14} {:>12.1}",
            p,
            t.completions,
            t.read_bytes,
            t.write_bytes,
            crate::metrics::per(t.device_ns, t.completions) / 1e3
        );
    }
    out
}
