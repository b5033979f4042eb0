//! Where each call `dmaprof trace` sees goes: the dashboard's live state,
//! the per-call CSV, or a line on stdout. Counted into the trace summary.
use crate::{
    export::atomic::AtomicFile,
    live::state::LiveState,
    probes::{
        events::{TraceSummary, bytes, csv_row, decoded, kind, name, next_event},
        files::Mounts,
    },
};

/// Where each traced call goes: the dashboard, the CSV, or a line on stdout.
pub enum Sink {
    Live(std::sync::Arc<std::sync::Mutex<LiveState>>),
    Csv(AtomicFile),
    Lines(std::io::BufWriter<std::io::Stdout>),
}

/// The sink and what it decodes files with.
pub struct TraceOut {
    pub sink: Sink,
    pub mounts: Mounts,
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
        let mounts = &mut self.mounts;
        let mut left = DRAIN_LIMIT;
        let mut next = |ring: &mut aya::maps::RingBuf<aya::maps::MapData>| {
            left = left.checked_sub(1)?;
            next_event(ring)
        };
        match &mut self.sink {
            Sink::Live(state) => {
                // One lock per batch, not per event.
                let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
                let end_ns = start.elapsed().as_nanos() as u64;
                while let Some(t) = next(ring) {
                    let e = t.call;
                    summary.count(&e);
                    let kind = name(&e);
                    s.record_event(&kind, e.duration_ns, bytes(&e), end_ns);
                    if crate::probes::events::is_request(&e) {
                        let file = t.file.and_then(|f| mounts.view(&f));
                        s.record_request(&kind, decoded(&e, file.as_ref()).trim());
                    }
                    s.profile_call(e.tid, e.start_ns, e.start_ns + e.duration_ns, &kind);
                }
            }
            Sink::Csv(f) => {
                while let Some(t) = next(ring) {
                    let e = t.call;
                    summary.count(&e);
                    let file = t.file.and_then(|f| mounts.view(&f));
                    csv_row(f.writer(), &e, file.as_ref())?;
                }
            }
            Sink::Lines(out) => {
                while let Some(t) = next(ring) {
                    let e = t.call;
                    let file = t.file.and_then(|f| mounts.view(&f));
                    summary.count(&e);
                    writeln!(
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
                    )?;
                }
                out.flush()?;
            }
        }
        Ok(summary.events - before)
    }
}
