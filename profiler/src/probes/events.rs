//! The ring buffer's per-call events as `dmaprof trace` reports them: a name
//! per kind of call, counts per kind, and the agent's own cost.
use std::{borrow::Cow, collections::BTreeMap};

use profiler_common::call::{CallEvent, EVENT_EXPORTER, EVENT_IOCTL, EVENT_PREAD};
use serde::Serialize;

use crate::mechanism::Mechanism;

use profiler_common::uapi::{DMA_BUF_IOCTL_RW_FILE, DMA_BUF_IOCTL_SYNC};

/// The short kind column of the CSV.
pub fn kind(e: &CallEvent) -> &'static str {
    match e.kind {
        EVENT_IOCTL => "ioctl",
        EVENT_EXPORTER => "rw_file",
        EVENT_PREAD => "pread",
        _ => "unknown",
    }
}

/// The kernel interface of the call.
pub fn mechanism(e: &CallEvent) -> Mechanism {
    match (e.kind, e.what) {
        (EVENT_IOCTL, DMA_BUF_IOCTL_RW_FILE) | (EVENT_EXPORTER, _) => Mechanism::RwFileIoctl,
        (EVENT_PREAD, _) => Mechanism::Pread,
        _ => Mechanism::Ioctl,
    }
}

/// The row name in the dashboard: one row per kind of call.
pub fn name(e: &CallEvent) -> Cow<'static, str> {
    match (e.kind, e.what) {
        (EVENT_IOCTL, DMA_BUF_IOCTL_RW_FILE) => "ioctl RW_FILE".into(),
        (EVENT_IOCTL, DMA_BUF_IOCTL_SYNC) => "ioctl SYNC".into(),
        (EVENT_IOCTL, w) => format!("ioctl {w:#x}").into(),
        (EVENT_EXPORTER, _) => "rw_file (exporter)".into(),
        (EVENT_PREAD, _) => "pread".into(),
        _ => "unknown".into(),
    }
}

/// Bytes the call moved: what pread returned; for the exporter, its count
/// (the lab kernel's rw_file returns it, docs/rw-file.md) or, when it
/// returned 0 as the seed's v2 does for a full transfer, what was asked;
/// none for failed calls and ioctls.
pub fn bytes(e: &CallEvent) -> u64 {
    match e.kind {
        EVENT_PREAD => e.ret.max(0) as u64,
        EVENT_EXPORTER if e.ret > 0 => e.ret as u64,
        EVENT_EXPORTER if e.ret == 0 => e.len,
        _ => 0,
    }
}

pub const CSV_COLUMNS: &[&str] = &[
    "start_ns",
    "pid",
    "tid",
    "kind",
    "what",
    "bytes_asked",
    "ret",
    "duration_ns",
    "mechanism",
];

pub fn csv_header(out: &mut impl std::io::Write) -> std::io::Result<()> {
    writeln!(out, "{}", CSV_COLUMNS.join(","))
}

/// One row: start in kernel monotonic ns; `what` is the ioctl command (hex),
/// the RW_FILE flags or the pread fd. Integers through itoa: at a million
/// rows a second `write!`'s formatting machinery was most of the agent's
/// time per event.
pub fn csv_row(out: &mut impl std::io::Write, e: &CallEvent) -> std::io::Result<()> {
    let mut n = itoa::Buffer::new();
    for v in [e.start_ns, e.tgid as u64, e.tid as u64] {
        out.write_all(n.format(v).as_bytes())?;
        out.write_all(b",")?;
    }
    out.write_all(kind(e).as_bytes())?;
    write!(out, ",{:#x},", e.what)?;
    out.write_all(n.format(e.len).as_bytes())?;
    out.write_all(b",")?;
    out.write_all(n.format(e.ret).as_bytes())?;
    out.write_all(b",")?;
    out.write_all(n.format(e.duration_ns).as_bytes())?;
    out.write_all(b",")?;
    out.write_all(mechanism(e).name().as_bytes())?;
    out.write_all(b"\n")
}

/// CPU time of this process so far (user, system), from getrusage.
pub fn own_cpu_s() -> (f64, f64) {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: ru is a valid out-pointer.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return (0.0, 0.0);
    }
    let s = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (s(ru.ru_utime), s(ru.ru_stime))
}

/// What a trace session saw and what it cost (`dmaprof trace --json`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct TraceSummary {
    pub pid: Option<u32>,
    pub seconds: f64,
    pub events: u64,
    pub events_per_s: f64,
    pub by_kind: BTreeMap<String, u64>,
    pub lost: super::session::Lost,
    /// CPU the agent (this process) used while tracing.
    pub agent_user_s: f64,
    pub agent_sys_s: f64,
    pub agent_cpu_per_million_events_s: Option<f64>,
    pub probes: Vec<super::session::Attached>,
    /// Each probe program's runs and run time (BPF run-time statistics;
    /// None when they could not be enabled).
    pub probe_costs: Option<Vec<super::session::ProgramCost>>,
    /// The probes' run time per traced call, ns, and as a share of the
    /// traced calls' own time, %.
    pub probe_ns_per_event: Option<f64>,
    pub probe_pct_of_call_time: Option<f64>,
    /// Sum of the traced calls' durations, ns.
    pub call_ns: u64,
    /// With `--profile`: every ioctl and pread event, kept for the
    /// profile's time line (the exporter's calls run inside an ioctl's).
    #[serde(skip)]
    pub kept: Option<Vec<CallEvent>>,
    /// The stack profile (`--profile`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<crate::profile::Profile>,
}

