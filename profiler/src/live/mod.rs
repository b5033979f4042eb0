//! The live dashboard: state fed by the workload or the trace loop (bounded,
//! whatever the run length), the key handling, and the task that draws it
//! with the `dashboards` views.
pub mod keys;
pub mod state;
pub mod tui;

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
};

use dashboards::model::{Header, ProbeStatus};
use profiler_common::profile::{SAMPLE_ON_CPU, StackSample};

use crate::{
    probes::profile::{Collector, Tap},
    profile::{live::LiveSample, symbols::Symbols},
    workload::{Config, mode::Direction},
};

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

/// `--profile` under the dashboard: the samples `keep` accepts go to the
/// profile panel as they come.
pub fn show_profile(
    state: &Arc<Mutex<state::LiveState>>,
    collector: &Collector,
    hz: u64,
    keep: impl Fn(&StackSample) -> bool + Send + 'static,
) {
    match profile_tap(state.clone(), keep) {
        Ok(tap) => {
            state
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .enable_profile(hz);
            collector.tap(tap);
        }
        Err(e) => eprintln!("dmaprof: no live profile: {e}"),
    }
}

/// The collector's tap feeding the dashboard's live profile: the on-CPU
/// samples `keep` accepts go to a thread of their own (blazesym's
/// symbolizer stays on one thread), which names their kernel frames
/// (kallsyms, each address once) and hands them to the state to place on
/// the calls. The thread ends when the collector drops the tap.
fn profile_tap(
    state: Arc<Mutex<state::LiveState>>,
    keep: impl Fn(&StackSample) -> bool + Send + 'static,
) -> std::io::Result<Tap> {
    let (tx, rx) = std::sync::mpsc::channel::<TapBatch>();
    std::thread::Builder::new()
        .name("dmaprof-symbols".into())
        .spawn(move || name_frames(&state, &rx))?;
    let mut sent: HashSet<u32> = HashSet::new();
    Ok(Box::new(move |batch, frames| {
        let mut out = TapBatch::default();
        for s in batch.iter().filter(|s| s.kind == SAMPLE_ON_CPU && keep(s)) {
            let key = u32::try_from(s.kernel_stack)
                .ok()
                .filter(|k| frames.contains_key(k));
            if let Some(k) = key
                && sent.insert(k)
            {
                out.stacks.push((k, frames[&k].clone()));
            }
            out.samples.push((s.tid, s.time_ns, key));
        }
        if !out.samples.is_empty() {
            let _ = tx.send(out);
        }
    }))
}

/// Samples as (tid, time, kernel stack key), and the stacks first seen.
#[derive(Default)]
struct TapBatch {
    samples: Vec<(u32, u64, Option<u32>)>,
    stacks: Vec<(u32, Vec<u64>)>,
}

fn name_frames(state: &Mutex<state::LiveState>, rx: &std::sync::mpsc::Receiver<TapBatch>) {
    let mut symbols = Symbols::new();
    // Per stack key, its frames named, outermost first; each name once.
    let mut named: HashMap<u32, Arc<[Arc<str>]>> = HashMap::new();
    let mut names: HashMap<String, Arc<str>> = HashMap::new();
    let mut unknown = 0;
    while let Ok(batch) = rx.recv() {
        let addrs: Vec<u64> = batch
            .stacks
            .iter()
            .flat_map(|(_, ips)| ips)
            .copied()
            .collect();
        symbols.learn_kernel(&addrs);
        for (k, ips) in batch.stacks {
            let frames = ips
                .iter()
                .rev()
                .map(|ip| {
                    let n = symbols.kernel(*ip, &mut unknown);
                    names
                        .entry(n.clone())
                        .or_insert_with(|| Arc::from(n))
                        .clone()
                })
                .collect();
            named.insert(k, frames);
        }
        let samples = batch
            .samples
            .into_iter()
            .map(|(tid, time_ns, key)| LiveSample {
                tid,
                time_ns,
                kernel: key
                    .and_then(|k| named.get(&k).cloned())
                    .unwrap_or_else(|| Arc::from([])),
            });
        state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .profile_samples(samples);
    }
}
