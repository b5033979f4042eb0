//! The live dashboard: state fed by the workload or the trace loop (bounded,
//! whatever the run length), the key handling, and the task that draws it
//! with the `dashboards` views.
pub mod keys;
pub mod state;
pub mod tui;

use std::sync::Mutex;

use dashboards::model::{Header, ProbeStatus};

use crate::workload::{Config, mode::Direction};

/// The header of a `dmaprof run` dashboard.
pub fn run_header(cfg: &Config, cache: &str, probes: &[ProbeStatus]) -> Header {
    Header {
        kernel: crate::kernel::release(),
        direction: cfg.direction.to_string(),
        file: match cfg.write_to.first() {
            Some((_, p)) => p.display().to_string(),
            None => cfg.file.display().to_string(),
        },
        cache: match cfg.direction {
            Direction::Write => "n/a".into(),
            Direction::Read => cache.into(),
        },
        buffers: cfg.buffers.to_string(),
        probes: probes.to_vec(),
        passes_planned: cfg.iterations * cfg.modes.len() as u32,
        ..Default::default()
    }
}

/// The run (or trace) is over: the clock stops and nothing runs any more.
pub fn mark_ended(state: &Mutex<state::LiveState>) {
    let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
    s.ended = Some(std::time::Instant::now());
    s.header.running = None;
}