impl TraceSummary {
    pub fn count(&mut self, e: &CallEvent) {
        self.events += 1;
        self.call_ns += e.duration_ns;
        if let Some(kept) = &mut self.kept
            && e.kind != EVENT_EXPORTER
        {
            kept.push(*e);
        }
        // No allocation per event: the kind's entry exists after its first.
        match self.by_kind.get_mut(kind(e)) {
            Some(n) => *n += 1,
            None => {
                self.by_kind.insert(kind(e).to_string(), 1);
            }
        }
    }

    /// Closes the books: rates from the elapsed time and the CPU used since `cpu0`.
    pub fn finish(&mut self, seconds: f64, cpu0: (f64, f64)) {
        let (u, s) = own_cpu_s();
        self.seconds = seconds;
        self.events_per_s = self.events as f64 / seconds.max(1e-9);
        self.agent_user_s = u - cpu0.0;
        self.agent_sys_s = s - cpu0.1;
        self.agent_cpu_per_million_events_s = (self.events > 0)
            .then(|| (self.agent_user_s + self.agent_sys_s) / self.events as f64 * 1e6);
    }

    /// Closes the probes' books with their per-program costs.
    pub fn set_probe_costs(&mut self, costs: Option<Vec<super::session::ProgramCost>>) {
        let total: Option<u64> = costs.as_ref().map(|c| c.iter().map(|c| c.run_ns).sum());
        self.probe_ns_per_event = total.map(|ns| crate::metrics::per(ns, self.events));
        self.probe_pct_of_call_time = total
            .filter(|_| self.call_ns > 0)
            .map(|ns| crate::metrics::per(ns, self.call_ns) * 100.0);
        self.probe_costs = costs;
    }

    pub fn line(&self) -> String {
        let kinds: Vec<String> = self
            .by_kind
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        let cpu = self.agent_user_s + self.agent_sys_s;
        format!(
            "{} events in {:.1} s ({:.0}/s{}{}); lost: {}; agent CPU {:.2} s ({:.0}% of a core{}){}",
            self.events,
            self.seconds,
            self.events_per_s,
            if kinds.is_empty() { "" } else { ": " },
            kinds.join(", "),
            self.lost,
            cpu,
            cpu / self.seconds.max(1e-9) * 100.0,
            match self.agent_cpu_per_million_events_s {
                Some(c) => format!(", {c:.2} s per million events"),
                None => String::new(),
            },
            match self.probe_ns_per_event {
                Some(ns) => format!("; probes {ns:.0} ns per event"),
                None => String::new(),
            }
        )
    }
}

/// The next event of the ring, its space handed back to the producers at once.
pub fn next_event(ring: &mut aya::maps::RingBuf<aya::maps::MapData>) -> Option<CallEvent> {
    loop {
        let item = ring.next()?;
        if item.len() >= size_of::<CallEvent>() {
            // SAFETY: the kernel side writes exactly one CallEvent per record.
            return Some(unsafe { std::ptr::read_unaligned(item.as_ptr() as *const CallEvent) });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_have_every_column_and_names_follow_the_kind() {
        let e = CallEvent {
            kind: EVENT_PREAD,
            tgid: 7,
            tid: 8,
            what: 3,
            ret: 4096,
            start_ns: 10,
            duration_ns: 1500,
            len: 4096,
        };
        let mut out = Vec::new();
        csv_row(&mut out, &e).unwrap();
        let row = String::from_utf8(out).unwrap();
        assert_eq!(row, "10,7,8,pread,0x3,4096,4096,1500,pread\n");
        assert_eq!(row.trim().split(',').count(), CSV_COLUMNS.len());
        assert_eq!(name(&e), "pread");
        assert_eq!(bytes(&e), 4096);
        let ioctl = CallEvent {
            kind: EVENT_IOCTL,
            what: DMA_BUF_IOCTL_RW_FILE,
            ret: -25,
            ..e
        };
        assert_eq!(name(&ioctl), "ioctl RW_FILE");
        assert_eq!(bytes(&ioctl), 0);
        let mut s = TraceSummary::default();
        s.count(&e);
        s.count(&ioctl);
        s.count(&e);
        assert_eq!(s.events, 3);
        assert_eq!(s.by_kind["pread"], 2);
        assert_eq!(s.by_kind["ioctl"], 1);

        // The exporter: the lab kernel's count, the seed's 0 for "all of
        // it", nothing for a failure.
        let exporter = |ret| CallEvent {
            kind: EVENT_EXPORTER,
            ret,
            len: 1 << 20,
            ..e
        };
        assert_eq!(bytes(&exporter(4096)), 4096, "a short READ at EOF");
        assert_eq!(bytes(&exporter(0)), 1 << 20, "the seed's success");
        assert_eq!(bytes(&exporter(-16)), 0, "EBUSY moved nothing");
    }
}
