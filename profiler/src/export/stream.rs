//! `dmaprof trace --jsonl` and `--interval`: the trace as a stream for runs
//! that never end. One JSON object per line, written whole (the writer is
//! flushed after every batch of events, and at the end), so `tail -f`, `jq`
//! or a log shipper sees complete lines only; and a summary per interval,
//! biolatency-style, printed and streamed.
use std::{collections::BTreeMap, io::Write};

use profiler_common::call::CallEvent;
use serde::Serialize;

use crate::{
    metrics::CallTotals,
    probes::{
        events::{self, DmaBufView},
        files::FileView,
    },
};

/// Where the lines go: a file (created, or appended to: a stream keeps
/// what it wrote) or stdout.
pub struct Jsonl {
    out: Box<dyn Write + Send>,
}

impl Jsonl {
    /// `-` is stdout.
    pub fn open(path: &std::path::Path) -> std::io::Result<Jsonl> {
        let out: Box<dyn Write + Send> = if path.as_os_str() == "-" {
            Box::new(std::io::BufWriter::new(std::io::stdout()))
        } else {
            Box::new(std::io::BufWriter::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            ))
        };
        Ok(Jsonl { out })
    }

    pub fn call(&mut self, e: &CallEvent, file: Option<&FileView>) -> std::io::Result<()> {
        let request = events::is_request(e).then(|| Request {
            flags: events::request_flags(e),
            fd: e.rw.fd,
            file_offset: e.rw.file_offset,
            buf_offset: e.rw.buf_offset,
            buf_len: e.rw.buf_len,
        });
        let line = Call {
            r#type: "call",
            start_ns: e.start_ns,
            pid: e.tgid,
            tid: e.tid,
            kind: events::kind(e),
            name: &events::name(e),
            mechanism: events::mechanism(e).name(),
            what: e.what,
            bytes_asked: e.len,
            bytes: events::bytes(e),
            ret: e.ret,
            errno: (e.ret < 0).then(|| events::errno_name(e.ret)),
            duration_ns: e.duration_ns,
            request,
            file: file.map(|f| File {
                path: &f.path,
                dev: format!("{}:{}", f.major, f.minor),
                ino: f.ino,
            }),
            dmabuf: events::dma_buf(e),
        };
        serde_json::to_writer(&mut self.out, &line)?;
        self.out.write_all(b"\n")
    }

    pub fn interval(&mut self, summary: &IntervalSummary) -> std::io::Result<()> {
        serde_json::to_writer(&mut self.out, summary)?;
        self.out.write_all(b"\n")?;
        self.out.flush()
    }

    /// After a batch: every line written so far is out, whole.
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

#[derive(Serialize)]
struct Call<'a> {
    r#type: &'static str,
    start_ns: u64,
    pid: u32,
    tid: u32,
    kind: &'static str,
    name: &'a str,
    mechanism: &'static str,
    what: u32,
    bytes_asked: u64,
    bytes: u64,
    ret: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    errno: Option<String>,
    duration_ns: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    request: Option<Request>,
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<File<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dmabuf: Option<DmaBufView>,
}

#[derive(Serialize)]
struct Request {
    flags: String,
    fd: i32,
    file_offset: u64,
    buf_offset: u64,
    buf_len: u64,
}

#[derive(Serialize)]
struct File<'a> {
    path: &'a str,
    dev: String,
    ino: u64,
}

/// The calls of the current interval, per kind (the dashboard's rows).
#[derive(Default)]
pub struct Intervals {
    seconds: f64,
    /// Whether the tables go to stdout (not when it holds the JSON stream
    /// or the dashboard).
    pub print: bool,
    index: u64,
    kinds: BTreeMap<String, CallTotals>,
}

/// One interval's summary line.
#[derive(Debug, Serialize)]
pub struct IntervalSummary {
    r#type: &'static str,
    /// Intervals since the start, from 1.
    pub index: u64,
    /// Seconds since the trace started, at the interval's end.
    pub end_s: f64,
    pub kinds: Vec<KindSummary>,
}

