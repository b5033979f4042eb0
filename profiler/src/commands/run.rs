//! `dmaprof run` and `dmaprof bench`: plan, open the outputs (before any
//! file is made), attach the probes, drive the workload on this thread while
//! the dashboard or the progress bar watches, summarise once, write, print.
use std::{
    io::IsTerminal,
    sync::{Arc, Mutex},
};

use indicatif::ProgressBar;
use tokio::runtime::Runtime;

use super::probes::{self, RunProbes};
use crate::{
    cli::{BenchArgs, BenchTable, MetricsArgs, OutputArgs, ProbeArgs, RunArgs, ViewArgs},
    exit::Exit,
    export::{
        CallsCsv, Outputs, RunReport,
        fanout::{self, Fanout, KernelPoll, LiveFeed, MetricsFeed},
        metrics_server,
        openmetrics::Metrics,
    },
    live::{self, state::LiveState, tui},
    probes::{report, session::ProbeReport},
    stop::Stop,
    workload::{
        self, BufferUse, CacheMode, KernelCounters, Outcome, RunError,
        mode::{Direction, Mode},
        plan::{self, Plan},
        summary::{self, ModeSummary},
    },
};

#[derive(Clone, Copy, PartialEq)]
enum Table {
    /// dmaprof's own columns.
    Run,
    /// The seed's rows and columns, with the ratio to pread-direct and the
    /// share of the device's limit.
    Seed,
    /// v4's cover letter: create / close / I/O per path, either direction.
    V4,
    /// Every mode side by side, with the share of the device's limit.
    All,
}

pub fn run(rt: &Runtime, a: RunArgs) -> Result<Exit, Exit> {
    workload(
        rt,
        &a.plan,
        &a.outputs,
        &a.probes,
        Some(&a.view),
        &a.metrics,
        Table::Run,
    )
}

pub fn bench(rt: &Runtime, a: BenchArgs) -> Result<Exit, Exit> {
    let table = match a.table {
        BenchTable::V2 if a.direction == Direction::Write => {
            return Err(Exit::input(
                "--table v2 is the seed's read table: use --table v4 or all for writes",
            ));
        }
        _ if a.direction == Direction::Write && a.file.is_some() => {
            return Err(Exit::input(
                "bench --direction write makes a new file per mode in --dir: --file names a file to read",
            ));
        }
        BenchTable::V2 => Table::Seed,
        BenchTable::V4 => Table::V4,
        BenchTable::All => Table::All,
    };
    workload(
        rt,
        &a.plan_args(),
        &a.outputs,
        &a.probes,
        None,
        &MetricsArgs::default(),
        table,
    )
}

fn workload(
    rt: &Runtime,
    plan_args: &plan::Args,
    output_args: &OutputArgs,
    probe_args: &ProbeArgs,
    view_args: Option<&ViewArgs>,
    metrics_args: &MetricsArgs,
    table: Table,
) -> Result<Exit, Exit> {
    // Signals first: from here on no signal leaves a temporary file behind.
    let stop = Stop::on_signals(rt).map_err(|e| Exit::failed(format!("signals: {e}")))?;
    let mut outputs = Outputs::open(output_args, &probe_args.profile).map_err(Exit::Input)?;
    let endpoint = metrics_server::start(rt, metrics_args).map_err(Exit::Input)?;
    let plan = make_plan(plan_args, &stop)?;
    announce(&plan);
    let mut probes = probes::start(rt, probe_args)?;
    let view = View::start(rt, view_args, &plan.config, probes.as_ref(), &stop);
    let started_unix_s = unix_now();
    let metrics = endpoint.as_ref().map(|e| e.metrics.clone());
    let outcome = drive(
        &plan,
        &stop,
        &view,
        outputs.calls.as_mut(),
        probes.as_ref(),
        metrics.as_ref(),
    );
    let profile = probes.as_mut().and_then(|p| p.profile(rt, &outcome));
    let probe_report = finish_probes(probes, &view, metrics.as_ref());
    let summary = summary::summarize(&outcome.passes);
    let limit = device_limit(&plan, &outcome, &stop, table);
    workload::announce(format_args!("export"));
    let export_error = outputs.write(&RunReport {
        config: &plan.config,
        skipped: &plan.skipped,
        outcome: &outcome,
        summary: &summary,
        started_unix_s,
        probes: probe_report.clone(),
        profile: profile.as_ref(),
        device_limit: limit.as_ref().and_then(|l| l.as_ref().ok()),
    });
    view.finish();
    print_tables(
        &plan,
        &outcome,
        &summary,
        table,
        probe_report.as_ref(),
        limit.as_ref(),
    );
    if let Some(p) = &profile {
        print!("{}", crate::profile::report::render(p));
    }
    if let Some(e) = endpoint {
        e.finish(rt, &stop);
    }
    let lost = probe_report.as_ref().map(|p| &p.lost);
    Ok(exit_for(&outcome, export_error).or_lost(lost, probe_args.stats.strict))
}

