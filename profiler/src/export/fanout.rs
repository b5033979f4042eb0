//! Each call of a running workload, handed to whoever watches it: the
//! per-call CSV, the headless progress bar (indicatif) or the dashboard's
//! live state. The workload knows only the `Observer` trait.
use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::CallsCsv;
use crate::{
    live::state::LiveState,
    metrics,
    probes::session::Session,
    workload::{CallRecord, Observer, Pass, mode::Mode},
};

/// The dashboard's state, and the session whose block maps refresh it.
pub struct LiveFeed<'a> {
    pub state: Arc<Mutex<LiveState>>,
    pub block_source: Option<&'a Session>,
    last_block_read: Instant,
}

impl<'a> LiveFeed<'a> {
    pub fn new(state: Arc<Mutex<LiveState>>, block_source: Option<&'a Session>) -> Self {
        LiveFeed {
            state,
            block_source,
            last_block_read: Instant::now(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LiveState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record(&mut self, c: &CallRecord) {
        // Kernel maps are read a few times a second at most.
        if self.last_block_read.elapsed() > Duration::from_millis(250) {
            self.refresh_kernel();
        }
        self.lock().record(c);
    }

    /// Reads the block histograms and the lost-event counters into the
    /// dashboard's state, so a loss shows while the run goes.
    pub fn refresh_kernel(&mut self) {
        self.last_block_read = Instant::now();
        let Some(session) = self.block_source else {
            return;
        };
        let (block, lost) = (session.block().ok(), session.lost().ok());
        let probe_ns = session.probe_ns();
        let mut s = self.lock();
        if let Some(b) = block {
            s.block = Some(b);
        }
        if let Some(l) = lost {
            s.header.lost_events = l.total();
        }
        s.set_probe_cost(probe_ns);
    }
}

pub struct Fanout<'a> {
    pub csv: Option<&'a mut CallsCsv>,
    pub live: Option<LiveFeed<'a>>,
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
        if let Some(live) = &mut self.live {
            live.record(c);
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
