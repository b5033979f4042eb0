//! Each call of a running workload, handed to whoever watches it: the
//! per-call CSV, the headless progress bar (indicatif), the dashboard's
//! live state and the metrics endpoint. The workload knows only the `Observer` trait.
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{
    CallsCsv,
    openmetrics::{CallHandles, CallLabels, Metrics},
};
use crate::{
    live::state::LiveState,
    metrics,
    probes::session::{KernelSample, Session},
    workload::{
        CallRecord, Observer, Pass,
        mode::{BufferKind, Direction, Mode},
    },
};

/// The dashboard's state.
pub struct LiveFeed {
    pub state: Arc<Mutex<LiveState>>,
}

impl LiveFeed {
    pub fn new(state: Arc<Mutex<LiveState>>) -> Self {
        LiveFeed { state }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LiveState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The kernel maps, read a few times a second at most, for the dashboard
/// (so a loss shows while the run goes) and the metrics endpoint.
pub struct KernelPoll<'a> {
    session: &'a Session,
    last: Option<Instant>,
}

impl<'a> KernelPoll<'a> {
    pub const PERIOD: Duration = Duration::from_millis(250);

    pub fn new(session: &'a Session) -> Self {
        KernelPoll {
            session,
            last: None,
        }
    }

    /// A sample when the last is older than PERIOD.
    pub fn due(&mut self) -> Option<KernelSample> {
        if self.last.is_some_and(|t| t.elapsed() < Self::PERIOD) {
            return None;
        }
        self.last = Some(Instant::now());
        Some(self.session.sample())
    }
}

/// The metrics endpoint's figures, and each mode's labels made once.
pub struct MetricsFeed {
    pub metrics: Arc<Metrics>,
    pub heap: String,
    handles: HashMap<(Mode, Direction), CallHandles>,
}

impl MetricsFeed {
    pub fn new(metrics: Arc<Metrics>, heap: &str) -> Self {
        MetricsFeed {
            metrics,
            heap: heap.into(),
            handles: HashMap::new(),
        }
    }

    fn record(&mut self, c: &CallRecord) {
        let (heap, metrics) = (&self.heap, &self.metrics);
        self.handles
            .entry((c.mode, c.direction))
            .or_insert_with(|| {
                metrics.handles(CallLabels {
                    mode: c.mode.name().into(),
                    mechanism: c.mode.mechanism().name().into(),
                    direction: c.direction.to_string(),
                    exporter: match c.mode.buffer() {
                        BufferKind::Anon => "none".into(),
                        BufferKind::Heap => heap.clone(),
                        BufferKind::Udmabuf => "udmabuf".into(),
                    },
                    process: "dmaprof".into(),
                })
            })
            .record(c.wall_ns, c.bytes);
    }
}

/// Hands a kernel sample to whoever shows it.
pub fn show_kernel(s: &KernelSample, live: Option<&LiveFeed>, metrics: Option<&Metrics>) {
    if let Some(live) = live {
        live.lock().apply_kernel(s);
    }
    if let Some(m) = metrics {
        m.set_kernel(s);
    }
}

pub struct Fanout<'a> {
    pub csv: Option<&'a mut CallsCsv>,
    pub live: Option<LiveFeed>,
    pub metrics: Option<MetricsFeed>,
    pub kernel: Option<KernelPoll<'a>>,
    /// Headless: a bar of calls done / planned on stderr (hidden when
    /// stderr is not a terminal) and one line per pass.
    pub progress: Option<ProgressBar>,
}

/// The headless progress bar for `calls` calls.
pub fn progress_bar(calls: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(calls), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("  [{bar:30}] {percent:>3}%  {msg}")
            .expect("valid template")
            .progress_chars("## "),
    );
    bar
}

impl Observer for Fanout<'_> {
    fn on_run_start(&mut self, epoch_mono_ns: u64) {
        if let Some(live) = &self.live {
            live.lock().epoch_mono_ns = Some(epoch_mono_ns);
        }
    }

    fn on_pass_start(&mut self, mode: Mode, _iteration: u32) {
        if let Some(live) = &self.live {
            live.lock().header.running = Some(mode.name().into());
        }
    }

    fn on_call(&mut self, c: &CallRecord) {
        if let Some(csv) = self.csv.as_deref_mut() {
            csv.row(c);
        }
        if let Some(bar) = &self.progress {
            bar.set_message(format!("{} call {}", c.mode.name(), c.index));
            bar.inc(1);
        }
        if let Some(live) = &self.live {
            live.lock().record(c);
        }
        if let Some(m) = &mut self.metrics {
            m.record(c);
        }
        if (self.live.is_some() || self.metrics.is_some())
            && let Some(sample) = self.kernel.as_mut().and_then(|k| k.due())
        {
            show_kernel(
                &sample,
                self.live.as_ref(),
                self.metrics.as_ref().map(|m| &*m.metrics),
            );
        }
    }

    fn on_pass(&mut self, p: &Pass) {
        if let Some(live) = &self.live {
            live.lock().header.passes_done += 1;
            return; // the dashboard shows progress; stderr would garble it
        }
        let line = format!(
            "  {:<24} iteration {}: {} in {:.1} ms ({:.0} MiB/s)",
            p.mode.name(),
            p.iteration,
            p.bytes,
            p.transfer_ns as f64 / 1e6,
            metrics::mib_per_s(p.bytes, p.transfer_ns)
        );
        match &self.progress {
            Some(bar) => bar.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }
}