/// The bench tables' device limit, measured once the paths have run (not
/// after an interrupted or failed run).
fn device_limit(
    plan: &Plan,
    outcome: &Outcome,
    stop: &Stop,
    table: Table,
) -> Option<Result<workload::limit::DeviceLimit, String>> {
    if table == Table::Run || outcome.interrupted || outcome.error.is_some() {
        return None;
    }
    workload::announce(format_args!("limit"));
    let why_not = plan
        .skipped
        .iter()
        .find(|(m, _)| *m == Mode::UringDirect)
        .map(|(_, why)| why.as_str());
    // --table all shows queue depth's part too: uring-direct at 8 beside 1 and 32.
    let shallower: &[u32] = if table == Table::All { &[8] } else { &[] };
    Some(workload::limit::measure(
        &plan.config,
        why_not,
        stop.flag(),
        shallower,
    ))
}

fn make_plan(args: &plan::Args, stop: &Stop) -> Result<Plan, Exit> {
    plan::plan(args, stop.flag()).map_err(|e| {
        if stop.requested() {
            Exit::Interrupted("interrupted before the run started".into())
        } else {
            Exit::input(e)
        }
    })
}

/// What will run, on stderr (stdout is for the tables).
fn announce(plan: &Plan) {
    let cfg = &plan.config;
    for note in &plan.notes {
        eprintln!("dmaprof: {note}");
    }
    let target = cfg.write_to.first().map_or(&cfg.file, |(_, d)| d).display();
    let preposition = match cfg.direction {
        Direction::Read => "of",
        Direction::Write => "to",
    };
    eprintln!(
        "dmaprof: {} {} bytes {preposition} {target} in {}-byte calls, {} iteration(s), cache {}, buffers {}, modes: {}",
        cfg.direction,
        cfg.size,
        cfg.chunk,
        cfg.iterations,
        cache_label(cfg),
        cfg.buffers,
        cfg.modes
            .iter()
            .map(|m| m.name())
            .collect::<Vec<_>>()
            .join(", ")
    );
    for (mode, why) in &plan.skipped {
        eprintln!("dmaprof: skipping {mode}: {why}");
    }
}

fn cache_label(cfg: &workload::Config) -> &'static str {
    match (cfg.direction, cfg.cache) {
        (Direction::Write, _) => "n/a",
        (_, CacheMode::Cold) => "cold",
        (_, CacheMode::Warm) => "warm",
    }
}

/// Runs every pass on this thread (the one the probes count).
fn drive(
    plan: &Plan,
    stop: &Stop,
    view: &View,
    csv: Option<&mut CallsCsv>,
    probes: Option<&RunProbes>,
    metrics: Option<&Arc<Metrics>>,
) -> Outcome {
    let mut fanout = Fanout {
        csv,
        live: None,
        metrics: metrics.map(|m| MetricsFeed::new(m.clone(), &plan.config.heap)),
        kernel: probes.map(|p| KernelPoll::new(&p.session)),
        progress: None,
    };
    match view {
        View::Dashboard { state, .. } => fanout.live = Some(LiveFeed::new(state.clone())),
        View::Headless(bar) => fanout.progress = Some(bar.clone()),
    }
    let counters = probes.map(|p| p as &dyn KernelCounters);
    let outcome = workload::run(&plan.config, stop.flag(), &mut fanout, counters);
    if let View::Dashboard { state, .. } = view {
        live::mark_ended(state);
    }
    outcome
}

/// The last block, loss and cost figures go to the dashboard and the
/// metrics, the eBPF side's messages to stderr; then every program and
/// link is detached.
fn finish_probes(
    probes: Option<RunProbes>,
    view: &View,
    metrics: Option<&Arc<Metrics>>,
) -> Option<ProbeReport> {
    let mut p = probes?;
    let live = match view {
        View::Dashboard { state, .. } => Some(LiveFeed::new(state.clone())),
        View::Headless(_) => None,
    };
    fanout::show_kernel(&p.session.sample(), live.as_ref(), metrics.map(|m| &**m));
    report::print_diagnostics(&mut p.session);
    if let Some(why) = p.session.stats_unavailable() {
        eprintln!("dmaprof: {why}");
    }
    Some(p.session.report())
}