#[derive(Debug, Serialize)]
pub struct KindSummary {
    pub kind: String,
    pub calls: u64,
    pub bytes: u64,
    pub mib_per_s: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
}

impl Intervals {
    pub fn new(seconds: f64) -> Intervals {
        Intervals {
            seconds,
            print: true,
            ..Default::default()
        }
    }

    pub fn period(&self) -> std::time::Duration {
        std::time::Duration::from_secs_f64(self.seconds)
    }

    pub fn record(&mut self, e: &CallEvent) {
        let name = events::name(e);
        let totals = match self.kinds.get_mut(name.as_ref()) {
            Some(t) => t,
            None => self.kinds.entry(name.into_owned()).or_default(),
        };
        totals.add(events::bytes(e), e.duration_ns, None);
    }

    /// The interval that just ended (its throughput over the interval's
    /// length), the counts starting again.
    pub fn close(&mut self, end_s: f64) -> IntervalSummary {
        self.index += 1;
        let kinds = std::mem::take(&mut self.kinds)
            .into_iter()
            .map(|(kind, t)| KindSummary {
                kind,
                calls: t.calls,
                bytes: t.bytes,
                mib_per_s: t.bytes as f64 / (1 << 20) as f64 / self.seconds,
                p50_us: t.latency.quantile_us(0.5),
                p99_us: t.latency.quantile_us(0.99),
                max_us: t.latency.max_ns() as f64 / 1e3,
            })
            .collect();
        IntervalSummary {
            r#type: "interval",
            index: self.index,
            end_s,
            kinds,
        }
    }
}

/// The interval as text, biolatency-style: a header line, then a row per
/// kind of call (none: "no calls").
pub fn render_interval(s: &IntervalSummary) -> String {
    let mut out = format!("\n--- interval {} (t = {:.1} s)\n", s.index, s.end_s);
    if s.kinds.is_empty() {
        out.push_str("no calls\n");
        return out;
    }
    out.push_str(&format!(
        "{:<36} {:>9} {:>12} {:>9} {:>10} {:>10} {:>10}\n",
        "kind", "calls", "bytes", "MiB/s", "p50 us", "p99 us", "max us"
    ));
    for k in &s.kinds {
        out.push_str(&format!(
            "{:<36} {:>9} {:>12} {:>9.1} {:>10.1} {:>10.1} {:>10.1}\n",
            k.kind, k.calls, k.bytes, k.mib_per_s, k.p50_us, k.p99_us, k.max_us
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use profiler_common::call::{EVENT_PREAD, EVENT_URING};

    #[test]
    fn an_interval_sums_its_calls_per_kind_and_starts_again() {
        let mut iv = Intervals::new(2.0);
        let pread = |ret, ns| CallEvent {
            kind: EVENT_PREAD,
            ret,
            len: 4096,
            duration_ns: ns,
            ..Default::default()
        };
        iv.record(&pread(4096, 1_000));
        iv.record(&pread(4096, 3_000));
        iv.record(&CallEvent {
            kind: EVENT_URING,
            what: 4,
            ret: 1 << 20,
            duration_ns: 50_000,
            ..Default::default()
        });
        let s = iv.close(2.0);
        assert_eq!(s.index, 1);
        let kinds: Vec<(&str, u64, u64)> = s
            .kinds
            .iter()
            .map(|k| (k.kind.as_str(), k.calls, k.bytes))
            .collect();
        assert_eq!(
            kinds,
            [("io_uring READ_FIXED", 1, 1 << 20), ("pread", 2, 8192)]
        );
        assert!((s.kinds[0].mib_per_s - 0.5).abs() < 1e-9, "1 MiB over 2 s");
        assert!(render_interval(&s).contains("io_uring READ_FIXED"));
        let next = iv.close(4.0);
        assert_eq!((next.index, next.kinds.len()), (2, 0));
        assert!(render_interval(&next).contains("no calls"));
    }
}
