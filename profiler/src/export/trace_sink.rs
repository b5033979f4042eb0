//! Where each call `dmaprof trace` sees goes: the dashboard's live state,
//! the per-call CSV, or a line on stdout; and beside it the JSON stream,
//! the interval summaries and the metrics endpoint. Counted into the trace
//! summary.
use profiler_common::call::{CallEvent, EVENT_PREAD};

use crate::{
    export::atomic::AtomicFile,
    export::openmetrics::{CallHandles, CallLabels, Metrics},
    export::stream::{Intervals, Jsonl, render_interval},
    live::state::LiveState,
    probes::{
        events::{
            TraceSummary, bytes, csv_row, decoded, direction, dma_buf, has_dma_buf, is_request,
            kind, mechanism, name, next_event,
        },
        files::Mounts,
    },
};

/// Where each traced call goes: the dashboard, the CSV, a line on stdout,
/// or nowhere but the stream and the counts (`--jsonl -` owns stdout).
pub enum Sink {
    Live(std::sync::Arc<std::sync::Mutex<LiveState>>),
    Csv(AtomicFile),
    Lines(std::io::BufWriter<std::io::Stdout>),
    Quiet,
}

/// The sink, the streams beside it, and what it decodes files with.
pub struct TraceOut {
    pub sink: Sink,
    pub mounts: Mounts,
    /// `--jsonl`: every call as a JSON line.
    pub jsonl: Option<Jsonl>,
    /// `--interval`: the calls of the current interval.
    pub intervals: Option<Intervals>,
    /// `--metrics-addr`: every call into the endpoint's histograms.
    pub metrics: Option<TraceMetrics>,
}

/// The endpoint's metrics, and each kind of call's handles, found by a key
/// made without allocating (the labels are made once per key).
pub struct TraceMetrics {
    pub metrics: std::sync::Arc<Metrics>,
    handles: std::collections::HashMap<CallKey, CallHandles>,
}

/// What a call's labels are made of: process, kind (and the ioctl command,
/// io_uring opcode or request flags that name it), exporter.
#[derive(Hash, PartialEq, Eq)]
struct CallKey {
    tgid: u32,
    kind: u32,
    what: u32,
    direction: &'static str,
    exporter: [u8; 16],
}

impl TraceMetrics {
    pub fn new(metrics: std::sync::Arc<Metrics>) -> Self {
        TraceMetrics {
            metrics,
            handles: Default::default(),
        }
    }

    fn record(&mut self, e: &CallEvent) {
        let key = CallKey {
            tgid: e.tgid,
            kind: e.kind,
            // A pread's `what` is its fd: not part of its name.
            what: if e.kind == EVENT_PREAD { 0 } else { e.what },
            direction: direction(e),
            exporter: if has_dma_buf(e) {
                e.buf.exporter
            } else {
                [0; 16]
            },
        };
        let (metrics, key_direction) = (&self.metrics, key.direction);
        self.handles
            .entry(key)
            .or_insert_with(|| {
                let process = std::fs::read_to_string(format!("/proc/{}/comm", e.tgid))
                    .map(|c| c.trim_end().to_string())
                    .unwrap_or_else(|_| "unknown".into());
                metrics.handles(CallLabels {
                    mode: name(e).into_owned(),
                    mechanism: mechanism(e).name().into(),
                    direction: key_direction.into(),
                    exporter: dma_buf(e).map_or_else(|| "none".into(), |b| b.exporter),
                    process,
                })
            })
            .record(e.duration_ns, bytes(e));
    }
}

/// The most events one `drain` takes: about what the 8 MiB ring holds, so
/// a traced process producing as fast as the sink writes cannot keep the
/// trace from seeing Ctrl-C or its deadline.
pub const DRAIN_LIMIT: u64 = (8 << 20) / size_of::<profiler_common::call::CallEvent>() as u64;

impl TraceOut {
    /// Takes the events waiting in the ring, at most DRAIN_LIMIT; returns
    /// how many.
    pub fn drain(
        &mut self,
        ring: &mut aya::maps::RingBuf<aya::maps::MapData>,
        summary: &mut TraceSummary,
        start: std::time::Instant,
    ) -> std::io::Result<u64> {
        use std::io::Write;
        let before = summary.events;
        // One lock of the dashboard's state per batch, not per event.
        let live = match &self.sink {
            Sink::Live(state) => Some(state.clone()),
            _ => None,
        };
        let mut live = live
            .as_ref()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()));
        let end_ns = start.elapsed().as_nanos() as u64;
        let mut left = DRAIN_LIMIT;
        while left > 0
            && let Some(t) = next_event(ring)
        {
            left -= 1;
            let e = t.call;
            summary.count(&e);
            let file = t.file.and_then(|f| self.mounts.view(&f));
            match (&mut self.sink, live.as_mut()) {
                (Sink::Live(_), Some(s)) => {
                    let kind = name(&e);
                    s.record_event(&kind, e.duration_ns, bytes(&e), end_ns);
                    if is_request(&e) {
                        s.record_request(&kind, decoded(&e, file.as_ref()).trim());
                    }
                    s.profile_call(e.tid, e.start_ns, e.start_ns + e.duration_ns, &kind);
                }
                (Sink::Csv(f), _) => csv_row(f.writer(), &e, file.as_ref())?,
                (Sink::Lines(out), _) => writeln!(
                    out,
                    "{:>12.3} {:>8} {:>8} {:<9} {:>#12x} {:>12} {:>10.1} {:>6}{}",
                    start.elapsed().as_secs_f64() * 1e3,
                    e.tgid,
                    e.tid,
                    kind(&e),
                    e.what,
                    e.len,
                    e.duration_ns as f64 / 1e3,
                    e.ret,
                    decoded(&e, file.as_ref())
                )?,
                _ => {}
            }
            if let Some(j) = &mut self.jsonl {
                j.call(&e, file.as_ref())?;
            }
            if let Some(iv) = &mut self.intervals {
                iv.record(&e);
            }
            if let Some(m) = &mut self.metrics {
                m.record(&e);
            }
        }
        if let Sink::Lines(out) = &mut self.sink {
            out.flush()?;
        }
        if let Some(j) = &mut self.jsonl {
            j.flush()?;
        }
        Ok(summary.events - before)
    }

    /// `--interval`: the interval that just ended, printed (unless stdout
    /// is the JSON stream's or the dashboard's) and streamed.
    pub fn close_interval(&mut self, end_s: f64) -> std::io::Result<()> {
        let Some(iv) = &mut self.intervals else {
            return Ok(());
        };
        let s = iv.close(end_s);
        if iv.print {
            print!("{}", render_interval(&s));
        }
        if let Some(j) = &mut self.jsonl {
            j.interval(&s)?;
        }
        Ok(())
    }
}