fn print_tables(
    plan: &Plan,
    outcome: &Outcome,
    rows: &[ModeSummary],
    table: Table,
    probes: Option<&ProbeReport>,
    limit: Option<&Result<workload::limit::DeviceLimit, String>>,
) {
    if !rows.is_empty() {
        if let Some(p) = outcome.passes.first()
            && plan.config.direction == Direction::Read
        {
            println!("cache: {}", p.cache);
        }
        println!("buffers: {}", buffers_label(plan.config.buffers));
        if plan.config.modes.iter().any(|m| m.uring()) {
            println!(
                "queue depth: {} (io_uring modes: I/Os in flight; per-call times are each I/O's submission to completion)",
                plan.config.queue_depth
            );
        }
        match table {
            Table::Seed => print!(
                "{}",
                summary::render_seed_table(rows, limit.and_then(|l| l.as_ref().ok()))
            ),
            Table::V4 => print!(
                "{}",
                summary::render_v4_table(
                    rows,
                    plan.config.direction,
                    limit.and_then(|l| l.as_ref().ok())
                )
            ),
            Table::All => print!(
                "{}",
                summary::render_all_table(rows, limit.and_then(|l| l.as_ref().ok()))
            ),
            Table::Run => print!("{}", summary::render_table(rows)),
        }
        if let Some(l) = limit {
            print!("{}", summary::render_limit(l, plan.config.direction));
        }
        if probes.is_some() {
            print!("{}", summary::render_kernel_table(rows));
        }
    }
    if let Some(costs) = probes.and_then(|p| p.costs.as_deref()) {
        print!("{}", report::render_costs(costs));
    }
    if let Some(p) = probes {
        eprintln!("dmaprof: {}", p.lost.verdict());
    }
}

fn buffers_label(b: BufferUse) -> &'static str {
    match b {
        BufferUse::Distinct => "distinct (a fresh buffer per call, a pass's allocated up front)",
        BufferUse::Reuse => "reuse (one warm buffer per mode for every call, as fio does)",
    }
}

fn exit_for(outcome: &Outcome, export_error: Option<String>) -> Exit {
    if let Some(e) = export_error {
        return Exit::Failed(e);
    }
    match &outcome.error {
        Some(RunError::Input(e)) => Exit::input(e),
        Some(RunError::Failed(e)) => Exit::failed(e),
        None if outcome.interrupted => Exit::Interrupted(format!(
            "interrupted; {} pass(es) completed",
            outcome.passes.len()
        )),
        None => Exit::Success,
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Who watches the run: the dashboard on a terminal, else a progress bar
/// and a line per pass on stderr.
enum View {
    Dashboard {
        state: Arc<Mutex<LiveState>>,
        ui: tui::Ui,
    },
    Headless(ProgressBar),
}

impl View {
    fn start(
        rt: &Runtime,
        args: Option<&ViewArgs>,
        cfg: &workload::Config,
        probes: Option<&RunProbes>,
        stop: &Stop,
    ) -> View {
        let calls = cfg.size.div_ceil(cfg.chunk) * cfg.modes.len() as u64 * cfg.iterations as u64;
        let headless = View::Headless(fanout::progress_bar(calls));
        let Some(args) = args.filter(|a| !a.headless && on_terminal()) else {
            return headless;
        };
        let attached = probes.map(|p| p.session.attached.as_slice()).unwrap_or(&[]);
        let header = live::run_header(cfg, cache_label(cfg), &report::status(attached));
        let modes: Vec<String> = cfg.modes.iter().map(|m| m.name().to_string()).collect();
        let state = Arc::new(Mutex::new(LiveState::new(header, &modes)));
        if let Some(p) = probes {
            p.show_profile(&state);
        }
        match tui::start(rt, state.clone(), stop.clone(), args.fps) {
            Ok(ui) => View::Dashboard { state, ui },
            Err(e) => {
                eprintln!("dmaprof: no dashboard ({e}); running headless");
                headless
            }
        }
    }

    /// The dashboard shows the run as finished and waits for `q`.
    fn finish(self) {
        match self {
            View::Dashboard { ui, .. } => {
                if let Err(e) = ui.finish() {
                    eprintln!("dmaprof: dashboard: {e}");
                }
            }
            View::Headless(bar) => bar.finish_and_clear(),
        }
    }
}

pub fn on_terminal() -> bool {
    std::io::stdout().is_terminal() && std::io::stdin().is_terminal()
}
